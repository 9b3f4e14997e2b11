/*
 * test_real.c - merging this process's real memory, observed through the
 * kernel: PFNs in /proc/self/pagemap, Rss and Pss in smaps_rollup.
 *
 * Each test builds its regions, merges them with sp_agent_merge_now(),
 * checks what the kernel shows, and gives everything back.
 */
#include <sys/wait.h>
#include <time.h>
#ifdef HAVE_LIBURING
#include <liburing.h>
#endif

#include "rt.h"

#define N 256
#define NB 1024	/* large enough that the engine's own memory is small beside */

/* Pss less its file part: the Pss of library pages moves whenever
 * another process maps or unmaps them (a test starting beside this one),
 * by hundreds of kB under ASan.  Anonymous memory and the store's memfd
 * (shmem) stay in. */
static long pss_own_kb(void)
{
	return rt_rollup_kb("Pss") - rt_rollup_kb("Pss_File");
}

static void test_identical_pages_share_frames(void **state)
{
	char *x = rt_map(NB), *y = rt_map(NB);
	long pss0, pss1, fixed0;
	struct sp_stats st;

	(void)state;
	rt_fill(x, NB, 1);
	rt_fill(y, NB, 1);
	pss0 = pss_own_kb();
	fixed0 = (long)(rt_stats().fixed_bytes / 1024);
	assert_int_equal(sp_agent_register(A, x, NB * PS), 0);
	assert_int_equal(sp_agent_register(A, y, NB * PS), 0);
	rt_merge();
	for (size_t i = 0; i < NB; i++) {
		uint64_t px = rt_pfn(x + i * PS);

		assert_int_not_equal(px, 0);
		assert_int_equal(px, rt_pfn(y + i * PS));
		if (i)
			assert_int_not_equal(px, rt_pfn(x + (i - 1) * PS));
	}
	assert_true(rt_is(x, NB, 1) && rt_is(y, NB, 1));
	pss1 = pss_own_kb();
	/* NB pages saved: Pss falls by about NB * 4 kB, less what the engine
	 * allocated once for itself (staging buffers: fixed_bytes) and some
	 * kB of metadata and page tables. */
	st = rt_stats();
	print_message("Pss %ld kB -> %ld kB (%d pages merged; engine's fixed "
		      "buffers grew by %ld kB)\n", pss0, pss1, NB,
		      (long)(st.fixed_bytes / 1024) - fixed0);
	assert_true(pss0 - pss1 + ((long)(st.fixed_bytes / 1024) - fixed0) >=
		    (long)NB * 4 * 9 / 10);
	st = rt_stats();
	assert_int_equal(st.pages_shared, NB);
	assert_int_equal(st.pages_sharing, NB);
	rt_release(x, NB);
	rt_release(y, NB);
}

static void test_write_gets_private_copy(void **state)
{
	char *x = rt_map(N), *y = rt_map(N);
	uint64_t shared3, other;

	(void)state;
	rt_fill(x, N, 2);
	rt_fill(y, N, 2);
	sp_agent_register(A, x, N * PS);
	sp_agent_register(A, y, N * PS);
	rt_merge();
	shared3 = rt_pfn(y + 3 * PS);
	other = rt_pfn(x + 4 * PS);
	assert_int_equal(rt_pfn(x + 3 * PS), shared3);
	x[3 * PS + 10] = 'W';
	/* The writer got a private copy; nothing else changed. */
	assert_int_not_equal(rt_pfn(x + 3 * PS), shared3);
	assert_int_equal(rt_pfn(y + 3 * PS), shared3);
	assert_int_equal(rt_pfn(x + 4 * PS), other);
	assert_int_equal(x[3 * PS + 10], 'W');
	assert_true(rt_is(y, N, 2));
	x[3 * PS + 10] = y[3 * PS + 10];
	assert_true(rt_is(x, N, 2));
	/* After a pass the written page has left its stable page.  Unlike
	 * under KSM, it does not merge again even with its bytes restored:
	 * its private copy lives inside the store's file mapping, where it
	 * cannot be moved out to be held, and it might be pinned for DMA (a
	 * write pin makes exactly such a copy), so replacing it unheld could
	 * lose a device's write.  It merges again once discarded or
	 * unmerged (docs/design.md, "Limits"). */
	rt_merge();
	assert_int_equal(rt_stats().pages_sharing, N - 1);
	rt_release(x, N);
	rt_release(y, N);
}

static void test_kernel_writes_into_merged_pages(void **state)
{
	char *x = rt_map(N), *y = rt_map(N);
	char path[] = "/tmp/sp-realXXXXXX";
	int fd = mkstemp(path), pfd[2];
	char buf[100];

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	memset(buf, 'F', sizeof(buf));
	assert_int_equal(write(fd, buf, sizeof(buf)), sizeof(buf));
	rt_fill(x, N, 3);
	rt_fill(y, N, 3);
	sp_agent_register(A, x, N * PS);
	sp_agent_register(A, y, N * PS);
	rt_merge();
	assert_int_equal(rt_pfn(x + 7 * PS), rt_pfn(y + 7 * PS));
	/* pread(2) into the middle of a merged page. */
	assert_int_equal(pread(fd, x + 7 * PS + 50, 100, 0), 100);
	assert_memory_equal(x + 7 * PS + 50, buf, 100);
	assert_int_not_equal(rt_pfn(x + 7 * PS), rt_pfn(y + 7 * PS));
	/* read(2) from a pipe into another. */
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(write(pfd[1], "hello", 5), 5);
	assert_int_equal(read(pfd[0], x + 9 * PS + 7, 5), 5);
	assert_memory_equal(x + 9 * PS + 7, "hello", 5);
	assert_true(rt_is(y, N, 3));
	close(pfd[0]);
	close(pfd[1]);
	close(fd);
	rt_release(x, N);
	rt_release(y, N);
}

static void test_discard_gives_zeros(void **state)
{
	char *x = rt_map(N), *y = rt_map(N);
	static const char zero[PS];

	(void)state;
	rt_fill(x, N, 4);
	rt_fill(y, N, 4);
	sp_agent_register(A, x, N * PS);
	sp_agent_register(A, y, N * PS);
	rt_merge();
	/* MADV_DONTNEED semantics on merged pages: zeros, not the merged
	 * content. */
	assert_int_equal(sp_agent_discard(A, x + 10 * PS, 20 * PS), 0);
	for (size_t i = 10; i < 30; i++)
		assert_memory_equal(x + i * PS, zero, PS);
	assert_true(rt_is(x, 10, 4));
	assert_true(rt_is(y, N, 4));
	/* Still registered: written back, they merge again. */
	rt_fill(x, N, 4);
	rt_merge();
	assert_int_equal(rt_pfn(x + 15 * PS), rt_pfn(y + 15 * PS));
	rt_release(x, N);
	rt_release(y, N);
}

static void test_fork_after_merging(void **state)
{
	char *x = rt_map(N), *y = rt_map(N);
	pid_t pid;
	int status;

	(void)state;
	rt_fill(x, N, 5);
	rt_fill(y, N, 5);
	sp_agent_register(A, x, N * PS);
	sp_agent_register(A, y, N * PS);
	rt_merge();
	pid = fork();
	if (pid == 0) {
		/* The child: correct memory, copy-on-write of its own, and
		 * an agent that keeps merging (new duplicates join the
		 * stable pages inherited from the parent). */
		char *z;
		int bad = 0;

		bad |= !rt_is(x, N, 5) || !rt_is(y, N, 5);
		x[0] = 'c';
		bad |= y[0] == 'c';
		z = mmap(NULL, N * PS, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		rt_fill(z, N, 5);
		bad |= sp_agent_register(A, z, N * PS) != 0;
		bad |= sp_agent_merge_now(A, 60000) != 0;
		bad |= rt_pfn(z + 5 * PS) != rt_pfn(y + 5 * PS);
		bad |= !rt_is(z, N, 5);
		_exit(bad);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The parent: untouched by the child's writes, still merged. */
	assert_true(rt_is(x, N, 5) && rt_is(y, N, 5));
	assert_int_equal(rt_pfn(x + 1 * PS), rt_pfn(y + 1 * PS));
	y[0] = 'p';
	assert_int_not_equal(x[0], 'p');
	y[0] = x[0];
	rt_release(x, N);
	rt_release(y, N);
}

static void test_mremap_keeps_content(void **state)
{
	char *x = rt_map(N), *y = rt_map(N), *v = rt_map(N), *w = rt_map(N);
	struct sp_agent_stats before, after;
	char *nx;

	(void)state;
	rt_fill(x, N, 6);
	rt_fill(y, N, 6);
	rt_fill(v, N, 16);
	rt_fill(w, N, 16);
	sp_agent_register(A, x, N * PS);
	sp_agent_register(A, y, N * PS);
	sp_agent_register(A, v, N * PS);
	sp_agent_register(A, w, N * PS);
	rt_merge();
	before = rt_astats();
	/* Move a merged range (and grow it). */
	nx = sp_agent_remap(A, x, N * PS, 2 * N * PS, MREMAP_MAYMOVE, NULL);
	assert_true(nx != MAP_FAILED);
	assert_true(rt_is(nx, N, 6));
	/* Drop every other user of the stable pages: y's are still mapped by
	 * the moved range, so they stay; v and w's go back to the store. */
	assert_int_equal(sp_agent_discard(A, y, N * PS), 0);
	assert_int_equal(sp_agent_discard(A, v, N * PS), 0);
	assert_int_equal(sp_agent_discard(A, w, N * PS), 0);
	rt_merge();
	after = rt_astats();
	print_message("punched %llu stable pages, %llu kept (still mapped)\n",
		      (unsigned long long)(after.punches - before.punches),
		      (unsigned long long)after.pending_release);
	assert_true(after.punches - before.punches >= N);
	assert_true(rt_is(nx, N, 6));
	rt_release(nx, 2 * N);
	rt_release(y, N);
	rt_release(v, N);
	rt_release(w, N);
}

static void test_unmerge_restores_frames(void **state)
{
	char *x = rt_map(N), *y = rt_map(N);
	struct sp_agent_stats a0, a1;

	(void)state;
	rt_fill(x, N, 7);
	rt_fill(y, N, 7);
	sp_agent_register(A, x, N * PS);
	sp_agent_register(A, y, N * PS);
	rt_merge();
	assert_int_equal(rt_pfn(x + 2 * PS), rt_pfn(y + 2 * PS));
	a0 = rt_astats();
	/* MADV_UNMERGEABLE on one: private frames with the same bytes. */
	assert_int_equal(sp_agent_unregister(A, y, N * PS), 0);
	for (size_t i = 0; i < N; i++)
		assert_int_not_equal(rt_pfn(x + i * PS), rt_pfn(y + i * PS));
	assert_true(rt_is(y, N, 7) && rt_is(x, N, 7));
	/* And the other: no stable page left in use; after a pass the store
	 * gives them back. */
	assert_int_equal(sp_agent_unregister(A, x, N * PS), 0);
	assert_int_equal(rt_stats().pages_shared, 0);
	rt_merge();
	a1 = rt_astats();
	assert_true(a1.punches - a0.punches >= N);
	assert_true(rt_is(x, N, 7) && rt_is(y, N, 7));
	rt_release(x, N);
	rt_release(y, N);
}

static void test_run2_unmerges_all(void **state)
{
	char *x = rt_map(N), *y = rt_map(N);
	struct sp_stats st;

	(void)state;
	rt_fill(x, N, 8);
	rt_fill(y, N, 8);
	sp_agent_register(A, x, N * PS);
	sp_agent_register(A, y, N * PS);
	rt_merge();
	assert_int_equal(rt_stats().pages_sharing, N);
	assert_int_equal(sp_agent_set_run(A, 2), 0);
	assert_int_equal(sp_agent_get_run(A), 0);
	st = rt_stats();
	assert_int_equal(st.pages_shared + st.pages_sharing, 0);
	assert_int_equal(st.full_scans, 0);
	for (size_t i = 0; i < N; i += 17)
		assert_int_not_equal(rt_pfn(x + i * PS), rt_pfn(y + i * PS));
	assert_true(rt_is(x, N, 8) && rt_is(y, N, 8));
	/* Ranges stay registered: merging resumes. */
	rt_merge();
	assert_int_equal(rt_stats().pages_sharing, N);
	rt_release(x, N);
	rt_release(y, N);
}

static void test_zero_pages_release_rss(void **state)
{
	char *z = rt_map(4 * N);
	long rss0, rss1;
	static const char zero[PS];

	(void)state;
	assert_int_equal(sp_knob_set(sp_agent_engine(A), SP_KNOB_USE_ZERO_PAGES,
				     1), 0);
	memset(z, 0, 4 * N * PS);	/* real, zero-filled pages */
	rss0 = rt_rollup_kb("Rss");
	sp_agent_register(A, z, 4 * N * PS);
	rt_merge();
	rss1 = rt_rollup_kb("Rss");
	print_message("Rss %ld kB -> %ld kB after releasing %d zero pages\n",
		      rss0, rss1, 4 * N);
	assert_int_equal(rt_stats().ksm_zero_pages, 4 * N);
	assert_true(rss0 - rss1 >= 4L * N * 4 * 9 / 10);
	for (size_t i = 0; i < 4 * N; i++)
		assert_memory_equal(z + i * PS, zero, PS);
	/* Written, they are no longer counted. */
	memset(z, 1, N * PS);
	rt_merge();
	assert_int_equal(rt_stats().ksm_zero_pages, 3 * N);
	assert_int_equal(sp_knob_set(sp_agent_engine(A), SP_KNOB_USE_ZERO_PAGES,
				     0), 0);
	rt_release(z, 4 * N);
}

static void test_prot_none_ranges_merge(void **state)
{
	char *x = rt_map(N), *y = rt_map(N);
	char path[64];
	int memfd;

	(void)state;
	rt_fill(x, N, 9);
	rt_fill(y, N, 9);
	assert_int_equal(sp_agent_protect(A, x, N * PS, PROT_NONE), 0);
	assert_int_equal(sp_agent_protect(A, y, N * PS, PROT_NONE), 0);
	sp_agent_register(A, x, N * PS);
	sp_agent_register(A, y, N * PS);
	rt_merge();
	assert_int_equal(rt_stats().pages_sharing, N);
	/* A forced write (as a debugger does) copies the page. */
	snprintf(path, sizeof(path), "/proc/self/mem");
	memfd = open(path, O_RDWR);
	assert_true(memfd >= 0);
	assert_int_equal(pwrite(memfd, "Z", 1, (off_t)(uintptr_t)x), 1);
	close(memfd);
	assert_int_equal(sp_agent_protect(A, x, N * PS, PROT_READ | PROT_WRITE), 0);
	assert_int_equal(sp_agent_protect(A, y, N * PS, PROT_READ), 0);
	assert_int_equal(x[0], 'Z');
	x[0] = y[0];
	assert_true(rt_is(x, N, 9) && rt_is(y, N, 9));
	assert_int_equal(sp_agent_unregister(A, x, N * PS), 0);
	assert_true(rt_is(x, N, 9));
	rt_release(x, N);
	rt_release(y, N);
}

static void test_raw_unmap_is_survived(void **state)
{
	char *x = rt_map(N), *y = rt_map(N);

	(void)state;
	rt_fill(x, N, 10);
	rt_fill(y, N, 10);
	sp_agent_register(A, x, N * PS);
	sp_agent_register(A, y, N * PS);
	rt_merge();
	/* The program unmaps registered memory behind the agent's back,
	 * then maps something else there: the scan must survive. */
	assert_int_equal(munmap(x, N * PS), 0);
	assert_true(mmap(x, N / 2 * PS, PROT_NONE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == x);
	rt_merge();
	assert_true(rt_is(y, N, 10));
	munmap(x, N / 2 * PS);
	sp_agent_unregister(A, x, N * PS);
	rt_release(y, N);
}

/* The VMAs of [p, p + pages), from /proc/self/maps. */
static int vmas_in(const char *p, size_t pages)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;

		if (sscanf(line, "%lx-%lx", &a, &b) == 2 &&
		    b > (uintptr_t)p && a < (uintptr_t)p + pages * PS)
			n++;
	}
	fclose(f);
	return n;
}

static void test_unmerge_returns_mappings(void **state)
{
	char *x = rt_map(NB);
	int merged;

	(void)state;
	/* Every other page identical: each merge is isolated and costs
	 * mappings; the pages between stay private. */
	for (size_t i = 0; i < NB; i++)
		rt_page(x + i * PS, 11, i % 2 ? i : 0);
	assert_int_equal(vmas_in(x, NB), 1);
	assert_int_equal(sp_agent_register(A, x, NB * PS), 0);
	rt_merge();
	merged = vmas_in(x, NB);
	assert_true(merged >= NB / 2);
	assert_true(rt_stats().pages_sharing > 0);
	/* MADV_UNMERGEABLE: the range is one anonymous mapping again, with
	 * its bytes, on distinct frames. */
	assert_int_equal(sp_agent_unregister(A, x, NB * PS), 0);
	assert_int_equal(vmas_in(x, NB), 1);
	assert_true(rt_astats().rebuilt >= NB / 2);
	for (size_t i = 0; i < NB; i++) {
		unsigned char want[PS];

		rt_page(want, 11, i % 2 ? i : 0);
		assert_memory_equal(x + i * PS, want, PS);
	}
	assert_int_not_equal(rt_pfn(x), rt_pfn(x + 2 * PS));
	/* It merges again, and run=2 gives the mappings back too. */
	assert_int_equal(sp_agent_register(A, x, NB * PS), 0);
	rt_merge();
	assert_true(vmas_in(x, NB) >= NB / 2);
	assert_int_equal(sp_agent_set_run(A, 2), 0);
	assert_int_equal(vmas_in(x, NB), 1);
	rt_release(x, NB);
}

#ifdef HAVE_LIBURING
/* Read page @k of @fd into fixed buffer @k through io_uring. */
static void read_fixed(struct io_uring *ring, int fd, void *buf, int k)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;

	io_uring_prep_read_fixed(sqe, fd, buf, PS, (off_t)k * PS, k);
	assert_int_equal(io_uring_submit(ring), 1);
	assert_int_equal(io_uring_wait_cqe(ring, &cqe), 0);
	assert_int_equal(cqe->res, PS);
	io_uring_cqe_seen(ring, cqe);
}
#endif

/*
 * Pages pinned for DMA survive unmerging: a merged page pinned after the
 * merge (registering it as an io_uring fixed buffer copies it first: a
 * private page inside the store mapping) and a private page pinned
 * beside it.  Unmerging must not replace either (a copy would miss what
 * the device writes next): a read through the pinned buffers afterwards
 * must show at the program's addresses.
 */
static void test_unmerge_keeps_pinned_pages(void **state)
{
#ifdef HAVE_LIBURING
	char *x = rt_map(N), *y = rt_map(N);
	char path[] = "/tmp/samepage-pin-XXXXXX";
	unsigned char data[2][PS];
	struct io_uring ring;
	struct iovec iov[2];
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	rt_page(data[0], 99, 0);
	rt_page(data[1], 99, 1);
	assert_int_equal(pwrite(fd, data, sizeof(data), 0), sizeof(data));
	rt_fill(x, N, 12);
	rt_fill(y, N, 12);
	memset(x + 5 * PS, 0x5a, PS);	/* unique: stays private */
	sp_agent_register(A, x, N * PS);
	sp_agent_register(A, y, N * PS);
	rt_merge();
	assert_int_equal(rt_pfn(x + 4 * PS), rt_pfn(y + 4 * PS));
	if (io_uring_queue_init(4, &ring, 0)) {
		rt_release(x, N);
		rt_release(y, N);
		skip();
	}
	iov[0] = (struct iovec){ x + 4 * PS, PS };	/* merged */
	iov[1] = (struct iovec){ x + 5 * PS, PS };	/* private */
	assert_int_equal(io_uring_register_buffers(&ring, iov, 2), 0);
	assert_int_not_equal(rt_pfn(x + 4 * PS), rt_pfn(y + 4 * PS));
	assert_int_equal(sp_agent_unregister(A, x, N * PS), 0);
	read_fixed(&ring, fd, x + 4 * PS, 0);
	read_fixed(&ring, fd, x + 5 * PS, 1);
	assert_memory_equal(x + 4 * PS, data[0], PS);
	assert_memory_equal(x + 5 * PS, data[1], PS);
	assert_true(rt_is(y, N, 12));
	io_uring_unregister_buffers(&ring);
	io_uring_queue_exit(&ring);
	close(fd);
	rt_release(x, N);
	rt_release(y, N);
#else
	(void)state;
	skip();
#endif
}

/*
 * A pass begins at most every 100 ms (advisor.h, SP_MIN_PASS_MS), so that
 * content rewritten faster never shows the same checksum twice.  The rule
 * holds from the first pass after an idle spell too: merge_now's three
 * passes begin at t, t + 100 ms and t + 200 ms at the earliest.  (This
 * is a lower bound that a slow machine cannot break, not a speed goal.)
 */
static void test_passes_keep_their_gap(void **state)
{
	char *x = rt_map(N), *y = rt_map(N);
	struct timespec t0, t1;
	double ms;

	(void)state;
	rt_fill(x, N, 13);
	rt_fill(y, N, 13);
	assert_int_equal(sp_agent_register(A, x, N * PS), 0);
	assert_int_equal(sp_agent_register(A, y, N * PS), 0);
	usleep(150 * 1000);	/* the last pass began long ago */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rt_merge();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
	     (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	print_message("3 passes over %d pages took %.1f ms\n", 2 * N, ms);
	assert_true(ms >= 200.0);
	assert_int_equal(rt_pfn(x), rt_pfn(y));
	assert_true(rt_is(x, N, 13) && rt_is(y, N, 13));
	rt_release(x, N);
	rt_release(y, N);
}

/*
 * A scanner with nothing to scan waits for a registration, as ksmd waits
 * for the first mm, and does not sleep sleep_millisecs first: after an
 * idle spell at a minute's sleep, the first pass over newly registered
 * memory must end long before the minute (the 20 s allowed is a bound
 * no slow machine comes near, not a speed goal).
 */
static void test_registration_wakes_idle_scanner(void **state)
{
	struct sp_engine *e = sp_agent_engine(A);
	char *x = rt_map(N), *y = rt_map(N);
	uint64_t sleep0, pts0, scans0;
	struct sp_stats st;
	struct timespec t0, t1;
	double ms = 0;

	(void)state;
	rt_fill(x, N, 17);
	rt_fill(y, N, 17);
	assert_int_equal(sp_knob_get(e, SP_KNOB_SLEEP_MILLISECS, &sleep0), 0);
	assert_int_equal(sp_knob_get(e, SP_KNOB_PAGES_TO_SCAN, &pts0), 0);
	assert_int_equal(sp_knob_set(e, SP_KNOB_SLEEP_MILLISECS, 60000), 0);
	assert_int_equal(sp_knob_set(e, SP_KNOB_PAGES_TO_SCAN, 4 * N), 0);
	assert_int_equal(sp_agent_set_run(A, 1), 0);
	usleep(300 * 1000);	/* idle passes, nothing registered */
	sp_stats_get(e, &st);
	scans0 = st.full_scans;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(sp_agent_register(A, x, N * PS), 0);
	assert_int_equal(sp_agent_register(A, y, N * PS), 0);
	while (ms < 20000) {
		sp_stats_get(e, &st);
		if (st.full_scans > scans0)
			break;
		usleep(1000);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		     (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	}
	print_message("first pass after registering ended after %.1f ms\n",
		      ms);
	assert_int_equal(sp_agent_set_run(A, 0), 0);
	assert_int_equal(sp_knob_set(e, SP_KNOB_SLEEP_MILLISECS, sleep0), 0);
	assert_int_equal(sp_knob_set(e, SP_KNOB_PAGES_TO_SCAN, pts0), 0);
	assert_true(st.full_scans > scans0);
	assert_true(rt_is(x, N, 17) && rt_is(y, N, 17));
	rt_release(x, N);
	rt_release(y, N);
}

/* Whether [p, p + pages) reads zeros. */
static int all_zero(const char *p, size_t pages)
{
	for (size_t i = 0; i < pages * PS; i++)
		if (p[i])
			return 0;
	return 1;
}

/*
 * mremap of merged memory behaves as of anonymous memory (KSM's is):
 * a range merged in part is several mappings, yet it moves and grows;
 * and a grown merged range reads zeros in its new part, not the store
 * pages that follow its own (here, another merged range's).
 */
static void test_remap_of_merged_ranges(void **state)
{
	char *x = rt_map(N), *y = rt_map(N / 2);
	char *a = rt_map(N), *b = rt_map(N), *c = rt_map(N), *d = rt_map(N);
	char *nx, *na;

	(void)state;
	rt_fill(x, N, 21);
	rt_fill(y, N / 2, 21);	/* copies of x's first half only */
	rt_fill(a, N, 22);
	rt_fill(b, N, 22);
	sp_agent_register(A, x, N * PS);
	sp_agent_register(A, y, N / 2 * PS);
	sp_agent_register(A, a, N * PS);
	sp_agent_register(A, b, N * PS);
	rt_merge();
	rt_fill(c, N, 23);	/* merged after a: the store pages after a's */
	rt_fill(d, N, 23);
	sp_agent_register(A, c, N * PS);
	sp_agent_register(A, d, N * PS);
	rt_merge();
	assert_int_equal(rt_pfn(x), rt_pfn(y));
	assert_int_equal(rt_pfn(a), rt_pfn(b));
	assert_int_equal(rt_pfn(c), rt_pfn(d));

	nx = sp_agent_remap(A, x, N * PS, 2 * N * PS, MREMAP_MAYMOVE, NULL);
	assert_true(nx != MAP_FAILED);
	assert_true(rt_is(nx, N, 21));
	assert_true(all_zero(nx + N * PS, N));
	na = sp_agent_remap(A, a, N * PS, 2 * N * PS, MREMAP_MAYMOVE, NULL);
	assert_true(na != MAP_FAILED);
	assert_true(rt_is(na, N, 22));
	assert_true(all_zero(na + N * PS, N));
	/* Both stay registered: they merge again. */
	rt_merge();
	assert_int_equal(rt_pfn(nx), rt_pfn(y));
	assert_int_equal(rt_pfn(na), rt_pfn(b));
	assert_true(rt_is(nx, N, 21) && rt_is(na, N, 22));
	assert_true(rt_is(c, N, 23) && rt_is(d, N, 23));
	rt_release(nx, 2 * N);
	rt_release(y, N / 2);
	rt_release(na, 2 * N);
	rt_release(b, N);
	rt_release(c, N);
	rt_release(d, N);
}

static int teardown_check(void **state)
{
	char why[512];

	(void)state;
	if (sp_engine_verify(sp_agent_engine(A), why, sizeof(why))) {
		fprintf(stderr, "engine verify: %s\n", why);
		return -1;
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_identical_pages_share_frames, teardown_check),
		cmocka_unit_test_teardown(test_write_gets_private_copy, teardown_check),
		cmocka_unit_test_teardown(test_kernel_writes_into_merged_pages, teardown_check),
		cmocka_unit_test_teardown(test_discard_gives_zeros, teardown_check),
		cmocka_unit_test_teardown(test_fork_after_merging, teardown_check),
		cmocka_unit_test_teardown(test_mremap_keeps_content, teardown_check),
		cmocka_unit_test_teardown(test_remap_of_merged_ranges, teardown_check),
		cmocka_unit_test_teardown(test_unmerge_restores_frames, teardown_check),
		cmocka_unit_test_teardown(test_run2_unmerges_all, teardown_check),
		cmocka_unit_test_teardown(test_zero_pages_release_rss, teardown_check),
		cmocka_unit_test_teardown(test_prot_none_ranges_merge, teardown_check),
		cmocka_unit_test_teardown(test_raw_unmap_is_survived, teardown_check),
		cmocka_unit_test_teardown(test_unmerge_returns_mappings, teardown_check),
		cmocka_unit_test_teardown(test_unmerge_keeps_pinned_pages, teardown_check),
		cmocka_unit_test_teardown(test_passes_keep_their_gap, teardown_check),
		cmocka_unit_test_teardown(test_registration_wakes_idle_scanner, teardown_check),
	};
	int r;

	rt_start_or_skip("test_real");
	r = cmocka_run_group_tests(tests, NULL, NULL);
	sp_agent_stop(A);
	return r;
}
