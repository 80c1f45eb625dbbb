/* test_frame.c -- the frame codec: framing, limits, unpacking, encoders,
 * and the zero-copy PUBLISH and DELIVER views (the DELIVER one against the
 * bodies the broker's msg.c encodes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "frame.h"
#include "msg.h"

static fo_mem_t mem;          /* no limit: for the broker-encoded bodies */

static size_t encode_publish(uint8_t *out, const char *topic,
                             const void *payload, size_t plen, uint64_t req)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Publish p = FANOUT__PUBLISH__INIT;
    p.topic = (char *)topic;
    p.has_payload = 1;
    p.payload.data = (uint8_t *)payload;
    p.payload.len = plen;
    f.body_case = FANOUT__FRAME__BODY_PUBLISH;
    f.publish = &p;
    if (req) {
        f.has_req = 1;
        f.req = req;
    }
    return fo_frame_pack(&f, out);
}

/* Corrupt a few bytes of a frame body, and maybe cut it short. */
static void corrupt(uint8_t *body, size_t *len)
{
    for (int k = 0; k < 1 + rand() % 3; k++)
        body[rand() % *len] = (uint8_t)rand();
    if (rand() % 4 == 0)
        *len = (size_t)rand() % *len + 1;
}

/* A random topic (1..20 letters) and payload (0..59 bytes): its length. */
static int random_msg(char topic[32], char payload[64])
{
    int tl = 1 + rand() % 20, pl = rand() % 60;
    for (int i = 0; i < tl; i++)
        topic[i] = (char)('a' + rand() % 26);
    topic[tl] = 0;
    for (int i = 0; i < pl; i++)
        payload[i] = (char)rand();
    return pl;
}

/* A DELIVER view reads what protobuf-c decodes from the same body. */
static void assert_view_matches(const fo_deliver_view_t *v, const Fanout__Frame *f)
{
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
    const Fanout__Deliver *d = f->deliver;
    assert_non_null(d->topic);
    assert_int_equal(strlen(d->topic), v->topic_len);
    assert_memory_equal(d->topic, v->topic, v->topic_len);
    assert_int_equal(d->payload.len, v->payload_len);
    if (v->payload_len)
        assert_memory_equal(d->payload.data, v->payload, v->payload_len);
    assert_true(v->seq == (d->has_seq ? d->seq : 0));
    assert_true(v->time_ns == (d->has_time_ns ? d->time_ns : 0));
    assert_int_equal(v->replay, d->has_replay && d->replay);
    assert_true(v->sid == (f->has_sid ? f->sid : 0));
}

static void test_roundtrip_every_frame(void **state)
{
    (void)state;
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 4096, 0), FO_OK);
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1; h.version = 1; h.client_name = "t";
    Fanout__Welcome w = FANOUT__WELCOME__INIT;
    w.has_max_frame = 1; w.max_frame = 1234;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1; s.sid = 7; s.filter = "a.*.>";
    Fanout__Unsubscribe u = FANOUT__UNSUBSCRIBE__INIT;
    u.has_sid = 1; u.sid = 7;
    Fanout__Deliver d = FANOUT__DELIVER__INIT;
    d.topic = "a.b"; d.has_seq = 1; d.seq = 99;
    Fanout__Ack ack = FANOUT__ACK__INIT;
    ack.has_ref = 1; ack.ref = 5;
    Fanout__Ping pi = FANOUT__PING__INIT;
    Fanout__Pong po = FANOUT__PONG__INIT;
    Fanout__Error e = FANOUT__ERROR__INIT;
    e.has_code = 1; e.code = FANOUT__ERROR_CODE__ERR_BAD_FRAME; e.text = "x";
    Fanout__Gap g = FANOUT__GAP__INIT;
    g.topic = "a"; g.has_first = 1; g.first = 3; g.has_last = 1; g.last = 9;
    Fanout__Repair r = FANOUT__REPAIR__INIT;
    r.topic = "a"; r.has_first = 1; r.first = 1;
    Fanout__Publish p = FANOUT__PUBLISH__INIT;
    p.topic = "x";
    struct { int c; void *m; } cases[] = {
        {FANOUT__FRAME__BODY_HELLO, &h}, {FANOUT__FRAME__BODY_WELCOME, &w},
        {FANOUT__FRAME__BODY_PUBLISH, &p}, {FANOUT__FRAME__BODY_SUBSCRIBE, &s},
        {FANOUT__FRAME__BODY_UNSUBSCRIBE, &u}, {FANOUT__FRAME__BODY_DELIVER, &d},
        {FANOUT__FRAME__BODY_ACK, &ack}, {FANOUT__FRAME__BODY_PING, &pi},
        {FANOUT__FRAME__BODY_PONG, &po}, {FANOUT__FRAME__BODY_ERROR, &e},
        {FANOUT__FRAME__BODY_GAP, &g}, {FANOUT__FRAME__BODY_REPAIR, &r},
    };
    fo_decoder_t dec;
    fo_decoder_init(&dec, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Fanout__Frame f = FANOUT__FRAME__INIT;
        f.body_case = cases[i].c;
        f.hello = cases[i].m;   /* union member: any pointer works */
        fo_buf_t b = FO_BUF_INIT;
        assert_int_equal(fo_frame_append(&b, &f), FO_OK);
        assert_int_equal(fo_buf_len(&b), fo_frame_size(&f));
        assert_int_equal(fo_decoder_feed(&dec, fo_buf_head(&b), fo_buf_len(&b)), FO_OK);
        fo_buf_free(&b);
        const uint8_t *body; size_t len;
        assert_int_equal(fo_decoder_next(&dec, &body, &len), FO_OK);
        Fanout__Frame *out;
        assert_int_equal(fo_frame_unpack(body, len, &a, &out), FO_OK);
        assert_int_equal(out->body_case, cases[i].c);
        assert_int_equal(fo_decoder_next(&dec, &body, &len), FO_ERR_AGAIN);
    }
    assert_int_equal(fo_decoder_finish(&dec), FO_OK);
    fo_decoder_destroy(&dec);
    fo_arena_destroy(&a);
}

static void test_one_byte_at_a_time(void **state)
{
    (void)state;
    uint8_t wire[256];
    size_t n = encode_publish(wire, "t.one", "hello", 5, 0);
    fo_decoder_t dec;
    fo_decoder_init(&dec, 0);
    const uint8_t *body; size_t len;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(fo_decoder_next(&dec, &body, &len), FO_ERR_AGAIN);
        assert_true(fo_decoder_want(&dec) >= 1);
        assert_int_equal(fo_decoder_feed(&dec, wire + i, 1), FO_OK);
        if (i + 1 < n)
            assert_int_equal(fo_decoder_finish(&dec), FO_ERR_TRUNCATED);
    }
    assert_int_equal(fo_decoder_next(&dec, &body, &len), FO_OK);
    assert_int_equal(len, n - 4);
    assert_memory_equal(body, wire + 4, len);
    fo_decoder_destroy(&dec);
}

static void test_many_frames_in_one_read(void **state)
{
    (void)state;
    enum { N = 500 };
    uint8_t *wire = malloc(N * 64);
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        char payload[16];
        int pl = snprintf(payload, sizeof payload, "m%d", i);
        n += encode_publish(wire + n, "many", payload, (size_t)pl, (uint64_t)i + 1);
    }
    fo_decoder_t dec;
    fo_decoder_init(&dec, 0);
    assert_int_equal(fo_decoder_feed(&dec, wire, n), FO_OK);
    const uint8_t *body; size_t len;
    for (int i = 0; i < N; i++) {
        assert_int_equal(fo_decoder_next(&dec, &body, &len), FO_OK);
        fo_publish_view_t v;
        assert_int_equal(fo_publish_peek(body, len, &v), FO_OK);
        assert_int_equal(v.req, (uint64_t)i + 1);
    }
    assert_int_equal(fo_decoder_next(&dec, &body, &len), FO_ERR_AGAIN);
    assert_int_equal(dec.frames, N);
    fo_decoder_destroy(&dec);
    free(wire);
}

static void test_zero_length_rejected(void **state)
{
    (void)state;
    fo_decoder_t dec;
    fo_decoder_init(&dec, 0);
    uint8_t hdr[4] = {0, 0, 0, 0};
    assert_int_equal(fo_decoder_feed(&dec, hdr, 4), FO_OK);
    const uint8_t *body; size_t len = 99;
    assert_int_equal(fo_decoder_next(&dec, &body, &len), FO_ERR_FRAME_SIZE);
    assert_int_equal(len, 0);
    fo_decoder_destroy(&dec);
}

static void test_over_limit_rejected_before_allocating(void **state)
{
    (void)state;
    fo_decoder_t dec;
    fo_decoder_init(&dec, 1024);
    uint8_t hdr[4];
    fo_be32_put(hdr, 0xffffffffu);
    assert_int_equal(fo_decoder_feed(&dec, hdr, 4), FO_OK);
    size_t cap_before = dec.buf.cap;
    const uint8_t *body; size_t len;
    assert_int_equal(fo_decoder_next(&dec, &body, &len), FO_ERR_FRAME_SIZE);
    assert_int_equal(len, 0xffffffffu);
    assert_int_equal(fo_decoder_want(&dec), 1);   /* does not ask for 4 GiB */
    assert_int_equal(dec.buf.cap, cap_before);
    assert_true(dec.buf.cap < 1024);
    /* exactly at the limit is fine, one above is not */
    fo_decoder_t d2;
    fo_decoder_init(&d2, 1024);
    fo_be32_put(hdr, 1025);
    assert_int_equal(fo_decoder_feed(&d2, hdr, 4), FO_OK);
    assert_int_equal(fo_decoder_next(&d2, &body, &len), FO_ERR_FRAME_SIZE);
    fo_decoder_destroy(&d2);
    fo_decoder_init(&d2, 1024);
    fo_be32_put(hdr, 1024);
    assert_int_equal(fo_decoder_feed(&d2, hdr, 4), FO_OK);
    assert_int_equal(fo_decoder_next(&d2, &body, &len), FO_ERR_AGAIN);
    assert_int_equal(fo_decoder_want(&d2), 1024);
    fo_decoder_destroy(&d2);
    fo_decoder_destroy(&dec);
}

static void test_truncated_stream(void **state)
{
    (void)state;
    uint8_t wire[64];
    size_t n = encode_publish(wire, "t", "abc", 3, 0);
    fo_decoder_t dec;
    fo_decoder_init(&dec, 0);
    assert_int_equal(fo_decoder_finish(&dec), FO_OK);
    assert_int_equal(fo_decoder_feed(&dec, wire, 2), FO_OK); /* inside the header */
    assert_int_equal(fo_decoder_finish(&dec), FO_ERR_TRUNCATED);
    assert_int_equal(fo_decoder_feed(&dec, wire + 2, n - 3), FO_OK); /* inside the body */
    assert_int_equal(fo_decoder_finish(&dec), FO_ERR_TRUNCATED);
    assert_int_equal(fo_decoder_feed(&dec, wire + n - 1, 1), FO_OK);
    const uint8_t *body; size_t len;
    assert_int_equal(fo_decoder_next(&dec, &body, &len), FO_OK);
    assert_int_equal(fo_decoder_finish(&dec), FO_OK);
    fo_decoder_destroy(&dec);
}

static void test_garbage_does_not_unpack(void **state)
{
    (void)state;
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 1024, 0), FO_OK);
    Fanout__Frame *f;
    const uint8_t bad1[] = {0xff, 0xff, 0xff};          /* bad key varint */
    const uint8_t bad2[] = {0x1a, 0x10, 0x0a};          /* length past end */
    const uint8_t bad3[] = {0x1a, 0x02, 0x0a, 0x05};    /* nested past end */
    assert_int_equal(fo_frame_unpack(bad1, sizeof bad1, &a, &f), FO_ERR_BAD_FRAME);
    assert_int_equal(fo_frame_unpack(bad2, sizeof bad2, &a, &f), FO_ERR_BAD_FRAME);
    assert_int_equal(fo_frame_unpack(bad3, sizeof bad3, &a, &f), FO_ERR_BAD_FRAME);
    fo_publish_view_t v;
    assert_int_equal(fo_publish_peek(bad1, sizeof bad1, &v), FO_ERR_BAD_FRAME);
    assert_int_equal(fo_publish_peek(bad2, sizeof bad2, &v), FO_ERR_BAD_FRAME);
    assert_int_equal(fo_publish_peek(bad3, sizeof bad3, &v), FO_ERR_BAD_FRAME);
    /* An unknown field number unpacks (it is kept as unknown) with no body. */
    const uint8_t unknown[] = {0x68, 0x01};             /* field 13 varint 1 */
    assert_int_equal(fo_frame_unpack(unknown, sizeof unknown, &a, &f), FO_OK);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY__NOT_SET);
    fo_arena_destroy(&a);
}

/* Unpacking a steady stream of frames does no malloc after warm-up. */
static void test_unpack_uses_arena_only(void **state)
{
    (void)state;
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 2048, 1 << 20), FO_OK);
    uint8_t wire[8192];
    char payload[4096];
    memset(payload, 'p', sizeof payload);
    size_t n = encode_publish(wire, "arena.topic", payload, sizeof payload, 3);
    Fanout__Frame *f;
    /* first batch may grow the arena once */
    for (int i = 0; i < 4; i++)
        assert_int_equal(fo_frame_unpack(wire + 4, n - 4, &a, &f), FO_OK);
    fo_arena_reset(&a);
    size_t mallocs = a.mallocs;
    for (int batch = 0; batch < 100; batch++) {
        for (int i = 0; i < 4; i++) {
            assert_int_equal(fo_frame_unpack(wire + 4, n - 4, &a, &f), FO_OK);
            assert_int_equal(f->publish->payload.len, sizeof payload);
            assert_string_equal(f->publish->topic, "arena.topic");
        }
        fo_arena_reset(&a);
    }
    assert_int_equal(a.mallocs, mallocs);
    fo_arena_destroy(&a);
}

static void test_deliver_shared_and_prefix(void **state)
{
    (void)state;
    uint8_t shared[128];
    fo_deliver_fields_t df = { .topic = "prices.eur", .topic_len = 10, .seq = 123456789,
                               .time_ns = 55, .payload = "42.0", .payload_len = 4 };
    size_t sn = fo_deliver_shared_len(&df);
    assert_int_equal(fo_deliver_write_shared(shared, &df), sn);
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 1024, 0), FO_OK);
    uint32_t sids[] = {1, 127, 128, 300000, UINT32_MAX};
    for (size_t i = 0; i < 5; i++) {
        uint8_t wire[256];
        size_t pn = fo_deliver_prefix(wire, sids[i], sn);
        assert_true(pn <= FO_DELIVER_PREFIX_MAX);
        memcpy(wire + pn, shared, sn);
        fo_decoder_t dec;
        fo_decoder_init(&dec, 0);
        assert_int_equal(fo_decoder_feed(&dec, wire, pn + sn), FO_OK);
        const uint8_t *body; size_t len;
        assert_int_equal(fo_decoder_next(&dec, &body, &len), FO_OK);
        assert_int_equal(len, pn + sn - 4);
        Fanout__Frame *f;
        assert_int_equal(fo_frame_unpack(body, len, &a, &f), FO_OK);
        assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
        assert_true(f->has_sid);
        assert_int_equal(f->sid, sids[i]);
        assert_string_equal(f->deliver->topic, "prices.eur");
        assert_int_equal(f->deliver->seq, 123456789);
        assert_memory_equal(f->deliver->payload.data, "42.0", 4);
        fo_decoder_destroy(&dec);
    }
    fo_arena_destroy(&a);
}

static void test_pack_iov(void **state)
{
    (void)state;
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Ping p = FANOUT__PING__INIT;
    p.has_nonce = 1; p.nonce = 77;
    f.body_case = FANOUT__FRAME__BODY_PING;
    f.ping = &p;
    uint8_t hdr[4], body[64], tiny[1];
    struct iovec iov[2];
    assert_int_equal(fo_frame_pack_iov(&f, hdr, tiny, 1, iov), FO_ERR_RANGE);
    assert_int_equal(fo_frame_pack_iov(&f, hdr, body, sizeof body, iov), FO_OK);
    assert_int_equal(iov[0].iov_len, 4);
    assert_int_equal(fo_be32_get(hdr), iov[1].iov_len);
    uint8_t flat[64];
    assert_int_equal(fo_frame_pack(&f, flat), 4 + iov[1].iov_len);
    assert_memory_equal(flat + 4, body, iov[1].iov_len);
}

static void test_varint(void **state)
{
    (void)state;
    uint64_t vals[] = {0, 1, 127, 128, 16383, 16384, UINT32_MAX, UINT64_MAX};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        uint8_t b[10];
        size_t n = fo_varint_put(b, vals[i]);
        assert_int_equal(n, fo_varint_len(vals[i]));
        uint64_t v;
        assert_int_equal(fo_varint_get(b, n, &v), n);
        assert_true(v == vals[i]);
        if (n > 1)
            assert_int_equal(fo_varint_get(b, n - 1, &v), 0);   /* truncated */
    }
    /* word-at-a-time decoding agrees with the byte loop, any length/offset */
    srand(99);
    for (int iter = 0; iter < 200000; iter++) {
        uint64_t x = (uint64_t)rand() << 33 ^ (uint64_t)rand() << 11 ^ (uint64_t)rand();
        x >>= rand() % 64;
        uint8_t b[24];
        memset(b, rand() & 0xff, sizeof b);
        size_t n = fo_varint_put(b + 3, x);
        uint64_t got;
        assert_int_equal(fo_varint_get(b + 3, n + (size_t)(rand() % 8), &got), n);
        assert_true(got == x);
        assert_int_equal(fo_varint_get(b + 3, n - 1, &got), n == 1 ? 0 : 0);
    }
    uint8_t over[11];
    memset(over, 0xff, sizeof over);
    uint64_t v;
    assert_int_equal(fo_varint_get(over, sizeof over, &v), 0);  /* > 64 bits */
}

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
    assert_int_equal(fo_arena_init(&a, 4096, 0), FO_OK);
    srand(4242);
    uint8_t wire[512];
    int ok_seen = 0, fallback_seen = 0, bad_seen = 0;
    for (int iter = 0; iter < 30000; iter++) {
        char topic[32], payload[64];
        int pl = random_msg(topic, payload);
        size_t n = encode_deliver(wire, (uint32_t)(rand() % 4 ? rand() : 0), topic,
                                  payload, (size_t)pl, (uint64_t)rand() * (uint64_t)rand(),
                                  rand() % 2 ? (uint64_t)rand() << 20 : 0, rand() % 5 == 0,
                                  rand() % 7 == 0);
        uint8_t *body = wire + 4;
        size_t len = n - 4;
        if (iter % 2)
            corrupt(body, &len);
        fo_deliver_view_t v;
        fo_err_t pe = fo_deliver_peek(body, len, &v);
        Fanout__Frame *f = NULL;
        fo_err_t ue = fo_frame_unpack(body, len, &a, &f);
        if (pe == FO_OK) {
            ok_seen++;
            assert_int_equal(ue, FO_OK);
            assert_view_matches(&v, f);
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
    fo_deliver_fields_t df = { .topic = "x.y", .topic_len = 3, .seq = 300,
                               .payload = "hi", .payload_len = 2 };
    size_t sl = fo_deliver_write_shared(shared, &df);
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

/* The zero-copy PUBLISH view agrees with protobuf-c on whatever it accepts,
 * for valid frames and for randomly corrupted ones. */
static void test_publish_peek_agrees_with_protobuf_c(void **state)
{
    (void)state;
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 4096, 0), FO_OK);
    srand(12345);
    uint8_t wire[512];
    int ok_seen = 0, fallback_seen = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char topic[32], payload[64];
        int pl = random_msg(topic, payload);
        size_t n = encode_publish(wire, topic, payload, (size_t)pl,
                                  (uint64_t)(rand() % 3 ? 0 : rand()));
        uint8_t *body = wire + 4;
        size_t len = n - 4;
        if (iter % 2)
            corrupt(body, &len);
        fo_publish_view_t v;
        fo_err_t pe = fo_publish_peek(body, len, &v);
        Fanout__Frame *f = NULL;
        fo_err_t ue = fo_frame_unpack(body, len, &a, &f);
        if (pe == FO_OK) {
            ok_seen++;
            assert_int_equal(ue, FO_OK);
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_PUBLISH);
            assert_non_null(f->publish->topic);
            /* protobuf-c strings stop at an embedded NUL; compare bytes */
            assert_int_equal(strlen(f->publish->topic),
                             strnlen(v.topic, v.topic_len));
            assert_memory_equal(f->publish->topic, v.topic, strlen(f->publish->topic));
            assert_int_equal(f->publish->payload.len, v.payload_len);
            if (v.payload_len)
                assert_memory_equal(f->publish->payload.data, v.payload, v.payload_len);
            assert_true(v.req == (f->has_req ? f->req : 0));
        } else if (pe == FO_ERR_BAD_FRAME) {
            assert_int_equal(ue, FO_ERR_BAD_FRAME);
        } else {
            fallback_seen++;
        }
        fo_arena_reset(&a);
    }
    assert_true(ok_seen > 10000);
    assert_true(fallback_seen > 0);
    fo_arena_destroy(&a);
}

/* The client's zero-copy DELIVER view reads exactly what the broker
 * writes (its canonical fast path), and agrees with protobuf-c on every
 * corrupted variant it still accepts. */
static void test_deliver_peek_on_broker_frames(void **state)
{
    (void)state;
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 4096, 0), FO_OK);
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
        if (mutated)
            corrupt(body, &len);
        fo_deliver_view_t v;
        fo_err_t pe = fo_deliver_peek(body, len, &v);
        Fanout__Frame *f = NULL;
        fo_err_t ue = fo_frame_unpack(body, len, &a, &f);
        if (!mutated)
            assert_int_equal(pe, FO_OK);
        if (pe == FO_OK) {
            fast += !mutated;
            assert_int_equal(ue, FO_OK);
            assert_view_matches(&v, f);
        }
        fo_msg_unref(m);
        fo_arena_reset(&a);
    }
    assert_int_equal(fast, 10000);
    fo_arena_destroy(&a);
}

/* Property: random frame sequences, cut at random boundaries, decode to
 * exactly the frames that were encoded, in order. */
static void test_property_random_cuts(void **state)
{
    (void)state;
    srand(777);
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 4096, 0), FO_OK);
    for (int round = 0; round < 200; round++) {
        int nframes = 1 + rand() % 60;
        fo_buf_t wire = FO_BUF_INIT;
        size_t *plens = calloc((size_t)nframes, sizeof *plens);
        for (int i = 0; i < nframes; i++) {
            size_t pl = (size_t)(rand() % 5 == 0 ? rand() % 5000 : rand() % 200);
            uint8_t *payload = malloc(pl + 1);
            for (size_t k = 0; k < pl; k++) payload[k] = (uint8_t)(i + k);
            Fanout__Frame f = FANOUT__FRAME__INIT;
            Fanout__Publish p = FANOUT__PUBLISH__INIT;
            char topic[32];
            snprintf(topic, sizeof topic, "r%d.f%d", round, i);
            p.topic = topic;
            p.has_payload = 1; p.payload.data = payload; p.payload.len = pl;
            f.body_case = FANOUT__FRAME__BODY_PUBLISH; f.publish = &p;
            f.has_req = 1; f.req = (uint64_t)i;
            assert_int_equal(fo_frame_append(&wire, &f), FO_OK);
            plens[i] = pl;
            free(payload);
        }
        fo_decoder_t dec;
        fo_decoder_init(&dec, 0);
        size_t off = 0, total = fo_buf_len(&wire);
        int got = 0;
        while (off < total || got < nframes) {
            size_t cut = (size_t)(rand() % 4 == 0 ? rand() % 3 : rand() % 3000);
            if (cut > total - off) cut = total - off;
            if (cut) {
                /* the zero-copy way: reserve, copy as a read would, commit */
                assert_int_equal(fo_buf_reserve(&dec.buf, cut), FO_OK);
                memcpy(fo_buf_tail(&dec.buf), fo_buf_head(&wire) + off, cut);
                fo_buf_commit(&dec.buf, cut);
                off += cut;
            }
            const uint8_t *body; size_t len;
            fo_err_t e;
            while ((e = fo_decoder_next(&dec, &body, &len)) == FO_OK) {
                Fanout__Frame *f;
                assert_int_equal(fo_frame_unpack(body, len, &a, &f), FO_OK);
                assert_int_equal(f->req, (uint64_t)got);
                assert_int_equal(f->publish->payload.len, plens[got]);
                for (size_t k = 0; k < plens[got]; k++)
                    assert_int_equal(f->publish->payload.data[k], (uint8_t)(got + k));
                got++;
            }
            assert_int_equal(e, FO_ERR_AGAIN);
            fo_arena_reset(&a);
            if (off == total)
                break;
        }
        assert_int_equal(got, nframes);
        assert_int_equal(fo_decoder_finish(&dec), FO_OK);
        fo_decoder_destroy(&dec);
        fo_buf_free(&wire);
        free(plens);
    }
    fo_arena_destroy(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_frame),
        cmocka_unit_test(test_one_byte_at_a_time),
        cmocka_unit_test(test_many_frames_in_one_read),
        cmocka_unit_test(test_zero_length_rejected),
        cmocka_unit_test(test_over_limit_rejected_before_allocating),
        cmocka_unit_test(test_truncated_stream),
        cmocka_unit_test(test_garbage_does_not_unpack),
        cmocka_unit_test(test_unpack_uses_arena_only),
        cmocka_unit_test(test_deliver_shared_and_prefix),
        cmocka_unit_test(test_pack_iov),
        cmocka_unit_test(test_varint),
        cmocka_unit_test(test_publish_peek_agrees_with_protobuf_c),
        cmocka_unit_test(test_deliver_peek_on_broker_frames),
        cmocka_unit_test(test_deliver_peek_agrees_with_protobuf_c),
        cmocka_unit_test(test_deliver_peek_shared_prefix),
        cmocka_unit_test(test_publish_pack_matches_protobuf_c),
        cmocka_unit_test(test_property_random_cuts),
    };
    return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
