/* http.h -- the tiny HTTP/1.x server behind --http (/metrics, /healthz).
 *
 * Runs on the main thread. It owns a listening socket and an internal epoll
 * fd; the main loop watches fo_http_fd() and calls fo_http_poll() when it is
 * readable. Requests are GET only, one per connection (Connection: close),
 * bounded in size (8 KiB) and time; a slow or broken client never blocks
 * the main loop. The handler renders the response body for a path.
 *
 * Deadlines need no help from the caller: a timerfd inside the internal
 * epoll set makes fo_http_fd() readable when a connection is due to be
 * reaped.
 */
#ifndef FO_HTTP_H
#define FO_HTTP_H

#include "buf.h"
#include "fo_err.h"

typedef struct fo_http fo_http_t;

/* What the handler sees of a request (strings valid during the call). */
typedef struct fo_http_req {
    const char *path;           /* query string cut off                 */
    const char *authorization;  /* the Authorization header's value, its
                                 * blanks trimmed, or NULL when absent  */
} fo_http_req_t;

/* Render the answer to rq into body; return the HTTP status (200, 401,
 * 404, 503...) and set *content_type (static string). A 401 goes out with
 * `WWW-Authenticate: Bearer realm="fanout"`. */
typedef int (*fo_http_handler_t)(void *ud, const fo_http_req_t *rq, fo_buf_t *body,
                                 const char **content_type);

#define FO_HTTP_MAX_REQUEST 8192    /* request line + headers, bytes   */
#define FO_HTTP_MAX_CONNS   64      /* open at once (see below)        */
#define FO_HTTP_PER_ADDR    32      /* open at once from one address   */
#define FO_HTTP_HEADER_MS   500     /* to send the whole request       */
#define FO_HTTP_TIMEOUT_MS  5000    /* a connection's whole life       */

/* Slow clients cannot hold the health check hostage: a request must be
 * complete within FO_HTTP_HEADER_MS of the accept, and when the server is
 * full (or one address holds FO_HTTP_PER_ADDR connections) a new
 * connection takes the place of the oldest one still sending its request
 * (closed at once) -- a prober whose requests complete in microseconds is
 * never that one. Only when every connection is busy answering is a new
 * one refused with 503. */

/* Listen on "HOST:PORT" (":PORT" = all interfaces). "off" (or NULL) gives
 * FO_OK with *out = NULL: every function below accepts that NULL and does
 * nothing (fo_http_fd returns -1). *out is owned by the caller
 * (fo_http_destroy). The handler is called from fo_http_poll only, with
 * the path (query string cut off); ud is borrowed. FO_ERR_ADDR for a bad
 * address, FO_ERR_IO when it cannot bind (errno kept). */
FO_MUST_CHECK fo_err_t fo_http_create(const char *hostport, fo_http_handler_t handler,
                        void *ud, fo_http_t **out);
int fo_http_fd(const fo_http_t *h);             /* pollable (EPOLLIN)   */
void fo_http_poll(fo_http_t *h);                /* do what is ready     */
int fo_http_port(const fo_http_t *h);           /* bound port (for :0)  */
void fo_http_destroy(fo_http_t *h);             /* NULL is fine         */

/* Change the per-connection deadline (default FO_HTTP_TIMEOUT_MS); the
 * request deadline is the smaller of it and FO_HTTP_HEADER_MS. */
void fo_http_set_timeout(fo_http_t *h, int ms);

#endif
