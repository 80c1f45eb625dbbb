/* msgq.c -- bounded message FIFO (see msgq.h).
 *
 * Record layout, native endian (never leaves the process):
 *   u32 total | u32 topic_len | u32 payload_len | u32 replay | u64 seq |
 *   u64 time_ns | u32 reply_len (+1: 0 = none) | u32 nheaders |
 *   topic bytes | NUL | payload bytes | [reply | NUL] |
 *   nheaders x { u32 key_len | u32 value_len | key | NUL | value }
 */
#include <stdlib.h>
#include <string.h>
#include "msgq.h"

typedef struct rec_hdr {
    uint32_t total, topic_len, payload_len, replay;
    uint64_t seq, time_ns;
    uint32_t reply_len, nheaders;
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
    free(q->hdrs);
    q->hdrs = NULL;
    q->hdrs_cap = 0;
    q->count = 0;
}

static uint8_t *put(uint8_t *p, const void *v, size_t n)
{
    if (n)
        memcpy(p, v, n);
    return p + n;
}

fo_err_t fo__msgq_push(fo__msgq_t *q, const fo_msg_t *m)
{
    size_t rl = m->reply ? strlen(m->reply) + 1 : 0;
    size_t total = sizeof(rec_hdr_t) + m->topic_len + 1 + m->payload_len + rl;
    for (size_t i = 0; i < m->nheaders; i++)
        total += 8 + strlen(m->headers[i].key) + 1 + m->headers[i].value_len;
    if (total > UINT32_MAX || m->nheaders > UINT32_MAX)
        return FO_ERR_RANGE;
    if (q->count && fo_buf_len(&q->q) + total > q->max_bytes)
        return FO_ERR_BUSY;
    fo_err_t err = fo_buf_reserve(&q->q, total);
    if (err)
        return err;
    rec_hdr_t h = { (uint32_t)total, (uint32_t)m->topic_len,
                    (uint32_t)m->payload_len, (uint32_t)(m->replay != 0),
                    m->seq, m->time_ns, (uint32_t)rl, (uint32_t)m->nheaders };
    uint8_t *p = put(fo_buf_tail(&q->q), &h, sizeof h);
    p = put(p, m->topic, m->topic_len);
    *p++ = 0;
    p = put(p, m->payload, m->payload_len);
    p = put(p, m->reply, rl);
    for (size_t i = 0; i < m->nheaders; i++) {
        const fo_header_t *x = &m->headers[i];
        uint32_t kv[2] = { (uint32_t)strlen(x->key), (uint32_t)x->value_len };
        p = put(p, kv, sizeof kv);
        p = put(p, x->key, kv[0] + 1);
        p = put(p, x->value, x->value_len);
    }
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
    if (h.nheaders > q->hdrs_cap) {
        fo_header_t *nh = realloc(q->hdrs, h.nheaders * sizeof *nh);
        if (!nh)
            return FO_ERR_NOMEM;
        q->hdrs = nh;
        q->hdrs_cap = h.nheaders;
    }
    q->cur.start = q->cur.end = 0;
    fo_err_t err = fo_buf_append(&q->cur, fo_buf_head(&q->q), h.total);
    if (err)
        return err;
    fo_buf_consume(&q->q, h.total);
    q->count--;
    const uint8_t *p = fo_buf_head(&q->cur) + sizeof h;
    out->topic = (const char *)p;
    out->topic_len = h.topic_len;
    p += h.topic_len + 1;
    out->payload = p;
    out->payload_len = h.payload_len;
    p += h.payload_len;
    out->seq = h.seq;
    out->time_ns = h.time_ns;
    out->replay = (int)h.replay;
    out->reply = h.reply_len ? (const char *)p : NULL;
    p += h.reply_len;
    for (uint32_t i = 0; i < h.nheaders; i++) {
        uint32_t kv[2];
        memcpy(kv, p, sizeof kv);
        p += sizeof kv;
        q->hdrs[i] = (fo_header_t){ (const char *)p, p + kv[0] + 1, kv[1] };
        p += kv[0] + 1 + kv[1];
    }
    out->headers = h.nheaders ? q->hdrs : NULL;
    out->nheaders = h.nheaders;
    return FO_OK;
}
