/*
 * test_itreap.c - the index treap against a shadow: keys are the nodes'
 * payloads, the search loop is written here as engine code writes it,
 * heap order and in-order key order are checked after every step, and
 * depth stays logarithmic even for sorted insertions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/itreap.h"

#define N 4000

struct node {
	uint32_t left, right;
	uint32_t key;
};

static struct node nodes[N];
static unsigned char present[N];

/* Walk to @key; return the node holding it or SP_INIL, with the path. */
static uint32_t search(struct sp_itreap *t, uint32_t key, struct sp_ipath *p)
{
	uint32_t i = t->root;

	sp_ipath_init(p);
	while (i != SP_INIL && nodes[i].key != key) {
		int right = key > nodes[i].key;

		assert_int_equal(sp_ipath_push(p, i, right), 0);
		i = right ? nodes[i].right : nodes[i].left;
	}
	return i;
}

static unsigned depth(struct sp_itreap *t, uint32_t i)
{
	unsigned l, r;

	if (i == SP_INIL)
		return 0;
	l = depth(t, nodes[i].left);
	r = depth(t, nodes[i].right);
	return 1 + (l > r ? l : r);
}

static void inorder(uint32_t i, uint32_t *prev, long *count)
{
	if (i == SP_INIL)
		return;
	inorder(nodes[i].left, prev, count);
	if (*count)
		assert_true(nodes[i].key > *prev);
	*prev = nodes[i].key;
	(*count)++;
	inorder(nodes[i].right, prev, count);
}

static void check(struct sp_itreap *t, long live)
{
	uint32_t prev = 0;
	long count = 0;

	assert_int_equal(sp_itreap_check(t, nodes, sizeof(nodes[0]), N), live);
	inorder(t->root, &prev, &count);
	assert_int_equal(count, live);
}

static void test_random(void **state)
{
	struct sp_itreap t = { SP_INIL, 0x1234 };
	struct sp_ipath p;
	long live = 0;

	(void)state;
	srand(11);
	memset(present, 0, sizeof(present));
	for (uint32_t i = 0; i < N; i++)
		nodes[i].key = (uint32_t)rand();	/* node i has key[i] */
	for (int step = 0; step < 40000; step++) {
		uint32_t i = (uint32_t)rand() % N;
		uint32_t found = search(&t, nodes[i].key, &p);

		if (present[i]) {
			assert_int_equal(found, i);
			sp_itreap_delete(&t, nodes, sizeof(nodes[0]), &p, i);
			present[i] = 0;
			live--;
		} else if (found == SP_INIL) {
			sp_itreap_insert(&t, nodes, sizeof(nodes[0]), &p, i);
			present[i] = 1;
			live++;
		}
		if (step % 101 == 0)
			check(&t, live);
	}
	check(&t, live);
}

static void test_sorted_stays_shallow(void **state)
{
	struct sp_itreap t = { SP_INIL, 99 };
	struct sp_ipath p;

	(void)state;
	for (uint32_t i = 0; i < N; i++) {
		nodes[i].key = i;
		assert_int_equal(search(&t, i, &p), SP_INIL);
		sp_itreap_insert(&t, nodes, sizeof(nodes[0]), &p, i);
	}
	check(&t, N);
	/* Expected ~2 ln N = 17; allow a wide margin, far below N. */
	assert_true(depth(&t, t.root) < 60);
	for (uint32_t i = 0; i < N; i++) {
		assert_int_equal(search(&t, i, &p), i);
		sp_itreap_delete(&t, nodes, sizeof(nodes[0]), &p, i);
	}
	assert_int_equal(t.root, SP_INIL);
}

static void test_path_bound(void **state)
{
	struct sp_ipath p;

	(void)state;
	sp_ipath_init(&p);
	for (unsigned i = 0; i < SP_IPATH_MAX; i++)
		assert_int_equal(sp_ipath_push(&p, i, 0), 0);
	assert_int_equal(sp_ipath_push(&p, 0, 0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_sorted_stays_shallow),
		cmocka_unit_test(test_path_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
