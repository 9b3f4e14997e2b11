/*
 * unstable.h - the unstable tree: pages unchanged since the last pass,
 * found by their checksum and then their live bytes, rebuilt from empty
 * at every pass.
 *
 * KSM keeps these pages in a red-black tree ordered by live content,
 * which any writer may change; ours is a chained hash index keyed by the
 * 21-bit checksum in each page's record.  A search compares live bytes
 * only with pages of the same checksum, so it reads one bucket head and
 * a few records, where a tree walk reads ~2 log n pages from all over
 * memory.  Stale content costs what it costs KSM, a missed match, and
 * nothing more: a member's key is its record's checksum, which nothing
 * changes while the page is in the tree (a page is scanned once per
 * pass, and the tree is emptied when a pass starts), so the index cannot
 * become disordered; and a merge is only ever made after comparing
 * bytes under write protection.  "Tree" stays in the names, as in KSM's
 * counters and documentation.
 *
 * There are no nodes.  A chain runs through the page records themselves:
 * a bucket head holds the page id of the last page added with a key of
 * that bucket, and a member's record link holds the id of the next
 * member (SP_INIL at the end).  So the tree costs its bucket heads only,
 * 1 to 4 bytes per page in it, where a node arena cost 12 more; the price
 * is one page-id-to-record step (the chunk table, always cached) per
 * chain member met.
 *
 * Invariants (sp_unstable_verify checks them all):
 *   - a record is on a chain if and only if it was added this pass and
 *     not removed since; every record on a chain is REC_UNSTABLE, in a
 *     live chunk, on the chain its checksum picks, once;
 *   - so a record leaves the tree (sp_unstable_remove) before its state
 *     or link changes for any other reason and before it is freed: a
 *     link rewritten in place would cut its chain, and a freed chunk's
 *     id may come back with other records.
 * A REC_UNSTABLE record that is on no chain is one added last pass and
 * not rescanned yet, or one taken as a pair's partner in this window;
 * removing such a record finds nothing and changes nothing.
 *
 * Not thread-safe: the engine lock covers the tree and the records.
 */
#ifndef SP_INDEX_UNSTABLE_H
#define SP_INDEX_UNSTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "../util/alloc.h"
#include "../util/ibuckets.h"
#include "records.h"

struct sp_unstable {
	struct sp_ibuckets idx;	/* chain heads (page ids), by checksum; 1 to
				 * 4 members per bucket (fewer after a
				 * reset) */
	const struct sp_chunktab *chunks; /* where page ids lead */
	uint32_t n;		/* records on the chains now */
	uint32_t added;		/* records added this pass */
	uint32_t peak;		/* most added by one recent pass */
	uint32_t max_buckets;	/* a power of two: no more csum bits */
	struct sp_mem mem;	/* allocator and metadata byte counter */
};

/* sp_unstable_init - an empty tree over the records of @chunks, whose
 * keys have @csum_bits bits, its buckets allocated from @mem.
 * Return: 0 or -ENOMEM. */
int sp_unstable_init(struct sp_unstable *u, unsigned csum_bits,
		     const struct sp_chunktab *chunks,
		     const struct sp_mem *mem);
void sp_unstable_destroy(struct sp_unstable *u);

/*
 * sp_unstable_reset - start a new pass: empty the tree (the records keep
 * their stale links; no chain reaches them).  The buckets are sized for
 * the larger of the last two passes.
 */
void sp_unstable_reset(struct sp_unstable *u);

/* sp_unstable_rec - the record of page @id, a member of the tree. */
static inline struct sp_rec *sp_unstable_rec(const struct sp_unstable *u,
					     uint32_t id)
{
	return &sp_chunk_of_page(u->chunks, id)->rec[page_slot(id)];
}

/* sp_unstable_first - the page id first on the chain holding key @csum
 * (its members have other keys too: compare their records' checksums),
 * or SP_INIL.  The next is sp_unstable_rec(u, id)->link. */
static inline uint32_t sp_unstable_first(const struct sp_unstable *u,
					 uint32_t csum)
{
	return *sp_ibucket(&u->idx, csum);
}

/*
 * sp_unstable_find - the first member whose key is @csum, or SP_INIL.
 * sp_unstable_find_next - the next member after page @id (a member) whose
 * key is @csum, or SP_INIL.  Together they walk the pages a search must
 * compare, skipping the chain's members with other keys.
 */
static inline uint32_t sp_unstable_key_from(const struct sp_unstable *u,
					    uint32_t id, uint32_t csum)
{
	while (id != SP_INIL) {
		const struct sp_rec *r = sp_unstable_rec(u, id);

		if (rec_csum(r) == csum)
			break;
		id = r->link;
	}
	return id;
}

static inline uint32_t sp_unstable_find(const struct sp_unstable *u,
					uint32_t csum)
{
	return sp_unstable_key_from(u, sp_unstable_first(u, csum), csum);
}

static inline uint32_t sp_unstable_find_next(const struct sp_unstable *u,
					     uint32_t id, uint32_t csum)
{
	return sp_unstable_key_from(u, sp_unstable_rec(u, id)->link, csum);
}

/*
 * sp_unstable_add - put page @id, whose record @r is REC_UNSTABLE and on
 * no chain, in the tree under its record's checksum; @r's link becomes
 * its chain link.  Never fails: if the buckets cannot grow, chains get
 * longer.
 */
void sp_unstable_add(struct sp_unstable *u, struct sp_rec *r, uint32_t id);

/*
 * sp_unstable_remove - take page @id (record @r, whose checksum is the
 * one it was added under) out of the tree if it is there; its link is
 * then SP_INIL.  Cost: one walk of its chain.
 * Return: 1 if it was in the tree, else 0 (and nothing changed).
 */
int sp_unstable_remove(struct sp_unstable *u, struct sp_rec *r, uint32_t id);

/* sp_unstable_holds - whether page @id (record @r) is in the tree. */
int sp_unstable_holds(const struct sp_unstable *u, const struct sp_rec *r,
		      uint32_t id);

/*
 * sp_unstable_verify - check the invariants above (and that n counts
 * the members).  O(members + buckets); for tests and the engine's
 * verifier.  Return: 0, or -EUCLEAN with the first fault in @why.
 */
int sp_unstable_verify(const struct sp_unstable *u, char *why, size_t len);

#endif
