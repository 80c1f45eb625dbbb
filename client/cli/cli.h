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
#define CLI_DEFAULT_HTTP   "127.0.0.1:7401"

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

/* Connect to server with the CLI's defaults (name "fanout-CMD", no
 * reconnect unless `reconnect`). On failure prints the one line and
 * returns NULL. */
fo_client_t *cli_connect(const char *cmd, const char *server, int reconnect,
                         fo_event_cb_t on_event, fo_gap_cb_t on_gap, void *ud);

/* The best text for a failed call: the broker's ERROR text if there is
 * one, else fo_strerror(err). buf must hold 256 bytes. */
const char *cli_why(fo_client_t *c, fo_err_t err, char *buf);

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
int cli_bench_request(const char *server, uint64_t requesters, uint64_t responders,
                      uint64_t requests, uint64_t size, double duration, int json);

#endif
