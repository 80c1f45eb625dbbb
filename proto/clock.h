/* clock.h -- the clocks and deadlines broker, library and CLI share.
 *
 * CLOCK_MONOTONIC for every interval, timeout and deadline (it never
 * jumps); CLOCK_REALTIME only for timestamps a person or another machine
 * reads (Deliver.time_ns, log lines, the broker's epoch). Inline: they run
 * on hot paths (a read's timestamp, a loop iteration's "now").
 *
 * A deadline is an absolute CLOCK_MONOTONIC time; fo_deadline_ts() turns
 * "ms from now" into the struct timespec that pthread_cond_timedwait
 * wants for a condition variable created with CLOCK_MONOTONIC.
 */
#ifndef FO_CLOCK_H
#define FO_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t fo_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t fo_clock_us(void) { return fo_clock_ns() / 1000u; }
static inline uint64_t fo_clock_ms(void) { return fo_clock_ns() / 1000000u; }

/* Nanoseconds since the Unix epoch (CLOCK_REALTIME). */
static inline uint64_t fo_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The CLOCK_MONOTONIC time ms milliseconds from now (ms < 0 counts as 0). */
static inline struct timespec fo_deadline_ts(long long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (ms < 0)
        ms = 0;
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* The same, from an absolute CLOCK_MONOTONIC time in nanoseconds. */
static inline struct timespec fo_ts_of_ns(uint64_t ns)
{
    struct timespec t = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
    return t;
}

#endif
