/*
 * ksm_compare.c - samepage side by side with kernel KSM, on the same
 * unmodified programs (bench/workload), in one run (issue 5).
 *
 * Each workload runs as N processes of bench/workload in four modes:
 *   ksm-def   kernel KSM, its default knobs (100 pages / 20 ms)
 *   ksm-full  kernel KSM at full speed (pages_to_scan 10000,
 *             sleep_millisecs 0)
 *   sp-def    `samepage run` with its defaults (KSM's), kernel run=0
 *   sp-full   `samepage run --pages-to-scan 10000 --sleep-millisecs 0`
 * The workloads fill their memory, then all register it at once ("go");
 * the clock starts there.  Per mode:
 *   converge  time until every page expected to merge does (the expected
 *             set comes from the workload's recipe, workload.h).  Kernel
 *             KSM: ksm_merging_pages of the workloads (/proc/PID/ksm_stat:
 *             theirs only, whoever else uses KSM; exact at once).
 *             samepage: the kernel's view of the workloads' pages
 *             (/proc/PID/pagemap: a merged page maps the stable store, or
 *             nothing until touched, never its private frame), because
 *             the daemon's counters come in reports up to 250 ms old.
 *             Polled, with a timeout; never a fixed sleep.
 *   CPU       of the merger over the same window: ksmd; for samepage the
 *             agents' scanner threads (named "samepage") and samepaged.
 *             From /proc/.../schedstat (ns), else utime+stime.
 *   scan/s    pages_scanned per second from "go" to the end of the
 *             measurement; rescan/s: pages covered (scanned + skipped by
 *             smart scan) per second over at least two further full
 *             passes of unchanged memory after converging (full speed
 *             only), and the same per CPU-second of the merger (the
 *             rescan target is judged on this one: the wall-clock rate
 *             is capped by the pass period, see print_rescan_target).
 *   Pss       sum of Pss (smaps_rollup) of the workloads (and samepaged)
 *             before "go" and after converging, after each workload read
 *             one byte of every page (a merged page samepage never
 *             touched again is mapped by nobody and in nobody's Pss).
 *   saved     pages_sharing + ksm_zero_pages at the end (KSM: the change
 *             in the global counters; samepage: its daemon's).
 *   meta      the merger's metadata per scanned page: samepage's
 *             meta_bytes / ksm_rmap_items, the most seen (sampled every
 *             20 ms over the rescans after converging and once more at
 *             the end: it rises in a pass that fills the unstable tree
 *             and falls when smart scan skips those pages); KSM's
 *             rmap_items (the workloads' /proc/PID/ksm_stat, checked
 *             against general_profit) x 64 B plus stable nodes x 64 B.
 *   VMAs      lines of /proc/PID/maps added, summed over the workloads.
 *   verify    every workload checks every byte at exit (exit status).
 *   other-cpu CPU-s the rest of the machine used in the window
 *             (/proc/stat less the merger, the workloads and us): on a
 *             2-CPU machine, a figure near the window's length means the
 *             timings above are not to be trusted.
 * plus ratios samepage/KSM per figure, the floor (XXH3 over the same
 * bytes, one thread, pages/s), and for the headline workload a CSV of
 * pages merged over time and an SVG plot of it.
 *
 * Workloads:
 *   a  headline: N x M MiB (2 x 512), half identical across processes
 *   b  zero-filled, N x S MiB (2 x 32)
 *   c  volatile, N x S MiB rewritten continuously: must merge nothing;
 *      the window is three full passes and at least 2 s
 *   d  size sweep, one process, half of it a copy of the other half
 *      (256 MiB .. 4 GiB); full speed only unless --sweep-defaults
 *   e  scattered: N x S MiB unique pages, every 8th identical across
 *      processes
 *   g  a late start: N+1 x L MiB (3 x 256), half identical across
 *      processes; N start together and merge, then the last one starts
 *      and the clock (converge, CPU, scan/s) starts with it: how soon a
 *      new worker of a pool shares what the others already share (the
 *      others' pages stay merged: expected figures count them too, and
 *      Pss and saved cover the whole run).  Full speed only.
 *
 * Kernel KSM needs root and /sys/kernel/mm/ksm; without them its half is
 * skipped and samepage's figures are still reported.  Every KSM knob
 * changed is restored at exit, also on SIGINT/SIGTERM/SIGHUP or error;
 * run is 0 outside a KSM measurement.  Children (workloads, samepaged)
 * are killed at exit.  The knobs are global: other processes registered
 * with KSM are reported (their pages count in ksmd's figures), and a
 * lock file (KSM_LOCK, flock) keeps two cooperating drivers of the knobs
 * from running at once.
 *
 * usage: ksm_compare [--only abcdeg] [--modes ksm-def,ksm-full,sp-def,sp-full]
 *                    [--procs N] [--mib M] [--size S] [--sweep M,M,...]
 *                    [--sweep-defaults] [--timeout-def SEC]
 *                    [--timeout-full SEC] [--csv PATH] [--svg PATH]
 *                    [--samepage PATH] [--workload PATH] [-v]
 * -v prints the pids of the workloads, samepaged and ksmd (for perf).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "advisor.h"	/* SP_MIN_PASS_MS */
#include "cli/cli.h"	/* now_s, cpu_s */
#include "plot.h"
#include "procfs.h"
#include "proto.h"
#include "util/hash.h"
#include "workload.h"

#define PS 4096u
#define MAXP 16			/* processes per workload */
#define KSM_DIR "/sys/kernel/mm/ksm/"
#define KSM_LOCK "/run/lock/samepage-ksm-knobs.lock"
#define KSM_ITEM 64		/* sizeof(struct ksm_rmap_item) */
#define KSM_NODE 64		/* sizeof(struct ksm_stable_node) */

enum { M_KSM_DEF, M_KSM_FULL, M_SP_DEF, M_SP_FULL, M_COUNT };
static const char *const mode_name[M_COUNT] = {
	"ksm-def", "ksm-full", "sp-def", "sp-full"
};
#define IS_SP(m) ((m) >= M_SP_DEF)
#define IS_FULL(m) ((m) == M_KSM_FULL || (m) == M_SP_FULL)

/* ---- options ------------------------------------------------------------ */

static struct {
	char only[8];
	unsigned modes;		/* bit per mode */
	unsigned procs, mib, size;
	unsigned sweep[16], nsweep;
	int sweep_defaults;
	int verbose;		/* -v: pids of the processes, for perf */
	int live;		/* --live: progress while a run merges */
	double timeout_def, timeout_full;
	char csv[PATH_MAX], svg[PATH_MAX];
	char samepage[PATH_MAX], samepaged[PATH_MAX], workload[PATH_MAX];
} opt = {
	.only = "abcdeg",
	.modes = (1u << M_COUNT) - 1,
	.procs = 2, .mib = 512, .size = 32,
	.sweep = { 256, 512, 1024, 2048, 4096 }, .nsweep = 5,
	.timeout_def = 30, .timeout_full = 120,
	.svg = "build/bench/merge_over_time.svg",
};

/* ---- what must be undone at exit: children, KSM knobs ------------------- */

static pid_t kids[MAXP + 1];	/* workloads and samepaged; 0: none */
static char sockdir[64], sockpath[108];

/* The knobs we may change, their values at start ("" if unread). */
static struct knob {
	const char *name;
	char saved[64];
} knobs[] = {
	{ "advisor_mode", "" }, { "pages_to_scan", "" },
	{ "sleep_millisecs", "" }, { "use_zero_pages", "" }, { "run", "" },
};
#define NKNOBS (sizeof(knobs) / sizeof(knobs[0]))
static int ksm_ok;		/* KSM usable, knobs saved */

/* Async-signal-safe: only open/write/close/kill/unlink. */
static void write_file(const char *dir, const char *name, const char *val)
{
	char path[128];
	size_t d = strlen(dir), n = strlen(name);
	int fd;

	if (d + n + 1 > sizeof(path))
		return;
	memcpy(path, dir, d);
	memcpy(path + d, name, n + 1);
	fd = open(path, O_WRONLY);
	if (fd >= 0) {
		if (write(fd, val, strlen(val)) < 0) {
			/* nothing to do about it here */
		}
		close(fd);
	}
}

static void restore_knobs(void)
{
	if (!ksm_ok)
		return;
	/* advisor_mode first (switching it resets pages_to_scan), run last */
	for (size_t i = 0; i < NKNOBS; i++)
		if (knobs[i].saved[0])
			write_file(KSM_DIR, knobs[i].name, knobs[i].saved);
}

static void kill_kids(void)
{
	for (int i = 0; i <= MAXP; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGKILL);
}

static void cleanup(void)
{
	kill_kids();
	for (int i = 0; i <= MAXP; i++)
		if (kids[i] > 0) {
			waitpid(kids[i], NULL, 0);
			kids[i] = 0;
		}
	restore_knobs();
	if (sockpath[0])
		unlink(sockpath);
	if (sockdir[0])
		rmdir(sockdir);
}

static void on_signal(int sig)
{
	kill_kids();
	restore_knobs();
	if (sockpath[0])
		unlink(sockpath);
	if (sockdir[0])
		rmdir(sockdir);
	_exit(128 + sig);
}

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "ksm_compare: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);	/* atexit: cleanup() */
}

/* ---- clocks and KSM's knobs --------------------------------------------- */

static void nap(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

/* A counter or knob of /sys/kernel/mm/ksm, or -1. */
static int64_t ksm_get(const char *name)
{
	char path[128], buf[64];

	snprintf(path, sizeof(path), KSM_DIR "%s", name);
	if (read_str(path, buf, sizeof(buf)))
		return -1;
	return strtoll(buf, NULL, 10);
}

static void ksm_set(const char *name, const char *val)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), KSM_DIR "%s", name);
	fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, val, strlen(val)) != (ssize_t)strlen(val))
		die("writing %s to %s: %s", val, path, strerror(errno));
	close(fd);
}

/* ---- workloads ---------------------------------------------------------- */

struct wl {
	char letter;
	char name[40];
	unsigned procs;
	struct wl_spec spec;
	unsigned modes;
	double timeout_def;		/* 0: opt.timeout_def */
	int late;			/* the last process starts once the
					 * others converged (g) */
	/* derived from the recipe (expect()) */
	uint64_t exp_merged;		/* pages that end mapping a stable page */
	uint64_t exp_saved;		/* frames saved (pages_sharing) */
	uint8_t *must[MAXP];		/* bit per page: must merge */
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Which pages must merge, from the keys of all processes: a key that
 * occurs c >= 2 times gives c merged pages on ceil(c / mps) stable pages
 * (max_page_sharing @mps). */
static void expect(struct wl *w, unsigned mps)
{
	struct wl_layout l;
	uint64_t n = 0, total = w->spec.pages * w->procs, *keys;

	if (wl_layout(&w->spec, &l))
		die("%s: sections do not fit", w->name);
	keys = malloc(total * sizeof(*keys));
	if (!keys)
		die("out of memory");
	for (unsigned p = 0; p < w->procs; p++)
		for (uint64_t i = 0; i < w->spec.pages; i++) {
			int vol;
			uint64_t k = wl_key(&w->spec, &l, p, i, &vol);

			if (!vol)
				keys[n++] = k;
		}
	qsort(keys, n, sizeof(*keys), cmp_u64);
	w->exp_merged = w->exp_saved = 0;
	for (uint64_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && keys[j] == keys[i]; j++)
			;
		if (j - i >= 2) {
			w->exp_merged += j - i;
			w->exp_saved += (j - i) - (j - i + mps - 1) / mps;
		}
	}
	for (unsigned p = 0; p < w->procs; p++) {
		w->must[p] = calloc((w->spec.pages + 7) / 8, 1);
		if (!w->must[p])
			die("out of memory");
		for (uint64_t i = 0; i < w->spec.pages; i++) {
			int vol;
			uint64_t k = wl_key(&w->spec, &l, p, i, &vol);
			uint64_t *at;

			if (vol)
				continue;
			/* one of the run of equal keys: a neighbour tells
			 * whether there are two */
			at = bsearch(&k, keys, n, sizeof(*keys), cmp_u64);
			if ((at > keys && at[-1] == k) ||
			    (at + 1 < keys + n && at[1] == k))
				w->must[p][i / 8] |= (uint8_t)(1u << (i % 8));
		}
	}
	free(keys);
}

/* The workload's command-line arguments for process @p. */
static int wl_args(const struct wl *w, unsigned p, char **argv, char *store,
		   size_t len)
{
	int n = 0;
	size_t used = 0;

#define ARG(...)                                                             \
	do {                                                                 \
		argv[n++] = store + used;                                    \
		used += (size_t)snprintf(store + used, len - used,           \
					 __VA_ARGS__) + 1;                   \
	} while (0)
	ARG("%s", opt.workload);
	ARG("--pages");
	ARG("%llu", (unsigned long long)w->spec.pages);
	ARG("--same");
	ARG("%.17g", w->spec.same);
	ARG("--zero");
	ARG("%.17g", w->spec.zero);
	ARG("--volatile");
	ARG("%.17g", w->spec.vol);
	ARG("--dup");
	ARG("%.17g", w->spec.dup);
	ARG("--scatter");
	ARG("%u", w->spec.scatter);
	ARG("--proc");
	ARG("%u", p);
#undef ARG
	argv[n] = NULL;
	return n;
}

/* ---- one process of a workload ------------------------------------------ */

struct kid {
	pid_t pid;
	int in, out;		/* its stdin, its stdout */
	char buf[512];
	size_t have;
	uintptr_t addr;
	uint64_t pages;
	int pagemap;
	/* The poller's memory (samepage only): pages seen mapping a stable
	 * page since the last full read, and per chunk of KNOWN_CHUNK pages
	 * how many are not (the chunks it must read again). */
	uint8_t *known;
	uint32_t *left;
	uint32_t *other;	/* per chunk: pages that need not merge,
				 * merged at its last read (not known) */
	uint64_t nknown, nknown_exp;
};

#define KNOWN_CHUNK 512

/* A line from @k within @secs seconds into @line; 0, or -1 on timeout
 * or end of stream. */
static int kid_line(struct kid *k, char *line, size_t len, double secs)
{
	double t0 = now_s();

	for (;;) {
		char *nl = memchr(k->buf, '\n', k->have);
		struct pollfd pf = { k->out, POLLIN, 0 };
		double left = secs - (now_s() - t0);
		ssize_t n;

		if (nl) {
			size_t l = (size_t)(nl - k->buf);

			snprintf(line, len, "%.*s", (int)l, k->buf);
			k->have -= l + 1;
			memmove(k->buf, nl + 1, k->have);
			return 0;
		}
		if (left <= 0 || k->have == sizeof(k->buf))
			return -1;
		if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		n = read(k->out, k->buf + k->have, sizeof(k->buf) - k->have);
		if (n <= 0)
			return -1;
		k->have += (size_t)n;
	}
}

static void kid_say(struct kid *k, const char *cmd)
{
	size_t n = strlen(cmd);

	if (write(k->in, cmd, n) != (ssize_t)n || write(k->in, "\n", 1) != 1)
		die("workload %d: cannot write '%s'", (int)k->pid, cmd);
}

static void kid_expect(struct kid *k, const char *want, double secs)
{
	char line[256];

	if (kid_line(k, line, sizeof(line), secs))
		die("workload %d: no '%s' within %.0f s", (int)k->pid, want,
		    secs);
	if (strncmp(line, want, strlen(want)))
		die("workload %d: '%s' instead of '%s'", (int)k->pid, line,
		    want);
}

static void spawn(struct kid *k, const struct wl *w, unsigned p, int mode,
		  unsigned mps, int slot)
{
	char store[1024], *wargv[32], *argv[48], line[256], mpsbuf[16];
	int to[2], from[2], n = 0;
	void *addr;

	if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	wl_args(w, p, wargv, store, sizeof(store));
	snprintf(mpsbuf, sizeof(mpsbuf), "%u", mps);
	if (IS_SP(mode)) {
		argv[n++] = opt.samepage;
		argv[n++] = "run";
		if (mode == M_SP_FULL) {
			argv[n++] = "--pages-to-scan";
			argv[n++] = "10000";
			argv[n++] = "--sleep-millisecs";
			argv[n++] = "0";
		}
		argv[n++] = "--max-page-sharing";
		argv[n++] = mpsbuf;
		argv[n++] = "--";
	}
	for (int i = 0; wargv[i]; i++)
		argv[n++] = wargv[i];
	argv[n] = NULL;
	k->pid = fork();
	if (k->pid < 0)
		die("fork: %s", strerror(errno));
	if (!k->pid) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		signal(SIGINT, SIG_DFL);
		if (IS_SP(mode))	/* our samepaged, not the user's */
			setenv("SAMEPAGE_SOCKET", sockpath, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	kids[slot] = k->pid;
	close(to[0]);
	close(from[1]);
	k->in = to[1];
	k->out = from[0];
	k->have = 0;
	/* filling 4 GiB takes a few seconds */
	if (kid_line(k, line, sizeof(line), 600) ||
	    sscanf(line, "filled %p %llu", &addr,
		   (unsigned long long *)&k->pages) != 2)
		die("workload %d did not start (%s)", (int)k->pid,
		    k->have ? k->buf : "no output");
	k->addr = (uintptr_t)addr;
	snprintf(line, sizeof(line), "/proc/%d/pagemap", (int)k->pid);
	k->pagemap = open(line, O_RDONLY | O_CLOEXEC);
	if (k->pagemap < 0)
		die("%s: %s", line, strerror(errno));
}

/* SIGTERM, then its verdict: 0 intact, 1 corrupted, -1 other failure. */
static int kid_finish(struct kid *k, int slot)
{
	int st = 0;
	double t0 = now_s();

	kill(k->pid, SIGTERM);
	while (waitpid(k->pid, &st, WNOHANG) == 0) {
		if (now_s() - t0 > 300) {
			kill(k->pid, SIGKILL);
			waitpid(k->pid, &st, 0);
			break;
		}
		nap(0.005);
	}
	kids[slot] = 0;
	close(k->in);
	close(k->out);
	close(k->pagemap);
	free(k->known);
	free(k->left);
	free(k->other);
	k->other = NULL;
	k->known = NULL;
	k->left = NULL;
	if (WIFEXITED(st) && WEXITSTATUS(st) <= 1)
		return WEXITSTATUS(st);
	return -1;
}

/*
 * Pages of @k in the merged state (mapping a stable page, or nothing
 * since merging dropped the private frame), and how many of them are
 * pages that must merge (@must); added to *@all and *@exp.  samepage
 * only: a page KSM merged is still an anonymous page.
 *
 * The poll runs while the mergers work, on the same CPUs, and reading
 * pagemap costs the kernel a page-table walk per page (KSM's progress is
 * one counter).  So it reads again only the chunks that still hold a
 * page not seen mapping a stable page; a page seen so is taken to stay
 * merged (no workload with pages to merge writes them) until the next
 * @full read, which forgets all that and reads everything: the watcher
 * confirms convergence with one.  A page with no frame counts as merged
 * (a released zero page) but is read again, since a page held
 * mid-merge has none either.
 *
 * A chunk is read again only for the pages that must merge: the others
 * (a workload's unique pages) count in *@all as they were at the last
 * read of their chunk, until the next @full read.  (Until 2026-11-24
 * workload a's unique half was read again at every poll for nothing,
 * half of the poller's cost while samepage merged.)  So a workload with
 * nothing that must merge is watched through its counters instead
 * (run_watch).
 */
static void merged_state(struct kid *k, const uint8_t *must, int full,
			 uint64_t *all, uint64_t *exp)
{
	static uint64_t pm[KNOWN_CHUNK];
	uint64_t nchunk = (k->pages + KNOWN_CHUNK - 1) / KNOWN_CHUNK;

	if (!k->known) {
		k->known = calloc((k->pages + 7) / 8, 1);
		k->left = malloc(nchunk * sizeof(*k->left));
		k->other = malloc(nchunk * sizeof(*k->other));
		if (!k->known || !k->left || !k->other)
			die("out of memory");
		full = 1;
	}
	if (full) {
		memset(k->known, 0, (k->pages + 7) / 8);
		for (uint64_t c = 0; c < nchunk; c++)
			k->left[c] = 1;
		k->nknown = k->nknown_exp = 0;
	}
	*all += k->nknown;
	*exp += k->nknown_exp;
	for (uint64_t c = 0; c < nchunk; c++) {
		uint64_t off = c * KNOWN_CHUNK, n = k->pages - off;
		ssize_t got;

		if (!k->left[c]) {
			*all += k->other[c];
			continue;
		}
		if (n > KNOWN_CHUNK)
			n = KNOWN_CHUNK;
		got = pread(k->pagemap, pm, n * 8,
			    (off_t)((k->addr / PS + off) * 8));
		if (got != (ssize_t)(n * 8))
			die("pagemap of %d: %s", (int)k->pid,
			    got < 0 ? strerror(errno) : "short read");
		k->left[c] = k->other[c] = 0;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t e = pm[i], j = off + i;
			unsigned m = must[j / 8] >> (j % 8) & 1;
			int present = e >> 63 & 1, file = e >> 61 & 1;

			if (k->known[j / 8] >> (j % 8) & 1)
				continue;
			if (!present || file) {		/* merged now */
				(*all)++;
				*exp += m;
			}
			if (present && file) {		/* and stays so */
				k->known[j / 8] |= (uint8_t)(1u << (j % 8));
				k->nknown++;
				k->nknown_exp += m;
			} else if (m) {
				k->left[c]++;
			} else if (!present) {
				k->other[c]++;
			}
		}
	}
}

/* ---- the mergers' counters ---------------------------------------------- */

struct ctr {
	double t;
	int64_t shared, sharing, scanned, skipped, full_scans, profit, zero;
	int64_t chains, rmap_items, meta_bytes;
	int64_t merging;	/* pages of the workloads mapping a stable
				 * page (ksm_merging_pages summed) */
};

/* ksm_merging_pages of the workloads: theirs only, whoever else uses
 * KSM on the machine. */
static int64_t ksm_merging(const struct kid *k, unsigned nk)
{
	int64_t sum = 0;

	for (unsigned i = 0; i < nk; i++) {
		long long v = proc_field(k[i].pid, "ksm_stat",
					 "ksm_merging_pages");

		sum += v > 0 ? v : 0;
	}
	return sum;
}

/* Other processes registered with kernel KSM (not @k): how many, and
 * the name of one in @who.  Their pages make ksmd's CPU, pages_scanned
 * and the global counters more than ours. */
static int ksm_foreign(const struct kid *k, unsigned nk, char *who,
		       size_t len)
{
	struct dirent *de;
	int n = 0;
	DIR *d = opendir("/proc");

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		pid_t pid;
		unsigned i;
		char p[300];

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		pid = (pid_t)atoi(de->d_name);
		for (i = 0; i < nk && k[i].pid != pid; i++)
			;
		if (i < nk || proc_field(pid, "ksm_stat", "ksm_rmap_items") <= 0)
			continue;
		if (!n++) {
			snprintf(p, sizeof(p), "/proc/%d/comm", (int)pid);
			if (read_str(p, who, len))
				snprintf(who, len, "?");
		}
	}
	closedir(d);
	return n;
}

static void ksm_ctr(struct ctr *c, const struct kid *k, unsigned nk)
{
	c->t = now_s();
	c->shared = ksm_get("pages_shared");
	c->sharing = ksm_get("pages_sharing");
	c->scanned = ksm_get("pages_scanned");
	c->skipped = ksm_get("pages_skipped");
	c->full_scans = ksm_get("full_scans");
	c->profit = ksm_get("general_profit");
	c->zero = ksm_get("ksm_zero_pages");
	c->chains = ksm_get("stable_node_chains");
	c->rmap_items = 0;
	for (unsigned i = 0; i < nk; i++) {
		long long r = proc_field(k[i].pid, "ksm_stat", "ksm_rmap_items");

		c->rmap_items += r > 0 ? r : 0;
	}
	c->merging = ksm_merging(k, nk);
	c->meta_bytes = 0;	/* derived from differences: see report */
}

static int sp_sock = -1;

static int sp_ctr(struct ctr *c)
{
	uint8_t buf[SPP_MAX_MSG];
	struct spp_stat_r r;
	uint32_t pid = 0;
	ssize_t n;

	if (sp_sock < 0)
		sp_sock = spp_connect(sockpath, 3000);
	if (sp_sock < 0)
		return -1;
	n = spp_call(sp_sock, SPP_STAT, 1, &pid, sizeof(pid), SPP_STAT_R, buf,
		     NULL);
	c->t = now_s();
	if (n < (ssize_t)(sizeof(struct spp_hdr) + sizeof(r)))
		return -1;
	memcpy(&r, buf + sizeof(struct spp_hdr), sizeof(r));
	c->shared = r.rep.v[SPS_PAGES_SHARED];
	c->sharing = r.rep.v[SPS_PAGES_SHARING];
	c->scanned = r.rep.v[SPS_PAGES_SCANNED];
	c->skipped = r.rep.v[SPS_PAGES_SKIPPED];
	c->full_scans = r.rep.v[SPS_FULL_SCANS];
	c->profit = r.rep.v[SPS_GENERAL_PROFIT];
	c->zero = r.rep.v[SPS_KSM_ZERO_PAGES];
	c->chains = r.rep.v[SPS_STABLE_NODE_CHAINS];
	c->rmap_items = r.rep.v[SPS_KSM_RMAP_ITEMS];
	c->meta_bytes = r.rep.v[SPS_META_BYTES];
	c->merging = r.rep.v[SPS_KSM_MERGING_PAGES];
	return 0;
}

/* A samepage snapshot taken just after a new report came in (its
 * pages_scanned moved), so that its time matches its figures; at most
 * @secs of waiting. */
static void sp_ctr_fresh(struct ctr *c, double secs)
{
	struct ctr a;
	double t0 = now_s();

	if (sp_ctr(&a))
		die("no answer from samepaged");
	for (;;) {
		if (sp_ctr(c))
			die("no answer from samepaged");
		if (c->scanned != a.scanned || now_s() - t0 > secs)
			return;
		nap(0.002);
	}
}

static pid_t start_daemon(void)
{
	pid_t pid;

	snprintf(sockpath, sizeof(sockpath), "%s/d.sock", sockdir);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (!pid) {
		int fd = open("/dev/null", O_RDWR);

		dup2(fd, 0);
		dup2(fd, 1);
		execl(opt.samepaged, "samepaged", "--socket", sockpath,
		      "--idle-exit", "60", (char *)NULL);
		_exit(127);
	}
	kids[MAXP] = pid;
	for (double t0 = now_s(); now_s() - t0 < 10; nap(0.01)) {
		int s = spp_connect(sockpath, 1000);

		if (s >= 0) {
			sp_sock = s;
			return pid;
		}
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			kids[MAXP] = 0;
			die("samepaged (%s) exited at start", opt.samepaged);
		}
	}
	die("samepaged did not start");
	return -1;
}

static void stop_daemon(pid_t pid)
{
	if (sp_sock >= 0)
		close(sp_sock);
	sp_sock = -1;
	kill(pid, SIGTERM);
	for (double t0 = now_s(); waitpid(pid, NULL, WNOHANG) == 0; nap(0.005))
		if (now_s() - t0 > 10) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			break;
		}
	kids[MAXP] = 0;
	unlink(sockpath);
}

/* ---- one measurement ---------------------------------------------------- */

struct result {
	int done;
	int converged;
	double t_conv;		/* converge time, or the window if not */
	uint64_t merged;	/* pages merged at the end of the window */
	uint64_t merged_max;	/* most seen at once (volatile) */
	int64_t saved;		/* pages_sharing + ksm_zero_pages */
	double cpu;		/* merger CPU-s over the window */
	double cpu_daemon;	/* of which samepaged's */
	int cpu_fallback;	/* no "samepage" thread: whole processes */
	double scan_rate;	/* pages_scanned / s, go .. end */
	double rescan_rate;	/* (scanned+skipped) / s after converging */
	double rescan_cpu_rate;	/* the same per CPU-second */
	double rescan_skip;	/* of which skipped by smart scan */
	double pss_saved_kb;
	double meta_per_page;	/* samepage: the most seen */
	double meta_low;	/* samepage: the least seen, 0 if not sampled */
	long vmas_added;
	int64_t rmap_items;	/* KSM: from the workloads' ksm_stat */
	int64_t profit_check;	/* KSM: rmap_items from general_profit */
	int verified;		/* 1 every workload intact */
	int foreign;		/* KSM: other processes use it too */
	int tampered;		/* KSM: knobs changed under us */
	double others;		/* CPU-s the rest of the machine used in
				 * the window (noise indicator) */
	double poller;		/* CPU-s this bench used in the window */
	double busy;		/* CPU-s the whole machine used in it */
	double t99;		/* 99% of the expected merged, or -1 */
};

/* The merger's CPU seconds so far: ksmd, or samepage's scanner threads
 * (named "samepage") plus samepaged.  whole: the workloads' whole
 * processes plus samepaged, for when no thread has the name (named
 * counts those that do). */
struct cpu {
	double merger, whole, daemon;
	int named;
};

/* One workload in one mode: its processes and what was measured at
 * "go", the baseline of every figure. */
struct run {
	struct wl *w;
	int mode;
	struct result *r;
	struct series *curve;		/* merged over time, or NULL */
	struct kid k[MAXP];
	unsigned nk;
	pid_t daemon, ksmd;		/* 0: none */
	double t0;			/* "go" */
	struct ctr c0;			/* counters at "go" (samepage: 0) */
	struct cpu cpu0;
	double wl0, busy0, self0;	/* workloads', machine's, our CPU */
	long long pss0;
	long vm0;
	char who[64];			/* another KSM user, if any */
};

static struct cpu merger_cpu(const struct run *x)
{
	struct cpu c = { 0, 0, 0, 0 };

	if (!IS_SP(x->mode)) {
		c.merger = c.whole = x->ksmd ? proc_cpu(x->ksmd, NULL, NULL) : 0;
		c.named = 1;
		return c;
	}
	for (unsigned i = 0; i < x->nk; i++) {
		c.merger += proc_cpu(x->k[i].pid, "samepage", &c.named);
		c.whole += proc_cpu(x->k[i].pid, NULL, NULL);
	}
	c.daemon = proc_cpu(x->daemon, NULL, NULL);
	c.merger += c.daemon;
	c.whole += c.daemon;
	return c;
}

/* CPU seconds between @a and @b; *@fallback set if whole processes had
 * to stand in for the scanner threads. */
static double cpu_between(struct cpu a, struct cpu b, int *fallback)
{
	if (b.named)
		return b.merger - a.merger;
	*fallback = 1;
	return b.whole - a.whole;
}

/* CPU seconds of the workloads' whole processes. */
static double workloads_cpu(const struct run *x)
{
	double s = 0;

	for (unsigned i = 0; i < x->nk; i++)
		s += proc_cpu(x->k[i].pid, NULL, NULL);
	return s;
}

/* Pss of the workloads and samepaged, kB. */
static long long pss_sum(const struct run *x)
{
	long long s = 0, v;

	for (unsigned i = 0; i < x->nk; i++) {
		v = proc_field(x->k[i].pid, "smaps_rollup", "Pss");
		if (opt.verbose)
			fprintf(stderr, "[Pss %d: %lld kB] ", (int)x->k[i].pid, v);
		s += v;
	}
	if (x->daemon) {
		v = proc_field(x->daemon, "smaps_rollup", "Pss");
		if (opt.verbose)
			fprintf(stderr, "[Pss samepaged: %lld kB] ", v);
		s += v;
	}
	return s;
}

static long vmas_sum(const struct run *x)
{
	long s = 0;

	for (unsigned i = 0; i < x->nk; i++)
		s += count_lines(x->k[i].pid, "maps");
	return s;
}

/* Pages of the first @nk workloads merged now: *@all, and *@exp of them
 * expected to (samepage: from pagemap, re-read whole if @full; KSM:
 * ksm_merging_pages, both the same). */
static void count_merged(struct run *x, unsigned nk, int full,
			 uint64_t *all, uint64_t *exp)
{
	*all = *exp = 0;
	if (!IS_SP(x->mode)) {
		*all = *exp = (uint64_t)ksm_merging(x->k, nk);
		return;
	}
	for (unsigned i = 0; i < nk; i++)
		merged_state(&x->k[i], x->w->must[i], full, all, exp);
}

/* Workload g: wait until the processes already started merged what
 * they must, then start the clock, the CPU count and pages_scanned
 * anew and say "go" to the last one. */
static void run_late(struct run *x)
{
	unsigned nk = x->nk - 1;
	uint64_t exp = 0, want = 0;
	double t = now_s();
	struct ctr c;

	for (unsigned i = 0; i < nk; i++)
		for (uint64_t j = 0; j < x->w->spec.pages; j++)
			want += x->w->must[i][j / 8] >> (j % 8) & 1;
	for (int confirm = 0;; nap(0.01)) {
		uint64_t all;

		count_merged(x, nk, confirm, &all, &exp);
		if (exp >= want && (confirm++ || !IS_SP(x->mode)))
			break;
		if (exp < want)
			confirm = 0;
		if (now_s() - t > 120)
			die("%s: the first %u processes did not converge",
			    x->w->name, nk);
	}
	if (IS_SP(x->mode)) {
		if (sp_ctr(&c))
			die("no answer from samepaged");
	} else {
		ksm_ctr(&c, x->k, 0);
	}
	x->c0.scanned = c.scanned;
	x->c0.full_scans = c.full_scans;
	x->cpu0 = merger_cpu(x);
	x->wl0 = workloads_cpu(x);
	x->busy0 = machine_busy();
	x->self0 = cpu_s();
	x->t0 = now_s();
	kid_say(&x->k[nk], "go");
}

/* Set the merger up, start the workloads, take the baselines, "go". */
static void run_start(struct run *x, unsigned mps)
{
	if (ksm_ok)
		ksm_set("run", "0");
	if (IS_SP(x->mode)) {
		x->daemon = start_daemon();
	} else {
		ksm_set("pages_to_scan", IS_FULL(x->mode) ? "10000" : "100");
		ksm_set("sleep_millisecs", IS_FULL(x->mode) ? "0" : "20");
		x->ksmd = find_comm("ksmd");
		if (!x->ksmd)
			fprintf(stderr, "ksm_compare: no ksmd thread found: "
					"its CPU reads 0\n");
	}
	for (unsigned i = 0; i < x->nk; i++)
		spawn(&x->k[i], x->w, i, x->mode, mps, (int)i);
	if (opt.verbose) {
		fprintf(stderr, "[pids:");
		for (unsigned i = 0; i < x->nk; i++)
			fprintf(stderr, " %d", (int)x->k[i].pid);
		if (x->daemon)
			fprintf(stderr, " samepaged %d", (int)x->daemon);
		if (x->ksmd)
			fprintf(stderr, " ksmd %d", (int)x->ksmd);
		fprintf(stderr, "] ");
	}

	x->pss0 = pss_sum(x);
	x->vm0 = vmas_sum(x);
	memset(&x->c0, 0, sizeof(x->c0));
	if (!IS_SP(x->mode)) {
		ksm_ctr(&x->c0, x->k, 0);
		x->r->foreign = ksm_foreign(x->k, x->nk, x->who, sizeof(x->who));
		/* pages of processes gone but not yet dropped by ksmd count
		 * in the global counters as well */
		if (!x->r->foreign && (x->c0.shared || x->c0.sharing ||
				       x->c0.profit)) {
			x->r->foreign = 1;
			snprintf(x->who, sizeof(x->who), "exited processes");
		}
	}
	x->cpu0 = merger_cpu(x);
	x->wl0 = workloads_cpu(x);
	x->busy0 = machine_busy();
	x->self0 = cpu_s();
	if (!IS_SP(x->mode))
		ksm_set("run", "1");
	x->t0 = x->c0.t = now_s();
	for (unsigned i = 0; i < x->nk - (x->w->late ? 1 : 0); i++)
		kid_say(&x->k[i], "go");
	if (x->w->late)
		run_late(x);
}

/* KSM's knobs still as we set them? */
static int ksm_knobs_ours(int mode)
{
	return ksm_get("run") == 1 &&
	       ksm_get("pages_to_scan") == (IS_FULL(mode) ? 10000 : 100) &&
	       ksm_get("sleep_millisecs") == (IS_FULL(mode) ? 0 : 20);
}

/* MiB saved from @before_kb to @after_kb as the two print with "%.0f"
 * (rint rounds as printf does), so that before - after = saved holds in
 * what is printed. */
static double mib_saved(double before_kb, double after_kb)
{
	return rint(before_kb / 1024) - rint(after_kb / 1024);
}

/* --live: one progress line (pages merged, Pss now) every half second
 * on a terminal, rewritten in place; every 2 s as new lines otherwise. */
static void live_line(const struct run *x, double t, uint64_t merged,
		      int last)
{
	static double shown;
	static int tty = -1;
	const struct wl *w = x->w;
	long long pss;

	if (tty < 0)
		tty = isatty(STDOUT_FILENO);
	if (!opt.live || (!last && t - shown < (tty ? 0.5 : 2.0)))
		return;
	shown = t;
	pss = pss_sum(x);
	printf("%s    %5.1f s  merged %7llu", tty ? "\r" : "", t - x->t0,
	       (unsigned long long)merged);
	if (w->exp_merged)
		printf(" / %llu pages (%3.0f%%)",
		       (unsigned long long)w->exp_merged,
		       100.0 * (double)merged / (double)w->exp_merged);
	printf("  Pss %.0f -> %.0f MiB (saved %.0f MiB)   %s",
	       (double)x->pss0 / 1024, (double)pss / 1024,
	       mib_saved((double)x->pss0, (double)pss),
	       tty && !last ? "" : "\n");
	fflush(stdout);
}

/* CPU used up to one moment: the merger's, the machine's, ours and the
 * workloads' (the end of a run's window). */
struct until {
	struct cpu c;
	double busy, self, wl;
};

static void until_now(const struct run *x, struct until *u)
{
	u->c = merger_cpu(x);
	u->busy = machine_busy();
	u->self = cpu_s();
	u->wl = IS_SP(x->mode) ? 0 : workloads_cpu(x);
}

/* Until every page that must merge did, or the timeout; a workload with
 * nothing to merge (volatile) is watched for three passes and 2 s.
 * Then the merger's and the machine's CPU over that window. */
static void run_watch(struct run *x)
{
	struct result *r = x->r;
	const struct wl *w = x->w;
	double timeout = IS_FULL(x->mode) ? opt.timeout_full
			 : w->timeout_def ? w->timeout_def : opt.timeout_def;
	double pm_cost = 0, t_first = -1;
	uint64_t merged = 0;
	/* The CPU at the converge time: samepage's converge is confirmed
	 * one sample later, whose CPU (the next pass, at full speed) is
	 * not part of converging; KSM's is read at once. */
	struct until at_first, end;
	struct ctr c;
	int fb = 0;

	r->t99 = -1;
	for (;;) {
		double t = now_s();
		uint64_t exp;
		int done = 0;

		/* samepage with nothing to merge: its counters say what
		 * merged (below); pagemap would cost a tenth of a CPU */
		exp = 0;
		if (!IS_SP(x->mode) || w->exp_merged)
			count_merged(x, x->nk, t_first >= 0, &merged, &exp);
		if (IS_SP(x->mode))
			pm_cost = now_s() - t;
		else if (!ksm_knobs_ours(x->mode))
			r->tampered = 1;
		if (x->curve && series_add(x->curve, t - x->t0, merged))
			die("out of memory");
		live_line(x, t, merged, 0);
		if (r->t99 < 0 && w->exp_merged && exp * 100 >= w->exp_merged * 99)
			r->t99 = t - x->t0;
		if (w->exp_merged && exp >= w->exp_merged) {
			/* samepage: a page held mid-merge also shows no
			 * frame, so a second look confirms */
			if (!IS_SP(x->mode) || t_first >= 0)
				done = 1;
			if (t_first < 0) {
				t_first = t;
				until_now(x, &at_first);
			}
		} else {
			t_first = -1;
		}
		if (!w->exp_merged) {
			/* samepage: a page held for a merge attempt has no
			 * frame either, so its counters say what merged */
			if (IS_SP(x->mode)) {
				if (sp_ctr(&c))
					die("no answer from samepaged");
				merged = (uint64_t)c.merging;
			} else {
				c.full_scans = ksm_get("full_scans");
			}
			done = c.full_scans - x->c0.full_scans >= 3 &&
			       t - x->t0 >= 2;
		}
		if (merged > r->merged_max)
			r->merged_max = merged;
		if (done) {
			r->converged = 1;
			r->t_conv = (w->exp_merged ? t_first : t) - x->t0;
			break;
		}
		if (t - x->t0 > timeout) {
			r->t_conv = t - x->t0;
			/* what merged, from a full read (between full
			 * reads, pages that need not merge are counted as
			 * their chunk last showed them) */
			if (IS_SP(x->mode) && w->exp_merged)
				count_merged(x, x->nk, 1, &merged, &exp);
			break;
		}
		for (unsigned i = 0; i < x->nk; i++) {
			int st;

			if (waitpid(x->k[i].pid, &st, WNOHANG) == x->k[i].pid) {
				kids[i] = 0;
				die("workload %d died during the run (%#x)",
				    (int)x->k[i].pid, st);
			}
		}
		/* The poller takes at most a third of a CPU, and times the
		 * converge to about 1% of it: the default-speed runs, which
		 * take tens of seconds, took a third of a CPU for it too
		 * (9.9 CPU-s in 30 s on workload a). */
		nap(fmax(fmax(pm_cost * 2, 0.005), (now_s() - x->t0) / 100));
	}
	r->merged = merged;
	live_line(x, now_s(), merged, 1);
	if (r->converged && w->exp_merged && t_first >= 0)
		end = at_first;
	else
		until_now(x, &end);
	r->cpu = cpu_between(x->cpu0, end.c, &fb);
	r->cpu_fallback |= fb;
	r->cpu_daemon = end.c.daemon - x->cpu0.daemon;
	/* the rest of the machine: busy time less the merger, the
	 * workloads and us */
	r->others = end.busy - x->busy0 -
		    (IS_SP(x->mode) ? end.c.whole - x->cpu0.whole
				    : end.c.merger - x->cpu0.merger +
				      end.wl - x->wl0) -
		    (end.self - x->self0);
	r->poller = end.self - x->self0;
	r->busy = end.busy - x->busy0;
	for (unsigned i = 0; i < x->nk; i++)
		kid_expect(&x->k[i], "ready", 60);
}

static void snapshot(const struct run *x, struct ctr *c)
{
	if (IS_SP(x->mode))
		sp_ctr_fresh(c, 1);
	else
		ksm_ctr(c, x->k, x->nk);
}

/* samepage's metadata per page in @c: into the most and least seen. */
static void meta_sample(struct result *r, const struct ctr *c)
{
	double m;

	if (!c->rmap_items)
		return;
	m = (double)c->meta_bytes / (double)c->rmap_items;
	if (m > r->meta_per_page)
		r->meta_per_page = m;
	if (!r->meta_low || m < r->meta_low)
		r->meta_low = m;
}

/* Rescans of unchanged memory at full speed after converging: at least
 * two passes and 3 s.  *@c: the counters at the end. */
static void run_rescan(struct run *x, struct ctr *c)
{
	struct result *r = x->r;
	struct ctr a, b;
	struct cpu ca;
	double cpu;
	int64_t covered;
	int fb = 0;

	snapshot(x, c);
	if (!IS_FULL(x->mode) || !r->converged || !x->w->exp_merged)
		return;
	a = *c;
	ca = merger_cpu(x);
	for (;;) {
		nap(0.02);
		if (IS_SP(x->mode)) {
			if (sp_ctr(&b))
				die("no answer from samepaged");
			meta_sample(r, &b);
		} else {
			b.full_scans = ksm_get("full_scans");
		}
		if ((b.full_scans - a.full_scans >= 2 && now_s() - a.t >= 3) ||
		    now_s() - a.t > 60)
			break;
	}
	snapshot(x, &b);
	cpu = cpu_between(ca, merger_cpu(x), &fb);
	r->cpu_fallback |= fb;
	covered = b.scanned + b.skipped - a.scanned - a.skipped;
	r->rescan_rate = (double)covered / (b.t - a.t);
	if (covered > 0)
		r->rescan_skip = (double)(b.skipped - a.skipped) / (double)covered;
	r->rescan_cpu_rate = cpu > 0 ? (double)covered / cpu : 0;
	*c = b;
}

/* Every page read once, then Pss, VMAs, saved pages and metadata; @c1:
 * the latest counters. */
static void run_memory(struct run *x, struct ctr *c1)
{
	struct result *r = x->r;
	const struct wl *w = x->w;
	const struct ctr *c0 = &x->c0;

	r->scan_rate = (double)(c1->scanned - c0->scanned) / (c1->t - x->t0);
	for (unsigned i = 0; i < x->nk; i++)
		kid_say(&x->k[i], "touch");
	for (unsigned i = 0; i < x->nk; i++)
		kid_expect(&x->k[i], "touched", 120);
	r->pss_saved_kb = (double)(x->pss0 - pss_sum(x));
	r->vmas_added = vmas_sum(x) - x->vm0;
	if (IS_SP(x->mode)) {
		sp_ctr_fresh(c1, 1);
		r->saved = c1->sharing + c1->zero;
		meta_sample(r, c1);
		return;
	}
	ksm_ctr(c1, x->k, x->nk);
	int64_t sharing = c1->sharing - c0->sharing, zero = c1->zero - c0->zero;
	int64_t nodes = c1->shared - c0->shared + c1->chains - c0->chains;

	r->saved = sharing + zero;
	r->rmap_items = c1->rmap_items;
	/* general_profit = (sharing + zero) x 4096 - rmap_items x 64 */
	r->profit_check = ((sharing + zero) * 4096 - (c1->profit - c0->profit)) /
			  KSM_ITEM;
	if (!r->foreign)
		r->foreign = ksm_foreign(x->k, x->nk, x->who, sizeof(x->who));
	if (r->foreign) {
		/* the global counters hold others' pages too: our stable
		 * pages, from our merged pages as the recipe packs them */
		nodes = w->exp_merged ?
			(int64_t)((double)c1->merging *
				  (double)(w->exp_merged - w->exp_saved) /
				  (double)w->exp_merged + 0.5) : 0;
		r->saved = w->exp_merged ? c1->merging - nodes : 0;
	}
	r->meta_per_page = c1->rmap_items ?
		(double)(c1->rmap_items * KSM_ITEM + nodes * KSM_NODE) /
		(double)c1->rmap_items : 0;
}

/* Each workload checks its bytes and exits; the merger is put back. */
static void run_stop(struct run *x)
{
	x->r->verified = 1;
	for (unsigned i = 0; i < x->nk; i++)
		if (kid_finish(&x->k[i], (int)i) != 0)
			x->r->verified = 0;
	if (IS_SP(x->mode)) {
		stop_daemon(x->daemon);
		return;
	}
	/* ksmd drops the exited processes' items when it next visits them:
	 * within two passes (over others' memory too, if any) */
	int64_t fs = ksm_get("full_scans");

	ksm_set("pages_to_scan", "10000");
	ksm_set("sleep_millisecs", "0");
	for (double t = now_s(); now_s() - t < 30; nap(0.01))
		if ((ksm_get("pages_shared") + ksm_get("pages_sharing") +
		     ksm_get("pages_unshared") == 0 &&
		     ksm_get("general_profit") == 0) ||
		    ksm_get("full_scans") >= fs + 2)
			break;
	ksm_set("run", "0");
}

static void run_say(const struct run *x, double t_run)
{
	const struct result *r = x->r;
	const struct wl *w = x->w;

	if (opt.live)
		printf("    Pss of the %u processes%s: %.0f MiB before, %.0f MiB "
		       "after (every page touched again): %.0f MiB saved\n    ",
		       x->nk, IS_SP(x->mode) ? " and samepaged" : "",
		       (double)x->pss0 / 1024,
		       (double)(x->pss0 - r->pss_saved_kb) / 1024,
		       mib_saved((double)x->pss0,
				 x->pss0 - r->pss_saved_kb));
	if (r->foreign)
		printf("[%d other KSM user%s, e.g. %s] ", r->foreign,
		       r->foreign > 1 ? "s" : "", x->who);
	if (r->tampered)
		printf("[KNOBS CHANGED by another process during the run: "
		       "figures not valid] ");
	if (r->converged && w->exp_merged)
		printf("converged in %.2f s (99%% in %.2f s)", r->t_conv, r->t99);
	else if (w->exp_merged)
		printf("did not converge in %.0f s, merged %llu of %llu",
		       r->t_conv, (unsigned long long)r->merged,
		       (unsigned long long)w->exp_merged);
	else
		printf("watched %.2f s (3 passes%s), merged at most %llu, "
		       "merger busy %.0f%% of a CPU", r->t_conv,
		       r->converged ? "" : " not reached",
		       (unsigned long long)r->merged_max,
		       100 * r->cpu / r->t_conv);
	if (!IS_SP(x->mode))
		printf("; rmap_items %lld (from general_profit: %lld)",
		       (long long)r->rmap_items, (long long)r->profit_check);
	else
		printf("; CPU %.2f s, of which samepaged %.2f s", r->cpu,
		       r->cpu_daemon);
	printf("; bench %.2f, others %.1f CPU-s [%.0f s in all]%s\n",
	       r->poller, r->others, now_s() - t_run,
	       r->verified ? "" : "  MEMORY CORRUPTED");
}

static void run_one(struct wl *w, int mode, struct result *r,
		    struct series *curve, unsigned mps)
{
	static struct run x;	/* MAXP kids with buffers: not on the stack */
	double t_run = now_s();
	struct ctr c1;

	memset(&x, 0, sizeof(x));
	memset(r, 0, sizeof(*r));
	x.w = w;
	x.mode = mode;
	x.r = r;
	x.curve = curve;
	x.nk = w->procs;
	printf("  %-14s %-8s %s", w->name, mode_name[mode],
	       opt.live ? "\n" : "");
	fflush(stdout);
	run_start(&x, mps);
	run_watch(&x);
	run_rescan(&x, &c1);
	run_memory(&x, &c1);
	run_stop(&x);
	r->done = 1;
	run_say(&x, t_run);
}

/* ---- the floor ---------------------------------------------------------- */

/* XXH3 (as the engine uses it) over @pages pages of process 0 of @w,
 * from one thread: pages per second, best of three. */
static double floor_rate(const struct wl *w)
{
	struct wl_layout l;
	uint64_t n = w->spec.pages;
	char *p = mmap(NULL, n * PS, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	volatile uint64_t sink = 0;
	double best = 0;

	if (p == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	wl_layout(&w->spec, &l);
	for (uint64_t i = 0; i < n; i++) {
		int vol;

		wl_fill(p + i * PS, wl_key(&w->spec, &l, 0, i, &vol));
	}
	for (int r = 0; r < 3; r++) {
		double t = now_s(), rate;

		for (uint64_t i = 0; i < n; i++)
			sink += sp_hash_page(p + i * PS);
		rate = (double)n / (now_s() - t);
		if (rate > best)
			best = rate;
	}
	(void)sink;
	munmap(p, n * PS);
	return best;
}

/* ---- output ------------------------------------------------------------- */

static void fmt_rate(char *b, size_t n, double v)
{
	if (v <= 0)
		snprintf(b, n, "-");
	else if (v >= 1e6)
		snprintf(b, n, "%.2fM", v / 1e6);
	else
		snprintf(b, n, "%.0fk", v / 1e3);
}

static void print_row(const struct wl *w, int m, const struct result *r)
{
	char conv[32], sc[16], rs[16], rc[16], sk[16] = "-";

	if (!r->done)
		return;
	if (!w->exp_merged)
		snprintf(conv, sizeof(conv), "(%.1fs)", r->t_conv);
	else if (r->converged)
		snprintf(conv, sizeof(conv), "%.2fs", r->t_conv);
	else
		snprintf(conv, sizeof(conv), ">%.0fs", r->t_conv);
	if (r->tampered)
		snprintf(conv, sizeof(conv), "knobs?");
	fmt_rate(sc, sizeof(sc), r->scan_rate);
	fmt_rate(rs, sizeof(rs), r->rescan_rate);
	fmt_rate(rc, sizeof(rc), r->rescan_cpu_rate);
	if (r->rescan_rate > 0)
		snprintf(sk, sizeof(sk), "%.0f%%", r->rescan_skip * 100);
	printf("%-14s %-8s %8s %8llu/%-8llu %8lld%s %7.2f%s %7s %7s %7s %5s "
	       "%7.1f/%-7.1f %6.1f%s %6ld %-5s %5.1f\n",
	       w->name, mode_name[m], conv,
	       (unsigned long long)(w->exp_merged ? r->merged : r->merged_max),
	       (unsigned long long)w->exp_merged, (long long)r->saved,
	       r->foreign ? "!" : " ",
	       r->cpu, r->cpu_fallback ? "*" : r->foreign ? "!" : " ", sc, rs,
	       rc, sk,
	       r->pss_saved_kb / 1024, (double)w->exp_saved * PS / 1048576,
	       r->meta_per_page, r->foreign ? "!" : " ", r->vmas_added,
	       r->verified ? "ok" : "BAD",
	       r->others);
}

static void ratio(const char *what, double sp, double ksm, int ok)
{
	if (ok && ksm > 0 && sp >= 0)
		printf("  %s %.3g", what, sp / ksm);
	else
		printf("  %s -", what);
}

static void print_ratios(const struct wl *w, const struct result *res)
{
	for (int full = 1; full >= 0; full--) {
		const struct result *s = &res[full ? M_SP_FULL : M_SP_DEF];
		const struct result *k = &res[full ? M_KSM_FULL : M_KSM_DEF];

		if (!s->done || !k->done || k->tampered)
			continue;
		printf("%-14s %-8s", w->name, full ? "full" : "default");
		ratio("converge", s->t_conv, k->t_conv,
		      w->exp_merged && s->converged && k->converged);
		ratio("cpu", s->cpu, k->cpu, 1);
		ratio("scan/s", s->scan_rate, k->scan_rate, 1);
		ratio("rescan/s", s->rescan_rate, k->rescan_rate,
		      s->rescan_rate > 0);
		ratio("Pss-saved", s->pss_saved_kb, k->pss_saved_kb,
		      w->exp_saved > 0);
		ratio("meta/page", s->meta_per_page, k->meta_per_page, 1);
		printf("  VMAs %+ld vs %+ld\n", s->vmas_added, k->vmas_added);
	}
}

/* ---- the plot ----------------------------------------------------------- */

static void write_plot(const struct wl *w, struct series *curves)
{
	const struct plot_panel panels[2] = {
		{ "full speed (10000 pages, 0 ms)", &curves[M_KSM_FULL],
		  &curves[M_SP_FULL] },
		{ "defaults (100 pages, 20 ms)", &curves[M_KSM_DEF],
		  &curves[M_SP_DEF] },
	};
	char dir[PATH_MAX], title[128], *slash;
	int err;

	snprintf(dir, sizeof(dir), "%s", opt.svg);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = 0;
		mkdir(dir, 0755);	/* build/bench exists; a new one may not */
	}
	if (!opt.csv[0]) {
		size_t n = strlen(opt.svg);

		if (n > 4 && !strcmp(opt.svg + n - 4, ".svg"))
			n -= 4;
		snprintf(opt.csv, sizeof(opt.csv), "%.*s.csv", (int)n, opt.svg);
	}
	err = plot_csv(opt.csv, mode_name, curves, M_COUNT);
	if (err)
		die("%s: %s", opt.csv, strerror(-err));
	snprintf(title, sizeof(title), "%s: pages merged (mapping a stable "
		 "page) over time", w->name);
	err = plot_svg(opt.svg, title, panels, 2, w->exp_merged);
	if (err)
		die("%s: %s", opt.svg, strerror(-err));
	printf("\nwrote %s and %s\n", opt.csv, opt.svg);
}

/* ---- main --------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: ksm_compare [--only abcdeg] "
		"[--modes ksm-def,ksm-full,sp-def,sp-full]\n"
		"                   [--procs N] [--mib M] [--size S] "
		"[--sweep M,M,...] [--sweep-defaults]\n"
		"                   [--timeout-def SEC] [--timeout-full SEC] "
		"[--csv PATH] [--svg PATH]\n"
		"                   [--samepage PATH] [--workload PATH] [--live] "
		"[-v]\n");
	exit(2);
}

static unsigned uarg(const char *o, const char *v, unsigned lo, unsigned hi)
{
	char *end;
	unsigned long x = strtoul(v ? v : "", &end, 10);

	if (!v || end == v || *end || x < lo || x > hi) {
		fprintf(stderr, "ksm_compare: bad value for %s\n", o);
		usage();
	}
	return (unsigned)x;
}

static void parse(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(o, "--sweep-defaults")) {
			opt.sweep_defaults = 1;
			continue;
		}
		if (!strcmp(o, "-v")) {
			opt.verbose = 1;
			continue;
		}
		if (!strcmp(o, "--live")) {
			opt.live = 1;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(o, "--only")) {
			if (strlen(v) >= sizeof(opt.only) ||
			    strspn(v, "abcdeg") != strlen(v))
				usage();
			strcpy(opt.only, v);
		} else if (!strcmp(o, "--modes")) {
			char tmp[128], *tok, *save;

			snprintf(tmp, sizeof(tmp), "%s", v);
			opt.modes = 0;
			for (tok = strtok_r(tmp, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				int m;

				for (m = 0; m < M_COUNT; m++)
					if (!strcmp(tok, mode_name[m]))
						break;
				if (m == M_COUNT)
					usage();
				opt.modes |= 1u << m;
			}
		} else if (!strcmp(o, "--procs")) {
			opt.procs = uarg(o, v, 1, MAXP);
		} else if (!strcmp(o, "--mib")) {
			opt.mib = uarg(o, v, 1, 1 << 20);
		} else if (!strcmp(o, "--size")) {
			opt.size = uarg(o, v, 1, 1 << 20);
		} else if (!strcmp(o, "--sweep")) {
			char tmp[256], *tok, *save;

			snprintf(tmp, sizeof(tmp), "%s", v);
			opt.nsweep = 0;
			for (tok = strtok_r(tmp, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				if (opt.nsweep == 16)
					usage();
				opt.sweep[opt.nsweep++] =
					uarg(o, tok, 1, 1 << 20);
			}
		} else if (!strcmp(o, "--timeout-def")) {
			opt.timeout_def = uarg(o, v, 1, 100000);
		} else if (!strcmp(o, "--timeout-full")) {
			opt.timeout_full = uarg(o, v, 1, 100000);
		} else if (!strcmp(o, "--csv")) {
			snprintf(opt.csv, sizeof(opt.csv), "%s", v);
		} else if (!strcmp(o, "--svg")) {
			snprintf(opt.svg, sizeof(opt.svg), "%s", v);
		} else if (!strcmp(o, "--samepage")) {
			snprintf(opt.samepage, sizeof(opt.samepage), "%s", v);
		} else if (!strcmp(o, "--workload")) {
			snprintf(opt.workload, sizeof(opt.workload), "%s", v);
		} else {
			usage();
		}
	}
}

/* Default paths: workload next to us, samepage and samepaged one up. */
static void find_tools(void)
{
	char exe[PATH_MAX - 64], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n < 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	exe[n] = 0;
	slash = strrchr(exe, '/');
	if (slash)
		*slash = 0;
	if (!opt.workload[0])
		snprintf(opt.workload, sizeof(opt.workload), "%s/workload", exe);
	if (!opt.samepage[0])
		snprintf(opt.samepage, sizeof(opt.samepage), "%s/../samepage",
			 exe);
	snprintf(opt.samepaged, sizeof(opt.samepaged), "%s", opt.samepage);
	slash = strrchr(opt.samepaged, '/');
	snprintf(slash ? slash + 1 : opt.samepaged,
		 sizeof(opt.samepaged) - (size_t)(slash ? slash + 1 - opt.samepaged
							: 0), "samepaged");
	if (access(opt.workload, X_OK))
		die("%s: %s", opt.workload, strerror(errno));
}

/* Save the knobs we may change; 0, or -1 (with a message) if KSM cannot
 * be used here.  The knobs are the machine's: another program driving
 * them meanwhile (scripts/qemu/guests.sh does) spoils both runs, so we
 * hold KSM_LOCK (flock) from here to exit, waiting for it if need be. */
static int ksm_setup(void)
{
	char path[128], buf[64], who[64];
	int fd, n;

	if (geteuid() != 0) {
		printf("kernel KSM: skipped (needs root to set its knobs)\n");
		return -1;
	}
	if (access(KSM_DIR "run", W_OK)) {
		printf("kernel KSM: skipped (%s: %s)\n", KSM_DIR "run",
		       strerror(errno));
		return -1;
	}
	fd = open(KSM_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB)) {
		printf("kernel KSM: waiting for %s (another run drives the "
		       "knobs)\n", KSM_LOCK);
		flock(fd, LOCK_EX);
	}
	n = ksm_foreign(NULL, 0, who, sizeof(who));
	if (n)
		printf("kernel KSM: %d other process%s registered with KSM "
		       "(e.g. %s): ksmd's CPU, pages_scanned and the global "
		       "counters will include theirs\n", n, n > 1 ? "es" : "",
		       who);
	for (size_t i = 0; i < NKNOBS; i++) {
		snprintf(path, sizeof(path), KSM_DIR "%s", knobs[i].name);
		if (read_str(path, buf, sizeof(buf)))
			continue;	/* an older kernel: leave it */
		if (!strcmp(knobs[i].name, "advisor_mode")) {
			/* "[none] scan-time": the one in brackets */
			char *a = strchr(buf, '['), *b = a ? strchr(a, ']') : NULL;

			if (!a || !b)
				continue;
			*b = 0;
			memmove(buf, a + 1, strlen(a + 1) + 1);
		}
		snprintf(knobs[i].saved, sizeof(knobs[i].saved), "%s", buf);
	}
	ksm_ok = 1;
	if (strcmp(knobs[0].saved, "none") && knobs[0].saved[0])
		ksm_set("advisor_mode", "none");
	ksm_set("run", "0");
	ksm_set("use_zero_pages", "0");	/* as samepage's default */
	return 0;
}

/* Which modes can run here (messages for the others). */
static unsigned usable_modes(void)
{
	unsigned modes = opt.modes, ksm = 1u << M_KSM_DEF | 1u << M_KSM_FULL,
		 sp = 1u << M_SP_DEF | 1u << M_SP_FULL;
	char why[512];

	if ((modes & ksm) && ksm_setup())
		modes &= ~ksm;
	if (!(modes & sp))
		return modes;
	if (sp_agent_check(why, sizeof(why))) {
		printf("samepage: skipped (cannot merge here: %s)\n", why);
		return modes & ~sp;
	}
	if (access(opt.samepage, X_OK) || access(opt.samepaged, X_OK)) {
		printf("samepage: skipped (%s or %s missing)\n", opt.samepage,
		       opt.samepaged);
		return modes & ~sp;
	}
	strcpy(sockdir, "/tmp/ksm-compare-XXXXXX");
	if (!mkdtemp(sockdir)) {
		sockdir[0] = 0;
		die("mkdtemp: %s", strerror(errno));
	}
	return modes;
}

/* The workloads --only asks for, in @wls (up to @max); *@head: the index
 * of the headline workload, or -1.  Return: how many. */
static unsigned make_workloads(struct wl *wls, unsigned max, unsigned modes,
			       int *head)
{
	unsigned nw = 0, full = 1u << M_KSM_FULL | 1u << M_SP_FULL;

	*head = -1;
	for (const char *c = opt.only; *c && nw < max; c++) {
		struct wl *w = &wls[nw];

		memset(w, 0, sizeof(*w));
		w->letter = *c;
		w->procs = opt.procs;
		w->spec.pages = (uint64_t)opt.size * 256;
		w->modes = modes;
		switch (*c) {
		case 'a':
			snprintf(w->name, sizeof(w->name), "a:%ux%uM-half",
				 opt.procs, opt.mib);
			w->spec.pages = (uint64_t)opt.mib * 256;
			w->spec.same = 0.5;
			*head = (int)nw;
			break;
		case 'b':
			snprintf(w->name, sizeof(w->name), "b:%ux%uM-zero",
				 opt.procs, opt.size);
			w->spec.zero = 1;
			break;
		case 'c':
			snprintf(w->name, sizeof(w->name), "c:%ux%uM-vol",
				 opt.procs, opt.size);
			w->spec.vol = 1;
			break;
		case 'e':
			snprintf(w->name, sizeof(w->name), "e:%ux%uM-scat8",
				 opt.procs, opt.size);
			w->spec.scatter = 8;
			break;
		case 'g':
			w->procs = opt.procs + 1;
			snprintf(w->name, sizeof(w->name), "g:%u+1x%uM-late",
				 opt.procs, 256u);
			w->spec.pages = 256u * 256;
			w->spec.same = 0.5;
			w->late = 1;
			w->modes = modes & full;
			break;
		case 'd':
			for (unsigned s = 0; s < opt.nsweep && nw < max; s++) {
				w = &wls[nw++];
				memset(w, 0, sizeof(*w));
				w->letter = 'd';
				w->procs = 1;
				snprintf(w->name, sizeof(w->name), "d:1x%uM-dup",
					 opt.sweep[s]);
				w->spec.pages = (uint64_t)opt.sweep[s] * 256;
				w->spec.dup = 0.5;
				w->modes = modes & (opt.sweep_defaults ? ~0u
								       : full);
			}
			continue;
		}
		nw++;
	}
	return nw;
}

static void print_table(const struct wl *wls, unsigned nw,
			struct result (*res)[M_COUNT])
{
	printf("\n%-14s %-8s %8s %17s %9s %8s %7s %7s %7s %5s %15s %6s %6s "
	       "%-5s %s\n",
	       "workload", "mode", "converge", "merged/expected", "saved",
	       "cpu-s", "scan/s", "rescan", "/cpu-s", "skip", "Pss-saved MiB/exp",
	       "B/page", "VMAs+", "bytes", "other-cpu");
	for (unsigned i = 0; i < nw; i++)
		for (int m = 0; m < M_COUNT; m++)
			print_row(&wls[i], m, &res[i][m]);
	printf("(converge: >T did not converge within the timeout T; (T): "
	       "window of a workload with nothing\n to merge.  saved: "
	       "pages_sharing + ksm_zero_pages.  !: other processes used "
	       "kernel KSM meanwhile:\n ksmd's CPU and scan rates include "
	       "their pages; saved and stable pages (in B/page) are\n "
	       "estimated from the workloads' ksm_merging_pages.  knobs?: "
	       "another process changed\n the KSM knobs during the run (its "
	       "figures are not valid).  cpu-s*: whole processes, no thread\n"
	       " named \"samepage\".  other-cpu: CPU-s the rest of the machine "
	       "used in the window.)\n");
	printf("\nsamepage / kernel KSM\n");
	for (unsigned i = 0; i < nw; i++)
		print_ratios(&wls[i], res[i]);
}

/*
 * The rescan target, judged on the scanner's speed: pages covered per
 * CPU-second of the merger (agents and samepaged) against the XXH3
 * floor.  The wall-clock rate cannot show it: a pass begins at most
 * every SP_MIN_PASS_MS, so N registered pages are covered at most
 * N * 1000 / SP_MIN_PASS_MS times a second, and a scan that finishes
 * its pass sooner waits (on the headline workload, 2.62M pages/s
 * whatever the floor).  So the wall rate must also come within 10% of
 * what that cap and the target allow, or the scanner was held up by
 * something else: both figures are printed.
 */
static void print_rescan_target(const struct wl *w, const struct result *s,
				double fl)
{
	double cap = (double)(w->spec.pages * w->procs) * 1000.0 /
		     SP_MIN_PASS_MS;
	double want = fl / 2 < cap ? fl / 2 : cap;
	int met = s->rescan_cpu_rate * 2 >= fl && s->rescan_rate >= 0.9 * want;

	printf("  rescans >= 1/2 of the XXH3 floor: %.2fM pages per CPU-s vs "
	       "%.2fM pages/s = %.2f  %s\n"
	       "    (wall clock %.2fM pages/s = %.2f of the floor, %.2f of "
	       "the cap %.2fM: a pass begins at most every %d ms)\n",
	       s->rescan_cpu_rate / 1e6, fl / 1e6, s->rescan_cpu_rate / fl,
	       met ? "met" : "MISSED", s->rescan_rate / 1e6,
	       s->rescan_rate / fl, s->rescan_rate / cap, cap / 1e6,
	       SP_MIN_PASS_MS);
}

/* How many CPUs were busy, on average, while each merger converged, and
 * with what: samepage's agents and daemon run side by side, ksmd is one
 * thread, so on a small machine samepage's converge time is bounded by
 * its CPU over the CPUs there are, and the bench's own polling (pagemap
 * reads for samepage, one counter for KSM) takes from the same CPUs. */
static void print_busy(const struct result *s, const struct result *k)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	printf("    (CPUs busy on average while converging, of %ld: samepage "
	       "%.2f (merger %.2f, bench %.2f), KSM %.2f (ksmd %.2f, bench "
	       "%.2f))\n", n, s->busy / s->t_conv, s->cpu / s->t_conv,
	       s->poller / s->t_conv, k->busy / k->t_conv,
	       k->cpu / k->t_conv, k->poller / k->t_conv);
}

/* Issue 5's targets, samepage at full speed against KSM at full speed on
 * the headline workload; @fl: the XXH3 floor. */
static void print_targets(const struct wl *w, const struct result *res,
			  double fl)
{
	static const struct result none;	/* done = 0 */
	const struct result *s = &res[M_SP_FULL], *k = &res[M_KSM_FULL];

	printf("\ntargets on %s (samepage full speed vs KSM full speed):\n",
	       w->name);
	if (k->tampered) {
		printf("  (KSM's figures are not valid: its knobs changed "
		       "during the run)\n");
		k = &none;
	}
	if (s->done && k->done && s->converged && k->converged)
		printf("  converge <= 1/5 of KSM's time: %.2f s vs %.2f s = "
		       "%.2f  %s (99%% merged: %.2f s vs %.2f s)\n", s->t_conv,
		       k->t_conv, s->t_conv / k->t_conv,
		       s->t_conv * 5 <= k->t_conv ? "met" : "MISSED", s->t99,
		       k->t99);
	if (s->done && k->done && s->converged && k->converged)
		print_busy(s, k);
	if (s->done && k->done)
		printf("  CPU <= 1/2 of KSM's: %.2f s vs %.2f s = %.2f  %s\n",
		       s->cpu, k->cpu, k->cpu > 0 ? s->cpu / k->cpu : 0,
		       s->cpu * 2 <= k->cpu ? "met" : "MISSED");
	if (s->done && fl > 0)
		print_rescan_target(w, s, fl);
	if (s->done)
		printf("  metadata <= 24 B/page: %.1f at most (%.1f at least) "
		       " %s\n", s->meta_per_page, s->meta_low,
		       s->meta_per_page <= 24 ? "met" : "MISSED");
}

int main(int argc, char **argv)
{
	static struct wl wls[32];
	static struct result res[32][M_COUNT];
	static struct series curves[M_COUNT];
	struct sigaction sa = { .sa_handler = on_signal };
	unsigned nw, mps = 256, modes;
	int head;
	double fl = 0, t_start = now_s();

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse(argc, argv);
	find_tools();
	atexit(cleanup);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	modes = usable_modes();
	if (!modes)
		die("nothing to run");
	if (ksm_ok && ksm_get("max_page_sharing") > 1)
		mps = (unsigned)ksm_get("max_page_sharing");
	nw = make_workloads(wls, 32, modes, &head);
	for (unsigned i = 0; i < nw; i++)
		expect(&wls[i], mps);

	printf("ksm_compare: %u workloads; modes:", nw);
	for (int m = 0; m < M_COUNT; m++)
		if (modes & 1u << m)
			printf(" %s", mode_name[m]);
	printf("; timeouts %.0f s (defaults), %.0f s (full speed); "
	       "max_page_sharing %u\n", opt.timeout_def, opt.timeout_full, mps);
	if (head >= 0) {
		fl = floor_rate(&wls[head]);
		printf("floor: XXH3 (%s) over %s's bytes, one thread: %.2fM "
		       "pages/s (%.1f GB/s)\n", sp_hash_impl(), wls[head].name,
		       fl / 1e6, fl * PS / 1e9);
	}
	for (unsigned i = 0; i < nw; i++)
		for (int m = 0; m < M_COUNT; m++)
			if (wls[i].modes & 1u << m)
				run_one(&wls[i], m, &res[i][m],
					(int)i == head ? &curves[m] : NULL, mps);

	print_table(wls, nw, res);
	if (head >= 0) {
		print_targets(&wls[head], res[head], fl);
		write_plot(&wls[head], curves);
	}
	printf("total %.0f s\n", now_s() - t_start);
	for (unsigned i = 0; i < nw; i++)
		for (int m = 0; m < M_COUNT; m++)
			if (res[i][m].done && !res[i][m].verified)
				return 1;
	return 0;
}
