/* topic_name.h -- topic names and filters: the rules and the matching,
 * shared by the broker (registry, multicast map) and the client library
 * (multicast receivers), so there is one implementation.
 *
 * Names are dot-separated tokens ("prices.eur.spot"); filters may use `*`
 * for exactly one token and `>` for one or more trailing tokens, as NATS
 * users expect. Rules (docs/PROTOCOL.md, Topics): 1..255 bytes, no empty
 * token, no byte <= 0x20 or 0x7f; `*` and `>` only as whole tokens of a
 * filter, `>` only last.
 */
#ifndef FO_TOPIC_NAME_H
#define FO_TOPIC_NAME_H

#include <stddef.h>
#include <stdint.h>

#define FO_TOPIC_MAX 255

int fo_topic_valid(const char *s, size_t len);     /* concrete name       */
int fo_filter_valid(const char *s, size_t len);    /* may hold * and >    */
int fo_filter_is_wild(const char *s);              /* has a * or > token  */
/* 1 when the (valid, NUL-terminated) filter matches the topic. */
int fo_topic_match(const char *filter, const char *topic);
/* FNV-1a of a name: the registry's hash and the workers' topic caches must
 * agree, so there is one. */
uint32_t fo_topic_hash(const char *s, size_t len);
/* 1 when some topic matches both filters. */
int fo_filters_overlap(const char *a, const char *b);

/* Filter relations for permissions (broker/acl.c). Arguments are valid,
 * NUL-terminated filters (fo_filter_valid; a concrete name is a filter
 * too); pure functions, any thread, no allocation.
 *
 * fo_topic_match_len: fo_topic_match with a topic that need not be
 * NUL-terminated (a PUBLISH view): tlen bytes of a valid name.
 *
 * fo_filter_covers: 1 when every topic matching `inner` matches `outer`
 * (exact for `*` and `>`: "a.>" covers "a.b.*", "*.b" does not cover
 * "a.>", a filter covers itself).
 *
 * fo_filters_meet: the filter matching exactly the topics that match both
 * a and b (e.g. "orders.>" and "*.eu.*" meet in "orders.eu.*"), written to
 * out with its NUL; returns its length, or -1 when no topic matches both
 * (then fo_filters_overlap is 0), or -2 when out is too small: strlen(a) +
 * strlen(b) + 1 bytes always suffice. The result may be longer than
 * FO_TOPIC_MAX (it is then only good for these relations, not a filter a
 * client could send). */
int fo_topic_match_len(const char *filter, const char *topic, size_t tlen);
int fo_filter_covers(const char *outer, const char *inner);
int fo_filters_meet(const char *a, const char *b, char *out, size_t outlen);

#endif
