/* test_msg.c -- the broker's encoded-once message (broker/msg.c): the
 * DELIVER body it encodes, refcounts and the memory cap, the size-classed
 * block cache and blocks going home from other threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>
#include "msg.h"
#include "frame.h"
#include "broker_msg_fixture.h"

static void test_msg_encoding_matches_protobuf_c(void **state)
{
    (void)state;
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 4096, 0), FO_OK);
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

/* A worker's credit (fo_mem_local_begin): used counts what is live plus
 * at most a few chunks, never less than what is live; the cap is kept to
 * within a chunk; flushing makes used exact again. */
static void test_memory_credit(void **state)
{
    (void)state;
    fo_mem_t mem = { 0, 1 << 20 };           /* 1 MiB: chunks of 1 KiB */
    fo_mem_local_begin(&mem);
    static fo_msg_t *m[2000];
    static uint8_t body[600];   /* 2000 of them exceed the cap */
    uint64_t live = 0;
    int n = 0;
    while (n < 2000 && (m[n] = fo_msg_new(&mem, NULL, "t", 1, (uint64_t)n + 1, 0, body, sizeof body, 0))) {
        live += m[n]->charged;
        assert_true(atomic_load(&mem.used) >= live);
        assert_true(atomic_load(&mem.used) <= live + 1024);
        n++;
    }
    assert_true(n < 2000);                    /* refused at the cap ... */
    assert_true(live > (1 << 20) - 1024 - m[0]->charged);  /* ... not before its last chunk */
    assert_true(atomic_load(&mem.used) <= 1 << 20);
    for (int i = 0; i < n; i++) {
        live -= m[i]->charged;
        fo_msg_unref(m[i]);
        assert_true(atomic_load(&mem.used) >= live);
        assert_true(atomic_load(&mem.used) <= live + 3 * 1024);   /* kept: two chunks */
    }
    fo_mem_local_flush();
    assert_int_equal(atomic_load(&mem.used), 0);
    /* another mem on this thread is charged directly */
    fo_mem_t other = { 0, 0 };
    fo_msg_t *o = fo_msg_new(&other, NULL, "t", 1, 1, 0, body, sizeof body, 0);
    assert_non_null(o);
    assert_int_equal(atomic_load(&other.used), o->charged);
    fo_msg_unref(o);
    assert_int_equal(atomic_load(&other.used), 0);
    fo_mem_local_end();
    assert_int_equal(atomic_load(&mem.used), 0);
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

/* Put-off unreferences: k of one message become one subtraction, the
 * last one frees it, and a batch that fills up flushes itself. */
static void test_unref_batch(void **state)
{
    (void)state;
    static fo_unref_batch_t b;
    fo_msg_t *m = mk(1, 10);
    for (int i = 0; i < 4; i++)
        fo_msg_ref(m);                            /* 5 references */
    for (int i = 0; i < 3; i++)
        fo_msg_unref_later(&b, m);
    assert_int_equal(atomic_load(&m->refs), 5);   /* nothing yet */
    fo_msg_unref_flush(&b);
    assert_int_equal(atomic_load(&m->refs), 2);
    fo_msg_unref_later(&b, m);
    fo_msg_unref_later(&b, m);
    fo_msg_unref_flush(&b);                       /* the last: freed */
    assert_int_equal(atomic_load(&mem.used), 0);
    /* more distinct messages than the batch holds */
    enum { N = 3 * FO_UNREF_BATCH };
    static fo_msg_t *many[N];
    for (int i = 0; i < N; i++)
        many[i] = mk((uint64_t)i + 1, 10);
    for (int i = 0; i < N; i++)
        fo_msg_unref_later(&b, many[i]);
    assert_true(b.used <= FO_UNREF_BATCH / 2);
    fo_msg_unref_flush(&b);
    assert_int_equal(atomic_load(&mem.used), 0);
    fo_msg_caches_release();
}

int main(void)
{
    atomic_store(&mem.limit, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_encoding_matches_protobuf_c),
        cmocka_unit_test(test_memory_cap),
        cmocka_unit_test(test_memory_credit),
        cmocka_unit_test(test_msg_cache_returns_home),
        cmocka_unit_test(test_unref_batch),
    };
    return cmocka_run_group_tests_name("msg", tests, NULL, NULL);
}
