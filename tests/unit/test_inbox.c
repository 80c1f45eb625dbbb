/* test_inbox.c -- a worker's inbox (broker/inbox.c): many producers, one
 * consumer woken by the eventfd; nothing lost, duplicated or reordered per
 * producer. Every wait has a deadline: a lost item or a missed wake-up
 * fails the test in seconds instead of hanging it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <cmocka.h>
#include "inbox.h"
#include "clock.h"

enum { PRODUCERS = 4, PER = 20000, DEADLINE_MS = 5000 };

typedef struct {
    fo_inbox_t *ib;
    int id;
    fo_err_t err;            /* the first post that failed */
} prod_t;

static void *producer(void *arg)
{
    prod_t *p = arg;
    for (int i = 0; i < PER && !p->err; i += 10) {
        fo_item_t items[10];
        for (int k = 0; k < 10; k++)
            items[k] = (fo_item_t){ .kind = FO_ITEM_TARGET, .sid = (uint32_t)p->id,
                                    .conn_id = (uint64_t)(i + k) };
        p->err = fo_inbox_post(p->ib, items, 10);
    }
    return NULL;
}

/* Join th by the deadline (CLOCK_MONOTONIC ms), or fail the test. */
static void join_by(pthread_t th, uint64_t deadline_ms)
{
    uint64_t now = fo_clock_ms();
    uint64_t left = deadline_ms > now ? deadline_ms - now : 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(left / 1000);
    ts.tv_nsec += (long)(left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    if (pthread_timedjoin_np(th, NULL, &ts))
        fail_msg("inbox: a producer did not finish within %d ms", DEADLINE_MS);
}

static void test_inbox_mpsc(void **state)
{
    (void)state;
    fo_inbox_t ib;
    assert_int_equal(fo_inbox_init(&ib), FO_OK);
    pthread_t th[PRODUCERS];
    prod_t ps[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        ps[i] = (prod_t){ &ib, i, FO_OK };
        assert_int_equal(pthread_create(&th[i], NULL, producer, &ps[i]), 0);
    }
    uint64_t deadline = fo_clock_ms() + DEADLINE_MS;
    uint64_t next[PRODUCERS] = {0};
    size_t total = 0, cap = 0;
    fo_item_t *items = NULL;
    while (total < PRODUCERS * PER) {
        /* Sleep until the eventfd says there is something: a post into an
         * empty inbox must wake the consumer. */
        uint64_t now = fo_clock_ms();
        struct pollfd p = { .fd = ib.efd, .events = POLLIN };
        if (now >= deadline || poll(&p, 1, (int)(deadline - now)) == 0)
            fail_msg("inbox: %zu of %d items taken within %d ms (lost, or no eventfd wake-up)",
                     total, PRODUCERS * PER, DEADLINE_MS);
        fo_inbox_ack(&ib);
        size_t n = fo_inbox_take(&ib, &items, &cap);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(items[i].conn_id, next[items[i].sid]);   /* per-producer order */
            next[items[i].sid]++;
        }
        total += n;
    }
    for (int i = 0; i < PRODUCERS; i++) {
        join_by(th[i], deadline);
        assert_int_equal(ps[i].err, FO_OK);
    }
    assert_int_equal(fo_inbox_pending(&ib), 0);
    free(items);
    fo_inbox_destroy(&ib);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inbox_mpsc),
    };
    return cmocka_run_group_tests_name("inbox", tests, NULL, NULL);
}
