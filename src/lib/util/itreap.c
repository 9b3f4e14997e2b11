/*
 * itreap.c - treap rotations over index-linked nodes.
 *
 * Insertion links the node as a leaf, then rotates it above each ancestor
 * whose priority is lower.  Deletion rotates the node down, each time
 * lifting its child of higher priority, until it has at most one child,
 * then splices it out.  Both keep the in-order sequence, so a search
 * order that was valid stays valid.
 */
#include "itreap.h"

#define L(i) sp_ilinks(base, stride, (i))

/* Point the link that held @old (child of @parent on @right, or the
 * root when @parent is SP_INIL) at @new. */
static void relink(struct sp_itreap *t, void *base, size_t stride,
		   uint32_t parent, int right, uint32_t new)
{
	if (parent == SP_INIL)
		t->root = new;
	else if (right)
		L(parent)->right = new;
	else
		L(parent)->left = new;
}

void sp_itreap_insert(struct sp_itreap *t, void *base, size_t stride,
		      const struct sp_ipath *path, uint32_t n)
{
	uint32_t pn = sp_iprio(t->seed, n);
	int k = (int)path->depth - 1;

	L(n)->left = L(n)->right = SP_INIL;
	if (k < 0) {
		t->root = n;
		return;
	}
	relink(t, base, stride, path->node[k], path->right[k], n);

	/* Rotate n above node[k] while it outranks it. */
	while (k >= 0) {
		uint32_t p = path->node[k];
		uint32_t pp = sp_iprio(t->seed, p);

		if (pn < pp || (pn == pp && n > p))
			break;
		if (path->right[k]) {	/* n is p's right child */
			L(p)->right = L(n)->left;
			L(n)->left = p;
		} else {
			L(p)->left = L(n)->right;
			L(n)->right = p;
		}
		k--;
		if (k < 0)
			t->root = n;
		else
			relink(t, base, stride, path->node[k], path->right[k],
			       n);
	}
}

void sp_itreap_delete(struct sp_itreap *t, void *base, size_t stride,
		      const struct sp_ipath *path, uint32_t n)
{
	uint32_t parent = SP_INIL;
	int side = 0;

	if (path->depth) {
		parent = path->node[path->depth - 1];
		side = path->right[path->depth - 1];
	}
	for (;;) {
		uint32_t l = L(n)->left, r = L(n)->right, c;

		if (l == SP_INIL || r == SP_INIL) {
			relink(t, base, stride, parent, side,
			       l == SP_INIL ? r : l);
			return;
		}
		/* Lift the child of higher priority above n. */
		uint32_t lp = sp_iprio(t->seed, l), rp = sp_iprio(t->seed, r);

		if (lp > rp || (lp == rp && l < r)) {
			c = l;
			L(n)->left = L(c)->right;
			L(c)->right = n;
			relink(t, base, stride, parent, side, c);
			parent = c;
			side = 1;
		} else {
			c = r;
			L(n)->right = L(c)->left;
			L(c)->left = n;
			relink(t, base, stride, parent, side, c);
			parent = c;
			side = 0;
		}
	}
}

/* Node @a outranks @b in the heap. */
static int outranks(uint64_t seed, uint32_t a, uint32_t b)
{
	uint32_t pa = sp_iprio(seed, a), pb = sp_iprio(seed, b);

	return pa > pb || (pa == pb && a < b);
}

long sp_itreap_check(const struct sp_itreap *t, void *base, size_t stride,
		     long max)
{
	/* Iterative walk; the stack never holds more than depth + 1 nodes. */
	uint32_t stack[SP_IPATH_MAX + 2];
	unsigned sp = 0;
	long count = 0;

	if (t->root == SP_INIL)
		return 0;
	stack[sp++] = t->root;
	while (sp) {
		uint32_t n = stack[--sp];
		uint32_t kid[2] = { L(n)->left, L(n)->right };

		if (++count > max)
			return -1;
		for (int i = 0; i < 2; i++) {
			if (kid[i] == SP_INIL)
				continue;
			if (!outranks(t->seed, n, kid[i]))
				return -1;
			if (sp >= sizeof(stack) / sizeof(stack[0]))
				return -1;
			stack[sp++] = kid[i];
		}
	}
	return count;
}
