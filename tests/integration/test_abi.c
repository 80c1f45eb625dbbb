/* test_abi.c -- libfanout.so exports exactly the public API: every fo_*
 * function named in include/fanout.h and include/fo_err.h resolves (with
 * fo_version and fo_client_max_frame), and the codec and internals
 * (fo_frame_pack, fo_decoder_next...) do not; the version macros agree
 * with fo_version() and the VERSION file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <ctype.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "fanout.h"
#include "harness.h"

static int check_header(void *so, const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[1 << 18];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    int found = 0;
    for (char *p = strstr(text, "fo_"); p; p = strstr(p + 3, "fo_")) {
        if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
            continue;
        char name[128];
        size_t k = 0;
        while (k < sizeof name - 1 && (isalnum((unsigned char)p[k]) || p[k] == '_'))
            name[k] = p[k], k++;
        name[k] = 0;
        if (p[k] != '(')
            continue;                 /* a type or a macro, not a call */
        if (!dlsym(so, name))
            fail_msg("%s (named in %s) is not exported by libfanout.so", name, path);
        found++;
    }
    return found;
}

static void test_exports(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/libfanout.so", fo_tb_build_dir());
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so)
        fail_msg("dlopen %s: %s", path, dlerror());
    int n = check_header(so, "include/fanout.h") + check_header(so, "include/fo_err.h");
    assert_true(n >= 24);
    /* request/reply and headers (issue 13) are part of it */
    const char *rr[] = { "fo_request", "fo_request_async", "fo_respond", "fo_reply_free",
                         "fo_publish_ex", "fo_publish_sync_ex", "fo_pub_opts_init",
                         "fo_msg_header" };
    for (size_t i = 0; i < sizeof rr / sizeof rr[0]; i++)
        if (!dlsym(so, rr[i]))
            fail_msg("%s is not exported", rr[i]);
    const char *private_[] = { "fo_frame_pack", "fo_decoder_next", "fo_publish_peek",
                               "fo_arena_alloc", "fo_buf_reserve", "fo_topic_match",
                               "fo_deliver_header_next", "fo__rr_on_reply",
                               "fo__client_view_headers", "fo__client_publish_pb" };
    for (size_t i = 0; i < sizeof private_ / sizeof private_[0]; i++)
        if (dlsym(so, private_[i]))
            fail_msg("%s should not be exported", private_[i]);
    dlclose(so);
}

/* The version macros, fo_version() of the shared library and the VERSION
 * file (what the Makefile passes as FO_VERSION) are one version. */
static void test_version(void **state)
{
    (void)state;
    char path[512], want[32];
    snprintf(path, sizeof path, "%s/libfanout.so", fo_tb_build_dir());
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so)
        fail_msg("dlopen %s: %s", path, dlerror());
    const char *(*version)(void) = (const char *(*)(void))dlsym(so, "fo_version");
    assert_non_null(version);
    assert_string_equal(version(), FO_VERSION_STRING);
    snprintf(want, sizeof want, "%d.%d.%d", FO_VERSION_MAJOR, FO_VERSION_MINOR, FO_VERSION_PATCH);
    assert_string_equal(FO_VERSION_STRING, want);
    assert_int_equal(FO_VERSION_NUMBER, FO_VERSION_MAJOR * 10000 + FO_VERSION_MINOR * 100 + FO_VERSION_PATCH);
    FILE *f = fopen("VERSION", "r");
    assert_non_null(f);
    char file[32] = "";
    assert_non_null(fgets(file, sizeof file, f));
    fclose(f);
    file[strcspn(file, "\n")] = 0;
    if (strcmp(file, FO_VERSION_STRING))
        fail_msg("VERSION says %s but include/fanout.h says %s: bump FO_VERSION_*", file,
                 FO_VERSION_STRING);
    assert_string_equal(FO_VERSION, FO_VERSION_STRING);
    assert_non_null(dlsym(so, "fo_client_max_frame"));
    dlclose(so);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_exports),
                                        cmocka_unit_test(test_version) };
    return cmocka_run_group_tests_name("abi", tests, NULL, NULL);
}
