/* outq.c -- per-connection output queue (see outq.h). */
#include <stdlib.h>
#include <string.h>
#include "outq.h"

void fo_outq_init(fo_outq_t *q) { memset(q, 0, sizeof *q); }

static void entry_free(fo_out_t *e)
{
    if (e->msg)
        fo_msg_unref(e->msg);
    else
        free(e->frame);
}

static uint32_t prefix_len(uint32_t sid)
{
    return FO_FRAME_HDR + 1 + (uint32_t)fo_varint_len(sid);
}

void fo_outq_clear(fo_outq_t *q)
{
    for (uint32_t i = 0; i < q->count; i++)
        entry_free(&q->ring[(q->head + i) & (q->cap - 1)]);
    free(q->ring);
    fo_outq_init(q);
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
    e->msg = m;
    e->frame = NULL;
    e->sid = sid;
    e->droppable = (uint8_t)droppable;
    e->len = prefix_len(sid) + m->shared_len;
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

int fo_outq_iov(const fo_outq_t *q, struct iovec *iov, int max, uint8_t *scratch)
{
    int n = 0;
    uint32_t skip = q->head_off;
    for (uint32_t i = 0; i < q->count && n + 2 <= max; i++) {
        const fo_out_t *e = &q->ring[(q->head + i) & (q->cap - 1)];
        if (e->msg) {
            size_t pl = fo_deliver_prefix(scratch, e->sid, e->msg->shared_len);
            if (skip < pl) {
                iov[n].iov_base = scratch + skip;
                iov[n++].iov_len = pl - skip;
                iov[n].iov_base = e->msg->shared;
                iov[n++].iov_len = e->msg->shared_len;
            } else {
                iov[n].iov_base = e->msg->shared + (skip - pl);
                iov[n++].iov_len = e->msg->shared_len - (skip - pl);
            }
            scratch += FO_DELIVER_PREFIX_MAX;
        } else {
            iov[n].iov_base = e->frame + skip;
            iov[n++].iov_len = e->len - skip;
        }
        skip = 0;
    }
    return n;
}

size_t fo_outq_copy(const fo_outq_t *q, uint8_t *dst, size_t max)
{
    size_t n = 0;
    uint32_t skip = q->head_off;
    for (uint32_t i = 0; i < q->count && n < max; i++) {
        const fo_out_t *e = &q->ring[(q->head + i) & (q->cap - 1)];
        if (e->msg) {
            uint8_t pre[FO_DELIVER_PREFIX_MAX];
            size_t pl = fo_deliver_prefix(pre, e->sid, e->msg->shared_len);
            if (skip < pl) {
                size_t k = pl - skip < max - n ? pl - skip : max - n;
                memcpy(dst + n, pre + skip, k);
                n += k;
                skip = 0;
            } else {
                skip -= (uint32_t)pl;
            }
            size_t k = e->msg->shared_len - skip < max - n ? e->msg->shared_len - skip : max - n;
            memcpy(dst + n, e->msg->shared + skip, k);
            n += k;
        } else {
            size_t k = e->len - skip < max - n ? e->len - skip : max - n;
            memcpy(dst + n, e->frame + skip, k);
            n += k;
        }
        skip = 0;
    }
    return n;
}

void fo_outq_advance(fo_outq_t *q, size_t n)
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
        entry_free(e);
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
        q->head_off = 0;
    }
}

/* Close a run: fill its placeholder slot with the callback's frame. */
static void end_run(fo_outq_t *q, fo_dropped_t *run, uint32_t slot, fo_dropped_fn cb, void *ud)
{
    uint32_t len = 0;
    uint8_t *frame = cb(ud, run, &len);
    fo_msg_unref(run->last_msg);
    fo_out_t *e = &q->ring[(q->head + slot) & (q->cap - 1)];
    *e = (fo_out_t){ .frame = frame, .len = frame ? len : 0 };
    q->bytes += e->len;
}

size_t fo_outq_drop_oldest(fo_outq_t *q, uint64_t target, fo_dropped_fn cb, void *ud)
{
    if (q->bytes <= target || q->count == 0)
        return 0;
    /* Compact the survivors in place, oldest first; the head entry stays if
     * it is partly written. A run's first dropped slot becomes its notice
     * (keep <= i throughout, so nothing unread is overwritten). */
    fo_dropped_t run = {0};
    int have_run = 0;
    uint32_t run_slot = 0, keep = 0;
    size_t dropped = 0;
    for (uint32_t i = 0; i < q->count; i++) {
        fo_out_t e = q->ring[(q->head + i) & (q->cap - 1)];
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
                end_run(q, &run, run_slot, cb, ud);
            run = (fo_dropped_t){ e.sid, e.msg->topic, e.msg, e.msg->seq, e.msg->seq };
            have_run = 1;
            run_slot = keep++;
            continue;
        }
        if (have_run) {
            end_run(q, &run, run_slot, cb, ud);
            have_run = 0;
        }
        q->ring[(q->head + keep) & (q->cap - 1)] = e;
        keep++;
    }
    q->count = keep;
    if (have_run)
        end_run(q, &run, run_slot, cb, ud);
    return dropped;
}

void fo_outq_drop_unsent(fo_outq_t *q)
{
    uint32_t keep = q->head_off > 0 ? 1 : 0;
    for (uint32_t i = keep; i < q->count; i++) {
        fo_out_t *e = &q->ring[(q->head + i) & (q->cap - 1)];
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
