/*
 * test_store.c - samepaged's shared store (src/daemon/store.c): interning
 * deduplicates by bytes, the index finds every live page (across
 * rehashes), nominations pair two clients and only two, the segments
 * reach clients sealed against every way of writing, and reclaim frees
 * an unreferenced page only once no process maps it, then reuses its
 * slot.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "store.h"
#include "util/hash.h"

#define PS 4096u

static void fill(uint8_t *p, uint32_t seed)
{
	for (uint32_t i = 0; i < PS / 4; i++)
		((uint32_t *)(void *)p)[i] = seed * 2654435761u + i;
}

static int setup(void **state)
{
	struct store *st;

	if (store_new(&st))
		return -1;
	*state = st;
	return 0;
}

static int teardown(void **state)
{
	store_free(*state);
	return 0;
}

static void test_intern_dedup(void **state)
{
	struct store *st = *state;
	struct store_stats ss;
	uint8_t a[PS], b[PS];
	uint32_t ga, ga2, gb;

	fill(a, 1);
	fill(b, 2);
	assert_int_equal(store_intern(st, a, &ga), 0);
	assert_int_equal(store_intern(st, a, &ga2), 0);
	assert_int_equal(ga, ga2);
	assert_int_equal(store_intern(st, b, &gb), 0);
	assert_int_not_equal(ga, gb);
	assert_int_equal(store_nseg(st), 1);
	assert_true(store_live(st, ga) && store_live(st, gb));
	assert_int_equal(store_lookup(st, sp_hash_page(a)), ga);
	assert_int_equal(store_lookup(st, sp_hash_page(b)), gb);
	a[100] ^= 1;
	assert_int_equal(store_lookup(st, sp_hash_page(a)), ST_NONE);
	store_stats_get(st, &ss);
	assert_int_equal(ss.interned, 2);
	assert_int_equal(ss.deduped, 1);
	assert_int_equal(ss.live, 2);
	assert_true(ss.meta_bytes > 0);
	/* Ids that name nothing. */
	assert_false(store_live(st, st_gid(0, 1000)));
	assert_false(store_live(st, st_gid(5, 0)));
	store_ref(st, st_gid(5, 0));	/* ignored, no crash */
	store_unref(st, st_gid(0, 1000));
}

/* The bytes a client maps are the bytes interned. */
static void test_seg_content(void **state)
{
	struct store *st = *state;
	uint8_t a[PS];
	uint32_t g;
	int fd;
	uint8_t *m;

	fill(a, 7);
	assert_int_equal(store_intern(st, a, &g), 0);
	fd = store_seg_fd(st, g >> ST_SEG_SHIFT);
	assert_true(fd >= 0);
	m = mmap(NULL, PS, PROT_READ, MAP_PRIVATE, fd,
		 (off_t)(g & (ST_SEG_PAGES - 1)) * PS);
	assert_true(m != MAP_FAILED);
	assert_memory_equal(m, a, PS);
	munmap(m, PS);
	close(fd);
	assert_int_equal(store_seg_fd(st, 99), -EINVAL);
}

/* No fd a client can get writes the store, nor changes its size. */
static void test_sealed(void **state)
{
	struct store *st = *state;
	uint8_t a[PS], z[PS] = { 0 };
	char path[64];
	uint32_t g;
	int fd, rw;
	void *m;

	fill(a, 9);
	assert_int_equal(store_intern(st, a, &g), 0);
	fd = store_seg_fd(st, 0);
	assert_true(fd >= 0);
	errno = 0;
	assert_true(mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) ==
		    MAP_FAILED);
	assert_true(errno == EACCES || errno == EPERM);
	/* Through a reopened path, writable: still refused. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rw = open(path, O_RDWR);
	if (rw >= 0) {
		assert_true(pwrite(rw, z, PS, 0) < 0);
		assert_int_equal(errno, EPERM);
		errno = 0;
		m = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0);
		assert_true(m == MAP_FAILED);
		assert_true(fallocate(rw, FALLOC_FL_PUNCH_HOLE |
					      FALLOC_FL_KEEP_SIZE, 0, PS) < 0);
		assert_true(ftruncate(rw, PS) < 0);
		assert_true(fcntl(rw, F_ADD_SEALS, F_SEAL_WRITE) < 0);
		close(rw);
	}
	/* A private writable mapping is fine: the write is the process's
	 * own copy, the store keeps its bytes. */
	m = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
		 (off_t)(g & (ST_SEG_PAGES - 1)) * PS);
	assert_true(m != MAP_FAILED);
	memset(m, 0x55, PS);
	munmap(m, PS);
	m = mmap(NULL, PS, PROT_READ, MAP_PRIVATE, fd,
		 (off_t)(g & (ST_SEG_PAGES - 1)) * PS);
	assert_memory_equal(m, a, PS);
	munmap(m, PS);
	close(fd);
}

/* Enough pages for several rehashes: every one still found. */
static void test_many(void **state)
{
	struct store *st = *state;
	enum { N = 5000 };
	static uint32_t gid[N];
	uint8_t p[PS];

	for (uint32_t i = 0; i < N; i++) {
		fill(p, 1000 + i);
		assert_int_equal(store_intern(st, p, &gid[i]), 0);
	}
	for (uint32_t i = 0; i < N; i++) {
		uint32_t g;

		fill(p, 1000 + i);
		assert_int_equal(store_lookup(st, sp_hash_page(p)), gid[i]);
		assert_int_equal(store_intern(st, p, &g), 0);
		assert_int_equal(g, gid[i]);
	}
}

static void test_nominate(void **state)
{
	struct store *st = *state;
	uint64_t h = 0x123456789abcdefull;

	assert_int_equal(store_nominate(st, h, 1), 0);
	assert_int_equal(store_nominate(st, h, 1), 0);	/* same client */
	assert_int_equal(store_nominate(st, h, 2), 1);	/* a partner */
	assert_int_equal(store_nominate(st, h, 3), 0);	/* consumed */
	assert_int_equal(store_nominate(st, h, 4), 1);
	/* A client that left: its nominations pair with nobody. */
	assert_int_equal(store_nominate(st, h, 5), 0);
	store_forget_client(st, 5);
	assert_int_equal(store_nominate(st, h, 6), 0);
	assert_int_equal(store_nominate(st, h, 7), 1);
	/* Four hashes in one set (same low bits, other top bits), a fifth
	 * evicts one of them but the others still pair. */
	for (uint64_t k = 0; k < 4; k++)
		assert_int_equal(store_nominate(st, h + (k << 44), 1), 0);
	assert_int_equal(store_nominate(st, h + (4ull << 44), 1), 0);
	/* (bits 8-23 pick the set; bit 44 up is only in the entry) */
	{
		int paired = 0;

		for (uint64_t k = 0; k < 5; k++)
			paired += store_nominate(st, h + (k << 44), 2);
		assert_int_equal(paired, 4);
	}
}

/* The table grows (it starts at 2^16 entries) without forgetting: the
 * nominations made before four doublings still pair after them, but for
 * the few a full set evicted meanwhile. */
static void test_nominate_grow(void **state)
{
	struct store *st = *state;
	enum { KEEP = 2000, FILL = 1 << 19 };
	uint64_t x = 0x9e3779b97f4a7c15ull;
	unsigned paired = 0;

	for (uint64_t k = 0; k < KEEP; k++)
		assert_int_equal(store_nominate(st, (k + 1) * x, 11), 0);
	/* Many other hashes, from another client, make it grow four
	 * times; the table stays at most half full, so a kept one is
	 * evicted only from a set that filled up by chance. */
	for (uint64_t k = 0; k < FILL; k++)
		store_nominate(st, (k + 1) * 0xd6e8feb86659fd93ull ^
					   0x5555555555555555ull, 12);
	for (uint64_t k = 0; k < KEEP; k++)
		paired += (unsigned)store_nominate(st, (k + 1) * x, 13);
	/* Measured: 1802 of 2000 (sets filled by chance evict); a table
	 * that forgot when it grew keeps none. */
	assert_true(paired >= KEEP * 8 / 10);
}

enum { CLEAN, DIRTY, VIEW };

/* A child that maps slot @g of the store and waits: privately as program
 * memory does (CLEAN), then writing to it (DIRTY: a private copy), or
 * shared and read-only as an agent's view of the segment (VIEW). */
static pid_t mapper(struct store *st, uint32_t g, int how)
{
	int p[2], fd = store_seg_fd(st, g >> ST_SEG_SHIFT);
	pid_t pid;
	char c = 0;

	assert_true(fd >= 0);
	assert_int_equal(pipe(p), 0);
	pid = fork();
	if (!pid) {
		char *m;

		prctl(PR_SET_PDEATHSIG, SIGKILL);	/* no orphan on failure */
		m = mmap(NULL, PS, how == VIEW ? PROT_READ
						 : PROT_READ | PROT_WRITE,
			 how == VIEW ? MAP_SHARED : MAP_PRIVATE, fd,
			 (off_t)(g & (ST_SEG_PAGES - 1)) * PS);
		if (m == MAP_FAILED)
			_exit(1);
		if (how == DIRTY)
			m[0] ^= 1;
		else
			(void)*(volatile char *)m;	/* mapped, present */
		if (write(p[1], &c, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(fd);
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void test_reclaim(void **state)
{
	struct store *st = *state;
	uid_t me = getuid();
	struct store_stats ss;
	uint8_t a[PS], b[PS];
	uint32_t g, g2;
	pid_t pid;

	fill(a, 11);
	fill(b, 12);
	assert_int_equal(store_intern(st, a, &g), 0);
	store_ref(st, g);
	store_ref(st, g);
	/* Referenced: never freed. */
	assert_int_equal(store_reclaim(st, &me, 1), 0);
	store_unref(st, g);
	assert_int_equal(store_reclaim(st, &me, 1), 0);
	/* Unreferenced but mapped (not yet touched) by a process of the
	 * domain: kept. */
	pid = mapper(st, g, CLEAN);
	store_unref(st, g);
	store_stats_get(st, &ss);
	assert_int_equal(ss.pending, 1);
	assert_int_equal(store_reclaim(st, &me, 1), 0);
	assert_true(store_live(st, g));
	reap(pid);
	/* Taken again before reclaim: kept. */
	store_ref(st, g);
	assert_int_equal(store_reclaim(st, &me, 1), 0);
	store_unref(st, g);
	/* Nor does an agent's shared read-only view of the segment. */
	pid = mapper(st, g, VIEW);
	/* A process holding only a private copy cannot reach it. */
	{
		pid_t pid2 = mapper(st, g, DIRTY);

		assert_int_equal(store_reclaim(st, &me, 1), 1);
		reap(pid2);
	}
	reap(pid);
	assert_false(store_live(st, g));
	assert_int_equal(store_lookup(st, sp_hash_page(a)), ST_NONE);
	store_stats_get(st, &ss);
	assert_int_equal(ss.reclaimed, 1);
	assert_int_equal(ss.live, 0);
	/* The slot is reused, with the new bytes. */
	assert_int_equal(store_intern(st, b, &g2), 0);
	assert_int_equal(g2, g);
	assert_int_equal(store_lookup(st, sp_hash_page(b)), g);
	store_ref(st, g2);	/* refs start from 0 again */
	pid = mapper(st, g2, CLEAN);
	store_unref(st, g2);
	assert_int_equal(store_reclaim(st, &me, 1), 0);
	/* Processes of other uids are not looked at (the daemon never gave
	 * them an fd): for a domain of uid 65534 only, the page goes. */
	{
		uid_t nobody = 65534;

		if (me != nobody)
			assert_int_equal(store_reclaim(st, &nobody, 1), 1);
	}
	reap(pid);
}

/* Taken and dropped again while waiting for reclaim: freed once, and
 * its slot handed out once (a slot listed twice was freed twice). */
static void test_pending_twice(void **state)
{
	struct store *st = *state;
	uid_t nobody = 65534;
	uint8_t a[PS], b[PS], c[PS];
	uint32_t g, gb, gc;

	fill(a, 21);
	fill(b, 22);
	fill(c, 23);
	assert_int_equal(store_intern(st, a, &g), 0);
	for (int i = 0; i < 3; i++) {
		store_ref(st, g);
		store_unref(st, g);
	}
	assert_int_equal(store_reclaim(st, &nobody, 1), 1);
	assert_int_equal(store_reclaim(st, &nobody, 1), 0);
	assert_int_equal(store_intern(st, b, &gb), 0);
	assert_int_equal(store_intern(st, c, &gc), 0);
	assert_int_not_equal(gb, gc);
	assert_int_equal(store_lookup(st, sp_hash_page(b)), gb);
	assert_int_equal(store_lookup(st, sp_hash_page(c)), gc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_intern_dedup, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_seg_content, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sealed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nominate_grow, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_nominate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pending_twice, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
