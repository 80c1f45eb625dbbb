/* replay.h -- the anti-replay window of one multicast group (library
 * internal; docs/MULTICAST.md, Replays).
 *
 * Every authentic datagram carries a number, dseq = sender << 48 | count
 * (proto/dgram_tag.h): each broker worker numbers its own datagrams to a
 * group 1, 2, 3... in the order it sends them. Datagrams of different
 * workers interleave arbitrarily, so one window per sender, as IPsec's
 * (RFC 4303 §3.4.3): the highest count seen and a bitmap of the
 * FO__REPLAY_WINDOW counts up to it. A count above the highest moves the
 * window; one inside it is new unless its bit is set; one below it is too
 * old to tell and dropped. Reordering within one sender up to the window
 * passes; across senders there is no limit at all.
 *
 * Check a datagram only after its tag verified (an attacker must not move
 * the window). The first datagram heard from a sender starts its window
 * wherever it is (see docs/MULTICAST.md, Known limits).
 *
 * Plain data, no allocation (1 KiB); not thread-safe: one owner
 * (the receiver, on the client's reader thread).
 */
#ifndef FO_REPLAY_H
#define FO_REPLAY_H

#include <stdint.h>
#include "dgram_tag.h"

#define FO__REPLAY_WINDOW 64

typedef struct fo__replay {
    uint64_t top[FO_DGRAM_SENDERS];    /* highest count seen, 0 = none yet */
    uint64_t seen[FO_DGRAM_SENDERS];   /* bit i: top - i was seen          */
} fo__replay_t;

typedef enum fo__replay_verdict {
    FO__REPLAY_NEW = 0,       /* accepted and recorded                     */
    FO__REPLAY_SEEN,          /* this number came before: a replay         */
    FO__REPLAY_OLD,           /* below the window, or no valid number      */
} fo__replay_verdict_t;

/* Forget every sender (a new epoch: numbering starts again). */
void fo__replay_reset(fo__replay_t *r);

/* Is dseq new? Records it when it is. A sender beyond FO_DGRAM_SENDERS or
 * a count of 0 is FO__REPLAY_OLD (no broker sends them). */
fo__replay_verdict_t fo__replay_check(fo__replay_t *r, uint64_t dseq);

#endif
