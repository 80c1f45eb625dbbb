/* users.c -- the users file, its immutable tables, per-name limit
 * counters, and password/token hashing (users.h).
 *
 * Loading is two steps: parse every line into a builder (one entry per
 * name, lines about one user may be anywhere in the file), then check the
 * whole (every user has a secret, at least one user) and build the table:
 * users sorted by name (bsearch), each with two acls (acl.c), its hashes
 * inline, and a pointer to its name's counters. Nothing is installed
 * until the whole file is good.
 */
#include "users.h"
#include "topic_name.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <sodium.h>

#define FILE_MAX (64u << 20)          /* largest users file read        */
#define HASH_MEM_MAX (1ull << 30)     /* argon2 m above this is refused */
#define HASH_OPS_MAX 32u              /* argon2 t above this is refused */
#define REG_BUCKETS 4096

static const char *const limit_names[FO_LIMIT__COUNT] = { "connections", "subscriptions", "topics" };
#define DIRECTIVES "password, token, publish, subscribe, allow, limit"

/* ------------------------------------------------------------ libsodium */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;
static void sodium_start(void) { sodium_ok = sodium_init() >= 0; }

static int sodium_ready(void)
{
    pthread_once(&sodium_once, sodium_start);
    return sodium_ok;
}

static _Atomic int default_cost = FO_HASH_INTERACTIVE;

void fo_users_set_hash_cost(fo_hash_cost_t cost)
{
    atomic_store(&default_cost, (int)cost);
}

static int cost_params(fo_hash_cost_t cost, unsigned long long *ops, size_t *mem)
{
    switch (cost) {
    case FO_HASH_INTERACTIVE:
        *ops = crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE;
        *mem = crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE;
        return 1;
    case FO_HASH_TEST_MIN:
        *ops = crypto_pwhash_argon2id_OPSLIMIT_MIN;
        *mem = crypto_pwhash_argon2id_MEMLIMIT_MIN;
        return 1;
    }
    return 0;
}

static fo_err_t hash_with(const char *secret, size_t len, unsigned long long ops, size_t mem,
                          char out[FO_USERS_HASH_MAX])
{
    _Static_assert(FO_USERS_HASH_MAX == crypto_pwhash_argon2id_STRBYTES, "hash size");
    if (!sodium_ready())
        return FO_ERR_NOMEM;
    if (crypto_pwhash_str_alg(out, secret, len, ops, mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
        return FO_ERR_NOMEM;
    return FO_OK;
}

fo_err_t fo_users_hash_secret(const char *secret, fo_hash_cost_t cost, char out[FO_USERS_HASH_MAX])
{
    unsigned long long ops;
    size_t mem;
    size_t len = secret ? strlen(secret) : 0;
    if (!len || len > FO_USERS_SECRET_MAX || !cost_params(cost, &ops, &mem))
        return FO_ERR_INVAL;
    return hash_with(secret, len, ops, mem, out);
}

/* The cost of a stored hash: 1 when it is an argon2id string libsodium
 * can verify, with m (KiB) and t read from it. */
static int hash_params(const char *h, unsigned *m_kib, unsigned *t)
{
    static const char prefix[] = "$argon2id$v=19$m=";
    unsigned m, tt, p;
    int used = 0;
    if (strlen(h) >= FO_USERS_HASH_MAX || strncmp(h, prefix, sizeof prefix - 1))
        return 0;
    if (sscanf(h + sizeof prefix - 1, "%u,t=%u,p=%u$%n", &m, &tt, &p, &used) != 3 || !used)
        return 0;
    if (!sodium_ready() ||
        crypto_pwhash_argon2id_str_needs_rehash(h, crypto_pwhash_argon2id_OPSLIMIT_MIN,
                                                crypto_pwhash_argon2id_MEMLIMIT_MIN) < 0)
        return 0;
    *m_kib = m;
    *t = tt;
    return 1;
}

/* A hash of 32 random bytes with the given cost (the table's dummy). */
static fo_err_t make_dummy(unsigned m_kib, unsigned t, char out[FO_USERS_HASH_MAX])
{
    unsigned char rnd[32];
    randombytes_buf(rnd, sizeof rnd);
    fo_err_t e = hash_with((const char *)rnd, sizeof rnd, t, (size_t)m_kib * 1024u, out);
    sodium_memzero(rnd, sizeof rnd);
    return e;
}

/* ------------------------------------------------------------ counters */

typedef struct fo_user_counters {
    struct fo_user_counters *next;
    _Atomic uint64_t used[FO_LIMIT__COUNT];
    char name[FO_USER_NAME_MAX + 1];
} counters_t;

/* Per name, for the life of the process: never freed (bounded by the
 * names ever loaded); reachable from here, so leak checkers stay quiet. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static counters_t *reg[REG_BUCKETS];

static counters_t *counters_for(const char *name)
{
    uint32_t b = fo_topic_hash(name, strlen(name)) % REG_BUCKETS;
    pthread_mutex_lock(&reg_lock);
    counters_t *c = reg[b];
    while (c && strcmp(c->name, name))
        c = c->next;
    if (!c && (c = calloc(1, sizeof *c)) != NULL) {
        memcpy(c->name, name, strlen(name) + 1);
        c->next = reg[b];
        reg[b] = c;
    }
    pthread_mutex_unlock(&reg_lock);
    return c;
}

/* ------------------------------------------------------------ the table */

struct fo_user {
    char name[FO_USER_NAME_MAX + 1];
    char hash[2][FO_USERS_HASH_MAX];  /* "" = none                  */
    fo_acl_t *acl[2];                 /* owned; [fo_dir_t]          */
    unsigned rights;
    uint64_t limit[FO_LIMIT__COUNT];
    counters_t *cnt;                  /* shared, process lifetime   */
};

struct fo_users {
    _Atomic size_t refs;
    uint64_t gen;
    size_t n;
    fo_user_t *users;                 /* owned, sorted by name      */
    char dummy[FO_USERS_HASH_MAX];
};

static _Atomic uint64_t next_gen = 1;

static void table_free(fo_users_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        fo_acl_free(t->users[i].acl[0]);
        fo_acl_free(t->users[i].acl[1]);
    }
    free(t->users);
    free(t);
}

fo_users_t *fo_users_ref(fo_users_t *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void fo_users_unref(fo_users_t *t)
{
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        table_free(t);
}

static int cmp_user(const void *a, const void *b)
{
    return strcmp(((const fo_user_t *)a)->name, ((const fo_user_t *)b)->name);
}

const fo_user_t *fo_users_find(const fo_users_t *t, const char *name)
{
    if (!name || strlen(name) > FO_USER_NAME_MAX)
        return NULL;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, t->users[mid].name);
        if (c == 0)
            return &t->users[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

size_t fo_users_count(const fo_users_t *t) { return t->n; }
const fo_user_t *fo_users_at(const fo_users_t *t, size_t i) { return i < t->n ? &t->users[i] : NULL; }
uint64_t fo_users_generation(const fo_users_t *t) { return t->gen; }
const char *fo_users_dummy_hash(const fo_users_t *t) { return t->dummy; }

const char *fo_user_name(const fo_user_t *u) { return u->name; }

const char *fo_user_hash(const fo_user_t *u, fo_secret_kind_t kind)
{
    if ((unsigned)kind > FO_SECRET_TOKEN || !u->hash[kind][0])
        return NULL;
    return u->hash[kind];
}

const fo_acl_t *fo_user_acl(const fo_user_t *u, fo_dir_t dir)
{
    return u->acl[dir == FO_DIR_SUBSCRIBE];
}

unsigned fo_user_rights(const fo_user_t *u) { return u->rights; }

uint64_t fo_user_limit(const fo_user_t *u, fo_limit_t which)
{
    return (unsigned)which < FO_LIMIT__COUNT ? u->limit[which] : 0;
}

fo_err_t fo_user_take(const fo_user_t *u, fo_limit_t which)
{
    if ((unsigned)which >= FO_LIMIT__COUNT)
        return FO_ERR_INVAL;
    _Atomic uint64_t *c = &u->cnt->used[which];
    uint64_t lim = u->limit[which];
    if (lim == FO_USERS_LIMIT_NONE) {
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
        return FO_OK;
    }
    uint64_t cur = atomic_load_explicit(c, memory_order_relaxed);
    while (cur < lim)
        if (atomic_compare_exchange_weak_explicit(c, &cur, cur + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return FO_OK;
    return FO_ERR_BUSY;
}

void fo_user_give(const fo_user_t *u, fo_limit_t which)
{
    fo_user_counters_give(u->cnt, which);
}

fo_user_counters_t *fo_user_counters(const fo_user_t *u)
{
    return u->cnt;
}

void fo_user_counters_give(fo_user_counters_t *cnt, fo_limit_t which)
{
    if (!cnt || (unsigned)which >= FO_LIMIT__COUNT)
        return;
    _Atomic uint64_t *c = &cnt->used[which];
    uint64_t cur = atomic_load_explicit(c, memory_order_relaxed);
    while (cur > 0)            /* never below zero, even on a caller's bug */
        if (atomic_compare_exchange_weak_explicit(c, &cur, cur - 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return;
}

uint64_t fo_user_used(const fo_user_t *u, fo_limit_t which)
{
    if ((unsigned)which >= FO_LIMIT__COUNT)
        return 0;
    return atomic_load_explicit(&u->cnt->used[which], memory_order_relaxed);
}

unsigned fo_user_diff(const fo_user_t *old, const fo_user_t *new_)
{
    if (!new_)
        return FO_USER_REMOVED;
    unsigned d = 0;
    if (strcmp(old->hash[0], new_->hash[0]) || strcmp(old->hash[1], new_->hash[1]))
        d |= FO_USER_CREDENTIALS;
    if (!fo_acl_equal(old->acl[0], new_->acl[0]))
        d |= FO_USER_PUBLISH;
    if (!fo_acl_equal(old->acl[1], new_->acl[1]))
        d |= FO_USER_SUBSCRIBE;
    unsigned lost = old->rights & ~new_->rights;
    if (lost & FO_RIGHT_BLOCK)
        d |= FO_USER_LOST_BLOCK;
    if (lost & FO_RIGHT_MULTICAST)
        d |= FO_USER_LOST_MULTICAST;
    if (memcmp(old->limit, new_->limit, sizeof old->limit))
        d |= FO_USER_LIMITS;
    return d;
}

/* ------------------------------------------------------------ names */

/* NULL when the name is acceptable, else why not. */
static const char *name_problem(const char *name)
{
    size_t len = strlen(name);
    if (len == 0)
        return "is empty";
    if (len > FO_USER_NAME_MAX)
        return "is longer than 64 bytes";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c == 0x7f)
            return "holds whitespace or a control byte";
        if (c == '.' || c == '*' || c == '>' || c == '%')
            return "holds '.', '*', '>' or '%' (a name must be one literal topic token)";
    }
    return NULL;
}

/* s quoted for an error line, control bytes as \xNN, cut at 80 bytes. */
static const char *q(char *buf, size_t cap, const char *s)
{
    size_t n = 0;
    buf[n++] = '"';
    for (size_t i = 0; s[i] && n + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= 80) {
            n += (size_t)snprintf(buf + n, cap - n, "...");
            break;
        }
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", c);
        else
            buf[n++] = (char)c;
    }
    buf[n++] = '"';
    buf[n] = '\0';
    return buf;
}

/* ------------------------------------------------------------ the parser */

typedef struct strv {
    char **v;
    size_t n, cap;
} strv_t;

typedef struct bu {                   /* one user being built         */
    char name[FO_USER_NAME_MAX + 1];
    int line;                         /* where it first appears       */
    char hash[2][FO_USERS_HASH_MAX];
    int hash_line[2];
    strv_t list[2][2];                /* [dir][deny]                  */
    unsigned rights;
    uint64_t limit[FO_LIMIT__COUNT];
    int limit_line[FO_LIMIT__COUNT];
} bu_t;

typedef struct parse {
    const char *where;
    int line;
    bu_t *u;
    size_t n, cap;
    size_t *idx;                      /* open addressing: index + 1   */
    size_t idxcap;                    /* power of two                 */
    char first_hash[FO_USERS_HASH_MAX];
    char *err;
    size_t errlen;
} parse_t;

static fo_err_t perr(parse_t *p, fo_err_t e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static fo_err_t perr(parse_t *p, fo_err_t e, const char *fmt, ...)
{
    if (p->err && p->errlen) {
        int n = p->line > 0 ? snprintf(p->err, p->errlen, "fanoutd: %s:%d: ", p->where, p->line)
                            : snprintf(p->err, p->errlen, "fanoutd: %s: ", p->where);
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < p->errlen)
            vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return e;
}

static void parse_free(parse_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < 2; k++) {
                strv_t *s = &p->u[i].list[d][k];
                for (size_t j = 0; j < s->n; j++)
                    free(s->v[j]);
                free(s->v);
            }
    free(p->u);
    free(p->idx);
}

static int idx_grow(parse_t *p)
{
    size_t cap = p->idxcap ? p->idxcap * 2 : 64;
    size_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return 0;
    for (size_t i = 0; i < p->n; i++) {
        size_t h = fo_topic_hash(p->u[i].name, strlen(p->u[i].name)) & (cap - 1);
        while (idx[h])
            h = (h + 1) & (cap - 1);
        idx[h] = i + 1;
    }
    free(p->idx);
    p->idx = idx;
    p->idxcap = cap;
    return 1;
}

/* The builder for name, created on first sight. NULL = out of memory. */
static bu_t *user_for(parse_t *p, const char *name)
{
    if (p->n * 2 >= p->idxcap && !idx_grow(p))
        return NULL;
    size_t h = fo_topic_hash(name, strlen(name)) & (p->idxcap - 1);
    for (; p->idx[h]; h = (h + 1) & (p->idxcap - 1))
        if (!strcmp(p->u[p->idx[h] - 1].name, name))
            return &p->u[p->idx[h] - 1];
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        bu_t *u = realloc(p->u, cap * sizeof *u);
        if (!u)
            return NULL;
        p->u = u;
        p->cap = cap;
    }
    bu_t *u = &p->u[p->n];
    memset(u, 0, sizeof *u);
    memcpy(u->name, name, strlen(name) + 1);
    u->line = p->line;
    for (int i = 0; i < FO_LIMIT__COUNT; i++)
        u->limit[i] = FO_USERS_LIMIT_NONE;
    p->idx[h] = ++p->n;
    return u;
}

static int strv_push(strv_t *s, char *str)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return 0;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    return 1;
}

static fo_err_t do_secret(parse_t *p, bu_t *u, int kind, char **w, int nw, const char *ctx)
{
    if (nw != 4)
        return perr(p, FO_ERR_INVAL, "%s: expected one HASH (from fanoutd --hash-password)%s",
                    ctx, nw > 4 ? ", and nothing after it" : "");
    if (u->hash_line[kind])
        return perr(p, FO_ERR_INVAL, "%s: given twice (first on line %d)", ctx, u->hash_line[kind]);
    unsigned m, t;
    if (!hash_params(w[3], &m, &t))
        return perr(p, FO_ERR_INVAL, "%s: not an argon2id hash (make one with fanoutd --hash-password)",
                    ctx);
    if ((uint64_t)m * 1024u > HASH_MEM_MAX || t > HASH_OPS_MAX)
        return perr(p, FO_ERR_INVAL, "%s: the hash costs too much to verify (m=%u KiB, t=%u; at most "
                    "1 GiB and t=%u)", ctx, m, t, HASH_OPS_MAX);
    memcpy(u->hash[kind], w[3], strlen(w[3]) + 1);
    u->hash_line[kind] = p->line;
    if (!p->first_hash[0])
        memcpy(p->first_hash, w[3], strlen(w[3]) + 1);
    return FO_OK;
}

/* filter with each whole-token %u replaced by name, into out (cap). */
static fo_err_t substitute(parse_t *p, const char *ctx, const char *f, const char *name,
                           char *out, size_t cap)
{
    char qb[128];
    size_t n = 0;
    for (const char *t = f;;) {
        const char *dot = strchr(t, '.');
        size_t tl = dot ? (size_t)(dot - t) : strlen(t);
        const char *src = t;
        size_t sl = tl;
        if (tl == 2 && !memcmp(t, "%u", 2)) {
            src = name;
            sl = strlen(name);
        } else if (memchr(t, '%', tl)) {
            return perr(p, FO_ERR_INVAL, "%s: %s: %%u must be a whole token (as in events.%%u.>), "
                        "and no other %% is allowed", ctx, q(qb, sizeof qb, f));
        }
        if (n + sl + 2 > cap)
            return perr(p, FO_ERR_INVAL, "%s: %s is longer than %d bytes", ctx, q(qb, sizeof qb, f),
                        FO_TOPIC_MAX);
        memcpy(out + n, src, sl);
        n += sl;
        if (!dot)
            break;
        out[n++] = '.';
        t = dot + 1;
    }
    out[n] = '\0';
    if (!fo_filter_valid(out, n)) {
        char qo[128];
        if (strcmp(out, f))
            return perr(p, FO_ERR_INVAL, "%s: %s is not a valid filter (with %%u = %s: %s)", ctx,
                        q(qb, sizeof qb, f), name, q(qo, sizeof qo, out));
        return perr(p, FO_ERR_INVAL, "%s: %s is not a valid filter (dot-separated tokens, * and > "
                    "as whole tokens, > last, at most %d bytes)", ctx, q(qb, sizeof qb, f), FO_TOPIC_MAX);
    }
    return FO_OK;
}

static fo_err_t do_acl(parse_t *p, bu_t *u, int dir, char **w, int nw, const char *ctx)
{
    int deny;
    if (nw < 4 || (strcmp(w[3], "allow") && strcmp(w[3], "deny")))
        return perr(p, FO_ERR_INVAL, "%s: expected allow or deny, then one or more filters", ctx);
    deny = !strcmp(w[3], "deny");
    if (nw < 5)
        return perr(p, FO_ERR_INVAL, "%s %s: expected one or more filters", ctx, w[3]);
    char ctx2[256];
    snprintf(ctx2, sizeof ctx2, "%s %s", ctx, w[3]);
    strv_t *s = &u->list[dir][deny];
    for (int i = 4; i < nw; i++) {
        char f[FO_TOPIC_MAX + 2];
        fo_err_t e = substitute(p, ctx2, w[i], u->name, f, sizeof f);
        if (e != FO_OK)
            return e;
        if (s->n >= FO_ACL_MAX_FILTERS)
            return perr(p, FO_ERR_INVAL, "%s: more than %d filters", ctx2, FO_ACL_MAX_FILTERS);
        char *dup = strdup(f);
        if (!dup || !strv_push(s, dup)) {
            free(dup);
            return perr(p, FO_ERR_NOMEM, "out of memory");
        }
    }
    return FO_OK;
}

static fo_err_t do_rights(parse_t *p, bu_t *u, char **w, int nw, const char *ctx)
{
    char qb[128];
    if (nw < 4)
        return perr(p, FO_ERR_INVAL, "%s: expected one or more rights (block, multicast)", ctx);
    for (int i = 3; i < nw; i++) {
        unsigned bit = fo_right_parse(w[i]);
        if (!bit)
            return perr(p, FO_ERR_INVAL, "%s: %s is not a right (valid: block, multicast)", ctx,
                        q(qb, sizeof qb, w[i]));
        u->rights |= bit;
    }
    return FO_OK;
}

static fo_err_t do_limit(parse_t *p, bu_t *u, char **w, int nw, const char *ctx)
{
    char qb[128];
    if (nw != 5)
        return perr(p, FO_ERR_INVAL, "%s: expected connections|subscriptions|topics and a number", ctx);
    int which = -1;
    for (int i = 0; i < FO_LIMIT__COUNT; i++)
        if (!strcmp(w[3], limit_names[i]))
            which = i;
    if (which < 0)
        return perr(p, FO_ERR_INVAL, "%s: %s is not one of connections|subscriptions|topics", ctx,
                    q(qb, sizeof qb, w[3]));
    const char *s = w[4];
    uint64_t v = 0;
    if (!*s)
        return perr(p, FO_ERR_INVAL, "%s %s: missing number", ctx, w[3]);
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s) || v > (UINT32_MAX - (unsigned)(*s - '0')) / 10)
            return perr(p, FO_ERR_INVAL, "%s %s: %s is not a whole number 0..%u", ctx, w[3],
                        q(qb, sizeof qb, w[4]), UINT32_MAX);
        v = v * 10 + (unsigned)(*s - '0');
    }
    if (u->limit_line[which])
        return perr(p, FO_ERR_INVAL, "%s %s: given twice (first on line %d)", ctx, w[3],
                    u->limit_line[which]);
    u->limit[which] = v;
    u->limit_line[which] = p->line;
    return FO_OK;
}

/* Split line into words (space, tab, \r); a word starting with # ends it. */
static int split(char *line, char **w, int maxw)
{
    int n = 0;
    char *s = line;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        if (!*s || *s == '#')
            return n;
        if (n == maxw)
            return -1;
        w[n++] = s;
        while (*s && *s != ' ' && *s != '\t' && *s != '\r')
            s++;
        if (*s)
            *s++ = '\0';
    }
}

static fo_err_t parse_line(parse_t *p, char *line, size_t len)
{
    char qb[128];
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
            return perr(p, FO_ERR_INVAL, "a control byte (\\x%02x) in the line", c);
    }
    char *w[FO_USERS_LINE_MAX / 2 + 1];
    int nw = split(line, w, (int)(sizeof w / sizeof w[0]));
    if (nw == 0)
        return FO_OK;
    if (strcmp(w[0], "user"))
        return perr(p, FO_ERR_INVAL, "%s is not a directive (every line is: user NAME "
                    "password|token|publish|subscribe|allow|limit ...)", q(qb, sizeof qb, w[0]));
    if (nw < 2)
        return perr(p, FO_ERR_INVAL, "user: missing NAME");
    const char *why = name_problem(w[1]);
    if (why)
        return perr(p, FO_ERR_INVAL, "user name %s is refused: it %s", q(qb, sizeof qb, w[1]), why);
    char ctx[200];
    snprintf(ctx, sizeof ctx, "user \"%s\"", w[1]);
    if (nw < 3)
        return perr(p, FO_ERR_INVAL, "%s: missing directive (valid: " DIRECTIVES ")", ctx);
    bu_t *u = user_for(p, w[1]);
    if (!u)
        return perr(p, FO_ERR_NOMEM, "out of memory");
    snprintf(ctx, sizeof ctx, "user \"%s\" %s", w[1], w[2]);
    if (!strcmp(w[2], "password") || !strcmp(w[2], "token"))
        return do_secret(p, u, !strcmp(w[2], "token"), w, nw, ctx);
    if (!strcmp(w[2], "publish") || !strcmp(w[2], "subscribe"))
        return do_acl(p, u, !strcmp(w[2], "subscribe") ? FO_DIR_SUBSCRIBE : FO_DIR_PUBLISH, w, nw, ctx);
    if (!strcmp(w[2], "allow"))
        return do_rights(p, u, w, nw, ctx);
    if (!strcmp(w[2], "limit"))
        return do_limit(p, u, w, nw, ctx);
    return perr(p, FO_ERR_INVAL, "user \"%s\": unknown directive %s (valid: " DIRECTIVES ")", w[1],
                q(qb, sizeof qb, w[2]));
}

static fo_err_t parse_text(parse_t *p, const char *text, size_t len)
{
    char line[FO_USERS_LINE_MAX + 1];
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
        p->line++;
        if (ll > FO_USERS_LINE_MAX)
            return perr(p, FO_ERR_INVAL, "line too long (at most %d bytes)", FO_USERS_LINE_MAX);
        memcpy(line, text + pos, ll);
        line[ll] = '\0';
        fo_err_t e = parse_line(p, line, ll);
        if (e != FO_OK)
            return e;
        pos += ll + 1;
    }
    return FO_OK;
}

/* ------------------------------------------------------------ building */

static fo_err_t build_user(bu_t *b, fo_user_t *u)
{
    memset(u, 0, sizeof *u);
    memcpy(u->name, b->name, sizeof u->name);
    memcpy(u->hash, b->hash, sizeof u->hash);
    u->rights = b->rights;
    memcpy(u->limit, b->limit, sizeof u->limit);
    for (int d = 0; d < 2; d++) {
        fo_err_t e = fo_acl_build((const char *const *)b->list[d][0].v, b->list[d][0].n,
                                  (const char *const *)b->list[d][1].v, b->list[d][1].n, &u->acl[d]);
        if (e != FO_OK)
            return e;
    }
    u->cnt = counters_for(u->name);
    return u->cnt ? FO_OK : FO_ERR_NOMEM;
}

static fo_err_t build_table(parse_t *p, fo_users_t **out)
{
    unsigned m, t;
    fo_users_t *tb = calloc(1, sizeof *tb);
    if (!tb || !(tb->users = calloc(p->n, sizeof *tb->users))) {
        free(tb);
        return perr(p, FO_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < p->n; i++) {
        fo_err_t e = build_user(&p->u[i], &tb->users[i]);
        tb->n = i + 1;
        if (e != FO_OK) {
            table_free(tb);
            return perr(p, e, "out of memory");
        }
    }
    qsort(tb->users, tb->n, sizeof *tb->users, cmp_user);
    if (!hash_params(p->first_hash, &m, &t) || make_dummy(m, t, tb->dummy) != FO_OK) {
        table_free(tb);
        return perr(p, FO_ERR_NOMEM, "out of memory (the dummy hash)");
    }
    atomic_init(&tb->refs, 1);
    tb->gen = atomic_fetch_add(&next_gen, 1);
    *out = tb;
    return FO_OK;
}

static fo_err_t check_whole(parse_t *p)
{
    if (p->n == 0) {
        p->line = 0;
        return perr(p, FO_ERR_INVAL, "no user is defined (an empty users file is refused; it never "
                    "means allow-all)");
    }
    for (size_t i = 0; i < p->n; i++)
        if (!p->u[i].hash[0][0] && !p->u[i].hash[1][0]) {
            p->line = p->u[i].line;
            return perr(p, FO_ERR_INVAL, "user \"%s\" has no password or token", p->u[i].name);
        }
    return FO_OK;
}

fo_err_t fo_users_parse(const char *where, const char *text, size_t len, fo_users_t **out,
                        char *err, size_t errlen)
{
    parse_t p;
    memset(&p, 0, sizeof p);
    p.where = where ? where : "users";
    p.err = err;
    p.errlen = errlen;
    if (err && errlen)
        *err = '\0';
    if (!sodium_ready())
        return perr(&p, FO_ERR_NOMEM, "libsodium failed to start");
    fo_err_t e = parse_text(&p, text, len);
    if (e == FO_OK)
        e = check_whole(&p);
    if (e == FO_OK)
        e = build_table(&p, out);
    parse_free(&p);
    return e;
}

fo_err_t fo_users_load(const char *path, fo_users_t **out, char *err, size_t errlen)
{
    parse_t p = { .where = path ? path : "(null)", .err = err, .errlen = errlen };
    if (err && errlen)
        *err = '\0';
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return perr(&p, FO_ERR_IO, "cannot open: %s", path ? strerror(errno) : "no path");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    fo_err_t e = FO_OK;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16384;
            char *nb = ncap <= FILE_MAX + 1 ? realloc(buf, ncap) : NULL;
            if (!nb) {
                e = ncap > FILE_MAX + 1 ? perr(&p, FO_ERR_INVAL, "larger than %u MiB", FILE_MAX >> 20)
                                        : perr(&p, FO_ERR_NOMEM, "out of memory");
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) {
            if (ferror(f))
                e = perr(&p, FO_ERR_IO, "cannot read: %s", strerror(errno));
            break;
        }
    }
    fclose(f);
    if (e == FO_OK)
        e = fo_users_parse(path, buf, len, out, err, errlen);
    free(buf);
    return e;
}

fo_err_t fo_users_single(const char *user, const char *password, fo_hash_cost_t cost,
                         fo_users_t **out)
{
    unsigned long long ops;
    size_t mem;
    if (!user || !password || name_problem(user) || !*password ||
        strlen(password) > FO_USERS_SECRET_MAX)
        return FO_ERR_INVAL;
    if (!cost_params(cost, &ops, &mem))
        return FO_ERR_INVAL;
    fo_users_t *tb = calloc(1, sizeof *tb);
    if (!tb || !(tb->users = calloc(1, sizeof *tb->users))) {
        free(tb);
        return FO_ERR_NOMEM;
    }
    fo_user_t *u = &tb->users[0];
    tb->n = 1;
    memcpy(u->name, user, strlen(user) + 1);
    u->rights = FO_RIGHTS_ALL;
    for (int i = 0; i < FO_LIMIT__COUNT; i++)
        u->limit[i] = FO_USERS_LIMIT_NONE;
    const char *all[] = { ">" };
    fo_err_t e = hash_with(password, strlen(password), ops, mem, u->hash[FO_SECRET_PASSWORD]);
    if (e == FO_OK)
        e = make_dummy((unsigned)(mem / 1024), (unsigned)ops, tb->dummy);
    for (int d = 0; d < 2 && e == FO_OK; d++)
        e = fo_acl_build(all, 1, NULL, 0, &u->acl[d]);
    if (e == FO_OK && !(u->cnt = counters_for(u->name)))
        e = FO_ERR_NOMEM;
    if (e != FO_OK) {
        table_free(tb);
        return e;
    }
    atomic_init(&tb->refs, 1);
    tb->gen = atomic_fetch_add(&next_gen, 1);
    *out = tb;
    return FO_OK;
}

/* ------------------------------------------------------------ --hash-password */

/* One line from fd (a terminal) into buf without the \n; reads past a
 * too-long line to its end so no part of it is left for the shell.
 * Returns the length, -1 at EOF before any byte or on error, -2 when too
 * long. */
static long read_fd_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    int any = 0, too_long = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        any = 1;
        if (c == '\n')
            break;
        if (n + 1 < cap)
            buf[n++] = c;
        else
            too_long = 1;
    }
    buf[n] = '\0';
    if (too_long)
        return -2;
    return any ? (long)n : -1;
}

static long read_file_line(FILE *in, char *buf, size_t cap)
{
    size_t n = 0;
    int any = 0, too_long = 0, c;
    while ((c = getc(in)) != EOF) {
        any = 1;
        if (c == '\n')
            break;
        if (n + 1 < cap)
            buf[n++] = (char)c;
        else
            too_long = 1;
    }
    buf[n] = '\0';
    if (too_long)
        return -2;
    return any ? (long)n : -1;
}

static long strip_cr(char *buf, long n)
{
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return n;
}

/* Both reads with echo off and the terminal signals held, then restore. */
static int read_tty_twice(int fd, FILE *err, char *a, char *b, size_t cap, long *na, long *nb)
{
    struct termios old, quiet;
    sigset_t hold, prev;
    if (tcgetattr(fd, &old) != 0) {
        fprintf(err, "fanoutd: --hash-password: cannot read the terminal settings: %s\n",
                strerror(errno));
        return 0;
    }
    sigemptyset(&hold);
    sigaddset(&hold, SIGINT);
    sigaddset(&hold, SIGQUIT);
    sigaddset(&hold, SIGTSTP);
    sigaddset(&hold, SIGTERM);
    sigaddset(&hold, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hold, &prev);
    quiet = old;
    quiet.c_lflag &= (tcflag_t)~ECHO;
    quiet.c_lflag |= ECHONL;
    int ok = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
    if (ok) {
        fputs("Secret: ", err);
        fflush(err);
        *na = strip_cr(a, read_fd_line(fd, a, cap));
        if (*na >= 0) {
            fputs("Again: ", err);
            fflush(err);
            *nb = strip_cr(b, read_fd_line(fd, b, cap));
        }
        (void)tcsetattr(fd, TCSAFLUSH, &old);
    } else {
        fprintf(err, "fanoutd: --hash-password: cannot turn echo off: %s\n", strerror(errno));
    }
    pthread_sigmask(SIG_SETMASK, &prev, NULL);   /* a held ^C acts now */
    return ok;
}

int fo_users_hash_cmd(FILE *in, FILE *out, FILE *err)
{
    char a[FO_USERS_SECRET_MAX + 1], b[FO_USERS_SECRET_MAX + 1], h[FO_USERS_HASH_MAX];
    long na = -1, nb = -1;
    int fd = fileno(in), rc = 1;
    int tty = fd >= 0 && isatty(fd);
    a[0] = b[0] = '\0';
    if (tty) {
        if (!read_tty_twice(fd, err, a, b, sizeof a, &na, &nb))
            goto done;
    } else {
        na = strip_cr(a, read_file_line(in, a, sizeof a));
    }
    if (na == -2 || nb == -2) {
        fprintf(err, "fanoutd: --hash-password: the secret is longer than %d bytes\n",
                FO_USERS_SECRET_MAX);
    } else if (na < 0 || (tty && nb < 0)) {
        fprintf(err, "fanoutd: --hash-password: no secret read (end of input)\n");
    } else if (na == 0) {
        fprintf(err, "fanoutd: --hash-password: the secret is empty\n");
    } else if (tty && (na != nb || sodium_memcmp(a, b, (size_t)na) != 0)) {
        fprintf(err, "fanoutd: --hash-password: the two entries differ\n");
    } else if (fo_users_hash_secret(a, (fo_hash_cost_t)atomic_load(&default_cost), h) != FO_OK) {
        fprintf(err, "fanoutd: --hash-password: out of memory\n");
    } else if (fprintf(out, "%s\n", h) < 0 || fflush(out) != 0) {
        fprintf(err, "fanoutd: --hash-password: cannot write the hash: %s\n", strerror(errno));
    } else {
        rc = 0;
    }
done:
    sodium_memzero(a, sizeof a);
    sodium_memzero(b, sizeof b);
    return rc;
}
