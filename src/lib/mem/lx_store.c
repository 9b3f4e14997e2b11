/*
 * lx_store.c - the stable store: stable pages live in memfds, merged
 * virtual pages map them MAP_PRIVATE (reads share the page, a write gets
 * a private copy from the kernel's copy-on-write).
 *
 * Page numbers are split into segments of LX_SEG_PAGES, one memfd each;
 * the last segment allocates (sp_ralloc), in runs, so that a run of
 * merged pages maps a run of stable pages with one mmap.  The engine
 * reads stable pages through a read-only shared view of each memfd.
 *
 * Release.  The engine tells us when it holds no sharer of a page any
 * more; the page is punched (fallocate PUNCH_HOLE) only when the kernel
 * shows that no mapping can reach it: for every VMA of this process that
 * maps the page's offset, the PTE at that address must hold a private
 * copy (present anonymous, or swapped).  A PTE that still maps the file
 * page, or none at all (the next access would read the file), keeps it.
 * This holds even if the program moved a merged range with mremap behind
 * the engine's back.  After a fork, a child may map pages created before
 * it: those are punched only when no other process of ours maps their
 * offset either (/proc/PID/maps of every process of our uid).  Until
 * punched, a page's number is not reused.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "linux.h"
#include "lx_sys.h"
#include "../util/proctime.h"

#define GROW_BYTES (64ull << 20)	/* memfd and view grow in 64 MiB */

int lx_seg_new(struct sp_linux *lx, char *why, size_t whylen)
{
	struct lx_seg *seg;
	struct stat st;
	void *view;
	size_t vlen = (size_t)LX_SEG_PAGES * LX_PS;
	int fd, err;

	if (lx->nseg == LX_MAX_SEGS) {
		snprintf(why, whylen, "too many stable store segments");
		return -ENOSPC;
	}
	fd = memfd_create("samepage-store", MFD_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		err = -errno;
		snprintf(why, whylen, "memfd_create: %s", strerror(-err));
		if (fd >= 0)
			close(fd);
		return err;
	}
	/* Reserve address space for the whole view; it is mapped as the
	 * memfd grows. */
	view = mmap(NULL, vlen, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (view == MAP_FAILED) {
		err = -errno;
		close(fd);
		snprintf(why, whylen, "reserving the store view: %s",
			 strerror(-err));
		return err;
	}
	err = lx_excl_add(lx, (uintptr_t)view, (uintptr_t)view + vlen);
	if (err) {
		munmap(view, vlen);
		close(fd);
		snprintf(why, whylen, "out of memory");
		return err;
	}
	seg = &lx->seg[lx->nseg];
	memset(seg, 0, sizeof(*seg));
	seg->fd = fd;
	seg->base = lx->nseg * LX_SEG_PAGES;
	seg->view = view;
	seg->dev = st.st_dev;
	seg->ino = st.st_ino;
	seg->born = sp_boot_ticks();
	if (lx->nseg)
		sp_ralloc_destroy(&lx->ra);
	sp_ralloc_init(&lx->ra, LX_SEG_PAGES, &lx->mem);
	lx->cur = lx->nseg++;
	return 0;
}

struct lx_seg *lx_seg_of(struct sp_linux *lx, uint32_t page)
{
	unsigned i = page / LX_SEG_PAGES;

	return i < lx->nseg ? &lx->seg[i] : NULL;
}

/* Make the memfd and its view cover @pages pages. */
static int seg_grow(struct lx_seg *seg, uint64_t pages)
{
	uint64_t want = pages * LX_PS, size;

	if (want <= seg->size)
		return 0;
	size = (want + GROW_BYTES - 1) / GROW_BYTES * GROW_BYTES;
	if (ftruncate(seg->fd, (off_t)size))
		return -errno;
	if (mmap(seg->view + seg->size, size - seg->size, PROT_READ,
		 MAP_SHARED | MAP_FIXED, seg->fd, (off_t)seg->size) == MAP_FAILED)
		return -errno;
	seg->size = size;
	return 0;
}

int lx_stable_alloc(void *be, size_t n, sp_spage_t *first)
{
	struct sp_linux *lx = be;
	struct lx_seg *seg = &lx->seg[lx->cur];
	uint32_t f;
	int err;

	if (!n || n > LX_HOLD_MAX)
		return -EINVAL;
	err = sp_ralloc_get(&lx->ra, (uint32_t)n, &f);
	if (err)
		return err;
	err = seg_grow(seg, (uint64_t)f + n);
	if (err) {
		sp_ralloc_put(&lx->ra, f, (uint32_t)n);
		return err;
	}
	*first = seg->base + f;
	return 0;
}

int lx_stable_write(void *be, sp_spage_t first, size_t n,
		    const void *const *src)
{
	struct sp_linux *lx = be;
	struct lx_seg *seg = lx_seg_of(lx, first);
	struct iovec iov[64];
	size_t done = 0;

	if (!seg || seg->frozen || lx_seg_of(lx, first + (uint32_t)n - 1) != seg)
		return -EINVAL;
	while (done < n) {
		size_t k = n - done < 64 ? n - done : 64;
		ssize_t w;

		for (size_t i = 0; i < k; i++) {
			iov[i].iov_base = (void *)src[done + i];
			iov[i].iov_len = LX_PS;
		}
		w = pwritev(seg->fd, iov, (int)k,
			    (off_t)(first - seg->base + done) * LX_PS);
		if (w < 0)
			return -errno;
		if (w % LX_PS)
			return -EIO;
		done += (size_t)w / LX_PS;
	}
	return 0;
}

const void *lx_stable_peek(void *be, sp_spage_t page, void *buf)
{
	struct sp_linux *lx = be;
	struct lx_seg *seg = lx_seg_of(lx, page);

	(void)buf;
	if (!seg || (uint64_t)(page - seg->base + 1) * LX_PS > seg->size)
		return NULL;
	return seg->view + (size_t)(page - seg->base) * LX_PS;
}

void lx_stable_release(void *be, sp_spage_t first, size_t n)
{
	struct sp_linux *lx = be;

	for (size_t i = 0; i < n; i++) {
		struct lx_seg *seg = lx_seg_of(lx, first + (uint32_t)i);

		if (seg && seg->global) {
			lx_client_release(lx, seg, first + (uint32_t)i);
			continue;
		}
		if (!seg || seg->frozen)
			continue;	/* the parent's page: not ours to punch */
		if (lx->npending == lx->pending_cap) {
			uint32_t cap = lx->pending_cap ? lx->pending_cap * 2 : 1024;
			uint32_t *p = sp_mem_resize(&lx->mem, lx->pending,
						    lx->pending_cap * 4, cap * 4);

			if (!p)
				continue;	/* leaked until exit, never unsafe */
			lx->pending = p;
			lx->pending_cap = cap;
		}
		lx->pending[lx->npending++] = first + (uint32_t)i;
	}
}

/* ---- what the kernel shows ---------------------------------------------- */

/* A mapping of a segment's memfd: [start, end) maps pages from @off. */
struct vmap {
	uintptr_t start, end;
	uint32_t off;		/* in pages */
	unsigned seg;
};

struct maps {
	struct vmap *v;
	size_t n, cap;
	long lines;
};

static int maps_add(struct sp_linux *lx, struct maps *m, struct vmap x)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 256;
		void *p = sp_mem_resize(&lx->mem, m->v, m->cap * sizeof(*m->v),
					cap * sizeof(*m->v));

		if (!p)
			return -ENOMEM;
		m->v = p;
		m->cap = cap;
	}
	m->v[m->n++] = x;
	return 0;
}

/* Parse /proc/@pid/maps ("self" if 0): the mappings of our memfds, minus
 * our own views of them.  Return: 0, or -errno (file unreadable). */
static int read_maps(struct sp_linux *lx, pid_t pid, struct maps *m)
{
	char path[64], line[512];
	FILE *f;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/maps");
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e, off, ino;
		unsigned maj, mnr;
		char perms[8];

		m->lines++;
		if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &s, &e, perms,
			   &off, &maj, &mnr, &ino) != 7 || !ino)
			continue;
		for (unsigned k = 0; k < lx->nseg; k++) {
			struct lx_seg *seg = &lx->seg[k];

			if (ino != seg->ino || makedev(maj, mnr) != seg->dev)
				continue;
			if (!pid && s >= (uintptr_t)seg->view &&
			    e <= (uintptr_t)seg->view +
					 (size_t)LX_SEG_PAGES * LX_PS)
				continue;	/* our own view */
			if (maps_add(lx, m, (struct vmap){ s, e,
							   (uint32_t)(off / LX_PS),
							   k })) {
				fclose(f);
				return -ENOMEM;
			}
		}
	}
	fclose(f);
	return 0;
}

/*
 * lx_reconcile - rebuild the index of store mappings from the kernel's
 * view, and recount VMAs.  Called once per pass: it corrects the index
 * after anything that moved or removed mappings without telling us.
 */
int lx_reconcile(struct sp_linux *lx)
{
	struct maps m = { 0 };
	int err = read_maps(lx, 0, &m);

	if (!err) {
		lx_smap_clear(lx);
		for (size_t i = 0; i < m.n; i++)
			lx_smap_add(lx, m.v[i].start, m.v[i].end,
				    lx->seg[m.v[i].seg].base + m.v[i].off);
		lx->vma_est = m.lines;
		lx->vma_full = lx->vma_est + 2 > lx->vma_budget;
	}
	sp_mem_free(&lx->mem, m.v, m.cap * sizeof(*m.v));
	return err;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Mark in @keep (parallel to the sorted pending list) the pages that
 * mapping @v reaches.  With @pagemap_fd, a PTE holding a private copy
 * does not count; without (another process), every mapped offset does. */
static void mark_reached(struct sp_linux *lx, const struct vmap *v,
			 int pagemap_fd, uint8_t *keep)
{
	uint32_t base = lx->seg[v->seg].base + v->off;
	uint32_t npages = (uint32_t)((v->end - v->start) / LX_PS);
	uint32_t *lo = lx->pending, *hi = lx->pending + lx->npending;

	/* First pending page >= base. */
	while (lo < hi) {
		uint32_t *mid = lo + (hi - lo) / 2;

		if (*mid < base)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t *p = lo; p < lx->pending + lx->npending &&
			       *p < base + npages; p++) {
		uintptr_t a = v->start + (uintptr_t)(*p - base) * LX_PS;
		uint64_t e;

		if (pagemap_fd < 0 ||
		    pread(pagemap_fd, &e, 8, (off_t)(a / LX_PS) * 8) != 8 ||
		    ((e & PM_PRESENT) ? (e & PM_FILE) : !(e & PM_SWAP)))
			keep[p - lx->pending] = 1;
	}
}

/*
 * Other processes of our uid that may map our store: after a fork, our
 * descendants (even reparented ones).  The memfd is close-on-exec and
 * never passed on, so only a process forked from us since the segment
 * was created can map it.  A process whose maps we cannot read counts as
 * mapping all of it, unless it started before the oldest segment.
 */
static void mark_others(struct sp_linux *lx, uint8_t *keep)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	uid_t me = getuid();

	if (!d) {
		memset(keep, 1, lx->npending);
		return;
	}
	while ((de = readdir(d))) {
		struct maps m = { 0 };
		char path[64];
		struct stat st;
		pid_t pid;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (pid == lx->pid)
			continue;
		snprintf(path, sizeof(path), "/proc/%d", (int)pid);
		if (stat(path, &st) || st.st_uid != me)
			continue;
		{
			int e = read_maps(lx, pid, &m);
			uint64_t born = 0;

			sp_proc_start(pid, &born);	/* 0 if unknown */

			/* Gone meanwhile: maps nothing.  Unreadable: may map
			 * anything, if it could have inherited our store. */
			if (e && e != -ENOENT && e != -ESRCH &&
			    (!born || born + 1 >= lx->seg[0].born))
				memset(keep, 1, lx->npending);
		}
		for (size_t i = 0; i < m.n; i++)
			mark_reached(lx, &m.v[i], -1, keep);
		sp_mem_free(&lx->mem, m.v, m.cap * sizeof(*m.v));
	}
	closedir(d);
}

/*
 * lx_release_pending - punch the released pages that no mapping can
 * reach any more; keep the others for a later call.  Return: 0 or -errno
 * (then nothing is punched).
 */
int lx_release_pending(struct sp_linux *lx)
{
	struct maps m = { 0 };
	uint8_t *keep;
	uint32_t k = 0, nkeep = lx->npending;
	int err, shared = 0;

	if (!lx->npending)
		return 0;
	qsort(lx->pending, lx->npending, sizeof(*lx->pending), cmp_u32);
	keep = sp_mem_alloc(&lx->mem, nkeep);
	if (!keep)
		return -ENOMEM;
	err = read_maps(lx, 0, &m);
	if (err)
		goto out;
	for (size_t i = 0; i < m.n; i++)
		mark_reached(lx, &m.v[i], lx->pagemap_fd, keep);
	for (uint32_t i = 0; i < lx->npending; i++) {
		struct lx_seg *seg = lx_seg_of(lx, lx->pending[i]);

		if (seg->fork_top && lx->pending[i] - seg->base < seg->fork_top)
			shared = 1;
	}
	if (shared)
		mark_others(lx, keep);
	for (uint32_t i = 0; i < lx->npending; i++) {
		uint32_t p = lx->pending[i];
		struct lx_seg *seg = lx_seg_of(lx, p);

		if (keep[i]) {
			lx->pending[k++] = p;
			continue;
		}
		if (fallocate(seg->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(p - seg->base) * LX_PS, LX_PS)) {
			lx->pending[k++] = p;
			continue;
		}
		lx->punches++;
		if (seg == &lx->seg[lx->cur])
			sp_ralloc_put(&lx->ra, p - seg->base, 1);
	}
	lx->npending = k;
out:
	sp_mem_free(&lx->mem, m.v, m.cap * sizeof(*m.v));
	sp_mem_free(&lx->mem, keep, nkeep);
	return err;
}
