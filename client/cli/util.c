/* util.c -- helpers shared by the `fanout` subcommands (see cli.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

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

fo_client_t *cli_connect(const char *cmd, const char *server, int reconnect,
                         fo_event_cb_t on_event, fo_gap_cb_t on_gap, void *ud)
{
    char name[64], err[256];
    snprintf(name, sizeof name, "fanout-%s", cmd);
    const char *servers[] = { server };
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    o.servers = servers;
    o.nservers = 1;
    o.name = name;
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
