/*
 * test_dir.c - samepaged's directory table (src/daemon/dir.c) and the
 * lookup clients run on it (spp_dir_find in proto.h), against a shadow
 * list of the entries that should be there.
 *
 * The hashes are drawn so that a few sets hold many different hashes
 * (and the same hash under several tags), so that every lookup has to
 * pick its entries out of a crowded set; few enough entries are
 * live at once that no set pair ever fills, so nothing is evicted and
 * the shadow is exact.  A hash whose kept bits are all zero is among
 * them: it must never match an empty way, and its two sets are one
 * (dir_set once dropped the entry it had just written there).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "dir.h"

#define N_ENTRIES 1024u		/* table size: 128 sets */
#define MAX_LIVE SPP_DIR_WAYS	/* a hash's two sets may be one: no
				 * eviction while they fit in one set */
#define N_HASH 12u		/* the pool hashes are drawn from */

struct ent {
	uint64_t key;		/* hash & SPP_DIR_HASH */
	uint64_t tag;
};

static struct ent shadow[MAX_LIVE];
static unsigned nshadow;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A hash whose first set is one of 2 and second one of 2 (bits 11 and
 * 39-40 of the hash pick them in a table of N_ENTRIES). */
static uint64_t crowded_hash(uint64_t *s)
{
	uint64_t h = rnd(s);

	h &= ~((uint64_t)0x7f << 11 | (uint64_t)0x7f << 39);
	return h | (rnd(s) & 1) << 11 | (rnd(s) & 3) << 39;
}

static void shadow_put(uint64_t hash, uint64_t tag)
{
	uint64_t key = hash & SPP_DIR_HASH;

	for (unsigned i = 0; i < nshadow; i++)
		if (shadow[i].key == key && shadow[i].tag == tag)
			return;
	shadow[nshadow++] = (struct ent){ key, tag };
}

static unsigned shadow_drop(uint64_t hash, uint64_t tag)
{
	uint64_t key = hash & SPP_DIR_HASH;
	unsigned gone = 0;

	for (unsigned i = 0; i < nshadow;) {
		if (shadow[i].key == key && (!tag || shadow[i].tag == tag)) {
			shadow[i] = shadow[--nshadow];
			gone++;
		} else {
			i++;
		}
	}
	return gone;
}

/* Does @got obey spp_dir_find's rule for @hash and @mine? */
static int find_ok(uint64_t hash, uint64_t mine, uint64_t got)
{
	uint64_t key = hash & SPP_DIR_HASH;
	int stored = 0, other = 0, own = 0, got_there = 0;

	for (unsigned i = 0; i < nshadow; i++) {
		if (shadow[i].key != key)
			continue;
		stored |= shadow[i].tag == SPP_DIR_STORED;
		other |= shadow[i].tag != mine;
		own |= shadow[i].tag == mine;
		got_there |= shadow[i].tag == got;
	}
	if (stored)
		return got == SPP_DIR_STORED;
	if (other)
		return got != mine && got_there;
	return own ? got == mine : got == 0;
}

static void test_against_shadow(void **state)
{
	static const uint64_t tags[] = { 1, 2, 3, SPP_DIR_PAIRED,
					 SPP_DIR_STORED };
	uint64_t pool[N_HASH], s = 0x2545f4914f6cdd1dull;
	struct dir d;

	(void)state;
	for (unsigned i = 0; i < N_HASH; i++)
		pool[i] = crowded_hash(&s);
	pool[0] = 0x5a;			/* kept bits all zero */
	assert_int_equal(dir_init(&d, N_ENTRIES, N_ENTRIES), 0);
	nshadow = 0;
	for (unsigned step = 0; step < 200000; step++) {
		uint64_t h = pool[rnd(&s) % N_HASH];
		uint64_t tag = tags[rnd(&s) % 5];
		unsigned op = (unsigned)(rnd(&s) % 5);

		if (op == 0 && nshadow < MAX_LIVE) {
			dir_put(&d, h, tag);
			shadow_put(h, tag);
		} else if (op == 4 && nshadow < MAX_LIVE) {
			dir_set(&d, h, tag);
			shadow_drop(h, 0);
			shadow_put(h, tag);
		} else if (op == 1) {
			uint64_t t = rnd(&s) & 1 ? tag : 0;

			assert_int_equal(dir_drop(&d, h, t), shadow_drop(h, t));
		} else {
			uint64_t mine = tags[rnd(&s) % 3];
			uint64_t got = dir_find(&d, h, mine);

			assert_int_equal(got, spp_dir_find(d.e, d.n, h, mine));
			if (!find_ok(h, mine, got))
				fail_msg("step %u: hash %#llx mine %llu: got %#llx",
					 step, (unsigned long long)h,
					 (unsigned long long)mine,
					 (unsigned long long)got);
		}
		assert_int_equal(d.used, nshadow);
	}
	dir_free(&d);
}

/* Putting an entry picks the emptier of its two sets, its first empty
 * way; when both are full, one way of the two is overwritten and the
 * count of used entries stays. */
static void test_place(void **state)
{
	uint64_t s = 77, h[2 * SPP_DIR_WAYS + 1];
	struct dir d;
	uint32_t set0, set1;
	int in0 = 0, in1 = 0;
	unsigned found = 0;

	(void)state;
	assert_int_equal(dir_init(&d, N_ENTRIES, N_ENTRIES), 0);
	/* Hashes that all share the same two sets. */
	for (unsigned i = 0; i < 2 * SPP_DIR_WAYS + 1; i++)
		h[i] = (crowded_hash(&s) & ~((uint64_t)1 << 11 |
					     (uint64_t)3 << 39)) |
		       (uint64_t)1 << 39;
	set0 = spp_dir_set(h[0], d.n, 0);
	set1 = spp_dir_set(h[0], d.n, 1);
	assert_true(set0 != set1);
	for (unsigned i = 0; i < 2 * SPP_DIR_WAYS; i++) {
		dir_put(&d, h[i], 1);
		in0 = in1 = 0;
		for (unsigned w = 0; w < SPP_DIR_WAYS; w++) {
			in0 += d.e[set0 + w] != 0;
			in1 += d.e[set1 + w] != 0;
		}
		/* they alternate: never more than one apart */
		assert_true(abs(in0 - in1) <= 1);
		assert_int_equal(d.used, i + 1);
	}
	assert_int_equal(in0 + in1, 2 * (int)SPP_DIR_WAYS);
	dir_put(&d, h[2 * SPP_DIR_WAYS], 2);	/* evicts one */
	assert_int_equal(d.used, 2 * SPP_DIR_WAYS);
	assert_int_equal(dir_find(&d, h[2 * SPP_DIR_WAYS], 0), 2);
	for (unsigned i = 0; i < 2 * SPP_DIR_WAYS; i++)
		found += dir_find(&d, h[i], 0) == 1;
	assert_int_equal(found, 2 * SPP_DIR_WAYS - 1);
	dir_free(&d);
}

/* Hashes that all have the same two sets (distinct) in a table of
 * N_ENTRIES. */
static void same_sets(uint64_t *h, unsigned n, uint64_t seed)
{
	for (unsigned i = 0; i < n; i++)
		h[i] = (crowded_hash(&seed) & ~((uint64_t)1 << 11 |
						(uint64_t)3 << 39)) |
		       (uint64_t)1 << 39;
}

/* Nominations by client 9 in sets other than those of @h, until @d
 * is half full.  Return: how many. */
static unsigned fill_half(struct dir *d, uint64_t h)
{
	uint32_t s0 = spp_dir_set(h, d->n, 0), s1 = spp_dir_set(h, d->n, 1);
	uint64_t x = 12345;
	unsigned n = 0;

	while (d->used < d->n / 2) {
		uint64_t o = rnd(&x);
		uint32_t a = spp_dir_set(o, d->n, 0), b = spp_dir_set(o, d->n, 1);

		if (a == s0 || a == s1 || b == s0 || b == s1)
			continue;
		dir_put(d, o, 9);
		n++;
	}
	return n;
}

/* A full pair of sets overwrites a nomination rather than a PAIRED or
 * STORED entry; when it holds only those, the table grows (if it may,
 * and is half full) and every entry stays. */
static void test_keeps_precious(void **state)
{
	uint64_t h[2 * SPP_DIR_WAYS + 2];
	unsigned base;
	struct dir d;

	(void)state;
	same_sets(h, 2 * SPP_DIR_WAYS + 2, 99);
	assert_int_equal(dir_init(&d, N_ENTRIES, 2 * N_ENTRIES), 0);
	for (unsigned i = 0; i < 2 * SPP_DIR_WAYS; i++)
		dir_put(&d, h[i], i == 5 ? 3 : i & 1 ? SPP_DIR_STORED :
						       SPP_DIR_PAIRED);
	assert_int_equal(d.used, 2 * SPP_DIR_WAYS);
	/* Full: the one nomination (h[5]) goes, whatever the clock says. */
	dir_put(&d, h[2 * SPP_DIR_WAYS], SPP_DIR_PAIRED);
	assert_int_equal(d.n, N_ENTRIES);
	assert_int_equal(dir_find(&d, h[5], 0), 0);
	for (unsigned i = 0; i <= 2 * SPP_DIR_WAYS; i++)
		if (i != 5)
			assert_int_not_equal(dir_find(&d, h[i], 0), 0);
	/* Full of precious entries, the table under half full: a client
	 * may have made such hashes; the clock picks, no growth. */
	dir_put(&d, h[2 * SPP_DIR_WAYS + 1], 2);
	assert_int_equal(d.n, N_ENTRIES);
	assert_int_equal(dir_find(&d, h[2 * SPP_DIR_WAYS + 1], 0), 2);
	assert_int_equal(dir_drop(&d, h[2 * SPP_DIR_WAYS + 1], 0), 1);
	dir_free(&d);

	/* The same at half full: grows rather than lose one. */
	assert_int_equal(dir_init(&d, N_ENTRIES, 2 * N_ENTRIES), 0);
	for (unsigned i = 0; i < 2 * SPP_DIR_WAYS; i++)
		dir_put(&d, h[i], i & 1 ? SPP_DIR_STORED : SPP_DIR_PAIRED);
	base = fill_half(&d, h[0]);
	assert_int_equal(d.n, N_ENTRIES);
	dir_put(&d, h[2 * SPP_DIR_WAYS + 1], 2);
	assert_int_equal(d.n, 2 * N_ENTRIES);
	for (unsigned i = 0; i < 2 * SPP_DIR_WAYS; i++)
		assert_int_not_equal(dir_find(&d, h[i], 0), 0);
	assert_int_equal(dir_find(&d, h[2 * SPP_DIR_WAYS + 1], 0), 2);
	assert_true(d.used <= 2 * SPP_DIR_WAYS + 1 + base);
	dir_free(&d);

	/* At its max it evicts one after all, and counts right. */
	assert_int_equal(dir_init(&d, N_ENTRIES, N_ENTRIES), 0);
	for (unsigned i = 0; i <= 2 * SPP_DIR_WAYS; i++)
		dir_put(&d, h[i], SPP_DIR_PAIRED);
	assert_int_equal(d.n, N_ENTRIES);
	assert_int_equal(d.used, 2 * SPP_DIR_WAYS);
	assert_int_equal(dir_find(&d, h[2 * SPP_DIR_WAYS], 0), SPP_DIR_PAIRED);
	dir_free(&d);
}

/* dir_set rewrites an entry in the way it holds (a reader never finds
 * the hash missing) and drops the hash's other entries; with none, it
 * places one.  Also where the hash's two sets are one. */
static void test_set(void **state)
{
	uint64_t h[2], key, *way = NULL;
	struct dir d;

	(void)state;
	same_sets(h, 2, 7);
	key = h[0] & SPP_DIR_HASH;
	assert_int_equal(dir_init(&d, N_ENTRIES, N_ENTRIES), 0);
	dir_put(&d, h[1], 1);
	dir_put(&d, h[0], 1);
	dir_put(&d, h[0], 2);
	dir_put(&d, h[0], 3);
	assert_int_equal(d.used, 4);
	for (unsigned k = 0; k < 2 && !way; k++)
		for (unsigned w = 0; w < SPP_DIR_WAYS && !way; w++) {
			uint64_t *e = &d.e[spp_dir_set(h[0], d.n, k) + w];

			if (*e && (*e & SPP_DIR_HASH) == key)
				way = e;
		}
	assert_non_null(way);
	dir_set(&d, h[0], SPP_DIR_PAIRED);
	assert_int_equal(*way, key | SPP_DIR_PAIRED);	/* in place */
	assert_int_equal(d.used, 2);
	assert_int_equal(dir_find(&d, h[0], 1), SPP_DIR_PAIRED);
	assert_int_equal(dir_drop(&d, h[0], 0), 1);	/* the only one */
	assert_int_equal(dir_find(&d, h[1], 2), 1);	/* untouched */
	dir_set(&d, h[0], SPP_DIR_STORED);		/* none: placed */
	assert_int_equal(dir_find(&d, h[0], 1), SPP_DIR_STORED);
	assert_int_equal(d.used, 2);

	/* 0x5a: both sets are set 0. */
	assert_int_equal(spp_dir_set(0x5a, d.n, 0), spp_dir_set(0x5a, d.n, 1));
	dir_put(&d, 0x5a, 1);
	dir_put(&d, 0x5a, 2);
	dir_set(&d, 0x5a, SPP_DIR_PAIRED);
	assert_int_equal(dir_find(&d, 0x5a, 1), SPP_DIR_PAIRED);
	dir_set(&d, 0x5a, SPP_DIR_STORED);
	assert_int_equal(dir_find(&d, 0x5a, 1), SPP_DIR_STORED);
	assert_int_equal(d.used, 3);
	assert_int_equal(dir_drop(&d, 0x5a, 0), 1);
	dir_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_against_shadow),
		cmocka_unit_test(test_place),
		cmocka_unit_test(test_keeps_precious),
		cmocka_unit_test(test_set),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
