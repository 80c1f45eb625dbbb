/* ring.c -- per-topic retention ring (see ring.h). */
#include <stdlib.h>
#include "fo_err.h"
#include "ring.h"

void fo_ring_init(fo_ring_t *r)
{
    r->slots = NULL;
    r->cap = r->head = r->count = 0;
    r->first_seq = 0;
    r->bytes = 0;
}

static void evict_oldest(fo_ring_t *r)
{
    fo_msg_t *m = r->slots[r->head];
    r->slots[r->head] = NULL;
    r->bytes -= m->payload_len;
    fo_msg_unref(m);
    r->head = (r->head + 1) & (r->cap - 1);
    r->count--;
    r->first_seq++;
    /* A full ring evicts one message per publish, and that message was
     * last touched a ring's length ago: out of the cache. Fetch the next
     * two now (for writing: the unref), so the publishes that evict them
     * do not wait for memory. */
    if (r->count > 2) {
        __builtin_prefetch(r->slots[(r->head + 1) & (r->cap - 1)], 1, 0);
        __builtin_prefetch(r->slots[(r->head + 2) & (r->cap - 1)], 1, 0);
    }
}

void fo_ring_destroy(fo_ring_t *r)
{
    if (!r)
        return;
    while (r->count)
        evict_oldest(r);
    free(r->slots);
    fo_ring_init(r);
}

/* Re-lay the ring into a bigger array, oldest first at slot 0. The
 * capacity stays a power of two, so positions are masks, not divisions. */
static fo_err_t grow(fo_ring_t *r)
{
    uint32_t ncap = r->cap ? r->cap * 2 : 4;
    fo_msg_t **ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return FO_ERR_NOMEM;
    for (uint32_t i = 0; i < r->count; i++)
        ns[i] = r->slots[(r->head + i) & (r->cap - 1)];
    free(r->slots);
    r->slots = ns;
    r->cap = ncap;
    r->head = 0;
    return FO_OK;
}

fo_err_t fo_ring_push(fo_ring_t *r, fo_msg_t *m, uint32_t max_msgs, uint64_t max_bytes)
{
    /* Limits may have shrunk (SIGHUP): evict down to them first. */
    while (r->count && (r->count >= max_msgs ||
                        r->bytes + m->payload_len > max_bytes))
        evict_oldest(r);
    if (max_msgs == 0 || m->payload_len > max_bytes) {
        r->first_seq = m->seq + 1;     /* nothing older is kept either */
        return FO_OK;
    }
    if (r->count == r->cap) {
        fo_err_t err = grow(r);
        if (err) {
            while (r->count)
                evict_oldest(r);
            r->first_seq = m->seq + 1;
            return err;
        }
    }
    if (r->count == 0)
        r->first_seq = m->seq;
    r->slots[(r->head + r->count) & (r->cap - 1)] = fo_msg_ref(m);
    r->count++;
    r->bytes += m->payload_len;
    return FO_OK;
}

uint32_t fo_ring_evict(fo_ring_t *r, uint32_t n)
{
    uint32_t k = 0;
    for (; k < n && r->count; k++)
        evict_oldest(r);
    return k;
}

void fo_ring_expire(fo_ring_t *r, uint64_t cutoff_ns)
{
    while (r->count && r->slots[r->head]->time_ns < cutoff_ns)
        evict_oldest(r);
}

fo_msg_t *fo_ring_get(const fo_ring_t *r, uint64_t seq)
{
    if (r->count == 0 || seq < r->first_seq || seq - r->first_seq >= r->count)
        return NULL;
    return r->slots[(r->head + (seq - r->first_seq)) & (r->cap - 1)];
}

uint64_t fo_ring_oldest(const fo_ring_t *r, uint64_t next_seq)
{
    return r->count ? r->first_seq : next_seq;
}
