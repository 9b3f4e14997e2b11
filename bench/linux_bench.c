/*
 * linux_bench.c - the Linux backend's cost, on this process's real memory.
 *
 * Workload (issue 3): one process, SIZE MiB (default 1024) of which the
 * second half is a copy of the first; the first half's pages are all
 * distinct.  Reported:
 *   - converge: wall time and CPU (the whole process: the agent's scanner
 *     does the work while the caller waits) from registration to
 *     sp_agent_merge_now() returning, and how many duplicates merged;
 *   - Pss and Rss before and after (from /proc/self/smaps_rollup), and
 *     VMAs the merge created (from /proc/self/maps);
 *   - rescan: three passes over the same, now unchanged, memory, in pages
 *     per second, smart scan off (every unmerged page hashed again) and
 *     on, against the floor: XXH3 (inlined, as the engine uses it) over
 *     the same bytes from one thread;
 *   - metadata: the engine's per-page bytes and the backend's own, per
 *     scanned page;
 *   - cost per merge: RUN MiB of duplicates laid out as long runs and as
 *     isolated pages (every other page), in microseconds per merged page
 *     and per mapping call.
 * Absolute times on a shared machine are noise; the ratios (rescan
 * against the floor, isolated against runs) are the figures to read.
 * Kernel KSM on the same workloads is bench/ksm_compare (issue 5).
 *
 * Needs a usable userfaultfd (root here); exits 77 saying why otherwise.
 *
 * usage: linux_bench [SIZE_MIB [RUN_MIB]]      (default: 1024 64)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "samepage.h"
#include "cli/cli.h"	/* now_s, cpu_s, rollup_kb, count_vmas */
#include "util/hash.h"

#define PS SP_PAGE_SIZE
#define MIB (1024u * 1024u)

static struct sp_agent *A;

static char *map(size_t bytes)
{
	char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

/* Page content: distinct per (seed, i), non-zero, cheap to make. */
static void page(char *p, uint64_t seed, size_t i)
{
	uint64_t v = seed * 0x9e3779b97f4a7c15ull + i + 1;

	memset(p, (int)(v % 251) + 1, PS);
	memcpy(p, &v, 8);
	memcpy(p + PS / 2, &v, 8);
	memcpy(p + PS - 8, &v, 8);
}

static struct sp_stats stats(void)
{
	struct sp_stats st;

	sp_stats_get(sp_agent_engine(A), &st);
	return st;
}

static struct sp_agent_stats astats(void)
{
	struct sp_agent_stats st;

	sp_agent_stats_get(A, &st);
	return st;
}

static void must(int err, const char *what)
{
	if (err) {
		fprintf(stderr, "linux_bench: %s: %s\n", what, strerror(-err));
		exit(1);
	}
}

/* XXH3 over n pages at p, from one thread: pages per second. */
static double floor_rate(const char *p, size_t n)
{
	volatile uint64_t sink = 0;
	double best = 0;

	for (int r = 0; r < 3; r++) {
		double t0 = now_s(), rate;

		for (size_t i = 0; i < n; i++)
			sink += sp_hash_page(p + i * PS);
		rate = n / (now_s() - t0);
		if (rate > best)
			best = rate;
	}
	(void)sink;
	return best;
}

/* Three passes over unchanged memory; pages/s over the registered pages. */
static double rescan_rate(size_t registered, int smart)
{
	struct sp_stats a, b;
	double t0;

	must(sp_knob_set(sp_agent_engine(A), SP_KNOB_SMART_SCAN, smart),
	     "smart_scan");
	a = stats();
	t0 = now_s();
	must(sp_agent_merge_now(A, 0), "merge_now");
	t0 = now_s() - t0;
	b = stats();
	printf("    smart_scan %d: %.0f ms for %llu passes, %llu pages scanned, "
	       "%llu skipped\n", smart, t0 * 1e3,
	       (unsigned long long)(b.full_scans - a.full_scans),
	       (unsigned long long)(b.pages_scanned - a.pages_scanned),
	       (unsigned long long)(b.pages_skipped - a.pages_skipped));
	return (double)registered * (b.full_scans - a.full_scans) / t0;
}

static void headline(size_t mib)
{
	size_t n = (size_t)mib * MIB / PS, half = n / 2;
	char *x = map(n * PS);
	long pss0, rss0, pss1, rss1, v0, v1;
	double t0, c0, t, c, fl, r0, r1;
	struct sp_stats st;
	struct sp_agent_stats as;

	printf("== %zu MiB, second half a copy of the first ==\n", mib);
	for (size_t i = 0; i < half; i++)
		page(x + i * PS, 1, i);
	memcpy(x + half * PS, x, half * PS);
	pss0 = rollup_kb("Pss");
	rss0 = rollup_kb("Rss");
	v0 = count_vmas();

	t0 = now_s();
	c0 = cpu_s();
	must(sp_agent_register(A, x, n * PS), "register");
	must(sp_agent_merge_now(A, 0), "merge_now");
	t = now_s() - t0;
	c = cpu_s() - c0;
	st = stats();
	as = astats();
	pss1 = rollup_kb("Pss");
	rss1 = rollup_kb("Rss");
	v1 = count_vmas();
	printf("  converge: %.2f s wall, %.2f s CPU; %llu pages sharing "
	       "(of %zu duplicates), %llu shared, %llu passes\n", t, c,
	       (unsigned long long)st.pages_sharing, half,
	       (unsigned long long)st.pages_shared,
	       (unsigned long long)st.full_scans);
	printf("  per page registered: %.2f us wall, %.2f us CPU\n",
	       t * 1e6 / n, c * 1e6 / n);
	printf("  Pss %.1f -> %.1f MiB (saved %.1f), Rss %.1f -> %.1f MiB\n",
	       pss0 / 1024.0, pss1 / 1024.0, (pss0 - pss1) / 1024.0,
	       rss0 / 1024.0, rss1 / 1024.0);
	printf("  VMAs %ld -> %ld (+%ld), %llu mapping calls, store %.1f MiB\n",
	       v0, v1, v1 - v0, (unsigned long long)as.replaces,
	       as.store_bytes / (double)MIB);
	printf("  metadata just after converging (unstable tree at its largest): "
	       "engine %.2f B/page (+%llu B fixed), backend %.2f B/page\n",
	       (double)st.meta_bytes / st.rmap_items,
	       (unsigned long long)st.fixed_bytes,
	       (double)as.backend_bytes / st.rmap_items);

	printf("  rescan of the merged memory (unchanged):\n");
	r0 = rescan_rate(n, 0);
	r1 = rescan_rate(n, 1);
	fl = floor_rate(x, n);
	printf("  rescan %.0f pages/s (smart scan off), %.0f (on); floor "
	       "XXH3 %.0f pages/s (%.1f GB/s); ratio %.2f / %.2f of the floor\n",
	       r0, r1, fl, fl * PS / 1e9, r0 / fl, r1 / fl);
	st = stats();
	as = astats();
	printf("  metadata after the rescans (steady): engine %.2f B/page, "
	       "backend %.2f B/page\n", (double)st.meta_bytes / st.rmap_items,
	       (double)as.backend_bytes / st.rmap_items);

	must(sp_agent_unregister(A, x, n * PS), "unregister");
	munmap(x, n * PS);
}

/* The other half of a rescan: distinct pages that never merge, hashed
 * again (and put in the unstable tree) on every pass they are not
 * skipped. */
static void unique_rescan(size_t mib)
{
	size_t n = (size_t)mib * MIB / PS;
	char *x = map(n * PS);
	double fl, r0, r1;

	printf("== rescan of %zu MiB of distinct pages (nothing merges) ==\n",
	       mib);
	for (size_t i = 0; i < n; i++)
		page(x + i * PS, 4, i);
	must(sp_agent_register(A, x, n * PS), "register");
	must(sp_agent_merge_now(A, 0), "merge_now");
	r0 = rescan_rate(n, 0);
	r1 = rescan_rate(n, 1);
	fl = floor_rate(x, n);
	printf("  rescan %.0f pages/s (smart scan off), %.0f (on); floor "
	       "XXH3 %.0f pages/s; ratio %.2f / %.2f of the floor\n",
	       r0, r1, fl, r0 / fl, r1 / fl);
	must(sp_agent_unregister(A, x, n * PS), "unregister");
	munmap(x, n * PS);
}

/* Two copies of run_mib of data; isolated: only every other page of the
 * copy is a duplicate (the others differ), so each merge is one page. */
static void per_merge(size_t run_mib, int isolated)
{
	size_t n = (size_t)run_mib * MIB / PS;
	char *a = map(n * PS), *b = map(n * PS);
	struct sp_agent_stats as0, as1;
	struct sp_stats st0, st1;
	uint64_t merged, calls;
	long v0, v1;
	double t, c;

	for (size_t i = 0; i < n; i++) {
		page(a + i * PS, 2, i);
		page(b + i * PS, isolated && i % 2 ? 3 : 2, i);
	}
	st0 = stats();
	as0 = astats();
	v0 = count_vmas();
	t = now_s();
	c = cpu_s();
	must(sp_agent_register(A, a, n * PS), "register");
	must(sp_agent_register(A, b, n * PS), "register");
	must(sp_agent_merge_now(A, 0), "merge_now");
	t = now_s() - t;
	c = cpu_s() - c;
	st1 = stats();
	as1 = astats();
	v1 = count_vmas();
	merged = (st1.pages_sharing + st1.pages_shared) -
		 (st0.pages_sharing + st0.pages_shared);
	calls = as1.replaces - as0.replaces;
	printf("  %-8s %6llu pages mapped to stable pages by %6llu calls, "
	       "VMAs +%ld: %.2f us/page wall, %.2f CPU (merge_now %.0f ms)\n",
	       isolated ? "isolated" : "runs", (unsigned long long)merged,
	       (unsigned long long)calls, v1 - v0,
	       merged ? t * 1e6 / merged : 0.0,
	       merged ? c * 1e6 / merged : 0.0, t * 1e3);
	must(sp_agent_unregister(A, a, n * PS), "unregister");
	must(sp_agent_unregister(A, b, n * PS), "unregister");
	munmap(a, n * PS);
	munmap(b, n * PS);
}

int main(int argc, char **argv)
{
	struct sp_agent_config cfg = { .run = 0 };
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 1024;
	size_t run_mib = argc > 2 ? strtoul(argv[2], NULL, 0) : 64;
	char why[512];
	int err;

	if (mib < 2 || run_mib < 1) {
		fprintf(stderr, "usage: linux_bench [SIZE_MIB [RUN_MIB]]\n");
		return 2;
	}
	err = sp_agent_start(&cfg, &A, why, sizeof(why));
	if (err == -EPERM || err == -ENOSYS) {
		fprintf(stderr, "linux_bench: SKIP: %s\n", why);
		return 77;
	}
	must(err, "sp_agent_start");
	headline(mib);
	unique_rescan(mib / 2);
	printf("== cost per merge: two copies of %zu MiB in long runs, of "
	       "%zu MiB with every other page a duplicate ==\n", run_mib,
	       run_mib / 8 ? run_mib / 8 : 1);
	per_merge(run_mib, 0);
	/* Isolated pages cost ~2 VMAs each: stay well inside the budget. */
	per_merge(run_mib / 8 ? run_mib / 8 : 1, 1);
	sp_agent_stop(A);
	return 0;
}
