/* test_ring.c -- a topic's retention ring (broker/ring.c): count and byte
 * bounds, shrinking limits, retention 0, references released. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "ring.h"
#include "broker_msg_fixture.h"

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
    assert_int_equal(fo_ring_push(&r, m, 3, 1 << 20), FO_OK);
    fo_msg_unref(m);
    assert_int_equal(r.count, 3);
    assert_int_equal(fo_ring_oldest(&r, 102), 99);
    fo_ring_destroy(&r);
    assert_int_equal(atomic_load(&mem.used), 0);
}

/* Early eviction (a trimming sweep): the oldest go first, what is left is
 * still addressed by sequence. */
static void test_ring_evict(void **state)
{
    (void)state;
    fo_ring_t r;
    fo_ring_init(&r);
    for (uint64_t s = 1; s <= 10; s++) {
        fo_msg_t *m = mk(s, 10);
        assert_int_equal(fo_ring_push(&r, m, 100, 1 << 20), FO_OK);
        fo_msg_unref(m);
    }
    assert_int_equal(fo_ring_evict(&r, 4), 4);
    assert_int_equal(r.count, 6);
    assert_int_equal(fo_ring_oldest(&r, 11), 5);
    assert_null(fo_ring_get(&r, 4));
    assert_int_equal(fo_ring_get(&r, 5)->seq, 5);
    assert_int_equal(fo_ring_evict(&r, 100), 6);
    assert_int_equal(r.count, 0);
    assert_int_equal(fo_ring_oldest(&r, 11), 11);
    assert_int_equal(atomic_load(&mem.used), 0);
    fo_ring_destroy(&r);
}

static void test_ring_byte_bound_and_zero(void **state)
{
    (void)state;
    fo_ring_t r;
    fo_ring_init(&r);
    for (uint64_t s = 1; s <= 20; s++) {
        fo_msg_t *m = mk(s, 1000);
        assert_int_equal(fo_ring_push(&r, m, 1000, 5000), FO_OK);
        fo_msg_unref(m);
    }
    assert_int_equal(r.count, 5);
    assert_true(r.bytes <= 5000);
    assert_int_equal(fo_ring_oldest(&r, 21), 16);
    /* a message bigger than the byte bound is not kept, and nothing older */
    fo_msg_t *m = mk(21, 4096);
    assert_int_equal(fo_ring_push(&r, m, 1000, 3000), FO_OK);
    fo_msg_unref(m);
    assert_int_equal(r.count, 0);
    assert_int_equal(fo_ring_oldest(&r, 22), 22);
    /* retention 0 keeps nothing */
    m = mk(22, 1);
    assert_int_equal(fo_ring_push(&r, m, 0, 1000), FO_OK);
    fo_msg_unref(m);
    assert_int_equal(r.count, 0);
    assert_null(fo_ring_get(&r, 22));
    fo_ring_destroy(&r);
    fo_ring_destroy(NULL);
    assert_int_equal(atomic_load(&mem.used), 0);
}

int main(void)
{
    atomic_store(&mem.limit, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_count_bound),
        cmocka_unit_test(test_ring_byte_bound_and_zero),
        cmocka_unit_test(test_ring_evict),
    };
    return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
