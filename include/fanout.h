/* fanout.h -- the C client library of the fanout pub/sub broker (libfanout).
 *
 * A client (fo_client_t) is one TCP connection to one broker at a time, plus
 * one reader thread that the library starts and owns. The reader thread
 * reads and decodes every frame, answers the broker's PINGs, sends PINGs of
 * its own every Welcome.ping_interval_ms, runs message and gap callbacks,
 * and reconnects (with backoff and jitter) when the connection drops,
 * resubscribing by itself and resuming every topic from the first
 * sequence it has not seen. What could not be resumed is reported as a
 * gap, never hidden: the broker says so with GAP frames, which the library
 * hands to the gap callback. (Sequence numbers of one topic may arrive out
 * of order when several connections publish to it, so the library never
 * guesses a loss from a jump; docs/PROTOCOL.md section 7.) docs/CLIENT.md
 * is the guide; this header is the reference.
 *
 * Threading, one line per call (also in docs/CLIENT.md):
 *   fo_client_opts_init, fo_sub_opts_init,
 *   fo_pub_opts_init, fo_strerror, fo_msg_header   any thread, reentrant
 *   fo_client_connect                              any thread
 *   fo_publish, fo_publish_ex, fo_respond,
 *   fo_request_async, fo_client_flush(c, 0)        any thread, concurrently,
 *                                                  also callbacks
 *   fo_publish_sync, fo_publish_sync_ex,
 *   fo_request, fo_client_flush(c, > 0)            any thread, concurrently;
 *                                                  not callbacks (FO_ERR_INVAL)
 *   fo_reply_free                                  any thread
 *   fo_subscribe, fo_unsubscribe                   any thread, also callbacks
 *   fo_sub_next                                    one thread per sub at a time
 *   fo_sub_*_count, fo_client_stats, _last_error   any thread
 *   fo_client_close, fo_client_destroy             once, not from a callback,
 *                                                  and after every other call
 *                                                  on this client returned
 * Callbacks (message, gap, event, reply) run on the client's reader
 * thread, one at a time. They may publish, respond, send asynchronous
 * requests, subscribe and unsubscribe, but must not block for long (the
 * reader also keeps the connection alive) and must not call
 * fo_publish_sync(_ex), fo_request or fo_client_flush with a timeout
 * (FO_ERR_INVAL there), or fo_client_close.
 *
 * Ownership: "borrowed" = the library only reads it during the call (the
 * caller keeps ownership); "owned by the library" = valid until the stated
 * point, never freed by the caller. Handles returned through `out`
 * parameters are freed only by the call named next to them.
 */
#ifndef FANOUT_H
#define FANOUT_H

#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ version */

/* The version of these headers (the VERSION file of the release). Compare
 * FO_VERSION_NUMBER in #if; fo_version() gives the library's own at run
 * time, which differs when libfanout.so was upgraded under a program. */
#define FO_VERSION_MAJOR  0
#define FO_VERSION_MINOR  1
#define FO_VERSION_PATCH  0
#define FO_VERSION_STRING "0.1.0"
#define FO_VERSION_NUMBER (FO_VERSION_MAJOR * 10000 + FO_VERSION_MINOR * 100 + FO_VERSION_PATCH)

/* "MAJOR.MINOR.PATCH" of the linked library. Static storage, any thread. */
const char *fo_version(void);

typedef struct fo_client fo_client_t;   /* opaque: one connection + reader */
typedef struct fo_sub fo_sub_t;         /* opaque: one subscription        */

/* ------------------------------------------------------------ messages */

/* One message header: a user's key/value metadata (e.g. "traceparent"),
 * carried by the broker as published. Limits (checked by fo_publish_ex,
 * FO_ERR_RANGE): at most FO_HEADERS_MAX per message, a key of 1 to
 * FO_HEADER_KEY_MAX bytes 0x21..0x7e, FO_HEADERS_BYTES of keys plus
 * values in all. Values are bytes (binary and empty ones included). */
#define FO_HEADERS_MAX    32
#define FO_HEADER_KEY_MAX 64
#define FO_HEADERS_BYTES  4096
typedef struct fo_header {
    const char *key;          /* NUL-terminated                              */
    const void *value;        /* value_len bytes, not terminated; may be NULL
                                 when value_len is 0 (never in a fo_msg_t)   */
    size_t value_len;
} fo_header_t;

/* One delivered message. Every pointer is owned by the library: in a
 * callback it is valid until the callback returns; from fo_sub_next until
 * the next fo_sub_next or fo_unsubscribe on the same subscription; in a
 * fo_reply_t until fo_reply_free. */
typedef struct fo_msg {
    const char *topic;        /* NUL-terminated                              */
    size_t topic_len;
    const void *payload;      /* payload_len bytes (may be 0), not terminated */
    size_t payload_len;
    uint64_t seq;             /* per-topic sequence number, from 1 (in a
                                 cluster: epoch << 24 | n, docs/CLUSTER.md);
                                 0 for a reply (replies are not sequenced)   */
    uint64_t time_ns;         /* broker receive time, CLOCK_REALTIME ns      */
    int replay;               /* 1 when replayed from the broker's retention */
    const char *reply;        /* a request's reply address (NUL-terminated):
                                 answer with fo_respond; NULL if none        */
    const fo_header_t *headers; /* nheaders headers in the order published;
                                 NULL when there are none                    */
    size_t nheaders;
} fo_msg_t;

/* The first header of m with this key (compared byte for byte), or NULL. */
const fo_header_t *fo_msg_header(const fo_msg_t *m, const char *key);

typedef enum fo_gap_reason {
    FO_GAP_SLOW_CONSUMER = 0, /* broker dropped them from our output queue   */
    FO_GAP_EVICTED       = 1, /* no longer in the topic's retention ring     */
    FO_GAP_LOCAL         = 2, /* our fo_sub_next queue was full (max_queued) */
    FO_GAP_MULTICAST     = 3, /* lost on multicast, not repaired in time
                                 (docs/MULTICAST.md)                         */
    FO_GAP_HOME_CHANGED  = 4  /* a cluster: the topic's home broker changed
                                 (docs/CLUSTER.md, Epochs)                   */
} fo_gap_reason_t;

/* Messages first..last (inclusive) of `topic` will not be delivered to
 * `sub`. Pointers owned by the library, valid during the callback. */
typedef struct fo_gap {
    fo_sub_t *sub;
    const char *topic;
    uint64_t first, last;
    fo_gap_reason_t reason;
} fo_gap_t;

typedef enum fo_event {
    FO_EV_DISCONNECTED = 1,   /* connection lost; err says why               */
    FO_EV_RECONNECTED  = 2,   /* connected again, subscriptions re-sent      */
    FO_EV_SERVER_ERROR = 3,   /* the broker sent ERROR; text says what       */
    FO_EV_CLOSED       = 4    /* gave up reconnecting: the client is dead    */
} fo_event_t;

/* Callbacks; `ud` is the user data given with them. */
typedef void (*fo_msg_cb_t)(void *ud, fo_sub_t *sub, const fo_msg_t *msg);
typedef void (*fo_gap_cb_t)(void *ud, const fo_gap_t *gap);
/* text: owned by the library, valid during the callback, may be "". */
typedef void (*fo_event_cb_t)(void *ud, fo_event_t ev, fo_err_t err,
                              const char *text);

/* ------------------------------------------------------------ client */

typedef struct fo_client_opts {
    /* Addresses tried in order (then round-robin on reconnect): HOST,
     * HOST:PORT, [V6]:PORT, fanout://HOST[:PORT] (plain TCP, port 7400) or
     * tls://HOST[:PORT] (TLS, port 7443; see the tls fields below).
     * Borrowed: copied by fo_client_connect. At least one. */
    const char *const *servers;
    size_t nservers;
    const char *name;              /* client name for broker logs; borrowed */
    /* Credentials sent in HELLO (user, password; token below) or NULL.
     * Borrowed: copied by fo_client_connect and wiped (zeroed) when the
     * client is freed, as is the HELLO that carried them. Over plain TCP
     * they can be read on the way: use TLS between hosts. */
    const char *user, *password;
    int connect_timeout_ms;        /* per attempt (TCP + HELLO/WELCOME); 5000 */
    int request_timeout_ms;        /* subscribe/unsubscribe ACK wait; 5000   */
    /* Reconnect policy: attempt k (from 0) waits
     * min(reconnect_max_ms, reconnect_min_ms << k) scaled by a random
     * factor in [0.5, 1.0] (jitter). max_reconnects < 0 = forever,
     * 0 = never reconnect (the first loss closes the client). */
    int reconnect_min_ms;          /* 100   */
    int reconnect_max_ms;          /* 5000  */
    int max_reconnects;            /* -1    */
    size_t write_buffer;           /* publish buffer flushed at this size; 64 KiB */
    int linger_us;                 /* a publish that does not fill the buffer is
                                      written within this many µs anyway, by the
                                      reader thread (a flood still batches);
                                      1000; < 0 = only at write_buffer bytes or
                                      on fo_client_flush                     */
    size_t max_pending;            /* bytes buffered while disconnected before
                                      fo_publish says FO_ERR_BUSY; 8 MiB   */
    fo_gap_cb_t on_gap;            /* may be NULL (gaps are still counted)  */
    fo_event_cb_t on_event;        /* may be NULL                           */
    void *ud;                      /* passed to on_gap and on_event; never
                                      dereferenced by the library           */
    size_t max_requests;           /* requests (fo_request + fo_request_async)
                                      waiting for a reply at once, at most;
                                      beyond: FO_ERR_BUSY. 65536           */
    /* ---- login by token, and TLS (docs/CLIENT.md, TLS and credentials) */
    const char *token;             /* a bearer token (HELLO.token) instead of
                                      a password, with user naming its owner;
                                      NULL. Copied and wiped as password  */
    /* TLS. A tls:// server is always dialled with TLS and a fanout:// one
     * never; with tls = 1 so is a server written without a scheme (HOST
     * alone then means port 7443). TLS 1.2 at least. The broker's
     * certificate must chain to a trusted CA and name the host dialled
     * (its DNS SANs for a name, sent as SNI too; its IP SANs for an
     * address), or the connection fails with FO_ERR_TLS and a line such
     * as "certificate verify failed: unable to get local issuer
     * certificate (tls://host:7443)" or "... hostname mismatch (...)".
     * The files are read once, by fo_client_connect, when some server
     * is to be dialled with TLS (FO_ERR_TLS when one does not load;
     * reconnects keep what was read); paths are borrowed. */
    int tls;                       /* 0                                     */
    const char *tls_ca_file;       /* PEM CA certificates to trust; NULL =
                                      the system's store (OpenSSL's default
                                      paths: SSL_CERT_FILE, SSL_CERT_DIR)  */
    const char *tls_cert_file;     /* client certificate (PEM, may hold the
                                      chain) for mutual TLS, or NULL      */
    const char *tls_key_file;      /* its key (PEM, unencrypted); NULL = in
                                      tls_cert_file                       */
    int tls_insecure_skip_verify;  /* 1: accept ANY certificate for ANY name
                                      -- no protection against a man in the
                                      middle. Tests and development only; 0 */
} fo_client_opts_t;

/* Fill *o with the defaults above (servers = {"127.0.0.1:7400"}, no
 * credentials, no TLS). */
void fo_client_opts_init(fo_client_opts_t *o);

/* Connect to the first server that answers (TCP, TLS when asked, HELLO,
 * WELCOME), then start the reader thread. *out is owned by the caller and
 * freed by fo_client_close or fo_client_destroy. On failure nothing is
 * left behind and the error is one of FO_ERR_ADDR, FO_ERR_REFUSED,
 * FO_ERR_TIMEOUT, FO_ERR_IO, FO_ERR_CLOSED, FO_ERR_TLS (see the tls
 * fields), FO_ERR_SERVER (ERROR answered HELLO: a refused login reads
 * "the broker refused the login: bad credentials"), FO_ERR_PROTO,
 * FO_ERR_NOMEM, FO_ERR_INVAL. errtext (may be NULL) receives a one-line
 * reason of at most errlen bytes. Reconnects make a new TLS session each
 * time (no resumption), verified as the first. */
FO_MUST_CHECK
fo_err_t fo_client_connect(const fo_client_opts_t *o, fo_client_t **out,
                           char *errtext, size_t errlen);

/* Publish one message (fire and forget). The frame is appended to the
 * client's write buffer, which is written when it reaches write_buffer
 * bytes, by fo_client_flush, or by the reader thread linger_us later (one
 * linger more for each time it finds another publish holding the buffer).
 * topic and payload are borrowed (copied).
 * While reconnecting, up to max_pending bytes are kept and sent after the
 * reconnect; beyond that FO_ERR_BUSY. A frame half-written when the
 * connection broke is dropped (counted in fo_client_stats.publish_lost).
 * FO_ERR_RANGE when the frame would exceed the broker's Welcome.max_frame. */
FO_MUST_CHECK
fo_err_t fo_publish(fo_client_t *c, const char *topic, const void *payload,
                    size_t len);

/* Publish and wait for the broker's ACK (timeout_ms, < 0 = forever).
 * *seq (may be NULL) gets the sequence given to the message. FO_ERR_SERVER
 * when the broker refused it (fo_client_last_error has its text). */
FO_MUST_CHECK
fo_err_t fo_publish_sync(fo_client_t *c, const char *topic, const void *payload,
                         size_t len, int timeout_ms, uint64_t *seq);

/* What a message carries besides topic and payload. Every pointer is
 * borrowed (read during the call, copied into the frame). Zeroed (or
 * fo_pub_opts_init) = nothing extra. */
typedef struct fo_pub_opts {
    const char *reply;             /* reply address (a topic) or NULL       */
    const fo_header_t *headers;    /* nheaders headers, or NULL             */
    size_t nheaders;
} fo_pub_opts_t;

void fo_pub_opts_init(fo_pub_opts_t *o);

/* fo_publish with a reply address and/or headers (opts may be NULL: then
 * exactly fo_publish). The limits of fo_header_t are checked here:
 * FO_ERR_RANGE (too many headers, a bad key, too many bytes) or
 * FO_ERR_INVAL (a reply address that is not a valid topic, a NULL key or
 * value with a length), with the reason in fo_client_last_error; nothing
 * is sent then. A message with a reply address that nobody subscribes to
 * is refused by the broker (ERR_NO_RESPONDERS, reported as
 * FO_EV_SERVER_ERROR; fo_publish_sync_ex returns FO_ERR_NO_RESPONDERS). */
FO_MUST_CHECK
fo_err_t fo_publish_ex(fo_client_t *c, const char *topic, const void *payload,
                       size_t len, const fo_pub_opts_t *opts);

/* fo_publish_sync with a reply address and/or headers (opts may be NULL). */
FO_MUST_CHECK
fo_err_t fo_publish_sync_ex(fo_client_t *c, const char *topic, const void *payload,
                            size_t len, const fo_pub_opts_t *opts, int timeout_ms,
                            uint64_t *seq);

/* Write the buffered publishes to the socket. With timeout_ms > 0, also
 * wait until the broker has read everything sent so far (a PING/PONG round
 * trip); 0 = only write. FO_ERR_NOT_CONNECTED while reconnecting. */
FO_MUST_CHECK
fo_err_t fo_client_flush(fo_client_t *c, int timeout_ms);

/* Close: with drain_ms > 0, first unsubscribe everything, flush, and wait
 * (up to drain_ms) until every message the broker sent before our
 * unsubscribes was delivered to the callbacks; then stop the reader
 * thread, close the socket (over TLS after a close_notify) and free the
 * client and all its subscriptions, wiping its copies of the credentials. Returns FO_ERR_TIMEOUT if the drain did not complete;
 * without a drain, FO_ERR_NOT_CONNECTED, FO_ERR_CLOSED or FO_ERR_IO when
 * buffered publishes could not be written (they are lost). The client is
 * freed anyway. NULL is fine. */
FO_MUST_CHECK
fo_err_t fo_client_close(fo_client_t *c, int drain_ms);
/* fo_client_close(c, 0). NULL is fine. */
void fo_client_destroy(fo_client_t *c);

typedef struct fo_client_stats {
    uint64_t published;      /* fo_publish / fo_publish_sync calls accepted */
    uint64_t publish_lost;   /* buffered frames dropped by a broken write   */
    uint64_t delivered;      /* messages handed to callbacks or queues      */
    uint64_t gaps;           /* gap reports                                 */
    uint64_t gap_messages;   /* messages those gaps cover                   */
    uint64_t reconnects;     /* successful reconnects                       */
    uint64_t server_errors;  /* ERROR frames received                       */
    uint64_t bytes_in, bytes_out;
} fo_client_stats_t;
void fo_client_stats(fo_client_t *c, fo_client_stats_t *out);

/* 1 when connected now, 0 while reconnecting or after closing. */
int fo_client_connected(fo_client_t *c);

/* The broker's max-frame (Welcome.max_frame of the last connection): a
 * publish whose frame -- topic, payload and a few bytes of framing --
 * exceeds it is refused with FO_ERR_RANGE. Any thread. */
uint32_t fo_client_max_frame(fo_client_t *c);

/* Copy the text of the last ERROR frame or connection failure, or of the
 * last refusal by the library itself (headers over the limits, a bad
 * reply address, max_requests), into buf (NUL-terminated, truncated to
 * len); "" if none. Returns buf. */
char *fo_client_last_error(fo_client_t *c, char *buf, size_t len);

/* ------------------------------------------------------------ requests */

/* Request/reply (docs/CLIENT.md, Requests). A request is a publish whose
 * reply address is this connection's inbox (announced by the broker in
 * WELCOME; a new one on every reconnect) plus "." and a correlation id
 * unique within the client; the broker routes what is published to that
 * address to this connection only. The first reply completes the request;
 * later ones (several responders outside a queue group) are dropped.
 * A request nobody subscribes to fails at once with FO_ERR_NO_RESPONDERS.
 * When the connection is lost, every waiting request fails with
 * FO_ERR_NOT_CONNECTED (its reply could not reach the new inbox).
 * At most opts.max_requests wait at once (FO_ERR_BUSY beyond). */

/* A reply, owned by the caller: freed by fo_reply_free. msg.topic is the
 * reply address, msg.seq 0; every pointer in msg lives in the same
 * allocation. */
typedef struct fo_reply {
    fo_msg_t msg;
} fo_reply_t;

void fo_reply_free(fo_reply_t *r);   /* NULL is fine */

/* Send a request and wait up to timeout_ms (> 0, or < 0 = until the reply
 * or the connection's loss; 0 is FO_ERR_INVAL) for its reply. topic,
 * payload and opts are borrowed; opts (may be NULL) gives headers (its
 * reply field must be NULL: FO_ERR_INVAL). On FO_OK *out is the reply,
 * owned by the caller; on error *out is NULL and the result is
 * FO_ERR_TIMEOUT, FO_ERR_NO_RESPONDERS, FO_ERR_NOT_CONNECTED (lost, or
 * reconnecting), FO_ERR_CLOSED, FO_ERR_BUSY (max_requests), FO_ERR_SERVER
 * (the broker refused it: fo_client_last_error), FO_ERR_RANGE or
 * FO_ERR_INVAL (as fo_publish_ex; also an invalid topic, which the broker
 * would close the connection for, and a call from a callback). */
FO_MUST_CHECK
fo_err_t fo_request(fo_client_t *c, const char *topic, const void *payload,
                    size_t len, const fo_pub_opts_t *opts, int timeout_ms,
                    fo_reply_t **out);

/* The outcome of an asynchronous request: err is FO_OK with the reply in
 * `reply` (owned by the library, valid during the callback), or
 * FO_ERR_TIMEOUT, FO_ERR_NO_RESPONDERS, FO_ERR_NOT_CONNECTED,
 * FO_ERR_CLOSED (the client was closed first) or FO_ERR_SERVER, with
 * reply NULL. */
typedef void (*fo_reply_cb_t)(void *ud, fo_err_t err, const fo_msg_t *reply);

/* Send a request without waiting. On FO_OK, cb runs exactly once, on the
 * reader thread, with the reply or the error -- possibly before this
 * returns; timers are the reader's (no thread per request). timeout_ms as
 * fo_request. On any other result cb never runs. Errors as fo_request. */
FO_MUST_CHECK
fo_err_t fo_request_async(fo_client_t *c, const char *topic, const void *payload,
                          size_t len, const fo_pub_opts_t *opts, int timeout_ms,
                          fo_reply_cb_t cb, void *ud);

/* Answer a delivered request: publish payload to request->reply (as
 * fo_publish_ex, with opts' headers; written at once, or at the end of the
 * reader's current batch when called from a callback). FO_ERR_INVAL when
 * the message has no reply address. request is borrowed. */
FO_MUST_CHECK
fo_err_t fo_respond(fo_client_t *c, const fo_msg_t *request, const void *payload,
                    size_t len, const fo_pub_opts_t *opts);

/* ------------------------------------------------------------ subscribing */

typedef enum fo_start {
    FO_START_NEW = 0,        /* only what is published from now on        */
    FO_START_SEQ = 1,        /* replay from start_seq (per matching topic) */
    FO_START_EARLIEST = 2    /* replay from the oldest retained message    */
} fo_start_t;

typedef enum fo_slow {
    FO_SLOW_DEFAULT = 0,     /* the broker's default                        */
    FO_SLOW_DROP = 1,        /* drop oldest queued, then a GAP              */
    FO_SLOW_DISCONNECT = 2,  /* broker closes us with ERROR slow_consumer   */
    FO_SLOW_BLOCK = 3        /* lose nothing: the broker pauses publishers  */
} fo_slow_t;

typedef enum fo_delivery {
    FO_DELIVERY_TCP = 0,
    FO_DELIVERY_MULTICAST = 1 /* messages come by UDP multicast (see
                                 docs/CLIENT.md, Multicast)                 */
} fo_delivery_t;

typedef struct fo_sub_opts {
    const char *queue;       /* queue group name or NULL; borrowed          */
    fo_start_t start;
    uint64_t start_seq;      /* with FO_START_SEQ                           */
    fo_slow_t slow;
    fo_delivery_t delivery;
    /* Callback mode when cb is set (runs on the reader thread); otherwise
     * messages are queued for fo_sub_next, up to max_queued bytes (then
     * dropped and reported as an FO_GAP_LOCAL gap). */
    fo_msg_cb_t cb;
    void *ud;                /* passed to cb; never dereferenced            */
    size_t max_queued;       /* fo_sub_next queue bound; 16 MiB             */
    const char *mcast_iface; /* multicast: interface address or name to join
                                the groups on; NULL = kernel's choice; borrowed */
} fo_sub_opts_t;

void fo_sub_opts_init(fo_sub_opts_t *o);

/* Subscribe to a topic filter (may use * and >) and wait for the broker's
 * ACK (request_timeout_ms), so that every message published after this
 * returns is delivered. filter and opts are borrowed (copied). *out is
 * owned by the library and freed by fo_unsubscribe or when the client is
 * closed. opts may be NULL (defaults: queue mode, start new). */
FO_MUST_CHECK
fo_err_t fo_subscribe(fo_client_t *c, const char *filter,
                      const fo_sub_opts_t *opts, fo_sub_t **out);

/* Stop a subscription and free it. From a thread other than the reader,
 * it waits (request_timeout_ms) for the broker's ACK, which follows every
 * DELIVER sent before it, and until no callback for it is running; no
 * callback for it starts after it returns. `s` is freed and invalid
 * afterwards whatever the result (FO_ERR_TIMEOUT: the ACK did not come in
 * time; late messages for it are then dropped). NULL is fine. */
FO_MUST_CHECK
fo_err_t fo_unsubscribe(fo_sub_t *s);

/* Queue mode: wait up to timeout_ms (< 0 = forever, 0 = poll) for the next
 * message. *out points to library-owned storage valid until the next
 * fo_sub_next / fo_unsubscribe on `s`. FO_ERR_TIMEOUT when none came,
 * FO_ERR_CLOSED when the client is closed for good and the queue is empty,
 * FO_ERR_INVAL on a callback-mode subscription. *out is NULL on error. */
FO_MUST_CHECK
fo_err_t fo_sub_next(fo_sub_t *s, int timeout_ms, const fo_msg_t **out);

uint32_t fo_sub_id(const fo_sub_t *s);              /* the subscription id */
uint64_t fo_sub_delivered_count(const fo_sub_t *s); /* messages so far     */
uint64_t fo_sub_gap_count(const fo_sub_t *s);       /* messages missed     */

/* Multicast receive counters of a FO_DELIVERY_MULTICAST subscription
 * (docs/MULTICAST.md), summed over the groups it joined. FO_ERR_INVAL for
 * other subscriptions. Any thread. */
typedef struct fo_mcast_stats {
    uint64_t received;    /* messages delivered from multicast or repair  */
    uint64_t gaps;        /* messages found missing                       */
    uint64_t repaired;    /* ... fetched again over TCP                   */
    uint64_t lost;        /* ... given up (reported as gaps)              */
    uint64_t duplicates, oversize, datagrams;
    uint64_t bad;         /* datagrams dropped, for any reason (the three
                             below included); also messages with no memory
                             to track them and failed socket reads        */
    uint32_t groups;      /* groups joined                                */
    /* Why datagrams were dropped (docs/MULTICAST.md, Authentication): */
    uint64_t forged;      /* the tag did not verify: not the broker's     */
    uint64_t replayed;    /* authentic, but a copy of one seen before, or
                             too old for the replay window                */
    uint64_t foreign;     /* another broker epoch than WELCOME's          */
    uint32_t unkeyed;     /* groups overlapping the filter that WELCOME
                             announced without a key (plain TCP from
                             another host, or a user who may not read all
                             of the group): not joined, their messages
                             come by TCP                                  */
} fo_mcast_stats_t;
FO_MUST_CHECK
fo_err_t fo_sub_mcast_stats(const fo_sub_t *s, fo_mcast_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif
