/* cluster.h -- many brokers as one (docs/CLUSTER.md).
 *
 * With --cluster-listen, fanoutd runs a cluster thread with its own epoll:
 * the peer listener, one link per other broker (peer.c), its inbox, and a
 * resolver thread for --cluster-peers (resolve.c). It keeps
 *  - the members: this broker and every broker with an authenticated link,
 *    known by node id (never by address); two links to one broker are
 *    cut to one by a rule both ends apply alike;
 *  - placement: a topic's home is the member that rendezvous hashing
 *    (place.c) picks over the members' ids; the home alone sequences it;
 *  - interest: what our clients subscribe to, told to every peer (snapshot
 *    on link up, then ordered changes), and what each peer told us, as
 *    subscriptions of the registry that live on a sink of their own: the
 *    cluster's index (fo_cluster_sink) in the topics' per-worker arrays.
 *    A message a worker sequences reaches the sink like another worker
 *    (FO_ITEM_FANOUT, one reference; FO_ITEM_TARGET for a queue group's
 *    member on another broker), and the cluster thread sends its encoded
 *    DELIVER body once to each interested broker;
 *  - forwarding: a PUBLISH on a broker that is not the topic's home goes
 *    to the home (PeerPublish), whose answer becomes the client's ACK
 *    (with the home's sequence) or ERROR.
 *
 * Threading: create and destroy on the main thread; the rest runs on the
 * cluster thread, except the functions marked "any thread" (workers call
 * them), which only read atomics, take the members lock (a rwlock, taken
 * alone or inside the registry lock, never around another lock) or post
 * to the cluster's inbox. Ownership: the broker owns the cluster; the
 * cluster owns its links, its subscriptions in the registry (taken out
 * before the registry is destroyed) and the resolver.
 */
#ifndef FO_CLUSTER_H
#define FO_CLUSTER_H

#include <stdint.h>
#include "broker.h"
#include "buf.h"
#include "fo_err.h"
#include "frame.h"
#include "inbox.h"

#define FO_CLUSTER_NODES 64      /* other brokers known by id, at most */
#define FO_CLUSTER_SELF  0xff    /* fo_cluster_home: this broker       */

typedef struct fo_cluster fo_cluster_t;

/* The node id this configuration gives (--node-id, else the hostname),
 * into out (FO_PEER_NODE_MAX + 1 bytes). FO_ERR_INVAL with a line in err
 * when it is empty, too long or has spaces or commas. */
FO_MUST_CHECK fo_err_t fo_cluster_node_id(const fo_config_t *cfg, char *out, size_t len, char *err,
                                          size_t errlen);

/* Build the cluster of broker b (after its registry and workers, before
 * they start): the secret, the listener, the resolver. No thread yet.
 * FO_ERR_INVAL (a refused configuration: a listener other hosts can reach
 * without a cluster secret), FO_ERR_ADDR, FO_ERR_IO, FO_ERR_NOMEM, with
 * one line in err. */
FO_MUST_CHECK fo_err_t fo_cluster_create(fo_broker_t *b, fo_cluster_t **out, char *err, size_t errlen);
/* Start the cluster thread. FO_ERR_IO. */
FO_MUST_CHECK fo_err_t fo_cluster_start(fo_cluster_t *c);
/* Stop and join the thread (the workers are joined already, not yet
 * destroyed); close the links, take our subscriptions out of the
 * registry, free everything. NULL is fine. */
void fo_cluster_destroy(fo_cluster_t *c);

/* The sink index (== the number of workers) and its inbox. */
int fo_cluster_sink(const fo_cluster_t *c);
fo_inbox_t *fo_cluster_inbox(fo_cluster_t *c);

/* Any thread. The home of topic t: FO_CLUSTER_SELF, or the node slot of
 * the broker that sequences it. Cached in the topic per membership
 * generation: one atomic load when nothing changed. */
int fo_cluster_home(fo_cluster_t *c, struct fo_topic *t);

/* Any thread (a worker). Send a client's PUBLISH (frame: its Frame body
 * as it came) to the home `node`; the answer comes back to the worker of
 * conn_id as fo_route_answer. Copied; on failure (out of memory, link
 * full or gone) the answer is an ERROR at once. */
void fo_cluster_forward(fo_cluster_t *c, int node, uint64_t conn_id, uint64_t req,
                        const uint8_t *frame, size_t len);
/* Any thread: this broker's tag in its connections' inbox addresses
 * ("_INBOX.<32 hex>.<8 hex tag>": the high 32 bits of its node id's
 * placement hash), so a reply published on another broker finds it. */
uint32_t fo_cluster_tag(const fo_cluster_t *c);
/* Any thread (a worker). Send a reply (frame: the PUBLISH to an inbox
 * address, as it came) to the broker whose tag its address names; it is
 * dropped (counted) when no linked broker has that tag. */
void fo_cluster_forward_reply(fo_cluster_t *c, uint32_t tag, const uint8_t *frame, size_t len);

/* Any thread (the home's worker). The answer to a forwarded PUBLISH: seq
 * (code 0) or an error code and text, to broker `node`'s connection conn. */
void fo_cluster_answer(fo_cluster_t *c, int node, uint64_t conn, uint64_t ref, uint64_t seq, int code,
                       const char *text);
/* Epochs (docs/CLUSTER.md): in a cluster a topic's sequence number is
 * epoch << FO_CLUSTER_EPOCH_SHIFT | n, n counting from 1 within the epoch
 * (carrying into the epoch bits past 2^24 - 1, which keeps the numbers
 * consecutive). A broker that starts giving a topic's numbers starts a new
 * epoch: one above the last it knows, and at least the milliseconds since
 * 2023-11-14 (so a broker that never saw the topic still numbers above its
 * last home, as long as the brokers' clocks agree better than homes change).
 * Any thread: the first sequence number of a new epoch after seq. */
#define FO_CLUSTER_EPOCH_SHIFT FO_SEQ_EPOCH_SHIFT   /* proto/frame.h */
#define FO_CLUSTER_EPOCH_BASE_MS 1700000000000ull
uint64_t fo_cluster_epoch_start(uint64_t seq);

/* Any thread: the home of a topic by name (no cache; REPAIR). */
int fo_cluster_home_of(fo_cluster_t *c, const char *name, size_t len);

/* Any thread (a worker). Ask the home `node` to replay topic name[0..len)
 * to this broker's (conn, sid): from `first` (earliest: the oldest it
 * retains) up to now for a subscription (last 0: live delivery then
 * starts where the home says, fo_route_replay_end), or first..last for a
 * REPAIR (ref: its Frame.req, ACKed after the replay). When the home
 * cannot answer (no link, the link drops before it did) the subscriber
 * gets GAP for what it asked and live delivery from then on. */
void fo_cluster_replay(fo_cluster_t *c, int node, uint64_t conn, uint32_t sid, const char *name, size_t len,
                       uint64_t first, int earliest, uint64_t last, uint64_t ref);

/* Any thread (a worker). One subscription of ours more (add) or fewer,
 * for the interest our peers hold. Posted in order: a worker's add and
 * remove of one subscription reach the cluster thread in that order. */
void fo_cluster_interest(fo_cluster_t *c, const char *filter, const char *queue, int add);

/* SIGHUP (main thread): build the links' TLS contexts again from cfg's
 * files (the certificate renewed at the same path); they take effect for
 * links made from then on (open links keep theirs). Nothing happens
 * without --cluster-tls. FO_ERR_* with one line in err when they do not
 * load (the old ones stay). */
FO_MUST_CHECK fo_err_t fo_cluster_reload(fo_cluster_t *c, const fo_config_t *cfg, char *err, size_t errlen);

/* Any thread. The first resolve of --cluster-peers and a first attempt at
 * every address it gave are done (/healthz says ready). */
int fo_cluster_ready(const fo_cluster_t *c);
/* Any thread. The epoch the cluster thread reached at its last quiescent
 * point (topic reclamation counts it like a worker's). */
uint64_t fo_cluster_seen_epoch(const fo_cluster_t *c);
/* Any thread (--http). Append the cluster's Prometheus families. */
FO_MUST_CHECK fo_err_t fo_cluster_metrics(fo_cluster_t *c, fo_buf_t *out);
/* Any thread: the client addresses of the members, this broker's first
 * (each member has one, HOST:PORT, and a tls://HOST:PORT when it has a TLS
 * listener), as pointers into out (FO_CLUSTER_ADDRS entries of
 * FO_CLUSTER_ADDR_MAX bytes); returns how many. WELCOME's cluster list. */
#define FO_CLUSTER_ADDR_MAX 128
#define FO_CLUSTER_ADDRS (2 * (FO_CLUSTER_NODES + 1))
int fo_cluster_addresses(fo_cluster_t *c, char (*out)[FO_CLUSTER_ADDR_MAX], char **ptrs);
/* Any thread: this broker's node id. */
const char *fo_cluster_id(const fo_cluster_t *c);

#endif
