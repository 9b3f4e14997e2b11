/*
 * demo.c - `samepage demo [MiB]`: merge duplicate data in this process's
 * own memory and show what the kernel sees before and after.
 *
 * Four "workers" (regions of MiB/4 each, default 256 MiB in all), as in a
 * pool of processes started from the same data: half of each holds a
 * dataset all of them hold (the same bytes), a quarter is zero-filled, a
 * quarter is its own.  The demo registers them (MADV_MERGEABLE), merges
 * with the in-process agent, and prints Rss, Pss and the VMA count from
 * /proc/self; then it writes to merged pages (each gets a private copy
 * from the kernel's copy-on-write), unmerges everything (run=2), and
 * checks every byte against what it wrote.
 *
 * Where this process cannot merge (no usable userfaultfd), it says why
 * and runs the simulated demo instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli.h"

#define PS SP_PAGE_SIZE
#define NWORKER 4
#define NWRITE 1000		/* merged pages the demo writes to */

/* Page @i's bytes for @seed: pseudo-random, distinct per (seed, i). */
static void fill_page(unsigned char *p, uint64_t seed, size_t i)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull ^ (i + 1) * 0xbf58476d1ce4e5b9ull;

	for (size_t k = 0; k < PS; k += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + k, &x, 8);
	}
}

/* What page @i of worker @w must hold (NULL: zeros). */
static void expected(unsigned char *p, unsigned w, size_t i, size_t npg)
{
	if (i < npg / 2)
		fill_page(p, 1, i);			/* the shared dataset */
	else if (i < npg / 2 + npg / 4)
		memset(p, 0, PS);			/* zero-filled */
	else
		fill_page(p, 100 + w, i);		/* its own */
}

static uint64_t pfn_of(int pm, const void *p)
{
	uint64_t e = 0;

	if (pread(pm, &e, 8, (off_t)((uintptr_t)p / PS) * 8) != 8)
		return 0;
	return e & ((1ull << 55) - 1);
}

static void show(const char *when, double secs, double cpu)
{
	printf("%-8s Rss %7.1f MiB   Pss %7.1f MiB   VMAs %6ld", when,
	       rollup_kb("Rss") / 1024.0, rollup_kb("Pss") / 1024.0,
	       count_vmas());
	if (secs >= 0)
		printf("   (%.2f s, %.2f s of CPU)", secs, cpu);
	printf("\n");
}

/* Write a byte into NWRITE dataset pages of worker 0 (merged pages). */
static void write_some(char *r, size_t npg)
{
	for (size_t k = 0; k < NWRITE && k < npg / 2; k++)
		r[(k * 7 % (npg / 2)) * PS + 100] ^= 0x5a;
}

static int check_all(char *const *r, size_t npg)
{
	unsigned char want[PS];

	for (unsigned w = 0; w < NWORKER; w++)
		for (size_t i = 0; i < npg; i++) {
			expected(want, w, i, npg);
			if (memcmp(r[w] + i * PS, want, PS)) {
				/* Worker 0's written pages differ by the
				 * byte the demo flipped, and only by it. */
				want[100] ^= 0x5a;
				if (w || memcmp(r[w] + i * PS, want, PS)) {
					fprintf(stderr, "worker %u page %zu "
						"is wrong\n", w, i);
					return -1;
				}
			}
		}
	return 0;
}

int cmd_demo(int argc, char **argv)
{
	struct sp_agent_config cfg = { .run = 0 };
	struct sp_agent *a;
	struct sp_stats st;
	struct sp_agent_stats as;
	size_t mib = 256, npg;
	char *r[NWORKER], why[512];
	double t0, c0;
	int err, pm;

	if (argc > 1 && !strcmp(argv[1], "--sim"))
		return cmd_demo_sim(argc - 1, argv + 1);
	if (argc > 1) {
		char *end;

		mib = strtoul(argv[1], &end, 10);
		if (*end || mib < 4 || mib > 65536) {
			fprintf(stderr, "samepage demo: MiB must be 4..65536\n");
			return 2;
		}
	}
	npg = mib * 256 / NWORKER;
	err = sp_agent_start(&cfg, &a, why, sizeof(why));
	if (err == -EPERM || err == -ENOSYS) {
		printf("samepage demo: this process cannot merge real memory: "
		       "%s\nShowing the simulated demo instead.\n\n", why);
		return cmd_demo_sim(argc, argv);
	}
	if (err) {
		fprintf(stderr, "samepage demo: %s (%s)\n", strerror(-err), why);
		return 1;
	}
	sp_knob_set(sp_agent_engine(a), SP_KNOB_USE_ZERO_PAGES, 1);
	sp_knob_set(sp_agent_engine(a), SP_KNOB_PAGES_TO_SCAN, 4096);
	sp_knob_set(sp_agent_engine(a), SP_KNOB_SLEEP_MILLISECS, 0);
	printf("samepage demo: %d workers x %zu MiB of this process's real "
	       "memory;\neach holds 1/2 a dataset all of them hold, 1/4 zeros, "
	       "1/4 its own data\n\n", NWORKER, mib / NWORKER);
	for (unsigned w = 0; w < NWORKER; w++) {
		r[w] = mmap(NULL, npg * PS, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (r[w] == MAP_FAILED) {
			perror("samepage demo: mmap");
			return 1;
		}
		for (size_t i = 0; i < npg; i++)
			expected((unsigned char *)r[w] + i * PS, w, i, npg);
	}
	show("before", -1, 0);

	t0 = now_s();
	c0 = cpu_s();
	for (unsigned w = 0; w < NWORKER; w++)
		if ((err = sp_agent_register(a, r[w], npg * PS))) {
			fprintf(stderr, "samepage demo: register: %s\n",
				strerror(-err));
			return 1;
		}
	if ((err = sp_agent_merge_now(a, 0))) {
		fprintf(stderr, "samepage demo: merge: %s\n", strerror(-err));
		return 1;
	}
	show("merged", now_s() - t0, cpu_s() - c0);
	sp_stats_get(sp_agent_engine(a), &st);
	print_stats(&st);
	sp_agent_stats_get(a, &as);
	printf("  %llu mappings made (%llu pages moved out and held while "
	       "compared), %llu stable pages in the store\n",
	       (unsigned long long)as.replaces, (unsigned long long)as.moves,
	       (unsigned long long)(as.store_bytes / PS));
	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm >= 0) {
		uint64_t f0 = pfn_of(pm, r[0]), f3 = pfn_of(pm, r[3]);

		if (f0)
			printf("  the kernel's view: worker 0's and worker 3's "
			       "first dataset page are PFN %#llx and %#llx\n",
			       (unsigned long long)f0, (unsigned long long)f3);
		close(pm);
	}

	write_some(r[0], npg);
	printf("\nwrote to %d merged pages of worker 0: each got a private "
	       "copy (copy-on-write)\n", NWRITE);
	show("written", -1, 0);

	t0 = now_s();
	c0 = cpu_s();
	if ((err = sp_agent_set_run(a, 2))) {
		fprintf(stderr, "samepage demo: unmerge: %s\n", strerror(-err));
		return 1;
	}
	printf("\nunmerged everything (run=2): private pages again, the "
	       "mappings given back\n");
	show("unmerged", now_s() - t0, cpu_s() - c0);
	if (check_all(r, npg))
		return 1;
	printf("\nevery byte of the %zu MiB checked: as written\n", mib);
	for (unsigned w = 0; w < NWORKER; w++)
		sp_agent_unmap(a, r[w], npg * PS);
	sp_agent_stop(a);
	return 0;
}
