/*
 * store.h - samepaged's shared stable store for one trust domain: sealed
 * memfd segments of page slots, the content index over them, reference
 * counts, nominations (the directory, dir.h), and reclaim.
 *
 * Not thread-safe: the daemon is one thread, and calls these between
 * messages.
 */
#ifndef SP_DAEMON_STORE_H
#define SP_DAEMON_STORE_H

#include <stdint.h>
#include <sys/types.h>

#define ST_SEG_SHIFT 24
#define ST_SEG_PAGES (1u << ST_SEG_SHIFT)	/* 64 GiB of slots, sparse */
#define ST_MAX_SEGS 200
#define ST_NONE UINT32_MAX
/* The hint table (store_hint): fixed size, 1 MiB, freed when no hint
 * came for ST_HINT_IDLE_MS. */
#define ST_HINT_ENTRIES (1u << 17)
#define ST_HINT_IDLE_MS 200

/* A page id: segment << ST_SEG_SHIFT | slot. */
static inline uint32_t st_gid(uint32_t seg, uint32_t slot)
{
	return seg << ST_SEG_SHIFT | slot;
}

struct store;

struct store_stats {
	uint64_t live;		/* slots holding a stable page */
	uint64_t referenced;	/* of those, referenced by some process */
	uint64_t pending;	/* unreferenced, waiting for reclaim */
	uint64_t reclaimed;	/* slots freed so far */
	uint64_t interned, deduped;	/* INTERN pages: new / already there */
	uint64_t paired;	/* hashes found in two processes before
				 * either uploaded (PAIRED entries made) */
	uint64_t meta_bytes;	/* the daemon's own bookkeeping */
};

/* store_new - an empty store (no segment yet).  Return: 0 or -ENOMEM. */
int store_new(struct store **out);
void store_free(struct store *st);

/* store_nseg - segments created so far.  store_seg_fd - a new read-only
 * fd of segment @seg for a client (caller closes it), or -errno. */
uint32_t store_nseg(const struct store *st);
int store_seg_fd(struct store *st, uint32_t seg);

/* store_lookup - a live page whose content hashed to @hash, or ST_NONE. */
uint32_t store_lookup(struct store *st, uint64_t hash);

/*
 * store_prefetch - start loading what serving each of @hash[0, n) reads
 * first (its bucket head, its directory and hint table sets), all of
 * them before the first is served.  Changes nothing, never faults.
 */
void store_prefetch(const struct store *st, const uint64_t *hash,
		    uint32_t n);

/*
 * store_intern - the page holding exactly @page's bytes: an existing one
 * (bytes compared) or a new one, written and sealed against writes by
 * anyone else.  Takes no reference.  Return: 0 and *gid, or -ENOSPC /
 * -ENOMEM / -errno (creating a segment failed).
 */
int store_intern(struct store *st, const void *page, uint32_t *gid);

/*
 * store_intern_many - store_intern for the @n pages at @pages (4 KiB
 * each, one after the other, @n <= ST_INTERN_MAX): gid[i] is the page
 * holding page i's bytes, or ST_NONE if none could be made; *@err is 0,
 * or the -errno of the first page that got none (as store_intern's).
 * New pages get slots in the order of @pages and are written in as few
 * calls as their slots allow (fill.h).  Takes no reference.  Return:
 * how many pages got one.
 */
#define ST_INTERN_MAX 64u
uint32_t store_intern_many(struct store *st, const void *pages, uint32_t n,
			   uint32_t *gid, int *err);

/* store_flush - drop from the daemon's own mapping the pages interned
 * since the last flush (until then they count in the daemon's Pss).
 * Call before the daemon waits for clients again: the pages of every
 * INTERN served since then go in one call.  Never fails. */
void store_flush(struct store *st);

/* store_live - whether @gid names a live page. */
int store_live(const struct store *st, uint32_t gid);

/* store_ref / store_unref - a process starts / stops holding @gid (live).
 * A page left without references waits for store_reclaim. */
void store_ref(struct store *st, uint32_t gid);
void store_unref(struct store *st, uint32_t gid);

/* store_dir_fd - a new read-only fd of the directory (dir.h) for a
 * client (caller closes it), and its size in *@entries; or -errno. */
int store_dir_fd(struct store *st, uint32_t *entries);

/*
 * store_nominate - process @client asked for @hash (LOOKUP) and the store
 * has no such page.  Return: 1 if another process nominated the same
 * hash recently (it is worth making a stable page now; the nomination is
 * used up), else 0 (recorded).  Lossy.
 */
int store_nominate(struct store *st, uint64_t hash, uint32_t client);

/*
 * store_propose - process @client found no partner for @hash in itself
 * and saw nothing in the directory (NOMINATE, one way): record its
 * nomination; or, if another process nominated or hinted @hash, one
 * PAIRED entry instead (both, and any other process with the hash,
 * upload it or take it at their next look); or the STORED entry if the
 * store has the page after all (the client will LOOKUP it next time).
 * Never fails (lossy).
 */
void store_propose(struct store *st, uint64_t hash, uint32_t client);

/*
 * store_hint - process @client saw a page hashing to @hash for the first
 * time (HINT, one way; nothing merges at a first look), at @now_ms (any
 * monotonic clock in ms).  If another process nominated or hinted the
 * same hash, the directory gets a PAIRED entry for it, so that both
 * merge it at their second look rather than one at its third.  Else the
 * hint waits in a private table of ST_HINT_ENTRIES (lossy: a full set
 * evicts), not in the directory: the directory keeps what it is given,
 * and most first looks at volatile memory never come back.  Never fails.
 */
void store_hint(struct store *st, uint64_t hash, uint32_t client,
		uint64_t now_ms);

/* store_hints_expire - free the hint table if no hint came for
 * ST_HINT_IDLE_MS before @now_ms.  Return: 1 if a table is left (call
 * again within ST_HINT_IDLE_MS), else 0. */
int store_hints_expire(struct store *st, uint64_t now_ms);

/*
 * store_forget_client - @client is gone: drop its nominations, so that
 * nobody is told to upload for a partner that will never look (the
 * uploader would map a store page alone).  Entries of clients sharing
 * its tag (spp_dir_tag) go too (the table is lossy).  O(table size).
 */
void store_forget_client(struct store *st, uint32_t client);

/*
 * store_reclaim - free the unreferenced pages no mapping can reach: for
 * every process of @uids, every private VMA mapping a segment at such a
 * page's offset must hold a private copy there (pagemap); shared ones
 * are the agents' views, read only where they hold references.  A process whose maps
 * or pagemap cannot be read keeps every page it might map.  Blocks on
 * /proc reads (bounded by the number of processes).
 * Return: pages freed.
 */
uint64_t store_reclaim(struct store *st, const uid_t *uids, unsigned nuids);

void store_stats_get(const struct store *st, struct store_stats *out);

#endif
