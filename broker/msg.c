/* msg.c -- refcounted, encoded-once messages (see msg.h).
 *
 * The shared DELIVER part is written by fo_deliver_write_shared
 * (proto/frame.c) straight into the message block, payload last so its
 * offset is known: one block, one pass, no protobuf-c structs. test_ring.c
 * checks protobuf-c decodes it to the same fields:
 *
 *   0x32 LEN                      Frame.deliver (field 6, length-delimited)
 *     0x0a LEN topic              Deliver.topic   (1)
 *     0x10 VARINT seq             Deliver.seq     (2)
 *     0x20 VARINT time_ns         Deliver.time_ns (4)
 *     0x28 0x01                   Deliver.replay  (5), replays only
 *     0x32 LEN reply              Deliver.reply   (6), requests only
 *     0x3a LEN Header             Deliver.headers (7), each, when any
 *     0x1a LEN payload            Deliver.payload (3)
 */
#include <stdlib.h>
#include <string.h>
#include "msg.h"
#include "frame.h"

/* ------------------------------------------------------------ block cache */

/* Size classes: 64-byte steps up to 1 KiB (a message's footprint is what
 * the caches see: a 257-byte message in a 512-byte block was measurably
 * slower), then 2, 4 and 8 KiB; larger messages are plain malloc. */
#define NSMALL 16             /* 64 B .. 1 KiB */
#define NCLASS (NSMALL + 3)   /* .. 8 KiB */
#define FO_MSG_BIG 0xff
#define CACHE_BYTES (256u << 10)   /* kept per class per thread */

typedef struct fo_msg_cache {
    _Atomic(fo_msg_t *) returned;      /* pushed by other threads   */
    fo_msg_t *free[NCLASS];            /* owner thread only         */
    uint32_t nfree[NCLASS];
    struct fo_msg_cache *next_all;
} fo_msg_cache_t;

static _Thread_local fo_msg_cache_t *tl_cache;
static _Atomic(fo_msg_cache_t *) all_caches;

static size_t class_size(int cls)
{
    return cls < NSMALL ? (size_t)(cls + 1) * 64 : (size_t)1024 << (cls - NSMALL + 1);
}

static int class_of(size_t n)
{
    if (n <= 1024)
        return n ? (int)((n - 1) / 64) : 0;
    for (int c = NSMALL; c < NCLASS; c++)
        if (n <= class_size(c))
            return c;
    return FO_MSG_BIG;
}

static uint32_t cache_max(int cls)
{
    uint32_t n = (uint32_t)(CACHE_BYTES / class_size(cls));
    return n < 32 ? 32 : n;
}

static fo_msg_cache_t *my_cache(void)
{
    if (!tl_cache && (tl_cache = calloc(1, sizeof *tl_cache))) {
        fo_msg_cache_t *head = atomic_load(&all_caches);
        do
            tl_cache->next_all = head;
        while (!atomic_compare_exchange_weak(&all_caches, &head, tl_cache));
    }
    return tl_cache;
}

/* Put a block on its class list, or free it when the list is full. */
static void keep(fo_msg_cache_t *c, fo_msg_t *m)
{
    int cls = m->size_class;
    if (c->nfree[cls] >= cache_max(cls)) {
        free(m);
        return;
    }
    m->next_free = c->free[cls];
    c->free[cls] = m;
    c->nfree[cls]++;
}

static fo_msg_t *block_get(size_t n, uint8_t *cls_out, fo_msg_cache_t **home)
{
    int cls = class_of(n);
    fo_msg_cache_t *c = cls == FO_MSG_BIG ? NULL : my_cache();
    *home = c;
    *cls_out = (uint8_t)cls;
    if (!c)
        return malloc(n);
    if (!c->free[cls]) {
        fo_msg_t *r = atomic_exchange_explicit(&c->returned, NULL, memory_order_acquire);
        while (r) {
            fo_msg_t *next = r->next_free;
            keep(c, r);
            r = next;
        }
    }
    fo_msg_t *m = c->free[cls];
    if (m) {
        c->free[cls] = m->next_free;
        c->nfree[cls]--;
        return m;
    }
    return malloc(class_size(cls));
}

static void block_put(fo_msg_t *m)
{
    fo_msg_cache_t *home = m->home;
    if (m->size_class == FO_MSG_BIG || !home) {
        free(m);
    } else if (home == tl_cache) {
        keep(home, m);
    } else {
        fo_msg_t *head = atomic_load_explicit(&home->returned, memory_order_relaxed);
        do
            m->next_free = head;
        while (!atomic_compare_exchange_weak_explicit(&home->returned, &head, m,
                                                      memory_order_release,
                                                      memory_order_relaxed));
    }
}

void fo_msg_caches_release(void)
{
    fo_msg_cache_t *c = atomic_exchange(&all_caches, NULL);
    while (c) {
        fo_msg_cache_t *next = c->next_all;
        for (int k = 0; k < NCLASS; k++)
            while (c->free[k]) {
                fo_msg_t *m = c->free[k];
                c->free[k] = m->next_free;
                free(m);
            }
        for (fo_msg_t *r = atomic_exchange(&c->returned, NULL), *n; r; r = n) {
            n = r->next_free;
            free(r);
        }
        free(c);
        c = next;
    }
    tl_cache = NULL;   /* this thread's; other threads are gone by now */
}

/* ------------------------------------------------------------ messages */

/* A worker's credit (msg.h, fo_mem_local_begin): bytes already counted
 * in mem->used that no message of this thread holds yet. */
static __thread struct {
    fo_mem_t *mem;          /* NULL: this thread charges mem->used directly */
    uint64_t credit;
} tl_mem;

static int mem_take(fo_mem_t *mem, uint64_t n)
{
    uint64_t limit = atomic_load_explicit(&mem->limit, memory_order_relaxed);
    uint64_t used = atomic_fetch_add_explicit(&mem->used, n, memory_order_relaxed);
    if (limit && used + n > limit) {
        atomic_fetch_sub_explicit(&mem->used, n, memory_order_relaxed);
        return -1;
    }
    return 0;
}

/* How much credit a worker keeps: 64 KiB, less under a small cap, so the
 * credits of all workers stay a small part of it. */
static uint64_t mem_chunk(const fo_mem_t *mem)
{
    uint64_t limit = atomic_load_explicit(&mem->limit, memory_order_relaxed);
    uint64_t chunk = 64 * 1024;
    return limit && limit / 1024 < chunk ? limit / 1024 : chunk;
}

int fo_mem_charge(fo_mem_t *mem, uint64_t n)
{
    if (tl_mem.mem != mem)
        return mem_take(mem, n);
    if (tl_mem.credit >= n) {
        tl_mem.credit -= n;
        return 0;
    }
    /* n and a chunk more; near the cap, only what is missing */
    uint64_t need = n - tl_mem.credit, chunk = mem_chunk(mem);
    if (!mem_take(mem, need + chunk)) {
        tl_mem.credit = chunk;
        return 0;
    }
    if (!mem_take(mem, need)) {
        tl_mem.credit = 0;
        return 0;
    }
    return -1;
}

void fo_mem_release(fo_mem_t *mem, uint64_t n)
{
    if (tl_mem.mem != mem) {
        atomic_fetch_sub_explicit(&mem->used, n, memory_order_relaxed);
        return;
    }
    tl_mem.credit += n;
    uint64_t chunk = mem_chunk(mem);
    if (tl_mem.credit > 2 * chunk) {
        atomic_fetch_sub_explicit(&mem->used, tl_mem.credit - chunk, memory_order_relaxed);
        tl_mem.credit = chunk;
    }
}

void fo_mem_local_begin(fo_mem_t *mem)
{
    fo_mem_local_flush();
    tl_mem.mem = mem;
}

void fo_mem_local_flush(void)
{
    if (tl_mem.mem && tl_mem.credit)
        atomic_fetch_sub_explicit(&tl_mem.mem->used, tl_mem.credit, memory_order_relaxed);
    tl_mem.credit = 0;
}

void fo_mem_local_end(void)
{
    fo_mem_local_flush();
    tl_mem.mem = NULL;
}

/* A block for a message whose shared part is `shared` bytes, charged. */
static fo_msg_t *msg_alloc(fo_mem_t *mem, struct fo_topic *topic, size_t shared)
{
    size_t total = sizeof(fo_msg_t) + shared;
    if (shared > UINT32_MAX || fo_mem_charge(mem, total))
        return NULL;
    uint8_t cls;
    fo_msg_cache_t *home;
    fo_msg_t *m = block_get(total, &cls, &home);
    if (!m) {
        fo_mem_uncharge(mem, total);
        return NULL;
    }
    m->size_class = cls;
    m->home = home;
    atomic_init(&m->refs, 1);
    m->topic = topic;
    m->mem = mem;
    m->charged = (uint32_t)total;
    return m;
}

fo_msg_t *fo_msg_encode(fo_mem_t *mem, struct fo_topic *topic, const fo_deliver_fields_t *f)
{
    fo_msg_t *m = msg_alloc(mem, topic, fo_deliver_shared_len(f));
    if (!m)
        return NULL;
    m->seq = f->seq;
    m->time_ns = f->time_ns;
    m->replay = (uint8_t)(f->replay != 0);
    m->extras = (uint8_t)(f->reply || f->n_headers);
    m->mcast_by = 0;
    m->shared_len = (uint32_t)fo_deliver_write_shared(m->shared, f);
    m->payload_off = m->shared_len - (uint32_t)f->payload_len;   /* payload is last */
    m->payload_len = (uint32_t)f->payload_len;
    return m;
}

fo_msg_t *fo_msg_new(fo_mem_t *mem, struct fo_topic *topic, const char *name,
                     size_t name_len, uint64_t seq, uint64_t time_ns,
                     const uint8_t *payload, size_t payload_len, int replay)
{
    fo_deliver_fields_t f = { .topic = name, .topic_len = name_len, .seq = seq,
                              .time_ns = time_ns, .replay = replay, .payload = payload,
                              .payload_len = payload_len };
    return fo_msg_encode(mem, topic, &f);
}

const char *fo_msg_topic(const fo_msg_t *m, size_t *len)
{
    const uint8_t *p = m->shared + 1;
    uint64_t v;
    p += fo_varint_get(p, 10, &v);          /* inner length */
    p++;                                    /* topic key    */
    p += fo_varint_get(p, 10, &v);
    *len = (size_t)v;
    return (const char *)p;
}

/* The fields of a shared DELIVER body: 1 when it is laid out as
 * fo_deliver_write_shared (or fo_deliver_replay_encode) does: topic
 * first, payload last. */
typedef struct body_view {
    const char *topic;
    size_t topic_len;
    uint64_t seq, time_ns;
    size_t payload_off, payload_len;
    int replay, extras;
} body_view_t;

static int body_parse(const uint8_t *b, size_t len, body_view_t *v)
{
    uint64_t inner;
    size_t k;
    memset(v, 0, sizeof *v);
    if (len < 2 || b[0] != 0x32 || !(k = fo_varint_get(b + 1, len - 1, &inner)) || inner != len - 1 - k)
        return 0;
    size_t i = 1 + k;
    int first = 1;
    while (i < len) {
        uint64_t key, val;
        size_t n = fo_varint_get(b + i, len - i, &key);
        if (!n)
            return 0;
        i += n;
        uint32_t field = (uint32_t)(key >> 3), wt = (uint32_t)(key & 7);
        if ((first && field != 1) || !(n = fo_varint_get(b + i, len - i, &val)))
            return 0;
        i += n;
        first = 0;
        if (wt == 0) {
            if (field == 2)
                v->seq = val;
            else if (field == 4)
                v->time_ns = val;
            else if (field == 5 && val == 1)
                v->replay = 1;
            else
                return 0;               /* unknown */
            continue;
        }
        if (wt != 2 || val > len - i)
            return 0;
        if (field == 1) {
            v->topic = (const char *)b + i;
            v->topic_len = (size_t)val;
        } else if (field == 3) {
            if (i + val != len)
                return 0;               /* the payload is last */
            v->payload_off = i;
            v->payload_len = (size_t)val;
        } else if (field == 6 || field == 7) {
            v->extras = 1;                  /* a reply address, a header */
        } else {
            return 0;
        }
        i += (size_t)val;
    }
    return v->topic && v->topic_len && v->seq && v->payload_off;
}

int fo_msg_body_check(const uint8_t *body, size_t len, const char **topic, size_t *topic_len,
                      uint64_t *seq)
{
    body_view_t v;
    if (!body_parse(body, len, &v))
        return 0;
    *topic = v.topic;
    *topic_len = v.topic_len;
    *seq = v.seq;
    return 1;
}

fo_msg_t *fo_msg_adopt(fo_mem_t *mem, struct fo_topic *topic, const uint8_t *body, size_t len,
                       fo_err_t *why)
{
    body_view_t v;
    if (!body_parse(body, len, &v)) {
        *why = FO_ERR_BAD_FRAME;
        return NULL;
    }
    fo_msg_t *m = msg_alloc(mem, topic, len);
    if (!m) {
        *why = FO_ERR_NOMEM;
        return NULL;
    }
    memcpy(m->shared, body, len);
    m->shared_len = (uint32_t)len;
    m->seq = v.seq;
    m->time_ns = v.time_ns;
    m->replay = (uint8_t)v.replay;
    m->extras = (uint8_t)v.extras;
    m->mcast_by = 0;
    m->payload_off = (uint32_t)v.payload_off;
    m->payload_len = (uint32_t)v.payload_len;
    return m;
}

fo_msg_t *fo_msg_replay_copy(const fo_msg_t *m)
{
    if (m->replay)
        return fo_msg_ref((fo_msg_t *)m);     /* already a replay encoding */
    fo_msg_t *c = msg_alloc(m->mem, m->topic, m->shared_len + 3);
    if (!c)
        return NULL;
    c->seq = m->seq;
    c->time_ns = m->time_ns;
    c->replay = 1;
    c->extras = m->extras;
    c->mcast_by = 0;
    c->shared_len = (uint32_t)fo_deliver_replay_encode(c->shared, m->shared, m->shared_len);
    c->payload_len = m->payload_len;
    c->payload_off = c->shared_len - c->payload_len;
    return c;
}

void fo_msg_free(fo_msg_t *m)
{
    fo_mem_release(m->mem, m->charged);
    block_put(m);
}

/* ------------------------------------------------------------ unref batches */

static uint32_t batch_slot(const fo_msg_t *m)
{
    return (uint32_t)(((uintptr_t)m >> 6) * 0x9E3779B1u) & (FO_UNREF_BATCH - 1);
}

void fo_msg_unref_flush(fo_unref_batch_t *b)
{
    if (!b->used)
        return;
    for (uint32_t i = 0; i < FO_UNREF_BATCH; i++) {
        fo_msg_t *m = b->m[i];
        if (!m)
            continue;
        uint32_t n = b->n[i];
        b->m[i] = NULL;
        if (atomic_fetch_sub_explicit(&m->refs, n, memory_order_acq_rel) == n)
            fo_msg_free(m);
    }
    b->used = 0;
}

void fo_msg_unref_later(fo_unref_batch_t *b, fo_msg_t *m)
{
    if (b->used >= FO_UNREF_BATCH / 2)
        fo_msg_unref_flush(b);
    for (uint32_t i = batch_slot(m);; i = (i + 1) & (FO_UNREF_BATCH - 1)) {
        if (b->m[i] == m) {
            b->n[i]++;
            return;
        }
        if (!b->m[i]) {
            b->m[i] = m;
            b->n[i] = 1;
            b->used++;
            return;
        }
    }
}
