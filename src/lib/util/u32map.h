/*
 * u32map.h - counts keyed by 32-bit ids: open addressing with linear
 * probing, backward-shift deletion (no tombstones: every probe chain
 * stays whole), grown to twice its size when half full.
 *
 * Serves the two sides of samepaged's references: the daemon's set of
 * pages each process holds (counts are 0/1), and an agent's use count
 * of each shared page it maps.  Memory comes from a struct sp_mem, so
 * the agent's map lives in memory it never merges.
 *
 * Not thread-safe: the owner serialises every call.  Keys are any value
 * but UINT32_MAX (stored + 1; 0 marks an empty slot).
 */
#ifndef SP_UTIL_U32MAP_H
#define SP_UTIL_U32MAP_H

#include <stdint.h>

#include "util/alloc.h"

struct sp_u32map {
	uint32_t *key;		/* key + 1, or 0: empty */
	uint32_t *val;		/* count, > 0 where key[i] != 0 */
	uint32_t cap;		/* 0 or a power of two */
	uint32_t n;		/* keys present; n * 2 <= cap */
};

/* sp_u32map_get - @key's count, 0 if absent. */
uint32_t sp_u32map_get(const struct sp_u32map *m, uint32_t key);

/* sp_u32map_inc - add one to @key's count (absent: it becomes 1).
 * Return: the new count, or -ENOMEM (nothing changed). */
int64_t sp_u32map_inc(struct sp_u32map *m, const struct sp_mem *mem,
		      uint32_t key);

/* sp_u32map_dec - take one from @key's count; at 0 the key goes.
 * Return: the count left, or -1 if @key was absent. */
int64_t sp_u32map_dec(struct sp_u32map *m, uint32_t key);

/* sp_u32map_clear - every key gone; memory kept. */
void sp_u32map_clear(struct sp_u32map *m);

/* sp_u32map_free - memory back to @mem; the map is empty after. */
void sp_u32map_free(struct sp_u32map *m, const struct sp_mem *mem);

/* Iterate: for (i = 0; i < m->cap; i++) if (m->key[i]) use
 * sp_u32map_key(m, i) and m->val[i]. */
static inline uint32_t sp_u32map_key(const struct sp_u32map *m, uint32_t i)
{
	return m->key[i] - 1;
}

#endif
