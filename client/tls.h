/* tls.h -- libfanout's TLS: a client context made from fo_client_opts_t,
 * and sessions on a connected socket that the reader thread and the
 * writers share.
 *
 * An SSL object must never be in SSL_read and SSL_write at once, yet the
 * client reads on its reader thread while application threads write. So a
 * session's socket is non-blocking and every SSL call on it is made under
 * the session's one lock, which is never held while waiting: a writer
 * whose record the socket does not take (WANT_WRITE) lets go of the lock
 * and poll()s for POLLOUT, so the reader goes on reading meanwhile (a
 * broker that stops reading us until we read it cannot deadlock us); a
 * read that must write first (WANT_WRITE from SSL_read) makes the reader
 * poll for POLLOUT too (fo__tls_events) instead of retrying. Nothing
 * retries in a loop without waiting for the socket. Bytes OpenSSL has
 * taken off the socket but not handed out are invisible to poll():
 * fo__tls_pending says when to read again without waiting.
 *
 * Renegotiation is refused (SSL_OP_NO_RENEGOTIATION) and TLS 1.2 is the
 * least accepted, so a write never needs to read; if one ever does
 * (WANT_READ from SSL_write) the writer waits for the socket to be
 * readable, at most 10 ms a time, and tries again.
 *
 * The socket is written with send(MSG_NOSIGNAL) (a BIO of our own), so a
 * broker that went away never raises SIGPIPE in the application.
 *
 * Threads: fo__tls_ctx_* any thread; a session's read/pending/events are
 * for one thread (the reader, or the connecting thread before there is
 * one), write for any thread (callers serialise their writes: the
 * client's wmu); close once, when nobody else uses the session.
 */
#ifndef FO_CLIENT_TLS_H
#define FO_CLIENT_TLS_H

#include <stddef.h>
#include <stdint.h>
#include "fanout.h"

typedef struct fo__tls_ctx fo__tls_ctx_t;   /* the settings: SSL_CTX   */
typedef struct fo__tls fo__tls_t;           /* one session, one socket */

/* A context from o's tls_* fields: TLS 1.2 minimum, the broker's
 * certificate verified against tls_ca_file or the system store (unless
 * tls_insecure_skip_verify), tls_cert_file/tls_key_file presented when
 * given. FO_ERR_TLS with the reason in err (a file that does not load, a
 * key that does not match), FO_ERR_NOMEM. *out is freed by
 * fo__tls_ctx_free, after every session made from it. */
FO_MUST_CHECK
fo_err_t fo__tls_ctx_new(const fo_client_opts_t *o, fo__tls_ctx_t **out, char *err,
                         size_t errlen);
void fo__tls_ctx_free(fo__tls_ctx_t *x);   /* NULL is fine */

/* The handshake on a connected socket fd (made non-blocking here; still
 * the caller's to close, after fo__tls_close), by deadline_ms
 * (fo_clock_ms). host is what the certificate must name: a DNS name (also
 * sent as SNI) or an IP literal (checked against the IP SANs); label
 * ("tls://host:port") goes into the errors. Errors: FO_ERR_TLS
 * ("certificate verify failed: hostname mismatch (tls://...)"),
 * FO_ERR_TIMEOUT, FO_ERR_CLOSED, FO_ERR_IO, FO_ERR_NOMEM. */
FO_MUST_CHECK
fo_err_t fo__tls_connect(fo__tls_ctx_t *x, int fd, const char *host, const char *label,
                         uint64_t deadline_ms, fo__tls_t **out, char *err, size_t errlen);

/* Write some of p[0..n) (at least one byte on FO_OK; *done says how
 * many). deadline_ms: 0 = do not wait (FO_ERR_AGAIN when the socket is
 * full), UINT64_MAX = wait as long as it takes (a shutdown() of the
 * socket ends the wait with FO_ERR_IO), else FO_ERR_TIMEOUT past it.
 * After FO_ERR_AGAIN the next write must start at the same byte with at
 * least as many bytes (the buffer may have moved). FO_ERR_IO: the session
 * is broken (fo__tls_why). */
FO_MUST_CHECK
fo_err_t fo__tls_write(fo__tls_t *t, const void *p, size_t n, uint64_t deadline_ms,
                       size_t *done);

/* Read what can be read without waiting, up to n bytes: FO_OK with *got
 * (may be 0: nothing yet, poll fo__tls_events); FO_ERR_CLOSED when the
 * broker ended the session or the connection; FO_ERR_TLS or FO_ERR_IO
 * when it broke (fo__tls_why). Bytes read before an error come first,
 * with FO_OK; the error comes on the next call. */
FO_MUST_CHECK
fo_err_t fo__tls_read(fo__tls_t *t, void *p, size_t n, size_t *got);

/* 1 when bytes are waiting inside OpenSSL: read again before polling. */
int fo__tls_pending(fo__tls_t *t);
/* What to poll the socket for: POLLIN, and POLLOUT while a read waits
 * to write. */
short fo__tls_events(fo__tls_t *t);
/* Why the last read or write failed ("tlsv13 alert certificate
 * required"), copied into buf (truncated to len); "" when none did.
 * Returns buf. Any thread. */
const char *fo__tls_why(fo__tls_t *t, char *buf, size_t len);

/* Free the session; with notify, first send close_notify (waiting at most
 * 100 ms for room in the socket; a broken session sends nothing). NULL
 * is fine. */
void fo__tls_close(fo__tls_t *t, int notify);

#endif
