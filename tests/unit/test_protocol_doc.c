/* test_protocol_doc.c -- docs/PROTOCOL.md's hex dumps are what the codec makes.
 *
 * The annotated dumps of a HELLO, a PUBLISH and a DELIVER frame in
 * docs/PROTOCOL.md are compared byte for byte with frames built here by the
 * real codec (proto/frame.c over the protoc-c generated code), so the doc
 * cannot drift from proto/fanout.proto or the encoder. Tests run from the
 * repository root, so the doc is read from "docs/PROTOCOL.md".
 *
 * Dump format in the doc: a line `<!-- hexdump: NAME -->`, then a fenced
 * code block. In each line of the block the leading two-digit hex tokens,
 * separated by single spaces, are the bytes; whatever follows two or more
 * spaces is annotation.
 *
 * `test_protocol_doc --dump` prints the bytes the codec makes, to annotate
 * when the doc's examples change.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "dgram_tag.h"
#include "frame.h"

#define DOC_PATH  "docs/PROTOCOL.md"
#define FRAME_CAP 256

/* ------------------------------------------------------------ examples */

/* The frames the doc shows. Change them together with the doc. */
static size_t build_hello(uint8_t *out)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1;
    h.version = FO_PROTOCOL_VERSION;
    h.client_name = "demo";
    f.body_case = FANOUT__FRAME__BODY_HELLO;
    f.hello = &h;
    assert_true(fo_frame_size(&f) <= FRAME_CAP);
    return fo_frame_pack(&f, out);
}

static size_t build_publish(uint8_t *out)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Publish p = FANOUT__PUBLISH__INIT;
    p.topic = "orders.eu";
    p.has_payload = 1;
    p.payload.data = (uint8_t *)"hello";
    p.payload.len = 5;
    f.body_case = FANOUT__FRAME__BODY_PUBLISH;
    f.publish = &p;
    f.has_req = 1;
    f.req = 7;
    assert_true(fo_frame_size(&f) <= FRAME_CAP);
    return fo_frame_pack(&f, out);
}

/* DELIVER as the broker sends it: per-subscriber prefix + shared body. */
static size_t build_deliver(uint8_t *out)
{
    uint8_t shared[FRAME_CAP];
    fo_deliver_fields_t df = { .topic = "orders.eu", .topic_len = 9, .seq = 42,
                               .time_ns = UINT64_C(1700000000123456789), .payload = "hello",
                               .payload_len = 5 };
    size_t slen = fo_deliver_shared_len(&df);
    assert_true(slen <= sizeof shared);
    assert_int_equal(fo_deliver_write_shared(shared, &df), slen);
    size_t plen = fo_deliver_prefix(out, 3, slen);
    assert_true(plen <= FO_DELIVER_PREFIX_MAX);
    assert_true(plen + slen <= FRAME_CAP);
    memcpy(out + plen, shared, slen);
    return plen + slen;
}

/* A multicast datagram (§18), sealed with the example key 00 01 .. 1f:
 * one message, dseq = sender 1, count 7. Not a frame: no length prefix. */
static const uint8_t example_key[FO_DGRAM_KEY_LEN] = {
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31 };

static size_t build_datagram(uint8_t *out)
{
    Fanout__McastMsg m = FANOUT__MCAST_MSG__INIT;
    Fanout__McastMsg *mp = &m;
    m.topic = "orders.eu";
    m.has_seq = m.has_payload = 1;
    m.seq = 42;
    m.payload.data = (uint8_t *)"hello";
    m.payload.len = 5;
    Fanout__Datagram d = FANOUT__DATAGRAM__INIT;
    d.has_epoch = 1;
    d.epoch = UINT64_C(1700000000123456789);
    d.n_msgs = 1;
    d.msgs = &mp;
    assert_true(fanout__datagram__get_packed_size(&d) + FO_DGRAM_TRAILER_LEN <= FRAME_CAP);
    assert_int_equal(fo_dgram_tag_init(), FO_OK);
    return fo_dgram_seal(out, fanout__datagram__pack(&d, out), UINT64_C(1) << 48 | 7, example_key);
}

/* ------------------------------------------------------------ doc parser */

static char *read_doc(void)
{
    FILE *fp = fopen(DOC_PATH, "rb");
    if (!fp) {
        print_error("cannot open %s (tests run from the repo root)\n", DOC_PATH);
        return NULL;
    }
    char *s = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *t = realloc(s, cap);
            if (!t) {
                free(s);
                fclose(fp);
                return NULL;
            }
            s = t;
        }
        memcpy(s + len, chunk, n);
        len += n;
    }
    fclose(fp);
    if (s)
        s[len] = '\0';
    return s;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Bytes at the start of one line (see the top comment); returns how many
 * were stored, or -1 when they do not fit in cap. */
static long parse_line(const char *p, const char *eol, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (p < eol && *p == ' ')
        p++;
    while (eol - p >= 2 && hexval(p[0]) >= 0 && hexval(p[1]) >= 0 &&
           (eol - p == 2 || p[2] == ' ')) {
        if (n == cap)
            return -1;
        out[n++] = (uint8_t)(hexval(p[0]) << 4 | hexval(p[1]));
        p += 2;
        if (eol - p >= 2 && p[0] == ' ' && p[1] != ' ')
            p++;                        /* one space: another byte follows */
        else
            break;                      /* two spaces or end: annotation   */
    }
    return (long)n;
}

/* The bytes of dump NAME in doc; returns the count, or -1 when the marker or
 * its code block is missing or malformed. */
static long find_dump(const char *doc, const char *name, uint8_t *out, size_t cap)
{
    char marker[128];
    snprintf(marker, sizeof marker, "<!-- hexdump: %s -->", name);
    const char *p = strstr(doc, marker);
    if (!p)
        return -1;
    p = strstr(p, "```");
    if (!p || !(p = strchr(p, '\n')))
        return -1;
    p++;
    size_t n = 0;
    for (;;) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            return -1;                  /* unterminated block */
        if (strncmp(p, "```", 3) == 0)
            return (long)n;
        long got = parse_line(p, eol, out + n, cap - n);
        if (got < 0)
            return -1;
        n += (size_t)got;
        p = eol + 1;
    }
}

static void print_hex(const char *label, const uint8_t *p, size_t n)
{
    print_message("%s (%zu bytes):", label, n);
    for (size_t i = 0; i < n; i++)
        print_message("%s%02x", i % 16 ? " " : "\n  ", p[i]);
    print_message("\n");
}

/* The doc's bytes for name are what build makes: their count, into got. */
static size_t same_dump(const char *name, size_t (*build)(uint8_t *), uint8_t *got)
{
    uint8_t want[FRAME_CAP];
    size_t wn = build(want);
    char *doc = read_doc();
    assert_non_null(doc);
    long gn = find_dump(doc, name, got, FRAME_CAP);
    free(doc);
    if (gn < 0)
        fail_msg("no '<!-- hexdump: %s -->' block in %s", name, DOC_PATH);
    if ((size_t)gn != wn || memcmp(got, want, wn) != 0) {
        print_hex("codec", want, wn);
        print_hex(DOC_PATH, got, (size_t)gn);
        fail_msg("hex dump '%s' in %s does not match the codec", name, DOC_PATH);
    }
    return wn;
}

static void check_dump(const char *name, size_t (*build)(uint8_t *))
{
    uint8_t got[FRAME_CAP];
    size_t gn = same_dump(name, build, got);
    /* And the doc's bytes are one whole frame the decoder accepts. */
    fo_decoder_t dec;
    fo_decoder_init(&dec, 0);
    assert_int_equal(fo_decoder_feed(&dec, got, (size_t)gn), FO_OK);
    const uint8_t *body;
    size_t len;
    assert_int_equal(fo_decoder_next(&dec, &body, &len), FO_OK);
    assert_int_equal(fo_decoder_finish(&dec), FO_OK);
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 1024, 0), FO_OK);
    Fanout__Frame *f;
    assert_int_equal(fo_frame_unpack(body, len, &a, &f), FO_OK);
    fo_arena_destroy(&a);
    fo_decoder_destroy(&dec);
}

/* ------------------------------------------------------------ tests */

static void test_hello_dump(void **state)
{
    (void)state;
    check_dump("hello", build_hello);
}

static void test_publish_dump(void **state)
{
    (void)state;
    check_dump("publish", build_publish);
}

static void test_deliver_dump(void **state)
{
    (void)state;
    check_dump("deliver", build_deliver);

    /* The DELIVER example unpacks to what was put in, sid included. */
    uint8_t wire[FRAME_CAP];
    size_t n = build_deliver(wire);
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 1024, 0), FO_OK);
    Fanout__Frame *f;
    assert_int_equal(fo_frame_unpack(wire + FO_FRAME_HDR, n - FO_FRAME_HDR, &a, &f), FO_OK);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
    assert_true(f->has_sid);
    assert_int_equal(f->sid, 3);
    assert_string_equal(f->deliver->topic, "orders.eu");
    assert_int_equal(f->deliver->seq, 42);
    fo_arena_destroy(&a);
}

static void test_datagram_dump(void **state)
{
    (void)state;
    uint8_t got[FRAME_CAP];
    size_t n = same_dump("datagram", build_datagram, got);
    /* it verifies under the example key, and what the tag covers decodes */
    size_t covered;
    uint64_t dseq;
    assert_int_equal(fo_dgram_open(got, n, example_key, &covered, &dseq), FO_DGRAM_OK);
    assert_int_equal(dseq, UINT64_C(1) << 48 | 7);
    Fanout__Datagram *d = fanout__datagram__unpack(NULL, covered, got);
    assert_non_null(d);
    assert_int_equal(d->n_msgs, 1);
    assert_string_equal(d->msgs[0]->topic, "orders.eu");
    fanout__datagram__free_unpacked(d, NULL);
}

static void test_dump_parser(void **state)
{
    (void)state;
    /* Annotation that looks like hex is not read as bytes; continuation
     * lines and indentation are fine; the block must be closed. */
    const char *doc =
        "text\n<!-- hexdump: t -->\n```text\n"
        "00 00 00 03  ab cd are not bytes\n"
        "   0a 01     de ad\n"
        "      ff\n"
        "\n"
        "```\n";
    uint8_t out[16];
    const uint8_t want[] = {0, 0, 0, 3, 0x0a, 0x01, 0xff};
    assert_int_equal(find_dump(doc, "t", out, sizeof out), (long)sizeof want);
    assert_memory_equal(out, want, sizeof want);
    assert_int_equal(find_dump(doc, "missing", out, sizeof out), -1);
    assert_int_equal(find_dump(doc, "t", out, 3), -1);   /* does not fit */
    const char *open = "<!-- hexdump: u -->\n```\n01 02\n";
    assert_int_equal(find_dump(open, "u", out, sizeof out), -1);
}

static int dump_all(void)
{
    static const struct { const char *name; size_t (*build)(uint8_t *); } ex[] = {
        {"hello", build_hello}, {"publish", build_publish}, {"deliver", build_deliver},
        {"datagram", build_datagram},
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        uint8_t b[FRAME_CAP];
        size_t n = ex[i].build(b);
        printf("%s (%zu bytes):", ex[i].name, n);
        for (size_t j = 0; j < n; j++)
            printf("%s%02x", j % 16 ? " " : "\n  ", b[j]);
        printf("\n");
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--dump") == 0)
        return dump_all();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dump_parser),
        cmocka_unit_test(test_hello_dump),
        cmocka_unit_test(test_publish_dump),
        cmocka_unit_test(test_deliver_dump),
        cmocka_unit_test(test_datagram_dump),
    };
    return cmocka_run_group_tests_name("protocol_doc", tests, NULL, NULL);
}
