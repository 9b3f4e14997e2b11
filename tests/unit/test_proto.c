/*
 * test_proto.c - the samepaged wire protocol's checks (proto.c): every
 * message shape accepted exactly, every other length and count refused;
 * knob validation; a round trip over a real SOCK_SEQPACKET pair,
 * including a truncated message and an fd; the INTERN size a socket's
 * send buffer allows; a message sent from pieces, and none at all when
 * a piece cannot be read.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "proto.h"

static uint8_t buf[SPP_MAX_MSG + 64];

static size_t msg(uint32_t type, uint32_t count, size_t body)
{
	struct spp_hdr h = { type, count };

	memcpy(buf, &h, sizeof(h));
	memset(buf + sizeof(h), 0x5a, body);
	return sizeof(h) + body;
}

static void test_shapes(void **state)
{
	(void)state;
	/* Fixed bodies: exactly one item of exactly the size. */
	assert_int_equal(spp_check(buf, msg(SPP_HELLO, 1,
					    sizeof(struct spp_hello))), 0);
	assert_int_equal(spp_check(buf, msg(SPP_HELLO, 1,
					    sizeof(struct spp_hello) - 1)),
			 -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_HELLO, 1,
					    sizeof(struct spp_hello) + 1)),
			 -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_HELLO, 2,
					    2 * sizeof(struct spp_hello))),
			 -EBADMSG);
	/* Arrays: count within bounds and length = count * item. */
	assert_int_equal(spp_check(buf, msg(SPP_LOOKUP, 3, 24)), 0);
	assert_int_equal(spp_check(buf, msg(SPP_LOOKUP, 3, 16)), -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_LOOKUP, 0, 0)), -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_FIND, 3, 24)), 0);
	assert_int_equal(spp_check(buf, msg(SPP_FIND, 3, 32)), -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_FIND, SPP_MAX_ITEMS + 1,
					    (SPP_MAX_ITEMS + 1) * 8)),
			 -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_NOMINATE, SPP_MAX_ITEMS,
					    SPP_MAX_ITEMS * 8)), 0);
	assert_int_equal(spp_check(buf, msg(SPP_NOMINATE, SPP_MAX_ITEMS + 1,
					    (SPP_MAX_ITEMS + 1) * 8)),
			 -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_HINT, SPP_MAX_ITEMS,
					    SPP_MAX_ITEMS * 8)), 0);
	assert_int_equal(spp_check(buf, msg(SPP_HINT, 2, 8)), -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_HINT, SPP_MAX_ITEMS + 1,
					    (SPP_MAX_ITEMS + 1) * 8)),
			 -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_GETDIR, 1, 4)), 0);
	assert_int_equal(spp_check(buf, msg(SPP_GETDIR, 0, 0)), -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_DIR, 1,
					    sizeof(struct spp_dir))), 0);
	assert_int_equal(spp_check(buf, msg(SPP_DIR, 1, 4)), -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_INTERN, SPP_MAX_INTERN,
					    SPP_MAX_INTERN * SPP_PAGE)), 0);
	assert_int_equal(spp_check(buf, msg(SPP_INTERN, SPP_MAX_INTERN + 1,
					    SPP_MAX_INTERN * SPP_PAGE)),
			 -EBADMSG);
	/* A count whose product would overflow 32 bits is just refused. */
	assert_int_equal(spp_check(buf, msg(SPP_UNREF, UINT32_MAX, 8)),
			 -EBADMSG);
	/* Unknown types, short headers. */
	assert_int_equal(spp_check(buf, msg(0, 1, 4)), -EBADMSG);
	assert_int_equal(spp_check(buf, msg(SPP_TYPE_END, 1, 4)), -EBADMSG);
	assert_int_equal(spp_check(buf, 7), -EBADMSG);
	assert_int_equal(spp_check(buf, 0), -EBADMSG);
}

static void test_knobs(void **state)
{
	(void)state;
	assert_int_equal(spp_knob_lookup("pages_to_scan"), SPK_PAGES_TO_SCAN);
	assert_int_equal(spp_knob_lookup("nope"), -EINVAL);
	assert_int_equal(spp_knob_check(SPK_RUN, 2), 0);
	assert_int_equal(spp_knob_check(SPK_RUN, 3), -EINVAL);
	assert_int_equal(spp_knob_check(SPK_MAX_PAGE_SHARING, 1), -EINVAL);
	assert_int_equal(spp_knob_check(SPK_SMART_SCAN, 2), -EINVAL);
	assert_int_equal(spp_knob_check(SPK_ADVISOR_MAX_CPU, 0), -EINVAL);
	assert_int_equal(spp_knob_check(SPK_COUNT, 0), -EINVAL);
	for (int k = 0; k < SPK_COUNT; k++) {
		assert_non_null(spp_knob_name[k]);
		assert_int_equal(spp_knob_check((unsigned)k,
						spp_knob_default[k]), 0);
	}
}

static void test_roundtrip(void **state)
{
	int sv[2], fd = -1, p[2];
	uint64_t h[2] = { 1, 2 };
	ssize_t n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(spp_send(sv[0], SPP_LOOKUP, 2, h, sizeof(h), p[0], 0), 0);
	n = spp_recv(sv[1], buf, &fd, 0);
	assert_int_equal(n, sizeof(struct spp_hdr) + sizeof(h));
	assert_true(fd >= 0);
	close(fd);
	/* A lie about the count: refused, and the fd that came is closed. */
	assert_int_equal(spp_send(sv[0], SPP_LOOKUP, 3, h, sizeof(h), p[0], 0), 0);
	fd = 12345;
	assert_int_equal(spp_recv(sv[1], buf, &fd, 0), -EBADMSG);
	assert_int_equal(fd, -1);
	/* Longer than any message: truncated, refused. */
	{
		static uint8_t big[SPP_MAX_MSG + 16];

		memcpy(big, &(struct spp_hdr){ SPP_LOOKUP, 1 }, 8);
		assert_int_equal(send(sv[0], big, sizeof(big), 0),
				 (ssize_t)sizeof(big));
		assert_int_equal(spp_recv(sv[1], buf, NULL, 0), -EBADMSG);
	}
	close(sv[0]);
	assert_int_equal(spp_recv(sv[1], buf, NULL, 0), 0);	/* end */
	close(sv[1]);
	close(p[0]);
	close(p[1]);
}

/* An INTERN of spp_intern_fit pages goes through the socket, and one
 * page more does not when the fit is below SPP_MAX_INTERN: at the
 * default send buffer and at a small one. */
static void test_intern_fit(void **state)
{
	static uint8_t pages[(SPP_MAX_INTERN + 1) * SPP_PAGE];
	int sv[2], small = 20000;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	for (int round = 0; round < 2; round++) {
		uint32_t k = spp_intern_fit(sv[0]);

		assert_true(k >= 1 && k <= SPP_MAX_INTERN);
		if (round)
			assert_true(k < SPP_MAX_INTERN);
		assert_int_equal(spp_send(sv[0], SPP_INTERN, k, pages,
					  (size_t)k * SPP_PAGE, -1, 0), 0);
		assert_int_equal(spp_recv(sv[1], buf, NULL, 0),
				 (ssize_t)(sizeof(struct spp_hdr) +
					   (size_t)k * SPP_PAGE));
		if (k < SPP_MAX_INTERN)
			assert_int_equal(spp_send(sv[0], SPP_INTERN, k + 1,
						  pages,
						  (size_t)(k + 1) * SPP_PAGE,
						  -1, MSG_DONTWAIT),
					 -EMSGSIZE);
		assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF,
					    &small, sizeof(small)), 0);
	}
	close(sv[0]);
	close(sv[1]);
}

/* spp_sendv: pieces the kernel reads itself; one it cannot read fails
 * the send with -EFAULT and nothing arrives (the agent then copies the
 * pages it can read and sends again). */
static void test_sendv(void **state)
{
	uint8_t *pg = mmap(NULL, 3 * SPP_PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iovec iov[3];
	int sv[2];

	(void)state;
	assert_ptr_not_equal(pg, MAP_FAILED);
	for (unsigned i = 0; i < 3; i++) {
		memset(pg + i * SPP_PAGE, 'a' + (int)i, SPP_PAGE);
		iov[i] = (struct iovec){ pg + (2 - i) * SPP_PAGE, SPP_PAGE };
	}
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	assert_int_equal(spp_sendv(sv[0], SPP_INTERN, 3, iov, 3, -1, 0), 0);
	assert_int_equal(spp_recv(sv[1], buf, NULL, 0),
			 (ssize_t)(sizeof(struct spp_hdr) + 3 * SPP_PAGE));
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(buf[sizeof(struct spp_hdr) + i * SPP_PAGE +
				     SPP_PAGE - 1], 'c' - (int)i);
	/* The middle piece unreadable: nothing is sent. */
	assert_int_equal(mprotect(pg + SPP_PAGE, SPP_PAGE, PROT_NONE), 0);
	assert_int_equal(spp_sendv(sv[0], SPP_INTERN, 3, iov, 3, -1, 0),
			 -EFAULT);
	assert_int_equal(spp_recv(sv[1], buf, NULL, MSG_DONTWAIT), -EAGAIN);
	assert_int_equal(spp_sendv(sv[0], SPP_INTERN, 1, iov, 1, -1, 0), 0);
	assert_int_equal(spp_recv(sv[1], buf, NULL, 0),
			 (ssize_t)(sizeof(struct spp_hdr) + SPP_PAGE));
	assert_int_equal(buf[sizeof(struct spp_hdr)], 'c');
	/* More pieces than an INTERN has pages: refused. */
	assert_int_equal(spp_sendv(sv[0], SPP_INTERN, 1, iov,
				   SPP_MAX_INTERN + 1, -1, 0), -EINVAL);
	close(sv[0]);
	close(sv[1]);
	munmap(pg, 3 * SPP_PAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_knobs),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_intern_fit),
		cmocka_unit_test(test_sendv),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
