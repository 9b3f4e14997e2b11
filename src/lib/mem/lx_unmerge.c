/*
 * lx_unmerge.c - giving merged pages back to the process as ordinary
 * private memory, with their bytes and every concurrent write kept.
 *
 * Two ways, best first:
 *   rebuild    a whole range (merged runs, the private pages between
 *              them) becomes one fresh anonymous mapping again, so the
 *              mappings merging cost are returned (lx_rebuild); a store
 *              mapping a span rebuild had to leave is tried alone;
 *   in place   the pages get private copies inside the store mapping
 *              (MADV_POPULATE_WRITE, or a forced copy for pages the
 *              process cannot write).  Always possible; the pages then
 *              never merge again (a private page inside a file mapping
 *              cannot be held: see lx_hold.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "linux.h"
#include "lx_sys.h"

/* Force a private copy of a page the process cannot write (read-only or
 * PROT_NONE), as KSM's unmerge does: /proc/self/mem writes with
 * FOLL_FORCE.  Nobody else can write such a page meanwhile. */
static int force_cow(struct sp_linux *lx, uintptr_t a)
{
	unsigned char buf[LX_PS];

	if (pread(lx->mem_fd, buf, LX_PS, (off_t)a) != (ssize_t)LX_PS ||
	    pwrite(lx->mem_fd, buf, LX_PS, (off_t)a) != (ssize_t)LX_PS)
		return -EFAULT;
	return 0;
}

/* Give every page of [a, b) a private copy where it is. */
static int unmerge_in_place(struct sp_linux *lx, uintptr_t a, uintptr_t b,
			    int prot)
{
	if (prot & PROT_WRITE) {
		/* File pages COW; a released zero page gets its own zeroed
		 * page. */
		if (madvise((void *)a, b - a, MADV_POPULATE_WRITE))
			return errno == EINTR ? -EINTR : -ENOMEM;
		return 0;
	}
	for (uintptr_t p = a; p < b; p += LX_PS)
		if (force_cow(lx, p))
			return -ENOMEM;
	return 0;
}

/* ---- rebuilding ------------------------------------------------------- */

#define RB_CHUNK LX_RB_CHUNK
#define RB_ALIGN ((uintptr_t)RB_CHUNK * LX_PS)

/* Whether a VMA of @kind and @prot may be part of a span rebuilt with
 * protection @sprot.  Plain pages are moved (UFFDIO_MOVE: writable VMAs
 * only); store pages are copied, so they must be readable.  Heap and
 * stack are left alone (a new mapping would lose what makes them so). */
static int rebuildable(int kind, int prot, int sprot)
{
	if (prot != sprot || !(prot & PROT_READ))
		return 0;
	return kind == LX_VMA_STORE ||
	       (kind == LX_VMA_ANON && prot == (PROT_READ | PROT_WRITE));
}

/* Whether a store page's pagemap entry shows it still maps its stable
 * page (present, file).  Anything else may be a private copy, perhaps
 * pinned for DMA (a copy of it would lose the device's writes), or one
 * swapped out, or a write-protect marker pagemap cannot tell from one. */
static int maps_stable(uint64_t pm)
{
	return (pm & PM_PRESENT) && (pm & PM_FILE);
}

/* Give a chunk back as it was: plain pages moved back, registration and
 * protection ended, waiters woken. */
static void chunk_undo(struct sp_linux *lx, uintptr_t c0, uintptr_t c1,
		       char *dst, struct lx_rb_piece *pc, unsigned npc)
{
	int err;

	for (unsigned k = 0; k < npc; k++)
		if (!pc[k].store && pc[k].moved)
			/* Fails only where the program unmapped the page
			 * meanwhile: its content went with it. */
			lx_uffd_move(lx, pc[k].a,
				     (uintptr_t)dst + (pc[k].a - c0),
				     pc[k].moved,
				     UFFDIO_MOVE_MODE_DONTWAKE |
					     UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
				     &err);
	madvise(dst, c1 - c0, MADV_DONTNEED);
	lx_uffd_drain(lx);	/* count the waiters before waking them */
	lx_uffd_release(lx, c0, c1 - c0);
}

/* Give the copy at @dst the chunk's DONTFORK / DONTDUMP (lx_flags.c), so
 * that the mremap carries them in.  A chunk whose flags differ within is
 * left (its pieces would be separate mappings of the copy). */
static int keep_flags(struct sp_linux *lx, char *dst, uintptr_t c0,
		      uintptr_t c1)
{
	int mask = lx_keep_mask(lx, c0, c1);

	if (mask < 0)
		return mask;
	return mask ? lx_keep_apply(lx, (uintptr_t)dst, c0, c1) : 0;
}

/*
 * Rebuild [c0, c1) as an anonymous mapping built at @dst (inside the
 * registered copy area), then moved over it in one mremap:
 *   1. fault the chunk in read-only, then register it (MISSING|WP): from
 *      now on an access to a page without a PTE waits, whoever makes it
 *      (user, kernel);
 *   2. write-protect it, and check in pagemap that each store page still
 *      maps its stable page (else leave the chunk: see maps_stable());
 *   3. plain pieces: move their pages into the copy (UFFDIO_MOVE: the
 *      pages themselves, so a write that landed before is carried; a
 *      page pinned for DMA or shared with a child is refused, EBUSY,
 *      and the chunk is left);
 *   4. store pieces: copy their bytes into the copy (UFFDIO_COPY from
 *      the addresses themselves: no trust in our own index);
 *   5. mremap the copy, with the chunk's DONTFORK / DONTDUMP, over the
 *      chunk: the old mappings go at once (the copy's own registration
 *      ended first);
 *   6. wake the waiters: they retry against the copy.
 * Return: 0, or -EAGAIN with the chunk as it was.
 */
static int rebuild_chunk(struct sp_linux *lx, uintptr_t c0, uintptr_t c1,
			 char *dst, int prot)
{
	struct lx_rb_piece *pc = lx->rb_pc;
	uint64_t *pm = lx->rb_pm;
	size_t len = c1 - c0;
	unsigned npc = 0;
	int err;

	/* Store pages faulted in read-only first (they map their stable
	 * pages; a write-protect marker on an empty one would read as a
	 * swapped private page below), plain holes get the zero page (moved
	 * like any page).  Not after registering: a hole would then wait
	 * for us. */
	madvise((void *)c0, len, MADV_POPULATE_READ);
	if (lx_uffd_register(lx, c0, len, UFFDIO_REGISTER_MODE_MISSING |
						  UFFDIO_REGISTER_MODE_WP))
		return -EAGAIN;
	for (uintptr_t a = c0; a < c1;) {
		uintptr_t vs, ve;
		int vprot, kind;

		if (lx_query_kind(lx, a, &vs, &ve, &vprot, &kind) != 0 ||
		    !rebuildable(kind, vprot, prot))
			goto undo;	/* changed since the span was found */
		pc[npc++] = (struct lx_rb_piece){ a, ve < c1 ? ve : c1,
					       kind == LX_VMA_STORE, 0 };
		a = pc[npc - 1].b;
	}
	/* Over the whole chunk in one call: plain pages get a write
	 * protection that is only an extra guard (the move maps them anew
	 * at the copy, whose range is not registered for it). */
	if (lx_uffd_wp(lx, c0, len, 1))
		goto undo;
	if (pread(lx->pagemap_fd, pm, len / LX_PS * 8,
		  (off_t)(c0 / LX_PS) * 8) != (ssize_t)(len / LX_PS * 8))
		goto undo;
	for (unsigned k = 0; k < npc; k++)
		for (uintptr_t p = pc[k].a; pc[k].store && p < pc[k].b;
		     p += LX_PS)
			if (!maps_stable(pm[(p - c0) / LX_PS]))
				goto undo;
	for (unsigned k = 0; k < npc; k++) {
		if (pc[k].store)
			continue;
		pc[k].moved = lx_uffd_move(lx, (uintptr_t)dst + (pc[k].a - c0),
					   pc[k].a, pc[k].b - pc[k].a,
					   UFFDIO_MOVE_MODE_DONTWAKE |
						   UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
					   &err);
		if (err) {
			lx->moves_refused++;
			goto undo;
		}
	}
	for (unsigned k = 0; k < npc; k++) {
		struct uffdio_copy c = {
			.dst = (uintptr_t)dst + (pc[k].a - c0), .src = pc[k].a,
			.len = pc[k].b - pc[k].a,
			.mode = UFFDIO_COPY_MODE_DONTWAKE };

		if (pc[k].store && ioctl(lx->uffd, UFFDIO_COPY, &c))
			goto undo;
	}
	/* Unregistered before the move, so that it carries the flags of the
	 * chunk before it (mremap merges before it drops a registration). */
	if (lx_uffd_unregister(lx, (uintptr_t)dst, len) ||
	    (prot != (PROT_READ | PROT_WRITE) && mprotect(dst, len, prot)) ||
	    keep_flags(lx, dst, c0, c1) ||
	    lx_sys_mremap(dst, len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
			  (void *)c0) == MAP_FAILED)
		goto undo;
	/* The registered mappings are gone with their registration; their
	 * waiters go to the new one (counted first: a woken waiter takes
	 * its message back). */
	lx_uffd_drain(lx);
	lx_uffd_wake(lx, c0, len);
	lx_smap_del(lx, c0, c1);
	lx->rebuilt += len / LX_PS;
	return 0;

undo:
	if (prot != (PROT_READ | PROT_WRITE))
		mprotect(dst, len, PROT_READ | PROT_WRITE);
	chunk_undo(lx, c0, c1, dst, pc, npc);
	return -EAGAIN;
}

/*
 * Rebuild [x, y), VMAs that are all rebuildable() with protection @prot,
 * chunk by chunk.  The copy area has the span's alignment modulo 2 MiB
 * (huge pages move whole) and is one VMA, so the chunks, landing side by
 * side with the same anon_vma and consecutive page offsets, merge into
 * one mapping again.  Return: 0 if every chunk was rebuilt, -EAGAIN if
 * some were left as they were, -ENOMEM.
 */
static int rebuild_span(struct sp_linux *lx, uintptr_t x, uintptr_t y,
			int prot)
{
	size_t len = y - x;
	uintptr_t raw, cp;
	int err = 0;

	raw = (uintptr_t)mmap(NULL, len + RB_ALIGN, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((void *)raw == MAP_FAILED)
		return -ENOMEM;
	cp = ((raw + RB_ALIGN - 1) & ~(RB_ALIGN - 1)) + (x & (RB_ALIGN - 1));
	if (cp >= raw + RB_ALIGN)
		cp -= RB_ALIGN;
	if (cp > raw)
		munmap((void *)raw, cp - raw);
	munmap((void *)(cp + len), raw + len + RB_ALIGN - (cp + len));
	/* UFFDIO_MOVE and UFFDIO_COPY fill registered ranges only. */
	if (lx_uffd_register(lx, cp, len, UFFDIO_REGISTER_MODE_MISSING)) {
		munmap((void *)cp, len);
		return -ENOMEM;
	}
	for (uintptr_t c0 = x, c1; c0 < y; c0 = c1) {
		c1 = (c0 + RB_ALIGN) & ~(RB_ALIGN - 1);
		if (c1 > y)
			c1 = y;
		if (rebuild_chunk(lx, c0, c1, (char *)(cp + (c0 - x)), prot))
			err = -EAGAIN;
	}
	munmap((void *)cp, len);	/* what is left of the copy area */
	return err;
}

void lx_rebuild(void *be, void *space, uintptr_t addr, size_t n)
{
	struct sp_linux *lx = be;
	uintptr_t end = addr + n * LX_PS, a = addr;
	int any = 0;

	(void)space;
	if (lx->uffd < 0 || !lx->flags_ok)
		return;
	while (a < end) {
		uintptr_t vs, ve, x;
		int prot, kind, store, r;

		r = lx_query_kind(lx, a, &vs, &ve, &prot, &kind);
		if (r < 0 || vs >= end)
			break;
		if (r == 1 || !rebuildable(kind, prot, prot)) {
			a = r == 1 ? vs : ve;
			continue;
		}
		/* The span: consecutive rebuildable VMAs of one protection. */
		x = a;
		store = kind == LX_VMA_STORE;
		while (ve < end) {
			uintptr_t s2, e2;
			int p2, k2;

			if (lx_query_kind(lx, ve, &s2, &e2, &p2, &k2) != 0 ||
			    !rebuildable(k2, p2, prot))
				break;
			store |= k2 == LX_VMA_STORE;
			ve = e2;
		}
		if (ve > end)
			ve = end;
		if (store && !lx_excluded(lx, x, ve)) {
			rebuild_span(lx, x, ve, prot);
			any = 1;
		}
		a = ve;
	}
	if (any) {
		lx_vma_recount(lx);
		lx->vma_full = lx->vma_est + 2 > lx->vma_budget;
	}
}

/* ---- unmerge ----------------------------------------------------------- */

int lx_unmerge(void *be, void *space, uintptr_t addr, size_t n)
{
	struct sp_linux *lx = be;
	uintptr_t end = addr + n * LX_PS;
	int err = 0;

	(void)space;
	for (uintptr_t a = addr; a < end && !err;) {
		uintptr_t vs, ve;
		int prot, kind, r = lx_query_kind(lx, a, &vs, &ve, &prot, &kind);

		if (r < 0)
			break;
		if (r == 1) {	/* a hole: skip to the next VMA */
			a = vs;
			continue;
		}
		if (ve > end)
			ve = end;
		/* A store mapping the span rebuild left (a private page in
		 * it, another protection on a side): alone, else in place. */
		if (kind != LX_VMA_STORE || !rebuildable(kind, prot, prot) ||
		    lx->uffd < 0 || !lx->flags_ok || lx_excluded(lx, a, ve) ||
		    rebuild_span(lx, a, ve, prot))
			err = unmerge_in_place(lx, a, ve, prot);
		a = ve;
	}
	return err;
}
