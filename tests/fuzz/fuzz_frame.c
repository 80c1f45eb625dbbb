/* fuzz_frame.c -- libFuzzer target for the frame codec (make fuzz).
 *
 * The input is a byte stream as a socket would deliver it, fed in pieces
 * whose sizes come from the input itself. Every whole frame is unpacked by
 * protobuf-c into an arena and viewed by fo_publish_peek; whatever the
 * bytes, nothing may crash, leak or read out of bounds, and the peek must
 * agree with protobuf-c whenever it accepts a frame.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fo_arena_t arena;
    static int init;
    if (!init) {
        fo_arena_init(&arena, 4096, 1 << 20);
        init = 1;
    }
    fo_decoder_t d;
    fo_decoder_init(&d, 64 * 1024);
    size_t off = 0;
    while (off < size) {
        size_t piece = 1 + (data[off] % 97);
        off++;
        if (piece > size - off)
            piece = size - off;
        if (fo_decoder_feed(&d, data + off, piece))
            break;
        off += piece;
        const uint8_t *body;
        size_t len;
        fo_err_t e;
        while ((e = fo_decoder_next(&d, &body, &len)) == FO_OK) {
            Fanout__Frame *f = NULL;
            fo_err_t ue = fo_frame_unpack(body, len, &arena, &f);
            fo_publish_view_t v;
            if (fo_publish_peek(body, len, &v) == FO_OK) {
                if (ue != FO_OK || f->body_case != FANOUT__FRAME__BODY_PUBLISH ||
                    f->publish->payload.len != v.payload_len)
                    abort();
            }
            fo_arena_reset(&arena);
        }
        if (e == FO_ERR_FRAME_SIZE)
            break;
    }
    fo_decoder_finish(&d);
    fo_decoder_destroy(&d);
    return 0;
}
