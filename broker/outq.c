/* outq.c -- per-connection output queue (see outq.h). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "outq.h"
#include "stats.h"

#define NOTICE_LOOKBACK 64   /* entries searched for a notice to extend */

/* A GAP notice's frame bytes sit behind this header, so that a later GAP
 * continuing it can find it and extend it. */
typedef struct gapbuf {
    const struct fo_topic *topic;  /* identity only */
    uint64_t first, last;
    int reason;
    uint32_t name_off, name_len;   /* the topic name inside bytes[] */
    _Alignas(8) uint8_t bytes[];
} gapbuf_t;

static gapbuf_t *gapbuf_of(const fo_out_t *e)
{
    return (gapbuf_t *)(void *)(e->frame - offsetof(gapbuf_t, bytes));
}

void fo_outq_init(fo_outq_t *q) { memset(q, 0, sizeof *q); }

static void entry_free(fo_out_t *e)
{
    if (e->msg)
        fo_msg_unref(e->msg);
    else if (e->gap)
        free(gapbuf_of(e));
    else
        free(e->frame);
}

/* Frame {gap: Gap {topic, first, last, reason}, sid}, encoded directly
 * (test_outq checks protobuf-c reads it back). NULL on out of memory. */
static gapbuf_t *gap_encode(uint32_t sid, const struct fo_topic *topic, const char *name,
                            size_t nlen, uint64_t first, uint64_t last, int reason, uint32_t *len)
{
    size_t inner = 1 + fo_varint_len(nlen) + nlen + 1 + fo_varint_len(first) +
                   1 + fo_varint_len(last) + 1 + fo_varint_len((uint64_t)reason);
    size_t body = 1 + fo_varint_len(inner) + inner + 1 + fo_varint_len(sid);
    gapbuf_t *g = malloc(sizeof *g + FO_FRAME_HDR + body);
    if (!g)
        return NULL;
    *g = (gapbuf_t){ .topic = topic, .first = first, .last = last, .reason = reason };
    uint8_t *p = g->bytes;
    fo_be32_put(p, (uint32_t)body);
    p += FO_FRAME_HDR;
    *p++ = (11u << 3) | 2;                  /* Frame.gap */
    p += fo_varint_put(p, inner);
    *p++ = (1u << 3) | 2;                   /* Gap.topic */
    p += fo_varint_put(p, nlen);
    g->name_off = (uint32_t)(p - g->bytes);
    g->name_len = (uint32_t)nlen;
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = (2u << 3);                       /* Gap.first */
    p += fo_varint_put(p, first);
    *p++ = (3u << 3);                       /* Gap.last */
    p += fo_varint_put(p, last);
    *p++ = (4u << 3);                       /* Gap.reason */
    p += fo_varint_put(p, (uint64_t)reason);
    *p++ = (15u << 3);                      /* Frame.sid */
    p += fo_varint_put(p, sid);
    *len = (uint32_t)(p - g->bytes);
    return g;
}

/* Entry i (0 = head) of the queue. */
static fo_out_t *at(const fo_outq_t *q, uint32_t i)
{
    return &q->ring[(q->head + i) & (q->cap - 1)];
}

/* Among entries [0, end): the latest one of subscription sid, if it is a
 * notice of (topic, reason) ending right before `first` and not partly
 * written; else UINT32_MAX. */
static uint32_t notice_to_extend(const fo_outq_t *q, uint32_t end, uint32_t sid,
                                 const struct fo_topic *topic, uint64_t first, int reason)
{
    uint32_t stop = end > NOTICE_LOOKBACK ? end - NOTICE_LOOKBACK : 0;
    for (uint32_t i = end; i-- > stop;) {
        const fo_out_t *e = at(q, i);
        if (e->sid != sid || (!e->msg && !e->gap))
            continue;                       /* another subscription's, or a control frame */
        if (!e->gap || (i == 0 && q->head_off > 0))
            return UINT32_MAX;
        const gapbuf_t *g = gapbuf_of(e);
        return g->topic == topic && g->reason == reason && g->last + 1 == first ? i : UINT32_MAX;
    }
    return UINT32_MAX;
}

/* Make e (a slot of q) the notice sid/first..last; with `old`, extend that
 * notice (whose bytes e held): its first and name carry over. */
static fo_err_t put_notice(fo_outq_t *q, fo_out_t *e, uint32_t sid, const struct fo_topic *topic,
                           const char *name, size_t nlen, uint64_t first, uint64_t last,
                           int reason, gapbuf_t *old)
{
    uint32_t len;
    gapbuf_t *g = old ? gap_encode(sid, topic, (const char *)old->bytes + old->name_off,
                                   old->name_len, old->first, last, reason, &len)
                      : gap_encode(sid, topic, name, nlen, first, last, reason, &len);
    if (!g)
        return FO_ERR_NOMEM;
    free(old);
    *e = (fo_out_t){ .frame = g->bytes, .len = len, .sid = sid, .gap = 1 };
    q->bytes += len;
    return FO_OK;
}

static uint32_t prefix_len(uint32_t sid)
{
    return FO_FRAME_HDR + 1 + (uint32_t)fo_varint_len(sid);
}

void fo_outq_clear(fo_outq_t *q)
{
    (void)fo_outq_clear_some(q, UINT32_MAX);
}

uint32_t fo_outq_clear_some(fo_outq_t *q, uint32_t n)
{
    for (; n && q->count; n--) {
        entry_free(&q->ring[q->head]);
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
    }
    if (!q->count) {
        free(q->ring);
        fo_outq_init(q);
    }
    return q->count;
}

static fo_out_t *push_slot(fo_outq_t *q)
{
    if (q->count == q->cap) {
        uint32_t ncap = q->cap ? q->cap * 2 : 8;
        fo_out_t *nr = malloc(ncap * sizeof *nr);
        if (!nr)
            return NULL;
        for (uint32_t i = 0; i < q->count; i++)
            nr[i] = q->ring[(q->head + i) & (q->cap - 1)];
        free(q->ring);
        q->ring = nr;
        q->cap = ncap;
        q->head = 0;
    }
    fo_out_t *e = &q->ring[(q->head + q->count) & (q->cap - 1)];
    q->count++;
    return e;
}

fo_err_t fo_outq_push_msg(fo_outq_t *q, fo_msg_t *m, uint32_t sid, int droppable)
{
    fo_out_t *e = push_slot(q);
    if (!e) {
        fo_msg_unref(m);
        return FO_ERR_NOMEM;
    }
    *e = (fo_out_t){ .msg = m, .sid = sid, .droppable = (uint8_t)droppable,
                     .len = prefix_len(sid) + m->shared_len };
    q->bytes += e->len;
    return FO_OK;
}

fo_err_t fo_outq_push_bytes(fo_outq_t *q, uint8_t *frame, uint32_t len)
{
    fo_out_t *e = push_slot(q);
    if (!e) {
        free(frame);
        return FO_ERR_NOMEM;
    }
    *e = (fo_out_t){ .frame = frame, .len = len };
    q->bytes += len;
    return FO_OK;
}

fo_err_t fo_outq_push_frame(fo_outq_t *q, const Fanout__Frame *f)
{
    size_t n = fo_frame_size(f);
    uint8_t *b = malloc(n);
    if (!b)
        return FO_ERR_NOMEM;
    fo_frame_pack(f, b);
    return fo_outq_push_bytes(q, b, (uint32_t)n);
}

fo_err_t fo_outq_push_gap(fo_outq_t *q, uint32_t sid, const struct fo_topic *topic,
                          const char *name, size_t name_len, uint64_t first, uint64_t last,
                          int reason, int *merged)
{
    uint32_t i = notice_to_extend(q, q->count, sid, topic, first, reason);
    if (merged)
        *merged = i != UINT32_MAX;
    if (i != UINT32_MAX) {
        fo_out_t *e = at(q, i);
        q->bytes -= e->len;
        gapbuf_t *old = gapbuf_of(e);
        fo_err_t err = put_notice(q, e, sid, topic, NULL, 0, first, last, reason, old);
        if (err)
            q->bytes += e->len;             /* the old notice stays as it was */
        return err;
    }
    fo_out_t *e = push_slot(q);
    if (!e)
        return FO_ERR_NOMEM;
    fo_err_t err = put_notice(q, e, sid, topic, name, name_len, first, last, reason, NULL);
    if (err)
        q->count--;
    return err;
}

int fo_outq_iov(const fo_outq_t *q, struct iovec *iov, int max, uint8_t *scratch)
{
    return fo_outq_iov_packed(q, iov, max, scratch, NULL, 0);
}

/* Copy up to max wire bytes of entry e, from byte skip of it, into dst;
 * returns the count. */
static size_t copy_entry(const fo_out_t *e, uint32_t skip, uint8_t *dst, size_t max)
{
    size_t n = 0;
    if (e->msg) {
        uint8_t pre[FO_DELIVER_PREFIX_MAX];
        size_t pl = fo_deliver_prefix(pre, e->sid, e->msg->shared_len);
        if (skip < pl) {
            size_t k = pl - skip < max ? pl - skip : max;
            memcpy(dst, pre + skip, k);
            n = k;
            skip = 0;
        } else {
            skip -= (uint32_t)pl;
        }
        size_t k = e->msg->shared_len - skip < max - n ? e->msg->shared_len - skip : max - n;
        memcpy(dst + n, e->msg->shared + skip, k);
        return n + k;
    }
    n = e->len - skip < max ? e->len - skip : max;
    memcpy(dst, e->frame + skip, n);
    return n;
}

size_t fo_outq_copy(const fo_outq_t *q, uint8_t *dst, size_t max)
{
    size_t n = 0;
    uint32_t skip = q->head_off;
    for (uint32_t i = 0; i < q->count && n < max; i++) {
        n += copy_entry(&q->ring[(q->head + i) & (q->cap - 1)], skip, dst + n, max - n);
        skip = 0;
    }
    return n;
}

int fo_outq_iov_packed(const fo_outq_t *q, struct iovec *iov, int max, uint8_t *scratch,
                       uint8_t *pack, size_t packcap)
{
    int n = 0;
    size_t used = 0;
    uint32_t skip = q->head_off;
    for (uint32_t i = 0; i < q->count && n + 2 <= max; i++, skip = 0) {
        const fo_out_t *e = &q->ring[(q->head + i) & (q->cap - 1)];
        size_t wire = e->len - skip;
        if (wire > FO_OUTQ_PACK_MAX || wire > packcap) {   /* by reference */
            if (e->msg) {
                size_t pl = fo_deliver_prefix(scratch, e->sid, e->msg->shared_len);
                if (skip < pl) {
                    iov[n].iov_base = scratch + skip;
                    iov[n++].iov_len = pl - skip;
                    skip = (uint32_t)pl;
                }
                iov[n].iov_base = e->msg->shared + (skip - pl);
                iov[n++].iov_len = e->msg->shared_len - (skip - pl);
                scratch += FO_DELIVER_PREFIX_MAX;
            } else {
                iov[n].iov_base = e->frame + skip;
                iov[n++].iov_len = wire;
            }
            continue;
        }
        if (used + wire > packcap)
            break;
        copy_entry(e, skip, pack + used, wire);
        if (n > 0 && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == pack + used) {
            iov[n - 1].iov_len += wire;       /* the run of small ones goes on */
        } else {
            iov[n].iov_base = pack + used;
            iov[n++].iov_len = wire;
        }
        used += wire;
    }
    return n;
}

void fo_outq_advance(fo_outq_t *q, size_t n)
{
    fo_outq_advance_timed(q, n, 0, NULL);
}

void fo_outq_advance_timed(fo_outq_t *q, size_t n, uint64_t now_ns, fo_delay_hist_t *h)
{
    fo_outq_advance_batched(q, n, now_ns, h, NULL);
}

void fo_outq_advance_batched(fo_outq_t *q, size_t n, uint64_t now_ns, fo_delay_hist_t *h,
                             fo_unref_batch_t *batch)
{
    q->bytes -= n;
    while (q->count) {          /* also pops empty entries at the head */
        fo_out_t *e = &q->ring[q->head];
        size_t left = e->len - q->head_off;
        if (n < left) {
            q->head_off += (uint32_t)n;
            return;
        }
        n -= left;
        if (h && e->msg && !e->msg->replay)
            fo_delay_observe(h, now_ns > e->msg->time_ns ? now_ns - e->msg->time_ns : 0);
        if (batch && e->msg)
            fo_msg_unref_later(batch, e->msg);
        else
            entry_free(e);
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
        q->head_off = 0;
    }
}

/* A run of dropped messages being collected by fo_outq_drop_oldest. */
typedef struct run {
    uint32_t sid, slot;
    const struct fo_topic *topic;
    fo_msg_t *last_msg;       /* a reference: its encoding has the name */
    uint64_t first, last;
    gapbuf_t *extend;         /* the earlier notice it continues, or NULL */
} run_t;

/* Close a run: its notice goes in its slot (new, or the one it extends). */
static void end_run(fo_outq_t *q, run_t *r, fo_dropped_fn cb, void *ud)
{
    size_t nl;
    const char *name = fo_msg_topic(r->last_msg, &nl);
    fo_out_t *e = at(q, r->slot);
    if (put_notice(q, e, r->sid, r->topic, name, nl, r->first, r->last,
                   FANOUT__GAP_REASON__GAP_SLOW_CONSUMER, r->extend)) {
        /* out of memory: the old notice (if any) stays, else an empty slot
         * (popped by advance); the loss is still counted below */
        if (r->extend)
            q->bytes += e->len;
        else
            *e = (fo_out_t){ 0 };
    }
    if (cb)
        cb(ud, r->sid, r->first, r->last, r->extend == NULL);
    fo_msg_unref(r->last_msg);
}

size_t fo_outq_drop_oldest(fo_outq_t *q, uint64_t target, fo_dropped_fn cb, void *ud)
{
    if (q->bytes <= target || q->count == 0)
        return 0;
    /* Compact the survivors in place, oldest first; the head entry stays if
     * it is partly written. A run's first dropped slot becomes its notice,
     * unless it continues an earlier notice of its subscription, which is
     * then extended (keep <= i throughout: nothing unread is overwritten). */
    run_t run;
    int have_run = 0;
    uint32_t keep = 0;
    size_t dropped = 0;
    for (uint32_t i = 0; i < q->count; i++) {
        fo_out_t e = *at(q, i);
        int partly = (i == 0 && q->head_off > 0);
        if (q->bytes > target && e.msg && e.droppable && !partly) {
            q->bytes -= e.len;
            dropped++;
            if (have_run && run.sid == e.sid && run.topic == e.msg->topic &&
                run.last + 1 == e.msg->seq) {
                run.last = e.msg->seq;
                fo_msg_unref(run.last_msg);
                run.last_msg = e.msg;
                continue;
            }
            if (have_run)
                end_run(q, &run, cb, ud);
            run = (run_t){ e.sid, 0, e.msg->topic, e.msg, e.msg->seq, e.msg->seq, NULL };
            uint32_t n = notice_to_extend(q, keep, e.sid, e.msg->topic, e.msg->seq,
                                          FANOUT__GAP_REASON__GAP_SLOW_CONSUMER);
            if (n != UINT32_MAX) {
                fo_out_t *old = at(q, n);
                q->bytes -= old->len;
                run.extend = gapbuf_of(old);
                run.slot = n;
            } else {
                run.slot = keep++;
            }
            have_run = 1;
            continue;
        }
        if (have_run) {
            end_run(q, &run, cb, ud);
            have_run = 0;
        }
        *at(q, keep) = e;
        keep++;
    }
    q->count = keep;
    if (have_run)
        end_run(q, &run, cb, ud);
    return dropped;
}

void fo_outq_drop_unsent(fo_outq_t *q)
{
    uint32_t keep = q->head_off > 0 ? 1 : 0;
    for (uint32_t i = keep; i < q->count; i++) {
        fo_out_t *e = at(q, i);
        q->bytes -= e->len;
        entry_free(e);
    }
    if (q->count > keep)
        q->count = keep;
}

void fo_outq_trim(fo_outq_t *q)
{
    if (q->count == 0 && q->ring) {
        free(q->ring);
        q->ring = NULL;
        q->cap = q->head = 0;
    }
}
