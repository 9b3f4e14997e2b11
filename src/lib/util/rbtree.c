/*
 * rbtree.c - red-black tree rebalancing, after the classic textbook
 * algorithm: insertion fixes a red-red violation by recolouring up the
 * tree or by at most two rotations; deletion fixes a missing black by the
 * four sibling cases.  A NULL child counts as black.
 */
#include "rbtree.h"

static inline int is_red(const struct sp_rb_node *n)
{
	return n && n->red;
}

/* Make @new take @old's place under @old's parent. */
static void replace_child(struct sp_rb_root *root, struct sp_rb_node *old,
			  struct sp_rb_node *new)
{
	struct sp_rb_node *p = old->parent;

	if (!p)
		root->node = new;
	else if (p->left == old)
		p->left = new;
	else
		p->right = new;
	if (new)
		new->parent = p;
}

static void rotate_left(struct sp_rb_root *root, struct sp_rb_node *x)
{
	struct sp_rb_node *y = x->right;

	x->right = y->left;
	if (y->left)
		y->left->parent = x;
	replace_child(root, x, y);
	y->left = x;
	x->parent = y;
}

static void rotate_right(struct sp_rb_root *root, struct sp_rb_node *x)
{
	struct sp_rb_node *y = x->left;

	x->left = y->right;
	if (y->right)
		y->right->parent = x;
	replace_child(root, x, y);
	y->right = x;
	x->parent = y;
}

void sp_rb_insert_color(struct sp_rb_node *n, struct sp_rb_root *root)
{
	struct sp_rb_node *p, *g, *u;

	while ((p = n->parent) && p->red) {
		g = p->parent;	/* exists: a red node is never the root */
		if (p == g->left) {
			u = g->right;
			if (is_red(u)) {
				p->red = u->red = 0;
				g->red = 1;
				n = g;
				continue;
			}
			if (n == p->right) {
				rotate_left(root, p);
				n = p;
				p = n->parent;
			}
			p->red = 0;
			g->red = 1;
			rotate_right(root, g);
		} else {
			u = g->left;
			if (is_red(u)) {
				p->red = u->red = 0;
				g->red = 1;
				n = g;
				continue;
			}
			if (n == p->left) {
				rotate_right(root, p);
				n = p;
				p = n->parent;
			}
			p->red = 0;
			g->red = 1;
			rotate_left(root, g);
		}
	}
	root->node->red = 0;
}

/* Restore the black height after a black node was removed above @x
 * (which may be NULL), whose parent is @p. */
static void erase_fixup(struct sp_rb_root *root, struct sp_rb_node *x,
			struct sp_rb_node *p)
{
	struct sp_rb_node *w;

	while (x != root->node && !is_red(x)) {
		if (x == p->left) {
			w = p->right;
			if (is_red(w)) {
				w->red = 0;
				p->red = 1;
				rotate_left(root, p);
				w = p->right;
			}
			if (!is_red(w->left) && !is_red(w->right)) {
				w->red = 1;
				x = p;
				p = x->parent;
				continue;
			}
			if (!is_red(w->right)) {
				w->left->red = 0;
				w->red = 1;
				rotate_right(root, w);
				w = p->right;
			}
			w->red = p->red;
			p->red = 0;
			w->right->red = 0;
			rotate_left(root, p);
		} else {
			w = p->left;
			if (is_red(w)) {
				w->red = 0;
				p->red = 1;
				rotate_right(root, p);
				w = p->left;
			}
			if (!is_red(w->left) && !is_red(w->right)) {
				w->red = 1;
				x = p;
				p = x->parent;
				continue;
			}
			if (!is_red(w->left)) {
				w->right->red = 0;
				w->red = 1;
				rotate_left(root, w);
				w = p->left;
			}
			w->red = p->red;
			p->red = 0;
			w->left->red = 0;
			rotate_right(root, p);
		}
		x = root->node;
		break;
	}
	if (x)
		x->red = 0;
}

void sp_rb_erase(struct sp_rb_node *n, struct sp_rb_root *root)
{
	struct sp_rb_node *x, *p;
	int removed_red;

	if (!n->left || !n->right) {
		x = n->left ? n->left : n->right;
		p = n->parent;
		removed_red = n->red;
		replace_child(root, n, x);
	} else {
		/* Splice out the successor y and put it in n's place. */
		struct sp_rb_node *y = n->right;

		while (y->left)
			y = y->left;
		removed_red = y->red;
		x = y->right;
		if (y->parent == n) {
			p = y;
		} else {
			p = y->parent;
			replace_child(root, y, x);
			y->right = n->right;
			y->right->parent = y;
		}
		replace_child(root, n, y);
		y->left = n->left;
		y->left->parent = y;
		y->red = n->red;
	}
	if (!removed_red && root->node)
		erase_fixup(root, x, p);
}

struct sp_rb_node *sp_rb_first(const struct sp_rb_root *root)
{
	struct sp_rb_node *n = root->node;

	while (n && n->left)
		n = n->left;
	return n;
}

struct sp_rb_node *sp_rb_last(const struct sp_rb_root *root)
{
	struct sp_rb_node *n = root->node;

	while (n && n->right)
		n = n->right;
	return n;
}

struct sp_rb_node *sp_rb_next(const struct sp_rb_node *n)
{
	struct sp_rb_node *p;

	if (n->right) {
		n = n->right;
		while (n->left)
			n = n->left;
		return (struct sp_rb_node *)n;
	}
	while ((p = n->parent) && n == p->right)
		n = p;
	return p;
}

struct sp_rb_node *sp_rb_prev(const struct sp_rb_node *n)
{
	struct sp_rb_node *p;

	if (n->left) {
		n = n->left;
		while (n->right)
			n = n->right;
		return (struct sp_rb_node *)n;
	}
	while ((p = n->parent) && n == p->left)
		n = p;
	return p;
}

/* Black height of the subtree at @n, or -1 if it breaks an invariant. */
static long check_subtree(const struct sp_rb_node *n, long *count)
{
	long lh, rh;

	if (!n)
		return 1;
	(*count)++;
	if (n->left && n->left->parent != n)
		return -1;
	if (n->right && n->right->parent != n)
		return -1;
	if (n->red && (is_red(n->left) || is_red(n->right)))
		return -1;
	lh = check_subtree(n->left, count);
	rh = check_subtree(n->right, count);
	if (lh < 0 || rh < 0 || lh != rh)
		return -1;
	return lh + !n->red;
}

long sp_rb_check(const struct sp_rb_root *root)
{
	long count = 0;

	if (root->node && (root->node->red || root->node->parent))
		return -1;
	if (check_subtree(root->node, &count) < 0)
		return -1;
	return count;
}
