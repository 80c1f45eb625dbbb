/* test_http.c -- the HTTP server behind --http (broker/http.c), driven on
 * a real socket (127.0.0.1, port 0) by a poller thread, the way main.c's
 * loop drives it: routes, split and oversized requests, a response larger
 * than the socket buffers, silent clients, the connection limit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "buf.h"
#include "../../broker/http.h"
#include "../../broker/metrics.h"

typedef struct server {
    fo_http_t *h;
    pthread_t thread;
    atomic_int stop;
    atomic_int handled;
} server_t;

static int handler(void *ud, const fo_http_req_t *rq, fo_buf_t *body, const char **ctype)
{
    server_t *sv = ud;
    const char *path = rq->path;
    atomic_fetch_add(&sv->handled, 1);
    if (!strcmp(path, "/auth")) {       /* echoes what it was told */
        const char *a = rq->authorization ? rq->authorization : "(none)";
        return fo_buf_append(body, a, strlen(a)) == FO_OK ? (rq->authorization ? 200 : 401) : 500;
    }
    if (!strcmp(path, "/healthz"))
        return fo_buf_append(body, "ok\n", 3) == FO_OK ? 200 : 500;
    if (!strcmp(path, "/metrics")) {
        static fo_stats_t w;
        const fo_stats_t *ws[] = { &w };
        fo_metrics_src_t src = { ws, 1, 0, 0, 0, 1, "test", 0, 0, 0, NULL, NULL };
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        return fo_metrics_render(&src, body) == FO_OK ? 200 : 500;
    }
    if (!strcmp(path, "/big")) {       /* larger than socket buffers: EPOLLOUT path */
        for (int i = 0; i < 4096; i++) {
            char line[1024];
            memset(line, 'a' + i % 26, sizeof line - 1);
            line[sizeof line - 1] = '\n';
            if (fo_buf_append(body, line, sizeof line) != FO_OK)
                return 500;
        }
        return 200;
    }
    if (!strcmp(path, "/bogus-status"))
        return 42;
    return 404;
}

/* The main loop in miniature: wait on fo_http_fd(), then fo_http_poll(). */
static void *poller(void *arg)
{
    server_t *sv = arg;
    struct pollfd p = { .fd = fo_http_fd(sv->h), .events = POLLIN };
    while (!atomic_load(&sv->stop)) {
        if (poll(&p, 1, 20) > 0)
            fo_http_poll(sv->h);
    }
    return NULL;
}

static int server_up(void **state)
{
    server_t *sv = calloc(1, sizeof *sv);
    if (fo_http_create("127.0.0.1:0", handler, sv, &sv->h) != FO_OK || !sv->h)
        return -1;
    fo_http_set_timeout(sv->h, 300);
    if (pthread_create(&sv->thread, NULL, poller, sv) != 0)
        return -1;
    *state = sv;
    return 0;
}

static int server_down(void **state)
{
    server_t *sv = *state;
    atomic_store(&sv->stop, 1);
    pthread_join(sv->thread, NULL);
    fo_http_destroy(sv->h);
    free(sv);
    return 0;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = { 5, 0 };     /* a wedged server fails the test, never hangs it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            break;     /* the server may close first (431): what it said still counts */
        p += w;
        n -= (size_t)w;
    }
}

/* Read the whole response (until EOF). Returns malloc'd text, its length
 * in *len; NULL on a reset when `may_fail`, else a reset fails the test. */
static char *read_all(int fd, size_t *len, int may_fail)
{
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            s = realloc(s, cap + 1);
        }
        ssize_t r = recv(fd, s + n, cap - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && may_fail && errno == ECONNRESET) {
            free(s);
            return NULL;
        }
        if (r < 0)
            fail_msg("recv: %s (server wedged?)", strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    s[n] = '\0';
    *len = n;
    return s;
}

/* One raw request; returns the status, the whole response in *resp (free
 * it). With may_fail, a reset gives -1 instead of failing the test. */
static int request_ex(server_t *sv, const char *raw, char **resp, size_t *len, int may_fail)
{
    int fd = connect_to(fo_http_port(sv->h));
    send_all(fd, raw, strlen(raw));
    size_t n;
    char *s = read_all(fd, &n, may_fail);
    close(fd);
    if (!s)
        return -1;
    int status = 0;
    sscanf(s, "HTTP/1.1 %d", &status);
    if (resp)
        *resp = s;
    else
        free(s);
    if (len)
        *len = n;
    return status;
}

static int request(server_t *sv, const char *raw, char **resp, size_t *len)
{
    return request_ex(sv, raw, resp, len, 0);
}

static size_t content_length(const char *resp)
{
    const char *p = strstr(resp, "Content-Length: ");
    assert_non_null(p);
    return (size_t)strtoul(p + 16, NULL, 10);
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    assert_non_null(p);
    return p + 4;
}

static void test_http_routes(void **state)
{
    server_t *sv = *state;
    assert_true(fo_http_port(sv->h) > 0);
    char *r;
    size_t n;

    assert_int_equal(request(sv, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &r, &n), 200);
    assert_non_null(strstr(r, "Connection: close\r\n"));
    assert_string_equal(body_of(r), "ok\n");
    assert_int_equal(content_length(r), 3);
    free(r);

    assert_int_equal(request(sv, "GET /metrics?x=1 HTTP/1.0\r\n\r\n", &r, &n), 200);
    assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_non_null(strstr(r, "\nfanout_build_info{version=\"test\"} 1\n"));
    assert_int_equal(content_length(r), strlen(body_of(r)));
    free(r);

    assert_int_equal(request(sv, "GET /nope HTTP/1.1\r\n\r\n", &r, &n), 404);
    assert_string_equal(body_of(r), "Not Found\n");
    free(r);

    assert_int_equal(request(sv, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r, &n), 405);
    assert_non_null(strstr(r, "Allow: GET, HEAD\r\n"));
    free(r);

    /* HEAD: the GET's headers, no body */
    assert_int_equal(request(sv, "HEAD /metrics HTTP/1.1\r\n\r\n", &r, &n), 200);
    assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_true(content_length(r) > 0);
    assert_string_equal(body_of(r), "");
    free(r);

    assert_int_equal(request(sv, "GET /bogus-status HTTP/1.1\r\n\r\n", NULL, NULL), 500);
    assert_int_equal(request(sv, "garbage\r\n\r\n", NULL, NULL), 400);
    assert_int_equal(request(sv, "GET nopath HTTP/1.1\r\n\r\n", NULL, NULL), 400);
    assert_int_equal(request(sv, "GET / SPDY/3\r\n\r\n", NULL, NULL), 400);
    assert_int_equal(request(sv, "GET /healthz HTTP/1.1\n\n", NULL, NULL), 200);   /* bare LF */
}

/* The Authorization header reaches the handler (any case, blanks trimmed);
 * a 401 says how to authenticate. */
static void test_http_authorization(void **state)
{
    server_t *sv = *state;
    char *r;
    size_t n;
    assert_int_equal(request(sv, "GET /auth HTTP/1.1\r\nHost: a\r\nauthorization:   Bearer s3cret  \r\n\r\n",
                             &r, &n), 200);
    assert_non_null(strstr(r, "HTTP/1.1 200 OK"));
    assert_string_equal(body_of(r), "Bearer s3cret");
    free(r);
    assert_int_equal(request(sv, "GET /auth HTTP/1.0\r\nX-Authorization: no\r\n\r\n", &r, &n), 401);
    assert_non_null(strstr(r, "HTTP/1.1 401 Unauthorized"));
    assert_non_null(strstr(r, "WWW-Authenticate: Bearer realm=\"fanout\""));
    assert_string_equal(body_of(r), "(none)");
    free(r);
}

static void test_http_split_request(void **state)
{
    server_t *sv = *state;
    int fd = connect_to(fo_http_port(sv->h));
    const char *parts[] = { "GE", "T /hea", "lthz HTTP/1.1\r", "\nHost: a\r\n\r", "\n" };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        send_all(fd, parts[i], strlen(parts[i]));
        usleep(2000);   /* let the server see each piece on its own (not a wait for a condition) */
    }
    size_t n;
    char *r = read_all(fd, &n, 0);
    close(fd);
    assert_string_equal(body_of(r), "ok\n");
    free(r);
}

static void test_http_too_large(void **state)
{
    server_t *sv = *state;
    size_t big = FO_HTTP_MAX_REQUEST + 2000;
    char *raw = malloc(big + 1);
    memcpy(raw, "GET /healthz HTTP/1.1\r\nX-Pad: ", 30);
    memset(raw + 30, 'p', big - 30);
    raw[big] = '\0';
    assert_int_equal(request(sv, raw, NULL, NULL), 431);
    /* exactly the limit without the blank line: also 431 */
    raw[FO_HTTP_MAX_REQUEST] = '\0';
    assert_int_equal(request(sv, raw, NULL, NULL), 431);
    free(raw);
}

static void test_http_big_response(void **state)
{
    server_t *sv = *state;
    char *r;
    size_t n;
    assert_int_equal(request(sv, "GET /big HTTP/1.1\r\n\r\n", &r, &n), 200);
    assert_int_equal(content_length(r), 4096 * 1024);
    assert_int_equal(strlen(body_of(r)), 4096 * 1024);
    free(r);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void test_http_silent_client(void **state)
{
    server_t *sv = *state;
    /* a client that connects and says nothing (and one that stops mid-line) ... */
    int quiet = connect_to(fo_http_port(sv->h));
    int half = connect_to(fo_http_port(sv->h));
    send_all(half, "GET /hea", 8);
    /* ... does not hold up anyone else */
    for (int i = 0; i < 5; i++)
        assert_int_equal(request(sv, "GET /healthz HTTP/1.1\r\n\r\n", NULL, NULL), 200);
    /* and is closed at its deadline (300 ms here) without any other traffic:
     * recv returns 0 (EOF) well before the 5 s receive timeout */
    uint64_t t0 = mono_ms();
    char c;
    assert_int_equal(recv(quiet, &c, 1, 0), 0);
    assert_int_equal(recv(half, &c, 1, 0), 0);
    assert_true(mono_ms() - t0 < 3000);
    close(quiet);
    close(half);
}

static void test_http_many_clients(void **state)
{
    server_t *sv = *state;
    /* more idle connections than the server keeps, all from one address:
     * each new one takes the place of the oldest still silent, so a real
     * request is answered at once, and the oldest were closed */
    int fds[FO_HTTP_MAX_CONNS + 4];
    int n = (int)(sizeof fds / sizeof fds[0]);
    for (int i = 0; i < n; i++)
        fds[i] = connect_to(fo_http_port(sv->h));
    char *r;
    size_t len;
    assert_int_equal(request(sv, "GET /healthz HTTP/1.1\r\n\r\n", &r, &len), 200);
    free(r);
    r = read_all(fds[0], &len, 0);          /* the oldest: closed, no answer */
    assert_int_equal(len, 0);
    free(r);
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

static void test_http_create_errors(void **state)
{
    (void)state;
    fo_http_t *h = (fo_http_t *)1;
    assert_int_equal(fo_http_create("off", handler, NULL, &h), FO_OK);
    assert_null(h);
    assert_int_equal(fo_http_fd(NULL), -1);
    fo_http_poll(NULL);
    fo_http_destroy(NULL);
    assert_int_equal(fo_http_create("nonsense", handler, NULL, &h), FO_ERR_ADDR);
    assert_null(h);
    assert_int_equal(fo_http_create("127.0.0.1:0", NULL, NULL, &h), FO_ERR_INVAL);
    /* a port in use */
    fo_http_t *a = NULL;
    assert_int_equal(fo_http_create("127.0.0.1:0", handler, NULL, &a), FO_OK);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", fo_http_port(a));
    assert_int_equal(fo_http_create(addr, handler, NULL, &h), FO_ERR_IO);
    assert_null(h);
    fo_http_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_routes, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_http_authorization, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_http_split_request, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_http_too_large, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_http_big_response, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_http_silent_client, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_http_many_clients, server_up, server_down),
        cmocka_unit_test(test_http_create_errors),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
