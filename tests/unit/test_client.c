/* test_client.c -- libfanout against a scripted broker (test_client_peer.h):
 * handshake, buffered and confirmed publish, ERROR frames, subscribe in
 * both modes, frames cut into single bytes, GAPs (and no guessing from
 * out-of-order sequences),
 * PING/PONG both ways, partial writes, connect errors, drain. Reconnect
 * is in test_client_reconnect.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <cmocka.h>
#include "fanout.h"
#include "test_client_peer.h"

typedef struct got {
    pthread_mutex_t mu;
    int n;
    uint64_t seqs[64];
    char payloads[64][32];
    int gaps;
    fo_gap_t gap[8];
    char gap_topic[8][32];
    int events[16], nevents;
    fo_sub_t *unsub_me;     /* unsubscribe this from the callback */
    fo_err_t unsub_err;     /* ... and what it returned */
} got_t;

static void on_msg(void *ud, fo_sub_t *s, const fo_msg_t *m)
{
    got_t *g = ud;
    pthread_mutex_lock(&g->mu);
    if (g->n < 64) {
        g->seqs[g->n] = m->seq;
        snprintf(g->payloads[g->n], 32, "%.*s", (int)m->payload_len,
                 (const char *)m->payload);
    }
    g->n++;
    pthread_mutex_unlock(&g->mu);
    if (g->unsub_me == s) {
        g->unsub_me = NULL;
        g->unsub_err = fo_unsubscribe(s);
    }
}

static void on_gap(void *ud, const fo_gap_t *gp)
{
    got_t *g = ud;
    pthread_mutex_lock(&g->mu);
    if (g->gaps < 8) {
        g->gap[g->gaps] = *gp;
        snprintf(g->gap_topic[g->gaps], 32, "%s", gp->topic);
    }
    g->gaps++;
    pthread_mutex_unlock(&g->mu);
}

static void on_event(void *ud, fo_event_t ev, fo_err_t err, const char *text)
{
    (void)err; (void)text;
    got_t *g = ud;
    pthread_mutex_lock(&g->mu);
    if (g->nevents < 16)
        g->events[g->nevents++] = ev;
    pthread_mutex_unlock(&g->mu);
}

static int got_wait(got_t *g, int n, int timeout_ms)
{
    long long end = peer_now_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        int have = g->n;
        pthread_mutex_unlock(&g->mu);
        if (have >= n || peer_now_ms() > end)
            return have;
        usleep(1000);
    }
}

typedef struct fx {
    peer_t peer;
    char addr[64];
    const char *servers[1];
    fo_client_opts_t o;
    fo_client_t *c;
    got_t got;
    fo_arena_t a;
} fx_t;

static int setup(void **state)
{
    fx_t *x = calloc(1, sizeof *x);
    if (peer_start(&x->peer))
        return -1;
    peer_addr(&x->peer, x->addr, sizeof x->addr);
    x->servers[0] = x->addr;
    fo_client_opts_init(&x->o);
    x->o.servers = x->servers;
    x->o.nservers = 1;
    x->o.name = "unit";
    x->o.connect_timeout_ms = 2000;
    x->o.request_timeout_ms = 2000;
    x->o.reconnect_min_ms = 5;
    x->o.reconnect_max_ms = 20;
    x->o.on_gap = on_gap;
    x->o.on_event = on_event;
    x->o.ud = &x->got;
    pthread_mutex_init(&x->got.mu, NULL);
    assert_int_equal(fo_arena_init(&x->a, 4096, 0), FO_OK);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fx_t *x = *state;
    fo_client_destroy(x->c);
    peer_stop(&x->peer);
    fo_arena_destroy(&x->a);
    pthread_mutex_destroy(&x->got.mu);
    free(x);
    return 0;
}

static void connect_ok(fx_t *x)
{
    char err[128];
    assert_int_equal(fo_client_connect(&x->o, &x->c, err, sizeof err), FO_OK);
}

static void test_hello_welcome(void **state)
{
    fx_t *x = *state;
    connect_ok(x);
    assert_int_equal(peer_wait(&x->peer, FANOUT__FRAME__BODY_HELLO, 1, 2000), 1);
    Fanout__Frame *h = peer_get(&x->peer, FANOUT__FRAME__BODY_HELLO, 0, &x->a);
    assert_non_null(h);
    assert_int_equal(h->hello->version, 1);
    assert_string_equal(h->hello->client_name, "unit");
    assert_true(fo_client_connected(x->c));
}

static void test_publish_buffered_then_flush(void **state)
{
    fx_t *x = *state;
    connect_ok(x);
    for (int i = 0; i < 100; i++) {
        char p[16];
        int n = snprintf(p, sizeof p, "m%d", i);
        assert_int_equal(fo_publish(x->c, "a.b", p, (size_t)n), FO_OK);
    }
    /* Nothing forces a write before the flush (100 small frames < 64 KiB). */
    assert_int_equal(fo_client_flush(x->c, 2000), FO_OK);
    assert_int_equal(peer_wait(&x->peer, FANOUT__FRAME__BODY_PUBLISH, 100, 2000), 100);
    for (int i = 0; i < 100; i += 33) {
        Fanout__Frame *f = peer_get(&x->peer, FANOUT__FRAME__BODY_PUBLISH, (size_t)i, &x->a);
        char p[16];
        snprintf(p, sizeof p, "m%d", i);
        assert_string_equal(f->publish->topic, "a.b");
        assert_int_equal(f->publish->payload.len, strlen(p));
        assert_memory_equal(f->publish->payload.data, p, strlen(p));
        assert_false(f->has_req);
    }
    fo_client_stats_t st;
    fo_client_stats(x->c, &st);
    assert_int_equal(st.published, 100);
}

static void test_publish_sync_ack_and_error(void **state)
{
    fx_t *x = *state;
    connect_ok(x);
    uint64_t seq = 0;
    assert_int_equal(fo_publish_sync(x->c, "a", "x", 1, 2000, &seq), FO_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(fo_publish_sync(x->c, "a", "y", 1, 2000, &seq), FO_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(fo_publish_sync(x->c, "bad", "z", 1, 2000, &seq), FO_ERR_SERVER);
    char e[128];
    fo_client_last_error(x->c, e, sizeof e);
    assert_non_null(strstr(e, "ERR_INVALID_TOPIC"));
    assert_non_null(strstr(e, "bad topic"));
    /* The connection is still usable. */
    assert_int_equal(fo_publish_sync(x->c, "a", "w", 1, 2000, &seq), FO_OK);
    /* A closing ERROR without ref fails the waiting request with its text. */
    assert_int_equal(fo_publish_sync(x->c, "fatal", "z", 1, 2000, &seq), FO_ERR_SERVER);
    fo_client_last_error(x->c, e, sizeof e);
    assert_non_null(strstr(e, "fatal topic"));
    assert_int_equal(fo_publish(x->c, NULL, "x", 1), FO_ERR_INVAL);
}

static void test_subscribe_callback_bytewise(void **state)
{
    fx_t *x = *state;
    connect_ok(x);
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.cb = on_msg;
    so.ud = &x->got;
    so.queue = "workers";
    so.start = FO_START_SEQ;
    so.start_seq = 5;
    so.slow = FO_SLOW_DROP;
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(x->c, "t.>", &so, &s), FO_OK);
    Fanout__Frame *sf = peer_get(&x->peer, FANOUT__FRAME__BODY_SUBSCRIBE, 0, &x->a);
    assert_non_null(sf);
    assert_string_equal(sf->subscribe->filter, "t.>");
    assert_string_equal(sf->subscribe->queue, "workers");
    assert_int_equal(sf->subscribe->start, FANOUT__START__START_SEQ);
    assert_int_equal(sf->subscribe->start_seq, 5);
    assert_int_equal(sf->subscribe->slow, FANOUT__SLOW_POLICY__SLOW_DROP);
    assert_int_equal(sf->subscribe->sid, fo_sub_id(s));
    Fanout__Frame f;
    Fanout__Deliver d;
    peer_deliver(&f, &d, fo_sub_id(s), "t.x", 5, "hello");
    assert_int_equal(peer_send_bytewise(&x->peer, &f), 0);
    peer_deliver(&f, &d, fo_sub_id(s), "t.y", 9, "world");
    assert_int_equal(peer_send(&x->peer, &f), 0);
    peer_deliver(&f, &d, fo_sub_id(s) + 100, "t.y", 10, "nobody");
    assert_int_equal(peer_send(&x->peer, &f), 0);
    assert_int_equal(got_wait(&x->got, 2, 2000), 2);
    assert_string_equal(x->got.payloads[0], "hello");
    assert_int_equal(x->got.seqs[0], 5);
    assert_string_equal(x->got.payloads[1], "world");
    assert_int_equal(fo_sub_delivered_count(s), 2);
    assert_int_equal(fo_unsubscribe(s), FO_OK);
    assert_int_equal(peer_wait(&x->peer, FANOUT__FRAME__BODY_UNSUBSCRIBE, 1, 2000), 1);
}

static void test_subscribe_error(void **state)
{
    fx_t *x = *state;
    connect_ok(x);
    fo_sub_t *s = NULL;
    assert_int_equal(fo_subscribe(x->c, "bad", NULL, &s), FO_ERR_SERVER);
    assert_null(s);
    assert_int_equal(fo_subscribe(x->c, "", NULL, &s), FO_ERR_INVAL);
}

static void test_sub_next_queue_mode(void **state)
{
    fx_t *x = *state;
    connect_ok(x);
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(x->c, "q", NULL, &s), FO_OK);
    const fo_msg_t *m;
    assert_int_equal(fo_sub_next(s, 0, &m), FO_ERR_TIMEOUT);
    assert_int_equal(fo_sub_next(s, 30, &m), FO_ERR_TIMEOUT);
    Fanout__Frame f;
    Fanout__Deliver d;
    for (int i = 1; i <= 3; i++) {
        char p[8];
        snprintf(p, sizeof p, "p%d", i);
        peer_deliver(&f, &d, fo_sub_id(s), "q", (uint64_t)i, p);
        d.has_time_ns = 1;
        d.time_ns = 1234;
        peer_send(&x->peer, &f);
    }
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(fo_sub_next(s, 2000, &m), FO_OK);
        assert_int_equal(m->seq, (uint64_t)i);
        assert_string_equal(m->topic, "q");
        assert_int_equal(m->payload_len, 2);
        assert_int_equal(m->time_ns, 1234);
        assert_int_equal(((const char *)m->payload)[1], '0' + i);
    }
    assert_int_equal(fo_sub_next(s, 0, &m), FO_ERR_TIMEOUT);
}

static void test_gap_frames_only(void **state)
{
    fx_t *x = *state;
    connect_ok(x);
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.cb = on_msg;
    so.ud = &x->got;
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(x->c, "g", &so, &s), FO_OK);
    Fanout__Frame f;
    Fanout__Deliver d;
    peer_deliver(&f, &d, fo_sub_id(s), "g", 1, "a");
    peer_send(&x->peer, &f);
    /* GAP 2..4 (slow consumer), then 5: no extra gap. */
    Fanout__Frame gf = FANOUT__FRAME__INIT;
    Fanout__Gap g = FANOUT__GAP__INIT;
    g.topic = "g"; g.has_first = 1; g.first = 2; g.has_last = 1; g.last = 4;
    gf.body_case = FANOUT__FRAME__BODY_GAP; gf.gap = &g;
    gf.has_sid = 1; gf.sid = fo_sub_id(s);
    peer_send(&x->peer, &gf);
    peer_deliver(&f, &d, fo_sub_id(s), "g", 5, "b");
    peer_send(&x->peer, &f);
    /* Out-of-order sequences (several publishers) are no loss: only GAP
     * frames report gaps, and every DELIVER is handed on. */
    peer_deliver(&f, &d, fo_sub_id(s), "g", 8, "c");
    peer_send(&x->peer, &f);
    peer_deliver(&f, &d, fo_sub_id(s), "g", 6, "d");
    peer_send(&x->peer, &f);
    assert_int_equal(got_wait(&x->got, 4, 2000), 4);
    assert_int_equal(fo_client_flush(x->c, 2000), FO_OK);
    assert_int_equal(x->got.n, 4);
    assert_int_equal(x->got.seqs[3], 6);
    assert_int_equal(x->got.gaps, 1);
    assert_int_equal(x->got.gap[0].first, 2);
    assert_int_equal(x->got.gap[0].last, 4);
    assert_int_equal(x->got.gap[0].reason, FO_GAP_SLOW_CONSUMER);
    assert_ptr_equal(x->got.gap[0].sub, s);
    assert_string_equal(x->got.gap_topic[0], "g");
    assert_int_equal(fo_sub_gap_count(s), 3);
}

static void test_ping_pong_both_ways(void **state)
{
    fx_t *x = *state;
    x->peer.ping_ms = 30;
    x->peer.idle_ms = 5000;
    connect_ok(x);
    /* The client pings on its own every 30 ms. */
    assert_true(peer_wait(&x->peer, FANOUT__FRAME__BODY_PING, 2, 3000) >= 2);
    /* ...and answers ours with the same nonce. */
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Ping pi = FANOUT__PING__INIT;
    pi.has_nonce = 1; pi.nonce = 777;
    f.body_case = FANOUT__FRAME__BODY_PING; f.ping = &pi;
    peer_send(&x->peer, &f);
    assert_int_equal(peer_wait(&x->peer, FANOUT__FRAME__BODY_PONG, 1, 2000), 1);
    Fanout__Frame *po = peer_get(&x->peer, FANOUT__FRAME__BODY_PONG, 0, &x->a);
    assert_int_equal(po->pong->nonce, 777);
}

static void test_silent_broker_is_dropped(void **state)
{
    fx_t *x = *state;
    x->peer.ping_ms = 20;
    x->peer.idle_ms = 60;
    x->peer.no_pong = 1;
    x->o.max_reconnects = 0;
    connect_ok(x);
    long long end = peer_now_ms() + 3000;
    while (fo_client_connected(x->c) && peer_now_ms() < end)
        usleep(2000);
    assert_false(fo_client_connected(x->c));
    char e[128];
    fo_client_last_error(x->c, e, sizeof e);
    assert_non_null(strstr(e, "nothing heard"));
    assert_int_equal(fo_publish(x->c, "a", "x", 1), FO_ERR_CLOSED);
    pthread_mutex_lock(&x->got.mu);
    assert_int_equal(x->got.events[0], FO_EV_DISCONNECTED);
    assert_int_equal(x->got.events[1], FO_EV_CLOSED);
    pthread_mutex_unlock(&x->got.mu);
}

static void test_partial_writes_keep_frames_whole(void **state)
{
    fx_t *x = *state;
    x->peer.slow_reader = 1;
    connect_ok(x);
    static char big[3000];
    const int n = 1500;            /* ~4.5 MB through a 4 KiB window */
    for (int i = 0; i < n; i++) {
        memset(big, 'a' + i % 26, sizeof big);
        memcpy(big, &i, sizeof i);
        assert_int_equal(fo_publish(x->c, "big", big, sizeof big), FO_OK);
    }
    fo_err_t fe = fo_client_flush(x->c, 20000);
    char e[160];
    if (fe)
        fprintf(stderr, "flush: %s (%s)\n", fo_strerror(fe), fo_client_last_error(x->c, e, sizeof e));
    assert_int_equal(fe, FO_OK);
    assert_int_equal(peer_wait(&x->peer, FANOUT__FRAME__BODY_PUBLISH, (size_t)n, 20000), (size_t)n);
    for (int i = 0; i < n; i += 97) {
        fo_arena_reset(&x->a);
        Fanout__Frame *f = peer_get(&x->peer, FANOUT__FRAME__BODY_PUBLISH, (size_t)i, &x->a);
        int k;
        memcpy(&k, f->publish->payload.data, sizeof k);
        assert_int_equal(k, i);
        assert_int_equal(f->publish->payload.len, sizeof big);
        assert_int_equal(f->publish->payload.data[2999], 'a' + i % 26);
    }
}

static void test_connect_errors(void **state)
{
    fx_t *x = *state;
    char err[160];
    fo_client_t *c = NULL;
    /* refused: a port we bound and closed */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    char a[64];
    snprintf(a, sizeof a, "127.0.0.1:%d", ntohs(sa.sin_port));
    const char *s1[] = { a };
    x->o.servers = s1;
    assert_int_equal(fo_client_connect(&x->o, &c, err, sizeof err), FO_ERR_REFUSED);
    assert_null(c);
    assert_non_null(strstr(err, "refused"));
    const char *s2[] = { "nohost-no-port" };
    x->o.servers = s2;
    assert_int_equal(fo_client_connect(&x->o, &c, err, sizeof err), FO_ERR_ADDR);
    assert_non_null(strstr(err, "bad address"));
    const char *s3[] = { "127.0.0.1:99999" };
    x->o.servers = s3;
    assert_int_equal(fo_client_connect(&x->o, &c, err, sizeof err), FO_ERR_ADDR);
    /* ERROR answering HELLO */
    x->peer.hello_error = 1;
    x->o.servers = x->servers;
    assert_int_equal(fo_client_connect(&x->o, &c, err, sizeof err), FO_ERR_SERVER);
    assert_non_null(strstr(err, "the broker refused the login: "));   /* ERR_AUTH */
    /* the second server answers when the first does not */
    x->peer.hello_error = 0;
    const char *s4[] = { a, x->addr };
    x->o.servers = s4;
    x->o.nservers = 2;
    assert_int_equal(fo_client_connect(&x->o, &x->c, err, sizeof err), FO_OK);
    x->o.nservers = 0;
    assert_int_equal(fo_client_connect(&x->o, &c, err, sizeof err), FO_ERR_INVAL);
    fo_client_destroy(NULL);
    assert_int_equal(fo_unsubscribe(NULL), FO_OK);
}

static void test_unsubscribe_inside_callback(void **state)
{
    fx_t *x = *state;
    connect_ok(x);
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.cb = on_msg;
    so.ud = &x->got;
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(x->c, "u", &so, &s), FO_OK);
    x->got.unsub_me = s;
    uint32_t sid = fo_sub_id(s);
    Fanout__Frame f;
    Fanout__Deliver d;
    peer_deliver(&f, &d, sid, "u", 1, "one");
    peer_send(&x->peer, &f);
    peer_deliver(&f, &d, sid, "u", 2, "two");
    peer_send(&x->peer, &f);
    assert_int_equal(peer_wait(&x->peer, FANOUT__FRAME__BODY_UNSUBSCRIBE, 1, 2000), 1);
    assert_int_equal(fo_client_flush(x->c, 2000), FO_OK);
    assert_int_equal(x->got.n, 1);
    assert_int_equal(x->got.unsub_err, FO_OK);
}

static void test_close_with_drain(void **state)
{
    fx_t *x = *state;
    connect_ok(x);
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.cb = on_msg;
    so.ud = &x->got;
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(x->c, "d", &so, &s), FO_OK);
    Fanout__Frame f;
    Fanout__Deliver d;
    for (int i = 1; i <= 20; i++) {
        peer_deliver(&f, &d, fo_sub_id(s), "d", (uint64_t)i, "x");
        peer_send(&x->peer, &f);
    }
    assert_int_equal(fo_publish(x->c, "out", "y", 1), FO_OK);
    assert_int_equal(fo_client_close(x->c, 2000), FO_OK);
    x->c = NULL;
    assert_int_equal(x->got.n, 20);   /* all delivered before close returned */
    assert_int_equal(peer_wait(&x->peer, FANOUT__FRAME__BODY_PUBLISH, 1, 2000), 1);
    assert_int_equal(peer_wait(&x->peer, FANOUT__FRAME__BODY_UNSUBSCRIBE, 1, 2000), 1);
}

/* fo_unsubscribe from another thread while the reader is in the middle of
 * a batch for that subscription: no callback runs after it returns. */
typedef struct slow_cb {
    atomic_int calls, after;
    atomic_int unsubscribed;
} slow_cb_t;

static void on_slow(void *ud, fo_sub_t *s, const fo_msg_t *m)
{
    (void)s; (void)m;
    slow_cb_t *k = ud;
    if (atomic_load(&k->unsubscribed))
        atomic_fetch_add(&k->after, 1);
    atomic_fetch_add(&k->calls, 1);
    usleep(2000);
}

static void test_unsubscribe_while_delivering(void **state)
{
    fx_t *x = *state;
    /* No ACK for the UNSUBSCRIBE: after its timeout the retire must stop
     * the batch in the middle. */
    x->peer.no_unsub_ack = 1;
    x->o.request_timeout_ms = 100;
    connect_ok(x);
    slow_cb_t k = { 0 };
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.cb = on_slow;
    so.ud = &k;
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(x->c, "w", &so, &s), FO_OK);
    fo_buf_t burst = FO_BUF_INIT;
    for (int i = 1; i <= 400; i++) {
        Fanout__Frame f;
        Fanout__Deliver d;
        peer_deliver(&f, &d, fo_sub_id(s), "w", (uint64_t)i, "x");
        assert_int_equal(fo_frame_append(&burst, &f), FO_OK);
    }
    pthread_mutex_lock(&x->peer.wmu);
    assert_int_equal(peer_write_all(x->peer.fd, fo_buf_head(&burst), fo_buf_len(&burst)), 0);
    pthread_mutex_unlock(&x->peer.wmu);
    fo_buf_free(&burst);
    long long end = peer_now_ms() + 3000;
    while (atomic_load(&k.calls) < 5 && peer_now_ms() < end)
        usleep(500);
    assert_int_equal(fo_unsubscribe(s), FO_ERR_TIMEOUT);   /* freed anyway */
    atomic_store(&k.unsubscribed, 1);
    assert_int_equal(fo_client_flush(x->c, 3000), FO_OK);
    assert_int_equal(atomic_load(&k.after), 0);
    assert_true(atomic_load(&k.calls) < 400);
}

static void test_publish_bigger_than_max_frame(void **state)
{
    fx_t *x = *state;
    x->peer.max_frame = 1000;
    connect_ok(x);
    static char big[2000];
    assert_int_equal(fo_publish(x->c, "t", big, sizeof big), FO_ERR_RANGE);
    assert_int_equal(fo_publish_sync(x->c, "t", big, sizeof big, 1000, NULL), FO_ERR_RANGE);
    assert_int_equal(fo_publish(x->c, "t", big, 900), FO_OK);
    assert_int_equal(fo_client_flush(x->c, 2000), FO_OK);
}

/* A broker that stops reading: the publisher blocked in send() is released
 * when the reader declares the connection dead, not left hanging. */
typedef struct flood {
    fo_client_t *c;
    atomic_int done;
    fo_err_t last;
} flood_t;

static void *flood_main(void *arg)
{
    flood_t *f = arg;
    static char p[16384];
    fo_err_t e = FO_OK;
    for (int i = 0; i < 4000 && !e; i++)     /* 64 MB: more than any buffer */
        e = fo_publish(f->c, "t", p, sizeof p);
    f->last = e;
    atomic_store(&f->done, 1);
    return NULL;
}

static void test_hung_broker_releases_publisher(void **state)
{
    fx_t *x = *state;
    x->peer.ping_ms = 20;
    x->peer.idle_ms = 100;
    x->o.max_reconnects = 0;
    connect_ok(x);
    assert_int_equal(peer_wait_conns(&x->peer, 1, 2000), 1);
    pthread_mutex_lock(&x->peer.mu);
    x->peer.stall = 1;
    pthread_mutex_unlock(&x->peer.mu);
    flood_t f = { .c = x->c };
    pthread_t th;
    pthread_create(&th, NULL, flood_main, &f);
    long long end = peer_now_ms() + 10000;
    while (!atomic_load(&f.done) && peer_now_ms() < end)
        usleep(2000);
    assert_true(atomic_load(&f.done));
    pthread_join(th, NULL);
    assert_int_equal(f.last, FO_ERR_CLOSED);
    assert_false(fo_client_connected(x->c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_welcome, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_buffered_then_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_sync_ack_and_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_callback_bytewise, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sub_next_queue_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gap_frames_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_pong_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_broker_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_writes_keep_frames_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsubscribe_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsubscribe_while_delivering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_bigger_than_max_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hung_broker_releases_publisher, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
