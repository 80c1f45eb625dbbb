/* test_auth.c -- the auth pool: verdicts (and that they never say which
 * part was wrong), the cache of successes (hits, misses, failures never
 * cached, reload, expiry, bound), FO_ERR_BUSY, shutdown cancelling or
 * draining with every callback run exactly once, failure delays and the
 * rate-limited log hook, and a stress run for TSan: several submitters,
 * cached and uncached logins, a reloader swapping tables, then a destroy
 * with work still queued.
 *
 * Hashes use the minimum argon2id cost (8 KiB, one pass), except the
 * timing test, which needs a verification long enough to measure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>
#include "auth.h"
#include "clock.h"

static char hpw[FO_USERS_HASH_MAX], htok[FO_USERS_HASH_MAX];

static int setup(void **state)
{
    (void)state;
    if (fo_users_hash_secret("alice-pw", FO_HASH_TEST_MIN, hpw) != FO_OK ||
        fo_users_hash_secret("svc-token", FO_HASH_TEST_MIN, htok) != FO_OK)
        return -1;
    return 0;
}

/* No cmocka assertion here: the reloader thread calls it too (cmocka's
 * assertions belong to the main thread). */
static fo_users_t *table_try(void)
{
    char text[1024];
    snprintf(text, sizeof text,
             "user alice password %s\nuser alice publish allow >\n"
             "user svc token %s\nuser svc subscribe allow x.>\n", hpw, htok);
    fo_users_t *t = NULL;
    char err[256];
    if (fo_users_parse("t", text, strlen(text), &t, err, sizeof err) != FO_OK)
        return NULL;
    return t;
}

static fo_users_t *table(void)
{
    fo_users_t *t = table_try();
    assert_non_null(t);
    return t;
}

/* ---------------------------------------------------------------- a collector */

#define MAXR 64
typedef struct coll {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n;
    fo_auth_verdict_t verdict[MAXR];
    fo_users_t *users[MAXR];
    const fo_user_t *user[MAXR];
    intptr_t ud[MAXR];
    /* a gate the callback of ud == gate_ud waits at */
    intptr_t gate_ud;
    int gate_open, at_gate;
} coll_t;

static coll_t C;

static void coll_reset(void)
{
    pthread_mutex_destroy(&C.lock);
    pthread_cond_destroy(&C.cond);
    memset(&C, 0, sizeof C);
    pthread_mutex_init(&C.lock, NULL);
    pthread_condattr_t ca;                   /* fo_deadline_ts is CLOCK_MONOTONIC */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&C.cond, &ca);
    pthread_condattr_destroy(&ca);
    C.gate_ud = -1;
}

static void on_result(const fo_auth_result_t *r)
{
    pthread_mutex_lock(&C.lock);
    if ((intptr_t)r->ud == C.gate_ud) {
        C.at_gate = 1;
        pthread_cond_broadcast(&C.cond);
        while (!C.gate_open)
            pthread_cond_wait(&C.cond, &C.lock);
    }
    if (C.n == MAXR) {                   /* checked by the test: n stops short */
        pthread_mutex_unlock(&C.lock);
        return;
    }
    C.verdict[C.n] = r->verdict;
    C.users[C.n] = r->users;
    C.user[C.n] = r->user;
    C.ud[C.n] = (intptr_t)r->ud;
    C.n++;
    pthread_cond_broadcast(&C.cond);
    pthread_mutex_unlock(&C.lock);
}

static void wait_for(int n)
{
    struct timespec dl = fo_deadline_ts(10000);
    pthread_mutex_lock(&C.lock);
    while (C.n < n)
        if (pthread_cond_timedwait(&C.cond, &C.lock, &dl) != 0)
            break;
    int got = C.n;
    pthread_mutex_unlock(&C.lock);
    assert_int_equal(got, n);
}

/* A slot is given back just after its callback returns: wait for that. */
static void wait_idle(fo_auth_t *a, fo_auth_stats_t *st)
{
    for (int i = 0; i < 5000; i++) {
        fo_auth_stats(a, st);
        if (st->inflight == 0)
            return;
        usleep(1000);
    }
    fail_msg("jobs still in flight after 5 s");
}

/* the verdict of the result with that ud */
static fo_auth_verdict_t verdict_of(intptr_t ud, const fo_user_t **user)
{
    for (int i = 0; i < C.n; i++)
        if (C.ud[i] == ud) {
            if (user)
                *user = C.user[i];
            return C.verdict[i];
        }
    fail_msg("no result for %ld", (long)ud);
    return FO_AUTH_FAIL;
}

static void release_results(void)
{
    for (int i = 0; i < C.n; i++) {
        fo_users_unref(C.users[i]);
        C.users[i] = NULL;
    }
}

static fo_err_t submit(fo_auth_t *a, fo_users_t *t, const char *name, fo_secret_kind_t k,
                       const char *secret, intptr_t ud)
{
    return fo_auth_submit(a, t, name, k, secret, secret ? strlen(secret) : 0, on_result, (void *)ud);
}

static fo_err_t cached(fo_auth_t *a, fo_users_t *t, const char *name, fo_secret_kind_t k,
                       const char *secret, const fo_user_t **u)
{
    return fo_auth_cached(a, t, name, k, secret, strlen(secret), u);
}

/* ---------------------------------------------------------------- tests */

static void test_create_bounds(void **state)
{
    (void)state;
    fo_auth_t *a = NULL;
    assert_int_equal(fo_auth_create(0, 8, NULL, &a), FO_ERR_INVAL);
    assert_int_equal(fo_auth_create(65, 8, NULL, &a), FO_ERR_INVAL);
    assert_int_equal(fo_auth_create(1, 0, NULL, &a), FO_ERR_INVAL);
    assert_int_equal(fo_auth_create(1, 65537, NULL, &a), FO_ERR_INVAL);
    assert_int_equal(fo_auth_create(1, 8, NULL, NULL), FO_ERR_INVAL);
    assert_null(a);
    fo_auth_opts_t o;
    fo_auth_opts_init(&o);
    assert_int_equal(o.cache_entries, 4096);
    assert_int_equal(o.cache_ttl_ms, 600000);
    assert_int_equal(fo_auth_create(2, 8, &o, &a), FO_OK);
    fo_auth_destroy(a);
    fo_auth_destroy(NULL);
}

static void test_verdicts(void **state)
{
    (void)state;
    coll_reset();
    fo_users_t *t = table();
    fo_auth_t *a = NULL;
    assert_int_equal(fo_auth_create(2, 16, NULL, &a), FO_OK);
    char longname[100];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(submit(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", 1), FO_OK);
    assert_int_equal(submit(a, t, "alice", FO_SECRET_PASSWORD, "alice-pX", 2), FO_OK);
    assert_int_equal(submit(a, t, "mallory", FO_SECRET_PASSWORD, "alice-pw", 3), FO_OK);
    assert_int_equal(submit(a, t, "alice", FO_SECRET_TOKEN, "alice-pw", 4), FO_OK);   /* no token */
    assert_int_equal(submit(a, t, "svc", FO_SECRET_TOKEN, "svc-token", 5), FO_OK);
    assert_int_equal(submit(a, t, "svc", FO_SECRET_PASSWORD, "svc-token", 6), FO_OK);
    assert_int_equal(submit(a, t, NULL, FO_SECRET_PASSWORD, "x", 7), FO_OK);
    assert_int_equal(submit(a, t, longname, FO_SECRET_PASSWORD, "x", 8), FO_OK);
    assert_int_equal(submit(a, t, "alice", FO_SECRET_PASSWORD, "", 9), FO_OK);
    /* the secret is bytes, not a C string: "alice-pw\0" is not "alice-pw" */
    assert_int_equal(fo_auth_submit(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", 9, on_result,
                                    (void *)10), FO_OK);
    wait_for(10);
    const fo_user_t *u = NULL;
    assert_int_equal(verdict_of(1, &u), FO_AUTH_OK);
    assert_string_equal(fo_user_name(u), "alice");
    assert_int_equal(verdict_of(5, &u), FO_AUTH_OK);
    assert_string_equal(fo_user_name(u), "svc");
    for (intptr_t i = 2; i <= 10; i++)
        if (i != 5) {
            assert_int_equal(verdict_of(i, &u), FO_AUTH_FAIL);
            assert_null(u);
        }
    /* OK results carry a reference on the table; failures carry none */
    for (int i = 0; i < C.n; i++)
        assert_true((C.users[i] != NULL) == (C.verdict[i] == FO_AUTH_OK));
    for (int i = 0; i < C.n; i++)
        assert_true(C.users[i] == NULL || C.users[i] == t);
    /* every login cost one verification, unknown names too */
    fo_auth_stats_t st;
    wait_idle(a, &st);
    assert_int_equal(st.submitted, 10);
    assert_int_equal(st.verifications, 10);
    assert_int_equal(st.ok, 2);
    assert_int_equal(st.failed, 8);
    assert_int_equal(st.inflight, 0);

    /* refusals: nothing queued, no callback */
    char big[FO_USERS_SECRET_MAX + 1];
    memset(big, 'x', sizeof big);
    assert_int_equal(fo_auth_submit(a, t, "alice", FO_SECRET_PASSWORD, big, sizeof big, on_result, NULL),
                     FO_ERR_RANGE);
    assert_int_equal(fo_auth_submit(a, t, "alice", (fo_secret_kind_t)2, "x", 1, on_result, NULL), FO_ERR_INVAL);
    assert_int_equal(fo_auth_submit(a, t, "alice", FO_SECRET_PASSWORD, "x", 1, NULL, NULL), FO_ERR_INVAL);
    assert_int_equal(fo_auth_submit(a, NULL, "alice", FO_SECRET_PASSWORD, "x", 1, on_result, NULL), FO_ERR_INVAL);
    assert_int_equal(fo_auth_submit(a, t, "alice", FO_SECRET_PASSWORD, NULL, 1, on_result, NULL), FO_ERR_INVAL);
    fo_auth_stats(a, &st);
    assert_int_equal(st.submitted, 10);

    fo_auth_destroy(a);
    release_results();
    fo_users_unref(t);                 /* the last reference: ASan sees no leak */
}

static uint64_t fake_now = 1000000;
static uint64_t fake_clock(void) { return fake_now; }

static void login(fo_auth_t *a, fo_users_t *t, const char *name, fo_secret_kind_t k, const char *s,
                  fo_auth_verdict_t want)
{
    int n = C.n;
    assert_int_equal(submit(a, t, name, k, s, 100 + n), FO_OK);
    wait_for(n + 1);
    assert_int_equal(C.verdict[n], want);
}

static void test_cache(void **state)
{
    (void)state;
    coll_reset();
    fo_auth_opts_t o;
    fo_auth_opts_init(&o);
    o.now_ms = fake_clock;
    o.cache_ttl_ms = 1000;
    fo_auth_t *a = NULL;
    assert_int_equal(fo_auth_create(1, 8, &o, &a), FO_OK);
    fo_users_t *t = table();
    const fo_user_t *u = NULL;

    assert_int_equal(cached(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", &u), FO_ERR_NOT_FOUND);
    login(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", FO_AUTH_OK);
    assert_int_equal(cached(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", &u), FO_OK);
    assert_ptr_equal(u, fo_users_find(t, "alice"));
    /* only the same secret, kind and name hit */
    assert_int_equal(cached(a, t, "alice", FO_SECRET_PASSWORD, "alice-pX", &u), FO_ERR_NOT_FOUND);
    assert_int_equal(cached(a, t, "alice", FO_SECRET_PASSWORD, "alice-p", &u), FO_ERR_NOT_FOUND);
    assert_int_equal(cached(a, t, "alice", FO_SECRET_TOKEN, "alice-pw", &u), FO_ERR_NOT_FOUND);
    assert_int_equal(cached(a, t, "alicE", FO_SECRET_PASSWORD, "alice-pw", &u), FO_ERR_NOT_FOUND);
    /* failures are never cached */
    login(a, t, "svc", FO_SECRET_TOKEN, "wrong", FO_AUTH_FAIL);
    assert_int_equal(cached(a, t, "svc", FO_SECRET_TOKEN, "wrong", &u), FO_ERR_NOT_FOUND);
    login(a, t, "nobody", FO_SECRET_TOKEN, "x", FO_AUTH_FAIL);
    assert_int_equal(cached(a, t, "nobody", FO_SECRET_TOKEN, "x", &u), FO_ERR_NOT_FOUND);
    /* expiry counts from the verification, hits do not extend it */
    fake_now += 600;
    assert_int_equal(cached(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", &u), FO_OK);
    fake_now += 399;
    assert_int_equal(cached(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", &u), FO_OK);
    fake_now += 1;
    assert_int_equal(cached(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", &u), FO_ERR_NOT_FOUND);
    fo_auth_stats_t st;
    fo_auth_stats(a, &st);
    assert_int_equal(st.cache_entries, 0);
    /* a reload (new generation) misses; the new table caches anew */
    login(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", FO_AUTH_OK);
    fo_users_t *t2 = table();
    assert_int_equal(cached(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", &u), FO_OK);
    assert_int_equal(cached(a, t2, "alice", FO_SECRET_PASSWORD, "alice-pw", &u), FO_ERR_NOT_FOUND);
    login(a, t2, "alice", FO_SECRET_PASSWORD, "alice-pw", FO_AUTH_OK);
    assert_int_equal(cached(a, t2, "alice", FO_SECRET_PASSWORD, "alice-pw", &u), FO_OK);
    assert_ptr_equal(u, fo_users_find(t2, "alice"));
    /* clear */
    fo_auth_cache_clear(a);
    assert_int_equal(cached(a, t2, "alice", FO_SECRET_PASSWORD, "alice-pw", &u), FO_ERR_NOT_FOUND);
    /* odd arguments miss, never crash */
    assert_int_equal(fo_auth_cached(a, t2, NULL, FO_SECRET_PASSWORD, "x", 1, &u), FO_ERR_NOT_FOUND);
    assert_int_equal(fo_auth_cached(a, t2, "alice", (fo_secret_kind_t)5, "x", 1, &u), FO_ERR_NOT_FOUND);
    assert_int_equal(fo_auth_cached(a, t2, "alice", FO_SECRET_PASSWORD, NULL, 1, &u), FO_ERR_NOT_FOUND);
    fo_auth_stats(a, &st);
    assert_true(st.cache_hits >= 5);
    assert_true(st.cache_misses >= 10);

    fo_auth_destroy(a);
    release_results();
    fo_users_unref(t);
    fo_users_unref(t2);
}

static void test_cache_bound_and_speed(void **state)
{
    (void)state;
    coll_reset();
    /* 40 users; a cache of 8 keeps at most 8 */
    char *text = malloc(40 * 300);
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(text + n, 40 * 300 - n, "user u%d password %s\n", i, hpw);
    fo_users_t *t = NULL;
    char err[256];
    assert_int_equal(fo_users_parse("t", text, n, &t, err, sizeof err), FO_OK);
    free(text);
    fo_auth_opts_t o;
    fo_auth_opts_init(&o);
    o.cache_entries = 8;
    fo_auth_t *a = NULL;
    assert_int_equal(fo_auth_create(2, 64, &o, &a), FO_OK);
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof name, "u%d", i);
        assert_int_equal(submit(a, t, name, FO_SECRET_PASSWORD, "alice-pw", i), FO_OK);
    }
    wait_for(40);
    fo_auth_stats_t st;
    fo_auth_stats(a, &st);
    assert_int_equal(st.ok, 40);
    assert_true(st.cache_entries <= 8);
    assert_true(st.cache_entries >= 1);
    /* the last one verified is cached (it evicted something older) */
    const fo_user_t *u = NULL;
    int hits = 0;
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof name, "u%d", i);
        hits += cached(a, t, name, FO_SECRET_PASSWORD, "alice-pw", &u) == FO_OK;
    }
    assert_int_equal((uint64_t)hits, st.cache_entries);

    /* a hit costs microseconds (a rough figure; the bound is loose) */
    login(a, t, "u0", FO_SECRET_PASSWORD, "alice-pw", FO_AUTH_OK);
    uint64_t t0 = fo_clock_ns();
    for (int i = 0; i < 1000; i++)
        assert_int_equal(cached(a, t, "u0", FO_SECRET_PASSWORD, "alice-pw", &u), FO_OK);
    double us = (double)(fo_clock_ns() - t0) / 1000.0 / 1000.0;
    printf("fo_auth_cached hit: %.2f us\n", us);
    assert_true(us < 1000.0);

    /* no cache at all */
    fo_auth_destroy(a);
    release_results();
    coll_reset();
    o.cache_entries = 0;
    assert_int_equal(fo_auth_create(1, 4, &o, &a), FO_OK);
    login(a, t, "u1", FO_SECRET_PASSWORD, "alice-pw", FO_AUTH_OK);
    assert_int_equal(cached(a, t, "u1", FO_SECRET_PASSWORD, "alice-pw", &u), FO_ERR_NOT_FOUND);
    fo_auth_destroy(a);
    release_results();
    fo_users_unref(t);
}

static void wait_at_gate(void)
{
    pthread_mutex_lock(&C.lock);
    while (!C.at_gate)
        pthread_cond_wait(&C.cond, &C.lock);
    pthread_mutex_unlock(&C.lock);
}

static void open_gate(void)
{
    pthread_mutex_lock(&C.lock);
    C.gate_open = 1;
    pthread_cond_broadcast(&C.cond);
    pthread_mutex_unlock(&C.lock);
}

static void test_busy(void **state)
{
    (void)state;
    coll_reset();
    C.gate_ud = 1;
    fo_users_t *t = table();
    fo_auth_t *a = NULL;
    assert_int_equal(fo_auth_create(1, 2, NULL, &a), FO_OK);
    assert_int_equal(submit(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", 1), FO_OK);
    wait_at_gate();                                  /* job 1 holds the only thread */
    assert_int_equal(submit(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", 2), FO_OK);
    assert_int_equal(submit(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", 3), FO_ERR_BUSY);
    assert_int_equal(submit(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", 4), FO_ERR_BUSY);
    fo_auth_stats_t st;
    fo_auth_stats(a, &st);
    assert_int_equal(st.busy, 2);
    assert_int_equal(st.inflight, 2);
    open_gate();
    wait_for(2);
    /* room again once the callbacks returned */
    wait_idle(a, &st);
    assert_int_equal(submit(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", 5), FO_OK);
    wait_for(3);
    fo_auth_destroy(a);
    release_results();
    fo_users_unref(t);
}

typedef struct { fo_auth_t *a; int drain; } shut_arg_t;

static void *shut_thread(void *p)
{
    shut_arg_t *s = p;
    fo_auth_shutdown(s->a, s->drain);
    return NULL;
}

static void shutdown_case(int drain)
{
    coll_reset();
    C.gate_ud = 1;
    fo_users_t *t = table();
    fo_auth_t *a = NULL;
    assert_int_equal(fo_auth_create(1, 16, NULL, &a), FO_OK);
    assert_int_equal(submit(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", 1), FO_OK);
    wait_at_gate();
    for (intptr_t i = 2; i <= 6; i++)
        assert_int_equal(submit(a, t, i % 2 ? "alice" : "svc", i % 2 ? FO_SECRET_PASSWORD : FO_SECRET_TOKEN,
                                i % 2 ? "alice-pw" : "svc-token", i), FO_OK);
    shut_arg_t sa = { a, drain };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, shut_thread, &sa), 0);
    /* once shutdown has begun, submissions are refused (the ones before
     * it began are queued like the others) */
    fo_err_t e = FO_OK;
    int extra = 0;
    for (int i = 0; i < 5000 && e != FO_ERR_CLOSED; i++) {
        e = submit(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", 7 + extra);
        extra += e == FO_OK;
        usleep(1000);
    }
    assert_int_equal(e, FO_ERR_CLOSED);
    open_gate();
    pthread_join(th, NULL);
    /* every callback ran exactly once */
    int total = 6 + extra;
    assert_int_equal(C.n, total);
    for (intptr_t i = 1; i <= total; i++) {
        int seen = 0;
        for (int k = 0; k < C.n; k++)
            seen += C.ud[k] == i;
        assert_int_equal(seen, 1);
    }
    assert_int_equal(verdict_of(1, NULL), FO_AUTH_OK);          /* was running: real verdict */
    for (intptr_t i = 2; i <= total; i++)
        assert_int_equal(verdict_of(i, NULL), drain ? FO_AUTH_OK : FO_AUTH_CANCELLED);
    fo_auth_stats_t st;
    fo_auth_stats(a, &st);
    assert_int_equal(st.cancelled, drain ? 0 : (uint64_t)total - 1);
    assert_int_equal(st.verifications, drain ? (uint64_t)total : 1);
    assert_int_equal(submit(a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", 99), FO_ERR_CLOSED);
    fo_auth_shutdown(a, 1);                                     /* a second call: nothing */
    fo_auth_destroy(a);
    assert_int_equal(C.n, total);
    release_results();
    fo_users_unref(t);
}

static void test_shutdown_cancels(void **state)
{
    (void)state;
    shutdown_case(0);
}

static void test_shutdown_drains(void **state)
{
    (void)state;
    shutdown_case(1);
}

/* ---------------------------------------------------------------- failures */

typedef struct { int n; char src[64], user[80]; uint32_t recent, suppressed; } logged_t;
static logged_t L;

static void log_hook(void *ud, const char *src, const char *user, uint32_t recent, uint32_t suppressed)
{
    assert_ptr_equal(ud, &L);
    L.n++;
    snprintf(L.src, sizeof L.src, "%s", src ? src : "(null)");
    snprintf(L.user, sizeof L.user, "%s", user ? user : "(null)");
    L.recent = recent;
    L.suppressed = suppressed;
}

static void test_fail_delay(void **state)
{
    (void)state;
    fo_auth_opts_t o;
    fo_auth_opts_init(&o);
    o.now_ms = fake_clock;
    o.fail_delay_base_ms = 100;
    o.fail_delay_max_ms = 1000;
    o.fail_log = log_hook;
    o.fail_log_ud = &L;
    o.fail_log_per_sec = 1000;
    fo_auth_t *a = NULL;
    assert_int_equal(fo_auth_create(1, 4, &o, &a), FO_OK);
    memset(&L, 0, sizeof L);
    fake_now = 5000000;
    /* one address guessing one user: doubling, capped */
    static const uint32_t want[] = { 100, 200, 400, 800, 1000, 1000, 1000 };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(fo_auth_fail_delay_ms(a, "192.0.2.7", "alice"), want[i]);
    assert_int_equal(L.n, 7);
    assert_string_equal(L.src, "192.0.2.7");
    assert_string_equal(L.user, "alice");
    assert_int_equal(L.recent, 7);
    /* the same user from elsewhere: the user's count still applies */
    assert_int_equal(fo_auth_fail_delay_ms(a, "198.51.100.1", "alice"), 1000);
    /* the same address, other users: the address's count applies */
    assert_int_equal(fo_auth_fail_delay_ms(a, "192.0.2.7", "bob"), 1000);
    /* a fresh address and user: the base */
    assert_int_equal(fo_auth_fail_delay_ms(a, "203.0.113.5", "carol"), 100);
    assert_int_equal(fo_auth_fail_delay_ms(a, NULL, NULL), 100);
    assert_string_equal(L.src, "(null)");
    /* counts halve per quiet minute */
    fake_now += 60000;                       /* carol: 1 -> 0, +1 */
    assert_int_equal(fo_auth_fail_delay_ms(a, "203.0.113.5", "carol"), 100);
    fake_now += 60000;                       /* 192.0.2.7: 8 two minutes ago -> 2, +1 */
    assert_int_equal(fo_auth_fail_delay_ms(a, "192.0.2.7", "dave"), 400);
    fake_now += 3600000;                     /* an hour: both forgotten */
    assert_int_equal(fo_auth_fail_delay_ms(a, "192.0.2.7", "alice"), 100);
    fo_auth_stats_t st;
    fo_auth_stats(a, &st);
    assert_int_equal(st.failures, 14);
    fo_auth_destroy(a);

    /* the log hook is rate-limited per second and says what it skipped */
    o.fail_log_per_sec = 3;
    assert_int_equal(fo_auth_create(1, 4, &o, &a), FO_OK);
    memset(&L, 0, sizeof L);
    fake_now = 9000000;
    for (int i = 0; i < 10; i++)
        (void)fo_auth_fail_delay_ms(a, "192.0.2.8", "x");
    assert_int_equal(L.n, 3);
    fake_now += 1000;
    (void)fo_auth_fail_delay_ms(a, "192.0.2.8", "x");
    assert_int_equal(L.n, 4);
    assert_int_equal(L.suppressed, 7);
    (void)fo_auth_fail_delay_ms(a, "192.0.2.8", "x");
    assert_int_equal(L.suppressed, 0);
    fo_auth_stats(a, &st);
    assert_int_equal(st.fail_logs_suppressed, 7);
    fo_auth_destroy(a);

    /* a zero base means no delay (and no endless doubling) */
    o.fail_delay_base_ms = 0;
    o.fail_log = NULL;                       /* the default: a WARN line */
    assert_int_equal(fo_auth_create(1, 4, &o, &a), FO_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(fo_auth_fail_delay_ms(a, "192.0.2.9", "x\x01y"), 0);
    fo_auth_destroy(a);
}

/* An unknown user costs what a wrong password costs (medians of a
 * verification long enough to measure: m = 2 MiB). Loose bounds: the
 * point is "a verification happens", not a benchmark. */
static void test_unknown_user_timing(void **state)
{
    (void)state;
    coll_reset();
    char h[FO_USERS_HASH_MAX], text[512];
    assert_int_equal(crypto_pwhash_str_alg(h, "pw", 2, 1, 2u << 20, crypto_pwhash_ALG_ARGON2ID13), 0);
    snprintf(text, sizeof text, "user tim password %s\n", h);
    fo_users_t *t = NULL;
    char err[256];
    assert_int_equal(fo_users_parse("t", text, strlen(text), &t, err, sizeof err), FO_OK);
    assert_int_equal(crypto_pwhash_str_needs_rehash(fo_users_dummy_hash(t), 1, 2u << 20), 0);
    fo_auth_t *a = NULL;
    assert_int_equal(fo_auth_create(1, 4, NULL, &a), FO_OK);
    double known[7], unknown[7];
    for (int i = 0; i < 7; i++) {
        for (int k = 0; k < 2; k++) {
            uint64_t t0 = fo_clock_ns();
            int n = C.n;
            assert_int_equal(submit(a, t, k ? "nobody" : "tim", FO_SECRET_PASSWORD, "wrong", n), FO_OK);
            wait_for(n + 1);
            (k ? unknown : known)[i] = (double)(fo_clock_ns() - t0);
            assert_int_equal(C.verdict[n], FO_AUTH_FAIL);
        }
    }
    for (int i = 0; i < 7; i++)            /* sort both for the medians */
        for (int j = i + 1; j < 7; j++) {
            if (known[j] < known[i]) { double x = known[i]; known[i] = known[j]; known[j] = x; }
            if (unknown[j] < unknown[i]) { double x = unknown[i]; unknown[i] = unknown[j]; unknown[j] = x; }
        }
    double ratio = unknown[3] / known[3];
    printf("median wrong password %.2f ms, unknown user %.2f ms (ratio %.2f)\n",
           known[3] / 1e6, unknown[3] / 1e6, ratio);
    assert_true(ratio > 0.33 && ratio < 3.0);
    fo_auth_destroy(a);
    fo_users_unref(t);
}

/* ---------------------------------------------------------------- stress */

#define SUBMITTERS 4
#define PER 600
#define NREQ (SUBMITTERS * PER + 200)

typedef struct {
    fo_auth_t *a;
    pthread_mutex_t tlock;           /* the current table */
    fo_users_t *cur;
    _Atomic int stop;
    _Atomic int calls[NREQ];         /* callbacks per request */
    _Atomic int expect[NREQ];        /* 1 = OK expected, 0 = FAIL */
    _Atomic int wrong;               /* verdicts that disagreed */
    _Atomic int done, accepted, hits, busy, cancelled;
} stress_t;

static stress_t S;

static void stress_cb(const fo_auth_result_t *r)
{
    intptr_t id = (intptr_t)r->ud;
    atomic_fetch_add(&S.calls[id], 1);
    if (r->verdict == FO_AUTH_CANCELLED) {
        atomic_fetch_add(&S.cancelled, 1);
    } else if ((r->verdict == FO_AUTH_OK) != atomic_load(&S.expect[id])) {
        atomic_fetch_add(&S.wrong, 1);
    }
    if (r->verdict == FO_AUTH_OK) {
        if (!r->user || !r->users)
            atomic_fetch_add(&S.wrong, 1);
        fo_users_unref(r->users);
    }
    atomic_fetch_add(&S.done, 1);
}

static fo_users_t *current(void)
{
    pthread_mutex_lock(&S.tlock);
    fo_users_t *t = fo_users_ref(S.cur);
    pthread_mutex_unlock(&S.tlock);
    return t;
}

static void *submitter(void *p)
{
    intptr_t base = (intptr_t)p * PER;
    for (intptr_t i = 0; i < PER; i++) {
        intptr_t id = base + i;
        int kind = (int)(id % 5);
        const char *name = kind == 3 ? "ghost" : kind == 4 ? "svc" : "alice";
        const char *secret = kind == 0 || kind == 1 ? "alice-pw" : kind == 4 ? "svc-token" : "nope";
        fo_secret_kind_t k = kind == 4 ? FO_SECRET_TOKEN : FO_SECRET_PASSWORD;
        int ok = kind == 0 || kind == 1 || kind == 4;
        atomic_store(&S.expect[id], ok);
        fo_users_t *t = current();
        const fo_user_t *u = NULL;
        if (fo_auth_cached(S.a, t, name, k, secret, strlen(secret), &u) == FO_OK) {
            if (!ok || strcmp(fo_user_name(u), name))
                atomic_fetch_add(&S.wrong, 1);
            atomic_fetch_add(&S.hits, 1);
            atomic_fetch_add(&S.calls[id], 1);           /* answered here, exactly once */
            atomic_fetch_add(&S.done, 1);
        } else {
            fo_err_t e;
            while ((e = fo_auth_submit(S.a, t, name, k, secret, strlen(secret), stress_cb,
                                       (void *)id)) == FO_ERR_BUSY) {
                atomic_fetch_add(&S.busy, 1);
                sched_yield();
            }
            if (e != FO_OK)
                atomic_fetch_add(&S.wrong, 1);
            atomic_fetch_add(&S.accepted, 1);
            if (!ok)
                (void)fo_auth_fail_delay_ms(S.a, "127.0.0.1", name);
        }
        fo_users_unref(t);
        if (i % 50 == 0) {
            fo_auth_stats_t st;
            fo_auth_stats(S.a, &st);
        }
    }
    return NULL;
}

static void *reloader(void *p)
{
    (void)p;
    while (!atomic_load(&S.stop)) {
        fo_users_t *n = table_try();
        if (!n) {
            atomic_fetch_add(&S.wrong, 1);
            break;
        }
        pthread_mutex_lock(&S.tlock);
        fo_users_t *old = S.cur;
        S.cur = n;
        pthread_mutex_unlock(&S.tlock);
        fo_users_unref(old);
        usleep(2000);
    }
    return NULL;
}

static void test_stress(void **state)
{
    (void)state;
    memset(&S, 0, sizeof S);
    pthread_mutex_init(&S.tlock, NULL);
    S.cur = table();
    fo_auth_opts_t o;
    fo_auth_opts_init(&o);
    o.fail_log_per_sec = 2;
    assert_int_equal(fo_auth_create(2, 16, &o, &S.a), FO_OK);
    pthread_t sub[SUBMITTERS], rel;
    assert_int_equal(pthread_create(&rel, NULL, reloader, NULL), 0);
    for (intptr_t i = 0; i < SUBMITTERS; i++)
        assert_int_equal(pthread_create(&sub[i], NULL, submitter, (void *)i), 0);
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(sub[i], NULL);
    for (int i = 0; i < 20000 && atomic_load(&S.done) < SUBMITTERS * PER; i++)
        usleep(1000);
    atomic_store(&S.stop, 1);
    pthread_join(rel, NULL);
    assert_int_equal(atomic_load(&S.done), SUBMITTERS * PER);
    for (int i = 0; i < SUBMITTERS * PER; i++)
        if (atomic_load(&S.calls[i]) != 1)
            fail_msg("request %d answered %d times", i, atomic_load(&S.calls[i]));
    assert_int_equal(atomic_load(&S.wrong), 0);
    assert_int_equal(atomic_load(&S.cancelled), 0);
    assert_true(atomic_load(&S.hits) > 0);
    fo_auth_stats_t st;
    fo_auth_stats(S.a, &st);
    assert_int_equal(st.submitted, (uint64_t)atomic_load(&S.accepted));
    assert_int_equal(st.ok + st.failed, st.submitted);
    printf("stress: %d answered from the cache, %d verified, %d busy retries\n",
           atomic_load(&S.hits), atomic_load(&S.accepted), atomic_load(&S.busy));

    /* destroy with work queued: 200 more, then destroy at once */
    fo_users_t *t = current();
    int queued = 0;
    for (intptr_t id = SUBMITTERS * PER; id < NREQ; id++) {
        atomic_store(&S.expect[id], 1);
        if (fo_auth_submit(S.a, t, "alice", FO_SECRET_PASSWORD, "alice-pw", 8, stress_cb, (void *)id) == FO_OK)
            queued++;
        else
            atomic_fetch_add(&S.calls[id], 1);          /* refused (busy): answered by the caller */
    }
    fo_auth_destroy(S.a);
    assert_int_equal(atomic_load(&S.done), SUBMITTERS * PER + queued);
    for (int i = SUBMITTERS * PER; i < NREQ; i++)
        assert_int_equal(atomic_load(&S.calls[i]), 1);
    assert_int_equal(atomic_load(&S.wrong), 0);
    printf("destroy: %d queued, %d cancelled\n", queued, atomic_load(&S.cancelled));
    fo_users_unref(t);
    fo_users_unref(S.cur);
    pthread_mutex_destroy(&S.tlock);
}

int main(void)
{
    pthread_mutex_init(&C.lock, NULL);
    pthread_cond_init(&C.cond, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_bounds),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_cache_bound_and_speed),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_shutdown_cancels),
        cmocka_unit_test(test_shutdown_drains),
        cmocka_unit_test(test_fail_delay),
        cmocka_unit_test(test_unknown_user_timing),
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests_name("auth", tests, setup, NULL);
}
