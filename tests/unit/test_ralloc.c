/*
 * test_ralloc.c - the run allocator: runs are disjoint and reused, the
 * top shrinks back, the limit holds, bad requests change nothing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/alloc.h"
#include "util/ralloc.h"

#define LIMIT 5000

static void test_random(void **state)
{
	static uint32_t owner[LIMIT];	/* 0 free, else run id */
	struct { uint32_t first, n; } runs[2000];
	unsigned nruns = 0;
	struct sp_ralloc ra;
	uint64_t acct = 0;

	(void)state;
	srand(3);
	memset(owner, 0, sizeof(owner));
	sp_ralloc_init(&ra, LIMIT, &(struct sp_mem){ &sp_libc_allocator, &acct });
	for (int step = 0; step < 20000; step++) {
		if (nruns && (rand() % 2 || nruns == 2000)) {
			unsigned k = (unsigned)rand() % nruns;

			for (uint32_t i = 0; i < runs[k].n; i++)
				owner[runs[k].first + i] = 0;
			sp_ralloc_put(&ra, runs[k].first, runs[k].n);
			runs[k] = runs[--nruns];
		} else {
			uint32_t n = 1 + (uint32_t)rand() % 40, f;
			int err = sp_ralloc_get(&ra, n, &f);

			if (err) {
				assert_int_equal(err, -ENOSPC);
				continue;
			}
			assert_true(f + n <= LIMIT);
			for (uint32_t i = 0; i < n; i++) {
				assert_int_equal(owner[f + i], 0);
				owner[f + i] = 1;
			}
			runs[nruns].first = f;
			runs[nruns++].n = n;
		}
		for (uint32_t i = 0; i < LIMIT && step % 500 == 0; i++)
			assert_int_equal(!!owner[i], sp_ralloc_used(&ra, i));
	}
	while (nruns) {
		nruns--;
		sp_ralloc_put(&ra, runs[nruns].first, runs[nruns].n);
	}
	assert_int_equal(ra.top, 0);
	assert_int_equal(ra.nfree, 0);
	sp_ralloc_destroy(&ra);
	assert_int_equal(acct, 0);
}

static void test_reuse_and_limits(void **state)
{
	struct sp_ralloc ra;
	uint32_t a, b, c;

	(void)state;
	sp_ralloc_init(&ra, 100, NULL);
	assert_int_equal(sp_ralloc_get(&ra, 0, &a), -EINVAL);
	assert_int_equal(sp_ralloc_get(&ra, 101, &a), -ENOSPC);
	assert_int_equal(ra.top, 0);
	assert_int_equal(sp_ralloc_get(&ra, 10, &a), 0);
	assert_int_equal(sp_ralloc_get(&ra, 10, &b), 0);
	assert_int_equal(sp_ralloc_get(&ra, 10, &c), 0);
	assert_int_equal(a, 0);
	assert_int_equal(b, 10);	/* consecutive runs: one mapping each */
	assert_int_equal(c, 20);
	sp_ralloc_put(&ra, b, 10);
	assert_int_equal(sp_ralloc_get(&ra, 5, &b), 0);
	assert_int_equal(b, 10);	/* the hole is reused */
	sp_ralloc_put(&ra, c, 10);	/* the top comes back */
	assert_int_equal(ra.top, 15);
	sp_ralloc_destroy(&ra);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_reuse_and_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
