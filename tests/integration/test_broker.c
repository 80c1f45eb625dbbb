/* test_broker.c -- fanoutd as a process: routing, fan-out, order, queue
 * groups, replay, metrics, many connections. Raw protocol clients
 * (tests/support/harness.h); every wait has a deadline. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <cmocka.h>
#include "harness.h"

static fo_tb_t broker;

static int setup(void **state)
{
    (void)state;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    const char *args[] = { "--retention-msgs", "5", NULL };
    return fo_tb_start(&broker, args);
}

static int teardown(void **state)
{
    (void)state;
    return fo_tb_stop(&broker) == 0 ? 0 : -1;
}

/* Receive one DELIVER (skipping PINGs); returns 1 and fills fields. */
static int recv_deliver(fo_tc_t *c, int timeout_ms, uint32_t *sid, char *topic, size_t tlen,
                        uint64_t *seq, char *payload, size_t plen)
{
    uint64_t deadline = fo_tb_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = fo_tb_now_ms();
        if (now >= deadline)
            return 0;
        Fanout__Frame *f;
        int r = fo_tc_recv(c, (int)(deadline - now), &f);
        if (r != 1)
            return r;
        if (f->body_case != FANOUT__FRAME__BODY_DELIVER)
            continue;
        if (sid) *sid = f->sid;
        if (topic) snprintf(topic, tlen, "%s", f->deliver->topic);
        if (seq) *seq = f->deliver->seq;
        if (payload) {
            size_t n = f->deliver->payload.len < plen - 1 ? f->deliver->payload.len : plen - 1;
            memcpy(payload, f->deliver->payload.data, n);
            payload[n] = 0;
        }
        return 1;
    }
}

static void test_exact_and_wildcards(void **state)
{
    (void)state;
    fo_tc_t sub, pub;
    assert_int_equal(fo_tc_open(&sub, broker.port, "sub"), 0);
    assert_int_equal(fo_tc_open(&pub, broker.port, "pub"), 0);
    assert_int_equal(fo_tc_subscribe(&sub, 1, "w.a.b", NULL), 0);
    assert_int_equal(fo_tc_subscribe(&sub, 2, "w.*.b", NULL), 0);
    assert_int_equal(fo_tc_subscribe(&sub, 3, "w.>", NULL), 0);
    assert_int_equal(fo_tc_subscribe(&sub, 4, "x.>", NULL), 0);
    assert_int_equal(fo_tc_publish(&pub, "w.a.b", "one", 3, 7), 0);
    assert_int_equal(fo_tc_wait_ack(&pub, 7, 5000), 0);
    int seen[5] = {0};
    for (int i = 0; i < 3; i++) {
        uint32_t sid; char topic[64], payload[64]; uint64_t seq;
        assert_int_equal(recv_deliver(&sub, 5000, &sid, topic, sizeof topic, &seq, payload, sizeof payload), 1);
        assert_string_equal(topic, "w.a.b");
        assert_string_equal(payload, "one");
        assert_int_equal(seq, 1);
        assert_true(sid >= 1 && sid <= 3);
        seen[sid]++;
    }
    assert_int_equal(seen[1] + seen[2] + seen[3], 3);
    /* only w.> matches a deeper topic */
    fo_tc_publish(&pub, "w.a.b.c", "two", 3, 8);
    uint32_t sid; char payload[64];
    assert_int_equal(recv_deliver(&sub, 5000, &sid, NULL, 0, NULL, payload, sizeof payload), 1);
    assert_int_equal(sid, 3);
    assert_string_equal(payload, "two");
    assert_int_equal(recv_deliver(&sub, 200, &sid, NULL, 0, NULL, NULL, 0), 0);
    fo_tc_close(&sub);
    fo_tc_close(&pub);
}

/* 100 subscribers spread over both workers all get every message, and
 * each publisher's order is kept. */
static void test_fanout_100_and_order(void **state)
{
    (void)state;
    enum { NSUB = 100, NPUB = 3, NMSG = 200 };
    static fo_tc_t subs[NSUB];
    fo_tc_t pubs[NPUB];
    for (int i = 0; i < NSUB; i++) {
        assert_int_equal(fo_tc_open(&subs[i], broker.port, "fan"), 0);
        assert_int_equal(fo_tc_subscribe(&subs[i], 9, "fan.out", NULL), 0);
    }
    for (int p = 0; p < NPUB; p++)
        assert_int_equal(fo_tc_open(&pubs[p], broker.port, "pub"), 0);
    for (int m = 0; m < NMSG; m++)
        for (int p = 0; p < NPUB; p++) {
            char b[32];
            int n = snprintf(b, sizeof b, "%d:%d", p, m);
            assert_int_equal(fo_tc_publish(&pubs[p], "fan.out", b, (size_t)n, 0), 0);
        }
    for (int i = 0; i < NSUB; i++) {
        int next[NPUB] = {0};
        for (int k = 0; k < NPUB * NMSG; k++) {
            char payload[32];
            assert_int_equal(recv_deliver(&subs[i], 10000, NULL, NULL, 0, NULL, payload, sizeof payload), 1);
            int p, m;
            assert_int_equal(sscanf(payload, "%d:%d", &p, &m), 2);
            assert_int_equal(m, next[p]);     /* per-publisher order */
            next[p]++;
        }
        fo_tc_close(&subs[i]);
    }
    for (int p = 0; p < NPUB; p++)
        fo_tc_close(&pubs[p]);
    assert_true(fo_tb_metric(&broker, "fanout_messages_out_total") >= NSUB * NPUB * NMSG);
}

/* Members of a queue group share messages: disjoint, covering, fair. */
static void test_queue_group(void **state)
{
    (void)state;
    enum { NMEM = 4, NMSG = 400 };
    fo_tc_t mem[NMEM], plain, pub;
    for (int i = 0; i < NMEM; i++) {
        assert_int_equal(fo_tc_open(&mem[i], broker.port, "worker"), 0);
        assert_int_equal(fo_tc_subscribe(&mem[i], 1, "jobs.>", "g1"), 0);
    }
    assert_int_equal(fo_tc_open(&plain, broker.port, "audit"), 0);
    assert_int_equal(fo_tc_subscribe(&plain, 1, "jobs.>", NULL), 0);
    assert_int_equal(fo_tc_open(&pub, broker.port, "pub"), 0);
    for (int m = 0; m < NMSG; m++) {
        char b[16];
        int n = snprintf(b, sizeof b, "%d", m);
        fo_tc_publish(&pub, "jobs.q", b, (size_t)n, m == NMSG - 1 ? 99 : 0);
    }
    assert_int_equal(fo_tc_wait_ack(&pub, 99, 5000), 0);
    static int owner[NMSG];
    memset(owner, -1, sizeof owner);
    int got = 0;
    /* the plain subscriber gets all of them */
    for (int m = 0; m < NMSG; m++)
        assert_int_equal(recv_deliver(&plain, 5000, NULL, NULL, 0, NULL, NULL, 0), 1);
    for (int i = 0; i < NMEM; i++) {
        char payload[16];
        /* round-robin: exactly fair, so each member gets NMSG / NMEM */
        for (int k = 0; k < NMSG / NMEM; k++) {
            assert_int_equal(recv_deliver(&mem[i], 5000, NULL, NULL, 0, NULL, payload, sizeof payload), 1);
            int m = atoi(payload);
            assert_int_equal(owner[m], -1);   /* disjoint */
            owner[m] = i;
            got++;
        }
    }
    for (int i = 0; i < NMEM; i++) {            /* and nothing more */
        assert_int_equal(recv_deliver(&mem[i], 100, NULL, NULL, 0, NULL, NULL, 0), 0);
        fo_tc_close(&mem[i]);
    }
    assert_int_equal(got, NMSG);             /* covering */
    fo_tc_close(&plain);
    fo_tc_close(&pub);
}

static int send_subscribe_start(fo_tc_t *c, uint32_t sid, const char *filter, int start, uint64_t seq)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1; s.sid = sid; s.filter = (char *)filter;
    s.has_start = 1; s.start = start;
    if (start == FANOUT__START__START_SEQ) { s.has_start_seq = 1; s.start_seq = seq; }
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE; f.subscribe = &s;
    f.has_req = 1; f.req = 500 + sid;
    return fo_tc_send(c, &f);
}

/* Replay from retention (5 messages kept): earliest gives what is retained
 * in order, without a GAP; a start seq older than the ring gives GAP for
 * what is gone, then the rest; a start seq inside the ring gives no GAP. */
static void test_replay_and_gap(void **state)
{
    (void)state;
    fo_tc_t pub, sub;
    assert_int_equal(fo_tc_open(&pub, broker.port, "pub"), 0);
    for (int m = 1; m <= 8; m++) {
        char b[8];
        int n = snprintf(b, sizeof b, "%d", m);
        fo_tc_publish(&pub, "rp.t", b, (size_t)n, m == 8 ? 1 : 0);
    }
    assert_int_equal(fo_tc_wait_ack(&pub, 1, 5000), 0);
    assert_int_equal(fo_tc_open(&sub, broker.port, "sub"), 0);
    assert_int_equal(send_subscribe_start(&sub, 1, "rp.t", FANOUT__START__START_EARLIEST, 0), 0);
    Fanout__Frame *f;
    assert_int_equal(fo_tc_recv(&sub, 5000, &f), 1);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_ACK);  /* ACK first */
    /* EARLIEST is what is retained: no GAP for 1..3 (PROTOCOL.md §8) */
    for (uint64_t s = 4; s <= 8; s++) {
        assert_int_equal(fo_tc_recv(&sub, 5000, &f), 1);
        assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
        assert_int_equal(f->deliver->seq, s);
        assert_true(f->deliver->replay);
    }
    /* then live, without overlap or hole */
    fo_tc_publish(&pub, "rp.t", "9", 1, 0);
    uint64_t seq;
    assert_int_equal(recv_deliver(&sub, 5000, NULL, NULL, 0, &seq, NULL, 0), 1);
    assert_int_equal(seq, 9);
    /* from a seq older than the ring: GAP first, then what is retained */
    assert_int_equal(send_subscribe_start(&sub, 3, "rp.t", FANOUT__START__START_SEQ, 2), 0);
    assert_int_equal(fo_tc_wait_ack(&sub, 503, 5000), 0);
    assert_int_equal(fo_tc_recv(&sub, 5000, &f), 1);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_GAP);
    assert_int_equal(f->sid, 3);
    assert_int_equal(f->gap->first, 2);
    assert_int_equal(f->gap->last, 4);
    assert_int_equal(f->gap->reason, FANOUT__GAP_REASON__GAP_EVICTED);
    for (uint64_t s = 5; s <= 9; s++) {
        assert_int_equal(recv_deliver(&sub, 5000, NULL, NULL, 0, &seq, NULL, 0), 1);
        assert_int_equal(seq, s);
    }
    /* from a seq that is retained */
    assert_int_equal(send_subscribe_start(&sub, 2, "rp.t", FANOUT__START__START_SEQ, 7), 0);
    assert_int_equal(fo_tc_wait_ack(&sub, 502, 5000), 0);
    for (uint64_t s = 7; s <= 9; s++) {
        assert_int_equal(recv_deliver(&sub, 5000, NULL, NULL, 0, &seq, NULL, 0), 1);
        assert_int_equal(seq, s);
    }
    fo_tc_close(&sub);
    fo_tc_close(&pub);
}

static void test_unsubscribe_and_bad_sid(void **state)
{
    (void)state;
    fo_tc_t c;
    assert_int_equal(fo_tc_open(&c, broker.port, "u"), 0);
    assert_int_equal(fo_tc_subscribe(&c, 5, "un.x", NULL), 0);
    assert_int_not_equal(fo_tc_subscribe(&c, 5, "un.y", NULL), 0);   /* duplicate sid */
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Unsubscribe u = FANOUT__UNSUBSCRIBE__INIT;
    u.has_sid = 1; u.sid = 5;
    f.body_case = FANOUT__FRAME__BODY_UNSUBSCRIBE; f.unsubscribe = &u;
    f.has_req = 1; f.req = 77;
    fo_tc_send(&c, &f);
    assert_int_equal(fo_tc_wait_ack(&c, 77, 5000), 0);
    fo_tc_send(&c, &f);                                  /* again: unknown */
    assert_int_not_equal(fo_tc_wait_ack(&c, 77, 5000), 0);
    /* the connection stays usable */
    fo_tc_publish(&c, "un.x", "z", 1, 78);
    assert_int_equal(fo_tc_wait_ack(&c, 78, 5000), 0);
    assert_int_equal(recv_deliver(&c, 200, NULL, NULL, 0, NULL, NULL, 0), 0);
    fo_tc_close(&c);
}

static void test_thousand_connections(void **state)
{
    (void)state;
    enum { N = 1000 };
    static fo_tc_t c[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(fo_tc_open(&c[i], broker.port, "many"), 0);
    /* all N are open at once (each completed HELLO/WELCOME); connections of
     * earlier tests may still be closing, so count at least N, not before+N */
    assert_int_equal(fo_tb_wait_metric(&broker, "fanout_connections", N, 10000), 0);
    /* every one of them still works */
    assert_int_equal(fo_tc_subscribe(&c[0], 1, "many.t", NULL), 0);
    fo_tc_publish(&c[N - 1], "many.t", "hi", 2, 0);
    assert_int_equal(recv_deliver(&c[0], 5000, NULL, NULL, 0, NULL, NULL, 0), 1);
    for (int i = 0; i < N; i++)
        fo_tc_close(&c[i]);
}

static void test_metrics_and_health(void **state)
{
    (void)state;
    static char body[1 << 20];
    assert_int_equal(fo_tb_http_get(broker.http_port, "/healthz", body, sizeof body), 200);
    assert_int_equal(fo_tb_http_get(broker.http_port, "/metrics", body, sizeof body), 200);
    const char *names[] = { "fanout_connections ", "fanout_subscriptions ",
        "fanout_messages_in_total ", "fanout_messages_out_total ", "fanout_bytes_in_total ",
        "fanout_bytes_out_total ", "fanout_drops_slow_consumer_total ",
        "fanout_protocol_errors_total ", "fanout_memory_bytes ", "fanout_topics ",
        "fanout_worker_busy_seconds_total{worker=\"1\"} ", "# TYPE fanout_messages_in_total counter" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strstr(body, names[i]))
            fail_msg("metric missing: %s", names[i]);
    assert_true(fo_tb_metric(&broker, "fanout_messages_in_total") > 0);
    assert_true(fo_tb_metric(&broker, "fanout_topics") >= 1);
    assert_int_equal(fo_tb_http_get(broker.http_port, "/nope", body, sizeof body), 404);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_and_wildcards),
        cmocka_unit_test(test_fanout_100_and_order),
        cmocka_unit_test(test_queue_group),
        cmocka_unit_test(test_replay_and_gap),
        cmocka_unit_test(test_unsubscribe_and_bad_sid),
        cmocka_unit_test(test_thousand_connections),
        cmocka_unit_test(test_metrics_and_health),
    };
    return cmocka_run_group_tests_name("broker", tests, setup, teardown);
}
