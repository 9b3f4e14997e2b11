/*
 * lx_guard.c - read application memory directly, surviving a concurrent
 * unmap.
 *
 * The scanner reads pages of the process it merges: to checksum them and
 * to walk the unstable tree.  Reading through a syscall is safe but costs
 * about 1.2 us per page (measured: process_vm_readv and /proc/self/mem
 * alike), against 0.03 us for a direct compare; so reads are direct, and
 * a page that another thread unmaps (or makes PROT_NONE) meanwhile must
 * not kill the process.  A SIGSEGV/SIGBUS handler does that: when the
 * faulting thread has armed its guard, it jumps back and the read
 * reports -EFAULT; any other fault goes to the handler that was there
 * before ours (or the default action), exactly as if we were not there.
 *
 * The guard is only trusted while our handler is still the installed
 * one: lx_guard_ok() checks, and callers fall back to /proc/self/mem
 * otherwise (which also reads PROT_NONE pages).
 *
 * A page is read whole, whatever the program keeps in it and whatever
 * its threads are doing to it.  Under ASan the program's heap pages hold
 * redzones and freed chunks, which ASan reports when read; under
 * ThreadSanitizer every read races with the program's writers, by
 * design (a torn read only makes a checksum or a comparison differ;
 * decisions are made on held pages).  Those reads are the scanner's job,
 * not a bug of the program, so a sanitizer build reads here through
 * raw_copy() and raw_cmp(), which are not instrumented and call no libc
 * routine (the sanitizers check memcpy and memcmp in their
 * interceptors), and hashes with XXH3 built without the sanitizer
 * (meson.build); the program's own accesses stay checked.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "../util/hash.h"
#include "linux.h"

/* The armed guard of this thread, NULL when unarmed.  initial-exec: the
 * handler must not go through __tls_get_addr.  volatile, and fenced by
 * compiler barriers where armed: the compiler knows memcpy/memcmp touch
 * only their arguments and would otherwise move the stores across. */
static __thread sigjmp_buf *volatile guard_jb
	__attribute__((tls_model("initial-exec")));

#define BARRIER() __asm__ __volatile__("" ::: "memory")

static struct sigaction old_segv, old_bus;	/* set once, under guard_once */
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;
static int guard_installed;

static void chain(int sig, siginfo_t *si, void *uc)
{
	struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;

	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, si, uc);
	} else if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
		/* Restore the default and return: the access faults again
		 * and the kernel does what it would have done without us. */
		signal(sig, SIG_DFL);
	} else {
		old->sa_handler(sig);
	}
}

static void guard_handler(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *jb = guard_jb;

	if (jb) {
		guard_jb = NULL;
		siglongjmp(*jb, 1);
	}
	chain(sig, si, uc);
}

static void guard_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = guard_handler;
	/* NODEFER: we leave by siglongjmp without restoring the mask. */
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &old_segv) == 0 &&
	    sigaction(SIGBUS, &sa, &old_bus) == 0)
		guard_installed = 1;
}

int lx_guard_init(void)
{
	pthread_once(&guard_once, guard_install);
	return guard_installed ? 0 : -errno;
}

int lx_guard_ok(void)
{
	struct sigaction cur;

	if (!guard_installed)
		return 0;
	if (sigaction(SIGSEGV, NULL, &cur) ||
	    cur.sa_sigaction != guard_handler)
		return 0;
	if (sigaction(SIGBUS, NULL, &cur) ||
	    cur.sa_sigaction != guard_handler)
		return 0;
	return 1;
}

/*
 * Run @fn(@arg) with this thread's guard armed: the one place that arms
 * it.  sigsetjmp must be called in a frame that is still live when the
 * handler jumps, so it is here and not in a helper that returns first;
 * the barriers keep the compiler from moving @fn's memory accesses out
 * of the armed span.  Return: 0, or -EFAULT if @fn faulted (it stopped
 * partway, and its outputs in @arg are not to be read).
 */
static int guarded_run(void (*fn)(void *), void *arg)
{
	sigjmp_buf jb;

	if (sigsetjmp(jb, 0))
		return -EFAULT;		/* guard_jb was cleared by the handler */
	guard_jb = &jb;
	BARRIER();
	fn(arg);
	BARRIER();
	guard_jb = NULL;
	return 0;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RAW __attribute__((no_sanitize_address, no_sanitize_thread, noinline))

/* memcpy of @n bytes, read a word at a time (a byte at a time from an
 * unaligned @src) through a volatile pointer, so that the compiler
 * cannot turn the loop back into a memcpy call. */
RAW static void raw_copy(void *dst, const void *src, size_t n)
{
	const volatile unsigned char *s = src;
	unsigned char *d = dst;
	size_t i = 0;

	for (; (uintptr_t)s % 8 == 0 && i + 8 <= n; i += 8) {
		uint64_t w = *(const volatile uint64_t *)(s + i);

		__builtin_memcpy(d + i, &w, 8);
	}
	for (; i < n; i++)
		d[i] = s[i];
}

/* memcmp of @n bytes: the sign of the first differing byte pair. */
RAW static int raw_cmp(const void *a, const void *b, size_t n)
{
	const volatile unsigned char *x = a, *y = b;

	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}
#else
#define raw_copy memcpy
#define raw_cmp memcmp
#endif

struct copy_op {
	void *dst;
	const void *src;
	size_t n;
};

static void do_copy(void *p)
{
	struct copy_op *o = p;

	raw_copy(o->dst, o->src, o->n);
}

int lx_guarded_copy(void *dst, const void *src, size_t n)
{
	struct copy_op o = { dst, src, n };

	return guarded_run(do_copy, &o);
}

struct hash_op {
	const void *page;
	uint64_t hash;
};

static void do_hash(void *p)
{
	struct hash_op *o = p;

	o->hash = sp_hash_page(o->page);
}

int lx_guarded_hash(const void *page, uint64_t *hash)
{
	struct hash_op o = { page, 0 };
	int err = guarded_run(do_hash, &o);

	if (!err)
		*hash = o.hash;
	return err;
}

struct cmp_op {
	const void *key, *page;
	size_t n;
	int order;
};

static void do_cmp(void *p)
{
	struct cmp_op *o = p;

	o->order = raw_cmp(o->key, o->page, o->n);
}

int lx_guarded_cmp(const void *key, const void *page, size_t n, int *order)
{
	struct cmp_op o = { key, page, n, 0 };
	int err = guarded_run(do_cmp, &o);

	if (!err)
		*order = o.order;
	return err;
}
