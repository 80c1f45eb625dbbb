/* cli.h -- what the `fanout` subcommands share: exit codes, messages,
 * number parsing, connecting.
 *
 * Every failure prints exactly one line "fanout CMD: what went wrong" on
 * stderr and exits 1 (runtime) or 2 (usage).
 */
#ifndef FO_CLI_H
#define FO_CLI_H

#include <stdint.h>
#include <stdio.h>
#include "fanout.h"

enum { CLI_OK = 0, CLI_RUNTIME = 1, CLI_USAGE = 2 };

#define CLI_DEFAULT_SERVER "127.0.0.1:7400"
#define CLI_MAX_SERVERS    32
/* What every command's --help says about -s. */
#define CLI_SERVER_HELP \
    "  -s, --server URLS       broker(s): HOST, HOST:PORT, fanout://HOST[:PORT] or\n" \
    "                          tls://HOST[:PORT]; a comma-separated list is tried in\n" \
    "                          order (failover). Default: $FANOUT_SERVER, else\n" \
    "                          " CLI_DEFAULT_SERVER "\n"

/* Login and TLS: what every command that connects takes besides -s, as
 * long options (getopt codes CLI_OPT_*, taken by cli_conn_opt) with the
 * environment as the fallback of each, and what its --help says. */
#define CLI_CONN_HELP \
    "      --user NAME         log in as NAME. Default: $FANOUT_USER\n" \
    "      --password SECRET   with this password (ps shows a command line:\n" \
    "                          prefer $FANOUT_PASSWORD, the default)\n" \
    "      --token SECRET      with this token instead. Default: $FANOUT_TOKEN\n" \
    "      --tls-ca FILE       tls://: trust the CAs in FILE (PEM) instead of the\n" \
    "                          system's. Default: $FANOUT_TLS_CA\n" \
    "      --tls-cert FILE     tls://: present this client certificate (PEM).\n" \
    "                          Default: $FANOUT_TLS_CERT\n" \
    "      --tls-key FILE      its key (PEM). Default: $FANOUT_TLS_KEY, else the\n" \
    "                          --tls-cert file\n" \
    "      --tls-insecure      tls://: do NOT verify the broker's certificate\n" \
    "                          (anyone on the path can read and change the\n" \
    "                          connection; tests only)\n"
enum {
    CLI_OPT_USER = 0x1000, CLI_OPT_PASSWORD, CLI_OPT_TOKEN, CLI_OPT_TLS_CA, CLI_OPT_TLS_CERT,
    CLI_OPT_TLS_KEY, CLI_OPT_TLS_INSECURE
};
#define CLI_CONN_OPTIONS \
    { "user", required_argument, NULL, CLI_OPT_USER }, \
    { "password", required_argument, NULL, CLI_OPT_PASSWORD }, \
    { "token", required_argument, NULL, CLI_OPT_TOKEN }, \
    { "tls-ca", required_argument, NULL, CLI_OPT_TLS_CA }, \
    { "tls-cert", required_argument, NULL, CLI_OPT_TLS_CERT }, \
    { "tls-key", required_argument, NULL, CLI_OPT_TLS_KEY }, \
    { "tls-insecure", no_argument, NULL, CLI_OPT_TLS_INSECURE }
/* Take ch (getopt_long's) if it is one of CLI_CONN_OPTIONS: 1, else 0.
 * A --password or --token value is copied and blanked in argv, so that
 * ps shows it only for the moment before. */
int cli_conn_opt(int ch, char *optarg);
/* Fill o's credentials and TLS fields from those options and the
 * environment (pointers into argv, the environment or static copies). A
 * --tls-insecure is warned about on stderr, as "fanout CMD: warning: ...". */
void cli_conn_fill(const char *cmd, fo_client_opts_t *o);

int cli_pub(int argc, char **argv);
int cli_sub(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_stats(int argc, char **argv);
int cli_request(int argc, char **argv);
int cli_reply(int argc, char **argv);

/* Print "fanout CMD: ..." on stderr, then return code (for `return`). */
int cli_fail(const char *cmd, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A usage mistake: one line, with a pointer to --help; returns CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Strict number parsing: the whole string, in range. 0 ok, -1 bad. */
int cli_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
int cli_double(const char *s, double min, double max, double *out);
/* "drop" | "disconnect" | "block" -> fo_slow_t; nonzero when unknown. */
int cli_slow(const char *s, fo_slow_t *out);

/* The brokers to talk to: -s's value (NULL when not given), else
 * $FANOUT_SERVER, else CLI_DEFAULT_SERVER; a comma-separated list, each
 * lexed by proto/addr.h (HOST, HOST:PORT, fanout://, tls://). */
typedef struct cli_servers {
    char *buf;                             /* owned: the list, cut at commas */
    const char *list[CLI_MAX_SERVERS];     /* point into buf                 */
    size_t n;
    const char *from;                      /* "-s", "FANOUT_SERVER", "default" */
} cli_servers_t;
/* CLI_OK, or CLI_USAGE after printing why (a bad address is a usage
 * error: "fanout sub: -s: bad address 'x:y:z' (want HOST, ...)"). */
int cli_servers(const char *cmd, const char *arg, cli_servers_t *out);
void cli_servers_free(cli_servers_t *s);

/* Connect with the CLI's defaults (name "fanout-CMD", credentials and
 * TLS from cli_conn_fill, no reconnect unless `reconnect`): the servers
 * are tried in order. On failure prints the one line ("fanout sub: the
 * broker refused the login: bad credentials") and returns NULL. */
fo_client_t *cli_connect(const char *cmd, const cli_servers_t *servers, int reconnect,
                         fo_event_cb_t on_event, fo_gap_cb_t on_gap, void *ud);

/* A size as people write it: "1 MiB", "64 KiB", "1.5 MiB", "1000 B". */
const char *cli_size(uint64_t n, char *buf, size_t len);

/* The line for a message the broker's max-frame refuses (FO_ERR_RANGE):
 * "2000000 B is over the broker's max-frame of 1 MiB". */
const char *cli_too_large(fo_client_t *c, const char *topic, size_t len, char *buf, size_t blen);

/* The best text for a failed call: the broker's ERROR text if there is
 * one, else fo_strerror(err). buf must hold 256 bytes. */
const char *cli_why(fo_client_t *c, fo_err_t err, char *buf);
/* The same for a failed publish, request or reply of len payload bytes
 * to topic: FO_ERR_RANGE is told as cli_too_large does. */
const char *cli_send_why(fo_client_t *c, fo_err_t err, const char *topic, size_t len, char *buf);

/* msgfmt.c: headers and reply addresses on the command line. */
/* -H KEY:VALUE arguments, kept for fo_pub_opts_t (borrowing argv). */
typedef struct cli_headers {
    fo_header_t h[FO_HEADERS_MAX];
    char keys[FO_HEADERS_MAX][FO_HEADER_KEY_MAX + 1];
    size_t n;
} cli_headers_t;
/* Add one -H argument: 0, or CLI_USAGE (said why). */
int cli_header_arg(const char *cmd, const char *arg, cli_headers_t *h);
/* po filled with h's headers, or NULL when there are none. */
const fo_pub_opts_t *cli_headers_opts(cli_headers_t *h, fo_pub_opts_t *po);
/* The verbose line "TOPIC [k=v ...] payload" (the topic only when
 * with_topic), escaped as msgfmt.c says. */
void cli_print_verbose(FILE *o, const fo_msg_t *m, int with_topic);
/* JSON members "reply":...,"headers":[...], (each only when present,
 * each followed by a comma). */
void cli_json_extras(FILE *o, const fo_msg_t *m);
void cli_json_str(FILE *o, const char *p, size_t n);
void cli_base64(FILE *o, const unsigned char *p, size_t n);
int cli_utf8_valid(const unsigned char *p, size_t n);
/* The bench's --request mode (bench_rr.c). */
int cli_bench_request(const cli_servers_t *servers, uint64_t requesters, uint64_t responders,
                      uint64_t requests, uint64_t size, double duration, int json);

#endif
