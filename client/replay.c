/* replay.c -- the anti-replay window (replay.h). */
#include "replay.h"

#include <string.h>

void fo__replay_reset(fo__replay_t *r)
{
    memset(r, 0, sizeof(*r));
}

fo__replay_verdict_t fo__replay_check(fo__replay_t *r, uint64_t dseq)
{
    uint64_t sender = dseq >> FO_DGRAM_SENDER_SHIFT;
    uint64_t count = dseq & FO_DGRAM_COUNT_MAX;
    if (sender >= FO_DGRAM_SENDERS || count == 0)
        return FO__REPLAY_OLD;
    uint64_t *top = &r->top[sender], *seen = &r->seen[sender];
    if (count > *top) {                   /* ahead (or the first): move */
        uint64_t shift = count - *top;
        *seen = *top == 0 || shift >= FO__REPLAY_WINDOW ? 1 : *seen << shift | 1;
        *top = count;
        return FO__REPLAY_NEW;
    }
    uint64_t back = *top - count;
    if (back >= FO__REPLAY_WINDOW)
        return FO__REPLAY_OLD;
    if (*seen >> back & 1)
        return FO__REPLAY_SEEN;
    *seen |= 1ull << back;
    return FO__REPLAY_NEW;
}
