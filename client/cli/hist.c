/* hist.c -- log-linear histogram (see hist.h).
 *
 * Bucket of v >= 128: let s = msb(v) - 6, so v >> s is in [64, 128); the
 * bucket is 128 + (s - 1) * 64 + (v >> s) - 64. Buckets are contiguous:
 * 127 -> 127, 128 -> 128, 255 -> 191, 256 -> 192.
 */
#include <math.h>
#include <string.h>
#include "hist.h"

void fo_hist_init(fo_hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

unsigned fo_hist_bucket(uint64_t v)
{
    if (v < 128)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned s = msb - 6;
    return 128 + (s - 1) * 64 + (unsigned)((v >> s) - 64);
}

uint64_t fo_hist_bucket_high(unsigned i)
{
    if (i < 128)
        return i;
    unsigned k = i - 128, s = k / 64 + 1;
    uint64_t sub = k % 64 + 64;
    if (s == 57 && sub == 127)
        return UINT64_MAX;
    return ((sub + 1) << s) - 1;
}

void fo_hist_record(fo_hist_t *h, uint64_t v)
{
    h->counts[fo_hist_bucket(v)]++;
    h->n++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void fo_hist_merge(fo_hist_t *dst, const fo_hist_t *src)
{
    for (unsigned i = 0; i < FO_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->n += src->n;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t fo_hist_percentile(const fo_hist_t *h, double q)
{
    if (!h->n)
        return 0;
    if (q >= 100)
        return h->max;
    double r = ceil(q / 100.0 * (double)h->n);
    uint64_t rank = r < 1 ? 1 : (uint64_t)r, acc = 0;
    for (unsigned i = 0; i < FO_HIST_BUCKETS; i++) {
        acc += h->counts[i];
        if (acc >= rank) {
            uint64_t v = fo_hist_bucket_high(i);
            return v > h->max ? h->max : v < h->min ? h->min : v;
        }
    }
    return h->max;
}

double fo_hist_mean(const fo_hist_t *h)
{
    return h->n ? h->sum / (double)h->n : 0;
}
