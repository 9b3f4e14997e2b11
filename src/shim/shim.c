/*
 * shim.c - libsamepage-preload.so: the KSM API of an unmodified program,
 * served by samepage.  `samepage run -- CMD` preloads it.
 *
 * What it interposes (the libc symbols; see docs/design.md for what it
 * cannot see):
 *   madvise   MADV_MERGEABLE / MADV_UNMERGEABLE are ours: validated as the
 *             kernel does (EINVAL, ENOMEM for holes) and turned into
 *             registrations of the in-process agent; the kernel never
 *             sees them.  MADV_DONTNEED(_LOCKED) / MADV_FREE on registered
 *             memory become sp_agent_discard (zeros afterwards, as on
 *             anonymous memory); MADV_REMOVE there fails with EINVAL as on
 *             anonymous memory.  Every other advice goes to the kernel.
 *   prctl     PR_SET_MEMORY_MERGE / PR_GET_MEMORY_MERGE are ours (the
 *             kernel's argument checks); the flag survives fork (the
 *             agent's memory is copied) and exec (SAMEPAGE_MERGE_ANY in
 *             the environment, read at start-up).  Other options pass.
 *   munmap, mremap, mprotect, mmap(MAP_FIXED) over registered memory go
 *             through the agent, which serialises them with merging and
 *             keeps its records true; with merge-any on, new private
 *             anonymous mappings are registered as they are made.
 *   madvise's fork and dump advice (DONTFORK, DOFORK, DONTDUMP, DODUMP,
 *   WIPEONFORK, KEEPONFORK) on registered memory, mlock, mlock2, munlock,
 *   mlockall, munlockall
 *             go through the agent too, which re-reads the VMA flags
 *             afterwards: merging keeps DONTFORK and DONTDUMP on the
 *             mappings it makes, and never merges WIPEONFORK or locked
 *             memory (merged pages are unmerged before WIPEONFORK).
 * Nothing happens until the program first uses the KSM API: until then
 * every call goes straight to libc and no agent, thread or fd exists.
 *
 * Calls made by the agent itself (its scanner thread, or a program thread
 * inside an sp_agent_* call) pass straight to libc: sp_agent_internal().
 *
 * Errors: this file is one of the two places that set errno (the libc
 * convention of the calls it stands in for); everything below it returns
 * -errno, converted once, in fail().
 *
 * Knobs for the agent come from the environment, set by `samepage run`:
 * SAMEPAGE_PAGES_TO_SCAN, SAMEPAGE_SLEEP_MILLISECS, SAMEPAGE_MAX_PAGE_SHARING,
 * SAMEPAGE_USE_ZERO_PAGES, SAMEPAGE_SMART_SCAN, SAMEPAGE_RUN.
 */
/* Our mmap must be the symbol "mmap" (64-bit off_t is the only kind on
 * the 64-bit targets we build for); mmap64 is defined beside it. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "samepage.h"

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

#define SHIM_API __attribute__((visibility("default")))
#define MERGE_ANY_ENV "SAMEPAGE_MERGE_ANY"

/* libc's functions, found once (real()). */
static int (*r_madvise)(void *, size_t, int);
static int (*r_prctl)(int, unsigned long, unsigned long, unsigned long,
		      unsigned long);
static int (*r_munmap)(void *, size_t);
static void *(*r_mremap)(void *, size_t, size_t, int, void *);
static int (*r_mprotect)(void *, size_t, int);
static void *(*r_mmap)(void *, size_t, int, int, int, off_t);
static int (*r_mlock2)(const void *, size_t, unsigned);
static int (*r_munlock)(const void *, size_t);
static int (*r_mlockall)(int);
static int (*r_munlockall)(void);
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

/* The agent, started on first use.  agent_lock protects the start; the
 * pointer, once set, never changes (the agent lives as long as the
 * process; a forked child's copy is the child's agent). */
static pthread_mutex_t agent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sp_agent *_Atomic agent;
static int agent_failed;	/* start refused: warned once, never retried */

static void find_real(void)
{
	r_madvise = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "madvise");
	r_prctl = (int (*)(int, unsigned long, unsigned long, unsigned long,
			   unsigned long))dlsym(RTLD_NEXT, "prctl");
	r_munmap = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "munmap");
	r_mremap = (void *(*)(void *, size_t, size_t, int, void *))
		dlsym(RTLD_NEXT, "mremap");
	r_mprotect = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "mprotect");
	r_mmap = (void *(*)(void *, size_t, int, int, int, off_t))
		dlsym(RTLD_NEXT, "mmap");
	r_mlock2 = (int (*)(const void *, size_t, unsigned))
		dlsym(RTLD_NEXT, "mlock2");
	r_munlock = (int (*)(const void *, size_t))dlsym(RTLD_NEXT, "munlock");
	r_mlockall = (int (*)(int))dlsym(RTLD_NEXT, "mlockall");
	r_munlockall = (int (*)(void))dlsym(RTLD_NEXT, "munlockall");
}

static void real(void)
{
	pthread_once(&real_once, find_real);
}

/* The one errno conversion: -errno in, -1 out. */
static int fail(int err)
{
	errno = -err;
	return -1;
}

static void knob_from_env(struct sp_engine *e, const char *name,
			  enum sp_knob k)
{
	const char *v = getenv(name);
	char *end;
	unsigned long long x;

	if (!v || !*v)
		return;
	x = strtoull(v, &end, 10);
	if (*end || sp_knob_set(e, k, x))
		fprintf(stderr, "samepage: ignoring %s=%s\n", name, v);
}

/* The agent, started if @start and not yet running; NULL if none. */
static struct sp_agent *get_agent(int start)
{
	struct sp_agent_config cfg = { .run = 1 };
	struct sp_agent *a = agent;
	const char *run;
	char why[512];
	int err;

	if (a || !start)
		return a;
	pthread_mutex_lock(&agent_lock);
	if (!agent && !agent_failed) {
		run = getenv("SAMEPAGE_RUN");
		if (run && *run)
			cfg.run = atoi(run) == 1;
		err = sp_agent_start(&cfg, &a, why, sizeof(why));
		if (err) {
			agent_failed = 1;
			fprintf(stderr, "samepage: not merging: %s%s\n",
				why[0] ? why : strerror(-err),
				err == -EBUSY ? "" : " (the KSM calls succeed "
				"and merge nothing)");
		} else {
			struct sp_engine *e = sp_agent_engine(a);

			knob_from_env(e, "SAMEPAGE_PAGES_TO_SCAN",
				      SP_KNOB_PAGES_TO_SCAN);
			knob_from_env(e, "SAMEPAGE_SLEEP_MILLISECS",
				      SP_KNOB_SLEEP_MILLISECS);
			knob_from_env(e, "SAMEPAGE_MAX_PAGE_SHARING",
				      SP_KNOB_MAX_PAGE_SHARING);
			knob_from_env(e, "SAMEPAGE_USE_ZERO_PAGES",
				      SP_KNOB_USE_ZERO_PAGES);
			knob_from_env(e, "SAMEPAGE_SMART_SCAN",
				      SP_KNOB_SMART_SCAN);
			agent = a;
		}
	}
	a = agent;
	pthread_mutex_unlock(&agent_lock);
	return a;
}

/* An agent to hand a memory call to, or NULL: pass it to libc. */
static struct sp_agent *owner(const void *addr, size_t len)
{
	struct sp_agent *a = agent;

	if (!a || sp_agent_internal() || !sp_agent_overlaps(a, addr, len))
		return NULL;
	return a;
}

/* madvise's own checks, for the advice we serve without the kernel:
 * EINVAL for an unaligned start or a range that wraps. */
static int range_ok(void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;
	size_t l = (len + (size_t)SP_PAGE_SIZE - 1) & ~(size_t)(SP_PAGE_SIZE - 1);

	if (a & (SP_PAGE_SIZE - 1))
		return -EINVAL;
	if (len && (!l || a + l < a))
		return -EINVAL;
	return 0;
}

/* A call that changes VMA flags, run by the agent (sp_agent_vma_call). */
struct flag_call {
	int what;		/* FC_* */
	void *addr;
	size_t len;
	int arg;		/* advice, mlock2's or mlockall's flags */
};

enum { FC_MADVISE, FC_MLOCK2, FC_MUNLOCK, FC_MLOCKALL, FC_MUNLOCKALL };

static int do_flag_call(void *arg)
{
	struct flag_call *c = arg;
	int r = -1;

	switch (c->what) {
	case FC_MADVISE:
		r = r_madvise(c->addr, c->len, c->arg);
		break;
	case FC_MLOCK2:
		r = r_mlock2(c->addr, c->len, (unsigned)c->arg);
		break;
	case FC_MUNLOCK:
		r = r_munlock(c->addr, c->len);
		break;
	case FC_MLOCKALL:
		r = r_mlockall(c->arg);
		break;
	case FC_MUNLOCKALL:
		r = r_munlockall();
		break;
	}
	return r ? -errno : 0;
}

/* Run @c through the agent @a if there is one, else straight. */
static int flag_call(struct sp_agent *a, struct flag_call *c)
{
	int err;

	if (!a)
		err = do_flag_call(c);
	else
		err = sp_agent_vma_call(a, c->what == FC_MADVISE &&
					   c->arg == MADV_WIPEONFORK,
					c->addr, c->len, do_flag_call, c);
	return err ? fail(err) : 0;
}

SHIM_API int madvise(void *addr, size_t len, int advice)
{
	struct sp_agent *a;
	int err;

	real();
	if (sp_agent_internal())
		return r_madvise(addr, len, advice);
	switch (advice) {
	case MADV_MERGEABLE:
	case MADV_UNMERGEABLE:
		err = range_ok(addr, len);
		if (err)
			return fail(err);
		a = get_agent(advice == MADV_MERGEABLE);
		if (!a) {
			/* Not merging (unmergeable before any merge, or no
			 * agent possible): only the kernel's answer for
			 * holes, from a call that changes nothing. */
			return len ? msync(addr, len, 0) : 0;
		}
		err = advice == MADV_MERGEABLE ?
			sp_agent_register(a, addr, len) :
			sp_agent_unregister(a, addr, len);
		return err ? fail(err) : 0;
	case MADV_DONTNEED:
	case MADV_DONTNEED_LOCKED:
	case MADV_FREE:
		a = owner(addr, len);
		if (!a)
			break;
		err = range_ok(addr, len);
		if (!err)
			err = sp_agent_discard(a, addr, len);
		return err ? fail(err) : 0;
	case MADV_REMOVE:
		/* Anonymous memory has no backing to remove. */
		if (owner(addr, len))
			return fail(-EINVAL);
		break;
	case MADV_DONTFORK:
	case MADV_DOFORK:
	case MADV_DONTDUMP:
	case MADV_DODUMP:
	case MADV_WIPEONFORK:
	case MADV_KEEPONFORK: {
		struct flag_call c = { FC_MADVISE, addr, len, advice };

		a = owner(addr, len);
		if (!a)
			break;
		return flag_call(a, &c);
	}
	}
	return r_madvise(addr, len, advice);
}

/* mlock and friends: merging never touches locked memory (a new mapping
 * would be unlocked), so the agent must know which memory is locked. */
SHIM_API int mlock(const void *addr, size_t len)
{
	struct flag_call c = { FC_MLOCK2, (void *)addr, len, 0 };

	real();
	return flag_call(owner((void *)addr, len), &c);
}

SHIM_API int mlock2(const void *addr, size_t len, unsigned int flags)
{
	struct flag_call c = { FC_MLOCK2, (void *)addr, len, (int)flags };

	real();
	return flag_call(owner((void *)addr, len), &c);
}

SHIM_API int munlock(const void *addr, size_t len)
{
	struct flag_call c = { FC_MUNLOCK, (void *)addr, len, 0 };

	real();
	return flag_call(owner((void *)addr, len), &c);
}

SHIM_API int mlockall(int flags)
{
	struct flag_call c = { FC_MLOCKALL, NULL, 0, flags };

	real();
	return flag_call(sp_agent_internal() ? NULL : agent, &c);
}

SHIM_API int munlockall(void)
{
	struct flag_call c = { FC_MUNLOCKALL, NULL, 0, 0 };

	real();
	return flag_call(sp_agent_internal() ? NULL : agent, &c);
}

SHIM_API int prctl(int option, ...)
{
	unsigned long x2, x3, x4, x5;
	struct sp_agent *a;
	va_list ap;
	int err;

	va_start(ap, option);
	x2 = va_arg(ap, unsigned long);
	x3 = va_arg(ap, unsigned long);
	x4 = va_arg(ap, unsigned long);
	x5 = va_arg(ap, unsigned long);
	va_end(ap);
	real();
	if (sp_agent_internal() || (option != PR_SET_MEMORY_MERGE &&
				    option != PR_GET_MEMORY_MERGE))
		return r_prctl(option, x2, x3, x4, x5);
	if (option == PR_GET_MEMORY_MERGE) {
		if (x2 || x3 || x4 || x5)
			return fail(-EINVAL);
		a = get_agent(0);
		return a ? sp_agent_get_merge_any(a) : 0;
	}
	if (x3 || x4 || x5)
		return fail(-EINVAL);
	a = get_agent(x2 != 0);
	if (!a)
		return 0;	/* off and never on; or no agent (warned) */
	err = sp_agent_set_merge_any(a, x2 != 0);
	if (err)
		return fail(err);
	/* Across exec, as the kernel keeps MMF_VM_MERGE_ANY. */
	if (x2)
		setenv(MERGE_ANY_ENV, "1", 1);
	else
		unsetenv(MERGE_ANY_ENV);
	return 0;
}

SHIM_API int munmap(void *addr, size_t len)
{
	struct sp_agent *a;
	int err;

	real();
	a = owner(addr, len);
	if (!a)
		return r_munmap(addr, len);
	err = sp_agent_unmap(a, addr, len);
	return err ? fail(err) : 0;
}

SHIM_API void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
	struct sp_agent *a;
	void *new_addr = NULL;
	va_list ap;

	if (flags & MREMAP_FIXED) {
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	real();
	a = owner(old, oldlen ? oldlen : 1);
	if (!a && (flags & MREMAP_FIXED) && agent && !sp_agent_internal() &&
	    sp_agent_overlaps(agent, new_addr, newlen))
		a = agent;	/* moving over registered memory */
	if (!a)
		return r_mremap(old, oldlen, newlen, flags, new_addr);
	return sp_agent_remap(a, old, oldlen, newlen, flags, new_addr);
}

SHIM_API int mprotect(void *addr, size_t len, int prot)
{
	struct sp_agent *a;
	int err;

	real();
	a = owner(addr, len);
	if (!a)
		return r_mprotect(addr, len, prot);
	err = sp_agent_protect(a, addr, len, prot);
	return err ? fail(err) : 0;
}

SHIM_API void *mmap(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off)
{
	struct sp_agent *a = agent;

	real();
	if (!a || sp_agent_internal())
		return r_mmap(addr, len, prot, flags, fd, off);
	if ((flags & MAP_FIXED) && sp_agent_overlaps(a, addr, len))
		return sp_agent_map(a, addr, len, prot, flags, fd, off);
	if (!(flags & MAP_SHARED) && (flags & MAP_ANONYMOUS) &&
	    sp_agent_get_merge_any(a))
		return sp_agent_map(a, addr, len, prot, flags, fd, off);
	return r_mmap(addr, len, prot, flags, fd, off);
}

_Static_assert(sizeof(off_t) == 8, "64-bit off_t only");

SHIM_API void *mmap64(void *addr, size_t len, int prot, int flags, int fd,
		      off64_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

/* Merge-any inherited across exec. */
__attribute__((constructor)) static void shim_init(void)
{
	const char *v = getenv(MERGE_ANY_ENV);
	struct sp_agent *a;

	real();
	if (v && !strcmp(v, "1") && (a = get_agent(1)))
		sp_agent_set_merge_any(a, 1);
}
