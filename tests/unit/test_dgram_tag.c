/* test_dgram_tag.c -- the datagram trailer (proto/dgram_tag.c): what
 * fo_dgram_seal writes is what protobuf-c would write for the same
 * Datagram, fo_dgram_open accepts exactly that and refuses a wrong key,
 * any changed byte, truncation, extra bytes and untagged datagrams. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "dgram_tag.h"
#include "fanout.pb-c.h"

#define EPOCH 1700000000123456789ull

static uint8_t key[FO_DGRAM_KEY_LEN], other[FO_DGRAM_KEY_LEN];

static int setup(void **state)
{
    (void)state;
    for (unsigned i = 0; i < FO_DGRAM_KEY_LEN; i++) {
        key[i] = (uint8_t)(i * 7 + 1);
        other[i] = key[i];
    }
    other[31] ^= 1;                      /* one bit away */
    return fo_dgram_tag_init() == FO_OK ? 0 : -1;
}

/* A datagram body (epoch, two messages) as the broker encodes it. */
static size_t body(uint8_t *p)
{
    Fanout__McastMsg m[2];
    Fanout__McastMsg *mp[2] = { &m[0], &m[1] };
    for (int i = 0; i < 2; i++) {
        fanout__mcast_msg__init(&m[i]);
        m[i].topic = (char *)"t.x";
        m[i].has_seq = 1;
        m[i].seq = (uint64_t)i + 41;
        m[i].has_payload = 1;
        m[i].payload.data = (uint8_t *)"hello";
        m[i].payload.len = 5;
    }
    Fanout__Datagram d = FANOUT__DATAGRAM__INIT;
    d.has_epoch = 1;
    d.epoch = EPOCH;
    d.n_msgs = 2;
    d.msgs = mp;
    return fanout__datagram__pack(&d, p);
}

static void test_seal_is_protobuf(void **state)
{
    (void)state;
    uint8_t p[256];
    size_t len = body(p);
    uint64_t dseq = 3ull << FO_DGRAM_SENDER_SHIFT | 12345;
    size_t n = fo_dgram_seal(p, len, dseq, key);
    assert_int_equal(n, len + FO_DGRAM_TRAILER_LEN);
    Fanout__Datagram *d = fanout__datagram__unpack(NULL, n, p);
    assert_non_null(d);
    assert_int_equal(d->epoch, EPOCH);
    assert_int_equal(d->n_msgs, 2);
    assert_true(d->has_dseq);
    assert_int_equal(d->dseq, dseq);
    assert_true(d->has_tag);
    assert_int_equal(d->tag.len, FO_DGRAM_TAG_LEN);
    /* protobuf-c packs the same message to the same bytes */
    uint8_t again[256];
    assert_int_equal(fanout__datagram__pack(d, again), n);
    assert_memory_equal(again, p, n);
    fanout__datagram__free_unpacked(d, NULL);

    size_t covered = 0;
    uint64_t got = 0;
    assert_int_equal(fo_dgram_open(p, n, key, &covered, &got), FO_DGRAM_OK);
    assert_int_equal(covered, n - 2 - FO_DGRAM_TAG_LEN);
    assert_int_equal(got, dseq);
    /* what the tag covers decodes on its own, dseq included, no tag */
    d = fanout__datagram__unpack(NULL, covered, p);
    assert_non_null(d);
    assert_int_equal(d->dseq, dseq);
    assert_false(d->has_tag);
    fanout__datagram__free_unpacked(d, NULL);
    uint64_t e = 0;
    assert_true(fo_dgram_epoch(p, n, &e));
    assert_int_equal(e, EPOCH);
}

static void test_refused(void **state)
{
    (void)state;
    uint8_t p[256], q[256];
    size_t n = fo_dgram_seal(p, body(p), 1, key);
    size_t covered = 7;
    uint64_t dseq = 9;
    assert_int_equal(fo_dgram_open(p, n, other, &covered, &dseq), FO_DGRAM_FORGED);
    assert_int_equal(covered, 7);                    /* untouched */
    assert_int_equal(dseq, 9);
    /* every single-bit change anywhere: never accepted */
    for (size_t i = 0; i < n; i++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(q, p, n);
            q[i] ^= (uint8_t)(1u << bit);
            assert_int_not_equal(fo_dgram_open(q, n, key, &covered, &dseq), FO_DGRAM_OK);
        }
    /* truncated by any amount, or with a byte appended */
    for (size_t k = 0; k < n; k++)
        assert_int_not_equal(fo_dgram_open(p, k, key, &covered, &dseq), FO_DGRAM_OK);
    memcpy(q, p, n);
    q[n] = 0;
    assert_int_not_equal(fo_dgram_open(q, n + 1, key, &covered, &dseq), FO_DGRAM_OK);
    /* untagged: a plain Datagram, and one whose tag field is the wrong size */
    size_t len = body(q);
    assert_int_equal(fo_dgram_open(q, len, key, &covered, &dseq), FO_DGRAM_UNTAGGED);
    memcpy(q, p, n);
    q[n - FO_DGRAM_TAG_LEN - 1] = FO_DGRAM_TAG_LEN - 1;
    assert_int_equal(fo_dgram_open(q, n, key, &covered, &dseq), FO_DGRAM_UNTAGGED);
    /* no epoch first */
    uint64_t e;
    assert_false(fo_dgram_epoch(q + 1, n - 1, &e));
    assert_false(fo_dgram_epoch(q, 1, &e));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_is_protobuf),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
