/*
 * sim_impl.h - the simulated backend's data, shared by its two files:
 * sim.c (frames, page tables, the engine's own stable store, the ops)
 * and sim_shared.c (a store shared by several engines, as samepaged's
 * is by processes: ops->lookup).  Private to the simulator.
 *
 * Nothing here is thread-safe: the simulator is driven from one thread
 * (see samepage.h, "The simulated backend").
 */
#ifndef SP_SIM_IMPL_H
#define SP_SIM_IMPL_H

#include <stdint.h>

#include "samepage.h"
#include "../util/ralloc.h"

#define PS SP_PAGE_SIZE

struct sim_frame {
	uint32_t ref;		/* 0: free; includes pins */
	uint32_t pins;		/* DMA pins (sp_sim_pin) */
	uint8_t stable;		/* a store page (stable_write or an upload) */
	uint8_t tagged;		/* content generated from @tag, no @data */
	uint8_t *data;		/* PS bytes, or NULL */
	uint64_t tag;
};

struct sim_pte {
	uint32_t frame;		/* 0: none (reads zeros) */
	uint8_t wp;		/* write-protected */
};

struct sim_map {
	struct sim_map *next;	/* sorted by start */
	uintptr_t start, end;
	enum sp_sim_map_kind kind;
	struct sim_pte *pte;
};

struct sp_sim_space {
	struct sp_sim_space *next;
	struct sim_map *maps;
};

struct qwrite {
	struct sp_sim_space *sp;
	uintptr_t addr;		/* inside one page */
	uint32_t len;
	uint8_t *bytes;
};

/*
 * A directory entry of the shared store (sim_shared.c), keyed by the
 * 64-bit hash of a content: samepaged's directory and index in one.
 */
struct sim_dent {
	uint64_t hash;
	const void *owner;	/* NOMINATED: the space that nominated it */
	sp_spage_t page;	/* STORED: the shared store page */
	uint8_t state;		/* DENT_EMPTY, _NOMINATED, _STORED, _GONE */
};

enum { DENT_EMPTY = 0, DENT_NOMINATED, DENT_STORED, DENT_GONE };

struct sp_sim {
	struct sim_frame *frame;	/* [0] unused */
	uint32_t nframe;		/* slots in use (ids < nframe) */
	uint32_t cap;
	uint32_t *free_ids;
	uint32_t nfree, free_cap;

	/* The store.  A page is the engine's (stable_alloc) or shared
	 * (made by an upload in lookup); a shared page has sref > 0, the
	 * references lookup handed out and stable_release has not taken
	 * back, and is freed when they are all back. */
	struct sp_ralloc store_ids;
	uint32_t *store;		/* stable page -> frame (0 unwritten) */
	uint32_t *sref;			/* shared page -> references, else 0 */
	uint64_t *shash;		/* shared page -> its content's hash */
	uint32_t store_cap;

	/* The shared store's directory: open addressing, linear probing;
	 * a removed entry becomes GONE until the table is rebuilt. */
	struct sim_dent *dir;
	uint32_t dir_cap;		/* a power of two, or 0 */
	uint32_t dir_used;		/* entries not EMPTY (GONE included) */

	struct sp_sim_space *spaces;
	struct qwrite *q;
	uint32_t nq, qcap;

	sp_sim_injector_fn inject;
	void *inject_arg;
	int in_inject;
	char fault_op[32];
	int fault_err;

	struct sp_sim_counts cnt;
	uint64_t unprotected_changes;
};

/* sim.c */
int sim_frame_new(struct sp_sim *sim, uint32_t *out);
void sim_frame_put(struct sp_sim *sim, uint32_t f);
const uint8_t *sim_frame_bytes(struct sp_sim *sim, uint32_t f, void *buf);
struct sim_pte *sim_pte_of(struct sp_sim_space *sp, uintptr_t addr,
			   struct sim_map **mp);
/* Start of every op: count it, run the injector, fail it if asked. */
int sim_op_enter(struct sp_sim *sim, const char *op);
/* Room in store[], sref[] and shash[] for page numbers below @need.
 * Return: 0 or -ENOMEM. */
int sim_store_reserve(struct sp_sim *sim, uint32_t need);

/* sim_shared.c */
/* ops->lookup of sp_sim_shared_ops (samepage.h). */
int sim_op_lookup(void *be, void *space, size_t n, const uintptr_t *addr,
		  const uint64_t *hash, sp_spage_t *out);
/* ops->look of sp_sim_shared_ops: names the stored pages asked for
 * (SP_LOOK_FIND); no hint table, so first looks change nothing. */
int sim_op_look(void *be, void *space, size_t n, const uintptr_t *addr,
		const uint64_t *hash, const uint8_t *how, sp_spage_t *out);
/* Take back one reference of shared page @page.  Return: 1 if the page
 * is shared and still referenced (keep it), 0 if it is not shared or
 * this was its last reference (then its directory entry is gone, and the
 * caller frees it as any store page). */
int sim_shared_put(struct sp_sim *sim, sp_spage_t page);
/* Check the directory against the shared pages.  Return: 0, or -EUCLEAN
 * with a description in @why. */
int sim_shared_check(struct sp_sim *sim, char *why, size_t whylen);

#endif
