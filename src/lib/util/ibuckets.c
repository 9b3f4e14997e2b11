/*
 * ibuckets.c - allocation of the bucket heads of a chained hash index.
 */
#include "ibuckets.h"

#include <errno.h>
#include <string.h>

int sp_ibuckets_resize(struct sp_ibuckets *b, const struct sp_mem *mem,
		       uint32_t n)
{
	uint32_t *h;

	if (!n || (n & (n - 1)))
		return -EINVAL;
	h = sp_mem_alloc(mem, (size_t)n * sizeof(*h));
	if (!h)
		return -ENOMEM;
	sp_ibuckets_free(b, mem);
	b->head = h;
	b->n = n;
	sp_ibuckets_clear(b);
	return 0;
}

void sp_ibuckets_free(struct sp_ibuckets *b, const struct sp_mem *mem)
{
	sp_mem_free(mem, b->head, (size_t)b->n * sizeof(*b->head));
	b->head = NULL;
	b->n = 0;
}

void sp_ibuckets_clear(struct sp_ibuckets *b)
{
	/* SP_INIL is all ones in every byte. */
	memset(b->head, 0xff, (size_t)b->n * sizeof(*b->head));
}
