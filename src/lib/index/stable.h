/*
 * stable.h - the stable tree: one node per distinct content of the stable
 * pages, ordered by that content (immutable, so the tree is always exact).
 *
 * Node kinds (enum sp_snode_kind), all in one index-named pool:
 *   PLAIN  a stable page in the tree; @sharers virtual pages map it.
 *   CHAIN  a content shared by more pages than max_page_sharing allows on
 *          one page: in the tree, it holds a list of DUPs (@next is the
 *          first, @sharers counts them).  Its content is its dups'.
 *   DUP    a stable page hanging off a chain (not in the tree); @next
 *          links the chain's list, and the last dup's @next is the chain
 *          itself tagged with SN_TAIL, so a dup finds its chain without
 *          a field of its own (lists are short: sharers / limit).
 *   FREE   in the free list (@next).
 * Counters follow KSM: stable_node_chains = CHAINs, stable_node_dups =
 * DUPs, pages_shared = stable pages with sharers, pages_sharing = their
 * sharers beyond the first.
 *
 * A node made by the current window's decisions is NEW until its stable
 * page is allocated and written: its content is then a staging buffer
 * (a snapshot of the page that created it) and @spage holds the staging
 * slot.  @pending counts merges decided in this window and not yet
 * executed; a node is freed, and its page released, when it has neither
 * sharers nor pending merges.  A NEW node whose merge failed is DEAD: it
 * takes no more sharers and goes once its pending count drops to 0.
 * Outside a window no node is NEW, DEAD or pending.
 *
 * A chain left with one dup collapses back into a plain node; an empty
 * dup is freed at once (KSM prunes them later; our sharer counts are
 * exact, so there is nothing stale to wait for).
 */
#ifndef SP_INDEX_STABLE_H
#define SP_INDEX_STABLE_H

#include <stdint.h>

#include "../util/alloc.h"
#include "../util/itreap.h"
#include "samepage.h"

enum sp_snode_kind { SN_FREE = 0, SN_PLAIN, SN_CHAIN, SN_DUP };

#define SNF_NEW 1	/* page not yet allocated: content in staging */
#define SNF_DEAD 2	/* merge failed: accepts no sharer */

#define SN_TAIL 0x80000000u	/* tags the chain index ending a dup list */

struct sp_snode {		/* 24 bytes: metadata paid per stable page */
	uint32_t left, right;	/* treap links (PLAIN, CHAIN) */
	uint32_t spage;		/* PLAIN/DUP: stable page; NEW: staging slot */
	uint32_t sharers;	/* PLAIN/DUP: mappers; CHAIN: number of dups */
	uint32_t next;		/* CHAIN: first dup; DUP: next dup or
				 * SN_TAIL | chain; FREE: next free */
	uint16_t pending;	/* merges decided this window, not yet done */
	uint8_t kind;
	uint8_t flags;		/* SNF_* */
};

struct sp_stable {
	struct sp_itreap tree;
	struct sp_snode *node;		/* pool */
	uint32_t cap;			/* nodes allocated */
	uint32_t free_head;		/* first FREE node, SP_INIL if none */
	uint32_t nlive;			/* nodes not FREE */
	const struct sp_backend_ops *ops;
	void *be;
	void *const *staging;		/* staging page per slot (NEW content) */
	void *buf;			/* 2 scratch pages (fixed memory) */
	struct sp_mem mem;		/* allocator, metadata byte counter */
	struct sp_mem fixed;		/* same allocator, fixed-bytes counter */
	/* counters, kept exact at every node change: */
	uint64_t pages_shared, pages_sharing, chains, dups;
};

/* sp_stable_init - an empty tree over backend @ops/@be; NEW nodes read
 * their content from @staging[slot]; nodes come from @mem, scratch
 * from @fixed.  Return: 0 or -ENOMEM. */
int sp_stable_init(struct sp_stable *st, const struct sp_backend_ops *ops,
		   void *be, void *const *staging, uint64_t seed,
		   const struct sp_mem *mem, const struct sp_mem *fixed);
/* sp_stable_destroy - free the pool; releases no page (see sp_stable_drain). */
void sp_stable_destroy(struct sp_stable *st);

static inline struct sp_snode *sn(const struct sp_stable *st, uint32_t i)
{
	return &st->node[i];
}

/* sp_stable_content - bytes of node @i (a chain's are its first dup's);
 * NULL if the backend cannot read them. */
const void *sp_stable_content(struct sp_stable *st, uint32_t i);

/*
 * sp_stable_search - find the content @key in the stable tree.
 * *match gets the tree node (PLAIN or CHAIN) with equal content, or
 * SP_INIL, in which case @path ends where a node with this content would
 * be inserted.  The walk is abandoned (*match SP_INIL, path depth set to
 * SP_IPATH_MAX + 1) if the path would exceed SP_IPATH_MAX.
 * Return: a node (PLAIN or DUP) that can take one more sharer under
 * @max_sharing, or SP_INIL.  A chosen dup moves to its chain's head.
 */
uint32_t sp_stable_search(struct sp_stable *st, const void *key,
			  uint64_t max_sharing, struct sp_ipath *path,
			  uint32_t *match);

/*
 * sp_stable_new - a NEW node whose content is staging slot @slot, placed
 * where sp_stable_search() said: in the tree at @path if @match is
 * SP_INIL, else as a dup of @match (a PLAIN @match becomes a chain).
 * Return: 0 and *out, -ENOMEM, or -E2BIG if @path was abandoned.
 */
int sp_stable_new(struct sp_stable *st, uint32_t slot,
		  const struct sp_ipath *path, uint32_t match, uint32_t *out);

/* sp_stable_set_page - a NEW node got its stable page (written). */
void sp_stable_set_page(struct sp_stable *st, uint32_t i, sp_spage_t page);

/* sp_stable_add_sharer / sp_stable_drop_sharer - a page starts / stops
 * mapping node @i's page.  Dropping the last sharer (with nothing
 * pending) frees the node and releases its page. */
void sp_stable_add_sharer(struct sp_stable *st, uint32_t i);
void sp_stable_drop_sharer(struct sp_stable *st, uint32_t i);

/* sp_stable_unpend - a pending merge into @i was done or abandoned. */
void sp_stable_unpend(struct sp_stable *st, uint32_t i);

/*
 * sp_stable_verify - check content order, heap order, chains, and that
 * the counters match the nodes.  Return: 0 or -EUCLEAN (@why filled).
 */
int sp_stable_verify(struct sp_stable *st, char *why, size_t whylen);

#endif
