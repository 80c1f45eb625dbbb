/* test_client_parts.c -- libfanout's small parts: the zero-copy DELIVER
 * view and the PUBLISH encoder against protobuf-c (property tests), the
 * per-topic sequence map, the fo_sub_next queue, address parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "frame.h"
#include "../../client/msgq.h"
#include "../../client/seqmap.h"
#include "../../client/dial.h"

static size_t encode_deliver(uint8_t *out, uint32_t sid, const char *topic,
                             const void *p, size_t n, uint64_t seq,
                             uint64_t t, int replay, int extras)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Deliver d = FANOUT__DELIVER__INIT;
    d.topic = (char *)topic;
    d.has_payload = 1; d.payload.data = (uint8_t *)p; d.payload.len = n;
    if (seq) { d.has_seq = 1; d.seq = seq; }
    if (t) { d.has_time_ns = 1; d.time_ns = t; }
    if (replay) { d.has_replay = 1; d.replay = 1; }
    f.body_case = FANOUT__FRAME__BODY_DELIVER;
    f.deliver = &d;
    if (sid) { f.has_sid = 1; f.sid = sid; }
    if (extras) { f.has_req = 1; f.req = 99; }
    return fo_frame_pack(&f, out);
}

/* Whatever fo_deliver_peek accepts, protobuf-c reads the same way. */
static void test_deliver_peek_agrees_with_protobuf_c(void **state)
{
    (void)state;
    fo_arena_t a;
    fo_arena_init(&a, 4096, 0);
    srand(4242);
    uint8_t wire[512];
    int ok_seen = 0, fallback_seen = 0, bad_seen = 0;
    for (int iter = 0; iter < 30000; iter++) {
        char topic[32], payload[64];
        int tl = 1 + rand() % 20, pl = rand() % 60;
        for (int i = 0; i < tl; i++) topic[i] = (char)('a' + rand() % 26);
        topic[tl] = 0;
        for (int i = 0; i < pl; i++) payload[i] = (char)rand();
        size_t n = encode_deliver(wire, (uint32_t)(rand() % 4 ? rand() : 0), topic,
                                  payload, (size_t)pl, (uint64_t)rand() * (uint64_t)rand(),
                                  rand() % 2 ? (uint64_t)rand() << 20 : 0, rand() % 5 == 0,
                                  rand() % 7 == 0);
        uint8_t *body = wire + 4;
        size_t len = n - 4;
        if (iter % 2) {
            for (int k = 0; k < 1 + rand() % 3; k++)
                body[rand() % len] = (uint8_t)rand();
            if (rand() % 4 == 0)
                len = (size_t)rand() % len + 1;
        }
        fo_deliver_view_t v;
        fo_err_t pe = fo_deliver_peek(body, len, &v);
        Fanout__Frame *f = NULL;
        fo_err_t ue = fo_frame_unpack(body, len, &a, &f);
        if (pe == FO_OK) {
            ok_seen++;
            assert_int_equal(ue, FO_OK);
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
            const Fanout__Deliver *d = f->deliver;
            assert_non_null(d->topic);
            assert_int_equal(strlen(d->topic), v.topic_len);
            assert_memory_equal(d->topic, v.topic, v.topic_len);
            assert_int_equal(d->payload.len, v.payload_len);
            if (v.payload_len)
                assert_memory_equal(d->payload.data, v.payload, v.payload_len);
            assert_true(v.seq == (d->has_seq ? d->seq : 0));
            assert_true(v.time_ns == (d->has_time_ns ? d->time_ns : 0));
            assert_int_equal(v.replay, d->has_replay && d->replay);
            assert_true(v.sid == (f->has_sid ? f->sid : 0));
        } else {
            assert_int_equal(pe, FO_ERR_AGAIN);
            bad_seen += ue == FO_ERR_BAD_FRAME;
            fallback_seen++;
        }
        fo_arena_reset(&a);
    }
    assert_true(ok_seen > 15000);
    assert_true(fallback_seen > 0);
    assert_true(bad_seen > 0);
    fo_arena_destroy(&a);
}

static void test_deliver_peek_shared_prefix(void **state)
{
    (void)state;
    /* The broker's way: per-subscriber prefix + shared body. */
    uint8_t shared[64], pre[FO_DELIVER_PREFIX_MAX], wire[128];
    size_t sl = fo_deliver_write_shared(shared, "x.y", 3, 300, 0, 0, "hi", 2);
    size_t pl = fo_deliver_prefix(pre, 77777, sl);
    memcpy(wire, pre, pl);
    memcpy(wire + pl, shared, sl);
    fo_deliver_view_t v;
    assert_int_equal(fo_deliver_peek(wire + 4, pl + sl - 4, &v), FO_OK);
    assert_int_equal(v.sid, 77777);
    assert_int_equal(v.seq, 300);
    assert_int_equal(v.topic_len, 3);
    assert_memory_equal(v.topic, "x.y", 3);
    /* a non-DELIVER frame falls back */
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Ack ack = FANOUT__ACK__INIT;
    f.body_case = FANOUT__FRAME__BODY_ACK; f.ack = &ack;
    size_t n = fo_frame_pack(&f, wire);
    assert_int_equal(fo_deliver_peek(wire + 4, n - 4, &v), FO_ERR_AGAIN);
}

/* The hand-written PUBLISH encoder is byte-identical to protobuf-c. */
static void test_publish_pack_matches_protobuf_c(void **state)
{
    (void)state;
    srand(99);
    static uint8_t a[70000], b[70000], payload[66000];
    for (int iter = 0; iter < 2000; iter++) {
        char topic[300];
        size_t tl = (size_t)(1 + rand() % (iter % 10 ? 20 : 290));
        for (size_t i = 0; i < tl; i++) topic[i] = (char)('a' + rand() % 26);
        topic[tl] = 0;
        size_t pl = (size_t)(iter % 50 ? rand() % 300 : rand() % 66000);
        for (size_t i = 0; i < pl; i++) payload[i] = (uint8_t)rand();
        uint64_t req = rand() % 2 ? 0 : (uint64_t)rand() * (uint64_t)rand();
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Publish p = FANOUT__PUBLISH__INIT;
        p.topic = topic;
        p.has_payload = 1; p.payload.data = payload; p.payload.len = pl;
        f.body_case = FANOUT__FRAME__BODY_PUBLISH; f.publish = &p;
        if (req) { f.has_req = 1; f.req = req; }
        size_t na = fo_frame_pack(&f, a);
        assert_int_equal(fo_publish_frame_size(tl, pl, req), na);
        size_t nb = fo_publish_frame_pack(b, topic, tl, payload, pl, req);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na);
    }
}

static void test_seqmap(void **state)
{
    (void)state;
    fo__seqmap_t m;
    fo__seqmap_init(&m, 100);
    char t[32];
    for (int i = 0; i < 100; i++) {
        snprintf(t, sizeof t, "topic.%d", i);
        fo__seqmap_ent_t *e = fo__seqmap_get(&m, t, strlen(t));
        assert_non_null(e);
        assert_int_equal(e->seq, 0);
        e->seq = (uint64_t)i + 1;
    }
    assert_null(fo__seqmap_get(&m, "one.more", 8));  /* bounded */
    assert_int_equal(m.dropped, 1);
    for (int i = 0; i < 100; i++) {
        snprintf(t, sizeof t, "topic.%d", i);
        assert_int_equal(fo__seqmap_get(&m, t, strlen(t))->seq, (uint64_t)i + 1);
    }
    size_t it = 0, n = 0;
    const fo__seqmap_ent_t *e;
    while ((e = fo__seqmap_next(&m, &it)))
        n++;
    assert_int_equal(n, 100);
    fo__seqmap_clear(&m);
    assert_int_equal(m.count, 0);
    assert_int_equal(fo__seqmap_get(&m, "topic.1", 7)->seq, 0);
    fo__seqmap_destroy(&m);
    fo__seqmap_destroy(NULL);
}

static void test_msgq_fifo_and_bound(void **state)
{
    (void)state;
    fo__msgq_t q;
    fo__msgq_init(&q, 200);
    fo_msg_t m = { "a.b", 3, "payload", 7, 1, 5, 0 }, out;
    assert_int_equal(fo__msgq_pop(&q, &out), FO_ERR_AGAIN);
    int pushed = 0;
    while (fo__msgq_push(&q, &m) == FO_OK) {
        m.seq++;
        pushed++;
    }
    assert_true(pushed >= 2 && pushed < 10);
    for (int i = 0; i < pushed; i++) {
        assert_int_equal(fo__msgq_pop(&q, &out), FO_OK);
        assert_int_equal(out.seq, (uint64_t)i + 1);
        assert_string_equal(out.topic, "a.b");
        assert_int_equal(out.payload_len, 7);
        assert_memory_equal(out.payload, "payload", 7);
        assert_int_equal(out.time_ns, 5);
    }
    assert_int_equal(fo__msgq_pop(&q, &out), FO_ERR_AGAIN);
    /* an empty queue takes one message even above the bound */
    static char big[1000];
    fo_msg_t bm = { "t", 1, big, sizeof big, 9, 0, 1 };
    assert_int_equal(fo__msgq_push(&q, &bm), FO_OK);
    assert_int_equal(fo__msgq_push(&q, &m), FO_ERR_BUSY);
    assert_int_equal(fo__msgq_pop(&q, &out), FO_OK);
    assert_int_equal(out.replay, 1);
    fo__msgq_destroy(&q);
}

static void test_addr_split(void **state)
{
    (void)state;
    char h[64];
    int port;
    assert_int_equal(fo_addr_split("127.0.0.1:7400", h, sizeof h, &port), FO_OK);
    assert_string_equal(h, "127.0.0.1");
    assert_int_equal(port, 7400);
    assert_int_equal(fo_addr_split(":80", h, sizeof h, &port), FO_OK);
    assert_string_equal(h, "127.0.0.1");
    assert_int_equal(fo_addr_split("[::1]:9", h, sizeof h, &port), FO_OK);
    assert_string_equal(h, "::1");
    const char *bad[] = { "", "host", "host:", "host:0", "host:65536",
                          "host:12x", "::1:80", "[::1]80", NULL };
    for (int i = 0; bad[i]; i++)
        assert_int_equal(fo_addr_split(bad[i], h, sizeof h, &port), FO_ERR_ADDR);
    assert_int_equal(fo_addr_split(NULL, h, sizeof h, &port), FO_ERR_ADDR);
}

/* The resume watermark: out-of-order arrivals, GAPs, the window bound. */
static void test_seqmap_watermark(void **state)
{
    (void)state;
    fo__seqmap_t m;
    fo__seqmap_init(&m, 0);
    fo__seqmap_ent_t *e = fo__seqmap_get(&m, "t", 1);
    assert_int_equal(fo__seqmap_resume(e), 0);
    assert_false(fo__seqmap_seen(e, 5));
    const uint64_t order[] = { 5, 6, 9, 7, 11 };
    for (int i = 0; i < 5; i++)
        fo__seqmap_mark(e, order[i]);
    assert_int_equal(e->seq, 11);
    assert_int_equal(fo__seqmap_resume(e), 8);     /* 8 may still come */
    assert_true(fo__seqmap_seen(e, 4));            /* below the first seen */
    assert_true(fo__seqmap_seen(e, 9));
    assert_false(fo__seqmap_seen(e, 8));
    assert_false(fo__seqmap_seen(e, 10));
    fo__seqmap_mark(e, 8);
    assert_int_equal(fo__seqmap_resume(e), 10);
    fo__seqmap_skip(e, 10, 10);                    /* a GAP fills the hole */
    assert_int_equal(fo__seqmap_resume(e), 12);
    fo__seqmap_skip(e, 20, 30);                    /* a GAP further up */
    assert_int_equal(fo__seqmap_resume(e), 12);
    assert_true(fo__seqmap_seen(e, 25));
    for (uint64_t q = 12; q < 20; q++)
        fo__seqmap_mark(e, q);
    assert_int_equal(fo__seqmap_resume(e), 31);
    /* far beyond the window: the watermark is pushed along */
    fo__seqmap_mark(e, 31 + 1000);
    assert_int_equal(fo__seqmap_resume(e), 31 + 1000 - FO__SEQMAP_WINDOW + 1);
    assert_true(fo__seqmap_seen(e, 1031));
    assert_false(fo__seqmap_seen(e, 1030));
    /* holes more than a window behind are given up as the stream goes on */
    for (uint64_t q = 1032; q < 1032 + 5000; q++)
        fo__seqmap_mark(e, q);
    assert_int_equal(fo__seqmap_resume(e), 1032 + 5000);
    fo__seqmap_skip(e, 700, 1030);                 /* old news: no change */
    assert_int_equal(fo__seqmap_resume(e), 1032 + 5000);
    /* random order within the window always ends exact */
    fo__seqmap_ent_t *f = fo__seqmap_get(&m, "u", 1);
    srand(5);
    uint64_t perm[200];
    for (int i = 0; i < 200; i++)
        perm[i] = 1000 + (uint64_t)i;
    for (int i = 199; i > 0; i--) {
        int j = rand() % (i + 1);
        uint64_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    fo__seqmap_mark(f, 999);
    for (int i = 0; i < 200; i++) {
        assert_false(fo__seqmap_seen(f, perm[i]));
        fo__seqmap_mark(f, perm[i]);
        assert_true(fo__seqmap_seen(f, perm[i]));
    }
    assert_int_equal(fo__seqmap_resume(f), 1200);
    fo__seqmap_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deliver_peek_agrees_with_protobuf_c),
        cmocka_unit_test(test_deliver_peek_shared_prefix),
        cmocka_unit_test(test_publish_pack_matches_protobuf_c),
        cmocka_unit_test(test_seqmap),
        cmocka_unit_test(test_seqmap_watermark),
        cmocka_unit_test(test_msgq_fifo_and_bound),
        cmocka_unit_test(test_addr_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
