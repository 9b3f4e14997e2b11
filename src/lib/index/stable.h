/*
 * stable.h - the stable tree: one node per distinct content of the stable
 * pages.  KSM keeps them in a red-black tree ordered by content; ours is
 * a chained hash index keyed by the low 32 bits of the content's XXH3-64,
 * kept in the node.  A search reads the bytes of a node only when its
 * hash equals the key's, so it touches one bucket head and a chain of one
 * or two nodes instead of ~2 log n cold nodes and pages.  The content of
 * a stable page never changes, so the index is always exact (the
 * verifier checks every hash against its page).  "Tree" stays in the
 * names, as in KSM's counters and documentation.
 *
 * Node kinds (enum sp_snode_kind), all in one index-named pool:
 *   PLAIN  a stable page in the index; @sharers virtual pages map it.
 *   CHAIN  a content shared by more pages than max_page_sharing allows on
 *          one page: in the index, it holds a list of DUPs (@next is the
 *          first, @sharers counts them).  Its content is its dups'.
 *   DUP    a stable page hanging off a chain (not in the index); @next
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
#include "../util/ibuckets.h"
#include "samepage.h"

enum sp_snode_kind { SN_FREE = 0, SN_PLAIN, SN_CHAIN, SN_DUP };

#define SNF_NEW 1	/* page not yet allocated: content in staging */
#define SNF_DEAD 2	/* merge failed: accepts no sharer */

#define SN_TAIL 0x80000000u	/* tags the chain index ending a dup list */

struct sp_snode {		/* 24 bytes: metadata paid per stable page */
	uint32_t hnext;		/* PLAIN, CHAIN: next node of its bucket */
	uint32_t hash;		/* (uint32_t)sp_hash_page(content); a chain's
				 * and its dups' are the same */
	uint32_t spage;		/* PLAIN/DUP: stable page; NEW: staging slot */
	uint32_t sharers;	/* PLAIN/DUP: mappers; CHAIN: number of dups */
	uint32_t next;		/* CHAIN: first dup; DUP: next dup or
				 * SN_TAIL | chain; FREE: next free */
	uint16_t pending;	/* merges decided this window, not yet done */
	uint8_t kind;
	uint8_t flags;		/* SNF_* */
};

/* Invariants (sp_stable_verify): every PLAIN and CHAIN node is on the
 * chain of bucket (hash & (idx.n - 1)) exactly once, and no other node
 * is on any; no two of them have the same content; idx.n is a power of
 * two, grown when the index holds more nodes than buckets. */
struct sp_stable {
	struct sp_ibuckets idx;		/* heads of the index's chains */
	uint32_t nindexed;		/* PLAIN + CHAIN nodes */
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
 * their content from @staging[slot]; nodes and buckets come from @mem,
 * scratch from @fixed.  Return: 0 or -ENOMEM. */
int sp_stable_init(struct sp_stable *st, const struct sp_backend_ops *ops,
		   void *be, void *const *staging, const struct sp_mem *mem,
		   const struct sp_mem *fixed);
/* sp_stable_destroy - free the pool and the index; releases no page. */
void sp_stable_destroy(struct sp_stable *st);

static inline struct sp_snode *sn(const struct sp_stable *st, uint32_t i)
{
	return &st->node[i];
}

/* sp_stable_content - bytes of node @i (a chain's are its first dup's);
 * NULL if the backend cannot read them. */
const void *sp_stable_content(struct sp_stable *st, uint32_t i);

/*
 * sp_stable_search - find the content @key, whose hash (low 32 bits of
 * sp_hash_page) is @hash, in the stable tree.  *match gets the indexed
 * node (PLAIN or CHAIN) with equal content, or SP_INIL; *out a node
 * (PLAIN or DUP) of it that can take one more sharer under
 * @max_sharing, or SP_INIL.  A chosen dup moves to its chain's head.
 * Return: 0, or -EAGAIN (both SP_INIL) if the bytes of a node with the
 * same hash could not be read: whether the content is there is unknown,
 * and no node may be made for it.
 */
int sp_stable_search(struct sp_stable *st, uint32_t hash, const void *key,
		     uint64_t max_sharing, uint32_t *match, uint32_t *out);

/*
 * sp_stable_has_hash - whether a node with hash @hash is indexed: if not,
 * sp_stable_search() with that hash would find nothing and read no
 * bytes, so the caller need not have any.  Pure.
 */
int sp_stable_has_hash(const struct sp_stable *st, uint32_t hash);

/*
 * sp_stable_new - a NEW node whose content is staging slot @slot, with
 * hash @hash, placed as sp_stable_search() with the same key said: in
 * the index if @match is SP_INIL, else as a dup of @match (a PLAIN @match
 * becomes a chain).  Return: 0 and *out, or -ENOMEM.
 */
int sp_stable_new(struct sp_stable *st, uint32_t slot, uint32_t hash,
		  uint32_t match, uint32_t *out);

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
 * sp_stable_verify - check the index (each node in its bucket once, no
 * content twice, each hash its content's), chains, and that the
 * counters match the nodes.  Return: 0 or -EUCLEAN (@why filled).
 */
int sp_stable_verify(struct sp_stable *st, char *why, size_t whylen);

#endif
