/* main.c -- fanoutd: start, accept, signals, reload, drain, stop.
 *
 * The main thread owns the listening socket, the --http server and the
 * signals; the workers own everything else. Start-up order: config ->
 * logging -> signals blocked (before any thread exists, so every thread
 * inherits the mask and only the signalfd sees them) -> multicast, registry
 * -> listener -> workers -> HTTP. Accepted sockets are handed to workers
 * round-robin through their inboxes; a worker keeps a connection for life.
 *
 * SIGTERM/SIGINT: stop accepting, /healthz turns 503, workers stop reading,
 * deliver what they already accepted (bounded by --drain-timeout), send
 * ERROR shutdown, close; then exit 0. SIGHUP: reload the reloadable options
 * (docs/CONFIG.md) from the file and environment.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "broker.h"
#include "clock.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

extern char **environ;

void fo_broker_apply_limits(fo_broker_t *b, const fo_config_t *c)
{
    atomic_store(&b->lim.max_output, c->max_output);
    atomic_store(&b->lim.slow_policy, (int)c->slow_policy);
    atomic_store(&b->lim.ping_interval_ms, c->ping_interval_ms);
    atomic_store(&b->lim.idle_timeout_ms, c->idle_timeout_ms);
    atomic_store(&b->lim.drain_timeout_ms, c->drain_timeout_ms);
    atomic_store(&b->lim.read_budget, c->read_budget);
    atomic_store(&b->lim.retention_msgs, c->retention_msgs);
    atomic_store(&b->lim.retention_bytes, c->retention_bytes);
    atomic_store(&b->lim.max_conns, c->max_conns);
    atomic_store(&b->mem.limit, c->max_memory);
}

/* Each connection is a descriptor: raise the soft limit to the hard one
 * and say so when --max-conns cannot be reached. */
static void raise_fd_limit(int max_conns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max_conns + 64)
        fo_warn(0, "open-file limit %llu is below --max-conns %d + 64: raise it (ulimit -n)",
                (unsigned long long)rl.rlim_cur, max_conns);
}

static int group_for(const void *ud, const char *topic)
{
    return fo_mcast_group_for(ud, topic);
}

/* Listen on HOST:PORT; -1 with a message on failure. */
static int listen_on(const char *hostport)
{
    char host[256];
    uint16_t port;
    if (fo_parse_hostport(hostport, host, sizeof host, &port)) {
        fprintf(stderr, "fanoutd: --listen: bad address \"%s\"\n", hostport);
        return -1;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    struct addrinfo *ai;
    int rc = getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai);
    if (rc) {
        fprintf(stderr, "fanoutd: --listen %s: %s\n", hostport, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 4096)) {
        fprintf(stderr, "fanoutd: cannot listen on %s: %s\n", hostport, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

typedef struct {
    fo_broker_t *b;
    uint64_t start_ms;
} http_ctx_t;

static int http_handler(void *ud, const char *path, fo_buf_t *body, const char **ctype)
{
    http_ctx_t *h = ud;
    fo_broker_t *b = h->b;
    *ctype = "text/plain; charset=utf-8";
    if (!strcmp(path, "/healthz")) {
        int draining = atomic_load(&b->draining);
        const char *s = draining ? "draining\n" : "ok\n";
        fo_buf_append(body, s, strlen(s));
        return draining ? 503 : 200;
    }
    if (!strcmp(path, "/metrics")) {
        const fo_stats_t *st[64];
        for (int i = 0; i < b->nworkers; i++)
            st[i] = &b->workers[i]->stats;
        fo_metrics_src_t src = {
            .workers = st, .nworkers = b->nworkers,
            .topics = fo_registry_topics(b->reg),
            .memory_bytes = atomic_load(&b->mem.used),
            .memory_limit = atomic_load(&b->mem.limit),
            .uptime_s = (fo_clock_ms() - h->start_ms) / 1000,
            .version = FO_VERSION,
        };
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        fo_metrics_render(&src, body);
        return 200;
    }
    fo_buf_append(body, "not found\n", 10);
    return 404;
}

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
    ssize_t w = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    close(fd);
}

/* Accept what is pending; returns -1 when accept() is out of fds. */
static int accept_all(fo_broker_t *b, int lfd, int *rr)
{
    for (int i = 0; i < 256; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                FO_LOG_RATE(FO_LOG_ERROR, 0, "accept: %s (pausing accepts)", strerror(errno));
                return -1;
            }
            return 0;
        }
        if (atomic_fetch_add(&b->conns, 1) >= LIM(b, max_conns)) {
            atomic_fetch_sub(&b->conns, 1);
            FO_LOG_RATE(FO_LOG_WARN, 0, "connection refused: --max-conns %d reached", LIM(b, max_conns));
            refuse(fd, FANOUT__ERROR_CODE__ERR_MAX_CONNS, "too many connections");
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fo_item_t it = { .kind = FO_ITEM_CONN, .u.fd = fd };
        int w = (*rr)++ % b->nworkers;
        if (fo_inbox_post(&b->workers[w]->inbox, &it, 1)) {
            atomic_fetch_sub(&b->conns, 1);
            close(fd);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static fo_broker_t broker;
    fo_broker_t *b = &broker;
    int rc = 1, lfd = -1, sfd = -1, epfd = -1, started = 0;
    fo_http_t *http = NULL;
    char err[512];
    int exit_now = 0;

    fo_config_defaults(&b->cfg);
    if (fo_config_load(&b->cfg, argc, argv, environ, stdout, &exit_now, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (exit_now)
        return 0;
    fo_log_set_level(b->cfg.log_level);
    fo_log_set_worker(-1);
    raise_fd_limit(b->cfg.max_conns);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);

    b->nworkers = b->cfg.threads > 0 ? b->cfg.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (b->nworkers < 1)
        b->nworkers = 1;
    if (b->nworkers > 64)      /* the publish path keeps a 64-bit worker mask */
        b->nworkers = 64;
    b->epoch = fo_realtime_ns();
    snprintf(b->server_id, sizeof b->server_id, "%016llx%08x",
             (unsigned long long)b->epoch, (unsigned)getpid());
    fo_broker_apply_limits(b, &b->cfg);

    if (fo_mcast_create(&b->cfg, b->epoch, &b->mcast)) {
        fprintf(stderr, "fanoutd: cannot set up multicast (see --mcast-group)\n");
        goto out;
    }
    if (fo_registry_create(b->nworkers, b->cfg.max_topics, group_for, b->mcast, &b->reg))
        goto out;
    if ((lfd = listen_on(b->cfg.listen)) < 0)
        goto out;
    b->workers = calloc((size_t)b->nworkers, sizeof *b->workers);
    if (!b->workers)
        goto out;
    for (int i = 0; i < b->nworkers; i++)
        if (fo_worker_create(b, i, &b->workers[i])) {
            fprintf(stderr, "fanoutd: cannot create worker %d\n", i);
            goto out;
        }
    for (; started < b->nworkers; started++)
        if (fo_worker_start(b->workers[started]))
            goto out;
    http_ctx_t hctx = { b, fo_clock_ms() };
    fo_err_t herr = fo_http_create(b->cfg.http, http_handler, &hctx, &http);
    if (herr) {
        fprintf(stderr, "fanoutd: cannot listen on --http %s: %s\n", b->cfg.http,
                herr == FO_ERR_IO ? strerror(errno) : fo_strerror(herr));
        goto out;
    }

    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = sfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);
    if (http) {
        ev.data.fd = fo_http_fd(http);
        epoll_ctl(epfd, EPOLL_CTL_ADD, ev.data.fd, &ev);
    }
    fo_info(0, "fanoutd %s listening on %s, %d workers, http %s", FO_VERSION,
            b->cfg.listen, b->nworkers, b->cfg.http);

    /* SIGHUP reloads into this copy, which only the main thread touches;
     * b->cfg stays as it was at start (workers read it without locks) and
     * the reloadable values reach the workers through b->lim's atomics. */
    static fo_config_t reload_cfg;
    reload_cfg = b->cfg;
    int rr = 0, draining = 0;
    uint64_t accept_paused_until = 0;
    for (;;) {
        struct epoll_event evs[8];
        int n = epoll_wait(epfd, evs, 8, draining || accept_paused_until ? 20 : 1000);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                if (accept_all(b, lfd, &rr) < 0) {
                    epoll_ctl(epfd, EPOLL_CTL_DEL, lfd, NULL);
                    accept_paused_until = fo_clock_ms() + 100;
                }
            } else if (fd == sfd) {
                struct signalfd_siginfo si;
                while (read(sfd, &si, sizeof si) == sizeof si) {
                    if (si.ssi_signo == SIGHUP) {
                        if (fo_config_reload(&reload_cfg, environ, err, sizeof err)) {
                            fo_error(0, "SIGHUP: reload failed, keeping the old values: %s",
                                     strncmp(err, "fanoutd: ", 9) ? err : err + 9);
                        } else {
                            fo_broker_apply_limits(b, &reload_cfg);
                            fo_log_set_level(reload_cfg.log_level);
                            fo_info(0, "SIGHUP: configuration reloaded");
                        }
                    } else if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !draining) {
                        draining = 1;
                        fo_info(0, "%s: draining (at most %u ms)", strsignal((int)si.ssi_signo),
                                LIM(b, drain_timeout_ms));
                        epoll_ctl(epfd, EPOLL_CTL_DEL, lfd, NULL);
                        close(lfd);
                        lfd = -1;
                        accept_paused_until = 0;
                        atomic_store(&b->draining, 1);
                        for (int k = 0; k < b->nworkers; k++)
                            fo_worker_wake(b->workers[k]);
                    }
                }
            } else if (http && fd == fo_http_fd(http)) {
                fo_http_poll(http);
            }
        }
        if (accept_paused_until && fo_clock_ms() >= accept_paused_until && lfd >= 0) {
            accept_paused_until = 0;
            ev.events = EPOLLIN;
            ev.data.fd = lfd;
            epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
        }
        if (draining && atomic_load(&b->quiesced) == b->nworkers) {
            /* every worker stopped reading; wait for them to finish */
            break;
        }
    }
    for (int i = 0; i < started; i++)
        fo_worker_join(b->workers[i]);
    started = 0;
    fo_info(0, "stopped");
    rc = 0;
out:
    if (started) {   /* failed after starting workers: stop them */
        atomic_store(&b->draining, 1);
        for (int i = 0; i < started; i++)
            fo_worker_wake(b->workers[i]);
        for (int i = 0; i < started; i++)
            fo_worker_join(b->workers[i]);
    }
    fo_http_destroy(http);
    for (int i = 0; b->workers && i < b->nworkers; i++)
        fo_worker_destroy(b->workers[i]);
    free(b->workers);
    fo_registry_destroy(b->reg);
    fo_msg_caches_release();
    fo_mcast_destroy(b->mcast);
    if (lfd >= 0)
        close(lfd);
    if (sfd >= 0)
        close(sfd);
    if (epfd >= 0)
        close(epfd);
    return rc;
}
