/* msgq.h -- a bounded FIFO of messages in one byte buffer (fo_sub_next).
 *
 * The reader thread pushes copies of delivered messages; the application
 * pops them one at a time into a reusable "current" buffer, so steady state
 * costs two memcpy and no malloc per message. Bounded in bytes: a push
 * that would exceed the bound fails (the caller reports the gap).
 * Not thread-safe: the subscription guards it with its own mutex.
 */
#ifndef FO_MSGQ_H
#define FO_MSGQ_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "fanout.h"

typedef struct fo__msgq {
    fo_buf_t q;          /* owned: queued records                    */
    fo_buf_t cur;        /* owned: the record last popped            */
    size_t max_bytes;
    size_t count;        /* records queued                           */
    fo_header_t *hdrs;   /* owned: the headers of the record last popped */
    size_t hdrs_cap;
} fo__msgq_t;

void fo__msgq_init(fo__msgq_t *q, size_t max_bytes);
void fo__msgq_destroy(fo__msgq_t *q); /* NULL is fine */

/* Copy a message in. FO_ERR_BUSY when it would exceed max_bytes (an empty
 * queue always accepts one message), FO_ERR_NOMEM. */
FO_MUST_CHECK
fo_err_t fo__msgq_push(fo__msgq_t *q, const fo_msg_t *m);

/* Take the oldest message; *out points into q->cur and q->hdrs, valid
 * until the next pop. FO_ERR_AGAIN when empty. */
FO_MUST_CHECK
fo_err_t fo__msgq_pop(fo__msgq_t *q, fo_msg_t *out);

#endif
