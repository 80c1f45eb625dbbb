/* peerframe.c -- pack, unpack and check peer frames (see peerframe.h). */
#include <string.h>
#include "frame.h"
#include "peerframe.h"

fo_err_t fo_peer_frame_append(fo_buf_t *out, const Fanout__PeerFrame *f)
{
    size_t n = fanout__peer_frame__get_packed_size(f);
    fo_err_t e = fo_buf_reserve(out, FO_FRAME_HDR + n);
    if (e)
        return e;
    uint8_t *p = fo_buf_tail(out);
    fo_be32_put(p, (uint32_t)fanout__peer_frame__pack(f, p + FO_FRAME_HDR));
    fo_buf_commit(out, FO_FRAME_HDR + n);
    return FO_OK;
}

static int hello_ok(const Fanout__PeerHello *h)
{
    size_t nl = h->node_id ? strlen(h->node_id) : 0;
    return h->has_version && nl >= 1 && nl <= FO_PEER_NODE_MAX && h->has_nonce &&
           h->nonce.len == FO_PEER_NONCE;
}

static int interest_ok(const Fanout__PeerInterest *i)
{
    if (!i->has_seq || !i->has_op || !i->has_id)
        return 0;
    if (i->op == FANOUT__PEER_INTEREST__OP__ADD)
        return i->filter != NULL;
    return i->op == FANOUT__PEER_INTEREST__OP__DEL;
}

static int replayed_ok(const Fanout__PeerReplayed *r)
{
    int gap = r->topic && r->has_gap_first && r->has_gap_last && r->gap_first <= r->gap_last;
    return r->has_conn && r->has_sid && (gap != (r->has_body && r->body.len > 0));
}

static int member_ok(const Fanout__PeerFrame *f)
{
    switch (f->body_case) {
    case FANOUT__PEER_FRAME__BODY_HELLO:
        return hello_ok(f->hello);
    case FANOUT__PEER_FRAME__BODY_AUTH:
        return f->auth->has_mac && f->auth->mac.len == FO_PEER_MAC;
    case FANOUT__PEER_FRAME__BODY_INTEREST:
        return interest_ok(f->interest);
    case FANOUT__PEER_FRAME__BODY_PUBLISH:
        return f->publish->has_frame && f->publish->frame.len > 0;
    case FANOUT__PEER_FRAME__BODY_DELIVER:
        return f->deliver->has_body && f->deliver->body.len > 0 &&
               !f->deliver->queue == !f->deliver->filter;
    case FANOUT__PEER_FRAME__BODY_ACK:
        return f->ack->has_ref;
    case FANOUT__PEER_FRAME__BODY_GAP:
        return f->gap->topic && f->gap->has_first && f->gap->has_last && f->gap->first <= f->gap->last;
    case FANOUT__PEER_FRAME__BODY_REPLAY:
        return f->replay->has_conn && f->replay->has_sid && f->replay->topic &&
               (f->replay->has_first || f->replay->earliest);
    case FANOUT__PEER_FRAME__BODY_REPLAYED:
        return replayed_ok(f->replayed);
    case FANOUT__PEER_FRAME__BODY_REPLAY_END:
        return f->replay_end->has_conn && f->replay_end->has_sid && f->replay_end->topic;
    case FANOUT__PEER_FRAME__BODY_EPOCH:
        return f->epoch->topic && f->epoch->has_seq;
    case FANOUT__PEER_FRAME__BODY_PING:
    case FANOUT__PEER_FRAME__BODY_PONG:
        return 1;
    default:
        return 0;
    }
}

fo_err_t fo_peer_frame_unpack(const uint8_t *body, size_t len, fo_arena_t *arena,
                              Fanout__PeerFrame **out)
{
    Fanout__PeerFrame *f = fanout__peer_frame__unpack(fo_arena_pb(arena), len, body);
    if (!f)
        return FO_ERR_BAD_FRAME;
    if (!member_ok(f))
        return FO_ERR_PROTO;
    *out = f;
    return FO_OK;
}

static size_t put_str(uint8_t *p, uint32_t field, const char *s, size_t n)
{
    size_t k = fo_varint_put(p, (uint64_t)field << 3 | 2);
    k += fo_varint_put(p + k, n);
    memcpy(p + k, s, n);
    return k + n;
}

size_t fo_peer_deliver_head(uint8_t *out, const char *queue, const char *filter, size_t body_len)
{
    size_t ql = queue ? strlen(queue) : 0, fl = filter ? strlen(filter) : 0;
    if (ql > 512 || fl > 512)
        return 0;
    /* PeerDeliver: queue (1), filter (2), body (3) last */
    size_t inner = body_len + 1 + fo_varint_len(body_len);
    if (queue)
        inner += 1 + fo_varint_len(ql) + ql;
    if (filter)
        inner += 1 + fo_varint_len(fl) + fl;
    size_t frame = 1 + fo_varint_len(inner) + inner;      /* PeerFrame.deliver (5) */
    uint8_t *p = out;
    fo_be32_put(p, (uint32_t)frame);
    p += FO_FRAME_HDR;
    p += fo_varint_put(p, 5u << 3 | 2);
    p += fo_varint_put(p, inner);
    if (queue)
        p += put_str(p, 1, queue, ql);
    if (filter)
        p += put_str(p, 2, filter, fl);
    p += fo_varint_put(p, 3u << 3 | 2);
    p += fo_varint_put(p, body_len);
    return (size_t)(p - out);
}
