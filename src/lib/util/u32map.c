/*
 * u32map.c - counts keyed by 32-bit ids; see u32map.h.
 */
#include <errno.h>

#include "util/u32map.h"

static uint32_t home(const struct sp_u32map *m, uint32_t key1)
{
	return ((key1 - 1) * 2654435761u) & (m->cap - 1);
}

/* The slot holding @key, or the empty slot ending its probe chain. */
static uint32_t probe(const struct sp_u32map *m, uint32_t key, int *found)
{
	uint32_t i = home(m, key + 1);

	while (m->key[i] && m->key[i] != key + 1)
		i = (i + 1) & (m->cap - 1);
	*found = m->key[i] != 0;
	return i;
}

static int grow(struct sp_u32map *m, const struct sp_mem *mem)
{
	struct sp_u32map o = *m;
	uint32_t cap = m->cap ? m->cap * 2 : 1024;
	uint32_t *k = sp_mem_alloc(mem, (size_t)cap * 4);
	uint32_t *v = sp_mem_alloc(mem, (size_t)cap * 4);
	int found;

	if (!k || !v) {
		sp_mem_free(mem, k, (size_t)cap * 4);
		sp_mem_free(mem, v, (size_t)cap * 4);
		return -ENOMEM;
	}
	m->key = k;
	m->val = v;
	m->cap = cap;
	for (uint32_t i = 0; i < o.cap; i++)
		if (o.key[i]) {
			uint32_t j = probe(m, o.key[i] - 1, &found);

			k[j] = o.key[i];
			v[j] = o.val[i];
		}
	sp_mem_free(mem, o.key, (size_t)o.cap * 4);
	sp_mem_free(mem, o.val, (size_t)o.cap * 4);
	return 0;
}

uint32_t sp_u32map_get(const struct sp_u32map *m, uint32_t key)
{
	int found;
	uint32_t i;

	if (!m->cap)
		return 0;
	i = probe(m, key, &found);
	return found ? m->val[i] : 0;
}

int64_t sp_u32map_inc(struct sp_u32map *m, const struct sp_mem *mem,
		      uint32_t key)
{
	int found;
	uint32_t i;

	if ((m->n + 1) * 2 > m->cap && grow(m, mem))
		return -ENOMEM;
	i = probe(m, key, &found);
	if (!found) {
		m->key[i] = key + 1;
		m->val[i] = 0;
		m->n++;
	}
	return ++m->val[i];
}

int64_t sp_u32map_dec(struct sp_u32map *m, uint32_t key)
{
	uint32_t i, j;
	int found;

	if (!m->cap)
		return -1;
	i = probe(m, key, &found);
	if (!found)
		return -1;
	if (--m->val[i])
		return m->val[i];
	m->key[i] = 0;
	m->n--;
	/* Backward shift: pull later entries of the chain into the hole
	 * unless their home lies cyclically in (i, j]. */
	for (j = (i + 1) & (m->cap - 1); m->key[j]; j = (j + 1) & (m->cap - 1)) {
		uint32_t h = home(m, m->key[j]);

		if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
			m->key[i] = m->key[j];
			m->val[i] = m->val[j];
			m->key[j] = 0;
			i = j;
		}
	}
	return 0;
}

void sp_u32map_clear(struct sp_u32map *m)
{
	for (uint32_t i = 0; i < m->cap; i++)
		m->key[i] = 0;
	m->n = 0;
}

void sp_u32map_free(struct sp_u32map *m, const struct sp_mem *mem)
{
	sp_mem_free(mem, m->key, (size_t)m->cap * 4);
	sp_mem_free(mem, m->val, (size_t)m->cap * 4);
	m->key = m->val = NULL;
	m->cap = m->n = 0;
}
