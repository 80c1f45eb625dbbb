/* test_hist.c -- the bench histogram: bucket layout, precision bound,
 * percentiles against an exact sort, merging, edges. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include "../../client/cli/hist.h"

static void test_buckets_contiguous_and_bounded(void **state)
{
    (void)state;
    assert_int_equal(fo_hist_bucket(0), 0);
    assert_int_equal(fo_hist_bucket(127), 127);
    assert_int_equal(fo_hist_bucket(128), 128);
    assert_int_equal(fo_hist_bucket(255), 191);
    assert_int_equal(fo_hist_bucket(256), 192);
    assert_int_equal(fo_hist_bucket(UINT64_MAX), FO_HIST_BUCKETS - 1);
    for (unsigned i = 0; i + 1 < FO_HIST_BUCKETS; i++) {
        uint64_t hi = fo_hist_bucket_high(i);
        assert_int_equal(fo_hist_bucket(hi), i);
        assert_int_equal(fo_hist_bucket(hi + 1), i + 1);
    }
    /* every value maps to a bucket whose top is within 1/64 above it */
    srand(1);
    for (int k = 0; k < 100000; k++) {
        uint64_t v = (uint64_t)rand() << (rand() % 33);
        uint64_t hi = fo_hist_bucket_high(fo_hist_bucket(v));
        assert_true(hi >= v);
        assert_true((double)(hi - v) <= (double)v / 64.0 + 1);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_percentiles_match_sorted(void **state)
{
    (void)state;
    enum { N = 50000 };
    static uint64_t v[N];
    fo_hist_t h;
    fo_hist_init(&h);
    srand(7);
    for (int i = 0; i < N; i++) {
        /* a long-tailed latency-like mix, ns */
        v[i] = 5000 + (uint64_t)(rand() % 20000) +
               (rand() % 100 == 0 ? (uint64_t)(rand() % 5000000) : 0);
        fo_hist_record(&h, v[i]);
    }
    qsort(v, N, sizeof v[0], cmp_u64);
    const double qs[] = { 50, 90, 99, 99.9 };
    for (int k = 0; k < 4; k++) {
        size_t idx = (size_t)((qs[k] / 100.0) * N + 0.999999) - 1;
        uint64_t exact = v[idx], got = fo_hist_percentile(&h, qs[k]);
        assert_true(got >= exact);
        assert_true((double)got <= (double)exact * (1.0 + 1.0 / 64) + 1);
    }
    assert_int_equal(fo_hist_percentile(&h, 100), v[N - 1]);
    assert_int_equal(h.min, v[0]);
    assert_int_equal(h.n, N);
}

static void test_merge_and_empty(void **state)
{
    (void)state;
    fo_hist_t a, b;
    fo_hist_init(&a);
    fo_hist_init(&b);
    assert_int_equal(fo_hist_percentile(&a, 50), 0);
    assert_true(fo_hist_mean(&a) == 0);
    for (uint64_t i = 1; i <= 100; i++)
        fo_hist_record(i <= 50 ? &a : &b, i);
    fo_hist_merge(&a, &b);
    assert_int_equal(a.n, 100);
    assert_int_equal(a.min, 1);
    assert_int_equal(a.max, 100);
    assert_int_equal(fo_hist_percentile(&a, 50), 50);
    assert_int_equal(fo_hist_percentile(&a, 99), 99);
    assert_true(fo_hist_mean(&a) == 50.5);
    /* one value: every percentile is that value (clamped) */
    fo_hist_t c;
    fo_hist_init(&c);
    fo_hist_record(&c, 123456789);
    assert_int_equal(fo_hist_percentile(&c, 0.1), 123456789);
    assert_int_equal(fo_hist_percentile(&c, 99.9), 123456789);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_contiguous_and_bounded),
        cmocka_unit_test(test_percentiles_match_sorted),
        cmocka_unit_test(test_merge_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
