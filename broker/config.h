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
    /* bookkeeping (config.c): bit i set = option i of the table was given
     * on the command line, so SIGHUP's reload keeps it (argv wins). */
    uint64_t set_by_argv;
} fo_config_t;

/* Fill with the defaults. */
void fo_config_defaults(fo_config_t *c);

/* Parse everything (file named by --config or FANOUT_CONFIG, environment,
 * argv) into c. Returns FO_OK; FO_ERR_INVAL with a one-line message in
 * err (size errlen) on a bad option or value. *exit_now is set to 1 when
 * --help or --version was printed to `out` (the caller exits 0).
 * err is the whole line, "fanoutd: " included, without a newline.
 * envp NULL = environ. `threads` stays 0 when so configured (the caller
 * asks sysconf). A listen/http host given as ":PORT" becomes 0.0.0.0.
 * Cross-checks: idle-timeout > ping-interval; tls-listen needs tls-cert
 * and tls-key; tls-verify-client optional/required needs tls-ca;
 * tls-user-from needs tls-verify-client optional/required; user and
 * password need each other; user and users are exclusive; cluster-secret
 * and cluster-secret-file are exclusive; cluster-listen must not be the
 * client listener's address. */
FO_MUST_CHECK fo_err_t fo_config_load(fo_config_t *c, int argc, char **argv, char **envp,
                        FILE *out, int *exit_now, char *err, size_t errlen);

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
