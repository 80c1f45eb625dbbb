/* cluster.c -- the cluster thread: membership, links, placement, interest
 * and the messages that cross between brokers (see cluster.h and
 * docs/CLUSTER.md).
 *
 * One loop iteration: epoll_wait (<= 250 ms) -> the listener (accept),
 * the inbox (items from workers: messages for peers, forwards, answers,
 * interest changes), the links' events (frames from peers) -> post the
 * outboxes to the workers -> write every link with output -> every
 * 250 ms: new addresses from the resolver, connect attempts, link timers,
 * counters -> record the reclamation epoch reached (a quiescent point:
 * no topic pointer is held across iterations).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <sodium.h>
#include "acl.h"
#include "addr.h"
#include "clock.h"
#include "cluster.h"
#include "frame.h"
#include "log.h"
#include "net.h"
#include "peer.h"
#include "place.h"
#include "resolve.h"
#include "route.h"
#include "tls.h"
#include "topic.h"
#include "worker.h"
#include <openssl/ssl.h>

#define TICK_MS      250
#define READ_BUDGET  (1u << 20)     /* bytes read per link per event     */
#define BACKOFF_MIN  100            /* ms before reconnecting to an address */
#define BACKOFF_MAX  5000
#define SECRET_MAX   256
#define TARGETS      FO_RESOLVE_ADDRS
#define PENDING_MAX  65536          /* replays asked of homes, unanswered */
static char inbox_tag, listen_tag;  /* epoll data of the inbox and listener */

/* Another broker, known by its node id. Slots are never reused, so a
 * slot number in a topic's placement cache or an item stays meaningful. */
typedef struct node {
    char id[FO_PEER_NODE_MAX + 1];
    uint64_t hash;                 /* fo_place_node_hash(id)              */
    fo_peer_t *link;               /* the link in use (UP), or NULL       */
    char client_addr[2 * FO_CLUSTER_ADDR_MAX];  /* HOST:PORT[,tls://HOST:PORT] */
    fo_peer_counters_t ctr;        /* its links' counters, summed         */
    _Atomic int up;                /* metrics: link is set                */
    _Atomic uint64_t interest;     /* metrics: entries its link told us   */
} node_t;

/* An address from --cluster-peers (resolved). */
typedef struct target {
    char addr[FO_NET_ADDR_MAX];
    fo_peer_t *link;               /* our outgoing link to it, or NULL    */
    uint64_t next_ms;              /* the next connect attempt            */
    uint32_t backoff_ms;
    int node;                      /* whom it reached last, -1: nobody    */
    uint8_t used, present, self, tried;
} target_t;

/* A replay this broker asked of a home, not yet ended. */
typedef struct pending {
    struct pending *next;
    int node, repair;
    uint32_t sid;
    uint64_t conn, first, ref;
    size_t len;
    char topic[];
} pending_t;

struct fo_cluster {
    fo_broker_t *b;                /* borrowed                            */
    int sink;                      /* == b->nworkers                      */
    pthread_t thread;
    int started;
    _Atomic int stop;
    int epfd, lfd;
    fo_inbox_t inbox;
    fo_item_t *spare;
    size_t spare_cap;
    fo_outbox_t *outbox;           /* [nworkers]                          */
    fo_arena_t arena;
    fo_peer_cfg_t pcfg;
    char node_id[FO_PEER_NODE_MAX + 1];
    char client_addr[2 * FO_CLUSTER_ADDR_MAX];   /* ours, as advertised */
    uint8_t secret[SECRET_MAX];
    size_t secret_len;
    fo_interest_t *ours;
    _Atomic uint64_t ours_count;   /* metrics                             */
    pending_t *pending, **pending_tail;
    size_t npending;
    struct ssl_ctx_st *tls_server, *tls_client;   /* --cluster-tls (owned) */
    fo_peer_t *links;              /* every link                          */
    node_t nodes[FO_CLUSTER_NODES];
    _Atomic int nnodes;            /* slots in use (only grows)           */
    target_t targets[TARGETS];
    fo_resolver_t *res;
    uint64_t res_gen, res_rounds;
    /* the members, for placement (any thread reads under mlock) */
    pthread_rwlock_t mlock;
    _Atomic uint64_t mgen;
    uint64_t mhash[FO_CLUSTER_NODES + 1];
    uint8_t mslot[FO_CLUSTER_NODES + 1];
    char maddr[FO_CLUSTER_NODES + 1][2 * FO_CLUSTER_ADDR_MAX];   /* client addresses */
    int mn;
    _Atomic int ready;
    _Alignas(64) _Atomic uint64_t seen_epoch;
    uint64_t next_tick_ms;
    /* counters */
    _Atomic uint64_t forwarded, forwards_in, forward_errors, delivered_in, drops_in, auth_failures;
};

/* ------------------------------------------------------------ node ids */

/* 1..FO_PEER_NODE_MAX of [A-Za-z0-9._-]: safe in logs and metric labels. */
static int node_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > FO_PEER_NODE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '-' || ch == '_'))
            return 0;
    }
    return 1;
}

fo_err_t fo_cluster_node_id(const fo_config_t *cfg, char *out, size_t len, char *err, size_t errlen)
{
    char host[256] = "";
    const char *id = cfg->node_id;
    if (!id[0]) {
        if (gethostname(host, sizeof host - 1))
            host[0] = 0;
        id = host;
    }
    size_t n = strlen(id);
    if (!node_id_ok(id) || n >= len) {
        snprintf(err, errlen, "fanoutd: --node-id \"%.80s\" must be 1..%u of A-Z a-z 0-9 . - _",
                 id, FO_PEER_NODE_MAX);
        return FO_ERR_INVAL;
    }
    memcpy(out, id, n + 1);
    return FO_OK;
}

const char *fo_cluster_id(const fo_cluster_t *c) { return c->node_id; }
int fo_cluster_sink(const fo_cluster_t *c) { return c->sink; }
fo_inbox_t *fo_cluster_inbox(fo_cluster_t *c) { return &c->inbox; }
int fo_cluster_ready(const fo_cluster_t *c) { return atomic_load(&c->ready); }
uint64_t fo_cluster_seen_epoch(const fo_cluster_t *c)
{
    return atomic_load_explicit(&c->seen_epoch, memory_order_acquire);
}

/* ------------------------------------------------------------ placement */

/* The members changed (a link came up, or the last one of a broker
 * went): publish the new list and generation. Cluster thread. */
static void members_changed(fo_cluster_t *c)
{
    pthread_rwlock_wrlock(&c->mlock);
    int n = 0;
    c->mhash[n] = fo_place_node_hash(c->node_id, strlen(c->node_id));
    memcpy(c->maddr[n], c->client_addr, sizeof c->maddr[n]);
    c->mslot[n++] = FO_CLUSTER_SELF;
    for (int i = 0; i < atomic_load(&c->nnodes); i++)
        if (c->nodes[i].link) {
            c->mhash[n] = c->nodes[i].hash;
            memcpy(c->maddr[n], c->nodes[i].client_addr, sizeof c->maddr[n]);
            c->mslot[n++] = (uint8_t)i;
        }
    c->mn = n;
    atomic_fetch_add_explicit(&c->mgen, 1, memory_order_release);
    pthread_rwlock_unlock(&c->mlock);
    fo_info(0, "cluster: %d member%s", n, n == 1 ? "" : "s");
}

int fo_cluster_addresses(fo_cluster_t *c, char (*out)[FO_CLUSTER_ADDR_MAX], char **ptrs)
{
    pthread_rwlock_rdlock(&c->mlock);
    int n = 0;
    for (int i = 0; i < c->mn; i++)
        for (const char *a = c->maddr[i]; *a && n < FO_CLUSTER_ADDRS;) {
            size_t len = strcspn(a, ",");
            if (len && len < FO_CLUSTER_ADDR_MAX) {
                memcpy(out[n], a, len);
                out[n][len] = 0;
                ptrs[n] = out[n];
                n++;
            }
            a += len + (a[len] == ',');
        }
    pthread_rwlock_unlock(&c->mlock);
    return n;
}

int fo_cluster_home(fo_cluster_t *c, fo_topic_t *t)
{
    uint64_t gen = atomic_load_explicit(&c->mgen, memory_order_acquire);
    uint64_t h = atomic_load_explicit(&t->cluster_home, memory_order_relaxed);
    if (h >> 8 == gen && h)
        return (int)(h & 0xff);
    uint64_t th = fo_place_topic_hash(t->name, t->len);
    pthread_rwlock_rdlock(&c->mlock);
    gen = atomic_load_explicit(&c->mgen, memory_order_relaxed);
    int i = fo_place_pick(c->mhash, c->mn, th);
    int slot = i < 0 ? FO_CLUSTER_SELF : c->mslot[i];
    pthread_rwlock_unlock(&c->mlock);
    if (slot != FO_CLUSTER_SELF)
        atomic_store_explicit(&t->cluster_owner, 0, memory_order_relaxed);   /* sequenced elsewhere */
    atomic_store_explicit(&t->cluster_home, gen << 8 | (uint64_t)slot, memory_order_relaxed);
    return slot;
}

uint64_t fo_cluster_epoch_start(uint64_t seq)
{
    uint64_t now = fo_realtime_ns() / 1000000u;
    uint64_t e = (seq >> FO_CLUSTER_EPOCH_SHIFT) + 1;
    uint64_t clock_e = now > FO_CLUSTER_EPOCH_BASE_MS ? now - FO_CLUSTER_EPOCH_BASE_MS : 0;
    return (e > clock_e ? e : clock_e) << FO_CLUSTER_EPOCH_SHIFT | 1;
}

/* ------------------------------------------------------------ control items */

/* What workers post to the cluster thread, and what it posts to them:
 * one struct for all (a small fixed part, then bytes). */
typedef enum { CTL_INTEREST, CTL_FORWARD, CTL_ANSWER_OUT, CTL_REPLAY, CTL_TLS,   /* -> cluster */
               CTL_PUBLISH, CTL_ANSWER_IN, CTL_GAP, CTL_REPLAY_GAP, CTL_REPLAY_END } ctl_kind_t; /* -> worker */

typedef struct ctl {
    fo_ctl_t base;
    fo_cluster_t *c;
    ctl_kind_t kind;
    struct ssl_ctx_st *tls[2];    /* CTL_TLS: new server and client contexts */
    int node, add, code;
    uint32_t sid;
    uint64_t conn, ref, seq, last;
    size_t len, len2;             /* bytes: data[0..len), then data[len+1..] */
    uint8_t data[];
} ctl_t;

static void ctl_drop(fo_ctl_t *self)
{
    ctl_t *x = (ctl_t *)self;
    SSL_CTX_free(x->tls[0]);           /* NULL is fine */
    SSL_CTX_free(x->tls[1]);
    free(self);
}
static void ctl_run(fo_ctl_t *self, void *arg);

static ctl_t *ctl_new(fo_cluster_t *c, ctl_kind_t kind, const void *a, size_t alen, const void *b2,
                      size_t blen)
{
    ctl_t *x = calloc(1, sizeof *x + alen + blen + 2);
    if (!x)
        return NULL;
    x->base.run = ctl_run;
    x->base.drop = ctl_drop;
    x->c = c;
    x->kind = kind;
    x->len = alen;
    x->len2 = blen;
    if (alen)
        memcpy(x->data, a, alen);
    if (blen)
        memcpy(x->data + alen + 1, b2, blen);
    return x;
}

static int post_ctl(fo_inbox_t *ib, ctl_t *x)
{
    fo_item_t it = { .kind = FO_ITEM_CTL, .u.ctl = &x->base };
    if (fo_inbox_post(ib, &it, 1)) {
        ctl_drop(&x->base);
        return -1;
    }
    return 0;
}

/* Cluster thread: an item for worker w, posted with the others at the end
 * of the iteration, in order (a replay's messages, its end and the live
 * messages after it reach the worker as they came). Takes the item's
 * reference or control message; dropped (and counted) out of memory. */
static void drop_item(fo_cluster_t *c, const fo_item_t *it)
{
    if (it->kind == FO_ITEM_CTL)
        it->u.ctl->drop(it->u.ctl);
    else
        fo_msg_unref(it->u.msg);
    atomic_fetch_add(&c->drops_in, 1);
}

static void post_worker(fo_cluster_t *c, int w, const fo_item_t *it)
{
    fo_outbox_t *o = &c->outbox[w];
    if (o->len == o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 256;
        fo_item_t *ni = realloc(o->items, ncap * sizeof *ni);
        if (!ni) {
            drop_item(c, it);
            return;
        }
        o->items = ni;
        o->cap = ncap;
    }
    o->items[o->len++] = *it;
}

static void post_worker_ctl(fo_cluster_t *c, int w, ctl_t *x)
{
    fo_item_t it = { .kind = FO_ITEM_CTL, .u.ctl = &x->base };
    post_worker(c, w, &it);
}

/* An answer for a forwarded PUBLISH to the worker of conn (cluster
 * thread, or a worker when the forward could not even be posted). */
static void answer_local(fo_cluster_t *c, uint64_t conn, uint64_t ref, uint64_t seq, int code,
                         const char *text)
{
    int w = (int)(conn & 0xff);
    if (w >= c->sink)
        return;
    ctl_t *x = ctl_new(c, CTL_ANSWER_IN, text, text ? strlen(text) : 0, NULL, 0);
    if (!x)
        return;                   /* out of memory: the client's request times out */
    x->conn = conn;
    x->ref = ref;
    x->seq = seq;
    x->code = code;
    (void)post_ctl(&c->b->workers[w]->inbox, x);
}

void fo_cluster_forward(fo_cluster_t *c, int node, uint64_t conn_id, uint64_t req, const uint8_t *frame,
                        size_t len)
{
    ctl_t *x = ctl_new(c, CTL_FORWARD, frame, len, NULL, 0);
    if (x) {
        x->node = node;
        x->conn = conn_id;
        x->ref = req;
        if (!post_ctl(&c->inbox, x))
            return;
    }
    answer_local(c, conn_id, req, 0, FO_CODE(MEMORY_LIMIT), "out of memory forwarding to the topic's home");
}

uint32_t fo_cluster_tag(const fo_cluster_t *c)
{
    return (uint32_t)(fo_place_node_hash(c->node_id, strlen(c->node_id)) >> 32);
}

void fo_cluster_forward_reply(fo_cluster_t *c, uint32_t tag, const uint8_t *frame, size_t len)
{
    ctl_t *x = ctl_new(c, CTL_FORWARD, frame, len, NULL, 0);
    if (!x) {
        atomic_fetch_add(&c->forward_errors, 1);
        return;
    }
    x->node = -1;                      /* found by its tag on the cluster thread */
    x->seq = tag;
    if (post_ctl(&c->inbox, x))
        atomic_fetch_add(&c->forward_errors, 1);
}

void fo_cluster_answer(fo_cluster_t *c, int node, uint64_t conn, uint64_t ref, uint64_t seq, int code,
                       const char *text)
{
    ctl_t *x = ctl_new(c, CTL_ANSWER_OUT, text, text ? strlen(text) : 0, NULL, 0);
    if (!x)
        return;
    x->node = node;
    x->conn = conn;
    x->ref = ref;
    x->seq = seq;
    x->code = code;
    (void)post_ctl(&c->inbox, x);
}

void fo_cluster_interest(fo_cluster_t *c, const char *filter, const char *queue, int add)
{
    ctl_t *x = ctl_new(c, CTL_INTEREST, filter, strlen(filter), queue, queue ? strlen(queue) : 0);
    if (!x) {
        FO_LOG_RATE(FO_LOG_ERROR, 0, "cluster: out of memory: a subscription's interest was not told to the peers");
        return;
    }
    x->add = add;
    if (post_ctl(&c->inbox, x))
        FO_LOG_RATE(FO_LOG_ERROR, 0, "cluster: out of memory: a subscription's interest was not told to the peers");
}

/* ------------------------------------------------------------ links */

static void doom(fo_peer_t *p, const char *why)
{
    if (!p->doomed)
        fo_warn(0, "cluster: link %s (%s) closes: %s", p->addr, p->node_id[0] ? p->node_id : "?", why);
    p->doomed = 1;
}

static fo_peer_t *link_of(fo_cluster_t *c, int node)
{
    if (node < 0 || node >= atomic_load(&c->nnodes))
        return NULL;
    fo_peer_t *l = c->nodes[node].link;
    return l && l->state == FO_PEER_UP && !l->doomed ? l : NULL;
}

static fo_err_t send_interest(fo_peer_t *p, int add, uint32_t id, const char *filter, const char *queue)
{
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerInterest in = FANOUT__PEER_INTEREST__INIT;
    in.has_seq = in.has_op = in.has_id = 1;
    in.seq = ++p->interest_out;
    in.op = add ? FANOUT__PEER_INTEREST__OP__ADD : FANOUT__PEER_INTEREST__OP__DEL;
    in.id = id;
    if (add) {
        in.filter = (char *)filter;
        in.queue = queue && queue[0] ? (char *)queue : NULL;
    }
    f.body_case = FANOUT__PEER_FRAME__BODY_INTEREST;
    f.interest = &in;
    return fo_peer_send(p, &f);
}

static void snapshot_one(void *ud, uint32_t id, const char *filter, const char *queue)
{
    fo_peer_t *p = ud;
    if (!p->doomed && send_interest(p, 1, id, filter, queue))
        doom(p, "out of memory for the interest snapshot");
}

/* Their entry id of link p: a subscription of the registry on the sink. */
static void theirs_add(fo_cluster_t *c, fo_peer_t *p, uint32_t id, const char *filter, const char *queue)
{
    size_t fl = strlen(filter);
    if (!fo_filter_valid(filter, fl) || (queue && queue[0] && !fo_topic_valid(queue, strlen(queue)))) {
        doom(p, "an invalid filter or queue in its interest");
        return;
    }
    fo_sub_t *s = calloc(1, sizeof *s + fl + 1);
    if (!s || (queue && queue[0] && !(s->queue = strdup(queue)))) {
        free(s);
        doom(p, "out of memory for its interest");
        return;
    }
    memcpy(s->filter, filter, fl + 1);
    s->sid = id;
    s->worker = c->sink;
    s->conn_id = (uint64_t)p->node;
    s->policy = FO_POLICY_DROP;
    fo_err_t e = fo_interest_map_put(p->theirs, id, s);
    if (!e && (e = fo_registry_subscribe(c->b->reg, s, NULL, NULL)))
        (void)fo_interest_map_take(p->theirs, id);
    if (e) {
        free(s->queue);
        free(s);
        doom(p, e == FO_ERR_INVAL ? "an interest id used twice" : "its interest does not fit");
        return;
    }
    atomic_store(&c->nodes[p->node].interest, fo_interest_map_count(p->theirs));
}

static void sub_free(fo_cluster_t *c, fo_sub_t *s)
{
    fo_registry_unsubscribe(c->b->reg, s);
    free(s->queue);
    free(s);
}

static void theirs_del(fo_cluster_t *c, fo_peer_t *p, uint32_t id)
{
    fo_sub_t *s = fo_interest_map_take(p->theirs, id);
    if (!s) {
        doom(p, "a DEL of an interest it never added");
        return;
    }
    sub_free(c, s);
    atomic_store(&c->nodes[p->node].interest, fo_interest_map_count(p->theirs));
}

/* Of two UP links to one broker, the one both ends keep: the one made by
 * the broker with the smaller node id. Two made by the same broker: that
 * broker keeps the older and retires the newer; the other end keeps both
 * until it reads the retired one's end. NULL: keep both for now. */
static fo_peer_t *preferred(const fo_cluster_t *c, fo_peer_t *old, fo_peer_t *new)
{
    const char *io = old->outgoing ? c->node_id : old->node_id;
    const char *in = new->outgoing ? c->node_id : new->node_id;
    int d = strcmp(io, in);
    if (d)
        return d < 0 ? old : new;
    return old->outgoing ? old : NULL;
}

static int node_slot(fo_cluster_t *c, const char *id)
{
    int n = atomic_load(&c->nnodes);
    for (int i = 0; i < n; i++)
        if (!strcmp(c->nodes[i].id, id))
            return i;
    if (n == FO_CLUSTER_NODES)
        return -1;
    node_t *nd = &c->nodes[n];
    snprintf(nd->id, sizeof nd->id, "%s", id);
    nd->hash = fo_place_node_hash(id, strlen(id));
    atomic_store(&c->nnodes, n + 1);
    return n;
}

/* The HOST:PORT entries of a comma-separated list (tls:// allowed, two at
 * most) into out; anything else is left out. */
static void valid_addresses(const char *list, char *out, size_t len)
{
    size_t o = 0;
    out[0] = 0;
    for (int k = 0; *list && k < 2;) {
        size_t n = strcspn(list, ",");
        char one[FO_CLUSTER_ADDR_MAX];
        fo_addr_t a;
        if (n && n < sizeof one) {
            memcpy(one, list, n);
            one[n] = 0;
            if (!fo_addr_parse(one, FO_ADDR_NEED_PORT, &a) && a.host[0] && o + n + 2 < len) {
                o += (size_t)snprintf(out + o, len - o, "%s%s", o ? "," : "", one);
                k++;
            }
        }
        list += n + (list[n] == ',');
    }
}

static void on_up(void *ud, fo_peer_t *p)
{
    fo_cluster_t *c = ud;
    if (!node_id_ok(p->node_id)) {
        doom(p, "its node id is not 1..64 of A-Z a-z 0-9 . - _");
        return;
    }
    int slot = node_slot(c, p->node_id);
    if (slot < 0) {
        FO_LOG_RATE(FO_LOG_ERROR, 0, "cluster: %d brokers known already: %s is not linked",
                    FO_CLUSTER_NODES, p->node_id);
        doom(p, "too many brokers");
        return;
    }
    node_t *n = &c->nodes[slot];
    p->node = slot;
    p->ctr = &n->ctr;
    valid_addresses(p->client_addr, n->client_addr, sizeof n->client_addr);   /* handed to clients */
    if (p->target >= 0) {
        target_t *t = &c->targets[p->target];
        t->node = slot;
        t->tried = 1;
        t->backoff_ms = BACKOFF_MIN;
    }
    fo_info(0, "cluster: link to %s (%s) is up", p->node_id, p->addr);
    if (!n->link) {
        n->link = p;
        atomic_store(&n->up, 1);
        members_changed(c);
    } else {
        fo_peer_t *keep = preferred(c, n->link, p);
        if (keep) {
            fo_peer_t *lose = keep == p ? n->link : p;
            n->link = keep;
            fo_debug(0, "cluster: two links to %s: %s retires", p->node_id, lose->addr);
            fo_peer_retire(lose, fo_clock_ms());
            if (lose == p)
                return;
        }
    }
    fo_interest_each(c->ours, snapshot_one, p);
}

/* ---- frames from a peer ---- */

/* Tell the home of topic name[0..len) that we saw seq of it. */
static void tell_epoch(fo_peer_t *p, const char *name, size_t len, uint64_t seq)
{
    char topic[256];
    snprintf(topic, sizeof topic, "%.*s", (int)(len < 255 ? len : 255), name);
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerEpoch e = FANOUT__PEER_EPOCH__INIT;
    e.topic = topic;
    e.has_seq = 1;
    e.seq = seq;
    f.body_case = FANOUT__PEER_FRAME__BODY_EPOCH;
    f.epoch = &e;
    if (fo_peer_send(p, &f))
        doom(p, "out of memory for an epoch notice");
}

/* Home: an edge saw a higher number of a topic of ours (another broker was
 * its home while we were apart): the next number starts a new epoch. */
static void on_epoch(fo_cluster_t *c, const Fanout__PeerEpoch *e)
{
    size_t tl = strlen(e->topic);
    fo_topic_t *t = fo_topic_valid(e->topic, tl) ? fo_registry_find(c->b->reg, e->topic, tl) : NULL;
    if (!t || fo_cluster_home(c, t) != FO_CLUSTER_SELF)
        return;
    pthread_mutex_lock(&t->lock);
    if (e->seq > t->seq && !atomic_load_explicit(&t->dead, memory_order_relaxed)) {
        t->seq = e->seq;
        atomic_store_explicit(&t->cluster_owner, 0, memory_order_relaxed);
        fo_info(0, "cluster: %s was numbered elsewhere up to %llu: a new epoch", t->name,
                (unsigned long long)e->seq);
    }
    pthread_mutex_unlock(&t->lock);
}

/* A message the home sent us: fan it out to our subscribers. */
/* The workers with plain subscribers of t for a message from its home
 * (topic locked). Multicast stays on this segment: this broker sends to
 * its own multicast subscribers, by one worker (the lists change under
 * the topic lock, which is held), named in m->mcast_by. */
static uint64_t local_workers(const fo_cluster_t *c, fo_topic_t *t, fo_msg_t *m)
{
    uint64_t mask = 0;
    for (int i = 0; i < c->sink; i++)
        if (atomic_load_explicit(&t->nlocal[i], memory_order_relaxed))
            mask |= 1ull << i;
    for (int i = 0; i < c->sink && t->mcast_group >= 0 && !m->mcast_by; i++)
        for (fo_binding_t *bd = t->local[i]; bd && !m->mcast_by; bd = bd->tnext)
            if (bd->sub->multicast) {
                m->mcast_by = (uint8_t)(i + 1);
                mask |= 1ull << i;
            }
    return mask;
}

static void on_deliver(fo_cluster_t *c, fo_peer_t *p, const Fanout__PeerDeliver *d)
{
    fo_broker_t *b = c->b;
    const char *name;
    size_t nl;
    uint64_t seq;
    if (!fo_msg_body_check(d->body.data, d->body.len, &name, &nl, &seq) || !fo_topic_valid(name, nl) ||
        (d->queue && (!fo_topic_valid(d->queue, strlen(d->queue)) ||
                      !fo_filter_valid(d->filter, strlen(d->filter))))) {
        doom(p, "a malformed PeerDeliver");
        return;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        fo_err_t err = FO_OK;
        fo_topic_t *t = fo_registry_get(b->reg, name, nl, NULL, &err);
        fo_msg_t *m = t ? fo_msg_adopt(&b->mem, t, d->body.data, d->body.len, &err) : NULL;
        if (!m) {
            atomic_fetch_add(&c->drops_in, 1);
            FO_LOG_RATE(FO_LOG_WARN, 0, "cluster: a message from %s was dropped: %s", p->node_id,
                        err == FO_ERR_BUSY ? "--max-topics reached" : "memory cap");
            return;
        }
        uint64_t mask = 0;
        fo_binding_t *pick = NULL;
        pthread_mutex_lock(&t->lock);
        if (atomic_load_explicit(&t->dead, memory_order_relaxed)) {
            pthread_mutex_unlock(&t->lock);
            fo_msg_unref(m);
            continue;                      /* swept meanwhile: look it up again */
        }
        if (seq >> FO_CLUSTER_EPOCH_SHIFT < t->seq >> FO_CLUSTER_EPOCH_SHIFT) {
            /* numbered in an older epoch than one this broker has seen (a
             * partition healed): not delivered, and the home is told to
             * number above what we saw */
            uint64_t seen = t->seq;
            pthread_mutex_unlock(&t->lock);
            fo_msg_unref(m);
            atomic_fetch_add(&c->drops_in, 1);
            tell_epoch(p, name, nl, seen);
            return;
        }
        if (seq > t->seq)
            t->seq = seq;                  /* our view of the home's sequence */
        atomic_store_explicit(&t->cluster_owner, 0, memory_order_relaxed);    /* the sender is its home */
        t->last_ns = m->time_ns;
        if (d->queue) {
            fo_qgroup_t *g = fo_topic_group(t, d->queue, d->filter);
            pick = g ? fo_qgroup_pick_local(g, seq, c->sink) : NULL;
        } else {
            mask = local_workers(c, t, m);
        }
        fo_item_t pk = { 0 };
        if (pick)
            pk = (fo_item_t){ .kind = FO_ITEM_TARGET, .sid = pick->sub->sid, .conn_id = pick->sub->conn_id };
        int pw = pick ? pick->sub->worker : -1;
        pthread_mutex_unlock(&t->lock);
        atomic_fetch_add(&c->delivered_in, 1);
        for (int i = 0; i < c->sink; i++)
            if (mask & (1ull << i)) {
                fo_item_t it = { .kind = FO_ITEM_FANOUT, .u.msg = fo_msg_ref(m) };
                post_worker(c, i, &it);
            }
        if (pw >= 0) {
            pk.u.msg = m;
            post_worker(c, pw, &pk);
        } else {
            fo_msg_unref(m);
        }
        return;
    }
}

static void on_interest(fo_cluster_t *c, fo_peer_t *p, const Fanout__PeerInterest *in)
{
    if (in->seq != p->interest_in + 1) {
        doom(p, "its interest changes are out of order");
        return;
    }
    p->interest_in = in->seq;
    if (in->op == FANOUT__PEER_INTEREST__OP__ADD)
        theirs_add(c, p, in->id, in->filter, in->queue);
    else
        theirs_del(c, p, in->id);
}

/* A forwarded PUBLISH: to the worker the topic hashes to (so one topic's
 * forwards stay in order), which sequences it. */
static void on_publish(fo_cluster_t *c, fo_peer_t *p, const Fanout__PeerPublish *pp)
{
    fo_publish_view_t v;
    const char *topic = NULL;
    size_t tl = 0;
    if (fo_publish_peek(pp->frame.data, pp->frame.len, &v) == FO_OK) {
        topic = v.topic;
        tl = v.topic_len;
    } else {
        Fanout__Frame *f;
        if (!fo_frame_unpack(pp->frame.data, pp->frame.len, &c->arena, &f) &&
            f->body_case == FANOUT__FRAME__BODY_PUBLISH && f->publish->topic) {
            topic = f->publish->topic;
            tl = strlen(topic);
        }
    }
    if (!topic) {
        doom(p, "a forwarded PUBLISH that is none");
        return;
    }
    atomic_fetch_add(&c->forwards_in, 1);
    int w = (int)(fo_topic_hash(topic, tl) % (uint32_t)c->sink);
    ctl_t *x = ctl_new(c, CTL_PUBLISH, pp->frame.data, pp->frame.len, NULL, 0);
    if (x) {
        x->node = p->node;
        x->conn = pp->has_conn ? pp->conn : 0;
        x->ref = pp->ref;
        if (!post_ctl(&c->b->workers[w]->inbox, x))
            return;
    }
    fo_cluster_answer(c, p->node, pp->conn, pp->ref, 0, FO_CODE(MEMORY_LIMIT), "out of memory at the home");
}

static void on_gap(fo_cluster_t *c, const Fanout__PeerGap *g)
{
    for (int w = 0; w < c->sink; w++) {
        ctl_t *x = ctl_new(c, CTL_GAP, g->topic, strlen(g->topic), NULL, 0);
        if (!x)
            return;
        x->seq = g->first;
        x->last = g->last;
        (void)post_ctl(&c->b->workers[w]->inbox, x);
    }
}

/* ---- replay through an edge ---- */

int fo_cluster_home_of(fo_cluster_t *c, const char *name, size_t len)
{
    uint64_t th = fo_place_topic_hash(name, len);
    pthread_rwlock_rdlock(&c->mlock);
    int i = fo_place_pick(c->mhash, c->mn, th);
    int slot = i < 0 ? FO_CLUSTER_SELF : c->mslot[i];
    pthread_rwlock_unlock(&c->mlock);
    return slot;
}

void fo_cluster_replay(fo_cluster_t *c, int node, uint64_t conn, uint32_t sid, const char *name, size_t len,
                       uint64_t first, int earliest, uint64_t last, uint64_t ref)
{
    ctl_t *x = ctl_new(c, CTL_REPLAY, name, len, NULL, 0);
    if (!x) {
        FO_LOG_RATE(FO_LOG_ERROR, 0, "cluster: out of memory for a replay request: the subscription stays paused");
        return;
    }
    x->node = node;
    x->conn = conn;
    x->sid = sid;
    x->seq = first;
    x->add = earliest;
    x->last = last;
    x->ref = ref;
    if (post_ctl(&c->inbox, x))
        FO_LOG_RATE(FO_LOG_ERROR, 0, "cluster: out of memory for a replay request: the subscription stays paused");
}

/* The end of a replay, for the subscriber's worker (in order with the
 * replayed messages). */
static void replay_end_local(fo_cluster_t *c, uint64_t conn, uint32_t sid, const char *topic, size_t len,
                             uint64_t live_from, uint64_t ref, int repair)
{
    int w = (int)(conn & 0xff);
    ctl_t *x = w < c->sink ? ctl_new(c, CTL_REPLAY_END, topic, len, NULL, 0) : NULL;
    if (!x)
        return;
    x->conn = conn;
    x->sid = sid;
    x->seq = live_from;
    x->ref = ref;
    x->add = repair;
    post_worker_ctl(c, w, x);
}

static void replay_gap_local(fo_cluster_t *c, uint64_t conn, uint32_t sid, const char *topic, size_t len,
                             uint64_t first, uint64_t last, int reason)
{
    int w = (int)(conn & 0xff);
    ctl_t *x = w < c->sink ? ctl_new(c, CTL_REPLAY_GAP, topic, len, NULL, 0) : NULL;
    if (!x)
        return;
    x->conn = conn;
    x->sid = sid;
    x->seq = first;
    x->last = last;
    x->code = reason;
    post_worker_ctl(c, w, x);
}

/* The home will not answer: GAP for what was asked (as far as this broker
 * knows the topic), live delivery from now on (or the REPAIR's ACK). */
static void replay_failed(fo_cluster_t *c, const pending_t *pd)
{
    fo_topic_t *t = fo_registry_find(c->b->reg, pd->topic, pd->len);
    uint64_t seen = t ? t->seq : 0;       /* a racy read is fine: a hint */
    uint64_t first = pd->first ? pd->first : 1;
    if (seen >= first)
        replay_gap_local(c, pd->conn, pd->sid, pd->topic, pd->len, first, seen, FANOUT__GAP_REASON__GAP_EVICTED);
    replay_end_local(c, pd->conn, pd->sid, pd->topic, pd->len, 0, pd->ref, pd->repair);
    FO_LOG_RATE(FO_LOG_WARN, 0, "cluster: a replay of %s asked of %s was not answered", pd->topic,
                pd->node >= 0 ? c->nodes[pd->node].id : "?");
}

/* A worker asked for a replay from a home: send it, remember it. */
static void replay_out(fo_cluster_t *c, ctl_t *x)
{
    pending_t *pd = malloc(sizeof *pd + x->len + 1);
    if (!pd)
        return;                         /* stays paused: logged below */
    *pd = (pending_t){ .node = x->node, .repair = x->last != 0, .sid = x->sid, .conn = x->conn,
                       .first = x->seq, .ref = x->ref, .len = x->len };
    memcpy(pd->topic, x->data, x->len + 1);
    fo_peer_t *l = link_of(c, x->node);
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerReplay r = FANOUT__PEER_REPLAY__INIT;
    r.has_conn = r.has_sid = 1;
    r.conn = x->conn;
    r.sid = x->sid;
    r.topic = pd->topic;
    r.has_first = 1;
    r.first = x->seq;
    r.earliest = x->add != 0;
    r.has_earliest = r.earliest;
    if (x->last) {
        r.has_last = 1;
        r.last = x->last;
    }
    if (x->ref) {
        r.has_ref = 1;
        r.ref = x->ref;
    }
    f.body_case = FANOUT__PEER_FRAME__BODY_REPLAY;
    f.replay = &r;
    if (!l || c->npending >= PENDING_MAX || fo_peer_send(l, &f)) {
        replay_failed(c, pd);
        free(pd);
        return;
    }
    pd->next = NULL;
    *c->pending_tail = pd;
    c->pending_tail = &pd->next;
    c->npending++;
}

/* Take the first pending replay matching (node, conn, sid, topic, repair)
 * (NULL: none), or, with topic NULL, any of node's. */
static pending_t *pending_take(fo_cluster_t *c, int node, uint64_t conn, uint32_t sid, const char *topic,
                               int repair)
{
    for (pending_t **pp = &c->pending; *pp; pp = &(*pp)->next) {
        pending_t *pd = *pp;
        if (pd->node != node || (topic && (pd->conn != conn || pd->sid != sid || pd->repair != repair ||
                                           strcmp(pd->topic, topic))))
            continue;
        *pp = pd->next;
        if (c->pending_tail == &pd->next)
            c->pending_tail = pp;
        c->npending--;
        return pd;
    }
    return NULL;
}

static fo_err_t send_replayed(fo_peer_t *p, const Fanout__PeerReplay *r, const fo_msg_t *m, const char *topic,
                              uint64_t gf, uint64_t gl, int reason)
{
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerReplayed d = FANOUT__PEER_REPLAYED__INIT;
    d.has_conn = d.has_sid = 1;
    d.conn = r->conn;
    d.sid = r->sid;
    if (m) {
        d.has_body = 1;
        d.body = (ProtobufCBinaryData){ m->shared_len, (uint8_t *)m->shared };
    } else {
        d.topic = (char *)topic;
        d.has_gap_first = d.has_gap_last = 1;
        d.gap_first = gf;
        d.gap_last = gl;
        d.has_reason = reason != FANOUT__GAP_REASON__GAP_EVICTED;
        d.reason = (uint32_t)reason;
    }
    f.body_case = FANOUT__PEER_FRAME__BODY_REPLAYED;
    f.replayed = &d;
    return fo_peer_send(p, &f);
}

/* Home: replay from the ring to the edge, and fix where live delivery
 * starts, in one topic-lock section (the same trick as a local replay). */
static void on_replay(fo_cluster_t *c, fo_peer_t *p, const Fanout__PeerReplay *r)
{
    size_t tl = strlen(r->topic);
    if (!fo_topic_valid(r->topic, tl)) {
        doom(p, "a replay of an invalid topic");
        return;
    }
    int repair = r->has_last;
    uint64_t live_from = 0;
    fo_err_t err = FO_OK, e = FO_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        fo_topic_t *t = fo_registry_get(c->b->reg, r->topic, tl, NULL, &err);
        if (!t)
            break;                      /* nothing retained to replay: live from 0 */
        pthread_mutex_lock(&t->lock);
        if (atomic_load_explicit(&t->dead, memory_order_relaxed)) {
            pthread_mutex_unlock(&t->lock);
            continue;
        }
        uint64_t oldest = fo_ring_oldest(&t->ring, t->seq + 1);
        uint64_t first = r->earliest ? oldest : r->first ? r->first : 1;
        uint64_t last = repair && r->last < t->seq ? r->last : t->seq;
        live_from = t->seq + 1;
        uint64_t epoch0 = t->seq >> FO_CLUSTER_EPOCH_SHIFT << FO_CLUSTER_EPOCH_SHIFT;   /* its seq 0 */
        if (first <= epoch0) {
            /* a position an older home gave has nothing here (one GAP says
             * so); a number without an epoch means this epoch's */
            if (first >> FO_CLUSTER_EPOCH_SHIFT)
                e = send_replayed(p, r, NULL, t->name, first, epoch0, FANOUT__GAP_REASON__GAP_HOME_CHANGED);
            first = epoch0 + 1;
        }
        if (!e && first < oldest && first <= last) {
            uint64_t gl = oldest - 1 < last ? oldest - 1 : last;
            e = send_replayed(p, r, NULL, t->name, first, gl, FANOUT__GAP_REASON__GAP_EVICTED);
            first = gl + 1;
        }
        for (uint64_t q = first; q <= last && !e; q++) {
            if (p->qbytes > 2 * c->pcfg.max_output) {
                /* replays are control frames: bounded here instead, the
                 * rest said with one GAP (the edge's client may REPAIR) */
                e = send_replayed(p, r, NULL, t->name, q, last, FANOUT__GAP_REASON__GAP_EVICTED);
                break;
            }
            fo_msg_t *m = fo_ring_get(&t->ring, q);
            fo_msg_t *copy = m ? fo_msg_replay_copy(m) : NULL;
            if (!copy) {
                e = send_replayed(p, r, NULL, t->name, q, last, FANOUT__GAP_REASON__GAP_EVICTED);
                break;
            }
            e = send_replayed(p, r, copy, NULL, 0, 0, 0);
            fo_msg_unref(copy);
        }
        pthread_mutex_unlock(&t->lock);
        break;
    }
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerReplayEnd end = FANOUT__PEER_REPLAY_END__INIT;
    end.has_conn = end.has_sid = end.has_live_from = 1;
    end.conn = r->conn;
    end.sid = r->sid;
    end.topic = r->topic;
    end.live_from = live_from;
    end.has_ref = r->has_ref;
    end.ref = r->ref;
    end.has_repair = end.repair = (protobuf_c_boolean)repair;
    f.body_case = FANOUT__PEER_FRAME__BODY_REPLAY_END;
    f.replay_end = &end;
    if (e || fo_peer_send(p, &f))
        doom(p, "out of memory for a replay");
}

/* Edge: one replayed message or gap for a client of ours. */
static void on_replayed(fo_cluster_t *c, fo_peer_t *p, const Fanout__PeerReplayed *d)
{
    int w = (int)(d->conn & 0xff);
    if (w >= c->sink)
        return;
    if (!d->has_body) {
        replay_gap_local(c, d->conn, d->sid, d->topic, strlen(d->topic), d->gap_first, d->gap_last,
                         d->has_reason ? (int)d->reason : FANOUT__GAP_REASON__GAP_EVICTED);
        return;
    }
    const char *name;
    size_t nl;
    uint64_t seq;
    if (!fo_msg_body_check(d->body.data, d->body.len, &name, &nl, &seq) || !fo_topic_valid(name, nl)) {
        doom(p, "a malformed PeerReplayed");
        return;
    }
    fo_err_t err = FO_OK;
    fo_topic_t *t = fo_registry_get(c->b->reg, name, nl, NULL, &err);
    fo_msg_t *m = t ? fo_msg_adopt(&c->b->mem, t, d->body.data, d->body.len, &err) : NULL;
    if (!m) {
        atomic_fetch_add(&c->drops_in, 1);
        replay_gap_local(c, d->conn, d->sid, name, nl, seq, seq, FANOUT__GAP_REASON__GAP_EVICTED);
        return;
    }
    fo_item_t it = { .kind = FO_ITEM_TARGET, .sid = d->sid, .conn_id = d->conn, .u.msg = m };
    post_worker(c, w, &it);
}

static void on_replay_end(fo_cluster_t *c, fo_peer_t *p, const Fanout__PeerReplayEnd *e)
{
    pending_t *pd = pending_take(c, p->node, e->conn, e->sid, e->topic, e->repair);
    free(pd);
    replay_end_local(c, e->conn, e->sid, e->topic, strlen(e->topic), e->live_from, e->ref, e->repair);
}

static void on_frame(void *ud, fo_peer_t *p, const Fanout__PeerFrame *f)
{
    fo_cluster_t *c = ud;
    if (p->node < 0 || p->doomed)
        return;
    switch (f->body_case) {
    case FANOUT__PEER_FRAME__BODY_DELIVER:
        on_deliver(c, p, f->deliver);
        break;
    case FANOUT__PEER_FRAME__BODY_INTEREST:
        on_interest(c, p, f->interest);
        break;
    case FANOUT__PEER_FRAME__BODY_PUBLISH:
        on_publish(c, p, f->publish);
        break;
    case FANOUT__PEER_FRAME__BODY_ACK: {
        const Fanout__PeerAck *a = f->ack;
        answer_local(c, a->conn, a->ref, a->has_seq ? a->seq : 0, a->has_code ? (int)a->code : 0, a->text);
        break;
    }
    case FANOUT__PEER_FRAME__BODY_GAP:
        on_gap(c, f->gap);
        break;
    case FANOUT__PEER_FRAME__BODY_REPLAY:
        on_replay(c, p, f->replay);
        break;
    case FANOUT__PEER_FRAME__BODY_REPLAYED:
        on_replayed(c, p, f->replayed);
        break;
    case FANOUT__PEER_FRAME__BODY_REPLAY_END:
        on_replay_end(c, p, f->replay_end);
        break;
    case FANOUT__PEER_FRAME__BODY_EPOCH:
        on_epoch(c, f->epoch);
        break;
    default:
        doom(p, "an unexpected peer frame");
    }
}

static fo_peer_cb_t callbacks_of(fo_cluster_t *c)
{
    return (fo_peer_cb_t){ .ud = c, .up = on_up, .frame = on_frame };
}

/* Close p: its interest leaves the registry; the broker it was leaves the
 * members when p was its link and no other is up. */
static void link_close(fo_cluster_t *c, fo_peer_t *p)
{
    for (fo_peer_t **pp = &c->links; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    fo_sub_t *s;
    while ((s = fo_interest_map_pop(p->theirs)))
        sub_free(c, s);
    if (p->target >= 0) {
        target_t *t = &c->targets[p->target];
        t->link = NULL;
        t->tried = 1;
        if (p->state != FO_PEER_UP && p->state != FO_PEER_RETIRING)
            t->backoff_ms = t->backoff_ms ? (t->backoff_ms * 2 > BACKOFF_MAX ? BACKOFF_MAX : t->backoff_ms * 2)
                                          : BACKOFF_MIN;
        t->next_ms = fo_clock_ms() + (t->backoff_ms ? t->backoff_ms : BACKOFF_MIN);
    }
    if (p->node >= 0) {
        node_t *n = &c->nodes[p->node];
        if (n->link == p) {
            n->link = NULL;
            for (fo_peer_t *o = c->links; o; o = o->next)
                if (o->node == p->node && o->state == FO_PEER_UP && !o->doomed) {
                    n->link = o;
                    atomic_store(&n->interest, fo_interest_map_count(o->theirs));
                    break;
                }
            if (!n->link) {
                pending_t *pd;
                while ((pd = pending_take(c, p->node, 0, 0, NULL, 0))) {
                    replay_failed(c, pd);
                    free(pd);
                }
                atomic_store(&n->up, 0);
                atomic_store(&n->interest, 0);
                fo_info(0, "cluster: %s is gone", n->id);
                members_changed(c);
                if (c->res)
                    fo_resolver_kick(c->res);       /* who is there now? */
            }
        }
    }
    fo_peer_destroy(p);
}

static void link_add(fo_cluster_t *c, fo_peer_t *p)
{
    p->next = c->links;
    c->links = p;
}

/* ------------------------------------------------------------ items */


/* A message one of our workers sequenced: once to each broker with a
 * binding (our subscriptions on the sink are theirs). */
static void fanout_peers(fo_cluster_t *c, fo_msg_t *m)
{
    uint64_t sent = 0;
    for (fo_binding_t *bd = m->topic->local[c->sink]; bd; bd = bd->tnext) {
        int node = (int)bd->sub->conn_id;
        if (bd->from_seq > m->seq || (sent & (1ull << node)))
            continue;
        fo_peer_t *l = link_of(c, node);
        if (!l)
            continue;
        sent |= 1ull << node;
        (void)fo_peer_send_msg(l, fo_msg_ref(m), NULL, NULL);   /* 0: counted as a drop */
    }
    fo_msg_unref(m);
}

/* A queue group's pick that is another broker's entry (node, id). */
static void target_peer(fo_cluster_t *c, fo_msg_t *m, int node, uint32_t id)
{
    fo_peer_t *l = link_of(c, node);
    const fo_sub_t *s = NULL;
    for (fo_peer_t *o = c->links; o && !s; o = o->next)
        if (o->node == node)
            s = fo_interest_map_get(o->theirs, id);
    if (!l || !s || !s->queue) {
        fo_msg_unref(m);
        return;
    }
    (void)fo_peer_send_msg(l, m, s->queue, s->filter);
}

static void forward(fo_cluster_t *c, ctl_t *x)
{
    if (x->node < 0) {                 /* a reply: to the broker of its tag */
        for (int i = 0; i < atomic_load(&c->nnodes) && x->node < 0; i++)
            if ((uint32_t)(c->nodes[i].hash >> 32) == (uint32_t)x->seq && c->nodes[i].link)
                x->node = i;
        if (x->node < 0) {
            atomic_fetch_add(&c->forward_errors, 1);      /* its broker is gone */
            return;
        }
    }
    fo_peer_t *l = link_of(c, x->node);
    char text[160];
    if (!l) {
        snprintf(text, sizeof text, "the topic's home broker is unreachable: try again");
        atomic_fetch_add(&c->forward_errors, 1);
        answer_local(c, x->conn, x->ref, 0, FO_CODE(BAD_REQUEST), text);
        return;
    }
    if (l->qbytes > c->pcfg.max_output) {
        atomic_fetch_add(&c->forward_errors, 1);
        answer_local(c, x->conn, x->ref, 0, FO_CODE(MEMORY_LIMIT),
                     "the link to the topic's home is full (--cluster-max-output): publish refused");
        return;
    }
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerPublish pp = FANOUT__PEER_PUBLISH__INIT;
    pp.has_ref = pp.has_conn = pp.has_frame = 1;
    pp.ref = x->ref;
    pp.conn = x->conn;
    pp.frame = (ProtobufCBinaryData){ x->len, x->data };
    f.body_case = FANOUT__PEER_FRAME__BODY_PUBLISH;
    f.publish = &pp;
    if (fo_peer_send(l, &f)) {
        doom(l, "out of memory for a forward");
        answer_local(c, x->conn, x->ref, 0, FO_CODE(MEMORY_LIMIT), "out of memory forwarding");
        return;
    }
    atomic_fetch_add(&c->forwarded, 1);
}

static void answer_out(fo_cluster_t *c, ctl_t *x)
{
    fo_peer_t *l = link_of(c, x->node);
    if (!l)
        return;                    /* the edge is gone, and its client with it */
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerAck a = FANOUT__PEER_ACK__INIT;
    a.has_ref = a.has_conn = 1;
    a.ref = x->ref;
    a.conn = x->conn;
    if (x->code) {
        a.has_code = 1;
        a.code = (uint32_t)x->code;
        a.text = (char *)x->data;
    } else {
        a.has_seq = 1;
        a.seq = x->seq;
    }
    f.body_case = FANOUT__PEER_FRAME__BODY_ACK;
    f.ack = &a;
    if (fo_peer_send(l, &f))
        doom(l, "out of memory for an answer");
}

static void interest_change(fo_cluster_t *c, ctl_t *x)
{
    const char *filter = (const char *)x->data, *queue = (const char *)x->data + x->len + 1;
    uint32_t id;
    int is_new = 0;
    if (x->add) {
        fo_err_t e = fo_interest_add(c->ours, filter, queue, &id, &is_new);
        if (e) {
            FO_LOG_RATE(FO_LOG_ERROR, 0, "cluster: the interest in %s is not told to the peers: %s", filter,
                        fo_strerror(e));
            return;
        }
    } else if (fo_interest_del(c->ours, filter, queue, &id) != 1) {
        return;                       /* others remain (or it was never added) */
    }
    atomic_store(&c->ours_count, fo_interest_count(c->ours));
    if (x->add && !is_new)
        return;
    for (fo_peer_t *p = c->links; p; p = p->next)
        if (p->state == FO_PEER_UP && !p->doomed && send_interest(p, x->add, id, filter, queue))
            doom(p, "out of memory for an interest change");
}

static void ctl_run(fo_ctl_t *self, void *arg)
{
    ctl_t *x = (ctl_t *)self;
    fo_cluster_t *c = x->c;
    switch (x->kind) {
    case CTL_INTEREST:
        interest_change(c, x);
        break;
    case CTL_FORWARD:
        forward(c, x);
        break;
    case CTL_ANSWER_OUT:
        answer_out(c, x);
        break;
    case CTL_REPLAY:
        replay_out(c, x);
        break;
    case CTL_TLS:                      /* links made from now on use these */
        SSL_CTX_free(c->tls_server);
        SSL_CTX_free(c->tls_client);
        c->tls_server = c->pcfg.tls_server = x->tls[0];
        c->tls_client = c->pcfg.tls_client = x->tls[1];
        x->tls[0] = x->tls[1] = NULL;
        fo_info(0, "cluster: TLS context reloaded (new links use it)");
        break;
    case CTL_REPLAY_GAP:
        fo_route_replay_gap(arg, x->conn, x->sid, (const char *)x->data, x->len, x->seq, x->last, x->code);
        break;
    case CTL_REPLAY_END:
        fo_route_replay_end(arg, x->conn, x->sid, (const char *)x->data, x->len, x->seq, x->ref, x->add);
        break;
    case CTL_PUBLISH:
        fo_route_publish_peer(arg, x->node, x->conn, x->ref, x->data, x->len);
        break;
    case CTL_ANSWER_IN:
        fo_route_answer(arg, x->conn, x->ref, x->seq, x->code, x->len ? (const char *)x->data : NULL);
        break;
    case CTL_GAP:
        fo_route_peer_gap(arg, (const char *)x->data, x->len, x->seq, x->last);
        break;
    }
    ctl_drop(&x->base);
}

static void take_inbox(fo_cluster_t *c)
{
    fo_inbox_ack(&c->inbox);
    size_t n = fo_inbox_take(&c->inbox, &c->spare, &c->spare_cap);
    for (size_t i = 0; i < n; i++) {
        fo_item_t *it = &c->spare[i];
        if (it->kind == FO_ITEM_FANOUT)
            fanout_peers(c, it->u.msg);
        else if (it->kind == FO_ITEM_TARGET)
            target_peer(c, it->u.msg, (int)it->conn_id, it->sid);
        else if (it->kind == FO_ITEM_CTL)
            it->u.ctl->run(it->u.ctl, c);
        else if (it->kind == FO_ITEM_REPLY)
            fo_msg_unref(it->u.msg);
    }
}

/* ------------------------------------------------------------ the loop */

static void accept_links(fo_cluster_t *c)
{
    for (int i = 0; i < 64; i++) {
        int fd = fo_net_accept(c->lfd);
        if (fd < 0)
            return;
        fo_peer_t *p;
        if (fo_peer_accept(&c->pcfg, fd, &p)) {
            FO_LOG_RATE(FO_LOG_ERROR, 0, "cluster: cannot adopt a peer connection");
            continue;
        }
        link_add(c, p);
    }
}

static void new_addresses(fo_cluster_t *c)
{
    char addrs[FO_RESOLVE_ADDRS][FO_NET_ADDR_MAX];
    int n = fo_resolver_take(c->res, &c->res_gen, addrs, FO_RESOLVE_ADDRS, &c->res_rounds);
    if (n < 0)
        return;
    for (int i = 0; i < TARGETS; i++)
        c->targets[i].present = 0;
    for (int k = 0; k < n; k++) {
        int found = -1, free_slot = -1;
        for (int i = 0; i < TARGETS && found < 0; i++) {
            if (c->targets[i].used && !strcmp(c->targets[i].addr, addrs[k]))
                found = i;
            else if (!c->targets[i].used && free_slot < 0)
                free_slot = i;
        }
        if (found < 0 && free_slot >= 0) {
            found = free_slot;
            target_t *t = &c->targets[found];
            memset(t, 0, sizeof *t);
            t->used = 1;
            t->node = -1;
            memcpy(t->addr, addrs[k], FO_NET_ADDR_MAX);
        }
        if (found >= 0)
            c->targets[found].present = 1;
    }
    for (int i = 0; i < TARGETS; i++) {
        target_t *t = &c->targets[i];
        if (t->used && !t->present && !t->link)
            t->used = 0;                          /* gone from DNS */
    }
}

static void connect_targets(fo_cluster_t *c, uint64_t now)
{
    for (int i = 0; i < TARGETS; i++) {
        target_t *t = &c->targets[i];
        if (!t->used || !t->present || t->self || t->link || now < t->next_ms)
            continue;
        if (t->node >= 0 && c->nodes[t->node].link) {
            t->tried = 1;                         /* linked the other way */
            t->next_ms = now + BACKOFF_MAX;
            continue;
        }
        fo_peer_t *p;
        if (fo_peer_connect(&c->pcfg, t->addr, &p)) {
            FO_LOG_RATE(FO_LOG_WARN, 0, "cluster: cannot connect to %s: %s", t->addr, strerror(errno));
            t->tried = 1;
            t->backoff_ms = t->backoff_ms ? (t->backoff_ms * 2 > BACKOFF_MAX ? BACKOFF_MAX : t->backoff_ms * 2)
                                          : BACKOFF_MIN;
            t->next_ms = now + t->backoff_ms;
            continue;
        }
        p->target = i;
        t->link = p;
        link_add(c, p);
    }
}

static void check_ready(fo_cluster_t *c)
{
    if (atomic_load(&c->ready) || !c->res_rounds)
        return;
    for (int i = 0; i < TARGETS; i++)
        if (c->targets[i].used && c->targets[i].present && !c->targets[i].tried && !c->targets[i].self)
            return;
    atomic_store(&c->ready, 1);
    fo_info(0, "cluster: ready (peers resolved, every address tried)");
}

static void tick(fo_cluster_t *c, uint64_t now)
{
    new_addresses(c);
    connect_targets(c, now);
    for (fo_peer_t *p = c->links; p; p = p->next)
        if (fo_peer_tick(p, now))
            doom(p, p->state == FO_PEER_UP ? "silent too long" : "handshake or retirement timed out");
    check_ready(c);
}

static void flush_outboxes(fo_cluster_t *c)
{
    for (int i = 0; i < c->sink; i++) {
        fo_outbox_t *o = &c->outbox[i];
        if (!o->len)
            continue;
        if (fo_inbox_post(&c->b->workers[i]->inbox, o->items, o->len))
            for (size_t k = 0; k < o->len; k++)
                drop_item(c, &o->items[k]);
        o->len = 0;
    }
}

/* A link finished with `e` and `why`: log (rate-limited for what repeats:
 * unreachable or failing peers) and close. */
static void link_failed(fo_cluster_t *c, fo_peer_t *p, fo_err_t e, const char *why)
{
    if (e == FO_ERR_INVAL && p->target >= 0) {
        c->targets[p->target].self = 1;           /* our own address */
        c->targets[p->target].tried = 1;
        fo_debug(0, "cluster: %s is this broker", p->addr);
    } else if (p->state == FO_PEER_UP) {
        fo_warn(0, "cluster: link to %s (%s) closed: %s", p->node_id, p->addr, why);
    } else if (e == FO_ERR_PROTO || e == FO_ERR_BAD_FRAME || e == FO_ERR_FRAME_SIZE) {
        /* the secret, the TLS handshake, the protocol: not a peer of ours */
        atomic_fetch_add(&c->auth_failures, 1);
        FO_LOG_RATE(FO_LOG_WARN, 0, "cluster: %s not linked: %s", p->addr, why);
    } else if (p->state != FO_PEER_RETIRING) {
        FO_LOG_RATE(FO_LOG_DEBUG, 0, "cluster: %s not linked: %s", p->addr, why);
    }
    link_close(c, p);
}

static void *run(void *arg)
{
    fo_cluster_t *c = arg;
    fo_peer_cb_t cb = callbacks_of(c);
    while (!atomic_load(&c->stop)) {
        struct epoll_event evs[64];
        int pending = 0;
        for (fo_peer_t *p = c->links; p && !pending; p = p->next)
            pending = p->tls_pending && !p->doomed;
        int n = epoll_wait(c->epfd, evs, 64, pending ? 0 : TICK_MS);
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &inbox_tag) {
                take_inbox(c);
            } else if (ptr == &listen_tag) {
                accept_links(c);
            } else if (ptr) {
                fo_peer_t *p = ptr;
                char why[256] = "";
                if (p->doomed)
                    continue;
                fo_err_t e = fo_peer_on_events(p, evs[i].events, &c->arena, &cb, READ_BUDGET, why, sizeof why);
                fo_arena_reset(&c->arena);
                if (e) {
                    link_failed(c, p, e, why);
                    /* its other events in this batch point at freed memory */
                    for (int k = i + 1; k < n; k++)
                        if (evs[k].data.ptr == p)
                            evs[k].data.ptr = NULL;
                }
            }
        }
        /* TLS sessions stopped by the read budget with input inside */
        for (fo_peer_t *p = c->links, *next; p; p = next) {
            next = p->next;
            if (!p->tls_pending || p->doomed)
                continue;
            char why[256] = "";
            fo_err_t e = fo_peer_on_events(p, EPOLLIN, &c->arena, &cb, READ_BUDGET, why, sizeof why);
            fo_arena_reset(&c->arena);
            if (e)
                link_failed(c, p, e, why);
        }
        flush_outboxes(c);
        uint64_t now = fo_clock_ms();
        if (now >= c->next_tick_ms) {
            c->next_tick_ms = now + TICK_MS;
            tick(c, now);
        }
        for (fo_peer_t *p = c->links, *next; p; p = next) {
            next = p->next;
            if (!p->doomed && fo_peer_has_output(p) && fo_peer_flush(p))
                doom(p, "write failed");
            if (p->doomed)
                link_close(c, p);
        }
        atomic_store_explicit(&c->seen_epoch, atomic_load(&c->b->reclaim_epoch), memory_order_release);
    }
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

static fo_err_t load_secret(fo_cluster_t *c, const fo_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->cluster_secret[0]) {
        c->secret_len = strlen(cfg->cluster_secret);
        memcpy(c->secret, cfg->cluster_secret, c->secret_len);
        return FO_OK;
    }
    if (!cfg->cluster_secret_file[0])
        return FO_OK;
    FILE *f = fopen(cfg->cluster_secret_file, "r");
    if (!f) {
        snprintf(err, errlen, "fanoutd: --cluster-secret-file %s: %s", cfg->cluster_secret_file, strerror(errno));
        return FO_ERR_IO;
    }
    size_t n = fread(c->secret, 1, sizeof c->secret, f);
    int big = n == sizeof c->secret;
    fclose(f);
    while (n && (c->secret[n - 1] == '\n' || c->secret[n - 1] == '\r'))
        n--;
    if (big || !n) {
        snprintf(err, errlen, "fanoutd: --cluster-secret-file %s: want 1..%d bytes", cfg->cluster_secret_file,
                 SECRET_MAX - 1);
        return FO_ERR_INVAL;
    }
    c->secret_len = n;
    return FO_OK;
}

/* "HOST:PORT" of a listen address for clients: a wildcard host becomes
 * the node id. */
static void derive(const char *listen, const char *node_id, const char *scheme, char *out, size_t len)
{
    const char *colon = strrchr(listen, ':');
    size_t hl = colon ? (size_t)(colon - listen) : strlen(listen);
    if (!hl || (hl == 7 && !memcmp(listen, "0.0.0.0", 7)) || (hl == 4 && !memcmp(listen, "[::]", 4)))
        snprintf(out, len, "%s%s%s", scheme, node_id, colon ? colon : "");
    else
        snprintf(out, len, "%s%s", scheme, listen);
}

/* The addresses clients reach this broker at: --cluster-advertise, else
 * the --listen address and, with a TLS listener, tls:// and its address
 * (a wildcard host is the node id). */
static void advertise(fo_cluster_t *c, const fo_config_t *cfg)
{
    char plain[FO_CLUSTER_ADDR_MAX], tls[FO_CLUSTER_ADDR_MAX] = "";
    if (cfg->cluster_advertise[0]) {
        valid_addresses(cfg->cluster_advertise, c->client_addr, sizeof c->client_addr);
        return;
    }
    derive(cfg->listen, c->node_id, "", plain, sizeof plain);
    if (strcmp(cfg->tls_listen, "off"))
        derive(cfg->tls_listen, c->node_id, "tls://", tls, sizeof tls);
    snprintf(c->client_addr, sizeof c->client_addr, "%s%s%s", plain, tls[0] ? "," : "", tls);
}

fo_err_t fo_cluster_create(fo_broker_t *b, fo_cluster_t **out, char *err, size_t errlen)
{
    const fo_config_t *cfg = &b->cfg;
    fo_cluster_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "fanoutd: out of memory");
        return FO_ERR_NOMEM;
    }
    c->b = b;
    c->sink = b->nworkers;
    c->epfd = c->lfd = -1;
    c->inbox.efd = -1;
    c->pending_tail = &c->pending;
    pthread_rwlock_init(&c->mlock, NULL);
    fo_err_t e;
    if ((e = fo_cluster_node_id(cfg, c->node_id, sizeof c->node_id, err, errlen)) ||
        (e = load_secret(c, cfg, err, errlen)))
        goto fail;
    advertise(c, cfg);
    e = FO_ERR_NOMEM;
    snprintf(err, errlen, "fanoutd: out of memory");
    if (fo_inbox_init(&c->inbox) || fo_interest_create(&c->ours) ||
        fo_arena_init(&c->arena, 16 * 1024, 2 * (size_t)cfg->max_frame + 65536) ||
        !(c->outbox = calloc((size_t)b->nworkers, sizeof *c->outbox)))
        goto fail;
    e = FO_ERR_IO;
    if ((c->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        snprintf(err, errlen, "fanoutd: epoll_create1: %s", strerror(errno));
        goto fail;
    }
    char why[300];
    if ((e = fo_net_listen(cfg->cluster_listen, 128, &c->lfd, NULL, why, sizeof why))) {
        snprintf(err, errlen, "fanoutd: --cluster-listen: %s", why);
        goto fail;
    }
    if (cfg->cluster_tls &&
        (e = fo_tls_peer_contexts(cfg, cfg->cluster_tls_ca[0] ? cfg->cluster_tls_ca : cfg->tls_ca,
                                  &c->tls_server, &c->tls_client, err, errlen)))
        goto fail;
    if (!fo_net_is_loopback(c->lfd)) {
        if (!c->secret_len && !cfg->cluster_tls) {
            snprintf(err, errlen, "fanoutd: --cluster-listen %s is reachable from other hosts and neither a "
                     "cluster secret nor --cluster-tls is set: give --cluster-secret-file FILE (or "
                     "--cluster-secret) and --cluster-tls, or listen on 127.0.0.1 (docs/CLUSTER.md, Security)",
                     cfg->cluster_listen);
            e = FO_ERR_INVAL;
            goto fail;
        }
        if (!cfg->cluster_tls)
            fo_warn(0, "cluster: links on %s are authenticated by the cluster secret but NOT encrypted "
                       "(no --cluster-tls): keep the cluster port on a private network", cfg->cluster_listen);
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &inbox_tag };
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &listen_tag };
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->inbox.efd, &ev) || epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->lfd, &lev)) {
        snprintf(err, errlen, "fanoutd: epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    c->pcfg = (fo_peer_cfg_t){ .node_id = c->node_id, .client_addr = c->client_addr, .epoch = b->epoch,
                               .secret = c->secret, .secret_len = c->secret_len,
                               .max_output = cfg->cluster_max_output,
                               .max_frame = cfg->max_frame + 65536, .epfd = c->epfd,
                               .tls_server = c->tls_server, .tls_client = c->tls_client };
    members_changed(c);
    if ((e = fo_resolver_start(cfg->cluster_peers, cfg->cluster_resolve_ms, &c->res, err, errlen)))
        goto fail;
    *out = c;
    return FO_OK;
fail:
    fo_cluster_destroy(c);
    return e;
}

fo_err_t fo_cluster_reload(fo_cluster_t *c, const fo_config_t *cfg, char *err, size_t errlen)
{
    if (!c->tls_server)
        return FO_OK;
    ctl_t *x = ctl_new(c, CTL_TLS, NULL, 0, NULL, 0);
    if (!x) {
        snprintf(err, errlen, "fanoutd: out of memory");
        return FO_ERR_NOMEM;
    }
    fo_err_t e = fo_tls_peer_contexts(cfg, cfg->cluster_tls_ca[0] ? cfg->cluster_tls_ca : cfg->tls_ca,
                                      &x->tls[0], &x->tls[1], err, errlen);
    if (e) {
        ctl_drop(&x->base);
        return e;
    }
    /* the cluster thread swaps them in: it alone makes links */
    fo_item_t it = { .kind = FO_ITEM_CTL, .u.ctl = &x->base };
    if (fo_inbox_post(&c->inbox, &it, 1)) {
        ctl_drop(&x->base);
        snprintf(err, errlen, "fanoutd: out of memory");
        return FO_ERR_NOMEM;
    }
    return FO_OK;
}

fo_err_t fo_cluster_start(fo_cluster_t *c)
{
    if (pthread_create(&c->thread, NULL, run, c))
        return FO_ERR_IO;
    c->started = 1;
    return FO_OK;
}

void fo_cluster_destroy(fo_cluster_t *c)
{
    if (!c)
        return;
    if (c->started) {
        atomic_store(&c->stop, 1);
        uint64_t one = 1;
        ssize_t r = write(c->inbox.efd, &one, sizeof one);
        (void)r;
        pthread_join(c->thread, NULL);
    }
    fo_resolver_stop(c->res);
    c->res = NULL;                  /* link_close asks it for nothing now */
    while (c->links)
        link_close(c, c->links);
    for (int i = 0; c->outbox && i < c->sink; i++) {
        for (size_t k = 0; k < c->outbox[i].len; k++)
            drop_item(c, &c->outbox[i].items[k]);
        free(c->outbox[i].items);
    }
    while (c->pending) {
        pending_t *pd = c->pending;
        c->pending = pd->next;
        free(pd);
    }
    free(c->outbox);
    fo_inbox_destroy(&c->inbox);
    fo_interest_destroy(c->ours);
    fo_arena_destroy(&c->arena);
    free(c->spare);
    if (c->lfd >= 0)
        close(c->lfd);
    if (c->epfd >= 0)
        close(c->epfd);
    pthread_rwlock_destroy(&c->mlock);
    SSL_CTX_free(c->tls_server);    /* after the links whose sessions used them */
    SSL_CTX_free(c->tls_client);
    sodium_memzero(c->secret, sizeof c->secret);
    free(c);
}

/* ------------------------------------------------------------ metrics */

typedef struct homed_ctx {
    fo_cluster_t *c;
    uint64_t n;
} homed_ctx_t;

static void count_homed(void *ud, fo_topic_t *t)
{
    homed_ctx_t *h = ud;
    if (fo_cluster_home(h->c, t) == FO_CLUSTER_SELF)
        h->n++;
}

fo_err_t fo_cluster_metrics(fo_cluster_t *c, fo_buf_t *out)
{
    char line[512];
    fo_err_t e = FO_OK;
#define PUT(...) do { int n_ = snprintf(line, sizeof line, __VA_ARGS__);                     \
        if (!e && n_ > 0) e = fo_buf_append(out, line, (size_t)n_ < sizeof line ? (size_t)n_ : sizeof line - 1); \
    } while (0)
    int nn = atomic_load(&c->nnodes), up = 0;
    for (int i = 0; i < nn; i++)
        up += atomic_load(&c->nodes[i].up);
    int members;
    pthread_rwlock_rdlock(&c->mlock);
    members = c->mn;
    pthread_rwlock_unlock(&c->mlock);
    homed_ctx_t h = { c, 0 };
    fo_registry_each(c->b->reg, count_homed, &h);
    const struct { const char *name, *type, *help; uint64_t v; } one[] = {
        { "fanout_cluster_members", "gauge", "Brokers in the cluster as this one sees it (itself included)",
          (uint64_t)members },
        { "fanout_cluster_links_up", "gauge", "Other brokers with a link up", (uint64_t)up },
        { "fanout_cluster_ready", "gauge", "1 once the peers were resolved and every address tried",
          (uint64_t)atomic_load(&c->ready) },
        { "fanout_cluster_topics_homed", "gauge", "Topics in the registry whose home is this broker", h.n },
        { "fanout_cluster_interest_entries", "gauge",
          "Interest entries (filter, queue) this broker tells its peers", atomic_load(&c->ours_count) },
        { "fanout_cluster_forwarded_total", "counter", "Publishes forwarded to their topic's home",
          atomic_load(&c->forwarded) },
        { "fanout_cluster_forward_errors_total", "counter",
          "Publishes not forwarded (home unreachable, link full)", atomic_load(&c->forward_errors) },
        { "fanout_cluster_forwards_received_total", "counter",
          "Publishes other brokers forwarded here (the home)", atomic_load(&c->forwards_in) },
        { "fanout_cluster_delivered_in_total", "counter", "Messages received from homes and fanned out here",
          atomic_load(&c->delivered_in) },
        { "fanout_cluster_drops_in_total", "counter",
          "Messages from homes dropped here (memory cap, topic limit)", atomic_load(&c->drops_in) },
        { "fanout_cluster_auth_failures_total", "counter",
          "Links refused for the secret, the TLS handshake or the protocol before they were up",
          atomic_load(&c->auth_failures) },
    };
    for (size_t k = 0; k < sizeof one / sizeof one[0]; k++)
        PUT("# HELP %s %s\n# TYPE %s %s\n%s %llu\n", one[k].name, one[k].help, one[k].name, one[k].type,
            one[k].name, (unsigned long long)one[k].v);
    static const struct { const char *name, *type, *help; size_t off; } per[] = {
        { "fanout_cluster_link_messages_out_total", "counter", "Messages sent to the broker (PeerDeliver)",
          offsetof(fo_peer_counters_t, msgs_out) },
        { "fanout_cluster_link_bytes_out_total", "counter", "Bytes written to the broker's link",
          offsetof(fo_peer_counters_t, bytes_out) },
        { "fanout_cluster_link_messages_in_total", "counter", "Messages received from the broker (PeerDeliver)",
          offsetof(fo_peer_counters_t, msgs_in) },
        { "fanout_cluster_link_bytes_in_total", "counter", "Bytes read from the broker's link",
          offsetof(fo_peer_counters_t, bytes_in) },
        { "fanout_cluster_link_drops_total", "counter", "Messages for the broker dropped (--cluster-max-output)",
          offsetof(fo_peer_counters_t, drops) },
        { "fanout_cluster_link_gaps_total", "counter", "PeerGap notices sent to the broker for dropped messages",
          offsetof(fo_peer_counters_t, gaps_out) },
    };
    for (size_t k = 0; k < sizeof per / sizeof per[0]; k++) {
        PUT("# HELP %s %s\n# TYPE %s %s\n", per[k].name, per[k].help, per[k].name, per[k].type);
        for (int i = 0; i < nn; i++) {
            const _Atomic uint64_t *v = (const _Atomic uint64_t *)((const char *)&c->nodes[i].ctr + per[k].off);
            PUT("%s{node=\"%s\"} %llu\n", per[k].name, c->nodes[i].id, (unsigned long long)atomic_load(v));
        }
    }
    PUT("# HELP fanout_cluster_link_up 1 while a link to the broker is up\n# TYPE fanout_cluster_link_up gauge\n");
    for (int i = 0; i < nn; i++)
        PUT("fanout_cluster_link_up{node=\"%s\"} %d\n", c->nodes[i].id, atomic_load(&c->nodes[i].up));
    PUT("# HELP fanout_cluster_peer_interest_entries Interest entries the broker told this one\n"
        "# TYPE fanout_cluster_peer_interest_entries gauge\n");
    for (int i = 0; i < nn; i++)
        PUT("fanout_cluster_peer_interest_entries{node=\"%s\"} %llu\n", c->nodes[i].id,
            (unsigned long long)atomic_load(&c->nodes[i].interest));
#undef PUT
    return e;
}
