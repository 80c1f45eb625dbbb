/* main.c -- fanoutd's process lifecycle: start, run, stop.
 *
 * Order: config -> logging -> fd limit -> the acceptor (which blocks the
 * signals before any thread exists, so every thread inherits the mask and
 * only its signalfd sees them, and opens the listener) -> the broker
 * (multicast, registry, workers) -> HTTP -> the worker threads (only
 * once everything that can fail to open has opened) -> the acceptor's loop until
 * SIGTERM/SIGINT has drained the workers -> stop. Exit status: 0 after a
 * drain, 1 when something could not start, 2 on a usage error.
 * `fanoutd --hash-password` prints a hash for the users file instead
 * (users.h) and exits.
 * READY=1 goes to $NOTIFY_SOCKET once the listeners and the workers are up
 * (systemd Type=notify, notify.h); --check-config stops after the config.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include "acceptor.h"
#include "addr.h"
#include "broker.h"
#include "http.h"
#include "log.h"
#include "notify.h"
#include "tls.h"
#include "users.h"

extern char **environ;

/* Each connection is a descriptor: raise the soft limit to the hard one
 * and say so when --max-conns cannot be reached. */
static void raise_fd_limit(int max_conns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            (void)!getrlimit(RLIMIT_NOFILE, &rl);   /* report what we have */
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max_conns + 64)
        fo_warn(0, "open-file limit %llu is below --max-conns %d + 64: raise it (ulimit -n)",
                (unsigned long long)rl.rlim_cur, max_conns);
}

static void env_warning(void *ud, const char *line)
{
    (void)ud;
    fo_warn(0, "%s", line);
}

static void env_warning_stderr(void *ud, const char *line)
{
    (void)ud;
    fprintf(stderr, "fanoutd: warning: %s\n", line);
}

/* Whether a listen address ("HOST:PORT") is this host only, as far as
 * its text says (a literal loopback address or "localhost"); names are
 * not resolved here. */
static int listen_is_loopback(const char *hostport)
{
    fo_addr_t a;
    if (fo_addr_parse(hostport, FO_ADDR_NO_SCHEME | FO_ADDR_LISTEN, &a))
        return 0;
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, a.host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, a.host, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6);
    return !strcmp(a.host, "localhost");
}

/* --check-config: the configuration loaded and passed every check of
 * fo_config_load; here also what a start would refuse before serving
 * (as nats-server -t): the users file, the TLS files, and a listener other
 * hosts reach without logins (acceptor.c says the same at start). Exit 0
 * with one line on stdout, else 2 with the error on stderr. */
static int check_config(const fo_config_t *c)
{
    char line[1024], err[512], users[700] = "";
    fo_config_env_warnings(environ, env_warning_stderr, NULL);
    if (c->users_file[0]) {
        fo_users_t *t = NULL;
        if (fo_users_load(c->users_file, &t, err, sizeof err)) {
            fprintf(stderr, "%s%s\n", strncmp(err, "fanoutd: ", 9) ? "fanoutd: " : "", err);
            return 2;
        }
        size_t n = fo_users_count(t);
        snprintf(users, sizeof users, "; %zu user%s in %s", n, n == 1 ? "" : "s", c->users_file);
        fo_users_unref(t);
    }
    if (strcmp(c->tls_listen, "off")) {
        fo_tls_t *t = NULL;
        if (fo_tls_create(c, &t, err, sizeof err)) {
            fprintf(stderr, "%s%s\n", strncmp(err, "fanoutd: ", 9) ? "fanoutd: " : "", err);
            return 2;
        }
        fo_tls_destroy(t);
    }
    if (!c->users_file[0] && !c->user[0] && !c->allow_anonymous && !listen_is_loopback(c->listen)) {
        fprintf(stderr, "fanoutd: %s is reachable from other hosts and no users are configured: "
                "give --users FILE (or --user and --password), listen on 127.0.0.1, or pass "
                "--allow-anonymous to serve anyone (docs/SECURITY.md)\n", c->listen);
        return 2;
    }
    fo_config_summary(c, line, sizeof line);
    printf("fanoutd: %s%s\n", line, users);
    return 0;
}


static int run(fo_broker_t *b)
{
    char err[512];
    fo_acceptor_t *acc = NULL;
    fo_http_t *http = NULL;
    int rc = 1;
    if (fo_acceptor_create(b, &acc, err, sizeof err))
        goto out;
    if (fo_broker_init(b, err, sizeof err))
        goto out;
    fo_err_t e = fo_http_create(b->cfg.http, fo_broker_http, b, &http);
    if (e) {
        snprintf(err, sizeof err, "fanoutd: cannot listen on --http %s: %s", b->cfg.http,
                 e == FO_ERR_IO ? strerror(errno) : fo_strerror(e));
        goto out;
    }
    if (fo_acceptor_watch_http(acc, http)) {
        snprintf(err, sizeof err, "fanoutd: epoll_ctl: %s", strerror(errno));
        goto out;
    }
    if (fo_broker_start(b, err, sizeof err))
        goto out;
    if (strcmp(b->cfg.tls_listen, "off"))
        fo_info(0, "fanoutd %s listening on %s (plain) and %s (TLS), %d worker%s, http %s",
                FO_VERSION, b->cfg.listen, b->cfg.tls_listen, b->nworkers,
                FO_PLURAL(b->nworkers), b->cfg.http);
    else
        fo_info(0, "fanoutd %s listening on %s (plain; TLS off), %d worker%s, http %s",
                FO_VERSION, b->cfg.listen, b->nworkers, FO_PLURAL(b->nworkers), b->cfg.http);
    char ready[600];
    snprintf(ready, sizeof ready, "READY=1\nSTATUS=listening on %s%s%s, http %s",
             b->cfg.listen, strcmp(b->cfg.tls_listen, "off") ? " and TLS " : "",
             strcmp(b->cfg.tls_listen, "off") ? b->cfg.tls_listen : "", b->cfg.http);
    if (fo_notify(ready) < 0)
        fo_warn(0, "cannot tell NOTIFY_SOCKET we are ready: %s", strerror(errno));
    if (fo_acceptor_run(acc) == FO_OK)
        rc = 0;
    err[0] = '\0';
out:
    if (rc && err[0])
        fprintf(stderr, "%s\n", err);
    fo_broker_stop(b);
    if (rc == 0)
        fo_info(0, "stopped");
    fo_http_destroy(http);
    fo_acceptor_destroy(acc);
    return rc;
}

int main(int argc, char **argv)
{
    static fo_broker_t broker;
    char err[512];
    int exit_now = 0;
    if (argc >= 2 && !strcmp(argv[1], "--hash-password")) {
        if (argc > 2) {
            fprintf(stderr, "fanoutd: --hash-password takes no other option (it reads the secret "
                            "from the terminal or stdin)\n");
            return 2;
        }
        return fo_users_hash_cmd(stdin, stdout, stderr);
    }
    fo_config_defaults(&broker.cfg);
    if (fo_config_load(&broker.cfg, argc, argv, environ, stdout, &exit_now, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (exit_now)
        return 0;
    if (broker.cfg.check_only)
        return check_config(&broker.cfg);
    fo_log_set_level(broker.cfg.log_level);
    fo_log_set_format(broker.cfg.log_format);
    fo_log_set_worker(-1);
    fo_config_env_warnings(environ, env_warning, NULL);
    raise_fd_limit(broker.cfg.max_conns);
    return run(&broker);
}
