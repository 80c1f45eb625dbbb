/* test_reclaim.c -- topics come and go: idle topics are freed (and come
 * back continuing their sequence numbers), --retention-age expires
 * retained messages, and reclamation racing publishes on every worker
 * loses nothing and never numbers backwards (run under TSan in CI). Every
 * wait has a deadline. */
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

/* Publish with req and return the ACK's seq (0 on anything else). */
static uint64_t publish_seq(fo_tc_t *c, const char *topic, uint64_t req)
{
    if (fo_tc_publish(c, topic, "x", 1, req))
        return 0;
    uint64_t end = fo_tb_now_ms() + 5000;
    for (Fanout__Frame *f; fo_tb_now_ms() < end;) {
        if (fo_tc_recv(c, 100, &f) != 1)
            continue;
        if (f->body_case == FANOUT__FRAME__BODY_ACK && f->ack->ref == req)
            return f->ack->seq;
        if (f->body_case == FANOUT__FRAME__BODY_ERROR)
            return 0;
    }
    return 0;
}

static int wait_metric_at_most(const fo_tb_t *b, const char *name, double v, int ms)
{
    uint64_t end = fo_tb_now_ms() + (uint64_t)ms;
    while (fo_tb_now_ms() < end) {
        double m = fo_tb_metric(b, name);
        if (m >= 0 && m <= v)
            return 0;
        (void)fo_tb_wait_metric(b, "fanout_loop_iterations_total",
                                fo_tb_metric(b, "fanout_loop_iterations_total") + 2, 50);
    }
    return -1;
}

static void test_idle_topics_freed(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--retention-msgs", "0", "--topic-linger", "0", "--max-topics", "1000",
                           NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t pub;
    assert_int_equal(fo_tc_open(&pub, b.port, "pub"), 0);
    /* more unique topics than --max-topics allows at once */
    enum { N = 5000 };
    char t[64];
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof t, "eph.%d", i);
        uint64_t seq = publish_seq(&pub, t, (uint64_t)i + 1);
        if (seq != 1) {
            /* the limit is hit before the sweeper frees enough: wait for it */
            assert_int_equal(wait_metric_at_most(&b, "fanout_topics", 500, 10000), 0);
            seq = publish_seq(&pub, t, (uint64_t)i + 1 + N);
        }
        assert_int_equal(seq, 1);
    }
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_topics_freed_total", N, 15000), 0);
    assert_int_equal(wait_metric_at_most(&b, "fanout_topics", 0, 10000), 0);
    assert_true(fo_tb_metric(&b, "fanout_topics_created_total") >= N);
    /* a freed topic comes back where it left off */
    assert_int_equal(publish_seq(&pub, "eph.7", 3 * N), 2);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

static void test_retention_age(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--retention-age", "300ms", "--topic-linger", "1h", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t pub, sub;
    assert_int_equal(fo_tc_open(&pub, b.port, "pub"), 0);
    for (int i = 1; i <= 3; i++)
        assert_int_equal(publish_seq(&pub, "age.t", (uint64_t)i), (uint64_t)i);
    /* subscribe from the earliest until nothing is retained any more */
    uint64_t end = fo_tb_now_ms() + 10000;
    int replays = -1;
    for (uint32_t sid = 1; replays != 0 && fo_tb_now_ms() < end; sid++) {
        assert_int_equal(fo_tc_open(&sub, b.port, "late"), 0);
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
        s.has_sid = 1;
        s.sid = sid;
        s.filter = "age.t";
        s.has_start = 1;
        s.start = FANOUT__START__START_EARLIEST;
        f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
        f.subscribe = &s;
        f.has_req = 1;
        f.req = 77;
        assert_int_equal(fo_tc_send(&sub, &f), 0);
        assert_int_equal(fo_tc_wait_ack(&sub, 77, 5000), 0);
        /* the replays follow the ACK at once; a PING marks their end */
        Fanout__Frame p = FANOUT__FRAME__INIT;
        Fanout__Ping pi = FANOUT__PING__INIT;
        p.body_case = FANOUT__FRAME__BODY_PING;
        p.ping = &pi;
        assert_int_equal(fo_tc_send(&sub, &p), 0);
        replays = 0;
        for (Fanout__Frame *g; fo_tc_recv(&sub, 5000, &g) == 1 && g->body_case != FANOUT__FRAME__BODY_PONG;)
            replays += g->body_case == FANOUT__FRAME__BODY_DELIVER;
        fo_tc_close(&sub);
    }
    assert_int_equal(replays, 0);
    /* the topic still numbers on */
    assert_int_equal(publish_seq(&pub, "age.t", 9), 4);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* ------------------------------------------------------------ races */

typedef struct racer {
    int port, id;
    _Atomic int *stop;
    int backwards, errors;
    uint64_t sent;
} racer_t;

#define RT 64    /* topics each racer cycles through */

/* Publish round-robin over RT topics with ACKs; each topic's sequence,
 * seen by this publisher, must only go up, freed or not. */
static void *racer(void *arg)
{
    racer_t *r = arg;
    fo_tc_t c;
    if (fo_tc_open(&c, r->port, "racer")) {
        r->errors++;
        return NULL;
    }
    uint64_t last[RT] = { 0 };
    char t[32];
    for (uint64_t k = 0; !atomic_load(r->stop); k++) {
        int i = (int)(k % RT);
        snprintf(t, sizeof t, "race.%d", i);
        uint64_t seq = publish_seq(&c, t, k + 1);
        if (!seq) {
            r->errors++;
            break;
        }
        if (seq <= last[i])
            r->backwards++;
        last[i] = seq;
        r->sent++;
    }
    fo_tc_close(&c);
    return NULL;
}

static void test_reclaim_races_publishes(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--threads", "2", "--retention-msgs", "0", "--topic-linger", "0", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    enum { R = 4 };
    _Atomic int stop = 0;
    racer_t rs[R];
    pthread_t th[R];
    for (int i = 0; i < R; i++) {
        rs[i] = (racer_t){ .port = b.port, .id = i, .stop = &stop };
        assert_int_equal(pthread_create(&th[i], NULL, racer, &rs[i]), 0);
    }
    /* a subscriber coming and going on some of the topics meanwhile */
    fo_tc_t sub;
    assert_int_equal(fo_tc_open(&sub, b.port, "churn"), 0);
    double freed0 = fo_tb_metric(&b, "fanout_topics_freed_total");
    uint64_t end = fo_tb_now_ms() + 30000;
    for (uint32_t sid = 1; fo_tb_now_ms() < end; sid++) {
        char f[32];
        snprintf(f, sizeof f, "race.%u", sid % RT);
        if (fo_tc_subscribe(&sub, sid, f, NULL))
            break;
        Fanout__Frame u = FANOUT__FRAME__INIT;
        Fanout__Unsubscribe us = FANOUT__UNSUBSCRIBE__INIT;
        us.has_sid = 1;
        us.sid = sid;
        u.body_case = FANOUT__FRAME__BODY_UNSUBSCRIBE;
        u.unsubscribe = &us;
        (void)fo_tc_send(&sub, &u);
        /* enough once many topics were freed under the publishers' feet */
        if (fo_tb_metric(&b, "fanout_topics_freed_total") >= freed0 + 2000)
            break;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < R; i++)
        pthread_join(th[i], NULL);
    fo_tc_close(&sub);
    for (int i = 0; i < R; i++) {
        assert_int_equal(rs[i].errors, 0);
        assert_int_equal(rs[i].backwards, 0);
        assert_true(rs[i].sent > 0);
    }
    assert_true(fo_tb_metric(&b, "fanout_topics_freed_total") >= freed0 + 2000);
    assert_int_equal(fo_tb_stop(&b), 0);       /* clean exit: sanitizers quiet */
}

/* Retained messages are a cache: when they fill message memory, the
 * sweep trims them, and publishes that the cap refused are accepted again
 * (they are never refused for good because of old messages nobody reads). */
static void test_retention_gives_way(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--max-memory", "4MiB", "--retention-msgs", "1000000",
                           "--retention-bytes", "1GiB", "--topic-linger", "1h", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t pub;
    assert_int_equal(fo_tc_open(&pub, b.port, "filler"), 0);
    char t[32], payload[200];
    memset(payload, 'r', sizeof payload);
    uint64_t req = 0;
    int refused = 0;
    /* fill retention until the cap refuses */
    for (int i = 0; i < 200000 && !refused; i++) {
        snprintf(t, sizeof t, "keep.%d", i % 50);
        assert_int_equal(fo_tc_publish(&pub, t, payload, sizeof payload, ++req), 0);
        Fanout__Frame *f;
        assert_int_equal(fo_tc_recv(&pub, 5000, &f), 1);
        refused = f->body_case == FANOUT__FRAME__BODY_ERROR;
    }
    assert_true(refused);
    /* ... and the sweep makes room: a publish is accepted again */
    uint64_t end = fo_tb_now_ms() + 10000;
    int accepted = 0;
    while (!accepted && fo_tb_now_ms() < end) {
        assert_int_equal(fo_tc_publish(&pub, "keep.0", payload, sizeof payload, ++req), 0);
        Fanout__Frame *f;
        assert_int_equal(fo_tc_recv(&pub, 5000, &f), 1);
        accepted = f->body_case == FANOUT__FRAME__BODY_ACK;
        if (!accepted)
            (void)fo_tb_wait_metric(&b, "fanout_retention_trimmed_total", 1, 300);
    }
    assert_true(accepted);
    assert_true(fo_tb_metric(&b, "fanout_retention_trimmed_total") > 0);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_topics_freed),
        cmocka_unit_test(test_retention_age),
        cmocka_unit_test(test_retention_gives_way),
        cmocka_unit_test(test_reclaim_races_publishes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
