/*
 * sim.c - the simulated memory backend: frames, page tables, a stable
 * store and copy-on-write in ordinary memory, so that tests can see every
 * physical effect of merging and inject "concurrent" writes between any
 * two backend calls.
 *
 * Model:
 *   - A frame has a reference count: one per page-table entry mapping it,
 *     plus one while the stable store holds it.  Frame 0 is "no frame":
 *     the page reads zeros (the shared zero page).
 *   - Content is real bytes, or generated from a tag until first written.
 *   - A write to a page whose frame is shared or belongs to the store
 *     copies it first (COW); to a page with no frame, allocates one.
 *   - A write-protected page queues writes; unprotect applies them, after
 *     whatever replace() or zap() did, as a thread blocked by
 *     userfaultfd write-protect resumes.
 *   - stable_release() of a store page that is still mapped is an engine
 *     bug on Linux (a hole punched under a mapping reads zeros): the sim
 *     counts it and zeroes the frame, so tests see the data loss.
 *   - replace()/zap() of a page that is not write-protected is counted
 *     (unprotected_changes) for the same reason.
 *   - A pinned frame (sp_sim_pin) cannot be held: protect() reports it,
 *     as the Linux backend's move-out refuses a page pinned for DMA.
 *     Pins keep the frame alive but do not make a write copy it (the
 *     kernel keeps a pinned anonymous page exclusive to its owner).
 *   - With sp_sim_shared_ops, store pages can also be shared by every
 *     engine on the simulator (sim_shared.c); they are frames of the
 *     same store, freed when the last reference named comes back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sim_impl.h"
#include "../util/hash.h"

static const uint8_t zero_page[PS];
static uint8_t tag_pool[64][PS];
static int tag_pool_ready;

/* ---- tagged content --------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void tag_pool_init(void)
{
	uint64_t s = 0x5a17ull;

	if (tag_pool_ready)
		return;
	for (unsigned i = 0; i < 64; i++)
		for (unsigned j = 0; j < PS / 8; j++) {
			uint64_t v = splitmix(&s);

			memcpy(&tag_pool[i][j * 8], &v, 8);
		}
	tag_pool_ready = 1;
}

void sp_sim_tag_bytes(uint64_t tag, void *page)
{
	uint64_t s = tag;

	tag_pool_init();
	/* A pool page chosen by the tag, stamped with the tag itself at both
	 * ends: equal tags give equal pages, different tags different ones. */
	memcpy(page, tag_pool[splitmix(&s) >> 58], PS);
	memcpy(page, &tag, 8);
	memcpy((char *)page + PS - 8, &tag, 8);
}

/* ---- frames ----------------------------------------------------------- */

int sim_frame_new(struct sp_sim *sim, uint32_t *out)
{
	uint32_t f;

	if (sim->nfree) {
		f = sim->free_ids[--sim->nfree];
	} else {
		if (sim->nframe == sim->cap) {
			uint32_t cap = sim->cap ? sim->cap * 2 : 1024;
			struct sim_frame *n;

			if (cap < sim->cap)
				return -ENOMEM;
			n = realloc(sim->frame, (size_t)cap * sizeof(*n));
			if (!n)
				return -ENOMEM;
			sim->frame = n;
			sim->cap = cap;
		}
		if (sim->nframe == 0)
			sim->nframe = 1;	/* id 0 means "no frame" */
		f = sim->nframe++;
	}
	memset(&sim->frame[f], 0, sizeof(sim->frame[f]));
	sim->frame[f].ref = 1;
	sim->cnt.frames++;
	*out = f;
	return 0;
}

void sim_frame_put(struct sp_sim *sim, uint32_t f)
{
	struct sim_frame *fr = &sim->frame[f];

	if (!f || --fr->ref)
		return;
	if (fr->stable)
		sim->cnt.stable_frames--;
	free(fr->data);
	memset(fr, 0, sizeof(*fr));
	sim->cnt.frames--;
	if (sim->nfree == sim->free_cap) {
		uint32_t cap = sim->free_cap ? sim->free_cap * 2 : 1024;
		uint32_t *n = realloc(sim->free_ids, (size_t)cap * sizeof(*n));

		if (!n)
			return;		/* leak the id, not the memory */
		sim->free_ids = n;
		sim->free_cap = cap;
	}
	sim->free_ids[sim->nfree++] = f;
}

/* The bytes of frame @f (0: zeros), generated into @buf if tagged. */
const uint8_t *sim_frame_bytes(struct sp_sim *sim, uint32_t f, void *buf)
{
	struct sim_frame *fr;

	if (!f)
		return zero_page;
	fr = &sim->frame[f];
	if (fr->data)
		return fr->data;
	if (fr->tagged) {
		sp_sim_tag_bytes(fr->tag, buf);
		return buf;
	}
	return zero_page;
}

/* Give frame @f its own bytes.  Return: 0 or -ENOMEM. */
static int frame_materialize(struct sp_sim *sim, uint32_t f)
{
	struct sim_frame *fr = &sim->frame[f];
	uint8_t *d;

	if (fr->data)
		return 0;
	d = malloc(PS);
	if (!d)
		return -ENOMEM;
	if (fr->tagged)
		sp_sim_tag_bytes(fr->tag, d);
	else
		memset(d, 0, PS);
	fr->data = d;
	fr->tagged = 0;
	return 0;
}

/* A new private frame holding a copy of frame @src's bytes. */
static int frame_copy(struct sp_sim *sim, uint32_t src, uint32_t *out)
{
	uint8_t tmp[PS];
	const uint8_t *b;
	uint32_t f;
	int err;

	err = sim_frame_new(sim, &f);
	if (err)
		return err;
	if (src && sim->frame[src].tagged && !sim->frame[src].data) {
		sim->frame[f].tagged = 1;
		sim->frame[f].tag = sim->frame[src].tag;
	} else if (src) {
		b = sim_frame_bytes(sim, src, tmp);
		sim->frame[f].data = malloc(PS);
		if (!sim->frame[f].data) {
			sim_frame_put(sim, f);
			return -ENOMEM;
		}
		memcpy(sim->frame[f].data, b, PS);
	}
	*out = f;
	return 0;
}

/* ---- page tables ------------------------------------------------------ */

static struct sim_map *map_of(struct sp_sim_space *sp, uintptr_t addr)
{
	for (struct sim_map *m = sp->maps; m && m->start <= addr; m = m->next)
		if (addr < m->end)
			return m;
	return NULL;
}

struct sim_pte *sim_pte_of(struct sp_sim_space *sp, uintptr_t addr,
			      struct sim_map **mp)
{
	struct sim_map *m = map_of(sp, addr);

	if (mp)
		*mp = m;
	return m ? &m->pte[(addr - m->start) / PS] : NULL;
}

/* Whether [addr, addr + n pages) is mapped throughout. */
static int range_mapped(struct sp_sim_space *sp, uintptr_t addr, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!map_of(sp, addr + i * PS))
			return 0;
	return 1;
}

/* ---- writes ----------------------------------------------------------- */

/* Apply a write inside one page, COWing as the kernel does. */
static int write_page(struct sp_sim *sim, struct sim_pte *pte,
		      uintptr_t off, const void *src, size_t len)
{
	uint32_t f = pte->frame;
	int err;

	if (!f || sim->frame[f].ref - sim->frame[f].pins > 1 ||
	    sim->frame[f].stable) {
		uint32_t n;

		err = frame_copy(sim, f, &n);
		if (err)
			return err;
		sim_frame_put(sim, f);
		pte->frame = f = n;
	}
	err = frame_materialize(sim, f);
	if (err)
		return err;
	memcpy(sim->frame[f].data + off, src, len);
	return 0;
}

static int queue_write(struct sp_sim *sim, struct sp_sim_space *sp,
		       uintptr_t addr, const void *src, size_t len)
{
	struct qwrite *w;

	if (sim->nq == sim->qcap) {
		uint32_t cap = sim->qcap ? sim->qcap * 2 : 64;
		struct qwrite *n = realloc(sim->q, (size_t)cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		sim->q = n;
		sim->qcap = cap;
	}
	w = &sim->q[sim->nq];
	w->bytes = malloc(len);
	if (!w->bytes)
		return -ENOMEM;
	memcpy(w->bytes, src, len);
	w->sp = sp;
	w->addr = addr;
	w->len = (uint32_t)len;
	sim->nq++;
	sim->cnt.queued_writes++;
	sim->cnt.writes_blocked++;
	return 0;
}

int sp_sim_write(struct sp_sim *sim, struct sp_sim_space *sp, uintptr_t addr,
		 const void *src, size_t len)
{
	const uint8_t *s = src;

	if (!range_mapped(sp, addr & ~(PS - 1),
			  len ? ((addr & (PS - 1)) + len + PS - 1) / PS : 0))
		return -EFAULT;
	while (len) {
		uintptr_t off = addr & (PS - 1);
		size_t n = PS - off < len ? PS - off : len;
		struct sim_pte *pte = sim_pte_of(sp, addr, NULL);
		int err;

		if (pte->wp)
			err = queue_write(sim, sp, addr, s, n);
		else
			err = write_page(sim, pte, off, s, n);
		if (err)
			return err;
		addr += n;
		s += n;
		len -= n;
	}
	return 0;
}

int sp_sim_discard(struct sp_sim *sim, struct sp_sim_space *sp,
		   uintptr_t addr, size_t len)
{
	if ((addr | len) & (PS - 1))
		return -EINVAL;
	if (!range_mapped(sp, addr, len / PS))
		return -EFAULT;
	for (size_t i = 0; i < len / PS; i++) {
		struct sim_pte *pte = sim_pte_of(sp, addr + i * PS, NULL);

		sim_frame_put(sim, pte->frame);
		pte->frame = 0;
	}
	return 0;
}

int sp_sim_read(struct sp_sim *sim, struct sp_sim_space *sp, uintptr_t addr,
		void *dst, size_t len)
{
	uint8_t *d = dst, tmp[PS];

	while (len) {
		uintptr_t off = addr & (PS - 1);
		size_t n = PS - off < len ? PS - off : len;
		struct sim_pte *pte = sim_pte_of(sp, addr, NULL);

		if (!pte)
			return -EFAULT;
		memcpy(d, sim_frame_bytes(sim, pte->frame, tmp) + off, n);
		addr += n;
		d += n;
		len -= n;
	}
	return 0;
}

/* Apply, in order, the queued writes to pages of [addr, addr + n pages). */
static void flush_queue(struct sp_sim *sim, struct sp_sim_space *sp,
			uintptr_t addr, size_t n)
{
	uint32_t keep = 0;

	for (uint32_t i = 0; i < sim->nq; i++) {
		struct qwrite *w = &sim->q[i];
		uintptr_t pg = w->addr & ~(PS - 1);
		struct sim_pte *pte;

		if (w->sp == sp && pg >= addr && pg < addr + n * PS &&
		    (pte = sim_pte_of(sp, w->addr, NULL)) && !pte->wp) {
			/* A failed COW (no memory) would lose the write in
			 * the sim; a real kernel would OOM-kill instead. */
			write_page(sim, pte, w->addr & (PS - 1), w->bytes,
				   w->len);
			free(w->bytes);
			sim->cnt.queued_writes--;
			continue;
		}
		sim->q[keep++] = *w;
	}
	sim->nq = keep;
}

/* ---- public: simulator and spaces ------------------------------------- */

int sp_sim_new(struct sp_sim **out)
{
	struct sp_sim *sim = calloc(1, sizeof(*sim));

	if (!sim)
		return -ENOMEM;
	sp_ralloc_init(&sim->store_ids, UINT32_MAX - 1, NULL);
	*out = sim;
	return 0;
}

int sp_sim_space_new(struct sp_sim *sim, struct sp_sim_space **out)
{
	struct sp_sim_space *sp = calloc(1, sizeof(*sp));

	if (!sp)
		return -ENOMEM;
	sp->next = sim->spaces;
	sim->spaces = sp;
	*out = sp;
	return 0;
}

void sp_sim_space_free(struct sp_sim *sim, struct sp_sim_space *sp)
{
	struct sp_sim_space **l;

	while (sp->maps)
		sp_sim_unmap(sim, sp, sp->maps->start,
			     sp->maps->end - sp->maps->start);
	for (l = &sim->spaces; *l; l = &(*l)->next) {
		if (*l == sp) {
			*l = sp->next;
			break;
		}
	}
	free(sp);
}

void sp_sim_free(struct sp_sim *sim)
{
	if (!sim)
		return;
	while (sim->spaces)
		sp_sim_space_free(sim, sim->spaces);
	for (uint32_t i = 0; i < sim->nq; i++)
		free(sim->q[i].bytes);
	for (uint32_t f = 1; f < sim->nframe; f++)
		free(sim->frame[f].data);
	free(sim->q);
	free(sim->frame);
	free(sim->free_ids);
	free(sim->store);
	free(sim->sref);
	free(sim->shash);
	free(sim->dir);
	sp_ralloc_destroy(&sim->store_ids);
	free(sim);
}

int sp_sim_map(struct sp_sim *sim, struct sp_sim_space *sp, uintptr_t addr,
	       size_t len, enum sp_sim_map_kind kind)
{
	struct sim_map *m, **l;

	(void)sim;
	if ((addr | len) & (PS - 1) || !len || addr + len < addr)
		return -EINVAL;
	for (m = sp->maps; m; m = m->next)
		if (addr < m->end && m->start < addr + len)
			return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->pte = calloc(len / PS, sizeof(*m->pte));
	if (!m->pte) {
		free(m);
		return -ENOMEM;
	}
	m->start = addr;
	m->end = addr + len;
	m->kind = kind;
	for (l = &sp->maps; *l && (*l)->start < addr; l = &(*l)->next)
		;
	m->next = *l;
	*l = m;
	return 0;
}

/* Split @m at @at (inside it).  Return: 0 or -ENOMEM. */
static int map_split(struct sim_map *m, uintptr_t at)
{
	struct sim_map *t = calloc(1, sizeof(*t));
	size_t left = (at - m->start) / PS, right = (m->end - at) / PS;
	struct sim_pte *lp, *rp;

	if (!t)
		return -ENOMEM;
	lp = malloc(left * sizeof(*lp));
	rp = malloc(right * sizeof(*rp));
	if (!lp || !rp) {
		free(lp);
		free(rp);
		free(t);
		return -ENOMEM;
	}
	memcpy(lp, m->pte, left * sizeof(*lp));
	memcpy(rp, m->pte + left, right * sizeof(*rp));
	free(m->pte);
	*t = *m;
	t->start = at;
	t->pte = rp;
	m->end = at;
	m->pte = lp;
	m->next = t;
	return 0;
}

int sp_sim_unmap(struct sp_sim *sim, struct sp_sim_space *sp, uintptr_t addr,
		 size_t len)
{
	uintptr_t end = addr + len;
	struct sim_map **l;

	if ((addr | len) & (PS - 1) || end < addr)
		return -EINVAL;
	/* Split at both ends first, so that whole mappings go. */
	for (struct sim_map *m = sp->maps; m; m = m->next) {
		if (m->start < addr && addr < m->end && map_split(m, addr))
			return -ENOMEM;
		if (m->start < end && end < m->end && map_split(m, end))
			return -ENOMEM;
	}
	for (l = &sp->maps; *l;) {
		struct sim_map *m = *l;

		if (m->start >= addr && m->end <= end) {
			for (size_t i = 0; i < (m->end - m->start) / PS; i++)
				sim_frame_put(sim, m->pte[i].frame);
			*l = m->next;
			free(m->pte);
			free(m);
			continue;
		}
		l = &m->next;
	}
	/* Writes queued on unmapped pages are dropped, as a blocked
	 * writer faults when its page is unmapped. */
	for (uint32_t i = 0; i < sim->nq; i++)
		if (sim->q[i].sp == sp && !map_of(sp, sim->q[i].addr))
			sim->q[i].sp = NULL;
	{
		uint32_t keep = 0;

		for (uint32_t i = 0; i < sim->nq; i++) {
			if (!sim->q[i].sp) {
				free(sim->q[i].bytes);
				sim->cnt.queued_writes--;
				continue;
			}
			sim->q[keep++] = sim->q[i];
		}
		sim->nq = keep;
	}
	return 0;
}

int sp_sim_fill_tag(struct sp_sim *sim, struct sp_sim_space *sp,
		    uintptr_t addr, size_t n, const uint64_t *tag)
{
	if (addr & (PS - 1) || !range_mapped(sp, addr, n))
		return -EFAULT;
	for (size_t i = 0; i < n; i++) {
		struct sim_pte *pte = sim_pte_of(sp, addr + i * PS, NULL);
		uint32_t f;
		int err = sim_frame_new(sim, &f);

		if (err)
			return err;
		sim->frame[f].tagged = 1;
		sim->frame[f].tag = tag[i];
		sim_frame_put(sim, pte->frame);
		pte->frame = f;
	}
	return 0;
}

int sp_sim_pin(struct sp_sim *sim, struct sp_sim_space *sp, uintptr_t addr,
	       sp_frame_t *out)
{
	struct sim_pte *pte = sim_pte_of(sp, addr, NULL);

	if (!pte)
		return -EFAULT;
	if (!pte->frame)
		return -ENOENT;
	sim->frame[pte->frame].ref++;
	sim->frame[pte->frame].pins++;
	*out = pte->frame;
	return 0;
}

void sp_sim_unpin(struct sp_sim *sim, sp_frame_t f)
{
	if (!f || f >= sim->nframe || !sim->frame[f].pins)
		return;
	sim->frame[f].pins--;
	sim_frame_put(sim, f);
}

int sp_sim_dma_write(struct sp_sim *sim, sp_frame_t f, size_t off,
		     const void *src, size_t len)
{
	int err;

	if (!f || f >= sim->nframe || !sim->frame[f].pins || off + len > PS)
		return -EINVAL;
	err = frame_materialize(sim, f);
	if (err)
		return err;
	memcpy(sim->frame[f].data + off, src, len);
	return 0;
}

sp_frame_t sp_sim_frame_of(struct sp_sim *sim, struct sp_sim_space *sp,
			   uintptr_t addr)
{
	struct sim_pte *pte = sim_pte_of(sp, addr, NULL);

	(void)sim;
	return pte ? pte->frame : 0;
}

uint32_t sp_sim_frame_ref(struct sp_sim *sim, sp_frame_t f)
{
	return f && f < sim->nframe ? sim->frame[f].ref : 0;
}

int sp_sim_frame_is_stable(struct sp_sim *sim, sp_frame_t f)
{
	return f && f < sim->nframe && sim->frame[f].stable;
}

void sp_sim_counts(struct sp_sim *sim, struct sp_sim_counts *c)
{
	uint64_t refs = 0;

	for (uint32_t f = 1; f < sim->nframe; f++)
		refs += sim->frame[f].ref;
	*c = sim->cnt;
	c->refs = refs;
	c->unprotected_changes = sim->unprotected_changes;
}

void sp_sim_set_injector(struct sp_sim *sim, sp_sim_injector_fn fn, void *arg)
{
	sim->inject = fn;
	sim->inject_arg = arg;
}

void sp_sim_fault_next(struct sp_sim *sim, const char *op, int err)
{
	if (!op) {
		sim->fault_op[0] = 0;
		return;
	}
	strncpy(sim->fault_op, op, sizeof(sim->fault_op) - 1);
	sim->fault_op[sizeof(sim->fault_op) - 1] = 0;
	sim->fault_err = err;
}

/* ---- the check -------------------------------------------------------- */

#include <stdio.h>

int sp_sim_check(struct sp_sim *sim, char *why, size_t whylen)
{
	uint32_t *count = calloc(sim->nframe ? sim->nframe : 1, sizeof(*count));
	uint64_t frames = 0, stable = 0;
	int err = 0;

	if (!count)
		return -ENOMEM;
#define FAIL(...)                                                            \
	do {                                                                 \
		if (why)                                                     \
			snprintf(why, whylen, __VA_ARGS__);                  \
		err = -EUCLEAN;                                              \
		goto out;                                                    \
	} while (0)
	for (struct sp_sim_space *sp = sim->spaces; sp; sp = sp->next)
		for (struct sim_map *m = sp->maps; m; m = m->next)
			for (size_t i = 0; i < (m->end - m->start) / PS; i++) {
				uint32_t f = m->pte[i].frame;

				if (f && (f >= sim->nframe || !sim->frame[f].ref))
					FAIL("pte at %#lx maps free frame %u",
					     m->start + i * PS, f);
				if (m->pte[i].wp)
					FAIL("pte at %#lx left write-protected",
					     m->start + i * PS);
				count[f]++;
			}
	for (uint32_t p = 0; p < sim->store_cap; p++)
		if (sim->store[p])
			count[sim->store[p]]++;
	for (uint32_t f = 1; f < sim->nframe; f++)
		count[f] += sim->frame[f].pins;
	for (uint32_t f = 1; f < sim->nframe; f++) {
		if (sim->frame[f].ref != count[f])
			FAIL("frame %u: refcount %u, %u references", f,
			     sim->frame[f].ref, count[f]);
		if (sim->frame[f].ref) {
			frames++;
			stable += sim->frame[f].stable;
		}
	}
	if (frames != sim->cnt.frames || stable != sim->cnt.stable_frames)
		FAIL("frame counters %llu/%llu stable %llu/%llu",
		     (unsigned long long)frames,
		     (unsigned long long)sim->cnt.frames,
		     (unsigned long long)stable,
		     (unsigned long long)sim->cnt.stable_frames);
	if (sim->nq)
		FAIL("%u writes still queued", sim->nq);
	if (sim->cnt.released_while_mapped)
		FAIL("%llu stable pages released while mapped",
		     (unsigned long long)sim->cnt.released_while_mapped);
	if (sim->unprotected_changes)
		FAIL("%llu pages replaced or zapped without protection",
		     (unsigned long long)sim->unprotected_changes);
	err = sim_shared_check(sim, why, whylen);
#undef FAIL
out:
	free(count);
	return err;
}

/* ---- the backend ops -------------------------------------------------- */

/* Start of every op: count it, run the injector, and fail it if asked. */
int sim_op_enter(struct sp_sim *sim, const char *op)
{
	sim->cnt.ops++;
	if (sim->inject && !sim->in_inject) {
		sim->in_inject = 1;
		sim->inject(sim, op, sim->inject_arg);
		sim->in_inject = 0;
	}
	if (sim->fault_op[0] && !strcmp(sim->fault_op, op)) {
		sim->fault_op[0] = 0;
		return sim->fault_err;
	}
	return 0;
}

static int op_probe(void *be, void *space, uintptr_t addr, size_t len,
		    struct sp_extent *ext)
{
	struct sp_sim *sim = be;
	struct sp_sim_space *sp = space;
	uintptr_t end = addr + len;
	struct sim_map *m;
	int err = sim_op_enter(sim, "probe");

	if (err)
		return err;
	m = map_of(sp, addr);
	if (m) {
		ext->kind = m->kind == SP_SIM_PRIVATE ? SP_EXT_MERGEABLE
						      : SP_EXT_OTHER;
		ext->end = m->end < end ? m->end : end;
		/* A neighbour of the same kind continues the extent. */
		while (m->next && m->next->start == ext->end &&
		       m->next->kind == m->kind && ext->end < end) {
			m = m->next;
			ext->end = m->end < end ? m->end : end;
		}
		return 0;
	}
	ext->kind = SP_EXT_HOLE;
	ext->end = end;
	for (m = sp->maps; m; m = m->next)
		if (m->start > addr && m->start < ext->end)
			ext->end = m->start;
	return 0;
}

static int op_state(void *be, void *space, uintptr_t addr, size_t n,
		    uint8_t *out)
{
	struct sp_sim *sim = be;
	int err = sim_op_enter(sim, "state");

	if (err)
		return err;
	for (size_t i = 0; i < n; i++) {
		struct sim_map *m;
		struct sim_pte *pte = sim_pte_of(space, addr + i * PS, &m);

		if (!pte)
			out[i] = SP_PS_UNMAPPED;
		else if (m->kind != SP_SIM_PRIVATE)
			out[i] = SP_PS_OTHER;
		else if (!pte->frame)
			out[i] = SP_PS_NONE;
		else if (sim->frame[pte->frame].stable)
			out[i] = SP_PS_STABLE;
		else
			out[i] = SP_PS_ANON;
	}
	return 0;
}

/* Op @op reading the page at @addr: enter it (sim_op_enter), then its bytes
 * (the frame's, or generated into @buf).  Return: the bytes, or NULL
 * with *err the injected fault or -EFAULT (unmapped). */
static const void *op_read(struct sp_sim *sim, void *space, uintptr_t addr,
			   const char *op, void *buf, int *err)
{
	struct sim_pte *pte;

	*err = sim_op_enter(sim, op);
	if (*err)
		return NULL;
	pte = sim_pte_of(space, addr, NULL);
	if (!pte) {
		*err = -EFAULT;
		return NULL;
	}
	return sim_frame_bytes(sim, pte->frame, buf);
}

static const void *op_peek(void *be, void *space, uintptr_t addr, void *buf)
{
	int err;

	return op_read(be, space, addr, "peek", buf, &err);
}

static int op_cmp(void *be, void *space, uintptr_t addr, const void *key,
		  int *order)
{
	uint8_t buf[PS];
	int err;
	const void *p = op_read(be, space, addr, "cmp", buf, &err);

	if (!p)
		return err;
	*order = memcmp(key, p, PS);
	return 0;
}

static int op_hash(void *be, void *space, uintptr_t addr, uint64_t *hash)
{
	uint8_t buf[PS];
	int err;
	const void *p = op_read(be, space, addr, "hash", buf, &err);

	if (!p)
		return err;
	*hash = sp_hash_page(p);
	return 0;
}

static int op_protect(void *be, void *space, uintptr_t addr, size_t n,
		      uint8_t *held)
{
	struct sp_sim *sim = be;
	int err = sim_op_enter(sim, "protect");

	if (err)
		return err;
	if (!range_mapped(space, addr, n))
		return -EFAULT;
	for (size_t i = 0; i < n; i++)
		if (sim_pte_of(space, addr + i * PS, NULL)->wp)
			return -EBUSY;	/* protected twice: engine bug */
	for (size_t i = 0; i < n; i++) {
		struct sim_pte *pte = sim_pte_of(space, addr + i * PS, NULL);

		held[i] = !pte->frame || !sim->frame[pte->frame].pins;
		pte->wp = held[i];
	}
	return 0;
}

static void op_unprotect(void *be, void *space, uintptr_t addr, size_t n)
{
	struct sp_sim *sim = be;

	sim_op_enter(sim, "unprotect");
	for (size_t i = 0; i < n; i++) {
		struct sim_pte *pte = sim_pte_of(space, addr + i * PS, NULL);

		if (pte)
			pte->wp = 0;
	}
	flush_queue(sim, space, addr, n);
}

static int op_replace(void *be, void *space, uintptr_t addr, size_t n,
		      sp_spage_t first)
{
	struct sp_sim *sim = be;
	int err = sim_op_enter(sim, "replace");

	if (err)
		return err;
	if (!range_mapped(space, addr, n))
		return -EFAULT;
	for (size_t i = 0; i < n; i++) {
		struct sim_map *m;

		sim_pte_of(space, addr + i * PS, &m);
		if (first + i >= sim->store_cap || !sim->store[first + i] ||
		    m->kind != SP_SIM_PRIVATE)
			return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		struct sim_pte *pte = sim_pte_of(space, addr + i * PS, NULL);
		uint32_t f = sim->store[first + i];

		if (!pte->wp)
			sim->unprotected_changes++;
		sim->frame[f].ref++;
		sim_frame_put(sim, pte->frame);
		pte->frame = f;
	}
	return 0;
}

static int op_zap(void *be, void *space, uintptr_t addr, size_t n)
{
	struct sp_sim *sim = be;
	int err = sim_op_enter(sim, "zap");

	if (err)
		return err;
	if (!range_mapped(space, addr, n))
		return -EFAULT;
	for (size_t i = 0; i < n; i++) {
		struct sim_pte *pte = sim_pte_of(space, addr + i * PS, NULL);

		if (!pte->wp)
			sim->unprotected_changes++;
		sim_frame_put(sim, pte->frame);
		pte->frame = 0;
	}
	return 0;
}

static int op_unmerge(void *be, void *space, uintptr_t addr, size_t n)
{
	struct sp_sim *sim = be;
	int err = sim_op_enter(sim, "unmerge");

	if (err)
		return err;
	for (size_t i = 0; i < n; i++) {
		struct sim_pte *pte = sim_pte_of(space, addr + i * PS, NULL);
		uint32_t f, nf;

		if (!pte)
			continue;
		f = pte->frame;
		if (f && sim->frame[f].ref - sim->frame[f].pins == 1 &&
		    !sim->frame[f].stable)
			continue;	/* already private */
		err = frame_copy(sim, f, &nf);
		if (err)
			return err;
		sim_frame_put(sim, f);
		pte->frame = nf;
	}
	return 0;
}

int sim_store_reserve(struct sp_sim *sim, uint32_t need)
{
	uint32_t cap = sim->store_cap ? sim->store_cap : 1024;
	uint32_t *s, *r;
	uint64_t *h;

	if (need <= sim->store_cap)
		return 0;
	while (cap < need)
		cap *= 2;
	/* store_cap grows only once all three have: a failure leaves some
	 * arrays larger than it, never smaller. */
	s = realloc(sim->store, (size_t)cap * sizeof(*s));
	if (!s)
		return -ENOMEM;
	sim->store = s;
	r = realloc(sim->sref, (size_t)cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	sim->sref = r;
	h = realloc(sim->shash, (size_t)cap * sizeof(*h));
	if (!h)
		return -ENOMEM;
	sim->shash = h;
	memset(s + sim->store_cap, 0, (cap - sim->store_cap) * sizeof(*s));
	memset(r + sim->store_cap, 0, (cap - sim->store_cap) * sizeof(*r));
	memset(h + sim->store_cap, 0, (cap - sim->store_cap) * sizeof(*h));
	sim->store_cap = cap;
	return 0;
}

static int op_stable_alloc(void *be, size_t n, sp_spage_t *first)
{
	struct sp_sim *sim = be;
	uint32_t f;
	int err = sim_op_enter(sim, "stable_alloc");

	if (err)
		return err;
	if (!n || n > UINT32_MAX)
		return -EINVAL;
	err = sp_ralloc_get(&sim->store_ids, (uint32_t)n, &f);
	if (err)
		return err;
	err = sim_store_reserve(sim, f + (uint32_t)n);
	if (err) {
		sp_ralloc_put(&sim->store_ids, f, (uint32_t)n);
		return err;
	}
	*first = f;
	return 0;
}

static int op_stable_write(void *be, sp_spage_t first, size_t n,
			   const void *const *src)
{
	struct sp_sim *sim = be;
	int err = sim_op_enter(sim, "stable_write");

	if (err)
		return err;
	for (size_t i = 0; i < n; i++) {
		uint32_t f;

		if (!sp_ralloc_used(&sim->store_ids, first + (uint32_t)i) ||
		    sim->store[first + i])
			return -EINVAL;	/* not allocated, or written twice */
		err = sim_frame_new(sim, &f);
		if (!err) {
			sim->frame[f].data = malloc(PS);
			if (!sim->frame[f].data) {
				sim_frame_put(sim, f);
				err = -ENOMEM;
			}
		}
		if (err) {
			/* Undo this call's pages: all or nothing. */
			while (i--) {
				sim_frame_put(sim, sim->store[first + i]);
				sim->store[first + i] = 0;
			}
			return err;
		}
		memcpy(sim->frame[f].data, src[i], PS);
		sim->frame[f].stable = 1;
		sim->cnt.stable_frames++;
		sim->store[first + i] = f;
	}
	return 0;
}

static const void *op_stable_peek(void *be, sp_spage_t page, void *buf)
{
	struct sp_sim *sim = be;

	(void)buf;
	if (sim_op_enter(sim, "stable_peek"))
		return NULL;
	if (page >= sim->store_cap || !sim->store[page])
		return NULL;
	return sim->frame[sim->store[page]].data;
}

static void op_stable_release(void *be, sp_spage_t first, size_t n)
{
	struct sp_sim *sim = be;

	sim_op_enter(sim, "stable_release");
	for (size_t i = 0; i < n; i++) {
		uint32_t f = first + i < sim->store_cap ? sim->store[first + i]
							: 0;

		if (f && sim_shared_put(sim, first + (sp_spage_t)i))
			continue;	/* a shared page others still hold */
		if (f) {
			sim->store[first + i] = 0;
			if (sim->frame[f].ref > 1) {
				/* Still mapped: on Linux the hole punch would
				 * make those mappings read zeros. */
				sim->cnt.released_while_mapped++;
				memset(sim->frame[f].data, 0, PS);
			}
			sim_frame_put(sim, f);
		}
		if (sp_ralloc_used(&sim->store_ids, first + (uint32_t)i))
			sp_ralloc_put(&sim->store_ids, first + (uint32_t)i, 1);
	}
}

/* The ops both tables have. */
#define SIM_OPS_COMMON                                                       \
	.probe = op_probe,                                                   \
	.state = op_state,                                                   \
	.peek = op_peek,                                                     \
	.hash = op_hash,                                                     \
	.cmp = op_cmp,                                                       \
	.protect = op_protect,                                               \
	.unprotect = op_unprotect,                                           \
	.replace = op_replace,                                               \
	.zap = op_zap,                                                       \
	.unmerge = op_unmerge,                                               \
	.stable_alloc = op_stable_alloc,                                     \
	.stable_write = op_stable_write,                                     \
	.stable_peek = op_stable_peek,                                       \
	.stable_release = op_stable_release

const struct sp_backend_ops sp_sim_ops = {
	SIM_OPS_COMMON,
};

/* The same with a store shared by every engine on the simulator. */
const struct sp_backend_ops sp_sim_shared_ops = {
	SIM_OPS_COMMON,
	.lookup = sim_op_lookup,
	.look = sim_op_look,
};
