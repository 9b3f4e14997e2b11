/*
 * test_store.c - samepaged's shared store (src/daemon/store.c): interning
 * deduplicates by bytes, the index finds every live page (across
 * rehashes), nominations pair two clients and only two, the directory
 * shows clients nominations and stored hashes (and grows), the segments
 * reach clients sealed against every way of writing, and reclaim frees
 * an unreferenced page only once no process maps it, then reuses its
 * slot, lowest slots first.
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

#include "procfs.h"
#include "proto.h"
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

/* Interning pages the store holds compares their bytes without mapping
 * them in the daemon: once flushed, its RSS of the store does not grow
 * by the pages it compared. */
static void test_dedup_unmapped(void **state)
{
	enum { N = 64 };
	struct store *st = *state;
	static uint8_t p[N * PS];
	uint32_t g[N], g2[N];
	long long before, after;
	int err;

	for (uint32_t i = 0; i < N; i++)
		fill(p + (size_t)i * PS, 500 + i);
	assert_int_equal(store_intern_many(st, p, N, g, &err), N);
	store_flush(st);
	before = proc_field(getpid(), "status", "RssShmem");
	if (before < 0)
		skip();
	assert_int_equal(store_intern_many(st, p, N, g2, &err), N);
	store_flush(st);
	after = proc_field(getpid(), "status", "RssShmem");
	assert_memory_equal(g, g2, sizeof(g));
	if (after - before >= N * PS / 1024 / 2)
		fail_msg("RssShmem %lld -> %lld kB after comparing %d pages",
			 before, after, N);
}

/* The bytes a client maps at @g. */
static void client_read(struct store *st, uint32_t g, uint8_t *out)
{
	int fd = store_seg_fd(st, g >> ST_SEG_SHIFT);
	uint8_t *m;

	assert_true(fd >= 0);
	m = mmap(NULL, PS, PROT_READ, MAP_PRIVATE, fd,
		 (off_t)(g & (ST_SEG_PAGES - 1)) * PS);
	assert_true(m != MAP_FAILED);
	memcpy(out, m, PS);
	munmap(m, PS);
	close(fd);
}

/* A batch: new pages get consecutive slots in order, a page equal to an
 * earlier one of the batch or to a stored one shares its page, and
 * every page maps with its bytes, including one whose slot a client had
 * read before it was written. */
static void test_intern_many(void **state)
{
	enum { N = 20 };
	struct store *st = *state;
	static uint8_t pages[N * PS], got[PS];
	struct store_stats ss;
	uint32_t gid[N], old, g;
	int err = 1;

	fill(pages, 500);
	assert_int_equal(store_intern(st, pages, &old), 0);
	for (uint32_t i = 0; i < N; i++)
		fill(pages + i * PS, 600 + i);
	memcpy(pages + 10 * PS, pages + 3 * PS, PS);	/* as page 3 */
	fill(pages + 11 * PS, 500);			/* as the stored one */
	assert_int_equal(store_intern_many(st, pages, N, gid, &err), N);
	assert_int_equal(err, 0);
	assert_int_equal(gid[10], gid[3]);
	assert_int_equal(gid[11], old);
	for (uint32_t i = 1; i < N; i++)
		if (i != 10 && i != 11)
			assert_int_equal(gid[i], gid[i == 12 ? 9 : i - 1] + 1);
	for (uint32_t i = 0; i < N; i++) {
		client_read(st, gid[i], got);
		assert_memory_equal(got, pages + i * PS, PS);
		assert_int_equal(store_lookup(st, sp_hash_page(pages + i * PS)),
				 gid[i]);
	}
	store_stats_get(st, &ss);
	assert_int_equal(ss.interned, 1 + N - 2);
	assert_int_equal(ss.deduped, 2);
	/* The next slot, read by a client while it is a hole, then
	 * written. */
	client_read(st, gid[N - 1] + 1, got);
	fill(pages, 700);
	assert_int_equal(store_intern(st, pages, &g), 0);
	assert_int_equal(g, gid[N - 1] + 1);
	client_read(st, g, got);
	assert_memory_equal(got, pages, PS);
	store_flush(st);
}

/* The bytes a client maps are the bytes interned. */
static void test_seg_content(void **state)
{
	struct store *st = *state;
	uint8_t a[PS], got[PS];
	uint32_t g;

	fill(a, 7);
	assert_int_equal(store_intern(st, a, &g), 0);
	client_read(st, g, got);
	assert_memory_equal(got, a, PS);
	assert_int_equal(store_seg_fd(st, 99), -EINVAL);
}

/* No fd a client can get writes the store, nor changes its size. */
static void test_sealed(void **state)
{
	struct store *st = *state;
	uint8_t a[PS], z[PS] = { 0 }, got[PS];
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
	client_read(st, g, got);
	assert_memory_equal(got, a, PS);
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

/* A store one page past a power of two does not pay for twice the
 * slots: the slot table grows by eighths (meta_bytes counts it). */
static void test_slot_growth(void **state)
{
	struct store *st = *state;
	struct store_stats a, b;
	uint8_t p[PS];
	uint32_t g;

	for (uint32_t i = 0; i < 8192; i++) {
		fill(p, 50000 + i);
		assert_int_equal(store_intern(st, p, &g), 0);
	}
	store_stats_get(st, &a);
	fill(p, 50000 + 8192);
	assert_int_equal(store_intern(st, p, &g), 0);
	store_stats_get(st, &b);
	assert_int_equal(b.live, 8193);
	/* 1/8 of 8192 slots of 16 bytes, and at most a bucket table's
	 * doubling (4 bytes per bucket, 2 slots per bucket), not 8192 more
	 * slots (128 KiB). */
	assert_true(b.meta_bytes - a.meta_bytes <= 1024 * 16 + 4096 * 4);
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
	/* 2 * SPP_DIR_WAYS hashes with the same two sets (they differ only
	 * in bits 56-63, which pick no set): one more evicts one of them,
	 * but the others still pair. */
	for (uint64_t k = 0; k < 2 * SPP_DIR_WAYS; k++)
		assert_int_equal(store_nominate(st, h + (k << 56), 1), 0);
	assert_int_equal(store_nominate(st, h + ((uint64_t)2 * SPP_DIR_WAYS << 56),
					 1), 0);
	{
		unsigned paired = 0;

		for (uint64_t k = 0; k <= 2 * SPP_DIR_WAYS; k++)
			paired += (unsigned)store_nominate(st, h + (k << 56), 2);
		assert_int_equal(paired, 2 * SPP_DIR_WAYS);
	}
}

/* The directory as a client sees it: read-only, sealed, and showing
 * nominations, then STORED once the page is in the store. */
static const uint64_t *dir_map(struct store *st, uint32_t *n, size_t *len)
{
	int fd = store_dir_fd(st, n);
	const uint64_t *m;

	assert_true(fd >= 0);
	*len = spp_dir_bytes(*n);
	/* No writable mapping, no write, through any fd of it. */
	assert_ptr_equal(mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED,
			      fd, 0), MAP_FAILED);
	assert_int_equal(write(fd, "x", 1), -1);
	m = mmap(NULL, *len, PROT_READ, MAP_SHARED, fd, 0);
	assert_ptr_not_equal(m, MAP_FAILED);
	close(fd);
	assert_int_equal(((const struct spp_dir_hdr *)m)->magic, SPP_DIR_MAGIC);
	assert_int_equal(((const struct spp_dir_hdr *)m)->entries, *n);
	return m;
}

/* Entries for @hash with tag @tag in a mapped directory. */
static unsigned dir_count(const uint64_t *m, uint32_t n, uint64_t hash,
			  uint64_t tag)
{
	const uint64_t *e = m + sizeof(struct spp_dir_hdr) / 8;
	unsigned c = 0;

	for (unsigned k = 0; k < 2; k++) {
		uint32_t s = spp_dir_set(hash, n, k);

		if (k && s == spp_dir_set(hash, n, 0))
			break;
		for (unsigned w = 0; w < SPP_DIR_WAYS; w++)
			c += e[s + w] == ((hash & SPP_DIR_HASH) | tag);
	}
	return c;
}

static void test_dir(void **state)
{
	struct store *st = *state;
	uint64_t t1 = spp_dir_tag(1), t2 = spp_dir_tag(2), hp;
	uid_t me = getuid();
	const uint64_t *m, *m2;
	uint8_t p[PS];
	uint32_t n, n2, g;
	size_t len, len2;

	fill(p, 77);
	hp = sp_hash_page(p);
	m = dir_map(st, &n, &len);
	assert_true(t1 != t2 && t1 != SPP_DIR_STORED && t1 != 0);
	/* One-way nominations: one client's shows once; a second
	 * client's turns it into one PAIRED entry. */
	store_propose(st, hp, 1);
	store_propose(st, hp, 1);
	assert_int_equal(dir_count(m, n, hp, t1), 1);
	store_propose(st, hp, 2);
	assert_int_equal(dir_count(m, n, hp, t1), 0);
	assert_int_equal(dir_count(m, n, hp, t2), 0);
	assert_int_equal(dir_count(m, n, hp, SPP_DIR_PAIRED), 1);
	store_propose(st, hp, 3);
	assert_int_equal(dir_count(m, n, hp, SPP_DIR_PAIRED), 1);
	/* Interned: the PAIRED entry gives way to one STORED entry. */
	assert_int_equal(store_intern(st, p, &g), 0);
	assert_int_equal(dir_count(m, n, hp, SPP_DIR_PAIRED), 0);
	assert_int_equal(dir_count(m, n, hp, SPP_DIR_STORED), 1);
	/* A client that missed it nominates: STORED is shown, not it. */
	store_propose(st, hp, 1);
	assert_int_equal(dir_count(m, n, hp, t1), 0);
	assert_int_equal(dir_count(m, n, hp, SPP_DIR_STORED), 1);
	/* Freed by reclaim: the entry goes with the page. */
	store_ref(st, g);
	store_unref(st, g);
	assert_int_equal(store_reclaim(st, &me, 1), 1);
	assert_int_equal(dir_count(m, n, hp, SPP_DIR_STORED), 0);
	/* A stale STORED entry (the page went, a LOOKUP missed) is
	 * replaced by the asker's nomination. */
	store_propose(st, hp, 2);
	assert_int_equal(store_nominate(st, hp, 1), 1);
	assert_int_equal(dir_count(m, n, hp, t2), 0);
	/* Growth: the old table says it is retired, the new one holds
	 * what the old one held. */
	store_propose(st, hp, 1);
	for (uint64_t k = 1; k <= n; k++)
		store_propose(st, k * 0x9e3779b97f4a7c15ull, 3);
	assert_int_equal(((const struct spp_dir_hdr *)m)->retired, 1);
	m2 = dir_map(st, &n2, &len2);
	assert_true(n2 > n);
	assert_int_equal(((const struct spp_dir_hdr *)m2)->retired, 0);
	assert_int_equal(dir_count(m2, n2, hp, t1), 1);
	munmap((void *)(uintptr_t)m, len);
	munmap((void *)(uintptr_t)m2, len2);
}

/* First looks (HINT): a hint alone leaves the directory as it was and
 * waits in the private table; a second client's hint, or nomination, of
 * the same hash makes one PAIRED entry; a stored hash gets its STORED
 * entry; an idle table is freed, and what it held is forgotten. */
static void test_hint(void **state)
{
	struct store *st = *state;
	uint64_t t1 = spp_dir_tag(1), h = 0x1234567890abcdefull;
	struct store_stats ss;
	const uint64_t *m;
	uint8_t p[PS];
	uint32_t n, g;
	size_t len;

#define H(k) (h ^ (uint64_t)(k) << 40)	/* distinct in the directory */
	m = dir_map(st, &n, &len);
	assert_true(t1 != SPP_DIR_PAIRED && spp_dir_tag(253) != SPP_DIR_PAIRED);
	store_hint(st, h, 1, 1000);
	store_hint(st, h, 1, 1000);
	assert_int_equal(dir_count(m, n, h, t1), 0);
	assert_int_equal(dir_count(m, n, h, SPP_DIR_PAIRED), 0);
	store_stats_get(st, &ss);
	assert_int_equal(ss.paired, 0);
	assert_true(ss.meta_bytes >= (uint64_t)ST_HINT_ENTRIES * 8);
	store_hint(st, h, 2, 1001);
	assert_int_equal(dir_count(m, n, h, SPP_DIR_PAIRED), 1);
	store_stats_get(st, &ss);
	assert_int_equal(ss.paired, 1);
	/* Taken out of the table: a third client's hint changes nothing. */
	store_hint(st, h, 3, 1002);
	assert_int_equal(dir_count(m, n, h, SPP_DIR_PAIRED), 1);
	store_stats_get(st, &ss);
	assert_int_equal(ss.paired, 1);

	/* A hint, then another client's nomination (its second look). */
	store_hint(st, H(1), 1, 1003);
	store_propose(st, H(1), 2);
	assert_int_equal(dir_count(m, n, H(1), SPP_DIR_PAIRED), 1);
	/* A nomination, then another client's hint. */
	store_propose(st, H(2), 1);
	assert_int_equal(dir_count(m, n, H(2), t1), 1);
	store_hint(st, H(2), 2, 1004);
	assert_int_equal(dir_count(m, n, H(2), t1), 0);
	assert_int_equal(dir_count(m, n, H(2), SPP_DIR_PAIRED), 1);
	/* Our own nomination, then our hint: nothing more. */
	store_propose(st, H(3), 1);
	store_hint(st, H(3), 1, 1005);
	assert_int_equal(dir_count(m, n, H(3), t1), 1);
	assert_int_equal(dir_count(m, n, H(3), SPP_DIR_PAIRED), 0);

	/* A stored content: its hint shows STORED (to LOOKUP next time). */
	fill(p, 91);
	assert_int_equal(store_intern(st, p, &g), 0);
	store_ref(st, g);
	store_hint(st, sp_hash_page(p), 1, 1006);
	assert_int_equal(dir_count(m, n, sp_hash_page(p), SPP_DIR_STORED), 1);

	/* Idle for ST_HINT_IDLE_MS: the table goes, with its hints. */
	store_hint(st, H(4), 1, 2000);
	assert_int_equal(store_hints_expire(st, 2000 + ST_HINT_IDLE_MS - 1), 1);
	assert_int_equal(store_hints_expire(st, 2000 + ST_HINT_IDLE_MS), 0);
	store_stats_get(st, &ss);
	assert_true(ss.meta_bytes < (uint64_t)ST_HINT_ENTRIES * 8);
	store_hint(st, H(4), 2, 3000);
	assert_int_equal(dir_count(m, n, H(4), SPP_DIR_PAIRED), 0);
	munmap((void *)(uintptr_t)m, len);
#undef H
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
	/* Many other hashes, from another client, make it grow three
	 * times; the table stays at most 13/16 full, so a kept one is
	 * evicted only when both its sets filled up by chance. */
	for (uint64_t k = 0; k < FILL; k++)
		store_nominate(st, (k + 1) * 0xd6e8feb86659fd93ull ^
					   0x5555555555555555ull, 12);
	for (uint64_t k = 0; k < KEEP; k++)
		paired += (unsigned)store_nominate(st, (k + 1) * x, 13);
	/* Measured: 2000 of 2000 (two sets of eight, 13/16 full at most,
	 * and at 3/4);
	 * one set of four, half full: 1802; a table that forgot when it
	 * grew keeps none. */
	assert_true(paired >= KEEP * 99 / 100);
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

/* Slots freed by reclaim are reused lowest first: pages interned
 * together after a reclaim get ascending slots (one mapping, one VMA, in
 * a client that maps them in order). */
static void test_reuse_ascending(void **state)
{
	struct store *st = *state;
	uid_t nobody = 65534;
	uint8_t p[PS];
	uint32_t g[8], h;

	for (uint32_t i = 0; i < 8; i++) {
		fill(p, 100 + i);
		assert_int_equal(store_intern(st, p, &g[i]), 0);
		assert_int_equal(g[i], g[0] + i);
	}
	/* Free 1, 2, 3 and 6, dropped in an order of their own. */
	for (uint32_t k = 0; k < 4; k++) {
		uint32_t i = (uint32_t[]){ 6, 2, 3, 1 }[k];

		store_ref(st, g[i]);
		store_unref(st, g[i]);
	}
	assert_int_equal(store_reclaim(st, &nobody, 1), 4);
	for (uint32_t i = 0; i < 4; i++) {
		fill(p, 200 + i);
		assert_int_equal(store_intern(st, p, &h), 0);
		assert_int_equal(h, g[0] + (i < 3 ? 1 + i : 6));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_intern_dedup, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dedup_unmapped, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_intern_many, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_seg_content, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sealed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_growth, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_nominate_grow, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reuse_ascending, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_nominate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pending_twice, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
