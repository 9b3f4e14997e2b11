/*
 * test_unmerge_race.c - unmerging loses no write made while it runs.
 *
 * Unmerge rebuilds a range (merged runs and the private pages between
 * them) as one anonymous mapping: it moves the private pages out, copies
 * the merged ones, and maps the copy over the range in one mremap.  A
 * write to a merged page between its copy and the mremap would be lost,
 * and one to a moved-out page would fault a zero page, unless every such
 * access waits; this test aims writers at exactly that moment.
 *
 * Each cycle: the region (two identical halves) is merged with the
 * writers paused; then writer threads overwrite bytes of random pages of
 * their own as fast as they can (every fourth cycle only in the first
 * half: see span), checking each write right after it, while
 * the main thread unmerges the whole region (alternately MADV_UNMERGEABLE
 * and run=2), re-registers it, and pauses the writers again; then every
 * byte of the region is compared with the writers' shadow copies.  The run
 * reports how many writes landed while an unmerge was under way and how
 * many of those hit a merged page, and fails if there were none.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "rt.h"

#define NPAGE 2048
#define NWRITER 2
#define CYCLES 60

enum { PAUSE, RUN, QUIT };

static char *region;
static unsigned char *shadow;	/* what each page must hold */
static atomic_int unmerging;	/* the main thread is inside an unmerge */
/* The writers' pages this cycle: the region, or every fourth cycle its
 * first half.  A chunk written before its rebuild starts holds a private
 * copy and is (rightly) unmerged in place, and with writes all over the
 * region, paced or not, some runs rebuilt no chunk at all (under TSan,
 * once in a few runs); with the second half unwritten, its merged
 * chunks are rebuilt while writes land in the first half's merged
 * pages.  Set by the main thread while the writers are paused. */
static atomic_size_t span = NPAGE;

/* The writers' phase, and how many have stopped for the latest pause
 * (or for good: a failure, QUIT).  Waiting sleeps: spinning writers
 * would take the CPUs the unmerge needs. */
static pthread_mutex_t ph_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ph_cond = PTHREAD_COND_INITIALIZER;
static atomic_int phase = PAUSE;	/* written under ph_lock */
static unsigned pause_gen;		/* ph_lock */
static int stopped;			/* ph_lock */
static int quit_count;			/* ph_lock: writers gone for good */

struct writer {
	pthread_t t;
	unsigned id;
	uint64_t writes, during, into_merged;
	int bad;
	char why[160];
};

static int merged_now(int pm, const void *p)
{
	uint64_t e = 0;

	if (pread(pm, &e, 8, (off_t)((uintptr_t)p / PS) * 8) != 8)
		return 0;
	return (e >> 63) & (e >> 61) & 1;	/* present, file page */
}

static void *writer(void *arg)
{
	struct writer *w = arg;
	unsigned seed = 77u + w->id;
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	unsigned seen_gen = 0;
	const struct timespec pace = { 0, 20 * 1000 };

	REGION_ACCESS_BEGIN();
	for (;;) {
		int ph = atomic_load(&phase);

		if (ph != RUN) {
			pthread_mutex_lock(&ph_lock);
			while (atomic_load(&phase) == PAUSE) {
				if (seen_gen != pause_gen) {
					seen_gen = pause_gen;
					stopped++;
					pthread_cond_broadcast(&ph_cond);
				}
				pthread_cond_wait(&ph_cond, &ph_lock);
			}
			ph = atomic_load(&phase);
			pthread_mutex_unlock(&ph_lock);
			if (ph == QUIT)
				break;
			continue;
		}
		size_t i = w->id + (size_t)(rand_r(&seed) %
					    (atomic_load(&span) / NWRITER)) *
					   NWRITER;
		size_t off = (size_t)(rand_r(&seed) % (PS / 8)) * 8;
		uint64_t v = ((uint64_t)rand_r(&seed) << 32) | w->writes;
		int during = atomic_load(&unmerging);
		int merged = merged_now(pm, region + i * PS);

		memcpy(region + i * PS + off, &v, 8);
		memcpy(shadow + i * PS + off, &v, 8);
		w->writes++;
		w->during += during;
		w->into_merged += during && merged;
		if (memcmp(region + i * PS, shadow + i * PS, PS)) {
			w->bad = 1;
			snprintf(w->why, sizeof(w->why),
				 "page %zu differs right after a write", i);
			break;
		}
		/* Paced: a write to a chunk before its rebuild starts makes
		 * a private copy there, and the chunk is then (rightly)
		 * left alone; flat out, every chunk would be. */
		nanosleep(&pace, NULL);
	}
	REGION_ACCESS_END();
	pthread_mutex_lock(&ph_lock);
	quit_count++;		/* counts in every later pause */
	stopped++;
	pthread_cond_broadcast(&ph_cond);
	pthread_mutex_unlock(&ph_lock);
	close(pm);
	return NULL;
}

static void set_phase(int ph)
{
	pthread_mutex_lock(&ph_lock);
	atomic_store(&phase, ph);
	pthread_cond_broadcast(&ph_cond);
	pthread_mutex_unlock(&ph_lock);
}

/* Stop the writers and wait until each has (or has quit). */
static void pause_writers(void)
{
	pthread_mutex_lock(&ph_lock);
	atomic_store(&phase, PAUSE);
	pause_gen++;
	stopped = quit_count;
	pthread_cond_broadcast(&ph_cond);	/* writers already waiting */
	while (stopped < NWRITER)
		pthread_cond_wait(&ph_cond, &ph_lock);
	pthread_mutex_unlock(&ph_lock);
}

static void test_unmerge_keeps_concurrent_writes(void **state)
{
	struct writer w[NWRITER];
	uint64_t writes = 0, during = 0, into_merged = 0, merged_total = 0;
	struct sp_agent_stats as;
	uint64_t waits0 = rt_astats().held_waits;

	(void)state;
	shadow = malloc((size_t)NPAGE * PS);
	assert_non_null(shadow);
	for (unsigned k = 0; k < NWRITER; k++) {
		memset(&w[k], 0, sizeof(w[k]));
		w[k].id = k;
		assert_int_equal(pthread_create(&w[k].t, NULL, writer, &w[k]), 0);
	}
	pause_writers();
	for (unsigned c = 0; c < CYCLES; c++) {
		struct timespec ts = { 0, (long)(c % 7) * 50 * 1000 };
		int bad = 0;

		/* A fresh region of duplicate halves: everything merges (a
		 * page written while merged never merges again, see
		 * docs/design.md, so each cycle starts anew). */
		region = rt_map(NPAGE);
		rt_fill(region, NPAGE / 2, c);
		rt_fill(region + NPAGE / 2 * PS, NPAGE / 2, c);
		memcpy(shadow, region, (size_t)NPAGE * PS);
		assert_int_equal(sp_agent_register(A, region, NPAGE * PS), 0);
		rt_merge();
		merged_total += rt_stats().pages_sharing;
		atomic_store(&span, c % 4 == 3 ? NPAGE / 2 : NPAGE);
		set_phase(RUN);
		nanosleep(&ts, NULL);	/* let some writes land first */
		atomic_store(&unmerging, 1);
		if (c % 2)
			assert_int_equal(sp_agent_set_run(A, 2), 0);
		else
			assert_int_equal(sp_agent_unregister(A, region,
							     NPAGE * PS), 0);
		atomic_store(&unmerging, 0);
		pause_writers();
		for (unsigned k = 0; k < NWRITER; k++)
			bad |= w[k].bad;
		if (bad)
			break;
		for (size_t i = 0; i < NPAGE; i++)
			if (memcmp(region + i * PS, shadow + i * PS, PS))
				fail_msg("cycle %u: page %zu lost a write", c, i);
		rt_release(region, NPAGE);
	}
	set_phase(QUIT);
	for (unsigned k = 0; k < NWRITER; k++) {
		pthread_join(w[k].t, NULL);
		if (w[k].bad)
			fail_msg("writer %u: %s", k, w[k].why);
		writes += w[k].writes;
		during += w[k].during;
		into_merged += w[k].into_merged;
	}
	as = rt_astats();
	print_message("%d cycles, %llu pages merged in all: %llu writes, %llu "
		      "during an unmerge, %llu of them into a merged page; %llu "
		      "pages rebuilt, %llu accesses waited on the merger\n",
		      CYCLES, (unsigned long long)merged_total,
		      (unsigned long long)writes, (unsigned long long)during,
		      (unsigned long long)into_merged,
		      (unsigned long long)as.rebuilt,
		      (unsigned long long)(as.held_waits - waits0));
	assert_true(merged_total > 0);
	assert_true(as.rebuilt > 0);
	/* The races must have happened for the run to mean anything: writes
	 * into merged pages while unmerging, some of them made to wait. */
	assert_true(into_merged > 0);
	assert_true(as.held_waits - waits0 > 0);
	free(shadow);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unmerge_keeps_concurrent_writes),
	};
	int r;

	rt_start_or_skip("test_unmerge_race");
	r = cmocka_run_group_tests(tests, NULL, NULL);
	sp_agent_stop(A);
	return r;
}
