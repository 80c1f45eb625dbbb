/* test_cli.c -- the `fanout` subcommands against a real fanoutd: pub and
 * sub round trips (lines, --json, --from earliest, -n), stats (table, JSON,
 * wrong port), a small bench (flood and paced), and the exit codes and
 * one-line messages of usage and runtime errors. One broker serves all
 * tests; each test uses its own topics. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include "harness.h"

static fo_tb_t broker;
static char http_addr[64];

static int group_setup(void **state)
{
    (void)state;
    static const char *const extra[] = { "--threads", "2", NULL };
    if (fo_tb_start(&broker, extra))
        return -1;
    snprintf(http_addr, sizeof http_addr, "127.0.0.1:%d", broker.http_port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    fo_tb_stop(&broker);
    return 0;
}

/* Run `fanout ARGS...`; out/err hold what it printed. */
static int run(const char *input, char *out, char *err, const char *first, ...)
{
    const char *argv[32] = { "fanout", first };
    int n = 2;
    va_list ap;
    va_start(ap, first);
    const char *a;
    while (n < 31 && (a = va_arg(ap, const char *)))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    out[0] = err[0] = 0;
    return fo_tb_run(argv, input, out, 16384, err, 4096, 20000);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Wait for a spawned command; its exit status or -1 on timeout (killed). */
static int wait_pid(pid_t pid, int timeout_ms)
{
    uint64_t end = fo_tb_now_ms() + (uint64_t)timeout_ms;
    int st;
    while (fo_tb_now_ms() < end) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(5000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static void read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, len - 1, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
}

static void test_help_and_usage(void **state)
{
    (void)state;
    static char out[16384], err[4096];
    assert_int_equal(run(NULL, out, err, "--help", NULL), 0);
    assert_non_null(strstr(out, "pub"));
    assert_non_null(strstr(out, "bench"));
    const char *cmds[] = { "pub", "sub", "bench", "stats" };
    for (int i = 0; i < 4; i++) {
        assert_int_equal(run(NULL, out, err, cmds[i], "--help", NULL), 0);
        assert_non_null(strstr(out, "usage: fanout"));
        assert_non_null(strstr(out, cmds[i]));
    }
    const char *const bad[][4] = {
        { "nope", NULL }, { "pub", NULL }, { "pub", "--rate", "x", "t" },
        { "sub", NULL }, { "sub", "--from", "yesterday", "t" },
        { "bench", "--size", "4", NULL }, { "stats", "--bogus", NULL },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(run(NULL, out, err, bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL), 2);
        assert_int_equal(count_lines(err), 1);
        assert_non_null(strstr(err, "fanout"));
    }
    const char *argv0[] = { "fanout", NULL };
    assert_int_equal(fo_tb_run(argv0, NULL, out, sizeof out, err, sizeof err, 5000), 2);
}

static void test_pub_sub_lines(void **state)
{
    (void)state;
    char path[] = "/tmp/fo-cli-sub-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    double subs = fo_tb_metric(&broker, "fanout_subscriptions");
    const char *sargv[] = { "fanout", "sub", "-s", broker.addr, "cli.lines.>",
                            "-n", "3", NULL };
    pid_t pid = fo_tb_spawn(sargv, path);
    assert_true(pid > 0);
    assert_int_equal(fo_tb_wait_metric(&broker, "fanout_subscriptions", subs + 1, 10000), 0);
    static char out[16384], err[4096];
    assert_int_equal(run("one\ntwo words\n\n", out, err, "pub", "-s", broker.addr,
                         "cli.lines.a", NULL), 0);
    assert_string_equal(err, "");
    assert_int_equal(wait_pid(pid, 10000), 0);
    char got[256];
    read_file(path, got, sizeof got);
    assert_string_equal(got, "one\ntwo words\n\n");
    unlink(path);
}

static void test_sub_json_from_earliest(void **state)
{
    (void)state;
    static char out[16384], err[4096];
    assert_int_equal(run(NULL, out, err, "pub", "-s", broker.addr, "cli.json",
                         "first \"quoted\"", "--confirm", NULL), 0);
    assert_string_equal(out, "1\n");
    assert_int_equal(run(NULL, out, err, "pub", "-s", broker.addr, "cli.json",
                         "second", NULL), 0);
    assert_int_equal(run(NULL, out, err, "sub", "-s", broker.addr, "cli.json",
                         "--from", "earliest", "-n", "2", "--json", NULL), 0);
    assert_int_equal(count_lines(out), 2);
    assert_non_null(strstr(out, "{\"topic\":\"cli.json\",\"seq\":1,"));
    assert_non_null(strstr(out, "\"payload\":\"first \\\"quoted\\\"\""));
    assert_non_null(strstr(out, "\"seq\":2,"));
    assert_non_null(strstr(out, "\"replay\":true"));
    /* --from SEQ starts at that sequence */
    assert_int_equal(run(NULL, out, err, "sub", "-s", broker.addr, "cli.json",
                         "--from", "2", "-n", "1", NULL), 0);
    assert_string_equal(out, "second\n");
    /* generated payloads */
    assert_int_equal(run(NULL, out, err, "pub", "-s", broker.addr, "cli.gen",
                         "--count", "5", "--size", "10", NULL), 0);
    assert_int_equal(run(NULL, out, err, "sub", "-s", broker.addr, "cli.gen",
                         "--from", "earliest", "-n", "5", NULL), 0);
    assert_int_equal(count_lines(out), 5);
    assert_int_equal(strlen(out), 5 * 11);
}

static void test_runtime_errors(void **state)
{
    (void)state;
    static char out[16384], err[4096];
    /* refused: a free port nobody listens on */
    char refused[64];
    snprintf(refused, sizeof refused, "127.0.0.1:%d", fo_tb_free_port());
    assert_int_equal(run(NULL, out, err, "pub", "-s", refused, "t", "x", NULL), 1);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "refused"));
    assert_int_equal(run(NULL, out, err, "sub", "-s", "no-such-host.invalid:1", "t", NULL), 1);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "bad address"));
    assert_int_equal(run(NULL, out, err, "pub", "-s", "nonsense", "t", "x", NULL), 1);
    assert_non_null(strstr(err, "bad address"));
    /* an ERROR from the broker */
    assert_int_equal(run(NULL, out, err, "pub", "-s", broker.addr, "bad..topic", "x", NULL), 1);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "ERR_INVALID_TOPIC"));
    assert_int_equal(run("a\nb\n", out, err, "pub", "-s", broker.addr, "bad..topic", NULL), 1);
    assert_non_null(strstr(err, "ERR_INVALID_TOPIC"));
    assert_int_equal(run(NULL, out, err, "sub", "-s", broker.addr, "a..b", NULL), 1);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "ERR_INVALID_TOPIC"));
    /* stats pointed at the client port instead of --http */
    assert_int_equal(run(NULL, out, err, "stats", "-s", broker.addr, "--timeout", "3", NULL), 1);
    assert_int_equal(count_lines(err), 1);
}

static void test_stats(void **state)
{
    (void)state;
    static char out[16384], err[4096];
    assert_int_equal(run(NULL, out, err, "stats", "-s", http_addr, NULL), 0);
    assert_non_null(strstr(out, "METRIC"));
    assert_non_null(strstr(out, "fanout_messages_in_total"));
    assert_int_equal(run(NULL, out, err, "stats", "-s", http_addr, "--json", NULL), 0);
    assert_int_equal(out[0], '{');
    assert_non_null(strstr(out, "\"fanout_connections\":"));
    assert_int_equal(count_lines(out), 1);
}

static void test_bench_small(void **state)
{
    (void)state;
    static char out[16384], err[4096];
    assert_int_equal(run(NULL, out, err, "bench", "-s", broker.addr, "--subs", "2",
                         "--pubs", "2", "--msgs", "3000", "--topics", "3",
                         "--json", NULL), 0);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "\"delivered\":6000,"));
    assert_non_null(strstr(out, "\"expected\":6000,"));
    assert_non_null(strstr(out, "\"lost\":0,"));
    assert_non_null(strstr(out, "\"deliveries_per_s\":"));
    assert_non_null(strstr(out, "\"p999\":"));
    /* paced: 400 at 2000/s takes ~0.2 s */
    assert_int_equal(run(NULL, out, err, "bench", "-s", broker.addr, "--msgs", "400",
                         "--rate", "2000", NULL), 0);
    assert_non_null(strstr(out, "paced at 2000"));
    assert_non_null(strstr(out, "400 of 400"));
    assert_non_null(strstr(out, "p99.9"));
    /* --duration instead of --msgs */
    assert_int_equal(run(NULL, out, err, "bench", "-s", broker.addr, "--duration",
                         "0.2", "--rate", "1000", "--json", NULL), 0);
    assert_non_null(strstr(out, "\"lost\":0,"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage),
        cmocka_unit_test(test_pub_sub_lines),
        cmocka_unit_test(test_sub_json_from_earliest),
        cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_bench_small),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
