/* stats.c -- `fanout stats`: the broker's metrics as a readable table.
 *
 * Talks to the broker's HTTP port (fanoutd --http, default 127.0.0.1:7401),
 * not its client port: GET /metrics (Prometheus text format), one
 * request, bounded in size (8 MiB) and time. Samples are printed in the
 * broker's order, one "name{labels}  value" row each; --json prints one
 * object mapping each sample name (labels included) to its value.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "../dial.h"
#include "addr.h"
#include "buf.h"
#include "clock.h"
#include "cli.h"

#define MAX_BODY (8u << 20)

static const char help[] =
    "usage: fanout stats [-s HOST:PORT] [--json]\n"
    "\n"
    "Fetch the broker's metrics (http://HOST:PORT/metrics) and print them as\n"
    "a table. HOST:PORT is the broker's --http address, not its client port.\n"
    "\n"
    "  -s, --server HOST:PORT  broker HTTP address (default " CLI_DEFAULT_HTTP ")\n"
    "  -j, --json              one JSON object: {\"metric{labels}\": value, ...}\n"
    "  -t, --timeout SEC       give up after SEC seconds (default 5)\n"
    "  -h, --help              this text\n"
    "\n"
    "Exit status: 0 ok, 1 runtime error (connection, HTTP error), 2 usage.\n";

/* GET /metrics into body (NUL-terminated). 0 ok, else prints and returns 1. */
static int fetch(const char *server, int timeout_ms, fo_buf_t *body)
{
    char err[256];
    int fd;
    fo_addr_t a;
    if (fo_addr_parse(server, FO_ADDR_NO_SCHEME, &a))
        return cli_fail("stats", CLI_RUNTIME, "bad address '%s' (want HOST:PORT)", server);
    const char *host = a.host[0] ? a.host : "127.0.0.1";
    if (fo_dial(server, timeout_ms, &fd, err, sizeof err))
        return cli_fail("stats", CLI_RUNTIME, "%s", err);
    char req[512];
    int n = snprintf(req, sizeof req, "GET /metrics HTTP/1.0\r\nHost: %s\r\n"
                     "Connection: close\r\n\r\n", host);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return cli_fail("stats", CLI_RUNTIME, "sending to %s: %s", server, strerror(errno));
    }
    uint64_t deadline = fo_clock_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        uint64_t now = fo_clock_ms();
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (now >= deadline || poll(&p, 1, (int)(deadline - now)) == 0) {
            close(fd);
            return cli_fail("stats", CLI_RUNTIME, "%s did not answer within %d ms",
                            server, timeout_ms);
        }
        if (fo_buf_reserve(body, 65536)) {
            close(fd);
            return cli_fail("stats", CLI_RUNTIME, "out of memory");
        }
        ssize_t r = recv(fd, fo_buf_tail(body), fo_buf_room(body) - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return cli_fail("stats", CLI_RUNTIME, "reading from %s: %s", server, strerror(errno));
        }
        if (r == 0)
            break;
        fo_buf_commit(body, (size_t)r);
        if (fo_buf_len(body) > MAX_BODY) {
            close(fd);
            return cli_fail("stats", CLI_RUNTIME, "answer from %s is too large", server);
        }
    }
    close(fd);
    *fo_buf_tail(body) = 0;
    return 0;
}

typedef struct sample {
    char *name;      /* points into the body */
    double value;
} sample_t;

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

int cli_stats(int argc, char **argv)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *server = CLI_DEFAULT_HTTP;
    int json = 0;
    double timeout = 5;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":s:jt:h", opts, NULL)) != -1) {
        switch (ch) {
        case 's': server = optarg; break;
        case 'j': json = 1; break;
        case 't':
            if (cli_double(optarg, 0.001, 3600, &timeout))
                return cli_usage("stats", "--timeout wants seconds > 0, not '%s'", optarg);
            break;
        case 'h': fputs(help, stdout); return CLI_OK;
        case ':': return cli_usage("stats", "option '%s' needs a value", argv[optind - 1]);
        default: return cli_usage("stats", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage("stats", "unexpected argument '%s'", argv[optind]);
    fo_buf_t body = FO_BUF_INIT;
    if (fetch(server, (int)(timeout * 1000), &body)) {
        fo_buf_free(&body);
        return CLI_RUNTIME;
    }
    char *text = (char *)fo_buf_head(&body);
    int status = 0;
    char *hdr_end = strstr(text, "\r\n\r\n");
    if (sscanf(text, "HTTP/%*d.%*d %d", &status) != 1 || !hdr_end) {
        fo_buf_free(&body);
        return cli_fail("stats", CLI_RUNTIME, "%s did not answer HTTP (is it the broker's --http port?)", server);
    }
    if (status != 200) {
        fo_buf_free(&body);
        return cli_fail("stats", CLI_RUNTIME, "GET http://%s/metrics: HTTP %d", server, status);
    }
    size_t max = 1;
    for (const char *p = hdr_end; *p; p++)
        max += *p == '\n';
    sample_t *s = calloc(max, sizeof *s);
    if (!s) {
        fo_buf_free(&body);
        return cli_fail("stats", CLI_RUNTIME, "out of memory");
    }
    size_t n = parse(hdr_end + 4, s, max);
    size_t w = 6;
    for (size_t i = 0; i < n; i++)
        if (strlen(s[i].name) > w)
            w = strlen(s[i].name);
    if (json) {
        putchar('{');
        for (size_t i = 0; i < n; i++) {
            if (i)
                putchar(',');
            json_key(s[i].name);
            putchar(':');
            if (isfinite(s[i].value))
                print_value(s[i].value);
            else
                fputs("null", stdout);
        }
        puts("}");
    } else {
        printf("%-*s  %s\n", (int)w, "METRIC", "VALUE");
        for (size_t i = 0; i < n; i++) {
            printf("%-*s  ", (int)w, s[i].name);
            print_value(s[i].value);
            putchar('\n');
        }
    }
    free(s);
    fo_buf_free(&body);
    return CLI_OK;
}
