/* inbox.h -- how threads talk to a worker: a queue plus an eventfd.
 *
 * Any thread appends a batch of items under the inbox mutex; the owning
 * worker swaps the whole array out in one lock and works on it unlocked.
 * The eventfd is written only when the inbox goes from empty to non-empty,
 * so a burst of batches costs the worker one wake-up (coalesced).
 *
 * Items carry a new connection (from the acceptor; plain or TLS), a message to fan out
 * to the worker's local subscribers of its topic (one reference per worker
 * per message, not per subscriber), or a message for one queue-group
 * member on that worker, or a control message from another thread.
 */
#ifndef FO_INBOX_H
#define FO_INBOX_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"
#include "msg.h"

typedef enum {
    FO_ITEM_CONN = 1,     /* fd: a new connection to adopt            */
    FO_ITEM_FANOUT,       /* msg: deliver to local bindings of topic  */
    FO_ITEM_TARGET,       /* msg: deliver to (conn_id, sid)           */
    FO_ITEM_REPLY,        /* msg: a reply for connection conn_id      */
    FO_ITEM_CONN_TLS,     /* fd: a new connection from --tls-listen   */
    FO_ITEM_CTL,          /* ctl: a control message (login.c: a login's
                             verdict, a reloaded users table)          */
    FO_ITEM_ADOPT,        /* conn: a connection moved to this worker
                             (worker.c, fo_worker_move)                */
    FO_ITEM_FORGET,       /* conn_id: a connection that moved from this
                             worker is gone (stop forwarding to it)    */
} fo_item_kind_t;

/* The first member of every control message: run handles it on the
 * receiving worker (and frees it); drop frees one that is never handled
 * (the inbox is destroyed with it inside). */
typedef struct fo_ctl {
    void (*run)(struct fo_ctl *self, void *worker);   /* fo_worker_t * */
    void (*drop)(struct fo_ctl *self);
} fo_ctl_t;

typedef struct fo_item {
    uint32_t kind;
    uint32_t sid;
    union { fo_msg_t *msg; int fd; fo_ctl_t *ctl; struct fo_conn *conn; } u;
    uint64_t conn_id;
} fo_item_t;

typedef struct fo_inbox {
    pthread_mutex_t lock;
    fo_item_t *items;     /* owned */
    size_t len, cap;
    int efd;              /* eventfd, owned */
} fo_inbox_t;

FO_MUST_CHECK fo_err_t fo_inbox_init(fo_inbox_t *ib);
void fo_inbox_destroy(fo_inbox_t *ib);    /* unrefs pending messages, closes fds */

/* Append n items (copied); wakes the owner if the inbox was empty. */
FO_MUST_CHECK fo_err_t fo_inbox_post(fo_inbox_t *ib, const fo_item_t *items, size_t n);

/* Owner: take everything. *items is swapped with the caller's spare array
 * (both owned by the caller's side in turn); returns the count. */
size_t fo_inbox_take(fo_inbox_t *ib, fo_item_t **items, size_t *cap);

/* Items waiting (takes the lock). */
size_t fo_inbox_pending(fo_inbox_t *ib);

/* Owner: clear the eventfd after waking. */
void fo_inbox_ack(fo_inbox_t *ib);

#endif
