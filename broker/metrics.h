/* metrics.h -- the Prometheus text exposition of fanoutd's state.
 *
 * Rendered on demand by the HTTP thread from the workers' fo_stats_t (summed,
 * plus per-worker series for load) and a few broker-wide gauges.
 */
#ifndef FO_METRICS_H
#define FO_METRICS_H

#include <stdint.h>
#include "buf.h"
#include "stats.h"

/* The login side (login.c), when a users table is configured. */
typedef struct fo_metrics_auth {
    uint64_t users;                    /* in the table in use            */
    uint64_t verifications;            /* argon2id runs                  */
    uint64_t inflight;                 /* queued or verifying now        */
    uint64_t cache_entries;
} fo_metrics_auth_t;

typedef struct fo_metrics_src {
    const fo_stats_t *const *workers;  /* borrowed: one per worker */
    int nworkers;
    uint64_t topics;                   /* topics in the registry */
    uint64_t memory_bytes;             /* message memory in use  */
    uint64_t memory_limit;             /* --max-memory           */
    uint64_t uptime_s;
    const char *version;
    uint64_t topics_created, topics_freed;  /* ever, by the registry */
    const fo_metrics_auth_t *auth;     /* NULL: no users configured */
} fo_metrics_src_t;

/* Append the whole exposition to out. */
FO_MUST_CHECK fo_err_t fo_metrics_render(const fo_metrics_src_t *src, fo_buf_t *out);

#endif
