/* config.c -- fanoutd's option table and its four sources.
 *
 * Like Redis's config.c, every option is one row of `opts[]`: its name,
 * type, group (for --help), default (a string, parsed like any other
 * value so the table cannot disagree with itself), bounds, where it lives
 * in fo_config_t (offsetof + size) and whether SIGHUP may change it.
 * Parsing, bounds checks, --help and docs/CONFIG.md all follow the table.
 *
 * Sources, lowest precedence first: the defaults, the --config file, the
 * environment (FANOUT_<NAME>, '-' -> '_'), the command line. A list option
 * (mcast-group) is replaced, not extended, by a higher source: the first
 * value a source gives clears what lower sources said.
 *
 * Errors are one line naming where the value came from:
 *   fanoutd: --max-frame: "abc" is not a size (e.g. 1MiB)
 *   fanoutd: FANOUT_THREADS: "x" is not a whole number
 *   fanoutd: /etc/fanout.conf:12: max-conns: 0 is below the minimum 1
 *
 * Reload (SIGHUP) builds a fresh config from defaults + file + env and
 * copies only the reloadable options not pinned by the command line; it
 * can say, option by option, what changed and what needs a restart.
 *
 * A mistyped name gets the nearest one (edit distance over the table):
 *   fanoutd: --max-fram: unknown option, did you mean --max-frame? (see --help)
 */
#include "config.h"
#include "addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

#define KiB ((uint64_t)1024)
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define TiB (1024ull * GiB)
#define SEC ((uint64_t)1000)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

#define LINE_MAX_LEN 4096            /* longest config-file line */

typedef enum { T_INT, T_SIZE, T_DURATION, T_STRING, T_HOSTPORT, T_ENUM, T_BOOL, T_LIST } opt_type_t;

enum {
    F_RELOAD = 1,   /* SIGHUP may change it                 */
    F_OFF    = 2,   /* hostport that also accepts "off"     */
    F_NOFILE = 4,   /* not allowed in the config file       */
    F_IPV4   = 8,   /* string that is "" or an IPv4 address */
    F_PATH   = 16,  /* string that names a file (--help: FILE) */
    F_SECRET = 32,  /* never shown in logs (SIGHUP reports)  */
};

typedef struct enum_name { const char *name; unsigned value; } enum_name_t;

static const enum_name_t slow_names[] = {
    { "drop", FO_POLICY_DROP }, { "disconnect", FO_POLICY_DISCONNECT },
    { "block", FO_POLICY_BLOCK }, { NULL, 0 } };
static const enum_name_t verify_names[] = {
    { "none", FO_TLS_VERIFY_NONE }, { "optional", FO_TLS_VERIFY_OPTIONAL },
    { "required", FO_TLS_VERIFY_REQUIRED }, { NULL, 0 } };
static const enum_name_t user_from_names[] = {
    { "off", FO_TLS_USER_OFF }, { "cn", FO_TLS_USER_CN }, { "san", FO_TLS_USER_SAN }, { NULL, 0 } };
static const enum_name_t level_names[] = {
    { "error", FO_LOG_ERROR }, { "warn", FO_LOG_WARN }, { "info", FO_LOG_INFO },
    { "debug", FO_LOG_DEBUG }, { NULL, 0 } };
static const enum_name_t format_names[] = {
    { "text", FO_LOG_TEXT }, { "json", FO_LOG_JSON }, { NULL, 0 } };

typedef struct opt {
    const char *name;
    opt_type_t type;
    const char *group;         /* --help section                         */
    const char *def;           /* default, as text; NULL = none          */
    uint64_t min, max;         /* numbers: inclusive bounds; HOSTPORT:
                                  min = the port when none is written    */
    size_t off, size;          /* where in fo_config_t, field size       */
    int flags;
    const enum_name_t *names;  /* T_ENUM                                 */
    const char *help;
} opt_t;

#define FIELD(f) offsetof(fo_config_t, f), sizeof(((fo_config_t *)0)->f)
#define G_NET   "Network"
#define G_LIM   "Limits"
#define G_SLOW  "Slow consumers and retention"
#define G_TIME  "Timeouts"
#define G_AUTH  "Authentication"
#define G_TLS   "TLS"
#define G_MC    "Multicast"
#define G_CL    "Cluster"
#define G_GEN   "General"

static const opt_t opts[] = {
    /* name            type        group   default          min     max          field              flags      names        help */
    { "listen",        T_HOSTPORT, G_NET,  "127.0.0.1:7400",  FO_PORT_CLIENT, 0,   FIELD(listen),           0,        NULL, "address of the client (TCP) listener" },
    { "http",          T_HOSTPORT, G_NET,  "127.0.0.1:7401", FO_PORT_HTTP, 0,    FIELD(http),             F_OFF,    NULL, "address of /metrics and /healthz, or \"off\"" },
    { "http-announce", T_HOSTPORT, G_NET,  NULL,            FO_PORT_HTTP, 0,     FIELD(http_announce),    F_OFF,    NULL, "the /metrics address clients are told (NAT, containers)" },
    { "threads",       T_INT,      G_NET,  "0",             0, 64,               FIELD(threads),          0,        NULL, "worker threads, 0 = one per online core" },
    { "max-frame",     T_SIZE,     G_LIM,  "1MiB",          64, 64 * MiB,        FIELD(max_frame),        0,        NULL, "largest frame body accepted" },
    { "max-conns",     T_INT,      G_LIM,  "10000",         1, 1000000,          FIELD(max_conns),        F_RELOAD, NULL, "concurrent client connections" },
    { "max-memory",    T_SIZE,     G_LIM,  "1GiB",          1 * MiB, 1 * TiB,    FIELD(max_memory),       F_RELOAD, NULL, "message memory cap (publishes beyond are refused)" },
    { "max-topics",    T_INT,      G_LIM,  "100000",        1, 10000000,         FIELD(max_topics),       0,        NULL, "topics the broker will create" },
    { "max-subs",      T_INT,      G_LIM,  "10000",         1, 1000000,          FIELD(max_subs),         0,        NULL, "subscriptions per connection" },
    { "read-budget",   T_SIZE,     G_LIM,  "256KiB",        4 * KiB, 64 * MiB,   FIELD(read_budget),      F_RELOAD, NULL, "bytes read per connection per event (fairness)" },
    { "max-output",    T_SIZE,     G_SLOW, "32MiB",         4 * KiB, 4 * GiB,    FIELD(max_output),       F_RELOAD, NULL, "per-connection output queue limit" },
    { "slow-policy",   T_ENUM,     G_SLOW, "drop",          0, 0,                FIELD(slow_policy),      F_RELOAD, slow_names, "default policy when max-output is hit" },
    { "retention-msgs", T_INT,     G_SLOW, "1000",          0, 10000000,         FIELD(retention_msgs),   F_RELOAD, NULL, "messages retained per topic (replay, repair)" },
    { "retention-bytes", T_SIZE,   G_SLOW, "8MiB",          0, 64 * GiB,         FIELD(retention_bytes),  F_RELOAD, NULL, "payload bytes retained per topic" },
    { "retention-age", T_DURATION, G_SLOW, "0",             0, 365 * 24 * HOUR,  FIELD(retention_age_ms), F_RELOAD, NULL, "retained messages expire after this, 0 = never" },
    { "topic-linger",  T_DURATION, G_SLOW, "10s",           0, 24 * HOUR,        FIELD(topic_linger_ms),  F_RELOAD, NULL, "an unused topic is freed after this" },
    { "ping-interval", T_DURATION, G_TIME, "10s",           100, 1 * HOUR,       FIELD(ping_interval_ms), F_RELOAD, NULL, "PING a peer silent for this long" },
    { "idle-timeout",  T_DURATION, G_TIME, "30s",           200, 24 * HOUR,      FIELD(idle_timeout_ms),  F_RELOAD, NULL, "close a peer silent this long (> ping-interval)" },
    { "hello-timeout", T_DURATION, G_TIME, "5s",            100, 1 * HOUR,       FIELD(hello_timeout_ms), 0,        NULL, "time a new connection has to send HELLO" },
    { "drain-timeout", T_DURATION, G_TIME, "5s",            0, 10 * MIN,         FIELD(drain_timeout_ms), F_RELOAD, NULL, "on SIGTERM, time to flush before closing" },
    { "block-timeout", T_DURATION, G_SLOW, "5s",            100, 1 * HOUR,       FIELD(block_timeout_ms), F_RELOAD, NULL, "longest a block-policy sub may pause publishers" },
    { "users",         T_STRING,   G_AUTH, "",              0, 0,                FIELD(users_file),       F_PATH,   NULL, "users: logins, permissions, limits (re-read on SIGHUP)" },
    { "user",          T_STRING,   G_AUTH, "",              0, 0,                FIELD(user),             0,        NULL, "one-user shorthand: HELLO must carry this user ..." },
    { "password",      T_STRING,   G_AUTH, "",              0, 0,                FIELD(password),         F_SECRET, NULL, "... and this password (best set in env or file)" },
    { "allow-anonymous", T_BOOL,   G_AUTH, "0",             0, 1,                FIELD(allow_anonymous),  0,        NULL, "serve clients without login on non-loopback listeners" },
    { "http-token",    T_STRING,   G_AUTH, "",              0, 0,                FIELD(http_token),       F_RELOAD | F_SECRET, NULL, "when set, /metrics needs \"Authorization: Bearer TOKEN\"" },
    { "tls-listen",    T_HOSTPORT, G_TLS,  "off",           FO_PORT_TLS, 0,      FIELD(tls_listen),       F_OFF,    NULL, "address of the TLS listener, or \"off\"" },
    { "tls-cert",      T_STRING,   G_TLS,  "",              0, 0,                FIELD(tls_cert),         F_RELOAD | F_PATH, NULL, "PEM certificate (chain) of the TLS listener" },
    { "tls-key",       T_STRING,   G_TLS,  "",              0, 0,                FIELD(tls_key),          F_RELOAD | F_PATH, NULL, "PEM private key of --tls-cert" },
    { "tls-ca",        T_STRING,   G_TLS,  "",              0, 0,                FIELD(tls_ca),           F_RELOAD | F_PATH, NULL, "PEM CA bundle that client certificates must chain to" },
    { "tls-verify-client", T_ENUM, G_TLS,  "none",          0, 0,                FIELD(tls_verify_client), F_RELOAD, verify_names, "ask for a client certificate: none, optional, required" },
    { "tls-user-from", T_ENUM,     G_TLS,  "off",           0, 0,                FIELD(tls_user_from),    F_RELOAD, user_from_names, "name the user after the client certificate's CN or SAN" },
    { "mcast-group",   T_LIST,     G_MC,   NULL,            0, 0,                FIELD(mcast),            0,        NULL, "topics matching FILTER go to a group (repeatable)" },
    { "mcast-ttl",     T_INT,      G_MC,   "1",             0, 255,              FIELD(mcast_ttl),        0,        NULL, "IP_MULTICAST_TTL of the datagrams" },
    { "mcast-if",      T_STRING,   G_MC,   "",              0, 0,                FIELD(mcast_if),         F_IPV4,   NULL, "IPv4 address of the outgoing interface" },
    { "mcast-loop",    T_BOOL,     G_MC,   "1",             0, 1,                FIELD(mcast_loop),       0,        NULL, "IP_MULTICAST_LOOP (receivers on this host)" },
    { "max-datagram",  T_SIZE,     G_MC,   "1400",          512, 65000,          FIELD(max_datagram),     0,        NULL, "UDP payload limit" },
    { "cluster-listen", T_HOSTPORT, G_CL,  "off",           FO_PORT_CLUSTER, 0,  FIELD(cluster_listen),   F_OFF,    NULL, "address of the peer listener, or \"off\"" },
    { "cluster-peers", T_STRING,   G_CL,   "",              0, 0,                FIELD(cluster_peers),    0,        NULL, "HOST:PORT and dns:NAME:PORT entries" },
    { "node-id",       T_STRING,   G_CL,   "",              0, 0,                FIELD(node_id),          0,        NULL, "stable name in the cluster (default: hostname)" },
    { "cluster-advertise", T_STRING, G_CL, "",              0, 0,                FIELD(cluster_advertise), 0,       NULL, "HOST:PORT clients reach this broker at" },
    { "cluster-secret", T_STRING,  G_CL,   "",              0, 0,                FIELD(cluster_secret),   0,        NULL, "the shared cluster credential" },
    { "cluster-secret-file", T_STRING, G_CL, "",            0, 0,                FIELD(cluster_secret_file), F_PATH, NULL, "read the cluster credential from FILE" },
    { "cluster-max-output", T_SIZE, G_CL,  "64MiB",         64 * KiB, 16 * GiB,  FIELD(cluster_max_output), 0,      NULL, "data queued per peer link" },
    { "cluster-tls",   T_BOOL,     G_CL,   "0",             0, 1,                FIELD(cluster_tls),      0,        NULL, "peer links over mutual TLS (--tls-cert, --tls-key)" },
    { "cluster-tls-ca", T_STRING,  G_CL,   "",              0, 0,                FIELD(cluster_tls_ca),   F_PATH,   NULL, "CA bundle of the peers' certificates (default --tls-ca)" },
    { "cluster-dns-interval", T_DURATION, G_CL, "2s",   100, 10 * MIN,       FIELD(cluster_resolve_ms), 0,      NULL, "how often peers are resolved again" },
    { "log-level",     T_ENUM,     G_GEN,  "info",          0, 0,                FIELD(log_level),        F_RELOAD, level_names, "least severe level logged" },
    { "log-format",    T_ENUM,     G_GEN,  "text",          0, 0,                FIELD(log_format),       0,        format_names, "text lines, or json: one object per line" },
    { "config",        T_STRING,   G_GEN,  "",              0, 0,                FIELD(config_file),      F_NOFILE, NULL, "read `name value` lines from this file" },
};

#define NOPTS (sizeof opts / sizeof opts[0])
_Static_assert(NOPTS <= 64, "set_by_argv is a 64-bit mask");
_Static_assert(sizeof(fo_policy_t) == 4 && sizeof(fo_log_level_t) == 4 && sizeof(int) == 4 &&
               sizeof(fo_tls_verify_t) == 4 && sizeof(fo_tls_user_from_t) == 4 &&
               sizeof(fo_log_format_t) == 4,
               "numeric fields are stored as 4 or 8 bytes");

static const char *const groups[] = { G_NET, G_LIM, G_SLOW, G_TIME, G_AUTH, G_TLS, G_MC, G_CL, G_GEN };

/* One load or reload in progress. */
typedef struct load {
    fo_config_t *c;
    uint64_t lists_seen;   /* list options already given by this source */
    char *err;
    size_t errlen;
} load_t;

/* ------------------------------------------------------------ helpers */

static fo_err_t fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static fo_err_t fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        int n = snprintf(err, errlen, "fanoutd: ");
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < errlen)
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return FO_ERR_INVAL;
}

static const opt_t *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static void env_name(const opt_t *o, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "FANOUT_");
    for (const char *p = o->name; *p && n + 1 < len; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

/* ------------------------------------------------------------ did you mean */

/* Optimal string alignment distance (Levenshtein plus adjacent swaps) of
 * a[0..al) and b, compared as option names: case and '_' versus '-' do
 * not count. */
static size_t name_distance(const char *a, size_t al, const char *b)
{
    size_t bl = strlen(b);
    if (al > 64 || bl > 64)
        return SIZE_MAX;
    size_t d[65][65];
    char x[65], y[65];
    for (size_t i = 0; i < al; i++)
        x[i] = a[i] == '_' ? '-' : (char)tolower((unsigned char)a[i]);
    for (size_t j = 0; j < bl; j++)
        y[j] = b[j];
    for (size_t i = 0; i <= al; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= bl; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= al; i++)
        for (size_t j = 1; j <= bl; j++) {
            size_t cost = x[i - 1] != y[j - 1];
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && x[i - 1] == y[j - 2] && x[i - 2] == y[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[al][bl];
}

/* name[0..len) and opt agree on their first min(len, strlen(opt)) letters,
 * at least 4 (compared as in name_distance). */
static int prefix_either_way(const char *name, size_t len, const char *opt)
{
    size_t ol = strlen(opt), m = len < ol ? len : ol;
    if (m < 4)
        return 0;
    for (size_t i = 0; i < m; i++)
        if ((name[i] == '_' ? '-' : tolower((unsigned char)name[i])) != opt[i])
            return 0;
    return 1;
}

/* The option a mistyped name most likely meant, or NULL: the nearest by
 * name_distance when that is at most a third of the name's length (1 at
 * least, 3 at most); else the one option, if only one, that the name
 * starts with or is the start of ("retention" is both -msgs and -bytes:
 * no suggestion). */
static const opt_t *suggest(const char *name, size_t len)
{
    const opt_t *best = NULL, *prefixed = NULL;
    size_t bestd = SIZE_MAX, nprefixed = 0;
    for (size_t i = 0; i < NOPTS; i++) {
        size_t d = name_distance(name, len, opts[i].name);
        if (d < bestd) {
            bestd = d;
            best = &opts[i];
        }
        if (prefix_either_way(name, len, opts[i].name)) {
            prefixed = &opts[i];
            nprefixed++;
        }
    }
    size_t limit = len / 3;
    limit = limit < 1 ? 1 : limit > 3 ? 3 : limit;
    if (best && bestd <= limit)
        return best;
    return nprefixed == 1 ? prefixed : NULL;
}

/* "WHERE: unknown option, did you mean PREFIXname? (see --help)" */
static fo_err_t unknown(char *err, size_t errlen, const char *where, const char *name,
                        size_t len, const char *prefix)
{
    const opt_t *o = suggest(name, len);
    if (o)
        return fail(err, errlen, "%s: unknown option, did you mean %s%s? (see --help)", where,
                    prefix, o->name);
    return fail(err, errlen, "%s: unknown option (see --help)", where);
}

/* "1GiB", "64B", "1400B": the largest binary unit that divides exactly. */
static void fmt_size(uint64_t v, char *out, size_t len)
{
    static const struct { uint64_t m; const char *u; } u[] = {
        { TiB, "TiB" }, { GiB, "GiB" }, { MiB, "MiB" }, { KiB, "KiB" } };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++)
        if (v >= u[i].m && v % u[i].m == 0) {
            snprintf(out, len, "%" PRIu64 "%s", v / u[i].m, u[i].u);
            return;
        }
    snprintf(out, len, "%" PRIu64 "B", v);
}

static void fmt_duration(uint64_t ms, char *out, size_t len)
{
    if (ms >= HOUR && ms % HOUR == 0)     snprintf(out, len, "%" PRIu64 "h", ms / HOUR);
    else if (ms >= MIN && ms % MIN == 0)  snprintf(out, len, "%" PRIu64 "m", ms / MIN);
    else if (ms >= SEC && ms % SEC == 0)  snprintf(out, len, "%" PRIu64 "s", ms / SEC);
    else                                  snprintf(out, len, "%" PRIu64 "ms", ms);
}

static void fmt_num(const opt_t *o, uint64_t v, char *out, size_t len)
{
    if (o->type == T_SIZE)          fmt_size(v, out, len);
    else if (o->type == T_DURATION) fmt_duration(v, out, len);
    else                            snprintf(out, len, "%" PRIu64, v);
}

static void store_num(fo_config_t *c, const opt_t *o, uint64_t v)
{
    char *p = (char *)c + o->off;
    if (o->size == 8) {
        memcpy(p, &v, 8);
    } else {
        uint32_t v32 = (uint32_t)v;    /* bounds keep it <= INT_MAX for ints */
        memcpy(p, &v32, 4);
    }
}

/* ------------------------------------------------------------ parsers */

/* Leading decimal digits of s into *v; returns the rest, NULL when there
 * are no digits or the number overflows. */
static const char *parse_digits(const char *s, uint64_t *v)
{
    if (!isdigit((unsigned char)*s))
        return NULL;
    uint64_t n = 0;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (n > (UINT64_MAX - d) / 10)
            return NULL;
        n = n * 10 + d;
    }
    *v = n;
    return s;
}

static fo_err_t parse_scaled(const char *s, uint64_t *out,
                             const char *const *units, const uint64_t *mult, size_t nunits)
{
    uint64_t n;
    const char *p = s ? parse_digits(s, &n) : NULL;
    if (!p)
        return FO_ERR_INVAL;
    while (*p == ' ')
        p++;
    for (size_t i = 0; i < nunits; i++)
        if (strcasecmp(p, units[i]) == 0) {
            if (mult[i] && n > UINT64_MAX / mult[i])
                return FO_ERR_RANGE;
            *out = n * mult[i];
            return FO_OK;
        }
    return FO_ERR_INVAL;
}

fo_err_t fo_parse_size(const char *s, uint64_t *out)
{
    static const char *const units[] = { "", "b", "k", "kb", "kib", "m", "mb", "mib",
                                         "g", "gb", "gib", "t", "tb", "tib" };
    static const uint64_t mult[] = { 1, 1, KiB, KiB, KiB, MiB, MiB, MiB,
                                     GiB, GiB, GiB, TiB, TiB, TiB };
    return parse_scaled(s, out, units, mult, sizeof units / sizeof units[0]);
}

fo_err_t fo_parse_duration_ms(const char *s, uint64_t *out)
{
    static const char *const units[] = { "", "ms", "s", "m", "h" };
    static const uint64_t mult[] = { 1, 1, SEC, MIN, HOUR };
    return parse_scaled(s, out, units, mult, sizeof units / sizeof units[0]);
}

static bool ipv4_multicast(const char *addr)
{
    struct in_addr a;
    if (inet_pton(AF_INET, addr, &a) != 1)
        return false;
    return (ntohl(a.s_addr) >> 28) == 0xE;          /* 224.0.0.0/4 */
}

/* Light syntax check of a topic filter (dot-separated non-empty tokens,
 * `*` and `>` as whole tokens, `>` last); topic.c has the full rules. */
static bool filter_ok(const char *f)
{
    size_t len = strlen(f);
    if (len == 0 || len >= sizeof(((fo_mcast_map_t *)0)->filter))
        return false;
    const char *tok = f;
    for (;;) {
        const char *dot = strchr(tok, '.');
        size_t tl = dot ? (size_t)(dot - tok) : strlen(tok);
        if (tl == 0)
            return false;
        for (size_t i = 0; i < tl; i++) {
            unsigned char ch = (unsigned char)tok[i];
            if (ch <= ' ' || ch == 0x7f)
                return false;
            if ((ch == '*' || ch == '>') && tl != 1)
                return false;
        }
        if (tok[0] == '>' && dot)
            return false;
        if (!dot)
            return true;
        tok = dot + 1;
    }
}

static fo_err_t parse_mcast(fo_config_t *c, const char *where, const char *v,
                            char *err, size_t errlen)
{
    if (c->mcast_count >= FO_MCAST_MAX_GROUPS)
        return fail(err, errlen, "%s: too many groups (at most %d)", where, FO_MCAST_MAX_GROUPS);
    const char *eq = strrchr(v, '=');
    if (!eq)
        return fail(err, errlen, "%s: \"%s\" is not FILTER=ADDR:PORT (e.g. prices.>=239.1.2.3:7500)",
                    where, v);
    fo_mcast_map_t m;
    memset(&m, 0, sizeof m);
    size_t fl = (size_t)(eq - v);
    if (fl >= sizeof m.filter)
        return fail(err, errlen, "%s: filter too long (at most %zu bytes)", where, sizeof m.filter - 1);
    memcpy(m.filter, v, fl);
    if (!filter_ok(m.filter))
        return fail(err, errlen, "%s: \"%s\" is not a valid topic filter", where, m.filter);
    fo_addr_t a;
    if (fo_addr_parse(eq + 1, FO_ADDR_NEED_PORT | FO_ADDR_NO_SCHEME, &a) != FO_OK || a.port == 0 ||
        strlen(a.host) >= sizeof m.addr)
        return fail(err, errlen, "%s: \"%s\" is not ADDR:PORT (port 1..65535)", where, eq + 1);
    memcpy(m.addr, a.host, strlen(a.host) + 1);
    m.port = a.port;
    if (!ipv4_multicast(m.addr))
        return fail(err, errlen, "%s: \"%s\" is not an IPv4 multicast address (224.0.0.0/4)",
                    where, m.addr);
    c->mcast[c->mcast_count++] = m;
    return FO_OK;
}

static fo_err_t check_bounds(const opt_t *o, const char *where, const char *v, uint64_t n,
                             char *err, size_t errlen)
{
    char b[32];
    if (n < o->min) {
        fmt_num(o, o->min, b, sizeof b);
        return fail(err, errlen, "%s: \"%s\" is below the minimum %s", where, v, b);
    }
    if (n > o->max) {
        fmt_num(o, o->max, b, sizeof b);
        return fail(err, errlen, "%s: \"%s\" is above the maximum %s", where, v, b);
    }
    return FO_OK;
}

/* The number an INT, SIZE, DURATION or BOOL option's text stands for
 * (bounds are checked by the caller). */
static fo_err_t parse_number(const opt_t *o, const char *where, const char *v, uint64_t *n,
                             char *err, size_t errlen)
{
    fo_err_t e;
    switch (o->type) {
    case T_INT: {
        const char *end = parse_digits(v, n);
        if (!end || *end)
            return fail(err, errlen, "%s: \"%s\" is not a whole number", where, v);
        return FO_OK;
    }
    case T_SIZE:
        e = fo_parse_size(v, n);
        if (e == FO_ERR_RANGE)
            return fail(err, errlen, "%s: \"%s\" is too large", where, v);
        if (e != FO_OK)
            return fail(err, errlen, "%s: \"%s\" is not a size (e.g. 1MiB)", where, v);
        return FO_OK;
    case T_DURATION:
        e = fo_parse_duration_ms(v, n);
        if (e == FO_ERR_RANGE)
            return fail(err, errlen, "%s: \"%s\" is too long", where, v);
        if (e != FO_OK)
            return fail(err, errlen, "%s: \"%s\" is not a duration (e.g. 500ms, 10s, 2m)", where, v);
        return FO_OK;
    default: {                                              /* T_BOOL */
        static const char *const yes[] = { "1", "yes", "true", "on" };
        static const char *const no[] = { "0", "no", "false", "off" };
        for (size_t i = 0; i < 4; i++) {
            if (!strcasecmp(v, yes[i])) {
                *n = 1;
                return FO_OK;
            }
            if (!strcasecmp(v, no[i])) {
                *n = 0;
                return FO_OK;
            }
        }
        return fail(err, errlen, "%s: \"%s\" is not a boolean (1|0|yes|no|true|false|on|off)", where, v);
    }
    }
}

static fo_err_t set_enum(fo_config_t *c, const opt_t *o, const char *where, const char *v,
                         char *err, size_t errlen)
{
    for (const enum_name_t *en = o->names; en->name; en++)
        if (!strcasecmp(v, en->name)) {
            store_num(c, o, en->value);
            return FO_OK;
        }
    char list[128] = "";
    for (const enum_name_t *x = o->names; x->name; x++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                 x == o->names ? "" : "|", x->name);
    return fail(err, errlen, "%s: \"%s\" is not one of %s", where, v, list);
}

static fo_err_t set_string(char *field, const opt_t *o, const char *where, const char *v,
                           char *err, size_t errlen)
{
    if (strlen(v) >= o->size)
        return fail(err, errlen, "%s: value too long (at most %zu bytes)", where, o->size - 1);
    if ((o->flags & F_IPV4) && *v && inet_pton(AF_INET, v, &(struct in_addr){ 0 }) != 1)
        return fail(err, errlen, "%s: \"%s\" is not an IPv4 address", where, v);
    memcpy(field, v, strlen(v) + 1);
    return FO_OK;
}

/* A listen address, stored normalised ("0.0.0.0:7400", "[::1]:9"). */
static fo_err_t set_hostport(char *field, const opt_t *o, const char *where, const char *v,
                             char *err, size_t errlen)
{
    if ((o->flags & F_OFF) && !strcmp(v, "off")) {
        memcpy(field, "off", 4);
        return FO_OK;
    }
    if (!*v && !o->def) {
        field[0] = '\0';                     /* an option without default: unset */
        return FO_OK;
    }
    fo_addr_t a;
    if (fo_addr_parse(v, FO_ADDR_NO_SCHEME | FO_ADDR_LISTEN, &a) != FO_OK)
        return fail(err, errlen, "%s: \"%s\" is not HOST[:PORT]%s", where, v,
                    o->flags & F_OFF ? " or off" : "");
    if (!a.has_port && !a.ipv6 && strspn(a.host, "0123456789") == strlen(a.host))
        return fail(err, errlen, "%s: \"%s\" is not HOST[:PORT] (a port alone is written \":%s\")",
                    where, v, v);
    if (!a.has_port)
        a.port = (uint16_t)o->min;           /* the option's own default port */
    char norm[300];
    int len = fo_addr_format(&a, "0.0.0.0", norm, sizeof norm);
    if (len < 0 || (size_t)len >= o->size)
        return fail(err, errlen, "%s: value too long (at most %zu bytes)", where, o->size - 1);
    memcpy(field, norm, (size_t)len + 1);
    return FO_OK;
}

/* Parse v for option o and store it in c. `where` names the source. */
static fo_err_t set_value(fo_config_t *c, const opt_t *o, const char *where, const char *v,
                          char *err, size_t errlen)
{
    char *field = (char *)c + o->off;
    switch (o->type) {
    case T_ENUM:
        return set_enum(c, o, where, v, err, errlen);
    case T_STRING:
        return set_string(field, o, where, v, err, errlen);
    case T_HOSTPORT:
        return set_hostport(field, o, where, v, err, errlen);
    case T_LIST:
        return parse_mcast(c, where, v, err, errlen);
    case T_INT:
    case T_SIZE:
    case T_DURATION:
    case T_BOOL:
        break;
    }
    uint64_t n = 0;
    fo_err_t e = parse_number(o, where, v, &n, err, errlen);
    if (e == FO_OK)
        e = check_bounds(o, where, v, n, err, errlen);
    if (e == FO_OK)
        store_num(c, o, n);
    return e;
}

/* Set from a source: a list option given for the first time by this source
 * forgets what lower sources said; the env form is comma-separated. */
static fo_err_t set_from(load_t *ld, const opt_t *o, const char *where, const char *v, bool split)
{
    if (o->type != T_LIST)
        return set_value(ld->c, o, where, v, ld->err, ld->errlen);
    uint64_t bit = 1ull << (o - opts);
    if (!(ld->lists_seen & bit)) {
        ld->lists_seen |= bit;
        ld->c->mcast_count = 0;
        memset(ld->c->mcast, 0, sizeof ld->c->mcast);
    }
    if (!split)
        return set_value(ld->c, o, where, v, ld->err, ld->errlen);
    char item[LINE_MAX_LEN];
    for (const char *p = v; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && isspace((unsigned char)*p)) { p++; len--; }
        while (len && isspace((unsigned char)p[len - 1])) len--;
        if (len >= sizeof item)
            return fail(ld->err, ld->errlen, "%s: item too long", where);
        if (len) {
            memcpy(item, p, len);
            item[len] = '\0';
            fo_err_t e = set_value(ld->c, o, where, item, ld->err, ld->errlen);
            if (e != FO_OK)
                return e;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return FO_OK;
}

/* ------------------------------------------------------------ sources */

static void trim(char **s)
{
    while (isspace((unsigned char)**s))
        (*s)++;
    char *e = *s + strlen(*s);
    while (e > *s && isspace((unsigned char)e[-1]))
        *--e = '\0';
}

/* One config-file line: `name value`, `name = value` or `name "value"`;
 * blank lines and lines starting with # are skipped, as is a trailing
 * ` # comment` after an unquoted value. */
static fo_err_t file_line(load_t *ld, const char *path, int lineno, char *line)
{
    char where[600];
    trim(&line);
    if (!*line || *line == '#')
        return FO_OK;
    char *v = line;
    while (*v && !isspace((unsigned char)*v) && *v != '=')
        v++;
    size_t nl = (size_t)(v - line);
    while (isspace((unsigned char)*v))
        v++;
    if (*v == '=')
        v++;
    trim(&v);
    const opt_t *o = find_opt(line, nl);
    line[nl] = '\0';
    snprintf(where, sizeof where, "%s:%d: %s", path, lineno, line);
    if (!o)
        return unknown(ld->err, ld->errlen, where, line, nl, "");
    if (o->flags & F_NOFILE)
        return fail(ld->err, ld->errlen, "%s: not allowed in a config file", where);
    if (*v == '"') {
        char *q = strchr(v + 1, '"');
        if (!q)
            return fail(ld->err, ld->errlen, "%s: missing closing quote", where);
        char *rest = q + 1;
        trim(&rest);
        if (*rest && *rest != '#')
            return fail(ld->err, ld->errlen, "%s: text after the closing quote", where);
        *q = '\0';
        v++;
    } else {
        for (char *h = v; (h = strchr(h, '#')) != NULL; h++)
            if (h > v && isspace((unsigned char)h[-1])) {
                *h = '\0';
                trim(&v);
                break;
            }
    }
    fo_err_t e = set_from(ld, o, where, v, false);
    if (e == FO_OK)
        ld->c->set_by_file |= 1ull << (o - opts);
    return e;
}

static fo_err_t load_file(load_t *ld, const char *path)
{
    if (!path || !*path)
        return FO_OK;
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(ld->err, ld->errlen, "--config: cannot open \"%s\": %s", path, strerror(errno));
    char line[LINE_MAX_LEN + 2];
    int lineno = 0;
    fo_err_t e = FO_OK;
    while (e == FO_OK && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            e = fail(ld->err, ld->errlen, "%s:%d: line too long (at most %d bytes)",
                     path, lineno, LINE_MAX_LEN);
            break;
        }
        e = file_line(ld, path, lineno, line);
    }
    if (e == FO_OK && ferror(f))
        e = fail(ld->err, ld->errlen, "--config: cannot read \"%s\": %s", path, strerror(errno));
    fclose(f);
    return e;
}

static const char *env_get(char **envp, const char *name)
{
    size_t nl = strlen(name);
    for (char **p = envp; p && *p; p++)
        if (!strncmp(*p, name, nl) && (*p)[nl] == '=')
            return *p + nl + 1;
    return NULL;
}

/* Unknown FANOUT_* variables are ignored here (the CLI and scripts share
 * the prefix); fo_config_env_warnings names them. */
static fo_err_t load_env(load_t *ld, char **envp, bool with_config)
{
    char name[64];
    for (size_t i = 0; i < NOPTS; i++) {
        if (!with_config && (opts[i].flags & F_NOFILE))
            continue;
        env_name(&opts[i], name, sizeof name);
        const char *v = env_get(envp, name);
        if (v) {
            fo_err_t e = set_from(ld, &opts[i], name, v, true);
            if (e != FO_OK)
                return e;
            ld->c->set_by_env |= 1ull << i;
        }
    }
    return FO_OK;
}

static bool is_flag(const char *a, const char *lng, const char *shrt)
{
    return !strcmp(a, lng) || !strcmp(a, shrt);
}

/* Walk argv. apply=false: check the names, find --config, --help and
 * --version. apply=true: set the values (after file and env). */
static fo_err_t walk_argv(load_t *ld, int argc, char **argv, bool apply,
                          const char **config, int *help, int *version)
{
    char where[128];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_flag(a, "--help", "-h")) { *help = 1; continue; }
        if (is_flag(a, "--version", "-V")) { *version = 1; continue; }
        if (is_flag(a, "--check-config", "-t")) { ld->c->check_only = 1; continue; }
        if (strncmp(a, "--", 2) != 0)
            return fail(ld->err, ld->errlen, "unexpected argument \"%s\" (options are --name value)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const opt_t *o = find_opt(name, nl);
        snprintf(where, sizeof where, "--%.*s", (int)(nl < 64 ? nl : 64), name);
        if (!o)
            return unknown(ld->err, ld->errlen, where, name, nl, "--");
        const char *v = eq ? eq + 1 : NULL;
        if (!v && o->type == T_BOOL && (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2)))
            v = "1";                  /* a bare switch: --allow-anonymous */
        if (!v) {
            if (i + 1 >= argc)
                return fail(ld->err, ld->errlen, "%s: missing value", where);
            v = argv[++i];
        }
        if (!apply) {
            if (o->flags & F_NOFILE)
                *config = v;
            continue;
        }
        fo_err_t e = set_from(ld, o, where, v, false);
        if (e != FO_OK)
            return e;
        ld->c->set_by_argv |= 1ull << (o - opts);
    }
    return FO_OK;
}

/* The login options: the one-user shorthand names both, and is not
 * mixed with a users file. */
static fo_err_t check_logins(const fo_config_t *c, char *err, size_t errlen)
{
    if (c->password[0] && !c->user[0])
        return fail(err, errlen, "--password needs --user (the one-user shorthand names both)");
    if (c->user[0] && !c->password[0])
        return fail(err, errlen, "--user %s needs --password", c->user);
    if (c->user[0] && c->users_file[0])
        return fail(err, errlen, "--user and --users are exclusive: put %s in the users file", c->user);
    return FO_OK;
}

static fo_err_t check_cluster(const fo_config_t *c, char *err, size_t errlen)
{
    if (c->cluster_secret[0] && c->cluster_secret_file[0])
        return fail(err, errlen, "--cluster-secret and --cluster-secret-file are exclusive");
    if (c->cluster_tls && (!c->tls_cert[0] || !c->tls_key[0] || (!c->cluster_tls_ca[0] && !c->tls_ca[0])))
        return fail(err, errlen, "--cluster-tls needs --tls-cert, --tls-key and --cluster-tls-ca (or --tls-ca): "
                    "this broker's certificate and the CA its peers' chain to");
    if (strcmp(c->cluster_listen, "off") && !strcmp(c->cluster_listen, c->listen))
        return fail(err, errlen, "--cluster-listen %s is the client listener's address: the cluster "
                    "port is its own (default %d)", c->cluster_listen, FO_PORT_CLUSTER);
    return FO_OK;
}

static fo_err_t check_all(const fo_config_t *c, char *err, size_t errlen)
{
    if (c->idle_timeout_ms <= c->ping_interval_ms) {
        char a[32], b[32];
        fmt_duration(c->idle_timeout_ms, a, sizeof a);
        fmt_duration(c->ping_interval_ms, b, sizeof b);
        return fail(err, errlen, "--idle-timeout (%s) must be greater than --ping-interval (%s)", a, b);
    }
    if (strcmp(c->tls_listen, "off") && (!c->tls_cert[0] || !c->tls_key[0]))
        return fail(err, errlen, "--tls-listen %s needs --tls-cert and --tls-key", c->tls_listen);
    if (c->tls_verify_client != FO_TLS_VERIFY_NONE && !c->tls_ca[0])
        return fail(err, errlen, "--tls-verify-client %s needs --tls-ca (the CA bundle client certificates chain to)",
                    c->tls_verify_client == FO_TLS_VERIFY_REQUIRED ? "required" : "optional");
    if (c->tls_user_from != FO_TLS_USER_OFF && c->tls_verify_client == FO_TLS_VERIFY_NONE)
        return fail(err, errlen, "--tls-user-from %s needs --tls-verify-client optional or required",
                    c->tls_user_from == FO_TLS_USER_CN ? "cn" : "san");
    fo_err_t e = check_logins(c, err, errlen);
    return e ? e : check_cluster(c, err, errlen);
}

/* ------------------------------------------------------------ public */

void fo_config_defaults(fo_config_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].def)    /* cannot fail: test_config checks every default */
            (void)set_value(c, &opts[i], opts[i].name, opts[i].def, NULL, 0);
}

fo_err_t fo_config_set(fo_config_t *c, const char *name, const char *value,
                       char *err, size_t errlen)
{
    const opt_t *o = name ? find_opt(name, strlen(name)) : NULL;
    if (!o && name) {
        char where[80];
        snprintf(where, sizeof where, "--%.64s", name);
        return unknown(err, errlen, where, name, strlen(name), "--");
    }
    if (!o)
        return fail(err, errlen, "--(null): unknown option (see --help)");
    if (!value)
        return fail(err, errlen, "--%s: missing value", name);
    char where[80];
    snprintf(where, sizeof where, "--%s", o->name);
    return set_value(c, o, where, value, err, errlen);
}

fo_err_t fo_config_load(fo_config_t *c, int argc, char **argv, char **envp,
                        FILE *out, int *exit_now, char *err, size_t errlen)
{
    load_t ld = { c, 0, err, errlen };
    const char *config = NULL;
    int help = 0, version = 0;
    fo_err_t e;

    *exit_now = 0;
    if (err && errlen)
        *err = '\0';
    if (!envp)
        envp = environ;
    fo_config_defaults(c);
    if ((e = walk_argv(&ld, argc, argv, false, &config, &help, &version)) != FO_OK)
        return e;
    if (help || version) {
        if (help)
            fo_config_usage(out);
        else
            fprintf(out, "fanoutd %s\n", FO_VERSION);
        *exit_now = 1;
        return FO_OK;
    }
    if (!config)
        config = env_get(envp, "FANOUT_CONFIG");
    if (config && (e = fo_config_set(c, "config", config, err, errlen)) != FO_OK)
        return e;
    if ((e = load_file(&ld, c->config_file)) != FO_OK)
        return e;
    ld.lists_seen = 0;
    if ((e = load_env(&ld, envp, true)) != FO_OK)
        return e;
    ld.lists_seen = 0;
    if ((e = walk_argv(&ld, argc, argv, true, &config, &help, &version)) != FO_OK)
        return e;
    return check_all(c, err, errlen);
}

/* ------------------------------------------------------------ reload */

static uint64_t load_num(const opt_t *o, const fo_config_t *c)
{
    const char *p = (const char *)c + o->off;
    if (o->size == 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    uint32_t v32;
    memcpy(&v32, p, 4);
    return v32;
}

/* o's value in c as --help writes it ("1MiB", "30s", "drop"). */
static void fmt_value(const opt_t *o, const fo_config_t *c, char *out, size_t len)
{
    const char *p = (const char *)c + o->off;
    *out = '\0';
    if (o->flags & F_SECRET) {
        snprintf(out, len, "(hidden)");
        return;
    }
    switch (o->type) {
    case T_STRING:
    case T_HOSTPORT:
        snprintf(out, len, *p ? "%s" : "\"\"", p);
        return;
    case T_LIST:
        for (int i = 0; i < c->mcast_count; i++)
            snprintf(out + strlen(out), len - strlen(out), "%s%s=%s:%u", i ? "," : "",
                     c->mcast[i].filter, c->mcast[i].addr, (unsigned)c->mcast[i].port);
        if (!c->mcast_count)
            snprintf(out, len, "none");
        return;
    case T_ENUM:
        for (const enum_name_t *x = o->names; x->name; x++)
            if (x->value == load_num(o, c)) {
                snprintf(out, len, "%s", x->name);
                return;
            }
        snprintf(out, len, "%" PRIu64, load_num(o, c));
        return;
    default:
        fmt_num(o, load_num(o, c), out, len);
    }
}

static int differs(const opt_t *o, const fo_config_t *a, const fo_config_t *b)
{
    const char *pa = (const char *)a + o->off, *pb = (const char *)b + o->off;
    switch (o->type) {
    case T_STRING:
    case T_HOSTPORT:
        return strcmp(pa, pb) != 0;
    case T_LIST:
        return a->mcast_count != b->mcast_count ||
               memcmp(a->mcast, b->mcast, (size_t)a->mcast_count * sizeof a->mcast[0]) != 0;
    default:
        return load_num(o, a) != load_num(o, b);
    }
}

fo_err_t fo_config_reload_report(fo_config_t *c, char **envp, fo_config_change_cb cb, void *ud,
                                 char *err, size_t errlen)
{
    fo_config_t t, n = *c;
    load_t ld = { &t, 0, err, errlen };
    fo_err_t e;

    if (err && errlen)
        *err = '\0';
    if (!envp)
        envp = environ;
    fo_config_defaults(&t);
    memcpy(t.config_file, c->config_file, sizeof t.config_file);
    if ((e = load_file(&ld, t.config_file)) != FO_OK)
        return e;
    ld.lists_seen = 0;
    if ((e = load_env(&ld, envp, false)) != FO_OK)
        return e;
    for (size_t i = 0; i < NOPTS; i++)
        if ((opts[i].flags & F_RELOAD) && !(c->set_by_argv & (1ull << i)))
            memcpy((char *)&n + opts[i].off, (char *)&t + opts[i].off, opts[i].size);
    if ((e = check_all(&n, err, errlen)) != FO_OK)
        return e;
    for (size_t i = 0; cb && i < NOPTS; i++) {
        const opt_t *o = &opts[i];
        uint64_t bit = 1ull << i;
        if ((o->flags & F_NOFILE) || !differs(o, c, &t))
            continue;
        if ((c->set_by_argv & bit) && !((t.set_by_file | t.set_by_env) & bit))
            continue;            /* the command line's value, and nothing says otherwise */
        char a[512], b[512];
        fmt_value(o, c, a, sizeof a);
        fmt_value(o, &t, b, sizeof b);
        cb(ud, o->name, a, b,
           c->set_by_argv & bit ? FO_CHANGE_ARGV :
           o->flags & F_RELOAD ? FO_CHANGE_APPLIED : FO_CHANGE_RESTART);
    }
    *c = n;
    return FO_OK;
}

fo_err_t fo_config_reload(fo_config_t *c, char **envp, char *err, size_t errlen)
{
    return fo_config_reload_report(c, envp, NULL, NULL, err, errlen);
}

/* ------------------------------------------------------------ warnings, summary */

int fo_config_env_warnings(char **envp, void (*fn)(void *ud, const char *line), void *ud)
{
    /* the fanout CLI's own variables, and the compose file's (docker/) */
    static const char *const theirs[] = {
        "FANOUT_SERVER", "FANOUT_USER", "FANOUT_PASSWORD", "FANOUT_TOKEN",
        "FANOUT_PORT", "FANOUT_HTTP_PORT", "FANOUT_TAG", "FANOUT_BENCH_MSGS", NULL };
    int count = 0;
    if (!envp)
        envp = environ;
    for (char **p = envp; *p; p++) {
        const char *eq = strchr(*p, '=');
        if (strncmp(*p, "FANOUT_", 7) != 0 || !eq)
            continue;
        size_t nl = (size_t)(eq - *p);
        char name[128], env[64];
        if (nl >= sizeof name)
            nl = sizeof name - 1;
        memcpy(name, *p, nl);
        name[nl] = '\0';
        int known = !strncmp(name, "FANOUT_DEMO_", 12);
        for (size_t i = 0; !known && i < NOPTS; i++) {
            env_name(&opts[i], env, sizeof env);
            known = !strcmp(env, name);
        }
        for (size_t i = 0; !known && theirs[i]; i++)
            known = !strcmp(theirs[i], name);
        if (known)
            continue;
        count++;
        if (!fn)
            continue;
        char line[300];
        const opt_t *o = suggest(name + 7, strlen(name + 7));
        if (o) {
            env_name(o, env, sizeof env);
            snprintf(line, sizeof line, "%s is not a fanoutd option (ignored); did you mean %s?",
                     name, env);
        } else {
            snprintf(line, sizeof line, "%s is not a fanoutd option (ignored; see fanoutd --help)",
                     name);
        }
        fn(ud, line);
    }
    return count;
}

void fo_config_summary(const fo_config_t *c, char *out, size_t len)
{
    char threads[32];
    if (c->threads)
        snprintf(threads, sizeof threads, "%d worker%s", c->threads, c->threads == 1 ? "" : "s");
    else
        snprintf(threads, sizeof threads, "a worker per core");
    uint64_t cfg = 0;                        /* --config itself is not counted */
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].flags & F_NOFILE)
            cfg |= 1ull << i;
    int nf = __builtin_popcountll(c->set_by_file), ne = __builtin_popcountll(c->set_by_env & ~cfg);
    int na = __builtin_popcountll(c->set_by_argv & ~cfg);
    char file[600] = "no config file";
    if (c->config_file[0])
        snprintf(file, sizeof file, "%d option%s from %s", nf, nf == 1 ? "" : "s", c->config_file);
    char tls[160] = "";
    if (strcmp(c->tls_listen, "off"))
        snprintf(tls, sizeof tls, ", TLS on %s", c->tls_listen);
    snprintf(out, len, "configuration OK: clients on %s%s, http %s, %s, log-level %s; "
             "%s, %d from the environment, %d from the command line",
             c->listen, tls, c->http, threads,
             c->log_level == FO_LOG_ERROR ? "error" : c->log_level == FO_LOG_WARN ? "warn" :
             c->log_level == FO_LOG_DEBUG ? "debug" : "info",
             file, ne, na);
}

static void metavar(const opt_t *o, char *out, size_t len)
{
    switch (o->type) {
    case T_INT:      snprintf(out, len, "N"); break;
    case T_SIZE:     snprintf(out, len, "SIZE"); break;
    case T_DURATION: snprintf(out, len, "TIME"); break;
    case T_STRING:   snprintf(out, len, o->flags & (F_NOFILE | F_PATH) ? "FILE" : "STR"); break;
    case T_HOSTPORT: snprintf(out, len, "HOST[:PORT]"); break;
    case T_BOOL:     snprintf(out, len, "0|1"); break;
    case T_LIST:     snprintf(out, len, "FILTER=ADDR:PORT"); break;
    case T_ENUM:
        *out = '\0';
        for (const enum_name_t *x = o->names; x->name; x++)
            snprintf(out + strlen(out), len - strlen(out), "%s%s", x == o->names ? "" : "|", x->name);
        break;
    }
}

void fo_config_usage(FILE *out)
{
    fprintf(out,
        "Usage: fanoutd [--option value | --option=value]...\n"
        "fanout's pub/sub broker. Every option is also read from the environment\n"
        "(FANOUT_OPTION, '-' -> '_') and from the --config file (`option value`\n"
        "lines, # comments). Command line > environment > file > default.\n"
        "(*) = reloaded on SIGHUP.\n");
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        fprintf(out, "\n%s:\n", groups[g]);
        for (size_t i = 0; i < NOPTS; i++) {
            const opt_t *o = &opts[i];
            if (strcmp(o->group, groups[g]) != 0)
                continue;
            char mv[64], env[64], lhs[96], lo[32], hi[32], range[80] = "";
            metavar(o, mv, sizeof mv);
            env_name(o, env, sizeof env);
            snprintf(lhs, sizeof lhs, "--%s %s", o->name, mv);
            if (o->type == T_INT || o->type == T_SIZE || o->type == T_DURATION) {
                fmt_num(o, o->min, lo, sizeof lo);
                fmt_num(o, o->max, hi, sizeof hi);
                snprintf(range, sizeof range, ", %s..%s", lo, hi);
            }
            if (strlen(lhs) >= 22)
                fprintf(out, "  %s\n  %-22s %s\n", lhs, "", o->help);
            else
                fprintf(out, "  %-22s %s\n", lhs, o->help);
            fprintf(out, "  %-22s default %s%s, $%s%s\n", "",
                    o->def ? (*o->def ? o->def : "\"\"") : "none", range, env,
                    o->flags & F_RELOAD ? " (*)" : "");
        }
    }
    fprintf(out,
        "\n  --check-config, -t     check the configuration (file, environment,\n"
        "                         command line), print one line and exit: 0 when\n"
        "                         it is valid, 2 (with the error) when not\n"
        "  --hash-password        read a password or token (twice on a terminal, else one\n"
        "                         line of stdin), print its argon2id hash for the users\n"
        "                         file, and exit\n"
        "  --help, -h             print this and exit\n"
        "  --version, -V          print the version and exit\n"
        "\nSizes: 512, 64k, 1MiB, 2G (binary units; k = KiB). Durations: 500ms,\n"
        "10s, 2m, 1h (a bare number is milliseconds). See fanoutd(8), and\n"
        "docs/CONFIG.md in the source tree.\n");
}
