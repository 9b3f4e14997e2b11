/*
 * ralloc.c - bitmap allocator of consecutive page numbers.
 */
#include "ralloc.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Words examined by one hole search before giving up and bumping. */
#define SEARCH_WORDS 1024

static inline int bit_get(const uint64_t *b, uint32_t i)
{
	return (b[i >> 6] >> (i & 63)) & 1;
}

static void bits_set(uint64_t *b, uint32_t first, uint32_t n, int val)
{
	for (uint32_t i = first; i < first + n; i++) {
		if (val)
			b[i >> 6] |= 1ull << (i & 63);
		else
			b[i >> 6] &= ~(1ull << (i & 63));
	}
}

void sp_ralloc_init(struct sp_ralloc *ra, uint32_t limit,
		    const struct sp_mem *mem)
{
	static uint64_t uncounted;

	memset(ra, 0, sizeof(*ra));
	ra->limit = limit;
	if (mem)
		ra->mem = *mem;
	else
		ra->mem = (struct sp_mem){ &sp_libc_allocator, &uncounted };
}

void sp_ralloc_destroy(struct sp_ralloc *ra)
{
	sp_mem_free(&ra->mem, ra->bits, ra->cap_words * sizeof(uint64_t));
	ra->bits = NULL;
	ra->cap_words = 0;
	ra->top = ra->rover = 0;
	ra->nfree = 0;
}

static int grow(struct sp_ralloc *ra, uint64_t top)
{
	size_t need = (size_t)((top + 63) >> 6), cap;
	uint64_t *b;

	if (need <= ra->cap_words)
		return 0;
	cap = ra->cap_words ? ra->cap_words : 16;
	while (cap < need)
		cap *= 2;
	b = sp_mem_resize(&ra->mem, ra->bits, ra->cap_words * sizeof(uint64_t),
			  cap * sizeof(uint64_t));
	if (!b)
		return -ENOMEM;
	ra->bits = b;
	ra->cap_words = cap;
	return 0;
}

/* Find @n clear bits in a row below top, examining a bounded number of
 * words from the rover on.  Return: the first number, or UINT32_MAX. */
static uint32_t find_hole(const struct sp_ralloc *ra, uint32_t n)
{
	uint32_t start = ra->rover < ra->top ? ra->rover : 0;
	uint32_t i = start, run = 0, run_start = 0;
	uint64_t budget = (uint64_t)SEARCH_WORDS * 64;
	int wrapped = 0;

	while (budget--) {
		if (i >= ra->top) {
			if (wrapped)
				break;
			wrapped = 1;
			i = 0;
			run = 0;
		}
		if (wrapped && i >= start)
			break;
		/* Skip a whole full word quickly. */
		if ((i & 63) == 0 && i + 64 <= ra->top &&
		    ra->bits[i >> 6] == ~0ull) {
			run = 0;
			i += 64;
			continue;
		}
		if (bit_get(ra->bits, i)) {
			run = 0;
		} else {
			if (!run)
				run_start = i;
			if (++run == n)
				return run_start;
		}
		i++;
	}
	return UINT32_MAX;
}

int sp_ralloc_get(struct sp_ralloc *ra, uint32_t n, uint32_t *first)
{
	uint32_t f = UINT32_MAX;
	int err;

	if (n == 0)
		return -EINVAL;
	if (ra->nfree >= n)
		f = find_hole(ra, n);
	if (f == UINT32_MAX) {
		if ((uint64_t)ra->top + n > ra->limit)
			return -ENOSPC;
		err = grow(ra, (uint64_t)ra->top + n);
		if (err)
			return err;
		f = ra->top;
		ra->top += n;
	} else {
		ra->nfree -= n;
	}
	bits_set(ra->bits, f, n, 1);
	ra->rover = f + n;
	*first = f;
	return 0;
}

void sp_ralloc_put(struct sp_ralloc *ra, uint32_t first, uint32_t n)
{
	for (uint32_t i = first; i < first + n; i++)
		assert(i < ra->top && bit_get(ra->bits, i));
	bits_set(ra->bits, first, n, 0);
	ra->nfree += n;
	/* Give the top back so that a fresh run can extend from there. */
	while (ra->top && !bit_get(ra->bits, ra->top - 1)) {
		ra->top--;
		ra->nfree--;
	}
	if (first < ra->rover)
		ra->rover = first;
}

int sp_ralloc_used(const struct sp_ralloc *ra, uint32_t i)
{
	return i < ra->top && bit_get(ra->bits, i);
}
