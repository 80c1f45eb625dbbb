/* test_client_reconnect.c -- libfanout reconnect against the scripted
 * broker: resubscribe with per-topic resume positions, publishes buffered
 * while disconnected go out after the SUBSCRIBEs, the broker's GAP for a
 * resume point past retention reaches the app,
 * a broker restart (new epoch) forgets positions, giving up closes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "fanout.h"
#include "test_client_peer.h"

typedef struct rx {
    pthread_mutex_t mu;
    int msgs, gaps, reconnected, closed;
    fo_gap_t gap;
} rx_t;

static void on_msg(void *ud, fo_sub_t *s, const fo_msg_t *m)
{
    (void)s; (void)m;
    rx_t *r = ud;
    pthread_mutex_lock(&r->mu);
    r->msgs++;
    pthread_mutex_unlock(&r->mu);
}

static void on_gap(void *ud, const fo_gap_t *g)
{
    rx_t *r = ud;
    pthread_mutex_lock(&r->mu);
    r->gaps++;
    r->gap = *g;
    r->gap.topic = NULL;
    pthread_mutex_unlock(&r->mu);
}

static void on_event(void *ud, fo_event_t ev, fo_err_t err, const char *text)
{
    (void)err; (void)text;
    rx_t *r = ud;
    pthread_mutex_lock(&r->mu);
    r->reconnected += ev == FO_EV_RECONNECTED;
    r->closed += ev == FO_EV_CLOSED;
    pthread_mutex_unlock(&r->mu);
}

static int rx_get(rx_t *r, const int *field)
{
    pthread_mutex_lock(&r->mu);
    int v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

static int wait_field(rx_t *r, const int *field, int want, int ms)
{
    long long end = peer_now_ms() + ms;
    int v;
    while ((v = rx_get(r, field)) < want && peer_now_ms() < end)
        usleep(1000);
    return v;
}

static void test_resubscribe_with_positions(void **state)
{
    (void)state;
    peer_t p;
    assert_int_equal(peer_start(&p), 0);
    char addr[64];
    peer_addr(&p, addr, sizeof addr);
    const char *servers[] = { addr };
    rx_t r = { .mu = PTHREAD_MUTEX_INITIALIZER };
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    o.servers = servers;
    o.reconnect_min_ms = 200;     /* a window to publish while disconnected */
    o.reconnect_max_ms = 200;
    o.on_gap = on_gap;
    o.on_event = on_event;
    o.ud = &r;
    fo_client_t *c;
    assert_int_equal(fo_client_connect(&o, &c, NULL, 0), FO_OK);
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.cb = on_msg;
    so.ud = &r;
    fo_sub_t *s, *q;
    assert_int_equal(fo_subscribe(c, "r.>", &so, &s), FO_OK);
    so.queue = "grp";
    assert_int_equal(fo_subscribe(c, "w", &so, &q), FO_OK);
    Fanout__Frame f;
    Fanout__Deliver d;
    /* r.a: 3 is still on its way (another publisher) when we lose the
     * connection: the resume point must be 3, not 5. */
    const char *topics[] = { "r.a", "r.a", "r.a", "r.b" };
    const uint64_t seqs[] = { 1, 2, 4, 10 };
    for (int i = 0; i < 4; i++) {
        peer_deliver(&f, &d, fo_sub_id(s), topics[i], seqs[i], "x");
        peer_send(&p, &f);
    }
    peer_deliver(&f, &d, fo_sub_id(q), "w", 7, "x");
    peer_send(&p, &f);
    assert_int_equal(wait_field(&r, &r.msgs, 5, 2000), 5);

    peer_drop(&p);
    long long end = peer_now_ms() + 2000;
    while (fo_client_connected(c) && peer_now_ms() < end)
        usleep(1000);
    assert_false(fo_client_connected(c));
    for (int i = 0; i < 3; i++)
        assert_int_equal(fo_publish(c, "later", "p", 1), FO_OK);
    assert_int_equal(wait_field(&r, &r.reconnected, 1, 3000), 1);
    assert_int_equal(peer_wait(&p, FANOUT__FRAME__BODY_SUBSCRIBE, 4, 2000), 4);
    assert_int_equal(peer_wait(&p, FANOUT__FRAME__BODY_PUBLISH, 3, 2000), 3);

    fo_arena_t a;
    assert_int_equal(fo_arena_init(&a, 4096, 0), FO_OK);
    Fanout__Frame *sf = peer_get(&p, FANOUT__FRAME__BODY_SUBSCRIBE, 2, &a);
    assert_int_equal(sf->subscribe->sid, fo_sub_id(s));
    assert_string_equal(sf->subscribe->filter, "r.>");
    assert_int_equal(sf->subscribe->n_positions, 2);
    for (size_t i = 0; i < 2; i++) {
        Fanout__Position *ps = sf->subscribe->positions[i];
        if (!strcmp(ps->topic, "r.a"))
            assert_int_equal(ps->seq, 3);
        else
            assert_int_equal(ps->seq, 11);
    }
    Fanout__Frame *qf = peer_get(&p, FANOUT__FRAME__BODY_SUBSCRIBE, 3, &a);
    assert_string_equal(qf->subscribe->queue, "grp");
    assert_int_equal(qf->subscribe->n_positions, 0);   /* queue groups: no resume */
    /* The buffered publishes went out after the SUBSCRIBEs. */
    pthread_mutex_lock(&p.mu);
    size_t last_sub = 0, first_pub = 0;
    for (size_t i = 0; i < p.nrecs; i++) {
        if (p.recs[i].body_case == FANOUT__FRAME__BODY_SUBSCRIBE)
            last_sub = i;
        if (p.recs[i].body_case == FANOUT__FRAME__BODY_PUBLISH && !first_pub)
            first_pub = i;
    }
    pthread_mutex_unlock(&p.mu);
    assert_true(first_pub > last_sub);

    /* The replay from 3 brings 3 (new) and 4 (seen before: dropped). */
    peer_deliver(&f, &d, fo_sub_id(s), "r.a", 3, "x");
    d.has_replay = 1; d.replay = 1;
    peer_send(&p, &f);
    peer_deliver(&f, &d, fo_sub_id(s), "r.a", 4, "x");
    d.has_replay = 1; d.replay = 1;
    peer_send(&p, &f);
    assert_int_equal(fo_client_flush(c, 2000), FO_OK);
    assert_int_equal(rx_get(&r, &r.msgs), 6);

    /* Resuming past the retention: the broker's GAP reaches the app. */
    Fanout__Frame gf = FANOUT__FRAME__INIT;
    Fanout__Gap g = FANOUT__GAP__INIT;
    g.topic = "r.a"; g.has_first = 1; g.first = 5; g.has_last = 1; g.last = 5;
    g.has_reason = 1; g.reason = FANOUT__GAP_REASON__GAP_EVICTED;
    gf.body_case = FANOUT__FRAME__BODY_GAP; gf.gap = &g;
    gf.has_sid = 1; gf.sid = fo_sub_id(s);
    peer_send(&p, &gf);
    peer_deliver(&f, &d, fo_sub_id(s), "r.a", 6, "x");
    peer_send(&p, &f);
    assert_int_equal(wait_field(&r, &r.gaps, 1, 2000), 1);
    assert_int_equal(wait_field(&r, &r.msgs, 7, 2000), 7);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.gap.first, 5);
    assert_int_equal(r.gap.last, 5);
    assert_int_equal(r.gap.reason, FO_GAP_EVICTED);
    pthread_mutex_unlock(&r.mu);

    /* A broker restart (new epoch): positions are forgotten. */
    p.epoch = 43;
    peer_drop(&p);
    assert_int_equal(wait_field(&r, &r.reconnected, 2, 3000), 2);
    assert_int_equal(peer_wait(&p, FANOUT__FRAME__BODY_SUBSCRIBE, 6, 2000), 6);
    fo_arena_reset(&a);
    sf = peer_get(&p, FANOUT__FRAME__BODY_SUBSCRIBE, 4, &a);
    assert_int_equal(sf->subscribe->n_positions, 0);
    fo_client_stats_t st;
    fo_client_stats(c, &st);
    assert_int_equal(st.reconnects, 2);
    fo_arena_destroy(&a);
    fo_client_destroy(c);
    peer_stop(&p);
}

static void test_gives_up_after_max_reconnects(void **state)
{
    (void)state;
    peer_t p;
    assert_int_equal(peer_start(&p), 0);
    char addr[64];
    peer_addr(&p, addr, sizeof addr);
    const char *servers[] = { addr };
    rx_t r = { .mu = PTHREAD_MUTEX_INITIALIZER };
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    o.servers = servers;
    o.reconnect_min_ms = 5;
    o.reconnect_max_ms = 10;
    o.max_reconnects = 2;
    o.on_event = on_event;
    o.ud = &r;
    fo_client_t *c;
    assert_int_equal(fo_client_connect(&o, &c, NULL, 0), FO_OK);
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(c, "z", NULL, &s), FO_OK);
    peer_drop(&p);
    peer_stop(&p);                /* nobody listens any more: refused */
    assert_int_equal(wait_field(&r, &r.closed, 1, 3000), 1);
    const fo_msg_t *m;
    assert_int_equal(fo_sub_next(s, 1000, &m), FO_ERR_CLOSED);
    assert_int_equal(fo_publish(c, "z", "x", 1), FO_ERR_CLOSED);
    assert_int_equal(fo_subscribe(c, "y", NULL, &s), FO_ERR_CLOSED);
    fo_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resubscribe_with_positions),
        cmocka_unit_test(test_gives_up_after_max_reconnects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
