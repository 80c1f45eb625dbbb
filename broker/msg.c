/* msg.c -- refcounted, encoded-once messages (see msg.h).
 *
 * The shared DELIVER part is written by hand rather than through
 * fanout__deliver__pack: we know every field, we want the payload last (so
 * its offset is known) and we want one malloc and one pass. The layout is
 * plain protobuf and test_msg.c checks protobuf-c decodes it to the same
 * fields:
 *
 *   0x32 LEN                      Frame.deliver (field 6, length-delimited)
 *     0x0a LEN topic              Deliver.topic   (1)
 *     0x10 VARINT seq             Deliver.seq     (2)
 *     0x20 VARINT time_ns         Deliver.time_ns (4)
 *     0x28 0x01                   Deliver.replay  (5), replays only
 *     0x1a LEN payload            Deliver.payload (3)
 */
#include <stdlib.h>
#include <string.h>
#include "msg.h"
#include "frame.h"

static int charge(fo_mem_t *mem, uint64_t n)
{
    uint64_t limit = atomic_load_explicit(&mem->limit, memory_order_relaxed);
    uint64_t used = atomic_fetch_add_explicit(&mem->used, n, memory_order_relaxed);
    if (limit && used + n > limit) {
        atomic_fetch_sub_explicit(&mem->used, n, memory_order_relaxed);
        return -1;
    }
    return 0;
}

fo_msg_t *fo_msg_new(fo_mem_t *mem, struct fo_topic *topic, const char *name,
                     size_t name_len, uint64_t seq, uint64_t time_ns,
                     const uint8_t *payload, size_t payload_len, int replay)
{
    size_t inner = 1 + fo_varint_len(name_len) + name_len
                 + 1 + fo_varint_len(seq)
                 + 1 + fo_varint_len(time_ns)
                 + (replay ? 2 : 0)
                 + 1 + fo_varint_len(payload_len) + payload_len;
    size_t shared = 1 + fo_varint_len(inner) + inner;
    size_t total = sizeof(fo_msg_t) + shared;
    if (shared > UINT32_MAX || charge(mem, total))
        return NULL;
    fo_msg_t *m = malloc(total);
    if (!m) {
        atomic_fetch_sub_explicit(&mem->used, total, memory_order_relaxed);
        return NULL;
    }
    atomic_init(&m->refs, 1);
    m->topic = topic;
    m->mem = mem;
    m->seq = seq;
    m->time_ns = time_ns;
    m->charged = (uint32_t)total;
    m->replay = (uint8_t)(replay != 0);
    uint8_t *p = m->shared;
    *p++ = (6u << 3) | 2;
    p += fo_varint_put(p, inner);
    *p++ = (1u << 3) | 2;
    p += fo_varint_put(p, name_len);
    memcpy(p, name, name_len);
    p += name_len;
    *p++ = (2u << 3) | 0;
    p += fo_varint_put(p, seq);
    *p++ = (4u << 3) | 0;
    p += fo_varint_put(p, time_ns);
    if (replay) {
        *p++ = (5u << 3) | 0;
        *p++ = 1;
    }
    *p++ = (3u << 3) | 2;
    p += fo_varint_put(p, payload_len);
    m->payload_off = (uint32_t)(p - m->shared);
    m->payload_len = (uint32_t)payload_len;
    if (payload_len)
        memcpy(p, payload, payload_len);
    m->shared_len = (uint32_t)shared;
    return m;
}

const char *fo_msg_topic(const fo_msg_t *m, size_t *len)
{
    const uint8_t *p = m->shared + 1;
    uint64_t v;
    p += fo_varint_get(p, 10, &v);          /* inner length */
    p++;                                    /* topic key    */
    p += fo_varint_get(p, 10, &v);
    *len = (size_t)v;
    return (const char *)p;
}

fo_msg_t *fo_msg_replay_copy(const fo_msg_t *m)
{
    size_t tl;
    const char *t = fo_msg_topic(m, &tl);
    return fo_msg_new(m->mem, m->topic, t, tl, m->seq, m->time_ns,
                      fo_msg_payload(m), m->payload_len, 1);
}

void fo_msg_free(fo_msg_t *m)
{
    atomic_fetch_sub_explicit(&m->mem->used, m->charged, memory_order_relaxed);
    free(m);
}
