/* tls.c -- libfanout's TLS context and sessions (see tls.h for the
 * design: one lock around every SSL call, never held while waiting).
 *
 * The error queue is cleared before each SSL call so that SSL_get_error
 * describes that call; SSL_ERROR_SYSCALL and SSL_ERROR_SSL are fatal and
 * forbid a close_notify. A broker that closes the TCP connection without
 * close_notify (a crash, a kill) reads as FO_ERR_CLOSED, as on plain TCP:
 * the framing, not TLS, says whether a frame was cut short.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "clock.h"
#include "tls.h"

struct fo__tls_ctx {
    SSL_CTX *ctx;
    BIO_METHOD *bio;          /* send(MSG_NOSIGNAL) / recv on an fd      */
    int verify;               /* 0: tls_insecure_skip_verify             */
};

struct fo__tls {
    pthread_mutex_t mu;       /* every SSL call on ssl                   */
    SSL *ssl;
    int fd;
    int want_write;           /* the last read stopped on WANT_WRITE     */
    int broken;               /* a fatal error: no close_notify          */
    char why[200];
};

/* ------------------------------------------------------------ the BIO */

/* The fd is the BIO's data; OpenSSL's own socket BIO write()s, which
 * raises SIGPIPE when the broker has gone. */
static int bio_write(BIO *b, const char *p, size_t n, size_t *done)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w >= 0) {
            *done = (size_t)w;
            return 1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_write(b);
        return 0;
    }
}

static int bio_read(BIO *b, char *p, size_t n, size_t *got)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t r = recv(fd, p, n, 0);
        if (r > 0) {
            *got = (size_t)r;
            return 1;
        }
        if (r == 0) {
            BIO_set_flags(b, BIO_FLAGS_IN_EOF);   /* what BIO_eof reports */
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_read(b);
        return 0;
    }
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method(void)
{
    int idx = BIO_get_new_index();
    BIO_METHOD *m = idx > 0 ? BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK, "fanout socket") : NULL;
    if (m && (!BIO_meth_set_write_ex(m, bio_write) || !BIO_meth_set_read_ex(m, bio_read) ||
              !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create))) {
        BIO_meth_free(m);
        m = NULL;
    }
    return m;
}

/* ------------------------------------------------------------ context */

/* Keys are unencrypted: never prompt on a terminal for a passphrase. */
static int no_password(char *buf, int size, int rwflag, void *ud)
{
    (void)buf; (void)size; (void)rwflag; (void)ud;
    return 0;
}

/* The reason of the last OpenSSL error ("no start line"), or fallback. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : fallback;
}

static fo_err_t ctx_fail(char *err, size_t errlen, const char *what, const char *path)
{
    FILE *f = fopen(path, "r");           /* "no such file" beats "system lib" */
    if (f)
        fclose(f);
    if (err && errlen)
        snprintf(err, errlen, "TLS: %s \"%s\": %s", what, path,
                 f ? ssl_reason("does not load") : strerror(errno));
    ERR_clear_error();
    return FO_ERR_TLS;
}

static fo_err_t load_files(SSL_CTX *ctx, const fo_client_opts_t *o, char *err, size_t errlen)
{
    if (o->tls_ca_file && !o->tls_insecure_skip_verify) {
        if (SSL_CTX_load_verify_locations(ctx, o->tls_ca_file, NULL) != 1)
            return ctx_fail(err, errlen, "CA file", o->tls_ca_file);
    } else if (!o->tls_insecure_skip_verify && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return ctx_fail(err, errlen, "the system's CA store", X509_get_default_cert_file());
    }
    if (!o->tls_cert_file && o->tls_key_file) {
        if (err && errlen)
            snprintf(err, errlen, "TLS: a key file (\"%s\") without a certificate file",
                     o->tls_key_file);
        return FO_ERR_TLS;
    }
    if (!o->tls_cert_file)
        return FO_OK;
    const char *key = o->tls_key_file ? o->tls_key_file : o->tls_cert_file;
    if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert_file) != 1)
        return ctx_fail(err, errlen, "certificate file", o->tls_cert_file);
    int loaded = SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1;
    if (!loaded && ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH)
        return ctx_fail(err, errlen, "key file (PEM, unencrypted)", key);
    if (!loaded || SSL_CTX_check_private_key(ctx) != 1) {
        if (err && errlen)
            snprintf(err, errlen, "TLS: the key in \"%s\" does not match the certificate in \"%s\"",
                     key, o->tls_cert_file);
        ERR_clear_error();
        return FO_ERR_TLS;
    }
    return FO_OK;
}

fo_err_t fo__tls_ctx_new(const fo_client_opts_t *o, fo__tls_ctx_t **out, char *err,
                         size_t errlen)
{
    fo__tls_ctx_t *x = calloc(1, sizeof *x);
    if (!x || !(x->ctx = SSL_CTX_new(TLS_client_method())) || !(x->bio = bio_method())) {
        fo__tls_ctx_free(x);
        if (err && errlen)
            snprintf(err, errlen, "TLS: out of memory");
        ERR_clear_error();
        return FO_ERR_NOMEM;
    }
    SSL_CTX_set_min_proto_version(x->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(x->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* partial writes: the lock is let go after every record; a record the
     * socket did not take is retried from wherever the buffer is now */
    SSL_CTX_set_mode(x->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(x->ctx, 1);       /* many small records: fewer reads */
    SSL_CTX_set_default_passwd_cb(x->ctx, no_password);
    x->verify = !o->tls_insecure_skip_verify;
    SSL_CTX_set_verify(x->ctx, x->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    fo_err_t e = load_files(x->ctx, o, err, errlen);
    if (e) {
        fo__tls_ctx_free(x);
        return e;
    }
    *out = x;
    return FO_OK;
}

void fo__tls_ctx_free(fo__tls_ctx_t *x)
{
    if (!x)
        return;
    SSL_CTX_free(x->ctx);
    BIO_meth_free(x->bio);
    free(x);
}

/* ------------------------------------------------------------ sessions */

/* Record why a call failed, in t->why; returns the fo_err_t for it. */
static fo_err_t failed(fo__tls_t *t, int e, int sys_errno)
{
    unsigned long q = ERR_peek_last_error();
    t->broken = 1;
    fo_err_t ret = FO_ERR_TLS;
    if (e == SSL_ERROR_SYSCALL || (e == SSL_ERROR_SSL &&
                                   ERR_GET_REASON(q) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        if (sys_errno)
            snprintf(t->why, sizeof t->why, "%s", strerror(sys_errno));
        else
            snprintf(t->why, sizeof t->why, "the connection closed without close_notify");
        ret = sys_errno ? FO_ERR_IO : FO_ERR_CLOSED;
    } else {
        snprintf(t->why, sizeof t->why, "%s", ssl_reason("TLS error"));
    }
    ERR_clear_error();
    return ret;
}

/* Wait for the socket, at most until deadline_ms (UINT64_MAX: no end),
 * and at most cap_ms when cap_ms >= 0. FO_ERR_TIMEOUT past the deadline. */
static fo_err_t wait_fd(int fd, short events, uint64_t deadline_ms, int cap_ms)
{
    for (;;) {
        int tmo = -1;
        if (deadline_ms != UINT64_MAX) {
            uint64_t now = fo_clock_ms();
            if (now >= deadline_ms)
                return FO_ERR_TIMEOUT;
            tmo = deadline_ms - now > INT32_MAX ? INT32_MAX : (int)(deadline_ms - now);
        }
        if (cap_ms >= 0 && (tmo < 0 || tmo > cap_ms))
            tmo = cap_ms;
        struct pollfd p = { .fd = fd, .events = events };
        int n = poll(&p, 1, tmo);
        if (n >= 0 || errno != EINTR)
            return FO_OK;
    }
}

static int is_ip(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* SNI and the name the certificate must carry. 0 on failure. */
static int set_peer_name(SSL *ssl, const char *host, int verify)
{
    if (is_ip(host)) {
        /* no SNI for an address (RFC 6066 §3); the IP SANs are checked */
        return !verify || X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    }
    if (SSL_set_tlsext_host_name(ssl, host) != 1)
        return 0;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return !verify || SSL_set1_host(ssl, host) == 1;
}

/* The one line for a handshake that failed, and its code: FO_ERR_TLS,
 * or FO_ERR_CLOSED / FO_ERR_IO when the connection itself went. */
static fo_err_t handshake_error(fo__tls_t *t, int e, int sys_errno, const char *label,
                                char *err, size_t errlen)
{
    long v = SSL_get_verify_result(t->ssl);
    if (e == SSL_ERROR_SSL && v != X509_V_OK) {
        snprintf(err, errlen, "certificate verify failed: %s (%s)",
                 X509_verify_cert_error_string(v), label);
        ERR_clear_error();
        t->broken = 1;
        return FO_ERR_TLS;
    }
    fo_err_t r = failed(t, e, sys_errno);
    if (r == FO_ERR_CLOSED)
        snprintf(err, errlen, "TLS handshake with %s: the connection closed (is that a TLS port?)",
                 label);
    else
        snprintf(err, errlen, "TLS handshake with %s failed: %s", label, t->why);
    return r;
}

fo_err_t fo__tls_connect(fo__tls_ctx_t *x, int fd, const char *host, const char *label,
                         uint64_t deadline_ms, fo__tls_t **out, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    fo__tls_t *t = calloc(1, sizeof *t);
    if (!t || pthread_mutex_init(&t->mu, NULL)) {
        free(t);
        snprintf(err, errlen, "TLS: out of memory");
        return FO_ERR_NOMEM;
    }
    t->fd = fd;
    int fl = fcntl(fd, F_GETFL);
    BIO *bio = NULL;
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || !(t->ssl = SSL_new(x->ctx)) ||
        !(bio = BIO_new(x->bio)) || !set_peer_name(t->ssl, host, x->verify)) {
        BIO_free(bio);
        snprintf(err, errlen, "TLS: cannot set up a session for %s: %s", label,
                 ssl_reason("out of memory"));
        ERR_clear_error();
        t->broken = 1;
        fo__tls_close(t, 0);
        return FO_ERR_NOMEM;
    }
    BIO_set_data(bio, (void *)(intptr_t)fd);
    SSL_set_bio(t->ssl, bio, bio);
    SSL_set_connect_state(t->ssl);
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(t->ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(t->ssl, r), sys = errno;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_ms, -1)) {
                snprintf(err, errlen, "TLS handshake with %s: no answer in time", label);
                t->broken = 1;
                fo__tls_close(t, 0);
                return FO_ERR_TIMEOUT;
            }
            continue;
        }
        fo_err_t ret = handshake_error(t, e, sys, label, err, errlen);
        fo__tls_close(t, 0);
        return ret;
    }
    *out = t;
    return FO_OK;
}

fo_err_t fo__tls_write(fo__tls_t *t, const void *p, size_t n, uint64_t deadline_ms,
                       size_t *done)
{
    *done = 0;
    for (;;) {
        pthread_mutex_lock(&t->mu);
        ERR_clear_error();
        errno = 0;
        size_t w = 0;
        int ok = SSL_write_ex(t->ssl, p, n, &w);
        int e = ok ? SSL_ERROR_NONE : SSL_get_error(t->ssl, 0), sys = errno;
        fo_err_t ret = FO_OK;
        if (!ok && e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
            ret = failed(t, e, sys);
        pthread_mutex_unlock(&t->mu);
        if (ok) {
            *done = w;
            return FO_OK;
        }
        if (ret)
            return ret == FO_ERR_CLOSED ? FO_ERR_IO : ret;
        if (!deadline_ms)
            return FO_ERR_AGAIN;
        /* the lock is free while we wait: the reader reads on */
        if (wait_fd(t->fd, e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, deadline_ms,
                    e == SSL_ERROR_WANT_READ ? 10 : -1))
            return FO_ERR_TIMEOUT;
    }
}

fo_err_t fo__tls_read(fo__tls_t *t, void *p, size_t n, size_t *got)
{
    size_t total = 0;
    fo_err_t ret = FO_OK;
    pthread_mutex_lock(&t->mu);
    t->want_write = 0;
    while (total < n) {
        size_t r = 0;
        ERR_clear_error();
        errno = 0;
        if (SSL_read_ex(t->ssl, (char *)p + total, n - total, &r)) {
            total += r;
            continue;
        }
        int e = SSL_get_error(t->ssl, 0), sys = errno;
        if (e == SSL_ERROR_WANT_WRITE)
            t->want_write = 1;
        else if (e == SSL_ERROR_ZERO_RETURN)
            ret = FO_ERR_CLOSED;      /* close_notify: the broker ended it */
        else if (e != SSL_ERROR_WANT_READ)
            ret = failed(t, e, sys);
        break;
    }
    pthread_mutex_unlock(&t->mu);
    *got = total;
    return total ? FO_OK : ret;
}

int fo__tls_pending(fo__tls_t *t)
{
    pthread_mutex_lock(&t->mu);
    int p = SSL_has_pending(t->ssl);
    pthread_mutex_unlock(&t->mu);
    return p;
}

short fo__tls_events(fo__tls_t *t)
{
    pthread_mutex_lock(&t->mu);
    short ev = t->want_write ? POLLIN | POLLOUT : POLLIN;
    pthread_mutex_unlock(&t->mu);
    return ev;
}

const char *fo__tls_why(fo__tls_t *t, char *buf, size_t len)
{
    pthread_mutex_lock(&t->mu);           /* a writer may be failing now */
    snprintf(buf, len, "%s", t->why);
    pthread_mutex_unlock(&t->mu);
    return buf;
}

void fo__tls_close(fo__tls_t *t, int notify)
{
    if (!t)
        return;
    if (t->ssl && notify && !t->broken) {
        /* one close_notify, not waiting for the broker's */
        uint64_t deadline = fo_clock_ms() + 100;
        for (;;) {
            ERR_clear_error();
            int r = SSL_shutdown(t->ssl);
            if (r >= 0 || SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_WRITE ||
                wait_fd(t->fd, POLLOUT, deadline, -1))
                break;
        }
        ERR_clear_error();
    }
    SSL_free(t->ssl);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
