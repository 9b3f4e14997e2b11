/*
 * fill.c - how samepaged writes new pages into its store segments.
 *
 * A segment is sealed against writes (store.c); the daemon's shared
 * writable mapping, made before the seal, is the one way left to write
 * it.  Storing a page there with memcpy first faults the slot in: the
 * kernel allocates a page, zeroes it and maps it, and only then do our
 * bytes overwrite the zeroes.  At full speed that fault was most of the
 * daemon's time.  UFFDIO_COPY does the same job in one step: it
 * allocates the page, copies our bytes into it and maps it, for a whole
 * run of slots in one call, with no zeroing and no fault per page.
 *
 * For that, each segment's mapping is registered with a userfaultfd for
 * missing pages, with UFFD_FEATURE_SIGBUS, so a fault on a hole of the
 * mapping raises SIGBUS instead of waiting for an answer the daemon
 * (one thread) would never give.  The rule for the rest of the store:
 * through a segment's mapping the daemon writes only with fill_pages,
 * and reads nothing (it compares stored pages by pread of the memfd, so
 * that they do not stay mapped in it).  A slot already backed by a
 * page (reused after reclaim: holes are never punched; or read by a
 * client before it was ever written, which puts a zero page in the
 * memfd) makes UFFDIO_COPY fail with EEXIST, and is overwritten with
 * memcpy: the page is there, so that write cannot fault on a hole.
 *
 * The userfaultfd is opened user-mode-only (UFFD_USER_MODE_ONLY): any
 * user may open one so, where a full one needs privilege or
 * vm.unprivileged_userfaultfd=1.  With UFFD_FEATURE_SIGBUS a fault on a
 * hole fails whether user space or the kernel (a syscall given the
 * mapping: the daemon makes none but madvise) takes it.  Where the
 * kernel refuses the userfaultfd (seccomp, an old kernel), the store
 * writes with memcpy as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fill.h"

#define PS 4096u

int fill_open(void)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_SIGBUS,
	};
	int fd = (int)syscall(SYS_userfaultfd,
			      O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int fill_register(int uffd, void *map, size_t len)
{
	static const uint8_t zero[PS];
	struct uffdio_register r = {
		.range = { (uintptr_t)map, len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	struct uffdio_copy c = {
		.dst = (uintptr_t)map, .src = (uintptr_t)zero, .len = PS,
	};
	int err;

	if (ioctl(uffd, UFFDIO_REGISTER, &r))
		return -errno;
	/* A kernel that registers the range but will not copy into it
	 * (a sealed memfd, say) must not be found out later: a refused
	 * page could not be written any other way.  So copy one now. */
	if (!ioctl(uffd, UFFDIO_COPY, &c) || errno == EEXIST)
		return 0;
	err = -errno;
	ioctl(uffd, UFFDIO_UNREGISTER, &r.range);
	return err;
}

uint32_t fill_pages(int uffd, void *dst, const void *src, uint32_t n,
		    int *err)
{
	char *d = dst;
	const char *s = src;
	uint32_t done = 0;

	*err = 0;
	if (uffd < 0) {
		memcpy(d, s, (size_t)n * PS);
		return n;
	}
	while (done < n) {
		struct uffdio_copy c = {
			.dst = (uintptr_t)(d + (size_t)done * PS),
			.src = (uintptr_t)(s + (size_t)done * PS),
			.len = (size_t)(n - done) * PS,
		};

		if (!ioctl(uffd, UFFDIO_COPY, &c))
			return n;
		if (c.copy > 0) {
			/* Part of the run is in; the call stopped at a page
			 * it will refuse on its own next time. */
			done += (uint32_t)(c.copy / PS);
			continue;
		}
		if (errno != EEXIST) {
			*err = -errno;
			return done;
		}
		/* A page is already in the memfd at this slot: no hole, so
		 * writing it through the mapping cannot fault on one. */
		memcpy(d + (size_t)done * PS, s + (size_t)done * PS, PS);
		done++;
	}
	return n;
}
