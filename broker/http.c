/* http.c -- the tiny HTTP/1.x server behind --http.
 *
 * Everything is nonblocking and driven by one internal epoll fd, which the
 * main loop watches through fo_http_fd(). The set holds the listening
 * socket, a timerfd for deadlines, and the client connections. A
 * connection goes READ -> WRITE -> LINGER -> closed:
 *
 *   READ    bytes accumulate in a fixed FO_HTTP_MAX_REQUEST buffer until
 *           the blank line ending the headers (else 431 when full, 400 when
 *           malformed, 405 for anything but GET and HEAD); the handler
 *           renders the body and the whole response is queued (HEAD: the
 *           headers alone).
 *   WRITE   the response is sent as far as the socket takes it; the rest
 *           waits for EPOLLOUT.
 *   LINGER  after shutdown(SHUT_WR) the rest of the request is read and
 *           dropped until the peer closes, so unread bytes never turn the
 *           close into a reset that could eat the response.
 *
 * Every connection has a deadline (FO_HTTP_HEADER_MS to send its request,
 * FO_HTTP_TIMEOUT_MS for its whole life, shorter for LINGER); the timerfd
 * is armed at the earliest one, so a silent client is reaped even when
 * nothing else happens. At most FO_HTTP_MAX_CONNS connections, and
 * FO_HTTP_PER_ADDR from one address: beyond, a new connection replaces the
 * oldest one still reading its request (slowloris cannot starve
 * /healthz), and only when none is reading is it answered 503.
 * When accept fails for lack of descriptors the listener is taken out of
 * the set for a moment instead of spinning the main loop.
 *
 * Not thread-safe: one thread (main) calls everything.
 */
#include "http.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include "clock.h"
#include "config.h"
#include "net.h"

#define MAX_EVENTS     32
#define ACCEPT_BATCH   8       /* < FO_HTTP_PER_ADDR: reads run between batches */
#define LINGER_MS      500
#define PAUSE_MS       100
#define BACKLOG        128     /* > FO_HTTP_MAX_CONNS: a burst waits in the kernel, in order */

typedef enum { ST_READ, ST_WRITE, ST_LINGER } state_t;

typedef struct hconn {
    struct hconn *prev, *next;
    int fd;                    /* -1 once closed (the struct waits in h->dead) */
    uint64_t accepted;         /* monotonic ms: who is oldest */
    int head;                  /* HEAD: headers only */
    struct sockaddr_storage peer;
    state_t st;
    int want_out;              /* registered for EPOLLOUT */
    uint64_t deadline;         /* monotonic ms */
    size_t rlen;
    fo_buf_t out;              /* response not yet sent */
    char req[FO_HTTP_MAX_REQUEST];
} hconn_t;

struct fo_http {
    int lfd, epfd, tfd;
    int port;
    int timeout_ms;
    uint64_t paused_until;     /* listener out of the set until then; 0 = in */
    fo_http_handler_t handler;
    void *ud;
    hconn_t *conns;
    hconn_t *dead;             /* closed during this batch of events, freed after it */
    int nconns;
    uint64_t evicted;          /* slow requests closed to make room */
};

static char tag_listen, tag_timer;     /* epoll data for the two fixed fds */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default:  return "Unknown";
    }
}

/* ------------------------------------------------------------ connections */

/* Close c. The struct itself is freed only after the current batch of
 * epoll events (free_dead): accepting can close another connection to make
 * room (make_room), whose event may still be waiting in the same batch. */
static void conn_close(fo_http_t *h, hconn_t *c)
{
    epoll_ctl(h->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (c->prev) c->prev->next = c->next; else h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    h->nconns--;
    fo_buf_free(&c->out);
    c->prev = NULL;
    c->next = h->dead;
    h->dead = c;
}

static void free_dead(fo_http_t *h)
{
    while (h->dead) {
        hconn_t *c = h->dead;
        h->dead = c->next;
        free(c);
    }
}

static void conn_watch(fo_http_t *h, hconn_t *c, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    epoll_ctl(h->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Sent all: stop writing, drain what the peer still sends, then close. */
static void conn_linger(fo_http_t *h, hconn_t *c)
{
    shutdown(c->fd, SHUT_WR);
    c->st = ST_LINGER;
    uint64_t until = fo_clock_ms() + LINGER_MS;
    if (until < c->deadline)
        c->deadline = until;
    if (c->want_out) {
        conn_watch(h, c, EPOLLIN | EPOLLRDHUP);
        c->want_out = 0;
    }
}

/* Send what the socket takes; 0 = keep the connection, -1 = closed. */
static int conn_flush(fo_http_t *h, hconn_t *c)
{
    while (fo_buf_len(&c->out) > 0) {
        ssize_t n = send(c->fd, fo_buf_head(&c->out), fo_buf_len(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            fo_buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) {
                conn_watch(h, c, EPOLLOUT);
                c->want_out = 1;
            }
            return 0;
        }
        conn_close(h, c);
        return -1;
    }
    fo_buf_free(&c->out);
    conn_linger(h, c);
    return 0;
}

static fo_err_t build_response(fo_buf_t *out, int status, const char *ctype,
                               const char *extra, const fo_buf_t *body, int head_only)
{
    char hdr[512];
    size_t blen = fo_buf_len(body);
    const char *r = reason(status);
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "%sConnection: close\r\n\r\n",
                     status, r, ctype, blen ? blen : strlen(r) + 1, extra);
    fo_err_t e = fo_buf_append(out, hdr, (size_t)n);
    if (head_only)
        return e;
    if (e == FO_OK && blen)
        e = fo_buf_append(out, fo_buf_head(body), blen);
    else if (e == FO_OK) {
        e = fo_buf_append(out, r, strlen(r));
        if (e == FO_OK)
            e = fo_buf_append(out, "\n", 1);
    }
    return e;
}

static const char text_plain[] = "text/plain; charset=utf-8";

/* Answer and start writing; 0 = keep the connection, -1 = closed. */
static int conn_respond(fo_http_t *h, hconn_t *c, int status, const char *ctype,
                        const char *extra, const fo_buf_t *body)
{
    fo_buf_t none = FO_BUF_INIT;
    if (build_response(&c->out, status, ctype ? ctype : text_plain, extra ? extra : "",
                       body ? body : &none, c->head) != FO_OK) {
        conn_close(h, c);
        return -1;
    }
    c->st = ST_WRITE;
    c->deadline = c->accepted + (uint64_t)h->timeout_ms;   /* the rest of its life */
    return conn_flush(h, c);
}

/* The value of header `name` (lower case) among the header lines in
 * [p, end), NUL-terminated in place with its blanks trimmed; NULL when
 * absent. */
static const char *header_value(char *p, char *end, const char *name)
{
    size_t nl = strlen(name);
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && !strncasecmp(p, name, nl)) {
            char *v = p + nl + 1, *e = eol;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *e = '\0';
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

/* The request line, once the headers are complete. */
static int conn_request(fo_http_t *h, hconn_t *c, size_t hdr_end)
{
    char *line = c->req;
    char *eol = memchr(line, '\n', hdr_end);
    if (!eol)
        return conn_respond(h, c, 400, NULL, NULL, NULL);
    *eol = '\0';
    if (eol > line && eol[-1] == '\r')
        eol[-1] = '\0';
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp1 == line || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 || sp1[1] != '/')
        return conn_respond(h, c, 400, NULL, NULL, NULL);
    *sp1 = '\0';
    *sp2 = '\0';
    c->head = !strcmp(line, "HEAD");
    if (strcmp(line, "GET") != 0 && !c->head)
        return conn_respond(h, c, 405, NULL, "Allow: GET, HEAD\r\n", NULL);
    char *path = sp1 + 1;
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';
    fo_http_req_t rq = { .path = path,
                         .authorization = header_value(eol + 1, c->req + hdr_end, "authorization") };

    fo_buf_t body = FO_BUF_INIT;
    const char *ctype = text_plain;
    int status = h->handler(h->ud, &rq, &body, &ctype);
    if (status < 100 || status > 599) {
        fo_buf_free(&body);
        status = 500;
    }
    int rc = conn_respond(h, c, status, ctype,
                          status == 401 ? "WWW-Authenticate: Bearer realm=\"fanout\"\r\n" : NULL, &body);
    fo_buf_free(&body);
    return rc;
}

/* End of the headers: offset just past the blank line, 0 when not yet. */
static size_t headers_end(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\n')
            continue;
        if (i + 1 < len && p[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static void conn_readable(fo_http_t *h, hconn_t *c)
{
    if (c->st == ST_LINGER) {
        char sink[4096];
        for (;;) {
            ssize_t n = recv(c->fd, sink, sizeof sink, 0);
            if (n > 0)
                continue;
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            conn_close(h, c);      /* EOF or error: done */
            return;
        }
    }
    while (c->rlen < sizeof c->req) {
        ssize_t n = recv(c->fd, c->req + c->rlen, sizeof c->req - c->rlen, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            conn_close(h, c);      /* EOF before a whole request, or error */
            return;
        }
        size_t from = c->rlen > 3 ? c->rlen - 3 : 0;   /* blank line may straddle reads */
        c->rlen += (size_t)n;
        size_t end = headers_end(c->req + from, c->rlen - from);
        if (end) {
            conn_request(h, c, from + end);
            return;
        }
    }
    if (c->rlen == sizeof c->req)
        conn_respond(h, c, 431, NULL, NULL, NULL);
}

static void conn_event(fo_http_t *h, hconn_t *c, uint32_t events)
{
    if (c->fd < 0)
        return;                  /* closed earlier in this batch */
    if (c->st == ST_WRITE) {
        if (events & (EPOLLERR | EPOLLHUP))
            conn_close(h, c);
        else if (events & EPOLLOUT)
            conn_flush(h, c);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        conn_readable(h, c);
}

/* ------------------------------------------------------------ listener */

static void refuse_busy(int fd)
{
    static const char busy[] =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n";
    char sink[1024];
    (void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    /* what the client already sent: read it, so the close is not a reset
     * (best effort; more may still be on the way) */
    for (int i = 0; i < 8 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
    close(fd);
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                       &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr));
    return 0;
}

/* Room for a connection from peer: 1, after closing the oldest connection
 * still reading its request if the server (or that address) is full; 0
 * when every candidate is busy answering. */
static int make_room(fo_http_t *h, const struct sockaddr_storage *peer)
{
    if (h->nconns >= FO_HTTP_PER_ADDR) {
        /* before calling anyone slow, read what has arrived: a request
         * already sent in full is answered, not evicted */
        for (hconn_t *c = h->conns, *nx; c; c = nx) {
            nx = c->next;
            if (c->st == ST_READ)
                conn_readable(h, c);     /* may close c */
        }
    }
    int from_peer = 0;
    hconn_t *oldest = NULL, *oldest_of_peer = NULL;
    for (hconn_t *c = h->conns; c; c = c->next) {
        int mine = same_addr(&c->peer, peer);
        from_peer += mine;
        if (c->st != ST_READ)
            continue;
        if (!oldest || c->accepted < oldest->accepted)
            oldest = c;
        if (mine && (!oldest_of_peer || c->accepted < oldest_of_peer->accepted))
            oldest_of_peer = c;
    }
    hconn_t *victim = NULL;
    if (from_peer >= FO_HTTP_PER_ADDR)
        victim = oldest_of_peer;
    else if (h->nconns >= FO_HTTP_MAX_CONNS)
        victim = oldest;
    else
        return 1;
    if (!victim)
        return 0;
    conn_close(h, victim);
    h->evicted++;
    return 1;
}

static void accept_some(fo_http_t *h, uint64_t now)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = fo_net_accept(h->lfd);
        if (fd < 0) {
            if (fo_net_out_of_fds(errno)) {
                epoll_ctl(h->epfd, EPOLL_CTL_DEL, h->lfd, NULL);
                h->paused_until = now + PAUSE_MS;
            }
            return;
        }
        struct sockaddr_storage peer = { .ss_family = AF_UNSPEC };
        socklen_t pl = sizeof peer;
        (void)!getpeername(fd, (struct sockaddr *)&peer, &pl);   /* unknown: AF_UNSPEC */
        if (!make_room(h, &peer)) {
            refuse_busy(fd);
            continue;
        }
        hconn_t *c = calloc(1, sizeof *c);
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
        if (!c || epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->st = ST_READ;
        c->accepted = now;
        c->peer = peer;
        c->deadline = now + (uint64_t)(h->timeout_ms < FO_HTTP_HEADER_MS ? h->timeout_ms
                                                                     : FO_HTTP_HEADER_MS);
        c->next = h->conns;
        if (h->conns)
            h->conns->prev = c;
        h->conns = c;
        h->nconns++;
    }
}

/* Close what is past its deadline, resume a paused listener, and arm the
 * timer for the next deadline (or disarm it). */
static void reap_and_arm(fo_http_t *h)
{
    uint64_t now = fo_clock_ms(), next = 0;
    for (hconn_t *c = h->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->deadline <= now)
            conn_close(h, c);
        else if (!next || c->deadline < next)
            next = c->deadline;
    }
    if (h->paused_until && h->paused_until <= now) {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tag_listen };
        if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->lfd, &ev) == 0)
            h->paused_until = 0;
        else
            h->paused_until = now + PAUSE_MS;
    }
    if (h->paused_until && (!next || h->paused_until < next))
        next = h->paused_until;
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (next) {
        its.it_value.tv_sec = (time_t)(next / 1000);
        its.it_value.tv_nsec = (long)(next % 1000) * 1000000L;
    }
    timerfd_settime(h->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* ------------------------------------------------------------ public */

void fo_http_poll(fo_http_t *h)
{
    if (!h)
        return;
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(h->epfd, evs, MAX_EVENTS, 0);
    uint64_t now = fo_clock_ms();
    for (int i = 0; i < n; i++) {
        void *p = evs[i].data.ptr;
        if (p == &tag_listen) {
            accept_some(h, now);
        } else if (p == &tag_timer) {
            uint64_t ticks;
            (void)!read(h->tfd, &ticks, sizeof ticks);
        } else {
            conn_event(h, p, evs[i].events);
        }
    }
    reap_and_arm(h);
    free_dead(h);
}

fo_err_t fo_http_create(const char *hostport, fo_http_handler_t handler,
                        void *ud, fo_http_t **out)
{
    fo_err_t e = FO_ERR_INVAL;
    *out = NULL;
    if (!hostport || !strcmp(hostport, "off"))
        return FO_OK;
    if (!handler)
        return FO_ERR_INVAL;
    fo_http_t *h = calloc(1, sizeof *h);
    if (!h)
        return FO_ERR_NOMEM;
    h->lfd = h->epfd = h->tfd = -1;
    h->handler = handler;
    h->ud = ud;
    h->timeout_ms = FO_HTTP_TIMEOUT_MS;
    uint16_t port;
    if ((e = fo_net_listen(hostport, BACKLOG, &h->lfd, &port, NULL, 0)) != FO_OK)
        goto fail;
    h->port = port;
    e = FO_ERR_IO;
    h->epfd = epoll_create1(EPOLL_CLOEXEC);
    h->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (h->epfd < 0 || h->tfd < 0)
        goto fail;
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &tag_listen };
    struct epoll_event tev = { .events = EPOLLIN, .data.ptr = &tag_timer };
    if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->lfd, &lev) != 0 ||
        epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->tfd, &tev) != 0)
        goto fail;
    *out = h;
    return FO_OK;
fail:
    fo_http_destroy(h);
    return e;
}

int fo_http_fd(const fo_http_t *h) { return h ? h->epfd : -1; }
int fo_http_port(const fo_http_t *h) { return h ? h->port : -1; }

void fo_http_set_timeout(fo_http_t *h, int ms)
{
    if (h)
        h->timeout_ms = ms > 0 ? ms : FO_HTTP_TIMEOUT_MS;
}

void fo_http_destroy(fo_http_t *h)
{
    if (!h)
        return;
    int saved = errno;
    while (h->conns)
        conn_close(h, h->conns);
    free_dead(h);
    if (h->tfd >= 0) close(h->tfd);
    if (h->epfd >= 0) close(h->epfd);
    if (h->lfd >= 0) close(h->lfd);
    free(h);
    errno = saved;
}
