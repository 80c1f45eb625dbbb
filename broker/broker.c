/* broker.c -- the broker's lifecycle: build, start, reload, drain, stop
 * (see broker.h), and the --http endpoints that report on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <unistd.h>
#include "broker.h"
#include "cluster.h"
#include "clock.h"
#include "http.h"
#include "log.h"
#include "login.h"
#include "metrics.h"
#include "notify.h"
#include "tls.h"
#include "worker.h"

extern char **environ;

void fo_broker_apply_limits(fo_broker_t *b, const fo_config_t *c)
{
    atomic_store(&b->lim.max_output, c->max_output);
    atomic_store(&b->lim.slow_policy, (int)c->slow_policy);
    atomic_store(&b->lim.ping_interval_ms, c->ping_interval_ms);
    atomic_store(&b->lim.idle_timeout_ms, c->idle_timeout_ms);
    atomic_store(&b->lim.drain_timeout_ms, c->drain_timeout_ms);
    atomic_store(&b->lim.block_timeout_ms, c->block_timeout_ms);
    atomic_store(&b->lim.read_budget, c->read_budget);
    atomic_store(&b->lim.retention_msgs, c->retention_msgs);
    atomic_store(&b->lim.retention_bytes, c->retention_bytes);
    atomic_store(&b->lim.retention_age_ms, c->retention_age_ms);
    atomic_store(&b->lim.topic_linger_ms, c->topic_linger_ms);
    atomic_store(&b->lim.max_conns, c->max_conns);
    atomic_store(&b->mem.limit, c->max_memory);
}

static int group_for(const void *ud, const char *topic)
{
    return fo_mcast_group_for(ud, topic);
}

static int clustered(const fo_config_t *c)
{
    return strcmp(c->cluster_listen, "off") != 0;
}

static int worker_count(const fo_config_t *c)
{
    long n = c->threads > 0 ? c->threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    /* the publish path keeps a 64-bit mask of sinks: workers and the cluster */
    int max = clustered(c) ? 63 : 64;
    return n > max ? max : (int)n;
}

fo_inbox_t *fo_broker_inbox(fo_broker_t *b, int i)
{
    return i < b->nworkers ? &b->workers[i]->inbox : fo_cluster_inbox(b->cluster);
}

fo_err_t fo_broker_init(fo_broker_t *b, char *err, size_t errlen)
{
    b->nworkers = worker_count(&b->cfg);
    b->nsinks = b->nworkers + clustered(&b->cfg);
    b->epoch = fo_realtime_ns();
    b->start_ms = fo_clock_ms();
    snprintf(b->server_id, sizeof b->server_id, "%016llx%08x",
             (unsigned long long)b->epoch, (unsigned)getpid());
    b->reload_cfg = b->cfg;
    fo_broker_apply_limits(b, &b->cfg);
    fo_err_t e;
    if (strcmp(b->cfg.tls_listen, "off") && (e = fo_tls_create(&b->cfg, &b->tls, err, errlen)))
        return e;
    if ((e = fo_login_init(b, err, errlen)))
        return e;
    e = fo_mcast_create(&b->cfg, b->epoch, &b->mcast);
    if (e) {
        snprintf(err, errlen, "fanoutd: cannot set up multicast: %s (see --mcast-group)",
                 fo_strerror(e));
        return e;
    }
    e = fo_registry_create(b->nsinks, b->cfg.max_topics, group_for, b->mcast, &b->reg);
    if (e)
        goto nomem;
    b->workers = calloc((size_t)b->nworkers, sizeof *b->workers);
    if (!b->workers) {
        e = FO_ERR_NOMEM;
        goto nomem;
    }
    for (int i = 0; i < b->nworkers; i++)
        if ((e = fo_worker_create(b, i, &b->workers[i]))) {
            snprintf(err, errlen, "fanoutd: cannot create worker %d: %s", i, fo_strerror(e));
            return e;
        }
    if (clustered(&b->cfg) && (e = fo_cluster_create(b, &b->cluster, err, errlen)))
        return e;
    return FO_OK;
nomem:
    snprintf(err, errlen, "fanoutd: out of memory");
    return e;
}

fo_err_t fo_broker_start(fo_broker_t *b, char *err, size_t errlen)
{
    for (; b->started < b->nworkers; b->started++)
        if (fo_worker_start(b->workers[b->started])) {
            snprintf(err, errlen, "fanoutd: cannot start worker %d", b->started);
            return FO_ERR_IO;
        }
    if (b->cluster && fo_cluster_start(b->cluster)) {
        snprintf(err, errlen, "fanoutd: cannot start the cluster thread");
        return FO_ERR_IO;
    }
    return FO_OK;
}

/* One line per option SIGHUP found changed (fo_config_change_cb). */
typedef struct changes { int applied, restart, argv; } changes_t;

static void log_change(void *ud, const char *name, const char *old_v, const char *new_v,
                       fo_change_t kind)
{
    changes_t *n = ud;
    if (kind == FO_CHANGE_APPLIED) {
        n->applied++;
        fo_info(0, "SIGHUP: %s: %s -> %s", name, old_v, new_v);
    } else if (kind == FO_CHANGE_RESTART) {
        n->restart++;
        fo_warn(0, "SIGHUP: %s: %s -> %s needs a restart (still %s)", name, old_v, new_v, old_v);
    } else {
        n->argv++;
        fo_info(0, "SIGHUP: %s: the command line's %s stays (file or environment: %s)",
                name, old_v, new_v);
    }
}

void fo_broker_reload(fo_broker_t *b)
{
    char err[512], st[64];
    snprintf(st, sizeof st, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)(fo_clock_ns() / 1000));
    (void)fo_notify(st);
    changes_t n = { 0, 0, 0 };
    if (fo_config_reload_report(&b->reload_cfg, environ, log_change, &n, err, sizeof err)) {
        fo_error(0, "SIGHUP: reload failed, keeping the old values: %s",
                 strncmp(err, "fanoutd: ", 9) ? err : err + 9);
    } else {
        fo_broker_apply_limits(b, &b->reload_cfg);
        fo_log_set_level(b->reload_cfg.log_level);
        if (!n.applied && !n.restart && !n.argv)
            fo_info(0, "SIGHUP: configuration reloaded, nothing changed");
        else
            fo_info(0, "SIGHUP: configuration reloaded: %d change%s applied, %d need%s a restart",
                    n.applied, FO_PLURAL(n.applied), n.restart, n.restart == 1 ? "s" : "");
    }
    if (b->verify_pinned && b->reload_cfg.tls_verify_client != FO_TLS_VERIFY_REQUIRED) {
        /* the secure default is checked at start only: a reload must not
         * open the listener to anyone (acceptor.c, check_exposure) */
        fo_error(0, "SIGHUP: tls-verify-client stays required: %s is reachable from other hosts "
                    "and no users are configured (docs/SECURITY.md)", b->verify_pinned);
        b->reload_cfg.tls_verify_client = FO_TLS_VERIFY_REQUIRED;
    }
    /* a renewed certificate at the same path is the usual reason for a
     * SIGHUP: re-read the TLS files even when the options did not load */
    if (b->tls && fo_tls_reload(b->tls, &b->reload_cfg, err, sizeof err))
        fo_error(0, "SIGHUP: TLS reload failed, new connections keep the old certificate: %s",
                 strncmp(err, "fanoutd: ", 9) ? err : err + 9);
    if (b->cluster && fo_cluster_reload(b->cluster, &b->reload_cfg, err, sizeof err))
        fo_error(0, "SIGHUP: cluster TLS reload failed, new links keep the old certificate: %s",
                 strncmp(err, "fanoutd: ", 9) ? err : err + 9);
    fo_login_reload(b);             /* the users file, whatever the options did */
    (void)fo_notify("READY=1");
}

#define SWEEP_BUDGET 4096        /* topics looked at per tick */
#define TRIM_AT_PCT 85           /* of --max-memory: retention gives way */

void fo_broker_tick(fo_broker_t *b)
{
    uint64_t e = atomic_load_explicit(&b->reclaim_epoch, memory_order_relaxed);
    uint64_t min = UINT64_MAX;
    for (int i = 0; i < b->started; i++) {
        uint64_t s = atomic_load_explicit(&b->workers[i]->seen_epoch, memory_order_acquire);
        if (s < min)
            min = s;
    }
    if (!b->started)
        return;
    if (b->cluster) {               /* the cluster thread holds messages of topics too */
        uint64_t s = fo_cluster_seen_epoch(b->cluster);
        if (s < min)
            min = s;
    }
    if (min >= e) {
        /* everyone has seen e: what dies now dies in e; the epoch then
         * moves so the workers purge at their next quiescent point */
        /* retention is a cache: when message memory is short it gives
         * way, so live publishes are not refused for old messages */
        uint64_t used = atomic_load(&b->mem.used), cap = atomic_load(&b->mem.limit);
        int trim = cap && used > cap / 100 * TRIM_AT_PCT;
        (void)fo_registry_sweep(b->reg, fo_realtime_ns(), LIM(b, retention_age_ms) * 1000000u,
                                (uint64_t)LIM(b, topic_linger_ms) * 1000000u, e,
                                trim ? 4 * SWEEP_BUDGET : SWEEP_BUDGET, trim);
        atomic_store_explicit(&b->reclaim_epoch, e + 1, memory_order_release);
    }
    /* a topic dead in epoch d may be freed once every worker is at d + 3:
     * at d + 1 each purged its caches after posting what it had, by d + 2
     * all of that sat in inboxes, and by d + 3 each has drained its inbox */
    if (min != UINT64_MAX && min >= 3)
        (void)fo_registry_reclaim(b->reg, min - 2);
}

void fo_broker_drain(fo_broker_t *b)
{
    fo_notify_stopping();
    atomic_store(&b->draining, 1);
    for (int i = 0; i < b->started; i++)
        fo_worker_wake(b->workers[i]);
}

int fo_broker_drained(const fo_broker_t *b)
{
    return atomic_load(&b->exited) == b->started;
}

void fo_broker_stop(fo_broker_t *b)
{
    if (b->started && !atomic_load(&b->draining))
        fo_broker_drain(b);          /* failed after starting: stop them */
    fo_login_stop(b);                /* no verdict is posted after this */
    for (int i = 0; i < b->started; i++)
        fo_worker_join(b->workers[i]);
    b->started = 0;
    /* before the workers' inboxes go (it posts to them) and the registry
     * (its subscriptions are in it) */
    fo_cluster_destroy(b->cluster);
    b->cluster = NULL;
    atomic_store(&b->tearing_down, 1);
    for (int i = 0; b->workers && i < b->nworkers; i++)
        fo_worker_destroy(b->workers[i]);
    free(b->workers);
    b->workers = NULL;
    fo_registry_destroy(b->reg);
    b->reg = NULL;
    fo_msg_caches_release();
    fo_mcast_destroy(b->mcast);
    b->mcast = NULL;
    fo_tls_destroy(b->tls);         /* after the sessions that used it */
    b->tls = NULL;
    fo_login_free(b);               /* after the connections that used it */
}

/* ------------------------------------------------------------ --http */

const char *fo_broker_http_announce(const fo_broker_t *b)
{
    const char *a = b->cfg.http_announce;
    if (!strcmp(b->cfg.http, "off") || !strcmp(a, "off"))
        return NULL;
    return *a ? a : b->cfg.http;
}

static int metrics(fo_broker_t *b, fo_buf_t *body)
{
    const fo_stats_t *st[64];
    for (int i = 0; i < b->nworkers; i++)
        st[i] = &b->workers[i]->stats;
    fo_metrics_src_t src = {
        .workers = st, .nworkers = b->nworkers,
        .topics = fo_registry_topics(b->reg),
        .topics_created = fo_registry_created(b->reg),
        .topics_freed = fo_registry_freed(b->reg),
        .retention_trimmed = fo_registry_trimmed(b->reg),
        .memory_bytes = atomic_load(&b->mem.used),
        .memory_limit = atomic_load(&b->mem.limit),
        .uptime_s = (fo_clock_ms() - b->start_ms) / 1000,
        .version = FO_VERSION,
    };
    fo_metrics_auth_t auth;
    if (fo_login_metrics(b, &auth))
        src.auth = &auth;
    fo_proc_stats_t proc;
    if (fo_proc_stats_read(&proc) == FO_OK)
        src.proc = &proc;
    if (fo_metrics_render(&src, body) || (b->cluster && fo_cluster_metrics(b->cluster, body))) {
        fo_buf_free(body);
        return 500;                 /* out of memory: no half a page */
    }
    return 200;
}

/* --http-token: "Bearer TOKEN", compared in constant time. No token
 * configured: everyone. */
static int http_authorized(const fo_broker_t *b, const char *auth)
{
    const char *tok = b->reload_cfg.http_token;     /* main thread, like the reload */
    if (!tok[0])
        return 1;
    if (!auth || strncasecmp(auth, "Bearer ", 7))
        return 0;
    auth += 7;
    while (*auth == ' ')
        auth++;
    size_t n = strlen(tok);
    return strlen(auth) == n && CRYPTO_memcmp(auth, tok, n) == 0;
}

int fo_broker_http(void *ud, const fo_http_req_t *rq, fo_buf_t *body, const char **ctype)
{
    fo_broker_t *b = ud;
    const char *path = rq->path;
    *ctype = "text/plain; charset=utf-8";
    if (!strcmp(path, "/healthz")) {
        int draining = atomic_load(&b->draining);
        int starting = !draining && b->cluster && !fo_cluster_ready(b->cluster);
        const char *s = draining ? "draining\n" : starting ? "starting: cluster peers not tried yet\n" : "ok\n";
        if (fo_buf_append(body, s, strlen(s)))
            return 500;
        return draining || starting ? 503 : 200;
    }
    if (!strcmp(path, "/metrics")) {
        if (!http_authorized(b, rq->authorization)) {
            static const char no[] = "this endpoint needs \"Authorization: Bearer TOKEN\" (--http-token)\n";
            return fo_buf_append(body, no, sizeof no - 1) ? 500 : 401;
        }
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        return metrics(b, body);
    }
    if (fo_buf_append(body, "not found\n", 10))
        return 500;
    return 404;
}
