/* test_robust.c -- fanoutd under bad input and pressure: every kind of bad
 * frame, slow consumers under both policies, the memory cap, timeouts, the
 * connection limit, and SIGTERM draining. In every case a healthy client
 * alongside must see nothing wrong. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include "harness.h"

#define ERRC(x) FANOUT__ERROR_CODE__ERR_##x

/* A healthy pub/sub pair on topic `t` still works. */
static void assert_healthy(fo_tb_t *b, const char *t)
{
    fo_tc_t sub, pub;
    assert_int_equal(fo_tc_open(&sub, b->port, "healthy"), 0);
    assert_int_equal(fo_tc_open(&pub, b->port, "healthy"), 0);
    assert_int_equal(fo_tc_subscribe(&sub, 1, t, NULL), 0);
    fo_tc_publish(&pub, t, "ok", 2, 0);
    Fanout__Frame *f;
    assert_int_equal(fo_tc_recv(&sub, 5000, &f), 1);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
    fo_tc_close(&sub);
    fo_tc_close(&pub);
}

/* A closing ERROR answers the request that caused it (Error.ref). */
static void test_closing_error_has_ref(void **state)
{
    (void)state;
    fo_tb_t b;
    assert_int_equal(fo_tb_start(&b, NULL), 0);
    for (int k = 0; k < 2; k++) {
        fo_tc_t c;
        assert_int_equal(fo_tc_open(&c, b.port, "ref"), 0);
        if (k == 0) {
            fo_tc_publish(&c, "a..b", "x", 1, 77);           /* fast path */
        } else {
            Fanout__Frame f = FANOUT__FRAME__INIT;
            Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
            s.has_sid = 1; s.sid = 1; s.filter = "a..b";
            f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE; f.subscribe = &s;
            f.has_req = 1; f.req = 77;
            fo_tc_send(&c, &f);
        }
        Fanout__Frame *r;
        assert_int_equal(fo_tc_recv(&c, 5000, &r), 1);
        assert_int_equal(r->body_case, FANOUT__FRAME__BODY_ERROR);
        assert_int_equal(r->error->code, FANOUT__ERROR_CODE__ERR_INVALID_TOPIC);
        assert_true(r->error->has_ref);
        assert_int_equal(r->error->ref, 77);
        fo_tc_close(&c);
    }
    assert_int_equal(fo_tb_stop(&b), 0);
}

static void expect_error_close(fo_tc_t *c, int code)
{
    int got;
    assert_int_equal(fo_tc_wait_closed(c, 5000, &got), 0);
    if (got != code)
        fail_msg("expected ERROR code %d, got %d", code, got);
    fo_tc_close(c);
}

static void send_frame(fo_tc_t *c, const Fanout__Frame *f) { assert_int_equal(fo_tc_send(c, f), 0); }

static void test_bad_frames(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--max-frame", "4KiB", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t c;
    int cases = 0;

    /* length 0 */
    assert_int_equal(fo_tc_open(&c, b.port, "bad"), 0);
    fo_tc_send_raw(&c, "\0\0\0\0", 4);
    expect_error_close(&c, ERRC(FRAME_SIZE)); cases++;
    /* length over the limit: rejected from the header alone */
    assert_int_equal(fo_tc_open(&c, b.port, "bad"), 0);
    fo_tc_send_raw(&c, "\x7f\xff\xff\xff", 4);
    expect_error_close(&c, ERRC(FRAME_SIZE)); cases++;
    /* bytes that do not unpack */
    assert_int_equal(fo_tc_open(&c, b.port, "bad"), 0);
    fo_tc_send_raw(&c, "\0\0\0\3\xff\xff\xff", 7);
    expect_error_close(&c, ERRC(BAD_FRAME)); cases++;
    /* an unknown frame (field 13) / an empty frame */
    assert_int_equal(fo_tc_open(&c, b.port, "bad"), 0);
    fo_tc_send_raw(&c, "\0\0\0\2\x68\x01", 6);
    expect_error_close(&c, ERRC(UNKNOWN_FRAME)); cases++;
    /* frame before HELLO */
    assert_int_equal(fo_tc_connect(&c, b.port), 0);
    {
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Ping p = FANOUT__PING__INIT;
        f.body_case = FANOUT__FRAME__BODY_PING; f.ping = &p;
        send_frame(&c, &f);
    }
    expect_error_close(&c, ERRC(NOT_HELLO)); cases++;
    /* HELLO without version; HELLO version 0; HELLO twice */
    for (int k = 0; k < 3; k++) {
        assert_int_equal(k == 2 ? fo_tc_open(&c, b.port, "x") : fo_tc_connect(&c, b.port), 0);
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Hello h = FANOUT__HELLO__INIT;
        if (k >= 1) { h.has_version = 1; h.version = k == 1 ? 0 : 1; }
        f.body_case = FANOUT__FRAME__BODY_HELLO; f.hello = &h;
        send_frame(&c, &f);
        expect_error_close(&c, k == 0 ? ERRC(MISSING_FIELD) : k == 1 ? ERRC(VERSION) : ERRC(NOT_HELLO));
        cases++;
    }
    /* PUBLISH without topic; with an invalid topic (fast path and slow) */
    const char *topics[] = { NULL, "a..b", "a.*", "bad topic" };
    for (int k = 0; k < 4; k++) {
        assert_int_equal(fo_tc_open(&c, b.port, "bad"), 0);
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Publish p = FANOUT__PUBLISH__INIT;
        p.topic = (char *)topics[k];
        f.body_case = FANOUT__FRAME__BODY_PUBLISH; f.publish = &p;
        send_frame(&c, &f);
        expect_error_close(&c, k == 0 ? ERRC(MISSING_FIELD) : ERRC(INVALID_TOPIC));
        cases++;
    }
    /* SUBSCRIBE with a bad filter */
    assert_int_equal(fo_tc_open(&c, b.port, "bad"), 0);
    {
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
        s.has_sid = 1; s.sid = 1; s.filter = "a.>.b";
        f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE; f.subscribe = &s;
        send_frame(&c, &f);
    }
    expect_error_close(&c, ERRC(INVALID_TOPIC)); cases++;
    /* a frame only the broker may send */
    assert_int_equal(fo_tc_open(&c, b.port, "bad"), 0);
    {
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Deliver d = FANOUT__DELIVER__INIT;
        d.topic = "x";
        f.body_case = FANOUT__FRAME__BODY_DELIVER; f.deliver = &d;
        send_frame(&c, &f);
    }
    expect_error_close(&c, ERRC(UNEXPECTED)); cases++;
    /* a stream that ends inside a frame */
    assert_int_equal(fo_tc_open(&c, b.port, "bad"), 0);
    fo_tc_send_raw(&c, "\0\0\0\x20\x1a\x02", 6);
    fo_tc_close(&c);

    assert_int_equal(fo_tb_wait_metric(&b, "fanout_protocol_errors_total", cases + 1, 5000), 0);
    assert_true(fo_tb_metric(&b, "fanout_errors_sent_total{code=\"frame_size\"}") >= 2);
    assert_healthy(&b, "still.fine");
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_connections", 0, 1000), 0);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* Values protobuf-c accepts but the broker must refuse; connection stays. */
static void test_bad_requests_keep_connection(void **state)
{
    (void)state;
    fo_tb_t b;
    assert_int_equal(fo_tb_start(&b, NULL), 0);
    fo_tc_t c;
    assert_int_equal(fo_tc_open(&c, b.port, "req"), 0);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1; s.sid = 1; s.filter = "q.x";
    s.has_delivery = 1; s.delivery = 7;           /* unknown enum value */
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE; f.subscribe = &s;
    f.has_req = 1; f.req = 1;
    send_frame(&c, &f);
    assert_int_not_equal(fo_tc_wait_ack(&c, 1, 5000), 0);
    s.has_delivery = 0;
    s.queue = "g"; s.has_start = 1; s.start = FANOUT__START__START_EARLIEST;  /* queue + replay */
    f.req = 2;
    send_frame(&c, &f);
    assert_int_not_equal(fo_tc_wait_ack(&c, 2, 5000), 0);
    s.queue = NULL; s.has_start = 0;
    f.req = 3;
    send_frame(&c, &f);
    assert_int_equal(fo_tc_wait_ack(&c, 3, 5000), 0);     /* still open, works */
    fo_tc_close(&c);
    assert_int_equal(fo_tb_stop(&b), 0);
}

static int open_slow(fo_tc_t *c, int port, uint32_t sid, const char *t, int policy)
{
    /* a tiny receive buffer so the broker's queue fills quickly */
    if (fo_tc_open_rcvbuf(c, port, "slow", 4096))
        return -1;
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1; s.sid = sid; s.filter = (char *)t;
    s.has_slow = 1; s.slow = policy;
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE; f.subscribe = &s;
    f.has_req = 1; f.req = 42;
    if (fo_tc_send(c, &f))
        return -1;
    return fo_tc_wait_ack(c, 42, 5000);
}

/* A healthy subscriber read by its own thread while the test publishes:
 * it must get every sequence 1..n in order and never a GAP. */
typedef struct {
    fo_tc_t c;
    uint64_t n, next;
    int gaps;
    pthread_t th;
} healthy_t;

static void *healthy_main(void *arg)
{
    healthy_t *h = arg;
    h->next = 1;
    while (h->next <= h->n) {
        Fanout__Frame *f;
        if (fo_tc_recv(&h->c, 20000, &f) != 1)
            break;
        if (f->body_case == FANOUT__FRAME__BODY_GAP)
            h->gaps++;
        if (f->body_case != FANOUT__FRAME__BODY_DELIVER)
            continue;
        if (f->deliver->seq != h->next)
            break;
        h->next++;
    }
    return NULL;
}

static void healthy_start(healthy_t *h, int port, const char *t, uint64_t n)
{
    memset(h, 0, sizeof *h);
    h->n = n;
    assert_int_equal(fo_tc_open(&h->c, port, "healthy"), 0);
    /* policy block: a reader thread that falls behind a 20 MB flood for a
     * moment pauses the publisher instead of losing messages, so what is
     * checked is only the slow subscriber's policy */
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1; s.sid = 1; s.filter = (char *)t;
    s.has_slow = 1; s.slow = FANOUT__SLOW_POLICY__SLOW_BLOCK;
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE; f.subscribe = &s;
    f.has_req = 1; f.req = 41;
    assert_int_equal(fo_tc_send(&h->c, &f), 0);
    assert_int_equal(fo_tc_wait_ack(&h->c, 41, 5000), 0);
    assert_int_equal(pthread_create(&h->th, NULL, healthy_main, h), 0);
}

static void healthy_check(healthy_t *h)
{
    pthread_join(h->th, NULL);
    assert_int_equal(h->gaps, 0);
    assert_int_equal(h->next, h->n + 1);     /* all of them, in order */
    fo_tc_close(&h->c);
}

static void publish_n(fo_tc_t *pub, const char *t, int n, size_t size)
{
    static char payload[65536];
    for (int i = 1; i <= n; i++)
        assert_int_equal(fo_tc_publish(pub, t, payload, size, i == n ? 9 : 0), 0);
    assert_int_equal(fo_tc_wait_ack(pub, 9, 20000), 0);
}

/* Policy drop: the slow subscriber gets every sequence exactly once, as a
 * DELIVER or inside a GAP; the healthy one gets everything. */
static void test_slow_consumer_drop(void **state)
{
    (void)state;
    enum { N = 20000, SZ = 1024 };
    fo_tb_t b;
    const char *args[] = { "--max-output", "2MiB", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t slow, pub;
    static healthy_t h;   /* static: its thread may outlive a failed test */
    assert_int_equal(open_slow(&slow, b.port, 3, "sc.t", FANOUT__SLOW_POLICY__SLOW_DROP), 0);
    healthy_start(&h, b.port, "sc.t", N);
    assert_int_equal(fo_tc_open(&pub, b.port, "pub"), 0);
    publish_n(&pub, "sc.t", N, SZ);
    healthy_check(&h);
    /* now the slow one reads everything it has */
    static uint8_t seen[N + 1];
    uint64_t delivered = 0, gapped = 0, last = 0;
    while (delivered + gapped < N) {
        Fanout__Frame *f;
        assert_int_equal(fo_tc_recv(&slow, 10000, &f), 1);
        if (f->body_case == FANOUT__FRAME__BODY_DELIVER) {
            uint64_t s = f->deliver->seq;
            assert_true(s > last);
            assert_int_equal(seen[s], 0);
            seen[s] = 1; last = s; delivered++;
        } else if (f->body_case == FANOUT__FRAME__BODY_GAP) {
            assert_int_equal(f->sid, 3);
            assert_int_equal(f->gap->reason, FANOUT__GAP_REASON__GAP_SLOW_CONSUMER);
            assert_true(f->gap->first > last);
            for (uint64_t s = f->gap->first; s <= f->gap->last; s++) {
                assert_int_equal(seen[s], 0);
                seen[s] = 1;
            }
            last = f->gap->last;
            gapped += f->gap->last - f->gap->first + 1;
        }
    }
    assert_true(gapped > 0);
    assert_int_equal(delivered + gapped, N);
    assert_true(fo_tb_metric(&b, "fanout_drops_slow_consumer_total") >= (double)gapped);
    fo_tc_close(&slow);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* Policy disconnect: ERROR slow_consumer, closed; the healthy one is fine. */
static void test_slow_consumer_disconnect(void **state)
{
    (void)state;
    enum { N = 20000, SZ = 1024 };
    fo_tb_t b;
    const char *args[] = { "--max-output", "2MiB", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t slow, pub;
    static healthy_t h;   /* static: its thread may outlive a failed test */
    assert_int_equal(open_slow(&slow, b.port, 3, "sd.t", FANOUT__SLOW_POLICY__SLOW_DISCONNECT), 0);
    healthy_start(&h, b.port, "sd.t", N);
    assert_int_equal(fo_tc_open(&pub, b.port, "pub"), 0);
    publish_n(&pub, "sd.t", N, SZ);
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_slow_consumer_disconnects_total", 1, 5000), 0);
    expect_error_close(&slow, ERRC(SLOW_CONSUMER));
    healthy_check(&h);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* Policy block: nothing is lost; the publisher is paused while the
 * subscriber's queue is full and resumes when it drains. */
typedef struct { fo_tc_t c; int n; int ok; } pubber_t;
static void *pub_main(void *arg)
{
    pubber_t *p = arg;
    static char payload[1024];
    for (int i = 1; i <= p->n; i++)
        if (fo_tc_publish(&p->c, "bk.t", payload, sizeof payload, i == p->n ? 5 : 0))
            return NULL;
    p->ok = fo_tc_wait_ack(&p->c, 5, 30000) == 0;
    return NULL;
}

static void test_slow_consumer_block(void **state)
{
    (void)state;
    enum { N = 20000 };
    fo_tb_t b;
    const char *args[] = { "--max-output", "256KiB", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t slow;
    assert_int_equal(open_slow(&slow, b.port, 3, "bk.t", FANOUT__SLOW_POLICY__SLOW_BLOCK), 0);
    static pubber_t p;
    p.n = N;
    p.ok = 0;
    assert_int_equal(fo_tc_open(&p.c, b.port, "pub"), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pub_main, &p), 0);
    /* the subscriber reads nothing until the broker has paused the publisher */
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_publishers_paused_total", 1, 10000), 0);
    assert_true(fo_tb_metric(&b, "fanout_congestions_total") >= 1);
    for (uint64_t s = 1; s <= N; s++) {
        Fanout__Frame *f;
        do
            assert_int_equal(fo_tc_recv(&slow, 10000, &f), 1);
        while (f->body_case != FANOUT__FRAME__BODY_DELIVER &&
               f->body_case != FANOUT__FRAME__BODY_GAP);
        assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);   /* no GAP */
        assert_int_equal(f->deliver->seq, s);
    }
    pthread_join(th, NULL);
    assert_true(p.ok);
    assert_int_equal(fo_tb_metric(&b, "fanout_drops_slow_consumer_total"), 0);
    fo_tc_close(&slow);
    fo_tc_close(&p.c);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* A replay that overflows a block-policy subscriber is decided with the
 * registry and topic locks held: congestion must not take a lock there
 * (it used to: a self-deadlock). The replay arrives whole. */
static void test_block_replay(void **state)
{
    (void)state;
    enum { N = 200 };
    fo_tb_t b;
    const char *args[] = { "--max-output", "4KiB", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t pub, sub;
    assert_int_equal(fo_tc_open(&pub, b.port, "pub"), 0);
    static char payload[1024];
    for (int i = 1; i <= N; i++)
        fo_tc_publish(&pub, "br.t", payload, sizeof payload, i == N ? 1 : 0);
    assert_int_equal(fo_tc_wait_ack(&pub, 1, 5000), 0);
    assert_int_equal(fo_tc_open(&sub, b.port, "sub"), 0);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1; s.sid = 1; s.filter = "br.>";
    s.has_start = 1; s.start = FANOUT__START__START_EARLIEST;
    s.has_slow = 1; s.slow = FANOUT__SLOW_POLICY__SLOW_BLOCK;
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE; f.subscribe = &s;
    f.has_req = 1; f.req = 2;
    assert_int_equal(fo_tc_send(&sub, &f), 0);
    assert_int_equal(fo_tc_wait_ack(&sub, 2, 5000), 0);
    for (uint64_t seq = 1; seq <= N; seq++) {
        Fanout__Frame *r;
        assert_int_equal(fo_tc_recv(&sub, 5000, &r), 1);
        assert_int_equal(r->body_case, FANOUT__FRAME__BODY_DELIVER);
        assert_int_equal(r->deliver->seq, seq);
    }
    /* the publisher is not paused forever once the replay drained */
    fo_tc_publish(&pub, "br.t", "x", 1, 3);
    assert_int_equal(fo_tc_wait_ack(&pub, 3, 5000), 0);
    Fanout__Frame *r;
    assert_int_equal(fo_tc_recv(&sub, 5000, &r), 1);
    assert_int_equal(r->deliver->seq, N + 1);
    fo_tc_close(&sub);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* The memory cap refuses publishes with ERROR; the connection stays. */
static void test_memory_cap(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--max-memory", "1MiB", "--retention-msgs", "100000",
                           "--retention-bytes", "64MiB", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t pub;
    assert_int_equal(fo_tc_open(&pub, b.port, "pub"), 0);
    static char payload[4096];
    int refused = 0;
    for (int i = 1; i <= 400 && !refused; i++) {
        fo_tc_publish(&pub, "mem.t", payload, sizeof payload, (uint64_t)i);
        if (fo_tc_wait_ack(&pub, (uint64_t)i, 5000))
            refused = i;
    }
    assert_true(refused > 100);    /* ~1 MiB went in first */
    assert_true(fo_tb_metric(&b, "fanout_publish_refused_memory_total") >= 1);
    assert_true(fo_tb_metric(&b, "fanout_memory_bytes") <= 1024 * 1024);
    /* still open and answering */
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Ping p = FANOUT__PING__INIT;
    f.body_case = FANOUT__FRAME__BODY_PING; f.ping = &p;
    send_frame(&pub, &f);
    Fanout__Frame *r;
    int pong = 0;
    while (fo_tc_recv(&pub, 2000, &r) == 1)
        if (r->body_case == FANOUT__FRAME__BODY_PONG) { pong = 1; break; }
    assert_true(pong);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* Large frames in flight count against the memory cap too: peers that
 * each half-send a big frame cannot make the broker allocate without
 * bound. The one that would go over gets ERROR memory_limit; the others
 * and a healthy client carry on. */
static void test_memory_cap_input(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--max-memory", "2MiB", "--max-frame", "4MiB", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    enum { N = 4, BODY = 900 * 1024 };
    static fo_tc_t c[N];
    static uint8_t part[BODY / 4 * 3];   /* input is charged as it arrives */
    for (int i = 0; i < N; i++) {
        assert_int_equal(fo_tc_open(&c[i], b.port, "big"), 0);
        uint8_t hdr[4];
        fo_be32_put(hdr, BODY);
        fo_tc_send_raw(&c[i], hdr, 4);
        fo_tc_send_raw(&c[i], part, sizeof part);        /* most of it */
    }
    /* 4 x 900 KiB do not fit in 2 MiB: at least one is refused */
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_errors_sent_total{code=\"memory_limit\"}",
                                       1, 10000), 0);
    int refused = 0;
    for (int i = 0; i < N; i++) {
        Fanout__Frame *f;
        if (fo_tc_recv(&c[i], 1000, &f) == 1 && f->body_case == FANOUT__FRAME__BODY_ERROR) {
            assert_int_equal(f->error->code, ERRC(MEMORY_LIMIT));
            refused++;
        }
    }
    assert_true(refused >= 1 && refused <= N - 1);   /* some fit, not all */
    assert_true(fo_tb_metric(&b, "fanout_memory_bytes") <= 2 * 1024 * 1024);
    assert_healthy(&b, "small.ok");
    for (int i = 0; i < N; i++)
        fo_tc_close(&c[i]);
    /* all released once they are gone */
    uint64_t deadline = fo_tb_now_ms() + 5000;
    while (fo_tb_metric(&b, "fanout_memory_bytes") > 0 && fo_tb_now_ms() < deadline)
        ;
    assert_true(fo_tb_metric(&b, "fanout_memory_bytes") < 64 * 1024);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* Peers that stop in the middle of a frame give their 64 KiB read blocks
 * back after a second of silence, and their frames still complete. */
static void test_idle_partial_frames(void **state)
{
    (void)state;
    enum { N = 50 };
    fo_tb_t b;
    assert_int_equal(fo_tb_start(&b, NULL), 0);
    static fo_tc_t c[N];
    fo_tc_t sub;
    assert_int_equal(fo_tc_open(&sub, b.port, "sub"), 0);
    assert_int_equal(fo_tc_subscribe(&sub, 1, "part.t", NULL), 0);
    static uint8_t wire[N][128];
    size_t n[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(fo_tc_open(&c[i], b.port, "partial"), 0);
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Publish p = FANOUT__PUBLISH__INIT;
        char payload[16];
        int pl = snprintf(payload, sizeof payload, "p%d", i);
        p.topic = "part.t"; p.has_payload = 1;
        p.payload.data = (uint8_t *)payload; p.payload.len = (size_t)pl;
        f.body_case = FANOUT__FRAME__BODY_PUBLISH; f.publish = &p;
        n[i] = fo_frame_pack(&f, wire[i]);
        fo_tc_send_raw(&c[i], wire[i], n[i] / 2);          /* half a frame */
    }
    /* the blocks are held, then given back once the peers are quiet */
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_input_buffer_bytes", N * 65536.0, 5000), 0);
    uint64_t deadline = fo_tb_now_ms() + 10000;
    while (fo_tb_metric(&b, "fanout_input_buffer_bytes") >= N * 4096.0 &&
           fo_tb_now_ms() < deadline)
        ;
    assert_true(fo_tb_metric(&b, "fanout_input_buffer_bytes") < N * 4096.0);
    /* the rest of each frame still makes a whole, correct message */
    for (int i = 0; i < N; i++)
        fo_tc_send_raw(&c[i], wire[i] + n[i] / 2, n[i] - n[i] / 2);
    static int seen[N];
    for (int k = 0; k < N; k++) {
        Fanout__Frame *f;
        assert_int_equal(fo_tc_recv(&sub, 5000, &f), 1);
        assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
        char num[16] = {0};
        memcpy(num, f->deliver->payload.data + 1, f->deliver->payload.len - 1);
        int i = atoi(num);
        assert_int_equal(seen[i]++, 0);
    }
    for (int i = 0; i < N; i++)
        fo_tc_close(&c[i]);
    fo_tc_close(&sub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

static void test_timeouts(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--ping-interval", "100ms", "--idle-timeout", "400ms",
                           "--hello-timeout", "200ms", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t mute, silent;
    assert_int_equal(fo_tc_connect(&mute, b.port), 0);      /* never says HELLO */
    expect_error_close(&mute, ERRC(IDLE_TIMEOUT));
    assert_int_equal(fo_tc_open(&silent, b.port, "silent"), 0);
    /* it is PINGed, does not answer, and is closed */
    Fanout__Frame *f;
    int pinged = 0;
    uint64_t deadline = fo_tb_now_ms() + 5000;
    int code = -1;
    while (fo_tb_now_ms() < deadline) {
        int r = fo_tc_recv(&silent, 100, &f);
        if (r < 0)
            break;
        if (r == 1 && f->body_case == FANOUT__FRAME__BODY_PING)
            pinged = 1;
        if (r == 1 && f->body_case == FANOUT__FRAME__BODY_ERROR)
            code = f->error->code;
    }
    assert_true(pinged);
    assert_int_equal(code, ERRC(IDLE_TIMEOUT));
    fo_tc_close(&silent);
    assert_true(fo_tb_metric(&b, "fanout_idle_timeouts_total") >= 2);
    assert_int_equal(fo_tb_stop(&b), 0);
}

static void test_max_conns(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--max-conns", "3", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t c[4];
    for (int i = 0; i < 3; i++)
        assert_int_equal(fo_tc_open(&c[i], b.port, "c"), 0);
    if (fo_tb_tls()) {
        /* over TLS the refusal is a close before the handshake: an ERROR
         * frame would need one (acceptor.c) */
        assert_int_not_equal(fo_tc_connect(&c[3], b.port), 0);
    } else {
        assert_int_equal(fo_tc_connect(&c[3], b.port), 0);
        expect_error_close(&c[3], ERRC(MAX_CONNS));
    }
    fo_tc_close(&c[2]);
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_connections", 2, 1000), 0);
    /* it stays at 2 for a moment: wait for the count to drop, then retry */
    uint64_t deadline = fo_tb_now_ms() + 5000;
    while (fo_tb_metric(&b, "fanout_connections") > 2 && fo_tb_now_ms() < deadline)
        ;
    assert_int_equal(fo_tc_open(&c[2], b.port, "again"), 0);
    for (int i = 0; i < 3; i++)
        fo_tc_close(&c[i]);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* SIGTERM: everything accepted before is delivered, then ERROR shutdown,
 * then close, and the broker exits 0. */
static void test_sigterm_drains(void **state)
{
    (void)state;
    enum { N = 50000 };
    fo_tb_t b;
    assert_int_equal(fo_tb_start(&b, NULL), 0);
    fo_tc_t sub, pub;
    assert_int_equal(fo_tc_open(&sub, b.port, "sub"), 0);
    assert_int_equal(fo_tc_subscribe(&sub, 1, "drain.t", NULL), 0);
    assert_int_equal(fo_tc_open(&pub, b.port, "pub"), 0);
    for (int i = 1; i <= N; i++)
        fo_tc_publish(&pub, "drain.t", "0123456789", 10, i == N ? 1 : 0);
    assert_int_equal(fo_tc_wait_ack(&pub, 1, 10000), 0);   /* all accepted */
    fo_tb_signal(&b, SIGTERM);
    uint64_t got = 0;
    int code = -1;
    for (;;) {
        Fanout__Frame *f;
        int r = fo_tc_recv(&sub, 10000, &f);
        if (r != 1)
            break;
        if (f->body_case == FANOUT__FRAME__BODY_DELIVER) {
            assert_int_equal(f->deliver->seq, got + 1);
            got++;
        } else if (f->body_case == FANOUT__FRAME__BODY_ERROR) {
            code = f->error->code;
        }
    }
    assert_int_equal(got, N);
    assert_int_equal(code, ERRC(SHUTDOWN));
    fo_tc_close(&sub);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* SIGHUP re-reads the config file: a reloadable limit changes for new
 * connections (WELCOME carries it); the broker keeps serving. */
static uint64_t welcome_max_output(int port)
{
    fo_tc_t c;
    if (fo_tc_connect(&c, port))
        return 0;
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1; h.version = 1;
    f.body_case = FANOUT__FRAME__BODY_HELLO; f.hello = &h;
    Fanout__Frame *r;
    uint64_t v = 0;
    if (fo_tc_send(&c, &f) == 0 && fo_tc_recv(&c, 5000, &r) == 1 &&
        r->body_case == FANOUT__FRAME__BODY_WELCOME)
        v = r->welcome->max_output;
    fo_tc_close(&c);
    return v;
}

static void test_sighup_reload(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/test-logs/reload-%d.conf", fo_tb_build_dir(), (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# test config\nmax-output 1MiB\n");
    fclose(f);
    fo_tb_t b;
    const char *args[] = { "--config", path, NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    assert_int_equal(welcome_max_output(b.port), 1 << 20);
    f = fopen(path, "w");
    fprintf(f, "max-output 2MiB\n");
    fclose(f);
    fo_tb_signal(&b, SIGHUP);
    uint64_t deadline = fo_tb_now_ms() + 5000;
    while (welcome_max_output(b.port) != 2u << 20 && fo_tb_now_ms() < deadline)
        ;
    assert_int_equal(welcome_max_output(b.port), 2u << 20);
    /* a bad file is refused whole; the old values stay */
    f = fopen(path, "w");
    fprintf(f, "max-output banana\n");
    fclose(f);
    fo_tb_signal(&b, SIGHUP);
    assert_healthy(&b, "after.reload");
    assert_int_equal(welcome_max_output(b.port), 2u << 20);
    assert_int_equal(fo_tb_stop(&b), 0);
    unlink(path);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_bad_requests_keep_connection),
        cmocka_unit_test(test_closing_error_has_ref),
        cmocka_unit_test(test_slow_consumer_drop),
        cmocka_unit_test(test_slow_consumer_disconnect),
        cmocka_unit_test(test_slow_consumer_block),
        cmocka_unit_test(test_block_replay),
        cmocka_unit_test(test_memory_cap),
        cmocka_unit_test(test_memory_cap_input),
        cmocka_unit_test(test_idle_partial_frames),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_max_conns),
        cmocka_unit_test(test_sigterm_drains),
        cmocka_unit_test(test_sighup_reload),
    };
    return cmocka_run_group_tests_name("robust", tests, NULL, NULL);
}
