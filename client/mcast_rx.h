/* mcast_rx.h -- multicast receiver of one group (library internal).
 *
 * A receiver joins one group (address:port from Welcome.groups) on a chosen
 * interface, reads datagrams with recvmmsg, checks each one -- the broker
 * epoch, the tag under the group's key, the replay window (see mcast_rx.c,
 * and docs/PROTOCOL.md §18 for the order) -- decodes the authentic ones
 * into an arena, and feeds every
 * message to a gap tracker (gaps.h), which hands them on in order per
 * topic and asks for repair of what is missing. Repaired messages and the
 * broker's GAP answers come back over TCP and are fed in with
 * fo__mcast_rx_repaired() / fo__mcast_rx_lost().
 *
 * It is passive: it owns a non-blocking socket and does work only when
 * called. The owner polls fo__mcast_rx_fd() for input, calls
 * fo__mcast_rx_read() when it is readable and fo__mcast_rx_poll() when the
 * time it returned has passed. Several receivers on one host (even in one
 * process) can join the same group: SO_REUSEADDR, each gets every datagram.
 *
 * Not thread-safe: all calls on one receiver from one thread (libfanout:
 * the client's reader thread). Callbacks run inside read/poll/repaired/
 * lost/flush and must not call back into the receiver.
 */
#ifndef FO_MCAST_RX_H
#define FO_MCAST_RX_H

#include <stddef.h>
#include <stdint.h>
#include "dgram_tag.h"
#include "fo_err.h"
#include "gaps.h"

typedef struct fo__mcast_rx fo__mcast_rx_t;

typedef struct fo__mcast_rx_opts {
    const char *group;        /* IPv4 multicast address; borrowed          */
    uint16_t port;            /* 0 = any free port (tests)                 */
    const char *filter;       /* the subscription's filter: other topics of
                                 the group are skipped; NULL = all; copied */
    const char *iface;        /* interface address or name, NULL/"" = the
                                 kernel's choice; borrowed                */
    uint64_t epoch;           /* Welcome.epoch: datagrams of any other epoch
                                 are dropped (only a WELCOME changes it:
                                 fo__mcast_rx_rekey)                      */
    const uint8_t *key;       /* McastGroup.key, FO_DGRAM_KEY_LEN bytes;
                                 required (copied)                         */
    uint32_t max_datagram;    /* Welcome.max_datagram (0 = 65507)          */
    int rcvbuf;               /* SO_RCVBUF bytes, 0 = 4 MiB (capped by the
                                 kernel's rmem_max)                        */
    fo__gaps_opts_t gaps;     /* tracker bounds and timers (0 = defaults)  */
} fo__mcast_rx_opts_t;

typedef struct fo__mcast_rx_stats {
    fo__gaps_stats_t gaps;    /* messages, gaps, repaired, lost...         */
    uint64_t datagrams;       /* datagrams read                            */
    uint64_t bad;             /* did not decode, truncated, larger than
                                 max_datagram, no tag: dropped             */
    uint64_t forged;          /* the tag did not verify: dropped           */
    uint64_t replayed;        /* authentic, but a number seen before or
                                 below the replay window: dropped          */
    uint64_t foreign;         /* another epoch than WELCOME's: dropped     */
    uint64_t filtered;        /* messages outside the filter: skipped      */
    uint64_t dropped;         /* messages the tracker had no memory for    */
    uint64_t errors;          /* reads that failed (recvmmsg, not EAGAIN)  */
} fo__mcast_rx_stats_t;

/* Open the socket and join. cb is copied (gaps.h: on_deliver in order,
 * on_lost for given-up ranges, on_repair to ask the broker). *out owned by
 * the caller. FO_ERR_INVAL: no key; FO_ERR_ADDR: bad group/interface;
 * FO_ERR_IO: socket calls; FO_ERR_NOMEM (also: libsodium did not start). */
FO_MUST_CHECK
fo_err_t fo__mcast_rx_create(const fo__mcast_rx_opts_t *o, const fo__gaps_cb_t *cb,
                             fo__mcast_rx_t **out);
void fo__mcast_rx_destroy(fo__mcast_rx_t *rx);              /* NULL is fine */

int fo__mcast_rx_fd(const fo__mcast_rx_t *rx);
uint16_t fo__mcast_rx_port(const fo__mcast_rx_t *rx);      /* bound port */

/* Read what the socket holds (bounded per call, so one busy group cannot
 * starve the caller's other work) and process it. FO_ERR_AGAIN when the
 * bound was hit and more may be waiting; FO_OK when drained. */
FO_MUST_CHECK
fo_err_t fo__mcast_rx_read(fo__mcast_rx_t *rx, uint64_t now_ms);

/* Timers: repair requests and give-ups. Returns ms until the next call is
 * useful (UINT32_MAX: nothing pending). */
uint32_t fo__mcast_rx_poll(fo__mcast_rx_t *rx, uint64_t now_ms);

/* A message resent by the broker (DELIVER replay for this subscription). */
void fo__mcast_rx_repaired(fo__mcast_rx_t *rx, const char *topic, uint64_t seq,
                           const uint8_t *payload, size_t len, uint64_t now_ms);

/* The broker answered GAP: first..last of topic are gone. */
void fo__mcast_rx_lost(fo__mcast_rx_t *rx, const char *topic, uint64_t first, uint64_t last);

/* The epoch and group key of the broker the client is connected to now
 * (WELCOME after a reconnect; key: FO_DGRAM_KEY_LEN bytes, copied). When
 * either differs (the broker restarted), sequences and datagram numbers
 * start again: the tracker and the replay window forget everything. The
 * same epoch and key: nothing happens. The only way a receiver moves to
 * another epoch: never on a datagram's word. */
void fo__mcast_rx_rekey(fo__mcast_rx_t *rx, uint64_t epoch, const uint8_t *key);

/* Give up every hole (closing, or no TCP connection to repair over). */
void fo__mcast_rx_flush(fo__mcast_rx_t *rx);

void fo__mcast_rx_stats(const fo__mcast_rx_t *rx, fo__mcast_rx_stats_t *out);

#endif
