/*
 * ralloc.h - allocator of runs of consecutive page numbers (a bitmap).
 *
 * Stable stores hand out runs of page numbers so that a run of merged
 * virtual pages maps a run of stable pages with one call.  Freed numbers
 * are reused; a new run goes into the first hole that fits, found by a
 * bounded next-fit search, or else at the top (which then grows).
 * Freeing never fails and never allocates.
 *
 * Invariants: bit i set <=> page number i is allocated, for i < top;
 * nfree == number of clear bits below top; no bit at or above top is set.
 */
#ifndef SP_UTIL_RALLOC_H
#define SP_UTIL_RALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"

struct sp_ralloc {
	uint64_t *bits;		/* allocation bitmap, cap_words words */
	size_t cap_words;
	uint32_t top;		/* numbers >= top have never been handed out */
	uint32_t limit;		/* numbers must stay below this */
	uint32_t rover;		/* where the next search starts */
	uint64_t nfree;		/* clear bits below top */
	struct sp_mem mem;	/* where the bitmap lives */
};

/* sp_ralloc_init - an empty allocator of numbers below @limit whose
 * bitmap comes from @mem (NULL: libc, uncounted). */
void sp_ralloc_init(struct sp_ralloc *ra, uint32_t limit,
		    const struct sp_mem *mem);
void sp_ralloc_destroy(struct sp_ralloc *ra);

/*
 * sp_ralloc_get - allocate @n consecutive numbers.
 * Return: 0 and *first set, -EINVAL for n == 0, -ENOSPC past the limit,
 * -ENOMEM if the bitmap cannot grow.
 */
int sp_ralloc_get(struct sp_ralloc *ra, uint32_t n, uint32_t *first);

/* sp_ralloc_put - free @n numbers from @first, all allocated. */
void sp_ralloc_put(struct sp_ralloc *ra, uint32_t first, uint32_t n);

/* sp_ralloc_used - whether number @i is allocated. */
int sp_ralloc_used(const struct sp_ralloc *ra, uint32_t i);

#endif
