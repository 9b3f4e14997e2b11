/*
 * u32map.h - counts keyed by 32-bit ids, compact when the ids cluster.
 *
 * Serves the two sides of samepaged's references: the daemon's set of
 * pages each process holds (counts are 0/1), and an agent's use count
 * of each shared page it maps.  Both hold ids of store slots, which the
 * store hands out densely, so a set is kept as 64-id bitmaps: a hash
 * table maps (id >> 6) to the bitmap of ids present in that block, and
 * a second table holds count - 1 for the few ids counted twice or more.
 * A block costs 12 bytes in a table at most half full: under half a
 * byte per id when blocks are full, 24 bytes for an id alone in its
 * block.  (A plain id -> count table costs 16 bytes per id.)
 *
 * Both tables use open addressing with linear probing and backward-shift
 * deletion (no tombstones: every probe chain stays whole), and grow to
 * twice their size when half full.  Memory comes from a struct sp_mem,
 * so the agent's map lives in memory it never merges.
 *
 * Not thread-safe: the owner serialises every call.  Keys are any value
 * but UINT32_MAX.
 */
#ifndef SP_UTIL_U32MAP_H
#define SP_UTIL_U32MAP_H

#include <stdint.h>

#include "util/alloc.h"

/* One open-addressing table, u32 key -> u64 value (internal). */
struct sp_u32tab {
	uint32_t *key;		/* key + 1, or 0: empty */
	uint64_t *val;		/* where key[i] != 0 */
	uint32_t cap;		/* 0 or a power of two */
	uint32_t n;		/* keys present; n * 2 <= cap */
};

struct sp_u32map {
	struct sp_u32tab blk;	/* id >> 6 -> bitmap (never 0) of the ids
				 * present among the 64 of that block */
	struct sp_u32tab more;	/* id -> count - 1, only where count >= 2
				 * (the id's bit is then set) */
	uint32_t n;		/* ids present (count >= 1) */
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

/* sp_u32map_next - iterate: start with *@pos = 0; each call gives the
 * next id present and its count.  The map must not change meanwhile.
 * Return: 1 (*@key, *@count set), or 0 at the end. */
int sp_u32map_next(const struct sp_u32map *m, uint64_t *pos, uint32_t *key,
		   uint32_t *count);

/* sp_u32map_bytes - memory the map holds now. */
uint64_t sp_u32map_bytes(const struct sp_u32map *m);

/* sp_u32map_clear - every key gone; memory kept. */
void sp_u32map_clear(struct sp_u32map *m);

/* sp_u32map_free - memory back to @mem; the map is empty after. */
void sp_u32map_free(struct sp_u32map *m, const struct sp_mem *mem);

#endif
