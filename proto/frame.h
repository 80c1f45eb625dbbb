/* frame.h -- the frame codec shared by broker and client library.
 *
 * Wire format (docs/PROTOCOL.md): a stream of frames, each a 4-byte
 * big-endian length N (1 <= N <= max_frame) followed by N bytes of a packed
 * fanout.Frame protobuf message.
 *
 * Decoding is two steps so each can be cheap and tested on its own:
 *  1. fo_decoder_next() cuts whole frames out of a byte stream (TCP has no
 *     message boundaries: one read may hold half a frame or fifty). It checks
 *     the length before any memory is reserved for the body.
 *  2. fo_frame_unpack() turns a frame body into a Fanout__Frame, allocating
 *     only from a caller's arena (no malloc of its own).
 *
 * Encoding writes length + body into a caller's buffer, fo_buf_t, or iovec.
 * DELIVER is special: fo_deliver_write_shared() encodes the part every
 * subscriber shares once, and fo_deliver_prefix() makes the few bytes that
 * differ per subscriber (length and subscription id); the two are sent with
 * one writev. Protobuf field order is free, so prefix+shared is a valid Frame.
 */
#ifndef FO_FRAME_H
#define FO_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "fanout.pb-c.h"
#include "fo_err.h"
#include "arena.h"
#include "buf.h"

#define FO_FRAME_HDR        4u
#define FO_MAX_FRAME_DEFAULT (1u << 20)       /* 1 MiB                        */
#define FO_MAX_FRAME_LIMIT   (64u << 20)      /* the largest limit allowed    */
#define FO_PROTOCOL_VERSION  1u
#define FO_DELIVER_PREFIX_MAX (FO_FRAME_HDR + 1 + 5)  /* len + sid field     */
/* A cluster's sequence numbers are epoch << FO_SEQ_EPOCH_SHIFT | n
 * (docs/CLUSTER.md, Epochs; docs/PROTOCOL.md §8). */
#define FO_SEQ_EPOCH_SHIFT   24

/* fanout.ErrorCode by its short name: FO_CODE(BAD_SID) ==
 * FANOUT__ERROR_CODE__ERR_BAD_SID. */
#define FO_CODE(name) FANOUT__ERROR_CODE__ERR_##name

/* ------------------------------------------------------------ decoding */

typedef struct fo_decoder {
    fo_buf_t buf;         /* owned: bytes read but not yet cut into frames */
    uint32_t max_frame;   /* largest acceptable body length               */
    uint64_t frames;      /* frames cut so far                            */
} fo_decoder_t;

void fo_decoder_init(fo_decoder_t *d, uint32_t max_frame);
void fo_decoder_destroy(fo_decoder_t *d);   /* NULL is fine */

/* Copy bytes in (tests, datagram-less callers). Readers that want no copy
 * use fo_buf_reserve(&d->buf, n), read into fo_buf_tail(), fo_buf_commit(). */
FO_MUST_CHECK fo_err_t fo_decoder_feed(fo_decoder_t *d, const void *p, size_t n);

/* Bytes still needed to complete the frame at the head (>= 1). A reader can
 * use it to size its next read. */
size_t fo_decoder_want(const fo_decoder_t *d);

/* Cut the next whole frame. On FO_OK, *body and *len point into the decoder's
 * buffer and stay valid until the buffer is next reserved into or fed.
 * FO_ERR_AGAIN: no whole frame buffered yet.
 * FO_ERR_FRAME_SIZE: the head declares length 0 or > max_frame; *len holds
 * the declared length. Nothing was allocated for it. The stream is
 * unusable after this (there is no way to find the next frame). */
FO_MUST_CHECK fo_err_t fo_decoder_next(fo_decoder_t *d, const uint8_t **body, size_t *len);

/* At end of stream: FO_OK when no partial frame is pending, else
 * FO_ERR_TRUNCATED. */
FO_MUST_CHECK fo_err_t fo_decoder_finish(const fo_decoder_t *d);

/* Unpack one frame body into *out, allocating from `arena` only; the result
 * lives until the arena is reset. FO_ERR_BAD_FRAME when it does not unpack. */
FO_MUST_CHECK fo_err_t fo_frame_unpack(const uint8_t *body, size_t len, fo_arena_t *arena,
                         Fanout__Frame **out);

/* A frame body that unpacked: the first string field in it (at any depth)
 * holding a NUL byte, or NULL. protobuf-c cuts such strings short, so
 * the broker asks this before trusting one (docs/PROTOCOL.md §6: NUL is
 * never part of a string). fo_field_is_topic() tells a topic or filter
 * (ERR_INVALID_TOPIC) from any other string (ERR_BAD_FRAME). */
const ProtobufCFieldDescriptor *fo_frame_nul_string(const uint8_t *body, size_t len);
int fo_field_is_topic(const ProtobufCFieldDescriptor *fd);

/* Zero-copy view of a PUBLISH frame, for the broker's hot path: if `body`
 * is a well-formed Frame holding a Publish with a topic, fill the view and
 * return FO_OK (pointers into body). FO_ERR_AGAIN when the frame is valid
 * protobuf but not a simple PUBLISH (the caller falls back to
 * fo_frame_unpack), FO_ERR_BAD_FRAME when it is not valid protobuf. */
typedef struct fo_publish_view {
    const char *topic;  size_t topic_len;
    const uint8_t *payload; size_t payload_len;
    uint64_t req;       /* Frame.req, 0 if absent */
} fo_publish_view_t;
FO_MUST_CHECK fo_err_t fo_publish_peek(const uint8_t *body, size_t len, fo_publish_view_t *v);

/* Zero-copy view of a DELIVER frame, for the client's hot path (the
 * counterpart of fo_publish_peek). FO_OK: a well-formed Frame holding only
 * a Deliver (with a topic) and optionally Frame.sid / Frame.req; pointers
 * into body. FO_ERR_AGAIN otherwise, malformed input included: fall back to
 * fo_frame_unpack, which alone decides what does not unpack.
 *
 * A reply address and headers are taken in the layout fanoutd writes
 * (fo_deliver_write_shared: after replay, before the payload); anywhere
 * else they send the frame to the fallback. The headers stay raw bytes,
 * their insides unchecked: fo_deliver_header_next walks them and says
 * when the frame must go to the fallback after all. */
#define FO_DELIVER_VIEW_HEADERS 1
typedef struct fo_deliver_view {
    const char *topic;  size_t topic_len;
    const uint8_t *payload; size_t payload_len;
    uint64_t seq;       /* 0 if absent */
    uint64_t time_ns;   /* 0 if absent */
    uint32_t sid;       /* Frame.sid, 0 if absent */
    int replay;
    const char *reply;  size_t reply_len;  /* Deliver.reply; NULL if absent
                                              (reply_len is set with it)  */
    uint32_t nheaders;                     /* Deliver.headers fields...   */
    const uint8_t *headers; size_t headers_len; /* ...their bytes, set only
                                              when nheaders > 0           */
} fo_deliver_view_t;
FO_MUST_CHECK fo_err_t fo_deliver_peek(const uint8_t *body, size_t len, fo_deliver_view_t *v);

/* The next header of a view; *pos starts at 0. 1: *key (klen bytes, not
 * NUL-terminated, none of them NUL) and *val (vlen bytes; "" and 0 when
 * the value is absent); 0: no more; -1: a header in a form the walk does
 * not take (no key, a NUL in it, other fields): decode the frame with
 * fo_frame_unpack instead. */
int fo_deliver_header_next(const fo_deliver_view_t *v, size_t *pos, const uint8_t **key,
                           size_t *klen, const uint8_t **val, size_t *vlen);

/* Encode a PUBLISH frame (header included) without building a
 * Fanout__Frame: byte-identical to fo_frame_pack of the same frame (payload
 * always present, req only when non-zero). fo_publish_frame_size() first;
 * out must hold that many bytes. Returns the bytes written. */
size_t fo_publish_frame_size(size_t topic_len, size_t payload_len, uint64_t req);
size_t fo_publish_frame_pack(uint8_t *out, const char *topic, size_t topic_len,
                             const void *payload, size_t payload_len,
                             uint64_t req);

/* ------------------------------------------------------------ encoding */

/* Bytes the frame takes on the wire, header included. */
size_t fo_frame_size(const Fanout__Frame *f);

/* Write header + body to out, which must hold fo_frame_size(f) bytes.
 * Returns the bytes written. */
size_t fo_frame_pack(const Fanout__Frame *f, uint8_t *out);

/* Append header + body to a buffer. */
FO_MUST_CHECK fo_err_t fo_frame_append(fo_buf_t *b, const Fanout__Frame *f);

/* Encode into two iovecs: iov[0] = the 4 header bytes in hdr, iov[1] = the
 * body packed into body (capacity cap). FO_ERR_RANGE if cap is too small. */
FO_MUST_CHECK fo_err_t fo_frame_pack_iov(const Fanout__Frame *f, uint8_t hdr[FO_FRAME_HDR],
                           uint8_t *body, size_t cap, struct iovec iov[2]);

/* What one DELIVER says. reply and headers are optional (NULL / 0: the
 * encoding is exactly as without them: absent fields cost nothing). */
typedef struct fo_deliver_fields {
    const char *topic;
    size_t topic_len;
    uint64_t seq, time_ns;
    int replay;
    const void *payload;
    size_t payload_len;
    const char *reply;                  /* Deliver.reply, or NULL     */
    size_t reply_len;
    Fanout__Header *const *headers;     /* Deliver.headers, or NULL   */
    size_t n_headers;
} fo_deliver_fields_t;

/* The shared part of a DELIVER frame, as fanoutd sends it: the `deliver`
 * field of Frame (tag, length) around Deliver {topic, seq, time_ns,
 * [replay], [reply], [headers...], payload} -- payload last, so it sits
 * at the end of the buffer. fo_deliver_shared_len() first, then write into
 * a buffer of that size; the writer returns the bytes written. One encoder
 * for the broker (broker/msg.c), the tests and the protocol document's hex
 * dump. */
size_t fo_deliver_shared_len(const fo_deliver_fields_t *f);
size_t fo_deliver_write_shared(uint8_t *out, const fo_deliver_fields_t *f);

/* The same shared part with Deliver.replay = true: src (src_len bytes, as
 * fo_deliver_write_shared made it, replay not set) is copied with the flag
 * inserted, so reply and headers carry over. Returns the bytes written
 * into dst, which must hold src_len + 3; 0 when src is not such a body. */
size_t fo_deliver_replay_encode(uint8_t *dst, const uint8_t *src, size_t src_len);

/* The per-subscriber head of a DELIVER frame whose shared part is
 * shared_len bytes: 4-byte length, then Frame.sid. Writes at most
 * FO_DELIVER_PREFIX_MAX bytes to out and returns how many. */
size_t fo_deliver_prefix(uint8_t *out, uint32_t sid, size_t shared_len);

/* ------------------------------------------------------------ helpers */

static inline void fo_be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);  p[3] = (uint8_t)v;
}
static inline uint32_t fo_be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Varint (base 128, little-endian groups). put returns bytes written
 * (<= 10); get returns bytes read, 0 on truncation or overflow. Inline with
 * a one-byte fast path: they run several times per message. */
size_t fo_varint_get_slow(const uint8_t *p, size_t n, uint64_t *v);

static inline size_t fo_varint_put(uint8_t *p, uint64_t v)
{
    size_t i = 0;
    while (v >= 0x80) {
        p[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[i++] = (uint8_t)v;
    return i;
}

static inline size_t fo_varint_get(const uint8_t *p, size_t n, uint64_t *v)
{
    if (n && p[0] < 0x80) {
        *v = p[0];
        return 1;
    }
    if (n >= 2 && p[1] < 0x80) {      /* lengths 128..16383: most payloads */
        *v = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
        return 2;
    }
    return fo_varint_get_slow(p, n, v);
}

static inline size_t fo_varint_len(uint64_t v)
{
    /* 1 + floor(log2(v)) / 7, with v|1 so that 0 takes one byte */
    return (size_t)((64 - __builtin_clzll(v | 1) + 6) / 7);
}

#endif
