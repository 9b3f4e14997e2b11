/*
 * test_guard.c - the guarded reads of application memory (mem/lx_guard.c):
 * a fault inside one ends it with -EFAULT and nothing else, and a fault
 * anywhere else still reaches the handler that was installed before.
 *
 * Faults are made for real: a PROT_NONE page, an unmapped page (SIGSEGV)
 * and a page of a memfd past its end (SIGBUS).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "mem/linux.h"
#include "util/hash.h"

#define PS 4096

/* The program's own handler, installed before the guard's: it counts the
 * faults it gets and jumps back to the test that provoked one. */
static sigjmp_buf prog_jb;
static volatile sig_atomic_t prog_faults;

static void prog_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	prog_faults++;
	siglongjmp(prog_jb, 1);
}

/* cmocka puts its own SIGSEGV/SIGBUS handlers in place around each test
 * (to report a crash), which is exactly what makes lx_guard_ok() say the
 * guard cannot be trusted.  Each test puts the guard's back for its
 * duration (chaining, as installed, to prog_handler). */
static struct sigaction guard_segv, guard_bus, cm_segv, cm_bus;

static void take_signals(void)
{
	assert_int_equal(sigaction(SIGSEGV, &guard_segv, &cm_segv), 0);
	assert_int_equal(sigaction(SIGBUS, &guard_bus, &cm_bus), 0);
}

static void give_back_signals(void)
{
	sigaction(SIGSEGV, &cm_segv, NULL);
	sigaction(SIGBUS, &cm_bus, NULL);
}

/* Three pages: readable, PROT_NONE, unmapped. */
static unsigned char *three_pages(void)
{
	unsigned char *p = mmap(NULL, 3 * PS, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	for (unsigned i = 0; i < PS; i++)
		p[i] = (unsigned char)(i * 7 + 1);
	assert_int_equal(mprotect(p + PS, PS, PROT_NONE), 0);
	assert_int_equal(munmap(p + 2 * PS, PS), 0);
	return p;
}

static void test_reads(void **state)
{
	unsigned char *p = three_pages(), buf[PS], key[PS];
	uint64_t h = 42;
	int order = 7;

	(void)state;
	take_signals();
	assert_true(lx_guard_ok());
	memcpy(key, p, PS);
	assert_int_equal(lx_guarded_copy(buf, p, PS), 0);
	assert_memory_equal(buf, p, PS);
	assert_int_equal(lx_guarded_hash(p, &h), 0);
	assert_true(h == sp_hash_page(p));
	assert_int_equal(lx_guarded_cmp(key, p, PS, &order), 0);
	assert_int_equal(order, 0);
	key[100] ^= 1;
	assert_int_equal(lx_guarded_cmp(key, p, PS, &order), 0);
	assert_true(order != 0);
	for (unsigned bad = 1; bad <= 2; bad++) {
		const unsigned char *q = p + bad * PS;

		h = 42;
		order = 7;
		assert_int_equal(lx_guarded_copy(buf, q, PS), -EFAULT);
		assert_int_equal(lx_guarded_hash(q, &h), -EFAULT);
		assert_int_equal(lx_guarded_cmp(key, q, PS, &order), -EFAULT);
		assert_true(h == 42 && order == 7);	/* outputs untouched */
		/* A read that starts readable and runs into the fault. */
		assert_int_equal(lx_guarded_copy(buf, p + (bad - 1) * PS + 8,
						 PS), -EFAULT);
	}
	assert_int_equal(prog_faults, 0);
	give_back_signals();
	munmap(p, 2 * PS);
}

/* A memfd mapping of two pages whose file has shrunk to one: reading the
 * second page is SIGBUS. */
static void test_sigbus(void **state)
{
	int fd = memfd_create("test-guard", MFD_CLOEXEC);
	unsigned char *m, buf[PS];
	uint64_t h;

	(void)state;
	take_signals();
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 2 * PS), 0);
	m = mmap(NULL, 2 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(m != MAP_FAILED);
	memset(m, 0x5a, 2 * PS);
	assert_int_equal(ftruncate(fd, PS), 0);
	assert_int_equal(lx_guarded_copy(buf, m, PS), 0);
	assert_int_equal(lx_guarded_hash(m + PS, &h), -EFAULT);
	assert_int_equal(lx_guarded_copy(buf, m + PS, PS), -EFAULT);
	assert_int_equal(prog_faults, 0);
	give_back_signals();
	munmap(m, 2 * PS);
	close(fd);
}

/* After guarded faults, the guard is disarmed: a fault outside any
 * guarded read goes to the program's handler, each time. */
static void test_unguarded_fault_chains(void **state)
{
	unsigned char *p = three_pages(), buf[PS];
	volatile unsigned char *q = p + PS;

	(void)state;
	take_signals();
	for (int round = 1; round <= 3; round++) {
		assert_int_equal(lx_guarded_copy(buf, p + PS, PS), -EFAULT);
		if (!sigsetjmp(prog_jb, 1)) {
			(void)*q;	/* PROT_NONE, no guard armed */
			fail_msg("read of a PROT_NONE page did not fault");
		}
		assert_int_equal(prog_faults, round);
	}
	assert_true(lx_guard_ok());
	give_back_signals();
	prog_faults = 0;
	munmap(p, 2 * PS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads),
		cmocka_unit_test(test_sigbus),
		cmocka_unit_test(test_unguarded_fault_chains),
	};
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = prog_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL) || sigaction(SIGBUS, &sa, NULL) ||
	    lx_guard_init() || !lx_guard_ok() ||
	    sigaction(SIGSEGV, NULL, &guard_segv) ||
	    sigaction(SIGBUS, NULL, &guard_bus))
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
