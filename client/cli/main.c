/* main.c -- `fanout`: the command-line client of the fanout broker.
 *
 * Dispatches to one subcommand (pub, sub, bench, stats, request, reply); each parses its
 * own options and has its own --help. Shared helpers are in util.c.
 * Exit codes: 0 ok, 1 runtime error, 2 usage error.
 */
#include <stdio.h>
#include <string.h>
#include "cli.h"

#ifndef FO_VERSION
#define FO_VERSION "0.0.0"
#endif

static const char usage[] =
    "usage: fanout COMMAND [OPTIONS]\n"
    "\n"
    "The command-line client of the fanout pub/sub broker.\n"
    "\n"
    "commands:\n"
    "  pub    publish messages:      fanout pub [-s URLS] TOPIC [MESSAGE | -f FILE]\n"
    "  sub    print messages:        fanout sub [-s URLS] FILTER [-n COUNT] [-v]\n"
    "  bench  load test:             fanout bench [-s URLS] --pubs P --subs S --msgs N\n"
    "  stats  watch a broker:        fanout stats [-s URLS | --http HOST:PORT]\n"
    "  request  ask, print the reply: fanout request [-s URLS] TOPIC [MESSAGE]\n"
    "  reply  answer requests:       fanout reply [-s URLS] TOPIC (--command CMD | MESSAGE)\n"
    "\n"
    "`fanout COMMAND --help` describes a command's options; `fanout --version`\n"
    "prints the version.\n"
    "-s takes HOST, HOST:PORT, fanout://HOST[:PORT] or tls://HOST[:PORT], or a\n"
    "comma-separated list of them (tried in order); without -s, $FANOUT_SERVER,\n"
    "else " CLI_DEFAULT_SERVER ". Login: --user with --password or --token (or\n"
    "$FANOUT_USER, $FANOUT_PASSWORD, $FANOUT_TOKEN); tls:// verifies the broker\n"
    "against the system's CAs or --tls-ca FILE ($FANOUT_TLS_CA).\n"
    "Exit status: 0 ok, 1 runtime error, 2 usage error.\n";

int main(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage(NULL, "missing command");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("fanout %s\n", FO_VERSION);
        return CLI_OK;
    }
    static const struct { const char *name; int (*fn)(int, char **); } cmds[] = {
        { "pub", cli_pub }, { "sub", cli_sub },
        { "bench", cli_bench }, { "stats", cli_stats },
        { "request", cli_request }, { "reply", cli_reply },
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(cmd, cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    return cli_usage(NULL, "unknown command '%s'", cmd);
}
