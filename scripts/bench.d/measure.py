#!/usr/bin/env python3
"""One benchmark run against a server that scripts/bench has started.

Measures, in this order: memory at idle (after a short settle), then runs
smtp-source (the argv after `--`) while sampling memory every ~50 ms, then
waits (bounded) until N files are in the Maildir's new/. Prints one line of
key=value pairs on stdout.

Memory of a process set: the root pid alone (`--pid`), the root and its
direct children (`--tree`, Postfix's master and its daemons), or the root
and all its descendants (`--deep`: a server and the commands its pipe
deliveries run, e.g. procmail under postern or under Postfix's pipe
daemons; a descendant still running its parent's program, between its
fork or clone and its exec, is left out: after postern's CLONE_VM spawn
it shares its parent's memory, which would be counted twice). Per process,
Rss and Pss come from /proc/PID/smaps_rollup; a sample is the sum over the
set, the peak is the largest sample. For a single process the kernel's own
high-water mark (VmHWM) at the end is taken too, and the peak is the larger
of it and the sampled maximum.

CPU: user+system time of the set from /proc/PID/stat, children's reaped time
included (Postfix's exited daemons land in the master's cutime/cstime, a
finished procmail in its parent's).

`--side-pid PID` (a process outside the set, e.g. the content filter both
servers use): its own CPU per message over the same interval, reported
apart as side_cpu_ms_per_msg.

Disk flushes: the kernel's count of completed flush requests, summed over
the block devices (/sys/block/*/stat, field 16), from just before the load
until the last delivery: what the fsyncs of the run cost the disk. It is
machine-wide; the machine should be otherwise idle.
"""
import argparse
import os
import signal
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (index 0 = state)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2 :].split()


def children(pid):
    kids = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return kids


def descendants(root):
    seen, todo = [], [root]
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(c for c in children(pid) if c not in seen)
    return seen


def members(root, tree):
    """tree: False (root only), True (and its children), "deep" (all below)."""
    if tree == "deep":
        return descendants(root)
    return [root] + children(root) if tree else [root]


def rollup(pid):
    """(rss_kb, pss_kb) of one process, or None if it is gone."""
    rss = pss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        return None
    if rss is None or pss is None:
        return None
    return rss, pss


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def unexeced(pid):
    """A child caught between its fork or clone and its exec: the same
    program as its parent. After a vfork-style clone (CLONE_VM: postern's
    pipe, glibc's posix_spawn) it IS its parent's memory, which
    smaps_rollup would report a second time; after a fork it is a
    copy-on-write copy about to be replaced. Not counted."""
    f = stat_fields(pid)
    if f is None:
        return False
    mine = exe(pid)
    return mine is not None and mine == exe(int(f[1]))


def memory(root, tree):
    """(sum rss kb, sum pss kb, process count) over the set."""
    rss = pss = n = 0
    for pid in members(root, tree):
        if tree == "deep" and pid != root and unexeced(pid):
            continue
        r = rollup(pid)
        if r is None:
            continue
        rss += r[0]
        pss += r[1]
        n += 1
    return rss, pss, n


def cpu_seconds(root, tree):
    total = 0
    for pid in members(root, tree):
        f = stat_fields(pid)
        if f is None:
            continue
        # utime, stime, cutime, cstime are fields 14..17 of stat(5).
        total += sum(int(x) for x in f[11:15])
    return total / CLK_TCK


class Sampler(threading.Thread):
    def __init__(self, root, tree, interval):
        super().__init__(daemon=True)
        self.root, self.tree, self.interval = root, tree, interval
        self.stop = threading.Event()
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.samples = 0

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            rss, pss, n = memory(self.root, self.tree)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, n)
            self.samples += 1
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - t)))


def disk_flushes():
    """Completed flush requests of every block device (None if unknown)."""
    total, seen = 0, False
    try:
        devs = os.listdir("/sys/block")
    except OSError:
        return None
    for d in devs:
        try:
            with open(f"/sys/block/{d}/stat") as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) >= 17:
            total += int(fields[15])
            seen = True
    return total if seen else None


def count_files(d):
    try:
        with os.scandir(d) as it:
            return sum(1 for e in it if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True, help="server pid (Postfix: the master)")
    ap.add_argument("--tree", action="store_true", help="count the pid's direct children too")
    ap.add_argument("--deep", action="store_true", help="count all the pid's descendants too")
    ap.add_argument("--side-pid", type=int, help="report this process's CPU per message apart")
    ap.add_argument("--new", required=True, help="the Maildir's new/ directory")
    ap.add_argument("-m", type=int, required=True, help="messages expected")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--source-log", required=True)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if a.deep:
        a.tree = "deep"

    if count_files(a.new) != 0:
        sys.exit(f"measure: {a.new} is not empty at the start")

    time.sleep(a.settle)
    idle_rss, idle_pss, idle_procs = memory(a.pid, a.tree)
    if idle_procs == 0:
        sys.exit(f"measure: process {a.pid} is gone before the load")
    cpu0 = cpu_seconds(a.pid, a.tree)
    side0 = cpu_seconds(a.side_pid, False) if a.side_pid else None
    flushes0 = disk_flushes()

    sampler = Sampler(a.pid, a.tree, a.interval)
    sampler.start()
    wall0 = time.time()
    t0 = time.monotonic()
    with open(a.source_log, "wb") as log:
        source = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

        def stop(signum, _frame):
            # scripts/bench is being stopped: take smtp-source along.
            source.kill()
            source.wait()
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            rc = source.wait(timeout=a.timeout)
        except subprocess.TimeoutExpired:
            source.kill()
            source.wait()
            rc = "timeout"
    t_accept = time.monotonic() - t0

    deadline = t0 + a.timeout
    n = count_files(a.new)
    while n < a.m and time.monotonic() < deadline:
        time.sleep(0.05)
        n = count_files(a.new)
    t_seen = time.monotonic() - t0
    complete = n >= a.m
    t_deliver = t_seen
    if complete:
        # new/ changes mtime with each file renamed into it: the last
        # change is the last delivery, more exactly than the polling.
        try:
            t_mtime = os.stat(a.new).st_mtime_ns / 1e9 - wall0
            if 0 < t_mtime <= t_seen:
                t_deliver = t_mtime
        except OSError:
            pass
    sampler.stop.set()
    sampler.join()
    cpu1 = cpu_seconds(a.pid, a.tree)
    side1 = cpu_seconds(a.side_pid, False) if a.side_pid else None
    flushes1 = disk_flushes()
    peak_rss, peak_pss = sampler.peak_rss, sampler.peak_pss
    if not a.tree:
        hwm = status_kb(a.pid, "VmHWM")
        if hwm is not None:
            peak_rss = max(peak_rss, hwm)
    alive = rollup(a.pid) is not None

    out = {
        "complete": "yes" if complete else "no",
        "source_rc": rc,
        "server_alive": "yes" if alive else "no",
        "delivered_files": n,
        "accept_s": f"{t_accept:.3f}",
        "deliver_s": f"{t_deliver:.3f}",
        "accepted_msgs_per_s": f"{a.m / t_accept:.1f}",
        "delivered_msgs_per_s": f"{a.m / t_deliver:.1f}" if complete else "0",
        "peak_rss_kb": peak_rss,
        "peak_pss_kb": peak_pss,
        "idle_rss_kb": idle_rss,
        "idle_pss_kb": idle_pss,
        "idle_procs": idle_procs,
        "peak_procs": sampler.peak_procs,
        "cpu_ms_per_msg": f"{(cpu1 - cpu0) * 1000 / a.m:.3f}",
        "flushes_per_msg": f"{(flushes1 - flushes0) / a.m:.3f}"
        if flushes0 is not None and flushes1 is not None
        else "nan",
        "samples": sampler.samples,
    }
    if a.side_pid:
        out["side_cpu_ms_per_msg"] = f"{(side1 - side0) * 1000 / a.m:.3f}"
        out["side_alive"] = "yes" if rollup(a.side_pid) is not None else "no"
    print(" ".join(f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
