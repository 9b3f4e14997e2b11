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
 *   4. replace(): mmap the stable run over the addresses (MAP_FIXED);
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

/* ---- userfaultfd ------------------------------------------------------- */

int lx_uffd_open(int *out, char *why, size_t whylen)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MOVE |
					      UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	int fd, e1, e2 = 0, dev;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	e1 = fd < 0 ? errno : 0;
	if (fd < 0) {
		dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			e2 = fd < 0 ? errno : 0;
			close(dev);
		} else {
			e2 = errno;
		}
	}
	if (fd < 0) {
		snprintf(why, whylen,
			 "no userfaultfd: userfaultfd(2) says %s (as root, or with "
			 "vm.unprivileged_userfaultfd=1, it is allowed), "
			 "/dev/userfaultfd says %s; merging needs one to hold "
			 "pages with no write lost",
			 strerror(e1), strerror(e2));
		return -EPERM;
	}
	if (ioctl(fd, UFFDIO_API, &api)) {
		/* Older kernels: retry without write-protecting shmem (then
		 * unmerge falls back to copying pages in place). */
		close(fd);
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		api.api = UFFD_API;
		api.features = UFFD_FEATURE_MOVE;
		if (fd >= 0 && ioctl(fd, UFFDIO_API, &api))
			api.features = 0;
	}
	if (fd < 0 || !(api.features & UFFD_FEATURE_MOVE)) {
		snprintf(why, whylen,
			 "userfaultfd lacks UFFDIO_MOVE (Linux 6.8 or later): "
			 "without it a page pinned for DMA cannot be told apart, "
			 "and replacing one would lose the device's writes");
		if (fd >= 0)
			close(fd);
		return -ENOSYS;
	}
	*out = fd;
	return 0;
}

static int uffd_register_mode(struct sp_linux *lx, uintptr_t a, size_t len,
			      unsigned mode)
{
	struct uffdio_register r = { .range = { a, len }, .mode = mode };

	return ioctl(lx->uffd, UFFDIO_REGISTER, &r) ? -errno : 0;
}

static int uffd_register(struct sp_linux *lx, uintptr_t a, size_t len)
{
	return uffd_register_mode(lx, a, len, UFFDIO_REGISTER_MODE_MISSING);
}

static int uffd_wp(struct sp_linux *lx, uintptr_t a, size_t len, int on)
{
	struct uffdio_writeprotect w = {
		.range = { a, len },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };

	return ioctl(lx->uffd, UFFDIO_WRITEPROTECT, &w) ? -errno : 0;
}

static int uffd_unregister(struct sp_linux *lx, uintptr_t a, size_t len)
{
	struct uffdio_range r = { a, len };

	return ioctl(lx->uffd, UFFDIO_UNREGISTER, &r) ? -errno : 0;
}

/* Count the accesses that waited on our held pages: each leaves a fault
 * message.  We never serve them (unprotect wakes the waiters whatever
 * the messages), so reading them only counts. */
static void count_waiters(struct sp_linux *lx)
{
	struct uffd_msg msg[16];
	ssize_t r;

	while ((r = read(lx->uffd, msg, sizeof(msg))) > 0)
		for (ssize_t k = 0; k < r / (ssize_t)sizeof(msg[0]); k++)
			lx->held_waits += msg[k].event == UFFD_EVENT_PAGEFAULT;
}

static void uffd_wake(struct sp_linux *lx, uintptr_t a, size_t len)
{
	struct uffdio_range r = { a, len };

	ioctl(lx->uffd, UFFDIO_WAKE, &r);
}

/* Move @len bytes from @src to @dst.  Return: bytes moved (>= 0); *err
 * gets the errno that stopped it, 0 if all moved. */
static size_t uffd_move(struct sp_linux *lx, uintptr_t dst, uintptr_t src,
			size_t len, int wake, int *err)
{
	struct uffdio_move m = { .dst = dst, .src = src, .len = len,
				 .mode = wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE };

	if (ioctl(lx->uffd, UFFDIO_MOVE, &m) == 0) {
		*err = 0;
		return len;
	}
	*err = errno;
	return m.move > 0 ? (size_t)m.move : 0;
}

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
			err = uffd_register(lx, (uintptr_t)p, len);
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
		moved = uffd_move(lx, (uintptr_t)scratch_page(lx, h, i), a,
				  b - a, 0, &err);
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
	if (lx_excluded(lx, addr, end))
		return 0;	/* never hold memory the scanner touches */
	err = uffd_register_mode(lx, addr, n * LX_PS,
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
		} else if (anon && !uffd_wp(lx, a, ve - a, 1)) {
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
		uffd_unregister(lx, addr, n * LX_PS);
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

		moved = uffd_move(lx, dst, (uintptr_t)src, (size_t)n * LX_PS, 1,
				  &err);
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
	count_waiters(lx);
	for (unsigned i = 0; i < h->n;) {
		unsigned j = i;
		uint8_t st = h->state[i];

		while (j < h->n && h->state[j] == st &&
		       (j == i || h->cls[j] == h->cls[i]))
			j++;
		if (st == LXH_HELD)
			give_back(lx, h, i, j - i);
		else if (st == LXH_HELD_WP)
			uffd_wp(lx, h->addr + (uintptr_t)i * LX_PS,
				(size_t)(j - i) * LX_PS, 0);
		else if ((st == LXH_REPLACED || st == LXH_ZAPPED) &&
			 h->moved[i])
			/* The old page is ours now: free it. */
			madvise(scratch_page(lx, h, i), (size_t)(j - i) * LX_PS,
				MADV_DONTNEED);
		i = j;
	}
	if (uffd_unregister(lx, addr, n * LX_PS)) {
		/* The range changed under us (unmapped in part): unregister
		 * what is still there, VMA by VMA. */
		for (uintptr_t a = addr; a < addr + n * LX_PS;) {
			uintptr_t vs, ve;
			int prot, anon;

			if (lx_query(lx, a, &vs, &ve, &prot, &anon) < 0)
				break;
			if (vs < a)
				vs = a;
			if (ve > addr + n * LX_PS)
				ve = addr + n * LX_PS;
			if (vs >= ve)
				break;
			uffd_unregister(lx, vs, ve - vs);
			a = ve;
		}
	}
	uffd_wake(lx, addr, n * LX_PS);
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

/* Whether two more VMAs fit in the budget (recounting when close). */
static int vma_room(struct sp_linux *lx)
{
	if (lx->vma_est + 2 <= lx->vma_budget)
		return 1;
	lx_vma_recount(lx);
	return lx->vma_est + 2 <= lx->vma_budget;
}

int lx_replace(void *be, void *space, uintptr_t addr, size_t n,
	       sp_spage_t first)
{
	struct sp_linux *lx = be;
	struct lx_hold *h = lx_hold_of(lx, addr);
	unsigned i0, i;
	struct lx_seg *seg;
	void *p;

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
	p = mmap((void *)addr, n * LX_PS, lx->cls[h->cls[i0]].prot,
		 MAP_PRIVATE | MAP_FIXED, seg->fd,
		 (off_t)(first - seg->base) * LX_PS);
	if (p == MAP_FAILED)
		return -errno;
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

/* Whether some page of [a, b) has a private copy (COWed, or swapped). */
static int has_private_copy(struct sp_linux *lx, uintptr_t a, uintptr_t b)
{
	uint64_t pm[LX_HOLD_MAX];

	for (; a < b;) {
		size_t n = (b - a) / LX_PS;

		if (n > LX_HOLD_MAX)
			n = LX_HOLD_MAX;
		if (pread(lx->pagemap_fd, pm, n * 8, (off_t)(a / LX_PS) * 8) !=
		    (ssize_t)(n * 8))
			return 1;
		for (size_t i = 0; i < n; i++)
			if ((pm[i] & PM_SWAP) ||
			    ((pm[i] & PM_PRESENT) && !(pm[i] & PM_FILE)))
				return 1;
		a += n * LX_PS;
	}
	return 0;
}

/*
 * Turn a store mapping [a, b) whose pages all still map their stable
 * pages back into anonymous memory with the same bytes, so that it can
 * merge again (a private copy inside a file mapping cannot be moved out,
 * hence never held again):
 *   fault its pages in read-only (no copy: they map their stable pages);
 *   write-protect it with userfaultfd (writers of every kind block);
 *   check that no page got a private copy meanwhile (one could be pinned
 *   for DMA, and copying it would lose the device's writes: such a
 *   mapping is unmerged in place instead, return 1).  A page the kernel
 *   dropped since the first step shows a write-protect marker, which
 *   pagemap cannot tell from a swapped copy: in place too;
 *   build an anonymous copy from the stable pages' bytes;
 *   mremap it over the range: one atomic replacement;
 *   wake the blocked writers: they write into the anonymous copy.
 * No page that maps a stable page can be pinned for writing (pinning for
 * write copies it first), and a read pin reads the same bytes.
 * Return: 0 done, 1 not possible here (caller unmerges in place), <0.
 */
static int relocate(struct sp_linux *lx, uintptr_t a, uintptr_t b, int prot,
		    struct lx_seg *seg, uint32_t first)
{
	struct uffdio_register reg = { .range = { a, b - a },
				       .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .range = { a, b - a },
					  .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	size_t len = b - a;
	void *n;
	int r = 1;

	madvise((void *)a, len, MADV_POPULATE_READ);
	if (ioctl(lx->uffd, UFFDIO_REGISTER, &reg))
		return 1;
	if (ioctl(lx->uffd, UFFDIO_WRITEPROTECT, &wp) || has_private_copy(lx, a, b))
		goto out_unregister;
	n = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (n == MAP_FAILED)
		goto out_unregister;
	memcpy(n, seg->view + (size_t)(first - seg->base) * LX_PS, len);
	if ((prot != (PROT_READ | PROT_WRITE) && mprotect(n, len, prot)) ||
	    mremap(n, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)a) ==
		    MAP_FAILED) {
		munmap(n, len);
		goto out_unregister;
	}
	/* The write-protected mapping is gone; its waiters go to the new
	 * one. */
	uffd_wake(lx, a, len);
	lx_smap_del(lx, a, b);
	return 0;

out_unregister:
	uffd_unregister(lx, a, len);	/* also ends the protection, wakes */
	return r;
}

int lx_unmerge(void *be, void *space, uintptr_t addr, size_t n)
{
	struct sp_linux *lx = be;
	uintptr_t end = addr + n * LX_PS;
	int err = 0;

	(void)space;
	for (uintptr_t a = addr; a < end && !err;) {
		uintptr_t vs, ve;
		int prot, ours, r = lx_query_store(lx, a, &vs, &ve, &prot, &ours);
		struct lx_smap *sm;

		if (r < 0)
			break;
		if (r == 1) {	/* a hole: skip to the next VMA */
			a = vs;
			continue;
		}
		if (ve > end)
			ve = end;
		sm = ours ? lx_smap_find(lx, a) : NULL;
		if (sm && sm->start <= a && sm->end >= ve &&
		    !has_private_copy(lx, a, ve)) {
			uint32_t first = sm->first + (uint32_t)((a - sm->start) / LX_PS);
			struct lx_seg *seg = lx_seg_of(lx, first);

			r = seg ? relocate(lx, a, ve, prot, seg, first) : 1;
			if (r < 0)
				err = r;
			else if (r == 1)
				err = unmerge_in_place(lx, a, ve, prot);
		} else {
			err = unmerge_in_place(lx, a, ve, prot);
		}
		a = ve;
	}
	return err;
}

/* ---- the index of store mappings --------------------------------------- */

static struct lx_smap *smap(struct sp_rb_node *n)
{
	return n ? sp_rb_container(n, struct lx_smap, node) : NULL;
}

struct lx_smap *lx_smap_find(struct sp_linux *lx, uintptr_t addr)
{
	struct sp_rb_node *n = lx->smaps.node, *best = NULL;

	while (n) {
		if (smap(n)->end > addr) {
			best = n;
			n = n->left;
		} else {
			n = n->right;
		}
	}
	return smap(best);
}

static void smap_link(struct sp_linux *lx, struct lx_smap *m)
{
	struct sp_rb_node **link = &lx->smaps.node, *parent = NULL;

	while (*link) {
		parent = *link;
		link = m->start < smap(parent)->start ? &parent->left
						      : &parent->right;
	}
	sp_rb_link(&m->node, parent, link);
	sp_rb_insert_color(&m->node, &lx->smaps);
}

void lx_smap_del(struct sp_linux *lx, uintptr_t start, uintptr_t end)
{
	struct lx_smap *m = lx_smap_find(lx, start);

	while (m && m->start < end) {
		struct lx_smap *next = smap(sp_rb_next(&m->node));

		if (m->start >= start && m->end <= end) {
			sp_rb_erase(&m->node, &lx->smaps);
			sp_mem_free(&lx->mem, m, sizeof(*m));
		} else if (m->start < start && m->end > end) {
			struct lx_smap *t = sp_mem_alloc(&lx->mem, sizeof(*t));

			if (t) {	/* else keep the tail: STABLE, harmless */
				t->start = end;
				t->end = m->end;
				t->first = m->first +
					   (uint32_t)((end - m->start) / LX_PS);
				smap_link(lx, t);
			}
			m->end = start;
		} else if (m->start < start) {
			m->end = start;
		} else {
			m->first += (uint32_t)((end - m->start) / LX_PS);
			m->start = end;
		}
		m = next;
	}
}

void lx_smap_add(struct sp_linux *lx, uintptr_t start, uintptr_t end,
		 uint32_t first)
{
	struct lx_smap *m, *prev, *next;

	lx_smap_del(lx, start, end);
	next = lx_smap_find(lx, start);
	prev = next ? smap(sp_rb_prev(&next->node)) :
		      smap(sp_rb_last(&lx->smaps));
	/* Extend a neighbour whose pages continue ours, as the kernel
	 * merges the VMAs. */
	if (prev && prev->end == start &&
	    prev->first + (prev->end - prev->start) / LX_PS == first) {
		prev->end = end;
		if (next && next->start == end &&
		    first + (end - start) / LX_PS == next->first) {
			prev->end = next->end;
			sp_rb_erase(&next->node, &lx->smaps);
			sp_mem_free(&lx->mem, next, sizeof(*next));
		}
		return;
	}
	if (next && next->start == end &&
	    first + (end - start) / LX_PS == next->first) {
		next->start = start;
		next->first = first;
		return;
	}
	m = sp_mem_alloc(&lx->mem, sizeof(*m));
	if (!m)
		return;	/* pages read as NONE: the engine drops, never loses */
	m->start = start;
	m->end = end;
	m->first = first;
	smap_link(lx, m);
}

void lx_smap_clear(struct sp_linux *lx)
{
	struct sp_rb_node *n;

	while ((n = sp_rb_first(&lx->smaps))) {
		sp_rb_erase(n, &lx->smaps);
		sp_mem_free(&lx->mem, smap(n), sizeof(struct lx_smap));
	}
}
