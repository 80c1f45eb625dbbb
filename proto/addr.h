/* addr.h -- the one address lexer of fanout (broker, library and CLI).
 *
 * Accepted forms:
 *
 *   HOST            HOST:PORT          [V6]          [V6]:PORT     :PORT
 *   fanout://HOST[:PORT][/]            tls://HOST[:PORT][/]
 *
 * HOST is a name or an IPv4 address; an IPv6 literal always goes in
 * brackets. The scheme says how to talk (plain TCP or TLS); a missing
 * port is the scheme's default (fanout:// and a bare HOST: 7400, tls://:
 * 7443) unless the caller asks for an explicit one (FO_ADDR_NEED_PORT,
 * for listen addresses). Lexing only: nothing is resolved here.
 *
 * Pure functions, any thread.
 */
#ifndef FO_ADDR_H
#define FO_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"

#define FO_PORT_CLIENT  7400   /* fanout:// and plain HOST */
#define FO_PORT_HTTP    7401   /* --http                   */
#define FO_PORT_CLUSTER 7402   /* --cluster-listen         */
#define FO_PORT_TLS     7443   /* tls://, --tls-listen     */
#define FO_ADDR_HOST_MAX 255

typedef enum fo_scheme {
    FO_SCHEME_NONE = 0,        /* none written: plain TCP */
    FO_SCHEME_FANOUT,          /* fanout://: plain TCP    */
    FO_SCHEME_TLS,             /* tls://                  */
} fo_scheme_t;

typedef struct fo_addr {
    fo_scheme_t scheme;
    char host[FO_ADDR_HOST_MAX + 1];  /* "" when none was written (":7400") */
    uint16_t port;                    /* the default when none was written   */
    uint8_t has_port;                 /* a port was written                  */
    uint8_t ipv6;                     /* the host was written in brackets    */
} fo_addr_t;

enum {
    FO_ADDR_NEED_PORT = 1,     /* "HOST" alone is an error                    */
    FO_ADDR_NO_SCHEME = 2,     /* "fanout://" and "tls://" are errors         */
    FO_ADDR_LISTEN    = 4,     /* port 0 ("any free port") is allowed         */
};

/* Lex s into *out. FO_ERR_ADDR when it is not one of the forms above (a
 * port outside 1..65535 included; port 0 only with FO_ADDR_LISTEN);
 * FO_ERR_RANGE when the host is longer than FO_ADDR_HOST_MAX. *out is
 * undefined on error. */
FO_MUST_CHECK fo_err_t fo_addr_parse(const char *s, unsigned flags, fo_addr_t *out);

/* The default port of a scheme. */
uint16_t fo_addr_default_port(fo_scheme_t scheme);

/* "HOST:PORT" (brackets around IPv6) into buf; `empty_host` stands in for
 * an empty host (e.g. "0.0.0.0" to listen, "127.0.0.1" to connect).
 * Returns the length, or -1 when it does not fit (buf then holds a
 * truncated string). */
int fo_addr_format(const fo_addr_t *a, const char *empty_host, char *buf, size_t len);

#endif
