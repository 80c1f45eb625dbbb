/* test_resolve.c -- broker/resolve.c: --cluster-peers entries are checked,
 * resolved off the caller's thread (numeric ones to themselves, names
 * through getaddrinfo: only localhost, from /etc/hosts, so no DNS server
 * is asked), merged without duplicates, again on a kick. Waits poll with
 * a deadline. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "resolve.h"

static char err[512];

static void test_check(void **state)
{
    (void)state;
    assert_int_equal(fo_resolver_check("", err, sizeof err), FO_OK);
    assert_int_equal(fo_resolver_check("10.0.0.1:7402, dns:tasks.broker:7402,[::1]:7402", err, sizeof err), FO_OK);
    assert_int_equal(fo_resolver_check("10.0.0.1", err, sizeof err), FO_ERR_INVAL);       /* no port */
    assert_non_null(strstr(err, "is not HOST:PORT or dns:NAME:PORT"));
    assert_int_equal(fo_resolver_check("dns::7402", err, sizeof err), FO_ERR_INVAL);      /* no name */
    char many[2048] = "";
    for (int i = 0; i <= FO_RESOLVE_ENTRIES; i++) {
        char e[32];
        snprintf(e, sizeof e, "%s10.0.0.%d:7402", i ? "," : "", i + 1);
        strcat(many, e);
    }
    assert_int_equal(fo_resolver_check(many, err, sizeof err), FO_ERR_INVAL);
    assert_non_null(strstr(err, "at most"));
}

/* The first round's addresses (deadline 5 s). */
static int first_round(fo_resolver_t *r, char (*out)[FO_NET_ADDR_MAX], uint64_t *gen)
{
    for (int i = 0; i < 500; i++) {
        uint64_t rounds;
        int n = fo_resolver_take(r, gen, out, FO_RESOLVE_ADDRS, &rounds);
        if (n >= 0 && rounds)
            return n;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return -1;
}

static int has(char (*a)[FO_NET_ADDR_MAX], int n, const char *want)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(a[i], want))
            return 1;
    return 0;
}

static void test_resolve(void **state)
{
    (void)state;
    fo_resolver_t *r;
    /* numeric entries, one twice; localhost by name (and again with dns:) */
    assert_int_equal(fo_resolver_start("127.0.0.1:7402,127.0.0.2:7402,127.0.0.1:7402,dns:localhost:7403", 100,
                                       &r, err, sizeof err), FO_OK);
    char a[FO_RESOLVE_ADDRS][FO_NET_ADDR_MAX];
    uint64_t gen = 0;
    int n = first_round(r, a, &gen);
    assert_true(n >= 3);
    assert_true(has(a, n, "127.0.0.1:7402"));
    assert_true(has(a, n, "127.0.0.2:7402"));
    assert_true(has(a, n, "127.0.0.1:7403") || has(a, n, "[::1]:7403"));
    int ones = 0;
    for (int i = 0; i < n; i++)
        ones += !strcmp(a[i], "127.0.0.1:7402");
    assert_int_equal(ones, 1);                   /* no duplicates */
    /* a kick gives a new round soon; nothing changes in it but the count */
    uint64_t g0 = gen;
    fo_resolver_kick(r);
    for (int i = 0; i < 500 && gen == g0; i++) {
        uint64_t rounds;
        (void)fo_resolver_take(r, &gen, a, FO_RESOLVE_ADDRS, &rounds);
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    assert_true(gen > g0);
    fo_resolver_stop(r);
    /* an empty list: one finished round with nothing in it (ready at once) */
    assert_int_equal(fo_resolver_start("", 100, &r, err, sizeof err), FO_OK);
    gen = 0;
    assert_int_equal(first_round(r, a, &gen), 0);
    fo_resolver_stop(r);
    fo_resolver_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_resolve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
