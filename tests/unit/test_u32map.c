/*
 * test_u32map.c - the id -> count map (util/u32map.c) against a plain
 * array kept beside it: random increments and decrements over keys that
 * crowd a few probe chains (so that growth and backward-shift deletion
 * move entries across the wrap-around), every count checked after each
 * step; iteration; the size of a dense set; memory accounted and given
 * back.
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
	/* Spread over the whole range, with the extremes; every third
	 * key next to the previous one, so that blocks hold several. */
	if (i == 0)
		return 0;
	if (i == 1)
		return UINT32_MAX - 1;
	if (i % 3 == 0)
		return key_of(i - 1) ^ 1;
	return i * 40503u ^ (i << 20);
}

/* Each id present exactly once, with its count. */
static void check_iter(const struct sp_u32map *m, const uint32_t *shadow)
{
	uint64_t pos = 0;
	uint32_t key, count, seen = 0;

	while (sp_u32map_next(m, &pos, &key, &count)) {
		uint32_t i;

		for (i = 0; i < KEYS && key_of(i) != key; i++)
			;
		assert_true(i < KEYS);
		assert_int_equal(count, shadow[i]);
		seen++;
	}
	assert_int_equal(seen, m->n);
	assert_int_equal(sp_u32map_next(m, &pos, &key, &count), 0);
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
		if (step % 997 == 0) {
			for (uint32_t k = 0; k < KEYS; k++)
				assert_int_equal(sp_u32map_get(&m, key_of(k)),
						 shadow[k]);
			check_iter(&m, shadow);
		}
	}
	check_iter(&m, shadow);
	assert_true(bytes == sp_u32map_bytes(&m));
	sp_u32map_clear(&m);
	assert_int_equal(m.n, 0);
	assert_int_equal(sp_u32map_get(&m, key_of(2)), 0);
	sp_u32map_free(&m, &mem);
	assert_int_equal(bytes, 0);
}

/* Blocks with one home slot: a chain that wraps around the end.  One id
 * per block (a multiple of 64), so that each is an entry of its own. */
static void test_wrap(void **state)
{
	uint64_t bytes = 0;
	struct sp_mem mem = { &sp_libc_allocator, &bytes };
	struct sp_u32map m = { 0 };
	uint32_t keys[400];
	unsigned n = 0;

	(void)state;
	for (uint32_t k = 0; k < 500; k++)	/* grow the table to 1024 */
		assert_int_equal(sp_u32map_inc(&m, &mem, k << 6), 1);
	for (uint32_t k = 0; k < 500; k++)
		assert_int_equal(sp_u32map_dec(&m, k << 6), 0);
	assert_int_equal(m.blk.cap, 1024);
	/* Blocks whose home is one of the last 3 slots of 1024. */
	for (uint32_t k = 0; n < 400; k++)
		if ((((k * 2654435761u) & 1023) >= 1021))
			keys[n++] = k << 6;
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(sp_u32map_inc(&m, &mem, keys[i]), 1);
	assert_int_equal(m.blk.cap, 1024);
	for (unsigned i = 0; i < n; i += 2)
		assert_int_equal(sp_u32map_dec(&m, keys[i]), 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(sp_u32map_get(&m, keys[i]), i % 2);
	sp_u32map_free(&m, &mem);
	assert_int_equal(bytes, 0);
}

/* What the structure is for: 65,536 consecutive ids (a process's share
 * of a store) in well under a byte each, and counts above 1 on some. */
static void test_dense(void **state)
{
	uint64_t bytes = 0, pos = 0;
	struct sp_mem mem = { &sp_libc_allocator, &bytes };
	struct sp_u32map m = { 0 };
	uint32_t key, count, seen = 0;

	(void)state;
	for (uint32_t k = 0; k < 65536; k++)
		assert_int_equal(sp_u32map_inc(&m, &mem, (3u << 24) + k), 1);
	for (uint32_t k = 0; k < 65536; k += 1000)
		assert_int_equal(sp_u32map_inc(&m, &mem, (3u << 24) + k), 2);
	assert_int_equal(m.n, 65536);
	assert_true(bytes < 65536 / 2);
	while (sp_u32map_next(&m, &pos, &key, &count)) {
		assert_int_equal(key >> 24, 3);
		assert_int_equal(count, (key & 0xffffff) % 1000 ? 1 : 2);
		seen++;
	}
	assert_int_equal(seen, 65536);
	for (uint32_t k = 0; k < 65536; k += 1000)
		assert_int_equal(sp_u32map_dec(&m, (3u << 24) + k), 1);
	for (uint32_t k = 0; k < 65536; k++)
		assert_int_equal(sp_u32map_dec(&m, (3u << 24) + k), 0);
	assert_int_equal(m.n, 0);
	assert_int_equal(m.blk.n + m.more.n, 0);
	sp_u32map_free(&m, &mem);
	assert_int_equal(bytes, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shadow),
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_dense),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
