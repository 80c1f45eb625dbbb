/* fo_err.h -- the one error type of fanout, shared by broker and library.
 *
 * Every fallible function returns fo_err_t; 0 (FO_OK) is success, anything
 * else is one of the codes below. fo_strerror() gives a stable, static,
 * human-readable text for each (the caller never frees it).
 *
 * Functions returning fo_err_t are declared FO_MUST_CHECK: ignoring the
 * result is a compiler warning (an error in fanout's own -Werror build).
 * Where dropping it is meant, say so with `(void)!f(...)` -- GCC, unlike
 * clang, does not accept a plain (void) cast for this attribute.
 */
#ifndef FO_ERR_H
#define FO_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FO_MUST_CHECK __attribute__((warn_unused_result))
#else
#define FO_MUST_CHECK
#endif

typedef enum fo_err {
    FO_OK = 0,
    FO_ERR_NOMEM,        /* out of memory, or a memory cap was hit          */
    FO_ERR_INVAL,        /* invalid argument                                 */
    FO_ERR_AGAIN,        /* not yet: need more input / would block           */
    FO_ERR_FRAME_SIZE,   /* frame length 0 or above the limit                */
    FO_ERR_TRUNCATED,    /* stream ended in the middle of a frame            */
    FO_ERR_BAD_FRAME,    /* frame body does not unpack                       */
    FO_ERR_PROTO,        /* peer broke the protocol (unexpected frame...)    */
    FO_ERR_IO,           /* socket or system call failed (see errno)         */
    FO_ERR_CLOSED,       /* connection closed                                */
    FO_ERR_TIMEOUT,      /* deadline passed                                  */
    FO_ERR_ADDR,         /* bad or unresolvable address                      */
    FO_ERR_REFUSED,      /* connection refused                               */
    FO_ERR_SERVER,       /* broker answered with an ERROR frame              */
    FO_ERR_NOT_CONNECTED,/* no connection (yet / any more)                   */
    FO_ERR_BUSY,         /* a limit was reached (queue full, max subs...)    */
    FO_ERR_NOT_FOUND,    /* no such item (subscription, topic...)            */
    FO_ERR_RANGE,        /* value out of bounds                              */
    FO_ERR_NO_RESPONDERS,/* a request nobody subscribes to (ERR_NO_RESPONDERS) */
    FO_ERR_TLS,          /* TLS: a certificate that does not verify, a
                            handshake or session that failed, a TLS file
                            that does not load                           */
    FO_ERR__COUNT        /* number of codes; not an error                    */
} fo_err_t;

/* Stable text for an error code; never NULL, static storage. */
const char *fo_strerror(fo_err_t err);

#ifdef __cplusplus
}
#endif
#endif
