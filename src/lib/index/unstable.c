/*
 * unstable.c - the unstable tree's chains through the page records, and
 * its bucket heads.
 */
#include "unstable.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define IDX_MIN 256u		/* fewest buckets */
#define LOAD_MAX 4u		/* members per bucket before the heads double */

int sp_unstable_init(struct sp_unstable *u, unsigned csum_bits,
		     const struct sp_chunktab *chunks,
		     const struct sp_mem *mem)
{
	memset(u, 0, sizeof(*u));
	u->mem = *mem;
	u->chunks = chunks;
	u->max_buckets = 1u << (csum_bits < 31 ? csum_bits : 31);
	if (u->max_buckets < IDX_MIN)
		u->max_buckets = IDX_MIN;
	return sp_ibuckets_resize(&u->idx, &u->mem, IDX_MIN);
}

void sp_unstable_destroy(struct sp_unstable *u)
{
	sp_ibuckets_free(&u->idx, &u->mem);
	u->n = u->added = 0;
}

static void push(struct sp_ibuckets *b, struct sp_rec *r, uint32_t id)
{
	uint32_t *h = sp_ibucket(b, rec_csum(r));

	r->link = *h;
	*h = id;
}

/* Double the heads and move every member to its new chain.  If the new
 * heads cannot be had, keep the old ones: chains get longer. */
static void grow(struct sp_unstable *u)
{
	struct sp_ibuckets nb = { NULL, 0 };

	if (sp_ibuckets_resize(&nb, &u->mem, u->idx.n * 2))
		return;
	for (uint32_t b = 0; b < u->idx.n; b++) {
		uint32_t id = u->idx.head[b];

		while (id != SP_INIL) {
			struct sp_rec *r = sp_unstable_rec(u, id);
			uint32_t next = r->link;

			push(&nb, r, id);
			id = next;
		}
	}
	sp_ibuckets_free(&u->idx, &u->mem);
	u->idx = nb;
}

void sp_unstable_reset(struct sp_unstable *u)
{
	/* Size the heads for the larger of the last two passes, at one to
	 * two members each: a pass adds what the last one did, give or
	 * take, and the heads double as it goes past four. */
	uint32_t used = u->added > u->peak ? u->added : u->peak;
	uint32_t want = sp_pow2_at_least(used / 2, IDX_MIN, u->max_buckets);

	u->peak = u->added;
	u->n = u->added = 0;
	if (want == u->idx.n || sp_ibuckets_resize(&u->idx, &u->mem, want))
		sp_ibuckets_clear(&u->idx);
}

void sp_unstable_add(struct sp_unstable *u, struct sp_rec *r, uint32_t id)
{
	if (u->n >= LOAD_MAX * (uint64_t)u->idx.n &&
	    u->idx.n < u->max_buckets)
		grow(u);
	push(&u->idx, r, id);
	u->n++;
	u->added++;
}

/* The link that names page @id on its chain (a bucket head or the link
 * of the member before it), or NULL if @id is on no chain. */
static uint32_t *link_to(const struct sp_unstable *u, const struct sp_rec *r,
			 uint32_t id)
{
	uint32_t *l = sp_ibucket(&u->idx, rec_csum(r));

	while (*l != SP_INIL && *l != id)
		l = &sp_unstable_rec(u, *l)->link;
	return *l == id ? l : NULL;
}

int sp_unstable_remove(struct sp_unstable *u, struct sp_rec *r, uint32_t id)
{
	uint32_t *l = link_to(u, r, id);

	if (!l)
		return 0;
	*l = r->link;
	r->link = SP_INIL;
	u->n--;
	return 1;
}

int sp_unstable_holds(const struct sp_unstable *u, const struct sp_rec *r,
		      uint32_t id)
{
	return link_to(u, r, id) != NULL;
}

#define FAIL(...)                                                            \
	do {                                                                 \
		snprintf(why, len, __VA_ARGS__);                             \
		return -EUCLEAN;                                             \
	} while (0)

int sp_unstable_verify(const struct sp_unstable *u, char *why, size_t len)
{
	uint64_t met = 0;

	if (!u->idx.n || (u->idx.n & (u->idx.n - 1)) ||
	    u->idx.n > u->max_buckets)
		FAIL("unstable tree has %u buckets", u->idx.n);
	for (uint32_t b = 0; b < u->idx.n; b++) {
		for (uint32_t id = u->idx.head[b]; id != SP_INIL;) {
			struct sp_chunk *c;
			struct sp_rec *r;

			/* More members met than counted: a cycle, or a
			 * chain joining another. */
			if (++met > u->n)
				FAIL("unstable chains hold more than %u pages",
				     u->n);
			c = sp_chunk_of_page(u->chunks, id);
			if (!c)
				FAIL("unstable page %#x in no chunk", id);
			r = &c->rec[page_slot(id)];
			if (rec_state(r) != REC_UNSTABLE)
				FAIL("unstable page %#x in state %u", id,
				     rec_state(r));
			if ((rec_csum(r) & (u->idx.n - 1)) != b)
				FAIL("unstable page %#x (checksum %#x) in bucket %u",
				     id, rec_csum(r), b);
			id = r->link;
		}
	}
	if (met != u->n)
		FAIL("unstable tree counts %u pages, chains hold %llu", u->n,
		     (unsigned long long)met);
	if (u->n > u->added)
		FAIL("unstable tree holds %u pages, %u added this pass", u->n,
		     u->added);
	return 0;
}
