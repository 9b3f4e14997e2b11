/*
 * records.h - one 8-byte record per scanned page (KSM's rmap_item role).
 *
 * Records live in chunks of 512, one chunk per 2 MiB-aligned window of an
 * address space that holds at least one recorded page.  A page is named
 * by a 32-bit page id, (chunk id << 9) | slot, which the unstable tree
 * uses to find a page again; the chunk header says which space and which
 * address the id stands for.
 *
 * Record word layout (struct sp_rec.w):
 *   bits 0-2   state (enum sp_rec_state)
 *   bits 3-6   smart-scan age, saturating at 15 (KSM's thresholds stop at 9)
 *   bits 7-10  smart-scan remaining skips (0..8)
 *   bits 11-31 checksum: low 21 bits of XXH3-64 of the content last seen
 * and link, whose meaning depends on the state:
 *   SEEN, NONE: unused (0)
 *   ZERO:     how the release is counted, fixed when it was made (KSM:
 *             use_zero_pages "affects only later merges"):
 *             REC_ZERO_KERNEL, use_zero_pages was 1: in ksm_zero_pages;
 *             REC_ZERO_GROUP, it was 0: as a sharer of the process's
 *             zero-filled content (scan/scan.c, "Zero-filled pages")
 *   UNSTABLE: while the page is in the unstable tree, the id of the
 *             next page on its chain, or SP_INIL (index/unstable.h: the
 *             chains run through the records); stale once a new pass
 *             emptied the tree, and then reached by no chain
 *   STABLE:   index of the stable node (a plain node or a dup) whose page
 *             this page maps
 *   NAMED:    the stable page this page maps, one that the backend named
 *             (ops->lookup: a page of a store shared with other
 *             processes); the record holds one of the backend's
 *             references to it and no stable node stands for it here
 *
 * Why NAMED pages have no stable node: a node (24 bytes and a bucket)
 * per page of the shared store, in every process that maps it, cost more
 * than the store's own bookkeeping.  The price is that a later page with
 * the same content finds it through the backend (one more lookup), not
 * through the stable tree.
 *
 * A 21-bit checksum only decides "changed since last pass?" and "maybe a
 * zero page"; a false "unchanged" (1 in 2^21) merely lets a page into the
 * unstable tree one pass early.  Merges always compare bytes.
 */
#ifndef SP_INDEX_RECORDS_H
#define SP_INDEX_RECORDS_H

#include <stdint.h>

#include "../util/alloc.h"
#include "../util/rbtree.h"

enum sp_rec_state {
	REC_NONE = 0,	/* no record: slot free */
	REC_SEEN,	/* scanned: checksum valid, in no tree */
	REC_UNSTABLE,	/* in the unstable tree (this pass, or last pass and
			 * not rescanned yet): counted in pages_unshared */
	REC_STABLE,	/* maps the page of stable node @link */
	REC_ZERO,	/* released to the zero page by the engine */
	REC_NAMED,	/* maps the backend-named stable page @link */
};

/* The link of a REC_ZERO record. */
enum { REC_ZERO_KERNEL = 0, REC_ZERO_GROUP = 1 };

struct sp_rec {		/* 8 bytes: paid per scanned page */
	uint32_t w;
	uint32_t link;
};

#define REC_CSUM_BITS 21
#define REC_CSUM_MASK ((1u << REC_CSUM_BITS) - 1)
#define REC_AGE_MAX 15

static inline unsigned rec_state(const struct sp_rec *r)
{
	return r->w & 7;
}
static inline void rec_set_state(struct sp_rec *r, unsigned s)
{
	r->w = (r->w & ~7u) | s;
}
/* Whether the page maps a stable page (STABLE or NAMED). */
static inline int rec_merged(const struct sp_rec *r)
{
	return rec_state(r) == REC_STABLE || rec_state(r) == REC_NAMED;
}

static inline unsigned rec_age(const struct sp_rec *r)
{
	return (r->w >> 3) & 15;
}
static inline void rec_set_age(struct sp_rec *r, unsigned a)
{
	r->w = (r->w & ~(15u << 3)) | (a << 3);
}
static inline unsigned rec_skips(const struct sp_rec *r)
{
	return (r->w >> 7) & 15;
}
static inline void rec_set_skips(struct sp_rec *r, unsigned s)
{
	r->w = (r->w & ~(15u << 7)) | (s << 7);
}
static inline uint32_t rec_csum(const struct sp_rec *r)
{
	return r->w >> 11;
}
static inline void rec_set_csum(struct sp_rec *r, uint32_t c)
{
	r->w = (r->w & 0x7ffu) | ((c & REC_CSUM_MASK) << 11);
}

#define SP_CHUNK_SHIFT 9
#define SP_CHUNK_PAGES (1u << SP_CHUNK_SHIFT)
/* Page ids stay below 2^31, so none is SP_INIL (an unstable chain's end). */
#define SP_CHUNK_ID_MAX (1u << (31 - SP_CHUNK_SHIFT))

struct sp_chunk {
	struct sp_rb_node node;	/* in the owner space's chunk tree, by window */
	void *owner;		/* the struct sp_space it belongs to */
	void *be_space;		/* that space's backend handle */
	uintptr_t window;	/* addr >> (SP_PAGE_SHIFT + SP_CHUNK_SHIFT) */
	uint32_t id;		/* index in the chunk table */
	uint32_t nlive;		/* records whose state is not REC_NONE */
	struct sp_rec rec[SP_CHUNK_PAGES];
};

/*
 * The chunk table maps chunk ids to chunks.  A free id's slot holds
 * (next free id << 1) | 1, so freeing needs no memory.
 */
struct sp_chunktab {
	uintptr_t *slot;	/* chunk pointer, or tagged free-list link */
	uint32_t cap;		/* slots allocated */
	uint32_t used;		/* slots ever handed out (ids < used) */
	uint32_t free_head;	/* first free id, UINT32_MAX if none */
	uint32_t nchunks;	/* live chunks */
	struct sp_mem mem;	/* allocator and metadata byte counter */
};

static inline uintptr_t chunk_window(uintptr_t addr)
{
	return addr >> (12 + SP_CHUNK_SHIFT);
}

static inline uintptr_t chunk_base(const struct sp_chunk *c)
{
	return c->window << (12 + SP_CHUNK_SHIFT);
}

static inline unsigned chunk_slot(uintptr_t addr)
{
	return (unsigned)(addr >> 12) & (SP_CHUNK_PAGES - 1);
}

static inline uint32_t page_id(const struct sp_chunk *c, unsigned slot)
{
	return (c->id << SP_CHUNK_SHIFT) | slot;
}

static inline uintptr_t page_addr(const struct sp_chunk *c, unsigned slot)
{
	return chunk_base(c) + ((uintptr_t)slot << 12);
}

/* sp_chunktab_init / destroy - an empty table allocating from @mem (so
 * do its chunks); destroy frees the table, not the chunks (free those
 * first). */
void sp_chunktab_init(struct sp_chunktab *t, const struct sp_mem *mem);
void sp_chunktab_destroy(struct sp_chunktab *t);

/* sp_chunk_by_id - the live chunk with this id, or NULL. */
static inline struct sp_chunk *sp_chunk_by_id(const struct sp_chunktab *t,
					      uint32_t id)
{
	uintptr_t v;

	if (id >= t->used)
		return NULL;
	v = t->slot[id];
	return (v & 1) ? NULL : (struct sp_chunk *)v;
}

/* The inverse of page_id(): the live chunk of page @pid (or NULL), and
 * the page's slot in it. */
static inline struct sp_chunk *sp_chunk_of_page(const struct sp_chunktab *t,
						uint32_t pid)
{
	return sp_chunk_by_id(t, pid >> SP_CHUNK_SHIFT);
}

static inline unsigned page_slot(uint32_t pid)
{
	return pid & (SP_CHUNK_PAGES - 1);
}

/*
 * sp_chunk_find - the chunk of @tree covering @addr, or NULL.
 * sp_chunk_get - the same, creating an empty one if absent.
 * Return (get): 0 and *out, or -ENOMEM / -ENOSPC (ids exhausted).
 */
struct sp_chunk *sp_chunk_find(struct sp_rb_root *tree, uintptr_t addr);
int sp_chunk_get(struct sp_chunktab *t, struct sp_rb_root *tree, void *owner,
		 void *be_space, uintptr_t addr, struct sp_chunk **out);

/* sp_chunk_put - free the chunk if it holds no live record. */
void sp_chunk_put(struct sp_chunktab *t, struct sp_rb_root *tree,
		  struct sp_chunk *c);

#endif
