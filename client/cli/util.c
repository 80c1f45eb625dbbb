/* util.c -- helpers shared by the `fanout` subcommands (see cli.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "addr.h"
#include "cli.h"
#include "frame.h"

int cli_fail(const char *cmd, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fanout %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, cmd ? "fanout %s: " : "fanout: ", cmd);
    vfprintf(stderr, fmt, ap);
    if (cmd)
        fprintf(stderr, " (see 'fanout %s --help')\n", cmd);
    else
        fprintf(stderr, " (see 'fanout --help')\n");
    va_end(ap);
    return CLI_USAGE;
}

int cli_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_double(const char *s, double min, double max, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_servers(const char *cmd, const char *arg, cli_servers_t *out)
{
    memset(out, 0, sizeof *out);
    const char *env = getenv("FANOUT_SERVER");
    const char *v = arg;
    out->from = "-s";
    if (!v && env && *env) {
        v = env;
        out->from = "FANOUT_SERVER";
    } else if (!v) {
        v = CLI_DEFAULT_SERVER;
        out->from = "default";
    }
    if (!(out->buf = strdup(v)))
        return cli_fail(cmd, CLI_RUNTIME, "out of memory");
    for (char *p = out->buf, *next; p; p = next) {
        next = strchr(p, ',');
        if (next)
            *next++ = '\0';
        while (*p == ' ')
            p++;
        size_t l = strlen(p);
        while (l && p[l - 1] == ' ')
            p[--l] = '\0';
        fo_addr_t a;
        if (!*p || fo_addr_parse(p, 0, &a) != FO_OK) {
            int rc = cli_usage(cmd, "%s: bad address '%s' (want HOST, HOST:PORT, fanout://HOST[:PORT] "
                               "or tls://HOST[:PORT], comma-separated)", out->from, p);
            cli_servers_free(out);
            return rc;
        }
        if (out->n == CLI_MAX_SERVERS) {
            cli_servers_free(out);
            return cli_usage(cmd, "%s: more than %d servers", out->from, CLI_MAX_SERVERS);
        }
        out->list[out->n++] = p;
    }
    return CLI_OK;
}

void cli_servers_free(cli_servers_t *s)
{
    free(s->buf);
    s->buf = NULL;
    s->n = 0;
}

const char *cli_size(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    unsigned u = 0;
    double v = (double)n;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)n);
    else if (v == floor(v))
        snprintf(buf, len, "%.0f %s", v, units[u]);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

const char *cli_too_large(fo_client_t *c, const char *topic, size_t len, char *buf, size_t blen)
{
    char lim[32];
    uint32_t max = fo_client_max_frame(c);
    cli_size(max, lim, sizeof lim);
    size_t framed = fo_publish_frame_size(strlen(topic), len, 1) - FO_FRAME_HDR;
    if (len > max)
        snprintf(buf, blen, "%zu B is over the broker's max-frame of %s", len, lim);
    else
        snprintf(buf, blen, "%zu B (%zu B with the topic and framing) is over the broker's "
                 "max-frame of %s", len, framed, lim);
    return buf;
}

/* The login and TLS options given (NULL: not given); one command a process. */
static struct {
    char *user, *password, *token;   /* copies (the secrets blanked in argv) */
    const char *ca, *cert, *key;
    int insecure;
} conn_args;

static char *take_secret(char *arg)
{
    char *copy = strdup(arg);
    if (copy)                        /* out of memory: left visible, still used */
        memset(arg, 'x', strlen(arg));
    return copy ? copy : arg;
}

int cli_conn_opt(int ch, char *optarg)
{
    switch (ch) {
    case CLI_OPT_USER: conn_args.user = optarg; return 1;
    case CLI_OPT_PASSWORD: conn_args.password = take_secret(optarg); return 1;
    case CLI_OPT_TOKEN: conn_args.token = take_secret(optarg); return 1;
    case CLI_OPT_TLS_CA: conn_args.ca = optarg; return 1;
    case CLI_OPT_TLS_CERT: conn_args.cert = optarg; return 1;
    case CLI_OPT_TLS_KEY: conn_args.key = optarg; return 1;
    case CLI_OPT_TLS_INSECURE: conn_args.insecure = 1; return 1;
    default: return 0;
    }
}

/* The option's value, else the environment's (unset or empty: NULL). */
static const char *arg_or_env(const char *arg, const char *env)
{
    if (arg)
        return *arg ? arg : NULL;
    const char *v = getenv(env);
    return v && *v ? v : NULL;
}

void cli_conn_fill(const char *cmd, fo_client_opts_t *o)
{
    o->user = arg_or_env(conn_args.user, "FANOUT_USER");
    o->password = arg_or_env(conn_args.password, "FANOUT_PASSWORD");
    o->token = arg_or_env(conn_args.token, "FANOUT_TOKEN");
    o->tls_ca_file = arg_or_env(conn_args.ca, "FANOUT_TLS_CA");
    o->tls_cert_file = arg_or_env(conn_args.cert, "FANOUT_TLS_CERT");
    o->tls_key_file = arg_or_env(conn_args.key, "FANOUT_TLS_KEY");
    o->tls_insecure_skip_verify = conn_args.insecure;
    static int warned;
    if (conn_args.insecure && !warned++)
        fprintf(stderr, "fanout %s: warning: --tls-insecure: the broker's certificate is not "
                "verified; anyone on the path can read and change this connection\n", cmd);
}

fo_client_t *cli_connect(const char *cmd, const cli_servers_t *servers, int reconnect,
                         fo_event_cb_t on_event, fo_gap_cb_t on_gap, void *ud)
{
    char name[64], err[256];
    snprintf(name, sizeof name, "fanout-%s", cmd);
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    o.servers = servers->list;
    o.nservers = servers->n;
    o.name = name;
    cli_conn_fill(cmd, &o);
    o.max_reconnects = reconnect ? -1 : 0;
    o.on_event = on_event;
    o.on_gap = on_gap;
    o.ud = ud;
    fo_client_t *c = NULL;
    if (fo_client_connect(&o, &c, err, sizeof err)) {
        cli_fail(cmd, CLI_RUNTIME, "%s", err);
        return NULL;
    }
    return c;
}

const char *cli_why(fo_client_t *c, fo_err_t err, char *buf)
{
    if (c) {
        fo_client_last_error(c, buf, 256);
        if (*buf)
            return buf;
    }
    return fo_strerror(err);
}

const char *cli_send_why(fo_client_t *c, fo_err_t err, const char *topic, size_t len, char *buf)
{
    return err == FO_ERR_RANGE ? cli_too_large(c, topic, len, buf, 256) : cli_why(c, err, buf);
}

int cli_slow(const char *s, fo_slow_t *out)
{
    static const struct { const char *name; fo_slow_t v; } names[] = {
        { "drop", FO_SLOW_DROP }, { "disconnect", FO_SLOW_DISCONNECT }, { "block", FO_SLOW_BLOCK },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i].name)) {
            *out = names[i].v;
            return 0;
        }
    return -1;
}
