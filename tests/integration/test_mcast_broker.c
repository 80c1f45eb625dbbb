/* test_mcast_broker.c -- multicast through a real fanoutd on loopback:
 * WELCOME announces the group, published messages arrive as packed
 * datagrams (not as TCP DELIVERs), REPAIR is answered from retention with
 * DELIVER replay=true or GAP evicted, oversize messages are announced and
 * fetched, and the metrics count all of it. The receiver is the library's
 * (client/mcast_rx.c); the TCP side is a raw protocol client, playing the
 * library's part in the repair loop. Loopback multicast needs no route:
 * --mcast-if 127.0.0.1 with --mcast-loop 1. The receiver takes the
 * group's key from WELCOME (a client on loopback gets it), and datagrams
 * of two workers pass its replay window. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <sys/socket.h>
#include <cmocka.h>
#include "harness.h"
#include "mcast_rx.h"

#define RETAIN 20
#define MAXD 512

static fo_tb_t broker;
static char group[32];
static uint16_t gport;
static fo__mcast_rx_t *rx;       /* joined before the broker starts */
static const uint8_t no_key[FO_DGRAM_KEY_LEN];  /* until WELCOME's */
static uint8_t w_key[FO_DGRAM_KEY_LEN];         /* WELCOME's */

typedef struct sink {
    char log[8192];
    uint64_t delivered;
    struct { char topic[64]; uint64_t first, last; } ask[16];
    int nask;
} sink_t;
static sink_t sink;

static void on_deliver(void *ud, const char *topic, uint64_t seq, const uint8_t *p, size_t n,
                       int repaired)
{
    sink_t *s = ud;
    (void)p;
    size_t l = strlen(s->log);
    if (l + 64 < sizeof(s->log))
        snprintf(s->log + l, sizeof(s->log) - l, "%s:%llu%s/%zu ", topic,
                 (unsigned long long)seq, repaired ? "r" : "", n);
    s->delivered++;
}

static void on_lost(void *ud, const char *topic, uint64_t first, uint64_t last)
{
    sink_t *s = ud;
    size_t l = strlen(s->log);
    snprintf(s->log + l, sizeof(s->log) - l, "%s:L%llu-%llu ", topic, (unsigned long long)first,
             (unsigned long long)last);
}

static void on_repair(void *ud, const char *topic, uint64_t first, uint64_t last)
{
    sink_t *s = ud;
    if (s->nask < 16) {
        snprintf(s->ask[s->nask].topic, sizeof(s->ask[0].topic), "%s", topic);
        s->ask[s->nask].first = first;
        s->ask[s->nask].last = last;
        s->nask++;
    }
}

static int setup(void **state)
{
    (void)state;
    unsigned r = (unsigned)getpid();
    snprintf(group, sizeof(group), "239.%u.%u.%u", 60 + r % 40, (r >> 8) & 255, 1 + r % 250);
    fo__mcast_rx_opts_t o = { .group = group, .iface = "127.0.0.1", .max_datagram = MAXD,
                             .key = no_key,
                             .gaps = { .reorder_ms = 10, .repair_ms = 2000 } };
    fo__gaps_cb_t cb = { on_deliver, on_lost, on_repair, &sink };
    if (fo__mcast_rx_create(&o, &cb, &rx) != FO_OK)
        return -1;
    gport = fo__mcast_rx_port(rx);
    char map[128], maxd[16], retain[16];
    snprintf(map, sizeof(map), "t.>=%s:%u", group, gport);
    snprintf(maxd, sizeof(maxd), "%d", MAXD);
    snprintf(retain, sizeof(retain), "%d", RETAIN);
    const char *args[] = { "--mcast-group", map, "--mcast-if", "127.0.0.1", "--mcast-loop", "1",
                           "--max-datagram", maxd, "--retention-msgs", retain,
                           "--threads", "2", NULL };
    return fo_tb_start(&broker, args);
}

static int teardown(void **state)
{
    (void)state;
    fo__mcast_rx_destroy(rx);
    return fo_tb_stop(&broker) == 0 ? 0 : -1;
}

/* HELLO, and the WELCOME it gets (valid until the next receive). */
static Fanout__Welcome *hello(fo_tc_t *c)
{
    assert_int_equal(fo_tc_connect(c, broker.port), 0);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1;
    h.version = 1;
    h.client_name = "test_mcast";
    f.body_case = FANOUT__FRAME__BODY_HELLO;
    f.hello = &h;
    assert_int_equal(fo_tc_send(c, &f), 0);
    Fanout__Frame *in = NULL;
    assert_int_equal(fo_tc_recv(c, 5000, &in), 1);
    assert_int_equal(in->body_case, FANOUT__FRAME__BODY_WELCOME);
    return in->welcome;
}

static void subscribe_mcast(fo_tc_t *c, uint32_t sid, const char *filter)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1;
    s.sid = sid;
    s.filter = (char *)filter;
    s.has_delivery = 1;
    s.delivery = FANOUT__DELIVERY__DELIVERY_MULTICAST;
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    f.has_req = 1;
    f.req = 1000 + sid;
    assert_int_equal(fo_tc_send(c, &f), 0);
    assert_int_equal(fo_tc_wait_ack(c, f.req, 5000), 0);
}

static void send_repair(fo_tc_t *c, uint32_t sid, const char *topic, uint64_t first,
                        uint64_t last, uint64_t req)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Repair r = FANOUT__REPAIR__INIT;
    r.has_sid = r.has_first = r.has_last = 1;
    r.sid = sid;
    r.topic = (char *)topic;
    r.first = first;
    r.last = last;
    f.body_case = FANOUT__FRAME__BODY_REPAIR;
    f.repair = &r;
    f.has_req = req != 0;
    f.req = req;
    assert_int_equal(fo_tc_send(c, &f), 0);
}

/* The library's reader loop, for this test: datagrams into the receiver,
 * its repair requests out as REPAIR, DELIVER/GAP answers back in, until
 * cond() or 5 s. */
static int pump(fo_tc_t *sub, uint32_t sid, int (*cond)(void))
{
    uint64_t deadline = fo_tb_now_ms() + 5000;
    int asked = 0;
    while (!cond()) {
        uint64_t now = fo_tb_now_ms();
        if (now >= deadline)
            return 0;
        fo__mcast_rx_poll(rx, now);
        for (; asked < sink.nask; asked++)
            send_repair(sub, sid, sink.ask[asked].topic, sink.ask[asked].first,
                        sink.ask[asked].last, 0);
        struct pollfd p[2] = { { .fd = fo__mcast_rx_fd(rx), .events = POLLIN },
                               { .fd = sub->fd, .events = POLLIN } };
        if (poll(p, 2, 10) <= 0)
            continue;
        if (p[0].revents)
            assert_int_not_equal(fo__mcast_rx_read(rx, fo_tb_now_ms()), FO_ERR_IO);
        Fanout__Frame *f;
        int r;                  /* every frame read, not one per wake-up */
        while (p[1].revents && (r = fo_tc_recv(sub, 0, &f)) != 0) {
            if (r < 0)
                return 0;
            if (f->body_case == FANOUT__FRAME__BODY_DELIVER) {
                assert_int_equal(f->sid, sid);
                assert_true(f->deliver->replay);
                fo__mcast_rx_repaired(rx, f->deliver->topic, f->deliver->seq,
                                      f->deliver->payload.data, f->deliver->payload.len,
                                      fo_tb_now_ms());
            } else if (f->body_case == FANOUT__FRAME__BODY_GAP) {
                fo__mcast_rx_lost(rx, f->gap->topic, f->gap->first, f->gap->last);
            }
        }
    }
    return 1;
}

static uint64_t want_delivered;
static int enough(void) { return sink.delivered >= want_delivered; }

/* n PUBLISH frames in one write, so the broker reads them together and
 * may pack them into few datagrams however loaded the machine is. */
static void publish_n(fo_tc_t *pub, const char *topic, int n, size_t size)
{
    char payload[2048];
    assert_true(size < sizeof(payload));
    memset(payload, 'm', size);
    static uint8_t batch[64 * 1024];
    size_t len = 0, tl = strlen(topic);
    for (int i = 1; i <= n; i++) {
        size_t need = fo_publish_frame_size(tl, size, i == n ? 77 : 0);
        assert_true(len + need <= sizeof batch);
        len += fo_publish_frame_pack(batch + len, topic, tl, payload, size, i == n ? 77 : 0);
    }
    assert_int_equal(fo_tc_send_raw(pub, batch, len), 0);
    assert_int_equal(fo_tc_wait_ack(pub, 77, 5000), 0);
}

static fo_tc_t sub, pub;
static uint64_t epoch;

static void test_welcome_and_delivery(void **state)
{
    (void)state;
    Fanout__Welcome *w = hello(&sub);
    assert_true(w->has_epoch && w->epoch != 0);
    epoch = w->epoch;
    assert_true(w->has_max_datagram);
    assert_int_equal(w->max_datagram, MAXD);
    assert_int_equal(w->n_groups, 1);
    assert_string_equal(w->groups[0]->filter, "t.>");
    assert_string_equal(w->groups[0]->address, group);
    assert_int_equal(w->groups[0]->port, gport);
    assert_true(w->groups[0]->has_key);                 /* loopback: entitled */
    assert_int_equal(w->groups[0]->key.len, FO_DGRAM_KEY_LEN);
    memcpy(w_key, w->groups[0]->key.data, FO_DGRAM_KEY_LEN);
    fo__mcast_rx_rekey(rx, epoch, w_key);
    subscribe_mcast(&sub, 1, "t.>");
    assert_int_equal(fo_tc_open(&pub, broker.port, "pub"), 0);
    publish_n(&pub, "t.a", 30, 20);
    want_delivered = 30;
    assert_true(pump(&sub, 1, enough));
    fo__mcast_rx_stats_t st;
    fo__mcast_rx_stats(rx, &st);
    assert_int_equal(st.gaps.received, 30);
    assert_int_equal(st.gaps.gaps, 0);
    assert_int_equal(st.foreign + st.bad + st.forged + st.replayed, 0);
    assert_true(st.datagrams < 30);              /* packed */
    /* nothing came over TCP for the multicast subscription */
    Fanout__Frame *f;
    assert_int_equal(fo_tc_recv(&sub, 50, &f), 0);
    assert_true(fo_tb_wait_metric(&broker, "fanout_mcast_messages_total", 30, 3000) == 0);
}

/* REPAIR of retained messages: DELIVER replay=true for the sid; of
 * evicted ones: one GAP reason EVICTED; then the ACK. */
static void test_repair_served(void **state)
{
    (void)state;
    send_repair(&sub, 1, "t.a", 1, 12, 99);      /* 30 published, 20 kept: 11..30 */
    uint64_t got[16];
    int n = 0, gap = 0;
    for (;;) {
        Fanout__Frame *f;
        assert_int_equal(fo_tc_recv(&sub, 5000, &f), 1);
        if (f->body_case == FANOUT__FRAME__BODY_ACK) {
            assert_int_equal(f->ack->ref, 99);
            break;
        }
        if (f->body_case == FANOUT__FRAME__BODY_GAP) {
            assert_int_equal(f->sid, 1);
            assert_string_equal(f->gap->topic, "t.a");
            assert_int_equal(f->gap->first, 1);
            assert_int_equal(f->gap->last, 10);
            assert_int_equal(f->gap->reason, FANOUT__GAP_REASON__GAP_EVICTED);
            gap++;
        } else if (f->body_case == FANOUT__FRAME__BODY_DELIVER) {
            assert_int_equal(f->sid, 1);
            assert_true(f->deliver->replay);
            assert_true(n < 16);
            got[n++] = f->deliver->seq;
        }
    }
    assert_int_equal(gap, 1);
    assert_int_equal(n, 2);
    assert_int_equal(got[0], 11);
    assert_int_equal(got[1], 12);
    assert_true(fo_tb_wait_metric(&broker, "fanout_repairs_served_total", 2, 3000) == 0);
    assert_true(fo_tb_wait_metric(&broker, "fanout_repairs_missed_total", 1, 3000) == 0);
}

/* An oversize message goes out as a marker; the receiver asks for it and
 * gets it over TCP, in order with its neighbours. */
static void test_oversize_fetched(void **state)
{
    (void)state;
    memset(&sink, 0, sizeof(sink));
    publish_n(&pub, "t.big", 1, 10);
    publish_n(&pub, "t.big", 1, 1500);
    publish_n(&pub, "t.big", 1, 10);
    want_delivered = 3;
    assert_true(pump(&sub, 1, enough));
    assert_string_equal(sink.log, "t.big:1/10 t.big:2r/1500 t.big:3/10 ");
    int asked = 0;                       /* (tail probes may be there too) */
    for (int i = 0; i < sink.nask; i++)
        asked += !strcmp(sink.ask[i].topic, "t.big") && sink.ask[i].first == 2 &&
                 sink.ask[i].last == 2;
    assert_int_equal(asked, 1);
    assert_true(fo_tb_wait_metric(&broker, "fanout_mcast_oversize_total", 1, 3000) == 0);
}

/* The last datagrams of a burst are lost (the test takes them off the
 * receiver's socket): no later message shows it, the tail probe does. */
static void test_tail_loss_probed(void **state)
{
    (void)state;
    memset(&sink, 0, sizeof(sink));
    publish_n(&pub, "t.tail", 1, 4);
    want_delivered = 1;
    assert_true(pump(&sub, 1, enough));
    publish_n(&pub, "t.tail", 2, 4);                 /* seqs 2 and 3 ... */
    struct pollfd p = { .fd = fo__mcast_rx_fd(rx), .events = POLLIN };
    uint8_t junk[MAXD + 1];
    int stolen = 0;
    while (poll(&p, 1, stolen ? 100 : 3000) > 0)    /* ... never arrive */
        stolen += recv(p.fd, junk, sizeof(junk), 0) > 0;
    assert_true(stolen > 0);
    want_delivered = 3;
    assert_true(pump(&sub, 1, enough));
    assert_string_equal(sink.log, "t.tail:1/4 t.tail:2r/4 t.tail:3r/4 ");
    fo__mcast_rx_stats_t st;
    fo__mcast_rx_stats(rx, &st);
    assert_true(st.gaps.probes >= 1);
}

/* Two publishers on the broker's two workers (connections are dealt
 * round-robin): each worker numbers its own datagrams (dseq's top bits),
 * their streams interleave, and the receiver's replay window refuses none
 * of them. A sniffer on the group sees both senders. */
static void test_two_workers(void **state)
{
    (void)state;
    memset(&sink, 0, sizeof(sink));
    int sn = fo_tb_mcast_sniffer(group, gport);
    assert_true(sn >= 0);
    fo_tc_t pub2;                        /* the third connection: the other worker */
    assert_int_equal(fo_tc_open(&pub2, broker.port, "pub2"), 0);
    fo__mcast_rx_stats_t st0;
    fo__mcast_rx_stats(rx, &st0);
    for (int round = 0; round < 5; round++) {
        publish_n(&pub, "t.w1", 8, 300);             /* one message a datagram */
        publish_n(&pub2, "t.w2", 8, 300);
    }
    want_delivered = 80;
    assert_true(pump(&sub, 1, enough));
    fo__mcast_rx_stats_t st;
    fo__mcast_rx_stats(rx, &st);
    assert_int_equal(st.replayed - st0.replayed, 0);
    assert_int_equal(st.forged + st.bad + st.foreign, 0);
    assert_int_equal(st.gaps.lost, st0.gaps.lost);
    uint8_t buf[MAXD + 1];
    unsigned senders = 0;
    ssize_t n;
    while ((n = recv(sn, buf, sizeof(buf), 0)) > 0) {
        size_t covered;
        uint64_t dseq;
        if (fo_dgram_open(buf, (size_t)n, w_key, &covered, &dseq) == FO_DGRAM_OK &&
            (dseq >> FO_DGRAM_SENDER_SHIFT) < 32)
            senders |= 1u << (dseq >> FO_DGRAM_SENDER_SHIFT);
    }
    assert_int_equal(senders, 3u);                   /* workers 0 and 1 */
    close(sn);
    fo_tc_close(&pub2);
}

/* A topic the multicast subscription matches but no group carries comes
 * over TCP as usual. */
static void test_uncarried_topic_by_tcp(void **state)
{
    (void)state;
    fo_tc_t s2;
    assert_int_equal(fo_tc_open(&s2, broker.port, "sub2"), 0);
    subscribe_mcast(&s2, 5, ">");
    publish_n(&pub, "u.x", 1, 5);
    Fanout__Frame *f;
    int r;
    while ((r = fo_tc_recv(&s2, 5000, &f)) == 1 && f->body_case != FANOUT__FRAME__BODY_DELIVER)
        ;
    assert_int_equal(r, 1);
    assert_int_equal(f->sid, 5);
    assert_string_equal(f->deliver->topic, "u.x");
    assert_false(f->deliver->has_replay && f->deliver->replay);
    fo_tc_close(&s2);
    fo_tc_close(&sub);
    fo_tc_close(&pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_welcome_and_delivery),
        cmocka_unit_test(test_repair_served),
        cmocka_unit_test(test_oversize_fetched),
        cmocka_unit_test(test_tail_loss_probed),
        cmocka_unit_test(test_two_workers),
        cmocka_unit_test(test_uncarried_topic_by_tcp),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
