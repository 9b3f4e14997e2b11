/*
 * stats.c - counters with the kernel's names, and the verifier that
 * recounts them from the records.
 *
 * pages_shared     stable pages with at least one sharer
 * pages_sharing    sharers beyond the first of each: pages saved
 *                  (both without the pages the backend named: how many
 *                  of those are saved is the shared store's to say)
 * pages_unshared   records in the unstable tree (REC_UNSTABLE)
 * pages_volatile   rmap_items - shared - sharing - unshared - named
 *                  (REC_NAMED), floored at 0
 * pages_scanned    pages processed by the scan (not the skipped ones)
 * pages_skipped    pages smart scan skipped
 * full_scans       passes completed
 * stable_node_chains / stable_node_dups   contents over max_page_sharing
 * ksm_zero_pages   pages the engine released to the zero page, unwritten,
 *                  with use_zero_pages 1 (with 0, such pages count in
 *                  pages_shared and pages_sharing as KSM's merges of
 *                  zero-filled content: zero_shared() of them shared)
 * general_profit   (pages_sharing + ksm_zero_pages) * page - meta_bytes:
 *                  KSM subtracts rmap_items * sizeof(rmap_item); we
 *                  subtract what our metadata really costs
 * process_profit   (merging_pages + zero_pages) * page - rmap_items * 8
 *                  (merging_pages: the zero-filled ones counted as
 *                  merged included, as KSM's ksm_merging_pages)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine.h"

void sp_stats_get(struct sp_engine *e, struct sp_stats *st)
{
	uint64_t busy, zs;

	pthread_mutex_lock(&e->lock);
	zs = zero_shared(e);
	st->pages_shared = e->stable.pages_shared + zs;
	st->pages_sharing = e->stable.pages_sharing + e->c.zero_merged - zs;
	st->pages_unshared = e->c.pages_unshared;
	busy = st->pages_shared + st->pages_sharing + st->pages_unshared +
	       e->c.pages_named;
	st->pages_volatile = e->c.rmap_items > busy ? e->c.rmap_items - busy : 0;
	st->pages_scanned = e->c.pages_scanned;
	st->pages_skipped = e->c.pages_skipped;
	st->full_scans = e->c.full_scans;
	st->stable_node_chains = e->stable.chains;
	st->stable_node_dups = e->stable.dups;
	st->ksm_zero_pages = e->c.ksm_zero_pages;
	st->general_profit =
		(int64_t)((st->pages_sharing + st->ksm_zero_pages) *
			  SP_PAGE_SIZE) -
		(int64_t)e->meta_bytes;
	st->rmap_items = e->c.rmap_items;
	st->meta_bytes = e->meta_bytes;
	st->fixed_bytes = e->fixed_bytes;
	st->merge_races = e->c.merge_races;
	st->pages_refused = e->c.pages_refused;
	st->replace_calls = e->c.replace_calls;
	st->scan_errors = e->c.scan_errors;
	st->keys_skipped = e->c.keys_skipped;
	st->keys_changed = e->c.keys_changed;
	st->zero_merged = e->c.zero_merged;
	pthread_mutex_unlock(&e->lock);
}

void sp_space_stats_get(struct sp_engine *e, struct sp_space *s,
			struct sp_space_stats *st)
{
	pthread_mutex_lock(&e->lock);
	st->rmap_items = s->rmap_items;
	st->zero_pages = s->zero_pages;
	st->merging_pages = s->merging_pages + s->zero_merged;
	st->zero_merged = s->zero_merged;
	st->process_profit =
		(int64_t)((st->merging_pages + s->zero_pages) * SP_PAGE_SIZE) -
		(int64_t)(s->rmap_items * sizeof(struct sp_rec));
	st->registered_pages = s->registered_pages;
	pthread_mutex_unlock(&e->lock);
}

/* ---- verification ---------------------------------------------------- */

#define FAIL(...)                                                            \
	do {                                                                 \
		if (why)                                                     \
			snprintf(why, whylen, __VA_ARGS__);                  \
		err = -EUCLEAN;                                              \
		goto out;                                                    \
	} while (0)

/* Regions of @s: sorted, disjoint, not touching; their page total. */
static int verify_regions(struct sp_space *s, uint64_t *pages, char *why,
			  size_t whylen)
{
	uintptr_t prev_end = 0;
	int err = 0, first = 1;

	*pages = 0;
	if (sp_rb_check(&s->regions) < 0)
		FAIL("region tree broken");
	for (struct sp_rb_node *n = sp_rb_first(&s->regions); n;
	     n = sp_rb_next(n)) {
		struct sp_region *r = sp_rb_container(n, struct sp_region, node);

		if (r->start >= r->end || (r->start | r->end) & (SP_PAGE_SIZE - 1))
			FAIL("region [%#lx, %#lx) malformed", r->start, r->end);
		if (!first && r->start <= prev_end)
			FAIL("regions overlap or touch at %#lx", r->start);
		*pages += (r->end - r->start) / SP_PAGE_SIZE;
		prev_end = r->end;
		first = 0;
	}
out:
	return err;
}

static int in_region(struct sp_space *s, uintptr_t a)
{
	struct sp_region *r = region_next(s, a);

	return r && r->start <= a;
}

int sp_engine_verify(struct sp_engine *e, char *why, size_t whylen)
{
	struct sp_counters c = { 0 };
	uint64_t reg_total = 0, nchunks = 0;
	uint32_t *sharers = NULL;
	int err = 0;

	pthread_mutex_lock(&e->lock);
	err = sp_stable_verify(&e->stable, why, whylen);
	if (!err)
		err = sp_unstable_verify(&e->unstable, why, whylen);
	if (err)
		goto out;
	sharers = calloc(e->stable.cap ? e->stable.cap : 1, sizeof(*sharers));
	if (!sharers) {
		err = -ENOMEM;
		goto out;
	}
	for (struct sp_space *s = e->spaces.next; s != &e->spaces;
	     s = s->next) {
		uint64_t pages, items = 0, merging = 0, zero = 0, zgroup = 0;

		err = verify_regions(s, &pages, why, whylen);
		if (err)
			goto out;
		if (pages != s->registered_pages)
			FAIL("space registered pages %llu, regions hold %llu",
			     (unsigned long long)s->registered_pages,
			     (unsigned long long)pages);
		reg_total += pages;
		if (sp_rb_check(&s->chunks) < 0)
			FAIL("chunk tree broken");
		for (struct sp_rb_node *n = sp_rb_first(&s->chunks); n;
		     n = sp_rb_next(n)) {
			struct sp_chunk *ch =
				sp_rb_container(n, struct sp_chunk, node);
			uint32_t live = 0;

			nchunks++;
			if (sp_chunk_by_id(&e->chunks, ch->id) != ch ||
			    ch->owner != s || ch->be_space != s->be)
				FAIL("chunk %u misfiled", ch->id);
			for (unsigned i = 0; i < SP_CHUNK_PAGES; i++) {
				struct sp_rec *r = &ch->rec[i];
				unsigned rs = rec_state(r);

				if (rs == REC_NONE)
					continue;
				live++;
				if (!in_region(s, page_addr(ch, i)))
					FAIL("record at %#lx outside any range",
					     page_addr(ch, i));
				if (rs == REC_UNSTABLE)
					c.pages_unshared++;
				else if (rs == REC_ZERO && r->link == REC_ZERO_GROUP)
					zgroup++;
				else if (rs == REC_ZERO && r->link == REC_ZERO_KERNEL)
					zero++;
				else if (rs == REC_NAMED) {
					c.pages_named++;
					merging++;
				} else if (rs == REC_STABLE) {
					uint32_t k = r->link;

					if (k >= e->stable.cap ||
					    (sn(&e->stable, k)->kind != SN_PLAIN &&
					     sn(&e->stable, k)->kind != SN_DUP))
						FAIL("record at %#lx links to bad stable node %u",
						     page_addr(ch, i), k);
					sharers[k]++;
					merging++;
				} else if (rs != REC_SEEN) {
					FAIL("record at %#lx in state %u",
					     page_addr(ch, i), rs);
				}
			}
			if (!live || live != ch->nlive)
				FAIL("chunk %u counts %u live records, holds %u",
				     ch->id, ch->nlive, live);
			items += live;
		}
		if (items != s->rmap_items || merging != s->merging_pages ||
		    zero != s->zero_pages || zgroup != s->zero_merged)
			FAIL("space counters rmap_items %llu/%llu merging %llu/%llu zero %llu/%llu zero merged %llu/%llu (recount/kept)",
			     (unsigned long long)items,
			     (unsigned long long)s->rmap_items,
			     (unsigned long long)merging,
			     (unsigned long long)s->merging_pages,
			     (unsigned long long)zero,
			     (unsigned long long)s->zero_pages,
			     (unsigned long long)zgroup,
			     (unsigned long long)s->zero_merged);
		c.rmap_items += items;
		c.ksm_zero_pages += zero;
		c.zero_merged += zgroup;
	}
	if (reg_total != e->registered_pages)
		FAIL("registered pages %llu, spaces hold %llu",
		     (unsigned long long)e->registered_pages,
		     (unsigned long long)reg_total);
	if (nchunks != e->chunks.nchunks)
		FAIL("chunk table counts %u chunks, spaces hold %llu",
		     e->chunks.nchunks, (unsigned long long)nchunks);
	for (uint32_t k = 0; k < e->stable.cap; k++) {
		struct sp_snode *n = sn(&e->stable, k);

		if ((n->kind == SN_PLAIN || n->kind == SN_DUP) &&
		    n->sharers != sharers[k])
			FAIL("stable node %u counts %u sharers, records say %u",
			     k, n->sharers, sharers[k]);
	}
	if (c.rmap_items != e->c.rmap_items ||
	    c.pages_unshared != e->c.pages_unshared ||
	    c.ksm_zero_pages != e->c.ksm_zero_pages ||
	    c.zero_merged != e->c.zero_merged ||
	    c.pages_named != e->c.pages_named)
		FAIL("counters rmap_items %llu/%llu unshared %llu/%llu zero %llu/%llu zero merged %llu/%llu named %llu/%llu (recount/kept)",
		     (unsigned long long)c.rmap_items,
		     (unsigned long long)e->c.rmap_items,
		     (unsigned long long)c.pages_unshared,
		     (unsigned long long)e->c.pages_unshared,
		     (unsigned long long)c.ksm_zero_pages,
		     (unsigned long long)e->c.ksm_zero_pages,
		     (unsigned long long)c.zero_merged,
		     (unsigned long long)e->c.zero_merged,
		     (unsigned long long)c.pages_named,
		     (unsigned long long)e->c.pages_named);
out:
	free(sharers);
	pthread_mutex_unlock(&e->lock);
	return err;
}
