/*
 * demo_sim.c - `samepage demo --sim`: the engine on simulated memory,
 * where frames can be counted exactly (and where real memory cannot be
 * merged: no usable userfaultfd).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

/*
 * demo: four simulated processes of 16 MiB each; half of every process
 * holds the same data as the others (a shared library image, say), a
 * quarter is zero-filled, a quarter is private.  Scan until two passes
 * in a row merge nothing new, then show frames before and after.
 */
int cmd_demo_sim(int argc, char **argv)
{
	enum { NPROC = 4, NPAGES = 4096 };
	struct sp_sim *sim;
	struct sp_sim_space *sp[NPROC];
	struct sp_space *space[NPROC];
	struct sp_engine *e;
	struct sp_sim_counts before, after;
	struct sp_stats st;
	uint64_t *tags, last = UINT64_MAX;
	uintptr_t base = 0x10000000;
	unsigned stable_passes = 0;
	double t0, t1;
	int err;

	(void)argc;
	(void)argv;
	tags = calloc(NPAGES, sizeof(*tags));
	if (!tags || sp_sim_new(&sim) ||
	    sp_engine_new(&(struct sp_engine_config){ .ops = &sp_sim_ops,
						      .be = sim },
			  &e)) {
		fprintf(stderr, "samepage demo: out of memory\n");
		return 1;
	}
	sp_knob_set(e, SP_KNOB_USE_ZERO_PAGES, 1);
	for (unsigned p = 0; p < NPROC; p++) {
		for (unsigned i = 0; i < NPAGES; i++) {
			if (i < NPAGES / 2)
				tags[i] = 1000 + i;	/* shared image */
			else if (i < NPAGES / 2 + NPAGES / 4)
				tags[i] = 0;		/* zeroed below */
			else
				tags[i] = (uint64_t)(p + 1) << 32 | i;
		}
		if (sp_sim_space_new(sim, &sp[p]) ||
		    sp_sim_map(sim, sp[p], base, NPAGES * SP_PAGE_SIZE,
			       SP_SIM_PRIVATE) ||
		    sp_sim_fill_tag(sim, sp[p], base, NPAGES, tags)) {
			fprintf(stderr, "samepage demo: simulator failed\n");
			return 1;
		}
		for (unsigned i = NPAGES / 2; i < NPAGES / 2 + NPAGES / 4; i++) {
			static const char zero[SP_PAGE_SIZE];

			sp_sim_write(sim, sp[p], base + i * SP_PAGE_SIZE, zero,
				     SP_PAGE_SIZE);
		}
		if (sp_space_add(e, sp[p], &space[p]) ||
		    (err = sp_register(e, space[p], base,
				       NPAGES * SP_PAGE_SIZE))) {
			fprintf(stderr, "samepage demo: register failed\n");
			return 1;
		}
	}
	sp_sim_counts(sim, &before);
	printf("samepage demo: %d simulated processes x %d MiB "
	       "(1/2 identical across them, 1/4 zero, 1/4 private)\n",
	       NPROC, NPAGES * 4 / 1024);
	printf("before: %llu frames (%llu MiB)\n",
	       (unsigned long long)before.frames,
	       (unsigned long long)before.frames * 4 / 1024);

	t0 = now_s();
	while (stable_passes < 2) {
		while (sp_scan(e, 4096) > 0)
			;
		sp_stats_get(e, &st);
		printf("pass %llu:\n", (unsigned long long)st.full_scans);
		print_stats(&st);
		if (st.pages_sharing + st.ksm_zero_pages == last)
			stable_passes++;
		last = st.pages_sharing + st.ksm_zero_pages;
	}
	t1 = now_s();
	sp_sim_counts(sim, &after);
	printf("after:  %llu frames (%llu MiB), of which %llu stable; "
	       "saved %llu MiB in %.3f s of engine time\n",
	       (unsigned long long)after.frames,
	       (unsigned long long)after.frames * 4 / 1024,
	       (unsigned long long)after.stable_frames,
	       (unsigned long long)(before.frames - after.frames) * 4 / 1024,
	       t1 - t0);
	printf("metadata: %llu bytes for %llu pages (%.1f bytes/page)\n",
	       (unsigned long long)st.meta_bytes,
	       (unsigned long long)st.rmap_items,
	       st.rmap_items ? (double)st.meta_bytes / st.rmap_items : 0.0);

	for (unsigned p = 0; p < NPROC; p++) {
		sp_sim_space_free(sim, sp[p]);
		sp_space_remove(e, space[p]);
	}
	sp_engine_free(e);
	sp_sim_free(sim);
	free(tags);
	return 0;
}
