/*
 * merge.c - phase 2 of a window: execute phase 1's actions through the
 * backend, in runs, with no write ever lost.
 *
 * Consecutive actions of one kind form a run when one backend call can
 * do them all: consecutive virtual pages that go to consecutive stable
 * pages (joins, and joins of pages the backend named), consecutive
 * pages whose partners are consecutive too (pairs: their new stable
 * pages are allocated as one run, in the order of the virtual pages, so
 * that a later copy of the same data joins them as one run as well), or
 * consecutive zero pages.
 *
 * Every run follows the same protocol:
 *   hold the pages              (writers of every kind block from here on;
 *                                a page the backend cannot hold, pinned
 *                                for DMA say, drops out of the run)
 *   compare their bytes again   (phase 1 read them unheld)
 *   replace / zap the verified  (maximal verified sub-runs, one call each)
 *   unprotect                   (blocked writers resume: their write lands
 *                                in a private copy of what is mapped now)
 *   commit the bookkeeping
 * so a write either happened before the comparison (and the comparison
 * saw it) or lands after the new mapping (and copies it).  Nothing here
 * allocates memory: a writer blocked while holding an allocator lock
 * cannot deadlock us.  Stable node frees (sp_stable_unpend, drop) happen
 * only after the run's unprotect.
 */
#include <assert.h>
#include <string.h>

#include "../engine.h"

static const unsigned char zero_page[SP_PAGE_SIZE];

static uintptr_t act_va(const struct sp_window *w, const struct sp_action *a)
{
	return w->addr + ((uintptr_t)a->slot << SP_PAGE_SHIFT);
}

static struct sp_rec *act_rec(const struct sp_window *w,
			      const struct sp_action *a)
{
	return &w->chunk->rec[chunk_slot(act_va(w, a))];
}

/* The partner page of a pair: its chunk, slot and address. */
static struct sp_chunk *q_chunk(struct sp_engine *e, const struct sp_action *a)
{
	return sp_chunk_of_page(&e->chunks, a->qid);
}

static unsigned q_slot(const struct sp_action *a)
{
	return page_slot(a->qid);
}

static uintptr_t q_va(struct sp_engine *e, const struct sp_action *a)
{
	return page_addr(q_chunk(e, a), q_slot(a));
}

/* A join's target can take its page: it has a stable page and lives. */
static int join_target_ok(struct sp_engine *e, const struct sp_action *a)
{
	return !(sn(&e->stable, a->snode)->flags & (SNF_NEW | SNF_DEAD));
}

/* Whether action @b extends the run whose last action is @prev. */
static int extends(struct sp_engine *e, const struct sp_action *prev,
		   const struct sp_action *b)
{
	if (b->kind != prev->kind || b->slot != prev->slot + 1)
		return 0;
	switch (b->kind) {
	case ACT_JOIN:
		return join_target_ok(e, b) &&
		       sn(&e->stable, b->snode)->spage ==
			       sn(&e->stable, prev->snode)->spage + 1;
	case ACT_NAMED:
		return b->spage == prev->spage + 1;
	case ACT_PAIR:
		return q_chunk(e, b)->be_space == q_chunk(e, prev)->be_space &&
		       q_va(e, b) == q_va(e, prev) + SP_PAGE_SIZE;
	default:
		return 1;
	}
}

/*
 * Call @fn over each maximal sub-run of actions [i, j) whose @field is
 * set; a failing call clears @field for its sub-run.
 */
#define FOR_SUBRUNS(w, i, j, field, call)                                    \
	do {                                                                 \
		for (unsigned a_ = (i); a_ < (j);) {                         \
			unsigned b_ = a_;                                    \
			if (!(w)->act[a_].field) {                           \
				a_++;                                        \
				continue;                                    \
			}                                                    \
			while (b_ < (j) && (w)->act[b_].field)               \
				b_++;                                        \
			if (call(a_, b_ - a_))                               \
				for (unsigned k_ = a_; k_ < b_; k_++)        \
					(w)->act[k_].field = 0;              \
			a_ = b_;                                             \
		}                                                            \
	} while (0)

/* Record @r of space @s now maps a stable page: state @state (STABLE or
 * NAMED) with @link, a fresh smart-scan age, counted as merging.  The
 * inverse of rec_leave_stable(). */
static void commit_merged(struct sp_space *s, struct sp_rec *r,
			  unsigned state, uint32_t link)
{
	rec_set_state(r, state);
	rec_set_age(r, 0);
	rec_set_skips(r, 0);
	r->link = link;
	s->merging_pages++;
}

static void commit_sharer(struct sp_engine *e, struct sp_space *s,
			  struct sp_rec *r, uint32_t node)
{
	commit_merged(s, r, REC_STABLE, node);
	sp_stable_add_sharer(&e->stable, node);
}

/* ---- zero pages ------------------------------------------------------ */

/* Hold the pages of actions [i, j) at @va0 in backend space @sbe; held[]
 * is indexed from i.  Return: 0, or -1 if the backend held none.
 * Pages it could not hold are counted in pages_refused. */
static int hold(struct sp_engine *e, void *sbe, uintptr_t va0, unsigned i,
		unsigned j, uint8_t *held)
{
	if (e->ops->protect(e->be, sbe, va0, j - i, held)) {
		e->c.scan_errors++;
		return -1;
	}
	for (unsigned k = i; k < j; k++)
		if (!held[k - i])
			e->c.pages_refused++;
	return 0;
}

/* Record @r of space @s is released to the zero page, counted as
 * @zkind says (records.h).  The inverse of rec_leave_zero(). */
static void commit_zero(struct sp_engine *e, struct sp_space *s,
			struct sp_rec *r, uint32_t zkind)
{
	rec_set_state(r, REC_ZERO);
	rec_set_age(r, 0);
	rec_set_skips(r, 0);
	r->link = zkind;
	if (zkind == REC_ZERO_GROUP) {
		s->zero_merged++;
		e->c.zero_merged++;
	} else {
		s->zero_pages++;
		e->c.ksm_zero_pages++;
	}
}

/* Whether the held page at @va of @s is still all zeros (if not, a
 * writer got there first: a merge race). */
static int still_zero(struct sp_engine *e, struct sp_space *s, uintptr_t va)
{
	const void *p = e->ops->peek(e->be, s->be, va, scratch(e, 2));

	if (p && !memcmp(p, zero_page, SP_PAGE_SIZE))
		return 1;
	e->c.merge_races++;
	return 0;
}

/* Hold the single page at @va of @s and zap it if it is still all
 * zeros.  Return: 1 if it was released. */
static int zap_one(struct sp_engine *e, struct sp_space *s, uintptr_t va)
{
	uint8_t held = 0;
	int ok;

	if (hold(e, s->be, va, 0, 1, &held))
		return 0;
	ok = held && still_zero(e, s, va) && !e->ops->zap(e->be, s->be, va, 1);
	e->ops->unprotect(e->be, s->be, va, 1);
	return ok;
}

/* The unstable zero-filled page that ZERO action @a paired with (phase 1
 * took it out of the tree): released and counted in the group too, or
 * back in the tree. */
static void zero_partner(struct sp_engine *e, const struct sp_action *a)
{
	struct sp_chunk *qc = q_chunk(e, a);
	struct sp_space *qs = qc->owner;
	struct sp_rec *qr = &qc->rec[q_slot(a)];

	if (zap_one(e, qs, q_va(e, a))) {
		e->c.pages_unshared--;
		commit_zero(e, qs, qr, REC_ZERO_GROUP);
	} else {
		sp_unstable_add(&e->unstable, qr, a->qid);
	}
}

static void run_zero(struct sp_engine *e, struct sp_window *w, unsigned i,
		     unsigned j)
{
	struct sp_space *s = w->s;
	uintptr_t va0 = act_va(w, &w->act[i]);
	uint8_t held[SP_WINDOW];

	if (!hold(e, s->be, va0, i, j, held)) {
		for (unsigned k = i; k < j; k++)
			if (held[k - i])
				w->act[k].ok = still_zero(e, s,
							  act_va(w, &w->act[k]));
#define ZAP(a, n) e->ops->zap(e->be, s->be, act_va(w, &w->act[a]), (n))
		FOR_SUBRUNS(w, i, j, ok, ZAP);
#undef ZAP
		e->ops->unprotect(e->be, s->be, va0, j - i);
	}
	for (unsigned k = i; k < j; k++)
		if (w->act[k].ok)
			commit_zero(e, s, act_rec(w, &w->act[k]),
				    w->act[k].zkind);
	/* Partners after the run's unprotect: one hold at a time. */
	for (unsigned k = i; k < j; k++)
		if (w->act[k].qid != SP_INIL)
			zero_partner(e, &w->act[k]);
}

/* ---- joins ----------------------------------------------------------- */

/* The stable page a JOIN or NAMED action maps, and its bytes. */
static sp_spage_t target_page(struct sp_engine *e, const struct sp_action *a)
{
	return a->kind == ACT_NAMED ? a->spage : sn(&e->stable, a->snode)->spage;
}

static const void *target_content(struct sp_engine *e,
				  const struct sp_action *a)
{
	if (a->kind == ACT_NAMED)
		return e->ops->stable_peek(e->be, a->spage, scratch(e, 1));
	return sp_stable_content(&e->stable, a->snode);
}

/* The protocol for joins [i, j) (JOIN or NAMED): hold, compare with the
 * target's bytes, replace the verified sub-runs, unprotect.  Sets each
 * action's @ok; commits nothing. */
static void join_pages(struct sp_engine *e, struct sp_window *w, unsigned i,
		       unsigned j)
{
	struct sp_space *s = w->s;
	uintptr_t va0 = act_va(w, &w->act[i]);
	uint8_t held[SP_WINDOW];

	if (hold(e, s->be, va0, i, j, held))
		return;
	for (unsigned k = i; k < j; k++) {
		const void *p, *c;

		if (!held[k - i])
			continue;
		p = e->ops->peek(e->be, s->be, act_va(w, &w->act[k]),
				 scratch(e, 2));
		c = target_content(e, &w->act[k]);
		w->act[k].ok = p && c && !memcmp(p, c, SP_PAGE_SIZE);
		if (!w->act[k].ok)
			e->c.merge_races++;
	}
#define REPLACE(a, n)                                                        \
	(e->c.replace_calls++,                                               \
	 e->ops->replace(e->be, s->be, act_va(w, &w->act[a]), (n),           \
			 target_page(e, &w->act[a])))
	FOR_SUBRUNS(w, i, j, ok, REPLACE);
#undef REPLACE
	e->ops->unprotect(e->be, s->be, va0, j - i);
}

static void run_join(struct sp_engine *e, struct sp_window *w, unsigned i,
		     unsigned j)
{
	struct sp_stable *st = &e->stable;

	if (!join_target_ok(e, &w->act[i])) {	/* its pair failed */
		assert(j == i + 1);
		sp_stable_unpend(st, w->act[i].snode);
		return;
	}
	join_pages(e, w, i, j);
	for (unsigned k = i; k < j; k++)
		if (w->act[k].ok)
			commit_sharer(e, w->s, act_rec(w, &w->act[k]),
				      w->act[k].snode);
	for (unsigned k = i; k < j; k++)
		sp_stable_unpend(st, w->act[k].snode);
}

/* ---- joins of backend-named pages ----------------------------------- */

/* As run_join, with no stable node: each action holds one reference of
 * its page, which a merged record keeps and anything else gives back. */
static void run_named(struct sp_engine *e, struct sp_window *w, unsigned i,
		      unsigned j)
{
	join_pages(e, w, i, j);
	for (unsigned k = i; k < j; k++) {
		struct sp_action *a = &w->act[k];

		if (!a->ok) {
			e->ops->stable_release(e->be, a->spage, 1);
			continue;
		}
		commit_merged(w->s, act_rec(w, a), REC_NAMED, a->spage);
		e->c.pages_named++;
	}
}

/* ---- pairs ----------------------------------------------------------- */

/* Allocate and fill the stable pages of pairs [i, j).  Return: 0 or the
 * backend's error (then nothing is allocated). */
static int pair_pages(struct sp_engine *e, struct sp_window *w, unsigned i,
		      unsigned j)
{
	struct sp_stable *st = &e->stable;
	const void *src[SP_WINDOW];
	sp_spage_t first;
	int err;

	err = e->ops->stable_alloc(e->be, j - i, &first);
	if (err)
		return err;
	for (unsigned k = i; k < j; k++)
		src[k - i] = e->staging[sn(st, w->act[k].snode)->spage];
	err = e->ops->stable_write(e->be, first, j - i, src);
	if (err) {
		e->ops->stable_release(e->be, first, j - i);
		return err;
	}
	for (unsigned k = i; k < j; k++)
		sp_stable_set_page(st, w->act[k].snode, first + (k - i));
	return 0;
}

static void run_pair(struct sp_engine *e, struct sp_window *w, unsigned i,
		     unsigned j)
{
	struct sp_stable *st = &e->stable;
	struct sp_space *s = w->s;
	struct sp_chunk *qc = q_chunk(e, &w->act[i]);
	struct sp_space *qs = qc->owner;
	uintptr_t va0 = act_va(w, &w->act[i]), qva0 = q_va(e, &w->act[i]);
	unsigned n = j - i;
	uint8_t held[SP_WINDOW], qheld[SP_WINDOW];

	if (pair_pages(e, w, i, j)) {
		e->c.scan_errors++;
		goto commit;
	}
	if (hold(e, s->be, va0, i, j, held))
		goto commit;
	if (hold(e, qs->be, qva0, i, j, qheld)) {
		e->ops->unprotect(e->be, s->be, va0, n);
		goto commit;
	}
	for (unsigned k = i; k < j; k++) {
		struct sp_action *a = &w->act[k];
		const void *c = sp_stable_content(st, a->snode), *p, *q;

		if (qheld[k - i]) {
			q = e->ops->peek(e->be, qs->be, q_va(e, a), scratch(e, 2));
			a->qok = c && q && !memcmp(q, c, SP_PAGE_SIZE);
		}
		if (held[k - i]) {
			p = e->ops->peek(e->be, s->be, act_va(w, a), scratch(e, 1));
			a->ok = c && p && !memcmp(p, c, SP_PAGE_SIZE);
		}
		if ((held[k - i] && !a->ok) || (qheld[k - i] && !a->qok))
			e->c.merge_races++;
		/*
		 * Our page failed (pinned, or written) but the partner holds
		 * the content: if later pages of the window wait to join this
		 * stable page, map the partner alone so that they find one,
		 * as KSM leaves the partner in the unstable tree for them.
		 * Otherwise no stable page is made for a single sharer.
		 */
		if (!a->ok && sn(st, a->snode)->pending <= 2)
			a->qok = 0;
		a->ok = a->ok && a->qok;
	}
	/* The partner first: if its replace fails, ours is not attempted. */
#define REPLACE_Q(a, nn)                                                     \
	(e->c.replace_calls++,                                               \
	 e->ops->replace(e->be, qs->be, q_va(e, &w->act[a]), (nn),           \
			 sn(st, w->act[a].snode)->spage))
	FOR_SUBRUNS(w, i, j, qok, REPLACE_Q);
#undef REPLACE_Q
	for (unsigned k = i; k < j; k++)
		w->act[k].ok = w->act[k].ok && w->act[k].qok;
#define REPLACE_P(a, nn)                                                     \
	(e->c.replace_calls++,                                               \
	 e->ops->replace(e->be, s->be, act_va(w, &w->act[a]), (nn),          \
			 sn(st, w->act[a].snode)->spage))
	FOR_SUBRUNS(w, i, j, ok, REPLACE_P);
#undef REPLACE_P
	e->ops->unprotect(e->be, qs->be, qva0, n);
	e->ops->unprotect(e->be, s->be, va0, n);
commit:
	for (unsigned k = i; k < j; k++) {
		struct sp_action *a = &w->act[k];
		struct sp_rec *qr = &q_chunk(e, a)->rec[q_slot(a)];

		if (a->qok) {
			/* The partner, taken out of the unstable tree in
			 * phase 1, becomes a sharer of the stable page. */
			e->c.pages_unshared--;
			commit_sharer(e, qs, qr, a->snode);
		} else {
			/* Still an unstable page: back in the tree. */
			sp_unstable_add(&e->unstable, qr, a->qid);
			sn(st, a->snode)->flags |= SNF_DEAD;
		}
		if (a->ok)
			commit_sharer(e, s, act_rec(w, a), a->snode);
		sp_stable_unpend(st, a->snode);
		sp_stable_unpend(st, a->snode);
	}
}

void merge_window(struct sp_engine *e, struct sp_window *w)
{
	unsigned i = 0;

	while (i < w->nact) {
		unsigned j = i + 1;

		if (w->act[i].kind != ACT_JOIN || join_target_ok(e, &w->act[i]))
			while (j < w->nact && extends(e, &w->act[j - 1], &w->act[j]))
				j++;
		switch (w->act[i].kind) {
		case ACT_ZERO:
			run_zero(e, w, i, j);
			break;
		case ACT_JOIN:
			run_join(e, w, i, j);
			break;
		case ACT_PAIR:
			run_pair(e, w, i, j);
			break;
		case ACT_NAMED:
			run_named(e, w, i, j);
			break;
		}
		i = j;
	}
}
