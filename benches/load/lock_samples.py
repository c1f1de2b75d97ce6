#!/usr/bin/env python3
"""Where a binary's CPU samples land right after an atomic read-modify-write.

An atomic (an x86 `lock`-prefixed instruction) on a cache line the other core wrote last waits
for that line to come over; a sampling profile then puts the wait on the next instruction. This
counts, in a `perf record` of one process, the samples whose instruction follows a `lock`
instruction, in total and by function: an upper bound of what the atomics cost, contended or
not (docs/performance.md, "Counters the two workers share").

    perf record -F 4999 -g -p "$(pgrep -n rampart)" -o rampart.perf -- sleep 8   # under load
    python3 benches/load/lock_samples.py rampart.perf target/release/rampart

Needs perf, objdump and nm. Counts the binary's own samples and, for the share, all of the
process's (kernel, libc and vdso included).
"""
import collections
import os
import re
import subprocess
import sys


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def main(perf_data, binary):
    samples = []  # (absolute address, symbol, offset) of samples in the binary
    everything = 0
    for line in run("perf", "script", "-i", perf_data, "-F", "ip,sym,symoff,dso", "-G").splitlines():
        if not line.strip():
            continue
        everything += 1
        found = re.match(r"\s*([0-9a-f]+)\s+(.*)\+0x([0-9a-f]+)\s+\((.*)\)$", line)
        if found and os.path.realpath(found.group(4)) == os.path.realpath(binary):
            samples.append((int(found.group(1), 16), found.group(2), int(found.group(3), 16)))
    if not samples:
        sys.exit(f"no samples in {binary}: is it the binary perf recorded?")

    # The load address: the most common (sample address - symbol address - offset).
    symbols = collections.defaultdict(set)
    for line in run("nm", "-C", "--defined-only", binary).splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            symbols[parts[2]].add(int(parts[0], 16))
    biases = collections.Counter(
        address - (start + offset) for address, name, offset in samples for start in symbols.get(name, ())
    )
    if not biases:
        sys.exit(f"no symbol of {binary} matches the samples: is it stripped?")
    bias = biases.most_common(1)[0][0]

    previous = {}  # instruction address -> the instruction before it
    last = None
    for line in run("objdump", "-d", "--no-show-raw-insn", binary).splitlines():
        found = re.match(r"\s*([0-9a-f]+):\s+(.*)", line)
        if found:
            previous[int(found.group(1), 16)] = last
            last = found.group(2)

    after_lock = collections.Counter()
    for address, name, _ in samples:
        before = previous.get(address - bias)
        if before and before.startswith("lock"):
            after_lock[name] += 1
    total = sum(after_lock.values())
    print(f"samples: {everything} in the process, {len(samples)} in {binary}")
    print(f"right after a lock-prefixed instruction: {total} "
          f"({100 * total / len(samples):.1f}% of the binary's, {100 * total / everything:.1f}% of all)")
    for name, count in after_lock.most_common(20):
        print(f"{count:7d}  {name[:120]}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
