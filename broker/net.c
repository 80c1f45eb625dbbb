/* net.c -- listen, accept and socket options (see net.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "addr.h"
#include "net.h"

static fo_err_t say(fo_err_t e, char *err, size_t errlen, const char *fmt, const char *a,
                    const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, b);
    return e;
}

static int bound_port(int fd, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl))
        return -1;
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

static int listen_one(const struct addrinfo *ai, int backlog)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, backlog)) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

fo_err_t fo_net_listen(const char *hostport, int backlog, int *fd, uint16_t *port,
                       char *err, size_t errlen)
{
    fo_addr_t a;
    if (fo_addr_parse(hostport, FO_ADDR_NEED_PORT | FO_ADDR_NO_SCHEME | FO_ADDR_LISTEN, &a))
        return say(FO_ERR_ADDR, err, errlen, "bad address \"%s\"%s (want HOST:PORT)",
                   hostport ? hostport : "", "");
    char ps[8];
    snprintf(ps, sizeof ps, "%u", (unsigned)a.port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *res;
    int g = getaddrinfo(a.host[0] ? a.host : "0.0.0.0", ps, &hints, &res);
    if (g)
        return say(FO_ERR_ADDR, err, errlen, "%s: %s", hostport, gai_strerror(g));
    int s = -1;
    for (const struct addrinfo *ai = res; ai && s < 0; ai = ai->ai_next)
        s = listen_one(ai, backlog);
    int saved = errno;
    freeaddrinfo(res);
    if (s < 0) {
        errno = saved;
        return say(FO_ERR_IO, err, errlen, "cannot listen on %s: %s", hostport, strerror(saved));
    }
    if (port && bound_port(s, port)) {
        saved = errno;
        close(s);
        errno = saved;
        return say(FO_ERR_IO, err, errlen, "cannot listen on %s: %s", hostport, strerror(saved));
    }
    *fd = s;
    return FO_OK;
}

int fo_net_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0 || (errno != EINTR && errno != ECONNABORTED))
            return fd;
    }
}

int fo_net_out_of_fds(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

void fo_net_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void fo_net_peer_name(int fd, char *out, size_t len)
{
    struct sockaddr_storage ss = { .ss_family = AF_UNSPEC };
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(out, len, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
}

/* 127.0.0.0/8, ::1 or ::ffff:127.x.y.z: the socket's own address
 * (getsockname) or its peer's (getpeername). */
static int loopback(int fd, int peer)
{
    struct sockaddr_storage ss = { .ss_family = AF_UNSPEC };
    socklen_t sl = sizeof ss;
    struct sockaddr *sa = (struct sockaddr *)&ss;
    if (peer ? getpeername(fd, sa, &sl) : getsockname(fd, sa, &sl))
        return 0;
    if (ss.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family != AF_INET6)
        return 0;
    const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

int fo_net_is_loopback(int fd)
{
    return loopback(fd, 0);
}

int fo_net_peer_is_loopback(int fd)
{
    return loopback(fd, 1);
}

int fo_net_connect(const char *addrport)
{
    fo_addr_t a;
    if (fo_addr_parse(addrport, FO_ADDR_NEED_PORT | FO_ADDR_NO_SCHEME, &a)) {
        errno = EINVAL;
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, a.host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(a.port);
        sl = sizeof *v4;
    } else if (inet_pton(AF_INET6, a.host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(a.port);
        sl = sizeof *v6;
    } else {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    fo_net_nodelay(fd);
    if (connect(fd, (struct sockaddr *)&ss, sl) && errno != EINPROGRESS) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int fo_net_connect_result(int fd)
{
    int e = 0;
    socklen_t el = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el))
        return errno;
    return e;
}

int fo_net_resolve(const char *hostport, char (*out)[FO_NET_ADDR_MAX], int max, char *err, size_t errlen)
{
    fo_addr_t a;
    if (fo_addr_parse(hostport, FO_ADDR_NEED_PORT | FO_ADDR_NO_SCHEME, &a)) {
        (void)say(FO_ERR_ADDR, err, errlen, "bad address \"%s\"%s (want HOST:PORT)", hostport, "");
        return -1;
    }
    char ps[8];
    snprintf(ps, sizeof ps, "%u", (unsigned)a.port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV }, *res;
    int g = getaddrinfo(a.host, ps, &hints, &res);
    if (g) {
        (void)say(FO_ERR_ADDR, err, errlen, "%s: %s", hostport, gai_strerror(g));
        return -1;
    }
    int n = 0;
    for (const struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        char host[INET6_ADDRSTRLEN];
        const void *src = ai->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                                                    : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            !inet_ntop(ai->ai_family, src, host, sizeof host))
            continue;
        snprintf(out[n], FO_NET_ADDR_MAX, ai->ai_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
                 (unsigned)a.port);
        int dup = 0;
        for (int k = 0; k < n && !dup; k++)
            dup = !strcmp(out[k], out[n]);
        if (!dup)
            n++;
    }
    freeaddrinfo(res);
    return n;
}
