/* pub.c -- `fanout pub`: publish one message, stdin lines, a whole file
 * or stdin, or generated payloads.
 *
 * One MESSAGE, and -f FILE / --whole (one message, as mosquitto_pub -f /
 * -s), are published with a confirmed publish (the broker's ACK or ERROR
 * decides the exit status). Lines from stdin and --count payloads
 * go through the buffered publish path and end with a flush round trip,
 * so a broker ERROR (which closes the connection) is still reported.
 * --rate paces open-loop: message k leaves at start + k/R.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "cli.h"
#include "clock.h"

static const char help[] =
    "usage: fanout pub [-s URLS] TOPIC [MESSAGE]\n"
    "       fanout pub [-s URLS] TOPIC -f FILE | --whole\n"
    "\n"
    "Publish MESSAGE to TOPIC; without MESSAGE, publish each line of stdin as\n"
    "one message (the newline removed, and a CR before it: CRLF files work).\n"
    "\n"
    CLI_SERVER_HELP
    CLI_CONN_HELP
    "  -f, --file FILE         publish the whole of FILE as one message\n"
    "                          (\"-\" = stdin), bytes as they are\n"
    "      --whole             publish all of stdin as one message\n"
    "  -c, --count N           publish N generated messages instead\n"
    "  -z, --size B            size of generated messages (default 16)\n"
    "  -r, --rate R            at most R messages per second (default: no limit)\n"
    "      --confirm           wait for the broker's ACK of every message and\n"
    "                          print its sequence number\n"
    "  -H, --header K:V        give every message header K with value V (all\n"
    "                          after the first ':'); repeatable, at most 32\n"
    "  -h, --help              this text\n"
    "\n"
    "A message larger than the broker's max-frame is refused before it is sent\n"
    "(\"2000000 B is over the broker's max-frame of 1 MiB\").\n"
    "Exit status: 0 ok, 1 runtime error (connection, broker ERROR), 2 usage.\n";

/* ERRORs that answer no request: the broker refusing a buffered publish
 * (e.g. a memory cap or the topic limit). Counted on the reader thread. */
typedef struct refusals {
    pthread_mutex_t mu;
    uint64_t n;
    char first[256];
} refusals_t;

static void on_event(void *ud, fo_event_t ev, fo_err_t err, const char *text)
{
    (void)err;
    refusals_t *r = ud;
    if (ev != FO_EV_SERVER_ERROR)
        return;
    pthread_mutex_lock(&r->mu);
    if (r->n++ == 0)
        snprintf(r->first, sizeof r->first, "%s", text);
    pthread_mutex_unlock(&r->mu);
}

typedef struct pub {
    fo_client_t *c;
    const char *topic;
    double rate;
    uint64_t t0_ns;                /* CLOCK_MONOTONIC at the first message */
    uint64_t sent;
    int confirm;
    const fo_pub_opts_t *opts;     /* -H headers, or NULL */
} pub_t;

static void pace(pub_t *p)
{
    if (p->rate <= 0)
        return;
    struct timespec t = fo_ts_of_ns(p->t0_ns + (uint64_t)((double)p->sent / p->rate * 1e9));
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL))
        ;
}

/* The one line for a publish (or its round trip) of len bytes that failed. */
static int publish_failed(pub_t *p, fo_err_t err, size_t len)
{
    char why[256];
    return cli_fail("pub", CLI_RUNTIME, "publish to '%s' failed: %s", p->topic,
                    cli_send_why(p->c, err, p->topic, len, why));
}

static int send_one(pub_t *p, const void *data, size_t len)
{
    pace(p);
    fo_err_t err;
    if (p->confirm) {
        uint64_t seq = 0;
        err = fo_publish_sync_ex(p->c, p->topic, data, len, p->opts, 5000, &seq);
        if (!err)
            printf("%llu\n", (unsigned long long)seq);
    } else {
        err = fo_publish_ex(p->c, p->topic, data, len, p->opts);
        if (!err && p->rate > 0)
            err = fo_client_flush(p->c, 0);
    }
    if (err)
        return publish_failed(p, err, len);
    p->sent++;
    return CLI_OK;
}

/* What to publish, from the command line. */
typedef struct pub_args {
    const char *server;            /* -s, or NULL                   */
    const char *message;           /* NULL: --count, --file, or stdin lines */
    const char *file;              /* -f FILE, "-" for --whole      */
    uint64_t count, size;
    int have_count;
    cli_headers_t headers;
} pub_args_t;

/* Options and arguments into p and a: 0, CLI_USAGE (said why), or -1
 * after --help. */
static int parse_args(pub_t *p, pub_args_t *a, int argc, char **argv)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, 's' },
        { "count", required_argument, NULL, 'c' },
        { "size", required_argument, NULL, 'z' },
        { "rate", required_argument, NULL, 'r' },
        { "confirm", no_argument, NULL, 'C' },
        { "file", required_argument, NULL, 'f' },
        { "whole", no_argument, NULL, 'W' },
        { "header", required_argument, NULL, 'H' },
        { "help", no_argument, NULL, 'h' },
        CLI_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":s:c:z:r:f:H:h", opts, NULL)) != -1) {
        if (cli_conn_opt(ch, optarg))
            continue;              /* --user, --tls-ca, ... */
        switch (ch) {
        case 's': a->server = optarg; break;
        case 'f':
        case 'W':
            if (a->file)
                return cli_usage("pub", "give one of -f FILE and --whole");
            a->file = ch == 'f' ? optarg : "-";
            break;
        case 'c':
            if (cli_u64(optarg, 1, UINT64_MAX, &a->count))
                return cli_usage("pub", "--count wants a positive integer, not '%s'", optarg);
            a->have_count = 1;
            break;
        case 'z':
            if (cli_u64(optarg, 0, 64u << 20, &a->size))
                return cli_usage("pub", "--size wants 0..67108864, not '%s'", optarg);
            break;
        case 'r':
            if (cli_double(optarg, 0.001, 1e9, &p->rate))
                return cli_usage("pub", "--rate wants a positive number, not '%s'", optarg);
            break;
        case 'C': p->confirm = 1; break;
        case 'H':
            if (cli_header_arg("pub", optarg, &a->headers))
                return CLI_USAGE;
            break;
        case 'h': fputs(help, stdout); return -1;
        case ':': return cli_usage("pub", "option '%s' needs a value", argv[optind - 1]);
        default: return cli_usage("pub", "unknown option '%s'", argv[optind - 1]);
        }
    }
    int npos = argc - optind;
    if (npos < 1)
        return cli_usage("pub", "missing TOPIC");
    if (npos > 2)
        return cli_usage("pub", "too many arguments (quote a MESSAGE with spaces)");
    if (npos + !!a->file + a->have_count > 2)
        return cli_usage("pub", "give one of MESSAGE, -f FILE, --whole and --count");
    p->topic = argv[optind];
    a->message = npos == 2 ? argv[optind + 1] : NULL;
    return 0;
}

/* One message: a confirmed publish makes errors certain. */
static int publish_message(pub_t *p, const char *message, size_t len)
{
    uint64_t seq = 0;
    fo_err_t err = fo_publish_sync_ex(p->c, p->topic, message, len, p->opts, 5000, &seq);
    if (err)
        return publish_failed(p, err, len);
    p->sent++;
    if (p->confirm)
        printf("%llu\n", (unsigned long long)seq);
    return CLI_OK;
}

/* -f FILE or --whole ("-"): the whole of it as one message. Reads at most
 * one byte more than the broker's max-frame, so a huge input is refused
 * with its size (a regular file's) without being read. */
static int publish_file(pub_t *p, const char *path)
{
    int is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f)
        return cli_fail("pub", CLI_RUNTIME, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = (size_t)fo_client_max_frame(p->c) + 1, len = 0;
    struct stat st;
    if (!fstat(fileno(f), &st) && S_ISREG(st.st_mode) && (uint64_t)st.st_size >= cap) {
        if (!is_stdin)
            fclose(f);
        char why[256];
        return cli_fail("pub", CLI_RUNTIME, "publish to '%s' failed: %s", p->topic,
                        cli_too_large(p->c, p->topic, (size_t)st.st_size, why, sizeof why));
    }
    char *buf = malloc(cap);
    if (!buf) {
        if (!is_stdin)
            fclose(f);
        return cli_fail("pub", CLI_RUNTIME, "out of memory");
    }
    size_t k;
    while (len < cap && (k = fread(buf + len, 1, cap - len, f)) > 0)
        len += k;
    int bad = ferror(f), more = len == cap;
    if (!is_stdin)
        fclose(f);
    int rc;
    if (bad) {
        rc = cli_fail("pub", CLI_RUNTIME, "reading '%s': %s", is_stdin ? "stdin" : path,
                      strerror(errno));
    } else if (more) {
        char lim[32];
        rc = cli_fail("pub", CLI_RUNTIME, "publish to '%s' failed: %s holds more than the "
                      "broker's max-frame of %s", p->topic, is_stdin ? "stdin" : path,
                      cli_size(fo_client_max_frame(p->c), lim, sizeof lim));
    } else {
        rc = publish_message(p, buf, len);
    }
    free(buf);
    return rc;
}

/* --count N generated payloads of --size bytes. */
static int publish_generated(pub_t *p, uint64_t count, uint64_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return cli_fail("pub", CLI_RUNTIME, "out of memory");
    int rc = CLI_OK;
    for (uint64_t i = 0; i < count && rc == CLI_OK; i++) {
        for (uint64_t k = 0; k < size; k++)
            buf[k] = (char)('a' + (i + k) % 26);
        rc = send_one(p, buf, size);
    }
    free(buf);
    return rc;
}

/* Each line of stdin, newline removed. */
static int publish_lines(pub_t *p)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = CLI_OK;
    while (rc == CLI_OK && (n = getline(&line, &cap, stdin)) >= 0) {
        if (n && line[n - 1] == '\n') {
            n--;
            if (n && line[n - 1] == '\r')
                n--;                 /* CRLF: the line without either */
        }
        rc = send_one(p, line, (size_t)n);
    }
    free(line);
    return rc;
}

int cli_pub(int argc, char **argv)
{
    pub_t p = { 0 };
    pub_args_t a = { .size = 16 };
    int rc = parse_args(&p, &a, argc, argv);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    cli_servers_t sv;
    if ((rc = cli_servers("pub", a.server, &sv)) != CLI_OK)
        return rc;
    fo_pub_opts_t po;
    p.opts = cli_headers_opts(&a.headers, &po);

    refusals_t ref = { .mu = PTHREAD_MUTEX_INITIALIZER };
    p.c = cli_connect("pub", &sv, 0, on_event, NULL, &ref);
    cli_servers_free(&sv);
    if (!p.c)
        return CLI_RUNTIME;
    p.t0_ns = fo_clock_ns();
    if (a.message)
        rc = publish_message(&p, a.message, strlen(a.message));
    else if (a.file)
        rc = publish_file(&p, a.file);
    else if (a.have_count)
        rc = publish_generated(&p, a.count, a.size);
    else
        rc = publish_lines(&p);
    if (rc == CLI_OK) {
        /* The round trip: every ERROR about what we sent has arrived. */
        fo_err_t err = fo_client_flush(p.c, 10000);
        if (err)
            rc = publish_failed(&p, err, 0);
    }
    fflush(stdout);
    fo_client_destroy(p.c);   /* the reader thread is gone: ref is ours */
    if (rc == CLI_OK && ref.n)
        rc = cli_fail("pub", CLI_RUNTIME, "the broker refused %llu of %llu message%s to '%s': %s",
                      (unsigned long long)ref.n, (unsigned long long)p.sent,
                      p.sent == 1 ? "" : "s", p.topic, ref.first);
    return rc;
}
