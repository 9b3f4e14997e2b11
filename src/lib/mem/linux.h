/*
 * linux.h - private: the Linux memory backend, which merges the memory
 * of the process it runs in.
 *
 * Files:
 *   linux.c      set-up, capability checks, the ops table, fork
 *   lx_alloc.c   a private allocator whose mappings are never merged
 *   lx_store.c   the stable store: memfd segments, their read view,
 *                writes, and release only once the kernel shows that no
 *                mapping can reach a page
 *   lx_uffd.c    the userfaultfd and its ioctls
 *   lx_hold.c    holding pages (move-out with userfaultfd), replacing,
 *                zapping; the VMA budget
 *   lx_unmerge.c giving merged pages back as private memory (rebuild,
 *                or in place)
 *   lx_smap.c    the index of store mappings
 *   lx_scan.c    page states (pagemap), reads (guarded), probes
 *                (PROCMAP_QUERY), exclusions
 *   lx_guard.c   the fault guard for direct reads
 *
 * Locking: every function here runs under the engine lock (the ops) or
 * under the agent's memory lock with the engine lock taken inside it;
 * the backend has no lock of its own except the allocator's (taken after
 * the engine lock, never around a call out).
 */
#ifndef SP_MEM_LINUX_H
#define SP_MEM_LINUX_H

#include <stdint.h>
#include <sys/types.h>

#include "samepage.h"
#include "../util/alloc.h"
#include "../util/ralloc.h"
#include "../util/rbtree.h"
#include "../proto.h"
#include "../util/u32map.h"

#define LX_PS SP_PAGE_SIZE
#define LX_HOLD_MAX 256			/* pages per hold (a window) */
#define LX_ONEWAY_MAX 256		/* hashes per gathered HINT/NOMINATE */
#define LX_SEG_PAGES (1u << 24)		/* 64 GiB of stable pages per segment */
#define LX_MAX_SEGS 64

/*
 * A segment: stable page numbers [base, base + LX_SEG_PAGES) backed by
 * one memfd.  Only the last segment allocates.  After a fork, the child
 * freezes every segment it inherited (it never writes nor punches them:
 * the parent owns them) and starts a new one; the parent records the
 * allocator's top at the fork, below which a child may still map pages.
 */
struct lx_seg {
	int fd;			/* memfd, O_RDWR; -1 if unused */
	uint32_t base;		/* first stable page number */
	uint64_t size;		/* memfd size in bytes */
	char *view;		/* read-only shared view of the memfd */
	uint64_t dev, ino;	/* identity in /proc/PID/maps */
	int frozen;		/* inherited from a parent: never write/punch */
	uint64_t born;		/* creation, in clock ticks since boot (as
				 * /proc/PID/stat's starttime) */
	uint32_t fork_top;	/* pages below it may be mapped by children */
	int global;		/* 0: ours; 1: samepaged's (read-only fd,
				 * references counted there); 2: of a
				 * daemon we lost (nobody reuses it) */
	uint32_t gseg;		/* global: the daemon's segment number */
};

/*
 * The connection to samepaged (lx_client.c), used only by the thread
 * that holds the engine lock.  Stable pages named by the daemon live in
 * its segments, entered in seg[] with global = 1; the daemon counts one
 * reference per page per process, we count the engine's uses (@uses)
 * and give the daemon's back when ours drop to zero.
 */
struct lx_client {
	char path[108];		/* daemon socket; "" when not wanted */
	int sock;		/* -1: not connected */
	uint64_t epoch;		/* the daemon run of the last connection */
	uint64_t retry_ms;	/* no reconnect before (monotonic ms) */
	int16_t gmap[256];	/* daemon segment -> seg[] index, -1 */
	struct sp_u32map uses;	/* global stable page -> engine's uses
				 * (named pages mapping it, answers) */
	struct spp_ref *unref;	/* references to give back */
	uint32_t nunref;
	/* Hashes for the one-way messages (HINT, NOMINATE), gathered until
	 * half of LX_ONEWAY_MAX of a kind are in, a report is sent or a pass
	 * ends (lx_client_flush); each array LX_ONEWAY_MAX long */
	uint64_t *ow[2];
	uint32_t now[2];
	uint8_t *buf;		/* SPP_MAX_MSG: messages in and out */
	uint32_t intern_max;	/* pages per INTERN that our socket's send
				 * buffer holds (<= SPP_MAX_INTERN) */
	/* The daemon's directory (proto.h), mapped read-only; NULL: none
	 * yet, or it was retired (ask again) */
	const struct spp_dir_hdr *dir;
	uint32_t dir_n;		/* its entries */
	uint64_t tag;		/* ours in its entries */
	uint64_t report_ms;	/* last report */
};

/* Scratch area for one protection: holds land here (dst of UFFDIO_MOVE
 * must have the source's protection), two slots of LX_HOLD_MAX pages. */
struct lx_class {
	char *base;		/* NULL until first used */
	int prot;		/* PROT_* of the pages it takes */
};

/* Per-page state of a hold.  HELD: moved out to scratch; HELD_WP: a page
 * the process cannot write (UFFDIO_MOVE only moves between writable
 * VMAs), held in place by userfaultfd write protection. */
enum { LXH_NONE = 0, LXH_HELD, LXH_HELD_WP, LXH_REPLACED, LXH_ZAPPED };

/* A hold: a run of pages moved out into a scratch slot. */
struct lx_hold {
	int active;
	uintptr_t addr;		/* first page */
	unsigned n;
	unsigned slot;		/* 0 or 1 */
	uint8_t state[LX_HOLD_MAX];
	uint8_t cls[LX_HOLD_MAX];	/* scratch class (protection) */
	uint8_t moved[LX_HOLD_MAX];	/* REPLACED/ZAPPED: was moved out */
};

/* A range of the process mapped to consecutive stable pages by us (or
 * found in /proc/self/maps): [start, end) -> page first. */
struct lx_smap {
	struct sp_rb_node node;
	uintptr_t start, end;
	uint32_t first;
};

/* A VMA's part inside a chunk being rebuilt (lx_unmerge.c). */
#define LX_RB_CHUNK 512			/* pages per step (2 MiB, aligned) */
struct lx_rb_piece {
	uintptr_t a, b;
	int store;		/* a store mapping (else plain anonymous) */
	size_t moved;		/* plain: bytes moved into the copy so far */
};

/* An excluded range: memory the scanner touches, never merged. */
struct lx_excl {
	uintptr_t start, end;
};

/* A sorted list of disjoint ranges that never touch (lx_range_add). */
struct lx_ranges {
	struct lx_excl *r;
	unsigned n, cap;
};

/* VMA flags merging keeps on the mappings it makes (lx_flags.c). */
enum { LX_KEEP_DONTFORK, LX_KEEP_DONTDUMP, LX_KEEP_N };

struct sp_linux {
	int uffd;			/* -1 if none */
	int pagemap_fd, mem_fd, maps_fd;	/* of this process */
	pid_t pid;			/* whose memory this is */
	uint64_t zero_pfn;		/* PFN of the zero page, 0 unknown */
	int guard_ok;			/* our fault guard is installed (checked
					 * once per window, in lx_state) */

	struct lx_seg seg[LX_MAX_SEGS];
	unsigned nseg;
	unsigned cur;			/* the local segment that allocates */
	struct lx_client cl;		/* samepaged, if wanted */
	struct sp_ralloc ra;		/* numbers of the last segment */
	uint32_t *pending;		/* released pages waiting for a punch */
	uint32_t npending, pending_cap;
	int forked;			/* some segment has fork_top set */

	struct lx_class cls[8];		/* by PROT_READ|WRITE|EXEC */
	struct lx_hold hold[2];

	struct sp_rb_root smaps;	/* struct lx_smap, by start */

	struct lx_excl *excl;		/* sorted, disjoint */
	unsigned nexcl, excl_cap;
	/* VMA flags, from /proc/self/smaps (lx_flags.c).  Under mem_lock.
	 * badflag: VMAs whose flags merging cannot keep (WIPEONFORK,
	 * mlocked); keep[k]: VMAs with flag k, which merging sets again on
	 * every mapping it makes there.  flags_ok: the last read was whole
	 * (else nothing is held or rebuilt). */
	struct lx_excl *badflag;
	unsigned nbadflag, badflag_cap;
	struct lx_ranges keep[LX_KEEP_N];
	int flags_ok;

	/* lx_unmerge.c's working space (off the stack: unmerge runs on the
	 * program's threads too) */
	struct lx_rb_piece rb_pc[LX_RB_CHUNK];
	uint64_t rb_pm[LX_RB_CHUNK];

	long max_map_count;		/* vm.max_map_count */
	long vma_budget;		/* we add mappings only below this */
	long vma_est;			/* estimated VMAs now */
	int vma_full;			/* a recount found no room: refuse new
					 * mappings without recounting until
					 * the next pass (or a rebuild) */

	struct sp_mem mem;		/* private allocator, counted */
	uint64_t mem_bytes;

	/* counters for tests and benchmarks */
	uint64_t moves, moves_refused, replaces, punches, vma_refusals;
	uint64_t rebuilt;		/* pages unmerged by rebuilding */
	uint64_t guard_faults, slow_reads;
	uint64_t held_waits;		/* accesses that waited on a held page */
};

/* ---- linux.c ---- */
extern const struct sp_backend_ops lx_ops;
/* lx_check - whether this process can merge at all (a usable
 * userfaultfd), touching nothing.  Return: 0, or -EPERM / -ENOSYS with
 * the reason in @why. */
int lx_check(char *why, size_t whylen);
/* lx_new - set up the backend for this process.  Return: 0 and *out, or
 * -errno with the reason in @why (no usable userfaultfd: -EPERM). */
int lx_new(struct sp_linux **out, char *why, size_t whylen);
void lx_free(struct sp_linux *lx);
/* lx_maintain - once per pass: index of store mappings from the kernel's
 * view, VMA recount, punch released pages nothing can reach. */
int lx_maintain(struct sp_linux *lx);
/* After fork(): in the parent, in the child (new userfaultfd, new store
 * segment, inherited ones frozen).  Context: the agent's fork handlers. */
void lx_fork_parent(struct sp_linux *lx);
int lx_fork_child(struct sp_linux *lx, char *why, size_t whylen);

/* ---- lx_flags.c ---- (all under the agent's mem_lock) */
/* lx_range_sub - take [start, end) out of a list.  Return: 0, or -ENOMEM
 * if a range cut in two found no room (the tail is then lost). */
int lx_range_sub(struct sp_linux *lx, struct lx_excl **list, unsigned *n,
		 unsigned *cap, uintptr_t start, uintptr_t end);
/* lx_refresh_flags - read every VMA's flags from /proc/self/smaps.
 * Return: 0, or -errno with flags_ok 0.  Blocks (reads procfs). */
int lx_refresh_flags(struct sp_linux *lx);
/* lx_flags_forget - [start, end) is unmapped or mapped anew: no flags
 * known there.  Return: 0, or -errno from the re-read it fell back on. */
int lx_flags_forget(struct sp_linux *lx, uintptr_t start, uintptr_t end);
/* lx_keep_mask - the kept flags of [start, end), bit k for LX_KEEP_k.
 * Return: the mask, or -EINVAL if they differ within the range. */
int lx_keep_mask(const struct sp_linux *lx, uintptr_t start, uintptr_t end);
/* lx_keep_apply - give the mapping at @at the kept flags of
 * [start, end) (madvise, piece by piece).  Return: 0, or -errno with some
 * pieces perhaps done. */
int lx_keep_apply(const struct sp_linux *lx, uintptr_t at, uintptr_t start,
		  uintptr_t end);
/* lx_map_keep - map @fd at @off, MAP_PRIVATE (fresh anonymous memory if
 * @fd is -1), over [addr, addr+len) with the kept flags of that range,
 * all at once.  Return: 0, or -errno with the range as it was (-EINVAL:
 * the flags differ within it). */
int lx_map_keep(struct sp_linux *lx, uintptr_t addr, size_t len, int prot,
		int fd, off_t off);
/* lx_fork_child_flags - in a fork child: call @gone for every range that
 * was DONTFORK (absent here), then forget them. */
void lx_fork_child_flags(struct sp_linux *lx,
			 void (*gone)(void *arg, uintptr_t start, uintptr_t end),
			 void *arg);

/* ---- lx_client.c ---- */
/* lx_client_flush - send the one-way messages gathered so far (the end
 * of a pass).  May block briefly on the socket; never waits for an
 * answer. */
void lx_client_flush(struct sp_linux *lx);

/* lx_client_init - read $SAMEPAGE_SOCKET: connect lazily if set. */
int lx_client_init(struct sp_linux *lx);
void lx_client_free(struct sp_linux *lx);
/* ops->lookup: names stable pages of the shared store (see samepage.h). */
int lx_lookup(void *be, void *space, size_t n, const uintptr_t *addr,
	      const uint64_t *hash, sp_spage_t *out);
/* ops->look: stored contents named (one FIND round trip for the window
 * if the directory shows any), first looks hinted, so that two
 * processes with a content pair up before their second look (see
 * samepage.h).  Blocks on that round trip and on one send at most. */
int lx_look(void *be, void *space, size_t n, const uintptr_t *addr,
	    const uint64_t *hash, const uint8_t *how, sp_spage_t *out);
/* lx_client_release - the engine stopped using a page of a global seg. */
void lx_client_release(struct sp_linux *lx, struct lx_seg *seg, uint32_t page);
/*
 * lx_client_report - send the counters; *knobs gets the domain's knobs.
 * Return: 1 if *knobs was filled, 0 if no daemon answered (nothing to
 * apply).  Flushes given-back references, reconnects when due.  May
 * block up to the socket timeout.
 */
int lx_client_report(struct sp_linux *lx, struct spp_report *rep,
		     struct spp_knobs *knobs);
/* lx_client_fork_child - in a child: the connection is the parent's;
 * drop it and reconnect (claiming the pages we inherited) when next
 * used. */
void lx_client_fork_child(struct sp_linux *lx);
/* Pages of the shared store the engine uses now. */
uint64_t lx_client_pages(const struct sp_linux *lx);

/* ---- lx_alloc.c ---- */
/* The private allocator: every mapping it makes is excluded from merging
 * (lx_alloc_owns).  Thread-safe; its lock is taken last. */
extern const struct sp_allocator lx_allocator;
void *lx_map(size_t len);		/* raw anonymous mapping, owned */
void lx_alloc_child(void);		/* after fork, in the child */
void lx_unmap(void *p, size_t len);
/* lx_alloc_owns - whether [start, end) touches a mapping of ours. */
int lx_alloc_owns(uintptr_t start, uintptr_t end);
/* lx_alloc_next - the first mapping of ours ending above @addr. */
int lx_alloc_next(uintptr_t addr, uintptr_t *start, uintptr_t *end);

/* ---- lx_guard.c ---- */
/* lx_guard_init - install the SIGSEGV/SIGBUS handler once per process
 * (the handlers found there get every fault it does not own).
 * Return: 0 or -errno.  Thread-safe. */
int lx_guard_init(void);
/* lx_guard_ok - whether our handler is still the installed one (someone
 * may have replaced it since): only then may the guarded reads run. */
int lx_guard_ok(void);
/*
 * The guarded reads: each does its work with this thread's guard armed,
 * and a fault inside it (the memory unmapped, made PROT_NONE or cut
 * short meanwhile) ends it.  Return: 0, or -EFAULT with the outputs
 * untouched (lx_guarded_copy's @dst may hold part of @src).  Never
 * block; async-signal-safe is not claimed.
 *   lx_guarded_copy - memcpy(@dst, @src, @n)
 *   lx_guarded_cmp  - memcmp(@key, @page, @n) into *@order
 *   lx_guarded_hash - sp_hash_page(@page) into *@hash
 */
int lx_guarded_copy(void *dst, const void *src, size_t n);
int lx_guarded_cmp(const void *key, const void *page, size_t n, int *order);
int lx_guarded_hash(const void *page, uint64_t *hash);

/* ---- lx_scan.c ---- */
int lx_excl_add(struct sp_linux *lx, uintptr_t start, uintptr_t end);
void lx_excl_del(struct sp_linux *lx, uintptr_t start, uintptr_t end);
int lx_excluded(const struct sp_linux *lx, uintptr_t start, uintptr_t end);
int lx_exclude_elf(struct sp_linux *lx);
/* lx_range_add - add [start, end) to a sorted, disjoint list, merging
 * the ranges it overlaps or touches.  Return: 0, or -ENOMEM (unchanged). */
int lx_range_add(struct sp_linux *lx, struct lx_excl **list, unsigned *n,
		 unsigned *cap, uintptr_t start, uintptr_t end);
/* lx_range_find - index of the first range of a sorted, disjoint list
 * that ends above @addr (@n if none).  Binary search. */
unsigned lx_range_find(const struct lx_excl *l, unsigned n, uintptr_t addr);
int lx_read_slow(struct sp_linux *lx, uintptr_t addr, void *buf);
/* What a VMA is (lx_query_kind). */
enum {
	LX_VMA_OTHER = 0,	/* shared, file-backed (not ours), special */
	LX_VMA_ANON,		/* private anonymous, unnamed */
	LX_VMA_HEAP,		/* private anonymous: [heap] */
	LX_VMA_STACK,		/* private anonymous: [stack] (grows down) */
	LX_VMA_STORE,		/* private mapping of one of our memfds */
};
/*
 * lx_query_kind - the VMA covering @addr, or the next one (PROCMAP_QUERY:
 * one ioctl, no lock of ours).  *prot: its PROT_*; *kind: LX_VMA_*.
 * Return: 0 (covering: *start <= addr), 1 (only a later one, at *start),
 * -ENOENT (none), or another -errno.
 */
int lx_query_kind(struct sp_linux *lx, uintptr_t addr, uintptr_t *start,
		  uintptr_t *end, int *prot, int *kind);
/* lx_query - as lx_query_kind; *anon_private: ANON, HEAP or STACK. */
int lx_query(struct sp_linux *lx, uintptr_t addr, uintptr_t *start,
	     uintptr_t *end, int *prot, int *anon_private);
/* lx_query_store - as lx_query_kind; *ours: STORE. */
int lx_query_store(struct sp_linux *lx, uintptr_t addr, uintptr_t *start,
		   uintptr_t *end, int *prot, int *ours);
int lx_probe(void *be, void *space, uintptr_t addr, size_t len,
	     struct sp_extent *ext);
int lx_state(void *be, void *space, uintptr_t addr, size_t n, uint8_t *out);
const void *lx_peek(void *be, void *space, uintptr_t addr, void *buf);
int lx_cmp(void *be, void *space, uintptr_t addr, const void *key,
	   int *order);
int lx_hash(void *be, void *space, uintptr_t addr, uint64_t *hash);

/* ---- lx_uffd.c ---- */
/* lx_uffd_open - a userfaultfd with UFFDIO_MOVE.  Return: 0 and *fd, or
 * -EPERM (none usable here) / -ENOSYS (no UFFDIO_MOVE), reason in @why. */
int lx_uffd_open(int *fd, char *why, size_t whylen);
/* Each returns 0 or -errno, as the ioctl. */
int lx_uffd_register(struct sp_linux *lx, uintptr_t a, size_t len,
		     unsigned mode);
int lx_uffd_unregister(struct sp_linux *lx, uintptr_t a, size_t len);
int lx_uffd_wp(struct sp_linux *lx, uintptr_t a, size_t len, int on);
/* lx_uffd_release - end registration and protection of [a, a+len),
 * whatever the program unmapped meanwhile, and wake its waiters. */
void lx_uffd_release(struct sp_linux *lx, uintptr_t a, size_t len);
/* lx_uffd_wake - wake the waiters of [a, a+len); never fails. */
void lx_uffd_wake(struct sp_linux *lx, uintptr_t a, size_t len);
/* lx_uffd_drain - read pending fault messages, counting held_waits. */
void lx_uffd_drain(struct sp_linux *lx);
/* lx_uffd_move - UFFDIO_MOVE with @mode.  Return: bytes moved; *err the
 * errno that stopped it (0: all moved). */
size_t lx_uffd_move(struct sp_linux *lx, uintptr_t dst, uintptr_t src,
		    size_t len, uint64_t mode, int *err);

/* ---- lx_hold.c ---- */
int lx_protect(void *be, void *space, uintptr_t addr, size_t n,
	       uint8_t *held);
void lx_unprotect(void *be, void *space, uintptr_t addr, size_t n);
int lx_replace(void *be, void *space, uintptr_t addr, size_t n,
	       sp_spage_t first);
int lx_zap(void *be, void *space, uintptr_t addr, size_t n);
struct lx_hold *lx_hold_of(struct sp_linux *lx, uintptr_t addr);
int lx_class_get(struct sp_linux *lx, int prot, struct lx_class **out);
/* lx_vma_recount - count the process's VMAs now (lx->vma_est). */
int lx_vma_recount(struct sp_linux *lx);

/* ---- lx_unmerge.c ---- */
int lx_unmerge(void *be, void *space, uintptr_t addr, size_t n);
void lx_rebuild(void *be, void *space, uintptr_t addr, size_t n);

/* ---- lx_smap.c ---- */
void lx_smap_add(struct sp_linux *lx, uintptr_t start, uintptr_t end,
		 uint32_t first);
void lx_smap_del(struct sp_linux *lx, uintptr_t start, uintptr_t end);
struct lx_smap *lx_smap_find(struct sp_linux *lx, uintptr_t addr);
void lx_smap_clear(struct sp_linux *lx);

/* ---- lx_store.c ---- */
int lx_seg_new(struct sp_linux *lx, char *why, size_t whylen);
struct lx_seg *lx_seg_of(struct sp_linux *lx, uint32_t page);
int lx_stable_alloc(void *be, size_t n, sp_spage_t *first);
int lx_stable_write(void *be, sp_spage_t first, size_t n,
		    const void *const *src);
const void *lx_stable_peek(void *be, sp_spage_t page, void *buf);
void lx_stable_release(void *be, sp_spage_t first, size_t n);
int lx_reconcile(struct sp_linux *lx);
int lx_release_pending(struct sp_linux *lx);

#endif
