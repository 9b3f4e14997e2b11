/*
 * test_vma_budget.c - merging stops making mappings well before the
 * process runs out of them, and the program keeps working.
 *
 * An isolated merged page costs two VMAs; at vm.max_map_count the
 * program's own malloc, mmap, munmap and mprotect fail.  A region where
 * every other page is a duplicate asks for more isolated merges than the
 * budget (half the limit) allows: merging must stop short (vma_refusals
 * counts the refusals), zero pages must still be released (they cost no
 * mapping), the program must still map, split and unmap memory, and
 * unmerging must give the mappings back.
 */
#include "rt.h"

static long read_long(const char *path)
{
	FILE *f = fopen(path, "re");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static long vmas_now(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	long n = 0;
	int c;

	assert_non_null(f);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* The program's own memory calls, many of them, must all succeed. */
static void program_still_works(void)
{
	void *m[256];

	for (int k = 0; k < 256; k++) {
		char *p = mmap(NULL, 4 * PS, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		assert_true(p != MAP_FAILED);
		p[0] = 1;
		/* Split it in three (two more VMAs each), then unmap. */
		assert_int_equal(mprotect(p + PS, PS, PROT_READ), 0);
		assert_int_equal(munmap(p, 4 * PS), 0);
	}
	for (int k = 0; k < 256; k++) {
		m[k] = malloc((size_t)(k + 1) * 4096);
		assert_non_null(m[k]);
		memset(m[k], k, (size_t)(k + 1) * 4096);
	}
	for (int k = 0; k < 256; k++)
		free(m[k]);
}

static void test_budget_holds(void **state)
{
	long max = read_long("/proc/sys/vm/max_map_count");
	struct sp_agent_stats as;
	size_t npage, nzero = 256;
	char *x, *z;
	long peak, before;

	(void)state;
	as = rt_astats();
	if (max <= 0 || max > 1000000 || as.vma_budget == 0)
		skip();
	/* Twice as many isolated duplicates as the budget has room for. */
	npage = (size_t)as.vma_budget * 2;
	x = rt_map(npage);
	for (size_t i = 0; i < npage; i++)
		rt_page(x + i * PS, 21, i % 2 ? i : 0);
	assert_int_equal(sp_agent_register(A, x, npage * PS), 0);
	rt_merge();
	as = rt_astats();
	peak = vmas_now();
	print_message("max_map_count %ld, budget %llu: %llu pages sharing, "
		      "%ld VMAs, %llu merges refused\n", max,
		      (unsigned long long)as.vma_budget,
		      (unsigned long long)rt_stats().pages_sharing, peak,
		      (unsigned long long)as.vma_refusals);
	assert_true(as.vma_refusals > 0);
	assert_true(rt_stats().pages_sharing > (uint64_t)as.vma_budget / 4);
	/* Short of the budget (a few in-flight holds aside), far from the
	 * limit. */
	assert_true(peak <= (long)as.vma_budget + 16);
	program_still_works();

	/* Zero pages cost no mapping: released even now. */
	z = rt_map(nzero);
	for (size_t i = 0; i < nzero; i++)
		z[i * PS] = 0;	/* touched: a private zero-filled frame */
	assert_int_equal(sp_knob_set(sp_agent_engine(A),
				     SP_KNOB_USE_ZERO_PAGES, 1), 0);
	assert_int_equal(sp_agent_register(A, z, nzero * PS), 0);
	/* The program's own mappings (and, under ASan, its allocator's)
	 * may have grown meanwhile: releasing zero pages must add none. */
	before = vmas_now();
	rt_merge();
	assert_true(rt_stats().ksm_zero_pages >= nzero);
	assert_true(vmas_now() <= before + 2);
	rt_release(z, nzero);
	assert_int_equal(sp_knob_set(sp_agent_engine(A),
				     SP_KNOB_USE_ZERO_PAGES, 0), 0);

	/* Unmerging gives the mappings back. */
	assert_int_equal(sp_agent_unregister(A, x, npage * PS), 0);
	assert_true(vmas_now() < peak / 8);
	for (size_t i = 0; i < npage; i++) {
		unsigned char want[PS];

		rt_page(want, 21, i % 2 ? i : 0);
		assert_memory_equal(x + i * PS, want, PS);
	}
	assert_int_equal(sp_agent_unmap(A, x, npage * PS), 0);
	program_still_works();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budget_holds),
	};
	int r;

	rt_start_or_skip("test_vma_budget");
	r = cmocka_run_group_tests(tests, NULL, NULL);
	sp_agent_stop(A);
	return r;
}
