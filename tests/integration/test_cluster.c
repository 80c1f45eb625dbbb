/* test_cluster.c -- three fanoutd processes on loopback as one cluster
 * (docs/CLUSTER.md), with raw protocol clients: links and members come up,
 * publishers on every broker to one topic get sequences 1..N with no gap
 * or duplicate and every subscriber sees them all, a wildcard subscriber
 * receives topics homed elsewhere, a queue group spread over the brokers
 * gets each message exactly once, the copies that cross links per message
 * equal the interested brokers plus one when the publisher is not the
 * home (counted from the metrics), a broker that leaves moves its topics,
 * and a peer with another secret is not linked. Every wait has a
 * deadline. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "fanout.h"
#include "harness.h"
#include "cluster.pb-c.h"
#include "place.h"

#define N 3
static fo_tb_t br[N];
static int cport[N];
static char peers[256];

static const char *node(int i)
{
    static const char *const ids[] = { "n0", "n1", "n2" };
    return ids[i];
}

static int start_one(int i, const char *secret)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", cport[i]);
    const char *args[] = { "--cluster-listen", listen, "--cluster-peers", peers, "--node-id", node(i),
                           "--cluster-secret", secret, "--log-level", "debug", NULL };
    return fo_tb_start(&br[i], args);
}

static double metric(int i, const char *fmt, const char *arg)
{
    char name[160];
    snprintf(name, sizeof name, fmt, arg);
    return fo_tb_metric(&br[i], name);
}

/* Poll until metric == want on broker i (deadline 10 s). */
static int wait_eq(int i, const char *fmt, const char *arg, double want)
{
    uint64_t end = fo_tb_now_ms() + 10000;
    while (fo_tb_now_ms() < end) {
        if (metric(i, fmt, arg) == want)
            return 0;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "broker %d: ", i);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " is %g, not %g\n", metric(i, fmt, arg), want);
    return -1;
}

static void wait_linked(void)
{
    for (int i = 0; i < N; i++) {
        assert_int_equal(wait_eq(i, "fanout_cluster_links_up%s", "", N - 1), 0);
        assert_int_equal(wait_eq(i, "fanout_cluster_members%s", "", N), 0);
    }
}

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i < N; i++)
        cport[i] = fo_tb_free_port();
    snprintf(peers, sizeof peers, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", cport[0], cport[1], cport[2]);
    for (int i = 0; i < N; i++)
        if (start_one(i, "s3cret"))
            return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int bad = 0;
    for (int i = 0; i < N; i++) {
        int rc = br[i].pid ? fo_tb_stop(&br[i]) : 0;
        if (rc) {
            fprintf(stderr, "broker %d exited with %d (log %s)\n", i, rc, br[i].log_path);
            bad = 1;
        }
    }
    return bad ? -1 : 0;
}

/* The interest broker `from` holds of broker `of` reaches `want` entries. */
static void wait_interest(int of, int from, double want)
{
    assert_int_equal(wait_eq(from, "fanout_cluster_peer_interest_entries{node=\"%s\"}", node(of), want), 0);
}

/* Every broker's view of every other's interest is `want` entries. */
static void wait_all_interest(const double want[N])
{
    for (int of = 0; of < N; of++)
        for (int from = 0; from < N; from++)
            if (from != of)
                wait_interest(of, from, want[of]);
}

static int home_of(const char *topic)
{
    uint64_t h[N];
    for (int i = 0; i < N; i++)
        h[i] = fo_place_node_hash(node(i), strlen(node(i)));
    return fo_place_pick(h, N, fo_place_topic_hash(topic, strlen(topic)));
}

/* A cluster's sequence numbers carry the home's epoch (docs/CLUSTER.md,
 * Epochs): the number within it, and the epoch. */
static uint64_t lo(uint64_t seq)
{
    return seq & ((1ull << FO_SEQ_EPOCH_SHIFT) - 1);
}

static uint64_t epoch_of(uint64_t seq)
{
    return seq >> FO_SEQ_EPOCH_SHIFT;
}

/* The next frame that is not a PING, or NULL. */
static Fanout__Frame *next(fo_tc_t *c, int ms)
{
    uint64_t end = fo_tb_now_ms() + (uint64_t)ms;
    for (;;) {
        uint64_t now = fo_tb_now_ms();
        if (now >= end)
            return NULL;
        Fanout__Frame *f;
        if (fo_tc_recv(c, (int)(end - now), &f) != 1)
            return NULL;
        if (f->body_case != FANOUT__FRAME__BODY_PING)
            return f;
    }
}

/* SUBSCRIBE and its ACK. */
static void sub_ack(fo_tc_t *c, uint32_t sid, const char *filter, const char *queue)
{
    assert_int_equal(fo_tc_subscribe(c, sid, filter, queue), 0);
}

static void open_at(fo_tc_t *c, int i)
{
    assert_int_equal(fo_tc_open(c, br[i].port, "cluster-test"), 0);
}

static void close_and_settle(fo_tc_t *cs, int n)
{
    for (int i = 0; i < n; i++)
        fo_tc_close(&cs[i]);
    const double none[N] = { 0, 0, 0 };
    wait_all_interest(none);
}

/* ------------------------------------------------------------ tests */

static void test_links_up(void **state)
{
    (void)state;
    wait_linked();
    for (int i = 0; i < N; i++)
        for (int k = 0; k < N; k++)
            if (k != i)
                assert_int_equal(metric(i, "fanout_cluster_link_up{node=\"%s\"}", node(k)), 1);
}

/* WELCOME names the broker's node id and the members' client addresses,
 * its own first. */
static void test_welcome_names_the_cluster(void **state)
{
    (void)state;
    wait_linked();
    for (int i = 0; i < N; i++) {
        fo_tc_t c;
        assert_int_equal(fo_tc_connect(&c, br[i].port), 0);
        assert_int_equal(fo_tc_send_hello(&c, NULL, NULL, NULL), 0);
        Fanout__Frame *w = next(&c, 5000);
        assert_non_null(w);
        assert_int_equal(w->body_case, FANOUT__FRAME__BODY_WELCOME);
        assert_string_equal(w->welcome->node_id, node(i));
        /* each broker's plain address, and its tls:// one when it has TLS */
        int tls = br[i].tls_port != 0;
        assert_int_equal(w->welcome->n_cluster, (size_t)(tls ? 2 * N : N));
        assert_string_equal(w->welcome->cluster[0], br[i].plain);
        for (int k = 0; k < N; k++) {
            int found = 0, found_tls = 0;
            for (size_t j = 0; j < w->welcome->n_cluster; j++) {
                found |= !strcmp(w->welcome->cluster[j], br[k].plain);
                found_tls |= tls && !strcmp(w->welcome->cluster[j], br[k].tls_addr);
            }
            assert_true(found && found_tls == tls);
        }
        fo_tc_close(&c);
    }
}

#define PER_PUB 100

/* A publisher on every broker, one topic: the ACKs carry 1..3*PER_PUB
 * once each, and each broker's subscriber sees all of them, each
 * publisher's in its order. */
static void test_sequences_across_brokers(void **state)
{
    (void)state;
    wait_linked();
    const char *topic = "seq.orders";
    fo_tc_t sub[N], pub[N];
    for (int i = 0; i < N; i++) {
        open_at(&sub[i], i);
        sub_ack(&sub[i], 1, topic, NULL);
        open_at(&pub[i], i);
    }
    const double one[N] = { 1, 1, 1 };
    wait_all_interest(one);
    for (int k = 0; k < PER_PUB; k++)
        for (int i = 0; i < N; i++) {
            char msg[32];
            int n = snprintf(msg, sizeof msg, "%d:%d", i, k);
            assert_int_equal(fo_tc_publish(&pub[i], topic, msg, (size_t)n, (uint64_t)k + 1), 0);
        }
    static uint8_t seen[N * PER_PUB + 1];
    memset(seen, 0, sizeof seen);
    uint64_t epoch = 0;
    for (int i = 0; i < N; i++)
        for (int got = 0; got < PER_PUB;) {
            Fanout__Frame *f = next(&pub[i], 10000);
            assert_non_null(f);
            if (f->body_case != FANOUT__FRAME__BODY_ACK) {
                fail_msg("publisher %d: frame %d, not an ACK", i, f->body_case);
            }
            assert_true(f->ack->has_seq);
            if (!epoch)
                epoch = epoch_of(f->ack->seq);
            assert_int_equal(epoch_of(f->ack->seq), epoch);   /* one home, one epoch */
            assert_in_range(lo(f->ack->seq), 1, N * PER_PUB);
            assert_int_equal(seen[lo(f->ack->seq)], 0);   /* no duplicate */
            seen[lo(f->ack->seq)] = 1;
            got++;
        }
    assert_true(epoch > 0);
    for (int i = 0; i < N; i++) {
        static uint8_t have[N * PER_PUB + 1];
        memset(have, 0, sizeof have);
        int last[N] = { -1, -1, -1 };
        for (int got = 0; got < N * PER_PUB; got++) {
            Fanout__Frame *f = next(&sub[i], 10000);
            if (!f)
                fail_msg("subscriber on broker %d: %d of %d", i, got, N * PER_PUB);
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
            assert_int_equal(epoch_of(f->deliver->seq), epoch);
            uint64_t s = lo(f->deliver->seq);
            assert_in_range(s, 1, N * PER_PUB);
            assert_int_equal(have[s], 0);
            have[s] = 1;
            int p, k;
            char text[32];
            snprintf(text, sizeof text, "%.*s", (int)f->deliver->payload.len, (const char *)f->deliver->payload.data);
            assert_int_equal(sscanf(text, "%d:%d", &p, &k), 2);
            assert_in_range(p, 0, N - 1);
            if (k <= last[p])                             /* each publisher's order */
                fail_msg("subscriber on broker %d (home %d): publisher %d's %d after its %d (seq %llu)", i,
                         home_of(topic), p, k, last[p], (unsigned long long)s);
            last[p] = k;
        }
    }
    close_and_settle(sub, N);
    close_and_settle(pub, N);
}

/* A wildcard subscriber on broker 0 gets topics homed on every broker. */
static void test_wildcard_elsewhere(void **state)
{
    (void)state;
    wait_linked();
    fo_tc_t sub, pub;
    open_at(&sub, 0);
    sub_ack(&sub, 1, "wild.>", NULL);
    const double want[N] = { 1, 0, 0 };
    wait_all_interest(want);
    open_at(&pub, 1);
    int homes[N] = { 0 };
    for (int t = 0; t < 30; t++) {
        char topic[32];
        snprintf(topic, sizeof topic, "wild.t%d", t);
        homes[home_of(topic)]++;
        assert_int_equal(fo_tc_publish(&pub, topic, "x", 1, (uint64_t)t + 1), 0);
        assert_int_equal(fo_tc_wait_ack(&pub, (uint64_t)t + 1, 5000), 0);
    }
    for (int i = 0; i < N; i++)
        assert_true(homes[i] > 0);                        /* all three are homes */
    int seen[30] = { 0 };
    for (int got = 0; got < 30; got++) {
        Fanout__Frame *f = next(&sub, 10000);
        assert_non_null(f);
        assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
        int t;
        assert_int_equal(sscanf(f->deliver->topic, "wild.t%d", &t), 1);
        assert_int_equal(seen[t], 0);
        seen[t] = 1;
        assert_int_equal(lo(f->deliver->seq), 1);         /* each topic's first */
    }
    fo_tc_t all[2] = { sub, pub };
    close_and_settle(all, 2);
}

#define QMSGS 300

/* Members of one queue group on all three brokers: each message to
 * exactly one of them, and every broker's members get some. */
static void test_queue_group_across(void **state)
{
    (void)state;
    wait_linked();
    const char *topic = "jobs.run";
    fo_tc_t m[4], pub;
    const int at[4] = { 0, 0, 1, 2 };
    for (int i = 0; i < 4; i++) {
        open_at(&m[i], at[i]);
        sub_ack(&m[i], 1, topic, "workers");
    }
    const double want[N] = { 1, 1, 1 };
    wait_all_interest(want);
    open_at(&pub, 0);
    for (int k = 0; k < QMSGS; k++)
        assert_int_equal(fo_tc_publish(&pub, topic, "job", 3, (uint64_t)k + 1), 0);
    assert_int_equal(fo_tc_wait_ack(&pub, QMSGS, 10000), 0);
    static uint8_t seen[QMSGS + 1];
    memset(seen, 0, sizeof seen);
    int per_broker[N] = { 0 }, total = 0;
    uint64_t end = fo_tb_now_ms() + 10000;
    while (total < QMSGS && fo_tb_now_ms() < end)
        for (int i = 0; i < 4; i++) {
            Fanout__Frame *f = next(&m[i], 20);
            if (!f)
                continue;
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
            uint64_t q = lo(f->deliver->seq);
            assert_in_range(q, 1, QMSGS);
            assert_int_equal(seen[q], 0);                 /* exactly once */
            seen[q] = 1;
            per_broker[at[i]]++;
            total++;
        }
    assert_int_equal(total, QMSGS);
    for (int i = 0; i < N; i++)
        assert_true(per_broker[i] > 0);
    /* and nothing more comes */
    for (int i = 0; i < 4; i++)
        assert_null(next(&m[i], 100));
    close_and_settle(m, 4);
    fo_tc_close(&pub);
}

/* Copies crossing links (PeerDeliver written, plus forwards) summed over
 * the brokers. */
static double copies(void)
{
    double sum = 0;
    for (int i = 0; i < N; i++) {
        sum += metric(i, "fanout_cluster_forwarded_total%s", "");
        for (int k = 0; k < N; k++)
            if (k != i)
                sum += metric(i, "fanout_cluster_link_messages_out_total{node=\"%s\"}", node(k));
    }
    return sum;
}

#define CMSGS 50

/* Subscribers on the brokers in `subs` (a bit mask), the publisher on a
 * broker that is not the home: CMSGS * (interested brokers other than the
 * home + 1) copies cross the links. */
static void copies_case(const char *topic, unsigned subs)
{
    int home = home_of(topic), publisher = (home + 1) % N;
    fo_tc_t sc[N], pub;
    int ns = 0, interested = 0;
    double want[N] = { 0 };
    for (int i = 0; i < N; i++)
        if (subs & (1u << i)) {
            open_at(&sc[ns], i);
            sub_ack(&sc[ns++], 1, topic, NULL);
            want[i] = 1;
            interested += i != home;
        }
    wait_all_interest(want);
    double before = copies();
    open_at(&pub, publisher);
    for (int k = 0; k < CMSGS; k++)
        assert_int_equal(fo_tc_publish(&pub, topic, "c", 1, (uint64_t)k + 1), 0);
    assert_int_equal(fo_tc_wait_ack(&pub, CMSGS, 10000), 0);
    for (int s = 0; s < ns; s++)
        for (int k = 0; k < CMSGS; k++) {
            Fanout__Frame *f = next(&sc[s], 10000);
            assert_non_null(f);
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
        }
    /* every copy was written before its subscriber could read it */
    double after = copies();
    print_message("%s: subscribers on %u, home %d, publisher %d: %.0f copies for %d messages\n", topic, subs,
                  home, publisher, after - before, CMSGS);
    assert_int_equal((long)(after - before), (long)CMSGS * (interested + 1));
    fo_tc_close(&pub);
    close_and_settle(sc, ns);
}

static void test_link_copies(void **state)
{
    (void)state;
    wait_linked();
    /* one broker interested (the publisher's), two, all three */
    const char *topic = "copies.a";
    int home = home_of(topic), publisher = (home + 1) % N, other = (home + 2) % N;
    copies_case(topic, 1u << publisher);
    copies_case("copies.a", 1u << publisher | 1u << other);
    copies_case("copies.a", 7u);
    copies_case("copies.a", 1u << home);
}

/* A broker with another secret is not linked (and says why); the others
 * keep theirs. */
static void test_wrong_secret(void **state)
{
    (void)state;
    wait_linked();
    fo_tb_t stranger;
    int sport = fo_tb_free_port();
    char listen[64], speers[300];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", sport);
    snprintf(speers, sizeof speers, "%s,127.0.0.1:%d", peers, sport);
    const char *args[] = { "--cluster-listen", listen, "--cluster-peers", speers, "--node-id", "stranger",
                           "--cluster-secret", "guess", NULL };
    assert_int_equal(fo_tb_start(&stranger, args), 0);
    assert_int_equal(fo_tb_wait_metric(&stranger, "fanout_cluster_auth_failures_total", 1, 10000), 0);
    assert_int_equal(fo_tb_metric(&stranger, "fanout_cluster_links_up"), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(metric(i, "fanout_cluster_members%s", ""), N);
    assert_int_equal(fo_tb_stop(&stranger), 0);
}

/* SUBSCRIBE with a start or positions, and its ACK. */
static void sub_from(fo_tc_t *c, uint32_t sid, const char *filter, int start, uint64_t start_seq,
                     const char *pos_topic, uint64_t pos_seq)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    Fanout__Position p = FANOUT__POSITION__INIT, *pp = &p;
    s.has_sid = 1;
    s.sid = sid;
    s.filter = (char *)filter;
    if (start) {
        s.has_start = 1;
        s.start = start;
        s.has_start_seq = start == FANOUT__START__START_SEQ;
        s.start_seq = start_seq;
    }
    if (pos_topic) {
        p.topic = (char *)pos_topic;
        p.has_seq = 1;
        p.seq = pos_seq;
        s.n_positions = 1;
        s.positions = &pp;
    }
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    f.has_req = 1;
    f.req = 7000 + sid;
    assert_int_equal(fo_tc_send(c, &f), 0);
    assert_int_equal(fo_tc_wait_ack(c, f.req, 5000), 0);
}

/* The topic's epoch as the next test's publishes see it (seq 0 of it). */
static uint64_t base;

/* The next n DELIVERs are seqs from..from+n-1 (of base's epoch) in order;
 * replay flags as want_replay says (-1: either). Payload "m<from+k>". */
static void expect_run(fo_tc_t *c, uint64_t from, int n, int want_replay)
{
    for (int k = 0; k < n; k++) {
        Fanout__Frame *f = next(c, 10000);
        if (!f)
            fail_msg("seq %llu did not come", (unsigned long long)from + (uint64_t)k);
        if (f->body_case != FANOUT__FRAME__BODY_DELIVER)
            fail_msg("frame %d instead of seq %llu", f->body_case, (unsigned long long)from + (uint64_t)k);
        assert_int_equal(f->deliver->seq, base + from + (uint64_t)k);
        char want[32];
        snprintf(want, sizeof want, "m%llu", (unsigned long long)(from + (uint64_t)k));
        assert_int_equal(f->deliver->payload.len, strlen(want));
        assert_memory_equal(f->deliver->payload.data, want, strlen(want));
        if (want_replay >= 0)
            assert_int_equal(f->deliver->has_replay && f->deliver->replay, want_replay);
    }
}

/* Publish "m<from>".."m<from+n-1>" with req = the number; the ACKs'
 * sequences are base + the number (base set by the first ACK seen). */
static void publish_run(fo_tc_t *pub, const char *topic, uint64_t from, int n)
{
    for (int k = 0; k < n; k++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "m%llu", (unsigned long long)(from + (uint64_t)k));
        assert_int_equal(fo_tc_publish(pub, topic, msg, (size_t)len, from + (uint64_t)k), 0);
    }
    for (int k = 0; k < n;) {
        Fanout__Frame *f = next(pub, 10000);
        assert_non_null(f);
        if (f->body_case != FANOUT__FRAME__BODY_ACK)
            continue;
        if (!base)
            base = f->ack->seq - f->ack->ref;
        assert_int_equal(f->ack->seq, base + f->ack->ref);
        if (f->ack->ref >= from)
            k++;
    }
}

/* A subscriber on an edge starting in the past gets the home's ring, then
 * live messages, without overlap or hole, even with messages published
 * while it subscribes; positions and REPAIR through the edge too. */
static void test_replay_through_edge(void **state)
{
    (void)state;
    wait_linked();
    const char *topic = "replay.orders";
    int home = home_of(topic), edge = (home + 1) % N, third = (home + 2) % N;
    fo_tc_t pub, early, at_home, pos;
    open_at(&pub, third);
    base = 0;
    publish_run(&pub, topic, 1, 20);
    /* published 21..40 with no wait, the subscribe in the middle */
    open_at(&early, edge);
    for (int k = 21; k <= 30; k++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "m%d", k);
        assert_int_equal(fo_tc_publish(&pub, topic, msg, (size_t)len, (uint64_t)k), 0);
    }
    sub_from(&early, 1, topic, FANOUT__START__START_EARLIEST, 0, NULL, 0);
    publish_run(&pub, topic, 31, 10);
    expect_run(&early, 1, 40, -1);
    assert_null(next(&early, 100));                  /* and nothing twice */
    /* the same as the home's own ring */
    open_at(&at_home, home);
    sub_from(&at_home, 1, topic, FANOUT__START__START_EARLIEST, 0, NULL, 0);
    expect_run(&at_home, 1, 40, 1);
    /* a position on another edge, then REPAIR there */
    open_at(&pos, third);
    sub_from(&pos, 3, "replay.*", 0, 0, topic, base + 35);
    expect_run(&pos, 35, 6, 1);
    publish_run(&pub, topic, 41, 2);
    expect_run(&early, 41, 2, 0);
    expect_run(&at_home, 41, 2, 0);
    expect_run(&pos, 41, 2, 0);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Repair r = FANOUT__REPAIR__INIT;
    r.has_sid = r.has_first = r.has_last = 1;
    r.sid = 3;
    r.topic = (char *)topic;
    r.first = base + 5;
    r.last = base + 8;
    f.body_case = FANOUT__FRAME__BODY_REPAIR;
    f.repair = &r;
    f.has_req = 1;
    f.req = 99;
    assert_int_equal(fo_tc_send(&pos, &f), 0);
    expect_run(&pos, 5, 4, 1);
    Fanout__Frame *a = next(&pos, 5000);
    assert_non_null(a);
    assert_int_equal(a->body_case, FANOUT__FRAME__BODY_ACK);
    assert_int_equal(a->ack->ref, 99);
    fo_tc_t all[4] = { pub, early, at_home, pos };
    close_and_settle(all, 4);
}

/* A topic homed on broker `home`. */
static void topic_homed(int home, const char *prefix, char *out, size_t len)
{
    for (int t = 0;; t++) {
        snprintf(out, len, "%s%d", prefix, t);
        if (home_of(out) == home)
            return;
    }
}

static void kill_and_restart_later(int i)
{
    fo_tb_signal(&br[i], SIGKILL);
    assert_int_equal(fo_tb_stop(&br[i]), 128 + SIGKILL);
    for (int k = 0; k < N; k++)
        if (k != i)
            assert_int_equal(wait_eq(k, "fanout_cluster_members%s", "", N - 1), 0);
}

/* kill -9 of an edge: its subscriber resumes on another broker with its
 * position and loses nothing (what it missed comes from the home's ring,
 * then live). */
static void test_edge_dies_resume_elsewhere(void **state)
{
    (void)state;
    wait_linked();
    char topic[32];
    topic_homed(0, "resume.t", topic, sizeof topic);
    fo_tc_t sub, pub;
    open_at(&sub, 1);
    sub_ack(&sub, 1, topic, NULL);
    const double want[N] = { 0, 1, 0 };
    wait_all_interest(want);
    open_at(&pub, 2);
    base = 0;
    publish_run(&pub, topic, 1, 10);
    expect_run(&sub, 1, 10, 0);
    kill_and_restart_later(1);          /* the subscriber's broker */
    fo_tc_close(&sub);
    publish_run(&pub, topic, 11, 10);   /* while it is away */
    fo_tc_t again;
    open_at(&again, 2);
    sub_from(&again, 1, "resume.>", 0, 0, topic, base + 11);
    publish_run(&pub, topic, 21, 5);
    expect_run(&again, 11, 15, -1);
    assert_null(next(&again, 100));
    fo_tc_close(&again);
    fo_tc_close(&pub);
    assert_int_equal(start_one(1, "s3cret"), 0);
    wait_linked();
    const double none[N] = { 0, 0, 0 };
    wait_all_interest(none);
}

/* libfanout connected to broker 1 alone learns the others from WELCOME;
 * broker 1 is killed; the client reconnects to another and resumes with
 * its positions: nothing lost, nothing twice. */
static void test_libfanout_fails_over(void **state)
{
    (void)state;
    wait_linked();
    char topic[32];
    topic_homed(0, "lib.t", topic, sizeof topic);
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    const char *servers[] = { br[1].addr };
    o.servers = servers;
    o.nservers = 1;
    o.reconnect_min_ms = 50;
    o.reconnect_max_ms = 200;
    fo_client_t *cl;
    char err[256];
    assert_int_equal(fo_client_connect(&o, &cl, err, sizeof err), FO_OK);
    fo_sub_t *s;
    assert_int_equal(fo_subscribe(cl, topic, NULL, &s), FO_OK);
    const double want[N] = { 0, 1, 0 };
    wait_all_interest(want);
    fo_tc_t pub;
    open_at(&pub, 2);
    base = 0;
    publish_run(&pub, topic, 1, 5);
    for (uint64_t k = 1; k <= 5; k++) {
        const fo_msg_t *m;
        assert_int_equal(fo_sub_next(s, 10000, &m), FO_OK);
        assert_int_equal(m->seq, base + k);
    }
    kill_and_restart_later(1);
    publish_run(&pub, topic, 6, 5);                  /* while it reconnects */
    for (uint64_t k = 6; k <= 10; k++) {
        const fo_msg_t *m;
        assert_int_equal(fo_sub_next(s, 15000, &m), FO_OK);
        assert_int_equal(m->seq, base + k);
        char want_p[16];
        snprintf(want_p, sizeof want_p, "m%llu", (unsigned long long)k);
        assert_int_equal(m->payload_len, strlen(want_p));
        assert_memory_equal(m->payload, want_p, m->payload_len);
    }
    fo_client_stats_t st;
    fo_client_stats(cl, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.gaps, 0);
    publish_run(&pub, topic, 11, 1);                 /* and live after it */
    const fo_msg_t *m;
    assert_int_equal(fo_sub_next(s, 10000, &m), FO_OK);
    assert_int_equal(m->seq, base + 11);
    assert_int_equal(fo_sub_next(s, 100, &m), FO_ERR_TIMEOUT);
    assert_int_equal(fo_client_close(cl, 1000), FO_OK);   /* frees it */
    fo_tc_close(&pub);
    assert_int_equal(start_one(1, "s3cret"), 0);
    wait_linked();
    const double none[N] = { 0, 0, 0 };
    wait_all_interest(none);
}

/* Expect one GAP_HOME_CHANGED from after `last` on, then the first message
 * of a newer epoch, numbered 1 in it. Returns its seq. */
static uint64_t expect_home_changed(fo_tc_t *c, uint64_t last)
{
    Fanout__Frame *f = next(c, 10000);
    assert_non_null(f);
    if (f->body_case != FANOUT__FRAME__BODY_GAP)
        fail_msg("frame %d, not the GAP of the new home", f->body_case);
    assert_int_equal(f->gap->reason, FANOUT__GAP_REASON__GAP_HOME_CHANGED);
    assert_int_equal(f->gap->first, last + 1);
    uint64_t gl = f->gap->last;
    f = next(c, 10000);
    assert_non_null(f);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
    assert_int_equal(f->deliver->seq, gl + 1);
    assert_true(epoch_of(f->deliver->seq) > epoch_of(last));
    assert_int_equal(lo(f->deliver->seq), 1);
    return f->deliver->seq;
}

/* kill -9 of a home: its topic moves, subscribers on both other brokers
 * get exactly one GAP_HOME_CHANGED and delivery continues in a new epoch;
 * when it comes back the topic moves back, with one more GAP. */
static void test_home_dies_one_gap(void **state)
{
    (void)state;
    wait_linked();
    char topic[32];
    topic_homed(2, "homegap.t", topic, sizeof topic);
    fo_tc_t sub[2], pub;
    for (int i = 0; i < 2; i++) {
        open_at(&sub[i], i);
        sub_ack(&sub[i], 1, topic, NULL);
    }
    const double want[N] = { 1, 1, 0 };
    wait_all_interest(want);
    open_at(&pub, 0);
    base = 0;
    publish_run(&pub, topic, 1, 5);
    for (int i = 0; i < 2; i++)
        expect_run(&sub[i], 1, 5, 0);
    uint64_t last = base + 5;
    kill_and_restart_later(2);
    /* the next message is the new home's first */
    assert_int_equal(fo_tc_publish(&pub, topic, "after", 5, 100), 0);
    Fanout__Frame *a = next(&pub, 5000);
    assert_non_null(a);
    assert_int_equal(a->body_case, FANOUT__FRAME__BODY_ACK);
    uint64_t first = a->ack->seq;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(expect_home_changed(&sub[i], last), first);
        assert_null(next(&sub[i], 100));        /* one GAP, no more */
    }
    /* more in the same epoch: no GAP */
    assert_int_equal(fo_tc_publish(&pub, topic, "again", 5, 101), 0);
    for (int i = 0; i < 2; i++) {
        Fanout__Frame *f = next(&sub[i], 5000);
        assert_non_null(f);
        assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
        assert_int_equal(f->deliver->seq, first + 1);
    }
    assert_int_equal(fo_tc_wait_ack(&pub, 101, 5000), 0);
    /* the old home comes back and is the topic's home again */
    assert_int_equal(start_one(2, "s3cret"), 0);
    wait_linked();
    wait_all_interest(want);
    assert_int_equal(fo_tc_publish(&pub, topic, "back", 4, 102), 0);
    a = next(&pub, 5000);
    assert_non_null(a);
    assert_int_equal(a->body_case, FANOUT__FRAME__BODY_ACK);
    for (int i = 0; i < 2; i++)
        assert_int_equal(expect_home_changed(&sub[i], first + 1), a->ack->seq);
    fo_tc_t all[3] = { sub[0], sub[1], pub };
    close_and_settle(all, 3);
}

/* Two brokers whose links are mutual TLS (--cluster-tls): they link and
 * carry messages; a third whose certificate is from a CA they do not trust
 * is not linked. */
static void test_tls_links(void **state)
{
    (void)state;
    const char *certs = fo_tb_certs();
    if (!certs)
        skip();
    fo_tb_t t[3];
    int cp[3];
    static char listen[3][64], tpeers[256], cert[3][300], key[3][300], ca[300];
    for (int i = 0; i < 3; i++)
        cp[i] = fo_tb_free_port();
    snprintf(tpeers, sizeof tpeers, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", cp[0], cp[1], cp[2]);
    snprintf(ca, sizeof ca, "%s/ca.pem", certs);
    const char *id[] = { "t0", "t1", "t2" };
    const char *args[3][16];
    for (int i = 0; i < 3; i++) {
        const char *who = i < 2 ? "peer" : "peer-stranger";
        snprintf(listen[i], sizeof listen[i], "127.0.0.1:%d", cp[i]);
        snprintf(cert[i], sizeof cert[i], "%s/%s.pem", certs, who);
        snprintf(key[i], sizeof key[i], "%s/%s.key", certs, who);
        const char *a[] = { "--cluster-listen", listen[i], "--cluster-peers", tpeers, "--node-id", id[i],
                            "--cluster-tls", "1", "--tls-cert", cert[i], "--tls-key", key[i],
                            "--cluster-tls-ca", ca, NULL };
        _Static_assert(sizeof a <= sizeof args[i], "args holds a");
        memcpy(args[i], a, sizeof a);
        assert_int_equal(fo_tb_start(&t[i], args[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(fo_tb_wait_metric(&t[i], "fanout_cluster_links_up", 1, 10000), 0);
    /* the stranger's handshakes fail: it stays alone */
    assert_int_equal(fo_tb_wait_metric(&t[2], "fanout_cluster_ready", 1, 10000), 0);
    assert_int_equal(fo_tb_metric(&t[2], "fanout_cluster_links_up"), 0);
    assert_int_equal(fo_tb_metric(&t[0], "fanout_cluster_members"), 2);
    fo_tc_t sub, pub;
    assert_int_equal(fo_tc_open(&sub, t[0].port, "tls-sub"), 0);
    assert_int_equal(fo_tc_subscribe(&sub, 1, "tls.>", NULL), 0);
    assert_int_equal(fo_tb_wait_metric(&t[1], "fanout_cluster_peer_interest_entries{node=\"t0\"}", 1, 10000), 0);
    assert_int_equal(fo_tc_open(&pub, t[1].port, "tls-pub"), 0);
    for (int k = 0; k < 200; k++) {
        char topic[32], msg[32];
        snprintf(topic, sizeof topic, "tls.t%d", k % 7);
        int len = snprintf(msg, sizeof msg, "m%d", k);
        assert_int_equal(fo_tc_publish(&pub, topic, msg, (size_t)len, (uint64_t)k + 1), 0);
    }
    assert_int_equal(fo_tc_wait_ack(&pub, 200, 10000), 0);
    for (int k = 0; k < 200; k++) {
        Fanout__Frame *f = next(&sub, 10000);
        assert_non_null(f);
        assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
    }
    fo_tc_close(&sub);
    fo_tc_close(&pub);
    /* SIGHUP re-reads the links' certificate; a link made after it (t1
     * restarted) comes up with the new context */
    fo_tb_signal(&t[0], SIGHUP);
    assert_int_equal(fo_tb_stop(&t[1]), 0);
    assert_int_equal(fo_tb_wait_metric(&t[0], "fanout_cluster_members", 1, 15000), 0);
    double members;
    assert_int_equal(fo_tb_start(&t[1], args[1]), 0);
    assert_int_equal(fo_tb_wait_metric(&t[0], "fanout_cluster_links_up", 1, 15000), 0);
    members = fo_tb_metric(&t[0], "fanout_cluster_members");
    assert_true(members == 2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(fo_tb_stop(&t[i]), 0);
}

/* Multicast stays on a broker's segment: a broker that is not the topic's
 * home sends the messages it gets from the home to its own multicast
 * group when it has multicast subscribers (counted by its metrics), and
 * not when it has none. */
static void test_multicast_from_an_edge(void **state)
{
    (void)state;
    fo_tb_t m[2];
    int cp[2];
    char listen[2][64], mpeers[128], map[2][64];
    unsigned r = (unsigned)getpid();
    for (int i = 0; i < 2; i++)
        cp[i] = fo_tb_free_port();
    snprintf(mpeers, sizeof mpeers, "127.0.0.1:%d,127.0.0.1:%d", cp[0], cp[1]);
    const char *id[] = { "m0", "m1" };
    for (int i = 0; i < 2; i++) {
        snprintf(listen[i], sizeof listen[i], "127.0.0.1:%d", cp[i]);
        snprintf(map[i], sizeof map[i], "mc.>=239.%u.%u.%u:%d", 60 + r % 40, (r >> 8) & 255, 1 + r % 250,
                 fo_tb_free_port());
        const char *args[] = { "--cluster-listen", listen[i], "--cluster-peers", mpeers, "--node-id", id[i],
                               "--mcast-group", map[i], "--mcast-if", "127.0.0.1", "--mcast-loop", "1", NULL };
        assert_int_equal(fo_tb_start(&m[i], args), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(fo_tb_wait_metric(&m[i], "fanout_cluster_links_up", 1, 10000), 0);
    /* a topic homed on m0 (the same placement as any two ids) */
    uint64_t h[2] = { fo_place_node_hash("m0", 2), fo_place_node_hash("m1", 2) };
    char topic[32];
    for (int t = 0;; t++) {
        snprintf(topic, sizeof topic, "mc.t%d", t);
        if (fo_place_pick(h, 2, fo_place_topic_hash(topic, strlen(topic))) == 0)
            break;
    }
    /* m1's subscriber takes multicast (loopback: WELCOME gives it the key) */
    fo_tc_t sub, pub;
    assert_int_equal(fo_tc_open(&sub, m[1].port, "mc-sub"), 0);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe s = FANOUT__SUBSCRIBE__INIT;
    s.has_sid = s.has_delivery = 1;
    s.sid = 1;
    s.filter = (char *)"mc.>";
    s.delivery = FANOUT__DELIVERY__DELIVERY_MULTICAST;
    f.body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
    f.subscribe = &s;
    f.has_req = 1;
    f.req = 5;
    assert_int_equal(fo_tc_send(&sub, &f), 0);
    assert_int_equal(fo_tc_wait_ack(&sub, 5, 5000), 0);
    assert_int_equal(fo_tb_wait_metric(&m[0], "fanout_cluster_peer_interest_entries{node=\"m1\"}", 1, 10000), 0);
    double before = fo_tb_metric(&m[1], "fanout_mcast_messages_total");
    assert_int_equal(fo_tc_open(&pub, m[0].port, "mc-pub"), 0);
    for (int k = 0; k < 50; k++)
        assert_int_equal(fo_tc_publish(&pub, topic, "tick", 4, (uint64_t)k + 1), 0);
    assert_int_equal(fo_tc_wait_ack(&pub, 50, 10000), 0);
    /* m1 multicast all 50 for its subscriber (m0 sent them to its own group) */
    assert_int_equal(fo_tb_wait_metric(&m[1], "fanout_mcast_messages_total", before + 50, 10000), 0);
    assert_int_equal(fo_tb_wait_metric(&m[0], "fanout_mcast_messages_total", 50, 10000), 0);
    /* without a multicast subscriber m1 sends nothing */
    fo_tc_close(&sub);
    assert_int_equal(fo_tb_wait_metric(&m[1], "fanout_subscriptions", 0, 5000), 0);
    double after = fo_tb_metric(&m[1], "fanout_mcast_messages_total");
    const char *entries = "fanout_cluster_peer_interest_entries{node=\"m1\"}";
    uint64_t end = fo_tb_now_ms() + 10000;
    while (fo_tb_metric(&m[0], entries) != 0 && fo_tb_now_ms() < end) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    fo_tc_t tcp;
    assert_int_equal(fo_tc_open(&tcp, m[1].port, "tcp-sub"), 0);
    assert_int_equal(fo_tc_subscribe(&tcp, 1, "mc.>", NULL), 0);
    assert_int_equal(fo_tb_wait_metric(&m[0], entries, 1, 10000), 0);
    for (int k = 0; k < 10; k++)
        assert_int_equal(fo_tc_publish(&pub, topic, "tock", 4, (uint64_t)k + 100), 0);
    for (int k = 0; k < 10; k++) {
        Fanout__Frame *d = next(&tcp, 10000);
        assert_non_null(d);
        assert_int_equal(d->body_case, FANOUT__FRAME__BODY_DELIVER);
    }
    assert_int_equal(fo_tb_metric(&m[1], "fanout_mcast_messages_total"), after);
    fo_tc_close(&tcp);
    fo_tc_close(&pub);
    for (int i = 0; i < 2; i++)
        assert_int_equal(fo_tb_stop(&m[i]), 0);
}

/* A request on one broker, its responder on another: the reply finds the
 * requester through its inbox's broker tag. */
static void test_request_across_brokers(void **state)
{
    (void)state;
    wait_linked();
    fo_tc_t req, resp;
    assert_int_equal(fo_tc_connect(&req, br[0].port), 0);
    assert_int_equal(fo_tc_send_hello(&req, NULL, NULL, NULL), 0);
    Fanout__Frame *w = next(&req, 5000);
    assert_non_null(w);
    assert_int_equal(w->body_case, FANOUT__FRAME__BODY_WELCOME);
    char inbox[128];
    snprintf(inbox, sizeof inbox, "%s", w->welcome->inbox);
    assert_int_equal(strlen(inbox), 7 + 32 + 9);         /* the broker's tag after the secret */
    open_at(&resp, 2);
    sub_ack(&resp, 1, "svc.echo", NULL);
    const double want[N] = { 0, 0, 1 };
    wait_all_interest(want);
    char reply_to[160];
    snprintf(reply_to, sizeof reply_to, "%s.7", inbox);
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Publish p = FANOUT__PUBLISH__INIT;
    p.topic = (char *)"svc.echo";
    p.has_payload = 1;
    p.payload = (ProtobufCBinaryData){ 4, (uint8_t *)"ping" };
    p.reply = reply_to;
    f.body_case = FANOUT__FRAME__BODY_PUBLISH;
    f.publish = &p;
    f.has_req = 1;
    f.req = 70;
    assert_int_equal(fo_tc_send(&req, &f), 0);
    assert_int_equal(fo_tc_wait_ack(&req, 70, 5000), 0);
    Fanout__Frame *d = next(&resp, 5000);
    assert_non_null(d);
    assert_int_equal(d->body_case, FANOUT__FRAME__BODY_DELIVER);
    assert_string_equal(d->deliver->reply, reply_to);
    char back[160];
    snprintf(back, sizeof back, "%s", d->deliver->reply);
    assert_int_equal(fo_tc_publish(&resp, back, "pong", 4, 71), 0);
    assert_int_equal(fo_tc_wait_ack(&resp, 71, 5000), 0);
    Fanout__Frame *r = next(&req, 5000);
    assert_non_null(r);
    assert_int_equal(r->body_case, FANOUT__FRAME__BODY_DELIVER);
    assert_string_equal(r->deliver->topic, reply_to);
    assert_int_equal(r->deliver->payload.len, 4);
    assert_memory_equal(r->deliver->payload.data, "pong", 4);
    fo_tc_t all[2] = { req, resp };
    close_and_settle(all, 2);
}

/* The cluster port takes no nonsense: garbage, a client's HELLO, a frame
 * length past the limit, a peer that never finishes the handshake, or one
 * that says hello as this very broker, each closes that connection (or
 * times it out) and nothing else changes. */
static void test_cluster_port_garbage(void **state)
{
    (void)state;
    wait_linked();
    double fails = metric(0, "fanout_cluster_auth_failures_total%s", "");
    struct { const uint8_t *p; size_t n; } bad[] = {
        { (const uint8_t *)"GET / HTTP/1.0\r\n\r\n", 18 },
        { (const uint8_t *)"\x00\x00\x00\x04\x0a\x02\x08\x01", 8 },        /* a client HELLO */
        { (const uint8_t *)"\x7f\xff\xff\xff", 4 },                        /* 2 GiB frame */
        { (const uint8_t *)"\x00\x00\x00\x03\xff\xff\xff", 7 },             /* not protobuf */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fo_tc_t c;
        assert_int_equal(fo_tc_connect_plain(&c, cport[0]), 0);
        assert_int_equal(fo_tc_send_raw(&c, bad[i].p, bad[i].n), 0);
        int code;
        assert_int_equal(fo_tc_wait_closed(&c, 10000, &code), 0);       /* closed on us */
        fo_tc_close(&c);
    }
    /* a hello naming broker 0 itself, with a valid frame around it */
    fo_tc_t self;
    assert_int_equal(fo_tc_connect_plain(&self, cport[0]), 0);
    Fanout__PeerFrame f = FANOUT__PEER_FRAME__INIT;
    Fanout__PeerHello h = FANOUT__PEER_HELLO__INIT;
    uint8_t nonce[32] = { 1 };
    h.has_version = h.has_nonce = 1;
    h.version = 1;
    h.node_id = (char *)node(0);
    h.nonce = (ProtobufCBinaryData){ sizeof nonce, nonce };
    f.body_case = FANOUT__PEER_FRAME__BODY_HELLO;
    f.hello = &h;
    uint8_t buf[256];
    size_t n = fanout__peer_frame__pack(&f, buf + 4);
    buf[0] = 0; buf[1] = 0; buf[2] = (uint8_t)(n >> 8); buf[3] = (uint8_t)n;
    assert_int_equal(fo_tc_send_raw(&self, buf, n + 4), 0);
    int code;
    assert_int_equal(fo_tc_wait_closed(&self, 10000, &code), 0);
    fo_tc_close(&self);
    /* the four that broke the protocol are counted; this broker itself is not */
    assert_true(metric(0, "fanout_cluster_auth_failures_total%s", "") >= fails + 4);
    /* the cluster is as it was */
    wait_linked();
    char t[32];
    topic_homed(1, "garbage.t", t, sizeof t);
    fo_tc_t sub, pub;
    open_at(&sub, 0);
    sub_ack(&sub, 1, t, NULL);
    const double want[N] = { 1, 0, 0 };
    wait_all_interest(want);
    open_at(&pub, 2);
    assert_int_equal(fo_tc_publish(&pub, t, "ok", 2, 1), 0);
    Fanout__Frame *d = next(&sub, 5000);
    assert_non_null(d);
    assert_int_equal(d->body_case, FANOUT__FRAME__BODY_DELIVER);
    fo_tc_t all[2] = { sub, pub };
    close_and_settle(all, 2);
}

/* Broker 2 leaves (kill -9): the others drop it from the members, and its
 * topics get a new home that sequences them; it comes back and links. */
static void test_member_leaves(void **state)
{
    (void)state;
    wait_linked();
    const char *topic = NULL;
    char name[32];
    for (int t = 0; !topic; t++) {
        snprintf(name, sizeof name, "leave.t%d", t);
        if (home_of(name) == 2)
            topic = name;
    }
    fo_tb_signal(&br[2], SIGKILL);
    assert_int_equal(fo_tb_stop(&br[2]), 128 + SIGKILL);
    for (int i = 0; i < 2; i++)
        assert_int_equal(wait_eq(i, "fanout_cluster_members%s", "", 2), 0);
    fo_tc_t pub;
    open_at(&pub, 0);
    assert_int_equal(fo_tc_publish(&pub, topic, "x", 1, 1), 0);
    Fanout__Frame *f = next(&pub, 5000);
    assert_non_null(f);
    assert_int_equal(f->body_case, FANOUT__FRAME__BODY_ACK);
    assert_int_equal(lo(f->ack->seq), 1);
    fo_tc_close(&pub);
    assert_int_equal(start_one(2, "s3cret"), 0);
    wait_linked();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_links_up),
        cmocka_unit_test(test_welcome_names_the_cluster),
        cmocka_unit_test(test_sequences_across_brokers),
        cmocka_unit_test(test_wildcard_elsewhere),
        cmocka_unit_test(test_queue_group_across),
        cmocka_unit_test(test_link_copies),
        cmocka_unit_test(test_replay_through_edge),
        cmocka_unit_test(test_edge_dies_resume_elsewhere),
        cmocka_unit_test(test_home_dies_one_gap),
        cmocka_unit_test(test_libfanout_fails_over),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_cluster_port_garbage),
        cmocka_unit_test(test_request_across_brokers),
        cmocka_unit_test(test_tls_links),
        cmocka_unit_test(test_multicast_from_an_edge),
        cmocka_unit_test(test_member_leaves),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
