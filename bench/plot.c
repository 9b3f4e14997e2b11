/*
 * plot.c - CSV and hand-written SVG of pages merged over time (plot.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "plot.h"

#define PANEL_W 400
#define PANEL_H 320
#define LEFT 70		/* room for the y labels */
#define GAP 100		/* between panels */
#define TOP 70

int series_add(struct series *s, double t, uint64_t v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 1024;
		double *nt = realloc(s->t, cap * sizeof(*nt));
		uint64_t *nv;

		if (!nt)
			return -1;
		s->t = nt;
		nv = realloc(s->v, cap * sizeof(*nv));
		if (!nv)
			return -1;
		s->v = nv;
		s->cap = cap;
	}
	s->t[s->n] = t;
	s->v[s->n++] = v;
	return 0;
}

int plot_csv(const char *path, const char *const *names,
	     const struct series *s, int n)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "mode,seconds,pages_merged\n");
	for (int m = 0; m < n; m++)
		for (size_t j = 0; j < s[m].n; j++)
			fprintf(f, "%s,%.4f,%llu\n", names[m], s[m].t[j],
				(unsigned long long)s[m].v[j]);
	return fclose(f) ? -errno : 0;
}

/* A round step giving about five ticks over @range. */
static double nice_step(double range)
{
	double e = pow(10, floor(log10(range / 5))), f = range / 5 / e;

	return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * e;
}

static void panel(FILE *f, double x0, double y0, const struct plot_panel *p,
		  uint64_t expect)
{
	const double w = PANEL_W, h = PANEL_H;
	const struct series *s[2] = { p->ksm, p->sp };
	static const char *const col[2] = { "#d62728", "#1f77b4" };
	double tmax = 0.1, ymax = expect ? expect * 1.1 : 1, step;

	for (int i = 0; i < 2; i++)
		for (size_t j = 0; s[i] && j < s[i]->n; j++) {
			if (s[i]->t[j] > tmax)
				tmax = s[i]->t[j];
			if (s[i]->v[j] * 1.05 > ymax)
				ymax = s[i]->v[j] * 1.05;
		}
	tmax *= 1.05;
#define X(t) (x0 + (t) / tmax * w)
#define Y(v) (y0 + h - (v) / ymax * h)
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"14\" "
		   "text-anchor=\"middle\">%s</text>\n",
		x0 + w / 2, y0 - 10, p->title);
	fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" "
		   "fill=\"none\" stroke=\"#444\"/>\n", x0, y0, w, h);
	step = nice_step(tmax);
	for (double t = 0; t <= tmax; t += step)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
			   "stroke=\"#ddd\"/><text x=\"%.1f\" y=\"%.1f\" "
			   "font-size=\"11\" text-anchor=\"middle\">%g</text>\n",
			X(t), y0, X(t), y0 + h, X(t), y0 + h + 14, t);
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\" "
		   "text-anchor=\"middle\">seconds since registration</text>\n",
		x0 + w / 2, y0 + h + 32);
	step = nice_step(ymax);
	for (double v = 0; v <= ymax; v += step)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
			   "stroke=\"#ddd\"/><text x=\"%.1f\" y=\"%.1f\" "
			   "font-size=\"11\" text-anchor=\"end\">%gk</text>\n",
			x0, Y(v), x0 + w, Y(v), x0 - 4, Y(v) + 4, v / 1000);
	if (expect)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
			   "y2=\"%.1f\" stroke=\"#2ca02c\" "
			   "stroke-dasharray=\"6,4\"/>\n",
			x0, Y((double)expect), x0 + w, Y((double)expect));
	for (int i = 0; i < 2; i++) {
		if (!s[i] || !s[i]->n)
			continue;
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" "
			   "stroke-width=\"2\" points=\"", col[i]);
		for (size_t j = 0; j < s[i]->n; j++)
			fprintf(f, "%.1f,%.1f ", X(s[i]->t[j]),
				Y((double)s[i]->v[j]));
		fprintf(f, "\"/>\n");
	}
#undef X
#undef Y
}

int plot_svg(const char *path, const char *title,
	     const struct plot_panel *p, int n, uint64_t expect)
{
	int width = LEFT + n * (PANEL_W + GAP) - GAP / 2, height = 480;
	double lx = width / 2.0 - 200;
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
		   "height=\"%d\" font-family=\"sans-serif\">\n"
		   "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
		width, height, width, height);
	fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"16\" "
		   "text-anchor=\"middle\">%s</text>\n", width / 2, title);
	for (int i = 0; i < n; i++)
		panel(f, LEFT + i * (PANEL_W + GAP), TOP, &p[i], expect);
	fprintf(f, "<g font-size=\"12\">"
		   "<line x1=\"%.0f\" y1=\"450\" x2=\"%.0f\" y2=\"450\" "
		   "stroke=\"#d62728\" stroke-width=\"2\"/>"
		   "<text x=\"%.0f\" y=\"454\">kernel KSM</text>"
		   "<line x1=\"%.0f\" y1=\"450\" x2=\"%.0f\" y2=\"450\" "
		   "stroke=\"#1f77b4\" stroke-width=\"2\"/>"
		   "<text x=\"%.0f\" y=\"454\">samepage</text>",
		lx, lx + 30, lx + 35, lx + 140, lx + 170, lx + 175);
	if (expect)
		fprintf(f, "<line x1=\"%.0f\" y1=\"450\" x2=\"%.0f\" y2=\"450\" "
			   "stroke=\"#2ca02c\" stroke-dasharray=\"6,4\"/>"
			   "<text x=\"%.0f\" y=\"454\">expected</text>",
			lx + 270, lx + 300, lx + 305);
	fprintf(f, "</g>\n</svg>\n");
	return fclose(f) ? -errno : 0;
}
