/* tcache.h -- a worker's own cache of topic pointers: name -> fo_topic_t.
 *
 * The publish path looks a topic up here first, with no lock at all; a
 * miss goes to the registry (read lock) and the pointer is cached. Topics
 * outlive every cache that points at them (topic.h). Open addressing with
 * linear probing, at most half full, keyed by fo_topic_hash().
 *
 * Owned by one worker; never touched by another thread.
 */
#ifndef FO_TCACHE_H
#define FO_TCACHE_H

#include <stddef.h>
#include <stdint.h>
#include "topic.h"

typedef struct fo_tcache fo_tcache_t;

fo_tcache_t *fo_tcache_create(void);          /* NULL: out of memory */
void fo_tcache_destroy(fo_tcache_t *c);       /* NULL is fine        */

/* The cached topic named name[0..len) (hash = fo_topic_hash), or NULL. */
fo_topic_t *fo_tcache_find(const fo_tcache_t *c, const char *name, size_t len, uint32_t hash);

/* Cache t (not already cached). Out of memory leaves it uncached, which
 * is still correct: the next publish asks the registry again. */
void fo_tcache_put(fo_tcache_t *c, fo_topic_t *t);

/* Forget every dead topic (worker's quiescent point: the registry freed
 * them or will). */
void fo_tcache_purge_dead(fo_tcache_t *c);

/* Topics cached. */
size_t fo_tcache_len(const fo_tcache_t *c);

#endif
