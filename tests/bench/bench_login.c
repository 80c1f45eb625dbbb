/* bench_login.c -- connections per second with and without a login
 * (issue 11's figure, docs/BENCHMARKS.md "Logins").
 *
 *   build/tests/bench/bench_login [--quick]
 *
 * One client connects, says HELLO, waits for WELCOME and closes, again and
 * again, against fanoutd on loopback:
 *
 *   anonymous   no users configured;
 *   cached      a users file (argon2id at libsodium's INTERACTIVE cost,
 *               64 MiB), the same user and password each time: one
 *               verification, then the cache of recent successes;
 *   verified    a different user each time: every login is verified;
 *   ... and the first two again over TLS (the handshake included).
 *
 * --quick divides the counts by 10 (a smoke run; not for the docs).
 * Run it on an otherwise idle machine; it is a benchmark, not a test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "harness.h"
#include "users.h"

static int scale = 1;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* n logins as user<i % users> (NULL user: anonymous), over TLS or not:
 * logins per second. */
static double logins(int port, int n, int users, int tls)
{
    char text[256], user[32];
    uint64_t t0 = now_ns();
    for (int i = 0; i < n; i++) {
        fo_tc_t c;
        int rc;
        if (tls) {
            fo_tc_tls_t o = { 0 };
            if (fo_tc_connect_tls(&c, port, &o)) {
                fprintf(stderr, "bench_login: TLS connect: %s\n", o.err);
                exit(1);
            }
        } else if (fo_tc_connect_plain(&c, port)) {
            exit(1);
        }
        snprintf(user, sizeof user, "user%d", i % (users ? users : 1));
        rc = fo_tc_hello(&c, users ? user : NULL, users ? "pw-of-a-user" : NULL, NULL, text,
                         sizeof text);
        if (rc) {
            fprintf(stderr, "bench_login: login %d refused (%d): %s\n", i, rc, text);
            exit(1);
        }
        fo_tc_close(&c);
    }
    return n / ((double)(now_ns() - t0) / 1e9);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--quick"))
        scale = 10;
    const char *certs = fo_tb_certs();
    int verified = 50 / scale < 5 ? 5 : 50 / scale;
    char dir[] = "/tmp/fo-bench-login-XXXXXX", path[128];
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/users", dir);
    FILE *f = fopen(path, "w");
    char h[FO_USERS_HASH_MAX];
    for (int i = 0; i < verified; i++) {
        if (fo_users_hash_secret("pw-of-a-user", FO_HASH_INTERACTIVE, h)) {
            fprintf(stderr, "bench_login: cannot hash\n");
            return 1;
        }
        fprintf(f, "user user%d password %s\n", i, h);
    }
    fclose(f);

    int n = 4000 / scale;
    fo_tb_t b;
    const char *anon[] = { "--log-level", "error", NULL };
    if (fo_tb_start_tls(&b, anon))
        return 1;
    double a = logins(b.port, n, 0, 0), at = certs ? logins(b.tls_port, n / 4, 0, 1) : 0;
    (void)fo_tb_stop(&b);

    const char *withu[] = { "--users", path, "--log-level", "error", NULL };
    if (fo_tb_start_tls(&b, withu))
        return 1;
    double v = logins(b.port, verified, verified, 0);        /* every one a new user */
    double cch = logins(b.port, n, 1, 0);                     /* user0, cached from above */
    double ct = certs ? logins(b.tls_port, n / 4, 1, 1) : 0;
    (void)fo_tb_stop(&b);

    printf("logins    anonymous          %8.0f/s   over TLS %8.0f/s\n", a, at);
    printf("logins    password, cached   %8.0f/s   over TLS %8.0f/s\n", cch, ct);
    printf("logins    password, verified %8.1f/s   (argon2id INTERACTIVE, 2 auth threads)\n", v);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
