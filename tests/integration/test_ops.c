/* test_ops.c -- fanoutd as an operator runs it (issue 14), against real
 * brokers: --check-config, systemd readiness on a fake NOTIFY_SOCKET
 * (path and abstract), what SIGHUP logs, --log-format json (every line
 * parses), connection ids (c1, c2 in the logs and WELCOME's client_id),
 * unknown FANOUT_* variables, the process_* metrics, a quiet shutdown and
 * an HTTP request on the client port. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "harness.h"

static const char *python(void)
{
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* The broker's log so far (NUL-terminated, static). */
static const char *log_text(const fo_tb_t *b)
{
    static char buf[1 << 18];
    FILE *f = fopen(b->log_path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
    return buf;
}

/* Wait until the log holds `want`; 0, or -1 after timeout_ms. */
static int wait_log(const fo_tb_t *b, const char *want, int timeout_ms)
{
    uint64_t end = fo_tb_now_ms() + (uint64_t)timeout_ms;
    do {
        if (strstr(log_text(b), want))
            return 0;
        usleep(10000);
    } while (fo_tb_now_ms() < end);
    return -1;
}

static void expect_log(const fo_tb_t *b, const char *want)
{
    if (wait_log(b, want, 5000))
        fail_msg("the log has no \"%s\":\n%s", want, log_text(b));
}

static int run_fanoutd(const char *const *args, char *out, char *err)
{
    const char *argv[32] = { "fanoutd" };
    int n = 1;
    for (; args[n - 1] && n < 31; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    out[0] = err[0] = 0;
    return fo_tb_run(argv, NULL, out, 4096, err, 4096, 10000);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* ------------------------------------------------------------ tests */

static void test_check_config(void **state)
{
    (void)state;
    static char out[4096], err[4096];
    char path[] = "/tmp/fo-ops-conf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_text(path, "listen 127.0.0.1:1\nthreads 3\n# a comment\nmax-frame 2MiB\n");
    const char *ok[] = { "--config", path, "--check-config", NULL };
    assert_int_equal(run_fanoutd(ok, out, err), 0);
    assert_string_equal(err, "");
    char want[512];
    snprintf(want, sizeof want, "fanoutd: configuration OK: clients on 127.0.0.1:1, http "
             "127.0.0.1:7401, 3 workers, log-level info; 3 options from %s, 0 from the "
             "environment, 0 from the command line\n", path);
    assert_string_equal(out, want);
    /* it does not start: port 1 would need root and a listener */
    write_text(path, "threads 3\nmax-frmae 2MiB\n");
    assert_int_equal(run_fanoutd(ok, out, err), 2);
    assert_string_equal(out, "");
    snprintf(want, sizeof want, "fanoutd: %s:2: max-frmae: unknown option, did you mean "
             "max-frame? (see --help)\n", path);
    assert_string_equal(err, want);
    const char *bad[] = { "-t", "--idle-timeout", "1s", "--ping-interval", "2s", NULL };
    assert_int_equal(run_fanoutd(bad, out, err), 2);
    assert_non_null(strstr(err, "must be greater than --ping-interval"));
    /* what a start would refuse is refused here too */
    const char *open_[] = { "-t", "--listen", "0.0.0.0:7400", NULL };
    assert_int_equal(run_fanoutd(open_, out, err), 2);
    assert_non_null(strstr(err, "0.0.0.0:7400 is reachable from other hosts and no users are configured"));
    const char *anon[] = { "-t", "--listen", "0.0.0.0:7400", "--allow-anonymous", NULL };
    assert_int_equal(run_fanoutd(anon, out, err), 0);
    const char *nousers[] = { "-t", "--users", "/nonexistent/users", NULL };
    assert_int_equal(run_fanoutd(nousers, out, err), 2);
    assert_non_null(strstr(err, "/nonexistent/users"));
    const char *notls[] = { "-t", "--tls-listen", "127.0.0.1:7443", "--tls-cert", "/nonexistent/c.pem",
                            "--tls-key", "/nonexistent/k.pem", NULL };
    assert_int_equal(run_fanoutd(notls, out, err), 2);
    assert_non_null(strstr(err, "/nonexistent/"));
    /* unknown FANOUT_* variables: warned, with the nearest name, not fatal */
    setenv("FANOUT_THREDS", "2", 1);
    const char *t[] = { "-t", NULL };
    assert_int_equal(run_fanoutd(t, out, err), 0);
    unsetenv("FANOUT_THREDS");
    assert_string_equal(err, "fanoutd: warning: FANOUT_THREDS is not a fanoutd option "
                             "(ignored); did you mean FANOUT_THREADS?\n");
    unlink(path);
}

/* A datagram socket standing in for systemd's; returns the fd. */
static int notify_socket(const char *name, int abstract)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t n = strlen(name);
    memcpy(sa.sun_path, name, n);
    if (abstract)
        sa.sun_path[0] = '\0';
    else
        unlink(name);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)), 0);
    return fd;
}

/* The next datagram within timeout_ms (NUL-terminated), or "" */
static const char *next_datagram(int fd, int timeout_ms)
{
    static char buf[512];
    struct pollfd p = { .fd = fd, .events = POLLIN };
    buf[0] = 0;
    if (poll(&p, 1, timeout_ms) == 1) {
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = 0;
    }
    return buf;
}

static void test_notify(void **state)
{
    (void)state;
    char name[108];
    for (int abstract = 0; abstract < 2; abstract++) {
        snprintf(name, sizeof name, "%s/tmp/fo-notify-%d", abstract ? "@" : "", (int)getpid());
        int fd = notify_socket(name, abstract);
        setenv("NOTIFY_SOCKET", name, 1);
        fo_tb_t b;
        int started = fo_tb_start(&b, NULL);
        unsetenv("NOTIFY_SOCKET");
        assert_int_equal(started, 0);
        /* READY=1 once the listeners accept (fo_tb_start saw /healthz) */
        const char *d = next_datagram(fd, 5000);
        if (strncmp(d, "READY=1\nSTATUS=listening on 127.0.0.1:", 38))
            fail_msg("%s: first datagram \"%s\"", name, d);
        fo_tb_signal(&b, SIGHUP);
        d = next_datagram(fd, 5000);
        assert_int_equal(strncmp(d, "RELOADING=1\nMONOTONIC_USEC=", 27), 0);
        assert_string_equal(next_datagram(fd, 5000), "READY=1");
        assert_int_equal(fo_tb_stop(&b), 0);
        assert_string_equal(next_datagram(fd, 5000), "STOPPING=1\nSTATUS=draining");
        assert_string_equal(next_datagram(fd, 100), "");       /* once */
        close(fd);
        if (!abstract)
            unlink(name);
    }
    /* a NOTIFY_SOCKET nobody listens on costs a WARN, not the start */
    setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1);
    fo_tb_t b;
    int started = fo_tb_start(&b, NULL);
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(started, 0);
    expect_log(&b, "WARN  main - cannot tell NOTIFY_SOCKET we are ready");
    assert_int_equal(fo_tb_stop(&b), 0);
}

static void test_sighup_report(void **state)
{
    (void)state;
    char path[] = "/tmp/fo-ops-hup-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_text(path, "max-conns 100\nuser u\npassword old\n");
    const char *args[] = { "--config", path, "--max-output", "1MiB", NULL };
    fo_tb_t b;
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tb_signal(&b, SIGHUP);
    expect_log(&b, "INFO  main - SIGHUP: configuration reloaded, nothing changed\n");
    write_text(path, "max-conns 500\nmax-frame 2MiB\nmax-output 8MiB\nuser u\npassword hunter2\n");
    fo_tb_signal(&b, SIGHUP);
    expect_log(&b, "SIGHUP: configuration reloaded: 1 change applied, 2 need a restart\n");
    const char *log = log_text(&b);
    assert_non_null(strstr(log, "INFO  main - SIGHUP: max-conns: 100 -> 500\n"));
    assert_non_null(strstr(log, "WARN  main - SIGHUP: max-frame: 1MiB -> 2MiB needs a restart (still 1MiB)\n"));
    assert_non_null(strstr(log, "WARN  main - SIGHUP: password: (hidden) -> (hidden) needs a restart"));
    assert_non_null(strstr(log, "INFO  main - SIGHUP: max-output: the command line's 1MiB stays "
                                "(file or environment: 8MiB)\n"));
    assert_null(strstr(log, "hunter2"));
    write_text(path, "max-conns many\n");
    fo_tb_signal(&b, SIGHUP);
    expect_log(&b, "ERROR main - SIGHUP: reload failed, keeping the old values:");
    assert_int_equal(fo_tb_stop(&b), 0);
    unlink(path);
}

/* --log-format json: every line is one JSON object with the documented
 * fields; connections are c1, c2 in the order accepted, and WELCOME's
 * client_id carries the same number in its high 32 bits. */
static void test_json_logs_and_ids(void **state)
{
    (void)state;
    const char *args[] = { "--log-format", "json", NULL };
    setenv("FANOUT_MAX_FRAMES", "1", 1);
    fo_tb_t b;
    int started = fo_tb_start(&b, args);
    unsetenv("FANOUT_MAX_FRAMES");
    assert_int_equal(started, 0);
    fo_tc_t c[2];
    uint64_t ids[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fo_tc_connect(&c[i], b.port), 0);
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Hello h = FANOUT__HELLO__INIT;
        h.has_version = 1;
        h.version = 1;
        h.client_name = i ? "second \"one\"\x01" : "first";
        f.body_case = FANOUT__FRAME__BODY_HELLO;
        f.hello = &h;
        Fanout__Frame *r;
        assert_int_equal(fo_tc_send(&c[i], &f), 0);
        assert_int_equal(fo_tc_recv(&c[i], 5000, &r), 1);
        assert_int_equal(r->body_case, FANOUT__FRAME__BODY_WELCOME);
        ids[i] = r->welcome->client_id;
        char want[64];
        snprintf(want, sizeof want, "\"conn\":\"c%d\",\"msg\":\"hello from ", i + 1);
        expect_log(&b, want);
    }
    assert_int_equal(ids[0] >> 32, 1);
    assert_int_equal(ids[1] >> 32, 2);
    fo_tc_close(&c[0]);
    fo_tc_close(&c[1]);
    expect_log(&b, "FANOUT_MAX_FRAMES is not a fanoutd option (ignored); did you mean FANOUT_MAX_FRAME?");
    assert_int_equal(fo_tb_stop(&b), 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s -c 'import json, sys\n"
             "lines = open(sys.argv[1], encoding=\"utf-8\").read().splitlines()\n"
             "assert len(lines) >= 5, lines\n"
             "for l in lines:\n"
             "    o = json.loads(l)\n"
             "    assert list(o) == [\"ts\", \"level\", \"worker\", \"conn\", \"msg\"], o\n"
             "    assert o[\"level\"] in (\"error\", \"warn\", \"info\", \"debug\"), o\n"
             "    assert o[\"ts\"].endswith(\"Z\") and len(o[\"ts\"]) == 24, o\n"
             "assert any(\"second \\\"one\\\"?\" in json.loads(l)[\"msg\"] for l in lines), lines\n"
             "' %s", python(), b.log_path);
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("%s: not one JSON object per line (python exit %d):\n%s", b.log_path, rc,
                 log_text(&b));
}

static void test_process_metrics(void **state)
{
    (void)state;
    fo_tb_t b;
    assert_int_equal(fo_tb_start(&b, NULL), 0);
    assert_true(fo_tb_metric(&b, "process_resident_memory_bytes") > 100000);
    assert_true(fo_tb_metric(&b, "process_open_fds") >= 5);
    assert_true(fo_tb_metric(&b, "process_max_fds") >= fo_tb_metric(&b, "process_open_fds"));
    assert_true(fo_tb_metric(&b, "process_cpu_seconds_total") >= 0);
    assert_true(fo_tb_metric(&b, "process_virtual_memory_bytes") > 0);
    double start = fo_tb_metric(&b, "process_start_time_seconds");
    double now = (double)time(NULL);
    assert_true(start > now - 60 && start <= now + 1);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* A normal shutdown is DEBUG, not a WARN per connection; "1 connection";
 * an HTTP request on the client port is named. */
static void test_shutdown_and_http(void **state)
{
    (void)state;
    fo_tb_t b;
    assert_int_equal(fo_tb_start(&b, (const char *const[]){ "--threads", "1", NULL }), 0);
    fo_tc_t c;
    assert_int_equal(fo_tc_open(&c, b.port, "stays"), 0);
    /* curl on the plain client port: a socket of our own, never TLS
     * (the harness's raw clients speak TLS under make test-tls) */
    int h = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)b.port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(h, (struct sockaddr *)&sa, sizeof sa), 0);
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(send(h, req, sizeof req - 1, MSG_NOSIGNAL), (ssize_t)sizeof req - 1);
    struct timeval tv = { 5, 0 };
    setsockopt(h, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char sink[4096];
    while (recv(h, sink, sizeof sink, 0) > 0)
        ;                                        /* until the broker closes */
    close(h);
    assert_int_equal(wait_log(&b, "ERR_FRAME_SIZE", 5000), 0);
    /* the HTTP one is gone (it lingers until the broker reads our EOF;
     * under valgrind that was after the SIGTERM: "draining: 2") */
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_connections_closed_total", 1, 10000), 0);
    assert_int_equal(fo_tb_stop(&b), 0);
    fo_tc_close(&c);
    const char *log = log_text(&b);
    char want[128];
    snprintf(want, sizeof want, "looks like HTTP; metrics are on --http 127.0.0.1:%d", b.http_port);
    assert_non_null(strstr(log, want));
    assert_null(strstr(log, "ERR_SHUTDOWN"));              /* DEBUG: a normal stop */
    assert_non_null(strstr(log, "draining: 1 connection\n"));
}

/* fanout stats sends $FANOUT_HTTP_TOKEN to a broker with --http-token. */
static void test_stats_http_token(void **state)
{
    (void)state;
    fo_tb_t b;
    assert_int_equal(fo_tb_start(&b, (const char *const[]){ "--http-token", "t0ken", NULL }), 0);
    static char out[8192], err[4096];
    char http[64];
    snprintf(http, sizeof http, "127.0.0.1:%d", b.http_port);
    const char *argv[] = { "fanout", "stats", "--http", http, "--json", NULL };
    unsetenv("FANOUT_HTTP_TOKEN");
    assert_int_equal(fo_tb_run(argv, NULL, out, sizeof out, err, sizeof err, 10000), 1);
    assert_non_null(strstr(err, "HTTP 401: the broker wants its --http-token (set FANOUT_HTTP_TOKEN)"));
    setenv("FANOUT_HTTP_TOKEN", "t0ken", 1);
    int rc = fo_tb_run(argv, NULL, out, sizeof out, err, sizeof err, 10000);
    unsetenv("FANOUT_HTTP_TOKEN");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\"process_open_fds\":"));
    assert_int_equal(fo_tb_stop(&b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_config),
        cmocka_unit_test(test_notify),
        cmocka_unit_test(test_sighup_report),
        cmocka_unit_test(test_json_logs_and_ids),
        cmocka_unit_test(test_process_metrics),
        cmocka_unit_test(test_stats_http_token),
        cmocka_unit_test(test_shutdown_and_http),
    };
    return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
