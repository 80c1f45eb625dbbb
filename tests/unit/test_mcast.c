/* test_mcast.c -- broker multicast sender: group table, datagram packing,
 * oversize markers, sendmmsg batching, tags and datagram numbers, the
 * keys WELCOME announces to whom, on loopback (IP_MULTICAST_IF 127.0.0.1
 * with IP_MULTICAST_LOOP works without touching routes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include "mcast.h"
#include "acl.h"
#include "arena.h"

#define EPOCH 0x1122334455ull

/* A receiver bound to group:0 on loopback; returns the fd, port in *port. */
static int rx_open(const char *group, uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    int one = 1, big = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    struct sockaddr_in a = { .sin_family = AF_INET };
    inet_pton(AF_INET, group, &a.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    struct ip_mreqn mr = { .imr_ifindex = 0 };
    inet_pton(AF_INET, group, &mr.imr_multiaddr);
    inet_pton(AF_INET, "127.0.0.1", &mr.imr_address);
    assert_int_equal(setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof(mr)), 0);
    return fd;
}

/* Next datagram within 2 s, its tag verified with key and what the tag
 * covers unpacked into the arena; NULL on timeout. */
static Fanout__Datagram *rx_next(int fd, const uint8_t *key, fo_arena_t *ar, size_t *len)
{
    static uint8_t buf[65536];
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, 2000) != 1)
        return NULL;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    assert_true(n > 0);
    if (len)
        *len = (size_t)n;
    size_t covered = 0;
    uint64_t dseq = 0;
    assert_int_equal(fo_dgram_open(buf, (size_t)n, key, &covered, &dseq), FO_DGRAM_OK);
    Fanout__Datagram *d = fanout__datagram__unpack(fo_arena_pb(ar), covered, buf);
    assert_non_null(d);
    assert_true(d->has_epoch);
    assert_int_equal(d->epoch, EPOCH);
    assert_true(d->has_dseq);
    assert_int_equal(d->dseq, dseq);
    return d;
}

static int rx_idle(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, 50) == 0;
}

static char group_a[32], group_b[32];

static int setup_groups(void **state)
{
    (void)state;
    unsigned r = (unsigned)getpid();
    snprintf(group_a, sizeof(group_a), "239.%u.%u.%u", 200 + r % 50, (r >> 8) & 255, 1 + r % 250);
    snprintf(group_b, sizeof(group_b), "239.%u.%u.%u", 200 + r % 50, (r >> 8) & 255,
             1 + (r + 1) % 250);
    return 0;
}

static void cfg_init(fo_config_t *c, uint32_t max_datagram)
{
    memset(c, 0, sizeof(*c));
    c->max_datagram = max_datagram;
    c->mcast_ttl = 1;
    c->mcast_loop = 1;
    snprintf(c->mcast_if, sizeof(c->mcast_if), "127.0.0.1");
}

static void cfg_add(fo_config_t *c, const char *filter, const char *addr, uint16_t port)
{
    fo_mcast_map_t *g = &c->mcast[c->mcast_count++];
    snprintf(g->filter, sizeof(g->filter), "%s", filter);
    snprintf(g->addr, sizeof(g->addr), "%s", addr);
    g->port = port;
}

/* One group on loopback: receiver, table, sender, counters, arena. */
typedef struct rig {
    int fd;
    fo_mcast_t *m;
    fo_mcast_tx_t *tx;
    fo_stats_t st;
    fo_arena_t ar;
} rig_t;

static void rig_open(rig_t *r, uint32_t max_datagram, const char *filter)
{
    uint16_t port;
    fo_config_t c;
    memset(r, 0, sizeof(*r));
    r->fd = rx_open(group_a, &port);
    cfg_init(&c, max_datagram);
    cfg_add(&c, filter, group_a, port);
    assert_int_equal(fo_mcast_create(&c, EPOCH, &r->m), FO_OK);
    assert_int_equal(fo_mcast_tx_create(r->m, 0, &r->st, &r->tx), FO_OK);
    assert_int_equal(fo_arena_init(&r->ar, 4096, 0), FO_OK);
}

static void rig_close(rig_t *r)
{
    fo_arena_destroy(&r->ar);
    fo_mcast_tx_destroy(r->tx);
    fo_mcast_destroy(r->m);
    close(r->fd);
}

static void test_table(void **state)
{
    (void)state;
    fo_config_t c;
    cfg_init(&c, 1400);
    cfg_add(&c, "prices.eu.*", "239.1.1.1", 5000);
    cfg_add(&c, "prices.>", "239.1.1.2", 5000);
    cfg_add(&c, ">", "239.1.1.3", 5001);
    fo_mcast_t *m = NULL;
    assert_int_equal(fo_mcast_create(&c, EPOCH, &m), FO_OK);
    assert_int_equal(fo_mcast_group_for(m, "prices.eu.sap"), 0);
    assert_int_equal(fo_mcast_group_for(m, "prices.eu.sap.x"), 1);
    assert_int_equal(fo_mcast_group_for(m, "prices.us"), 1);
    assert_int_equal(fo_mcast_group_for(m, "prices"), 2);
    assert_int_equal(fo_mcast_group_for(m, "a"), 2);
    assert_int_equal(fo_mcast_max_datagram(m), 1400);
    fo_mcast_announce_t ann;
    fo_mcast_peer_t anyone = { 0 };
    assert_int_equal(fo_mcast_announce(m, &anyone, &ann), 3);
    Fanout__McastGroup **g = ann.pg;
    assert_string_equal(g[1]->filter, "prices.>");
    assert_string_equal(g[1]->address, "239.1.1.2");
    assert_true(g[2]->has_port);
    assert_int_equal(g[2]->port, 5001);
    assert_false(g[0]->has_key || g[1]->has_key || g[2]->has_key);
    assert_int_equal(ann.keyed, 0);
    assert_null(fo_mcast_group_key(m, 3));
    fo_mcast_destroy(m);

    /* no groups: valid, matches nothing, a sender that sends nothing */
    cfg_init(&c, 1400);
    assert_int_equal(fo_mcast_create(&c, EPOCH, &m), FO_OK);
    assert_int_equal(fo_mcast_group_for(m, "a"), -1);
    assert_int_equal(fo_mcast_announce(m, &anyone, &ann), 0);
    fo_stats_t st;
    memset(&st, 0, sizeof(st));
    fo_mcast_tx_t *tx = NULL;
    assert_int_equal(fo_mcast_tx_create(m, FO_DGRAM_SENDERS, &st, &tx), FO_ERR_RANGE);
    assert_null(tx);
    assert_int_equal(fo_mcast_tx_create(m, 0, &st, &tx), FO_OK);
    fo_mcast_tx_add(tx, -1, "a", 1, 1, (const uint8_t *)"x", 1, 1);
    fo_mcast_tx_add(tx, 0, "a", 1, 1, (const uint8_t *)"x", 1, 1);
    fo_mcast_tx_flush(tx);
    assert_int_equal(FO_STAT_GET(&st, mcast_datagrams), 0);
    fo_mcast_tx_destroy(tx);
    fo_mcast_tx_destroy(NULL);
    fo_mcast_destroy(m);
    fo_mcast_destroy(NULL);
}

static void test_bad_config(void **state)
{
    (void)state;
    static const struct { const char *filter, *addr; uint16_t port; } bad[] = {
        { "a.>", "10.0.0.1", 5000 },      /* not multicast    */
        { "a.>", "239.1.1.1", 0 },        /* no port          */
        { "a.>", "nonsense", 5000 },
        { "", "239.1.1.1", 5000 },        /* empty filter     */
        { "a..b", "239.1.1.1", 5000 },
        { "a.>.b", "239.1.1.1", 5000 },
        { "a.b*", "239.1.1.1", 5000 },
    };
    fo_config_t c;
    fo_mcast_t *m = (fo_mcast_t *)1;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg_init(&c, 1400);
        cfg_add(&c, bad[i].filter, bad[i].addr, bad[i].port);
        assert_int_equal(fo_mcast_create(&c, EPOCH, &m), FO_ERR_ADDR);
        assert_null(m);
    }
    cfg_init(&c, 1400);                 /* two filters on one address:port */
    cfg_add(&c, "a", "239.1.1.1", 5000);
    cfg_add(&c, "b", "239.1.1.1", 5000);
    assert_int_equal(fo_mcast_create(&c, EPOCH, &m), FO_ERR_ADDR);
    cfg_init(&c, 511);
    assert_int_equal(fo_mcast_create(&c, EPOCH, &m), FO_ERR_RANGE);
    cfg_init(&c, 70000);
    assert_int_equal(fo_mcast_create(&c, EPOCH, &m), FO_ERR_RANGE);
    cfg_init(&c, 1400);
    c.mcast_ttl = 256;
    assert_int_equal(fo_mcast_create(&c, EPOCH, &m), FO_ERR_RANGE);
    cfg_init(&c, 1400);
    snprintf(c.mcast_if, sizeof(c.mcast_if), "no-such-if0");
    assert_int_equal(fo_mcast_create(&c, EPOCH, &m), FO_ERR_ADDR);
}

/* Small messages are packed, datagrams never exceed the limit, every
 * message arrives once and in order, the counters add up. */
static void test_packing(void **state)
{
    (void)state;
    rig_t r;
    rig_open(&r, 1400, "t.>");
    fo_mcast_tx_flush(r.tx);                      /* nothing queued: no-op */
    uint8_t payload[100];
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        memset(payload, 'a' + i % 26, sizeof(payload));
        fo_mcast_tx_add(r.tx, 0, "t.x", 3, (uint64_t)i + 1, payload, (size_t)(i % 2 ? 100 : 0), 1);
    }
    fo_mcast_tx_flush(r.tx);
    uint64_t next = 1, dgrams = 0;
    while (next <= N) {
        size_t len = 0;
        Fanout__Datagram *d = rx_next(r.fd, fo_mcast_group_key(r.m, 0), &r.ar, &len);
        assert_non_null(d);
        assert_true(len <= 1400);
        for (size_t k = 0; k < d->n_msgs; k++) {
            Fanout__McastMsg *mm = d->msgs[k];
            assert_string_equal(mm->topic, "t.x");
            assert_int_equal(mm->seq, next);
            assert_true(mm->has_payload);
            assert_false(mm->has_oversize && mm->oversize);
            assert_int_equal(mm->payload.len, next % 2 ? 0 : 100);
            if (mm->payload.len)
                assert_int_equal(mm->payload.data[0], 'a' + (next - 1) % 26);
            next++;
        }
        dgrams++;
        fo_arena_reset(&r.ar);
    }
    assert_true(rx_idle(r.fd));
    assert_int_equal(FO_STAT_GET(&r.st, mcast_messages), N);
    assert_int_equal(FO_STAT_GET(&r.st, mcast_datagrams), dgrams);
    assert_true(dgrams < N / 5);
    assert_int_equal(FO_STAT_GET(&r.st, mcast_send_errors), 0);
    rig_close(&r);
}

/* A message that does not fit goes out as a marker, counted. */
static void test_oversize(void **state)
{
    (void)state;
    rig_t r;
    rig_open(&r, 512, ">");
    uint8_t big[5000];
    memset(big, 'z', sizeof(big));
    /* datagram: 7 bytes of epoch, then 13 + payload bytes for this
     * message, then the 27-byte trailer (dseq, tag): 465 bytes of payload
     * is the most that travels whole */
    fo_mcast_tx_add(r.tx, 0, "big", 3, 7, big, sizeof(big), 1);
    fo_mcast_tx_add(r.tx, 0, "big", 3, 8, big, 10, 1);
    fo_mcast_tx_add(r.tx, 0, "big", 3, 9, big, 465, 1);
    fo_mcast_tx_add(r.tx, 0, "big", 3, 10, big, 466, 1);
    fo_mcast_tx_add(r.tx, 0, "big", 3, 11, big, 5, 0);   /* has headers: marker */
    fo_mcast_tx_flush(r.tx);
    uint64_t seen = 0;
    while (seen < 5) {
        size_t len = 0;
        Fanout__Datagram *d = rx_next(r.fd, fo_mcast_group_key(r.m, 0), &r.ar, &len);
        assert_non_null(d);
        assert_true(len <= 512);
        for (size_t k = 0; k < d->n_msgs; k++, seen++) {
            Fanout__McastMsg *mm = d->msgs[k];
            assert_int_equal(mm->seq, 7 + seen);
            if (mm->seq == 7 || mm->seq == 10 || mm->seq == 11) {
                assert_true(mm->has_oversize && mm->oversize);
                assert_false(mm->has_payload);
                assert_true(mm->has_size);
                assert_int_equal(mm->size, mm->seq == 7 ? sizeof(big) : mm->seq == 10 ? 466 : 5);
            } else {
                assert_false(mm->has_oversize);
                assert_int_equal(mm->payload.len, mm->seq == 8 ? 10 : 465);
            }
        }
        fo_arena_reset(&r.ar);
    }
    assert_int_equal(FO_STAT_GET(&r.st, mcast_oversize), 3);
    assert_int_equal(FO_STAT_GET(&r.st, mcast_messages), 5);
    /* a topic too long even for a marker is counted, not sent */
    char topic[600];
    memset(topic, 'q', sizeof(topic));
    fo_mcast_tx_add(r.tx, 0, topic, sizeof(topic), 1, big, 1, 1);
    fo_mcast_tx_flush(r.tx);
    assert_int_equal(FO_STAT_GET(&r.st, mcast_send_errors), 1);
    assert_true(rx_idle(r.fd));
    rig_close(&r);
}

/* More datagrams than one batch holds: the batch is flushed when full;
 * two groups never share a datagram; destroy flushes what is left. */
static void test_batches_and_groups(void **state)
{
    (void)state;
    uint16_t pa, pb;
    int fa = rx_open(group_a, &pa), fb = rx_open(group_b, &pb);
    fo_config_t c;
    cfg_init(&c, 1400);
    cfg_add(&c, "a.>", group_a, pa);
    cfg_add(&c, "b.>", group_b, pb);
    fo_mcast_t *m = NULL;
    fo_mcast_tx_t *tx = NULL;
    fo_stats_t st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(fo_mcast_create(&c, EPOCH, &m), FO_OK);
    assert_int_equal(fo_mcast_tx_create(m, 0, &st, &tx), FO_OK);
    uint8_t payload[1300];
    memset(payload, 'p', sizeof(payload));
    enum { N = 150 };   /* one datagram each: more than a batch */
    for (int i = 1; i <= N; i++) {
        fo_mcast_tx_add(tx, fo_mcast_group_for(m, "a.x"), "a.x", 3, (uint64_t)i, payload, sizeof(payload), 1);
        fo_mcast_tx_add(tx, fo_mcast_group_for(m, "b.y"), "b.y", 3, (uint64_t)i, payload, 10, 1);
    }
    fo_mcast_tx_destroy(tx);                      /* flushes */
    fo_arena_t ar;
    assert_int_equal(fo_arena_init(&ar, 4096, 0), FO_OK);
    uint64_t na = 0, nb = 0;
    while (na < N) {
        Fanout__Datagram *d = rx_next(fa, fo_mcast_group_key(m, 0), &ar, NULL);
        assert_non_null(d);
        for (size_t k = 0; k < d->n_msgs; k++) {
            assert_string_equal(d->msgs[k]->topic, "a.x");
            assert_int_equal(d->msgs[k]->seq, ++na);
        }
        fo_arena_reset(&ar);
    }
    while (nb < N) {
        Fanout__Datagram *d = rx_next(fb, fo_mcast_group_key(m, 1), &ar, NULL);
        assert_non_null(d);
        for (size_t k = 0; k < d->n_msgs; k++) {
            assert_string_equal(d->msgs[k]->topic, "b.y");
            assert_int_equal(d->msgs[k]->seq, ++nb);
        }
        fo_arena_reset(&ar);
    }
    assert_true(rx_idle(fa) && rx_idle(fb));
    assert_int_equal(FO_STAT_GET(&st, mcast_messages), 2 * N);
    assert_true(FO_STAT_GET(&st, mcast_datagrams) >= N + 1);
    assert_int_equal(FO_STAT_GET(&st, mcast_send_errors), 0);
    fo_arena_destroy(&ar);
    fo_mcast_destroy(m);
    close(fa);
    close(fb);
}

/* Keys: 32 random bytes per group, new with every create (a broker start
 * is a new epoch); a datagram verifies under its group's key only.
 * Numbers: sender << 48 | 1, 2, 3... per sender and group, in send
 * order; two senders (workers) on one group never share one. */
static void test_tags_and_numbers(void **state)
{
    (void)state;
    uint16_t pa, pb;
    int fa = rx_open(group_a, &pa), fb = rx_open(group_b, &pb);
    fo_config_t c;
    cfg_init(&c, 512);
    cfg_add(&c, "a.>", group_a, pa);
    cfg_add(&c, "b.>", group_b, pb);
    fo_mcast_t *m = NULL, *m2 = NULL;
    assert_int_equal(fo_mcast_create(&c, EPOCH, &m), FO_OK);
    assert_int_equal(fo_mcast_create(&c, EPOCH, &m2), FO_OK);
    const uint8_t *ka = fo_mcast_group_key(m, 0), *kb = fo_mcast_group_key(m, 1);
    assert_memory_not_equal(ka, kb, FO_DGRAM_KEY_LEN);
    assert_memory_not_equal(ka, fo_mcast_group_key(m2, 0), FO_DGRAM_KEY_LEN);
    fo_stats_t st;
    memset(&st, 0, sizeof(st));
    fo_mcast_tx_t *t0 = NULL, *t1 = NULL;
    assert_int_equal(fo_mcast_tx_create(m, 0, &st, &t0), FO_OK);
    assert_int_equal(fo_mcast_tx_create(m, 1, &st, &t1), FO_OK);
    uint8_t payload[400];
    memset(payload, 'p', sizeof(payload));
    for (uint64_t i = 1; i <= 6; i++) {        /* one datagram each */
        fo_mcast_tx_add(t0, 0, "a.x", 3, i, payload, sizeof(payload), 1);
        fo_mcast_tx_add(t1, 0, "a.y", 3, i, payload, sizeof(payload), 1);
        fo_mcast_tx_add(t0, 1, "b.x", 3, i, payload, 4, 1);
    }
    fo_mcast_tx_flush(t1);
    fo_mcast_tx_flush(t0);
    fo_arena_t ar;
    assert_int_equal(fo_arena_init(&ar, 4096, 0), FO_OK);
    uint64_t next0 = 1, next1 = 1;
    static uint8_t buf[2048];
    for (int k = 0; k < 12; k++) {
        struct pollfd p = { .fd = fa, .events = POLLIN };
        assert_int_equal(poll(&p, 1, 2000), 1);
        ssize_t n = recv(fa, buf, sizeof(buf), 0);
        assert_true(n > 0 && n <= 512);
        size_t covered;
        uint64_t dseq;
        assert_int_equal(fo_dgram_open(buf, (size_t)n, kb, &covered, &dseq), FO_DGRAM_FORGED);
        assert_int_equal(fo_dgram_open(buf, (size_t)n, fo_mcast_group_key(m2, 0), &covered, &dseq),
                         FO_DGRAM_FORGED);
        assert_int_equal(fo_dgram_open(buf, (size_t)n, ka, &covered, &dseq), FO_DGRAM_OK);
        Fanout__Datagram *d = fanout__datagram__unpack(fo_arena_pb(&ar), covered, buf);
        assert_non_null(d);
        assert_int_equal(d->n_msgs, 1);
        uint64_t sender = dseq >> FO_DGRAM_SENDER_SHIFT, count = dseq & FO_DGRAM_COUNT_MAX;
        assert_string_equal(d->msgs[0]->topic, sender ? "a.y" : "a.x");
        assert_int_equal(count, sender ? next1++ : next0++);   /* in order, per sender */
        assert_int_equal(d->msgs[0]->seq, count);
        fo_arena_reset(&ar);
    }
    assert_int_equal(next0, 7);
    assert_int_equal(next1, 7);
    /* group b: sender 0's own numbering, all six packed in one datagram */
    Fanout__Datagram *d = rx_next(fb, kb, &ar, NULL);
    assert_non_null(d);
    assert_int_equal(d->dseq, 1);
    assert_int_equal(d->n_msgs, 6);
    assert_true(rx_idle(fa) && rx_idle(fb));
    fo_arena_destroy(&ar);
    fo_mcast_tx_destroy(t0);
    fo_mcast_tx_destroy(t1);
    fo_mcast_destroy(m);
    fo_mcast_destroy(m2);
    close(fa);
    close(fb);
}

/* Who gets which key in WELCOME. */
static void test_announce_keys(void **state)
{
    (void)state;
    fo_config_t c;
    cfg_init(&c, 1400);
    cfg_add(&c, "prices.>", "239.1.1.1", 5000);
    cfg_add(&c, "prices.eu.*", "239.1.1.2", 5000);
    cfg_add(&c, "orders.>", "239.1.1.3", 5000);
    fo_mcast_t *m = NULL;
    assert_int_equal(fo_mcast_create(&c, EPOCH, &m), FO_OK);
    const char *allow[] = { "prices.eu.>", "orders.>" }, *deny[] = { "orders.secret" };
    fo_acl_t *acl = NULL;
    assert_int_equal(fo_acl_build(allow, 2, deny, 1, &acl), FO_OK);
    static const struct { fo_mcast_peer_t p; uint32_t keyed; } cases[] = {
        { { .secure = 1, .anonymous = 1 }, 7 },                  /* no users: every key */
        { { .secure = 0, .anonymous = 1 }, 0 },                  /* plain TCP, remote */
        { { .secure = 1, .rights = FO_RIGHT_MULTICAST }, 2 },    /* acl below: eu.* only */
        { { .secure = 1, .rights = FO_RIGHT_BLOCK }, 0 },        /* no multicast right */
        { { .secure = 0, .rights = FO_RIGHTS_ALL }, 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fo_mcast_peer_t p = cases[i].p;
        p.sub_acl = acl;
        fo_mcast_announce_t ann;
        assert_int_equal(fo_mcast_announce(m, &p, &ann), 3);
        assert_int_equal(ann.keyed, cases[i].keyed);
        for (size_t g = 0; g < 3; g++) {
            assert_ptr_equal(ann.pg[g], &ann.g[g]);
            int keyed = (cases[i].keyed >> g) & 1;
            assert_int_equal(ann.pg[g]->has_key, keyed);
            if (keyed) {
                assert_int_equal(ann.pg[g]->key.len, FO_DGRAM_KEY_LEN);
                assert_memory_equal(ann.pg[g]->key.data, fo_mcast_group_key(m, g), FO_DGRAM_KEY_LEN);
            }
        }
    }
    fo_acl_free(acl);
    fo_mcast_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_packing),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_batches_and_groups),
        cmocka_unit_test(test_tags_and_numbers),
        cmocka_unit_test(test_announce_keys),
    };
    return cmocka_run_group_tests(tests, setup_groups, NULL);
}
