/* test_series.c -- client/cli/series.c (per-second counts and compact
 * latency histograms of `fanout bench`) and the scale helpers of plot.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "plot.h"
#include "series.h"

/* Buckets are contiguous, each value falls in the bucket whose range holds
 * it, and a bucket is at most 1/32 of its values wide. */
static void test_buckets(void **state)
{
    (void)state;
    uint64_t prev_high = 0;
    for (unsigned i = 0; i < FO_SERIES_BUCKETS - 1; i++) {
        uint64_t high = fo_series_bucket_high(i);
        uint64_t low = i ? fo_series_bucket_high(i - 1) + 1 : 0;
        assert_true(i == 0 || low == prev_high + 1);
        assert_int_equal(fo_series_bucket(low), i);
        assert_int_equal(fo_series_bucket(high), i);
        if (low >= 64)
            assert_true((double)(high - low + 1) / (double)low <= 1.0 / 32 + 1e-12);
        prev_high = high;
    }
    assert_int_equal(fo_series_bucket(1ull << 41), FO_SERIES_BUCKETS - 1);
    assert_int_equal(fo_series_bucket(UINT64_MAX), FO_SERIES_BUCKETS - 1);
}

static void test_seconds(void **state)
{
    (void)state;
    fo_series_t a, b, m;
    fo_series_init(&a, 1);
    fo_series_init(&b, 1);
    fo_series_init(&m, 1);
    uint64_t t0 = 5000000000ull;
    fo_series_start(&a, t0);
    fo_series_start(&b, t0);
    for (int i = 0; i < 100; i++)                   /* second 0: 1..100 us */
        fo_series_add(&a, t0 + (uint64_t)i * 1000000, (uint64_t)(i + 1) * 1000);
    fo_series_add(&a, t0 - 5, 7);                   /* before t0: second 0 */
    fo_series_add(&b, t0 + 2500000000ull, 1000000); /* second 2 */
    fo_series_add(&b, t0 + 40ull * 1000000000, 1);  /* grows past 16 seconds */
    assert_int_equal(a.nsec, 1);
    assert_int_equal(b.nsec, 41);
    assert_int_equal(fo_series_merge(&m, &a), 0);
    assert_int_equal(fo_series_merge(&m, &b), 0);
    assert_int_equal(m.nsec, 41);
    assert_int_equal(fo_series_count(&m, 0), 101);
    assert_int_equal(fo_series_count(&m, 1), 0);
    assert_int_equal(fo_series_count(&m, 2), 1);
    assert_int_equal(fo_series_count(&m, 40), 1);
    assert_int_equal(fo_series_count(&m, 41), 0);
    double p50 = (double)fo_series_percentile(&m, 0, 50), p99 = (double)fo_series_percentile(&m, 0, 99);
    assert_true(fabs(p50 - 50000) / 50000 < 0.04);
    assert_true(fabs(p99 - 99000) / 99000 < 0.04);
    assert_int_equal(fo_series_percentile(&m, 1, 50), 0);     /* nothing that second */
    assert_true(fo_series_percentile(&m, 2, 99) >= 1000000);
    /* counts only */
    fo_series_t c;
    fo_series_init(&c, 0);
    fo_series_add(&c, 10, 123);
    assert_int_equal(fo_series_count(&c, 0), 1);
    assert_int_equal(fo_series_percentile(&c, 0, 50), 0);
    fo_series_free(&a);
    fo_series_free(&b);
    fo_series_free(&m);
    fo_series_free(&c);
}

static void test_plot_scales(void **state)
{
    (void)state;
    assert_true(fabs(fo_plot_nines(90) - 1) < 1e-9);
    assert_true(fabs(fo_plot_nines(99.9) - 3) < 1e-9);
    assert_true(fabs(fo_plot_nines(50) - log10(2)) < 1e-9);
    assert_true(isfinite(fo_plot_nines(100)));
    static const struct { double max, step, top; } cases[] = {
        { 1, 0.2, 1 }, { 7, 2, 8 }, { 10, 2, 10 }, { 3277, 1000, 4000 }, { 20000, 5000, 20000 },
        { 0, 0.2, 1 }, { 0.03, 0.01, 0.03 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double step, top;
        fo_plot_ticks(cases[i].max, &step, &top);
        if (fabs(step - cases[i].step) > 1e-9 || fabs(top - cases[i].top) > 1e-9)
            fail_msg("max %g: step %g top %g, want %g %g", cases[i].max, step, top,
                     cases[i].step, cases[i].top);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_seconds),
        cmocka_unit_test(test_plot_scales),
    };
    return cmocka_run_group_tests_name("series", tests, NULL, NULL);
}
