/*
 * store.c - samepaged's shared stable store for one trust domain.
 *
 * Segments.  Each is a memfd of ST_SEG_PAGES page slots (sparse: only
 * written slots use memory), which the daemon maps shared and writable
 * once and then seals with F_SEAL_FUTURE_WRITE | GROW | SHRINK | SEAL.
 * From then on nobody can write to it through any fd or create a
 * writable shared mapping, not even through a reopened /proc/PID/fd
 * path; only the daemon's own mapping, made before the seal, writes
 * (new pages with fill_pages, fill.c, which puts a rule on reading it).
 * Clients get read-only fds and map slots MAP_PRIVATE: a write gets a
 * private copy from the kernel's copy-on-write.
 *
 * The seal also forbids punching holes, so a slot's memory is not given
 * back to the kernel: a free slot is reused for the next new page.  A
 * slot is freed only when no process references it (store_ref) and no
 * mapping anywhere in the domain can reach it (store_reclaim); its old
 * content stays until it is overwritten by a new page, which is then
 * indexed.  A page's bytes never change while it is live.
 *
 * Index.  Live pages are chained in hash buckets by the XXH3-64 of their
 * bytes, computed here (a client's claims are never trusted): lookup by
 * hash, intern by hash then memcmp.
 *
 * Nominations and the directory (dir.c).  A lossy table, shared
 * read-only with the clients, remembers who last found no partner for a
 * hash and which hashes the store holds; a second client with the same
 * hash uploads the page.
 * Collisions cost a missed or useless upload, never a wrong merge: every
 * merge compares bytes.
 */
#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "dir.h"
#include "fill.h"
#include "store.h"
#include "util/hash.h"
#include "util/proctime.h"

#define PS 4096u
#define PM_FILE (1ULL << 61)
#define PM_SWAP (1ULL << 62)
#define PM_PRESENT (1ULL << 63)

enum { SL_FREE = 0, SL_LIVE, SL_PENDING };

struct slot {			/* 16 bytes: paid per stored page */
	uint64_t hash;		/* LIVE/PENDING: XXH3-64 of the bytes */
	uint32_t next;		/* bucket chain (LIVE/PENDING) */
	uint32_t refs : 29;	/* processes holding it (each at most once,
				 * so far below 2^29) */
	uint32_t state : 2;	/* SL_* */
	uint32_t in_pend : 1;	/* listed in pend[] (at most once: a slot
				 * freed twice would be handed out twice) */
};
_Static_assert(sizeof(struct slot) == 16, "a slot is 16 bytes");

struct seg {
	int fd;			/* O_RDWR memfd, sealed */
	char *map;		/* the daemon's writable shared mapping:
				 * written only by fill_pages (fill.c),
				 * never read (same_bytes reads the fd) */
	int uffd;		/* fill_pages' userfaultfd for it, or -1 */
	uint32_t top;		/* slots ever used: [0, top) */
	struct slot *sl;	/* per slot, [0, cap) */
	uint32_t cap;
	dev_t dev;
	ino_t ino;
};

struct store {
	struct seg seg[ST_MAX_SEGS];
	uint32_t nseg;
	int uffd;		/* fills new pages (fill.c); -1: none, -2:
				 * not opened yet */
	uint32_t *freel;	/* free gids, in descending order after each
				 * reclaim: popped from the end, lowest
				 * first (see store_reclaim) */
	uint32_t nfree, freecap;
	uint32_t *pend;		/* PENDING gids */
	uint32_t npend, pendcap;
	uint32_t *bucket;	/* heads, ST_NONE: empty */
	uint32_t nbucket;	/* power of two */
	uint64_t nlive;
	struct dir dir;		/* nominations; an entry SPP_DIR_STORED for
				 * (most) live pages' hashes */
	struct dir hints;	/* first-look hashes not paired yet (fd -1:
				 * none); private, freed when idle */
	uint64_t hint_ms;	/* last hint (store_hint's clock) */
	uint64_t born;		/* first segment's creation, clock ticks
				 * since boot (/proc/PID/stat starttime) */
	/* Pages written through our mapping and not yet dropped from it:
	 * the run of wr_n gids from wr_first (one segment). */
	uint32_t wr_first, wr_n;
	struct store_stats s;
};

static struct slot *slot_of(const struct store *st, uint32_t gid)
{
	uint32_t k = gid >> ST_SEG_SHIFT, i = gid & (ST_SEG_PAGES - 1);

	if (k >= st->nseg || i >= st->seg[k].top)
		return NULL;
	return &st->seg[k].sl[i];
}

static int grow(void *pp, uint32_t *cap, size_t elem, uint32_t want)
{
	void **p = pp;
	uint32_t c = *cap ? *cap : 1024;
	void *n;

	if (want <= *cap)
		return 0;
	/* By eighths, not doubling: a slot table is the daemon's largest
	 * cost per page after the directory, and one page past a power of
	 * two must not double it (a large realloc moves pages, not bytes). */
	while (c < want)
		c += c / 8 > 1024 ? c / 8 : 1024;
	n = realloc(*p, (size_t)c * elem);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = c;
	return 0;
}

int store_new(struct store **out)
{
	struct store *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	st->nbucket = 1024;
	st->bucket = malloc(st->nbucket * sizeof(uint32_t));
	st->dir.fd = -1;
	st->hints.fd = -1;
	st->uffd = -2;
	if (!st->bucket || dir_init(&st->dir, 1u << 16, SPP_DIR_MAX)) {
		store_free(st);
		return -ENOMEM;
	}
	memset(st->bucket, 0xff, st->nbucket * sizeof(uint32_t));
	*out = st;
	return 0;
}

void store_free(struct store *st)
{
	if (!st)
		return;
	for (uint32_t k = 0; k < st->nseg; k++) {
		munmap(st->seg[k].map, (size_t)ST_SEG_PAGES * PS);
		close(st->seg[k].fd);
		free(st->seg[k].sl);
	}
	if (st->uffd >= 0)
		close(st->uffd);
	free(st->freel);
	free(st->pend);
	free(st->bucket);
	dir_free(&st->dir);
	dir_free(&st->hints);
	free(st);
}

uint32_t store_nseg(const struct store *st)
{
	return st->nseg;
}

int store_seg_fd(struct store *st, uint32_t seg)
{
	char path[64];
	int fd;

	if (seg >= st->nseg)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", st->seg[seg].fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int store_dir_fd(struct store *st, uint32_t *entries)
{
	*entries = st->dir.n;
	return dir_fd(&st->dir);
}

static int seg_new(struct store *st)
{
	size_t len = (size_t)ST_SEG_PAGES * PS;
	struct seg *g = &st->seg[st->nseg];
	struct stat sb;
	int fd, err;

	if (st->nseg == ST_MAX_SEGS)
		return -ENOSPC;
	fd = memfd_create("samepage-shared-store",
			  MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len) || fstat(fd, &sb))
		goto fail;
	g->map = mmap(NULL, len, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (g->map == MAP_FAILED)
		goto fail;
	/* The only writable mapping there will ever be: a child of ours
	 * (none today) must not inherit it. */
	if (madvise(g->map, len, MADV_DONTFORK)) {
		err = -errno;
		munmap(g->map, len);
		close(fd);
		return err;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_GROW |
				       F_SEAL_SHRINK | F_SEAL_SEAL)) {
		err = -errno;
		munmap(g->map, len);
		close(fd);
		return err;
	}
	/* Without a userfaultfd (or if this mapping cannot be registered)
	 * pages are written with memcpy: slower, never wrong. */
	if (st->uffd == -2)
		st->uffd = fill_open();
	if (st->uffd < 0)
		st->uffd = -1;
	g->uffd = st->uffd >= 0 && !fill_register(st->uffd, g->map, len) ?
			  st->uffd : -1;
	g->fd = fd;
	g->top = 0;
	g->sl = NULL;
	g->cap = 0;
	g->dev = sb.st_dev;
	g->ino = sb.st_ino;
	if (!st->nseg)
		st->born = sp_boot_ticks();
	st->nseg++;
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

/* A slot for a new page: the lowest freed one, else the next of the last
 * segment. */
static int slot_get(struct store *st, uint32_t *gid)
{
	struct seg *g;
	int err;

	if (st->nfree) {
		*gid = st->freel[--st->nfree];
		return 0;
	}
	if (!st->nseg || st->seg[st->nseg - 1].top == ST_SEG_PAGES) {
		err = seg_new(st);
		if (err)
			return err;
	}
	g = &st->seg[st->nseg - 1];
	if (grow(&g->sl, &g->cap, sizeof(struct slot), g->top + 1))
		return -ENOMEM;
	memset(&g->sl[g->top], 0, sizeof(struct slot));
	*gid = st_gid(st->nseg - 1, g->top++);
	return 0;
}

static char *page_of(const struct store *st, uint32_t gid)
{
	return st->seg[gid >> ST_SEG_SHIFT].map +
	       (size_t)(gid & (ST_SEG_PAGES - 1)) * PS;
}

static void rehash(struct store *st)
{
	uint32_t n = st->nbucket * 2, *b = malloc(n * sizeof(uint32_t));

	if (!b)
		return;		/* longer chains; still correct */
	memset(b, 0xff, n * sizeof(uint32_t));
	for (uint32_t k = 0; k < st->nseg; k++)
		for (uint32_t i = 0; i < st->seg[k].top; i++) {
			struct slot *s = &st->seg[k].sl[i];

			if (s->state == SL_FREE)
				continue;
			s->next = b[s->hash & (n - 1)];
			b[s->hash & (n - 1)] = st_gid(k, i);
		}
	free(st->bucket);
	st->bucket = b;
	st->nbucket = n;
}

/* The store holds @hash now: nominations of it are done with, and
 * clients should LOOKUP it. */
static void publish(struct store *st, uint64_t hash)
{
	dir_set(&st->dir, hash, SPP_DIR_STORED);
}

uint32_t store_lookup(struct store *st, uint64_t hash)
{
	for (uint32_t g = st->bucket[hash & (st->nbucket - 1)]; g != ST_NONE;
	     g = slot_of(st, g)->next)
		if (slot_of(st, g)->hash == hash)
			return g;
	return ST_NONE;
}

static void prefetch_one(const struct store *st, uint64_t hash)
{
	__builtin_prefetch(&st->bucket[hash & (st->nbucket - 1)]);
	spp_dir_prefetch(st->dir.e, st->dir.n, hash);
	if (st->hints.fd >= 0)
		spp_dir_prefetch(st->hints.e, st->hints.n, hash);
}

void store_prefetch(const struct store *st, const uint64_t *hash,
		    uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		prefetch_one(st, hash[i]);
}

void store_flush(struct store *st)
{
	if (st->wr_n)
		madvise(page_of(st, st->wr_first), (size_t)st->wr_n * PS,
			MADV_DONTNEED);
	st->wr_n = 0;
}

/* Does stored page @g hold exactly @page's bytes?  Read with pread
 * from the segment's fd, not through our mapping: a page read there
 * would stay mapped in the daemon (store_flush drops only the pages it
 * wrote), in its Pss and its RSS for as long as the page lives.  A read
 * that fails says no: the caller then stores a page of its own. */
static int same_bytes(const struct store *st, uint32_t g, const void *page)
{
	uint8_t buf[PS];
	ssize_t r = pread(st->seg[g >> ST_SEG_SHIFT].fd, buf, PS,
			  (off_t)(g & (ST_SEG_PAGES - 1)) * PS);

	return r == (ssize_t)PS && !memcmp(buf, page, PS);
}

/* A live page of @h with exactly @page's bytes, or ST_NONE. */
static uint32_t find_equal(const struct store *st, uint64_t h,
			   const void *page)
{
	uint32_t g = st->bucket[h & (st->nbucket - 1)];

	for (; g != ST_NONE; g = slot_of(st, g)->next)
		if (slot_of(st, g)->hash == h && same_bytes(st, g, page))
			return g;
	return ST_NONE;
}

/* Give back @g, taken by slot_get and never written.  Slots are given
 * back in the reverse order they were taken, so a slot taken from a
 * segment's top goes back there. */
static void slot_unget(struct store *st, uint32_t g)
{
	struct seg *sg = &st->seg[g >> ST_SEG_SHIFT];

	if ((g & (ST_SEG_PAGES - 1)) == sg->top - 1)
		sg->top--;
	else if (!grow(&st->freel, &st->freecap, sizeof(uint32_t),
		       st->nfree + 1))
		st->freel[st->nfree++] = g;
}

/* Index @g, just written with bytes of hash @h, as a live page. */
static void index_new(struct store *st, uint32_t g, uint64_t h)
{
	struct slot *s = slot_of(st, g);
	uint32_t b = (uint32_t)(h & (st->nbucket - 1));

	/* Our own mapping of it is for writing only: it is dropped (see
	 * store_flush), so that the page is shared by the processes that map
	 * it and counted (Pss) among them alone.  The page stays in the
	 * memfd.  New slots come in order, so pages written together drop
	 * in one call (one TLB flush, not one per page). */
	if (st->wr_n && (g != st->wr_first + st->wr_n ||
			 g >> ST_SEG_SHIFT != st->wr_first >> ST_SEG_SHIFT))
		store_flush(st);
	if (!st->wr_n)
		st->wr_first = g;
	st->wr_n++;
	s->hash = h;
	s->refs = 0;
	s->state = SL_LIVE;
	s->next = st->bucket[b];
	st->bucket[b] = g;
	st->nlive++;
	st->s.interned++;
	if (st->nlive > 2ull * st->nbucket)
		rehash(st);
	publish(st, h);
}

/* Write the new pages @fresh[0..nf) (indices into @pages and @h, in
 * the order their slots were taken, slots in @gid) in runs: consecutive
 * slots of one segment holding consecutive pages go in one fill_pages
 * call.  Index those written; give back the slots of the others and set
 * their gid to ST_NONE.  Return: 0, or the first failure's -errno. */
static int write_new(struct store *st, const uint8_t *pages,
		     const uint64_t *h, const uint32_t *fresh, uint32_t nf,
		     uint32_t *gid)
{
	uint8_t ok[ST_INTERN_MAX] = { 0 };
	int first = 0;

	for (uint32_t k = 0, e; k < nf; k = e) {
		uint32_t g = gid[fresh[k]], done;
		int err;

		for (e = k + 1; e < nf; e++)
			if (fresh[e] != fresh[e - 1] + 1 ||
			    gid[fresh[e]] != gid[fresh[e - 1]] + 1 ||
			    gid[fresh[e]] >> ST_SEG_SHIFT != g >> ST_SEG_SHIFT)
				break;
		done = fill_pages(st->seg[g >> ST_SEG_SHIFT].uffd,
				  page_of(st, g), pages + (size_t)fresh[k] * PS,
				  e - k, &err);
		if (err && !first)
			first = err;
		for (uint32_t j = k; j < k + done; j++) {
			ok[j] = 1;
			index_new(st, gid[fresh[j]], h[fresh[j]]);
		}
	}
	for (uint32_t j = nf; j-- > 0;)
		if (!ok[j]) {
			slot_unget(st, gid[fresh[j]]);
			gid[fresh[j]] = ST_NONE;
		}
	return first;
}

uint32_t store_intern_many(struct store *st, const void *pages, uint32_t n,
			   uint32_t *gid, int *err)
{
	const uint8_t *pg = pages;
	uint64_t h[ST_INTERN_MAX];
	uint32_t fresh[ST_INTERN_MAX], nf = 0, stored = 0;
	/* via[i]: the page of this call whose new slot page i shares
	 * (itself if it got one), or -1 (gid[i] is final). */
	int16_t via[ST_INTERN_MAX];
	int e;

	assert(n <= ST_INTERN_MAX);
	*err = 0;
	/* Every hash first, with the loads the lookups start with, so that
	 * their cache misses overlap (a bucket head, then its first slot:
	 * one after the other, they were a tenth of the daemon's time
	 * while two processes merged). */
	for (uint32_t i = 0; i < n; i++) {
		h[i] = sp_hash_page(pg + (size_t)i * PS);
		prefetch_one(st, h[i]);
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct slot *s = slot_of(st,
			st->bucket[h[i] & (st->nbucket - 1)]);

		if (s)
			__builtin_prefetch(s);
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = pg + (size_t)i * PS;
		uint32_t g;

		via[i] = -1;
		gid[i] = find_equal(st, h[i], p);
		for (uint32_t k = 0; gid[i] == ST_NONE && k < nf; k++)
			if (h[fresh[k]] == h[i] &&
			    !memcmp(pg + (size_t)fresh[k] * PS, p, PS))
				via[i] = (int16_t)fresh[k];
		if (gid[i] != ST_NONE || via[i] >= 0) {
			st->s.deduped++;
			if (gid[i] != ST_NONE)
				publish(st, h[i]);
			continue;
		}
		e = slot_get(st, &g);
		if (e) {
			if (!*err)
				*err = e;
			continue;	/* no slot: ST_NONE */
		}
		gid[i] = g;
		via[i] = (int16_t)i;
		fresh[nf++] = i;
	}
	e = write_new(st, pg, h, fresh, nf, gid);
	if (e && !*err)
		*err = e;
	for (uint32_t i = 0; i < n; i++) {
		if (via[i] >= 0 && via[i] != (int16_t)i)
			gid[i] = gid[via[i]];
		stored += gid[i] != ST_NONE;
	}
	return stored;
}

int store_intern(struct store *st, const void *page, uint32_t *gid)
{
	uint32_t g;
	int err;

	if (!store_intern_many(st, page, 1, &g, &err))
		return err;
	*gid = g;
	return 0;
}

int store_live(const struct store *st, uint32_t gid)
{
	const struct slot *s = slot_of(st, gid);

	return s && s->state != SL_FREE;
}

void store_ref(struct store *st, uint32_t gid)
{
	struct slot *s = slot_of(st, gid);

	if (!s || s->state == SL_FREE)
		return;
	s->refs++;
	if (s->state == SL_PENDING)
		s->state = SL_LIVE;	/* stays in pend[]: skipped there */
}

void store_unref(struct store *st, uint32_t gid)
{
	struct slot *s = slot_of(st, gid);

	if (!s || s->state == SL_FREE || !s->refs)
		return;
	if (--s->refs || s->state == SL_PENDING)
		return;
	if (s->in_pend) {	/* referenced again since it was listed */
		s->state = SL_PENDING;
		return;
	}
	if (grow(&st->pend, &st->pendcap, sizeof(uint32_t), st->npend + 1))
		return;		/* kept until the daemon exits: never unsafe */
	s->state = SL_PENDING;
	s->in_pend = 1;
	st->pend[st->npend++] = gid;
}

int store_nominate(struct store *st, uint64_t hash, uint32_t client)
{
	uint64_t me = spp_dir_tag(client), t;

	/* The caller found no live page: a STORED entry is stale. */
	dir_drop(&st->dir, hash, SPP_DIR_STORED);
	t = dir_find(&st->dir, hash, me);
	if (t && t != me) {
		/* The pair is found; the upload publishes the page. */
		dir_drop(&st->dir, hash, 0);
		return 1;
	}
	if (!t)
		dir_put(&st->dir, hash, me);
	return 0;
}

/* Two processes have @hash: one PAIRED entry says so to both (and to any
 * third), and the first to look again uploads it. */
static void pair(struct store *st, uint64_t hash)
{
	dir_set(&st->dir, hash, SPP_DIR_PAIRED);
	if (st->hints.fd >= 0)
		dir_drop(&st->hints, hash, 0);
	st->s.paired++;
}

/* What the directory says of @hash for @me once a stale STORED entry is
 * dropped (the caller found no live page).  Return: its tag, or 0. */
static uint64_t dir_tag(struct store *st, uint64_t hash, uint64_t me)
{
	uint64_t t = dir_find(&st->dir, hash, me);

	if (t == SPP_DIR_STORED) {
		dir_drop(&st->dir, hash, SPP_DIR_STORED);
		t = dir_find(&st->dir, hash, me);
	}
	return t;
}

/* Another process's hint for @hash (not @me's), or 0. */
static uint64_t hinted(const struct store *st, uint64_t hash, uint64_t me)
{
	uint64_t t;

	if (st->hints.fd < 0)
		return 0;
	t = dir_find(&st->hints, hash, me);
	return t == me ? 0 : t;
}

/*
 * What a nomination and a hint of @hash by @me have in common: a stored
 * hash gets its STORED entry; one that another process nominated or
 * hinted is paired.  Return: 1 if the directory now says all there is to
 * say (stored, PAIRED, or @me's nomination already there), 0 if @hash is
 * new to both tables.
 */
static int known(struct store *st, uint64_t hash, uint64_t me)
{
	uint64_t t;

	if (store_lookup(st, hash) != ST_NONE) {
		dir_put(&st->dir, hash, SPP_DIR_STORED);
		return 1;
	}
	t = dir_tag(st, hash, me);
	if ((t && t != me && t != SPP_DIR_PAIRED) ||
	    (!t && hinted(st, hash, me))) {
		pair(st, hash);
		return 1;
	}
	return t != 0;
}

void store_propose(struct store *st, uint64_t hash, uint32_t client)
{
	uint64_t me = spp_dir_tag(client);

	if (!known(st, hash, me))
		dir_put(&st->dir, hash, me);
}

void store_hint(struct store *st, uint64_t hash, uint32_t client,
		uint64_t now_ms)
{
	uint64_t me = spp_dir_tag(client);

	if (known(st, hash, me))
		return;
	if (st->hints.fd < 0 &&
	    dir_init(&st->hints, ST_HINT_ENTRIES, ST_HINT_ENTRIES))
		return;
	st->hint_ms = now_ms;
	dir_put(&st->hints, hash, me);
}

int store_hints_expire(struct store *st, uint64_t now_ms)
{
	if (st->hints.fd < 0)
		return 0;
	if (now_ms - st->hint_ms < ST_HINT_IDLE_MS)
		return 1;
	dir_free(&st->hints);
	return 0;
}

void store_forget_client(struct store *st, uint32_t client)
{
	dir_drop_tag(&st->dir, spp_dir_tag(client));
	if (st->hints.fd >= 0)
		dir_drop_tag(&st->hints, spp_dir_tag(client));
}

/* ---- reclaim ------------------------------------------------------------ */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_u32_desc(const void *a, const void *b)
{
	return cmp_u32(b, a);
}

/* Mark in keep[] the pending pages [first, first+n) of a mapping of
 * segment @k at @start in process @pid (pagemap @pm, -1: unreadable). */
static void mark(struct store *st, uint8_t *keep, uint32_t k, uint32_t first,
		 uint64_t n, uintptr_t start, int pm)
{
	uint32_t lo = 0, hi = st->npend, g0 = st_gid(k, first);

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (st->pend[mid] < g0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t i = lo; i < st->npend && st->pend[i] - g0 < n &&
			      st->pend[i] >= g0; i++) {
		uintptr_t a = start + (uintptr_t)(st->pend[i] - g0) * PS;
		uint64_t e;

		if (pm < 0 || pread(pm, &e, 8, (off_t)(a / PS) * 8) != 8 ||
		    ((e & PM_PRESENT) ? (e & PM_FILE) : !(e & PM_SWAP)))
			keep[i] = 1;
	}
}

/* Whether process @pid started before the store's first segment existed
 * (/proc/PID/stat stays readable when maps is not).  Return: 1, 0 (after,
 * or unknown), or -1 if it is gone. */
static int started_before(const struct store *st, pid_t pid)
{
	uint64_t start;
	int err = sp_proc_start(pid, &start);

	if (err)
		return err == -ENOENT || err == -ESRCH ? -1 : 0;
	return start < st->born;
}

/*
 * Mark what process @pid can reach.  Return: -1 if unknown (keep all).
 *
 * A process whose maps we may not read (non-dumpable, or init in a
 * container) can map a segment only by inheriting a mapping or an fd
 * through fork, or by being sent one; forks made before the first
 * segment existed inherited nothing, so such a process is skipped when
 * it started before that.  Sending the fd on purpose to an older process
 * of the domain is the domain's own doing (it could as well write that
 * process's memory: docs/security.md).
 */
static int mark_process(struct store *st, pid_t pid, uint8_t *keep)
{
	char path[64], line[512];
	int pm = -1, any = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT || errno == ESRCH)
			return 0;
		return started_before(st, pid) ? 0 : -1;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e, off, ino;
		unsigned maj, mnr;
		char perms[8];

		if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &s, &e, perms,
			   &off, &maj, &mnr, &ino) != 7 || !ino)
			continue;
		/* A shared mapping of a segment is an agent's read-only
		 * view (clients get O_RDONLY fds), which it reads only at
		 * pages it holds a reference to.  Program memory maps
		 * slots MAP_PRIVATE, and keeps doing so across mremap and
		 * fork: those are what reach a page. */
		if (perms[3] == 's')
			continue;
		for (uint32_t k = 0; k < st->nseg; k++) {
			if (ino != st->seg[k].ino ||
			    makedev(maj, mnr) != st->seg[k].dev)
				continue;
			if (!any) {
				snprintf(path, sizeof(path), "/proc/%d/pagemap",
					 (int)pid);
				pm = open(path, O_RDONLY | O_CLOEXEC);
				any = 1;
			}
			mark(st, keep, k, (uint32_t)(off / PS), (e - s) / PS, s,
			     pm);
		}
	}
	if (ferror(f)) {
		fclose(f);
		if (pm >= 0)
			close(pm);
		return -1;
	}
	fclose(f);
	if (pm >= 0)
		close(pm);
	return 0;
}

static void slot_free(struct store *st, uint32_t g)
{
	struct slot *s = slot_of(st, g);
	uint32_t *pp = &st->bucket[s->hash & (st->nbucket - 1)];

	while (*pp != g) {
		assert(*pp != ST_NONE);	/* a live slot is in its bucket */
		pp = &slot_of(st, *pp)->next;
	}
	*pp = s->next;
	dir_drop(&st->dir, s->hash, SPP_DIR_STORED);
	s->state = SL_FREE;
	s->in_pend = 0;
	st->nlive--;
	st->s.reclaimed++;
	if (!grow(&st->freel, &st->freecap, sizeof(uint32_t), st->nfree + 1))
		st->freel[st->nfree++] = g;
	/* else: the slot is lost until exit, never reused unsafely */
}

uint64_t store_reclaim(struct store *st, const uid_t *uids, unsigned nuids)
{
	uint32_t k = 0;
	uint64_t freed = 0;
	uint8_t *keep;
	struct dirent *de;
	DIR *d;

	/* Drop entries that were referenced again. */
	for (uint32_t i = 0; i < st->npend; i++) {
		struct slot *s = slot_of(st, st->pend[i]);

		if (s && s->state == SL_PENDING)
			st->pend[k++] = st->pend[i];
		else if (s)
			s->in_pend = 0;
	}
	st->npend = k;
	if (!st->npend)
		return 0;
	qsort(st->pend, st->npend, sizeof(uint32_t), cmp_u32);
	keep = calloc(st->npend, 1);
	d = opendir("/proc");
	if (!keep || !d) {
		free(keep);
		if (d)
			closedir(d);
		return 0;
	}
	while ((de = readdir(d))) {
		char path[64];
		struct stat sb;
		pid_t pid;
		unsigned u;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (pid == getpid())
			continue;	/* our own writable mapping */
		snprintf(path, sizeof(path), "/proc/%d", (int)pid);
		if (stat(path, &sb))
			continue;
		for (u = 0; u < nuids && uids[u] != sb.st_uid; u++)
			;
		if (u == nuids)
			continue;	/* outside the domain: never given an fd */
		if (mark_process(st, pid, keep)) {
			memset(keep, 1, st->npend);
			break;
		}
	}
	closedir(d);
	k = 0;
	for (uint32_t i = 0; i < st->npend; i++) {
		if (keep[i]) {
			st->pend[k++] = st->pend[i];
			continue;
		}
		slot_free(st, st->pend[i]);
		freed++;
	}
	st->npend = k;
	free(keep);
	/* Free slots are handed out lowest first, so that pages interned
	 * together get ascending slots, as new ones do: a client maps a
	 * run of them with one mapping, which coalesces with its
	 * neighbours into one VMA; descending slots would cost a VMA each. */
	if (freed)
		qsort(st->freel, st->nfree, sizeof(uint32_t), cmp_u32_desc);
	return freed;
}

void store_stats_get(const struct store *st, struct store_stats *out)
{
	uint64_t meta = sizeof(*st) + (uint64_t)st->nbucket * 4 +
			dir_bytes(&st->dir) + dir_bytes(&st->hints) +
			(uint64_t)st->freecap * 4 +
			(uint64_t)st->pendcap * 4;

	*out = st->s;
	out->live = st->nlive;
	out->pending = 0;
	for (uint32_t i = 0; i < st->npend; i++) {
		const struct slot *s = slot_of(st, st->pend[i]);

		out->pending += s && s->state == SL_PENDING;
	}
	out->referenced = st->nlive - out->pending;
	for (uint32_t k = 0; k < st->nseg; k++)
		meta += (uint64_t)st->seg[k].cap * sizeof(struct slot);
	out->meta_bytes = meta;
}
