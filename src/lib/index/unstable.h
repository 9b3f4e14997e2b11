/*
 * unstable.h - the unstable tree: pages unchanged since the last pass,
 * ordered by their live content, rebuilt from empty at every pass.
 *
 * Nodes live in an arena that a new pass simply empties, so the tree
 * never needs a node removed: a page that leaves (written, unregistered,
 * merged) leaves its node behind.  What the node stands for is decided
 * when a search meets it:
 *
 *   - a page node (ref = page id) is live while the page's record is
 *     REC_UNSTABLE and links back to the node; its content is the page's
 *     live bytes;
 *   - a stable ref (ref = SP_UREF_STABLE | stable node) marks a page that
 *     merged this pass: the node keeps routing searches by that stable
 *     page's immutable content;
 *   - anything else is dead: searches always go left there, so the walk
 *     stays deterministic and the tree usable.
 *
 * As in KSM, stale content only costs missed matches: the tree is
 * balanced by priorities, never by content, and a merge is only ever
 * made after comparing bytes under write protection.
 */
#ifndef SP_INDEX_UNSTABLE_H
#define SP_INDEX_UNSTABLE_H

#include <stdint.h>

#include "../util/alloc.h"
#include "../util/itreap.h"

#define SP_UREF_STABLE 0x80000000u

struct sp_unode {
	uint32_t left, right;	/* treap links (struct sp_ilinks) */
	uint32_t ref;		/* page id, or SP_UREF_STABLE | stable node */
};

struct sp_unstable {
	struct sp_itreap tree;
	struct sp_unode *node;	/* arena */
	uint32_t n;		/* nodes used this pass */
	uint32_t cap;		/* nodes allocated */
	uint32_t peak;		/* most nodes used by one recent pass */
	struct sp_mem mem;	/* allocator and metadata byte counter */
};

/* sp_unstable_init / destroy - an empty tree whose priorities are seeded
 * with @seed, its arena allocated from @mem. */
void sp_unstable_init(struct sp_unstable *u, uint64_t seed,
		      const struct sp_mem *mem);
void sp_unstable_destroy(struct sp_unstable *u);

/*
 * sp_unstable_reset - start a new pass: empty the tree.  The arena keeps
 * its memory unless the last pass used far less of it.
 */
void sp_unstable_reset(struct sp_unstable *u);

/*
 * sp_unstable_alloc - a fresh node naming @ref, not yet linked.
 * Return: its index, or SP_INIL if the arena cannot grow.
 */
uint32_t sp_unstable_alloc(struct sp_unstable *u, uint32_t ref);

#endif
