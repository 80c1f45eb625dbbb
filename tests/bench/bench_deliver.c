/* bench_deliver.c -- the client's DELIVER decode paths, frames/s: the
 * zero-copy fo_deliver_peek against protobuf-c's unpack, for a plain
 * DELIVER (128 B payload, as fanoutd sends it) and for one carrying a
 * reply address and 3 headers (a request, or a message with
 * traceparent-style metadata). "peek" is what libfanout's reader does:
 * the view, then (with headers) the header walk building the fo_header_t
 * array with NUL-terminated keys; what the view does not take falls back
 * to the unpack, as in the reader.
 *
 *   build/tests/bench/bench_deliver [--seconds S]
 *
 * Median of 5 runs of S/5 seconds each (default S = 2.5).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "client_int.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { BATCH = 1000 };

/* One DELIVER frame body as fanoutd builds it (prefix + shared part). */
static size_t make_frame(uint8_t *out, int extras)
{
    static uint8_t payload[128];
    static char v1[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    Fanout__Header h[3] = { FANOUT__HEADER__INIT, FANOUT__HEADER__INIT, FANOUT__HEADER__INIT };
    h[0].key = "traceparent";
    h[1].key = "content-type";
    h[2].key = "x-request-id";
    const char *vals[3] = { v1, "application/json", "8c1d6f0e" };
    Fanout__Header *hp[3];
    for (int i = 0; i < 3; i++) {
        h[i].has_value = 1;
        h[i].value.data = (uint8_t *)vals[i];
        h[i].value.len = strlen(vals[i]);
        hp[i] = &h[i];
    }
    const char *reply = "_INBOX.000000000000000100000000deadbeef.12345";
    fo_deliver_fields_t f = { .topic = "bench.deliver.topic", .topic_len = 19, .seq = 123456,
                              .time_ns = 1700000000123456789ull, .payload = payload,
                              .payload_len = sizeof payload };
    if (extras) {
        f.reply = reply;
        f.reply_len = strlen(reply);
        f.headers = hp;
        f.n_headers = 3;
    }
    uint8_t shared[1024];
    size_t sl = fo_deliver_write_shared(shared, &f);
    size_t pl = fo_deliver_prefix(out, 7, sl);
    memcpy(out + pl, shared, sl);
    return pl + sl;
}

/* mode 0: peek (and the header walk), falling back to unpack; 1: unpack */
static double run(int mode, int extras, double secs)
{
    uint8_t frame[1024];
    size_t flen = make_frame(frame, extras);
    const uint8_t *body = frame + FO_FRAME_HDR;
    size_t blen = flen - FO_FRAME_HDR;
    fo_arena_t a;
    if (fo_arena_init(&a, 64 * 1024, 16 << 20))
        abort();
    volatile size_t sink = 0;
    uint64_t frames = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < BATCH; i++) {
            fo_deliver_view_t v;
            if (mode == 0 && fo_deliver_peek(body, blen, &v) == FO_OK) {
                sink += v.payload_len;
#ifdef FO_DELIVER_VIEW_HEADERS
                /* what the reader's view_extras does */
                if (v.reply) {
                    char *r = fo_arena_alloc(&a, v.reply_len + 1);
                    if (!r)
                        abort();
                    memcpy(r, v.reply, v.reply_len);
                    r[v.reply_len] = 0;
                    sink += (size_t)r[0];
                }
                if (v.nheaders) {
                    fo_header_t *hs;
                    if (fo__client_view_headers(&a, &v, &hs) != FO_OK)
                        abort();
                    sink += hs[v.nheaders - 1].value_len;
                }
#endif
                continue;
            }
            Fanout__Frame *g;
            if (fo_frame_unpack(body, blen, &a, &g))
                abort();
            sink += g->deliver->payload.len + g->deliver->n_headers;
        }
        fo_arena_reset(&a);
        frames += BATCH;
        t = now();
    } while (t - t0 < secs);
    fo_arena_destroy(&a);
    return (double)frames / (t - t0);
}

int main(int argc, char **argv)
{
    double secs = 2.5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            secs = atof(argv[++i]);
        } else {
            fprintf(stderr, "usage: bench_deliver [--seconds S]\n");
            return 2;
        }
    }
    static const char *const modes[] = { "peek", "unpack" };
    static const char *const kinds[] = { "plain", "reply+3 headers" };
    printf("DELIVER decode, 128 B payload, median of 5 runs\n");
    printf("%-8s %-16s %14s %10s\n", "op", "frame", "frames/s", "ns/frame");
    for (int e = 0; e < 2; e++)
        for (int m = 0; m < 2; m++) {
            double fps[5];
            for (int r = 0; r < 5; r++)
                fps[r] = run(m, e, secs / 5);
            qsort(fps, 5, sizeof fps[0], cmp);
            printf("%-8s %-16s %14.0f %10.1f\n", modes[m], kinds[e], fps[2], 1e9 / fps[2]);
        }
    return 0;
}
