/* test_peer.c -- broker/peer.c's output queue over a socketpair nobody
 * reads at first: messages past max_output are dropped oldest first and a
 * PeerGap per topic takes the place of what went, control frames are
 * never dropped, and everything left arrives in order once the other end
 * reads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include "msg.h"
#include "peer.h"

static fo_mem_t mem = { 0, 0 };

static fo_msg_t *msg(const char *topic, uint64_t seq)
{
    uint8_t payload[200];
    memset(payload, 'x', sizeof payload);
    fo_msg_t *m = fo_msg_new(&mem, NULL, topic, strlen(topic), seq, 1, payload, sizeof payload, 0);
    assert_non_null(m);
    return m;
}

static void interest(fo_peer_t *p, uint64_t seq)
{
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerInterest in = FANOUT__PEER_INTEREST__INIT;
    in.has_seq = in.has_op = in.has_id = 1;
    in.seq = seq;
    in.op = FANOUT__PEER_INTEREST__OP__DEL;
    in.id = (uint32_t)seq;
    f.body_case = FANOUT__PEER_FRAME__BODY_INTEREST;
    f.interest = &in;
    assert_int_equal(fo_peer_send(p, &f), FO_OK);
}

static void test_slow_link_drops_oldest_with_gap(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int epfd = epoll_create1(0);
    assert_true(epfd >= 0);
    fo_peer_cfg_t cfg = { .node_id = "a", .client_addr = "", .max_output = 8192, .max_frame = 1 << 20,
                          .epfd = epfd };
    fo_peer_t *p;
    assert_int_equal(fo_peer_accept(&cfg, sv[0], &p), FO_OK);    /* its hello is queued */
    /* 100 messages of two topics (about 230 bytes each) and a control frame
     * every ten, none written: the queue keeps 8 KiB of data at most */
    uint64_t ctl = 0;
    for (uint64_t s = 1; s <= 100; s++) {
        assert_int_equal(fo_peer_send_msg(p, msg(s % 2 ? "odd" : "even", s), NULL, NULL), 1);
        if (s % 10 == 0)
            interest(p, ++ctl);
    }
    assert_true(p->qdata <= cfg.max_output);
    uint64_t dropped = atomic_load(&p->ctr->drops);
    assert_true(dropped > 50);
    assert_true(atomic_load(&p->ctr->gaps_out) >= 2);
    /* now the other end reads: hello, the gaps where the oldest went, every
     * control frame, and the newest messages, each topic in order */
    fo_decoder_t d;
    fo_decoder_init(&d, 1 << 20);
    fo_arena_t arena;
    assert_int_equal(fo_arena_init(&arena, 4096, 0), FO_OK);
    int hello = 0, ctls = 0, delivers = 0, gaps = 0;
    uint64_t last_seen[2] = { 0, 0 }, gap_last[2] = { 0, 0 };
    for (int round = 0; round < 1000 && fo_peer_has_output(p); round++) {
        assert_int_equal(fo_peer_flush(p), FO_OK);
        uint8_t buf[65536];
        ssize_t n;
        while ((n = read(sv[1], buf, sizeof buf)) > 0)
            assert_int_equal(fo_decoder_feed(&d, buf, (size_t)n), FO_OK);
    }
    assert_false(fo_peer_has_output(p));
    const uint8_t *body;
    size_t len;
    while (fo_decoder_next(&d, &body, &len) == FO_OK) {
        Fanout__PeerFrame *f;
        assert_int_equal(fo_peer_frame_unpack(body, len, &arena, &f), FO_OK);
        if (f->body_case == FANOUT__PEER_FRAME__BODY_HELLO) {
            assert_int_equal(ctls + delivers + gaps, 0);           /* first */
            hello++;
        } else if (f->body_case == FANOUT__PEER_FRAME__BODY_INTEREST) {
            assert_int_equal(f->interest->seq, (uint64_t)++ctls);  /* all, in order */
        } else if (f->body_case == FANOUT__PEER_FRAME__BODY_GAP) {
            int k = !strcmp(f->gap->topic, "odd");
            assert_true(f->gap->first > last_seen[k]);
            gap_last[k] = f->gap->last;
            gaps++;
        } else {
            assert_int_equal(f->body_case, FANOUT__PEER_FRAME__BODY_DELIVER);
            const char *t;
            size_t tl;
            uint64_t seq;
            assert_true(fo_msg_body_check(f->deliver->body.data, f->deliver->body.len, &t, &tl, &seq));
            int k = (int)(seq % 2);
            assert_true(seq > last_seen[k] && seq > gap_last[k]);  /* in order, after its gap */
            last_seen[k] = seq;
            delivers++;
        }
        fo_arena_reset(&arena);
    }
    assert_int_equal(hello, 1);
    assert_int_equal(ctls, 10);
    assert_int_equal(gaps, (int)atomic_load(&p->ctr->gaps_out));
    assert_int_equal((uint64_t)delivers + dropped, 100);
    assert_true(last_seen[0] == 100 && last_seen[1] == 99);    /* the newest stayed */
    fo_decoder_destroy(&d);
    fo_arena_destroy(&arena);
    fo_peer_destroy(p);
    close(sv[1]);
    close(epfd);
    assert_int_equal(atomic_load(&mem.used), 0);             /* every reference let go */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_link_drops_oldest_with_gap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
