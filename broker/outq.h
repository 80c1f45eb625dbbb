/* outq.h -- a connection's output queue.
 *
 * Entries are either a shared message (a reference to an fo_msg_t plus the
 * subscription id: on the wire a small per-subscriber prefix followed by
 * the shared DELIVER body) or an owned frame (WELCOME, ACK, ERROR, GAP,
 * PONG...). fo_outq_iov() lays the head of the queue out as iovecs for one
 * writev -- prefixes are built into a caller's scratch space, bodies are
 * never copied -- and fo_outq_advance() pops what the kernel took,
 * remembering how far into a partly written entry it got.
 *
 * `bytes` is what the queue would put on the wire; the connection compares
 * it with --max-output. fo_outq_drop_oldest() frees space by dropping the
 * oldest shared messages of drop-policy subscriptions (never the entry
 * being written) and puts a GAP notice naming exactly the sequences lost
 * where they were. GAP notices are merged: a GAP that continues the last
 * queued notice of the same subscription and topic (first = its last + 1)
 * extends it instead of adding a frame, so a subscriber that reads
 * nothing costs one notice per run of losses, not one per message (the
 * queue stays bounded however long it is stuck).
 *
 * Not thread-safe: a queue belongs to its connection's worker.
 */
#ifndef FO_OUTQ_H
#define FO_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "fo_err.h"
#include "msg.h"
#include "frame.h"

typedef struct fo_out {
    fo_msg_t *msg;        /* shared message (one reference), or NULL    */
    uint8_t *frame;       /* owned frame bytes when msg == NULL         */
    uint32_t len;         /* bytes on the wire (prefix + body, or frame) */
    uint32_t sid;         /* subscription (shared messages, GAPs)       */
    uint8_t droppable;    /* subscription policy is drop                */
    uint8_t gap;          /* frame is a GAP notice (outq.c's own)       */
} fo_out_t;

typedef struct fo_outq {
    fo_out_t *ring;       /* owned; NULL while empty and trimmed        */
    uint32_t cap, head, count;   /* cap: 0 or a power of two */
    uint32_t head_off;    /* bytes of the head entry already written    */
    uint64_t bytes;       /* wire bytes queued (minus head_off)         */
} fo_outq_t;


void fo_outq_init(fo_outq_t *q);
/* Unref/free every entry and the ring. */
void fo_outq_clear(fo_outq_t *q);
/* The same for at most n entries from the head (a closed connection's
 * queue freed a slice per loop pass, worker.c): the entries left; at 0
 * the ring is freed too. The byte count is not kept (the queue is dead). */
uint32_t fo_outq_clear_some(fo_outq_t *q, uint32_t n);

/* Queue a shared message for subscription sid; takes over one reference
 * the caller already holds. */
FO_MUST_CHECK fo_err_t fo_outq_push_msg(fo_outq_t *q, fo_msg_t *m, uint32_t sid, int droppable);
/* Queue an encoded frame (copied). */
FO_MUST_CHECK fo_err_t fo_outq_push_frame(fo_outq_t *q, const Fanout__Frame *f);
/* Queue frame bytes, taking ownership (freed on failure too). */
FO_MUST_CHECK fo_err_t fo_outq_push_bytes(fo_outq_t *q, uint8_t *frame, uint32_t len);
/* Queue GAP {name, first, last, reason} for subscription sid, or extend
 * the last notice of (sid, topic) when this one continues it. topic only
 * identifies the topic (never dereferenced); name is copied. *merged (may
 * be NULL) says which happened. FO_ERR_NOMEM: nothing queued. */
FO_MUST_CHECK fo_err_t fo_outq_push_gap(fo_outq_t *q, uint32_t sid, const struct fo_topic *topic,
                                        const char *name, size_t name_len, uint64_t first,
                                        uint64_t last, int reason, int *merged);

/* Fill up to max iovecs (2 per shared message) from the head; prefix
 * scratch must hold max/2 * FO_DELIVER_PREFIX_MAX bytes. Returns the iovec
 * count. */
int fo_outq_iov(const fo_outq_t *q, struct iovec *iov, int max, uint8_t *scratch);
/* The same, but entries of at most FO_OUTQ_PACK_MAX wire bytes are
 * copied (prefix and body) into pack (packcap bytes), consecutive ones
 * into one iovec: for small messages one contiguous copy is cheaper for
 * the kernel than two segments per message (the body is still encoded
 * once; this is a memcpy). Bigger entries stay by reference, 2 iovecs
 * each. Stops when iovecs or pack run out; returns the iovec count.
 * packcap 0: nothing is copied (fo_outq_iov). */
#define FO_OUTQ_PACK_MAX 1024
int fo_outq_iov_packed(const fo_outq_t *q, struct iovec *iov, int max, uint8_t *scratch,
                       uint8_t *pack, size_t packcap);
/* Pop n written bytes. */
void fo_outq_advance(fo_outq_t *q, size_t n);
/* The same, observing into h (single writer: the queue's worker) the
 * delay now_ns - time_ns of every message written out completely (not
 * replays). now_ns is CLOCK_REALTIME, as messages are stamped. */
struct fo_delay_hist;
void fo_outq_advance_timed(fo_outq_t *q, size_t n, uint64_t now_ns, struct fo_delay_hist *h);
/* The same, the written messages' references put off into batch (msg.h:
 * flushed by the caller at the end of its pass). batch may be NULL. */
void fo_outq_advance_batched(fo_outq_t *q, size_t n, uint64_t now_ns, struct fo_delay_hist *h,
                             fo_unref_batch_t *batch);

/* Copy up to max wire bytes from the head (prefixes built on the way,
 * bodies copied) into dst, without popping them; returns the count. For
 * TLS, which packs many messages into one record (tls.c); plain sockets
 * use fo_outq_iov. */
size_t fo_outq_copy(const fo_outq_t *q, uint8_t *dst, size_t max);

/* Drop the oldest droppable shared messages until bytes <= target. Each
 * contiguous (sid, topic) run dropped is replaced, in place, by a GAP
 * {reason GAP_SLOW_CONSUMER} (merged as above), so the subscriber reads
 * the notice where the messages would have been. cb (may be NULL) hears
 * of each run: new = 1 when it made a notice, 0 when it extended one.
 * Returns the number of messages dropped. */
typedef void (*fo_dropped_fn)(void *ud, uint32_t sid, uint64_t first, uint64_t last, int new_notice);
size_t fo_outq_drop_oldest(fo_outq_t *q, uint64_t target, fo_dropped_fn cb, void *ud);

/* Drop every entry except a partly written head (so the stream stays
 * whole), e.g. before a final ERROR. */
void fo_outq_drop_unsent(fo_outq_t *q);

/* Free the ring array when the queue is empty (idle connections). */
void fo_outq_trim(fo_outq_t *q);

#endif
