/*
 * lx_sys.h - kernel interfaces the Linux backend uses that Debian 12's
 * 6.1 uapi headers do not have yet (the running kernel does: UFFDIO_MOVE
 * since 6.8, PROCMAP_QUERY since 6.11), and pagemap's bits.  Values are
 * the kernel's ABI.
 */
#ifndef SP_LX_SYS_H
#define SP_LX_SYS_H

#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#ifndef UFFDIO_MOVE
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 move;		/* out: bytes moved, or -errno */
};
#define _UFFDIO_MOVE 0x05
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif
#ifndef UFFDIO_MOVE_MODE_DONTWAKE
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#endif
#ifndef UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

#ifndef PROCMAP_QUERY
struct procmap_query {
	__u64 size;
	__u64 query_flags;
	__u64 query_addr;
	__u64 vma_start;
	__u64 vma_end;
	__u64 vma_flags;
	__u64 vma_page_size;
	__u64 vma_offset;
	__u64 inode;
	__u32 dev_major;
	__u32 dev_minor;
	__u32 vma_name_size;
	__u32 build_id_size;
	__u64 vma_name_addr;
	__u64 build_id_addr;
};
#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
#define PROCMAP_QUERY_VMA_READABLE 0x01
#define PROCMAP_QUERY_VMA_WRITABLE 0x02
#define PROCMAP_QUERY_VMA_EXECUTABLE 0x04
#define PROCMAP_QUERY_VMA_SHARED 0x08
#define PROCMAP_QUERY_COVERING_OR_NEXT_VMA 0x10
#endif

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/*
 * mmap and mremap over the program's own addresses: a merge puts the
 * stable page where the program's page was, a rebuild a copy of its
 * pages, and neither changes a byte the program sees.  A sanitizer's
 * interceptor would take the new mapping for new memory (ThreadSanitizer
 * for a write by the scanner, racing with every later access of the
 * program; ASan would unpoison the program's redzones on it), so a
 * sanitizer build makes these system calls itself.  Same contract as
 * mmap(2) and mremap(2).
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#include <sys/syscall.h>
#include <unistd.h>
/* syscall() reads each argument as a long: pass them so. */
#define lx_sys_mmap(a, l, p, f, fd, o) \
	((void *)syscall(SYS_mmap, (long)(a), (long)(l), (long)(p), \
			 (long)(f), (long)(fd), (long)(o)))
#define lx_sys_mremap(o, ol, nl, f, n) \
	((void *)syscall(SYS_mremap, (long)(o), (long)(ol), (long)(nl), \
			 (long)(f), (long)(n)))
#else
#define lx_sys_mmap mmap
#define lx_sys_mremap mremap
#endif

/* /proc/PID/pagemap entry bits. */
#define PM_PFN_MASK ((1ULL << 55) - 1)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_FILE (1ULL << 61)
#define PM_SWAP (1ULL << 62)
#define PM_PRESENT (1ULL << 63)

#endif
