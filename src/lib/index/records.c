/*
 * records.c - record chunks and the chunk id table.
 */
#include "records.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void sp_chunktab_init(struct sp_chunktab *t, const struct sp_mem *mem)
{
	memset(t, 0, sizeof(*t));
	t->free_head = UINT32_MAX;
	t->mem = *mem;
}

void sp_chunktab_destroy(struct sp_chunktab *t)
{
	sp_mem_free(&t->mem, t->slot, (size_t)t->cap * sizeof(uintptr_t));
	t->slot = NULL;
	t->cap = t->used = 0;
}

/* Take a free id, growing the table if needed. */
static int id_alloc(struct sp_chunktab *t, uint32_t *id)
{
	if (t->free_head != UINT32_MAX) {
		*id = t->free_head;
		t->free_head = (uint32_t)(t->slot[*id] >> 1);
		return 0;
	}
	if (t->used == SP_CHUNK_ID_MAX)
		return -ENOSPC;
	if (t->used == t->cap) {
		uint32_t cap = t->cap ? t->cap * 2 : 64;
		uintptr_t *s;

		if (cap > SP_CHUNK_ID_MAX)
			cap = SP_CHUNK_ID_MAX;
		s = sp_mem_resize(&t->mem, t->slot,
				  (size_t)t->cap * sizeof(uintptr_t),
				  (size_t)cap * sizeof(uintptr_t));
		if (!s)
			return -ENOMEM;
		t->slot = s;
		t->cap = cap;
	}
	*id = t->used++;
	return 0;
}

static void id_free(struct sp_chunktab *t, uint32_t id)
{
	t->slot[id] = ((uintptr_t)t->free_head << 1) | 1;
	t->free_head = id;
}

struct sp_chunk *sp_chunk_find(struct sp_rb_root *tree, uintptr_t addr)
{
	uintptr_t w = chunk_window(addr);
	struct sp_rb_node *n = tree->node;

	while (n) {
		struct sp_chunk *c = sp_rb_container(n, struct sp_chunk, node);

		if (w < c->window)
			n = n->left;
		else if (w > c->window)
			n = n->right;
		else
			return c;
	}
	return NULL;
}

int sp_chunk_get(struct sp_chunktab *t, struct sp_rb_root *tree, void *owner,
		 void *be_space, uintptr_t addr, struct sp_chunk **out)
{
	uintptr_t w = chunk_window(addr);
	struct sp_rb_node **link = &tree->node, *parent = NULL;
	struct sp_chunk *c;
	uint32_t id;
	int err;

	while (*link) {
		c = sp_rb_container(*link, struct sp_chunk, node);
		parent = *link;
		if (w < c->window) {
			link = &parent->left;
		} else if (w > c->window) {
			link = &parent->right;
		} else {
			*out = c;
			return 0;
		}
	}
	err = id_alloc(t, &id);
	if (err)
		return err;
	c = sp_mem_alloc(&t->mem, sizeof(*c));
	if (!c) {
		id_free(t, id);
		return -ENOMEM;
	}
	c->owner = owner;
	c->be_space = be_space;
	c->window = w;
	c->id = id;
	t->slot[id] = (uintptr_t)c;
	t->nchunks++;
	sp_rb_link(&c->node, parent, link);
	sp_rb_insert_color(&c->node, tree);
	*out = c;
	return 0;
}

void sp_chunk_put(struct sp_chunktab *t, struct sp_rb_root *tree,
		  struct sp_chunk *c)
{
	if (c->nlive)
		return;
	sp_rb_erase(&c->node, tree);
	id_free(t, c->id);
	t->nchunks--;
#ifndef NDEBUG
	memset(c, 0x6b, sizeof(*c));	/* poison: catch use after free */
#endif
	sp_mem_free(&t->mem, c, sizeof(*c));
}
_Static_assert(sizeof(struct sp_rec) == 8, "page record grew: it is paid per page");
