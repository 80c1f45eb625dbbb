/* broker_msg_fixture.h -- broker messages for the unit tests of msg.c and
 * ring.c: an uncapped memory account and mk(), a message of topic "r.t"
 * with `plen` payload bytes of value `seq`. Include after <cmocka.h>. */
#ifndef BROKER_MSG_FIXTURE_H
#define BROKER_MSG_FIXTURE_H

#include <string.h>
#include "msg.h"

static fo_mem_t mem;          /* limit 0: no cap */

static fo_msg_t *mk(uint64_t seq, size_t plen)
{
    static uint8_t payload[4096];
    memset(payload, (int)seq, plen);
    return fo_msg_new(&mem, NULL, "r.t", 3, seq, 1234, payload, plen, 0);
}

#endif
