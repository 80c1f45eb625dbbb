/* info.c -- what a program may ask the library about itself and its
 * connection: fo_version, fo_client_max_frame (see fanout.h). */
#include <stdatomic.h>
#include "client_int.h"

const char *fo_version(void)
{
    return FO_VERSION_STRING;
}

uint32_t fo_client_max_frame(fo_client_t *c)
{
    return c ? atomic_load_explicit(&c->max_frame_out, memory_order_relaxed) : 0;
}
