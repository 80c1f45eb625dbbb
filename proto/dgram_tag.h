/* dgram_tag.h -- the authentication trailer of a multicast datagram
 * (broker: seal; libfanout: open). docs/PROTOCOL.md §18 is the reference.
 *
 * A datagram is one fanout.Datagram. Its last 27 bytes are two fields at
 * fixed positions, always last and always in this order:
 *
 *   ... 0x19 dseq (8 bytes, little-endian)  0x22 0x10 tag (16 bytes)
 *       \ field 3, fixed64 /                \ field 4, bytes[16] /
 *
 * tag = keyed BLAKE2b with a 16-byte output (crypto_generichash, the
 * group's 32-byte key) of every byte before the 0x22, dseq included. A
 * receiver checks the two field keys at their positions, recomputes the
 * tag over exactly those bytes and compares in constant time; only then
 * does it decode them (the 27 - 18 = 9 bytes of dseq are part of what it
 * decodes, the tag field is not). The encoding is what protobuf-c writes
 * for the same message, so any protobuf decoder reads a datagram.
 *
 * dseq = sender << 48 | count: the sender is the broker worker that sent
 * it (0..FO_DGRAM_SENDERS - 1), count its datagrams to that group in this
 * epoch, from 1. Numbers are unique per group and epoch without any state
 * shared between workers; the receiver keeps one anti-replay window per
 * sender (client/replay.h).
 *
 * Pure functions, any thread, after fo_dgram_tag_init() returned FO_OK
 * once in the process (libsodium's sodium_init; idempotent, thread-safe).
 * Keys are borrowed for the call.
 */
#ifndef FO_DGRAM_TAG_H
#define FO_DGRAM_TAG_H

#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"

#define FO_DGRAM_KEY_LEN 32u
#define FO_DGRAM_TAG_LEN 16u
#define FO_DGRAM_TRAILER_LEN (1u + 8u + 2u + FO_DGRAM_TAG_LEN)  /* 27 */
#define FO_DGRAM_SENDER_SHIFT 48
#define FO_DGRAM_SENDERS 64u    /* senders (broker workers) at most */
#define FO_DGRAM_COUNT_MAX ((1ull << FO_DGRAM_SENDER_SHIFT) - 1)

/* libsodium's start-up. FO_ERR_NOMEM when it fails (it cannot get
 * randomness or memory): no datagram can be sealed or opened then. */
FO_MUST_CHECK fo_err_t fo_dgram_tag_init(void);

/* Append the trailer to the len bytes at p (the epoch and the messages,
 * as encoded): p must have room for len + FO_DGRAM_TRAILER_LEN bytes.
 * Returns the datagram's length, len + FO_DGRAM_TRAILER_LEN. */
size_t fo_dgram_seal(uint8_t *p, size_t len, uint64_t dseq, const uint8_t *key);

typedef enum fo_dgram_verdict {
    FO_DGRAM_OK = 0,
    FO_DGRAM_UNTAGGED,        /* too short, or no trailer at its place */
    FO_DGRAM_FORGED,          /* the tag does not match                */
} fo_dgram_verdict_t;

/* Verify the n bytes at p with key. FO_DGRAM_OK: *signed_len is the count
 * of leading bytes the tag covers (decode exactly those) and *dseq the
 * datagram number; otherwise both are untouched. */
fo_dgram_verdict_t fo_dgram_open(const uint8_t *p, size_t n, const uint8_t *key,
                                 size_t *signed_len, uint64_t *dseq);

/* The epoch a datagram claims (its first field, not yet verified): 1 and
 * *epoch set, or 0 when the datagram does not start with one. Lets a
 * receiver drop another broker run's datagrams without computing a tag. */
int fo_dgram_epoch(const uint8_t *p, size_t n, uint64_t *epoch);

#endif
