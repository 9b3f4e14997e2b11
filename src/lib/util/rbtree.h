/*
 * rbtree.h - intrusive red-black tree with parent links.
 *
 * The node is embedded in the caller's struct; the caller writes the
 * search loop (sp_rb_container to get back to its struct), then links the
 * new node where the loop stopped and calls sp_rb_insert_color().  Used
 * for address-ordered sets (registered regions, record chunks), where keys
 * never change while linked.
 *
 * Invariants (checked by sp_rb_check, used in tests and asserts):
 *   - the root is black; a red node has black children;
 *   - every root-to-leaf path holds the same number of black nodes;
 *   - n->left->parent == n and n->right->parent == n.
 */
#ifndef SP_UTIL_RBTREE_H
#define SP_UTIL_RBTREE_H

#include <stddef.h>

struct sp_rb_node {
	struct sp_rb_node *parent;
	struct sp_rb_node *left, *right;
	int red;		/* 1 red, 0 black */
};

struct sp_rb_root {
	struct sp_rb_node *node;
};

#define SP_RB_ROOT ((struct sp_rb_root){ NULL })

#define sp_rb_container(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/*
 * sp_rb_link - attach @n as the child @link of @parent (NULL for the
 * root), as found by the caller's search loop.  Follow with
 * sp_rb_insert_color().
 */
static inline void sp_rb_link(struct sp_rb_node *n, struct sp_rb_node *parent,
			      struct sp_rb_node **link)
{
	n->parent = parent;
	n->left = n->right = NULL;
	n->red = 1;
	*link = n;
}

/* sp_rb_insert_color - rebalance after sp_rb_link.  O(log n). */
void sp_rb_insert_color(struct sp_rb_node *n, struct sp_rb_root *root);

/* sp_rb_erase - unlink @n from the tree.  O(log n). */
void sp_rb_erase(struct sp_rb_node *n, struct sp_rb_root *root);

/* In-order walk.  Return: the node, or NULL past either end. */
struct sp_rb_node *sp_rb_first(const struct sp_rb_root *root);
struct sp_rb_node *sp_rb_last(const struct sp_rb_root *root);
struct sp_rb_node *sp_rb_next(const struct sp_rb_node *n);
struct sp_rb_node *sp_rb_prev(const struct sp_rb_node *n);

/*
 * sp_rb_check - verify the invariants above.
 * Return: the number of nodes, or -1 if an invariant fails.
 */
long sp_rb_check(const struct sp_rb_root *root);

#endif
