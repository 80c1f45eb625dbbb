/* metrics.c -- Prometheus text exposition (format 0.0.4) of fanoutd.
 *
 * Every FO_STATS row becomes one family "fanout_<field>" (counters get
 * "_total"), summed over the workers; the sum of per-worker gauges is
 * taken modulo 2^64 and printed signed, so a gauge raised on one worker
 * and lowered on another still adds up. Then come the per-worker load
 * series, ERROR frames sent by code (label names from the generated
 * fanout.ErrorCode descriptor: ERR_FRAME_SIZE -> "frame_size"), and the
 * broker-wide gauges handed in by the caller.
 *
 * Reads are relaxed atomic loads of counters the workers keep writing: a
 * scrape is a consistent-enough snapshot, never a lock on the hot path.
 */
#include "metrics.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "fanout.pb-c.h"

typedef struct out {
    fo_buf_t *b;
    fo_err_t err;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out_t *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || o->err != FO_OK)
        return;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1;   /* never: our lines are short */
    o->err = fo_buf_append(o->b, line, (size_t)n);
}

static void family(out_t *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label value escaping of the text format: \ " and newline. */
static void escape_label(const char *s, char *out, size_t len)
{
    size_t n = 0;
    for (; s && *s && n + 3 < len; s++) {
        if (*s == '\\' || *s == '"') {
            out[n++] = '\\';
            out[n++] = *s;
        } else if (*s == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
}

/* "ERR_FRAME_SIZE" -> "frame_size"; codes the schema does not name -> the number. */
static void code_name(int code, char *out, size_t len)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&fanout__error_code__descriptor, code);
    if (!v) {
        snprintf(out, len, "%d", code);
        return;
    }
    const char *s = v->name;
    if (!strncmp(s, "ERR_", 4))
        s += 4;
    size_t n = 0;
    for (; *s && n + 1 < len; s++)
        out[n++] = (char)tolower((unsigned char)*s);
    out[n] = '\0';
}

static uint64_t sum_errors(const fo_metrics_src_t *src, int code)
{
    uint64_t v = 0;
    for (int w = 0; w < src->nworkers; w++)
        v += atomic_load_explicit(&src->workers[w]->errors_sent[code], memory_order_relaxed);
    return v;
}

fo_err_t fo_metrics_render(const fo_metrics_src_t *src, fo_buf_t *out)
{
    if (!src || !out || src->nworkers < 0 || (src->nworkers > 0 && !src->workers))
        return FO_ERR_INVAL;
    out_t o = { out, FO_OK };
    char name[128];

#define FO_METRICS_ROW_(field, kind, help)                                         \
    {                                                                           \
        uint64_t v = 0;                                                         \
        for (int w = 0; w < src->nworkers; w++)                                 \
            v += FO_STAT_GET(src->workers[w], field);                           \
        int counter = !strcmp(#kind, "counter");                                \
        if (!strcmp(#kind, "internal"))                                         \
            goto next_##field;                                                  \
        snprintf(name, sizeof name, "fanout_%s%s", #field, counter ? "_total" : ""); \
        family(&o, name, #kind, help);                                          \
        if (counter)                                                            \
            put(&o, "%s %" PRIu64 "\n", name, v);                               \
        else                                                                    \
            put(&o, "%s %" PRId64 "\n", name, (int64_t)v);                      \
    next_##field:;                                                              \
    }
    FO_STATS(FO_METRICS_ROW_)
#undef FO_METRICS_ROW_

    family(&o, "fanout_workers", "gauge", "Worker threads");
    put(&o, "fanout_workers %d\n", src->nworkers);
    family(&o, "fanout_worker_busy_seconds_total", "counter",
           "Seconds each worker spent handling events");
    for (int w = 0; w < src->nworkers; w++) {
        uint64_t ns = FO_STAT_GET(src->workers[w], busy_ns);
        put(&o, "fanout_worker_busy_seconds_total{worker=\"%d\"} %" PRIu64 ".%09" PRIu64 "\n",
            w, ns / 1000000000u, ns % 1000000000u);
    }
    family(&o, "fanout_worker_connections", "gauge", "Client connections open on each worker");
    for (int w = 0; w < src->nworkers; w++)
        put(&o, "fanout_worker_connections{worker=\"%d\"} %" PRId64 "\n", w,
            (int64_t)FO_STAT_GET(src->workers[w], connections));

    family(&o, "fanout_errors_sent_total", "counter", "ERROR frames sent, by code");
    for (int code = 0; code < FO_STATS_ERR_CODES; code++) {
        uint64_t v = sum_errors(src, code);
        int known = protobuf_c_enum_descriptor_get_value(&fanout__error_code__descriptor, code) != NULL;
        if (!known && v == 0)
            continue;
        char cn[64];
        code_name(code, cn, sizeof cn);
        put(&o, "fanout_errors_sent_total{code=\"%s\"} %" PRIu64 "\n", cn, v);
    }

    family(&o, "fanout_topics", "gauge", "Topics in the registry");
    put(&o, "fanout_topics %" PRIu64 "\n", src->topics);
    family(&o, "fanout_topics_created_total", "counter", "Topics created");
    put(&o, "fanout_topics_created_total %" PRIu64 "\n", src->topics_created);
    family(&o, "fanout_topics_freed_total", "counter", "Idle topics freed");
    put(&o, "fanout_topics_freed_total %" PRIu64 "\n", src->topics_freed);
    if (src->auth) {
        const fo_metrics_auth_t *a = src->auth;
        family(&o, "fanout_users", "gauge", "Users in the users table in use");
        put(&o, "fanout_users %" PRIu64 "\n", a->users);
        family(&o, "fanout_auth_verifications_total", "counter",
               "Password and token verifications run on the auth threads (argon2id)");
        put(&o, "fanout_auth_verifications_total %" PRIu64 "\n", a->verifications);
        family(&o, "fanout_auth_inflight", "gauge", "Logins queued for or under verification");
        put(&o, "fanout_auth_inflight %" PRIu64 "\n", a->inflight);
        family(&o, "fanout_auth_cache_entries", "gauge", "Recent successful logins remembered");
        put(&o, "fanout_auth_cache_entries %" PRIu64 "\n", a->cache_entries);
    }
    family(&o, "fanout_memory_bytes", "gauge", "Message memory in use");
    put(&o, "fanout_memory_bytes %" PRIu64 "\n", src->memory_bytes);
    family(&o, "fanout_memory_limit_bytes", "gauge", "Message memory cap (--max-memory)");
    put(&o, "fanout_memory_limit_bytes %" PRIu64 "\n", src->memory_limit);
    family(&o, "fanout_uptime_seconds", "gauge", "Seconds since the broker started");
    put(&o, "fanout_uptime_seconds %" PRIu64 "\n", src->uptime_s);
    char ver[128];
    escape_label(src->version ? src->version : "", ver, sizeof ver);
    family(&o, "fanout_build_info", "gauge", "Always 1; the version is a label");
    put(&o, "fanout_build_info{version=\"%s\"} 1\n", ver);
    return o.err;
}
