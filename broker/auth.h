/* auth.h -- checking a login's secret off the workers, and what to do
 * about failures.
 *
 * An argon2id verification costs milliseconds of CPU and tens of MiB: it
 * never runs on a worker thread. fo_auth_t is a small pool of auth threads
 * with a bounded queue:
 *
 *   worker: HELLO(user, secret)
 *     fo_auth_cached(...)   == FO_OK  -> logged in now (microseconds)
 *     else fo_auth_submit(...) == FO_OK -> wait; the callback runs on an
 *          auth thread with the verdict and (say) posts it to the
 *          worker's inbox
 *     else (FO_ERR_BUSY, ...)          -> fail the login at once
 *   on FO_AUTH_FAIL: wait fo_auth_fail_delay_ms(a, peer, user), then
 *     answer ERR_AUTH.
 *
 * Verdicts never say which part was wrong: an unknown user, a wrong
 * secret and a user without that kind of secret are all FO_AUTH_FAIL, and
 * each costs one verification (an unknown user is verified against the
 * table's dummy hash, users.h), so neither the answer nor its timing
 * tells which names exist.
 *
 * Cache. Successes (never failures) are remembered for cache_ttl_ms,
 * keyed by the table's generation, the user, the kind, and a keyed
 * BLAKE2b of the secret (a random key per fo_auth_t, so the cache holds
 * nothing that could be checked offline), and compared in constant time.
 * A reload makes a new generation: every entry of the old table misses.
 * Bounded to cache_entries (4-way sets, least recently used evicted);
 * the time to live counts from the verification, not from the last hit.
 *
 * Failures. fo_auth_fail_delay_ms counts a failure for the peer's address
 * and for the user name, and returns the delay to apply before answering:
 * fail_delay_base_ms doubled for each recent failure of the worse of the
 * two, at most fail_delay_max_ms; a count halves for each minute without
 * a failure. It also calls the failure log hook, at most
 * fail_log_per_sec times a second (the next call says how many it
 * suppressed). A success does not reset the counts (an attacker with one
 * good account could otherwise wipe the address's record).
 *
 * Threading. fo_auth_submit, fo_auth_cached, fo_auth_fail_delay_ms,
 * fo_auth_cache_clear, fo_auth_stats: any thread, concurrently, also from
 * a callback. Callbacks run on an auth thread, one per job, exactly once
 * for every FO_OK of fo_auth_submit, with no lock of this module held;
 * they must not call fo_auth_shutdown or fo_auth_destroy.
 * fo_auth_shutdown: once, from one thread (not a callback); afterwards no
 * callback runs and fo_auth_submit answers FO_ERR_CLOSED.
 * fo_auth_destroy: after every other call on `a` has returned.
 * The auth threads block every signal (docs/ARCHITECTURE.md).
 */
#ifndef FO_AUTH_H
#define FO_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"
#include "users.h"

typedef struct fo_auth fo_auth_t;

typedef enum fo_auth_verdict {
    FO_AUTH_OK = 0,          /* the secret is right                        */
    FO_AUTH_FAIL = 1,        /* unknown user or wrong secret (never which) */
    FO_AUTH_CANCELLED = 2,   /* fo_auth_shutdown came before verification  */
} fo_auth_verdict_t;

/* What a callback gets (valid during the callback; the struct is not the
 * callback's to keep, what it points to is, as said). */
typedef struct fo_auth_result {
    fo_auth_verdict_t verdict;
    /* FO_AUTH_OK: one reference on the table submitted, now the
     * callback's (it keeps it as long as it keeps `user`, then
     * fo_users_unref); NULL otherwise (the module dropped its own). */
    fo_users_t *users;
    const fo_user_t *user;   /* FO_AUTH_OK: borrowed from users; else NULL */
    void *ud;                /* as given to fo_auth_submit                 */
} fo_auth_result_t;

typedef void (*fo_auth_cb)(const fo_auth_result_t *r);

/* A failed login, for the log: src and user as given to
 * fo_auth_fail_delay_ms (either may be NULL), `recent` the larger of the
 * two decayed failure counts, `suppressed` how many calls were not
 * logged since the last one that was. Called on the thread that called
 * fo_auth_fail_delay_ms, with no lock held. */
typedef void (*fo_auth_log_fn)(void *ud, const char *src, const char *user,
                               uint32_t recent, uint32_t suppressed);

typedef struct fo_auth_opts {
    uint32_t cache_entries;       /* successes remembered; 0 = no cache (4096) */
    uint32_t cache_ttl_ms;        /* how long (600000 = 10 min)                */
    uint32_t fail_delay_base_ms;  /* first failure's delay (250)               */
    uint32_t fail_delay_max_ms;   /* at most (5000)                            */
    uint32_t fail_log_per_sec;    /* log hook calls a second (10)              */
    fo_auth_log_fn fail_log;      /* NULL = a WARN line through log.h          */
    void *fail_log_ud;
    uint64_t (*now_ms)(void);     /* tests: the monotonic clock in ms (NULL)   */
} fo_auth_opts_t;

/* The defaults above. */
void fo_auth_opts_init(fo_auth_opts_t *o);

/* Start nthreads auth threads (1..64) with room for max_inflight jobs
 * (1..65536; queued or being verified). opts: borrowed, copied; NULL =
 * defaults. Errors: FO_ERR_INVAL (bounds), FO_ERR_NOMEM, FO_ERR_IO (a
 * thread could not start; nothing is left running). */
FO_MUST_CHECK fo_err_t fo_auth_create(unsigned nthreads, unsigned max_inflight,
                                      const fo_auth_opts_t *opts, fo_auth_t **out);

/* Queue the verification of one login. users: a table (a reference is
 * taken here; the caller keeps its own). name: the claimed user (NULL or
 * any string: unknown names are verified against the dummy hash);
 * secret: len bytes; both are copied (the copy of the secret is wiped
 * with sodium_memzero after use), so the caller may free them at once.
 * cb(result) then runs exactly once on an auth thread, with ud in it.
 * Errors, after which cb never runs and nothing is kept:
 *   FO_ERR_BUSY    max_inflight jobs are queued or running (counted)
 *   FO_ERR_CLOSED  fo_auth_shutdown has begun
 *   FO_ERR_RANGE   len > FO_USERS_SECRET_MAX: answer it as a failure
 *   FO_ERR_INVAL   NULL a/users/cb, secret NULL with len > 0, bad kind */
FO_MUST_CHECK fo_err_t fo_auth_submit(fo_auth_t *a, fo_users_t *users, const char *name,
                                      fo_secret_kind_t kind, const void *secret, size_t len,
                                      fo_auth_cb cb, void *ud);

/* The cache, on the caller's thread (microseconds: one keyed BLAKE2b and
 * one locked set of 4 entries). FO_OK: the same (table generation, name,
 * kind, secret) was verified within the TTL; *user is borrowed from
 * users (take your own fo_users_ref to keep it). FO_ERR_NOT_FOUND: a miss
 * (or no cache) -- submit it. Nothing is copied or kept. */
FO_MUST_CHECK fo_err_t fo_auth_cached(fo_auth_t *a, const fo_users_t *users, const char *name,
                                      fo_secret_kind_t kind, const void *secret, size_t len,
                                      const fo_user_t **user);

/* Forget every cached success (e.g. after a reload, to free the memory
 * early: the new generation already misses). */
void fo_auth_cache_clear(fo_auth_t *a);

/* Count a failed login from src (the peer's address without its port,
 * e.g. "192.0.2.7"; NULL = unknown) for name (NULL = none) and return the
 * milliseconds to wait before answering it. Calls the log hook (rate-
 * limited). Both strings borrowed for the call. */
uint32_t fo_auth_fail_delay_ms(fo_auth_t *a, const char *src, const char *name);

typedef struct fo_auth_stats {
    uint64_t submitted;       /* jobs accepted by fo_auth_submit           */
    uint64_t busy;            /* refused with FO_ERR_BUSY                  */
    uint64_t ok, failed, cancelled;   /* verdicts given to callbacks       */
    uint64_t verifications;   /* argon2id verifications run (dummy too)    */
    uint64_t cache_hits, cache_misses;
    uint64_t cache_entries;   /* live (unexpired) entries now              */
    uint64_t failures;        /* fo_auth_fail_delay_ms calls               */
    uint64_t fail_logs_suppressed;
    uint32_t inflight;        /* jobs queued or running now                */
} fo_auth_stats_t;

void fo_auth_stats(fo_auth_t *a, fo_auth_stats_t *st);

/* Stop: new submissions get FO_ERR_CLOSED; queued jobs are verified
 * (drain = 1) or given FO_AUTH_CANCELLED without verification (drain =
 * 0), on the auth threads; jobs being verified finish with their real
 * verdict. Returns when every callback has returned and the threads have
 * exited. A second call does nothing. */
void fo_auth_shutdown(fo_auth_t *a, int drain);

/* fo_auth_shutdown(a, 0) if not done, then free everything (the cache is
 * wiped first). NULL is fine. */
void fo_auth_destroy(fo_auth_t *a);

#endif
