/* worker.h -- one event-loop thread and everything it owns.
 *
 * A worker owns an epoll fd, its connections (a connection never moves),
 * an inbox (other threads post to it), a buffer cache for socket reads,
 * an arena for decoding, outboxes to the other workers (flushed once per
 * loop iteration), a multicast sender and its stats. Nothing here is
 * touched by another thread except the inbox and the stats (read-only).
 */
#ifndef FO_WORKER_H
#define FO_WORKER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>
#include "arena.h"
#include "broker.h"
#include "inbox.h"
#include "stats.h"

struct fo_conn;

#define FO_READ_BLOCK   (64u * 1024)   /* buffer cache block size      */
#define FO_BUFCACHE_MAX 64             /* blocks kept per worker       */
#define FO_IOV_MAX      1024           /* iovecs per writev (IOV_MAX)  */
#define FO_WPACK        (64u * 1024)   /* bytes of small messages packed per writev */

typedef struct fo_outbox {
    fo_item_t *items;
    size_t len, cap;
} fo_outbox_t;

struct fo_tcache;
struct fo_users;

/* conn id -> value, open addressing (worker.c's, for moved connections). */
typedef struct fo_idmap {
    uint64_t *keys;              /* 0 = empty, 1 = deleted            */
    uintptr_t *vals;
    uint32_t cap, used, live;    /* cap: 0 or a power of two          */
} fo_idmap_t;

typedef struct fo_worker {
    int id;
    fo_broker_t *b;              /* borrowed                          */
    pthread_t thread;
    int epfd;
    fo_inbox_t inbox;
    fo_stats_t stats;
    fo_arena_t arena;            /* reset after each read batch       */
    /* connections: slot table for O(1) lookup by id */
    struct fo_conn **slots;
    uint32_t nslots, free_head;  /* free_head: first free slot + 1    */
    uint32_t *free_next;
    struct fo_conn *all;         /* every connection (timers, drain)  */
    struct fo_conn *dirty;       /* connections with output to write  */
    struct fo_conn *paused;      /* publishers paused (flow control)  */
    struct fo_conn *moving;      /* connections leaving after this pass's
                                  * outbox flush (fo_worker_move)        */
    fo_idmap_t immigrants;       /* id -> fo_conn_t* moved here         */
    fo_idmap_t emigrants;        /* id -> worker index it moved to      */
    struct fo_conn *tls_pending; /* TLS connections whose session holds
                                  * input epoll cannot see: read on the
                                  * next pass without waiting           */
    int nconns;
    /* outboxes to each worker (own index unused) */
    fo_outbox_t *outbox;
    fo_item_t *spare;            /* swapped with the inbox array      */
    size_t spare_cap;
    /* socket read buffers */
    void *bufcache[FO_BUFCACHE_MAX];
    int nbufcache;
    /* writev scratch */
    struct iovec iov[FO_IOV_MAX];
    uint8_t prefix[(FO_IOV_MAX / 2) * 16];
    uint8_t wpack[FO_WPACK];     /* small messages copied for one write */
    fo_unref_batch_t unrefs;     /* written messages' references, dropped
                                  * at the end of the pass (msg.h)      */
    struct fo_grave *graves;     /* owned: output queues of closed
                                  * connections, freed a slice per pass
                                  * (fo_worker_bury)                    */
    uint8_t tls_record[16384];   /* TLS record packing (FO_TLS_RECORD) */
    fo_mcast_tx_t *mtx;          /* owned                              */
    struct fo_tcache *tcache;    /* owned: name -> fo_topic_t* (tcache.h) */
    struct fo_users *users;      /* login.c's: a reference on the users
                                  * table this worker logs in against
                                  * (NULL = none: anonymous)           */
    struct fo_pick *picks;       /* owned: queue-group picks scratch   */
    uint32_t picks_cap;          /*   (route.c)                        */
    uint64_t now_ms;             /* CLOCK_MONOTONIC, per iteration     */
    /* reclamation (broker.c): the reclaim epoch this worker has reached
     * at its last quiescent point (the end of a loop iteration, holding
     * no topic pointer it has not re-checked), and the registry's death
     * count it last purged its caches for */
    _Alignas(64) _Atomic uint64_t seen_epoch;
    uint64_t purged_deaths;
    uint64_t read_time_ns;       /* CLOCK_REALTIME at the current read */
    uint64_t next_tick_ms;
    int drain_phase;             /* 0 running, 1 stopped reading       */
    uint64_t drain_deadline_ms;
} fo_worker_t;

FO_MUST_CHECK fo_err_t fo_worker_create(fo_broker_t *b, int id, fo_worker_t **out);
FO_MUST_CHECK fo_err_t fo_worker_start(fo_worker_t *w);
void fo_worker_join(fo_worker_t *w);
void fo_worker_destroy(fo_worker_t *w);      /* after join; NULL ok */
/* One loop iteration on the calling thread (the worker's thread runs
 * nothing else; tests drive a worker that has no thread with it): wait at
 * most max_wait_ms (< 0: until the next timer tick) for events, handle
 * them, post the outboxes, write dirty connections, run the timers.
 * Returns 1 when a drain is complete (the loop should end). */
int fo_worker_step(fo_worker_t *w, int max_wait_ms);
/* Wake the worker (drain, reload). Any thread. */
void fo_worker_wake(fo_worker_t *w);

/* Worker thread only: */
void fo_worker_post(fo_worker_t *w, int to, const fo_item_t *it);  /* outbox */
void fo_worker_mark_dirty(fo_worker_t *w, struct fo_conn *c);
/* The connection table: attach gives c its slot and id (c->id, c->slot)
 * and puts it on w->all (FO_ERR_NOMEM, FO_ERR_BUSY at 2^24 slots);
 * detach takes it off every list of w (all, dirty) and frees the slot. */
FO_MUST_CHECK fo_err_t fo_worker_attach(fo_worker_t *w, struct fo_conn *c);
void fo_worker_detach(fo_worker_t *w, struct fo_conn *c);
/* Attach a connection that keeps its id (one moving here, or back after
 * a failed hand-off): a slot, w->all, and w->immigrants when it came from
 * elsewhere. FO_ERR_NOMEM, FO_ERR_BUSY. */
FO_MUST_CHECK fo_err_t fo_worker_attach_moved(fo_worker_t *w, struct fo_conn *c);
/* Publishers paused by flow control (conn.c decides, the worker keeps the
 * list and resumes them when their topic clears). */
void fo_worker_pause(fo_worker_t *w, struct fo_conn *c);
void fo_worker_unpause(fo_worker_t *w, struct fo_conn *c);
/* A TLS connection stopped by the read budget with input still inside
 * its session (conn.c): read it again on the next pass (no epoll wait
 * while the list is not empty). Idempotent; detach takes it off. */
void fo_worker_tls_pending(fo_worker_t *w, struct fo_conn *c);
/* The connection with this id on w (it may have moved here), or NULL. */
struct fo_conn *fo_worker_conn(fo_worker_t *w, uint64_t conn_id);
/* Moving a connection to the worker where its traffic goes: a pure
 * publisher (no subscription, open, not paused or held) whose topics'
 * subscribers all live on worker `to` is moved there, once in its life,
 * so its messages need no hand-off between threads. Asked by route.c;
 * done at the end of this pass, after the outboxes are posted (so every
 * message it published here is in the other workers' inboxes before it
 * can publish from there: per-topic order holds), and only when `to` does
 * not hold more connections than w plus one. It keeps its id: items for
 * it that still reach w are forwarded (fo_worker_forward). */
void fo_worker_move(fo_worker_t *w, struct fo_conn *c, int to);
/* An item for a connection that moved away from w: re-posted to its
 * worker (1), or 0 when w knows no such connection. */
int fo_worker_forward(fo_worker_t *w, const fo_item_t *it);
void *fo_worker_buf_get(fo_worker_t *w);
void fo_worker_buf_put(fo_worker_t *w, void *block);
/* Take over a closed connection's output queue (q is left empty). A long
 * one (a subscriber that went away holding a million deliveries) is freed
 * FO_GRAVE_SLICE entries per loop pass, so the worker's other connections
 * are not stalled for the whole of it (bench_isolation "pending": 40 ms);
 * a short one, or one that cannot be queued (no memory), at once. */
struct fo_outq;
void fo_worker_bury(fo_worker_t *w, struct fo_outq *q);

#endif
