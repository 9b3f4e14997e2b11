/*
 * sim_shared.c - a stable store shared by every engine on one simulator:
 * samepaged's protocol (design.md, "Merging across processes") without
 * the sockets, so that tests drive the engine's shared-store path
 * (ops->lookup, NAMED records) with injected writes and check it as
 * they check everything else.
 *
 * A space stands for a process.  For each page an engine offers (it
 * found no partner in that engine), by the hash the engine read:
 *   - a content the store holds is named at once, one reference more;
 *   - a content another space nominated is "uploaded": its bytes are
 *     read now and indexed by their own hash, as the daemon hashes what
 *     it receives (a writer may have changed them since the engine's
 *     hash: the page named then differs, and phase 2's comparison
 *     refuses it); an equal stored page is reused, else a new one made;
 *   - a content this space nominated before: nothing;
 *   - an unknown content is nominated, and nothing named.
 * At a first look, or a changed page's (ops->look), a stored content is
 * named too, and nothing else happens (samepaged also takes first looks
 * as hints; the simulator has no hint table).
 * Nominations are never taken back (samepaged's directory is lossy and
 * keeps them until the client leaves; here a freed space's nominations
 * stay, costing at most a useless upload).  A shared page lives while
 * references are out (sim_shared_put); its directory entry goes with it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_impl.h"
#include "../util/hash.h"

static uint32_t slot_in(uint32_t cap, uint64_t hash)
{
	return (uint32_t)(hash ^ (hash >> 32)) & (cap - 1);
}

/* The live entry for @hash, or NULL. */
static struct sim_dent *dir_find(struct sp_sim *sim, uint64_t hash)
{
	if (!sim->dir_cap)
		return NULL;
	for (uint32_t i = slot_in(sim->dir_cap, hash);;
	     i = (i + 1) & (sim->dir_cap - 1)) {
		struct sim_dent *d = &sim->dir[i];

		if (d->state == DENT_EMPTY)
			return NULL;
		if (d->state != DENT_GONE && d->hash == hash)
			return d;
	}
}

/* Rebuild the table at twice the live entries' need, dropping GONE
 * ones.  Return: 0 or -ENOMEM (the old table kept). */
static int dir_grow(struct sp_sim *sim)
{
	uint32_t live = 0, cap = 64;
	struct sim_dent *old = sim->dir, *n;

	for (uint32_t i = 0; i < sim->dir_cap; i++)
		live += old[i].state == DENT_NOMINATED ||
			old[i].state == DENT_STORED;
	while (cap < 4 * (live + 1))
		cap *= 2;
	n = calloc(cap, sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (uint32_t i = 0; i < sim->dir_cap; i++) {
		uint32_t k;

		if (old[i].state != DENT_NOMINATED &&
		    old[i].state != DENT_STORED)
			continue;
		for (k = slot_in(cap, old[i].hash); n[k].state;
		     k = (k + 1) & (cap - 1))
			;
		n[k] = old[i];
	}
	free(old);
	sim->dir = n;
	sim->dir_cap = cap;
	sim->dir_used = live;
	return 0;
}

/* A new entry for @hash (which has none).  Return: it, or NULL. */
static struct sim_dent *dir_add(struct sp_sim *sim, uint64_t hash)
{
	uint32_t i;

	if ((sim->dir_used + 1) * 4 > sim->dir_cap * 3 && dir_grow(sim))
		return NULL;
	for (i = slot_in(sim->dir_cap, hash);
	     sim->dir[i].state == DENT_NOMINATED ||
	     sim->dir[i].state == DENT_STORED;
	     i = (i + 1) & (sim->dir_cap - 1))
		;
	if (sim->dir[i].state == DENT_EMPTY)
		sim->dir_used++;
	sim->dir[i] = (struct sim_dent){ .hash = hash };
	return &sim->dir[i];
}

/* Name the stored page of entry @d: one more reference. */
static sp_spage_t name_stored(struct sp_sim *sim, const struct sim_dent *d)
{
	sim->sref[d->page]++;
	sim->cnt.shared_named++;
	return d->page;
}

/* A new shared page holding @bytes (hash @h), with one reference, and
 * its entry @d (the one for @h) marked STORED.  Return: the page, or
 * SP_SPAGE_NONE if memory ran out (nothing changed). */
static sp_spage_t store_new(struct sp_sim *sim, struct sim_dent *d,
			    const void *bytes, uint64_t h)
{
	uint32_t page, f;

	if (sp_ralloc_get(&sim->store_ids, 1, &page))
		return SP_SPAGE_NONE;
	if (sim_store_reserve(sim, page + 1) || sim_frame_new(sim, &f)) {
		sp_ralloc_put(&sim->store_ids, page, 1);
		return SP_SPAGE_NONE;
	}
	sim->frame[f].data = malloc(PS);
	if (!sim->frame[f].data) {
		sim_frame_put(sim, f);
		sp_ralloc_put(&sim->store_ids, page, 1);
		return SP_SPAGE_NONE;
	}
	memcpy(sim->frame[f].data, bytes, PS);
	sim->frame[f].stable = 1;
	sim->cnt.stable_frames++;
	sim->cnt.shared_frames++;
	sim->store[page] = f;
	sim->sref[page] = 1;
	sim->shash[page] = h;
	d->state = DENT_STORED;
	d->page = page;
	d->owner = NULL;
	return page;
}

/* The upload of the page at @addr of @space: the store's page of its
 * bytes as they are now.  Return: that page (one reference), or
 * SP_SPAGE_NONE. */
static sp_spage_t upload(struct sp_sim *sim, struct sp_sim_space *space,
			 uintptr_t addr)
{
	uint8_t buf[PS];
	struct sim_pte *pte = sim_pte_of(space, addr, NULL);
	const uint8_t *b;
	struct sim_dent *d;
	uint64_t h;

	if (!pte)
		return SP_SPAGE_NONE;
	b = sim_frame_bytes(sim, pte->frame, buf);
	h = sp_hash_page(b);
	sim->cnt.uploads++;
	d = dir_find(sim, h);
	if (d && d->state == DENT_STORED)
		return name_stored(sim, d);
	if (!d)
		d = dir_add(sim, h);
	return d ? store_new(sim, d, b, h) : SP_SPAGE_NONE;
}

int sim_op_lookup(void *be, void *space, size_t n, const uintptr_t *addr,
		  const uint64_t *hash, sp_spage_t *out)
{
	struct sp_sim *sim = be;
	int err;

	for (size_t i = 0; i < n; i++)
		out[i] = SP_SPAGE_NONE;
	err = sim_op_enter(sim, "lookup");
	if (err)
		return err;
	for (size_t i = 0; i < n; i++) {
		struct sim_dent *d = dir_find(sim, hash[i]);

		if (d && d->state == DENT_STORED) {
			out[i] = name_stored(sim, d);
		} else if (d && d->owner != space) {
			out[i] = upload(sim, space, addr[i]);
		} else if (!d && (d = dir_add(sim, hash[i]))) {
			d->state = DENT_NOMINATED;
			d->owner = space;
			sim->cnt.nominations++;
		}
	}
	return 0;
}

int sim_op_look(void *be, void *space, size_t n, const uintptr_t *addr,
		const uint64_t *hash, const uint8_t *how, sp_spage_t *out)
{
	struct sp_sim *sim = be;
	int err;

	(void)space;
	(void)addr;
	for (size_t i = 0; i < n; i++)
		out[i] = SP_SPAGE_NONE;
	err = sim_op_enter(sim, "look");
	if (err)
		return err;
	for (size_t i = 0; i < n; i++) {
		struct sim_dent *d;

		if (!(how[i] & SP_LOOK_FIND))
			continue;
		d = dir_find(sim, hash[i]);
		if (d && d->state == DENT_STORED) {
			out[i] = name_stored(sim, d);
			sim->cnt.look_named++;
		}
	}
	return 0;
}

int sim_shared_put(struct sp_sim *sim, sp_spage_t page)
{
	struct sim_dent *d;

	if (page >= sim->store_cap || !sim->sref[page])
		return 0;
	if (--sim->sref[page])
		return 1;
	d = dir_find(sim, sim->shash[page]);
	if (d && d->state == DENT_STORED && d->page == page)
		d->state = DENT_GONE;
	sim->cnt.shared_frames--;
	return 0;
}

int sim_shared_check(struct sp_sim *sim, char *why, size_t whylen)
{
	uint64_t shared = 0, stored = 0;

	for (uint32_t p = 0; p < sim->store_cap; p++) {
		struct sim_dent *d;

		if (!sim->sref[p])
			continue;
		shared++;
		d = dir_find(sim, sim->shash[p]);
		if (!sim->store[p] || !d || d->state != DENT_STORED ||
		    d->page != p) {
			if (why)
				snprintf(why, whylen, "shared page %u: %s", p,
					 !sim->store[p] ? "no frame"
							: "not in the directory");
			return -EUCLEAN;
		}
	}
	for (uint32_t i = 0; i < sim->dir_cap; i++)
		stored += sim->dir[i].state == DENT_STORED;
	if (shared != stored || shared != sim->cnt.shared_frames) {
		if (why)
			snprintf(why, whylen,
				 "shared pages %llu, stored entries %llu, "
				 "counted %llu", (unsigned long long)shared,
				 (unsigned long long)stored,
				 (unsigned long long)sim->cnt.shared_frames);
		return -EUCLEAN;
	}
	return 0;
}
