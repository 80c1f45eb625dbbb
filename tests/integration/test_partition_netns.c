/* test_partition_netns.c -- runs tests/integration/netns_partition.sh (a
 * cluster of three brokers in three network namespaces split by iptables,
 * then healed; see the script) as one cmocka test. The script exits 77 to
 * skip (not root, no ip/iptables, no binaries); its output goes to this
 * test's log. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "harness.h"

#define SCRIPT "tests/integration/netns_partition.sh"

static void test_partition_heals(void **state)
{
    (void)state;
    fo_tb_script_test(SCRIPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition_heals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
