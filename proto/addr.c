/* addr.c -- lexing "HOST:PORT" and fanout:// / tls:// URLs (see addr.h). */
#include <stdio.h>
#include <string.h>
#include "addr.h"

uint16_t fo_addr_default_port(fo_scheme_t scheme)
{
    return scheme == FO_SCHEME_TLS ? FO_PORT_TLS : FO_PORT_CLIENT;
}

/* "fanout://" or "tls://" at the front: the scheme and what follows. */
static const char *strip_scheme(const char *s, fo_scheme_t *scheme)
{
    static const struct { const char *prefix; fo_scheme_t scheme; } known[] = {
        { "fanout://", FO_SCHEME_FANOUT }, { "tls://", FO_SCHEME_TLS } };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        size_t n = strlen(known[i].prefix);
        if (!strncmp(s, known[i].prefix, n)) {
            *scheme = known[i].scheme;
            return s + n;
        }
    }
    *scheme = FO_SCHEME_NONE;
    return s;
}

/* Digits only, 0..65535. */
static int parse_port(const char *p, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int host_byte_ok(char ch)
{
    unsigned char c = (unsigned char)ch;
    return c > ' ' && c != 0x7f && c != '/' && c != '[' && c != ']' && c != '@' &&
           c != '?' && c != '#';
}

/* Hex digits, ':' and '.' (an embedded IPv4), then optionally a zone
 * "%eth0". Resolution decides the rest. */
static int v6_ok(const char *h, size_t n)
{
    size_t i = 0;
    for (; i < n && h[i] != '%'; i++)
        if (!(h[i] == ':' || h[i] == '.' || (h[i] >= '0' && h[i] <= '9') ||
              (h[i] >= 'a' && h[i] <= 'f') || (h[i] >= 'A' && h[i] <= 'F')))
            return 0;
    if (i < n && i + 1 == n)
        return 0;                          /* "%" with no zone */
    for (i++; i < n; i++)
        if (!host_byte_ok(h[i]) || h[i] == '%' || h[i] == ':')
            return 0;
    return 1;
}

/* Split p[0..n) into host and port text: "[v6]" or a plain host, then
 * ":PORT" or nothing (*port = NULL). */
static fo_err_t split_host(const char *p, size_t n, fo_addr_t *out, const char **host,
                           size_t *hl, const char **port)
{
    *port = NULL;
    if (n && *p == '[') {
        const char *rb = memchr(p, ']', n);
        if (!rb || rb == p + 1)
            return FO_ERR_ADDR;
        *host = p + 1;
        *hl = (size_t)(rb - *host);
        out->ipv6 = 1;
        if (rb + 1 < p + n) {
            if (rb[1] != ':')
                return FO_ERR_ADDR;
            *port = rb + 2;
        }
        return v6_ok(*host, *hl) ? FO_OK : FO_ERR_ADDR;
    }
    const char *colon = memchr(p, ':', n);
    *host = p;
    *hl = colon ? (size_t)(colon - p) : n;
    if (colon) {
        if (memchr(colon + 1, ':', n - *hl - 1))
            return FO_ERR_ADDR;            /* a bare IPv6 literal needs brackets */
        *port = colon + 1;
    }
    for (size_t i = 0; i < *hl; i++)
        if (!host_byte_ok(p[i]))
            return FO_ERR_ADDR;
    return FO_OK;
}

fo_err_t fo_addr_parse(const char *s, unsigned flags, fo_addr_t *out)
{
    if (!s || !out)
        return FO_ERR_ADDR;
    memset(out, 0, sizeof *out);
    const char *p = strip_scheme(s, &out->scheme);
    if (out->scheme != FO_SCHEME_NONE && (flags & FO_ADDR_NO_SCHEME))
        return FO_ERR_ADDR;
    size_t n = strlen(p), hl;
    if (out->scheme != FO_SCHEME_NONE && n && p[n - 1] == '/')
        n--;                               /* "tls://host:7443/" */
    const char *host, *port;
    if (split_host(p, n, out, &host, &hl, &port))
        return FO_ERR_ADDR;
    if (hl > FO_ADDR_HOST_MAX)
        return FO_ERR_RANGE;
    if (hl == 0 && (!port || out->scheme != FO_SCHEME_NONE))
        return FO_ERR_ADDR;                /* nothing at all, or a URL without host */
    memcpy(out->host, host, hl);
    out->host[hl] = '\0';
    if (!port) {
        out->port = fo_addr_default_port(out->scheme);
        return flags & FO_ADDR_NEED_PORT ? FO_ERR_ADDR : FO_OK;
    }
    if (parse_port(port, n - (size_t)(port - p), &out->port))
        return FO_ERR_ADDR;
    if (out->port == 0 && !(flags & FO_ADDR_LISTEN))
        return FO_ERR_ADDR;                /* port 0 = any: only to listen */
    out->has_port = 1;
    return FO_OK;
}

int fo_addr_format(const fo_addr_t *a, const char *empty_host, char *buf, size_t len)
{
    const char *h = a->host[0] ? a->host : (empty_host ? empty_host : "");
    int v6 = a->ipv6 || strchr(h, ':') != NULL;
    int n = snprintf(buf, len, v6 ? "[%s]:%u" : "%s:%u", h, (unsigned)a->port);
    return n < 0 || (size_t)n >= len ? -1 : n;
}
