/*
 * test_cross.c - merging across processes through samepaged, observed
 * only through the kernel's view (PFNs in /proc/PID/pagemap, Pss in
 * /proc/PID/smaps_rollup) and the programs' own bytes.
 *
 *   test_cross SAMEPAGE SAMEPAGED SCENARIO
 * SCENARIO:
 *   share      two unrelated programs with the same data (unique inside
 *              each) end on one frame per page; Pss of both drops
 *   late       a third program that starts once two have merged that
 *              data finds it in its first pass, as KSM finds stable
 *              pages at a first look (its next pass is a minute away);
 *              then a fourth does the same with two threads writing,
 *              and keeps every write
 *   grow       the daemon's directory grows under two processes that
 *              map it: they map the new one and still merge new data
 *   kill       SIGKILL of the daemon while writers run: the programs
 *              survive with every byte intact; a new daemon resumes
 *              merging (new data merges across them again)
 *   writers    three programs, two writer threads each, writing while
 *              merging runs: no write lost (each checks a shadow)
 *   malformed  garbage, truncated and oversized messages get an error;
 *              the daemon stays up and answers a proper request after
 *   control    `samepage stat` (kernel names, values matching the
 *              frames, --pid, --json) and `samepage set` (bad input
 *              refused with nothing changed; knobs reach the processes;
 *              the advisor; run 2 unmerges, run 1 merges again)
 *   reclaim    store pages outlive a forked-then-exited parent and a
 *              killed partner while mapped, and are freed after the last
 *              process exits
 *   domain     a system daemon merges root's and nobody's pages only
 *              when --domain joins the two uids
 * The children are this binary ("child SEED MIB WRITERS"), started with
 * `samepage run`, talking over pipes.  Polls with timeouts, no fixed
 * sleeps.  Needs root for PFNs (skips with 77 otherwise).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "procfs.h"

#define PS 4096u

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap(void)
{
	struct timespec ts = { 0, 20000000 };

	nanosleep(&ts, NULL);
}

#define FAIL(...)                                                            \
	do {                                                                 \
		fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);         \
		fprintf(stderr, __VA_ARGS__);                                \
		fprintf(stderr, "\n");                                       \
		exit(1);                                                     \
	} while (0)

/* ---- the child: a program that knows only the KSM API ------------------ */

static char *region;
static size_t npages;
static uint64_t *shadow;		/* last value written per page slot */
static pthread_mutex_t shadow_lock = PTHREAD_MUTEX_INITIALIZER;
static char *zeros;			/* "zeros": ZERO_PAGES written with 0 */
#define ZERO_PAGES 64
static atomic_int stop_writers;
static uint64_t seed;

/* Page @i of data set @set: the same in every process, distinct pages. */
static void fill_page(char *p, uint64_t set, size_t i)
{
	uint64_t x = set * 0x9e3779b97f4a7c15ull + i * 0xbf58476d1ce4e5b9ull + 1;

	for (size_t k = 0; k < PS / 8; k++) {
		x ^= x >> 31;
		x *= 0x94d049bb133111ebull;
		((uint64_t *)(void *)p)[k] = x + k;
	}
}

static void *writer(void *arg)
{
	uint64_t r = (uintptr_t)arg * 7919 + seed, n = 0;

	while (!atomic_load(&stop_writers)) {
		size_t i;

		r = r * 6364136223846793005ull + 1442695040888963407ull;
		/* Mostly the first half; one write in 64 anywhere, so
		 * merged pages of the second half are written too but
		 * stay put long enough to merge, even on a busy machine. */
		i = (size_t)(r >> 33) % (n % 64 ? npages / 2 : npages);
		if (!(n & 15)) {	/* ~100k writes/s: pages stay put
					 * long enough to merge */
			struct timespec ts = { 0, 100000 };

			nanosleep(&ts, NULL);
		}
		pthread_mutex_lock(&shadow_lock);
		n++;
		/* The first word of a page: its own write counter. */
		((volatile uint64_t *)(void *)(region + i * PS))[0] =
			shadow[i] = (r | 1) ^ n;
		pthread_mutex_unlock(&shadow_lock);
	}
	return NULL;
}

static int check(const char *base, size_t n, uint64_t set, int with_shadow)
{
	char page[PS];

	for (size_t i = 0; i < n; i++) {
		fill_page(page, set, i);
		if (with_shadow && shadow[i])
			memcpy(page, &shadow[i], 8);
		if (memcmp(base + i * PS, page, PS)) {
			fprintf(stderr, "child %d: page %zu differs\n",
				(int)getpid(), i);
			return 0;
		}
	}
	return 1;
}

static int child(int argc, char **argv)
{
	unsigned writers = argc > 4 ? (unsigned)atoi(argv[4]) : 0;
	char cmd[64], *second = NULL;
	pthread_t t[8];

	seed = strtoull(argv[2], NULL, 10);
	npages = (size_t)atoi(argv[3]) * 256;
	region = mmap(NULL, npages * PS, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	shadow = calloc(npages, 8);
	if (region == MAP_FAILED || !shadow)
		return 1;
	for (size_t i = 0; i < npages; i++)
		fill_page(region + i * PS, 1, i);
	if (madvise(region, npages * PS, MADV_MERGEABLE)) {
		perror("madvise");
		return 1;
	}
	for (unsigned k = 0; k < writers && k < 8; k++)
		pthread_create(&t[k], NULL, writer, (void *)(uintptr_t)k);
	printf("%p %zu\n", (void *)region, npages);
	fflush(stdout);
	while (fgets(cmd, sizeof(cmd), stdin)) {
		if (!strncmp(cmd, "check", 5)) {
			int ok;

			atomic_store(&stop_writers, 1);
			for (unsigned k = 0; k < writers && k < 8; k++)
				pthread_join(t[k], NULL);
			writers = 0;
			ok = check(region, npages, 1, 1) &&
			     (!second || check(second, npages, 2, 0));
			for (size_t i = 0; zeros && i < ZERO_PAGES * PS; i++)
				ok &= !zeros[i];
			printf("%s\n", ok ? "ok" : "bad");
		} else if (!strncmp(cmd, "second", 6)) {
			second = mmap(NULL, npages * PS, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (second == MAP_FAILED)
				return 1;
			for (size_t i = 0; i < npages; i++)
				fill_page(second + i * PS, 2, i);
			madvise(second, npages * PS, MADV_MERGEABLE);
			printf("%p\n", (void *)second);
		} else if (!strncmp(cmd, "zeros", 5)) {
			/* Zero-filled pages with private frames (written). */
			zeros = mmap(NULL, ZERO_PAGES * PS,
				     PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (zeros == MAP_FAILED)
				return 1;
			for (size_t i = 0; i < ZERO_PAGES; i++)
				*(volatile char *)(zeros + i * PS) = 0;
			madvise(zeros, ZERO_PAGES * PS, MADV_MERGEABLE);
			printf("%p\n", (void *)zeros);
		} else if (!strncmp(cmd, "fork", 4)) {
			/* Hand everything to a child and exit: the child
			 * holds the merged memory it inherited, the parent's
			 * references die with it. */
			pid_t c;

			fflush(stdout);
			c = fork();
			if (c < 0)
				return 1;
			if (c)
				_exit(0);
			printf("%d\n", (int)getpid());
		} else {
			break;
		}
		fflush(stdout);
	}
	return 0;
}

/* ---- the test's side ---------------------------------------------------- */

struct kid {
	pid_t pid;
	FILE *in, *out;
	uintptr_t addr, second;
	size_t n;
};

static const char *samepage_bin, *samepaged_bin, *self;
static char sockpath[108], dir[64];

/* 0: as ourselves; else the uid the kids of spawn() run as, through
 * setpriv with CAP_SYS_PTRACE kept (for userfaultfd: merging needs it
 * where vm.unprivileged_userfaultfd is 0). */
static unsigned kid_uid;

/* The content seed of the kids spawn() starts: equal seeds, equal data. */
static const char *kid_seed = "42";

/* Their pages_to_scan and sleep_millisecs. */
static const char *kid_pages = "4096", *kid_sleep = "1";

static void spawn(struct kid *k, unsigned mib, unsigned writers)
{
	int to[2], from[2];
	char mibs[16], ws[16];
	void *p;

	/* Close-on-exec: a later child must not hold this one's stdin. */
	if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC))
		FAIL("pipe");
	snprintf(mibs, sizeof(mibs), "%u", mib);
	snprintf(ws, sizeof(ws), "%u", writers);
	k->pid = fork();
	if (!k->pid) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]);
		close(from[0]);
		if (kid_uid) {
			char u[32], g[32];

			snprintf(u, sizeof(u), "--reuid=%u", kid_uid);
			snprintf(g, sizeof(g), "--regid=%u", kid_uid);
			execl("/usr/bin/setpriv", "setpriv", u, g,
			      "--clear-groups", "--inh-caps=+sys_ptrace",
			      "--ambient-caps=+sys_ptrace", samepage_bin, "run",
			      "--pages-to-scan", kid_pages, "--sleep-millisecs",
			      kid_sleep, "--", self, "child", kid_seed, mibs, ws,
			      (char *)NULL);
			_exit(127);
		}
		execl(samepage_bin, "samepage", "run", "--pages-to-scan",
		      kid_pages, "--sleep-millisecs", kid_sleep, "--", self,
		      "child", kid_seed, mibs, ws, (char *)NULL);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	k->in = fdopen(to[1], "w");
	k->out = fdopen(from[0], "r");
	{
		char line[128];

		if (!fgets(line, sizeof(line), k->out) ||
		    sscanf(line, "%p %zu", &p, &k->n) != 2)
			FAIL("child %d did not start", (int)k->pid);
	}
	k->addr = (uintptr_t)p;
}

static void say(struct kid *k, const char *cmd, char *ans, size_t len)
{
	fprintf(k->in, "%s\n", cmd);
	fflush(k->in);
	if (!fgets(ans, (int)len, k->out))
		FAIL("child %d: no answer to %s", (int)k->pid, cmd);
}

static void finish(struct kid *k)
{
	char ans[64];
	int st;

	say(k, "check", ans, sizeof(ans));
	if (strncmp(ans, "ok", 2))
		FAIL("child %d: memory not intact (%s)", (int)k->pid, ans);
	fclose(k->in);
	fclose(k->out);
	waitpid(k->pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		FAIL("child %d exited badly (%#x)", (int)k->pid, st);
}

static uint64_t pfn(pid_t pid, uintptr_t a)
{
	char path[64];
	uint64_t e = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	fd = open(path, O_RDONLY);
	if (fd < 0 || pread(fd, &e, 8, (off_t)(a / PS) * 8) != 8)
		e = 0;
	if (fd >= 0 && !(e >> 63)) {
		/* A merged page is mapped on first touch: read it through
		 * /proc/PID/mem (a read never copies it), then look again. */
		char mem[64], c;
		int m;

		snprintf(mem, sizeof(mem), "/proc/%d/mem", (int)pid);
		m = open(mem, O_RDONLY);
		if (m >= 0 && pread(m, &c, 1, (off_t)a) == 1 &&
		    pread(fd, &e, 8, (off_t)(a / PS) * 8) != 8)
			e = 0;
		if (m >= 0)
			close(m);
	}
	if (fd >= 0)
		close(fd);
	return (e >> 63) ? e & ((1ull << 55) - 1) : 0;
}

/* Pages at the same offset of [a, a+n) in both kids on one frame. */
static size_t same_frames(struct kid *x, uintptr_t xa, struct kid *y,
			  uintptr_t ya, size_t n)
{
	size_t same = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t p = pfn(x->pid, xa + i * PS);

		same += p && p == pfn(y->pid, ya + i * PS);
	}
	return same;
}

static long long pss_kb(pid_t pid)
{
	return proc_field(pid, "smaps_rollup", "Pss");
}

static pid_t daemons[8];
static unsigned ndaemons;

/* At exit, also after a FAIL: no daemon of ours outlives the test. */
static void kill_daemons(void)
{
	for (unsigned i = 0; i < ndaemons; i++)
		if (!kill(daemons[i], SIGKILL))
			waitpid(daemons[i], NULL, 0);
	unlink(sockpath);
	rmdir(dir);
}

static pid_t start_daemon(void)
{
	pid_t pid = fork();

	if (!pid) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);	/* keep the harness's pipe free */
		execl(samepaged_bin, "samepaged", "--socket", sockpath,
		      "--idle-exit", "10", (char *)NULL);
		_exit(127);
	}
	if (ndaemons < 8)
		daemons[ndaemons++] = pid;
	for (double t0 = now(); now() - t0 < 10; nap()) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);

		strcpy(sa.sun_path, sockpath);
		if (!connect(s, (struct sockaddr *)&sa, sizeof(sa))) {
			close(s);
			return pid;
		}
		close(s);
	}
	FAIL("samepaged did not start");
}

/* Wait until @want pages of the two ranges share frames. */
static size_t wait_shared(struct kid *x, uintptr_t xa, struct kid *y,
			  uintptr_t ya, size_t n, size_t want, double secs)
{
	size_t s = 0;

	for (double t0 = now(); now() - t0 < secs; nap()) {
		s = same_frames(x, xa, y, ya, n);
		if (s >= want)
			break;
	}
	return s;
}

static int scenario_share(void)
{
	struct kid a, b;
	long long before, after;
	size_t s;

	start_daemon();
	spawn(&a, 16, 0);
	spawn(&b, 16, 0);
	before = pss_kb(a.pid) + pss_kb(b.pid);
	s = wait_shared(&a, a.addr, &b, b.addr, a.n, a.n, 60);
	after = pss_kb(a.pid) + pss_kb(b.pid);
	printf("share: %zu of %zu pages on one frame; Pss %lld -> %lld kB\n", s,
	       a.n, before, after);
	if (s != a.n) {
		for (size_t i = 0; i < a.n; i++)
			if (pfn(a.pid, a.addr + i * PS) != pfn(b.pid, b.addr + i * PS))
				fprintf(stderr, "page %zu: %#" PRIx64 " %#" PRIx64 "\n", i,
					pfn(a.pid, a.addr + i * PS),
					pfn(b.pid, b.addr + i * PS));
		FAIL("only %zu of %zu pages shared a frame", s, a.n);
	}
	/* 2 x 16 MiB of which 16 MiB are now shared: Pss drops by ~16 MiB
	 * (8 MiB each side). */
	if (before - after < 12 * 1024)
		FAIL("Pss dropped by %lld kB only", before - after);
	finish(&a);
	finish(&b);
	return 0;
}

static long long wait_stat(pid_t pid, const char *name, long long lo,
			   long long hi, double secs);
static long long stat_of(pid_t pid, const char *name);

/* Start @c (16 MiB, @writers threads) with a scanner that does a whole
 * pass in one batch (pages_to_scan above the domain's pages) and then
 * sleeps a minute.  Return: when it started. */
static double spawn_one_pass(struct kid *c, unsigned writers)
{
	double t0 = now();

	kid_pages = "100000";
	kid_sleep = "60000";
	spawn(c, 16, writers);
	kid_pages = "4096";
	kid_sleep = "1";
	return t0;
}

/* A program that starts after two others merged the data it holds maps
 * the shared store's pages at its first look.  Its scanner does a whole
 * pass in one batch (pages_to_scan above the domain's pages) and then
 * sleeps a minute, so every page it merges within the 30 s below merged
 * in its first pass; before pages were looked for in the store at a
 * first look, none did. */
static int scenario_late(void)
{
	struct kid a, b, c;
	size_t s;
	double t0;

	start_daemon();
	spawn(&a, 16, 0);
	spawn(&b, 16, 0);
	s = wait_shared(&a, a.addr, &b, b.addr, a.n, a.n, 60);
	if (s != a.n)
		FAIL("only %zu of %zu pages merged before the late start", s,
		     a.n);
	t0 = spawn_one_pass(&c, 0);
	s = wait_shared(&a, a.addr, &c, c.addr, a.n, a.n, 30);
	printf("late: %zu of %zu pages of the late process on the others' "
	       "frames %.2f s after it started; full_scans %lld\n", s, a.n,
	       now() - t0, stat_of(c.pid, "full_scans"));
	if (s != a.n)
		FAIL("the late process merged %zu of %zu pages in its first "
		     "pass", s, a.n);
	finish(&c);
	/* The same with two threads writing (mostly the first half) while
	 * its one pass maps stored pages at their first look: whatever
	 * merged, every write must be there at the end (finish), those
	 * into merged pages included.  A write between a page's first
	 * look and its hold, which only phase 2's byte comparison stops,
	 * is too rare here to test that comparison (dropping it for named
	 * pages passed this run; test_differential catches it). */
	t0 = spawn_one_pass(&c, 2);
	s = wait_shared(&a, a.addr + a.n / 2 * PS, &c, c.addr + a.n / 2 * PS,
			a.n / 2, a.n / 4, 30);
	printf("late, writing: %zu of the %zu pages of its second half on "
	       "the others' frames %.2f s after it started; full_scans "
	       "%lld\n", s, a.n / 2, now() - t0,
	       stat_of(c.pid, "full_scans"));
	if (s < a.n / 4)
		FAIL("the late writing process merged %zu pages of its "
		     "second half in its first pass", s);
	sleep(1);		/* writes land in merged pages meanwhile */
	finish(&c);
	finish(&a);
	finish(&b);
	return 0;
}

/* Bytes of the daemon's directory that process @pid maps (0: none). */
static size_t dir_mapped(pid_t pid)
{
	char path[64], line[512];
	size_t len = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		uintptr_t lo, hi;

		if (strstr(line, "samepage-directory") &&
		    sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2)
			len += hi - lo;
	}
	fclose(f);
	return len;
}

/* The directory grows under processes that already map it: they map the
 * new one and keep merging (a process reading the retired table would
 * never see its partner's nominations). */
static int scenario_grow(void)
{
	struct kid a, b, c;
	char ans[64];
	uintptr_t sa, sb;
	size_t s, before;

	start_daemon();
	spawn(&a, 16, 0);
	spawn(&b, 16, 0);
	s = wait_shared(&a, a.addr, &b, b.addr, a.n, a.n, 60);
	before = dir_mapped(a.pid);
	if (s != a.n || !before)
		FAIL("no merging before growth (%zu, directory %zu bytes)", s,
		     before);
	/* 65,536 pages of other data, nominated: more than 3/4 of the
	 * first table's 65,536 entries. */
	kid_seed = "7";
	spawn(&c, 256, 0);
	kid_seed = "42";
	if (wait_stat(c.pid, "full_scans", 3, 1LL << 40, 60) < 3)
		FAIL("the big process did not scan");
	say(&a, "second", ans, sizeof(ans));
	sa = strtoull(ans, NULL, 16);
	say(&b, "second", ans, sizeof(ans));
	sb = strtoull(ans, NULL, 16);
	s = wait_shared(&a, sa, &b, sb, a.n, a.n, 60);
	printf("grow: directory %zu -> %zu bytes in a process; %zu of %zu "
	       "new pages shared\n", before, dir_mapped(a.pid), s, a.n);
	if (dir_mapped(a.pid) <= before)
		FAIL("the directory did not grow, or the process kept the old");
	if (s != a.n)
		FAIL("after growth only %zu of %zu pages merged", s, a.n);
	finish(&c);
	finish(&a);
	finish(&b);
	return 0;
}

static int scenario_kill(void)
{
	struct kid a, b;
	char ans[64];
	pid_t d = start_daemon();
	uintptr_t sa, sb;
	size_t s;

	spawn(&a, 16, 2);
	spawn(&b, 16, 2);
	/* Mid-run: some pages merged across, writers busy. */
	s = wait_shared(&a, a.addr, &b, b.addr, a.n, 64, 60);
	if (s < 64)
		FAIL("no merging before the kill (%zu)", s);
	kill(d, SIGKILL);
	waitpid(d, NULL, 0);
	printf("kill: daemon killed with %zu pages shared\n", s);
	/* Processes go on, and merge again through a new daemon. */
	start_daemon();
	say(&a, "second", ans, sizeof(ans));
	sa = strtoull(ans, NULL, 16);
	say(&b, "second", ans, sizeof(ans));
	sb = strtoull(ans, NULL, 16);
	s = wait_shared(&a, sa, &b, sb, a.n, a.n, 60);
	printf("kill: after restart %zu of %zu new pages shared\n", s, a.n);
	if (s != a.n)
		FAIL("a new daemon did not resume merging (%zu)", s);
	finish(&a);
	finish(&b);
	return 0;
}

static int scenario_writers(void)
{
	struct kid k[3];
	size_t s = 0;

	start_daemon();
	for (int i = 0; i < 3; i++)
		spawn(&k[i], 16, 2);
	for (double t0 = now(); now() - t0 < 8; nap()) {
		size_t x = same_frames(&k[0], k[0].addr, &k[2], k[2].addr,
				       k[0].n);

		s = x > s ? x : s;
	}
	printf("writers: up to %zu pages shared across processes while "
	       "writing\n", s);
	if (!s)
		FAIL("nothing merged across processes");
	for (int i = 0; i < 3; i++)
		finish(&k[i]);
	return 0;
}

static int scenario_malformed(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static uint8_t big[200000];
	uint8_t buf[70000];
	uint64_t r = 12345;
	int s, errs = 0;
	pid_t d = start_daemon();

	strcpy(sa.sun_path, sockpath);
	s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		FAIL("connect");
	for (int i = 0; i < 20000; i++) {
		size_t len;
		ssize_t n;

		r = r * 6364136223846793005ull + 1442695040888963407ull;
		len = (size_t)(r >> 40) % 96;
		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)(r >> (k % 56));
		if (len >= 8 && (i & 1)) {	/* a valid type, wrong count */
			uint32_t t = (uint32_t)(r >> 20) % 20, c = (uint32_t)r;

			memcpy(buf, &t, 4);
			memcpy(buf + 4, &c, 4);
		}
		if (i % 1000 == 999)
			len = sizeof(big);	/* oversized */
		if (send(s, len == sizeof(big) ? big : buf, len, 0) < 0 &&
		    errno != EMSGSIZE)
			FAIL("send: %s", strerror(errno));
		if (!len)
			continue;	/* nothing is queued for an empty send */
		n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
		for (double t0 = now(); n < 0 && errno == EAGAIN;) {
			if (now() - t0 > 10)
				FAIL("no answer to message %d", i);
			nap();
			n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
			if (kill(d, 0))
				FAIL("daemon died");
		}
		if (n <= 0)
			FAIL("daemon hung up on garbage (%zd)", n);
		errs++;
	}
	/* Still serving: a proper STAT from a new connection. */
	close(s);
	s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		FAIL("daemon gone after garbage");
	{
		uint32_t msg[3] = { 14 /* SPP_STAT */, 1, 0 };
		ssize_t n;

		send(s, msg, sizeof(msg), 0);
		n = recv(s, buf, sizeof(buf), 0);
		if (n < 8 || ((uint32_t *)(void *)buf)[0] != 15)
			FAIL("no STAT_R after garbage (%zd)", n);
	}
	printf("malformed: %d answers to garbage, daemon still serving\n", errs);
	kill(d, SIGTERM);
	waitpid(d, NULL, 0);
	return 0;
}

/* A daemon and two kids of 16 MiB with the same data, every page of
 * which ends on one frame (else the scenario fails). */
static void merged_pair(struct kid *a, struct kid *b)
{
	size_t s;

	start_daemon();
	spawn(a, 16, 0);
	spawn(b, 16, 0);
	s = wait_shared(a, a->addr, b, b->addr, a->n, a->n, 60);
	if (s != a->n)
		FAIL("only %zu of %zu pages shared", s, a->n);
}

/* ---- samepage stat / set ------------------------------------------------ */

/* Run `samepage ARGS` (as @uid if nonzero); its stdout into @out.
 * Return: its exit status. */
static int ctl_as(unsigned uid, const char *args, char *out, size_t len)
{
	char cmd[512];
	size_t n = 0;
	FILE *f;
	int st;

	if (uid)
		snprintf(cmd, sizeof(cmd), "setpriv --reuid=%u --regid=%u "
			 "--clear-groups %s %s 2>/dev/null", uid, uid,
			 samepage_bin, args);
	else
		snprintf(cmd, sizeof(cmd), "%s %s 2>/dev/null", samepage_bin,
			 args);
	f = popen(cmd, "r");
	if (!f)
		FAIL("popen %s", cmd);
	while (n + 1 < len && !feof(f) && !ferror(f))
		n += fread(out + n, 1, len - 1 - n, f);
	out[n] = 0;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int ctl(const char *args, char *out, size_t len)
{
	return ctl_as(0, args, out, len);
}

/* The value of line "NAME VALUE" in @text; -1 if there is none. */
static long long val(const char *text, const char *name)
{
	size_t l = strlen(name);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (!strncmp(p, name, l) && p[l] == ' ')
			return strtoll(p + l + 1, NULL, 10);
	return -1;
}

/* One counter of `samepage stat` (@pid 0: the domain's). */
static long long stat_of(pid_t pid, const char *name)
{
	static char out[8192];
	char args[64];

	if (pid)
		snprintf(args, sizeof(args), "stat --pid %d", (int)pid);
	else
		snprintf(args, sizeof(args), "stat");
	if (ctl(args, out, sizeof(out)))
		return -1;
	return val(out, name);
}

/* Poll until counter @name of @pid is in [lo, hi]; return its last value. */
static long long wait_stat(pid_t pid, const char *name, long long lo,
			   long long hi, double secs)
{
	long long v = -1;

	for (double t0 = now(); now() - t0 < secs; nap()) {
		v = stat_of(pid, name);
		if (v >= lo && v <= hi)
			break;
	}
	return v;
}

static void set_ok(const char *name, const char *value)
{
	char args[128], out[256];
	int r;

	snprintf(args, sizeof(args), "set %s %s", name, value);
	r = ctl(args, out, sizeof(out));
	if (r)
		FAIL("samepage %s: exit %d", args, r);
}

static void set_bad(const char *name, const char *value, int want)
{
	char args[128], out[256];
	int r;

	snprintf(args, sizeof(args), "set %s %s", name, value);
	r = ctl(args, out, sizeof(out));
	if (r != want)
		FAIL("samepage %s: exit %d, want %d", args, r, want);
}

static const char *const kernel_names[] = {
	"pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
	"pages_scanned", "pages_skipped", "full_scans", "general_profit",
	"ksm_zero_pages", "stable_node_chains", "stable_node_dups",
	"run", "pages_to_scan", "sleep_millisecs", "max_page_sharing",
	"use_zero_pages", "smart_scan", "advisor_mode",
	"advisor_target_scan_time", "advisor_max_cpu",
	"advisor_min_pages_to_scan", "advisor_max_pages_to_scan",
};

/* The knob lines of `samepage stat`, to compare before / after. */
static void knobs_of(char *out, size_t len)
{
	static char all[8192];
	size_t n = 0;

	if (ctl("stat", all, sizeof(all)))
		FAIL("samepage stat failed");
	out[0] = 0;
	for (size_t i = 11; i < sizeof(kernel_names) / sizeof(*kernel_names);
	     i++)
		n += (size_t)snprintf(out + n, len - n, "%s=%lld ",
				      kernel_names[i], val(all, kernel_names[i]));
}

/* pages_to_scan (333, set before) is the domain's, as it is the
 * machine's with one ksmd: each process scans its part of it, by the
 * pages it has to scan (two of 16 MiB and one of 48: 1/5, 1/5, 3/5),
 * and when one leaves, the others take its part. */
static void scan_shares(const struct kid *a, const struct kid *b)
{
	struct kid c;
	long long sa, sb, sc;

	spawn(&c, 48, 0);
	if ((sc = wait_stat(c.pid, "ksm_rmap_items", 12288, 12288, 30)) !=
	    12288)
		FAIL("shares: 48 MiB has %lld pages to scan", sc);
	sc = wait_stat(c.pid, "scan_share", 200, 200, 30);
	sa = wait_stat(a->pid, "scan_share", 67, 67, 30);
	sb = wait_stat(b->pid, "scan_share", 67, 67, 30);
	if (sa != 67 || sb != 67 || sc != 200)
		FAIL("shares: %lld, %lld and %lld pages (want 67, 67, 200)",
		     sa, sb, sc);
	if (stat_of(c.pid, "pages_to_scan") != 333)
		FAIL("shares: the knob itself changed");
	finish(&c);
	sa = wait_stat(a->pid, "scan_share", 167, 167, 30);
	sb = wait_stat(b->pid, "scan_share", 167, 167, 30);
	if (sa != 167 || sb != 167)
		FAIL("shares: once the third process left, %lld and %lld "
		     "pages (want 167 each)", sa, sb);
	printf("control: pages_to_scan 333 shared 67/67/200 among 16, 16 "
	       "and 48 MiB, then 167/167\n");
}

/* Zero-filled pages merged with use_zero_pages 0 show in zero_merged,
 * per process and for the domain, and in the counts KSM would give
 * them (one pages_shared per max_page_sharing, the rest pages_sharing),
 * not in ksm_zero_pages.  @a and its partner share a->n pages. */
static void zero_stat(struct kid *a)
{
	char out[8192], args[64];
	long long v;

	say(a, "zeros", out, sizeof(out));
	if ((v = wait_stat(a->pid, "zero_merged", ZERO_PAGES, ZERO_PAGES,
			   30)) != ZERO_PAGES)
		FAIL("zero_merged %lld, want %d", v, ZERO_PAGES);
	snprintf(args, sizeof(args), "stat --pid %d", (int)a->pid);
	if (ctl(args, out, sizeof(out)) ||
	    val(out, "ksm_merging_pages") != (long long)a->n + ZERO_PAGES ||
	    val(out, "ksm_zero_pages") != 0)
		FAIL("stat --pid %d with zero-filled pages:\n%s", (int)a->pid,
		     out);
	if ((v = wait_stat(0, "zero_merged", ZERO_PAGES, ZERO_PAGES, 30)) !=
		    ZERO_PAGES ||
	    stat_of(0, "pages_sharing") != (long long)a->n + ZERO_PAGES - 1)
		FAIL("stat: zero_merged %lld, pages_sharing %lld", v,
		     stat_of(0, "pages_sharing"));
	printf("control: %d zero-filled pages: zero_merged %d, pages_sharing "
	       "%lld\n", ZERO_PAGES, ZERO_PAGES, stat_of(0, "pages_sharing"));
}

/* Output, control and propagation: `samepage stat` shows the kernel's
 * names with values that match what pagemap shows; `samepage set`
 * refuses bad input without changing anything, and what it sets reaches
 * the processes (run 2 unmerges everything, run 1 merges again, the
 * advisor keeps pages_to_scan within its bounds). */
static int scenario_control(void)
{
	static char out[8192], before[2048], after[2048];
	struct kid a, b;
	long long v;
	size_t s = 0;

	merged_pair(&a, &b);
	/* One stable page shared by two processes: KSM counts it once in
	 * pages_shared and once in pages_sharing. */
	v = wait_stat(0, "pages_sharing", (long long)a.n, (long long)a.n, 30);
	if (v != (long long)a.n)
		FAIL("pages_sharing %lld, want %zu", v, a.n);
	if (ctl("stat", out, sizeof(out)))
		FAIL("samepage stat failed");
	for (size_t i = 0; i < sizeof(kernel_names) / sizeof(*kernel_names); i++)
		if (val(out, kernel_names[i]) < 0)
			FAIL("stat has no line '%s N':\n%s", kernel_names[i], out);
	if (val(out, "pages_shared") != (long long)a.n ||
	    val(out, "processes") != 2 ||
	    val(out, "general_profit") < (long long)a.n * PS / 2 ||
	    val(out, "shared_store_pages") != (long long)a.n)
		FAIL("stat does not match the frames:\n%s", out);
	printf("control: stat: pages_shared %lld pages_sharing %lld "
	       "general_profit %lld\n", val(out, "pages_shared"),
	       val(out, "pages_sharing"), val(out, "general_profit"));
	if (ctl("stat --json", out, sizeof(out)) || out[0] != '{' ||
	    !strstr(out, "\"pages_sharing\": ") || !strstr(out, "}\n"))
		FAIL("stat --json:\n%s", out);
	/* Per process, as /proc/PID/ksm_stat. */
	{
		char args[64];

		snprintf(args, sizeof(args), "stat --pid %d", (int)a.pid);
		if (ctl(args, out, sizeof(out)))
			FAIL("stat --pid failed");
		if (val(out, "ksm_merging_pages") != (long long)a.n ||
		    val(out, "ksm_rmap_items") < (long long)a.n ||
		    val(out, "ksm_mergeable") != 1 ||
		    val(out, "ksm_merge_any") != 0 ||
		    val(out, "ksm_process_profit") < 0 ||
		    val(out, "ksm_zero_pages") != 0 ||
		    val(out, "pages_to_scan") != 4096)
			FAIL("stat --pid %d:\n%s", (int)a.pid, out);
		snprintf(args, sizeof(args), "stat --pid %d --json", (int)a.pid);
		if (ctl(args, out, sizeof(out)) ||
		    !strstr(out, "\"ksm_merging_pages\": "))
			FAIL("stat --pid --json:\n%s", out);
		if (ctl("stat --pid 1", out, sizeof(out)) != 1)
			FAIL("stat --pid of a process not under samepage");
		if (ctl("stat --pid x", out, sizeof(out)) != 2 ||
		    ctl("stat --bogus", out, sizeof(out)) != 2)
			FAIL("bad stat arguments accepted");
	}
	/* Bad names and values: an error, nothing changed. */
	knobs_of(before, sizeof(before));
	set_bad("nosuch", "1", 2);
	set_bad("pages_to_scan", "x", 2);
	set_bad("pages_to_scan", "-1", 2);
	set_bad("pages_to_scan", "12abc", 2);
	set_bad("run", "3", 2);
	set_bad("advisor_mode", "fast", 2);
	set_bad("advisor_max_cpu", "101", 2);
	set_bad("max_page_sharing", "1", 2);
	/* KSM refuses a new max_page_sharing while stable pages exist. */
	set_bad("max_page_sharing", "5", 1);
	/* min above max */
	set_bad("advisor_min_pages_to_scan", "40000", 1);
	knobs_of(after, sizeof(after));
	if (strcmp(before, after))
		FAIL("a refused set changed knobs:\n%s\n%s", before, after);
	/* A knob reaches every process of the domain. */
	set_ok("pages_to_scan", "333");
	if (stat_of(0, "pages_to_scan") != 333)
		FAIL("stat does not show pages_to_scan 333");
	if ((v = wait_stat(a.pid, "pages_to_scan", 333, 333, 30)) != 333 ||
	    (v = wait_stat(b.pid, "pages_to_scan", 333, 333, 30)) != 333)
		FAIL("pages_to_scan 333 did not reach the processes (%lld)", v);
	scan_shares(&a, &b);
	/* The advisor: the rate it picks stays within its bounds, from
	 * either side. */
	set_ok("advisor_min_pages_to_scan", "50");
	set_ok("advisor_max_pages_to_scan", "200");
	set_ok("advisor_target_scan_time", "1");
	set_ok("advisor_mode", "scan-time");
	v = wait_stat(a.pid, "pages_to_scan", 50, 200, 30);
	if (v < 50 || v > 200)
		FAIL("advisor: pages_to_scan %lld, not within 50..200", v);
	printf("control: advisor, bounds 50..200: pages_to_scan %lld\n", v);
	set_ok("advisor_max_pages_to_scan", "30000");
	set_ok("advisor_min_pages_to_scan", "5000");
	v = wait_stat(a.pid, "pages_to_scan", 5000, 30000, 30);
	if (v < 5000 || v > 30000)
		FAIL("advisor: pages_to_scan %lld, not within 5000..30000", v);
	printf("control: advisor, bounds 5000..30000: pages_to_scan %lld\n", v);
	set_ok("advisor_mode", "none");
	/* run 2: every process unmerges; memory intact. */
	set_ok("run", "2");
	for (double t0 = now(); now() - t0 < 60; nap()) {
		s = same_frames(&a, a.addr, &b, b.addr, a.n);
		if (!s && stat_of(a.pid, "ksm_merging_pages") == 0 &&
		    stat_of(b.pid, "ksm_merging_pages") == 0)
			break;
	}
	if (s)
		FAIL("run 2: %zu pages still shared", s);
	if ((v = wait_stat(0, "pages_sharing", 0, 0, 30)) != 0)
		FAIL("run 2: pages_sharing %lld", v);
	/* Nothing maps the store any more: reclaim empties it. */
	if ((v = wait_stat(0, "shared_store_pages", 0, 0, 30)) != 0)
		FAIL("run 2: %lld store pages left", v);
	{
		char ans[64];

		say(&a, "check", ans, sizeof(ans));
		if (strncmp(ans, "ok", 2))
			FAIL("run 2: memory not intact");
	}
	printf("control: run 2 unmerged everything, store emptied\n");
	/* run 1: merging resumes. */
	set_ok("run", "1");
	s = wait_shared(&a, a.addr, &b, b.addr, a.n, a.n, 60);
	if (s != a.n)
		FAIL("run 1: only %zu of %zu pages shared again", s, a.n);
	printf("control: run 1 merged %zu pages again\n", s);
	zero_stat(&a);
	finish(&a);
	finish(&b);
	return 0;
}

/* Reclaim: stable pages live while any mapping can reach them (a forked
 * child that inherited them, after the parent exited; a process after
 * its partner was killed) and are freed once none can.  A page freed too
 * early would be reused for new content under the mappings still
 * holding it: the survivors' bytes are checked after new content has
 * gone into the store. */
static int scenario_reclaim(void)
{
	struct kid a, b, c;
	char ans[64];
	uintptr_t sa, sc;
	pid_t old;
	long long v;
	size_t s;

	merged_pair(&a, &b);
	/* a forks and exits: its child holds the pages now. */
	old = a.pid;
	say(&a, "fork", ans, sizeof(ans));
	a.pid = (pid_t)atoi(ans);
	waitpid(old, NULL, 0);
	/* b dies without a word. */
	kill(b.pid, SIGKILL);
	waitpid(b.pid, NULL, 0);
	fclose(b.in);
	fclose(b.out);
	/* New content goes into the store (reusing any slot freed). */
	spawn(&c, 16, 0);
	say(&a, "second", ans, sizeof(ans));
	sa = strtoull(ans, NULL, 16);
	say(&c, "second", ans, sizeof(ans));
	sc = strtoull(ans, NULL, 16);
	s = wait_shared(&a, sa, &c, sc, a.n, a.n, 60);
	if (s != a.n)
		FAIL("new content: only %zu of %zu pages shared", s, a.n);
	/* The first data set: a's child and c on one frame again. */
	s = wait_shared(&a, a.addr, &c, c.addr, a.n, a.n, 60);
	printf("reclaim: after fork+exit and a kill, %zu + %zu pages shared "
	       "by the survivors\n", a.n, s);
	if (s != a.n)
		FAIL("first set: only %zu of %zu pages shared", s, a.n);
	finish(&a);	/* both sets checked */
	finish(&c);
	/* Everyone gone: the store empties. */
	v = wait_stat(0, "shared_store_pages", 0, 0, 30);
	if (v != 0)
		FAIL("%lld store pages left after every process exited", v);
	printf("reclaim: store empty after the last process exited\n");
	return 0;
}

/* Trust domains: a system daemon keeps uids apart unless --domain joins
 * them.  Two programs with the same data, one as root and one as
 * nobody: they share frames only with the uids in one domain; apart,
 * neither can even see the other in `samepage stat`. */
static int scenario_domain(void)
{
	static char out[8192];
	struct kid a, b;
	size_t s;
	long long fa = -1, fb = -1;
	char args[64];

	if (access("/usr/bin/setpriv", X_OK)) {
		printf("SKIP: no setpriv to run a program as another uid\n");
		return 77;
	}
	/* nobody must reach the socket and run this binary */
	chmod(dir, 0755);
	for (int joined = 1; joined >= 0; joined--) {
		pid_t d = fork();

		if (!d) {
			int fd = open("/dev/null", O_WRONLY);

			dup2(fd, 1);
			if (joined)
				execl(samepaged_bin, "samepaged", "--system",
				      "--socket", sockpath, "--domain",
				      "0,65534", (char *)NULL);
			else
				execl(samepaged_bin, "samepaged", "--system",
				      "--socket", sockpath, (char *)NULL);
			_exit(127);
		}
		daemons[ndaemons++] = d;
		for (double t0 = now(); access(sockpath, F_OK); nap())
			if (now() - t0 > 10)
				FAIL("system daemon did not start");
		kid_uid = 0;
		spawn(&a, 16, 0);
		kid_uid = 65534;
		spawn(&b, 16, 0);
		kid_uid = 0;
		snprintf(args, sizeof(args), "stat --pid %d", (int)b.pid);
		if (joined) {
			s = wait_shared(&a, a.addr, &b, b.addr, a.n, a.n, 60);
			printf("domain: uids 0,65534 joined: %zu of %zu pages "
			       "shared\n", s, a.n);
			if (s != a.n)
				FAIL("one domain, yet only %zu shared", s);
			if (ctl(args, out, sizeof(out)))
				FAIL("root cannot see %d of its domain",
				     (int)b.pid);
		} else {
			/* Let both finish passes enough to have met if they
			 * could: four full scans each. */
			fa = wait_stat(a.pid, "full_scans", 4, 1ll << 60, 60);
			for (double t0 = now(); now() - t0 < 60; nap()) {
				fb = -1;
				snprintf(args, sizeof(args),
					 "stat --pid %d", (int)b.pid);
				if (!ctl_as(65534, args, out, sizeof(out)))
					fb = val(out, "full_scans");
				if (fb >= 4)
					break;
			}
			s = same_frames(&a, a.addr, &b, b.addr, a.n);
			printf("domain: uids apart: %zu pages shared after "
			       "%lld and %lld full scans\n", s, fa, fb);
			if (fa < 4 || fb < 4)
				FAIL("processes did not scan");
			if (s)
				FAIL("%zu pages shared across domains", s);
			if (ctl(args, out, sizeof(out)) != 1)
				FAIL("root sees nobody's process %d", (int)b.pid);
		}
		finish(&a);
		finish(&b);
		kill(d, SIGTERM);
		waitpid(d, NULL, 0);
		ndaemons--;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int r;

	if (argc >= 4 && !strcmp(argv[1], "child"))
		return child(argc, argv);
	if (argc != 4) {
		fprintf(stderr, "usage: test_cross SAMEPAGE SAMEPAGED "
				"share|late|kill|writers|malformed|control|"
				"reclaim|domain\n");
		return 2;
	}
	samepage_bin = argv[1];
	samepaged_bin = argv[2];
	self = "/proc/self/exe";
	{
		static char exe[4096];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

		if (n > 0) {
			exe[n] = 0;
			self = exe;
		}
	}
	if (geteuid() != 0 && strcmp(argv[3], "malformed")) {
		printf("SKIP: PFNs in pagemap need root\n");
		return 77;
	}
	strcpy(dir, "/tmp/sp-cross-XXXXXX");
	if (!mkdtemp(dir))
		FAIL("mkdtemp");
	snprintf(sockpath, sizeof(sockpath), "%s/d.sock", dir);
	setenv("SAMEPAGE_SOCKET", sockpath, 1);
	atexit(kill_daemons);
	/* A kid that forks and exits leaves its child to us (reclaim). */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(argv[3], "share"))
		r = scenario_share();
	else if (!strcmp(argv[3], "late"))
		r = scenario_late();
	else if (!strcmp(argv[3], "grow"))
		r = scenario_grow();
	else if (!strcmp(argv[3], "kill"))
		r = scenario_kill();
	else if (!strcmp(argv[3], "writers"))
		r = scenario_writers();
	else if (!strcmp(argv[3], "malformed"))
		r = scenario_malformed();
	else if (!strcmp(argv[3], "control"))
		r = scenario_control();
	else if (!strcmp(argv[3], "reclaim"))
		r = scenario_reclaim();
	else if (!strcmp(argv[3], "domain"))
		r = scenario_domain();
	else
		r = 2;
	/* A daemon that died on its own (a sanitizer's abort, a crash)
	 * fails the scenario even where the scenario did not notice. */
	for (unsigned i = 0; i < ndaemons && !r; i++) {
		int st;

		if (waitpid(daemons[i], &st, WNOHANG) == daemons[i] &&
		    !(WIFEXITED(st) && !WEXITSTATUS(st))) {
			fprintf(stderr, "FAIL: samepaged %d ended with %#x\n",
				(int)daemons[i], st);
			r = 1;
		}
	}
	return r;
}
