/* auth.c -- the auth thread pool, the cache of recent successes, and
 * failure delays (auth.h).
 *
 * Jobs live in max_inflight preallocated slots (a free stack and a FIFO
 * ring of slot numbers, under one mutex), each with room for a secret of
 * FO_USERS_SECRET_MAX bytes: submitting allocates nothing, and a slot's
 * secret is wiped before the slot is reused or freed.
 *
 * The cache is set-associative: a keyed BLAKE2b of (kind, name, secret)
 * picks one of nsets sets of 4 entries (from its first bytes; the key is
 * secret, so sets cannot be aimed at) and is what the entry stores, next
 * to the table generation and the expiry. Sets are guarded by 16 striped
 * mutexes, held for a few comparisons.
 *
 * Failure counts are a second small set-associative table keyed by
 * SipHash (crypto_shorthash, its own random key) of the address or the
 * name, guarded by one mutex (failures are rare and slow by design).
 */
#include "auth.h"
#include "clock.h"
#include "log.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define MAX_THREADS 64
#define AUTH_NICE 10              /* auth threads run below the workers */
#define MAX_INFLIGHT 65536
#define WAYS 4
#define STRIPES 16
#define MAC_BYTES 32
#define FAIL_SETS 256
#define FAIL_HALF_LIFE_MS 60000u

typedef struct job {
    fo_users_t *users;                /* one reference, the job's     */
    fo_auth_cb cb;
    void *ud;
    fo_secret_kind_t kind;
    size_t len;
    unsigned char *secret;            /* the slot's buffer            */
    char name[FO_USER_NAME_MAX + 1];
    int name_ok;                      /* fits: could be a user        */
} job_t;

typedef struct centry {
    uint64_t gen;                     /* 0 = empty                    */
    uint64_t expires_ms;
    uint64_t stamp;                   /* last use, for LRU            */
    unsigned char mac[MAC_BYTES];
} centry_t;

typedef struct fslot {
    uint64_t key;                     /* 0 = empty                    */
    uint64_t last_ms;
    uint32_t fails;
} fslot_t;

struct fo_auth {
    fo_auth_opts_t opts;

    pthread_mutex_t lock;             /* jobs, queue, state           */
    pthread_cond_t cond;
    job_t *jobs;
    unsigned cap;
    unsigned *freel, nfree;
    unsigned *ring, head, qlen;
    unsigned inflight;
    int closing, cancel, stopped;
    unsigned char *secrets;           /* cap * FO_USERS_SECRET_MAX    */
    pthread_t *threads;
    unsigned nthreads;

    unsigned char cache_key[crypto_generichash_KEYBYTES];
    centry_t *cache;                  /* nsets * WAYS                 */
    size_t nsets;                     /* power of two, 0 = no cache   */
    pthread_mutex_t stripe[STRIPES];
    _Atomic uint64_t stamp;

    pthread_mutex_t fail_lock;        /* fails, log limiter           */
    unsigned char fail_key[crypto_shorthash_KEYBYTES];
    fslot_t fails[FAIL_SETS * WAYS];
    uint64_t log_window;              /* second of the current window */
    uint32_t log_count, log_suppressed;

    _Atomic uint64_t n_submitted, n_busy, n_ok, n_failed, n_cancelled, n_verify,
        n_hits, n_misses, n_failures, n_suppressed;
};

static uint64_t now_ms(const fo_auth_t *a)
{
    return a->opts.now_ms ? a->opts.now_ms() : fo_clock_ms();
}

static void count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

void fo_auth_opts_init(fo_auth_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->cache_entries = 4096;
    o->cache_ttl_ms = 600000;
    o->fail_delay_base_ms = 250;
    o->fail_delay_max_ms = 5000;
    o->fail_log_per_sec = 10;
}

/* ------------------------------------------------------------ cache */

/* The keyed BLAKE2b of one login; the state is wiped. */
static void login_mac(const fo_auth_t *a, fo_secret_kind_t kind, const char *name, size_t nlen,
                      const void *secret, size_t len, unsigned char out[MAC_BYTES])
{
    crypto_generichash_state st;
    unsigned char hdr[2] = { (unsigned char)kind, (unsigned char)nlen };
    crypto_generichash_init(&st, a->cache_key, sizeof a->cache_key, MAC_BYTES);
    crypto_generichash_update(&st, hdr, sizeof hdr);
    crypto_generichash_update(&st, (const unsigned char *)name, nlen);
    crypto_generichash_update(&st, secret, len);
    crypto_generichash_final(&st, out, MAC_BYTES);
    sodium_memzero(&st, sizeof st);
}

static size_t set_of(const fo_auth_t *a, const unsigned char mac[MAC_BYTES])
{
    uint64_t v;
    memcpy(&v, mac, sizeof v);
    return (size_t)(v & (a->nsets - 1));
}

static int cache_lookup(fo_auth_t *a, uint64_t gen, const unsigned char mac[MAC_BYTES], uint64_t now)
{
    size_t s = set_of(a, mac);
    centry_t *e = &a->cache[s * WAYS];
    int hit = 0;
    pthread_mutex_lock(&a->stripe[s % STRIPES]);
    for (int w = 0; w < WAYS; w++)
        if (e[w].gen == gen && now < e[w].expires_ms && sodium_memcmp(e[w].mac, mac, MAC_BYTES) == 0) {
            e[w].stamp = atomic_fetch_add_explicit(&a->stamp, 1, memory_order_relaxed);
            hit = 1;
            break;
        }
    pthread_mutex_unlock(&a->stripe[s % STRIPES]);
    return hit;
}

static void cache_insert(fo_auth_t *a, uint64_t gen, const unsigned char mac[MAC_BYTES], uint64_t now)
{
    size_t s = set_of(a, mac);
    centry_t *e = &a->cache[s * WAYS], *victim = NULL;
    pthread_mutex_lock(&a->stripe[s % STRIPES]);
    for (int w = 0; w < WAYS && !victim; w++)
        if (e[w].gen == gen && sodium_memcmp(e[w].mac, mac, MAC_BYTES) == 0)
            victim = &e[w];                             /* the same login again */
    for (int w = 0; w < WAYS && !victim; w++)
        if (e[w].gen == 0 || now >= e[w].expires_ms)
            victim = &e[w];                             /* empty or expired     */
    if (!victim) {
        victim = &e[0];                                 /* least recently used  */
        for (int w = 1; w < WAYS; w++)
            if (e[w].stamp < victim->stamp)
                victim = &e[w];
    }
    victim->gen = gen;
    victim->expires_ms = now + a->opts.cache_ttl_ms;
    victim->stamp = atomic_fetch_add_explicit(&a->stamp, 1, memory_order_relaxed);
    memcpy(victim->mac, mac, MAC_BYTES);
    pthread_mutex_unlock(&a->stripe[s % STRIPES]);
}

void fo_auth_cache_clear(fo_auth_t *a)
{
    for (size_t s = 0; s < a->nsets; s++) {
        pthread_mutex_lock(&a->stripe[s % STRIPES]);
        sodium_memzero(&a->cache[s * WAYS], WAYS * sizeof(centry_t));
        pthread_mutex_unlock(&a->stripe[s % STRIPES]);
    }
}

fo_err_t fo_auth_cached(fo_auth_t *a, const fo_users_t *users, const char *name,
                        fo_secret_kind_t kind, const void *secret, size_t len, const fo_user_t **user)
{
    size_t nlen = name ? strlen(name) : 0;
    const fo_user_t *u;
    if (!a->nsets || !users || !name || nlen > FO_USER_NAME_MAX || len > FO_USERS_SECRET_MAX ||
        (unsigned)kind > FO_SECRET_TOKEN || (!secret && len)) {
        count(&a->n_misses);
        return FO_ERR_NOT_FOUND;
    }
    unsigned char mac[MAC_BYTES];
    login_mac(a, kind, name, nlen, secret, len, mac);
    int hit = cache_lookup(a, fo_users_generation(users), mac, now_ms(a));
    sodium_memzero(mac, sizeof mac);
    /* same generation = same table: the user is there */
    if (!hit || !(u = fo_users_find(users, name))) {
        count(&a->n_misses);
        return FO_ERR_NOT_FOUND;
    }
    count(&a->n_hits);
    *user = u;
    return FO_OK;
}

/* ------------------------------------------------------------ the pool */

/* One verification; the secret is the job's. */
static fo_auth_verdict_t verify(fo_auth_t *a, job_t *j, const fo_user_t **user)
{
    const fo_user_t *u = j->name_ok ? fo_users_find(j->users, j->name) : NULL;
    const char *h = u ? fo_user_hash(u, j->kind) : NULL;
    count(&a->n_verify);
    if (!h) {
        /* the same cost as a real one; the answer is no whatever it says */
        (void)!crypto_pwhash_str_verify(fo_users_dummy_hash(j->users), (const char *)j->secret, j->len);
        return FO_AUTH_FAIL;
    }
    if (crypto_pwhash_str_verify(h, (const char *)j->secret, j->len) != 0)
        return FO_AUTH_FAIL;
    *user = u;
    return FO_AUTH_OK;
}

static void run_job(fo_auth_t *a, job_t *j, int cancel)
{
    fo_auth_result_t r = { FO_AUTH_CANCELLED, NULL, NULL, j->ud };
    if (!cancel) {
        r.verdict = verify(a, j, &r.user);
        if (r.verdict == FO_AUTH_OK && a->nsets) {
            unsigned char mac[MAC_BYTES];
            login_mac(a, j->kind, j->name, strlen(j->name), j->secret, j->len, mac);
            cache_insert(a, fo_users_generation(j->users), mac, now_ms(a));
            sodium_memzero(mac, sizeof mac);
        }
    }
    sodium_memzero(j->secret, j->len);
    j->len = 0;
    if (r.verdict == FO_AUTH_OK) {
        r.users = j->users;                  /* the job's reference, now the callback's */
        count(&a->n_ok);
    } else {
        fo_users_unref(j->users);
        count(r.verdict == FO_AUTH_FAIL ? &a->n_failed : &a->n_cancelled);
    }
    j->users = NULL;
    j->cb(&r);
}

static void *auth_thread(void *arg)
{
    fo_auth_t *a = arg;
    fo_log_set_worker(-1);
    /* below the workers: on a busy machine a flood of guesses waits for
     * the CPU, the traffic of those logged in does not (Linux nice is per
     * thread; failing to lower it changes nothing else) */
    (void)!setpriority(PRIO_PROCESS, (id_t)gettid(), AUTH_NICE);
    for (;;) {
        pthread_mutex_lock(&a->lock);
        while (a->qlen == 0 && !a->closing)
            pthread_cond_wait(&a->cond, &a->lock);
        if (a->qlen == 0) {
            pthread_mutex_unlock(&a->lock);
            return NULL;                     /* closing, nothing left */
        }
        unsigned slot = a->ring[a->head];
        a->head = (a->head + 1) % a->cap;
        a->qlen--;
        int cancel = a->cancel;
        pthread_mutex_unlock(&a->lock);

        run_job(a, &a->jobs[slot], cancel);

        pthread_mutex_lock(&a->lock);
        a->freel[a->nfree++] = slot;
        a->inflight--;
        pthread_mutex_unlock(&a->lock);
    }
}

fo_err_t fo_auth_submit(fo_auth_t *a, fo_users_t *users, const char *name, fo_secret_kind_t kind,
                        const void *secret, size_t len, fo_auth_cb cb, void *ud)
{
    if (!a || !users || !cb || (!secret && len) || (unsigned)kind > FO_SECRET_TOKEN)
        return FO_ERR_INVAL;
    if (len > FO_USERS_SECRET_MAX)
        return FO_ERR_RANGE;
    pthread_mutex_lock(&a->lock);
    if (a->closing) {
        pthread_mutex_unlock(&a->lock);
        return FO_ERR_CLOSED;
    }
    if (a->inflight == a->cap) {
        pthread_mutex_unlock(&a->lock);
        count(&a->n_busy);
        return FO_ERR_BUSY;
    }
    unsigned slot = a->freel[--a->nfree];
    job_t *j = &a->jobs[slot];
    j->users = fo_users_ref(users);
    j->cb = cb;
    j->ud = ud;
    j->kind = kind;
    j->len = len;
    if (len)
        memcpy(j->secret, secret, len);
    size_t nlen = name ? strlen(name) : 0;
    j->name_ok = name && nlen <= FO_USER_NAME_MAX;
    memcpy(j->name, j->name_ok ? name : "", j->name_ok ? nlen + 1 : 1);
    a->ring[(a->head + a->qlen) % a->cap] = slot;
    a->qlen++;
    a->inflight++;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->lock);
    count(&a->n_submitted);
    return FO_OK;
}

/* ------------------------------------------------------------ failures */

static uint64_t fail_key(const fo_auth_t *a, char tag, const char *s)
{
    unsigned char out[crypto_shorthash_BYTES];
    size_t n = strlen(s);
    unsigned char buf[1 + 256];
    size_t k = n > 256 ? 256 : n;            /* longer names never exist; 256 is plenty */
    buf[0] = (unsigned char)tag;
    memcpy(buf + 1, s, k);
    crypto_shorthash(out, buf, 1 + k, a->fail_key);
    uint64_t v;
    memcpy(&v, out, sizeof v);
    return v | 1;                            /* never 0 (= empty) */
}

static uint32_t decayed(const fslot_t *f, uint64_t now)
{
    uint64_t halves = now > f->last_ms ? (now - f->last_ms) / FAIL_HALF_LIFE_MS : 0;
    return halves >= 32 ? 0 : f->fails >> halves;
}

/* Count one failure for key; returns the count, decay applied. */
static uint32_t note_failure(fo_auth_t *a, uint64_t key, uint64_t now)
{
    fslot_t *set = &a->fails[(key >> 1) % FAIL_SETS * WAYS], *f = NULL;
    for (int w = 0; w < WAYS && !f; w++)
        if (set[w].key == key)
            f = &set[w];
    if (!f) {
        f = &set[0];                         /* the emptiest: fewest failures now */
        for (int w = 1; w < WAYS; w++)
            if (set[w].key == 0 || decayed(&set[w], now) < decayed(f, now))
                f = &set[w];
        f->key = key;
        f->fails = 0;
    }
    uint32_t n = decayed(f, now);
    f->fails = n < UINT32_MAX ? n + 1 : n;
    f->last_ms = now;
    return f->fails;
}

static void default_log(void *ud, const char *src, const char *user, uint32_t recent, uint32_t suppressed)
{
    (void)ud;
    char more[64] = "";
    if (suppressed)
        snprintf(more, sizeof more, "; %u similar lines suppressed", suppressed);
    fo_warn(0, "authentication failed for user \"%.64s\" from %s (%u recent failures%s)",
            user ? user : "", src ? src : "?", recent, more);
}

uint32_t fo_auth_fail_delay_ms(fo_auth_t *a, const char *src, const char *name)
{
    uint64_t ka = src ? fail_key(a, 'a', src) : 0, ku = name ? fail_key(a, 'u', name) : 0;
    uint64_t now = now_ms(a);
    uint32_t n = 0, suppressed = 0;
    int log = 0;
    count(&a->n_failures);
    pthread_mutex_lock(&a->fail_lock);
    if (ka)
        n = note_failure(a, ka, now);
    if (ku) {
        uint32_t nu = note_failure(a, ku, now);
        n = nu > n ? nu : n;
    }
    if (now / 1000 != a->log_window) {
        a->log_window = now / 1000;
        a->log_count = 0;
    }
    if (a->log_count < a->opts.fail_log_per_sec) {
        a->log_count++;
        suppressed = a->log_suppressed;
        a->log_suppressed = 0;
        log = 1;
    } else {
        a->log_suppressed++;
        count(&a->n_suppressed);
    }
    pthread_mutex_unlock(&a->fail_lock);
    if (log)
        (a->opts.fail_log ? a->opts.fail_log : default_log)(a->opts.fail_log_ud, src, name, n, suppressed);
    uint64_t d = a->opts.fail_delay_base_ms;
    for (uint32_t i = 1; i < n && d && d < a->opts.fail_delay_max_ms; i++)
        d *= 2;
    return (uint32_t)(d < a->opts.fail_delay_max_ms ? d : a->opts.fail_delay_max_ms);
}

/* ------------------------------------------------------------ lifecycle */

static void free_all(fo_auth_t *a)
{
    if (a->secrets) {
        sodium_memzero(a->secrets, (size_t)a->cap * FO_USERS_SECRET_MAX);
        free(a->secrets);
    }
    if (a->cache) {
        sodium_memzero(a->cache, a->nsets * WAYS * sizeof *a->cache);
        free(a->cache);
    }
    free(a->jobs);
    free(a->freel);
    free(a->ring);
    free(a->threads);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->fail_lock);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&a->stripe[i]);
    free(a);
}

static fo_err_t alloc_parts(fo_auth_t *a, unsigned max_inflight)
{
    a->cap = max_inflight;
    a->jobs = calloc(a->cap, sizeof *a->jobs);
    a->freel = calloc(a->cap, sizeof *a->freel);
    a->ring = calloc(a->cap, sizeof *a->ring);
    a->secrets = calloc(a->cap, FO_USERS_SECRET_MAX);
    a->threads = calloc(a->nthreads, sizeof *a->threads);
    if (a->opts.cache_entries) {
        size_t n = WAYS;
        while (n < a->opts.cache_entries)
            n *= 2;
        a->nsets = n / WAYS;
        a->cache = calloc(n, sizeof *a->cache);
    }
    if (!a->jobs || !a->freel || !a->ring || !a->secrets || !a->threads || (a->nsets && !a->cache))
        return FO_ERR_NOMEM;
    for (unsigned i = 0; i < a->cap; i++) {
        a->jobs[i].secret = a->secrets + (size_t)i * FO_USERS_SECRET_MAX;
        a->freel[i] = a->cap - 1 - i;
    }
    a->nfree = a->cap;
    return FO_OK;
}

static fo_err_t start_threads(fo_auth_t *a)
{
    sigset_t all, prev;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &prev);       /* inherited: every signal blocked */
    unsigned started = 0;
    for (; started < a->nthreads; started++) {
        if (pthread_create(&a->threads[started], NULL, auth_thread, a) != 0)
            break;
        char name[32];
        snprintf(name, sizeof name, "fo-auth%u", started);
        name[15] = '\0';                              /* the kernel's limit */
        (void)pthread_setname_np(a->threads[started], name);
    }
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    if (started == a->nthreads)
        return FO_OK;
    pthread_mutex_lock(&a->lock);
    a->closing = 1;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    for (unsigned i = 0; i < started; i++)
        pthread_join(a->threads[i], NULL);
    return FO_ERR_IO;
}

fo_err_t fo_auth_create(unsigned nthreads, unsigned max_inflight, const fo_auth_opts_t *opts,
                        fo_auth_t **out)
{
    if (!out || nthreads < 1 || nthreads > MAX_THREADS || max_inflight < 1 || max_inflight > MAX_INFLIGHT)
        return FO_ERR_INVAL;
    if (sodium_init() < 0)
        return FO_ERR_NOMEM;
    fo_auth_t *a = calloc(1, sizeof *a);
    if (!a)
        return FO_ERR_NOMEM;
    if (opts)
        a->opts = *opts;
    else
        fo_auth_opts_init(&a->opts);
    a->nthreads = nthreads;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
    pthread_mutex_init(&a->fail_lock, NULL);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&a->stripe[i], NULL);
    randombytes_buf(a->cache_key, sizeof a->cache_key);
    randombytes_buf(a->fail_key, sizeof a->fail_key);
    atomic_init(&a->stamp, 1);
    fo_err_t e = alloc_parts(a, max_inflight);
    if (e == FO_OK)
        e = start_threads(a);
    if (e != FO_OK) {
        free_all(a);
        return e;
    }
    *out = a;
    return FO_OK;
}

void fo_auth_stats(fo_auth_t *a, fo_auth_stats_t *st)
{
    memset(st, 0, sizeof *st);
    st->submitted = atomic_load(&a->n_submitted);
    st->busy = atomic_load(&a->n_busy);
    st->ok = atomic_load(&a->n_ok);
    st->failed = atomic_load(&a->n_failed);
    st->cancelled = atomic_load(&a->n_cancelled);
    st->verifications = atomic_load(&a->n_verify);
    st->cache_hits = atomic_load(&a->n_hits);
    st->cache_misses = atomic_load(&a->n_misses);
    st->failures = atomic_load(&a->n_failures);
    st->fail_logs_suppressed = atomic_load(&a->n_suppressed);
    uint64_t now = now_ms(a);
    for (size_t s = 0; s < a->nsets; s++) {
        pthread_mutex_lock(&a->stripe[s % STRIPES]);
        for (int w = 0; w < WAYS; w++) {
            const centry_t *e = &a->cache[s * WAYS + w];
            st->cache_entries += e->gen != 0 && now < e->expires_ms;
        }
        pthread_mutex_unlock(&a->stripe[s % STRIPES]);
    }
    pthread_mutex_lock(&a->lock);
    st->inflight = a->inflight;
    pthread_mutex_unlock(&a->lock);
}

void fo_auth_shutdown(fo_auth_t *a, int drain)
{
    pthread_mutex_lock(&a->lock);
    if (a->stopped) {
        pthread_mutex_unlock(&a->lock);
        return;
    }
    a->stopped = 1;
    a->closing = 1;
    a->cancel = !drain;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    for (unsigned i = 0; i < a->nthreads; i++)
        pthread_join(a->threads[i], NULL);
}

void fo_auth_destroy(fo_auth_t *a)
{
    if (!a)
        return;
    fo_auth_shutdown(a, 0);
    free_all(a);
}
