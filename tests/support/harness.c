/* harness.c -- integration-test support (see harness.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "harness.h"

uint64_t fo_tb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int fo_tb_wrapped(void)
{
    const char *w = getenv("FO_BROKER_WRAP");
    return w && *w;
}

const char *fo_tb_build_dir(void)
{
    const char *b = getenv("FO_BUILD");
    return b && *b ? b : "build";
}

int fo_tb_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) ||
        getsockname(s, (struct sockaddr *)&a, &l)) {
        if (s >= 0)
            close(s);
        return -1;
    }
    close(s);
    return ntohs(a.sin_port);
}

static int dial_rcvbuf(int port, int rcvbuf)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0)
        return -1;
    /* before connect, so the window is small from the start (this also
     * turns off receive-buffer autotuning, up to 32 MiB here) */
    if (rcvbuf > 0)
        setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) {
        close(s);
        return -1;
    }
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

static int dial(int port) { return dial_rcvbuf(port, 0); }

int fo_tb_http_get(int port, const char *path, char *buf, size_t len)
{
    return fo_tb_http_get_auth(port, path, NULL, buf, len);
}

int fo_tb_mcast_sniffer(const char *group, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    struct ip_mreqn mr = { .imr_ifindex = 0 };
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        inet_pton(AF_INET, group, &a.sin_addr) != 1 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    mr.imr_multiaddr = a.sin_addr;
    inet_pton(AF_INET, "127.0.0.1", &mr.imr_address);
    if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int fo_tb_http_get_auth(int port, const char *path, const char *authorization, char *buf, size_t len)
{
    int s = dial(port);
    if (s < 0)
        return -1;
    struct timeval tv = { 5, 0 };
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[768];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s%s%s\r\n", path,
                     authorization ? "Authorization: " : "", authorization ? authorization : "",
                     authorization ? "\r\n" : "");
    if (write(s, req, (size_t)n) != n) {
        close(s);
        return -1;
    }
    size_t got = 0;
    ssize_t k;
    while (got + 1 < len && (k = read(s, buf + got, len - 1 - got)) > 0)
        got += (size_t)k;
    buf[got] = 0;
    close(s);
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    char *body = strstr(buf, "\r\n\r\n");
    if (body)
        memmove(buf, body + 4, strlen(body + 4) + 1);
    return status;
}

/* Brokers still running when the test process exits (a failed assertion
 * skips fo_tb_stop) are killed, so no test leaves a process behind. */
#define MAX_LIVE 64
static pid_t live[MAX_LIVE];

static void kill_leftovers(void)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}

static void track(pid_t pid, int on)
{
    static int registered;
    if (!registered) {
        atexit(kill_leftovers);
        registered = 1;
    }
    for (int i = 0; i < MAX_LIVE; i++)
        if (on ? live[i] == 0 : live[i] == pid) {
            live[i] = on ? pid : 0;
            return;
        }
}

int fo_tb_tls(void)
{
    const char *t = getenv("FO_TEST_TLS");
    return t && !strcmp(t, "1");
}

/* Under FO_TEST_TLS: a broker's client port -> its TLS port. */
static struct { int port, tls_port; } tls_map[MAX_LIVE];

static void map_tls(int port, int tls_port)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (tls_port ? tls_map[i].port == 0 : tls_map[i].port == port) {
            tls_map[i].port = tls_port ? port : 0;
            tls_map[i].tls_port = tls_port;
            return;
        }
}

static int tls_port_of(int port)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (tls_map[i].port == port)
            return tls_map[i].tls_port;
    return 0;
}

static int start(fo_tb_t *b, const char *const *extra, int tls, int again);

int fo_tb_start(fo_tb_t *b, const char *const *extra) { return start(b, extra, fo_tb_tls(), 0); }
int fo_tb_start_tls(fo_tb_t *b, const char *const *extra) { return start(b, extra, 1, 0); }

int fo_tb_restart(fo_tb_t *b, const char *const *extra)
{
    if (b->pid > 0)
        fo_tb_stop(b);
    return start(b, extra, b->tls_port != 0, 1);
}

static int start(fo_tb_t *b, const char *const *extra, int tls, int again)
{
    if (!again) {
        memset(b, 0, sizeof *b);
        b->port = fo_tb_free_port();
        b->http_port = fo_tb_free_port();
    }
    static char tls_listen[64], cert[300], key[300];
    const char *certs = tls ? fo_tb_certs() : NULL;
    if (tls && !certs)
        return -1;
    if (tls) {
        if (!again)
            b->tls_port = fo_tb_free_port();
        snprintf(tls_listen, sizeof tls_listen, "127.0.0.1:%d", b->tls_port);
        snprintf(cert, sizeof cert, "%s/server.pem", certs);
        snprintf(key, sizeof key, "%s/server.key", certs);
    }
    snprintf(b->plain, sizeof b->plain, "127.0.0.1:%d", b->port);
    snprintf(b->addr, sizeof b->addr, "%s", b->plain);
    if (tls) {
        snprintf(b->tls_addr, sizeof b->tls_addr, "tls://127.0.0.1:%d", b->tls_port);
        if (fo_tb_tls()) {
            /* libfanout and the CLI: the TLS port, trusting the test CA */
            char ca[300];
            snprintf(ca, sizeof ca, "%s/ca.pem", certs);
            setenv("SSL_CERT_FILE", ca, 1);
            snprintf(b->addr, sizeof b->addr, "%s", b->tls_addr);
        }
    }
    char listen[64], http[64], bin[512];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", b->port);
    snprintf(http, sizeof http, "127.0.0.1:%d", b->http_port);
    snprintf(bin, sizeof bin, "%s/fanoutd", fo_tb_build_dir());
    snprintf(b->log_path, sizeof b->log_path, "%s/test-logs", fo_tb_build_dir());
    mkdir(b->log_path, 0755);
    snprintf(b->log_path, sizeof b->log_path, "%s/test-logs/fanoutd-%d-%d.log",
             fo_tb_build_dir(), (int)getpid(), b->port);
    /* FO_BROKER_WRAP, e.g. "valgrind --error-exitcode=99 --leak-check=full",
     * runs the broker under a tool (make valgrind). */
    const char *argv[80];
    int argc = 0;
    static char wrap[512];
    const char *w = getenv("FO_BROKER_WRAP");
    if (w && *w) {
        snprintf(wrap, sizeof wrap, "%s", w);
        for (char *t = strtok(wrap, " "); t && argc < 16; t = strtok(NULL, " "))
            argv[argc++] = t;
    }
    const char *fixed[] = { bin, "--listen", listen, "--http", http, "--threads", "2" };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[argc++] = fixed[i];
    if (tls) {
        const char *t[] = { "--tls-listen", tls_listen, "--tls-cert", cert, "--tls-key", key };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            argv[argc++] = t[i];
    }
    for (int i = 0; extra && extra[i] && argc < 78; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(b->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            fd = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        dup2(fd, 1);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    b->pid = pid;
    track(pid, 1);
    uint64_t deadline = fo_tb_now_ms() + (w && *w ? 60000 : 10000);
    char body[256];
    while (fo_tb_now_ms() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            track(pid, 0);
            b->pid = 0;
            fprintf(stderr, "fanoutd exited at start; log %s\n", b->log_path);
            return -1;
        }
        if (fo_tb_http_get(b->http_port, "/healthz", body, sizeof body) == 200) {
            if (tls && fo_tb_tls())
                map_tls(b->port, b->tls_port);
            return 0;
        }
        struct timespec ts = { 0, 10 * 1000000 };
        nanosleep(&ts, NULL);   /* polling a condition, with a deadline */
    }
    fo_tb_stop(b);
    return -1;
}

void fo_tb_signal(fo_tb_t *b, int sig)
{
    if (b->pid > 0)
        kill(b->pid, sig);
}

int fo_tb_stop(fo_tb_t *b)
{
    if (b->pid <= 0)
        return -1;
    track(b->pid, 0);
    map_tls(b->port, 0);
    kill(b->pid, SIGTERM);
    uint64_t deadline = fo_tb_now_ms() + 15000;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(b->pid, &st, WNOHANG);
        if (r == b->pid)
            break;
        if (fo_tb_now_ms() >= deadline) {
            kill(b->pid, SIGKILL);
            waitpid(b->pid, &st, 0);
            b->pid = 0;
            return -1;
        }
        struct timespec ts = { 0, 5 * 1000000 };
        nanosleep(&ts, NULL);
    }
    b->pid = 0;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
}

double fo_tb_metric(const fo_tb_t *b, const char *name)
{
    static char buf[1 << 20];
    if (fo_tb_http_get(b->http_port, "/metrics", buf, sizeof buf) != 200)
        return -1;
    size_t nl = strlen(name);
    for (char *line = buf; line && *line; ) {
        char *end = strchr(line, '\n');
        if (!strncmp(line, name, nl) && line[nl] == ' ')
            return strtod(line + nl + 1, NULL);
        line = end ? end + 1 : NULL;
    }
    return -1;
}

int fo_tb_wait_metric(const fo_tb_t *b, const char *name, double want, int timeout_ms)
{
    uint64_t deadline = fo_tb_now_ms() + (uint64_t)timeout_ms;
    do {
        if (fo_tb_metric(b, name) >= want)
            return 0;
        struct timespec ts = { 0, 10 * 1000000 };
        nanosleep(&ts, NULL);
    } while (fo_tb_now_ms() < deadline);
    return -1;
}

/* ------------------------------------------------------------ raw client */

int fo_tc_connect(fo_tc_t *c, int port) { return fo_tc_connect_rcvbuf(c, port, 0); }

static int connect_plain(fo_tc_t *c, int port, int rcvbuf)
{
    memset(c, 0, sizeof *c);
    c->fd = dial_rcvbuf(port, rcvbuf);
    if (c->fd < 0)
        return -1;
    fo_decoder_init(&c->dec, FO_MAX_FRAME_LIMIT);
    if (fo_arena_init(&c->arena, 4096, 0)) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

int fo_tc_connect_plain(fo_tc_t *c, int port) { return connect_plain(c, port, 0); }

int fo_tc_connect_rcvbuf(fo_tc_t *c, int port, int rcvbuf)
{
    int tls_port = fo_tb_tls() ? tls_port_of(port) : 0;
    if (tls_port) {
        fo_tc_tls_t o = { .rcvbuf = rcvbuf };
        int rc = fo_tc_connect_tls(c, tls_port, &o);
        if (rc)
            fprintf(stderr, "fo_tc_connect: TLS to port %d: %s\n", tls_port, o.err);
        return rc;
    }
    return connect_plain(c, port, rcvbuf);
}

/* ------------------------------------------------------------ TLS client
 *
 * OpenSSL on a non-blocking socket, each call completed with poll() so it
 * behaves like the blocking plain client (and never hangs past a
 * deadline waiting for a record that only carried a session ticket). */

/* Wait for what SSL_get_error asked (ms; -1 = no limit). 1 ready, 0
 * timeout, -1 error (the connection is unusable). */
static int tls_wait(fo_tc_t *c, int r, int timeout_ms)
{
    int e = SSL_get_error(c->ssl, r);
    short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (!ev)
        return -1;             /* the caller reads the error queue */
    struct pollfd p = { .fd = c->fd, .events = ev };
    for (;;) {
        int k = poll(&p, 1, timeout_ms);
        if (k < 0 && errno == EINTR)
            continue;
        return k > 0 ? 1 : k == 0 ? 0 : -1;
    }
}

static SSL_CTX *client_ctx(const fo_tc_tls_t *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    char ca[300];
    const char *certs = fo_tb_certs();
    if (!o->ca_file && certs)
        snprintf(ca, sizeof ca, "%s/ca.pem", certs);
    else
        snprintf(ca, sizeof ca, "%s", o->ca_file ? o->ca_file : "");
    if (ca[0]) {
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            snprintf(err, errlen, "cannot load CA %.200s", ca);
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (o->cert_file && (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1 ||
                         SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1)) {
        snprintf(err, errlen, "cannot load client certificate %.200s", o->cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (o->max_version) {
        SSL_CTX_set_security_level(ctx, 0);      /* let an old version be offered */
        SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
        SSL_CTX_set_min_proto_version(ctx, 0);
        SSL_CTX_set_max_proto_version(ctx, o->max_version);
    }
    return ctx;
}

int fo_tc_connect_tls(fo_tc_t *c, int port, fo_tc_tls_t *o)
{
    fo_tc_tls_t none = {0};
    if (!o)
        o = &none;
    o->err[0] = '\0';
    signal(SIGPIPE, SIG_IGN);          /* OpenSSL writes with write(2) */
    if (connect_plain(c, port, o->rcvbuf)) {
        snprintf(o->err, sizeof o->err, "connect: %s", strerror(errno));
        return -1;
    }
    /* the default (FO_TEST_TLS) context is made once */
    static SSL_CTX *def;
    int is_default = !o->ca_file && !o->cert_file && !o->max_version;
    SSL_CTX *ctx = is_default && def ? def : client_ctx(o, o->err, sizeof o->err);
    if (!ctx)
        goto fail;
    if (is_default)
        def = ctx;
    c->ssl = SSL_new(ctx);
    if (!is_default)
        SSL_CTX_free(ctx);             /* the session keeps its reference */
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        goto fail;
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    SSL_set1_host(c->ssl, "localhost");
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    uint64_t deadline = fo_tb_now_ms() + 20000;     /* generous under valgrind */
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        uint64_t now = fo_tb_now_ms();
        if (now >= deadline || tls_wait(c, r, (int)(deadline - now)) != 1) {
            unsigned long e = ERR_peek_last_error();
            long v = SSL_get_verify_result(c->ssl);
            snprintf(o->err, sizeof o->err, "%s%s%s", e ? ERR_reason_error_string(e) : "closed or timed out",
                     v != X509_V_OK ? ": " : "", v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
            goto fail;
        }
    }
fail:
    if (!o->err[0])
        snprintf(o->err, sizeof o->err, "cannot set up TLS");
    ERR_clear_error();
    fo_tc_close(c);
    return -1;
}

void fo_tc_peer_cn(const fo_tc_t *c, char *out, size_t len)
{
    out[0] = '\0';
    X509 *x = c->ssl ? SSL_get0_peer_certificate(c->ssl) : NULL;
    if (x)
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)len);
}

void fo_tc_close(fo_tc_t *c)
{
    if (c->ssl) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);    /* close_notify, best effort */
        SSL_free(c->ssl);
        c->ssl = NULL;
        ERR_clear_error();
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    fo_decoder_destroy(&c->dec);
    fo_arena_destroy(&c->arena);
}

static int tls_send(fo_tc_t *c, const uint8_t *p, size_t n)
{
    while (n) {
        size_t k = 0;
        ERR_clear_error();
        int r = SSL_write_ex(c->ssl, p, n, &k);
        if (r == 1) {
            p += k;
            n -= k;
            continue;
        }
        if (tls_wait(c, r, -1) != 1)
            return -1;
    }
    return 0;
}

/* One read into the decoder: 1 bytes came, 0 timeout, -1 closed/error. */
static int tls_recv_some(fo_tc_t *c, uint64_t deadline)
{
    for (;;) {
        if (fo_buf_reserve(&c->dec.buf, 65536))
            return -1;
        size_t k = 0;
        ERR_clear_error();
        int r = SSL_read_ex(c->ssl, fo_buf_tail(&c->dec.buf), fo_buf_room(&c->dec.buf), &k);
        if (r == 1) {
            fo_buf_commit(&c->dec.buf, k);
            return 1;
        }
        uint64_t now = fo_tb_now_ms();
        int w = tls_wait(c, r, now >= deadline ? 0 : (int)(deadline - now));
        if (w != 1)
            return w;
    }
}

int fo_tc_send_raw(fo_tc_t *c, const void *p, size_t n)
{
    if (c->ssl)
        return tls_send(c, p, n);
    const char *q = p;
    while (n) {
        ssize_t k = send(c->fd, q, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        q += k;
        n -= (size_t)k;
    }
    return 0;
}

int fo_tc_send(fo_tc_t *c, const Fanout__Frame *f)
{
    size_t n = fo_frame_size(f);
    uint8_t *b = malloc(n);
    if (!b)
        return -1;
    fo_frame_pack(f, b);
    int rc = fo_tc_send_raw(c, b, n);
    free(b);
    return rc;
}

int fo_tc_recv(fo_tc_t *c, int timeout_ms, Fanout__Frame **out)
{
    uint64_t deadline = fo_tb_now_ms() + (uint64_t)timeout_ms;
    fo_arena_reset(&c->arena);
    for (;;) {
        const uint8_t *body;
        size_t len;
        fo_err_t e = fo_decoder_next(&c->dec, &body, &len);
        if (e == FO_OK)
            return fo_frame_unpack(body, len, &c->arena, out) ? -1 : 1;
        if (e != FO_ERR_AGAIN)
            return -1;
        if (c->ssl) {
            int r = tls_recv_some(c, deadline);
            if (r != 1)
                return r;
            continue;
        }
        /* poll at least once, so timeout 0 means "what is there now" */
        uint64_t now = fo_tb_now_ms();
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        int r = poll(&pfd, 1, now >= deadline ? 0 : (int)(deadline - now));
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return 0;
        if (fo_buf_reserve(&c->dec.buf, 65536))
            return -1;
        ssize_t k = recv(c->fd, fo_buf_tail(&c->dec.buf), fo_buf_room(&c->dec.buf), 0);
        if (k <= 0)
            return -1;
        fo_buf_commit(&c->dec.buf, (size_t)k);
    }
}

int fo_tc_open(fo_tc_t *c, int port, const char *name) { return fo_tc_open_rcvbuf(c, port, name, 0); }

int fo_tc_open_rcvbuf(fo_tc_t *c, int port, const char *name, int rcvbuf)
{
    if (fo_tc_connect_rcvbuf(c, port, rcvbuf))
        return -1;
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1;
    h.version = 1;
    h.client_name = (char *)name;
    f.body_case = FANOUT__FRAME__BODY_HELLO;
    f.hello = &h;
    Fanout__Frame *r;
    if (fo_tc_send(c, &f) || fo_tc_recv(c, 20000, &r) != 1 ||
        r->body_case != FANOUT__FRAME__BODY_WELCOME) {  /* 5 s: generous under valgrind */
        fo_tc_close(c);
        return -1;
    }
    return 0;
}

int fo_tc_send_hello(fo_tc_t *c, const char *user, const char *password, const char *token)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1;
    h.version = 1;
    h.client_name = (char *)"login-test";
    h.user = (char *)user;
    h.password = (char *)password;
    h.token = (char *)token;
    f.body_case = FANOUT__FRAME__BODY_HELLO;
    f.hello = &h;
    return fo_tc_send(c, &f);
}

int fo_tc_hello(fo_tc_t *c, const char *user, const char *password, const char *token,
                char *text, size_t textlen)
{
    if (text && textlen)
        *text = '\0';
    Fanout__Frame *r;
    /* failures answer after a delay that grows to 5 s (auth.h) */
    if (fo_tc_send_hello(c, user, password, token) || fo_tc_recv(c, 20000, &r) != 1)
        return -1;
    if (r->body_case == FANOUT__FRAME__BODY_WELCOME)
        return 0;
    int code = -1;
    if (r->body_case == FANOUT__FRAME__BODY_ERROR) {
        code = r->error->has_code ? (int)r->error->code : -1;
        if (text && textlen)
            snprintf(text, textlen, "%s", r->error->text ? r->error->text : "");
    }
    return code;
}

int fo_tc_login(fo_tc_t *c, int port, const char *user, const char *password, const char *token,
                char *text, size_t textlen)
{
    if (text && textlen)
        *text = '\0';
    if (fo_tc_connect(c, port))
        return -1;
    int rc = fo_tc_hello(c, user, password, token, text, textlen);
    if (rc)
        fo_tc_close(c);
    return rc;
}

int fo_tc_subscribe(fo_tc_t *c, uint32_t sid, const char *filter, const char *queue)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1;
    s.sid = sid;
    s.filter = (char *)filter;
    s.queue = (char *)queue;
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    f.has_req = 1;
    f.req = 1000000 + sid;
    if (fo_tc_send(c, &f))
        return -1;
    return fo_tc_wait_ack(c, f.req, 5000);
}

int fo_tc_publish(fo_tc_t *c, const char *topic, const void *p, size_t n, uint64_t req)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Publish pb = FANOUT__PUBLISH__INIT;
    pb.topic = (char *)topic;
    pb.has_payload = 1;
    pb.payload.data = (uint8_t *)p;
    pb.payload.len = n;
    f.body_case = FANOUT__FRAME__BODY_PUBLISH;
    f.publish = &pb;
    if (req) {
        f.has_req = 1;
        f.req = req;
    }
    return fo_tc_send(c, &f);
}

int fo_tc_wait_ack(fo_tc_t *c, uint64_t req, int timeout_ms)
{
    uint64_t deadline = fo_tb_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = fo_tb_now_ms();
        if (now >= deadline)
            return -1;
        Fanout__Frame *f;
        int r = fo_tc_recv(c, (int)(deadline - now), &f);
        if (r != 1)
            return -1;
        if (f->body_case == FANOUT__FRAME__BODY_ACK && f->ack->ref == req)
            return 0;
        if (f->body_case == FANOUT__FRAME__BODY_ERROR && f->error->ref == req)
            return -1;
    }
}

int fo_tc_wait_closed(fo_tc_t *c, int timeout_ms, int *err_code)
{
    uint64_t deadline = fo_tb_now_ms() + (uint64_t)timeout_ms;
    if (err_code)
        *err_code = -1;
    for (;;) {
        uint64_t now = fo_tb_now_ms();
        if (now >= deadline)
            return -1;
        Fanout__Frame *f;
        int r = fo_tc_recv(c, (int)(deadline - now), &f);
        if (r < 0)
            return 0;
        if (r == 1 && f->body_case == FANOUT__FRAME__BODY_ERROR && err_code)
            *err_code = f->error->code;
    }
}

/* ------------------------------------------------------------ processes */

static void resolve(const char *arg0, char *out, size_t len)
{
    if (strchr(arg0, '/'))
        snprintf(out, len, "%s", arg0);
    else
        snprintf(out, len, "%s/%s", fo_tb_build_dir(), arg0);
}

pid_t fo_tb_spawn(const char *const *argv, const char *stdout_path)
{
    char bin[512];
    resolve(argv[0], bin, sizeof bin);
    pid_t pid = fork();
    if (pid == 0) {
        if (stdout_path) {
            int fd = open(stdout_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0)
                dup2(fd, 1);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

int fo_tb_wait_pid(pid_t pid, int timeout_ms)
{
    uint64_t end = fo_tb_now_ms() + (uint64_t)timeout_ms;
    int st;
    while (fo_tb_now_ms() < end) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(5000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

void fo_tb_read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, len - 1, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
}

long fo_tb_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

int fo_tb_run(const char *const *argv, const char *input, char *out, size_t outlen,
              char *err, size_t errlen, int timeout_ms)
{
    char bin[512];
    resolve(argv[0], bin, sizeof bin);
    int in[2], o[2], e[2];
    if (pipe(in) || pipe(o) || pipe(e))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(o[1], 1);
        dup2(e[1], 2);
        close(in[1]);
        close(o[0]);
        close(e[0]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(o[1]);
    close(e[1]);
    if (input) {
        size_t n = strlen(input);
        const char *p = input;
        signal(SIGPIPE, SIG_IGN);
        while (n) {
            ssize_t k = write(in[1], p, n);
            if (k <= 0)
                break;
            p += k;
            n -= (size_t)k;
        }
    }
    close(in[1]);
    size_t og = 0, eg = 0;
    uint64_t deadline = fo_tb_now_ms() + (uint64_t)timeout_ms;
    struct pollfd pf[2] = { { o[0], POLLIN, 0 }, { e[0], POLLIN, 0 } };
    int open_fds = 2, timed_out = 0;
    while (open_fds) {
        uint64_t now = fo_tb_now_ms();
        if (now >= deadline) {
            timed_out = 1;
            break;
        }
        if (poll(pf, 2, (int)(deadline - now)) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP)))
                continue;
            char tmp[4096];
            ssize_t k = read(pf[i].fd, tmp, sizeof tmp);
            if (k <= 0) {
                close(pf[i].fd);
                pf[i].fd = -1;
                open_fds--;
                continue;
            }
            char *dst = i ? err : out;
            size_t *got = i ? &eg : &og, cap = i ? errlen : outlen;
            if (dst && *got + 1 < cap) {
                size_t take = (size_t)k < cap - 1 - *got ? (size_t)k : cap - 1 - *got;
                memcpy(dst + *got, tmp, take);
                *got += take;
            }
        }
    }
    if (out && outlen)
        out[og] = 0;
    if (err && errlen)
        err[eg] = 0;
    for (int i = 0; i < 2; i++)
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    int st;
    if (timed_out) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        return -1;
    }
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void fo_tb_script_test(const char *path)
{
    if (geteuid() != 0) {
        printf("SKIP: not root: cannot create network namespaces\n");
        skip();
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "exec /bin/bash %s 2>&1", path);
    int st = system(cmd);              /* the script bounds its own run time */
    assert_true(st != -1 && WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        skip();
    assert_int_equal(WEXITSTATUS(st), 0);
}
