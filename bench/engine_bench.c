/*
 * engine_bench.c - the merge engine's own cost, on simulated memory.
 *
 * Workload at each size S: two simulated processes of S/2 each; half of
 * each process is identical to the other's (the headline shape of the
 * side-by-side benchmark), the rest unique.  Content is generated from
 * tags (sp_sim_fill_tag), so 16 GiB of simulated memory needs no 16 GiB
 * of RAM; the stable pages merging creates do hold real bytes.  Every
 * read of a tagged page regenerates its 4 KiB, which inflates the tree
 * walks; so the smallest size also runs with real bytes ("real"), which
 * shows the engine's own cost.
 *
 * Reported per pass: wall time, pages/s through the engine, and, for
 * scale, the floor: producing the same bytes and hashing them with XXH3
 * (what any scanner must at least do).  Then metadata bytes per scanned
 * page (the goal is at most 24; KSM's rmap_item alone is 64), and what
 * merging saved.
 *
 * usage: engine_bench [SIZE_GIB ...]     (default: 1 16)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "samepage.h"
#include "util/hash.h"

#define PS SP_PAGE_SIZE
#define PASSES 10

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Floor: generate n pages' bytes and hash them, as a pass must. */
static double floor_rate(size_t n)
{
	static unsigned char page[PS];
	volatile uint64_t sink = 0;
	double t0 = now();

	for (size_t i = 0; i < n; i++) {
		sp_sim_tag_bytes(i * 2654435761u, page);
		sink += sp_hash_page(page);
	}
	(void)sink;
	return n / (now() - t0);
}

/* Give every page real bytes (its tag's content). */
static int materialize(struct sp_sim *sim, struct sp_sim_space *sp,
		       uintptr_t base, size_t n, const uint64_t *tags)
{
	static unsigned char page[PS];

	for (size_t i = 0; i < n; i++) {
		sp_sim_tag_bytes(tags[i], page);
		if (sp_sim_write(sim, sp, base + i * PS, page, PS))
			return -1;
	}
	return 0;
}

static int run(unsigned gib, int real)
{
	const size_t per = (size_t)gib << (30 - 12) >> 1;	/* pages/process */
	const uintptr_t base = 0x100000000ull;
	struct sp_sim *sim;
	struct sp_engine *e;
	struct sp_sim_space *sp[2];
	struct sp_space *s[2];
	struct sp_stats st, prev;
	struct sp_sim_counts before, after;
	uint64_t *tags = malloc(per * sizeof(*tags));
	uint64_t peak_meta = 0;
	double fl;

	if (!tags || sp_sim_new(&sim) ||
	    sp_engine_new(&(struct sp_engine_config){ .ops = &sp_sim_ops,
						      .be = sim },
			  &e))
		return 1;
	for (int p = 0; p < 2; p++) {
		for (size_t i = 0; i < per; i++)
			tags[i] = i < per / 2 ? 1 + i	/* identical half */
					      : ((uint64_t)(p + 1) << 40) | i;
		if (sp_sim_space_new(sim, &sp[p]) ||
		    sp_sim_map(sim, sp[p], base, per * PS, SP_SIM_PRIVATE) ||
		    sp_sim_fill_tag(sim, sp[p], base, per, tags) ||
		    (real && materialize(sim, sp[p], base, per, tags)) ||
		    sp_space_add(e, sp[p], &s[p]) ||
		    sp_register(e, s[p], base, per * PS)) {
			fprintf(stderr, "setup failed at %u GiB\n", gib);
			return 1;
		}
	}
	free(tags);
	sp_sim_counts(sim, &before);
	fl = floor_rate(per > 262144 ? 262144 : per);

	printf("\n%u GiB simulated (2 x %zu MiB, half identical), %zu pages, "
	       "%s content\n", gib, per * PS >> 20, 2 * per,
	       real ? "real" : "generated");
	printf("  floor (generate + XXH3-64 %s): %.2f Mpages/s\n",
	       sp_hash_impl(), fl / 1e6);
	printf("  %-22s %9s %12s %10s %10s\n", "pass", "seconds", "Mpages/s",
	       "ns/page", "vs floor");
	memset(&prev, 0, sizeof(prev));
	for (int pass = 1; pass <= PASSES; pass++) {
		char what[32];
		double t0 = now(), dt;
		uint64_t pages;

		while (sp_scan(e, 1u << 20) > 0)
			;
		dt = now() - t0;
		sp_stats_get(e, &st);
		pages = st.pages_scanned + st.pages_skipped -
			prev.pages_scanned - prev.pages_skipped;
		snprintf(what, sizeof(what), "%d (%s)", pass,
			 pass == 1 ? "checksums" : pass == 2 ? "merge" : "rescan");
		printf("  %-22s %9.3f %12.2f %10.0f %9.2fx   skipped %llu\n",
		       what, dt, pages / dt / 1e6, dt * 1e9 / pages,
		       (pages / dt) / fl,
		       (unsigned long long)(st.pages_skipped - prev.pages_skipped));
		if (st.meta_bytes > peak_meta)
			peak_meta = st.meta_bytes;
		prev = st;
	}
	sp_sim_counts(sim, &after);
	printf("  merged: pages_shared %llu, pages_sharing %llu, replace calls %llu "
	       "(%.0f pages per call)\n",
	       (unsigned long long)st.pages_shared,
	       (unsigned long long)st.pages_sharing,
	       (unsigned long long)st.replace_calls,
	       (double)(st.pages_shared + st.pages_sharing) /
		       (st.replace_calls ? st.replace_calls : 1));
	printf("  frames: %llu before, %llu after (%.0f MiB saved)\n",
	       (unsigned long long)before.frames,
	       (unsigned long long)after.frames,
	       (double)(before.frames - after.frames) * PS / (1 << 20));
	printf("  metadata: %llu bytes for %llu scanned pages = %.2f bytes/page "
	       "at the end, %.2f at the peak (+ %llu bytes of fixed buffers)\n",
	       (unsigned long long)st.meta_bytes,
	       (unsigned long long)st.rmap_items,
	       (double)st.meta_bytes / st.rmap_items,
	       (double)peak_meta / st.rmap_items,
	       (unsigned long long)st.fixed_bytes);
	printf("  unstable tree now holds %llu pages\n",
	       (unsigned long long)st.pages_unshared);

	for (int p = 0; p < 2; p++) {
		sp_sim_space_free(sim, sp[p]);
		sp_space_remove(e, s[p]);
	}
	sp_engine_free(e);
	sp_sim_free(sim);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned sizes[8] = { 1, 16 }, n = 2;

	if (argc > 1) {
		n = 0;
		for (int i = 1; i < argc && n < 8; i++)
			sizes[n++] = (unsigned)atoi(argv[i]);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("samepage engine benchmark (simulated backend; absolute times "
	       "on a shared machine are noisy, ratios less so)\n");
	for (unsigned i = 0; i < n; i++) {
		if (sizes[i] && run(sizes[i], 0))
			return 1;
		if (sizes[i] == 1 && run(1, 1))
			return 1;
	}
	return 0;
}
