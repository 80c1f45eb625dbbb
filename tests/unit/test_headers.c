/* test_headers.c -- reply addresses and headers on the client's side of
 * the codec and in its queues: the DELIVER view (fo_deliver_peek with
 * fo_deliver_header_next) reads fanoutd's layout with a reply and up to
 * 32 headers exactly as protobuf-c does, also on corrupted variants; the
 * reader's conversion into fo_header_t (fo__client_view_headers); the
 * fo_sub_next queue (msgq.c) keeps reply and headers byte for byte;
 * fo_msg_header finds a key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../../client/client_int.h"
#include "../../client/msgq.h"

/* A random DELIVER with a reply address (sometimes) and n headers, as the
 * broker writes it (prefix + shared body). Returns the frame length. */
static size_t broker_deliver(uint8_t *wire, int with_reply, size_t n, Fanout__Header *hs,
                             Fanout__Header **hp, char keys[][FO_HEADER_KEY_MAX + 1],
                             uint8_t vals[][48])
{
    static uint8_t shared[16384];
    static char topic[40], reply[80], payload[64];
    int tl = snprintf(topic, sizeof topic, "t%d.x%d", rand() % 1000, rand());
    snprintf(reply, sizeof reply, "_INBOX.%032x.%d", rand(), rand());
    size_t pl = (size_t)(rand() % (int)sizeof payload);
    for (size_t k = 0; k < pl; k++)
        payload[k] = (char)rand();
    for (size_t i = 0; i < n; i++) {
        size_t kl = 1 + (size_t)rand() % FO_HEADER_KEY_MAX;
        for (size_t k = 0; k < kl; k++)
            keys[i][k] = (char)(0x21 + rand() % (0x7f - 0x21));
        keys[i][kl] = 0;
        size_t vl = (size_t)rand() % 48;
        for (size_t k = 0; k < vl; k++)
            vals[i][k] = (uint8_t)rand();   /* binary, NUL bytes included */
        fanout__header__init(&hs[i]);
        hs[i].key = keys[i];
        hs[i].has_value = rand() % 8 != 0;  /* sometimes no value at all */
        hs[i].value.data = vals[i];
        hs[i].value.len = hs[i].has_value ? vl : 0;
        hp[i] = &hs[i];
    }
    fo_deliver_fields_t f = { .topic = topic, .topic_len = (size_t)tl,
                              .seq = (uint64_t)rand(), .time_ns = (uint64_t)rand() << 20,
                              .replay = rand() % 5 == 0, .payload = payload, .payload_len = pl,
                              .reply = with_reply ? reply : NULL,
                              .reply_len = with_reply ? strlen(reply) : 0,
                              .headers = n ? hp : NULL, .n_headers = n };
    size_t sl = fo_deliver_write_shared(shared, &f);
    size_t pn = fo_deliver_prefix(wire, (uint32_t)rand(), sl);
    memcpy(wire + pn, shared, sl);
    return pn + sl;
}

static void corrupt(uint8_t *b, size_t *len)
{
    switch (rand() % 3) {
    case 0: b[rand() % *len] ^= (uint8_t)(1u << (rand() % 8)); break;
    case 1: *len = (size_t)rand() % *len + 1; break;
    default: b[rand() % *len] = (uint8_t)rand(); break;
    }
}

/* The view (and the walk over its headers) says what protobuf-c says. */
static void assert_same(const fo_deliver_view_t *v, const Fanout__Frame *f, fo_arena_t *a)
{
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
    const Fanout__Deliver *d = f->deliver;
    assert_int_equal(v->sid, f->sid);
    assert_int_equal(v->topic_len, strlen(d->topic));
    assert_memory_equal(v->topic, d->topic, v->topic_len);
    assert_int_equal(v->payload_len, d->payload.len);
    if (v->payload_len)
        assert_memory_equal(v->payload, d->payload.data, v->payload_len);
    if (d->reply) {
        assert_non_null(v->reply);
        assert_int_equal(v->reply_len, strlen(d->reply));
        assert_memory_equal(v->reply, d->reply, v->reply_len);
    } else {
        assert_null(v->reply);
    }
    assert_int_equal(v->nheaders, d->n_headers);
    if (!v->nheaders)
        return;
    fo_header_t *hs = NULL;
    fo_err_t e = fo__client_view_headers(a, v, &hs);
    if (e == FO_ERR_AGAIN)
        return;                      /* the reader falls back to protobuf-c */
    assert_int_equal(e, FO_OK);
    for (size_t i = 0; i < d->n_headers; i++) {
        assert_string_equal(hs[i].key, d->headers[i]->key);
        assert_int_equal(hs[i].value_len, d->headers[i]->has_value ? d->headers[i]->value.len : 0);
        if (hs[i].value_len)
            assert_memory_equal(hs[i].value, d->headers[i]->value.data, hs[i].value_len);
        assert_non_null(hs[i].value);
    }
}

static void test_view_reads_broker_frames_with_extras(void **state)
{
    (void)state;
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 1 << 16, 0), FO_OK);
    srand(1313);
    static uint8_t wire[20000];
    static Fanout__Header hs[FO_HEADERS_MAX];
    static Fanout__Header *hp[FO_HEADERS_MAX];
    static char keys[FO_HEADERS_MAX][FO_HEADER_KEY_MAX + 1];
    static uint8_t vals[FO_HEADERS_MAX][48];
    int fast = 0, agreed = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = iter % 4 == 0 ? 0 : (size_t)(rand() % (FO_HEADERS_MAX + 1));
        if (iter % 97 == 0)
            n = FO_HEADERS_MAX;
        size_t len = broker_deliver(wire, rand() % 2, n, hs, hp, keys, vals) - 4;
        uint8_t *body = wire + 4;
        int mutated = iter % 2;
        if (mutated)
            corrupt(body, &len);
        fo_deliver_view_t v;
        fo_err_t pe = fo_deliver_peek(body, len, &v);
        Fanout__Frame *f = NULL;
        fo_err_t ue = fo_frame_unpack(body, len, &a, &f);
        if (!mutated)
            assert_int_equal(pe, FO_OK);   /* fanoutd's layout: always the view */
        fo_header_t *hs_out;
        if (pe == FO_OK && v.nheaders && fo__client_view_headers(&a, &v, &hs_out) == FO_ERR_AGAIN) {
            /* the headers' insides are the walk's to check: the reader
             * gives such a frame to protobuf-c, which decides */
            assert_true(mutated);
        } else if (pe == FO_OK) {
            fast += !mutated;
            assert_int_equal(ue, FO_OK);
            assert_same(&v, f, &a);
            agreed++;
        } else {
            assert_int_equal(pe, FO_ERR_AGAIN);
        }
        fo_arena_reset(&a);
    }
    assert_int_equal(fast, 10000);
    assert_true(agreed > 10000);
    fo_arena_destroy(&a);
}

/* Forms the walk does not take are left to protobuf-c, never misread. */
static void test_view_leaves_odd_headers_to_protobuf_c(void **state)
{
    (void)state;
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 4096, 0), FO_OK);
    uint8_t shared[512], wire[600];
    Fanout__Header h = FANOUT__HEADER__INIT, *hp = &h;
    fo_deliver_fields_t f = { .topic = "a.b", .topic_len = 3, .seq = 1, .payload = "x",
                              .payload_len = 1, .headers = &hp, .n_headers = 1 };
    /* a header without a key */
    h.has_value = 1;
    h.value.data = (uint8_t *)"v";
    h.value.len = 1;
    size_t sl = fo_deliver_write_shared(shared, &f);
    size_t pn = fo_deliver_prefix(wire, 3, sl);
    memcpy(wire + pn, shared, sl);
    fo_deliver_view_t v;
    assert_int_equal(fo_deliver_peek(wire + 4, pn + sl - 4, &v), FO_OK);
    assert_int_equal(v.nheaders, 1);
    size_t pos = 0, kl, vl;
    const uint8_t *k, *val;
    assert_int_equal(fo_deliver_header_next(&v, &pos, &k, &kl, &val, &vl), -1);
    fo_header_t *hs;
    assert_int_equal(fo__client_view_headers(&a, &v, &hs), FO_ERR_AGAIN);
    /* a reply address with a NUL in it: the whole frame falls back */
    f.headers = NULL;
    f.n_headers = 0;
    f.reply = "_INBOX.x\0y";
    f.reply_len = 10;
    sl = fo_deliver_write_shared(shared, &f);
    pn = fo_deliver_prefix(wire, 3, sl);
    memcpy(wire + pn, shared, sl);
    assert_int_equal(fo_deliver_peek(wire + 4, pn + sl - 4, &v), FO_ERR_AGAIN);
    /* a plain DELIVER: no reply, no headers */
    f.reply = NULL;
    f.reply_len = 0;
    sl = fo_deliver_write_shared(shared, &f);
    pn = fo_deliver_prefix(wire, 0, sl);
    memcpy(wire + pn, shared, sl);
    assert_int_equal(fo_deliver_peek(wire + 4, pn + sl - 4, &v), FO_OK);
    assert_null(v.reply);
    assert_int_equal(v.nheaders, 0);
    assert_int_equal(v.sid, 0);
    fo_arena_destroy(&a);
}

/* The fo_sub_next queue keeps reply and headers byte for byte. */
static void test_msgq_keeps_reply_and_headers(void **state)
{
    (void)state;
    fo__msgq_t q;
    fo__msgq_init(&q, 1 << 20);
    static fo_header_t hs[FO_HEADERS_MAX];
    static char keys[FO_HEADERS_MAX][8];
    static uint8_t vals[FO_HEADERS_MAX][4];
    for (int i = 0; i < FO_HEADERS_MAX; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        for (int k = 0; k < 4; k++)
            vals[i][k] = (uint8_t)(i * 4 + k);          /* 0x00 included */
        hs[i] = (fo_header_t){ keys[i], vals[i], (size_t)(i % 5 == 0 ? 0 : 4) };
    }
    fo_msg_t with = { "a.b", 3, "p", 1, 7, 9, 0, "_INBOX.abc.1", hs, FO_HEADERS_MAX };
    fo_msg_t plain = { "c.d", 3, "", 0, 8, 9, 1, NULL, NULL, 0 };
    fo_msg_t one = { "e", 1, "xy", 2, 9, 9, 0, NULL, hs + 1, 1 };
    for (int round = 0; round < 3; round++) {
        assert_int_equal(fo__msgq_push(&q, &with), FO_OK);
        assert_int_equal(fo__msgq_push(&q, &plain), FO_OK);
        assert_int_equal(fo__msgq_push(&q, &one), FO_OK);
        fo_msg_t out;
        assert_int_equal(fo__msgq_pop(&q, &out), FO_OK);
        assert_string_equal(out.topic, "a.b");
        assert_string_equal(out.reply, "_INBOX.abc.1");
        assert_int_equal(out.nheaders, FO_HEADERS_MAX);
        for (int i = 0; i < FO_HEADERS_MAX; i++) {
            assert_string_equal(out.headers[i].key, keys[i]);
            assert_int_equal(out.headers[i].value_len, hs[i].value_len);
            assert_memory_equal(out.headers[i].value, vals[i], hs[i].value_len);
        }
        assert_ptr_equal(fo_msg_header(&out, "k7"), &out.headers[7]);
        assert_null(fo_msg_header(&out, "k"));
        assert_int_equal(fo__msgq_pop(&q, &out), FO_OK);
        assert_string_equal(out.topic, "c.d");
        assert_null(out.reply);
        assert_null(out.headers);
        assert_int_equal(out.nheaders, 0);
        assert_int_equal(out.replay, 1);
        assert_null(fo_msg_header(&out, "k1"));
        assert_int_equal(fo__msgq_pop(&q, &out), FO_OK);
        assert_int_equal(out.nheaders, 1);
        assert_string_equal(out.headers[0].key, "k1");
        assert_memory_equal(out.payload, "xy", 2);
        assert_int_equal(fo__msgq_pop(&q, &out), FO_ERR_AGAIN);
    }
    fo__msgq_destroy(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_view_reads_broker_frames_with_extras),
        cmocka_unit_test(test_view_leaves_odd_headers_to_protobuf_c),
        cmocka_unit_test(test_msgq_keeps_reply_and_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
