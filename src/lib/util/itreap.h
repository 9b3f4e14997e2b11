/*
 * itreap.h - a treap whose nodes are named by 32-bit indices.
 *
 * The content trees (stable and unstable) hold hundreds of thousands of
 * nodes, so their links are 32-bit indices into the caller's node array,
 * not pointers: a node costs 8 bytes of links instead of 24.  Balance
 * comes from a priority derived from the node's index and a per-tree
 * random seed (a max-heap on priorities), so it never depends on content:
 * a tree whose keys went stale (pages written after insertion) stays
 * balanced, like KSM's red-black unstable tree.
 *
 * The caller writes the search loop, comparing its key with each node's
 * content, and records the way down in a struct sp_ipath; insert and
 * delete then work from that path.  There are no parent links.
 *
 * Node layout contract: every node begins with struct sp_ilinks; the
 * caller passes the array base and the element size (stride).
 */
#ifndef SP_UTIL_ITREAP_H
#define SP_UTIL_ITREAP_H

#include <stddef.h>
#include <stdint.h>

#define SP_INIL UINT32_MAX

/* Deepest path recorded.  A treap of n nodes has expected depth about
 * 2 ln n (~35 at n = 2^24) and the chance of twice that is already
 * negligible; 1024 is reached only by a corrupt (cyclic) tree, so a walk
 * that gets there is abandoned, never overflowed. */
#define SP_IPATH_MAX 1024

struct sp_ilinks {
	uint32_t left, right;	/* child indices or SP_INIL */
};

struct sp_itreap {
	uint32_t root;		/* SP_INIL when empty */
	uint64_t seed;		/* priority seed */
};

/* The way from the root down to (not including) a node. */
struct sp_ipath {
	unsigned depth;
	uint32_t node[SP_IPATH_MAX];
	uint8_t right[SP_IPATH_MAX];	/* 1 if the way went to node's right */
};

static inline struct sp_ilinks *sp_ilinks(void *base, size_t stride,
					  uint32_t i)
{
	return (struct sp_ilinks *)((char *)base + (size_t)i * stride);
}

/* sp_iprio - priority of node @i in a tree seeded with @seed. */
static inline uint32_t sp_iprio(uint64_t seed, uint32_t i)
{
	uint64_t x = seed ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull);

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (uint32_t)(x >> 32);
}

static inline void sp_ipath_init(struct sp_ipath *p)
{
	p->depth = 0;
}

/*
 * sp_ipath_push - record that the way goes from @n to its right (@right
 * 1) or left child.  Return: 0, or -1 if the path is full (the caller
 * abandons the walk).
 */
static inline int sp_ipath_push(struct sp_ipath *p, uint32_t n, int right)
{
	if (p->depth >= SP_IPATH_MAX)
		return -1;
	p->node[p->depth] = n;
	p->right[p->depth] = (uint8_t)!!right;
	p->depth++;
	return 0;
}

/*
 * sp_itreap_insert - link node @n where the search recorded in @path
 * ended (as the child of its last node, on its side), then rotate it up
 * to its place in the heap.  @n's links are overwritten.
 */
void sp_itreap_insert(struct sp_itreap *t, void *base, size_t stride,
		      const struct sp_ipath *path, uint32_t n);

/*
 * sp_itreap_delete - unlink node @n, reached through @path (its ancestors
 * from the root).  @n's links are left stale.
 */
void sp_itreap_delete(struct sp_itreap *t, void *base, size_t stride,
		      const struct sp_ipath *path, uint32_t n);

/*
 * sp_itreap_check - verify the heap order of priorities and count nodes
 * (no key order: only the caller can compare content).
 * Return: the number of nodes, or -1 on a heap violation, a cycle, or
 * more than @max nodes.
 */
long sp_itreap_check(const struct sp_itreap *t, void *base, size_t stride,
		     long max);

#endif
