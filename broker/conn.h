/* conn.h -- one client connection: state, input, output.
 *
 * Lifecycle: HELLO_WAIT (only HELLO is accepted, within hello-timeout) ->
 * OPEN -> CLOSING (an ERROR may be queued; no more input is handled; once
 * the output is written the write side is shut and the rest of the input
 * discarded until EOF or a short linger deadline, so the peer reads the
 * ERROR instead of a reset) -> freed.
 *
 * Input: reads go into a block from the worker's buffer cache, at most
 * read-budget bytes per event so one hot publisher cannot starve the
 * others; whole frames are cut and handled in place; an idle connection
 * gives its block back (it holds no input memory).
 * Output: fo_outq_t; written with writev once per loop iteration.
 *
 * TLS (a connection accepted on --tls-listen): the same connection with a
 * session (tls.h) under the byte stream; decoder, dispatch, output queue,
 * slow-consumer policy and flow control do not change. The handshake runs
 * first, non-blocking, within hello-timeout; reads decrypt into the same
 * input block; writes pack the queue into 16 KiB records (one SSL_write
 * each); a read that wants the socket writable waits for EPOLLOUT, a
 * write that wants it readable for EPOLLIN, never both ways at once; a
 * read stopped by the read budget with bytes left inside the session goes
 * on the worker's pending list (epoll cannot see them); close sends
 * close_notify once before the shutdown/linger below, and the peer's
 * close_notify is EOF.
 *
 * Owned by its worker; never touched by another thread.
 */
#ifndef FO_CONN_H
#define FO_CONN_H

#include <stdint.h>
#include "frame.h"
#include "outq.h"
#include "topic.h"
#include "worker.h"

typedef enum { FO_CONN_HELLO_WAIT, FO_CONN_OPEN, FO_CONN_CLOSING } fo_conn_state_t;

struct fo_tls_conn;

typedef struct fo_conn {
    uint64_t id;
    int fd;
    uint32_t slot;
    fo_worker_t *w;                /* borrowed: the owner           */
    uint8_t state;
    uint8_t dirty;                 /* on w->dirty                    */
    uint8_t want_out;              /* EPOLLOUT registered            */
    uint8_t wr_shut;               /* write side shut (lingering)    */
    uint8_t reading;               /* wants input (EPOLLIN, for TLS what the session asks) */
    uint8_t tls_pending;           /* on w->tls_pending                     */
    uint8_t moved;                 /* came from another worker (worker.c)   */
    uint8_t moving;                /* on w->moving: leaves after the flush  */
    uint8_t move_streak;           /* route.c: samples pointing at move_to  */
    int16_t move_to;               /* route.c: where its topics' readers are */
    uint32_t pub_count;            /* route.c: publishes, for sampling      */
    uint32_t ev;                   /* epoll events registered               */
    uint32_t staged;               /* output bytes held by the TLS session  */
    struct fo_tls_conn *tls;       /* owned TLS session, NULL = plain       */
    struct fo_conn *pending_next;  /* w->tls_pending list                   */
    struct fo_conn *move_next;     /* w->moving list                        */
    fo_decoder_t dec;
    fo_outq_t outq;
    fo_sub_t *subs;                /* owned list (fo_conn_sub_add)   */
    fo_sub_t **sidtab;             /* sid -> sub, chained; sidcap buckets */
    uint32_t nsubs, sidcap;
    struct fo_topic *last_topic;   /* last published to (topics live on) */
    struct fo_topic *paused_on;    /* publishing paused while it is blocked */
    struct fo_conn *paused_next;   /* w->paused list                        */
    uint8_t congested;             /* counted on its topics (registry)      */
    uint8_t congest_want;          /* what the next flush should make it    */
    uint64_t congested_ms;         /* when congest_want last turned on      */
    uint64_t cur_req;              /* Frame.req of the frame being handled  */
    uint64_t inbox_secret;         /* the random half of Welcome.inbox      */
    uint32_t mcast_keyed;          /* bit i: WELCOME gave group i's key     */
    uint64_t in_charged;           /* input buffer bytes charged to --max-memory */
    uint64_t partial_ms;           /* since when a partial frame is buffered (0: none) */
    uint64_t created_ms, last_rx_ms, last_ping_ms, close_deadline_ms;
    /* login (login.c) */
    struct fo_users *users;        /* a reference on the table user is from */
    const struct fo_user *user;    /* NULL = anonymous (no users configured) */
    uint8_t login_by;              /* password, token or certificate        */
    uint8_t auth_wait;             /* 1 verifying, 2 failed (answered at auth_at_ms) */
    uint8_t held;                  /* input held (fo_conn_hold_input)       */
    uint8_t hello_has_req;
    uint32_t hello_version;        /* the HELLO being answered              */
    uint64_t hello_req;
    uint64_t auth_at_ms;           /* the failure's answer, or the wait's end */
    char login_name[65];           /* the name claimed (logs, failures)     */
    struct fo_conn *all_prev, *all_next, *dirty_next;
    char peer[48];
    char name[32];
} fo_conn_t;

/* Before WELCOME a connection may send only a small HELLO: frames are
 * limited to this, and its input lives in a buffer of that size (not a
 * 64 KiB block), so unauthenticated peers hold little memory. */
#define FO_HELLO_MAX_FRAME 4096

/* Adopt an accepted socket (_tls: from --tls-listen, with a session on
 * the worker's broker's context). FO_ERR_NOMEM, FO_ERR_IO. */
FO_MUST_CHECK fo_err_t fo_conn_create(fo_worker_t *w, int fd, fo_conn_t **out);
FO_MUST_CHECK fo_err_t fo_conn_create_tls(fo_worker_t *w, int fd, fo_conn_t **out);
/* Close now and free (unsubscribes everything). */
void fo_conn_destroy(fo_conn_t *c);
/* The same for one that is on no worker's tables (a failed move). */
void fo_conn_free_detached(fo_conn_t *c);

void fo_conn_on_readable(fo_conn_t *c);
/* A TLS connection's epoll events: retries what the session waits for
 * (a read on EPOLLOUT, a write on EPOLLIN) as well as the usual. */
void fo_conn_on_tls_event(fo_conn_t *c, uint32_t events);
/* Stop reading (drain): only what a TLS write waits for stays registered. */
void fo_conn_stop_reading(fo_conn_t *c);
/* Write what is queued; returns 0, or -1 when the connection was freed. */
int fo_conn_flush(fo_conn_t *c);
/* Timers: hello/idle timeouts, keepalive PING, linger deadline. */
void fo_conn_tick(fo_conn_t *c);

/* Queue a frame (owned copy). */
void fo_conn_send(fo_conn_t *c, const Fanout__Frame *f);
/* ERROR {code, text, ref (when non-zero), sid (when not FO_NO_SID)};
 * the connection stays open. */
#define FO_NO_SID (-1)
void fo_conn_send_error(fo_conn_t *c, int code, uint64_t ref, int64_t sid,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* ERROR (code > 0) then close: enters CLOSING. code 0 = plain close.
 * The ERROR's ref is the request being handled (c->cur_req). */
void fo_conn_fail(fo_conn_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same for an error about one subscription (Error.sid = sid). */
void fo_conn_fail_sid(fo_conn_t *c, int code, uint32_t sid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Queue a message for sub (takes one reference the caller holds),
 * enforcing the output limit and the subscription's slow policy. */
void fo_conn_deliver(fo_conn_t *c, fo_sub_t *sub, fo_msg_t *m);
/* Queue a reply for this connection's inbox (DELIVER with sid 0; takes
 * the caller's reference). Over the output limit it is dropped and
 * counted: the requester times out, nobody else waits. */
void fo_conn_deliver_reply(fo_conn_t *c, fo_msg_t *m);

/* Queue GAP {name, first, last, reason} for sid; a GAP continuing the
 * last queued notice of (sid, t) extends it (outq.h). t identifies the
 * topic, name/name_len are its name. */
void fo_conn_send_gap(fo_conn_t *c, uint32_t sid, const struct fo_topic *t, const char *name,
                      size_t name_len, uint64_t first, uint64_t last, int reason);

/* Publisher flow control (policy block): stop reading c until topic t has
 * no congested block-policy subscriber. The worker keeps the paused
 * connections and asks each loop iteration: fo_conn_blocked() (is its
 * topic still blocked?), then fo_conn_resume() (taken off the worker's
 * list already: handle what was read, read again). */
void fo_conn_pause(fo_conn_t *c, struct fo_topic *t);
/* Moving to another worker (worker.c decides when, fo_worker_move):
 * leave takes c off its worker's epoll set and stats (and forgets its
 * topic pointers); join puts it on w's, as it was (events, output,
 * input held inside a TLS session). Between the two nobody touches c. */
int fo_conn_can_move(const fo_conn_t *c);   /* open, no subs, not paused/held */
void fo_conn_leave(fo_conn_t *c);
void fo_conn_join(fo_conn_t *c, fo_worker_t *w);
/* Login (login.c): hold back input -- no reading, no frame handled --
 * until release, which handles what is buffered and reads again.
 * Idempotent. */
void fo_conn_hold_input(fo_conn_t *c);
void fo_conn_release_input(fo_conn_t *c);
/* Quiescent point: drop c's pointers to dead topics (last published to). */
void fo_conn_forget_dead(fo_conn_t *c);
int fo_conn_blocked(const fo_conn_t *c);
void fo_conn_resume(fo_conn_t *c);

/* Bytes of output not yet on the wire: the queue plus a TLS record the
 * session holds (both count against --max-output). */
static inline uint64_t fo_conn_out_bytes(const fo_conn_t *c) { return c->outq.bytes + c->staged; }
static inline int fo_conn_has_output(const fo_conn_t *c) { return c->outq.count || c->staged; }

/* The user its verified client certificate names (--tls-user-from), or
 * NULL (plain, no certificate, option off). Valid while c lives. */
const char *fo_conn_tls_user(const fo_conn_t *c);

/* The connection's subscriptions: a list (c->subs, conn_next) for walking
 * and a hash by sid, so lookup, add and remove cost O(1) however many a
 * connection holds. add: FO_ERR_NOMEM when the table cannot grow (the
 * sub is then not added); the caller checks the sid is free first. */
fo_sub_t *fo_conn_sub(const fo_conn_t *c, uint32_t sid);
FO_MUST_CHECK fo_err_t fo_conn_sub_add(fo_conn_t *c, fo_sub_t *s);
void fo_conn_sub_remove(fo_conn_t *c, fo_sub_t *s);

#endif
