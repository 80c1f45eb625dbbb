/* test_client_parts.c -- libfanout's small parts: the per-topic sequence
 * map (seqmap.c), the fo_sub_next queue (msgq.c), address parsing. The
 * codec the library uses (DELIVER view, PUBLISH encoder) is tested in
 * test_frame.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../../client/msgq.h"
#include "../../client/seqmap.h"
#include "../../client/dial.h"

static void test_seqmap(void **state)
{
    (void)state;
    fo__seqmap_t m;
    fo__seqmap_init(&m, 100);
    char t[32];
    for (int i = 0; i < 100; i++) {
        snprintf(t, sizeof t, "topic.%d", i);
        fo__seqmap_ent_t *e = fo__seqmap_get(&m, t, strlen(t));
        assert_non_null(e);
        assert_int_equal(e->seq, 0);
        e->seq = (uint64_t)i + 1;
    }
    assert_null(fo__seqmap_get(&m, "one.more", 8));  /* bounded */
    assert_int_equal(m.dropped, 1);
    for (int i = 0; i < 100; i++) {
        snprintf(t, sizeof t, "topic.%d", i);
        assert_int_equal(fo__seqmap_get(&m, t, strlen(t))->seq, (uint64_t)i + 1);
    }
    size_t it = 0, n = 0;
    const fo__seqmap_ent_t *e;
    while ((e = fo__seqmap_next(&m, &it)))
        n++;
    assert_int_equal(n, 100);
    fo__seqmap_clear(&m);
    assert_int_equal(m.count, 0);
    assert_int_equal(fo__seqmap_get(&m, "topic.1", 7)->seq, 0);
    fo__seqmap_destroy(&m);
    fo__seqmap_destroy(NULL);
}

static void test_msgq_fifo_and_bound(void **state)
{
    (void)state;
    fo__msgq_t q;
    fo__msgq_init(&q, 200);
    fo_msg_t m = { "a.b", 3, "payload", 7, 1, 5, 0, NULL, NULL, 0 }, out;
    assert_int_equal(fo__msgq_pop(&q, &out), FO_ERR_AGAIN);
    int pushed = 0;
    while (fo__msgq_push(&q, &m) == FO_OK) {
        m.seq++;
        pushed++;
    }
    assert_true(pushed >= 2 && pushed < 10);
    for (int i = 0; i < pushed; i++) {
        assert_int_equal(fo__msgq_pop(&q, &out), FO_OK);
        assert_int_equal(out.seq, (uint64_t)i + 1);
        assert_string_equal(out.topic, "a.b");
        assert_int_equal(out.payload_len, 7);
        assert_memory_equal(out.payload, "payload", 7);
        assert_int_equal(out.time_ns, 5);
    }
    assert_int_equal(fo__msgq_pop(&q, &out), FO_ERR_AGAIN);
    /* an empty queue takes one message even above the bound */
    static char big[1000];
    fo_msg_t bm = { "t", 1, big, sizeof big, 9, 0, 1, NULL, NULL, 0 };
    assert_int_equal(fo__msgq_push(&q, &bm), FO_OK);
    assert_int_equal(fo__msgq_push(&q, &m), FO_ERR_BUSY);
    assert_int_equal(fo__msgq_pop(&q, &out), FO_OK);
    assert_int_equal(out.replay, 1);
    fo__msgq_destroy(&q);
}

/* The resume watermark: out-of-order arrivals, GAPs, the window bound. */
static void test_seqmap_watermark(void **state)
{
    (void)state;
    fo__seqmap_t m;
    fo__seqmap_init(&m, 0);
    fo__seqmap_ent_t *e = fo__seqmap_get(&m, "t", 1);
    assert_int_equal(fo__seqmap_resume(e), 0);
    assert_false(fo__seqmap_seen(e, 5));
    const uint64_t order[] = { 5, 6, 9, 7, 11 };
    for (int i = 0; i < 5; i++)
        fo__seqmap_mark(e, order[i]);
    assert_int_equal(e->seq, 11);
    assert_int_equal(fo__seqmap_resume(e), 8);     /* 8 may still come */
    assert_true(fo__seqmap_seen(e, 4));            /* below the first seen */
    assert_true(fo__seqmap_seen(e, 9));
    assert_false(fo__seqmap_seen(e, 8));
    assert_false(fo__seqmap_seen(e, 10));
    fo__seqmap_mark(e, 8);
    assert_int_equal(fo__seqmap_resume(e), 10);
    fo__seqmap_skip(e, 10, 10);                    /* a GAP fills the hole */
    assert_int_equal(fo__seqmap_resume(e), 12);
    fo__seqmap_skip(e, 20, 30);                    /* a GAP further up */
    assert_int_equal(fo__seqmap_resume(e), 12);
    assert_true(fo__seqmap_seen(e, 25));
    for (uint64_t q = 12; q < 20; q++)
        fo__seqmap_mark(e, q);
    assert_int_equal(fo__seqmap_resume(e), 31);
    /* far beyond the window: the watermark is pushed along */
    fo__seqmap_mark(e, 31 + 1000);
    assert_int_equal(fo__seqmap_resume(e), 31 + 1000 - FO__SEQMAP_WINDOW + 1);
    assert_true(fo__seqmap_seen(e, 1031));
    assert_false(fo__seqmap_seen(e, 1030));
    /* holes more than a window behind are given up as the stream goes on */
    for (uint64_t q = 1032; q < 1032 + 5000; q++)
        fo__seqmap_mark(e, q);
    assert_int_equal(fo__seqmap_resume(e), 1032 + 5000);
    fo__seqmap_skip(e, 700, 1030);                 /* old news: no change */
    assert_int_equal(fo__seqmap_resume(e), 1032 + 5000);
    /* random order within the window always ends exact */
    fo__seqmap_ent_t *f = fo__seqmap_get(&m, "u", 1);
    srand(5);
    uint64_t perm[200];
    for (int i = 0; i < 200; i++)
        perm[i] = 1000 + (uint64_t)i;
    for (int i = 199; i > 0; i--) {
        int j = rand() % (i + 1);
        uint64_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    fo__seqmap_mark(f, 999);
    for (int i = 0; i < 200; i++) {
        assert_false(fo__seqmap_seen(f, perm[i]));
        fo__seqmap_mark(f, perm[i]);
        assert_true(fo__seqmap_seen(f, perm[i]));
    }
    assert_int_equal(fo__seqmap_resume(f), 1200);
    fo__seqmap_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seqmap),
        cmocka_unit_test(test_seqmap_watermark),
        cmocka_unit_test(test_msgq_fifo_and_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
