/* sub.c -- `fanout sub`: print the messages of a topic filter.
 *
 * One payload per line on stdout, bytes as published (-v: "TOPIC
 * PAYLOAD", as mosquitto_sub -v); --json prints one object per line
 * instead. Uses the library's queue mode (fo_sub_next) on
 * the main thread; stdout is flushed whenever the queue runs dry, so a
 * pipe sees messages promptly without a write per message under load.
 * Gaps and connection events go to stderr. The client reconnects and
 * resumes by itself; an ERROR answering the SUBSCRIBE exits 1.
 */
#include <getopt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char help[] =
    "usage: fanout sub [-s URLS] FILTER [-n COUNT]\n"
    "\n"
    "Subscribe to FILTER (topics are dot-separated; '*' matches one token,\n"
    "'>' the rest) and print each message's payload on its own line.\n"
    "\n"
    CLI_SERVER_HELP
    CLI_CONN_HELP
    "  -n, --count N           exit after N messages\n"
    "  -q, --queue GROUP       join queue group GROUP (each message goes to\n"
    "                          one member of the group)\n"
    "  -f, --from SEQ|earliest replay retained messages from sequence SEQ of\n"
    "                          each matching topic, or from the oldest one\n"
    "  -j, --json              one JSON object per line: topic, seq, time_ns\n"
    "                          (broker receive time), replay, and payload (a\n"
    "                          string, or payload_base64 when not UTF-8); also\n"
    "                          reply and headers when the message has them\n"
    "  -v, --verbose           print TOPIC [k=v ...] payload: the topic and the\n"
    "                          headers (bytes outside 0x21..0x7e and = ] \\ as\n"
    "                          \\xHH) before each payload\n"
    "  -t, --timeout SEC       exit 1 when no message came for SEC seconds\n"
    "      --slow POLICY       when we cannot keep up: drop (oldest, then a\n"
    "                          gap), disconnect, or block (the broker pauses\n"
    "                          publishers; nothing lost). Default: the broker's\n"
    "      --multicast         receive by UDP multicast, on the groups the broker\n"
    "                          announces; missed datagrams are repaired over TCP\n"
    "      --iface ADDR        interface (address or name) to join the groups on\n"
    "      --stats             at exit, print on stderr: received, gaps,\n"
    "                          repaired, lost (multicast: also datagrams, and\n"
    "                          those dropped: forged, replayed, foreign)\n"
    "  -h, --help              this text\n"
    "\n"
    "Gaps (messages the broker could not deliver) are reported on stderr.\n"
    "Exit status: 0 ok, 1 runtime error (connection, broker ERROR), 2 usage.\n";

static void on_gap(void *ud, const fo_gap_t *g)
{
    (void)ud;
    static const char *why[] = { "slow consumer", "evicted from retention",
                                 "local queue full", "multicast loss not repaired",
                                 "the topic's home broker changed" };
    fprintf(stderr, "fanout sub: gap on '%s': messages %llu..%llu missed (%s)\n",
            g->topic, (unsigned long long)g->first, (unsigned long long)g->last,
            (unsigned)g->reason < sizeof why / sizeof *why ? why[g->reason] : "unknown");
}

/* Set once the subscription is confirmed: before that, a failure is told
 * by the one-line error of fo_subscribe alone. */
static atomic_int subscribed;

static void on_event(void *ud, fo_event_t ev, fo_err_t err, const char *text)
{
    (void)ud;
    (void)err;
    if (!atomic_load(&subscribed))
        return;
    if (ev == FO_EV_DISCONNECTED)
        fprintf(stderr, "fanout sub: disconnected (%s); reconnecting\n", text);
    else if (ev == FO_EV_RECONNECTED)
        fprintf(stderr, "fanout sub: reconnected to %s\n", text);
    else if (ev == FO_EV_SERVER_ERROR)
        fprintf(stderr, "fanout sub: broker error: %s\n", text);
}

static void print_msg(const fo_msg_t *m, int json, int verbose)
{
    if (!json && verbose) {
        cli_print_verbose(stdout, m, 1);    /* TOPIC [k=v ...] payload */
        return;
    }
    if (!json) {
        fwrite(m->payload, 1, m->payload_len, stdout);
        fputc('\n', stdout);
        return;
    }
    fputs("{\"topic\":", stdout);
    cli_json_str(stdout, m->topic, m->topic_len);
    printf(",\"seq\":%llu,\"time_ns\":%llu,\"replay\":%s,",
           (unsigned long long)m->seq, (unsigned long long)m->time_ns,
           m->replay ? "true" : "false");
    cli_json_extras(stdout, m);             /* "reply", "headers" */
    if (cli_utf8_valid(m->payload, m->payload_len)) {
        fputs("\"payload\":", stdout);
        cli_json_str(stdout, m->payload, m->payload_len);
    } else {
        fputs("\"payload_base64\":", stdout);
        cli_base64(stdout, m->payload, m->payload_len);
    }
    fputs("}\n", stdout);
}

/* --stats: multicast counters, or what TCP delivery can tell (also for a
 * multicast subscription that joined no group). */
static void print_stats(const fo_sub_t *s)
{
    fo_mcast_stats_t st;
    if (fo_sub_mcast_stats(s, &st) != FO_OK || !st.groups) {
        memset(&st, 0, sizeof(st));
        st.received = fo_sub_delivered_count(s);
        st.gaps = st.lost = fo_sub_gap_count(s);
    }
    fprintf(stderr, "fanout sub: received %llu gaps %llu repaired %llu lost %llu",
            (unsigned long long)st.received, (unsigned long long)st.gaps,
            (unsigned long long)st.repaired, (unsigned long long)st.lost);
    if (st.datagrams || st.bad)     /* multicast: what was refused, and why */
        fprintf(stderr, " datagrams %llu dropped %llu forged %llu replayed %llu foreign %llu",
                (unsigned long long)st.datagrams, (unsigned long long)st.bad,
                (unsigned long long)st.forged, (unsigned long long)st.replayed,
                (unsigned long long)st.foreign);
    fputc('\n', stderr);
}

typedef struct sub_args {
    const char *server, *filter;
    uint64_t count;
    double timeout;
    int json, stats, verbose;
    fo_sub_opts_t so;
} sub_args_t;

/* One option of sub's into a: 0, or the exit status to return. */
static int sub_opt(sub_args_t *a, int ch, const char *arg, char **argv)
{
    switch (ch) {
    case 's': a->server = arg; return 0;
    case 'v': a->verbose = 1; return 0;
    case 'j': a->json = 1; return 0;
    case 'M': a->so.delivery = FO_DELIVERY_MULTICAST; return 0;
    case 'I': a->so.mcast_iface = arg; return 0;
    case 'S': a->stats = 1; return 0;
    case 'n':
        return cli_u64(arg, 1, UINT64_MAX, &a->count)
                   ? cli_usage("sub", "-n wants a positive integer, not '%s'", arg) : 0;
    case 'q':
        if (!*arg)
            return cli_usage("sub", "--queue wants a group name");
        a->so.queue = arg;
        return 0;
    case 'f':
        if (!strcmp(arg, "earliest"))
            a->so.start = FO_START_EARLIEST;
        else if (!cli_u64(arg, 1, UINT64_MAX, &a->so.start_seq))
            a->so.start = FO_START_SEQ;
        else
            return cli_usage("sub", "--from wants a sequence (>= 1) or 'earliest', not '%s'", arg);
        return 0;
    case 't':
        return cli_double(arg, 0.001, 1e6, &a->timeout)
                   ? cli_usage("sub", "--timeout wants seconds > 0, not '%s'", arg) : 0;
    case 'P':
        return cli_slow(arg, &a->so.slow)
                   ? cli_usage("sub", "--slow wants drop, disconnect or block, not '%s'", arg) : 0;
    case ':': return cli_usage("sub", "option '%s' needs a value", argv[optind - 1]);
    default: return cli_usage("sub", "unknown option '%s'", argv[optind - 1]);
    }
}

/* Options and FILTER into a: 0, an exit status, or -1 after --help. */
static int sub_parse(sub_args_t *a, int argc, char **argv)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, 's' },
        { "count", required_argument, NULL, 'n' },
        { "queue", required_argument, NULL, 'q' },
        { "from", required_argument, NULL, 'f' },
        { "json", no_argument, NULL, 'j' },
        { "verbose", no_argument, NULL, 'v' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "multicast", no_argument, NULL, 'M' },
        { "iface", required_argument, NULL, 'I' },
        { "stats", no_argument, NULL, 'S' },
        { "slow", required_argument, NULL, 'P' },
        CLI_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    optind = 1;
    opterr = 0;
    int ch, rc;
    while ((ch = getopt_long(argc, argv, ":s:n:q:f:jt:vh", opts, NULL)) != -1) {
        if (cli_conn_opt(ch, optarg))
            continue;              /* --user, --tls-ca, ... */
        if (ch == 'h') {
            fputs(help, stdout);
            return -1;
        }
        if ((rc = sub_opt(a, ch, optarg, argv)))
            return rc;
    }
    if (argc - optind < 1)
        return cli_usage("sub", "missing FILTER");
    if (argc - optind > 1)
        return cli_usage("sub", "too many arguments");
    a->filter = argv[optind];
    return 0;
}

/* Where a multicast subscription's messages come from, when not by
 * multicast: said once on stderr. */
static void say_delivery(const sub_args_t *a, const fo_sub_t *s)
{
    fo_mcast_stats_t mst;
    if (a->so.delivery != FO_DELIVERY_MULTICAST || fo_sub_mcast_stats(s, &mst))
        return;
    if (mst.unkeyed)
        fprintf(stderr, "fanout sub: %u multicast group%s for '%s' came without a key (plain TCP "
                "from another host, or not every topic of the group readable): their messages "
                "come by TCP\n", mst.unkeyed, mst.unkeyed == 1 ? "" : "s", a->filter);
    else if (!mst.groups)
        fprintf(stderr, "fanout sub: no multicast group carries '%s': messages come by TCP\n",
                a->filter);
}

/* Print messages until the count, a timeout or an error: the exit status. */
static int sub_print(const sub_args_t *a, fo_client_t *c, fo_sub_t *s)
{
    char why[256];
    int tmo = a->timeout > 0 ? (int)(a->timeout * 1000) : -1;
    for (uint64_t got = 0; !a->count || got < a->count; got++) {
        const fo_msg_t *m;
        fo_err_t err = fo_sub_next(s, 0, &m);
        if (err == FO_ERR_TIMEOUT) {
            fflush(stdout);          /* queue ran dry: show what we have */
            err = fo_sub_next(s, tmo, &m);
        }
        if (err == FO_ERR_TIMEOUT)
            return cli_fail("sub", CLI_RUNTIME, "no message within %g s", a->timeout);
        if (err)
            return cli_fail("sub", CLI_RUNTIME, "%s", cli_why(c, err, why));
        print_msg(m, a->json, a->verbose);
    }
    return CLI_OK;
}

int cli_sub(int argc, char **argv)
{
    sub_args_t a = { 0 };
    fo_sub_opts_init(&a.so);
    int rc = sub_parse(&a, argc, argv);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    cli_servers_t sv;
    if ((rc = cli_servers("sub", a.server, &sv)) != CLI_OK)
        return rc;
    fo_client_t *c = cli_connect("sub", &sv, 1, on_event, on_gap, NULL);
    cli_servers_free(&sv);
    if (!c)
        return CLI_RUNTIME;
    fo_sub_t *s;
    char why[256];
    fo_err_t err = fo_subscribe(c, a.filter, &a.so, &s);
    if (err) {
        rc = cli_fail("sub", CLI_RUNTIME, "subscribe to '%s' failed: %s", a.filter, cli_why(c, err, why));
        fo_client_destroy(c);
        return rc;
    }
    atomic_store(&subscribed, 1);
    say_delivery(&a, s);
    rc = sub_print(&a, c, s);
    fflush(stdout);
    if (a.stats)
        print_stats(s);
    fo_client_destroy(c);
    return rc;
}
