/*
 * ibuckets.h - the bucket heads of a chained hash index over 32-bit node
 * indices.
 *
 * The stable and unstable indexes hold hundreds of thousands of nodes
 * named by 32-bit indices into the caller's node array; each node keeps
 * its own "next in bucket" link and its own key (a page checksum), so
 * this file only owns the array of chain heads: a power of two of them,
 * picked by the key's low bits.  A lookup touches one head and the few
 * nodes of one chain, where a search tree of n nodes touches ~2 log n
 * nodes scattered over memory: at the sizes samepage runs at, each of
 * those is a cache miss.
 *
 * Nothing here locks: the caller's lock covers its index.
 */
#ifndef SP_UTIL_IBUCKETS_H
#define SP_UTIL_IBUCKETS_H

#include <stdint.h>

#include "alloc.h"

#define SP_INIL UINT32_MAX	/* no node: an empty bucket, a chain's end */

struct sp_ibuckets {
	uint32_t *head;		/* n chain heads, SP_INIL when empty */
	uint32_t n;		/* a power of two; 0 before the first resize */
};

/*
 * sp_ibuckets_resize - replace the heads with @n empty ones (@n a power
 * of two, at least 1), allocated from @mem; the caller links its nodes
 * again.  Return: 0, or -ENOMEM with the old heads (and their chains)
 * untouched.
 */
int sp_ibuckets_resize(struct sp_ibuckets *b, const struct sp_mem *mem,
		       uint32_t n);

/* sp_ibuckets_free - give the heads back to @mem; @b is then empty (n 0). */
void sp_ibuckets_free(struct sp_ibuckets *b, const struct sp_mem *mem);

/* sp_ibuckets_clear - empty every bucket (the array is kept). */
void sp_ibuckets_clear(struct sp_ibuckets *b);

/* sp_ibucket - the head of the chain for @key.  @b must have buckets. */
static inline uint32_t *sp_ibucket(const struct sp_ibuckets *b, uint32_t key)
{
	return &b->head[key & (b->n - 1)];
}

/* sp_pow2_at_least - the least power of two >= @x (and >= @min, itself a
 * power of two), capped at @max (a power of two). */
static inline uint32_t sp_pow2_at_least(uint64_t x, uint32_t min, uint32_t max)
{
	uint32_t n = min;

	while (n < x && n < max)
		n <<= 1;
	return n;
}

#endif
