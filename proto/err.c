/* err.c -- texts for fo_err_t (include/fo_err.h).
 *
 * Table-driven so a new code cannot be added without a text: the static
 * assert below fails the build when the table and the enum disagree.
 */
#include "fo_err.h"

static const char *const texts[] = {
    [FO_OK]               = "ok",
    [FO_ERR_NOMEM]        = "out of memory",
    [FO_ERR_INVAL]        = "invalid argument",
    [FO_ERR_AGAIN]        = "try again",
    [FO_ERR_FRAME_SIZE]   = "frame length is zero or above the limit",
    [FO_ERR_TRUNCATED]    = "stream ended in the middle of a frame",
    [FO_ERR_BAD_FRAME]    = "frame does not unpack",
    [FO_ERR_PROTO]        = "protocol violation",
    [FO_ERR_IO]           = "i/o error",
    [FO_ERR_CLOSED]       = "connection closed",
    [FO_ERR_TIMEOUT]      = "timed out",
    [FO_ERR_ADDR]         = "bad address",
    [FO_ERR_REFUSED]      = "connection refused",
    [FO_ERR_SERVER]       = "error from broker",
    [FO_ERR_NOT_CONNECTED]= "not connected",
    [FO_ERR_BUSY]         = "limit reached",
    [FO_ERR_NOT_FOUND]    = "not found",
    [FO_ERR_RANGE]        = "value out of range",
    [FO_ERR_NO_RESPONDERS]= "no responders",
    [FO_ERR_TLS]          = "TLS failed",
};

_Static_assert(sizeof texts / sizeof texts[0] == FO_ERR__COUNT,
               "every fo_err_t needs a text");

const char *fo_strerror(fo_err_t err)
{
    if ((unsigned)err >= FO_ERR__COUNT || !texts[err])
        return "unknown error";
    return texts[err];
}
