/* metrics.c -- Prometheus text exposition (format 0.0.4) of fanoutd.
 *
 * Every FO_STATS row becomes one family "fanout_<field>" (counters get
 * "_total"), summed over the workers; the sum of per-worker gauges is
 * taken modulo 2^64 and printed signed, so a gauge raised on one worker
 * and lowered on another still adds up. Then come the per-worker load
 * series, ERROR frames sent by code (label names from the generated
 * fanout.ErrorCode descriptor: ERR_FRAME_SIZE -> "frame_size"), and the
 * broker-wide gauges handed in by the caller, and the process_* families
 * of the Prometheus client libraries (CPU, memory, descriptors, start
 * time) read from /proc/self.
 *
 * Reads are relaxed atomic loads of counters the workers keep writing: a
 * scrape is a consistent-enough snapshot, never a lock on the hot path.
 */
#include "metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
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

/* ------------------------------------------------------------ process_* */

/* btime from /proc/stat: boot time, seconds since the Unix epoch. */
static int boot_time(uint64_t *out)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    char line[256];
    int found = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %" SCNu64, out) == 1) {
            found = 0;
            break;
        }
    fclose(f);
    return found;
}

fo_err_t fo_proc_stats_read(fo_proc_stats_t *p)
{
    memset(p, 0, sizeof *p);
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return FO_ERR_IO;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses,
     * so fields are counted from the last ')' (field 3 is state) */
    char *rp = strrchr(buf, ')');
    if (!rp)
        return FO_ERR_IO;
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    int field = 2;
    for (char *tok = strtok(rp + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14) utime = strtoull(tok, NULL, 10);
        else if (field == 15) stime = strtoull(tok, NULL, 10);
        else if (field == 22) start = strtoull(tok, NULL, 10);
        else if (field == 23) vsize = strtoull(tok, NULL, 10);
        else if (field == 24) { rss = strtoll(tok, NULL, 10); break; }
    }
    if (field != 24)
        return FO_ERR_IO;
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (tck <= 0)
        tck = 100;
    p->cpu_seconds = (double)(utime + stime) / (double)tck;
    p->virtual_bytes = vsize;
    p->resident_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)(page > 0 ? page : 4096) : 0;
    uint64_t btime;
    if (boot_time(&btime) == 0)
        p->start_time_s = (double)btime + (double)start / (double)tck;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            if (e->d_name[0] != '.')
                p->open_fds++;
        closedir(d);
        if (p->open_fds)
            p->open_fds--;                 /* the one opendir holds */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        p->max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    return FO_OK;
}

/* The families client libraries export under these names and help texts. */
static void render_proc(out_t *o, const fo_proc_stats_t *p)
{
    family(o, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    put(o, "process_cpu_seconds_total %.2f\n", p->cpu_seconds);
    family(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    put(o, "process_resident_memory_bytes %" PRIu64 "\n", p->resident_bytes);
    family(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    put(o, "process_virtual_memory_bytes %" PRIu64 "\n", p->virtual_bytes);
    family(o, "process_open_fds", "gauge", "Number of open file descriptors.");
    put(o, "process_open_fds %" PRIu64 "\n", p->open_fds);
    family(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    put(o, "process_max_fds %" PRIu64 "\n", p->max_fds);
    family(o, "process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
    put(o, "process_start_time_seconds %.2f\n", p->start_time_s);
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

    family(&o, "fanout_delivery_delay_seconds", "histogram",
           "Time from reading a PUBLISH to writing its DELIVER to a subscriber (replays excluded)");
    uint64_t cum = 0, sum_ns = 0;
    for (int k = 0; k < FO_DELAY_BUCKETS; k++) {
        for (int w = 0; w < src->nworkers; w++)
            cum += FO_STAT_GET(&src->workers[w]->delay, count[k]);
        if (k < FO_DELAY_BUCKETS - 1)
            put(&o, "fanout_delivery_delay_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                (double)fo_delay_bounds_ns[k] / 1e9, cum);
        else
            put(&o, "fanout_delivery_delay_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    for (int w = 0; w < src->nworkers; w++)
        sum_ns += FO_STAT_GET(&src->workers[w]->delay, sum_ns);
    put(&o, "fanout_delivery_delay_seconds_sum %" PRIu64 ".%09" PRIu64 "\n", sum_ns / 1000000000u,
        sum_ns % 1000000000u);
    put(&o, "fanout_delivery_delay_seconds_count %" PRIu64 "\n", cum);

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
    family(&o, "fanout_retention_trimmed_total", "counter",
           "Retained messages evicted early because message memory was short (85% of --max-memory)");
    put(&o, "fanout_retention_trimmed_total %" PRIu64 "\n", src->retention_trimmed);
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
    if (src->proc)
        render_proc(&o, src->proc);
    return o.err;
}
