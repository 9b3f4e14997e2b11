/*
 * test_index.c - the stable and unstable indexes (index/stable.c,
 * index/unstable.c) on their own, over a backend of plain arrays.
 *
 * The engine tests reach these only through the scan, where a checksum
 * collision never happens; here pages with the same 32-bit hash (found
 * by a birthday search) and the same bucket are made on purpose, chains
 * and dups come and go, a page that cannot be read is met, and the
 * verifier is shown corrupt indexes.  After every change the verifier
 * must pass and every content must be found again.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "index/stable.h"
#include "index/unstable.h"
#include "util/hash.h"

#define PS SP_PAGE_SIZE
#define NPAGE 6000

/* The backend: stable page k is pages[k]; peeks are counted, and a page
 * marked unreadable cannot be peeked. */
static unsigned char (*pages)[PS];
static unsigned char unreadable[NPAGE];
static unsigned released[NPAGE];
static unsigned long peeks;

static const void *t_stable_peek(void *be, sp_spage_t page, void *buf)
{
	(void)be;
	(void)buf;
	peeks++;
	return unreadable[page] ? NULL : pages[page];
}

static void t_stable_release(void *be, sp_spage_t first, size_t n)
{
	(void)be;
	for (size_t k = 0; k < n; k++)
		released[first + k]++;
}

static const struct sp_backend_ops t_ops = {
	.stable_peek = t_stable_peek,
	.stable_release = t_stable_release,
};

static uint64_t meta, fixed;
static void *staging[1];

/* The bytes of value @v: every byte v's low one, v itself first. */
static void fill_page(void *pg, uint64_t v)
{
	memset(pg, (int)(v & 0xff), PS);
	memcpy(pg, &v, sizeof(v));
}

static void fill(unsigned k, uint64_t v)
{
	fill_page(pages[k], v);
}

static uint32_t h32(unsigned k)
{
	return (uint32_t)sp_hash_page(pages[k]);
}

static void check(struct sp_stable *st)
{
	char why[256] = "";

	if (sp_stable_verify(st, why, sizeof(why)))
		fail_msg("verify: %s", why);
}

static void init(struct sp_stable *st)
{
	struct sp_mem m = { &sp_libc_allocator, &meta };
	struct sp_mem f = { &sp_libc_allocator, &fixed };

	memset(unreadable, 0, sizeof(unreadable));
	memset(released, 0, sizeof(released));
	assert_int_equal(sp_stable_init(st, &t_ops, NULL, staging, &m, &f), 0);
}

static void fini(struct sp_stable *st)
{
	sp_stable_destroy(st);
	assert_int_equal(meta, 0);
	assert_int_equal(fixed, 0);
}

/* Page k's content as a new stable node with one sharer (as phase 2
 * leaves it).  It must not be there yet.  Return: the node. */
static uint32_t add(struct sp_stable *st, unsigned k, uint64_t max_sharing)
{
	uint32_t match, d, node;

	staging[0] = pages[k];
	assert_int_equal(sp_stable_search(st, h32(k), pages[k], max_sharing,
					  &match, &d), 0);
	assert_int_equal(d, SP_INIL);
	assert_int_equal(sp_stable_new(st, 0, h32(k), match, &node), 0);
	sn(st, node)->pending = 1;
	sp_stable_set_page(st, node, k);
	sp_stable_add_sharer(st, node);
	sp_stable_unpend(st, node);
	return node;
}

/* The node page k's content joins (it must be found, with room). */
static uint32_t find(struct sp_stable *st, unsigned k, uint64_t max_sharing)
{
	uint32_t match, d;

	assert_int_equal(sp_stable_search(st, h32(k), pages[k], max_sharing,
					  &match, &d), 0);
	assert_int_not_equal(match, SP_INIL);
	return d;
}

static int u64_cmp(const void *p, const void *q)
{
	uint64_t x = *(const uint64_t *)p, y = *(const uint64_t *)q;

	return (x > y) - (x < y);
}

/* Two page values whose contents have the same low 32 hash bits. */
static void collision(uint64_t *a, uint64_t *b)
{
	enum { N = 1 << 18 };
	uint64_t *e = malloc(N * sizeof(*e));
	unsigned char *pg = malloc(PS);

	assert_non_null(e);
	assert_non_null(pg);
	for (uint64_t v = 0; v < N; v++) {
		fill_page(pg, v + 1);
		e[v] = (uint64_t)(uint32_t)sp_hash_page(pg) << 32 | v;
	}
	qsort(e, N, sizeof(*e), u64_cmp);
	for (unsigned i = 1; i < N; i++)
		if (e[i] >> 32 == e[i - 1] >> 32) {
			*a = (e[i - 1] & 0xffffffffu) + 1;
			*b = (e[i] & 0xffffffffu) + 1;
			free(e);
			free(pg);
			return;
		}
	free(e);
	free(pg);
	fail_msg("no 32-bit hash collision among %d pages", N);
}

static void test_many(void **state)
{
	struct sp_stable st;
	uint32_t node[NPAGE];
	uint32_t grown;

	(void)state;
	init(&st);
	for (unsigned k = 0; k < NPAGE; k++)
		fill(k, 1000 + k);
	for (unsigned k = 0; k < NPAGE; k++)
		node[k] = add(&st, k, 256);
	check(&st);
	grown = st.idx.n;
	assert_true(grown >= NPAGE / 2 && grown <= 2 * NPAGE);
	for (unsigned k = 0; k < NPAGE; k++) {
		assert_int_equal(find(&st, k, 256), node[k]);
		assert_true(sp_stable_has_hash(&st, h32(k)));
	}
	/* A content not there is settled by hashes alone, and
	 * sp_stable_has_hash says so without the bytes. */
	peeks = 0;
	for (unsigned k = 0; k < 200; k++) {
		unsigned char other[PS];
		uint32_t match, d, h;
		int known = 0;

		memset(other, 0x77, PS);
		memcpy(other, &k, sizeof(k));
		h = (uint32_t)sp_hash_page(other);
		for (unsigned j = 0; j < NPAGE; j++)
			known |= h32(j) == h;
		assert_int_equal(sp_stable_has_hash(&st, h), known);
		assert_int_equal(sp_stable_search(&st, h, other, 256, &match,
						  &d), 0);
		assert_int_equal(match, SP_INIL);
	}
	assert_true(peeks <= 2);	/* a 32-bit hash met by chance */
	/* Dropping the sharers frees nodes and pages, and the index
	 * shrinks with them. */
	for (unsigned k = 0; k < NPAGE; k++)
		if (k % 50) {
			sp_stable_drop_sharer(&st, node[k]);
			assert_int_equal(released[k], 1);
		}
	check(&st);
	assert_true(st.idx.n < grown);
	for (unsigned k = 0; k < NPAGE; k += 50)
		assert_int_equal(find(&st, k, 256), node[k]);
	assert_int_equal(st.pages_shared, NPAGE / 50);
	for (unsigned k = 0; k < NPAGE; k += 50)
		sp_stable_drop_sharer(&st, node[k]);
	check(&st);
	assert_int_equal(st.nlive, 0);
	for (unsigned k = 0; k < NPAGE; k++)
		assert_false(sp_stable_has_hash(&st, h32(k)));
	fini(&st);
}

static void test_hash_collision(void **state)
{
	struct sp_stable st;
	uint64_t va = 0, vb = 0;
	uint32_t na, nb, match, d;

	(void)state;
	collision(&va, &vb);
	init(&st);
	fill(0, va);
	fill(1, vb);
	assert_int_equal(h32(0), h32(1));
	assert_memory_not_equal(pages[0], pages[1], PS);
	na = add(&st, 0, 256);
	/* Same hash, other bytes: not a match, and its own node. */
	assert_int_equal(sp_stable_search(&st, h32(1), pages[1], 256, &match,
					  &d), 0);
	assert_int_equal(match, SP_INIL);
	nb = add(&st, 1, 256);
	check(&st);
	assert_int_equal(find(&st, 0, 256), na);
	assert_int_equal(find(&st, 1, 256), nb);
	/* An unreadable node of the same hash met before the match (nb
	 * went in last, so it heads the chain): unknown, not absent. */
	unreadable[1] = 1;
	assert_int_equal(sp_stable_search(&st, h32(0), pages[0], 256, &match,
					  &d), -EAGAIN);
	assert_int_equal(match, SP_INIL);
	assert_int_equal(d, SP_INIL);
	unreadable[1] = 0;
	/* Either goes without disturbing the other. */
	sp_stable_drop_sharer(&st, na);
	check(&st);
	assert_int_equal(find(&st, 1, 256), nb);
	sp_stable_drop_sharer(&st, nb);
	check(&st);
	fini(&st);
}

/* max_page_sharing 2: a third sharer makes a chain of two dups; they
 * keep their place in the index as the chain grows and collapses. */
static void test_chains(void **state)
{
	struct sp_stable st;
	uint32_t n0, n1, d, c, other;

	(void)state;
	init(&st);
	fill(0, 42);
	fill(1, 42);		/* page 1: a second stable page, same bytes */
	fill(2, 43);
	other = add(&st, 2, 2);
	n0 = add(&st, 0, 2);
	assert_int_equal(find(&st, 0, 2), n0);
	sp_stable_add_sharer(&st, n0);	/* full at 2 */
	check(&st);
	/* Full: the search names the plain node but offers no page. */
	{
		uint32_t match;

		assert_int_equal(sp_stable_search(&st, h32(0), pages[0], 2,
						  &match, &d), 0);
		assert_int_equal(match, n0);
		assert_int_equal(d, SP_INIL);
		staging[0] = pages[1];
		assert_int_equal(sp_stable_new(&st, 0, h32(1), match, &n1), 0);
	}
	sn(&st, n1)->pending = 1;
	sp_stable_set_page(&st, n1, 1);
	sp_stable_add_sharer(&st, n1);
	sp_stable_unpend(&st, n1);
	check(&st);
	assert_int_equal(st.chains, 1);
	assert_int_equal(st.dups, 2);
	c = *sp_ibucket(&st.idx, h32(0));
	while (sn(&st, c)->kind != SN_CHAIN)
		c = sn(&st, c)->hnext;
	assert_int_equal(find(&st, 0, 2), n1);	/* the dup with room */
	/* n0 empties: the chain collapses into n1, in the chain's place. */
	sp_stable_drop_sharer(&st, n0);
	sp_stable_drop_sharer(&st, n0);
	assert_int_equal(released[0], 1);
	check(&st);
	assert_int_equal(st.chains, 0);
	assert_int_equal(st.dups, 0);
	assert_int_equal(sn(&st, n1)->kind, SN_PLAIN);
	assert_int_equal(find(&st, 0, 2), n1);
	assert_int_equal(find(&st, 2, 2), other);
	sp_stable_drop_sharer(&st, n1);
	sp_stable_drop_sharer(&st, other);
	check(&st);
	fini(&st);
}

/* The verifier sees what a bug would leave behind. */
static void test_verify_catches(void **state)
{
	struct sp_stable st;
	uint32_t n[3], b;
	char why[256];

	(void)state;
	init(&st);
	for (unsigned k = 0; k < 3; k++) {
		fill(k, 7 + k);
		n[k] = add(&st, k, 256);
	}
	check(&st);
	/* A hash that is not its content's. */
	sn(&st, n[1])->hash ^= 1u << 31;
	assert_int_equal(sp_stable_verify(&st, why, sizeof(why)), -EUCLEAN);
	sn(&st, n[1])->hash ^= 1u << 31;
	/* A node lost from its chain. */
	b = h32(2) & (st.idx.n - 1);
	assert_int_equal(st.idx.head[b], n[2]);
	st.idx.head[b] = sn(&st, n[2])->hnext;
	assert_int_equal(sp_stable_verify(&st, why, sizeof(why)), -EUCLEAN);
	/* ... and met twice (a cycle). */
	st.idx.head[b] = n[2];
	sn(&st, n[2])->hnext = n[2];
	assert_int_equal(sp_stable_verify(&st, why, sizeof(why)), -EUCLEAN);
	sn(&st, n[2])->hnext = SP_INIL;
	check(&st);
	/* A counter off by one. */
	st.pages_sharing++;
	assert_int_equal(sp_stable_verify(&st, why, sizeof(why)), -EUCLEAN);
	st.pages_sharing--;
	for (unsigned k = 0; k < 3; k++)
		sp_stable_drop_sharer(&st, n[k]);
	check(&st);
	fini(&st);
}

/* ---- the unstable tree: chains through page records ---------------- */

enum { UN = 20000, UBITS = 12 };

/* Records for page ids [0, UN) in chunks of one table, as the engine
 * keeps them; every record REC_UNSTABLE with checksum ukey(id). */
struct urecs {
	struct sp_chunktab t;
	struct sp_rb_root tree;
	uint32_t id[UN];	/* page id of record k */
	struct sp_rec *r[UN];
};

static uint32_t ukey(uint32_t k)
{
	return (k * 2654435761u) & ((1u << UBITS) - 1);
}

static void urecs_init(struct urecs *x, const struct sp_mem *m)
{
	memset(x, 0, sizeof(*x));
	sp_chunktab_init(&x->t, m);
	for (uint32_t k = 0; k < UN; k++) {
		uintptr_t va = 0x10000000u + ((uintptr_t)k << 12);
		struct sp_chunk *c;

		assert_int_equal(sp_chunk_get(&x->t, &x->tree, NULL, NULL, va,
					      &c), 0);
		x->id[k] = page_id(c, chunk_slot(va));
		x->r[k] = &c->rec[chunk_slot(va)];
		x->r[k]->w = REC_UNSTABLE;
		rec_set_csum(x->r[k], ukey(k));
		c->nlive++;
	}
}

static void urecs_fini(struct urecs *x)
{
	struct sp_rb_node *n;

	while ((n = sp_rb_first(&x->tree))) {
		struct sp_chunk *c = sp_rb_container(n, struct sp_chunk, node);

		c->nlive = 0;
		sp_chunk_put(&x->t, &x->tree, c);
	}
	sp_chunktab_destroy(&x->t);
}

static void uverify(const struct sp_unstable *u)
{
	char why[160] = "";

	if (sp_unstable_verify(u, why, sizeof(why)))
		fail_msg("%s", why);
}

/* How often page k is met on the chain its key picks. */
static int umet(const struct sp_unstable *u, const struct urecs *x,
		uint32_t k)
{
	int found = 0;

	for (uint32_t id = sp_unstable_first(u, ukey(k)); id != SP_INIL;
	     id = sp_unstable_rec(u, id)->link)
		found += id == x->id[k];
	return found;
}

static void test_unstable(void **state)
{
	struct sp_mem m = { &sp_libc_allocator, &meta };
	struct sp_unstable u;
	struct urecs *x = malloc(sizeof(*x));

	(void)state;
	assert_non_null(x);
	urecs_init(x, &m);
	assert_int_equal(sp_unstable_init(&u, UBITS, &x->t, &m), 0);
	for (unsigned pass = 0; pass < 3; pass++) {
		unsigned n = pass == 1 ? UN : UN / 10;

		for (uint32_t k = 0; k < n; k++) {
			sp_unstable_add(&u, x->r[k], x->id[k]);
			if (k % 997 == 0)
				uverify(&u);
		}
		uverify(&u);
		assert_int_equal(u.n, n);
		/* Grown with the pass (at most four per bucket), never
		 * past the key's bits. */
		assert_true(u.idx.n <= 1u << UBITS);
		assert_true(4 * (uint64_t)u.idx.n >= (n < (4u << UBITS) ?
						      n : 4u << UBITS));
		/* Each page is on its key's chain, once; the ones not
		 * added this pass are on none. */
		for (uint32_t k = 0; k < UN; k += 101) {
			assert_int_equal(umet(&u, x, k), k < n);
			assert_int_equal(sp_unstable_holds(&u, x->r[k],
							   x->id[k]), k < n);
		}
		/* Removing every third page leaves the rest findable;
		 * removing again, or a page never added, changes nothing. */
		for (uint32_t k = 0; k < n; k += 3)
			assert_int_equal(sp_unstable_remove(&u, x->r[k],
							    x->id[k]), 1);
		for (uint32_t k = 0; k < UN; k += 3)
			assert_int_equal(sp_unstable_remove(&u, x->r[k],
							    x->id[k]), 0);
		uverify(&u);
		assert_int_equal(u.n, n - (n + 2) / 3);
		for (uint32_t k = 0; k < n; k++)
			assert_int_equal(umet(&u, x, k), k % 3 != 0);
		sp_unstable_reset(&u);
		assert_int_equal(u.n, 0);
		uverify(&u);
		for (uint32_t b = 0; b < u.idx.n; b++)
			assert_int_equal(u.idx.head[b], SP_INIL);
		/* Sized for the larger of the last two passes: one or two
		 * members per bucket, or all the key's bits. */
		assert_true(u.idx.n == 1u << UBITS ||
			    2 * (uint64_t)u.idx.n >= (pass ? UN : UN / 10));
		assert_true(pass == 0 || u.idx.n == 1u << UBITS);
	}
	sp_unstable_destroy(&u);
	urecs_fini(x);
	free(x);
	assert_int_equal(meta, 0);
}

/* The verifier is shown broken chains. */
static void test_unstable_verify(void **state)
{
	struct sp_mem m = { &sp_libc_allocator, &meta };
	struct sp_unstable u;
	struct urecs *x = malloc(sizeof(*x));
	char why[160];
	uint32_t b, first, save;

	(void)state;
	assert_non_null(x);
	urecs_init(x, &m);
	assert_int_equal(sp_unstable_init(&u, UBITS, &x->t, &m), 0);
	/* Pages 0 and 4096 share key 0: one chain of two. */
	assert_int_equal(ukey(0), ukey(4096));
	for (uint32_t k = 1; k < 300; k++)
		sp_unstable_add(&u, x->r[k], x->id[k]);
	sp_unstable_add(&u, x->r[0], x->id[0]);
	sp_unstable_add(&u, x->r[4096], x->id[4096]);
	uverify(&u);
	b = ukey(0) & (u.idx.n - 1);
	first = u.idx.head[b];
	assert_int_equal(first, x->id[4096]);
	/* A member whose state changed in place. */
	rec_set_state(x->r[4096], REC_SEEN);
	assert_int_equal(sp_unstable_verify(&u, why, sizeof(why)), -EUCLEAN);
	rec_set_state(x->r[4096], REC_UNSTABLE);
	/* A member whose checksum changed in place. */
	rec_set_csum(x->r[4096], ukey(1));
	assert_int_equal(sp_unstable_verify(&u, why, sizeof(why)), -EUCLEAN);
	rec_set_csum(x->r[4096], ukey(4096));
	/* A cycle. */
	save = x->r[0]->link;
	x->r[0]->link = first;
	assert_int_equal(sp_unstable_verify(&u, why, sizeof(why)), -EUCLEAN);
	x->r[0]->link = save;
	/* A member cut off its chain (link rewritten in place). */
	x->r[4096]->link = SP_INIL;
	assert_int_equal(sp_unstable_verify(&u, why, sizeof(why)), -EUCLEAN);
	x->r[4096]->link = x->id[0];
	/* A page id whose chunk is gone. */
	u.idx.head[b] = (x->t.used + 5) << SP_CHUNK_SHIFT;
	assert_int_equal(sp_unstable_verify(&u, why, sizeof(why)), -EUCLEAN);
	u.idx.head[b] = first;
	uverify(&u);
	sp_unstable_destroy(&u);
	urecs_fini(x);
	free(x);
	assert_int_equal(meta, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_hash_collision),
		cmocka_unit_test(test_chains),
		cmocka_unit_test(test_verify_catches),
		cmocka_unit_test(test_unstable),
		cmocka_unit_test(test_unstable_verify),
	};
	int r;

	pages = calloc(NPAGE, PS);
	if (!pages)
		return 1;
	r = cmocka_run_group_tests(tests, NULL, NULL);
	free(pages);
	return r;
}
