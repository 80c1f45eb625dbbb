/* broker.h -- the state every thread of fanoutd shares, and its lifecycle.
 *
 * One fo_broker_t per process (main.c). Immutable once the workers run,
 * but for the atomics: the reloadable limits (SIGHUP writes, workers read
 * relaxed), the connection count (acceptor adds, workers subtract), the
 * drain flags, and the memory account (msg.h).
 *
 * Lifecycle (broker.c), all on the main thread:
 *   fo_broker_init   limits, TLS context, users, multicast, registry, workers
 *                    (no threads yet)
 *   fo_broker_start  the worker threads
 *   fo_broker_reload SIGHUP: re-read file and environment, apply limits,
 *                    re-read the TLS files and the users file
 *   fo_broker_drain  SIGTERM: workers stop reading, deliver, close
 *   fo_broker_stop   join the workers (draining them first if need be)
 *                    and free everything; safe after a failed init/start
 */
#ifndef FO_BROKER_H
#define FO_BROKER_H

#include <stdatomic.h>
#include <stdint.h>
#include "buf.h"
#include "config.h"
#include "msg.h"
#include "topic.h"
#include "mcast.h"

struct fo_worker;
struct fo_tls;
struct fo_login;
struct fo_cluster;

typedef struct fo_limits {
    _Atomic uint64_t max_output;
    _Atomic int slow_policy;
    _Atomic uint32_t ping_interval_ms;
    _Atomic uint32_t idle_timeout_ms;
    _Atomic uint32_t drain_timeout_ms;
    _Atomic uint32_t block_timeout_ms;
    _Atomic uint64_t read_budget;
    _Atomic uint32_t retention_msgs;
    _Atomic uint64_t retention_bytes;
    _Atomic uint64_t retention_age_ms;
    _Atomic uint32_t topic_linger_ms;
    _Atomic int max_conns;
} fo_limits_t;

typedef struct fo_broker {
    fo_config_t cfg;             /* as loaded at start; never written after
                                  * the workers start (SIGHUP -> lim)     */
    fo_config_t reload_cfg;      /* main thread only: what SIGHUP re-reads
                                  * into (cfg stays as it was)            */
    const char *verify_pinned;   /* main thread: the TLS listener other
                                  * hosts reach with no users configured,
                                  * served only because it requires client
                                  * certificates (acceptor.c); a reload
                                  * keeps tls-verify-client required     */
    fo_limits_t lim;             /* reloadable, read by workers           */
    fo_registry_t *reg;          /* owned                                 */
    fo_mcast_t *mcast;           /* owned                                 */
    struct fo_tls *tls;          /* owned; NULL when --tls-listen is off;
                                  * its context is swapped on SIGHUP     */
    struct fo_login *login;      /* owned (login.c): the users table in
                                  * use and the auth threads             */
    fo_mem_t mem;
    struct fo_worker **workers;  /* owned, nworkers                       */
    int nworkers;
    /* Where a topic's messages go: the workers, plus the cluster's sink
     * (index nworkers) when there is a cluster. Topics' per-worker arrays
     * and workers' outboxes have nsinks entries. */
    int nsinks;
    struct fo_cluster *cluster;  /* owned; NULL without --cluster-listen  */
    int started;                 /* worker threads running (main thread)  */
    uint64_t epoch;              /* start time, ns since the Unix epoch   */
    uint64_t start_ms;           /* CLOCK_MONOTONIC at start (uptime)     */
    char server_id[40];
    _Atomic int conns;           /* open client connections               */
    _Atomic int draining;        /* SIGTERM seen                          */
    _Atomic int quiesced;        /* workers that stopped reading          */
    _Atomic int exited;          /* workers whose loop has ended          */
    _Atomic uint64_t next_conn;  /* connection id counter                 */
    _Atomic uint64_t reclaim_epoch; /* advanced by fo_broker_tick         */
    _Atomic int tearing_down;    /* the workers are joined and being freed:
                                  * nothing may be posted to them         */
} fo_broker_t;

#define LIM(b, f) atomic_load_explicit(&(b)->lim.f, memory_order_relaxed)

/* b->cfg must be loaded. FO_ERR_NOMEM, FO_ERR_ADDR (multicast groups) or
 * FO_ERR_IO, with one line in err. Call fo_broker_stop either way. */
FO_MUST_CHECK fo_err_t fo_broker_init(fo_broker_t *b, char *err, size_t errlen);
/* Start every worker thread. FO_ERR_IO (pthread_create) with one line in
 * err; the workers already started are stopped by fo_broker_stop. */
FO_MUST_CHECK fo_err_t fo_broker_start(fo_broker_t *b, char *err, size_t errlen);
/* SIGHUP: reload the reloadable options (docs/CONFIG.md) from the config
 * file and environment into b->reload_cfg and apply them; a bad file
 * keeps the old values. Then, with TLS, a new context from the TLS files
 * (re-read whether or not the options changed), swapped in only if it
 * loads; else the old one stays. Logs what happened. */
void fo_broker_reload(fo_broker_t *b);
/* Housekeeping, every 250 ms on the main thread: once every worker has
 * reached the current reclaim epoch, sweep a slice of the registry (expire
 * retained messages past --retention-age, unlink idle topics) and advance
 * the epoch; free the dead topics no worker can still see. */
void fo_broker_tick(fo_broker_t *b);

/* SIGTERM: set draining and wake every worker. */
void fo_broker_drain(fo_broker_t *b);
/* Every worker has finished its loop (delivered what it could, closed
 * its connections): the drain is over. /healthz keeps answering 503
 * until then. */
int fo_broker_drained(const fo_broker_t *b);
/* Join the workers (draining them first if they still run) and free
 * everything fo_broker_init made. */
void fo_broker_stop(fo_broker_t *b);

/* The inbox of sink i (< b->nsinks): a worker's, or the cluster's. */
struct fo_inbox *fo_broker_inbox(fo_broker_t *b, int i);

/* Push the reloadable values of cfg into b->lim (start and SIGHUP). */
void fo_broker_apply_limits(fo_broker_t *b, const fo_config_t *cfg);

/* What WELCOME announces as `http` (docs/PROTOCOL.md §4.2): --http-announce
 * when set, else the --http address as configured; NULL when either is
 * off. */
const char *fo_broker_http_announce(const fo_broker_t *b);

/* The --http handler (http.h's fo_http_handler_t; ud = the broker):
 * /healthz, and /metrics (behind --http-token when set). */
struct fo_http_req;
int fo_broker_http(void *ud, const struct fo_http_req *rq, fo_buf_t *body, const char **ctype);

#endif
