/* ring.h -- a topic's bounded retention: the last messages, by reference.
 *
 * Every message of a topic enters its ring in sequence order, so slot
 * positions follow from sequence numbers: seq s lives at
 * (head + s - first_seq) % cap. Bounded both by count and by bytes; the
 * oldest messages are evicted (unreferenced) first. The slot array grows
 * on demand, so a topic that keeps one message costs one slot, not
 * max_msgs.
 *
 * Used for replay (SUBSCRIBE with a start position), multicast repair
 * (REPAIR) and knowing what was evicted (GAP reason EVICTED).
 *
 * Not thread-safe: guarded by its topic's lock.
 */
#ifndef FO_RING_H
#define FO_RING_H

#include <stdint.h>
#include "fo_err.h"
#include "msg.h"

typedef struct fo_ring {
    fo_msg_t **slots;     /* owned array; each slot holds one reference */
    uint32_t cap;         /* slots allocated: a power of two            */
    uint32_t head;        /* slot of the oldest message                 */
    uint32_t count;       /* messages held                              */
    uint64_t first_seq;   /* seq of the oldest message (if count > 0)   */
    uint64_t bytes;       /* payload bytes held                         */
} fo_ring_t;

void fo_ring_init(fo_ring_t *r);
void fo_ring_destroy(fo_ring_t *r);           /* unrefs everything; NULL ok */

/* Keep m (takes a new reference) within max_msgs / max_bytes, evicting the
 * oldest. m->seq must follow the last pushed seq (no holes). With
 * max_msgs == 0 nothing is kept. FO_ERR_NOMEM when the slot array cannot
 * grow (the message is then simply not retained). */
FO_MUST_CHECK fo_err_t fo_ring_push(fo_ring_t *r, fo_msg_t *m, uint32_t max_msgs, uint64_t max_bytes);

/* Evict the n oldest messages (or all there are); returns how many. */
uint32_t fo_ring_evict(fo_ring_t *r, uint32_t n);

/* Evict every message received before cutoff_ns (CLOCK_REALTIME), oldest
 * first (--retention-age). */
void fo_ring_expire(fo_ring_t *r, uint64_t cutoff_ns);

/* The retained message with sequence seq, borrowed, or NULL. */
fo_msg_t *fo_ring_get(const fo_ring_t *r, uint64_t seq);

/* Sequence of the oldest retained message; when empty, next_seq (the
 * sequence the next message will get) so that "everything before it is
 * gone" stays true. */
uint64_t fo_ring_oldest(const fo_ring_t *r, uint64_t next_seq);

#endif
