/* bench_codec.c -- frame codec throughput: encode and decode PUBLISH
 * frames of 128 B and 4 KiB payloads, frames/s and MB/s (wire bytes).
 *
 *   build/tests/bench/bench_codec [--json] [--seconds S]
 *
 * decode = cut frames from a buffer (fo_decoder_next) and unpack each with
 * protobuf-c into an arena reset per batch; peek = the broker's zero-copy
 * PUBLISH path (fo_publish_peek). Median of 5 runs of S/5 seconds each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "frame.h"

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

typedef struct { double fps, mbps; } result_t;

/* one run of `mode` for about `secs`; returns frames/s and wire bytes/s */
static result_t run(int mode, size_t psize, double secs)
{
    static uint8_t payload[4096];
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Publish p = FANOUT__PUBLISH__INIT;
    p.topic = "bench.codec.topic";
    p.has_payload = 1;
    p.payload.data = payload;
    p.payload.len = psize;
    f.body_case = FANOUT__FRAME__BODY_PUBLISH;
    f.publish = &p;
    fo_buf_t wire = FO_BUF_INIT;
    for (int i = 0; i < BATCH; i++)
        if (fo_frame_append(&wire, &f))
            abort();
    size_t batch_bytes = fo_buf_len(&wire);
    fo_arena_t a;
    if (fo_arena_init(&a, 64 * 1024, 16 << 20))
        abort();
    fo_decoder_t d;
    fo_decoder_init(&d, 0);
    uint64_t frames = 0;
    volatile size_t sink = 0;
    double t0 = now(), t;
    do {
        if (mode == 0) {                      /* encode */
            fo_buf_t out = FO_BUF_INIT;
            if (fo_buf_reserve(&out, batch_bytes))
                abort();
            for (int i = 0; i < BATCH; i++)
                if (fo_frame_append(&out, &f))
                    abort();
            sink += fo_buf_len(&out);
            fo_buf_free(&out);
        } else {
            if (fo_decoder_feed(&d, fo_buf_head(&wire), batch_bytes))
                abort();
            const uint8_t *body;
            size_t len;
            while (fo_decoder_next(&d, &body, &len) == FO_OK) {
                if (mode == 1) {
                    Fanout__Frame *g;
                    if (fo_frame_unpack(body, len, &a, &g))
                        abort();
                    sink += g->publish->payload.len;
                } else {
                    fo_publish_view_t v;
                    if (fo_publish_peek(body, len, &v))
                        abort();
                    sink += v.payload_len;
                }
            }
            fo_arena_reset(&a);
        }
        frames += BATCH;
        t = now();
    } while (t - t0 < secs);
    fo_decoder_destroy(&d);
    fo_arena_destroy(&a);
    fo_buf_free(&wire);
    double dt = t - t0;
    return (result_t){ frames / dt, frames * (double)batch_bytes / BATCH / dt / 1e6 };
}

int main(int argc, char **argv)
{
    int json = 0;
    double secs = 2.5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            secs = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_codec [--json] [--seconds S]\n");
            return 2;
        }
    }
    const char *modes[] = { "encode", "decode", "peek" };
    size_t sizes[] = { 128, 4096 };
    if (!json) {
        printf("frame codec, PUBLISH frames, median of 5 runs\n");
        printf("%-8s %8s %14s %10s\n", "op", "payload", "frames/s", "MB/s");
    } else {
        printf("[");
    }
    int first = 1;
    for (int m = 0; m < 3; m++)
        for (int s = 0; s < 2; s++) {
            double fps[5], mbps[5];
            for (int r = 0; r < 5; r++) {
                result_t x = run(m, sizes[s], secs / 5);
                fps[r] = x.fps;
                mbps[r] = x.mbps;
            }
            qsort(fps, 5, sizeof fps[0], cmp);
            qsort(mbps, 5, sizeof mbps[0], cmp);
            if (json)
                printf("%s{\"op\":\"%s\",\"payload\":%zu,\"frames_per_s\":%.0f,\"mb_per_s\":%.1f}",
                       first ? "" : ",", modes[m], sizes[s], fps[2], mbps[2]);
            else
                printf("%-8s %7zuB %14.0f %10.1f\n", modes[m], sizes[s], fps[2], mbps[2]);
            first = 0;
        }
    if (json)
        printf("]\n");
    return 0;
}
