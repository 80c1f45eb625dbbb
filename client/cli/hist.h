/* hist.h -- an HDR-style log-linear latency histogram for `fanout bench`.
 *
 * Values (nanoseconds, or any unit) below 128 are counted exactly; above,
 * each power of two is split into 64 equal buckets, so a reported
 * percentile is within 1/64 (1.6 %) of the true value, from 1 ns to 2^63.
 * Fixed size (3776 counters), no allocation; recording is a few
 * instructions. Not thread-safe: one histogram per recording thread,
 * merged at the end.
 */
#ifndef FO_HIST_H
#define FO_HIST_H

#include <stdint.h>

#define FO_HIST_SUB_BITS 7
#define FO_HIST_BUCKETS  (128 + 57 * 64)

typedef struct fo_hist {
    uint64_t counts[FO_HIST_BUCKETS];
    uint64_t n, min, max;
    double sum;
} fo_hist_t;

void fo_hist_init(fo_hist_t *h);
void fo_hist_record(fo_hist_t *h, uint64_t v);
void fo_hist_merge(fo_hist_t *dst, const fo_hist_t *src);
/* The value at percentile q (0..100]: the highest value equivalent to the
 * bucket holding that rank, clamped to [min, max]. 0 when empty. */
uint64_t fo_hist_percentile(const fo_hist_t *h, double q);
double fo_hist_mean(const fo_hist_t *h);

/* Bucket of v, and the highest value counted in bucket i (for tests). */
unsigned fo_hist_bucket(uint64_t v);
uint64_t fo_hist_bucket_high(unsigned i);

#endif
