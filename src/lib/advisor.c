/*
 * advisor.c - the scan-time advisor's rule; see advisor.h.
 */
#include "advisor.h"

uint64_t sp_advise_pages(const struct sp_advice *in)
{
	double pts = (double)in->pages_to_scan, want = pts;

	if (in->wall_s > 0 && in->target_s) {
		double pct = 100.0 * in->cpu_s / in->wall_s;

		want = pts * in->wall_s / (double)in->target_s;
		/* CPU share grows with the batch: cap it. */
		if (pct > 0 && want > pts * (double)in->max_cpu / pct)
			want = pts * (double)in->max_cpu / pct;
	}
	if (want < (double)in->min_pages)
		want = (double)in->min_pages;
	if (want > (double)in->max_pages)
		want = (double)in->max_pages;
	return want < 1 ? 1 : (uint64_t)want;
}
