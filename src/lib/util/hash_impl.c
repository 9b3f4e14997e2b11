/*
 * hash_impl.c - one XXH3 variant, compiled once per target (meson sets
 * SP_HASH_FN and the -m flags), with xxHash inlined so that the compiler
 * unrolls the 4 KiB loop for that vector unit.
 */
#include <stddef.h>
#include <stdint.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "hash.h"

#ifndef SP_HASH_FN
#error "SP_HASH_FN must name the variant"
#endif

uint64_t SP_HASH_FN(const void *page)
{
	return XXH3_64bits(page, 4096);
}
