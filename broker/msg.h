/* msg.h -- a published message: encoded once, shared by refcount.
 *
 * When a PUBLISH is accepted the broker builds one fo_msg_t holding the
 * shared part of the DELIVER frame (see proto/frame.h): the `deliver` field
 * of Frame with topic, seq, time and payload. Every subscriber's output
 * queue, the topic's retention ring and each worker that fans it out hold
 * a reference; nobody copies or re-encodes it. The payload lies at the end
 * of the encoding (payload_off) so multicast and repair can reuse it.
 *
 * Memory: every message is charged to a fo_mem_t (the broker-wide
 * --max-memory cap). fo_msg_new refuses (NULL) instead of going over.
 *
 * Threading: immutable after fo_msg_new; refs is atomic, so any thread may
 * ref/unref. The last unref frees and uncharges.
 *
 * Allocation: blocks come in size classes from a per-thread cache. A block
 * freed by its own thread goes back on its list; one freed elsewhere (a
 * subscriber's worker wrote it last) is pushed onto its home cache's
 * lock-free return stack, which the home thread takes whole when its list
 * runs dry. So steady publishing does no malloc and takes no lock.
 */
#ifndef FO_MSG_H
#define FO_MSG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"

struct fo_topic;

typedef struct fo_mem {
    _Atomic uint64_t used;    /* bytes of live messages            */
    _Atomic uint64_t limit;   /* cap; SIGHUP may change it          */
} fo_mem_t;

typedef struct fo_msg {
    _Atomic uint32_t refs;
    uint32_t shared_len;      /* bytes in shared[]                  */
    uint32_t payload_off;     /* payload position in shared[]       */
    uint32_t payload_len;
    struct fo_topic *topic;   /* borrowed: topics outlive messages  */
    fo_mem_t *mem;            /* borrowed: where it is charged      */
    uint64_t seq;
    uint64_t time_ns;
    uint32_t charged;         /* bytes charged to mem               */
    uint8_t replay;           /* encoded with Deliver.replay = true */
    uint8_t extras;           /* carries a reply address or headers */
    uint8_t mcast_by;         /* a cluster: a message from its home that
                               * worker mcast_by - 1 sends to the topic's
                               * multicast group (0: none); set by its
                               * creator (cluster.c) before it is shared */
    uint8_t size_class;       /* msgcache block class, or FO_MSG_BIG */
    struct fo_msg_cache *home;/* the cache it came from (msg.c)     */
    struct fo_msg *next_free; /* while cached                       */
    _Alignas(8) uint8_t shared[];
} fo_msg_t;

/* Charge n bytes that are not a message (large input buffers) against
 * the same cap: -1 (nothing charged) when it would go over. */
__attribute__((warn_unused_result)) int fo_mem_charge(fo_mem_t *mem, uint64_t n);
static inline void fo_mem_uncharge(fo_mem_t *mem, uint64_t n)
{
    atomic_fetch_sub_explicit(&mem->used, n, memory_order_relaxed);
}
/* Give back n bytes charged with fo_mem_charge (a message's, when it is
 * freed): to this thread's credit when it keeps one for mem. */
void fo_mem_release(fo_mem_t *mem, uint64_t n);

/* Per-worker credit. Two atomic operations per message on one counter
 * that every worker writes cost 15 % of a worker's time with two busy
 * workers (4 publishers -> 4 subscribers, cpu-clock profile). A thread
 * that calls fo_mem_local_begin(mem) takes mem's bytes in chunks (64 KiB,
 * or a 1024th of a smaller cap) and keeps up to two chunks of what its
 * frees give back; fo_mem_local_flush returns the rest (a worker does at
 * the end of every loop pass, so an idle broker's mem->used is exact).
 * mem->used counts the credits as used: a publish may be refused up to
 * two chunks per worker early (what the others keep), never late.
 * fo_mem_local_end flushes and stops (the thread exits). Each is about
 * the calling thread only. */
void fo_mem_local_begin(fo_mem_t *mem);
void fo_mem_local_flush(void);
void fo_mem_local_end(void);

struct fo_deliver_fields;

/* A message with one reference (the caller's), encoded from f (copied:
 * nothing in f is kept); NULL when the cap would be exceeded or malloc
 * fails. topic (may be NULL: a reply) is borrowed for the message's life. */
fo_msg_t *fo_msg_encode(fo_mem_t *mem, struct fo_topic *topic, const struct fo_deliver_fields *f);

/* The same for the plain case: topic name, seq, time, payload. */
fo_msg_t *fo_msg_new(fo_mem_t *mem, struct fo_topic *topic, const char *name,
                     size_t name_len, uint64_t seq, uint64_t time_ns,
                     const uint8_t *payload, size_t payload_len, int replay);

/* A message from a DELIVER body another broker encoded (docs/CLUSTER.md:
 * the home's fo_msg_t shared bytes, received over a peer link), copied
 * once and charged like a new message; seq, time and the payload's place
 * are read from it. The body must be laid out as fo_deliver_write_shared
 * writes it (Frame.deliver around Deliver with the topic first and the
 * payload last; a replay's flag is kept), which is what fo_msg_topic and
 * replay copies rely on. NULL with *why = FO_ERR_BAD_FRAME (not such a body) or
 * FO_ERR_NOMEM (the cap, or malloc). */
fo_msg_t *fo_msg_adopt(fo_mem_t *mem, struct fo_topic *topic, const uint8_t *body, size_t len,
                       fo_err_t *why);

/* Check a body for fo_msg_adopt without copying: 1 when it is one, with
 * the topic name (inside body) and seq. */
int fo_msg_body_check(const uint8_t *body, size_t len, const char **topic, size_t *topic_len,
                      uint64_t *seq);

/* A replay copy of m (Deliver.replay = true), charged like a new message. */
fo_msg_t *fo_msg_replay_copy(const fo_msg_t *m);

static inline fo_msg_t *fo_msg_ref(fo_msg_t *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

/* Add n references at once (fan-out to n subscribers). */
static inline void fo_msg_ref_n(fo_msg_t *m, uint32_t n)
{
    atomic_fetch_add_explicit(&m->refs, n, memory_order_relaxed);
}

void fo_msg_free(fo_msg_t *m);

static inline void fo_msg_unref(fo_msg_t *m)
{
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        fo_msg_free(m);
}

/* Unreferences put off to the end of a loop pass: a worker writing one
 * message to k of its subscribers drops k references to the same cache
 * line, which the publishing worker's core also writes; collected here,
 * they become one atomic subtraction per message. Owned by one thread;
 * bounded (a full batch is flushed on the spot). */
#define FO_UNREF_BATCH 256            /* slots; flushed at half full */
typedef struct fo_unref_batch {
    fo_msg_t *m[FO_UNREF_BATCH];
    uint32_t n[FO_UNREF_BATCH];
    uint32_t used;
} fo_unref_batch_t;
void fo_msg_unref_later(fo_unref_batch_t *b, fo_msg_t *m);
void fo_msg_unref_flush(fo_unref_batch_t *b);

static inline const uint8_t *fo_msg_payload(const fo_msg_t *m)
{
    return m->shared + m->payload_off;
}

/* Free every cached block of every thread (at exit, after the last
 * message is gone; for leak checkers). */
void fo_msg_caches_release(void);

/* The topic name inside the encoding (not NUL-terminated). */
const char *fo_msg_topic(const fo_msg_t *m, size_t *len);

#endif
