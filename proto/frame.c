/* frame.c -- length-prefixed protobuf frame codec (see frame.h).
 *
 * The decoder never trusts a length before checking it: the 4 header bytes
 * are examined first, and a zero or over-limit length is reported before a
 * single byte is reserved for the body. Whole frames are cut in place; the
 * buffer slides its unread bytes forward only when room runs out, so a batch
 * of small frames costs no copies at all.
 */
#include <string.h>
#include "frame.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fo_varint_get_slow's word-at-a-time path assumes a little-endian host"
#endif

/* ------------------------------------------------------------ varints */

/* Bytes 0..k-1 of a little-endian word, 7 payload bits each, squeezed
 * into one value (k <= 8): three mask-and-shift steps instead of a loop. */
static uint64_t squeeze(uint64_t x, unsigned k)
{
    if (k < 8)
        x &= (1ull << (8 * k)) - 1;
    x &= 0x7f7f7f7f7f7f7f7full;
    x = (x & 0x007f007f007f007full) | ((x & 0x7f007f007f007f00ull) >> 1);
    x = (x & 0x00003fff00003fffull) | ((x & 0x3fff00003fff0000ull) >> 2);
    x = (x & 0x000000000fffffffull) | ((x & 0x0fffffff00000000ull) >> 4);
    return x;
}

size_t fo_varint_get_slow(const uint8_t *p, size_t n, uint64_t *v)
{
    if (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);          /* little-endian hosts (x86-64, arm64) */
        uint64_t stops = ~w & 0x8080808080808080ull;
        if (stops) {               /* ends within the first 8 bytes */
            unsigned k = (unsigned)__builtin_ctzll(stops) / 8 + 1;
            *v = squeeze(w, k);
            return k;
        }
        if (n >= 9 && !(p[8] & 0x80)) {   /* 9 bytes: e.g. a time in ns */
            *v = squeeze(w, 8) | (uint64_t)p[8] << 56;
            return 9;
        }
    }
    uint64_t r = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (i == 9 && p[i] > 1)
                return 0;          /* more than 64 bits */
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ decoder */

void fo_decoder_init(fo_decoder_t *d, uint32_t max_frame)
{
    memset(d, 0, sizeof *d);
    d->max_frame = max_frame ? max_frame : FO_MAX_FRAME_DEFAULT;
}

void fo_decoder_destroy(fo_decoder_t *d)
{
    if (d)
        fo_buf_free(&d->buf);
}

fo_err_t fo_decoder_feed(fo_decoder_t *d, const void *p, size_t n)
{
    return fo_buf_append(&d->buf, p, n);
}

size_t fo_decoder_want(const fo_decoder_t *d)
{
    size_t have = fo_buf_len(&d->buf);
    if (have < FO_FRAME_HDR)
        return FO_FRAME_HDR - have;
    uint32_t len = fo_be32_get(fo_buf_head(&d->buf));
    if (len == 0 || len > d->max_frame)
        return 1;                  /* fo_decoder_next reports it */
    size_t total = FO_FRAME_HDR + (size_t)len;
    return total > have ? total - have : 1;
}

fo_err_t fo_decoder_next(fo_decoder_t *d, const uint8_t **body, size_t *len)
{
    size_t have = fo_buf_len(&d->buf);
    if (have < FO_FRAME_HDR)
        return FO_ERR_AGAIN;
    const uint8_t *h = fo_buf_head(&d->buf);
    uint32_t n = fo_be32_get(h);
    if (n == 0 || n > d->max_frame) {
        *len = n;
        return FO_ERR_FRAME_SIZE;
    }
    if (have - FO_FRAME_HDR < n)
        return FO_ERR_AGAIN;
    *body = h + FO_FRAME_HDR;
    *len = n;
    fo_buf_consume(&d->buf, FO_FRAME_HDR + (size_t)n);
    /* consume() rewinds the cursors of an emptied buffer but leaves the
     * bytes in place, so *body stays valid until the next reserve/feed. */
    d->frames++;
    return FO_OK;
}

fo_err_t fo_decoder_finish(const fo_decoder_t *d)
{
    return fo_buf_len(&d->buf) ? FO_ERR_TRUNCATED : FO_OK;
}

fo_err_t fo_frame_unpack(const uint8_t *body, size_t len, fo_arena_t *arena,
                         Fanout__Frame **out)
{
    Fanout__Frame *f = fanout__frame__unpack(fo_arena_pb(arena), len, body);
    if (!f)
        return FO_ERR_BAD_FRAME;
    *out = f;
    return FO_OK;
}

/* ------------------------------------------------------- PUBLISH fast path */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Read one field key; returns bytes used or 0. */
static size_t read_key(const uint8_t *p, size_t n, uint32_t *field, int *wt)
{
    uint64_t k;
    size_t used = fo_varint_get(p, n, &k);
    if (!used || (k >> 3) == 0 || (k >> 3) > 0x1fffffff)
        return 0;
    *field = (uint32_t)(k >> 3);
    *wt = (int)(k & 7);
    return used;
}

/* Length-delimited value: returns bytes of the length varint, 0 if bad. */
static size_t read_len(const uint8_t *p, size_t n, const uint8_t **val,
                       size_t *vlen)
{
    uint64_t l;
    size_t used = fo_varint_get(p, n, &l);
    if (!used || l > n - used)
        return 0;
    *val = p + used;
    *vlen = (size_t)l;
    return used;
}

/* The general peeks' walk over a Frame's top-level fields: exactly one
 * length-delimited `body_field`, at most one Frame.req and, when sid is
 * given, at most one Frame.sid (within uint32). Returns 1 with *sub set, 0
 * for anything else (left to protobuf-c), -1 when the bytes are not valid
 * protobuf. */
static int scan_frame(const uint8_t *b, size_t len, uint32_t body_field,
                      const uint8_t **sub, size_t *sub_len, uint64_t *req, uint32_t *sid)
{
    int seen_req = 0, seen_sid = 0;
    *sub = NULL;
    *req = 0;
    if (sid)
        *sid = 0;
    for (size_t i = 0; i < len;) {
        uint32_t field;
        int wt;
        uint64_t x;
        size_t k = read_key(b + i, len - i, &field, &wt);
        if (!k)
            return -1;
        i += k;
        if (field == body_field && wt == WT_LEN && !*sub) {
            size_t l = read_len(b + i, len - i, sub, sub_len);
            if (!l)
                return -1;
            i += l + *sub_len;
        } else if (field == 14 && wt == WT_VARINT && !seen_req++) {
            size_t l = fo_varint_get(b + i, len - i, req);
            if (!l)
                return -1;
            i += l;
        } else if (sid && field == 15 && wt == WT_VARINT && !seen_sid++) {
            size_t l = fo_varint_get(b + i, len - i, &x);
            if (!l)
                return -1;
            if (x > UINT32_MAX)
                return 0;                 /* protobuf-c truncates; let it */
            *sid = (uint32_t)x;
            i += l;
        } else {
            return 0;                     /* anything unusual */
        }
    }
    return *sub != NULL;
}

/* The layout every PUBLISH encoder produces (protobuf-c and libfanout
 * alike): Frame.publish {topic, payload} and maybe Frame.req after it.
 * Matched directly; anything else takes the general loop below. */
static int peek_canonical(const uint8_t *b, size_t len, fo_publish_view_t *v)
{
    uint64_t pl, tl, yl;
    size_t i = 1, k;
    if (len < 4 || b[0] != ((3u << 3) | WT_LEN))
        return 0;
    if (!(k = fo_varint_get(b + i, len - i, &pl)) || pl > len - i - k)
        return 0;
    i += k;
    size_t end = i + (size_t)pl;
    if (i >= end || b[i] != ((1u << 3) | WT_LEN))
        return 0;
    i++;
    if (!(k = fo_varint_get(b + i, end - i, &tl)) || tl > end - i - k)
        return 0;
    i += k;
    v->topic = (const char *)b + i;
    v->topic_len = (size_t)tl;
    i += (size_t)tl;
    v->payload = (const uint8_t *)"";
    v->payload_len = 0;
    if (i < end) {
        if (b[i] != ((2u << 3) | WT_LEN))
            return 0;
        i++;
        if (!(k = fo_varint_get(b + i, end - i, &yl)) || yl != end - i - k)
            return 0;
        v->payload = b + i + k;
        v->payload_len = (size_t)yl;
    }
    v->req = 0;
    if (end == len)
        return 1;
    if (b[end] != ((14u << 3) | WT_VARINT))
        return 0;
    k = fo_varint_get(b + end + 1, len - end - 1, &v->req);
    return k && end + 1 + k == len;
}

fo_err_t fo_publish_peek(const uint8_t *body, size_t len, fo_publish_view_t *v)
{
    if (peek_canonical(body, len, v))
        return FO_OK;
    const uint8_t *pub;
    size_t pub_len;
    int r = scan_frame(body, len, 3, &pub, &pub_len, &v->req, NULL);
    if (r <= 0)
        return r < 0 ? FO_ERR_BAD_FRAME : FO_ERR_AGAIN;
    int seen_topic = 0, seen_payload = 0;
    v->payload = (const uint8_t *)"";
    v->payload_len = 0;
    for (size_t i = 0; i < pub_len;) {
        uint32_t field;
        int wt;
        size_t k = read_key(pub + i, pub_len - i, &field, &wt);
        if (!k)
            return FO_ERR_BAD_FRAME;
        i += k;
        const uint8_t *val;
        size_t vlen, l;
        if (wt != WT_LEN || (field != 1 && field != 2))
            return FO_ERR_AGAIN;
        if (!(l = read_len(pub + i, pub_len - i, &val, &vlen)))
            return FO_ERR_BAD_FRAME;
        i += l + vlen;
        if (field == 1) {
            if (seen_topic++)
                return FO_ERR_AGAIN;
            v->topic = (const char *)val;
            v->topic_len = vlen;
        } else {
            if (seen_payload++)
                return FO_ERR_AGAIN;
            v->payload = val;
            v->payload_len = vlen;
        }
    }
    return seen_topic ? FO_OK : FO_ERR_AGAIN;
}

/* ------------------------------------------------------- NUL in strings */

/* Walk a message of type `desc` in b[0..len): the first string field, at
 * any depth, holding a NUL byte. protobuf-c hands strings over as C
 * strings, cut at the NUL, so this is the only place it can be seen. */
static const ProtobufCFieldDescriptor *nul_in(const ProtobufCMessageDescriptor *desc,
                                              const uint8_t *b, size_t len, int depth)
{
    for (size_t i = 0; i < len;) {
        uint32_t field;
        int wt;
        uint64_t x;
        size_t k = read_key(b + i, len - i, &field, &wt);
        if (!k)
            return NULL;
        i += k;
        if (wt == 0) {
            if (!(k = fo_varint_get(b + i, len - i, &x)))
                return NULL;
            i += k;
        } else if (wt == 1 || wt == 5) {
            i += wt == 1 ? 8 : 4;
        } else if (wt == 2) {
            const uint8_t *val;
            size_t vlen;
            if (!(k = read_len(b + i, len - i, &val, &vlen)))
                return NULL;
            i += k + vlen;
            const ProtobufCFieldDescriptor *fd =
                protobuf_c_message_descriptor_get_field(desc, field);
            if (!fd)
                continue;
            if (fd->type == PROTOBUF_C_TYPE_STRING && memchr(val, 0, vlen))
                return fd;
            if (fd->type == PROTOBUF_C_TYPE_MESSAGE && depth < 8) {
                const ProtobufCFieldDescriptor *in = nul_in(fd->descriptor, val, vlen, depth + 1);
                if (in)
                    return in;
            }
        } else {
            return NULL;                  /* groups: protobuf-c refused them */
        }
    }
    return NULL;
}

const ProtobufCFieldDescriptor *fo_frame_nul_string(const uint8_t *body, size_t len)
{
    return nul_in(&fanout__frame__descriptor, body, len, 0);
}

int fo_field_is_topic(const ProtobufCFieldDescriptor *fd)
{
    return fd && (!strcmp(fd->name, "topic") || !strcmp(fd->name, "filter"));
}

/* ------------------------------------------------------------ encoder */

size_t fo_frame_size(const Fanout__Frame *f)
{
    return FO_FRAME_HDR + fanout__frame__get_packed_size(f);
}

size_t fo_frame_pack(const Fanout__Frame *f, uint8_t *out)
{
    size_t n = fanout__frame__pack(f, out + FO_FRAME_HDR);
    fo_be32_put(out, (uint32_t)n);
    return FO_FRAME_HDR + n;
}

fo_err_t fo_frame_append(fo_buf_t *b, const Fanout__Frame *f)
{
    size_t n = fo_frame_size(f);
    fo_err_t err = fo_buf_reserve(b, n);
    if (err)
        return err;
    fo_buf_commit(b, fo_frame_pack(f, fo_buf_tail(b)));
    return FO_OK;
}

fo_err_t fo_frame_pack_iov(const Fanout__Frame *f, uint8_t hdr[FO_FRAME_HDR],
                           uint8_t *body, size_t cap, struct iovec iov[2])
{
    size_t n = fanout__frame__get_packed_size(f);
    if (n > cap)
        return FO_ERR_RANGE;
    fanout__frame__pack(f, body);
    fo_be32_put(hdr, (uint32_t)n);
    iov[0].iov_base = hdr;
    iov[0].iov_len = FO_FRAME_HDR;
    iov[1].iov_base = body;
    iov[1].iov_len = n;
    return FO_OK;
}

/* One field of an exact layout at b[*i], below end: key byte `tag`, then
 * a varint (into *v) or a length-delimited value (*p, *n, fitting before
 * end). 1 and *i moved past it, or 0 when the bytes are anything else. */
static inline int want_varint(const uint8_t *b, size_t end, size_t *i, uint8_t tag, uint64_t *v)
{
    size_t k;
    if (*i >= end || b[*i] != tag || !(k = fo_varint_get(b + *i + 1, end - *i - 1, v)))
        return 0;
    *i += 1 + k;
    return 1;
}

static inline int want_bytes(const uint8_t *b, size_t end, size_t *i, uint8_t tag,
                             const uint8_t **p, size_t *n)
{
    uint64_t l;
    size_t at = *i;
    if (!want_varint(b, end, &at, tag, &l) || l > end - at)
        return 0;
    *p = b + at;
    *n = (size_t)l;
    *i = at + (size_t)l;
    return 1;
}

#define TAG_DELIVER ((6u << 3) | WT_LEN)
#define TAG_SID     ((15u << 3) | WT_VARINT)

static size_t header_len(const Fanout__Header *h)
{
    size_t kl = h->key ? strlen(h->key) : 0, n = 0;
    if (h->key)
        n += 1 + fo_varint_len(kl) + kl;
    if (h->has_value)
        n += 1 + fo_varint_len(h->value.len) + h->value.len;
    return n;
}

static size_t deliver_inner_len(const fo_deliver_fields_t *f)
{
    size_t n = 1 + fo_varint_len(f->topic_len) + f->topic_len
             + 1 + fo_varint_len(f->seq)
             + 1 + fo_varint_len(f->time_ns)
             + (f->replay ? 2 : 0)
             + 1 + fo_varint_len(f->payload_len) + f->payload_len;
    if (f->reply)
        n += 1 + fo_varint_len(f->reply_len) + f->reply_len;
    for (size_t i = 0; i < f->n_headers; i++) {
        size_t hl = header_len(f->headers[i]);
        n += 1 + fo_varint_len(hl) + hl;
    }
    return n;
}

size_t fo_deliver_shared_len(const fo_deliver_fields_t *f)
{
    size_t inner = deliver_inner_len(f);
    return 1 + fo_varint_len(inner) + inner;
}

static uint8_t *put_bytes(uint8_t *p, uint8_t tag, const void *v, size_t n)
{
    *p++ = tag;
    p += fo_varint_put(p, n);
    if (n)
        memcpy(p, v, n);
    return p + n;
}

size_t fo_deliver_write_shared(uint8_t *out, const fo_deliver_fields_t *f)
{
    uint8_t *p = out;
    *p++ = TAG_DELIVER;
    p += fo_varint_put(p, deliver_inner_len(f));
    p = put_bytes(p, (1u << 3) | WT_LEN, f->topic, f->topic_len);
    *p++ = (2u << 3) | WT_VARINT;
    p += fo_varint_put(p, f->seq);
    *p++ = (4u << 3) | WT_VARINT;
    p += fo_varint_put(p, f->time_ns);
    if (f->replay) {
        *p++ = (5u << 3) | WT_VARINT;
        *p++ = 1;
    }
    if (f->reply)
        p = put_bytes(p, (6u << 3) | WT_LEN, f->reply, f->reply_len);
    for (size_t i = 0; i < f->n_headers; i++) {
        const Fanout__Header *h = f->headers[i];
        *p++ = (7u << 3) | WT_LEN;
        p += fo_varint_put(p, header_len(h));
        if (h->key)
            p = put_bytes(p, (1u << 3) | WT_LEN, h->key, strlen(h->key));
        if (h->has_value)
            p = put_bytes(p, (2u << 3) | WT_LEN, h->value.data, h->value.len);
    }
    p = put_bytes(p, (3u << 3) | WT_LEN, f->payload, f->payload_len);
    return (size_t)(p - out);
}

size_t fo_deliver_replay_encode(uint8_t *dst, const uint8_t *src, size_t src_len)
{
    /* src: TAG_DELIVER, inner length, topic, seq, time_ns, rest...; the
     * flag goes after time_ns (the payload stays last) */
    uint64_t inner, v;
    size_t i = 1, k;
    if (src_len < 2 || src[0] != TAG_DELIVER || !(k = fo_varint_get(src + 1, src_len - 1, &inner)) ||
        inner != src_len - 1 - k)
        return 0;
    i += k;
    size_t body = i;
    const uint8_t *t;
    size_t tl;
    if (!want_bytes(src, src_len, &i, (1u << 3) | WT_LEN, &t, &tl) ||
        !want_varint(src, src_len, &i, (2u << 3) | WT_VARINT, &v) ||
        !want_varint(src, src_len, &i, (4u << 3) | WT_VARINT, &v))
        return 0;
    uint8_t *p = dst;
    *p++ = TAG_DELIVER;
    p += fo_varint_put(p, inner + 2);
    memcpy(p, src + body, i - body);
    p += i - body;
    *p++ = (5u << 3) | WT_VARINT;
    *p++ = 1;
    memcpy(p, src + i, src_len - i);
    return (size_t)(p - dst) + (src_len - i);
}

size_t fo_deliver_prefix(uint8_t *out, uint32_t sid, size_t shared_len)
{
    uint8_t *p = out + FO_FRAME_HDR;
    size_t n = 0;
    p[n++] = TAG_SID;
    n += fo_varint_put(p + n, sid);
    fo_be32_put(out, (uint32_t)(n + shared_len));
    return FO_FRAME_HDR + n;
}

/* ------------------------------------------------------- DELIVER fast path */

/* Deliver.reply and the Deliver.headers fields at b[*i] (fanoutd's
 * layout: both before the payload). 0 when not in that form, or when the
 * reply address holds a NUL (protobuf-c would cut it short). */
static int deliver_extras(const uint8_t *b, size_t end, size_t *i, fo_deliver_view_t *v)
{
    const uint8_t *x;
    size_t xl;
    v->reply_len = 0;
    if (want_bytes(b, end, i, (6u << 3) | WT_LEN, &x, &xl)) {
        if (memchr(x, 0, xl))
            return 0;
        v->reply = (const char *)x;
        v->reply_len = xl;
    }
    size_t hs = *i;
    while (want_bytes(b, end, i, (7u << 3) | WT_LEN, &x, &xl))
        v->nheaders++;
    v->headers = v->nheaders ? b + hs : NULL;
    v->headers_len = *i - hs;
    return 1;
}

/* Anything the view does not understand, malformed bytes included, is
 * left to protobuf-c (FO_ERR_AGAIN): it alone decides what is bad. */
/* The layout fanoutd writes (broker/msg.c + fo_deliver_prefix): Frame.sid,
 * then Frame.deliver {topic, seq, time_ns, [replay], [reply], [headers...],
 * payload}, the payload ending the frame. Matched directly; anything else
 * takes the general loop below. Absent reply and headers cost one byte
 * compare each. */
static int deliver_canonical(const uint8_t *b, size_t len, fo_deliver_view_t *v)
{
    uint64_t sid, replay;
    size_t i = 0, dl;
    const uint8_t *d, *topic;
    if (len < 8 || !want_varint(b, len, &i, (15u << 3) | WT_VARINT, &sid) || sid > UINT32_MAX ||
        !want_bytes(b, len, &i, (6u << 3) | WT_LEN, &d, &dl) || i != len)
        return 0;
    size_t end = (size_t)(d - b) + dl, pl;
    i = (size_t)(d - b);
    if (!want_bytes(b, end, &i, (1u << 3) | WT_LEN, &topic, &v->topic_len) ||
        !want_varint(b, end, &i, (2u << 3) | WT_VARINT, &v->seq) ||
        !want_varint(b, end, &i, (4u << 3) | WT_VARINT, &v->time_ns))
        return 0;
    v->replay = want_varint(b, end, &i, (5u << 3) | WT_VARINT, &replay) && replay;
    v->reply = NULL;
    v->nheaders = 0;
    if (i < end && b[i] != ((3u << 3) | WT_LEN) && !deliver_extras(b, end, &i, v))
        return 0;
    if (!want_bytes(b, end, &i, (3u << 3) | WT_LEN, &v->payload, &pl) || i != end)
        return 0;
    v->sid = (uint32_t)sid;
    v->topic = (const char *)topic;
    v->payload_len = pl;
    /* an embedded NUL is what protobuf-c would cut short: slow path */
    return !memchr(v->topic, 0, v->topic_len);
}

int fo_deliver_header_next(const fo_deliver_view_t *v, size_t *pos, const uint8_t **key,
                           size_t *klen, const uint8_t **val, size_t *vlen)
{
    const uint8_t *h;
    size_t hl, i = *pos, j = 0;
    if (i >= v->headers_len)
        return 0;
    if (!want_bytes(v->headers, v->headers_len, &i, (7u << 3) | WT_LEN, &h, &hl))
        return -1;
    if (!want_bytes(h, hl, &j, (1u << 3) | WT_LEN, key, klen) || !*klen ||
        memchr(*key, 0, *klen))
        return -1;
    *val = (const uint8_t *)"";
    *vlen = 0;
    if (j < hl && !want_bytes(h, hl, &j, (2u << 3) | WT_LEN, val, vlen))
        return -1;
    if (j != hl)
        return -1;
    *pos = i;
    return 1;
}

fo_err_t fo_deliver_peek(const uint8_t *body, size_t len, fo_deliver_view_t *v)
{
    if (deliver_canonical(body, len, v))
        return FO_OK;
    const uint8_t *del;
    size_t del_len;
    uint64_t x, req;
    if (scan_frame(body, len, 6, &del, &del_len, &req, &v->sid) <= 0)
        return FO_ERR_AGAIN;
    int seen[6] = {0};
    v->topic = NULL;
    v->topic_len = 0;
    v->payload = (const uint8_t *)"";
    v->payload_len = 0;
    v->seq = v->time_ns = 0;
    v->replay = 0;
    v->reply = NULL;
    v->reply_len = 0;
    v->headers = NULL;
    v->headers_len = 0;
    v->nheaders = 0;
    for (size_t i = 0; i < del_len;) {
        uint32_t field;
        int wt;
        size_t k = read_key(del + i, del_len - i, &field, &wt);
        if (!k)
            return FO_ERR_AGAIN;
        i += k;
        if (field < 1 || field > 5 || seen[field]++)
            return FO_ERR_AGAIN;
        if (field <= 3 && field != 2) {           /* topic, payload */
            const uint8_t *val;
            size_t vlen, l;
            if (wt != WT_LEN)
                return FO_ERR_AGAIN;
            if (!(l = read_len(del + i, del_len - i, &val, &vlen)))
                return FO_ERR_AGAIN;
            i += l + vlen;
            if (field == 1) {
                v->topic = (const char *)val;
                v->topic_len = vlen;
            } else {
                v->payload = val;
                v->payload_len = vlen;
            }
        } else {                                  /* seq, time_ns, replay */
            if (wt != WT_VARINT)
                return FO_ERR_AGAIN;
            size_t l = fo_varint_get(del + i, del_len - i, &x);
            if (!l)
                return FO_ERR_AGAIN;
            i += l;
            if (field == 2)
                v->seq = x;
            else if (field == 4)
                v->time_ns = x;
            else
                v->replay = x != 0;
        }
    }
    /* A topic with an embedded NUL is what protobuf-c would cut short:
     * leave such oddities to the slow path. */
    if (!v->topic || memchr(v->topic, 0, v->topic_len))
        return FO_ERR_AGAIN;
    return FO_OK;
}

/* ------------------------------------------------------- PUBLISH encoder */

#define TAG_PUBLISH ((3u << 3) | WT_LEN)
#define TAG_REQ     ((14u << 3) | WT_VARINT)

static size_t publish_body_len(size_t tl, size_t pl)
{
    return 1 + fo_varint_len(tl) + tl + 1 + fo_varint_len(pl) + pl;
}

size_t fo_publish_frame_size(size_t topic_len, size_t payload_len, uint64_t req)
{
    size_t pb = publish_body_len(topic_len, payload_len);
    size_t n = 1 + fo_varint_len(pb) + pb;
    if (req)
        n += 1 + fo_varint_len(req);
    return FO_FRAME_HDR + n;
}

size_t fo_publish_frame_pack(uint8_t *out, const char *topic, size_t topic_len,
                             const void *payload, size_t payload_len,
                             uint64_t req)
{
    size_t pb = publish_body_len(topic_len, payload_len);
    uint8_t *p = out + FO_FRAME_HDR;
    *p++ = TAG_PUBLISH;
    p += fo_varint_put(p, pb);
    *p++ = (1u << 3) | WT_LEN;
    p += fo_varint_put(p, topic_len);
    memcpy(p, topic, topic_len);
    p += topic_len;
    *p++ = (2u << 3) | WT_LEN;
    p += fo_varint_put(p, payload_len);
    if (payload_len)
        memcpy(p, payload, payload_len);
    p += payload_len;
    if (req) {
        *p++ = TAG_REQ;
        p += fo_varint_put(p, req);
    }
    size_t n = (size_t)(p - out);
    fo_be32_put(out, (uint32_t)(n - FO_FRAME_HDR));
    return n;
}
