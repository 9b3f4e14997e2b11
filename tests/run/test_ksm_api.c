/*
 * test_ksm_api.c - a program that uses only the kernel's KSM API
 * (madvise, prctl) and the kernel's view of its memory (pagemap PFNs,
 * smaps_rollup), run under `samepage run` with kernel KSM off.  The
 * scenarios of the kernel's KSM selftests, in our own words, plus the
 * anonymous-memory semantics merged ranges must keep.
 *
 * Nothing here knows samepage exists: the same binary would pass under
 * kernel KSM (run=1).  Waits are polls with a timeout, never fixed sleeps.
 *
 * usage: test_ksm_api [main|zero|sharing|exec-child]
 *   main      default knobs (meson runs it at full scan speed)
 *   zero      with use_zero_pages 1
 *   sharing   with max_page_sharing 4
 *   exec-child  (internal) the far side of fork+exec
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../vmflags.h"

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif

#define PS 4096
#define N 64
#define TIMEOUT_MS 20000

static char *self_path;

/* ---- observing the kernel ---------------------------------------------- */

/* /proc/self/{pagemap,mem} opened once per process: an fd opened before
 * a fork still shows the parent's memory. */
static int proc_fd(int which)
{
	static int fd[2] = { -1, -1 };
	static pid_t owner;

	if (owner != getpid()) {
		if (fd[0] >= 0)
			close(fd[0]);
		if (fd[1] >= 0)
			close(fd[1]);
		fd[0] = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		fd[1] = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
		owner = getpid();
	}
	return fd[which];
}

static uint64_t pfn(const void *p)
{
	uint64_t e = 0;

	(void)*(volatile const char *)p;
	if (pread(proc_fd(0), &e, 8, (off_t)((uintptr_t)p / PS) * 8) != 8)
		return 0;
	return e & ((1ULL << 55) - 1);
}

/* PFN of a page we may not be allowed to read (PROT_NONE): faulted in
 * for reading through /proc/self/mem, as a debugger would, first (a
 * freshly merged page has no PTE until its first access). */
static uint64_t pfn_quiet(const void *p)
{
	uint64_t e = 0;
	char c;

	if (pread(proc_fd(1), &c, 1, (off_t)(uintptr_t)p) != 1)
		return 0;
	if (pread(proc_fd(0), &e, 8, (off_t)((uintptr_t)p / PS) * 8) != 8)
		return 0;
	return e & ((1ULL << 55) - 1);
}

static long rollup_kb(const char *key)
{
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/self/smaps_rollup", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = atol(line + n + 1);
	fclose(f);
	return v;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void pause_ms(long ms)
{
	struct timespec ts = { 0, ms * 1000000L };

	nanosleep(&ts, NULL);
}

/* Poll @cond(@arg) until true or TIMEOUT_MS; return the last answer. */
static int wait_for(int (*cond)(void *), void *arg)
{
	double end = now_ms() + TIMEOUT_MS;

	while (!cond(arg)) {
		if (now_ms() > end)
			return 0;
		pause_ms(5);
	}
	return 1;
}

/* ---- content ------------------------------------------------------------ */

static char *map(size_t pages)
{
	char *p = mmap(NULL, pages * PS, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

static void page(void *p, unsigned seed, size_t i)
{
	uint64_t v = seed * 0x9e3779b97f4a7c15ull + i + 1;

	memset(p, (int)(v % 251) + 1, PS);
	memcpy(p, &v, 8);
}

static void fill(char *p, size_t pages, unsigned seed)
{
	for (size_t i = 0; i < pages; i++)
		page(p + i * PS, seed, i);
}

static int is(const char *p, size_t pages, unsigned seed)
{
	char want[PS];

	for (size_t i = 0; i < pages; i++) {
		page(want, seed, i);
		if (memcmp(p + i * PS, want, PS))
			return 0;
	}
	return 1;
}

/* Two regions whose pages pair up. */
struct pair {
	char *x, *y;
	size_t n;
};

static int paired(void *arg)
{
	struct pair *p = arg;

	for (size_t i = 0; i < p->n; i++)
		if (pfn_quiet(p->x + i * PS) != pfn_quiet(p->y + i * PS) ||
		    !pfn_quiet(p->x + i * PS))
			return 0;
	return 1;
}

static int all_distinct(const struct pair *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (pfn(p->x + i * PS) == pfn(p->y + i * PS))
			return 0;
	return 1;
}

/* Two mergeable copies of the same N pages, merged. */
static struct pair merged_pair(unsigned seed)
{
	struct pair p = { map(N), map(N), N };

	fill(p.x, N, seed);
	fill(p.y, N, seed);
	assert_int_equal(madvise(p.x, N * PS, MADV_MERGEABLE), 0);
	assert_int_equal(madvise(p.y, N * PS, MADV_MERGEABLE), 0);
	assert_true(wait_for(paired, &p));
	return p;
}

static void drop(struct pair *p)
{
	assert_int_equal(munmap(p->x, p->n * PS), 0);
	assert_int_equal(munmap(p->y, p->n * PS), 0);
}

/* ---- the selftests' scenarios -------------------------------------------- */

static void test_merge(void **state)
{
	struct pair p = { map(16 * N), map(16 * N), 16 * N };
	long pss0, pss1 = 0;

	(void)state;
	fill(p.x, p.n, 1);
	fill(p.y, p.n, 1);
	pss0 = rollup_kb("Pss");
	assert_int_equal(madvise(p.x, p.n * PS, MADV_MERGEABLE), 0);
	assert_int_equal(madvise(p.y, p.n * PS, MADV_MERGEABLE), 0);
	assert_true(wait_for(paired, &p));
	/* One copy's worth saved (4 MiB), less what merging itself costs
	 * (the engine's staging buffers: about 1 MiB, once; our share of
	 * samepaged's directory).  Polled for a few seconds: the agent
	 * may still hold a window's pages when the last pair shows. */
	for (double t0 = now_ms(); now_ms() - t0 < 5000; pause_ms(20)) {
		pss1 = rollup_kb("Pss");
		if (pss0 - pss1 >= (long)p.n * PS / 1024 / 2)
			break;
	}
	print_message("Pss %ld -> %ld kB with %zu pages merged\n", pss0, pss1,
		      p.n);
	assert_true(pss0 - pss1 >= (long)p.n * PS / 1024 / 2);
	assert_true(is(p.x, p.n, 1) && is(p.y, p.n, 1));
	drop(&p);
}

static void test_unmerge(void **state)
{
	struct pair p = merged_pair(2);

	(void)state;
	assert_int_equal(madvise(p.x, N * PS, MADV_UNMERGEABLE), 0);
	assert_int_equal(madvise(p.y, N * PS, MADV_UNMERGEABLE), 0);
	assert_true(all_distinct(&p));
	assert_true(is(p.x, N, 2) && is(p.y, N, 2));
	drop(&p);
}

static void test_unmerge_discarded(void **state)
{
	struct pair p = merged_pair(3);
	static const char zero[PS];

	(void)state;
	assert_int_equal(madvise(p.x, N / 2 * PS, MADV_DONTNEED), 0);
	assert_int_equal(madvise(p.x, N * PS, MADV_UNMERGEABLE), 0);
	for (size_t i = 0; i < N / 2; i++)
		assert_memory_equal(p.x + i * PS, zero, PS);
	for (size_t i = N / 2; i < N; i++) {
		char want[PS];

		page(want, 3, i);
		assert_memory_equal(p.x + i * PS, want, PS);
	}
	drop(&p);
}

static void test_prot_none(void **state)
{
	struct pair p = { map(N), map(N), N };
	int fd;

	(void)state;
	fill(p.x, N, 4);
	fill(p.y, N, 4);
	assert_int_equal(mprotect(p.x, N * PS, PROT_NONE), 0);
	assert_int_equal(mprotect(p.y, N * PS, PROT_NONE), 0);
	assert_int_equal(madvise(p.x, N * PS, MADV_MERGEABLE), 0);
	assert_int_equal(madvise(p.y, N * PS, MADV_MERGEABLE), 0);
	assert_true(wait_for(paired, &p));
	/* A forced write (a debugger's) gets a private copy. */
	fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "Z", 1, (off_t)(uintptr_t)p.x), 1);
	close(fd);
	assert_true(pfn_quiet(p.x) != pfn_quiet(p.y));
	assert_int_equal(madvise(p.x, N * PS, MADV_UNMERGEABLE), 0);
	assert_int_equal(mprotect(p.x, N * PS, PROT_READ), 0);
	assert_int_equal(mprotect(p.y, N * PS, PROT_READ), 0);
	assert_int_equal(p.x[0], 'Z');
	for (size_t i = 1; i < N; i++) {
		char want[PS];

		page(want, 4, i);
		assert_memory_equal(p.x + i * PS, want, PS);
	}
	assert_true(is(p.y, N, 4));
	drop(&p);
}

static int child_merges_fresh_memory(void)
{
	struct pair p = { map(N), map(N), N };

	/* No madvise: merge-any must cover new mappings. */
	fill(p.x, N, 5);
	fill(p.y, N, 5);
	return wait_for(paired, &p) && is(p.x, N, 5) ? 0 : 1;
}

static void test_prctl(void **state)
{
	struct pair p = { map(N), map(N), N };

	(void)state;
	assert_int_equal(prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0), 0);
	errno = 0;
	assert_int_equal(prctl(PR_SET_MEMORY_MERGE, 1, 1, 0, 0), -1);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_int_equal(prctl(PR_GET_MEMORY_MERGE, 1, 0, 0, 0), -1);
	assert_int_equal(errno, EINVAL);
	fill(p.x, N, 6);
	fill(p.y, N, 6);
	assert_int_equal(prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0), 0);
	assert_int_equal(prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0), 1);
	assert_true(wait_for(paired, &p));
	/* Off again: everything unmerged. */
	assert_int_equal(prctl(PR_SET_MEMORY_MERGE, 0, 0, 0, 0), 0);
	assert_int_equal(prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0), 0);
	assert_true(all_distinct(&p));
	assert_true(is(p.x, N, 6) && is(p.y, N, 6));
	drop(&p);
}

static void test_child_inherits(void **state)
{
	pid_t pid;
	int st;

	(void)state;
	assert_int_equal(prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0) == 1 ?
		      child_merges_fresh_memory() : 2);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* And across exec. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(self_path, self_path, "exec-child", (char *)NULL);
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(prctl(PR_SET_MEMORY_MERGE, 0, 0, 0, 0), 0);
}

/* ---- anonymous-memory semantics after merging ----------------------------- */

static void test_write_gets_private_copy(void **state)
{
	struct pair p = merged_pair(7);
	char want[PS];

	(void)state;
	p.x[10 * PS + 1] ^= 0x55;
	assert_true(pfn(p.x + 10 * PS) != pfn(p.y + 10 * PS));
	page(want, 7, 10);
	assert_memory_equal(p.y + 10 * PS, want, PS);
	want[1] ^= 0x55;
	assert_memory_equal(p.x + 10 * PS, want, PS);
	drop(&p);
}

static void test_read_into_merged_page(void **state)
{
	struct pair p = merged_pair(8);
	char msg[64] = "written by the kernel";
	int fds[2];
	char want[PS];

	(void)state;
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], msg, sizeof(msg)), (ssize_t)sizeof(msg));
	assert_int_equal(read(fds[0], p.x + 3 * PS + 100, sizeof(msg)),
			 (ssize_t)sizeof(msg));
	close(fds[0]);
	close(fds[1]);
	assert_memory_equal(p.x + 3 * PS + 100, msg, sizeof(msg));
	page(want, 8, 3);
	assert_memory_equal(p.y + 3 * PS, want, PS);
	drop(&p);
}

static void test_dontneed_gives_zeros(void **state)
{
	struct pair p = merged_pair(9);
	static const char zero[PS];

	(void)state;
	assert_int_equal(madvise(p.x, N * PS, MADV_DONTNEED), 0);
	for (size_t i = 0; i < N; i++)
		assert_memory_equal(p.x + i * PS, zero, PS);
	assert_true(is(p.y, N, 9));
	drop(&p);
}

static void test_fork_after_merging(void **state)
{
	struct pair p = merged_pair(10);
	pid_t pid;
	int st;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int ok = is(p.x, N, 10) && is(p.y, N, 10);

		p.x[0] ^= 1;
		ok = ok && is(p.y, N, 10);
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_true(is(p.x, N, 10) && is(p.y, N, 10));
	drop(&p);
}

/*
 * In a forked child: whether no page of the @n pages at @p holds what
 * the parent's range there held (seed @seed), read through /proc/self/mem
 * so that a page the child cannot read is no fault.  The range itself may
 * be in use again: memory the child maps after the fork (its agent's new
 * scanner thread, a sanitizer's runtime) may land in the hole that a
 * DONTFORK range leaves, so being mapped proves nothing.
 */
static int not_inherited(const char *p, size_t n, unsigned seed)
{
	char buf[PS], want[PS];
	int fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC), ok = fd >= 0;

	for (size_t i = 0; ok && i < n; i++) {
		page(want, seed, i);
		ok = pread(fd, buf, PS, (off_t)(uintptr_t)(p + i * PS)) != PS ||
		     memcmp(buf, want, PS) != 0;
	}
	if (fd >= 0)
		close(fd);
	return ok;
}

/* The longest run of unmapped pages among the @n at @p: its first page
 * in *@off and its length in *@len (0 if every page is mapped). */
static void free_run(const char *p, size_t n, size_t *off, size_t *len)
{
	size_t run = 0;

	*off = *len = 0;
	for (size_t i = 0; i < n; i++) {
		int gone = msync((void *)(p + i * PS), PS, 0) == -1 &&
			   errno == ENOMEM;

		run = gone ? run + 1 : 0;
		if (run > *len) {
			*len = run;
			*off = i + 1 - run;
		}
	}
}

/* In a forked child whose parent's @n pages at @p were DONTFORK: map new
 * memory over the longest free part of that hole, without replacing
 * what the child may have mapped there since (see not_inherited()), and
 * put the parent's content (seed @seed) in it, page for page.  Return:
 * the mapping and its first page and length in *@off, *@len, or NULL. */
static char *map_in_hole(char *p, size_t n, unsigned seed, size_t *off,
			 size_t *len)
{
	for (int tries = 0; tries < 5; tries++) {
		char *q;

		free_run(p, n, off, len);
		if (!*len)
			return NULL;
		q = mmap(p + *off * PS, *len * PS, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
			 -1, 0);
		if (q == p + *off * PS) {
			for (size_t i = 0; i < *len; i++)
				page(q + i * PS, seed, *off + i);
			return q;
		}
		if (q != MAP_FAILED)
			munmap(q, *len * PS);	/* an old kernel's hint */
	}
	return NULL;
}

/* QEMU's guest RAM: MADV_DONTFORK (and DONTDUMP) on mergeable memory.
 * Merged pages keep the flags; a child does not get the range. */
static void test_dontfork_dontdump_kept(void **state)
{
	struct pair p = { map(N), map(N), N };
	pid_t pid;
	int st;

	(void)state;
	fill(p.x, N, 12);
	fill(p.y, N, 12);
	/* Before registering (read at registration) and after (the call
	 * goes through the agent). */
	assert_int_equal(madvise(p.x, N * PS, MADV_DONTFORK), 0);
	assert_int_equal(madvise(p.x, N * PS, MADV_MERGEABLE), 0);
	assert_int_equal(madvise(p.y, N * PS, MADV_MERGEABLE), 0);
	assert_int_equal(madvise(p.y, N * PS, MADV_DONTDUMP), 0);
	assert_true(wait_for(paired, &p));
	assert_true(vmas_flag(p.x, N * PS, "dc", 1));
	assert_true(vmas_flag(p.x, N * PS, "dd", 0));
	assert_true(vmas_flag(p.y, N * PS, "dd", 1));
	assert_true(vmas_flag(p.y, N * PS, "dc", 0));

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* x is not ours; y is, merged; the agent carries on.  New
		 * memory where x was does not get x's flags (the agent
		 * forgot the range), and merges with y. */
		size_t off = 0, len = 0;
		int ok = not_inherited(p.x, N, 12) && is(p.y, N, 12);
		char *q = ok ? map_in_hole(p.x, N, 12, &off, &len) : NULL;
		struct pair c = { q, p.y + off * PS, len };

		ok = q && vmas_flag(q, len * PS, "dc", 0) &&
		     madvise(q, len * PS, MADV_MERGEABLE) == 0 &&
		     wait_for(paired, &c) && vmas_flag(q, len * PS, "dc", 0);
		for (size_t i = 0; ok && i < len; i++) {
			char want[PS];

			page(want, 12, off + i);
			ok = memcmp(q + i * PS, want, PS) == 0;
		}
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_true(is(p.x, N, 12) && is(p.y, N, 12));

	/* DOFORK through the agent: merging stops setting the flag, and a
	 * child gets the range again. */
	assert_int_equal(madvise(p.x, N * PS, MADV_DOFORK), 0);
	assert_true(vmas_flag(p.x, N * PS, "dc", 0));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(is(p.x, N, 12) ? 0 : 1);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* Unmerging rebuilds the range as new anonymous memory: with the
	 * flag. */
	assert_int_equal(madvise(p.y, N * PS, MADV_UNMERGEABLE), 0);
	assert_true(all_distinct(&p));
	assert_true(vmas_flag(p.y, N * PS, "dd", 1));
	assert_true(is(p.x, N, 12) && is(p.y, N, 12));
	drop(&p);
}

/* WIPEONFORK cannot be set on a file mapping: merged pages are unmerged
 * first, and the range never merges while the flag is on. */
static void test_wipeonfork(void **state)
{
	struct pair p = merged_pair(13);
	pid_t pid;
	int st;

	(void)state;
	assert_int_equal(madvise(p.x, N * PS, MADV_WIPEONFORK), 0);
	assert_true(vmas_flag(p.x, N * PS, "wf", 1));
	assert_true(all_distinct(&p));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		static const char zero[PS];
		int ok = is(p.y, N, 13);

		for (size_t i = 0; i < N; i++)
			ok = ok && !memcmp(p.x + i * PS, zero, PS);
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_true(is(p.x, N, 13) && is(p.y, N, 13));
	/* KEEPONFORK: it merges again. */
	assert_int_equal(madvise(p.x, N * PS, MADV_KEEPONFORK), 0);
	assert_true(wait_for(paired, &p));
	drop(&p);
}

static void test_munmap_then_mmap_gives_zeros(void **state)
{
	struct pair p = merged_pair(11);
	static const char zero[PS];
	char *q;

	(void)state;
	assert_int_equal(munmap(p.x, N * PS), 0);
	q = mmap(p.x, N * PS, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	assert_ptr_equal(q, p.x);
	for (size_t i = 0; i < N; i++)
		assert_memory_equal(q + i * PS, zero, PS);
	/* MAP_FIXED straight over merged memory too. */
	q = mmap(p.y, N * PS, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	assert_ptr_equal(q, p.y);
	for (size_t i = 0; i < N; i++)
		assert_memory_equal(q + i * PS, zero, PS);
	drop(&p);
}

static void test_mremap_keeps_content(void **state)
{
	struct pair p = merged_pair(12);
	char *q;

	(void)state;
	q = mremap(p.x, N * PS, 2 * N * PS, MREMAP_MAYMOVE);
	assert_true(q != MAP_FAILED);
	p.x = q;
	assert_true(is(q, N, 12));
	/* Unmerging the other copy lets the store reclaim; ours stays. */
	assert_int_equal(madvise(p.y, N * PS, MADV_UNMERGEABLE), 0);
	assert_int_equal(munmap(p.y, N * PS), 0);
	p.y = map(N);
	fill(p.y, N, 13);
	assert_int_equal(madvise(p.y, N * PS, MADV_MERGEABLE), 0);
	assert_true(is(q, N, 12));
	assert_int_equal(munmap(q, 2 * N * PS), 0);
	assert_int_equal(munmap(p.y, N * PS), 0);
}

static void test_mprotect_round_trip(void **state)
{
	struct pair p = merged_pair(14);

	(void)state;
	assert_int_equal(mprotect(p.x, N * PS, PROT_READ), 0);
	assert_true(is(p.x, N, 14));
	assert_int_equal(mprotect(p.x, N * PS, PROT_READ | PROT_WRITE), 0);
	p.x[0] ^= 1;
	p.x[0] ^= 1;
	assert_true(is(p.x, N, 14) && is(p.y, N, 14));
	drop(&p);
}

static void test_bad_arguments(void **state)
{
	char *x = map(4);

	(void)state;
	errno = 0;
	assert_int_equal(madvise(x + 1, PS, MADV_MERGEABLE), -1);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_int_equal(madvise(x, (size_t)-PS, MADV_MERGEABLE), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(madvise(x, 0, MADV_MERGEABLE), 0);
	/* A hole: ENOMEM, the mapped part still registered. */
	assert_int_equal(munmap(x + 2 * PS, PS), 0);
	errno = 0;
	assert_int_equal(madvise(x, 4 * PS, MADV_MERGEABLE), -1);
	assert_int_equal(errno, ENOMEM);
	errno = 0;
	assert_int_equal(madvise(x, 4 * PS, MADV_UNMERGEABLE), -1);
	assert_int_equal(errno, ENOMEM);
	/* Never mergeable: a no-op success. */
	assert_int_equal(madvise(x + 3 * PS, PS, MADV_UNMERGEABLE), 0);
	assert_int_equal(munmap(x, 4 * PS), 0);
}

/* ---- other knob settings --------------------------------------------------- */

static int zero_released(void *arg)
{
	char *z = arg;
	static uint64_t zpfn;

	if (!zpfn) {
		char *t = map(1);

		zpfn = pfn(t);	/* an untouched page reads the zero page */
		munmap(t, PS);
	}
	for (size_t i = 0; i < N; i++)
		if (pfn_quiet(z + i * PS) != zpfn)
			return 0;
	return 1;
}

static void test_zero_pages(void **state)
{
	char *z = map(N);
	static const char zero[PS];
	long rss0, rss1;

	(void)state;
	/* The first KSM call starts the merger: its own memory must not
	 * blur the figures. */
	assert_int_equal(madvise(z, 0, MADV_MERGEABLE), 0);
	memset(z, 0, N * PS);
	/* The mapping's Rss: the merger's own memory is not in it. */
	rss0 = vma_kb(z, "Rss");
	assert_int_equal(madvise(z, N * PS, MADV_MERGEABLE), 0);
	assert_true(wait_for(zero_released, z));
	rss1 = vma_kb(z, "Rss");
	print_message("Rss %ld -> %ld kB\n", rss0, rss1);
	assert_true(rss0 - rss1 >= N * PS / 1024 / 2);
	for (size_t i = 0; i < N; i++)
		assert_memory_equal(z + i * PS, zero, PS);
	z[0] = 1;
	assert_int_equal(z[0], 1);
	assert_int_equal(madvise(z, N * PS, MADV_UNMERGEABLE), 0);
	for (size_t i = 1; i < N; i++)
		assert_memory_equal(z + i * PS, zero, PS);
	munmap(z, N * PS);
}

struct frames {
	char *x;
	size_t n;
	size_t want;
};

static int frames_used(void *arg)
{
	struct frames *f = arg;
	uint64_t seen[64];
	size_t ns = 0;

	for (size_t i = 0; i < f->n; i++) {
		uint64_t v = pfn_quiet(f->x + i * PS);
		size_t k;

		for (k = 0; k < ns && seen[k] != v; k++)
			;
		if (k == ns && ns < 64)
			seen[ns++] = v;
	}
	return ns == f->want;
}

static void test_max_page_sharing(void **state)
{
	/* Started with max_page_sharing 4: 10 identical pages need 3
	 * stable pages (4 + 4 + 2), as KSM's dups do. */
	struct frames f = { map(10), 10, 3 };

	(void)state;
	for (size_t i = 0; i < 10; i++)
		page(f.x + i * PS, 15, 0);
	assert_int_equal(madvise(f.x, 10 * PS, MADV_MERGEABLE), 0);
	assert_true(wait_for(frames_used, &f));
	munmap(f.x, 10 * PS);
}

/* Zero-filled pages at KSM's default (use_zero_pages 0): KSM merges
 * them with each other, samepage releases them to the kernel's zero
 * page; either way they end on one frame, as one mapping (a mapping
 * per page would spend the process's map count), and a write gets a
 * private page. */
static void test_zero_filled(void **state)
{
	struct frames f = { map(N), N, 1 };
	static const char zero[PS];

	(void)state;
	memset(f.x, 0, N * PS);		/* private zero-filled frames */
	assert_true(pfn(f.x) != pfn(f.x + PS));
	assert_int_equal(madvise(f.x, N * PS, MADV_MERGEABLE), 0);
	assert_true(wait_for(frames_used, &f));
	assert_int_equal(vmas_over(f.x, N * PS), 1);
	f.x[PS] = 1;
	assert_int_equal(f.x[PS], 1);
	assert_true(pfn(f.x + PS) != pfn(f.x));
	for (size_t i = 0; i < N; i++)
		if (i != 1)
			assert_memory_equal(f.x + i * PS, zero, PS);
	assert_int_equal(madvise(f.x, N * PS, MADV_UNMERGEABLE), 0);
	assert_int_equal(f.x[PS], 1);
	munmap(f.x, N * PS);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest main_tests[] = {
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_unmerge),
		cmocka_unit_test(test_unmerge_discarded),
		cmocka_unit_test(test_prot_none),
		cmocka_unit_test(test_prctl),
		cmocka_unit_test(test_child_inherits),
		cmocka_unit_test(test_write_gets_private_copy),
		cmocka_unit_test(test_read_into_merged_page),
		cmocka_unit_test(test_dontneed_gives_zeros),
		cmocka_unit_test(test_fork_after_merging),
		cmocka_unit_test(test_dontfork_dontdump_kept),
		cmocka_unit_test(test_wipeonfork),
		cmocka_unit_test(test_munmap_then_mmap_gives_zeros),
		cmocka_unit_test(test_mremap_keeps_content),
		cmocka_unit_test(test_mprotect_round_trip),
		cmocka_unit_test(test_zero_filled),
	};
	const struct CMUnitTest zero_tests[] = {
		cmocka_unit_test(test_zero_pages),
	};
	const struct CMUnitTest sharing_tests[] = {
		cmocka_unit_test(test_max_page_sharing),
	};
	const char *group = argc > 1 ? argv[1] : "main";

	self_path = argv[0];
	if (!getenv("LD_PRELOAD") || !strstr(getenv("LD_PRELOAD"), "samepage")) {
		fprintf(stderr, "test_ksm_api: SKIP: run me under samepage run\n");
		return 77;
	}
	if (!strcmp(group, "exec-child"))
		return prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0) == 1 ?
		       child_merges_fresh_memory() : 2;
	if (!pfn(&group)) {
		fprintf(stderr, "test_ksm_api: SKIP: PFNs hidden (not root)\n");
		return 77;
	}
	if (!strcmp(group, "zero"))
		return cmocka_run_group_tests(zero_tests, NULL, NULL);
	if (!strcmp(group, "sharing"))
		return cmocka_run_group_tests(sharing_tests, NULL, NULL);
	return cmocka_run_group_tests(main_tests, NULL, NULL);
}
