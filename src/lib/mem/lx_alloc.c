/*
 * lx_alloc.c - a private allocator for the engine and the backend, whose
 * mappings are never merged.
 *
 * The scanner must never move out a page it reads itself during a merge
 * (it would wait for itself).  Its own data therefore lives in mappings
 * only this allocator makes, and the backend excludes all of them
 * (lx_alloc_owns), whatever the program registers.
 *
 * Small blocks (up to 64 KiB, rounded to 64 bytes) are cut from 1 MiB
 * slabs, one free list per size; large blocks are their own mappings and
 * grow with mremap.  Slabs are never returned.
 *
 * Locking: alloc_lock protects everything here; it is taken last (after
 * the engine lock).  Every use happens under an engine lock or the
 * agent's locks, which fork's prepare stage takes, so no thread is inside
 * the allocator when a fork copies it; the child re-initialises the lock
 * anyway (lx_alloc_child).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "linux.h"

#define SLAB (1u << 20)
#define SMALL_MAX (64u << 10)
#define GRAIN 64u
#define NCLASS (SMALL_MAX / GRAIN + 1)

struct range {
	uintptr_t start, end;
};

static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static void *free_list[NCLASS];		/* under alloc_lock */
static char *slab_cur;			/* bump region, under alloc_lock */
static size_t slab_left;
static struct range *owned;		/* sorted, under alloc_lock */
static size_t nowned, owned_cap;

void lx_alloc_child(void)
{
	pthread_mutex_init(&alloc_lock, NULL);
}

/* Make room for one more owned range.  Return: 0 or -ENOMEM. */
static int own_reserve(void)
{
	size_t cap;
	void *n;

	if (nowned < owned_cap)
		return 0;
	cap = owned_cap ? owned_cap * 2 : 512;
	n = mmap(NULL, cap * sizeof(*owned), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (n == MAP_FAILED)
		return -ENOMEM;
	if (owned) {
		memcpy(n, owned, nowned * sizeof(*owned));
		munmap(owned, owned_cap * sizeof(*owned));
	}
	owned = n;
	owned_cap = cap;
	return 0;
}

/* Record [start, end) as ours; own_reserve() must have succeeded. */
static void own(uintptr_t start, uintptr_t end)
{
	size_t i;

	for (i = nowned; i > 0 && owned[i - 1].start > start; i--)
		owned[i] = owned[i - 1];
	owned[i].start = start;
	owned[i].end = end;
	nowned++;
}

static void disown(uintptr_t start)
{
	for (size_t i = 0; i < nowned; i++) {
		if (owned[i].start == start) {
			memmove(&owned[i], &owned[i + 1],
				(nowned - i - 1) * sizeof(*owned));
			nowned--;
			return;
		}
	}
}

/* The list itself lives in a mapping of its own: exclude it too. */
int lx_alloc_owns(uintptr_t start, uintptr_t end)
{
	int hit = 0;

	pthread_mutex_lock(&alloc_lock);
	if (owned && start < (uintptr_t)owned + owned_cap * sizeof(*owned) &&
	    end > (uintptr_t)owned)
		hit = 1;
	for (size_t i = 0; i < nowned && !hit; i++)
		if (start < owned[i].end && end > owned[i].start)
			hit = 1;
	pthread_mutex_unlock(&alloc_lock);
	return hit;
}

/* The first owned range ending above @addr, for probes. */
int lx_alloc_next(uintptr_t addr, uintptr_t *start, uintptr_t *end)
{
	int found = 0;

	pthread_mutex_lock(&alloc_lock);
	if (owned) {
		uintptr_t os = (uintptr_t)owned;
		uintptr_t oe = os + owned_cap * sizeof(*owned);

		if (oe > addr) {
			*start = os;
			*end = oe;
			found = 1;
		}
	}
	for (size_t i = 0; i < nowned; i++) {
		if (owned[i].end > addr &&
		    (!found || owned[i].start < *start)) {
			*start = owned[i].start;
			*end = owned[i].end;
			found = 1;
		}
	}
	pthread_mutex_unlock(&alloc_lock);
	return found;
}

void *lx_map(size_t len)
{
	void *p;

	pthread_mutex_lock(&alloc_lock);
	if (own_reserve()) {
		pthread_mutex_unlock(&alloc_lock);
		return NULL;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		pthread_mutex_unlock(&alloc_lock);
		return NULL;
	}
	own((uintptr_t)p, (uintptr_t)p + len);
	pthread_mutex_unlock(&alloc_lock);
	return p;
}

void lx_unmap(void *p, size_t len)
{
	if (!p)
		return;
	pthread_mutex_lock(&alloc_lock);
	disown((uintptr_t)p);
	pthread_mutex_unlock(&alloc_lock);
	munmap(p, len);
}

static size_t round_large(size_t n)
{
	return (n + LX_PS - 1) & ~(size_t)(LX_PS - 1);
}

static void *a_alloc(void *ctx, size_t size)
{
	size_t c, sz;
	void *p;

	(void)ctx;
	if (size > SMALL_MAX)
		return lx_map(round_large(size));
	c = (size + GRAIN - 1) / GRAIN;
	if (!c)
		c = 1;
	sz = c * GRAIN;
	pthread_mutex_lock(&alloc_lock);
	p = free_list[c];
	if (p) {
		free_list[c] = *(void **)p;
	} else {
		if (slab_left < sz) {
			void *s = own_reserve() ? MAP_FAILED :
				  mmap(NULL, SLAB, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (s == MAP_FAILED) {
				pthread_mutex_unlock(&alloc_lock);
				return NULL;
			}
			own((uintptr_t)s, (uintptr_t)s + SLAB);
			slab_cur = s;
			slab_left = SLAB;
		}
		p = slab_cur;
		slab_cur += sz;
		slab_left -= sz;
	}
	pthread_mutex_unlock(&alloc_lock);
	memset(p, 0, sz);
	return p;
}

static void a_free(void *ctx, void *p, size_t size)
{
	size_t c;

	(void)ctx;
	if (!p)
		return;
	if (size > SMALL_MAX) {
		lx_unmap(p, round_large(size));
		return;
	}
	c = (size + GRAIN - 1) / GRAIN;
	if (!c)
		c = 1;
	pthread_mutex_lock(&alloc_lock);
	*(void **)p = free_list[c];
	free_list[c] = p;
	pthread_mutex_unlock(&alloc_lock);
}

static void *a_resize(void *ctx, void *p, size_t old, size_t size)
{
	void *n;

	if (!p)
		return a_alloc(ctx, size);
	if (old > SMALL_MAX && size > SMALL_MAX) {
		size_t o = round_large(old), s = round_large(size);

		if (o == s)
			return p;
		/* Under the lock, so that the block is never unrecorded. */
		pthread_mutex_lock(&alloc_lock);
		if (own_reserve()) {
			pthread_mutex_unlock(&alloc_lock);
			return NULL;
		}
		n = mremap(p, o, s, MREMAP_MAYMOVE);
		if (n == MAP_FAILED) {
			pthread_mutex_unlock(&alloc_lock);
			return NULL;
		}
		disown((uintptr_t)p);
		own((uintptr_t)n, (uintptr_t)n + s);
		pthread_mutex_unlock(&alloc_lock);
		return n;
	}
	n = a_alloc(ctx, size);
	if (!n)
		return NULL;
	memcpy(n, p, old < size ? old : size);
	a_free(ctx, p, old);
	return n;
}

const struct sp_allocator lx_allocator = {
	.alloc = a_alloc,
	.resize = a_resize,
	.free = a_free,
};
