/*
 * engine.c - engine lifecycle, address spaces, knobs, the scan entry
 * point, and fork safety.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "util/hash.h"

/* ---- accounting ------------------------------------------------------ */

void *meta_alloc(struct sp_engine *e, size_t size)
{
	return sp_mem_alloc(&e->mem, size);
}

void meta_free(struct sp_engine *e, void *p, size_t size)
{
	sp_mem_free(&e->mem, p, size);
}

/* ---- fork safety: the registry of engines ---------------------------- */

/* Every live engine, so that fork can take all their locks.
 * registry_lock protects the ring; it is taken before any engine lock. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sp_engine registry = { .reg_prev = &registry,
				     .reg_next = &registry };
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&registry_lock);
	for (struct sp_engine *e = registry.reg_next; e != &registry;
	     e = e->reg_next)
		pthread_mutex_lock(&e->lock);
}

static void atfork_parent(void)
{
	for (struct sp_engine *e = registry.reg_prev; e != &registry;
	     e = e->reg_prev)
		pthread_mutex_unlock(&e->lock);
	pthread_mutex_unlock(&registry_lock);
}

static void atfork_child(void)
{
	/* Only the forking thread exists here; it holds every lock.
	 * Re-initialise rather than unlock (error-checking mutexes would
	 * refuse an unlock from a "different" owner on some libcs). */
	for (struct sp_engine *e = registry.reg_next; e != &registry;
	     e = e->reg_next)
		pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_init(&registry_lock, NULL);
}

static void atfork_register(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void registry_add(struct sp_engine *e)
{
	pthread_once(&atfork_once, atfork_register);
	pthread_mutex_lock(&registry_lock);
	e->reg_next = &registry;
	e->reg_prev = registry.reg_prev;
	registry.reg_prev->reg_next = e;
	registry.reg_prev = e;
	pthread_mutex_unlock(&registry_lock);
}

static void registry_del(struct sp_engine *e)
{
	pthread_mutex_lock(&registry_lock);
	e->reg_prev->reg_next = e->reg_next;
	e->reg_next->reg_prev = e->reg_prev;
	pthread_mutex_unlock(&registry_lock);
}

/* ---- knobs ----------------------------------------------------------- */

static const struct {
	const char *name;
	uint64_t def, min, max;
} knobs[SP_KNOB_COUNT] = {
	[SP_KNOB_PAGES_TO_SCAN] = { "pages_to_scan", 100, 0, UINT32_MAX },
	[SP_KNOB_SLEEP_MILLISECS] = { "sleep_millisecs", 20, 0, UINT32_MAX },
	[SP_KNOB_MAX_PAGE_SHARING] = { "max_page_sharing", 256, 2, INT32_MAX },
	[SP_KNOB_USE_ZERO_PAGES] = { "use_zero_pages", 0, 0, 1 },
	[SP_KNOB_SMART_SCAN] = { "smart_scan", 1, 0, 1 },
};

const char *sp_knob_name(enum sp_knob k)
{
	return (unsigned)k < SP_KNOB_COUNT ? knobs[k].name : NULL;
}

int sp_knob_lookup(const char *name, enum sp_knob *k)
{
	for (unsigned i = 0; name && i < SP_KNOB_COUNT; i++) {
		if (!strcmp(name, knobs[i].name)) {
			*k = (enum sp_knob)i;
			return 0;
		}
	}
	return -EINVAL;
}

int sp_knob_set(struct sp_engine *e, enum sp_knob k, uint64_t v)
{
	int err = 0;

	if ((unsigned)k >= SP_KNOB_COUNT || v < knobs[k].min ||
	    v > knobs[k].max)
		return -EINVAL;
	pthread_mutex_lock(&e->lock);
	/* As KSM: the sharing limit changes only while nothing is shared,
	 * so that no stable page is ever above it (zero-filled pages
	 * merged as KSM would count them are shared too). */
	if (k == SP_KNOB_MAX_PAGE_SHARING && v != e->knob[k] &&
	    (e->stable.nlive || e->c.zero_merged))
		err = -EBUSY;
	else
		e->knob[k] = v;
	pthread_mutex_unlock(&e->lock);
	return err;
}

int sp_knob_get(struct sp_engine *e, enum sp_knob k, uint64_t *v)
{
	if ((unsigned)k >= SP_KNOB_COUNT)
		return -EINVAL;
	pthread_mutex_lock(&e->lock);
	*v = e->knob[k];
	pthread_mutex_unlock(&e->lock);
	return 0;
}

/* ---- lifecycle ------------------------------------------------------- */

static int ops_complete(const struct sp_backend_ops *o)
{
	return o && o->probe && o->state && o->peek && o->cmp && o->protect &&
	       o->unprotect && o->replace && o->zap && o->unmerge &&
	       o->stable_alloc && o->stable_write && o->stable_peek &&
	       o->stable_release;
}

int sp_engine_new(const struct sp_engine_config *cfg, struct sp_engine **out)
{
	const struct sp_allocator *al;
	struct sp_engine *e;
	unsigned char zero[SP_PAGE_SIZE] = { 0 };
	int err;

	if (!cfg || !ops_complete(cfg->ops) || !out)
		return -EINVAL;
	al = cfg->alloc ? cfg->alloc : &sp_libc_allocator;
	e = al->alloc(al->ctx, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->mem = (struct sp_mem){ al, &e->meta_bytes };
	e->fixed = (struct sp_mem){ al, &e->fixed_bytes };
	e->buf = sp_mem_alloc(&e->fixed, 3 * SP_PAGE_SIZE);
	if (!e->buf) {
		al->free(al->ctx, e, sizeof(*e));
		return -ENOMEM;
	}
	e->ops = cfg->ops;
	e->be = cfg->be;
	for (unsigned k = 0; k < SP_KNOB_COUNT; k++)
		e->knob[k] = knobs[k].def;
	e->spaces.next = e->spaces.prev = &e->spaces;
	e->cursor.s = &e->spaces;
	sp_chunktab_init(&e->chunks, &e->mem);
	err = sp_unstable_init(&e->unstable, REC_CSUM_BITS, &e->chunks,
			       &e->mem);
	if (!err)
		err = sp_stable_init(&e->stable, cfg->ops, cfg->be, e->staging,
				     &e->mem, &e->fixed);
	if (err) {
		sp_unstable_destroy(&e->unstable);
		sp_mem_free(&e->fixed, e->buf, 3 * SP_PAGE_SIZE);
		al->free(al->ctx, e, sizeof(*e));
		return err;
	}
	e->zero_csum = (uint32_t)sp_hash_page(zero) & REC_CSUM_MASK;
	pthread_mutex_init(&e->lock, NULL);
	registry_add(e);
	*out = e;
	return 0;
}

static void space_unlink_free(struct sp_engine *e, struct sp_space *s)
{
	struct sp_rb_node *n;

	/* Drop every record; stable pages left without sharers go back. */
	while ((n = sp_rb_first(&s->chunks))) {
		struct sp_chunk *c = sp_rb_container(n, struct sp_chunk, node);

		for (unsigned i = 0; i < SP_CHUNK_PAGES && c->nlive; i++)
			rec_drop(e, s, c, i);
		sp_chunk_put(&e->chunks, &s->chunks, c);
	}
	regions_free(e, s);
	if (e->cursor.s == s) {
		/* The pass goes on with the next space, as KSM moves on
		 * from an exiting mm; ending the ring ends the pass. */
		e->cursor.s = s->next;
		e->cursor.addr = 0;
		if (e->cursor.s == &e->spaces)
			e->c.full_scans++;
	}
	s->prev->next = s->next;
	s->next->prev = s->prev;
	meta_free(e, s, sizeof(*s));
}

void sp_engine_free(struct sp_engine *e)
{
	const struct sp_allocator *al;

	if (!e)
		return;
	registry_del(e);
	pthread_mutex_lock(&e->lock);
	while (e->spaces.next != &e->spaces)
		space_unlink_free(e, e->spaces.next);
	pthread_mutex_unlock(&e->lock);
	sp_stable_destroy(&e->stable);
	sp_unstable_destroy(&e->unstable);
	sp_chunktab_destroy(&e->chunks);
	for (unsigned k = 0; k < SP_WINDOW; k++)
		sp_mem_free(&e->fixed, e->staging[k], SP_PAGE_SIZE);
	sp_mem_free(&e->fixed, e->buf, 3 * SP_PAGE_SIZE);
	pthread_mutex_destroy(&e->lock);
	al = e->mem.a;
	al->free(al->ctx, e, sizeof(*e));
}

int sp_space_add(struct sp_engine *e, void *be_space, struct sp_space **out)
{
	struct sp_space *s;

	pthread_mutex_lock(&e->lock);
	s = meta_alloc(e, sizeof(*s));
	if (!s) {
		pthread_mutex_unlock(&e->lock);
		return -ENOMEM;
	}
	s->be = be_space;
	s->regions = SP_RB_ROOT;
	s->chunks = SP_RB_ROOT;
	/* Append at the ring's tail: scanned last in the current pass. */
	s->next = &e->spaces;
	s->prev = e->spaces.prev;
	e->spaces.prev->next = s;
	e->spaces.prev = s;
	pthread_mutex_unlock(&e->lock);
	*out = s;
	return 0;
}

void sp_space_remove(struct sp_engine *e, struct sp_space *s)
{
	pthread_mutex_lock(&e->lock);
	space_unlink_free(e, s);
	pthread_mutex_unlock(&e->lock);
}

int sp_scan(struct sp_engine *e, unsigned budget)
{
	int ret;

	pthread_mutex_lock(&e->lock);
	ret = scan_batch(e, budget);
	pthread_mutex_unlock(&e->lock);
	return ret;
}
