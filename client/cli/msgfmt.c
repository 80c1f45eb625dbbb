/* msgfmt.c -- how the `fanout` commands show a message's headers and
 * reply address, and read -H K:V (see cli.h).
 *
 * Verbose form (sub -v, reply -v, request -v), one message per line:
 *
 *     TOPIC [k1=v1 k2=v2] payload
 *
 * the bracket only when the message has headers. Keys and values are
 * printed as they are, except bytes outside 0x21..0x7e and the four
 * delimiters '=', ']', ' ' and '\' inside them, which become \xHH: the
 * line stays one line and can be split again. The payload follows as
 * published, as without -v.
 *
 * JSON (sub --json): "reply" (a string) and "headers" (an array of
 * {"key": ..., "value": ...}, or "value_base64" for a value that is not
 * UTF-8), each only when the message has it, before "payload".
 */
#include <stdio.h>
#include <string.h>
#include "cli.h"

int cli_utf8_valid(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            k = 1;
        else if (c >= 0xe0 && c <= 0xef)
            k = 2;
        else if (c >= 0xf0 && c <= 0xf4)
            k = 3;
        else
            return 0;
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++)
            if ((p[i + j] & 0xc0) != 0x80)
                return 0;
        /* no overlong forms, no surrogates, nothing above U+10FFFF */
        unsigned d = p[i + 1];
        if ((c == 0xe0 && d < 0xa0) || (c == 0xed && d > 0x9f) || (c == 0xf0 && d < 0x90) ||
            (c == 0xf4 && d > 0x8f))
            return 0;
        i += k + 1;
    }
    return 1;
}

void cli_json_str(FILE *o, const char *p, size_t n)
{
    fputc('"', o);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            fprintf(o, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", o);
        else if (c == '\t')
            fputs("\\t", o);
        else if (c == '\r')
            fputs("\\r", o);
        else if (c < 0x20 || c == 0x7f)
            fprintf(o, "\\u%04x", c);
        else
            fputc(c, o);
    }
    fputc('"', o);
}

void cli_base64(FILE *o, const unsigned char *p, size_t n)
{
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', o);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        fputc(t[v >> 18], o);
        fputc(t[(v >> 12) & 63], o);
        fputc(i + 1 < n ? t[(v >> 6) & 63] : '=', o);
        fputc(i + 2 < n ? t[v & 63] : '=', o);
    }
    fputc('"', o);
}

/* A key or value of the verbose form, delimiters escaped. */
static void escaped(FILE *o, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned c = p[i];
        if (c <= 0x20 || c >= 0x7f || c == '=' || c == ']' || c == '\\')
            fprintf(o, "\\x%02x", c);
        else
            fputc((int)c, o);
    }
}

void cli_print_verbose(FILE *o, const fo_msg_t *m, int with_topic)
{
    if (with_topic) {
        fwrite(m->topic, 1, m->topic_len, o);
        fputc(' ', o);
    }
    if (m->nheaders) {
        fputc('[', o);
        for (size_t i = 0; i < m->nheaders; i++) {
            if (i)
                fputc(' ', o);
            escaped(o, (const unsigned char *)m->headers[i].key, strlen(m->headers[i].key));
            fputc('=', o);
            escaped(o, m->headers[i].value, m->headers[i].value_len);
        }
        fputs("] ", o);
    }
    fwrite(m->payload, 1, m->payload_len, o);
    fputc('\n', o);
}

void cli_json_extras(FILE *o, const fo_msg_t *m)
{
    if (m->reply) {
        fputs("\"reply\":", o);
        cli_json_str(o, m->reply, strlen(m->reply));
        fputc(',', o);
    }
    if (!m->nheaders)
        return;
    fputs("\"headers\":[", o);
    for (size_t i = 0; i < m->nheaders; i++) {
        const fo_header_t *h = &m->headers[i];
        fputs(i ? ",{\"key\":" : "{\"key\":", o);
        cli_json_str(o, h->key, strlen(h->key));
        if (cli_utf8_valid(h->value, h->value_len)) {
            fputs(",\"value\":", o);
            cli_json_str(o, h->value, h->value_len);
        } else {
            fputs(",\"value_base64\":", o);
            cli_base64(o, h->value, h->value_len);
        }
        fputc('}', o);
    }
    fputs("],", o);
}

int cli_header_arg(const char *cmd, const char *arg, cli_headers_t *h)
{
    const char *colon = strchr(arg, ':');
    if (!colon)
        return cli_usage(cmd, "-H wants KEY:VALUE, not '%s'", arg);
    size_t kl = (size_t)(colon - arg);
    if (h->n == FO_HEADERS_MAX)
        return cli_usage(cmd, "at most %d headers (-H)", FO_HEADERS_MAX);
    /* the library checks keys too, but a bad one is a usage mistake here */
    int ok = kl >= 1 && kl <= FO_HEADER_KEY_MAX;
    for (size_t i = 0; ok && i < kl; i++)
        ok = (unsigned char)arg[i] > 0x20 && (unsigned char)arg[i] < 0x7f;
    if (!ok)
        return cli_usage(cmd, "-H '%s': a key is 1..%d printable characters, no spaces",
                         arg, FO_HEADER_KEY_MAX);
    memcpy(h->keys[h->n], arg, kl);
    h->keys[h->n][kl] = 0;
    h->h[h->n] = (fo_header_t){ h->keys[h->n], colon + 1, strlen(colon + 1) };
    h->n++;
    return 0;
}

const fo_pub_opts_t *cli_headers_opts(cli_headers_t *h, fo_pub_opts_t *po)
{
    if (!h->n)
        return NULL;
    fo_pub_opts_init(po);
    po->headers = h->h;
    po->nheaders = h->n;
    return po;
}
