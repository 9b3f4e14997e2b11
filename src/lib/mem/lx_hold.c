/*
 * lx_hold.c - holding pages, and what the engine does with held pages.
 *
 * A hold moves pages out of the process's view, so that no write of any
 * kind can reach them while the engine compares and replaces them:
 *
 *   1. UFFDIO_REGISTER the run for MISSING faults: from now on any access
 *      to a page without a PTE waits (user or kernel mode: read(2) into
 *      it, a device starting a transfer) instead of seeing zeros;
 *   2. UFFDIO_MOVE the pages into a scratch area of ours.  The kernel
 *      refuses (EBUSY) a page pinned for DMA (io_uring fixed buffers,
 *      O_DIRECT in flight, vfio) or shared with another process, and
 *      re-checks the pin after clearing the PTE, so a page that moved
 *      cannot be reached by a transfer any more.  Refused pages stay in
 *      place, are reported as not held, and are never replaced;
 *   3. the engine compares the moved copies (peek() returns them);
 *   4. replace(): mmap the stable run over the addresses (MAP_FIXED,
 *      or mremap of a mapping made elsewhere to keep DONTFORK and
 *      DONTDUMP: lx_flags.c);
 *      zap(): leave the addresses empty (they read the zero page);
 *   5. unprotect(): move back what was neither replaced nor zapped,
 *      unregister (which wakes the waiters of registered parts), wake
 *      the waiters of replaced parts explicitly (a new mapping does not
 *      wake them), and free the scratch copies.
 *
 * A page the process cannot write (read-only, PROT_NONE) cannot be moved
 * (UFFDIO_MOVE only moves between writable VMAs) and making it writable
 * for a moment would let a thread read or write what should fault.  It
 * is held in place by userfaultfd write protection instead: every write
 * to it, user or kernel (a forced /proc/self/mem write, a GUP), blocks.
 * What protection cannot stop is a transfer through a pin taken while the
 * page was still writable; such a pin outliving an mprotect is the one
 * case this does not cover (docs/design.md, "Limits").
 *
 * A waiter woken after 4 retries its access against whatever is mapped:
 * a write to a stable page gets a private copy of it, which holds the
 * bytes the engine verified; a write to a zapped page gets a fresh zero
 * page.  Nothing written before step 2 is lost (the move carried it),
 * and nothing after it could land anywhere but where the process sees.
 *
 * Measured on this kernel: reg + move out + move back + unreg costs
 * ~4.9 us for a single page and 0.11 us per page in runs of 256.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "linux.h"
#include "lx_sys.h"

/* ---- scratch classes ---------------------------------------------------- */

int lx_class_get(struct sp_linux *lx, int prot, struct lx_class **out)
{
	struct lx_class *c = &lx->cls[prot & 7];
	size_t len = 2 * (size_t)LX_HOLD_MAX * LX_PS;
	void *p;
	int err;

	if (!c->base) {
		p = mmap(NULL, len, prot & 7, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -errno;
		err = lx_excl_add(lx, (uintptr_t)p, (uintptr_t)p + len);
		if (!err)
			err = lx_uffd_register(lx, (uintptr_t)p, len,
					       UFFDIO_REGISTER_MODE_MISSING);
		if (err) {
			lx_excl_del(lx, (uintptr_t)p, (uintptr_t)p + len);
			munmap(p, len);
			return err;
		}
		c->base = p;
		c->prot = prot & 7;
	}
	*out = c;
	return 0;
}

static char *scratch_page(struct sp_linux *lx, struct lx_hold *h, unsigned i)
{
	return lx->cls[h->cls[i]].base +
	       ((size_t)h->slot * LX_HOLD_MAX + i) * LX_PS;
}

/* ---- holds ------------------------------------------------------------- */

struct lx_hold *lx_hold_of(struct sp_linux *lx, uintptr_t addr)
{
	for (int k = 0; k < 2; k++) {
		struct lx_hold *h = &lx->hold[k];

		if (h->active && addr >= h->addr &&
		    addr < h->addr + (uintptr_t)h->n * LX_PS)
			return h;
	}
	return NULL;
}

/* Move out the pages of [a, b), all of one VMA with protection @prot. */
static void hold_piece(struct sp_linux *lx, struct lx_hold *h, uintptr_t a,
		       uintptr_t b, int prot)
{
	struct lx_class *c;
	unsigned ci = prot & 7;

	if (lx_class_get(lx, prot, &c))
		return;
	while (a < b) {
		unsigned i = (unsigned)((a - h->addr) / LX_PS);
		size_t moved;
		int err;

		for (unsigned k = i; k < (b - h->addr) / LX_PS; k++)
			h->cls[k] = (uint8_t)ci;
		moved = lx_uffd_move(lx, (uintptr_t)scratch_page(lx, h, i), a,
				     b - a, UFFDIO_MOVE_MODE_DONTWAKE, &err);
		for (size_t k = 0; k < moved / LX_PS; k++)
			h->state[i + k] = LXH_HELD;
		lx->moves += moved / LX_PS;
		a += moved;
		if (!err)
			break;
		lx->moves_refused++;
		if (err == EINVAL)	/* mlocked, or other VMA flags: all */
			break;
		a += LX_PS;		/* pinned, shared, hole: skip this one */
	}
}

int lx_protect(void *be, void *space, uintptr_t addr, size_t n, uint8_t *held)
{
	struct sp_linux *lx = be;
	uintptr_t end = addr + n * LX_PS, a = addr;
	struct lx_hold *h;
	int err, any = 0;

	(void)space;
	memset(held, 0, n);
	if (lx->uffd < 0)
		return -EPERM;
	if (n > LX_HOLD_MAX)
		return -EINVAL;
	h = !lx->hold[0].active ? &lx->hold[0] :
	    !lx->hold[1].active ? &lx->hold[1] : NULL;
	if (!h)
		return -EBUSY;
	if (!lx->flags_ok || lx_excluded(lx, addr, end))
		return 0;	/* never hold memory the scanner touches, nor
				 * memory whose flags we do not know */
	err = lx_uffd_register(lx, addr, n * LX_PS,
				 UFFDIO_REGISTER_MODE_MISSING |
					 UFFDIO_REGISTER_MODE_WP);
	if (err)
		return err;	/* someone else's userfaultfd, VMA limit, ... */
	h->active = 1;
	h->addr = addr;
	h->n = (unsigned)n;
	h->slot = (unsigned)(h - lx->hold);
	memset(h->state, 0, sizeof(h->state));
	while (a < end) {
		uintptr_t vs, ve;
		int prot, anon, r = lx_query(lx, a, &vs, &ve, &prot, &anon);

		if (r)		/* a hole: nothing more to hold */
			break;
		if (ve > end)
			ve = end;
		if (anon && (prot & PROT_WRITE)) {
			hold_piece(lx, h, a, ve, prot);
		} else if (anon && !lx_uffd_wp(lx, a, ve - a, 1)) {
			for (uintptr_t p = a; p < ve; p += LX_PS) {
				unsigned i = (unsigned)((p - addr) / LX_PS);

				h->state[i] = LXH_HELD_WP;
				h->cls[i] = (uint8_t)(prot & 7);
			}
		}
		a = ve;
	}
	for (size_t i = 0; i < n; i++) {
		held[i] = h->state[i] == LXH_HELD || h->state[i] == LXH_HELD_WP;
		any |= held[i];
	}
	if (!any) {
		lx_uffd_unregister(lx, addr, n * LX_PS);
		h->active = 0;
	}
	return 0;
}

/* Give held pages [i, i+n) back to the process: move them, or copy one
 * the move refuses (the address's protection changed under us), or
 * drop it if the address is gone (unmapped: its content went with it).
 * Afterwards their scratch pages are empty. */
static void give_back(struct sp_linux *lx, struct lx_hold *h, unsigned i,
		      unsigned n)
{
	while (n) {
		uintptr_t dst = h->addr + (uintptr_t)i * LX_PS;
		char *src = scratch_page(lx, h, i);
		size_t moved;
		int err;

		moved = lx_uffd_move(lx, dst, (uintptr_t)src, (size_t)n * LX_PS,
				     0, &err);
		i += (unsigned)(moved / LX_PS);
		n -= (unsigned)(moved / LX_PS);
		if (!err)
			return;
		{
			struct uffdio_copy c = { .dst = dst + moved,
						 .src = (uintptr_t)src + moved,
						 .len = LX_PS };

			ioctl(lx->uffd, UFFDIO_COPY, &c);
			madvise(src + moved, LX_PS, MADV_DONTNEED);
		}
		i++;
		n--;
	}
}

void lx_unprotect(void *be, void *space, uintptr_t addr, size_t n)
{
	struct sp_linux *lx = be;
	struct lx_hold *h = lx_hold_of(lx, addr);

	(void)space;
	if (!h || h->addr != addr)
		return;
	lx_uffd_drain(lx);
	for (unsigned i = 0; i < h->n;) {
		unsigned j = i;
		uint8_t st = h->state[i];

		while (j < h->n && h->state[j] == st &&
		       (j == i || h->cls[j] == h->cls[i]))
			j++;
		if (st == LXH_HELD)
			give_back(lx, h, i, j - i);
		else if (st == LXH_HELD_WP)
			lx_uffd_wp(lx, h->addr + (uintptr_t)i * LX_PS,
				   (size_t)(j - i) * LX_PS, 0);
		else if ((st == LXH_REPLACED || st == LXH_ZAPPED) &&
			 h->moved[i])
			/* The old page is ours now: free it. */
			madvise(scratch_page(lx, h, i), (size_t)(j - i) * LX_PS,
				MADV_DONTNEED);
		i = j;
	}
	lx_uffd_release(lx, addr, n * LX_PS);
	h->active = 0;
}

/* ---- replace, zap, unmerge --------------------------------------------- */

int lx_vma_recount(struct sp_linux *lx)
{
	char buf[65536];
	long count = 0;
	ssize_t r;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < r; i++)
			count += buf[i] == '\n';
	close(fd);
	lx->vma_est = count;
	return 0;
}

/* Whether two more VMAs fit in the budget.  The estimate counts 2 per
 * mapping made (the kernel may merge some): when it says no, recount
 * once; when the recount says no too, say no until the next pass's
 * recount (reading maps costs ~0.2 us per VMA). */
static int vma_room(struct sp_linux *lx)
{
	if (lx->vma_est + 2 <= lx->vma_budget)
		return 1;
	if (lx->vma_full)
		return 0;
	lx_vma_recount(lx);
	lx->vma_full = lx->vma_est + 2 > lx->vma_budget;
	return !lx->vma_full;
}

int lx_replace(void *be, void *space, uintptr_t addr, size_t n,
	       sp_spage_t first)
{
	struct sp_linux *lx = be;
	struct lx_hold *h = lx_hold_of(lx, addr);
	unsigned i0, i;
	struct lx_seg *seg;
	int err;

	(void)space;
	if (!h || addr + n * LX_PS > h->addr + (uintptr_t)h->n * LX_PS)
		return -EINVAL;
	i0 = (unsigned)((addr - h->addr) / LX_PS);
	for (i = i0; i < i0 + n; i++)
		if ((h->state[i] != LXH_HELD && h->state[i] != LXH_HELD_WP) ||
		    h->state[i] != h->state[i0] || h->cls[i] != h->cls[i0])
			return -EINVAL;
	seg = lx_seg_of(lx, first);
	if (!seg || lx_seg_of(lx, first + (uint32_t)n - 1) != seg)
		return -EINVAL;
	if (!vma_room(lx)) {
		lx->vma_refusals++;
		return -ENOMEM;
	}
	/* With the VMA's DONTFORK / DONTDUMP (lx_flags.c); a run across a
	 * change of them is refused whole. */
	err = lx_map_keep(lx, addr, n * LX_PS, lx->cls[h->cls[i0]].prot,
			  seg->fd, (off_t)(first - seg->base) * LX_PS);
	if (err)
		return err;
	for (i = i0; i < i0 + n; i++) {
		h->moved[i] = h->state[i] == LXH_HELD;
		h->state[i] = LXH_REPLACED;
	}
	lx->vma_est += 2;
	lx->replaces++;
	lx_smap_add(lx, addr, addr + n * LX_PS, first);
	return 0;
}

int lx_zap(void *be, void *space, uintptr_t addr, size_t n)
{
	struct sp_linux *lx = be;
	struct lx_hold *h = lx_hold_of(lx, addr);
	unsigned i0;

	(void)space;
	if (!h || addr + n * LX_PS > h->addr + (uintptr_t)h->n * LX_PS)
		return -EINVAL;
	i0 = (unsigned)((addr - h->addr) / LX_PS);
	for (unsigned i = i0; i < i0 + n; i++)
		if (h->state[i] != LXH_HELD && h->state[i] != LXH_HELD_WP)
			return -EINVAL;
	/* Moved-out pages: leaving the addresses empty is the release (once
	 * unregistered they read the zero page).  Pages held in place:
	 * MADV_DONTNEED under the write protection, which drops it. */
	for (unsigned i = i0; i < i0 + n; i++) {
		if (h->state[i] == LXH_HELD_WP &&
		    madvise((void *)(h->addr + (uintptr_t)i * LX_PS), LX_PS,
			    MADV_DONTNEED))
			return -errno;
	}
	for (unsigned i = i0; i < i0 + n; i++) {
		h->moved[i] = h->state[i] == LXH_HELD;
		h->state[i] = LXH_ZAPPED;
	}
	return 0;
}

