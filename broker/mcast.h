/* mcast.h -- best-effort UDP multicast fan-out (broker side).
 *
 * The config maps topic filters to groups (fo_config_t.mcast). A topic is
 * matched against the map once, when the registry creates it, and keeps
 * the group index (or -1). After a publish has its sequence number, the
 * publishing worker hands the message to its own fo_mcast_tx_t, which packs
 * messages into fanout.Datagram payloads (several per datagram, up to
 * max_datagram bytes) and sends them with sendmmsg once per loop iteration
 * (fo_mcast_tx_flush) or when a batch fills.
 *
 * A message whose McastMsg would not fit a datagram is sent as an
 * `oversize` marker (topic, seq, size, no payload) and counted: receivers
 * fetch it over TCP with REPAIR. Never dropped silently.
 *
 * Threading: fo_mcast_t is immutable after create and shared by all
 * workers; each worker owns one fo_mcast_tx_t (own socket, own buffers).
 * Datagrams of one topic sent by two workers may arrive reordered; the
 * receiver's gap tracker tolerates that.
 */
#ifndef FO_MCAST_H
#define FO_MCAST_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "stats.h"
#include "fanout.pb-c.h"

typedef struct fo_mcast fo_mcast_t;
typedef struct fo_mcast_tx fo_mcast_tx_t;

/* Build the group table from cfg (copied). epoch goes in every datagram.
 * *out owned by the caller. With no groups configured, *out is still a
 * valid object that matches nothing. FO_ERR_RANGE: max_datagram outside
 * 512..65507 or ttl outside 0..255; FO_ERR_ADDR: a group that is not an
 * IPv4 multicast address with a port, a bad filter, two filters on one
 * address:port, or an unknown mcast_if. */
FO_MUST_CHECK fo_err_t fo_mcast_create(const fo_config_t *cfg, uint64_t epoch, fo_mcast_t **out);
void fo_mcast_destroy(fo_mcast_t *m);                       /* NULL is fine */

/* Group index for a concrete topic, -1 when none maps it (first match in
 * config order wins). */
int fo_mcast_group_for(const fo_mcast_t *m, const char *topic);

/* The groups for WELCOME: *groups points into m (borrowed, valid for m's
 * life); returns the count. */
size_t fo_mcast_welcome_groups(const fo_mcast_t *m, Fanout__McastGroup ***groups);

/* The datagram size limit (for WELCOME.max_datagram). */
uint32_t fo_mcast_max_datagram(const fo_mcast_t *m);

/* Per-worker sender. stats is the worker's (borrowed). */
FO_MUST_CHECK fo_err_t fo_mcast_tx_create(const fo_mcast_t *m, fo_stats_t *stats, fo_mcast_tx_t **out);
void fo_mcast_tx_destroy(fo_mcast_tx_t *tx);                /* flushes; NULL is fine */

/* Queue one message for group `group` (from fo_mcast_group_for). The bytes
 * are copied into the pending datagram; nothing is retained. carry = 0
 * sends only the marker (topic, seq, size: fetched with REPAIR), as for a
 * message too large for a datagram: for messages with a reply address or
 * headers, which only DELIVER carries. */
void fo_mcast_tx_add(fo_mcast_tx_t *tx, int group, const char *topic, size_t topic_len,
                     uint64_t seq, const uint8_t *payload, size_t payload_len, int carry);

/* Send everything queued (sendmmsg). Cheap when nothing is queued. */
void fo_mcast_tx_flush(fo_mcast_tx_t *tx);

#endif
