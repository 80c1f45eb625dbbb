/* test_log.c -- line format, levels, escaping, truncation, rate limiting,
 * whole lines under many threads (run it under TSan too), connection ids
 * and the JSON format. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>
#include "../../broker/log.h"

static int logfd = -1;

static int setup(void **state)
{
    (void)state;
    logfd = memfd_create("fanout-log", 0);
    /* O_APPEND: concurrent writers must not overwrite each other's lines */
    if (logfd < 0 || fcntl(logfd, F_SETFL, O_APPEND) != 0)
        return -1;
    fo_log_set_fd(logfd);
    fo_log_set_level(FO_LOG_INFO);
    fo_log_set_worker(-1);
    fo_log_set_clock(NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fo_log_set_fd(2);
    fo_log_set_clock(NULL);
    fo_log_set_level(FO_LOG_INFO);
    close(logfd);
    return 0;
}

/* Everything logged so far, NUL-terminated (caller frees); rewinds. */
static char *take(size_t *len_out)
{
    off_t len = lseek(logfd, 0, SEEK_END);
    char *s = malloc((size_t)len + 1);
    assert_int_equal(pread(logfd, s, (size_t)len, 0), len);
    s[len] = '\0';
    assert_int_equal(ftruncate(logfd, 0), 0);
    lseek(logfd, 0, SEEK_SET);
    if (len_out)
        *len_out = (size_t)len;
    return s;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_format(void **state)
{
    (void)state;
    fo_log(FO_LOG_INFO, 42, "connection from %s:%d", "127.0.0.1", 51234);
    char *s = take(NULL);
    /* 2026-11-23T19:22:56.123Z INFO  main c42 connection from 127.0.0.1:51234\n */
    assert_int_equal(strlen(s), 24 + 1 + 5 + 1 + 4 + 1 + 3 + 1 + strlen("connection from 127.0.0.1:51234") + 1);
    assert_true(s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' && s[16] == ':' &&
                s[19] == '.' && s[23] == 'Z' && s[24] == ' ');
    assert_string_equal(s + 25, "INFO  main c42 connection from 127.0.0.1:51234\n");
    free(s);

    fo_log_set_worker(3);
    fo_warn(0, "hello");
    fo_error(7, "bad");
    fo_log_set_worker(-1);
    s = take(NULL);
    assert_non_null(strstr(s, "Z WARN  w3 - hello\n"));
    assert_non_null(strstr(s, "Z ERROR w3 c7 bad\n"));
    free(s);
}

static void test_levels(void **state)
{
    (void)state;
    assert_int_equal(fo_log_get_level(), FO_LOG_INFO);
    assert_true(fo_log_enabled(FO_LOG_ERROR));
    assert_true(fo_log_enabled(FO_LOG_INFO));
    assert_false(fo_log_enabled(FO_LOG_DEBUG));
    fo_debug(1, "hidden");
    fo_info(1, "shown");
    fo_log_set_level(FO_LOG_ERROR);
    fo_warn(1, "hidden");
    fo_error(1, "shown");
    fo_log_set_level(FO_LOG_DEBUG);
    fo_debug(1, "shown");
    fo_log_set_level(FO_LOG_INFO);
    char *s = take(NULL);
    assert_int_equal(count_lines(s), 3);
    assert_null(strstr(s, "hidden"));
    free(s);
}

static void test_escaping_and_truncation(void **state)
{
    (void)state;
    fo_info(0, "name=%s", "evil\nFAKE LINE\r\x1b[31m");
    char *s = take(NULL);
    assert_int_equal(count_lines(s), 1);
    assert_non_null(strstr(s, "name=evil\\x0aFAKE LINE\\x0d\\x1b[31m\n"));
    free(s);

    char *big = malloc(10000);
    memset(big, 'a', 9999);
    big[9999] = '\0';
    fo_info(0, "%s", big);
    size_t len;
    s = take(&len);
    assert_true(len <= FO_LOG_LINE_MAX);
    assert_int_equal(count_lines(s), 1);
    assert_memory_equal(s + len - 4, "...\n", 4);
    free(s);

    /* escapes near the limit never overflow */
    memset(big, '\n', 9999);
    fo_info(0, "%s", big);
    s = take(&len);
    assert_true(len <= FO_LOG_LINE_MAX);
    assert_int_equal(count_lines(s), 1);
    free(s);
    free(big);
}

static int64_t fake_now;
static int64_t fake_clock(void) { return fake_now; }

/* One call site, as a hot error path would have. */
static void bad_frame(int i)
{
    FO_LOG_RATE(FO_LOG_WARN, 9, "bad frame %d", i);
}

static void test_rate_limit(void **state)
{
    (void)state;
    fo_log_set_clock(fake_clock);
    fake_now = 100;
    for (int i = 0; i < 50; i++)
        bad_frame(i);
    char *s = take(NULL);
    assert_int_equal(count_lines(s), FO_LOG_BURST);
    assert_non_null(strstr(s, "bad frame 0\n"));
    assert_null(strstr(s, "bad frame 10\n"));
    free(s);

    fake_now = 101;     /* next second: a summary, then lines again */
    bad_frame(99);
    s = take(NULL);
    assert_int_equal(count_lines(s), 2);
    assert_non_null(strstr(s, "40 similar lines suppressed (\"bad frame %d\")"));
    assert_non_null(strstr(s, "bad frame 99\n"));
    free(s);

    fake_now = 102;     /* nothing suppressed: no summary */
    bad_frame(100);
    s = take(NULL);
    assert_int_equal(count_lines(s), 1);
    free(s);

    /* a disabled level neither logs nor counts */
    for (int i = 0; i < 50; i++)
        FO_LOG_RATE(FO_LOG_DEBUG, 0, "quiet");
    s = take(NULL);
    assert_int_equal(count_lines(s), 0);
    free(s);
    fo_log_set_clock(NULL);
}

#define THREADS 4
#define LINES   500

static fo_log_limit_t shared_lim;

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    fo_log_set_worker(id);
    for (int i = 0; i < LINES; i++)
        fo_info((uint64_t)i + 1, "thread %d line %d %s", id, i, "payload-payload-payload");
    for (int i = 0; i < LINES; i++)
        fo_log_limited(&shared_lim, FO_LOG_INFO, 0, "limited %d", id);
    return NULL;
}

static void test_threads_whole_lines(void **state)
{
    (void)state;
    pthread_t t[THREADS];
    fake_now = 500;
    fo_log_set_clock(fake_clock);    /* one window for the whole run */
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    fo_log_set_clock(NULL);
    char *s = take(NULL);
    int plain = 0, limited = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        int w, id, n;
        unsigned long long conn;
        if (sscanf(line + 25, "INFO  w%d c%llu thread %d line %d payload-payload-payload", &w, &conn, &id, &n) == 4) {
            assert_int_equal(w, id);
            assert_true(conn == (unsigned long long)n + 1);
            plain++;
        } else if (strstr(line, " - limited ")) {
            limited++;
        } else {
            fail_msg("torn or unknown line: %s", line);
        }
    }
    assert_int_equal(plain, THREADS * LINES);
    /* one window: the burst, plus at most one line per other thread that
     * raced the window's start (log.c's documented slack) */
    assert_true(limited >= FO_LOG_BURST && limited <= FO_LOG_BURST + THREADS - 1);
    free(s);
}

/* Connection ids a person can read: the sequence part of the id. */
static void test_conn_ids(void **state)
{
    (void)state;
    char b[FO_LOG_CONN_ID_MAX];
    assert_string_equal(fo_log_conn_id(0, b), "-");
    assert_string_equal(fo_log_conn_id(42, b), "c42");            /* no sequence part */
    /* worker.c's layout: seq << 32 | slot << 8 | worker */
    assert_string_equal(fo_log_conn_id((1ull << 32) | (0u << 8) | 0, b), "c1");
    assert_string_equal(fo_log_conn_id((12ull << 32) | (7u << 8) | 3, b), "c12");
    assert_string_equal(fo_log_conn_id(UINT64_MAX, b), "c4294967295");
    fo_log_set_worker(1);
    fo_info((2ull << 32) | (5u << 8) | 1, "hello");
    fo_log_set_worker(-1);
    char *s = take(NULL);
    assert_non_null(strstr(s, "Z INFO  w1 c2 hello\n"));
    free(s);
    assert_string_equal(FO_PLURAL(1), "");
    assert_string_equal(FO_PLURAL(0), "s");
    assert_string_equal(FO_PLURAL(2), "s");
}

/* --log-format json: one object per line, the same fields, valid JSON
 * whatever the message holds. */
static void test_json(void **state)
{
    (void)state;
    fo_log_set_format(FO_LOG_JSON);
    fo_log_set_worker(2);
    fo_warn((3ull << 32) | 2, "peer said \"%s\" \\ then\n%s", "hi", "\x01\x7f caf\xc3\xa9 bad\xff\xc3");
    fo_log_set_worker(-1);
    fo_info(0, "plain");
    char *s = take(NULL);
    char *nl = strchr(s, '\n');
    assert_non_null(nl);
    *nl = '\0';
    /* {"ts":"2026-11-23T19:22:56.123Z","level":"warn",...} */
    assert_int_equal(strncmp(s, "{\"ts\":\"", 7), 0);
    assert_true(s[11] == '-' && s[14] == '-' && s[17] == 'T' && s[30] == 'Z' && s[31] == '"');
    assert_string_equal(s + 32, ",\"level\":\"warn\",\"worker\":\"w2\",\"conn\":\"c3\",\"msg\":"
                        "\"peer said \\\"hi\\\" \\\\ then\\n\\u0001\\u007f caf\xc3\xa9 bad\\\\xff\\\\xc3\"}");
    assert_non_null(strstr(nl + 1, "\"level\":\"info\",\"worker\":\"main\",\"conn\":null,\"msg\":\"plain\"}\n"));
    free(s);

    /* cut long messages still close the object */
    char *big = malloc(10000);
    memset(big, '"', 9999);
    big[9999] = '\0';
    fo_info(0, "%s", big);
    size_t len;
    s = take(&len);
    assert_true(len <= FO_LOG_LINE_MAX);
    assert_int_equal(count_lines(s), 1);
    assert_memory_equal(s + len - 6, "...\"}\n", 6);
    free(s);
    free(big);
    fo_log_set_format(FO_LOG_TEXT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping_and_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_whole_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
