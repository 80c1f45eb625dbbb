/* bench_isolation.c -- what one client's load costs the others (issue 12's
 * figures, docs/BENCHMARKS.md "Isolation").
 *
 *   build/tests/bench/bench_isolation [--quick]
 *
 * Each scenario starts its own fanoutd (harness.h) on free loopback ports:
 *
 *   subs      100,000 SUBSCRIBEs (distinct literal filters) pipelined on
 *             one connection: seconds until the last ACK.
 *   topics    20,000 new topics (a PUBLISH with req each, pipelined): the
 *             rate with no subscription, and with 100,000 unrelated ones
 *             (90,000 literals, 10,000 wildcards) held by another client.
 *   partial   1,000 connections each hold HELLO + the header of a 1 MiB
 *             frame + one byte; a healthy publisher then sends 3,000
 *             128-byte publishes with req: how many are accepted.
 *   churn     round-trip latency (publish -> deliver) of a pub/sub pair,
 *             alone and while another client opens and closes connections
 *             as fast as it can.
 *   flood     the same round trips while a third client floods another
 *             topic (with a subscriber reading it).
 *   ephemeral 1,000,000 PUBLISHes to unique topics (nothing subscribes),
 *             in 10 rounds, each freed before the next (--retention-msgs 0
 *             --topic-linger 1s): the broker's RSS before, after the first
 *             round, and after the last (flat = topics do not leak).
 *   pending   a subscriber holding 1,000,000 undelivered messages on 1,000
 *             topics is closed: the broker's CPU to let them go, and the
 *             worst round trip of another pair meanwhile.
 *
 * --quick divides the counts by 10 (a smoke run; not for the docs).
 * Run it on an otherwise idle machine; it is a benchmark, not a test.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "harness.h"

static int scale = 1;          /* 10 with --quick */

/* ------------------------------------------------------------ helpers */

/* Frames packed back to back, sent in 64 KiB writes. */
typedef struct batch {
    uint8_t buf[64 * 1024 + 4096];
    size_t len;
} batch_t;

static void batch_flush(fo_tc_t *c, batch_t *b)
{
    if (b->len && fo_tc_send_raw(c, b->buf, b->len)) {
        fprintf(stderr, "bench_isolation: send failed\n");
        exit(1);
    }
    b->len = 0;
}

static void batch_add(fo_tc_t *c, batch_t *b, const Fanout__Frame *f)
{
    size_t n = fo_frame_size(f);
    if (b->len + n > 64 * 1024)
        batch_flush(c, b);
    fo_frame_pack(f, b->buf + b->len);
    b->len += n;
}

static void add_subscribe(fo_tc_t *c, batch_t *b, uint32_t sid, const char *filter, uint64_t req)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1;
    s.sid = sid;
    s.filter = (char *)filter;
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    if (req) {
        f.has_req = 1;
        f.req = req;
    }
    batch_add(c, b, &f);
}

static void add_publish(fo_tc_t *c, batch_t *b, const char *topic, const void *p, size_t n,
                        uint64_t req)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Publish pb = FANOUT__PUBLISH__INIT;
    pb.topic = (char *)topic;
    pb.has_payload = 1;
    pb.payload.data = (uint8_t *)p;
    pb.payload.len = n;
    f.body_case = FANOUT__FRAME__BODY_PUBLISH;
    f.publish = &pb;
    if (req) {
        f.has_req = 1;
        f.req = req;
    }
    batch_add(c, b, &f);
}

/* Read until the ACK of req; counts ERRORs on the way into *errors. */
static int until_ack(fo_tc_t *c, uint64_t req, uint64_t *acks, uint64_t *errors)
{
    Fanout__Frame *f;
    for (;;) {
        int r = fo_tc_recv(c, 60000, &f);
        if (r != 1)
            return -1;
        if (f->body_case == FANOUT__FRAME__BODY_ACK) {
            if (acks)
                (*acks)++;
            if (f->ack->ref == req)
                return 0;
        } else if (f->body_case == FANOUT__FRAME__BODY_ERROR) {
            if (errors)
                (*errors)++;
            if (f->error->has_ref && f->error->ref == req)
                return 0;
        }
    }
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static double secs_since(uint64_t t0_ns)
{
    return (double)(now_ns() - t0_ns) / 1e9;
}

static void start(fo_tb_t *b, const char *const *args)
{
    if (fo_tb_start(b, args)) {
        fprintf(stderr, "bench_isolation: cannot start fanoutd\n");
        exit(1);
    }
}

static double cpu_s(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    unsigned long ut = 0, st = 0;
    if (f) {
        int n = fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
        (void)n;
        fclose(f);
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ------------------------------------------------------------ subs */

static void bench_subs(void)
{
    int n = 100000 / scale;
    fo_tb_t b;
    start(&b, (const char *const[]){ "--max-subs", "1000000", "--log-level", "warn", NULL });
    fo_tc_t c;
    if (fo_tc_open(&c, b.port, "subs")) {
        fprintf(stderr, "bench_isolation: connect\n");
        exit(1);
    }
    static batch_t bt;
    char filter[64];
    uint64_t t0 = now_ns();
    for (int i = 1; i <= n; i++) {
        snprintf(filter, sizeof filter, "iso.sub.%d", i);
        add_subscribe(&c, &bt, (uint32_t)i, filter, i == n ? 1 : 0);
    }
    batch_flush(&c, &bt);
    if (until_ack(&c, 1, NULL, NULL))
        exit(1);
    double took = secs_since(t0);
    printf("subs      %d SUBSCRIBEs on one connection: %.3f s (%.0f subscriptions open)\n", n, took,
           fo_tb_metric(&b, "fanout_subscriptions"));
    fo_tc_close(&c);
    (void)fo_tb_stop(&b);
}

/* ------------------------------------------------------------ topics */

static double topic_rate(int unrelated)
{
    fo_tb_t b;
    start(&b, (const char *const[]){ "--max-subs", "1000000", "--max-topics", "1000000",
                                     "--log-level", "warn", NULL });
    fo_tc_t holder, p;
    if (fo_tc_open(&holder, b.port, "holder") || fo_tc_open(&p, b.port, "pub"))
        exit(1);
    static batch_t bt;
    char name[64];
    for (int i = 1; i <= unrelated; i++) {
        if (i % 10 == 0)
            snprintf(name, sizeof name, "other.%d.*.x.>", i);
        else
            snprintf(name, sizeof name, "other.%d.leaf", i);
        add_subscribe(&holder, &bt, (uint32_t)i, name, i == unrelated ? 1 : 0);
    }
    batch_flush(&holder, &bt);
    if (unrelated && until_ack(&holder, 1, NULL, NULL))
        exit(1);
    int n = 20000 / scale;
    uint64_t t0 = now_ns();
    for (int i = 1; i <= n; i++) {
        snprintf(name, sizeof name, "fresh.topic.%d", i);
        add_publish(&p, &bt, name, "x", 1, (uint64_t)i);
    }
    batch_flush(&p, &bt);
    if (until_ack(&p, (uint64_t)n, NULL, NULL))
        exit(1);
    double rate = n / secs_since(t0);
    fo_tc_close(&holder);
    fo_tc_close(&p);
    (void)fo_tb_stop(&b);
    return rate;
}

static void bench_topics(void)
{
    double none = topic_rate(0);
    double many = topic_rate(100000 / scale);
    printf("topics    new-topic rate: %.0f/s with no subscription, %.0f/s with %d unrelated "
           "(%.2fx)\n", none, many, 100000 / scale, none / many);
}

/* ------------------------------------------------------------ partial */

static void bench_partial(void)
{
    int holders = 1000 / scale;
    fo_tb_t b;
    start(&b, (const char *const[]){ "--log-level", "error", NULL });
    fo_tc_t *h = calloc((size_t)holders, sizeof *h);
    uint8_t head[5] = { 0x00, 0x10, 0x00, 0x00, 0x1a };   /* a 1 MiB frame, one byte of it */
    for (int i = 0; i < holders; i++)
        if (fo_tc_open(&h[i], b.port, "holder") || fo_tc_send_raw(&h[i], head, sizeof head))
            exit(1);
    fo_tc_t p;
    if (fo_tc_open(&p, b.port, "healthy"))
        exit(1);
    static batch_t bt;
    char payload[128];
    memset(payload, 'p', sizeof payload);
    int n = 3000;
    for (int i = 1; i <= n; i++)
        add_publish(&p, &bt, "healthy.topic", payload, sizeof payload, (uint64_t)i);
    batch_flush(&p, &bt);
    uint64_t acks = 0, errors = 0;
    if (until_ack(&p, (uint64_t)n, &acks, &errors))
        exit(1);
    printf("partial   %d connections holding a partial 1 MiB frame: %llu of %d publishes "
           "accepted, %llu refused; broker input buffers %.0f KiB\n", holders,
           (unsigned long long)acks, n, (unsigned long long)errors,
           fo_tb_metric(&b, "fanout_input_buffer_bytes") / 1024);
    for (int i = 0; i < holders; i++)
        fo_tc_close(&h[i]);
    free(h);
    fo_tc_close(&p);
    (void)fo_tb_stop(&b);
}

/* ------------------------------------------------------------ round trips */

typedef struct rt {
    uint64_t *us;
    int n;
} rt_t;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* n round trips publish -> deliver on topic, one at a time. */
static void round_trips(fo_tc_t *pub, fo_tc_t *sub, const char *topic, int n, rt_t *out)
{
    out->us = calloc((size_t)n, sizeof *out->us);
    out->n = n;
    for (int i = 0; i < n; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (fo_tc_publish(pub, topic, "rt", 2, 0))
            exit(1);
        Fanout__Frame *f;
        do {
            if (fo_tc_recv(sub, 10000, &f) != 1)
                exit(1);
        } while (f->body_case != FANOUT__FRAME__BODY_DELIVER);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        out->us[i] = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000);
    }
    qsort(out->us, (size_t)n, sizeof *out->us, cmp_u64);
}

static void print_rt(const char *what, const rt_t *r)
{
    printf("%-52s p50 %4llu us  p99 %5llu us  max %6llu us\n", what,
           (unsigned long long)r->us[r->n / 2], (unsigned long long)r->us[r->n * 99 / 100],
           (unsigned long long)r->us[r->n - 1]);
    free(r->us);
}

typedef struct load {
    int port;
    atomic_int stop;
    atomic_long done;
} load_t;

static void *churner(void *ud)
{
    load_t *l = ud;
    while (!atomic_load(&l->stop)) {
        fo_tc_t c;
        if (fo_tc_open(&c, l->port, "churn") == 0) {
            fo_tc_close(&c);
            atomic_fetch_add(&l->done, 1);
        }
    }
    return NULL;
}

static void *flooder(void *ud)
{
    load_t *l = ud;
    fo_tc_t p;
    if (fo_tc_open(&p, l->port, "flood"))
        return NULL;
    static batch_t bt;
    char payload[128];
    memset(payload, 'f', sizeof payload);
    while (!atomic_load(&l->stop)) {
        for (int i = 0; i < 400; i++)
            add_publish(&p, &bt, "flood.topic", payload, sizeof payload, 0);
        batch_flush(&p, &bt);
        atomic_fetch_add(&l->done, 400);
    }
    fo_tc_close(&p);
    return NULL;
}

static void *drainer(void *ud)
{
    load_t *l = ud;
    fo_tc_t s;
    if (fo_tc_open(&s, l->port, "flood-sub") || fo_tc_subscribe(&s, 1, "flood.topic", NULL))
        return NULL;
    Fanout__Frame *f;
    while (!atomic_load(&l->stop) && fo_tc_recv(&s, 200, &f) >= 0)
        ;
    fo_tc_close(&s);
    return NULL;
}

static void pair(fo_tb_t *b, fo_tc_t *pub, fo_tc_t *sub, const char *topic)
{
    if (fo_tc_open(pub, b->port, "rt-pub") || fo_tc_open(sub, b->port, "rt-sub") ||
        fo_tc_subscribe(sub, 1, topic, NULL))
        exit(1);
    /* the subscription is bound once a publish reaches it */
    Fanout__Frame *f;
    do {
        if (fo_tc_publish(pub, topic, "w", 1, 0))
            exit(1);
    } while (fo_tc_recv(sub, 100, &f) != 1);
}

static void bench_interference(void)
{
    int n = 20000 / scale;
    fo_tb_t b;
    start(&b, (const char *const[]){ "--log-level", "error", NULL });
    fo_tc_t pub, sub;
    pair(&b, &pub, &sub, "rt.topic");
    rt_t r;
    round_trips(&pub, &sub, "rt.topic", n, &r);
    print_rt("churn     round trips, alone:", &r);

    load_t l = { .port = b.port };
    pthread_t th;
    pthread_create(&th, NULL, churner, &l);
    round_trips(&pub, &sub, "rt.topic", n, &r);
    atomic_store(&l.stop, 1);
    pthread_join(th, NULL);
    char what[96];
    snprintf(what, sizeof what, "churn     ... with %ld connects/closes meanwhile:", atomic_load(&l.done));
    print_rt(what, &r);

    load_t fl = { .port = b.port };
    pthread_t ft, dt;
    pthread_create(&dt, NULL, drainer, &fl);
    pthread_create(&ft, NULL, flooder, &fl);
    round_trips(&pub, &sub, "rt.topic", n, &r);
    atomic_store(&fl.stop, 1);
    pthread_join(ft, NULL);
    pthread_join(dt, NULL);
    snprintf(what, sizeof what, "flood     ... with %ld flood messages meanwhile:", atomic_load(&fl.done));
    print_rt(what, &r);
    fo_tc_close(&pub);
    fo_tc_close(&sub);
    (void)fo_tb_stop(&b);
}

/* ------------------------------------------------------------ ephemeral */

/* Publish to topics eph.<from..to>.reply, windowed. */
static void unique_topics(fo_tc_t *p, int from, int to)
{
    static batch_t bt;
    char name[64];
    for (int i = from; i <= to; i++) {
        snprintf(name, sizeof name, "eph.%d.reply", i);
        add_publish(p, &bt, name, "x", 1, i % 10000 == 0 || i == to ? (uint64_t)i : 0);
        if (i % 10000 == 0 || i == to) {      /* a window, so the broker keeps up */
            batch_flush(p, &bt);
            if (until_ack(p, (uint64_t)i, NULL, NULL))
                exit(1);
        }
    }
}

static void wait_swept(const fo_tb_t *b)
{
    uint64_t t1 = now_ns();
    while (fo_tb_metric(b, "fanout_topics") > 100 && secs_since(t1) < 120)
        usleep(50000);                        /* polling a metric until it falls */
}

static void bench_ephemeral(void)
{
    int n = 1000000 / scale, rounds = 10;
    fo_tb_t b;
    start(&b, (const char *const[]){ "--retention-msgs", "0", "--topic-linger", "1s",
                                     "--max-topics", "10000000", "--log-level", "warn", NULL });
    fo_tc_t p;
    if (fo_tc_open(&p, b.port, "ephemeral"))
        exit(1);
    long rss0 = fo_tb_rss_kib(b.pid), rss1 = 0;
    for (int r = 0; r < rounds; r++) {
        unique_topics(&p, r * (n / rounds) + 1, (r + 1) * (n / rounds));
        wait_swept(&b);
        if (r == 0)
            rss1 = fo_tb_rss_kib(b.pid);
    }
    long rss2 = fo_tb_rss_kib(b.pid);
    printf("ephemeral %d unique topics in %d rounds (each freed before the next): RSS %ld KiB "
           "before, %ld KiB after the first round, %ld KiB after the last (%.0f created, %.0f "
           "freed)\n", n, rounds, rss0, rss1, rss2, fo_tb_metric(&b, "fanout_topics_created_total"),
           fo_tb_metric(&b, "fanout_topics_freed_total"));
    fo_tc_close(&p);
    (void)fo_tb_stop(&b);
}

/* ------------------------------------------------------------ pending */

static void bench_pending(void)
{
    int msgs = 1000000 / scale, topics = 1000;
    fo_tb_t b;
    start(&b, (const char *const[]){ "--max-output", "4GiB", "--max-memory", "4GiB",
                                     "--retention-msgs", "0", "--log-level", "error", NULL });
    fo_tc_t stuck, p;
    if (fo_tc_open_rcvbuf(&stuck, b.port, "stuck", 4096) || fo_tc_open(&p, b.port, "pub"))
        exit(1);
    static batch_t bt;
    char name[64];
    for (int t = 0; t < topics; t++) {
        snprintf(name, sizeof name, "pend.%d", t);
        add_subscribe(&stuck, &bt, (uint32_t)t + 1, name, t == topics - 1 ? 1 : 0);
    }
    batch_flush(&stuck, &bt);
    if (until_ack(&stuck, 1, NULL, NULL))
        exit(1);
    char payload[64];
    memset(payload, 'q', sizeof payload);
    for (int i = 1; i <= msgs; i++) {
        snprintf(name, sizeof name, "pend.%d", i % topics);
        add_publish(&p, &bt, name, payload, sizeof payload, i == msgs ? 1 : 0);
    }
    batch_flush(&p, &bt);
    if (until_ack(&p, 1, NULL, NULL))
        exit(1);
    fo_tc_t rp, rs;
    pair(&b, &rp, &rs, "pend.rt");
    double before = fo_tb_metric(&b, "fanout_memory_bytes");
    double cpu0 = cpu_s(b.pid);
    uint64_t t0 = now_ns();
    fo_tc_close(&stuck);                      /* the broker lets go of every pending message */
    rt_t r;
    round_trips(&rp, &rs, "pend.rt", 2000, &r);
    while (fo_tb_metric(&b, "fanout_memory_bytes") > before / 10 && secs_since(t0) < 60)
        usleep(10000);                        /* polling a metric until it falls */
    printf("pending   %d undelivered on %d topics (%.0f MiB) freed in %.2f s, %.3f CPU-s; ", msgs,
           topics, before / 1048576, secs_since(t0), cpu_s(b.pid) - cpu0);
    print_rt("round trips meanwhile:", &r);
    fo_tc_close(&rp);
    fo_tc_close(&rs);
    fo_tc_close(&p);
    (void)fo_tb_stop(&b);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            scale = 10;
        } else {
            fprintf(stderr, "usage: bench_isolation [--quick]\n");
            return 2;
        }
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    bench_subs();
    bench_topics();
    bench_partial();
    bench_interference();
    bench_ephemeral();
    bench_pending();
    return 0;
}
