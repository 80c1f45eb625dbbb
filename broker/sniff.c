/* sniff.c -- what a non-fanout client sent (see sniff.h). */
#include "sniff.h"

#include <stdio.h>
#include <string.h>

const char *fo_sniff_foreign(const uint8_t *p, size_t n)
{
    static const char methods[][5] = { "GET ", "HEAD", "POST", "PUT ", "DELE", "OPTI",
                                       "PATC", "CONN", "TRAC", "PRI " };
    if (!p)
        return NULL;
    if (n >= 3 && p[0] == 0x16 && p[1] == 0x03 && p[2] <= 0x04)
        return "TLS";
    if (n < 4)
        return NULL;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (!memcmp(p, methods[i], 4))
            return "HTTP";
    return NULL;
}

static int http_off(const char *http)
{
    return !http || !*http || !strcmp(http, "off");
}

int fo_sniff_message(char *out, size_t len, const char *what, const char *http)
{
    if (what && !strcmp(what, "HTTP")) {
        if (http_off(http))
            return snprintf(out, len, "looks like HTTP; this is the client port, and --http is off");
        return snprintf(out, len, "looks like HTTP; metrics are on --http %s", http);
    }
    if (what && !strcmp(what, "TLS"))
        return snprintf(out, len, "looks like a TLS handshake on the plain client port");
    return snprintf(out, len, "not the fanout protocol");
}

int fo_sniff_http_reply(char *out, size_t len, const char *http)
{
    char body[300];
    int bl;
    if (http_off(http))
        bl = snprintf(body, sizeof body,
                      "This is fanoutd's client port: it speaks the fanout protocol, not HTTP.\n"
                      "The broker's HTTP server (/metrics, /healthz) is off (--http off).\n");
    else
        bl = snprintf(body, sizeof body,
                      "This is fanoutd's client port: it speaks the fanout protocol, not HTTP.\n"
                      "/metrics and /healthz are on --http %s\n", http);
    if (bl < 0)
        return bl;
    if ((size_t)bl >= sizeof body)
        bl = (int)sizeof body - 1;
    return snprintf(out, len,
                    "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    "Content-Length: %d\r\nConnection: close\r\n\r\n%.*s", bl, bl, body);
}
