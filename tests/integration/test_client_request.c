/* test_client_request.c -- libfanout's request/reply and headers against a
 * real fanoutd: fo_request round trip; fo_request_async (its callback runs
 * once, on the reader thread); timeouts, sync and async; no responders
 * (an error at once, not a timeout); responders in a queue group each get
 * a share; replies reach no subscription, neither another client's ">"
 * nor the requester's own; headers byte for byte (binary and empty
 * values, 32 headers, 64-byte keys) through publish, fo_sub_next, and
 * request and response; over-limit headers refused before sending; a lost
 * connection fails the waiting requests and the next inbox works;
 * max_requests; several threads issuing requests at once (run under
 * TSan too). Every wait has a deadline. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "fanout.h"
#include "client_int.h"
#include "harness.h"

static fo_tb_t broker;

static int group_setup(void **state)
{
    (void)state;
    static const char *const extra[] = { "--threads", "2", NULL };
    return fo_tb_start(&broker, extra) ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return fo_tb_stop(&broker) == 0 ? 0 : -1;
}

static fo_client_t *open_opts(fo_client_opts_t *o)
{
    const char *servers[] = { broker.addr };
    o->servers = servers;
    o->nservers = 1;
    o->name = "test_client_request";
    fo_client_t *c = NULL;
    char err[256];
    if (fo_client_connect(o, &c, err, sizeof err))
        fprintf(stderr, "connect: %s\n", err);
    return c;
}

static fo_client_t *open_client(void)
{
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    return open_opts(&o);
}

/* ------------------------------------------------------------ responders */

/* Answers every request with its own payload and headers, plus a header
 * "by" naming the responder when there is room; counts what it answered.
 * (Callbacks run on the reader thread: they count failures for the test
 * thread to assert, cmocka's asserts belong to the test's own thread.) */
typedef struct echo {
    fo_client_t *c;
    fo_sub_t *s;
    char name[16];
    _Atomic int answered, failed;
} echo_t;

static void echo_cb(void *ud, fo_sub_t *s, const fo_msg_t *m)
{
    (void)s;
    echo_t *e = ud;
    if (!m->reply)
        return;
    fo_header_t hs[FO_HEADERS_MAX];
    size_t n = m->nheaders < FO_HEADERS_MAX ? m->nheaders : FO_HEADERS_MAX;
    if (n)
        memcpy(hs, m->headers, n * sizeof *hs);
    if (n < FO_HEADERS_MAX && !fo_msg_header(m, "by"))
        hs[n++] = (fo_header_t){ "by", e->name, strlen(e->name) };
    fo_pub_opts_t po;
    fo_pub_opts_init(&po);
    po.headers = hs;
    po.nheaders = n;
    if (fo_respond(e->c, m, m->payload, m->payload_len, &po) == FO_OK)
        atomic_fetch_add(&e->answered, 1);
    else
        atomic_fetch_add(&e->failed, 1);
}

static void echo_start(echo_t *e, const char *topic, const char *queue, const char *name)
{
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->c = open_client();
    assert_non_null(e->c);
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.cb = echo_cb;
    so.ud = e;
    so.queue = queue;
    assert_int_equal(fo_subscribe(e->c, topic, &so, &e->s), FO_OK);
}

static void echo_stop(echo_t *e)
{
    assert_int_equal(fo_client_close(e->c, 0), FO_OK);
    assert_int_equal(atomic_load(&e->failed), 0);
}

/* ------------------------------------------------------------ tests */

static void test_round_trip(void **state)
{
    (void)state;
    echo_t e;
    echo_start(&e, "rr.echo", NULL, "solo");
    fo_client_t *c = open_client();
    assert_non_null(c);
    fo_reply_t *r = NULL;
    assert_int_equal(fo_request(c, "rr.echo", "ping?", 5, NULL, 5000, &r), FO_OK);
    assert_non_null(r);
    assert_int_equal(r->msg.payload_len, 5);
    assert_memory_equal(r->msg.payload, "ping?", 5);
    assert_int_equal(r->msg.seq, 0);                       /* replies are not sequenced */
    assert_int_equal(strncmp(r->msg.topic, "_INBOX.", 7), 0);
    assert_int_equal(r->msg.topic_len, strlen(r->msg.topic));
    assert_null(r->msg.reply);
    const fo_header_t *by = fo_msg_header(&r->msg, "by");
    assert_non_null(by);
    assert_int_equal(by->value_len, 4);
    assert_memory_equal(by->value, "solo", 4);
    fo_reply_free(r);
    /* an empty request, and one after another: new correlation ids */
    char first[96];
    assert_int_equal(fo_request(c, "rr.echo", NULL, 0, NULL, 5000, &r), FO_OK);
    assert_int_equal(r->msg.payload_len, 0);
    snprintf(first, sizeof first, "%s", r->msg.topic);
    fo_reply_free(r);
    assert_int_equal(fo_request(c, "rr.echo", "x", 1, NULL, 5000, &r), FO_OK);
    assert_string_not_equal(first, r->msg.topic);
    fo_reply_free(r);
    fo_reply_free(NULL);
    assert_int_equal(atomic_load(&e.answered), 3);
    /* misuse */
    fo_pub_opts_t po;
    fo_pub_opts_init(&po);
    po.reply = "some.where";
    assert_int_equal(fo_request(c, "rr.echo", "x", 1, &po, 5000, &r), FO_ERR_INVAL);
    assert_null(r);
    assert_int_equal(fo_request(c, "rr.echo", "x", 1, NULL, 0, &r), FO_ERR_INVAL);
    assert_int_equal(fo_request(c, "rr..echo", "x", 1, NULL, 1000, &r), FO_ERR_INVAL);
    assert_int_equal(fo_request(c, "rr.*", "x", 1, NULL, 1000, &r), FO_ERR_INVAL);
    assert_int_equal(fo_client_connected(c), 1);
    assert_int_equal(fo_request(c, "rr.echo", "x", 1, NULL, 1000, NULL), FO_ERR_INVAL);
    fo_msg_t plain = { "a", 1, "", 0, 1, 0, 0, NULL, NULL, 0 };
    assert_int_equal(fo_respond(c, &plain, "x", 1, NULL), FO_ERR_INVAL);
    assert_int_equal(fo_client_close(c, 0), FO_OK);
    echo_stop(&e);
}

/* ------------------------------------------------------------ async */

typedef struct outcome {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    fo_err_t err;
    char payload[64];
    size_t len;
    pthread_t thread;
    uint64_t at_ms;
} outcome_t;

#define OUTCOME_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, FO_OK, "", 0, 0, 0 }

static void on_reply(void *ud, fo_err_t err, const fo_msg_t *m)
{
    outcome_t *o = ud;
    pthread_mutex_lock(&o->mu);
    o->calls++;
    o->err = err;
    o->thread = pthread_self();
    o->at_ms = fo_tb_now_ms();
    if (m) {
        o->len = m->payload_len < sizeof o->payload ? m->payload_len : sizeof o->payload;
        memcpy(o->payload, m->payload, o->len);
    } else {
        assert_int_not_equal(err, FO_OK);
    }
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

/* Wait (deadline ms) until o has been called; returns the call count. */
static int await(outcome_t *o, int ms)
{
    uint64_t end = fo_tb_now_ms() + (uint64_t)ms;
    pthread_mutex_lock(&o->mu);
    while (!o->calls && fo_tb_now_ms() < end) {
        pthread_mutex_unlock(&o->mu);
        usleep(1000);
        pthread_mutex_lock(&o->mu);
    }
    int n = o->calls;
    pthread_mutex_unlock(&o->mu);
    return n;
}

static void test_async_once_on_reader(void **state)
{
    (void)state;
    echo_t e;
    echo_start(&e, "rr.async", NULL, "a");
    fo_client_t *c = open_client();
    outcome_t o = OUTCOME_INIT;
    assert_int_equal(fo_request_async(c, "rr.async", "hello", 5, NULL, 5000, on_reply, &o), FO_OK);
    assert_int_equal(await(&o, 5000), 1);
    assert_int_equal(o.err, FO_OK);
    assert_int_equal(o.len, 5);
    assert_memory_equal(o.payload, "hello", 5);
    assert_true(pthread_equal(o.thread, c->reader));        /* the reader thread */
    /* once: a round trip later (and after its timer would have fired for
     * a short timeout) it has still run once */
    outcome_t o2 = OUTCOME_INIT;
    assert_int_equal(fo_request_async(c, "rr.async", "x", 1, NULL, 50, on_reply, &o2), FO_OK);
    assert_int_equal(await(&o2, 5000), 1);
    assert_int_equal(o2.err, FO_OK);
    usleep(100 * 1000);
    assert_int_equal(fo_client_flush(c, 5000), FO_OK);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o2.calls, 1);
    assert_int_equal(fo_request_async(c, "rr.async", "x", 1, NULL, 50, NULL, NULL), FO_ERR_INVAL);
    assert_int_equal(fo_client_close(c, 0), FO_OK);
    echo_stop(&e);
}

/* ------------------------------------------------------------ timeouts */

static void test_timeout(void **state)
{
    (void)state;
    /* a responder that never answers */
    fo_client_t *svc = open_client();
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(svc, "rr.silent", NULL, &s), FO_OK);
    fo_client_t *c = open_client();
    uint64_t t0 = fo_tb_now_ms();
    fo_reply_t *r = (fo_reply_t *)1;
    assert_int_equal(fo_request(c, "rr.silent", "?", 1, NULL, 200, &r), FO_ERR_TIMEOUT);
    uint64_t took = fo_tb_now_ms() - t0;
    assert_null(r);
    assert_true(took >= 195 && took < 3000);
    /* async: the reader's timer, from the moment it was sent */
    outcome_t o = OUTCOME_INIT;
    t0 = fo_tb_now_ms();
    assert_int_equal(fo_request_async(c, "rr.silent", "?", 1, NULL, 150, on_reply, &o), FO_OK);
    assert_int_equal(await(&o, 5000), 1);
    assert_int_equal(o.err, FO_ERR_TIMEOUT);
    assert_true(o.at_ms - t0 >= 145 && o.at_ms - t0 < 3000);
    /* an earlier deadline than the one armed still fires first */
    outcome_t late = OUTCOME_INIT, early = OUTCOME_INIT;
    assert_int_equal(fo_request_async(c, "rr.silent", "?", 1, NULL, 3000, on_reply, &late), FO_OK);
    t0 = fo_tb_now_ms();
    assert_int_equal(fo_request_async(c, "rr.silent", "?", 1, NULL, 100, on_reply, &early), FO_OK);
    assert_int_equal(await(&early, 5000), 1);
    assert_int_equal(early.err, FO_ERR_TIMEOUT);
    assert_true(early.at_ms - t0 < 2000);
    assert_int_equal(late.calls, 0);
    assert_int_equal(await(&late, 6000), 1);
    assert_int_equal(late.err, FO_ERR_TIMEOUT);
    /* the requests did reach the responder */
    const fo_msg_t *m;
    assert_int_equal(fo_sub_next(s, 5000, &m), FO_OK);
    assert_non_null(m->reply);
    assert_int_equal(strncmp(m->reply, "_INBOX.", 7), 0);
    assert_int_equal(fo_client_close(c, 0), FO_OK);
    assert_int_equal(fo_client_close(svc, 0), FO_OK);
}

static void test_no_responders(void **state)
{
    (void)state;
    fo_client_t *c = open_client();
    uint64_t t0 = fo_tb_now_ms();
    fo_reply_t *r;
    assert_int_equal(fo_request(c, "rr.nobody.home", "?", 1, NULL, 10000, &r),
                     FO_ERR_NO_RESPONDERS);
    assert_true(fo_tb_now_ms() - t0 < 2000);              /* at once, not at the timeout */
    char why[256];
    assert_non_null(strstr(fo_client_last_error(c, why, sizeof why), "ERR_NO_RESPONDERS"));
    assert_string_equal(fo_strerror(FO_ERR_NO_RESPONDERS), "no responders");
    outcome_t o = OUTCOME_INIT;
    t0 = fo_tb_now_ms();
    assert_int_equal(fo_request_async(c, "rr.nobody.home", "?", 1, NULL, 10000, on_reply, &o),
                     FO_OK);
    assert_int_equal(await(&o, 5000), 1);
    assert_int_equal(o.err, FO_ERR_NO_RESPONDERS);
    assert_true(o.at_ms - t0 < 2000);
    /* the connection stays, and so does the client's other business */
    assert_int_equal(fo_client_connected(c), 1);
    uint64_t seq;
    assert_int_equal(fo_publish_sync(c, "rr.nobody.home", "x", 1, 5000, &seq), FO_OK);
    /* a confirmed publish with a reply address nobody serves says so too */
    fo_pub_opts_t po;
    fo_pub_opts_init(&po);
    po.reply = "rr.answers.here";
    assert_int_equal(fo_publish_sync_ex(c, "rr.nobody.there", "x", 1, &po, 5000, &seq),
                     FO_ERR_NO_RESPONDERS);
    assert_int_equal(fo_client_connected(c), 1);
    assert_int_equal(fo_client_close(c, 0), FO_OK);
}

/* ------------------------------------------------------------ queue groups */

static void test_queue_group_responders(void **state)
{
    (void)state;
    echo_t e[3];
    const char *names[] = { "w0", "w1", "w2" };
    for (int i = 0; i < 3; i++)
        echo_start(&e[i], "rr.work", "workers", names[i]);
    fo_client_t *c = open_client();
    int by[3] = { 0 };
    for (int i = 0; i < 60; i++) {
        fo_reply_t *r;
        assert_int_equal(fo_request(c, "rr.work", "job", 3, NULL, 5000, &r), FO_OK);
        const fo_header_t *h = fo_msg_header(&r->msg, "by");
        assert_non_null(h);
        assert_int_equal(h->value_len, 2);
        by[((const char *)h->value)[1] - '0']++;
        fo_reply_free(r);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(by[i] > 0);                            /* each gets a share */
        assert_int_equal(atomic_load(&e[i].answered), by[i]);  /* one answer each */
    }
    assert_int_equal(by[0] + by[1] + by[2], 60);
    assert_int_equal(fo_client_close(c, 0), FO_OK);
    for (int i = 0; i < 3; i++)
        echo_stop(&e[i]);
}

/* ------------------------------------------------------------ invisibility */

typedef struct spy {
    _Atomic int seen, inbox_seen;
} spy_t;

static void spy_cb(void *ud, fo_sub_t *s, const fo_msg_t *m)
{
    (void)s;
    spy_t *sp = ud;
    atomic_fetch_add(&sp->seen, 1);
    if (!strncmp(m->topic, "_INBOX", 6) || m->seq == 0)
        atomic_fetch_add(&sp->inbox_seen, 1);
}

static void test_replies_reach_no_subscription(void **state)
{
    (void)state;
    echo_t e;
    echo_start(&e, "rr.seen", NULL, "e");
    spy_t other = { 0 }, own = { 0 };
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.cb = spy_cb;
    fo_sub_t *s1, *s2;
    fo_client_t *spy = open_client();
    so.ud = &other;
    assert_int_equal(fo_subscribe(spy, ">", &so, &s1), FO_OK);
    fo_client_t *c = open_client();
    so.ud = &own;                       /* the requester's own ">" */
    assert_int_equal(fo_subscribe(c, ">", &so, &s2), FO_OK);
    for (int i = 0; i < 20; i++) {
        fo_reply_t *r;
        assert_int_equal(fo_request(c, "rr.seen", "q", 1, NULL, 5000, &r), FO_OK);
        fo_reply_free(r);
    }
    /* both saw the 20 requests (they match ">") and nothing else */
    uint64_t end = fo_tb_now_ms() + 5000;
    while ((atomic_load(&other.seen) < 20 || atomic_load(&own.seen) < 20) && fo_tb_now_ms() < end)
        usleep(1000);
    assert_int_equal(fo_client_flush(spy, 5000), FO_OK);
    assert_int_equal(fo_client_flush(c, 5000), FO_OK);
    assert_int_equal(atomic_load(&other.seen), 20);
    assert_int_equal(atomic_load(&own.seen), 20);
    assert_int_equal(atomic_load(&other.inbox_seen), 0);
    assert_int_equal(atomic_load(&own.inbox_seen), 0);
    assert_int_equal(fo_sub_delivered_count(s2), 20);
    assert_int_equal(fo_client_close(c, 0), FO_OK);
    assert_int_equal(fo_client_close(spy, 0), FO_OK);
    echo_stop(&e);
}

/* ------------------------------------------------------------ headers */

static uint8_t vals[FO_HEADERS_MAX][64];
static char keys[FO_HEADERS_MAX][FO_HEADER_KEY_MAX + 1];

/* 32 headers: binary values (NUL bytes too), one empty, a 64-byte key,
 * the whole 4 KiB budget nearly used. */
static size_t make_headers(fo_header_t *hs)
{
    for (int i = 0; i < FO_HEADERS_MAX; i++) {
        size_t kl = i == 0 ? FO_HEADER_KEY_MAX : (size_t)snprintf(keys[i], 16, "h-%02d~!", i);
        if (i == 0)
            for (size_t k = 0; k < kl; k++)
                keys[0][k] = (char)(0x21 + k);
        keys[i][kl] = 0;
        for (int k = 0; k < 64; k++)
            vals[i][k] = (uint8_t)(i * 7 + k * 13);
        hs[i] = (fo_header_t){ keys[i], vals[i], i == 5 ? 0 : 60 + (size_t)(i % 5) };
    }
    hs[6].value = NULL;                  /* NULL with length 0 is fine */
    hs[6].value_len = 0;
    return FO_HEADERS_MAX;
}

/* 1 when m carries exactly hs[0..n), byte for byte. */
static int same_headers(const fo_msg_t *m, const fo_header_t *hs, size_t n)
{
    if (m->nheaders != n || (n && !m->headers))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(m->headers[i].key, hs[i].key) || m->headers[i].value_len != hs[i].value_len ||
            !m->headers[i].value ||
            (hs[i].value_len && memcmp(m->headers[i].value, hs[i].value, hs[i].value_len)))
            return 0;
    return 1;
}

static void assert_headers(const fo_msg_t *m, const fo_header_t *hs, size_t n)
{
    assert_int_equal(m->nheaders, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(m->headers[i].key, hs[i].key);
        assert_int_equal(m->headers[i].value_len, hs[i].value_len);
        assert_non_null(m->headers[i].value);
        if (hs[i].value_len)
            assert_memory_equal(m->headers[i].value, hs[i].value, hs[i].value_len);
    }
}

static fo_header_t sent[FO_HEADERS_MAX];
static _Atomic int cb_checked, cb_plain;

static void headers_cb(void *ud, fo_sub_t *s, const fo_msg_t *m)
{
    (void)ud;
    (void)s;
    if (!m->nheaders && !m->reply)
        atomic_fetch_add(&cb_plain, 1);
    else if (same_headers(m, sent, FO_HEADERS_MAX) && m->reply &&
             !strcmp(m->reply, "rr.some.reply"))
        atomic_fetch_add(&cb_checked, 1);
}

static void test_headers_byte_for_byte(void **state)
{
    (void)state;
    size_t n = make_headers(sent);
    fo_client_t *c = open_client();
    fo_sub_t *q, *cbs;
    assert_int_equal(fo_subscribe(c, "rr.hdr", NULL, &q), FO_OK);      /* queue mode */
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.cb = headers_cb;
    assert_int_equal(fo_subscribe(c, "rr.hdr", &so, &cbs), FO_OK);     /* callback mode */
    fo_pub_opts_t po;
    fo_pub_opts_init(&po);
    po.headers = sent;
    po.nheaders = n;
    po.reply = "rr.some.reply";
    fo_client_t *p = open_client();
    assert_int_equal(fo_publish_ex(p, "rr.hdr", "body", 4, &po), FO_OK);
    uint64_t seq = 0;
    assert_int_equal(fo_publish_sync_ex(p, "rr.hdr", "body2", 5, &po, 5000, &seq), FO_OK);
    assert_true(seq >= 2);
    for (int i = 0; i < 2; i++) {
        const fo_msg_t *m;
        assert_int_equal(fo_sub_next(q, 5000, &m), FO_OK);
        assert_headers(m, sent, n);
        assert_string_equal(m->reply, "rr.some.reply");
        assert_int_equal(m->payload_len, i ? 5 : 4);
    }
    uint64_t end = fo_tb_now_ms() + 5000;
    while (atomic_load(&cb_checked) < 2 && fo_tb_now_ms() < end)
        usleep(1000);
    assert_int_equal(atomic_load(&cb_checked), 2);
    /* a message without: no headers, no reply */
    assert_int_equal(fo_publish_ex(p, "rr.hdr", "plain", 5, NULL), FO_OK);
    assert_int_equal(fo_client_flush(p, 5000), FO_OK);
    const fo_msg_t *m;
    assert_int_equal(fo_sub_next(q, 5000, &m), FO_OK);
    assert_int_equal(m->nheaders, 0);
    assert_null(m->headers);
    assert_null(m->reply);
    assert_int_equal(fo_unsubscribe(cbs), FO_OK);
    assert_int_equal(atomic_load(&cb_checked), 2);
    assert_int_equal(atomic_load(&cb_plain), 1);
    /* through a request and its response: the echo returns them all */
    echo_t e;
    echo_start(&e, "rr.hdr.echo", NULL, "e");
    fo_reply_t *r;
    po.reply = NULL;
    assert_int_equal(fo_request(p, "rr.hdr.echo", "\0\1\2", 3, &po, 5000, &r), FO_OK);
    assert_headers(&r->msg, sent, n);                  /* 32: no room for "by" */
    assert_int_equal(r->msg.payload_len, 3);
    assert_memory_equal(r->msg.payload, "\0\1\2", 3);
    fo_reply_free(r);
    echo_stop(&e);
    assert_int_equal(fo_client_close(p, 0), FO_OK);
    assert_int_equal(fo_client_close(c, 0), FO_OK);
}

static void test_header_limits_refused_before_sending(void **state)
{
    (void)state;
    fo_client_t *c = open_client();
    fo_header_t hs[FO_HEADERS_MAX + 1];
    for (int i = 0; i <= FO_HEADERS_MAX; i++)
        hs[i] = (fo_header_t){ "k", "v", 1 };
    fo_pub_opts_t po;
    fo_pub_opts_init(&po);
    po.headers = hs;
    po.nheaders = FO_HEADERS_MAX + 1;
    char why[256];
    fo_reply_t *r;
    assert_int_equal(fo_publish_ex(c, "rr.lim", "x", 1, &po), FO_ERR_RANGE);
    assert_non_null(strstr(fo_client_last_error(c, why, sizeof why), "33 headers (at most 32)"));
    assert_int_equal(fo_request(c, "rr.lim", "x", 1, &po, 1000, &r), FO_ERR_RANGE);
    po.nheaders = 2;
    char longkey[FO_HEADER_KEY_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    const char *badkeys[] = { "", "with space", "tab\tkey", longkey, "\x7f" };
    for (size_t i = 0; i < sizeof badkeys / sizeof badkeys[0]; i++) {
        hs[1].key = badkeys[i];
        assert_int_equal(fo_publish_ex(c, "rr.lim", "x", 1, &po), FO_ERR_RANGE);
        assert_non_null(strstr(fo_client_last_error(c, why, sizeof why), "header 2: a key"));
    }
    hs[1].key = NULL;
    assert_int_equal(fo_publish_ex(c, "rr.lim", "x", 1, &po), FO_ERR_RANGE);
    hs[1].key = "k";
    static uint8_t big[FO_HEADERS_BYTES];
    hs[1] = (fo_header_t){ "k", big, FO_HEADERS_BYTES - 2 };   /* 1 + 1 + 1 + 4094: 4097 */
    assert_int_equal(fo_publish_sync_ex(c, "rr.lim", "x", 1, &po, 1000, NULL), FO_ERR_RANGE);
    assert_non_null(strstr(fo_client_last_error(c, why, sizeof why), "headers of 4097 bytes"));
    hs[1].value_len = FO_HEADERS_BYTES - 3;                    /* exactly 4096: fine */
    assert_int_equal(fo_publish_sync_ex(c, "rr.lim", "x", 1, &po, 5000, NULL), FO_OK);
    hs[1] = (fo_header_t){ "k", NULL, 3 };
    assert_int_equal(fo_publish_ex(c, "rr.lim", "x", 1, &po), FO_ERR_INVAL);
    po.nheaders = 0;
    po.reply = "not..valid";
    assert_int_equal(fo_publish_ex(c, "rr.lim", "x", 1, &po), FO_ERR_INVAL);
    assert_non_null(strstr(fo_client_last_error(c, why, sizeof why), "invalid reply address"));
    po.reply = NULL;
    po.nheaders = 1;
    po.headers = NULL;
    assert_int_equal(fo_publish_ex(c, "rr.lim", "x", 1, &po), FO_ERR_INVAL);
    /* nothing of that reached the broker: the connection is fine */
    assert_int_equal(fo_client_flush(c, 5000), FO_OK);
    assert_int_equal(fo_client_connected(c), 1);
    fo_client_stats_t st;
    fo_client_stats(c, &st);
    assert_int_equal(st.server_errors, 0);
    assert_int_equal(fo_client_close(c, 0), FO_OK);
}

/* ------------------------------------------------------------ reconnect */

typedef struct syncreq {
    fo_client_t *c;
    fo_err_t err;
} syncreq_t;

static void *sync_request(void *arg)
{
    syncreq_t *q = arg;
    fo_reply_t *r = NULL;
    q->err = fo_request(q->c, "rr.lost", "?", 1, NULL, -1, &r);
    fo_reply_free(r);
    return NULL;
}

static void test_lost_connection_fails_waiting_requests(void **state)
{
    (void)state;
    fo_client_t *svc = open_client();
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(svc, "rr.lost", NULL, &s), FO_OK);   /* never answers */
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 50;
    fo_client_t *c = open_opts(&o);
    outcome_t a = OUTCOME_INIT;
    assert_int_equal(fo_request_async(c, "rr.lost", "?", 1, NULL, -1, on_reply, &a), FO_OK);
    syncreq_t q = { c, FO_OK };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sync_request, &q), 0);
    /* both reached the responder: they are waiting for replies */
    const fo_msg_t *m;
    char addr[96];
    assert_int_equal(fo_sub_next(s, 5000, &m), FO_OK);
    snprintf(addr, sizeof addr, "%s", m->reply);
    assert_int_equal(fo_sub_next(s, 5000, &m), FO_OK);
    /* the broker closes us: an invalid topic */
    assert_int_equal(fo_publish(c, "rr..bad", "x", 1), FO_OK);
    assert_int_equal(fo_client_flush(c, 0), FO_OK);
    assert_int_equal(await(&a, 5000), 1);
    assert_int_equal(a.err, FO_ERR_NOT_CONNECTED);
    pthread_join(th, NULL);
    assert_int_equal(q.err, FO_ERR_NOT_CONNECTED);
    /* reconnected: a new inbox, and requests work again */
    uint64_t end = fo_tb_now_ms() + 10000;
    while (!fo_client_connected(c) && fo_tb_now_ms() < end)
        usleep(2000);
    assert_int_equal(fo_client_connected(c), 1);
    echo_t e;
    echo_start(&e, "rr.after", NULL, "e");
    fo_reply_t *r;
    assert_int_equal(fo_request(c, "rr.after", "ok", 2, NULL, 5000, &r), FO_OK);
    assert_memory_equal(r->msg.payload, "ok", 2);
    size_t il = 7 + 32;                                 /* "_INBOX." + 32 hex */
    assert_int_not_equal(memcmp(r->msg.topic, addr, il), 0);
    fo_reply_free(r);
    /* an answer to the old inbox goes nowhere (and hurts nothing) */
    fo_msg_t old = { "rr.lost", 7, "", 0, 1, 0, 0, addr, NULL, 0 };
    assert_int_equal(fo_respond(svc, &old, "late", 4, NULL), FO_OK);
    assert_int_equal(fo_client_flush(svc, 5000), FO_OK);
    assert_int_equal(fo_request(c, "rr.after", "ok2", 3, NULL, 5000, &r), FO_OK);
    assert_memory_equal(r->msg.payload, "ok2", 3);
    fo_reply_free(r);
    echo_stop(&e);
    assert_int_equal(fo_client_close(c, 0), FO_OK);
    assert_int_equal(fo_client_close(svc, 0), FO_OK);
}

/* ------------------------------------------------------------ bounds */

static fo_client_t *cb_client;
static _Atomic int cb_sync_result = -1;

static void request_from_callback(void *ud, fo_err_t err, const fo_msg_t *m)
{
    (void)m;
    on_reply(ud, err, m);
    fo_reply_t *r;
    atomic_store(&cb_sync_result, fo_request(cb_client, "rr.echo2", "x", 1, NULL, 100, &r));
}

static void test_max_requests_and_close(void **state)
{
    (void)state;
    fo_client_t *svc = open_client();
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(svc, "rr.full", NULL, &s), FO_OK);
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    o.max_requests = 4;
    fo_client_t *c = open_opts(&o);
    outcome_t out[4] = { OUTCOME_INIT, OUTCOME_INIT, OUTCOME_INIT, OUTCOME_INIT };
    for (int i = 0; i < 4; i++)
        assert_int_equal(fo_request_async(c, "rr.full", "?", 1, NULL, 60000, on_reply, &out[i]),
                         FO_OK);
    outcome_t extra = OUTCOME_INIT;
    assert_int_equal(fo_request_async(c, "rr.full", "?", 1, NULL, 60000, on_reply, &extra),
                     FO_ERR_BUSY);
    fo_reply_t *r;
    assert_int_equal(fo_request(c, "rr.full", "?", 1, NULL, 1000, &r), FO_ERR_BUSY);
    char why[256];
    assert_non_null(strstr(fo_client_last_error(c, why, sizeof why), "max_requests"));
    /* a sync request from a callback is refused (it would wait for itself) */
    echo_t e;
    echo_start(&e, "rr.echo2", NULL, "e");
    const fo_msg_t *m;
    for (int i = 0; i < 4; i++)
        assert_int_equal(fo_sub_next(s, 5000, &m), FO_OK);
    fo_client_t *d = open_client();
    cb_client = d;
    outcome_t viacb = OUTCOME_INIT;
    assert_int_equal(fo_request_async(d, "rr.echo2", "x", 1, NULL, 5000, request_from_callback,
                                      &viacb), FO_OK);
    assert_int_equal(await(&viacb, 5000), 1);
    uint64_t end = fo_tb_now_ms() + 5000;
    while (atomic_load(&cb_sync_result) == -1 && fo_tb_now_ms() < end)
        usleep(1000);
    assert_int_equal(atomic_load(&cb_sync_result), FO_ERR_INVAL);
    assert_int_equal(fo_client_close(d, 0), FO_OK);
    /* closing the client tells every waiting request, once */
    assert_int_equal(fo_client_close(c, 0), FO_OK);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(out[i].calls, 1);
        assert_int_equal(out[i].err, FO_ERR_CLOSED);
    }
    assert_int_equal(extra.calls, 0);
    echo_stop(&e);
    assert_int_equal(fo_client_close(svc, 0), FO_OK);
}

/* ------------------------------------------------------------ threads */

enum { THREADS = 4, PER_THREAD = 300 };

typedef struct worker {
    fo_client_t *c;
    int idx;
    int ok;
    _Atomic int async_ok;
} worker_t;

static void stress_cb(void *ud, fo_err_t err, const fo_msg_t *m)
{
    worker_t *w = ud;
    if (!err && m->payload_len == 5 && !memcmp(m->payload, "async", 5))
        atomic_fetch_add(&w->async_ok, 1);
}

static void *stress(void *arg)
{
    worker_t *w = arg;
    char body[32];
    for (int i = 0; i < PER_THREAD; i++) {
        int n = snprintf(body, sizeof body, "t%d-%d", w->idx, i);
        if (i % 3 == 0 &&
            fo_request_async(w->c, "rr.stress", "async", 5, NULL, 10000, stress_cb, w) != FO_OK)
            continue;
        fo_reply_t *r;
        if (fo_request(w->c, "rr.stress", body, (size_t)n, NULL, 10000, &r) != FO_OK)
            continue;
        /* the reply to this request, not another thread's */
        w->ok += r->msg.payload_len == (size_t)n && !memcmp(r->msg.payload, body, (size_t)n);
        fo_reply_free(r);
    }
    return NULL;
}

static void test_threads_request_concurrently(void **state)
{
    (void)state;
    echo_t e[2];
    echo_start(&e[0], "rr.stress", "svc", "s0");
    echo_start(&e[1], "rr.stress", "svc", "s1");
    fo_client_t *c = open_client();
    worker_t w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){ .c = c, .idx = i };
        assert_int_equal(pthread_create(&th[i], NULL, stress, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    int want_async = (PER_THREAD + 2) / 3;
    uint64_t end = fo_tb_now_ms() + 10000;
    for (int i = 0; i < THREADS; i++)
        while (atomic_load(&w[i].async_ok) < want_async && fo_tb_now_ms() < end)
            usleep(1000);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(w[i].ok, PER_THREAD);
        assert_int_equal(atomic_load(&w[i].async_ok), want_async);
    }
    pthread_mutex_lock(&c->rr.mu);
    size_t left = c->rr.count;
    pthread_mutex_unlock(&c->rr.mu);
    assert_int_equal(left, 0);                          /* nothing left waiting */
    assert_int_equal(fo_client_close(c, 0), FO_OK);
    echo_stop(&e[0]);
    echo_stop(&e[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_async_once_on_reader),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_no_responders),
        cmocka_unit_test(test_queue_group_responders),
        cmocka_unit_test(test_replies_reach_no_subscription),
        cmocka_unit_test(test_headers_byte_for_byte),
        cmocka_unit_test(test_header_limits_refused_before_sending),
        cmocka_unit_test(test_lost_connection_fails_waiting_requests),
        cmocka_unit_test(test_max_requests_and_close),
        cmocka_unit_test(test_threads_request_concurrently),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
