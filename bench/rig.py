#!/usr/bin/env python3
"""How steady this machine's clock is for a paced client: one line for the rate benchmark.

A server whose burst allowance is one request refuses any request that arrives sooner than
one interval after the last (2 ms at 500 requests/s). On a virtual machine a thread that
sleeps can wake late, and a thread that runs can be held off its core, by more than that;
either, on the client's side or the simulator's, puts two arrivals together whatever the
client's pace. The rate benchmark prints this line first so that its burst-of-one rows can
be read against the machine they ran on.

  wake-up: how late a 2 ms sleep ends (percentiles, and the share late by 0.5 ms or more)
  stalls:  with every core busy, how often one spinning process sees its clock jump by
           0.5 ms or more, and by 2 ms or more (per second per core)

Usage: bench/rig.py [SECONDS]   (each of the two measures; default 5; on an idle machine)
"""

import multiprocessing
import os
import sys
import time


def wake_ups(seconds):
    late = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        time.sleep(0.002)
        late.append(time.perf_counter() - start - 0.002)
    return sorted(late)


def spin(seconds, queue):
    small = big = 0
    now = time.perf_counter()
    end = now + seconds
    while now < end:
        then = time.perf_counter()
        gap = then - now
        if gap >= 0.0005:
            small += 1
            if gap >= 0.002:
                big += 1
        now = then
    queue.put((small, big))


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    late = wake_ups(seconds)

    def pct(q):
        return 1000 * late[min(len(late) - 1, int(q * len(late)))]

    share = sum(1 for x in late if x >= 0.0005) / len(late)
    cores = os.cpu_count() or 1
    queue = multiprocessing.Queue()
    spinners = [multiprocessing.Process(target=spin, args=(seconds, queue)) for _ in range(cores)]
    for p in spinners:
        p.start()
    counts = [queue.get() for _ in spinners]
    for p in spinners:
        p.join()
    small = sum(c[0] for c in counts) / seconds / cores
    big = sum(c[1] for c in counts) / seconds / cores
    print(
        f"rig: {cores} cores; a 2 ms sleep ends late by p50 {pct(0.5):.3f} ms, "
        f"p99 {pct(0.99):.3f} ms, p99.9 {pct(0.999):.3f} ms ({100 * share:.2f}% by 0.5 ms or more); "
        f"all cores busy, a running process is held off {small:.1f}/s for 0.5 ms or more, "
        f"{big:.2f}/s for 2 ms or more"
    )


if __name__ == "__main__":
    main()
