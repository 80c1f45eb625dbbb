/* tls.h -- TLS for fanoutd (OpenSSL 3): the server context and one
 * non-blocking session per TLS connection.
 *
 * The context (fo_tls_t) is built from the config at start: TLS 1.2 at
 * least, no renegotiation, no compression, OpenSSL's default ciphers at
 * security level 2, released buffers (an idle session holds no record
 * buffers), no server-side session cache (tickets still resume), kTLS
 * requested when the library has it. fo_tls_reload (SIGHUP, main thread)
 * builds a new context from the same options and swaps it in only if it
 * loaded cleanly; otherwise the old one stays. A worker takes the current
 * context for a new connection under the holder's mutex (held for one
 * SSL_new); a session keeps its context alive by OpenSSL's refcount, so a
 * swap never frees a context a connection still uses.
 *
 * A session (fo_tls_conn_t) belongs to its connection's worker. No call
 * blocks; each says what it needs next, and remembers it in rd_want (the
 * handshake, reads) or wr_want (writes): a read may want the socket
 * writable and a write may want it readable, and the caller registers the
 * event asked for -- only that one, so a retry never spins on an event
 * that cannot help.
 *
 * Writes pack the output queue into records: up to FO_TLS_RECORD bytes
 * are copied from the queue (per-subscriber prefixes and shared bodies)
 * into the caller's scratch, the queue is advanced by that much, and one
 * SSL_write sends the record. If it cannot finish (WANT_*), the record is
 * kept in the session's stash and retried as it is (OpenSSL's rule) before
 * anything else; the stash is freed when the queue is empty.
 */
#ifndef FO_TLS_H
#define FO_TLS_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "fo_err.h"
#include "outq.h"

#define FO_TLS_RECORD 16384   /* plaintext bytes per record (the TLS maximum) */

typedef struct fo_tls fo_tls_t;

typedef enum fo_tls_status {
    FO_TLS_OK = 0,
    FO_TLS_WANT_READ,    /* retry when the socket is readable        */
    FO_TLS_WANT_WRITE,   /* retry when the socket is writable        */
    FO_TLS_EOF,          /* the peer's close_notify, or end of stream */
    FO_TLS_ERROR,        /* fatal; why[] says what                   */
} fo_tls_status_t;

typedef struct fo_tls_conn {
    struct ssl_st *ssl;        /* owned                                     */
    uint8_t *stash;            /* FO_TLS_RECORD bytes while output is queued */
    uint32_t stash_len;        /* a record SSL_write has not finished       */
    uint8_t rd_want;           /* FO_TLS_WANT_* of the last handshake/read, 0 */
    uint8_t wr_want;           /* FO_TLS_WANT_* of the last write/shutdown, 0 */
    uint8_t established;       /* handshake done                            */
    uint8_t fatal;             /* a fatal error: no close_notify            */
    uint8_t shut;              /* close_notify: 0 not yet, 1 under way, 2 sent */
    uint8_t peeked;            /* the first byte was checked (not TLS?)     */
    uint8_t ktls_tx, ktls_rx;  /* the kernel took the keys (kTLS)           */
    uint8_t user_from;         /* fo_tls_user_from_t of its context         */
    uint64_t records;          /* records written (SSL_write calls done)    */
    char user[64];             /* from the client certificate, "" = none    */
    char why[200];             /* the last error, for the log               */
} fo_tls_conn_t;

/* Build the context from cfg (tls-cert, tls-key, tls-ca, tls-verify-client,
 * tls-user-from). FO_ERR_IO / FO_ERR_INVAL with one line in err
 * ("fanoutd: --tls-key: ..."). Logs what it loaded. */
FO_MUST_CHECK fo_err_t fo_tls_create(const fo_config_t *cfg, fo_tls_t **out,
                                     char *err, size_t errlen);
/* SIGHUP: build a new context from cfg and swap it in; on failure the old
 * one stays and err says why. Main thread (one reload at a time). */
FO_MUST_CHECK fo_err_t fo_tls_reload(fo_tls_t *t, const fo_config_t *cfg,
                                     char *err, size_t errlen);
/* Contexts swapped in so far (0 at start). */
uint64_t fo_tls_generation(fo_tls_t *t);
void fo_tls_destroy(fo_tls_t *t);            /* NULL is fine */
/* "requested" or why not (the library's build). */
const char *fo_tls_ktls_support(void);

/* The cluster's link contexts (docs/CLUSTER.md, Security): this broker's
 * certificate and key (--tls-cert, --tls-key), the peers' certificates
 * verified against the CA bundle ca, a certificate required both ways;
 * *server for accepted links, *client for outgoing ones (each one
 * reference, the caller's: SSL_CTX_free). FO_ERR_INVAL / FO_ERR_IO /
 * FO_ERR_NOMEM with one line in err. Main thread, at start. */
struct ssl_ctx_st;
FO_MUST_CHECK fo_err_t fo_tls_peer_contexts(const fo_config_t *cfg, const char *ca,
                                            struct ssl_ctx_st **server, struct ssl_ctx_st **client,
                                            char *err, size_t errlen);
/* A session of a cluster link on socket fd: server = accepted (waits for
 * the ClientHello), else outgoing. FO_ERR_NOMEM. The owner's thread. */
FO_MUST_CHECK fo_err_t fo_tls_conn_init_peer(struct ssl_ctx_st *ctx, fo_tls_conn_t *s, int fd, int server);
/* One SSL_write of len bytes (at most FO_TLS_RECORD): FO_TLS_OK when all
 * went; on WANT_* call again later with the same bytes (OpenSSL's rule;
 * the buffer may move). */
fo_tls_status_t fo_tls_write_buf(fo_tls_conn_t *s, const void *buf, size_t len);

/* A server session on socket fd with the current context, or with no
 * socket (fd < 0: the caller attaches BIOs to s->ssl, as the unit test
 * does). FO_ERR_NOMEM. */
FO_MUST_CHECK fo_err_t fo_tls_conn_init(fo_tls_t *t, fo_tls_conn_t *s, int fd);
/* Free the session; a best-effort close_notify first when one is due. */
void fo_tls_conn_free(fo_tls_conn_t *s);

/* Drive the handshake: FO_TLS_OK once established (ktls_*, user set). A
 * first byte that is not a TLS handshake record fails at once;
 * FO_TLS_EOF: the peer closed without sending a byte. */
fo_tls_status_t fo_tls_handshake(fo_tls_conn_t *s);
/* Read decrypted bytes (FO_TLS_OK with *got > 0). */
fo_tls_status_t fo_tls_read(fo_tls_conn_t *s, void *buf, size_t len, size_t *got);
/* Bytes already taken from the socket and not yet read (processed or
 * not): epoll will not report them. */
int fo_tls_pending(const fo_tls_conn_t *s);
/* Write the stash, then the queue, record by record; scratch holds
 * FO_TLS_RECORD bytes. *written += plaintext bytes sent. FO_TLS_OK when
 * everything is written (the stash is freed then). delay (may be NULL):
 * each message packed into a record is observed there (outq.h). */
struct fo_delay_hist;
fo_tls_status_t fo_tls_write(fo_tls_conn_t *s, fo_outq_t *q, uint8_t *scratch,
                             uint64_t *written, struct fo_delay_hist *delay);
/* Send close_notify, once (FO_TLS_WANT_WRITE: call again when writable).
 * FO_TLS_OK when sent or when none can be (not established, fatal). */
fo_tls_status_t fo_tls_shutdown(fo_tls_conn_t *s);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" */
void fo_tls_conn_describe(const fo_tls_conn_t *s, char *out, size_t len);

#endif
