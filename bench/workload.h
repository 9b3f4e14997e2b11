/*
 * workload.h - the recipe of bench/workload's memory, shared by the
 * workload (which fills and later verifies its pages from it) and
 * bench/ksm_compare (which derives from it how many pages must merge).
 *
 * A workload of P pages is laid out in sections, in this order:
 *
 *   same      identical across processes, distinct within one
 *   zero      zero-filled
 *   volatile  distinct; word 0 of each page is a generation counter that
 *             a thread of the workload bumps every few milliseconds, so
 *             no merger may ever merge them (their base content is the
 *             same in every process: only the rewriting keeps them
 *             apart)
 *   dup       page j is a copy of page j of the unique section (a
 *             duplicate inside the process)
 *   unique    distinct, and different in every process; with scatter K,
 *             every K-th page of it is instead identical across
 *             processes (a single duplicate among unique pages)
 *
 * Each page has a key; equal keys mean equal bytes, and the bytes are
 * made from the key alone (the workload keeps the recipe, not a copy).
 * Key 0 is the zero page.  Header-only: static inline, no library.
 */
#ifndef SP_BENCH_WORKLOAD_H
#define SP_BENCH_WORKLOAD_H

#include <stdint.h>
#include <string.h>

#define WL_PAGE 4096u

enum wl_kind { WL_SAME = 1, WL_VOL, WL_UNIQ, WL_SCAT };

struct wl_spec {
	uint64_t pages;		/* per process */
	double same, zero, vol, dup;	/* fractions of pages */
	unsigned scatter;	/* every K-th unique page identical (0: none) */
};

/* Section sizes, in pages, in layout order. */
struct wl_layout {
	uint64_t same, zero, vol, dup, uniq;
};

/* wl_layout - split @s->pages into sections.  Return: 0, or -1 if the
 * fractions do not fit (dup may not exceed what is left for unique). */
static inline int wl_layout(const struct wl_spec *s, struct wl_layout *l)
{
	uint64_t used;

	l->same = (uint64_t)(s->same * (double)s->pages + 0.5);
	l->zero = (uint64_t)(s->zero * (double)s->pages + 0.5);
	l->vol = (uint64_t)(s->vol * (double)s->pages + 0.5);
	l->dup = (uint64_t)(s->dup * (double)s->pages + 0.5);
	used = l->same + l->zero + l->vol + l->dup;
	if (used > s->pages)
		return -1;
	l->uniq = s->pages - used;
	return l->dup > l->uniq ? -1 : 0;
}

static inline uint64_t wl_mk(unsigned kind, unsigned proc, uint64_t j)
{
	return (uint64_t)kind << 56 | (uint64_t)(proc & 0xffff) << 40 |
	       (j & ((1ull << 40) - 1));
}

static inline uint64_t wl_uniq_key(const struct wl_spec *s, unsigned proc,
				   uint64_t j)
{
	if (s->scatter && j % s->scatter == s->scatter - 1)
		return wl_mk(WL_SCAT, 0, j);
	return wl_mk(WL_UNIQ, proc + 1, j);
}

/* wl_key - the key of page @i of process @proc (0-based).  *@vol is set
 * to whether the page is volatile. */
static inline uint64_t wl_key(const struct wl_spec *s,
			      const struct wl_layout *l, unsigned proc,
			      uint64_t i, int *vol)
{
	*vol = 0;
	if (i < l->same)
		return wl_mk(WL_SAME, 0, i);
	i -= l->same;
	if (i < l->zero)
		return 0;
	i -= l->zero;
	if (i < l->vol) {
		*vol = 1;
		return wl_mk(WL_VOL, 0, i);
	}
	i -= l->vol;
	if (i < l->dup)
		return wl_uniq_key(s, proc, i);
	i -= l->dup;
	return wl_uniq_key(s, proc, i);
}

/* wl_fill - the bytes of the page with key @key: zeros for key 0, else a
 * pseudo-random stream seeded by the key (no two keys alike). */
static inline void wl_fill(void *page, uint64_t key)
{
	uint64_t *w = page, x = key * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;

	if (!key) {
		memset(page, 0, WL_PAGE);
		return;
	}
	for (unsigned k = 0; k < WL_PAGE / 8; k++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		w[k] = z ^ (z >> 31);
	}
}

#endif
