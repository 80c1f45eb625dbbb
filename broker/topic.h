/* topic.h -- topic names, filters, and the registry that binds them.
 *
 * The rules for names and filters, and matching, are in
 * proto/topic_name.h (shared with the client library).
 *
 * The registry maps names to fo_topic_t and holds every subscription. When
 * a subscription meets a topic (either comes first) a binding is made:
 *  - a plain subscription's binding goes on topic->local[w], the list of
 *    worker w (the subscriber's worker). Only w walks that list, with no
 *    lock; it is changed by w under the topic lock, or by the creator of a
 *    topic before the topic is visible.
 *  - a queue subscription's binding joins the topic's queue group of that
 *    name; publishers pick one member per message, under the topic lock.
 * A binding records from_seq: messages below it predate the subscription
 * and are not delivered by fan-out (replay covers them when asked).
 *
 * Topics come and go: an idle one (no binding, nothing retained, no
 * publish for --topic-linger) is taken out of the registry by
 * fo_registry_sweep and marked dead, and freed by fo_registry_reclaim only
 * once every worker has passed enough quiescent points that none can still
 * hold its pointer (epoch-based reclamation; broker.c drives the epochs,
 * worker.c forgets dead topics at its quiescent points). A worker that
 * finds a cached topic dead, or sees t->dead under the topic lock, looks
 * the name up again. A topic freed and created again continues its
 * sequence numbers (a tombstone keeps the last one, for the most recent
 * 65,536 freed topics).
 *
 * Locks (docs/ARCHITECTURE.md, Lock order): registry rwlock, then one topic
 * mutex, then (inside it) a worker inbox mutex. Never the reverse.
 */
#ifndef FO_TOPIC_H
#define FO_TOPIC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"
#include "ring.h"
#include "topic_name.h"

typedef struct fo_topic fo_topic_t;
typedef struct fo_sub fo_sub_t;
typedef struct fo_binding fo_binding_t;
typedef struct fo_qgroup fo_qgroup_t;
struct fo_conn;
struct fo_acl;
struct fo_user_counters;

/* A subscription. Owned by its connection (conn.c); registered here. */
struct fo_sub {
    uint32_t sid;
    uint8_t policy;           /* fo_policy_t                                */
    uint8_t multicast;        /* DELIVERY_MULTICAST: no TCP fan-out for the
                                 topics of the groups in mcast_keyed       */
    uint8_t wildcard;         /* filter has * or >                        */
    uint32_t mcast_keyed;     /* its connection's keyed groups (bit each)  */
    int worker;               /* index of the owning worker               */
    struct fo_conn *conn;     /* borrowed: the owner                      */
    uint64_t conn_id;
    char *queue;              /* owned; NULL = no queue group             */
    /* The subscribe permissions of its user (acl.h), or NULL = every topic.
     * Borrowed from the users table its connection holds; binds only to
     * topics fo_acl_topic_ok allows. Written under the registry lock
     * (fo_registry_subscribe, fo_registry_set_acl) and read under it. */
    const struct fo_acl *acl;
    fo_binding_t *bindings;   /* owned; guarded by the registry lock      */
    fo_sub_t *reg_prev, *reg_next;  /* registry list (registry lock)      */
    void *sl_node;            /* the filter index's node (sublist.c)      */
    fo_sub_t *sl_prev, *sl_next;
    uint8_t sl_rest;          /* on the node's `>` list                   */
    fo_sub_t *conn_prev, *conn_next;  /* the connection's list (conn.c)   */
    fo_sub_t *sid_next;       /* the connection's sid hash chain (conn.c) */
    char filter[];            /* NUL-terminated                           */
};

struct fo_binding {
    fo_sub_t *sub;
    fo_topic_t *topic;
    uint64_t from_seq;        /* first seq fan-out delivers               */
    fo_binding_t *tprev, *tnext;  /* topic->local[w] or group members     */
    fo_binding_t *snext;          /* sub->bindings                        */
    fo_qgroup_t *group;           /* queue membership, else NULL          */
    uint8_t counted;              /* adds 1 to topic->blocked (owner only) */
    uint64_t last_seq;            /* a cluster: the last seq fan-out gave it
                                   * (route.c, the owner worker only)      */
};

struct fo_qgroup {
    fo_qgroup_t *next;
    fo_binding_t *members;    /* circular cursor walks this list          */
    fo_binding_t *cursor;     /* next member to receive                   */
    uint32_t count;
    char name[];
};

struct fo_topic {
    fo_topic_t *hnext;            /* hash chain (registry lock); limbo list */
    uint32_t hash;
    _Atomic int dead;             /* out of the registry, waiting to be freed */
    uint64_t limbo_epoch;         /* the reclaim epoch it died in           */
    uint64_t last_ns;             /* time of the last publish (topic lock)  */
    int mcast_group;              /* fo_mcast_group_for, -1 = none         */
    pthread_mutex_t lock;         /* guards seq, ring, groups              */
    uint64_t seq;                 /* last sequence given                   */
    fo_ring_t ring;
    fo_qgroup_t *groups;
    _Atomic int blocked;          /* congested block-policy subscribers:
                                   * while > 0 publishers pause (route.c) */
    fo_binding_t **local;         /* [nworkers] plain bindings per worker  */
    _Atomic uint32_t *nlocal;     /* [nworkers] list lengths               */
    struct fo_user_counters *owner; /* counts against its creator's topic
                                   * limit (users.h), NULL = nobody's; set
                                   * before it is visible, given back when
                                   * it is freed                           */
    uint64_t walk_mark;           /* fo_registry_set_acl (registry lock)   */
    /* The cluster's cached placement of this topic (cluster.c alone
     * reads and writes it: membership generation << 8 | node slot). */
    _Atomic uint64_t cluster_home;
    /* A cluster: 1 while this broker has been the topic's home since it
     * last gave it a sequence number; 0 (a new topic, or another broker
     * was its home meanwhile: cluster.c clears it) makes the next one
     * start a new epoch (route.c, under the topic lock). */
    _Atomic int cluster_owner;
    size_t len;
    char name[];                  /* NUL-terminated                        */
};

typedef struct fo_registry fo_registry_t;

/* ---- registry ---- */

/* mcast_group_for may be NULL (no multicast); ud is passed to it. */
typedef int (*fo_group_fn)(const void *ud, const char *topic);
FO_MUST_CHECK fo_err_t fo_registry_create(int nworkers, int max_topics, fo_group_fn group_for,
                            const void *group_ud, fo_registry_t **out);
void fo_registry_destroy(fo_registry_t *r);          /* NULL is fine */
uint64_t fo_registry_topics(const fo_registry_t *r);          /* live now */
uint64_t fo_registry_created(const fo_registry_t *r);         /* ever     */
uint64_t fo_registry_freed(const fo_registry_t *r);           /* ever     */

/* The reclaim sweep (one thread: the main thread). Visits up to `budget`
 * topics from where the last call stopped: expires retained messages
 * older than max_age_ns (0 = keep), and unlinks idle topics (unbound,
 * nothing retained, no publish for linger_ns: --topic-linger), marking
 * them dead and remembering `epoch` as their death. With trim (memory is
 * short: retention must not starve live publishes) it also evicts the
 * older half of each visited topic's retained messages (counted in
 * fo_registry_trimmed). Returns the topics unlinked. now_ns is
 * CLOCK_REALTIME (messages carry realtime stamps). */
size_t fo_registry_sweep(fo_registry_t *r, uint64_t now_ns, uint64_t max_age_ns,
                         uint64_t linger_ns, uint64_t epoch, size_t budget, int trim);
/* Retained messages evicted by trimming sweeps, ever. */
uint64_t fo_registry_trimmed(const fo_registry_t *r);
/* Free the dead topics whose death epoch is < safe_epoch (no worker can
 * hold their pointers any more). Returns how many were freed. */
size_t fo_registry_reclaim(fo_registry_t *r, uint64_t safe_epoch);
/* Bumped whenever a sweep unlinks topics: workers purge their caches
 * when it moves. */
uint64_t fo_registry_deaths(const fo_registry_t *r);

/* Existing topic or NULL. */
fo_topic_t *fo_registry_find(fo_registry_t *r, const char *name, size_t len);
/* Existing or new topic (binding matching subscriptions); NULL with
 * FO_ERR_BUSY (max topics) or FO_ERR_NOMEM. name must be valid.
 * owner: NULL, or the counters of a user who took one FO_LIMIT_TOPICS
 * for this call (fo_user_take): a topic created here keeps that count
 * until it is freed; otherwise (it existed, or an error) it is given back
 * here. */
fo_topic_t *fo_registry_get(fo_registry_t *r, const char *name, size_t len,
                            struct fo_user_counters *owner, fo_err_t *err);

/* Called with the topic locked for each topic a new subscription binds to,
 * right after the binding is made with from_seq = topic->seq + 1: the place
 * to send a replay of what came before (nothing can be published between
 * the two, so replay and live fan-out neither overlap nor leave a hole). */
typedef void (*fo_bound_fn)(void *ud, fo_topic_t *t, fo_binding_t *b);

/* Register sub and bind it to every existing matching topic (that
 * sub->acl allows). */
FO_MUST_CHECK fo_err_t fo_registry_subscribe(fo_registry_t *r, fo_sub_t *sub, fo_bound_fn bound, void *ud);
/* Unbind and unregister sub (the caller frees it). */
void fo_registry_unsubscribe(fo_registry_t *r, fo_sub_t *sub);

/* A reload changed sub's permissions: set sub->acl = acl and, when
 * rebind, unbind the topics it no longer allows and bind the existing
 * ones it now allows (from their next message; nothing is replayed).
 * Owner worker only (it owns sub). FO_ERR_NOMEM when a new binding could
 * not be made (the sub then misses that topic). */
FO_MUST_CHECK fo_err_t fo_registry_set_acl(fo_registry_t *r, fo_sub_t *sub,
                                           const struct fo_acl *acl, int rebind);

/* The cluster's replay through an edge (docs/CLUSTER.md): set the
 * from_seq of sub's binding to topic name[0..len) (a subscription bound
 * with from_seq FO_FROM_PAUSED delivers nothing live until the home said
 * where live delivery starts). Owner worker only. FO_ERR_NOT_FOUND when
 * sub has no such binding (any more). */
#define FO_FROM_PAUSED UINT64_MAX
FO_MUST_CHECK fo_err_t fo_registry_set_from(fo_registry_t *r, fo_sub_t *sub, const char *name, size_t len,
                                            uint64_t from);

/* A block-policy subscription's connection became congested (on = 1) or
 * drained (on = 0): count it on (or off) every topic it is bound to. Owner
 * worker only. */
void fo_registry_set_congested(fo_registry_t *r, fo_sub_t *sub, int on);

/* Queue groups: choose the member for message seq (topic locked). NULL when
 * no member wants it. Advances the group's cursor. */
fo_binding_t *fo_qgroup_pick(fo_qgroup_t *g, uint64_t seq);
/* The same among the members whose subscription is not on `skip_worker`
 * (the cluster's sink: a broker that received a message for one member
 * of a group picks one of its own clients, never another broker). */
fo_binding_t *fo_qgroup_pick_local(fo_qgroup_t *g, uint64_t seq, int skip_worker);
/* t's queue group (queue, filter), or NULL (topic locked). */
fo_qgroup_t *fo_topic_group(fo_topic_t *t, const char *queue, const char *filter);

/* Call fn for every live topic under the registry's read lock (fn must
 * not call the registry; it may take other locks that come after the
 * registry's in the lock order). Metrics only: O(topics). */
typedef void (*fo_topic_fn)(void *ud, fo_topic_t *t);
void fo_registry_each(fo_registry_t *r, fo_topic_fn fn, void *ud);

#endif
