/* peer.c -- one cluster link: connect or accept, the handshake, framing,
 * and the output queue with its never-drop-control rule (see peer.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <sodium.h>
#include "clock.h"
#include "net.h"
#include "peer.h"
#include "tls.h"

#define HEAD_INLINE 24
#define IOV_MAX_PEER 128
#define READ_CHUNK (64u * 1024)
#define GAP_RUNS 32               /* topics one drop pass can name */

struct fo_peer_ent {
    fo_msg_t *m;              /* data: its shared body follows the head; NULL: control */
    uint8_t *buf;             /* control frame, or a head longer than inl (owned) */
    uint32_t len;             /* bytes in buf (or inl) */
    uint32_t total;           /* len + the body's bytes */
    uint8_t dropped;          /* taken out of the queue in place */
    uint8_t inl[HEAD_INLINE];
};

static _Atomic uint64_t next_link_id;

static const uint8_t *ent_head(const fo_peer_ent_t *e)
{
    return e->buf ? e->buf : e->inl;
}

static void ent_clear(fo_peer_ent_t *e)
{
    if (e->m)
        fo_msg_unref(e->m);
    free(e->buf);
    memset(e, 0, sizeof *e);
}

/* The bytes of a buffer that was only appended to (they start at its
 * block's start), for the queue to own. */
static uint8_t *take_bytes(fo_buf_t *b)
{
    uint8_t *d = b->data;
    *b = (fo_buf_t)FO_BUF_INIT;
    return d;
}

static fo_peer_ent_t *at(fo_peer_t *p, size_t i)
{
    return &p->q[(p->qhead + i) & (p->qcap - 1)];
}

static int set_events(fo_peer_t *p)
{
    int out = p->want_out || p->tls_wants_out;
    uint32_t ev = p->state == FO_PEER_CONNECTING ? EPOLLOUT : EPOLLIN | (out ? EPOLLOUT : 0);
    struct epoll_event e = { .events = ev, .data.ptr = p };
    return epoll_ctl(p->cfg->epfd, EPOLL_CTL_MOD, p->fd, &e);
}

/* ------------------------------------------------------------ queue */

static fo_err_t q_room(fo_peer_t *p)
{
    if (p->qlen < p->qcap)
        return FO_OK;
    size_t ncap = p->qcap ? p->qcap * 2 : 64;
    fo_peer_ent_t *nq = calloc(ncap, sizeof *nq);
    if (!nq)
        return FO_ERR_NOMEM;
    for (size_t i = 0; i < p->qlen; i++)
        nq[i] = *at(p, i);
    free(p->q);
    p->q = nq;
    p->qcap = ncap;
    p->qhead = 0;
    return FO_OK;
}

/* Squeeze the dropped entries out (they pile up behind a head that does
 * not move: a peer that reads nothing). */
static void q_compact(fo_peer_t *p)
{
    size_t w = 0;
    for (size_t i = 0; i < p->qlen; i++) {
        fo_peer_ent_t e = *at(p, i);
        if (e.dropped && !(i == 0 && p->qoff) && i >= p->pinned)
            continue;
        *at(p, w++) = e;
    }
    for (size_t i = w; i < p->qlen; i++)
        memset(at(p, i), 0, sizeof(fo_peer_ent_t));
    p->qlen = w;
}

fo_err_t fo_peer_send(fo_peer_t *p, const Fanout__PeerFrame *f)
{
    if (p->state == FO_PEER_RETIRING && p->shut)
        return FO_OK;                 /* nothing more goes out of a retired link */
    fo_buf_t b = FO_BUF_INIT;
    if (q_room(p) || fo_peer_frame_append(&b, f)) {
        fo_buf_free(&b);
        return FO_ERR_NOMEM;
    }
    size_t n = fo_buf_len(&b);
    fo_peer_ent_t *e = at(p, p->qlen++);
    memset(e, 0, sizeof *e);
    e->buf = take_bytes(&b);
    e->len = e->total = (uint32_t)n;
    p->qbytes += n;
    return FO_OK;
}

/* The data entries from the oldest on (never the one being written), down
 * to 3/4 of the limit; each topic's first dropped slot becomes its GAP. */
static void drop_oldest(fo_peer_t *p)
{
    struct run { fo_msg_t *m; size_t slot; uint64_t first, last; } runs[GAP_RUNS];
    int nruns = 0;
    uint64_t goal = p->cfg->max_output / 4 * 3;
    size_t from = p->pinned > (p->qoff ? 1u : 0u) ? p->pinned : (p->qoff ? 1u : 0u);
    for (size_t i = from; i < p->qlen && p->qdata > goal; i++) {
        fo_peer_ent_t *e = at(p, i);
        if (!e->m || e->dropped)
            continue;
        size_t nl;
        const char *name = fo_msg_topic(e->m, &nl);
        int r = 0;
        while (r < nruns) {
            size_t rl;
            const char *rn = fo_msg_topic(runs[r].m, &rl);
            if (rl == nl && !memcmp(rn, name, nl))
                break;
            r++;
        }
        if (r == nruns) {
            if (nruns == GAP_RUNS)
                break;               /* the next pass names the others */
            runs[nruns++] = (struct run){ fo_msg_ref(e->m), i, e->m->seq, e->m->seq };
        } else {
            runs[r].last = e->m->seq;
        }
        p->qdata -= e->total;
        p->qbytes -= e->total;
        atomic_fetch_add_explicit(&p->ctr->drops, 1, memory_order_relaxed);
        ent_clear(e);
        e->dropped = 1;
    }
    for (int r = 0; r < nruns; r++) {
        size_t nl;
        const char *name = fo_msg_topic(runs[r].m, &nl);
        char topic[256];
        snprintf(topic, sizeof topic, "%.*s", (int)(nl < 255 ? nl : 255), name);
        Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
        Fanout__PeerGap g = FANOUT__PEER_GAP__INIT;
        g.topic = topic;
        g.has_first = g.has_last = 1;
        g.first = runs[r].first;
        g.last = runs[r].last;
        f.body_case = FANOUT__PEER_FRAME__BODY_GAP;
        f.gap = &g;
        fo_buf_t b = FO_BUF_INIT;
        if (!fo_peer_frame_append(&b, &f)) {
            size_t n = fo_buf_len(&b);
            fo_peer_ent_t *e = at(p, runs[r].slot);
            e->dropped = 0;
            e->buf = take_bytes(&b);
            e->len = e->total = (uint32_t)n;
            p->qbytes += n;
            atomic_fetch_add_explicit(&p->ctr->gaps_out, 1, memory_order_relaxed);
        }   /* out of memory: the receiver sees the hole in the sequence */
        fo_msg_unref(runs[r].m);
    }
    size_t dead = 0;
    for (size_t i = 0; i < p->qlen; i++)
        dead += at(p, i)->dropped;
    if (dead * 2 > p->qlen)
        q_compact(p);
}

int fo_peer_send_msg(fo_peer_t *p, fo_msg_t *m, const char *queue, const char *filter)
{
    if (p->state == FO_PEER_RETIRING || q_room(p)) {
        atomic_fetch_add_explicit(&p->ctr->drops, 1, memory_order_relaxed);
        fo_msg_unref(m);
        return 0;
    }
    uint8_t head[FO_PEER_HEAD_MAX];
    size_t hl = fo_peer_deliver_head(head, queue, filter, m->shared_len);
    fo_peer_ent_t *e = at(p, p->qlen);
    memset(e, 0, sizeof *e);
    if (!hl || hl > HEAD_INLINE) {
        if (!hl || !(e->buf = malloc(hl))) {
            atomic_fetch_add_explicit(&p->ctr->drops, 1, memory_order_relaxed);
            fo_msg_unref(m);
            return 0;
        }
        memcpy(e->buf, head, hl);
    } else {
        memcpy(e->inl, head, hl);
    }
    e->m = m;
    e->len = (uint32_t)hl;
    e->total = (uint32_t)(hl + m->shared_len);
    p->qlen++;
    p->qbytes += e->total;
    p->qdata += e->total;
    if (p->qdata > p->cfg->max_output)
        drop_oldest(p);
    return 1;
}

/* Pop what is written (or dropped) off the head. */
static void advance(fo_peer_t *p, size_t n)
{
    while (p->qlen) {
        fo_peer_ent_t *e = at(p, 0);
        size_t left = e->total - p->qoff;
        if (!e->dropped && n < left) {
            p->qoff += n;
            return;
        }
        if (!e->dropped) {
            n -= left;
            p->qbytes -= e->total;
            if (e->m) {
                p->qdata -= e->total;
                atomic_fetch_add_explicit(&p->ctr->msgs_out, 1, memory_order_relaxed);
            }
        }
        ent_clear(e);
        p->qoff = 0;
        p->qhead = (p->qhead + 1) & (p->qcap - 1);
        p->qlen--;
    }
}

/* TLS: copy up to one record from the head of the queue into the stash
 * (the entries touched are pinned until it is written). */
static void pack_record(fo_peer_t *p)
{
    size_t n = 0, off = p->qoff, i = 0;
    for (; i < p->qlen && n < FO_TLS_RECORD; i++, off = 0) {
        fo_peer_ent_t *e = at(p, i);
        if (e->dropped)
            continue;
        while (off < e->total && n < FO_TLS_RECORD) {
            const uint8_t *src = off < e->len ? ent_head(e) + off : e->m->shared + (off - e->len);
            size_t avail = off < e->len ? e->len - off : e->total - off;
            size_t k = avail < FO_TLS_RECORD - n ? avail : FO_TLS_RECORD - n;
            memcpy(p->stash + n, src, k);
            n += k;
            off += k;
        }
        if (off < e->total) {
            i++;
            break;
        }
    }
    p->stash_len = (uint32_t)n;
    p->pinned = i;
}

static fo_err_t flush_tls(fo_peer_t *p)
{
    if (!p->tls->established)
        return FO_OK;                 /* nothing before the handshake is done */
    if (!p->stash && !(p->stash = malloc(FO_TLS_RECORD)))
        return FO_ERR_NOMEM;
    while (p->qlen || p->stash_len) {
        if (!p->stash_len)
            pack_record(p);
        if (!p->stash_len) {
            advance(p, 0);            /* only dropped entries were left */
            break;
        }
        fo_tls_status_t st = fo_tls_write_buf(p->tls, p->stash, p->stash_len);
        if (st == FO_TLS_WANT_WRITE || st == FO_TLS_WANT_READ)
            break;                    /* the same record again later */
        if (st != FO_TLS_OK)
            return FO_ERR_IO;
        atomic_fetch_add_explicit(&p->ctr->bytes_out, p->stash_len, memory_order_relaxed);
        size_t n = p->stash_len;
        p->stash_len = 0;
        p->pinned = 0;
        advance(p, n);
    }
    if (!p->qlen && !p->stash_len) {
        free(p->stash);
        p->stash = NULL;
    }
    return FO_OK;
}

/* writev the queue until it is empty or the socket full. */
static fo_err_t flush_plain(fo_peer_t *p)
{
    while (p->qlen) {
        struct iovec iov[IOV_MAX_PEER];
        int n = 0;
        size_t off = p->qoff;
        for (size_t i = 0; i < p->qlen && n + 2 <= IOV_MAX_PEER; i++, off = 0) {
            fo_peer_ent_t *e = at(p, i);
            if (e->dropped)
                continue;
            if (off < e->len)
                iov[n++] = (struct iovec){ (void *)(ent_head(e) + off), e->len - off };
            if (e->m) {
                size_t bo = off > e->len ? off - e->len : 0;
                iov[n++] = (struct iovec){ e->m->shared + bo, e->m->shared_len - bo };
            }
        }
        if (!n) {
            advance(p, 0);          /* only dropped entries were left */
            break;
        }
        ssize_t w = writev(p->fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            return FO_ERR_IO;
        }
        atomic_fetch_add_explicit(&p->ctr->bytes_out, (uint64_t)w, memory_order_relaxed);
        advance(p, (size_t)w);
    }
    return FO_OK;
}

fo_err_t fo_peer_flush(fo_peer_t *p)
{
    if (p->state == FO_PEER_CONNECTING)
        return FO_OK;
    if (p->tls) {
        fo_err_t e = flush_tls(p);
        if (e)
            return e;
    }
    if (!p->tls) {
        fo_err_t e = flush_plain(p);
        if (e)
            return e;
    }
    /* TLS: not before the handshake, nor while a write waits to read */
    int want = p->qlen > 0 && (!p->tls || (p->tls->established && p->tls->wr_want != FO_TLS_WANT_READ));
    if (want != p->want_out) {
        p->want_out = (uint8_t)want;
        if (set_events(p))
            return FO_ERR_IO;
    }
    if (!p->qlen && !p->stash_len && p->state == FO_PEER_RETIRING && !p->shut) {
        p->shut = 1;
        shutdown(p->fd, SHUT_WR);
    }
    return FO_OK;
}

/* ------------------------------------------------------------ lifecycle */

static fo_err_t send_hello(fo_peer_t *p)
{
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerHello h = FANOUT__PEER_HELLO__INIT;
    h.has_version = 1;
    h.version = FO_PEER_VERSION;
    h.node_id = (char *)p->cfg->node_id;
    h.has_nonce = 1;
    h.nonce = (ProtobufCBinaryData){ FO_PEER_NONCE, p->my_nonce };
    h.client_addr = (char *)p->cfg->client_addr;
    h.has_epoch = 1;
    h.epoch = p->cfg->epoch;
    f.body_case = FANOUT__PEER_FRAME__BODY_HELLO;
    f.hello = &h;
    return fo_peer_send(p, &f);
}

static fo_err_t create(const fo_peer_cfg_t *cfg, int fd, int outgoing, fo_peer_t **out)
{
    struct ssl_ctx_st *tls_ctx = outgoing ? cfg->tls_client : cfg->tls_server;
    fo_peer_t *p = calloc(1, sizeof *p);
    if (!p) {
        close(fd);
        return FO_ERR_NOMEM;
    }
    p->id = atomic_fetch_add(&next_link_id, 1) + 1;
    p->fd = fd;
    p->cfg = cfg;
    p->ctr = &p->own;
    p->node = p->target = -1;
    p->outgoing = (uint8_t)outgoing;
    p->state = outgoing ? FO_PEER_CONNECTING : FO_PEER_HANDSHAKE;
    p->deadline_ms = fo_clock_ms() + FO_PEER_HANDSHAKE_MS;
    p->last_rx_ms = p->last_ping_ms = fo_clock_ms();
    fo_decoder_init(&p->dec, cfg->max_frame);
    randombytes_buf(p->my_nonce, sizeof p->my_nonce);
    fo_err_t e = FO_ERR_NOMEM;
    if (fo_interest_map_create(&p->theirs) || send_hello(p))
        goto fail;
    if (tls_ctx && (!(p->tls = calloc(1, sizeof *p->tls)) ||
                    fo_tls_conn_init_peer(tls_ctx, p->tls, fd, !outgoing))) {
        free(p->tls);
        p->tls = NULL;
        goto fail;
    }
    struct epoll_event ev = { .events = outgoing ? EPOLLOUT : EPOLLIN | EPOLLOUT, .data.ptr = p };
    p->want_out = 1;
    if (epoll_ctl(cfg->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        e = FO_ERR_IO;
        goto fail;
    }
    *out = p;
    return FO_OK;
fail:
    fo_peer_destroy(p);
    return e;
}

fo_err_t fo_peer_connect(const fo_peer_cfg_t *cfg, const char *addr, fo_peer_t **out)
{
    int fd = fo_net_connect(addr);
    if (fd < 0)
        return FO_ERR_IO;
    fo_err_t e = create(cfg, fd, 1, out);
    if (!e)
        snprintf((*out)->addr, sizeof (*out)->addr, "%s", addr);
    return e;
}

fo_err_t fo_peer_accept(const fo_peer_cfg_t *cfg, int fd, fo_peer_t **out)
{
    fo_net_nodelay(fd);
    fo_err_t e = create(cfg, fd, 0, out);
    if (!e)
        fo_net_peer_name(fd, (*out)->addr, sizeof (*out)->addr);
    return e;
}

void fo_peer_destroy(fo_peer_t *p)
{
    if (!p)
        return;
    if (p->tls) {
        fo_tls_conn_free(p->tls);     /* a best-effort close_notify first */
        free(p->tls);
    }
    if (p->fd >= 0) {
        (void)!epoll_ctl(p->cfg->epfd, EPOLL_CTL_DEL, p->fd, NULL);   /* closing removes it anyway */
        close(p->fd);
    }
    free(p->stash);
    for (size_t i = 0; i < p->qlen; i++)
        ent_clear(at(p, i));
    free(p->q);
    fo_decoder_destroy(&p->dec);
    fo_interest_map_destroy(p->theirs);
    free(p);
}

void fo_peer_retire(fo_peer_t *p, uint64_t now_ms)
{
    if (p->state == FO_PEER_RETIRING)
        return;
    p->state = FO_PEER_RETIRING;
    p->deadline_ms = now_ms + FO_PEER_RETIRE_MS;
    /* queued data stays: it was meant for this peer, which reads the
     * link to its end; a flush shuts the write side once it is out */
    if (!p->qlen && !p->shut) {
        p->shut = 1;
        shutdown(p->fd, SHUT_WR);
    }
}

fo_err_t fo_peer_tick(fo_peer_t *p, uint64_t now_ms)
{
    if (p->state != FO_PEER_UP)
        return now_ms >= p->deadline_ms ? FO_ERR_TIMEOUT : FO_OK;
    if (now_ms - p->last_rx_ms >= FO_PEER_IDLE_MS)
        return FO_ERR_TIMEOUT;
    if (now_ms - p->last_rx_ms >= FO_PEER_PING_MS && now_ms - p->last_ping_ms >= FO_PEER_PING_MS) {
        p->last_ping_ms = now_ms;
        Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
        Fanout__PeerPing ping = FANOUT__PEER_PING__INIT;
        f.body_case = FANOUT__PEER_FRAME__BODY_PING;
        f.ping = &ping;
        return fo_peer_send(p, &f) ? FO_ERR_TIMEOUT : FO_OK;
    }
    return FO_OK;
}

/* ------------------------------------------------------------ handshake */

/* HMAC-SHA256(secret, "fanout-cluster-1" nonce id). */
static void mac_of(const fo_peer_t *p, const uint8_t *nonce, const char *id, uint8_t out[FO_PEER_MAC])
{
    static const char label[] = "fanout-cluster-1";
    static const uint8_t nokey[1];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, p->cfg->secret_len ? p->cfg->secret : nokey, p->cfg->secret_len);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, sizeof label - 1);
    crypto_auth_hmacsha256_update(&st, nonce, FO_PEER_NONCE);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)id, strlen(id));
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

static fo_err_t on_hello(fo_peer_t *p, const Fanout__PeerHello *h, char *why, size_t whylen)
{
    if (p->node_id[0]) {
        snprintf(why, whylen, "a second PeerHello");
        return FO_ERR_PROTO;
    }
    if (h->version != FO_PEER_VERSION) {
        snprintf(why, whylen, "peer protocol version %u (this broker speaks %u)", h->version, FO_PEER_VERSION);
        return FO_ERR_PROTO;
    }
    if (!strcmp(h->node_id, p->cfg->node_id)) {
        snprintf(why, whylen, "this is this broker itself (node id \"%s\")", h->node_id);
        return FO_ERR_INVAL;
    }
    snprintf(p->node_id, sizeof p->node_id, "%s", h->node_id);
    snprintf(p->client_addr, sizeof p->client_addr, "%s", h->client_addr ? h->client_addr : "");
    p->their_epoch = h->has_epoch ? h->epoch : 0;
    memcpy(p->their_nonce, h->nonce.data, FO_PEER_NONCE);
    uint8_t mac[FO_PEER_MAC];
    mac_of(p, p->their_nonce, p->cfg->node_id, mac);
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerAuth a = FANOUT__PEER_AUTH__INIT;
    a.has_mac = 1;
    a.mac = (ProtobufCBinaryData){ sizeof mac, mac };
    f.body_case = FANOUT__PEER_FRAME__BODY_AUTH;
    f.auth = &a;
    p->sent_auth = 1;
    return fo_peer_send(p, &f);
}

static fo_err_t on_auth(fo_peer_t *p, const Fanout__PeerAuth *a, char *why, size_t whylen)
{
    if (!p->node_id[0] || p->got_auth) {
        snprintf(why, whylen, "PeerAuth out of turn");
        return FO_ERR_PROTO;
    }
    uint8_t want[FO_PEER_MAC];
    mac_of(p, p->my_nonce, p->node_id, want);
    if (sodium_memcmp(want, a->mac.data, FO_PEER_MAC)) {
        snprintf(why, whylen, "node \"%s\" failed the cluster authentication (another --cluster-secret)",
                 p->node_id);
        return FO_ERR_PROTO;
    }
    p->got_auth = 1;
    return FO_OK;
}

/* One frame. */
static fo_err_t handle(fo_peer_t *p, const Fanout__PeerFrame *f, const fo_peer_cb_t *cb,
                       char *why, size_t whylen)
{
    switch (f->body_case) {
    case FANOUT__PEER_FRAME__BODY_HELLO:
        return on_hello(p, f->hello, why, whylen);
    case FANOUT__PEER_FRAME__BODY_AUTH: {
        fo_err_t e = on_auth(p, f->auth, why, whylen);
        if (e)
            return e;
        if (p->state == FO_PEER_HANDSHAKE) {
            p->state = FO_PEER_UP;
            cb->up(cb->ud, p);
        }
        return FO_OK;
    }
    default:
        break;
    }
    if (p->state != FO_PEER_UP && p->state != FO_PEER_RETIRING) {
        snprintf(why, whylen, "a frame before the handshake finished");
        return FO_ERR_PROTO;
    }
    if (f->body_case == FANOUT__PEER_FRAME__BODY_PING) {
        Fanout__PeerFrame r = FANOUT__PEER_FRAME__INIT;
        Fanout__PeerPong pong = FANOUT__PEER_PONG__INIT;
        pong.has_nonce = f->ping->has_nonce;
        pong.nonce = f->ping->nonce;
        r.body_case = FANOUT__PEER_FRAME__BODY_PONG;
        r.pong = &pong;
        return fo_peer_send(p, &r);
    }
    if (f->body_case == FANOUT__PEER_FRAME__BODY_PONG)
        return FO_OK;
    cb->frame(cb->ud, p, f);
    return FO_OK;
}

/* Bytes from the socket (or the TLS session) into the decoder: > 0 read,
 * 0 nothing more now, -1 finished (why set, *e the reason). */
static ssize_t read_chunk(fo_peer_t *p, fo_err_t *e, char *why, size_t whylen)
{
    if (fo_buf_reserve(&p->dec.buf, READ_CHUNK)) {
        snprintf(why, whylen, "out of memory for input");
        *e = FO_ERR_NOMEM;
        return -1;
    }
    if (p->tls) {
        size_t got = 0;
        fo_tls_status_t st = fo_tls_read(p->tls, fo_buf_tail(&p->dec.buf), READ_CHUNK, &got);
        p->tls_wants_out = st == FO_TLS_WANT_WRITE;
        if (st == FO_TLS_OK)
            return (ssize_t)got;
        if (st == FO_TLS_WANT_READ || st == FO_TLS_WANT_WRITE)
            return 0;
        snprintf(why, whylen, "%s", st == FO_TLS_EOF ? "closed by the peer" : p->tls->why);
        *e = st == FO_TLS_EOF ? FO_ERR_CLOSED : FO_ERR_IO;
        return -1;
    }
    for (;;) {
        ssize_t n = read(p->fd, fo_buf_tail(&p->dec.buf), READ_CHUNK);
        if (n > 0)
            return n;
        if (n == 0) {
            snprintf(why, whylen, "closed by the peer");
            *e = FO_ERR_CLOSED;
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        snprintf(why, whylen, "read: %s", strerror(errno));
        *e = FO_ERR_IO;
        return -1;
    }
}

static fo_err_t read_some(fo_peer_t *p, fo_arena_t *arena, const fo_peer_cb_t *cb, size_t budget,
                          char *why, size_t whylen)
{
    size_t got = 0;
    p->tls_pending = 0;
    while (got < budget) {
        fo_err_t e = FO_OK;
        ssize_t n = read_chunk(p, &e, why, whylen);
        if (n < 0)
            return e;
        if (n == 0)
            return p->tls && set_events(p) ? FO_ERR_IO : FO_OK;
        fo_buf_commit(&p->dec.buf, (size_t)n);
        got += (size_t)n;
        p->last_rx_ms = fo_clock_ms();
        atomic_fetch_add_explicit(&p->ctr->bytes_in, (uint64_t)n, memory_order_relaxed);
        for (;;) {
            const uint8_t *body;
            size_t len;
            e = fo_decoder_next(&p->dec, &body, &len);
            if (e == FO_ERR_AGAIN)
                break;
            if (e) {
                snprintf(why, whylen, "frame of %zu bytes (at most %u)", len, p->dec.max_frame);
                return e;
            }
            Fanout__PeerFrame *f;
            if ((e = fo_peer_frame_unpack(body, len, arena, &f))) {
                snprintf(why, whylen, "%s peer frame", e == FO_ERR_BAD_FRAME ? "a malformed" : "an incomplete");
                return e;
            }
            if (f->body_case == FANOUT__PEER_FRAME__BODY_DELIVER)
                atomic_fetch_add_explicit(&p->ctr->msgs_in, 1, memory_order_relaxed);
            if ((e = handle(p, f, cb, why, whylen)))
                return e;
        }
        fo_arena_reset(arena);
    }
    /* the budget ran out: what the session still holds epoll cannot see */
    p->tls_pending = p->tls && fo_tls_pending(p->tls);
    return FO_OK;
}

/* TLS: drive the handshake; once done the hello (queued) can go. */
static fo_err_t tls_handshake(fo_peer_t *p, char *why, size_t whylen)
{
    fo_tls_status_t st = fo_tls_handshake(p->tls);
    p->tls_wants_out = st == FO_TLS_WANT_WRITE;
    p->want_out = 0;                   /* the queue waits for the handshake */
    if (st == FO_TLS_WANT_READ || st == FO_TLS_WANT_WRITE)
        return set_events(p) ? FO_ERR_IO : FO_OK;
    if (st != FO_TLS_OK) {
        snprintf(why, whylen, "TLS handshake: %s", p->tls->why[0] ? p->tls->why : "closed");
        return FO_ERR_PROTO;
    }
    return fo_peer_flush(p);           /* the hello, then whatever waits */
}

fo_err_t fo_peer_on_events(fo_peer_t *p, uint32_t events, fo_arena_t *arena, const fo_peer_cb_t *cb,
                           size_t budget, char *why, size_t whylen)
{
    if (p->state == FO_PEER_CONNECTING) {
        int e = fo_net_connect_result(p->fd);
        if (e) {
            snprintf(why, whylen, "connect: %s", strerror(e));
            return FO_ERR_IO;
        }
        p->state = FO_PEER_HANDSHAKE;
        p->want_out = 1;
        if (set_events(p)) {
            snprintf(why, whylen, "epoll_ctl: %s", strerror(errno));
            return FO_ERR_IO;
        }
        /* TLS: the ClientHello goes now; plain: the hello with this
         * iteration's flush */
        return p->tls ? tls_handshake(p, why, whylen) : FO_OK;
    }
    if (p->tls && !p->tls->established)
        return tls_handshake(p, why, whylen);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR) || (p->tls_wants_out && (events & EPOLLOUT))) {
        fo_err_t e = read_some(p, arena, cb, budget, why, whylen);
        if (e)
            return e;
    }
    if (events & EPOLLOUT) {
        fo_err_t e = fo_peer_flush(p);
        if (e) {
            snprintf(why, whylen, "write: %s", p->tls ? p->tls->why : strerror(errno));
            return e;
        }
    }
    return FO_OK;
}
