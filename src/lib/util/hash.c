/*
 * hash.c - pick the XXH3 variant once, from what the CPU supports.
 */
#include "hash.h"

#include <pthread.h>

static uint64_t (*hash_fn)(const void *) = sp_hash_page_sse2;
static const char *hash_name = "sse2";
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static void hash_pick(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("avx512bw")) {
		hash_fn = sp_hash_page_avx512;
		hash_name = "avx512";
	} else if (__builtin_cpu_supports("avx2")) {
		hash_fn = sp_hash_page_avx2;
		hash_name = "avx2";
	}
}

uint64_t sp_hash_page(const void *page)
{
	pthread_once(&hash_once, hash_pick);
	return hash_fn(page);
}

const char *sp_hash_impl(void)
{
	pthread_once(&hash_once, hash_pick);
	return hash_name;
}
