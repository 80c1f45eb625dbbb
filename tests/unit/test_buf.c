/* test_buf.c -- growable buffer and arena. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "buf.h"
#include "arena.h"
#include "fo_err.h"

static void test_append_consume_compact(void **state)
{
    (void)state;
    fo_buf_t b = FO_BUF_INIT;
    assert_int_equal(fo_buf_append(&b, "abcdef", 6), FO_OK);
    assert_int_equal(fo_buf_len(&b), 6);
    fo_buf_consume(&b, 4);
    assert_memory_equal(fo_buf_head(&b), "ef", 2);
    size_t cap = b.cap;
    /* room exists once the consumed bytes are reclaimed: no growth */
    assert_int_equal(fo_buf_reserve(&b, cap - 2), FO_OK);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.start, 0);
    assert_memory_equal(fo_buf_head(&b), "ef", 2);
    /* growth keeps contents */
    assert_int_equal(fo_buf_reserve(&b, cap * 3), FO_OK);
    assert_true(b.cap >= cap * 3 + 2);
    assert_memory_equal(fo_buf_head(&b), "ef", 2);
    fo_buf_consume(&b, 100);     /* over-consume empties */
    assert_int_equal(fo_buf_len(&b), 0);
    assert_int_equal(b.start, 0);
    fo_buf_free(&b);
    fo_buf_free(&b);             /* twice is fine */
    fo_buf_free(NULL);
}

static void test_release_adopt(void **state)
{
    (void)state;
    fo_buf_t b = FO_BUF_INIT;
    size_t cap = 0;
    assert_null(fo_buf_release(&b, &cap));        /* nothing to give */
    assert_int_equal(fo_buf_append(&b, "x", 1), FO_OK);
    assert_null(fo_buf_release(&b, &cap));        /* not empty */
    fo_buf_consume(&b, 1);
    void *mem = fo_buf_release(&b, &cap);
    assert_non_null(mem);
    assert_true(cap >= 1);
    assert_null(b.data);
    fo_buf_adopt(&b, mem, cap);
    assert_int_equal(fo_buf_append(&b, "yz", 2), FO_OK);
    assert_memory_equal(fo_buf_head(&b), "yz", 2);
    fo_buf_free(&b);
}

static void test_arena_alignment_and_growth(void **state)
{
    (void)state;
    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 64, 4096), FO_OK);
    for (int i = 1; i < 50; i++) {
        void *p = fo_arena_alloc(&a, (size_t)i);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xab, (size_t)i);
    }
    size_t m = a.mallocs;
    assert_true(m > 1);                      /* overflowed */
    fo_arena_reset(&a);
    for (int i = 1; i < 50; i++)
        assert_non_null(fo_arena_alloc(&a, (size_t)i));
    fo_arena_reset(&a);
    size_t m2 = a.mallocs;
    for (int round = 0; round < 10; round++) {
        for (int i = 1; i < 50; i++)
            assert_non_null(fo_arena_alloc(&a, (size_t)i));
        fo_arena_reset(&a);
    }
    assert_int_equal(a.mallocs, m2);         /* steady state: no malloc */
    /* a huge one works but is not kept beyond keep_max */
    assert_non_null(fo_arena_alloc(&a, 100000));
    fo_arena_reset(&a);
    assert_non_null(fo_arena_alloc(&a, 1));
    fo_arena_destroy(&a);
    fo_arena_destroy(NULL);
    assert_int_equal(fo_arena_init(&a, 0, 0), FO_ERR_INVAL);
}

static void test_strerror(void **state)
{
    (void)state;
    for (int e = 0; e < FO_ERR__COUNT; e++) {
        assert_non_null(fo_strerror((fo_err_t)e));
        assert_string_not_equal(fo_strerror((fo_err_t)e), "unknown error");
    }
    assert_string_equal(fo_strerror(FO_OK), "ok");
    assert_string_equal(fo_strerror((fo_err_t)9999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_consume_compact),
        cmocka_unit_test(test_release_adopt),
        cmocka_unit_test(test_arena_alignment_and_growth),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
