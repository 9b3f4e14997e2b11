/*
 * workload.c - a program that knows only the kernel's KSM API, for
 * bench/ksm_compare: the same binary runs under kernel KSM and under
 * `samepage run`.
 *
 * It maps SIZE MiB of private anonymous memory, fills it as the spec
 * says (the sections of workload.h: identical across processes, zeros,
 * volatile, duplicates inside the process, unique with scattered single
 * duplicates), and then talks over stdin/stdout, one line each way:
 *
 *   out "filled ADDR PAGES"    memory filled, not yet mergeable
 *   in  "go"                   madvise(MADV_MERGEABLE) over the region
 *   out "ready"                   (or "error ..." and exit 2)
 *   in  "touch"                read one byte of every page (a merged page
 *   out "touched"                 that was never touched since is mapped
 *                                 again, so Pss shows it)
 *   in  "verify"               check every byte against the recipe (and
 *   out "ok" | "bad N"            stop the volatile writer for good)
 *
 * SIGTERM, SIGINT or end of stdin: stop the volatile writer, check every
 * byte against the recipe, exit 0 if intact, 1 if any page differs (the
 * first one named on stderr), 2 on a usage or set-up error.  --now
 * registers at once and prints "ready ADDR PAGES" instead (for use
 * without the driver).  --pages P gives the size in pages instead of
 * --mib.
 *
 * The volatile section is rewritten by a thread: every VOL_MS
 * milliseconds it bumps word 0 (a generation counter) of every volatile
 * page.  The generations are the only state kept besides the spec.
 *
 * usage: workload [--mib M | --pages P] [--same F] [--zero F]
 *                 [--volatile F] [--dup F] [--scatter K] [--proc I]
 *                 [--vol-ms MS] [--now]
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "workload.h"

static struct wl_spec spec = { .pages = 256 * 256 };
static struct wl_layout lay;
static unsigned proc;
static char *region;
static uint64_t vol_start;	/* first volatile page */
static uint64_t *gen;		/* generation of each volatile page */
static unsigned vol_ms = 10;
static atomic_int stop_writer;
static pthread_t writer_thread;
static int writer_running;

static void *writer(void *arg)
{
	struct timespec ts = { 0, (long)vol_ms * 1000000L };

	(void)arg;
	while (!atomic_load_explicit(&stop_writer, memory_order_relaxed)) {
		for (uint64_t j = 0; j < lay.vol; j++)
			*(volatile uint64_t *)(void *)(region +
				(vol_start + j) * WL_PAGE) = ++gen[j];
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* Stop the writer for good: gen[] then holds still. */
static void writer_stop(void)
{
	if (!writer_running)
		return;
	atomic_store(&stop_writer, 1);
	pthread_join(writer_thread, NULL);
	writer_running = 0;
}

static void fill(void)
{
	for (uint64_t i = 0; i < spec.pages; i++) {
		int vol;
		uint64_t key = wl_key(&spec, &lay, proc, i, &vol);

		wl_fill(region + i * WL_PAGE, key);
		if (vol)
			memset(region + i * WL_PAGE, 0, 8);	/* gen 0 */
	}
}

/* Pages that differ from the recipe. */
static uint64_t verify(void)
{
	static uint64_t want[WL_PAGE / 8];
	uint64_t bad = 0;

	for (uint64_t i = 0; i < spec.pages; i++) {
		int vol;
		uint64_t key = wl_key(&spec, &lay, proc, i, &vol);

		wl_fill(want, key);
		if (vol)
			want[0] = gen[i - vol_start];
		if (memcmp(region + i * WL_PAGE, want, WL_PAGE)) {
			if (!bad)
				fprintf(stderr, "workload %d: page %llu "
					"(key %#llx) differs\n", (int)getpid(),
					(unsigned long long)i,
					(unsigned long long)key);
			bad++;
		}
	}
	return bad;
}

static int mergeable(void)
{
	if (madvise(region, spec.pages * WL_PAGE, MADV_MERGEABLE)) {
		printf("error madvise(MADV_MERGEABLE): %s\n", strerror(errno));
		fflush(stdout);
		return -1;
	}
	return 0;
}

static double num(const char *opt, const char *v, double max)
{
	char *end;
	double x = strtod(v ? v : "", &end);

	if (!v || end == v || *end || x < 0 || x > max) {
		fprintf(stderr, "workload: bad value for %s: '%s'\n", opt,
			v ? v : "");
		exit(2);
	}
	return x;
}

static int command(const char *line)
{
	if (!strcmp(line, "go")) {
		if (mergeable())
			exit(2);
		printf("ready\n");
	} else if (!strcmp(line, "touch")) {
		volatile char sink = 0;

		for (uint64_t i = 0; i < spec.pages; i++)
			sink += region[i * WL_PAGE + 64];
		(void)sink;
		printf("touched\n");
	} else if (!strcmp(line, "verify")) {
		uint64_t bad;

		writer_stop();	/* for good: gen[] must hold still */
		bad = verify();
		if (bad)
			printf("bad %llu\n", (unsigned long long)bad);
		else
			printf("ok\n");
	} else {
		printf("error unknown command '%s'\n", line);
	}
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	char buf[256];
	size_t have = 0;
	int now = 0, sfd;
	sigset_t set;
	uint64_t bad;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(o, "--now")) {
			now = 1;
			continue;
		}
		i++;
		if (!strcmp(o, "--mib"))
			spec.pages = (uint64_t)num(o, v, 1 << 20) * 256;
		else if (!strcmp(o, "--pages"))
			spec.pages = (uint64_t)num(o, v, 1ull << 32);
		else if (!strcmp(o, "--same"))
			spec.same = num(o, v, 1);
		else if (!strcmp(o, "--zero"))
			spec.zero = num(o, v, 1);
		else if (!strcmp(o, "--volatile"))
			spec.vol = num(o, v, 1);
		else if (!strcmp(o, "--dup"))
			spec.dup = num(o, v, 0.5);
		else if (!strcmp(o, "--scatter"))
			spec.scatter = (unsigned)num(o, v, 1 << 20);
		else if (!strcmp(o, "--proc"))
			proc = (unsigned)num(o, v, 0xfffe);
		else if (!strcmp(o, "--vol-ms"))
			vol_ms = (unsigned)num(o, v, 10000);
		else {
			fprintf(stderr, "usage: workload [--mib M | --pages P] "
				"[--same F] [--zero F] [--volatile F]\n"
				"                [--dup F] [--scatter K] [--proc I] "
				"[--vol-ms MS] [--now]\n");
			return 2;
		}
	}
	if (!spec.pages || wl_layout(&spec, &lay)) {
		fprintf(stderr, "workload: sections do not fit in %llu pages\n",
			(unsigned long long)spec.pages);
		return 2;
	}
	vol_start = lay.same + lay.zero;
	region = mmap(NULL, spec.pages * WL_PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gen = calloc(lay.vol ? lay.vol : 1, sizeof(*gen));
	if (region == MAP_FAILED || !gen) {
		fprintf(stderr, "workload: out of memory\n");
		return 2;
	}
	/* Signals arrive on a signalfd; every thread blocks them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0) {
		perror("signalfd");
		return 2;
	}
	fill();
	if (lay.vol) {
		if (pthread_create(&writer_thread, NULL, writer, NULL)) {
			fprintf(stderr, "workload: cannot start the writer\n");
			return 2;
		}
		writer_running = 1;
	}
	if (now && mergeable())
		return 2;
	printf("%s %p %llu\n", now ? "ready" : "filled", (void *)region,
	       (unsigned long long)spec.pages);
	fflush(stdout);

	for (;;) {
		struct pollfd pf[2] = { { 0, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		ssize_t n;
		char *nl;

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		n = read(0, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = 0;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			command(buf);
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have + 1);
		}
		if (have == sizeof(buf) - 1)
			have = 0;	/* an overlong line: dropped */
	}
	writer_stop();
	bad = verify();
	if (bad) {
		fprintf(stderr, "workload %d: %llu of %llu pages corrupted\n",
			(int)getpid(), (unsigned long long)bad,
			(unsigned long long)spec.pages);
		return 1;
	}
	return 0;
}
