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
 * Authentication (proto/dgram_tag.h, docs/MULTICAST.md): every group has
 * a 32-byte key made at create (randombytes_buf: a broker start is a new
 * epoch and new keys). Each datagram is sealed once, when its slot is
 * flushed: one keyed BLAKE2b over the finished bytes, appended with its
 * number dseq = sender << 48 | count, count per sender and group. Each
 * worker is its own sender (its index), so numbers are unique without
 * shared state; receivers keep a replay window per sender.
 *
 * Keys go out in WELCOME (fo_mcast_announce) only to connections over
 * TLS or from loopback whose user may read every topic of the group.
 *
 * Threading: fo_mcast_t is immutable after create and shared by all
 * workers; each worker owns one fo_mcast_tx_t (own socket, own buffers,
 * own counters). Datagrams of one topic sent by two workers may arrive
 * reordered; the receiver's gap tracker tolerates that.
 */
#ifndef FO_MCAST_H
#define FO_MCAST_H

#include <stddef.h>
#include <stdint.h>
#include "acl.h"
#include "config.h"
#include "dgram_tag.h"
#include "stats.h"
#include "fanout.pb-c.h"

typedef struct fo_mcast fo_mcast_t;
typedef struct fo_mcast_tx fo_mcast_tx_t;

/* Build the group table from cfg (copied), with a fresh random key per
 * group. epoch goes in every datagram. *out owned by the caller. With no
 * groups configured, *out is still a valid object that matches nothing.
 * FO_ERR_RANGE: max_datagram outside 512..65507 or ttl outside 0..255;
 * FO_ERR_ADDR: a group that is not an IPv4 multicast address with a port,
 * a bad filter, two filters on one address:port, or an unknown mcast_if;
 * FO_ERR_NOMEM (also: libsodium did not start). */
FO_MUST_CHECK fo_err_t fo_mcast_create(const fo_config_t *cfg, uint64_t epoch, fo_mcast_t **out);
void fo_mcast_destroy(fo_mcast_t *m);                       /* NULL is fine */

/* Group index for a concrete topic, -1 when none maps it (first match in
 * config order wins). */
int fo_mcast_group_for(const fo_mcast_t *m, const char *topic);

/* Who a WELCOME is for, as far as keys go. */
typedef struct fo_mcast_peer {
    int secure;               /* over TLS, or from loopback                 */
    int anonymous;            /* no users configured: may read everything   */
    unsigned rights;          /* the user's FO_RIGHT_* (acl.h)              */
    const fo_acl_t *sub_acl;  /* the user's subscribe permissions; borrowed */
} fo_mcast_peer_t;

/* The groups of one WELCOME: caller's storage (about 2 KiB: on the stack),
 * valid as long as it and m are. */
typedef struct fo_mcast_announce {
    Fanout__McastGroup g[FO_MCAST_MAX_GROUPS];
    Fanout__McastGroup *pg[FO_MCAST_MAX_GROUPS];   /* Welcome.groups      */
    uint32_t keyed;           /* bit i: group i went out with its key       */
} fo_mcast_announce_t;

/* Fill *out with every group, in matching order; a group's key only when
 * the peer is entitled to it (docs/MULTICAST.md, Keys): secure, and
 * anonymous or with FO_RIGHT_MULTICAST and subscribe permissions that
 * cover the group's whole filter (fo_acl_covers_filter). out->pg points
 * into out, the keys into m. Returns the count (Welcome.n_groups). */
size_t fo_mcast_announce(const fo_mcast_t *m, const fo_mcast_peer_t *peer,
                         fo_mcast_announce_t *out);

/* Group i's key (FO_DGRAM_KEY_LEN bytes, m's), NULL when no such group.
 * For tests and tools that play a receiver without a WELCOME. */
const uint8_t *fo_mcast_group_key(const fo_mcast_t *m, size_t i);

/* The datagram size limit (for WELCOME.max_datagram). */
uint32_t fo_mcast_max_datagram(const fo_mcast_t *m);

/* Per-worker sender number `sender` (the worker's index, 0 ..
 * FO_DGRAM_SENDERS - 1, each used once per m: it is the top of every
 * dseq it sends). stats is the worker's (borrowed). FO_ERR_RANGE: sender
 * out of range; FO_ERR_NOMEM; FO_ERR_IO / FO_ERR_ADDR: the socket. */
FO_MUST_CHECK fo_err_t fo_mcast_tx_create(const fo_mcast_t *m, unsigned sender, fo_stats_t *stats,
                                          fo_mcast_tx_t **out);
void fo_mcast_tx_destroy(fo_mcast_tx_t *tx);                /* flushes; NULL is fine */

/* Queue one message for group `group` (from fo_mcast_group_for). The bytes
 * are copied into the pending datagram; nothing is retained. carry = 0
 * sends only the marker (topic, seq, size: fetched with REPAIR), as for a
 * message too large for a datagram: for messages with a reply address or
 * headers, which only DELIVER carries. */
void fo_mcast_tx_add(fo_mcast_tx_t *tx, int group, const char *topic, size_t topic_len,
                     uint64_t seq, const uint8_t *payload, size_t payload_len, int carry);

/* Seal and send everything queued (sendmmsg). Cheap when nothing is
 * queued. */
void fo_mcast_tx_flush(fo_mcast_tx_t *tx);

#endif
