/* test_mcast_rx.c -- the multicast receiver against the broker's sender,
 * on loopback (no broker process): in-order delivery, loss detected and
 * repaired, foreign epochs and bad datagrams dropped and counted, several
 * receivers on one group. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include "mcast.h"
#include "mcast_rx.h"
#include "topic_name.h"

#define EPOCH 777ull

static char group[32];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* What a receiver handed on. */
typedef struct sink {
    char log[16384];
    uint64_t delivered, repaired, lost;
    struct { char topic[32]; uint64_t first, last; } ask[64];
    int nask;
} sink_t;

static void on_deliver(void *ud, const char *topic, uint64_t seq, const uint8_t *p, size_t n,
                       int repaired)
{
    sink_t *s = ud;
    char want[48];
    int wl = snprintf(want, sizeof(want), "%s#%llu", topic, (unsigned long long)seq);
    assert_int_equal(n, (size_t)wl);
    assert_memory_equal(p, want, n);
    size_t l = strlen(s->log);
    if (l + 40 < sizeof(s->log))
        snprintf(s->log + l, sizeof(s->log) - l, "%s:%llu ", topic, (unsigned long long)seq);
    s->delivered++;
    s->repaired += repaired != 0;
}

static void on_lost(void *ud, const char *topic, uint64_t first, uint64_t last)
{
    sink_t *s = ud;
    size_t l = strlen(s->log);
    snprintf(s->log + l, sizeof(s->log) - l, "%s:L%llu-%llu ", topic, (unsigned long long)first,
             (unsigned long long)last);
    s->lost += last - first + 1;
}

static void on_repair(void *ud, const char *topic, uint64_t first, uint64_t last)
{
    sink_t *s = ud;
    assert_true(s->nask < 64);
    snprintf(s->ask[s->nask].topic, sizeof(s->ask[0].topic), "%s", topic);
    s->ask[s->nask].first = first;
    s->ask[s->nask].last = last;
    s->nask++;
}

static fo__mcast_rx_t *rx_new(sink_t *s, uint16_t port, uint64_t epoch)
{
    memset(s, 0, sizeof(*s));
    fo__mcast_rx_opts_t o = { .group = group, .port = port, .iface = "127.0.0.1",
                             .epoch = epoch, .max_datagram = 1400,
                             .gaps = { .reorder_ms = 20, .repair_ms = 500,
                                       .probe_ms = UINT32_MAX } };
    fo__gaps_cb_t cb = { on_deliver, on_lost, on_repair, s };
    fo__mcast_rx_t *rx = NULL;
    assert_int_equal(fo__mcast_rx_create(&o, &cb, &rx), FO_OK);
    return rx;
}

/* Read and run timers until cond(s) or 3 s pass. */
static int pump(fo__mcast_rx_t *rx, sink_t *s, int (*cond)(const sink_t *, uint64_t),
                uint64_t arg)
{
    uint64_t deadline = now_ms() + 3000;
    while (!cond(s, arg)) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return 0;
        uint32_t wait = fo__mcast_rx_poll(rx, now);
        if (cond(s, arg))
            break;
        struct pollfd p = { .fd = fo__mcast_rx_fd(rx), .events = POLLIN };
        int t = (int)(deadline - now);
        if (wait < (uint32_t)t)
            t = (int)wait;
        if (poll(&p, 1, t) > 0)
            assert_int_not_equal(fo__mcast_rx_read(rx, now_ms()), FO_ERR_IO);
    }
    return 1;
}

static int delivered_at_least(const sink_t *s, uint64_t n) { return s->delivered >= n; }
static int asked_at_least(const sink_t *s, uint64_t n) { return (uint64_t)s->nask >= n; }

typedef struct tx {
    fo_mcast_t *m;
    fo_mcast_tx_t *tx;
    fo_stats_t st;
} tx_t;

static void tx_open(tx_t *t, uint16_t port, uint64_t epoch, uint32_t max_datagram)
{
    fo_config_t c;
    memset(&c, 0, sizeof(c));
    memset(t, 0, sizeof(*t));
    c.max_datagram = max_datagram;
    c.mcast_ttl = 1;
    c.mcast_loop = 1;
    snprintf(c.mcast_if, sizeof(c.mcast_if), "127.0.0.1");
    c.mcast_count = 1;
    snprintf(c.mcast[0].filter, sizeof(c.mcast[0].filter), ">");
    snprintf(c.mcast[0].addr, sizeof(c.mcast[0].addr), "%s", group);
    c.mcast[0].port = port;
    assert_int_equal(fo_mcast_create(&c, epoch, &t->m), FO_OK);
    assert_int_equal(fo_mcast_tx_create(t->m, &t->st, &t->tx), FO_OK);
}

static void tx_close(tx_t *t)
{
    fo_mcast_tx_destroy(t->tx);
    fo_mcast_destroy(t->m);
}

static void tx_msg(tx_t *t, const char *topic, uint64_t seq)
{
    char p[48];
    int n = snprintf(p, sizeof(p), "%s#%llu", topic, (unsigned long long)seq);
    fo_mcast_tx_add(t->tx, 0, topic, strlen(topic), seq, (const uint8_t *)p, (size_t)n, 1);
}

static int setup(void **state)
{
    (void)state;
    unsigned r = (unsigned)getpid();
    snprintf(group, sizeof(group), "239.%u.%u.%u", 100 + r % 50, (r >> 8) & 255, 1 + r % 250);
    return 0;
}

static void test_in_order_two_receivers(void **state)
{
    (void)state;
    sink_t s1, s2;
    fo__mcast_rx_t *r1 = rx_new(&s1, 0, EPOCH);
    uint16_t port = fo__mcast_rx_port(r1);
    fo__mcast_rx_t *r2 = rx_new(&s2, port, EPOCH);
    assert_int_equal(fo__mcast_rx_port(r2), port);
    tx_t t;
    tx_open(&t, port, EPOCH, 1400);
    for (uint64_t i = 1; i <= 300; i++) {
        tx_msg(&t, "a.x", i);
        if (i % 3 == 0)
            tx_msg(&t, "b.y", i / 3);
        if (i % 50 == 0)
            fo_mcast_tx_flush(t.tx);
    }
    fo_mcast_tx_flush(t.tx);
    assert_true(pump(r1, &s1, delivered_at_least, 400));
    assert_true(pump(r2, &s2, delivered_at_least, 400));
    fo__mcast_rx_stats_t st;
    fo__mcast_rx_stats(r1, &st);
    assert_int_equal(st.gaps.received, 400);
    assert_int_equal(st.gaps.gaps, 0);
    assert_int_equal(st.bad + st.foreign, 0);
    assert_true(st.datagrams < 100);          /* packed */
    assert_string_equal(s1.log, s2.log);
    tx_close(&t);
    fo__mcast_rx_destroy(r1);
    fo__mcast_rx_destroy(r2);
}

/* Messages the sender skips are gaps; the receiver asks for them, gets
 * some back as repairs and the rest as "gone", and delivers in order. */
static void test_gap_repair(void **state)
{
    (void)state;
    sink_t s;
    fo__mcast_rx_t *rx = rx_new(&s, 0, EPOCH);
    tx_t t;
    tx_open(&t, fo__mcast_rx_port(rx), EPOCH, 1400);
    for (uint64_t i = 1; i <= 20; i++)
        if (i != 5 && i != 6 && i != 12)
            tx_msg(&t, "a", i);
    fo_mcast_tx_flush(t.tx);
    assert_true(pump(rx, &s, asked_at_least, 2));
    assert_string_equal(s.log, "a:1 a:2 a:3 a:4 ");
    assert_int_equal(s.nask, 2);
    assert_int_equal(s.ask[0].first, 5);
    assert_int_equal(s.ask[0].last, 6);
    assert_int_equal(s.ask[1].first, 12);
    assert_int_equal(s.ask[1].last, 12);
    uint64_t now = now_ms();
    fo__mcast_rx_repaired(rx, "a", 6, (const uint8_t *)"a#6", 3, now);
    fo__mcast_rx_repaired(rx, "a", 12, (const uint8_t *)"a#12", 4, now);
    fo__mcast_rx_lost(rx, "a", 5, 5);
    assert_true(pump(rx, &s, delivered_at_least, 19));
    assert_string_equal(s.log, "a:1 a:2 a:3 a:4 a:L5-5 a:6 a:7 a:8 a:9 a:10 a:11 a:12 a:13 "
                               "a:14 a:15 a:16 a:17 a:18 a:19 a:20 ");
    fo__mcast_rx_stats_t st;
    fo__mcast_rx_stats(rx, &st);
    assert_int_equal(st.gaps.gaps, 3);
    assert_int_equal(st.gaps.repaired, 2);
    assert_int_equal(st.gaps.lost, 1);
    assert_int_equal(s.repaired, 2);
    tx_close(&t);
    fo__mcast_rx_destroy(rx);
}

/* Oversize markers are asked for at once and filled by repair. */
static void test_oversize(void **state)
{
    (void)state;
    sink_t s;
    fo__mcast_rx_t *rx = rx_new(&s, 0, EPOCH);
    tx_t t;
    tx_open(&t, fo__mcast_rx_port(rx), EPOCH, 512);
    char big[1000];
    memset(big, 'x', sizeof(big));
    tx_msg(&t, "o", 1);
    fo_mcast_tx_add(t.tx, 0, "o", 1, 2, (const uint8_t *)big, sizeof(big), 1);
    tx_msg(&t, "o", 3);
    fo_mcast_tx_flush(t.tx);
    assert_true(pump(rx, &s, asked_at_least, 1));
    assert_int_equal(s.ask[0].first, 2);
    assert_int_equal(s.ask[0].last, 2);
    fo__mcast_rx_repaired(rx, "o", 2, (const uint8_t *)"o#2", 3, now_ms());
    assert_string_equal(s.log, "o:1 o:2 o:3 ");
    fo__mcast_rx_stats_t st;
    fo__mcast_rx_stats(rx, &st);
    assert_int_equal(st.gaps.oversize, 1);
    assert_int_equal(st.gaps.gaps, 0);
    tx_close(&t);
    fo__mcast_rx_destroy(rx);
}

/* An older epoch, junk, a too-large datagram, a message without a seq:
 * dropped and counted, nothing delivered, nothing crashes. A newer epoch
 * (the broker restarted) starts every topic again. */
static void test_foreign_and_bad(void **state)
{
    (void)state;
    sink_t s;
    fo__mcast_rx_t *rx = rx_new(&s, 0, EPOCH);
    uint16_t port = fo__mcast_rx_port(rx);
    tx_t old;
    tx_open(&old, port, EPOCH - 1, 1400);
    tx_msg(&old, "a", 1);
    fo_mcast_tx_flush(old.tx);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct in_addr ifa;
    inet_pton(AF_INET, "127.0.0.1", &ifa);
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &ifa, sizeof(ifa));
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, group, &dst.sin_addr);
    static uint8_t junk[3000];
    memset(junk, 0xff, sizeof(junk));
    sendto(fd, junk, 10, 0, (struct sockaddr *)&dst, sizeof(dst));       /* no protobuf */
    sendto(fd, junk, sizeof(junk), 0, (struct sockaddr *)&dst, sizeof(dst)); /* too big */
    /* epoch 777 (0x08 0x89 0x06), one msg with topic "a" but no seq */
    const uint8_t noseq[] = { 0x08, 0x89, 0x06, 0x12, 0x03, 0x0a, 0x01, 'a' };
    sendto(fd, noseq, sizeof(noseq), 0, (struct sockaddr *)&dst, sizeof(dst));
    close(fd);
    /* then a good one, which must still get through */
    tx_t t;
    tx_open(&t, port, EPOCH, 1400);
    tx_msg(&t, "a", 1);
    fo_mcast_tx_flush(t.tx);
    assert_true(pump(rx, &s, delivered_at_least, 1));
    fo__mcast_rx_stats_t st;
    fo__mcast_rx_stats(rx, &st);
    assert_int_equal(st.foreign, 1);
    assert_int_equal(st.bad, 3);
    assert_int_equal(st.datagrams, 5);
    assert_string_equal(s.log, "a:1 ");
    /* the broker restarted: the new epoch's seq 1 is new again, and the
     * old epoch is stale from then on */
    tx_t neu;
    tx_open(&neu, port, EPOCH + 1, 1400);
    tx_msg(&neu, "a", 1);
    fo_mcast_tx_flush(neu.tx);
    assert_true(pump(rx, &s, delivered_at_least, 2));
    tx_msg(&t, "a", 2);
    fo_mcast_tx_flush(t.tx);
    tx_msg(&neu, "a", 2);
    fo_mcast_tx_flush(neu.tx);
    assert_true(pump(rx, &s, delivered_at_least, 3));
    assert_string_equal(s.log, "a:1 a:1 a:2 ");
    fo__mcast_rx_stats(rx, &st);
    assert_int_equal(st.restarts, 1);
    assert_int_equal(st.foreign, 2);
    /* reconnected to a broker whose WELCOME names another epoch */
    fo__mcast_rx_set_epoch(rx, EPOCH + 1);           /* same: nothing */
    fo__mcast_rx_set_epoch(rx, EPOCH + 5);
    tx_msg(&neu, "a", 3);
    fo_mcast_tx_flush(neu.tx);
    tx_t five;
    tx_open(&five, port, EPOCH + 5, 1400);
    tx_msg(&five, "a", 9);
    fo_mcast_tx_flush(five.tx);
    assert_true(pump(rx, &s, delivered_at_least, 4));
    assert_string_equal(s.log, "a:1 a:1 a:2 a:9 ");
    tx_close(&five);
    tx_close(&neu);
    tx_close(&old);
    tx_close(&t);
    fo__mcast_rx_destroy(rx);
}

static void test_filters(void **state)
{
    (void)state;
    static const struct { const char *a, *b; int want; } cases[] = {
        { "prices.>", "prices.eu.*", 1 }, { ">", "a", 1 }, { "a.b", "a.b", 1 },
        { "a.*", "a.b.c", 0 }, { "a.*", "*.b", 1 }, { "a.>", "a", 0 },
        { "a.b", "a.c", 0 }, { "*", "a.b", 0 }, { "*.>", "a", 0 }, { "a.*.c", "a.>", 1 },
        { "orders.>", "prices.>", 0 }, { "*", "*", 1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(fo_filters_overlap(cases[i].a, cases[i].b), cases[i].want);
        assert_int_equal(fo_filters_overlap(cases[i].b, cases[i].a), cases[i].want);
    }
    /* a receiver for "p.eu.*" on a group carrying "p.>" sees only its part */
    sink_t s;
    memset(&s, 0, sizeof(s));
    fo__mcast_rx_opts_t o = { .group = group, .iface = "127.0.0.1", .epoch = EPOCH,
                             .filter = "p.eu.*" };
    fo__gaps_cb_t cb = { on_deliver, on_lost, on_repair, &s };
    fo__mcast_rx_t *rx = NULL;
    assert_int_equal(fo__mcast_rx_create(&o, &cb, &rx), FO_OK);
    tx_t t;
    tx_open(&t, fo__mcast_rx_port(rx), EPOCH, 1400);
    tx_msg(&t, "p.us.x", 1);
    tx_msg(&t, "p.eu.x", 1);
    tx_msg(&t, "p.eu.x.y", 1);
    tx_msg(&t, "p.eu.x", 2);
    fo_mcast_tx_flush(t.tx);
    assert_true(pump(rx, &s, delivered_at_least, 2));
    assert_string_equal(s.log, "p.eu.x:1 p.eu.x:2 ");
    fo__mcast_rx_stats_t st;
    fo__mcast_rx_stats(rx, &st);
    assert_int_equal(st.filtered, 2);
    tx_close(&t);
    fo__mcast_rx_destroy(rx);
}

/* Mutated and truncated datagrams (a small fuzz run, meant for the ASan
 * build): never a crash, every datagram accounted for, and a good one
 * still gets through afterwards. */
static uint64_t fuzz_delivered;
static void fuzz_deliver(void *ud, const char *topic, uint64_t seq, const uint8_t *p, size_t n,
                         int repaired)
{
    (void)ud; (void)topic; (void)seq; (void)p; (void)n; (void)repaired;
    fuzz_delivered++;
}

static void test_fuzzed_datagrams(void **state)
{
    (void)state;
    fo__mcast_rx_opts_t o = { .group = group, .iface = "127.0.0.1", .epoch = EPOCH,
                             .max_datagram = 1400, .gaps = { .window = 64, .max_topics = 16 } };
    fo__gaps_cb_t cb = { fuzz_deliver, NULL, NULL, NULL };
    fo__mcast_rx_t *rx = NULL;
    assert_int_equal(fo__mcast_rx_create(&o, &cb, &rx), FO_OK);
    /* a valid datagram to mutate: three messages */
    Fanout__McastMsg m[3];
    Fanout__McastMsg *mp[3];
    for (int i = 0; i < 3; i++) {
        fanout__mcast_msg__init(&m[i]);
        m[i].topic = (char *)(i == 1 ? "a.b" : "a");
        m[i].has_seq = 1;
        m[i].seq = (uint64_t)i + 1;
        m[i].has_payload = 1;
        m[i].payload.data = (uint8_t *)"payload";
        m[i].payload.len = 7;
        mp[i] = &m[i];
    }
    m[2].has_oversize = m[2].has_size = 1;
    m[2].oversize = 1;
    m[2].size = 99;
    Fanout__Datagram d = FANOUT__DATAGRAM__INIT;
    d.has_epoch = 1;
    d.epoch = EPOCH;
    d.n_msgs = 3;
    d.msgs = mp;
    uint8_t good[256], buf[256];
    size_t glen = fanout__datagram__pack(&d, good);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct in_addr ifa;
    inet_pton(AF_INET, "127.0.0.1", &ifa);
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &ifa, sizeof(ifa));
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(fo__mcast_rx_port(rx)) };
    inet_pton(AF_INET, group, &dst.sin_addr);
    srand(4242);
    enum { ROUNDS = 40, PER = 50 };
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < PER; k++) {
            memcpy(buf, good, glen);
            size_t len = glen;
            int flips = 1 + rand() % 4;
            for (int f = 0; f < flips; f++)
                buf[rand() % glen] = (uint8_t)rand();
            if (rand() % 4 == 0)
                len = 1 + (size_t)rand() % glen;           /* truncated */
            assert_int_equal(sendto(fd, buf, len, 0, (struct sockaddr *)&dst, sizeof(dst)),
                             (ssize_t)len);
        }
        uint64_t end = now_ms() + 2000;
        fo__mcast_rx_stats_t st;
        do {
            struct pollfd p = { .fd = fo__mcast_rx_fd(rx), .events = POLLIN };
            if (poll(&p, 1, 10) > 0)
                assert_int_not_equal(fo__mcast_rx_read(rx, now_ms()), FO_ERR_IO);
            fo__mcast_rx_poll(rx, now_ms());
            fo__mcast_rx_stats(rx, &st);
        } while (st.datagrams < (uint64_t)(r + 1) * PER && now_ms() < end);
        assert_int_equal(st.datagrams, (uint64_t)(r + 1) * PER);
    }
    fo__mcast_rx_stats_t st;
    fo__mcast_rx_stats(rx, &st);
    assert_true(st.bad > 0);
    /* a restart-looking epoch may have been adopted: follow it, then a
     * valid datagram on a fresh topic is delivered */
    fo__mcast_rx_set_epoch(rx, EPOCH);
    m[0].topic = (char *)"fresh";
    d.n_msgs = 1;
    glen = fanout__datagram__pack(&d, good);
    fo__mcast_rx_flush(rx);
    uint64_t before = fuzz_delivered;
    sendto(fd, good, glen, 0, (struct sockaddr *)&dst, sizeof(dst));
    uint64_t end = now_ms() + 2000;
    while (fuzz_delivered == before && now_ms() < end) {
        struct pollfd p = { .fd = fo__mcast_rx_fd(rx), .events = POLLIN };
        if (poll(&p, 1, 10) > 0)
            assert_int_not_equal(fo__mcast_rx_read(rx, now_ms()), FO_ERR_IO);
    }
    assert_int_equal(fuzz_delivered, before + 1);
    close(fd);
    fo__mcast_rx_destroy(rx);
}

static void test_bad_opts(void **state)
{
    (void)state;
    fo__mcast_rx_t *rx = (fo__mcast_rx_t *)1;
    fo__gaps_cb_t cb = { 0 };
    fo__mcast_rx_opts_t o = { .group = "10.1.2.3", .port = 5000 };
    assert_int_equal(fo__mcast_rx_create(&o, &cb, &rx), FO_ERR_ADDR);
    assert_null(rx);
    o.group = NULL;
    assert_int_equal(fo__mcast_rx_create(&o, &cb, &rx), FO_ERR_ADDR);
    o.group = group;
    o.iface = "no-such-if0";
    assert_int_equal(fo__mcast_rx_create(&o, &cb, &rx), FO_ERR_ADDR);
    fo__mcast_rx_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_two_receivers),
        cmocka_unit_test(test_gap_repair),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_foreign_and_bad),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_fuzzed_datagrams),
        cmocka_unit_test(test_bad_opts),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
