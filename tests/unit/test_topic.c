/* test_topic.c -- topic/filter rules, matching, the registry's bindings,
 * queue-group picking. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "topic.h"

#define V(s) fo_topic_valid(s, strlen(s))
#define F(s) fo_filter_valid(s, strlen(s))

static void test_valid_names(void **state)
{
    (void)state;
    assert_true(V("a"));
    assert_true(V("prices.eur.spot"));
    assert_true(V("a-b_c.d/e:f"));
    assert_true(V("caf\xc3\xa9.x"));          /* UTF-8 is fine */
    assert_false(V(""));
    assert_false(V("."));
    assert_false(V("a."));
    assert_false(V(".a"));
    assert_false(V("a..b"));
    assert_false(V("a b"));
    assert_false(V("a\tb"));
    assert_false(V("a\x7f"));
    assert_false(V("a.*"));                    /* wildcards: filters only */
    assert_false(V("a.>"));
    assert_false(V("a*"));
    char big[300];
    memset(big, 'x', sizeof big);
    assert_true(fo_topic_valid(big, 255));
    assert_false(fo_topic_valid(big, 256));
    assert_false(fo_topic_valid("a\0b", 3));   /* embedded NUL */
}

static void test_valid_filters(void **state)
{
    (void)state;
    assert_true(F("a.*.c"));
    assert_true(F("*"));
    assert_true(F(">"));
    assert_true(F("a.>"));
    assert_true(F("*.*.>"));
    assert_false(F("a.>.b"));                  /* > only last */
    assert_false(F("a*"));
    assert_false(F("a.b*"));
    assert_false(F("a.>>"));
    assert_false(F("a..*"));
    assert_false(F(""));
}

static void test_match(void **state)
{
    (void)state;
    assert_true(fo_topic_match("a.b.c", "a.b.c"));
    assert_false(fo_topic_match("a.b.c", "a.b"));
    assert_false(fo_topic_match("a.b", "a.b.c"));
    assert_false(fo_topic_match("a.b.c", "a.b.cd"));
    assert_true(fo_topic_match("a.*.c", "a.x.c"));
    assert_false(fo_topic_match("a.*.c", "a.x.y.c"));
    assert_false(fo_topic_match("a.*", "a"));
    assert_true(fo_topic_match("a.>", "a.b"));
    assert_true(fo_topic_match("a.>", "a.b.c.d"));
    assert_false(fo_topic_match("a.>", "a"));  /* > needs one or more */
    assert_true(fo_topic_match(">", "x"));
    assert_true(fo_topic_match("*", "x"));
    assert_false(fo_topic_match("*", "x.y"));
    assert_true(fo_topic_match("*.*.>", "a.b.c"));
    assert_false(fo_topic_match("*.*.>", "a.b"));
    assert_true(fo_filters_overlap("a.*", "a.b"));
    assert_true(fo_filters_overlap("a.>", "*.b.c"));
    assert_true(fo_filters_overlap(">", "x"));
    assert_false(fo_filters_overlap("a.*", "b.*"));
    assert_false(fo_filters_overlap("a.*", "a.b.c"));
    assert_false(fo_filters_overlap("a.b", "a"));
    assert_true(fo_filter_is_wild("a.*"));
    assert_true(fo_filter_is_wild(">"));
    assert_false(fo_filter_is_wild("a.b"));
}

static fo_sub_t *mksub(const char *filter, const char *queue, int worker, uint32_t sid)
{
    fo_sub_t *s = calloc(1, sizeof *s + strlen(filter) + 1);
    strcpy(s->filter, filter);
    s->queue = queue ? strdup(queue) : NULL;
    s->worker = worker;
    s->sid = sid;
    s->conn_id = sid;
    return s;
}

static void freesub(fo_registry_t *r, fo_sub_t *s)
{
    fo_registry_unsubscribe(r, s);
    free(s->queue);
    free(s);
}

static int count_local(fo_topic_t *t, int w)
{
    int n = 0;
    for (fo_binding_t *b = t->local[w]; b; b = b->tnext)
        n++;
    assert_int_equal(n, (int)t->nlocal[w]);
    return n;
}

static int bound_calls;
static void on_bound(void *ud, fo_topic_t *t, fo_binding_t *b)
{
    (void)ud; (void)t;
    assert_int_equal(b->from_seq, t->seq + 1);
    bound_calls++;
}

static void test_registry_bindings(void **state)
{
    (void)state;
    fo_registry_t *r;
    assert_int_equal(fo_registry_create(2, 10, NULL, NULL, &r), FO_OK);
    fo_err_t err = FO_OK;
    /* topic first, then subscriptions */
    fo_topic_t *ab = fo_registry_get(r, "a.b", 3, NULL, &err);
    assert_non_null(ab);
    assert_ptr_equal(fo_registry_find(r, "a.b", 3), ab);
    assert_ptr_equal(fo_registry_get(r, "a.b", 3, NULL, &err), ab);
    ab->seq = 41;
    fo_sub_t *exact = mksub("a.b", NULL, 0, 1);
    fo_sub_t *wild = mksub("a.>", NULL, 1, 2);
    fo_sub_t *other = mksub("b.*", NULL, 1, 3);
    bound_calls = 0;
    assert_int_equal(fo_registry_subscribe(r, exact, on_bound, NULL), FO_OK);
    assert_int_equal(fo_registry_subscribe(r, wild, on_bound, NULL), FO_OK);
    assert_int_equal(fo_registry_subscribe(r, other, on_bound, NULL), FO_OK);
    assert_int_equal(bound_calls, 2);
    assert_int_equal(count_local(ab, 0), 1);
    assert_int_equal(count_local(ab, 1), 1);
    assert_int_equal(ab->local[0]->from_seq, 42);
    /* subscription first, then the topic: bound from seq 1 */
    fo_topic_t *ac = fo_registry_get(r, "a.c.d", 5, NULL, &err);
    assert_int_equal(count_local(ac, 0), 0);
    assert_int_equal(count_local(ac, 1), 1);
    assert_int_equal(ac->local[1]->from_seq, 1);
    fo_topic_t *bx = fo_registry_get(r, "b.x", 3, NULL, &err);
    assert_int_equal(count_local(bx, 1), 1);
    assert_int_equal(fo_registry_topics(r), 3);
    /* unsubscribe unbinds everywhere */
    freesub(r, wild);
    assert_int_equal(count_local(ab, 1), 0);
    assert_int_equal(count_local(ac, 1), 0);
    assert_int_equal(count_local(ab, 0), 1);
    freesub(r, exact);
    freesub(r, other);
    assert_int_equal(count_local(bx, 1), 0);
    fo_registry_destroy(r);
}

static void test_max_topics_and_rehash(void **state)
{
    (void)state;
    fo_registry_t *r;
    assert_int_equal(fo_registry_create(1, 5000, NULL, NULL, &r), FO_OK);
    fo_err_t err = FO_OK;
    char name[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(name, sizeof name, "t.%d", i);
        assert_non_null(fo_registry_get(r, name, (size_t)n, NULL, &err));
    }
    assert_null(fo_registry_get(r, "one.more", 8, NULL, &err));
    assert_int_equal(err, FO_ERR_BUSY);
    for (int i = 0; i < 5000; i += 97) {
        int n = snprintf(name, sizeof name, "t.%d", i);
        fo_topic_t *t = fo_registry_find(r, name, (size_t)n);
        assert_non_null(t);
        assert_string_equal(t->name, name);
    }
    fo_registry_destroy(r);
}

/* A trimming sweep (memory is short) halves each visited topic's retained
 * messages and counts them; a normal sweep leaves them. */
static void test_sweep_trims_retention(void **state)
{
    (void)state;
    fo_registry_t *r;
    assert_int_equal(fo_registry_create(1, 10, NULL, NULL, &r), FO_OK);
    fo_err_t err = FO_OK;
    fo_topic_t *t = fo_registry_get(r, "keep.x", 6, NULL, &err);
    assert_non_null(t);
    static fo_mem_t m;
    for (uint64_t s = 1; s <= 8; s++) {
        fo_msg_t *msg = fo_msg_new(&m, t, "keep.x", 6, s, 1, (const uint8_t *)"p", 1, 0);
        pthread_mutex_lock(&t->lock);
        t->seq = s;
        assert_int_equal(fo_ring_push(&t->ring, msg, 100, 1 << 20), FO_OK);
        pthread_mutex_unlock(&t->lock);
        fo_msg_unref(msg);
    }
    uint64_t hour = 3600ull * 1000000000u;
    assert_int_equal(fo_registry_sweep(r, 2, 0, hour, 1, 100, 0), 0);
    assert_int_equal(t->ring.count, 8);
    assert_int_equal(fo_registry_sweep(r, 2, 0, hour, 1, 100, 1), 0);
    assert_int_equal(t->ring.count, 4);
    assert_int_equal(fo_registry_trimmed(r), 4);
    assert_int_equal(fo_ring_oldest(&t->ring, 9), 5);
    fo_registry_destroy(r);
    assert_int_equal(atomic_load(&m.used), 0);
}

/* Queue groups: each message goes to exactly one member, spread evenly;
 * groups are keyed by (name, filter). */
static void test_queue_groups(void **state)
{
    (void)state;
    fo_registry_t *r;
    assert_int_equal(fo_registry_create(2, 10, NULL, NULL, &r), FO_OK);
    fo_err_t err = FO_OK;
    fo_topic_t *t = fo_registry_get(r, "jobs.x", 6, NULL, &err);
    fo_sub_t *m[3] = { mksub("jobs.x", "g", 0, 1), mksub("jobs.x", "g", 1, 2),
                       mksub("jobs.x", "g", 0, 3) };
    fo_sub_t *other = mksub("jobs.*", "g", 1, 4);   /* same name, other filter */
    for (int i = 0; i < 3; i++)
        assert_int_equal(fo_registry_subscribe(r, m[i], NULL, NULL), FO_OK);
    assert_int_equal(fo_registry_subscribe(r, other, NULL, NULL), FO_OK);
    int ngroups = 0;
    for (fo_qgroup_t *g = t->groups; g; g = g->next)
        ngroups++;
    assert_int_equal(ngroups, 2);
    assert_int_equal(count_local(t, 0) + count_local(t, 1), 0);
    int hits[5] = {0};
    for (uint64_t seq = 1; seq <= 300; seq++) {
        for (fo_qgroup_t *g = t->groups; g; g = g->next) {
            fo_binding_t *b = fo_qgroup_pick(g, seq);
            assert_non_null(b);
            hits[b->sub->sid]++;
        }
    }
    assert_int_equal(hits[1], 100);
    assert_int_equal(hits[2], 100);
    assert_int_equal(hits[3], 100);
    assert_int_equal(hits[4], 300);
    /* a member leaves: the rest share */
    freesub(r, m[1]);
    memset(hits, 0, sizeof hits);
    fo_qgroup_t *g3 = NULL;
    for (fo_qgroup_t *g = t->groups; g; g = g->next)
        if (g->count == 2)
            g3 = g;
    assert_non_null(g3);
    for (uint64_t seq = 301; seq <= 400; seq++)
        hits[fo_qgroup_pick(g3, seq)->sub->sid]++;
    assert_int_equal(hits[1], 50);
    assert_int_equal(hits[3], 50);
    /* a member that joined later does not get older messages */
    fo_sub_t *late = mksub("jobs.x", "g", 1, 5);
    t->seq = 1000;
    assert_int_equal(fo_registry_subscribe(r, late, NULL, NULL), FO_OK);
    for (int i = 0; i < 10; i++)
        assert_int_not_equal(fo_qgroup_pick(g3, 500)->sub->sid, 5);
    freesub(r, m[0]);
    freesub(r, m[2]);
    freesub(r, late);
    /* the last member of "g" left: the group is gone, "h" stays */
    ngroups = 0;
    for (fo_qgroup_t *g = t->groups; g; g = g->next)
        ngroups++;
    assert_int_equal(ngroups, 1);
    freesub(r, other);
    assert_null(t->groups);
    /* a client cycling through queue names does not grow the list */
    for (int i = 0; i < 100; i++) {
        char q[16];
        snprintf(q, sizeof q, "q%d", i);
        fo_sub_t *s = mksub("jobs.x", q, 0, 10);
        assert_int_equal(fo_registry_subscribe(r, s, NULL, NULL), FO_OK);
        freesub(r, s);
        assert_null(t->groups);
    }
    fo_registry_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_names),
        cmocka_unit_test(test_valid_filters),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_registry_bindings),
        cmocka_unit_test(test_max_topics_and_rehash),
        cmocka_unit_test(test_queue_groups),
        cmocka_unit_test(test_sweep_trims_retention),
    };
    return cmocka_run_group_tests_name("topic", tests, NULL, NULL);
}
