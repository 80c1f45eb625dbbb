/* sniff.h -- naming what a client sent when it is not the fanout protocol.
 *
 * The first four bytes on a connection are a frame length (big-endian).
 * An HTTP request ("GET /metrics ...") or a TLS ClientHello sent to the
 * client port reads as a length of hundreds of megabytes, and the broker
 * refuses it as ERR_FRAME_SIZE. Where that error is raised (conn.c, the
 * first frame of a connection that has not sent HELLO), fo_sniff_foreign
 * tells which mistake it was, so the log can say "looks like HTTP;
 * metrics are on --http 127.0.0.1:7401" instead of "frame length
 * 1195725856 is over the limit". Pure functions, any thread.
 */
#ifndef FO_SNIFF_H
#define FO_SNIFF_H

#include <stddef.h>
#include <stdint.h>

/* "HTTP" when p[0..n) starts like an HTTP/1.x request line (GET, HEAD,
 * POST, PUT, DELETE, OPTIONS, PATCH, CONNECT, TRACE) or the HTTP/2
 * preface ("PRI * HTTP/2.0"); "TLS" for a TLS handshake record (0x16
 * 0x03 0x00..0x04: a ClientHello); NULL otherwise, or when fewer bytes
 * than that (4 for HTTP, 3 for TLS) have arrived. */
const char *fo_sniff_foreign(const uint8_t *p, size_t n);

/* The line to log for a connection whose first bytes fo_sniff_foreign
 * named `what`, e.g. "looks like HTTP; metrics are on --http
 * 127.0.0.1:7401" ("... but --http is off"), "looks like a TLS handshake:
 * this is the plain port". http is the --http option's value. Returns
 * snprintf's result. */
int fo_sniff_message(char *out, size_t len, const char *what, const char *http);

/* A whole HTTP/1.0 response, 400 Bad Request with Connection: close and a
 * short text body saying this is fanout's client port and where /metrics
 * is: what to write to an HTTP client instead of an ERROR frame it cannot
 * read (so `curl HOST:7400/metrics` prints the hint). Returns snprintf's
 * result (the length, or what it would be). */
int fo_sniff_http_reply(char *out, size_t len, const char *http);

#endif
