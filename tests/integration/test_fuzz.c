/* test_fuzz.c -- a live fanoutd fed mutated frame streams.
 *
 * Deterministic (fixed seed): 1500 connections each send a valid session
 * (HELLO, SUBSCRIBE, PUBLISH..., REPAIR, UNSUBSCRIBE, PING) with random
 * mutations -- flipped bytes, cut frames, bogus lengths, duplicated or
 * dropped frames, raw garbage -- cut at random write boundaries. Some
 * subscribers never read. Afterwards the broker must still serve a healthy
 * client, and (under ASan/UBSan/TSan in CI) have done nothing undefined. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <cmocka.h>
#include "harness.h"

static uint32_t rnd_state;
static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

static void add(fo_buf_t *b, Fanout__Frame *f, uint64_t req)
{
    if (req) {
        f->has_req = 1;
        f->req = req;
    }
    assert_int_equal(fo_frame_append(b, f), FO_OK);
}

/* One valid session's bytes. */
static void session(fo_buf_t *b)
{
    static const char *filters[] = { "fz.a", "fz.*", "fz.>", ">", "fz.a.b", "*.a" };
    static const char *topics[] = { "fz.a", "fz.b", "fz.a.b", "x.a", "fz.c.d.e" };
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1; h.version = 1 + (rnd() % 8 == 0); h.client_name = "fuzz";
    f.body_case = FANOUT__FRAME__BODY_HELLO; f.hello = &h;
    add(b, &f, 0);
    int nsub = (int)(rnd() % 3);
    for (int i = 0; i < nsub; i++) {
        Fanout__Frame g = FANOUT__FRAME__INIT;
        Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
        s.has_sid = 1; s.sid = 1 + rnd() % 4;
        s.filter = (char *)filters[rnd() % 6];
        if (rnd() % 3 == 0) s.queue = "q";
        if (rnd() % 3 == 0) { s.has_start = 1; s.start = rnd() % 4; s.has_start_seq = rnd() % 2; s.start_seq = rnd() % 20; }
        if (rnd() % 3 == 0) { s.has_slow = 1; s.slow = rnd() % 4; }
        if (rnd() % 4 == 0) { s.has_delivery = 1; s.delivery = rnd() % 3; }
        g.body_case = FANOUT__FRAME__BODY_SUBSCRIBE; g.subscribe = &s;
        add(b, &g, rnd() % 2 ? rnd() : 0);
    }
    int npub = (int)(rnd() % 30);
    uint8_t payload[300];
    for (int i = 0; i < npub; i++) {
        size_t pl = rnd() % sizeof payload;
        for (size_t k = 0; k < pl; k++) payload[k] = (uint8_t)rnd();
        Fanout__Frame g = FANOUT__FRAME__INIT;
        Fanout__Publish p = FANOUT__PUBLISH__INIT;
        p.topic = (char *)topics[rnd() % 5];
        p.has_payload = 1; p.payload.data = payload; p.payload.len = pl;
        g.body_case = FANOUT__FRAME__BODY_PUBLISH; g.publish = &p;
        add(b, &g, rnd() % 4 == 0 ? rnd() : 0);
    }
    Fanout__Frame g = FANOUT__FRAME__INIT;
    Fanout__Repair r = FANOUT__REPAIR__INIT;
    r.has_sid = 1; r.sid = 1 + rnd() % 4; r.topic = (char *)topics[rnd() % 5];
    r.has_first = 1; r.first = rnd() % 40; r.has_last = rnd() % 2; r.last = rnd() % 200000;
    g.body_case = FANOUT__FRAME__BODY_REPAIR; g.repair = &r;
    add(b, &g, rnd());
    Fanout__Frame u = FANOUT__FRAME__INIT;
    Fanout__Unsubscribe us = FANOUT__UNSUBSCRIBE__INIT;
    us.has_sid = 1; us.sid = rnd() % 5;
    u.body_case = FANOUT__FRAME__BODY_UNSUBSCRIBE; u.unsubscribe = &us;
    add(b, &u, rnd());
    Fanout__Frame pf = FANOUT__FRAME__INIT;
    Fanout__Ping pg = FANOUT__PING__INIT;
    pf.body_case = FANOUT__FRAME__BODY_PING; pf.ping = &pg;
    add(b, &pf, 0);
}

static void mutate(fo_buf_t *b)
{
    size_t n = fo_buf_len(b);
    uint8_t *p = fo_buf_head(b);
    switch (rnd() % 6) {
    case 0:                               /* flip a few bytes */
        for (int i = 0; i < 1 + (int)(rnd() % 4); i++)
            p[rnd() % n] ^= (uint8_t)(1 + rnd() % 255);
        break;
    case 1:                               /* cut the stream short */
        b->end = b->start + rnd() % n;
        break;
    case 2: {                             /* a bogus length somewhere */
        uint32_t v = rnd() % 3 ? rnd() : 0;
        size_t at = rnd() % n;
        for (int i = 0; i < 4 && at + i < n; i++)
            p[at + i] = (uint8_t)(v >> (24 - 8 * i));
        break;
    }
    case 3: {                             /* garbage appended */
        uint8_t g[64];
        for (size_t i = 0; i < sizeof g; i++) g[i] = (uint8_t)rnd();
        assert_int_equal(fo_buf_append(b, g, rnd() % sizeof g), FO_OK);
        break;
    }
    default:                              /* valid (mostly) */
        break;
    }
}

static void test_mutated_sessions(void **state)
{
    (void)state;
    enum { N = 1500 };
    fo_tb_t b;
    const char *args[] = { "--max-frame", "4KiB", "--max-output", "64KiB", "--retention-msgs", "16", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    static fo_tc_t c[N];
    rnd_state = 0x9e3779b9u;
    for (int i = 0; i < N; i++) {
        fo_buf_t s = FO_BUF_INIT;
        session(&s);
        mutate(&s);
        int rcv = rnd() % 5 == 0 ? 4096 : 0;        /* some never read much */
        assert_int_equal(fo_tc_connect_rcvbuf(&c[i], b.port, rcv), 0);
        /* write in random pieces */
        size_t off = 0, n = fo_buf_len(&s);
        while (off < n) {
            size_t k = 1 + rnd() % 700;
            if (k > n - off) k = n - off;
            if (fo_tc_send_raw(&c[i], fo_buf_head(&s) + off, k))
                break;                    /* the broker closed on us: fine */
            off += k;
        }
        fo_buf_free(&s);
        if (rnd() % 2) {                  /* half close at once */
            fo_tc_close(&c[i]);
            c[i].fd = -1;
        }
    }
    /* the broker still works for a well-behaved client, and answers */
    fo_tc_t sub, pub;
    assert_int_equal(fo_tc_open(&sub, b.port, "healthy"), 0);
    assert_int_equal(fo_tc_open(&pub, b.port, "healthy"), 0);
    assert_int_equal(fo_tc_subscribe(&sub, 1, "fz.a", NULL), 0);
    for (int i = 0; i < 100; i++)
        fo_tc_publish(&pub, "fz.a", "ok", 2, i == 99 ? 1 : 0);
    assert_int_equal(fo_tc_wait_ack(&pub, 1, 10000), 0);
    int got = 0;
    Fanout__Frame *f;
    while (got < 100 && fo_tc_recv(&sub, 10000, &f) == 1)
        got += f->body_case == FANOUT__FRAME__BODY_DELIVER;
    assert_int_equal(got, 100);
    for (int i = 0; i < N; i++)
        if (c[i].fd >= 0)
            fo_tc_close(&c[i]);
    fo_tc_close(&sub);
    fo_tc_close(&pub);
    assert_true(fo_tb_metric(&b, "fanout_protocol_errors_total") > 10);
    assert_int_equal(fo_tb_stop(&b), 0);      /* clean exit: sanitizers quiet */
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutated_sessions),
    };
    return cmocka_run_group_tests_name("fuzz", tests, NULL, NULL);
}
