/*
 * rt.h - helpers for tests on real memory: start the agent or skip,
 * observe what the kernel shows (PFNs in /proc/self/pagemap, Rss and Pss
 * in /proc/self/smaps_rollup), make regions with known content.
 *
 * Skips (exit 77, reason on stderr) when merging is impossible here: no
 * usable userfaultfd (not root, vm.unprivileged_userfaultfd=0).
 */
#ifndef SP_TEST_RT_H
#define SP_TEST_RT_H

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "samepage.h"

#define PS SP_PAGE_SIZE

static struct sp_agent *A;

/* Start the agent (scanner stopped: tests drive it with merge_now), or
 * exit 77 saying why merging cannot run here. */
static inline void rt_start_or_skip(const char *prog)
{
	struct sp_agent_config cfg = { .run = 0 };
	char why[512];
	int err = sp_agent_start(&cfg, &A, why, sizeof(why));

	if (err == -EPERM || err == -ENOSYS) {
		fprintf(stderr, "%s: SKIP: %s\n", prog, why);
		exit(77);
	}
	if (err) {
		fprintf(stderr, "%s: sp_agent_start: %s (%s)\n", prog,
			strerror(-err), why);
		exit(1);
	}
}

/* The page's PFN after touching it (0 if PFNs are hidden from us). */
static inline uint64_t rt_pfn(const void *p)
{
	static int fd = -1;
	uint64_t e = 0;

	(void)*(volatile const char *)p;
	if (fd < 0)
		fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pread(fd, &e, 8, (off_t)((uintptr_t)p / PS) * 8) != 8)
		return 0;
	return e & ((1ULL << 55) - 1);
}

/* A field of /proc/self/smaps_rollup, in kB. */
static inline long rt_rollup_kb(const char *key)
{
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/self/smaps_rollup", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = atol(line + n + 1);
	fclose(f);
	return v;
}

static inline char *rt_map(size_t pages)
{
	char *p = mmap(NULL, pages * PS, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

/* Page @i of a pattern: distinct per (seed, i), stamped at both ends. */
static inline void rt_page(void *page, uint64_t seed, size_t i)
{
	uint64_t v = seed * 0x9e3779b97f4a7c15ull + i;

	memset(page, (int)(v % 251) + 1, PS);
	memcpy(page, &v, 8);
	memcpy((char *)page + PS - 8, &v, 8);
}

static inline void rt_fill(char *p, size_t pages, uint64_t seed)
{
	for (size_t i = 0; i < pages; i++)
		rt_page(p + i * PS, seed, i);
}

static inline int rt_is(const char *p, size_t pages, uint64_t seed)
{
	unsigned char want[PS];

	for (size_t i = 0; i < pages; i++) {
		rt_page(want, seed, i);
		if (memcmp(p + i * PS, want, PS))
			return 0;
	}
	return 1;
}

static inline struct sp_stats rt_stats(void)
{
	struct sp_stats st;

	sp_stats_get(sp_agent_engine(A), &st);
	return st;
}

static inline struct sp_agent_stats rt_astats(void)
{
	struct sp_agent_stats st;

	sp_agent_stats_get(A, &st);
	return st;
}

static inline void rt_merge(void)
{
	assert_int_equal(sp_agent_merge_now(A, 60000), 0);
}

/* Unmerge everything and unregister [p, p + pages) (test teardown). */
static inline void rt_release(char *p, size_t pages)
{
	assert_int_equal(sp_agent_unregister(A, p, pages * PS), 0);
	assert_int_equal(sp_agent_unmap(A, p, pages * PS), 0);
}

/*
 * Under ThreadSanitizer: the writers' accesses to the merged region are
 * ordered against the merger by the kernel (a write to a held page blocks
 * in a userfaultfd fault; a remap happens under the mm lock), which TSan
 * cannot see: it takes the merger's mmap over the region for a plain
 * write.  Tests that race writers against merging bracket those accesses
 * alone with REGION_ACCESS_BEGIN/END; the engine, the agent, their locks
 * and counters stay checked.
 */
#if defined(__SANITIZE_THREAD__)
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
void AnnotateIgnoreWritesBegin(const char *file, int line);
void AnnotateIgnoreWritesEnd(const char *file, int line);
#define REGION_ACCESS_BEGIN()                                                \
	do {                                                                 \
		AnnotateIgnoreReadsBegin(__FILE__, __LINE__);                \
		AnnotateIgnoreWritesBegin(__FILE__, __LINE__);               \
	} while (0)
#define REGION_ACCESS_END()                                                  \
	do {                                                                 \
		AnnotateIgnoreWritesEnd(__FILE__, __LINE__);                 \
		AnnotateIgnoreReadsEnd(__FILE__, __LINE__);                  \
	} while (0)
#else
#define REGION_ACCESS_BEGIN() do { } while (0)
#define REGION_ACCESS_END() do { } while (0)
#endif

#endif
