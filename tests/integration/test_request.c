/* test_request.c -- request/reply and headers against a real fanoutd
 * (docs/PROTOCOL.md §9a), with raw protocol clients: the inbox in WELCOME,
 * a round trip, no responders, replies nobody else can see, forged
 * replies, queue-group responders, headers byte for byte (live and
 * replayed), header limits, and a million unique requests leaving the
 * topic count and the broker's memory flat. Every wait has a deadline. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "harness.h"

#define ERR(x) FANOUT__ERROR_CODE__ERR_##x

static fo_tb_t broker;

static int setup(void **state)
{
    (void)state;
    const char *args[] = { "--threads", "2", NULL };
    return fo_tb_start(&broker, args);
}

static int teardown(void **state)
{
    (void)state;
    return fo_tb_stop(&broker) == 0 ? 0 : -1;
}

/* HELLO, and the inbox WELCOME announces. */
static void open_inbox(fo_tc_t *c, char *inbox, size_t len)
{
    assert_int_equal(fo_tc_connect(c, broker.port), 0);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Hello h = FANOUT__HELLO__INIT;
    h.has_version = 1;
    h.version = 1;
    f.body_case = FANOUT__FRAME__BODY_HELLO;
    f.hello = &h;
    assert_int_equal(fo_tc_send(c, &f), 0);
    Fanout__Frame *w;
    assert_int_equal(fo_tc_recv(c, 5000, &w), 1);
    assert_int_equal(w->body_case, FANOUT__FRAME__BODY_WELCOME);
    assert_non_null(w->welcome->inbox);
    assert_int_equal(strlen(w->welcome->inbox), 7 + 32);
    assert_int_equal(strncmp(w->welcome->inbox, "_INBOX.", 7), 0);
    snprintf(inbox, len, "%s", w->welcome->inbox);
}

static int publish_ex(fo_tc_t *c, const char *topic, const char *payload, const char *reply,
                      Fanout__Header **hs, size_t nh, uint64_t req)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Publish p = FANOUT__PUBLISH__INIT;
    p.topic = (char *)topic;
    p.has_payload = 1;
    p.payload.data = (uint8_t *)payload;
    p.payload.len = strlen(payload);
    p.reply = (char *)reply;
    p.headers = hs;
    p.n_headers = nh;
    f.body_case = FANOUT__FRAME__BODY_PUBLISH;
    f.publish = &p;
    if (req) {
        f.has_req = 1;
        f.req = req;
    }
    return fo_tc_send(c, &f);
}

/* The next frame that is not a PING, or NULL. */
static Fanout__Frame *next(fo_tc_t *c, int ms)
{
    uint64_t end = fo_tb_now_ms() + (uint64_t)ms;
    for (;;) {
        uint64_t now = fo_tb_now_ms();
        Fanout__Frame *f;
        if (now >= end || fo_tc_recv(c, (int)(end - now), &f) != 1)
            return NULL;
        if (f->body_case != FANOUT__FRAME__BODY_PING)
            return f;
    }
}

static Fanout__Frame *next_of(fo_tc_t *c, int body_case, int ms)
{
    uint64_t end = fo_tb_now_ms() + (uint64_t)ms;
    for (Fanout__Frame *f; fo_tb_now_ms() < end && (f = next(c, (int)(end - fo_tb_now_ms())));)
        if ((int)f->body_case == body_case)
            return f;
    return NULL;
}

static void test_round_trip(void **state)
{
    (void)state;
    fo_tc_t req, svc, spy;
    char inbox[64], rinbox[64], sinbox[64], reply[96];
    open_inbox(&req, inbox, sizeof inbox);
    open_inbox(&svc, rinbox, sizeof rinbox);
    open_inbox(&spy, sinbox, sizeof sinbox);
    assert_string_not_equal(inbox, rinbox);
    assert_int_equal(fo_tc_subscribe(&svc, 1, "svc.echo", NULL), 0);
    assert_int_equal(fo_tc_subscribe(&spy, 1, ">", NULL), 0);
    snprintf(reply, sizeof reply, "%s.42", inbox);
    assert_int_equal(publish_ex(&req, "svc.echo", "ping?", reply, NULL, 0, 7), 0);
    Fanout__Frame *a = next_of(&req, FANOUT__FRAME__BODY_ACK, 5000);
    assert_non_null(a);
    assert_int_equal(a->ack->ref, 7);
    Fanout__Frame *d = next_of(&svc, FANOUT__FRAME__BODY_DELIVER, 5000);
    assert_non_null(d);
    assert_string_equal(d->deliver->reply, reply);
    assert_memory_equal(d->deliver->payload.data, "ping?", 5);
    /* the responder answers the address it was given */
    char answer[128];
    snprintf(answer, sizeof answer, "%s", d->deliver->reply);
    assert_int_equal(publish_ex(&svc, answer, "pong!", NULL, NULL, 0, 9), 0);
    Fanout__Frame *r = next_of(&req, FANOUT__FRAME__BODY_DELIVER, 5000);
    assert_non_null(r);
    assert_int_equal(r->sid, 0);                       /* the inbox, no subscription */
    assert_string_equal(r->deliver->topic, reply);
    assert_int_equal(r->deliver->seq, 0);              /* replies are not sequenced */
    assert_memory_equal(r->deliver->payload.data, "pong!", 5);
    Fanout__Frame *ra = next_of(&svc, FANOUT__FRAME__BODY_ACK, 5000);
    assert_non_null(ra);
    assert_false(ra->ack->has_seq);
    /* the spy on ">" saw the request (it subscribes to svc.echo) but never
     * the reply: a PING round trip proves nothing more is queued for it */
    Fanout__Frame *sd = next_of(&spy, FANOUT__FRAME__BODY_DELIVER, 5000);
    assert_non_null(sd);
    assert_string_equal(sd->deliver->topic, "svc.echo");
    Fanout__Frame p = FANOUT__FRAME__INIT;
    Fanout__Ping pi = FANOUT__PING__INIT;
    p.body_case = FANOUT__FRAME__BODY_PING;
    p.ping = &pi;
    assert_int_equal(fo_tc_send(&spy, &p), 0);
    for (Fanout__Frame *f; (f = next(&spy, 2000)) && f->body_case != FANOUT__FRAME__BODY_PONG;)
        assert_int_not_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
    /* nor can it subscribe to inboxes */
    Fanout__Frame sf = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1;
    s.sid = 2;
    s.filter = "_INBOX.>";
    sf.body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
    sf.subscribe = &s;
    sf.has_req = 1;
    sf.req = 3;
    assert_int_equal(fo_tc_send(&spy, &sf), 0);
    Fanout__Frame *e = next_of(&spy, FANOUT__FRAME__BODY_ERROR, 5000);
    assert_non_null(e);
    assert_int_equal(e->error->code, ERR(BAD_REQUEST));
    /* no registry topic was made for the reply */
    assert_true(fo_tb_metric(&broker, "fanout_topics") <= 1);
    fo_tc_close(&spy);
    fo_tc_close(&svc);
    fo_tc_close(&req);
}

/* Wait until the broker holds no subscription (closed connections of
 * earlier tests are unbound asynchronously). */
static void no_subscriptions_left(void)
{
    uint64_t end = fo_tb_now_ms() + 5000;
    while (fo_tb_metric(&broker, "fanout_subscriptions") != 0 && fo_tb_now_ms() < end)
        (void)fo_tb_wait_metric(&broker, "fanout_loop_iterations_total",
                                fo_tb_metric(&broker, "fanout_loop_iterations_total") + 1, 100);
    assert_true(fo_tb_metric(&broker, "fanout_subscriptions") == 0);
}

static void test_no_responders(void **state)
{
    (void)state;
    no_subscriptions_left();           /* the spy's ">" of the last test */
    fo_tc_t req;
    char inbox[64], reply[96];
    open_inbox(&req, inbox, sizeof inbox);
    snprintf(reply, sizeof reply, "%s.1", inbox);
    assert_int_equal(publish_ex(&req, "nobody.home", "?", reply, NULL, 0, 11), 0);
    Fanout__Frame *e = next(&req, 5000);
    assert_non_null(e);
    assert_int_equal(e->body_case, FANOUT__FRAME__BODY_ERROR);
    assert_int_equal(e->error->code, ERR(NO_RESPONDERS));
    assert_int_equal(e->error->ref, 11);
    /* stays open, and the request was not sequenced: the next publish is 1 */
    assert_int_equal(fo_tc_publish(&req, "nobody.home", "x", 1, 12), 0);
    Fanout__Frame *a = next_of(&req, FANOUT__FRAME__BODY_ACK, 5000);
    assert_non_null(a);
    assert_int_equal(a->ack->seq, 1);
    fo_tc_close(&req);
}

/* A reply to a real connection's id with the wrong secret goes nowhere. */
static void test_forged_reply_dropped(void **state)
{
    (void)state;
    fo_tc_t victim, forger;
    char inbox[64], finbox[64], forged[96];
    open_inbox(&victim, inbox, sizeof inbox);
    open_inbox(&forger, finbox, sizeof finbox);
    snprintf(forged, sizeof forged, "%s", inbox);
    forged[7 + 31] = forged[7 + 31] == '0' ? '1' : '0';   /* one secret digit off */
    strcat(forged, ".x");
    double gone = fo_tb_metric(&broker, "fanout_drops_gone_total");
    assert_int_equal(publish_ex(&forger, forged, "evil", NULL, NULL, 0, 5), 0);
    assert_non_null(next_of(&forger, FANOUT__FRAME__BODY_ACK, 5000));
    assert_int_equal(fo_tb_wait_metric(&broker, "fanout_drops_gone_total", gone + 1, 5000), 0);
    Fanout__Frame *f;
    assert_int_equal(fo_tc_recv(&victim, 200, &f), 0);    /* nothing came */
    /* a malformed inbox address is refused, the connection stays */
    assert_int_equal(publish_ex(&forger, "_INBOX.nothex", "x", NULL, NULL, 0, 6), 0);
    Fanout__Frame *e = next_of(&forger, FANOUT__FRAME__BODY_ERROR, 5000);
    assert_non_null(e);
    assert_int_equal(e->error->code, ERR(BAD_REQUEST));
    fo_tc_close(&forger);
    fo_tc_close(&victim);
}

/* Responders in a queue group share the requests. */
static void test_queue_group_responders(void **state)
{
    (void)state;
    enum { R = 3, N = 60 };
    fo_tc_t req, svc[R];
    char inbox[64], tmp[64], reply[96];
    open_inbox(&req, inbox, sizeof inbox);
    for (int i = 0; i < R; i++) {
        open_inbox(&svc[i], tmp, sizeof tmp);
        assert_int_equal(fo_tc_subscribe(&svc[i], 1, "svc.work", "workers"), 0);
    }
    for (int i = 0; i < N; i++) {
        snprintf(reply, sizeof reply, "%s.%d", inbox, i);
        assert_int_equal(publish_ex(&req, "svc.work", "job", reply, NULL, 0, 0), 0);
    }
    int share[R] = { 0 }, total = 0;
    uint64_t end = fo_tb_now_ms() + 10000;
    while (total < N && fo_tb_now_ms() < end)
        for (int i = 0; i < R; i++) {
            Fanout__Frame *f;
            while (fo_tc_recv(&svc[i], 1, &f) == 1)
                if (f->body_case == FANOUT__FRAME__BODY_DELIVER) {
                    share[i]++;
                    total++;
                    char a[128];
                    snprintf(a, sizeof a, "%s", f->deliver->reply);
                    assert_int_equal(publish_ex(&svc[i], a, "done", NULL, NULL, 0, 0), 0);
                }
        }
    assert_int_equal(total, N);
    for (int i = 0; i < R; i++)
        assert_int_equal(share[i], N / R);            /* round-robin */
    int replies = 0;
    while (replies < N && next_of(&req, FANOUT__FRAME__BODY_DELIVER, 5000))
        replies++;
    assert_int_equal(replies, N);
    for (int i = 0; i < R; i++)
        fo_tc_close(&svc[i]);
    fo_tc_close(&req);
}

/* ------------------------------------------------------------ headers */

static Fanout__Header *hdr(Fanout__Header *h, const char *k, const void *v, size_t n)
{
    fanout__header__init(h);
    h->key = (char *)k;
    if (v) {
        h->has_value = 1;
        h->value.data = (uint8_t *)v;
        h->value.len = n;
    }
    return h;
}

static void test_headers_round_trip(void **state)
{
    (void)state;
    fo_tc_t pub, sub, late;
    assert_int_equal(fo_tc_open(&pub, broker.port, "pub"), 0);
    assert_int_equal(fo_tc_open(&sub, broker.port, "sub"), 0);
    assert_int_equal(fo_tc_subscribe(&sub, 4, "hd.t", NULL), 0);
    static const uint8_t bin[] = { 0, 1, 2, 0xff, '\n', 0 };
    Fanout__Header h[3], *hp[3] = { hdr(&h[0], "traceparent", "00-abc-def-01", 13),
                                    hdr(&h[1], "bin", bin, sizeof bin),
                                    hdr(&h[2], "empty", NULL, 0) };
    assert_int_equal(publish_ex(&pub, "hd.t", "body", NULL, hp, 3, 1), 0);
    assert_non_null(next_of(&pub, FANOUT__FRAME__BODY_ACK, 5000));
    Fanout__Frame *d = next_of(&sub, FANOUT__FRAME__BODY_DELIVER, 5000);
    assert_non_null(d);
    assert_int_equal(d->deliver->n_headers, 3);
    assert_string_equal(d->deliver->headers[0]->key, "traceparent");
    assert_memory_equal(d->deliver->headers[0]->value.data, "00-abc-def-01", 13);
    assert_int_equal(d->deliver->headers[1]->value.len, sizeof bin);
    assert_memory_equal(d->deliver->headers[1]->value.data, bin, sizeof bin);
    assert_false(d->deliver->headers[2]->has_value);
    assert_memory_equal(d->deliver->payload.data, "body", 4);
    /* a replay from retention carries them too */
    assert_int_equal(fo_tc_open(&late, broker.port, "late"), 0);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = 1;
    s.sid = 5;
    s.filter = "hd.t";
    s.has_start = 1;
    s.start = FANOUT__START__START_EARLIEST;
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    assert_int_equal(fo_tc_send(&late, &f), 0);
    d = next_of(&late, FANOUT__FRAME__BODY_DELIVER, 5000);
    assert_non_null(d);
    assert_true(d->deliver->replay);
    assert_int_equal(d->deliver->n_headers, 3);
    assert_memory_equal(d->deliver->headers[1]->value.data, bin, sizeof bin);
    fo_tc_close(&late);
    fo_tc_close(&sub);
    fo_tc_close(&pub);
}

static void test_header_limits(void **state)
{
    (void)state;
    fo_tc_t pub;
    assert_int_equal(fo_tc_open(&pub, broker.port, "pub"), 0);
    static Fanout__Header h[40];
    Fanout__Header *hp[40];
    for (int i = 0; i < 40; i++)
        hp[i] = hdr(&h[i], "k", "v", 1);
    /* 33 headers */
    assert_int_equal(publish_ex(&pub, "hl.t", "x", NULL, hp, 33, 1), 0);
    Fanout__Frame *e = next(&pub, 5000);
    assert_non_null(e);
    assert_int_equal(e->error->code, ERR(BAD_REQUEST));
    /* a key of 65 bytes; a key with a space */
    char longkey[66];
    memset(longkey, 'k', 65);
    longkey[65] = 0;
    hdr(&h[0], longkey, "v", 1);
    assert_int_equal(publish_ex(&pub, "hl.t", "x", NULL, hp, 1, 2), 0);
    e = next(&pub, 5000);
    assert_non_null(e);
    assert_int_equal(e->error->code, ERR(BAD_REQUEST));
    hdr(&h[0], "a key", "v", 1);
    assert_int_equal(publish_ex(&pub, "hl.t", "x", NULL, hp, 1, 3), 0);
    e = next(&pub, 5000);
    assert_int_equal(e->error->code, ERR(BAD_REQUEST));
    /* 5 KiB of values */
    static char big[5000];
    memset(big, 'v', sizeof big);
    hdr(&h[0], "big", big, sizeof big);
    assert_int_equal(publish_ex(&pub, "hl.t", "x", NULL, hp, 1, 4), 0);
    e = next(&pub, 5000);
    assert_int_equal(e->error->code, ERR(BAD_REQUEST));
    /* the connection stays open and exactly-at-the-limit passes */
    for (int i = 0; i < 32; i++)
        hdr(&h[i], "k", big, 4096 / 32 - 1);
    assert_int_equal(publish_ex(&pub, "hl.t", "x", NULL, hp, 32, 5), 0);
    Fanout__Frame *a = next(&pub, 5000);
    assert_non_null(a);
    assert_int_equal(a->body_case, FANOUT__FRAME__BODY_ACK);
    /* an invalid reply address closes, like an invalid topic */
    assert_int_equal(publish_ex(&pub, "hl.t", "x", "bad..reply", NULL, 0, 6), 0);
    int code = -1;
    assert_int_equal(fo_tc_wait_closed(&pub, 5000, &code), 0);
    assert_int_equal(code, ERR(INVALID_TOPIC));
    fo_tc_close(&pub);
}

/* ------------------------------------------------------------ a million */

/* Pipelined requests, each with its own correlation id, answered by a
 * responder; returns the replies received. */
static int requests(fo_tc_t *req, fo_tc_t *svc, const char *inbox, int first, int n)
{
    static uint8_t buf[1 << 16];
    int sent = first, got = 0, answered = 0, end_at = first + n;
    uint64_t deadline = fo_tb_now_ms() + 60000;
    while (got < n && fo_tb_now_ms() < deadline) {
        /* keep about 2,000 requests in flight */
        size_t len = 0;
        while (sent < end_at && sent - first - got < 2000 && len + 256 < sizeof buf) {
            Fanout__Frame f = FANOUT__FRAME__INIT;
            Fanout__Publish p = FANOUT__PUBLISH__INIT;
            char reply[96];
            snprintf(reply, sizeof reply, "%s.%d", inbox, sent++);
            p.topic = "rr.svc";
            p.has_payload = 1;
            p.reply = reply;
            f.body_case = FANOUT__FRAME__BODY_PUBLISH;
            f.publish = &p;
            len += fo_frame_pack(&f, buf + len);
        }
        if (len)
            assert_int_equal(fo_tc_send_raw(req, buf, len), 0);
        Fanout__Frame *f;
        len = 0;
        while (len + 256 < sizeof buf && fo_tc_recv(svc, 0, &f) == 1)
            if (f->body_case == FANOUT__FRAME__BODY_DELIVER) {
                Fanout__Frame r = FANOUT__FRAME__INIT;
                Fanout__Publish p = FANOUT__PUBLISH__INIT;
                p.topic = f->deliver->reply;
                p.has_payload = 1;
                r.body_case = FANOUT__FRAME__BODY_PUBLISH;
                r.publish = &p;
                len += fo_frame_pack(&r, buf + len);
                answered++;
            }
        if (len)
            assert_int_equal(fo_tc_send_raw(svc, buf, len), 0);
        while (fo_tc_recv(req, 0, &f) == 1)
            got += f->body_case == FANOUT__FRAME__BODY_DELIVER && f->sid == 0;
        if (!len && fo_tc_recv(req, 1, &f) == 1)    /* nothing to answer: wait a little */
            got += f->body_case == FANOUT__FRAME__BODY_DELIVER && f->sid == 0;
    }
    (void)answered;
    return got;
}

static void test_million_requests_stay_flat(void **state)
{
    (void)state;
    fo_tc_t req, svc;
    char inbox[64], sinbox[64];
    open_inbox(&req, inbox, sizeof inbox);
    open_inbox(&svc, sinbox, sizeof sinbox);
    assert_int_equal(fo_tc_subscribe(&svc, 1, "rr.svc", NULL), 0);
    assert_int_equal(requests(&req, &svc, inbox, 0, 20000), 20000);       /* warm up */
    double topics0 = fo_tb_metric(&broker, "fanout_topics");
    long rss0 = fo_tb_rss_kib(broker.pid);
    assert_int_equal(requests(&req, &svc, inbox, 20000, 1000000), 1000000);
    double topics1 = fo_tb_metric(&broker, "fanout_topics");
    long rss1 = fo_tb_rss_kib(broker.pid);
    assert_true(topics1 == topics0);                  /* no topic per request */
    assert_true(rss0 > 0 && rss1 > 0);
    print_message("a million requests: topics %.0f -> %.0f, broker RSS %ld -> %ld KiB\n", topics0,
                  topics1, rss0, rss1);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* sanitizers keep freed memory in quarantine: RSS says nothing here */
    (void)rss0;
    (void)rss1;
#else
    /* valgrind (make valgrind) keeps 20 MB of freed blocks aside to catch
     * use-after-free: the same */
    if (!fo_tb_wrapped() && rss1 > rss0 + 16 * 1024)
        fail_msg("broker RSS grew from %ld KiB to %ld KiB over a million requests", rss0, rss1);
#endif
    fo_tc_close(&svc);
    fo_tc_close(&req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_no_responders),
        cmocka_unit_test(test_forged_reply_dropped),
        cmocka_unit_test(test_queue_group_responders),
        cmocka_unit_test(test_headers_round_trip),
        cmocka_unit_test(test_header_limits),
        cmocka_unit_test(test_million_requests_stay_flat),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
