#!/usr/bin/env python3
"""One relay run (smtp-source -> server -> smtp-sink) against a server that
scripts/bench has started. Prints one line of key=value pairs on stdout.

The sink is Postfix's smtp-sink, started here (the argv in --sink, split
like a shell would) with `-c`: it prints `sess=N quit=N mesg=N` and a
carriage return each time a session ends, a QUIT is seen or a message is
received, to the file --sink-out. A message counts as relayed when the
sink has counted it.

Two modes:

  --mode load  the sink runs from the start; smtp-source (the argv after `--`)
        sends -m messages; measured until the sink has counted all of them:
        msg/s accepted (smtp-source's wall time), msg/s end to end, peak
        and idle memory, CPU per message (as measure.py).

  --mode dead  the sink is down: smtp-source sends -m messages, which the server
        accepts and cannot deliver; memory is sampled during the load and
        for --after seconds after it (the queue holding all of them, every
        one tried once). Then the sink starts, --flush runs (postern queue
        flush / postqueue -f), and the time until the sink has counted all
        messages is the drain time.

Memory and CPU as measure.py: --pid alone, or with --tree its direct
children too (Postfix's master and its daemons).
"""
import argparse
import os
import shlex
import signal
import subprocess
import sys
import time

from measure import Sampler, cpu_seconds, memory, rollup, status_kb


def sink_count(path):
    """The last `mesg=N` smtp-sink printed (0 before the first)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256))
            tail = f.read().decode("ascii", "replace")
    except OSError:
        return 0
    for record in reversed(tail.replace("\n", "\r").split("\r")):
        for field in record.split():
            if field.startswith("mesg="):
                try:
                    return int(field[5:])
                except ValueError:
                    break
    return 0


def wait_count(path, m, deadline):
    n = sink_count(path)
    while n < m and time.monotonic() < deadline:
        time.sleep(0.02)
        n = sink_count(path)
    return n


class Children:
    """The sink and smtp-source, killed if this script is stopped."""

    def __init__(self):
        self.procs = []

    def start(self, argv, out):
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["load", "dead"], required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--tree", action="store_true")
    ap.add_argument("-m", type=int, required=True)
    ap.add_argument("--sink", required=True, help="smtp-sink command line (with -c)")
    ap.add_argument("--sink-out", required=True)
    ap.add_argument("--flush", help="dead mode: the flush command line")
    ap.add_argument("--after", type=float, default=5.0, help="dead mode: seconds sampled after the load")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--source-log", required=True)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd

    kids = Children()

    def stop(signum, _frame):
        kids.stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    sink_out = open(a.sink_out, "wb")
    sink = None
    if a.mode == "load":
        sink = kids.start(shlex.split(a.sink), sink_out)
    time.sleep(a.settle)
    idle_rss, idle_pss, idle_procs = memory(a.pid, a.tree)
    if idle_procs == 0:
        sys.exit(f"measure_relay: process {a.pid} is gone before the load")
    if sink is not None and sink.poll() is not None:
        sys.exit("measure_relay: smtp-sink exited at start (port taken?)")
    cpu0 = cpu_seconds(a.pid, a.tree)
    sampler = Sampler(a.pid, a.tree, a.interval)
    sampler.start()
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    with open(a.source_log, "wb") as log:
        source = kids.start(cmd, log)
        try:
            rc = source.wait(timeout=a.timeout)
        except subprocess.TimeoutExpired:
            source.kill()
            source.wait()
            rc = "timeout"
    t_accept = time.monotonic() - t0
    out = {"mode": a.mode, "source_rc": rc, "accept_s": f"{t_accept:.3f}",
           "accepted_msgs_per_s": f"{a.m / t_accept:.1f}"}

    if a.mode == "load":
        n = wait_count(a.sink_out, a.m, deadline)
        t_relay = time.monotonic() - t0
        complete = n >= a.m
        sampler.stop.set()
        sampler.join()
        cpu1 = cpu_seconds(a.pid, a.tree)
        out.update({
            "complete": "yes" if complete else "no",
            "relayed": n,
            "relay_s": f"{t_relay:.3f}",
            "relayed_msgs_per_s": f"{a.m / t_relay:.1f}" if complete else "0",
            "cpu_ms_per_msg": f"{(cpu1 - cpu0) * 1000 / a.m:.3f}",
        })
    else:
        # The queue holds them all, each tried once: keep sampling a while.
        time.sleep(a.after)
        sampler.stop.set()
        sampler.join()
        queued_rss, queued_pss, _ = memory(a.pid, a.tree)
        cpu1 = cpu_seconds(a.pid, a.tree)
        early = sink_count(a.sink_out)
        dead_peak_rss, dead_peak_pss = sampler.peak_rss, sampler.peak_pss
        if not a.tree:
            hwm = status_kb(a.pid, "VmHWM")
            if hwm is not None:
                dead_peak_rss = max(dead_peak_rss, hwm)
        # The relay comes back; the operator flushes the queue.
        sink = kids.start(shlex.split(a.sink), sink_out)
        time.sleep(0.3)
        if sink.poll() is not None:
            sys.exit("measure_relay: smtp-sink exited at start (port taken?)")
        drain_sampler = Sampler(a.pid, a.tree, a.interval)
        drain_sampler.start()
        t1 = time.monotonic()
        flush = subprocess.run(shlex.split(a.flush), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
        n = wait_count(a.sink_out, a.m, t1 + a.timeout)
        t_drain = time.monotonic() - t1
        drain_sampler.stop.set()
        drain_sampler.join()
        cpu2 = cpu_seconds(a.pid, a.tree)
        complete = n >= a.m
        out.update({
            "complete": "yes" if complete else "no",
            "relayed": n,
            "relayed_before_flush": early,
            "flush_rc": flush.returncode,
            "dead_peak_rss_kb": dead_peak_rss,
            "dead_peak_pss_kb": dead_peak_pss,
            "queued_rss_kb": queued_rss,
            "queued_pss_kb": queued_pss,
            "drain_s": f"{t_drain:.3f}",
            "drain_msgs_per_s": f"{a.m / t_drain:.1f}" if complete else "0",
            "drain_peak_rss_kb": drain_sampler.peak_rss,
            "drain_peak_pss_kb": drain_sampler.peak_pss,
            "cpu_ms_per_msg_accept": f"{(cpu1 - cpu0) * 1000 / a.m:.3f}",
            "cpu_ms_per_msg_drain": f"{(cpu2 - cpu1) * 1000 / a.m:.3f}",
        })
        if flush.returncode != 0:
            sys.stderr.write(flush.stderr.decode("utf-8", "replace"))

    peak_rss, peak_pss = sampler.peak_rss, sampler.peak_pss
    if a.mode == "load" and not a.tree:
        hwm = status_kb(a.pid, "VmHWM")
        if hwm is not None:
            peak_rss = max(peak_rss, hwm)
    out.update({
        "server_alive": "yes" if rollup(a.pid) is not None else "no",
        "peak_rss_kb": peak_rss,
        "peak_pss_kb": peak_pss,
        "idle_rss_kb": idle_rss,
        "idle_pss_kb": idle_pss,
        "idle_procs": idle_procs,
        "peak_procs": sampler.peak_procs,
        "samples": sampler.samples,
    })
    kids.stop_all()
    print(" ".join(f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
