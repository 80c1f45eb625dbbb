/* config.h -- fanoutd's options: one table, four sources.
 *
 * Every option is a row of the table in config.c: name, type, default,
 * bounds, help, and whether SIGHUP may change it. Values come, lowest
 * precedence first, from the defaults, the --config file (`key value`
 * lines, # comments), FANOUT_<OPTION> environment variables (upper case,
 * '-' -> '_'), and the command line (--option value or --option=value).
 * `--help` is generated from the same table, so it cannot drift.
 */
#ifndef FO_CONFIG_H
#define FO_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "fo_err.h"
#include "log.h"

#define FO_MCAST_MAX_GROUPS 32

typedef enum { FO_POLICY_DROP = 1, FO_POLICY_DISCONNECT = 2, FO_POLICY_BLOCK = 3 } fo_policy_t;

/* --tls-verify-client and --tls-user-from (docs/CONFIG.md, TLS). */
typedef enum { FO_TLS_VERIFY_NONE = 0, FO_TLS_VERIFY_OPTIONAL = 1, FO_TLS_VERIFY_REQUIRED = 2 } fo_tls_verify_t;
typedef enum { FO_TLS_USER_OFF = 0, FO_TLS_USER_CN = 1, FO_TLS_USER_SAN = 2 } fo_tls_user_from_t;

typedef struct fo_mcast_map {
    char filter[256];      /* topic filter, e.g. "prices.>"  */
    char addr[64];         /* IPv4 multicast group           */
    uint16_t port;
} fo_mcast_map_t;

typedef struct fo_config {
    char listen[128];          /* HOST:PORT of the client listener       */
    char http[128];            /* HOST:PORT of /metrics, or "off"        */
    char http_announce[128];   /* what WELCOME says instead, "" = http   */
    char config_file[512];     /* the --config file, "" = none           */
    int threads;               /* workers; 0 = online cores              */
    uint32_t max_frame;        /* largest frame body, bytes              */
    int max_conns;             /* concurrent client connections          */
    uint64_t max_memory;       /* cap on message memory, bytes           */
    uint64_t max_output;       /* per-connection output limit, bytes     */
    fo_policy_t slow_policy;     /* default for SLOW_DEFAULT subscriptions */
    uint32_t retention_msgs;   /* per-topic ring: messages               */
    uint64_t retention_bytes;  /* per-topic ring: payload bytes          */
    uint64_t retention_age_ms; /* per-topic ring: age, 0 = any           */
    uint32_t topic_linger_ms;  /* unused topics are freed after this     */
    int max_topics;            /* topics the registry will create        */
    int max_subs;              /* subscriptions per connection           */
    uint32_t ping_interval_ms; /* broker PINGs a silent peer after this  */
    uint32_t idle_timeout_ms;  /* ... and closes it after this           */
    uint32_t hello_timeout_ms; /* time allowed to send HELLO             */
    uint32_t drain_timeout_ms; /* SIGTERM: time to flush before closing  */
    uint32_t block_timeout_ms; /* longest one congestion of a block sub  */
    uint64_t read_budget;      /* bytes read per connection per event    */
    fo_log_level_t log_level;
    fo_log_format_t log_format;
    /* authentication (docs/SECURITY.md) */
    char users_file[512];      /* --users, "" = none                     */
    char user[64];             /* one-user shorthand: HELLO must carry   */
    char password[128];        /*   these (exclusive with users_file)    */
    int allow_anonymous;       /* no login on a non-loopback listener    */
    char http_token[256];      /* bearer token for /metrics, "" = none   */
    /* TLS (docs/CONFIG.md, TLS): the listener, and the files of the
     * server context (re-read on SIGHUP) */
    char tls_listen[128];      /* HOST:PORT of the TLS listener, or "off" */
    char tls_cert[512];        /* PEM certificate chain                   */
    char tls_key[512];         /* PEM private key                         */
    char tls_ca[512];          /* PEM CA bundle for client certificates   */
    fo_tls_verify_t tls_verify_client;
    fo_tls_user_from_t tls_user_from;
    /* multicast (docs/PROTOCOL.md, Multicast) */
    fo_mcast_map_t mcast[FO_MCAST_MAX_GROUPS];
    int mcast_count;
    int mcast_ttl;
    char mcast_if[64];         /* outgoing interface address, "" = default */
    int mcast_loop;            /* IP_MULTICAST_LOOP                         */
    uint32_t max_datagram;     /* UDP payload limit, bytes                  */
    /* cluster (docs/CLUSTER.md) */
    char cluster_listen[128];  /* HOST:PORT of the peer listener, or "off" */
    char cluster_peers[1024];  /* HOST:PORT and dns:NAME:PORT entries     */
    char node_id[65];          /* "" = the hostname                       */
    char cluster_advertise[128]; /* the client address peers hand out     */
    char cluster_secret[256];  /* the shared cluster credential           */
    char cluster_secret_file[512];
    uint64_t cluster_max_output; /* data queued per peer link, bytes      */
    uint32_t cluster_resolve_ms; /* how often dns: peers are re-resolved  */
    int cluster_tls;           /* links over mutual TLS                   */
    char cluster_tls_ca[512];  /* peers' CA bundle, "" = --tls-ca         */
    /* bookkeeping (config.c): bit i set = option i of the table was given
     * on the command line, so SIGHUP's reload keeps it (argv wins). */
    uint64_t set_by_argv;
    uint64_t set_by_file, set_by_env;  /* ... by the file, by the environment */
    int check_only;            /* --check-config: validate, summarise, exit */
} fo_config_t;

/* Fill with the defaults. */
void fo_config_defaults(fo_config_t *c);

/* Parse everything (file named by --config or FANOUT_CONFIG, environment,
 * argv) into c. Returns FO_OK; FO_ERR_INVAL with a one-line message in
 * err (size errlen) on a bad option or value; an unknown option's message
 * suggests the nearest one ("did you mean --max-frame?"). *exit_now is
 * set to 1 when --help or --version was printed to `out` (the caller
 * exits 0). With --check-config (-t) everything is loaded and checked as
 * usual and c->check_only is set: the caller prints fo_config_summary
 * and exits 0 instead of starting.
 * err is the whole line, "fanoutd: " included, without a newline.
 * envp NULL = environ. `threads` stays 0 when so configured (the caller
 * asks sysconf). A listen/http host given as ":PORT" becomes 0.0.0.0.
 * Cross-checks: idle-timeout > ping-interval; tls-listen needs tls-cert
 * and tls-key; tls-verify-client optional/required needs tls-ca;
 * tls-user-from needs tls-verify-client optional/required; user and
 * password need each other; user and users are exclusive; cluster-secret
 * and cluster-secret-file are exclusive; cluster-listen must not be the
 * client listener's address; cluster-tls needs tls-cert, tls-key and
 * cluster-tls-ca or tls-ca. */
FO_MUST_CHECK fo_err_t fo_config_load(fo_config_t *c, int argc, char **argv, char **envp,
                        FILE *out, int *exit_now, char *err, size_t errlen);

/* One option whose value SIGHUP's re-read differs from the running one.
 * old_v/new_v are the values as --help writes them ("1MiB", "30s"); a
 * secret (password) is "(hidden)". */
typedef enum {
    FO_CHANGE_APPLIED = 1,     /* reloadable: takes effect now            */
    FO_CHANGE_RESTART = 2,     /* not reloadable: the old value stays     */
    FO_CHANGE_ARGV    = 3,     /* reloadable, but the command line's value
                                  wins (the new value is ignored)         */
} fo_change_t;
typedef void (*fo_config_change_cb)(void *ud, const char *name, const char *old_v,
                                    const char *new_v, fo_change_t kind);

/* fo_config_reload, calling cb (may be NULL) once per option whose value
 * in the file or environment now differs from c's, in table order, before
 * returning FO_OK; nothing is reported when the reload fails (the error is
 * fo_config_reload's). */
FO_MUST_CHECK fo_err_t fo_config_reload_report(fo_config_t *c, char **envp,
                                               fo_config_change_cb cb, void *ud,
                                               char *err, size_t errlen);

/* FANOUT_* variables in envp that name no option and are not the client's
 * or the compose file's own (FANOUT_SERVER, FANOUT_USER, FANOUT_PASSWORD,
 * FANOUT_TOKEN; FANOUT_PORT, FANOUT_HTTP_PORT, FANOUT_TAG, FANOUT_DEMO_*,
 * FANOUT_BENCH_MSGS): fn gets one line per variable, e.g.
 * "FANOUT_MAX_FRAMES is not a fanoutd option (ignored); did you mean
 * FANOUT_MAX_FRAME?". Returns how many. envp NULL = environ. */
int fo_config_env_warnings(char **envp, void (*fn)(void *ud, const char *line), void *ud);

/* The one line --check-config prints, without "fanoutd: " or newline:
 * "configuration OK: clients on 0.0.0.0:7400, http 127.0.0.1:7401, ...;
 * 3 options from /etc/fanout/fanoutd.conf, 1 from the environment, 2 from
 * the command line". */
void fo_config_summary(const fo_config_t *c, char *out, size_t len);

/* Re-read the file and environment for SIGHUP: only options marked
 * reloadable change in `c`; others keep their value, as do options given
 * on the command line (they still win). All or nothing: on an error
 * (message in err) c is unchanged. Not thread-safe: reload a copy the
 * caller owns, then hand the new values to whoever reads them. */
FO_MUST_CHECK fo_err_t fo_config_reload(fo_config_t *c, char **envp, char *err, size_t errlen);

/* Set one option by name from a string (the table's parser and bounds; a
 * list option appends). Exposed for tests. */
FO_MUST_CHECK fo_err_t fo_config_set(fo_config_t *c, const char *name, const char *value,
                       char *err, size_t errlen);

/* Print `--help` text to out. */
void fo_config_usage(FILE *out);

/* Parsers shared with the CLI: "64k", "1MiB", "2G" -> bytes; "500ms",
 * "30s", "2m" (bare number = ms) -> milliseconds. */
FO_MUST_CHECK fo_err_t fo_parse_size(const char *s, uint64_t *out);
FO_MUST_CHECK fo_err_t fo_parse_duration_ms(const char *s, uint64_t *out);

#endif
