/* stats.c -- `fanout stats`: watch a broker, as `redis-cli --stat` does.
 *
 * -s is the broker's client port, as for every other command. The metrics
 * are on its --http address, which the broker announces in WELCOME
 * (Welcome.http, docs/PROTOCOL.md §4.2): stats connects to the client
 * port, says HELLO, reads the address from the WELCOME and closes; a
 * wildcard host (0.0.0.0, [::]) means the address it connected to. A
 * broker that announces nothing (--http off, or a fanoutd from before
 * the field) is tried on the same host's port 7401. --http ADDR skips all
 * that.
 *
 * Then GET /metrics (Prometheus text format; with $FANOUT_HTTP_TOKEN as
 * the bearer token when the broker has --http-token), bounded in size
 * (8 MiB) and time, every --interval seconds:
 *   default   one line per interval: messages in and out per second,
 *             bytes in and out per second, connections, subscriptions,
 *             topics, message memory, RSS, CPU, slow-consumer drops/s;
 *             until Ctrl-C or --count lines;
 *   --raw     the metrics text as the broker serves it (once, or --count);
 *   --json    one object per snapshot, {"metric{labels}": value, ...}.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include "../dial.h"
#include "../tls.h"
#include "addr.h"
#include "arena.h"
#include "buf.h"
#include "clock.h"
#include "cli.h"
#include "frame.h"

#define MAX_BODY (8u << 20)

static const char help[] =
    "usage: fanout stats [-s URLS | --http HOST:PORT] [--raw | --json]\n"
    "                    [--interval SEC] [--count N]\n"
    "\n"
    "Watch a broker: one line per interval with messages and bytes in and out\n"
    "per second, connections, subscriptions, topics, memory, CPU and drops,\n"
    "until Ctrl-C (or --count lines). The numbers come from the broker's\n"
    "/metrics, whose address the broker announces when a client connects.\n"
    "\n"
    CLI_SERVER_HELP
    CLI_CONN_HELP
    "      --http HOST:PORT    the broker's --http address, instead of asking\n"
    "                          the broker on -s\n"
    "      --raw               print the metrics as the broker serves them\n"
    "                          (Prometheus text format), once\n"
    "  -j, --json              print one JSON object, {\"metric{labels}\": value}\n"
    "  -i, --interval SEC      seconds between lines (default 1)\n"
    "  -n, --count N           stop after N lines (--raw/--json: N snapshots,\n"
    "                          default 1)\n"
    "  -t, --timeout SEC       give up on a request after SEC seconds (default 5)\n"
    "  -h, --help              this text\n"
    "\n"
    "A broker started with --http-token wants it: export FANOUT_HTTP_TOKEN.\n"
    "Exit status: 0 ok (also on Ctrl-C), 1 runtime error (connection, HTTP\n"
    "error), 2 usage.\n";

/* ------------------------------------------------------------ where the metrics are */

static int is_wildcard(const char *host)
{
    return !*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "[::]");
}

static int is_loopback(const char *host)
{
    return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

/* The numeric address of the socket's peer. */
static void peer_host(int fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *out = '\0';
    if (getpeername(fd, (struct sockaddr *)&ss, &sl))
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)len);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)len);
}

/* The connection to the client port: a socket, TLS on it for tls://. */
typedef struct link {
    int fd;
    fo__tls_ctx_t *ctx;
    fo__tls_t *tls;
} link_t;

/* Dial server (TLS for tls://, with the login and TLS options). 0 ok. */
static int link_open(link_t *l, const char *server, int timeout_ms, char *why, size_t wlen)
{
    fo_addr_t a;
    memset(l, 0, sizeof *l);
    if (fo_addr_parse(server, 0, &a)) {
        snprintf(why, wlen, "bad address '%s'", server);
        return 1;
    }
    if (fo_dial_addr(&a, server, timeout_ms, &l->fd, why, wlen))
        return 1;
    if (a.scheme != FO_SCHEME_TLS)
        return 0;
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    cli_conn_fill("stats", &o);
    char label[FO_ADDR_HOST_MAX + 16] = "tls://";
    fo_addr_format(&a, "127.0.0.1", label + 6, sizeof label - 6);
    if (!fo__tls_ctx_new(&o, &l->ctx, why, wlen) &&
        !fo__tls_connect(l->ctx, l->fd, a.host[0] ? a.host : "127.0.0.1", label,
                         fo_clock_ms() + (uint64_t)timeout_ms, &l->tls, why, wlen))
        return 0;
    fo__tls_ctx_free(l->ctx);
    close(l->fd);
    return 1;
}

static void link_close(link_t *l)
{
    fo__tls_close(l->tls, 1);
    fo__tls_ctx_free(l->ctx);
    close(l->fd);
}

static int link_send(link_t *l, const uint8_t *p, size_t n, uint64_t deadline)
{
    if (!l->tls)
        return send(l->fd, p, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
    while (n) {
        size_t done;
        if (fo__tls_write(l->tls, p, n, deadline, &done))
            return -1;
        p += done;
        n -= done;
    }
    return 0;
}

/* Wait (until deadline) and read some: bytes, 0 at the end, -1 on error,
 * -2 when nothing came in time. */
static ssize_t link_recv(link_t *l, uint8_t *p, size_t n, uint64_t deadline)
{
    for (;;) {
        if (!l->tls || !fo__tls_pending(l->tls)) {
            uint64_t now = fo_clock_ms();
            struct pollfd pf = { .fd = l->fd, .events = l->tls ? fo__tls_events(l->tls) : POLLIN };
            if (now >= deadline || poll(&pf, 1, (int)(deadline - now)) == 0)
                return -2;
        }
        if (!l->tls) {
            ssize_t r = recv(l->fd, p, n, 0);
            if (r < 0 && errno == EINTR)
                continue;
            return r;
        }
        size_t got;
        fo_err_t e = fo__tls_read(l->tls, p, n, &got);
        if (e)
            return e == FO_ERR_CLOSED ? 0 : -1;
        if (got)
            return (ssize_t)got;
    }
}

/* HELLO to server, and the WELCOME's http field into http (NUL when the
 * broker announced none); peer gets the address connected to. 0 ok, else
 * 1 with the reason in why. */
/* The WELCOME (its http) or the ERROR answering our HELLO on l, by the
 * deadline: 0, or 1 with why. */
static int read_welcome(link_t *l, fo_decoder_t *dec, fo_arena_t *arena, const char *server,
                        int timeout_ms, uint64_t deadline, char *http, size_t hlen, char *why,
                        size_t wlen)
{
    int rc = 1;
    char tw[200];
    for (;;) {
        const uint8_t *body;
        size_t len;
        fo_err_t d = fo_decoder_next(dec, &body, &len);
        if (d == FO_OK) {
            Fanout__Frame *in;
            fo_arena_reset(arena);
            if (fo_frame_unpack(body, len, arena, &in)) {
                snprintf(why, wlen, "%s sent a frame that does not unpack", server);
                break;
            }
            if (in->body_case == FANOUT__FRAME__BODY_WELCOME) {
                if (in->welcome->http)
                    snprintf(http, hlen, "%s", in->welcome->http);
                rc = 0;
                break;
            }
            if (in->body_case == FANOUT__FRAME__BODY_ERROR) {
                if (in->error->has_code && in->error->code == FANOUT__ERROR_CODE__ERR_AUTH)
                    snprintf(why, wlen, "the broker refused the login: %s",
                             in->error->text ? in->error->text : "bad credentials");
                else
                    snprintf(why, wlen, "%s refused HELLO: %s", server,
                             in->error->text ? in->error->text : "ERROR");
                break;
            }
            continue;                      /* a PING before WELCOME: not ours to answer */
        }
        if (d != FO_ERR_AGAIN) {
            const uint8_t *p = fo_buf_head(&dec->buf);
            if (fo_buf_len(&dec->buf) >= 5 && !memcmp(p, "HTTP/", 5))
                snprintf(why, wlen, "%s answered in HTTP: -s is the broker's client port (7400 "
                         "by default); give its --http address as --http %s", server, server);
            else
                snprintf(why, wlen, "%s does not speak the fanout protocol", server);
            break;
        }
        if (fo_buf_reserve(&dec->buf, 4096)) {
            snprintf(why, wlen, "out of memory");
            break;
        }
        ssize_t r = link_recv(l, fo_buf_tail(&dec->buf), fo_buf_room(&dec->buf), deadline);
        if (r == -2) {
            snprintf(why, wlen, "%s did not answer HELLO within %d ms", server, timeout_ms);
            break;
        }
        if (r < 0 && l->tls) {
            snprintf(why, wlen, "%s: the TLS session broke: %s", server,
                     fo__tls_why(l->tls, tw, sizeof tw));
            break;
        }
        if (r <= 0) {
            const uint8_t *p = fo_buf_head(&dec->buf);
            if (fo_buf_len(&dec->buf) >= 5 && !memcmp(p, "HTTP/", 5))
                snprintf(why, wlen, "%s answered in HTTP: -s is the broker's client port (7400 "
                         "by default); give its --http address as --http %s", server, server);
            else
                snprintf(why, wlen, "%s closed the connection before WELCOME (-s is the "
                         "broker's client port; its --http address goes to --http)", server);
            break;
        }
        fo_buf_commit(&dec->buf, (size_t)r);
    }
    return rc;
}

static int ask_broker(const char *server, int timeout_ms, char *http, size_t hlen, char *peer,
                      size_t plen, char *why, size_t wlen)
{
    link_t l;
    char tw[200];
    *http = '\0';
    if (link_open(&l, server, timeout_ms, why, wlen))
        return 1;
    peer_host(l.fd, peer, plen);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1;
    h.version = FO_PROTOCOL_VERSION;
    h.client_name = "fanout-stats";
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    cli_conn_fill("stats", &o);
    h.user = (char *)o.user;
    h.password = (char *)o.password;
    h.token = (char *)o.token;
    f.body_case = FANOUT__FRAME__BODY_HELLO;
    f.hello = &h;
    fo_buf_t out = FO_BUF_INIT;
    int rc = 1;
    uint64_t deadline = fo_clock_ms() + (uint64_t)timeout_ms;
    if (fo_frame_append(&out, &f) ||
        link_send(&l, fo_buf_head(&out), fo_buf_len(&out), deadline)) {
        snprintf(why, wlen, "sending HELLO to %s: %s", server,
                 l.tls ? fo__tls_why(l.tls, tw, sizeof tw) : strerror(errno));
        sodium_memzero(fo_buf_head(&out), fo_buf_len(&out));
        fo_buf_free(&out);
        link_close(&l);
        return 1;
    }
    sodium_memzero(fo_buf_head(&out), fo_buf_len(&out));   /* the secrets */
    fo_buf_free(&out);
    fo_decoder_t dec;
    fo_arena_t arena;
    fo_decoder_init(&dec, FO_MAX_FRAME_DEFAULT);
    if (fo_arena_init(&arena, 4096, 1 << 20)) {
        fo_decoder_destroy(&dec);
        link_close(&l);
        snprintf(why, wlen, "out of memory");
        return 1;
    }
    rc = read_welcome(&l, &dec, &arena, server, timeout_ms, deadline, http, hlen, why, wlen);
    fo_arena_destroy(&arena);
    fo_decoder_destroy(&dec);
    link_close(&l);
    return rc;
}

/* The metrics address of the first server that answers; 0 ok, else the
 * exit status (the line printed). *guessed is set when the broker
 * announced none and out is the same host's port 7401; *asked gets the
 * server that answered. */
static int find_http(const cli_servers_t *sv, int timeout_ms, char *out, size_t len,
                     int *guessed, const char **asked)
{
    char why[512] = "";
    for (size_t i = 0; i < sv->n; i++) {
        const char *server = sv->list[i];
        fo_addr_t a;
        if (fo_addr_parse(server, 0, &a))
            continue;                                /* cli_servers checked them */
        char http[300], peer[64];
        if (ask_broker(server, timeout_ms, http, sizeof http, peer, sizeof peer, why, sizeof why))
            continue;
        const char *host = a.host[0] ? a.host : "127.0.0.1";
        *asked = server;
        *guessed = !*http;
        if (!*http) {
            /* nothing announced: --http off, or an older broker; its default */
            fo_addr_t d = { .port = FO_PORT_HTTP };
            snprintf(d.host, sizeof d.host, "%s", peer[0] ? peer : host);
            d.ipv6 = strchr(d.host, ':') != NULL;
            fo_addr_format(&d, "127.0.0.1", out, len);
            return CLI_OK;
        }
        fo_addr_t h;
        if (fo_addr_parse(http, FO_ADDR_NO_SCHEME, &h))
            return cli_fail("stats", CLI_RUNTIME, "%s announced a metrics address '%s' that "
                            "does not parse", server, http);
        if (is_wildcard(h.host)) {
            snprintf(h.host, sizeof h.host, "%s", peer[0] ? peer : host);
            h.ipv6 = strchr(h.host, ':') != NULL;
        } else if (is_loopback(h.host) && peer[0] && !is_loopback(peer)) {
            return cli_fail("stats", CLI_RUNTIME, "the broker at %s serves its metrics on %s, "
                            "which only its own machine can reach: run fanout stats there, or "
                            "start the broker with --http 0.0.0.0:%u", server, http,
                            (unsigned)h.port);
        }
        fo_addr_format(&h, "127.0.0.1", out, len);
        return CLI_OK;
    }
    return cli_fail("stats", CLI_RUNTIME, "%s", why);
}

/* ------------------------------------------------------------ GET /metrics */

/* GET /metrics into body (NUL-terminated); *status gets the HTTP status.
 * 0 ok, else the line is in why. */
/* The whole HTTP answer on fd into body (until the server closes), by
 * the deadline: 0, or 1 with why. */
static int read_answer(int fd, const char *server, int timeout_ms, fo_buf_t *body, char *why,
                       size_t wlen)
{
    uint64_t deadline = fo_clock_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    fo_buf_consume(body, fo_buf_len(body));
    int rc = 1;
    for (;;) {
        uint64_t now = fo_clock_ms();
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (now >= deadline || poll(&p, 1, (int)(deadline - now)) == 0) {
            snprintf(why, wlen, "%s did not answer within %d ms", server, timeout_ms);
            break;
        }
        if (fo_buf_reserve(body, 65536)) {
            snprintf(why, wlen, "out of memory");
            break;
        }
        ssize_t r = recv(fd, fo_buf_tail(body), fo_buf_room(body) - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, wlen, "reading from %s: %s", server, strerror(errno));
            break;
        }
        if (r == 0) {
            rc = 0;
            break;
        }
        fo_buf_commit(body, (size_t)r);
        if (fo_buf_len(body) > MAX_BODY) {
            snprintf(why, wlen, "answer from %s is too large", server);
            break;
        }
    }
    return rc;
}

static int fetch(const char *server, int timeout_ms, fo_buf_t *body, char *why, size_t wlen)
{
    int fd;
    fo_addr_t a;
    if (fo_addr_parse(server, FO_ADDR_NO_SCHEME, &a)) {
        snprintf(why, wlen, "bad --http address '%s' (want HOST:PORT)", server);
        return 1;
    }
    const char *host = a.host[0] ? a.host : "127.0.0.1";
    if (fo_dial(server, timeout_ms, &fd, why, wlen))
        return 1;
    char req[1024], auth[400] = "";
    const char *token = getenv("FANOUT_HTTP_TOKEN");
    if (token && *token && strlen(token) < 256 && !strpbrk(token, "\r\n"))
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    int n = snprintf(req, sizeof req, "GET /metrics HTTP/1.0\r\nHost: %s\r\n%s"
                     "Connection: close\r\n\r\n", host, auth);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        snprintf(why, wlen, "sending to %s: %s", server, strerror(errno));
        close(fd);
        return 1;
    }
    int rc = read_answer(fd, server, timeout_ms, body, why, wlen);
    close(fd);
    if (rc)
        return rc;
    if (fo_buf_reserve(body, 1)) {
        snprintf(why, wlen, "out of memory");
        return 1;
    }
    *fo_buf_tail(body) = 0;
    char *text = (char *)fo_buf_head(body);
    int status = 0;
    if (sscanf(text, "HTTP/%*d.%*d %d", &status) != 1 || !strstr(text, "\r\n\r\n")) {
        snprintf(why, wlen, "%s did not answer HTTP (is it the broker's --http address?)", server);
        return 1;
    }
    if (status == 401) {
        snprintf(why, wlen, "GET http://%s/metrics: HTTP 401: the broker wants its --http-token "
                 "(%s)", server, token && *token ? "FANOUT_HTTP_TOKEN was not accepted"
                                                 : "set FANOUT_HTTP_TOKEN");
        return 1;
    }
    if (status != 200) {
        snprintf(why, wlen, "GET http://%s/metrics: HTTP %d", server, status);
        return 1;
    }
    return 0;
}

typedef struct sample {
    char *name;      /* points into the body */
    double value;
} sample_t;

typedef struct snapshot {
    fo_buf_t body;
    char *text;      /* the exposition, after the headers */
    sample_t *s;
    size_t n;
    uint64_t t_ns;   /* when it was taken (CLOCK_MONOTONIC) */
} snapshot_t;

/* Cut the Prometheus text into samples (in place). Returns the count. */
static size_t parse(char *text, sample_t *out, size_t max)
{
    size_t n = 0;
    for (char *line = strtok(text, "\n"); line && n < max; line = strtok(NULL, "\n")) {
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r')
            line[--len] = 0;
        if (!len || line[0] == '#')
            continue;
        /* the value is the last space-separated field (labels may hold
         * spaces only inside quotes; values never do) */
        char *sp = strrchr(line, ' ');
        if (!sp)
            continue;
        char *end;
        double v = strtod(sp + 1, &end);
        if (end == sp + 1 || *end)
            continue;
        while (sp > line && sp[-1] == ' ')
            sp--;
        *sp = 0;
        out[n].name = line;
        out[n].value = v;
        n++;
    }
    return n;
}

/* Fetch and cut one snapshot; 0 ok, else the reason is in why. */
static int take(const char *http, int timeout_ms, snapshot_t *sn, int keep_text,
                char *why, size_t wlen)
{
    if (fetch(http, timeout_ms, &sn->body, why, wlen))
        return 1;
    sn->t_ns = fo_clock_ns();
    sn->text = strstr((char *)fo_buf_head(&sn->body), "\r\n\r\n") + 4;
    if (keep_text)
        return 0;
    size_t max = 1;
    for (const char *p = sn->text; *p; p++)
        max += *p == '\n';
    free(sn->s);
    if (!(sn->s = calloc(max, sizeof *sn->s))) {
        snprintf(why, wlen, "out of memory");
        return 1;
    }
    sn->n = parse(sn->text, sn->s, max);
    return 0;
}

static double value(const snapshot_t *sn, const char *name)
{
    for (size_t i = 0; i < sn->n; i++)
        if (!strcmp(sn->s[i].name, name))
            return sn->s[i].value;
    return NAN;
}

/* ------------------------------------------------------------ output */

static void print_value(double v)
{
    if (isfinite(v) && v == floor(v) && fabs(v) < 1e18)
        printf("%.0f", v);
    else
        printf("%g", v);
}

static void json_key(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

static void print_json(const snapshot_t *sn)
{
    putchar('{');
    for (size_t i = 0; i < sn->n; i++) {
        if (i)
            putchar(',');
        json_key(sn->s[i].name);
        putchar(':');
        if (isfinite(sn->s[i].value))
            print_value(sn->s[i].value);
        else
            fputs("null", stdout);
    }
    puts("}");
}

/* 950, 12.3k, 1.20M, 3.4G: a rate in few characters. */
static const char *si(double v, char *buf, size_t len)
{
    if (!isfinite(v))
        snprintf(buf, len, "-");
    else if (v < 999.5)
        snprintf(buf, len, "%.0f", v);
    else if (v < 9999.5)
        snprintf(buf, len, "%.2fk", v / 1e3);
    else if (v < 999.5e3)
        snprintf(buf, len, "%.1fk", v / 1e3);
    else if (v < 9.9995e6)
        snprintf(buf, len, "%.2fM", v / 1e6);
    else if (v < 999.5e6)
        snprintf(buf, len, "%.1fM", v / 1e6);
    else
        snprintf(buf, len, "%.2fG", v / 1e9);
    return buf;
}

static const char *mem(double v, char *buf, size_t len)
{
    if (!isfinite(v) || v < 0)
        return snprintf(buf, len, "-"), buf;
    return cli_size((uint64_t)v, buf, len);
}

static const char *count(double v, char *buf, size_t len)
{
    if (!isfinite(v))
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.0f", v);
    return buf;
}

static void header(void)
{
    printf("%-8s %9s %9s %9s %9s %6s %6s %6s %10s %10s %5s %7s\n", "time", "msgs in/s",
           "out/s", "B in/s", "B out/s", "conns", "subs", "topics", "memory", "rss", "cpu",
           "drops/s");
}

/* Per second between a and b, NAN when the counter went back (restart). */
static double rate(const snapshot_t *a, const snapshot_t *b, const char *name)
{
    double x = value(a, name), y = value(b, name), dt = (double)(b->t_ns - a->t_ns) / 1e9;
    if (!isfinite(x) || !isfinite(y) || y < x || dt <= 0)
        return NAN;
    return (y - x) / dt;
}

static void summary_line(const snapshot_t *a, const snapshot_t *b)
{
    char t[16], c[12][32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(t, sizeof t, "%H:%M:%S", &tm);
    double cpu = rate(a, b, "process_cpu_seconds_total");
    char cpus[16];
    if (isfinite(cpu))
        snprintf(cpus, sizeof cpus, "%.0f%%", cpu * 100);
    else
        snprintf(cpus, sizeof cpus, "-");
    printf("%-8s %9s %9s %9s %9s %6s %6s %6s %10s %10s %5s %7s\n", t,
           si(rate(a, b, "fanout_messages_in_total"), c[0], 32),
           si(rate(a, b, "fanout_messages_out_total"), c[1], 32),
           si(rate(a, b, "fanout_bytes_in_total"), c[2], 32),
           si(rate(a, b, "fanout_bytes_out_total"), c[3], 32),
           count(value(b, "fanout_connections"), c[4], 32),
           count(value(b, "fanout_subscriptions"), c[5], 32),
           count(value(b, "fanout_topics"), c[6], 32),
           mem(value(b, "fanout_memory_bytes"), c[7], 32),
           mem(value(b, "process_resident_memory_bytes"), c[8], 32),
           cpus, si(rate(a, b, "fanout_drops_slow_consumer_total"), c[9], 32));
}

/* The sum of every sample of a labelled family ("NAME{...}"). */
static double family_sum(const snapshot_t *sn, const char *name)
{
    size_t nl = strlen(name);
    double sum = 0;
    int any = 0;
    for (size_t i = 0; i < sn->n; i++)
        if (!strncmp(sn->s[i].name, name, nl) && sn->s[i].name[nl] == '{') {
            sum += sn->s[i].value;
            any = 1;
        }
    return any ? sum : NAN;
}

/* A broker in a cluster (docs/CLUSTER.md): one more line under the
 * summary -- members, links, topics homed here, and what crosses links. */
static void cluster_line(const snapshot_t *a, const snapshot_t *b)
{
    if (!isfinite(value(b, "fanout_cluster_members")))
        return;                       /* a single broker: nothing to say */
    char c[6][32];
    double dt = (double)(b->t_ns - a->t_ns) / 1e9;
    double out_a = family_sum(a, "fanout_cluster_link_messages_out_total");
    double out_b = family_sum(b, "fanout_cluster_link_messages_out_total");
    double link_rate = isfinite(out_a) && isfinite(out_b) && out_b >= out_a && dt > 0 ? (out_b - out_a) / dt : NAN;
    printf("%-8s cluster: %s members, %s links up, %s topics homed here, forwards %s/s, link msgs %s/s\n", "",
           count(value(b, "fanout_cluster_members"), c[0], 32),
           count(value(b, "fanout_cluster_links_up"), c[1], 32),
           count(value(b, "fanout_cluster_topics_homed"), c[2], 32),
           si(rate(a, b, "fanout_cluster_forwarded_total"), c[3], 32), si(link_rate, c[4], 32));
}

/* ------------------------------------------------------------ main */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Sleep until t_ns (CLOCK_MONOTONIC), or until Ctrl-C. */
static void sleep_until(uint64_t t_ns)
{
    while (!interrupted) {
        uint64_t now = fo_clock_ns();
        if (now >= t_ns)
            return;
        uint64_t d = t_ns - now;
        struct timespec ts = { (time_t)(d / 1000000000u), (long)(d % 1000000000u) };
        nanosleep(&ts, NULL);       /* EINTR on Ctrl-C: the loop checks */
    }
}

typedef struct stats_args {
    const char *server, *http;
    int raw, json;
    double interval, timeout;
    uint64_t count;
    int have_count;
} stats_args_t;

static int parse_args(stats_args_t *a, int argc, char **argv)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, 's' },
        { "http", required_argument, NULL, 'H' },
        { "raw", no_argument, NULL, 'R' },
        { "json", no_argument, NULL, 'j' },
        { "interval", required_argument, NULL, 'i' },
        { "count", required_argument, NULL, 'n' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        CLI_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":s:ji:n:t:h", opts, NULL)) != -1) {
        if (cli_conn_opt(ch, optarg))
            continue;              /* --user, --tls-ca, ... */
        switch (ch) {
        case 's': a->server = optarg; break;
        case 'H': a->http = optarg; break;
        case 'R': a->raw = 1; break;
        case 'j': a->json = 1; break;
        case 'i':
            if (cli_double(optarg, 0.01, 86400, &a->interval))
                return cli_usage("stats", "--interval wants seconds >= 0.01, not '%s'", optarg);
            break;
        case 'n':
            if (cli_u64(optarg, 1, UINT64_MAX, &a->count))
                return cli_usage("stats", "--count wants a positive integer, not '%s'", optarg);
            a->have_count = 1;
            break;
        case 't':
            if (cli_double(optarg, 0.001, 3600, &a->timeout))
                return cli_usage("stats", "--timeout wants seconds > 0, not '%s'", optarg);
            break;
        case 'h': fputs(help, stdout); return -1;
        case ':': return cli_usage("stats", "option '%s' needs a value", argv[optind - 1]);
        default: return cli_usage("stats", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage("stats", "unexpected argument '%s'", argv[optind]);
    if (a->raw && a->json)
        return cli_usage("stats", "give --raw or --json, not both");
    if (a->server && a->http)
        return cli_usage("stats", "give -s (the client port) or --http (the metrics port), "
                         "not both");
    fo_addr_t h;
    if (a->http && fo_addr_parse(a->http, FO_ADDR_NO_SCHEME, &h))
        return cli_usage("stats", "--http: bad address '%s' (want HOST[:PORT])", a->http);
    return 0;
}

static int watch(const stats_args_t *a, const char *http, int tmo)
{
    char why[512];
    snapshot_t sn[2] = { { FO_BUF_INIT, NULL, NULL, 0, 0 }, { FO_BUF_INIT, NULL, NULL, 0, 0 } };
    int rc = CLI_OK, tty = isatty(1);
    uint64_t lines = 0, step = (uint64_t)(a->interval * 1e9);
    if (take(http, tmo, &sn[0], 0, why, sizeof why)) {
        rc = cli_fail("stats", CLI_RUNTIME, "%s", why);
        goto out;
    }
    header();
    fflush(stdout);
    for (uint64_t next = sn[0].t_ns + step; !a->have_count || lines < a->count; next += step) {
        sleep_until(next);
        if (interrupted)
            break;
        snapshot_t *prev = &sn[lines % 2], *cur = &sn[(lines + 1) % 2];
        if (take(http, tmo, cur, 0, why, sizeof why)) {
            rc = cli_fail("stats", CLI_RUNTIME, "%s", why);
            break;
        }
        if (tty && lines && lines % 20 == 0)
            header();
        summary_line(prev, cur);
        cluster_line(prev, cur);
        fflush(stdout);
        lines++;
        if (cur->t_ns > next + step)
            next = cur->t_ns;       /* a slow scrape: do not try to catch up */
    }
out:
    for (int i = 0; i < 2; i++) {
        fo_buf_free(&sn[i].body);
        free(sn[i].s);
    }
    return rc;
}

static int snapshots(const stats_args_t *a, const char *http, int tmo)
{
    char why[512];
    snapshot_t sn = { FO_BUF_INIT, NULL, NULL, 0, 0 };
    uint64_t n = a->have_count ? a->count : 1, step = (uint64_t)(a->interval * 1e9);
    int rc = CLI_OK;
    for (uint64_t i = 0, next = fo_clock_ns(); i < n && !interrupted; i++, next += step) {
        if (i)
            sleep_until(next);
        if (interrupted)
            break;
        if (take(http, tmo, &sn, a->raw, why, sizeof why)) {
            rc = cli_fail("stats", CLI_RUNTIME, "%s", why);
            break;
        }
        if (a->raw)
            fputs(sn.text, stdout);
        else
            print_json(&sn);
        fflush(stdout);
    }
    fo_buf_free(&sn.body);
    free(sn.s);
    return rc;
}

int cli_stats(int argc, char **argv)
{
    stats_args_t a = { .interval = 1, .timeout = 5 };
    int rc = parse_args(&a, argc, argv);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    int tmo = (int)(a.timeout * 1000);
    char http[320];
    if (a.http) {
        snprintf(http, sizeof http, "%s", a.http);
        fo_addr_t h;
        if (!fo_addr_parse(a.http, FO_ADDR_NO_SCHEME, &h) && !h.has_port) {
            h.port = FO_PORT_HTTP;           /* --http HOST: the --http option's port */
            fo_addr_format(&h, "127.0.0.1", http, sizeof http);
        }
    } else {
        cli_servers_t sv;
        if ((rc = cli_servers("stats", a.server, &sv)) != CLI_OK)
            return rc;
        int guessed = 0;
        const char *asked = NULL;
        rc = find_http(&sv, tmo, http, sizeof http, &guessed, &asked);
        if (rc == CLI_OK && guessed) {
            /* say why if the guess is wrong, not merely that it is */
            char why[512];
            fo_buf_t probe = FO_BUF_INIT;
            if (fetch(http, tmo, &probe, why, sizeof why))
                rc = cli_fail("stats", CLI_RUNTIME, "the broker at %s does not announce its "
                              "metrics address (--http off, or an older fanoutd) and %s "
                              "does not serve them (%s): give --http HOST:PORT", asked, http, why);
            fo_buf_free(&probe);
        }
        cli_servers_free(&sv);
        if (rc)
            return rc;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;           /* no SA_RESTART: the sleep ends */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (a.raw || a.json)
        return snapshots(&a, http, tmo);
    return watch(&a, http, tmo);
}
