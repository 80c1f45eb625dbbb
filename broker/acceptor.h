/* acceptor.h -- the main thread's event loop: listeners, signals, --http.
 *
 * The acceptor owns the listening sockets (--listen, and --tls-listen:
 * its connections are handed off as FO_ITEM_CONN_TLS), the signalfd and the --http
 * server's fd, all in one epoll set. Accepted sockets are counted against
 * --max-conns (over it: ERROR max_conns, closed) and handed to the
 * workers round-robin through their inboxes; when accept() runs out of
 * descriptors the listeners leave the set for 100 ms instead of spinning.
 * SIGHUP reloads (fo_broker_reload), SIGTERM/SIGINT close the listeners
 * and drain (fo_broker_drain); fo_acceptor_run returns once every worker
 * has finished (HTTP is served all along: /healthz answers 503 while the
 * drain runs).
 *
 * Signals: fo_acceptor_create blocks TERM, INT, HUP and PIPE in the
 * calling thread before it makes the signalfd, so it must run before any
 * other thread exists (every thread inherits the mask; no code runs in a
 * signal handler).
 *
 * Main thread only.
 */
#ifndef FO_ACCEPTOR_H
#define FO_ACCEPTOR_H

#include "broker.h"
#include "http.h"

typedef struct fo_acceptor fo_acceptor_t;

/* Block the signals, make the signalfd, listen on b->cfg.listen (and
 * b->cfg.tls_listen unless "off"). *out is
 * owned by the caller (fo_acceptor_destroy). FO_ERR_IO / FO_ERR_ADDR /
 * FO_ERR_NOMEM with one line in err; nothing is left behind. */
FO_MUST_CHECK fo_err_t fo_acceptor_create(fo_broker_t *b, fo_acceptor_t **out,
                                          char *err, size_t errlen);

/* Also serve http (borrowed; may be NULL) from the loop. */
FO_MUST_CHECK fo_err_t fo_acceptor_watch_http(fo_acceptor_t *a, fo_http_t *http);

/* Run until SIGTERM/SIGINT and the workers have stopped reading. FO_OK,
 * or FO_ERR_IO when epoll_wait itself fails. */
FO_MUST_CHECK fo_err_t fo_acceptor_run(fo_acceptor_t *a);

void fo_acceptor_destroy(fo_acceptor_t *a);   /* NULL is fine */

#endif
