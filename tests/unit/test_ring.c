/* test_ring.c -- retention ring, refcounted messages, inbox. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>
#include "ring.h"
#include "inbox.h"
#include "frame.h"

static fo_mem_t mem;

static fo_msg_t *mk(uint64_t seq, size_t plen)
{
    static uint8_t payload[4096];
    memset(payload, (int)seq, plen);
    return fo_msg_new(&mem, NULL, "r.t", 3, seq, 1234, payload, plen, 0);
}

static void test_msg_encoding_matches_protobuf_c(void **state)
{
    (void)state;
    fo_arena_t a;
    fo_arena_init(&a, 4096, 0);
    uint64_t seqs[] = {1, 127, 128, 1ull << 40};
    for (int replay = 0; replay < 2; replay++)
        for (size_t i = 0; i < 4; i++) {
            fo_msg_t *m = fo_msg_new(&mem, NULL, "a.topic", 7, seqs[i], 99, (const uint8_t *)"hello", 5, replay);
            assert_non_null(m);
            uint8_t wire[256];
            size_t pn = fo_deliver_prefix(wire, 42, m->shared_len);
            memcpy(wire + pn, m->shared, m->shared_len);
            Fanout__Frame *f;
            assert_int_equal(fo_frame_unpack(wire + 4, pn + m->shared_len - 4, &a, &f), FO_OK);
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
            assert_int_equal(f->sid, 42);
            assert_string_equal(f->deliver->topic, "a.topic");
            assert_true(f->deliver->seq == seqs[i]);
            assert_int_equal(f->deliver->time_ns, 99);
            assert_int_equal(f->deliver->replay, replay);
            assert_int_equal(f->deliver->payload.len, 5);
            assert_memory_equal(fo_msg_payload(m), "hello", 5);
            size_t tl;
            const char *t = fo_msg_topic(m, &tl);
            assert_int_equal(tl, 7);
            assert_memory_equal(t, "a.topic", 7);
            fo_msg_t *copy = fo_msg_replay_copy(m);
            assert_int_equal(copy->replay, 1);
            assert_int_equal(copy->seq, m->seq);
            fo_msg_unref(copy);
            fo_msg_unref(m);
            fo_arena_reset(&a);
        }
    assert_int_equal(atomic_load(&mem.used), 0);   /* all uncharged */
    fo_arena_destroy(&a);
}

static void test_memory_cap(void **state)
{
    (void)state;
    fo_mem_t small = { 0, 4096 };
    fo_msg_t *a = fo_msg_new(&small, NULL, "t", 1, 1, 0, NULL, 0, 0);
    assert_non_null(a);
    static uint8_t big[8192];
    assert_null(fo_msg_new(&small, NULL, "t", 1, 2, 0, big, sizeof big, 0));
    assert_true(atomic_load(&small.used) < 4096);
    fo_msg_unref(a);
    assert_int_equal(atomic_load(&small.used), 0);
}

static void test_ring_count_bound(void **state)
{
    (void)state;
    fo_ring_t r;
    fo_ring_init(&r);
    for (uint64_t s = 1; s <= 100; s++) {
        fo_msg_t *m = mk(s, 10);
        assert_int_equal(fo_ring_push(&r, m, 10, 1 << 20), FO_OK);
        fo_msg_unref(m);
    }
    assert_int_equal(r.count, 10);
    assert_int_equal(fo_ring_oldest(&r, 101), 91);
    assert_null(fo_ring_get(&r, 90));
    assert_null(fo_ring_get(&r, 101));
    for (uint64_t s = 91; s <= 100; s++)
        assert_int_equal(fo_ring_get(&r, s)->seq, s);
    /* limits shrink (SIGHUP): evicts down on the next push */
    fo_msg_t *m = mk(101, 10);
    fo_ring_push(&r, m, 3, 1 << 20);
    fo_msg_unref(m);
    assert_int_equal(r.count, 3);
    assert_int_equal(fo_ring_oldest(&r, 102), 99);
    fo_ring_destroy(&r);
    assert_int_equal(atomic_load(&mem.used), 0);
}

static void test_ring_byte_bound_and_zero(void **state)
{
    (void)state;
    fo_ring_t r;
    fo_ring_init(&r);
    for (uint64_t s = 1; s <= 20; s++) {
        fo_msg_t *m = mk(s, 1000);
        fo_ring_push(&r, m, 1000, 5000);
        fo_msg_unref(m);
    }
    assert_int_equal(r.count, 5);
    assert_true(r.bytes <= 5000);
    assert_int_equal(fo_ring_oldest(&r, 21), 16);
    /* a message bigger than the byte bound is not kept, and nothing older */
    fo_msg_t *m = mk(21, 4096);
    fo_ring_push(&r, m, 1000, 3000);
    fo_msg_unref(m);
    assert_int_equal(r.count, 0);
    assert_int_equal(fo_ring_oldest(&r, 22), 22);
    /* retention 0 keeps nothing */
    m = mk(22, 1);
    fo_ring_push(&r, m, 0, 1000);
    fo_msg_unref(m);
    assert_int_equal(r.count, 0);
    assert_null(fo_ring_get(&r, 22));
    fo_ring_destroy(&r);
    fo_ring_destroy(NULL);
    assert_int_equal(atomic_load(&mem.used), 0);
}

/* Inbox: many producers, one consumer, nothing lost or duplicated, and
 * the eventfd wakes the consumer. */
typedef struct { fo_inbox_t *ib; int id; } prod_t;
enum { PRODUCERS = 4, PER = 20000 };

static void *producer(void *arg)
{
    prod_t *p = arg;
    for (int i = 0; i < PER; i += 10) {
        fo_item_t items[10];
        for (int k = 0; k < 10; k++)
            items[k] = (fo_item_t){ .kind = FO_ITEM_TARGET, .sid = (uint32_t)p->id,
                                    .conn_id = (uint64_t)(i + k) };
        fo_inbox_post(p->ib, items, 10);
    }
    return NULL;
}

static void test_inbox_mpsc(void **state)
{
    (void)state;
    fo_inbox_t ib;
    assert_int_equal(fo_inbox_init(&ib), FO_OK);
    pthread_t th[PRODUCERS];
    prod_t ps[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        ps[i] = (prod_t){ &ib, i };
        pthread_create(&th[i], NULL, producer, &ps[i]);
    }
    uint64_t next[PRODUCERS] = {0};
    size_t total = 0, cap = 0;
    fo_item_t *items = NULL;
    while (total < PRODUCERS * PER) {
        fo_inbox_ack(&ib);
        size_t n = fo_inbox_take(&ib, &items, &cap);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(items[i].conn_id, next[items[i].sid]);   /* per-producer order */
            next[items[i].sid]++;
        }
        total += n;
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(fo_inbox_pending(&ib), 0);
    free(items);
    fo_inbox_destroy(&ib);
}

/* The client's zero-copy DELIVER view reads exactly what the broker
 * writes (its canonical fast path), and agrees with protobuf-c on every
 * corrupted variant it still accepts. */
static void test_deliver_peek_on_broker_frames(void **state)
{
    (void)state;
    fo_arena_t a;
    fo_arena_init(&a, 4096, 0);
    srand(4242);
    int fast = 0;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t payload[300];
        size_t pl = (size_t)(rand() % 300);
        for (size_t k = 0; k < pl; k++) payload[k] = (uint8_t)rand();
        char topic[40];
        int tl = snprintf(topic, sizeof topic, "t%d.x%d", rand() % 1000, rand());
        uint64_t seq = (uint64_t)rand() * (iter % 3 ? 1 : 100000);
        fo_msg_t *m = fo_msg_new(&mem, NULL, topic, (size_t)tl, seq, (uint64_t)rand() << 20,
                                 payload, pl, iter % 5 == 0);
        uint8_t wire[512];
        uint32_t sid = (uint32_t)rand();
        size_t pn = fo_deliver_prefix(wire, sid, m->shared_len);
        memcpy(wire + pn, m->shared, m->shared_len);
        uint8_t *body = wire + 4;
        size_t len = pn + m->shared_len - 4;
        int mutated = iter % 2;
        if (mutated) {
            for (int k = 0; k < 1 + rand() % 3; k++)
                body[rand() % len] = (uint8_t)rand();
            if (rand() % 4 == 0)
                len = (size_t)rand() % len + 1;
        }
        fo_deliver_view_t v;
        fo_err_t pe = fo_deliver_peek(body, len, &v);
        Fanout__Frame *f = NULL;
        fo_err_t ue = fo_frame_unpack(body, len, &a, &f);
        if (!mutated)
            assert_int_equal(pe, FO_OK);
        if (pe == FO_OK) {
            fast += !mutated;
            assert_int_equal(ue, FO_OK);
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
            assert_int_equal(v.sid, f->has_sid ? f->sid : 0);
            assert_int_equal(v.topic_len, strlen(f->deliver->topic));
            assert_memory_equal(v.topic, f->deliver->topic, v.topic_len);
            assert_true(v.seq == f->deliver->seq);
            assert_true(v.time_ns == f->deliver->time_ns);
            assert_int_equal(v.replay, f->deliver->replay);
            assert_int_equal(v.payload_len, f->deliver->payload.len);
            if (v.payload_len)
                assert_memory_equal(v.payload, f->deliver->payload.data, v.payload_len);
        }
        fo_msg_unref(m);
        fo_arena_reset(&a);
    }
    assert_int_equal(fast, 10000);
    fo_arena_destroy(&a);
}

/* Blocks freed on another thread go home and are reused there. */
static fo_msg_t *cross[64];
static void *free_all(void *arg)
{
    (void)arg;
    for (int i = 0; i < 64; i++)
        fo_msg_unref(cross[i]);
    return NULL;
}

static void test_msg_cache_returns_home(void **state)
{
    (void)state;
    for (int i = 0; i < 64; i++)
        cross[i] = mk((uint64_t)i + 1, 100);
    void *addr[64];
    for (int i = 0; i < 64; i++)
        addr[i] = cross[i];
    pthread_t th;
    pthread_create(&th, NULL, free_all, NULL);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&mem.used), 0);
    int reused = 0;
    for (int i = 0; i < 64; i++) {
        fo_msg_t *m = mk(1000, 100);
        for (int k = 0; k < 64; k++)
            reused += (void *)m == addr[k];
        cross[i] = m;
    }
    assert_int_equal(reused, 64);
    for (int i = 0; i < 64; i++)
        fo_msg_unref(cross[i]);
    /* a big one bypasses the cache */
    static uint8_t big[16384];
    fo_msg_t *b = fo_msg_new(&mem, NULL, "t", 1, 1, 0, big, sizeof big, 0);
    fo_msg_unref(b);
    fo_msg_caches_release();
}

int main(void)
{
    atomic_store(&mem.limit, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_encoding_matches_protobuf_c),
        cmocka_unit_test(test_memory_cap),
        cmocka_unit_test(test_ring_count_bound),
        cmocka_unit_test(test_ring_byte_bound_and_zero),
        cmocka_unit_test(test_inbox_mpsc),
        cmocka_unit_test(test_msg_cache_returns_home),
        cmocka_unit_test(test_deliver_peek_on_broker_frames),
    };
    return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
