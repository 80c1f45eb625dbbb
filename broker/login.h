/* login.h -- who a connection is: HELLO, authentication, WELCOME, and
 * what a reload of the users file changes for those logged in.
 *
 * The users table (users.h) comes from --users FILE, or from the
 * --user/--password shorthand (one user with every right), or there is
 * none: then every client is anonymous with every right, and the acceptor
 * serves only loopback unless --allow-anonymous (acceptor.c).
 *
 * A HELLO, with a table:
 *   - a verified client certificate whose name (--tls-user-from) is a user
 *     of the table logs in as that user, no secret needed (HELLO.user, if
 *     given, must be the same name);
 *   - else HELLO.user with HELLO.password or HELLO.token: a success cached
 *     by the auth pool logs in at once; anything else is verified on an
 *     auth thread (auth.h). Until the verdict the connection reads
 *     nothing more (frames already read wait in its buffer);
 *   - anything else, and every failure, is ERR_AUTH "bad credentials",
 *     answered after the delay the auth pool gives for the address and
 *     the name. A busy pool, or more than FO_LOGIN_PER_ADDR logins of one
 *     address waiting, is ERR_AUTH at once with a text that says so.
 *   - a login over the user's connection limit is ERR_MAX_CONNS.
 *
 * Reload (SIGHUP, fo_login_reload): the main thread loads the file again;
 * a bad file keeps the old table. Each worker gets the new table (a
 * control message) and, for each connection logged in: a removed user or
 * a changed secret (for a login by secret) closes it with ERR_AUTH; a
 * subscription the new permissions do not allow any more ends with ERROR
 * ERR_PERMISSION (sid), as do block and multicast subscriptions whose
 * right was taken away; a subscription that stays is re-bound to exactly
 * the topics it may read now; publish decisions are made again. The old
 * table is freed when its last connection lets go.
 *
 * Threading: fo_login_init/reload/stop on the main thread; the rest on
 * the worker owning the connection (verdicts arrive through its inbox).
 */
#ifndef FO_LOGIN_H
#define FO_LOGIN_H

#include "conn.h"
#include "fanout.pb-c.h"

#define FO_LOGIN_PER_ADDR 16          /* logins of one address verifying at once */
#define FO_LOGIN_WAIT_MS 30000        /* longest wait for a verdict               */

/* Load the users table (--users or --user/--password) and start the auth
 * pool. FO_OK with no table when neither is configured. FO_ERR_IO,
 * FO_ERR_INVAL (one line in err, naming the file and line), FO_ERR_NOMEM. */
FO_MUST_CHECK fo_err_t fo_login_init(fo_broker_t *b, char *err, size_t errlen);
/* SIGHUP: re-read --users; the new table goes to every worker. Logs the
 * outcome; a file that does not load changes nothing. */
void fo_login_reload(fo_broker_t *b);
/* Stop the auth pool (pending logins are cancelled); before the workers
 * are joined. Then fo_login_free after they are. */
void fo_login_stop(fo_broker_t *b);
void fo_login_free(fo_broker_t *b);

/* The auth side of /metrics (main thread): 0 when no users are configured. */
struct fo_metrics_auth;
int fo_login_metrics(fo_broker_t *b, struct fo_metrics_auth *out);

/* A worker's reference on the table it applies (worker create/destroy). */
struct fo_users *fo_login_table(fo_broker_t *b);

/* The HELLO of c (HELLO_WAIT): answers WELCOME, fails, or waits. */
void fo_login_hello(fo_conn_t *c, const Fanout__Frame *f);
/* Timers (from fo_conn_tick): a failed login's delayed answer, the
 * longest wait for a verdict. */
void fo_login_tick(fo_conn_t *c);
/* c is being freed: its connection count back, its table reference. */
void fo_login_release(fo_conn_t *c);
/* c moved here from another worker (worker.c immigrate): if this worker
 * already applied a newer users table than c was logged in against (the
 * reload reached the old worker after c left, this one before c came),
 * apply it to c now, as the reload does to the connections it finds. */
void fo_login_adopt(fo_conn_t *c);

/* Publish permission for c (anonymous: yes). 1 = allowed. */
int fo_login_may_publish(const fo_conn_t *c, const char *topic, size_t len);
/* The subscribe permissions of c's user, NULL = everything. */
const struct fo_acl *fo_login_sub_acl(const fo_conn_t *c);
/* Does c's user have this right (FO_RIGHT_*)? Anonymous: yes. */
int fo_login_has_right(const fo_conn_t *c, unsigned right);
/* The name of c's user, or NULL (anonymous). */
const char *fo_login_user_name(const fo_conn_t *c);

#endif
