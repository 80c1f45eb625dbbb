/* mcast_sub.h -- multicast subscriptions inside libfanout (internal).
 *
 * The glue between a client (client.c, sub.c) and its multicast receivers
 * (mcast_rx.h): one fo__mcast_subs_t per client remembers the groups the
 * last WELCOME announced, and holds a receiver for every (multicast
 * subscription, overlapping group) pair. All receivers sit in one epoll
 * set, so the client's reader thread polls a single extra descriptor
 * (fo__mcast_subs_fd) and calls fo__mcast_subs_run when it is readable or
 * when the time run returned has passed.
 *
 * Messages reach the application through fo__client_dispatch in order per
 * topic; holes are asked for with REPAIR over the client's connection
 * (fo__client_send_repair); the DELIVER (replay) and GAP frames answering
 * them are routed back here by the reader (fo__mcast_subs_repaired/_gap);
 * what cannot be repaired is reported with fo__client_gap.
 *
 * Threading: a recursive mutex guards the set, so fo_subscribe and
 * fo_unsubscribe may be called from any thread, including from the
 * callbacks run inside fo__mcast_subs_run; a receiver removed meanwhile is
 * freed when run returns.
 */
#ifndef FO_MCAST_SUB_H
#define FO_MCAST_SUB_H

#include <stdint.h>
#include "fanout.h"
#include "fanout.pb-c.h"

typedef struct fo__mcast_subs fo__mcast_subs_t;

/* c is borrowed (the owner). *out freed by fo__mcast_subs_destroy. */
FO_MUST_CHECK
fo_err_t fo__mcast_subs_create(fo_client_t *c, fo__mcast_subs_t **out);
void fo__mcast_subs_destroy(fo__mcast_subs_t *m);           /* NULL is fine */

/* WELCOME: groups (copied), epoch (a new one restarts every receiver's
 * tracking) and max_datagram. */
FO_MUST_CHECK
fo_err_t fo__mcast_subs_welcome(fo__mcast_subs_t *m, const Fanout__Welcome *w);

/* Join every announced group whose filter overlaps `filter`, for
 * subscription sid, on interface iface (address or name; NULL = kernel's
 * choice). Done before SUBSCRIBE is sent, so nothing published after its
 * ACK is missed. No group overlapping is fine: the broker then sends every
 * message by TCP. FO_ERR_ADDR: bad interface; FO_ERR_BUSY: too many
 * receivers; FO_ERR_IO: socket calls. */
FO_MUST_CHECK
fo_err_t fo__mcast_subs_add(fo__mcast_subs_t *m, uint32_t sid, const char *filter,
                            const char *iface);
void fo__mcast_subs_remove(fo__mcast_subs_t *m, uint32_t sid);

/* Readable when some receiver has datagrams. */
int fo__mcast_subs_fd(const fo__mcast_subs_t *m);

/* Read what is ready, run the timers (repair requests, give-ups). Returns
 * ms until it wants to run again, -1 when no timer is pending. */
int fo__mcast_subs_run(fo__mcast_subs_t *m, uint64_t now_ms);

/* DELIVER with replay=true / GAP for sid: 1 when sid is a multicast
 * subscription here and the frame was taken (repair answer), else 0. */
int fo__mcast_subs_repaired(fo__mcast_subs_t *m, uint32_t sid, const fo_msg_t *msg,
                            uint64_t now_ms);
int fo__mcast_subs_gap(fo__mcast_subs_t *m, uint32_t sid, const char *topic, uint64_t first,
                       uint64_t last);

#endif
