/*
 * test_u32map.c - the id -> count map (util/u32map.c) against a plain
 * array kept beside it: random increments and decrements over keys that
 * crowd a few probe chains (so that growth and backward-shift deletion
 * move entries across the wrap-around), every count checked after each
 * step; memory accounted and given back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/u32map.h"

#define KEYS 3000

static uint32_t key_of(uint32_t i)
{
	/* Spread over the whole range, with the extremes. */
	if (i == 0)
		return 0;
	if (i == 1)
		return UINT32_MAX - 1;
	return i * 40503u ^ (i << 20);
}

static void test_shadow(void **state)
{
	static uint32_t shadow[KEYS];
	uint64_t bytes = 0, r = 88172645463325252ull;
	struct sp_mem mem = { &sp_libc_allocator, &bytes };
	struct sp_u32map m = { 0 };
	uint32_t present = 0;

	(void)state;
	assert_int_equal(sp_u32map_get(&m, 5), 0);
	assert_int_equal(sp_u32map_dec(&m, 5), -1);
	for (int step = 0; step < 200000; step++) {
		uint32_t i;

		r ^= r << 13;
		r ^= r >> 7;
		r ^= r << 17;
		i = (uint32_t)(r % KEYS);
		if ((r >> 32) % 3) {
			int64_t c = sp_u32map_inc(&m, &mem, key_of(i));

			assert_int_equal(c, ++shadow[i]);
			present += shadow[i] == 1;
		} else {
			int64_t c = sp_u32map_dec(&m, key_of(i));

			if (!shadow[i]) {
				assert_int_equal(c, -1);
			} else {
				assert_int_equal(c, --shadow[i]);
				present -= !shadow[i];
			}
		}
		assert_int_equal(m.n, present);
		if (step % 997 == 0)
			for (uint32_t k = 0; k < KEYS; k++)
				assert_int_equal(sp_u32map_get(&m, key_of(k)),
						 shadow[k]);
	}
	/* Iteration sees exactly the keys present. */
	{
		uint32_t seen = 0;

		for (uint32_t k = 0; k < m.cap; k++)
			if (m.key[k]) {
				seen++;
				assert_true(m.val[k] > 0);
			}
		assert_int_equal(seen, present);
	}
	assert_true(bytes >= (uint64_t)m.cap * 8);
	sp_u32map_clear(&m);
	assert_int_equal(m.n, 0);
	assert_int_equal(sp_u32map_get(&m, key_of(2)), 0);
	sp_u32map_free(&m, &mem);
	assert_int_equal(bytes, 0);
}

/* Keys with one home slot: a chain that wraps around the end. */
static void test_wrap(void **state)
{
	uint64_t bytes = 0;
	struct sp_mem mem = { &sp_libc_allocator, &bytes };
	struct sp_u32map m = { 0 };
	uint32_t keys[400];
	unsigned n = 0;

	(void)state;
	assert_true(sp_u32map_inc(&m, &mem, 1) > 0);	/* cap 1024 */
	sp_u32map_dec(&m, 1);
	/* Keys whose home is one of the last 3 slots of 1024. */
	for (uint32_t k = 0; n < 400; k++)
		if ((((k * 2654435761u) & 1023) >= 1021))
			keys[n++] = k;
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(sp_u32map_inc(&m, &mem, keys[i]), 1);
	assert_int_equal(m.cap, 1024);
	for (unsigned i = 0; i < n; i += 2)
		assert_int_equal(sp_u32map_dec(&m, keys[i]), 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(sp_u32map_get(&m, keys[i]), i % 2);
	sp_u32map_free(&m, &mem);
	assert_int_equal(bytes, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shadow),
		cmocka_unit_test(test_wrap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
