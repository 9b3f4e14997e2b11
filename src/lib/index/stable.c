/*
 * stable.c - stable node pool, the index over it, chains and dups.
 */
#include "stable.h"

#include "../util/hash.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRIDE sizeof(struct sp_snode)
#define IDX_MIN 256u		/* fewest buckets */
#define IDX_MAX (1u << 31)	/* most buckets */

int sp_stable_init(struct sp_stable *st, const struct sp_backend_ops *ops,
		   void *be, void *const *staging, const struct sp_mem *mem,
		   const struct sp_mem *fixed)
{
	memset(st, 0, sizeof(*st));
	st->free_head = SP_INIL;
	st->ops = ops;
	st->be = be;
	st->staging = staging;
	st->mem = *mem;
	st->fixed = *fixed;
	st->buf = sp_mem_alloc(&st->fixed, 2 * SP_PAGE_SIZE);
	if (!st->buf || sp_ibuckets_resize(&st->idx, &st->mem, IDX_MIN)) {
		sp_mem_free(&st->fixed, st->buf, 2 * SP_PAGE_SIZE);
		st->buf = NULL;
		return -ENOMEM;
	}
	return 0;
}

void sp_stable_destroy(struct sp_stable *st)
{
	sp_mem_free(&st->mem, st->node, (size_t)st->cap * STRIDE);
	sp_mem_free(&st->fixed, st->buf, 2 * SP_PAGE_SIZE);
	sp_ibuckets_free(&st->idx, &st->mem);
	st->node = NULL;
	st->buf = NULL;
	st->cap = 0;
}

/* The second scratch page: the verifier holds a chain's content there
 * while it reads each dup's into the first. */
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
	st->node[*out].hnext = SP_INIL;
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

/* ---- the index ------------------------------------------------------ */

/* Link every PLAIN and CHAIN node again after the heads were replaced. */
static void idx_relink(struct sp_stable *st)
{
	for (uint32_t i = 0; i < st->cap; i++) {
		struct sp_snode *n = sn(st, i);
		uint32_t *h;

		if (n->kind != SN_PLAIN && n->kind != SN_CHAIN)
			continue;
		h = sp_ibucket(&st->idx, n->hash);
		n->hnext = *h;
		*h = i;
	}
}

/* Keep between 1/8 and 1 node per bucket.  A failed resize keeps the
 * old heads: chains get longer, nothing is lost.  Called only where the
 * index holds exactly the PLAIN and CHAIN nodes (idx_relink goes by
 * kind), after idx_add / idx_del and the kind changes around them. */
static void idx_fit(struct sp_stable *st)
{
	uint32_t want;

	if (st->nindexed > st->idx.n && st->idx.n < IDX_MAX)
		want = st->idx.n * 2;
	else if (st->nindexed < st->idx.n / 8 && st->idx.n > IDX_MIN)
		want = sp_pow2_at_least((uint64_t)st->nindexed * 2, IDX_MIN,
					IDX_MAX);
	else
		return;
	if (sp_ibuckets_resize(&st->idx, &st->mem, want) == 0)
		idx_relink(st);
}

/* The link that points at indexed node @i (a bucket head or a node's
 * hnext). */
static uint32_t *idx_link(struct sp_stable *st, uint32_t i)
{
	uint32_t *l = sp_ibucket(&st->idx, sn(st, i)->hash);

	while (*l != i) {
		assert(*l != SP_INIL);	/* @i is not indexed: corrupt */
		l = &sn(st, *l)->hnext;
	}
	return l;
}

static void idx_add(struct sp_stable *st, uint32_t i)
{
	uint32_t *h = sp_ibucket(&st->idx, sn(st, i)->hash);

	sn(st, i)->hnext = *h;
	*h = i;
	st->nindexed++;
}

static void idx_del(struct sp_stable *st, uint32_t i)
{
	*idx_link(st, i) = sn(st, i)->hnext;
	sn(st, i)->hnext = SP_INIL;
	st->nindexed--;
}

/* Node @to (same hash) takes indexed node @from's place. */
static void idx_swap(struct sp_stable *st, uint32_t from, uint32_t to)
{
	assert(sn(st, from)->hash == sn(st, to)->hash);
	*idx_link(st, from) = to;
	sn(st, to)->hnext = sn(st, from)->hnext;
	sn(st, from)->hnext = SP_INIL;
}

int sp_stable_search(struct sp_stable *st, uint32_t hash, const void *key,
		     uint64_t max_sharing, uint32_t *match, uint32_t *out)
{
	*match = *out = SP_INIL;
	for (uint32_t i = *sp_ibucket(&st->idx, hash); i != SP_INIL;
	     i = sn(st, i)->hnext) {
		const void *c;

		if (sn(st, i)->hash != hash)
			continue;
		c = sp_stable_content(st, i);
		if (!c)
			return -EAGAIN;
		if (!memcmp(key, c, SP_PAGE_SIZE)) {
			*match = i;
			*out = pick(st, i, max_sharing);
			return 0;
		}
	}
	return 0;
}

int sp_stable_has_hash(const struct sp_stable *st, uint32_t hash)
{
	for (uint32_t i = *sp_ibucket(&st->idx, hash); i != SP_INIL;
	     i = sn(st, i)->hnext)
		if (sn(st, i)->hash == hash)
			return 1;
	return 0;
}

int sp_stable_new(struct sp_stable *st, uint32_t slot, uint32_t hash,
		  uint32_t match, uint32_t *out)
{
	uint32_t i, c = SP_INIL;
	int err;

	assert(match == SP_INIL || sn(st, match)->hash == hash);
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
	sn(st, i)->hash = hash;
	*out = i;

	if (match == SP_INIL) {
		idx_add(st, i);
		idx_fit(st);
		return 0;
	}
	if (c != SP_INIL) {
		/* Turn plain @match into chain @c holding @match as a dup. */
		sn(st, c)->kind = SN_CHAIN;
		sn(st, c)->hash = sn(st, match)->hash;
		idx_swap(st, match, c);
		sn(st, c)->next = match;
		sn(st, c)->sharers = 1;
		sn(st, match)->kind = SN_DUP;
		sn(st, match)->next = SN_TAIL | c;
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

	idx_swap(st, c, d);
	sn(st, d)->kind = SN_PLAIN;
	sn(st, d)->next = SP_INIL;
	node_free(st, c);
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
		idx_del(st, i);
		release_page(st, i);
		node_free(st, i);
		idx_fit(st);
		return;
	}
	assert(n->kind == SN_DUP);
	for (c = n->next; !(c & SN_TAIL); c = sn(st, c)->next)
		;
	c &= ~SN_TAIL;
	for (link = &sn(st, c)->next; *link != i; link = &sn(st, *link)->next)
		assert(!(*link & SN_TAIL));
	*link = n->next;
	/* The chain's content is now another dup's. */
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
	uint8_t *seen;		/* per node: met on a bucket chain */
	uint64_t shared, sharing, chains, dups, pages, indexed;
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

static int vchain(struct vstate *v, uint32_t i)
{
	struct sp_stable *st = v->st;
	struct sp_snode *n = sn(st, i);
	const void *cc = content_into(st, i, kbuf(st));
	uint32_t count = 0, d;
	int err;

	v->chains++;
	for (d = n->next; !(d & SN_TAIL); d = sn(st, d)->next) {
		const void *dc;

		if (d >= st->cap || sn(st, d)->kind != SN_DUP)
			return vfail(v, "chain lists a non-dup", i);
		if ((err = vpage(v, d)))
			return err;
		dc = sp_stable_content(st, d);
		if (!cc || !dc || memcmp(cc, dc, SP_PAGE_SIZE) ||
		    sn(st, d)->hash != n->hash)
			return vfail(v, "dup content or hash differs", d);
		if (++count > st->cap)
			return vfail(v, "chain list cycles", i);
	}
	if (d != (SN_TAIL | i))
		return vfail(v, "dup list does not end at its chain", i);
	if (count != n->sharers || count < 2)
		return vfail(v, "chain dup count wrong or < 2", i);
	v->dups += count;
	return 0;
}

/* Indexed node @i, met on the chain of bucket @b: its place, its hash,
 * and that no node after it on the chain has its content. */
static int vnode(struct vstate *v, uint32_t i, uint32_t b)
{
	struct sp_stable *st = v->st;
	struct sp_snode *n = sn(st, i);
	const void *c;
	int err;

	if (i >= st->cap)
		return vfail(v, "bucket chain names no node", b);
	if (v->seen[i]++)
		return vfail(v, "met twice in the index (cycle?)", i);
	if ((n->hash & (st->idx.n - 1)) != b)
		return vfail(v, "in the wrong bucket", i);
	if (n->kind == SN_PLAIN)
		err = vpage(v, i);
	else if (n->kind == SN_CHAIN)
		err = vchain(v, i);
	else
		return vfail(v, "index holds a free or dup node", i);
	if (err)
		return err;
	c = content_into(st, i, kbuf(st));
	if (!c)
		return vfail(v, "content unreadable", i);
	if ((uint32_t)sp_hash_page(c) != n->hash)
		return vfail(v, "hash is not its content's", i);
	for (uint32_t j = n->hnext; j != SP_INIL && j < st->cap;
	     j = sn(st, j)->hnext) {
		const void *o;

		if (sn(st, j)->hash != n->hash)
			continue;
		o = sp_stable_content(st, j);
		if (o && !memcmp(c, o, SP_PAGE_SIZE))
			return vfail(v, "content indexed twice", j);
	}
	v->indexed++;
	return 0;
}

int sp_stable_verify(struct sp_stable *st, char *why, size_t whylen)
{
	struct vstate v = { .st = st, .why = why, .whylen = whylen };
	uint32_t nfree = 0;
	int err = 0;

	if (!st->idx.n || (st->idx.n & (st->idx.n - 1)))
		return vfail(&v, "bucket count not a power of two", st->idx.n);
	v.seen = calloc(st->cap ? st->cap : 1, 1);
	if (!v.seen)
		return -ENOMEM;
	for (uint32_t b = 0; b < st->idx.n && !err; b++)
		for (uint32_t i = st->idx.head[b]; i != SP_INIL && !err;
		     i = sn(st, i)->hnext)
			err = vnode(&v, i, b);
	free(v.seen);
	if (err)
		return err;
	if (v.indexed != st->nindexed)
		return vfail(&v, "indexed node count wrong", st->nindexed);
	for (uint32_t f = st->free_head; f != SP_INIL; f = st->node[f].next)
		if (++nfree > st->cap)
			return vfail(&v, "free list cycles", f);
	if (nfree + st->nlive != st->cap)
		return vfail(&v, "nodes leaked (neither free nor reachable)", 0);
	if (v.pages + v.chains != st->nlive)
		return vfail(&v, "live nodes unreachable from the index", 0);
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
