/*
 * linux.c - the Linux memory backend: set-up, the ops table, upkeep, fork.
 *
 * It merges the memory of the process it runs in; the agent (agent.c)
 * drives it from a thread of its own.  What it needs from the kernel, and
 * what it does without:
 *   - a userfaultfd with UFFDIO_MOVE (Linux 6.8+), usable by this process
 *     (root, vm.unprivileged_userfaultfd=1, or access to /dev/userfaultfd).
 *     Without one there is no way to hold a page with no write lost
 *     (kernel writes and DMA included), so lx_new() refuses, saying why;
 *   - PROCMAP_QUERY (6.11+) to learn a VMA's protection cheaply;
 *   - /proc/self/pagemap; PFNs (root) only to recognise the zero page.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "linux.h"
#include "lx_sys.h"

const struct sp_backend_ops lx_ops = {
	.probe = lx_probe,
	.state = lx_state,
	.peek = lx_peek,
	.cmp = lx_cmp,
	.hash = lx_hash,
	.protect = lx_protect,
	.unprotect = lx_unprotect,
	.replace = lx_replace,
	.zap = lx_zap,
	.unmerge = lx_unmerge,
	.rebuild = lx_rebuild,
	.stable_alloc = lx_stable_alloc,
	.stable_write = lx_stable_write,
	.stable_peek = lx_stable_peek,
	.stable_release = lx_stable_release,
	.lookup = lx_lookup,
	.look = lx_look,
};

static long read_long(const char *path, long dflt)
{
	FILE *f = fopen(path, "re");
	long v = dflt;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = dflt;
		fclose(f);
	}
	return v;
}

static int open_proc(struct sp_linux *lx, char *why, size_t whylen)
{
	lx->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	lx->mem_fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	lx->maps_fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (lx->pagemap_fd < 0 || lx->mem_fd < 0 || lx->maps_fd < 0) {
		snprintf(why, whylen, "cannot open /proc/self/{pagemap,mem,maps}: %s",
			 strerror(errno));
		return -errno;
	}
	return 0;
}

static void close_proc(struct sp_linux *lx)
{
	if (lx->pagemap_fd >= 0)
		close(lx->pagemap_fd);
	if (lx->mem_fd >= 0)
		close(lx->mem_fd);
	if (lx->maps_fd >= 0)
		close(lx->maps_fd);
	lx->pagemap_fd = lx->mem_fd = lx->maps_fd = -1;
}

/* The zero page's PFN, as pagemap shows it to us (0 when PFNs are
 * hidden: unprivileged). */
static uint64_t find_zero_pfn(struct sp_linux *lx)
{
	volatile char *p = lx_map(LX_PS);
	uint64_t e = 0;

	if (!p)
		return 0;
	madvise((void *)p, LX_PS, MADV_DONTNEED);
	(void)p[0];		/* a read fault maps the zero page */
	if (pread(lx->pagemap_fd, &e, 8, (off_t)((uintptr_t)p / LX_PS) * 8) != 8 ||
	    !(e & PM_PRESENT))
		e = 0;
	lx_unmap((void *)p, LX_PS);
	return e & PM_PFN_MASK;
}

int lx_check(char *why, size_t whylen)
{
	int fd, err = lx_uffd_open(&fd, why, whylen);

	if (!err)
		close(fd);
	return err;
}

int lx_new(struct sp_linux **out, char *why, size_t whylen)
{
	struct sp_linux *lx;
	int err;

	lx = lx_allocator.alloc(NULL, sizeof(*lx));
	if (!lx) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	lx->mem = (struct sp_mem){ &lx_allocator, &lx->mem_bytes };
	lx->uffd = lx->pagemap_fd = lx->mem_fd = lx->maps_fd = -1;
	lx->pid = getpid();
	err = lx_uffd_open(&lx->uffd, why, whylen);
	if (!err)
		err = open_proc(lx, why, whylen);
	if (!err) {
		struct procmap_query q = { .size = sizeof(q), .query_addr = 0,
					   .query_flags =
						   PROCMAP_QUERY_COVERING_OR_NEXT_VMA };

		if (ioctl(lx->maps_fd, PROCMAP_QUERY, &q) && errno == ENOTTY) {
			snprintf(why, whylen,
				 "the kernel lacks PROCMAP_QUERY (Linux 6.11 or later)");
			err = -ENOSYS;
		}
	}
	if (!err && lx_guard_init()) {
		snprintf(why, whylen, "cannot install the read fault guard");
		err = -EIO;
	}
	if (!err)
		err = lx_seg_new(lx, why, whylen);
	if (!err && lx_client_init(lx)) {
		snprintf(why, whylen, "out of memory");
		err = -ENOMEM;
	}
	if (err) {
		lx_free(lx);
		return err;
	}
	lx->zero_pfn = find_zero_pfn(lx);
	lx->max_map_count = read_long("/proc/sys/vm/max_map_count", 65530);
	/* Generous headroom: the program needs VMAs of its own, and at the
	 * limit its malloc and munmap start failing. */
	lx->vma_budget = lx->max_map_count / 2;
	lx_vma_recount(lx);
	lx_exclude_elf(lx);
	lx_refresh_flags(lx);	/* on failure nothing merges until a read */
	*out = lx;
	return 0;
}

void lx_free(struct sp_linux *lx)
{
	if (!lx)
		return;
	if (lx->uffd >= 0)
		close(lx->uffd);
	close_proc(lx);
	lx_client_free(lx);
	lx_smap_clear(lx);
	for (unsigned k = 0; k < lx->nseg; k++)
		close(lx->seg[k].fd);
	/* Scratch areas, views and merged mappings stay: the process may
	 * still map stable pages, which live as long as their mappings. */
	sp_ralloc_destroy(&lx->ra);
	sp_mem_free(&lx->mem, lx->pending, lx->pending_cap * 4);
	sp_mem_free(&lx->mem, lx->excl, lx->excl_cap * sizeof(*lx->excl));
	sp_mem_free(&lx->mem, lx->badflag,
		    lx->badflag_cap * sizeof(*lx->badflag));
	for (unsigned k = 0; k < LX_KEEP_N; k++)
		sp_mem_free(&lx->mem, lx->keep[k].r,
			    lx->keep[k].cap * sizeof(*lx->keep[k].r));
	lx_allocator.free(NULL, lx, sizeof(*lx));
}

int lx_maintain(struct sp_linux *lx)
{
	int err = lx_reconcile(lx);

	if (!err)
		err = lx_release_pending(lx);
	lx_client_flush(lx);	/* the pass's last hints and nominations */
	return err;
}

void lx_fork_parent(struct sp_linux *lx)
{
	struct lx_seg *seg = &lx->seg[lx->cur];

	/* Pages allocated so far may be mapped by the child from now on. */
	seg->fork_top = lx->ra.top;
	lx->forked = 1;
}

/*
 * In the child (one thread, the engine lock re-initialised): the
 * userfaultfd and /proc files are the parent's, and so is the store.
 * Take our own; freeze the inherited segments (the parent may reuse any
 * page we stop using, so we never write or punch them) and start a new
 * one.  Return: 0, or -errno with merging disabled (uffd -1).
 */
int lx_fork_child(struct sp_linux *lx, char *why, size_t whylen)
{
	int err;

	if (lx->uffd >= 0)
		close(lx->uffd);
	lx->uffd = -1;
	close_proc(lx);
	lx->pid = getpid();
	err = open_proc(lx, why, whylen);
	if (!err)
		err = lx_uffd_open(&lx->uffd, why, whylen);
	for (int k = 0; !err && k < 8; k++) {
		struct lx_class *c = &lx->cls[k];
		struct uffdio_register r = {
			.range = { (uintptr_t)c->base,
				   2 * (size_t)LX_HOLD_MAX * LX_PS },
			.mode = UFFDIO_REGISTER_MODE_MISSING };

		if (c->base && ioctl(lx->uffd, UFFDIO_REGISTER, &r))
			err = -errno;
	}
	memset(lx->hold, 0, sizeof(lx->hold));
	for (unsigned k = 0; k < lx->nseg; k++)
		lx->seg[k].frozen = 1;
	lx->npending = 0;
	lx_client_fork_child(lx);
	if (!err)
		err = lx_seg_new(lx, why, whylen);
	if (err && lx->uffd >= 0) {
		close(lx->uffd);
		lx->uffd = -1;
	}
	return err;
}
