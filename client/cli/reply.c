/* reply.c -- `fanout reply`: answer the requests sent to a topic.
 *
 * Subscribes to TOPIC (optionally in a queue group, so several `fanout
 * reply` share the requests) and answers each request (a message with a
 * reply address) with MESSAGE, or with what --command prints: CMD runs
 * under /bin/sh -c with the request's payload on its stdin, its stdout is
 * the reply. The command is bounded: killed (its whole process group)
 * when it outlives --command-timeout or prints more than --max-output
 * bytes, and that request then gets no reply (the requester times out);
 * a non-zero exit status is reported on stderr, its output still sent.
 * Requests are answered one at a time, in order, on the main thread
 * (fo_sub_next); the client reconnects by itself like `fanout sub`.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"
#include "clock.h"

static const char help[] =
    "usage: fanout reply [-s URLS] TOPIC (--command CMD | MESSAGE) [--queue GROUP]\n"
    "                    [--count N] [-H K:V]...\n"
    "\n"
    "Answer each request sent to TOPIC (`fanout request`, fo_request): with\n"
    "MESSAGE, or with the standard output of CMD, run by /bin/sh -c with the\n"
    "request's payload on its standard input.\n"
    "\n"
    CLI_SERVER_HELP
    CLI_CONN_HELP
    "  -c, --command CMD        reply with what CMD prints (one run per request)\n"
    "      --command-timeout SEC  kill CMD when it runs longer (default 10); that\n"
    "                           request gets no reply\n"
    "      --max-output BYTES   kill CMD when it prints more (default 1048576);\n"
    "                           that request gets no reply\n"
    "  -q, --queue GROUP        join queue group GROUP: each request goes to one\n"
    "                           member\n"
    "  -n, --count N            exit after answering N requests\n"
    "  -H, --header K:V         give every reply header K with value V\n"
    "                           (repeatable, at most 32)\n"
    "  -v, --verbose            print each request as TOPIC [k=v ...] payload\n"
    "  -h, --help               this text\n"
    "\n"
    "Messages without a reply address are not requests: they are skipped, with\n"
    "a line on stderr.\n"
    "Exit status: 0 after N answers, 1 runtime error (connection, subscribe),\n"
    "2 usage.\n";

typedef struct reply_args {
    const char *server, *topic, *message, *command;
    double cmd_timeout;
    uint64_t max_output, count;
    int verbose;
    cli_headers_t headers;
    fo_sub_opts_t so;
} reply_args_t;

/* Options and arguments: 0, CLI_USAGE (said why), or -1 after --help. */
static int parse_args(reply_args_t *a, int argc, char **argv)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, 's' },
        { "command", required_argument, NULL, 'c' },
        { "command-timeout", required_argument, NULL, 'T' },
        { "max-output", required_argument, NULL, 'M' },
        { "queue", required_argument, NULL, 'q' },
        { "count", required_argument, NULL, 'n' },
        { "header", required_argument, NULL, 'H' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        CLI_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":s:c:q:n:H:vh", opts, NULL)) != -1) {
        if (cli_conn_opt(ch, optarg))
            continue;              /* --user, --tls-ca, ... */
        switch (ch) {
        case 's': a->server = optarg; break;
        case 'c': a->command = optarg; break;
        case 'T':
            if (cli_double(optarg, 0.001, 86400, &a->cmd_timeout))
                return cli_usage("reply", "--command-timeout wants seconds > 0, not '%s'", optarg);
            break;
        case 'M':
            if (cli_u64(optarg, 1, 64u << 20, &a->max_output))
                return cli_usage("reply", "--max-output wants 1..67108864 bytes, not '%s'", optarg);
            break;
        case 'q':
            if (!*optarg)
                return cli_usage("reply", "--queue wants a group name");
            a->so.queue = optarg;
            break;
        case 'n':
            if (cli_u64(optarg, 1, UINT64_MAX, &a->count))
                return cli_usage("reply", "--count wants a positive integer, not '%s'", optarg);
            break;
        case 'H':
            if (cli_header_arg("reply", optarg, &a->headers))
                return CLI_USAGE;
            break;
        case 'v': a->verbose = 1; break;
        case 'h': fputs(help, stdout); return -1;
        case ':': return cli_usage("reply", "option '%s' needs a value", argv[optind - 1]);
        default: return cli_usage("reply", "unknown option '%s'", argv[optind - 1]);
        }
    }
    int npos = argc - optind;
    if (npos < 1)
        return cli_usage("reply", "missing TOPIC");
    if (npos > 2)
        return cli_usage("reply", "too many arguments (quote a MESSAGE with spaces)");
    if (npos == 2 && a->command)
        return cli_usage("reply", "give either MESSAGE or --command, not both");
    if (npos == 1 && !a->command)
        return cli_usage("reply", "missing MESSAGE (or --command CMD)");
    a->topic = argv[optind];
    a->message = npos == 2 ? argv[optind + 1] : NULL;
    return 0;
}

/* ------------------------------------------------------------ the command */

typedef struct run {
    char *out;                     /* owned: what the command printed */
    size_t len, cap;
    int status;                    /* its wait status */
    const char *why;               /* NULL: it ran; else why there is no reply */
} run_t;

static void child(int in, int out, const char *cmd)
{
    setpgid(0, 0);                 /* its own group: killed as a whole */
    signal(SIGPIPE, SIG_DFL);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0)
        _exit(127);
    close(in);
    close(out);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
}

/* Feed the payload, collect stdout, until EOF, the limit or the deadline. */
static void pump(run_t *r, int in, int out, const fo_msg_t *m, uint64_t deadline_ms,
                 uint64_t max)
{
    size_t fed = 0;
    if (!m->payload_len) {
        close(in);
        in = -1;
    }
    while (out >= 0) {
        uint64_t now = fo_clock_ms();
        if (now >= deadline_ms) {
            r->why = "it ran longer than --command-timeout";
            break;
        }
        struct pollfd p[2] = { { .fd = out, .events = POLLIN }, { .fd = in, .events = POLLOUT } };
        if (poll(p, in >= 0 ? 2 : 1, (int)(deadline_ms - now)) < 0 && errno != EINTR)
            break;
        if (in >= 0 && p[1].revents) {
            ssize_t w = write(in, (const char *)m->payload + fed, m->payload_len - fed);
            if (w > 0)
                fed += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || fed == m->payload_len) {
                close(in);          /* all fed, or it stopped reading: EOF */
                in = -1;
            }
        }
        if (!p[0].revents)
            continue;
        if (r->len == r->cap) {
            size_t ncap = r->cap ? r->cap * 2 : 4096;
            char *n = realloc(r->out, ncap);
            if (!n) {
                r->why = "out of memory";
                break;
            }
            r->out = n;
            r->cap = ncap;
        }
        ssize_t k = read(out, r->out + r->len, r->cap - r->len);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (k <= 0)
            break;                  /* EOF: done */
        r->len += (size_t)k;
        if (r->len > max) {
            r->why = "it printed more than --max-output";
            break;
        }
    }
    if (in >= 0)
        close(in);
}

/* Run cmd with the request on its stdin; r->out is its stdout. */
static void run_command(const reply_args_t *a, const fo_msg_t *m, run_t *r)
{
    memset(r, 0, sizeof *r);
    int pin[2], pout[2];
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC)) {
        r->why = strerror(errno);
        return;
    }
    pid_t pid = fork();
    if (pid == 0)
        child(pin[0], pout[1], a->command);
    close(pin[0]);
    close(pout[1]);
    if (pid < 0) {
        r->why = strerror(errno);
        close(pin[1]);
        close(pout[0]);
        return;
    }
    setpgid(pid, pid);             /* also here: no race with the kill */
    fcntl(pin[1], F_SETFL, O_NONBLOCK);
    fcntl(pout[0], F_SETFL, O_NONBLOCK);
    uint64_t deadline = fo_clock_ms() + (uint64_t)(a->cmd_timeout * 1000);
    pump(r, pin[1], pout[0], m, deadline, a->max_output);
    close(pout[0]);
    /* Its stdout is closed; it may still run (a daemon of its own): the
     * same deadline holds for its exit. */
    pid_t w;
    while (!r->why && (w = waitpid(pid, &r->status, WNOHANG)) == 0) {
        if (fo_clock_ms() >= deadline) {
            r->why = "it ran longer than --command-timeout";
            break;
        }
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    if (!r->why)
        return;                     /* reaped above */
    kill(-pid, SIGKILL);
    while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------ serving */

static atomic_int subscribed;

static void on_event(void *ud, fo_event_t ev, fo_err_t err, const char *text)
{
    (void)ud;
    (void)err;
    if (!atomic_load(&subscribed))
        return;
    if (ev == FO_EV_DISCONNECTED)
        fprintf(stderr, "fanout reply: disconnected (%s); reconnecting\n", text);
    else if (ev == FO_EV_RECONNECTED)
        fprintf(stderr, "fanout reply: reconnected to %s\n", text);
    else if (ev == FO_EV_SERVER_ERROR)
        fprintf(stderr, "fanout reply: broker error: %s\n", text);
}

/* Answer one request: 1 answered, 0 not (said why on stderr), -1 the
 * client is gone. */
static int answer(fo_client_t *c, const reply_args_t *a, const fo_msg_t *m,
                  const fo_pub_opts_t *po)
{
    if (a->verbose) {
        cli_print_verbose(stdout, m, 1);
        fflush(stdout);
    }
    if (!m->reply) {
        fprintf(stderr, "fanout reply: a message on '%s' without a reply address: skipped\n",
                m->topic);
        return 0;
    }
    run_t r = { 0 };
    const void *body = a->message;
    size_t len = a->message ? strlen(a->message) : 0;
    if (a->command) {
        run_command(a, m, &r);
        if (r.why) {
            fprintf(stderr, "fanout reply: no reply to a request on '%s': the command failed: %s\n",
                    m->topic, r.why);
            free(r.out);
            return 0;
        }
        if (!WIFEXITED(r.status) || WEXITSTATUS(r.status))
            fprintf(stderr, "fanout reply: the command exited with status %d (its output is the reply)\n",
                    WIFEXITED(r.status) ? WEXITSTATUS(r.status) : 128 + WTERMSIG(r.status));
        body = r.out ? r.out : "";
        len = r.len;
    }
    char why[256];
    fo_err_t err = fo_respond(c, m, body, len, po);
    free(r.out);
    if (err == FO_ERR_CLOSED)
        return -1;
    if (err) {
        fprintf(stderr, "fanout reply: answering a request on '%s' failed: %s\n", m->topic,
                cli_send_why(c, err, m->reply ? m->reply : m->topic, len, why));
        return 0;
    }
    return 1;
}

int cli_reply(int argc, char **argv)
{
    static reply_args_t a;         /* static: the -H table is a few KiB */
    memset(&a, 0, sizeof a);
    a.server = NULL;
    a.cmd_timeout = 10;
    a.max_output = 1u << 20;
    fo_sub_opts_init(&a.so);
    int rc = parse_args(&a, argc, argv);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    signal(SIGPIPE, SIG_IGN);      /* a command that stops reading its stdin */

    cli_servers_t sv;
    int src = cli_servers("reply", a.server, &sv);
    if (src != CLI_OK)
        return src;
    fo_client_t *c = cli_connect("reply", &sv, 1, on_event, NULL, NULL);
    cli_servers_free(&sv);
    if (!c)
        return CLI_RUNTIME;
    fo_sub_t *s;
    char why[256];
    fo_err_t err = fo_subscribe(c, a.topic, &a.so, &s);
    if (err) {
        rc = cli_fail("reply", CLI_RUNTIME, "subscribe to '%s' failed: %s", a.topic,
                      cli_why(c, err, why));
        fo_client_destroy(c);
        return rc;
    }
    atomic_store(&subscribed, 1);
    fo_pub_opts_t po;
    const fo_pub_opts_t *opts = cli_headers_opts(&a.headers, &po);
    uint64_t answered = 0;
    while (!a.count || answered < a.count) {
        const fo_msg_t *m;
        err = fo_sub_next(s, -1, &m);
        if (err) {
            rc = cli_fail("reply", CLI_RUNTIME, "%s", cli_why(c, err, why));
            break;
        }
        int k = answer(c, &a, m, opts);
        if (k < 0) {
            rc = cli_fail("reply", CLI_RUNTIME, "%s", cli_why(c, FO_ERR_CLOSED, why));
            break;
        }
        answered += (uint64_t)k;
    }
    /* the last answers are written before we go */
    if (rc == CLI_OK && (err = fo_client_flush(c, 5000)) != FO_OK)
        rc = cli_fail("reply", CLI_RUNTIME, "sending the last reply failed: %s",
                      cli_why(c, err, why));
    fo_client_destroy(c);
    return rc;
}
