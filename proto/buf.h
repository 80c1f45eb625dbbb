/* buf.h -- a growable byte buffer with a read cursor.
 *
 * Bytes live in data[start, end): producers append at `end`, consumers take
 * from `start`. Space is reclaimed by sliding the live bytes to the front
 * (only when that makes enough room, so a buffer is never moved per frame).
 * An empty buffer may hold no memory at all (data == NULL): idle connections
 * cost nothing, see fo_buf_release().
 *
 * Not thread-safe.
 */
#ifndef FO_BUF_H
#define FO_BUF_H

#include <stddef.h>
#include <stdint.h>
#include "fo_err.h"

typedef struct fo_buf {
    uint8_t *data;   /* owned (malloc'd), or NULL */
    size_t start;    /* first unread byte          */
    size_t end;      /* one past the last byte     */
    size_t cap;      /* bytes allocated at data    */
} fo_buf_t;

#define FO_BUF_INIT { NULL, 0, 0, 0 }

static inline size_t fo_buf_len(const fo_buf_t *b) { return b->end - b->start; }
static inline uint8_t *fo_buf_head(const fo_buf_t *b) { return b->data + b->start; }
static inline uint8_t *fo_buf_tail(const fo_buf_t *b) { return b->data + b->end; }
static inline size_t fo_buf_room(const fo_buf_t *b) { return b->cap - b->end; }

/* Make at least n bytes writable at the tail (compacting or growing). */
FO_MUST_CHECK fo_err_t fo_buf_reserve(fo_buf_t *b, size_t n);

/* Append n bytes. */
FO_MUST_CHECK fo_err_t fo_buf_append(fo_buf_t *b, const void *p, size_t n);

/* Mark n bytes written at the tail (after fo_buf_reserve + a read). */
static inline void fo_buf_commit(fo_buf_t *b, size_t n) { b->end += n; }

/* Drop n bytes from the head. When it empties, the cursors rewind. */
void fo_buf_consume(fo_buf_t *b, size_t n);

/* Give up the memory when empty: returns the block (caller owns it, e.g. to
 * put it back in a cache) and its capacity; NULL if not empty or no memory. */
void *fo_buf_release(fo_buf_t *b, size_t *cap);

/* Adopt an empty block of `cap` bytes (from a cache); the buffer must hold
 * no memory. */
void fo_buf_adopt(fo_buf_t *b, void *mem, size_t cap);

/* Free the memory and reset. NULL is fine. */
void fo_buf_free(fo_buf_t *b);

#endif
