/*
 * test_engine.c - one test (at least) per rule of the merge engine, on
 * the simulated backend.  Effects are checked on the simulated frames
 * (which page maps which frame, how many frames exist) as well as on the
 * counters, and every test ends with both recounts agreeing
 * (sp_engine_verify, sp_sim_check) and no frame left behind.
 */
#include <errno.h>

#include "harness.h"
#include "util/hash.h"

/* Distinct frames mapped by pages [0, n) of space @i. */
static unsigned distinct_frames(struct h *h, unsigned i, unsigned n)
{
	sp_frame_t seen[1024];
	unsigned k = 0;

	for (unsigned p = 0; p < n; p++) {
		sp_frame_t f = h_frame(h, i, p);
		unsigned j;

		for (j = 0; j < k && seen[j] != f; j++)
			;
		if (j == k)
			seen[k++] = f;
	}
	return k;
}

static uint64_t *same_vals(unsigned n, uint64_t v)
{
	uint64_t *vals = calloc(n, sizeof(*vals));

	for (unsigned k = 0; k < n; k++)
		vals[k] = v;
	return vals;
}

/* ---- merging needs a checksum stable across two passes ----------------- */

static void test_merge_after_two_passes(void **state)
{
	struct h h;
	uint64_t vals[4] = { 5, 5, 5, 6 };
	struct sp_stats st;
	sp_frame_t f;

	(void)state;
	h_init(&h, 1);
	h_map(&h, 0, 4, vals);
	h_passes(&h, 1);
	st = h_stats(&h);
	assert_int_equal(st.full_scans, 1);
	assert_int_equal(st.pages_shared, 0);	/* first pass: checksums only */
	assert_int_equal(st.pages_volatile, 4);
	assert_int_equal(distinct_frames(&h, 0, 4), 4);
	h_passes(&h, 1);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 1);
	assert_int_equal(st.pages_sharing, 2);
	assert_int_equal(st.pages_unshared, 1);	/* page 3 waits in the tree */
	assert_int_equal(st.pages_volatile, 0);
	f = h_frame(&h, 0, 0);
	assert_true(sp_sim_frame_is_stable(h.sim, f));
	assert_int_equal(h_frame(&h, 0, 1), f);
	assert_int_equal(h_frame(&h, 0, 2), f);
	assert_int_not_equal(h_frame(&h, 0, 3), f);
	assert_int_equal(sp_sim_frame_ref(h.sim, f), 4);	/* 3 ptes + store */
	for (unsigned p = 0; p < 3; p++)
		assert_true(h_is(&h, 0, p, 5));
	h_check(&h);
	h_fini(&h);
}

static void test_volatile_never_merges(void **state)
{
	struct h h;
	struct sp_stats st;

	(void)state;
	h_init(&h, 1);
	h_map(&h, 0, 2, NULL);
	for (unsigned pass = 0; pass < 12; pass++) {
		/* Both pages identical at every scan, but never the same
		 * content two passes running: the checksum gate holds them. */
		h_write(&h, 0, 0, 100 + pass);
		h_write(&h, 0, 1, 100 + pass);
		h_passes(&h, 1);
	}
	st = h_stats(&h);
	assert_int_equal(st.pages_shared + st.pages_sharing, 0);
	assert_int_equal(st.pages_volatile, 2);
	assert_int_not_equal(h_frame(&h, 0, 0), h_frame(&h, 0, 1));
	h_check(&h);
	h_fini(&h);
}

/* ---- copy on write ------------------------------------------------------ */

static void test_write_after_merge(void **state)
{
	struct h h;
	uint64_t vals[3] = { 9, 9, 9 };
	struct sp_stats st;
	sp_frame_t f;

	(void)state;
	h_init(&h, 1);
	h_map(&h, 0, 3, vals);
	h_passes(&h, 2);
	f = h_frame(&h, 0, 0);
	assert_int_equal(distinct_frames(&h, 0, 3), 1);

	h_write(&h, 0, 1, 10);
	/* Private copy for the writer; the others untouched. */
	assert_int_not_equal(h_frame(&h, 0, 1), f);
	assert_int_equal(h_frame(&h, 0, 0), f);
	assert_int_equal(h_frame(&h, 0, 2), f);
	assert_true(h_is(&h, 0, 1, 10));
	assert_true(h_is(&h, 0, 0, 9));
	assert_true(h_is(&h, 0, 2, 9));

	/* One pass notices the COW and drops that sharer. */
	h_passes(&h, 1);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 1);
	assert_int_equal(st.pages_sharing, 1);
	h_check(&h);

	/* Write to both remaining: the stable page loses its last sharer
	 * and goes back to the backend. */
	h_write(&h, 0, 0, 11);
	h_write(&h, 0, 2, 12);
	h_passes(&h, 1);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared + st.pages_sharing, 0);
	assert_int_equal(sp_sim_frame_ref(h.sim, f), 0);
	h_check(&h);
	h_fini(&h);
}

/* KSM's selftest: change one byte in each of two merged pages. */
static void test_unmerge_by_writes(void **state)
{
	struct h h;
	uint64_t vals[2] = { 3, 3 };
	struct sp_stats st;

	(void)state;
	h_init(&h, 1);
	h_map(&h, 0, 2, vals);
	h_passes(&h, 2);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 1);
	assert_int_equal(st.pages_sharing, 1);
	assert_int_equal(sp_sim_write(h.sim, h.sp[0], BASE + 100, "-", 1), 0);
	assert_int_equal(sp_sim_write(h.sim, h.sp[0], BASE + PS + 100, "+", 1), 0);
	h_passes(&h, 1);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 0);
	assert_int_equal(st.pages_sharing, 0);
	h_check(&h);
	h_fini(&h);
}

/* ---- max_page_sharing, chains and dups ---------------------------------- */

/* KSM's selftest expectation for n duplicates under limit m. */
static void expect_ksm_count(struct h *h, unsigned n, unsigned m)
{
	struct sp_stats st = h_stats(h);

	if (n % m == 0 || n % m == 1) {
		assert_int_equal(st.pages_shared, n / m);
		assert_int_equal(st.pages_sharing, st.pages_shared * (m - 1));
	} else {
		assert_int_equal(st.pages_shared, n / m + 1);
		assert_int_equal(st.pages_sharing, n - st.pages_shared);
	}
}

static void test_257th_sharer_starts_a_dup(void **state)
{
	struct h h;
	uint64_t *vals = same_vals(258, 42);
	struct sp_stats st;
	sp_frame_t f0, f257;

	(void)state;
	h_init(&h, 1);
	h_map(&h, 0, 257, vals);
	h_passes(&h, 2);
	expect_ksm_count(&h, 257, 256);	/* 1 shared, 255 sharing, 1 left */
	st = h_stats(&h);
	assert_int_equal(st.stable_node_chains, 0);
	assert_int_equal(st.pages_unshared, 1);
	h_check(&h);
	h_fini(&h);

	/* With a 258th, the two left over pair into a second stable page
	 * with the same content: a chain of two dups. */
	h_init(&h, 1);
	h_map(&h, 0, 258, vals);
	h_passes(&h, 2);
	expect_ksm_count(&h, 258, 256);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 2);
	assert_int_equal(st.pages_sharing, 256);
	assert_int_equal(st.stable_node_chains, 1);
	assert_int_equal(st.stable_node_dups, 2);
	f0 = h_frame(&h, 0, 0);
	f257 = h_frame(&h, 0, 257);
	assert_true(sp_sim_frame_is_stable(h.sim, f0));
	assert_true(sp_sim_frame_is_stable(h.sim, f257));
	assert_int_not_equal(f0, f257);
	assert_int_equal(sp_sim_frame_ref(h.sim, f0), 257);	/* 256 + store */
	h_check(&h);

	/* Writing both pages of the small dup empties it: the dup is
	 * pruned and the chain collapses back into a plain node. */
	h_write(&h, 0, 256, 1);
	h_write(&h, 0, 257, 2);
	h_passes(&h, 1);
	st = h_stats(&h);
	assert_int_equal(st.stable_node_chains, 0);
	assert_int_equal(st.stable_node_dups, 0);
	assert_int_equal(st.pages_shared, 1);
	assert_int_equal(st.pages_sharing, 255);
	assert_int_equal(sp_sim_frame_ref(h.sim, f257), 0);
	h_check(&h);
	h_fini(&h);
	free(vals);
}

static void test_small_limit(void **state)
{
	static const unsigned counts[] = { 2, 10, 11, 12, 25, 31 };

	(void)state;
	for (unsigned c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		struct h h;
		uint64_t *vals = same_vals(counts[c], 8);

		h_init(&h, 1);
		assert_int_equal(sp_knob_set(h.e, SP_KNOB_MAX_PAGE_SHARING, 10), 0);
		h_map(&h, 0, counts[c], vals);
		/* Leftovers pair up a pass later when a dup fills mid-pass. */
		h_passes(&h, 4);
		expect_ksm_count(&h, counts[c], 10);
		h_check(&h);
		h_fini(&h);
		free(vals);
	}
}

/* ---- zero pages --------------------------------------------------------- */

static void write_zero(struct h *h, unsigned i, unsigned p)
{
	static const unsigned char z[PS];

	assert_int_equal(sp_sim_write(h->sim, h->sp[i], BASE + p * PS, z, PS), 0);
}

static void test_zero_pages(void **state)
{
	struct h h;
	struct sp_stats st;
	struct sp_space_stats ss;
	enum { N = 16 };

	(void)state;
	h_init(&h, 1);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_USE_ZERO_PAGES, 1), 0);
	h_map(&h, 0, N, NULL);
	for (unsigned p = 0; p < N; p++)
		write_zero(&h, 0, p);		/* zero-filled, but real frames */
	h_passes(&h, 2);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 0);
	assert_int_equal(st.pages_sharing, 0);
	assert_int_equal(st.ksm_zero_pages, N);
	sp_space_stats_get(h.e, h.s[0], &ss);
	assert_int_equal(ss.zero_pages, N);
	for (unsigned p = 0; p < N; p++)
		assert_int_equal(h_frame(&h, 0, p), 0);	/* frames released */
	h_check(&h);

	/* MADV_UNMERGEABLE on half: private zero frames, the count halves
	 * (sp_unmerge alone would keep them registered, and the next pass
	 * would release them again). */
	assert_int_equal(sp_unregister(h.e, h.s[0], BASE, N / 2 * PS), 0);
	st = h_stats(&h);
	assert_int_equal(st.ksm_zero_pages, N / 2);
	assert_int_not_equal(h_frame(&h, 0, 0), 0);
	h_check(&h);

	/* Write to the rest: after a pass, none is counted any more. */
	for (unsigned p = N / 2; p < N; p++)
		h_write(&h, 0, p, 1000 + p);
	h_passes(&h, 1);
	st = h_stats(&h);
	assert_int_equal(st.ksm_zero_pages, 0);
	for (unsigned p = N / 2; p < N; p++)
		assert_true(h_is(&h, 0, p, 1000 + p));
	h_check(&h);
	h_fini(&h);
}

static void test_zero_pages_off(void **state)
{
	struct h h;
	struct sp_stats st;
	struct sp_space_stats ss;
	struct sp_sim_counts c;

	(void)state;
	h_init(&h, 1);
	h_map(&h, 0, 8, NULL);
	for (unsigned p = 0; p < 8; p++)
		write_zero(&h, 0, p);
	h_passes(&h, 2);
	st = h_stats(&h);
	/* Without use_zero_pages, zero pages merge with each other, as
	 * KSM counts it: one shared, the rest sharing. */
	assert_int_equal(st.pages_shared, 1);
	assert_int_equal(st.pages_sharing, 7);
	assert_int_equal(st.ksm_zero_pages, 0);
	assert_int_equal(st.zero_merged, 8);
	assert_int_equal(st.pages_unshared, 0);
	sp_space_stats_get(h.e, h.s[0], &ss);
	assert_int_equal(ss.merging_pages, 8);
	assert_int_equal(ss.zero_pages, 0);
	/* But the kernel's zero page stands for the stable page: no frame
	 * at all, and no stable page made. */
	for (unsigned p = 0; p < 8; p++)
		assert_int_equal(h_frame(&h, 0, p), 0);
	sp_sim_counts(h.sim, &c);
	assert_int_equal(c.stable_frames, 0);
	/* Shared content: the sharing limit is fixed now, as in KSM. */
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_MAX_PAGE_SHARING, 10),
			 -EBUSY);
	h_check(&h);

	/* A write leaves the group; the rest stay merged. */
	h_write(&h, 0, 3, 77);
	h_passes(&h, 1);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 1);
	assert_int_equal(st.pages_sharing, 6);
	assert_true(h_is(&h, 0, 3, 77));
	h_check(&h);

	/* Switching use_zero_pages on changes only later merges. */
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_USE_ZERO_PAGES, 1), 0);
	write_zero(&h, 0, 3);
	h_passes(&h, 2);
	st = h_stats(&h);
	assert_int_equal(st.zero_merged, 7);
	assert_int_equal(st.ksm_zero_pages, 1);
	h_check(&h);

	/* Unmerging gives every page a private frame back. */
	assert_int_equal(sp_unregister(h.e, h.s[0], BASE, 8 * PS), 0);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared + st.pages_sharing, 0);
	assert_int_equal(st.ksm_zero_pages + st.zero_merged, 0);
	for (unsigned p = 0; p < 8; p++)
		assert_int_not_equal(h_frame(&h, 0, p), 0);
	h_check(&h);
	h_fini(&h);
}

/* As KSM, a page equal to content already merged joins it at its first
 * look, changed or new: only pairing in the unstable tree waits for a
 * second look with the same checksum. */
static void test_stable_first(void **state)
{
	struct h h;
	struct sp_stats st;

	(void)state;
	h_init(&h, 1);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_SMART_SCAN, 0), 0);
	h_map(&h, 0, 16, NULL);
	for (unsigned p = 0; p < 8; p++)
		h_write(&h, 0, p, p < 2 ? 5 : 600 + p);
	for (unsigned p = 2; p < 4; p++)
		write_zero(&h, 0, p);
	h_passes(&h, 2);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 2);	/* content 5, and zeros */
	assert_int_equal(st.pages_sharing, 2);
	h_check(&h);

	/* Changed pages: one becomes content 5, one zero-filled. */
	h_write(&h, 0, 4, 5);
	write_zero(&h, 0, 5);
	/* New pages (their first look): the same. */
	h_write(&h, 0, 8, 5);
	write_zero(&h, 0, 9);
	/* And content 6 twice: it waits for a second look. */
	h_write(&h, 0, 10, 6);
	h_write(&h, 0, 11, 6);
	h_passes(&h, 1);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 2);
	assert_int_equal(st.pages_sharing, 6);
	assert_int_equal(st.zero_merged, 4);
	assert_int_equal(h_frame(&h, 0, 4), h_frame(&h, 0, 0));
	assert_int_equal(h_frame(&h, 0, 8), h_frame(&h, 0, 0));
	assert_int_equal(h_frame(&h, 0, 5), 0);
	assert_int_equal(h_frame(&h, 0, 9), 0);
	assert_int_not_equal(h_frame(&h, 0, 10), h_frame(&h, 0, 11));
	h_check(&h);
	h_passes(&h, 1);
	assert_int_equal(h_frame(&h, 0, 10), h_frame(&h, 0, 11));
	for (unsigned p = 0; p < 12; p++)
		assert_true(p == 2 || p == 3 || p == 5 || p == 9 ||
			    h_is(&h, 0, p, p < 2 || p == 4 || p == 8 ? 5 :
					   p >= 10 ? 6 : 600 + p));
	h_check(&h);
	h_fini(&h);
}

/* KSM's dups for zero-filled content: one shared per max_page_sharing;
 * and, as KSM, a lone zero-filled page has nothing to merge with. */
static void test_zero_pages_off_sharing(void **state)
{
	struct h h;
	struct sp_stats st;

	(void)state;
	h_init(&h, 1);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_MAX_PAGE_SHARING, 4), 0);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_SMART_SCAN, 0), 0);
	h_map(&h, 0, 12, NULL);
	for (unsigned p = 0; p < 12; p++)
		h_write(&h, 0, p, 500 + p);
	write_zero(&h, 0, 5);
	h_passes(&h, 3);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared + st.pages_sharing, 0);
	assert_int_equal(st.zero_merged, 0);
	assert_int_not_equal(h_frame(&h, 0, 5), 0);
	h_check(&h);

	for (unsigned p = 0; p < 10; p++)
		write_zero(&h, 0, p);
	h_passes(&h, 2);
	st = h_stats(&h);
	assert_int_equal(st.zero_merged, 10);
	assert_int_equal(st.pages_shared, 3);	/* 4 + 4 + 2 */
	assert_int_equal(st.pages_sharing, 7);
	assert_true(h_is(&h, 0, 10, 510) && h_is(&h, 0, 11, 511));
	h_check(&h);
	h_fini(&h);
}

/* ---- smart scan ----------------------------------------------------------- */

static void test_smart_scan(void **state)
{
	struct h h;
	uint64_t vals[2] = { 1, 2 };
	uint64_t skipped = 0, passes = 30;
	struct sp_stats st;

	(void)state;
	h_init(&h, 1);
	h_map(&h, 0, 2, vals);	/* two pages that never match */
	h_passes(&h, passes);
	st = h_stats(&h);
	/* KSM's selftest: a page that never merges is skipped in at least
	 * half of the passes once it has aged. */
	assert_true(st.pages_skipped >= passes);	/* 2 pages, >= 50% */
	skipped = st.pages_skipped;

	/* Make page 1 equal page 0: they merge once both are scanned. */
	h_write(&h, 0, 1, 1);
	for (unsigned k = 0; k < 20 && h_stats(&h).pages_sharing == 0; k++)
		h_passes(&h, 1);
	st = h_stats(&h);
	assert_int_equal(st.pages_sharing, 1);
	assert_true(st.pages_skipped > skipped);

	/* The reset: a merge restarts the age, so after page 1 is written
	 * again, its next passes are scans, not skips. */
	h_write(&h, 0, 1, 77);
	skipped = h_stats(&h).pages_skipped;
	h_passes(&h, 3);
	assert_int_equal(h_stats(&h).pages_skipped, skipped);
	h_check(&h);
	h_fini(&h);
}

static void test_smart_scan_off(void **state)
{
	struct h h;
	uint64_t vals[2] = { 1, 2 };

	(void)state;
	h_init(&h, 1);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_SMART_SCAN, 0), 0);
	h_map(&h, 0, 2, vals);
	h_passes(&h, 20);
	assert_int_equal(h_stats(&h).pages_skipped, 0);
	assert_int_equal(h_stats(&h).pages_scanned, 40);
	h_check(&h);
	h_fini(&h);
}

/* ---- unmerge --------------------------------------------------------------- */

static void test_unmerge_restores_private_frames(void **state)
{
	struct h h;
	uint64_t vals[6] = { 4, 4, 4, 7, 7, 8 };
	struct sp_stats st;
	struct sp_sim_counts c;

	(void)state;
	h_init(&h, 2);
	h_map(&h, 0, 6, vals);
	h_map(&h, 1, 6, vals);
	h_passes(&h, 2);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 3);	/* 4, 7 and 8 */
	assert_int_equal(st.pages_sharing, 12 - 3);
	assert_int_equal(sp_unmerge(h.e, h.s[0], BASE, 6 * PS), 0);
	assert_int_equal(distinct_frames(&h, 0, 6), 6);
	for (unsigned p = 0; p < 6; p++) {
		assert_false(sp_sim_frame_is_stable(h.sim, h_frame(&h, 0, p)));
		assert_true(h_is(&h, 0, p, vals[p]));
		assert_int_not_equal(h_frame(&h, 0, p), h_frame(&h, 1, p));
	}
	st = h_stats(&h);
	/* Space 1 still merged: 4 x3, 7 x2 on two stable pages; 8 alone. */
	assert_int_equal(st.pages_shared, 3);
	assert_int_equal(st.pages_sharing, 3);
	h_check(&h);
	/* Unmerge everything (run=2): no stable page remains. */
	assert_int_equal(sp_unmerge_all(h.e), 0);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared + st.pages_sharing, 0);
	assert_int_equal(st.full_scans, 0);
	assert_int_equal(st.rmap_items, 0);
	sp_sim_counts(h.sim, &c);
	assert_int_equal(c.stable_frames, 0);
	assert_int_equal(c.frames, 12);
	h_check(&h);
	/* Ranges stay registered: merging resumes. */
	h_passes(&h, 2);
	assert_int_equal(h_stats(&h).pages_sharing, 9);
	h_check(&h);
	h_fini(&h);
}

static void test_unregister(void **state)
{
	struct h h;
	uint64_t vals[4] = { 2, 2, 2, 2 };
	struct sp_space_stats ss;

	(void)state;
	h_init(&h, 1);
	h_map(&h, 0, 4, vals);
	h_passes(&h, 2);
	assert_int_equal(h_stats(&h).pages_sharing, 3);
	/* Unregister the middle: unmerged, and never merged again. */
	assert_int_equal(sp_unregister(h.e, h.s[0], BASE + PS, 2 * PS), 0);
	sp_space_stats_get(h.e, h.s[0], &ss);
	assert_int_equal(ss.registered_pages, 2);
	assert_int_equal(ss.merging_pages, 2);
	h_passes(&h, 3);
	assert_false(sp_sim_frame_is_stable(h.sim, h_frame(&h, 0, 1)));
	assert_false(sp_sim_frame_is_stable(h.sim, h_frame(&h, 0, 2)));
	assert_int_equal(h_stats(&h).pages_sharing, 1);
	/* A range never registered: a successful no-op. */
	assert_int_equal(sp_unregister(h.e, h.s[0], BASE + PS, PS), 0);
	h_check(&h);
	h_fini(&h);
}

/* ---- registration ------------------------------------------------------------ */

static void test_registration_validation(void **state)
{
	struct h h;
	struct sp_space_stats ss;

	(void)state;
	h_init(&h, 1);
	assert_int_equal(sp_sim_map(h.sim, h.sp[0], BASE, 8 * PS, SP_SIM_PRIVATE), 0);
	assert_int_equal(sp_sim_map(h.sim, h.sp[0], BASE + 12 * PS, 4 * PS,
				    SP_SIM_SHARED), 0);
	assert_int_equal(sp_sim_map(h.sim, h.sp[0], BASE + 16 * PS, 4 * PS,
				    SP_SIM_PRIVATE), 0);
	/* Bad arguments: EINVAL, nothing registered. */
	assert_int_equal(sp_register(h.e, h.s[0], BASE + 1, PS), -EINVAL);
	assert_int_equal(sp_register(h.e, h.s[0], UINTPTR_MAX & ~(PS - 1), 2 * PS),
			 -EINVAL);
	assert_int_equal(sp_register(h.e, h.s[0], BASE, SIZE_MAX), -EINVAL);
	assert_int_equal(sp_register(h.e, h.s[0], BASE, 0), 0);
	sp_space_stats_get(h.e, h.s[0], &ss);
	assert_int_equal(ss.registered_pages, 0);
	/* Overlapping registrations coalesce; len rounds up to pages. */
	assert_int_equal(sp_register(h.e, h.s[0], BASE, 3 * PS + 1), 0);
	assert_int_equal(sp_register(h.e, h.s[0], BASE + 2 * PS, 4 * PS), 0);
	sp_space_stats_get(h.e, h.s[0], &ss);
	assert_int_equal(ss.registered_pages, 6);
	/* A hole: ENOMEM, but the mapped parts are registered; the shared
	 * mapping is left out silently. */
	assert_int_equal(sp_register(h.e, h.s[0], BASE, 20 * PS), -ENOMEM);
	sp_space_stats_get(h.e, h.s[0], &ss);
	assert_int_equal(ss.registered_pages, 8 + 4);
	/* Unregistering the middle splits the range. */
	assert_int_equal(sp_unregister(h.e, h.s[0], BASE + 2 * PS, 2 * PS), 0);
	sp_space_stats_get(h.e, h.s[0], &ss);
	assert_int_equal(ss.registered_pages, 10);
	/* Unregistering across the hole: ENOMEM after doing the rest. */
	assert_int_equal(sp_unregister(h.e, h.s[0], BASE, 20 * PS), -ENOMEM);
	sp_space_stats_get(h.e, h.s[0], &ss);
	assert_int_equal(ss.registered_pages, 0);
	assert_int_equal(sp_unregister(h.e, h.s[0], BASE + 3, PS), -EINVAL);
	h_check(&h);
	h_fini(&h);
}

static void test_knobs(void **state)
{
	struct h h;
	uint64_t vals[2] = { 1, 1 }, v;
	enum sp_knob k;

	(void)state;
	h_init(&h, 1);
	assert_int_equal(sp_knob_get(h.e, SP_KNOB_PAGES_TO_SCAN, &v), 0);
	assert_int_equal(v, 100);
	assert_int_equal(sp_knob_get(h.e, SP_KNOB_SLEEP_MILLISECS, &v), 0);
	assert_int_equal(v, 20);
	assert_int_equal(sp_knob_get(h.e, SP_KNOB_MAX_PAGE_SHARING, &v), 0);
	assert_int_equal(v, 256);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_MAX_PAGE_SHARING, 1), -EINVAL);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_USE_ZERO_PAGES, 2), -EINVAL);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_SMART_SCAN, 7), -EINVAL);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_COUNT, 1), -EINVAL);
	assert_int_equal(sp_knob_get(h.e, SP_KNOB_MAX_PAGE_SHARING, &v), 0);
	assert_int_equal(v, 256);	/* unchanged by the failures */
	assert_int_equal(sp_knob_lookup("sleep_millisecs", &k), 0);
	assert_int_equal(k, SP_KNOB_SLEEP_MILLISECS);
	assert_int_equal(sp_knob_lookup("nope", &k), -EINVAL);
	assert_string_equal(sp_knob_name(SP_KNOB_SMART_SCAN), "smart_scan");
	assert_null(sp_knob_name(SP_KNOB_COUNT));
	/* max_page_sharing is fixed while stable pages exist. */
	h_map(&h, 0, 2, vals);
	h_passes(&h, 2);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_MAX_PAGE_SHARING, 10), -EBUSY);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_MAX_PAGE_SHARING, 256), 0);
	assert_int_equal(sp_unmerge_all(h.e), 0);
	assert_int_equal(sp_knob_set(h.e, SP_KNOB_MAX_PAGE_SHARING, 10), 0);
	h_check(&h);
	h_fini(&h);
}

/* ---- the scan's batching and pass boundaries ---------------------------- */

static void test_scan_budget(void **state)
{
	struct h h;
	uint64_t *vals = same_vals(300, 0);
	struct sp_stats st;
	int ret, calls = 0;

	(void)state;
	for (unsigned p = 0; p < 300; p++)
		vals[p] = p + 1;
	h_init(&h, 1);
	assert_int_equal(sp_scan(h.e, 100), 0);	/* nothing registered */
	h_map(&h, 0, 300, vals);
	while ((ret = sp_scan(h.e, 100)) > 0) {
		calls++;
		st = h_stats(&h);
		assert_true(st.pages_scanned <= (uint64_t)calls * 100);
		assert_int_equal(st.full_scans, 0);
	}
	assert_int_equal(ret, 0);
	st = h_stats(&h);
	assert_int_equal(st.full_scans, 1);
	assert_int_equal(st.pages_scanned, 300);
	assert_true(calls >= 2);
	h_check(&h);
	h_fini(&h);
	free(vals);
}

/* Contiguous duplicates merge as runs: one replace per run, and stable
 * pages laid out in virtual order so that a third copy joins as a run. */
static void test_runs(void **state)
{
	struct h h;
	uint64_t vals[128];
	struct sp_stats st;
	uint64_t calls;

	(void)state;
	for (unsigned p = 0; p < 128; p++)
		vals[p] = 1000 + p;
	h_init(&h, 3);
	h_map(&h, 0, 128, vals);
	h_map(&h, 1, 128, vals);
	h_passes(&h, 2);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 128);
	assert_int_equal(st.pages_sharing, 128);
	/* Two replaces (one per side) per window of pairs. */
	assert_true(st.replace_calls <= 4);
	for (unsigned p = 1; p < 128; p++)
		assert_int_equal(h_frame(&h, 0, p), h_frame(&h, 1, p));
	calls = st.replace_calls;
	h_map(&h, 2, 128, vals);
	h_passes(&h, 2);
	st = h_stats(&h);
	assert_int_equal(st.pages_sharing, 256);
	assert_true(st.replace_calls - calls <= 2);
	h_check(&h);
	h_fini(&h);
}

/* ---- spaces come and go ---------------------------------------------------- */

static void test_space_remove_and_forget(void **state)
{
	struct h h;
	uint64_t vals[4] = { 6, 6, 6, 6 };
	struct sp_stats st;

	(void)state;
	h_init(&h, 2);
	h_map(&h, 0, 4, vals);
	h_map(&h, 1, 4, vals);
	h_passes(&h, 2);
	assert_int_equal(h_stats(&h).pages_sharing, 7);
	/* Space 0 exits: its memory goes, then the engine forgets it. */
	sp_sim_space_free(h.sim, h.sp[0]);
	sp_space_remove(h.e, h.s[0]);
	st = h_stats(&h);
	assert_int_equal(st.pages_shared, 1);
	assert_int_equal(st.pages_sharing, 3);
	for (unsigned p = 0; p < 4; p++)
		assert_true(h_is(&h, 1, p, 6));
	h_check(&h);
	/* Space 1 unmaps half: forget drops those sharers. */
	assert_int_equal(sp_sim_unmap(h.sim, h.sp[1], BASE, 2 * PS), 0);
	assert_int_equal(sp_forget(h.e, h.s[1], BASE, 2 * PS), 0);
	st = h_stats(&h);
	assert_int_equal(st.pages_sharing, 1);
	h_check(&h);
	/* Keep scanning: the removed space is not touched again. */
	h_passes(&h, 2);
	h_check(&h);
	h.sp[0] = h.sp[1];
	h.s[0] = h.s[1];
	h.nspace = 1;
	h_fini(&h);
}

/* ---- backend failures never leave a trace ----------------------------------- */

static void test_backend_failures(void **state)
{
	static const char *const ops[] = { "replace", "stable_alloc",
					   "stable_write", "protect", "state",
					   "zap" };

	(void)state;
	for (unsigned k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
		struct h h;
		uint64_t vals[4] = { 5, 5, 0, 0 };
		struct sp_stats st;

		h_init(&h, 1);
		assert_int_equal(sp_knob_set(h.e, SP_KNOB_USE_ZERO_PAGES, 1), 0);
		h_map(&h, 0, 4, vals);
		write_zero(&h, 0, 2);
		write_zero(&h, 0, 3);
		h_passes(&h, 1);
		sp_sim_fault_next(h.sim, ops[k], -ENOMEM);
		h_passes(&h, 1);
		h_check(&h);
		for (unsigned p = 0; p < 2; p++)
			assert_true(h_is(&h, 0, p, 5));
		/* The next pass merges what the failure held back. */
		h_passes(&h, 2);
		st = h_stats(&h);
		assert_int_equal(st.pages_sharing, 1);
		assert_int_equal(st.ksm_zero_pages, 2);
		h_check(&h);
		/* And unmerge failures return the error, consistently. */
		sp_sim_fault_next(h.sim, "unmerge", -ENOMEM);
		assert_int_equal(sp_unmerge(h.e, h.s[0], BASE, 4 * PS), -ENOMEM);
		h_check(&h);
		assert_int_equal(sp_unmerge(h.e, h.s[0], BASE, 4 * PS), 0);
		h_check(&h);
		h_fini(&h);
	}
}

/* ---- a write racing the merge is never lost ---------------------------------- */

struct race {
	struct h *h;
	const char *op;		/* inject at this op */
	unsigned page;
	uint64_t val;
	unsigned fired;
};

static void race_inject(struct sp_sim *sim, const char *op, void *arg)
{
	struct race *r = arg;
	unsigned char buf[PS];

	(void)sim;
	if (r->fired || strcmp(op, r->op))
		return;
	r->fired = 1;
	h_fill(buf, r->val);
	sp_sim_write(r->h->sim, r->h->sp[0], BASE + r->page * PS, buf, PS);
}

static void test_write_racing_merge(void **state)
{
	static const char *const ops[] = { "state", "hash", "peek",
					   "protect", "replace", "unprotect",
					   "stable_alloc", "stable_write" };

	(void)state;
	for (unsigned k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
		for (unsigned page = 0; page < 2; page++) {
			struct h h;
			uint64_t vals[2] = { 5, 5 };
			struct race r = { &h, ops[k], page, 77, 0 };

			h_init(&h, 1);
			h_map(&h, 0, 2, vals);
			h_passes(&h, 1);
			/* The write fires during the merging pass. */
			sp_sim_set_injector(h.sim, race_inject, &r);
			h_passes(&h, 1);
			sp_sim_set_injector(h.sim, NULL, NULL);
			assert_true(r.fired);
			assert_true(h_is(&h, 0, page, 77));
			assert_true(h_is(&h, 0, !page, 5));
			/* Page 1's bytes are copied (its partner is in the
			 * unstable tree) after its hash was read: a write
			 * between the two makes it volatile, not merged. */
			assert_int_equal(h_stats(&h).keys_changed,
					 !strcmp(ops[k], "peek") && page == 1);
			h_check(&h);
			h_passes(&h, 2);
			assert_true(h_is(&h, 0, page, 77));
			assert_true(h_is(&h, 0, !page, 5));
			h_check(&h);
			h_fini(&h);
		}
}

/* ---- a page's bytes are copied only when something could equal it ------- */

static void lazy_keys(const struct sp_backend_ops *ops)
{
	struct h h;
	uint64_t vals[6] = { 11, 12, 13, 14, 15, 15 };
	struct sp_stats st;

	h_init_ops(&h, 1, ops);
	h_map(&h, 0, 6, vals);
	h_passes(&h, 2);
	st = h_stats(&h);
	/* The first copy of 15 merges with the second, as always. */
	assert_int_equal(h_frame(&h, 0, 4), h_frame(&h, 0, 5));
	assert_int_equal(st.pages_shared, 1);
	assert_int_equal(st.pages_sharing, 1);
	assert_int_equal(st.pages_unshared, 4);
	assert_true(h_is(&h, 0, 4, 15) && h_is(&h, 0, 5, 15));
	/* With the hash op, pages nothing could equal (11-14, and the
	 * first 15) were decided on their hash; only the second 15 was
	 * copied.  Without it, every page was. */
	assert_int_equal(st.keys_skipped, ops->hash ? 5 : 0);
	assert_int_equal(st.keys_changed, 0);
	h_check(&h);
	h_fini(&h);
}

static void test_lazy_keys(void **state)
{
	(void)state;
	lazy_keys(&sp_sim_ops);
	lazy_keys(h_ops_nohash());
}

/* ---- first looks are hinted to the backend, once ------------------------ */

static struct {
	unsigned calls, pages;
	uintptr_t addr[64];
	uint64_t hash[64];
} hints;

static int record_hint(void *be, void *space, size_t n, const uintptr_t *addr,
		       const uint64_t *hash, const uint8_t *how,
		       sp_spage_t *out)
{
	(void)be;
	(void)space;
	hints.calls++;
	for (size_t i = 0; i < n; i++) {
		out[i] = SP_SPAGE_NONE;
		if (!(how[i] & SP_LOOK_FIRST))
			continue;
		assert_true(hints.pages < 64);
		hints.addr[hints.pages] = addr[i];
		hints.hash[hints.pages++] = hash[i];
	}
	return 0;
}

/* Every page is hinted at its first look, with the hash of its bytes,
 * and never again while it keeps its record: not at its second look
 * (nor when it merges then), not when written later. */
static void test_first_look_hints(void **state)
{
	static struct sp_backend_ops ops;
	uint64_t vals[6] = { 4, 4, 7, 8, 8, 9 };
	uint8_t page[PS];
	struct h h;

	(void)state;
	ops = sp_sim_ops;
	ops.look = record_hint;
	memset(&hints, 0, sizeof(hints));
	h_init_ops(&h, 1, &ops);
	h_map(&h, 0, 6, vals);
	h_passes(&h, 1);
	assert_int_equal(hints.calls, 1);	/* one window */
	assert_int_equal(hints.pages, 6);
	for (unsigned k = 0; k < 6; k++) {
		assert_int_equal(hints.addr[k], BASE + k * PS);
		h_fill(page, vals[k]);
		assert_int_equal(hints.hash[k], sp_hash_page(page));
	}
	h_passes(&h, 1);
	assert_int_equal(h_stats(&h).pages_sharing, 2);	/* merged now */
	h_write(&h, 0, 5, 10);
	h_passes(&h, 2);
	assert_int_equal(hints.pages, 6);
	h_check(&h);
	h_fini(&h);
}

/* ---- pinned pages are never replaced ------------------------------------- */

static void test_pinned_pages(void **state)
{
	struct h h;
	uint64_t vals[4] = { 3, 3, 3, 3 };
	sp_frame_t pinned;
	struct sp_stats st;

	(void)state;
	h_init(&h, 1);
	h_map(&h, 0, 4, vals);
	assert_int_equal(sp_sim_pin(h.sim, h.sp[0], BASE + PS, &pinned), 0);
	h_passes(&h, 3);
	st = h_stats(&h);
	/* The three unpinned pages merge; the pinned one keeps its frame. */
	assert_int_equal(st.pages_shared, 1);
	assert_int_equal(st.pages_sharing, 2);
	assert_true(st.pages_refused > 0);
	assert_int_equal(h_frame(&h, 0, 1), pinned);
	/* A device write into the pinned frame is seen by the program. */
	assert_int_equal(sp_sim_dma_write(h.sim, pinned, 0, "DMA!", 4), 0);
	{
		char got[4];

		sp_sim_read(h.sim, h.sp[0], BASE + PS, got, 4);
		assert_memory_equal(got, "DMA!", 4);
	}
	/* Unpinned, it merges like the others. */
	sp_sim_unpin(h.sim, pinned);
	h_write(&h, 0, 1, 3);
	h_passes(&h, 3);
	assert_int_equal(h_stats(&h).pages_sharing, 3);
	h_check(&h);
	h_fini(&h);
}

/* ---- discard keeps the registration; ranges lists it ---------------------- */

static void collect(void *arg, uintptr_t a, uintptr_t b)
{
	uintptr_t *out = arg;

	while (*out)
		out += 2;
	out[0] = a;
	out[1] = b;
}

static void test_discard_and_ranges(void **state)
{
	struct h h;
	uint64_t vals[8] = { 4, 4, 4, 4, 4, 4, 4, 4 };
	uintptr_t got[8] = { 0 };
	struct sp_space_stats ss;

	(void)state;
	h_init(&h, 1);
	h_map(&h, 0, 8, vals);
	h_passes(&h, 2);
	assert_int_equal(h_stats(&h).pages_sharing, 7);
	/* MADV_DONTNEED on two merged pages: memory first, then engine. */
	assert_int_equal(sp_sim_discard(h.sim, h.sp[0], BASE + 2 * PS, 2 * PS), 0);
	assert_int_equal(sp_discard(h.e, h.s[0], BASE + 2 * PS, 2 * PS), 0);
	assert_int_equal(h_stats(&h).pages_sharing, 5);
	assert_true(h_is(&h, 0, 1, 4));
	sp_space_stats_get(h.e, h.s[0], &ss);
	assert_int_equal(ss.registered_pages, 8);	/* still registered */
	/* Written again with the same value, they merge again. */
	h_write(&h, 0, 2, 4);
	h_write(&h, 0, 3, 4);
	h_passes(&h, 2);
	assert_int_equal(h_stats(&h).pages_sharing, 7);
	h_check(&h);
	/* Ranges: split the registration, then list it. */
	assert_int_equal(sp_unregister(h.e, h.s[0], BASE + 3 * PS, PS), 0);
	assert_int_equal(sp_ranges(h.e, h.s[0], BASE, 16 * PS, collect, got), 0);
	assert_int_equal(got[0], BASE);
	assert_int_equal(got[1], BASE + 3 * PS);
	assert_int_equal(got[2], BASE + 4 * PS);
	assert_int_equal(got[3], BASE + 8 * PS);
	assert_int_equal(got[4], 0);
	assert_int_equal(sp_ranges(h.e, h.s[0], BASE + 1, PS, collect, got),
			 -EINVAL);
	h_check(&h);
	h_fini(&h);
}

/*
 * Two engines (two processes) over a shared store: content each holds
 * once is found in the other only, and merges there through lookup in
 * the passes design.md promises: nominated on the first engine's second
 * pass, uploaded on the other's, named on the first's third.  A write
 * then breaks only the writer's mapping, and the store page lives while
 * the other maps it.
 */
static void test_shared_store_across_engines(void **state)
{
	struct sp_engine_config cfg = { .ops = &sp_sim_shared_ops };
	uint64_t vals[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	struct sp_sim_space *sp2;
	struct sp_space *s2;
	struct sp_engine *e2;
	struct sp_sim_counts c;
	struct sp_space_stats ss;
	char why[256];
	struct h h;

	(void)state;
	h_init_ops(&h, 1, &sp_sim_shared_ops);
	cfg.be = h.sim;
	assert_int_equal(sp_engine_new(&cfg, &e2), 0);
	assert_int_equal(sp_sim_space_new(h.sim, &sp2), 0);
	assert_int_equal(sp_space_add(e2, sp2, &s2), 0);
	h_map(&h, 0, 8, vals);
	assert_int_equal(sp_sim_map(h.sim, sp2, BASE, 8 * PS, SP_SIM_PRIVATE),
			 0);
	for (unsigned k = 0; k < 8; k++) {
		unsigned char page[PS];

		h_fill(page, vals[k]);
		assert_int_equal(sp_sim_write(h.sim, sp2, BASE + k * PS, page,
					      PS), 0);
	}
	assert_int_equal(sp_register(e2, s2, BASE, 8 * PS), 0);

	for (unsigned round = 0; round < 2; round++) {
		h_passes(&h, 1);
		while (sp_scan(e2, 1000) > 0)
			;
		for (unsigned k = 0; k < 8; k++)
			assert_true(sp_sim_frame_of(h.sim, sp2, BASE + k * PS) !=
				    h_frame(&h, 0, k));
	}
	sp_sim_counts(h.sim, &c);
	assert_int_equal(c.nominations, 8);	/* the first's second pass */
	assert_int_equal(c.uploads, 8);		/* the other's second */
	h_passes(&h, 1);			/* the first's third */
	for (unsigned k = 0; k < 8; k++) {
		sp_frame_t f = h_frame(&h, 0, k);

		assert_true(sp_sim_frame_is_stable(h.sim, f));
		assert_int_equal(sp_sim_frame_of(h.sim, sp2, BASE + k * PS), f);
		assert_true(h_is(&h, 0, k, vals[k]));
	}
	sp_sim_counts(h.sim, &c);
	assert_int_equal(c.shared_frames, 8);
	assert_int_equal(c.uploads, 8);
	sp_space_stats_get(e2, s2, &ss);
	assert_int_equal(ss.merging_pages, 8);
	assert_int_equal(h_stats(&h).pages_shared, 0);	/* no node here */

	/* A write breaks the writer's mapping only. */
	h_write(&h, 0, 0, 99);
	h_passes(&h, 1);
	assert_true(h_is(&h, 0, 0, 99));
	assert_false(sp_sim_frame_is_stable(h.sim, h_frame(&h, 0, 0)));
	assert_true(sp_sim_frame_is_stable(h.sim,
					   sp_sim_frame_of(h.sim, sp2, BASE)));
	sp_sim_counts(h.sim, &c);
	assert_int_equal(c.shared_frames, 8);
	assert_int_equal(sp_engine_verify(e2, why, sizeof(why)), 0);
	h_check(&h);

	/* The other process goes: its references come back, and the page
	 * that only it mapped is freed. */
	sp_sim_space_free(h.sim, sp2);
	sp_space_remove(e2, s2);
	sp_engine_free(e2);
	sp_sim_counts(h.sim, &c);
	assert_int_equal(c.shared_frames, 7);
	h_check(&h);
	h_fini(&h);
}

/* A process of its own over @h's simulator (an engine, a space), with
 * @n pages at BASE holding vals[k], registered. */
struct proc {
	struct sp_engine *e;
	struct sp_sim_space *sp;
	struct sp_space *s;
};

static void proc_new(struct h *h, struct proc *p, unsigned n,
		     const uint64_t *vals)
{
	struct sp_engine_config cfg = { .ops = &sp_sim_shared_ops };

	cfg.be = h->sim;
	assert_int_equal(sp_engine_new(&cfg, &p->e), 0);
	assert_int_equal(sp_sim_space_new(h->sim, &p->sp), 0);
	assert_int_equal(sp_space_add(p->e, p->sp, &p->s), 0);
	assert_int_equal(sp_sim_map(h->sim, p->sp, BASE, n * PS,
				    SP_SIM_PRIVATE), 0);
	for (unsigned k = 0; k < n; k++) {
		unsigned char page[PS];

		h_fill(page, vals[k]);
		assert_int_equal(sp_sim_write(h->sim, p->sp, BASE + k * PS,
					      page, PS), 0);
	}
	assert_int_equal(sp_register(p->e, p->s, BASE, n * PS), 0);
}

static void proc_pass(struct proc *p)
{
	char why[256];

	while (sp_scan(p->e, 1000) > 0)
		;
	assert_int_equal(sp_engine_verify(p->e, why, sizeof(why)), 0);
}

static void proc_free(struct h *h, struct proc *p)
{
	sp_sim_space_free(h->sim, p->sp);
	sp_space_remove(p->e, p->s);
	sp_engine_free(p->e);
}

/*
 * A process that starts after others merged a content into the shared
 * store finds it at its first look, as KSM merges a page equal to a
 * stable page at its first look (ops->look, SP_LOOK_FIND): one pass,
 * not two.  So does a page rewritten with such content.  A content the
 * store does not hold still waits for its second look, and a first
 * look asks for nothing to be stored (no nomination, no upload).
 */
static void test_shared_first_look(void **state)
{
	uint64_t vals[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	uint64_t late[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 20, 21 };
	struct sp_sim_counts c0, c;
	struct sp_space_stats ss;
	struct proc p2, p3;
	struct h h;

	(void)state;
	h_init_ops(&h, 1, &sp_sim_shared_ops);
	h_map(&h, 0, 8, vals);
	proc_new(&h, &p2, 8, vals);
	for (unsigned round = 0; round < 3; round++) {
		h_passes(&h, 1);
		proc_pass(&p2);
	}
	for (unsigned k = 0; k < 8; k++)
		assert_int_equal(sp_sim_frame_of(h.sim, p2.sp, BASE + k * PS),
				 h_frame(&h, 0, k));

	sp_sim_counts(h.sim, &c0);
	proc_new(&h, &p3, 10, late);
	proc_pass(&p3);				/* its first pass */
	sp_sim_counts(h.sim, &c);
	assert_int_equal(c.look_named - c0.look_named, 8);
	assert_int_equal(c.nominations, c0.nominations);
	assert_int_equal(c.uploads, c0.uploads);
	for (unsigned k = 0; k < 8; k++) {
		assert_int_equal(sp_sim_frame_of(h.sim, p3.sp, BASE + k * PS),
				 h_frame(&h, 0, k));
		assert_true(h_is(&h, 0, k, vals[k]));
	}
	for (unsigned k = 8; k < 10; k++)
		assert_false(sp_sim_frame_is_stable(
			h.sim, sp_sim_frame_of(h.sim, p3.sp, BASE + k * PS)));
	sp_space_stats_get(p3.e, p3.s, &ss);
	assert_int_equal(ss.merging_pages, 8);

	/* Page 8 rewritten with stored content 3: it joins at the look that
	 * sees it changed.  Page 9 rewritten with content nobody holds:
	 * nothing yet. */
	{
		unsigned char page[PS];

		h_fill(page, 3);
		assert_int_equal(sp_sim_write(h.sim, p3.sp, BASE + 8 * PS,
					      page, PS), 0);
		h_fill(page, 30);
		assert_int_equal(sp_sim_write(h.sim, p3.sp, BASE + 9 * PS,
					      page, PS), 0);
	}
	proc_pass(&p3);
	assert_int_equal(sp_sim_frame_of(h.sim, p3.sp, BASE + 8 * PS),
			 h_frame(&h, 0, 2));
	assert_false(sp_sim_frame_is_stable(
		h.sim, sp_sim_frame_of(h.sim, p3.sp, BASE + 9 * PS)));
	sp_sim_counts(h.sim, &c);
	assert_int_equal(c.look_named - c0.look_named, 9);
	assert_int_equal(c.nominations, c0.nominations);

	/* The late process goes: its references come back, the store
	 * pages stay for the two that map them. */
	proc_free(&h, &p3);
	sp_sim_counts(h.sim, &c);
	assert_int_equal(c.shared_frames, 8);
	proc_free(&h, &p2);
	h_check(&h);
	h_fini(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_after_two_passes),
		cmocka_unit_test(test_shared_first_look),
		cmocka_unit_test(test_volatile_never_merges),
		cmocka_unit_test(test_write_after_merge),
		cmocka_unit_test(test_unmerge_by_writes),
		cmocka_unit_test(test_257th_sharer_starts_a_dup),
		cmocka_unit_test(test_small_limit),
		cmocka_unit_test(test_zero_pages),
		cmocka_unit_test(test_zero_pages_off),
		cmocka_unit_test(test_zero_pages_off_sharing),
		cmocka_unit_test(test_stable_first),
		cmocka_unit_test(test_smart_scan),
		cmocka_unit_test(test_smart_scan_off),
		cmocka_unit_test(test_unmerge_restores_private_frames),
		cmocka_unit_test(test_unregister),
		cmocka_unit_test(test_registration_validation),
		cmocka_unit_test(test_knobs),
		cmocka_unit_test(test_scan_budget),
		cmocka_unit_test(test_runs),
		cmocka_unit_test(test_space_remove_and_forget),
		cmocka_unit_test(test_backend_failures),
		cmocka_unit_test(test_write_racing_merge),
		cmocka_unit_test(test_lazy_keys),
		cmocka_unit_test(test_first_look_hints),
		cmocka_unit_test(test_pinned_pages),
		cmocka_unit_test(test_discard_and_ranges),
		cmocka_unit_test(test_shared_store_across_engines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
