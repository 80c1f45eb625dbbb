/* dgram_tag.c -- the authentication trailer of a multicast datagram
 * (dgram_tag.h). One keyed BLAKE2b per datagram, nothing allocated. */
#include "dgram_tag.h"

#include <sodium.h>
#include <string.h>

#include "frame.h"

#define KEY_DSEQ 0x19u     /* field 3, wire type 1 (fixed64) */
#define KEY_TAG  0x22u     /* field 4, wire type 2 (bytes)   */
#define KEY_EPOCH 0x08u    /* field 1, varint                */

/* The tag field starts this far from the end. */
#define TAG_FIELD_LEN (2u + FO_DGRAM_TAG_LEN)

fo_err_t fo_dgram_tag_init(void)
{
    return sodium_init() < 0 ? FO_ERR_NOMEM : FO_OK;
}

static void mac(uint8_t *out, const uint8_t *p, size_t n, const uint8_t *key)
{
    /* cannot fail with these lengths (16-byte output, 32-byte key) */
    (void)crypto_generichash(out, FO_DGRAM_TAG_LEN, p, n, key, FO_DGRAM_KEY_LEN);
}

size_t fo_dgram_seal(uint8_t *p, size_t len, uint64_t dseq, const uint8_t *key)
{
    uint8_t *q = p + len;
    *q++ = KEY_DSEQ;
    for (int i = 0; i < 8; i++)
        *q++ = (uint8_t)(dseq >> (8 * i));
    size_t covered = (size_t)(q - p);
    *q++ = KEY_TAG;
    *q++ = FO_DGRAM_TAG_LEN;
    mac(q, p, covered, key);
    return covered + TAG_FIELD_LEN;
}

fo_dgram_verdict_t fo_dgram_open(const uint8_t *p, size_t n, const uint8_t *key,
                                 size_t *signed_len, uint64_t *dseq)
{
    if (n < FO_DGRAM_TRAILER_LEN)
        return FO_DGRAM_UNTAGGED;
    const uint8_t *d = p + n - FO_DGRAM_TRAILER_LEN;
    const uint8_t *t = p + n - TAG_FIELD_LEN;
    if (d[0] != KEY_DSEQ || t[0] != KEY_TAG || t[1] != FO_DGRAM_TAG_LEN)
        return FO_DGRAM_UNTAGGED;
    uint8_t want[FO_DGRAM_TAG_LEN];
    size_t covered = n - TAG_FIELD_LEN;
    mac(want, p, covered, key);
    if (crypto_verify_16(want, t + 2) != 0)
        return FO_DGRAM_FORGED;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | d[1 + i];
    *signed_len = covered;
    *dseq = v;
    return FO_DGRAM_OK;
}

int fo_dgram_epoch(const uint8_t *p, size_t n, uint64_t *epoch)
{
    if (n < 2 || p[0] != KEY_EPOCH)
        return 0;
    return fo_varint_get(p + 1, n - 1, epoch) != 0;
}
