/* login.c -- HELLO, authentication, WELCOME, and users-file reloads
 * (login.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "acl.h"
#include "auth.h"
#include "clock.h"
#include "cluster.h"
#include "log.h"
#include "login.h"
#include "metrics.h"
#include "net.h"
#include "route.h"
#include "users.h"

#define AUTH_THREADS 2          /* verifications at once (64 MiB each)   */
#define AUTH_INFLIGHT 256       /* queued or verifying                   */
#define ADDR_SLOTS 4096         /* per-address counters (hashed)         */

/* How a connection logged in (what a reload must look at). */
enum { BY_NONE = 0, BY_PASSWORD, BY_TOKEN, BY_CERT };

/* The broker-wide part: b->login. */
struct fo_login {
    fo_users_t *users;                      /* current table (main thread) */
    fo_auth_t *auth;
    _Atomic uint32_t waiting[ADDR_SLOTS];   /* logins verifying, per address hash */
};

/* A verification, from submit to the worker's inbox. */
typedef struct job {
    fo_ctl_t ctl;
    fo_broker_t *b;
    uint64_t conn_id;
    uint32_t slot;                          /* waiting[] index               */
    fo_auth_verdict_t verdict;
    fo_users_t *users;                      /* FO_AUTH_OK: a reference       */
    const fo_user_t *user;
} job_t;

/* A reloaded table on its way to one worker (one reference). */
typedef struct table_msg {
    fo_ctl_t ctl;
    fo_users_t *users;
} table_msg_t;

/* ------------------------------------------------------------ lifecycle */

static void log_failure(void *ud, const char *src, const char *user, uint32_t recent,
                        uint32_t suppressed)
{
    (void)ud;
    char name[80];
    fo_log_escape(user ? user : "", name, sizeof name);
    if (suppressed)
        fo_warn(0, "login failed from %s as \"%s\" (%u recent failures; %u more not logged)",
                src ? src : "?", name, recent, suppressed);
    else
        fo_warn(0, "login failed from %s as \"%s\" (%u recent failures)", src ? src : "?", name,
                recent);
}

fo_err_t fo_login_init(fo_broker_t *b, char *err, size_t errlen)
{
    const fo_config_t *c = &b->cfg;
    struct fo_login *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "fanoutd: out of memory");
        return FO_ERR_NOMEM;
    }
    b->login = l;
    fo_err_t e = FO_OK;
    if (c->users_file[0]) {
        e = fo_users_load(c->users_file, &l->users, err, errlen);
    } else if (c->user[0]) {
        e = fo_users_single(c->user, c->password, FO_HASH_TEST_MIN, &l->users);
        if (e == FO_ERR_INVAL)
            snprintf(err, errlen, "fanoutd: --user: \"%s\" is not a valid user name (1..%d bytes, "
                     "no . * > %% whitespace or control bytes) or the password is empty or too long",
                     c->user, FO_USER_NAME_MAX);
    }
    if (e) {
        if (e == FO_ERR_NOMEM)
            snprintf(err, errlen, "fanoutd: out of memory");
        return e;
    }
    if (!l->users)
        return FO_OK;
    fo_auth_opts_t o;
    fo_auth_opts_init(&o);
    o.fail_log = log_failure;
    if ((e = fo_auth_create(AUTH_THREADS, AUTH_INFLIGHT, &o, &l->auth))) {
        snprintf(err, errlen, "fanoutd: cannot start the auth threads: %s", fo_strerror(e));
        return e;
    }
    fo_info(0, "%zu user%s from %s", fo_users_count(l->users), fo_users_count(l->users) == 1 ? "" : "s",
            c->users_file[0] ? c->users_file : "--user");
    return FO_OK;
}

int fo_login_metrics(fo_broker_t *b, fo_metrics_auth_t *out)
{
    struct fo_login *l = b->login;
    if (!l || !l->users)
        return 0;
    fo_auth_stats_t st;
    fo_auth_stats(l->auth, &st);
    out->users = fo_users_count(l->users);
    out->verifications = st.verifications;
    out->inflight = st.inflight;
    out->cache_entries = st.cache_entries;
    return 1;
}

fo_users_t *fo_login_table(fo_broker_t *b)
{
    return b->login && b->login->users ? fo_users_ref(b->login->users) : NULL;
}

static void table_run(fo_ctl_t *ctl, void *worker);

static void table_drop(fo_ctl_t *ctl)
{
    table_msg_t *m = (table_msg_t *)ctl;
    fo_users_unref(m->users);
    free(m);
}

void fo_login_reload(fo_broker_t *b)
{
    struct fo_login *l = b->login;
    if (!l || !b->cfg.users_file[0])
        return;
    char err[512];
    fo_users_t *nt = NULL;
    if (fo_users_load(b->cfg.users_file, &nt, err, sizeof err)) {
        fo_error(0, "SIGHUP: users not reloaded, the old ones stay: %s",
                 strncmp(err, "fanoutd: ", 9) ? err : err + 9);
        return;
    }
    fo_users_unref(l->users);
    l->users = nt;
    fo_auth_cache_clear(l->auth);     /* the new generation misses anyway */
    for (int i = 0; i < b->nworkers; i++) {
        table_msg_t *m = malloc(sizeof *m);
        fo_item_t it = { .kind = FO_ITEM_CTL };
        if (m) {
            m->ctl.run = table_run;
            m->ctl.drop = table_drop;
            m->users = fo_users_ref(nt);
            it.u.ctl = &m->ctl;
        }
        if (!m || fo_inbox_post(&b->workers[i]->inbox, &it, 1)) {
            /* that worker keeps the old permissions: say so loudly */
            fo_error(0, "SIGHUP: out of memory: worker %d keeps the old users", i);
            if (m)
                table_drop(&m->ctl);
        }
    }
    fo_info(0, "SIGHUP: %zu user%s reloaded from %s", fo_users_count(nt),
            fo_users_count(nt) == 1 ? "" : "s", b->cfg.users_file);
}

void fo_login_stop(fo_broker_t *b)
{
    if (b->login && b->login->auth)
        fo_auth_shutdown(b->login->auth, 0);
}

void fo_login_free(fo_broker_t *b)
{
    struct fo_login *l = b->login;
    if (!l)
        return;
    fo_auth_destroy(l->auth);
    fo_users_unref(l->users);
    free(l);
    b->login = NULL;
}

/* ------------------------------------------------------------ WELCOME */

static void welcome(fo_conn_t *c)
{
    fo_broker_t *b = c->w->b;
    Fanout__Frame out = FANOUT__FRAME__INIT;
    Fanout__Welcome wl = FANOUT__WELCOME__INIT;
    wl.has_version = 1;
    /* the lower of the two: newer clients talk down to us */
    wl.version = c->hello_version < FO_PROTOCOL_VERSION ? c->hello_version : FO_PROTOCOL_VERSION;
    wl.server_version = "fanout " FO_VERSION;
    wl.server_id = b->server_id;
    wl.has_max_frame = 1;
    wl.max_frame = b->cfg.max_frame;
    wl.has_max_output = 1;
    wl.max_output = LIM(b, max_output);
    wl.has_ping_interval_ms = 1;
    wl.ping_interval_ms = LIM(b, ping_interval_ms);
    wl.has_idle_timeout_ms = 1;
    wl.idle_timeout_ms = LIM(b, idle_timeout_ms);
    wl.has_epoch = 1;
    wl.epoch = b->epoch;
    wl.has_max_datagram = 1;
    wl.max_datagram = b->cfg.max_datagram;
    wl.has_client_id = 1;
    wl.client_id = c->id;
    char inbox[sizeof FO_INBOX_PREFIX + 32 + 9];
    if (b->cluster)                  /* the broker's tag: replies find it from any broker */
        snprintf(inbox, sizeof inbox, FO_INBOX_PREFIX "%016llx%016llx.%08x", (unsigned long long)c->id,
                 (unsigned long long)c->inbox_secret, (unsigned)fo_cluster_tag(b->cluster));
    else
        snprintf(inbox, sizeof inbox, FO_INBOX_PREFIX "%016llx%016llx",
                 (unsigned long long)c->id, (unsigned long long)c->inbox_secret);
    wl.inbox = inbox;
    wl.http = (char *)fo_broker_http_announce(b);       /* fanout stats -s finds /metrics */
    char addrs[FO_CLUSTER_ADDRS][FO_CLUSTER_ADDR_MAX], *ptrs[FO_CLUSTER_ADDRS];
    if (b->cluster) {                /* where to go when this broker goes */
        wl.node_id = (char *)fo_cluster_id(b->cluster);
        wl.n_cluster = (size_t)fo_cluster_addresses(b->cluster, addrs, ptrs);
        wl.cluster = ptrs;
    }
    /* the groups, with keys only where this connection is entitled */
    fo_mcast_announce_t ann;
    fo_mcast_peer_t who = { c->tls || fo_net_peer_is_loopback(c->fd), !c->user,
                            c->user ? fo_user_rights(c->user) : FO_RIGHTS_ALL, fo_login_sub_acl(c) };
    wl.n_groups = fo_mcast_announce(b->mcast, &who, &ann);
    wl.groups = ann.pg;
    c->mcast_keyed = ann.keyed;
    out.body_case = FANOUT__FRAME__BODY_WELCOME;
    out.welcome = &wl;
    if (c->hello_has_req) {
        out.has_req = 1;
        out.req = c->hello_req;
    }
    fo_conn_send(c, &out);
}

/* The login is good: users (a reference, now c's) and user, or both
 * NULL for anonymous. */
static void logged_in(fo_conn_t *c, fo_users_t *users, const fo_user_t *user, int by)
{
    fo_worker_t *w = c->w;
    if (user && fo_user_take(user, FO_LIMIT_CONNECTIONS)) {
        c->cur_req = c->hello_req;
        fo_conn_fail(c, FO_CODE(MAX_CONNS), "user %s has %llu connections open, its limit",
                     fo_user_name(user), (unsigned long long)fo_user_limit(user, FO_LIMIT_CONNECTIONS));
        c->cur_req = 0;
        fo_users_unref(users);
        FO_STAT_INC(&w->stats, logins_refused);
        return;
    }
    c->users = users;
    c->user = user;
    c->login_by = (uint8_t)by;
    welcome(c);
    c->state = FO_CONN_OPEN;
    c->dec.max_frame = w->b->cfg.max_frame;
    if (user)
        FO_STAT_INC(&w->stats, logins);
    const char *cert = fo_conn_tls_user(c);
    char uname[FO_USER_NAME_MAX + 16] = "";
    if (user)
        snprintf(uname, sizeof uname, " as %s", fo_user_name(user));
    fo_info(c->id, "hello from %s (%s)%s%s%s%s", c->peer, c->name[0] ? c->name : "-", uname,
            by == BY_CERT ? " by certificate" : "",
            c->tls ? (cert && by != BY_CERT ? " over TLS, certificate user " : " over TLS") : "",
            cert && by != BY_CERT ? cert : "");
}

/* ------------------------------------------------------------ failures */

/* The peer's address without its port, for the failure records. */
static void peer_host(const fo_conn_t *c, char *out, size_t len)
{
    const char *p = c->peer;
    const char *colon = strrchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    if (n >= 2 && p[0] == '[' && p[n - 1] == ']') {
        p++;
        n -= 2;
    }
    snprintf(out, len, "%.*s", (int)n, p);
}

static uint32_t addr_slot(const fo_conn_t *c)
{
    char host[64];
    peer_host(c, host, sizeof host);
    return fo_topic_hash(host, strlen(host)) % ADDR_SLOTS;
}

/* A failed login: counted, and answered after the delay (fo_login_tick). */
static void failed(fo_conn_t *c, const char *name)
{
    fo_worker_t *w = c->w;
    char host[64];
    peer_host(c, host, sizeof host);
    uint32_t delay = fo_auth_fail_delay_ms(w->b->login->auth, host, name);
    FO_STAT_INC(&w->stats, logins_failed);
    c->auth_wait = 2;
    c->auth_at_ms = w->now_ms + delay;
    fo_conn_hold_input(c);
}

/* Refuse at once, saying why (nothing about the credentials). */
static void refuse_now(fo_conn_t *c, const char *why)
{
    FO_STAT_INC(&c->w->stats, logins_refused);
    c->cur_req = c->hello_req;
    fo_conn_fail(c, FO_CODE(AUTH), "%s", why);
    c->cur_req = 0;
}

void fo_login_tick(fo_conn_t *c)
{
    if (!c->auth_wait || c->w->now_ms < c->auth_at_ms)
        return;
    int was = c->auth_wait;
    c->auth_wait = 0;
    c->cur_req = c->hello_req;
    if (was == 2)
        fo_conn_fail(c, FO_CODE(AUTH), "bad credentials");
    else
        fo_conn_fail(c, FO_CODE(AUTH), "the login was not verified within %u s: try again",
                     FO_LOGIN_WAIT_MS / 1000);
    c->cur_req = 0;
}

/* ------------------------------------------------------------ verifying */

static void job_free(job_t *j)
{
    struct fo_login *l = j->b->login;
    atomic_fetch_sub_explicit(&l->waiting[j->slot], 1, memory_order_relaxed);
    fo_users_unref(j->users);
    free(j);
}

static void job_drop(fo_ctl_t *ctl)
{
    job_free((job_t *)ctl);
}

/* The verdict, on the connection's worker. */
static void job_run(fo_ctl_t *ctl, void *worker)
{
    job_t *j = (job_t *)ctl;
    fo_worker_t *w = worker;
    fo_conn_t *c = fo_worker_conn(w, j->conn_id);
    if (!c || c->auth_wait != 1 || c->state != FO_CONN_HELLO_WAIT) {
        job_free(j);                      /* it went away meanwhile */
        return;
    }
    c->auth_wait = 0;
    int by = c->login_by;
    if (j->verdict != FO_AUTH_OK) {
        failed(c, c->login_name);
        job_free(j);
        return;
    }
    fo_users_t *users = j->users;
    const fo_user_t *user = j->user;
    j->users = NULL;
    job_free(j);
    /* verified against a table this worker has replaced since: the same
     * name must still be there with the same secret */
    if (w->users != users) {
        const fo_user_t *nu = fo_users_find(w->users, fo_user_name(user));
        if (fo_user_diff(user, nu) & (FO_USER_REMOVED | FO_USER_CREDENTIALS)) {
            fo_users_unref(users);
            failed(c, c->login_name);
            return;
        }
        fo_users_unref(users);
        users = fo_users_ref(w->users);
        user = nu;
    }
    FO_STAT_INC(&w->stats, logins_verified);
    logged_in(c, users, user, by);
    if (c->state == FO_CONN_OPEN)
        fo_conn_release_input(c);         /* what was sent after HELLO */
}

static void verified(const fo_auth_result_t *r)
{
    job_t *j = r->ud;
    j->verdict = r->verdict;
    j->users = r->users;
    j->user = r->user;
    fo_worker_t *w = j->b->workers[j->conn_id & 0xff];
    fo_item_t it = { .kind = FO_ITEM_CTL, .u.ctl = &j->ctl };
    if (fo_inbox_post(&w->inbox, &it, 1))
        job_free(j);                      /* the connection times out */
}

/* Verify (name, kind, secret) for c: at once from the cache, else on an
 * auth thread (c waits). */
static void verify(fo_conn_t *c, const char *name, fo_secret_kind_t kind, const char *secret)
{
    fo_worker_t *w = c->w;
    struct fo_login *l = w->b->login;
    size_t len = strlen(secret);
    const fo_user_t *u = NULL;
    snprintf(c->login_name, sizeof c->login_name, "%s", name);
    c->login_by = (uint8_t)(kind == FO_SECRET_TOKEN ? BY_TOKEN : BY_PASSWORD);
    if (fo_auth_cached(l->auth, w->users, name, kind, secret, len, &u) == FO_OK) {
        FO_STAT_INC(&w->stats, logins_cached);
        logged_in(c, fo_users_ref(w->users), u, c->login_by);
        return;
    }
    if (len > FO_USERS_SECRET_MAX) {
        failed(c, name);
        return;
    }
    uint32_t slot = addr_slot(c);
    if (atomic_fetch_add_explicit(&l->waiting[slot], 1, memory_order_relaxed) >= FO_LOGIN_PER_ADDR) {
        atomic_fetch_sub_explicit(&l->waiting[slot], 1, memory_order_relaxed);
        refuse_now(c, "too many logins from this address are being verified: try again");
        return;
    }
    job_t *j = calloc(1, sizeof *j);
    fo_err_t e = FO_ERR_NOMEM;
    if (j) {
        j->ctl.run = job_run;
        j->ctl.drop = job_drop;
        j->b = w->b;
        j->conn_id = c->id;
        j->slot = slot;
        e = fo_auth_submit(l->auth, w->users, name, kind, secret, len, verified, j);
    }
    if (e) {
        if (j)
            free(j);
        atomic_fetch_sub_explicit(&l->waiting[slot], 1, memory_order_relaxed);
        FO_STAT_INC(&w->stats, logins_busy);
        refuse_now(c, "the broker is busy verifying logins: try again");
        return;
    }
    c->auth_wait = 1;
    c->auth_at_ms = w->now_ms + FO_LOGIN_WAIT_MS;
    fo_conn_hold_input(c);
}

/* ------------------------------------------------------------ HELLO */

/* With a users table: who does this HELLO claim to be, and with what? */
static void authenticate(fo_conn_t *c, const Fanout__Hello *h)
{
    fo_worker_t *w = c->w;
    const char *cert = fo_conn_tls_user(c);
    const fo_user_t *cu = cert ? fo_users_find(w->users, cert) : NULL;
    if (cu && (!h->user || !strcmp(h->user, cert))) {
        snprintf(c->login_name, sizeof c->login_name, "%s", cert);
        logged_in(c, fo_users_ref(w->users), cu, BY_CERT);
        return;
    }
    const char *secret = h->token ? h->token : h->password;
    if (!h->user || !secret) {
        FO_STAT_INC(&w->stats, logins_failed);
        c->cur_req = c->hello_req;
        fo_conn_fail(c, FO_CODE(AUTH), "this broker needs a login: HELLO with user and password "
                     "(or token)%s", w->b->tls ? ", or a client certificate" : "");
        c->cur_req = 0;
        return;
    }
    verify(c, h->user, h->token ? FO_SECRET_TOKEN : FO_SECRET_PASSWORD, secret);
}

/* The HELLO's secret, unpacked into the worker's arena (reset, never
 * wiped), once verify has its own copy. */
static void wipe(char *s)
{
    if (s)
        sodium_memzero(s, strlen(s));
}

void fo_login_hello(fo_conn_t *c, const Fanout__Frame *f)
{
    const Fanout__Hello *h = f->hello;
    if (!h->has_version) {
        fo_conn_fail(c, FO_CODE(MISSING_FIELD), "HELLO needs version");
        return;
    }
    if (h->version == 0) {
        fo_conn_fail(c, FO_CODE(VERSION), "protocol version 0 does not exist (this broker speaks %u)",
                     FO_PROTOCOL_VERSION);
        return;
    }
    if (h->client_name) {
        snprintf(c->name, sizeof c->name, "%s", h->client_name);
        for (char *p = c->name; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    }
    c->hello_version = h->version;
    c->hello_has_req = f->has_req;
    c->hello_req = f->has_req ? f->req : 0;
    if (!c->w->users)
        logged_in(c, NULL, NULL, BY_NONE);    /* no users: anonymous, every right */
    else
        authenticate(c, h);
    wipe(h->password);
    wipe(h->token);
}

void fo_login_release(fo_conn_t *c)
{
    if (c->user)
        fo_user_give(c->user, FO_LIMIT_CONNECTIONS);
    fo_users_unref(c->users);
    c->users = NULL;
    c->user = NULL;
}

/* ------------------------------------------------------------ reload */

/* The subscriptions the new permissions of nu end (diff d). */
static const char *sub_revoked(const fo_sub_t *s, const fo_user_t *nu, unsigned d)
{
    if ((d & FO_USER_SUBSCRIBE) && !fo_acl_filter_ok(fo_user_acl(nu, FO_DIR_SUBSCRIBE), s->filter))
        return "may no longer subscribe to";
    if ((d & FO_USER_LOST_BLOCK) && s->policy == FO_POLICY_BLOCK)
        return "may no longer use slow=block on";
    if ((d & FO_USER_LOST_MULTICAST) && s->multicast)
        return "may no longer receive by multicast";
    return NULL;
}

/* Apply the table nt to c (logged in as c->user). */
static void reapply(fo_conn_t *c, fo_users_t *nt)
{
    fo_worker_t *w = c->w;
    const fo_user_t *nu = fo_users_find(nt, fo_user_name(c->user));
    unsigned d = fo_user_diff(c->user, nu);
    if ((d & FO_USER_REMOVED) || ((d & FO_USER_CREDENTIALS) && c->login_by != BY_CERT)) {
        FO_STAT_INC(&w->stats, logins_revoked);
        fo_conn_fail(c, FO_CODE(AUTH), "the login is no longer valid (users file reloaded)");
        return;                        /* keeps the old table until freed */
    }
    const fo_acl_t *acl = fo_user_acl(nu, FO_DIR_SUBSCRIBE);
    for (fo_sub_t *s = c->subs, *next; s; s = next) {
        next = s->conn_next;
        const char *why = sub_revoked(s, nu, d);
        if (why) {
            FO_STAT_INC(&w->stats, subscriptions_revoked);
            fo_conn_send_error(c, FO_CODE(PERMISSION), 0, s->sid, "user %s %s \"%.64s\" (users file reloaded)",
                               fo_user_name(nu), why, s->filter);
            fo_route_end_sub(c, s);
            continue;
        }
        if (fo_registry_set_acl(w->b->reg, s, acl, (d & FO_USER_SUBSCRIBE) != 0))
            FO_LOG_RATE(FO_LOG_ERROR, c->id, "out of memory re-binding sid %u", s->sid);
    }
    if (d & FO_USER_PUBLISH)
        c->last_topic = NULL;           /* the next publish is checked again */
    /* the connection count is per name: nothing to move */
    fo_users_unref(c->users);
    c->users = fo_users_ref(nt);
    c->user = nu;
}

void fo_login_adopt(fo_conn_t *c)
{
    fo_users_t *t = c->w->users;
    if (c->user && t && c->users != t && c->state != FO_CONN_CLOSING &&
        fo_users_generation(t) > fo_users_generation(c->users))
        reapply(c, t);
}

static void table_run(fo_ctl_t *ctl, void *worker)
{
    table_msg_t *m = (table_msg_t *)ctl;
    fo_worker_t *w = worker;
    for (fo_conn_t *c = w->all; c; c = c->all_next)
        if (c->user && c->users != m->users && c->state != FO_CONN_CLOSING)
            reapply(c, m->users);
    fo_users_unref(w->users);
    w->users = m->users;                /* the message's reference */
    free(m);
}

/* ------------------------------------------------------------ permissions */

int fo_login_may_publish(const fo_conn_t *c, const char *topic, size_t len)
{
    return !c->user || fo_acl_topic_ok(fo_user_acl(c->user, FO_DIR_PUBLISH), topic, len);
}

const fo_acl_t *fo_login_sub_acl(const fo_conn_t *c)
{
    return c->user ? fo_user_acl(c->user, FO_DIR_SUBSCRIBE) : NULL;
}

int fo_login_has_right(const fo_conn_t *c, unsigned right)
{
    return !c->user || (fo_user_rights(c->user) & right) == right;
}

const char *fo_login_user_name(const fo_conn_t *c)
{
    return c->user ? fo_user_name(c->user) : NULL;
}
