/* bench_rr.c -- `fanout bench --request`: request/reply round trips.
 *
 * S responders, each on its own connection, in one queue group on the
 * topic bench.<run id>.rr, answer every request with its payload
 * (fo_respond from the message callback, on their reader threads). P
 * requesters, each on its own connection and thread, send requests one
 * after the other (closed loop: the next leaves when the reply to the
 * previous one came, so P is the number of requests in flight) with
 * fo_request, and record each round trip -- from just before the request
 * is sent to the moment fo_request returns with the reply -- in an HDR
 * histogram (hist.c) per requester, merged at the end. N requests in
 * all are split over the requesters, or they run for --duration seconds.
 * A request that fails (timeout: 5 s) is counted, not retried.
 *
 * Reported: requests, replies, errors, seconds (from the common start to
 * the last requester's end), round_trips_per_s = replies / seconds, and
 * the latency percentiles.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "clock.h"
#include "hist.h"

typedef struct rr_bench rr_bench_t;

typedef struct requester {
    rr_bench_t *b;
    fo_client_t *c;
    pthread_t th;
    uint64_t n;                    /* requests to send; 0 = until the deadline */
    uint64_t ok, failed;
    fo_err_t first_err;
    char errtext[256];
    fo_hist_t hist;                /* this thread's only */
    uint64_t done_ns;
} requester_t;

struct rr_bench {
    const cli_servers_t *server;
    char topic[64];
    uint64_t size;
    uint64_t stop_ns;              /* --duration: the deadline, else 0 */
    pthread_barrier_t go;
    uint64_t t0;
};

typedef struct responder {
    fo_client_t *c;
    _Atomic uint64_t answered, failed;
} responder_t;

static void on_request(void *ud, fo_sub_t *s, const fo_msg_t *m)
{
    (void)s;
    responder_t *r = ud;
    if (fo_respond(r->c, m, m->payload, m->payload_len, NULL) == FO_OK)
        atomic_fetch_add_explicit(&r->answered, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&r->failed, 1, memory_order_relaxed);
}

static void *requester_main(void *arg)
{
    requester_t *q = arg;
    rr_bench_t *b = q->b;
    char *buf = calloc(1, b->size ? b->size : 1);
    pthread_barrier_wait(&b->go);
    for (uint64_t k = 0; buf && (!q->n || k < q->n); k++) {
        uint64_t t = fo_clock_ns();
        if (b->stop_ns && t >= b->stop_ns)
            break;
        memcpy(buf, &k, b->size < 8 ? b->size : 8);
        fo_reply_t *r;
        fo_err_t err = fo_request(q->c, b->topic, buf, b->size, NULL, 5000, &r);
        if (err) {
            if (!q->failed++) {
                q->first_err = err;
                cli_why(q->c, err, q->errtext);
            }
            if (err != FO_ERR_TIMEOUT)
                break;             /* the connection is gone: no use going on */
            continue;
        }
        fo_hist_record(&q->hist, fo_clock_ns() - t);
        q->ok++;
        fo_reply_free(r);
    }
    if (!buf) {
        q->failed++;
        q->first_err = FO_ERR_NOMEM;
        snprintf(q->errtext, sizeof q->errtext, "out of memory");
    }
    q->done_ns = fo_clock_ns();
    free(buf);
    return NULL;
}

static void report(uint64_t P, uint64_t S, uint64_t size, uint64_t ok, uint64_t failed,
                   double secs, const fo_hist_t *h, int json)
{
    double rps = secs > 0 ? (double)ok / secs : 0;
    double us[6] = { fo_hist_percentile(h, 50) / 1e3, fo_hist_percentile(h, 90) / 1e3,
                     fo_hist_percentile(h, 99) / 1e3, fo_hist_percentile(h, 99.9) / 1e3,
                     h->n ? h->max / 1e3 : 0, fo_hist_mean(h) / 1e3 };
    if (json) {
        printf("{\"mode\":\"request\",\"requesters\":%llu,\"responders\":%llu,\"size\":%llu,"
               "\"requests\":%llu,\"replies\":%llu,\"errors\":%llu,\"seconds\":%.6f,"
               "\"round_trips_per_s\":%.0f,\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,"
               "\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}}\n",
               (unsigned long long)P, (unsigned long long)S, (unsigned long long)size,
               (unsigned long long)(ok + failed), (unsigned long long)ok,
               (unsigned long long)failed, secs, rps, us[0], us[1], us[2], us[3], us[4], us[5]);
        return;
    }
    printf("fanout bench --request: %llu requester%s -> %llu responder%s (one queue group), "
           "%llu B requests, closed loop\n",
           (unsigned long long)P, P == 1 ? "" : "s", (unsigned long long)S, S == 1 ? "" : "s",
           (unsigned long long)size);
    printf("  %-12s %12llu of %llu in %.3f s  = %12.0f round trips/s\n", "replies",
           (unsigned long long)ok, (unsigned long long)(ok + failed), secs, rps);
    printf("  %-12s %12llu (timeouts or a lost connection)\n", "errors",
           (unsigned long long)failed);
    printf("  %-12s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f)\n",
           "round trip us", us[0], us[1], us[2], us[3], us[4], us[5]);
}

/* The responders subscribed (ACKed) in their queue group. */
static int start_responders(rr_bench_t *b, responder_t *rs, uint64_t S)
{
    char why[256];
    for (uint64_t i = 0; i < S; i++) {
        if (!(rs[i].c = cli_connect("bench", b->server, 0, NULL, NULL, NULL)))
            return CLI_RUNTIME;
        fo_sub_opts_t so;
        fo_sub_opts_init(&so);
        so.cb = on_request;
        so.ud = &rs[i];
        so.queue = "bench-responders";
        fo_sub_t *s;
        fo_err_t err = fo_subscribe(rs[i].c, b->topic, &so, &s);
        if (err)
            return cli_fail("bench", CLI_RUNTIME, "subscribe to '%s' failed: %s", b->topic,
                            cli_why(rs[i].c, err, why));
    }
    return CLI_OK;
}

/* Start the requesters together, wait for them all; their tallies. */
static int run_requesters(rr_bench_t *b, requester_t *qs, uint64_t P, uint64_t *ok,
                          uint64_t *failed, fo_hist_t *all, uint64_t *end)
{
    pthread_barrier_init(&b->go, NULL, (unsigned)P + 1);
    uint64_t started = 0;
    for (; started < P; started++)
        if (pthread_create(&qs[started].th, NULL, requester_main, &qs[started]))
            break;
    if (started < P) {
        cli_fail("bench", CLI_RUNTIME, "cannot start requester threads");
        exit(CLI_RUNTIME);         /* the started ones wait at the barrier */
    }
    b->t0 = fo_clock_ns();
    pthread_barrier_wait(&b->go);
    int rc = CLI_OK;
    *ok = *failed = 0;
    *end = b->t0;
    fo_hist_init(all);
    for (uint64_t i = 0; i < P; i++) {
        pthread_join(qs[i].th, NULL);
        *ok += qs[i].ok;
        *failed += qs[i].failed;
        fo_hist_merge(all, &qs[i].hist);
        if (qs[i].done_ns > *end)
            *end = qs[i].done_ns;
        if (qs[i].failed && qs[i].first_err != FO_ERR_TIMEOUT && rc == CLI_OK)
            rc = cli_fail("bench", CLI_RUNTIME, "request failed: %s", qs[i].errtext);
    }
    pthread_barrier_destroy(&b->go);
    return rc;
}

int cli_bench_request(const cli_servers_t *server, uint64_t P, uint64_t S, uint64_t requests,
                      uint64_t size, double duration, int json)
{
    rr_bench_t b = { .server = server, .size = size };
    snprintf(b.topic, sizeof b.topic, "bench.%08x.rr",
             (unsigned)getpid() ^ (unsigned)fo_clock_ns());
    responder_t *rs = calloc(S, sizeof *rs);
    requester_t *qs = calloc(P, sizeof *qs);
    fo_hist_t *all = malloc(sizeof *all);
    int rc = rs && qs && all ? CLI_OK : cli_fail("bench", CLI_RUNTIME, "out of memory");
    if (rc == CLI_OK)
        rc = start_responders(&b, rs, S);
    uint64_t per = duration > 0 ? 0 : requests / P;
    for (uint64_t i = 0; rc == CLI_OK && i < P; i++) {
        qs[i].b = &b;
        qs[i].n = per + (duration > 0 ? 0 : i < requests % P);
        fo_hist_init(&qs[i].hist);
        if (!(qs[i].c = cli_connect("bench", server, 0, NULL, NULL, NULL)))
            rc = CLI_RUNTIME;
    }
    if (rc == CLI_OK) {
        if (duration > 0)
            b.stop_ns = fo_clock_ns() + (uint64_t)(duration * 1e9);
        uint64_t ok, failed, end;
        rc = run_requesters(&b, qs, P, &ok, &failed, all, &end);
        if (rc == CLI_OK)
            report(P, S, size, ok, failed, (double)(end - b.t0) / 1e9, all, json);
    }
    for (uint64_t i = 0; qs && i < P; i++)
        fo_client_destroy(qs[i].c);
    for (uint64_t i = 0; rs && i < S; i++)
        fo_client_destroy(rs[i].c);
    free(rs);
    free(qs);
    free(all);
    fflush(stdout);
    return rc;
}
