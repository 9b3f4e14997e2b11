/*
 * advisor.c - how fast an agent scans: the scan-time advisor's rule and
 * a process's share of its domain's rate; see advisor.h.
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

uint64_t sp_scan_share(uint64_t pages_to_scan, uint64_t mine,
		       uint64_t domain)
{
	unsigned __int128 part;

	if (!mine || domain <= mine)
		return pages_to_scan;
	part = ((unsigned __int128)pages_to_scan * mine + domain - 1) / domain;
	return part ? (uint64_t)part : 1;
}
