/* bench_idle.c -- memory per idle subscribed connection, and how many
 * concurrent connections a broker holds.
 *
 *   build/tests/bench/bench_idle [N] [--json]      (default N = 10000)
 *
 * Starts its own fanoutd (harness.h) on free loopback ports, opens N
 * connections that each say HELLO and SUBSCRIBE (to one of 100 topics),
 * waits until the broker's metrics show N connections and N subscriptions,
 * and reports the growth of the broker's resident memory divided by N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "harness.h"

int main(int argc, char **argv)
{
    int n = 10000, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (atoi(argv[i]) > 0)
            n = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: bench_idle [N] [--json]\n");
            return 2;
        }
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 64) {
        fprintf(stderr, "bench_idle: open-file limit %llu is too low for %d connections\n",
                (unsigned long long)rl.rlim_cur, n);
        return 1;
    }
    fo_tb_t b;
    const char *args[] = { "--log-level", "warn", "--max-conns", "1000000", NULL };
    if (fo_tb_start(&b, args)) {
        fprintf(stderr, "bench_idle: cannot start fanoutd\n");
        return 1;
    }
    long before = fo_tb_rss_kib(b.pid);
    fo_tc_t *c = calloc((size_t)n, sizeof *c);
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        char topic[32];
        snprintf(topic, sizeof topic, "idle.t%d", i % 100);
        ok = fo_tc_open(&c[i], b.port, "idle") == 0 && fo_tc_subscribe(&c[i], 1, topic, NULL) == 0;
        if (ok) {  /* the client side needs no buffers while idle */
            fo_decoder_destroy(&c[i].dec);
            fo_arena_destroy(&c[i].arena);
            ok = fo_arena_init(&c[i].arena, 64, 0) == FO_OK;
        }
    }
    ok = ok && fo_tb_wait_metric(&b, "fanout_subscriptions", n, 30000) == 0;
    long after = fo_tb_rss_kib(b.pid);
    double per = (double)(after - before) * 1024.0 / n;
    if (!ok)
        fprintf(stderr, "bench_idle: could not open %d subscribed connections\n", n);
    else if (json)
        printf("{\"connections\":%d,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,"
               "\"bytes_per_idle_connection\":%.0f}\n", n, before, after, per);
    else
        printf("%d idle subscribed connections: broker RSS %ld KiB -> %ld KiB, %.0f bytes each\n",
               n, before, after, per);
    for (int i = 0; i < n; i++)
        if (c[i].fd > 0)
            fo_tc_close(&c[i]);
    free(c);
    fo_tb_stop(&b);
    return ok ? 0 : 1;
}
