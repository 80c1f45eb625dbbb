/* gaps.h -- per-topic sequence tracker for multicast receivers.
 *
 * Multicast is best effort: datagrams get lost, duplicated and (with one
 * sender per broker worker) reordered. The tracker turns the raw stream of
 * (topic, seq) into what the application wants: every message once, in
 * sequence order per topic, and an exact account of what is missing.
 *
 * Per topic it keeps `next`, the first sequence not yet settled (delivered
 * or given up). A message at `next` is delivered at once (no copy) and any
 * buffered successors follow; one ahead of `next` (within `window`) is
 * copied and held, and the holes before it become gaps; one below `next`
 * is a duplicate. fo__gaps_poll() asks for repair of holes older than
 * `reorder_ms` (a late datagram usually fills them first) or more than
 * `reorder_seqs` behind the newest sequence, and gives up on
 * holes whose repair has not come within `repair_ms`. A repaired message
 * (fo__gaps_offer with FO__GAPS_REPAIRED) fills its hole; fo__gaps_lost()
 * (the broker answered GAP) gives the range up. Given-up ranges reach the
 * application through on_lost, in order with the messages.
 *
 * An oversize marker (the message did not fit a datagram) is a hole that
 * needs repair but is not counted as a gap.
 *
 * Loss of a topic's last datagrams shows in no later sequence number, so
 * a topic that has been quiet for `probe_ms` after multicast traffic gets
 * one tail probe: on_repair(topic, hi, hi + window - 1), where hi is one
 * past the highest sequence known. The broker resends what exists there
 * (counted as gaps and repaired) and ignores sequences not yet given.
 *
 * Bounded memory: at most `max_topics` topics (messages on more topics are
 * delivered untracked and counted), a window of `window` sequences per
 * topic, and at most `max_bytes` of held payload in all; a message that
 * would pass a bound forces the oldest holes of its topic to be given up.
 * The first message seen on a topic starts its tracking (no history).
 *
 * Not thread-safe: one tracker belongs to one receiver thread.
 */
#ifndef FO_GAPS_H
#define FO_GAPS_H

#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"

typedef struct fo__gaps fo__gaps_t;

typedef struct fo__gaps_stats {
    uint64_t received;    /* messages handed to on_deliver               */
    uint64_t duplicates;  /* already settled or already held: dropped     */
    uint64_t gaps;        /* messages found missing (a later one arrived) */
    uint64_t late;        /* ... then filled by a late datagram           */
    uint64_t repaired;    /* ... or by repair                             */
    uint64_t lost;        /* ... or given up (broker GAP, timeout, bound) */
    uint64_t oversize;    /* oversize markers seen                        */
    uint64_t untracked;   /* messages past max_topics, delivered as is    */
    uint64_t repair_requests; /* ranges handed to on_repair              */
    uint64_t probes;      /* tail probes handed to on_repair              */
} fo__gaps_stats_t;

typedef struct fo__gaps_cb {
    /* A message, in order per topic. payload is borrowed for the call. */
    void (*on_deliver)(void *ud, const char *topic, uint64_t seq,
                       const uint8_t *payload, size_t len, int repaired);
    /* first..last (inclusive) of topic will never come. */
    void (*on_lost)(void *ud, const char *topic, uint64_t first, uint64_t last);
    /* Please fetch first..last of topic (fo__gaps_poll). */
    void (*on_repair)(void *ud, const char *topic, uint64_t first, uint64_t last);
    void *ud;
} fo__gaps_cb_t;

typedef struct fo__gaps_opts {
    uint32_t window;      /* sequences held per topic (default 4096)     */
    uint32_t max_topics;  /* topics tracked (default 65536)              */
    uint64_t max_bytes;   /* held payload bytes in all (default 64 MiB)  */
    uint32_t reorder_ms;  /* hole age before repair is asked (default 5) */
    uint32_t reorder_seqs;/* ... or sequences received past it (default
                             window / 4): at high rates a hole is plain
                             loss long before reorder_ms passes          */
    uint32_t repair_ms;   /* wait for repair before giving up (default 2000) */
    uint32_t probe_ms;    /* tail probe after this much quiet on a topic
                             (default 250; UINT32_MAX = never)           */
} fo__gaps_opts_t;

/* offer() flags */
#define FO__GAPS_REPAIRED 1u  /* came from repair (TCP), not multicast     */
#define FO__GAPS_OVERSIZE 2u  /* a marker: the message exists, no payload  */

/* opts may be NULL (defaults); zero fields take defaults. cb is copied. */
FO_MUST_CHECK
fo_err_t fo__gaps_create(const fo__gaps_opts_t *opts, const fo__gaps_cb_t *cb,
                         fo__gaps_t **out);
void fo__gaps_destroy(fo__gaps_t *g);                       /* NULL is fine */

/* One message. Calls on_deliver / on_lost as sequences settle (the
 * callbacks must not call back into the tracker). FO_ERR_NOMEM when the
 * topic or a held copy could not be allocated (the message then counts as
 * missing). */
FO_MUST_CHECK
fo_err_t fo__gaps_offer(fo__gaps_t *g, const char *topic, uint64_t seq, const uint8_t *payload,
                        size_t len, unsigned flags, uint64_t now_ms);

/* The broker says first..last of topic are gone: settle them as lost. */
void fo__gaps_lost(fo__gaps_t *g, const char *topic, uint64_t first, uint64_t last);

/* Ask for repair of holes older than reorder_ms (on_repair, each hole
 * once) and give up on holes not repaired within repair_ms. Returns the ms
 * until the next call is useful (UINT32_MAX: nothing pending). */
uint32_t fo__gaps_poll(fo__gaps_t *g, uint64_t now_ms);

/* Give up every hole now (shutdown, lost TCP connection). */
void fo__gaps_flush(fo__gaps_t *g);

/* Forget every topic (the broker restarted: sequences start again).
 * Held messages are dropped without being counted. */
void fo__gaps_reset(fo__gaps_t *g);

void fo__gaps_stats(const fo__gaps_t *g, fo__gaps_stats_t *out);

#endif
