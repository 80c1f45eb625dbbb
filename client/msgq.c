/* msgq.c -- bounded message FIFO (see msgq.h).
 *
 * Record layout, native endian (never leaves the process):
 *   u32 total | u32 topic_len | u32 payload_len | u32 replay | u64 seq |
 *   u64 time_ns | topic bytes | NUL | payload bytes
 */
#include <string.h>
#include "msgq.h"

typedef struct rec_hdr {
    uint32_t total, topic_len, payload_len, replay;
    uint64_t seq, time_ns;
} rec_hdr_t;

void fo__msgq_init(fo__msgq_t *q, size_t max_bytes)
{
    memset(q, 0, sizeof *q);
    q->max_bytes = max_bytes ? max_bytes : (16u << 20);
}

void fo__msgq_destroy(fo__msgq_t *q)
{
    if (!q)
        return;
    fo_buf_free(&q->q);
    fo_buf_free(&q->cur);
    q->count = 0;
}

fo_err_t fo__msgq_push(fo__msgq_t *q, const fo_msg_t *m)
{
    size_t total = sizeof(rec_hdr_t) + m->topic_len + 1 + m->payload_len;
    if (total > UINT32_MAX || m->topic_len > UINT32_MAX)
        return FO_ERR_RANGE;
    if (q->count && fo_buf_len(&q->q) + total > q->max_bytes)
        return FO_ERR_BUSY;
    fo_err_t err = fo_buf_reserve(&q->q, total);
    if (err)
        return err;
    rec_hdr_t h = { (uint32_t)total, (uint32_t)m->topic_len,
                    (uint32_t)m->payload_len, (uint32_t)(m->replay != 0),
                    m->seq, m->time_ns };
    uint8_t *p = fo_buf_tail(&q->q);
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    memcpy(p, m->topic, m->topic_len);
    p[m->topic_len] = 0;
    p += m->topic_len + 1;
    if (m->payload_len)
        memcpy(p, m->payload, m->payload_len);
    fo_buf_commit(&q->q, total);
    q->count++;
    return FO_OK;
}

fo_err_t fo__msgq_pop(fo__msgq_t *q, fo_msg_t *out)
{
    if (!q->count)
        return FO_ERR_AGAIN;
    rec_hdr_t h;
    memcpy(&h, fo_buf_head(&q->q), sizeof h);
    q->cur.start = q->cur.end = 0;
    fo_err_t err = fo_buf_append(&q->cur, fo_buf_head(&q->q), h.total);
    if (err)
        return err;
    fo_buf_consume(&q->q, h.total);
    q->count--;
    const uint8_t *p = fo_buf_head(&q->cur) + sizeof h;
    out->topic = (const char *)p;
    out->topic_len = h.topic_len;
    out->payload = p + h.topic_len + 1;
    out->payload_len = h.payload_len;
    out->seq = h.seq;
    out->time_ns = h.time_ns;
    out->replay = (int)h.replay;
    return FO_OK;
}
