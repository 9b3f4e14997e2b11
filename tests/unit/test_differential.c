/*
 * test_differential.c - the engine against a shadow copy of memory.
 *
 * Seeded random runs of thousands of operations on three simulated
 * address spaces: whole-page and partial writes, scans with random
 * budgets, registrations and unregistrations (some over holes and shared
 * mappings), unmap+forget+remap, discards, unmerges, unmerge-all, knob
 * changes, pages pinned for "DMA" with device writes into the pinned
 * frame (lost to the program if an engine ever replaced a pinned page),
 * and "concurrent" writes injected at the start of random backend calls,
 * so that some land between a merge's hold and its replace.
 *
 * After every step:
 *   - every byte of every page equals the shadow (no write lost or
 *     reordered, no merge of unequal pages);
 *   - the simulator's recount agrees: refcounts match the mappings, no
 *     write is left queued, no stable page was freed under a mapping, no
 *     page was replaced without protection;
 *   - the engine's recount agrees with its counters and trees.
 * Every few hundred steps, after one quiet pass, the counters must match
 * the frames exactly.  At the end everything is unregistered and freed,
 * and no frame may remain.
 */
#include <errno.h>

#include "harness.h"

#define NSP 3
#define NPG 192			/* pages per space */
#define STEPS 3000

static unsigned char shadow[NSP][NPG][PS];

#define MAXPIN 8

struct pin {
	unsigned s, p;		/* the page the frame was pinned at */
	sp_frame_t f;
};

struct run {
	struct h h;
	uint64_t rng;
	int inject_on;
	uint64_t injected, max_sharing_seen, merges_seen, races_seen;
	uint64_t dma_writes;
	struct pin pin[MAXPIN];
	unsigned npin;
};

static uint64_t rnd(struct run *r)
{
	uint64_t x = r->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

static unsigned below(struct run *r, unsigned n)
{
	return (unsigned)(rnd(r) % n);
}

/* A small alphabet of page contents, so that pages often match. */
static void fill_alpha(unsigned char *page, unsigned v)
{
	if (v == 0)
		memset(page, 0, PS);
	else
		h_fill(page, v);
}

static void do_write(struct run *r, unsigned s, unsigned p)
{
	unsigned char buf[PS];

	if (below(r, 10) < 7) {
		fill_alpha(buf, below(r, 6));
		assert_int_equal(sp_sim_write(r->h.sim, r->h.sp[s],
					      BASE + p * PS, buf, PS), 0);
		memcpy(shadow[s][p], buf, PS);
	} else {
		unsigned off = below(r, PS - 8), len = 1 + below(r, 8);

		for (unsigned k = 0; k < len; k++)
			buf[k] = (unsigned char)rnd(r);
		assert_int_equal(sp_sim_write(r->h.sim, r->h.sp[s],
					      BASE + p * PS + off, buf, len), 0);
		memcpy(shadow[s][p] + off, buf, len);
	}
}

/* The injected writer: at the start of some backend calls. */
static void injector(struct sp_sim *sim, const char *op, void *arg)
{
	struct run *r = arg;

	(void)sim;
	(void)op;
	if (!r->inject_on || below(r, 100) >= 15)
		return;
	r->injected++;
	do_write(r, below(r, NSP), below(r, NPG));
}

/* Unpin every pin in [p, p + n) of space @s (before the page goes). */
static void unpin_range(struct run *r, unsigned s, unsigned p, unsigned n)
{
	for (unsigned k = 0; k < r->npin;) {
		if (r->pin[k].s == s && r->pin[k].p >= p && r->pin[k].p < p + n) {
			sp_sim_unpin(r->h.sim, r->pin[k].f);
			r->pin[k] = r->pin[--r->npin];
			continue;
		}
		k++;
	}
}

static void check_memory(struct run *r)
{
	unsigned char got[PS];

	for (unsigned s = 0; s < NSP; s++)
		for (unsigned p = 0; p < NPG; p++) {
			assert_int_equal(sp_sim_read(r->h.sim, r->h.sp[s],
						     BASE + p * PS, got, PS), 0);
			if (memcmp(got, shadow[s][p], PS))
				fail_msg("space %u page %u differs from shadow",
					 s, p);
		}
}

/* After a pass with no writes at all, counters equal what frames show. */
static void check_quiet(struct run *r)
{
	struct sp_stats st;
	sp_frame_t stable[NSP * NPG];
	unsigned nstable = 0, mapped = 0;
	struct sp_sim_counts c;

	r->inject_on = 0;
	/* Finish the pass in progress, then one full pass: every STABLE
	 * record has been checked against the mapping since the last write. */
	h_passes(&r->h, 2);
	st = h_stats(&r->h);
	for (unsigned s = 0; s < NSP; s++)
		for (unsigned p = 0; p < NPG; p++) {
			sp_frame_t f = h_frame(&r->h, s, p);
			unsigned k;

			if (!sp_sim_frame_is_stable(r->h.sim, f))
				continue;
			mapped++;
			for (k = 0; k < nstable && stable[k] != f; k++)
				;
			if (k == nstable)
				stable[nstable++] = f;
		}
	assert_int_equal(st.pages_shared + st.pages_sharing, mapped);
	assert_int_equal(st.pages_shared, nstable);
	sp_sim_counts(r->h.sim, &c);
	assert_int_equal(c.stable_frames, nstable);	/* nothing kept alive */
	if (st.pages_sharing > r->merges_seen)
		r->merges_seen = st.pages_sharing;
	if (st.stable_node_chains)
		r->max_sharing_seen++;
	h_check(&r->h);
	r->inject_on = 1;
}

static void random_range(struct run *r, uintptr_t *a, size_t *len)
{
	/* Sometimes past the mapping's ends, to meet holes. */
	unsigned first = below(r, NPG + 8), n = 1 + below(r, 64);

	*a = BASE - 4 * PS + (uintptr_t)first * PS;
	*len = (size_t)n * PS;
}

static void step(struct run *r)
{
	struct h *h = &r->h;
	unsigned op = below(r, 100), s = below(r, NSP);
	uintptr_t a;
	size_t len;
	int err;

	if (op < 45) {
		do_write(r, s, below(r, NPG));
	} else if (op < 75) {
		sp_scan(h->e, 1 + below(r, 700));
	} else if (op < 82) {
		random_range(r, &a, &len);
		err = sp_register(h->e, h->s[s], a, len);
		assert_true(err == 0 || err == -ENOMEM);
	} else if (op < 86) {
		random_range(r, &a, &len);
		err = sp_unregister(h->e, h->s[s], a, len);
		assert_true(err == 0 || err == -ENOMEM);
	} else if (op < 90) {
		random_range(r, &a, &len);
		if (a < BASE)
			a = BASE;
		if (a + len > BASE + NPG * PS)
			len = BASE + NPG * PS - a;
		if (a >= BASE + NPG * PS || !len)
			return;
		assert_int_equal(sp_unmerge(h->e, h->s[s], a, len), 0);
	} else if (op < 93) {
		/* munmap + mmap: the memory is gone, new zero pages come. */
		unsigned p = below(r, NPG - 4), n = 1 + below(r, 4);

		unpin_range(r, s, p, n);
		assert_int_equal(sp_sim_unmap(h->sim, h->sp[s], BASE + p * PS,
					      n * PS), 0);
		assert_int_equal(sp_forget(h->e, h->s[s], BASE + p * PS, n * PS), 0);
		assert_int_equal(sp_sim_map(h->sim, h->sp[s], BASE + p * PS,
					    n * PS, SP_SIM_PRIVATE), 0);
		for (unsigned k = p; k < p + n; k++)
			memset(shadow[s][k], 0, PS);
	} else if (op < 94) {
		assert_int_equal(sp_unmerge_all(h->e), 0);
	} else if (op < 95) {
		/* MADV_DONTNEED: the memory first, then the engine. */
		unsigned p = below(r, NPG - 4), n = 1 + below(r, 4);

		unpin_range(r, s, p, n);
		assert_int_equal(sp_sim_discard(h->sim, h->sp[s], BASE + p * PS,
						n * PS), 0);
		assert_int_equal(sp_discard(h->e, h->s[s], BASE + p * PS, n * PS), 0);
		for (unsigned k = p; k < p + n; k++)
			memset(shadow[s][k], 0, PS);
	} else if (op < 96) {
		/* Pin a page for "DMA", or unpin one. */
		unsigned p = below(r, NPG);
		sp_frame_t f = 0;	/* a failed pin leaves it unset */

		if (r->npin && (r->npin == MAXPIN || below(r, 2))) {
			unsigned k = below(r, r->npin);

			sp_sim_unpin(h->sim, r->pin[k].f);
			r->pin[k] = r->pin[--r->npin];
		} else if (!sp_sim_pin(h->sim, h->sp[s], BASE + p * PS, &f) &&
			   !sp_sim_frame_is_stable(h->sim, f)) {
			r->pin[r->npin++] = (struct pin){ s, p, f };
		} else if (f) {
			sp_sim_unpin(h->sim, f);	/* only private pages */
		}
	} else if (op < 96 + 1 && r->npin) {
		/* A device writes into a pinned frame: the program sees it at
		 * the page, unless the page was (wrongly) replaced. */
		struct pin *pn = &r->pin[below(r, r->npin)];
		unsigned char b[8];
		unsigned off = below(r, PS - 8);

		for (unsigned k = 0; k < 8; k++)
			b[k] = (unsigned char)rnd(r);
		assert_int_equal(sp_sim_dma_write(h->sim, pn->f, off, b, 8), 0);
		memcpy(shadow[pn->s][pn->p] + off, b, 8);
		r->dma_writes++;
	} else if (op < 97) {
		sp_knob_set(h->e, SP_KNOB_USE_ZERO_PAGES, below(r, 2));
		sp_knob_set(h->e, SP_KNOB_SMART_SCAN, below(r, 2));
	} else if (op < 98) {
		static const uint64_t lim[] = { 2, 3, 4, 256 };

		err = sp_knob_set(h->e, SP_KNOB_MAX_PAGE_SHARING,
				  lim[below(r, 4)]);
		assert_true(err == 0 || err == -EBUSY);
	} else {
		/* Bad arguments change nothing. */
		struct sp_space_stats before, after;

		sp_space_stats_get(h->e, h->s[s], &before);
		assert_int_equal(sp_register(h->e, h->s[s], BASE + 1, PS), -EINVAL);
		assert_int_equal(sp_unregister(h->e, h->s[s], BASE + 7, PS), -EINVAL);
		assert_int_equal(sp_unmerge(h->e, h->s[s], UINTPTR_MAX - PS + 1,
					    2 * PS), -EINVAL);
		sp_space_stats_get(h->e, h->s[s], &after);
		assert_memory_equal(&before, &after, sizeof(before));
	}
}

static void one_run(uint64_t seed)
{
	struct run r;
	struct sp_sim_counts c;
	struct sp_stats st;

	memset(&r, 0, sizeof(r));
	r.rng = seed * 0x9e3779b97f4a7c15ull + 1;
	memset(shadow, 0, sizeof(shadow));
	/* Odd seeds without the hash op: every page is copied to be
	 * checksummed, the path of backends that have none. */
	h_init_ops(&r.h, NSP, seed & 1 ? h_ops_nohash() : &sp_sim_ops);
	/* Small sharing limit: chains and dups are exercised too. */
	assert_int_equal(sp_knob_set(r.h.e, SP_KNOB_MAX_PAGE_SHARING, 4), 0);
	for (unsigned s = 0; s < NSP; s++)
		h_map(&r.h, s, NPG, NULL);
	/* A shared mapping beside space 2's memory: never merged. */
	assert_int_equal(sp_sim_map(r.h.sim, r.h.sp[2], BASE + (NPG + 2) * PS,
				    2 * PS, SP_SIM_SHARED), 0);
	for (unsigned s = 0; s < NSP; s++)
		for (unsigned p = 0; p < NPG; p++)
			do_write(&r, s, p);
	sp_sim_set_injector(r.h.sim, injector, &r);
	r.inject_on = 1;

	for (unsigned i = 0; i < STEPS; i++) {
		step(&r);
		r.inject_on = 0;	/* checks read memory: no writer now */
		check_memory(&r);
		h_check(&r.h);
		r.inject_on = 1;
		if (i % 250 == 249)
			check_quiet(&r);
	}
	check_quiet(&r);

	sp_sim_counts(r.h.sim, &c);
	st = h_stats(&r.h);
	print_message("seed %llu: %llu injected writes (%llu waited on a "
		      "held page), %llu merge races, most sharing %llu, "
		      "%llu replace calls, %llu quiet checks saw chains, "
		      "%llu DMA writes, %llu pages refused (pinned)\n",
		      (unsigned long long)seed,
		      (unsigned long long)r.injected,
		      (unsigned long long)c.writes_blocked,
		      (unsigned long long)st.merge_races,
		      (unsigned long long)r.merges_seen,
		      (unsigned long long)st.replace_calls,
		      (unsigned long long)r.max_sharing_seen,
		      (unsigned long long)r.dma_writes,
		      (unsigned long long)st.pages_refused);
	/* The run must have exercised what it claims to. */
	assert_true(r.merges_seen > 0);
	assert_true(c.writes_blocked > 0);
	assert_true(st.merge_races > 0);

	assert_true(st.pages_refused > 0);
	assert_true(r.dma_writes > 0);

	/* Unregister everything: every page private again, no stable frame. */
	sp_sim_set_injector(r.h.sim, NULL, NULL);
	for (unsigned s = 0; s < NSP; s++)
		unpin_range(&r, s, 0, NPG);
	for (unsigned s = 0; s < NSP; s++)
		assert_int_equal(sp_unregister(r.h.e, r.h.s[s], BASE,
					       NPG * PS), 0);
	check_memory(&r);
	st = h_stats(&r.h);
	assert_int_equal(st.pages_shared + st.pages_sharing, 0);
	assert_int_equal(st.ksm_zero_pages, 0);
	assert_int_equal(st.rmap_items, 0);
	sp_sim_counts(r.h.sim, &c);
	assert_int_equal(c.stable_frames, 0);
	h_check(&r.h);
	h_fini(&r.h);
}

static void test_seeds(void **state)
{
	const char *env = getenv("SP_DIFF_SEEDS");
	unsigned n = env ? (unsigned)atoi(env) : 4;

	(void)state;
	for (unsigned s = 1; s <= n; s++)
		one_run(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seeds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
