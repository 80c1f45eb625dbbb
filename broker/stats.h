/* stats.h -- per-worker counters, rendered by metrics.c.
 *
 * Each worker owns one fo_stats_t and is its only writer; the HTTP thread
 * only reads. Fields are _Atomic with relaxed order: on x86 a relaxed
 * load/store is a plain mov, and ThreadSanitizer stays quiet.
 *
 * The list is an X-macro so the struct, the Prometheus names and the help
 * texts come from one place:  X(field, kind, help)  kind = counter|gauge.
 * Metric name = "fanout_" field (counters get "_total"); kind "internal"
 * is kept but not rendered as its own family (metrics.c shows it another
 * way, e.g. busy_ns as fanout_worker_busy_seconds_total).
 */
#ifndef FO_STATS_H
#define FO_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define FO_STATS(X)                                                              \
    X(connections_accepted, counter, "Client connections accepted")              \
    X(connections_closed,   counter, "Client connections closed")                \
    X(connections,          gauge,   "Client connections open")                  \
    X(connections_moved,    counter, "Publishers moved to the worker of their topics' subscribers") \
    X(subscriptions,        gauge,   "Subscriptions open")                       \
    X(input_buffer_bytes,   gauge,   "Bytes of read buffers held by connections") \
    X(messages_in,          counter, "Messages published")                       \
    X(bytes_in,             counter, "Payload bytes published")                 \
    X(messages_out,         counter, "Messages delivered to subscribers (TCP)")  \
    X(bytes_out,            counter, "Bytes written to client sockets")          \
    X(frames_in,            counter, "Frames received")                          \
    X(drops_slow_consumer,  counter, "Messages dropped from slow consumers' queues") \
    X(drops_no_route,       counter, "Messages published to a topic with no subscriber") \
    X(no_responders,        counter, "Requests refused with ERR_NO_RESPONDERS (nobody subscribed)") \
    X(replies,              counter, "Replies routed to a requester's inbox")   \
    X(drops_gone,           counter, "Deliveries dropped because the subscriber left") \
    X(slow_consumer_disconnects, counter, "Connections closed by the disconnect slow-consumer policy") \
    X(congestions,          counter, "Times a block-policy subscriber's queue went over max-output") \
    X(publishers_paused,    counter, "Times a publisher was paused for a congested block-policy subscriber") \
    X(block_timeouts,       counter, "Block-policy subscribers cut for keeping publishers paused past --block-timeout") \
    X(publish_refused_memory, counter, "Publishes refused by the memory cap")    \
    X(protocol_errors,      counter, "Connections closed for bad input")         \
    X(idle_timeouts,        counter, "Connections closed for silence")           \
    X(gaps_sent,            counter, "GAP frames sent")                          \
    X(replayed,             counter, "Messages replayed from retention")         \
    X(retention_failures,   counter, "Messages not retained: the ring could not grow (out of memory)") \
    X(inbox_batches,        counter, "Batches received from other workers")      \
    X(loop_iterations,      counter, "Event loop iterations")                    \
    X(busy_ns,              internal, "Nanoseconds spent handling events")       \
    X(mcast_messages,       counter, "Messages sent by multicast")               \
    X(mcast_datagrams,      counter, "Multicast datagrams sent")                 \
    X(mcast_oversize,       counter, "Messages too large for a datagram (announced, not carried)") \
    X(mcast_send_errors,    counter, "Multicast datagrams the kernel refused")   \
    X(repairs_served,       counter, "Messages resent for multicast repair")     \
    X(repairs_missed,       counter, "Repair requests answered with GAP")       \
    X(tls_handshakes,       counter, "TLS handshakes completed")                 \
    X(tls_handshake_failures, counter, "TLS handshakes that failed or timed out (the connection was closed)") \
    X(tls_connections,      gauge,   "TLS connections open (handshake done)")    \
    X(tls_ktls_connections, gauge,   "TLS connections whose records the kernel encrypts (kTLS)") \
    X(logins,               counter, "Logins accepted (a user of the users table)")   \
    X(logins_cached,        counter, "Logins accepted from the cache of recent successes") \
    X(logins_verified,      counter, "Logins accepted after a verification on an auth thread") \
    X(logins_failed,        counter, "Logins refused with ERR_AUTH for their credentials") \
    X(logins_busy,          counter, "Logins refused because the auth threads were full") \
    X(logins_refused,       counter, "Logins refused for other reasons (a user's connection limit, too many from one address)") \
    X(logins_revoked,       counter, "Connections closed because a users reload removed their user or secret") \
    X(subscriptions_revoked, counter, "Subscriptions ended because a users reload took their permission away") \
    X(permission_denied,    counter, "Publishes, subscriptions and repairs refused with ERR_PERMISSION")

/* Error codes (fanout.ErrorCode) counted separately: errors_sent{code=...}. */
#define FO_STATS_ERR_CODES 32

/* The delivery delay: from the read that brought a PUBLISH in to the
 * write that put its DELIVER on a subscriber's socket, per delivered
 * message (replays excluded: they are old on purpose). Buckets are
 * Prometheus's `le` bounds, in ns; the last bucket is +Inf. */
#define FO_DELAY_BUCKETS 17
static const uint64_t fo_delay_bounds_ns[FO_DELAY_BUCKETS - 1] = {
    10000, 25000, 50000, 100000, 250000, 500000,                /* 10 µs .. 500 µs */
    1000000, 2500000, 5000000, 10000000, 25000000, 50000000,    /* 1 ms .. 50 ms   */
    100000000, 250000000, 1000000000, 10000000000u,             /* 100 ms .. 10 s  */
};

typedef struct fo_delay_hist {
    _Atomic uint64_t count[FO_DELAY_BUCKETS];   /* not cumulative */
    _Atomic uint64_t sum_ns;
} fo_delay_hist_t;

typedef struct fo_stats {
#define FO_STATS_FIELD_(name, kind, help) _Atomic uint64_t name;
    FO_STATS(FO_STATS_FIELD_)
#undef FO_STATS_FIELD_
    _Atomic uint64_t errors_sent[FO_STATS_ERR_CODES];
    fo_delay_hist_t delay;
} fo_stats_t;

/* Single-writer increment: cheaper than atomic_fetch_add, still race-free
 * for readers. Only the owning worker may call these on its stats. */
#define FO_STAT_ADD(s, field, n) atomic_store_explicit(&(s)->field,             \
        atomic_load_explicit(&(s)->field, memory_order_relaxed) + (n),          \
        memory_order_relaxed)
#define FO_STAT_INC(s, field) FO_STAT_ADD(s, field, 1)
#define FO_STAT_SUB(s, field, n) FO_STAT_ADD(s, field, (uint64_t)0 - (uint64_t)(n))
#define FO_STAT_GET(s, field) atomic_load_explicit(&(s)->field, memory_order_relaxed)

/* One delivery delay, by the histogram's single writer. */
static inline void fo_delay_observe(fo_delay_hist_t *h, uint64_t ns)
{
    int b = 0;
    while (b < FO_DELAY_BUCKETS - 1 && ns > fo_delay_bounds_ns[b])
        b++;
    FO_STAT_INC(h, count[b]);
    FO_STAT_ADD(h, sum_ns, ns);
}

#endif
