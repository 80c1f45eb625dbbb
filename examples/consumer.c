/* consumer.c -- a small fanout consumer written against libfanout only.
 *
 *   consumer [HOST:PORT [FILTER [COUNT]]]    (defaults 127.0.0.1:7400 demo.> 11)
 *
 * Subscribes to FILTER, replaying what the broker still retains
 * (FO_START_EARLIEST), and prints COUNT messages taken with the blocking
 * fo_sub_next. Gaps (messages the broker could not deliver) and
 * reconnects are reported on stderr by callbacks, which run on the
 * library's reader thread. Closes with a drain. Build: make examples,
 * or cc consumer.c $(pkg-config --cflags --libs fanout).
 */
#include <stdio.h>
#include <stdlib.h>
#include <fanout/fanout.h>

static void on_gap(void *ud, const fo_gap_t *g)
{
    (void)ud;
    fprintf(stderr, "consumer: missed %s %llu..%llu\n", g->topic,
            (unsigned long long)g->first, (unsigned long long)g->last);
}

static void on_event(void *ud, fo_event_t ev, fo_err_t err, const char *text)
{
    (void)ud;
    fprintf(stderr, "consumer: event %d (%s) %s\n", (int)ev, fo_strerror(err), text);
}

int main(int argc, char **argv)
{
    const char *server = argc > 1 ? argv[1] : "127.0.0.1:7400";
    const char *filter = argc > 2 ? argv[2] : "demo.>";
    long count = argc > 3 ? atol(argv[3]) : 11;

    fo_client_opts_t o;
    fo_client_opts_init(&o);
    o.servers = &server;
    o.nservers = 1;
    o.name = "example-consumer";
    o.on_gap = on_gap;
    o.on_event = on_event;

    char err[256];
    fo_client_t *c;
    if (fo_client_connect(&o, &c, err, sizeof err)) {
        fprintf(stderr, "consumer: %s\n", err);
        return 1;
    }
    fo_sub_opts_t so;
    fo_sub_opts_init(&so);
    so.start = FO_START_EARLIEST;
    fo_sub_t *s;
    fo_err_t e = fo_subscribe(c, filter, &so, &s);
    if (e) {
        fprintf(stderr, "consumer: subscribe: %s (%s)\n", fo_strerror(e),
                fo_client_last_error(c, err, sizeof err));
        fo_client_destroy(c);
        return 1;
    }
    for (long i = 0; i < count; i++) {
        const fo_msg_t *m;
        e = fo_sub_next(s, 10000, &m);
        if (e) {
            fprintf(stderr, "consumer: %s\n", fo_strerror(e));
            break;
        }
        printf("%s #%llu: %.*s\n", m->topic, (unsigned long long)m->seq,
               (int)m->payload_len, (const char *)m->payload);
    }
    /* Drain: what the broker sent before our UNSUBSCRIBE is still read. */
    fo_err_t ce = fo_client_close(c, 2000);
    if (ce)
        fprintf(stderr, "consumer: close: %s\n", fo_strerror(ce));
    return e ? 1 : 0;
}
