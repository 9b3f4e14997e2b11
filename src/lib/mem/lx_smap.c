/*
 * lx_smap.c - the index of store mappings: which ranges of the process
 * we mapped to which runs of stable pages, as the kernel merges them
 * (adjacent ranges continuing each other's pages are one entry, like
 * one VMA).  Hints only: whoever decides that a page is still merged or
 * that a stable page is unreachable asks the kernel (pagemap, maps).
 */
#include <stdint.h>

#include "linux.h"

static struct lx_smap *smap(struct sp_rb_node *n)
{
	return n ? sp_rb_container(n, struct lx_smap, node) : NULL;
}

struct lx_smap *lx_smap_find(struct sp_linux *lx, uintptr_t addr)
{
	struct sp_rb_node *n = lx->smaps.node, *best = NULL;

	while (n) {
		if (smap(n)->end > addr) {
			best = n;
			n = n->left;
		} else {
			n = n->right;
		}
	}
	return smap(best);
}

static void smap_link(struct sp_linux *lx, struct lx_smap *m)
{
	struct sp_rb_node **link = &lx->smaps.node, *parent = NULL;

	while (*link) {
		parent = *link;
		link = m->start < smap(parent)->start ? &parent->left
						      : &parent->right;
	}
	sp_rb_link(&m->node, parent, link);
	sp_rb_insert_color(&m->node, &lx->smaps);
}

void lx_smap_del(struct sp_linux *lx, uintptr_t start, uintptr_t end)
{
	struct lx_smap *m = lx_smap_find(lx, start);

	while (m && m->start < end) {
		struct lx_smap *next = smap(sp_rb_next(&m->node));

		if (m->start >= start && m->end <= end) {
			sp_rb_erase(&m->node, &lx->smaps);
			sp_mem_free(&lx->mem, m, sizeof(*m));
		} else if (m->start < start && m->end > end) {
			struct lx_smap *t = sp_mem_alloc(&lx->mem, sizeof(*t));

			if (t) {	/* else keep the tail: STABLE, harmless */
				t->start = end;
				t->end = m->end;
				t->first = m->first +
					   (uint32_t)((end - m->start) / LX_PS);
				smap_link(lx, t);
			}
			m->end = start;
		} else if (m->start < start) {
			m->end = start;
		} else {
			m->first += (uint32_t)((end - m->start) / LX_PS);
			m->start = end;
		}
		m = next;
	}
}

void lx_smap_add(struct sp_linux *lx, uintptr_t start, uintptr_t end,
		 uint32_t first)
{
	struct lx_smap *m, *prev, *next;

	lx_smap_del(lx, start, end);
	next = lx_smap_find(lx, start);
	prev = next ? smap(sp_rb_prev(&next->node)) :
		      smap(sp_rb_last(&lx->smaps));
	/* Extend a neighbour whose pages continue ours, as the kernel
	 * merges the VMAs. */
	if (prev && prev->end == start &&
	    prev->first + (prev->end - prev->start) / LX_PS == first) {
		prev->end = end;
		if (next && next->start == end &&
		    first + (end - start) / LX_PS == next->first) {
			prev->end = next->end;
			sp_rb_erase(&next->node, &lx->smaps);
			sp_mem_free(&lx->mem, next, sizeof(*next));
		}
		return;
	}
	if (next && next->start == end &&
	    first + (end - start) / LX_PS == next->first) {
		next->start = start;
		next->first = first;
		return;
	}
	m = sp_mem_alloc(&lx->mem, sizeof(*m));
	if (!m)
		return;	/* pages read as NONE: the engine drops, never loses */
	m->start = start;
	m->end = end;
	m->first = first;
	smap_link(lx, m);
}

void lx_smap_clear(struct sp_linux *lx)
{
	struct sp_rb_node *n;

	while ((n = sp_rb_first(&lx->smaps))) {
		sp_rb_erase(n, &lx->smaps);
		sp_mem_free(&lx->mem, smap(n), sizeof(struct lx_smap));
	}
}
