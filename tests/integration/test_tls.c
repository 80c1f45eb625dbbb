/* test_tls.c -- fanoutd's TLS listener, end to end: a real `openssl
 * s_client` says HELLO and gets WELCOME; what must be refused is (wrong
 * CA, expired certificate, no client certificate when one is required,
 * TLS 1.1); a plain client on the TLS port and a TLS client on the plain
 * port get clean errors while others carry on; a TLS publisher's burst far
 * over --read-budget arrives whole (the pending-data trap); SIGHUP swaps
 * the certificate for new connections and keeps it when the new one is
 * broken; the handshake is bounded by hello-timeout; kTLS falls back to
 * OpenSSL's records visibly; client certificates name users; one
 * --max-conns for both ports. Every wait has a deadline. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "harness.h"

static const char *certs;

static const char *cert(const char *file)
{
    static char buf[8][400];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, 400, "%s/%s", certs, file);
    return b;
}

/* The broker's log has `needle` within timeout_ms. */
static int log_has(const fo_tb_t *b, const char *needle, int timeout_ms)
{
    uint64_t deadline = fo_tb_now_ms() + (uint64_t)timeout_ms;
    static char text[1 << 20];
    do {
        FILE *f = fopen(b->log_path, "r");
        if (f) {
            size_t n = fread(text, 1, sizeof text - 1, f);
            text[n] = '\0';
            fclose(f);
            if (strstr(text, needle))
                return 1;
        }
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);
    } while (fo_tb_now_ms() < deadline);
    return 0;
}

static size_t hello_frame(uint8_t *out, const char *name)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1;
    h.version = 1;
    h.client_name = (char *)name;
    f.body_case = FANOUT__FRAME__BODY_HELLO;
    f.hello = &h;
    return fo_frame_pack(&f, out);
}

/* ------------------------------------------------------------ s_client */

typedef struct sclient {
    int status;          /* exit status, -1 timeout */
    int first_frame;     /* body case of the first frame it printed, 0 none */
    char err[8192];      /* its stderr */
} sclient_t;

/* openssl s_client -connect 127.0.0.1:port ARGS...: send a HELLO frame,
 * read stdout until one whole frame came (or it exits, or 10 s), then
 * close its stdin so it ends. */
static void run_sclient(int port, const char *const *args, sclient_t *r)
{
    memset(r, 0, sizeof *r);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    const char *argv[32] = { "openssl", "s_client", "-connect", target, "-servername", "localhost",
                             "-verify_return_error", "-quiet", "-no_ign_eof" };
    int argc = 9;
    for (int i = 0; args && args[i] && argc < 31; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    int in[2], out[2], err[2];
    assert_int_equal(pipe(in) | pipe(out) | pipe(err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(in[1]); close(out[0]); close(err[0]);
        execvp("openssl", (char *const *)argv);
        _exit(127);
    }
    close(in[0]); close(out[1]); close(err[1]);
    uint8_t hello[64];
    size_t hn = hello_frame(hello, "s_client");
    (void)!write(in[1], hello, hn);
    fo_decoder_t dec;
    fo_decoder_init(&dec, FO_MAX_FRAME_LIMIT);
    fo_arena_t arena;
    assert_int_equal(fo_arena_init(&arena, 4096, 0), FO_OK);
    size_t eg = 0;
    int out_open = 1, err_open = 1, in_open = 1;
    uint64_t deadline = fo_tb_now_ms() + 10000;
    while ((out_open || err_open) && fo_tb_now_ms() < deadline) {
        struct pollfd p[2] = { { out_open ? out[0] : -1, POLLIN, 0 }, { err_open ? err[0] : -1, POLLIN, 0 } };
        if (poll(p, 2, 100) <= 0)
            continue;
        if (p[0].revents) {
            assert_int_equal(fo_buf_reserve(&dec.buf, 4096), FO_OK);
            ssize_t k = read(out[0], fo_buf_tail(&dec.buf), fo_buf_room(&dec.buf));
            if (k <= 0) {
                out_open = 0;
            } else {
                fo_buf_commit(&dec.buf, (size_t)k);
                const uint8_t *body;
                size_t len;
                Fanout__Frame *f;
                if (!r->first_frame && fo_decoder_next(&dec, &body, &len) == FO_OK &&
                    fo_frame_unpack(body, len, &arena, &f) == FO_OK) {
                    r->first_frame = (int)f->body_case;
                    if (in_open) {      /* got it: let s_client finish */
                        close(in[1]);
                        in_open = 0;
                    }
                }
            }
        }
        if (p[1].revents) {
            ssize_t k = read(err[0], r->err + eg, sizeof r->err - 1 - eg);
            if (k <= 0)
                err_open = 0;
            else
                eg += (size_t)k;
        }
    }
    r->err[eg] = '\0';
    if (in_open)
        close(in[1]);
    close(out[0]);
    close(err[0]);
    int st = 0;
    for (;;) {                       /* it ends once stdin is closed */
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (fo_tb_now_ms() >= deadline + 5000) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            r->status = -1;
            break;
        }
        struct timespec ts = { 0, 10 * 1000000 };
        nanosleep(&ts, NULL);
    }
    fo_decoder_destroy(&dec);
    fo_arena_destroy(&arena);
}

static void expect_refused(const sclient_t *r, const char *why)
{
    if (r->first_frame || !strstr(r->err, why))
        fail_msg("s_client: expected a refusal (\"%s\"), got frame %d, status %d, stderr:\n%s",
                 why, r->first_frame, r->status, r->err);
}

/* A healthy pub/sub round trip, TLS -> plain and plain -> TLS. */
static void assert_healthy(const fo_tb_t *b, const char *topic)
{
    for (int dir = 0; dir < 2; dir++) {
        fo_tc_t sub, pub;
        fo_tc_tls_t o = {0};
        if (dir == 0) {
            assert_int_equal(fo_tc_connect_plain(&sub, b->port), 0);
            assert_int_equal(fo_tc_connect_tls(&pub, b->tls_port, &o), 0);
        } else {
            assert_int_equal(fo_tc_connect_tls(&sub, b->tls_port, &o), 0);
            assert_int_equal(fo_tc_connect_plain(&pub, b->port), 0);
        }
        uint8_t h[64];
        Fanout__Frame *f;
        size_t hn = hello_frame(h, "healthy");
        for (int i = 0; i < 2; i++) {
            fo_tc_t *c = i ? &pub : &sub;
            assert_int_equal(fo_tc_send_raw(c, h, hn), 0);
            assert_int_equal(fo_tc_recv(c, 10000, &f), 1);
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_WELCOME);
        }
        assert_int_equal(fo_tc_subscribe(&sub, 1, topic, NULL), 0);
        assert_int_equal(fo_tc_publish(&pub, topic, "ok", 2, 0), 0);
        assert_int_equal(fo_tc_recv(&sub, 10000, &f), 1);
        assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
        assert_memory_equal(f->deliver->payload.data, "ok", 2);
        fo_tc_close(&sub);
        fo_tc_close(&pub);
    }
}

/* TLS connect + HELLO/WELCOME with options; 0 ok. */
static int open_tls(fo_tc_t *c, int port, fo_tc_tls_t *o)
{
    if (fo_tc_connect_tls(c, port, o))
        return -1;
    uint8_t h[64];
    size_t hn = hello_frame(h, "tls");
    Fanout__Frame *f;
    if (fo_tc_send_raw(c, h, hn) || fo_tc_recv(c, 10000, &f) != 1 ||
        f->body_case != FANOUT__FRAME__BODY_WELCOME) {
        fo_tc_close(c);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ tests */

static void test_s_client_hello_welcome(void **state)
{
    (void)state;
    fo_tb_t b;
    assert_int_equal(fo_tb_start_tls(&b, NULL), 0);
    assert_true(log_has(&b, "(TLS)", 5000));      /* the listeners named at start */
    const char *args[] = { "-CAfile", cert("ca.pem"), NULL };
    sclient_t r;
    run_sclient(b.tls_port, args, &r);
    if (r.first_frame != FANOUT__FRAME__BODY_WELCOME)
        fail_msg("no WELCOME: status %d, stderr:\n%s", r.status, r.err);
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_tls_handshakes_total", 1, 5000), 0);
    assert_true(log_has(&b, "over TLS", 5000));
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* The client refuses the broker (wrong CA, expired certificate); the
 * broker refuses the client (no certificate when required, TLS 1.1).
 * Each failure is counted by the broker, which keeps serving. */
static void test_refusals(void **state)
{
    (void)state;
    fo_tb_t b;
    sclient_t r;
    assert_int_equal(fo_tb_start_tls(&b, NULL), 0);
    const char *wrong_ca[] = { "-CAfile", cert("other-ca.pem"), NULL };
    run_sclient(b.tls_port, wrong_ca, &r);
    expect_refused(&r, "certificate verify failed");
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_tls_handshake_failures_total", 1, 5000), 0);
    /* TLS 1.1: offered for real (security level 0), refused by the broker */
    const char *old[] = { "-CAfile", cert("ca.pem"), "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", NULL };
    run_sclient(b.tls_port, old, &r);
    expect_refused(&r, "alert protocol version");
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_tls_handshake_failures_total", 2, 5000), 0);
    assert_true(log_has(&b, "unsupported protocol", 5000));
    assert_healthy(&b, "after.refusals");
    assert_int_equal(fo_tb_stop(&b), 0);

    const char *expired[] = { "--tls-cert", cert("expired.pem"), "--tls-key", cert("expired.key"), NULL };
    assert_int_equal(fo_tb_start_tls(&b, expired), 0);
    assert_true(log_has(&b, "has expired", 5000));          /* said at start */
    const char *ca[] = { "-CAfile", cert("ca.pem"), NULL };
    run_sclient(b.tls_port, ca, &r);
    expect_refused(&r, "certificate has expired");
    assert_int_equal(fo_tb_stop(&b), 0);

    const char *required[] = { "--tls-ca", cert("ca.pem"), "--tls-verify-client", "required", NULL };
    assert_int_equal(fo_tb_start_tls(&b, required), 0);
    run_sclient(b.tls_port, ca, &r);                        /* no certificate */
    expect_refused(&r, "alert certificate required");
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_tls_handshake_failures_total", 1, 5000), 0);
    assert_true(log_has(&b, "peer did not return a certificate", 5000));
    const char *with_cert[] = { "-CAfile", cert("ca.pem"), "-cert", cert("client.pem"),
                                "-key", cert("client.key"), NULL };
    run_sclient(b.tls_port, with_cert, &r);
    if (r.first_frame != FANOUT__FRAME__BODY_WELCOME)
        fail_msg("with a client certificate: no WELCOME, stderr:\n%s", r.err);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* A plain client on the TLS port and a TLS client on the plain port: both
 * closed cleanly, both said in the log; the broker serves others. */
static void test_wrong_ports(void **state)
{
    (void)state;
    fo_tb_t b;
    assert_int_equal(fo_tb_start_tls(&b, NULL), 0);
    fo_tc_t c;
    Fanout__Frame *f;
    assert_int_equal(fo_tc_connect_plain(&c, b.tls_port), 0);
    uint8_t h[64];
    assert_int_equal(fo_tc_send_raw(&c, h, hello_frame(h, "plain")), 0);
    assert_int_equal(fo_tc_recv(&c, 5000, &f), -1);           /* closed, no frame */
    fo_tc_close(&c);
    assert_true(log_has(&b, "not a TLS handshake (first byte 0x00): a plain client on the TLS port?", 5000));
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_tls_handshake_failures_total", 1, 5000), 0);

    fo_tc_tls_t o = {0};
    assert_int_not_equal(fo_tc_connect_tls(&c, b.port, &o), 0);
    print_message("TLS client on the plain port: %s\n", o.err);
    char want[128];
    snprintf(want, sizeof want, "looks like a TLS handshake: the TLS port is --tls-listen 127.0.0.1:%d",
             b.tls_port);
    assert_true(log_has(&b, want, 5000));
    assert_true(fo_tb_metric(&b, "fanout_errors_sent_total{code=\"frame_size\"}") >= 1);
    assert_healthy(&b, "after.wrong.ports");
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_tls_connections", 0, 1000), 0);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* A TLS publisher sends 20,000 messages in one go, each in its own record
 * as a simple client does, much more than --read-budget: the records the
 * broker's session read ahead but did not decrypt within the budget are
 * invisible to epoll once the socket is empty, and must still arrive (the
 * pending-data trap). Then the same as one write of 16 KiB records. */
static void test_pending_data_trap(void **state)
{
    (void)state;
    enum { N = 20000 };
    fo_tb_t b;
    const char *args[] = { "--read-budget", "4KiB", NULL };
    assert_int_equal(fo_tb_start_tls(&b, args), 0);
    fo_tc_t sub, pub;
    assert_int_equal(fo_tc_open(&sub, b.port, "sub"), 0);      /* plain (no switch) */
    assert_int_equal(fo_tc_subscribe(&sub, 1, "trap.t", NULL), 0);
    fo_tc_tls_t o = {0};
    assert_int_equal(open_tls(&pub, b.tls_port, &o), 0);
    fo_buf_t burst = FO_BUF_INIT;
    for (int round = 0; round < 2; round++) {
        for (int i = 1; i <= N; i++) {
            char payload[40];
            int n = snprintf(payload, sizeof payload, "message %d", i);
            Fanout__Frame f = FANOUT__FRAME__INIT;
            Fanout__Publish p = FANOUT__PUBLISH__INIT;
            p.topic = "trap.t";
            p.has_payload = 1;
            p.payload.data = (uint8_t *)payload;
            p.payload.len = (size_t)n;
            f.body_case = FANOUT__FRAME__BODY_PUBLISH;
            f.publish = &p;
            if (round == 0) {
                assert_int_equal(fo_tc_send(&pub, &f), 0);         /* a record each */
                continue;
            }
            assert_int_equal(fo_buf_reserve(&burst, fo_frame_size(&f)), FO_OK);
            fo_buf_commit(&burst, fo_frame_pack(&f, fo_buf_tail(&burst)));
        }
        if (round == 1) {
            assert_true(fo_buf_len(&burst) > 100 * 4096);
            assert_int_equal(fo_tc_send_raw(&pub, fo_buf_head(&burst), fo_buf_len(&burst)), 0);
            fo_buf_free(&burst);
        }
        for (int i = 1; i <= N; i++) {
            Fanout__Frame *f;
            if (fo_tc_recv(&sub, 10000, &f) != 1)
                fail_msg("round %d: message %d of %d did not arrive", round, i, N);
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
            assert_int_equal(f->deliver->seq, (uint64_t)(round * N + i));
        }
    }
    assert_int_equal(fo_tb_metric(&b, "fanout_messages_in_total"), 2 * N);
    fo_tc_close(&sub);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

static int served_cn(int port, char *cn, size_t len)
{
    fo_tc_t c;
    fo_tc_tls_t o = {0};
    if (open_tls(&c, port, &o))
        return -1;
    fo_tc_peer_cn(&c, cn, len);
    fo_tc_close(&c);
    return 0;
}

static void copy_file(const char *from, const char *to)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

/* SIGHUP re-reads the certificate files: a new certificate is served to
 * new connections (open ones keep working), a broken one is refused with
 * an ERROR line and the last good one stays. */
static void test_sighup_swaps_certificate(void **state)
{
    (void)state;
    char dir[] = "/tmp/fanout-reload-XXXXXX", crt[128], key[128];
    assert_non_null(mkdtemp(dir));
    snprintf(crt, sizeof crt, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    copy_file(cert("server.pem"), crt);
    copy_file(cert("server.key"), key);
    fo_tb_t b;
    const char *args[] = { "--tls-cert", crt, "--tls-key", key, NULL };
    assert_int_equal(fo_tb_start_tls(&b, args), 0);
    char cn[64];
    assert_int_equal(served_cn(b.tls_port, cn, sizeof cn), 0);
    assert_string_equal(cn, "localhost");
    fo_tc_t old;
    fo_tc_tls_t o = {0};
    assert_int_equal(open_tls(&old, b.tls_port, &o), 0);

    copy_file(cert("server2.pem"), crt);
    copy_file(cert("server2.key"), key);
    fo_tb_signal(&b, SIGHUP);
    uint64_t deadline = fo_tb_now_ms() + 10000;
    do
        assert_int_equal(served_cn(b.tls_port, cn, sizeof cn), 0);
    while (strcmp(cn, "localhost-2") && fo_tb_now_ms() < deadline);
    assert_string_equal(cn, "localhost-2");
    assert_true(log_has(&b, "SIGHUP: TLS context reloaded: certificate /CN=localhost-2", 5000));
    assert_int_equal(fo_tc_subscribe(&old, 1, "still.open", NULL), 0);   /* the old one works */

    copy_file(cert("server.pem"), crt);           /* does not match key.pem (server2's) */
    fo_tb_signal(&b, SIGHUP);
    assert_true(log_has(&b, "ERROR main - SIGHUP: TLS reload failed, new connections keep the old "
                            "certificate: --tls-key", 5000));
    assert_int_equal(served_cn(b.tls_port, cn, sizeof cn), 0);
    assert_string_equal(cn, "localhost-2");
    fo_tc_close(&old);
    assert_healthy(&b, "after.reload");
    assert_int_equal(fo_tb_stop(&b), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A peer that never finishes the handshake is closed at hello-timeout,
 * like one that never says HELLO, and counted; one that connects and
 * leaves without a byte (a port check) is not a failed handshake. */
static void test_handshake_timeout(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--hello-timeout", "300ms", NULL };
    assert_int_equal(fo_tb_start_tls(&b, args), 0);
    fo_tc_t mute, half, probe;
    assert_int_equal(fo_tc_connect_plain(&probe, b.tls_port), 0);         /* a port check */
    fo_tc_close(&probe);
    assert_int_equal(fo_tc_connect_plain(&mute, b.tls_port), 0);          /* says nothing */
    assert_int_equal(fo_tc_connect_plain(&half, b.tls_port), 0);
    assert_int_equal(fo_tc_send_raw(&half, "\x16\x03\x01\x02\x00\x01", 6), 0);   /* a ClientHello begins */
    Fanout__Frame *f;
    assert_int_equal(fo_tc_recv(&mute, 5000, &f), -1);
    assert_int_equal(fo_tc_recv(&half, 5000, &f), -1);
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_tls_handshake_failures_total", 2, 5000), 0);
    assert_true(fo_tb_metric(&b, "fanout_idle_timeouts_total") >= 2);
    assert_true(log_has(&b, "not finished within 300 ms", 5000));
    fo_tc_close(&mute);
    fo_tc_close(&half);
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_connections", 0, 1000), 0);
    assert_int_equal(fo_tb_metric(&b, "fanout_tls_handshake_failures_total"), 2);   /* not the probe */
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* kTLS is asked for; this kernel (no TLS ULP) refuses the keys, so the
 * records are OpenSSL's: the gauge and a debug line say so, and the
 * connection works all the same. */
static void test_ktls_fallback(void **state)
{
    (void)state;
    int kernel_tls = 0;
    FILE *u = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
    if (u) {
        char ulp[256] = "";
        kernel_tls = fgets(ulp, sizeof ulp, u) && strstr(ulp, "tls");
        fclose(u);
    }
    fo_tb_t b;
    const char *args[] = { "--log-level", "debug", NULL };
    assert_int_equal(fo_tb_start_tls(&b, args), 0);
    assert_true(log_has(&b, "kTLS requested", 5000));
    fo_tc_t c;
    fo_tc_tls_t o = {0};
    assert_int_equal(open_tls(&c, b.tls_port, &o), 0);
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_tls_connections", 1, 5000), 0);
    if (kernel_tls) {
        print_message("this kernel has the TLS ULP: kTLS may be on\n");
        assert_true(log_has(&b, "; kTLS ", 5000));
    } else {
        assert_int_equal(fo_tb_metric(&b, "fanout_tls_ktls_connections"), 0);
        assert_true(log_has(&b, "kTLS off (the kernel did not take the keys)", 5000));
    }
    assert_int_equal(fo_tc_subscribe(&c, 1, "k.t", NULL), 0);
    assert_int_equal(fo_tc_publish(&c, "k.t", "x", 1, 0), 0);
    Fanout__Frame *f;
    assert_int_equal(fo_tc_recv(&c, 5000, &f), 1);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
    fo_tc_close(&c);
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_tls_connections", 0, 1000), 0);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* --tls-user-from: a verified client certificate names the user (the
 * broker says so at HELLO); a certificate from another CA is refused. */
static void test_client_certificate_user(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--tls-ca", cert("ca.pem"), "--tls-verify-client", "optional",
                           "--tls-user-from", "cn", NULL };
    assert_int_equal(fo_tb_start_tls(&b, args), 0);
    fo_tc_t c;
    fo_tc_tls_t o = { .cert_file = cert("client.pem"), .key_file = cert("client.key") };
    assert_int_equal(open_tls(&c, b.tls_port, &o), 0);
    assert_true(log_has(&b, "over TLS, certificate user alice", 5000));
    fo_tc_close(&c);
    fo_tc_tls_t none = {0};                       /* optional: none is fine */
    assert_int_equal(open_tls(&c, b.tls_port, &none), 0);
    fo_tc_close(&c);
    fo_tc_tls_t stranger = { .cert_file = cert("stranger.pem"), .key_file = cert("stranger.key") };
    assert_int_not_equal(open_tls(&c, b.tls_port, &stranger), 0);
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_tls_handshake_failures_total", 1, 5000), 0);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* --max-conns counts both listeners; over it, TLS is closed before the
 * handshake and plain gets ERROR max_conns. */
static void test_max_conns_shared(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--max-conns", "2", NULL };
    assert_int_equal(fo_tb_start_tls(&b, args), 0);
    fo_tc_t plain, tls, extra;
    fo_tc_tls_t o = {0};
    assert_int_equal(fo_tc_open(&plain, b.port, "plain"), 0);
    assert_int_equal(open_tls(&tls, b.tls_port, &o), 0);
    assert_int_not_equal(fo_tc_connect_tls(&extra, b.tls_port, &o), 0);
    assert_int_equal(fo_tc_connect_plain(&extra, b.port), 0);
    int code;
    assert_int_equal(fo_tc_wait_closed(&extra, 5000, &code), 0);
    assert_int_equal(code, FANOUT__ERROR_CODE__ERR_MAX_CONNS);
    fo_tc_close(&extra);
    assert_true(log_has(&b, "TLS connection refused: --max-conns 2 reached", 5000));
    fo_tc_close(&plain);
    fo_tc_close(&tls);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* Startup errors: one clear line, exit status 1 (2 for a usage error). */
static void startup_fails(const char *cert_file, const char *key_file, int status, const char *want)
{
    const char *argv[16] = { "fanoutd", "--listen", "127.0.0.1:0", "--http", "off",
                             "--tls-listen", "127.0.0.1:0" };
    int n = 7;
    if (cert_file) {
        argv[n++] = "--tls-cert";
        argv[n++] = cert_file;
    }
    if (key_file) {
        argv[n++] = "--tls-key";
        argv[n++] = key_file;
    }
    argv[n] = NULL;
    char out[512], err[1024];
    int st = fo_tb_run(argv, NULL, out, sizeof out, err, sizeof err, 10000);
    if (st != status || !strstr(err, want) || strchr(err, '\n') != strrchr(err, '\n'))
        fail_msg("%s/%s: status %d, stderr \"%s\" (want %d, \"%s\")", cert_file, key_file, st, err,
                 status, want);
}

static void test_startup_errors(void **state)
{
    (void)state;
    startup_fails(NULL, NULL, 2, "fanoutd: --tls-listen 127.0.0.1:0 needs --tls-cert and --tls-key");
    startup_fails("/nonexistent.pem", cert("server.key"), 1,
                  "fanoutd: --tls-cert: cannot read \"/nonexistent.pem\": No such file or directory");
    startup_fails(cert("server.pem"), cert("server2.key"), 1,
                  "does not match the certificate in --tls-cert");
}

/* A TLS listener other hosts reach, no users: served only because it
 * requires client certificates. A reload that asks for less keeps
 * required (it used to apply it, and then served anyone). */
static void test_reload_keeps_verify_required(void **state)
{
    (void)state;
    char cfg[] = "/tmp/fo-tls-cfg-XXXXXX", listen[32];
    int fd = mkstemp(cfg);
    assert_true(fd >= 0);
    const char required[] = "tls-verify-client required\n";
    assert_int_equal(write(fd, required, sizeof required - 1), (ssize_t)sizeof required - 1);
    close(fd);
    int port = fo_tb_free_port();
    snprintf(listen, sizeof listen, "0.0.0.0:%d", port);
    const char *args[] = { "--config", cfg, "--tls-listen", listen, "--tls-ca", cert("ca.pem"), NULL };
    fo_tb_t b;
    assert_int_equal(fo_tb_start_tls(&b, args), 0);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fputs("tls-verify-client none\n", f);
    fclose(f);
    fo_tb_signal(&b, SIGHUP);
    assert_true(log_has(&b, "SIGHUP: tls-verify-client stays required", 5000));
    sclient_t r;
    const char *ca[] = { "-CAfile", cert("ca.pem"), NULL };
    run_sclient(port, ca, &r);                              /* no certificate */
    expect_refused(&r, "alert certificate required");
    assert_int_equal(fo_tb_stop(&b), 0);
    unlink(cfg);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    certs = fo_tb_certs();
    if (!certs) {
        fprintf(stderr, "cannot make test certificates (is the openssl command installed?)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_s_client_hello_welcome),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_wrong_ports),
        cmocka_unit_test(test_pending_data_trap),
        cmocka_unit_test(test_sighup_swaps_certificate),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_ktls_fallback),
        cmocka_unit_test(test_client_certificate_user),
        cmocka_unit_test(test_max_conns_shared),
        cmocka_unit_test(test_startup_errors),
        cmocka_unit_test(test_reload_keeps_verify_required),
    };
    return cmocka_run_group_tests_name("tls", tests, NULL, NULL);
}
