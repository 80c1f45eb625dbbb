/* sublist.h -- subscriptions indexed by the tokens of their filters.
 *
 * A trie with one level per token, as NATS's sublist: each node keeps its
 * literal children in a small hash, one child for `*`, and two lists of
 * subscriptions -- those whose filter ends at the node and those whose
 * filter ends there with `>`. Matching a concrete topic walks, at each of
 * its tokens, the literal child and the `*` child only, collecting `>`
 * lists on the way, so its cost grows with the filters that can match it,
 * not with all filters: 100,000 subscriptions on unrelated topics cost a
 * new topic one hash lookup at the first token.
 *
 * Intrusive: a subscription is linked through its own sl_* fields (one
 * node at a time), so insert and remove allocate only nodes, and remove
 * frees the nodes it empties.
 *
 * Not thread-safe: the registry guards it with its lock.
 */
#ifndef FO_SUBLIST_H
#define FO_SUBLIST_H

#include <stddef.h>
#include "fo_err.h"

struct fo_sub;
typedef struct fo_sublist fo_sublist_t;

FO_MUST_CHECK fo_err_t fo_sublist_create(fo_sublist_t **out);   /* FO_ERR_NOMEM */
/* Frees the nodes; the subscriptions are the caller's. NULL is fine. */
void fo_sublist_destroy(fo_sublist_t *l);

/* Index sub by sub->filter (valid). FO_ERR_NOMEM leaves it unindexed. */
FO_MUST_CHECK fo_err_t fo_sublist_insert(fo_sublist_t *l, struct fo_sub *sub);
/* Take an indexed sub out; a sub that is not indexed is ignored. */
void fo_sublist_remove(fo_sublist_t *l, struct fo_sub *sub);

/* Call cb for every indexed subscription whose filter matches the
 * concrete topic name[0..len), each once. cb must not insert or remove. */
typedef void (*fo_sublist_fn)(void *ud, struct fo_sub *sub);
void fo_sublist_match(const fo_sublist_t *l, const char *name, size_t len,
                      fo_sublist_fn cb, void *ud);

/* Subscriptions and nodes held (tests, metrics). */
size_t fo_sublist_subs(const fo_sublist_t *l);
size_t fo_sublist_nodes(const fo_sublist_t *l);

#endif
