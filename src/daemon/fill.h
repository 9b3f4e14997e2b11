/*
 * fill.h - how samepaged writes new pages into its store segments: with
 * UFFDIO_COPY where it may (no zeroing, no fault per page, several pages
 * per call), with memcpy otherwise.  See fill.c for the rule this puts
 * on every other access to a segment's mapping.
 *
 * Stateless: the store owns the userfaultfd and says which mappings are
 * registered with it.
 */
#ifndef SP_DAEMON_FILL_H
#define SP_DAEMON_FILL_H

#include <stddef.h>
#include <stdint.h>

/* fill_open - a userfaultfd to fill store pages with.  Return: the fd
 * (close-on-exec), or -errno if this process may not have one, or the
 * kernel cannot fill shmem with it (the store then uses memcpy). */
int fill_open(void);

/* fill_register - make the @len bytes at @map, a shared writable mapping
 * of a segment, fillable through @uffd, and check that it is by filling
 * its first page with zeroes (a page there already is kept).  From then
 * on a fault on a hole there raises SIGBUS (see fill.c).  Return: 0 or
 * -errno (nothing registered: fill that mapping with uffd -1). */
int fill_register(int uffd, void *map, size_t len);

/*
 * fill_pages - write the @n pages at @src over the @n pages at @dst,
 * which lie in one mapping registered with @uffd (or in any writable
 * mapping if @uffd is -1).  A page already in the memfd (a slot reused,
 * or one a client read before it was written) is overwritten in place.
 * Never blocks on a fault.  Return: how many pages were written, from
 * the first (@n: all); the others are untouched, and *@err says why
 * (-ENOMEM: no memory for them, as at a cgroup's limit).
 */
uint32_t fill_pages(int uffd, void *dst, const void *src, uint32_t n,
		    int *err);

#endif
