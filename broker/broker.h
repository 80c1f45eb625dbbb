/* broker.h -- the state every thread of fanoutd shares.
 *
 * One fo_broker_t per process, built by main.c. Immutable after start but
 * for the atomics: the reloadable limits (SIGHUP writes, workers read
 * relaxed), the connection count (acceptor adds, workers subtract), the
 * drain flags, and the memory account (msg.h).
 */
#ifndef FO_BROKER_H
#define FO_BROKER_H

#include <stdatomic.h>
#include <stdint.h>
#include "config.h"
#include "msg.h"
#include "topic.h"
#include "mcast.h"

struct fo_worker;

typedef struct fo_limits {
    _Atomic uint64_t max_output;
    _Atomic int slow_policy;
    _Atomic uint32_t ping_interval_ms;
    _Atomic uint32_t idle_timeout_ms;
    _Atomic uint32_t drain_timeout_ms;
    _Atomic uint64_t read_budget;
    _Atomic uint32_t retention_msgs;
    _Atomic uint64_t retention_bytes;
    _Atomic int max_conns;
} fo_limits_t;

typedef struct fo_broker {
    fo_config_t cfg;             /* as loaded at start; never written after
                                  * the workers start (SIGHUP -> lim)     */
    fo_limits_t lim;             /* reloadable, read by workers           */
    fo_registry_t *reg;          /* owned                                 */
    fo_mcast_t *mcast;           /* owned                                 */
    fo_mem_t mem;
    struct fo_worker **workers;  /* owned, nworkers                       */
    int nworkers;
    uint64_t epoch;              /* start time, ns since the Unix epoch   */
    char server_id[40];
    _Atomic int conns;           /* open client connections               */
    _Atomic int draining;        /* SIGTERM seen                          */
    _Atomic int quiesced;        /* workers that stopped reading          */
    _Atomic uint64_t next_conn;  /* connection id counter                 */
} fo_broker_t;

/* Push the reloadable values of cfg into b->lim (start and SIGHUP). */
void fo_broker_apply_limits(fo_broker_t *b, const fo_config_t *cfg);

#define LIM(b, f) atomic_load_explicit(&(b)->lim.f, memory_order_relaxed)

#endif
