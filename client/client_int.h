/* client_int.h -- libfanout internals shared by the client's own files
 * (client.c: connection and reader thread, writer.c: the publish path,
 * sub.c: subscriptions) and the multicast receive seam.
 *
 * Naming (libuv's convention): the public API is include/fanout.h, fo_*
 * only. Everything in client/ that is not public but is shared between
 * files -- functions, types, globals -- is fo__<module>_<verb> (double
 * underscore: fo__client_ping, fo__sub_free, fo__seqmap_get, fo__gaps_t),
 * and internal macros and enum constants are FO__*. File-local helpers are
 * plain `static` with no prefix. Not covered: the shared codec in proto/
 * (fo_frame_*, fo_buf_*, ...: linked into the broker too) and dial.h.
 *
 * Locks, always taken in this order when nested: c->mu, then c->wmu, then
 * a sub's qmu; over TLS, the session's own lock (tls.h) is taken inside
 * wmu by writers and alone by the reader, and never held while waiting. c->mu guards the connection state, the subscription table,
 * pending requests and last_error; c->wmu guards the write buffer and the
 * socket used for writing; s->qmu guards one subscription's fo_sub_next
 * queue. c->rr.mu (rr.c: requests waiting for replies, the inbox) is a
 * leaf: nothing else is taken while it is held, and it is never taken
 * under another lock. The reader thread owns the decoder, the arena and
 * every subscription's seqmap (touched only while it holds the sub
 * "busy").
 *
 * Multicast seam (client/mcast_rx.c, by the multicast engineer): a
 * receiver calls fo__client_dispatch() for each message of a multicast
 * subscription and fo__client_gap() for what it cannot repair; both must
 * run on the reader thread (which is where mcast_rx is polled), with the
 * sub pinned (fo__client_pin/fo__client_unpin) while they run.
 * fo__client_send_repair() asks the broker to resend first..last over TCP.
 * The Welcome's groups are kept by the multicast set (mcast_sub.h,
 * fo__mcast_subs_welcome).
 */
#ifndef FO_CLIENT_INT_H
#define FO_CLIENT_INT_H

/* Increment a counter that only one thread (or one lock holder) writes. */
#define FO__COUNT_ADD(ctr, n) atomic_store_explicit(&(ctr),               \
        atomic_load_explicit(&(ctr), memory_order_relaxed) + (n),        \
        memory_order_relaxed)

#include <pthread.h>
#include <stdatomic.h>
#include "fanout.h"
#include "frame.h"
#include "msgq.h"
#include "seqmap.h"

enum { FO__ST_CONNECTED = 1, FO__ST_RECONNECTING = 2, FO__ST_CLOSED = 3 };

/* Frame.req of a request/reply request (rr.c) has this bit set: its ACK
 * is ignored and its ERROR (ERR_NO_RESPONDERS...) goes to the request
 * table, not to the fo__pending_t list. */
#define FO__RR_REQ_BIT (1ull << 63)
#define FO__INBOX_MAX 64          /* "_INBOX." + 32 hex digits, and room */

typedef struct fo__rreq fo__rreq_t;  /* rr.c */

/* The requests waiting for a reply (rr.c), under its own leaf lock. */
typedef struct fo__rr {
    pthread_mutex_t mu;
    int mu_ok;                   /* mu was initialised                    */
    fo__rreq_t **slots;          /* open addressing by id (linear probing) */
    size_t cap, count, max;      /* cap: 0 or a power of two; max: the limit */
    fo__rreq_t **heap;           /* async ones with a deadline, min-heap  */
    size_t nheap, heap_cap;
    uint64_t next_id;
    char inbox[FO__INBOX_MAX];   /* this connection's; written by the
                                    reader (or connect) only, under mu   */
    int up;                      /* connected: requests can be sent       */
    _Atomic uint64_t armed_us;   /* the reader looks at the timers by then
                                    (UINT64_MAX: none)                    */
} fo__rr_t;

/* A request waiting for ACK/ERROR (lives on the waiter's stack). */
typedef struct fo__pending {
    uint64_t req;
    int done;
    fo_err_t err;
    uint64_t seq;
    struct fo__pending *next;
} fo__pending_t;

struct fo_sub {
    fo_client_t *c;          /* borrowed: the owning client           */
    uint32_t sid;
    char *filter, *queue;    /* owned                                 */
    fo_start_t start;
    uint64_t start_seq;
    fo_slow_t slow;
    fo_delivery_t delivery;
    fo_msg_cb_t cb;
    void *ud;
    fo__seqmap_t seqs;       /* reader-only: last seq per topic       */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    fo__msgq_t q;            /* queue mode                            */
    fo_msg_t cur;            /* queue mode: the message last popped   */
    _Atomic uint64_t delivered, gap_msgs;
    _Atomic int busy;        /* pinned by the reader                  */
    _Atomic int dead;        /* removed from the table                */
    int orphan;              /* reader-only: free when unpinned       */
};

#define FO__LEARNED_MAX 16     /* Welcome.cluster addresses kept */
#define FO__LEARNED_LEN 128

struct fo_client {
    /* configuration, immutable after connect */
    char **servers;
    size_t nservers;
    char *name, *user, *password, *token;  /* secrets wiped when freed */
    int tls_default;         /* opts.tls: no scheme = tls://          */
    struct fo__tls_ctx *tls_ctx; /* when a server wants TLS, else NULL */
    int connect_timeout_ms, request_timeout_ms;
    int rc_min_ms, rc_max_ms, max_reconnects;
    size_t write_buffer, max_pending;
    int linger_us;           /* < 0: no linger flush                  */
    fo_gap_cb_t on_gap;
    fo_event_cb_t on_event;
    void *ud;

    /* write side (wmu) */
    pthread_mutex_t wmu;
    int wfd;                 /* -1 while disconnected                 */
    struct fo__tls *tls;     /* the connection's TLS session or NULL:
                                set with wfd (under wmu, by the reader
                                or connect); writers use it under wmu
                                while wfd >= 0, the reader at will     */
    fo_buf_t out;            /* whole frames; out_sent bytes written  */
    size_t out_sent;
    uint64_t ping_nonce;     /* last PING nonce sent                  */
    _Atomic uint64_t tx_ms;  /* last time a send() made progress      */
    _Atomic uint64_t flush_at_us; /* linger: write the buffer by then (0 = none) */
    _Atomic uint32_t max_frame_out; /* Welcome.max_frame: larger is refused */
    _Atomic int pong_due;    /* the reader owes a PONG (pong_val)     */
    uint64_t pong_val;       /* written by the reader before pong_due */

    /* shared state (mu) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sync;                /* how many of mu, wmu, cv exist (client.c) */
    int state;
    uint64_t conn_gen;       /* bumped on every disconnect            */
    uint64_t pong_nonce;     /* highest PONG nonce received           */
    uint64_t next_req;
    uint32_t next_sid;
    fo__pending_t *pending;
    fo_sub_t **subs;         /* sorted by sid                         */
    size_t nsubs, subs_cap;
    char last_error[256];
    int error_seen;          /* an ERROR frame came on this connection */

    /* counters (fo_client_stats) */
    /* single writers use load+store (a plain mov), not a locked add:
     * st_published under wmu, st_delivered on the reader thread */
    _Atomic uint64_t st_published, st_published_sync, st_publish_lost, st_delivered, st_gaps,
        st_gap_messages, st_reconnects, st_server_errors, st_bytes_in,
        st_bytes_out;

    /* reader thread */
    pthread_t reader;
    int reader_started;
    int rfd;
    int wakefd;              /* eventfd: close wakes the reader       */
    _Atomic int stop;
    _Atomic int dead;        /* closed for good (gave up)             */
    fo_decoder_t dec;
    fo_arena_t arena;
    size_t server_idx;
    uint32_t ping_interval_ms, idle_ms;
    uint64_t epoch;
    struct fo__mcast_subs *mcast; /* multicast subscriptions (mcast_sub.h) */
    fo__rr_t rr;             /* request/reply (rr.c)                  */
    char inbox_next[FO__INBOX_MAX]; /* Welcome.inbox of the connection being
                                 set up; handed to rr once it is up   */
    uint64_t last_rx_ms, last_ping_ms;
    fo_sub_t *cur;           /* reader: sub kept pinned across a batch */
    /* a cluster (docs/CLUSTER.md): Welcome.node_id was set, so sequence
     * numbers are the topics' homes' and positions survive a change of
     * broker; Welcome.cluster's addresses join the reconnect rotation.
     * Written by whoever completes a WELCOME (connect, then the reader). */
    int clustered;
    char learned[FO__LEARNED_MAX][FO__LEARNED_LEN];
    size_t nlearned;
};

/* A PUBLISH with a reply address and/or headers, as protobuf-c structs
 * on the caller's stack (writer.c). */
typedef struct fo__pubmsg {
    Fanout__Frame f;
    Fanout__Publish p;
    Fanout__Header h[FO_HEADERS_MAX];
    Fanout__Header *hp[FO_HEADERS_MAX];
} fo__pubmsg_t;

/* writer.c */
/* Fill m for topic/payload with reply (may be NULL) and opts' headers
 * (opts may be NULL; its reply is ignored: pass it as `reply`). Checks
 * the limits of fanout.h: FO_ERR_RANGE / FO_ERR_INVAL with the reason in
 * last_error. */
FO_MUST_CHECK
fo_err_t fo__pubmsg_init(fo__pubmsg_t *m, fo_client_t *c, const char *topic,
                         const void *payload, size_t len, const char *reply,
                         const fo_pub_opts_t *opts);
enum {
    FO__PUB_NOW = 1,         /* write at once (from the reader: at the end
                                of its batch), no linger               */
    FO__PUB_CONNECTED = 2    /* FO_ERR_NOT_CONNECTED instead of buffering
                                while reconnecting                     */
};
/* Queue one encoded PUBLISH frame (FO__PUB_* flags), as fo_publish does. */
FO_MUST_CHECK
fo_err_t fo__client_publish_pb(fo_client_t *c, const Fanout__Frame *f, unsigned flags);
FO_MUST_CHECK
fo_err_t fo__client_write_locked(fo_client_t *c);      /* holds wmu     */
/* The linger flush (reader thread, wmu held): write without blocking,
 * keep what the socket does not take for the next try. */
void fo__client_linger_flush_locked(fo_client_t *c);
FO_MUST_CHECK
fo_err_t fo__client_send_frame(fo_client_t *c, const Fanout__Frame *f);
void fo__client_drop_partial_locked(fo_client_t *c);   /* holds wmu     */
FO_MUST_CHECK
fo_err_t fo__client_ping(fo_client_t *c, uint64_t *nonce);
void fo__client_send_pong(fo_client_t *c);             /* reader thread */

/* rr.c: the reader's side is fo__rr_welcome (a connection is up, with
 * this inbox), fo__rr_lost (every waiting request fails with err),
 * fo__rr_on_reply (a DELIVER with sid 0), fo__rr_on_error (an ERROR whose
 * ref has FO__RR_REQ_BIT, cleared), fo__rr_expire (timers; armed_us says
 * when). */
FO_MUST_CHECK
fo_err_t fo__rr_init(fo__rr_t *r, size_t max);
void fo__rr_destroy(fo__rr_t *r);
void fo__rr_welcome(fo_client_t *c, const char *inbox);
void fo__rr_lost(fo_client_t *c, fo_err_t err);
void fo__rr_on_reply(fo_client_t *c, const fo_msg_t *m);
void fo__rr_on_error(fo_client_t *c, uint64_t id, fo_err_t err);
void fo__rr_expire(fo_client_t *c, uint64_t now_us);

/* client.c */
/* A DELIVER view's headers as fo_header_t, keys copied NUL-terminated,
 * all from the arena (valid until its reset). FO_ERR_AGAIN: the headers
 * are in a form only fo_frame_unpack takes; FO_ERR_NOMEM. */
FO_MUST_CHECK
fo_err_t fo__client_view_headers(fo_arena_t *a, const fo_deliver_view_t *v,
                                 fo_header_t **out);
/* pthread_cond_init on CLOCK_MONOTONIC (what fo_deadline_ts gives):
 * 0, or the errno of the call that failed (nothing is left to destroy). */
int fo__client_cond_init(pthread_cond_t *cv);
void fo__client_set_error(fo_client_t *c, const char *text);
int fo__client_on_reader(const fo_client_t *c);
FO_MUST_CHECK
fo_err_t fo__client_request(fo_client_t *c, Fanout__Frame *f, int timeout_ms,
                            uint64_t *seq);
/* sub.c: the reader's side */
fo_sub_t *fo__client_pin(fo_client_t *c, uint32_t sid);  /* NULL: none  */
void fo__client_unpin(fo_client_t *c, fo_sub_t *s);
void fo__client_dispatch(fo_client_t *c, fo_sub_t *s, const fo_msg_t *m);
void fo__client_gap(fo_client_t *c, fo_sub_t *s, const char *topic,
                    uint64_t first, uint64_t last, fo_gap_reason_t why);
/* Append a SUBSCRIBE for every subscription (with resume positions unless
 * `forget`, which also clears them) to frames. Reader thread. */
FO_MUST_CHECK
fo_err_t fo__client_resubscribe(fo_client_t *c, fo_buf_t *frames, int forget);
void fo__client_wake_subs(fo_client_t *c);
/* UNSUBSCRIBE every subscription (close's drain; the subs stay until the
 * client is freed). Stops at the first frame that cannot be sent. */
FO_MUST_CHECK
fo_err_t fo__client_unsubscribe_all(fo_client_t *c);
void fo__sub_free(fo_sub_t *s);
FO_MUST_CHECK
fo_err_t fo__client_send_repair(fo_client_t *c, uint32_t sid, const char *topic,
                                uint64_t first, uint64_t last);

#endif
