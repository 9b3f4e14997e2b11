/*
 * lx_uffd.c - the backend's userfaultfd: opening one that can hold pages
 * (UFFDIO_MOVE, write protection of shmem), and thin wrappers over its
 * ioctls that return 0 or -errno.
 *
 * One userfaultfd per process (lx->uffd), non-blocking.  We never serve
 * a fault: a waiter stays blocked until we unregister its range or wake
 * it, then retries against whatever is mapped.  Reading the fault
 * messages only counts them (held_waits).
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

/* A new userfaultfd that may handle kernel-mode faults: from the system
 * call (root, or vm.unprivileged_userfaultfd=1), else from the device
 * (whoever may open /dev/userfaultfd: the group "samepage" once
 * systemd/60-samepage-userfaultfd.rules is installed).  Return: the fd,
 * or -1 with the two refusals' errnos in *@e_sys and *@e_dev. */
static int uffd_new(int *e_sys, int *e_dev)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), dev;

	*e_sys = fd < 0 ? errno : 0;
	*e_dev = 0;
	if (fd >= 0)
		return fd;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		*e_dev = errno;
		return -1;
	}
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	*e_dev = fd < 0 ? errno : 0;
	close(dev);
	return fd;
}

int lx_uffd_open(int *out, char *why, size_t whylen)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MOVE |
					      UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	int fd, e1, e2;

	fd = uffd_new(&e1, &e2);
	if (fd < 0) {
		snprintf(why, whylen,
			 "no userfaultfd: userfaultfd(2) says %s (root may, or "
			 "all with vm.unprivileged_userfaultfd=1), "
			 "/dev/userfaultfd says %s (group samepage may, with "
			 "samepage's udev rule); merging needs one to hold pages "
			 "with no write lost",
			 strerror(e1), strerror(e2));
		return -EPERM;
	}
	if (ioctl(fd, UFFDIO_API, &api)) {
		/* Older kernels: retry without write-protecting shmem (then
		 * unmerge falls back to copying pages in place), from the
		 * same source: a group member's comes from the device. */
		close(fd);
		fd = uffd_new(&e1, &e2);
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

int lx_uffd_register(struct sp_linux *lx, uintptr_t a, size_t len,
		     unsigned mode)
{
	struct uffdio_register r = { .range = { a, len }, .mode = mode };

	return ioctl(lx->uffd, UFFDIO_REGISTER, &r) ? -errno : 0;
}

int lx_uffd_wp(struct sp_linux *lx, uintptr_t a, size_t len, int on)
{
	struct uffdio_writeprotect w = {
		.range = { a, len },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };

	return ioctl(lx->uffd, UFFDIO_WRITEPROTECT, &w) ? -errno : 0;
}

int lx_uffd_unregister(struct sp_linux *lx, uintptr_t a, size_t len)
{
	struct uffdio_range r = { a, len };

	return ioctl(lx->uffd, UFFDIO_UNREGISTER, &r) ? -errno : 0;
}

/* Count the accesses that waited on our held pages: each leaves a fault
 * message.  We never serve them (unprotect wakes the waiters whatever
 * the messages), so reading them only counts. */
void lx_uffd_drain(struct sp_linux *lx)
{
	struct uffd_msg msg[16];
	ssize_t r;

	while ((r = read(lx->uffd, msg, sizeof(msg))) > 0)
		for (ssize_t k = 0; k < r / (ssize_t)sizeof(msg[0]); k++)
			lx->held_waits += msg[k].event == UFFD_EVENT_PAGEFAULT;
}

void lx_uffd_wake(struct sp_linux *lx, uintptr_t a, size_t len)
{
	struct uffdio_range r = { a, len };

	ioctl(lx->uffd, UFFDIO_WAKE, &r);
}

/* Move @len bytes from @src to @dst.  Return: bytes moved (>= 0); *err
 * gets the errno that stopped it, 0 if all moved. */
size_t lx_uffd_move(struct sp_linux *lx, uintptr_t dst, uintptr_t src,
		    size_t len, uint64_t mode, int *err)
{
	struct uffdio_move m = { .dst = dst, .src = src, .len = len,
				 .mode = mode };

	if (ioctl(lx->uffd, UFFDIO_MOVE, &m) == 0) {
		*err = 0;
		return len;
	}
	*err = errno;
	return m.move > 0 ? (size_t)m.move : 0;
}

void lx_uffd_release(struct sp_linux *lx, uintptr_t a, size_t len)
{
	uintptr_t end = a + len;

	if (lx_uffd_unregister(lx, a, len)) {
		/* The range changed under us (unmapped in part, by the
		 * program): unregister what is still there, VMA by VMA. */
		for (uintptr_t p = a; p < end;) {
			uintptr_t vs, ve;
			int prot, kind;

			if (lx_query_kind(lx, p, &vs, &ve, &prot, &kind) < 0)
				break;
			if (vs < p)
				vs = p;
			if (ve > end)
				ve = end;
			if (vs >= ve)
				break;
			lx_uffd_unregister(lx, vs, ve - vs);
			p = ve;
		}
	}
	lx_uffd_wake(lx, a, len);
}
