/* test_client_tls.c -- libfanout and the `fanout` command over TLS, and
 * their credentials, against real fanoutd processes with a TLS listener
 * on the test certificates (harness.h, fo_tb_make_certs).
 *
 * What is verified: the broker's certificate against the CA given (or the
 * system store), its name against the host dialled (DNS or IP SANs); a
 * client certificate that logs in; reconnects that make a new session; a
 * burst far beyond one read of the reader thread with publishers on other
 * threads writing the same session meanwhile; HELLO's user, password and
 * token from the options, the command line and the environment.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "fanout.h"
#include "harness.h"
#include "users.h"

static fo_tb_t broker;                   /* TLS listener, anonymous */
static char ca[320], other_ca[320], client_cert[320], client_key[320];

static int group_setup(void **state)
{
    (void)state;
    if (!fo_tb_certs())
        return -1;
    snprintf(ca, sizeof ca, "%s", fo_tb_cert("ca.pem"));
    snprintf(other_ca, sizeof other_ca, "%s", fo_tb_cert("other-ca.pem"));
    snprintf(client_cert, sizeof client_cert, "%s", fo_tb_cert("client.pem"));
    snprintf(client_key, sizeof client_key, "%s", fo_tb_cert("client.key"));
    return fo_tb_start_tls(&broker, NULL);
}

static int group_teardown(void **state)
{
    (void)state;
    fo_tb_stop(&broker);
    return 0;
}

/* Options for one server over TLS, trusting ca_file. */
static void tls_opts(fo_client_opts_t *o, const char **server, const char *ca_file)
{
    fo_client_opts_init(o);
    o->servers = server;
    o->nservers = 1;
    o->tls_ca_file = ca_file;
    o->max_reconnects = 0;
}

/* Publish one confirmed message and receive it on the same client. */
static void round_trip(fo_client_t *c, const char *topic)
{
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(c, topic, NULL, &s), FO_OK);
    uint64_t seq = 0;
    assert_int_equal(fo_publish_sync(c, topic, "hello", 5, 5000, &seq), FO_OK);
    assert_true(seq >= 1);
    const fo_msg_t *m;
    assert_int_equal(fo_sub_next(s, 5000, &m), FO_OK);
    assert_int_equal(m->payload_len, 5);
    assert_memory_equal(m->payload, "hello", 5);
    assert_int_equal(fo_unsubscribe(s), FO_OK);
}

/* tls://, and opts.tls for HOST:PORT: the same session either way. */
static void test_round_trip(void **state)
{
    (void)state;
    const char *server = broker.tls_addr;
    fo_client_opts_t o;
    tls_opts(&o, &server, ca);
    fo_client_t *c;
    char err[256] = "";
    if (fo_client_connect(&o, &c, err, sizeof err) != FO_OK)
        fail_msg("connect %s: %s", server, err);
    round_trip(c, "tls.rt.a");
    assert_int_equal(fo_client_close(c, 1000), FO_OK);

    char hostport[64];
    snprintf(hostport, sizeof hostport, "localhost:%d", broker.tls_port);
    server = hostport;
    tls_opts(&o, &server, ca);
    o.tls = 1;
    if (fo_client_connect(&o, &c, err, sizeof err) != FO_OK)
        fail_msg("connect %s with opts.tls: %s", server, err);
    round_trip(c, "tls.rt.b");
    fo_client_destroy(c);

    /* fanout:// stays plain whatever opts.tls says */
    char plain[80];
    snprintf(plain, sizeof plain, "fanout://%s", broker.plain);
    server = plain;
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_OK);
    round_trip(c, "tls.rt.c");
    fo_client_destroy(c);
}

/* A certificate from a CA not trusted: refused, saying why and where. */
static void test_wrong_ca_refused(void **state)
{
    (void)state;
    const char *server = broker.tls_addr;
    fo_client_opts_t o;
    tls_opts(&o, &server, other_ca);
    fo_client_t *c = NULL;
    char err[256], want[160];
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_ERR_TLS);
    assert_null(c);
    snprintf(want, sizeof want, "certificate verify failed: unable to get local issuer "
             "certificate (tls://127.0.0.1:%d)", broker.tls_port);
    assert_string_equal(err, want);
    /* a CA file that is not one */
    tls_opts(&o, &server, client_key);
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_ERR_TLS);
    assert_non_null(strstr(err, "CA file"));
    /* plain TCP to the TLS port, TLS to the plain port */
    char plain_to_tls[80];
    snprintf(plain_to_tls, sizeof plain_to_tls, "fanout://127.0.0.1:%d", broker.tls_port);
    server = plain_to_tls;
    tls_opts(&o, &server, ca);
    o.connect_timeout_ms = 2000;
    assert_int_not_equal(fo_client_connect(&o, &c, err, sizeof err), FO_OK);
    char tls_to_plain[80];
    snprintf(tls_to_plain, sizeof tls_to_plain, "tls://%s", broker.plain);
    server = tls_to_plain;
    assert_int_not_equal(fo_client_connect(&o, &c, err, sizeof err), FO_OK);
    assert_non_null(strstr(err, "TLS handshake with"));
}

/* A valid certificate for another name: "hostname mismatch" for a name,
 * "IP address mismatch" for an address; only the loud option gets in. */
static void test_hostname_mismatch_refused(void **state)
{
    (void)state;
    fo_tb_t b;
    char cert[320], key[320];
    snprintf(cert, sizeof cert, "%s", fo_tb_cert("elsewhere.pem"));
    snprintf(key, sizeof key, "%s", fo_tb_cert("elsewhere.key"));
    const char *extra[] = { "--tls-cert", cert, "--tls-key", key, NULL };
    assert_int_equal(fo_tb_start_tls(&b, extra), 0);
    char byname[64], want[160], err[256];
    snprintf(byname, sizeof byname, "tls://localhost:%d", b.tls_port);
    const char *server = byname;
    fo_client_opts_t o;
    tls_opts(&o, &server, ca);
    fo_client_t *c = NULL;
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_ERR_TLS);
    snprintf(want, sizeof want, "certificate verify failed: hostname mismatch (%s)", byname);
    assert_string_equal(err, want);
    server = b.tls_addr;
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_ERR_TLS);
    snprintf(want, sizeof want, "certificate verify failed: IP address mismatch (%s)", b.tls_addr);
    assert_string_equal(err, want);
    /* tls_insecure_skip_verify: anything goes (even a CA nobody trusts) */
    tls_opts(&o, &server, other_ca);
    o.tls_insecure_skip_verify = 1;
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_OK);
    round_trip(c, "tls.insecure");
    fo_client_destroy(c);
    fo_tb_stop(&b);
}

static char users_path[128];

/* The users file: alice (password "alice-pw"; also her certificate's CN)
 * and bob (token "bob-token"). */
static void write_users(void)
{
    char a[FO_USERS_HASH_MAX], t[FO_USERS_HASH_MAX];
    assert_int_equal(fo_users_hash_secret("alice-pw", FO_HASH_TEST_MIN, a), FO_OK);
    assert_int_equal(fo_users_hash_secret("bob-token", FO_HASH_TEST_MIN, t), FO_OK);
    snprintf(users_path, sizeof users_path, "%s/users", fo_tb_certs());
    FILE *f = fopen(users_path, "w");
    assert_non_null(f);
    fprintf(f, "user alice password %s\nuser alice publish allow >\nuser alice subscribe allow >\n"
               "user bob token %s\nuser bob publish allow >\nuser bob subscribe allow >\n", a, t);
    fclose(f);
}

/* --tls-verify-client required --tls-user-from cn: the certificate of
 * alice logs in as alice without a secret; no certificate, no session. */
static void test_client_certificate_login(void **state)
{
    (void)state;
    write_users();
    fo_tb_t b;
    const char *extra[] = { "--users", users_path, "--tls-ca", ca, "--tls-verify-client",
                            "required", "--tls-user-from", "cn", NULL };
    assert_int_equal(fo_tb_start_tls(&b, extra), 0);
    const char *server = b.tls_addr;
    fo_client_opts_t o;
    tls_opts(&o, &server, ca);
    o.tls_cert_file = client_cert;
    o.tls_key_file = client_key;
    fo_client_t *c = NULL;
    char err[256];
    if (fo_client_connect(&o, &c, err, sizeof err) != FO_OK)
        fail_msg("alice's certificate: %s", err);
    round_trip(c, "tls.mtls");
    fo_client_destroy(c);
    assert_true(fo_tb_metric(&b, "fanout_logins_total") >= 1);
    /* without the certificate the broker ends the session */
    c = NULL;
    tls_opts(&o, &server, ca);
    assert_int_not_equal(fo_client_connect(&o, &c, err, sizeof err), FO_OK);
    assert_null(c);
    /* a key that is not the certificate's */
    tls_opts(&o, &server, ca);
    o.tls_cert_file = client_cert;
    o.tls_key_file = fo_tb_cert("stranger.key");
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_ERR_TLS);
    assert_non_null(strstr(err, "does not match"));
    fo_tb_stop(&b);
}

/* A broker restart on the same ports: the client reconnects with a new
 * session, resubscribes, and receives again. */
static atomic_int reconnected;

static void on_event(void *ud, fo_event_t ev, fo_err_t err, const char *text)
{
    (void)ud; (void)err; (void)text;
    if (ev == FO_EV_RECONNECTED)
        atomic_fetch_add(&reconnected, 1);
}

static void test_reconnect_after_restart(void **state)
{
    (void)state;
    fo_tb_t b;
    assert_int_equal(fo_tb_start_tls(&b, NULL), 0);
    const char *server = b.tls_addr;
    fo_client_opts_t o;
    tls_opts(&o, &server, ca);
    o.max_reconnects = -1;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 100;
    o.on_event = on_event;
    fo_client_t *c;
    char err[256];
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_OK);
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(c, "tls.restart", NULL, &s), FO_OK);
    assert_int_equal(fo_publish_sync(c, "tls.restart", "one", 3, 5000, NULL), FO_OK);
    const fo_msg_t *m;
    assert_int_equal(fo_sub_next(s, 5000, &m), FO_OK);
    for (int round = 1; round <= 2; round++) {
        assert_int_equal(fo_tb_restart(&b, NULL), 0);
        uint64_t end = fo_tb_now_ms() + 15000;
        while (atomic_load(&reconnected) < round && fo_tb_now_ms() < end)
            usleep(5000);                 /* polling a condition, with a deadline */
        assert_int_equal(atomic_load(&reconnected), round);
        assert_int_equal(fo_tb_wait_metric(&b, "fanout_subscriptions", 1, 5000), 0);
        assert_int_equal(fo_publish_sync(c, "tls.restart", "again", 5, 5000, NULL), FO_OK);
        assert_int_equal(fo_sub_next(s, 5000, &m), FO_OK);
        assert_memory_equal(m->payload, "again", 5);
    }
    fo_client_stats_t st;
    fo_client_stats(c, &st);
    assert_int_equal(st.reconnects, 2);
    fo_client_destroy(c);
    fo_tb_stop(&b);
}

/* Far more than one read of the reader (128 KiB) in flight, delivered to
 * a subscription of the same client while two threads publish on it: the
 * one session is read and written at once, and nothing is lost. */
#define BURST_PER_THREAD 20000
#define BURST_SIZE 700
static atomic_uint_fast64_t burst_got, burst_bad;

static void on_burst(void *ud, fo_sub_t *sub, const fo_msg_t *m)
{
    (void)ud; (void)sub;
    if (m->payload_len != BURST_SIZE)
        atomic_fetch_add(&burst_bad, 1);
    atomic_fetch_add(&burst_got, 1);
}

static void *burst_publisher(void *arg)
{
    fo_client_t *c = arg;
    static const char pad[BURST_SIZE];
    for (int i = 0; i < BURST_PER_THREAD; i++)
        if (fo_publish(c, "tls.burst", pad, sizeof pad) != FO_OK)
            return (void *)1;
    return fo_client_flush(c, 20000) == FO_OK ? NULL : (void *)1;
}

static void test_burst_loses_nothing(void **state)
{
    (void)state;
    const char *server = broker.tls_addr;
    fo_client_opts_t o;
    tls_opts(&o, &server, ca);
    fo_client_t *c;
    char err[256];
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_OK);
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.cb = on_burst;
    so.slow = FO_SLOW_BLOCK;              /* the broker drops nothing */
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(c, "tls.burst", &so, &s), FO_OK);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, burst_publisher, c), 0);
    for (int i = 0; i < 2; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    uint64_t want = 2 * BURST_PER_THREAD, end = fo_tb_now_ms() + 30000;
    while (atomic_load(&burst_got) < want && fo_tb_now_ms() < end)
        usleep(2000);                     /* polling a condition, with a deadline */
    assert_int_equal(atomic_load(&burst_got), want);
    assert_int_equal(atomic_load(&burst_bad), 0);
    assert_int_equal(fo_sub_gap_count(s), 0);
    fo_client_stats_t st;
    fo_client_stats(c, &st);
    assert_true(st.bytes_in > 2 * BURST_PER_THREAD * (uint64_t)BURST_SIZE);
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(fo_client_close(c, 2000), FO_OK);
}

/* A broker that stops (SIGSTOP) while a publisher floods it: the
 * publisher waits in poll() for room that never comes, until the reader
 * thread declares the broker dead and shuts the socket down; then
 * fo_publish says the client is closed. */
static atomic_int flood_done;

static void *flooder(void *arg)
{
    fo_client_t *c = arg;
    static const char pad[4096];
    fo_err_t e;
    while ((e = fo_publish(c, "tls.hung", pad, sizeof pad)) == FO_OK || e == FO_ERR_BUSY)
        ;
    atomic_store(&flood_done, 1);
    return (void *)(intptr_t)e;
}

static void test_hung_broker_releases_publisher(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *extra[] = { "--ping-interval", "200ms", "--idle-timeout", "600ms", NULL };
    assert_int_equal(fo_tb_start_tls(&b, extra), 0);
    const char *server = b.tls_addr;
    fo_client_opts_t o;
    tls_opts(&o, &server, ca);
    fo_client_t *c;
    char err[256];
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_OK);
    fo_tb_signal(&b, SIGSTOP);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, flooder, c), 0);
    uint64_t end = fo_tb_now_ms() + 15000;
    while (!atomic_load(&flood_done) && fo_tb_now_ms() < end)
        usleep(10000);                    /* polling a condition, with a deadline */
    fo_tb_signal(&b, SIGCONT);
    assert_true(atomic_load(&flood_done));
    void *rc;
    pthread_join(t, &rc);
    assert_int_equal((fo_err_t)(intptr_t)rc, FO_ERR_CLOSED);
    assert_non_null(strstr(fo_client_last_error(c, err, sizeof err), "nothing heard"));
    fo_client_destroy(c);
    fo_tb_stop(&b);
}

/* ------------------------------------------------------------ credentials */

static fo_tb_t auth;                     /* users file, plain and TLS */

static int run(const char *input, char *out, char *err, ...)
{
    const char *argv[40] = { "fanout" };
    int n = 1;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *)) && n < 39;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return fo_tb_run(argv, input, out, 8192, err, 4096, 20000);
}

static int count_newlines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void clear_env(void)
{
    unsetenv("FANOUT_USER");
    unsetenv("FANOUT_PASSWORD");
    unsetenv("FANOUT_TOKEN");
    unsetenv("FANOUT_TLS_CA");
}

/* The library: user + password, user + token; a wrong one is refused
 * with the broker's reason. */
static void test_library_credentials(void **state)
{
    (void)state;
    write_users();
    const char *extra[] = { "--users", users_path, NULL };
    assert_int_equal(fo_tb_start_tls(&auth, extra), 0);
    const char *server = auth.tls_addr;
    fo_client_opts_t o;
    tls_opts(&o, &server, ca);
    fo_client_t *c = NULL;
    char err[256];
    o.user = "alice";
    o.password = "alice-pw";
    if (fo_client_connect(&o, &c, err, sizeof err) != FO_OK)
        fail_msg("alice: %s", err);
    round_trip(c, "tls.cred.a");
    fo_client_destroy(c);
    o.user = "bob";
    o.password = NULL;
    o.token = "bob-token";
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_OK);
    round_trip(c, "tls.cred.b");
    fo_client_destroy(c);
    o.token = "not-bob's";
    assert_int_equal(fo_client_connect(&o, &c, err, sizeof err), FO_ERR_SERVER);
    assert_string_equal(err, "the broker refused the login: bad credentials");
}

/* The command line: --user/--password/--token and FANOUT_USER,
 * FANOUT_PASSWORD, FANOUT_TOKEN, FANOUT_TLS_CA; the options win. */
static void test_cli_credentials(void **state)
{
    (void)state;
    static char out[8192], err[4096];
    clear_env();
    const char *s = auth.tls_addr;
    /* flags */
    assert_int_equal(run(NULL, out, err, "pub", "-s", s, "--tls-ca", ca, "--user", "alice",
                         "--password", "alice-pw", "tls.cli", "one", NULL), 0);
    assert_int_equal(run(NULL, out, err, "pub", "-s", s, "--tls-ca", ca, "--user", "bob",
                         "--token", "bob-token", "tls.cli", "two", NULL), 0);
    /* a wrong password: one line, exit 1 */
    assert_int_equal(run(NULL, out, err, "sub", "-s", s, "--tls-ca", ca, "--user", "alice",
                         "--password", "wrong", "tls.cli", NULL), 1);
    assert_string_equal(err, "fanout sub: the broker refused the login: bad credentials\n");
    /* the environment */
    setenv("FANOUT_TLS_CA", ca, 1);
    setenv("FANOUT_USER", "alice", 1);
    setenv("FANOUT_PASSWORD", "alice-pw", 1);
    assert_int_equal(run(NULL, out, err, "pub", "-s", s, "tls.cli", "three", NULL), 0);
    assert_int_equal(run(NULL, out, err, "sub", "-s", s, "tls.cli", "--from", "earliest",
                         "-n", "3", NULL), 0);
    assert_string_equal(out, "one\ntwo\nthree\n");
    assert_int_equal(run(NULL, out, err, "request", "-s", s, "tls.nobody", "--timeout", "2",
                         NULL), 1);
    assert_non_null(strstr(err, "no responders"));
    assert_int_equal(run(NULL, out, err, "stats", "-s", s, "--json", NULL), 0);
    assert_non_null(strstr(out, "\"fanout_logins_total\":"));
    assert_int_equal(run(NULL, out, err, "bench", "-s", s, "--pubs", "1", "--subs", "1",
                         "--msgs", "2000", "--size", "64", "--json", NULL), 0);
    assert_non_null(strstr(out, "\"lost\":0"));
    /* the options win over the environment */
    assert_int_equal(run(NULL, out, err, "pub", "-s", s, "--password", "wrong", "tls.cli",
                         "x", NULL), 1);
    assert_string_equal(err, "fanout pub: the broker refused the login: bad credentials\n");
    unsetenv("FANOUT_PASSWORD");
    setenv("FANOUT_USER", "bob", 1);
    setenv("FANOUT_TOKEN", "bob-token", 1);
    assert_int_equal(run(NULL, out, err, "pub", "-s", s, "tls.cli", "four", NULL), 0);
    /* over plain TCP the same login works (loopback) */
    assert_int_equal(run(NULL, out, err, "pub", "-s", auth.plain, "tls.cli", "five", NULL), 0);
    /* the CA: the wrong one refused in one line; --tls-insecure warns */
    assert_int_equal(run(NULL, out, err, "pub", "-s", s, "--tls-ca", other_ca, "tls.cli", "x",
                         NULL), 1);
    char want[200];
    snprintf(want, sizeof want, "fanout pub: certificate verify failed: unable to get local "
             "issuer certificate (%s)\n", s);
    assert_string_equal(err, want);
    assert_int_equal(run(NULL, out, err, "pub", "-s", s, "--tls-ca", other_ca, "--tls-insecure",
                         "tls.cli", "six", NULL), 0);
    assert_non_null(strstr(err, "warning: --tls-insecure"));
    clear_env();
    fo_tb_stop(&auth);
}

/* fanout with a client certificate: --tls-cert/--tls-key log in. */
static void test_cli_client_certificate(void **state)
{
    (void)state;
    static char out[8192], err[4096];
    clear_env();
    write_users();
    fo_tb_t b;
    const char *extra[] = { "--users", users_path, "--tls-ca", ca, "--tls-verify-client",
                            "required", "--tls-user-from", "cn", NULL };
    assert_int_equal(fo_tb_start_tls(&b, extra), 0);
    assert_int_equal(run(NULL, out, err, "pub", "-s", b.tls_addr, "--tls-ca", ca, "--tls-cert",
                         client_cert, "--tls-key", client_key, "tls.cert", "x", NULL), 0);
    assert_int_equal(run(NULL, out, err, "pub", "-s", b.tls_addr, "--tls-ca", ca, "tls.cert",
                         "x", NULL), 1);
    assert_int_equal(count_newlines(err), 1);
    fo_tb_stop(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrong_ca_refused),
        cmocka_unit_test(test_hostname_mismatch_refused),
        cmocka_unit_test(test_client_certificate_login),
        cmocka_unit_test(test_reconnect_after_restart),
        cmocka_unit_test(test_burst_loses_nothing),
        cmocka_unit_test(test_hung_broker_releases_publisher),
        cmocka_unit_test(test_library_credentials),
        cmocka_unit_test(test_cli_credentials),
        cmocka_unit_test(test_cli_client_certificate),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
