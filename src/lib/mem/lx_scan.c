/*
 * lx_scan.c - what the engine learns about the process's memory: which
 * ranges may merge (probe), what each page holds now (state, from
 * /proc/self/pagemap), and its bytes (peek, cmp, hash: guarded direct
 * reads, /proc/self/mem as the fallback).
 *
 * Never merged (reported SP_EXT_OTHER / SP_PS_OTHER): shared, file-backed
 * and special mappings; memory the scanner itself touches during a merge
 * (the private allocator's mappings, scratch areas, the store's view, the
 * scanner's stack, writable segments of loaded ELF objects); VMAs whose
 * flags merging cannot keep (WIPEONFORK, mlocked: lx_flags.c).
 */
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../util/hash.h"
#include "linux.h"
#include "lx_sys.h"

/* ---- exclusions -------------------------------------------------------- */

int lx_range_add(struct sp_linux *lx, struct lx_excl **list, unsigned *n,
		 unsigned *cap, uintptr_t start, uintptr_t end)
{
	unsigned i, j;

	if (*n == *cap) {
		unsigned nc = *cap ? *cap * 2 : 64;
		void *p = sp_mem_resize(&lx->mem, *list, *cap * sizeof(**list),
					nc * sizeof(**list));

		if (!p)
			return -ENOMEM;
		*list = p;
		*cap = nc;
	}
	for (i = 0; i < *n && (*list)[i].end < start; i++)
		;
	/* Merge with every range it overlaps or touches. */
	for (j = i; j < *n && (*list)[j].start <= end; j++) {
		if ((*list)[j].start < start)
			start = (*list)[j].start;
		if ((*list)[j].end > end)
			end = (*list)[j].end;
	}
	memmove(&(*list)[i + 1], &(*list)[j], (*n - j) * sizeof(**list));
	*n -= j - i;
	(*list)[i].start = start;
	(*list)[i].end = end;
	(*n)++;
	return 0;
}

int lx_excl_add(struct sp_linux *lx, uintptr_t start, uintptr_t end)
{
	start &= ~(uintptr_t)(LX_PS - 1);
	end = (end + LX_PS - 1) & ~(uintptr_t)(LX_PS - 1);
	return lx_range_add(lx, &lx->excl, &lx->nexcl, &lx->excl_cap, start,
			    end);
}

void lx_excl_del(struct sp_linux *lx, uintptr_t start, uintptr_t end)
{
	for (unsigned i = 0; i < lx->nexcl; i++) {
		if (lx->excl[i].start == start && lx->excl[i].end == end) {
			memmove(&lx->excl[i], &lx->excl[i + 1],
				(lx->nexcl - i - 1) * sizeof(lx->excl[0]));
			lx->nexcl--;
			return;
		}
	}
}

unsigned lx_range_find(const struct lx_excl *l, unsigned n, uintptr_t addr)
{
	unsigned lo = 0, hi = n;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (l[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int list_hits(const struct lx_excl *l, unsigned n, uintptr_t start,
		     uintptr_t end)
{
	unsigned i = lx_range_find(l, n, start);

	return i < n && l[i].start < end;
}

int lx_excluded(const struct sp_linux *lx, uintptr_t start, uintptr_t end)
{
	return list_hits(lx->excl, lx->nexcl, start, end) ||
	       list_hits(lx->badflag, lx->nbadflag, start, end) ||
	       lx_alloc_owns(start, end);
}

/* The first excluded range ending above @addr, over all three lists. */
static int next_excluded(const struct sp_linux *lx, uintptr_t addr,
			 uintptr_t *start, uintptr_t *end)
{
	const struct lx_excl *lists[2] = { lx->excl, lx->badflag };
	unsigned counts[2] = { lx->nexcl, lx->nbadflag };
	int found = lx_alloc_next(addr, start, end);

	for (int k = 0; k < 2; k++)
		for (unsigned i = 0; i < counts[k]; i++)
			if (lists[k][i].end > addr &&
			    (!found || lists[k][i].start < *start)) {
				*start = lists[k][i].start;
				*end = lists[k][i].end;
				found = 1;
				break;
			}
	return found;
}

static int elf_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct sp_linux *lx = arg;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W) && ph->p_memsz)
			lx_excl_add(lx, info->dlpi_addr + ph->p_vaddr,
				    info->dlpi_addr + ph->p_vaddr + ph->p_memsz);
	}
	return 0;
}

int lx_exclude_elf(struct sp_linux *lx)
{
	dl_iterate_phdr(elf_cb, lx);
	return 0;
}

/* ---- VMAs ------------------------------------------------------------- */

int lx_query_kind(struct sp_linux *lx, uintptr_t addr, uintptr_t *start,
		  uintptr_t *end, int *prot, int *kind)
{
	char name[64];
	struct procmap_query q;

	memset(&q, 0, sizeof(q));
	q.size = sizeof(q);
	q.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA;
	q.query_addr = addr;
	q.vma_name_addr = (uintptr_t)name;
	q.vma_name_size = sizeof(name);
	name[0] = 0;
	if (ioctl(lx->maps_fd, PROCMAP_QUERY, &q))
		return errno == ENOENT ? -ENOENT : -errno;
	*start = q.vma_start;
	*end = q.vma_end;
	*prot = ((q.vma_flags & PROCMAP_QUERY_VMA_READABLE) ? PROT_READ : 0) |
		((q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE) ? PROT_WRITE : 0) |
		((q.vma_flags & PROCMAP_QUERY_VMA_EXECUTABLE) ? PROT_EXEC : 0);
	*kind = LX_VMA_OTHER;
	if (q.vma_flags & PROCMAP_QUERY_VMA_SHARED) {
		/* never ours: store mappings are private */
	} else if (!q.inode && !q.dev_major && !q.dev_minor) {
		if (!q.vma_name_size || !name[0])
			*kind = LX_VMA_ANON;
		else if (!strcmp(name, "[heap]"))
			*kind = LX_VMA_HEAP;
		else if (!strncmp(name, "[stack", 6))
			*kind = LX_VMA_STACK;
	} else {
		for (unsigned k = 0; k < lx->nseg; k++)
			if (q.inode == lx->seg[k].ino &&
			    makedev(q.dev_major, q.dev_minor) == lx->seg[k].dev)
				*kind = LX_VMA_STORE;
	}
	return q.vma_start > addr ? 1 : 0;
}

int lx_query(struct sp_linux *lx, uintptr_t addr, uintptr_t *start,
	     uintptr_t *end, int *prot, int *anon_private)
{
	int kind, r = lx_query_kind(lx, addr, start, end, prot, &kind);

	*anon_private = kind == LX_VMA_ANON || kind == LX_VMA_HEAP ||
			kind == LX_VMA_STACK;
	return r;
}

int lx_query_store(struct sp_linux *lx, uintptr_t addr, uintptr_t *start,
		   uintptr_t *end, int *prot, int *ours)
{
	int kind, r = lx_query_kind(lx, addr, start, end, prot, &kind);

	*ours = kind == LX_VMA_STORE;
	return r;
}

int lx_probe(void *be, void *space, uintptr_t addr, size_t len,
	     struct sp_extent *ext)
{
	struct sp_linux *lx = be;
	uintptr_t end = addr + len, vs, ve, xs, xe;
	int prot, anon, r;

	(void)space;
	r = lx_query(lx, addr, &vs, &ve, &prot, &anon);
	if (r == -ENOENT || (r == 1 && vs >= end)) {
		ext->kind = SP_EXT_HOLE;
		ext->end = end;
		return 0;
	}
	if (r < 0)
		return r;
	if (r == 1) {
		ext->kind = SP_EXT_HOLE;
		ext->end = vs;
		return 0;
	}
	ext->end = ve < end ? ve : end;
	ext->kind = anon ? SP_EXT_MERGEABLE : SP_EXT_OTHER;
	if (ext->kind == SP_EXT_MERGEABLE &&
	    next_excluded(lx, addr, &xs, &xe) && xs < ext->end) {
		if (xs <= addr) {
			ext->kind = SP_EXT_OTHER;
			if (xe < ext->end)
				ext->end = xe;
		} else {
			ext->end = xs;
		}
	}
	return 0;
}

/* ---- page states ------------------------------------------------------- */

int lx_state(void *be, void *space, uintptr_t addr, size_t n, uint8_t *out)
{
	struct sp_linux *lx = be;
	uint64_t pm[LX_HOLD_MAX];
	struct lx_smap *sm = NULL;
	int excl_near;

	(void)space;
	while (n > LX_HOLD_MAX) {		/* the engine asks <= a window */
		int err = lx_state(be, space, addr, LX_HOLD_MAX, out);

		if (err)
			return err;
		addr += LX_HOLD_MAX * LX_PS;
		out += LX_HOLD_MAX;
		n -= LX_HOLD_MAX;
	}
	if (pread(lx->pagemap_fd, pm, n * 8, (off_t)(addr / LX_PS) * 8) !=
	    (ssize_t)(n * 8))
		return -EIO;
	/* Direct reads are safe only while our fault guard is in place. */
	lx->guard_ok = lx_guard_ok();
	excl_near = lx_excluded(lx, addr, addr + n * LX_PS);
	for (size_t i = 0; i < n; i++) {
		uintptr_t a = addr + i * LX_PS;
		uint64_t e = pm[i];

		if (!sm || a >= sm->end)
			sm = lx_smap_find(lx, a);
		if (sm && a < sm->start)
			sm = NULL;
		if (excl_near && lx_excluded(lx, a, a + LX_PS)) {
			out[i] = SP_PS_OTHER;
		} else if (sm) {
			/* One of our store mappings: still merged unless the
			 * kernel's copy-on-write gave it a private page. */
			if ((e & PM_PRESENT) ? (e & PM_FILE) : !(e & PM_SWAP))
				out[i] = SP_PS_STABLE;
			else
				out[i] = SP_PS_OTHER;
		} else if (e & PM_SWAP) {
			out[i] = SP_PS_OTHER;
		} else if (!(e & PM_PRESENT)) {
			out[i] = SP_PS_NONE;
		} else if (e & PM_FILE) {
			out[i] = SP_PS_OTHER;
		} else if (lx->zero_pfn && (e & PM_PFN_MASK) == lx->zero_pfn) {
			out[i] = SP_PS_NONE;
		} else if (!(e & PM_EXCLUSIVE)) {
			/* Mapped by another process too (fork): shared
			 * already, and a move-out would refuse it. */
			out[i] = SP_PS_OTHER;
		} else {
			out[i] = SP_PS_ANON;
		}
	}
	return 0;
}

/* ---- reading pages ----------------------------------------------------- */

int lx_read_slow(struct sp_linux *lx, uintptr_t addr, void *buf)
{
	lx->slow_reads++;
	/* /proc/self/mem reads with FOLL_FORCE: PROT_NONE pages too. */
	if (pread(lx->mem_fd, buf, LX_PS, (off_t)addr) == (ssize_t)LX_PS)
		return 0;
	return -EFAULT;
}

/* The scratch copy of a page held by moving it out, or NULL if @addr is
 * not moved out (not held, or held in place: read it where it is). */
static const void *held_page(struct sp_linux *lx, uintptr_t addr, int *readable)
{
	struct lx_hold *h = lx_hold_of(lx, addr);
	unsigned i;
	struct lx_class *c;

	if (!h)
		return NULL;
	i = (unsigned)((addr - h->addr) / LX_PS);
	if (h->state[i] != LXH_HELD)
		return NULL;
	c = &lx->cls[h->cls[i]];
	*readable = !!(c->prot & PROT_READ);
	return c->base + ((size_t)h->slot * LX_HOLD_MAX + i) * LX_PS;
}

/* The bytes of the page at @addr when no direct read is possible: a held
 * page @h we may not read, or a page the guard could not read (off, or
 * it faulted: unmapped or PROT_NONE meanwhile).  Read through
 * /proc/self/mem into @buf.  Return: @buf, or NULL if unreadable. */
static const void *read_fallback(struct sp_linux *lx, uintptr_t addr,
				 const void *h, void *buf)
{
	if (!h)
		lx->guard_faults += lx->guard_ok;
	return lx_read_slow(lx, h ? (uintptr_t)h : addr, buf) ? NULL : buf;
}

const void *lx_peek(void *be, void *space, uintptr_t addr, void *buf)
{
	struct sp_linux *lx = be;
	int readable;
	const void *h = held_page(lx, addr, &readable);

	(void)space;
	if (h && readable)
		return h;
	if (!h && lx->guard_ok &&
	    lx_guarded_copy(buf, (const void *)addr, LX_PS) == 0)
		return buf;
	return read_fallback(lx, addr, h, buf);
}

int lx_cmp(void *be, void *space, uintptr_t addr, const void *key, int *order)
{
	struct sp_linux *lx = be;
	unsigned char tmp[LX_PS];
	int readable;
	const void *h = held_page(lx, addr, &readable), *p;

	(void)space;
	if (!h && lx->guard_ok &&
	    lx_guarded_cmp(key, (const void *)addr, LX_PS, order) == 0)
		return 0;
	p = h && readable ? h : read_fallback(lx, addr, h, tmp);
	if (!p)
		return -EFAULT;
	*order = memcmp(key, p, LX_PS);
	return 0;
}

int lx_hash(void *be, void *space, uintptr_t addr, uint64_t *hash)
{
	struct sp_linux *lx = be;
	unsigned char tmp[LX_PS];
	int readable;
	const void *h = held_page(lx, addr, &readable), *p;

	(void)space;
	if (!h && lx->guard_ok && lx_guarded_hash((const void *)addr, hash) == 0)
		return 0;
	p = h && readable ? h : read_fallback(lx, addr, h, tmp);
	if (!p)
		return -EFAULT;
	*hash = sp_hash_page(p);
	return 0;
}
