/* test_auth.c -- logins, permissions, limits and reloads against a real
 * fanoutd with a users file (docs/SECURITY.md).
 *
 * Hashes are made at libsodium's minimum cost (fo_users_hash_secret with
 * FO_HASH_TEST_MIN) except where the cost is the point (the brute-force
 * test, the --hash-password round trip).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "harness.h"
#include "users.h"

#define E(name) FANOUT__ERROR_CODE__ERR_##name

static char dir[64];
static char users_path[128];

/* The same secret gets the same hash every time (a reload compares the
 * strings: a new salt would be a new secret). */
static void hash(const char *secret, char out[FO_USERS_HASH_MAX])
{
    static struct { char secret[64], hash[FO_USERS_HASH_MAX]; } memo[32];
    static int n;
    for (int i = 0; i < n; i++)
        if (!strcmp(memo[i].secret, secret)) {
            memcpy(out, memo[i].hash, FO_USERS_HASH_MAX);
            return;
        }
    assert_int_equal(fo_users_hash_secret(secret, FO_HASH_TEST_MIN, out), FO_OK);
    assert_true(n < 32);
    snprintf(memo[n].secret, sizeof memo[n].secret, "%s", secret);
    memcpy(memo[n++].hash, out, FO_USERS_HASH_MAX);
}

/* Write the users file: lines with {PW:secret} replaced by a hash. */
static void write_users(const char *text)
{
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", users_path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    for (const char *p = text; *p;) {
        const char *m = strstr(p, "{PW:");
        if (!m) {
            fputs(p, f);
            break;
        }
        fwrite(p, 1, (size_t)(m - p), f);
        const char *end = strchr(m, '}');
        assert_non_null(end);
        char secret[64], h[FO_USERS_HASH_MAX];
        snprintf(secret, sizeof secret, "%.*s", (int)(end - m - 4), m + 4);
        hash(secret, h);
        fputs(h, f);
        p = end + 1;
    }
    fclose(f);
    assert_int_equal(rename(tmp, users_path), 0);      /* a reload never sees half a file */
}

static const char *base_users =
    "# test users\n"
    "user alice password {PW:alice-pw}\n"
    "user alice publish allow orders.> events.%u.>\n"
    "user alice publish deny orders.admin.>\n"
    "user alice subscribe allow prices.> orders.>\n"
    "user bob password {PW:bob-pw}\n"
    "user bob publish allow >\n"
    "user bob subscribe allow >\n"
    "user bob subscribe deny orders.secret.>\n"
    "user bob allow block multicast\n"
    "user svc token {PW:svc-token}\n"
    "user svc publish allow svc.>\n"
    "user carol password {PW:carol-pw}\n"
    "user carol subscribe allow >\n"
    "user lim password {PW:lim-pw}\n"
    "user lim publish allow lim.>\n"
    "user lim subscribe allow lim.>\n"
    "user lim limit connections 2\n"
    "user lim limit subscriptions 3\n"
    "user lim limit topics 2\n";

static int setup_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/fo-auth-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(users_path, sizeof users_path, "%s/users", dir);
    return 0;
}

static void start(fo_tb_t *b, const char *const *more)
{
    const char *args[24] = { "--users", users_path, "--hello-timeout", "20s" };
    int n = 4;
    for (; more && *more; more++)
        args[n++] = *more;
    args[n] = NULL;
    assert_int_equal(fo_tb_start(b, args), 0);
}

static void login_ok(fo_tc_t *c, const fo_tb_t *b, const char *user, const char *pw)
{
    char text[256];
    int rc = fo_tc_login(c, b->port, user, pw, NULL, text, sizeof text);
    if (rc != 0)
        fail_msg("login %s: %d %s", user, rc, text);
}

static Fanout__Frame *next_of(fo_tc_t *c, int body_case, int ms)
{
    uint64_t end = fo_tb_now_ms() + (uint64_t)ms;
    Fanout__Frame *f;
    while (fo_tb_now_ms() < end) {
        int r = fo_tc_recv(c, (int)(end - fo_tb_now_ms()), &f);
        if (r != 1)
            return NULL;
        if ((int)f->body_case == body_case)
            return f;
    }
    return NULL;
}

/* The next ERROR: its code (and sid in *sid, FO_NO_SID -1 when none). */
static int next_error(fo_tc_t *c, int64_t *sid)
{
    Fanout__Frame *f = next_of(c, FANOUT__FRAME__BODY_ERROR, 5000);
    if (!f)
        return -1;
    if (sid)
        *sid = f->error->has_sid ? (int64_t)f->error->sid : -1;
    return (int)f->error->code;
}

/* Subscribe with an ACK (req); returns 0 when acked, else the ERROR code. */
static int subscribe_ex(fo_tc_t *c, uint32_t sid, const char *filter, int slow, int multicast)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1;
    s.sid = sid;
    s.filter = (char *)filter;
    if (slow) {
        s.has_slow = 1;
        s.slow = slow;
    }
    if (multicast) {
        s.has_delivery = 1;
        s.delivery = FANOUT__DELIVERY__DELIVERY_MULTICAST;
    }
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    f.has_req = 1;
    f.req = 1000 + sid;
    if (fo_tc_send(c, &f))
        return -1;
    Fanout__Frame *r;
    while (fo_tc_recv(c, 5000, &r) == 1) {
        if (r->body_case == FANOUT__FRAME__BODY_ACK && r->ack->ref == 1000 + sid)
            return 0;
        if (r->body_case == FANOUT__FRAME__BODY_ERROR)
            return (int)r->error->code;
    }
    return -1;
}

static int subscribe(fo_tc_t *c, uint32_t sid, const char *filter)
{
    return subscribe_ex(c, sid, filter, 0, 0);
}

/* Publish with an ACK; 0 when acked, else the ERROR code. */
static int publish(fo_tc_t *c, const char *topic, const char *payload)
{
    static uint64_t req = 1;
    uint64_t r0 = ++req;
    if (fo_tc_publish(c, topic, payload, strlen(payload), r0))
        return -1;
    Fanout__Frame *r;
    while (fo_tc_recv(c, 5000, &r) == 1) {
        if (r->body_case == FANOUT__FRAME__BODY_ACK && r->ack->ref == r0)
            return 0;
        if (r->body_case == FANOUT__FRAME__BODY_ERROR && r->error->ref == r0)
            return (int)r->error->code;
    }
    return -1;
}

/* The topics delivered to c until `marker` arrives, joined by spaces. */
static void delivered_until(fo_tc_t *c, const char *marker, char *out, size_t len)
{
    out[0] = '\0';
    Fanout__Frame *f;
    while ((f = next_of(c, FANOUT__FRAME__BODY_DELIVER, 5000)) != NULL) {
        if (!strcmp(f->deliver->topic, marker))
            return;
        size_t l = strlen(out);
        snprintf(out + l, len - l, "%s%s", l ? " " : "", f->deliver->topic);
    }
    fail_msg("marker %s never arrived (got: %s)", marker, out);
}

/* Wait until the broker's log holds `text`. 0, or -1 at the deadline. */
static int wait_log(const fo_tb_t *b, const char *text, int ms)
{
    uint64_t end = fo_tb_now_ms() + (uint64_t)ms;
    do {
        FILE *f = fopen(b->log_path, "r");
        char line[1024];
        int found = 0;
        while (f && !found && fgets(line, sizeof line, f))
            found = strstr(line, text) != NULL;
        if (f)
            fclose(f);
        if (found)
            return 0;
        usleep(10000);
    } while (fo_tb_now_ms() < end);
    return -1;
}

static double metric(const fo_tb_t *b, const char *name)
{
    return fo_tb_metric(b, name);
}

/* ------------------------------------------------------------ logins */

static void test_logins(void **state)
{
    (void)state;
    write_users(base_users);
    fo_tb_t b;
    start(&b, NULL);
    fo_tc_t c;
    char text[256];
    login_ok(&c, &b, "alice", "alice-pw");
    fo_tc_close(&c);
    assert_int_equal(fo_tc_login(&c, b.port, "svc", NULL, "svc-token", text, sizeof text), 0);
    fo_tc_close(&c);
    /* every failure says the same, whatever was wrong */
    const char *bad[][3] = {
        { "alice", "wrong", NULL }, { "nobody", "alice-pw", NULL }, { "svc", "svc-token", NULL },
        { "alice", NULL, "alice-pw" }, { "ALICE", "alice-pw", NULL },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = fo_tc_login(&c, b.port, bad[i][0], bad[i][1], bad[i][2], text, sizeof text);
        if (rc != E(AUTH) || strcmp(text, "bad credentials"))
            fail_msg("login %zu (%s): %d \"%s\"", i, bad[i][0], rc, text);
    }
    /* no credentials at all: said at once, and how to log in */
    assert_int_equal(fo_tc_login(&c, b.port, NULL, NULL, NULL, text, sizeof text), E(AUTH));
    assert_non_null(strstr(text, "needs a login"));
    assert_int_equal(fo_tc_login(&c, b.port, "alice", NULL, NULL, text, sizeof text), E(AUTH));
    assert_true(metric(&b, "fanout_logins_total") >= 2);
    assert_true(metric(&b, "fanout_logins_failed_total") >= 5);
    assert_true(fo_tb_wait_metric(&b, "fanout_errors_sent_total{code=\"auth\"}", 7, 5000) == 0);
    /* a reconnect is answered from the cache */
    double cached = metric(&b, "fanout_logins_cached_total");
    login_ok(&c, &b, "alice", "alice-pw");
    fo_tc_close(&c);
    assert_true(metric(&b, "fanout_logins_cached_total") >= cached + 1);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* Frames sent right behind the HELLO wait for the verdict: handled after
 * WELCOME when it succeeds, never when it fails. */
static void test_pipelined_after_hello(void **state)
{
    (void)state;
    write_users(base_users);
    fo_tb_t b;
    start(&b, NULL);
    fo_tc_t sub, c;
    login_ok(&sub, &b, "bob", "bob-pw");
    assert_int_equal(subscribe(&sub, 1, "orders.>"), 0);
    for (int ok = 1; ok >= 0; ok--) {
        assert_int_equal(fo_tc_connect(&c, b.port), 0);
        assert_int_equal(fo_tc_send_hello(&c, "alice", ok ? "alice-pw" : "nope", NULL), 0);
        assert_int_equal(fo_tc_publish(&c, ok ? "orders.1" : "orders.2", "x", 1, 7), 0);
        if (ok) {
            assert_non_null(next_of(&c, FANOUT__FRAME__BODY_WELCOME, 5000));
            assert_int_equal(fo_tc_wait_ack(&c, 7, 5000), 0);
            Fanout__Frame *d = next_of(&sub, FANOUT__FRAME__BODY_DELIVER, 5000);
            assert_non_null(d);
            assert_string_equal(d->deliver->topic, "orders.1");
        } else {
            int code = -1;
            assert_int_equal(fo_tc_wait_closed(&c, 15000, &code), 0);
            assert_int_equal(code, E(AUTH));
        }
        fo_tc_close(&c);
    }
    /* the refused publish never arrived */
    fo_tc_t pub;
    login_ok(&pub, &b, "bob", "bob-pw");
    assert_int_equal(publish(&pub, "orders.marker", "m"), 0);
    fo_tc_close(&pub);
    char got[256];
    delivered_until(&sub, "orders.marker", got, sizeof got);
    assert_string_equal(got, "");
    fo_tc_close(&sub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* ------------------------------------------------------------ permissions */

static void test_publish_permissions(void **state)
{
    (void)state;
    write_users(base_users);
    fo_tb_t b;
    start(&b, NULL);
    fo_tc_t a, sub;
    login_ok(&sub, &b, "bob", "bob-pw");
    assert_int_equal(subscribe(&sub, 1, ">"), 0);
    /* the first publish of a fresh connection, to a topic nobody made yet
     * (it was let through: no cached topic and no last topic) */
    login_ok(&a, &b, "alice", "alice-pw");
    assert_int_equal(publish(&a, "orders.admin.first", "no"), E(PERMISSION));
    assert_int_equal(publish(&a, "orders.admin.first", "no"), E(PERMISSION));
    fo_tc_close(&a);
    login_ok(&a, &b, "alice", "alice-pw");
    assert_int_equal(publish(&a, "orders.1", "ok"), 0);
    assert_int_equal(publish(&a, "orders.admin.x", "no"), E(PERMISSION));   /* deny wins */
    assert_int_equal(publish(&a, "events.alice.login", "ok"), 0);         /* %u = alice */
    assert_int_equal(publish(&a, "events.bob.login", "no"), E(PERMISSION));
    assert_int_equal(publish(&a, "prices.x", "no"), E(PERMISSION));        /* may read, not write */
    assert_int_equal(publish(&a, "orders.1", "ok again"), 0);              /* still open */
    assert_int_equal(publish(&a, "orders.zz", "m"), 0);
    char got[256];
    delivered_until(&sub, "orders.zz", got, sizeof got);
    assert_string_equal(got, "orders.1 events.alice.login orders.1");
    /* a refused publish made no topic */
    assert_true(metric(&b, "fanout_permission_denied_total") >= 3);
    fo_tc_close(&a);
    fo_tc_close(&sub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

static void test_subscribe_permissions(void **state)
{
    (void)state;
    write_users(base_users);
    fo_tb_t b;
    start(&b, NULL);
    fo_tc_t a, bob, pub;
    login_ok(&pub, &b, "bob", "bob-pw");
    assert_int_equal(publish(&pub, "other.early", "x"), 0);       /* a topic before the subscription */
    assert_int_equal(publish(&pub, "prices.early", "x"), 0);
    login_ok(&a, &b, "alice", "alice-pw");
    assert_int_equal(subscribe(&a, 1, ">"), 0);                   /* wide: only what alice may read */
    assert_int_equal(subscribe(&a, 2, "secret.>"), E(PERMISSION));
    int64_t sid = 0;
    assert_int_equal(subscribe(&a, 3, "*.x"), 0);                 /* prices.x, orders.x may exist */
    assert_int_equal(subscribe_ex(&a, 4, "prices.>", FANOUT__SLOW_POLICY__SLOW_BLOCK, 0), E(PERMISSION));
    assert_int_equal(subscribe_ex(&a, 5, "prices.>", 0, 1), E(PERMISSION));
    login_ok(&bob, &b, "bob", "bob-pw");
    assert_int_equal(subscribe(&bob, 1, "orders.>"), 0);
    assert_int_equal(subscribe_ex(&bob, 2, "blk.>", FANOUT__SLOW_POLICY__SLOW_BLOCK, 0), 0);  /* bob may */
    for (const char *t = "prices.early other.early prices.x other.x orders.x orders.secret.x orders.y";
         *t;) {
        char topic[64];
        int n = 0;
        sscanf(t, "%63s%n", topic, &n);
        t += n;
        while (*t == ' ')
            t++;
        assert_int_equal(publish(&pub, topic, "p"), 0);
    }
    assert_int_equal(publish(&pub, "prices.zmarker", "m"), 0);
    assert_int_equal(publish(&pub, "orders.zmarker", "m"), 0);
    char got[512];
    delivered_until(&a, "prices.zmarker", got, sizeof got);
    /* sid 1 (>) and sid 3 (*.x) both deliver prices.x and orders.x */
    /* orders.secret.x: bob's deny, not alice's */
    assert_string_equal(got, "prices.early prices.x prices.x orders.x orders.x orders.secret.x orders.y");
    delivered_until(&bob, "orders.zmarker", got, sizeof got);
    assert_string_equal(got, "orders.x orders.y");               /* orders.secret.x denied */
    /* repair of a topic the subscription may not read */
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Repair r = FANOUT__REPAIR__INIT;
    r.has_sid = r.has_first = r.has_last = 1;
    r.sid = 1;
    r.topic = (char *)"other.x";
    r.first = r.last = 1;
    f.body_case = FANOUT__FRAME__BODY_REPAIR;
    f.repair = &r;
    assert_int_equal(fo_tc_send(&a, &f), 0);
    assert_int_equal(next_error(&a, &sid), E(PERMISSION));
    assert_int_equal(sid, 1);
    fo_tc_close(&a);
    fo_tc_close(&bob);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* ------------------------------------------------------------ limits */

static void test_user_limits(void **state)
{
    (void)state;
    write_users(base_users);
    fo_tb_t b;
    start(&b, NULL);
    fo_tc_t c[3];
    char text[256];
    login_ok(&c[0], &b, "lim", "lim-pw");
    login_ok(&c[1], &b, "lim", "lim-pw");
    assert_int_equal(fo_tc_login(&c[2], b.port, "lim", "lim-pw", NULL, text, sizeof text), E(MAX_CONNS));
    assert_non_null(strstr(text, "limit"));
    fo_tc_close(&c[1]);
    /* the count comes back when the connection is gone */
    uint64_t end = fo_tb_now_ms() + 10000;
    int rc;
    while ((rc = fo_tc_login(&c[1], b.port, "lim", "lim-pw", NULL, text, sizeof text)) != 0 &&
           fo_tb_now_ms() < end)
        ;
    assert_int_equal(rc, 0);
    /* subscriptions: 3 across the user's connections */
    assert_int_equal(subscribe(&c[0], 1, "lim.a"), 0);
    assert_int_equal(subscribe(&c[0], 2, "lim.b"), 0);
    assert_int_equal(subscribe(&c[1], 1, "lim.c"), 0);
    assert_int_equal(subscribe(&c[1], 2, "lim.d"), E(MAX_SUBS));
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Unsubscribe u = FANOUT__UNSUBSCRIBE__INIT;
    u.has_sid = 1;
    u.sid = 1;
    f.body_case = FANOUT__FRAME__BODY_UNSUBSCRIBE;
    f.unsubscribe = &u;
    f.has_req = 1;
    f.req = 77;
    assert_int_equal(fo_tc_send(&c[0], &f), 0);
    assert_int_equal(fo_tc_wait_ack(&c[0], 77, 5000), 0);
    assert_int_equal(subscribe(&c[1], 2, "lim.d"), 0);            /* room again */
    /* topics: two new ones; publishing to existing ones costs nothing */
    assert_int_equal(publish(&c[0], "lim.t1", "x"), 0);
    assert_int_equal(publish(&c[0], "lim.t2", "x"), 0);
    assert_int_equal(publish(&c[0], "lim.t1", "x"), 0);
    assert_int_equal(publish(&c[0], "lim.t3", "x"), E(BAD_REQUEST));
    assert_int_equal(publish(&c[0], "lim.a", "x"), E(BAD_REQUEST));  /* no topic yet: a new one */
    fo_tc_close(&c[0]);
    fo_tc_close(&c[1]);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* ------------------------------------------------------------ reload */

static void test_reload_revokes(void **state)
{
    (void)state;
    write_users(base_users);
    fo_tb_t b;
    start(&b, NULL);
    fo_tc_t a, pub, carol, bob;
    login_ok(&pub, &b, "bob", "bob-pw");
    login_ok(&bob, &b, "bob", "bob-pw");
    assert_int_equal(subscribe_ex(&bob, 1, "blk.>", FANOUT__SLOW_POLICY__SLOW_BLOCK, 0), 0);
    login_ok(&a, &b, "alice", "alice-pw");
    assert_int_equal(subscribe(&a, 1, "prices.>"), 0);
    assert_int_equal(subscribe(&a, 2, ">"), 0);
    assert_int_equal(subscribe(&a, 3, "orders.x.>"), 0);
    login_ok(&carol, &b, "carol", "carol-pw");
    assert_int_equal(publish(&pub, "prices.a", "1"), 0);
    assert_int_equal(publish(&pub, "news.a", "1"), 0);
    char got[512];
    assert_int_equal(publish(&pub, "orders.zm", "m"), 0);
    delivered_until(&a, "orders.zm", got, sizeof got);           /* sid 1 and 2 both */
    assert_string_equal(got, "prices.a prices.a");

    /* alice loses prices and gains news; bob loses block; carol is gone */
    char *nu = strdup(base_users);
    char *p = strstr(nu, "subscribe allow prices.> orders.>");
    memcpy(p, "subscribe allow news.>   orders.>", 33);
    p = strstr(nu, "user bob allow block multicast");
    memcpy(p, "user bob allow multicast      ", 30);
    p = strstr(nu, "user carol password");
    memcpy(p, "#ser", 4);
    p = strstr(nu, "user carol subscribe");
    memcpy(p, "#ser", 4);
    write_users(nu);
    free(nu);
    double revoked = metric(&b, "fanout_subscriptions_revoked_total");
    fo_tb_signal(&b, SIGHUP);
    int64_t sid = 0;
    assert_int_equal(next_error(&a, &sid), E(PERMISSION));       /* prices.> ends */
    assert_int_equal(sid, 1);
    assert_int_equal(next_error(&bob, &sid), E(PERMISSION));     /* slow=block ends */
    assert_int_equal(sid, 1);
    int code = -1;
    assert_int_equal(fo_tc_wait_closed(&carol, 5000, &code), 0);
    assert_int_equal(code, E(AUTH));
    assert_true(metric(&b, "fanout_subscriptions_revoked_total") >= revoked + 2);
    /* sid 2 (>) stays and follows the new permissions: news, not prices */
    assert_int_equal(publish(&pub, "prices.a", "2"), 0);
    assert_int_equal(publish(&pub, "news.a", "2"), 0);
    assert_int_equal(publish(&pub, "orders.zm", "m"), 0);
    delivered_until(&a, "orders.zm", got, sizeof got);
    assert_string_equal(got, "news.a");
    assert_int_equal(subscribe(&a, 4, "prices.>"), E(PERMISSION));
    assert_int_equal(subscribe(&a, 5, "news.>"), 0);

    /* a file that does not load changes nothing */
    write_users("");
    fo_tb_signal(&b, SIGHUP);
    assert_int_equal(wait_log(&b, "users not reloaded, the old ones stay", 5000), 0);
    fo_tc_t again;
    login_ok(&again, &b, "alice", "alice-pw");
    fo_tc_close(&again);

    /* a changed password closes the logins made with the old one */
    write_users("user alice password {PW:new-pw}\nuser alice subscribe allow >\n"
                "user bob password {PW:bob-pw}\nuser bob publish allow >\n");
    fo_tb_signal(&b, SIGHUP);
    assert_int_equal(fo_tc_wait_closed(&a, 5000, &code), 0);
    assert_int_equal(code, E(AUTH));
    char text[128];
    assert_int_equal(fo_tc_login(&again, b.port, "alice", "alice-pw", NULL, text, sizeof text), E(AUTH));
    login_ok(&again, &b, "alice", "new-pw");
    fo_tc_close(&again);
    assert_int_equal(publish(&pub, "anything.at.all", "x"), 0);    /* bob stayed */
    fo_tc_close(&a);
    fo_tc_close(&pub);
    fo_tc_close(&bob);
    fo_tc_close(&carol);
    assert_int_equal(fo_tb_stop(&b), 0);
}


/* ------------------------------------------------------------ certificates */

static int hello_on(fo_tc_t *c, const char *user)
{
    return fo_tc_hello(c, user, NULL, NULL, NULL, 0);
}

static void test_certificate_login(void **state)
{
    (void)state;
    const char *certs = fo_tb_certs();
    if (!certs)
        skip();
    write_users(base_users);
    char ca[256], crt[256], key[256];
    snprintf(ca, sizeof ca, "%s/ca.pem", certs);
    snprintf(crt, sizeof crt, "%s/client.pem", certs);       /* CN alice */
    snprintf(key, sizeof key, "%s/client.key", certs);
    fo_tb_t b;
    const char *args[] = { "--users", users_path, "--tls-ca", ca, "--tls-verify-client", "optional",
                           "--tls-user-from", "cn", NULL };
    assert_int_equal(fo_tb_start_tls(&b, args), 0);
    fo_tc_t c;
    fo_tc_tls_t o = { .cert_file = crt, .key_file = key };
    assert_int_equal(fo_tc_connect_tls(&c, b.tls_port, &o), 0);
    assert_int_equal(hello_on(&c, NULL), 0);                   /* the certificate is the login */
    assert_int_equal(publish(&c, "orders.by-cert", "x"), 0);   /* with alice's permissions */
    assert_int_equal(publish(&c, "orders.admin.x", "x"), E(PERMISSION));
    fo_tc_close(&c);
    /* HELLO.user naming someone else: not by certificate, and no secret */
    assert_int_equal(fo_tc_connect_tls(&c, b.tls_port, &o), 0);
    assert_int_equal(hello_on(&c, "bob"), E(AUTH));
    fo_tc_close(&c);
    /* no certificate: a password as usual */
    fo_tc_tls_t none = {0};
    assert_int_equal(fo_tc_connect_tls(&c, b.tls_port, &none), 0);
    assert_int_equal(hello_on(&c, NULL), E(AUTH));
    fo_tc_close(&c);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* ------------------------------------------------------------ defaults */

static void test_secure_defaults(void **state)
{
    (void)state;
    char out[4096], err[4096], port[32];
    snprintf(port, sizeof port, "0.0.0.0:%d", fo_tb_free_port());
    /* reachable from elsewhere without users: refused, saying what to do */
    const char *open_argv[] = { "fanoutd", "--listen", port, "--http", "off", NULL };
    assert_int_equal(fo_tb_run(open_argv, NULL, out, sizeof out, err, sizeof err, 10000), 1);
    assert_non_null(strstr(err, "is reachable from other hosts and no users are configured"));
    assert_non_null(strstr(err, "--allow-anonymous"));
    /* --password alone: the old hole is a usage error */
    const char *pw_argv[] = { "fanoutd", "--password", "x", NULL };
    assert_int_equal(fo_tb_run(pw_argv, NULL, out, sizeof out, err, sizeof err, 10000), 2);
    assert_non_null(strstr(err, "--password needs --user"));
    /* with --allow-anonymous it serves, and says so */
    fo_tb_t b;
    const char *anon[] = { "--listen", port, "--allow-anonymous", NULL };
    assert_int_equal(fo_tb_start(&b, anon), 0);
    assert_int_equal(wait_log(&b, "anonymous clients are served on", 5000), 0);
    fo_tc_t c;
    int p = atoi(strrchr(port, ':') + 1);
    assert_int_equal(fo_tc_open(&c, p, "anon"), 0);
    fo_tc_close(&c);
    assert_int_equal(fo_tb_stop(&b), 0);
    /* the default listener is loopback: anonymous there needs nothing */
    assert_int_equal(fo_tb_start(&b, NULL), 0);
    assert_int_equal(fo_tc_open(&c, b.port, "anon"), 0);
    fo_tc_close(&c);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* `fanoutd --hash-password` prints a hash the users file takes. */
static void test_hash_password_command(void **state)
{
    (void)state;
    char out[512], err[512];
    const char *argv[] = { "fanoutd", "--hash-password", NULL };
    assert_int_equal(fo_tb_run(argv, "correct horse\n", out, sizeof out, err, sizeof err, 30000), 0);
    assert_memory_equal(out, "$argon2id$", 10);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    *nl = '\0';
    FILE *f = fopen(users_path, "w");
    assert_non_null(f);
    fprintf(f, "user dave password %s\nuser dave publish allow >\n", out);
    fclose(f);
    fo_tb_t b;
    start(&b, NULL);
    fo_tc_t c;
    login_ok(&c, &b, "dave", "correct horse");
    assert_int_equal(publish(&c, "a.b", "x"), 0);
    fo_tc_close(&c);
    char text[128];
    assert_int_equal(fo_tc_login(&c, b.port, "dave", "correct horse ", NULL, text, sizeof text), E(AUTH));
    assert_int_equal(fo_tb_stop(&b), 0);
    /* an empty secret, and extra arguments, are refused */
    assert_int_equal(fo_tb_run(argv, "\n", out, sizeof out, err, sizeof err, 10000), 1);
    const char *extra[] = { "fanoutd", "--hash-password", "--threads", "2", NULL };
    assert_int_equal(fo_tb_run(extra, "x\n", out, sizeof out, err, sizeof err, 10000), 2);
}

/* --http-token guards /metrics, not /healthz. */
static void test_http_token(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--http-token", "m3trics", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    char buf[1 << 16];
    assert_int_equal(fo_tb_http_get(b.http_port, "/healthz", buf, sizeof buf), 200);
    assert_int_equal(fo_tb_http_get(b.http_port, "/metrics", buf, sizeof buf), 401);
    assert_int_equal(fo_tb_http_get_auth(b.http_port, "/metrics", "Bearer wrong", buf, sizeof buf), 401);
    assert_int_equal(fo_tb_http_get_auth(b.http_port, "/metrics", "Bearer m3trics", buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "fanout_connections "));
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* ------------------------------------------------------------ brute force */

typedef struct attack {
    int port;
    atomic_int stop;
    atomic_int sent;
} attack_t;

/* Wrong passwords, 50 a second per thread: HELLO and hang up without
 * waiting, so no answer delay slows the guessing and every attempt the
 * broker takes costs it a verification. (Paced: this is a password
 * guesser, not a connection flood -- --max-conns and a firewall are for
 * those.) */
static void *attacker(void *ud)
{
    attack_t *a = ud;
    while (!atomic_load(&a->stop)) {
        fo_tc_t c;
        if (fo_tc_connect(&c, a->port))
            continue;
        char pw[32];
        snprintf(pw, sizeof pw, "guess-%d", atomic_fetch_add(&a->sent, 1));
        (void)!fo_tc_send_hello(&c, "victim", pw, NULL);
        fo_tc_close(&c);
        usleep(20000);      /* pacing the load, not waiting for anything */
    }
    return NULL;
}

/* Password guessing costs the auth threads, never the workers: clients
 * already logged in keep their round trips, and a user whose login is
 * cached gets in while the guessing goes on. */
static void test_brute_force_spares_others(void **state)
{
    (void)state;
    /* its point is how long others wait while 64 MiB argon2id runs; under
     * valgrind each verification takes seconds and the threads take turns */
    if (fo_tb_wrapped())
        skip();
    char victim[FO_USERS_HASH_MAX], h[FO_USERS_HASH_MAX];
    /* the real cost: 64 MiB and tens of ms per verification */
    assert_int_equal(fo_users_hash_secret("victim-pw", FO_HASH_INTERACTIVE, victim), FO_OK);
    hash("good-pw", h);
    FILE *f = fopen(users_path, "w");
    assert_non_null(f);
    fprintf(f, "user victim password %s\nuser good password %s\nuser good publish allow >\n"
               "user good subscribe allow >\n", victim, h);
    fclose(f);
    fo_tb_t b;
    start(&b, NULL);
    fo_tc_t pub, sub, v;
    login_ok(&pub, &b, "good", "good-pw");
    login_ok(&sub, &b, "good", "good-pw");
    assert_int_equal(subscribe(&sub, 1, "rt.>"), 0);
    login_ok(&v, &b, "victim", "victim-pw");             /* verified once: cached */
    fo_tc_close(&v);

    attack_t a = { .port = b.port };
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, attacker, &a), 0);
    double before = fo_tb_metric(&b, "fanout_auth_verifications_total");
    uint64_t worst = 0;
    int rounds = 0;
    /* round trips until the attack has cost at least 10 verifications
     * (and at least 200 of them) */
    uint64_t end = fo_tb_now_ms() + 60000;
    while ((rounds < 200 || fo_tb_metric(&b, "fanout_auth_verifications_total") < before + 10) &&
           fo_tb_now_ms() < end) {
        uint64_t t0 = fo_tb_now_ms();
        assert_int_equal(fo_tc_publish(&pub, "rt.x", "ping", 4, 0), 0);
        assert_non_null(next_of(&sub, FANOUT__FRAME__BODY_DELIVER, 5000));
        uint64_t dt = fo_tb_now_ms() - t0;
        if (dt > worst)
            worst = dt;
        rounds++;
    }
    uint64_t t0 = fo_tb_now_ms();
    login_ok(&v, &b, "victim", "victim-pw");              /* from the cache, at once */
    uint64_t login_ms = fo_tb_now_ms() - t0;
    fo_tc_close(&v);
    atomic_store(&a.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    double spent = fo_tb_metric(&b, "fanout_auth_verifications_total") - before;
    print_message("attack: %d guesses, %.0f verifications; %d round trips, worst %llu ms; "
                  "cached login %llu ms\n", atomic_load(&a.sent), spent, rounds,
                  (unsigned long long)worst, (unsigned long long)login_ms);
    assert_true(spent >= 10);
    /* a verification on a worker would stall it for its whole duration
     * once per guess; a bound this loose only fails if that happens */
    assert_true(worst < 1000);
    assert_true(login_ms < 2000);
    fo_tc_close(&pub);
    fo_tc_close(&sub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* ------------------------------------------------------------ multicast keys */

/* Log in as user and return the WELCOME (valid until the next receive). */
static Fanout__Welcome *welcome_as(fo_tc_t *c, const fo_tb_t *b, const char *user, const char *pw)
{
    assert_int_equal(fo_tc_connect(c, b->port), 0);
    assert_int_equal(fo_tc_send_hello(c, user, pw, NULL), 0);
    Fanout__Frame *r;
    assert_int_equal(fo_tc_recv(c, 20000, &r), 1);
    assert_int_equal(r->body_case, FANOUT__FRAME__BODY_WELCOME);
    return r->welcome;
}

/* A group's key goes only to a user with the multicast right who may read
 * every topic of the group; the groups of a connection without their key
 * are not multicast to it: their topics come by TCP. */
static void test_multicast_keys(void **state)
{
    (void)state;
    write_users(base_users);
    unsigned r = (unsigned)getpid();
    char g1[64], g2[64];
    snprintf(g1, sizeof g1, "t.>=239.%u.%u.1:5601", 100 + r % 50, (r >> 8) & 255);
    snprintf(g2, sizeof g2, "orders.>=239.%u.%u.2:5602", 100 + r % 50, (r >> 8) & 255);
    const char *more[] = { "--mcast-group", g1, "--mcast-group", g2, "--mcast-if", "127.0.0.1", NULL };
    fo_tb_t b;
    start(&b, more);
    fo_tc_t bob, carol, pub;
    /* bob: multicast, subscribe allow > deny orders.secret.> -- all of t.>,
     * not all of orders.> */
    Fanout__Welcome *w = welcome_as(&bob, &b, "bob", "bob-pw");
    assert_int_equal(w->n_groups, 2);
    assert_true(w->groups[0]->has_key);
    assert_int_equal(w->groups[0]->key.len, 32);
    assert_false(w->groups[1]->has_key);
    /* carol may read everything but has no multicast right */
    w = welcome_as(&carol, &b, "carol", "carol-pw");
    assert_int_equal(w->n_groups, 2);
    assert_false(w->groups[0]->has_key || w->groups[1]->has_key);
    assert_int_equal(subscribe_ex(&bob, 7, ">", 0, 1), 0);
    login_ok(&pub, &b, "bob", "bob-pw");
    assert_int_equal(publish(&pub, "t.x", "m"), 0);           /* by multicast only */
    assert_int_equal(publish(&pub, "orders.x", "p"), 0);      /* no key: by TCP */
    assert_int_equal(publish(&pub, "plain", "p"), 0);         /* no group: by TCP */
    assert_int_equal(publish(&pub, "orders.zmarker", "m"), 0);
    char got[256];
    delivered_until(&bob, "orders.zmarker", got, sizeof got);
    assert_string_equal(got, "orders.x plain");
    fo_tc_close(&bob);
    fo_tc_close(&carol);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* ------------------------------------------------------------ main */

static int group_setup(void **state)
{
    (void)state;
    return setup_dir();
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logins),
        cmocka_unit_test(test_pipelined_after_hello),
        cmocka_unit_test(test_publish_permissions),
        cmocka_unit_test(test_subscribe_permissions),
        cmocka_unit_test(test_user_limits),
        cmocka_unit_test(test_reload_revokes),
        cmocka_unit_test(test_certificate_login),
        cmocka_unit_test(test_secure_defaults),
        cmocka_unit_test(test_hash_password_command),
        cmocka_unit_test(test_http_token),
        cmocka_unit_test(test_brute_force_spares_others),
        cmocka_unit_test(test_multicast_keys),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
