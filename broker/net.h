/* net.h -- the socket calls of fanoutd's listeners and accepted sockets,
 * in one place (as Redis keeps them in anet.c): listen, accept, socket
 * options, peer names. The client port, the TLS port, the cluster port
 * and the --http server all listen through here.
 *
 * Pure wrappers: no state, any thread.
 */
#ifndef FO_NET_H
#define FO_NET_H

#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"

/* Listen on "HOST:PORT" ("[V6]:PORT"; port 0 = any free one), non-blocking
 * and close-on-exec, SO_REUSEADDR, trying each address the host resolves
 * to until one binds. *fd is the socket, *port (may be NULL) the port it
 * got. FO_ERR_ADDR (bad or unresolvable address) or FO_ERR_IO (errno says
 * why); err (may be NULL) gets one line. */
FO_MUST_CHECK fo_err_t fo_net_listen(const char *hostport, int backlog, int *fd,
                                     uint16_t *port, char *err, size_t errlen);

/* accept4, non-blocking and close-on-exec. The new socket, or -1 with
 * errno: EAGAIN when none is pending, anything fo_net_out_of_fds()
 * accepts when the process is out of descriptors or memory (pause
 * accepting for a moment instead of spinning), else a per-connection
 * failure (skip it). EINTR and ECONNABORTED are retried here. */
int fo_net_accept(int lfd);
int fo_net_out_of_fds(int err);

/* TCP_NODELAY on (a broker batches by itself). */
void fo_net_nodelay(int fd);

/* 1 when the socket's own address is loopback (127.0.0.0/8, ::1,
 * ::ffff:127.x.y.z): only this host can reach a listener bound there. */
int fo_net_is_loopback(int fd);
/* 1 when the connected socket's peer is on loopback (the same addresses):
 * it is this host. 0 when not, or unknown. */
int fo_net_peer_is_loopback(int fd);

/* Start a non-blocking connect (close-on-exec, TCP_NODELAY) to a numeric
 * "ADDR:PORT" / "[V6]:PORT" (no name lookup: fo_net_resolve first). The
 * socket, whose EPOLLOUT tells the outcome (fo_net_connect_result), or -1
 * with errno (EINVAL for an address that is not numeric). */
int fo_net_connect(const char *addrport);
/* After EPOLLOUT on a connecting socket: 0 connected, else the errno. */
int fo_net_connect_result(int fd);

/* Resolve "HOST:PORT" (blocking: getaddrinfo; the cluster's resolver
 * thread calls it) into at most max numeric "ADDR:PORT" strings of
 * FO_NET_ADDR_MAX bytes each, IPv4 and IPv6, duplicates removed. Returns
 * how many, or -1 with a one-line reason in err when the name does not
 * resolve. */
#define FO_NET_ADDR_MAX 64
int fo_net_resolve(const char *hostport, char (*out)[FO_NET_ADDR_MAX], int max, char *err, size_t errlen);

/* "ADDR:PORT" of the peer ("?:0" when unknown), at most len bytes. */
void fo_net_peer_name(int fd, char *out, size_t len);

#endif
