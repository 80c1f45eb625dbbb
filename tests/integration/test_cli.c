/* test_cli.c -- the `fanout` subcommands against a real fanoutd: pub and
 * sub round trips (lines, --json, --from earliest, -n, -v, -f, --whole,
 * CRLF), the server conventions (-s forms and lists, $FANOUT_SERVER),
 * a message over max-frame, stats (summary lines, --raw, --json, finding
 * the metrics from the client port, the wrong port), a small bench
 * (flood and paced; --csv, --series, --plot), and the exit codes and
 * one-line messages of usage and runtime errors. One broker serves all
 * tests; each test uses its own topics. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
    assert_int_equal(fo_tb_wait_pid(pid, 10000), 0);
    char got[256];
    fo_tb_read_file(path, got, sizeof got);
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
}

static void test_stats(void **state)
{
    (void)state;
    static char out[16384], err[4096];
    /* the summary: a header, then one line per interval */
    assert_int_equal(run(NULL, out, err, "stats", "--http", http_addr, "--count", "2",
                         "--interval", "0.2", NULL), 0);
    assert_int_equal(count_lines(out), 3);
    assert_int_equal(strncmp(out, "time ", 5), 0);
    assert_non_null(strstr(out, "msgs in/s"));
    assert_non_null(strstr(out, "conns"));
    assert_non_null(strstr(out, "rss"));
    assert_non_null(strstr(out, " B "));          /* message memory, with its unit */
    /* --raw: the exposition as served; --json: one object */
    assert_int_equal(run(NULL, out, err, "stats", "--http", http_addr, "--raw", NULL), 0);
    assert_non_null(strstr(out, "# TYPE fanout_messages_in_total counter\n"));
    assert_non_null(strstr(out, "\nprocess_resident_memory_bytes "));
    assert_int_equal(run(NULL, out, err, "stats", "--http", http_addr, "--json", NULL), 0);
    assert_int_equal(out[0], '{');
    assert_non_null(strstr(out, "\"fanout_connections\":"));
    assert_int_equal(count_lines(out), 1);
    assert_int_equal(run(NULL, out, err, "stats", "--http", http_addr, "--json", "--count", "2",
                         "--interval", "0.1", NULL), 0);
    assert_int_equal(count_lines(out), 2);
    /* the metrics port given as -s: said so */
    assert_int_equal(run(NULL, out, err, "stats", "-s", http_addr, "--timeout", "3", NULL), 1);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "client port"));
    assert_int_equal(run(NULL, out, err, "stats", "--raw", "--json", NULL), 2);
    assert_int_equal(run(NULL, out, err, "stats", "-s", broker.addr, "--http", http_addr, NULL), 2);
}

/* A broker stand-in: answers one HELLO with a WELCOME announcing `http`. */
typedef struct fake {
    int lfd, port;
    char http[64];
    pthread_t th;
} fake_t;

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    uint8_t in[256];
    (void)!read(fd, in, sizeof in);          /* the HELLO */
    Fanout__Frame fr = FANOUT__FRAME__INIT;
    Fanout__Welcome w = FANOUT__WELCOME__INIT;
    w.has_version = 1;
    w.version = 1;
    w.http = f->http;
    fr.body_case = FANOUT__FRAME__BODY_WELCOME;
    fr.welcome = &w;
    uint8_t buf[256];
    size_t n = fo_frame_pack(&fr, buf);
    (void)!write(fd, buf, n);
    (void)!read(fd, in, sizeof in);          /* until the client closes */
    close(fd);
    return NULL;
}

static void fake_start(fake_t *f, const char *http)
{
    snprintf(f->http, sizeof f->http, "%s", http);
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &l), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake_t *f)
{
    pthread_join(f->th, NULL);
    close(f->lfd);
}

/* -s is the client port: the metrics address comes from WELCOME.http; a
 * wildcard host there is the host stats connected to. */
static void test_stats_finds_metrics(void **state)
{
    (void)state;
    static char out[16384], err[4096];
    char http[64], addr[64];
    const char *announced[] = { "0.0.0.0:%d", "127.0.0.1:%d" };
    for (int i = 0; i < 2; i++) {
        fake_t f;
        snprintf(http, sizeof http, announced[i], broker.http_port);
        fake_start(&f, http);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", f.port);
        int rc = run(NULL, out, err, "stats", "-s", addr, "--json", NULL);
        fake_stop(&f);
        if (rc != 0)
            fail_msg("announced %s: exit %d, %s", http, rc, err);
        assert_non_null(strstr(out, "\"fanout_messages_in_total\":"));
    }
    /* $FANOUT_SERVER, and the first of a list that answers */
    fake_t f;
    fake_start(&f, http);
    snprintf(addr, sizeof addr, "127.0.0.1:%d,127.0.0.1:%d", fo_tb_free_port(), f.port);
    setenv("FANOUT_SERVER", addr, 1);
    int rc = run(NULL, out, err, "stats", "--count", "1", "--interval", "0.1", NULL);
    unsetenv("FANOUT_SERVER");
    fake_stop(&f);
    if (rc != 0)
        fail_msg("FANOUT_SERVER=%s: exit %d, %s", addr, rc, err);
    assert_int_equal(count_lines(out), 2);
    /* the real broker: its WELCOME carries Welcome.http */
    rc = run(NULL, out, err, "stats", "-s", broker.addr, "--json", NULL);
    if (rc != 0)
        fail_msg("stats -s %s: exit %d, %s", broker.addr, rc, err);
}

/* -s forms and lists, $FANOUT_SERVER, sub -v, pub -f / --whole, CRLF, and
 * a message over max-frame named with the limit. */
static void test_conventions(void **state)
{
    (void)state;
    static char out[16384], err[4096];
    char list[160], url[96], refused[64];
    snprintf(refused, sizeof refused, "127.0.0.1:%d", fo_tb_free_port());
    snprintf(list, sizeof list, "%s, %s", refused, broker.addr);
    if (strncmp(broker.addr, "tls://", 6))
        snprintf(url, sizeof url, "fanout://%s/", broker.addr);
    else
        snprintf(url, sizeof url, "%s/", broker.addr);     /* FO_TEST_TLS */
    assert_int_equal(run(NULL, out, err, "pub", "-s", list, "cli.conv.a", "one", NULL), 0);
    assert_int_equal(run(NULL, out, err, "pub", "-s", url, "cli.conv.a", "two", NULL), 0);
    setenv("FANOUT_SERVER", broker.addr, 1);
    assert_int_equal(run("three\r\nfour\r\n", out, err, "pub", "cli.conv.a", NULL), 0);
    assert_int_equal(run("x", out, err, "pub", "-s", "127.0.0.1:1", "cli.conv.a", "-", NULL), 1);
    unsetenv("FANOUT_SERVER");
    assert_int_equal(run(NULL, out, err, "sub", "-s", broker.addr, "cli.conv.*", "--from",
                         "earliest", "-n", "4", "-v", NULL), 0);
    assert_string_equal(out, "cli.conv.a one\ncli.conv.a two\ncli.conv.a three\ncli.conv.a four\n");
    /* bad forms are usage errors, tls:// is a form (TLS is the library's) */
    const char *bad[] = { "a:b:c", "fanout://", "host:99999", "x,,y", "[::1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(run(NULL, out, err, "pub", "-s", bad[i], "t", "x", NULL), 2);
        assert_non_null(strstr(err, "-s: bad address"));
    }
    setenv("FANOUT_SERVER", "a:b:c", 1);
    assert_int_equal(run(NULL, out, err, "sub", "t", NULL), 2);
    assert_non_null(strstr(err, "FANOUT_SERVER: bad address 'a:b:c'"));
    unsetenv("FANOUT_SERVER");
    assert_int_equal(run(NULL, out, err, "pub", "-s", "tls://127.0.0.1:1", "t", "x", NULL), 1);

    /* -f FILE and --whole: one message, bytes as they are */
    char path[] = "/tmp/fo-cli-file-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char body[] = "line 1\r\nline 2\n\n\x01\xff end";
    assert_int_equal(write(fd, body, sizeof body - 1), (ssize_t)sizeof body - 1);
    close(fd);
    assert_int_equal(run(NULL, out, err, "pub", "-s", broker.addr, "cli.file", "-f", path, NULL), 0);
    assert_int_equal(run("a\nb\r\nc", out, err, "pub", "-s", broker.addr, "cli.file", "--whole",
                         NULL), 0);
    /* a UTF-16 surrogate (U+D800) encoded as UTF-8 is not UTF-8 */
    assert_int_equal(run("\xed\xa0\x80", out, err, "pub", "-s", broker.addr, "cli.file", "--whole",
                         NULL), 0);
    assert_int_equal(run(NULL, out, err, "sub", "-s", broker.addr, "cli.file", "--from",
                         "earliest", "-n", "3", "--json", NULL), 0);
    assert_int_equal(count_lines(out), 3);
    assert_non_null(strstr(out, "\"payload_base64\":\"7aCA\""));
    assert_non_null(strstr(out, "\"seq\":1,"));
    assert_non_null(strstr(out, "\"payload_base64\":\"bGluZSAxDQpsaW5lIDIKCgH/IGVuZA==\""));
    assert_non_null(strstr(out, "\"payload\":\"a\\nb\\r\\nc\""));
    assert_int_equal(run(NULL, out, err, "pub", "-s", broker.addr, "t", "msg", "-f", path, NULL), 2);
    assert_int_equal(run(NULL, out, err, "pub", "-s", broker.addr, "t", "-f", "/nonexistent", NULL), 1);
    assert_non_null(strstr(err, "cannot open '/nonexistent'"));

    /* over max-frame (1 MiB): the size and the limit, not "value out of range" */
    FILE *big = fopen(path, "w");
    assert_non_null(big);
    for (int i = 0; i < 2000000; i++)
        fputc('x', big);
    fclose(big);
    assert_int_equal(run(NULL, out, err, "pub", "-s", broker.addr, "cli.big", "-f", path, NULL), 1);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "publish to 'cli.big' failed: 2000000 B is over the broker's "
                                "max-frame of 1 MiB"));
    unlink(path);
    static char line[1100000];
    memset(line, 'y', sizeof line - 2);
    line[sizeof line - 2] = '\n';
    assert_int_equal(run(line, out, err, "pub", "-s", broker.addr, "cli.big", NULL), 1);
    assert_non_null(strstr(err, "1099998 B is over the broker's max-frame of 1 MiB"));
    line[1048570] = '\0';                     /* under 1 MiB, but not with the framing */
    assert_int_equal(run(line, out, err, "pub", "-s", broker.addr, "cli.big", NULL), 1);
    assert_non_null(strstr(err, "1048570 B ("));
    assert_non_null(strstr(err, "with the topic and framing) is over the broker's max-frame of 1 MiB"));
    assert_int_equal(run(line, out, err, "pub", "-s", broker.addr, "cli.big", "--whole", NULL), 1);
    assert_non_null(strstr(err, "with the topic and framing) is over"));
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

/* --csv: a header and one row; --series: a row per second; --plot: an
 * SVG that parses as XML, with both panels. */
static void test_bench_outputs(void **state)
{
    (void)state;
    static char out[16384], err[4096], text[65536];
    char series[] = "/tmp/fo-cli-series-XXXXXX", plot[64];
    int fd = mkstemp(series);
    assert_true(fd >= 0);
    close(fd);
    snprintf(plot, sizeof plot, "%s.svg", series);
    assert_int_equal(run(NULL, out, err, "bench", "-s", broker.addr, "--msgs", "2400",
                         "--rate", "2000", "--csv", "--series", series, "--plot", plot, NULL), 0);
    assert_int_equal(count_lines(out), 2);
    assert_int_equal(strncmp(out, "pubs,subs,msgs,size,rate,topics,duration,sent,", 46), 0);
    assert_non_null(strstr(out, ",p50_us,p90_us,p99_us,p999_us,max_us,mean_us,"));
    assert_non_null(strstr(out, "\n1,1,2400,128,2000,1,0,2400,"));
    fo_tb_read_file(series, text, sizeof text);
    assert_int_equal(strncmp(text, "second,sent_per_s,delivered_per_s,p50_us,p99_us\n", 48), 0);
    int rows = count_lines(text) - 1;
    if (rows < 2 || rows > 4)
        fail_msg("%d rows for a 1.2 s run:\n%s", rows, text);
    assert_non_null(strstr(text, "\n0,2000,"));     /* paced: 2000 stamped in second 0 */
    /* the SVG: well-formed XML, an svg root with a title and the two panels */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s -c 'import sys, xml.dom.minidom as m\n"
             "d = m.parse(sys.argv[1]); r = d.documentElement\n"
             "assert r.tagName == \"svg\" and r.getAttribute(\"xmlns\") == \"http://www.w3.org/2000/svg\"\n"
             "g = {e.getAttribute(\"id\"): e for e in r.getElementsByTagName(\"g\")}\n"
             "assert \"latency\" in g and \"throughput\" in g, g.keys()\n"
             "assert g[\"latency\"].getElementsByTagName(\"polyline\")\n"
             "assert len(g[\"throughput\"].getElementsByTagName(\"path\")) == 2\n"
             "t = \" \".join(n.firstChild.data for n in r.getElementsByTagName(\"text\"))\n"
             "assert r.getElementsByTagName(\"title\")\n"
             "for w in (\"percentile\", \"latency (\", \"99.9%%\", \"msgs/s\", \"time since\", \"(s)\"):\n"
             "    assert w in t, w\n' %s",
             access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3", plot);
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("%s is not the SVG expected (python3 exit %d)", plot, rc);
    /* --series - goes to stdout after the table */
    assert_int_equal(run(NULL, out, err, "bench", "-s", broker.addr, "--msgs", "100",
                         "--series", "-", NULL), 0);
    assert_non_null(strstr(out, "latency us"));
    assert_non_null(strstr(out, "\n\nsecond,sent_per_s,delivered_per_s,p50_us,p99_us\n0,"));
    assert_int_equal(run(NULL, out, err, "bench", "--csv", "--json", NULL), 2);
    assert_int_equal(run(NULL, out, err, "bench", "--plot", "/nonexistent/dir/x.svg", "-s",
                         broker.addr, "--msgs", "10", NULL), 1);
    assert_non_null(strstr(err, "cannot write '/nonexistent/dir/x.svg'"));
    unlink(series);
    unlink(plot);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage),
        cmocka_unit_test(test_pub_sub_lines),
        cmocka_unit_test(test_sub_json_from_earliest),
        cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_stats_finds_metrics),
        cmocka_unit_test(test_conventions),
        cmocka_unit_test(test_bench_small),
        cmocka_unit_test(test_bench_outputs),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
