/* acceptor.c -- listeners, accept and hand-off, signals (see acceptor.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include "acceptor.h"
#include "clock.h"
#include "frame.h"
#include "log.h"
#include "net.h"
#include "worker.h"

#define ACCEPT_BATCH 256      /* accepts per wake-up: the rest wait in the kernel */
#define PAUSE_MS     100      /* out of descriptors: stop accepting this long */
#define BACKLOG      4096
#define TICK_MS      250      /* fo_broker_tick: reclamation, retention age */

enum { TAG_LISTEN, TAG_SIGNAL, TAG_HTTP, TAG_LISTEN_TLS };

struct fo_acceptor {
    fo_broker_t *b;           /* borrowed */
    fo_http_t *http;          /* borrowed, may be NULL */
    int epfd, sfd, lfd;
    int tls_lfd;              /* --tls-listen, or -1 */
    int listening;            /* the listeners are in the epoll set */
    int draining;
    unsigned rr;              /* next worker, round-robin */
    uint64_t paused_until;    /* listener out of the set until then; 0 = in */
    uint64_t next_tick;       /* the next fo_broker_tick */
};

static fo_err_t watch(fo_acceptor_t *a, int fd, int tag)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)tag };
    return epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) ? FO_ERR_IO : FO_OK;
}

/* Secure by default (Mosquitto 2.0's lesson): without logins the broker
 * serves only this host. A listener anyone else can reach needs users
 * (--users, or --user/--password), or client certificates that are
 * required (the TLS listener alone), or the operator's explicit
 * --allow-anonymous -- which is then said in the log. */
static fo_err_t check_exposure(const fo_broker_t *b, const fo_acceptor_t *a, char *err, size_t errlen)
{
    const fo_config_t *c = &b->cfg;
    if (c->users_file[0] || c->user[0])
        return FO_OK;
    const char *open_on = !fo_net_is_loopback(a->lfd) ? c->listen
                        : a->tls_lfd >= 0 && !fo_net_is_loopback(a->tls_lfd) &&
                          c->tls_verify_client != FO_TLS_VERIFY_REQUIRED ? c->tls_listen : NULL;
    if (!open_on)
        return FO_OK;
    if (c->allow_anonymous) {
        fo_warn(0, "anonymous clients are served on %s, which other hosts can reach "
                   "(--allow-anonymous): anyone there may publish and subscribe to everything", open_on);
        return FO_OK;
    }
    snprintf(err, errlen, "fanoutd: %s is reachable from other hosts and no users are configured: "
             "give --users FILE (or --user and --password), listen on 127.0.0.1, or pass "
             "--allow-anonymous to serve anyone (docs/SECURITY.md)", open_on);
    return FO_ERR_INVAL;
}

fo_err_t fo_acceptor_create(fo_broker_t *b, fo_acceptor_t **out, char *err, size_t errlen)
{
    fo_err_t e = FO_ERR_NOMEM;
    fo_acceptor_t *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "fanoutd: out of memory");
        return e;
    }
    a->b = b;
    a->epfd = a->sfd = a->lfd = a->tls_lfd = -1;
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGPIPE);
    e = FO_ERR_IO;
    if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) ||
        (a->sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
        (a->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        snprintf(err, errlen, "fanoutd: cannot set up signals: %s", strerror(errno));
        goto fail;
    }
    char why[300];
    if ((e = fo_net_listen(b->cfg.listen, BACKLOG, &a->lfd, NULL, why, sizeof why))) {
        snprintf(err, errlen, "fanoutd: --listen: %s", why);
        goto fail;
    }
    if (strcmp(b->cfg.tls_listen, "off") &&
        (e = fo_net_listen(b->cfg.tls_listen, BACKLOG, &a->tls_lfd, NULL, why, sizeof why))) {
        snprintf(err, errlen, "fanoutd: --tls-listen: %s", why);
        goto fail;
    }
    if ((e = check_exposure(b, a, err, errlen)))
        goto fail;
    if (!b->cfg.users_file[0] && !b->cfg.user[0] && !b->cfg.allow_anonymous && a->tls_lfd >= 0 &&
        !fo_net_is_loopback(a->tls_lfd))
        b->verify_pinned = b->cfg.tls_listen;     /* required, or check_exposure refused */
    if ((e = watch(a, a->sfd, TAG_SIGNAL)) || (e = watch(a, a->lfd, TAG_LISTEN)) ||
        (a->tls_lfd >= 0 && (e = watch(a, a->tls_lfd, TAG_LISTEN_TLS)))) {
        snprintf(err, errlen, "fanoutd: epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    a->listening = 1;
    *out = a;
    return FO_OK;
fail:
    fo_acceptor_destroy(a);
    return e;
}

fo_err_t fo_acceptor_watch_http(fo_acceptor_t *a, fo_http_t *http)
{
    a->http = http;
    return http ? watch(a, fo_http_fd(http), TAG_HTTP) : FO_OK;
}

void fo_acceptor_destroy(fo_acceptor_t *a)
{
    if (!a)
        return;
    if (a->lfd >= 0)
        close(a->lfd);
    if (a->tls_lfd >= 0)
        close(a->tls_lfd);
    if (a->sfd >= 0)
        close(a->sfd);
    if (a->epfd >= 0)
        close(a->epfd);
    free(a);
}

/* ------------------------------------------------------------ accepting */

/* Over --max-conns: say so in a frame, then close (best effort). */
static void refuse(int fd, int code, const char *text)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Error e = FANOUT__ERROR__INIT;
    e.has_code = 1;
    e.code = code;
    e.text = (char *)text;
    f.body_case = FANOUT__FRAME__BODY_ERROR;
    f.error = &e;
    uint8_t buf[256];
    size_t n = fo_frame_pack(&f, buf);
    (void)!send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);   /* best effort */
    close(fd);
}

/* One --max-conns for both listeners. A TLS connection over it is closed
 * before any handshake (an ERROR frame would need one: work and memory
 * for a connection the limit is there to refuse). */
static void hand_off(fo_acceptor_t *a, int fd, int tls)
{
    fo_broker_t *b = a->b;
    if (atomic_fetch_add(&b->conns, 1) >= LIM(b, max_conns)) {
        atomic_fetch_sub(&b->conns, 1);
        FO_LOG_RATE(FO_LOG_WARN, 0, "%sconnection refused: --max-conns %d reached%s", tls ? "TLS " : "",
                    LIM(b, max_conns), tls ? " (closed before the handshake)" : "");
        if (tls)
            close(fd);
        else
            refuse(fd, FO_CODE(MAX_CONNS), "too many connections");
        return;
    }
    fo_net_nodelay(fd);
    fo_item_t it = { .kind = tls ? FO_ITEM_CONN_TLS : FO_ITEM_CONN, .u.fd = fd };
    if (fo_inbox_post(&b->workers[a->rr++ % (unsigned)b->nworkers]->inbox, &it, 1)) {
        atomic_fetch_sub(&b->conns, 1);
        close(fd);
        FO_LOG_RATE(FO_LOG_ERROR, 0, "connection dropped: out of memory for the hand-off");
    }
}

static void listener_events(fo_acceptor_t *a, int fd, uint32_t tag, int on)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = tag };
    if (fd >= 0 && epoll_ctl(a->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev))
        FO_LOG_RATE(FO_LOG_ERROR, 0, "epoll_ctl on the listener: %s", strerror(errno));
}

static void set_listening(fo_acceptor_t *a, int on)
{
    if (a->lfd < 0 || a->listening == on)
        return;
    listener_events(a, a->lfd, TAG_LISTEN, on);
    listener_events(a, a->tls_lfd, TAG_LISTEN_TLS, on);
    a->listening = on;
}

static void accept_some(fo_acceptor_t *a, int lfd, int tls)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = fo_net_accept(lfd);
        if (fd >= 0) {
            hand_off(a, fd, tls);
            continue;
        }
        if (fo_net_out_of_fds(errno)) {
            FO_LOG_RATE(FO_LOG_ERROR, 0, "accept: %s (pausing accepts)", strerror(errno));
            set_listening(a, 0);
            a->paused_until = fo_clock_ms() + PAUSE_MS;
        }
        return;        /* EAGAIN: all taken; anything else: that one failed */
    }
}

/* ------------------------------------------------------------ signals */

static void start_drain(fo_acceptor_t *a, int sig)
{
    a->draining = 1;
    fo_info(0, "%s: draining (at most %u ms)", strsignal(sig), LIM(a->b, drain_timeout_ms));
    set_listening(a, 0);
    close(a->lfd);
    a->lfd = -1;
    if (a->tls_lfd >= 0)
        close(a->tls_lfd);
    a->tls_lfd = -1;
    a->paused_until = 0;
    fo_broker_drain(a->b);
}

static void on_signals(fo_acceptor_t *a)
{
    struct signalfd_siginfo si;
    while (read(a->sfd, &si, sizeof si) == sizeof si) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGHUP)
            fo_broker_reload(a->b);
        else if ((sig == SIGTERM || sig == SIGINT) && !a->draining)
            start_drain(a, sig);
    }
}

fo_err_t fo_acceptor_run(fo_acceptor_t *a)
{
    for (;;) {
        struct epoll_event evs[8];
        int n = epoll_wait(a->epfd, evs, 8, a->draining || a->paused_until ? 20 : TICK_MS);
        if (n < 0 && errno != EINTR) {
            fo_error(0, "epoll_wait: %s", strerror(errno));
            return FO_ERR_IO;
        }
        for (int i = 0; i < n; i++) {
            uint32_t tag = evs[i].data.u32;
            if (tag == TAG_LISTEN && a->lfd >= 0)
                accept_some(a, a->lfd, 0);
            else if (tag == TAG_LISTEN_TLS && a->tls_lfd >= 0)
                accept_some(a, a->tls_lfd, 1);
            else if (tag == TAG_SIGNAL)
                on_signals(a);
            else if (tag == TAG_HTTP)
                fo_http_poll(a->http);
        }
        uint64_t now = fo_clock_ms();
        if (now >= a->next_tick) {
            a->next_tick = now + TICK_MS;
            fo_broker_tick(a->b);
        }
        if (a->paused_until && fo_clock_ms() >= a->paused_until) {
            a->paused_until = 0;
            set_listening(a, 1);
        }
        if (a->draining && fo_broker_drained(a->b))
            return FO_OK;           /* every worker is done: /healthz said 503 till now */
    }
}
