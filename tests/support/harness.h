/* harness.h -- integration-test support: real fanoutd processes, raw
 * protocol clients, and waiting on conditions with deadlines.
 *
 * No sleep-and-hope: everything that waits takes a deadline and polls a
 * condition (a connect that succeeds, a frame that arrives, a metric that
 * reaches a value). Brokers listen on ports picked free on 127.0.0.1.
 * The binaries come from $FO_BUILD (set by tests/run.sh; default "build").
 *
 * TLS: FO_TEST_TLS=1 (make test-tls) makes fo_tb_start also start a TLS
 * listener with the test certificates (fo_tb_certs) and makes the raw
 * protocol client (fo_tc_connect, fo_tc_open and friends) talk TLS to it
 * when given the broker's port: every suite written with raw clients runs
 * over TLS unchanged. libfanout and the CLI follow too: fo_tb_t.addr,
 * the address every suite gives them, is then "tls://127.0.0.1:TLSPORT",
 * and the test CA is what they trust by default (SSL_CERT_FILE, which
 * OpenSSL's default store reads, is set to it in the test process and so
 * in the commands it runs). fo_tc_connect_plain/_tls choose explicitly;
 * fo_tb_t.plain and .tls_addr name each listener whatever the switch.
 */
#ifndef FO_HARNESS_H
#define FO_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "frame.h"

typedef struct fo_tb {
    pid_t pid;
    int port;             /* client port on 127.0.0.1 */
    int tls_port;         /* --tls-listen port, 0 = none */
    int http_port;        /* --http port on 127.0.0.1 */
    char addr[64];        /* for libfanout and the CLI: "127.0.0.1:PORT",
                             "tls://127.0.0.1:TLSPORT" under FO_TEST_TLS */
    char plain[64];       /* "127.0.0.1:PORT" always  */
    char tls_addr[64];    /* "tls://127.0.0.1:TLSPORT", "" = no TLS port */
    char log_path[256];   /* broker stderr            */
} fo_tb_t;

uint64_t fo_tb_now_ms(void);
/* 1 when brokers run under FO_BROKER_WRAP (make valgrind): one thread at
 * a time, tens of times slower, so a test whose point is a timing (not
 * an outcome) skips. */
int fo_tb_wrapped(void);
int fo_tb_free_port(void);
const char *fo_tb_build_dir(void);

/* Start fanoutd with free ports plus extra args (NULL-terminated, may be
 * NULL) and wait (10 s) until /healthz answers 200. 0 on success. */
int fo_tb_start(fo_tb_t *b, const char *const *extra_args);
/* The same, always with a TLS listener (tls_port) on the test
 * certificates (server.pem); extra args come after, so they win. */
int fo_tb_start_tls(fo_tb_t *b, const char *const *extra_args);
/* FO_TEST_TLS=1: raw clients go over TLS. */
int fo_tb_tls(void);
/* Make test certificates in dir (created), with the openssl command:
 *   ca.pem/.key        the test CA (CN "fanout test CA")
 *   other-ca.pem/.key  a CA nobody trusts
 *   server.pem/.key    CN localhost, SAN DNS:localhost IP:127.0.0.1, by ca
 *   server2.pem/.key   CN localhost-2, same SANs, by ca (reload tests)
 *   expired.pem/.key   CN localhost, expired, by ca
 *   client.pem/.key    CN alice, SAN DNS:alice.clients.test and
 *                      email:alice@example.test, clientAuth, by ca
 *   stranger.pem/.key  CN mallory, a client certificate by other-ca
 *   peer.pem/.key      CN "fanout peer", serverAuth and clientAuth (both
 *                      ends of a cluster link), by ca
 *   peer-stranger.pem/.key  the same, by other-ca
 *   elsewhere.pem/.key CN elsewhere.test, SAN DNS:elsewhere.test only (no
 *                      localhost, no 127.0.0.1): hostname mismatch, by ca
 * 0 on success. */
int fo_tb_make_certs(const char *dir);
/* A directory made once per process with fo_tb_make_certs and removed
 * at exit; NULL when the certificates could not be made. */
const char *fo_tb_certs(void);
/* fo_tb_certs()/NAME in a static buffer (one per call site: copy it), or
 * NULL when there are no certificates. */
const char *fo_tb_cert(const char *name);

/* Stop b if it runs, then start it again on the same ports (and TLS
 * listener, if it had one) with these extra args: a broker restart that
 * clients can reconnect to. 0 on success. */
int fo_tb_restart(fo_tb_t *b, const char *const *extra);
/* SIGTERM and wait (15 s, then SIGKILL). Returns the exit status (0..255),
 * or 128+signal, or -1. */
int fo_tb_stop(fo_tb_t *b);
/* Send a signal. */
void fo_tb_signal(fo_tb_t *b, int sig);

/* GET http://127.0.0.1:port/path; returns the status, body in buf. */
int fo_tb_http_get(int port, const char *path, char *buf, size_t len);
/* The same with an Authorization header (NULL: none). */
int fo_tb_http_get_auth(int port, const char *path, const char *authorization, char *buf, size_t len);
/* A UDP socket (non-blocking) bound to group:port and joined on
 * 127.0.0.1, with SO_REUSEADDR: it sees every datagram a receiver there
 * sees (tests that replay, cut or count real datagrams). -1 on failure. */
int fo_tb_mcast_sniffer(const char *group, uint16_t port);
/* Value of a metric line "name value" (exact name incl. labels) from
 * /metrics, or -1 when absent. */
double fo_tb_metric(const fo_tb_t *b, const char *name);
/* Poll fo_tb_metric until it is >= want or the deadline passes. */
int fo_tb_wait_metric(const fo_tb_t *b, const char *name, double want, int timeout_ms);

/* ---- raw protocol client (blocking socket with timeouts) ---- */
struct ssl_st;
typedef struct fo_tc {
    int fd;
    struct ssl_st *ssl;   /* over TLS (non-blocking socket), else NULL */
    fo_decoder_t dec;
    fo_arena_t arena;
} fo_tc_t;

/* Connect to 127.0.0.1:port (over TLS to the broker's TLS port when
 * FO_TEST_TLS=1 and port is a broker's client port). 0 on success. */
int fo_tc_connect(fo_tc_t *c, int port);
int fo_tc_connect_plain(fo_tc_t *c, int port);
/* TLS to 127.0.0.1:port. Every field may be 0/NULL. */
typedef struct fo_tc_tls {
    const char *ca_file;       /* verify the broker against it (NULL: the
                                * test CA; "" = no verification)         */
    const char *cert_file;     /* client certificate and its key         */
    const char *key_file;
    int max_version;           /* e.g. TLS1_1_VERSION (with SECLEVEL 0)  */
    int rcvbuf;                /* SO_RCVBUF before connect, 0 = default  */
    char err[256];             /* why the handshake failed               */
} fo_tc_tls_t;
int fo_tc_connect_tls(fo_tc_t *c, int port, fo_tc_tls_t *o);
/* The CN of the certificate the broker served ("" when none). */
void fo_tc_peer_cn(const fo_tc_t *c, char *out, size_t len);
/* Connect and complete HELLO/WELCOME. 0 on success. */
int fo_tc_open(fo_tc_t *c, int port, const char *name);
/* The same with a fixed receive buffer (bytes), set before connecting: a
 * consumer that cannot absorb much (slow-consumer tests). */
int fo_tc_connect_rcvbuf(fo_tc_t *c, int port, int rcvbuf);
int fo_tc_open_rcvbuf(fo_tc_t *c, int port, const char *name, int rcvbuf);
/* Connect and log in with HELLO {user, password, token} (any may be
 * NULL): 0 on WELCOME (c open); else c is closed and the ERROR's code is
 * returned (the text in text), or -1 when no answer came. */
int fo_tc_login(fo_tc_t *c, int port, const char *user, const char *password, const char *token,
                char *text, size_t textlen);
/* The same on a connected c (which stays open either way); send_hello
 * only sends it (0 ok). */
int fo_tc_hello(fo_tc_t *c, const char *user, const char *password, const char *token,
                char *text, size_t textlen);
int fo_tc_send_hello(fo_tc_t *c, const char *user, const char *password, const char *token);
void fo_tc_close(fo_tc_t *c);
int fo_tc_send(fo_tc_t *c, const Fanout__Frame *f);          /* 0 ok */
int fo_tc_send_raw(fo_tc_t *c, const void *p, size_t n);     /* 0 ok */
/* Next frame within timeout_ms: 1 got one (valid until the next call),
 * 0 timeout, -1 closed or error. */
int fo_tc_recv(fo_tc_t *c, int timeout_ms, Fanout__Frame **out);
/* Helpers that build and send one frame. */
int fo_tc_subscribe(fo_tc_t *c, uint32_t sid, const char *filter, const char *queue);
int fo_tc_publish(fo_tc_t *c, const char *topic, const void *p, size_t n, uint64_t req);
/* Wait for an ACK with ref `req` (skipping other frames; counts DELIVERs
 * it skips into *skipped if non-NULL). 0 on success. */
int fo_tc_wait_ack(fo_tc_t *c, uint64_t req, int timeout_ms);
/* Wait until the peer closes (EOF): 0 closed, -1 timeout. Records the code
 * of an ERROR frame seen on the way in *err_code (or -1). */
int fo_tc_wait_closed(fo_tc_t *c, int timeout_ms, int *err_code);

/* Run a command (argv[0] relative to the build dir if it has no '/'),
 * feeding `input` (may be NULL) on stdin, capturing stdout/stderr into
 * out/err (may be NULL). Returns the exit status, or -1 on timeout. */
int fo_tb_run(const char *const *argv, const char *input, char *out, size_t outlen,
              char *err, size_t errlen, int timeout_ms);
/* A test script run as one cmocka test (tests/integration/netns_*.sh):
 * skip() when not root or when it exits 77, fail unless it exits 0. Its
 * output goes to the test's log. Call from a cmocka test. */
void fo_tb_script_test(const char *path);

/* Start a command in the background with stdout to a file; returns pid. */
pid_t fo_tb_spawn(const char *const *argv, const char *stdout_path);
/* Wait for a spawned command: its exit status (128 + signal when killed
 * by one), or -1 after timeout_ms (then it is killed and reaped). */
int fo_tb_wait_pid(pid_t pid, int timeout_ms);
/* A file's first len - 1 bytes, NUL-terminated ("" when unreadable). */
void fo_tb_read_file(const char *path, char *buf, size_t len);
/* VmRSS of a process in KiB, -1 when unknown. */
long fo_tb_rss_kib(pid_t pid);

#endif
