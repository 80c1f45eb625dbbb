/* request.c -- `fanout request`: send one request and print its reply.
 *
 * A request is a publish whose reply address is this connection's inbox
 * (fo_request): the first answer is printed, payload as sent plus a
 * newline (with -v, its headers first: "[k=v ...] payload"). Nobody
 * subscribed to TOPIC and no reply within --timeout are runtime errors
 * (exit 1), each said in one line.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "cli.h"

static const char help[] =
    "usage: fanout request [-s URLS] TOPIC [MESSAGE] [--timeout SEC] [-H K:V]...\n"
    "\n"
    "Send MESSAGE (default: empty) to TOPIC as a request and print the reply's\n"
    "payload. Whoever subscribes to TOPIC answers (`fanout reply`, or fo_respond\n"
    "in a program); with several responders in a queue group, one of them.\n"
    "\n"
    CLI_SERVER_HELP
    CLI_CONN_HELP
    "  -t, --timeout SEC       wait at most SEC seconds for the reply (default 5)\n"
    "  -H, --header K:V        give the request header K with value V (all after\n"
    "                          the first ':'); repeatable, at most 32\n"
    "  -v, --verbose           print the reply's headers before its payload:\n"
    "                          [k=v ...] payload (as `fanout sub -v`)\n"
    "  -h, --help              this text\n"
    "\n"
    "Exit status: 0 reply printed, 1 runtime error (no responders, no reply in\n"
    "time, connection), 2 usage.\n";

int cli_request(int argc, char **argv)
{
    static const struct option opts[] = {
        { "server", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 't' },
        { "header", required_argument, NULL, 'H' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        CLI_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    const char *server = NULL;
    double timeout = 5;
    int verbose = 0;
    cli_headers_t hs = { .n = 0 };
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":s:t:H:vh", opts, NULL)) != -1) {
        if (cli_conn_opt(ch, optarg))
            continue;              /* --user, --tls-ca, ... */
        switch (ch) {
        case 's': server = optarg; break;
        case 't':
            if (cli_double(optarg, 0.001, 86400, &timeout))
                return cli_usage("request", "--timeout wants seconds > 0, not '%s'", optarg);
            break;
        case 'H':
            if (cli_header_arg("request", optarg, &hs))
                return CLI_USAGE;
            break;
        case 'v': verbose = 1; break;
        case 'h': fputs(help, stdout); return CLI_OK;
        case ':': return cli_usage("request", "option '%s' needs a value", argv[optind - 1]);
        default: return cli_usage("request", "unknown option '%s'", argv[optind - 1]);
        }
    }
    int npos = argc - optind;
    if (npos < 1)
        return cli_usage("request", "missing TOPIC");
    if (npos > 2)
        return cli_usage("request", "too many arguments (quote a MESSAGE with spaces)");
    const char *topic = argv[optind];
    const char *message = npos == 2 ? argv[optind + 1] : "";

    cli_servers_t sv;
    int rc = cli_servers("request", server, &sv);
    if (rc != CLI_OK)
        return rc;
    fo_client_t *c = cli_connect("request", &sv, 0, NULL, NULL, NULL);
    cli_servers_free(&sv);
    if (!c)
        return CLI_RUNTIME;
    fo_pub_opts_t po;
    fo_reply_t *r = NULL;
    fo_err_t err = fo_request(c, topic, message, strlen(message), cli_headers_opts(&hs, &po),
                              (int)(timeout * 1000), &r);
    rc = CLI_OK;
    char why[256];
    if (err == FO_ERR_NO_RESPONDERS)
        rc = cli_fail("request", CLI_RUNTIME, "no responders for '%s'", topic);
    else if (err == FO_ERR_TIMEOUT)
        rc = cli_fail("request", CLI_RUNTIME, "no reply from '%s' within %g s", topic, timeout);
    else if (err)
        rc = cli_fail("request", CLI_RUNTIME, "request to '%s' failed: %s", topic,
                      cli_send_why(c, err, topic, strlen(message), why));
    else if (verbose)
        cli_print_verbose(stdout, &r->msg, 0);
    else {
        fwrite(r->msg.payload, 1, r->msg.payload_len, stdout);
        fputc('\n', stdout);
    }
    fflush(stdout);
    fo_reply_free(r);
    fo_client_destroy(c);
    return rc;
}
