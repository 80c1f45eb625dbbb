/* series.c -- per-second counts and latencies (see series.h).
 *
 * Bucket of v >= 64: e = msb(v) (6..40), the 5 bits after the leading one
 * pick one of 32 sub-buckets: 64 + (e - 6) * 32 + sub. Values of 2^41 ns
 * and more share the last bucket.
 */
#include "series.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void fo_series_init(fo_series_t *s, int with_latency)
{
    memset(s, 0, sizeof *s);
    s->with_latency = with_latency;
}

void fo_series_free(fo_series_t *s)
{
    free(s->count);
    free(s->hist);
    s->count = NULL;
    s->hist = NULL;
    s->nsec = s->cap = 0;
}

void fo_series_start(fo_series_t *s, uint64_t t0_ns)
{
    atomic_store_explicit(&s->t0, t0_ns, memory_order_relaxed);
}

unsigned fo_series_bucket(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    if (e > 40)
        return FO_SERIES_BUCKETS - 1;
    return 64 + (e - 6) * 32 + (unsigned)((v >> (e - 5)) & 31);
}

uint64_t fo_series_bucket_high(unsigned i)
{
    if (i < 64)
        return i;
    if (i >= FO_SERIES_BUCKETS - 1)
        return UINT64_MAX;
    unsigned e = 6 + (i - 64) / 32, sub = (i - 64) % 32;
    uint64_t low = (1ull << e) + ((uint64_t)sub << (e - 5));
    return low + (1ull << (e - 5)) - 1;
}

/* Room for second `sec`; 0, or -1 (failed) when out of memory. */
static int grow(fo_series_t *s, size_t sec)
{
    if (sec < s->cap)
        return 0;
    if (s->failed || sec >= FO_SERIES_MAX_SECONDS)
        return -1;
    size_t ncap = s->cap ? s->cap * 2 : 16;
    while (ncap <= sec)
        ncap *= 2;
    uint64_t *nc = realloc(s->count, ncap * sizeof *nc);
    if (!nc) {
        s->failed = 1;
        return -1;
    }
    memset(nc + s->cap, 0, (ncap - s->cap) * sizeof *nc);
    s->count = nc;
    if (s->with_latency) {
        fo_series_hist_t *nh = realloc(s->hist, ncap * sizeof *nh);
        if (!nh) {
            s->failed = 1;
            return -1;
        }
        memset(nh + s->cap, 0, (ncap - s->cap) * sizeof *nh);
        s->hist = nh;
    }
    s->cap = ncap;
    return 0;
}

void fo_series_add(fo_series_t *s, uint64_t at_ns, uint64_t latency_ns)
{
    uint64_t t0 = atomic_load_explicit(&s->t0, memory_order_relaxed);
    size_t sec = at_ns > t0 ? (size_t)((at_ns - t0) / 1000000000u) : 0;
    if (grow(s, sec))
        return;
    s->count[sec]++;
    if (s->with_latency)
        s->hist[sec].c[fo_series_bucket(latency_ns)]++;
    if (sec + 1 > s->nsec)
        s->nsec = sec + 1;
}

int fo_series_merge(fo_series_t *dst, const fo_series_t *src)
{
    if (src->nsec && grow(dst, src->nsec - 1))
        return -1;
    for (size_t k = 0; k < src->nsec; k++) {
        dst->count[k] += src->count[k];
        if (dst->with_latency && src->with_latency)
            for (unsigned i = 0; i < FO_SERIES_BUCKETS; i++)
                dst->hist[k].c[i] += src->hist[k].c[i];
    }
    if (src->nsec > dst->nsec)
        dst->nsec = src->nsec;
    return 0;
}

uint64_t fo_series_count(const fo_series_t *s, size_t sec)
{
    return sec < s->nsec ? s->count[sec] : 0;
}

uint64_t fo_series_percentile(const fo_series_t *s, size_t sec, double q)
{
    if (!s->with_latency || sec >= s->nsec)
        return 0;
    const fo_series_hist_t *h = &s->hist[sec];
    uint64_t n = 0;
    for (unsigned i = 0; i < FO_SERIES_BUCKETS; i++)
        n += h->c[i];
    if (!n)
        return 0;
    double r = ceil(q / 100.0 * (double)n);
    uint64_t rank = r < 1 ? 1 : r > (double)n ? n : (uint64_t)r, acc = 0;
    for (unsigned i = 0; i < FO_SERIES_BUCKETS; i++) {
        acc += h->c[i];
        if (acc >= rank)
            return fo_series_bucket_high(i);
    }
    return 0;
}
