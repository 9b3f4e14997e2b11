/*
 * test_advisor.c - the scan-time advisor's rule (advisor.c): a pass that
 * took longer than the target speeds the scan up in proportion, a faster
 * one slows it down, the CPU cap wins over the target, and the result
 * always stays within advisor_min/max_pages_to_scan; and a process's
 * share of its domain's pages_to_scan (sp_scan_share).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "advisor.h"

/* KSM's defaults: 200 s target, 70 % CPU, 500 .. 30000 pages. */
static struct sp_advice base(uint64_t pts, double wall, double cpu)
{
	struct sp_advice in = {
		.pages_to_scan = pts, .wall_s = wall, .cpu_s = cpu,
		.target_s = 200, .max_cpu = 70,
		.min_pages = 500, .max_pages = 30000,
	};

	return in;
}

static void test_target(void **state)
{
	struct sp_advice in;

	(void)state;
	/* On target: unchanged. */
	in = base(1000, 200, 1);
	assert_int_equal(sp_advise_pages(&in), 1000);
	/* Twice too slow: twice the pages per batch. */
	in = base(1000, 400, 1);
	assert_int_equal(sp_advise_pages(&in), 2000);
	/* Four times too fast: a quarter, but not under the minimum. */
	in = base(4000, 50, 1);
	assert_int_equal(sp_advise_pages(&in), 1000);
	in = base(1000, 50, 1);
	assert_int_equal(sp_advise_pages(&in), 500);
	/* Far too slow: held at the maximum. */
	in = base(20000, 2000, 1);
	assert_int_equal(sp_advise_pages(&in), 30000);
}

static void test_cpu_cap(void **state)
{
	struct sp_advice in;

	(void)state;
	/* The pass took 4x the target at 35 % CPU: the target asks for 4x
	 * the pages, the cap (70 %) allows only 2x. */
	in = base(1000, 800, 280);
	assert_int_equal(sp_advise_pages(&in), 2000);
	/* Already over the cap and on target: slowed down to the cap. */
	in = base(2000, 200, 280);
	assert_int_equal(sp_advise_pages(&in), 1000);
	/* The cap does not push under the minimum either. */
	in = base(600, 200, 200);
	assert_int_equal(sp_advise_pages(&in), 500);
	/* No CPU measured: the target alone decides. */
	in = base(1000, 400, 0);
	assert_int_equal(sp_advise_pages(&in), 2000);
}

static void test_degenerate(void **state)
{
	struct sp_advice in;

	(void)state;
	/* No time measured: pages_to_scan kept, within the bounds. */
	in = base(1000, 0, 0);
	assert_int_equal(sp_advise_pages(&in), 1000);
	in = base(100, 0, 0);
	assert_int_equal(sp_advise_pages(&in), 500);
	/* Bounds of 1: never 0 pages (the scan would stall). */
	in = base(1, 1, 0);
	in.min_pages = 0;
	in.max_pages = 1;
	assert_int_equal(sp_advise_pages(&in), 1);
	in.wall_s = 1e-9;
	assert_int_equal(sp_advise_pages(&in), 1);
}

/* A process's share of its domain's pages_to_scan: its part, rounded
 * up, never 0; the parts add up to the whole, give or take a page per
 * process; alone or before the figures are in, the whole. */
static void test_share(void **state)
{
	uint64_t sum = 0;

	(void)state;
	assert_int_equal(sp_scan_share(100, 1000, 2000), 50);
	assert_int_equal(sp_scan_share(100, 3000, 4000), 75);
	assert_int_equal(sp_scan_share(100, 1000, 4000), 25);
	assert_int_equal(sp_scan_share(100, 1, 3), 34);	/* rounded up */
	assert_int_equal(sp_scan_share(100, 1, 1000000), 1);	/* never 0 */
	assert_int_equal(sp_scan_share(100, 1000, 1000), 100);	/* alone */
	assert_int_equal(sp_scan_share(100, 0, 1000), 100);	/* no figures */
	assert_int_equal(sp_scan_share(100, 1000, 0), 100);
	assert_int_equal(sp_scan_share(100, 2000, 1000), 100);	/* stale sum */
	/* No overflow at the extremes. */
	assert_int_equal(sp_scan_share(UINT64_MAX, 1ull << 45, 1ull << 46),
			 UINT64_MAX / 2 + 1);
	/* Seven processes of unequal sizes. */
	for (uint64_t k = 1; k <= 7; k++)
		sum += sp_scan_share(1000, k * 1111, 28 * 1111);
	assert_true(sum >= 1000 && sum <= 1007);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_cpu_cap),
		cmocka_unit_test(test_degenerate),
		cmocka_unit_test(test_share),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
