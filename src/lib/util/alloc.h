/*
 * alloc.h - where the engine's memory comes from, and how much it is.
 *
 * Every allocation of the engine and its index goes through a struct
 * sp_mem: an allocator (libc by default; the in-process agent supplies
 * one whose mappings it keeps out of merging, so that the scanner never
 * moves out a page it reads itself) and a byte counter (the figure
 * general_profit subtracts).
 */
#ifndef SP_UTIL_ALLOC_H
#define SP_UTIL_ALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "samepage.h"

struct sp_mem {
	const struct sp_allocator *a;
	uint64_t *acct;		/* bytes currently allocated through this */
};

/* The libc allocator (calloc/realloc/free). */
extern const struct sp_allocator sp_libc_allocator;

/* sp_mem_alloc - @size zeroed bytes, counted.  Return: block or NULL. */
static inline void *sp_mem_alloc(const struct sp_mem *m, size_t size)
{
	void *p = m->a->alloc(m->a->ctx, size);

	if (p)
		*m->acct += size;
	return p;
}

/* sp_mem_resize - grow or shrink a block; bytes past @old are zeroed.
 * Return: the (possibly moved) block, or NULL with @p untouched. */
static inline void *sp_mem_resize(const struct sp_mem *m, void *p,
				  size_t old, size_t size)
{
	void *n = m->a->resize(m->a->ctx, p, old, size);

	if (!n && size)
		return NULL;
	if (size > old)
		memset((char *)n + old, 0, size - old);
	*m->acct += size;
	*m->acct -= old;
	return n;
}

/* sp_mem_free - release a block of @size bytes (NULL is fine). */
static inline void sp_mem_free(const struct sp_mem *m, void *p, size_t size)
{
	if (!p)
		return;
	m->a->free(m->a->ctx, p, size);
	*m->acct -= size;
}

#endif
