/* resolve.h -- the cluster's peer addresses, looked up off the cluster
 * thread (docs/CLUSTER.md, Peers from DNS).
 *
 * A resolver thread resolves every --cluster-peers entry (HOST:PORT and
 * dns:NAME:PORT alike: a numeric address resolves to itself) at start,
 * then every interval and soon after fo_resolver_kick (a link dropped).
 * getaddrinfo blocks; here it blocks nobody but this thread. Each round's
 * union of addresses replaces the last one; an entry that fails keeps its
 * addresses of the last round that resolved it (a DNS hiccup must not
 * look like every peer leaving).
 *
 * Threading: the resolver thread writes, the cluster thread reads
 * (fo_resolver_take), both under the resolver's own mutex, held for
 * copies only (never with another lock).
 */
#ifndef FO_RESOLVE_H
#define FO_RESOLVE_H

#include <stdint.h>
#include "fo_err.h"
#include "net.h"

#define FO_RESOLVE_ENTRIES 32      /* --cluster-peers entries  */
#define FO_RESOLVE_ADDRS   128     /* addresses in all         */

typedef struct fo_resolver fo_resolver_t;

/* Parse the comma/space separated list (FO_ERR_INVAL with one line in
 * err: a bad entry, too many) and start the thread (FO_ERR_IO,
 * FO_ERR_NOMEM). An empty list starts no lookups but still reports one
 * finished round. */
FO_MUST_CHECK fo_err_t fo_resolver_start(const char *list, uint32_t interval_ms, fo_resolver_t **out,
                                         char *err, size_t errlen);
/* Check a list without starting anything (config checks). */
FO_MUST_CHECK fo_err_t fo_resolver_check(const char *list, char *err, size_t errlen);
/* Resolve again now (any thread). */
void fo_resolver_kick(fo_resolver_t *r);
/* The latest addresses when they are newer than *gen (which is updated):
 * their count (<= max), copied to out; -1 when nothing changed. *rounds
 * is the number of rounds finished (0: none yet). */
int fo_resolver_take(fo_resolver_t *r, uint64_t *gen, char (*out)[FO_NET_ADDR_MAX], int max, uint64_t *rounds);
/* Stop and join the thread, free everything. NULL is fine. */
void fo_resolver_stop(fo_resolver_t *r);

#endif
