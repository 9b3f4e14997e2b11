/*
 * dir.h - samepaged's directory for one store: the lossy table of
 * nominations and of the hashes the store holds, kept in a sealed memfd
 * that clients map read-only (the layout is in proto.h, "The directory").
 *
 * Only the daemon writes it, through its own mapping made before the
 * seal; every write is one aligned 64-bit store, so a reader in another
 * process sees each entry either before or after it changed.
 *
 * Not thread-safe: the daemon is one thread.
 */
#ifndef SP_DAEMON_DIR_H
#define SP_DAEMON_DIR_H

#include <stdint.h>

#include "proto.h"

struct dir {
	int fd;				/* O_RDWR memfd, sealed; -1: none */
	struct spp_dir_hdr *hdr;	/* our writable mapping of it */
	uint64_t *e;			/* hdr's entries, [0, n) */
	uint32_t n;			/* entries, a power of two */
	uint32_t used;			/* entries not empty */
	uint64_t clock;			/* picks the way a full set evicts */
	uint32_t max;			/* entries it may grow to */
};

/* dir_init - an empty directory of @n entries (a power of two, at least
 * 2 * SPP_DIR_WAYS) that grows up to @max (>= @n, at most SPP_DIR_MAX).
 * Return: 0 or -errno (memfd, mmap, seals). */
int dir_init(struct dir *d, uint32_t n, uint32_t max);
void dir_free(struct dir *d);

/* dir_fd - a new read-only fd of the current table (caller closes it),
 * or -errno. */
int dir_fd(const struct dir *d);

/* dir_find - the tag of an entry for @hash, preferring SPP_DIR_STORED,
 * then any tag but @mine, then @mine; 0 if @hash has none. */
uint64_t dir_find(const struct dir *d, uint64_t hash, uint64_t mine);

/*
 * dir_put - record @hash with @tag unless that entry exists: in the
 * emptier of its two sets, else over a nomination (a way the clock
 * picks if both sets hold only PAIRED and STORED entries).  Grows the
 * table (a new memfd; the old one is marked retired) past 13/16 full,
 * and from half full before a PAIRED or STORED entry would be
 * overwritten, up to its max, keeping every entry; if growing fails
 * the table keeps working, with more evictions.
 */
void dir_put(struct dir *d, uint64_t hash, uint64_t tag);

/*
 * dir_set - make @tag the only entry of @hash: an entry of @hash is
 * overwritten in place and the others dropped after it, so that a
 * client reading the table meanwhile sees the old tag or the new one,
 * never neither; placed as by dir_put if @hash has no entry.
 */
void dir_set(struct dir *d, uint64_t hash, uint64_t tag);

/* dir_drop - remove the entries for @hash with @tag (0: every tag).
 * Return: how many went. */
unsigned dir_drop(struct dir *d, uint64_t hash, uint64_t tag);

/* dir_drop_tag - remove every entry with @tag.  O(table size). */
void dir_drop_tag(struct dir *d, uint64_t tag);

/* dir_bytes - memory the table takes (counted in meta_bytes). */
uint64_t dir_bytes(const struct dir *d);

#endif
