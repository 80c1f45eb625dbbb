/* test_interest.c -- broker/interest.c: our interest table (counts, ids,
 * what reaches the peers) and a peer's id map. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "interest.h"

static void test_counts_and_changes(void **state)
{
    (void)state;
    fo_interest_t *t;
    assert_int_equal(fo_interest_create(&t), FO_OK);
    uint32_t a, b, c, d;
    int is_new;
    assert_int_equal(fo_interest_add(t, "orders.>", NULL, &a, &is_new), FO_OK);
    assert_true(is_new);
    assert_int_equal(fo_interest_add(t, "orders.>", "", &b, &is_new), FO_OK);
    assert_false(is_new);                       /* a second subscriber: no ADD */
    assert_int_equal(a, b);
    assert_int_equal(fo_interest_add(t, "orders.>", "workers", &c, &is_new), FO_OK);
    assert_true(is_new);                        /* a queue group is its own entry */
    assert_int_not_equal(a, c);
    /* the key's parts are separate: "a" + "b.c" is not "a.b" + "c" */
    assert_int_equal(fo_interest_add(t, "a", "b.c", &d, &is_new), FO_OK);
    assert_true(is_new);
    assert_int_equal(fo_interest_add(t, "a.b", "c", &d, &is_new), FO_OK);
    assert_true(is_new);
    assert_int_equal(fo_interest_count(t), 4);
    uint32_t id;
    assert_int_equal(fo_interest_del(t, "orders.>", NULL, &id), 0);   /* one left */
    assert_int_equal(fo_interest_del(t, "orders.>", NULL, &id), 1);   /* DEL a */
    assert_int_equal(id, a);
    assert_int_equal(fo_interest_del(t, "orders.>", NULL, &id), -1);
    assert_int_equal(fo_interest_count(t), 3);
    /* a new entry for the same pair gets a new id: a DEL then ADD can
     * never be confused with the old entry */
    assert_int_equal(fo_interest_add(t, "orders.>", NULL, &b, &is_new), FO_OK);
    assert_true(is_new);
    assert_int_not_equal(a, b);
    fo_interest_destroy(t);
}

static void count_each(void *ud, uint32_t id, const char *filter, const char *queue)
{
    (void)id;
    (void)filter;
    (void)queue;
    (*(int *)ud)++;
}

/* Many entries (growth), the snapshot sees each once. */
static void test_many_and_snapshot(void **state)
{
    (void)state;
    fo_interest_t *t;
    assert_int_equal(fo_interest_create(&t), FO_OK);
    char f[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(f, sizeof f, "t.%d", i);
        uint32_t id;
        int is_new;
        assert_int_equal(fo_interest_add(t, f, i % 2 ? "q" : NULL, &id, &is_new), FO_OK);
        assert_true(is_new);
    }
    int n = 0;
    fo_interest_each(t, count_each, &n);
    assert_int_equal(n, 5000);
    for (int i = 0; i < 5000; i += 2) {
        snprintf(f, sizeof f, "t.%d", i);
        uint32_t id;
        assert_int_equal(fo_interest_del(t, f, NULL, &id), 1);
    }
    n = 0;
    fo_interest_each(t, count_each, &n);
    assert_int_equal(n, 2500);
    assert_int_equal(fo_interest_count(t), 2500);
    fo_interest_destroy(t);
}

static void test_map(void **state)
{
    (void)state;
    fo_interest_map_t *m;
    assert_int_equal(fo_interest_map_create(&m), FO_OK);
    static int objs[3000];
    for (uint32_t i = 1; i <= 3000; i++)
        assert_int_equal(fo_interest_map_put(m, i, &objs[i - 1]), FO_OK);
    assert_int_equal(fo_interest_map_put(m, 7, &objs[0]), FO_ERR_INVAL);
    assert_ptr_equal(fo_interest_map_get(m, 2999), &objs[2998]);
    assert_null(fo_interest_map_get(m, 3001));
    /* take and put again many times: tombstones do not fill the table */
    for (int round = 0; round < 20; round++)
        for (uint32_t i = 1; i <= 3000; i += 3) {
            assert_ptr_equal(fo_interest_map_take(m, i), &objs[i - 1]);
            assert_null(fo_interest_map_take(m, i));
            assert_int_equal(fo_interest_map_put(m, i, &objs[i - 1]), FO_OK);
        }
    assert_int_equal(fo_interest_map_count(m), 3000);
    /* pops go on from where the last stopped: ids put back meanwhile, in
     * slots already passed, are still found */
    size_t n = 0;
    for (int i = 0; i < 1000; i++)
        assert_non_null(fo_interest_map_pop(m));
    for (uint32_t i = 3001; i <= 3500; i++)
        assert_int_equal(fo_interest_map_put(m, i, &objs[0]), FO_OK);
    while (fo_interest_map_pop(m))
        n++;
    assert_int_equal(n, 2500);
    assert_int_equal(fo_interest_map_count(m), 0);
    assert_null(fo_interest_map_pop(m));
    fo_interest_map_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_changes),
        cmocka_unit_test(test_many_and_snapshot),
        cmocka_unit_test(test_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
