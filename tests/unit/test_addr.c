/* test_addr.c -- proto/addr.c, the one address lexer (broker listen
 * addresses, the library's servers, the CLI's -s), and broker/net.c's
 * listen and accept on loopback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include "addr.h"
#include "dial.h"
#include "net.h"

static void ok(const char *s, unsigned flags, fo_scheme_t scheme, const char *host, unsigned port,
               int has_port)
{
    fo_addr_t a;
    assert_int_equal(fo_addr_parse(s, flags, &a), FO_OK);
    assert_int_equal(a.scheme, scheme);
    assert_string_equal(a.host, host);
    assert_int_equal(a.port, port);
    assert_int_equal(a.has_port, has_port);
}

static void test_forms(void **state)
{
    (void)state;
    ok("127.0.0.1:7400", 0, FO_SCHEME_NONE, "127.0.0.1", 7400, 1);
    ok("broker", 0, FO_SCHEME_NONE, "broker", 7400, 0);
    ok("broker.example:9", 0, FO_SCHEME_NONE, "broker.example", 9, 1);
    ok("[::1]:7400", 0, FO_SCHEME_NONE, "::1", 7400, 1);
    ok("[::1]", 0, FO_SCHEME_NONE, "::1", 7400, 0);
    ok(":80", 0, FO_SCHEME_NONE, "", 80, 1);
    ok("localhost:65535", 0, FO_SCHEME_NONE, "localhost", 65535, 1);
    ok("fanout://b1", 0, FO_SCHEME_FANOUT, "b1", FO_PORT_CLIENT, 0);
    ok("fanout://b1:7500/", 0, FO_SCHEME_FANOUT, "b1", 7500, 1);
    ok("tls://b1", 0, FO_SCHEME_TLS, "b1", FO_PORT_TLS, 0);
    ok("tls://[fe80::1%eth0]:8443", 0, FO_SCHEME_TLS, "fe80::1%eth0", 8443, 1);
    /* listen addresses: the port is required, and 0 means any */
    ok("0.0.0.0:0", FO_ADDR_NEED_PORT | FO_ADDR_LISTEN, FO_SCHEME_NONE, "0.0.0.0", 0, 1);
    ok("[::1]:0", FO_ADDR_LISTEN, FO_SCHEME_NONE, "::1", 0, 1);
}

static void test_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", ":", "host:", "host:65536", "host:x", "host:12x", "host:-1", "::1:80", "[::1]80",
        "[]:80", "[::1", "a b:1", "a/b:1", "host:0", "fanout://", "fanout://:7400",
        "http://host:80", "tls://host:99999", "user@host:1", "[zz]:1",
    };
    fo_addr_t a;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fo_err_t e = fo_addr_parse(bad[i], 0, &a);
        if (e != FO_ERR_ADDR)
            fail_msg("\"%s\" was accepted (or not FO_ERR_ADDR)", bad[i]);
    }
    assert_int_equal(fo_addr_parse(NULL, 0, &a), FO_ERR_ADDR);
    assert_int_equal(fo_addr_parse("host", FO_ADDR_NEED_PORT, &a), FO_ERR_ADDR);
    assert_int_equal(fo_addr_parse("tls://host:1", FO_ADDR_NO_SCHEME, &a), FO_ERR_ADDR);
    char longhost[300];
    memset(longhost, 'h', sizeof longhost);
    memcpy(longhost + 290, ":1", 3);
    assert_int_equal(fo_addr_parse(longhost, 0, &a), FO_ERR_RANGE);
}

static void test_format(void **state)
{
    (void)state;
    fo_addr_t a;
    char buf[64];
    assert_int_equal(fo_addr_parse(":7400", FO_ADDR_LISTEN, &a), FO_OK);
    assert_int_equal(fo_addr_format(&a, "0.0.0.0", buf, sizeof buf), 12);
    assert_string_equal(buf, "0.0.0.0:7400");
    assert_int_equal(fo_addr_parse("[::1]:9", 0, &a), FO_OK);
    assert_true(fo_addr_format(&a, NULL, buf, sizeof buf) > 0);
    assert_string_equal(buf, "[::1]:9");
    assert_int_equal(fo_addr_format(&a, NULL, buf, 4), -1);
}

/* net.c: listen on an any-port loopback address, connect, accept. */
static void test_listen_accept(void **state)
{
    (void)state;
    int lfd;
    uint16_t port = 0;
    char err[256];
    assert_int_equal(fo_net_listen("127.0.0.1:0", 16, &lfd, &port, err, sizeof err), FO_OK);
    assert_true(port > 0);
    assert_int_equal(fo_net_accept(lfd), -1);          /* none pending */
    char hp[32];
    snprintf(hp, sizeof hp, "127.0.0.1:%u", port);
    int cfd;
    assert_int_equal(fo_dial(hp, 2000, &cfd, err, sizeof err), FO_OK);
    int sfd = -1;
    for (int i = 0; i < 2000 && sfd < 0; i++) {        /* bounded: the connect is done */
        sfd = fo_net_accept(lfd);
        if (sfd < 0)
            usleep(1000);
    }
    assert_true(sfd >= 0);
    char peer[64];
    fo_net_peer_name(sfd, peer, sizeof peer);
    assert_int_equal(strncmp(peer, "127.0.0.1:", 10), 0);
    close(sfd);
    close(cfd);
    close(lfd);
    assert_int_equal(fo_net_listen("nonsense", 16, &lfd, NULL, err, sizeof err), FO_ERR_ADDR);
    assert_non_null(strstr(err, "nonsense"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_listen_accept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
