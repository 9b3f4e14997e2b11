/*
 * engine.h - private: the engine's state, shared by engine.c (lifecycle,
 * knobs, locking), region.c (registration and unmerging), scan/scan.c
 * (the scan pass and per-page decisions), scan/merge.c (executing merges
 * through the backend) and stats.c (counters, verification).
 *
 * Locking: one mutex per engine, e->lock, protects every field of the
 * engine and of its spaces, regions, chunks, records, trees and window.
 * Every public entry point takes it; every backend op is called with it
 * held.  Lock order: the process-wide engine registry lock (engine.c,
 * taken only at create/free and around fork) before any e->lock; a
 * backend's own locks after e->lock.  Fork: pthread_atfork handlers take
 * every engine's lock in registry order before fork and release (parent)
 * or re-initialise (child) them after, so a child never inherits a lock
 * held by a thread that does not exist in it.
 */
#ifndef SP_ENGINE_H
#define SP_ENGINE_H

#include <pthread.h>
#include <stdint.h>

#include "samepage.h"
#include "index/records.h"
#include "index/stable.h"
#include "index/unstable.h"
#include "util/alloc.h"
#include "util/rbtree.h"

/* Pages processed per window: a window never crosses a region end or a
 * 256-page boundary, so it lies in one record chunk. */
#define SP_WINDOW 256u

/* A registered range [start, end) of a space; ranges never overlap or
 * touch (adjacent registrations coalesce). */
struct sp_region {
	struct sp_rb_node node;		/* in space->regions, by start */
	uintptr_t start, end;
};

struct sp_space {
	struct sp_space *prev, *next;	/* engine's space ring, scan order */
	void *be;			/* backend handle */
	struct sp_rb_root regions;	/* struct sp_region */
	struct sp_rb_root chunks;	/* struct sp_chunk, by window */
	uint64_t registered_pages;
	/* KSM's per-process counters: */
	uint64_t rmap_items, merging_pages, zero_pages;
	/* Records REC_ZERO/REC_ZERO_GROUP: counted in ksm_merging_pages
	 * (sp_space_stats adds them), not in merging_pages. */
	uint64_t zero_merged;
};

/* What phase 1 decided for one page of the window. */
enum sp_act_kind { ACT_ZERO = 1, ACT_JOIN, ACT_PAIR, ACT_NAMED };

struct sp_action {
	uint16_t slot;		/* page index in the window */
	uint8_t kind;		/* enum sp_act_kind */
	uint8_t ok;		/* phase 2: this page was merged */
	union {
		uint32_t snode;	/* JOIN, PAIR: target stable node */
		sp_spage_t spage;	/* NAMED: the backend-named page (one
					 * reference held until committed) */
		uint32_t zkind;	/* ZERO: REC_ZERO_KERNEL or _GROUP */
	};
	uint32_t qid;		/* PAIR: partner page id; ZERO: the unstable
				 * zero page it pairs with, or SP_INIL */
	uint8_t qok;		/* PAIR: partner was merged */
};

struct sp_window {
	struct sp_space *s;
	struct sp_chunk *chunk;		/* holds every page of the window */
	uintptr_t addr;			/* first page */
	unsigned n;			/* pages */
	uint8_t st[SP_WINDOW];		/* enum sp_pstate per page */
	struct sp_action act[SP_WINDOW];
	unsigned nact;
	unsigned nstage;		/* staging slots used */
	unsigned nzgroup;		/* ZERO actions of kind REC_ZERO_GROUP:
					 * the group exists for later pages */
	/* Pages that found no partner here, for the backend's lookup in a
	 * shared store (ops->lookup): window slot, hash, address, answer. */
	unsigned nglob;
	uint16_t gslot[SP_WINDOW];
	uint64_t ghash[SP_WINDOW];
	uintptr_t gaddr[SP_WINDOW];
	sp_spage_t gout[SP_WINDOW];
	/* Pages looked at for the first time, or changed, for ops->look:
	 * window slot, hash, address, what is asked (SP_LOOK_*), answer. */
	unsigned nlook;
	uint16_t lslot[SP_WINDOW];
	uint64_t lhash[SP_WINDOW];
	uintptr_t laddr[SP_WINDOW];
	uint8_t lhow[SP_WINDOW];
	sp_spage_t lout[SP_WINDOW];
};

/* Global counters kept by the scan (the stable ones live in e->stable). */
struct sp_counters {
	uint64_t pages_unshared, pages_scanned, pages_skipped, full_scans;
	uint64_t ksm_zero_pages, rmap_items;
	uint64_t zero_merged;		/* records REC_ZERO/REC_ZERO_GROUP */
	uint64_t pages_named;		/* records in REC_NAMED */
	uint64_t merge_races, replace_calls, scan_errors, pages_refused;
	uint64_t keys_skipped, keys_changed;	/* see struct sp_stats */
};

struct sp_engine {
	pthread_mutex_t lock;		/* protects all below; see top */
	struct sp_engine *reg_prev, *reg_next;	/* under the registry lock */

	const struct sp_backend_ops *ops;
	void *be;
	uint64_t knob[SP_KNOB_COUNT];

	struct sp_space spaces;		/* ring head (not a real space) */
	struct {
		struct sp_space *s;	/* &spaces: between passes */
		uintptr_t addr;		/* next address to scan in s */
	} cursor;
	uint64_t registered_pages;	/* over all spaces */

	struct sp_chunktab chunks;
	struct sp_unstable unstable;
	struct sp_stable stable;
	struct sp_counters c;

	uint32_t zero_csum;		/* checksum of a zero-filled page */
	void *buf;			/* 3 scratch pages for peeks */
	void *staging[SP_WINDOW];	/* snapshots of pages starting new
					 * stable nodes, allocated lazily */
	struct sp_window win;

	uint64_t meta_bytes;		/* per-page metadata, all modules */
	uint64_t fixed_bytes;		/* scratch and staging */
	struct sp_mem mem;		/* allocator, counted in meta_bytes */
	struct sp_mem fixed;		/* allocator, counted in fixed_bytes */
};

static inline void *scratch(struct sp_engine *e, unsigned i)
{
	return (char *)e->buf + (size_t)i * SP_PAGE_SIZE;
}

/* ---- records (scan/scan.c) ---- */

/*
 * rec_drop - forget one page's record: leave the unstable count, the
 * stable node or the zero count it was in, and free the slot.  The chunk
 * is not freed here (callers call sp_chunk_put after a batch).
 */
void rec_drop(struct sp_engine *e, struct sp_space *s, struct sp_chunk *c,
	      unsigned slot);

/* rec_leave_stable - a STABLE or NAMED record's page no longer maps its
 * stable page: drop the sharer (NAMED: give the backend its reference
 * back), make the record SEEN with a fresh age. */
void rec_leave_stable(struct sp_engine *e, struct sp_space *s,
		      struct sp_rec *r);

/* rec_leave_zero - a ZERO record's page is no longer released (written,
 * unmerged): leave the count its link names, make the record SEEN. */
void rec_leave_zero(struct sp_engine *e, struct sp_space *s,
		    struct sp_rec *r);

/* zero_shared - how many of the zero-filled pages counted as merged
 * (REC_ZERO_GROUP) stand for KSM's stable pages of that content: one per
 * max_page_sharing of them, as KSM's dups.  The rest count as sharing. */
uint64_t zero_shared(const struct sp_engine *e);

/* drop_records - rec_drop every record in [start, end) of @s and free
 * emptied chunks.  Context: e->lock. */
void drop_records(struct sp_engine *e, struct sp_space *s, uintptr_t start,
		  uintptr_t end);

/* ---- scanning (scan/scan.c) ---- */

/* scan_batch - the body of sp_scan().  Context: e->lock. */
int scan_batch(struct sp_engine *e, unsigned budget);

/* scan_reset - put the cursor between passes and empty the unstable tree
 * (unmerge-all, space removal of the cursor's space). */
void scan_reset(struct sp_engine *e);

/* ---- merging (scan/merge.c) ---- */

/* merge_window - phase 2: execute the window's actions in runs.
 * Context: e->lock; allocates nothing. */
void merge_window(struct sp_engine *e, struct sp_window *w);

/* ---- regions (region.c) ---- */

/* region_next - the first registered range of @s whose end is above
 * @addr (it may start below @addr), or NULL.  Context: e->lock. */
struct sp_region *region_next(struct sp_space *s, uintptr_t addr);

/* regions_free - drop every registered range of @s (its records must be
 * gone already).  Context: e->lock. */
void regions_free(struct sp_engine *e, struct sp_space *s);

/* unmerge_range - unmerge the STABLE, NAMED and ZERO pages of [start, end) in
 * runs; with @drop, also drop every record of the range.  Return: 0 or
 * the backend's error (pages before it are done).  Context: e->lock. */
int unmerge_range(struct sp_engine *e, struct sp_space *s, uintptr_t start,
		  uintptr_t end, int drop);

/* ---- accounting ---- */

/* meta_alloc / meta_free - zeroed allocation counted in e->meta_bytes
 * (general_profit subtracts it).  Return: the block or NULL. */
void *meta_alloc(struct sp_engine *e, size_t size);
void meta_free(struct sp_engine *e, void *p, size_t size);

#endif
