/* log.h -- one line per event on stderr.
 *
 *   2026-11-23T19:22:56.123Z INFO  w1 c42 connection from 127.0.0.1:51234
 *   2026-11-23T19:22:56.124Z WARN  main - reload: bad value ...
 *
 * UTC time (ms), level, worker (w0, w1.., "main" for any thread that did
 * not name itself), connection id ("-" = none), message. With
 * --log-format json the same fields are one JSON object per line:
 *
 *   {"ts":"2026-11-23T19:22:56.123Z","level":"info","worker":"w1",
 *    "conn":"c42","msg":"connection from 127.0.0.1:51234"}
 *
 * ("conn":null when none). A connection id is shown as "c" and its
 * sequence number (fo_log_conn_id): c1 is the first connection the
 * process accepted, c2 the next, whatever worker or slot it got. Thread-safe: one
 * write(2) per line (at most FO_LOG_LINE_MAX bytes, longer messages are
 * cut with "..."); control bytes in the message are escaped (\xNN) so a
 * peer's text can never forge a line. fo_log_limited() is for lines an
 * attacker can provoke (bad input): at most FO_LOG_BURST lines per second
 * per call site; the first line of a later second then says how many were
 * suppressed ("N similar lines suppressed").
 */
#ifndef FO_LOG_H
#define FO_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { FO_LOG_ERROR, FO_LOG_WARN, FO_LOG_INFO, FO_LOG_DEBUG } fo_log_level_t;
typedef enum { FO_LOG_TEXT = 1, FO_LOG_JSON = 2 } fo_log_format_t;

#define FO_LOG_BURST 10
#define FO_LOG_LINE_MAX 2048

/* Where lines go (default 2 = stderr); the fd stays the caller's. */
void fo_log_set_fd(int fd);

/* For tests: the clock of the rate limiter, in seconds (NULL = the
 * monotonic clock). Set before other threads log. */
void fo_log_set_clock(int64_t (*now_s)(void));

/* Set the level (SIGHUP may change it at any time). */
void fo_log_set_level(fo_log_level_t level);
fo_log_level_t fo_log_get_level(void);
int fo_log_enabled(fo_log_level_t level);

/* Text lines (the default) or one JSON object per line. */
void fo_log_set_format(fo_log_format_t format);

/* The id a person reads and greps for a connection: "c" and the sequence
 * number in the id's high 32 bits (worker.c: seq << 32 | slot << 8 |
 * worker), so c1, c2, ... in the order the broker accepted them; an id
 * with no sequence part (< 2^32) is shown whole; 0 is "-". Writes into
 * out (FO_LOG_CONN_ID_MAX bytes) and returns it. Logs, WELCOME's
 * client_id and the docs all name a connection this way. */
#define FO_LOG_CONN_ID_MAX 24
char *fo_log_conn_id(uint64_t id, char *out);

/* "s" unless n is 1: "%d connection%s", n, FO_PLURAL(n). */
#define FO_PLURAL(n) ((n) == 1 ? "" : "s")

/* Name the calling thread's worker index for its log lines (-1 = "main"). */
void fo_log_set_worker(int worker);

/* Copy src to dst (cap bytes, NUL-terminated) with control bytes written
 * as \xNN, as log lines show them: a peer's topic in an ERROR text stays
 * one line. Cut with "..." when it does not fit. */
void fo_log_escape(const char *src, char *dst, size_t cap);

/* conn 0 = no connection. */
void fo_log(fo_log_level_t level, uint64_t conn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct fo_log_limit {
    _Atomic int64_t window;      /* second of the current window */
    _Atomic int count;           /* lines in it                  */
    _Atomic int suppressed;      /* lines dropped in it          */
} fo_log_limit_t;

void fo_log_limited(fo_log_limit_t *lim, fo_log_level_t level, uint64_t conn,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define FO_LOG_RATE(level, conn, ...) do {                         \
        static fo_log_limit_t lim_;                                 \
        fo_log_limited(&lim_, (level), (conn), __VA_ARGS__);        \
    } while (0)

#define fo_error(conn, ...) fo_log(FO_LOG_ERROR, (conn), __VA_ARGS__)
#define fo_warn(conn, ...)  fo_log(FO_LOG_WARN, (conn), __VA_ARGS__)
#define fo_info(conn, ...)  fo_log(FO_LOG_INFO, (conn), __VA_ARGS__)
#define fo_debug(conn, ...) do { if (fo_log_enabled(FO_LOG_DEBUG)) \
        fo_log(FO_LOG_DEBUG, (conn), __VA_ARGS__); } while (0)

#endif
