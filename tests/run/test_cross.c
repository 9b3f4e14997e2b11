/*
 * test_cross.c - merging across processes through samepaged, observed
 * only through the kernel's view (PFNs in /proc/PID/pagemap, Pss in
 * /proc/PID/smaps_rollup) and the programs' own bytes.
 *
 *   test_cross SAMEPAGE SAMEPAGED SCENARIO
 * SCENARIO:
 *   share      two unrelated programs with the same data (unique inside
 *              each) end on one frame per page; Pss of both drops
 *   kill       SIGKILL of the daemon while writers run: the programs
 *              survive with every byte intact; a new daemon resumes
 *              merging (new data merges across them again)
 *   writers    three programs, two writer threads each, writing while
 *              merging runs: no write lost (each checks a shadow)
 *   malformed  garbage, truncated and oversized messages get an error;
 *              the daemon stays up and answers a proper request after
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
		i = (size_t)(r >> 33) % npages;
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
		execl(samepage_bin, "samepage", "run", "--pages-to-scan", "4096",
		      "--sleep-millisecs", "1", "--", self, "child", "42", mibs,
		      ws, (char *)NULL);
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

static long pss_kb(pid_t pid)
{
	char path[64], line[256];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pss: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
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
	long before, after;
	size_t s;

	start_daemon();
	spawn(&a, 16, 0);
	spawn(&b, 16, 0);
	before = pss_kb(a.pid) + pss_kb(b.pid);
	s = wait_shared(&a, a.addr, &b, b.addr, a.n, a.n, 60);
	after = pss_kb(a.pid) + pss_kb(b.pid);
	printf("share: %zu of %zu pages on one frame; Pss %ld -> %ld kB\n", s,
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
		FAIL("Pss dropped by %ld kB only", before - after);
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

int main(int argc, char **argv)
{
	int r;

	if (argc >= 4 && !strcmp(argv[1], "child"))
		return child(argc, argv);
	if (argc != 4) {
		fprintf(stderr, "usage: test_cross SAMEPAGE SAMEPAGED "
				"share|kill|writers|malformed\n");
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
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(argv[3], "share"))
		r = scenario_share();
	else if (!strcmp(argv[3], "kill"))
		r = scenario_kill();
	else if (!strcmp(argv[3], "writers"))
		r = scenario_writers();
	else if (!strcmp(argv[3], "malformed"))
		r = scenario_malformed();
	else
		r = 2;
	return r;
}
