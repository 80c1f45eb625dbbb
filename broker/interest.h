/* interest.h -- the cluster's interest tables (docs/CLUSTER.md, Interest).
 *
 * Ours (fo_interest_t): the (filter, queue) pairs this broker's clients
 * subscribe to, each with a count of subscriptions and an id. Only the
 * 0 -> 1 and 1 -> 0 changes reach the peers (as PeerInterest ADD / DEL
 * naming the id), so a thousand subscribers of one filter cost a peer one
 * entry. The whole table is the snapshot a new link gets.
 *
 * Theirs (fo_interest_map_t): what one peer told us, id -> the entry's
 * object (cluster.c makes it a subscription of the registry, so matching
 * a topic against a peer's filters is the registry's filter index, as for
 * local subscribers).
 *
 * Both are bounded (FO_INTEREST_MAX entries) and not thread-safe: the
 * cluster thread owns them.
 */
#ifndef FO_INTEREST_H
#define FO_INTEREST_H

#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"

#define FO_INTEREST_MAX (1u << 20)     /* entries in one table */

typedef struct fo_interest fo_interest_t;

FO_MUST_CHECK fo_err_t fo_interest_create(fo_interest_t **out);   /* FO_ERR_NOMEM */
void fo_interest_destroy(fo_interest_t *t);                       /* NULL is fine */

/* One more subscription of (filter, queue) (queue "" or NULL: none).
 * *id is the entry's id; *is_new is 1 when the entry was made now (the
 * peers must hear ADD). FO_ERR_NOMEM, or FO_ERR_BUSY at FO_INTEREST_MAX
 * entries: nothing changed. */
FO_MUST_CHECK fo_err_t fo_interest_add(fo_interest_t *t, const char *filter, const char *queue,
                                       uint32_t *id, int *is_new);
/* One subscription of (filter, queue) fewer. 1 when that was its last
 * (the entry is gone: the peers must hear DEL *id), 0 when others remain,
 * -1 when there is no such entry (a caller's bug, or an add that failed). */
int fo_interest_del(fo_interest_t *t, const char *filter, const char *queue, uint32_t *id);

/* Entries now. */
size_t fo_interest_count(const fo_interest_t *t);

/* Call fn for every entry (the snapshot), in no particular order. */
typedef void (*fo_interest_fn)(void *ud, uint32_t id, const char *filter, const char *queue);
void fo_interest_each(const fo_interest_t *t, fo_interest_fn fn, void *ud);

/* ---- a peer's entries: id -> object ---- */

typedef struct fo_interest_map fo_interest_map_t;

FO_MUST_CHECK fo_err_t fo_interest_map_create(fo_interest_map_t **out);   /* FO_ERR_NOMEM */
/* Frees the map, not the objects (take them out first). NULL is fine. */
void fo_interest_map_destroy(fo_interest_map_t *m);
/* id -> obj (obj not NULL). FO_ERR_INVAL when id is taken, FO_ERR_BUSY
 * at FO_INTEREST_MAX, FO_ERR_NOMEM. */
FO_MUST_CHECK fo_err_t fo_interest_map_put(fo_interest_map_t *m, uint32_t id, void *obj);
/* The object of id, or NULL. */
void *fo_interest_map_get(const fo_interest_map_t *m, uint32_t id);
/* Take id out: its object, or NULL when there was none. */
void *fo_interest_map_take(fo_interest_map_t *m, uint32_t id);
/* Take any one out (emptying the map on teardown): an object, or NULL
 * when the map is empty. */
void *fo_interest_map_pop(fo_interest_map_t *m);
size_t fo_interest_map_count(const fo_interest_map_t *m);

#endif
