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
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#define SCRIPT "tests/integration/netns_mcast.sh"

static void test_netns(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        printf("SKIP: not root: cannot create network namespaces\n");
        skip();
    }
    /* the script bounds its own run time (well under a minute) */
    int st = system("exec /bin/bash " SCRIPT " 2>&1");
    assert_true(st != -1 && WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        skip();
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_netns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
