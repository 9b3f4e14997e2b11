/*
 * harness.h - helpers shared by the engine tests: a simulator with an
 * engine over it, pages filled from a small alphabet of contents, and
 * checks that print both sides when they fail.
 */
#ifndef SP_TEST_HARNESS_H
#define SP_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "samepage.h"

#define PS SP_PAGE_SIZE
#define BASE ((uintptr_t)0x40000000)

struct h {
	struct sp_sim *sim;
	struct sp_engine *e;
	struct sp_sim_space *sp[8];
	struct sp_space *s[8];
	unsigned nspace;
};

/* A page whose every byte is @v (with @v in the first 8 bytes too, so
 * that pages of different values differ early). */
static inline void h_fill(void *page, uint64_t v)
{
	memset(page, (int)(v & 0xff) ^ 0x5a, PS);
	memcpy(page, &v, sizeof(v));
}

/* The simulator's ops without the optional hash op: the engine then
 * peeks (copies) every page it checksums. */
static inline const struct sp_backend_ops *h_ops_nohash(void)
{
	static struct sp_backend_ops ops;

	ops = sp_sim_ops;
	ops.hash = NULL;
	return &ops;
}

/* As h_init, with ops @ops over the simulator. */
static inline void h_init_ops(struct h *h, unsigned nspace,
			      const struct sp_backend_ops *ops)
{
	struct sp_engine_config cfg = { .ops = ops, .be = NULL };

	memset(h, 0, sizeof(*h));
	assert_int_equal(sp_sim_new(&h->sim), 0);
	cfg.be = h->sim;
	assert_int_equal(sp_engine_new(&cfg, &h->e), 0);
	for (unsigned i = 0; i < nspace; i++) {
		assert_int_equal(sp_sim_space_new(h->sim, &h->sp[i]), 0);
		assert_int_equal(sp_space_add(h->e, h->sp[i], &h->s[i]), 0);
	}
	h->nspace = nspace;
}

static inline void h_init(struct h *h, unsigned nspace)
{
	h_init_ops(h, nspace, &sp_sim_ops);
}

/* Map @n pages at BASE in space @i, give page k content vals[k] (0 means
 * leave it untouched), and register the range. */
static inline void h_map(struct h *h, unsigned i, unsigned n,
			 const uint64_t *vals)
{
	unsigned char page[PS];

	assert_int_equal(sp_sim_map(h->sim, h->sp[i], BASE, n * PS,
				    SP_SIM_PRIVATE), 0);
	for (unsigned k = 0; vals && k < n; k++) {
		if (!vals[k])
			continue;
		h_fill(page, vals[k]);
		assert_int_equal(sp_sim_write(h->sim, h->sp[i], BASE + k * PS,
					      page, PS), 0);
	}
	assert_int_equal(sp_register(h->e, h->s[i], BASE, n * PS), 0);
}

static inline void h_write(struct h *h, unsigned i, unsigned page,
			   uint64_t v)
{
	unsigned char buf[PS];

	h_fill(buf, v);
	assert_int_equal(sp_sim_write(h->sim, h->sp[i], BASE + page * PS, buf,
				      PS), 0);
}

/* Content check: page of space @i holds value @v. */
static inline int h_is(struct h *h, unsigned i, unsigned page, uint64_t v)
{
	unsigned char want[PS], got[PS];

	h_fill(want, v);
	assert_int_equal(sp_sim_read(h->sim, h->sp[i], BASE + page * PS, got,
				     PS), 0);
	return !memcmp(want, got, PS);
}

static inline sp_frame_t h_frame(struct h *h, unsigned i, unsigned page)
{
	return sp_sim_frame_of(h->sim, h->sp[i], BASE + page * PS);
}

/* Run full passes. */
static inline void h_passes(struct h *h, unsigned n)
{
	for (unsigned k = 0; k < n; k++)
		while (sp_scan(h->e, 1000) > 0)
			;
}

static inline struct sp_stats h_stats(struct h *h)
{
	struct sp_stats st;

	sp_stats_get(h->e, &st);
	return st;
}

/* Both the engine's recount and the simulator's must agree. */
static inline void h_check(struct h *h)
{
	char why[256] = "";
	int err = sp_engine_verify(h->e, why, sizeof(why));

	if (err)
		fail_msg("engine verify: %s", why);
	err = sp_sim_check(h->sim, why, sizeof(why));
	if (err)
		fail_msg("sim check: %s", why);
}

static inline void h_fini(struct h *h)
{
	struct sp_sim_counts c;

	for (unsigned i = 0; i < h->nspace; i++) {
		sp_sim_space_free(h->sim, h->sp[i]);
		sp_space_remove(h->e, h->s[i]);
	}
	/* Every frame gone: nothing leaked, not even a stable page. */
	sp_sim_counts(h->sim, &c);
	assert_int_equal(c.frames, 0);
	h_check(h);
	sp_engine_free(h->e);
	sp_sim_free(h->sim);
}

#endif
