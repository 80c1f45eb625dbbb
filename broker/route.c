/* route.c -- publish, fan-out, subscribe, replay and repair (route.h).
 *
 * The one rule that keeps this simple: a worker only ever touches its own
 * connections. Everything crossing workers is a message reference in an
 * inbox item. Per message the publishing worker does: a topic lookup in
 * its own cache (no lock), one topic-mutex section (sequence, ring, which
 * workers have subscribers, queue-group picks), one malloc for the encoded
 * DELIVER body, and one outbox append per *worker* that has subscribers.
 * The per-subscriber work -- a refcount and an output-queue entry -- is
 * done by the worker that owns the subscriber, in parallel.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "acl.h"
#include "cluster.h"
#include "clock.h"
#include "log.h"
#include "login.h"
#include "route.h"
#include "tcache.h"
#include "users.h"

#define REPAIR_MAX 100000u      /* sequences one REPAIR may ask for */

/* ------------------------------------------------------------ helpers */

static void send_ack(fo_conn_t *c, uint64_t req, uint64_t seq, int has_seq)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Ack a = FANOUT__ACK__INIT;
    a.has_ref = 1;
    a.ref = req;
    if (has_seq) {
        a.has_seq = 1;
        a.seq = seq;
    }
    f.body_case = FANOUT__FRAME__BODY_ACK;
    f.ack = &a;
    fo_conn_send(c, &f);
}

/* Fan m out to this worker's plain subscribers of its topic, taking the
 * references they need in one atomic add (the caller's is one of them):
 * with n subscribers on a worker that is one contended cache-line write
 * instead of n. Nothing can free m mid-walk: every delivery still to come
 * holds its reference already. */
static int wants(const fo_binding_t *b, const fo_msg_t *m)
{
    /* a multicast subscriber gets TCP only for topics no group carries to
     * it: none matches, or its connection got no key for the group (and
     * so does not listen to it) */
    int g = m->topic->mcast_group;
    return m->seq >= b->from_seq &&
           !(b->sub->multicast && g >= 0 && (b->sub->mcast_keyed >> g & 1u));
}

/* A cluster: a topic's sequence numbers carry the epoch of the home that
 * gave them (cluster.h, docs/CLUSTER.md). The first message of a newer
 * epoch a subscription gets comes after one GAP naming the change, from
 * the last it got to the one before this (none when they are consecutive:
 * a count that carried into the epoch bits). */
static void epoch_check(fo_binding_t *b, const fo_msg_t *m)
{
    uint64_t last = b->last_seq;
    b->last_seq = m->seq;
    if (last && m->seq > last + 1 && m->seq >> FO_CLUSTER_EPOCH_SHIFT > last >> FO_CLUSTER_EPOCH_SHIFT)
        fo_conn_send_gap(b->sub->conn, b->sub->sid, m->topic, m->topic->name, m->topic->len, last + 1,
                         m->seq - 1, FANOUT__GAP_REASON__GAP_HOME_CHANGED);
}

static void deliver_local(fo_worker_t *w, fo_msg_t *m)
{
    uint32_t n = 0;
    int clustered = w->b->cluster != NULL;
    if (m->mcast_by == w->id + 1)          /* from its home: our multicast group */
        fo_mcast_tx_add(w->mtx, m->topic->mcast_group, m->topic->name, m->topic->len, m->seq,
                        fo_msg_payload(m), m->payload_len, !m->extras);
    for (fo_binding_t *b = m->topic->local[w->id]; b; b = b->tnext)
        n += (uint32_t)wants(b, m);
    if (!n) {
        fo_msg_unref(m);
        return;
    }
    if (n > 1)
        atomic_fetch_add_explicit(&m->refs, n - 1, memory_order_relaxed);
    for (fo_binding_t *b = m->topic->local[w->id]; b && n; b = b->tnext)
        if (wants(b, m)) {
            n--;
            if (clustered)
                epoch_check(b, m);
            fo_conn_deliver(b->sub->conn, b->sub, m);
        }
}

static void deliver_target(fo_worker_t *w, fo_msg_t *m, uint64_t conn_id, uint32_t sid)
{
    fo_conn_t *c = fo_worker_conn(w, conn_id);
    fo_sub_t *s = c ? fo_conn_sub(c, sid) : NULL;
    fo_item_t it = { .kind = FO_ITEM_TARGET, .sid = sid, .u.msg = m, .conn_id = conn_id };
    if (!c && fo_worker_forward(w, &it))
        return;                       /* it moved to another worker */
    if (!s) {
        FO_STAT_INC(&w->stats, drops_gone);
        fo_msg_unref(m);
        return;
    }
    fo_conn_deliver(c, s, m);
}

static void deliver_reply(fo_worker_t *w, fo_msg_t *m, uint64_t conn_id);

void fo_route_item(fo_worker_t *w, fo_item_t *it)
{
    if (it->kind == FO_ITEM_FANOUT) {
        deliver_local(w, it->u.msg);   /* consumes the item's reference */
    } else if (it->kind == FO_ITEM_TARGET) {
        deliver_target(w, it->u.msg, it->conn_id, it->sid);
    } else if (it->kind == FO_ITEM_REPLY) {
        deliver_reply(w, it->u.msg, it->conn_id);
    }
}

/* ------------------------------------------------------------ publish */

/* One queue-group member chosen for a message (one per group). */
struct fo_pick {
    int worker;
    uint32_t sid;
    uint64_t conn_id;
};

/* Room for one more pick in the worker's scratch array (it only grows:
 * a topic with many queue groups needs as many picks per message). */
static int picks_room(fo_worker_t *w, uint32_t n)
{
    if (n < w->picks_cap)
        return 1;
    uint32_t ncap = w->picks_cap ? w->picks_cap * 2 : 16;
    struct fo_pick *np = realloc(w->picks, ncap * sizeof *np);
    if (!np)
        return 0;
    w->picks = np;
    w->picks_cap = ncap;
    return 1;
}

/* The topic of a PUBLISH if this worker knows it: the publisher's last
 * one, else the worker's cache. No lock. */
static fo_topic_t *cached_topic(fo_conn_t *c, const char *name, size_t len)
{
    /* a publisher mostly repeats its last topic: check it before hashing */
    fo_topic_t *t = c->last_topic;
    if (!t || t->len != len || memcmp(t->name, name, len))
        t = fo_tcache_find(c->w->tcache, name, len, fo_topic_hash(name, len));
    /* a dead topic stays readable until this worker's next quiescent
     * point: treat it as a miss */
    return t && !atomic_load_explicit(&t->dead, memory_order_relaxed) ? t : NULL;
}

/* The registry's topic (created when new), cached. NULL when refused (the
 * error is sent). */
static fo_topic_t *registry_topic(fo_conn_t *c, const char *name, size_t len, uint64_t req)
{
    fo_worker_t *w = c->w;
    fo_err_t err = FO_OK;
    fo_user_counters_t *owner = NULL;
    if (c->user && fo_user_limit(c->user, FO_LIMIT_TOPICS) != FO_USERS_LIMIT_NONE &&
        !fo_registry_find(w->b->reg, name, len)) {
        /* a topic this user would create: within its limit? */
        if (fo_user_take(c->user, FO_LIMIT_TOPICS)) {
            fo_conn_send_error(c, FO_CODE(BAD_REQUEST), req, FO_NO_SID,
                               "user %s may create at most %llu topics (its limit)", fo_user_name(c->user),
                               (unsigned long long)fo_user_limit(c->user, FO_LIMIT_TOPICS));
            return NULL;
        }
        owner = fo_user_counters(c->user);
    }
    fo_topic_t *t = fo_registry_get(w->b->reg, name, len, owner, &err);
    if (!t) {
        if (err == FO_ERR_BUSY)
            fo_conn_send_error(c, FO_CODE(BAD_REQUEST), req, FO_NO_SID,
                               "topic limit reached (--max-topics %d)", w->b->cfg.max_topics);
        else
            fo_conn_send_error(c, FO_CODE(MEMORY_LIMIT), req, FO_NO_SID, "out of memory");
        return NULL;
    }
    fo_tcache_put(w->tcache, t);
    return t;
}

static int header_key_ok(const char *k)
{
    size_t n = k ? strlen(k) : 0;
    if (n == 0 || n > FO_HEADER_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f)
            return 0;
    return 1;
}

/* A request's reply address and the headers (docs/PROTOCOL.md §4.4): an
 * invalid reply address closes (ERR_INVALID_TOPIC), headers beyond the
 * limits are refused (ERR_BAD_REQUEST, stays open). 1 = fine. */
static int extras_ok(fo_conn_t *c, const fo_publish_req_t *p)
{
    if (p->reply && !fo_topic_valid(p->reply, strlen(p->reply))) {
        fo_conn_fail(c, FO_CODE(INVALID_TOPIC), "invalid reply address \"%.64s\"", p->reply);
        return 0;
    }
    if (p->n_headers > FO_HEADERS_MAX) {
        fo_conn_send_error(c, FO_CODE(BAD_REQUEST), p->req, FO_NO_SID,
                           "%zu headers (at most %d)", p->n_headers, FO_HEADERS_MAX);
        return 0;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < p->n_headers; i++) {
        const Fanout__Header *h = p->headers[i];
        if (!header_key_ok(h->key)) {
            fo_conn_send_error(c, FO_CODE(BAD_REQUEST), p->req, FO_NO_SID,
                               "header %zu: a key is 1..%d bytes 0x21..0x7e", i + 1, FO_HEADER_KEY_MAX);
            return 0;
        }
        bytes += strlen(h->key) + (h->has_value ? h->value.len : 0);
    }
    if (bytes > FO_HEADERS_BYTES) {
        fo_conn_send_error(c, FO_CODE(BAD_REQUEST), p->req, FO_NO_SID,
                           "headers of %zu bytes (at most %d)", bytes, FO_HEADERS_BYTES);
        return 0;
    }
    return 1;
}

static fo_deliver_fields_t fields_of(const fo_publish_req_t *p, uint64_t seq, uint64_t time_ns)
{
    return (fo_deliver_fields_t){
        .topic = p->topic, .topic_len = p->topic_len, .seq = seq, .time_ns = time_ns,
        .payload = p->payload, .payload_len = p->payload_len,
        .reply = p->reply, .reply_len = p->reply ? strlen(p->reply) : 0,
        .headers = p->headers, .n_headers = p->n_headers };
}

/* Does anyone receive t's messages over TCP (plain subscribers on some
 * worker, or a queue group)? Topic locked. */
static int has_responders(const fo_topic_t *t, int nworkers)
{
    if (t->groups)
        return 1;
    for (int i = 0; i < nworkers; i++)
        if (atomic_load_explicit(&t->nlocal[i], memory_order_relaxed))
            return 1;
    return 0;
}

/* The one topic-lock section of a publish: the next sequence, the encoded
 * message, its ring slot, a member of each queue group (into w->picks)
 * and which workers have plain subscribers (*mask, read under the lock so
 * a concurrent SUBSCRIBE is either before and sees this seq, or after).
 * NULL when refused: *why is FO_ERR_NOMEM (the memory cap) or
 * FO_ERR_NOT_FOUND (a request nobody would receive). */
static fo_msg_t *sequence(fo_worker_t *w, fo_topic_t *t, const fo_publish_req_t *p,
                          uint64_t *mask, uint32_t *npicks, fo_err_t *why)
{
    fo_broker_t *b = w->b;
    uint32_t retain_msgs = LIM(b, retention_msgs), lost = 0;
    uint64_t retain_bytes = LIM(b, retention_bytes);
    *npicks = 0;
    *mask = 0;
    pthread_mutex_lock(&t->lock);
    if (atomic_load_explicit(&t->dead, memory_order_relaxed)) {
        pthread_mutex_unlock(&t->lock);
        *why = FO_ERR_CLOSED;              /* freed meanwhile: look it up again */
        return NULL;
    }
    if (p->reply && !has_responders(t, b->nsinks)) {
        pthread_mutex_unlock(&t->lock);
        *why = FO_ERR_NOT_FOUND;           /* not sequenced, not retained */
        return NULL;
    }
    if (b->cluster && !atomic_load_explicit(&t->cluster_owner, memory_order_relaxed)) {
        /* the first number this broker gives as the topic's home: a new
         * epoch above anything an earlier home gave (docs/CLUSTER.md) */
        t->seq = fo_cluster_epoch_start(t->seq) - 1;
        atomic_store_explicit(&t->cluster_owner, 1, memory_order_relaxed);
    }
    fo_deliver_fields_t f = fields_of(p, t->seq + 1, w->read_time_ns);
    fo_msg_t *m = fo_msg_encode(&b->mem, t, &f);
    if (!m) {
        pthread_mutex_unlock(&t->lock);
        *why = FO_ERR_NOMEM;
        return NULL;
    }
    t->seq = m->seq;
    t->last_ns = m->time_ns;
    if (fo_ring_push(&t->ring, m, retain_msgs, retain_bytes))
        FO_STAT_INC(&w->stats, retention_failures);   /* delivered, not retained */
    for (fo_qgroup_t *g = t->groups; g; g = g->next) {
        fo_binding_t *pb = fo_qgroup_pick(g, m->seq);
        if (!pb)
            continue;
        if (!picks_room(w, *npicks)) {
            lost++;                   /* out of memory: counted, never silent */
            continue;
        }
        w->picks[(*npicks)++] = (struct fo_pick){ pb->sub->worker, pb->sub->sid, pb->sub->conn_id };
    }
    for (int i = 0; i < b->nsinks && i < 64; i++)      /* the cluster's sink too */
        if (atomic_load_explicit(&t->nlocal[i], memory_order_relaxed))
            *mask |= 1ull << i;
    pthread_mutex_unlock(&t->lock);
    if (lost)
        FO_STAT_ADD(&w->stats, drops_gone, lost);
    return m;
}

/* After the lock: one reference to each other worker with subscribers,
 * this worker's own subscribers directly, then the queue-group picks. */
static void fan_out(fo_worker_t *w, fo_msg_t *m, uint64_t mask, uint32_t npicks)
{
    for (int i = 0; i < w->b->nsinks; i++) {
        if (!(mask & (1ull << i)) || i == w->id)
            continue;
        fo_item_t it = { .kind = FO_ITEM_FANOUT, .u.msg = fo_msg_ref(m) };
        fo_worker_post(w, i, &it);
    }
    if (mask & (1ull << w->id))
        deliver_local(w, fo_msg_ref(m));
    for (uint32_t i = 0; i < npicks; i++) {
        const struct fo_pick *pk = &w->picks[i];
        if (pk->worker == w->id) {
            deliver_target(w, fo_msg_ref(m), pk->conn_id, pk->sid);
        } else {
            fo_item_t it = { .kind = FO_ITEM_TARGET, .sid = pk->sid,
                             .u.msg = fo_msg_ref(m), .conn_id = pk->conn_id };
            fo_worker_post(w, pk->worker, &it);
        }
    }
}

static void refused(fo_conn_t *c, const fo_publish_req_t *p, fo_err_t why)
{
    fo_worker_t *w = c->w;
    if (why == FO_ERR_CLOSED) {          /* died twice in a row: a busy sweeper */
        fo_conn_send_error(c, FO_CODE(BAD_REQUEST), p->req, FO_NO_SID, "topic is being freed: try again");
        return;
    }
    if (why == FO_ERR_NOT_FOUND) {
        FO_STAT_INC(&w->stats, no_responders);
        fo_conn_send_error(c, FO_CODE(NO_RESPONDERS), p->req, FO_NO_SID,
                           "no subscriber for \"%.*s\"", (int)(p->topic_len < 64 ? p->topic_len : 64),
                           p->topic);
        return;
    }
    FO_STAT_INC(&w->stats, publish_refused_memory);
    fo_conn_send_error(c, FO_CODE(MEMORY_LIMIT), p->req, FO_NO_SID,
                       "broker memory cap reached (%llu bytes): publish refused",
                       (unsigned long long)atomic_load(&w->b->mem.limit));
}

/* ------------------------------------------------------------ replies */

/* "_INBOX.<16 hex conn id><16 hex secret>[.anything]": the connection and
 * its secret. 1 when name has that form. */
static int inbox_parse(const char *name, size_t len, uint64_t *conn_id, uint64_t *secret)
{
    size_t pl = sizeof FO_INBOX_PREFIX - 1;
    if (len < pl + 32 || memcmp(name, FO_INBOX_PREFIX, pl) || (len > pl + 32 && name[pl + 32] != '.'))
        return 0;
    uint64_t v[2] = { 0, 0 };
    for (size_t i = 0; i < 32; i++) {
        char ch = name[pl + i];
        unsigned d = ch >= '0' && ch <= '9' ? (unsigned)(ch - '0')
                   : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10) : 16;
        if (d == 16)
            return 0;
        v[i / 16] = v[i / 16] << 4 | d;
    }
    *conn_id = v[0];
    *secret = v[1];
    return 1;
}

/* Is name under the reserved prefix (its first token "_INBOX")? */
static int inbox_topic(const char *name, size_t len)
{
    size_t pl = sizeof FO_INBOX_PREFIX - 2;        /* "_INBOX" */
    return len >= pl && !memcmp(name, FO_INBOX_PREFIX, pl) && (len == pl || name[pl] == '.');
}

/* A reply on this worker: to the connection the address names, if it is
 * still there and the address's secret is its own. */
static void deliver_reply(fo_worker_t *w, fo_msg_t *m, uint64_t conn_id)
{
    size_t tl;
    const char *t = fo_msg_topic(m, &tl);
    uint64_t id, secret;
    fo_conn_t *c = fo_worker_conn(w, conn_id);
    fo_item_t it = { .kind = FO_ITEM_REPLY, .u.msg = m, .conn_id = conn_id };
    if (!c && fo_worker_forward(w, &it))
        return;                       /* the requester moved to another worker */
    if (!c || !inbox_parse(t, tl, &id, &secret) || secret != c->inbox_secret) {
        FO_STAT_INC(&w->stats, drops_gone);      /* the requester has gone */
        fo_msg_unref(m);
        return;
    }
    fo_conn_deliver_reply(c, m);
}

/* A PUBLISH to an inbox address: no registry topic, no sequence, no
 * retention; straight to the requester's worker. */
/* A cluster's inbox carries its broker's tag: "_INBOX.<32 hex>.<8 hex>"
 * (cluster.h, fo_cluster_tag). 1 with *tag when name has one. */
static int inbox_node(const char *name, size_t len, uint32_t *tag)
{
    size_t at = sizeof FO_INBOX_PREFIX - 1 + 32 + 1;
    if (len < at + 8 || name[at - 1] != '.' || (len > at + 8 && name[at + 8] != '.'))
        return 0;
    uint32_t v = 0;
    for (size_t i = 0; i < 8; i++) {
        char ch = name[at + i];
        unsigned d = ch >= '0' && ch <= '9' ? (unsigned)(ch - '0')
                   : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10) : 16;
        if (d == 16)
            return 0;
        v = v << 4 | d;
    }
    *tag = v;
    return 1;
}

/* The reply m to the connection conn_id of this broker (its worker). */
static void route_reply(fo_worker_t *w, fo_msg_t *m, uint64_t conn_id)
{
    int to = (int)(conn_id & 0xff);
    if (to >= w->b->nworkers) {
        FO_STAT_INC(&w->stats, drops_gone);
        fo_msg_unref(m);
    } else if (to == w->id) {
        deliver_reply(w, m, conn_id);
    } else {
        fo_item_t it = { .kind = FO_ITEM_REPLY, .u.msg = m, .conn_id = conn_id };
        fo_worker_post(w, to, &it);
    }
}

static void publish_reply(fo_conn_t *c, const fo_publish_req_t *p)
{
    fo_worker_t *w = c->w;
    uint64_t conn_id, secret;
    if (!inbox_parse(p->topic, p->topic_len, &conn_id, &secret)) {
        fo_conn_send_error(c, FO_CODE(BAD_REQUEST), p->req, FO_NO_SID,
                           "\"%.*s\" is not a reply address (%s<32 hex digits>[.ID])",
                           (int)(p->topic_len < 64 ? p->topic_len : 64), p->topic, FO_INBOX_PREFIX);
        return;
    }
    if ((p->reply || p->n_headers) && !extras_ok(c, p))
        return;
    fo_cluster_t *cl = w->b->cluster;
    uint32_t tag;
    if (cl && inbox_node(p->topic, p->topic_len, &tag) && tag != fo_cluster_tag(cl)) {
        /* the requester is on another broker: the frame goes there as it came */
        FO_STAT_INC(&w->stats, replies);
        fo_cluster_forward_reply(cl, tag, p->frame, p->frame_len);
        if (p->req)
            send_ack(c, p->req, 0, 0);
        return;
    }
    fo_deliver_fields_t f = fields_of(p, 0, w->read_time_ns);
    fo_msg_t *m = fo_msg_encode(&w->b->mem, NULL, &f);
    if (!m) {
        refused(c, p, FO_ERR_NOMEM);
        return;
    }
    FO_STAT_INC(&w->stats, messages_in);
    FO_STAT_INC(&w->stats, replies);
    FO_STAT_ADD(&w->stats, bytes_in, p->payload_len);
    route_reply(w, m, conn_id);
    if (p->req)
        send_ack(c, p->req, 0, 0);
}

/* ------------------------------------------------------------ publish */

/* Sequence p on t (this broker is its home) and fan it out: to this
 * worker's subscribers, the other workers, queue-group picks, multicast
 * and the cluster's sink. Returns t with *seq, or NULL with *why
 * (sequence's reasons; FO_ERR_CLOSED: t died, look it up again). */
static fo_topic_t *publish_here(fo_worker_t *w, fo_topic_t *t, const fo_publish_req_t *p, uint64_t *seq,
                                 fo_err_t *why)
{
    uint64_t mask;
    uint32_t npicks;
    fo_msg_t *m = sequence(w, t, p, &mask, &npicks, why);
    if (!m)
        return NULL;
    FO_STAT_INC(&w->stats, messages_in);
    FO_STAT_ADD(&w->stats, bytes_in, p->payload_len);
    fan_out(w, m, mask, npicks);
    int routed = npicks > 0 || mask != 0;
    if (t->mcast_group >= 0) {
        fo_mcast_tx_add(w->mtx, t->mcast_group, p->topic, p->topic_len, m->seq, p->payload,
                        p->payload_len, !p->reply && !p->n_headers);
        routed = 1;
    }
    if (!routed)
        FO_STAT_INC(&w->stats, drops_no_route);
    *seq = m->seq;
    fo_msg_unref(m);
    return t;
}

#define MOVE_SAMPLE 256     /* every 256th publish of a pure publisher ...   */
#define MOVE_STREAK 4       /* ... pointing at one worker this often: move   */

/* A publisher without subscriptions whose topics' subscribers all live on
 * one other worker costs a hand-off between threads per message (measured:
 * 0.32 CPU-s per million 1->1 messages against 0.19 on one worker): ask
 * its worker to move it there (worker.h, fo_worker_move). Sampled: one
 * topic of every MOVE_SAMPLE publishes, MOVE_STREAK samples in a row. A
 * topic with queue groups or subscribers on several workers never asks. */
static void consider_move(fo_conn_t *c, fo_topic_t *t)
{
    fo_worker_t *w = c->w;
    int only = -1;
    pthread_mutex_lock(&t->lock);
    int groups = t->groups != NULL;
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < w->b->nworkers && !groups; i++)
        if (atomic_load_explicit(&t->nlocal[i], memory_order_relaxed)) {
            if (only >= 0) {
                only = -1;
                break;
            }
            only = i;
        }
    if (groups || only < 0 || only == w->id) {
        c->move_streak = 0;
        return;
    }
    if (c->move_to != only) {
        c->move_to = (int16_t)only;
        c->move_streak = 0;
    }
    if (++c->move_streak >= MOVE_STREAK)
        fo_worker_move(w, c, only);
}

/* The topic of a PUBLISH, or NULL when it was handled otherwise (a reply
 * to an inbox) or refused (the ERROR is said): checks that cached topics
 * passed when they were first seen -- the name, the user's permission --
 * the request's extras, and the registry (creating the topic). */
static fo_topic_t *publish_topic(fo_conn_t *c, const fo_publish_req_t *p)
{
    fo_topic_t *t = cached_topic(c, p->topic, p->topic_len);
    if (!t) {
        if (inbox_topic(p->topic, p->topic_len)) {
            publish_reply(c, p);
            return NULL;
        }
        if (!fo_topic_valid(p->topic, p->topic_len)) {
            fo_conn_fail(c, FO_CODE(INVALID_TOPIC), "invalid topic \"%.*s\"",
                         (int)(p->topic_len < 64 ? p->topic_len : 64), p->topic);
            return NULL;
        }
    }
    /* the last topic passed this check when it became the last topic (a
     * topic not cached here is NULL, as last_topic is on a new connection:
     * never "the last one") */
    if (c->user && (!t || t != c->last_topic) && !fo_login_may_publish(c, p->topic, p->topic_len)) {
        FO_STAT_INC(&c->w->stats, permission_denied);
        fo_conn_send_error(c, FO_CODE(PERMISSION), p->req, FO_NO_SID, "user %s may not publish to \"%.*s\"",
                           fo_user_name(c->user), (int)(p->topic_len < 64 ? p->topic_len : 64), p->topic);
        return NULL;
    }
    if ((p->reply || p->n_headers) && !extras_ok(c, p))
        return NULL;
    if (!t && !(t = registry_topic(c, p->topic, p->topic_len, p->req)))
        return NULL;
    return t;
}

void fo_route_publish(fo_conn_t *c, const fo_publish_req_t *p)
{
    fo_worker_t *w = c->w;
    fo_topic_t *t = publish_topic(c, p);
    if (!t)
        return;
    c->last_topic = t;
    if (w->b->cluster) {
        int home = fo_cluster_home(w->b->cluster, t);
        if (home != FO_CLUSTER_SELF) {
            /* sequenced by its home; the answer comes back as the ACK */
            fo_cluster_forward(w->b->cluster, home, c->id, p->req, p->frame, p->frame_len);
            return;
        }
    }
    fo_err_t why = FO_OK;
    uint64_t seq = 0;
    fo_topic_t *pt = publish_here(w, t, p, &seq, &why);
    if (why == FO_ERR_CLOSED) {        /* it died after the lookup: once more */
        c->last_topic = NULL;
        if (!(t = registry_topic(c, p->topic, p->topic_len, p->req)))
            return;
        c->last_topic = t;
        pt = publish_here(w, t, p, &seq, &why);
    }
    if (!pt) {
        refused(c, p, why);
        return;
    }
    if (atomic_load_explicit(&pt->blocked, memory_order_relaxed) > 0)
        fo_conn_pause(c, pt);      /* flow control: a subscriber is full */
    if (p->req)
        send_ack(c, p->req, seq, 1);
    /* a cluster answers forwards by connection id: its publishers stay put */
    if (!w->b->cluster && !c->nsubs && !c->moved && (++c->pub_count & (MOVE_SAMPLE - 1)) == 0)
        consider_move(c, pt);
}

/* ------------------------------------------------------------ cluster */

static void peer_answer(fo_worker_t *w, int node, uint64_t conn, uint64_t ref, uint64_t seq, int code,
                        const char *text)
{
    if (ref || code)
        fo_cluster_answer(w->b->cluster, node, conn, ref, seq, code, text);
}

void fo_route_publish_peer(fo_worker_t *w, int node, uint64_t conn, uint64_t ref, const uint8_t *frame,
                           size_t len)
{
    fo_publish_view_t v;
    fo_publish_req_t p = { .req = ref };
    Fanout__Frame *f;
    if (fo_publish_peek(frame, len, &v) == FO_OK) {
        p.topic = v.topic;
        p.topic_len = v.topic_len;
        p.payload = v.payload;
        p.payload_len = v.payload_len;
    } else if (!fo_frame_unpack(frame, len, &w->arena, &f) && f->body_case == FANOUT__FRAME__BODY_PUBLISH &&
               f->publish->topic) {
        const Fanout__Publish *pb = f->publish;
        p.topic = pb->topic;
        p.topic_len = strlen(pb->topic);
        p.payload = pb->payload.data;
        p.payload_len = pb->has_payload ? pb->payload.len : 0;
        p.reply = pb->reply;
        p.headers = pb->headers;
        p.n_headers = pb->n_headers;
    } else {
        peer_answer(w, node, conn, ref, 0, FO_CODE(BAD_FRAME), "the forwarded PUBLISH does not unpack");
        goto out;
    }
    uint64_t rconn, rsecret;
    if (inbox_topic(p.topic, p.topic_len)) {
        /* a reply to one of our connections, from a broker its responder
         * is on: delivered, never sequenced; nobody waits for an answer */
        fo_msg_t *m = NULL;
        if (inbox_parse(p.topic, p.topic_len, &rconn, &rsecret)) {
            fo_deliver_fields_t f = fields_of(&p, 0, fo_realtime_ns());
            m = fo_msg_encode(&w->b->mem, NULL, &f);
        }
        if (m)
            route_reply(w, m, rconn);
        else
            FO_STAT_INC(&w->stats, drops_gone);
        goto out;
    }
    if (!fo_topic_valid(p.topic, p.topic_len)) {
        peer_answer(w, node, conn, ref, 0, FO_CODE(BAD_REQUEST), "not a topic a home sequences");
        goto out;
    }
    fo_err_t why = FO_OK;
    uint64_t seq = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        fo_topic_t *t = fo_registry_get(w->b->reg, p.topic, p.topic_len, NULL, &why);
        if (!t) {
            peer_answer(w, node, conn, ref, 0, why == FO_ERR_BUSY ? FO_CODE(BAD_REQUEST) : FO_CODE(MEMORY_LIMIT),
                        why == FO_ERR_BUSY ? "topic limit reached at the home" : "out of memory at the home");
            goto out;
        }
        if (fo_cluster_home(w->b->cluster, t) != FO_CLUSTER_SELF) {
            peer_answer(w, node, conn, ref, 0, FO_CODE(BAD_REQUEST),
                        "the topic's home is changing (a broker joined or left): try again");
            goto out;
        }
        w->read_time_ns = fo_realtime_ns();
        why = FO_OK;
        if (publish_here(w, t, &p, &seq, &why) || why != FO_ERR_CLOSED)
            break;
    }
    if (why == FO_ERR_NOT_FOUND)
        peer_answer(w, node, conn, ref, 0, FO_CODE(NO_RESPONDERS), "no subscriber for the request's topic");
    else if (why == FO_ERR_NOMEM)
        peer_answer(w, node, conn, ref, 0, FO_CODE(MEMORY_LIMIT), "broker memory cap reached at the home");
    else if (why)
        peer_answer(w, node, conn, ref, 0, FO_CODE(BAD_REQUEST), "topic is being freed: try again");
    else
        peer_answer(w, node, conn, ref, seq, 0, NULL);
out:
    fo_arena_reset(&w->arena);        /* inbox work: no read batch holds it */
}

void fo_route_answer(fo_worker_t *w, uint64_t conn_id, uint64_t ref, uint64_t seq, int code, const char *text)
{
    fo_conn_t *c = fo_worker_conn(w, conn_id);
    if (!c || c->state != FO_CONN_OPEN)
        return;
    if (code)
        fo_conn_send_error(c, code, ref, FO_NO_SID, "%s", text ? text : "refused by the topic's home");
    else if (ref)
        send_ack(c, ref, seq, 1);
}

void fo_route_replay_gap(fo_worker_t *w, uint64_t conn_id, uint32_t sid, const char *name, size_t len,
                         uint64_t first, uint64_t last, int reason)
{
    fo_conn_t *c = fo_worker_conn(w, conn_id);
    if (!c || !fo_conn_sub(c, sid))
        return;
    fo_conn_send_gap(c, sid, fo_registry_find(w->b->reg, name, len), name, len, first, last, reason);
}

void fo_route_replay_end(fo_worker_t *w, uint64_t conn_id, uint32_t sid, const char *name, size_t len,
                         uint64_t live_from, uint64_t ref, int repair)
{
    fo_conn_t *c = fo_worker_conn(w, conn_id);
    if (!c)
        return;
    if (repair) {
        if (ref)
            send_ack(c, ref, 0, 0);
        return;
    }
    fo_sub_t *s = fo_conn_sub(c, sid);
    if (s)
        (void)!fo_registry_set_from(w->b->reg, s, name, len, live_from);   /* unbound meanwhile: nothing to do */
}

void fo_route_peer_gap(fo_worker_t *w, const char *name, size_t len, uint64_t first, uint64_t last)
{
    fo_topic_t *t = fo_registry_find(w->b->reg, name, len);
    if (!t)
        return;
    for (fo_binding_t *b = t->local[w->id]; b; b = b->tnext)
        if (b->from_seq <= last)
            fo_conn_send_gap(b->sub->conn, b->sub->sid, t, t->name, t->len,
                             first > b->from_seq ? first : b->from_seq, last,
                             FANOUT__GAP_REASON__GAP_SLOW_CONSUMER);
}

/* ------------------------------------------------------------ replay */

/* Send retained messages first..last of t (locked) to sub as replays, and
 * GAP for the part already evicted. Returns the count sent. */
static uint64_t replay_range(fo_conn_t *c, fo_sub_t *sub, fo_topic_t *t,
                             uint64_t first, uint64_t last)
{
    if (first == 0)
        first = 1;
    if (last > t->seq)
        last = t->seq;
    if (first > last)
        return 0;
    /* this epoch's seq 0 (a cluster's numbers have epochs; one broker's
     * do not, however many it gives) */
    uint64_t epoch0 = c->w->b->cluster ? t->seq >> FO_CLUSTER_EPOCH_SHIFT << FO_CLUSTER_EPOCH_SHIFT : 0;
    if (first <= epoch0) {
        /* a cluster: a position an older home gave has nothing here (one
         * GAP says so); a number without an epoch means this epoch's */
        if (first >> FO_CLUSTER_EPOCH_SHIFT)
            fo_conn_send_gap(c, sub->sid, t, t->name, t->len, first, epoch0,
                             FANOUT__GAP_REASON__GAP_HOME_CHANGED);
        first = epoch0 + 1;
        if (first > last)
            return 0;
    }
    uint64_t oldest = fo_ring_oldest(&t->ring, t->seq + 1);
    if (first < oldest) {
        uint64_t gl = oldest - 1 < last ? oldest - 1 : last;
        fo_conn_send_gap(c, sub->sid, t, t->name, t->len, first, gl, FANOUT__GAP_REASON__GAP_EVICTED);
        first = gl + 1;
    }
    uint64_t sent = 0;
    for (uint64_t s = first; s <= last; s++) {
        fo_msg_t *m = fo_ring_get(&t->ring, s);
        fo_msg_t *copy = m ? fo_msg_replay_copy(m) : NULL;
        if (!copy) {
            fo_conn_send_gap(c, sub->sid, t, t->name, t->len, s, last, FANOUT__GAP_REASON__GAP_EVICTED);
            break;
        }
        fo_conn_deliver(c, sub, copy);
        sent++;
    }
    FO_STAT_ADD(&c->w->stats, replayed, sent);
    return sent;
}

typedef struct {
    fo_conn_t *c;
    const Fanout__Subscribe *s;
} bound_ctx_t;

static void on_bound(void *ud, fo_topic_t *t, fo_binding_t *b)
{
    bound_ctx_t *ctx = ud;
    const Fanout__Subscribe *s = ctx->s;
    if (b->group)
        return;                       /* queue groups start at "new" */
    uint64_t from = 0;
    int want = 0, earliest = 0;
    for (size_t i = 0; i < s->n_positions; i++) {
        const Fanout__Position *p = s->positions[i];
        if (p->topic && !strcmp(p->topic, t->name)) {
            from = p->seq;
            want = 1;
            break;
        }
    }
    if (!want && s->has_start) {
        if (s->start == FANOUT__START__START_EARLIEST) {
            /* what is retained: no GAP for what went before (§8) */
            from = fo_ring_oldest(&t->ring, t->seq + 1);
            want = earliest = 1;
        } else if (s->start == FANOUT__START__START_SEQ) {
            from = s->start_seq;
            want = 1;
        }
    }
    if (!want)
        return;
    fo_cluster_t *cl = ctx->c->w->b->cluster;
    int home = cl ? fo_cluster_home(cl, t) : FO_CLUSTER_SELF;
    if (home != FO_CLUSTER_SELF) {
        /* the home has the ring: nothing live until it says where its
         * replay ends (docs/CLUSTER.md, Replay through an edge) */
        b->from_seq = FO_FROM_PAUSED;
        fo_cluster_replay(cl, home, ctx->c->id, b->sub->sid, t->name, t->len, from, earliest, 0, 0);
        return;
    }
    replay_range(ctx->c, b->sub, t, from, t->seq);
}

/* The SUBSCRIBE checks that close the connection (docs/PROTOCOL.md §14:
 * those come first): missing fields, then topic and filter syntax.
 * Returns 0 when it failed the connection. */
static int sub_frame_ok(fo_conn_t *c, const Fanout__Subscribe *s)
{
    if (!s->has_sid || !s->filter) {
        fo_conn_fail(c, FO_CODE(MISSING_FIELD), "SUBSCRIBE needs sid and filter");
        return 0;
    }
    if (s->has_start && s->start == FANOUT__START__START_SEQ && !s->has_start_seq) {
        fo_conn_fail(c, FO_CODE(MISSING_FIELD), "START_SEQ needs start_seq");
        return 0;
    }
    for (size_t i = 0; i < s->n_positions; i++)
        if (!s->positions[i]->topic || !s->positions[i]->has_seq) {
            fo_conn_fail(c, FO_CODE(MISSING_FIELD), "a Position needs topic and seq");
            return 0;
        }
    if (!fo_filter_valid(s->filter, strlen(s->filter))) {
        fo_conn_fail(c, FO_CODE(INVALID_TOPIC), "invalid filter \"%.64s\"", s->filter);
        return 0;
    }
    for (size_t i = 0; i < s->n_positions; i++) {
        const char *t = s->positions[i]->topic;
        if (!fo_topic_valid(t, strlen(t))) {
            fo_conn_fail(c, FO_CODE(INVALID_TOPIC), "invalid position topic \"%.64s\"", t);
            return 0;
        }
    }
    return 1;
}

/* An enum value protobuf-c let through but the protocol does not know. */
static const char *enum_problem(const Fanout__Subscribe *s)
{
    if (s->has_delivery && s->delivery != FANOUT__DELIVERY__DELIVERY_TCP &&
        s->delivery != FANOUT__DELIVERY__DELIVERY_MULTICAST)
        return "unknown delivery";
    if (s->has_start && (s->start < FANOUT__START__START_NEW || s->start > FANOUT__START__START_EARLIEST))
        return "unknown start";
    if (s->has_slow && (s->slow < FANOUT__SLOW_POLICY__SLOW_DEFAULT ||
                        s->slow > FANOUT__SLOW_POLICY__SLOW_BLOCK))
        return "unknown slow policy";
    return NULL;
}

/* What is wrong with a SUBSCRIBE's values (docs/PROTOCOL.md §8, §9), or
 * NULL: ERR_BAD_REQUEST, the connection stays open. */
static const char *sub_request_problem(const Fanout__Subscribe *s)
{
    const char *bad = enum_problem(s);
    if (bad)
        return bad;
    if (inbox_topic(s->filter, strlen(s->filter)))
        return "the _INBOX. prefix is reserved: replies reach their connection without a subscription";
    int queue = s->queue && s->queue[0];
    int mcast = s->has_delivery && s->delivery == FANOUT__DELIVERY__DELIVERY_MULTICAST;
    if (queue && !fo_topic_valid(s->queue, strlen(s->queue)))
        return "invalid queue group name";
    if (queue && mcast)
        return "queue groups are delivered over TCP only";
    int replay = (s->has_start && s->start != FANOUT__START__START_NEW) || s->n_positions;
    if ((queue || mcast) && replay)
        return "queue-group and multicast subscriptions start at NEW, without positions";
    if (s->has_start && s->start == FANOUT__START__START_SEQ && s->start_seq == 0)
        return "start_seq must be >= 1";
    for (size_t i = 0; i < s->n_positions; i++) {
        const Fanout__Position *p = s->positions[i];
        if (!fo_topic_match(s->filter, p->topic))
            return "a position names a topic the filter does not match";
        if (p->seq == 0)
            return "a position's seq must be >= 1";
    }
    return NULL;
}

/* What c's user may subscribe to (docs/SECURITY.md): a filter that can
 * match some topic it may read (a wide one then binds only to those), and
 * slow=block and multicast only with their rights. A default policy of
 * block becomes drop for a user without the right. 0 when refused (the
 * ERROR is sent). */
static int sub_permitted(fo_conn_t *c, const Fanout__Subscribe *s, uint64_t req, int *policy)
{
    const char *who = fo_user_name(c->user);
    const char *no = NULL;
    int explicit_block = s->has_slow && s->slow == FANOUT__SLOW_POLICY__SLOW_BLOCK;
    if (!fo_acl_filter_ok(fo_login_sub_acl(c), s->filter))
        no = "may not subscribe to";
    else if (explicit_block && !fo_login_has_right(c, FO_RIGHT_BLOCK))
        no = "may not use slow=block (it pauses other publishers) on";
    else if (s->has_delivery && s->delivery == FANOUT__DELIVERY__DELIVERY_MULTICAST &&
             !fo_login_has_right(c, FO_RIGHT_MULTICAST))
        no = "may not receive by multicast on";
    if (no) {
        FO_STAT_INC(&c->w->stats, permission_denied);
        fo_conn_send_error(c, FO_CODE(PERMISSION), req, s->sid, "user %s %s \"%.64s\"", who, no, s->filter);
        return 0;
    }
    if (*policy == FO_POLICY_BLOCK && !fo_login_has_right(c, FO_RIGHT_BLOCK))
        *policy = FO_POLICY_DROP;
    return 1;
}

/* A sub that never reached the registry (its user count is given back). */
static void free_unregistered(fo_conn_t *c, fo_sub_t *sub)
{
    if (c->user)
        fo_user_give(c->user, FO_LIMIT_SUBSCRIPTIONS);
    free(sub->queue);
    free(sub);
}

/* The checks that refuse a SUBSCRIBE with an ERROR and leave the
 * connection open (after sub_frame_ok's, which close it): the sid, the
 * values, the connection's limit, the user's permissions. 0 when refused;
 * else *policy is the slow-consumer policy it gets. */
static int sub_acceptable(fo_conn_t *c, const Fanout__Subscribe *s, uint64_t req, int *policy)
{
    fo_worker_t *w = c->w;
    if (s->sid == 0 || fo_conn_sub(c, s->sid)) {
        fo_conn_send_error(c, FO_CODE(BAD_SID), req, s->sid, "sid %u is %s", s->sid,
                           s->sid ? "already in use" : "reserved");
        return 0;
    }
    const char *bad = sub_request_problem(s);
    if (bad) {
        fo_conn_send_error(c, FO_CODE(BAD_REQUEST), req, s->sid, "%s", bad);
        return 0;
    }
    if (c->nsubs >= (uint32_t)w->b->cfg.max_subs) {
        fo_conn_send_error(c, FO_CODE(MAX_SUBS), req, s->sid, "at most %d subscriptions per connection",
                           w->b->cfg.max_subs);
        return 0;
    }
    int pol = s->has_slow ? (int)s->slow : 0;
    *policy = pol == FANOUT__SLOW_POLICY__SLOW_DISCONNECT ? FO_POLICY_DISCONNECT
            : pol == FANOUT__SLOW_POLICY__SLOW_DROP ? FO_POLICY_DROP
            : pol == FANOUT__SLOW_POLICY__SLOW_BLOCK ? FO_POLICY_BLOCK
            : LIM(w->b, slow_policy);
    return !c->user || sub_permitted(c, s, req, policy);
}

/* A new subscription of c (counted against its user), not registered
 * yet; NULL when refused (the ERROR is said) or out of memory (*nomem). */
static fo_sub_t *sub_new(fo_conn_t *c, const Fanout__Subscribe *s, uint64_t req, int policy, int *nomem)
{
    size_t fl = strlen(s->filter);
    fo_sub_t *sub = calloc(1, sizeof *sub + fl + 1);
    *nomem = !sub;
    if (!sub)
        return NULL;
    if (c->user && fo_user_take(c->user, FO_LIMIT_SUBSCRIPTIONS)) {
        free(sub);
        fo_conn_send_error(c, FO_CODE(MAX_SUBS), req, s->sid, "user %s may hold at most %llu subscriptions",
                           fo_user_name(c->user),
                           (unsigned long long)fo_user_limit(c->user, FO_LIMIT_SUBSCRIPTIONS));
        return NULL;
    }
    sub->acl = fo_login_sub_acl(c);
    memcpy(sub->filter, s->filter, fl + 1);
    sub->sid = s->sid;
    sub->worker = c->w->id;
    sub->conn = c;
    sub->conn_id = c->id;
    sub->multicast = s->has_delivery && s->delivery == FANOUT__DELIVERY__DELIVERY_MULTICAST;
    sub->mcast_keyed = c->mcast_keyed;
    sub->policy = (uint8_t)policy;
    if (s->queue && s->queue[0] && !(sub->queue = strdup(s->queue))) {
        free_unregistered(c, sub);
        *nomem = 1;
        return NULL;
    }
    return sub;
}

/* In a cluster: the peers hear of the interest before any replay request
 * this subscription makes of a home (both go through the cluster's inbox
 * in order); the topics it asks to replay exist here, so it binds. */
static void sub_cluster(fo_cluster_t *cl, fo_registry_t *reg, const fo_sub_t *sub,
                        const Fanout__Subscribe *s)
{
    fo_cluster_interest(cl, sub->filter, sub->queue, 1);
    fo_err_t e;
    for (size_t i = 0; i < s->n_positions; i++) {
        const char *pt = s->positions[i]->topic;
        (void)fo_registry_get(reg, pt, strlen(pt), NULL, &e);   /* NULL: not bound, no replay */
    }
    if (s->has_start && s->start != FANOUT__START__START_NEW && !fo_filter_is_wild(sub->filter))
        (void)fo_registry_get(reg, sub->filter, strlen(sub->filter), NULL, &e);
}

void fo_route_subscribe(fo_conn_t *c, const Fanout__Subscribe *s, uint64_t req)
{
    fo_worker_t *w = c->w;
    int policy, nomem;
    if (!sub_frame_ok(c, s) || !sub_acceptable(c, s, req, &policy))
        return;
    fo_sub_t *sub = sub_new(c, s, req, policy, &nomem);
    if (!sub) {
        if (nomem)
            fo_conn_send_error(c, FO_CODE(MEMORY_LIMIT), req, s->sid, "out of memory");
        return;
    }
    /* On the connection first, so replay (inside subscribe) finds it. */
    if (fo_conn_sub_add(c, sub)) {
        free_unregistered(c, sub);
        goto nomem;
    }
    /* The ACK precedes every DELIVER/GAP of the subscription, replays
     * included (docs/PROTOCOL.md §5); OOM below is reported with ERROR. */
    if (req)
        send_ack(c, req, 0, 0);
    fo_cluster_t *cl = w->b->cluster;
    if (cl)
        sub_cluster(cl, w->b->reg, sub, s);
    bound_ctx_t ctx = { c, s };
    if (fo_registry_subscribe(w->b->reg, sub, on_bound, &ctx)) {
        if (cl)
            fo_cluster_interest(cl, sub->filter, sub->queue, 0);
        fo_conn_sub_remove(c, sub);
        free_unregistered(c, sub);
        goto nomem;
    }
    FO_STAT_INC(&w->stats, subscriptions);
    fo_debug(c->id, "subscribe sid %u %s%s%s", sub->sid, sub->filter,
             sub->queue ? " queue " : "", sub->queue ? sub->queue : "");
    return;
nomem:
    fo_conn_send_error(c, FO_CODE(MEMORY_LIMIT), req, s->sid, "out of memory");
}

static void free_sub(fo_conn_t *c, fo_sub_t *s)
{
    if (c->w->b->cluster)
        fo_cluster_interest(c->w->b->cluster, s->filter, s->queue, 0);
    fo_registry_unsubscribe(c->w->b->reg, s);
    FO_STAT_SUB(&c->w->stats, subscriptions, 1);
    free_unregistered(c, s);
}

void fo_route_end_sub(fo_conn_t *c, fo_sub_t *s)
{
    fo_conn_sub_remove(c, s);
    free_sub(c, s);
}

void fo_route_unsubscribe(fo_conn_t *c, uint32_t sid, uint64_t req)
{
    fo_sub_t *s = fo_conn_sub(c, sid);
    if (!s) {
        fo_conn_send_error(c, FO_CODE(BAD_SID), req, sid, "no subscription %u", sid);
        return;
    }
    fo_conn_sub_remove(c, s);
    free_sub(c, s);
    if (req)
        send_ack(c, req, 0, 0);
}

void fo_route_drop_subs(fo_conn_t *c)
{
    while (c->subs) {
        fo_sub_t *s = c->subs;
        fo_conn_sub_remove(c, s);
        free_sub(c, s);
    }
}

/* ------------------------------------------------------------ repair */

void fo_route_repair(fo_conn_t *c, const Fanout__Repair *r, uint64_t req)
{
    fo_worker_t *w = c->w;
    if (!r->has_sid || !r->topic || !r->has_first || !r->has_last) {
        fo_conn_fail(c, FO_CODE(MISSING_FIELD), "REPAIR needs sid, topic, first and last");
        return;
    }
    size_t tl = strlen(r->topic);
    if (!fo_topic_valid(r->topic, tl)) {
        fo_conn_fail(c, FO_CODE(INVALID_TOPIC), "invalid topic \"%.64s\"", r->topic);
        return;
    }
    uint64_t first = r->first, last = r->last;
    fo_sub_t *sub = fo_conn_sub(c, r->sid);
    if (!sub) {
        fo_conn_send_error(c, FO_CODE(BAD_SID), req, r->sid, "no subscription %u", r->sid);
        return;
    }
    if (!fo_topic_match(sub->filter, r->topic) ||
        first == 0 || last < first || last - first >= REPAIR_MAX) {
        fo_conn_send_error(c, FO_CODE(BAD_REQUEST), req, r->sid,
                           "bad REPAIR range %llu..%llu on \"%.64s\" (at most %u, within the filter)",
                           (unsigned long long)first, (unsigned long long)last, r->topic, REPAIR_MAX);
        return;
    }
    if (sub->acl && !fo_acl_topic_ok(sub->acl, r->topic, tl)) {
        FO_STAT_INC(&w->stats, permission_denied);
        fo_conn_send_error(c, FO_CODE(PERMISSION), req, r->sid, "user %s may not read \"%.64s\"",
                           fo_login_user_name(c), r->topic);
        return;
    }
    fo_cluster_t *cl = w->b->cluster;
    int home = cl ? fo_cluster_home_of(cl, r->topic, tl) : FO_CLUSTER_SELF;
    if (home != FO_CLUSTER_SELF) {
        /* the home's ring answers; the ACK comes after its replay */
        fo_cluster_replay(cl, home, c->id, sub->sid, r->topic, tl, first, 0, last, req ? req : 0);
        return;
    }
    /* sequences not given yet are ignored (docs/PROTOCOL.md §4.13): on a
     * topic that does not exist, none are */
    fo_topic_t *t = fo_registry_find(w->b->reg, r->topic, tl);
    uint64_t sent = 0;
    if (t) {
        pthread_mutex_lock(&t->lock);
        if (last > t->seq)
            last = t->seq;
        sent = replay_range(c, sub, t, first, last);
        pthread_mutex_unlock(&t->lock);
        FO_STAT_ADD(&w->stats, repairs_served, sent);
        if (first <= last && sent < last - first + 1)
            FO_STAT_INC(&w->stats, repairs_missed);
    }
    if (req)
        send_ack(c, req, 0, 0);
}
