/* test_config.c -- the option table: parsers, bounds, sources, precedence,
 * reload, --help/--version, and docs/CONFIG.md kept in step with --help. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "../../broker/broker.h"
#include "../../broker/config.h"

/* ------------------------------------------------------------ helpers */

static char errbuf[512];

/* fo_config_load with a NULL-terminated argv (program name added) and env. */
static fo_err_t load(fo_config_t *c, const char *const *args, const char *const *env, int *exit_now)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"fanoutd";
    for (; args && *args; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    static char *const empty_env[] = { NULL };
    int dummy;
    return fo_config_load(c, argc, argv, env ? (char **)env : (char **)empty_env, stdout,
                          exit_now ? exit_now : &dummy, errbuf, sizeof errbuf);
}

/* A temporary config file holding `text`; the path is in path[]. */
static void write_file(char *path, size_t len, const char *text)
{
    snprintf(path, len, "/tmp/fanout-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
}

static void expect_error(fo_config_t *c, const char *name, const char *value, const char *msg)
{
    assert_int_equal(fo_config_set(c, name, value, errbuf, sizeof errbuf), FO_ERR_INVAL);
    if (!strstr(errbuf, msg))
        fail_msg("--%s %s: got \"%s\", want it to contain \"%s\"", name, value, errbuf, msg);
    assert_null(strchr(errbuf, '\n'));
}

/* ------------------------------------------------------------ parsers */

static void test_parse_size(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t v; } ok[] = {
        { "0", 0 }, { "512", 512 }, { "64B", 64 }, { "64k", 65536 }, { "64K", 65536 },
        { "64KiB", 65536 }, { "1M", 1 << 20 }, { "1MiB", 1 << 20 }, { "1 MiB", 1 << 20 },
        { "2G", 2ull << 30 }, { "1GiB", 1ull << 30 }, { "3mb", 3 << 20 }, { "1T", 1ull << 40 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 1;
        assert_int_equal(fo_parse_size(ok[i].s, &v), FO_OK);
        assert_true(v == ok[i].v);
    }
    static const char *const bad[] = { "", "abc", "-1", "1.5M", "1X", "M", " 1", "1MiBs", "0x10" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v;
        assert_int_equal(fo_parse_size(bad[i], &v), FO_ERR_INVAL);
    }
    uint64_t v;
    assert_int_equal(fo_parse_size("99999999999999999999", &v), FO_ERR_INVAL);
    assert_int_equal(fo_parse_size("17179869184G", &v), FO_ERR_RANGE);
    assert_int_equal(fo_parse_size(NULL, &v), FO_ERR_INVAL);
}

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t v; } ok[] = {
        { "0", 0 }, { "250", 250 }, { "500ms", 500 }, { "10s", 10000 }, { "2m", 120000 },
        { "1h", 3600000 }, { "3S", 3000 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 1;
        assert_int_equal(fo_parse_duration_ms(ok[i].s, &v), FO_OK);
        assert_true(v == ok[i].v);
    }
    static const char *const bad[] = { "", "s", "1d", "1.5s", "-1s", "10 sec" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v;
        assert_int_equal(fo_parse_duration_ms(bad[i], &v), FO_ERR_INVAL);
    }
}

/* ------------------------------------------------------------ the table */

static void test_defaults(void **state)
{
    (void)state;
    fo_config_t c;
    fo_config_defaults(&c);
    assert_string_equal(c.listen, "127.0.0.1:7400");
    assert_string_equal(c.http, "127.0.0.1:7401");
    assert_string_equal(c.config_file, "");
    assert_int_equal(c.threads, 0);
    assert_int_equal(c.max_frame, 1 << 20);
    assert_int_equal(c.max_conns, 10000);
    assert_true(c.max_memory == 1ull << 30);
    assert_true(c.max_output == 32ull << 20);
    assert_int_equal(c.slow_policy, FO_POLICY_DROP);
    assert_int_equal(c.retention_msgs, 1000);
    assert_true(c.retention_bytes == 8ull << 20);
    assert_int_equal(c.max_topics, 100000);
    assert_int_equal(c.max_subs, 10000);
    assert_int_equal(c.ping_interval_ms, 10000);
    assert_int_equal(c.idle_timeout_ms, 30000);
    assert_int_equal(c.hello_timeout_ms, 5000);
    assert_int_equal(c.drain_timeout_ms, 5000);
    assert_true(c.read_budget == 256 * 1024);
    assert_int_equal(c.log_level, FO_LOG_INFO);
    assert_string_equal(c.user, "");
    assert_string_equal(c.password, "");
    assert_int_equal(c.mcast_count, 0);
    assert_int_equal(c.mcast_ttl, 1);
    assert_string_equal(c.mcast_if, "");
    assert_int_equal(c.mcast_loop, 1);
    assert_int_equal(c.max_datagram, 1400);
    assert_true(c.set_by_argv == 0);
    /* a load with nothing given is the defaults */
    fo_config_t d;
    assert_int_equal(load(&d, NULL, NULL, NULL), FO_OK);
    assert_memory_equal(&c, &d, sizeof c);
}

static void test_set_each_type(void **state)
{
    (void)state;
    fo_config_t c;
    fo_config_defaults(&c);
    assert_int_equal(fo_config_set(&c, "threads", "8", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.threads, 8);
    assert_int_equal(fo_config_set(&c, "max-frame", "64k", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.max_frame, 65536);
    assert_int_equal(fo_config_set(&c, "max-memory", "2GiB", errbuf, sizeof errbuf), FO_OK);
    assert_true(c.max_memory == 2ull << 30);
    assert_int_equal(fo_config_set(&c, "idle-timeout", "1m", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.idle_timeout_ms, 60000);
    assert_int_equal(fo_config_set(&c, "slow-policy", "disconnect", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.slow_policy, FO_POLICY_DISCONNECT);
    assert_int_equal(fo_config_set(&c, "log-level", "DEBUG", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.log_level, FO_LOG_DEBUG);
    assert_int_equal(fo_config_set(&c, "log-level", "error", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.log_level, FO_LOG_ERROR);
    assert_int_equal(fo_config_set(&c, "mcast-loop", "no", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.mcast_loop, 0);
    assert_int_equal(fo_config_set(&c, "mcast-loop", "true", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.mcast_loop, 1);
    assert_int_equal(fo_config_set(&c, "user", "alice", errbuf, sizeof errbuf), FO_OK);
    assert_string_equal(c.user, "alice");
    assert_int_equal(fo_config_set(&c, "listen", ":9000", errbuf, sizeof errbuf), FO_OK);
    assert_string_equal(c.listen, "0.0.0.0:9000");
    assert_int_equal(fo_config_set(&c, "listen", "[::1]:0", errbuf, sizeof errbuf), FO_OK);
    assert_string_equal(c.listen, "[::1]:0");
    assert_int_equal(fo_config_set(&c, "http", "off", errbuf, sizeof errbuf), FO_OK);
    assert_string_equal(c.http, "off");
    assert_int_equal(fo_config_set(&c, "mcast-if", "192.168.1.2", errbuf, sizeof errbuf), FO_OK);
    assert_string_equal(c.mcast_if, "192.168.1.2");
    assert_int_equal(fo_config_set(&c, "mcast-if", "", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(fo_config_set(&c, "retention-msgs", "0", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.retention_msgs, 0);
    assert_int_equal(fo_config_set(&c, "max-datagram", "65000", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.max_datagram, 65000);
}

static void test_bad_values(void **state)
{
    (void)state;
    fo_config_t c;
    fo_config_defaults(&c);
    fo_config_t before = c;
    expect_error(&c, "max-frame", "abc", "fanoutd: --max-frame: \"abc\" is not a size (e.g. 1MiB)");
    expect_error(&c, "max-frame", "16", "--max-frame: \"16\" is below the minimum 64B");
    expect_error(&c, "max-frame", "65M", "is above the maximum 64MiB");
    expect_error(&c, "max-frame", "999999999999999T", "is too large");
    expect_error(&c, "threads", "x", "--threads: \"x\" is not a whole number");
    expect_error(&c, "threads", "-1", "is not a whole number");
    expect_error(&c, "threads", "65", "above the maximum 64");
    expect_error(&c, "max-conns", "0", "below the minimum 1");
    expect_error(&c, "max-conns", "1000001", "above the maximum 1000000");
    expect_error(&c, "retention-msgs", "10000001", "above the maximum 10000000");
    expect_error(&c, "ping-interval", "soon", "is not a duration");
    expect_error(&c, "ping-interval", "2h", "above the maximum 1h");
    expect_error(&c, "slow-policy", "panic", "\"panic\" is not one of drop|disconnect");
    expect_error(&c, "log-level", "trace", "is not one of error|warn|info|debug");
    expect_error(&c, "mcast-loop", "maybe", "is not a boolean");
    expect_error(&c, "mcast-ttl", "256", "above the maximum 255");
    expect_error(&c, "max-datagram", "511", "below the minimum 512B");
    expect_error(&c, "max-datagram", "65001", "above the maximum 65000B");
    expect_error(&c, "listen", "7400", "--listen: \"7400\" is not HOST[:PORT] (a port alone is written \":7400\")");
    expect_error(&c, "http", "no where", "is not HOST[:PORT] or off");
    expect_error(&c, "mcast-if", "eth0", "is not an IPv4 address");
    expect_error(&c, "nosuch", "1", "--nosuch: unknown option");
    char longv[300];
    memset(longv, 'u', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    expect_error(&c, "user", longv, "value too long (at most 63 bytes)");
    expect_error(&c, "listen", longv, "--listen:");
    assert_memory_equal(&c, &before, sizeof c);    /* nothing half-set */
    /* a host alone takes the option's own port */
    assert_int_equal(fo_config_set(&c, "listen", "broker.local", NULL, 0), FO_OK);
    assert_string_equal(c.listen, "broker.local:7400");
    assert_int_equal(fo_config_set(&c, "http", "[::1]", NULL, 0), FO_OK);
    assert_string_equal(c.http, "[::1]:7401");
}

static void test_mcast_groups(void **state)
{
    (void)state;
    fo_config_t c;
    fo_config_defaults(&c);
    assert_int_equal(fo_config_set(&c, "mcast-group", "prices.>=239.1.2.3:7500", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(fo_config_set(&c, "mcast-group", "a.*.c=224.0.0.251:1", errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.mcast_count, 2);
    assert_string_equal(c.mcast[0].filter, "prices.>");
    assert_string_equal(c.mcast[0].addr, "239.1.2.3");
    assert_int_equal(c.mcast[0].port, 7500);
    assert_string_equal(c.mcast[1].filter, "a.*.c");
    expect_error(&c, "mcast-group", "prices", "is not FILTER=ADDR:PORT");
    expect_error(&c, "mcast-group", "p=10.0.0.1:7500", "\"10.0.0.1\" is not an IPv4 multicast address (224.0.0.0/4)");
    expect_error(&c, "mcast-group", "p=240.0.0.1:7500", "not an IPv4 multicast address");
    expect_error(&c, "mcast-group", "p=239.0.0.1", "is not ADDR:PORT");
    expect_error(&c, "mcast-group", "p=239.0.0.1:0", "is not ADDR:PORT");
    expect_error(&c, "mcast-group", "=239.0.0.1:1", "not a valid topic filter");
    expect_error(&c, "mcast-group", "a..b=239.0.0.1:1", "not a valid topic filter");
    expect_error(&c, "mcast-group", "a.>.b=239.0.0.1:1", "not a valid topic filter");
    expect_error(&c, "mcast-group", "a.b*=239.0.0.1:1", "not a valid topic filter");
    assert_int_equal(c.mcast_count, 2);
    for (int i = 2; i < FO_MCAST_MAX_GROUPS; i++)
        assert_int_equal(fo_config_set(&c, "mcast-group", "x=239.0.0.9:9", errbuf, sizeof errbuf), FO_OK);
    expect_error(&c, "mcast-group", "x=239.0.0.9:9", "too many groups (at most 32)");
}

/* ------------------------------------------------------------ sources */

static void test_argv_forms(void **state)
{
    (void)state;
    fo_config_t c;
    const char *args[] = { "--threads", "3", "--max-frame=2MiB", "--listen=127.0.0.1:0",
                           "--user", "", NULL };
    assert_int_equal(load(&c, args, NULL, NULL), FO_OK);
    assert_int_equal(c.threads, 3);
    assert_int_equal(c.max_frame, 2 << 20);
    assert_string_equal(c.listen, "127.0.0.1:0");
    assert_true(c.set_by_argv != 0);

    const char *bad1[] = { "--max-frame", "abc", NULL };
    assert_int_equal(load(&c, bad1, NULL, NULL), FO_ERR_INVAL);
    assert_string_equal(errbuf, "fanoutd: --max-frame: \"abc\" is not a size (e.g. 1MiB)");
    const char *bad2[] = { "--threads", NULL };
    assert_int_equal(load(&c, bad2, NULL, NULL), FO_ERR_INVAL);
    assert_string_equal(errbuf, "fanoutd: --threads: missing value");
    const char *bad3[] = { "--bogus=1", NULL };
    assert_int_equal(load(&c, bad3, NULL, NULL), FO_ERR_INVAL);
    assert_string_equal(errbuf, "fanoutd: --bogus: unknown option (see --help)");
    const char *bad4[] = { "stray", NULL };
    assert_int_equal(load(&c, bad4, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, "unexpected argument \"stray\""));
    const char *bad5[] = { "--ping-interval", "30s", NULL };     /* idle 30s must be > */
    assert_int_equal(load(&c, bad5, NULL, NULL), FO_ERR_INVAL);
    assert_string_equal(errbuf, "fanoutd: --idle-timeout (30s) must be greater than --ping-interval (30s)");
}

static void test_help_version(void **state)
{
    (void)state;
    fo_config_t c;
    int exit_now = 0;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    char *argv[] = { (char *)"fanoutd", (char *)"--max-frame", (char *)"abc", (char *)"--help", NULL };
    char *env[] = { (char *)"FANOUT_THREADS=zzz", NULL };
    /* --help wins over bad values (it is what the user needs then) */
    assert_int_equal(fo_config_load(&c, 4, argv, env, out, &exit_now, errbuf, sizeof errbuf), FO_OK);
    fclose(out);
    assert_int_equal(exit_now, 1);
    assert_non_null(strstr(text, "Usage: fanoutd"));
    assert_non_null(strstr(text, "--max-frame SIZE"));
    assert_non_null(strstr(text, "default 1MiB, 64B..64MiB, $FANOUT_MAX_FRAME"));
    assert_non_null(strstr(text, "$FANOUT_LOG_LEVEL (*)"));
    assert_non_null(strstr(text, "Multicast:"));
    for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1)
        if (nl - line > 80)
            fail_msg("--help line wider than 80 columns: %.*s", (int)(nl - line), line);
    free(text);

    text = NULL;
    out = open_memstream(&text, &len);
    char *argv2[] = { (char *)"fanoutd", (char *)"--version", NULL };
    exit_now = 0;
    assert_int_equal(fo_config_load(&c, 2, argv2, env, out, &exit_now, errbuf, sizeof errbuf), FO_OK);
    fclose(out);
    assert_int_equal(exit_now, 1);
    assert_string_equal(text, "fanoutd " FO_VERSION "\n");
    free(text);

    /* a value that looks like --help is a value, not a flag */
    const char *args[] = { "--user", "--help", "--password", "pw", NULL };
    exit_now = 0;
    assert_int_equal(load(&c, args, NULL, &exit_now), FO_OK);
    assert_int_equal(exit_now, 0);
    assert_string_equal(c.user, "--help");
}

/* The login options check each other: the old --password-alone hole
 * (everyone let in without a word) is a usage error now. */
static void test_auth_options(void **state)
{
    (void)state;
    fo_config_t c;
    const char *pw_only[] = { "--password", "s3cret", NULL };
    assert_int_equal(load(&c, pw_only, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, "--password needs --user"));
    const char *user_only[] = { "--user", "alice", NULL };
    assert_int_equal(load(&c, user_only, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, "--user alice needs --password"));
    const char *both[] = { "--user", "alice", "--password", "pw", "--users", "/etc/fanout/users", NULL };
    assert_int_equal(load(&c, both, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, "exclusive"));
    const char *env[] = { "FANOUT_PASSWORD=s3cret", NULL };
    assert_int_equal(load(&c, NULL, env, NULL), FO_ERR_INVAL);   /* the same from the environment */
    const char *ok[] = { "--users", "/etc/fanout/users", "--allow-anonymous", "1", "--http-token", "t0k", NULL };
    assert_int_equal(load(&c, ok, NULL, NULL), FO_OK);
    assert_string_equal(c.users_file, "/etc/fanout/users");
    assert_int_equal(c.allow_anonymous, 1);
    assert_string_equal(c.http_token, "t0k");
    const char *bare[] = { "--allow-anonymous", "--threads", "2", NULL };   /* a switch needs no value */
    assert_int_equal(load(&c, bare, NULL, NULL), FO_OK);
    assert_int_equal(c.allow_anonymous, 1);
    assert_int_equal(c.threads, 2);
    const char *last[] = { "--mcast-loop", NULL };
    assert_int_equal(load(&c, last, NULL, NULL), FO_OK);
    assert_int_equal(c.mcast_loop, 1);
    const char *off[] = { "--allow-anonymous", "no", NULL };
    assert_int_equal(load(&c, off, NULL, NULL), FO_OK);
    assert_int_equal(c.allow_anonymous, 0);
    fo_config_defaults(&c);
    assert_string_equal(c.listen, "127.0.0.1:7400");            /* loopback unless told */
    assert_int_equal(c.allow_anonymous, 0);
}

static void test_env(void **state)
{
    (void)state;
    fo_config_t c;
    const char *env[] = { "PATH=/bin", "FANOUT_MAX_CONNS=77", "FANOUT_SLOW_POLICY=disconnect",
                          "FANOUT_MCAST_GROUP=a=239.0.0.1:1, b.>=239.0.0.2:2",
                          "FANOUT_UNRELATED=1", "FANOUT_SERVER=x:1", NULL };
    assert_int_equal(load(&c, NULL, env, NULL), FO_OK);
    assert_int_equal(c.max_conns, 77);
    assert_int_equal(c.slow_policy, FO_POLICY_DISCONNECT);
    assert_int_equal(c.mcast_count, 2);
    assert_string_equal(c.mcast[1].filter, "b.>");
    assert_int_equal(c.mcast[1].port, 2);

    const char *bad[] = { "FANOUT_THREADS=many", NULL };
    assert_int_equal(load(&c, NULL, bad, NULL), FO_ERR_INVAL);
    assert_string_equal(errbuf, "fanoutd: FANOUT_THREADS: \"many\" is not a whole number");
}

static void test_file_and_precedence(void **state)
{
    (void)state;
    char path[64];
    write_file(path, sizeof path,
               "# fanoutd config\n"
               "\n"
               "   threads 2\n"
               "max-conns = 500   # trailing comment\n"
               "max-subs 9\n"
               "user \"bob # not a comment\"\n"
               "password pa#ss\n"
               "mcast-group f1=239.0.0.1:1\n"
               "mcast-group f2=239.0.0.2:2\n"
               "log-level\tdebug\n");
    fo_config_t c;
    const char *args[] = { "--config", path, "--max-subs", "11", NULL };
    const char *env[] = { "FANOUT_MAX_CONNS=600", "FANOUT_MAX_SUBS=10", NULL };
    assert_int_equal(load(&c, args, env, NULL), FO_OK);
    assert_string_equal(c.config_file, path);
    assert_int_equal(c.threads, 2);            /* file */
    assert_int_equal(c.max_conns, 600);        /* env > file */
    assert_int_equal(c.max_subs, 11);          /* argv > env > file */
    assert_string_equal(c.user, "bob # not a comment");
    assert_string_equal(c.password, "pa#ss");
    assert_int_equal(c.log_level, FO_LOG_DEBUG);
    assert_int_equal(c.mcast_count, 2);        /* a file's list lines add up */

    /* a list from a higher source replaces the lower one */
    const char *args2[] = { "--config", path, "--mcast-group", "f9=239.0.0.9:9", NULL };
    assert_int_equal(load(&c, args2, NULL, NULL), FO_OK);
    assert_int_equal(c.mcast_count, 1);
    assert_string_equal(c.mcast[0].filter, "f9");

    /* FANOUT_CONFIG names the file; --config overrides it */
    const char *env2[] = { NULL, NULL };
    char ev[128];
    snprintf(ev, sizeof ev, "FANOUT_CONFIG=%s", path);
    env2[0] = ev;
    assert_int_equal(load(&c, NULL, env2, NULL), FO_OK);
    assert_int_equal(c.threads, 2);
    const char *args3[] = { "--config", "/nonexistent/fanout.conf", NULL };
    assert_int_equal(load(&c, args3, env2, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, "fanoutd: --config: cannot open \"/nonexistent/fanout.conf\""));
    unlink(path);
}

static void test_file_errors(void **state)
{
    (void)state;
    static const struct { const char *text, *msg; } cases[] = {
        { "threads 2\nbogus 1\n", ":2: bogus: unknown option" },
        { "max-frame abc\n", ":1: max-frame: \"abc\" is not a size (e.g. 1MiB)" },
        { "config /etc/other\n", ":1: config: not allowed in a config file" },
        { "user \"open\n", ":1: user: missing closing quote" },
        { "user \"a\" b\n", ":1: user: text after the closing quote" },
        { "threads\n", ":1: threads: \"\" is not a whole number" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[64];
        write_file(path, sizeof path, cases[i].text);
        fo_config_t c;
        const char *args[] = { "--config", path, NULL };
        assert_int_equal(load(&c, args, NULL, NULL), FO_ERR_INVAL);
        if (!strstr(errbuf, cases[i].msg) || strncmp(errbuf, "fanoutd: /tmp/", 14) != 0)
            fail_msg("case %zu: got \"%s\"", i, errbuf);
        unlink(path);
    }
    /* a line longer than the limit is an error, not a silent split */
    char *big = malloc(6000);
    memset(big, 'x', 5998);
    memcpy(big, "user ", 5);
    big[5998] = '\n';
    big[5999] = '\0';
    char path[64];
    write_file(path, sizeof path, big);
    free(big);
    fo_config_t c;
    const char *args[] = { "--config", path, NULL };
    assert_int_equal(load(&c, args, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, ":1: line too long"));
    unlink(path);
}

/* Rewrite the file with `text`: the reload fails with `msg`, c unchanged. */
static void reload_fails(fo_config_t *c, const char *path, const char *text, const char *msg)
{
    fo_config_t before = *c;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(fo_config_reload(c, NULL, errbuf, sizeof errbuf), FO_ERR_INVAL);
    if (!strstr(errbuf, msg))
        fail_msg("got \"%s\", want \"%s\"", errbuf, msg);
    assert_memory_equal(c, &before, sizeof *c);
}

static void test_reload(void **state)
{
    (void)state;
    char path[64];
    write_file(path, sizeof path, "threads 2\nmax-conns 100\nlog-level info\n");
    fo_config_t c;
    const char *args[] = { "--config", path, "--max-output", "1MiB", NULL };
    assert_int_equal(load(&c, args, NULL, NULL), FO_OK);
    assert_int_equal(c.threads, 2);
    assert_int_equal(c.max_conns, 100);

    /* the file changes: reloadable options follow, others and argv stay */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("threads 4\nmax-conns 200\nlog-level debug\nmax-output 2MiB\nlisten 127.0.0.1:1\n"
          "retention-msgs 5\nidle-timeout 1m\n", f);
    fclose(f);
    char *env[] = { (char *)"FANOUT_SLOW_POLICY=disconnect", (char *)"FANOUT_CONFIG=/nope", NULL };
    assert_int_equal(fo_config_reload(&c, env, errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(c.threads, 2);                      /* not reloadable */
    assert_string_equal(c.listen, "127.0.0.1:7400");       /* not reloadable */
    assert_int_equal(c.max_conns, 200);
    assert_int_equal(c.log_level, FO_LOG_DEBUG);
    assert_true(c.max_output == 1ull << 20);             /* argv wins */
    assert_int_equal(c.retention_msgs, 5);
    assert_int_equal(c.idle_timeout_ms, 60000);
    assert_int_equal(c.slow_policy, FO_POLICY_DISCONNECT); /* env */
    assert_string_equal(c.config_file, path);

    /* a bad file changes nothing, nor does a broken cross-check */
    reload_fails(&c, path, "max-conns 300\nmax-memory lots\n", "max-memory: \"lots\" is not a size");
    reload_fails(&c, path, "ping-interval 1m\n", "must be greater than --ping-interval");
    fo_config_t before = c;
    /* a vanished file is an error too */
    unlink(path);
    assert_int_equal(fo_config_reload(&c, NULL, errbuf, sizeof errbuf), FO_ERR_INVAL);
    assert_memory_equal(&c, &before, sizeof c);
}

/* The TLS group: defaults, the listener's own port, and the cross-checks
 * that make a half-configured TLS listener a usage error. */
static void test_tls_options(void **state)
{
    (void)state;
    fo_config_t c;
    assert_int_equal(load(&c, NULL, NULL, NULL), FO_OK);
    assert_string_equal(c.tls_listen, "off");
    assert_string_equal(c.tls_cert, "");
    assert_int_equal(c.tls_verify_client, FO_TLS_VERIFY_NONE);
    assert_int_equal(c.tls_user_from, FO_TLS_USER_OFF);
    const char *ok[] = { "--tls-listen", "127.0.0.1", "--tls-cert", "/c.pem", "--tls-key", "/k.pem",
                         "--tls-ca", "/ca.pem", "--tls-verify-client", "required",
                         "--tls-user-from", "san", NULL };
    assert_int_equal(load(&c, ok, NULL, NULL), FO_OK);
    assert_string_equal(c.tls_listen, "127.0.0.1:7443");     /* FO_PORT_TLS */
    assert_int_equal(c.tls_verify_client, FO_TLS_VERIFY_REQUIRED);
    assert_int_equal(c.tls_user_from, FO_TLS_USER_SAN);
    expect_error(&c, "tls-verify-client", "maybe", "is not one of none|optional|required");
    expect_error(&c, "tls-user-from", "uid", "is not one of off|cn|san");
    const char *no_key[] = { "--tls-listen", ":7443", "--tls-cert", "/c.pem", NULL };
    assert_int_equal(load(&c, no_key, NULL, NULL), FO_ERR_INVAL);
    assert_string_equal(errbuf, "fanoutd: --tls-listen 0.0.0.0:7443 needs --tls-cert and --tls-key");
    const char *no_ca[] = { "--tls-verify-client", "optional", NULL };
    assert_int_equal(load(&c, no_ca, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, "--tls-verify-client optional needs --tls-ca"));
    const char *no_verify[] = { "--tls-user-from", "cn", NULL };
    assert_int_equal(load(&c, no_verify, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, "--tls-user-from cn needs --tls-verify-client"));
}

/* The cluster's options (docs/CLUSTER.md): off by default, the default
 * port, and the cross-checks. */
static void test_cluster_options(void **state)
{
    (void)state;
    fo_config_t c;
    assert_int_equal(load(&c, NULL, NULL, NULL), FO_OK);
    assert_string_equal(c.cluster_listen, "off");
    assert_string_equal(c.cluster_peers, "");
    assert_int_equal(c.cluster_max_output, 64ull << 20);
    assert_int_equal(c.cluster_resolve_ms, 2000);
    assert_int_equal(c.cluster_tls, 0);
    const char *ok[] = { "--cluster-listen", "0.0.0.0", "--cluster-peers", "dns:tasks.broker:7402,10.0.0.2:7402",
                         "--node-id", "broker-1", "--cluster-secret-file", "/run/secrets/s",
                         "--cluster-dns-interval", "500ms", NULL };
    assert_int_equal(load(&c, ok, NULL, NULL), FO_OK);
    assert_string_equal(c.cluster_listen, "0.0.0.0:7402");     /* FO_PORT_CLUSTER */
    assert_int_equal(c.cluster_resolve_ms, 500);
    const char *both[] = { "--cluster-secret", "x", "--cluster-secret-file", "/s", NULL };
    assert_int_equal(load(&c, both, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, "--cluster-secret and --cluster-secret-file are exclusive"));
    const char *same[] = { "--listen", "127.0.0.1:7400", "--cluster-listen", "127.0.0.1:7400", NULL };
    assert_int_equal(load(&c, same, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, "is the client listener's address"));
    const char *tls[] = { "--cluster-tls", "1", "--tls-cert", "/c.pem", "--tls-key", "/k.pem", NULL };
    assert_int_equal(load(&c, tls, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, "--cluster-tls needs"));
    const char *tls_ok[] = { "--cluster-tls", "1", "--tls-cert", "/c.pem", "--tls-key", "/k.pem",
                             "--cluster-tls-ca", "/ca.pem", NULL };
    assert_int_equal(load(&c, tls_ok, NULL, NULL), FO_OK);
    const char *env[] = { "FANOUT_NODE_ID=broker-2", NULL };   /* Swarm expands the template */
    assert_int_equal(load(&c, NULL, env, NULL), FO_OK);
    assert_string_equal(c.node_id, "broker-2");
}

/* Every option --help lists is documented in docs/CONFIG.md with its env
 * variable (the doc must stay true to the table). */
static void test_docs_cover_every_option(void **state)
{
    (void)state;
    FILE *doc = fopen("docs/CONFIG.md", "r");
    if (!doc)
        skip();
    char *text = NULL, *help = NULL;
    size_t tlen = 0, hlen = 0;
    FILE *t = open_memstream(&text, &tlen);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, doc)) > 0)
        fwrite(buf, 1, n, t);
    fclose(t);
    fclose(doc);
    FILE *h = open_memstream(&help, &hlen);
    fo_config_usage(h);
    fclose(h);
    int options = 0;
    for (char *line = strtok(help, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64], row[96], env[96];
        if (sscanf(line, "  --%63[a-z-]", name) != 1 || !strcmp(name, "help") || !strcmp(name, "version") ||
            !strcmp(name, "hash-password") || !strcmp(name, "check-config"))
            continue;
        options++;
        snprintf(row, sizeof row, "| `%s` |", name);
        if (!strstr(text, row))
            fail_msg("docs/CONFIG.md has no row for %s", name);
        snprintf(env, sizeof env, "`FANOUT_");
        for (char *p = name; *p; p++) {
            size_t l = strlen(env);
            env[l] = *p == '-' ? '_' : (char)(*p - 'a' + 'A');
            env[l + 1] = '\0';
        }
        strcat(env, "`");
        if (!strstr(text, env))
            fail_msg("docs/CONFIG.md does not name %s", env);
    }
    int rows = 0;   /* and no row for an option that is gone */
    for (char *p = strstr(text, "| `FANOUT_"); p; p = strstr(p + 1, "| `FANOUT_"))
        rows++;
    assert_int_equal(rows, options);
    assert_true(options >= 26);
    free(text);
    free(help);
}

/* ------------------------------------------------------------ issue 14 */

/* An unknown option names the nearest one, wherever it was written. */
static void test_did_you_mean(void **state)
{
    (void)state;
    static const struct { const char *arg, *msg; } cases[] = {
        { "--max-fram", "fanoutd: --max-fram: unknown option, did you mean --max-frame? (see --help)" },
        { "--max_frame", "did you mean --max-frame?" },          /* underscore */
        { "--MAX-FRAME", "did you mean --max-frame?" },          /* case */
        { "--thread", "did you mean --threads?" },
        { "--lisetn", "did you mean --listen?" },                /* a swap */
        { "--max-frames-per-conn", "did you mean --max-frame?" },  /* a prefix */
        { "--retention", "--retention: unknown option (see --help)" },  /* -msgs or -bytes? */
        { "--zzz", "--zzz: unknown option (see --help)" },
    };
    fo_config_t c;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[] = { cases[i].arg, "1", NULL };
        assert_int_equal(load(&c, args, NULL, NULL), FO_ERR_INVAL);
        if (!strstr(errbuf, cases[i].msg))
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].arg, errbuf, cases[i].msg);
    }
    char path[64];
    write_file(path, sizeof path, "threads 2\nmax-conn 5\n");
    const char *args[] = { "--config", path, NULL };
    assert_int_equal(load(&c, args, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, ":2: max-conn: unknown option, did you mean max-conns? (see --help)"));
    unlink(path);
    expect_error(&c, "slow-polcy", "drop", "--slow-polcy: unknown option, did you mean --slow-policy?");
}

static void collect(void *ud, const char *line)
{
    char *buf = ud;
    strcat(buf, line);
    strcat(buf, "\n");
}

/* Unknown FANOUT_* variables are named with a suggestion; the client's and
 * the compose file's own are not. */
static void test_env_warnings(void **state)
{
    (void)state;
    const char *env[] = { "PATH=/bin", "FANOUT_MAX_FRAMES=1", "FANOUT_THREADS=2", "FANOUT_SERVER=x:1",
                          "FANOUT_USER=u", "FANOUT_PASSWORD=p", "FANOUT_TOKEN=t", "FANOUT_PORT=1",
                          "FANOUT_HTTP_PORT=2", "FANOUT_DEMO_COUNT=5", "FANOUT_NOTHING_LIKE_IT=1",
                          "FANOUT_LOGLEVEL=debug", "FANOUTX=1", NULL };
    static char out[4096];
    out[0] = '\0';
    assert_int_equal(fo_config_env_warnings((char **)env, collect, out), 3);
    assert_string_equal(out,
        "FANOUT_MAX_FRAMES is not a fanoutd option (ignored); did you mean FANOUT_MAX_FRAME?\n"
        "FANOUT_NOTHING_LIKE_IT is not a fanoutd option (ignored; see fanoutd --help)\n"
        "FANOUT_LOGLEVEL is not a fanoutd option (ignored); did you mean FANOUT_LOG_LEVEL?\n");
    /* and they still do not stop the broker */
    fo_config_t c;
    assert_int_equal(load(&c, NULL, env, NULL), FO_OK);
    assert_int_equal(c.threads, 2);
}

/* --check-config (-t): loads and checks everything, says where it came from. */
static void test_check_config(void **state)
{
    (void)state;
    char path[64];
    write_file(path, sizeof path, "threads 2\nmax-conns 50\nlog-format json\n");
    const char *args[] = { "--config", path, "--check-config", "--listen", "127.0.0.1:9", NULL };
    const char *env[] = { "FANOUT_MAX_OUTPUT=1MiB", NULL };
    fo_config_t c;
    int exit_now = 1;
    assert_int_equal(load(&c, args, env, &exit_now), FO_OK);
    assert_int_equal(exit_now, 0);
    assert_int_equal(c.check_only, 1);
    assert_int_equal(c.log_format, FO_LOG_JSON);
    char line[1024];
    fo_config_summary(&c, line, sizeof line);
    char want[1024];
    snprintf(want, sizeof want, "configuration OK: clients on 127.0.0.1:9, http 127.0.0.1:7401, "
             "2 workers, log-level info; 3 options from %s, 1 from the environment, "
             "1 from the command line", path);
    assert_string_equal(line, want);
    const char *t[] = { "-t", NULL };
    assert_int_equal(load(&c, t, NULL, NULL), FO_OK);
    assert_int_equal(c.check_only, 1);
    fo_config_summary(&c, line, sizeof line);
    assert_non_null(strstr(line, "a worker per core, log-level info; no config file, 0 from"));
    /* an error is an error, -t or not */
    const char *bad[] = { "-t", "--config", path, "--threads", "x", NULL };
    assert_int_equal(load(&c, bad, NULL, NULL), FO_ERR_INVAL);
    assert_string_equal(errbuf, "fanoutd: --threads: \"x\" is not a whole number");
    unlink(path);
    const char *nolog[] = { "--log-format", "xml", NULL };
    assert_int_equal(load(&c, nolog, NULL, NULL), FO_ERR_INVAL);
    assert_non_null(strstr(errbuf, "\"xml\" is not one of text|json"));
}

typedef struct report {
    char text[4096];
    int n;
} report_t;

static void on_change(void *ud, const char *name, const char *old_v, const char *new_v,
                      fo_change_t kind)
{
    report_t *r = ud;
    snprintf(r->text + strlen(r->text), sizeof r->text - strlen(r->text), "%s %s %s %s\n",
             kind == FO_CHANGE_APPLIED ? "applied" : kind == FO_CHANGE_RESTART ? "restart" : "argv",
             name, old_v, new_v);
    r->n++;
}

/* SIGHUP says, option by option, what changed and what needs a restart. */
static void test_reload_report(void **state)
{
    (void)state;
    char path[64];
    write_file(path, sizeof path, "max-conns 100\nuser u\npassword old\nmcast-group a=239.0.0.1:1\n");
    fo_config_t c;
    const char *args[] = { "--config", path, "--max-output", "1MiB", NULL };
    assert_int_equal(load(&c, args, NULL, NULL), FO_OK);
    report_t r = { "", 0 };
    assert_int_equal(fo_config_reload_report(&c, NULL, on_change, &r, errbuf, sizeof errbuf), FO_OK);
    assert_int_equal(r.n, 0);                       /* nothing changed */

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("max-conns 200\nmax-frame 2MiB\nmax-output 8MiB\nuser u\npassword new\nslow-policy block\n"
          "mcast-group a=239.0.0.1:1\nmcast-group b=239.0.0.2:2\n", f);
    fclose(f);
    const char *env[] = { "FANOUT_IDLE_TIMEOUT=1m", NULL };
    assert_int_equal(fo_config_reload_report(&c, (char **)env, on_change, &r, errbuf, sizeof errbuf), FO_OK);
    assert_string_equal(r.text,
        "restart max-frame 1MiB 2MiB\n"
        "applied max-conns 100 200\n"
        "argv max-output 1MiB 8MiB\n"
        "applied slow-policy drop block\n"
        "applied idle-timeout 30s 1m\n"
        "restart password (hidden) (hidden)\n"
        "restart mcast-group a=239.0.0.1:1 a=239.0.0.1:1,b=239.0.0.2:2\n");
    assert_int_equal(c.max_conns, 200);
    assert_int_equal(c.max_frame, 1 << 20);        /* not reloadable: unchanged */
    assert_true(c.max_output == 1 << 20);          /* the command line wins */
    assert_int_equal(c.mcast_count, 1);
    assert_string_equal(c.password, "old");

    /* a failing reload reports nothing */
    r.text[0] = '\0';
    r.n = 0;
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("max-conns 300\nthreads lots\n", f);
    fclose(f);
    assert_int_equal(fo_config_reload_report(&c, NULL, on_change, &r, errbuf, sizeof errbuf), FO_ERR_INVAL);
    assert_int_equal(r.n, 0);
    assert_int_equal(c.max_conns, 200);
    unlink(path);
}

/* What WELCOME announces as the metrics address (Welcome.http). */
static void test_http_announce(void **state)
{
    (void)state;
    static fo_broker_t b;
    fo_config_defaults(&b.cfg);
    assert_string_equal(fo_broker_http_announce(&b), "127.0.0.1:7401");
    const char *a1[] = { "--http", ":9", NULL };
    assert_int_equal(load(&b.cfg, a1, NULL, NULL), FO_OK);
    assert_string_equal(fo_broker_http_announce(&b), "0.0.0.0:9");   /* wildcard: the client's host */
    const char *a2[] = { "--http", ":9", "--http-announce", "gw.example", NULL };
    assert_int_equal(load(&b.cfg, a2, NULL, NULL), FO_OK);
    assert_string_equal(fo_broker_http_announce(&b), "gw.example:7401");
    const char *a3[] = { "--http-announce", "off", NULL };
    assert_int_equal(load(&b.cfg, a3, NULL, NULL), FO_OK);
    assert_null(fo_broker_http_announce(&b));
    const char *a4[] = { "--http", "off", "--http-announce", "x:1", NULL };
    assert_int_equal(load(&b.cfg, a4, NULL, NULL), FO_OK);
    assert_null(fo_broker_http_announce(&b));
    const char *env[] = { "FANOUT_HTTP_ANNOUNCE=", NULL };      /* empty: unset */
    assert_int_equal(load(&b.cfg, NULL, env, NULL), FO_OK);
    assert_string_equal(fo_broker_http_announce(&b), "127.0.0.1:7401");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set_each_type),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_mcast_groups),
        cmocka_unit_test(test_argv_forms),
        cmocka_unit_test(test_help_version),
        cmocka_unit_test(test_auth_options),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_file_and_precedence),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_tls_options),
        cmocka_unit_test(test_cluster_options),
        cmocka_unit_test(test_docs_cover_every_option),
        cmocka_unit_test(test_did_you_mean),
        cmocka_unit_test(test_env_warnings),
        cmocka_unit_test(test_check_config),
        cmocka_unit_test(test_reload_report),
        cmocka_unit_test(test_http_announce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
