/*
 * dir.c - samepaged's directory: nominations and stored hashes in a table
 * that clients read without asking (see dir.h and proto.h).
 *
 * Why it is shared.  Most hashes a client asks about are in no other
 * process (a page of its own data).  When every such question was a
 * LOOKUP, each window of the scan waited for a round trip to the daemon
 * (100-250 us on a 2-CPU machine, much of it waking idle CPUs), and a
 * process's first passes were mostly that wait.  Reading the table, a
 * client sends only what needs an answer, and its nominations go one way.
 *
 * Placement.  Two sets of SPP_DIR_WAYS entries per hash (spp_dir_set),
 * both picked by hash bits that an entry keeps, so a doubled table
 * places every entry again.  An entry goes to the emptier set; so
 * placed, a set overflows rarely even three quarters full.  The table
 * grows past 13/16 full (simulated with random hashes, sets of eight,
 * filling from empty: 0.001% of insertions evict by three quarters
 * full, 0.035% by 13/16, 0.33% by 7/8; two sets of four evicted 0.7% by
 * three quarters, and a single set of four evicted enough at half full
 * to slow the headline convergence: each evicted nomination of a shared
 * page costs its pair a pass or more).  Growing at 13/16 rather than
 * 3/4 keeps a table that is just 3/4 full (the headline workload's, for
 * one) from doubling, for a few more evictions near the top.
 *
 * What an overflow costs.  Not all entries are worth the same: a lost
 * nomination costs its page a pass at most if another process has it
 * too, but a lost PAIRED or STORED entry is a hash two processes are
 * known to share, and both then wait a pass (on the headline workload,
 * 23 of 65,536 PAIRED entries were overwritten just before the table
 * doubled in the first pass, and their pages merged in a third pass,
 * 0.06-0.1 s after the rest, with all memory hashed once more).  So a
 * full pair of sets gives up a nomination; only when both hold nothing
 * else does the table grow first (if at least half full), and at its
 * max (or below half full) the clock picks.
 *
 * Rewriting.  Clients read the table while we write it, so a hash that
 * changes tag (nominated -> PAIRED -> STORED) is rewritten in the way
 * it holds (dir_set), never dropped and put again: a client that read
 * between the two once saw the hash unknown and its page, whose partner
 * was merging at that very moment, waited a pass.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dir.h"

static void store_entry(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* A new sealed table of @n empty entries in @d (which is overwritten). */
static int table_new(struct dir *d, uint32_t n)
{
	size_t len = spp_dir_bytes(n);
	void *map;
	int fd, err;

	fd = memfd_create("samepage-directory", MFD_CLOEXEC |
			  MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len))
		goto fail;
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		goto fail;
	/* Ours is the only writable mapping there will ever be. */
	if (madvise(map, len, MADV_DONTFORK) ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_GROW |
				   F_SEAL_SHRINK | F_SEAL_SEAL)) {
		err = -errno;
		munmap(map, len);
		close(fd);
		return err;
	}
	d->fd = fd;
	d->hdr = map;
	d->hdr->magic = SPP_DIR_MAGIC;
	d->hdr->entries = n;
	d->e = (uint64_t *)(void *)(d->hdr + 1);
	d->n = n;
	d->used = 0;
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

static void table_free(struct dir *d)
{
	if (d->fd < 0)
		return;
	munmap(d->hdr, spp_dir_bytes(d->n));
	close(d->fd);
	d->fd = -1;
}

int dir_init(struct dir *d, uint32_t n, uint32_t max)
{
	memset(d, 0, sizeof(*d));
	d->fd = -1;
	if (n < 2 * SPP_DIR_WAYS || (n & (n - 1)) || max < n ||
	    max > SPP_DIR_MAX)
		return -EINVAL;
	d->max = max;
	return table_new(d, n);
}

void dir_free(struct dir *d)
{
	table_free(d);
}

int dir_fd(const struct dir *d)
{
	char path[64];
	int fd;

	if (d->fd < 0)
		return -ENOENT;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", d->fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

uint64_t dir_find(const struct dir *d, uint64_t hash, uint64_t mine)
{
	return spp_dir_find(d->e, d->n, hash, mine);
}

static unsigned empty_ways(const uint64_t *s)
{
	unsigned k = 0;

	for (unsigned w = 0; w < SPP_DIR_WAYS; w++)
		k += !s[w];
	return k;
}

/* Whether entry @e says more than "one process has it": a PAIRED or
 * STORED hash, which costs pages a pass or more of merging if lost. */
static int precious(uint64_t e)
{
	uint64_t t = e & ~SPP_DIR_HASH;

	return t == SPP_DIR_PAIRED || t == SPP_DIR_STORED;
}

/* The way of the full sets @s to overwrite: a nomination if there is
 * one (the clock picks where the search starts), else the clock's way. */
static uint64_t *victim(struct dir *d, uint64_t *const s[2])
{
	uint64_t c = ++d->clock;

	for (unsigned i = 0; i < 2 * SPP_DIR_WAYS; i++) {
		uint64_t j = c + i;
		uint64_t *e = &s[j & 1][(j >> 1) % SPP_DIR_WAYS];

		if (!precious(*e))
			return e;
	}
	return &s[c & 1][(c >> 1) % SPP_DIR_WAYS];
}

static void sets_of(struct dir *d, uint64_t v, uint64_t *s[2])
{
	s[0] = &d->e[spp_dir_set(v, d->n, 0)];
	s[1] = &d->e[spp_dir_set(v, d->n, 1)];
}

/* Place entry @v in table @d (no duplicate check): in the emptier of its
 * two sets, else over a victim().  Return: 1 if it took an empty way, 0
 * if it evicted one. */
static int place(struct dir *d, uint64_t v)
{
	uint64_t *s[2];
	unsigned k;

	sets_of(d, v, s);
	k = empty_ways(s[1]) > empty_ways(s[0]);
	for (unsigned w = 0; w < SPP_DIR_WAYS; w++)
		if (!s[k][w]) {
			store_entry(&s[k][w], v);
			return 1;
		}
	store_entry(victim(d, s), v);
	return 0;
}

/* Whether placing @v in @d now would overwrite a precious entry. */
static int would_lose(struct dir *d, uint64_t v)
{
	uint64_t *s[2];

	sets_of(d, v, s);
	for (unsigned k = 0; k < 2; k++)
		for (unsigned w = 0; w < SPP_DIR_WAYS; w++)
			if (!s[k][w] || !precious(s[k][w]))
				return 0;
	return 1;
}

/* Double the table into a new memfd, every entry kept; retire the old. */
static void grow(struct dir *d)
{
	struct dir old = *d, nd;

	if (d->n * 2 > d->max || table_new(&nd, d->n * 2))
		return;
	nd.clock = old.clock;
	nd.max = old.max;
	for (uint32_t i = 0; i < old.n; i++)
		if (old.e[i])
			nd.used += (uint32_t)place(&nd, old.e[i]);
	*d = nd;
	__atomic_store_n(&old.hdr->retired, 1, __ATOMIC_RELEASE);
	table_free(&old);
}

void dir_put(struct dir *d, uint64_t hash, uint64_t tag)
{
	uint64_t v = (hash & SPP_DIR_HASH) | tag, *s[2];

	sets_of(d, v, s);
	for (unsigned k = 0; k < 2; k++)
		for (unsigned w = 0; w < SPP_DIR_WAYS; w++)
			if (s[k][w] == v)
				return;
	/* Grown early rather than lose a PAIRED or STORED entry: one
	 * lost cost the headline workload its last 23 pairs' merges a
	 * whole pass (0.08 s of 0.5, and a third pass over all memory).
	 * Only from half full: a client can make hashes that share their
	 * sets, and 17 of them must not double an empty table. */
	if (d->n * 2 <= d->max && d->used >= d->n / 2 && would_lose(d, v))
		grow(d);
	d->used += (uint32_t)place(d, v);
	if (d->used > d->n / 16 * 13)
		grow(d);
}

void dir_set(struct dir *d, uint64_t hash, uint64_t tag)
{
	uint64_t v = (hash & SPP_DIR_HASH) | tag, *s[2];
	unsigned sets;
	int done = 0;

	sets_of(d, v, s);
	/* A hash's two sets may be one: visited twice, its overwritten
	 * entry would be dropped as another. */
	sets = s[0] == s[1] ? 1 : 2;
	for (unsigned k = 0; k < sets; k++) {
		for (unsigned w = 0; w < SPP_DIR_WAYS; w++) {
			if (!s[k][w] ||
			    (s[k][w] & SPP_DIR_HASH) != (hash & SPP_DIR_HASH))
				continue;
			if (!done) {
				store_entry(&s[k][w], v);
				done = 1;
				continue;
			}
			store_entry(&s[k][w], 0);
			d->used--;
		}
	}
	if (!done)
		dir_put(d, hash, tag);
}

unsigned dir_drop(struct dir *d, uint64_t hash, uint64_t tag)
{
	unsigned gone = 0;

	for (unsigned k = 0; k < 2; k++) {
		uint64_t *s = &d->e[spp_dir_set(hash, d->n, k)];

		for (unsigned w = 0; w < SPP_DIR_WAYS; w++) {
			if (!s[w] || (s[w] & SPP_DIR_HASH) != (hash & SPP_DIR_HASH))
				continue;
			if (tag && (s[w] & ~SPP_DIR_HASH) != tag)
				continue;
			store_entry(&s[w], 0);
			d->used--;
			gone++;
		}
	}
	return gone;
}

void dir_drop_tag(struct dir *d, uint64_t tag)
{
	for (uint32_t i = 0; i < d->n; i++)
		if (d->e[i] && (d->e[i] & ~SPP_DIR_HASH) == tag) {
			store_entry(&d->e[i], 0);
			d->used--;
		}
}

uint64_t dir_bytes(const struct dir *d)
{
	return d->fd < 0 ? 0 : spp_dir_bytes(d->n);
}
