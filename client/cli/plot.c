/* plot.c -- the SVG of a bench run (see plot.h).
 *
 * Layout (user units = px): 960 x 840. Title and subtitle on top; the
 * latency panel's plot area is x 100..920, y 100..360; the throughput
 * panel's x 100..920, y 500..760. Each panel: a frame, grid lines at the
 * ticks, tick labels, axis titles with units, the data, a legend or
 * markers. Colours from a colour-blind-safe pair (blue, orange).
 */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define W 960
#define H 840
#define X0 100
#define X1 920
#define LAT_Y0 100
#define LAT_Y1 360
#define TPUT_Y0 500
#define TPUT_Y1 760
#define BLUE "#1f77b4"
#define ORANGE "#e66101"
#define GRID "#dddddd"

double fo_plot_nines(double q)
{
    if (q >= 100)
        q = 99.9999;
    return -log10(1 - q / 100);
}

void fo_plot_ticks(double max, double *step, double *top)
{
    if (!(max > 0) || !isfinite(max))
        max = 1;
    double raw = max / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double s = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    *step = s * mag;
    *top = ceil(max / *step - 1e-9) * *step;
    if (*top <= 0)
        *top = *step;
}

/* Text with & < > " escaped. */
static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void text(FILE *f, double x, double y, const char *anchor, const char *attrs,
                 const char *s)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s%s>", x, y, anchor,
            attrs && *attrs ? " " : "", attrs ? attrs : "");
    esc(f, s);
    fputs("</text>\n", f);
}

/* A number for a tick label: no trailing zeros ("0.5", "20", "1.25"). */
static void num(char *out, size_t len, double v)
{
    snprintf(out, len, "%.6g", fabs(v) < 1e-12 ? 0 : v);
}

/* A rate for a tick label: 500, 20k, 1.5M. */
static void rate_label(char *out, size_t len, double v)
{
    char n[24];
    if (v >= 1e6) {
        num(n, sizeof n, v / 1e6);
        snprintf(out, len, "%sM", n);
    } else if (v >= 1e3) {
        num(n, sizeof n, v / 1e3);
        snprintf(out, len, "%sk", n);
    } else {
        num(out, len, v);
    }
}

static void frame(FILE *f, int y0, int y1)
{
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"#333333\" stroke-width=\"1\"/>\n", X0, y0, X1 - X0, y1 - y0);
}

/* Horizontal grid lines and labels for a y axis of [0, top] in steps. */
static void y_axis(FILE *f, int y0, int y1, double step, double top, int rates,
                   const char *title)
{
    for (int i = 0; i * step <= top + step * 1e-9; i++) {
        double v = i * step, y = y1 - (v / top) * (y1 - y0);
        char lab[48];
        if (rates)
            rate_label(lab, sizeof lab, v);
        else
            num(lab, sizeof lab, v);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\"/>\n", X0, y,
                X1, y, GRID);
        text(f, X0 - 8, y + 4, "end", "font-size=\"12\"", lab);
    }
    char attrs[128];
    double cy = (y0 + y1) / 2.0;
    snprintf(attrs, sizeof attrs, "font-size=\"13\" transform=\"rotate(-90 %d %.1f)\"", 30, cy);
    text(f, 30, cy, "middle", attrs, title);
}

static void latency_panel(FILE *f, const fo_plot_t *p)
{
    fputs("<g id=\"latency\">\n", f);
    text(f, X0, LAT_Y0 - 14, "start", "font-size=\"15\" font-weight=\"bold\"",
         "Latency by percentile (publish to delivery)");
    double max = 0;
    for (size_t i = 0; i < p->nq; i++)
        if (p->lat_us[i] > max)
            max = p->lat_us[i];
    int ms = max >= 10000;                    /* 10 ms and more: in ms */
    double scale = ms ? 1e-3 : 1, step, top;
    fo_plot_ticks(max * scale, &step, &top);
    y_axis(f, LAT_Y0, LAT_Y1, step, top, 0, ms ? "latency (ms)" : "latency (\xc2\xb5s)");
    static const double marks[] = { 50, 90, 99, 99.9, 99.99 };
    double xmin = fo_plot_nines(50), xmax = fo_plot_nines(99.99);
#define XQ(q) (X0 + (fo_plot_nines(q) - xmin) / (xmax - xmin) * (X1 - X0))
#define YL(v) (LAT_Y1 - ((v) * scale / top) * (LAT_Y1 - LAT_Y0))
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        double x = XQ(marks[i]);
        char lab[16];
        snprintf(lab, sizeof lab, "%g%%", marks[i]);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\"/>\n", x,
                LAT_Y0, x, LAT_Y1, GRID);
        text(f, x, LAT_Y1 + 18, "middle", "font-size=\"12\"", lab);
    }
    text(f, (X0 + X1) / 2.0, LAT_Y1 + 40, "middle", "font-size=\"13\"",
         "percentile (log scale of nines: 90% is one nine, 99.9% three)");
    frame(f, LAT_Y0, LAT_Y1);
    if (p->nq) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", BLUE);
        for (size_t i = 0; i < p->nq; i++)
            fprintf(f, "%s%.1f,%.1f", i ? " " : "", XQ(p->q[i]), YL(p->lat_us[i]));
        fputs("\"/>\n", f);
        /* the marked percentiles: a dot and the value */
        for (size_t m = 0; m < sizeof marks / sizeof marks[0]; m++) {
            size_t best = 0;
            for (size_t i = 0; i < p->nq; i++)
                if (fabs(p->q[i] - marks[m]) < fabs(p->q[best] - marks[m]))
                    best = i;
            double x = XQ(p->q[best]), y = YL(p->lat_us[best]), v = p->lat_us[best];
            char lab[48];
            double shown = v >= 1000 ? v / 1000 : v;
            snprintf(lab, sizeof lab, shown < 10 ? "%.2f %s" : shown < 100 ? "%.1f %s" : "%.0f %s",
                     shown, v >= 1000 ? "ms" : "\xc2\xb5s");
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", x, y, BLUE);
            double ly = y - 8 < LAT_Y0 + 14 ? y + 16 : y - 8;   /* below a point near the top */
            text(f, x + (m == 4 ? -6 : 6), ly, m == 4 ? "end" : "start",
                 "font-size=\"11\" fill=\"#333333\"", lab);
        }
    }
#undef XQ
#undef YL
    fputs("</g>\n", f);
}

/* A step line: row k at height v[k] from t[k] to t[k] + len[k]. */
static void steps(FILE *f, const fo_plot_t *p, const double *v, double tmax, double top,
                  const char *colour, const char *dash)
{
#define XT(s) (X0 + ((s) / tmax) * (X1 - X0))
#define YT(r) (TPUT_Y1 - ((r) / top) * (TPUT_Y1 - TPUT_Y0))
    fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s d=\"", colour, dash);
    for (size_t k = 0; k < p->nsec; k++)
        fprintf(f, "%s%.1f,%.1f H%.1f", k ? " L" : "M", XT(p->t[k]), YT(v[k]),
                XT(p->t[k] + p->len[k]));
    fputs("\"/>\n", f);
#undef XT
#undef YT
}

static void throughput_panel(FILE *f, const fo_plot_t *p)
{
    fputs("<g id=\"throughput\">\n", f);
    text(f, X0, TPUT_Y0 - 14, "start", "font-size=\"15\" font-weight=\"bold\"",
         "Throughput, second by second");
    double max = 0, tmax = 0;
    for (size_t k = 0; k < p->nsec; k++) {
        if (p->sent[k] > max)
            max = p->sent[k];
        if (p->delivered[k] > max)
            max = p->delivered[k];
        if (p->t[k] + p->len[k] > tmax)
            tmax = p->t[k] + p->len[k];
    }
    double step, top, tstep, ttop;
    fo_plot_ticks(max, &step, &top);
    fo_plot_ticks(tmax, &tstep, &ttop);
    y_axis(f, TPUT_Y0, TPUT_Y1, step, top, 1, "messages per second (msgs/s)");
    for (int i = 0; i * tstep <= ttop + tstep * 1e-9; i++) {
        double s = i * tstep, x = X0 + s / ttop * (X1 - X0);
        char lab[32];
        num(lab, sizeof lab, s);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\"/>\n", x,
                TPUT_Y0, x, TPUT_Y1, GRID);
        text(f, x, TPUT_Y1 + 18, "middle", "font-size=\"12\"", lab);
    }
    text(f, (X0 + X1) / 2.0, TPUT_Y1 + 40, "middle", "font-size=\"13\"",
         "time since the first publish (s)");
    frame(f, TPUT_Y0, TPUT_Y1);
    if (p->nsec) {
        steps(f, p, p->sent, ttop, top, BLUE, "");
        steps(f, p, p->delivered, ttop, top, ORANGE, " stroke-dasharray=\"6 3\"");
    }
    /* legend, right of the panel's title, outside the data */
    int ly = TPUT_Y0 - 18;
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n",
            X1 - 300, ly, X1 - 272, ly, BLUE);
    text(f, X1 - 266, ly + 4, "start", "font-size=\"12\"", "sent msgs/s");
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\" "
            "stroke-dasharray=\"6 3\"/>\n", X1 - 150, ly, X1 - 122, ly, ORANGE);
    text(f, X1 - 116, ly + 4, "start", "font-size=\"12\"", "delivered msgs/s");
    fputs("</g>\n", f);
}

int fo_plot_svg(FILE *f, const fo_plot_t *p)
{
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
            W, H, W, H);
    fputs("<title>", f);
    esc(f, p->title);
    fputs("</title>\n", f);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    text(f, W / 2.0, 30, "middle", "font-size=\"18\" font-weight=\"bold\"", p->title);
    text(f, W / 2.0, 54, "middle", "font-size=\"13\" fill=\"#444444\"", p->subtitle);
    latency_panel(f, p);
    throughput_panel(f, p);
    fputs("</svg>\n", f);
    return ferror(f) ? -1 : 0;
}
