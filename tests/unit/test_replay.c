/* test_replay.c -- the anti-replay window (client/replay.c): in order,
 * copies, reordering inside the window, too old, senders interleaved
 * with any offset (broker workers), invalid numbers, reset. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include "replay.h"

#define D(sender, count) ((uint64_t)(sender) << FO_DGRAM_SENDER_SHIFT | (count))

static fo__replay_t r;

static void test_in_order_and_copies(void **state)
{
    (void)state;
    fo__replay_reset(&r);
    for (uint64_t i = 1; i <= 1000; i++)
        assert_int_equal(fo__replay_check(&r, D(0, i)), FO__REPLAY_NEW);
    for (uint64_t i = 1000 - FO__REPLAY_WINDOW + 1; i <= 1000; i++)
        assert_int_equal(fo__replay_check(&r, D(0, i)), FO__REPLAY_SEEN);
    assert_int_equal(fo__replay_check(&r, D(0, 1000 - FO__REPLAY_WINDOW)), FO__REPLAY_OLD);
    assert_int_equal(fo__replay_check(&r, D(0, 1)), FO__REPLAY_OLD);
}

static void test_reordered_inside_window(void **state)
{
    (void)state;
    fo__replay_reset(&r);
    /* 1, then 64 (63 ahead: 2..63 still open), then every other */
    assert_int_equal(fo__replay_check(&r, D(2, 1)), FO__REPLAY_NEW);
    assert_int_equal(fo__replay_check(&r, D(2, 64)), FO__REPLAY_NEW);
    for (uint64_t i = 63; i >= 2; i--)
        assert_int_equal(fo__replay_check(&r, D(2, i)), FO__REPLAY_NEW);
    for (uint64_t i = 1; i <= 64; i++)
        assert_int_equal(fo__replay_check(&r, D(2, i)), FO__REPLAY_SEEN);
    /* a jump far ahead forgets the old map: what it skipped is too old */
    assert_int_equal(fo__replay_check(&r, D(2, 1000)), FO__REPLAY_NEW);
    assert_int_equal(fo__replay_check(&r, D(2, 936)), FO__REPLAY_OLD);
    assert_int_equal(fo__replay_check(&r, D(2, 937)), FO__REPLAY_NEW);
    assert_int_equal(fo__replay_check(&r, D(2, 937)), FO__REPLAY_SEEN);
    /* a jump of exactly the window */
    assert_int_equal(fo__replay_check(&r, D(2, 1000 + FO__REPLAY_WINDOW)), FO__REPLAY_NEW);
    assert_int_equal(fo__replay_check(&r, D(2, 1000)), FO__REPLAY_OLD);
    assert_int_equal(fo__replay_check(&r, D(2, 1001)), FO__REPLAY_NEW);
}

/* Two workers sending to one group: each numbers its own datagrams, and
 * their streams interleave any way at all -- one far ahead of the other,
 * one silent for long, bursts of either. Every datagram is new exactly
 * once; each copy is refused. */
static void test_senders_interleaved(void **state)
{
    (void)state;
    fo__replay_reset(&r);
    uint64_t next[2] = { 1, 1 };
    srand(7);
    while (next[0] <= 5000 || next[1] <= 300) {
        int s = next[1] > 300 ? 0 : next[0] > 5000 ? 1 : rand() % 10 == 0;
        int burst = 1 + rand() % 70;
        for (int k = 0; k < burst && next[s] <= (s ? 300u : 5000u); k++) {
            uint64_t d = D(s, next[s]++);
            assert_int_equal(fo__replay_check(&r, d), FO__REPLAY_NEW);
            if (rand() % 8 == 0)                   /* a copy, at once */
                assert_int_equal(fo__replay_check(&r, d), FO__REPLAY_SEEN);
        }
    }
    /* one sender's window does not move the other's */
    assert_int_equal(fo__replay_check(&r, D(1, 300)), FO__REPLAY_SEEN);
    assert_int_equal(fo__replay_check(&r, D(1, 301)), FO__REPLAY_NEW);
    assert_int_equal(fo__replay_check(&r, D(0, 5001)), FO__REPLAY_NEW);
    /* a sender heard for the first time starts wherever it is */
    assert_int_equal(fo__replay_check(&r, D(FO_DGRAM_SENDERS - 1, 77)), FO__REPLAY_NEW);
    assert_int_equal(fo__replay_check(&r, D(FO_DGRAM_SENDERS - 1, 77)), FO__REPLAY_SEEN);
}

static void test_invalid_and_reset(void **state)
{
    (void)state;
    fo__replay_reset(&r);
    assert_int_equal(fo__replay_check(&r, D(0, 0)), FO__REPLAY_OLD);
    assert_int_equal(fo__replay_check(&r, D(FO_DGRAM_SENDERS, 1)), FO__REPLAY_OLD);
    assert_int_equal(fo__replay_check(&r, UINT64_MAX), FO__REPLAY_OLD);
    assert_int_equal(fo__replay_check(&r, D(0, FO_DGRAM_COUNT_MAX)), FO__REPLAY_NEW);
    assert_int_equal(fo__replay_check(&r, D(0, FO_DGRAM_COUNT_MAX)), FO__REPLAY_SEEN);
    fo__replay_reset(&r);                 /* a new epoch: numbers start again */
    assert_int_equal(fo__replay_check(&r, D(0, 1)), FO__REPLAY_NEW);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_and_copies),
        cmocka_unit_test(test_reordered_inside_window),
        cmocka_unit_test(test_senders_interleaved),
        cmocka_unit_test(test_invalid_and_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
