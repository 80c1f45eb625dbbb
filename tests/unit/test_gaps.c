/* test_gaps.c -- the multicast receiver's per-topic sequence tracker. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "gaps.h"

/* What the callbacks saw, as a readable log: "a:1 a:2r a:L3-4 a:?5-6". */
typedef struct rec {
    char log[8192];
    fo__gaps_t *g;
} rec_t;

static void logf_(rec_t *r, const char *fmt, ...)
{
    size_t n = strlen(r->log);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->log + n, sizeof(r->log) - n, fmt, ap);
    va_end(ap);
}

static void on_deliver(void *ud, const char *topic, uint64_t seq, const uint8_t *p, size_t n,
                       int repaired)
{
    rec_t *r = ud;
    char want[32];
    snprintf(want, sizeof(want), "p%llu", (unsigned long long)seq);
    if (n) /* payloads are "p<seq>" unless empty */
        assert_memory_equal(p, want, n);
    logf_(r, "%s:%llu%s ", topic, (unsigned long long)seq, repaired ? "r" : "");
}

static void on_lost(void *ud, const char *topic, uint64_t first, uint64_t last)
{
    logf_(ud, "%s:L%llu-%llu ", topic, (unsigned long long)first, (unsigned long long)last);
}

static void on_repair(void *ud, const char *topic, uint64_t first, uint64_t last)
{
    logf_(ud, "%s:?%llu-%llu ", topic, (unsigned long long)first, (unsigned long long)last);
}

static rec_t *rec_new_opts(const fo__gaps_opts_t *o)
{
    rec_t *r = calloc(1, sizeof(*r));
    fo__gaps_cb_t cb = { on_deliver, on_lost, on_repair, r };
    assert_int_equal(fo__gaps_create(o, &cb, &r->g), FO_OK);
    return r;
}

/* Tail probes off (test_tail_probe has them). */
static rec_t *rec_new(uint32_t window, uint32_t max_topics, uint64_t max_bytes)
{
    fo__gaps_opts_t o = { .window = window, .max_topics = max_topics, .max_bytes = max_bytes,
                         .reorder_ms = 10, .repair_ms = 100, .probe_ms = UINT32_MAX };
    return rec_new_opts(&o);
}

static void rec_free(rec_t *r)
{
    fo__gaps_destroy(r->g);
    free(r);
}

/* Offer "p<seq>" on topic at time now. */
static void offer(rec_t *r, const char *topic, uint64_t seq, unsigned flags, uint64_t now)
{
    char p[32];
    int n = snprintf(p, sizeof(p), "p%llu", (unsigned long long)seq);
    assert_int_equal(fo__gaps_offer(r->g, topic, seq, (const uint8_t *)p,
                                    flags & FO__GAPS_OVERSIZE ? 0 : (size_t)n, flags, now),
                     FO_OK);
}

static void offer_all(rec_t *r, const char *topic, const char *seqs, uint64_t now)
{
    char *end;
    for (const char *s = seqs; *s; s = end) {
        uint64_t v = strtoull(s, &end, 10);
        offer(r, topic, v, 0, now);
        while (*end == ' ')
            end++;
    }
}

static fo__gaps_stats_t stats(rec_t *r)
{
    fo__gaps_stats_t st;
    fo__gaps_stats(r->g, &st);
    return st;
}

static void test_in_order_and_duplicates(void **state)
{
    (void)state;
    rec_t *r = rec_new(0, 0, 0);
    offer_all(r, "a", "5 6 7 6 5 7 8", 1000);    /* starts where it joins */
    assert_string_equal(r->log, "a:5 a:6 a:7 a:8 ");
    fo__gaps_stats_t st = stats(r);
    assert_int_equal(st.received, 4);
    assert_int_equal(st.duplicates, 3);
    assert_int_equal(st.gaps, 0);
    assert_int_equal(fo__gaps_poll(r->g, 1000), UINT32_MAX);
    rec_free(r);
}

static void test_reorder_within_window(void **state)
{
    (void)state;
    rec_t *r = rec_new(0, 0, 0);
    offer_all(r, "a", "1 3 4", 1000);
    assert_string_equal(r->log, "a:1 ");
    assert_int_equal(fo__gaps_poll(r->g, 1005), 5); /* hole is 5 ms old */
    offer_all(r, "a", "2 3", 1006);                 /* late one, then a dup */
    assert_string_equal(r->log, "a:1 a:2 a:3 a:4 ");
    fo__gaps_stats_t st = stats(r);
    assert_int_equal(st.gaps, 1);
    assert_int_equal(st.late, 1);
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(st.repair_requests, 0);
    assert_int_equal(fo__gaps_poll(r->g, 2000), UINT32_MAX);
    rec_free(r);
}

static void test_repair_in_order(void **state)
{
    (void)state;
    rec_t *r = rec_new(0, 0, 0);
    offer_all(r, "a", "1 3 5 6 9", 1000);
    assert_string_equal(r->log, "a:1 ");
    assert_int_equal(fo__gaps_poll(r->g, 1010), 100);
    assert_string_equal(r->log, "a:1 a:?2-2 a:?4-4 a:?7-8 ");
    assert_int_equal(fo__gaps_poll(r->g, 1020), 90);  /* asked once only */
    memset(r->log, 0, sizeof(r->log));
    offer(r, "a", 4, FO__GAPS_REPAIRED, 1030);
    offer(r, "a", 2, FO__GAPS_REPAIRED, 1030);
    offer(r, "a", 2, FO__GAPS_REPAIRED, 1030);       /* dup repair */
    offer(r, "a", 8, FO__GAPS_REPAIRED, 1030);
    offer(r, "a", 7, FO__GAPS_REPAIRED, 1030);
    assert_string_equal(r->log, "a:2r a:3 a:4r a:5 a:6 a:7r a:8r a:9 ");
    fo__gaps_stats_t st = stats(r);
    assert_int_equal(st.received, 9);
    assert_int_equal(st.gaps, 4);
    assert_int_equal(st.repaired, 4);
    assert_int_equal(st.lost, 0);
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(st.repair_requests, 3);
    rec_free(r);
}

/* At high rates a hole far behind the newest message is asked for at once,
 * without waiting reorder_ms. */
static void test_far_hole_asked_at_once(void **state)
{
    (void)state;
    fo__gaps_opts_t o = { .window = 64, .reorder_ms = 1000, .repair_ms = 5000, .reorder_seqs = 8,
                         .probe_ms = UINT32_MAX };
    rec_t *r = rec_new_opts(&o);
    offer_all(r, "a", "1 3 4 5 6 7 8 9", 1000);
    fo__gaps_poll(r->g, 1000);
    assert_string_equal(r->log, "a:1 ");            /* 8 behind the newest: not yet */
    offer_all(r, "a", "10", 1000);
    fo__gaps_poll(r->g, 1000);
    assert_string_equal(r->log, "a:1 a:?2-2 ");
    rec_free(r);
}

/* A quiet topic gets one probe past its highest sequence; what the broker
 * resends there is a repaired gap, what it reports gone is lost. */
static void test_tail_probe(void **state)
{
    (void)state;
    fo__gaps_opts_t o = { .window = 16, .reorder_ms = 10, .repair_ms = 100, .probe_ms = 50 };
    rec_t *r = rec_new_opts(&o);
    offer_all(r, "a", "1 2", 1000);
    offer_all(r, "b", "7", 1020);
    assert_int_equal(fo__gaps_poll(r->g, 1030), 20); /* a is quiet the longest */
    assert_int_equal(fo__gaps_poll(r->g, 1050), 20); /* a probed; b next */
    assert_string_equal(r->log, "a:1 a:2 b:7 a:?3-18 ");
    assert_int_equal(fo__gaps_poll(r->g, 1060), 10); /* once only */
    offer(r, "a", 3, FO__GAPS_REPAIRED, 1061);     /* its last datagram was lost */
    offer(r, "a", 4, FO__GAPS_REPAIRED, 1061);
    assert_int_equal(fo__gaps_poll(r->g, 1070), UINT32_MAX);
    assert_string_equal(r->log, "a:1 a:2 b:7 a:?3-18 a:3r a:4r b:?8-23 ");
    fo__gaps_lost(r->g, "b", 8, 9);                 /* gone before the probe */
    assert_string_equal(r->log, "a:1 a:2 b:7 a:?3-18 a:3r a:4r b:?8-23 b:L8-9 ");
    offer_all(r, "b", "10", 1080);
    fo__gaps_stats_t st = stats(r);
    assert_int_equal(st.probes, 2);
    assert_int_equal(st.gaps, 4);
    assert_int_equal(st.repaired, 2);
    assert_int_equal(st.lost, 2);
    assert_int_equal(st.received, 6);
    assert_int_equal(st.duplicates, 0);
    rec_free(r);
}

static void test_broker_gap_and_timeout(void **state)
{
    (void)state;
    rec_t *r = rec_new(0, 0, 0);
    offer_all(r, "a", "1 4 7", 1000);
    fo__gaps_poll(r->g, 1010);
    /* the broker no longer has 2..3 (asked 2..3, told 1..3) */
    fo__gaps_lost(r->g, "a", 1, 3);
    fo__gaps_lost(r->g, "nope", 1, 3);              /* unknown topic: ignored */
    assert_string_equal(r->log, "a:1 a:?2-3 a:?5-6 a:L2-3 a:4 ");
    offer(r, "a", 3, FO__GAPS_REPAIRED, 1011);      /* too late: dup */
    /* 5..6 never come: given up after repair_ms */
    assert_int_equal(fo__gaps_poll(r->g, 1109), 1);
    assert_int_equal(fo__gaps_poll(r->g, 1110), UINT32_MAX);
    assert_string_equal(r->log, "a:1 a:?2-3 a:?5-6 a:L2-3 a:4 a:L5-6 a:7 ");
    fo__gaps_stats_t st = stats(r);
    assert_int_equal(st.gaps, 4);
    assert_int_equal(st.lost, 4);
    assert_int_equal(st.duplicates, 1);
    rec_free(r);
}

static void test_window_bound(void **state)
{
    (void)state;
    rec_t *r = rec_new(8, 0, 0);
    offer_all(r, "a", "1 20", 1000);
    /* 20 forces the window to 13..20: 2..12 are given up at once */
    assert_string_equal(r->log, "a:1 a:L2-12 ");
    offer_all(r, "a", "3", 1000);                   /* below the window: dup */
    offer_all(r, "a", "24", 1000);                  /* window 17..24 */
    assert_string_equal(r->log, "a:1 a:L2-12 a:L13-16 ");
    fo__gaps_stats_t st = stats(r);
    assert_int_equal(st.gaps, 11 + 7 + 3);
    assert_int_equal(st.lost, 11 + 4);
    assert_int_equal(st.duplicates, 1);
    fo__gaps_flush(r->g);
    assert_string_equal(r->log, "a:1 a:L2-12 a:L13-16 a:L17-19 a:20 a:L21-23 a:24 ");
    rec_free(r);
}

static void test_byte_bound(void **state)
{
    (void)state;
    rec_t *r = rec_new(0, 0, 3);                    /* "p3" + "p5" > 3 bytes */
    offer_all(r, "a", "1 3 5", 1000);
    assert_string_equal(r->log, "a:1 a:L2-2 a:3 a:L4-4 a:5 ");
    assert_int_equal(stats(r).lost, 2);
    rec_free(r);
}

static void test_topic_bound_and_independence(void **state)
{
    (void)state;
    rec_t *r = rec_new(0, 2, 0);
    offer_all(r, "a", "1 3", 1000);
    offer_all(r, "b", "7 8", 1000);
    offer_all(r, "c", "1 1", 1000);                 /* third topic: untracked */
    assert_string_equal(r->log, "a:1 b:7 b:8 c:1 c:1 ");
    fo__gaps_stats_t st = stats(r);
    assert_int_equal(st.untracked, 2);
    assert_int_equal(st.received, 5);
    offer_all(r, "a", "2", 1000);
    assert_string_equal(r->log, "a:1 b:7 b:8 c:1 c:1 a:2 a:3 ");
    rec_free(r);
}

static void test_oversize_marker(void **state)
{
    (void)state;
    rec_t *r = rec_new(0, 0, 0);
    offer(r, "a", 1, 0, 1000);
    offer(r, "a", 2, FO__GAPS_OVERSIZE, 1000);
    offer(r, "a", 2, FO__GAPS_OVERSIZE, 1000);      /* the marker twice */
    offer(r, "a", 3, 0, 1000);
    fo__gaps_poll(r->g, 1000);                      /* asked at once */
    offer(r, "a", 2, FO__GAPS_REPAIRED, 1001);
    assert_string_equal(r->log, "a:1 a:?2-2 a:2r a:3 ");
    fo__gaps_stats_t st = stats(r);
    assert_int_equal(st.oversize, 2);
    assert_int_equal(st.gaps, 0);
    assert_int_equal(st.repaired, 1);
    assert_int_equal(st.duplicates, 1);
    rec_free(r);
}

static void test_reset_and_flush(void **state)
{
    (void)state;
    rec_t *r = rec_new(0, 0, 0);
    offer_all(r, "a", "10 12", 1000);
    offer_all(r, "b", "1 3", 1000);
    fo__gaps_reset(r->g);                           /* broker restarted */
    offer_all(r, "a", "1 2", 1000);
    assert_string_equal(r->log, "a:10 b:1 a:1 a:2 ");
    offer_all(r, "a", "4", 1000);
    offer_all(r, "b", "5 7", 1000);
    fo__gaps_flush(r->g);
    assert_true(strstr(r->log, "a:L3-3 a:4 ") != NULL);
    assert_true(strstr(r->log, "b:L6-6 b:7 ") != NULL);
    assert_int_equal(fo__gaps_poll(r->g, 5000), UINT32_MAX);
    rec_free(r);
}

/* Many topics, shuffled and thinned, every hole repaired on request:
 * everything arrives once, in order; the books balance. */
static void on_deliver_count(void *ud, const char *topic, uint64_t seq, const uint8_t *p,
                             size_t n, int repaired)
{
    (void)p; (void)n; (void)repaired;
    uint64_t *next = ud;
    int t = atoi(topic + 1);
    assert_int_equal(seq, next[t]);
    next[t]++;
}

/* One of test_random's one-byte messages. */
static fo_err_t offer_x(fo__gaps_t *g, const char *topic, int seq, unsigned flags, uint64_t now)
{
    return fo__gaps_offer(g, topic, (uint64_t)seq, (const uint8_t *)"x", 1, flags, now);
}

static void test_random(void **state)
{
    (void)state;
    enum { T = 50, N = 400 };
    uint64_t next[T];
    for (int i = 0; i < T; i++)
        next[i] = 1;
    fo__gaps_opts_t o = { .window = 64, .reorder_ms = 2, .repair_ms = 50 };
    fo__gaps_cb_t cb = { on_deliver_count, NULL, NULL, next };
    fo__gaps_t *rand_g = NULL;
    assert_int_equal(fo__gaps_create(&o, &cb, &rand_g), FO_OK);
    srand(12345);
    uint64_t now = 1;
    char topic[16];
    uint8_t dropped[T][N + 1];
    memset(dropped, 0, sizeof(dropped));
    /* every topic starts at seq 1 (offered first, in order) */
    for (int t = 0; t < T; t++) {
        snprintf(topic, sizeof(topic), "t%d", t);
        assert_int_equal(offer_x(rand_g, topic, 1, 0, now), FO_OK);
    }
    for (int s = 2; s <= N; s += 4) {
        for (int t = 0; t < T; t++) {
            int order[4] = { 0, 1, 2, 3 };
            for (int k = 3; k > 0; k--) {
                int j = rand() % (k + 1), x = order[k];
                order[k] = order[j];
                order[j] = x;
            }
            snprintf(topic, sizeof(topic), "t%d", t);
            for (int k = 0; k < 4; k++) {
                int seq = s + order[k];
                if (seq > N)
                    continue;
                if (rand() % 10 == 0) {
                    dropped[t][seq] = 1;
                    continue;
                }
                assert_int_equal(offer_x(rand_g, topic, seq, 0, now), FO_OK);
                if (rand() % 30 == 0)              /* network duplicate */
                    assert_int_equal(offer_x(rand_g, topic, seq, 0, now), FO_OK);
            }
        }
        now++;
        fo__gaps_poll(rand_g, now);
        /* repair: everything dropped so far that is still wanted */
        for (int t = 0; t < T; t++) {
            snprintf(topic, sizeof(topic), "t%d", t);
            for (int seq = 1; seq <= N; seq++)
                if (dropped[t][seq] && now % 3 == 0) {
                    assert_int_equal(offer_x(rand_g, topic, seq, FO__GAPS_REPAIRED, now), FO_OK);
                    dropped[t][seq] = 0;
                }
        }
    }
    for (int t = 0; t < T; t++) {
        snprintf(topic, sizeof(topic), "t%d", t);
        for (int seq = 1; seq <= N; seq++)
            if (dropped[t][seq])
                assert_int_equal(offer_x(rand_g, topic, seq, FO__GAPS_REPAIRED, now), FO_OK);
    }
    fo__gaps_flush(rand_g);
    fo__gaps_stats_t st;
    fo__gaps_stats(rand_g, &st);
    for (int t = 0; t < T; t++)
        assert_int_equal(next[t], N + 1);
    assert_int_equal(st.received, (uint64_t)T * N);
    assert_int_equal(st.lost, 0);
    assert_int_equal(st.gaps, st.late + st.repaired + st.lost);
    assert_true(st.repaired > 0);
    fo__gaps_destroy(rand_g);
}

static void test_defaults_and_null(void **state)
{
    (void)state;
    fo__gaps_t *g = NULL;
    assert_int_equal(fo__gaps_create(NULL, NULL, &g), FO_OK);
    /* no callbacks: counts only */
    assert_int_equal(fo__gaps_offer(g, "a", 1, NULL, 0, 0, 1), FO_OK);
    assert_int_equal(fo__gaps_offer(g, "a", 3, NULL, 0, 0, 1), FO_OK);
    fo__gaps_poll(g, 10);
    fo__gaps_flush(g);
    fo__gaps_stats_t st;
    fo__gaps_stats(g, &st);
    assert_int_equal(st.received, 2);
    assert_int_equal(st.lost, 1);
    assert_int_equal(st.repair_requests, 1);
    fo__gaps_destroy(g);
    fo__gaps_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_and_duplicates),
        cmocka_unit_test(test_reorder_within_window),
        cmocka_unit_test(test_repair_in_order),
        cmocka_unit_test(test_far_hole_asked_at_once),
        cmocka_unit_test(test_tail_probe),
        cmocka_unit_test(test_broker_gap_and_timeout),
        cmocka_unit_test(test_window_bound),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_topic_bound_and_independence),
        cmocka_unit_test(test_oversize_marker),
        cmocka_unit_test(test_reset_and_flush),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_defaults_and_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
