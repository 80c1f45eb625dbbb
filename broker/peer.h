/* peer.h -- one link to another broker of the cluster (docs/CLUSTER.md).
 *
 * A link is a TCP connection on the cluster port, made by either side
 * (outgoing: fo_peer_connect; incoming: fo_peer_accept). Both ends send
 * PeerHello at once; each answers the other's challenge with PeerAuth
 * (HMAC-SHA256 keyed with the cluster secret over the other's nonce and
 * its own node id: the secret never crosses the wire, and an answer is
 * good for one link and one direction only). The link is UP once the
 * other's answer verified; only then does the owner hear of its frames.
 * A handshake not done within FO_PEER_HANDSHAKE_MS closes the link.
 *
 * TLS (--cluster-tls): the same link over a non-blocking session
 * (tls.c's; the accepted end is the server), handshake first, then the
 * hello; the queue is packed into 16 KiB records, each written with one
 * SSL_write and, when it cannot finish, retried as it is.
 *
 * Output: one queue of whole frames, written with writev. Control frames
 * (hello, auth, interest, publish forwards, acks, gaps, pings) are never
 * dropped. Data (fo_peer_send_msg: a message's shared DELIVER body,
 * referenced, not copied) is bounded by max_output bytes: past it the
 * oldest data not yet being written is dropped down to 3/4 of the limit,
 * and a PeerGap per topic takes the place of what went, so the receiver
 * tells its subscribers exactly what they lost. A slow link is never
 * closed for being slow; a silent one is (FO_PEER_IDLE_MS, with a PING
 * after FO_PEER_PING_MS).
 *
 * Threading: a link belongs to the cluster thread (cluster.c), which
 * alone calls these functions; its counters are atomics that the metrics
 * page reads from another thread.
 */
#ifndef FO_PEER_H
#define FO_PEER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "arena.h"
#include "frame.h"
#include "interest.h"
#include "msg.h"
#include "peerframe.h"

#define FO_PEER_HANDSHAKE_MS 5000
#define FO_PEER_PING_MS      2000
#define FO_PEER_IDLE_MS      10000
#define FO_PEER_RETIRE_MS    5000     /* a retired duplicate's last words */

typedef enum {
    FO_PEER_CONNECTING = 1,   /* outgoing, connect(2) in progress          */
    FO_PEER_HANDSHAKE,        /* hello/auth exchange                       */
    FO_PEER_UP,               /* authenticated: frames reach the owner     */
    FO_PEER_RETIRING,         /* a duplicate: no new output, read to EOF   */
} fo_peer_state_t;

/* What every link of a broker shares (borrowed by each link). */
typedef struct fo_peer_cfg {
    const char *node_id;       /* ours                                     */
    const char *client_addr;   /* ours, advertised in PeerHello            */
    uint64_t epoch;
    const uint8_t *secret;     /* the cluster secret ("" = none), borrowed */
    size_t secret_len;
    uint64_t max_output;       /* data bytes queued per link               */
    uint32_t max_frame;        /* largest frame body accepted              */
    int epfd;                  /* the cluster thread's epoll               */
    struct ssl_ctx_st *tls_server, *tls_client;   /* --cluster-tls, else NULL:
                                * borrowed; links made with them hold
                                * their own references (SSL_new)            */
} fo_peer_cfg_t;

typedef struct fo_peer_ent fo_peer_ent_t;

/* A link's counters. Atomics: the metrics page reads them. The owner
 * points a link at the counters of the broker it turns out to be (so
 * they outlive the link); until then it counts into its own. */
typedef struct fo_peer_counters {
    _Atomic uint64_t msgs_out, bytes_out, msgs_in, bytes_in, drops, gaps_out;
} fo_peer_counters_t;

typedef struct fo_peer {
    uint64_t id;               /* unique in the process, never reused      */
    int fd;
    uint8_t state;             /* fo_peer_state_t                          */
    uint8_t outgoing;          /* we connected                             */
    uint8_t sent_auth, got_auth, want_out, shut;
    uint8_t doomed;            /* the owner's: close at the end of the pass */
    uint8_t tls_pending;       /* TLS: the session holds input epoll cannot
                                * see: read again without waiting          */
    uint8_t tls_wants_out;     /* TLS: a handshake or read waits for EPOLLOUT */
    struct fo_tls_conn *tls;   /* owned session, NULL = plain              */
    uint8_t *stash;            /* TLS: one record being written (owned)    */
    uint32_t stash_len;        /* its bytes; 0 = none                      */
    size_t pinned;             /* queue entries the stash holds bytes of:
                                * never dropped                            */
    int node;                  /* the owner's node slot, -1 until set      */
    int target;                /* the owner's address entry, -1: none      */
    char node_id[FO_PEER_NODE_MAX + 1];   /* the other's, after its hello */
    char client_addr[258];     /* the other's, after its hello: HOST:PORT
                                * and maybe ",tls://HOST:PORT"            */
    uint64_t their_epoch;
    char addr[64];             /* the address connected to / accepted from */
    const fo_peer_cfg_t *cfg;  /* borrowed                                 */
    uint8_t my_nonce[FO_PEER_NONCE], their_nonce[FO_PEER_NONCE];
    fo_decoder_t dec;
    /* output: a circular array of frames (peer.c) */
    fo_peer_ent_t *q;
    size_t qhead, qlen, qcap;
    size_t qoff;               /* bytes of the head entry already written  */
    uint64_t qbytes;           /* bytes queued                             */
    uint64_t qdata;            /* of which droppable data                  */
    uint64_t deadline_ms;      /* handshake or retirement deadline         */
    uint64_t last_rx_ms, last_ping_ms;
    /* interest (cluster.c): frames sent and received on this link */
    uint64_t interest_out, interest_in;
    fo_interest_map_t *theirs; /* owned: the other's entries, id -> sub    */
    struct fo_peer *next;      /* the owner's list of links                */
    fo_peer_counters_t own;
    fo_peer_counters_t *ctr;   /* &own, or the owner's for this broker     */
} fo_peer_t;

/* Start an outgoing link to a numeric "ADDR:PORT": connecting, then the
 * handshake. FO_ERR_IO (errno), FO_ERR_NOMEM. */
FO_MUST_CHECK fo_err_t fo_peer_connect(const fo_peer_cfg_t *cfg, const char *addr, fo_peer_t **out);
/* Adopt an accepted socket (the handshake starts at once). FO_ERR_NOMEM,
 * FO_ERR_IO; the fd is closed on error. */
FO_MUST_CHECK fo_err_t fo_peer_accept(const fo_peer_cfg_t *cfg, int fd, fo_peer_t **out);
/* Close the socket and free everything (queued references dropped). The
 * owner takes the link's interest out first. NULL is fine. */
void fo_peer_destroy(fo_peer_t *p);

/* What a link's events told its owner. */
typedef struct fo_peer_cb {
    void *ud;
    /* the handshake finished: the link is UP (the owner may retire it) */
    void (*up)(void *ud, fo_peer_t *p);
    /* one frame that is not part of the handshake (the arena holds it
     * until the owner resets it) */
    void (*frame)(void *ud, fo_peer_t *p, const Fanout__PeerFrame *f);
} fo_peer_cb_t;

/* epoll events on the link: connect outcome, the TLS handshake, input
 * (frames to cb, at most `budget` bytes read; with TLS, tls_pending is set
 * when the session still holds input: call again with EPOLLIN without
 * waiting), output. FO_OK, or why the link is finished
 * (FO_ERR_CLOSED: EOF; FO_ERR_IO; FO_ERR_PROTO/BAD_FRAME/FRAME_SIZE: the
 * other broke the protocol or failed the authentication; FO_ERR_INVAL:
 * the other end is this broker itself), with one line in why. The owner
 * destroys a finished link. */
FO_MUST_CHECK fo_err_t fo_peer_on_events(fo_peer_t *p, uint32_t events, fo_arena_t *arena,
                                         const fo_peer_cb_t *cb, size_t budget, char *why, size_t whylen);
/* Timers: handshake and retirement deadlines, PING, silence. FO_OK or
 * FO_ERR_TIMEOUT (destroy it). */
FO_MUST_CHECK fo_err_t fo_peer_tick(fo_peer_t *p, uint64_t now_ms);

/* Queue a control frame (never dropped). FO_ERR_NOMEM (the link should
 * be closed: its peer would miss something it cannot do without). */
FO_MUST_CHECK fo_err_t fo_peer_send(fo_peer_t *p, const Fanout__PeerFrame *f);
/* Queue a message (takes the caller's reference on m) as PeerDeliver,
 * for a queue group's member when queue/filter are set. May drop older
 * data (see above). Returns 1 when it was queued, 0 when it was not
 * (out of memory: counted as a drop and the reference released). */
int fo_peer_send_msg(fo_peer_t *p, fo_msg_t *m, const char *queue, const char *filter);
/* Write what is queued (once per loop iteration). FO_OK, or FO_ERR_IO /
 * FO_ERR_CLOSED when the link is finished. */
FO_MUST_CHECK fo_err_t fo_peer_flush(fo_peer_t *p);
static inline int fo_peer_has_output(const fo_peer_t *p) { return p->qlen > 0; }
/* Stop sending on a duplicate (docs/CLUSTER.md, Links): what is queued
 * goes, then the write side is shut; frames still arriving are read until
 * EOF or FO_PEER_RETIRE_MS. */
void fo_peer_retire(fo_peer_t *p, uint64_t now_ms);

#endif
