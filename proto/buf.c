/* buf.c -- growable byte buffer (see buf.h). */
#include <stdlib.h>
#include <string.h>
#include "buf.h"

fo_err_t fo_buf_reserve(fo_buf_t *b, size_t n)
{
    if (b->cap - b->end >= n)
        return FO_OK;
    size_t live = b->end - b->start;
    if (b->cap - live >= n && b->start > 0) {
        /* Sliding makes room: cheaper than growing. */
        memmove(b->data, b->data + b->start, live);
        b->start = 0;
        b->end = live;
        return FO_OK;
    }
    if (n > SIZE_MAX / 2 - live)
        return FO_ERR_NOMEM;
    size_t need = live + n, cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p;
    if (b->start == 0) {
        p = realloc(b->data, cap);
        if (!p)
            return FO_ERR_NOMEM;
    } else {
        p = malloc(cap);
        if (!p)
            return FO_ERR_NOMEM;
        memcpy(p, b->data + b->start, live);
        free(b->data);
    }
    b->data = p;
    b->cap = cap;
    b->start = 0;
    b->end = live;
    return FO_OK;
}

fo_err_t fo_buf_append(fo_buf_t *b, const void *p, size_t n)
{
    fo_err_t err = fo_buf_reserve(b, n);
    if (err)
        return err;
    if (n)
        memcpy(b->data + b->end, p, n);
    b->end += n;
    return FO_OK;
}

void fo_buf_consume(fo_buf_t *b, size_t n)
{
    if (n >= b->end - b->start) {
        b->start = b->end = 0;
        return;
    }
    b->start += n;
}

void *fo_buf_release(fo_buf_t *b, size_t *cap)
{
    if (!b->data || b->end != b->start)
        return NULL;
    void *p = b->data;
    if (cap)
        *cap = b->cap;
    b->data = NULL;
    b->start = b->end = b->cap = 0;
    return p;
}

void fo_buf_adopt(fo_buf_t *b, void *mem, size_t cap)
{
    b->data = mem;
    b->cap = cap;
    b->start = b->end = 0;
}

void fo_buf_free(fo_buf_t *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->start = b->end = b->cap = 0;
}
