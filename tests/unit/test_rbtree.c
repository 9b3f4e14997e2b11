/*
 * test_rbtree.c - the red-black tree against a shadow bitmap: random
 * inserts and erases, invariants checked after every step, in-order walk
 * equal to the sorted shadow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/rbtree.h"

#define N 2000

struct item {
	struct sp_rb_node node;
	unsigned key;
};

static struct item items[N];
static unsigned char present[N];

static void insert(struct sp_rb_root *root, unsigned k)
{
	struct sp_rb_node **link = &root->node, *parent = NULL;

	while (*link) {
		struct item *it = sp_rb_container(*link, struct item, node);

		parent = *link;
		link = k < it->key ? &parent->left : &parent->right;
	}
	items[k].key = k;
	sp_rb_link(&items[k].node, parent, link);
	sp_rb_insert_color(&items[k].node, root);
	present[k] = 1;
}

static void check_order(struct sp_rb_root *root)
{
	unsigned expect = 0, count = 0;

	for (struct sp_rb_node *n = sp_rb_first(root); n; n = sp_rb_next(n)) {
		struct item *it = sp_rb_container(n, struct item, node);

		while (expect < N && !present[expect])
			expect++;
		assert_int_equal(it->key, expect);
		expect++;
		count++;
	}
	/* And backwards. */
	for (struct sp_rb_node *n = sp_rb_last(root); n; n = sp_rb_prev(n))
		count--;
	assert_int_equal(count, 0);
}

static void test_random(void **state)
{
	struct sp_rb_root root = SP_RB_ROOT;
	long live = 0;

	(void)state;
	srand(7);
	memset(present, 0, sizeof(present));
	for (int step = 0; step < 20000; step++) {
		unsigned k = (unsigned)rand() % N;

		if (present[k]) {
			sp_rb_erase(&items[k].node, &root);
			present[k] = 0;
			live--;
		} else {
			insert(&root, k);
			live++;
		}
		if (step % 97 == 0)
			check_order(&root);
		assert_int_equal(sp_rb_check(&root), live);
	}
	check_order(&root);
}

static void test_sequential(void **state)
{
	struct sp_rb_root root = SP_RB_ROOT;

	(void)state;
	memset(present, 0, sizeof(present));
	/* Ascending inserts: the worst case for an unbalanced tree. */
	for (unsigned k = 0; k < N; k++)
		insert(&root, k);
	assert_int_equal(sp_rb_check(&root), N);
	check_order(&root);
	for (unsigned k = 0; k < N; k += 2) {
		sp_rb_erase(&items[k].node, &root);
		present[k] = 0;
	}
	assert_int_equal(sp_rb_check(&root), N / 2);
	check_order(&root);
	for (unsigned k = 1; k < N; k += 2)
		sp_rb_erase(&items[k].node, &root);
	assert_null(root.node);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_sequential),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
