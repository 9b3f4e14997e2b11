/*
 * plot.h - pages merged over time, as bench/ksm_compare records them: a
 * series per mode, written as CSV and drawn as SVG by hand (no
 * dependency).
 */
#ifndef SP_BENCH_PLOT_H
#define SP_BENCH_PLOT_H

#include <stddef.h>
#include <stdint.h>

struct series {
	double *t;		/* seconds since registration */
	uint64_t *v;		/* pages merged then */
	size_t n, cap;
};

/* series_add - append a point.  Return: 0, or -1 out of memory (the
 * series is unchanged). */
int series_add(struct series *s, double t, uint64_t v);

/* One panel: kernel KSM's curve and samepage's, either may be empty. */
struct plot_panel {
	const char *title;
	const struct series *ksm, *sp;
};

/* plot_csv - "mode,seconds,pages_merged" then a row per point of each
 * of the @n series, named by @names.  Return: 0 or -errno. */
int plot_csv(const char *path, const char *const *names,
	     const struct series *s, int n);

/* plot_svg - @n panels side by side under @title, with a dashed line at
 * @expect pages (0: none).  Return: 0 or -errno. */
int plot_svg(const char *path, const char *title,
	     const struct plot_panel *p, int n, uint64_t expect);

#endif
