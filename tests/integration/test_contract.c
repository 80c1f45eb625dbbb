/* test_contract.c -- the places where docs/PROTOCOL.md and fanoutd once
 * disagreed, each pinned by a test (issue "The contract holds"): many
 * queue groups on one topic, NUL bytes in strings, Error.sid, required
 * fields of REPAIR and Position, invalid topics in them, REPAIR of
 * sequences never given, which error wins, a lone buffered publish, and
 * `fanout pub` reporting refusals. Raw protocol clients; every wait has a
 * deadline. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include <cmocka.h>
#include "fanout.h"
#include "harness.h"


static fo_tb_t broker;

static int setup(void **state)
{
    (void)state;
    const char *args[] = { "--threads", "2", "--retention-msgs", "5", NULL };
    return fo_tb_start(&broker, args);
}

static int teardown(void **state)
{
    (void)state;
    return fo_tb_stop(&broker) == 0 ? 0 : -1;
}

/* The next frame that is not a PING; NULL on timeout or close. */
static Fanout__Frame *next_frame(fo_tc_t *c, int timeout_ms)
{
    uint64_t end = fo_tb_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = fo_tb_now_ms();
        Fanout__Frame *f;
        if (now >= end || fo_tc_recv(c, (int)(end - now), &f) != 1)
            return NULL;
        if (f->body_case != FANOUT__FRAME__BODY_PING)
            return f;
    }
}

/* The next frame is ERROR `code` and the broker then closes (closes = 1)
 * or answers a PING (closes = 0). Returns the ERROR's sid, or -1 without. */
static int64_t expect_error(fo_tc_t *c, int code, int closes)
{
    Fanout__Frame *f = next_frame(c, 5000);
    assert_non_null(f);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_ERROR);
    assert_int_equal(f->error->code, code);
    int64_t sid = f->error->has_sid ? (int64_t)f->error->sid : -1;
    if (closes) {
        int ec;
        assert_int_equal(fo_tc_wait_closed(c, 5000, &ec), 0);
    } else {
        Fanout__Frame p = FANOUT__FRAME__INIT;
        Fanout__Ping pi = FANOUT__PING__INIT;
        pi.has_nonce = 1;
        pi.nonce = 77;
        p.body_case = FANOUT__FRAME__BODY_PING;
        p.ping = &pi;
        assert_int_equal(fo_tc_send(c, &p), 0);
        f = next_frame(c, 5000);
        assert_non_null(f);
        assert_int_equal(f->body_case, FANOUT__FRAME__BODY_PONG);
        assert_int_equal(f->pong->nonce, 77);
    }
    return sid;
}

static void send_raw_frame(fo_tc_t *c, const uint8_t *body, size_t n)
{
    uint8_t hdr[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
    assert_int_equal(fo_tc_send_raw(c, hdr, 4), 0);
    assert_int_equal(fo_tc_send_raw(c, body, n), 0);
}

static int send_sub(fo_tc_t *c, Fanout__Subscribe *s, uint64_t req)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
    f.subscribe = s;
    if (req) {
        f.has_req = 1;
        f.req = req;
    }
    return fo_tc_send(c, &f);
}

static int send_repair(fo_tc_t *c, Fanout__Repair *r, uint64_t req)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    f.body_case = FANOUT__FRAME__BODY_REPAIR;
    f.repair = r;
    if (req) {
        f.has_req = 1;
        f.req = req;
    }
    return fo_tc_send(c, &f);
}

/* ------------------------------------------------------------ queue groups */

#define GROUPS 100
#define MEMBERS 4    /* connections, spread round-robin over the workers */
#define MSGS 40

/* Every group gets each message exactly once, for any number of groups
 * (a fixed array of 16 picks once cut the rest off silently). */
static void test_hundred_queue_groups(void **state)
{
    (void)state;
    fo_tc_t mem[MEMBERS], pub;
    for (int m = 0; m < MEMBERS; m++) {
        assert_int_equal(fo_tc_open(&mem[m], broker.port, "member"), 0);
        for (int g = 1; g <= GROUPS; g++) {
            char q[16];
            snprintf(q, sizeof q, "g%d", g);
            assert_int_equal(fo_tc_subscribe(&mem[m], (uint32_t)g, "qg.t", q), 0);
        }
    }
    assert_int_equal(fo_tc_open(&pub, broker.port, "pub"), 0);
    for (int i = 1; i <= MSGS; i++)
        assert_int_equal(fo_tc_publish(&pub, "qg.t", "x", 1, i == MSGS ? 9 : 0), 0);
    assert_int_equal(fo_tc_wait_ack(&pub, 9, 5000), 0);
    static uint8_t seen[GROUPS + 1][MSGS + 1];
    memset(seen, 0, sizeof seen);
    int per_worker[MEMBERS] = { 0 };
    uint64_t total = 0, end = fo_tb_now_ms() + 10000;
    while (total < (uint64_t)GROUPS * MSGS && fo_tb_now_ms() < end) {
        for (int m = 0; m < MEMBERS; m++) {
            Fanout__Frame *f;
            while (fo_tc_recv(&mem[m], 1, &f) == 1) {
                if (f->body_case != FANOUT__FRAME__BODY_DELIVER)
                    continue;
                assert_true(f->sid >= 1 && f->sid <= GROUPS);
                assert_true(f->deliver->seq >= 1 && f->deliver->seq <= MSGS);
                assert_int_equal(seen[f->sid][f->deliver->seq]++, 0);   /* once */
                per_worker[m]++;
                total++;
            }
        }
    }
    assert_int_equal(total, (uint64_t)GROUPS * MSGS);
    for (int m = 0; m < MEMBERS; m++)
        assert_true(per_worker[m] > 0);       /* every member took a share */
    for (int m = 0; m < MEMBERS; m++)
        fo_tc_close(&mem[m]);
    fo_tc_close(&pub);
}

/* ------------------------------------------------------------ NUL bytes */

/* protobuf-c would cut "a\0b" to "a": a filter or topic with a NUL is
 * ERR_INVALID_TOPIC, any other string with one ERR_BAD_FRAME. */
static void test_nul_in_strings(void **state)
{
    (void)state;
    fo_tc_t c;
    /* Frame.subscribe { sid 1, filter "a\0b" } */
    static const uint8_t sub[] = { 0x22, 0x07, 0x08, 0x01, 0x12, 0x03, 'a', 0, 'b' };
    assert_int_equal(fo_tc_open(&c, broker.port, "nul"), 0);
    send_raw_frame(&c, sub, sizeof sub);
    expect_error(&c, FO_CODE(INVALID_TOPIC), 1);
    fo_tc_close(&c);
    /* nothing was subscribed: a publish to "a" reaches nobody */
    /* Frame.publish { topic "a\0b", payload "p" } */
    static const uint8_t pub[] = { 0x1a, 0x08, 0x0a, 0x03, 'a', 0, 'b', 0x12, 0x01, 'p' };
    assert_int_equal(fo_tc_open(&c, broker.port, "nul"), 0);
    send_raw_frame(&c, pub, sizeof pub);
    expect_error(&c, FO_CODE(INVALID_TOPIC), 1);
    fo_tc_close(&c);
    /* Frame.subscribe { sid 1, filter "a", queue "q\0r" } */
    static const uint8_t q[] = { 0x22, 0x0a, 0x08, 0x01, 0x12, 0x01, 'a', 0x1a, 0x03, 'q', 0, 'r' };
    assert_int_equal(fo_tc_open(&c, broker.port, "nul"), 0);
    send_raw_frame(&c, q, sizeof q);
    expect_error(&c, FO_CODE(BAD_FRAME), 1);
    fo_tc_close(&c);
    /* Frame.hello { version 1, client_name "x\0y" } */
    static const uint8_t hello[] = { 0x0a, 0x07, 0x08, 0x01, 0x12, 0x03, 'x', 0, 'y' };
    assert_int_equal(fo_tc_connect(&c, broker.port), 0);
    send_raw_frame(&c, hello, sizeof hello);
    expect_error(&c, FO_CODE(BAD_FRAME), 1);
    fo_tc_close(&c);
}

/* ------------------------------------------------------------ Error.sid */

static void test_bad_sid_zero_carries_sid(void **state)
{
    (void)state;
    fo_tc_t c;
    assert_int_equal(fo_tc_open(&c, broker.port, "sid0"), 0);
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1;
    s.sid = 0;
    s.filter = "ok.topic";
    assert_int_equal(send_sub(&c, &s, 3), 0);
    assert_int_equal(expect_error(&c, FO_CODE(BAD_SID), 0), 0);   /* sid present, 0 */
    fo_tc_close(&c);
}

static void test_slow_disconnect_carries_sid(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--max-output", "4KiB", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    fo_tc_t sub, pub;
    assert_int_equal(fo_tc_open_rcvbuf(&sub, b.port, "slow", 4096), 0);
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1;
    s.sid = 42;
    s.filter = "slow.>";
    s.has_slow = 1;
    s.slow = FANOUT__SLOW_POLICY__SLOW_DISCONNECT;
    assert_int_equal(send_sub(&sub, &s, 1), 0);
    assert_int_equal(fo_tc_wait_ack(&sub, 1, 5000), 0);
    assert_int_equal(fo_tc_open(&pub, b.port, "pub"), 0);
    static char payload[2048];
    memset(payload, 'z', sizeof payload);
    for (int i = 0; i < 2000 && fo_tb_metric(&b, "fanout_slow_consumer_disconnects_total") < 1; i++)
        assert_int_equal(fo_tc_publish(&pub, "slow.t", payload, sizeof payload, i % 100 == 99 ? 5 : 0), 0);
    assert_int_equal(fo_tb_wait_metric(&b, "fanout_slow_consumer_disconnects_total", 1, 5000), 0);
    /* what the subscriber reads: DELIVERs, then ERROR slow_consumer {sid 42} */
    int64_t sid = -2;
    for (;;) {
        Fanout__Frame *f = next_frame(&sub, 5000);
        assert_non_null(f);
        if (f->body_case == FANOUT__FRAME__BODY_DELIVER)
            continue;
        assert_int_equal(f->body_case, FANOUT__FRAME__BODY_ERROR);
        assert_int_equal(f->error->code, FO_CODE(SLOW_CONSUMER));
        sid = f->error->has_sid ? (int64_t)f->error->sid : -1;
        break;
    }
    assert_int_equal(sid, 42);
    fo_tc_close(&sub);
    fo_tc_close(&pub);
    assert_int_equal(fo_tb_stop(&b), 0);
}

/* ------------------------------------------------------------ required fields */

static void test_repair_needs_last(void **state)
{
    (void)state;
    fo_tc_t c;
    assert_int_equal(fo_tc_open(&c, broker.port, "rl"), 0);
    assert_int_equal(fo_tc_subscribe(&c, 1, "rl.t", NULL), 0);
    Fanout__Repair r = FANOUT__REPAIR__INIT;
    r.has_sid = r.has_first = 1;
    r.sid = 1;
    r.first = 1;
    r.topic = "rl.t";
    assert_int_equal(send_repair(&c, &r, 4), 0);
    expect_error(&c, FO_CODE(MISSING_FIELD), 1);
    fo_tc_close(&c);
}

static void test_position_needs_topic_and_seq(void **state)
{
    (void)state;
    for (int which = 0; which < 2; which++) {
        fo_tc_t c;
        assert_int_equal(fo_tc_open(&c, broker.port, "pos"), 0);
        Fanout__Position p = FANOUT__POSITION__INIT;
        Fanout__Position *pp = &p;
        if (which == 0) {
            p.topic = "pos.t";           /* no seq */
        } else {
            p.has_seq = 1;               /* no topic */
            p.seq = 3;
        }
        Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
        s.has_sid = 1;
        s.sid = 1;
        s.filter = "pos.>";
        s.n_positions = 1;
        s.positions = &pp;
        assert_int_equal(send_sub(&c, &s, 2), 0);
        expect_error(&c, FO_CODE(MISSING_FIELD), 1);
        fo_tc_close(&c);
    }
}

/* ------------------------------------------------------------ invalid topics */

static void test_invalid_topic_in_position_and_repair(void **state)
{
    (void)state;
    fo_tc_t c;
    /* a Position naming an invalid topic closes */
    assert_int_equal(fo_tc_open(&c, broker.port, "it"), 0);
    Fanout__Position p = FANOUT__POSITION__INIT;
    Fanout__Position *pp = &p;
    p.topic = "it..bad";
    p.has_seq = 1;
    p.seq = 1;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1;
    s.sid = 1;
    s.filter = "it.>";
    s.n_positions = 1;
    s.positions = &pp;
    assert_int_equal(send_sub(&c, &s, 2), 0);
    expect_error(&c, FO_CODE(INVALID_TOPIC), 1);
    fo_tc_close(&c);
    /* a valid one the filter does not match stays open */
    assert_int_equal(fo_tc_open(&c, broker.port, "it"), 0);
    p.topic = "other.topic";
    assert_int_equal(send_sub(&c, &s, 2), 0);
    expect_error(&c, FO_CODE(BAD_REQUEST), 0);
    fo_tc_close(&c);
    /* REPAIR of an invalid topic closes, even for an unknown sid */
    assert_int_equal(fo_tc_open(&c, broker.port, "it"), 0);
    Fanout__Repair r = FANOUT__REPAIR__INIT;
    r.has_sid = r.has_first = r.has_last = 1;
    r.sid = 9;
    r.first = r.last = 1;
    r.topic = "it.*";
    assert_int_equal(send_repair(&c, &r, 3), 0);
    expect_error(&c, FO_CODE(INVALID_TOPIC), 1);
    fo_tc_close(&c);
}

/* ------------------------------------------------------------ REPAIR */

/* Sequences never given are ignored: on a topic that does not exist, and
 * past the last one given; the ACK is all that comes. */
static void test_repair_unassigned_is_ignored(void **state)
{
    (void)state;
    fo_tc_t c;
    assert_int_equal(fo_tc_open(&c, broker.port, "ru"), 0);
    assert_int_equal(fo_tc_subscribe(&c, 1, "ru.>", NULL), 0);
    Fanout__Repair r = FANOUT__REPAIR__INIT;
    r.has_sid = r.has_first = r.has_last = 1;
    r.sid = 1;
    r.first = 1;
    r.last = 10;
    r.topic = "ru.never";
    assert_int_equal(send_repair(&c, &r, 11), 0);
    Fanout__Frame *f = next_frame(&c, 5000);
    assert_non_null(f);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_ACK);
    assert_int_equal(f->ack->ref, 11);
    /* two messages on ru.some, then a REPAIR of 1..10: DELIVER 1, 2 (or
     * the live copies first), then the ACK, and no GAP for 3..10 */
    fo_tc_t pub;
    assert_int_equal(fo_tc_open(&pub, broker.port, "pub"), 0);
    assert_int_equal(fo_tc_publish(&pub, "ru.some", "a", 1, 0), 0);
    assert_int_equal(fo_tc_publish(&pub, "ru.some", "b", 1, 5), 0);
    assert_int_equal(fo_tc_wait_ack(&pub, 5, 5000), 0);
    r.topic = "ru.some";
    assert_int_equal(send_repair(&c, &r, 12), 0);
    int replays = 0;
    for (;;) {
        f = next_frame(&c, 5000);
        assert_non_null(f);
        assert_int_not_equal(f->body_case, FANOUT__FRAME__BODY_GAP);
        if (f->body_case == FANOUT__FRAME__BODY_ACK && f->ack->ref == 12)
            break;
        if (f->body_case == FANOUT__FRAME__BODY_DELIVER && f->deliver->replay)
            replays++;
    }
    assert_int_equal(replays, 2);
    fo_tc_close(&pub);
    fo_tc_close(&c);
}

/* ------------------------------------------------------------ precedence */

/* Closing errors are checked before the ones that leave the connection
 * open (PROTOCOL.md §14). */
static void test_which_error_wins(void **state)
{
    (void)state;
    fo_tc_t c;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    /* sid 0 (BAD_SID, stays open) and a bad filter (closes) */
    assert_int_equal(fo_tc_open(&c, broker.port, "pr"), 0);
    s.has_sid = 1;
    s.sid = 0;
    s.filter = "a..b";
    assert_int_equal(send_sub(&c, &s, 1), 0);
    expect_error(&c, FO_CODE(INVALID_TOPIC), 1);
    fo_tc_close(&c);
    /* START_SEQ without start_seq (closes) and a bad queue (stays open) */
    assert_int_equal(fo_tc_open(&c, broker.port, "pr"), 0);
    s.sid = 1;
    s.filter = "pr.t";
    s.queue = "bad queue";
    s.has_start = 1;
    s.start = FANOUT__START__START_SEQ;
    assert_int_equal(send_sub(&c, &s, 1), 0);
    expect_error(&c, FO_CODE(MISSING_FIELD), 1);
    fo_tc_close(&c);
}

/* ------------------------------------------------------------ the library */

/* One fo_publish and no flush: the linger writes it within milliseconds,
 * long before the keepalive (10 s) would have. */
static void test_lone_publish_goes_out(void **state)
{
    (void)state;
    fo_tc_t sub;
    assert_int_equal(fo_tc_open(&sub, broker.port, "lone"), 0);
    assert_int_equal(fo_tc_subscribe(&sub, 1, "lone.t", NULL), 0);
    const char *servers[] = { broker.addr };
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    o.servers = servers;
    o.nservers = 1;
    fo_client_t *c;
    assert_int_equal(fo_client_connect(&o, &c, NULL, 0), FO_OK);
    uint64_t t0 = fo_tb_now_ms();
    assert_int_equal(fo_publish(c, "lone.t", "solo", 4), FO_OK);
    Fanout__Frame *f = next_frame(&sub, 5000);
    assert_non_null(f);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
    assert_memory_equal(f->deliver->payload.data, "solo", 4);
    /* not a timing assertion: the keepalive would have taken 10 s, and the
     * deadline above is 5 s */
    assert_true(fo_tb_now_ms() - t0 < 5000);
    fo_client_destroy(c);
    fo_tc_close(&sub);
}

/* CPU ticks (utime + stime) of this process's threads other than the
 * main one: here, the client's reader thread. */
static long other_threads_ticks(void)
{
    long sum = 0;
    char path[300];
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == (int)getpid())
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        char line[1024];
        if (!f)
            continue;
        if (fgets(line, sizeof line, f)) {
            const char *p = strrchr(line, ')');     /* after the name */
            unsigned long ut = 0, st = 0;
            if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
                sum += (long)(ut + st);
        }
        fclose(f);
    }
    closedir(d);
    return sum;
}

/* A publisher flooding for a second: its reader thread has nothing to
 * read and must sleep. (It polled without a timeout while the writer held
 * the lock at the linger's due time: a whole core spent polling.) */
static void test_flooding_publisher_reader_sleeps(void **state)
{
    (void)state;
    const char *servers[] = { broker.addr };
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    o.servers = servers;
    o.nservers = 1;
    fo_client_t *c;
    assert_int_equal(fo_client_connect(&o, &c, NULL, 0), FO_OK);
    long hz = sysconf(_SC_CLK_TCK);
    long r0 = other_threads_ticks();
    assert_true(r0 >= 0);
    uint64_t t0 = fo_tb_now_ms(), n = 0;
    while (fo_tb_now_ms() - t0 < 1000)
        for (int i = 0; i < 1000; i++, n++)
            assert_int_equal(fo_publish(c, "flood.nobody", "0123456789abcdef", 16), FO_OK);
    assert_int_equal(fo_client_flush(c, 10000), FO_OK);
    long spent = other_threads_ticks() - r0;
    long wall = (long)(fo_tb_now_ms() - t0) * hz / 1000;
    print_message("%llu publishes in %ld ticks; reader thread %ld ticks\n", (unsigned long long)n, wall, spent);
    /* a count, not a timing: polling flat out it took most of the wall */
    assert_true(spent * 4 < wall);
    fo_client_destroy(c);
}

/* `fanout pub` learns what the broker refused before it exits. */
static void test_cli_pub_reports_refusals(void **state)
{
    (void)state;
    fo_tb_t b;
    const char *args[] = { "--max-topics", "1", NULL };
    assert_int_equal(fo_tb_start(&b, args), 0);
    static char out[4096], err[4096];
    const char *first[] = { "fanout", "pub", "-s", b.addr, "taken.topic", "x", NULL };
    assert_int_equal(fo_tb_run(first, NULL, out, sizeof out, err, sizeof err, 20000), 0);
    const char *lines[] = { "fanout", "pub", "-s", b.addr, "other.topic", NULL };
    int rc = fo_tb_run(lines, "one\ntwo\nthree\n", out, sizeof out, err, sizeof err, 20000);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "refused 3 of 3 messages"));
    assert_non_null(strstr(err, "topic limit"));
    assert_int_equal(fo_tb_stop(&b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hundred_queue_groups),
        cmocka_unit_test(test_nul_in_strings),
        cmocka_unit_test(test_bad_sid_zero_carries_sid),
        cmocka_unit_test(test_slow_disconnect_carries_sid),
        cmocka_unit_test(test_repair_needs_last),
        cmocka_unit_test(test_position_needs_topic_and_seq),
        cmocka_unit_test(test_invalid_topic_in_position_and_repair),
        cmocka_unit_test(test_repair_unassigned_is_ignored),
        cmocka_unit_test(test_which_error_wins),
        cmocka_unit_test(test_lone_publish_goes_out),
        cmocka_unit_test(test_flooding_publisher_reader_sleeps),
        cmocka_unit_test(test_cli_pub_reports_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
