/*
 * proto.h - the wire protocol between samepaged and its clients (the
 * in-process agents, and the `samepage stat/set` control commands).
 *
 * Transport: a unix SOCK_SEQPACKET socket, so every message arrives whole
 * or not at all and its length is known.  A message is a header and
 * @count fixed-size items (or one fixed body); the receiver checks that
 * the length is exactly what type and count say, before reading a byte of
 * the body (spp_check).  Nothing in a message is trusted beyond that: the
 * daemon hashes content itself and every page a process maps is compared
 * by that process against its own bytes first.
 *
 * Requests and their answers (c: client, d: daemon):
 *   HELLO   c->d  body spp_hello           d: HELLO_R body spp_hello_r
 *   GETSEG  c->d  body u32 segment         d: SEG body spp_seg + the
 *                                             segment's read-only fd
 *   GETDIR  c->d  body u32 (0)             d: DIR body spp_dir + a read-only
 *                                             fd of the directory (below)
 *   NOMINATE c->d count x u64 hash         no answer: "no partner for
 *                                             these in me" (lossy, one way);
 *                                             a hash another process
 *                                             nominated becomes PAIRED
 *   HINT    c->d  count x u64 hash         no answer: "first look at
 *                                             these in me" (lossy, one way;
 *                                             store_hint)
 *   LOOKUP  c->d  count x u64 hash         d: LOOKUP_R count x spp_ref:
 *                                             a stable page with that hash
 *                                             (a reference now held by the
 *                                             client), NONE, or UPLOAD (some
 *                                             other process nominated the
 *                                             same hash: send the bytes)
 *   FIND    c->d  count x u64 hash         d: LOOKUP_R count x spp_ref:
 *                                             as LOOKUP, for pages not yet
 *                                             seen stable: a stored page
 *                                             (a reference now held) or
 *                                             NONE; never nominates, never
 *                                             asks for an upload
 *   INTERN  c->d  count x 4096 bytes       d: INTERN_R count x spp_ref
 *                                             (an existing page with equal
 *                                             bytes, or a new one; NONE if
 *                                             the store is full)
 *   UNREF   c->d  count x spp_ref          no answer: references dropped
 *   CLAIM   c->d  count x spp_ref          d: CLAIM_R count x u32 (1: the
 *                                             page lives, reference taken)
 *   REPORT  c->d  body spp_report          d: KNOBS body spp_knobs
 *   STAT    c->d  body u32 pid (0: all)    d: STAT_R body spp_stat_r
 *   SET     c->d  body spp_set             d: ERR (0 or -errno)
 * Anything malformed gets ERR -EBADMSG and changes nothing.
 */
#ifndef SP_PROTO_H
#define SP_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SPP_VERSION 6
#define SPP_MAX_MSG (128u * 1024)	/* largest message, header included */
#define SPP_PAGE 4096u
/* Pages per INTERN (fits SPP_MAX_MSG).  Fewer, larger messages cost the
 * daemon, the bottleneck while two processes merge, fewer wake-ups and
 * syscalls: 15 -> 31 pages took its CPU on the headline workload from
 * 0.225 to 0.19 CPU-s and converge from 0.45 to 0.41 s (medians of 6
 * alternating runs); 47 did no better.  A sender's socket must hold a
 * whole message (unix sockets refuse one larger than the send buffer,
 * net.core.wmem_default, 208 KiB by default): lx_client sends fewer
 * pages per message when it is smaller. */
#define SPP_MAX_INTERN 31u
#define SPP_MAX_ITEMS 4096u		/* hashes or refs per message */

enum spp_type {
	SPP_HELLO = 1, SPP_HELLO_R,
	SPP_GETSEG, SPP_SEG,
	SPP_LOOKUP, SPP_LOOKUP_R,
	SPP_INTERN, SPP_INTERN_R,
	SPP_UNREF,
	SPP_CLAIM, SPP_CLAIM_R,
	SPP_REPORT, SPP_KNOBS,
	SPP_STAT, SPP_STAT_R,
	SPP_SET,
	SPP_ERR,
	SPP_GETDIR, SPP_DIR,
	SPP_NOMINATE,
	SPP_HINT,
	SPP_FIND,
	SPP_TYPE_END
};

struct spp_hdr {
	uint32_t type;		/* enum spp_type */
	uint32_t count;		/* items that follow (see each type) */
};

/* A stable page of the shared store: segment and page slot in it. */
struct spp_ref {
	uint32_t seg, slot;
};
#define SPP_SEG_NONE UINT32_MAX		/* no such page */
#define SPP_SEG_UPLOAD (UINT32_MAX - 1)	/* LOOKUP_R: send its bytes */

struct spp_hello {
	uint32_t version;
	uint32_t pid;		/* informative: the daemon uses SO_PEERCRED */
};

struct spp_hello_r {
	uint32_t version;
	uint32_t nseg;		/* segments existing now */
	uint64_t epoch;		/* this daemon's run: refs of another epoch
				 * mean nothing to it */
	uint32_t seg_pages;	/* pages per segment */
	uint32_t pad;
};

struct spp_seg {
	uint32_t seg;
	uint32_t pages;
};

/*
 * The directory: the daemon's table of recent nominations and of the
 * hashes its store holds, in a sealed memfd that clients map read-only,
 * so that a client learns without a message whether a hash is worth a
 * LOOKUP (stored), an upload (another process nominated it, or PAIRED:
 * two processes hinted or nominated it), nothing (it nominated the hash
 * itself) or a one-way NOMINATE (unknown).  At a page's first look the
 * client sends a HINT instead, for an unknown hash or one that another
 * process nominated.
 *
 * Layout: struct spp_dir_hdr, then @entries (a power of two) u64 entries:
 * 0 (empty) or hash & SPP_DIR_HASH | tag, where tag is a client's
 * spp_dir_tag, SPP_DIR_PAIRED or SPP_DIR_STORED.  A hash lives in one of
 * two sets of SPP_DIR_WAYS entries (spp_dir_set).  Lossy: entries are
 * evicted when both sets are full, and a reader sees the daemon's writes
 * as they happen (each entry is one aligned 64-bit store, never torn).
 * When the table grows the daemon makes a new memfd and sets @retired in
 * the old one: a client then asks for the new one (GETDIR).  Nothing
 * read here is trusted: it only chooses which message to send.
 */
struct spp_dir {
	uint32_t entries;	/* in the fd's table */
	uint32_t tag;		/* this client's tag in its entries */
};

struct spp_dir_hdr {
	uint64_t magic;		/* SPP_DIR_MAGIC */
	uint32_t entries;
	uint32_t retired;	/* 1: a bigger table replaced this one */
	uint64_t pad[6];	/* the entries start on a cache line */
};

#define SPP_DIR_MAGIC 0x7370646972303031ull	/* "spdir001" */
#define SPP_DIR_WAYS 8u	/* a set is one cache line */
#define SPP_DIR_HASH (~(uint64_t)0xff)	/* the hash bits an entry keeps */
#define SPP_DIR_STORED 0xffu		/* tag: the store holds the hash */
#define SPP_DIR_PAIRED 0xfeu		/* tag: two processes or more
					 * nominated the hash */
#define SPP_DIR_MAX (1u << 24)		/* entries, at most */

/* Bytes of a directory of @n entries, header included. */
static inline size_t spp_dir_bytes(uint32_t n)
{
	return sizeof(struct spp_dir_hdr) + (size_t)n * sizeof(uint64_t);
}

/* The tag of client @id (1..253; distinct ids may share one). */
static inline uint64_t spp_dir_tag(uint32_t id)
{
	return id % 253 + 1;
}

/* First entry of set @k (0 or 1) of @hash in a table of @n entries.  Both
 * come from bits an entry keeps, so a bigger table can place it again. */
static inline uint32_t spp_dir_set(uint64_t hash, uint32_t n, unsigned k)
{
	return (uint32_t)(hash >> (k ? 36 : 8)) & (n - 1) &
	       ~(SPP_DIR_WAYS - 1);
}

/*
 * spp_dir_find - the tag of an entry for @hash among the @n entries @e:
 * SPP_DIR_STORED if there is one, else any tag but @mine, else @mine;
 * 0 if @hash has none.  Each entry is loaded once, whole, so a reader
 * may run while the daemon writes (what it sees is only a hint).
 */
static inline uint64_t spp_dir_find(const uint64_t *e, uint32_t n,
				    uint64_t hash, uint64_t mine)
{
	uint64_t best = 0;

	for (unsigned k = 0; k < 2; k++) {
		const uint64_t *s = &e[spp_dir_set(hash, n, k)];

		for (unsigned w = 0; w < SPP_DIR_WAYS; w++) {
			uint64_t v = __atomic_load_n(&s[w], __ATOMIC_RELAXED);
			uint64_t t = v & ~SPP_DIR_HASH;

			if (!v || (v & SPP_DIR_HASH) != (hash & SPP_DIR_HASH))
				continue;
			if (t == SPP_DIR_STORED)
				return t;
			if (!best || best == mine)
				best = t;
		}
	}
	return best;
}

/*
 * spp_dir_prefetch - start loading the two sets of @hash, for a loop
 * over many hashes that issues these for all of them first, so that
 * their cache misses overlap.  Never faults.
 */
static inline void spp_dir_prefetch(const uint64_t *e, uint32_t n,
				    uint64_t hash)
{
	__builtin_prefetch(&e[spp_dir_set(hash, n, 0)]);
	__builtin_prefetch(&e[spp_dir_set(hash, n, 1)]);
}

/*
 * Counters a process reports and the daemon sums, in this order, named as
 * in /sys/kernel/mm/ksm (global) and /proc/PID/ksm_stat (per process).
 */
enum spp_stat {
	SPS_PAGES_SHARED, SPS_PAGES_SHARING, SPS_PAGES_UNSHARED,
	SPS_PAGES_VOLATILE, SPS_PAGES_SCANNED, SPS_PAGES_SKIPPED,
	SPS_FULL_SCANS, SPS_GENERAL_PROFIT, SPS_KSM_ZERO_PAGES,
	SPS_STABLE_NODE_CHAINS, SPS_STABLE_NODE_DUPS,
	/* per process (ksm_stat) */
	SPS_KSM_RMAP_ITEMS, SPS_KSM_MERGING_PAGES, SPS_KSM_PROCESS_PROFIT,
	/* samepage's own */
	SPS_KSM_MERGE_ANY,	/* PR_SET_MEMORY_MERGE in force */
	SPS_SHARED_GLOBAL,	/* stable pages of the shared store it maps */
	SPS_META_BYTES, SPS_CPU_NS,
	SPS_PAGES_TO_SCAN,	/* in force now (the advisor tunes it) */
	SPS_SCAN_SHARE,		/* pages it scans per sleep_millisecs: its
				 * share of the domain's pages_to_scan */
	SPS_ZERO_MERGED,	/* zero-filled pages merged with
				 * use_zero_pages 0 (on the zero page) */
	SPS_DAEMON_CPU_NS,	/* STAT_R only: samepaged's own CPU */
	SPS_COUNT
};

enum spp_knob {
	SPK_RUN, SPK_PAGES_TO_SCAN, SPK_SLEEP_MILLISECS, SPK_MAX_PAGE_SHARING,
	SPK_USE_ZERO_PAGES, SPK_SMART_SCAN,
	SPK_ADVISOR_MODE,		/* 0 none, 1 scan-time */
	SPK_ADVISOR_TARGET_SCAN_TIME,	/* seconds */
	SPK_ADVISOR_MAX_CPU,		/* percent */
	SPK_ADVISOR_MIN_PAGES_TO_SCAN, SPK_ADVISOR_MAX_PAGES_TO_SCAN,
	SPK_COUNT
};

struct spp_report {
	uint32_t pid;		/* STAT_R for all: number of processes */
	uint32_t pad;
	int64_t v[SPS_COUNT];
};

struct spp_knobs {
	uint64_t generation;	/* 0: never set; agents keep their own */
	uint64_t v[SPK_COUNT];
	uint64_t scan_pages;	/* pages the domain's processes scan (the
				 * ksm_rmap_items they last reported,
				 * summed): an agent's share of
				 * pages_to_scan is its part of these */
};

/* STAT_R: counters, and the knobs in force for the domain. */
struct spp_stat_r {
	struct spp_report rep;
	struct spp_knobs knobs;
};

struct spp_set {
	uint32_t knob;		/* enum spp_knob */
	uint32_t pad;
	uint64_t value;
};

/* Names (sysfs spelling) of the counters and knobs; NULL-free tables. */
extern const char *const spp_stat_name[SPS_COUNT];
extern const char *const spp_knob_name[SPK_COUNT];
/* The knobs' defaults (KSM's) and their validation: 0 or -EINVAL. */
extern const uint64_t spp_knob_default[SPK_COUNT];
int spp_knob_check(unsigned knob, uint64_t value);
/* spp_knob_lookup - index of a knob by name, or -EINVAL. */
int spp_knob_lookup(const char *name);

/*
 * spp_check - whether a received message of @len bytes is well formed:
 * a known type and exactly the length its count says.
 * Return: 0 or -EBADMSG.  Pure.
 */
int spp_check(const void *msg, size_t len);

/*
 * spp_send - send one message (header + @len bytes of @body), with @fd
 * attached if >= 0.  @flags as send(2) (MSG_DONTWAIT for the daemon).
 * Return: 0 or -errno.  May block (without MSG_DONTWAIT) up to the
 * socket's send timeout.
 */
int spp_send(int sock, uint32_t type, uint32_t count, const void *body,
	     size_t len, int fd, int flags);

/*
 * spp_sendv - spp_send with the body in @nbody (at most SPP_MAX_INTERN)
 * pieces, which the kernel copies into the message itself.  A piece it
 * cannot read fails the whole send with -EFAULT, and nothing is sent
 * (a datagram is queued whole or not at all).
 */
int spp_sendv(int sock, uint32_t type, uint32_t count,
	      const struct iovec *body, unsigned nbody, int fd, int flags);

/*
 * spp_intern_fit - pages of an INTERN that socket @sock can send: a unix
 * socket refuses a message longer than its send buffer, whatever
 * SPP_MAX_MSG allows.  At most SPP_MAX_INTERN, at least 1 (with a
 * buffer smaller than a page the send fails, as any failed send does).
 * Never blocks.
 */
uint32_t spp_intern_fit(int sock);

/*
 * spp_recv - receive one message into @buf (SPP_MAX_MSG bytes) and check
 * it.  A received fd goes to *fd (if @fd is not NULL, else it is
 * closed); *fd is -1 when none came.
 * Return: the message length, 0 at end of stream, -EBADMSG (malformed or
 * truncated: discarded), or -errno.
 */
ssize_t spp_recv(int sock, void *buf, int *fd, int flags);

/*
 * spp_socket_path - the per-user daemon's socket: $SAMEPAGE_SOCKET, else
 * $XDG_RUNTIME_DIR/samepage/samepaged.sock, else
 * /tmp/samepage-UID/samepaged.sock.  Return: 0 or -ENAMETOOLONG.
 */
int spp_socket_path(char *buf, size_t len);

/*
 * spp_connect - connect to the daemon at @path with send and receive
 * timeouts of @timeout_ms.  Return: the socket, or -errno.
 */
int spp_connect(const char *path, unsigned timeout_ms);

/*
 * spp_call - send a request and wait for its answer (of type @want, or
 * ERR).  Return: the answer's length (in @buf), -EPROTO for an answer of
 * another type, the ERR's value, or -errno.
 */
ssize_t spp_call(int sock, uint32_t type, uint32_t count, const void *body,
		 size_t len, uint32_t want, void *buf, int *fd);

#endif
