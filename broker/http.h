/* http.h -- the tiny HTTP/1.x server behind --http (/metrics, /healthz).
 *
 * Runs on the main thread. It owns a listening socket and an internal epoll
 * fd; the main loop watches fo_http_fd() and calls fo_http_poll() when it is
 * readable. Requests are GET only, one per connection (Connection: close),
 * bounded in size (8 KiB) and time; a slow or broken client never blocks
 * the main loop. The handler renders the response body for a path.
 */
#ifndef FO_HTTP_H
#define FO_HTTP_H

#include "buf.h"
#include "fo_err.h"

typedef struct fo_http fo_http_t;

/* Render `path` into body; return the HTTP status (200, 404, 503...) and
 * set *content_type (static string). */
typedef int (*fo_http_handler_t)(void *ud, const char *path, fo_buf_t *body,
                                 const char **content_type);

/* Listen on "HOST:PORT". *out is owned by the caller (fo_http_destroy). */
fo_err_t fo_http_create(const char *hostport, fo_http_handler_t handler,
                        void *ud, fo_http_t **out);
int fo_http_fd(const fo_http_t *h);             /* pollable (EPOLLIN)   */
void fo_http_poll(fo_http_t *h);                /* do what is ready     */
int fo_http_port(const fo_http_t *h);           /* bound port (for :0)  */
void fo_http_destroy(fo_http_t *h);             /* NULL is fine         */

#endif
