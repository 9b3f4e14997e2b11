/*
 * u32map.c - counts keyed by 32-bit ids, as 64-id bitmaps; see u32map.h.
 */
#include <errno.h>

#include "util/u32map.h"

#define TAB_MIN 64u
#define BLK_SHIFT 6

/* ---- one table: u32 key -> u64 value ------------------------------------ */

static uint32_t home(const struct sp_u32tab *t, uint32_t key1)
{
	return ((key1 - 1) * 2654435761u) & (t->cap - 1);
}

/* The slot holding @key, or the empty slot ending its probe chain. */
static uint32_t probe(const struct sp_u32tab *t, uint32_t key, int *found)
{
	uint32_t i = home(t, key + 1);

	while (t->key[i] && t->key[i] != key + 1)
		i = (i + 1) & (t->cap - 1);
	*found = t->key[i] != 0;
	return i;
}

static uint64_t tab_bytes(uint32_t cap)
{
	return (uint64_t)cap * (sizeof(uint32_t) + sizeof(uint64_t));
}

static void tab_release(struct sp_u32tab *t, const struct sp_mem *mem)
{
	sp_mem_free(mem, t->key, (size_t)t->cap * sizeof(uint32_t));
	sp_mem_free(mem, t->val, (size_t)t->cap * sizeof(uint64_t));
}

static int tab_grow(struct sp_u32tab *t, const struct sp_mem *mem)
{
	struct sp_u32tab o = *t, n = { .cap = t->cap ? t->cap * 2 : TAB_MIN };
	uint32_t *k, cap = n.cap;
	uint64_t *v;
	int found;

	n.key = k = sp_mem_alloc(mem, (size_t)cap * sizeof(uint32_t));
	n.val = v = sp_mem_alloc(mem, (size_t)cap * sizeof(uint64_t));
	if (!k || !v) {
		tab_release(&n, mem);
		return -ENOMEM;
	}
	t->key = k;
	t->val = v;
	t->cap = cap;
	for (uint32_t i = 0; i < o.cap; i++)
		if (o.key[i]) {
			uint32_t j = probe(t, o.key[i] - 1, &found);

			k[j] = o.key[i];
			v[j] = o.val[i];
		}
	tab_release(&o, mem);
	return 0;
}

/* The value slot of @key, or NULL if absent. */
static uint64_t *tab_find(const struct sp_u32tab *t, uint32_t key)
{
	int found;
	uint32_t i;

	if (!t->cap)
		return NULL;
	i = probe(t, key, &found);
	return found ? &t->val[i] : NULL;
}

/* Insert absent @key with value 0.  Return: its value slot, or NULL
 * (no memory; nothing changed). */
static uint64_t *tab_add(struct sp_u32tab *t, const struct sp_mem *mem,
			 uint32_t key)
{
	int found;
	uint32_t i;

	if ((t->n + 1) * 2 > t->cap && tab_grow(t, mem))
		return NULL;
	i = probe(t, key, &found);
	t->key[i] = key + 1;
	t->val[i] = 0;
	t->n++;
	return &t->val[i];
}

/* Remove present @key. */
static void tab_del(struct sp_u32tab *t, uint32_t key)
{
	uint32_t i, j;
	int found;

	i = probe(t, key, &found);
	t->key[i] = 0;
	t->n--;
	/* Backward shift: pull later entries of the chain into the hole
	 * unless their home lies cyclically in (i, j]. */
	for (j = (i + 1) & (t->cap - 1); t->key[j]; j = (j + 1) & (t->cap - 1)) {
		uint32_t h = home(t, t->key[j]);

		if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
			t->key[i] = t->key[j];
			t->val[i] = t->val[j];
			t->key[j] = 0;
			i = j;
		}
	}
}

/* ---- the map ------------------------------------------------------------ */

static uint64_t bit_of(uint32_t key)
{
	return 1ull << (key & 63);
}

uint32_t sp_u32map_get(const struct sp_u32map *m, uint32_t key)
{
	const uint64_t *b = tab_find(&m->blk, key >> BLK_SHIFT), *x;

	if (!b || !(*b & bit_of(key)))
		return 0;
	x = tab_find(&m->more, key);
	return 1 + (x ? (uint32_t)*x : 0);
}

int64_t sp_u32map_inc(struct sp_u32map *m, const struct sp_mem *mem,
		      uint32_t key)
{
	uint64_t *b = tab_find(&m->blk, key >> BLK_SHIFT), *x;

	if (b && (*b & bit_of(key))) {
		x = tab_find(&m->more, key);
		if (!x && !(x = tab_add(&m->more, mem, key)))
			return -ENOMEM;
		return (int64_t)++*x + 1;
	}
	if (!b && !(b = tab_add(&m->blk, mem, key >> BLK_SHIFT)))
		return -ENOMEM;
	*b |= bit_of(key);
	m->n++;
	return 1;
}

int64_t sp_u32map_dec(struct sp_u32map *m, uint32_t key)
{
	uint64_t *b = tab_find(&m->blk, key >> BLK_SHIFT), *x;

	if (!b || !(*b & bit_of(key)))
		return -1;
	x = tab_find(&m->more, key);
	if (x) {
		if (--*x)
			return (int64_t)*x + 1;
		tab_del(&m->more, key);
		return 1;
	}
	*b &= ~bit_of(key);
	if (!*b)
		tab_del(&m->blk, key >> BLK_SHIFT);
	m->n--;
	return 0;
}

int sp_u32map_next(const struct sp_u32map *m, uint64_t *pos, uint32_t *key,
		   uint32_t *count)
{
	for (uint64_t p = *pos; (p >> BLK_SHIFT) < m->blk.cap; p++) {
		uint32_t i = (uint32_t)(p >> BLK_SHIFT), bit = p & 63;
		const uint64_t *x;
		uint64_t rest;

		if (!m->blk.key[i]) {
			p |= 63;
			continue;
		}
		rest = m->blk.val[i] >> bit;
		if (!rest) {
			p |= 63;
			continue;
		}
		p += (uint64_t)__builtin_ctzll(rest);
		*key = (m->blk.key[i] - 1) << BLK_SHIFT | (uint32_t)(p & 63);
		x = tab_find(&m->more, *key);	/* the bit is set: >= 1 */
		*count = 1 + (x ? (uint32_t)*x : 0);
		*pos = p + 1;
		return 1;
	}
	*pos = (uint64_t)m->blk.cap << BLK_SHIFT;
	return 0;
}

uint64_t sp_u32map_bytes(const struct sp_u32map *m)
{
	return tab_bytes(m->blk.cap) + tab_bytes(m->more.cap);
}

void sp_u32map_clear(struct sp_u32map *m)
{
	for (uint32_t i = 0; i < m->blk.cap; i++)
		m->blk.key[i] = 0;
	for (uint32_t i = 0; i < m->more.cap; i++)
		m->more.key[i] = 0;
	m->blk.n = m->more.n = 0;
	m->n = 0;
}

void sp_u32map_free(struct sp_u32map *m, const struct sp_mem *mem)
{
	tab_release(&m->blk, mem);
	tab_release(&m->more, mem);
	*m = (struct sp_u32map){ 0 };
}
