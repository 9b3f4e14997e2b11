/*
 * proto.c - framing, checking and naming for the samepaged protocol (see
 * proto.h): one place that knows each message's exact size.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto.h"

const char *const spp_stat_name[SPS_COUNT] = {
	[SPS_PAGES_SHARED] = "pages_shared",
	[SPS_PAGES_SHARING] = "pages_sharing",
	[SPS_PAGES_UNSHARED] = "pages_unshared",
	[SPS_PAGES_VOLATILE] = "pages_volatile",
	[SPS_PAGES_SCANNED] = "pages_scanned",
	[SPS_PAGES_SKIPPED] = "pages_skipped",
	[SPS_FULL_SCANS] = "full_scans",
	[SPS_GENERAL_PROFIT] = "general_profit",
	[SPS_KSM_ZERO_PAGES] = "ksm_zero_pages",
	[SPS_STABLE_NODE_CHAINS] = "stable_node_chains",
	[SPS_STABLE_NODE_DUPS] = "stable_node_dups",
	[SPS_KSM_RMAP_ITEMS] = "ksm_rmap_items",
	[SPS_KSM_MERGING_PAGES] = "ksm_merging_pages",
	[SPS_KSM_PROCESS_PROFIT] = "ksm_process_profit",
	[SPS_KSM_MERGE_ANY] = "ksm_merge_any",
	[SPS_SHARED_GLOBAL] = "shared_store_pages",
	[SPS_META_BYTES] = "meta_bytes",
	[SPS_CPU_NS] = "cpu_ns",
	[SPS_PAGES_TO_SCAN] = "pages_to_scan",
	[SPS_SCAN_SHARE] = "scan_share",
	[SPS_ZERO_MERGED] = "zero_merged",
	[SPS_DAEMON_CPU_NS] = "daemon_cpu_ns",
};

const char *const spp_knob_name[SPK_COUNT] = {
	[SPK_RUN] = "run",
	[SPK_PAGES_TO_SCAN] = "pages_to_scan",
	[SPK_SLEEP_MILLISECS] = "sleep_millisecs",
	[SPK_MAX_PAGE_SHARING] = "max_page_sharing",
	[SPK_USE_ZERO_PAGES] = "use_zero_pages",
	[SPK_SMART_SCAN] = "smart_scan",
	[SPK_ADVISOR_MODE] = "advisor_mode",
	[SPK_ADVISOR_TARGET_SCAN_TIME] = "advisor_target_scan_time",
	[SPK_ADVISOR_MAX_CPU] = "advisor_max_cpu",
	[SPK_ADVISOR_MIN_PAGES_TO_SCAN] = "advisor_min_pages_to_scan",
	[SPK_ADVISOR_MAX_PAGES_TO_SCAN] = "advisor_max_pages_to_scan",
};

/* KSM's defaults (mm/ksm.c, 6.8+). */
const uint64_t spp_knob_default[SPK_COUNT] = {
	[SPK_RUN] = 1,
	[SPK_PAGES_TO_SCAN] = 100,
	[SPK_SLEEP_MILLISECS] = 20,
	[SPK_MAX_PAGE_SHARING] = 256,
	[SPK_USE_ZERO_PAGES] = 0,
	[SPK_SMART_SCAN] = 1,
	[SPK_ADVISOR_MODE] = 0,
	[SPK_ADVISOR_TARGET_SCAN_TIME] = 200,
	[SPK_ADVISOR_MAX_CPU] = 70,
	[SPK_ADVISOR_MIN_PAGES_TO_SCAN] = 500,
	[SPK_ADVISOR_MAX_PAGES_TO_SCAN] = 30000,
};

int spp_knob_check(unsigned knob, uint64_t v)
{
	switch (knob) {
	case SPK_RUN:
		return v <= 2 ? 0 : -EINVAL;
	case SPK_PAGES_TO_SCAN:
	case SPK_SLEEP_MILLISECS:
		return v <= UINT32_MAX ? 0 : -EINVAL;
	case SPK_MAX_PAGE_SHARING:
		return v >= 2 && v <= INT32_MAX ? 0 : -EINVAL;
	case SPK_USE_ZERO_PAGES:
	case SPK_SMART_SCAN:
	case SPK_ADVISOR_MODE:
		return v <= 1 ? 0 : -EINVAL;
	case SPK_ADVISOR_TARGET_SCAN_TIME:
		return v >= 1 && v <= 86400 ? 0 : -EINVAL;
	case SPK_ADVISOR_MAX_CPU:
		return v >= 1 && v <= 100 ? 0 : -EINVAL;
	case SPK_ADVISOR_MIN_PAGES_TO_SCAN:
	case SPK_ADVISOR_MAX_PAGES_TO_SCAN:
		return v >= 1 && v <= UINT32_MAX ? 0 : -EINVAL;
	}
	return -EINVAL;
}

int spp_knob_lookup(const char *name)
{
	for (int i = 0; i < SPK_COUNT; i++)
		if (!strcmp(name, spp_knob_name[i]))
			return i;
	return -EINVAL;
}

/* Size of one item of @type and the count range it allows. */
static int shape(uint32_t type, size_t *item, uint32_t *min, uint32_t *max)
{
	*min = *max = 1;
	switch (type) {
	case SPP_HELLO: *item = sizeof(struct spp_hello); break;
	case SPP_HELLO_R: *item = sizeof(struct spp_hello_r); break;
	case SPP_GETSEG: *item = sizeof(uint32_t); break;
	case SPP_SEG: *item = sizeof(struct spp_seg); break;
	case SPP_LOOKUP:
	case SPP_FIND:
	case SPP_NOMINATE:
	case SPP_HINT:
		*item = sizeof(uint64_t);
		*max = SPP_MAX_ITEMS;
		break;
	case SPP_GETDIR: *item = sizeof(uint32_t); break;
	case SPP_DIR: *item = sizeof(struct spp_dir); break;
	case SPP_LOOKUP_R:
	case SPP_UNREF:
	case SPP_CLAIM:
		*item = sizeof(struct spp_ref);
		*max = SPP_MAX_ITEMS;
		break;
	case SPP_CLAIM_R: *item = sizeof(uint32_t); *max = SPP_MAX_ITEMS; break;
	case SPP_INTERN: *item = SPP_PAGE; *max = SPP_MAX_INTERN; break;
	case SPP_INTERN_R:
		*item = sizeof(struct spp_ref);
		*max = SPP_MAX_INTERN;
		break;
	case SPP_REPORT: *item = sizeof(struct spp_report); break;
	case SPP_STAT_R: *item = sizeof(struct spp_stat_r); break;
	case SPP_KNOBS: *item = sizeof(struct spp_knobs); break;
	case SPP_STAT: *item = sizeof(uint32_t); break;
	case SPP_SET: *item = sizeof(struct spp_set); break;
	case SPP_ERR: *item = sizeof(int32_t); break;
	default:
		return -EBADMSG;
	}
	return 0;
}

int spp_check(const void *msg, size_t len)
{
	struct spp_hdr h;
	uint32_t min, max;
	size_t item;

	if (len < sizeof(h))
		return -EBADMSG;
	memcpy(&h, msg, sizeof(h));
	if (shape(h.type, &item, &min, &max) || h.count < min ||
	    h.count > max || len != sizeof(h) + (size_t)h.count * item)
		return -EBADMSG;
	return 0;
}

int spp_send(int sock, uint32_t type, uint32_t count, const void *body,
	     size_t len, int fd, int flags)
{
	struct iovec iov = { (void *)body, len };

	return spp_sendv(sock, type, count, &iov, len ? 1 : 0, fd, flags);
}

/* The body may be a program's pages, read whole (INTERN), across its
 * allocations and their redzones: a sanitizer build makes the system
 * call itself, since the sanitizers' sendmsg checks every byte sent as
 * a read by the program (lx_guard.c says more). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define raw_sendmsg(s, m, f) \
	syscall(SYS_sendmsg, (long)(s), (long)(m), (long)(f))
#else
#define raw_sendmsg sendmsg
#endif

int spp_sendv(int sock, uint32_t type, uint32_t count,
	      const struct iovec *body, unsigned nbody, int fd, int flags)
{
	struct spp_hdr h = { type, count };
	struct iovec iov[1 + SPP_MAX_INTERN];
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 1 + nbody };
	size_t len = 0;
	ssize_t n;

	if (nbody > SPP_MAX_INTERN)
		return -EINVAL;
	iov[0] = (struct iovec){ &h, sizeof(h) };
	for (unsigned i = 0; i < nbody; i++) {
		iov[1 + i] = body[i];
		len += body[i].iov_len;
	}

	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.buf;
		m.msg_controllen = sizeof(u.buf);
		CMSG_FIRSTHDR(&m)->cmsg_level = SOL_SOCKET;
		CMSG_FIRSTHDR(&m)->cmsg_type = SCM_RIGHTS;
		CMSG_FIRSTHDR(&m)->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(CMSG_FIRSTHDR(&m)), &fd, sizeof(int));
	}
	do
		n = raw_sendmsg(sock, &m, flags | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == sizeof(h) + len ? 0 : -EMSGSIZE;
}

ssize_t spp_recv(int sock, void *buf, int *fd, int flags)
{
	struct iovec iov = { buf, SPP_MAX_MSG };
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c;
	ssize_t n;
	int got = -1;

	if (fd)
		*fd = -1;
	do
		n = recvmsg(sock, &m, flags | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* Take (or close) every fd that came, whatever else is wrong. */
	for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		     k++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
			if (got < 0 && fd)
				got = f;
			else
				close(f);
		}
	}
	if (n == 0) {
		if (got >= 0)
			close(got);
		return 0;
	}
	if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || spp_check(buf, (size_t)n)) {
		if (got >= 0)
			close(got);
		return -EBADMSG;
	}
	if (fd)
		*fd = got;
	return n;
}

int spp_socket_path(char *buf, size_t len)
{
	const char *env = getenv("SAMEPAGE_SOCKET");
	const char *rt = getenv("XDG_RUNTIME_DIR");
	int n;

	if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if (rt && *rt)
		n = snprintf(buf, len, "%s/samepage/samepaged.sock", rt);
	else
		n = snprintf(buf, len, "/tmp/samepage-%u/samepaged.sock",
			     (unsigned)getuid());
	return n < 0 || (size_t)n >= len ||
		       (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)
		       ? -ENAMETOOLONG : 0;
}

uint32_t spp_intern_fit(int sock)
{
	int sb = 0;
	socklen_t len = sizeof(sb);
	size_t room;

	if (getsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sb, &len) || sb <= 0)
		return 1;
	/* The kernel refuses a datagram longer than the buffer less 32
	 * bytes (unix_dgram_sendmsg); the header fits in what is left. */
	room = (size_t)sb > 64 ? ((size_t)sb - 64) / SPP_PAGE : 0;
	return room < 1 ? 1 : room > SPP_MAX_INTERN ? SPP_MAX_INTERN :
						       (uint32_t)room;
}

int spp_connect(const char *path, unsigned timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	int s, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	    connect(s, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		close(s);
		return err;
	}
	return s;
}

ssize_t spp_call(int sock, uint32_t type, uint32_t count, const void *body,
		 size_t len, uint32_t want, void *buf, int *fd)
{
	struct spp_hdr h;
	ssize_t n;
	int err = spp_send(sock, type, count, body, len, -1, 0);

	if (err)
		return err;
	n = spp_recv(sock, buf, fd, 0);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : n;
	memcpy(&h, buf, sizeof(h));
	if (h.type == SPP_ERR) {
		int32_t e;

		memcpy(&e, (char *)buf + sizeof(h), sizeof(e));
		if (want == SPP_ERR)
			return e;

		if (fd && *fd >= 0) {
			close(*fd);
			*fd = -1;
		}
		return e < 0 ? e : -EPROTO;
	}
	if (h.type != want) {
		if (fd && *fd >= 0) {
			close(*fd);
			*fd = -1;
		}
		return -EPROTO;
	}
	return n;
}
