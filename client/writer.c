/* writer.c -- the publish path of libfanout: one write buffer per client.
 *
 * Publishing appends an encoded PUBLISH frame to c->out under c->wmu and
 * writes the buffer with one send() when it reaches write_buffer bytes (or
 * on fo_client_flush), so a flood of small messages costs one system call
 * per 64 KiB, not one per message. A publish that leaves the buffer short
 * of write_buffer arms the linger (opts.linger_us, 1 ms): the reader
 * thread writes whatever is still buffered then, without blocking, so a
 * lone publish never waits for the next keepalive. The socket is blocking: a publisher
 * that outruns the broker waits in send() (backpressure), and the reader
 * thread's dead-peer check shut()s the socket down to release it. Over
 * TLS the same holds with the socket non-blocking: the writer waits in
 * poll() for room, outside the session's lock (tls.h).
 *
 * The buffer holds whole frames only. If a send fails halfway, out_sent
 * remembers how far it got; when the reader declares the connection lost
 * it drops the frames already (partly) written and keeps the rest, which
 * go out first thing after the reconnect. The reader never blocks on wmu:
 * it sends PING/PONG with trylock and otherwise leaves the PONG to whoever
 * holds the lock (fo__client_write_locked sends a pending PONG first).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include "client_int.h"
#include "clock.h"
#include "tls.h"
#include "topic_name.h"

static fo_err_t append_ctl(fo_client_t *c, int ping, uint64_t nonce)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Ping pi = FANOUT__PING__INIT;
    Fanout__Pong po = FANOUT__PONG__INIT;
    if (ping) {
        pi.has_nonce = 1;
        pi.nonce = nonce;
        f.body_case = FANOUT__FRAME__BODY_PING;
        f.ping = &pi;
    } else {
        po.has_nonce = 1;
        po.nonce = nonce;
        f.body_case = FANOUT__FRAME__BODY_PONG;
        f.pong = &po;
    }
    return fo_frame_append(&c->out, &f);
}

/* One send() of p, or over TLS one record or so (errno EAGAIN when it
 * would block with MSG_DONTWAIT, EIO when the session broke). */
static ssize_t put(fo_client_t *c, const uint8_t *p, size_t n, int flags)
{
    if (!c->tls)
        return send(c->wfd, p, n, MSG_NOSIGNAL | flags);
    size_t done;
    fo_err_t e = fo__tls_write(c->tls, p, n, (flags & MSG_DONTWAIT) ? 0 : UINT64_MAX, &done);
    if (!e)
        return (ssize_t)done;
    errno = e == FO_ERR_AGAIN ? EAGAIN : EIO;
    return -1;
}

/* Send the buffer; with MSG_DONTWAIT stop (FO_ERR_AGAIN) when the socket
 * is full and keep the rest for later. */
static fo_err_t write_out(fo_client_t *c, int flags)
{
    if (c->wfd < 0)
        return FO_ERR_NOT_CONNECTED;
    if (atomic_load(&c->pong_due)) {
        atomic_store(&c->pong_due, 0);
        if (append_ctl(c, 0, c->pong_val))
            atomic_store(&c->pong_due, 1);
    }
    while (c->out_sent < fo_buf_len(&c->out)) {
        ssize_t n = put(c, fo_buf_head(&c->out) + c->out_sent,
                        fo_buf_len(&c->out) - c->out_sent, flags);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if ((flags & MSG_DONTWAIT) && (errno == EAGAIN || errno == EWOULDBLOCK))
                return FO_ERR_AGAIN;
            /* Let the reader notice, drop the partial frame, reconnect. */
            shutdown(c->wfd, SHUT_RDWR);
            return FO_ERR_IO;
        }
        c->out_sent += (size_t)n;
        /* Progress of real data (not a lone PING/PONG, which a hung
         * broker's kernel would accept too) proves the broker reads. */
        if (n > 64)
            atomic_store_explicit(&c->tx_ms, fo_clock_ms(), memory_order_relaxed);
        atomic_fetch_add_explicit(&c->st_bytes_out, (uint64_t)n,
                                  memory_order_relaxed);
    }
    fo_buf_consume(&c->out, fo_buf_len(&c->out));
    c->out_sent = 0;
    atomic_store_explicit(&c->flush_at_us, 0, memory_order_relaxed);
    return FO_OK;
}

fo_err_t fo__client_write_locked(fo_client_t *c)
{
    return write_out(c, 0);
}

void fo__client_linger_flush_locked(fo_client_t *c)
{
    /* Never block the reader in send(): a broker that stopped reading us
     * (flow control) must still be read from. */
    if (write_out(c, MSG_DONTWAIT) == FO_ERR_AGAIN)
        atomic_store_explicit(&c->flush_at_us, fo_clock_us() + (uint64_t)c->linger_us,
                              memory_order_relaxed);
    else
        atomic_store_explicit(&c->flush_at_us, 0, memory_order_relaxed);
}

/* A publish left bytes in the buffer: make sure they go out within the
 * linger, by the reader, if nobody writes them before. */
static void arm_linger(fo_client_t *c)
{
    if (c->linger_us < 0 || atomic_load_explicit(&c->flush_at_us, memory_order_relaxed))
        return;
    atomic_store_explicit(&c->flush_at_us, fo_clock_us() + (uint64_t)c->linger_us,
                          memory_order_relaxed);
    uint64_t one = 1;
    if (write(c->wakefd, &one, sizeof one) < 0) {
        /* cannot fail (the counter is far from full); the reader's next
         * tick would notice anyway */
    }
}

void fo__client_drop_partial_locked(fo_client_t *c)
{
    size_t off = 0, len = fo_buf_len(&c->out);
    const uint8_t *h = fo_buf_head(&c->out);
    while (off < c->out_sent && off + FO_FRAME_HDR <= len)
        off += FO_FRAME_HDR + fo_be32_get(h + off);
    if (off > c->out_sent)
        atomic_fetch_add(&c->st_publish_lost, 1);
    fo_buf_consume(&c->out, off);
    c->out_sent = 0;
}

fo_err_t fo_publish(fo_client_t *c, const char *topic, const void *payload,
                    size_t len)
{
    if (!c || !topic || (!payload && len))
        return FO_ERR_INVAL;
    size_t tl = strlen(topic);
    size_t n = fo_publish_frame_size(tl, len, 0);
    if (n - FO_FRAME_HDR > atomic_load_explicit(&c->max_frame_out, memory_order_relaxed))
        return FO_ERR_RANGE;   /* the broker would close us for it */
    pthread_mutex_lock(&c->wmu);
    fo_err_t err = FO_OK;
    if (c->wfd < 0) {
        if (atomic_load(&c->dead))
            err = FO_ERR_CLOSED;
        else if (fo_buf_len(&c->out) + n > c->max_pending)
            err = FO_ERR_BUSY;
        if (err)
            goto out;
    }
    if ((err = fo_buf_reserve(&c->out, n)))
        goto out;
    fo_buf_commit(&c->out, fo_publish_frame_pack(fo_buf_tail(&c->out), topic,
                                                 tl, payload, len, 0));
    FO__COUNT_ADD(c->st_published, 1);
    /* A failed write keeps the frames (they go out after the reconnect)
     * and shuts the socket down, which the reader notices. */
    if (c->wfd >= 0 && fo_buf_len(&c->out) >= c->write_buffer)
        (void)!fo__client_write_locked(c);
    else if (c->wfd >= 0)
        arm_linger(c);
out:
    pthread_mutex_unlock(&c->wmu);
    return err;
}

/* ------------------------------------------------ reply address, headers */

void fo_pub_opts_init(fo_pub_opts_t *o)
{
    memset(o, 0, sizeof *o);
}

static int key_ok(const char *k, size_t n)
{
    if (n == 0 || n > FO_HEADER_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f)
            return 0;
    return 1;
}

/* The broker's limits (docs/PROTOCOL.md §4.4), checked before sending:
 * past them it would answer ERR_BAD_REQUEST, or close the connection for
 * a bad reply address. */
static fo_err_t check_extras(fo_client_t *c, const char *reply, const fo_pub_opts_t *o)
{
    char why[160];
    fo_err_t err = FO_OK;
    size_t n = o ? o->nheaders : 0, bytes = 0;
    if (reply && !fo_topic_valid(reply, strlen(reply))) {
        snprintf(why, sizeof why, "invalid reply address \"%.64s\"", reply);
        err = FO_ERR_INVAL;
    } else if (n && !o->headers) {
        snprintf(why, sizeof why, "%zu headers given as NULL", n);
        err = FO_ERR_INVAL;
    } else if (n > FO_HEADERS_MAX) {
        snprintf(why, sizeof why, "%zu headers (at most %d)", n, FO_HEADERS_MAX);
        err = FO_ERR_RANGE;
    }
    for (size_t i = 0; !err && i < n; i++) {
        const fo_header_t *h = &o->headers[i];
        size_t kl = h->key ? strlen(h->key) : 0;
        if (!h->value && h->value_len) {
            snprintf(why, sizeof why, "header %zu: a NULL value of %zu bytes", i + 1, h->value_len);
            err = FO_ERR_INVAL;
        } else if (!key_ok(h->key, kl)) {
            snprintf(why, sizeof why, "header %zu: a key is 1..%d bytes 0x21..0x7e", i + 1,
                     FO_HEADER_KEY_MAX);
            err = FO_ERR_RANGE;
        }
        bytes += kl + h->value_len;
    }
    if (!err && bytes > FO_HEADERS_BYTES) {
        snprintf(why, sizeof why, "headers of %zu bytes (at most %d)", bytes, FO_HEADERS_BYTES);
        err = FO_ERR_RANGE;
    }
    if (err)
        fo__client_set_error(c, why);
    return err;
}

fo_err_t fo__pubmsg_init(fo__pubmsg_t *m, fo_client_t *c, const char *topic,
                         const void *payload, size_t len, const char *reply,
                         const fo_pub_opts_t *o)
{
    fo_err_t err = check_extras(c, reply, o);
    if (err)
        return err;
    fanout__frame__init(&m->f);
    fanout__publish__init(&m->p);
    m->p.topic = (char *)topic;
    m->p.has_payload = 1;
    m->p.payload.data = (uint8_t *)payload;
    m->p.payload.len = len;
    m->p.reply = (char *)reply;
    m->p.n_headers = o ? o->nheaders : 0;
    m->p.headers = m->p.n_headers ? m->hp : NULL;
    for (size_t i = 0; i < m->p.n_headers; i++) {
        fanout__header__init(&m->h[i]);
        m->h[i].key = (char *)o->headers[i].key;
        m->h[i].has_value = 1;
        m->h[i].value.data = (uint8_t *)o->headers[i].value;
        m->h[i].value.len = o->headers[i].value_len;
        m->hp[i] = &m->h[i];
    }
    m->f.body_case = FANOUT__FRAME__BODY_PUBLISH;
    m->f.publish = &m->p;
    return FO_OK;
}

fo_err_t fo__client_publish_pb(fo_client_t *c, const Fanout__Frame *f, unsigned flags)
{
    size_t n = fo_frame_size(f);
    if (n - FO_FRAME_HDR > atomic_load_explicit(&c->max_frame_out, memory_order_relaxed))
        return FO_ERR_RANGE;   /* the broker would close us for it */
    int reader = (flags & FO__PUB_NOW) && fo__client_on_reader(c);
    pthread_mutex_lock(&c->wmu);
    fo_err_t err = FO_OK;
    if (c->wfd < 0) {
        if (atomic_load(&c->dead))
            err = FO_ERR_CLOSED;
        else if (flags & FO__PUB_CONNECTED)
            err = FO_ERR_NOT_CONNECTED;
        else if (fo_buf_len(&c->out) + n > c->max_pending)
            err = FO_ERR_BUSY;
        if (err)
            goto out;
    }
    if ((err = fo_frame_append(&c->out, f)))
        goto out;
    FO__COUNT_ADD(c->st_published, 1);
    /* As in fo_publish, a failed write keeps the frames and the reader
     * notices the broken socket (a request then fails as the connection
     * is lost). */
    if (c->wfd < 0)
        goto out;
    if (reader)           /* the reader writes it when its batch is done */
        atomic_store_explicit(&c->flush_at_us, 1, memory_order_relaxed);
    else if ((flags & FO__PUB_NOW) || fo_buf_len(&c->out) >= c->write_buffer)
        (void)!fo__client_write_locked(c);
    else
        arm_linger(c);
out:
    pthread_mutex_unlock(&c->wmu);
    return err;
}

fo_err_t fo_publish_ex(fo_client_t *c, const char *topic, const void *payload,
                       size_t len, const fo_pub_opts_t *opts)
{
    if (!opts || (!opts->reply && !opts->nheaders))
        return fo_publish(c, topic, payload, len);
    if (!c || !topic || (!payload && len))
        return FO_ERR_INVAL;
    fo__pubmsg_t m;
    fo_err_t err = fo__pubmsg_init(&m, c, topic, payload, len, opts->reply, opts);
    return err ? err : fo__client_publish_pb(c, &m.f, 0);
}

fo_err_t fo__client_send_frame(fo_client_t *c, const Fanout__Frame *f)
{
    pthread_mutex_lock(&c->wmu);
    fo_err_t err = c->wfd < 0 ? FO_ERR_NOT_CONNECTED : fo_frame_append(&c->out, f);
    if (!err)
        err = fo__client_write_locked(c);
    pthread_mutex_unlock(&c->wmu);
    return err;
}

fo_err_t fo__client_ping(fo_client_t *c, uint64_t *nonce)
{
    pthread_mutex_lock(&c->wmu);
    fo_err_t err = FO_ERR_NOT_CONNECTED;
    if (c->wfd >= 0) {
        *nonce = ++c->ping_nonce;
        err = append_ctl(c, 1, *nonce);
        if (!err)
            err = fo__client_write_locked(c);
    }
    pthread_mutex_unlock(&c->wmu);
    return err;
}

/* Reader thread: PONG now if the lock is free, else leave pong_due for
 * the holder (and retry on the next reader tick). */
void fo__client_send_pong(fo_client_t *c)
{
    if (pthread_mutex_trylock(&c->wmu))
        return;
    /* A failed write shut the socket down: the reader notices. */
    if (c->wfd >= 0)
        (void)!fo__client_write_locked(c);
    pthread_mutex_unlock(&c->wmu);
}

fo_err_t fo_client_flush(fo_client_t *c, int timeout_ms)
{
    if (!c || (timeout_ms > 0 && fo__client_on_reader(c)))
        return FO_ERR_INVAL;   /* a callback cannot wait for its own reader */
    pthread_mutex_lock(&c->wmu);
    fo_err_t err = fo__client_write_locked(c);
    pthread_mutex_unlock(&c->wmu);
    if (err == FO_ERR_NOT_CONNECTED && atomic_load(&c->dead))
        err = FO_ERR_CLOSED;
    if (err || timeout_ms <= 0)
        return err;
    /* Round trip: the broker answers PINGs in order, so its PONG means it
     * has read everything we sent before. */
    pthread_mutex_lock(&c->mu);
    uint64_t gen = c->conn_gen;
    pthread_mutex_unlock(&c->mu);
    uint64_t nonce;
    if ((err = fo__client_ping(c, &nonce)))
        return err;
    struct timespec dl = fo_deadline_ts(timeout_ms);
    pthread_mutex_lock(&c->mu);
    while (c->pong_nonce < nonce && c->conn_gen == gen && !err)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT)
            err = FO_ERR_TIMEOUT;
    if (c->pong_nonce >= nonce)
        err = FO_OK;
    else if (c->conn_gen != gen)
        err = FO_ERR_NOT_CONNECTED;
    pthread_mutex_unlock(&c->mu);
    return err;
}
