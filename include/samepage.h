/*
 * samepage.h - samepage merging in user space: the only public header.
 *
 * samepage finds identical 4 KiB pages in memory that programs marked
 * mergeable and makes them share one physical page, read-only, as Linux
 * KSM does; the first write to a shared page gets a private copy.
 *
 * The header has three layers, each usable without reading the next:
 *
 *   1. The engine (sp_engine_*, sp_space_*, sp_register, sp_scan, ...):
 *      KSM's merge policy.  It decides which pages merge and keeps the
 *      counters with the kernel's names.  It never touches memory itself.
 *   2. The backend interface (struct sp_backend_ops): all the engine knows
 *      of memory.  A backend reads pages, write-protects them, maps stable
 *      pages over them and releases them.  Only backends make syscalls.
 *   3. The simulated backend (sp_sim_*): address spaces and frames in
 *      ordinary memory, for tests, fuzzing, benchmarks and estimates.
 *
 * Conventions: every function that can fail returns 0 (or a documented
 * non-negative value) on success and a negative errno value on failure;
 * none of them sets errno.  Bad arguments change nothing.  Unless a
 * contract says otherwise, engine functions take the engine's lock and may
 * block for as long as one bounded scan batch takes.
 */
#ifndef SAMEPAGE_H
#define SAMEPAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SP_API __attribute__((visibility("default")))
#else
#define SP_API
#endif

#define SP_VERSION_STRING "0.1.0"

/* The page size samepage merges at.  Addresses and lengths are in bytes. */
#define SP_PAGE_SHIFT 12
#define SP_PAGE_SIZE ((size_t)1 << SP_PAGE_SHIFT)

/* ===================================================================== */
/* 1. The engine                                                          */
/* ===================================================================== */

struct sp_engine;		/* opaque: one merge domain */
struct sp_space;		/* opaque: one address space in it */
struct sp_backend_ops;

/*
 * Knobs, named and defaulted as in /sys/kernel/mm/ksm.  The engine does
 * not sleep on its own; pages_to_scan and sleep_millisecs are kept here so
 * that whoever drives sp_scan() (a scanner thread, a daemon) reads one
 * source of truth.
 */
enum sp_knob {
	SP_KNOB_PAGES_TO_SCAN,		/* pages per batch (100) */
	SP_KNOB_SLEEP_MILLISECS,	/* pause between batches (20) */
	SP_KNOB_MAX_PAGE_SHARING,	/* mappers per stable page, >= 2 (256) */
	SP_KNOB_USE_ZERO_PAGES,		/* 0/1: zero pages go to the zero page (0) */
	SP_KNOB_SMART_SCAN,		/* 0/1: skip pages that keep failing (1) */
	SP_KNOB_COUNT
};

/*
 * Global counters, with the kernel's names and meanings.  A consistent
 * snapshot taken under the engine's lock.
 */
struct sp_stats {
	uint64_t pages_shared;		/* stable pages in use */
	uint64_t pages_sharing;		/* further mappings of them: pages saved */
	uint64_t pages_unshared;	/* pages in the unstable tree */
	uint64_t pages_volatile;	/* rmap_items - shared - sharing - unshared, >= 0 */
	uint64_t pages_scanned;		/* pages processed (skipped ones excluded) */
	uint64_t pages_skipped;		/* pages smart scan skipped */
	uint64_t full_scans;		/* completed passes over all ranges */
	uint64_t stable_node_chains;	/* contents with more than one stable page */
	uint64_t stable_node_dups;	/* stable pages hanging off those chains */
	uint64_t ksm_zero_pages;	/* pages released to the zero page, still
					 * zero, with use_zero_pages 1 */
	int64_t general_profit;		/* bytes saved minus metadata bytes */
	/* samepage's own, not in the kernel: */
	uint64_t rmap_items;		/* pages the engine keeps a record for */
	uint64_t meta_bytes;		/* bytes of per-page metadata (records, trees) */
	uint64_t fixed_bytes;		/* bytes of fixed buffers (staging) */
	uint64_t merge_races;		/* merges abandoned: bytes changed before verify */
	uint64_t pages_refused;		/* pages the backend could not hold (pinned) */
	uint64_t replace_calls;		/* backend replace calls (one per run) */
	uint64_t scan_errors;		/* windows skipped after a backend error */
	/* Pages decided on their hash alone, never copied (ops->hash). */
	uint64_t keys_skipped;
	/* Copies whose hash differed from the page's as scanned: a writer
	 * was at work, and the page was volatile that pass. */
	uint64_t keys_changed;
	/* Zero-filled pages merged with use_zero_pages 0: in pages_shared
	 * and pages_sharing as KSM counts them, but released to the
	 * kernel's zero page rather than mapped to a stable page. */
	uint64_t zero_merged;
};

/* Per address space counters, as in /proc/PID/ksm_stat. */
struct sp_space_stats {
	uint64_t rmap_items;		/* pages of this space with a record */
	uint64_t zero_pages;		/* its pages released to the zero page */
	uint64_t merging_pages;		/* its pages mapping a stable page, and
					 * zero_merged */
	int64_t process_profit;		/* (merging + zero) * page - records' bytes */
	/* samepage's own: */
	uint64_t registered_pages;	/* pages in its registered ranges */
	uint64_t zero_merged;		/* see struct sp_stats */
};

/*
 * Where the engine's memory comes from.  @alloc returns zeroed memory;
 * @resize is realloc (contents kept, new bytes unspecified); @free gets
 * the size back.  NULL in the config means libc.  The in-process agent
 * passes one whose mappings it keeps out of merging.
 */
struct sp_allocator {
	void *(*alloc)(void *ctx, size_t size);
	void *(*resize)(void *ctx, void *p, size_t old, size_t size);
	void (*free)(void *ctx, void *p, size_t size);
	void *ctx;
};

struct sp_engine_config {
	const struct sp_backend_ops *ops;	/* the backend (required) */
	void *be;				/* its state; outlives the engine */
	const struct sp_allocator *alloc;	/* NULL: libc */
};

/*
 * sp_engine_new - create an engine over a backend.
 * Return: 0 and *out set, or -ENOMEM / -EINVAL (an op missing).
 * Context: any thread; no lock held.
 */
SP_API int sp_engine_new(const struct sp_engine_config *cfg,
			 struct sp_engine **out);

/*
 * sp_engine_free - destroy an engine.  Spaces still in it are forgotten
 * (as by sp_space_remove): merged pages stay merged and their stable pages
 * are released through the backend only once no record refers to them.
 * Context: no other thread may use the engine any more.
 */
SP_API void sp_engine_free(struct sp_engine *e);

/*
 * sp_space_add - add an address space (KSM's mm_slot) to the engine.
 * @be_space: the backend's handle for it, passed back to every op.
 * Return: 0 and *out set, or -ENOMEM.
 */
SP_API int sp_space_add(struct sp_engine *e, void *be_space,
			struct sp_space **out);

/*
 * sp_space_remove - forget an address space whose memory is gone (the
 * process exited).  No backend op is called on it; sharers it held are
 * dropped and stable pages left without sharers are released.
 * Call it only after the backend space can no longer map stable pages.
 */
SP_API void sp_space_remove(struct sp_engine *e, struct sp_space *s);

/*
 * sp_register - mark [start, start+len) mergeable (MADV_MERGEABLE).
 * Validation follows madvise(2): -EINVAL if @start is not page aligned or
 * the range wraps; len 0 succeeds with no effect; len is rounded up to
 * whole pages.  Mapped parts the backend reports as mergeable are
 * registered, merging with overlapping or adjacent registered ranges;
 * mapped parts that can never merge (shared, special mappings) are
 * silently left out, as KSM does.  If the range has unmapped holes, the
 * mapped parts are still registered and -ENOMEM is returned.
 * Return: 0, -EINVAL, -ENOMEM.
 */
SP_API int sp_register(struct sp_engine *e, struct sp_space *s,
		       uintptr_t start, size_t len);

/*
 * sp_unregister - MADV_UNMERGEABLE: unmerge every merged page of the range
 * (each gets a private copy of its content) and stop merging it.  A range
 * never registered is a successful no-op.  Holes give -ENOMEM after the
 * mapped parts are processed.  If unmerging fails (-ENOMEM from the
 * backend), pages already unmerged stay so, the range stays registered and
 * the error is returned.
 */
SP_API int sp_unregister(struct sp_engine *e, struct sp_space *s,
			 uintptr_t start, size_t len);

/*
 * sp_forget - the memory of [start, start+len) is gone (munmap) or was
 * replaced wholesale: drop its records and registration without calling
 * the backend on the range.  Validation as sp_register; never fails for a
 * valid range.
 */
SP_API int sp_forget(struct sp_engine *e, struct sp_space *s,
		     uintptr_t start, size_t len);

/*
 * sp_discard - MADV_DONTNEED on a registered range: the caller has just
 * made its pages read zeros (the backend does not do it: the caller
 * changes the memory, serialised with sp_scan, then calls this).  Drops
 * the records of the range, keeps it registered.  As with sp_forget, the
 * memory changes first: a stable page whose last sharers these were is
 * then no longer mapped when it is released.  Validation as sp_register.
 * Return: 0 or -EINVAL.
 */
SP_API int sp_discard(struct sp_engine *e, struct sp_space *s,
		      uintptr_t start, size_t len);

/*
 * sp_ranges - call @fn for each registered part [a, b) of [start,
 * start+len), in address order (to carry registrations across an
 * mremap, say).  Return: 0 or -EINVAL.  Context: takes the engine lock;
 * @fn must not call back into the engine.
 */
SP_API int sp_ranges(struct sp_engine *e, struct sp_space *s,
		     uintptr_t start, size_t len,
		     void (*fn)(void *arg, uintptr_t a, uintptr_t b),
		     void *arg);

/*
 * sp_unmerge - give each merged page of the range a private copy of its
 * content, keeping the range registered (it may merge again later).
 * Return: 0, -EINVAL, or the backend's error (pages before it stay
 * unmerged).
 */
SP_API int sp_unmerge(struct sp_engine *e, struct sp_space *s,
		      uintptr_t start, size_t len);

/*
 * sp_unmerge_all - KSM's run=2: unmerge every merged page of every space,
 * drop all records, restart the pass count (full_scans = 0).  Ranges stay
 * registered.  Return: 0 or the first backend error (scanning may resume;
 * the caller decides, as the kernel sets run=0 on failure).
 */
SP_API int sp_unmerge_all(struct sp_engine *e);

/*
 * sp_scan - do one bounded batch of KSM's scan: process about @budget
 * pages (present pages that are not smart-skipped), merging what can be
 * merged.  A pass visits every registered range of every space; the
 * unstable tree is emptied when a pass starts.
 * Return: 1 if the current pass has pages left, 0 if the batch ended a
 * pass (full_scans was just incremented) or nothing is registered.
 * Never fails: backend errors skip the window concerned (scan_errors).
 * Context: takes the engine lock for the whole batch.
 */
SP_API int sp_scan(struct sp_engine *e, unsigned budget);

/*
 * sp_knob_set - set a knob, with the kernel's validation: -EINVAL for an
 * unknown knob or a value out of range (max_page_sharing < 2, booleans
 * other than 0 or 1); -EBUSY to change max_page_sharing while stable pages
 * exist.  On error nothing changes.
 */
SP_API int sp_knob_set(struct sp_engine *e, enum sp_knob k, uint64_t v);

/* sp_knob_get - read a knob.  Return: 0 and *v set, or -EINVAL. */
SP_API int sp_knob_get(struct sp_engine *e, enum sp_knob k, uint64_t *v);

/*
 * sp_knob_name / sp_knob_lookup - the sysfs name of a knob, and back.
 * Return: the name, or NULL for an unknown knob / 0 and *k set, or -EINVAL.
 * Context: pure functions; no lock.
 */
SP_API const char *sp_knob_name(enum sp_knob k);
SP_API int sp_knob_lookup(const char *name, enum sp_knob *k);

/* sp_stats_get - snapshot of the global counters. */
SP_API void sp_stats_get(struct sp_engine *e, struct sp_stats *st);

/* sp_space_stats_get - snapshot of one space's counters. */
SP_API void sp_space_stats_get(struct sp_engine *e, struct sp_space *s,
			       struct sp_space_stats *st);

/*
 * sp_engine_verify - recount every counter from the records and check the
 * trees' invariants (content order of the stable tree, sharer counts,
 * chains).  For tests and debugging: O(pages + stable pages).
 * Return: 0 if consistent, -EUCLEAN with a description written to @why
 * (if not NULL, up to @whylen bytes) otherwise.
 */
SP_API int sp_engine_verify(struct sp_engine *e, char *why, size_t whylen);

/* ===================================================================== */
/* 2. The backend interface                                               */
/* ===================================================================== */

/*
 * A stable page: a page of the backend's stable store, named by a number.
 * The engine allocates runs of consecutive numbers, fills each page once,
 * maps it read-only over the virtual pages that equal it, and releases it
 * when no sharer is left.  A stable page is never written after it is
 * filled.
 */
typedef uint32_t sp_spage_t;
#define SP_SPAGE_NONE ((sp_spage_t)UINT32_MAX)

/* What ops->look() is asked for each page (bits). */
enum sp_look {
	SP_LOOK_FIRST = 1,	/* the page's first look: a hint to others */
	SP_LOOK_FIND = 2,	/* name a shared page holding its content */
};

/* What a virtual page holds, as reported by ops->state(). */
enum sp_pstate {
	SP_PS_UNMAPPED = 0,	/* no mapping at this address */
	SP_PS_NONE,		/* mapped, no private frame: reads zeros */
	SP_PS_ANON,		/* a private frame, resident: scannable */
	SP_PS_OTHER,		/* private content not scannable now (swapped) */
	SP_PS_STABLE,		/* maps a stable page (not written since) */
};

/* What a range of address space is, as reported by ops->probe(). */
enum sp_extent_kind {
	SP_EXT_HOLE = 0,	/* unmapped */
	SP_EXT_MERGEABLE,	/* private anonymous memory: may merge */
	SP_EXT_OTHER,		/* mapped but never merged (shared, special) */
};

struct sp_extent {
	uintptr_t end;		/* end of the extent starting at the probe address */
	enum sp_extent_kind kind;
};

/*
 * The operations table.  Every op returns 0 or a negative errno unless
 * said otherwise, and is called with the engine's lock held, from one
 * thread at a time per engine.  @space is the handle given to
 * sp_space_add(); @addr is page aligned; @n counts pages.
 *
 * The no-lost-write contract: between protect() and the matching
 * unprotect(), no write of any kind (user, kernel, device) may change a
 * held page; writers block instead and resume after unprotect(),
 * landing in whatever the address maps then (a private copy of a stable
 * page, a fresh zero page).  A page the backend cannot hold that way
 * (pinned for DMA: a write-protect does not stop a transfer already
 * pinned) is reported as not held and never replaced.  The engine
 * compares bytes only of held pages and calls replace()/zap() only on
 * pages it verified.
 *
 * Between protect() and unprotect() the engine allocates no memory, so a
 * backend may block writers that hold allocator locks.
 */
struct sp_backend_ops {
	/* Describe the mapping that starts at @addr, looking at most @len
	 * bytes ahead: ext->end is where its kind changes (<= addr + len). */
	int (*probe)(void *be, void *space, uintptr_t addr, size_t len,
		     struct sp_extent *ext);
	/* Fill out[0..n) with enum sp_pstate for n pages from @addr. */
	int (*state)(void *be, void *space, uintptr_t addr, size_t n,
		     uint8_t *out);
	/* The page's bytes: a pointer valid until the next op call, either
	 * into memory that cannot change or fault under the engine (the
	 * backend's own, a held page's) or into @buf (SP_PAGE_SIZE bytes,
	 * filled).  NULL if the page cannot be read (unmapped).  Reading
	 * never faults and never blocks writers. */
	const void *(*peek)(void *be, void *space, uintptr_t addr, void *buf);
	/* Compare @key with the page's bytes: *order gets the sign of
	 * memcmp(key, page).  Return: 0, or -EFAULT if unreadable.  Never
	 * faults; stops at the first difference (tree walks use it). */
	int (*cmp)(void *be, void *space, uintptr_t addr, const void *key,
		   int *order);
	/* Optional (may be NULL).  *hash gets the XXH3-64 (no seed) of
	 * the page's bytes read where they are, without a copy: cheaper than
	 * peek() for a page whose bytes are then not needed.  A concurrent
	 * writer may make it the hash of bytes the page never held all at
	 * once; the engine uses it as a checksum only, and before it
	 * compares any bytes it takes a snapshot (peek) and hashes that.
	 * Return: 0, or -EFAULT if unreadable.  Never faults; never blocks
	 * writers. */
	int (*hash)(void *be, void *space, uintptr_t addr, uint64_t *hash);
	/* Hold n pages: from now on no write of any kind (user, kernel,
	 * device) may change them.  held[i] says whether page i could be
	 * held; a page that cannot (pinned for DMA, shared with another
	 * process) is left as it is.  Return: 0, or an error with none
	 * held. */
	int (*protect)(void *be, void *space, uintptr_t addr, size_t n,
		       uint8_t *held);
	/* End the hold of n pages and wake writers blocked on them: pages
	 * neither replaced nor zapped get their content back.  Must not
	 * fail. */
	void (*unprotect)(void *be, void *space, uintptr_t addr, size_t n);
	/* Map stable pages first..first+n-1 read-only over n held,
	 * verified pages, dropping their old frames.  All or nothing. */
	int (*replace)(void *be, void *space, uintptr_t addr, size_t n,
		       sp_spage_t first);
	/* Release n held, verified zero-filled pages: afterwards they read
	 * zeros and own no frame.  All or nothing. */
	int (*zap)(void *be, void *space, uintptr_t addr, size_t n);
	/* Give each of n pages a private frame with its current content
	 * (break sharing; a released zero page gets a private zero frame).
	 * Pages already private are left alone.  May fail with -ENOMEM. */
	int (*unmerge)(void *be, void *space, uintptr_t addr, size_t n);
	/* Reserve n consecutive stable page numbers. */
	int (*stable_alloc)(void *be, size_t n, sp_spage_t *first);
	/* Fill stable pages first..first+n-1 from src[i], once each. */
	int (*stable_write)(void *be, sp_spage_t first, size_t n,
			    const void *const *src);
	/* A stable page's bytes (as peek). */
	const void *(*stable_peek)(void *be, sp_spage_t page, void *buf);
	/* The engine holds no sharer of these n pages any more: free them
	 * once no mapping anywhere can reach them.  Must not fail. */
	void (*stable_release)(void *be, sp_spage_t first, size_t n);
	/* Optional (may be NULL).  Every merged page of the n pages at
	 * @addr is about to be unmerged: the backend may first turn as much
	 * of the range as it can back into ordinary private memory in one
	 * go, returning what merging cost (mappings), with every byte and
	 * every concurrent write kept.  The engine then calls unmerge() on
	 * each merged run as usual; on a rebuilt run it finds nothing to do.
	 * Best effort: what cannot be rebuilt is left as it is. */
	void (*rebuild)(void *be, void *space, uintptr_t addr, size_t n);
	/* Optional (may be NULL).  Pages of one window that found no
	 * partner in the engine (they just entered the unstable tree):
	 * @hash[i] is the XXH3-64 of the page at @addr[i] as it was read.
	 * The backend may name, in out[i], a stable page it can map that
	 * probably holds the same bytes (from a store shared with other
	 * processes), else SP_SPAGE_NONE.  Each page named carries one
	 * reference, which the engine gives back with stable_release: when
	 * the page it merged there stops mapping it, or at once if none
	 * did.  The engine makes no stable node for a named page.  The
	 * engine compares bytes before anything is mapped, as always.  May
	 * block (a round trip to a daemon).  Return: 0 or -errno (nothing
	 * named). */
	int (*lookup)(void *be, void *space, size_t n, const uintptr_t *addr,
		      const uint64_t *hash, sp_spage_t *out);
	/* Optional (may be NULL).  Pages of one window looked at for the
	 * first time (no record yet) or changed since their last look, that
	 * found nothing to join in the engine: @hash[i] is the XXH3-64 of
	 * the page at @addr[i] as it was read, @how[i] says what is asked
	 * (SP_LOOK_*).  SP_LOOK_FIND: as KSM searches its stable tree before
	 * it tests the checksum, the backend may name in out[i] a page of a
	 * store shared with other processes that already holds content of
	 * that hash, as lookup() does, but must not make one or ask for one
	 * to be made (the page may change at any time: only the unstable
	 * tree's second look shows it stable); each page named carries one
	 * reference, as for lookup(), and the engine compares bytes before
	 * anything is mapped.  SP_LOOK_FIRST: a first look; a backend with a
	 * shared store may already tell the other processes that this
	 * content exists here, so that two processes holding it pair up
	 * before their second look rather than at it; the engine keeps no
	 * state for it.  out[i] is SP_SPAGE_NONE where nothing is named.
	 * May block (a round trip to a daemon).  Return: 0 or -errno
	 * (nothing named). */
	int (*look)(void *be, void *space, size_t n, const uintptr_t *addr,
		    const uint64_t *hash, const uint8_t *how, sp_spage_t *out);
};

/* ===================================================================== */
/* 3. The simulated backend                                               */
/* ===================================================================== */

/*
 * Simulated physical memory: frames with reference counts, address spaces
 * with page tables, a stable store, and copy-on-write as the kernel does
 * it.  Not thread-safe: call it from one thread, or under one lock (the
 * engine's lock covers the calls the engine makes).
 *
 * Concurrency is simulated: an injector callback runs at the start of
 * every backend op and may write to any page, as another thread would.  A
 * write to a write-protected page is queued, and lands when unprotect()
 * wakes it, exactly as a writer blocked by userfaultfd does.
 *
 * Frame content can be real bytes or generated on demand from a 64-bit
 * tag (sp_sim_fill_tag), so that very large simulated memories fit in RAM.
 */
struct sp_sim;
struct sp_sim_space;

/* Frame identifiers, for tests; 0 means "no frame". */
typedef uint32_t sp_frame_t;

struct sp_sim_counts {
	uint64_t frames;		/* frames allocated (private + stable) */
	uint64_t stable_frames;		/* store frames alive (held or still mapped) */
	uint64_t refs;			/* sum of frame reference counts */
	uint64_t queued_writes;		/* writes waiting on a protected page */
	uint64_t released_while_mapped;	/* engine bug: store page freed under a mapping */
	uint64_t unprotected_changes;	/* engine bug: replace/zap without protect */
	uint64_t ops;			/* backend op calls */
	uint64_t injected_writes;	/* writes issued by the injector */
	uint64_t writes_blocked;	/* writes that had to wait for unprotect */
	/* The shared store (sp_sim_shared_ops): */
	uint64_t shared_frames;		/* shared store pages alive */
	uint64_t shared_named;		/* references lookup and look handed out */
	uint64_t look_named;		/* of which look (SP_LOOK_FIND) */
	uint64_t uploads;		/* pages lookup read for the store */
	uint64_t nominations;		/* contents lookup saw first */
};

/* The backend ops over a simulator; pass the sp_sim as @be. */
SP_API extern const struct sp_backend_ops sp_sim_ops;
/*
 * The same ops with lookup: a stable store shared by every engine on the
 * simulator, each space standing for a process, as samepaged's store is
 * shared (design.md).  A page an engine offers is named if the store
 * holds its content; if another space offered that content first, its
 * bytes are read as they are now, stored (or found stored) and named;
 * otherwise it is only noted.  A shared page lives until every reference
 * named is given back with stable_release; sp_sim_check() checks the
 * store's index as well.
 */
SP_API extern const struct sp_backend_ops sp_sim_shared_ops;

/* sp_sim_new - an empty simulator.  Return: 0 and *out, or -ENOMEM. */
SP_API int sp_sim_new(struct sp_sim **out);
/* sp_sim_free - free the simulator and all its spaces and frames. */
SP_API void sp_sim_free(struct sp_sim *sim);

/* sp_sim_space_new - an empty address space.  Return: 0 or -ENOMEM. */
SP_API int sp_sim_space_new(struct sp_sim *sim, struct sp_sim_space **out);
/* sp_sim_space_free - unmap everything and free the space. */
SP_API void sp_sim_space_free(struct sp_sim *sim, struct sp_sim_space *sp);

/* Mapping kinds for sp_sim_map. */
enum sp_sim_map_kind {
	SP_SIM_PRIVATE = 0,	/* private anonymous: mergeable */
	SP_SIM_SHARED,		/* shared: mapped, never merged */
};

/*
 * sp_sim_map - map [addr, addr+len) (page aligned, not overlapping an
 * existing mapping).  Pages start with no frame (they read zeros).
 * Return: 0, -EINVAL (unaligned, overlap), -ENOMEM.
 */
SP_API int sp_sim_map(struct sp_sim *sim, struct sp_sim_space *sp,
		      uintptr_t addr, size_t len, enum sp_sim_map_kind kind);
/* sp_sim_unmap - unmap [addr, addr+len), splitting mappings as needed. */
SP_API int sp_sim_unmap(struct sp_sim *sim, struct sp_sim_space *sp,
			uintptr_t addr, size_t len);

/*
 * sp_sim_write - write @len bytes at @addr (may cross pages), as a user
 * thread would: copy-on-write from a shared or stable frame, a new frame
 * for a page without one.  If a touched page is write-protected, the
 * write to that page is queued until unprotect.
 * Return: 0, -EFAULT (unmapped).
 */
SP_API int sp_sim_write(struct sp_sim *sim, struct sp_sim_space *sp,
			uintptr_t addr, const void *src, size_t len);
/* sp_sim_discard - MADV_DONTNEED: the pages drop their frames and read
 * zeros (page aligned).  Return: 0, -EINVAL, -EFAULT (unmapped). */
SP_API int sp_sim_discard(struct sp_sim *sim, struct sp_sim_space *sp,
			  uintptr_t addr, size_t len);
/* sp_sim_read - read @len bytes at @addr.  Return: 0 or -EFAULT. */
SP_API int sp_sim_read(struct sp_sim *sim, struct sp_sim_space *sp,
		       uintptr_t addr, void *dst, size_t len);
/*
 * sp_sim_fill_tag - give n pages from @addr each a private frame whose
 * content is generated from tag[i]: pages with equal tags are identical,
 * pages with different tags differ.  The bytes are produced when read, so
 * the frame costs no 4 KiB of RAM until written.  Return: 0, -EFAULT.
 */
SP_API int sp_sim_fill_tag(struct sp_sim *sim, struct sp_sim_space *sp,
			   uintptr_t addr, size_t n, const uint64_t *tag);
/* sp_sim_tag_bytes - the bytes sp_sim_fill_tag generates for @tag. */
SP_API void sp_sim_tag_bytes(uint64_t tag, void *page);

/*
 * sp_sim_pin - pin the frame mapped at @addr for "DMA", as io_uring fixed
 * buffers or O_DIRECT do: the backend then refuses to hold the page, and
 * the frame lives while pinned even if unmapped.  sp_sim_dma_write writes
 * into the pinned frame itself, wherever (or whether) it is mapped, as a
 * device does: if an engine replaced the page anyway, the write is lost
 * to the program, and a shadow comparison shows it.
 * Return: 0 and *out, -EFAULT (unmapped) or -ENOENT (no frame).
 */
SP_API int sp_sim_pin(struct sp_sim *sim, struct sp_sim_space *sp,
		      uintptr_t addr, sp_frame_t *out);
SP_API void sp_sim_unpin(struct sp_sim *sim, sp_frame_t f);
SP_API int sp_sim_dma_write(struct sp_sim *sim, sp_frame_t f, size_t off,
			    const void *src, size_t len);

/* sp_sim_frame_of - the frame mapped at @addr (0 if none or unmapped). */
SP_API sp_frame_t sp_sim_frame_of(struct sp_sim *sim, struct sp_sim_space *sp,
				  uintptr_t addr);
/* sp_sim_frame_ref - a frame's reference count (0 for a free frame). */
SP_API uint32_t sp_sim_frame_ref(struct sp_sim *sim, sp_frame_t f);
/* sp_sim_frame_is_stable - whether a frame belongs to the stable store. */
SP_API int sp_sim_frame_is_stable(struct sp_sim *sim, sp_frame_t f);
/* sp_sim_counts - frame and op counters. */
SP_API void sp_sim_counts(struct sp_sim *sim, struct sp_sim_counts *c);

/*
 * sp_sim_check - recount every frame's references from the page tables
 * and the store and compare with the reference counts; check that no
 * frame leaked (allocated with no reference) and that no write is still
 * queued.  Return: 0, or -EUCLEAN with a description in @why.
 */
SP_API int sp_sim_check(struct sp_sim *sim, char *why, size_t whylen);

/*
 * The injector: called at the start of every backend op with the op's
 * name.  It may call sp_sim_write() (a concurrent writer) and nothing that
 * maps or unmaps.  NULL removes it.
 */
typedef void (*sp_sim_injector_fn)(struct sp_sim *sim, const char *op,
				   void *arg);
SP_API void sp_sim_set_injector(struct sp_sim *sim, sp_sim_injector_fn fn,
				void *arg);

/*
 * sp_sim_fault_next - make the next call of op @op (e.g. "replace",
 * "stable_alloc", "unmerge") fail with @err, to test error paths.
 * @op NULL clears it.
 */
SP_API void sp_sim_fault_next(struct sp_sim *sim, const char *op, int err);

/* ===================================================================== */
/* 4. The in-process agent (Linux): merging this process's memory         */
/* ===================================================================== */

/*
 * The agent merges the memory of the process it runs in, with the Linux
 * backend, from a scanner thread of its own (KSM's ksmd).  One agent per
 * process.  It needs a userfaultfd with UFFDIO_MOVE (Linux 6.8+; root,
 * vm.unprivileged_userfaultfd=1, or access to /dev/userfaultfd): without
 * one there is no way to hold a page with no write lost, and
 * sp_agent_start() refuses, saying why.
 *
 * Registered memory keeps anonymous-memory semantics only if its mapping
 * changes go through the agent (sp_agent_discard/unmap/remap/protect):
 * the agent serialises them with merging.  A raw munmap of registered
 * memory is survived (reads are guarded), but a raw MADV_DONTNEED on a
 * merged page brings back the page's merged content instead of zeros.
 */
struct sp_agent;

struct sp_agent_config {
	int run;		/* initial KSM run state: 0 stopped, 1 scanning */
};

/* Backend and agent figures, for tests, benchmarks and `samepage stat`. */
struct sp_agent_stats {
	uint64_t moves;			/* pages moved out to be held */
	uint64_t moves_refused;		/* move-outs the kernel refused (pinned) */
	uint64_t rebuilt;		/* pages unmerged by rebuilding their
					 * range as one anonymous mapping */
	uint64_t replaces;		/* mmap calls mapping stable runs */
	uint64_t punches;		/* stable pages given back (hole punched) */
	uint64_t pending_release;	/* released, still reachable: kept */
	uint64_t vma_refusals;		/* merges refused to stay in the budget */
	uint64_t vmas;			/* VMAs of the process (last count) */
	uint64_t vma_budget;		/* the agent adds mappings only below */
	uint64_t store_bytes;		/* stable pages allocated (not yet punched) */
	uint64_t guard_faults;		/* reads that faulted (page vanished) */
	uint64_t slow_reads;		/* reads through /proc/self/mem */
	uint64_t passes;		/* passes the scanner completed */
	uint64_t backend_bytes;		/* the backend's own metadata */
	uint64_t held_waits;		/* accesses that waited on a held page */
};

/*
 * sp_agent_start - start merging this process's memory.
 * Return: 0 and *out; -EPERM / -ENOSYS (no usable userfaultfd: @why says
 * what is missing), -EBUSY (an agent runs already), -ENOMEM.
 * Context: any thread.  Registers fork handlers: a child keeps its
 * memory intact and gets an agent of its own, scanning.
 */
SP_API int sp_agent_start(const struct sp_agent_config *cfg,
			  struct sp_agent **out, char *why, size_t whylen);

/* sp_agent_stop - stop scanning and free the agent.  Merged pages stay
 * merged (as when ksmd stops); call sp_agent_set_run(a, 2) first to
 * unmerge them. */
SP_API void sp_agent_stop(struct sp_agent *a);

/* sp_agent_engine - the engine, for knobs and counters (sp_knob_set,
 * sp_stats_get, sp_space_stats_get with sp_agent_space). */
SP_API struct sp_engine *sp_agent_engine(struct sp_agent *a);
SP_API struct sp_space *sp_agent_space(struct sp_agent *a);

/* sp_agent_register / unregister - MADV_MERGEABLE / MADV_UNMERGEABLE on
 * [addr, addr+len) of this process, as sp_register / sp_unregister. */
SP_API int sp_agent_register(struct sp_agent *a, void *addr, size_t len);
SP_API int sp_agent_unregister(struct sp_agent *a, void *addr, size_t len);

/*
 * sp_agent_merge_now - scan at full speed until every registered range
 * has been through enough passes to merge what can be merged (three
 * from now: the pass under way, a pass that records checksums, a pass
 * that merges), then return.  Works whatever the run state.
 * Return: 0, or -ETIMEDOUT after @timeout_ms (0: no limit).
 */
SP_API int sp_agent_merge_now(struct sp_agent *a, unsigned timeout_ms);

/*
 * sp_agent_set_run - KSM's run: 0 stop (merged pages stay), 1 scan, 2
 * unmerge everything and stop (ranges stay registered).  With 0 or 2 it
 * returns once no scan batch is in flight: nothing is merged after that
 * until run 1 or sp_agent_merge_now.  May block for one batch.  Return:
 * 0, -EINVAL, or unmerge's error (run is then 0, as in the kernel).
 */
SP_API int sp_agent_set_run(struct sp_agent *a, int run);
SP_API int sp_agent_get_run(struct sp_agent *a);

/*
 * The program's memory calls on registered memory, with anonymous
 * semantics kept (each returns 0 or -errno, mremap's new address or
 * MAP_FAILED with errno set, as the syscall would):
 *   discard - MADV_DONTNEED: the range reads zeros afterwards (a merged
 *             page does not come back), registration kept;
 *   unmap   - munmap, forgetting the range;
 *   remap   - mremap; registered parts stay registered at the new place;
 *   protect - mprotect (merged pages stay merged; PROT_NONE pages merge).
 */
SP_API int sp_agent_discard(struct sp_agent *a, void *addr, size_t len);
SP_API int sp_agent_unmap(struct sp_agent *a, void *addr, size_t len);
SP_API void *sp_agent_remap(struct sp_agent *a, void *old, size_t oldlen,
			    size_t newlen, int flags, void *new_addr);
SP_API int sp_agent_protect(struct sp_agent *a, void *addr, size_t len,
			    int prot);

/*
 * sp_agent_vma_call - run @fn(@arg), a call that changes VMA flags of the
 * program's memory (madvise MADV_DONTFORK / DOFORK / DONTDUMP / DODUMP /
 * WIPEONFORK / KEEPONFORK, mlock and friends), with merging held still,
 * then re-read the flags, so that merging keeps DONTFORK and DONTDUMP on
 * the mappings it makes and leaves WIPEONFORK and mlocked memory alone.
 * With @unmerge_first, merged pages of [addr, addr+len) are unmerged
 * first (the kernel refuses WIPEONFORK on the store's file mappings).
 * Return: what @fn returned (0 or -errno), or -errno of the unmerge with
 * @fn not called.  Blocks for one scan batch, and for the unmerge.
 */
SP_API int sp_agent_vma_call(struct sp_agent *a, int unmerge_first,
			     void *addr, size_t len, int (*fn)(void *arg),
			     void *arg);

/*
 * sp_agent_map - mmap under the agent: used for MAP_FIXED over registered
 * memory (whatever was there is forgotten, as after munmap) and, with
 * merge-any on, to register new private anonymous mappings at once.
 * Return: as mmap(2) (MAP_FAILED with errno set).
 */
SP_API void *sp_agent_map(struct sp_agent *a, void *addr, size_t len,
			  int prot, int flags, int fd, off_t off);

/*
 * sp_agent_set_merge_any - PR_SET_MEMORY_MERGE: on, every private
 * anonymous VMA of the process (the main stack aside) is registered now,
 * after each pass (mappings made behind our back: brk, thread stacks),
 * and by sp_agent_map; off, every range is unregistered (unmerged), those
 * registered by sp_agent_register included, as the kernel does.
 * Return: 0 or unmerge's error (merge-any then stays on).
 * sp_agent_get_merge_any - the flag (PR_GET_MEMORY_MERGE).
 */
SP_API int sp_agent_set_merge_any(struct sp_agent *a, int on);
SP_API int sp_agent_get_merge_any(struct sp_agent *a);

/* sp_agent_overlaps - whether [addr, addr+len) touches a registered
 * range.  Takes the engine lock only (cheap; a scan window may delay it). */
SP_API int sp_agent_overlaps(struct sp_agent *a, const void *addr,
			     size_t len);

/* sp_agent_internal - nonzero on a thread running agent code (its
 * scanner; a thread inside an sp_agent_* call or its fork handlers).  An
 * interposer of mmap/munmap/madvise must pass such calls straight on. */
SP_API int sp_agent_internal(void);

/* sp_agent_check - whether merging can run in this process: 0, or
 * -EPERM / -ENOSYS with @why saying what is missing.  Allocates nothing. */
SP_API int sp_agent_check(char *why, size_t whylen);

/* sp_agent_stats_get - the backend's and scanner's figures. */
SP_API void sp_agent_stats_get(struct sp_agent *a, struct sp_agent_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* SAMEPAGE_H */
