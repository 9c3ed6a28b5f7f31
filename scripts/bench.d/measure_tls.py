#!/usr/bin/env python3
"""The TLS runs of scripts/bench: measure.py's figures over several process
sets, and the memory of held-open TLS sessions.

A process set is given by `--pid PID` (that process alone) or
`--tree PID` (the process and its direct children: Postfix's master and its
daemons, Dovecot's master and its auth, anvil, log... processes), repeatable:
Postfix's side is Postfix's tree plus the tree of the Dovecot instance that
does its SASL, so that the password hashing Dovecot does for Postfix is
counted as postern's own is. Memory and CPU are read as measure.py reads
them (/proc/PID/smaps_rollup, /proc/PID/stat with reaped children).

Two modes:

  load  idle memory, then the load generator (argv after `--`) with memory
        sampled every ~50 ms, then a bounded wait for N files in the Maildir's
        new/. Prints the same key=value line as measure.py, plus the load
        generator's handshake_ms_avg and failed counts.

  hold  idle memory (median of samples over a second), then the load
        generator in hold mode; once it prints `HOLDING n`, waits --after
        seconds and samples memory for --sample seconds; the median of those
        samples minus idle, divided by n, is the memory per held session.
        Then waits for the generator to QUIT its sessions and exit.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import children, count_files, rollup, stat_fields, status_kb  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Sets:
    def __init__(self, singles, trees):
        self.roots = [(p, False) for p in singles] + [(p, True) for p in trees]

    def members(self):
        out = []
        for pid, tree in self.roots:
            out.append(pid)
            if tree:
                out.extend(children(pid))
        return out

    def memory(self):
        rss = pss = n = 0
        for pid in self.members():
            r = rollup(pid)
            if r is None:
                continue
            rss += r[0]
            pss += r[1]
            n += 1
        return rss, pss, n

    def cpu_seconds(self):
        total = 0
        for pid in self.members():
            f = stat_fields(pid)
            if f is None:
                continue
            total += sum(int(x) for x in f[11:15])
        return total / CLK_TCK

    def alive(self):
        return all(rollup(pid) is not None for pid, _ in self.roots)


class Sampler(threading.Thread):
    def __init__(self, sets, interval):
        super().__init__(daemon=True)
        self.sets, self.interval = sets, interval
        self.stop = threading.Event()
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.samples = 0

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            rss, pss, n = self.sets.memory()
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, n)
            self.samples += 1
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - t)))


def start(cmd, log_path):
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def stop(signum, _frame):
        # scripts/bench is being stopped: take the load generator along.
        proc.kill()
        proc.wait()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return proc, log


def finish(proc, log, timeout):
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = "timeout"
    log.close()
    return rc


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def load(a, sets, cmd):
    if count_files(a.new) != 0:
        sys.exit(f"measure_tls: {a.new} is not empty at the start")
    time.sleep(a.settle)
    idle_rss, idle_pss, idle_procs = sets.memory()
    if idle_procs == 0:
        sys.exit("measure_tls: the server is gone before the load")
    cpu0 = sets.cpu_seconds()
    sampler = Sampler(sets, a.interval)
    sampler.start()
    wall0 = time.time()
    t0 = time.monotonic()
    proc, log = start(cmd, a.source_log)
    rc = finish(proc, log, a.timeout)
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
        try:
            t_mtime = os.stat(a.new).st_mtime_ns / 1e9 - wall0
            if 0 < t_mtime <= t_seen:
                t_deliver = t_mtime
        except OSError:
            pass
    sampler.stop.set()
    sampler.join()
    cpu1 = sets.cpu_seconds()
    peak_rss, peak_pss = sampler.peak_rss, sampler.peak_pss
    if len(sets.roots) == 1 and not sets.roots[0][1]:
        hwm = status_kb(sets.roots[0][0], "VmHWM")
        if hwm is not None:
            peak_rss = max(peak_rss, hwm)

    text = read_text(a.source_log)
    m = re.search(r"^RESULT ok=(\d+) failed=(\d+) .*handshake_ms_avg=([0-9.]+)", text, re.M)
    out = {
        "complete": "yes" if complete else "no",
        "source_rc": rc,
        "server_alive": "yes" if sets.alive() else "no",
        "delivered_files": n,
        "client_ok": m.group(1) if m else "?",
        "client_failed": m.group(2) if m else "?",
        "handshake_ms_avg": m.group(3) if m else "nan",
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
        "samples": sampler.samples,
    }
    print(" ".join(f"{k}={v}" for k, v in out.items()))


def sample_for(sets, seconds, interval):
    rss, pss, procs = [], [], []
    end = time.monotonic() + seconds
    while True:
        r, p, n = sets.memory()
        rss.append(r)
        pss.append(p)
        procs.append(n)
        if time.monotonic() >= end:
            break
        time.sleep(interval)
    return statistics.median(rss), statistics.median(pss), max(procs), len(rss)


def hold(a, sets, cmd):
    time.sleep(a.settle)
    idle_rss, idle_pss, idle_procs, _ = sample_for(sets, 1.0, 0.1)
    if idle_procs == 0:
        sys.exit("measure_tls: the server is gone before the hold")
    t0 = time.monotonic()
    proc, log = start(cmd, a.source_log)
    held = None
    while time.monotonic() - t0 < a.timeout and proc.poll() is None:
        m = re.search(r"^HOLDING (\d+) ", read_text(a.source_log), re.M)
        if m:
            held = int(m.group(1))
            break
        time.sleep(0.05)
    open_s = time.monotonic() - t0
    held_rss = held_pss = held_procs = samples = 0
    released_early = False
    if held is not None:
        time.sleep(a.after)
        held_rss, held_pss, held_procs, samples = sample_for(sets, a.sample, 0.1)
        released_early = "RELEASED" in read_text(a.source_log) or proc.poll() is not None
    rc = finish(proc, log, a.timeout)
    ok = held is not None and held == a.n and not released_early
    per = lambda held_kb, idle_kb: f"{(held_kb - idle_kb) / held:.1f}" if ok else "nan"  # noqa: E731
    out = {
        "complete": "yes" if ok else "no",
        "source_rc": rc,
        "server_alive": "yes" if sets.alive() else "no",
        "sessions": a.n,
        "held": held if held is not None else 0,
        "released_early": "yes" if released_early else "no",
        "open_s": f"{open_s:.3f}",
        "idle_rss_kb": f"{idle_rss:.0f}",
        "idle_pss_kb": f"{idle_pss:.0f}",
        "idle_procs": idle_procs,
        "held_rss_kb": f"{held_rss:.0f}",
        "held_pss_kb": f"{held_pss:.0f}",
        "held_procs": held_procs,
        "rss_per_session_kb": per(held_rss, idle_rss),
        "pss_per_session_kb": per(held_pss, idle_pss),
        "samples": samples,
    }
    print(" ".join(f"{k}={v}" for k, v in out.items()))


def main():
    # The mode comes first and is taken off by hand: argparse would give
    # everything after a positional to the REMAINDER command.
    if len(sys.argv) < 2 or sys.argv[1] not in ("load", "hold"):
        sys.exit("usage: measure_tls.py load|hold OPTIONS -- COMMAND...")
    mode = sys.argv.pop(1)
    ap = argparse.ArgumentParser(prog=f"measure_tls.py {mode}")
    ap.add_argument("--pid", type=int, action="append", default=[], help="a process alone (postern)")
    ap.add_argument("--tree", type=int, action="append", default=[], help="a process and its children")
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--source-log", required=True)
    # load
    ap.add_argument("--new", help="load: the Maildir's new/ directory")
    ap.add_argument("-m", type=int, help="load: messages expected")
    ap.add_argument("--interval", type=float, default=0.05)
    # hold
    ap.add_argument("-n", type=int, help="hold: sessions expected")
    ap.add_argument("--after", type=float, default=1.0, help="hold: wait after HOLDING before sampling")
    ap.add_argument("--sample", type=float, default=2.0, help="hold: seconds of sampling")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    a.mode = mode
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command after --")
    sets = Sets(a.pid, a.tree)
    if not sets.roots:
        ap.error("give --pid or --tree")
    if a.mode == "load":
        if a.new is None or a.m is None:
            ap.error("load needs --new and -m")
        load(a, sets, cmd)
    else:
        if a.n is None:
            ap.error("hold needs -n")
        hold(a, sets, cmd)


if __name__ == "__main__":
    main()
