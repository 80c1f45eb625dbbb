/* tls.c -- the TLS server context and non-blocking sessions (see tls.h).
 *
 * Lessons taken from others' event loops: a session that wants the
 * socket writable waits for EPOLLOUT and nothing else (no retry loop on
 * WANT_WRITE); nothing is written before the handshake is done (no
 * SSL_write that would start a second handshake); SSL_ERROR_SYSCALL and
 * SSL_ERROR_SSL are fatal, never retried, and forbid a close_notify;
 * bytes OpenSSL holds are invisible to epoll (fo_tls_pending, the
 * worker's pending list). The error queue is cleared before each call so
 * SSL_get_error describes that call.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "log.h"
#include "clock.h"
#include "tls.h"

struct fo_tls {
    pthread_mutex_t lock;     /* guards ctx and user_from: a pointer swap */
    SSL_CTX *ctx;             /* one reference, the holder's              */
    uint8_t user_from;
    uint64_t generation;
};

const char *fo_tls_ktls_support(void)
{
#if defined(SSL_OP_ENABLE_KTLS) && !defined(OPENSSL_NO_KTLS)
    return "requested";
#else
    return "not in this OpenSSL build";
#endif
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

static fo_err_t say(char *err, size_t errlen, fo_err_t e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static fo_err_t say(char *err, size_t errlen, fo_err_t e, const char *fmt, ...)
{
    if (err && errlen) {
        int n = snprintf(err, errlen, "fanoutd: ");
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < errlen)
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    ERR_clear_error();
    return e;
}

static fo_err_t readable(const char *opt, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return say(err, errlen, FO_ERR_IO, "--%s: cannot read \"%s\": %s", opt, path, strerror(errno));
    fclose(f);
    return FO_OK;
}

static fo_err_t load_key(SSL_CTX *ctx, const fo_config_t *cfg, char *err, size_t errlen)
{
    FILE *f = fopen(cfg->tls_key, "r");
    if (!f)
        return say(err, errlen, FO_ERR_IO, "--tls-key: cannot read \"%s\": %s", cfg->tls_key,
                   strerror(errno));
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, no_password, NULL);
    fclose(f);
    if (!pk)
        return say(err, errlen, FO_ERR_INVAL,
                   "--tls-key: \"%s\" holds no usable PEM private key (%s; an encrypted key is not supported)",
                   cfg->tls_key, ssl_reason("unreadable"));
    fo_err_t e = FO_OK;
    if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), pk) != 1)
        e = say(err, errlen, FO_ERR_INVAL, "--tls-key: \"%s\" does not match the certificate in --tls-cert \"%s\"",
                cfg->tls_key, cfg->tls_cert);
    else if (SSL_CTX_use_PrivateKey(ctx, pk) != 1)
        e = say(err, errlen, FO_ERR_INVAL, "--tls-key: \"%s\": %s", cfg->tls_key, ssl_reason("refused"));
    EVP_PKEY_free(pk);
    return e;
}

static fo_err_t load_ca(SSL_CTX *ctx, const fo_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->tls_ca[0])
        return FO_OK;
    if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1)
        return say(err, errlen, FO_ERR_INVAL, "--tls-ca: \"%s\" holds no usable PEM certificate (%s)",
                   cfg->tls_ca, ssl_reason("unreadable"));
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_ca);
    if (names)
        SSL_CTX_set_client_CA_list(ctx, names);    /* what the server asks for */
    ERR_clear_error();
    return FO_OK;
}

static void set_policy(SSL_CTX *ctx, const fo_config_t *cfg)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_security_level(ctx, 2);
    uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF;
#if defined(SSL_OP_ENABLE_KTLS) && !defined(OPENSSL_NO_KTLS)
    opts |= SSL_OP_ENABLE_KTLS;
#endif
    SSL_CTX_set_options(ctx, opts);
    /* no record buffers while idle; a kept record may be retried from the
     * stash (tls.h), which is not the scratch it was first written from */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);          /* many small records: fewer reads */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);          /* one resumption ticket, not two */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"fanoutd", 7);
    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    int mode = SSL_VERIFY_NONE;
    if (cfg->tls_verify_client == FO_TLS_VERIFY_OPTIONAL)
        mode = SSL_VERIFY_PEER;
    else if (cfg->tls_verify_client == FO_TLS_VERIFY_REQUIRED)
        mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, NULL);
}

/* One line about the certificate in use, for the log. */
static void describe_cert(SSL_CTX *ctx, char *out, size_t len)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    char subject[256] = "?", until[64] = "?";
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof subject);
    BIO *b = BIO_new(BIO_s_mem());
    if (b && ASN1_TIME_print(b, X509_get0_notAfter(x)) == 1) {
        int n = BIO_read(b, until, sizeof until - 1);
        until[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
    int expired = X509_cmp_current_time(X509_get0_notAfter(x)) < 0;
    snprintf(out, len, "certificate %s, %s %s", subject, expired ? "EXPIRED on" : "valid until", until);
    ERR_clear_error();
}

static SSL_CTX *build(const fo_config_t *cfg, const SSL_METHOD *method, char *err, size_t errlen)
{
    if (readable("tls-cert", cfg->tls_cert, err, errlen) ||
        readable("tls-key", cfg->tls_key, err, errlen) ||
        (cfg->tls_ca[0] && readable("tls-ca", cfg->tls_ca, err, errlen)))
        return NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx) {
        say(err, errlen, FO_ERR_NOMEM, "cannot make a TLS context: %s", ssl_reason("out of memory"));
        return NULL;
    }
    set_policy(ctx, cfg);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        say(err, errlen, FO_ERR_INVAL, "--tls-cert: \"%s\" holds no usable PEM certificate (%s)",
            cfg->tls_cert, ssl_reason("unreadable"));
        goto fail;
    }
    if (load_key(ctx, cfg, err, errlen) || load_ca(ctx, cfg, err, errlen))
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static const char *verify_name(fo_tls_verify_t v)
{
    return v == FO_TLS_VERIFY_REQUIRED ? "required" : v == FO_TLS_VERIFY_OPTIONAL ? "optional" : "none";
}

static void log_loaded(const char *what, SSL_CTX *ctx, const fo_config_t *cfg)
{
    char cert[400];
    describe_cert(ctx, cert, sizeof cert);
    fo_info(0, "%s: %s; client certificates %s; kTLS %s", what, cert,
            verify_name(cfg->tls_verify_client), fo_tls_ktls_support());
    if (strstr(cert, "EXPIRED"))
        fo_warn(0, "TLS: the certificate in --tls-cert %s has expired: clients will refuse it",
                cfg->tls_cert);
}

fo_err_t fo_tls_create(const fo_config_t *cfg, fo_tls_t **out, char *err, size_t errlen)
{
    fo_tls_t *t = calloc(1, sizeof *t);
    if (!t)
        return say(err, errlen, FO_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&t->lock, NULL)) {
        free(t);
        return say(err, errlen, FO_ERR_NOMEM, "out of memory");
    }
    t->ctx = build(cfg, TLS_server_method(), err, errlen);
    if (!t->ctx) {
        fo_tls_destroy(t);
        return FO_ERR_INVAL;
    }
    t->user_from = (uint8_t)cfg->tls_user_from;
    log_loaded("TLS", t->ctx, cfg);
    *out = t;
    return FO_OK;
}

fo_err_t fo_tls_reload(fo_tls_t *t, const fo_config_t *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = build(cfg, TLS_server_method(), err, errlen);
    if (!ctx)
        return FO_ERR_INVAL;
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    t->user_from = (uint8_t)cfg->tls_user_from;
    t->generation++;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old);          /* sessions on it keep their own reference */
    log_loaded("SIGHUP: TLS context reloaded", ctx, cfg);
    return FO_OK;
}

uint64_t fo_tls_generation(fo_tls_t *t)
{
    pthread_mutex_lock(&t->lock);
    uint64_t g = t->generation;
    pthread_mutex_unlock(&t->lock);
    return g;
}

void fo_tls_destroy(fo_tls_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

fo_err_t fo_tls_peer_contexts(const fo_config_t *cfg, const char *ca, SSL_CTX **server, SSL_CTX **client,
                              char *err, size_t errlen)
{
    /* the client listener's context code, with the cluster's policy: the
     * peers' CA, a certificate required both ways */
    fo_config_t *pc = malloc(sizeof *pc);
    if (!pc)
        return say(err, errlen, FO_ERR_NOMEM, "out of memory");
    *pc = *cfg;
    snprintf(pc->tls_ca, sizeof pc->tls_ca, "%s", ca);
    pc->tls_verify_client = FO_TLS_VERIFY_REQUIRED;
    pc->tls_user_from = FO_TLS_USER_OFF;
    *server = build(pc, TLS_server_method(), err, errlen);
    *client = *server ? build(pc, TLS_client_method(), err, errlen) : NULL;
    free(pc);
    if (!*client) {
        SSL_CTX_free(*server);
        *server = NULL;
        return FO_ERR_INVAL;
    }
    char cert[400];
    describe_cert(*server, cert, sizeof cert);
    fo_info(0, "cluster TLS: %s; peers verified against %s", cert, ca);
    return FO_OK;
}

/* ------------------------------------------------------------ sessions */

fo_err_t fo_tls_conn_init_peer(SSL_CTX *ctx, fo_tls_conn_t *s, int fd, int server)
{
    memset(s, 0, sizeof *s);
    s->ssl = SSL_new(ctx);
    if (!s->ssl || SSL_set_fd(s->ssl, fd) != 1) {
        SSL_free(s->ssl);
        s->ssl = NULL;
        ERR_clear_error();
        return FO_ERR_NOMEM;
    }
    if (server) {
        SSL_set_accept_state(s->ssl);
    } else {
        s->peeked = 1;                 /* the client speaks first */
        SSL_set_connect_state(s->ssl);
    }
    return FO_OK;
}

fo_err_t fo_tls_conn_init(fo_tls_t *t, fo_tls_conn_t *s, int fd)
{
    memset(s, 0, sizeof *s);
    /* SSL_new under the lock: it reads the context, which a reload may
     * release right after (the new session's reference keeps it alive) */
    pthread_mutex_lock(&t->lock);
    s->ssl = SSL_new(t->ctx);
    s->user_from = t->user_from;
    pthread_mutex_unlock(&t->lock);
    if (!s->ssl || (fd >= 0 && SSL_set_fd(s->ssl, fd) != 1)) {
        SSL_free(s->ssl);
        s->ssl = NULL;
        ERR_clear_error();
        return FO_ERR_NOMEM;
    }
    if (fd < 0)
        s->peeked = 1;                 /* BIOs: nothing to peek at */
    SSL_set_accept_state(s->ssl);
    return FO_OK;
}

/* SSL_get_error of r, remembered in *want; sets why and fatal. */
static fo_tls_status_t status(fo_tls_conn_t *s, int r, uint8_t *want)
{
    int e = SSL_get_error(s->ssl, r);
    *want = 0;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = FO_TLS_WANT_READ;
        return FO_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        *want = FO_TLS_WANT_WRITE;
        return FO_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:        /* close_notify (or EOF: IGNORE_UNEXPECTED_EOF) */
        return FO_TLS_EOF;
    case SSL_ERROR_SYSCALL:
        s->fatal = 1;
        snprintf(s->why, sizeof s->why, "%s", errno ? strerror(errno) : ssl_reason("socket error"));
        break;
    default: {
        s->fatal = 1;
        long v = SSL_get_verify_result(s->ssl);
        if (v != X509_V_OK)
            snprintf(s->why, sizeof s->why, "%s (certificate: %s)", ssl_reason("TLS error"),
                     X509_verify_cert_error_string(v));
        else
            snprintf(s->why, sizeof s->why, "%s", ssl_reason("TLS error"));
        break;
    }
    }
    ERR_clear_error();
    return FO_TLS_ERROR;
}

/* A printable name of its own bytes, or nothing. */
static void set_user(fo_tls_conn_t *s, const unsigned char *p, int len)
{
    if (len <= 0 || (size_t)len >= sizeof s->user)
        return;
    for (int i = 0; i < len; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return;                    /* NUL or control bytes: no name */
    memcpy(s->user, p, (size_t)len);
    s->user[len] = '\0';
}

static void user_from_cn(fo_tls_conn_t *s, X509 *x)
{
    X509_NAME *n = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
    if (i < 0 || X509_NAME_get_index_by_NID(n, NID_commonName, i) >= 0)
        return;                        /* none, or more than one: ambiguous */
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i)));
    set_user(s, utf8, len);
    OPENSSL_free(utf8);
}

static void user_from_san(fo_tls_conn_t *s, X509 *x)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && !s->user[0]; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type == GEN_DNS || g->type == GEN_EMAIL) {
            const ASN1_IA5STRING *v = g->type == GEN_DNS ? g->d.dNSName : g->d.rfc822Name;
            set_user(s, ASN1_STRING_get0_data(v), ASN1_STRING_length(v));
        }
    }
    GENERAL_NAMES_free(names);
}

static void established(fo_tls_conn_t *s)
{
    s->established = 1;
    s->rd_want = 0;
    s->ktls_tx = BIO_get_ktls_send(SSL_get_wbio(s->ssl)) ? 1 : 0;
    s->ktls_rx = BIO_get_ktls_recv(SSL_get_rbio(s->ssl)) ? 1 : 0;
    X509 *x = SSL_get0_peer_certificate(s->ssl);
    if (s->user_from != FO_TLS_USER_OFF && x && SSL_get_verify_result(s->ssl) == X509_V_OK) {
        if (s->user_from == FO_TLS_USER_CN)
            user_from_cn(s, x);
        else
            user_from_san(s, x);
    }
    ERR_clear_error();
}

/* A plain client on the TLS port sends a frame length, not a handshake
 * record (0x16): say so instead of OpenSSL's "wrong version number". */
static fo_tls_status_t peek_first(fo_tls_conn_t *s)
{
    unsigned char b;
    ssize_t k = recv(SSL_get_fd(s->ssl), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        s->rd_want = FO_TLS_WANT_READ;
        return FO_TLS_WANT_READ;
    }
    s->peeked = 1;
    if (k == 1 && b == 0x16)
        return FO_TLS_OK;
    s->fatal = 1;
    if (k == 0) {                      /* connected and left: a port check */
        snprintf(s->why, sizeof s->why, "closed before the handshake");
        return FO_TLS_EOF;
    }
    if (k < 0)
        snprintf(s->why, sizeof s->why, "%s", strerror(errno));
    else
        snprintf(s->why, sizeof s->why,
                 "not a TLS handshake (first byte 0x%02x): a plain client on the TLS port? "
                 "(the plain port is --listen)", b);
    if (k == 1) {                      /* take what it sent: close with FIN, not RST */
        char sink[4096];
        (void)!recv(SSL_get_fd(s->ssl), sink, sizeof sink, MSG_DONTWAIT);
    }
    return FO_TLS_ERROR;
}

fo_tls_status_t fo_tls_handshake(fo_tls_conn_t *s)
{
    if (s->established)
        return FO_TLS_OK;
    if (!s->peeked) {
        fo_tls_status_t st = peek_first(s);
        if (st != FO_TLS_OK)
            return st;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        established(s);
        return FO_TLS_OK;
    }
    fo_tls_status_t st = status(s, r, &s->rd_want);
    if (st == FO_TLS_EOF) {
        s->fatal = 1;                  /* a handshake cut short is a failure */
        snprintf(s->why, sizeof s->why, "closed during the handshake");
        return FO_TLS_ERROR;
    }
    return st;
}

fo_tls_status_t fo_tls_read(fo_tls_conn_t *s, void *buf, size_t len, size_t *got)
{
    ERR_clear_error();
    size_t n = 0;
    if (SSL_read_ex(s->ssl, buf, len, &n) == 1) {
        s->rd_want = 0;
        *got = n;
        return FO_TLS_OK;
    }
    *got = 0;
    return status(s, 0, &s->rd_want);
}

int fo_tls_pending(const fo_tls_conn_t *s)
{
    return SSL_has_pending(s->ssl) || SSL_pending(s->ssl) > 0;
}

fo_tls_status_t fo_tls_write(fo_tls_conn_t *s, fo_outq_t *q, uint8_t *scratch, uint64_t *written,
                             struct fo_delay_hist *delay)
{
    for (;;) {
        const uint8_t *p = s->stash;
        size_t len = s->stash_len;
        if (!len) {
            if (!q->count) {
                s->wr_want = 0;
                free(s->stash);        /* idle: no record memory */
                s->stash = NULL;
                return FO_TLS_OK;
            }
            len = fo_outq_copy(q, scratch, FO_TLS_RECORD);
            fo_outq_advance_timed(q, len, delay ? fo_realtime_ns() : 0, delay);   /* pops empty entries too */
            if (!len)
                continue;
            p = scratch;
        }
        ERR_clear_error();
        size_t n = 0;
        if (SSL_write_ex(s->ssl, p, len, &n) == 1) {   /* all of it: no partial writes */
            s->records++;
            s->stash_len = 0;
            *written += n;
            continue;
        }
        fo_tls_status_t st = status(s, 0, &s->wr_want);
        if ((st == FO_TLS_WANT_READ || st == FO_TLS_WANT_WRITE) && p == scratch) {
            /* the retry must offer the same record: keep it */
            if (!s->stash && !(s->stash = malloc(FO_TLS_RECORD))) {
                s->fatal = 1;
                snprintf(s->why, sizeof s->why, "out of memory for a record");
                return FO_TLS_ERROR;
            }
            memcpy(s->stash, scratch, len);
            s->stash_len = (uint32_t)len;
        }
        return st;
    }
}

fo_tls_status_t fo_tls_write_buf(fo_tls_conn_t *s, const void *buf, size_t len)
{
    ERR_clear_error();
    size_t n = 0;
    if (SSL_write_ex(s->ssl, buf, len, &n) == 1) {
        s->wr_want = 0;
        s->records++;
        return FO_TLS_OK;
    }
    return status(s, 0, &s->wr_want);
}

fo_tls_status_t fo_tls_shutdown(fo_tls_conn_t *s)
{
    if (s->shut == 2 || s->fatal || !s->established)
        return FO_TLS_OK;
    ERR_clear_error();
    int r = SSL_shutdown(s->ssl);
    if (r >= 0) {                      /* 0: sent, the peer's not seen; 1: both */
        s->shut = 2;
        s->wr_want = 0;
        return FO_TLS_OK;
    }
    fo_tls_status_t st = status(s, r, &s->wr_want);
    if (st == FO_TLS_WANT_WRITE) {
        s->shut = 1;
        return st;
    }
    s->shut = 2;                       /* nothing more to try */
    s->wr_want = 0;
    return st == FO_TLS_ERROR ? FO_TLS_ERROR : FO_TLS_OK;
}

void fo_tls_conn_free(fo_tls_conn_t *s)
{
    if (!s->ssl)
        return;
    if (s->shut == 0)
        (void)fo_tls_shutdown(s);      /* best effort: the socket closes next */
    SSL_free(s->ssl);
    s->ssl = NULL;
    free(s->stash);
    s->stash = NULL;
    s->stash_len = 0;
    ERR_clear_error();
}

void fo_tls_conn_describe(const fo_tls_conn_t *s, char *out, size_t len)
{
    snprintf(out, len, "%s %s", SSL_get_version(s->ssl), SSL_get_cipher_name(s->ssl));
}
