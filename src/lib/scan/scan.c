/*
 * scan.c - the scan pass and phase 1 of a window.
 *
 * A pass walks every registered range of every space in ring order; when
 * it starts, the unstable tree is emptied; when the cursor comes back to
 * the ring's head, full_scans is incremented.  Work is cut into windows
 * of at most SP_WINDOW pages inside one range and one record chunk.
 *
 * Phase 1 decides, page by page, what KSM's cmp_and_merge_page() would:
 *
 *   1. a page still mapping its stable page is left alone;
 *   2. a page that was merged and has been written since (the backend
 *      shows a private frame again) leaves its stable node;
 *   3. smart scan may skip a page that keeps failing to merge;
 *   4. the checksum must equal last pass's, else the page is volatile
 *      (or new) and only the stable tree is searched this pass, as KSM
 *      searches it before the checksum test (stable_first()), and with
 *      it the part of a store shared with other processes that already
 *      holds content (look_joins());
 *   5. a zero-filled page is released to the kernel's zero page (below);
 *   6. a page equal to a stable page with room joins it;
 *   7. otherwise the unstable tree is searched: an equal page there
 *      pairs with it into a new stable page; failing that the page is
 *      inserted.
 *
 * Phase 1 reads pages but never changes memory: decisions become actions
 * that phase 2 (merge.c) executes in runs, on held pages, after comparing
 * the bytes again.  Each decision that compares bytes works on a private
 * snapshot of the page (the key), never on the live page, which a writer
 * may change while a tree is walked: the stable tree must only ever hold
 * a node where its content belongs.  Most pages need no key: with a
 * backend that hashes pages in place (ops->hash), a page that no zero
 * page, stable node or unstable page could equal (none has its hash or
 * checksum) simply enters the unstable tree, and its 4 KiB are read once
 * per pass instead of copied and read again.  Only a page that could
 * match is copied, and the copy hashed again: if it is not what was
 * hashed, a writer is at work and the page is volatile this pass.
 *
 * To let later pages of the same window find a stable
 * page that phase 2 has yet to create, a pair's new stable node enters
 * the stable tree at once, NEW, with the key as its content (a staging
 * copy); phase 2 writes exactly that to the store.
 *
 * Zero-filled pages.  With use_zero_pages 1, KSM releases each to the
 * kernel's zero page and counts it in ksm_zero_pages; with 0, it merges
 * them with each other like any content: one stable page per
 * max_page_sharing of them, counted in pages_shared and pages_sharing.
 * Here the kernel's zero page stands for that stable page: a stable page
 * of ours would cost a mapping per page (every sharer maps the same
 * offset, and such mappings never coalesce), so that 32 MiB of zeros
 * used 8,192 VMAs, an eighth of the process's limit, where a release
 * costs none and keeps no page at all.  The counters stay KSM's: such a
 * page (REC_ZERO with link REC_ZERO_GROUP) is counted as a sharer of the
 * process's zero-filled content (zero_shared() says how many count as
 * its stable pages), and as KSM, the first one waits for a partner: a
 * lone zero-filled page enters the unstable tree, where the next pairs
 * with it and both are released.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../engine.h"
#include "../util/hash.h"

static const unsigned char zero_page[SP_PAGE_SIZE];

static int is_zero(const void *p)
{
	return memcmp(p, zero_page, SP_PAGE_SIZE) == 0;
}

/* ---- records --------------------------------------------------------- */

void rec_leave_stable(struct sp_engine *e, struct sp_space *s,
		      struct sp_rec *r)
{
	uint32_t link = r->link;
	unsigned named = rec_state(r) == REC_NAMED;

	rec_set_state(r, REC_SEEN);
	rec_set_age(r, 0);
	rec_set_skips(r, 0);
	r->link = 0;
	s->merging_pages--;
	if (named) {
		e->c.pages_named--;
		e->ops->stable_release(e->be, link, 1);
	} else {
		sp_stable_drop_sharer(&e->stable, link);
	}
}

void rec_leave_zero(struct sp_engine *e, struct sp_space *s,
		    struct sp_rec *r)
{
	if (r->link == REC_ZERO_GROUP) {
		s->zero_merged--;
		e->c.zero_merged--;
	} else {
		s->zero_pages--;
		e->c.ksm_zero_pages--;
	}
	rec_set_state(r, REC_SEEN);
	r->link = 0;
}

uint64_t zero_shared(const struct sp_engine *e)
{
	uint64_t n = e->c.zero_merged, m = e->knob[SP_KNOB_MAX_PAGE_SHARING];

	return (n + m - 1) / m;
}

void rec_drop(struct sp_engine *e, struct sp_space *s, struct sp_chunk *c,
	      unsigned slot)
{
	struct sp_rec *r = &c->rec[slot];

	switch (rec_state(r)) {
	case REC_NONE:
		return;
	case REC_UNSTABLE:
		sp_unstable_remove(&e->unstable, r, page_id(c, slot));
		e->c.pages_unshared--;
		break;
	case REC_STABLE:
	case REC_NAMED:
		rec_leave_stable(e, s, r);
		break;
	case REC_ZERO:
		rec_leave_zero(e, s, r);
		break;
	}
	r->w = r->link = 0;
	c->nlive--;
	s->rmap_items--;
	e->c.rmap_items--;
}

void drop_records(struct sp_engine *e, struct sp_space *s, uintptr_t start,
		  uintptr_t end)
{
	uintptr_t wfirst = chunk_window(start), wlast = chunk_window(end - 1);
	struct sp_rb_node *n = s->chunks.node, *lb = NULL;

	if (end <= start)
		return;
	/* Lower bound: the first chunk whose window is >= wfirst. */
	while (n) {
		struct sp_chunk *c = sp_rb_container(n, struct sp_chunk, node);

		if (c->window >= wfirst) {
			lb = n;
			n = n->left;
		} else {
			n = n->right;
		}
	}
	for (n = lb; n;) {
		struct sp_chunk *c = sp_rb_container(n, struct sp_chunk, node);
		uintptr_t base = chunk_base(c);
		unsigned from = 0, to = SP_CHUNK_PAGES;

		if (c->window > wlast)
			break;
		n = sp_rb_next(n);
		if (start > base)
			from = chunk_slot(start);
		if (end < base + ((uintptr_t)SP_CHUNK_PAGES << 12))
			to = chunk_slot(end);
		for (unsigned i = from; i < to && c->nlive; i++)
			rec_drop(e, s, c, i);
		sp_chunk_put(&e->chunks, &s->chunks, c);
	}
}

/* ---- smart scan ------------------------------------------------------ */

/* How many passes to skip a page of this age (KSM's steps). */
static unsigned skip_age(unsigned age)
{
	if (age <= 3)
		return 1;
	if (age <= 5)
		return 2;
	if (age <= 8)
		return 4;
	return 8;
}

/* Whether smart scan skips this page this pass.  The age counts the
 * passes that visited the page since it last merged (or appeared). */
static int should_skip(struct sp_engine *e, struct sp_rec *r)
{
	unsigned age = rec_age(r);

	if (!e->knob[SP_KNOB_SMART_SCAN])
		return 0;
	if (age < REC_AGE_MAX)
		rec_set_age(r, age + 1);
	if (age < 3)
		return 0;
	if (!rec_skips(r)) {
		rec_set_skips(r, skip_age(age));
		return 0;
	}
	rec_set_skips(r, rec_skips(r) - 1);
	return 1;
}

/* ---- the unstable tree ----------------------------------------------- */

/* Whether page @id, a member of the tree, is a page other than @self
 * whose live bytes equal @key.  Its checksum already matched. */
static int unstable_equal(struct sp_engine *e, uint32_t id, uint32_t self,
			  const void *key)
{
	struct sp_chunk *c = sp_chunk_of_page(&e->chunks, id);
	unsigned slot = page_slot(id);
	int order;

	assert(id != self);	/* a page leaves the tree before a rescan */
	if (id == self)
		return 0;
	if (e->ops->cmp(e->be, c->be_space, page_addr(c, slot), key, &order))
		return 0;
	return order == 0;
}

/*
 * Search the unstable tree for a page other than @self equal to @key
 * (checksum @csum).  Only members with the same checksum have their page
 * read (see unstable.h).  Return: the equal page's id, or SP_INIL.
 */
static uint32_t unstable_search(struct sp_engine *e, uint32_t csum,
				const void *key, uint32_t self)
{
	const struct sp_unstable *u = &e->unstable;

	for (uint32_t id = sp_unstable_find(u, csum); id != SP_INIL;
	     id = sp_unstable_find_next(u, id, csum))
		if (unstable_equal(e, id, self, key))
			return id;
	return SP_INIL;
}

/* ---- phase 1 --------------------------------------------------------- */

static struct sp_action *act_add(struct sp_window *w, unsigned i, int kind)
{
	struct sp_action *a = &w->act[w->nact++];

	memset(a, 0, sizeof(*a));
	a->slot = (uint16_t)i;
	a->kind = (uint8_t)kind;
	return a;
}

/* A staging slot holding a copy of @p, or -1 if no buffer can be had. */
static int stage(struct sp_engine *e, struct sp_window *w, const void *p)
{
	unsigned k = w->nstage;

	if (!e->staging[k]) {
		e->staging[k] = sp_mem_alloc(&e->fixed, SP_PAGE_SIZE);
		if (!e->staging[k])
			return -1;
	}
	memcpy(e->staging[k], p, SP_PAGE_SIZE);
	w->nstage++;
	return (int)k;
}

/* Whether some page could equal one of checksum @csum and hash @h: a
 * zero page, a stable node of that hash, a page in the unstable tree
 * with that checksum.  If none, deciding needs none of its bytes. */
static int may_match(struct sp_engine *e, uint32_t csum, uint64_t h)
{
	if (csum == e->zero_csum)
		return 1;
	if (sp_stable_has_hash(&e->stable, (uint32_t)h))
		return 1;
	return sp_unstable_find(&e->unstable, csum) != SP_INIL;
}

/*
 * The key of page @i: a private snapshot that no writer can change
 * mid-search, in scratch 0.  @p is its content as peek gave it when it
 * was scanned (@h is the hash of those bytes), or NULL if only its hash
 * @h was read (ops->hash): then the snapshot is taken now and hashed
 * again, and if that differs from @h the page is being written,
 * volatile this pass.  Return: the key, or NULL.
 */
static const void *take_key(struct sp_engine *e, struct sp_window *w,
			    unsigned i, struct sp_rec *r, const void *p,
			    uint64_t h)
{
	void *key = scratch(e, 0);
	uint64_t h2;

	if (p) {
		if (p != key)
			memcpy(key, p, SP_PAGE_SIZE);
		return key;
	}
	p = e->ops->peek(e->be, w->s->be,
			 w->addr + ((uintptr_t)i << SP_PAGE_SHIFT), key);
	if (!p)
		return NULL;
	if (p != key)
		memcpy(key, p, SP_PAGE_SIZE);
	h2 = sp_hash_page(key);
	if (h2 != h) {
		e->c.keys_changed++;
		rec_set_csum(r, (uint32_t)h2 & REC_CSUM_MASK);
		return NULL;
	}
	return key;
}

/* Page @i (record @r, page id @self) enters the unstable tree: ask the
 * shared store about it at the end of the window. */
static void unstable_enter(struct sp_engine *e, struct sp_window *w,
			   unsigned i, struct sp_rec *r, uint32_t self,
			   uint64_t h)
{
	unsigned k;

	rec_set_state(r, REC_UNSTABLE);
	sp_unstable_add(&e->unstable, r, self);
	e->c.pages_unshared++;
	if (!e->ops->lookup)
		return;
	k = w->nglob++;
	w->gslot[k] = (uint16_t)i;
	w->ghash[k] = h;
	w->gaddr[k] = w->addr + ((uintptr_t)i << SP_PAGE_SHIFT);
}

/*
 * Step 5: key @p of page @i is zero-filled.  With use_zero_pages it is
 * released and counted as a zero page.  Otherwise it joins the
 * process's zero-filled group if there is one (or one forms earlier in
 * this window), else pairs with an unstable zero-filled page, which
 * leaves the tree and is released with it (merge.c), else enters the
 * tree itself (top of file).
 */
/* Whether zero-filled pages merge as a group (use_zero_pages 0) and the
 * group exists, or forms earlier in this window. */
static int zero_group(const struct sp_engine *e, const struct sp_window *w)
{
	return !e->knob[SP_KNOB_USE_ZERO_PAGES] &&
	       (e->c.zero_merged || w->nzgroup);
}

/* A ZERO action for page @i, with unstable partner @q (or SP_INIL),
 * counted as use_zero_pages says now. */
static void zero_act(struct sp_engine *e, struct sp_window *w, unsigned i,
		     uint32_t q)
{
	struct sp_action *a = act_add(w, i, ACT_ZERO);

	a->qid = q;
	if (e->knob[SP_KNOB_USE_ZERO_PAGES]) {
		a->zkind = REC_ZERO_KERNEL;
	} else {
		a->zkind = REC_ZERO_GROUP;
		w->nzgroup++;
	}
}

static void zero_decide(struct sp_engine *e, struct sp_window *w,
			unsigned i, struct sp_rec *r, uint32_t self,
			const void *p, uint64_t h)
{
	uint32_t q = SP_INIL;

	if (!e->knob[SP_KNOB_USE_ZERO_PAGES] && !zero_group(e, w)) {
		q = unstable_search(e, rec_csum(r), p, self);
		if (q == SP_INIL) {
			unstable_enter(e, w, i, r, self, h);
			return;
		}
		sp_unstable_remove(&e->unstable,
				   sp_unstable_rec(&e->unstable, q), q);
	}
	zero_act(e, w, i, q);
}

/* Steps 5-7 for a page whose checksum held; @p is its content as the
 * backend gave it, or NULL if only its hash @h was read. */
static void decide(struct sp_engine *e, struct sp_window *w, unsigned i,
		   struct sp_rec *r, uint32_t self, const void *p, uint64_t h)
{
	struct sp_stable *st = &e->stable;
	uint32_t d, match, q, node;
	struct sp_action *a;
	int slot;

	if (!p && !may_match(e, rec_csum(r), h)) {
		/* Nothing can equal it: it enters the unstable tree
		 * without its bytes ever being copied. */
		e->c.keys_skipped++;
		unstable_enter(e, w, i, r, self, h);
		return;
	}
	p = take_key(e, w, i, r, p, h);
	if (!p)
		return;
	if (rec_csum(r) == e->zero_csum && is_zero(p)) {
		zero_decide(e, w, i, r, self, p, h);
		return;
	}
	if (sp_stable_search(st, (uint32_t)h, p,
			     e->knob[SP_KNOB_MAX_PAGE_SHARING], &match, &d))
		return;		/* unknown whether it is there: next pass */
	if (d != SP_INIL) {
		sn(st, d)->pending++;
		act_add(w, i, ACT_JOIN)->snode = d;
		return;
	}

	q = unstable_search(e, rec_csum(r), p, self);
	if (q == SP_INIL) {
		unstable_enter(e, w, i, r, self, h);
		return;
	}
	/* @q's page equals our key: a new stable page with the key as its
	 * content, placed as the stable search (same key) said; nothing
	 * changed the stable tree since. */
	slot = stage(e, w, p);
	if (slot < 0)
		return;
	if (sp_stable_new(st, (uint32_t)slot, (uint32_t)h, match, &node)) {
		w->nstage--;
		return;
	}
	sn(st, node)->pending = 2;
	a = act_add(w, i, ACT_PAIR);
	a->snode = node;
	a->qid = q;
	/* The partner leaves the tree (still REC_UNSTABLE, on no chain):
	 * later pages of the window with this content find the new stable
	 * node instead.  Phase 2 makes it stable, or puts it back. */
	sp_unstable_remove(&e->unstable, sp_unstable_rec(&e->unstable, q), q);
}

/*
 * A page seen for the first time, or changed since last pass (@p its
 * bytes if the backend gave them, @h their hash): KSM searches the
 * stable tree before it looks at the checksum, so a page equal to
 * content already merged joins it at once, however volatile; only the
 * unstable tree needs two looks.  So here: a page whose hash a stable
 * node has joins it if its bytes are that node's, and a zero-filled
 * page joins the zero-filled group if there is one.  Most pages are in
 * neither, and cost one lookup in the stable index.  Return: 1 if no
 * content of this process matched and the page may be looked for in a
 * shared store (look_joins()), 0 if it has an action, its content has
 * a node here, it is zero-filled (its own rules, above) or it changed
 * while being read.
 */
static int stable_first(struct sp_engine *e, struct sp_window *w,
			unsigned i, struct sp_rec *r, const void *p,
			uint64_t h)
{
	struct sp_stable *st = &e->stable;
	int zcsum = rec_csum(r) == e->zero_csum;
	int zero = zcsum && zero_group(e, w);
	uint32_t match, d;

	if (!zero && !sp_stable_has_hash(st, (uint32_t)h))
		return !zcsum;
	p = take_key(e, w, i, r, p, h);
	if (!p)
		return 0;
	if (zcsum && is_zero(p)) {
		if (zero)
			zero_act(e, w, i, SP_INIL);
		return 0;
	}
	if (sp_stable_search(st, (uint32_t)h, p,
			     e->knob[SP_KNOB_MAX_PAGE_SHARING], &match, &d))
		return 0;
	if (d == SP_INIL)
		return match == SP_INIL;
	sn(st, d)->pending++;
	act_add(w, i, ACT_JOIN)->snode = d;
	return 0;
}

/* Page @i (address @va, hash @h) goes to ops->look at the end of the
 * window: as a first look if @first, to be found in a shared store if
 * @find. */
static void look_add(struct sp_engine *e, struct sp_window *w, unsigned i,
		     uintptr_t va, uint64_t h, int first, int find)
{
	unsigned k = w->nlook;
	uint8_t how = (uint8_t)((first ? SP_LOOK_FIRST : 0) |
				(find ? SP_LOOK_FIND : 0));

	if (!e->ops->look || !how)
		return;
	w->lslot[k] = (uint16_t)i;
	w->lhash[k] = h;
	w->laddr[k] = va;
	w->lhow[k] = how;
	w->nlook++;
}

/* Phase 1 for page @i of the window.  Return: 1 if it counts as scanned. */
static unsigned scan_page(struct sp_engine *e, struct sp_window *w,
			  unsigned i)
{
	uintptr_t va = w->addr + ((uintptr_t)i << SP_PAGE_SHIFT);
	unsigned slot = chunk_slot(va), rs;
	struct sp_space *s = w->s;
	struct sp_rec *r = w->chunk ? &w->chunk->rec[slot] : NULL;
	const void *p;
	uint64_t hash;
	uint32_t csum;
	int first = 0;

	rs = r ? rec_state(r) : REC_NONE;
	switch (w->st[i]) {
	case SP_PS_STABLE:
		if (rs != REC_STABLE && rs != REC_NAMED)
			return 0;	/* not a mapping we made: leave it */
		e->c.pages_scanned++;
		return 1;
	case SP_PS_ANON:
		break;
	case SP_PS_NONE:
		if (rs == REC_ZERO)
			return 0;	/* still released */
		/* fall through */
	default:
		/* Gone, discarded or swapped: KSM frees the rmap_item. */
		if (rs != REC_NONE)
			rec_drop(e, s, w->chunk, slot);
		return 0;
	}

	if (!w->chunk) {
		if (sp_chunk_get(&e->chunks, &s->chunks, s, s->be, va,
				 &w->chunk))
			return 0;
		r = &w->chunk->rec[slot];
	}
	switch (rs) {
	case REC_NONE:
		first = 1;
		r->w = REC_SEEN;
		r->link = 0;
		w->chunk->nlive++;
		s->rmap_items++;
		e->c.rmap_items++;
		break;
	case REC_STABLE:	/* written since it merged: COW broke it */
	case REC_NAMED:
		rec_leave_stable(e, s, r);
		break;
	case REC_ZERO:		/* written since it was released */
		rec_leave_zero(e, s, r);
		break;
	case REC_UNSTABLE:
		/* Last pass's tree is gone, so this finds nothing; it
		 * keeps the chains whole should a page be met twice. */
		sp_unstable_remove(&e->unstable, r, page_id(w->chunk, slot));
		rec_set_state(r, REC_SEEN);
		e->c.pages_unshared--;
		break;
	}

	if (should_skip(e, r)) {
		e->c.pages_skipped++;
		return 0;
	}
	e->c.pages_scanned++;
	if (e->ops->hash) {
		p = NULL;	/* the bytes only if decide() needs them */
		if (e->ops->hash(e->be, s->be, va, &hash))
			return 1;	/* unreadable now (unmapped) */
	} else {
		p = e->ops->peek(e->be, s->be, va, scratch(e, 0));
		if (!p)
			return 1;
		hash = sp_hash_page(p);
	}
	csum = (uint32_t)hash & REC_CSUM_MASK;
	if (first || csum != rec_csum(r)) {
		int find;

		rec_set_csum(r, csum);	/* volatile this pass */
		find = stable_first(e, w, i, r, p, hash);
		look_add(e, w, i, va, hash, first, find);
		return 1;
	}
	decide(e, w, i, r, page_id(w->chunk, slot), p, hash);
	return 1;
}

static int act_cmp(const void *a, const void *b)
{
	const struct sp_action *x = a, *y = b;

	return (x->slot > y->slot) - (x->slot < y->slot);
}

/*
 * Page @slot of the window (hash @h) gets store page @sp, which the
 * backend named with one reference: a NAMED action, which maps that
 * page with no stable node here (records.h says why).  The page's bytes
 * are compared with it in phase 2, held, as for every join.  If its
 * content already has a node here (a page of this process: it joins
 * that in a later pass), or the store page cannot be read, the
 * reference goes back.  Return: 1 if an action was added.
 */
static int named_join(struct sp_engine *e, struct sp_window *w,
		      unsigned slot, uint64_t h, sp_spage_t sp)
{
	uint32_t match, d;
	const void *c = e->ops->stable_peek(e->be, sp, scratch(e, 1));

	/* The store found it by that hash, which it computed itself from
	 * the page's bytes. */
	if (!c || sp_stable_search(&e->stable, (uint32_t)h, c,
				   e->knob[SP_KNOB_MAX_PAGE_SHARING], &match,
				   &d) ||
	    match != SP_INIL) {
		e->ops->stable_release(e->be, sp, 1);
		return 0;
	}
	act_add(w, slot, ACT_NAMED)->spage = sp;
	return 1;
}

/*
 * Pages that found no partner in this process may equal a stable page of
 * a store shared with other processes: ask the backend (one call per
 * window), and turn each page it names into a NAMED action
 * (named_join()).  A page that a pair later in the window took out of
 * the unstable tree gives the reference back.  Return: actions added.
 */
static unsigned shared_joins(struct sp_engine *e, struct sp_window *w)
{
	unsigned added = 0;

	if (e->ops->lookup(e->be, w->s->be, w->nglob, w->gaddr, w->ghash,
			   w->gout) < 0)
		return 0;
	for (unsigned k = 0; k < w->nglob; k++) {
		unsigned slot = chunk_slot(w->gaddr[k]);
		struct sp_rec *r = &w->chunk->rec[slot];
		uint32_t self = page_id(w->chunk, slot);

		if (w->gout[k] == SP_SPAGE_NONE)
			continue;
		if (rec_state(r) != REC_UNSTABLE ||
		    !sp_unstable_holds(&e->unstable, r, self)) {
			e->ops->stable_release(e->be, w->gout[k], 1);
			continue;
		}
		if (!named_join(e, w, w->gslot[k], w->ghash[k], w->gout[k]))
			continue;
		sp_unstable_remove(&e->unstable, r, self);
		rec_set_state(r, REC_SEEN);
		r->link = 0;
		e->c.pages_unshared--;
		added++;
	}
	return added;
}

/*
 * First looks and changed pages (stable_first() found nothing here): the
 * backend hears of first looks (hints), and may name pages of a shared
 * store that hold their content, which join them now, as pages equal to
 * this process's own stable pages do.  Nothing else of the window can
 * have changed such a page's record: it is in neither tree.  Return:
 * actions added.
 */
static unsigned look_joins(struct sp_engine *e, struct sp_window *w)
{
	unsigned added = 0;

	if (e->ops->look(e->be, w->s->be, w->nlook, w->laddr, w->lhash,
			 w->lhow, w->lout) < 0)
		return 0;
	for (unsigned k = 0; k < w->nlook; k++) {
		if (w->lout[k] == SP_SPAGE_NONE)
			continue;
		assert(w->lhow[k] & SP_LOOK_FIND);
		assert(rec_state(&w->chunk->rec[chunk_slot(w->laddr[k])]) ==
		       REC_SEEN);
		added += (unsigned)named_join(e, w, w->lslot[k], w->lhash[k],
					      w->lout[k]);
	}
	return added;
}

/* Scan [addr, end) of @s: one window.  Return: pages counted as scanned. */
static unsigned scan_window(struct sp_engine *e, struct sp_space *s,
			    uintptr_t addr, uintptr_t end)
{
	struct sp_window *w = &e->win;
	unsigned scanned = 0, added = 0;

	w->s = s;
	w->addr = addr;
	w->n = (unsigned)((end - addr) >> SP_PAGE_SHIFT);
	w->nact = 0;
	w->nstage = 0;
	w->nzgroup = 0;
	if (e->ops->state(e->be, s->be, addr, w->n, w->st)) {
		e->c.scan_errors++;
		return 0;
	}
	w->nglob = 0;
	w->nlook = 0;
	w->chunk = sp_chunk_find(&s->chunks, addr);
	for (unsigned i = 0; i < w->n; i++)
		scanned += scan_page(e, w, i);
	if (w->nlook)
		added += look_joins(e, w);
	if (w->nglob)
		added += shared_joins(e, w);
	if (added)
		qsort(w->act, w->nact, sizeof(w->act[0]), act_cmp);
	if (w->nact)
		merge_window(e, w);
	if (w->chunk)
		sp_chunk_put(&e->chunks, &s->chunks, w->chunk);
	w->chunk = NULL;
	return scanned;
}

void scan_reset(struct sp_engine *e)
{
	e->cursor.s = &e->spaces;
	e->cursor.addr = 0;
	sp_unstable_reset(&e->unstable);
}

int scan_batch(struct sp_engine *e, unsigned budget)
{
	uint64_t left = budget;

	if (!e->registered_pages) {
		scan_reset(e);
		return 0;
	}
	while (left) {
		struct sp_space *s = e->cursor.s;
		struct sp_region *rg;
		uintptr_t a, end, wend;
		unsigned done;

		if (s == &e->spaces) {		/* a new pass */
			sp_unstable_reset(&e->unstable);
			e->cursor.s = s = e->spaces.next;
			e->cursor.addr = 0;
		}
		rg = region_next(s, e->cursor.addr);
		if (!rg) {
			e->cursor.s = s->next;
			e->cursor.addr = 0;
			if (e->cursor.s == &e->spaces) {
				e->c.full_scans++;
				return 0;
			}
			continue;
		}
		a = e->cursor.addr > rg->start ? e->cursor.addr : rg->start;
		wend = (a + ((uintptr_t)SP_WINDOW << SP_PAGE_SHIFT)) &
		       ~(((uintptr_t)SP_WINDOW << SP_PAGE_SHIFT) - 1);
		end = rg->end < wend ? rg->end : wend;
		if ((end - a) >> SP_PAGE_SHIFT > left)
			end = a + ((uintptr_t)left << SP_PAGE_SHIFT);
		done = scan_window(e, s, a, end);
		e->cursor.addr = end;
		left -= done ? (done < left ? done : left) : 1;
	}
	return 1;
}
