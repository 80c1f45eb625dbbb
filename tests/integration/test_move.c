/* test_move.c -- a publisher whose topics' subscribers all live on another
 * worker moves there (worker.h, fo_worker_move): every message arrives
 * once and in order across the move, requests it makes afterwards get
 * their replies (forwarded from its first worker), and a publisher whose
 * subscribers are spread over workers stays. Two workers; every wait has
 * a deadline. */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "harness.h"

static fo_tb_t broker;

static int setup(void **state)
{
    (void)state;
    const char *args[] = { "--threads", "2", NULL };
    return fo_tb_start(&broker, args);
}

static int teardown(void **state)
{
    (void)state;
    return fo_tb_stop(&broker) == 0 ? 0 : -1;
}

static double worker_conns(int w)
{
    char name[64];
    snprintf(name, sizeof name, "fanout_worker_connections{worker=\"%d\"}", w);
    return fo_tb_metric(&broker, name);
}

/* Open connections until one lands on worker `want` (the acceptor deals
 * them round-robin): returns the spare ones closed, c open. */
static void open_on(fo_tc_t *c, int want, const char *name)
{
    for (int tries = 0; tries < 8; tries++) {
        double before = worker_conns(want);
        assert_int_equal(fo_tc_open(c, broker.port, name), 0);
        if (fo_tb_wait_metric(&broker, want ? "fanout_worker_connections{worker=\"1\"}"
                                            : "fanout_worker_connections{worker=\"0\"}",
                              before + 1, 500) == 0)
            return;
        fo_tc_close(c);
        (void)fo_tb_wait_metric(&broker, "fanout_connections_closed_total",
                                fo_tb_metric(&broker, "fanout_connections_closed_total"), 10);
    }
    fail_msg("no connection landed on worker %d", want);
}

/* Read n DELIVERs of topic on sub: their seqs must be 1..n in order. */
static void expect_seqs(fo_tc_t *sub, const char *topic, uint64_t from, uint64_t n)
{
    uint64_t want = from;
    uint64_t end = fo_tb_now_ms() + 30000;
    Fanout__Frame *f;
    while (want < from + n && fo_tb_now_ms() < end) {
        if (fo_tc_recv(sub, 1000, &f) != 1)
            continue;
        if (f->body_case != FANOUT__FRAME__BODY_DELIVER || strcmp(f->deliver->topic, topic))
            continue;
        if (f->deliver->seq != want)
            fail_msg("%s: seq %llu where %llu was due", topic, (unsigned long long)f->deliver->seq,
                     (unsigned long long)want);
        want++;
    }
    assert_int_equal(want, from + n);
}

static void test_publisher_moves_losing_nothing(void **state)
{
    (void)state;
    fo_tc_t sub, pub;
    open_on(&sub, 0, "sub");
    assert_int_equal(fo_tc_subscribe(&sub, 1, "move.t", NULL), 0);
    open_on(&pub, 1, "pub");
    double moved = fo_tb_metric(&broker, "fanout_connections_moved_total");
    /* publishes without waiting: the move happens with messages in flight */
    enum { N = 20000 };
    for (int i = 0; i < N; i++)
        assert_int_equal(fo_tc_publish(&pub, "move.t", "m", 1, 0), 0);
    expect_seqs(&sub, "move.t", 1, N);
    assert_int_equal(fo_tb_wait_metric(&broker, "fanout_connections_moved_total", moved + 1, 5000), 0);
    /* both on worker 0 now */
    assert_int_equal(fo_tb_wait_metric(&broker, "fanout_worker_connections{worker=\"0\"}", 2, 5000), 0);
    assert_true(worker_conns(1) == 0);
    /* it keeps working from there, acknowledged */
    assert_int_equal(fo_tc_publish(&pub, "move.t", "late", 4, 7), 0);
    assert_int_equal(fo_tc_wait_ack(&pub, 7, 5000), 0);
    expect_seqs(&sub, "move.t", N + 1, 1);
    fo_tc_close(&pub);
    fo_tc_close(&sub);
}

/* Its inbox keeps the id it got in WELCOME: a reply goes to its first
 * worker, which forwards it. */
static void test_moved_requester_gets_replies(void **state)
{
    (void)state;
    fo_tc_t sub, pub, svc;
    open_on(&sub, 0, "sub");
    assert_int_equal(fo_tc_subscribe(&sub, 1, "move.r", NULL), 0);
    /* the requester: its WELCOME inbox */
    char inbox[128] = "";
    for (int tries = 0; tries < 8 && !inbox[0]; tries++) {
        double before = worker_conns(1);
        assert_int_equal(fo_tc_connect(&pub, broker.port), 0);
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Hello h = FANOUT__HELLO__INIT;
        h.has_version = 1;
        h.version = 1;
        f.body_case = FANOUT__FRAME__BODY_HELLO;
        f.hello = &h;
        Fanout__Frame *r;
        assert_int_equal(fo_tc_send(&pub, &f), 0);
        assert_int_equal(fo_tc_recv(&pub, 5000, &r), 1);
        assert_int_equal(r->body_case, FANOUT__FRAME__BODY_WELCOME);
        if (fo_tb_wait_metric(&broker, "fanout_worker_connections{worker=\"1\"}", before + 1, 500) == 0)
            snprintf(inbox, sizeof inbox, "%s", r->welcome->inbox);
        else
            fo_tc_close(&pub);
    }
    assert_true(inbox[0]);
    double moved = fo_tb_metric(&broker, "fanout_connections_moved_total");
    for (int i = 0; i < 5000; i++)
        assert_int_equal(fo_tc_publish(&pub, "move.r", "m", 1, 0), 0);
    expect_seqs(&sub, "move.r", 1, 5000);
    assert_int_equal(fo_tb_wait_metric(&broker, "fanout_connections_moved_total", moved + 1, 5000), 0);
    /* a responder answers the moved connection's inbox */
    assert_int_equal(fo_tc_open(&svc, broker.port, "svc"), 0);
    char reply_to[160];
    snprintf(reply_to, sizeof reply_to, "%s.1", inbox);
    assert_int_equal(fo_tc_publish(&svc, reply_to, "answer", 6, 9), 0);
    assert_int_equal(fo_tc_wait_ack(&svc, 9, 5000), 0);
    Fanout__Frame *f;
    uint64_t end = fo_tb_now_ms() + 5000;
    int got = 0;
    while (!got && fo_tb_now_ms() < end)
        if (fo_tc_recv(&pub, 500, &f) == 1 && f->body_case == FANOUT__FRAME__BODY_DELIVER &&
            f->sid == 0 && !strcmp(f->deliver->topic, reply_to))
            got = 1;
    assert_true(got);
    fo_tc_close(&svc);
    fo_tc_close(&pub);
    fo_tc_close(&sub);
}

/* Subscribers on both workers: the publisher's messages are shared out
 * from where it is; it does not move. */
static void test_spread_subscribers_keep_publisher(void **state)
{
    (void)state;
    fo_tc_t s0, s1, pub;
    open_on(&s0, 0, "s0");
    open_on(&s1, 1, "s1");
    assert_int_equal(fo_tc_subscribe(&s0, 1, "move.s", NULL), 0);
    assert_int_equal(fo_tc_subscribe(&s1, 1, "move.s", NULL), 0);
    assert_int_equal(fo_tc_open(&pub, broker.port, "pub"), 0);
    double moved = fo_tb_metric(&broker, "fanout_connections_moved_total");
    enum { N = 5000 };
    for (int i = 0; i < N; i++)
        assert_int_equal(fo_tc_publish(&pub, "move.s", "m", 1, i == N - 1 ? 5 : 0), 0);
    assert_int_equal(fo_tc_wait_ack(&pub, 5, 10000), 0);
    expect_seqs(&s0, "move.s", 1, N);
    expect_seqs(&s1, "move.s", 1, N);
    assert_true(fo_tb_metric(&broker, "fanout_connections_moved_total") == moved);
    fo_tc_close(&pub);
    fo_tc_close(&s0);
    fo_tc_close(&s1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publisher_moves_losing_nothing),
        cmocka_unit_test(test_moved_requester_gets_replies),
        cmocka_unit_test(test_spread_subscribers_keep_publisher),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
