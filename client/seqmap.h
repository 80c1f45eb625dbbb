/* seqmap.h -- last sequence seen per topic, for one subscription.
 *
 * The client resumes a subscription after a reconnect (Subscribe.positions)
 * from each topic's first sequence not yet seen. Messages of one topic can
 * arrive out of order (several publishers, docs/PROTOCOL.md section 7), so
 * "highest seen + 1" could skip one still in flight: each entry keeps a
 * watermark `low` (every sequence <= low is accounted for: seen, reported
 * in a GAP, or older than the first one seen) and a 256-sequence window of
 * what was seen above it. Resuming from low + 1 replays a few messages
 * already seen; fo__seqmap_seen() tells the client to drop those replays.
 * A sequence more than 256 beyond the watermark pushes it forward (what it
 * skips is then taken as accounted for).
 * An open-addressing hash table keyed by topic (copied once per topic),
 * bounded by `max` topics: a topic beyond the bound is not tracked (its
 * resume follows the subscription's start position; counted in dropped).
 * Not thread-safe: owned by the client's reader thread.
 */
#ifndef FO_SEQMAP_H
#define FO_SEQMAP_H

#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"

#define FO__SEQMAP_WINDOW 256

typedef struct fo__seqmap_ent {
    char *topic;          /* owned, NUL-terminated; NULL = empty slot */
    size_t len;
    uint64_t hash;
    uint64_t seq;         /* highest sequence seen; 0 = none yet       */
    uint64_t low;         /* watermark: all <= low accounted for       */
    uint64_t win[FO__SEQMAP_WINDOW / 64]; /* bit i: low + 1 + i seen   */
} fo__seqmap_ent_t;

typedef struct fo__seqmap {
    fo__seqmap_ent_t *slots; /* owned */
    fo__seqmap_ent_t *last;  /* the entry found last (most messages repeat
                              * a topic); into slots, reset when they move */
    size_t cap, count, max;
    uint64_t dropped;        /* topics not tracked for lack of room */
} fo__seqmap_t;

void fo__seqmap_init(fo__seqmap_t *m, size_t max_topics);
void fo__seqmap_destroy(fo__seqmap_t *m);   /* NULL is fine */
void fo__seqmap_clear(fo__seqmap_t *m);

/* The entry for topic, created (seq 0) when absent; NULL when the map is
 * full or out of memory. Valid until the next get/clear. */
fo__seqmap_ent_t *fo__seqmap_get(fo__seqmap_t *m, const char *topic, size_t len);

/* Was seq already accounted for (seen, or at or below the watermark)? */
int fo__seqmap_seen(const fo__seqmap_ent_t *e, uint64_t seq);
/* Record that seq was seen (the first one also sets the watermark). */
void fo__seqmap_mark(fo__seqmap_ent_t *e, uint64_t seq);
/* Record that first..last will never come (a GAP). */
void fo__seqmap_skip(fo__seqmap_ent_t *e, uint64_t first, uint64_t last);
/* Where to resume: the first sequence not accounted for (0: none seen). */
static inline uint64_t fo__seqmap_resume(const fo__seqmap_ent_t *e)
{
    return e->seq ? e->low + 1 : 0;
}

/* Iterate: *i starts at 0; returns the next entry or NULL at the end. */
const fo__seqmap_ent_t *fo__seqmap_next(const fo__seqmap_t *m, size_t *i);

#endif
