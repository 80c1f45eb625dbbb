/* test_metrics.c -- the Prometheus exposition (broker/metrics.c): sums
 * over workers, per-worker series, error codes, families announced by
 * HELP and TYPE, escaping, process_* from /proc. The HTTP server is in
 * test_http.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "buf.h"
#include "../../broker/metrics.h"

static char *render(const fo_metrics_src_t *src)
{
    fo_buf_t b = FO_BUF_INIT;
    assert_int_equal(fo_metrics_render(src, &b), FO_OK);
    char *s = malloc(fo_buf_len(&b) + 1);
    memcpy(s, fo_buf_head(&b), fo_buf_len(&b));
    s[fo_buf_len(&b)] = '\0';
    fo_buf_free(&b);
    return s;
}

static void has_line(const char *text, const char *line)
{
    char want[256];
    snprintf(want, sizeof want, "\n%s\n", line);
    if (!strstr(text, want))
        fail_msg("missing line \"%s\" in:\n%s", line, text);
}

static void test_render(void **state)
{
    (void)state;
    static fo_stats_t w0, w1;
    memset(&w0, 0, sizeof w0);
    memset(&w1, 0, sizeof w1);
    FO_STAT_ADD(&w0, messages_in, 5);
    FO_STAT_ADD(&w1, messages_in, 7);
    FO_STAT_ADD(&w0, connections, 3);
    FO_STAT_ADD(&w1, connections, 2);
    FO_STAT_SUB(&w1, subscriptions, 1);      /* gauges may go "negative" per worker */
    FO_STAT_ADD(&w0, subscriptions, 4);
    FO_STAT_ADD(&w0, busy_ns, 1500000000u);
    FO_STAT_ADD(&w1, busy_ns, 250);
    atomic_store(&w0.errors_sent[1], 2);     /* ERR_FRAME_SIZE */
    atomic_store(&w1.errors_sent[1], 1);
    atomic_store(&w1.errors_sent[30], 9);    /* a code the schema does not name */
    const fo_stats_t *ws[] = { &w0, &w1 };
    fo_metrics_src_t src = { ws, 2, 11, 4096, 1u << 30, 77, "1.2.3", 0, 0, 0, NULL, NULL };
    char *s = render(&src);

    has_line(s, "# HELP fanout_messages_in_total Messages published");
    has_line(s, "# TYPE fanout_messages_in_total counter");
    has_line(s, "fanout_messages_in_total 12");
    has_line(s, "# TYPE fanout_connections gauge");
    has_line(s, "fanout_connections 5");
    has_line(s, "fanout_subscriptions 3");
    /* kept as seconds per worker only (promtool: no "ns" in a name) */
    assert_null(strstr(s, "busy_ns"));
    has_line(s, "fanout_worker_busy_seconds_total{worker=\"0\"} 1.500000000");
    has_line(s, "fanout_workers 2");
    has_line(s, "# TYPE fanout_worker_busy_seconds_total counter");
    has_line(s, "fanout_worker_busy_seconds_total{worker=\"0\"} 1.500000000");
    has_line(s, "fanout_worker_busy_seconds_total{worker=\"1\"} 0.000000250");
    has_line(s, "fanout_worker_connections{worker=\"0\"} 3");
    has_line(s, "fanout_worker_connections{worker=\"1\"} 2");
    has_line(s, "# TYPE fanout_errors_sent_total counter");
    has_line(s, "fanout_errors_sent_total{code=\"frame_size\"} 3");
    has_line(s, "fanout_errors_sent_total{code=\"unknown\"} 0");
    has_line(s, "fanout_errors_sent_total{code=\"slow_consumer\"} 0");
    has_line(s, "fanout_errors_sent_total{code=\"bad_request\"} 0");
    has_line(s, "fanout_errors_sent_total{code=\"30\"} 9");
    assert_null(strstr(s, "code=\"31\""));
    has_line(s, "fanout_topics 11");
    has_line(s, "fanout_memory_bytes 4096");
    has_line(s, "fanout_memory_limit_bytes 1073741824");
    has_line(s, "fanout_uptime_seconds 77");
    has_line(s, "fanout_build_info{version=\"1.2.3\"} 1");
    assert_null(strstr(s, "fanout_users"));            /* no users configured */
    fo_buf_t more = FO_BUF_INIT;
    fo_metrics_auth_t auth = { .users = 3, .verifications = 9, .inflight = 2, .cache_entries = 5 };
    src.auth = &auth;
    assert_int_equal(fo_metrics_render(&src, &more), FO_OK);
    assert_int_equal(fo_buf_append(&more, "", 1), FO_OK);
    const char *m = (const char *)fo_buf_head(&more);
    assert_non_null(strstr(m, "\nfanout_users 3\n"));
    assert_non_null(strstr(m, "\n# TYPE fanout_auth_verifications_total counter\nfanout_auth_verifications_total 9\n"));
    assert_non_null(strstr(m, "\nfanout_auth_inflight 2\n"));
    assert_non_null(strstr(m, "\nfanout_auth_cache_entries 5\n"));
    fo_buf_free(&more);

    /* every sample belongs to a family announced by # HELP and # TYPE just
     * before it, and every stats field is there */
    char family[128] = "";
    int samples = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "# HELP ", 7)) {
            sscanf(line + 7, "%127s", family);
            continue;
        }
        if (!strncmp(line, "# TYPE ", 7)) {
            char name[128], type[16];
            assert_int_equal(sscanf(line + 7, "%127s %15s", name, type), 2);
            assert_string_equal(name, family);
            assert_true(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
                        !strcmp(type, "histogram"));
            continue;
        }
        size_t fl = strlen(family);
        const char *rest = line + fl;
        if (!strncmp(rest, "_bucket", 7))            /* a histogram's series */
            rest += 7;
        else if (!strncmp(rest, "_sum", 4))
            rest += 4;
        else if (!strncmp(rest, "_count", 6))
            rest += 6;
        assert_true(fl > 0 && !strncmp(line, family, fl) && (*rest == ' ' || *rest == '{'));
        samples++;
    }
#define COUNT_(f, k, h) + 1
    assert_true(samples > 0 FO_STATS(COUNT_));
#undef COUNT_
    free(s);
}

static void test_render_edges(void **state)
{
    (void)state;
    fo_metrics_src_t src = { NULL, 0, 0, 0, 0, 0, "a\"b\\c\nd", 0, 0, 0, NULL, NULL };
    char *s = render(&src);
    has_line(s, "fanout_build_info{version=\"a\\\"b\\\\c\\nd\"} 1");
    has_line(s, "fanout_messages_in_total 0");
    free(s);
    fo_buf_t b = FO_BUF_INIT;
    assert_int_equal(fo_metrics_render(NULL, &b), FO_ERR_INVAL);
    fo_metrics_src_t bad = { NULL, 2, 0, 0, 0, 0, NULL, 0, 0, 0, NULL, NULL };
    assert_int_equal(fo_metrics_render(&bad, &b), FO_ERR_INVAL);
    fo_buf_free(&b);
}

/* process_* from /proc/self, under the names and types client libraries
 * use (client_golang's process collector). */
static void test_process(void **state)
{
    (void)state;
    fo_proc_stats_t p;
    assert_int_equal(fo_proc_stats_read(&p), FO_OK);
    assert_true(p.resident_bytes > 100 * 1024);
    assert_true(p.virtual_bytes >= p.resident_bytes);
    assert_true(p.open_fds >= 3 && p.open_fds < p.max_fds);
    assert_true(p.cpu_seconds >= 0 && p.cpu_seconds < 3600);
    double now = (double)time(NULL);
    if (p.start_time_s < now - 3600 || p.start_time_s > now + 2)
        fail_msg("start time %.2f is not within the last hour (now %.0f)", p.start_time_s, now);
    int fd = dup(0);                              /* one more descriptor is seen */
    fo_proc_stats_t q;
    assert_int_equal(fo_proc_stats_read(&q), FO_OK);
    assert_true(q.open_fds == p.open_fds + 1);
    close(fd);

    fo_proc_stats_t fixed = { 1.5, 4096, 8192, 7, 1024, 1700000000.25 };
    fo_metrics_src_t src = { NULL, 0, 0, 0, 0, 0, "x", 0, 0, 0, NULL, &fixed };
    char *s = render(&src);
    has_line(s, "# TYPE process_cpu_seconds_total counter");
    has_line(s, "process_cpu_seconds_total 1.50");
    has_line(s, "# TYPE process_resident_memory_bytes gauge");
    has_line(s, "process_resident_memory_bytes 4096");
    has_line(s, "process_virtual_memory_bytes 8192");
    has_line(s, "process_open_fds 7");
    has_line(s, "process_max_fds 1024");
    has_line(s, "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.");
    has_line(s, "process_start_time_seconds 1700000000.25");
    has_line(s, "fanout_build_info{version=\"x\"} 1");
    free(s);
    src.proc = NULL;                              /* left out when /proc could not be read */
    s = render(&src);
    assert_null(strstr(s, "process_"));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_render_edges),
        cmocka_unit_test(test_process),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
