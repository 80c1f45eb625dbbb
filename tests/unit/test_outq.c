/* test_outq.c -- output queue: iovec layout, partial writes, drop-oldest
 * with GAP notices in place, drop-unsent. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "outq.h"
#include "stats.h"

static fo_mem_t mem;

static fo_msg_t *mk(void *topic, uint64_t seq)
{
    return fo_msg_new(&mem, topic, "q.t", 3, seq, 0, (const uint8_t *)"payload", 7, 0);
}

/* Flatten what fo_outq_iov gives, write only `chunk` bytes at a time, and
 * decode the stream: frames must come out whole and in order. */
static size_t drain(fo_outq_t *q, uint8_t *out, size_t chunk)
{
    size_t total = 0;
    struct iovec iov[64];
    uint8_t scratch[32 * FO_DELIVER_PREFIX_MAX];
    while (q->count) {
        int n = fo_outq_iov(q, iov, 64, scratch);
        size_t took = 0;
        for (int i = 0; i < n && took < chunk; i++) {
            size_t k = iov[i].iov_len < chunk - took ? iov[i].iov_len : chunk - took;
            memcpy(out + total + took, iov[i].iov_base, k);
            took += k;
        }
        fo_outq_advance(q, took);
        total += took;
    }
    assert_int_equal(q->bytes, 0);
    return total;
}

/* Packed iovecs (small entries copied, big ones by reference) carry the
 * same bytes as fo_outq_copy, through partial writes of every size and a
 * pack buffer that runs out mid-queue. */
static void test_packed_iov_same_bytes(void **state)
{
    (void)state;
    static uint8_t big[3000], want[64 * 1024], got[64 * 1024], pack[700];
    memset(big, 'B', sizeof big);
    for (size_t chunk = 1; chunk < 5000; chunk = chunk * 3 + 1) {
        fo_outq_t q;
        fo_outq_init(&q);
        for (uint64_t s = 1; s <= 12; s++) {
            size_t len = s % 4 == 0 ? sizeof big : s * 9;     /* mixed small and big */
            fo_msg_t *m = fo_msg_new(&mem, NULL, "q.t", 3, s, 0, big, len, 0);
            assert_int_equal(fo_outq_push_msg(&q, m, (uint32_t)s, 1), FO_OK);
        }
        size_t total = (size_t)q.bytes;
        assert_int_equal(fo_outq_copy(&q, want, sizeof want), total);
        size_t off = 0;
        while (q.count) {
            struct iovec iov[8];
            uint8_t scratch[4 * FO_DELIVER_PREFIX_MAX];
            int n = fo_outq_iov_packed(&q, iov, 8, scratch, pack, sizeof pack);
            assert_true(n > 0);
            size_t took = 0;
            for (int i = 0; i < n && took < chunk; i++) {
                size_t k = iov[i].iov_len < chunk - took ? iov[i].iov_len : chunk - took;
                memcpy(got + off + took, iov[i].iov_base, k);
                took += k;
            }
            fo_outq_advance(&q, took);
            off += took;
        }
        assert_int_equal(off, total);
        assert_memory_equal(got, want, total);
        fo_outq_clear(&q);
    }
    assert_int_equal(atomic_load(&mem.used), 0);
}

/* Each message written out completely is observed once, with its delay;
 * a half-written one waits; replays and frames are not messages. */
static void test_advance_timed_observes_delays(void **state)
{
    (void)state;
    fo_outq_t q;
    fo_outq_init(&q);
    fo_msg_t *a = fo_msg_new(&mem, NULL, "q.t", 3, 1, 1000, (const uint8_t *)"x", 1, 0);
    fo_msg_t *r = fo_msg_new(&mem, NULL, "q.t", 3, 2, 1000, (const uint8_t *)"x", 1, 1);
    fo_msg_t *b = fo_msg_new(&mem, NULL, "q.t", 3, 3, 5000, (const uint8_t *)"x", 1, 0);
    assert_int_equal(fo_outq_push_msg(&q, a, 1, 1), FO_OK);
    assert_int_equal(fo_outq_push_msg(&q, r, 1, 1), FO_OK);
    assert_int_equal(fo_outq_push_msg(&q, b, 1, 1), FO_OK);
    uint32_t la = q.ring[0].len;
    fo_delay_hist_t h;
    memset(&h, 0, sizeof h);
    fo_outq_advance_timed(&q, la - 1, 21000, &h);          /* a: not all of it */
    assert_int_equal(atomic_load(&h.count[0]) + atomic_load(&h.count[1]), 0);
    fo_outq_advance_timed(&q, 1, 21000, &h);               /* a: 20 µs */
    assert_int_equal(atomic_load(&h.count[1]), 1);         /* <= 25 µs */
    assert_int_equal(atomic_load(&h.sum_ns), 20000);
    fo_outq_advance_timed(&q, (size_t)q.bytes, 5000 + 600000, &h);   /* the replay, then b */
    assert_int_equal(atomic_load(&h.count[6]), 1);         /* 600 µs: <= 1 ms */
    assert_int_equal(atomic_load(&h.sum_ns), 620000);
    fo_outq_clear(&q);
    assert_int_equal(atomic_load(&mem.used), 0);
}

static void test_iov_and_partial_writes(void **state)
{
    (void)state;
    for (size_t chunk = 1; chunk < 80; chunk += 7) {
        fo_outq_t q;
        fo_outq_init(&q);
        for (uint64_t s = 1; s <= 5; s++)
            assert_int_equal(fo_outq_push_msg(&q, mk(NULL, s), (uint32_t)(s * 100), 1), FO_OK);
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Pong p = FANOUT__PONG__INIT;
        f.body_case = FANOUT__FRAME__BODY_PONG; f.pong = &p;
        assert_int_equal(fo_outq_push_frame(&q, &f), FO_OK);
        uint64_t bytes = q.bytes;
        static uint8_t out[4096];
        assert_int_equal(drain(&q, out, chunk), bytes);
        fo_decoder_t d;
        fo_decoder_init(&d, 0);
        assert_int_equal(fo_decoder_feed(&d, out, bytes), FO_OK);
        fo_arena_t a;
        assert_int_equal(fo_arena_init(&a, 1024, 0), FO_OK);
        const uint8_t *body; size_t len;
        for (uint64_t s = 1; s <= 6; s++) {
            assert_int_equal(fo_decoder_next(&d, &body, &len), FO_OK);
            Fanout__Frame *g;
            assert_int_equal(fo_frame_unpack(body, len, &a, &g), FO_OK);
            if (s <= 5) {
                assert_int_equal(g->deliver->seq, s);
                assert_int_equal(g->sid, s * 100);
            } else {
                assert_int_equal(g->body_case, FANOUT__FRAME__BODY_PONG);
            }
        }
        fo_decoder_destroy(&d);
        fo_arena_destroy(&a);
        fo_outq_trim(&q);
        assert_null(q.ring);
    }
    assert_int_equal(atomic_load(&mem.used), 0);
}

/* fo_outq_copy (TLS record packing) gives the same bytes as the iovecs,
 * whatever the chunk and wherever a chunk ends (prefix, body, frame). */
static void fill(fo_outq_t *q)
{
    fo_outq_init(q);
    for (uint64_t s = 1; s <= 5; s++)
        assert_int_equal(fo_outq_push_msg(q, mk(NULL, s), (uint32_t)(s * 1000), 1), FO_OK);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Pong p = FANOUT__PONG__INIT;
    f.body_case = FANOUT__FRAME__BODY_PONG; f.pong = &p;
    assert_int_equal(fo_outq_push_frame(q, &f), FO_OK);
    assert_int_equal(fo_outq_push_msg(q, mk(NULL, 6), 7, 1), FO_OK);
}

static void test_copy_matches_iov(void **state)
{
    (void)state;
    for (size_t chunk = 1; chunk < 120; chunk += 3) {
        fo_outq_t a, b;
        fill(&a);
        fill(&b);
        uint64_t bytes = a.bytes;
        static uint8_t want[4096], got[4096];
        assert_int_equal(drain(&a, want, 4096), bytes);
        size_t total = 0;
        while (b.count) {
            size_t n = fo_outq_copy(&b, got + total, chunk);
            assert_true(n > 0 && n <= chunk);
            assert_true(n == chunk || n == b.bytes);   /* full, or the rest */
            fo_outq_advance(&b, n);
            total += n;
        }
        assert_int_equal(total, bytes);
        assert_memory_equal(got, want, bytes);
        fo_outq_clear(&a);
        fo_outq_clear(&b);
    }
    assert_int_equal(atomic_load(&mem.used), 0);
}

static int runs, notices;
static uint64_t run_first[8], run_last[8];
static void on_drop(void *ud, uint32_t sid, uint64_t first, uint64_t last, int new_notice)
{
    (void)ud;
    (void)sid;
    run_first[runs] = first;
    run_last[runs] = last;
    runs++;
    notices += new_notice;
}

/* Decode entry i of q as a GAP frame (protobuf-c reads what outq wrote). */
static void expect_gap(fo_outq_t *q, uint32_t i, uint32_t sid, uint64_t first, uint64_t last)
{
    const fo_out_t *e = &q->ring[(q->head + i) & (q->cap - 1)];
    assert_null(e->msg);
    assert_true(e->gap);
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 1024, 0), FO_OK);
    Fanout__Frame *f;
    assert_int_equal(fo_be32_get(e->frame), e->len - FO_FRAME_HDR);
    assert_int_equal(fo_frame_unpack(e->frame + FO_FRAME_HDR, e->len - FO_FRAME_HDR, &a, &f), FO_OK);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_GAP);
    assert_int_equal(f->sid, sid);
    assert_string_equal(f->gap->topic, "q.t");
    assert_int_equal(f->gap->first, first);
    assert_int_equal(f->gap->last, last);
    assert_true(f->gap->has_reason);
    fo_arena_destroy(&a);
}

static void test_drop_oldest_in_place(void **state)
{
    (void)state;
    int ta, tb;
    fo_outq_t q;
    fo_outq_init(&q);
    /* sid 1 droppable on topic A seq 1..4, a control frame, sid 2 (not
     * droppable) seq 1..2, then sid 1 seq 5..6 */
    for (uint64_t s = 1; s <= 4; s++)
        assert_int_equal(fo_outq_push_msg(&q, mk(&ta, s), 1, 1), FO_OK);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Ping p = FANOUT__PING__INIT;
    f.body_case = FANOUT__FRAME__BODY_PING; f.ping = &p;
    assert_int_equal(fo_outq_push_frame(&q, &f), FO_OK);
    assert_int_equal(fo_outq_push_msg(&q, mk(&tb, 1), 2, 0), FO_OK);
    assert_int_equal(fo_outq_push_msg(&q, mk(&tb, 2), 2, 0), FO_OK);
    assert_int_equal(fo_outq_push_msg(&q, mk(&ta, 5), 1, 1), FO_OK);
    assert_int_equal(fo_outq_push_msg(&q, mk(&ta, 6), 1, 1), FO_OK);
    /* partly write the head: it must survive */
    fo_outq_advance(&q, 3);
    runs = notices = 0;
    size_t dropped = fo_outq_drop_oldest(&q, 0, on_drop, NULL);
    assert_int_equal(dropped, 5);                  /* 2,3,4 and 5,6 */
    assert_int_equal(runs, 2);
    assert_int_equal(run_first[0], 2);
    assert_int_equal(run_last[0], 4);
    assert_int_equal(run_first[1], 5);
    assert_int_equal(run_last[1], 6);
    /* 5..6 continue sid 1's notice 2..4: one GAP 2..6, not two */
    assert_int_equal(notices, 1);
    /* order: head(1, partial), GAP 2..6, PING, sid2 x2 */
    assert_int_equal(q.count, 5);
    assert_non_null(q.ring[q.head].msg);
    assert_int_equal(q.ring[q.head].msg->seq, 1);
    expect_gap(&q, 1, 1, 2, 6);
    assert_int_equal(q.ring[(q.head + 3) % q.cap].sid, 2);
    fo_outq_drop_unsent(&q);
    assert_int_equal(q.count, 1);                  /* the partial head */
    fo_outq_clear(&q);
    assert_int_equal(atomic_load(&mem.used), 0);
}

/* A subscriber that never reads: one notice grows, the queue does not. */
static void test_gap_notices_merge(void **state)
{
    (void)state;
    int ta, tb;
    const struct fo_topic *TA = (const void *)&ta, *TB = (const void *)&tb;
    fo_outq_t q;
    fo_outq_init(&q);
    int merged = -1;
    assert_int_equal(fo_outq_push_gap(&q, 4, TA, "q.t", 3, 10, 10, 0, &merged), FO_OK);
    assert_int_equal(merged, 0);
    uint64_t one = q.bytes;
    for (uint64_t s = 11; s <= 100000; s++) {
        assert_int_equal(fo_outq_push_gap(&q, 4, TA, "q.t", 3, s, s, 0, &merged), FO_OK);
        assert_int_equal(merged, 1);
    }
    assert_int_equal(q.count, 1);
    assert_true(q.bytes <= one + 4);               /* only the varints grew */
    expect_gap(&q, 0, 4, 10, 100000);
    /* not merged: a hole, another topic, another reason, another sid */
    assert_int_equal(fo_outq_push_gap(&q, 4, TA, "q.t", 3, 100002, 100002, 0, &merged), FO_OK);
    assert_int_equal(merged, 0);
    assert_int_equal(fo_outq_push_gap(&q, 4, TB, "q.t", 3, 100003, 100003, 0, &merged), FO_OK);
    assert_int_equal(merged, 0);
    assert_int_equal(fo_outq_push_gap(&q, 4, TB, "q.t", 3, 100004, 100004, 1, &merged), FO_OK);
    assert_int_equal(merged, 0);
    assert_int_equal(fo_outq_push_gap(&q, 5, TB, "q.t", 3, 100005, 100005, 1, &merged), FO_OK);
    assert_int_equal(merged, 0);
    /* another subscription's entry in between does not stop a merge */
    assert_int_equal(fo_outq_push_gap(&q, 4, TB, "q.t", 3, 100005, 100006, 1, &merged), FO_OK);
    assert_int_equal(merged, 1);
    assert_int_equal(q.count, 5);
    /* a partly written notice is never rewritten */
    fo_outq_t r;
    fo_outq_init(&r);
    assert_int_equal(fo_outq_push_gap(&r, 4, TA, "q.t", 3, 1, 1, 0, NULL), FO_OK);
    fo_outq_advance(&r, 2);
    assert_int_equal(fo_outq_push_gap(&r, 4, TA, "q.t", 3, 2, 2, 0, &merged), FO_OK);
    assert_int_equal(merged, 0);
    assert_int_equal(r.count, 2);
    fo_outq_clear(&r);
    fo_outq_clear(&q);
    /* a slot that held a notice, reused for a message, is a message (the
     * fuzz test found a stale gap flag there) */
    fo_outq_init(&r);
    int tc;
    assert_int_equal(fo_outq_push_gap(&r, 4, TA, "q.t", 3, 1, 1, 0, NULL), FO_OK);
    fo_outq_advance(&r, r.bytes);
    assert_int_equal(fo_outq_push_msg(&r, mk(&tc, 2), 4, 1), FO_OK);
    assert_false(r.ring[r.head].gap);
    assert_int_equal(fo_outq_push_gap(&r, 4, TA, "q.t", 3, 2, 2, 0, &merged), FO_OK);
    assert_int_equal(merged, 0);
    fo_outq_clear(&r);
    assert_int_equal(atomic_load(&mem.used), 0);
}

/* A dead queue freed in slices: at most n entries per call, the rest
 * kept in order, the ring freed with the last one. */
static void test_clear_some(void **state)
{
    (void)state;
    fo_outq_t q;
    fo_outq_init(&q);
    for (uint64_t s = 1; s <= 100; s++)
        assert_int_equal(fo_outq_push_msg(&q, mk(NULL, s), 1, 1), FO_OK);
    assert_int_equal(fo_outq_clear_some(&q, 30), 70);
    assert_true(atomic_load(&mem.used) > 0);
    assert_int_equal(q.ring[q.head].msg->seq, 31);       /* the oldest go first */
    assert_int_equal(fo_outq_clear_some(&q, 0), 70);
    assert_int_equal(fo_outq_clear_some(&q, 1000), 0);
    assert_null(q.ring);
    assert_int_equal(q.count, 0);
    assert_int_equal(atomic_load(&mem.used), 0);
    assert_int_equal(fo_outq_clear_some(&q, 5), 0);      /* empty: nothing to do */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iov_and_partial_writes),
        cmocka_unit_test(test_packed_iov_same_bytes),
        cmocka_unit_test(test_advance_timed_observes_delays),
        cmocka_unit_test(test_clear_some),
        cmocka_unit_test(test_drop_oldest_in_place),
        cmocka_unit_test(test_gap_notices_merge),
        cmocka_unit_test(test_copy_matches_iov),
    };
    return cmocka_run_group_tests_name("outq", tests, NULL, NULL);
}
