/*
 * test_fill.c - how samepaged writes new store pages (src/daemon/fill.c):
 * runs of pages land whole, through a segment sealed as the store seals
 * it; a slot already backed by a page (a client read it first) is
 * overwritten, not skipped; a hole the daemon never wrote raises SIGBUS
 * when read rather than blocking the daemon for ever; a failed call
 * leaves its pages untouched and says why; and without a userfaultfd,
 * memcpy does the same job.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "fill.h"

#define PS 4096u
#define NP 16u

struct seg {
	int fd;		/* the memfd, sealed like a store segment */
	uint8_t *map;	/* its shared writable mapping (made before the seal) */
	int uffd;	/* registered on map, or -1 */
};

static void pattern(uint8_t *p, uint32_t n, uint32_t seed)
{
	for (uint32_t i = 0; i < n * PS / 4; i++)
		((uint32_t *)(void *)p)[i] = seed * 2654435761u + i;
}

/* A segment of NP pages, mapped and sealed as store.c does; registered
 * with a userfaultfd if @uffd. */
static int seg_make(struct seg *s, int uffd)
{
	s->fd = memfd_create("test-fill", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (s->fd < 0 || ftruncate(s->fd, NP * PS))
		return -1;
	s->map = mmap(NULL, NP * PS, PROT_READ | PROT_WRITE, MAP_SHARED,
		      s->fd, 0);
	if (s->map == MAP_FAILED)
		return -1;
	if (fcntl(s->fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_GROW |
					     F_SEAL_SHRINK | F_SEAL_SEAL))
		return -1;
	s->uffd = -1;
	if (uffd >= 0) {
		if (fill_register(uffd, s->map, NP * PS))
			return -1;
		s->uffd = uffd;
	}
	return 0;
}

static void seg_drop(struct seg *s)
{
	munmap(s->map, NP * PS);
	close(s->fd);
}

/* What a client sees at page @i: a read-only private mapping of a
 * read-only fd, as clients map the store. */
static void client_read(const struct seg *s, uint32_t i, uint8_t *out)
{
	char path[64];
	int fd;
	uint8_t *m;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", s->fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	m = mmap(NULL, PS, PROT_READ, MAP_PRIVATE, fd, (off_t)i * PS);
	assert_true(m != MAP_FAILED);
	memcpy(out, m, PS);
	munmap(m, PS);
	close(fd);
}

static int open_or_skip(void)
{
	int uffd = fill_open();

	if (uffd < 0)
		fprintf(stderr, "# no userfaultfd here (%s): only the memcpy "
			"path is tested\n", strerror(-uffd));
	return uffd;
}

/* A run lands whole, and clients see exactly those bytes: with the
 * userfaultfd (@uffd >= 0) or with memcpy (-1). */
static void run(int uffd)
{
	static uint8_t src[8 * PS], got[PS];
	int err = 1;
	struct seg s;

	assert_int_equal(seg_make(&s, uffd), 0);
	pattern(src, 8, 1);
	assert_int_equal(fill_pages(s.uffd, s.map, src, 8, &err), 8);
	assert_int_equal(err, 0);
	for (uint32_t i = 0; i < 8; i++) {
		client_read(&s, i, got);
		assert_memory_equal(got, src + i * PS, PS);
		assert_memory_equal(s.map + i * PS, src + i * PS, PS);
	}
	seg_drop(&s);
}

static void test_run(void **state)
{
	int uffd = open_or_skip();

	(void)state;
	run(uffd);
	if (uffd >= 0)
		close(uffd);
}

static void test_run_memcpy(void **state)
{
	(void)state;
	run(-1);
}

/* A client that read a slot before it was written put a zero page in
 * the memfd there; a run across it is still written whole. */
static void test_existing_page(void **state)
{
	static uint8_t src[4 * PS], got[PS], zero[PS];
	int uffd = open_or_skip(), err = 1;
	struct seg s;

	(void)state;
	assert_int_equal(seg_make(&s, uffd), 0);
	client_read(&s, 9, got);
	assert_memory_equal(got, zero, PS);
	pattern(src, 4, 2);
	assert_int_equal(fill_pages(s.uffd, s.map + 8 * PS, src, 4, &err), 4);
	assert_int_equal(err, 0);
	for (uint32_t i = 0; i < 4; i++) {
		client_read(&s, 8 + i, got);
		assert_memory_equal(got, src + i * PS, PS);
	}
	/* Written twice (a slot reused after reclaim): the new bytes. */
	pattern(src, 1, 3);
	assert_int_equal(fill_pages(s.uffd, s.map + 9 * PS, src, 1, &err), 1);
	client_read(&s, 9, got);
	assert_memory_equal(got, src, PS);
	seg_drop(&s);
	if (uffd >= 0)
		close(uffd);
}

static sigjmp_buf bus_jmp;

static void on_bus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

/* With a userfaultfd, a hole of the daemon's mapping raises SIGBUS when
 * read: the daemon (one thread) must never wait on a fault it would
 * have to serve itself.  (In this process: a child would not inherit
 * the registration.) */
static void test_hole_sigbus(void **state)
{
	struct sigaction sa = { .sa_handler = on_bus }, old;
	int uffd = fill_open();
	volatile int bused = 0;
	struct seg s;

	(void)state;
	if (uffd < 0) {
		skip();
		return;
	}
	assert_int_equal(seg_make(&s, uffd), 0);
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGBUS, &sa, &old), 0);
	if (sigsetjmp(bus_jmp, 1) == 0) {
		volatile uint8_t v = s.map[5 * PS];

		(void)v;
	} else {
		bused = 1;
	}
	sigaction(SIGBUS, &old, NULL);
	assert_true(bused);
	seg_drop(&s);
	close(uffd);
}

/* A call that cannot write (here: a range not registered) writes
 * nothing and says why. */
static void test_refused(void **state)
{
	static uint8_t src[2 * PS], got[PS], zero[PS];
	int uffd = fill_open(), err = 0;
	struct seg s;

	(void)state;
	if (uffd < 0) {
		skip();
		return;
	}
	assert_int_equal(seg_make(&s, -1), 0);
	pattern(src, 2, 4);
	assert_int_equal(fill_pages(uffd, s.map, src, 2, &err), 0);
	assert_true(err < 0);
	client_read(&s, 0, got);
	assert_memory_equal(got, zero, PS);
	seg_drop(&s);
	close(uffd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run),
		cmocka_unit_test(test_run_memcpy),
		cmocka_unit_test(test_existing_page),
		cmocka_unit_test(test_hole_sigbus),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
