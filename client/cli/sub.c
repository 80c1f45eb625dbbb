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
                                 "local queue full", "multicast loss not repaired" };
    fprintf(stderr, "fanout sub: gap on '%s': messages %llu..%llu missed (%s)\n",
            g->topic, (unsigned long long)g->first, (unsigned long long)g->last,
            (unsigned)g->reason < 4 ? why[g->reason] : "unknown");
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

int cli_sub(int argc, char **argv)
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
    const char *server = NULL;
    uint64_t count = 0;
    double timeout = 0;
    int json = 0, stats = 0, verbose = 0;
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":s:n:q:f:jt:vh", opts, NULL)) != -1) {
        if (cli_conn_opt(ch, optarg))
            continue;              /* --user, --tls-ca, ... */
        switch (ch) {
        case 's': server = optarg; break;
        case 'v': verbose = 1; break;
        case 'n':
            if (cli_u64(optarg, 1, UINT64_MAX, &count))
                return cli_usage("sub", "-n wants a positive integer, not '%s'", optarg);
            break;
        case 'q':
            if (!*optarg)
                return cli_usage("sub", "--queue wants a group name");
            so.queue = optarg;
            break;
        case 'f':
            if (!strcmp(optarg, "earliest")) {
                so.start = FO_START_EARLIEST;
            } else if (!cli_u64(optarg, 1, UINT64_MAX, &so.start_seq)) {
                so.start = FO_START_SEQ;
            } else {
                return cli_usage("sub", "--from wants a sequence (>= 1) or 'earliest', not '%s'", optarg);
            }
            break;
        case 'j': json = 1; break;
        case 't':
            if (cli_double(optarg, 0.001, 1e6, &timeout))
                return cli_usage("sub", "--timeout wants seconds > 0, not '%s'", optarg);
            break;
        case 'h': fputs(help, stdout); return CLI_OK;
        case 'M': so.delivery = FO_DELIVERY_MULTICAST; break;
        case 'I': so.mcast_iface = optarg; break;
        case 'S': stats = 1; break;
        case 'P':
            if (cli_slow(optarg, &so.slow))
                return cli_usage("sub", "--slow wants drop, disconnect or block, not '%s'", optarg);
            break;
        case ':': return cli_usage("sub", "option '%s' needs a value", argv[optind - 1]);
        default: return cli_usage("sub", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind < 1)
        return cli_usage("sub", "missing FILTER");
    if (argc - optind > 1)
        return cli_usage("sub", "too many arguments");
    const char *filter = argv[optind];

    cli_servers_t sv;
    int rc = cli_servers("sub", server, &sv);
    if (rc != CLI_OK)
        return rc;
    fo_client_t *c = cli_connect("sub", &sv, 1, on_event, on_gap, NULL);
    cli_servers_free(&sv);
    if (!c)
        return CLI_RUNTIME;
    fo_sub_t *s;
    char why[256];
    fo_err_t err = fo_subscribe(c, filter, &so, &s);
    if (err) {
        int rc = cli_fail("sub", CLI_RUNTIME, "subscribe to '%s' failed: %s",
                          filter, cli_why(c, err, why));
        fo_client_destroy(c);
        return rc;
    }
    atomic_store(&subscribed, 1);
    fo_mcast_stats_t mst;
    if (so.delivery == FO_DELIVERY_MULTICAST && !fo_sub_mcast_stats(s, &mst) && mst.unkeyed)
        fprintf(stderr, "fanout sub: %u multicast group%s for '%s' came without a key (plain TCP "
                "from another host, or not every topic of the group readable): their messages "
                "come by TCP\n", mst.unkeyed, mst.unkeyed == 1 ? "" : "s", filter);
    else if (so.delivery == FO_DELIVERY_MULTICAST && !mst.groups)
        fprintf(stderr, "fanout sub: no multicast group carries '%s': messages come by TCP\n",
                filter);
    int tmo = timeout > 0 ? (int)(timeout * 1000) : -1;
    for (uint64_t got = 0; !count || got < count; got++) {
        const fo_msg_t *m;
        err = fo_sub_next(s, 0, &m);
        if (err == FO_ERR_TIMEOUT) {
            fflush(stdout);          /* queue ran dry: show what we have */
            err = fo_sub_next(s, tmo, &m);
        }
        if (err == FO_ERR_TIMEOUT) {
            rc = cli_fail("sub", CLI_RUNTIME, "no message within %g s", timeout);
            break;
        }
        if (err) {
            rc = cli_fail("sub", CLI_RUNTIME, "%s", cli_why(c, err, why));
            break;
        }
        print_msg(m, json, verbose);
    }
    fflush(stdout);
    if (stats)
        print_stats(s);
    fo_client_destroy(c);
    return rc;
}
