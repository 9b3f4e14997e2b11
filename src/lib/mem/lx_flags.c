/*
 * lx_flags.c - the VMA flags of the program's memory that merging must
 * keep, or must not touch.
 *
 * Merging replaces the program's anonymous pages with a new mapping of
 * the store (mmap MAP_FIXED), and unmerging replaces store mappings with
 * a new anonymous one (mremap of a copy).  A new mapping starts with
 * default flags, so whatever the program set with madvise(2) or mlock(2)
 * on the old one would be lost.  Two kinds:
 *
 *   kept     DONTFORK (QEMU sets it on guest RAM) and DONTDUMP: the new
 *            mapping gets the same flag before it goes in place.  The
 *            flag is set on a mapping made elsewhere, which mremap then
 *            moves over the addresses with its flags, so the addresses
 *            never show the new mapping without the flag, and a failure
 *            leaves them as they were.  A run whose pages differ in these
 *            flags is refused (-EINVAL) and stays unmerged;
 *   refused  WIPEONFORK (a file mapping cannot have it) and mlocked
 *            memory (a new mapping would be unlocked): never held, never
 *            merged (lx_excluded()).
 *
 * Where the flags come from: /proc/self/smaps, read when a range is
 * registered and after every call of the program that can change them
 * (the shim sends madvise's fork/dump advice, mlock and munlock, and
 * mremap through the agent, which re-reads under mem_lock), and by the
 * agent after a pass at most once a second; munmap and mmap over a range
 * forget it.  A change the shim cannot see (a raw syscall, libc's
 * internal calls) is seen at the next such read; until then merging
 * keeps what it last read (docs/design.md, "Limits").  If
 * the lists could not be read whole (no memory), flags_ok is 0 and no
 * page is held or rebuilt until a read succeeds.
 *
 * Context: every function here runs under the agent's mem_lock, as do
 * the hold and unmerge code that read the lists.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "linux.h"
#include "lx_sys.h"

/* The advice that sets each kept flag, and its name in VmFlags. */
static const struct {
	int advice;
	char name[3];
} keep_flag[LX_KEEP_N] = {
	[LX_KEEP_DONTFORK] = { MADV_DONTFORK, "dc" },
	[LX_KEEP_DONTDUMP] = { MADV_DONTDUMP, "dd" },
};

/* Flags that refuse merging: wf WIPEONFORK, lo mlocked. */
static const char refuse_flag[][3] = { "wf", "lo" };

/* ---- range lists -------------------------------------------------------- */

int lx_range_sub(struct sp_linux *lx, struct lx_excl **list, unsigned *n,
		 unsigned *cap, uintptr_t start, uintptr_t end)
{
	for (unsigned i = 0; i < *n; i++) {
		struct lx_excl *r = &(*list)[i];

		if (r->end <= start || r->start >= end)
			continue;
		if (r->start < start && r->end > end) {
			/* A hole in the middle: two ranges. */
			uintptr_t tail = r->end;

			r->end = start;
			return lx_range_add(lx, list, n, cap, end, tail);
		}
		if (r->start < start) {
			r->end = start;
		} else if (r->end > end) {
			r->start = end;
		} else {
			memmove(r, r + 1, (*n - i - 1) * sizeof(*r));
			(*n)--;
			i--;
		}
	}
	return 0;
}

/* How [start, end) lies in a sorted, disjoint list: 1 inside one range,
 * 0 outside all, -1 partly in. */
static int range_cover(const struct lx_excl *l, unsigned n, uintptr_t start,
		       uintptr_t end)
{
	unsigned i = lx_range_find(l, n, start);

	if (i == n || l[i].start >= end)
		return 0;
	return l[i].start <= start && l[i].end >= end ? 1 : -1;
}

/* ---- reading the flags --------------------------------------------------- */

/* Whether the VmFlags line @flags holds the two-letter flag @name. */
static int has_flag(const char *flags, const char *name)
{
	for (const char *p = flags; (p = strstr(p, name)); p += 2)
		if ((p == flags || p[-1] == ' ') &&
		    (p[2] == ' ' || p[2] == '\n' || !p[2]))
			return 1;
	return 0;
}

static int note_vma(struct sp_linux *lx, uintptr_t s, uintptr_t e,
		    const char *flags)
{
	int err = 0;

	for (unsigned k = 0; k < sizeof(refuse_flag) / sizeof(refuse_flag[0]);
	     k++)
		if (!err && has_flag(flags, refuse_flag[k]))
			err = lx_range_add(lx, &lx->badflag, &lx->nbadflag,
					   &lx->badflag_cap, s, e);
	for (unsigned k = 0; k < LX_KEEP_N; k++)
		if (!err && has_flag(flags, keep_flag[k].name))
			err = lx_range_add(lx, &lx->keep[k].r, &lx->keep[k].n,
					   &lx->keep[k].cap, s, e);
	return err;
}

int lx_refresh_flags(struct sp_linux *lx)
{
	char line[512];
	uintptr_t s = 0, e = 0;
	FILE *f = fopen("/proc/self/smaps", "re");
	int err = 0;

	lx->flags_ok = 0;
	if (!f)
		return -errno;
	lx->nbadflag = 0;
	for (unsigned k = 0; k < LX_KEEP_N; k++)
		lx->keep[k].n = 0;
	while (!err && fgets(line, sizeof(line), f)) {
		unsigned long a, b;

		if (sscanf(line, "%lx-%lx ", &a, &b) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			s = a;
			e = b;
		} else if (!strncmp(line, "VmFlags:", 8)) {
			err = note_vma(lx, s, e, line + 8);
		}
	}
	if (!err && ferror(f))
		err = -EIO;
	fclose(f);
	lx->flags_ok = !err;
	return err;
}

int lx_flags_forget(struct sp_linux *lx, uintptr_t start, uintptr_t end)
{
	int err = lx_range_sub(lx, &lx->badflag, &lx->nbadflag,
			       &lx->badflag_cap, start, end);

	for (unsigned k = 0; !err && k < LX_KEEP_N; k++)
		err = lx_range_sub(lx, &lx->keep[k].r, &lx->keep[k].n,
				   &lx->keep[k].cap, start, end);
	if (err)		/* a range cut in two, no room: read again */
		err = lx_refresh_flags(lx);
	return err;
}

/* ---- keeping them -------------------------------------------------------- */

int lx_keep_mask(const struct sp_linux *lx, uintptr_t start, uintptr_t end)
{
	int mask = 0;

	for (unsigned k = 0; k < LX_KEEP_N; k++) {
		int c = range_cover(lx->keep[k].r, lx->keep[k].n, start, end);

		if (c < 0)
			return -EINVAL;
		mask |= c << k;
	}
	return mask;
}

int lx_keep_apply(const struct sp_linux *lx, uintptr_t at, uintptr_t start,
		  uintptr_t end)
{
	for (unsigned k = 0; k < LX_KEEP_N; k++) {
		const struct lx_excl *l = lx->keep[k].r;

		for (unsigned i = 0; i < lx->keep[k].n; i++) {
			uintptr_t s = l[i].start > start ? l[i].start : start;
			uintptr_t e = l[i].end < end ? l[i].end : end;

			if (s < e && madvise((void *)(at + (s - start)), e - s,
					     keep_flag[k].advice))
				return -errno;
		}
	}
	return 0;
}

int lx_map_keep(struct sp_linux *lx, uintptr_t addr, size_t len, int prot,
		int fd, off_t off)
{
	int flags = fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_PRIVATE;
	uintptr_t end = addr + len;
	int mask = lx_keep_mask(lx, addr, end), err;
	void *t;

	if (mask < 0)
		return mask;
	if (!mask)
		return lx_sys_mmap((void *)addr, len, prot, flags | MAP_FIXED,
				   fd, off) == MAP_FAILED ? -errno : 0;
	/* Made elsewhere with the flags, then moved in place with them. */
	t = mmap(NULL, len, prot, flags, fd, off);
	if (t == MAP_FAILED)
		return -errno;
	err = lx_keep_apply(lx, (uintptr_t)t, addr, end);
	if (!err && lx_sys_mremap(t, len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
				  (void *)addr) == MAP_FAILED)
		err = -errno;
	if (err)
		munmap(t, len);
	return err;
}

void lx_fork_child_flags(struct sp_linux *lx,
			 void (*gone)(void *arg, uintptr_t start, uintptr_t end),
			 void *arg)
{
	struct lx_ranges *d = &lx->keep[LX_KEEP_DONTFORK];

	for (unsigned i = 0; i < d->n; i++)
		gone(arg, d->r[i].start, d->r[i].end);
	d->n = 0;
}
