/* test_cli_request.c -- `fanout request` and `fanout reply` against a real
 * fanoutd: MESSAGE replies, --command with cat and tr (the request on
 * stdin, stdout as the reply), a command killed at --command-timeout,
 * headers both ways (-H, request -v), pub -H shown by sub -v and --json
 * (and a request's reply address in --json), the exit codes and one-line
 * messages of no responders, timeouts and usage mistakes, and a short
 * bench --request. One broker; each test has its own topics. */
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
static char out[16384], err[4096];

static int group_setup(void **state)
{
    (void)state;
    static const char *const extra[] = { "--threads", "2", NULL };
    return fo_tb_start(&broker, extra) ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return fo_tb_stop(&broker) == 0 ? 0 : -1;
}

/* Run `fanout ARGS...` (NULL-terminated) with -s set; out/err get what
 * it printed. */
static int run(const char *first, ...)
{
    const char *argv[40] = { "fanout", first, "-s", broker.addr };
    int n = 4;
    va_list ap;
    va_start(ap, first);
    const char *a;
    while (n < 39 && (a = va_arg(ap, const char *)))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    out[0] = err[0] = 0;
    return fo_tb_run(argv, NULL, out, sizeof out, err, sizeof err, 20000);
}

/* The same without -s (usage checks). */
static int run_bare(const char *const *args)
{
    const char *argv[16] = { "fanout" };
    int n = 1;
    for (; args[n - 1] && n < 15; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    out[0] = err[0] = 0;
    return fo_tb_run(argv, NULL, out, sizeof out, err, sizeof err, 20000);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Start `fanout ARGS...` in the background (stdout to path) and wait
 * until the broker holds its subscription. Every subscription in this
 * suite is such a process's, and the one before has ended: first wait
 * until the broker has let its subscription go (it does so shortly after
 * the connection closes), so the count means this one. */
static pid_t spawn_subscribed(const char *path, const char *const *args)
{
    const char *argv[24] = { "fanout", args[0], "-s", broker.addr };
    int n = 4;
    for (int i = 1; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    uint64_t end = fo_tb_now_ms() + 5000;
    while (fo_tb_metric(&broker, "fanout_subscriptions") != 0 && fo_tb_now_ms() < end)
        usleep(2000);
    assert_true(fo_tb_metric(&broker, "fanout_subscriptions") == 0);
    pid_t pid = fo_tb_spawn(argv, path);
    assert_true(pid > 0);
    assert_int_equal(fo_tb_wait_metric(&broker, "fanout_subscriptions", 1, 10000), 0);
    return pid;
}

static void tmp_path(char *path)
{
    strcpy(path, "/tmp/fo-cli-rr-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
}

/* ------------------------------------------------------------ tests */

static void test_help_and_usage(void **state)
{
    (void)state;
    const char *const help[][3] = { { "request", "--help", NULL }, { "reply", "--help", NULL },
                                    { "--help", NULL, NULL } };
    for (int i = 0; i < 3; i++) {
        assert_int_equal(run_bare(help[i]), 0);
        assert_non_null(strstr(out, "usage: fanout"));
    }
    assert_non_null(strstr(out, "request"));
    assert_non_null(strstr(out, "reply"));
    const char *const bad[][6] = {
        { "request", NULL },
        { "request", "t", "m", "extra", NULL },
        { "request", "--timeout", "soon", "t", NULL },
        { "request", "-H", "nocolon", "t", NULL },
        { "request", "-H", "bad key:1", "t", NULL },
        { "reply", NULL },
        { "reply", "t", NULL },
        { "reply", "t", "m", "--command", "cat", NULL },
        { "reply", "--count", "0", "t", "m", NULL },
        { "reply", "--max-output", "x", "t", "m", NULL },
        { "pub", "-H", ":v", "t", "m", NULL },
        { "bench", "--request", "--size", "4", NULL },
        { "bench", "--request", "--csv", NULL },          /* were silently ignored */
        { "bench", "--request", "--plot", "x.svg", NULL },
        { "bench", "--request", "--rate", "100", NULL },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(run_bare(bad[i]), 2);
        assert_int_equal(count_lines(err), 1);
        assert_non_null(strstr(err, "fanout"));
    }
}

static void test_reply_message(void **state)
{
    (void)state;
    char path[32];
    tmp_path(path);
    const char *const r[] = { "reply", "cli.rr.fixed", "pong", "-n", "2", "-H", "by:cli", NULL };
    pid_t pid = spawn_subscribed(path, r);
    assert_int_equal(run("request", "cli.rr.fixed", "ping", NULL), 0);
    assert_string_equal(out, "pong\n");
    assert_string_equal(err, "");
    /* -v: the reply's headers first */
    assert_int_equal(run("request", "cli.rr.fixed", "-v", NULL), 0);
    assert_string_equal(out, "[by=cli] pong\n");
    assert_int_equal(fo_tb_wait_pid(pid, 10000), 0);     /* -n 2: done */
    unlink(path);
}

static void test_reply_command(void **state)
{
    (void)state;
    char path[32], text[4096];
    tmp_path(path);
    /* cat: the request is the reply, byte for byte, through stdin/stdout */
    const char *const cat[] = { "reply", "cli.rr.cat", "--command", "cat", "-n", "2", "-v", NULL };
    pid_t pid = spawn_subscribed(path, cat);
    assert_int_equal(run("request", "cli.rr.cat", "hello world", "-H", "trace:t-1", NULL), 0);
    assert_string_equal(out, "hello world\n");
    assert_int_equal(run("request", "cli.rr.cat", "", NULL), 0);   /* empty in, empty out */
    assert_string_equal(out, "\n");
    assert_int_equal(fo_tb_wait_pid(pid, 10000), 0);
    fo_tb_read_file(path, text, sizeof text);              /* reply -v shows the requests */
    assert_string_equal(text, "cli.rr.cat [trace=t-1] hello world\ncli.rr.cat \n");
    /* tr, in a queue group */
    const char *const tr[] = { "reply", "cli.rr.tr", "--queue", "upper", "--command",
                               "tr a-z A-Z", "-n", "1", NULL };
    pid = spawn_subscribed(path, tr);
    assert_int_equal(run("request", "cli.rr.tr", "make me loud", NULL), 0);
    assert_string_equal(out, "MAKE ME LOUD\n");
    assert_int_equal(fo_tb_wait_pid(pid, 10000), 0);
    unlink(path);
}

static void test_command_bounded(void **state)
{
    (void)state;
    char path[32];
    tmp_path(path);
    /* a command that outlives its time: killed, and no reply */
    const char *const slow[] = { "reply", "cli.rr.slow", "--command", "sleep 30",
                                 "--command-timeout", "0.2", NULL };
    pid_t pid = spawn_subscribed(path, slow);
    uint64_t t0 = fo_tb_now_ms();
    assert_int_equal(run("request", "cli.rr.slow", "x", "--timeout", "1", NULL), 1);
    assert_true(fo_tb_now_ms() - t0 < 10000);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "no reply from 'cli.rr.slow' within 1 s"));
    /* too much output: killed, no reply; the replier keeps serving */
    kill(pid, SIGTERM);
    fo_tb_wait_pid(pid, 5000);
    const char *const big[] = { "reply", "cli.rr.big", "--command", "yes", "--max-output",
                                "1000", "-n", "1", NULL };
    pid = spawn_subscribed(path, big);
    assert_int_equal(run("request", "cli.rr.big", "x", "--timeout", "0.5", NULL), 1);
    kill(pid, SIGTERM);
    assert_true(fo_tb_wait_pid(pid, 5000) >= 0);
    /* a failing command still answers with what it printed */
    const char *const fail[] = { "reply", "cli.rr.fail", "--command", "echo partial; exit 3",
                                 "-n", "1", NULL };
    pid = spawn_subscribed(path, fail);
    assert_int_equal(run("request", "cli.rr.fail", "x", NULL), 0);
    assert_string_equal(out, "partial\n\n");
    assert_int_equal(fo_tb_wait_pid(pid, 10000), 0);
    unlink(path);
}

static void test_no_responders_and_timeout(void **state)
{
    (void)state;
    uint64_t t0 = fo_tb_now_ms();
    assert_int_equal(run("request", "cli.rr.nobody", "x", "--timeout", "10", NULL), 1);
    assert_true(fo_tb_now_ms() - t0 < 5000);       /* at once, not after 10 s */
    assert_string_equal(err, "fanout request: no responders for 'cli.rr.nobody'\n");
    assert_string_equal(out, "");
    /* a subscriber that never answers: the timeout, and --json shows the
     * request's reply address */
    char path[32], text[4096];
    tmp_path(path);
    const char *const sub[] = { "sub", "cli.rr.mute", "--json", "-n", "1", NULL };
    pid_t pid = spawn_subscribed(path, sub);
    assert_int_equal(run("request", "cli.rr.mute", "anyone?", "--timeout", "0.3", NULL), 1);
    assert_string_equal(err, "fanout request: no reply from 'cli.rr.mute' within 0.3 s\n");
    assert_int_equal(fo_tb_wait_pid(pid, 10000), 0);
    fo_tb_read_file(path, text, sizeof text);
    assert_non_null(strstr(text, "\"reply\":\"_INBOX."));
    assert_non_null(strstr(text, "\"payload\":\"anyone?\""));
    unlink(path);
}

static void test_pub_headers_in_sub(void **state)
{
    (void)state;
    char path[32], text[4096];
    tmp_path(path);
    const char *const v[] = { "sub", "cli.rr.h.>", "-v", "-n", "2", NULL };
    pid_t pid = spawn_subscribed(path, v);
    assert_int_equal(run("pub", "-H", "a:1", "-H", "b:two words", "-H", "e:", "cli.rr.h.x",
                         "payload here", NULL), 0);
    assert_int_equal(run("pub", "cli.rr.h.y", "plain", NULL), 0);
    assert_int_equal(fo_tb_wait_pid(pid, 10000), 0);
    fo_tb_read_file(path, text, sizeof text);
    assert_string_equal(text, "cli.rr.h.x [a=1 b=two\\x20words e=] payload here\n"
                              "cli.rr.h.y plain\n");
    const char *const j[] = { "sub", "cli.rr.j", "--json", "-n", "2", NULL };
    pid = spawn_subscribed(path, j);
    assert_int_equal(run("pub", "-H", "k:v:w", "-H", "bin:\xff", "cli.rr.j", "p", NULL), 0);
    assert_int_equal(run("pub", "cli.rr.j", "q", NULL), 0);
    assert_int_equal(fo_tb_wait_pid(pid, 10000), 0);
    fo_tb_read_file(path, text, sizeof text);
    assert_non_null(strstr(text, "\"headers\":[{\"key\":\"k\",\"value\":\"v:w\"},"
                                 "{\"key\":\"bin\",\"value_base64\":\"/w==\"}],\"payload\":\"p\"}"));
    char *second = strchr(text, '\n') + 1;         /* no headers: no member */
    assert_null(strstr(second, "headers"));
    assert_null(strstr(second, "reply"));
    /* a bad header key is a usage mistake; too many headers too */
    assert_int_equal(run("pub", "-H", "sp ace:1", "cli.rr.j", "p", NULL), 2);
    unlink(path);
}

static void test_bench_request(void **state)
{
    (void)state;
    assert_int_equal(run("bench", "--request", "--pubs", "2", "--subs", "2", "--msgs", "200",
                         "--size", "16", "--json", NULL), 0);
    assert_non_null(strstr(out, "\"mode\":\"request\""));
    assert_non_null(strstr(out, "\"requests\":200,\"replies\":200,\"errors\":0"));
    assert_non_null(strstr(out, "\"round_trips_per_s\":"));
    assert_non_null(strstr(out, "\"p999\":"));
    assert_int_equal(run("bench", "--request", "--msgs", "50", NULL), 0);
    assert_non_null(strstr(out, "round trips/s"));
}

/* A request over the broker's max-frame is named with the size and the
 * limit, as `pub` does (it said the last error text, or "value out of
 * range"). */
static void test_request_too_large(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--max-frame", "4KiB", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    static char big[8000];
    memset(big, 'x', sizeof big - 1);
    const char *const argv[] = { "fanout", "request", "-s", b.addr, "cli.rr.big", big, NULL };
    assert_int_equal(fo_tb_run(argv, NULL, out, sizeof out, err, sizeof err, 20000), 1);
    assert_non_null(strstr(err, "request to 'cli.rr.big' failed: 7999 B is over the broker's "
                                "max-frame of 4 KiB"));
    assert_int_equal(fo_tb_stop(&b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage),
        cmocka_unit_test(test_reply_message),
        cmocka_unit_test(test_reply_command),
        cmocka_unit_test(test_command_bounded),
        cmocka_unit_test(test_no_responders_and_timeout),
        cmocka_unit_test(test_pub_headers_in_sub),
        cmocka_unit_test(test_bench_request),
        cmocka_unit_test(test_request_too_large),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
