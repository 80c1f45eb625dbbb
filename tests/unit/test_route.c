/* test_route.c -- the publish path (route.c) with conn.c and worker.c,
 * without threads or TCP: a broker with two workers that the test steps
 * itself (fo_worker_step), and connections over socketpairs whose far end
 * the test reads and writes. Covers fan-out to subscribers on both
 * workers (one encoded body shared by all), queue groups across workers,
 * ACK with the sequence, no route, the memory cap, and drop-oldest with
 * an exact GAP; tcache.c on the way. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include "broker.h"
#include "conn.h"
#include "route.h"
#include "tcache.h"
#include "worker.h"

typedef struct peer {
    fo_conn_t *c;          /* the broker's side */
    int fd;                /* the client's side */
    fo_decoder_t dec;
    fo_arena_t arena;
} peer_t;

static fo_broker_t B;

static void step_all(int rounds)
{
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < B.nworkers; i++)
            (void)fo_worker_step(B.workers[i], 0);
}

static int setup(void **state)
{
    (void)state;
    memset(&B, 0, sizeof B);
    fo_config_defaults(&B.cfg);
    B.cfg.threads = 2;
    char err[256];
    if (fo_broker_init(&B, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fo_broker_stop(&B);
    return 0;
}

static void send_frame(peer_t *p, const Fanout__Frame *f)
{
    uint8_t buf[4096];
    size_t n = fo_frame_pack(f, buf);
    assert_int_equal(write(p->fd, buf, n), (ssize_t)n);
    fo_conn_on_readable(p->c);
}

/* The next frame the broker wrote to p, stepping the workers meanwhile;
 * NULL when none comes within a few hundred steps. */
static Fanout__Frame *recv_frame(peer_t *p)
{
    for (int tries = 0; tries < 200; tries++) {
        const uint8_t *body;
        size_t len;
        if (fo_decoder_next(&p->dec, &body, &len) == FO_OK) {
            Fanout__Frame *f;
            fo_arena_reset(&p->arena);
            return fo_frame_unpack(body, len, &p->arena, &f) ? NULL : f;
        }
        step_all(1);
        assert_int_equal(fo_buf_reserve(&p->dec.buf, 65536), FO_OK);
        ssize_t k = recv(p->fd, fo_buf_tail(&p->dec.buf), fo_buf_room(&p->dec.buf), MSG_DONTWAIT);
        if (k > 0)
            fo_buf_commit(&p->dec.buf, (size_t)k);
    }
    return NULL;
}

/* A connection on worker w, past HELLO/WELCOME. */
static void open_peer(peer_t *p, int w)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    atomic_fetch_add(&B.conns, 1);
    assert_int_equal(fo_conn_create(B.workers[w], sv[0], &p->c), FO_OK);
    p->fd = sv[1];
    fo_decoder_init(&p->dec, 0);
    assert_int_equal(fo_arena_init(&p->arena, 4096, 0), FO_OK);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1;
    h.version = 1;
    f.body_case = FANOUT__FRAME__BODY_HELLO;
    f.hello = &h;
    send_frame(p, &f);
    Fanout__Frame *in = recv_frame(p);
    assert_non_null(in);
    assert_int_equal(in->body_case, FANOUT__FRAME__BODY_WELCOME);
}

static void close_peer(peer_t *p)
{
    close(p->fd);
    fo_conn_destroy(p->c);
    fo_decoder_destroy(&p->dec);
    fo_arena_destroy(&p->arena);
}

static void subscribe(peer_t *p, uint32_t sid, const char *filter, const char *queue, int slow)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1;
    s.sid = sid;
    s.filter = (char *)filter;
    s.queue = (char *)queue;
    if (slow) {
        s.has_slow = 1;
        s.slow = slow;
    }
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    f.has_req = 1;
    f.req = 1000 + sid;
    send_frame(p, &f);
    Fanout__Frame *a = recv_frame(p);
    assert_non_null(a);
    assert_int_equal(a->body_case, FANOUT__FRAME__BODY_ACK);
    assert_int_equal(a->ack->ref, 1000 + sid);
}

static void publish(peer_t *p, const char *topic, const char *payload, uint64_t req)
{
    fo_publish_req_t pr = { .topic = topic, .topic_len = strlen(topic),
                            .payload = (const uint8_t *)payload, .payload_len = strlen(payload),
                            .req = req };
    fo_route_publish(p->c, &pr);
}

static uint64_t stat_sum(size_t off)
{
    uint64_t v = 0;
    for (int i = 0; i < B.nworkers; i++)
        v += atomic_load((_Atomic uint64_t *)((char *)&B.workers[i]->stats + off));
    return v;
}
#define STAT(f) stat_sum(offsetof(fo_stats_t, f))

/* Subscribers on both workers each get the message; the publisher gets
 * ACK {seq}; both DELIVERs share one body (same bytes after Frame.sid). */
static void test_fanout_both_workers(void **state)
{
    (void)state;
    peer_t pub, s0, s1;
    open_peer(&pub, 0);
    open_peer(&s0, 0);
    open_peer(&s1, 1);
    subscribe(&s0, 7, "r.>", NULL, 0);
    subscribe(&s1, 9, "r.a", NULL, 0);
    publish(&pub, "r.a", "hello", 5);
    Fanout__Frame *a = recv_frame(&pub);
    assert_non_null(a);
    assert_int_equal(a->body_case, FANOUT__FRAME__BODY_ACK);
    assert_int_equal(a->ack->ref, 5);
    assert_int_equal(a->ack->seq, 1);
    Fanout__Frame *d0 = recv_frame(&s0);
    assert_non_null(d0);
    assert_int_equal(d0->body_case, FANOUT__FRAME__BODY_DELIVER);
    assert_int_equal(d0->sid, 7);
    assert_int_equal(d0->deliver->seq, 1);
    assert_memory_equal(d0->deliver->payload.data, "hello", 5);
    Fanout__Frame *d1 = recv_frame(&s1);
    assert_non_null(d1);
    assert_int_equal(d1->sid, 9);
    assert_string_equal(d1->deliver->topic, "r.a");
    /* the topic is cached on the publisher's worker now */
    assert_non_null(fo_tcache_find(B.workers[0]->tcache, "r.a", 3, fo_topic_hash("r.a", 3)));
    assert_null(fo_tcache_find(B.workers[1]->tcache, "r.a", 3, fo_topic_hash("r.a", 3)));
    close_peer(&s1);
    close_peer(&s0);
    close_peer(&pub);
}

/* A queue group with a member on each worker: each message exactly once. */
static void test_queue_group_across_workers(void **state)
{
    (void)state;
    peer_t pub, m0, m1;
    open_peer(&pub, 1);
    open_peer(&m0, 0);
    open_peer(&m1, 1);
    subscribe(&m0, 1, "q.t", "g", 0);
    subscribe(&m1, 1, "q.t", "g", 0);
    for (int i = 0; i < 10; i++)
        publish(&pub, "q.t", "x", 0);
    step_all(5);
    int got[2] = { 0, 0 };
    uint8_t seen[11] = { 0 };
    peer_t *ms[2] = { &m0, &m1 };
    for (int k = 0; k < 2; k++) {
        Fanout__Frame *f;
        while (got[0] + got[1] < 10 && (f = recv_frame(ms[k])) != NULL) {
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
            assert_int_equal(seen[f->deliver->seq]++, 0);
            got[k]++;
            if (got[k] == 5)
                break;
        }
    }
    assert_int_equal(got[0], 5);       /* round-robin: an even split */
    assert_int_equal(got[1], 5);
    close_peer(&m1);
    close_peer(&m0);
    close_peer(&pub);
}

static void test_no_route_and_memory_cap(void **state)
{
    (void)state;
    peer_t pub;
    open_peer(&pub, 0);
    uint64_t before = STAT(drops_no_route);
    publish(&pub, "nobody.here", "x", 0);
    assert_int_equal(STAT(drops_no_route), before + 1);
    uint64_t limit = atomic_load(&B.mem.limit);
    atomic_store(&B.mem.limit, atomic_load(&B.mem.used) + 16);   /* no room for one */
    publish(&pub, "nobody.here", "too big for the cap", 3);
    atomic_store(&B.mem.limit, limit);
    Fanout__Frame *e = recv_frame(&pub);
    assert_non_null(e);
    assert_int_equal(e->body_case, FANOUT__FRAME__BODY_ERROR);
    assert_int_equal(e->error->code, FO_CODE(MEMORY_LIMIT));
    assert_int_equal(e->error->ref, 3);
    assert_int_equal(pub.c->state, FO_CONN_OPEN);                  /* stays open */
    close_peer(&pub);
}

/* A drop-policy subscriber that reads nothing: the oldest queued messages
 * go, and a GAP naming exactly those takes their place. */
static void test_drop_oldest_gap(void **state)
{
    (void)state;
    peer_t pub, slow;
    open_peer(&pub, 0);
    open_peer(&slow, 0);
    int small = 4096;
    assert_int_equal(setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    assert_int_equal(setsockopt(slow.c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    subscribe(&slow, 3, "d.t", NULL, FANOUT__SLOW_POLICY__SLOW_DROP);
    uint64_t max_output = atomic_load(&B.lim.max_output);
    atomic_store(&B.lim.max_output, 8192);
    static char big[1000];
    memset(big, 'b', sizeof big - 1);
    for (int i = 0; i < 200; i++)
        publish(&pub, "d.t", big, 0);
    atomic_store(&B.lim.max_output, max_output);
    assert_true(STAT(drops_slow_consumer) > 0);
    uint64_t next = 1, gaps = 0;
    while (next <= 200) {
        Fanout__Frame *f = recv_frame(&slow);
        assert_non_null(f);
        if (f->body_case == FANOUT__FRAME__BODY_GAP) {
            assert_int_equal(f->gap->first, next);    /* exactly what is missing */
            assert_int_equal(f->gap->reason, FANOUT__GAP_REASON__GAP_SLOW_CONSUMER);
            next = f->gap->last + 1;
            gaps++;
        } else {
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
            assert_int_equal(f->deliver->seq, next);
            next++;
        }
    }
    assert_true(gaps > 0);
    close_peer(&slow);
    close_peer(&pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fanout_both_workers),
        cmocka_unit_test(test_queue_group_across_workers),
        cmocka_unit_test(test_no_route_and_memory_cap),
        cmocka_unit_test(test_drop_oldest_gap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
