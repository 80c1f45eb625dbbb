/* arena.h -- a bump allocator for decoding a batch of frames.
 *
 * protobuf-c unpacks through a ProtobufCAllocator; pointing it at an arena
 * means decoding a frame does no malloc of its own. The arena is reset once
 * per batch (one read's worth of frames): everything unpacked since the last
 * reset is gone at once, no per-message free.
 *
 * It starts with one block. A batch that needs more gets overflow blocks;
 * the next reset folds them into one primary block sized for the peak (up
 * to `keep_max`), so in steady state no batch mallocs at all.
 *
 * Not thread-safe: one arena belongs to one thread (a broker worker, a
 * client's reader).
 */
#ifndef FO_ARENA_H
#define FO_ARENA_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>
#include "fo_err.h"

typedef struct fo_arena_block fo_arena_block_t;

typedef struct fo_arena {
    fo_arena_block_t *primary;    /* owned; reused across resets            */
    fo_arena_block_t *overflow;   /* owned; freed at reset                  */
    size_t peak;                  /* bytes handed out since the last reset  */
    size_t keep_max;              /* primary never grows beyond this        */
    size_t mallocs;               /* block allocations so far (stats/tests) */
    ProtobufCAllocator pb;        /* allocator_data points back here        */
} fo_arena_t;

/* Set up an arena whose first block holds `initial` bytes. keep_max bounds
 * what a reset keeps (0 = 4 * initial). */
FO_MUST_CHECK fo_err_t fo_arena_init(fo_arena_t *a, size_t initial, size_t keep_max);

/* 16-byte aligned memory valid until the next reset; NULL when out of memory. */
void *fo_arena_alloc(fo_arena_t *a, size_t n);

/* Forget every allocation; keep (and maybe grow) the primary block. */
void fo_arena_reset(fo_arena_t *a);

/* Free all memory. The arena may be initialised again. NULL is fine. */
void fo_arena_destroy(fo_arena_t *a);

/* The protobuf-c allocator view of this arena (owned by the arena). */
static inline ProtobufCAllocator *fo_arena_pb(fo_arena_t *a) { return &a->pb; }

#endif
