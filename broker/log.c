/* log.c -- one line per event, one write(2) per line.
 *
 * A line is built whole in a stack buffer (time, level, worker, conn,
 * escaped message, '\n'; or the same fields as one JSON object) and
 * written with a single write(2), so lines from many threads never
 * interleave (a pipe write of <= PIPE_BUF bytes is atomic, and
 * FO_LOG_LINE_MAX is below it). No locks: the level, the format and the
 * fd are atomics, the worker index is thread-local.
 *
 * Rate limiting (fo_log_limited): each call site owns a fo_log_limit_t
 * holding the current one-second window, the lines logged in it and the
 * lines suppressed. The thread that moves the window on (compare-and-swap)
 * reports what the old window suppressed. Two threads racing at a window
 * edge may each let a line through: the bound is approximate (at most
 * about 2 x FO_LOG_BURST per second), never unbounded.
 */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "clock.h"

static _Atomic int log_level = FO_LOG_INFO;
static _Atomic int log_format = FO_LOG_TEXT;
static _Atomic int log_fd = 2;
static _Atomic(int64_t (*)(void)) log_clock;
static _Thread_local int tl_worker = -1;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };
static const char *const json_levels[] = { "error", "warn", "info", "debug" };

void fo_log_set_level(fo_log_level_t level)
{
    if (level > FO_LOG_DEBUG)
        level = FO_LOG_DEBUG;
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

fo_log_level_t fo_log_get_level(void)
{
    return (fo_log_level_t)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int fo_log_enabled(fo_log_level_t level)
{
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void fo_log_set_format(fo_log_format_t format)
{
    atomic_store_explicit(&log_format, format == FO_LOG_JSON ? FO_LOG_JSON : FO_LOG_TEXT,
                          memory_order_relaxed);
}

char *fo_log_conn_id(uint64_t id, char *out)
{
    if (!id)
        snprintf(out, FO_LOG_CONN_ID_MAX, "-");
    else
        snprintf(out, FO_LOG_CONN_ID_MAX, "c%" PRIu64, id >> 32 ? id >> 32 : id);
    return out;
}

void fo_log_set_worker(int worker) { tl_worker = worker < 0 ? -1 : worker; }
void fo_log_set_fd(int fd) { atomic_store(&log_fd, fd); }
void fo_log_set_clock(int64_t (*now_s)(void)) { atomic_store(&log_clock, now_s); }

static int64_t now_seconds(void)
{
    int64_t (*fn)(void) = atomic_load_explicit(&log_clock, memory_order_relaxed);
    if (fn)
        return fn();
    return (int64_t)(fo_clock_ns() / 1000000000u);
}

/* Append src to line[*n..cap), escaping control bytes; "..." when cut. */
static void append_escaped(char *line, size_t *n, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = *n;
    for (; *src; src++) {
        unsigned char ch = (unsigned char)*src;
        size_t need = (ch < 0x20 || ch == 0x7f) ? 4 : 1;
        if (i + need > cap - 3) {          /* keep room for "..." */
            memcpy(line + i, "...", 3);
            i += 3;
            break;
        }
        if (need == 4) {
            line[i++] = '\\';
            line[i++] = 'x';
            line[i++] = hex[ch >> 4];
            line[i++] = hex[ch & 15];
        } else {
            line[i++] = (char)ch;
        }
    }
    *n = i;
}

void fo_log_escape(const char *src, char *dst, size_t cap)
{
    size_t n = 0;
    if (!cap)
        return;
    if (cap < 8) {               /* no room for an escape and "..." */
        dst[0] = '\0';
        return;
    }
    append_escaped(dst, &n, cap - 1, src);    /* as vlog: room for the NUL */
    dst[n] = '\0';
}

/* Length of the UTF-8 sequence starting at p (at most n bytes), or 0 when
 * p[0] does not start a well-formed one. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t k;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        k = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        k = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        k = 4;
    else
        return 0;
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return k;
}

/* Append src to line[*n..cap) as the inside of a JSON string: " \ and
 * control bytes escaped (\n, \t, \u001b...), a byte that is not part of
 * well-formed UTF-8 written as the text \xNN (as text lines show control
 * bytes), so every line is valid JSON whatever a peer sent; "..." when cut. */
static void append_json(char *line, size_t *n, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = *n, len = strlen(src);
    for (size_t k = 0; k < len;) {
        unsigned char ch = (unsigned char)src[k];
        char esc[8];
        size_t need, take = 1;
        const char *from = esc;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\'; esc[1] = (char)ch; need = 2;
        } else if (ch == '\n' || ch == '\r' || ch == '\t') {
            esc[0] = '\\'; esc[1] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't'; need = 2;
        } else if (ch < 0x20 || ch == 0x7f) {
            memcpy(esc, "\\u00", 4); esc[4] = hex[ch >> 4]; esc[5] = hex[ch & 15]; need = 6;
        } else if (ch < 0x80) {
            from = src + k; need = 1;
        } else if ((take = utf8_len((const unsigned char *)src + k, len - k)) != 0) {
            from = src + k; need = take;
        } else {
            memcpy(esc, "\\\\x", 3); esc[3] = hex[ch >> 4]; esc[4] = hex[ch & 15]; need = 5;
            take = 1;
        }
        if (i + need > cap - 3) {          /* keep room for "..." */
            memcpy(line + i, "...", 3);
            i += 3;
            break;
        }
        memcpy(line + i, from, need);
        i += need;
        k += take;
    }
    *n = i;
}

static void vlog(fo_log_level_t level, uint64_t conn, const char *fmt, va_list ap)
{
    int saved = errno;
    char msg[FO_LOG_LINE_MAX], line[FO_LOG_LINE_MAX];
    struct tm tm;
    char who[16], cid[FO_LOG_CONN_ID_MAX], ts[64];

    vsnprintf(msg, sizeof msg, fmt, ap);
    uint64_t t_ns = fo_realtime_ns();
    time_t t_s = (time_t)(t_ns / 1000000000u);
    gmtime_r(&t_s, &tm);
    if (tl_worker < 0)
        snprintf(who, sizeof who, "main");
    else
        snprintf(who, sizeof who, "w%d", tl_worker);
    fo_log_conn_id(conn, cid);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
             tm.tm_sec, (int)(t_ns / 1000000u % 1000u));
    unsigned lv = level <= FO_LOG_DEBUG ? level : FO_LOG_DEBUG;
    int h;
    size_t n;
    if (atomic_load_explicit(&log_format, memory_order_relaxed) == FO_LOG_JSON) {
        char q[FO_LOG_CONN_ID_MAX + 2];
        snprintf(q, sizeof q, conn ? "\"%s\"" : "null", cid);
        h = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"worker\":\"%s\","
                     "\"conn\":%s,\"msg\":\"", ts, json_levels[lv], who, q);
        n = h > 0 ? (size_t)h : 0;
        append_json(line, &n, sizeof line - 3, msg);   /* room for "}\n */
        memcpy(line + n, "\"}", 2);
        n += 2;
    } else {
        h = snprintf(line, sizeof line, "%s %-5s %s %s ", ts, level_names[lv], who, cid);
        n = h > 0 ? (size_t)h : 0;
        append_escaped(line, &n, sizeof line - 1, msg);
    }
    line[n++] = '\n';

    int fd = atomic_load_explicit(&log_fd, memory_order_relaxed);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;              /* nowhere to report it: drop the line */
        off += (size_t)w;
    }
    errno = saved;
}

void fo_log(fo_log_level_t level, uint64_t conn, const char *fmt, ...)
{
    if (!fo_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, conn, fmt, ap);
    va_end(ap);
}

void fo_log_limited(fo_log_limit_t *lim, fo_log_level_t level, uint64_t conn,
                    const char *fmt, ...)
{
    if (!fo_log_enabled(level))
        return;
    int64_t now = now_seconds();
    int64_t w = atomic_load(&lim->window);
    if (w != now && atomic_compare_exchange_strong(&lim->window, &w, now)) {
        atomic_store(&lim->count, 0);
        int sup = atomic_exchange(&lim->suppressed, 0);
        if (sup > 0)
            fo_log(level, 0, "%d similar lines suppressed (\"%s\")", sup, fmt);
    }
    if (atomic_fetch_add(&lim->count, 1) >= FO_LOG_BURST) {
        atomic_fetch_add(&lim->suppressed, 1);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vlog(level, conn, fmt, ap);
    va_end(ap);
}
