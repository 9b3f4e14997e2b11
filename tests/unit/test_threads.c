/*
 * test_threads.c - the engine used from several threads at once, and
 * forked in the middle of it.  Run under ThreadSanitizer by make test.
 *
 * The simulator is single-threaded, so a locking backend wraps it: every
 * op takes sim_lock, and the writer threads take it too.  This follows
 * the documented lock order (engine lock, then backend locks), and its
 * atfork handler is registered before any engine exists, so that fork's
 * prepare stage takes the engine locks first.
 *
 * Threads: one scanner (sp_scan in a loop), one controller (registers,
 * unregisters, unmerges, reads stats, verifies, flips knobs), two writers
 * (random writes, recorded in a shadow).  At the end memory must equal
 * the shadow and every recount must agree.  A child forked mid-run must
 * find the engine usable (no lock left held) and its memory intact.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define NSP 2
#define NPG 128

static pthread_mutex_t sim_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sp_sim *g_sim;
static unsigned char shadow[NSP][NPG][PS];	/* under sim_lock */
static _Atomic int stop;	/* set by the main thread to end the others */

/* ---- the locking backend ---- */

#define L(expr)                                                              \
	({                                                                   \
		pthread_mutex_lock(&sim_lock);                               \
		__typeof__(expr) r_ = (expr);                                \
		pthread_mutex_unlock(&sim_lock);                             \
		r_;                                                          \
	})

static int l_probe(void *be, void *sp, uintptr_t a, size_t l,
		   struct sp_extent *x)
{
	return L(sp_sim_ops.probe(be, sp, a, l, x));
}
static int l_state(void *be, void *sp, uintptr_t a, size_t n, uint8_t *o)
{
	return L(sp_sim_ops.state(be, sp, a, n, o));
}
static const void *l_peek(void *be, void *sp, uintptr_t a, void *buf)
{
	/* The pointer outlives the lock: copy the bytes while holding it. */
	pthread_mutex_lock(&sim_lock);
	const void *p = sp_sim_ops.peek(be, sp, a, buf);
	if (p && p != buf)
		memcpy(buf, p, PS);
	pthread_mutex_unlock(&sim_lock);
	return p ? buf : NULL;
}
static int l_cmp(void *be, void *sp, uintptr_t a, const void *k, int *o)
{
	return L(sp_sim_ops.cmp(be, sp, a, k, o));
}
static int l_protect(void *be, void *sp, uintptr_t a, size_t n, uint8_t *h)
{
	return L(sp_sim_ops.protect(be, sp, a, n, h));
}
static void l_unprotect(void *be, void *sp, uintptr_t a, size_t n)
{
	pthread_mutex_lock(&sim_lock);
	sp_sim_ops.unprotect(be, sp, a, n);
	pthread_mutex_unlock(&sim_lock);
}
static int l_replace(void *be, void *sp, uintptr_t a, size_t n, sp_spage_t f)
{
	return L(sp_sim_ops.replace(be, sp, a, n, f));
}
static int l_zap(void *be, void *sp, uintptr_t a, size_t n)
{
	return L(sp_sim_ops.zap(be, sp, a, n));
}
static int l_unmerge(void *be, void *sp, uintptr_t a, size_t n)
{
	return L(sp_sim_ops.unmerge(be, sp, a, n));
}
static int l_salloc(void *be, size_t n, sp_spage_t *f)
{
	return L(sp_sim_ops.stable_alloc(be, n, f));
}
static int l_swrite(void *be, sp_spage_t f, size_t n, const void *const *s)
{
	return L(sp_sim_ops.stable_write(be, f, n, s));
}
static const void *l_speek(void *be, sp_spage_t p, void *buf)
{
	pthread_mutex_lock(&sim_lock);
	const void *r = sp_sim_ops.stable_peek(be, p, buf);
	if (r)
		memcpy(buf, r, PS);
	pthread_mutex_unlock(&sim_lock);
	return r ? buf : NULL;
}
static void l_srelease(void *be, sp_spage_t f, size_t n)
{
	pthread_mutex_lock(&sim_lock);
	sp_sim_ops.stable_release(be, f, n);
	pthread_mutex_unlock(&sim_lock);
}

static const struct sp_backend_ops locked_ops = {
	.probe = l_probe, .state = l_state, .peek = l_peek, .cmp = l_cmp,
	.protect = l_protect, .unprotect = l_unprotect, .replace = l_replace,
	.zap = l_zap, .unmerge = l_unmerge, .stable_alloc = l_salloc,
	.stable_write = l_swrite, .stable_peek = l_speek,
	.stable_release = l_srelease,
};

static void fork_prepare(void)
{
	pthread_mutex_lock(&sim_lock);
}
static void fork_release(void)
{
	pthread_mutex_unlock(&sim_lock);
}

/* ---- the threads ---- */

struct ctx {
	struct sp_engine *e;
	struct sp_sim_space *sp[NSP];
	struct sp_space *s[NSP];
	unsigned seed;
	uint64_t ops;
};

static void *scanner(void *arg)
{
	struct ctx *c = arg;

	while (!stop) {
		sp_scan(c->e, 64);
		c->ops++;
	}
	return NULL;
}

static void *writer(void *arg)
{
	struct ctx *c = arg;
	unsigned seed = c->seed;
	unsigned char buf[PS];

	while (!stop) {
		unsigned s = rand_r(&seed) % NSP, p = rand_r(&seed) % NPG;

		h_fill(buf, rand_r(&seed) % 5);
		pthread_mutex_lock(&sim_lock);
		if (sp_sim_write(g_sim, c->sp[s], BASE + p * PS, buf, PS))
			abort();	/* no cmocka asserts off the main thread */
		memcpy(shadow[s][p], buf, PS);
		pthread_mutex_unlock(&sim_lock);
		c->ops++;
	}
	return NULL;
}

static void *controller(void *arg)
{
	struct ctx *c = arg;
	unsigned seed = c->seed;
	char why[256];

	while (!stop) {
		unsigned s = rand_r(&seed) % NSP, op = rand_r(&seed) % 8;
		uintptr_t a = BASE + (rand_r(&seed) % NPG) * PS;
		size_t len = (1 + rand_r(&seed) % 16) * PS;
		struct sp_stats st;

		if (a + len > BASE + NPG * PS)
			len = BASE + NPG * PS - a;
		switch (op) {
		case 0:
			sp_register(c->e, c->s[s], a, len);
			break;
		case 1:
			sp_unregister(c->e, c->s[s], a, len);
			break;
		case 2:
			sp_unmerge(c->e, c->s[s], a, len);
			break;
		case 3:
			sp_stats_get(c->e, &st);
			break;
		case 4:
			if (sp_engine_verify(c->e, why, sizeof(why))) {
				fprintf(stderr, "verify under load: %s\n", why);
				abort();
			}
			break;
		case 5:
			sp_knob_set(c->e, SP_KNOB_USE_ZERO_PAGES,
				    rand_r(&seed) % 2);
			break;
		default:
			sp_register(c->e, c->s[s], BASE, NPG * PS);
			break;
		}
		c->ops++;
	}
	return NULL;
}

/* In the child: the engine must not be locked, and keeps working. */
static int child_checks(struct ctx *c)
{
	char why[256];

	for (int i = 0; i < 50; i++)
		sp_scan(c->e, 100);
	if (sp_engine_verify(c->e, why, sizeof(why))) {
		fprintf(stderr, "child: %s\n", why);
		return 1;
	}
	for (unsigned s = 0; s < NSP; s++)
		for (unsigned p = 0; p < NPG; p++) {
			unsigned char got[PS];

			sp_sim_read(g_sim, c->sp[s], BASE + p * PS, got, PS);
			if (memcmp(got, shadow[s][p], PS)) {
				fprintf(stderr, "child: page %u/%u differs\n",
					s, p);
				return 1;
			}
		}
	return 0;
}

static void test_threads_and_fork(void **state)
{
	struct ctx c = { 0 }, w1, w2, ctl;
	pthread_t t[4];
	struct timespec dl = { 0, 300 * 1000 * 1000 };
	char why[256];
	pid_t pid;
	int status;

	(void)state;
	/* Before any engine: our prepare then runs after the engine's. */
	pthread_atfork(fork_prepare, fork_release, fork_release);
	assert_int_equal(sp_sim_new(&g_sim), 0);
	assert_int_equal(sp_engine_new(&(struct sp_engine_config){
						.ops = &locked_ops,
						.be = g_sim },
				       &c.e), 0);
	for (unsigned s = 0; s < NSP; s++) {
		assert_int_equal(sp_sim_space_new(g_sim, &c.sp[s]), 0);
		assert_int_equal(sp_sim_map(g_sim, c.sp[s], BASE, NPG * PS,
					    SP_SIM_PRIVATE), 0);
		assert_int_equal(sp_space_add(c.e, c.sp[s], &c.s[s]), 0);
		assert_int_equal(sp_register(c.e, c.s[s], BASE, NPG * PS), 0);
	}
	w1 = w2 = ctl = c;
	w1.seed = 1;
	w2.seed = 2;
	ctl.seed = 3;
	pthread_create(&t[0], NULL, scanner, &c);
	pthread_create(&t[1], NULL, writer, &w1);
	pthread_create(&t[2], NULL, writer, &w2);
	pthread_create(&t[3], NULL, controller, &ctl);

	nanosleep(&dl, NULL);
	pid = fork();
	if (pid == 0) {
		/* Only this thread exists here; writers are gone, so the
		 * shadow is final for the child. */
		_exit(child_checks(&c));
	}
	assert_true(pid > 0);
	for (int i = 0; i < 5; i++)
		nanosleep(&dl, NULL);
	stop = 1;
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	/* Quiet now: settle, then every check. */
	for (int i = 0; i < 4; i++)
		while (sp_scan(c.e, 1000) > 0)
			;
	for (unsigned s = 0; s < NSP; s++)
		for (unsigned p = 0; p < NPG; p++) {
			unsigned char got[PS];

			sp_sim_read(g_sim, c.sp[s], BASE + p * PS, got, PS);
			assert_memory_equal(got, shadow[s][p], PS);
		}
	if (sp_engine_verify(c.e, why, sizeof(why)))
		fail_msg("%s", why);
	if (sp_sim_check(g_sim, why, sizeof(why)))
		fail_msg("%s", why);
	print_message("scanner %llu batches, writers %llu + %llu writes, "
		      "controller %llu ops; pages_sharing now %llu\n",
		      (unsigned long long)c.ops, (unsigned long long)w1.ops,
		      (unsigned long long)w2.ops, (unsigned long long)ctl.ops,
		      (unsigned long long)h_stats(&(struct h){ .e = c.e })
			      .pages_sharing);
	for (unsigned s = 0; s < NSP; s++) {
		sp_sim_space_free(g_sim, c.sp[s]);
		sp_space_remove(c.e, c.s[s]);
	}
	sp_engine_free(c.e);
	sp_sim_free(g_sim);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads_and_fork),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
