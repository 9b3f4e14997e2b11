/*
 * alloc.c - the default allocator: libc.
 */
#include <stdlib.h>

#include "alloc.h"

static void *libc_alloc(void *ctx, size_t size)
{
	(void)ctx;
	return calloc(1, size ? size : 1);
}

static void *libc_resize(void *ctx, void *p, size_t old, size_t size)
{
	(void)ctx;
	(void)old;
	return realloc(p, size ? size : 1);
}

static void libc_free(void *ctx, void *p, size_t size)
{
	(void)ctx;
	(void)size;
	free(p);
}

const struct sp_allocator sp_libc_allocator = {
	.alloc = libc_alloc,
	.resize = libc_resize,
	.free = libc_free,
};
