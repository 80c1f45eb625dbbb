/* place.h -- where a topic lives in a cluster: rendezvous hashing.
 *
 * Every broker computes a topic's home the same way from the same inputs:
 * the node ids of the live members and the topic name. Each member scores
 * hash(node id, topic) and the highest score wins (highest random weight,
 * Thaler and Ravishankar). A member that joins takes only the topics it
 * now scores highest on (about 1/N of them); one that leaves gives each of
 * its topics to that topic's second choice, and nothing else moves.
 *
 * Node ids are hashed once (fo_place_node_hash); a placement then costs
 * one topic hash and one mix per member. Hashes are FNV-1a 64 with a
 * final avalanche (splitmix64's), stable across builds and machines: the
 * same on every broker of a cluster.
 *
 * Pure functions, any thread.
 */
#ifndef FO_PLACE_H
#define FO_PLACE_H

#include <stddef.h>
#include <stdint.h>

/* The hash of a node id (its bytes, not NUL-terminated). */
uint64_t fo_place_node_hash(const char *id, size_t len);

/* The hash of a topic name, as fo_place_pick wants it. */
uint64_t fo_place_topic_hash(const char *name, size_t len);

/* The index in nodes[0..n) of the home of the topic whose hash is th:
 * the highest score; a tie (two equal node hashes: the same id twice)
 * goes to the lower index. -1 when n == 0. */
int fo_place_pick(const uint64_t *nodes, int n, uint64_t th);

#endif
