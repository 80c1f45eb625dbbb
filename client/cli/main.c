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
    "  pub    publish messages:      fanout pub -s HOST:PORT TOPIC [MESSAGE]\n"
    "  sub    print messages:        fanout sub -s HOST:PORT FILTER [-n COUNT]\n"
    "  bench  load test:             fanout bench -s HOST:PORT --pubs P --subs S --msgs N --size B\n"
    "  stats  broker metrics table:  fanout stats -s HOST:HTTP_PORT\n"
    "  request  ask and print the reply: fanout request -s HOST:PORT TOPIC [MESSAGE]\n"
    "  reply  answer requests:       fanout reply -s HOST:PORT TOPIC (--command CMD | MESSAGE)\n"
    "\n"
    "`fanout COMMAND --help` describes a command's options; `fanout --version`\n"
    "prints the version.\n"
    "Broker address default: " CLI_DEFAULT_SERVER " (stats: " CLI_DEFAULT_HTTP ").\n"
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
