/* conn.c -- client connections: input, dispatch, output, close (conn.h). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "clock.h"
#include "conn.h"
#include "log.h"
#include "login.h"
#include "net.h"
#include "sniff.h"
#include <sys/random.h>
#include "route.h"
#include "tls.h"

/* Policy block may overshoot max-output by what is in flight when the
 * publishers are told to pause; past this it is treated as disconnect. */
#define BLOCK_HARD_LIMIT(limit) (2 * (limit) + (16ull << 20))
#define LINGER_MS 5000   /* bound on a closing connection's life */

_Static_assert(sizeof(((fo_worker_t *)0)->tls_record) == FO_TLS_RECORD, "one record of scratch");

static int write_some(fo_conn_t *c);

/* What a TLS connection must hear about: its read side's event is the one
 * the session asked for (EPOLLOUT when a read or the handshake wants to
 * write), and so is its write side's (EPOLLIN when a write wants to read);
 * never the other one too, which could not help and would spin. */
static uint32_t tls_events(const fo_conn_t *c)
{
    const fo_tls_conn_t *s = c->tls;
    uint32_t ev = 0;
    if (c->reading)
        ev |= s->rd_want == FO_TLS_WANT_WRITE ? EPOLLOUT : EPOLLIN;
    if (c->want_out)
        ev |= s->wr_want == FO_TLS_WANT_READ ? EPOLLIN : EPOLLOUT;
    return ev;
}

static void set_events(fo_conn_t *c)
{
    uint32_t ev;
    if (c->tls)
        ev = tls_events(c);
    else
        ev = (c->reading ? EPOLLIN : 0) | (c->want_out ? EPOLLOUT : 0);
    if (ev == c->ev)
        return;
    c->ev = ev;
    struct epoll_event e = { .events = ev, .data.ptr = c };
    epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &e);
}

static fo_err_t conn_new(fo_worker_t *w, int fd, int tls, fo_conn_t **out)
{
    fo_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return FO_ERR_NOMEM;
    c->fd = fd;
    c->w = w;
    c->state = FO_CONN_HELLO_WAIT;
    c->created_ms = c->last_rx_ms = c->last_ping_ms = w->now_ms;
    fo_decoder_init(&c->dec, FO_HELLO_MAX_FRAME);    /* max-frame after WELCOME */
    fo_outq_init(&c->outq);
    fo_net_peer_name(fd, c->peer, sizeof c->peer);
    fo_err_t err = FO_ERR_IO;
    /* the inbox's secret half: unguessable (a CSPRNG, not the worker's
     * ids), since knowing it is what lets a responder reply */
    if (getrandom(&c->inbox_secret, sizeof c->inbox_secret, 0) != sizeof c->inbox_secret)
        goto fail;
    err = FO_ERR_NOMEM;
    if (tls && (!w->b->tls || !(c->tls = malloc(sizeof *c->tls)) ||
                fo_tls_conn_init(w->b->tls, c->tls, fd))) {
        free(c->tls);
        c->tls = NULL;
        goto fail;
    }
    err = fo_worker_attach(w, c);              /* a slot, an id, w->all */
    if (err)
        goto fail;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        err = FO_ERR_IO;
        fo_worker_detach(w, c);
        goto fail;
    }
    c->reading = 1;
    c->ev = EPOLLIN;
    FO_STAT_INC(&w->stats, connections_accepted);
    FO_STAT_INC(&w->stats, connections);
    fo_debug(c->id, "connection from %s%s", c->peer, tls ? " (TLS)" : "");
    *out = c;
    return FO_OK;
fail:
    if (c->tls) {
        fo_tls_conn_free(c->tls);
        free(c->tls);
    }
    fo_decoder_destroy(&c->dec);
    free(c);
    return err;
}

fo_err_t fo_conn_create(fo_worker_t *w, int fd, fo_conn_t **out)
{
    return conn_new(w, fd, 0, out);
}

fo_err_t fo_conn_create_tls(fo_worker_t *w, int fd, fo_conn_t **out)
{
    return conn_new(w, fd, 1, out);
}

const char *fo_conn_tls_user(const fo_conn_t *c)
{
    return c->tls && c->tls->user[0] ? c->tls->user : NULL;
}

static void unlink_paused(fo_conn_t *c)
{
    if (!c->paused_on)
        return;
    fo_worker_unpause(c->w, c);
    c->paused_on = NULL;
}

/* Congestion is decided where messages are queued -- possibly with a
 * topic lock or the registry lock held (replay, repair) -- but published to
 * the registry only from fo_conn_flush, where no lock is held (lock order,
 * docs/ARCHITECTURE.md). */
static void set_congested(fo_conn_t *c, int on)
{
    if (c->congest_want != on) {
        c->congest_want = (uint8_t)on;
        if (on)
            c->congested_ms = c->w->now_ms;   /* block-timeout counts from here */
        fo_worker_mark_dirty(c->w, c);
    }
}

static void apply_congestion(fo_conn_t *c)
{
    if (c->congested == c->congest_want)
        return;
    c->congested = c->congest_want;
    if (c->congested)
        FO_STAT_INC(&c->w->stats, congestions);
    for (fo_sub_t *s = c->subs; s; s = s->conn_next)
        if (s->policy == FO_POLICY_BLOCK)
            fo_registry_set_congested(c->w->b->reg, s, c->congested);
}

/* The stats a connection is counted in on its worker: +1 joining, -1
 * leaving (connections, TLS, input buffers). */
static void count_on(fo_conn_t *c, int sign)
{
    fo_stats_t *st = &c->w->stats;
    uint64_t d = sign > 0 ? 1 : (uint64_t)-1;
    FO_STAT_ADD(st, connections, d);
    if (c->tls && c->tls->established) {
        FO_STAT_ADD(st, tls_connections, d);
        if (c->tls->ktls_tx || c->tls->ktls_rx)
            FO_STAT_ADD(st, tls_ktls_connections, d);
    }
    FO_STAT_ADD(st, input_buffer_bytes, sign > 0 ? c->dec.buf.cap : (uint64_t)0 - c->dec.buf.cap);
}

/* What every end of a connection does, but for its worker's tables and
 * gauges: subscriptions, login, session, socket, buffers, queue. */
static void release(fo_conn_t *c)
{
    fo_worker_t *w = c->w;
    unlink_paused(c);
    fo_route_drop_subs(c);          /* unbinding uncounts congestion too */
    fo_login_release(c);
    if (c->tls) {
        fo_tls_conn_free(c->tls);   /* close_notify first, when one is due */
        free(c->tls);
    }
    close(c->fd);
    size_t cap;
    void *blk = fo_buf_release(&c->dec.buf, &cap);
    if (blk && cap == FO_READ_BLOCK)
        fo_worker_buf_put(w, blk);
    else
        free(blk);
    fo_decoder_destroy(&c->dec);
    fo_mem_uncharge(&w->b->mem, c->in_charged);
    fo_worker_bury(w, &c->outq);
    free(c->sidtab);
    FO_STAT_INC(&w->stats, connections_closed);
    atomic_fetch_sub(&w->b->conns, 1);
    fo_debug(c->id, "closed");
    free(c);
}

void fo_conn_destroy(fo_conn_t *c)
{
    fo_worker_t *w = c->w;
    fo_worker_detach(w, c);         /* slot, w->all, w->dirty, w->tls_pending */
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    count_on(c, -1);
    release(c);
}

void fo_conn_free_detached(fo_conn_t *c)
{
    release(c);
}

/* ------------------------------------------------------------ output */

void fo_conn_send(fo_conn_t *c, const Fanout__Frame *f)
{
    if (fo_outq_push_frame(&c->outq, f) == FO_OK)
        fo_worker_mark_dirty(c->w, c);
}

static const char *code_name(int code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&fanout__error_code__descriptor, code);
    return v ? v->name : "ERR_UNKNOWN";
}

static void send_error_v(fo_conn_t *c, int code, uint64_t ref, int64_t sid,
                         const char *fmt, va_list ap)
{
    char raw[256], text[256];
    vsnprintf(raw, sizeof raw, fmt, ap);
    fo_log_escape(raw, text, sizeof text);   /* one line, whatever a peer sent */
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Error e = FANOUT__ERROR__INIT;
    e.has_code = 1;
    e.code = code;
    e.text = text;
    if (ref) {
        e.has_ref = 1;
        e.ref = ref;
    }
    if (sid != FO_NO_SID) {
        e.has_sid = 1;
        e.sid = (uint32_t)sid;
    }
    f.body_case = FANOUT__FRAME__BODY_ERROR;
    f.error = &e;
    fo_conn_send(c, &f);
    if (code >= 0 && code < FO_STATS_ERR_CODES)
        FO_STAT_INC(&c->w->stats, errors_sent[code]);
    /* a normal shutdown is no warning about each connection */
    FO_LOG_RATE(code == FO_CODE(SHUTDOWN) ? FO_LOG_DEBUG : FO_LOG_WARN, c->id, "%s %s (%s): %s",
                code_name(code), c->peer, c->name[0] ? c->name : "-", text);
}

void fo_conn_send_error(fo_conn_t *c, int code, uint64_t ref, int64_t sid, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_error_v(c, code, ref, sid, fmt, ap);
    va_end(ap);
}

static void fail_v(fo_conn_t *c, int code, int64_t sid, const char *fmt, va_list ap)
{
    if (c->state == FO_CONN_CLOSING)
        return;
    if (code > 0)
        send_error_v(c, code, c->cur_req, sid, fmt, ap);   /* ref: PROTOCOL.md §4.11 */
    c->state = FO_CONN_CLOSING;
    c->close_deadline_ms = c->w->now_ms + LINGER_MS;
    if (c->tls)
        c->tls->rd_want = 0;        /* input is only discarded from now on */
    set_congested(c, 0);            /* it will not drain: release publishers */
    unlink_paused(c);
    /* Its subscriptions stay bound until fo_conn_destroy: this may run in
     * the middle of a fan-out loop walking those very bindings. Nothing is
     * delivered to a closing connection (fo_conn_deliver checks). */
    fo_worker_mark_dirty(c->w, c);
}

void fo_conn_fail(fo_conn_t *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(c, code, FO_NO_SID, fmt, ap);
    va_end(ap);
}

void fo_conn_fail_sid(fo_conn_t *c, int code, uint32_t sid, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(c, code, sid, fmt, ap);
    va_end(ap);
}

void fo_conn_send_gap(fo_conn_t *c, uint32_t sid, const struct fo_topic *t, const char *name,
                      size_t name_len, uint64_t first, uint64_t last, int reason)
{
    int merged = 0;
    if (fo_outq_push_gap(&c->outq, sid, t, name, name_len, first, last, reason, &merged)) {
        FO_LOG_RATE(FO_LOG_ERROR, c->id, "out of memory for a GAP notice (sid %u, %llu..%llu)",
                    sid, (unsigned long long)first, (unsigned long long)last);
        return;
    }
    fo_worker_mark_dirty(c->w, c);
    if (!merged)
        FO_STAT_INC(&c->w->stats, gaps_sent);
}

static void on_dropped(void *ud, uint32_t sid, uint64_t first, uint64_t last, int new_notice)
{
    fo_conn_t *c = ud;
    (void)sid;
    FO_STAT_ADD(&c->w->stats, drops_slow_consumer, last - first + 1);
    if (new_notice)
        FO_STAT_INC(&c->w->stats, gaps_sent);
}

void fo_conn_deliver(fo_conn_t *c, fo_sub_t *sub, fo_msg_t *m)
{
    if (c->state != FO_CONN_OPEN) {
        fo_msg_unref(m);
        return;
    }
    uint64_t limit = LIM(c->w->b, max_output);
    int policy = sub->policy;
    if (fo_conn_out_bytes(c) + m->shared_len > limit)
        write_some(c);   /* a burst, or a slow reader? ask the socket first */
    if (fo_conn_out_bytes(c) + m->shared_len > limit) {
        uint64_t hard = BLOCK_HARD_LIMIT(limit);
        if (policy == FO_POLICY_BLOCK && fo_conn_out_bytes(c) + m->shared_len <= hard) {
            /* keep it, and pause the publishers until this queue drains;
             * what is already in flight (publishers notice within a read
             * batch or so) fits under the hard limit */
            set_congested(c, 1);
            goto queue;
        }
        if (policy != FO_POLICY_DROP) {      /* disconnect, or block past 4x */
            fo_msg_unref(m);
            FO_STAT_INC(&c->w->stats, slow_consumer_disconnects);
            fo_outq_drop_unsent(&c->outq);  /* it cannot keep up: say why, next */
            fo_conn_fail_sid(c, FO_CODE(SLOW_CONSUMER), sub->sid,
                         "output queue over %llu bytes (subscription %u, policy %s)",
                         (unsigned long long)(policy == FO_POLICY_BLOCK ? hard : limit),
                         sub->sid, policy == FO_POLICY_BLOCK ? "block" : "disconnect");
            return;
        }
        /* drop-oldest down to 3/4 of the limit, so this is not per message */
        fo_outq_drop_oldest(&c->outq, limit - limit / 4, on_dropped, c);
        if (fo_conn_out_bytes(c) + m->shared_len > limit) {
            /* nothing droppable left: this one goes, noted by a GAP that
             * extends the last one while the reader stays stuck */
            size_t tl;
            const char *t = fo_msg_topic(m, &tl);
            FO_STAT_INC(&c->w->stats, drops_slow_consumer);
            fo_conn_send_gap(c, sub->sid, m->topic, t, tl, m->seq, m->seq,
                             FANOUT__GAP_REASON__GAP_SLOW_CONSUMER);
            fo_msg_unref(m);
            return;
        }
    }
queue:
    if (fo_outq_push_msg(&c->outq, m, sub->sid, policy == FO_POLICY_DROP) == FO_OK) {
        FO_STAT_INC(&c->w->stats, messages_out);
        fo_worker_mark_dirty(c->w, c);
    }
}

void fo_conn_deliver_reply(fo_conn_t *c, fo_msg_t *m)
{
    uint64_t limit = LIM(c->w->b, max_output);
    if (c->state == FO_CONN_OPEN && fo_conn_out_bytes(c) + m->shared_len > limit)
        write_some(c);
    if (c->state != FO_CONN_OPEN || fo_conn_out_bytes(c) + m->shared_len > limit) {
        FO_STAT_INC(&c->w->stats, drops_slow_consumer);
        fo_msg_unref(m);
        return;
    }
    if (fo_outq_push_msg(&c->outq, m, 0, 0) == FO_OK) {
        FO_STAT_INC(&c->w->stats, messages_out);
        fo_worker_mark_dirty(c->w, c);
    }
}

/* TLS: records packed from the queue (tls.c); nothing before the
 * handshake is done. */
static int tls_write_some(fo_conn_t *c)
{
    fo_tls_conn_t *s = c->tls;
    if (!s->established)
        return 0;
    uint64_t n = 0;
    fo_tls_status_t st = fo_tls_write(s, &c->outq, c->w->tls_record, &n, &c->w->stats.delay);
    FO_STAT_ADD(&c->w->stats, bytes_out, n);
    c->staged = s->stash_len;
    if (st == FO_TLS_ERROR || st == FO_TLS_EOF) {
        fo_debug(c->id, "TLS write: %s", st == FO_TLS_EOF ? "closed" : s->why);
        return -1;
    }
    return 0;
}

/* Write until the queue is empty or the socket is full. 0, or -1 on a
 * socket error (the caller decides when to destroy). */
static int write_some(fo_conn_t *c)
{
    fo_worker_t *w = c->w;
    if (c->tls)
        return tls_write_some(c);
    while (c->outq.count) {
        int n = fo_outq_iov_packed(&c->outq, w->iov, FO_IOV_MAX, w->prefix, w->wpack, FO_WPACK);
        struct msghdr mh = { .msg_iov = w->iov, .msg_iovlen = (size_t)n };
        ssize_t k = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            fo_debug(c->id, "write: %s", strerror(errno));
            return -1;
        }
        FO_STAT_ADD(&w->stats, bytes_out, (uint64_t)k);
        fo_outq_advance_batched(&c->outq, (size_t)k, fo_realtime_ns(), &w->stats.delay, &w->unrefs);
    }
    return 0;
}

/* All said on a closing TLS connection: close_notify, once. 0 when it is
 * sent (or cannot be), 1 while it waits for the socket. */
static int tls_close_notify(fo_conn_t *c)
{
    if (fo_tls_shutdown(c->tls) == FO_TLS_WANT_WRITE) {
        c->want_out = 1;
        set_events(c);
        return 1;
    }
    return 0;
}

int fo_conn_flush(fo_conn_t *c)
{
    if (write_some(c)) {
        fo_conn_destroy(c);
        return -1;
    }
    if (c->congest_want && fo_conn_out_bytes(c) <= LIM(c->w->b, max_output) / 2)
        c->congest_want = 0;        /* drained well below: publishers resume */
    apply_congestion(c);
    int pending = fo_conn_has_output(c);
    /* TLS: nothing is written before the handshake (its reads drive it) */
    int want = pending && (!c->tls || c->tls->established);
    if (want != c->want_out || c->tls) {
        c->want_out = (uint8_t)want;
        set_events(c);
    }
    if (!pending) {
        fo_outq_trim(&c->outq);
        if (c->state == FO_CONN_CLOSING && !c->wr_shut) {
            if (c->tls && tls_close_notify(c))
                return 0;
            /* all said: shut our side, discard input until EOF or the
             * linger deadline so the peer reads the ERROR, not a reset */
            shutdown(c->fd, SHUT_WR);
            c->wr_shut = 1;
            c->want_out = 0;
            if (c->tls)
                c->tls->rd_want = 0;    /* lingering reads the raw socket */
            c->reading = 1;
            set_events(c);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ input */

static void pong(fo_conn_t *c, const Fanout__Ping *p)
{
    Fanout__Frame out = FANOUT__FRAME__INIT;
    Fanout__Pong po = FANOUT__PONG__INIT;
    if (p->has_nonce) {
        po.has_nonce = 1;
        po.nonce = p->nonce;
    }
    out.body_case = FANOUT__FRAME__BODY_PONG;
    out.pong = &po;
    fo_conn_send(c, &out);
}

static void dispatch(fo_conn_t *c, const Fanout__Frame *f, const uint8_t *body, size_t len)
{
    uint64_t req = f->has_req ? f->req : 0;
    if (f->body_case == FANOUT__FRAME__BODY__NOT_SET) {
        /* the body member comes before the connection state (§14) */
        fo_conn_fail(c, FO_CODE(UNKNOWN_FRAME), "unknown or empty frame");
        return;
    }
    if (c->state == FO_CONN_HELLO_WAIT) {
        if (f->body_case == FANOUT__FRAME__BODY_HELLO)
            fo_login_hello(c, f);
        else
            fo_conn_fail(c, FO_CODE(NOT_HELLO), "the first frame must be HELLO");
        return;
    }
    switch (f->body_case) {
    case FANOUT__FRAME__BODY_PUBLISH: {
        const Fanout__Publish *p = f->publish;
        if (!p->topic) {
            fo_conn_fail(c, FO_CODE(MISSING_FIELD), "PUBLISH needs topic");
            return;
        }
        fo_publish_req_t pr = { .topic = p->topic, .topic_len = strlen(p->topic),
                                .payload = p->payload.data,
                                .payload_len = p->has_payload ? p->payload.len : 0, .req = req,
                                .reply = p->reply, .headers = p->headers,
                                .n_headers = p->n_headers, .frame = body, .frame_len = len };
        fo_route_publish(c, &pr);
        return;
    }
    case FANOUT__FRAME__BODY_SUBSCRIBE:
        fo_route_subscribe(c, f->subscribe, req);
        return;
    case FANOUT__FRAME__BODY_UNSUBSCRIBE:
        if (!f->unsubscribe->has_sid) {
            fo_conn_fail(c, FO_CODE(MISSING_FIELD), "UNSUBSCRIBE needs sid");
            return;
        }
        fo_route_unsubscribe(c, f->unsubscribe->sid, req);
        return;
    case FANOUT__FRAME__BODY_REPAIR:
        fo_route_repair(c, f->repair, req);
        return;
    case FANOUT__FRAME__BODY_PING:
        pong(c, f->ping);
        return;
    case FANOUT__FRAME__BODY_PONG:
        return;
    case FANOUT__FRAME__BODY_HELLO:
        fo_conn_fail(c, FO_CODE(NOT_HELLO), "HELLO sent twice");
        return;
    case FANOUT__FRAME__BODY_WELCOME:
    case FANOUT__FRAME__BODY_DELIVER:
    case FANOUT__FRAME__BODY_ACK:
    case FANOUT__FRAME__BODY_ERROR:
    case FANOUT__FRAME__BODY_GAP:
        fo_conn_fail(c, FO_CODE(UNEXPECTED), "frame type %d is sent by the broker, not to it",
                     (int)f->body_case);
        return;
    default:
        fo_conn_fail(c, FO_CODE(UNKNOWN_FRAME), "unknown or empty frame");
        return;
    }
}

/* The first bytes of a plain connection that has sent nothing else, when
 * they are another protocol's (sniff.h): "TLS" (a ClientHello), "HTTP"
 * (a request), or NULL. */
static const char *foreign(const fo_conn_t *c)
{
    if (c->tls || c->state != FO_CONN_HELLO_WAIT || c->dec.frames != 0)
        return NULL;
    return fo_sniff_foreign(fo_buf_head(&c->dec.buf), fo_buf_len(&c->dec.buf));
}

static void frame_size_error(fo_conn_t *c, size_t len)
{
    const fo_config_t *cfg = &c->w->b->cfg;
    const char *what = foreign(c);
    char m[256];
    if (what && !strcmp(what, "TLS") && strcmp(cfg->tls_listen, "off"))
        fo_conn_fail(c, FO_CODE(FRAME_SIZE), "looks like a TLS handshake: the TLS port is --tls-listen %s",
                     cfg->tls_listen);
    else if (what && !strcmp(what, "TLS"))
        fo_conn_fail(c, FO_CODE(FRAME_SIZE), "looks like a TLS handshake, but this broker has no --tls-listen");
    else if (what && fo_sniff_message(m, sizeof m, what, cfg->http) > 0)
        fo_conn_fail(c, FO_CODE(FRAME_SIZE), "%s", m);      /* "looks like HTTP; metrics are on --http ..." */
    else
        fo_conn_fail(c, FO_CODE(FRAME_SIZE), "frame length %zu is %s (limit %u)", len,
                     len == 0 ? "zero" : "over the limit", c->dec.max_frame);
}

/* Handle every whole frame buffered. */
static void handle_frames(fo_conn_t *c)
{
    fo_worker_t *w = c->w;
    const uint8_t *body;
    size_t len;
    fo_err_t err;
    while (c->state != FO_CONN_CLOSING && !c->paused_on && !c->held &&
           (err = fo_decoder_next(&c->dec, &body, &len)) == FO_OK) {
        FO_STAT_INC(&w->stats, frames_in);
        fo_publish_view_t v;
        if (c->state == FO_CONN_OPEN && fo_publish_peek(body, len, &v) == FO_OK) {
            c->cur_req = v.req;
            fo_publish_req_t pr = { .topic = v.topic, .topic_len = v.topic_len,
                                    .payload = v.payload, .payload_len = v.payload_len,
                                    .req = v.req, .frame = body, .frame_len = len };
            fo_route_publish(c, &pr);
            c->cur_req = 0;
            if (c->state == FO_CONN_CLOSING)
                FO_STAT_INC(&w->stats, protocol_errors);   /* invalid topic */
            continue;
        }
        Fanout__Frame *f;
        if (fo_frame_unpack(body, len, &w->arena, &f)) {
            FO_STAT_INC(&w->stats, protocol_errors);
            fo_conn_fail(c, FO_CODE(BAD_FRAME), "frame of %zu bytes does not unpack", len);
            break;
        }
        c->cur_req = f->has_req ? f->req : 0;
        const ProtobufCFieldDescriptor *nul = fo_frame_nul_string(body, len);
        if (nul) {
            /* protobuf-c cut it short at the NUL: never act on the rest */
            FO_STAT_INC(&w->stats, protocol_errors);
            if (fo_field_is_topic(nul))
                fo_conn_fail(c, FO_CODE(INVALID_TOPIC), "a %s contains a NUL byte", nul->name);
            else
                fo_conn_fail(c, FO_CODE(BAD_FRAME), "string field %s contains a NUL byte", nul->name);
            break;
        }
        dispatch(c, f, body, len);
        c->cur_req = 0;
        if (c->state == FO_CONN_CLOSING)
            FO_STAT_INC(&w->stats, protocol_errors);
    }
    if (c->state != FO_CONN_CLOSING && err == FO_ERR_FRAME_SIZE) {
        FO_STAT_INC(&w->stats, protocol_errors);
        frame_size_error(c, len);
    }
    fo_arena_reset(&w->arena);
}

static void give_back_buffer(fo_conn_t *c)
{
    size_t cap;
    void *blk = fo_buf_release(&c->dec.buf, &cap);
    if (!blk)
        return;
    FO_STAT_SUB(&c->w->stats, input_buffer_bytes, cap);
    fo_mem_uncharge(&c->w->b->mem, c->in_charged);
    c->in_charged = 0;
    if (cap == FO_READ_BLOCK)
        fo_worker_buf_put(c->w, blk);
    else
        free(blk);                  /* grown for a big frame: not cached */
}

/* A closing connection: discard input until EOF (see fo_conn_flush). */
static void linger_read(fo_conn_t *c)
{
    char sink[4096];
    ssize_t k;
    while ((k = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT)) > 0)
        ;
    if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        fo_conn_destroy(c);
}

/* Room in the input buffer for the next read: a block from the worker's
 * cache, grown for a frame bigger than a block only after charging it to
 * --max-memory (10,000 peers each half-sending a 1 MiB frame must not
 * take the broker down). 0, or -1 when the connection failed. */
static int input_room(fo_conn_t *c)
{
    fo_worker_t *w = c->w;
    if (!c->dec.buf.data && c->state != FO_CONN_HELLO_WAIT) {
        void *blk = fo_worker_buf_get(w);
        if (!blk) {
            fo_conn_fail(c, FO_CODE(MEMORY_LIMIT), "out of memory for a read buffer");
            return -1;
        }
        fo_buf_adopt(&c->dec.buf, blk, FO_READ_BLOCK);
        FO_STAT_ADD(&w->stats, input_buffer_bytes, FO_READ_BLOCK);
    }
    /* Grow with what has arrived, never to what a header announces: at
     * most double what is held (10,000 peers each sending the header of a
     * 1 MiB frame and one byte hold 10,000 blocks, not 10 GB of promises),
     * and what goes past a block is charged to --max-memory first. */
    size_t live = fo_buf_len(&c->dec.buf);
    size_t want = fo_decoder_want(&c->dec);
    size_t step = live > FO_READ_BLOCK / 2 ? live : FO_READ_BLOCK / 2;
    if (want > step)
        want = step;
    if (want < 4096)
        want = 4096;
    if (c->state == FO_CONN_HELLO_WAIT)
        want = FO_HELLO_MAX_FRAME + FO_FRAME_HDR;   /* a small buffer of its own */
    uint64_t need = live + want;
    if (need > FO_READ_BLOCK && need > c->in_charged) {
        if (fo_mem_charge(&w->b->mem, need - c->in_charged)) {
            FO_STAT_INC(&w->stats, publish_refused_memory);
            fo_conn_fail(c, FO_CODE(MEMORY_LIMIT), "a %zu-byte frame would exceed the broker's memory cap",
                         live + fo_decoder_want(&c->dec) - FO_FRAME_HDR);
            return -1;
        }
        c->in_charged = need;
    }
    size_t cap_before = c->dec.buf.cap;
    fo_err_t rerr = fo_buf_reserve(&c->dec.buf, want);
    FO_STAT_ADD(&w->stats, input_buffer_bytes, c->dec.buf.cap - cap_before);
    if (rerr) {
        fo_conn_fail(c, FO_CODE(MEMORY_LIMIT), "out of memory for a read buffer");
        return -1;
    }
    return 0;
}

/* The peer closed its side: what was cut off mid-frame is counted. */
static void on_eof(fo_conn_t *c)
{
    fo_worker_t *w = c->w;
    if (fo_decoder_finish(&c->dec) == FO_ERR_TRUNCATED) {
        FO_STAT_INC(&w->stats, protocol_errors);
        FO_STAT_INC(&w->stats, errors_sent[FO_CODE(TRUNCATED)]);
        FO_LOG_RATE(FO_LOG_WARN, c->id, "ERR_TRUNCATED %s: stream ended inside a frame", c->peer);
    }
    fo_conn_destroy(c);
}

/* The handshake step of a TLS connection: 0 once established (read on),
 * 1 while it waits (events set) or when it failed (c was freed). */
static int tls_handshake(fo_conn_t *c)
{
    fo_worker_t *w = c->w;
    fo_tls_conn_t *s = c->tls;
    fo_tls_status_t st = fo_tls_handshake(s);
    if (st == FO_TLS_WANT_READ || st == FO_TLS_WANT_WRITE) {
        set_events(c);
        return 1;
    }
    if (st == FO_TLS_EOF) {                     /* not a byte sent: no handshake */
        fo_debug(c->id, "%s closed before the TLS handshake", c->peer);
        fo_conn_destroy(c);
        return 1;
    }
    if (st != FO_TLS_OK) {
        FO_STAT_INC(&w->stats, tls_handshake_failures);
        FO_LOG_RATE(FO_LOG_WARN, c->id, "TLS handshake with %s failed: %s", c->peer, s->why);
        fo_conn_destroy(c);
        return 1;
    }
    FO_STAT_INC(&w->stats, tls_handshakes);
    FO_STAT_INC(&w->stats, tls_connections);
    if (s->ktls_tx || s->ktls_rx)
        FO_STAT_INC(&w->stats, tls_ktls_connections);
    if (fo_log_enabled(FO_LOG_DEBUG)) {
        char d[96];
        fo_tls_conn_describe(s, d, sizeof d);
        fo_debug(c->id, "TLS %s with %s%s%s; kTLS %s", d, c->peer, s->user[0] ? ", certificate user " : "",
                 s->user, s->ktls_tx || s->ktls_rx ? (s->ktls_tx ? "on for sending" : "on for receiving")
                                                   : "off (the kernel did not take the keys): records are "
                                                     "encrypted by OpenSSL");
    }
    if (fo_conn_has_output(c))
        fo_worker_mark_dirty(w, c);
    set_events(c);
    return 0;
}

/* k bytes were read into the input buffer (plain or decrypted): handle
 * the whole frames, and note since when a partial one waits. */
static void took(fo_conn_t *c, size_t k)
{
    fo_worker_t *w = c->w;
    fo_buf_commit(&c->dec.buf, k);
    c->last_rx_ms = w->now_ms;
    w->read_time_ns = fo_realtime_ns();   /* Deliver.time_ns: one clock read per read */
    handle_frames(c);
    if (!fo_buf_len(&c->dec.buf))
        c->partial_ms = 0;
    else if (!c->partial_ms)
        c->partial_ms = w->now_ms ? w->now_ms : 1;
}

/* fo_conn_on_readable for TLS: the handshake, then decrypted input, at
 * most read-budget bytes; what the session still holds after that goes on
 * the worker's pending list, read on the next pass without epoll. */
static void tls_on_readable(fo_conn_t *c)
{
    fo_worker_t *w = c->w;
    fo_tls_conn_t *s = c->tls;
    if (c->state == FO_CONN_CLOSING) {
        linger_read(c);
        return;
    }
    if (!s->established && tls_handshake(c))
        return;
    uint64_t budget = LIM(w->b, read_budget), got = 0;
    fo_tls_status_t st;
    for (;;) {
        if (input_room(c))
            return;
        size_t k = 0;
        st = fo_tls_read(s, fo_buf_tail(&c->dec.buf), fo_buf_room(&c->dec.buf), &k);
        if (st != FO_TLS_OK)
            break;
        took(c, k);
        got += k;
        if (c->state == FO_CONN_CLOSING || c->paused_on || c->held || got >= budget)
            break;
    }
    if (st == FO_TLS_EOF) {
        on_eof(c);
        return;
    }
    if (st == FO_TLS_ERROR) {
        fo_debug(c->id, "TLS read: %s", s->why);
        fo_conn_destroy(c);
        return;
    }
    if (st == FO_TLS_OK && c->state != FO_CONN_CLOSING && !c->paused_on && !c->held &&
        fo_tls_pending(s))
        fo_worker_tls_pending(w, c);    /* the pending-data trap */
    if (fo_buf_len(&c->dec.buf) == 0)
        give_back_buffer(c);
    set_events(c);
}

void fo_conn_on_tls_event(fo_conn_t *c, uint32_t events)
{
    const fo_tls_conn_t *s = c->tls;
    uint32_t in = events & (EPOLLIN | EPOLLHUP | EPOLLERR);
    uint32_t out = events & (EPOLLOUT | EPOLLHUP | EPOLLERR);
    if (c->want_out && (s->wr_want == FO_TLS_WANT_READ ? in : out))
        fo_worker_mark_dirty(c->w, c);          /* the write side goes on */
    if ((c->reading && (s->rd_want == FO_TLS_WANT_WRITE ? out : in)) ||
        (events & (EPOLLHUP | EPOLLERR)))
        fo_conn_on_readable(c);                 /* may free c (then not dirty) */
}

void fo_conn_stop_reading(fo_conn_t *c)
{
    if (!c->reading)
        return;
    c->reading = 0;
    set_events(c);
}

void fo_conn_on_readable(fo_conn_t *c)
{
    fo_worker_t *w = c->w;
    if (c->tls) {
        tls_on_readable(c);
        return;
    }
    if (c->state == FO_CONN_CLOSING) {
        linger_read(c);
        return;
    }
    uint64_t budget = LIM(w->b, read_budget), got = 0;
    for (;;) {
        if (input_room(c))
            return;
        ssize_t k = recv(c->fd, fo_buf_tail(&c->dec.buf), fo_buf_room(&c->dec.buf), MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            fo_debug(c->id, "read: %s", strerror(errno));
            fo_conn_destroy(c);
            return;
        }
        if (k == 0) {
            on_eof(c);
            return;
        }
        took(c, (size_t)k);
        got += (uint64_t)k;
        if (c->state == FO_CONN_CLOSING || c->paused_on || c->held || got >= budget)
            break;
    }
    if (fo_buf_len(&c->dec.buf) == 0)
        give_back_buffer(c);
}

/* A connection that went quiet in the middle of a frame keeps a 64 KiB
 * read block for a few bytes; after a second of silence move them to a
 * buffer of their own size and give the block back (10,000 such peers
 * would otherwise pin 640 MiB). */
static void shrink_idle_input(fo_conn_t *c)
{
    fo_buf_t *b = &c->dec.buf;
    size_t len = fo_buf_len(b);
    /* held for a second, however it trickles in: a peer sending a byte now
     * and then must not keep a block */
    if (!b->data || b->cap != FO_READ_BLOCK || len == 0 || len > 4096 || !c->partial_ms ||
        c->w->now_ms - c->partial_ms < 1000)
        return;
    fo_buf_t small = FO_BUF_INIT;
    if (fo_buf_append(&small, fo_buf_head(b), len))
        return;
    FO_STAT_SUB(&c->w->stats, input_buffer_bytes, b->cap - small.cap);
    fo_worker_buf_put(c->w, b->data);
    *b = small;
}

/* The block-policy subscription that keeps c congested (for Error.sid). */
static uint32_t blocking_sid(const fo_conn_t *c)
{
    for (const fo_sub_t *s = c->subs; s; s = s->conn_next)
        if (s->policy == FO_POLICY_BLOCK)
            return s->sid;
    return 0;
}

/* A block-policy subscriber may keep its publishers paused for at most
 * --block-timeout at a time: past it, it is cut as a slow consumer and
 * they resume (one stuck reader must not freeze a topic for everyone). */
static void check_block_timeout(fo_conn_t *c)
{
    uint32_t limit = LIM(c->w->b, block_timeout_ms);
    if (!c->congest_want || c->w->now_ms - c->congested_ms < limit)
        return;
    FO_STAT_INC(&c->w->stats, block_timeouts);
    fo_outq_drop_unsent(&c->outq);
    fo_conn_fail_sid(c, FO_CODE(SLOW_CONSUMER), blocking_sid(c),
                     "blocked publishers for %u ms without draining (--block-timeout)", limit);
}

void fo_conn_tick(fo_conn_t *c)
{
    fo_worker_t *w = c->w;
    uint64_t now = w->now_ms;
    shrink_idle_input(c);
    check_block_timeout(c);
    if (c->state == FO_CONN_CLOSING) {
        if (now >= c->close_deadline_ms)
            fo_conn_destroy(c);
        return;
    }
    if (c->state == FO_CONN_HELLO_WAIT) {
        if (c->auth_wait) {                /* a login in the works: its own clock */
            fo_login_tick(c);
            return;
        }
        if (now - c->created_ms >= w->b->cfg.hello_timeout_ms) {
            FO_STAT_INC(&w->stats, idle_timeouts);
            if (c->tls && !c->tls->established) {
                /* no ERROR can be said before the handshake: just close */
                FO_STAT_INC(&w->stats, tls_handshake_failures);
                FO_LOG_RATE(FO_LOG_WARN, c->id, "TLS handshake with %s not finished within %u ms",
                            c->peer, w->b->cfg.hello_timeout_ms);
                fo_conn_destroy(c);
                return;
            }
            fo_conn_fail(c, FO_CODE(IDLE_TIMEOUT), "no HELLO within %u ms", w->b->cfg.hello_timeout_ms);
        }
        return;
    }
    uint32_t idle = LIM(w->b, idle_timeout_ms), ping = LIM(w->b, ping_interval_ms);
    uint64_t silent = now - c->last_rx_ms;
    if (silent >= idle) {
        FO_STAT_INC(&w->stats, idle_timeouts);
        fo_conn_fail(c, FO_CODE(IDLE_TIMEOUT), "nothing heard for %llu ms", (unsigned long long)silent);
    } else if (silent >= ping && now - c->last_ping_ms >= ping) {
        c->last_ping_ms = now;
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Ping p = FANOUT__PING__INIT;
        p.has_nonce = 1;
        p.nonce = now;
        f.body_case = FANOUT__FRAME__BODY_PING;
        f.ping = &p;
        fo_conn_send(c, &f);
    }
}

void fo_conn_pause(fo_conn_t *c, struct fo_topic *t)
{
    if (c->paused_on || c->state == FO_CONN_CLOSING)
        return;
    c->paused_on = t;
    fo_worker_pause(c->w, c);
    FO_STAT_INC(&c->w->stats, publishers_paused);
    fo_conn_stop_reading(c);
}

void fo_conn_forget_dead(fo_conn_t *c)
{
    if (c->last_topic && atomic_load_explicit(&c->last_topic->dead, memory_order_acquire))
        c->last_topic = NULL;
    /* paused_on cannot be dead: a topic someone is blocked on is not idle,
     * and the worker resumes a publisher before its topic can be swept */
}

int fo_conn_blocked(const fo_conn_t *c)
{
    return atomic_load_explicit(&c->paused_on->blocked, memory_order_relaxed) > 0;
}

int fo_conn_can_move(const fo_conn_t *c)
{
    return c->state == FO_CONN_OPEN && !c->nsubs && !c->paused_on && !c->held &&
           (!c->tls || c->tls->established);
}

void fo_conn_leave(fo_conn_t *c)
{
    epoll_ctl(c->w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    count_on(c, -1);
    c->last_topic = NULL;     /* topic pointers are good on their worker only */
}

void fo_conn_join(fo_conn_t *c, fo_worker_t *w)
{
    c->w = w;
    count_on(c, +1);
    struct epoll_event e = { .events = c->ev, .data.ptr = c };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &e)) {
        fo_error(c->id, "epoll_ctl on moving: %s", strerror(errno));
        fo_conn_destroy(c);
        return;
    }
    if (fo_conn_has_output(c))
        fo_worker_mark_dirty(w, c);
    if (c->tls && fo_tls_pending(c->tls))
        fo_worker_tls_pending(w, c);
    if (w->drain_phase)
        fo_conn_stop_reading(c);
}

void fo_conn_hold_input(fo_conn_t *c)
{
    c->held = 1;
    fo_conn_stop_reading(c);
}

void fo_conn_release_input(fo_conn_t *c)
{
    c->held = 0;
    fo_conn_resume(c);
}

void fo_conn_resume(fo_conn_t *c)
{
    c->paused_on = NULL;
    if (c->w->drain_phase || c->state == FO_CONN_CLOSING || c->held)
        return;
    handle_frames(c);              /* what was read before the pause */
    if (c->paused_on)
        return;                    /* paused again (it is on the list) */
    if (fo_buf_len(&c->dec.buf) == 0)
        give_back_buffer(c);
    c->reading = 1;
    set_events(c);
    if (c->tls && fo_tls_pending(c->tls))
        fo_worker_tls_pending(c->w, c);    /* read before the pause, still inside */
}

/* ------------------------------------------------------------ subscriptions */

static uint32_t sid_bucket(uint32_t sid, uint32_t cap)
{
    return (sid * 2654435761u) & (cap - 1);      /* Fibonacci hashing */
}

fo_sub_t *fo_conn_sub(const fo_conn_t *c, uint32_t sid)
{
    if (!c->sidcap)
        return NULL;
    for (fo_sub_t *s = c->sidtab[sid_bucket(sid, c->sidcap)]; s; s = s->sid_next)
        if (s->sid == sid)
            return s;
    return NULL;
}

static fo_err_t sid_grow(fo_conn_t *c)
{
    uint32_t ncap = c->sidcap ? c->sidcap * 2 : 4;
    fo_sub_t **nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return FO_ERR_NOMEM;
    for (fo_sub_t *s = c->subs; s; s = s->conn_next) {
        uint32_t k = sid_bucket(s->sid, ncap);
        s->sid_next = nt[k];
        nt[k] = s;
    }
    free(c->sidtab);
    c->sidtab = nt;
    c->sidcap = ncap;
    return FO_OK;
}

fo_err_t fo_conn_sub_add(fo_conn_t *c, fo_sub_t *s)
{
    if (c->nsubs >= c->sidcap && sid_grow(c))
        return FO_ERR_NOMEM;
    uint32_t k = sid_bucket(s->sid, c->sidcap);
    s->sid_next = c->sidtab[k];
    c->sidtab[k] = s;
    s->conn_prev = NULL;
    s->conn_next = c->subs;
    if (c->subs)
        c->subs->conn_prev = s;
    c->subs = s;
    c->nsubs++;
    return FO_OK;
}

void fo_conn_sub_remove(fo_conn_t *c, fo_sub_t *s)
{
    for (fo_sub_t **pp = &c->sidtab[sid_bucket(s->sid, c->sidcap)]; *pp; pp = &(*pp)->sid_next)
        if (*pp == s) {
            *pp = s->sid_next;
            break;
        }
    if (s->conn_prev)
        s->conn_prev->conn_next = s->conn_next;
    else
        c->subs = s->conn_next;
    if (s->conn_next)
        s->conn_next->conn_prev = s->conn_prev;
    s->conn_prev = s->conn_next = s->sid_next = NULL;
    c->nsubs--;
}
