/* dial.h -- TCP connect with a deadline.
 *
 * Used by the client library (broker connections) and the CLI (`fanout
 * stats` fetching /metrics). Addresses are lexed by proto/addr.h (HOST,
 * HOST:PORT, [V6]:PORT, fanout://HOST[:PORT]; an empty host is
 * 127.0.0.1). Errors are fo_err_t plus a one-line reason.
 */
#ifndef FO_DIAL_H
#define FO_DIAL_H

#include <stddef.h>
#include "fo_err.h"

/* Connect to hostport within timeout_ms (<= 0: 5 s). On FO_OK *fd is a
 * blocking socket owned by the caller (TCP_NODELAY set). Errors:
 * FO_ERR_ADDR, FO_ERR_REFUSED, FO_ERR_TIMEOUT, FO_ERR_IO; err (may be
 * NULL) gets the reason. */
FO_MUST_CHECK
fo_err_t fo_dial(const char *hostport, int timeout_ms, int *fd, char *err,
                 size_t errlen);
/* The same for an address already lexed (its scheme is not looked at);
 * hostport is only the name used in the errors. */
struct fo_addr;
FO_MUST_CHECK
fo_err_t fo_dial_addr(const struct fo_addr *a, const char *hostport, int timeout_ms, int *fd,
                      char *err, size_t errlen);

#endif
