/*
 * unstable.h - the unstable tree: pages unchanged since the last pass,
 * found by their checksum and then their live bytes, rebuilt from empty
 * at every pass.
 *
 * KSM keeps these pages in a red-black tree ordered by live content,
 * which any writer may change; ours is a chained hash index keyed by the
 * checksum each page had when it was inserted (kept in the node).  A
 * search compares live bytes only with pages of the same checksum, so it
 * reads one bucket head and one or two nodes, where a tree walk reads
 * ~2 log n pages from all over memory.  Stale content costs what it
 * costs KSM, a missed match, and nothing more: a node's key never
 * changes, so the index cannot become disordered, and a merge is only
 * ever made after comparing bytes under write protection.  "Tree" stays
 * in the names, as in KSM's counters and documentation.
 *
 * Nodes live in an arena that a new pass simply empties, so a node is
 * never removed: a page that leaves (written, unregistered, merged)
 * leaves its node behind.  What the node stands for is decided when a
 * search meets it:
 *
 *   - a page node (ref = page id) is live while the page's record is
 *     REC_UNSTABLE and links back to the node;
 *   - a stable ref (ref = SP_UREF_STABLE | stable node) marks a page that
 *     is merging, or merged, into a new stable page this pass: searches
 *     find that content in the stable tree instead;
 *   - anything else is dead.
 * Only a live page node can match.
 */
#ifndef SP_INDEX_UNSTABLE_H
#define SP_INDEX_UNSTABLE_H

#include <stdint.h>

#include "../util/alloc.h"
#include "../util/ibuckets.h"

#define SP_UREF_STABLE 0x80000000u

struct sp_unode {		/* 12 bytes: paid per unstable page */
	uint32_t next;		/* next node of its bucket, or SP_INIL */
	uint32_t ref;		/* page id, or SP_UREF_STABLE | stable node */
	uint32_t csum;		/* the page's checksum when inserted */
};

struct sp_unstable {
	struct sp_ibuckets idx;	/* chain heads, by csum; between 1/2 and 2
				 * nodes per bucket (fewer after a reset) */
	struct sp_unode *node;	/* arena */
	uint32_t n;		/* nodes used this pass */
	uint32_t cap;		/* nodes allocated */
	uint32_t peak;		/* most nodes used by one recent pass */
	uint32_t max_buckets;	/* a power of two: no more csum bits */
	struct sp_mem mem;	/* allocator and metadata byte counter */
};

/* sp_unstable_init - an empty tree whose keys have @csum_bits bits, its
 * arena and buckets allocated from @mem.  Return: 0 or -ENOMEM. */
int sp_unstable_init(struct sp_unstable *u, unsigned csum_bits,
		     const struct sp_mem *mem);
void sp_unstable_destroy(struct sp_unstable *u);

/*
 * sp_unstable_reset - start a new pass: empty the tree.  The arena and
 * the buckets are sized for the larger of the last two passes.
 */
void sp_unstable_reset(struct sp_unstable *u);

/* sp_unstable_first - the first node of the chain holding key @csum (its
 * nodes have other keys too: compare node[i].csum), or SP_INIL. */
static inline uint32_t sp_unstable_first(const struct sp_unstable *u,
					 uint32_t csum)
{
	return *sp_ibucket(&u->idx, csum);
}

/*
 * sp_unstable_add - a fresh node naming @ref with key @csum, in the tree.
 * Return: its index, or SP_INIL if the arena cannot grow.
 */
uint32_t sp_unstable_add(struct sp_unstable *u, uint32_t ref, uint32_t csum);

#endif
