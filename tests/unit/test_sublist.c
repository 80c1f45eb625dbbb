/* test_sublist.c -- the filter index (broker/sublist.c): it finds exactly
 * the subscriptions fo_topic_match accepts (property test over generated
 * filters and topics), each once; insert and remove in any order leave no
 * node behind; and a topic unrelated to 100,000 filters visits none. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "sublist.h"
#include "topic.h"

static uint32_t rs = 12345;
static uint32_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 17;
    rs ^= rs << 5;
    return rs;
}

static fo_sub_t *mksub(const char *filter, uint32_t sid)
{
    size_t fl = strlen(filter);
    fo_sub_t *s = calloc(1, sizeof *s + fl + 1);
    memcpy(s->filter, filter, fl + 1);
    s->sid = sid;
    return s;
}

static const char *const toks[] = { "a", "b", "c", "dd" };

static void gen(char *out, size_t cap, int filter)
{
    int n = 1 + (int)(rnd() % 4);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        const char *t = toks[rnd() % 4];
        if (filter) {
            uint32_t k = rnd() % 6;
            if (k == 0)
                t = "*";
            else if (k == 1 && i == n - 1)
                t = ">";
        }
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "." : "", t);
    }
}

typedef struct { int *hits; } ctx_t;
static void count(void *ud, fo_sub_t *s)
{
    ctx_t *c = ud;
    c->hits[s->sid]++;
}

static void test_matches_like_topic_match(void **state)
{
    (void)state;
    enum { NS = 300, NT = 2000 };
    fo_sublist_t *l;
    assert_int_equal(fo_sublist_create(&l), FO_OK);
    fo_sub_t *subs[NS];
    for (int i = 0; i < NS; i++) {
        char f[64];
        gen(f, sizeof f, 1);
        subs[i] = mksub(f, (uint32_t)i);
        assert_int_equal(fo_sublist_insert(l, subs[i]), FO_OK);
    }
    assert_int_equal(fo_sublist_subs(l), NS);
    static int hits[NS];
    ctx_t c = { hits };
    for (int k = 0; k < NT; k++) {
        char t[64];
        gen(t, sizeof t, 0);
        memset(hits, 0, sizeof hits);
        fo_sublist_match(l, t, strlen(t), count, &c);
        for (int i = 0; i < NS; i++) {
            int want = fo_topic_match(subs[i]->filter, t);
            if (hits[i] != want)
                fail_msg("topic %s, filter %s: %d hits, want %d", t, subs[i]->filter, hits[i], want);
        }
    }
    /* remove in a shuffled order: nothing is left */
    for (int i = NS - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint32_t)(i + 1));
        fo_sub_t *x = subs[i];
        subs[i] = subs[j];
        subs[j] = x;
    }
    for (int i = 0; i < NS; i++) {
        fo_sublist_remove(l, subs[i]);
        fo_sublist_remove(l, subs[i]);     /* twice: ignored */
        free(subs[i]);
    }
    assert_int_equal(fo_sublist_subs(l), 0);
    assert_int_equal(fo_sublist_nodes(l), 0);
    fo_sublist_destroy(l);
}

static int visited;
static void visit(void *ud, fo_sub_t *s)
{
    (void)ud;
    (void)s;
    visited++;
}

static void test_unrelated_filters_cost_nothing(void **state)
{
    (void)state;
    enum { N = 100000 };
    fo_sublist_t *l;
    assert_int_equal(fo_sublist_create(&l), FO_OK);
    fo_sub_t **subs = calloc(N, sizeof *subs);
    for (int i = 0; i < N; i++) {
        char f[64];
        snprintf(f, sizeof f, "unrelated.%d.%s", i, i % 3 ? "x" : "*");
        subs[i] = mksub(f, (uint32_t)i);
        assert_int_equal(fo_sublist_insert(l, subs[i]), FO_OK);
    }
    visited = 0;
    fo_sublist_match(l, "orders.new", 10, visit, NULL);
    assert_int_equal(visited, 0);
    fo_sublist_match(l, "unrelated.42.x", 14, visit, NULL);
    assert_int_equal(visited, 1);
    fo_sublist_match(l, "unrelated.42.y", 14, visit, NULL);
    assert_int_equal(visited, 2);                  /* "unrelated.42.*" */
    for (int i = 0; i < N; i++) {
        fo_sublist_remove(l, subs[i]);
        free(subs[i]);
    }
    free(subs);
    assert_int_equal(fo_sublist_nodes(l), 0);
    fo_sublist_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_like_topic_match),
        cmocka_unit_test(test_unrelated_filters_cost_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
