/*
 * region.c - registered ranges (MADV_MERGEABLE / MADV_UNMERGEABLE) and
 * unmerging.
 *
 * A space's registered ranges form a set of disjoint, non-touching
 * intervals: registering coalesces with whatever it overlaps or touches,
 * unregistering cuts (and may split one range in two), as VMAs merge and
 * split.  Invariant: every page record lies inside a registered range.
 */
#include <errno.h>
#include <stdlib.h>

#include "engine.h"

#define PS SP_PAGE_SIZE

/* Page-align and bound-check a (start, len) pair as madvise(2) does. */
static int range_check(uintptr_t start, size_t len, uintptr_t *end)
{
	size_t alen;

	if (start & (PS - 1))
		return -EINVAL;
	alen = (len + PS - 1) & ~(PS - 1);
	if (len && !alen)
		return -EINVAL;		/* rounding overflowed */
	if (start + alen < start)
		return -EINVAL;		/* wraps */
	*end = start + alen;
	return 0;
}

static struct sp_region *rg(struct sp_rb_node *n)
{
	return n ? sp_rb_container(n, struct sp_region, node) : NULL;
}

/* The first range whose end is above @addr (it may start below). */
struct sp_region *region_next(struct sp_space *s, uintptr_t addr)
{
	struct sp_rb_node *n = s->regions.node, *best = NULL;

	while (n) {
		if (rg(n)->end > addr) {
			best = n;
			n = n->left;
		} else {
			n = n->right;
		}
	}
	return rg(best);
}

static void region_link(struct sp_space *s, struct sp_region *r)
{
	struct sp_rb_node **link = &s->regions.node, *parent = NULL;

	while (*link) {
		parent = *link;
		link = r->start < rg(parent)->start ? &parent->left
						    : &parent->right;
	}
	sp_rb_link(&r->node, parent, link);
	sp_rb_insert_color(&r->node, &s->regions);
}

static void region_unlink(struct sp_engine *e, struct sp_space *s,
			  struct sp_region *r)
{
	sp_rb_erase(&r->node, &s->regions);
	meta_free(e, r, sizeof(*r));
}

static void count_pages(struct sp_engine *e, struct sp_space *s, int64_t d)
{
	s->registered_pages += (uint64_t)d;
	e->registered_pages += (uint64_t)d;
}

/* Add [a, b) to the set, coalescing.  Return: 0 or -ENOMEM (unchanged). */
static int region_add(struct sp_engine *e, struct sp_space *s, uintptr_t a,
		      uintptr_t b)
{
	/* The first range ending at or after @a, then all that start at or
	 * before @b: they overlap or touch [a, b) and merge with it. */
	struct sp_region *r = region_next(s, a ? a - 1 : 0), *keep = NULL;

	while (r && r->start <= b) {
		struct sp_region *next = rg(sp_rb_next(&r->node));

		if (r->start < a)
			a = r->start;
		if (r->end > b)
			b = r->end;
		count_pages(e, s, -(int64_t)((r->end - r->start) / PS));
		if (!keep) {
			keep = r;
		} else {
			region_unlink(e, s, r);
		}
		r = next;
	}
	if (keep) {
		/* Its start may have moved left: relink to keep the order. */
		sp_rb_erase(&keep->node, &s->regions);
		keep->start = a;
		keep->end = b;
		region_link(s, keep);
	} else {
		keep = meta_alloc(e, sizeof(*keep));
		if (!keep)
			return -ENOMEM;
		keep->start = a;
		keep->end = b;
		region_link(s, keep);
	}
	count_pages(e, s, (int64_t)((b - a) / PS));
	return 0;
}

/* Remove [a, b) from the set.  Return: 0 or -ENOMEM (unchanged) when a
 * range must split and no memory is left. */
static int region_cut(struct sp_engine *e, struct sp_space *s, uintptr_t a,
		      uintptr_t b)
{
	struct sp_region *r = region_next(s, a), *split = NULL;

	if (r && r->start < a && r->end > b) {
		split = meta_alloc(e, sizeof(*split));
		if (!split)
			return -ENOMEM;
	}
	while (r && r->start < b) {
		struct sp_region *next = rg(sp_rb_next(&r->node));
		uintptr_t cs = r->start > a ? r->start : a;
		uintptr_t ce = r->end < b ? r->end : b;

		count_pages(e, s, -(int64_t)((ce - cs) / PS));
		if (r->start >= a && r->end <= b) {
			region_unlink(e, s, r);
		} else if (r->start < a && r->end > b) {
			split->start = b;
			split->end = r->end;
			r->end = a;
			region_link(s, split);
		} else if (r->start < a) {
			r->end = a;
		} else {
			/* Start moves right; order among disjoint ranges holds. */
			r->start = b;
		}
		r = next;
	}
	return 0;
}

void regions_free(struct sp_engine *e, struct sp_space *s)
{
	struct sp_rb_node *n;

	while ((n = sp_rb_first(&s->regions))) {
		struct sp_region *r = rg(n);

		count_pages(e, s, -(int64_t)((r->end - r->start) / PS));
		region_unlink(e, s, r);
	}
}

/* Whether [a, b) has an unmapped hole, per the backend.  Return: 1, 0, or
 * a negative error. */
static int has_hole(struct sp_engine *e, struct sp_space *s, uintptr_t a,
		    uintptr_t b)
{
	while (a < b) {
		struct sp_extent ext;
		int err = e->ops->probe(e->be, s->be, a, b - a, &ext);

		if (err)
			return err;
		if (ext.end <= a || ext.end > b)
			return -EIO;	/* backend broke its contract */
		if (ext.kind == SP_EXT_HOLE)
			return 1;
		a = ext.end;
	}
	return 0;
}

int sp_register(struct sp_engine *e, struct sp_space *s, uintptr_t start,
		size_t len)
{
	uintptr_t end, a;
	int err, hole = 0;

	err = range_check(start, len, &end);
	if (err)
		return err;
	pthread_mutex_lock(&e->lock);
	for (a = start; a < end;) {
		struct sp_extent ext;

		err = e->ops->probe(e->be, s->be, a, end - a, &ext);
		if (!err && (ext.end <= a || ext.end > end))
			err = -EIO;
		if (err)
			break;
		if (ext.kind == SP_EXT_HOLE)
			hole = 1;
		else if (ext.kind == SP_EXT_MERGEABLE)
			err = region_add(e, s, a, ext.end);
		if (err)
			break;
		a = ext.end;
	}
	pthread_mutex_unlock(&e->lock);
	if (err)
		return err;
	return hole ? -ENOMEM : 0;
}

/* Records of [start, end) in address order, grouped into runs of merged
 * (STABLE or ZERO) pages that are unmerged with one backend call each. */
int unmerge_range(struct sp_engine *e, struct sp_space *s, uintptr_t start,
		  uintptr_t end, int drop)
{
	if (e->ops->rebuild && end > start)
		e->ops->rebuild(e->be, s->be, start, (end - start) / PS);
	for (uintptr_t a = start; a < end;) {
		struct sp_chunk *c = sp_chunk_find(&s->chunks, a);
		uintptr_t cend = (a | ((uintptr_t)SP_CHUNK_PAGES * PS - 1)) + 1;
		unsigned i, from, to;

		if (cend > end || cend < a)
			cend = end;
		if (!c) {
			a = cend;
			continue;
		}
		from = chunk_slot(a);
		to = from + (unsigned)((cend - a) / PS);
		for (i = from; i < to;) {
			unsigned j = i, k;
			int err;

			while (j < to && (rec_merged(&c->rec[j]) ||
					  rec_state(&c->rec[j]) == REC_ZERO))
				j++;
			if (j == i) {
				i++;
				continue;
			}
			err = e->ops->unmerge(e->be, s->be, page_addr(c, i),
					      j - i);
			if (err) {
				sp_chunk_put(&e->chunks, &s->chunks, c);
				return err;
			}
			for (k = i; k < j; k++) {
				struct sp_rec *r = &c->rec[k];

				if (rec_merged(r))
					rec_leave_stable(e, s, r);
				else
					rec_leave_zero(e, s, r);
			}
			i = j;
		}
		if (drop)
			for (i = from; i < to && c->nlive; i++)
				rec_drop(e, s, c, i);
		sp_chunk_put(&e->chunks, &s->chunks, c);
		a = cend;
	}
	return 0;
}

int sp_unregister(struct sp_engine *e, struct sp_space *s, uintptr_t start,
		  size_t len)
{
	uintptr_t end;
	int err, hole = 0;

	err = range_check(start, len, &end);
	if (err || start == end)
		return err;
	pthread_mutex_lock(&e->lock);
	hole = has_hole(e, s, start, end);
	if (hole < 0) {
		err = hole;
		goto out;
	}
	/* Range by range, so that a failure leaves later ranges registered. */
	for (struct sp_region *r = region_next(s, start); r && r->start < end;
	     r = region_next(s, start)) {
		uintptr_t a = r->start > start ? r->start : start;
		uintptr_t b = r->end < end ? r->end : end;

		err = unmerge_range(e, s, a, b, 1);
		if (!err)
			err = region_cut(e, s, a, b);
		if (err)
			goto out;
		start = b;
	}
	if (hole)
		err = -ENOMEM;
out:
	pthread_mutex_unlock(&e->lock);
	return err;
}

int sp_forget(struct sp_engine *e, struct sp_space *s, uintptr_t start,
	      size_t len)
{
	uintptr_t end;
	int err;

	err = range_check(start, len, &end);
	if (err || start == end)
		return err;
	pthread_mutex_lock(&e->lock);
	drop_records(e, s, start, end);
	err = region_cut(e, s, start, end);
	pthread_mutex_unlock(&e->lock);
	return err;
}

int sp_discard(struct sp_engine *e, struct sp_space *s, uintptr_t start,
	       size_t len)
{
	uintptr_t end;
	int err;

	err = range_check(start, len, &end);
	if (err || start == end)
		return err;
	pthread_mutex_lock(&e->lock);
	drop_records(e, s, start, end);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

int sp_ranges(struct sp_engine *e, struct sp_space *s, uintptr_t start,
	      size_t len, void (*fn)(void *arg, uintptr_t a, uintptr_t b),
	      void *arg)
{
	uintptr_t end;
	int err;

	err = range_check(start, len, &end);
	if (err || start == end)
		return err;
	pthread_mutex_lock(&e->lock);
	for (struct sp_region *r = region_next(s, start); r && r->start < end;
	     r = rg(sp_rb_next(&r->node)))
		fn(arg, r->start > start ? r->start : start,
		   r->end < end ? r->end : end);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

int sp_unmerge(struct sp_engine *e, struct sp_space *s, uintptr_t start,
	       size_t len)
{
	uintptr_t end;
	int err;

	err = range_check(start, len, &end);
	if (err || start == end)
		return err;
	pthread_mutex_lock(&e->lock);
	err = unmerge_range(e, s, start, end, 0);
	pthread_mutex_unlock(&e->lock);
	return err;
}

int sp_unmerge_all(struct sp_engine *e)
{
	int err = 0;

	pthread_mutex_lock(&e->lock);
	for (struct sp_space *s = e->spaces.next; s != &e->spaces && !err;
	     s = s->next) {
		for (struct sp_rb_node *n = sp_rb_first(&s->regions); n && !err;
		     n = sp_rb_next(n))
			err = unmerge_range(e, s, rg(n)->start, rg(n)->end, 1);
	}
	/* drop=1 above: as KSM frees its rmap_items, the records go, so
	 * no page merges again before two more passes. */
	if (!err) {
		scan_reset(e);
		e->c.full_scans = 0;
	}
	pthread_mutex_unlock(&e->lock);
	return err;
}
