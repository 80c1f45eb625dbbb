/* arena.c -- bump allocator behind protobuf-c unpacking (see arena.h). */
#include <stdint.h>
#include <stdlib.h>
#include "arena.h"

#define ALIGN 16u

struct fo_arena_block {
    fo_arena_block_t *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

static fo_arena_block_t *block_new(size_t cap)
{
    fo_arena_block_t *b = malloc(sizeof *b + cap);
    if (!b)
        return NULL;
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

static void *pb_alloc(void *data, size_t n) { return fo_arena_alloc(data, n); }
static void pb_free(void *data, void *p) { (void)data; (void)p; }

fo_err_t fo_arena_init(fo_arena_t *a, size_t initial, size_t keep_max)
{
    if (!a || initial == 0)
        return FO_ERR_INVAL;
    a->overflow = NULL;
    a->peak = 0;
    a->mallocs = 1;
    a->keep_max = keep_max ? keep_max : 4 * initial;
    a->pb.alloc = pb_alloc;
    a->pb.free = pb_free;
    a->pb.allocator_data = a;
    a->primary = block_new(initial);
    return a->primary ? FO_OK : FO_ERR_NOMEM;
}

static void *bump(fo_arena_block_t *b, size_t n)
{
    size_t off = (b->used + (ALIGN - 1)) & ~(size_t)(ALIGN - 1);
    if (off > b->cap || b->cap - off < n)
        return NULL;
    b->used = off + n;
    return b->data + off;
}

void *fo_arena_alloc(fo_arena_t *a, size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / 2)
        return NULL;
    a->peak += (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    void *p = bump(a->primary, n);
    if (p)
        return p;
    if (a->overflow && (p = bump(a->overflow, n)))
        return p;
    size_t cap = a->primary->cap > n ? a->primary->cap : n;
    fo_arena_block_t *b = block_new(cap);
    if (!b)
        return NULL;
    a->mallocs++;
    b->next = a->overflow;
    a->overflow = b;
    return bump(b, n);
}

void fo_arena_reset(fo_arena_t *a)
{
    if (!a->overflow) {
        a->primary->used = 0;
        a->peak = 0;
        return;
    }
    while (a->overflow) {
        fo_arena_block_t *next = a->overflow->next;
        free(a->overflow);
        a->overflow = next;
    }
    /* Grow the primary so the peak just seen fits next time, within bounds. */
    size_t want = a->peak + ALIGN;
    if (want > a->keep_max)
        want = a->keep_max;
    if (want > a->primary->cap) {
        fo_arena_block_t *b = block_new(want);
        if (b) {
            a->mallocs++;
            free(a->primary);
            a->primary = b;
        }
    }
    a->primary->used = 0;
    a->peak = 0;
}

void fo_arena_destroy(fo_arena_t *a)
{
    if (!a)
        return;
    while (a->overflow) {
        fo_arena_block_t *next = a->overflow->next;
        free(a->overflow);
        a->overflow = next;
    }
    free(a->primary);
    a->primary = NULL;
}
