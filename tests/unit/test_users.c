/* test_users.c -- the users file (grammar, errors), tables (find, order,
 * generations, references), per-name limit counters across reloads,
 * fo_user_diff, the --user/--password shorthand, hashing and
 * fo_users_hash_cmd (from a pipe and from a terminal, echo off).
 *
 * Hashes use FO_HASH_TEST_MIN so the suite stays fast; counter names are
 * unique per test (the counters live for the whole process).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>
#include "users.h"

static char hpw[FO_USERS_HASH_MAX], htok[FO_USERS_HASH_MAX];

static int setup(void **state)
{
    (void)state;
    fo_users_set_hash_cost(FO_HASH_TEST_MIN);
    if (fo_users_hash_secret("alice-pw", FO_HASH_TEST_MIN, hpw) != FO_OK ||
        fo_users_hash_secret("svc-token", FO_HASH_TEST_MIN, htok) != FO_OK)
        return -1;
    return 0;
}

/* text with "HPW" / "HTOK" replaced by the hashes */
static char *expand(const char *text, size_t *len)
{
    size_t cap = strlen(text) * 2 + 4096;
    char *b = malloc(cap);
    size_t n = 0;
    for (const char *s = text; *s;) {
        if (!strncmp(s, "HPW", 3)) {
            n += (size_t)snprintf(b + n, cap - n, "%s", hpw);
            s += 3;
        } else if (!strncmp(s, "HTOK", 4)) {
            n += (size_t)snprintf(b + n, cap - n, "%s", htok);
            s += 4;
        } else {
            b[n++] = *s++;
        }
    }
    b[n] = '\0';
    *len = n;
    return b;
}

static fo_err_t parse(const char *text, fo_users_t **out, char *err, size_t errlen)
{
    size_t n;
    char *b = expand(text, &n);
    fo_err_t e = fo_users_parse("users.conf", b, n, out, err, errlen);
    free(b);
    return e;
}

static int verifies(const char *hash, const char *secret)
{
    return crypto_pwhash_str_verify(hash, secret, strlen(secret)) == 0;
}

static int topic_ok(const fo_user_t *u, fo_dir_t d, const char *t)
{
    return fo_acl_topic_ok(fo_user_acl(u, d), t, strlen(t));
}

/* The brief's example, exactly, comments included. */
static void test_example_file(void **state)
{
    (void)state;
    char err[512] = "";
    fo_users_t *t = NULL;
    assert_int_equal(parse(
        "# fanout users\n"
        "user alice password HPW              # HASH as printed by fanoutd --hash-password\n"
        "user svc   token    HTOK              # same command, for a token\n"
        "user alice publish   allow orders.> events.%u.>\n"
        "user alice publish   deny  orders.admin.>\n"
        "user alice subscribe allow prices.> orders.>\n"
        "user alice allow block multicast      # the rights that affect others\n"
        "user alice limit connections 100      # also: subscriptions, topics\n",
        &t, err, sizeof err), FO_OK);
    assert_string_equal(err, "");
    assert_int_equal(fo_users_count(t), 2);
    const fo_user_t *a = fo_users_find(t, "alice"), *s = fo_users_find(t, "svc");
    assert_non_null(a);
    assert_non_null(s);
    assert_string_equal(fo_user_name(a), "alice");
    assert_true(verifies(fo_user_hash(a, FO_SECRET_PASSWORD), "alice-pw"));
    assert_null(fo_user_hash(a, FO_SECRET_TOKEN));
    assert_null(fo_user_hash(s, FO_SECRET_PASSWORD));
    assert_true(verifies(fo_user_hash(s, FO_SECRET_TOKEN), "svc-token"));
    assert_null(fo_user_hash(s, (fo_secret_kind_t)7));

    assert_true(topic_ok(a, FO_DIR_PUBLISH, "orders.42"));
    assert_true(topic_ok(a, FO_DIR_PUBLISH, "events.alice.login"));
    assert_false(topic_ok(a, FO_DIR_PUBLISH, "events.svc.login"));
    assert_false(topic_ok(a, FO_DIR_PUBLISH, "orders.admin.drop"));
    assert_true(topic_ok(a, FO_DIR_SUBSCRIBE, "prices.eur"));
    assert_false(topic_ok(a, FO_DIR_SUBSCRIBE, "events.alice.login"));
    assert_int_equal(fo_user_rights(a), FO_RIGHT_BLOCK | FO_RIGHT_MULTICAST);
    assert_int_equal(fo_user_limit(a, FO_LIMIT_CONNECTIONS), 100);
    assert_int_equal(fo_user_limit(a, FO_LIMIT_SUBSCRIPTIONS), FO_USERS_LIMIT_NONE);
    assert_int_equal(fo_user_limit(a, FO_LIMIT_TOPICS), FO_USERS_LIMIT_NONE);
    assert_int_equal(fo_user_limit(a, FO_LIMIT__COUNT), 0);

    /* svc: defaults are closed */
    assert_false(topic_ok(s, FO_DIR_PUBLISH, "orders.1"));
    assert_false(fo_acl_filter_ok(fo_user_acl(s, FO_DIR_SUBSCRIBE), ">"));
    assert_int_equal(fo_user_rights(s), 0);
    for (int i = 0; i < FO_LIMIT__COUNT; i++)
        assert_int_equal(fo_user_limit(s, (fo_limit_t)i), FO_USERS_LIMIT_NONE);
    fo_users_unref(t);
}

static void test_grammar_details(void **state)
{
    (void)state;
    char err[512];
    fo_users_t *t = NULL;
    /* CRLF, tabs, lines about one user spread out and repeated, both
     * secrets, a last line without \n, limit 0, names with UTF-8 and '#' */
    assert_int_equal(parse("user\tbob\tpassword\tHPW\r\n"
                           "user caf\xc3\xa9 token HTOK\n"
                           "user bob publish allow a.> \r\n"
                           "user a#b token HTOK\n"
                           "user bob token HTOK\n"
                           "user bob publish allow b.> a.>\n"
                           "user bob publish deny a.x\n"
                           "user bob publish deny a.y\n"
                           "user bob limit subscriptions 0\n"
                           "user bob limit topics 4294967295\n"
                           "user bob allow multicast",
                           &t, err, sizeof err), FO_OK);
    const fo_user_t *b = fo_users_find(t, "bob");
    assert_non_null(b);
    assert_non_null(fo_user_hash(b, FO_SECRET_PASSWORD));
    assert_non_null(fo_user_hash(b, FO_SECRET_TOKEN));
    const fo_acl_t *p = fo_user_acl(b, FO_DIR_PUBLISH);
    assert_int_equal(fo_acl_count(p, 0), 2);
    assert_int_equal(fo_acl_count(p, 1), 2);
    assert_int_equal(fo_user_limit(b, FO_LIMIT_SUBSCRIPTIONS), 0);
    assert_int_equal(fo_user_limit(b, FO_LIMIT_TOPICS), 4294967295u);
    assert_int_equal(fo_user_rights(b), FO_RIGHT_MULTICAST);
    assert_non_null(fo_users_find(t, "caf\xc3\xa9"));
    assert_non_null(fo_users_find(t, "a#b"));
    /* sorted by name */
    assert_int_equal(fo_users_count(t), 3);
    for (size_t i = 1; i < fo_users_count(t); i++)
        assert_true(strcmp(fo_user_name(fo_users_at(t, i - 1)), fo_user_name(fo_users_at(t, i))) < 0);
    assert_null(fo_users_at(t, 3));
    assert_null(fo_users_find(t, "nobody"));
    assert_null(fo_users_find(t, ""));
    assert_null(fo_users_find(t, NULL));
    char longname[200];
    memset(longname, 'b', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_null(fo_users_find(t, longname));
    fo_users_unref(t);

    /* a 64-byte name is fine, and %u may make a filter of up to 255 bytes */
    char text[1024], name[65], tail[64];
    memset(name, 'n', 64);
    name[64] = '\0';
    memset(tail, 't', 60);
    tail[60] = '\0';
    snprintf(text, sizeof text, "user %s password HPW\nuser %s publish allow %%u.%%u.%%u.%s\n",
             name, name, tail);                     /* 3 * 64 + 3 + 60 = 255 bytes */
    assert_int_equal(parse(text, &t, err, sizeof err), FO_OK);
    assert_int_equal(strlen(fo_acl_filter_at(fo_user_acl(fo_users_find(t, name), FO_DIR_PUBLISH), 0, 0)), 255);
    fo_users_unref(t);
    snprintf(text, sizeof text, "user %s password HPW\nuser %s publish allow %%u.%%u.%%u.%st\n",
             name, name, tail);                     /* 256 */
    assert_int_equal(parse(text, &t, err, sizeof err), FO_ERR_INVAL);
    assert_non_null(strstr(err, "publish allow: \"%u.%u.%u.tttt"));
    assert_non_null(strstr(err, "is longer than 255 bytes"));
    snprintf(text, sizeof text, "user %s password HPW\nuser %s publish allow %%u.%%u.%%u.%%u\n", name, name);
    assert_int_equal(parse(text, &t, err, sizeof err), FO_ERR_INVAL);
    assert_non_null(strstr(err, "is longer than 255 bytes"));
}

static void test_errors(void **state)
{
    (void)state;
    static const struct { const char *text, *want; } c[] = {
        { "users alice password HPW\n",
          "fanoutd: users.conf:1: \"users\" is not a directive (every line is: user NAME "
          "password|token|publish|subscribe|allow|limit ...)" },
        { "user\n", "fanoutd: users.conf:1: user: missing NAME" },
        { "user al\n", "fanoutd: users.conf:1: user \"al\": missing directive (valid: password, token, "
          "publish, subscribe, allow, limit)" },
        { "user al pasword HPW\n", "fanoutd: users.conf:1: user \"al\": unknown directive \"pasword\" "
          "(valid: password, token, publish, subscribe, allow, limit)" },
        { "user al password\n", "users.conf:1: user \"al\" password: expected one HASH" },
        { "user al password HPW extra\n", "and nothing after it" },
        { "user al password secret\n", "users.conf:1: user \"al\" password: not an argon2id hash "
          "(make one with fanoutd --hash-password)" },
        { "user al password $argon2i$v=19$m=8,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA\n",
          "not an argon2id hash" },
        { "user al password HPW\n\n# x\nuser al password HPW\n",
          "users.conf:4: user \"al\" password: given twice (first on line 1)" },
        { "user al token HTOK\nuser al token HTOK\n", "users.conf:2: user \"al\" token: given twice" },
        { "user al password HPW\nuser al publish\n",
          "users.conf:2: user \"al\" publish: expected allow or deny, then one or more filters" },
        { "user al password HPW\nuser al subscribe permit x\n", "expected allow or deny" },
        { "user al password HPW\nuser al subscribe deny\n",
          "users.conf:2: user \"al\" subscribe deny: expected one or more filters" },
        { "user al password HPW\nuser al allow\n", "user \"al\" allow: expected one or more rights" },
        { "user al password HPW\nuser al allow block blok\n",
          "users.conf:2: user \"al\" allow: \"blok\" is not a right (valid: block, multicast)" },
        { "user al password HPW\nuser al limit connections\n",
          "user \"al\" limit: expected connections|subscriptions|topics and a number" },
        { "user al password HPW\nuser al limit conns 3\n", "\"conns\" is not one of connections|" },
        { "user al password HPW\nuser al limit topics -1\n",
          "user \"al\" limit topics: \"-1\" is not a whole number 0..4294967295" },
        { "user al password HPW\nuser al limit topics 4294967296\n", "is not a whole number" },
        { "user al password HPW\nuser al limit topics 1x\n", "is not a whole number" },
        { "user al password HPW\nuser al limit topics 1\nuser al limit topics 2\n",
          "users.conf:3: user \"al\" limit topics: given twice (first on line 2)" },
        { "user al password HPW\nuser bo publish allow >\n",
          "users.conf:2: user \"bo\" has no password or token" },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char err[512] = "";
        fo_users_t *t = NULL;
        size_t n;
        char *b = expand(c[i].text, &n);
        fo_err_t e = fo_users_parse("users.conf", b, n, &t, err, sizeof err);
        free(b);
        if (e != FO_ERR_INVAL || !strstr(err, c[i].want))
            fail_msg("case %zu: got %d \"%s\"\n want \"%s\"", i, e, err, c[i].want);
        assert_null(t);
        assert_null(strchr(err, '\n'));
    }
    /* a NUL byte inside a line */
    char err[256], nul[512];
    fo_users_t *t = NULL;
    int nn = snprintf(nul, sizeof nul, "user al password %s\nuser al publish allow a", hpw);
    memcpy(nul + nn, "\0b\n", 3);
    assert_int_equal(fo_users_parse("u", nul, (size_t)nn + 3, &t, err, sizeof err), FO_ERR_INVAL);
    assert_string_equal(err, "fanoutd: u:2: a control byte (\\x00) in the line");

    /* a hash that would cost too much to verify (m = 4 GiB) */
    char big[FO_USERS_HASH_MAX + 64], text[512];
    const char *rest = strchr(hpw + strlen("$argon2id$v=19$m="), ',');
    snprintf(big, sizeof big, "$argon2id$v=19$m=4194304%s", rest);
    snprintf(text, sizeof text, "user al password %s\n", big);
    assert_int_equal(fo_users_parse("u", text, strlen(text), &t, err, sizeof err), FO_ERR_INVAL);
    assert_non_null(strstr(err, "u:1: user \"al\" password: the hash costs too much to verify"));

    /* a long line; and more filters than a list may hold */
    size_t cap = FO_USERS_LINE_MAX * 2;
    char *lng = malloc(cap);
    int l0 = snprintf(lng, cap, "user al password %s\nuser al publish allow ", hpw);
    size_t l = (size_t)l0;
    for (; l < (size_t)l0 + FO_USERS_LINE_MAX; l++)
        lng[l] = 'a';
    lng[l++] = '\n';
    assert_int_equal(fo_users_parse("u", lng, l, &t, err, sizeof err), FO_ERR_INVAL);
    assert_string_equal(err, "fanoutd: u:2: line too long (at most 4096 bytes)");
    for (l = (size_t)l0; l < (size_t)l0 + 2 * 1030; l++)
        lng[l] = l % 2 ? 'a' : ' ';
    lng[l++] = '\n';
    assert_int_equal(fo_users_parse("u", lng, l, &t, err, sizeof err), FO_ERR_INVAL);
    assert_string_equal(err, "fanoutd: u:2: user \"al\" publish allow: more than 1024 filters");
    free(lng);

    /* err is optional */
    assert_int_equal(fo_users_parse("u", "", 0, &t, NULL, 0), FO_ERR_INVAL);
}

static void test_load_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/fo-users-XXXXXX", path[300], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/users", dir);
    fo_users_t *t = NULL;

    /* missing */
    assert_int_equal(fo_users_load(path, &t, err, sizeof err), FO_ERR_IO);
    char want[400];
    snprintf(want, sizeof want, "fanoutd: %s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);
    /* a directory cannot be read */
    assert_int_equal(fo_users_load(dir, &t, err, sizeof err), FO_ERR_IO);
    assert_non_null(strstr(err, ": cannot read: Is a directory"));
    /* empty */
    FILE *f = fopen(path, "w");
    fclose(f);
    assert_int_equal(fo_users_load(path, &t, err, sizeof err), FO_ERR_INVAL);
    snprintf(want, sizeof want, "fanoutd: %s: no user is defined (an empty users file is refused; "
             "it never means allow-all)", path);
    assert_string_equal(err, want);
    assert_null(t);
    /* good, with an error line number counted from the file */
    f = fopen(path, "w");
    fprintf(f, "# users\nuser al password %s\nuser al subscribe allow x.>\n", hpw);
    fclose(f);
    assert_int_equal(fo_users_load(path, &t, err, sizeof err), FO_OK);
    assert_non_null(fo_users_find(t, "al"));
    fo_users_unref(t);
    f = fopen(path, "a");
    fprintf(f, "user al subscribe allow x..y\n");
    fclose(f);
    assert_int_equal(fo_users_load(path, &t, err, sizeof err), FO_ERR_INVAL);
    snprintf(want, sizeof want, "fanoutd: %s:4: user \"al\" subscribe allow: \"x..y\"", path);
    assert_non_null(strstr(err, want));
    assert_int_equal(fo_users_load(NULL, &t, err, sizeof err), FO_ERR_IO);
    unlink(path);
    rmdir(dir);
}

static void test_tables(void **state)
{
    (void)state;
    char err[256];
    fo_users_t *a = NULL, *b = NULL;
    assert_int_equal(parse("user t1 password HPW\n", &a, err, sizeof err), FO_OK);
    assert_int_equal(parse("user t1 password HPW\n", &b, err, sizeof err), FO_OK);
    assert_true(fo_users_generation(a) > 0);
    assert_true(fo_users_generation(b) > fo_users_generation(a));
    /* references: the user stays valid while any reference is held */
    assert_ptr_equal(fo_users_ref(a), a);
    const fo_user_t *u = fo_users_find(a, "t1");
    fo_users_unref(a);
    assert_string_equal(fo_user_name(u), "t1");
    fo_users_unref(a);
    fo_users_unref(b);
    fo_users_unref(NULL);
}

static void test_dummy_hash(void **state)
{
    (void)state;
    char err[256];
    fo_users_t *t = NULL;
    assert_int_equal(parse("user d1 token HTOK\nuser d0 password HPW\n", &t, err, sizeof err), FO_OK);
    const char *d = fo_users_dummy_hash(t);
    assert_int_equal(strncmp(d, "$argon2id$v=19$", 15), 0);
    /* same cost as the first hash in the file (HTOK, test cost) */
    assert_int_equal(crypto_pwhash_str_needs_rehash(d, crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN), 0);
    assert_false(verifies(d, ""));
    assert_false(verifies(d, "alice-pw"));
    assert_false(verifies(d, "svc-token"));
    assert_string_not_equal(d, hpw);
    fo_users_unref(t);
}

static void test_limits(void **state)
{
    (void)state;
    char err[256];
    fo_users_t *t1 = NULL, *t2 = NULL;
    assert_int_equal(parse("user lim password HPW\nuser lim limit connections 2\n"
                           "user lim limit subscriptions 0\n", &t1, err, sizeof err), FO_OK);
    const fo_user_t *u1 = fo_users_find(t1, "lim");
    assert_int_equal(fo_user_take(u1, FO_LIMIT_CONNECTIONS), FO_OK);
    assert_int_equal(fo_user_take(u1, FO_LIMIT_CONNECTIONS), FO_OK);
    assert_int_equal(fo_user_take(u1, FO_LIMIT_CONNECTIONS), FO_ERR_BUSY);
    assert_int_equal(fo_user_used(u1, FO_LIMIT_CONNECTIONS), 2);
    assert_int_equal(fo_user_take(u1, FO_LIMIT_SUBSCRIPTIONS), FO_ERR_BUSY);   /* 0 = none */
    assert_int_equal(fo_user_take(u1, FO_LIMIT_TOPICS), FO_OK);                /* unlimited */
    assert_int_equal(fo_user_take(u1, FO_LIMIT__COUNT), FO_ERR_INVAL);
    assert_int_equal(fo_user_used(u1, FO_LIMIT__COUNT), 0);

    /* a reload keeps the counts: the new version sees 2 connections */
    assert_int_equal(parse("user lim password HPW\nuser lim limit connections 3\n", &t2, err, sizeof err), FO_OK);
    const fo_user_t *u2 = fo_users_find(t2, "lim");
    assert_int_equal(fo_user_used(u2, FO_LIMIT_CONNECTIONS), 2);
    assert_int_equal(fo_user_take(u2, FO_LIMIT_CONNECTIONS), FO_OK);
    assert_int_equal(fo_user_take(u2, FO_LIMIT_CONNECTIONS), FO_ERR_BUSY);
    assert_int_equal(fo_user_take(u1, FO_LIMIT_CONNECTIONS), FO_ERR_BUSY);   /* old version: 2 */
    fo_users_unref(t1);                        /* connections outlive the old table */
    fo_user_give(u2, FO_LIMIT_CONNECTIONS);
    fo_user_give(u2, FO_LIMIT_CONNECTIONS);
    fo_user_give(u2, FO_LIMIT_CONNECTIONS);
    assert_int_equal(fo_user_used(u2, FO_LIMIT_CONNECTIONS), 0);
    fo_user_give(u2, FO_LIMIT_CONNECTIONS);    /* an extra give stays at 0 */
    assert_int_equal(fo_user_used(u2, FO_LIMIT_CONNECTIONS), 0);
    fo_user_give(u2, FO_LIMIT__COUNT);
    fo_user_give(u2, FO_LIMIT_TOPICS);
    fo_users_unref(t2);
}

typedef struct { const fo_user_t *u; int rounds; _Atomic int *peak; _Atomic int *busy; } lim_arg_t;

static void *limit_worker(void *p)
{
    lim_arg_t *a = p;
    for (int i = 0; i < a->rounds; i++) {
        if (fo_user_take(a->u, FO_LIMIT_SUBSCRIPTIONS) != FO_OK) {
            atomic_fetch_add(a->busy, 1);
            continue;
        }
        int used = (int)fo_user_used(a->u, FO_LIMIT_SUBSCRIPTIONS);
        int peak = atomic_load(a->peak);
        while (used > peak && !atomic_compare_exchange_weak(a->peak, &peak, used))
            ;
        fo_user_give(a->u, FO_LIMIT_SUBSCRIPTIONS);
    }
    return NULL;
}

static void test_limits_threads(void **state)
{
    (void)state;
    char err[256];
    fo_users_t *t = NULL;
    assert_int_equal(parse("user thr password HPW\nuser thr limit subscriptions 3\n", &t, err, sizeof err), FO_OK);
    _Atomic int peak = 0, busy = 0;
    lim_arg_t arg = { fo_users_find(t, "thr"), 20000, &peak, &busy };
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, limit_worker, &arg), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_true(atomic_load(&peak) <= 3);
    assert_int_equal(fo_user_used(arg.u, FO_LIMIT_SUBSCRIPTIONS), 0);
    fo_users_unref(t);
}

static void test_diff(void **state)
{
    (void)state;
    char err[256];
    const char *base = "user df password HPW\nuser df publish allow a.>\nuser df allow block\n";
    static const struct { const char *next; unsigned want; } c[] = {
        { "user df password HPW\nuser df publish allow a.>\nuser df allow block\n", 0 },
        /* the same sets in another order and spelling */
        { "user df allow block\nuser df publish allow a.> a.>\nuser df password HPW\n", 0 },
        { "user df password HPW\nuser df publish allow b.>\nuser df allow block\n", FO_USER_PUBLISH },
        { "user df password HPW\nuser df publish allow a.>\nuser df publish deny a.x\n"
          "user df allow block\n", FO_USER_PUBLISH },
        { "user df password HPW\nuser df publish allow a.>\nuser df subscribe allow a.>\n"
          "user df allow block\n", FO_USER_SUBSCRIBE },
        { "user df password HPW\nuser df publish allow a.>\nuser df allow multicast\n",
          FO_USER_LOST_BLOCK },
        { "user df password HPW\nuser df publish allow a.>\nuser df allow block multicast\n", 0 },
        { "user df password HPW\nuser df token HTOK\nuser df publish allow a.>\nuser df allow block\n",
          FO_USER_CREDENTIALS },
        { "user df token HTOK\nuser df publish allow a.>\nuser df allow block\n", FO_USER_CREDENTIALS },
        { "user df password HPW\nuser df publish allow a.>\nuser df allow block\n"
          "user df limit topics 9\n", FO_USER_LIMITS },
        { "user df password HPW\n", FO_USER_PUBLISH | FO_USER_LOST_BLOCK },
    };
    fo_users_t *old = NULL;
    assert_int_equal(parse(base, &old, err, sizeof err), FO_OK);
    const fo_user_t *uo = fo_users_find(old, "df");
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        fo_users_t *nt = NULL;
        assert_int_equal(parse(c[i].next, &nt, err, sizeof err), FO_OK);
        unsigned d = fo_user_diff(uo, fo_users_find(nt, "df"));
        if (d != c[i].want)
            fail_msg("case %zu: diff 0x%x, want 0x%x", i, d, c[i].want);
        fo_users_unref(nt);
    }
    assert_int_equal(fo_user_diff(uo, NULL), FO_USER_REMOVED);
    /* the same password hashed again (new salt) is a credential change */
    char h2[FO_USERS_HASH_MAX], text[512];
    assert_int_equal(fo_users_hash_secret("alice-pw", FO_HASH_TEST_MIN, h2), FO_OK);
    snprintf(text, sizeof text, "user df password %s\nuser df publish allow a.>\nuser df allow block\n", h2);
    fo_users_t *nt = NULL;
    assert_int_equal(fo_users_parse("u", text, strlen(text), &nt, err, sizeof err), FO_OK);
    assert_int_equal(fo_user_diff(uo, fo_users_find(nt, "df")), FO_USER_CREDENTIALS);
    fo_users_unref(nt);
    /* multicast lost, and granted back */
    fo_users_t *m1 = NULL, *m2 = NULL;
    assert_int_equal(parse("user mc password HPW\nuser mc allow multicast block\n", &m1, err, sizeof err), FO_OK);
    assert_int_equal(parse("user mc password HPW\n", &m2, err, sizeof err), FO_OK);
    assert_int_equal(fo_user_diff(fo_users_find(m1, "mc"), fo_users_find(m2, "mc")),
                     FO_USER_LOST_BLOCK | FO_USER_LOST_MULTICAST);
    assert_int_equal(fo_user_diff(fo_users_find(m2, "mc"), fo_users_find(m1, "mc")), 0);
    fo_users_unref(m1);
    fo_users_unref(m2);
    fo_users_unref(old);
}

static void test_single(void **state)
{
    (void)state;
    fo_users_t *t = NULL;
    assert_int_equal(fo_users_single("admin", "s3cret", FO_HASH_TEST_MIN, &t), FO_OK);
    assert_int_equal(fo_users_count(t), 1);
    const fo_user_t *u = fo_users_find(t, "admin");
    assert_non_null(u);
    assert_true(verifies(fo_user_hash(u, FO_SECRET_PASSWORD), "s3cret"));
    assert_false(verifies(fo_user_hash(u, FO_SECRET_PASSWORD), "s3cre"));
    assert_null(fo_user_hash(u, FO_SECRET_TOKEN));
    assert_int_equal(fo_user_rights(u), FO_RIGHTS_ALL);
    assert_true(topic_ok(u, FO_DIR_PUBLISH, "any.thing"));
    assert_true(fo_acl_covers_filter(fo_user_acl(u, FO_DIR_SUBSCRIBE), ">"));
    assert_int_equal(fo_user_limit(u, FO_LIMIT_CONNECTIONS), FO_USERS_LIMIT_NONE);
    assert_false(verifies(fo_users_dummy_hash(t), "s3cret"));
    assert_true(fo_users_generation(t) > 0);
    fo_users_unref(t);

    fo_users_t *x = (fo_users_t *)0x1;
    assert_int_equal(fo_users_single("a.b", "pw", FO_HASH_TEST_MIN, &x), FO_ERR_INVAL);
    assert_int_equal(fo_users_single(">", "pw", FO_HASH_TEST_MIN, &x), FO_ERR_INVAL);
    assert_int_equal(fo_users_single("", "pw", FO_HASH_TEST_MIN, &x), FO_ERR_INVAL);
    assert_int_equal(fo_users_single("ok", "", FO_HASH_TEST_MIN, &x), FO_ERR_INVAL);
    assert_int_equal(fo_users_single(NULL, "pw", FO_HASH_TEST_MIN, &x), FO_ERR_INVAL);
    assert_ptr_equal(x, (fo_users_t *)0x1);
}

static void test_hash_secret(void **state)
{
    (void)state;
    char h[FO_USERS_HASH_MAX];
    assert_int_equal(fo_users_hash_secret("correct horse", FO_HASH_TEST_MIN, h), FO_OK);
    assert_int_equal(strncmp(h, "$argon2id$v=19$m=8,t=1,p=1$", 27), 0);
    assert_true(verifies(h, "correct horse"));
    assert_false(verifies(h, "correct horsf"));
    assert_int_equal(fo_users_hash_secret("", FO_HASH_TEST_MIN, h), FO_ERR_INVAL);
    assert_int_equal(fo_users_hash_secret(NULL, FO_HASH_TEST_MIN, h), FO_ERR_INVAL);
    assert_int_equal(fo_users_hash_secret("x", (fo_hash_cost_t)9, h), FO_ERR_INVAL);
    char big[FO_USERS_SECRET_MAX + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(fo_users_hash_secret(big, FO_HASH_TEST_MIN, h), FO_ERR_INVAL);
    big[FO_USERS_SECRET_MAX] = '\0';
    assert_int_equal(fo_users_hash_secret(big, FO_HASH_TEST_MIN, h), FO_OK);
}

/* Run fo_users_hash_cmd on `input` through a pipe-like file. */
static int hash_cmd(const char *input, size_t len, char *out, size_t outlen, char *err, size_t errlen)
{
    FILE *in = tmpfile(), *o = tmpfile(), *e = tmpfile();
    fwrite(input, 1, len, in);
    rewind(in);
    int rc = fo_users_hash_cmd(in, o, e);
    rewind(o);
    rewind(e);
    size_t n = fread(out, 1, outlen - 1, o);
    out[n] = '\0';
    n = fread(err, 1, errlen - 1, e);
    err[n] = '\0';
    fclose(in);
    fclose(o);
    fclose(e);
    return rc;
}

static void test_hash_cmd_pipe(void **state)
{
    (void)state;
    char out[512], err[512];
    assert_int_equal(hash_cmd("tok en\nignored\n", 15, out, sizeof out, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_non_null(strchr(out, '\n'));
    *strchr(out, '\n') = '\0';
    assert_true(verifies(out, "tok en"));
    /* the printed line is a valid users-file hash, for password and token */
    char text[1200];
    snprintf(text, sizeof text, "user hc password %s\nuser hc token %s\n", out, out);
    fo_users_t *t = NULL;
    assert_int_equal(fo_users_parse("u", text, strlen(text), &t, err, sizeof err), FO_OK);
    fo_users_unref(t);

    assert_int_equal(hash_cmd("crlf\r\n", 6, out, sizeof out, err, sizeof err), 0);
    *strchr(out, '\n') = '\0';
    assert_true(verifies(out, "crlf"));
    assert_int_equal(hash_cmd("no-newline", 10, out, sizeof out, err, sizeof err), 0);
    *strchr(out, '\n') = '\0';
    assert_true(verifies(out, "no-newline"));

    assert_int_equal(hash_cmd("\n", 1, out, sizeof out, err, sizeof err), 1);
    assert_string_equal(err, "fanoutd: --hash-password: the secret is empty\n");
    assert_string_equal(out, "");
    assert_int_equal(hash_cmd("", 0, out, sizeof out, err, sizeof err), 1);
    assert_string_equal(err, "fanoutd: --hash-password: no secret read (end of input)\n");
    char big[FO_USERS_SECRET_MAX + 10];
    memset(big, 'y', sizeof big);
    assert_int_equal(hash_cmd(big, sizeof big, out, sizeof out, err, sizeof err), 1);
    assert_string_equal(err, "fanoutd: --hash-password: the secret is longer than 1024 bytes\n");
}

/* ---------------------------------------------------------------- terminal */

typedef struct { FILE *in, *out, *err; int rc; } tty_run_t;

static void *tty_thread(void *p)
{
    tty_run_t *r = p;
    r->rc = fo_users_hash_cmd(r->in, r->out, r->err);
    return NULL;
}

/* Type `typed` on a pty once echo is off; returns the exit status, what
 * the terminal showed (master side) and the hash line. */
static int tty_session(const char *typed, char *shown, size_t shownlen, char *out, size_t outlen,
                       char *err, size_t errlen, int *echo_after)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(m >= 0);
    assert_int_equal(grantpt(m), 0);
    assert_int_equal(unlockpt(m), 0);
    int s = open(ptsname(m), O_RDWR | O_NOCTTY);
    assert_true(s >= 0);
    tty_run_t r = { fdopen(s, "r"), tmpfile(), tmpfile(), -1 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, tty_thread, &r), 0);
    struct termios ts;
    for (int i = 0; i < 5000; i++) {              /* up to 5 s for echo to go off */
        assert_int_equal(tcgetattr(s, &ts), 0);
        if (!(ts.c_lflag & ECHO))
            break;
        usleep(1000);
    }
    assert_false(ts.c_lflag & ECHO);
    assert_true(ts.c_lflag & ECHONL);
    assert_int_equal(write(m, typed, strlen(typed)), (ssize_t)strlen(typed));
    pthread_join(th, NULL);
    assert_int_equal(tcgetattr(s, &ts), 0);
    *echo_after = !!(ts.c_lflag & ECHO);
    size_t n = 0;
    struct pollfd pfd = { m, POLLIN, 0 };
    while (n + 1 < shownlen && poll(&pfd, 1, 50) > 0) {
        ssize_t k = read(m, shown + n, shownlen - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    shown[n] = '\0';
    rewind(r.out);
    rewind(r.err);
    n = fread(out, 1, outlen - 1, r.out);
    out[n] = '\0';
    n = fread(err, 1, errlen - 1, r.err);
    err[n] = '\0';
    fclose(r.in);
    fclose(r.out);
    fclose(r.err);
    close(m);
    return r.rc;
}

static void test_hash_cmd_tty(void **state)
{
    (void)state;
    char shown[512], out[512], err[512];
    int echo_after = 0;
    assert_int_equal(tty_session("hunter22\nhunter22\n", shown, sizeof shown, out, sizeof out,
                                 err, sizeof err, &echo_after), 0);
    assert_null(strstr(shown, "hunter22"));        /* never echoed */
    assert_non_null(strchr(shown, '\n'));          /* ECHONL: the newlines are */
    assert_true(echo_after);                       /* restored */
    assert_string_equal(err, "Secret: Again: ");
    *strchr(out, '\n') = '\0';
    assert_true(verifies(out, "hunter22"));

    assert_int_equal(tty_session("one\ntwo\n", shown, sizeof shown, out, sizeof out,
                                 err, sizeof err, &echo_after), 1);
    assert_non_null(strstr(err, "fanoutd: --hash-password: the two entries differ"));
    assert_string_equal(out, "");
    assert_true(echo_after);
    assert_null(strstr(shown, "one"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_grammar_details),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_dummy_hash),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_limits_threads),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_single),
        cmocka_unit_test(test_hash_secret),
        cmocka_unit_test(test_hash_cmd_pipe),
        cmocka_unit_test(test_hash_cmd_tty),
    };
    return cmocka_run_group_tests_name("users", tests, setup, NULL);
}
