/* acl.h -- permissions: what one user may publish, and receive.
 *
 * A fo_acl_t is one direction of one user (publish, or subscribe): a list
 * of allow filters and a list of deny filters, as in NATS. Placeholders
 * (%u) are already substituted by users.c; the lists hold plain filters.
 *
 *   - Default deny: an empty allow list permits nothing. `>` permits all.
 *   - Deny wins: a topic matching any deny filter is refused, whatever
 *     the allow list says.
 *
 * Three questions, for three moments:
 *
 *   fo_acl_topic_ok(acl, topic, len)  a concrete topic may be published
 *       (publish ACL) or delivered (subscribe ACL): it matches some allow
 *       and no deny. Hot path: no allocation, no lock; a few filters cost
 *       tens of nanoseconds.
 *
 *   fo_acl_filter_ok(acl, filter)     a SUBSCRIBE may be accepted: some
 *       topic the filter matches could be allowed. Precisely: for some
 *       allow filter A, the topics matching both A and the filter (their
 *       meet, topic_name.h) are not all inside one deny filter. A wide
 *       filter (`>`, `*.x`) is therefore accepted when anything at all is
 *       allowed under it. CONTRACT for the caller: accepting a filter
 *       grants nothing by itself -- bind such a subscription only to topics
 *       for which fo_acl_topic_ok(subscribe ACL) is true, and check each
 *       topic created later the same way. Topics covered by a union of
 *       several deny filters are not detected here (the subscription is
 *       accepted and receives nothing from them: the per-topic check
 *       refuses each).
 *
 *   fo_acl_covers_filter(acl, filter) the user may read EVERY topic the
 *       filter can match: some single allow filter covers it and no deny
 *       filter overlaps it. Conservative (a filter covered only by several
 *       allows together is refused). Used for the multicast key: it goes
 *       only to users who may read every topic of the group.
 *
 * Rights are separate bits a user has or lacks (default: none), for the
 * features that affect other users:
 *   FO_RIGHT_BLOCK      subscribe with the block slow-consumer policy
 *                       (which pauses other users' publishers)
 *   FO_RIGHT_MULTICAST  receive multicast delivery (datagrams carry every
 *                       topic of a group, so fo_acl_covers_filter applies
 *                       to the group's filter too)
 *
 * Threading: a built fo_acl_t is immutable; any thread may query it
 * concurrently. Ownership: fo_acl_build returns an acl the caller owns
 * (fo_acl_free); users.c owns the acls of a users table, which callers
 * borrow for as long as they hold a reference on the table.
 * Every filter argument is a NUL-terminated string, borrowed for the call.
 */
#ifndef FO_ACL_H
#define FO_ACL_H

#include <stddef.h>
#include "fo_err.h"

typedef enum fo_dir {
    FO_DIR_PUBLISH = 0,
    FO_DIR_SUBSCRIBE = 1,
} fo_dir_t;

enum {
    FO_RIGHT_BLOCK = 1u << 0,
    FO_RIGHT_MULTICAST = 1u << 1,
};
#define FO_RIGHTS_ALL (FO_RIGHT_BLOCK | FO_RIGHT_MULTICAST)

/* Filters in one list (allow or deny) at most. */
#define FO_ACL_MAX_FILTERS 1024

typedef struct fo_acl fo_acl_t;

/* Build an acl from copies of the filters (borrowed; NULL arrays with a
 * zero count are fine). Duplicates are dropped and the lists sorted, so
 * two acls with the same sets compare equal.
 * Errors: FO_ERR_INVAL when a filter is not valid (fo_filter_valid);
 * FO_ERR_RANGE when a list holds more than FO_ACL_MAX_FILTERS;
 * FO_ERR_NOMEM. *out is set only on FO_OK. */
FO_MUST_CHECK fo_err_t fo_acl_build(const char *const *allow, size_t nallow,
                                    const char *const *deny, size_t ndeny,
                                    fo_acl_t **out);
void fo_acl_free(fo_acl_t *acl);                    /* NULL is fine */

/* The questions above. topic: tlen bytes of a valid name (fo_topic_valid;
 * need not be NUL-terminated); filter: a valid filter. 1 = yes, 0 = no. */
int fo_acl_topic_ok(const fo_acl_t *acl, const char *topic, size_t tlen);
int fo_acl_filter_ok(const fo_acl_t *acl, const char *filter);
int fo_acl_covers_filter(const fo_acl_t *acl, const char *filter);

/* 1 when the allow list is not empty (something may be allowed). */
int fo_acl_allows_any(const fo_acl_t *acl);

/* 1 when both acls hold the same allow set and the same deny set. */
int fo_acl_equal(const fo_acl_t *a, const fo_acl_t *b);

/* The lists, sorted (for logs, metrics and tests). deny: 0 = allow list,
 * 1 = deny list. The strings belong to the acl. */
size_t fo_acl_count(const fo_acl_t *acl, int deny);
const char *fo_acl_filter_at(const fo_acl_t *acl, int deny, size_t i);

/* A right's bit from its name ("block", "multicast"): 0 when unknown.
 * fo_right_name: the name of one bit, NULL when not a right. */
unsigned fo_right_parse(const char *name);
const char *fo_right_name(unsigned bit);

#endif
