/*
 * agent.c - the in-process agent: KSM's ksmd for the memory of this
 * process, over the Linux backend.
 *
 * A scanner thread calls sp_scan() every sleep_millisecs with a budget
 * of pages_to_scan pages (at full speed while sp_agent_merge_now() waits)
 * and runs the backend's upkeep after each pass.  It is the only thread
 * that holds pages: its stack is a mapping of our own allocator and it
 * blocks every signal but the synchronous ones, so it never touches a
 * page it has moved out, and no handler of the program runs on it.
 *
 * Locking (in this order):
 *   mem_lock   serialises scanning with the program's memory changes
 *              made through the agent (discard, unmap, remap, protect),
 *              registration, unmerging, and the backend's upkeep;
 *   the engine lock (taken inside the engine calls);
 *   lock       the scanner's control state (run, urgent, passes, stop);
 *              never held around an engine call.
 * Fork: our handlers are registered after the engine's, so fork's
 * prepare stage takes mem_lock and lock before the engine locks; the
 * child gets a backend of its own (lx_fork_child) and a new scanner.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "advisor.h"
#include "engine.h"
#include "mem/linux.h"

#define STACK_SIZE (1u << 20)
#define URGENT_BUDGET (1u << 16)

/* Work a program thread hands to the scanner: unmerging holds pages
 * (lx_unmerge.c), and only the scanner, whose stack and TLS are ours,
 * may hold pages; a program thread could hold its own stack or TLS and
 * wait for itself. */
struct agent_job {
	int (*fn)(struct sp_agent *a, void *arg);	/* under mem_lock */
	void *arg;
	int err;
	int done;
};

struct sp_agent {
	struct sp_linux *lx;
	struct sp_engine *e;
	struct sp_space *s;
	pthread_mutex_t mem_lock;	/* see the top of the file */
	int merge_any;			/* PR_SET_MEMORY_MERGE: every private
					 * anonymous VMA, now and future, is
					 * registered.  Written under
					 * mem_lock, read atomically */
	pthread_mutex_t lock;		/* protects the fields below */
	pthread_cond_t wake;		/* the scanner waits here */
	pthread_cond_t passed;		/* merge_now waits here */
	struct agent_job *job;		/* work for the scanner, or NULL */
	pthread_cond_t job_done;	/* job callers wait here */
	int run;			/* 0 stopped, 1 scanning */
	unsigned urgent;		/* merge_now callers waiting */
	uint64_t passes;		/* passes completed by the scanner */
	int kicked;			/* pages were registered since the
					 * scanner's last batch began */
	int stop;			/* the scanner must exit */
	int scanning;			/* a scanner thread exists */
	pthread_t thread;
	void *stack;			/* the scanner's stack (excluded) */
	char why[512];			/* why merging stopped, if it did */
	/* The daemon's side (scanner thread only, under mem_lock): */
	uint64_t knob_gen;		/* generation of knobs applied */
	uint64_t adv[SPK_COUNT];	/* advisor settings from the daemon */
	uint64_t pass_ns, pass_cpu;	/* when the current or last pass
					 * began: its first batch (advisor,
					 * pass_gap; scanner thread only) */
	int in_pass;			/* a pass has begun and not ended
					 * (scanner thread only) */
	uint64_t report_ns;		/* last report */
	uint64_t my_pages;		/* our ksm_rmap_items in that report */
	uint64_t domain_pages;		/* the domain's sum in the answer
					 * (0: no answer, we are alone);
					 * see scan_budget() */
	uint64_t flags_ns;		/* last VMA flags read (read_flags);
					 * under mem_lock */
};

/* The agent of this process, for the fork handlers.  agents_lock
 * protects it (and start/stop); taken before mem_lock. */
static pthread_mutex_t agents_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sp_agent *the_agent;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/* Nonzero on a thread running agent code: the scanner (always), a
 * program thread inside an sp_agent_* call or our fork handlers.  The
 * LD_PRELOAD shim passes such a thread's memory calls straight to libc
 * (the agent's own mmap/munmap must not come back into the agent). */
static __thread int in_agent __attribute__((tls_model("initial-exec")));

int sp_agent_internal(void)
{
	return in_agent;
}

static void mem_enter(struct sp_agent *a)
{
	in_agent++;
	pthread_mutex_lock(&a->mem_lock);
}

static void mem_leave(struct sp_agent *a)
{
	pthread_mutex_unlock(&a->mem_lock);
	in_agent--;
}

static uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Read every VMA's flags (lx_refresh_flags: /proc/self/smaps, a
 * page-table walk, ~5 ms per 512 MiB), and note when: the read after a
 * pass waits a second from the last read, whatever made it (see
 * refresh_flags).  Context: mem_lock. */
static void read_flags(struct sp_agent *a)
{
	lx_refresh_flags(a->lx);
	a->flags_ns = clock_ns(CLOCK_MONOTONIC);
}

/* Run @fn under mem_lock on the scanner thread and return its result;
 * inline if there is no scanner (or we are it).  Blocks until done. */
static int on_scanner(struct sp_agent *a, int (*fn)(struct sp_agent *, void *),
		      void *arg)
{
	struct agent_job j = { fn, arg, 0, 0 };

	pthread_mutex_lock(&a->lock);
	if (!a->scanning || a->stop || in_agent) {
		pthread_mutex_unlock(&a->lock);
		mem_enter(a);
		j.err = fn(a, arg);
		mem_leave(a);
		return j.err;
	}
	while (a->job)
		pthread_cond_wait(&a->job_done, &a->lock);
	a->job = &j;
	pthread_cond_broadcast(&a->wake);
	while (!j.done)
		pthread_cond_wait(&a->job_done, &a->lock);
	pthread_mutex_unlock(&a->lock);
	return j.err;
}

/* ---- merge-any (PR_SET_MEMORY_MERGE) ----------------------------------- */

#define MERGE_ANY_MAX ((uintptr_t)64 << 30)	/* largest VMA merge-any takes */

/* Whether a /proc/self/maps line names a VMA merge-any registers: private,
 * anonymous (no file; the heap and named anonymous memory included), not
 * the main stack (growing it must stay the kernel's business) nor a
 * special mapping.  The backend leaves out what it cannot merge anyway
 * (its own memory, VMAs with flags a merge would lose). */
static int anon_line(const char *l, uintptr_t *s, uintptr_t *e)
{
	unsigned long a, b, ino;
	char perms[8];
	int name = 0;

	if (sscanf(l, "%lx-%lx %7s %*s %*s %lu %n", &a, &b, perms, &ino,
		   &name) < 4 || perms[3] != 'p' || ino != 0)
		return 0;
	l += name;
	if (*l && *l != '\n' && strncmp(l, "[heap]", 6) &&
	    strncmp(l, "[anon:", 6))
		return 0;
	/* Reservations (PROT_NONE address space an allocator or a
	 * sanitizer holds for later, often tens of GiB) and sparse giants
	 * would cost the scanner a pagemap walk of all of them on every
	 * pass: left out (docs/design.md, Limits).  madvise still takes
	 * them. */
	if (!strncmp(perms, "---", 3) || b - a > MERGE_ANY_MAX)
		return 0;
	*s = a;
	*e = b;
	return 1;
}

/* Register every VMA anon_line() accepts.  Reads maps with read(2) into
 * a buffer of ours (no stdio, no malloc: the program's heap may be
 * registered).  Context: mem_lock held. */
static void register_all_anon(struct sp_agent *a)
{
	char buf[8192], line[512];
	size_t ll = 0;
	ssize_t r;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < r; i++) {
			uintptr_t s, e;

			if (ll < sizeof(line) - 1)
				line[ll++] = buf[i];
			if (buf[i] != '\n')
				continue;
			line[ll] = 0;
			ll = 0;
			if (anon_line(line, &s, &e))
				sp_register(a->e, a->s, s, e - s);
		}
	}
	close(fd);
}

/* sp_ranges() callback keeping only the first registered part it is
 * shown. */
struct first_part {
	uintptr_t s, e;
	int found;
};

static void take_first(void *arg, uintptr_t s, uintptr_t e)
{
	struct first_part *f = arg;

	if (!f->found) {
		f->s = s;
		f->e = e;
		f->found = 1;
	}
}

/* Unregister (unmerging) every range.  Context: mem_lock held. */
static int unregister_all(struct sp_agent *a)
{
	uintptr_t from = 0, top = (uintptr_t)1 << 47;
	int err = 0;

	while (!err && from < top) {
		struct first_part f = { 0, 0, 0 };

		sp_ranges(a->e, a->s, from, top - from, take_first, &f);
		if (!f.found)
			break;
		err = sp_unregister(a->e, a->s, f.s, f.e - f.s);
		if (err == -ENOMEM)	/* a hole appeared: the rest went */
			err = 0;
		from = f.e;
	}
	return err;
}

static int job_merge_any(struct sp_agent *a, void *arg)
{
	int on = *(int *)arg, err = 0;

	if (on && !a->merge_any) {
		__atomic_store_n(&a->merge_any, 1, __ATOMIC_RELAXED);
		read_flags(a);
		register_all_anon(a);
	} else if (!on && a->merge_any) {
		err = unregister_all(a);
		if (!err)
			__atomic_store_n(&a->merge_any, 0, __ATOMIC_RELAXED);
	}
	return err;
}

int sp_agent_set_merge_any(struct sp_agent *a, int on)
{
	on = !!on;
	return on_scanner(a, job_merge_any, &on);
}

int sp_agent_get_merge_any(struct sp_agent *a)
{
	/* Read without mem_lock: the shim asks on every mmap. */
	return __atomic_load_n(&a->merge_any, __ATOMIC_RELAXED);
}

int sp_agent_overlaps(struct sp_agent *a, const void *addr, size_t len)
{
	struct first_part f = { 0, 0, 0 };

	if (!len)
		return 0;
	if ((uintptr_t)addr + len < (uintptr_t)addr)
		len = -(uintptr_t)addr;
	sp_ranges(a->e, a->s, (uintptr_t)addr & ~(uintptr_t)(LX_PS - 1),
		  len + ((uintptr_t)addr & (LX_PS - 1)), take_first, &f);
	return f.found;
}

/* ---- the scanner ------------------------------------------------------- */

static void timed_wait(pthread_cond_t *c, pthread_mutex_t *m, uint64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(c, m, &ts);
}

/* After a pass, at most once a second: re-read the VMA flags, so that a
 * change the shim did not see (a raw syscall) counts within a second.
 * The second runs from the last read of any kind (read_flags): a
 * registration reads them too, and on the headline workload the first
 * pass ended 50-100 ms after the program's madvise and read them again
 * for nothing.  Context: mem_lock. */
static void refresh_flags(struct sp_agent *a)
{
	if (clock_ns(CLOCK_MONOTONIC) - a->flags_ns >= 1000000000u)
		read_flags(a);
}

/*
 * The pages to scan before each sleep: pages_to_scan @pts, or this
 * process's share of it (sp_scan_share) in a domain of several.  Kernel
 * KSM has one ksmd for every process, so pages_to_scan is what the
 * machine scans per sleep; with an agent per process each scanning
 * @pts, N processes scanned N times that, and the CPU with it.  Shared
 * only where the knob sets the rate: at sleep_millisecs 0 each agent
 * scans as fast as it can anyway (the shares would only shorten its
 * batches), and the advisor sets each agent's rate from its own passes.
 * Scanner thread only.
 */
static uint64_t scan_budget(const struct sp_agent *a, uint64_t pts,
			    uint64_t sleep_ms)
{
	if (!sleep_ms || a->adv[SPK_ADVISOR_MODE] == 1)
		return pts;
	return sp_scan_share(pts, a->my_pages, a->domain_pages);
}

/* The counters samepaged sums and `samepage stat --pid` shows.  The
 * metadata is the engine's and the backend's (the shared-store
 * reference counts, the maps of its store pages). */
static void fill_report(struct sp_agent *a, struct spp_report *r)
{
	struct sp_stats g;
	struct sp_space_stats p;
	uint64_t be_bytes, global;

	pthread_mutex_lock(&a->e->lock);
	be_bytes = a->lx->mem_bytes;
	global = lx_client_pages(a->lx);
	pthread_mutex_unlock(&a->e->lock);
	sp_stats_get(a->e, &g);
	sp_space_stats_get(a->e, a->s, &p);
	memset(r, 0, sizeof(*r));
	r->pid = (uint32_t)getpid();
	r->v[SPS_PAGES_SHARED] = (int64_t)g.pages_shared;
	r->v[SPS_PAGES_SHARING] = (int64_t)g.pages_sharing;
	r->v[SPS_PAGES_UNSHARED] = (int64_t)g.pages_unshared;
	r->v[SPS_PAGES_VOLATILE] = (int64_t)g.pages_volatile;
	r->v[SPS_PAGES_SCANNED] = (int64_t)g.pages_scanned;
	r->v[SPS_PAGES_SKIPPED] = (int64_t)g.pages_skipped;
	r->v[SPS_FULL_SCANS] = (int64_t)g.full_scans;
	r->v[SPS_GENERAL_PROFIT] = g.general_profit - (int64_t)be_bytes;
	r->v[SPS_KSM_ZERO_PAGES] = (int64_t)g.ksm_zero_pages;
	r->v[SPS_STABLE_NODE_CHAINS] = (int64_t)g.stable_node_chains;
	r->v[SPS_STABLE_NODE_DUPS] = (int64_t)g.stable_node_dups;
	r->v[SPS_KSM_RMAP_ITEMS] = (int64_t)p.rmap_items;
	r->v[SPS_KSM_MERGING_PAGES] = (int64_t)p.merging_pages;
	r->v[SPS_KSM_PROCESS_PROFIT] = p.process_profit;
	r->v[SPS_KSM_MERGE_ANY] = __atomic_load_n(&a->merge_any, __ATOMIC_RELAXED);
	r->v[SPS_SHARED_GLOBAL] = (int64_t)global;
	r->v[SPS_ZERO_MERGED] = (int64_t)p.zero_merged;
	r->v[SPS_META_BYTES] = (int64_t)(g.meta_bytes + be_bytes);
	r->v[SPS_CPU_NS] = (int64_t)clock_ns(CLOCK_THREAD_CPUTIME_ID);
	{
		uint64_t pts = 0, sleep_ms = 0;

		sp_knob_get(a->e, SP_KNOB_PAGES_TO_SCAN, &pts);
		sp_knob_get(a->e, SP_KNOB_SLEEP_MILLISECS, &sleep_ms);
		r->v[SPS_PAGES_TO_SCAN] = (int64_t)pts;
		r->v[SPS_SCAN_SHARE] = (int64_t)scan_budget(a, pts, sleep_ms);
	}
}

/* Apply knobs set with `samepage set` (generation 0: never set, the
 * process keeps its own).  Scanner thread, under mem_lock. */
static void apply_knobs(struct sp_agent *a, const struct spp_knobs *k)
{
	static const struct { int spk; enum sp_knob sk; } map[] = {
		{ SPK_PAGES_TO_SCAN, SP_KNOB_PAGES_TO_SCAN },
		{ SPK_SLEEP_MILLISECS, SP_KNOB_SLEEP_MILLISECS },
		{ SPK_MAX_PAGE_SHARING, SP_KNOB_MAX_PAGE_SHARING },
		{ SPK_USE_ZERO_PAGES, SP_KNOB_USE_ZERO_PAGES },
		{ SPK_SMART_SCAN, SP_KNOB_SMART_SCAN },
	};

	if (!k->generation || k->generation == a->knob_gen)
		return;
	a->knob_gen = k->generation;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		sp_knob_set(a->e, map[i].sk, k->v[map[i].spk]);	/* EBUSY: kept */
	memcpy(a->adv, k->v, sizeof(a->adv));
	if (k->v[SPK_RUN] == 2) {
		pthread_mutex_lock(&a->lock);
		a->run = 0;
		pthread_mutex_unlock(&a->lock);
		sp_unmerge_all(a->e);
		lx_maintain(a->lx);
	} else {
		pthread_mutex_lock(&a->lock);
		a->run = (int)k->v[SPK_RUN];
		pthread_mutex_unlock(&a->lock);
	}
}

/* Report to samepaged (at most 4 times a second) and take its knobs.
 * Scanner thread, under mem_lock. */
static void daemon_tick(struct sp_agent *a, int force)
{
	struct spp_report r;
	struct spp_knobs k;
	uint64_t now = clock_ns(CLOCK_MONOTONIC);

	if (!a->lx->cl.path[0] || (!force && now - a->report_ns < 250000000u))
		return;
	a->report_ns = now;
	fill_report(a, &r);
	if (lx_client_report(a->lx, &r, &k)) {
		a->my_pages = (uint64_t)r.v[SPS_KSM_RMAP_ITEMS];
		a->domain_pages = k.scan_pages;
		apply_knobs(a, &k);
	} else {
		a->domain_pages = 0;	/* no domain to share with */
	}
}

/*
 * The advisor (advisor_mode scan-time, as KSM's since 6.8): after each
 * pass, scale pages_to_scan so that the next pass takes the target time,
 * but no more than advisor_max_cpu percent of a CPU, within the min/max.
 */
static void advise(struct sp_agent *a)
{
	uint64_t now = clock_ns(CLOCK_MONOTONIC);
	uint64_t cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID), pts;

	if (a->adv[SPK_ADVISOR_MODE] == 1 && a->pass_ns && now > a->pass_ns &&
	    !sp_knob_get(a->e, SP_KNOB_PAGES_TO_SCAN, &pts)) {
		struct sp_advice in = {
			.pages_to_scan = pts,
			.wall_s = (double)(now - a->pass_ns) / 1e9,
			.cpu_s = (double)(cpu - a->pass_cpu) / 1e9,
			.target_s = a->adv[SPK_ADVISOR_TARGET_SCAN_TIME],
			.max_cpu = a->adv[SPK_ADVISOR_MAX_CPU],
			.min_pages = a->adv[SPK_ADVISOR_MIN_PAGES_TO_SCAN],
			.max_pages = a->adv[SPK_ADVISOR_MAX_PAGES_TO_SCAN],
		};

		sp_knob_set(a->e, SP_KNOB_PAGES_TO_SCAN, sp_advise_pages(&in));
	}
}

/*
 * After a pass that found nothing registered: wait for a registration
 * (sp_agent_register kicks us), a job, merge_now or stop, polling every
 * SP_MIN_PASS_MS for what registers without a call (PR_SET_MEMORY_MERGE's
 * new mappings, register_all_anon) and for the daemon's knobs.  As ksmd
 * sleeps until the first mm enters, the first pass thus begins when the
 * first range is registered, not up to SP_MIN_PASS_MS later, and sleep_ms
 * does not apply: no page was looked at.
 * Context: a->lock held (released while waiting).
 */
static void idle_wait(struct sp_agent *a)
{
	if (!a->kicked && !a->stop && !a->job && !a->urgent)
		timed_wait(&a->wake, &a->lock, SP_MIN_PASS_MS);
}

/*
 * After a pass that began at @begun: wait until SP_MIN_PASS_MS after that
 * before the next pass begins (a job or stop ends the wait).  A page is
 * thus looked at most every SP_MIN_PASS_MS, however fast the scan: content
 * rewritten faster than that never shows the same checksum twice, so it
 * is volatile, never uploaded nor merged (KSM's rule, whose period is
 * otherwise the pass time: at full speed a small region passes every
 * millisecond, and memory rewritten every 10 ms would merge and break
 * again and again).  It also keeps an idle process's scanner at sleep 0
 * from spinning.  The advisor's next pass starts after the wait.
 * Context: a->lock held (released while waiting).
 */
static void pass_gap(struct sp_agent *a, uint64_t begun)
{
	uint64_t now = clock_ns(CLOCK_MONOTONIC);
	uint64_t until = begun + SP_MIN_PASS_MS * 1000000u;

	while (now < until && !a->stop && !a->job) {
		timed_wait(&a->wake, &a->lock,
			   (unsigned)((until - now) / 1000000u) + 1);
		now = clock_ns(CLOCK_MONOTONIC);
	}
}

/* Whether no page of this process is registered.  Under mem_lock. */
static int nothing_registered(struct sp_agent *a)
{
	struct sp_space_stats st;

	sp_space_stats_get(a->e, a->s, &st);
	return st.registered_pages == 0;
}

static void *scanner(void *arg)
{
	struct sp_agent *a = arg;
	sigset_t set;

	/* Only faults reach us: a program's handler never runs here. */
	sigfillset(&set);
	sigdelset(&set, SIGSEGV);
	sigdelset(&set, SIGBUS);
	sigdelset(&set, SIGFPE);
	sigdelset(&set, SIGILL);
	pthread_sigmask(SIG_SETMASK, &set, NULL);
	in_agent = 1;
	/* Operators and bench/ find the merger's CPU by this name
	 * (/proc/PID/task/TID/comm, top -H), as ksmd's is found by its. */
	pthread_setname_np(pthread_self(), "samepage");

	pthread_mutex_lock(&a->lock);
	while (!a->stop) {
		uint64_t budget, sleep_ms, begun;
		int urgent, r, idle = 0;

		if (a->job) {
			struct agent_job *j = a->job;

			pthread_mutex_unlock(&a->lock);
			pthread_mutex_lock(&a->mem_lock);
			j->err = j->fn(a, j->arg);
			pthread_mutex_unlock(&a->mem_lock);
			pthread_mutex_lock(&a->lock);
			j->done = 1;
			a->job = NULL;
			pthread_cond_broadcast(&a->job_done);
			continue;
		}
		if (a->run != 1 && !a->urgent) {
			if (!a->lx->cl.path[0]) {
				pthread_cond_wait(&a->wake, &a->lock);
				continue;
			}
			/* Stopped, but the daemon may start us again. */
			timed_wait(&a->wake, &a->lock, 250);
			if (a->stop || a->job)
				continue;
			pthread_mutex_unlock(&a->lock);
			mem_enter(a);
			daemon_tick(a, 0);
			mem_leave(a);
			pthread_mutex_lock(&a->lock);
			continue;
		}
		urgent = a->urgent > 0;
		a->kicked = 0;
		pthread_mutex_unlock(&a->lock);

		sp_knob_get(a->e, SP_KNOB_PAGES_TO_SCAN, &budget);
		sp_knob_get(a->e, SP_KNOB_SLEEP_MILLISECS, &sleep_ms);
		budget = urgent ? URGENT_BUDGET
				: scan_budget(a, budget, sleep_ms);
		mem_enter(a);
		/* Still wanted?  run=2 (unmerge, stop) may have run while
		 * we waited for mem_lock: a window now would merge again
		 * what it just unmerged. */
		pthread_mutex_lock(&a->lock);
		r = a->stop || (a->run != 1 && !a->urgent);
		pthread_mutex_unlock(&a->lock);
		if (r) {
			mem_leave(a);
			pthread_mutex_lock(&a->lock);
			continue;
		}
		if (!a->in_pass) {
			/* This batch begins a pass: time it from here, not
			 * from the end of the last gap (the scanner may have
			 * been stopped or busy with jobs since). */
			a->in_pass = 1;
			a->pass_ns = clock_ns(CLOCK_MONOTONIC);
			a->pass_cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
		}
		r = sp_scan(a->e, (unsigned)budget);
		begun = a->pass_ns;
		if (r == 0) {
			a->in_pass = 0;
			lx_maintain(a->lx);
			refresh_flags(a);
			if (a->merge_any)
				register_all_anon(a);
			advise(a);
			idle = nothing_registered(a);
		}
		daemon_tick(a, 0);
		mem_leave(a);

		pthread_mutex_lock(&a->lock);
		if (r == 0) {
			a->passes++;
			pthread_cond_broadcast(&a->passed);
			if (idle)
				idle_wait(a);
			else
				pass_gap(a, begun);
		}
		if (!idle && !a->urgent && !a->stop && !a->job && sleep_ms)
			timed_wait(&a->wake, &a->lock, sleep_ms);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

static int scanner_start(struct sp_agent *a)
{
	pthread_attr_t attr;
	int err;

	if (!a->stack) {
		a->stack = lx_map(STACK_SIZE);
		if (!a->stack)
			return -ENOMEM;
		/* A guard page at the bottom. */
		mprotect(a->stack, LX_PS, PROT_NONE);
	}
	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, a->stack, STACK_SIZE);
	a->stop = 0;
	err = -pthread_create(&a->thread, &attr, scanner, a);
	pthread_attr_destroy(&attr);
	a->scanning = !err;
	return err;
}

static void scanner_stop(struct sp_agent *a)
{
	if (!a->scanning)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = 1;
	pthread_cond_broadcast(&a->wake);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	a->scanning = 0;
}

/* ---- fork ------------------------------------------------------------- */

static void fork_prepare(void)
{
	in_agent++;
	pthread_mutex_lock(&agents_lock);
	if (the_agent) {
		pthread_mutex_lock(&the_agent->mem_lock);
		pthread_mutex_lock(&the_agent->lock);
	}
}

static void fork_parent(void)
{
	if (the_agent) {
		lx_fork_parent(the_agent->lx);
		pthread_mutex_unlock(&the_agent->lock);
		pthread_mutex_unlock(&the_agent->mem_lock);
	}
	pthread_mutex_unlock(&agents_lock);
	in_agent--;
}

/* A DONTFORK range, absent in the child: as if unmapped. */
static void forget_gone(void *arg, uintptr_t start, uintptr_t end)
{
	struct sp_agent *a = arg;

	lx_smap_del(a->lx, start, end);
	sp_forget(a->e, a->s, start, end - start);
}

static void fork_child(void)
{
	struct sp_agent *a = the_agent;
	int err;

	pthread_mutex_init(&agents_lock, NULL);
	lx_alloc_child();
	if (!a) {
		in_agent--;
		return;
	}
	pthread_mutex_init(&a->mem_lock, NULL);
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->wake, NULL);
	pthread_cond_init(&a->passed, NULL);
	pthread_cond_init(&a->job_done, NULL);
	a->job = NULL;		/* its caller did not come with us */
	a->scanning = 0;
	a->urgent = 0;
	/* Our own userfaultfd and store; the scanner thread did not come
	 * with us. */
	err = lx_fork_child(a->lx, a->why, sizeof(a->why));
	lx_fork_child_flags(a->lx, forget_gone, a);
	if (!err)
		scanner_start(a);
	else
		a->run = 0;
	in_agent--;
}

static void fork_setup(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- life ------------------------------------------------------------- */

static int agent_start(const struct sp_agent_config *cfg,
		       struct sp_agent **out, char *why, size_t whylen)
{
	struct sp_engine_config ec = { .ops = &lx_ops,
				       .alloc = &lx_allocator };
	struct sp_agent *a;
	char dummy[8];
	int err;

	if (!why) {
		why = dummy;
		whylen = sizeof(dummy);
	}
	why[0] = 0;
	/* Refuse before allocating anything where merging cannot run. */
	err = lx_check(why, whylen);
	if (err)
		return err;
	pthread_mutex_lock(&agents_lock);
	if (the_agent) {
		pthread_mutex_unlock(&agents_lock);
		snprintf(why, whylen, "an agent already runs in this process");
		return -EBUSY;
	}
	a = lx_allocator.alloc(NULL, sizeof(*a));
	if (!a) {
		pthread_mutex_unlock(&agents_lock);
		return -ENOMEM;
	}
	err = lx_new(&a->lx, why, whylen);
	if (err)
		goto out_free;
	ec.be = a->lx;
	/* The engine first: its fork handlers must be registered before
	 * ours, so that ours take mem_lock before the engine lock. */
	err = sp_engine_new(&ec, &a->e);
	if (err)
		goto out_lx;
	err = sp_space_add(a->e, a->lx, &a->s);
	if (err)
		goto out_engine;
	pthread_once(&fork_once, fork_setup);
	pthread_mutex_init(&a->mem_lock, NULL);
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->wake, NULL);
	pthread_cond_init(&a->passed, NULL);
	pthread_cond_init(&a->job_done, NULL);
	a->job = NULL;
	a->run = cfg ? cfg->run : 1;
	err = scanner_start(a);
	if (err)
		goto out_engine;
	the_agent = a;
	pthread_mutex_unlock(&agents_lock);
	*out = a;
	return 0;

out_engine:
	sp_engine_free(a->e);
out_lx:
	lx_free(a->lx);
out_free:
	lx_allocator.free(NULL, a, sizeof(*a));
	pthread_mutex_unlock(&agents_lock);
	return err;
}

int sp_agent_start(const struct sp_agent_config *cfg, struct sp_agent **out,
		   char *why, size_t whylen)
{
	int err;

	in_agent++;
	err = agent_start(cfg, out, why, whylen);
	in_agent--;
	return err;
}

void sp_agent_stop(struct sp_agent *a)
{
	if (!a)
		return;
	in_agent++;
	pthread_mutex_lock(&agents_lock);
	scanner_stop(a);
	if (the_agent == a)
		the_agent = NULL;
	pthread_mutex_unlock(&agents_lock);
	mem_enter(a);
	lx_maintain(a->lx);
	mem_leave(a);
	/* Engine metadata goes; merged pages keep their mappings (and
	 * through them their stable pages). */
	sp_engine_free(a->e);
	lx_free(a->lx);
	if (a->stack)
		lx_unmap(a->stack, STACK_SIZE);
	pthread_mutex_destroy(&a->mem_lock);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->wake);
	pthread_cond_destroy(&a->passed);
	pthread_cond_destroy(&a->job_done);
	lx_allocator.free(NULL, a, sizeof(*a));
	in_agent--;
}

struct sp_engine *sp_agent_engine(struct sp_agent *a)
{
	return a->e;
}

struct sp_space *sp_agent_space(struct sp_agent *a)
{
	return a->s;
}

/* ---- control ---------------------------------------------------------- */

int sp_agent_merge_now(struct sp_agent *a, unsigned timeout_ms)
{
	struct timespec until;
	uint64_t target;
	int err = 0, done;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&a->lock);
	if (!a->scanning) {
		pthread_mutex_unlock(&a->lock);
		return -EPERM;
	}
	target = a->passes + 3;
	a->urgent++;
	pthread_cond_broadcast(&a->wake);
	while (a->passes < target && !err) {
		if (timeout_ms)
			err = pthread_cond_timedwait(&a->passed, &a->lock, &until);
		else
			pthread_cond_wait(&a->passed, &a->lock);
	}
	a->urgent--;
	done = a->passes >= target;
	pthread_mutex_unlock(&a->lock);
	return done ? 0 : -ETIMEDOUT;
}

static int job_unmerge_all(struct sp_agent *a, void *arg)
{
	int err = sp_unmerge_all(a->e);

	(void)arg;
	lx_maintain(a->lx);
	return err;
}

int sp_agent_set_run(struct sp_agent *a, int run)
{
	int err = 0;

	if (run < 0 || run > 2)
		return -EINVAL;
	if (run == 2) {
		/* Stopped first: no scan window after the unmerge. */
		pthread_mutex_lock(&a->lock);
		a->run = 0;
		pthread_mutex_unlock(&a->lock);
		err = on_scanner(a, job_unmerge_all, NULL);
		run = 0;
	}
	pthread_mutex_lock(&a->lock);
	a->run = run;
	pthread_cond_broadcast(&a->wake);
	pthread_mutex_unlock(&a->lock);
	/* Stopped: wait out a scan batch in flight (it holds mem_lock; the
	 * next one sees run 0 once it has mem_lock and does nothing), so
	 * that no page changes mapping after we return. */
	if (!run && !in_agent) {
		mem_enter(a);
		mem_leave(a);
	}
	return err;
}

int sp_agent_get_run(struct sp_agent *a)
{
	int run;

	pthread_mutex_lock(&a->lock);
	run = a->run;
	pthread_mutex_unlock(&a->lock);
	return run;
}

/* ---- the program's memory calls ----------------------------------------- */

int sp_agent_register(struct sp_agent *a, void *addr, size_t len)
{
	int err;

	mem_enter(a);
	read_flags(a);
	err = sp_register(a->e, a->s, (uintptr_t)addr, len);
	mem_leave(a);
	/* An idle scanner begins its first pass now (idle_wait). */
	pthread_mutex_lock(&a->lock);
	a->kicked = 1;
	pthread_cond_broadcast(&a->wake);
	pthread_mutex_unlock(&a->lock);
	return err;
}

struct span {
	void *addr;
	size_t len;
};

static int job_unregister(struct sp_agent *a, void *arg)
{
	struct span *sp = arg;

	return sp_unregister(a->e, a->s, (uintptr_t)sp->addr, sp->len);
}

int sp_agent_unregister(struct sp_agent *a, void *addr, size_t len)
{
	struct span sp = { addr, len };

	return on_scanner(a, job_unregister, &sp);
}

static int check_range(void *addr, size_t len, uintptr_t *end)
{
	uintptr_t s = (uintptr_t)addr;

	if (s & (LX_PS - 1))
		return -EINVAL;
	len = (len + LX_PS - 1) & ~(size_t)(LX_PS - 1);
	if (s + len < s)
		return -EINVAL;
	*end = s + len;
	return 0;
}

/* Discard the store mapping [p, end) piece by piece, each piece with
 * the kept VMA flags it lies in. */
static int discard_pieces(struct sp_agent *a, uintptr_t p, uintptr_t end,
			  int prot)
{
	int err = 0;

	for (uintptr_t x = p; x < end && !err; x += LX_PS)
		err = lx_map_keep(a->lx, x, LX_PS, prot, -1, 0);
	return err;
}

int sp_agent_discard(struct sp_agent *a, void *addr, size_t len)
{
	uintptr_t end, p;
	int err;

	err = check_range(addr, len, &end);
	if (err || (uintptr_t)addr == end)
		return err;
	mem_enter(a);
	/* The memory first: merged parts become fresh anonymous memory
	 * (MADV_DONTNEED would bring their merged content back), the rest
	 * is discarded as usual.  Then the engine forgets their records. */
	for (p = (uintptr_t)addr; p < end && !err;) {
		uintptr_t vs, ve;
		int prot, ours, r = lx_query_store(a->lx, p, &vs, &ve, &prot,
						   &ours);

		if (r < 0 || (r == 1 && vs >= end)) {
			err = -ENOMEM;	/* a hole, as madvise says */
			break;
		}
		if (r == 1) {
			err = -ENOMEM;
			p = vs;
			continue;
		}
		if (ve > end)
			ve = end;
		if (ours) {
			/* Fresh anonymous memory, with the VMA's DONTFORK
			 * and DONTDUMP (lx_flags.c). */
			err = lx_map_keep(a->lx, p, ve - p, prot, -1, 0);
			if (err == -EINVAL)	/* flags differ: in pieces */
				err = discard_pieces(a, p, ve, prot);
			if (!err)
				lx_smap_del(a->lx, p, ve);
		} else if (madvise((void *)p, ve - p, MADV_DONTNEED)) {
			err = -errno;
		}
		p = ve;
	}
	sp_discard(a->e, a->s, (uintptr_t)addr, end - (uintptr_t)addr);
	mem_leave(a);
	return err;
}

int sp_agent_unmap(struct sp_agent *a, void *addr, size_t len)
{
	uintptr_t end;
	int err;

	err = check_range(addr, len, &end);
	if (err)
		return err;
	mem_enter(a);
	if (munmap(addr, len)) {
		err = -errno;
	} else {
		lx_smap_del(a->lx, (uintptr_t)addr, end);
		lx_flags_forget(a->lx, (uintptr_t)addr, end);
		sp_forget(a->e, a->s, (uintptr_t)addr, end - (uintptr_t)addr);
	}
	mem_leave(a);
	return err;
}

struct reg_parts {
	uintptr_t part[64][2];
	unsigned n;
};

static void collect_part(void *arg, uintptr_t s, uintptr_t e)
{
	struct reg_parts *p = arg;

	if (p->n < 64) {
		p->part[p->n][0] = s;
		p->part[p->n][1] = e;
		p->n++;
	}
}

struct remap {
	void *old, *new_addr, *ret;
	size_t oldlen, newlen;
	int flags, err;			/* err: mremap's errno, or 0 */
};

/* mremap, with the registration moved along.  Context: mem_lock held. */
static void remap_locked(struct sp_agent *a, struct remap *r)
{
	struct reg_parts parts = { .n = 0 };
	uintptr_t o = (uintptr_t)r->old, oend = o + r->oldlen;

	sp_ranges(a->e, a->s, o, r->oldlen, collect_part, &parts);
	r->ret = mremap(r->old, r->oldlen, r->newlen, r->flags, r->new_addr);
	r->err = r->ret == MAP_FAILED ? errno : 0;
	if (r->ret != MAP_FAILED) {
		uintptr_t n = (uintptr_t)r->ret;

		sp_forget(a->e, a->s, o, r->oldlen);
		/* The registration moves with the mapping, as VM_MERGEABLE
		 * does; a registered tail extends into the grown part. */
		for (unsigned i = 0; i < parts.n; i++) {
			uintptr_t s = n + (parts.part[i][0] - o);
			uintptr_t e = n + (parts.part[i][1] - o);

			if (parts.part[i][1] == oend && r->newlen > r->oldlen)
				e = n + r->newlen;
			if (e > n + r->newlen)
				e = n + r->newlen;
			if (s < e)
				sp_register(a->e, a->s, s, e - s);
		}
		/* Store mappings may have moved, and VMA flags with them:
		 * ask the kernel. */
		lx_reconcile(a->lx);
		read_flags(a);
	}
}

/* Unmerge the old range, then remap it: the scanner's job (it holds
 * pages), with no pass in between to merge it again. */
static int job_remap_unmerged(struct sp_agent *a, void *arg)
{
	struct remap *r = arg;
	int err = sp_unmerge(a->e, a->s, (uintptr_t)r->old, r->oldlen);

	lx_maintain(a->lx);
	if (err)
		return err;
	remap_locked(a, r);
	return 0;
}

/* Whether a mapping of our stores (a merged run) lies in [p, p + len).
 * Context: mem_lock held. */
static int any_merged(struct sp_agent *a, void *p, size_t len)
{
	uintptr_t x = (uintptr_t)p, end = x + len;

	while (x < end) {
		uintptr_t vs, ve;
		int prot, ours, r = lx_query_store(a->lx, x, &vs, &ve, &prot,
						   &ours);

		if (r < 0 || vs >= end)
			return 0;
		if (ours)
			return 1;
		x = ve;
	}
	return 0;
}

/*
 * A merged run is a mapping of its own (a store memfd's), so a range
 * merged in part is several mappings, which mremap refuses (EFAULT: it
 * moves one mapping); and growing a store mapping would show the store's
 * next pages, not zeros.  Growth of a range holding merged runs, and a
 * move of one that fails so, therefore unmerge the range first: as
 * ordinary memory it is one mapping again, and it merges again in later
 * passes.  Other remaps (a realloc's, say) pay only a VMA query or two.
 * (A range the backend cannot rebuild, a limit of design.md, still gets
 * EFAULT.)
 */
void *sp_agent_remap(struct sp_agent *a, void *old, size_t oldlen,
		     size_t newlen, int flags, void *new_addr)
{
	struct remap r = { old, new_addr, MAP_FAILED, oldlen, newlen, flags,
			   0 };
	int merged, err;

	mem_enter(a);
	merged = any_merged(a, old, oldlen);
	if (!merged || newlen <= oldlen) {
		remap_locked(a, &r);
		if (r.ret != MAP_FAILED || r.err != EFAULT || !merged) {
			mem_leave(a);
			if (r.err)
				errno = r.err;
			return r.ret;
		}
	}
	mem_leave(a);
	err = on_scanner(a, job_remap_unmerged, &r);
	if (err) {
		errno = -err;
		return MAP_FAILED;
	}
	if (r.err)
		errno = r.err;
	return r.ret;
}

void *sp_agent_map(struct sp_agent *a, void *addr, size_t len, int prot,
		   int flags, int fd, off_t off)
{
	void *p;

	mem_enter(a);
	p = mmap(addr, len, prot, flags, fd, off);
	if (p != MAP_FAILED) {
		uintptr_t end = ((uintptr_t)p + len + LX_PS - 1) & ~(uintptr_t)(LX_PS - 1);

		/* Whatever was there is gone, as after munmap. */
		lx_smap_del(a->lx, (uintptr_t)p, end);
		lx_flags_forget(a->lx, (uintptr_t)p, end);
		sp_forget(a->e, a->s, (uintptr_t)p, end - (uintptr_t)p);
		if (a->merge_any && (flags & MAP_ANONYMOUS) &&
		    !(flags & MAP_SHARED))
			sp_register(a->e, a->s, (uintptr_t)p, end - (uintptr_t)p);
	}
	mem_leave(a);
	return p;
}

struct vma_call {
	void *addr;
	size_t len;
	int (*fn)(void *arg);
	void *arg;
};

static int job_vma_call(struct sp_agent *a, void *arg)
{
	struct vma_call *c = arg;
	int err = sp_unmerge(a->e, a->s, (uintptr_t)c->addr, c->len);

	if (!err)
		err = c->fn(c->arg);
	read_flags(a);
	return err;
}

int sp_agent_vma_call(struct sp_agent *a, int unmerge_first, void *addr,
		      size_t len, int (*fn)(void *arg), void *arg)
{
	struct vma_call c = { addr, len, fn, arg };
	int err;

	if (unmerge_first)	/* unmerging holds pages: the scanner's job */
		return on_scanner(a, job_vma_call, &c);
	mem_enter(a);
	err = fn(arg);
	read_flags(a);
	mem_leave(a);
	return err;
}

int sp_agent_protect(struct sp_agent *a, void *addr, size_t len, int prot)
{
	int err = 0;

	mem_enter(a);
	if (mprotect(addr, len, prot))
		err = -errno;
	mem_leave(a);
	return err;
}

void sp_agent_stats_get(struct sp_agent *a, struct sp_agent_stats *st)
{
	struct sp_linux *lx = a->lx;

	memset(st, 0, sizeof(*st));
	mem_enter(a);
	pthread_mutex_lock(&a->e->lock);
	st->moves = lx->moves;
	st->moves_refused = lx->moves_refused;
	st->rebuilt = lx->rebuilt;
	st->replaces = lx->replaces;
	st->punches = lx->punches;
	st->pending_release = lx->npending;
	st->vma_refusals = lx->vma_refusals;
	st->vmas = (uint64_t)lx->vma_est;
	st->vma_budget = (uint64_t)lx->vma_budget;
	st->store_bytes = (uint64_t)(lx->ra.top - lx->ra.nfree) * LX_PS;
	st->guard_faults = lx->guard_faults;
	st->slow_reads = lx->slow_reads;
	st->backend_bytes = lx->mem_bytes;
	st->held_waits = lx->held_waits;
	pthread_mutex_unlock(&a->e->lock);
	mem_leave(a);
	pthread_mutex_lock(&a->lock);
	st->passes = a->passes;
	pthread_mutex_unlock(&a->lock);
}

int sp_agent_check(char *why, size_t whylen)
{
	char dummy[8];

	if (!why) {
		why = dummy;
		whylen = sizeof(dummy);
	}
	why[0] = 0;
	return lx_check(why, whylen);
}
