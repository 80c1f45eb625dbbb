/* mcast.c -- best-effort UDP multicast fan-out (broker side).
 *
 * Two objects (see mcast.h):
 *  - fo_mcast_t, built once from the config and then read-only: the group
 *    table (filter, destination address, the McastGroup records WELCOME
 *    announces), the epoch and the datagram limit.
 *  - fo_mcast_tx_t, one per worker: a UDP socket and a batch of datagram
 *    slots. Each group has at most one "open" slot that messages are
 *    appended to; a slot that cannot take the next message is closed and a
 *    new one opened. fo_mcast_tx_flush() hands every used slot to one
 *    sendmmsg() call; a full batch is flushed on the spot.
 *
 * Datagrams are encoded by hand (the Datagram message is two fields, the
 * McastMsg five), straight into the slot: no protobuf-c allocation on the
 * hot path. The layout is exactly what protobuf-c's packer would produce,
 * and tests/unit/test_mcast.c decodes it with fanout__datagram__unpack.
 *
 *   Datagram  = 0x08 varint(epoch) { 0x12 varint(len) McastMsg }*
 *               0x19 dseq(8)  0x22 0x10 tag(16)          <- fo_dgram_seal
 *   McastMsg  = 0x0a varint(len) topic  0x10 varint(seq)
 *               ( 0x1a varint(len) payload | 0x20 0x01 0x28 varint(size) )
 *
 * A slot keeps FO_DGRAM_TRAILER_LEN bytes free for the trailer, which
 * fo_mcast_tx_flush seals once per datagram (dseq was given when the slot
 * opened, so numbers follow the send order of each worker and group).
 *
 * A message whose McastMsg does not fit an empty datagram is sent as an
 * oversize marker (no payload; receivers fetch it with REPAIR) and counted
 * in mcast_oversize. A marker always fits: topics are at most FO_TOPIC_MAX
 * (255) bytes and datagrams at least FO_MCAST_MIN_DATAGRAM (512) (checked
 * anyway; a topic too long even for that is counted as a send error).
 *
 * The socket is non-blocking: a worker never waits on the network. A
 * datagram the kernel refuses (EAGAIN with a full send buffer, no route...)
 * is lost, which is what multicast is allowed to do; it is counted in
 * mcast_send_errors and receivers see the gap and repair it over TCP.
 */
#include "mcast.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "frame.h"
#include "topic.h"

#define FO_MCAST_MIN_DATAGRAM 512u
#define FO_MCAST_MAX_DATAGRAM 65507u     /* largest IPv4 UDP payload       */
#define BATCH_BYTES (1u << 20)           /* slot memory per worker, about  */
#define BATCH_MIN 8
#define BATCH_MAX 64
#define SNDBUF_WANT (4 << 20)

typedef struct group {
    char filter[sizeof(((fo_mcast_map_t *)0)->filter)];
    char addr[sizeof(((fo_mcast_map_t *)0)->addr)];
    struct sockaddr_in dst;
    uint16_t port;
    uint8_t key[FO_DGRAM_KEY_LEN];   /* random, this epoch's */
} group_t;

struct fo_mcast {
    group_t *groups;                 /* owned, count entries              */
    size_t count;
    uint64_t epoch;
    uint32_t max_datagram;
    int ttl;
    int loop;
    struct ip_mreqn ifreq;           /* outgoing interface (0 = default)  */
};

typedef struct slot {
    size_t len;          /* bytes used in the slot's buffer (no trailer) */
    uint32_t msgs;       /* messages it carries             */
    int group;
    uint64_t dseq;       /* its number (sender << 48 | count) */
} slot_t;

struct fo_mcast_tx {
    const fo_mcast_t *m;             /* borrowed */
    fo_stats_t *stats;               /* borrowed */
    int fd;
    size_t nslots;                   /* capacity of the batch            */
    size_t used;                     /* slots in use                     */
    uint8_t *mem;                    /* owned: nslots * max_datagram     */
    slot_t *slots;                   /* owned                            */
    struct mmsghdr *hdr;             /* owned                            */
    struct iovec *iov;               /* owned                            */
    int open[FO_MCAST_MAX_GROUPS];   /* open slot per group, -1 = none   */
    uint64_t sender;                 /* sender << FO_DGRAM_SENDER_SHIFT  */
    uint64_t count[FO_MCAST_MAX_GROUPS];   /* datagrams numbered per group */
};

/* ------------------------------------------------------------ table */

static size_t header_size(uint64_t epoch)
{
    return 1 + fo_varint_len(epoch);
}

fo_err_t fo_mcast_create(const fo_config_t *cfg, uint64_t epoch, fo_mcast_t **out)
{
    fo_err_t err = FO_ERR_NOMEM;
    fo_mcast_t *m = calloc(1, sizeof(*m));
    *out = NULL;
    if (!m)
        return FO_ERR_NOMEM;
    if (fo_dgram_tag_init() != FO_OK)
        goto fail;
    m->epoch = epoch;
    m->max_datagram = cfg->max_datagram;
    m->ttl = cfg->mcast_ttl;
    m->loop = cfg->mcast_loop ? 1 : 0;
    if (m->max_datagram < FO_MCAST_MIN_DATAGRAM || m->max_datagram > FO_MCAST_MAX_DATAGRAM ||
        m->ttl < 0 || m->ttl > 255 || cfg->mcast_count < 0 ||
        cfg->mcast_count > FO_MCAST_MAX_GROUPS) {
        err = FO_ERR_RANGE;
        goto fail;
    }
    if (cfg->mcast_if[0]) {
        if (inet_pton(AF_INET, cfg->mcast_if, &m->ifreq.imr_address) != 1) {
            m->ifreq.imr_ifindex = (int)if_nametoindex(cfg->mcast_if);
            if (m->ifreq.imr_ifindex == 0) {
                err = FO_ERR_ADDR;
                goto fail;
            }
        }
    }
    m->count = (size_t)cfg->mcast_count;
    if (m->count) {
        m->groups = calloc(m->count, sizeof(*m->groups));
        if (!m->groups)
            goto fail;
    }
    for (size_t i = 0; i < m->count; i++) {
        const fo_mcast_map_t *src = &cfg->mcast[i];
        group_t *g = &m->groups[i];
        memcpy(g->filter, src->filter, sizeof(g->filter));
        g->filter[sizeof(g->filter) - 1] = '\0';
        memcpy(g->addr, src->addr, sizeof(g->addr));
        g->addr[sizeof(g->addr) - 1] = '\0';
        g->dst.sin_family = AF_INET;
        g->dst.sin_port = htons(src->port);
        if (!fo_filter_valid(g->filter, strlen(g->filter)) ||
            inet_pton(AF_INET, g->addr, &g->dst.sin_addr) != 1 ||
            !IN_MULTICAST(ntohl(g->dst.sin_addr.s_addr)) || src->port == 0) {
            err = FO_ERR_ADDR;
            goto fail;
        }
        for (size_t j = 0; j < i; j++)      /* one filter per address:port */
            if (m->groups[j].dst.sin_addr.s_addr == g->dst.sin_addr.s_addr &&
                m->groups[j].dst.sin_port == g->dst.sin_port) {
                err = FO_ERR_ADDR;
                goto fail;
            }
        g->port = src->port;
        randombytes_buf(g->key, sizeof g->key);
    }
    *out = m;
    return FO_OK;
fail:
    fo_mcast_destroy(m);
    return err;
}

void fo_mcast_destroy(fo_mcast_t *m)
{
    if (!m)
        return;
    if (m->groups)
        sodium_memzero(m->groups, m->count * sizeof(*m->groups));
    free(m->groups);
    free(m);
}

int fo_mcast_group_for(const fo_mcast_t *m, const char *topic)
{
    for (size_t i = 0; i < m->count; i++)
        if (fo_topic_match(m->groups[i].filter, topic))
            return (int)i;
    return -1;
}

static int entitled(const fo_mcast_peer_t *p, const char *filter)
{
    if (!p->secure)
        return 0;               /* a key in clear text is anyone's key */
    return p->anonymous || ((p->rights & FO_RIGHT_MULTICAST) &&
                            fo_acl_covers_filter(p->sub_acl, filter));
}

size_t fo_mcast_announce(const fo_mcast_t *m, const fo_mcast_peer_t *peer,
                         fo_mcast_announce_t *out)
{
    out->keyed = 0;
    for (size_t i = 0; i < m->count; i++) {
        const group_t *g = &m->groups[i];
        Fanout__McastGroup *pb = &out->g[i];
        fanout__mcast_group__init(pb);
        pb->filter = (char *)g->filter;
        pb->address = (char *)g->addr;
        pb->has_port = 1;
        pb->port = g->port;
        if (entitled(peer, g->filter)) {
            pb->has_key = 1;
            pb->key.data = (uint8_t *)g->key;
            pb->key.len = sizeof g->key;
            out->keyed |= 1u << i;
        }
        out->pg[i] = pb;
    }
    return m->count;
}

const uint8_t *fo_mcast_group_key(const fo_mcast_t *m, size_t i)
{
    return i < m->count ? m->groups[i].key : NULL;
}

uint32_t fo_mcast_max_datagram(const fo_mcast_t *m)
{
    return m->max_datagram;
}

/* ------------------------------------------------------------ sender */

fo_err_t fo_mcast_tx_create(const fo_mcast_t *m, unsigned sender, fo_stats_t *stats,
                            fo_mcast_tx_t **out)
{
    fo_err_t err = FO_ERR_NOMEM;
    *out = NULL;
    if (sender >= FO_DGRAM_SENDERS)
        return FO_ERR_RANGE;
    fo_mcast_tx_t *tx = calloc(1, sizeof(*tx));
    if (!tx)
        return FO_ERR_NOMEM;
    tx->m = m;
    tx->sender = (uint64_t)sender << FO_DGRAM_SENDER_SHIFT;
    tx->stats = stats;
    tx->fd = -1;
    for (int i = 0; i < FO_MCAST_MAX_GROUPS; i++)
        tx->open[i] = -1;
    if (m->count == 0) {          /* nothing to send: no socket, no memory */
        *out = tx;
        return FO_OK;
    }
    size_t n = BATCH_BYTES / m->max_datagram;
    tx->nslots = n < BATCH_MIN ? BATCH_MIN : n > BATCH_MAX ? BATCH_MAX : n;
    tx->mem = malloc(tx->nslots * m->max_datagram);
    tx->slots = calloc(tx->nslots, sizeof(*tx->slots));
    tx->hdr = calloc(tx->nslots, sizeof(*tx->hdr));
    tx->iov = calloc(tx->nslots, sizeof(*tx->iov));
    if (!tx->mem || !tx->slots || !tx->hdr || !tx->iov)
        goto fail;
    err = FO_ERR_IO;
    tx->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (tx->fd < 0)
        goto fail;
    unsigned char ttl = (unsigned char)m->ttl, loop = (unsigned char)m->loop;
    int sndbuf = SNDBUF_WANT;
    (void)setsockopt(tx->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    if (setsockopt(tx->fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl)) < 0 ||
        setsockopt(tx->fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof(loop)) < 0)
        goto fail;
    if ((m->ifreq.imr_address.s_addr || m->ifreq.imr_ifindex) &&
        setsockopt(tx->fd, IPPROTO_IP, IP_MULTICAST_IF, &m->ifreq, sizeof(m->ifreq)) < 0) {
        err = FO_ERR_ADDR;
        goto fail;
    }
    *out = tx;
    return FO_OK;
fail:
    fo_mcast_tx_destroy(tx);
    return err;
}

void fo_mcast_tx_destroy(fo_mcast_tx_t *tx)
{
    if (!tx)
        return;
    fo_mcast_tx_flush(tx);
    if (tx->fd >= 0)
        close(tx->fd);
    free(tx->mem);
    free(tx->slots);
    free(tx->hdr);
    free(tx->iov);
    free(tx);
}

static uint8_t *slot_data(const fo_mcast_tx_t *tx, size_t i)
{
    return tx->mem + i * tx->m->max_datagram;
}

static uint8_t *put_bytes(uint8_t *p, uint8_t tag, const void *b, size_t n)
{
    *p++ = tag;
    p += fo_varint_put(p, n);
    if (n)
        memcpy(p, b, n);
    return p + n;
}

/* Open a new slot for `group` (flushing a full batch first) and number
 * it; -1 when the group's numbers are used up (2^48 datagrams: not in
 * this universe, but never a repeated number either). */
static int slot_open(fo_mcast_tx_t *tx, int group)
{
    if (tx->count[group] >= FO_DGRAM_COUNT_MAX)
        return -1;
    if (tx->used == tx->nslots)
        fo_mcast_tx_flush(tx);
    size_t i = tx->used++;
    uint8_t *p = slot_data(tx, i);
    *p++ = 0x08;
    p += fo_varint_put(p, tx->m->epoch);
    tx->slots[i].len = (size_t)(p - slot_data(tx, i));
    tx->slots[i].msgs = 0;
    tx->slots[i].group = group;
    tx->slots[i].dseq = tx->sender | ++tx->count[group];
    tx->open[group] = (int)i;
    return (int)i;
}

void fo_mcast_tx_add(fo_mcast_tx_t *tx, int group, const char *topic, size_t topic_len,
                     uint64_t seq, const uint8_t *payload, size_t payload_len, int carry)
{
    const fo_mcast_t *m = tx->m;
    if (group < 0 || (size_t)group >= m->count)
        return;
    size_t limit = m->max_datagram - FO_DGRAM_TRAILER_LEN;   /* a slot's body */
    size_t room = limit - header_size(m->epoch);
    size_t head = 1 + fo_varint_len(topic_len) + topic_len + 1 + fo_varint_len(seq);
    size_t inner = head + 1 + fo_varint_len(payload_len) + payload_len;
    int oversize = 0;
    if (!carry || 1 + fo_varint_len(inner) + inner > room) {
        oversize = 1;
        inner = head + 2 + 1 + fo_varint_len(payload_len);
        FO_STAT_INC(tx->stats, mcast_oversize);
        if (1 + fo_varint_len(inner) + inner > room) {
            FO_STAT_INC(tx->stats, mcast_send_errors);   /* absurd topic */
            return;
        }
    }
    size_t need = 1 + fo_varint_len(inner) + inner;
    int i = tx->open[group];
    if (i < 0 || tx->slots[i].len + need > limit)
        i = slot_open(tx, group);
    if (i < 0) {
        FO_STAT_INC(tx->stats, mcast_send_errors);
        return;
    }
    slot_t *s = &tx->slots[i];
    uint8_t *p = slot_data(tx, (size_t)i) + s->len;
    *p++ = 0x12;
    p += fo_varint_put(p, inner);
    p = put_bytes(p, 0x0a, topic, topic_len);
    *p++ = 0x10;
    p += fo_varint_put(p, seq);
    if (oversize) {
        *p++ = 0x20;
        *p++ = 0x01;
        *p++ = 0x28;
        p += fo_varint_put(p, payload_len);
    } else {
        p = put_bytes(p, 0x1a, payload, payload_len);
    }
    s->len = (size_t)(p - slot_data(tx, (size_t)i));
    s->msgs++;
}

void fo_mcast_tx_flush(fo_mcast_tx_t *tx)
{
    size_t n = tx->used;
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        const slot_t *s = &tx->slots[i];
        group_t *g = &tx->m->groups[s->group];
        tx->iov[i].iov_base = slot_data(tx, i);
        tx->iov[i].iov_len = fo_dgram_seal(slot_data(tx, i), s->len, s->dseq, g->key);
        memset(&tx->hdr[i], 0, sizeof(tx->hdr[i]));
        tx->hdr[i].msg_hdr.msg_name = &g->dst;
        tx->hdr[i].msg_hdr.msg_namelen = sizeof(g->dst);
        tx->hdr[i].msg_hdr.msg_iov = &tx->iov[i];
        tx->hdr[i].msg_hdr.msg_iovlen = 1;
    }
    size_t done = 0;
    while (done < n) {
        int r = sendmmsg(tx->fd, tx->hdr + done, (unsigned)(n - done), MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {             /* the datagram at `done` was refused */
            FO_STAT_INC(tx->stats, mcast_send_errors);
            done++;
            continue;
        }
        for (size_t k = done; k < done + (size_t)r; k++)
            FO_STAT_ADD(tx->stats, mcast_messages, tx->slots[k].msgs);
        FO_STAT_ADD(tx->stats, mcast_datagrams, (uint64_t)r);
        done += (size_t)r;
    }
    tx->used = 0;
    for (size_t i = 0; i < tx->m->count; i++)
        tx->open[i] = -1;
}
