/* series.h -- what happened in each second of a `fanout bench` run.
 *
 * A series counts events by the second they happened in (second k covers
 * [t0 + k s, t0 + (k+1) s)), and optionally keeps a compact latency
 * histogram per second (exact below 64 ns, then 32 buckets per power of
 * two up to 2^41 ns, so a per-second percentile is within 3 %; 4.6 KiB a
 * second). One writer per series (a publisher thread, a subscriber's
 * reader thread), which grows it as seconds go by; merged at the end.
 */
#ifndef FO_SERIES_H
#define FO_SERIES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define FO_SERIES_BUCKETS (64 + 35 * 32)
#define FO_SERIES_MAX_SECONDS (7 * 86400)

typedef struct fo_series_hist {
    uint32_t c[FO_SERIES_BUCKETS];
} fo_series_hist_t;

typedef struct fo_series {
    _Atomic uint64_t t0;      /* ns, CLOCK_MONOTONIC; set before events come */
    int with_latency;
    int failed;               /* out of memory: recording stopped          */
    size_t nsec, cap;         /* seconds seen (last + 1), allocated        */
    uint64_t *count;          /* per second                                */
    fo_series_hist_t *hist;   /* per second, with_latency only             */
} fo_series_t;

void fo_series_init(fo_series_t *s, int with_latency);
void fo_series_free(fo_series_t *s);
/* Set second 0's start (any thread; the writers read it relaxed). */
void fo_series_start(fo_series_t *s, uint64_t t0_ns);
/* One event at at_ns (before t0 counts in second 0), with its latency
 * when the series keeps them. The writer thread only. */
void fo_series_add(fo_series_t *s, uint64_t at_ns, uint64_t latency_ns);
/* dst += src (counts, and histograms when both keep them). */
int fo_series_merge(fo_series_t *dst, const fo_series_t *src);
/* Latency at percentile q (0..100] in second `sec`, ns; 0 when none. */
uint64_t fo_series_percentile(const fo_series_t *s, size_t sec, double q);
uint64_t fo_series_count(const fo_series_t *s, size_t sec);

/* Bucket of v and the highest value it holds (for tests). */
unsigned fo_series_bucket(uint64_t v);
uint64_t fo_series_bucket_high(unsigned i);

#endif
