/*
 * stable.c - stable node pool, stable tree, chains and dups.
 */
#include "stable.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRIDE sizeof(struct sp_snode)

int sp_stable_init(struct sp_stable *st, const struct sp_backend_ops *ops,
		   void *be, void *const *staging, uint64_t seed,
		   const struct sp_mem *mem, const struct sp_mem *fixed)
{
	memset(st, 0, sizeof(*st));
	st->tree.root = SP_INIL;
	st->tree.seed = seed;
	st->free_head = SP_INIL;
	st->ops = ops;
	st->be = be;
	st->staging = staging;
	st->mem = *mem;
	st->fixed = *fixed;
	st->buf = sp_mem_alloc(&st->fixed, 2 * SP_PAGE_SIZE);
	return st->buf ? 0 : -ENOMEM;
}

void sp_stable_destroy(struct sp_stable *st)
{
	sp_mem_free(&st->mem, st->node, (size_t)st->cap * STRIDE);
	sp_mem_free(&st->fixed, st->buf, 2 * SP_PAGE_SIZE);
	st->node = NULL;
	st->buf = NULL;
	st->cap = 0;
}

/* The second scratch page: holds a key taken from a node's own content
 * while the walk reads other nodes into the first. */
static void *kbuf(struct sp_stable *st)
{
	return (char *)st->buf + SP_PAGE_SIZE;
}

static int node_alloc(struct sp_stable *st, uint32_t *out)
{
	if (st->free_head == SP_INIL) {
		/* Grow by 1/8: nodes are metadata paid per stable page, and
		 * realloc of a large block remaps rather than copies. */
		uint32_t cap = st->cap + st->cap / 8 + 256;
		struct sp_snode *n;

		if (st->cap >= SN_TAIL - 4096)
			return -ENOMEM;
		n = sp_mem_resize(&st->mem, st->node, (size_t)st->cap * STRIDE,
				  (size_t)cap * STRIDE);
		if (!n)
			return -ENOMEM;
		for (uint32_t i = cap; i-- > st->cap;) {
			memset(&n[i], 0, STRIDE);
			n[i].next = st->free_head;
			st->free_head = i;
		}
		st->node = n;
		st->cap = cap;
	}
	*out = st->free_head;
	st->free_head = st->node[*out].next;
	memset(&st->node[*out], 0, STRIDE);
	st->node[*out].left = st->node[*out].right = SP_INIL;
	st->node[*out].next = SP_INIL;
	st->nlive++;
	return 0;
}

static void node_free(struct sp_stable *st, uint32_t i)
{
	memset(&st->node[i], 0, STRIDE);	/* kind = SN_FREE */
	st->node[i].next = st->free_head;
	st->free_head = i;
	st->nlive--;
}

/* Content of node @i, read into @buf if the backend needs a buffer. */
static const void *content_into(struct sp_stable *st, uint32_t i, void *buf)
{
	struct sp_snode *n = sn(st, i);

	if (n->kind == SN_CHAIN)
		n = sn(st, n->next);
	if (n->flags & SNF_NEW)
		return st->staging[n->spage];
	return st->ops->stable_peek(st->be, n->spage, buf);
}

const void *sp_stable_content(struct sp_stable *st, uint32_t i)
{
	return content_into(st, i, st->buf);
}

static int can_share(const struct sp_snode *n, uint64_t max_sharing)
{
	return !(n->flags & SNF_DEAD) &&
	       (uint64_t)n->sharers + n->pending < max_sharing;
}

/* A node of content-node @i that can take one more sharer, or SP_INIL. */
static uint32_t pick(struct sp_stable *st, uint32_t i, uint64_t max_sharing)
{
	struct sp_snode *c = sn(st, i);
	uint32_t prev = SP_INIL;

	if (c->kind == SN_PLAIN)
		return can_share(c, max_sharing) ? i : SP_INIL;
	for (uint32_t d = c->next; !(d & SN_TAIL); prev = d, d = sn(st, d)->next) {
		if (!can_share(sn(st, d), max_sharing))
			continue;
		if (prev != SP_INIL) {	/* move to the head: found first next time */
			sn(st, prev)->next = sn(st, d)->next;
			sn(st, d)->next = c->next;
			c->next = d;
		}
		return d;
	}
	return SP_INIL;
}

uint32_t sp_stable_search(struct sp_stable *st, const void *key,
			  uint64_t max_sharing, struct sp_ipath *path,
			  uint32_t *match)
{
	uint32_t i = st->tree.root;

	sp_ipath_init(path);
	*match = SP_INIL;
	while (i != SP_INIL) {
		const void *c = sp_stable_content(st, i);
		int r;

		if (!c)
			goto abandon;
		r = memcmp(key, c, SP_PAGE_SIZE);
		if (r == 0) {
			*match = i;
			return pick(st, i, max_sharing);
		}
		if (sp_ipath_push(path, i, r > 0) < 0)
			goto abandon;
		i = r < 0 ? sn(st, i)->left : sn(st, i)->right;
	}
	return SP_INIL;
abandon:
	path->depth = SP_IPATH_MAX + 1;
	return SP_INIL;
}

/* Path from the root to tree node @i, by its content; falls back to a
 * walk of the whole tree if the content walk misses (it cannot, unless
 * the tree is corrupt).  Return: 0, or -1 if @i is not in the tree. */
static int path_to(struct sp_stable *st, uint32_t i, struct sp_ipath *path)
{
	const void *key = content_into(st, i, kbuf(st));
	uint32_t j = st->tree.root;

	sp_ipath_init(path);
	while (key && j != SP_INIL && j != i) {
		const void *c = sp_stable_content(st, j);
		int r = c ? memcmp(key, c, SP_PAGE_SIZE) : 0;

		if (r == 0 || sp_ipath_push(path, j, r > 0) < 0)
			break;
		j = r < 0 ? sn(st, j)->left : sn(st, j)->right;
	}
	if (j == i)
		return 0;
	assert(!"stable tree: content walk missed a node");
	/* Exhaustive depth-first search, keeping the path. */
	sp_ipath_init(path);
	j = st->tree.root;
	while (j != SP_INIL) {
		if (j == i)
			return 0;
		if (sn(st, j)->left != SP_INIL) {
			if (sp_ipath_push(path, j, 0) < 0)
				return -1;
			j = sn(st, j)->left;
			continue;
		}
		if (sn(st, j)->right != SP_INIL) {
			if (sp_ipath_push(path, j, 1) < 0)
				return -1;
			j = sn(st, j)->right;
			continue;
		}
		/* Leaf: climb to the nearest ancestor with an untried right. */
		for (;;) {
			if (!path->depth)
				return -1;
			path->depth--;
			j = path->node[path->depth];
			if (!path->right[path->depth] &&
			    sn(st, j)->right != SP_INIL) {
				path->right[path->depth] = 1;
				path->depth++;
				j = sn(st, j)->right;
				break;
			}
		}
	}
	return -1;
}

static void tree_remove(struct sp_stable *st, uint32_t i)
{
	struct sp_ipath path;

	if (path_to(st, i, &path) == 0)
		sp_itreap_delete(&st->tree, st->node, STRIDE, &path, i);
}

/* Insert tree node @i by its own content (no equal content may exist).
 * Only a corrupt tree can make the walk too deep; @i then stays out of
 * the tree, which sp_stable_verify() reports. */
static void tree_insert(struct sp_stable *st, uint32_t i)
{
	const void *key = content_into(st, i, kbuf(st));
	struct sp_ipath path;
	uint32_t j = st->tree.root;

	sp_ipath_init(&path);
	while (j != SP_INIL) {
		const void *c = sp_stable_content(st, j);
		int r = (key && c) ? memcmp(key, c, SP_PAGE_SIZE) : 1;

		assert(r != 0);
		if (sp_ipath_push(&path, j, r >= 0) < 0) {
			assert(!"stable tree deeper than SP_IPATH_MAX");
			return;
		}
		j = r < 0 ? sn(st, j)->left : sn(st, j)->right;
	}
	sp_itreap_insert(&st->tree, st->node, STRIDE, &path, i);
}

int sp_stable_new(struct sp_stable *st, uint32_t slot,
		  const struct sp_ipath *path, uint32_t match, uint32_t *out)
{
	uint32_t i, c = SP_INIL;
	int err;

	if (match == SP_INIL && path->depth > SP_IPATH_MAX)
		return -E2BIG;
	if (match != SP_INIL && sn(st, match)->kind == SN_PLAIN) {
		err = node_alloc(st, &c);
		if (err)
			return err;
	}
	err = node_alloc(st, &i);
	if (err) {
		if (c != SP_INIL)
			node_free(st, c);
		return err;
	}
	sn(st, i)->kind = SN_PLAIN;
	sn(st, i)->flags = SNF_NEW;
	sn(st, i)->spage = slot;
	*out = i;

	if (match == SP_INIL) {
		sp_itreap_insert(&st->tree, st->node, STRIDE, path, i);
		return 0;
	}
	if (c != SP_INIL) {
		/* Turn plain @match into chain @c holding @match as a dup. */
		tree_remove(st, match);
		sn(st, c)->kind = SN_CHAIN;
		sn(st, c)->next = match;
		sn(st, c)->sharers = 1;
		sn(st, match)->kind = SN_DUP;
		sn(st, match)->next = SN_TAIL | c;
		tree_insert(st, c);
		st->chains++;
		st->dups++;
		match = c;
	}
	sn(st, i)->kind = SN_DUP;
	sn(st, i)->next = sn(st, match)->next;
	sn(st, match)->next = i;
	sn(st, match)->sharers++;
	st->dups++;
	return 0;
}

void sp_stable_set_page(struct sp_stable *st, uint32_t i, sp_spage_t page)
{
	assert(sn(st, i)->flags & SNF_NEW);
	sn(st, i)->spage = page;
	sn(st, i)->flags &= ~SNF_NEW;
}

static void release_page(struct sp_stable *st, uint32_t i)
{
	if (!(sn(st, i)->flags & SNF_NEW))
		st->ops->stable_release(st->be, sn(st, i)->spage, 1);
}

/* A chain with one dup left becomes that dup, as a plain node. */
static void collapse(struct sp_stable *st, uint32_t c)
{
	uint32_t d = sn(st, c)->next;

	tree_remove(st, c);
	sn(st, d)->kind = SN_PLAIN;
	sn(st, d)->next = SP_INIL;
	node_free(st, c);
	tree_insert(st, d);
	st->chains--;
	st->dups--;
}

static void maybe_free(struct sp_stable *st, uint32_t i)
{
	struct sp_snode *n = sn(st, i);
	uint32_t c, *link;

	if (n->sharers || n->pending)
		return;
	if (n->kind == SN_PLAIN) {
		tree_remove(st, i);
		release_page(st, i);
		node_free(st, i);
		return;
	}
	assert(n->kind == SN_DUP);
	for (c = n->next; !(c & SN_TAIL); c = sn(st, c)->next)
		;
	c &= ~SN_TAIL;
	for (link = &sn(st, c)->next; *link != i; link = &sn(st, *link)->next)
		assert(!(*link & SN_TAIL));
	*link = n->next;
	/* Release before any tree work: the chain's content is another dup. */
	release_page(st, i);
	node_free(st, i);
	st->dups--;
	if (--sn(st, c)->sharers == 1)
		collapse(st, c);
}

void sp_stable_add_sharer(struct sp_stable *st, uint32_t i)
{
	if (sn(st, i)->sharers++ == 0)
		st->pages_shared++;
	else
		st->pages_sharing++;
}

void sp_stable_drop_sharer(struct sp_stable *st, uint32_t i)
{
	assert(sn(st, i)->sharers > 0);
	if (--sn(st, i)->sharers == 0)
		st->pages_shared--;
	else
		st->pages_sharing--;
	maybe_free(st, i);
}

void sp_stable_unpend(struct sp_stable *st, uint32_t i)
{
	assert(sn(st, i)->pending > 0);
	sn(st, i)->pending--;
	maybe_free(st, i);
}

/* ---- verification ---------------------------------------------------- */

struct vstate {
	struct sp_stable *st;
	char *prev;		/* content of the previous node in order */
	int have_prev;
	uint64_t shared, sharing, chains, dups, pages;
	char *why;
	size_t whylen;
};

static int vfail(struct vstate *v, const char *msg, uint32_t i)
{
	if (v->why)
		snprintf(v->why, v->whylen, "stable node %u: %s", i, msg);
	return -EUCLEAN;
}

static int vpage(struct vstate *v, uint32_t i)
{
	struct sp_snode *n = sn(v->st, i);

	if (n->flags & (SNF_NEW | SNF_DEAD) || n->pending)
		return vfail(v, "left NEW, DEAD or pending", i);
	if (!n->sharers)
		return vfail(v, "no sharer but not freed", i);
	v->shared++;
	v->sharing += n->sharers - 1;
	v->pages++;
	return 0;
}

static int vnode(struct vstate *v, uint32_t i, unsigned depth)
{
	struct sp_stable *st = v->st;
	struct sp_snode *n = sn(st, i);
	const void *c;
	int err;

	if (depth > SP_IPATH_MAX * 2)
		return vfail(v, "tree too deep or cyclic", i);
	if (n->left != SP_INIL && (err = vnode(v, n->left, depth + 1)))
		return err;
	if (n->kind == SN_PLAIN) {
		if ((err = vpage(v, i)))
			return err;
	} else if (n->kind == SN_CHAIN) {
		uint32_t count = 0;
		const void *cc = content_into(st, i, kbuf(st));

		v->chains++;
		uint32_t d;

		for (d = n->next; !(d & SN_TAIL); d = sn(st, d)->next) {
			const void *dc;

			if (d >= st->cap || sn(st, d)->kind != SN_DUP)
				return vfail(v, "chain lists a non-dup", i);
			if ((err = vpage(v, d)))
				return err;
			dc = sp_stable_content(st, d);
			if (!cc || !dc || memcmp(cc, dc, SP_PAGE_SIZE))
				return vfail(v, "dup content differs", d);
			if (++count > st->cap)
				return vfail(v, "chain list cycles", i);
		}
		if (d != (SN_TAIL | i))
			return vfail(v, "dup list does not end at its chain", i);
		if (count != n->sharers || count < 2)
			return vfail(v, "chain dup count wrong or < 2", i);
		v->dups += count;
	} else {
		return vfail(v, "tree holds a free or dup node", i);
	}
	c = sp_stable_content(st, i);
	if (!c)
		return vfail(v, "content unreadable", i);
	if (v->have_prev && memcmp(v->prev, c, SP_PAGE_SIZE) >= 0)
		return vfail(v, "content out of order or repeated", i);
	memcpy(v->prev, c, SP_PAGE_SIZE);
	v->have_prev = 1;
	if (n->right != SP_INIL && (err = vnode(v, n->right, depth + 1)))
		return err;
	return 0;
}

int sp_stable_verify(struct sp_stable *st, char *why, size_t whylen)
{
	struct vstate v = { .st = st, .why = why, .whylen = whylen };
	uint32_t nfree = 0;
	int err = 0;

	if (sp_itreap_check(&st->tree, st->node, STRIDE, st->cap) < 0)
		return vfail(&v, "treap heap order broken", st->tree.root);
	v.prev = malloc(SP_PAGE_SIZE);
	if (!v.prev)
		return -ENOMEM;
	if (st->tree.root != SP_INIL)
		err = vnode(&v, st->tree.root, 0);
	free(v.prev);
	if (err)
		return err;
	for (uint32_t f = st->free_head; f != SP_INIL; f = st->node[f].next)
		if (++nfree > st->cap)
			return vfail(&v, "free list cycles", f);
	if (nfree + st->nlive != st->cap)
		return vfail(&v, "nodes leaked (neither free nor reachable)", 0);
	if (v.pages + v.chains != st->nlive)
		return vfail(&v, "live nodes unreachable from the tree", 0);
	if (v.shared != st->pages_shared || v.sharing != st->pages_sharing ||
	    v.chains != st->chains || v.dups != st->dups) {
		if (why)
			snprintf(why, whylen,
				 "stable counters: shared %llu/%llu sharing %llu/%llu chains %llu/%llu dups %llu/%llu (recount/kept)",
				 (unsigned long long)v.shared,
				 (unsigned long long)st->pages_shared,
				 (unsigned long long)v.sharing,
				 (unsigned long long)st->pages_sharing,
				 (unsigned long long)v.chains,
				 (unsigned long long)st->chains,
				 (unsigned long long)v.dups,
				 (unsigned long long)st->dups);
		return -EUCLEAN;
	}
	return 0;
}
_Static_assert(sizeof(struct sp_snode) == 24, "stable node grew: it is paid per stable page");
