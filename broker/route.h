/* route.h -- the message paths: publish, fan-out, subscribe, replay, repair.
 *
 * Publish (on the publisher's worker): find the topic (worker-local cache,
 * then the registry), and under the topic lock give the next sequence,
 * encode the DELIVER body once (fo_msg_new), keep it in the ring, note
 * which workers have subscribers and pick queue-group members. After the
 * lock: subscribers on this worker get it directly; every other worker
 * with subscribers gets one reference through its inbox (batched in the
 * outbox until the end of the loop iteration); multicast gets a copy of
 * the payload into the worker's pending datagram.
 */
#ifndef FO_ROUTE_H
#define FO_ROUTE_H

#include "conn.h"

/* One PUBLISH. reply and headers are optional (NULL / 0); the pointers
 * are borrowed for the call. A topic under the reserved "_INBOX." prefix
 * is a reply: it goes to the connection whose Welcome.inbox it names,
 * without a registry topic (docs/PROTOCOL.md §9a). */
typedef struct fo_publish_req {
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    uint64_t req;                       /* Frame.req, 0 = none          */
    const char *reply;                  /* Publish.reply, NULL = none   */
    Fanout__Header *const *headers;
    size_t n_headers;
    const uint8_t *frame;               /* the Frame body as it came    */
    size_t frame_len;                   /*   (forwarded to a home)      */
} fo_publish_req_t;

void fo_route_publish(fo_conn_t *c, const fo_publish_req_t *p);

/* The reserved reply prefix, and the limits on headers. */
#define FO_INBOX_PREFIX   "_INBOX."
#define FO_HEADERS_MAX    32
#define FO_HEADER_KEY_MAX 64
#define FO_HEADERS_BYTES  4096
void fo_route_subscribe(fo_conn_t *c, const Fanout__Subscribe *s, uint64_t req);
void fo_route_unsubscribe(fo_conn_t *c, uint32_t sid, uint64_t req);
void fo_route_repair(fo_conn_t *c, const Fanout__Repair *r, uint64_t req);
/* Unsubscribe and free every subscription of c (on close). */
void fo_route_drop_subs(fo_conn_t *c);
/* End one subscription without a word (the caller says why): off the
 * connection and the registry, freed. */
void fo_route_end_sub(fo_conn_t *c, fo_sub_t *s);
/* Cluster (docs/CLUSTER.md), on the worker the cluster thread chose:
 * a PUBLISH another broker forwarded to this one, the topic's home
 * (frame: the client's Frame body; node, conn and ref say where the
 * answer goes: fo_cluster_answer). Sequenced and fanned out as a local
 * publish; refused when this broker is not the topic's home (any more). */
void fo_route_publish_peer(fo_worker_t *w, int node, uint64_t conn, uint64_t ref, const uint8_t *frame,
                           size_t len);
/* The home's answer to a PUBLISH this worker's connection conn_id made:
 * ACK {ref, seq} (code 0, ref non-zero) or ERROR {code, text, ref}. A
 * connection that has gone is skipped. */
void fo_route_answer(fo_worker_t *w, uint64_t conn_id, uint64_t ref, uint64_t seq, int code,
                     const char *text);
/* A peer link dropped first..last of topic name[0..len): GAP to this
 * worker's subscribers of it (reason slow consumer: the link was). */
void fo_route_peer_gap(fo_worker_t *w, const char *name, size_t len, uint64_t first, uint64_t last);
/* Replay through an edge, on the subscriber's worker: GAP for first..last
 * (what the home no longer retains: GAP_EVICTED, or what an older home
 * gave: GAP_HOME_CHANGED; reason a GapReason), and the end of the
 * home's replay: live delivery of topic name[0..len) starts at live_from
 * for the subscription (conn_id, sid), or, for a REPAIR, its ACK {ref}.
 * A connection or subscription that has gone is skipped. */
void fo_route_replay_gap(fo_worker_t *w, uint64_t conn_id, uint32_t sid, const char *name, size_t len,
                         uint64_t first, uint64_t last, int reason);
void fo_route_replay_end(fo_worker_t *w, uint64_t conn_id, uint32_t sid, const char *name, size_t len,
                         uint64_t live_from, uint64_t ref, int repair);
/* Handle items taken from this worker's inbox (not FO_ITEM_CONN). */
void fo_route_item(fo_worker_t *w, fo_item_t *it);

#endif
