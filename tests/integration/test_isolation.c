/* test_isolation.c -- no client, careless or hostile, can hurt the others.
 * Each attack runs against a real fanoutd while a healthy client checks
 * its own outcome with a deadline (docs/RELIABILITY.md lists them):
 *   - slowloris on the metrics port: /healthz keeps answering 200.
 * Every wait has a deadline; no sleep-and-hope. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include "harness.h"

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* ------------------------------------------------------------ slowloris */

#define SLOW 200

typedef struct loris {
    int port;
    _Atomic int stop;
    _Atomic uint64_t opened;
} loris_t;

/* Keep SLOW connections open that never finish their request: each gets
 * one more header byte per round, and a closed one is opened again. */
static void *loris(void *arg)
{
    loris_t *l = arg;
    int fds[SLOW];
    for (int i = 0; i < SLOW; i++)
        fds[i] = -1;
    static const char req[] = "GET /healthz HTTP/1.1\r\nX-Slow: ";
    while (!atomic_load(&l->stop)) {
        for (int i = 0; i < SLOW && !atomic_load(&l->stop); i++) {
            if (fds[i] < 0) {
                if ((fds[i] = tcp_connect(l->port)) < 0)
                    continue;
                atomic_fetch_add(&l->opened, 1);
                if (send(fds[i], req, sizeof req - 1, MSG_NOSIGNAL) < 0) {
                    close(fds[i]);
                    fds[i] = -1;
                }
                continue;
            }
            if (send(fds[i], "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN) {
                close(fds[i]);
                fds[i] = -1;
            }
        }
        usleep(2000);   /* pacing the attack, not waiting for a result */
    }
    for (int i = 0; i < SLOW; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return NULL;
}

static void test_healthz_under_slowloris(void **state)
{
    (void)state;
    fo_tb_t b;
    assert_int_equal(fo_tb_start(&b, NULL), 0);
    loris_t l = { .port = b.http_port };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, loris, &l), 0);
    /* the attack is on when it holds more connections than the server keeps */
    uint64_t end = fo_tb_now_ms() + 10000;
    while (atomic_load(&l.opened) < 2 * SLOW && fo_tb_now_ms() < end)
        usleep(1000);
    assert_true(atomic_load(&l.opened) >= 2 * SLOW);
    /* every health check meanwhile answers 200, each within a second */
    char body[256];
    for (int i = 0; i < 50; i++) {
        uint64_t t0 = fo_tb_now_ms();
        int st = fo_tb_http_get(b.http_port, "/healthz", body, sizeof body);
        if (st != 200)
            fail_msg("health check %d answered %d under slowloris", i, st);
        assert_true(fo_tb_now_ms() - t0 < 1000);
    }
    atomic_store(&l.stop, 1);
    pthread_join(th, NULL);
    assert_int_equal(fo_tb_stop(&b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz_under_slowloris),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
