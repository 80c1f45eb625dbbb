/* seqmap.h -- last sequence seen per topic, for one subscription.
 *
 * The client resumes a subscription after a reconnect from each topic's
 * last seen sequence + 1 (Subscribe.positions), and spots sequence jumps.
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

typedef struct fo_seqmap_ent {
    char *topic;          /* owned, NUL-terminated; NULL = empty slot */
    size_t len;
    uint64_t hash;
    uint64_t seq;         /* last sequence seen                       */
} fo_seqmap_ent_t;

typedef struct fo_seqmap {
    fo_seqmap_ent_t *slots;  /* owned */
    size_t cap, count, max;
    uint64_t dropped;        /* topics not tracked for lack of room */
} fo_seqmap_t;

void fo_seqmap_init(fo_seqmap_t *m, size_t max_topics);
void fo_seqmap_destroy(fo_seqmap_t *m);     /* NULL is fine */
void fo_seqmap_clear(fo_seqmap_t *m);

/* The entry for topic, created (seq 0) when absent; NULL when the map is
 * full or out of memory. Valid until the next get/clear. */
fo_seqmap_ent_t *fo_seqmap_get(fo_seqmap_t *m, const char *topic, size_t len);

/* Iterate: *i starts at 0; returns the next entry or NULL at the end. */
const fo_seqmap_ent_t *fo_seqmap_next(const fo_seqmap_t *m, size_t *i);

#endif
