/* test_mcast_client.c -- multicast subscriptions through libfanout and a
 * real fanoutd on loopback: messages in order from the group, an oversize
 * message repaired over TCP by the library itself, a narrower filter than
 * the group's, topics no group carries still over TCP, counters. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include "harness.h"
#include "fanout.h"

static fo_tb_t broker;
static fo_client_t *pubc;

/* Messages a subscription got, as "topic:seq[r]/len " (r = replay). */
typedef struct got {
    pthread_mutex_t mu;
    char log[16384];
    _Atomic uint64_t n;
    uint64_t bad_order;
    uint64_t last_seq;
} got_t;

static void on_msg(void *ud, fo_sub_t *sub, const fo_msg_t *m)
{
    (void)sub;
    got_t *g = ud;
    pthread_mutex_lock(&g->mu);
    if (strcmp(m->topic, "t.a") == 0) {
        if (m->seq != g->last_seq + 1 && g->last_seq)
            g->bad_order++;
        g->last_seq = m->seq;
    }
    size_t l = strlen(g->log);
    if (l + 64 < sizeof(g->log))
        snprintf(g->log + l, sizeof(g->log) - l, "%s:%llu%s/%zu ", m->topic,
                 (unsigned long long)m->seq, m->replay ? "r" : "", m->payload_len);
    pthread_mutex_unlock(&g->mu);
    g->n++;
}

static int wait_n(got_t *g, uint64_t n)
{
    uint64_t end = fo_tb_now_ms() + 5000;
    while (g->n < n && fo_tb_now_ms() < end)
        usleep(2000);
    return g->n >= n;
}

static int setup(void **state)
{
    (void)state;
    unsigned r = (unsigned)getpid();
    char group[32], map[128];
    snprintf(group, sizeof(group), "239.%u.%u.%u", 20 + r % 40, (r >> 8) & 255, 1 + r % 250);
    /* a free UDP port on the group address */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    inet_pton(AF_INET, group, &a.sin_addr);
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    close(fd);
    snprintf(map, sizeof(map), "t.>=%s:%u", group, ntohs(a.sin_port));
    const char *args[] = { "--mcast-group", map, "--mcast-if", "127.0.0.1", "--mcast-loop", "1",
                           "--max-datagram", "512", NULL };
    if (fo_tb_start(&broker, args))
        return -1;
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    const char *servers[] = { broker.addr };
    o.servers = servers;
    o.nservers = 1;
    return fo_client_connect(&o, &pubc, NULL, 0) == FO_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fo_client_destroy(pubc);
    return fo_tb_stop(&broker) == 0 ? 0 : -1;
}

static fo_client_t *connect_sub(void)
{
    fo_client_opts_t o;
    fo_client_opts_init(&o);
    const char *servers[] = { broker.addr };
    o.servers = servers;
    o.nservers = 1;
    fo_client_t *c = NULL;
    assert_int_equal(fo_client_connect(&o, &c, NULL, 0), FO_OK);
    return c;
}

static fo_sub_t *sub_mcast(fo_client_t *c, const char *filter, got_t *g)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.delivery = FO_DELIVERY_MULTICAST;
    so.mcast_iface = "127.0.0.1";
    so.cb = on_msg;
    so.ud = g;
    fo_sub_t *s = NULL;
    assert_int_equal(fo_subscribe(c, filter, &so, &s), FO_OK);
    return s;
}

static void test_in_order_with_oversize_repair(void **state)
{
    (void)state;
    fo_client_t *c = connect_sub();
    got_t g;
    fo_sub_t *s = sub_mcast(c, "t.>", &g);
    static char big[2000];
    memset(big, 'b', sizeof(big));
    for (int i = 1; i <= 200; i++) {
        if (i == 100)
            assert_int_equal(fo_publish(pubc, "t.a", big, sizeof(big)), FO_OK);
        else
            assert_int_equal(fo_publish(pubc, "t.a", "x", 1), FO_OK);
    }
    assert_int_equal(fo_client_flush(pubc, 5000), FO_OK);
    assert_true(wait_n(&g, 200));
    assert_int_equal(g.bad_order, 0);
    assert_non_null(strstr(g.log, "t.a:99/1 t.a:100r/2000 t.a:101/1 "));
    fo_mcast_stats_t st;
    assert_int_equal(fo_sub_mcast_stats(s, &st), FO_OK);
    assert_int_equal(st.groups, 1);
    assert_int_equal(st.received, 200);
    assert_int_equal(st.oversize, 1);
    assert_int_equal(st.repaired, 1);
    assert_int_equal(st.lost, 0);
    assert_true(st.datagrams < 100);
    assert_int_equal(fo_sub_delivered_count(s), 200);
    assert_int_equal(fo_unsubscribe(s), FO_OK);
    fo_client_destroy(c);
}

/* The group carries t.>, the subscription wants t.b.* only; u.x is in no
 * group and comes by TCP. */
static void test_narrow_filter_and_tcp_topics(void **state)
{
    (void)state;
    fo_client_t *c = connect_sub();
    got_t g, h;
    fo_sub_t *s = sub_mcast(c, "t.b.*", &g);
    fo_sub_t *all = sub_mcast(c, ">", &h);
    assert_int_equal(fo_publish(pubc, "t.a", "1", 1), FO_OK);
    assert_int_equal(fo_publish(pubc, "t.b.x", "22", 2), FO_OK);
    assert_int_equal(fo_publish(pubc, "u.x", "333", 3), FO_OK);
    assert_int_equal(fo_client_flush(pubc, 5000), FO_OK);
    assert_true(wait_n(&g, 1));
    assert_true(wait_n(&h, 3));
    usleep(20000);
    assert_string_equal(g.log, "t.b.x:1/2 ");
    assert_non_null(strstr(h.log, "u.x:1/3 "));     /* TCP */
    assert_non_null(strstr(h.log, "t.b.x:1/2 "));   /* multicast */
    fo_mcast_stats_t st;
    assert_int_equal(fo_sub_mcast_stats(all, &st), FO_OK);
    assert_int_equal(st.received, 2);
    fo_client_destroy(c);                 /* frees the subscriptions too */
    (void)s;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_with_oversize_repair),
        cmocka_unit_test(test_narrow_filter_and_tcp_topics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
