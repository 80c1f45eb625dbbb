/* users.h -- the users file: who may log in, with what, and may do what.
 *
 * The file (docs/SECURITY.md has the user-facing text) is line-based like
 * the config file: blank lines and `#` comments are skipped, every other
 * line is one directive about one user:
 *
 *   user alice password $argon2id$v=19$m=65536,t=2,p=1$...
 *   user svc   token    $argon2id$...
 *   user alice publish   allow orders.> events.%u.>
 *   user alice publish   deny  orders.admin.>
 *   user alice subscribe allow prices.> orders.>
 *   user alice allow block multicast
 *   user alice limit connections 100
 *
 * Defaults are closed: a user with no `publish allow` line may publish
 * nothing, one with no `subscribe allow` line may receive nothing
 * (`publish allow >` grants everything); deny wins over allow; the rights
 * `block` and `multicast` are off; limits are unlimited. Every user needs
 * a password or a token (or both), each an argon2id string as printed by
 * `fanoutd --hash-password` (fo_users_hash_cmd). `%u` in a filter is the
 * user's own name, and only as a whole token (`events.%u.>`).
 *
 * Names are 1..FO_USER_NAME_MAX bytes with no `.`, `*`, `>`, `%`,
 * whitespace or control byte, so a name substituted for %u is always
 * exactly one literal token: it can never widen a filter (Mosquitto's
 * CVE-2017-7650 was a client id of `#` substituted into a pattern).
 *
 * An empty file, a file with no user, or one that cannot be read is a
 * load error -- never "allow everyone" (Mosquitto's CVE-2018-12550).
 *
 * Tables. fo_users_load builds an immutable, reference-counted table
 * (fo_users_t). A connection keeps a reference on the table its user came
 * from for as long as it keeps the user; a SIGHUP reload builds a new
 * table and swaps it in, and the old one is freed when its last
 * connection lets go. Each table has a generation number, unique in the
 * process, which the auth cache uses to forget everything on a reload.
 * fo_user_diff tells what a reload changed for one user, so the caller
 * can end what is no longer allowed.
 *
 * Limits. Each user name has one set of counters (connections,
 * subscriptions, topics created) for the life of the process, shared by
 * every table that names the user, so a reload neither resets nor loses
 * them. fo_user_take checks against the limit of the table version the
 * caller holds. The counters are bounded by the number of distinct names
 * ever loaded.
 *
 * Threading. fo_users_load, fo_users_single: any thread (the main thread
 * in fanoutd), one load at a time or several, they do not share state
 * except the counters (locked). A table and its users are immutable: any
 * thread may call every const accessor concurrently. fo_users_ref/unref,
 * fo_user_take/give: any thread (atomics). fo_users_hash_*: any thread.
 *
 * Errors of the loaders are one line in err (when err/errlen are given):
 *   fanoutd: /etc/fanout/users:12: user "alice" publish allow: "a..b" is not a valid filter
 */
#ifndef FO_USERS_H
#define FO_USERS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "acl.h"
#include "fo_err.h"

#define FO_USER_NAME_MAX 64           /* bytes, without the NUL        */
#define FO_USERS_HASH_MAX 128         /* crypto_pwhash_STRBYTES, NUL incl. */
#define FO_USERS_SECRET_MAX 1024      /* longest password or token     */
#define FO_USERS_LINE_MAX 4096        /* longest users-file line       */
#define FO_USERS_LIMIT_NONE UINT64_MAX/* no limit                      */

typedef struct fo_users fo_users_t;   /* a loaded table (opaque)       */
typedef struct fo_user fo_user_t;     /* one user of a table (opaque)  */

typedef enum fo_secret_kind {
    FO_SECRET_PASSWORD = 0,
    FO_SECRET_TOKEN = 1,
} fo_secret_kind_t;

typedef enum fo_limit {
    FO_LIMIT_CONNECTIONS = 0,
    FO_LIMIT_SUBSCRIPTIONS,
    FO_LIMIT_TOPICS,                  /* topics this user created      */
    FO_LIMIT__COUNT
} fo_limit_t;

typedef enum fo_hash_cost {
    FO_HASH_INTERACTIVE = 0,   /* production: libsodium's INTERACTIVE
                                  (t=2, 64 MiB; tens of ms)            */
    FO_HASH_TEST_MIN = 1,      /* OPSLIMIT_MIN, MEMLIMIT_MIN (t=1, 8 KiB;
                                  microseconds): tests, and secrets that
                                  are in memory anyway (fo_users_single) */
} fo_hash_cost_t;

/* ------------------------------------------------------------ tables */

/* Load the users file at path. On FO_OK *out is a new table with one
 * reference (the caller's). Errors (err holds the line): FO_ERR_IO when
 * the file cannot be opened or read; FO_ERR_INVAL for any problem in it,
 * including no user at all; FO_ERR_NOMEM. *out is untouched on error.
 * Cost: also makes one argon2id hash (the table's dummy, see
 * fo_users_dummy_hash) with the cost of the file's first hash. */
FO_MUST_CHECK fo_err_t fo_users_load(const char *path, fo_users_t **out,
                                     char *err, size_t errlen);

/* The same from text in memory (len bytes, need not be NUL-terminated);
 * `where` names it in errors as the path would. */
FO_MUST_CHECK fo_err_t fo_users_parse(const char *where, const char *text, size_t len,
                                      fo_users_t **out, char *err, size_t errlen);

/* The table of the --user/--password shorthand: one user with that
 * password (hashed here at `cost`) and every right: publish and subscribe
 * `>`, block, multicast, no limits. fanoutd passes FO_HASH_TEST_MIN: the
 * password sits in its memory as given anyway, so a costly hash of it
 * protects nothing (hashing is for files that can leak), while every
 * login would pay it. FO_ERR_INVAL when the name is refused (rules above),
 * the password is empty or longer than FO_USERS_SECRET_MAX, or cost is
 * unknown; FO_ERR_NOMEM. Both strings are borrowed. */
FO_MUST_CHECK fo_err_t fo_users_single(const char *user, const char *password,
                                       fo_hash_cost_t cost, fo_users_t **out);

/* Take one more reference (returns t); drop one (the last frees the table
 * and its users). NULL is fine for unref. */
fo_users_t *fo_users_ref(fo_users_t *t);
void fo_users_unref(fo_users_t *t);

/* The user called name, or NULL. The pointer is borrowed from t: valid
 * while the caller holds a reference on t. name: any NUL-terminated
 * string (a client's HELLO.user), borrowed for the call. */
const fo_user_t *fo_users_find(const fo_users_t *t, const char *name);

/* Users in t, sorted by name (index 0..count-1, borrowed as above). */
size_t fo_users_count(const fo_users_t *t);
const fo_user_t *fo_users_at(const fo_users_t *t, size_t i);

/* Unique per table in this process, never 0, increasing per load. */
uint64_t fo_users_generation(const fo_users_t *t);

/* A valid argon2id hash of a random secret nobody knows, with the cost of
 * the table's first hash: verifying an unknown user (or a kind of secret
 * the user has not) against it costs what a real verification costs, so
 * timing does not tell which names exist. Borrowed from t. */
const char *fo_users_dummy_hash(const fo_users_t *t);

/* ------------------------------------------------------------ one user */

const char *fo_user_name(const fo_user_t *u);            /* borrowed */
/* The hash of that kind of secret, or NULL when the user has none. */
const char *fo_user_hash(const fo_user_t *u, fo_secret_kind_t kind);
/* The permissions of one direction (never NULL; an empty allow list when
 * the file gave none). Borrowed like the user. */
const fo_acl_t *fo_user_acl(const fo_user_t *u, fo_dir_t dir);
/* FO_RIGHT_* bits (acl.h). */
unsigned fo_user_rights(const fo_user_t *u);
/* The limit, FO_USERS_LIMIT_NONE when unlimited. */
uint64_t fo_user_limit(const fo_user_t *u, fo_limit_t which);

/* Count one more of `which` for this user's name: FO_OK, or FO_ERR_BUSY
 * when that would exceed this version's limit (nothing counted), or
 * FO_ERR_INVAL for a bad `which`. Every FO_OK is matched by one
 * fo_user_give, on any version of the user (the counter is per name).
 * Any thread; lock-free. */
FO_MUST_CHECK fo_err_t fo_user_take(const fo_user_t *u, fo_limit_t which);
void fo_user_give(const fo_user_t *u, fo_limit_t which);
/* The counters of u's name, which live as long as the process (longer
 * than any table): for what stays counted after the login that took it
 * is gone, such as a topic the user created (topic.h keeps this and gives
 * FO_LIMIT_TOPICS back when the topic is freed). Any thread. */
typedef struct fo_user_counters fo_user_counters_t;
fo_user_counters_t *fo_user_counters(const fo_user_t *u);
/* fo_user_give by counters (NULL is fine). */
void fo_user_counters_give(fo_user_counters_t *cnt, fo_limit_t which);
/* What is counted now (for metrics and tests). */
uint64_t fo_user_used(const fo_user_t *u, fo_limit_t which);

/* What a reload changed for one user: old from the table in use, new_
 * the same name in the new table (NULL when the new table lacks it).
 * 0 = nothing. Each bit says what the caller should do:
 *   FO_USER_REMOVED      the user is gone: close its connections
 *   FO_USER_CREDENTIALS  its password or token changed or went away:
 *                        close its connections (they logged in with a
 *                        secret the file no longer holds)
 *   FO_USER_PUBLISH      publish allow/deny changed: forget cached
 *                        publish decisions, check again per topic
 *   FO_USER_SUBSCRIBE    subscribe allow/deny changed: check each
 *                        subscription again (fo_acl_filter_ok; unbind
 *                        topics fo_acl_topic_ok now refuses)
 *   FO_USER_LOST_BLOCK   `block` was taken away: end (or downgrade) its
 *                        block-policy subscriptions
 *   FO_USER_LOST_MULTICAST  `multicast` was taken away: end its
 *                        multicast subscriptions, and it must not get the
 *                        next group key
 *   FO_USER_LIMITS       a limit changed (lowered or raised): what is
 *                        already counted stays; new takes see the new one
 * Rights that were granted, not taken, need no action and set no bit.
 * Any thread; both users borrowed. */
enum {
    FO_USER_REMOVED = 1u << 0,
    FO_USER_CREDENTIALS = 1u << 1,
    FO_USER_PUBLISH = 1u << 2,
    FO_USER_SUBSCRIBE = 1u << 3,
    FO_USER_LOST_BLOCK = 1u << 4,
    FO_USER_LOST_MULTICAST = 1u << 5,
    FO_USER_LIMITS = 1u << 6,
};
unsigned fo_user_diff(const fo_user_t *old, const fo_user_t *new_);

/* ------------------------------------------------------------ hashing */


/* The argon2id string (crypto_pwhash_str) of a secret, into out (NUL-
 * terminated). FO_ERR_INVAL when the secret is empty or longer than
 * FO_USERS_SECRET_MAX or cost is unknown; FO_ERR_NOMEM when libsodium
 * cannot get the memory. The secret is borrowed; nothing keeps it. */
FO_MUST_CHECK fo_err_t fo_users_hash_secret(const char *secret, fo_hash_cost_t cost,
                                            char out[FO_USERS_HASH_MAX]);

/* The cost fo_users_single and fo_users_hash_cmd use (default
 * FO_HASH_INTERACTIVE). A test hook: set it before other threads run. */
void fo_users_set_hash_cost(fo_hash_cost_t cost);

/* `fanoutd --hash-password`: read a secret and print its hash line to
 * out. When `in` is a terminal: prompts on err, reads with echo off
 * (termios; SIGINT and the like are held until the terminal is restored),
 * asks twice and refuses a mismatch. Otherwise: reads one line (without
 * its \n or \r\n). The secret is wiped from memory after use. The same
 * hash serves as a `password` or a `token` line. Returns the exit status:
 * 0 done, 1 an error (one line on err: empty, too long, mismatch, read
 * error). */
int fo_users_hash_cmd(FILE *in, FILE *out, FILE *err);

#endif
