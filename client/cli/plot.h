/* plot.h -- `fanout bench --plot FILE.svg`: a picture of one run.
 *
 * One self-contained SVG file (no script, no external font or style, no
 * library: the text is written here) with a title and two panels:
 *
 *   latency     publish-to-delivery latency by percentile, x on a log
 *               scale of "nines" (50, 90, 99, 99.9, 99.99 % equally
 *               spaced, as HdrHistogram's plots), y in µs or ms, the
 *               usual percentiles marked and labelled;
 *   throughput  messages per second sent and delivered, second by second
 *               (step lines), x in seconds since the first send.
 *
 * Axes, tick labels, units, a legend; every text XML-escaped.
 */
#ifndef FO_PLOT_H
#define FO_PLOT_H

#include <stddef.h>
#include <stdio.h>

typedef struct fo_plot {
    const char *title;         /* e.g. "fanout bench: 1 pub -> 1 sub, 128 B, flood" */
    const char *subtitle;      /* e.g. "sent 100000, delivered 100000, lost 0"      */
    /* latency: nq points (q in percent, ascending, 50..99.99) */
    size_t nq;
    const double *q;
    const double *lat_us;
    /* throughput: nsec rows, row k from t[k] to t[k] + len[k] seconds */
    size_t nsec;
    const double *t, *len;
    const double *sent, *delivered;   /* messages per second */
} fo_plot_t;

/* The nines-scale x of percentile q: -log10(1 - q/100) (50 -> 0.30,
 * 99 -> 2, 99.99 -> 4). */
double fo_plot_nines(double q);

/* Round ticks for [0, max]: *step and the top of the axis (a multiple of
 * step >= max, at least one step). Steps are 1, 2 or 5 times a power of
 * ten; about 5 of them. */
void fo_plot_ticks(double max, double *step, double *top);

/* Write the SVG to f. 0, or -1 when writing failed. */
int fo_plot_svg(FILE *f, const fo_plot_t *p);

#endif
