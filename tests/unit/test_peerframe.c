/* test_peerframe.c -- broker/peerframe.c: the peer protocol's codec.
 * Round trips of every member, the checks of what each needs, the
 * zero-copy PeerDeliver head against protobuf-c, and a fuzz loop: random
 * mutations of valid frames never crash the unpacker (run under ASan in
 * CI) and anything it accepts passes the member checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "frame.h"
#include "peerframe.h"

static fo_arena_t arena;

static int setup(void **state)
{
    (void)state;
    return fo_arena_init(&arena, 4096, 0) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    fo_arena_destroy(&arena);
    return 0;
}

/* Pack f, cut it with the decoder, unpack: the result (arena). */
static fo_err_t roundtrip(const Fanout__PeerFrame *f, Fanout__PeerFrame **out)
{
    fo_buf_t b = FO_BUF_INIT;
    assert_int_equal(fo_peer_frame_append(&b, f), FO_OK);
    fo_decoder_t d;
    fo_decoder_init(&d, 1u << 20);
    assert_int_equal(fo_decoder_feed(&d, fo_buf_head(&b), fo_buf_len(&b)), FO_OK);
    const uint8_t *body;
    size_t len;
    assert_int_equal(fo_decoder_next(&d, &body, &len), FO_OK);
    fo_err_t e = fo_peer_frame_unpack(body, len, &arena, out);
    fo_decoder_destroy(&d);
    fo_buf_free(&b);
    return e;
}

static uint8_t nonce[FO_PEER_NONCE], mac[FO_PEER_MAC];

static void test_members(void **state)
{
    (void)state;
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT, *g;
    Fanout__PeerHello h = FANOUT__PEER_HELLO__INIT;
    h.has_version = 1;
    h.version = FO_PEER_VERSION;
    h.node_id = "broker-1";
    h.has_nonce = 1;
    h.nonce = (ProtobufCBinaryData){ sizeof nonce, nonce };
    h.client_addr = "10.0.0.1:7400";
    f.body_case = FANOUT__PEER_FRAME__BODY_HELLO;
    f.hello = &h;
    assert_int_equal(roundtrip(&f, &g), FO_OK);
    assert_string_equal(g->hello->node_id, "broker-1");
    assert_string_equal(g->hello->client_addr, "10.0.0.1:7400");
    h.nonce.len = 31;                                      /* short challenge */
    assert_int_equal(roundtrip(&f, &g), FO_ERR_PROTO);
    h.nonce.len = sizeof nonce;
    h.node_id = "";
    assert_int_equal(roundtrip(&f, &g), FO_ERR_PROTO);
    h.node_id = "x";

    Fanout__PeerAuth a = FANOUT__PEER_AUTH__INIT;
    a.has_mac = 1;
    a.mac = (ProtobufCBinaryData){ sizeof mac, mac };
    f.body_case = FANOUT__PEER_FRAME__BODY_AUTH;
    f.auth = &a;
    assert_int_equal(roundtrip(&f, &g), FO_OK);
    a.has_mac = 0;
    assert_int_equal(roundtrip(&f, &g), FO_ERR_PROTO);

    Fanout__PeerInterest in = FANOUT__PEER_INTEREST__INIT;
    in.has_seq = in.has_op = in.has_id = 1;
    in.seq = 1;
    in.op = FANOUT__PEER_INTEREST__OP__ADD;
    in.id = 7;
    f.body_case = FANOUT__PEER_FRAME__BODY_INTEREST;
    f.interest = &in;
    assert_int_equal(roundtrip(&f, &g), FO_ERR_PROTO);     /* ADD without a filter */
    in.filter = "orders.>";
    in.queue = "workers";
    assert_int_equal(roundtrip(&f, &g), FO_OK);
    assert_string_equal(g->interest->filter, "orders.>");
    assert_string_equal(g->interest->queue, "workers");
    in.op = FANOUT__PEER_INTEREST__OP__DEL;
    in.filter = in.queue = NULL;
    assert_int_equal(roundtrip(&f, &g), FO_OK);
    in.has_seq = 0;
    assert_int_equal(roundtrip(&f, &g), FO_ERR_PROTO);

    Fanout__PeerGap gp = FANOUT__PEER_GAP__INIT;
    gp.topic = "a";
    gp.has_first = gp.has_last = 1;
    gp.first = 5;
    gp.last = 4;
    f.body_case = FANOUT__PEER_FRAME__BODY_GAP;
    f.gap = &gp;
    assert_int_equal(roundtrip(&f, &g), FO_ERR_PROTO);
    gp.last = 9;
    assert_int_equal(roundtrip(&f, &g), FO_OK);

    /* no member: an empty frame (length 0) never gets past the decoder,
     * and unknown fields alone are no member either */
    static const uint8_t unknown[] = { 0x78, 0x01 };      /* field 15, varint */
    assert_int_equal(fo_peer_frame_unpack(unknown, sizeof unknown, &arena, &g), FO_ERR_PROTO);
    fo_arena_reset(&arena);
}

/* head + body is the PeerDeliver protobuf-c packs, byte for byte. */
static void test_deliver_head(void **state)
{
    (void)state;
    static const char *const queues[] = { NULL, "workers" };
    for (size_t qi = 0; qi < 2; qi++)
        for (size_t n = 1; n < 70000; n = n * 3 + 1) {
            uint8_t *body = malloc(n);
            assert_non_null(body);
            for (size_t i = 0; i < n; i++)
                body[i] = (uint8_t)(i * 7);
            uint8_t head[FO_PEER_HEAD_MAX];
            const char *q = queues[qi], *fl = q ? "jobs.*" : NULL;
            size_t hl = fo_peer_deliver_head(head, q, fl, n);
            assert_true(hl > 0);
            Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
            Fanout__PeerDeliver d = FANOUT__PEER_DELIVER__INIT;
            d.queue = (char *)q;
            d.filter = (char *)fl;
            d.has_body = 1;
            d.body = (ProtobufCBinaryData){ n, body };
            f.body_case = FANOUT__PEER_FRAME__BODY_DELIVER;
            f.deliver = &d;
            fo_buf_t b = FO_BUF_INIT;
            assert_int_equal(fo_peer_frame_append(&b, &f), FO_OK);
            assert_int_equal(fo_buf_len(&b), hl + n);
            assert_memory_equal(fo_buf_head(&b), head, hl);
            assert_memory_equal(fo_buf_head(&b) + hl, body, n);
            fo_buf_free(&b);
            free(body);
        }
}

/* Mutations of valid frames: never a crash, and what unpacks is whole. */
static void test_fuzz(void **state)
{
    (void)state;
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerInterest in = FANOUT__PEER_INTEREST__INIT;
    in.has_seq = in.has_op = in.has_id = 1;
    in.seq = 3;
    in.id = 9;
    in.filter = "a.*.c";
    in.queue = "q";
    f.body_case = FANOUT__PEER_FRAME__BODY_INTEREST;
    f.interest = &in;
    fo_buf_t seeds[3] = { FO_BUF_INIT, FO_BUF_INIT, FO_BUF_INIT };
    assert_int_equal(fo_peer_frame_append(&seeds[0], &f), FO_OK);
    uint8_t head[FO_PEER_HEAD_MAX], body[40] = { 0x32, 5, 0x0a, 1, 'x', 0x10, 1 };
    size_t hl = fo_peer_deliver_head(head, "g", "x", sizeof body);
    assert_int_equal(fo_buf_append(&seeds[1], head, hl), FO_OK);
    assert_int_equal(fo_buf_append(&seeds[1], body, sizeof body), FO_OK);
    Fanout__PeerHello h = FANOUT__PEER_HELLO__INIT;
    h.has_version = h.has_nonce = 1;
    h.version = 1;
    h.node_id = "n";
    h.nonce = (ProtobufCBinaryData){ sizeof nonce, nonce };
    f.body_case = FANOUT__PEER_FRAME__BODY_HELLO;
    f.hello = &h;
    assert_int_equal(fo_peer_frame_append(&seeds[2], &f), FO_OK);
    srand(16);
    uint8_t buf[256];
    int accepted = 0;
    for (int round = 0; round < 200000; round++) {
        const fo_buf_t *s = &seeds[round % 3];
        size_t n = fo_buf_len(s) - FO_FRAME_HDR;
        memcpy(buf, fo_buf_head(s) + FO_FRAME_HDR, n);
        int flips = 1 + rand() % 4;
        for (int k = 0; k < flips; k++)
            buf[rand() % n] ^= (uint8_t)(1u << (rand() % 8));
        if (rand() % 4 == 0)
            n = (size_t)rand() % n + 1;                  /* truncated */
        Fanout__PeerFrame *g;
        if (fo_peer_frame_unpack(buf, n, &arena, &g) == FO_OK) {
            accepted++;
            assert_int_not_equal(g->body_case, FANOUT__PEER_FRAME__BODY__NOT_SET);
        }
        fo_arena_reset(&arena);
    }
    assert_true(accepted > 0);                           /* some flips are harmless */
    for (int i = 0; i < 3; i++)
        fo_buf_free(&seeds[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_deliver_head),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
