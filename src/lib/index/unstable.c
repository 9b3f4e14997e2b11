/*
 * unstable.c - the unstable tree's node arena and its index.
 */
#include "unstable.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define IDX_MIN 256u		/* fewest buckets */

int sp_unstable_init(struct sp_unstable *u, unsigned csum_bits,
		     const struct sp_mem *mem)
{
	memset(u, 0, sizeof(*u));
	u->mem = *mem;
	u->max_buckets = 1u << (csum_bits < 31 ? csum_bits : 31);
	if (u->max_buckets < IDX_MIN)
		u->max_buckets = IDX_MIN;
	return sp_ibuckets_resize(&u->idx, &u->mem, IDX_MIN);
}

void sp_unstable_destroy(struct sp_unstable *u)
{
	sp_mem_free(&u->mem, u->node, (size_t)u->cap * sizeof(struct sp_unode));
	sp_ibuckets_free(&u->idx, &u->mem);
	u->node = NULL;
	u->n = u->cap = 0;
}

static void resize(struct sp_unstable *u, uint32_t cap)
{
	struct sp_unode *n = sp_mem_resize(&u->mem, u->node,
					   (size_t)u->cap * sizeof(*n),
					   (size_t)cap * sizeof(*n));

	if (!n)
		return;		/* keep the old arena; it still works */
	u->node = n;
	u->cap = cap;
}

/* Capacity for @n nodes with 1/16 headroom: the arena is metadata paid
 * per page, so it grows in small steps (realloc of large blocks remaps
 * rather than copies) and never sits at twice its use. */
static uint32_t roomy(uint64_t n)
{
	uint64_t c = n + n / 16 + 1024;

	return c > SP_UREF_STABLE ? SP_UREF_STABLE : (uint32_t)c;
}

/* New heads for @want buckets, and every node of this pass linked
 * again.  A failed resize keeps the old heads: chains get longer. */
static void rebucket(struct sp_unstable *u, uint32_t want)
{
	if (want == u->idx.n || sp_ibuckets_resize(&u->idx, &u->mem, want))
		sp_ibuckets_clear(&u->idx);
	for (uint32_t i = 0; i < u->n; i++) {
		uint32_t *h = sp_ibucket(&u->idx, u->node[i].csum);

		u->node[i].next = *h;
		*h = i;
	}
}

void sp_unstable_reset(struct sp_unstable *u)
{
	/* Size the arena for the larger of the last two passes. */
	uint32_t used = u->n > u->peak ? u->n : u->peak;

	u->peak = u->n;
	if (u->cap > roomy(used))
		resize(u, roomy(used));
	u->n = 0;
	rebucket(u, sp_pow2_at_least(used, IDX_MIN, u->max_buckets));
}

uint32_t sp_unstable_add(struct sp_unstable *u, uint32_t ref, uint32_t csum)
{
	uint32_t *h;

	if (u->n == u->cap) {
		if (u->cap >= SP_UREF_STABLE)
			return SP_INIL;
		resize(u, roomy(u->cap));
		if (u->n == u->cap)
			return SP_INIL;
	}
	if (u->n >= 2 * (uint64_t)u->idx.n && u->idx.n < u->max_buckets)
		rebucket(u, u->idx.n * 2);
	h = sp_ibucket(&u->idx, csum);
	u->node[u->n].next = *h;
	u->node[u->n].ref = ref;
	u->node[u->n].csum = csum;
	*h = u->n;
	return u->n++;
}
