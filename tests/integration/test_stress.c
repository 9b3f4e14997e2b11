/*
 * test_stress.c - no write is ever lost while merging runs flat out.
 *
 * A region full of duplicate pages is registered; the scanner runs at
 * full speed (pages_to_scan 1024, sleep 0).  Writer threads, each owning
 * every W-th page, loop for SP_STRESS_SECONDS (default 10):
 *   - change a few bytes of a page and restore it (CPU writes),
 *   - read(2) from a pipe into a page, pread(2) from a file into one
 *     (kernel-mode writes), O_DIRECT reads where the filesystem has them,
 *   - READ_FIXED through io_uring into pages registered as fixed buffers
 *     (pinned for DMA: the merger must refuse them),
 *   - discard a page (it reads zeros) and write it back, so that pages
 *     become mergeable again and merges keep racing the writers,
 * while, every 3 s, the whole region is unmerged (alternately
 * MADV_UNMERGEABLE and run=2: its merged runs and the pages between
 * them are rebuilt as one anonymous mapping, pinned pages refusing)
 * and then merged again,
 * and check every write right after it lands: the page must hold exactly
 * what its writer put there.  Each writer works a moving window of its
 * pages, so that the rest stay unchanged long enough to merge and the
 * window keeps arriving on freshly merged pages; when it moves on, its
 * pages are discarded and written back, which makes them mergeable again
 * (a page written while merged keeps a private copy in the store mapping
 * until discarded).  At the end every byte is checked again.
 *
 * "A race that never happened proves nothing": the run reports how many
 * writes hit a page that was merged at that moment (pagemap shows the
 * file page), how many accesses waited on a page the merger held (the
 * fault messages on its userfaultfd), and the engine's merge races
 * (verifications that failed because a writer got there first); it
 * fails if merges never met the writers.
 *
 * With SP_STRESS_FLAGS=1 the region is MADV_DONTFORK (as QEMU's guest
 * RAM) and its middle half MADV_DONTDUMP: merges, discards and unmerges
 * must keep both flags exactly where they were (checked at every unmerge
 * and at the end), and a child forked while merging runs must not get
 * the region.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#ifdef HAVE_LIBURING
#include <liburing.h>
#endif

#include <sys/wait.h>

#include "rt.h"
#include "../vmflags.h"

#define NPAGE 4096		/* 16 MiB; pages i and i + NPAGE/2 are equal */
#define NWRITER 3
#define NPIN 8			/* pages per writer pinned as fixed buffers */
#define WINDOW 32		/* pages a writer works on at a time */
#define WINDOW_OPS 2000		/* operations before the window moves */

static char *region;
static uint64_t expect_seed[NPAGE];	/* content = rt_page(seed, i) */
static _Atomic int stop;
static char tmpdir[64] = "/tmp";

struct wstats {
	uint64_t writes, into_merged, waited, kernel_writes, dio, fixed_io;
	uint64_t discards, into_zero, bad;
	char why[160];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The base content of page i: pages i and i + NPAGE/2 are equal. */
static uint64_t base_seed(size_t i)
{
	(void)i;
	return 1000;
}

static size_t base_index(size_t i)
{
	return i % (NPAGE / 2);
}

/* Every eighth pair is zero-filled: those merge by release to the
 * kernel's zero page (use_zero_pages 0: counted as KSM's merges). */
static int base_zero(size_t i)
{
	return base_index(i) % 8 == 7;
}

static void page_of(void *buf, uint64_t seed, size_t i)
{
	if (seed == 1000 && base_zero(i))
		memset(buf, 0, PS);
	else
		rt_page(buf, seed, seed == 1000 ? base_index(i) : i);
}

static uint64_t zero_pfn;	/* the kernel's zero page, 0 if PFNs hidden */

static uint64_t pagemap_of(int pm, const void *p)
{
	uint64_t e = 0;

	if (pread(pm, &e, 8, (off_t)((uintptr_t)p / PS) * 8) != 8)
		return 0;
	return e;
}

static int merged_now(int pm, const void *p)
{
	uint64_t e = pagemap_of(pm, p);

	return (e >> 63) & 1 ? (int)((e >> 61) & 1) : 0;
}

/* Page @p was released: no page there, or the kernel's zero page. */
static int released_now(int pm, const void *p)
{
	uint64_t e = pagemap_of(pm, p);

	if (!((e >> 63) & 1))
		return !((e >> 62) & 1);	/* neither present nor swapped */
	return zero_pfn && (e & ((1ull << 55) - 1)) == zero_pfn;
}

/* Check page @i holds @seed's content with @patch at @off (len bytes). */
static int check(struct wstats *ws, size_t i, const void *patch, size_t off,
		 size_t len, const char *what)
{
	unsigned char want[PS];

	page_of(want, expect_seed[i], i);
	if (patch)
		memcpy(want + off, patch, len);
	if (memcmp(region + i * PS, want, PS)) {
		ws->bad++;
		snprintf(ws->why, sizeof(ws->why), "page %zu wrong after %s", i,
			 what);
		return -1;
	}
	return 0;
}

static void restore(size_t i)
{
	unsigned char b[PS];

	page_of(b, expect_seed[i], i);
	memcpy(region + i * PS, b, PS);
}

struct writer {
	unsigned id;
	struct wstats st;
	pthread_t t;
};

static void *writer(void *arg)
{
	struct writer *w = arg;
	struct wstats *ws = &w->st;
	unsigned seed = 12345 + w->id;
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int pfd[2], fd, dfd = -1;
	char path[128];
	unsigned char data[PS] __attribute__((aligned(PS)));
	size_t mine = NPAGE / NWRITER;
#ifdef HAVE_LIBURING
	struct io_uring ring;
	struct iovec iov[NPIN];
	int ring_ok = 0;
#endif

	if (pm < 0 || pipe(pfd))
		return NULL;
	snprintf(path, sizeof(path), "%s/sp-stressXXXXXX", tmpdir);
	fd = mkstemp(path);
	for (size_t k = 0; k < PS; k++)
		data[k] = (unsigned char)(k * 7 + w->id);
	if (fd < 0 || write(fd, data, PS) != PS)
		return NULL;
	dfd = open(path, O_RDONLY | O_DIRECT);
	if (dfd >= 0 && pread(dfd, data, PS, 0) != PS) {
		close(dfd);	/* no O_DIRECT here (tmpfs, overlay): skip it */
		dfd = -1;
	}
	unlink(path);
#ifdef HAVE_LIBURING
	/* Pin a few of our pages as fixed buffers: they stay pinned for the
	 * whole run, so the merger must never replace them. */
	if (io_uring_queue_init(4, &ring, 0) == 0) {
		for (unsigned k = 0; k < NPIN; k++) {
			size_t i = w->id + (size_t)k * NWRITER;

			iov[k].iov_base = region + i * PS;
			iov[k].iov_len = PS;
		}
		ring_ok = io_uring_register_buffers(&ring, iov, NPIN) == 0;
	}
#endif
	size_t wstart = 0, ops = 0;

	REGION_ACCESS_BEGIN();
	while (!atomic_load(&stop)) {
		size_t i;

		if (++ops % WINDOW_OPS == 0) {
			/* Move on: give the window's pages back to merging. */
			static const unsigned char zero[PS];

			for (size_t k = 0; k < WINDOW; k++) {
				size_t j = w->id + ((wstart + k) % mine) * NWRITER;

				if (j < (size_t)NPIN * NWRITER || j >= NPAGE)
					continue;	/* pinned: never discard */
				if (sp_agent_discard(A, region + j * PS, PS) ||
				    memcmp(region + j * PS, zero, PS)) {
					ws->bad++;
					snprintf(ws->why, sizeof(ws->why),
						 "page %zu not zero after discard", j);
					goto out;
				}
				restore(j);
				ws->discards++;
				if (check(ws, j, NULL, 0, 0, "discard and restore"))
					goto out;
			}
			wstart = (size_t)rand_r(&seed) % mine;
		}
		i = w->id + ((wstart + (size_t)rand_r(&seed) % WINDOW) % mine) *
				    NWRITER;
		char *p = region + i * PS;
		unsigned action = (unsigned)rand_r(&seed) % 16;
		size_t off = (size_t)(rand_r(&seed) % (PS - 64));
		unsigned char patch[64];
		uint64_t t0;
		int was_merged, was_released;

		if (i >= NPAGE)
			continue;
		was_merged = merged_now(pm, p);
		was_released = base_zero(i) && released_now(pm, p);
		for (size_t k = 0; k < sizeof(patch); k++)
			patch[k] = (unsigned char)rand_r(&seed);
		t0 = now_ns();
		if (action < 8) {
			memcpy(p + off, patch, 64);
		} else if (action < 10) {
			if (write(pfd[1], patch, 64) != 64 ||
			    read(pfd[0], p + off, 64) != 64)
				break;
			ws->kernel_writes++;
		} else if (action < 11) {
			if (pwrite(fd, patch, 64, 0) != 64 ||
			    pread(fd, p + off, 64, 0) != 64)
				break;
			ws->kernel_writes++;
		} else if (action < 12 && dfd >= 0) {
			/* A whole page by O_DIRECT (the device writes it). */
			memcpy(data, p, PS);
			memcpy(data + off, patch, 64);
			if (pwrite(fd, data, PS, 0) != PS || fsync(fd) ||
			    pread(dfd, p, PS, 0) != PS)
				break;
			ws->dio++;
#ifdef HAVE_LIBURING
		} else if (action < 13 && ring_ok) {
			unsigned k = (unsigned)rand_r(&seed) % NPIN;
			struct io_uring_sqe *sqe;
			struct io_uring_cqe *cqe;

			i = w->id + (size_t)k * NWRITER;
			p = region + i * PS;
			memcpy(data, p, PS);
			memcpy(data + off, patch, 64);
			if (pwrite(fd, data, PS, 0) != PS)
				break;
			sqe = io_uring_get_sqe(&ring);
			io_uring_prep_read_fixed(sqe, fd, p, PS, 0, (int)k);
			io_uring_submit(&ring);
			if (io_uring_wait_cqe(&ring, &cqe) || cqe->res != PS)
				break;
			io_uring_cqe_seen(&ring, cqe);
			ws->fixed_io++;
#endif
		} else {
			memcpy(p + off, patch, 64);
		}
		if (now_ns() - t0 > 200000)
			ws->waited++;	/* long enough to have met a hold */
		ws->writes++;
		ws->into_merged += was_merged;
		ws->into_zero += was_released;
		if (check(ws, i, patch, off, 64, "a write"))
			break;
		restore(i);
		if (check(ws, i, NULL, 0, 0, "restoring it"))
			break;
	}
out:
	REGION_ACCESS_END();
#ifdef HAVE_LIBURING
	if (ring_ok)
		io_uring_unregister_buffers(&ring);
	io_uring_queue_exit(&ring);
#endif
	close(pm);
	close(pfd[0]);
	close(pfd[1]);
	close(fd);
	if (dfd >= 0)
		close(dfd);
	return NULL;
}

/* SP_STRESS_FLAGS: DONTFORK over the region, DONTDUMP over its middle
 * half, nothing else; and a child forked now does not get the region. */
static void check_flags(void)
{
	size_t q = NPAGE / 4 * PS;
	pid_t pid;
	int st;

	if (!vmas_flag(region, NPAGE * PS, "dc", 1))
		fail_msg("merging lost a DONTFORK flag");
	if (!vmas_flag(region, q, "dd", 0) ||
	    !vmas_flag(region + 3 * q, q, "dd", 0))
		fail_msg("merging set DONTDUMP where it was not");
	if (!vmas_flag(region + q, 2 * q, "dd", 1))
		fail_msg("merging lost a DONTDUMP flag");
#ifndef __SANITIZE_THREAD__
	/* (TSan cannot follow a child of a threaded process that starts
	 * threads, as the child's agent does.) */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(msync(region, PS, 0) == -1 && errno == ENOMEM &&
		      msync(region + (NPAGE - 1) * PS, PS, 0) == -1 ? 0 : 1);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_msg("a child got the DONTFORK region (status %#x)", st);
#else
	(void)pid;
	(void)st;
#endif
}

static void test_no_write_lost(void **state)
{
	struct writer w[NWRITER];
	struct wstats tot = { 0 };
	struct sp_stats st;
	struct sp_agent_stats as;
	const char *env = getenv("SP_STRESS_SECONDS");
	unsigned seconds = env ? (unsigned)atoi(env) : 10;
	uint64_t peak_sharing = 0, peak_zero = 0;
	unsigned unmerges = 0;
	uint64_t unmerge_ns = 0;
	char why[256];
	int flags;

	(void)state;
	region = rt_map(NPAGE);
	{
		int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		char *t = rt_map(1);
		volatile char c = t[0];	/* maps the zero page */

		(void)c;
		zero_pfn = pm >= 0 ? pagemap_of(pm, t) & ((1ull << 55) - 1) : 0;
		if (pm >= 0)
			close(pm);
		rt_release(t, 1);
	}
	for (size_t i = 0; i < NPAGE; i++) {
		expect_seed[i] = base_seed(i);
		restore(i);
	}
	assert_int_equal(sp_knob_set(sp_agent_engine(A), SP_KNOB_PAGES_TO_SCAN,
				     1024), 0);
	assert_int_equal(sp_knob_set(sp_agent_engine(A), SP_KNOB_SLEEP_MILLISECS,
				     0), 0);
	flags = getenv("SP_STRESS_FLAGS") && atoi(getenv("SP_STRESS_FLAGS"));
	if (flags) {
		assert_int_equal(madvise(region, NPAGE * PS, MADV_DONTFORK), 0);
		assert_int_equal(madvise(region + NPAGE / 4 * PS, NPAGE / 2 * PS,
					 MADV_DONTDUMP), 0);
	}
	assert_int_equal(sp_agent_register(A, region, NPAGE * PS), 0);
	assert_int_equal(sp_agent_set_run(A, 1), 0);
	for (unsigned k = 0; k < NWRITER; k++) {
		memset(&w[k], 0, sizeof(w[k]));
		w[k].id = k;
		assert_int_equal(pthread_create(&w[k].t, NULL, writer, &w[k]), 0);
	}
	for (unsigned s = 0; s < seconds * 10; s++) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		st = rt_stats();
		if (st.pages_sharing > peak_sharing)
			peak_sharing = st.pages_sharing;
		if (st.zero_merged > peak_zero)
			peak_zero = st.zero_merged;
		/* Every 3 s, unmerge everything under the writers' feet
		 * (MADV_UNMERGEABLE, or KSM's run=2), then merge on. */
		if (s % 30 == 29) {
			uint64_t u0 = now_ns();

			if ((s / 30) % 2) {
				assert_int_equal(sp_agent_set_run(A, 2), 0);
				assert_int_equal(sp_agent_set_run(A, 1), 0);
			} else {
				assert_int_equal(sp_agent_unregister(A, region,
								     NPAGE * PS), 0);
				assert_int_equal(sp_agent_register(A, region,
								   NPAGE * PS), 0);
			}
			unmerges++;
			unmerge_ns += now_ns() - u0;
			if (flags)
				check_flags();
		}
	}
	atomic_store(&stop, 1);
	for (unsigned k = 0; k < NWRITER; k++) {
		pthread_join(w[k].t, NULL);
		if (w[k].st.bad)
			fail_msg("writer %u: %s", k, w[k].st.why);
		tot.writes += w[k].st.writes;
		tot.into_merged += w[k].st.into_merged;
		tot.waited += w[k].st.waited;
		tot.kernel_writes += w[k].st.kernel_writes;
		tot.dio += w[k].st.dio;
		tot.fixed_io += w[k].st.fixed_io;
		tot.discards += w[k].st.discards;
		tot.into_zero += w[k].st.into_zero;
	}
	assert_int_equal(sp_agent_set_run(A, 0), 0);
	/* Every byte, once more. */
	for (size_t i = 0; i < NPAGE; i++) {
		unsigned char want[PS];

		page_of(want, expect_seed[i], i);
		if (memcmp(region + i * PS, want, PS))
			fail_msg("page %zu wrong at the end", i);
	}
	if (flags)
		check_flags();
	st = rt_stats();
	as = rt_astats();
	print_message("%u s: %llu writes (%llu by the kernel: read/pread, "
		      "%llu O_DIRECT, %llu io_uring fixed-buffer reads), "
		      "%llu discards\n",
		      seconds, (unsigned long long)tot.writes,
		      (unsigned long long)tot.kernel_writes,
		      (unsigned long long)tot.dio,
		      (unsigned long long)tot.fixed_io,
		      (unsigned long long)tot.discards);
	print_message("overlap: %llu writes hit a merged page, %llu accesses "
		      "waited on a held page, %llu merges lost a race to a "
		      "writer, %llu writes took over 200 us; %llu pages moved "
		      "out, %llu move-outs refused (pinned or changing), peak "
		      "pages_sharing %llu; %llu writes hit a zero-filled page "
		      "released to the zero page, peak %llu such pages\n",
		      (unsigned long long)tot.into_merged,
		      (unsigned long long)as.held_waits,
		      (unsigned long long)st.merge_races,
		      (unsigned long long)tot.waited,
		      (unsigned long long)as.moves,
		      (unsigned long long)as.moves_refused,
		      (unsigned long long)peak_sharing,
		      (unsigned long long)tot.into_zero,
		      (unsigned long long)peak_zero);
	print_message("unmerged everything %u times under the writers (%.1f ms "
		      "each): %llu pages rebuilt as plain anonymous memory\n",
		      unmerges, unmerges ? unmerge_ns / 1e6 / unmerges : 0.0,
		      (unsigned long long)as.rebuilt);
	if (sp_engine_verify(sp_agent_engine(A), why, sizeof(why)))
		fail_msg("engine verify: %s", why);
	assert_true(tot.writes > 0);
	/* The races must have happened for the run to mean anything. */
	assert_true(tot.into_merged > 0);
	assert_true(as.held_waits > 0 || st.merge_races > 0);
	assert_true(peak_sharing > 0);
	assert_true(peak_zero > 0 && tot.into_zero > 0);
	assert_true(unmerges == 0 || as.rebuilt > 0);
#ifdef HAVE_LIBURING
	assert_true(tot.fixed_io > 0);
	assert_true(as.moves_refused > 0);
#endif
	rt_release(region, NPAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_write_lost),
	};
	const char *d = getenv("SP_STRESS_DIR");
	int r;

	if (d)
		snprintf(tmpdir, sizeof(tmpdir), "%s", d);
	rt_start_or_skip("test_stress");
	r = cmocka_run_group_tests(tests, NULL, NULL);
	sp_agent_stop(A);
	return r;
}
