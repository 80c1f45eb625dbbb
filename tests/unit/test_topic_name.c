/* test_topic_name.c -- the filter relations of topic_name.h (covers, meet,
 * matching a topic given by length), checked against brute force.
 *
 * Brute force: every filter of up to 4 tokens over {a, bb, *, >} and every
 * topic of up to 5 tokens over {a, bb, c}. That is exact, not a sample: a
 * topic telling two such filters apart can be written with their literals
 * plus one token neither has (c), and needs at most one token more than
 * the longer filter. Each filter's matches are a bitset over the topics,
 * so "covers" is a subset test and "meet" an intersection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "topic_name.h"

#define MAXF 256
#define MAXT 512
#define WORDS ((MAXT + 63) / 64)

static char filters[MAXF][32];
static int nfilters;
static char topics[MAXT][32];
static int ntopics;
static uint64_t fbits[MAXF][WORDS];

static void gen(const char *const *alpha, int nalpha, int maxtok, int allow_gt,
                char (*out)[32], int *n, int cap, const char *prefix, int depth)
{
    for (int i = 0; i < nalpha; i++) {
        char s[32];
        snprintf(s, sizeof s, "%s%s%s", prefix, *prefix ? "." : "", alpha[i]);
        int gt = !strcmp(alpha[i], ">");
        assert_true(*n < cap);
        strcpy(out[(*n)++], s);
        if (!gt && depth + 1 < maxtok)
            gen(alpha, nalpha, maxtok, allow_gt, out, n, cap, s, depth + 1);
    }
}

static void bits_of(const char *filter, uint64_t *b)
{
    memset(b, 0, WORDS * sizeof *b);
    for (int t = 0; t < ntopics; t++)
        if (fo_topic_match(filter, topics[t]))
            b[t / 64] |= 1ull << (t % 64);
}

static int setup(void **state)
{
    (void)state;
    static const char *const ftok[] = { "a", "bb", "*", ">" };
    static const char *const ttok[] = { "a", "bb", "c" };
    nfilters = ntopics = 0;
    gen(ftok, 4, 4, 1, filters, &nfilters, MAXF, "", 0);
    gen(ttok, 3, 5, 0, topics, &ntopics, MAXT, "", 0);
    for (int f = 0; f < nfilters; f++) {
        assert_true(fo_filter_valid(filters[f], strlen(filters[f])));
        bits_of(filters[f], fbits[f]);
    }
    return 0;
}

static void test_generated(void **state)
{
    (void)state;
    assert_int_equal(nfilters, 4 + 12 + 36 + 108);
    assert_int_equal(ntopics, 3 + 9 + 27 + 81 + 243);
}

/* fo_topic_match_len agrees with fo_topic_match, and reads only tlen
 * bytes: the topic is followed by more tokens that must not count. */
static void test_match_len(void **state)
{
    (void)state;
    for (int f = 0; f < nfilters; f++)
        for (int t = 0; t < ntopics; t++) {
            char buf[64];
            size_t tl = strlen(topics[t]);
            memcpy(buf, topics[t], tl);
            memcpy(buf + tl, ".zz.c", 6);
            int want = fo_topic_match(filters[f], topics[t]);
            if (fo_topic_match_len(filters[f], buf, tl) != want)
                fail_msg("match_len(%s, %s) != %d", filters[f], topics[t], want);
        }
    /* a topic cut at a dot boundary, and one byte short */
    assert_true(fo_topic_match_len("a.b", "a.b.c", 3));
    assert_false(fo_topic_match_len("a.b", "a.b.c", 2));
    assert_true(fo_topic_match_len("a.>", "a.b.c", 5));
    assert_false(fo_topic_match_len("a.>", "a.b", 1));
    assert_false(fo_topic_match_len(">", "", 0));
}

static void test_covers_brute_force(void **state)
{
    (void)state;
    int yes = 0;
    for (int o = 0; o < nfilters; o++)
        for (int i = 0; i < nfilters; i++) {
            int want = 1;
            for (int w = 0; w < WORDS; w++)
                if (fbits[i][w] & ~fbits[o][w])
                    want = 0;
            int got = fo_filter_covers(filters[o], filters[i]);
            if (got != want)
                fail_msg("covers(%s, %s) = %d, brute force %d", filters[o], filters[i], got, want);
            yes += want;
        }
    assert_true(yes > nfilters);         /* not trivially "only itself" */
}

static void test_overlap_and_meet_brute_force(void **state)
{
    (void)state;
    for (int a = 0; a < nfilters; a++)
        for (int b = 0; b < nfilters; b++) {
            uint64_t both[WORDS];
            int any = 0;
            for (int w = 0; w < WORDS; w++) {
                both[w] = fbits[a][w] & fbits[b][w];
                any |= both[w] != 0;
            }
            if (fo_filters_overlap(filters[a], filters[b]) != any)
                fail_msg("overlap(%s, %s) != %d", filters[a], filters[b], any);
            char m[64];
            int n = fo_filters_meet(filters[a], filters[b], m, sizeof m);
            if (!any) {
                if (n != -1)
                    fail_msg("meet(%s, %s) = %s, want none", filters[a], filters[b], m);
                continue;
            }
            if (n < 0 || (size_t)n != strlen(m) || !fo_filter_valid(m, strlen(m)))
                fail_msg("meet(%s, %s) = %d", filters[a], filters[b], n);
            uint64_t mb[WORDS];
            bits_of(m, mb);
            if (memcmp(mb, both, sizeof mb))
                fail_msg("meet(%s, %s) = %s does not match exactly both", filters[a], filters[b], m);
            /* the meet is covered by both sides */
            assert_true(fo_filter_covers(filters[a], m));
            assert_true(fo_filter_covers(filters[b], m));
        }
}

static void test_relations_examples(void **state)
{
    (void)state;
    struct { const char *outer, *inner; int want; } cv[] = {
        { ">", ">", 1 }, { ">", "a", 1 }, { ">", "*.*", 1 },
        { "a.>", "a.b.*", 1 }, { "a.>", "a.>", 1 }, { "a.>", "a", 0 },
        { "a.*", "a.>", 0 }, { "*.b", "a.>", 0 }, { "*.*", "a.b", 1 },
        { "a.b", "a.*", 0 }, { "a.*.c", "a.b.c", 1 }, { "a.b", "a.b.c", 0 },
        { "orders.admin.>", "orders.admin.x.>", 1 },
        { "orders.admin.>", "orders.*.x", 0 },
    };
    for (size_t i = 0; i < sizeof cv / sizeof cv[0]; i++)
        if (fo_filter_covers(cv[i].outer, cv[i].inner) != cv[i].want)
            fail_msg("covers(%s, %s) != %d", cv[i].outer, cv[i].inner, cv[i].want);

    struct { const char *a, *b, *want; } mt[] = {
        { "orders.>", "*.eu.*", "orders.eu.*" }, { ">", ">", ">" }, { ">", "*", "*" },
        { "a.>", "*.b.>", "a.b.>" }, { "aaaa.*", "*.bbbb", "aaaa.bbbb" },
        { "a.b", "a.c", NULL }, { "a.*", "a", NULL }, { "a.>", "a", NULL },
    };
    for (size_t i = 0; i < sizeof mt / sizeof mt[0]; i++) {
        char out[64];
        int n = fo_filters_meet(mt[i].a, mt[i].b, out, sizeof out);
        if (!mt[i].want)
            assert_int_equal(n, -1);
        else
            assert_string_equal(out, mt[i].want);
    }
    /* out too small: -2, never an overflow */
    char small[4];
    assert_int_equal(fo_filters_meet("aaaa.*", "*.bbbb", small, sizeof small), -2);
    assert_int_equal(fo_filters_meet(">", "abcd", small, sizeof small), -2);
    assert_int_equal(fo_filters_meet(">", "abc", small, sizeof small), 3);
    /* the documented bound: strlen(a) + strlen(b) + 1 */
    char a[256], b[256], big[512];
    memset(a, 'x', 255);
    a[255] = '\0';
    snprintf(b, sizeof b, "*");
    assert_int_equal(fo_filters_meet(a, b, big, strlen(a) + strlen(b) + 1), 255);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated),
        cmocka_unit_test(test_match_len),
        cmocka_unit_test(test_covers_brute_force),
        cmocka_unit_test(test_overlap_and_meet_brute_force),
        cmocka_unit_test(test_relations_examples),
    };
    return cmocka_run_group_tests_name("topic_name", tests, setup, NULL);
}
