/* client.c -- libfanout's connection: connect, the reader thread, reconnect.
 *
 * fo_client_connect dials the servers in order and completes HELLO/WELCOME
 * on the caller's thread, then starts one reader thread per client. The
 * reader thread owns the socket's read side: it reads up to 64 KiB at a
 * time, cuts frames with the shared decoder (proto/frame.h), decodes
 * DELIVER with the zero-copy fo_deliver_peek (falling back to protobuf-c
 * into an arena reset once per read batch: no malloc per message), and
 * runs the callbacks. It answers PING with PONG, PINGs every
 * Welcome.ping_interval_ms, and declares the broker dead when nothing at
 * all was heard, and no write made progress, for max(idle_timeout, 3
 * pings).
 *
 * DELIVERs with sid 0 are replies to our requests (rr.c): they never reach
 * a subscription nor its resume state.
 *
 * When the connection is lost the reader fails pending requests, reports
 * FO_EV_DISCONNECTED, and reconnects with exponential backoff and jitter
 * (servers round-robin). After HELLO/WELCOME it sends every subscription
 * again with Subscribe.positions = the first seq not yet seen per topic
 * (seqmap.h), ahead of the publishes buffered meanwhile, then reports
 * FO_EV_RECONNECTED. Losses are what the broker reports with GAP
 * (including resume points older than its retention: GAP_EVICTED). A
 * broker restart (new Welcome.epoch) restarts every topic's numbering, so
 * resume points are forgotten then.
 *
 * TLS (tls.h): a tls:// server (or any server without a scheme, with
 * opts.tls) gets a TLS session on its socket right after the TCP
 * connect, verified against the client's one context; everything above
 * -- HELLO, the reader, the writers -- is the same over both, through
 * c->tls where it is set. The plain path stays a blocking socket written
 * with send(); a TLS socket is non-blocking and waits in poll() instead.
 * close sends close_notify; a lost connection just drops its session.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include "addr.h"
#include "client_int.h"
#include "mcast_sub.h"
#include "clock.h"
#include "dial.h"
#include "tls.h"

#define READ_CHUNK (128u << 10)

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

void fo_client_opts_init(fo_client_opts_t *o)
{
    static const char *const def[] = { "127.0.0.1:7400" };
    memset(o, 0, sizeof *o);
    o->servers = def;
    o->nservers = 1;
    o->name = "libfanout";
    o->connect_timeout_ms = 5000;
    o->request_timeout_ms = 5000;
    o->reconnect_min_ms = 100;
    o->reconnect_max_ms = 5000;
    o->max_reconnects = -1;
    o->write_buffer = 64u << 10;
    o->max_pending = 8u << 20;
    o->linger_us = 1000;
}

void fo__client_set_error(fo_client_t *c, const char *text)
{
    pthread_mutex_lock(&c->mu);
    snprintf(c->last_error, sizeof c->last_error, "%s", text ? text : "");
    pthread_mutex_unlock(&c->mu);
}

/* An ERROR frame: its text is the best reason for whatever fails next, so
 * the connection loss that usually follows does not replace it. */
static void server_error(fo_client_t *c, const char *text)
{
    pthread_mutex_lock(&c->mu);
    snprintf(c->last_error, sizeof c->last_error, "%s", text);
    c->error_seen = 1;
    pthread_mutex_unlock(&c->mu);
}

char *fo_client_last_error(fo_client_t *c, char *buf, size_t len)
{
    if (!len)
        return buf;
    pthread_mutex_lock(&c->mu);
    snprintf(buf, len, "%s", c->last_error);
    pthread_mutex_unlock(&c->mu);
    return buf;
}

int fo__client_on_reader(const fo_client_t *c)
{
    return c->reader_started && pthread_equal(pthread_self(), c->reader);
}

int fo_client_connected(fo_client_t *c)
{
    pthread_mutex_lock(&c->mu);
    int ok = c->state == FO__ST_CONNECTED;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

void fo_client_stats(fo_client_t *c, fo_client_stats_t *o)
{
    o->published = atomic_load(&c->st_published) +
                   atomic_load(&c->st_published_sync);
    o->publish_lost = atomic_load(&c->st_publish_lost);
    o->delivered = atomic_load(&c->st_delivered);
    o->gaps = atomic_load(&c->st_gaps);
    o->gap_messages = atomic_load(&c->st_gap_messages);
    o->reconnects = atomic_load(&c->st_reconnects);
    o->server_errors = atomic_load(&c->st_server_errors);
    o->bytes_in = atomic_load(&c->st_bytes_in);
    o->bytes_out = atomic_load(&c->st_bytes_out);
}

static void event(fo_client_t *c, fo_event_t ev, fo_err_t err, const char *text)
{
    if (c->on_event)
        c->on_event(c->ud, ev, err, text ? text : "");
}

/* Does the broker close the connection after this ERROR code?
 * (docs/PROTOCOL.md section 14; the others leave it open.) */
static int error_closes(const Fanout__Error *e)
{
    if (!e->has_code)
        return 1;
    switch (e->code) {
    case FANOUT__ERROR_CODE__ERR_MEMORY_LIMIT:
    case FANOUT__ERROR_CODE__ERR_BAD_SID:
    case FANOUT__ERROR_CODE__ERR_MAX_SUBS:
    case FANOUT__ERROR_CODE__ERR_BAD_REQUEST:
    case FANOUT__ERROR_CODE__ERR_PERMISSION:
    case FANOUT__ERROR_CODE__ERR_NO_RESPONDERS:
        return 0;
    default:
        return 1;
    }
}

/* "ERR_INVALID_TOPIC: text" from an ERROR frame. */
static void error_text(const Fanout__Error *e, char *buf, size_t len)
{
    const ProtobufCEnumValue *v = e->has_code ?
        protobuf_c_enum_descriptor_get_value(&fanout__error_code__descriptor,
                                             (int)e->code) : NULL;
    snprintf(buf, len, "%s: %s", v ? v->name : "ERR_UNKNOWN",
             e->text ? e->text : "");
}

/* ------------------------------------------------------------ requests */

static void complete(fo_client_t *c, uint64_t ref, fo_err_t err, uint64_t seq)
{
    pthread_mutex_lock(&c->mu);
    for (fo__pending_t *p = c->pending; p; p = p->next)
        if (p->req == ref && !p->done) {
            p->done = 1;
            p->err = err;
            p->seq = seq;
            pthread_cond_broadcast(&c->cv);
            break;
        }
    pthread_mutex_unlock(&c->mu);
}

static void fail_pending(fo_client_t *c, fo_err_t err)
{
    pthread_mutex_lock(&c->mu);
    for (fo__pending_t *p = c->pending; p; p = p->next)
        if (!p->done) {
            p->done = 1;
            p->err = err;
        }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

fo_err_t fo__client_request(fo_client_t *c, Fanout__Frame *f, int timeout_ms,
                            uint64_t *seq)
{
    fo__pending_t p = { 0 };
    pthread_mutex_lock(&c->mu);
    if (c->state != FO__ST_CONNECTED) {
        int dead = c->state == FO__ST_CLOSED;
        pthread_mutex_unlock(&c->mu);
        return dead ? FO_ERR_CLOSED : FO_ERR_NOT_CONNECTED;
    }
    p.req = ++c->next_req;
    p.next = c->pending;
    c->pending = &p;
    pthread_mutex_unlock(&c->mu);
    f->has_req = 1;
    f->req = p.req;
    fo_err_t err = fo__client_send_frame(c, f);
    struct timespec dl = fo_deadline_ts(timeout_ms);
    pthread_mutex_lock(&c->mu);
    /* A frame that could not be queued (no memory, no connection) will
     * not be answered: fail now instead of at the timeout. One queued but
     * not written (FO_ERR_IO) may still go out after a reconnect, like
     * any buffered frame; the reader fails the wait when it notices the
     * broken connection. */
    if (err && err != FO_ERR_IO && !p.done) {
        p.done = 1;
        p.err = err;
    }
    while (!p.done) {
        if (timeout_ms < 0)
            pthread_cond_wait(&c->cv, &c->mu);
        else if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT)
            break;
    }
    err = p.done ? p.err : FO_ERR_TIMEOUT;
    if (seq)
        *seq = p.seq;
    for (fo__pending_t **pp = &c->pending; *pp; pp = &(*pp)->next)
        if (*pp == &p) {
            *pp = p.next;
            break;
        }
    pthread_mutex_unlock(&c->mu);
    return err;
}

fo_err_t fo_publish_sync_ex(fo_client_t *c, const char *topic, const void *payload,
                            size_t len, const fo_pub_opts_t *opts, int timeout_ms,
                            uint64_t *seq)
{
    if (!c || !topic || (!payload && len))
        return FO_ERR_INVAL;
    if (fo__client_on_reader(c))
        return FO_ERR_INVAL;            /* would wait for itself */
    fo__pubmsg_t m;
    fo_err_t err = fo__pubmsg_init(&m, c, topic, payload, len, opts ? opts->reply : NULL, opts);
    if (err)
        return err;
    m.f.has_req = 1;
    m.f.req = UINT64_MAX;               /* the largest req: for the size */
    if (fo_frame_size(&m.f) - FO_FRAME_HDR > atomic_load(&c->max_frame_out))
        return FO_ERR_RANGE;
    atomic_fetch_add(&c->st_published_sync, 1);
    return fo__client_request(c, &m.f, timeout_ms, seq);
}

fo_err_t fo_publish_sync(fo_client_t *c, const char *topic, const void *payload,
                         size_t len, int timeout_ms, uint64_t *seq)
{
    return fo_publish_sync_ex(c, topic, payload, len, NULL, timeout_ms, seq);
}

/* ------------------------------------------------------------ handshake */

/* All of p on a new connection: plain (blocking socket) or TLS (by
 * deadline_ms). */
static fo_err_t send_all(int fd, fo__tls_t *t, const uint8_t *p, size_t n,
                         uint64_t deadline_ms)
{
    while (n) {
        size_t done = 0;
        if (t) {
            fo_err_t e = fo__tls_write(t, p, n, deadline_ms, &done);
            if (e)
                return e;
        } else {
            ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return FO_ERR_IO;
            done = (size_t)w;
        }
        p += done;
        n -= done;
    }
    return FO_OK;
}

/* A cluster's WELCOME: remember its members' client addresses (those not
 * configured already) for the reconnect rotation. */
static void take_cluster(fo_client_t *c, const Fanout__Welcome *w)
{
    c->clustered = w->node_id != NULL;
    if (!c->clustered)
        return;
    /* a client that talks TLS to some server never falls back to plain TCP
     * for a broker it only heard of: it learns tls:// addresses only; a
     * plain one learns plain ones (it may have no TLS settings) */
    int tls = 0;
    for (size_t k = 0; k < c->nservers && !tls; k++) {
        fo_addr_t a;
        tls = !fo_addr_parse(c->servers[k], 0, &a) &&
              (a.scheme == FO_SCHEME_TLS || (a.scheme == FO_SCHEME_NONE && c->tls_default));
    }
    c->nlearned = 0;
    for (size_t i = 0; i < w->n_cluster && c->nlearned < FO__LEARNED_MAX; i++) {
        const char *a = w->cluster[i];
        fo_addr_t pa;
        int skip = !a || strlen(a) >= FO__LEARNED_LEN || fo_addr_parse(a, 0, &pa);
        if (!skip) {                 /* the same kind as what we were given */
            int a_tls = pa.scheme == FO_SCHEME_TLS || (pa.scheme == FO_SCHEME_NONE && c->tls_default);
            skip = a_tls != tls;
        }
        for (size_t k = 0; k < c->nservers && !skip; k++)
            skip = !strcmp(c->servers[k], a);
        if (!skip)
            snprintf(c->learned[c->nlearned++], FO__LEARNED_LEN, "%s", a);
    }
}

/* The limits and timers WELCOME sets; FO_ERR_NOMEM when its multicast
 * groups could not be copied (a multicast subscription would then miss
 * its groups: the connection attempt fails instead). */
static fo_err_t take_welcome(fo_client_t *c, const Fanout__Welcome *w)
{
    c->ping_interval_ms = w->has_ping_interval_ms && w->ping_interval_ms ?
        w->ping_interval_ms : 10000;
    uint32_t idle = w->has_idle_timeout_ms ? w->idle_timeout_ms : 0;
    c->idle_ms = idle > 3 * c->ping_interval_ms ? idle : 3 * c->ping_interval_ms;
    uint32_t mf = w->has_max_frame && w->max_frame ? w->max_frame
                                                   : FO_MAX_FRAME_DEFAULT;
    if (mf > FO_MAX_FRAME_LIMIT)
        mf = FO_MAX_FRAME_LIMIT;
    c->dec.max_frame = mf;
    atomic_store(&c->max_frame_out, mf);
    snprintf(c->inbox_next, sizeof c->inbox_next, "%s",
             w->inbox && strlen(w->inbox) < sizeof c->inbox_next ? w->inbox : "");
    take_cluster(c, w);
    return fo__mcast_subs_welcome(c->mcast, w);
}

/* The broker's ERROR answering HELLO, as one line. */
static void hello_refused(const Fanout__Error *e, char *err, size_t errlen)
{
    if (e->has_code && e->code == FANOUT__ERROR_CODE__ERR_AUTH) {
        snprintf(err, errlen, "the broker refused the login: %s",
                 e->text && *e->text ? e->text : "bad credentials");
        return;
    }
    char t[200];
    error_text(e, t, sizeof t);
    snprintf(err, errlen, "broker refused HELLO: %s", t);
}

/* Some bytes of a new connection into the decoder, waiting until
 * deadline: FO_OK (maybe none yet), else the connection's end. */
static fo_err_t recv_some(fo_client_t *c, int fd, fo__tls_t *t, uint64_t deadline,
                          char *err, size_t errlen)
{
    char why[160];
    if (!t || !fo__tls_pending(t)) {
        uint64_t now = fo_clock_ms();
        struct pollfd p = { .fd = fd, .events = t ? fo__tls_events(t) : POLLIN };
        if (now >= deadline || poll(&p, 1, (int)(deadline - now)) <= 0)
            return FO_OK;
    }
    if (fo_buf_reserve(&c->dec.buf, 4096))
        return FO_ERR_NOMEM;
    size_t got = 0;
    fo_err_t e = FO_OK;
    if (t) {
        e = fo__tls_read(t, fo_buf_tail(&c->dec.buf), fo_buf_room(&c->dec.buf), &got);
    } else {
        ssize_t r = recv(fd, fo_buf_tail(&c->dec.buf), fo_buf_room(&c->dec.buf), 0);
        if (r < 0 && errno == EINTR)
            return FO_OK;
        e = r < 0 ? FO_ERR_IO : r == 0 ? FO_ERR_CLOSED : FO_OK;
        got = r > 0 ? (size_t)r : 0;
    }
    if (e == FO_ERR_CLOSED || (e && !t))
        snprintf(err, errlen, "broker closed the connection during HELLO");
    else if (e)
        snprintf(err, errlen, "the TLS session broke during HELLO: %s",
                 fo__tls_why(t, why, sizeof why));
    fo_buf_commit(&c->dec.buf, got);
    return e;
}

/* HELLO, then wait for WELCOME (answering PINGs); frames that follow stay
 * in the decoder for the reader. *epoch gets Welcome.epoch. */
static fo_err_t handshake(fo_client_t *c, int fd, fo__tls_t *t, uint64_t *epoch,
                          char *err, size_t errlen)
{
    char why[160];
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1;
    h.version = FO_PROTOCOL_VERSION;
    h.client_name = c->name;
    h.user = c->user;
    h.password = c->password;
    h.token = c->token;
    f.body_case = FANOUT__FRAME__BODY_HELLO;
    f.hello = &h;
    fo_buf_t b = FO_BUF_INIT;
    uint64_t deadline = fo_clock_ms() + (uint64_t)c->connect_timeout_ms;
    fo_err_t ret = fo_frame_append(&b, &f);
    if (!ret)
        ret = send_all(fd, t, fo_buf_head(&b), fo_buf_len(&b), deadline);
    int sys = errno;
    sodium_memzero(fo_buf_head(&b), fo_buf_len(&b));   /* the secrets */
    fo_buf_free(&b);
    if (ret) {
        if (t && ret != FO_ERR_TIMEOUT)
            snprintf(err, errlen, "sending HELLO: %s", fo__tls_why(t, why, sizeof why));
        else
            snprintf(err, errlen, "sending HELLO: %s", ret == FO_ERR_TIMEOUT ? "timed out"
                                                                             : strerror(sys));
        return ret;
    }
    fo_buf_consume(&c->dec.buf, fo_buf_len(&c->dec.buf));
    c->dec.max_frame = FO_MAX_FRAME_DEFAULT;
    for (;;) {
        const uint8_t *body;
        size_t len;
        fo_err_t d;
        while ((d = fo_decoder_next(&c->dec, &body, &len)) == FO_OK) {
            Fanout__Frame *in;
            fo_arena_reset(&c->arena);
            if (fo_frame_unpack(body, len, &c->arena, &in)) {
                snprintf(err, errlen, "broker sent a frame that does not unpack");
                return FO_ERR_PROTO;
            }
            if (in->body_case == FANOUT__FRAME__BODY_WELCOME) {
                *epoch = in->welcome->has_epoch ? in->welcome->epoch : 0;
                if ((ret = take_welcome(c, in->welcome)))
                    snprintf(err, errlen, "taking WELCOME: %s", fo_strerror(ret));
                return ret;
            }
            if (in->body_case == FANOUT__FRAME__BODY_ERROR) {
                hello_refused(in->error, err, errlen);
                return FO_ERR_SERVER;
            }
            if (in->body_case != FANOUT__FRAME__BODY_PING) {
                snprintf(err, errlen, "broker answered HELLO with frame %d",
                         (int)in->body_case);
                return FO_ERR_PROTO;
            }
        }
        if (d == FO_ERR_FRAME_SIZE) {
            snprintf(err, errlen, "broker sent a frame of bad length");
            return FO_ERR_PROTO;
        }
        if (fo_clock_ms() >= deadline) {
            snprintf(err, errlen, "no WELCOME within %d ms", c->connect_timeout_ms);
            return FO_ERR_TIMEOUT;
        }
        if ((ret = recv_some(c, fd, t, deadline, err, errlen)))
            return ret;
    }
}

/* Does this server go over TLS? Lexes it into *a (the TLS port when the
 * scheme comes from opts.tls and no port was written). */
static fo_err_t server_addr(const fo_client_t *c, const char *server, fo_addr_t *a, int *tls,
                            char *err, size_t errlen)
{
    if (fo_addr_parse(server, 0, a)) {
        snprintf(err, errlen, "bad address '%s' (want HOST[:PORT], fanout://HOST[:PORT] or "
                 "tls://HOST[:PORT])", server);
        return FO_ERR_ADDR;
    }
    *tls = a->scheme == FO_SCHEME_TLS || (a->scheme == FO_SCHEME_NONE && c->tls_default);
    if (*tls && a->scheme == FO_SCHEME_NONE && !a->has_port)
        a->port = FO_PORT_TLS;
    return FO_OK;
}

/* Dial one server, start TLS when it wants it, complete the handshake. */
static fo_err_t open_conn(fo_client_t *c, const char *server, int *fdp, fo__tls_t **tp,
                          uint64_t *epoch, char *err, size_t errlen)
{
    fo_addr_t a;
    int fd, tls;
    fo__tls_t *t = NULL;
    fo_err_t ret = server_addr(c, server, &a, &tls, err, errlen);
    if (ret || (ret = fo_dial_addr(&a, server, c->connect_timeout_ms, &fd, err, errlen)))
        return ret;
    if (tls) {
        char label[FO_ADDR_HOST_MAX + 16] = "tls://";
        fo_addr_format(&a, "127.0.0.1", label + 6, sizeof label - 6);
        ret = fo__tls_connect(c->tls_ctx, fd, a.host[0] ? a.host : "127.0.0.1", label,
                              fo_clock_ms() + (uint64_t)c->connect_timeout_ms, &t, err, errlen);
    }
    if (!ret)
        ret = handshake(c, fd, t, epoch, err, errlen);
    if (ret) {
        fo__tls_close(t, 0);
        close(fd);
        return ret;
    }
    *fdp = fd;
    *tp = t;
    return FO_OK;
}

/* ------------------------------------------------------------ reader */

/* The subscription for sid, pinned. Within one read batch the reader keeps
 * the last one pinned (c->cur), so a stream of messages for one
 * subscription costs no lock; a subscription retired meanwhile (dead) is
 * let go and looked up again (and not found). */
static fo_sub_t *batch_pin(fo_client_t *c, uint32_t sid)
{
    fo_sub_t *s = c->cur;
    if (s && s->sid == sid && !atomic_load(&s->dead))
        return s;
    if (s)
        fo__client_unpin(c, s);
    return c->cur = fo__client_pin(c, sid);
}

static void batch_unpin(fo_client_t *c)
{
    if (c->cur)
        fo__client_unpin(c, c->cur);
    c->cur = NULL;
}

static void on_deliver(fo_client_t *c, uint32_t sid, const fo_msg_t *m)
{
    if (m->replay && fo__mcast_subs_repaired(c->mcast, sid, m, fo_clock_ms()))
        return;                 /* a multicast repair: in order via its receiver */
    fo_sub_t *s = batch_pin(c, sid);
    if (!s)
        return;                 /* late message for a closed subscription */
    if (!s->queue && s->delivery == FO_DELIVERY_TCP) {
        /* Track what was seen per topic, for the resume point. A replay
         * of something already seen (we resume from the first sequence
         * not seen, so a few may come again) is dropped. Not a loss
         * detector: messages may arrive out of order (PROTOCOL.md 7). */
        fo__seqmap_ent_t *e = fo__seqmap_get(&s->seqs, m->topic, m->topic_len);
        if (e) {
            if (m->replay && fo__seqmap_seen(e, m->seq))
                return;
            fo__seqmap_mark(e, m->seq);
        }
    }
    fo__client_dispatch(c, s, m);
}

/* A message for subscription sid, or (sid 0) a reply to a request. */
static void deliver(fo_client_t *c, uint32_t sid, const fo_msg_t *m)
{
    if (sid == 0)
        fo__rr_on_reply(c, m);
    else
        on_deliver(c, sid, m);
}

fo_err_t fo__client_view_headers(fo_arena_t *a, const fo_deliver_view_t *v,
                                 fo_header_t **out)
{
    /* each key is preceded by at least its tag and length byte: keys and
     * their NULs fit in headers_len bytes */
    fo_header_t *hs = fo_arena_alloc(a, v->nheaders * sizeof *hs);
    char *keys = fo_arena_alloc(a, v->headers_len);
    if (!hs || !keys)
        return FO_ERR_NOMEM;
    size_t pos = 0, n = 0, kl, vl;
    const uint8_t *k, *val;
    int r;
    while ((r = fo_deliver_header_next(v, &pos, &k, &kl, &val, &vl)) == 1 && n < v->nheaders) {
        memcpy(keys, k, kl);
        keys[kl] = 0;
        hs[n++] = (fo_header_t){ keys, val, vl };
        keys += kl + 1;
    }
    if (r < 0 || n != v->nheaders)
        return FO_ERR_AGAIN;
    *out = hs;
    return FO_OK;
}

/* The reply address and headers of a view into m (arena copies where a
 * C string is needed). FO_ERR_AGAIN: leave the frame to protobuf-c. */
static fo_err_t view_extras(fo_client_t *c, const fo_deliver_view_t *v, fo_msg_t *m)
{
    if (v->reply) {
        char *r = fo_arena_alloc(&c->arena, v->reply_len + 1);
        if (!r)
            return FO_ERR_NOMEM;
        memcpy(r, v->reply, v->reply_len);
        r[v->reply_len] = 0;
        m->reply = r;
    }
    if (!v->nheaders)
        return FO_OK;
    fo_header_t *hs;
    fo_err_t err = fo__client_view_headers(&c->arena, v, &hs);
    if (!err) {
        m->headers = hs;
        m->nheaders = v->nheaders;
    }
    return err;
}

/* A DELIVER protobuf-c unpacked: the same fo_msg_t as the view gives. */
static void unpacked_deliver(fo_client_t *c, const Fanout__Frame *f)
{
    const Fanout__Deliver *d = f->deliver;
    if (!d->topic)
        return;
    fo_msg_t m = { d->topic, strlen(d->topic), d->payload.data, d->payload.len, d->seq,
                   d->time_ns, d->replay, d->reply, NULL, 0 };
    if (!m.payload)
        m.payload = "";
    if (d->n_headers) {
        fo_header_t *hs = fo_arena_alloc(&c->arena, d->n_headers * sizeof *hs);
        if (!hs)
            return;             /* out of memory: as if it never came */
        for (size_t i = 0; i < d->n_headers; i++) {
            const Fanout__Header *h = d->headers[i];
            hs[i].key = h->key ? h->key : "";
            hs[i].value = h->has_value && h->value.data ? (const void *)h->value.data : "";
            hs[i].value_len = h->has_value ? h->value.len : 0;
        }
        m.headers = hs;
        m.nheaders = d->n_headers;
    }
    deliver(c, f->sid, &m);
}

static void on_gap(fo_client_t *c, uint32_t sid, const Fanout__Gap *g)
{
    if (!g->topic || !g->has_first || !g->has_last || g->last < g->first)
        return;
    if (fo__mcast_subs_gap(c->mcast, sid, g->topic, g->first, g->last))
        return;
    fo_sub_t *s = fo__client_pin(c, sid);
    if (!s)
        return;
    if (!s->queue && s->delivery == FO_DELIVERY_TCP) {
        fo__seqmap_ent_t *e = fo__seqmap_get(&s->seqs, g->topic, strlen(g->topic));
        if (e)
            fo__seqmap_skip(e, g->first, g->last);
    }
    fo_gap_reason_t why = !g->has_reason ? FO_GAP_SLOW_CONSUMER
                        : g->reason == FANOUT__GAP_REASON__GAP_EVICTED ? FO_GAP_EVICTED
                        : g->reason == FANOUT__GAP_REASON__GAP_HOME_CHANGED ? FO_GAP_HOME_CHANGED
                        : FO_GAP_SLOW_CONSUMER;
    fo__client_gap(c, s, g->topic, g->first, g->last, why);
    fo__client_unpin(c, s);
}

/* One frame from the broker. Non-zero: the connection must be dropped. */
static fo_err_t handle_frame(fo_client_t *c, const uint8_t *body, size_t len)
{
    fo_deliver_view_t v;
    fo_err_t err = fo_deliver_peek(body, len, &v);
    if (err == FO_OK) {
        /* topic is not NUL-terminated in the frame; the byte after it is
         * the next field's key, so copy only when a callback needs a C
         * string: use a small stack copy for typical topics. */
        char tbuf[256];
        char *t = v.topic_len < sizeof tbuf ? tbuf : malloc(v.topic_len + 1);
        if (!t)
            return FO_OK;
        memcpy(t, v.topic, v.topic_len);
        t[v.topic_len] = 0;
        fo_msg_t m = { t, v.topic_len, v.payload, v.payload_len, v.seq,
                       v.time_ns, v.replay, NULL, NULL, 0 };
        /* reply address and headers: the view takes fanoutd's layout */
        err = v.reply || v.nheaders ? view_extras(c, &v, &m) : FO_OK;
        if (!err)
            deliver(c, v.sid, &m);
        if (t != tbuf)
            free(t);
        if (err != FO_ERR_AGAIN)
            return FO_OK;       /* FO_ERR_NOMEM: as if it never came */
    }
    Fanout__Frame *f;
    if ((err = fo_frame_unpack(body, len, &c->arena, &f)))
        return err;
    switch (f->body_case) {
    case FANOUT__FRAME__BODY_DELIVER:
        unpacked_deliver(c, f);
        break;
    case FANOUT__FRAME__BODY_ACK:
        /* a request's ACK says nothing its reply will not */
        if (f->ack->has_ref && !(f->ack->ref & FO__RR_REQ_BIT))
            complete(c, f->ack->ref, FO_OK, f->ack->seq);
        break;
    case FANOUT__FRAME__BODY_ERROR: {
        char t[256];
        error_text(f->error, t, sizeof t);
        atomic_fetch_add(&c->st_server_errors, 1);
        server_error(c, t);
        fo_err_t why = f->error->has_code && f->error->code == FANOUT__ERROR_CODE__ERR_NO_RESPONDERS
                     ? FO_ERR_NO_RESPONDERS : FO_ERR_SERVER;
        if (f->error->has_ref && (f->error->ref & FO__RR_REQ_BIT)) {
            fo__rr_on_error(c, f->error->ref & ~FO__RR_REQ_BIT, why);
        } else if (f->error->has_ref && f->error->ref) {
            complete(c, f->error->ref, why, 0);
        } else {
            /* A fatal ERROR without ref: the connection closes next and no
             * pending request will be answered; they fail with this text. */
            if (error_closes(f->error))
                fail_pending(c, FO_ERR_SERVER);
            event(c, FO_EV_SERVER_ERROR, FO_ERR_SERVER, t);
        }
        break;
    }
    case FANOUT__FRAME__BODY_GAP:
        on_gap(c, f->sid, f->gap);
        break;
    case FANOUT__FRAME__BODY_PING:
        c->pong_val = f->ping->has_nonce ? f->ping->nonce : 0;
        atomic_store(&c->pong_due, 1);
        break;
    case FANOUT__FRAME__BODY_PONG:
        pthread_mutex_lock(&c->mu);
        if (f->pong->has_nonce && f->pong->nonce > c->pong_nonce) {
            c->pong_nonce = f->pong->nonce;
            pthread_cond_broadcast(&c->cv);
        }
        pthread_mutex_unlock(&c->mu);
        break;
    default:
        break;                  /* nothing else is for a client: ignore */
    }
    return FO_OK;
}

/* Cut and handle every whole frame buffered. */
static fo_err_t drain_frames(fo_client_t *c)
{
    const uint8_t *body;
    size_t len;
    fo_err_t err;
    while ((err = fo_decoder_next(&c->dec, &body, &len)) == FO_OK)
        if ((err = handle_frame(c, body, len)))
            break;
    batch_unpin(c);
    fo_arena_reset(&c->arena);
    return err == FO_ERR_AGAIN ? FO_OK : err;
}

/* One read (at most the buffer's room) and the frames it completes.
 * *more: the read filled the room, so more is likely waiting (read again
 * before polling). now_ms stamps what was heard. */
static fo_err_t read_batch(fo_client_t *c, uint64_t now_ms, int *more)
{
    *more = 0;
    size_t want = fo_decoder_want(&c->dec);
    if (fo_buf_reserve(&c->dec.buf, want > READ_CHUNK ? want : READ_CHUNK))
        return FO_ERR_NOMEM;
    size_t room = fo_buf_room(&c->dec.buf);
    ssize_t n;
    if (c->tls) {
        size_t got;
        fo_err_t e = fo__tls_read(c->tls, fo_buf_tail(&c->dec.buf), room, &got);
        if (e || !got)
            return e;
        n = (ssize_t)got;
    } else {
        n = recv(c->rfd, fo_buf_tail(&c->dec.buf), room, MSG_DONTWAIT);
        if (n < 0)
            return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK ? FO_OK : FO_ERR_IO;
        if (n == 0)
            return FO_ERR_CLOSED;
    }
    fo_buf_commit(&c->dec.buf, (size_t)n);
    atomic_fetch_add_explicit(&c->st_bytes_in, (uint64_t)n, memory_order_relaxed);
    c->last_rx_ms = now_ms;
    *more = (size_t)n == room;
    return drain_frames(c);
}

/* The connection is gone: stop writers, fail waiters, tell the app. */
static void conn_lost(fo_client_t *c, fo_err_t why, const char *text)
{
    /* First release a publisher blocked in send() to a broker that stopped
     * reading: it holds wmu, which we need next. */
    shutdown(c->rfd, SHUT_RDWR);
    pthread_mutex_lock(&c->wmu);
    fo__client_drop_partial_locked(c);
    /* A client that will not reconnect is dead before its socket goes: a
     * publisher must see FO_ERR_CLOSED then, not FO_ERR_BUSY for the
     * frames it piled up while the send failed. */
    if (c->max_reconnects == 0 || atomic_load(&c->stop))
        atomic_store(&c->dead, 1);
    c->wfd = -1;
    fo__tls_t *t = c->tls;
    c->tls = NULL;
    pthread_mutex_unlock(&c->wmu);
    fo__tls_close(t, 0);        /* broken or gone: no close_notify */
    close(c->rfd);
    c->rfd = -1;
    pthread_mutex_lock(&c->mu);
    c->state = c->max_reconnects == 0 || atomic_load(&c->stop) ?
        FO__ST_CLOSED : FO__ST_RECONNECTING;
    c->conn_gen++;
    for (fo__pending_t *p = c->pending; p; p = p->next)
        if (!p->done) {
            p->done = 1;
            p->err = FO_ERR_NOT_CONNECTED;
        }
    if (text && *text && !c->error_seen)
        snprintf(c->last_error, sizeof c->last_error, "%s", text);
    c->error_seen = 0;
    pthread_cond_broadcast(&c->cv);
    int closed = c->state == FO__ST_CLOSED;
    pthread_mutex_unlock(&c->mu);
    if (closed)
        atomic_store(&c->dead, 1);
    /* Their replies would go to this connection's inbox, now gone. */
    fo__rr_lost(c, FO_ERR_NOT_CONNECTED);
    if (!atomic_load(&c->stop)) {
        event(c, FO_EV_DISCONNECTED, why, text);
        if (closed) {
            fo__client_wake_subs(c);
            event(c, FO_EV_CLOSED, why, text);
        }
    }
}

/* Drain the wake-up eventfd (close and the linger flush write it). */
static void wake_ack(fo_client_t *c)
{
    uint64_t v;
    if (read(c->wakefd, &v, sizeof v) < 0) {
        /* EAGAIN: nothing pending */
    }
}

/* Sleep up to ms, returning early (1) when the client is closing. */
static int nap(fo_client_t *c, int ms)
{
    struct pollfd p = { .fd = c->wakefd, .events = POLLIN };
    uint64_t end = fo_clock_ms() + (uint64_t)ms;
    for (;;) {
        if (atomic_load(&c->stop))
            return 1;
        uint64_t now = fo_clock_ms();
        if (now >= end)
            return 0;
        if (poll(&p, 1, (int)(end - now)) > 0)
            wake_ack(c);             /* a linger wake-up: nothing to send now */
    }
}

static int backoff_ms(const fo_client_t *c, int attempt, unsigned *seed)
{
    int64_t d = c->rc_min_ms;
    for (int i = 0; i < attempt && d < c->rc_max_ms; i++)
        d *= 2;
    if (d > c->rc_max_ms)
        d = c->rc_max_ms;
    double jitter = 0.5 + 0.5 * ((double)rand_r(seed) / RAND_MAX);
    return (int)(d * jitter);
}

/* Reconnect until it works (0) or the policy gives up / close (-1). */
static int reconnect(fo_client_t *c)
{
    unsigned seed = (unsigned)fo_clock_ns() ^ (unsigned)(uintptr_t)c;
    char err[256];
    for (int attempt = 0;; attempt++) {
        if (c->max_reconnects >= 0 && attempt >= c->max_reconnects)
            break;
        if (nap(c, backoff_ms(c, attempt, &seed)))
            return -1;
        /* the configured servers, then the cluster's other brokers */
        size_t k = c->server_idx++ % (c->nservers + c->nlearned);
        char server[FO__LEARNED_LEN];
        snprintf(server, sizeof server, "%s", k < c->nservers ? c->servers[k] : c->learned[k - c->nservers]);
        int fd;
        fo__tls_t *t = NULL;
        uint64_t epoch = 0;
        int was_clustered = c->clustered;
        fo_err_t e = open_conn(c, server, &fd, &t, &epoch, err, sizeof err);
        if (e) {
            fo__client_set_error(c, err);
            continue;
        }
        /* A new broker process (new epoch) numbers every topic afresh;
         * in a cluster the topics' homes do, whichever broker this is. */
        int forget = c->epoch && epoch != c->epoch && !(was_clustered && c->clustered);
        c->epoch = epoch;
        fo_buf_t frames = FO_BUF_INIT;
        fo_err_t re = fo__client_resubscribe(c, &frames, forget);
        pthread_mutex_lock(&c->wmu);
        if (!re && fo_buf_len(&c->out))
            re = fo_buf_append(&frames, fo_buf_head(&c->out), fo_buf_len(&c->out));
        if (!re) {
            fo_buf_free(&c->out);
            c->out = frames;
            c->out_sent = 0;
            c->wfd = fd;
            c->tls = t;
            atomic_store(&c->pong_due, 0);
            /* A failed write shut the socket down: the first read below
             * notices and the loss is handled like any other. */
            (void)!fo__client_write_locked(c);
        }
        pthread_mutex_unlock(&c->wmu);
        if (re) {
            snprintf(err, sizeof err, "resending the subscriptions: %s", fo_strerror(re));
            fo__client_set_error(c, err);
            fo_buf_free(&frames);
            fo__tls_close(t, 0);
            close(fd);
            continue;
        }
        c->rfd = fd;
        c->last_rx_ms = c->last_ping_ms = fo_clock_ms();
        fo__rr_welcome(c, c->inbox_next);   /* before anyone sees CONNECTED */
        pthread_mutex_lock(&c->mu);
        c->state = FO__ST_CONNECTED;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        atomic_fetch_add(&c->st_reconnects, 1);
        event(c, FO_EV_RECONNECTED, FO_OK, server);
        /* Frames that came right behind WELCOME. */
        if (drain_frames(c))
            conn_lost(c, FO_ERR_PROTO, "bad frame from broker");
        return 0;
    }
    pthread_mutex_lock(&c->mu);
    c->state = FO__ST_CLOSED;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    atomic_store(&c->dead, 1);
    fo__client_wake_subs(c);
    event(c, FO_EV_CLOSED, FO_ERR_NOT_CONNECTED, "gave up reconnecting");
    return -1;
}

/* The keepalive PING; skipped while a writer holds the lock (it is
 * sending anyway) and retried on the next tick. */
static void keepalive(fo_client_t *c, uint64_t now)
{
    if (pthread_mutex_trylock(&c->wmu))
        return;
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Ping pi = FANOUT__PING__INIT;
    f.body_case = FANOUT__FRAME__BODY_PING;
    f.ping = &pi;
    pi.has_nonce = 1;
    pi.nonce = ++c->ping_nonce;
    /* Nothing to do about a failure here: the PING is retried next
     * interval, and a write that failed shut the socket down, which the
     * reader notices. */
    if (c->wfd >= 0 && !fo_frame_append(&c->out, &f))
        (void)!fo__client_write_locked(c);
    pthread_mutex_unlock(&c->wmu);
    c->last_ping_ms = now;
}

/* Publishes buffered longer than the linger go out by themselves. A
 * writer holding the lock is publishing: look again one linger later (the
 * due time left in the past made the reader poll without a timeout, a
 * whole core spent polling while its publisher flooded). */
static void linger_due(fo_client_t *c, uint64_t now_us)
{
    if (!pthread_mutex_trylock(&c->wmu)) {
        fo__client_linger_flush_locked(c);
        pthread_mutex_unlock(&c->wmu);
    } else {
        atomic_store_explicit(&c->flush_at_us, now_us + (uint64_t)(c->linger_us > 0 ? c->linger_us : 1),
                              memory_order_relaxed);
    }
}

/* The next time the reader must wake up by itself, in µs. */
static uint64_t next_wake_us(fo_client_t *c, uint64_t now_us, uint64_t mdue_ms)
{
    uint64_t next = (c->last_ping_ms + c->ping_interval_ms) * 1000;
    uint64_t idle = (c->last_rx_ms + c->idle_ms) * 1000;
    if (idle < next)
        next = idle;
    if (atomic_load(&c->pong_due) && now_us + 5000 < next)
        next = now_us + 5000;
    if (mdue_ms != UINT64_MAX && mdue_ms * 1000 < next)
        next = mdue_ms * 1000;
    uint64_t rr = atomic_load_explicit(&c->rr.armed_us, memory_order_relaxed);
    if (rr < next)
        next = rr;
    uint64_t fl = atomic_load_explicit(&c->flush_at_us, memory_order_relaxed);
    if (fl && fl < next)
        next = fl;
    return next;
}

/* Wait for the socket, the wake-up fd or the multicast sockets, at most
 * until the next timer (mdue: the multicast one, ms). Returns poll's
 * count; p[0] counts as readable when the TLS session holds input. */
static int reader_wait(fo_client_t *c, uint64_t mdue, struct pollfd p[3])
{
    uint64_t now_us = fo_clock_us();
    uint64_t next = next_wake_us(c, now_us, mdue);
    uint64_t wait = next > now_us ? next - now_us : 0;
    struct timespec tmo = { (time_t)(wait / 1000000), (long)(wait % 1000000) * 1000 };
    p[0] = (struct pollfd){ .fd = c->rfd, .events = POLLIN };
    p[1] = (struct pollfd){ .fd = c->wakefd, .events = POLLIN };
    p[2] = (struct pollfd){ .fd = fo__mcast_subs_fd(c->mcast), .events = POLLIN };
    /* TLS: what OpenSSL already holds (a read cut at READ_CHUNK, a
     * read-ahead) is read without waiting; poll cannot see it */
    int held = 0;
    if (c->tls) {
        held = fo__tls_pending(c->tls);
        p[0].events = fo__tls_events(c->tls);
        if (held)
            tmo.tv_sec = tmo.tv_nsec = 0;
    }
    int n = ppoll(p, 3, &tmo, NULL);
    if (held && n >= 0) {
        p[0].revents |= POLLIN;
        n += !n;
    }
    return n;
}

/* The socket is readable: a few reads while they fill the buffer (a
 * flood: a poll per read costs as much as the read). 0, or -1 when the
 * connection was lost. */
static int reader_read(fo_client_t *c, uint64_t now)
{
    fo_err_t e;
    int more, reads = 0;
    do
        e = read_batch(c, now, &more);
    while (!e && more && ++reads < 8 && c->rfd >= 0);
    if (!e)
        return 0;
    char text[160], why[120] = "";
    if (c->tls && *fo__tls_why(c->tls, why, sizeof why))
        snprintf(text, sizeof text, "connection lost: %s (TLS: %s)", fo_strerror(e), why);
    else
        snprintf(text, sizeof text, "connection lost: %s", fo_strerror(e));
    conn_lost(c, e, text);
    return -1;
}

/* The reader's timers: requests' deadlines, a PONG owed, the publishers'
 * linger flush, keepalive, and the dead-peer check. */
static void reader_timers(fo_client_t *c, uint64_t now_us)
{
    uint64_t now = now_us / 1000;
    fo__rr_expire(c, now_us);
    if (atomic_load(&c->pong_due))
        fo__client_send_pong(c);
    uint64_t fl = atomic_load_explicit(&c->flush_at_us, memory_order_relaxed);
    if (fl && now_us >= fl)
        linger_due(c, now_us);
    if (now >= c->last_ping_ms + c->ping_interval_ms)
        keepalive(c, now);
    /* Dead when nothing was heard and nothing could be written for
     * idle_ms: a broker that is slowly reading a flood of ours is alive
     * even though its PONG is stuck behind our data. (Saturating: others
     * may stamp these after our clock read.) */
    uint64_t tx = atomic_load_explicit(&c->tx_ms, memory_order_relaxed);
    uint64_t quiet_rx = now > c->last_rx_ms ? now - c->last_rx_ms : 0;
    uint64_t quiet_tx = now > tx ? now - tx : 0;
    if (quiet_rx > c->idle_ms && quiet_tx > c->idle_ms) {
        char text[160];
        snprintf(text, sizeof text, "nothing heard from the broker in %u ms", c->idle_ms);
        conn_lost(c, FO_ERR_TIMEOUT, text);
    }
}

static void *reader_main(void *arg)
{
    fo_client_t *c = arg;
    uint64_t mdue = UINT64_MAX;  /* multicast timers (repair), ms; MAX = none */
    if (drain_frames(c))
        conn_lost(c, FO_ERR_PROTO, "bad frame from broker");
    while (!atomic_load(&c->stop)) {
        if (c->rfd < 0) {
            if (atomic_load(&c->dead) || reconnect(c))
                break;
            continue;
        }
        struct pollfd p[3];
        int n = reader_wait(c, mdue, p);
        if (atomic_load(&c->stop))
            break;
        if (n > 0 && p[1].revents)
            wake_ack(c);
        /* one clock read for the rest of the pass (timers are in ms) */
        uint64_t now_us = fo_clock_us(), now = now_us / 1000;
        if ((n > 0 && p[2].revents) || (mdue != UINT64_MAX && now >= mdue)) {
            int w = fo__mcast_subs_run(c->mcast, now);
            mdue = w < 0 ? UINT64_MAX : now + (uint64_t)w;
        }
        if (n > 0 && p[0].revents && reader_read(c, now))
            continue;
        reader_timers(c, now_us);
    }
    /* Every request still waiting is told, once, on this thread. */
    fo__rr_lost(c, FO_ERR_CLOSED);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

/* c->sync says which of mu, wmu and cv exist (initialised in that order). */
enum { SYNC_MU = 1, SYNC_WMU = 2, SYNC_CV = 3 };

static void wipe_free(char *s)
{
    if (s)
        sodium_memzero(s, strlen(s));
    free(s);
}

static void client_free(fo_client_t *c)
{
    for (size_t i = 0; i < c->nsubs; i++)
        fo__sub_free(c->subs[i]);
    free(c->subs);
    for (size_t i = 0; c->servers && i < c->nservers; i++)
        free(c->servers[i]);
    free(c->servers);
    free(c->name);
    wipe_free(c->user);
    wipe_free(c->password);
    wipe_free(c->token);
    fo__tls_ctx_free(c->tls_ctx);
    fo_buf_free(&c->out);
    fo_decoder_destroy(&c->dec);
    fo_arena_destroy(&c->arena);
    fo__mcast_subs_destroy(c->mcast);
    fo__rr_destroy(&c->rr);
    if (c->wakefd >= 0)
        close(c->wakefd);
    if (c->sync >= SYNC_CV)
        pthread_cond_destroy(&c->cv);
    if (c->sync >= SYNC_WMU)
        pthread_mutex_destroy(&c->wmu);
    if (c->sync >= SYNC_MU)
        pthread_mutex_destroy(&c->mu);
    free(c);
}

int fo__client_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    int err = pthread_condattr_init(&ca);
    if (err)
        return err;
    err = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (!err)
        err = pthread_cond_init(cv, &ca);
    int derr = pthread_condattr_destroy(&ca);
    if (!err && derr) {
        pthread_cond_destroy(cv);
        err = derr;
    }
    return err;
}

/* The locks and the condition variable; c->sync counts what exists. */
static fo_err_t init_sync(fo_client_t *c)
{
    if (pthread_mutex_init(&c->mu, NULL))
        return FO_ERR_NOMEM;
    c->sync = SYNC_MU;
    if (pthread_mutex_init(&c->wmu, NULL))
        return FO_ERR_NOMEM;
    c->sync = SYNC_WMU;
    if (fo__client_cond_init(&c->cv))
        return FO_ERR_NOMEM;
    c->sync = SYNC_CV;
    return FO_OK;
}

/* Copy the servers, name and credentials (borrowed in o). */
static fo_err_t copy_strings(fo_client_t *c, const fo_client_opts_t *o)
{
    c->servers = calloc(o->nservers, sizeof *c->servers);
    if (!c->servers)
        return FO_ERR_NOMEM;
    c->nservers = o->nservers;
    for (size_t i = 0; i < o->nservers; i++) {
        if (!o->servers[i])
            return FO_ERR_INVAL;
        if (!(c->servers[i] = strdup(o->servers[i])))
            return FO_ERR_NOMEM;
    }
    c->name = dupstr(o->name ? o->name : "libfanout");
    c->user = dupstr(o->user);
    c->password = dupstr(o->password);
    c->token = dupstr(o->token);
    if (!c->name || (o->user && !c->user) || (o->password && !c->password) ||
        (o->token && !c->token))
        return FO_ERR_NOMEM;
    return FO_OK;
}

/* Timeouts, reconnect policy, buffer sizes and callbacks: zero = default. */
static void take_settings(fo_client_t *c, const fo_client_opts_t *o)
{
    c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    c->request_timeout_ms = o->request_timeout_ms > 0 ? o->request_timeout_ms : 5000;
    c->rc_min_ms = o->reconnect_min_ms > 0 ? o->reconnect_min_ms : 100;
    c->rc_max_ms = o->reconnect_max_ms >= c->rc_min_ms ? o->reconnect_max_ms
                                                        : c->rc_min_ms;
    c->max_reconnects = o->max_reconnects;
    c->write_buffer = o->write_buffer ? o->write_buffer : (64u << 10);
    c->max_pending = o->max_pending ? o->max_pending : (8u << 20);
    c->linger_us = o->linger_us ? o->linger_us : 1000;
    c->on_gap = o->on_gap;
    c->on_event = o->on_event;
    c->ud = o->ud;
}

/* The TLS context, made when some server will be dialled with TLS (a bad
 * address is left to the dial, which says so). */
static fo_err_t tls_setup(fo_client_t *c, const fo_client_opts_t *o, char *err, size_t errlen)
{
    c->tls_default = o->tls != 0;
    for (size_t i = 0; i < c->nservers; i++) {
        fo_addr_t a;
        int tls;
        if (!server_addr(c, c->servers[i], &a, &tls, err, errlen) && tls)
            return fo__tls_ctx_new(o, &c->tls_ctx, err, errlen);
    }
    *err = 0;
    return FO_OK;
}

/* Everything but the connection: locks, buffers, options, TLS context,
 * wake-up fd, multicast set. */
static fo_err_t client_init(fo_client_t *c, const fo_client_opts_t *o, char *err,
                            size_t errlen)
{
    fo_err_t ret = init_sync(c);
    if (ret)
        return ret;
    fo_decoder_init(&c->dec, 0);
    if ((ret = fo_arena_init(&c->arena, 64u << 10, 0)))
        return ret;
    if ((ret = copy_strings(c, o)))
        return ret;
    take_settings(c, o);
    if ((ret = tls_setup(c, o, err, errlen)))
        return ret;
    if ((ret = fo__rr_init(&c->rr, o->max_requests)))
        return ret;
    c->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wakefd < 0)
        return FO_ERR_IO;
    return fo__mcast_subs_create(c, &c->mcast);
}

/* The first server that answers, in order; ebuf gets the last reason. */
static fo_err_t dial_first(fo_client_t *c, int *fd, fo__tls_t **t, char *ebuf, size_t elen)
{
    fo_err_t ret = FO_ERR_ADDR;
    for (size_t i = 0; i < c->nservers; i++) {
        ret = open_conn(c, c->servers[i], fd, t, &c->epoch, ebuf, elen);
        if (!ret) {
            c->server_idx = i + 1;
            break;
        }
    }
    return ret;
}

fo_err_t fo_client_connect(const fo_client_opts_t *o, fo_client_t **out,
                           char *errtext, size_t errlen)
{
    char ebuf[256] = "";
    fo_err_t ret = FO_ERR_INVAL;
    fo_client_t *c = NULL;
    if (!o || !out || !o->servers || !o->nservers) {
        snprintf(ebuf, sizeof ebuf, "no server given");
        goto fail;
    }
    ret = FO_ERR_NOMEM;
    if (!(c = calloc(1, sizeof *c)))
        goto fail;
    c->wfd = c->rfd = c->wakefd = -1;
    if ((ret = client_init(c, o, ebuf, sizeof ebuf)))
        goto fail;
    int fd = -1;
    fo__tls_t *t = NULL;
    if ((ret = dial_first(c, &fd, &t, ebuf, sizeof ebuf)))
        goto fail;
    c->wfd = c->rfd = fd;
    c->tls = t;
    c->state = FO__ST_CONNECTED;
    fo__rr_welcome(c, c->inbox_next);
    c->last_rx_ms = c->last_ping_ms = fo_clock_ms();
    if (pthread_create(&c->reader, NULL, reader_main, c)) {
        fo__tls_close(t, 0);
        close(fd);
        ret = FO_ERR_NOMEM;
        goto fail;
    }
    c->reader_started = 1;
    *out = c;
    return FO_OK;
fail:
    if (c)
        client_free(c);
    if (errtext && errlen)
        snprintf(errtext, errlen, "%s", *ebuf ? ebuf : fo_strerror(ret));
    return ret;
}

/* close without a drain: write what is buffered. Publishes that cannot go
 * out now (no connection, a broken socket) are lost with the client. */
static fo_err_t final_flush(fo_client_t *c)
{
    fo_err_t err = fo_client_flush(c, 0);
    if (!err)
        return FO_OK;
    pthread_mutex_lock(&c->wmu);
    int lost = fo_buf_len(&c->out) > c->out_sent;
    pthread_mutex_unlock(&c->wmu);
    return lost ? err : FO_OK;
}

fo_err_t fo_client_close(fo_client_t *c, int drain_ms)
{
    if (!c)
        return FO_OK;
    fo_err_t ret;
    if (drain_ms > 0 && fo_client_connected(c)) {
        /* The PONG comes after every DELIVER the broker queued before it
         * read our UNSUBSCRIBEs, and the reader handles frames in order. */
        ret = fo__client_unsubscribe_all(c);
        /* Without the unsubscribes there is no drain to wait for; what is
         * buffered is still written. */
        fo_err_t fl = fo_client_flush(c, ret ? 0 : drain_ms);
        if (ret || fl)
            ret = FO_ERR_TIMEOUT;
    } else {
        ret = final_flush(c);
    }
    atomic_store(&c->stop, 1);
    uint64_t one = 1;
    if (write(c->wakefd, &one, sizeof one) < 0) {
        /* eventfd cannot be full here; nothing else to do */
    }
    if (c->reader_started)
        pthread_join(c->reader, NULL);
    if (c->rfd >= 0) {
        fo__tls_close(c->tls, 1);   /* close_notify */
        shutdown(c->rfd, SHUT_RDWR);
        close(c->rfd);
    }
    client_free(c);
    return ret;
}

void fo_client_destroy(fo_client_t *c)
{
    /* destroy has no result: callers that want to know use close */
    (void)!fo_client_close(c, 0);
}
