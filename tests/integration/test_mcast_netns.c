/* test_mcast_netns.c -- runs tests/integration/netns_mcast.sh (multicast
 * across network namespaces with injected loss, see the script) as one
 * cmocka test. The script exits 77 to skip (not root, no ip/iptables, no
 * binaries); its output goes to this test's log. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "harness.h"

#define SCRIPT "tests/integration/netns_mcast.sh"

static void test_netns(void **state)
{
    (void)state;
    fo_tb_script_test(SCRIPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_netns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
