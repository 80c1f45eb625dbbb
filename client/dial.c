/* dial.c -- address parsing and connect with a deadline (see dial.h).
 *
 * The connect is non-blocking so it can be bounded by poll(); once it has
 * completed the socket is switched back to blocking mode, because the
 * client writes from application threads with plain blocking send(). Every
 * address getaddrinfo returns is tried in order within the one deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "clock.h"
#include <unistd.h>
#include "addr.h"
#include "dial.h"

static void say(char *err, size_t errlen, const char *fmt, const char *a,
                const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, b);
}

/* One connect attempt bounded by deadline_ms. */
static fo_err_t try_connect(const struct addrinfo *ai, uint64_t deadline_ms,
                            int *fdp, int *sys_errno)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
                    SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
        *sys_errno = errno;
        return FO_ERR_IO;
    }
    fo_err_t ret = FO_ERR_IO;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            *sys_errno = errno;
            ret = errno == ECONNREFUSED ? FO_ERR_REFUSED : FO_ERR_IO;
            goto fail;
        }
        for (;;) {
            uint64_t now = fo_clock_ms();
            if (now >= deadline_ms) {
                *sys_errno = ETIMEDOUT;
                ret = FO_ERR_TIMEOUT;
                goto fail;
            }
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            int n = poll(&p, 1, (int)(deadline_ms - now));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                *sys_errno = errno;
                goto fail;
            }
            if (n > 0)
                break;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr) {
            *sys_errno = soerr;
            ret = soerr == ECONNREFUSED ? FO_ERR_REFUSED : FO_ERR_IO;
            goto fail;
        }
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *fdp = fd;
    return FO_OK;
fail:
    close(fd);
    return ret;
}

fo_err_t fo_dial(const char *hostport, int timeout_ms, int *fd, char *err,
                 size_t errlen)
{
    fo_addr_t a;
    if (fo_addr_parse(hostport, 0, &a)) {
        say(err, errlen, "bad address '%s'%s (want HOST[:PORT] or fanout://HOST[:PORT])",
            hostport ? hostport : "", "");
        return FO_ERR_ADDR;
    }
    return fo_dial_addr(&a, hostport, timeout_ms, fd, err, errlen);
}

fo_err_t fo_dial_addr(const fo_addr_t *a, const char *hostport, int timeout_ms, int *fd,
                      char *err, size_t errlen)
{
    char port_s[8];
    const char *host = a->host[0] ? a->host : "127.0.0.1";
    snprintf(port_s, sizeof port_s, "%u", (unsigned)a->port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV }, *res = NULL;
    int g = getaddrinfo(host, port_s, &hints, &res);
    if (g) {
        say(err, errlen, "bad address '%s': %s", hostport, gai_strerror(g));
        return FO_ERR_ADDR;
    }
    uint64_t deadline = fo_clock_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 5000);
    fo_err_t ret = FO_ERR_ADDR;
    int sys_errno = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        ret = try_connect(ai, deadline, fd, &sys_errno);
        if (ret == FO_OK || ret == FO_ERR_TIMEOUT)
            break;
    }
    freeaddrinfo(res);
    if (ret)
        say(err, errlen, "connect %s: %s", hostport, strerror(sys_errno));
    return ret;
}
