/*
 * unstable.c - the unstable tree's node arena.
 */
#include "unstable.h"

#include <stdlib.h>
#include <string.h>

void sp_unstable_init(struct sp_unstable *u, uint64_t seed,
		      const struct sp_mem *mem)
{
	memset(u, 0, sizeof(*u));
	u->tree.root = SP_INIL;
	u->tree.seed = seed;
	u->mem = *mem;
}

void sp_unstable_destroy(struct sp_unstable *u)
{
	sp_mem_free(&u->mem, u->node, (size_t)u->cap * sizeof(struct sp_unode));
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

void sp_unstable_reset(struct sp_unstable *u)
{
	/* Size the arena for the larger of the last two passes. */
	uint32_t used = u->n > u->peak ? u->n : u->peak;

	u->peak = u->n;
	if (u->cap > roomy(used))
		resize(u, roomy(used));
	u->n = 0;
	u->tree.root = SP_INIL;
}

uint32_t sp_unstable_alloc(struct sp_unstable *u, uint32_t ref)
{
	if (u->n == u->cap) {
		if (u->cap >= SP_UREF_STABLE)
			return SP_INIL;
		resize(u, roomy(u->cap));
		if (u->n == u->cap)
			return SP_INIL;
	}
	u->node[u->n].left = u->node[u->n].right = SP_INIL;
	u->node[u->n].ref = ref;
	return u->n++;
}
