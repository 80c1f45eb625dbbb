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

/* The process_* metrics every Prometheus client library exports, read
 * from /proc/self as they read it (client_golang's process collector). */
typedef struct fo_proc_stats {
    double cpu_seconds;        /* utime + stime                         */
    uint64_t resident_bytes;   /* RSS                                   */
    uint64_t virtual_bytes;    /* vsize                                 */
    uint64_t open_fds;         /* entries of /proc/self/fd              */
    uint64_t max_fds;          /* RLIMIT_NOFILE, soft                   */
    double start_time_s;       /* since the Unix epoch                  */
} fo_proc_stats_t;

/* Fill *p from /proc/self/stat, /proc/stat (btime), /proc/self/fd and
 * getrlimit. FO_ERR_IO when /proc cannot be read (*p is then zeroed). */
FO_MUST_CHECK fo_err_t fo_proc_stats_read(fo_proc_stats_t *p);

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
    uint64_t retention_trimmed;        /* evicted when memory was short */
    const fo_metrics_auth_t *auth;     /* NULL: no users configured */
    const fo_proc_stats_t *proc;       /* NULL: no process_* families */
} fo_metrics_src_t;

/* Append the whole exposition to out. */
FO_MUST_CHECK fo_err_t fo_metrics_render(const fo_metrics_src_t *src, fo_buf_t *out);

#endif
