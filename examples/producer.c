/* producer.c -- a small fanout producer written against libfanout only.
 *
 *   producer [HOST:PORT [TOPIC [COUNT]]]     (defaults 127.0.0.1:7400 demo.ticks 10)
 *
 * Publishes COUNT messages the fast way (buffered fo_publish, one flush),
 * then one confirmed message (fo_publish_sync) to learn its sequence
 * number, and closes. Build: make examples, or against an installed
 * libfanout (docs/CLIENT.md):
 *   cc producer.c $(pkg-config --cflags --libs fanout)            (shared)
 *   cc producer.c $(pkg-config --cflags fanout) \
 *      -Wl,-Bstatic $(pkg-config --libs --static fanout) -Wl,-Bdynamic   (static)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fanout/fanout.h>

int main(int argc, char **argv)
{
    const char *server = argc > 1 ? argv[1] : "127.0.0.1:7400";
    const char *topic = argc > 2 ? argv[2] : "demo.ticks";
    long count = argc > 3 ? atol(argv[3]) : 10;

    fo_client_opts_t o;
    fo_client_opts_init(&o);
    o.servers = &server;
    o.nservers = 1;
    o.name = "example-producer";
    o.max_reconnects = 0;            /* a short-lived tool: fail, don't retry */

    char err[256];
    fo_client_t *c;
    fo_err_t e = fo_client_connect(&o, &c, err, sizeof err);
    if (e) {
        fprintf(stderr, "producer: %s\n", err);
        return 1;
    }
    for (long i = 0; i < count && !e; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "tick %ld", i);
        e = fo_publish(c, topic, msg, (size_t)n);     /* buffered */
    }
    if (!e)
        e = fo_client_flush(c, 5000);   /* written and read by the broker */
    uint64_t seq = 0;
    if (!e)
        e = fo_publish_sync(c, topic, "done", 4, 5000, &seq);
    if (e) {
        fprintf(stderr, "producer: %s (%s)\n", fo_strerror(e),
                fo_client_last_error(c, err, sizeof err));
        fo_client_destroy(c);
        return 1;
    }
    printf("published %ld messages and \"done\" (seq %llu) to %s\n", count,
           (unsigned long long)seq, topic);
    fo_client_destroy(c);
    return 0;
}
