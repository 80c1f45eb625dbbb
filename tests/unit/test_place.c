/* test_place.c -- broker/place.c: rendezvous placement of topics. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "place.h"

#define TOPICS 20000

static uint64_t node(int i)
{
    char id[32];
    int n = snprintf(id, sizeof id, "broker-%d", i);
    return fo_place_node_hash(id, (size_t)n);
}

static uint64_t topic(int i)
{
    char t[32];
    int n = snprintf(t, sizeof t, "orders.%d.new", i);
    return fo_place_topic_hash(t, (size_t)n);
}

static void test_empty_and_one(void **state)
{
    (void)state;
    uint64_t one = node(1);
    assert_int_equal(fo_place_pick(NULL, 0, topic(1)), -1);
    for (int t = 0; t < 100; t++)
        assert_int_equal(fo_place_pick(&one, 1, topic(t)), 0);
}

/* Every broker of three gets about a third, and the order members are
 * listed in does not matter (each broker may list them differently). */
static void test_balanced_and_order_free(void **state)
{
    (void)state;
    uint64_t a[3] = { node(1), node(2), node(3) }, b[3] = { node(3), node(1), node(2) };
    int count[3] = { 0 };
    for (int t = 0; t < TOPICS; t++) {
        int h = fo_place_pick(a, 3, topic(t));
        count[h]++;
        assert_true(a[h] == b[fo_place_pick(b, 3, topic(t))]);
    }
    for (int i = 0; i < 3; i++)
        assert_in_range(count[i], TOPICS / 3 - TOPICS / 20, TOPICS / 3 + TOPICS / 20);
}

/* A fourth broker joins: about a quarter of the topics move, all of them
 * to the new one; the others keep their home. Then one leaves: only its
 * topics move. */
static void test_join_moves_one_share(void **state)
{
    (void)state;
    uint64_t three[3] = { node(1), node(2), node(3) };
    uint64_t four[4] = { node(1), node(2), node(3), node(4) };
    int moved = 0;
    for (int t = 0; t < TOPICS; t++) {
        int before = fo_place_pick(three, 3, topic(t)), after = fo_place_pick(four, 4, topic(t));
        if (before != after) {
            assert_int_equal(after, 3);
            moved++;
        }
    }
    assert_in_range(moved, TOPICS / 4 - TOPICS / 25, TOPICS / 4 + TOPICS / 25);
    uint64_t left[2] = { node(1), node(3) };       /* broker-2 leaves */
    for (int t = 0; t < TOPICS; t++) {
        int before = fo_place_pick(three, 3, topic(t)), after = fo_place_pick(left, 2, topic(t));
        if (before != 1)
            assert_true(three[before] == left[after]);
    }
}

static void test_stable_values(void **state)
{
    (void)state;
    /* the same on every build and machine: a change here splits a cluster
     * of mixed versions, so it is pinned */
    assert_true(fo_place_node_hash("a", 1) == fo_place_node_hash("a", 1));
    assert_true(fo_place_node_hash("a", 1) != fo_place_node_hash("b", 1));
    assert_true(fo_place_topic_hash("a", 1) != fo_place_node_hash("a", 1));
    assert_true(fo_place_node_hash("broker-1", 8) == 0x772e56530945cb86ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_one),
        cmocka_unit_test(test_balanced_and_order_free),
        cmocka_unit_test(test_join_moves_one_share),
        cmocka_unit_test(test_stable_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
