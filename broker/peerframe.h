/* peerframe.h -- the codec of the peer protocol (proto/cluster.proto).
 *
 * A peer link is a stream of frames framed like the client protocol (a
 * 4-byte big-endian length, then one packed fanout.PeerFrame), cut by the
 * same decoder (proto/frame.h's fo_decoder_t). This file packs frames,
 * unpacks and checks them, and lays out the head of a PeerDeliver so the
 * home can send a message's encoded DELIVER body (msg.h) after it
 * without copying it: head + body is one valid frame.
 *
 * Pure functions, any thread; unpacking allocates from the caller's arena.
 */
#ifndef FO_PEERFRAME_H
#define FO_PEERFRAME_H

#include <stddef.h>
#include <stdint.h>
#include "arena.h"
#include "buf.h"
#include "cluster.pb-c.h"
#include "fo_err.h"

#define FO_PEER_VERSION   1u
#define FO_PEER_NONCE     32u      /* PeerHello.nonce bytes             */
#define FO_PEER_MAC       32u      /* PeerAuth.mac bytes (HMAC-SHA256)  */
#define FO_PEER_NODE_MAX  64u      /* node id bytes                     */
/* the most a PeerDeliver head takes: length, frame tag and length,
 * queue and filter (each tag, varint length, at most 256+255 bytes),
 * body tag and length */
#define FO_PEER_HEAD_MAX  (4u + 1 + 5 + 2 * (1 + 2 + 512) + 1 + 5)

/* Append header + packed f to out. FO_ERR_NOMEM. */
FO_MUST_CHECK fo_err_t fo_peer_frame_append(fo_buf_t *out, const Fanout__PeerFrame *f);

/* Unpack one frame body (as fo_decoder_next cut it) into *out, from arena.
 * FO_ERR_BAD_FRAME: not a PeerFrame; FO_ERR_PROTO: no body set, or a
 * member without the fields it needs (hello: version, node id of
 * 1..FO_PEER_NODE_MAX bytes, a FO_PEER_NONCE nonce; auth: a FO_PEER_MAC
 * mac; interest: seq, op, id, and for ADD a filter; publish: frame;
 * deliver: body; ack: ref; gap: topic, first <= last; replay: conn, sid,
 * topic, first or earliest; replayed: conn, sid, and a body or a gap
 * (topic, gap_first <= gap_last), not both; replay_end: conn, sid, topic;
 * epoch: topic, seq). The strings are
 * NUL-terminated by protobuf-c; a filter's or topic's syntax is the
 * caller's to check. */
FO_MUST_CHECK fo_err_t fo_peer_frame_unpack(const uint8_t *body, size_t len, fo_arena_t *arena,
                                            Fanout__PeerFrame **out);

/* The head of a PeerDeliver {queue, filter, body} whose body is body_len
 * bytes: written to out (FO_PEER_HEAD_MAX bytes) and its length returned;
 * the frame is the head followed by the body's bytes. queue and filter
 * may be NULL (a plain delivery); each at most 512 bytes (topic names and
 * queue names are shorter), else 0 is returned. */
size_t fo_peer_deliver_head(uint8_t *out, const char *queue, const char *filter, size_t body_len);

#endif
