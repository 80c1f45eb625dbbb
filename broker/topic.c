/* topic.c -- the registry: topics, subscriptions, bindings (topic.h).
 *
 * The registry is a chained hash of topics, a list of subscriptions and
 * an index of their filters by token (sublist.c). Lookups take the read
 * lock; creating a topic or (un)subscribing takes the write lock. A new
 * topic asks the index for the subscriptions that match it (cost grows
 * with those, not with all subscriptions); a new subscription with a
 * literal filter finds its one topic by hash, and only a wildcard one
 * walks the topics. Never per message: the publish path only looks a
 * topic up (and workers cache the pointer, tcache.c).
 */
#include <stdlib.h>
#include <string.h>
#include "acl.h"
#include "clock.h"
#include "sublist.h"
#include "topic.h"
#include "users.h"

#define TOMBS 65536               /* freed topics whose last seq is kept  */

/* The last sequence of a freed topic, keyed by a 64-bit hash of its name
 * (direct-mapped: a newer one overwrites an older one). */
typedef struct tomb {
    uint64_t name_hash, seq;
} tomb_t;

struct fo_registry {
    pthread_rwlock_t lock;
    fo_sublist_t *index;          /* every subscription, by filter token  */
    fo_topic_t *limbo;            /* dead, not yet freed (sweeper only)   */
    tomb_t *tombs;                /* TOMBS, made at the first death       */
    size_t sweep_bucket;          /* where the sweep goes on              */
    _Atomic uint64_t created, freed, deaths, trimmed;
    fo_topic_t **buckets;
    size_t nbuckets;
    _Atomic uint64_t ntopics;
    int max_topics;
    int nworkers;
    fo_sub_t *subs;
    uint64_t walk_mark;           /* fo_registry_set_acl's last mark       */
    fo_group_fn group_for;
    const void *group_ud;
};

/* ------------------------------------------------------------ registry */

fo_err_t fo_registry_create(int nworkers, int max_topics, fo_group_fn group_for,
                            const void *group_ud, fo_registry_t **out)
{
    fo_registry_t *r = calloc(1, sizeof *r);
    if (!r)
        goto fail;
    r->nbuckets = 1024;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    if (!r->buckets)
        goto fail;
    if (fo_sublist_create(&r->index))
        goto fail;
    if (pthread_rwlock_init(&r->lock, NULL))
        goto fail;
    r->nworkers = nworkers;
    r->max_topics = max_topics;
    r->group_for = group_for;
    r->group_ud = group_ud;
    *out = r;
    return FO_OK;
fail:
    if (r) {
        free(r->buckets);
        fo_sublist_destroy(r->index);
    }
    free(r);
    return FO_ERR_NOMEM;
}

static void topic_free(fo_topic_t *t)
{
    fo_user_counters_give(t->owner, FO_LIMIT_TOPICS);
    fo_ring_destroy(&t->ring);
    while (t->groups) {
        fo_qgroup_t *g = t->groups;
        t->groups = g->next;
        free(g);
    }
    pthread_mutex_destroy(&t->lock);
    free(t->local);
    free((void *)t->nlocal);
    free(t);
}

void fo_registry_destroy(fo_registry_t *r)
{
    if (!r)
        return;
    while (r->limbo) {
        fo_topic_t *t = r->limbo;
        r->limbo = t->hnext;
        topic_free(t);
    }
    free(r->tombs);
    /* Subscriptions belong to connections, which are gone by now; their
     * bindings are freed with them (fo_registry_unsubscribe). */
    for (size_t i = 0; i < r->nbuckets; i++) {
        fo_topic_t *t = r->buckets[i];
        while (t) {
            fo_topic_t *n = t->hnext;
            topic_free(t);
            t = n;
        }
    }
    pthread_rwlock_destroy(&r->lock);
    fo_sublist_destroy(r->index);
    free(r->buckets);
    free(r);
}

uint64_t fo_registry_topics(const fo_registry_t *r)
{
    return atomic_load_explicit(&r->ntopics, memory_order_relaxed);
}

uint64_t fo_registry_created(const fo_registry_t *r) { return atomic_load(&r->created); }
uint64_t fo_registry_freed(const fo_registry_t *r) { return atomic_load(&r->freed); }
uint64_t fo_registry_deaths(const fo_registry_t *r)
{
    return atomic_load_explicit(&r->deaths, memory_order_acquire);
}

static uint64_t name_hash64(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ull;            /* FNV-1a, 64 bits */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h | 1;                                    /* 0 = an empty tomb */
}

static fo_topic_t *find_locked(fo_registry_t *r, const char *name, size_t len, uint32_t h)
{
    for (fo_topic_t *t = r->buckets[h & (r->nbuckets - 1)]; t; t = t->hnext)
        if (t->hash == h && t->len == len && !memcmp(t->name, name, len))
            return t;
    return NULL;
}

fo_topic_t *fo_registry_find(fo_registry_t *r, const char *name, size_t len)
{
    uint32_t h = fo_topic_hash(name, len);
    pthread_rwlock_rdlock(&r->lock);
    fo_topic_t *t = find_locked(r, name, len, h);
    pthread_rwlock_unlock(&r->lock);
    return t;
}

static void rehash(fo_registry_t *r)
{
    size_t n = r->nbuckets * 2;
    fo_topic_t **nb = calloc(n, sizeof *nb);
    if (!nb)
        return;                      /* longer chains; still correct */
    for (size_t i = 0; i < r->nbuckets; i++) {
        fo_topic_t *t = r->buckets[i];
        while (t) {
            fo_topic_t *next = t->hnext;
            t->hnext = nb[t->hash & (n - 1)];
            nb[t->hash & (n - 1)] = t;
            t = next;
        }
    }
    free(r->buckets);
    r->buckets = nb;
    r->nbuckets = n;
}

/* A queue group is keyed by (queue name, filter): name holds both, split
 * by a NUL. */
static fo_qgroup_t *group_get(fo_topic_t *t, const char *name, const char *filter)
{
    size_t nl = strlen(name), fl = strlen(filter);
    fo_qgroup_t *g = fo_topic_group(t, name, filter);
    if (g)
        return g;
    g = calloc(1, sizeof *g + nl + fl + 2);
    if (!g)
        return NULL;
    memcpy(g->name, name, nl + 1);
    memcpy(g->name + nl + 1, filter, fl + 1);
    g->next = t->groups;
    t->groups = g;
    return g;
}

/* Link a new binding of sub to t. Topic locked (or not yet visible). */
static fo_binding_t *bind(fo_topic_t *t, fo_sub_t *sub, uint64_t from_seq)
{
    fo_binding_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->sub = sub;
    b->topic = t;
    b->from_seq = from_seq;
    if (sub->queue) {
        fo_qgroup_t *g = group_get(t, sub->queue, sub->filter);
        if (!g) {
            free(b);
            return NULL;
        }
        b->group = g;
        if (!g->members) {
            b->tnext = b->tprev = b;
            g->members = g->cursor = b;
        } else {              /* insert before the cursor: last in turn */
            b->tnext = g->cursor;
            b->tprev = g->cursor->tprev;
            b->tprev->tnext = b;
            g->cursor->tprev = b;
        }
        g->count++;
    } else {
        int w = sub->worker;
        b->tnext = t->local[w];
        if (b->tnext)
            b->tnext->tprev = b;
        t->local[w] = b;
        atomic_store_explicit(&t->nlocal[w],
            atomic_load_explicit(&t->nlocal[w], memory_order_relaxed) + 1,
            memory_order_relaxed);
    }
    b->snext = sub->bindings;
    sub->bindings = b;
    return b;
}

static void unbind(fo_binding_t *b)
{
    fo_topic_t *t = b->topic;
    if (b->counted)
        atomic_fetch_sub(&t->blocked, 1);
    if (b->group) {
        fo_qgroup_t *g = b->group;
        if (--g->count == 0) {
            /* the last member left: the group goes too (a client cycling
             * through queue names must not grow the topic's list) */
            for (fo_qgroup_t **gp = &t->groups; *gp; gp = &(*gp)->next)
                if (*gp == g) {
                    *gp = g->next;
                    break;
                }
            free(g);
        } else {
            b->tprev->tnext = b->tnext;
            b->tnext->tprev = b->tprev;
            if (g->members == b)
                g->members = b->tnext;
            if (g->cursor == b)
                g->cursor = b->tnext;
        }
    } else {
        int w = b->sub->worker;
        if (b->tprev)
            b->tprev->tnext = b->tnext;
        else
            t->local[w] = b->tnext;
        if (b->tnext)
            b->tnext->tprev = b->tprev;
        atomic_store_explicit(&t->nlocal[w],
            atomic_load_explicit(&t->nlocal[w], memory_order_relaxed) - 1,
            memory_order_relaxed);
    }
}

/* fo_sublist_match's callback for a topic being created. */
/* May sub receive topic t? (its user's permissions; registry lock) */
static int allowed(const fo_sub_t *sub, const fo_topic_t *t)
{
    return !sub->acl || fo_acl_topic_ok(sub->acl, t->name, t->len);
}

static void bind_new(void *ud, fo_sub_t *s)
{
    fo_topic_t *t = ud;
    if (allowed(s, t))
        (void)!bind(t, s, 1);   /* NULL on OOM: that sub misses this topic */
}

fo_topic_t *fo_registry_get(fo_registry_t *r, const char *name, size_t len,
                            struct fo_user_counters *owner, fo_err_t *err)
{
    uint32_t h = fo_topic_hash(name, len);
    pthread_rwlock_rdlock(&r->lock);
    fo_topic_t *t = find_locked(r, name, len, h);
    pthread_rwlock_unlock(&r->lock);
    if (t) {
        fo_user_counters_give(owner, FO_LIMIT_TOPICS);
        return t;
    }
    pthread_rwlock_wrlock(&r->lock);
    t = find_locked(r, name, len, h);
    if (t)
        goto out;
    if (fo_registry_topics(r) >= (uint64_t)r->max_topics) {
        *err = FO_ERR_BUSY;
        goto out;
    }
    t = calloc(1, sizeof *t + len + 1);
    if (!t)
        goto nomem;
    t->local = calloc((size_t)r->nworkers, sizeof *t->local);
    t->nlocal = calloc((size_t)r->nworkers, sizeof *t->nlocal);
    if (!t->local || !t->nlocal || pthread_mutex_init(&t->lock, NULL)) {
        free(t->local);
        free((void *)t->nlocal);
        free(t);
        t = NULL;
        goto nomem;
    }
    memcpy(t->name, name, len);
    t->len = len;
    t->hash = h;
    if (r->tombs) {                  /* freed before: continue its numbering */
        uint64_t nh = name_hash64(name, len);
        tomb_t *tb = &r->tombs[nh & (TOMBS - 1)];
        if (tb->name_hash == nh) {
            t->seq = tb->seq;
            tb->name_hash = 0;
        }
    }
    fo_ring_init(&t->ring);
    t->mcast_group = r->group_for ? r->group_for(r->group_ud, t->name) : -1;
    t->last_ns = fo_realtime_ns();   /* a new topic is not idle at once */
    t->owner = owner;
    owner = NULL;                    /* the topic keeps the count */
    /* Not visible yet: bind matching subscriptions without the topic lock;
     * the index finds them without looking at the others */
    fo_sublist_match(r->index, t->name, t->len, bind_new, t);
    t->hnext = r->buckets[h & (r->nbuckets - 1)];
    r->buckets[h & (r->nbuckets - 1)] = t;
    atomic_fetch_add_explicit(&r->ntopics, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->created, 1, memory_order_relaxed);
    if (fo_registry_topics(r) > r->nbuckets)
        rehash(r);
out:
    pthread_rwlock_unlock(&r->lock);
    fo_user_counters_give(owner, FO_LIMIT_TOPICS);
    return t;
nomem:
    *err = FO_ERR_NOMEM;
    goto out;
}

fo_err_t fo_registry_subscribe(fo_registry_t *r, fo_sub_t *sub, fo_bound_fn bound, void *ud)
{
    fo_err_t err = FO_OK;
    sub->wildcard = (uint8_t)fo_filter_is_wild(sub->filter);
    pthread_rwlock_wrlock(&r->lock);
    if (fo_sublist_insert(r->index, sub)) {
        pthread_rwlock_unlock(&r->lock);
        return FO_ERR_NOMEM;
    }
    sub->reg_prev = NULL;
    sub->reg_next = r->subs;
    if (r->subs)
        r->subs->reg_prev = sub;
    r->subs = sub;
    if (!sub->wildcard) {
        size_t len = strlen(sub->filter);
        fo_topic_t *t = find_locked(r, sub->filter, len, fo_topic_hash(sub->filter, len));
        if (t && allowed(sub, t)) {
            pthread_mutex_lock(&t->lock);
            fo_binding_t *b = bind(t, sub, t->seq + 1);
            if (b && bound)
                bound(ud, t, b);
            pthread_mutex_unlock(&t->lock);
            if (!b)
                err = FO_ERR_NOMEM;
        }
    } else {
        for (size_t i = 0; i < r->nbuckets && !err; i++)
            for (fo_topic_t *t = r->buckets[i]; t && !err; t = t->hnext) {
                if (!fo_topic_match(sub->filter, t->name) || !allowed(sub, t))
                    continue;
                pthread_mutex_lock(&t->lock);
                fo_binding_t *b = bind(t, sub, t->seq + 1);
                if (b && bound)
                    bound(ud, t, b);
                pthread_mutex_unlock(&t->lock);
                if (!b)
                    err = FO_ERR_NOMEM;
            }
    }
    pthread_rwlock_unlock(&r->lock);
    if (err)
        fo_registry_unsubscribe(r, sub);
    return err;
}

void fo_registry_unsubscribe(fo_registry_t *r, fo_sub_t *sub)
{
    pthread_rwlock_wrlock(&r->lock);
    while (sub->bindings) {
        fo_binding_t *b = sub->bindings;
        sub->bindings = b->snext;
        pthread_mutex_lock(&b->topic->lock);
        unbind(b);
        pthread_mutex_unlock(&b->topic->lock);
        free(b);
    }
    fo_sublist_remove(r->index, sub);
    if (sub->reg_prev)
        sub->reg_prev->reg_next = sub->reg_next;
    else if (r->subs == sub)
        r->subs = sub->reg_next;
    if (sub->reg_next)
        sub->reg_next->reg_prev = sub->reg_prev;
    sub->reg_prev = sub->reg_next = NULL;
    pthread_rwlock_unlock(&r->lock);
}

fo_err_t fo_registry_set_acl(fo_registry_t *r, fo_sub_t *sub, const struct fo_acl *acl, int rebind)
{
    fo_err_t err = FO_OK;
    pthread_rwlock_wrlock(&r->lock);
    sub->acl = acl;
    if (!rebind)
        goto out;
    /* what it may no longer read goes; what stays is marked */
    uint64_t mark = ++r->walk_mark;
    for (fo_binding_t **bp = &sub->bindings; *bp;) {
        fo_binding_t *b = *bp;
        if (allowed(sub, b->topic)) {
            b->topic->walk_mark = mark;
            bp = &b->snext;
            continue;
        }
        *bp = b->snext;
        pthread_mutex_lock(&b->topic->lock);
        unbind(b);
        pthread_mutex_unlock(&b->topic->lock);
        free(b);
    }
    /* what it may read now and did not: from the next message */
    for (size_t i = 0; i < r->nbuckets && !err; i++)
        for (fo_topic_t *t = r->buckets[i]; t && !err; t = t->hnext) {
            if (t->walk_mark == mark || !fo_topic_match(sub->filter, t->name) || !allowed(sub, t))
                continue;
            pthread_mutex_lock(&t->lock);
            if (!bind(t, sub, t->seq + 1))
                err = FO_ERR_NOMEM;
            pthread_mutex_unlock(&t->lock);
        }
out:
    pthread_rwlock_unlock(&r->lock);
    return err;
}

/* ------------------------------------------------------------ reclaim */

/* Unbound, nothing retained, nobody paused on it, quiet long enough.
 * Topic locked. */
static int idle(const fo_topic_t *t, int nworkers, uint64_t now_ns, uint64_t linger_ns)
{
    if (t->groups || t->ring.count || atomic_load(&t->blocked))
        return 0;
    for (int i = 0; i < nworkers; i++)
        if (t->local[i])
            return 0;
    return now_ns < t->last_ns || now_ns - t->last_ns >= linger_ns;
}

/* Drop retained messages older than max_age_ns. Topic locked. */
static void expire(fo_topic_t *t, uint64_t now_ns, uint64_t max_age_ns)
{
    if (!max_age_ns || now_ns < max_age_ns)
        return;
    fo_ring_expire(&t->ring, now_ns - max_age_ns);
}

/* t, unlinked and marked dead under its lock with its last sequence
 * `seq` read there: a tombstone for the name, then limbo. */
static void bury(fo_registry_t *r, fo_topic_t *t, uint64_t seq, uint64_t epoch)
{
    if (!r->tombs)
        r->tombs = calloc(TOMBS, sizeof *r->tombs);   /* NULL: seqs restart */
    if (r->tombs) {
        uint64_t nh = name_hash64(t->name, t->len);
        r->tombs[nh & (TOMBS - 1)] = (tomb_t){ nh, seq };
    }
    t->limbo_epoch = epoch;
    t->hnext = r->limbo;
    r->limbo = t;
    atomic_fetch_sub_explicit(&r->ntopics, 1, memory_order_relaxed);
}

uint64_t fo_registry_trimmed(const fo_registry_t *r)
{
    return atomic_load_explicit(&r->trimmed, memory_order_relaxed);
}

size_t fo_registry_sweep(fo_registry_t *r, uint64_t now_ns, uint64_t max_age_ns,
                         uint64_t linger_ns, uint64_t epoch, size_t budget, int trim)
{
    uint64_t trimmed = 0;
    size_t unlinked = 0, seen = 0;
    pthread_rwlock_wrlock(&r->lock);
    for (size_t n = 0; n < r->nbuckets && seen < budget; n++) {
        size_t bi = r->sweep_bucket++ & (r->nbuckets - 1);
        for (fo_topic_t **pp = &r->buckets[bi]; *pp;) {
            fo_topic_t *t = *pp;
            seen++;
            pthread_mutex_lock(&t->lock);
            expire(t, now_ns, max_age_ns);
            if (trim && t->ring.count)
                trimmed += fo_ring_evict(&t->ring, (t->ring.count + 1) / 2);
            int gone = idle(t, r->nworkers, now_ns, linger_ns);
            uint64_t seq = t->seq;
            if (gone) {
                /* dead under the lock: a publisher holding t sees it there
                 * and looks the name up again (route.c) */
                atomic_store_explicit(&t->dead, 1, memory_order_release);
                *pp = t->hnext;                 /* out of the registry */
            } else {
                pp = &t->hnext;
            }
            pthread_mutex_unlock(&t->lock);
            if (gone) {
                bury(r, t, seq, epoch);
                unlinked++;
            }
        }
    }
    if (unlinked)
        atomic_fetch_add_explicit(&r->deaths, 1, memory_order_release);
    pthread_rwlock_unlock(&r->lock);
    atomic_fetch_add_explicit(&r->trimmed, trimmed, memory_order_relaxed);
    return unlinked;
}

size_t fo_registry_reclaim(fo_registry_t *r, uint64_t safe_epoch)
{
    size_t freed = 0;
    for (fo_topic_t **pp = &r->limbo; *pp;) {
        fo_topic_t *t = *pp;
        if (t->limbo_epoch >= safe_epoch) {
            pp = &t->hnext;
            continue;
        }
        *pp = t->hnext;
        topic_free(t);
        freed++;
    }
    atomic_fetch_add_explicit(&r->freed, freed, memory_order_relaxed);
    return freed;
}

fo_binding_t *fo_qgroup_pick(fo_qgroup_t *g, uint64_t seq)
{
    return fo_qgroup_pick_local(g, seq, -1);      /* no worker is -1 */
}

fo_binding_t *fo_qgroup_pick_local(fo_qgroup_t *g, uint64_t seq, int skip_worker)
{
    fo_binding_t *start = g->cursor;
    if (!start)
        return NULL;
    fo_binding_t *b = start;
    do {
        fo_binding_t *next = b->tnext;
        if (b->from_seq <= seq && b->sub->worker != skip_worker) {
            g->cursor = next;
            return b;
        }
        b = next;
    } while (b != start);
    return NULL;
}

fo_qgroup_t *fo_topic_group(fo_topic_t *t, const char *queue, const char *filter)
{
    size_t nl = strlen(queue);
    for (fo_qgroup_t *g = t->groups; g; g = g->next)
        if (!strcmp(g->name, queue) && !strcmp(g->name + nl + 1, filter))
            return g;
    return NULL;
}

void fo_registry_each(fo_registry_t *r, fo_topic_fn fn, void *ud)
{
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->nbuckets; i++)
        for (fo_topic_t *t = r->buckets[i]; t; t = t->hnext)
            fn(ud, t);
    pthread_rwlock_unlock(&r->lock);
}

fo_err_t fo_registry_set_from(fo_registry_t *r, fo_sub_t *sub, const char *name, size_t len, uint64_t from)
{
    fo_err_t e = FO_ERR_NOT_FOUND;
    pthread_rwlock_rdlock(&r->lock);
    for (fo_binding_t *b = sub->bindings; b; b = b->snext)
        if (b->topic->len == len && !memcmp(b->topic->name, name, len)) {
            pthread_mutex_lock(&b->topic->lock);
            b->from_seq = from;
            pthread_mutex_unlock(&b->topic->lock);
            e = FO_OK;
            break;
        }
    pthread_rwlock_unlock(&r->lock);
    return e;
}

void fo_registry_set_congested(fo_registry_t *r, fo_sub_t *sub, int on)
{
    /* the read lock keeps bindings from coming or going meanwhile; a topic
     * created later starts uncounted (its publishers are not paused for a
     * subscriber that was already congested: bounded by the hard limit) */
    pthread_rwlock_rdlock(&r->lock);
    for (fo_binding_t *b = sub->bindings; b; b = b->snext) {
        if (on && !b->counted) {
            b->counted = 1;
            atomic_fetch_add(&b->topic->blocked, 1);
        } else if (!on && b->counted) {
            b->counted = 0;
            atomic_fetch_sub(&b->topic->blocked, 1);
        }
    }
    pthread_rwlock_unlock(&r->lock);
}
