/* bench.c -- `fanout bench`: the load test fanout is compared with.
 *
 * Mirrors the peer load generator of the shared peer tools (peerbench,
 * when present: not part of this repository) so its scenarios map 1:1
 * (see docs/CLIENT.md): S subscribers and P publishers, each on its own
 * connection (own client, own reader thread); every subscription is
 * confirmed (ACK) before the first publish; the first 8 payload bytes
 * carry the send time (CLOCK_MONOTONIC ns), so latency is publish to
 * delivery on this machine, recorded per subscriber in an HDR-style
 * histogram (hist.c) and merged at the end.
 *
 * Flood (no --rate): publishers fill 64 KiB write buffers as fast as they
 * can, stamping each message when it is encoded (as peerbench does).
 * Paced (--rate R, total over all publishers): open loop -- message k of
 * a publisher is due at start + k/rate, is stamped with that intended time
 * (not the actual send time) and flushed at once, so a stall of the
 * system shows up in the latency of every message it delayed instead of
 * being hidden (no coordinated omission).
 *
 * When publishing is done the bench waits (up to --wait seconds) for every
 * expected delivery, then reports: throughput in (msgs_per_s over
 * publish_seconds) and out (deliveries_per_s = delivered over the time
 * from the first send to the last delivery), delivered/expected/lost,
 * gap-reported messages, latency percentiles -- as a table, one JSON
 * object (--json) or CSV (--csv). --series and --plot also record every
 * second (series.h): sent and delivered per second and that second's
 * latency percentiles, written as CSV or drawn as an SVG (plot.h).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"
#include "clock.h"
#include "hist.h"
#include "plot.h"
#include "series.h"

static const char help[] =
    "usage: fanout bench [-s URLS] [--pubs P] [--subs S] [--msgs N] [--size B]\n"
    "                    [--rate R] [--topics T] [--duration D] [--wait W]\n"
    "                    [--json | --csv] [--series FILE.csv] [--plot FILE.svg]\n"
    "\n"
    "Load-test a broker: P publishers send N messages of B bytes in all, spread\n"
    "over T topics; S subscribers each receive every message. Each publisher\n"
    "and subscriber has its own connection.\n"
    "\n"
    CLI_SERVER_HELP
    CLI_CONN_HELP
    "  -p, --pubs P            publishers (default 1)\n"
    "  -S, --subs S            subscribers (default 1)\n"
    "  -n, --msgs N            messages in all, split over the publishers (default 100000)\n"
    "  -z, --size B            payload bytes, >= 8 (default 128)\n"
    "  -r, --rate R            total messages per second, paced open-loop;\n"
    "                          latency is measured from each message's intended\n"
    "                          send time (default: flood, as fast as possible)\n"
    "  -T, --topics T          topics (default 1)\n"
    "  -d, --duration D        publish for D seconds instead of N messages\n"
    "  -w, --wait W            wait at most W seconds for deliveries after the\n"
    "                          last publish (default 20)\n"
    "  -j, --json              one JSON object instead of the table\n"
    "      --csv               CSV instead of the table: a header line and one row\n"
    "      --series FILE       also write the run second by second to FILE as CSV\n"
    "                          (\"-\" = stdout, after the report): second, sent/s,\n"
    "                          delivered/s, p50 and p99 latency of that second\n"
    "      --plot FILE         also draw the run as an SVG image in FILE: latency\n"
    "                          by percentile and throughput over time\n"
    "      --multicast         subscribers receive by UDP multicast (the broker\n"
    "                          needs an --mcast-group covering bench.>); the\n"
    "                          report adds datagram gaps, repaired and lost\n"
    "      --iface ADDR        interface the subscribers join the groups on\n"
    "      --slow POLICY       subscribers' slow-consumer policy: drop, disconnect\n"
    "                          or block (flow control: publishers are paused,\n"
    "                          nothing is lost). Default: the broker's\n"
    "      --request           request/reply instead: P requesters, each with one\n"
    "                          request in flight (closed loop), S responders in one\n"
    "                          queue group answering with the payload; N requests\n"
    "                          in all (or --duration); reports round trips/s and\n"
    "                          round-trip latency (docs/CLIENT.md); with --json\n"
    "                          or the text report only (not --csv, --plot,\n"
    "                          --series, --multicast, --rate, --topics, --slow)\n"
    "  -h, --help              this text\n"
    "\n"
    "The scenarios of the peer benchmarks (nats-server, redis, mosquitto):\n"
    "  flood-1x1  fanout bench --pubs 1 --subs 1 --msgs 1000000 --size 128\n"
    "  flood-1x8  fanout bench --pubs 1 --subs 8 --msgs 200000 --size 128\n"
    "  flood-4k   fanout bench --pubs 1 --subs 1 --msgs 100000 --size 4096\n"
    "  rate-20k   fanout bench --pubs 1 --subs 1 --msgs 100000 --size 128 --rate 20000\n"
    "\n"
    "A progress line is shown on stderr each second when it is a terminal.\n"
    "Exit status: 0 ok (lost messages are a result, not an error), 1 runtime\n"
    "error (connection, subscribe, publish, writing FILE), 2 usage.\n";

/* Subscribers whose latencies feed the per-second series (all of them
 * count deliveries): a bound on its memory (4.6 KiB a second each). */
#define SERIES_LATENCY_SUBS 16

typedef struct bench bench_t;

typedef struct bsub {
    fo_client_t *c;
    fo_sub_t *sub;
    fo_hist_t hist;                /* written by this client's reader only */
    _Atomic uint64_t got, gap_msgs, last_ns;
    int record;                    /* --series/--plot: fill `series` */
    fo_series_t series;            /* deliveries by second (reader only) */
} bsub_t;

typedef struct bpub {
    bench_t *b;
    int idx;
    fo_client_t *c;
    pthread_t th;
    uint64_t n;                    /* messages to send; 0 = until duration */
    _Atomic uint64_t sent;
    uint64_t done_ns;
    fo_err_t err;
    char errtext[256];
    fo_series_t series;            /* sends by second (this thread only) */
} bpub_t;

struct bench {
    const char *server;            /* -s, or NULL */
    cli_servers_t sv;
    uint64_t pubs, subs, msgs, size, ntopics;
    double rate, duration, wait;
    int json, csv, multicast, request;
    const char *series_path, *plot_path;
    int record;                    /* --series or --plot */
    const char *iface;
    fo_slow_t slow;                /* --slow, or FO_SLOW_DEFAULT */
    fo_mcast_stats_t mc;           /* --multicast: summed over subscribers */
    char **topics;
    char filter[96];
    bsub_t *sub;
    bpub_t *pub;
    pthread_barrier_t go;
    uint64_t t0;                   /* first send, CLOCK_MONOTONIC ns */
    _Atomic int pubs_done;
};

static void on_msg(void *ud, fo_sub_t *s, const fo_msg_t *m)
{
    (void)s;
    bsub_t *b = ud;
    uint64_t now = fo_clock_ns(), sent;
    if (m->payload_len >= 8) {
        memcpy(&sent, m->payload, 8);
        fo_hist_record(&b->hist, now > sent ? now - sent : 0);
        if (b->record)
            fo_series_add(&b->series, now, now > sent ? now - sent : 0);
    }
    /* single writer: a plain store is enough for the main thread's reads */
    atomic_store_explicit(&b->last_ns, now, memory_order_relaxed);
    atomic_store_explicit(&b->got, atomic_load_explicit(&b->got,
                          memory_order_relaxed) + 1, memory_order_relaxed);
}

static void on_gap(void *ud, const fo_gap_t *g)
{
    bsub_t *b = ud;
    atomic_fetch_add(&b->gap_msgs, g->last - g->first + 1);
}

/* Wait until t (ns): sleep while far, spin the last 200 us. */
static void wait_until(uint64_t t)
{
    for (;;) {
        uint64_t now = fo_clock_ns();
        if (now >= t)
            return;
        if (t - now > 200000) {
            struct timespec ts = { 0, (long)(t - now - 100000) };
            nanosleep(&ts, NULL);
        }
    }
}

static void *pub_main(void *arg)
{
    bpub_t *p = arg;
    bench_t *b = p->b;
    char *buf = calloc(1, b->size);
    double rate = b->rate > 0 ? b->rate / (double)b->pubs : 0;
    pthread_barrier_wait(&b->go);
    uint64_t t0 = b->t0;
    uint64_t stop = b->duration > 0 ? t0 + (uint64_t)(b->duration * 1e9) : 0;
    if (!buf) {
        p->err = FO_ERR_NOMEM;
        goto out;
    }
    for (uint64_t k = 0; !p->n || k < p->n; k++) {
        uint64_t stamp;
        if (rate > 0) {
            stamp = t0 + (uint64_t)((double)k * 1e9 / rate);
            if (stop && stamp >= stop)
                break;
            wait_until(stamp);
        } else {
            stamp = fo_clock_ns();
            if (stop && stamp >= stop)
                break;
        }
        memcpy(buf, &stamp, 8);
        const char *topic = b->topics[(k * b->pubs + (uint64_t)p->idx) % b->ntopics];
        fo_err_t err = fo_publish(p->c, topic, buf, b->size);
        if (!err && rate > 0)
            err = fo_client_flush(p->c, 0);
        if (err) {
            p->err = err;
            break;
        }
        atomic_store_explicit(&p->sent, k + 1, memory_order_relaxed);
        if (b->record)
            fo_series_add(&p->series, stamp, 0);
    }
    if (!p->err)
        p->err = fo_client_flush(p->c, 0);
out:
    if (p->err)
        cli_why(p->c, p->err, p->errtext);
    p->done_ns = fo_clock_ns();
    atomic_fetch_add(&b->pubs_done, 1);
    free(buf);
    return NULL;
}

static uint64_t sum_got(const bench_t *b)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < b->subs; i++)
        n += atomic_load_explicit(&b->sub[i].got, memory_order_relaxed);
    return n;
}

static uint64_t sum_sent(const bench_t *b)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < b->pubs; i++)
        n += atomic_load_explicit(&b->pub[i].sent, memory_order_relaxed);
    return n;
}

static void progress(const bench_t *b, int tty, uint64_t *next_ns, int final)
{
    if (!tty)
        return;
    uint64_t now = fo_clock_ns();
    if (!final && now < *next_ns)
        return;
    *next_ns = now + 1000000000ull;
    uint64_t sent = sum_sent(b);
    uint64_t want = b->msgs && b->duration <= 0 ? b->msgs : sent;
    fprintf(stderr, "\rbench: %.1f s  sent %llu/%llu  delivered %llu/%llu   ",
            (double)(now - b->t0) / 1e9, (unsigned long long)sent,
            (unsigned long long)want, (unsigned long long)sum_got(b),
            (unsigned long long)(want * b->subs));
    if (final)
        fputc('\n', stderr);
}

/* The options --request does not use (bench_rr.c), or NULL. */
static const char *not_for_request(const bench_t *b)
{
    return b->csv ? "--csv" : b->plot_path ? "--plot" : b->series_path ? "--series"
         : b->multicast ? "--multicast" : b->rate > 0 ? "--rate"
         : b->ntopics > 1 ? "--topics" : b->slow != FO_SLOW_DEFAULT ? "--slow" : NULL;
}

/* What parse checks once every option is in. */
static int check_options(bench_t *b)
{
    if (b->duration <= 0 && b->msgs < b->pubs)
        return cli_usage("bench", "--msgs must be at least --pubs");
    if (b->json && b->csv)
        return cli_usage("bench", "give --json or --csv, not both");
    if (b->plot_path && !strcmp(b->plot_path, "-"))
        return cli_usage("bench", "--plot wants a file name");
    const char *no = b->request ? not_for_request(b) : NULL;
    if (no)
        return cli_usage("bench", "%s is not for --request (its report is the text or --json)", no);
    b->record = b->series_path || b->plot_path;
    return 0;
}

static int parse(bench_t *b, int argc, char **argv)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, 's' },
        { "pubs", required_argument, NULL, 'p' },
        { "subs", required_argument, NULL, 'S' },
        { "msgs", required_argument, NULL, 'n' },
        { "size", required_argument, NULL, 'z' },
        { "rate", required_argument, NULL, 'r' },
        { "topics", required_argument, NULL, 'T' },
        { "duration", required_argument, NULL, 'd' },
        { "wait", required_argument, NULL, 'w' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { "multicast", no_argument, NULL, 'M' },
        { "iface", required_argument, NULL, 'I' },
        { "slow", required_argument, NULL, 'P' },
        { "csv", no_argument, NULL, 'C' },
        { "series", required_argument, NULL, 'E' },
        { "plot", required_argument, NULL, 'G' },
        { "request", no_argument, NULL, 'Q' },
        CLI_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":s:p:S:n:z:r:T:d:w:jh", opts, NULL)) != -1) {
        if (cli_conn_opt(ch, optarg))
            continue;              /* --user, --tls-ca, ... */
        const char *bad = NULL;
        switch (ch) {
        case 's': b->server = optarg; break;
        case 'p': if (cli_u64(optarg, 1, 256, &b->pubs)) bad = "--pubs wants 1..256"; break;
        case 'S': if (cli_u64(optarg, 1, 1024, &b->subs)) bad = "--subs wants 1..1024"; break;
        case 'n': if (cli_u64(optarg, 1, UINT64_MAX / 1024, &b->msgs)) bad = "--msgs wants a positive integer"; break;
        case 'z': if (cli_u64(optarg, 8, 16u << 20, &b->size)) bad = "--size wants 8..16777216 (the first 8 bytes carry the send time)"; break;
        case 'r': if (cli_double(optarg, 0.001, 1e9, &b->rate)) bad = "--rate wants a positive number"; break;
        case 'T': if (cli_u64(optarg, 1, 100000, &b->ntopics)) bad = "--topics wants 1..100000"; break;
        case 'd': if (cli_double(optarg, 0.001, 86400, &b->duration)) bad = "--duration wants seconds > 0"; break;
        case 'w': if (cli_double(optarg, 0.001, 86400, &b->wait)) bad = "--wait wants seconds > 0"; break;
        case 'j': b->json = 1; break;
        case 'C': b->csv = 1; break;
        case 'E': b->series_path = optarg; break;
        case 'G': b->plot_path = optarg; break;
        case 'M': b->multicast = 1; break;
        case 'Q': b->request = 1; break;
        case 'I': b->iface = optarg; break;
        case 'P': if (cli_slow(optarg, &b->slow)) bad = "--slow wants drop, disconnect or block"; break;
        case 'h': fputs(help, stdout); return -1;
        case ':': return cli_usage("bench", "option '%s' needs a value", argv[optind - 1]);
        default: return cli_usage("bench", "unknown option '%s'", argv[optind - 1]);
        }
        if (bad)
            return cli_usage("bench", "%s, not '%s'", bad, optarg);
    }
    if (optind < argc)
        return cli_usage("bench", "unexpected argument '%s'", argv[optind]);
    return check_options(b);
}

static void report(const bench_t *b, const fo_hist_t *h, uint64_t sent,
                   uint64_t delivered, uint64_t gaps, double pub_s, double secs)
{
    uint64_t expected = sent * b->subs;
    uint64_t lost = expected > delivered ? expected - delivered : 0;
    double in = pub_s > 0 ? (double)sent / pub_s : 0;
    double out = secs > 0 ? (double)delivered / secs : 0;
    double us[6] = { fo_hist_percentile(h, 50) / 1e3, fo_hist_percentile(h, 90) / 1e3,
                     fo_hist_percentile(h, 99) / 1e3, fo_hist_percentile(h, 99.9) / 1e3,
                     h->n ? h->max / 1e3 : 0, fo_hist_mean(h) / 1e3 };
    if (b->csv) {
        printf("pubs,subs,msgs,size,rate,topics,duration,sent,publish_seconds,msgs_per_s,"
               "delivered,expected,lost,gaps,seconds,deliveries_per_s,p50_us,p90_us,p99_us,"
               "p999_us,max_us,mean_us,mcast_datagrams,mcast_gaps,mcast_repaired,mcast_lost\n");
        printf("%llu,%llu,%llu,%llu,%g,%llu,%g,%llu,%.6f,%.0f,%llu,%llu,%llu,%llu,%.6f,%.0f,"
               "%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%llu,%llu,%llu,%llu\n",
               (unsigned long long)b->pubs, (unsigned long long)b->subs,
               (unsigned long long)b->msgs, (unsigned long long)b->size,
               b->rate, (unsigned long long)b->ntopics, b->duration,
               (unsigned long long)sent, pub_s, in, (unsigned long long)delivered,
               (unsigned long long)expected, (unsigned long long)lost,
               (unsigned long long)gaps, secs, out,
               us[0], us[1], us[2], us[3], us[4], us[5],
               (unsigned long long)b->mc.datagrams, (unsigned long long)b->mc.gaps,
               (unsigned long long)b->mc.repaired, (unsigned long long)b->mc.lost);
        return;
    }
    if (b->json) {
        printf("{\"pubs\":%llu,\"subs\":%llu,\"msgs\":%llu,\"size\":%llu,"
               "\"rate\":%g,\"topics\":%llu,\"duration\":%g,"
               "\"sent\":%llu,\"publish_seconds\":%.6f,\"msgs_per_s\":%.0f,"
               "\"delivered\":%llu,\"expected\":%llu,\"lost\":%llu,\"gaps\":%llu,"
               "\"seconds\":%.6f,\"deliveries_per_s\":%.0f,"
               "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
               "\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f},"
               "\"mcast\":{\"datagrams\":%llu,\"gaps\":%llu,\"repaired\":%llu,\"lost\":%llu}}\n",
               (unsigned long long)b->pubs, (unsigned long long)b->subs,
               (unsigned long long)b->msgs, (unsigned long long)b->size,
               b->rate, (unsigned long long)b->ntopics, b->duration,
               (unsigned long long)sent, pub_s, in, (unsigned long long)delivered,
               (unsigned long long)expected, (unsigned long long)lost,
               (unsigned long long)gaps, secs, out,
               us[0], us[1], us[2], us[3], us[4], us[5],
               (unsigned long long)b->mc.datagrams, (unsigned long long)b->mc.gaps,
               (unsigned long long)b->mc.repaired, (unsigned long long)b->mc.lost);
        return;
    }
    char pace[64];
    if (b->rate > 0)
        snprintf(pace, sizeof pace, "paced at %g msgs/s", b->rate);
    else
        snprintf(pace, sizeof pace, "flood");
    printf("fanout bench: %llu pub -> %llu sub, %llu B messages, %s, %llu topic%s\n",
           (unsigned long long)b->pubs, (unsigned long long)b->subs,
           (unsigned long long)b->size, pace, (unsigned long long)b->ntopics,
           b->ntopics == 1 ? "" : "s");
    printf("  %-12s %12llu msgs in %.3f s  = %12.0f msgs/s\n", "published",
           (unsigned long long)sent, pub_s, in);
    printf("  %-12s %12llu of %llu in %.3f s  = %12.0f deliveries/s\n",
           "delivered", (unsigned long long)delivered,
           (unsigned long long)expected, secs, out);
    printf("  %-12s %12llu lost, %llu reported in gaps\n", "missing",
           (unsigned long long)lost, (unsigned long long)gaps);
    printf("  %-12s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f)\n",
           "latency us", us[0], us[1], us[2], us[3], us[4], us[5]);
    if (b->multicast)
        printf("  %-12s %12llu datagrams, %llu msgs missed: %llu repaired, %llu lost\n",
               "multicast", (unsigned long long)b->mc.datagrams,
               (unsigned long long)b->mc.gaps, (unsigned long long)b->mc.repaired,
               (unsigned long long)b->mc.lost);
}

/* The topics bench.<run id>[.<i>] and the filter covering them all. */
static int make_topics(bench_t *b)
{
    unsigned runid = (unsigned)getpid() ^ (unsigned)fo_clock_ns();
    for (uint64_t i = 0; i < b->ntopics; i++) {
        char t[96];
        if (b->ntopics == 1)
            snprintf(t, sizeof t, "bench.%08x", runid);
        else
            snprintf(t, sizeof t, "bench.%08x.%llu", runid, (unsigned long long)i);
        if (!(b->topics[i] = strdup(t)))
            return cli_fail("bench", CLI_RUNTIME, "out of memory");
    }
    if (b->ntopics == 1)
        snprintf(b->filter, sizeof b->filter, "%s", b->topics[0]);
    else
        snprintf(b->filter, sizeof b->filter, "bench.%08x.*", runid);
    return CLI_OK;
}

/* Every subscriber connected and its subscription confirmed (ACK). */
static int start_subscribers(bench_t *b)
{
    char why[256];
    for (uint64_t i = 0; i < b->subs; i++) {
        bsub_t *s = &b->sub[i];
        fo_hist_init(&s->hist);
        s->record = b->record;
        fo_series_init(&s->series, b->record && i < SERIES_LATENCY_SUBS);
        if (!(s->c = cli_connect("bench", &b->sv, 0, NULL, on_gap, s)))
            return CLI_RUNTIME;
        fo_sub_opts_t so;
        fo_sub_opts_init(&so);
        so.cb = on_msg;
        so.ud = s;
        so.slow = b->slow;
        if (b->multicast) {
            so.delivery = FO_DELIVERY_MULTICAST;
            so.mcast_iface = b->iface;
        }
        fo_err_t err = fo_subscribe(s->c, b->filter, &so, &s->sub);
        if (err)
            return cli_fail("bench", CLI_RUNTIME, "subscribe to '%s' failed: %s",
                            b->filter, cli_why(s->c, err, why));
    }
    return CLI_OK;
}

/* Every publisher connected, with its share of the messages. */
static int connect_publishers(bench_t *b)
{
    uint64_t per = b->duration > 0 ? 0 : b->msgs / b->pubs;
    for (uint64_t i = 0; i < b->pubs; i++) {
        bpub_t *p = &b->pub[i];
        p->b = b;
        p->idx = (int)i;
        p->n = per + (b->duration > 0 ? 0 : i < b->msgs % b->pubs);
        fo_series_init(&p->series, 0);
        if (!(p->c = cli_connect("bench", &b->sv, 0, NULL, NULL, NULL)))
            return CLI_RUNTIME;
    }
    return CLI_OK;
}

/* Start the publishers together (b->t0), wait for them all; *pub_end gets
 * the time the last one finished. */
static int run_publishers(bench_t *b, int tty, uint64_t *next, uint64_t *pub_end)
{
    pthread_barrier_init(&b->go, NULL, (unsigned)b->pubs + 1);
    uint64_t started = 0;
    for (; started < b->pubs; started++)
        if (pthread_create(&b->pub[started].th, NULL, pub_main, &b->pub[started]))
            break;
    if (started < b->pubs) {
        /* The started ones wait at the barrier; exiting ends them. */
        cli_fail("bench", CLI_RUNTIME, "cannot start publisher threads");
        exit(CLI_RUNTIME);
    }
    b->t0 = fo_clock_ns();
    for (uint64_t i = 0; b->record && i < b->subs; i++)
        fo_series_start(&b->sub[i].series, b->t0);
    for (uint64_t i = 0; b->record && i < b->pubs; i++)
        fo_series_start(&b->pub[i].series, b->t0);
    pthread_barrier_wait(&b->go);
    while (atomic_load(&b->pubs_done) < (int)b->pubs) {
        progress(b, tty, next, 0);
        struct timespec ts = { 0, 20000000 };
        nanosleep(&ts, NULL);
    }
    int rc = CLI_OK;
    *pub_end = 0;
    for (uint64_t i = 0; i < b->pubs; i++) {
        pthread_join(b->pub[i].th, NULL);
        if (b->pub[i].done_ns > *pub_end)
            *pub_end = b->pub[i].done_ns;
        if (b->pub[i].err && rc == CLI_OK)
            rc = cli_fail("bench", CLI_RUNTIME, "publish failed: %s", b->pub[i].errtext);
    }
    pthread_barrier_destroy(&b->go);
    return rc;
}

/* Up to --wait seconds for every expected delivery. */
static void await_deliveries(const bench_t *b, uint64_t expected, int tty, uint64_t *next)
{
    uint64_t deadline = fo_clock_ns() + (uint64_t)(b->wait * 1e9);
    while (sum_got(b) < expected && fo_clock_ns() < deadline) {
        progress(b, tty, next, 0);
        struct timespec ts = { 0, 2000000 };
        nanosleep(&ts, NULL);
    }
    progress(b, tty, next, 1);
}

/* What the subscribers got. */
typedef struct tally {
    fo_hist_t all;                 /* every subscriber's latencies */
    uint64_t delivered, gaps;
    uint64_t last_ns;              /* the last delivery */
} tally_t;

/* Stop the subscribers (joins their readers, so their histograms and
 * counters are final) and add them up; with --multicast also b->mc. */
static void stop_subscribers(bench_t *b, tally_t *t)
{
    fo_hist_init(&t->all);
    t->delivered = t->gaps = 0;
    t->last_ns = b->t0;
    for (uint64_t i = 0; i < b->subs; i++) {
        bsub_t *s = &b->sub[i];
        fo_mcast_stats_t mc;
        if (b->multicast && fo_sub_mcast_stats(s->sub, &mc) == FO_OK) {
            b->mc.gaps += mc.gaps;
            b->mc.repaired += mc.repaired;
            b->mc.lost += mc.lost;
            b->mc.datagrams += mc.datagrams;
        }
        fo_client_destroy(s->c);
        s->c = NULL;
        fo_hist_merge(&t->all, &s->hist);
        t->delivered += atomic_load(&s->got);
        t->gaps += atomic_load(&s->gap_msgs);
        if (atomic_load(&s->last_ns) > t->last_ns)
            t->last_ns = atomic_load(&s->last_ns);
    }
}

/* ------------------------------------------------------------ per second */

/* The run second by second: rows 0..n-1, row k from k s to k + len[k] s
 * after the first send (the last row ends at the run's end). */
typedef struct rows {
    size_t n;
    double *t, *len, *sent, *delivered, *p50_us, *p99_us;
    int *has_latency;
} rows_t;

static void rows_free(rows_t *r)
{
    free(r->t);
    free(r->len);
    free(r->sent);
    free(r->delivered);
    free(r->p50_us);
    free(r->p99_us);
    free(r->has_latency);
}

/* Merge the publishers' and subscribers' series into rows; end_ns is the
 * end of the run (the last delivery or the last send). */
static int make_rows(bench_t *b, uint64_t end_ns, rows_t *r)
{
    fo_series_t snt, dlv;
    fo_series_init(&snt, 0);
    fo_series_init(&dlv, 1);
    int failed = 0;
    for (uint64_t i = 0; i < b->pubs; i++)
        failed |= fo_series_merge(&snt, &b->pub[i].series) || b->pub[i].series.failed;
    for (uint64_t i = 0; i < b->subs; i++)
        failed |= fo_series_merge(&dlv, &b->sub[i].series) || b->sub[i].series.failed;
    double total = (double)(end_ns > b->t0 ? end_ns - b->t0 : 0) / 1e9;
    size_t n = snt.nsec > dlv.nsec ? snt.nsec : dlv.nsec;
    memset(r, 0, sizeof *r);
    r->n = n;
    r->t = calloc(n + 1, sizeof *r->t);
    r->len = calloc(n + 1, sizeof *r->len);
    r->sent = calloc(n + 1, sizeof *r->sent);
    r->delivered = calloc(n + 1, sizeof *r->delivered);
    r->p50_us = calloc(n + 1, sizeof *r->p50_us);
    r->p99_us = calloc(n + 1, sizeof *r->p99_us);
    r->has_latency = calloc(n + 1, sizeof *r->has_latency);
    if (failed || !r->t || !r->len || !r->sent || !r->delivered || !r->p50_us || !r->p99_us ||
        !r->has_latency) {
        fo_series_free(&snt);
        fo_series_free(&dlv);
        rows_free(r);
        return cli_fail("bench", CLI_RUNTIME, "out of memory for the per-second series");
    }
    /* The last second is as long as what is left of the run; a sliver
     * (under 0.1 s: the last deliveries of a run of whole seconds) is
     * counted with the second before, which then lasts 1.0x s. */
    int fold = n >= 2 && total - (double)(n - 1) < 0.1;
    for (size_t k = 0; k + fold < n; k++) {
        double len = k + 1 + fold == n ? total - (double)k : 1;
        if (len > 1.1 || len < 0.001)
            len = 1;                         /* a run that ended past its last event */
        uint64_t ns = fo_series_count(&snt, k), nd = fo_series_count(&dlv, k);
        if (fold && k + 2 == n) {
            ns += fo_series_count(&snt, k + 1);
            nd += fo_series_count(&dlv, k + 1);
        }
        r->t[k] = (double)k;
        r->len[k] = len;
        r->sent[k] = (double)ns / len;
        r->delivered[k] = (double)nd / len;
        r->has_latency[k] = nd > 0;
        r->p50_us[k] = (double)fo_series_percentile(&dlv, k, 50) / 1e3;
        r->p99_us[k] = (double)fo_series_percentile(&dlv, k, 99) / 1e3;
    }
    r->n = n - (size_t)fold;
    fo_series_free(&snt);
    fo_series_free(&dlv);
    return CLI_OK;
}

static int write_series(const bench_t *b, const rows_t *r)
{
    int to_stdout = !strcmp(b->series_path, "-");
    FILE *f = to_stdout ? stdout : fopen(b->series_path, "w");
    if (!f)
        return cli_fail("bench", CLI_RUNTIME, "cannot write '%s': %s", b->series_path,
                        strerror(errno));
    if (to_stdout && !b->csv && !b->json)
        fputc('\n', f);
    fprintf(f, "second,sent_per_s,delivered_per_s,p50_us,p99_us\n");
    for (size_t k = 0; k < r->n; k++) {
        fprintf(f, "%zu,%.0f,%.0f,", k, r->sent[k], r->delivered[k]);
        if (r->has_latency[k])
            fprintf(f, "%.1f,%.1f\n", r->p50_us[k], r->p99_us[k]);
        else
            fputs(",\n", f);
    }
    int bad = ferror(f) | (!to_stdout && fclose(f));
    if (to_stdout)
        fflush(f);
    if (bad)
        return cli_fail("bench", CLI_RUNTIME, "writing '%s' failed", b->series_path);
    return CLI_OK;
}

static int write_plot(const bench_t *b, const rows_t *r, const fo_hist_t *h, uint64_t sent,
                      uint64_t delivered)
{
    enum { NQ = 200 };
    double q[NQ], lat[NQ];
    size_t nq = 0;
    double x0 = fo_plot_nines(50), x1 = fo_plot_nines(99.99);
    for (int i = 0; h->n && i < NQ; i++) {
        double x = x0 + (x1 - x0) * i / (NQ - 1);
        q[nq] = 100 * (1 - pow(10, -x));
        if (i == NQ - 1)
            q[nq] = 99.99;
        lat[nq] = (double)fo_hist_percentile(h, q[nq]) / 1e3;
        nq++;
    }
    char title[256], sub[512], pace[64];
    if (b->rate > 0)
        snprintf(pace, sizeof pace, "paced at %g msgs/s", b->rate);
    else
        snprintf(pace, sizeof pace, "flood");
    snprintf(title, sizeof title, "fanout bench: %llu pub -> %llu sub, %llu B messages, %s",
             (unsigned long long)b->pubs, (unsigned long long)b->subs,
             (unsigned long long)b->size, pace);
    uint64_t expected = sent * b->subs;
    snprintf(sub, sizeof sub, "%llu topic%s; sent %llu, delivered %llu of %llu, lost %llu; "
             "p50 %.1f \xc2\xb5s, p99 %.1f \xc2\xb5s, p99.9 %.1f \xc2\xb5s, max %.1f \xc2\xb5s",
             (unsigned long long)b->ntopics, b->ntopics == 1 ? "" : "s",
             (unsigned long long)sent, (unsigned long long)delivered,
             (unsigned long long)expected,
             (unsigned long long)(expected > delivered ? expected - delivered : 0),
             fo_hist_percentile(h, 50) / 1e3, fo_hist_percentile(h, 99) / 1e3,
             fo_hist_percentile(h, 99.9) / 1e3, h->n ? h->max / 1e3 : 0);
    fo_plot_t p = { title, sub, nq, q, lat, r->n, r->t, r->len, r->sent, r->delivered };
    FILE *f = fopen(b->plot_path, "w");
    if (!f)
        return cli_fail("bench", CLI_RUNTIME, "cannot write '%s': %s", b->plot_path,
                        strerror(errno));
    int bad = fo_plot_svg(f, &p);
    bad |= fclose(f);
    if (bad)
        return cli_fail("bench", CLI_RUNTIME, "writing '%s' failed", b->plot_path);
    return CLI_OK;
}

static int run(bench_t *b)
{
    b->topics = calloc(b->ntopics, sizeof *b->topics);
    b->sub = calloc(b->subs, sizeof *b->sub);
    b->pub = calloc(b->pubs, sizeof *b->pub);
    if (!b->topics || !b->sub || !b->pub)
        return cli_fail("bench", CLI_RUNTIME, "out of memory");
    int rc = make_topics(b);
    if (rc == CLI_OK)
        rc = start_subscribers(b);
    if (rc == CLI_OK)
        rc = connect_publishers(b);
    if (rc != CLI_OK)
        return rc;
    int tty = isatty(2);
    uint64_t next = 0, pub_end;
    rc = run_publishers(b, tty, &next, &pub_end);
    uint64_t sent = sum_sent(b);
    await_deliveries(b, sent * b->subs, tty, &next);
    tally_t t;
    stop_subscribers(b, &t);
    if (rc == CLI_OK)
        report(b, &t.all, sent, t.delivered, t.gaps, (double)(pub_end - b->t0) / 1e9,
               (double)(t.last_ns - b->t0) / 1e9);
    if (rc == CLI_OK && b->record) {
        rows_t r;
        fflush(stdout);
        rc = make_rows(b, t.last_ns > pub_end ? t.last_ns : pub_end, &r);
        if (rc == CLI_OK && b->series_path)
            rc = write_series(b, &r);
        if (rc == CLI_OK && b->plot_path)
            rc = write_plot(b, &r, &t.all, sent, t.delivered);
        if (r.t || r.n)
            rows_free(&r);
    }
    return rc;
}

int cli_bench(int argc, char **argv)
{
    bench_t b = { .pubs = 1, .subs = 1,
                  .msgs = 100000, .size = 128, .ntopics = 1, .wait = 20 };
    int rc = parse(&b, argc, argv);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    if ((rc = cli_servers("bench", b.server, &b.sv)) != CLI_OK)
        return rc;
    if (b.request) {               /* bench_rr.c */
        rc = cli_bench_request(&b.sv, b.pubs, b.subs, b.msgs, b.size, b.duration, b.json);
        cli_servers_free(&b.sv);
        return rc;
    }
    rc = run(&b);
    for (uint64_t i = 0; b.sub && i < b.subs; i++) {
        fo_client_destroy(b.sub[i].c);
        fo_series_free(&b.sub[i].series);
    }
    for (uint64_t i = 0; b.pub && i < b.pubs; i++) {
        fo_client_destroy(b.pub[i].c);
        fo_series_free(&b.pub[i].series);
    }
    cli_servers_free(&b.sv);
    for (uint64_t i = 0; b.topics && i < b.ntopics; i++)
        free(b.topics[i]);
    free(b.topics);
    free(b.sub);
    free(b.pub);
    fflush(stdout);
    return rc;
}
