/*
 * hash.h - page checksums: XXH3-64 over 4 KiB, inlined and dispatched to
 * the widest vector unit the CPU has (AVX-512, AVX2, else SSE2).
 *
 * The checksum only detects pages that change between passes and spots
 * zero-page candidates; no merge ever rests on it (bytes are compared).
 */
#ifndef SP_UTIL_HASH_H
#define SP_UTIL_HASH_H

#include <stdint.h>

/* sp_hash_page - XXH3-64 of one SP_PAGE_SIZE page.  Pure; any thread. */
uint64_t sp_hash_page(const void *page);

/* sp_hash_impl - name of the variant in use ("avx512", "avx2", "sse2"). */
const char *sp_hash_impl(void);

/* The variants, each built with its own target flags (hash_impl.c). */
uint64_t sp_hash_page_sse2(const void *page);
uint64_t sp_hash_page_avx2(const void *page);
uint64_t sp_hash_page_avx512(const void *page);

#endif
