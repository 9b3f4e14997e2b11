/*
 * test_sim.c - the simulated backend, checked directly through its ops:
 * copy-on-write, reference counts, queued writes on protected pages,
 * release-while-mapped detection, tagged content, probes and faults.
 * The engine tests trust these behaviours.
 */
#include <errno.h>

#include "harness.h"
#include "util/hash.h"

static struct sp_sim *sim;
static uint8_t held[16];
static struct sp_sim_space *a, *b;

static int setup(void **state)
{
	(void)state;
	if (sp_sim_new(&sim) || sp_sim_space_new(sim, &a) ||
	    sp_sim_space_new(sim, &b))
		return -1;
	if (sp_sim_map(sim, a, BASE, 8 * PS, SP_SIM_PRIVATE) ||
	    sp_sim_map(sim, b, BASE, 8 * PS, SP_SIM_PRIVATE))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	char why[200];

	(void)state;
	sp_sim_space_free(sim, a);
	sp_sim_space_free(sim, b);
	if (sp_sim_check(sim, why, sizeof(why)))
		fail_msg("%s", why);
	sp_sim_free(sim);
	return 0;
}

static void write_val(struct sp_sim_space *sp, unsigned pg, uint64_t v)
{
	unsigned char buf[PS];

	h_fill(buf, v);
	assert_int_equal(sp_sim_write(sim, sp, BASE + pg * PS, buf, PS), 0);
}

static int holds(struct sp_sim_space *sp, unsigned pg, uint64_t v)
{
	unsigned char want[PS], got[PS];

	h_fill(want, v);
	assert_int_equal(sp_sim_read(sim, sp, BASE + pg * PS, got, PS), 0);
	return !memcmp(want, got, PS);
}

/* Put value @v in a new stable page; return its number. */
static sp_spage_t make_stable(uint64_t v)
{
	unsigned char buf[PS];
	const void *src[1] = { buf };
	sp_spage_t s;

	h_fill(buf, v);
	assert_int_equal(sp_sim_ops.stable_alloc(sim, 1, &s), 0);
	assert_int_equal(sp_sim_ops.stable_write(sim, s, 1, src), 0);
	return s;
}

static void test_zero_and_first_write(void **state)
{
	uint8_t st[2];
	unsigned char buf[PS], zero[PS] = { 0 };

	(void)state;
	assert_int_equal(sp_sim_frame_of(sim, a, BASE), 0);
	assert_int_equal(sp_sim_read(sim, a, BASE, buf, PS), 0);
	assert_memory_equal(buf, zero, PS);
	assert_int_equal(sp_sim_ops.state(sim, a, BASE, 2, st), 0);
	assert_int_equal(st[0], SP_PS_NONE);
	write_val(a, 0, 7);
	assert_int_not_equal(sp_sim_frame_of(sim, a, BASE), 0);
	assert_int_equal(sp_sim_ops.state(sim, a, BASE, 1, st), 0);
	assert_int_equal(st[0], SP_PS_ANON);
	assert_true(holds(a, 0, 7));
}

static void test_replace_shares_and_cow(void **state)
{
	sp_spage_t s;
	sp_frame_t f;
	uint8_t st;

	(void)state;
	write_val(a, 1, 5);
	write_val(b, 1, 5);
	s = make_stable(5);
	assert_int_equal(sp_sim_ops.protect(sim, a, BASE + PS, 1, held), 0);
	assert_int_equal(sp_sim_ops.replace(sim, a, BASE + PS, 1, s), 0);
	sp_sim_ops.unprotect(sim, a, BASE + PS, 1);
	assert_int_equal(sp_sim_ops.protect(sim, b, BASE + PS, 1, held), 0);
	assert_int_equal(sp_sim_ops.replace(sim, b, BASE + PS, 1, s), 0);
	sp_sim_ops.unprotect(sim, b, BASE + PS, 1);
	f = sp_sim_frame_of(sim, a, BASE + PS);
	assert_int_equal(f, sp_sim_frame_of(sim, b, BASE + PS));
	assert_true(sp_sim_frame_is_stable(sim, f));
	assert_int_equal(sp_sim_frame_ref(sim, f), 3);	/* 2 ptes + store */
	assert_int_equal(sp_sim_ops.state(sim, a, BASE + PS, 1, &st), 0);
	assert_int_equal(st, SP_PS_STABLE);

	/* A write copies: the writer gets a private frame, b keeps the
	 * stable one, the stable bytes do not change. */
	write_val(a, 1, 6);
	assert_int_not_equal(sp_sim_frame_of(sim, a, BASE + PS), f);
	assert_int_equal(sp_sim_frame_ref(sim, f), 2);
	assert_true(holds(a, 1, 6));
	assert_true(holds(b, 1, 5));

	/* Unmerge gives b a private copy with the same bytes. */
	assert_int_equal(sp_sim_ops.unmerge(sim, b, BASE + PS, 1), 0);
	assert_int_not_equal(sp_sim_frame_of(sim, b, BASE + PS), f);
	assert_true(holds(b, 1, 5));
	assert_int_equal(sp_sim_frame_ref(sim, f), 1);	/* store only */
	sp_sim_ops.stable_release(sim, s, 1);
	assert_int_equal(sp_sim_frame_ref(sim, f), 0);
}

static void test_protected_write_is_queued(void **state)
{
	sp_spage_t s;
	struct sp_sim_counts c;

	(void)state;
	write_val(a, 2, 9);
	s = make_stable(9);
	assert_int_equal(sp_sim_ops.protect(sim, a, BASE + 2 * PS, 1, held), 0);
	write_val(a, 2, 10);		/* a "concurrent" writer blocks */
	assert_true(holds(a, 2, 9));	/* not applied yet */
	sp_sim_counts(sim, &c);
	assert_int_equal(c.queued_writes, 1);
	assert_int_equal(sp_sim_ops.replace(sim, a, BASE + 2 * PS, 1, s), 0);
	sp_sim_ops.unprotect(sim, a, BASE + 2 * PS, 1);
	/* The write landed after the replace, in a private copy. */
	assert_true(holds(a, 2, 10));
	assert_false(sp_sim_frame_is_stable(sim,
					    sp_sim_frame_of(sim, a, BASE + 2 * PS)));
	sp_sim_counts(sim, &c);
	assert_int_equal(c.queued_writes, 0);
	sp_sim_ops.stable_release(sim, s, 1);
}

static void test_release_while_mapped_is_caught(void **state)
{
	sp_spage_t s;
	char why[200];

	(void)state;
	write_val(a, 3, 4);
	s = make_stable(4);
	assert_int_equal(sp_sim_ops.protect(sim, a, BASE + 3 * PS, 1, held), 0);
	assert_int_equal(sp_sim_ops.replace(sim, a, BASE + 3 * PS, 1, s), 0);
	sp_sim_ops.unprotect(sim, a, BASE + 3 * PS, 1);
	sp_sim_ops.stable_release(sim, s, 1);	/* a bug: still mapped */
	assert_false(holds(a, 3, 4));		/* the data loss shows */
	assert_int_equal(sp_sim_check(sim, why, sizeof(why)), -EUCLEAN);
	assert_non_null(strstr(why, "released while mapped"));
	/* Repair so that teardown's check passes. */
	sp_sim_unmap(sim, a, BASE, 8 * PS);
	sp_sim_free(sim);
	sp_sim_new(&sim);
	sp_sim_space_new(sim, &a);
	sp_sim_space_new(sim, &b);
}

static void test_unprotected_replace_is_caught(void **state)
{
	sp_spage_t s;
	char why[200];

	(void)state;
	write_val(a, 4, 1);
	s = make_stable(1);
	assert_int_equal(sp_sim_ops.replace(sim, a, BASE + 4 * PS, 1, s), 0);
	assert_int_equal(sp_sim_check(sim, why, sizeof(why)), -EUCLEAN);
	assert_non_null(strstr(why, "without protection"));
	sp_sim_unmap(sim, a, BASE, 8 * PS);
	sp_sim_ops.stable_release(sim, s, 1);
	sp_sim_free(sim);
	sp_sim_new(&sim);
	sp_sim_space_new(sim, &a);
	sp_sim_space_new(sim, &b);
}

static void test_zap(void **state)
{
	(void)state;
	write_val(a, 5, 3);
	assert_int_equal(sp_sim_ops.protect(sim, a, BASE + 5 * PS, 1, held), 0);
	assert_int_equal(sp_sim_ops.zap(sim, a, BASE + 5 * PS, 1), 0);
	sp_sim_ops.unprotect(sim, a, BASE + 5 * PS, 1);
	assert_int_equal(sp_sim_frame_of(sim, a, BASE + 5 * PS), 0);
	/* Unmerging a released page gives it a private zero frame. */
	assert_int_equal(sp_sim_ops.unmerge(sim, a, BASE + 5 * PS, 1), 0);
	assert_int_not_equal(sp_sim_frame_of(sim, a, BASE + 5 * PS), 0);
}

static void test_tags(void **state)
{
	uint64_t tags[3] = { 77, 77, 78 };
	unsigned char x[PS], y[PS];

	(void)state;
	assert_int_equal(sp_sim_fill_tag(sim, a, BASE, 3, tags), 0);
	sp_sim_read(sim, a, BASE, x, PS);
	sp_sim_read(sim, a, BASE + PS, y, PS);
	assert_memory_equal(x, y, PS);
	sp_sim_read(sim, a, BASE + 2 * PS, y, PS);
	assert_memory_not_equal(x, y, PS);
	sp_sim_tag_bytes(77, y);
	assert_memory_equal(x, y, PS);
	/* A partial write materialises the rest of the tagged bytes. */
	assert_int_equal(sp_sim_write(sim, a, BASE + 100, "hi", 2), 0);
	sp_sim_read(sim, a, BASE, y, PS);
	assert_memory_equal(y + 102, x + 102, PS - 102);
	assert_memory_equal(y + 100, "hi", 2);
}

static void test_probe(void **state)
{
	struct sp_extent ext;
	struct sp_sim_space *c;

	(void)state;
	assert_int_equal(sp_sim_space_new(sim, &c), 0);
	assert_int_equal(sp_sim_map(sim, c, BASE, 2 * PS, SP_SIM_PRIVATE), 0);
	assert_int_equal(sp_sim_map(sim, c, BASE + 4 * PS, 2 * PS,
				    SP_SIM_SHARED), 0);
	assert_int_equal(sp_sim_map(sim, c, BASE, PS, SP_SIM_PRIVATE), -EINVAL);
	assert_int_equal(sp_sim_ops.probe(sim, c, BASE, 8 * PS, &ext), 0);
	assert_int_equal(ext.kind, SP_EXT_MERGEABLE);
	assert_int_equal(ext.end, BASE + 2 * PS);
	assert_int_equal(sp_sim_ops.probe(sim, c, BASE + 2 * PS, 6 * PS, &ext), 0);
	assert_int_equal(ext.kind, SP_EXT_HOLE);
	assert_int_equal(ext.end, BASE + 4 * PS);
	assert_int_equal(sp_sim_ops.probe(sim, c, BASE + 4 * PS, 4 * PS, &ext), 0);
	assert_int_equal(ext.kind, SP_EXT_OTHER);
	/* Unmapping the middle of a mapping splits it. */
	assert_int_equal(sp_sim_unmap(sim, c, BASE + PS, PS), 0);
	assert_int_equal(sp_sim_ops.probe(sim, c, BASE, 8 * PS, &ext), 0);
	assert_int_equal(ext.end, BASE + PS);
	sp_sim_space_free(sim, c);
}

static void test_fault_injection(void **state)
{
	sp_spage_t s;

	(void)state;
	sp_sim_fault_next(sim, "stable_alloc", -ENOSPC);
	assert_int_equal(sp_sim_ops.stable_alloc(sim, 1, &s), -ENOSPC);
	assert_int_equal(sp_sim_ops.stable_alloc(sim, 1, &s), 0);
	sp_sim_ops.stable_release(sim, s, 1);
	/* Protecting twice is an engine bug the sim refuses. */
	write_val(a, 6, 1);
	assert_int_equal(sp_sim_ops.protect(sim, a, BASE + 6 * PS, 1, held), 0);
	assert_int_equal(sp_sim_ops.protect(sim, a, BASE + 6 * PS, 1, held), -EBUSY);
	sp_sim_ops.unprotect(sim, a, BASE + 6 * PS, 1);
	/* Protecting an unmapped page fails and protects nothing. */
	assert_int_equal(sp_sim_ops.protect(sim, a, BASE + 7 * PS, 2, held), -EFAULT);
}

static unsigned injected;

static void inject_one(struct sp_sim *s, const char *op, void *arg)
{
	(void)arg;
	if (!strcmp(op, "replace") && !injected++) {
		unsigned char buf[PS];

		h_fill(buf, 99);
		sp_sim_write(s, a, BASE + 7 * PS, buf, PS);
	}
}

static void test_injector(void **state)
{
	sp_spage_t s;

	(void)state;
	write_val(a, 7, 2);
	s = make_stable(2);
	sp_sim_set_injector(sim, inject_one, NULL);
	assert_int_equal(sp_sim_ops.protect(sim, a, BASE + 7 * PS, 1, held), 0);
	/* The write injected at the start of replace is queued, then lands
	 * on the private copy after unprotect. */
	assert_int_equal(sp_sim_ops.replace(sim, a, BASE + 7 * PS, 1, s), 0);
	sp_sim_ops.unprotect(sim, a, BASE + 7 * PS, 1);
	sp_sim_set_injector(sim, NULL, NULL);
	assert_int_equal(injected, 1);
	assert_true(holds(a, 7, 99));
	sp_sim_ops.stable_release(sim, s, 1);
}

/* ---- the shared store (sp_sim_shared_ops) ---------------------------- */

/* ops->lookup of one page of @sp holding @v, as an engine asks it. */
static sp_spage_t ask(struct sp_sim_space *sp, unsigned pg, uint64_t v)
{
	unsigned char buf[PS];
	uintptr_t addr = BASE + pg * PS;
	uint64_t h;
	sp_spage_t out = 0;

	h_fill(buf, v);
	h = sp_hash_page(buf);
	assert_int_equal(sp_sim_shared_ops.lookup(sim, sp, 1, &addr, &h, &out),
			 0);
	return out;
}

/* Nominate, upload, name, reuse; the page lives until every reference
 * is back, and then its content is unknown again. */
static void test_shared_protocol(void **state)
{
	struct sp_sim_counts c;
	sp_spage_t p, q;
	unsigned char buf[PS];
	char why[200];

	(void)state;
	write_val(a, 0, 7);
	write_val(b, 0, 7);
	write_val(b, 1, 7);
	assert_int_equal(ask(a, 0, 7), SP_SPAGE_NONE);	/* nominated */
	assert_int_equal(ask(a, 0, 7), SP_SPAGE_NONE);	/* by itself */
	p = ask(b, 0, 7);				/* uploaded */
	assert_int_not_equal(p, SP_SPAGE_NONE);
	h_fill(buf, 7);
	assert_memory_equal(sp_sim_shared_ops.stable_peek(sim, p, NULL), buf,
			    PS);
	assert_int_equal(ask(a, 0, 7), p);		/* stored: named */
	assert_int_equal(ask(b, 1, 7), p);
	sp_sim_counts(sim, &c);
	assert_int_equal(c.shared_frames, 1);
	assert_int_equal(c.uploads, 1);
	assert_int_equal(c.shared_named, 2);
	assert_int_equal(c.nominations, 1);
	assert_int_equal(sp_sim_check(sim, why, sizeof(why)), 0);

	/* Mapped by a; the references come back one by one. */
	assert_int_equal(sp_sim_shared_ops.protect(sim, a, BASE, 1, held), 0);
	assert_int_equal(sp_sim_shared_ops.replace(sim, a, BASE, 1, p), 0);
	sp_sim_shared_ops.unprotect(sim, a, BASE, 1);
	sp_sim_shared_ops.stable_release(sim, p, 1);
	sp_sim_shared_ops.stable_release(sim, p, 1);
	assert_int_equal(sp_sim_check(sim, why, sizeof(why)), 0);
	write_val(a, 0, 8);	/* COW: a no longer maps it */
	sp_sim_shared_ops.stable_release(sim, p, 1);
	sp_sim_counts(sim, &c);
	assert_int_equal(c.shared_frames, 0);
	assert_int_equal(c.stable_frames, 0);
	assert_int_equal(c.released_while_mapped, 0);
	assert_int_equal(sp_sim_check(sim, why, sizeof(why)), 0);

	/* Gone from the index: the content is nominated anew, and b's
	 * second upload makes a new page. */
	assert_int_equal(ask(b, 1, 7), SP_SPAGE_NONE);
	q = ask(a, 1, 7);	/* a's page 1 never held 7: reads zeros */
	assert_int_not_equal(q, SP_SPAGE_NONE);
	memset(buf, 0, PS);
	assert_memory_equal(sp_sim_shared_ops.stable_peek(sim, q, NULL), buf,
			    PS);
	sp_sim_shared_ops.stable_release(sim, q, 1);
	assert_int_equal(sp_sim_check(sim, why, sizeof(why)), 0);
}

/* An upload stores the bytes as they are, indexed by their own hash: a
 * page written after the engine hashed it is stored as written, and a
 * later ask for the old content does not get it. */
static void test_shared_upload_reads_now(void **state)
{
	sp_spage_t p;
	unsigned char buf[PS];
	char why[200];

	(void)state;
	write_val(a, 0, 5);
	write_val(b, 0, 6);	/* b's page changed after its hash of 5 */
	assert_int_equal(ask(a, 0, 5), SP_SPAGE_NONE);
	p = ask(b, 0, 5);
	assert_int_not_equal(p, SP_SPAGE_NONE);
	h_fill(buf, 6);
	assert_memory_equal(sp_sim_shared_ops.stable_peek(sim, p, NULL), buf,
			    PS);
	assert_int_equal(ask(b, 0, 6), p);	/* stored under 6 */
	assert_int_not_equal(ask(b, 1, 5), p);	/* 5 is still a's nomination */
	sp_sim_shared_ops.stable_release(sim, p, 2);
	assert_int_equal(sp_sim_check(sim, why, sizeof(why)), 0);
}

/* A failed lookup names nothing and records nothing. */
static void test_shared_lookup_fault(void **state)
{
	struct sp_sim_counts c;

	(void)state;
	write_val(a, 0, 9);
	sp_sim_fault_next(sim, "lookup", -EIO);
	{
		unsigned char buf[PS];
		uintptr_t addr = BASE;
		uint64_t h;
		sp_spage_t out = 0;

		h_fill(buf, 9);
		h = sp_hash_page(buf);
		assert_int_equal(sp_sim_shared_ops.lookup(sim, a, 1, &addr, &h,
							  &out), -EIO);
		assert_int_equal(out, SP_SPAGE_NONE);
	}
	sp_sim_counts(sim, &c);
	assert_int_equal(c.nominations, 0);
	/* Many contents: the index grows and keeps every entry. */
	for (unsigned v = 100; v < 1100; v++)
		assert_int_equal(ask(a, 0, v), SP_SPAGE_NONE);
	for (unsigned v = 100; v < 1100; v++)
		assert_int_equal(ask(a, 0, v), SP_SPAGE_NONE);
	sp_sim_counts(sim, &c);
	assert_int_equal(c.nominations, 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_zero_and_first_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replace_shares_and_cow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protected_write_is_queued, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_while_mapped_is_caught, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unprotected_replace_is_caught, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_injection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_injector, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_protocol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_upload_reads_now, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_lookup_fault, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
