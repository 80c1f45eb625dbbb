/* dial.h -- "HOST:PORT" parsing and TCP connect with a deadline.
 *
 * Used by the client library (broker connections) and the CLI (`fanout
 * stats` fetching /metrics). Errors are fo_err_t plus a one-line reason.
 */
#ifndef FO_DIAL_H
#define FO_DIAL_H

#include <stddef.h>
#include "fo_err.h"

/* Split "HOST:PORT" (or "[V6]:PORT") into host (cap hostlen) and port.
 * An empty host means 127.0.0.1. FO_ERR_ADDR when malformed. */
fo_err_t fo_addr_split(const char *hostport, char *host, size_t hostlen,
                       int *port);

/* Connect to hostport within timeout_ms (<= 0: 5 s). On FO_OK *fd is a
 * blocking socket owned by the caller (TCP_NODELAY set). Errors:
 * FO_ERR_ADDR, FO_ERR_REFUSED, FO_ERR_TIMEOUT, FO_ERR_IO; err (may be
 * NULL) gets the reason. */
fo_err_t fo_dial(const char *hostport, int timeout_ms, int *fd, char *err,
                 size_t errlen);

#endif
