/* test_sniff.c -- broker/sniff.c: an HTTP request or a TLS ClientHello on
 * the client port is named, never a real fanout frame; and the texts the
 * broker logs and answers with. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "frame.h"
#include "../../broker/sniff.h"

static const char *sniff_str(const char *s)
{
    return fo_sniff_foreign((const uint8_t *)s, strlen(s));
}

static void test_http_and_tls(void **state)
{
    (void)state;
    static const char *const http[] = {
        "GET /metrics HTTP/1.1\r\n", "HEAD /healthz HTTP/1.0\r\n", "POST / HTTP/1.1\r\n",
        "PUT /x HTTP/1.1\r\n", "DELETE /x HTTP/1.1\r\n", "OPTIONS * HTTP/1.1\r\n",
        "PATCH /x HTTP/1.1\r\n", "CONNECT h:1 HTTP/1.1\r\n", "TRACE / HTTP/1.1\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "GET ",
    };
    for (size_t i = 0; i < sizeof http / sizeof http[0]; i++)
        if (!sniff_str(http[i]) || strcmp(sniff_str(http[i]), "HTTP"))
            fail_msg("%s: not named HTTP", http[i]);
    /* a TLS 1.0..1.3 ClientHello record header */
    for (uint8_t minor = 0; minor <= 4; minor++) {
        uint8_t hello[] = { 0x16, 0x03, minor, 0x01, 0x2c, 0x01 };
        assert_string_equal(fo_sniff_foreign(hello, sizeof hello), "TLS");
        assert_string_equal(fo_sniff_foreign(hello, 3), "TLS");
    }
    /* too little to tell, or something else */
    assert_null(sniff_str("GET"));
    assert_null(sniff_str("get /"));
    assert_null(sniff_str("GETX"));
    assert_null(sniff_str(""));
    assert_null(fo_sniff_foreign(NULL, 10));
    uint8_t ssl3_alert[] = { 0x15, 0x03, 0x01 }, tls_odd[] = { 0x16, 0x03, 0x05 };
    assert_null(fo_sniff_foreign(ssl3_alert, 3));
    assert_null(fo_sniff_foreign(tls_odd, 3));
}

/* No fanout frame is ever mistaken for one: frame heads are lengths
 * <= FO_MAX_FRAME_LIMIT, and both patterns are lengths far above it. */
static void test_never_a_frame(void **state)
{
    (void)state;
    uint8_t buf[64];
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1;
    h.version = FO_PROTOCOL_VERSION;
    h.client_name = "GET /metrics";
    f.body_case = FANOUT__FRAME__BODY_HELLO;
    f.hello = &h;
    size_t n = fo_frame_pack(&f, buf);
    assert_null(fo_sniff_foreign(buf, n));
    for (uint32_t len = 1; len <= FO_MAX_FRAME_LIMIT; len = len * 3 + 1) {
        uint8_t head[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                            (uint8_t)len };
        assert_null(fo_sniff_foreign(head, 4));
    }
    /* the smallest HTTP and TLS "lengths" are beyond any max-frame */
    assert_true(0x43414e4eu > FO_MAX_FRAME_LIMIT);   /* "CONN" */
    assert_true(0x16030000u > FO_MAX_FRAME_LIMIT);
}

static void test_texts(void **state)
{
    (void)state;
    char b[512];
    fo_sniff_message(b, sizeof b, "HTTP", "127.0.0.1:7401");
    assert_string_equal(b, "looks like HTTP; metrics are on --http 127.0.0.1:7401");
    fo_sniff_message(b, sizeof b, "HTTP", "off");
    assert_string_equal(b, "looks like HTTP; this is the client port, and --http is off");
    fo_sniff_message(b, sizeof b, "TLS", "127.0.0.1:7401");
    assert_string_equal(b, "looks like a TLS handshake on the plain client port");
    int n = fo_sniff_http_reply(b, sizeof b, "0.0.0.0:7401");
    assert_true(n > 0 && (size_t)n < sizeof b);
    assert_int_equal(strncmp(b, "HTTP/1.0 400 Bad Request\r\n", 26), 0);
    char *body = strstr(b, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    int cl = 0;
    assert_int_equal(sscanf(strstr(b, "Content-Length: "), "Content-Length: %d", &cl), 1);
    assert_int_equal(cl, (int)strlen(body));
    assert_non_null(strstr(body, "/metrics and /healthz are on --http 0.0.0.0:7401\n"));
    n = fo_sniff_http_reply(b, 16, "x");              /* cut, never overflows */
    assert_true(n > 16 && strlen(b) == 15);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_and_tls),
        cmocka_unit_test(test_never_a_frame),
        cmocka_unit_test(test_texts),
    };
    return cmocka_run_group_tests_name("sniff", tests, NULL, NULL);
}
