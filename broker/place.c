/* place.c -- rendezvous hashing of topics over node ids (see place.h). */
#include "place.h"

static uint64_t fnv1a(const char *s, size_t len, uint64_t h)
{
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* splitmix64's finaliser: every input bit moves every output bit. */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t fo_place_node_hash(const char *id, size_t len)
{
    return mix(fnv1a(id, len, 14695981039346656037ull));
}

uint64_t fo_place_topic_hash(const char *name, size_t len)
{
    /* a different basis than node ids: a topic named like a node must
     * not score that node specially */
    return mix(fnv1a(name, len, 0x6a09e667f3bcc908ull));
}

int fo_place_pick(const uint64_t *nodes, int n, uint64_t th)
{
    int best = -1;
    uint64_t best_score = 0;
    for (int i = 0; i < n; i++) {
        uint64_t s = mix(nodes[i] ^ th);
        if (best < 0 || s > best_score) {
            best = i;
            best_score = s;
        }
    }
    return best;
}
