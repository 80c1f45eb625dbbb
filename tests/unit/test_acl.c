/* test_acl.c -- permissions: allow/deny lists, the three questions
 * (topic_ok, filter_ok, covers_filter), rights, and the users-file rules
 * that feed them (%u, names that look like wildcards, empty files).
 *
 * Besides the table of cases, a property test draws random acls from
 * every filter of up to 3 tokens over {a, bb, *, >} and checks each answer
 * against brute force over every topic of up to 4 tokens over {a, bb, c}
 * (enough to tell any two such filters apart; see test_topic_name.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "acl.h"
#include "topic_name.h"
#include "users.h"

/* An acl from space-separated lists ("" = empty). */
static fo_acl_t *mk(const char *allow, const char *deny)
{
    static char buf[2][1024];
    const char *v[2][64];
    size_t n[2] = { 0, 0 };
    const char *src[2] = { allow, deny };
    for (int k = 0; k < 2; k++) {
        snprintf(buf[k], sizeof buf[k], "%s", src[k]);
        for (char *s = strtok(buf[k], " "); s; s = strtok(NULL, " "))
            v[k][n[k]++] = s;
    }
    fo_acl_t *a = NULL;
    assert_int_equal(fo_acl_build(v[0], n[0], v[1], n[1], &a), FO_OK);
    return a;
}

static int topic_ok(const fo_acl_t *a, const char *t) { return fo_acl_topic_ok(a, t, strlen(t)); }

static void test_build(void **state)
{
    (void)state;
    fo_acl_t *a = mk("b.> a.* b.> a.*", "x x.y");
    assert_int_equal(fo_acl_count(a, 0), 2);           /* duplicates dropped */
    assert_string_equal(fo_acl_filter_at(a, 0, 0), "a.*");
    assert_string_equal(fo_acl_filter_at(a, 0, 1), "b.>");
    assert_null(fo_acl_filter_at(a, 0, 2));
    assert_int_equal(fo_acl_count(a, 1), 2);
    assert_string_equal(fo_acl_filter_at(a, 1, 0), "x");
    assert_true(fo_acl_allows_any(a));
    fo_acl_t *b = mk("a.* b.>", "x.y x");               /* same sets, other order */
    assert_true(fo_acl_equal(a, b));
    fo_acl_t *c = mk("a.* b.>", "x.y");
    assert_false(fo_acl_equal(a, c));
    fo_acl_t *d = mk("a.* b.> x", "x.y");               /* a deny is not an allow */
    assert_false(fo_acl_equal(c, d));
    fo_acl_free(a);
    fo_acl_free(b);
    fo_acl_free(c);
    fo_acl_free(d);

    fo_acl_t *e = mk("", "");
    assert_false(fo_acl_allows_any(e));
    assert_false(topic_ok(e, "a"));
    assert_false(fo_acl_filter_ok(e, ">"));
    assert_false(fo_acl_covers_filter(e, "a"));
    fo_acl_free(e);
    fo_acl_free(NULL);

    /* invalid filters and oversize lists are refused, nothing returned */
    fo_acl_t *out = (fo_acl_t *)0x1;
    const char *bad[] = { "a..b" };
    assert_int_equal(fo_acl_build(bad, 1, NULL, 0, &out), FO_ERR_INVAL);
    assert_int_equal(fo_acl_build(NULL, 0, bad, 1, &out), FO_ERR_INVAL);
    const char *wild[] = { "a.>.b" };
    assert_int_equal(fo_acl_build(wild, 1, NULL, 0, &out), FO_ERR_INVAL);
    static const char *many[FO_ACL_MAX_FILTERS + 1];
    for (int i = 0; i <= FO_ACL_MAX_FILTERS; i++)
        many[i] = "a";
    assert_int_equal(fo_acl_build(many, FO_ACL_MAX_FILTERS + 1, NULL, 0, &out), FO_ERR_RANGE);
    assert_ptr_equal(out, (fo_acl_t *)0x1);
    assert_int_equal(fo_acl_build(many, FO_ACL_MAX_FILTERS, NULL, 0, &out), FO_OK);
    assert_int_equal(fo_acl_count(out, 0), 1);
    fo_acl_free(out);
}

typedef struct { const char *allow, *deny, *arg; int want; } acase_t;

static void run_cases(const acase_t *c, size_t n, int which)
{
    for (size_t i = 0; i < n; i++) {
        fo_acl_t *a = mk(c[i].allow, c[i].deny);
        int got = which == 0 ? topic_ok(a, c[i].arg)
                : which == 1 ? fo_acl_filter_ok(a, c[i].arg) : fo_acl_covers_filter(a, c[i].arg);
        if (got != c[i].want)
            fail_msg("case %zu: allow [%s] deny [%s] %s(%s) = %d, want %d", i, c[i].allow,
                     c[i].deny, which == 0 ? "topic_ok" : which == 1 ? "filter_ok" : "covers_filter",
                     c[i].arg, got, c[i].want);
        fo_acl_free(a);
    }
}

static void test_topic_ok_cases(void **state)
{
    (void)state;
    static const acase_t c[] = {
        /* default deny */
        { "", "", "orders.1", 0 },
        { "", "orders.>", "orders.1", 0 },
        /* allow */
        { ">", "", "anything.at.all", 1 },
        { "orders.>", "", "orders.1", 1 },
        { "orders.>", "", "orders", 0 },                 /* > needs one more token */
        { "orders.*", "", "orders.1.x", 0 },
        { "orders.* prices.>", "", "prices.eur.spot", 1 },
        { "orders.1", "", "orders.1", 1 },
        { "orders.1", "", "orders.10", 0 },
        /* deny wins */
        { "orders.>", "orders.admin.>", "orders.admin.x", 0 },
        { "orders.>", "orders.admin.>", "orders.admin", 1 },
        { "orders.>", "orders.admin.>", "orders.adminx.y", 1 },
        { ">", "orders.admin.>", "orders.admin.x", 0 },  /* not the allow-all short cut */
        { "orders.>", ">", "orders.1", 0 },
        { "orders.>", "*.1", "orders.1", 0 },
        { "orders.>", "*.1", "orders.2", 1 },
        { "a.b", "a.b", "a.b", 0 },
    };
    run_cases(c, sizeof c / sizeof c[0], 0);

    /* a topic given by length: bytes after it do not count */
    fo_acl_t *a = mk("orders.1", "");
    assert_true(fo_acl_topic_ok(a, "orders.1.more", 8));
    assert_false(fo_acl_topic_ok(a, "orders.1.more", 13));
    fo_acl_free(a);
}

static void test_filter_ok_cases(void **state)
{
    (void)state;
    static const acase_t c[] = {
        { "", "", ">", 0 },                              /* nothing allowed */
        { "prices.>", "", "prices.eur", 1 },
        { "prices.>", "", "orders.>", 0 },               /* no overlap */
        { "prices.>", "", ">", 1 },                      /* wide: bound per topic later */
        { "prices.>", "", "*.eur", 1 },
        { "prices.>", "", "prices", 0 },                 /* prices.> needs 2 tokens */
        { "orders.>", "orders.admin.>", "orders.admin.x.>", 0 },   /* one deny covers it */
        { "orders.>", "orders.admin.>", "orders.admin.*", 0 },
        { "orders.>", "orders.admin.>", "orders.*", 1 },
        { "orders.>", "orders.admin.>", "orders.>", 1 },
        /* the part the allow reaches is all denied: refused (meet, not the bare filter) */
        { "orders.>", "orders.admin.>", "*.admin.>", 0 },
        { "orders.> prices.>", "orders.admin.>", "*.admin.>", 1 },   /* prices.admin.x */
        { ">", ">", "a", 0 },
        { ">", "", "a.b.c", 1 },
        { "a.*", "a.b", "a.b", 0 },
        { "a.*", "a.b", "a.*", 1 },
        /* several denies together cover it: accepted, every topic refused later */
        { "a.>", "a.* a.*.>", "a.>", 1 },
    };
    run_cases(c, sizeof c / sizeof c[0], 1);
}

static void test_covers_filter_cases(void **state)
{
    (void)state;
    static const acase_t c[] = {
        { "", "", "a", 0 },
        { ">", "", ">", 1 },
        { "prices.>", "", "prices.>", 1 },
        { "prices.>", "", "prices.eur.*", 1 },
        { "prices.>", "", ">", 0 },                      /* reads more than allowed */
        { "prices.>", "prices.secret.>", "prices.>", 0 },/* a deny overlaps */
        { "prices.>", "prices.secret.>", "prices.eur.>", 1 },
        { "prices.>", "prices.secret.>", "prices.*.x", 0 },/* prices.secret.x */
        { "prices.eur.* prices.usd.*", "", "prices.*.x", 0 },  /* conservative */
        { ">", "x", ">", 0 },
        { "a.*", "", "a.b", 1 },
        { "a.b", "", "a.*", 0 },
    };
    run_cases(c, sizeof c / sizeof c[0], 2);
}

static void test_rights(void **state)
{
    (void)state;
    assert_int_equal(fo_right_parse("block"), FO_RIGHT_BLOCK);
    assert_int_equal(fo_right_parse("multicast"), FO_RIGHT_MULTICAST);
    assert_int_equal(fo_right_parse("Block"), 0);
    assert_int_equal(fo_right_parse(""), 0);
    assert_string_equal(fo_right_name(FO_RIGHT_BLOCK), "block");
    assert_string_equal(fo_right_name(FO_RIGHT_MULTICAST), "multicast");
    assert_null(fo_right_name(FO_RIGHTS_ALL));
    assert_null(fo_right_name(0));
}

/* ---------------------------------------------------------------- property */

#define MAXF 64
#define MAXT 128
static char pf[MAXF][16];
static int npf;
static char pt[MAXT][16];
static int npt;

static void gen(const char *const *alpha, int nalpha, int maxtok, char (*out)[16], int *n,
                const char *prefix, int depth)
{
    for (int i = 0; i < nalpha; i++) {
        char s[16];
        snprintf(s, sizeof s, "%s%s%s", prefix, *prefix ? "." : "", alpha[i]);
        strcpy(out[(*n)++], s);
        if (strcmp(alpha[i], ">") && depth + 1 < maxtok)
            gen(alpha, nalpha, maxtok, out, n, s, depth + 1);
    }
}

/* Brute force: the topics the acl lets through, among those matching f. */
static void brute(const char *const *al, int na, const char *const *dl, int nd, const char *f,
                  int *some_ok, int *all_ok)
{
    *some_ok = 0;
    *all_ok = 1;
    for (int t = 0; t < npt; t++) {
        if (!fo_topic_match(f, pt[t]))
            continue;
        int ok = 0;
        for (int i = 0; i < na; i++)
            ok |= fo_topic_match(al[i], pt[t]);
        for (int i = 0; i < nd; i++)
            ok &= !fo_topic_match(dl[i], pt[t]);
        *some_ok |= ok;
        *all_ok &= ok;
    }
}

static void test_property_brute_force(void **state)
{
    (void)state;
    static const char *const ftok[] = { "a", "bb", "*", ">" };
    static const char *const ttok[] = { "a", "bb", "c" };
    npf = npt = 0;
    gen(ftok, 4, 3, pf, &npf, "", 0);
    gen(ttok, 3, 4, pt, &npt, "", 0);
    assert_int_equal(npf, 52);
    assert_int_equal(npt, 120);
    srand(7);
    int exact_checked = 0;
    for (int iter = 0; iter < 3000; iter++) {
        const char *al[3], *dl[3];
        int na = rand() % 3, nd = rand() % 3;
        for (int i = 0; i < na; i++)
            al[i] = pf[rand() % npf];
        for (int i = 0; i < nd; i++)
            dl[i] = pf[rand() % npf];
        fo_acl_t *a = NULL;
        assert_int_equal(fo_acl_build(al, (size_t)na, dl, (size_t)nd, &a), FO_OK);
        /* topic_ok is exact */
        for (int t = 0; t < npt; t++) {
            int some, all;
            brute(al, na, dl, nd, pt[t], &some, &all);
            if (topic_ok(a, pt[t]) != some)
                fail_msg("topic_ok(%s) wrong (iter %d)", pt[t], iter);
        }
        for (int f = 0; f < npf; f++) {
            int some, all;
            brute(al, na, dl, nd, pf[f], &some, &all);
            int fok = fo_acl_filter_ok(a, pf[f]);
            int cov = fo_acl_covers_filter(a, pf[f]);
            /* sound: never refuses a filter that could receive something,
             * never claims to cover a filter with a refused topic */
            if (some && !fok)
                fail_msg("filter_ok(%s) refused a filter with allowed topics (iter %d)", pf[f], iter);
            if (cov && !all)
                fail_msg("covers_filter(%s) but a topic is refused (iter %d)", pf[f], iter);
            /* exact where the header says so: at most one deny for
             * filter_ok, at most one allow for covers_filter */
            if (nd <= 1 && fok != some)
                fail_msg("filter_ok(%s) = %d, brute force %d (iter %d)", pf[f], fok, some, iter);
            if (na <= 1 && cov != all)
                fail_msg("covers_filter(%s) = %d, brute force %d (iter %d)", pf[f], cov, all, iter);
            exact_checked++;
        }
        fo_acl_free(a);
    }
    assert_true(exact_checked > 100000);
}

/* A rough figure for the log (not an assertion: sanitizers and shared
 * cores make timing meaningless as a test). */
static void test_topic_ok_cost(void **state)
{
    (void)state;
    fo_acl_t *a = mk("orders.> events.alice.> prices.*.spot metrics.>", "orders.admin.> prices.x.spot");
    const char *topic = "prices.eur.spot";
    size_t tl = strlen(topic);
    struct timespec t0, t1;
    int ok = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 200000; i++)
        ok += fo_acl_topic_ok(a, topic, tl);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(ok, 200000);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 200000;
    printf("fo_acl_topic_ok, 4 allow + 2 deny: %.1f ns per call\n", ns);
    fo_acl_free(a);
}

/* ---------------------------------------------------------------- users file */

static char hash[FO_USERS_HASH_MAX];

static int setup_hash(void **state)
{
    (void)state;
    return fo_users_hash_secret("pw", FO_HASH_TEST_MIN, hash) == FO_OK ? 0 : -1;
}

/* Parse text where every "H" word stands for the hash. */
static fo_err_t parse(const char *text, fo_users_t **out, char *err, size_t errlen)
{
    char buf[8192];
    size_t n = 0;
    for (const char *s = text; *s && n + FO_USERS_HASH_MAX < sizeof buf; s++) {
        if (*s == 'H' && (s == text || s[-1] == ' ') && (s[1] == '\n' || s[1] == '\0' || s[1] == ' ')) {
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s", hash);
        } else {
            buf[n++] = *s;
        }
    }
    return fo_users_parse("users.conf", buf, n, out, err, errlen);
}

static const fo_acl_t *acl_of(const fo_users_t *t, const char *name, fo_dir_t dir)
{
    const fo_user_t *u = fo_users_find(t, name);
    assert_non_null(u);
    return fo_user_acl(u, dir);
}

static void test_file_permissions(void **state)
{
    (void)state;
    char err[512];
    fo_users_t *t = NULL;
    assert_int_equal(parse("user alice password H\n"
                           "user alice publish   allow orders.> events.%u.>\n"
                           "user alice publish   deny  orders.admin.>\n"
                           "user alice subscribe allow prices.> orders.> %u\n"
                           "user bob   password H\n"
                           "user root  token H\n"
                           "user root  publish allow >\n"
                           "user root  subscribe allow >\n",
                           &t, err, sizeof err), FO_OK);
    const fo_acl_t *ap = acl_of(t, "alice", FO_DIR_PUBLISH);
    const fo_acl_t *as = acl_of(t, "alice", FO_DIR_SUBSCRIBE);
    assert_true(topic_ok(ap, "orders.1"));
    assert_false(topic_ok(ap, "orders.admin.x"));        /* deny wins */
    assert_true(topic_ok(ap, "events.alice.login"));     /* %u */
    assert_false(topic_ok(ap, "events.bob.login"));
    assert_false(topic_ok(ap, "prices.eur"));            /* subscribe-only */
    assert_true(topic_ok(as, "prices.eur"));
    assert_true(topic_ok(as, "alice"));
    assert_false(topic_ok(as, "events.alice.login"));
    assert_true(fo_acl_filter_ok(as, ">"));
    assert_false(fo_acl_covers_filter(as, ">"));
    assert_true(fo_acl_covers_filter(as, "prices.>"));
    assert_int_equal(fo_user_rights(fo_users_find(t, "alice")), 0);

    /* bob has no allow line: default deny, both ways */
    const fo_acl_t *bp = acl_of(t, "bob", FO_DIR_PUBLISH);
    const fo_acl_t *bs = acl_of(t, "bob", FO_DIR_SUBSCRIBE);
    assert_false(fo_acl_allows_any(bp));
    assert_false(topic_ok(bp, "orders.1"));
    assert_false(fo_acl_filter_ok(bs, ">"));
    assert_false(fo_acl_filter_ok(bs, "orders.1"));

    /* root: `allow >` grants everything */
    assert_true(topic_ok(acl_of(t, "root", FO_DIR_PUBLISH), "x.y.z"));
    assert_true(fo_acl_covers_filter(acl_of(t, "root", FO_DIR_SUBSCRIBE), ">"));
    fo_users_unref(t);
}

static void test_file_refusals(void **state)
{
    (void)state;
    static const struct { const char *text, *want; } c[] = {
        /* names that could widen a filter through %u */
        { "user * password H\n", "users.conf:1: user name \"*\" is refused" },
        { "user > password H\n", "users.conf:1: user name \">\" is refused" },
        { "user a.b password H\n", "users.conf:1: user name \"a.b\" is refused" },
        { "user a%u password H\n", "users.conf:1: user name \"a%u\" is refused" },
        { "user a\x01 password H\n", "users.conf:1: a control byte (\\x01)" },
        { "user 12345678901234567890123456789012345678901234567890123456789012345 password H\n",
          "is longer than 64 bytes" },
        /* %u only as a whole token, no other % */
        { "user al password H\nuser al publish allow events.x%u\n",
          "users.conf:2: user \"al\" publish allow: \"events.x%u\": %u must be a whole token" },
        { "user al password H\nuser al publish allow a.%c\n", "%u must be a whole token" },
        { "user al password H\nuser al subscribe deny %u%u\n", "%u must be a whole token" },
        /* filters checked after substitution */
        { "user al password H\nuser al publish allow a..b\n",
          "users.conf:2: user \"al\" publish allow: \"a..b\" is not a valid filter" },
        { "user al password H\nuser al publish allow a.>.b\n", "is not a valid filter" },
        /* empty, comment-only and no-credential files: never allow-all */
        { "", "users.conf: no user is defined (an empty users file is refused" },
        { "# nobody\n\n   \n", "users.conf: no user is defined" },
        { "user al publish allow >\n", "users.conf:1: user \"al\" has no password or token" },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char err[512] = "";
        fo_users_t *t = NULL;
        if (parse(c[i].text, &t, err, sizeof err) != FO_ERR_INVAL || !strstr(err, c[i].want))
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, c[i].want);
        assert_null(t);
        assert_null(strchr(err, '\n'));                  /* one line */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_topic_ok_cases),
        cmocka_unit_test(test_filter_ok_cases),
        cmocka_unit_test(test_covers_filter_cases),
        cmocka_unit_test(test_rights),
        cmocka_unit_test(test_property_brute_force),
        cmocka_unit_test(test_topic_ok_cost),
        cmocka_unit_test(test_file_permissions),
        cmocka_unit_test(test_file_refusals),
    };
    return cmocka_run_group_tests_name("acl", tests, setup_hash, NULL);
}
