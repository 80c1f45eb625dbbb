/* mcast_rx.c -- multicast receiver of one group (see mcast_rx.h).
 *
 * Socket: bound to group:port (not INADDR_ANY, so datagrams of other
 * groups on the same port never arrive), SO_REUSEADDR so several receivers
 * share the group, IP_MULTICAST_ALL off (Linux would otherwise deliver
 * every group any socket on the host joined), and the membership taken
 * with struct ip_mreqn on the chosen interface.
 *
 * Reading: recvmmsg into BATCH buffers of max_datagram + 1 bytes (a
 * datagram that fills the extra byte, or comes back MSG_TRUNC, is larger
 * than the broker announced: counted bad, dropped). Each datagram is then
 * checked in this order (docs/PROTOCOL.md §18), cheapest first, and
 * dropped and counted at the first failure:
 *   1. its epoch (first field) is WELCOME's, else `foreign`;
 *   2. it ends with the trailer (dseq, tag), else `bad`;
 *   3. the tag verifies under the group key, else `forged`;
 *   4. the bytes the tag covers decode, with this epoch and dseq, every
 *      message with topic and seq, else `bad`;
 *   5. dseq is new to the replay window (replay.h), else `replayed`.
 * Only the bytes the tag covers are decoded, with
 * fanout__datagram__unpack into an arena reset per batch; nothing is
 * malloc'd per datagram. An oversize marker goes to the tracker as such.
 *
 * A group may carry topics beyond the subscription's filter (its own
 * filter is wider, e.g. `prices.>` for a subscription to `prices.eu.*`):
 * messages whose topic the subscription's filter does not match are
 * skipped before the tracker sees them.
 *
 * Epochs (the broker's start time) change only by WELCOME
 * (fo__mcast_rx_rekey): the restarted broker's datagrams carry a new epoch
 * and a new key, and are dropped as foreign until the TCP connection is
 * back and its WELCOME brings both. A datagram cannot move a receiver to
 * another epoch (one forged datagram used to silence it).
 */
#include "mcast_rx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "arena.h"
#include "dgram_tag.h"
#include "replay.h"
#include "topic_name.h"
#include "fanout.pb-c.h"

#define BATCH 32
#define MAX_BATCHES_PER_READ 8
#define DATAGRAM_LIMIT 65507u

struct fo__mcast_rx {
    int fd;
    char *filter;                    /* owned; NULL = every topic         */
    uint64_t epoch;
    uint8_t key[FO_DGRAM_KEY_LEN];   /* the group's, for this epoch       */
    fo__replay_t replay;
    size_t buflen;                   /* max_datagram + 1                  */
    uint8_t *mem;                    /* owned: BATCH * buflen             */
    struct mmsghdr hdr[BATCH];
    struct iovec iov[BATCH];
    fo_arena_t arena;
    fo__gaps_t *gaps;                /* owned                             */
    uint64_t datagrams, bad, forged, replayed, foreign, filtered, dropped, errors;
};

/* ------------------------------------------------------------ socket */

static fo_err_t join(int fd, const fo__mcast_rx_opts_t *o)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(o->port) };
    struct ip_mreqn mr;
    memset(&mr, 0, sizeof(mr));
    if (!o->group || inet_pton(AF_INET, o->group, &a.sin_addr) != 1 ||
        !IN_MULTICAST(ntohl(a.sin_addr.s_addr)))
        return FO_ERR_ADDR;
    mr.imr_multiaddr = a.sin_addr;
    if (o->iface && o->iface[0] && inet_pton(AF_INET, o->iface, &mr.imr_address) != 1) {
        mr.imr_ifindex = (int)if_nametoindex(o->iface);
        if (mr.imr_ifindex == 0)
            return FO_ERR_ADDR;
    }
    int one = 1, zero = 0, rcvbuf = o->rcvbuf > 0 ? o->rcvbuf : 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        return FO_ERR_IO;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    (void)setsockopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof(zero));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        return FO_ERR_IO;
    if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof(mr)) < 0)
        return errno == ENODEV || errno == EADDRNOTAVAIL ? FO_ERR_ADDR : FO_ERR_IO;
    return FO_OK;
}

fo_err_t fo__mcast_rx_create(const fo__mcast_rx_opts_t *o, const fo__gaps_cb_t *cb,
                             fo__mcast_rx_t **out)
{
    fo_err_t err = FO_ERR_NOMEM;
    *out = NULL;
    if (!o->key)
        return FO_ERR_INVAL;
    if (fo_dgram_tag_init() != FO_OK)
        return FO_ERR_NOMEM;
    fo__mcast_rx_t *rx = calloc(1, sizeof(*rx));
    if (!rx)
        return FO_ERR_NOMEM;
    rx->fd = -1;
    rx->epoch = o->epoch;
    memcpy(rx->key, o->key, sizeof rx->key);
    if (o->filter && !(rx->filter = strdup(o->filter)))
        goto fail;
    uint32_t maxd = o->max_datagram && o->max_datagram < DATAGRAM_LIMIT ? o->max_datagram
                                                                        : DATAGRAM_LIMIT;
    rx->buflen = (size_t)maxd + 1;
    rx->mem = malloc(BATCH * rx->buflen);
    if (!rx->mem || fo_arena_init(&rx->arena, 2 * rx->buflen + 4096, 0) != FO_OK)
        goto fail;
    if ((err = fo__gaps_create(&o->gaps, cb, &rx->gaps)) != FO_OK)
        goto fail;
    err = FO_ERR_IO;
    rx->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (rx->fd < 0)
        goto fail;
    if ((err = join(rx->fd, o)) != FO_OK)
        goto fail;
    *out = rx;
    return FO_OK;
fail:
    fo__mcast_rx_destroy(rx);
    return err;
}

void fo__mcast_rx_destroy(fo__mcast_rx_t *rx)
{
    if (!rx)
        return;
    if (rx->fd >= 0)
        close(rx->fd);              /* leaves the group */
    fo__gaps_destroy(rx->gaps);
    fo_arena_destroy(&rx->arena);
    free(rx->filter);
    free(rx->mem);
    sodium_memzero(rx->key, sizeof rx->key);
    free(rx);
}

int fo__mcast_rx_fd(const fo__mcast_rx_t *rx)
{
    return rx->fd;
}

uint16_t fo__mcast_rx_port(const fo__mcast_rx_t *rx)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    if (getsockname(rx->fd, (struct sockaddr *)&a, &len) < 0)
        return 0;
    return ntohs(a.sin_port);
}

/* Checks 1-4 of the file comment: the decoded datagram, or NULL (counted). */
static Fanout__Datagram *authentic(fo__mcast_rx_t *rx, const uint8_t *p, size_t n)
{
    uint64_t epoch, dseq;
    size_t len;
    if (!fo_dgram_epoch(p, n, &epoch)) {
        rx->bad++;
        return NULL;
    }
    if (epoch != rx->epoch) {
        rx->foreign++;                  /* another broker run */
        return NULL;
    }
    switch (fo_dgram_open(p, n, rx->key, &len, &dseq)) {
    case FO_DGRAM_OK:
        break;
    case FO_DGRAM_FORGED:
        rx->forged++;
        return NULL;
    default:
        rx->bad++;                      /* untagged or truncated */
        return NULL;
    }
    Fanout__Datagram *d = fanout__datagram__unpack(fo_arena_pb(&rx->arena), len, p);
    int ok = d && d->has_epoch && d->epoch == rx->epoch && d->has_dseq && d->dseq == dseq &&
             !d->has_tag;
    for (size_t i = 0; ok && i < d->n_msgs; i++) {
        const Fanout__McastMsg *m = d->msgs[i];
        ok = m->topic && m->has_seq && m->seq != 0 && (m->has_payload || m->oversize);
    }
    if (!ok) {
        rx->bad++;
        return NULL;
    }
    return d;
}

/* One datagram: check, then every message to the tracker. */
static void process(fo__mcast_rx_t *rx, const uint8_t *p, size_t n, uint64_t now_ms)
{
    rx->datagrams++;
    Fanout__Datagram *d = authentic(rx, p, n);
    if (!d)
        return;
    if (fo__replay_check(&rx->replay, d->dseq) != FO__REPLAY_NEW) {
        rx->replayed++;
        return;
    }
    for (size_t i = 0; i < d->n_msgs; i++) {
        const Fanout__McastMsg *m = d->msgs[i];
        if (rx->filter && !fo_topic_match(rx->filter, m->topic)) {
            rx->filtered++;
            continue;
        }
        fo_err_t err;
        if (m->has_oversize && m->oversize)
            err = fo__gaps_offer(rx->gaps, m->topic, m->seq, NULL, 0, FO__GAPS_OVERSIZE, now_ms);
        else
            err = fo__gaps_offer(rx->gaps, m->topic, m->seq, m->payload.data, m->payload.len, 0,
                                 now_ms);
        rx->dropped += err != FO_OK;        /* no memory to track it */
    }
}

fo_err_t fo__mcast_rx_read(fo__mcast_rx_t *rx, uint64_t now_ms)
{
    for (int round = 0; round < MAX_BATCHES_PER_READ; round++) {
        for (int i = 0; i < BATCH; i++) {
            rx->iov[i].iov_base = rx->mem + (size_t)i * rx->buflen;
            rx->iov[i].iov_len = rx->buflen;
            memset(&rx->hdr[i], 0, sizeof(rx->hdr[i]));
            rx->hdr[i].msg_hdr.msg_iov = &rx->iov[i];
            rx->hdr[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(rx->fd, rx->hdr, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return FO_OK;
            rx->errors++;
            return FO_ERR_IO;
        }
        for (int i = 0; i < n; i++) {
            size_t len = rx->hdr[i].msg_len;
            if (len >= rx->buflen || (rx->hdr[i].msg_hdr.msg_flags & MSG_TRUNC)) {
                rx->datagrams++;
                rx->bad++;
                continue;
            }
            process(rx, rx->iov[i].iov_base, len, now_ms);
        }
        fo_arena_reset(&rx->arena);
        if (n < BATCH)
            return FO_OK;
    }
    return FO_ERR_AGAIN;
}

uint32_t fo__mcast_rx_poll(fo__mcast_rx_t *rx, uint64_t now_ms)
{
    return fo__gaps_poll(rx->gaps, now_ms);
}

void fo__mcast_rx_repaired(fo__mcast_rx_t *rx, const char *topic, uint64_t seq,
                           const uint8_t *payload, size_t len, uint64_t now_ms)
{
    if (fo__gaps_offer(rx->gaps, topic, seq, payload, len, FO__GAPS_REPAIRED, now_ms))
        rx->dropped++;                      /* no memory to track it */
}

void fo__mcast_rx_lost(fo__mcast_rx_t *rx, const char *topic, uint64_t first, uint64_t last)
{
    fo__gaps_lost(rx->gaps, topic, first, last);
}

void fo__mcast_rx_rekey(fo__mcast_rx_t *rx, uint64_t epoch, const uint8_t *key)
{
    if (epoch == rx->epoch && sodium_memcmp(key, rx->key, sizeof rx->key) == 0)
        return;
    rx->epoch = epoch;
    memcpy(rx->key, key, sizeof rx->key);
    fo__replay_reset(&rx->replay);
    fo__gaps_reset(rx->gaps);
}

void fo__mcast_rx_flush(fo__mcast_rx_t *rx)
{
    fo__gaps_flush(rx->gaps);
}

void fo__mcast_rx_stats(const fo__mcast_rx_t *rx, fo__mcast_rx_stats_t *out)
{
    fo__gaps_stats(rx->gaps, &out->gaps);
    out->datagrams = rx->datagrams;
    out->bad = rx->bad;
    out->forged = rx->forged;
    out->replayed = rx->replayed;
    out->foreign = rx->foreign;
    out->filtered = rx->filtered;
    out->dropped = rx->dropped;
    out->errors = rx->errors;
}
