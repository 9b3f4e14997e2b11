#!/usr/bin/env python3
"""dupcount.py - what a merger could share in QEMU guest RAM, and what it did.

  dupcount.py PID...
      Before merging.  Reads every present page of each process's largest
      private anonymous rw-p VMA (QEMU's guest RAM block) through
      /proc/PID/mem (pagemap says which pages are present) and prints
          present=P distinct=D zero=Z ideal_sharing=P-D dup_within=W ranges=R
      ideal_sharing: KSM's pages_sharing if every page with an identical
      partner merged (max_page_sharing ignored); zero: zero-filled pages;
      dup_within: what merging inside each process alone would give;
      ranges: PID:START:END,... to pass to --after.

  dupcount.py --after PID:START:END,...
      After merging (the VMA may be split by then): classifies every page
      of those ranges from pagemap, /proc/kpageflags and the VMA names:
          ksm=     pages on a KSM page (KPF_KSM)
          zeropage= pages on the kernel's shared zero page (KPF_ZERO_PAGE;
                   e.g. put there by the kernel when it split a THP)
          store=   pages mapping a samepage store (memfd:samepage-*),
                   present or not yet faulted in
          anon=    private anonymous pages (not merged)
          absent=  no page
Run as root.
"""
import bisect
import hashlib
import re
import struct
import sys

PAGE = 4096
ZERO = hashlib.blake2b(bytes(PAGE), digest_size=16).digest()
KPF_KSM, KPF_ZERO_PAGE = 21, 24
MAPS_RE = re.compile(r"([0-9a-f]+)-([0-9a-f]+) (\S+) (\S+) (\S+) (\d+)\s*(.*)")


def ram_vma(pid):
    best = None
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            m = MAPS_RE.match(line)
            if m and m[3] == "rw-p" and m[6] == "0" and not m[7]:
                s, e = int(m[1], 16), int(m[2], 16)
                if best is None or e - s > best[1] - best[0]:
                    best = (s, e)
    return best


def pagemap(pid, s, n):
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        pm.seek(s // PAGE * 8)
        return struct.unpack(f"{n}Q", pm.read(n * 8))


def before(pids):
    total, within, ranges = [], 0, []
    for pid in pids:
        s, e = ram_vma(pid)
        ranges.append(f"{pid}:{s:x}:{e:x}")
        h = []
        with open(f"/proc/{pid}/mem", "rb") as mem:
            for i, ent in enumerate(pagemap(pid, s, (e - s) // PAGE)):
                if (ent >> 63) & 1:
                    mem.seek(s + i * PAGE)
                    h.append(hashlib.blake2b(mem.read(PAGE), digest_size=16).digest())
        within += len(h) - len(set(h))
        total += h
    present, distinct = len(total), len(set(total))
    zero = sum(1 for x in total if x == ZERO)
    print(f"present={present} distinct={distinct} zero={zero} "
          f"ideal_sharing={present - distinct} dup_within={within} ranges={','.join(ranges)}")


def after(ranges):
    c = dict(ksm=0, zeropage=0, store=0, anon=0, absent=0)
    with open("/proc/kpageflags", "rb") as kpf:
        for r in ranges.split(","):
            pid, s, e = r.split(":")
            s, e = int(s, 16), int(e, 16)
            store = []		# (start, end) of store mappings
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    m = MAPS_RE.match(line)
                    if m and "samepage" in m[7] and "store" in m[7]:
                        store.append((int(m[1], 16), int(m[2], 16)))
            starts = [a for a, _ in store]
            for i, ent in enumerate(pagemap(pid, s, (e - s) // PAGE)):
                a = s + i * PAGE
                k = bisect.bisect_right(starts, a) - 1
                in_store = k >= 0 and a < store[k][1]
                if not (ent >> 63) & 1:
                    c["store" if in_store else "absent"] += 1
                    continue
                if in_store or (ent >> 61) & 1:
                    c["store"] += 1
                    continue
                kpf.seek((ent & ((1 << 55) - 1)) * 8)
                fl = struct.unpack("Q", kpf.read(8))[0]
                if (fl >> KPF_ZERO_PAGE) & 1:
                    c["zeropage"] += 1
                elif (fl >> KPF_KSM) & 1:
                    c["ksm"] += 1
                else:
                    c["anon"] += 1
    print(" ".join(f"{k}={v}" for k, v in c.items()))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--after":
        after(sys.argv[2])
    elif len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        before([int(p) for p in sys.argv[1:]])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
