/* test_client_peer.h -- a scripted broker for the libfanout unit tests.
 *
 * One thread accepts connections on 127.0.0.1:0 (one at a time), records
 * every frame the client sends, and answers the way a broker does: HELLO
 * with WELCOME, requests with ACK (or ERROR for the topic/filter "bad";
 * ERROR without ref for the topic "fatal"),
 * PING with PONG. The test thread injects frames (whole, or one byte per
 * write), drops the connection, or turns the auto-answers off.
 */
#ifndef TEST_CLIENT_PEER_H
#define TEST_CLIENT_PEER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "frame.h"

#define PEER_FN static __attribute__((unused))

typedef struct peer_rec {
    uint8_t *body;       /* owned copy of the frame body */
    size_t len;
    int body_case;
} peer_rec_t;

typedef struct peer {
    int lfd, port, fd;
    pthread_t th;
    pthread_mutex_t mu;          /* recs, fd, knobs */
    pthread_mutex_t wmu;         /* writes to fd    */
    pthread_cond_t cv;
    peer_rec_t *recs;
    size_t nrecs, cap;
    int conns;                   /* connections accepted so far */
    int stop;
    /* knobs, set before the client acts */
    uint32_t ping_ms, idle_ms;   /* sent in WELCOME */
    uint64_t epoch;
    int no_pong, hello_error, slow_reader, no_unsub_ack;
    int stall;                   /* stop reading (a hung broker) */
    uint32_t max_frame;          /* in WELCOME when non-zero */
    uint64_t seq;                /* last sequence given to a PUBLISH */
} peer_t;

PEER_FN int peer_start(peer_t *p);           /* 0 ok */
PEER_FN void peer_stop(peer_t *p);
PEER_FN void peer_addr(const peer_t *p, char *buf, size_t len);
PEER_FN int peer_send(peer_t *p, const Fanout__Frame *f);            /* 0 ok */
PEER_FN int peer_send_bytewise(peer_t *p, const Fanout__Frame *f);   /* 0 ok */
PEER_FN void peer_drop(peer_t *p);           /* close the current connection */
/* Wait until n frames of body_case were recorded (any connection);
 * returns the count reached. */
PEER_FN size_t peer_wait(peer_t *p, int body_case, size_t n, int timeout_ms);
/* The idx-th recorded frame of body_case, unpacked into arena; NULL if
 * none. */
PEER_FN Fanout__Frame *peer_get(peer_t *p, int body_case, size_t idx, fo_arena_t *a);
PEER_FN int peer_wait_conns(peer_t *p, int n, int timeout_ms);
/* Build a DELIVER frame. */
PEER_FN void peer_deliver(Fanout__Frame *f, Fanout__Deliver *d, uint32_t sid,
                  const char *topic, uint64_t seq, const char *payload);

/* ------------------------------------------------------------ impl */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long peer_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int peer_write_all(int fd, const uint8_t *b, size_t n)
{
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int peer_send_fd(peer_t *p, int fd, const Fanout__Frame *f)
{
    fo_buf_t b = FO_BUF_INIT;
    assert_int_equal(fo_frame_append(&b, f), FO_OK);
    pthread_mutex_lock(&p->wmu);
    int r = fd >= 0 ? peer_write_all(fd, fo_buf_head(&b), fo_buf_len(&b)) : -1;
    pthread_mutex_unlock(&p->wmu);
    fo_buf_free(&b);
    return r;
}

PEER_FN int peer_send(peer_t *p, const Fanout__Frame *f)
{
    pthread_mutex_lock(&p->mu);
    int fd = p->fd;
    pthread_mutex_unlock(&p->mu);
    return peer_send_fd(p, fd, f);
}

PEER_FN int peer_send_bytewise(peer_t *p, const Fanout__Frame *f)
{
    pthread_mutex_lock(&p->mu);
    int fd = p->fd;
    pthread_mutex_unlock(&p->mu);
    fo_buf_t b = FO_BUF_INIT;
    assert_int_equal(fo_frame_append(&b, f), FO_OK);
    int r = 0;
    pthread_mutex_lock(&p->wmu);
    for (size_t i = 0; i < fo_buf_len(&b) && !r; i++)
        r = peer_write_all(fd, fo_buf_head(&b) + i, 1);
    pthread_mutex_unlock(&p->wmu);
    fo_buf_free(&b);
    return r;
}

static void peer_ack(peer_t *p, int fd, uint64_t ref, uint64_t seq)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Ack a = FANOUT__ACK__INIT;
    a.has_ref = 1;
    a.ref = ref;
    if (seq) {
        a.has_seq = 1;
        a.seq = seq;
    }
    f.body_case = FANOUT__FRAME__BODY_ACK;
    f.ack = &a;
    peer_send_fd(p, fd, &f);
}

static void peer_error(peer_t *p, int fd, uint64_t ref, int code, const char *t)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Error e = FANOUT__ERROR__INIT;
    e.has_code = 1;
    e.code = (Fanout__ErrorCode)code;
    e.text = (char *)t;
    if (ref) {
        e.has_ref = 1;
        e.ref = ref;
    }
    f.body_case = FANOUT__FRAME__BODY_ERROR;
    f.error = &e;
    peer_send_fd(p, fd, &f);
}

/* Answer one frame like a broker would. */
static void peer_answer(peer_t *p, int fd, const Fanout__Frame *f)
{
    uint64_t req = f->has_req ? f->req : 0;
    switch (f->body_case) {
    case FANOUT__FRAME__BODY_HELLO: {
        if (p->hello_error) {
            peer_error(p, fd, 0, FANOUT__ERROR_CODE__ERR_AUTH, "bad credentials");
            return;
        }
        Fanout__Frame o = FANOUT__FRAME__INIT;
        Fanout__Welcome w = FANOUT__WELCOME__INIT;
        w.has_version = 1; w.version = 1;
        w.server_version = "peer";
        w.has_ping_interval_ms = 1; w.ping_interval_ms = p->ping_ms;
        w.has_idle_timeout_ms = 1; w.idle_timeout_ms = p->idle_ms;
        w.has_epoch = 1; w.epoch = p->epoch;
        if (p->max_frame) {
            w.has_max_frame = 1;
            w.max_frame = p->max_frame;
        }
        o.body_case = FANOUT__FRAME__BODY_WELCOME;
        o.welcome = &w;
        peer_send_fd(p, fd, &o);
        return;
    }
    case FANOUT__FRAME__BODY_PUBLISH:
        pthread_mutex_lock(&p->mu);
        uint64_t seq = ++p->seq;
        pthread_mutex_unlock(&p->mu);
        if (req && !strcmp(f->publish->topic, "fatal"))   /* no ref, as a closing error may come */
            peer_error(p, fd, 0, FANOUT__ERROR_CODE__ERR_INVALID_TOPIC, "fatal topic");
        else if (req && !strcmp(f->publish->topic, "bad"))
            peer_error(p, fd, req, FANOUT__ERROR_CODE__ERR_INVALID_TOPIC, "bad topic");
        else if (req)
            peer_ack(p, fd, req, seq);
        return;
    case FANOUT__FRAME__BODY_SUBSCRIBE:
        if (req && !strcmp(f->subscribe->filter, "bad"))
            peer_error(p, fd, req, FANOUT__ERROR_CODE__ERR_INVALID_TOPIC, "bad filter");
        else if (req)
            peer_ack(p, fd, req, 0);
        return;
    case FANOUT__FRAME__BODY_UNSUBSCRIBE:
        if (req && !p->no_unsub_ack)
            peer_ack(p, fd, req, 0);
        return;
    case FANOUT__FRAME__BODY_PING:
        if (!p->no_pong) {
            Fanout__Frame o = FANOUT__FRAME__INIT;
            Fanout__Pong po = FANOUT__PONG__INIT;
            po.has_nonce = f->ping->has_nonce;
            po.nonce = f->ping->nonce;
            o.body_case = FANOUT__FRAME__BODY_PONG;
            o.pong = &po;
            peer_send_fd(p, fd, &o);
        }
        return;
    default:
        return;
    }
}

static void peer_record(peer_t *p, const uint8_t *body, size_t len, int bc)
{
    pthread_mutex_lock(&p->mu);
    if (p->nrecs == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->recs = realloc(p->recs, p->cap * sizeof *p->recs);
    }
    peer_rec_t *r = &p->recs[p->nrecs++];
    r->body = malloc(len);
    memcpy(r->body, body, len);
    r->len = len;
    r->body_case = bc;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void peer_serve(peer_t *p, int fd)
{
    fo_decoder_t dec;
    fo_arena_t a;
    fo_decoder_init(&dec, 0);
    assert_int_equal(fo_arena_init(&a, 4096, 0), FO_OK);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int stop = p->stop, cur = p->fd, slow = p->slow_reader, stall = p->stall;
        pthread_mutex_unlock(&p->mu);
        if (stop || cur != fd)
            break;
        if (stall) {
            usleep(5000);
            continue;
        }
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        if (poll(&pf, 1, 20) <= 0)
            continue;
        size_t chunk = slow ? 997 : 65536;
        if (fo_buf_reserve(&dec.buf, chunk))
            break;                     /* the peer thread: no cmocka asserts here */
        ssize_t n = recv(fd, fo_buf_tail(&dec.buf), chunk, 0);
        if (n <= 0)
            break;
        fo_buf_commit(&dec.buf, (size_t)n);
        const uint8_t *body;
        size_t len;
        while (fo_decoder_next(&dec, &body, &len) == FO_OK) {
            Fanout__Frame *f;
            if (fo_frame_unpack(body, len, &a, &f))
                continue;
            peer_record(p, body, len, f->body_case);
            peer_answer(p, fd, f);
        }
        fo_arena_reset(&a);
    }
    fo_decoder_destroy(&dec);
    fo_arena_destroy(&a);
    pthread_mutex_lock(&p->mu);
    if (p->fd == fd)
        p->fd = -1;
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_lock(&p->wmu);
    close(fd);
    pthread_mutex_unlock(&p->wmu);
}

static void *peer_main(void *arg)
{
    peer_t *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        struct pollfd pf = { .fd = p->lfd, .events = POLLIN };
        if (poll(&pf, 1, 20) <= 0)
            continue;
        int fd = accept(p->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        if (p->slow_reader) {
            int small = 16384;
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        }
        pthread_mutex_lock(&p->mu);
        p->fd = fd;
        p->conns++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        peer_serve(p, fd);
    }
    return NULL;
}

PEER_FN int peer_start(peer_t *p)
{
    memset(p, 0, sizeof *p);
    p->fd = -1;
    p->ping_ms = 10000;
    p->idle_ms = 30000;
    p->epoch = 42;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->wmu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(p->lfd, (struct sockaddr *)&sa, sizeof sa) || listen(p->lfd, 8) ||
        getsockname(p->lfd, (struct sockaddr *)&sa, &sl))
        return -1;
    p->port = ntohs(sa.sin_port);
    return pthread_create(&p->th, NULL, peer_main, p) ? -1 : 0;
}

PEER_FN void peer_stop(peer_t *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    close(p->lfd);
    for (size_t i = 0; i < p->nrecs; i++)
        free(p->recs[i].body);
    free(p->recs);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->wmu);
    pthread_cond_destroy(&p->cv);
}

PEER_FN void peer_addr(const peer_t *p, char *buf, size_t len)
{
    snprintf(buf, len, "127.0.0.1:%d", p->port);
}

PEER_FN void peer_drop(peer_t *p)
{
    pthread_mutex_lock(&p->mu);
    int fd = p->fd;
    p->fd = -1;   /* peer_serve sees the change, closes and returns */
    pthread_mutex_unlock(&p->mu);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

static size_t peer_count_locked(peer_t *p, int bc)
{
    size_t n = 0;
    for (size_t i = 0; i < p->nrecs; i++)
        n += p->recs[i].body_case == bc;
    return n;
}

PEER_FN size_t peer_wait(peer_t *p, int body_case, size_t n, int timeout_ms)
{
    long long end = peer_now_ms() + timeout_ms;
    pthread_mutex_lock(&p->mu);
    size_t got;
    while ((got = peer_count_locked(p, body_case)) < n && peer_now_ms() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5000000;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
    return got;
}

PEER_FN int peer_wait_conns(peer_t *p, int n, int timeout_ms)
{
    long long end = peer_now_ms() + timeout_ms;
    pthread_mutex_lock(&p->mu);
    while (p->conns < n && peer_now_ms() < end) {
        pthread_mutex_unlock(&p->mu);
        usleep(2000);
        pthread_mutex_lock(&p->mu);
    }
    int c = p->conns;
    pthread_mutex_unlock(&p->mu);
    return c;
}

PEER_FN Fanout__Frame *peer_get(peer_t *p, int body_case, size_t idx, fo_arena_t *a)
{
    Fanout__Frame *f = NULL;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->nrecs; i++)
        if (p->recs[i].body_case == body_case && idx-- == 0) {
            if (fo_frame_unpack(p->recs[i].body, p->recs[i].len, a, &f))
                f = NULL;              /* the caller's assert sees NULL */
            break;
        }
    pthread_mutex_unlock(&p->mu);
    return f;
}

PEER_FN void peer_deliver(Fanout__Frame *f, Fanout__Deliver *d, uint32_t sid,
                          const char *topic, uint64_t seq, const char *payload)
{
    fanout__frame__init(f);
    fanout__deliver__init(d);
    d->topic = (char *)topic;
    d->has_seq = 1;
    d->seq = seq;
    d->has_payload = 1;
    d->payload.data = (uint8_t *)payload;
    d->payload.len = strlen(payload);
    f->body_case = FANOUT__FRAME__BODY_DELIVER;
    f->deliver = d;
    f->has_sid = 1;
    f->sid = sid;
}

#endif
