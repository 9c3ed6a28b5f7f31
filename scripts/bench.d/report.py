#!/usr/bin/env python3
"""Prints scripts/bench's table, RESULT/RATIO lines and the issue's targets.

Input (argv[1]): lines `ROUND <n> <postern|postfix> key=value ...` as
measure.py printed them, one per run, and `SYNCS <server> msgs=N calls=N
per_msg=X detail=...` from the strace count, one per server.
"""
import statistics
import sys

SERVERS = ("postern", "postfix")

# (key, column title, unit, higher is better)
FIGURES = [
    ("accepted_msgs_per_s", "accepted", "msg/s", True),
    ("delivered_msgs_per_s", "delivered", "msg/s", True),
    ("peak_rss_kb", "peak RSS", "KiB", False),
    ("idle_rss_kb", "idle RSS", "KiB", False),
    ("peak_pss_kb", "peak PSS", "KiB", False),
    ("idle_pss_kb", "idle PSS", "KiB", False),
    ("cpu_ms_per_msg", "CPU/msg", "ms", False),
    ("flushes_per_msg", "flush/msg", "disk", False),
]
RESULT_KEYS = ["accepted_msgs_per_s", "delivered_msgs_per_s", "peak_rss_kb", "idle_rss_kb",
               "peak_pss_kb", "idle_pss_kb", "cpu_ms_per_msg", "flushes_per_msg", "peak_procs"]

# Targets of the delivery-pipeline issue (they supersede issue 2's 2x,
# 8 MiB idle and 40 MiB peak).
DELIVERED_RATIO_TARGET = 3.0
CPU_MS_TARGET = 0.4
PEAK_RSS_TARGET_KB = 10 * 1024
SYNCS_PER_MSG_TARGET = 2.0


def num(v):
    try:
        return float(v)
    except ValueError:
        return float("nan")


def fmt(v):
    if v != v:  # NaN
        return "n/a"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def machine(key, v):
    """A figure for the RESULT lines: whole KiB and counts, 0.1 msg/s, 0.001 ms."""
    if key.endswith("_kb") or key == "peak_procs":
        return f"{v:.0f}"
    if key.endswith("_ms_per_msg"):
        return f"{v:.3f}"
    return f"{v:.1f}"


def ratio(a, b):
    return a / b if b else float("nan")


def main():
    runs = {s: [] for s in SERVERS}
    syncs = {}
    for line in open(sys.argv[1]):
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "SYNCS":
            syncs[parts[1]] = dict(p.split("=", 1) for p in parts[2:])
            continue
        if len(parts) < 3 or parts[0] != "ROUND":
            continue
        rec = dict(p.split("=", 1) for p in parts[3:])
        rec["round"] = parts[1]
        runs[parts[2]].append(rec)
    rounds = min(len(runs[s]) for s in SERVERS)
    if rounds == 0:
        sys.exit("bench: no complete round to report")

    problems = []
    for s in SERVERS:
        for r in runs[s]:
            if r.get("complete") != "yes" or r.get("source_rc") != "0" or r.get("server_alive") != "yes":
                problems.append(f"round {r['round']} {s}: complete={r.get('complete')} "
                                f"delivered_files={r.get('delivered_files')} smtp-source rc={r.get('source_rc')} "
                                f"server alive={r.get('server_alive')}")

    w = 11
    print()
    print("Per round (memory: postern = its one process; Postfix = sum over the master and all its daemons):")
    head = f"{'round':<6}{'server':<9}" + "".join(f"{t:>{w}}" for _, t, _, _ in FIGURES) + f"{'procs':>{7}}"
    units = f"{'':<15}" + "".join(f"{u:>{w}}" for _, _, u, _ in FIGURES)
    print(head)
    print(units)
    for i in range(rounds):
        for s in SERVERS:
            r = runs[s][i]
            print(f"{r['round']:<6}{s:<9}" + "".join(f"{fmt(num(r.get(k, 'nan'))):>{w}}" for k, _, _, _ in FIGURES)
                  + f"{r.get('peak_procs', '?'):>7}")
        print(f"{'':<6}{'ratio':<9}" + "".join(
            f"{fmt(ratio(num(runs['postern'][i].get(k, 'nan')), num(runs['postfix'][i].get(k, 'nan')))):>{w}}"
            for k, _, _, _ in FIGURES))

    med = {s: {k: statistics.median(num(r.get(k, "nan")) for r in runs[s][:rounds]) for k in RESULT_KEYS}
           for s in SERVERS}
    print()
    print(f"Median of {rounds} round(s):")
    print(f"{'':<15}" + "".join(f"{t:>{w}}" for _, t, _, _ in FIGURES))
    for s in SERVERS:
        print(f"{'':<6}{s:<9}" + "".join(f"{fmt(med[s][k]):>{w}}" for k, _, _, _ in FIGURES))
    rat = {k: ratio(med["postern"][k], med["postfix"][k]) for k, _, _, _ in FIGURES}
    print(f"{'':<6}{'ratio':<9}" + "".join(f"{fmt(rat[k]):>{w}}" for k, _, _, _ in FIGURES))
    print("ratio = postern/Postfix: for msg/s higher is better for postern; "
          "for memory and CPU/msg LOWER is better for postern.")
    print("Postfix's RSS is a sum over its processes and counts shared pages once per process; "
          "PSS shares them out and is the fairer memory comparison.")
    print()

    for s in SERVERS:
        print(f"RESULT {s} rounds={rounds} " + " ".join(f"{k}={machine(k, med[s][k])}" for k in RESULT_KEYS))
    print("RATIO postern/postfix " + " ".join(f"{k}={rat[k]:.3f}" for k, _, _, _ in FIGURES)
          + " (msg/s: higher is better; memory, cpu: lower is better)")

    print()
    print("Spread over the rounds (min .. max):")
    per_round_ratio = [ratio(num(runs["postern"][i]["delivered_msgs_per_s"]),
                             num(runs["postfix"][i]["delivered_msgs_per_s"])) for i in range(rounds)]
    for s in SERVERS:
        v = [num(r["delivered_msgs_per_s"]) for r in runs[s][:rounds]]
        print(f"  {s:<8} delivered msg/s {fmt(min(v))} .. {fmt(max(v))}")
    print(f"  ratio    delivered {fmt(min(per_round_ratio))} .. {fmt(max(per_round_ratio))}")

    if syncs:
        print()
        print("fsync-family system calls per message (strace -c -f over one extra run each; strace slows it):")
        for s in SERVERS:
            if s in syncs:
                y = syncs[s]
                print(f"  {s:<8} {y['per_msg']} per message ({y['calls']} calls for {y['msgs']} messages: {y['detail']})")
        for s in SERVERS:
            if s in syncs:
                print(f"SYNCS {s} per_msg={syncs[s]['per_msg']}")

    worst_peak = max(num(r["peak_rss_kb"]) for r in runs["postern"][:rounds])
    d_ratio = rat["delivered_msgs_per_s"]
    cpu = med["postern"]["cpu_ms_per_msg"]
    targets = [
        (f"delivered msg/s >= {DELIVERED_RATIO_TARGET:.0f}x Postfix's (median ratio of {rounds} rounds)",
         f"{d_ratio:.2f}x", d_ratio >= DELIVERED_RATIO_TARGET and rounds >= 3),
        (f"CPU per message <= {CPU_MS_TARGET} ms (median)", f"{cpu:.3f} ms", cpu <= CPU_MS_TARGET),
        ("peak RSS <= 10 MiB (worst round)", f"{worst_peak:.0f} KiB", worst_peak <= PEAK_RSS_TARGET_KB),
    ]
    if "postern" in syncs:
        y = num(syncs["postern"]["per_msg"])
        targets.append((f"<= {SYNCS_PER_MSG_TARGET:.0f} synchronous writes per single-recipient local message",
                        f"{y:.2f}", y <= SYNCS_PER_MSG_TARGET))
    print()
    print("Targets of the delivery-pipeline issue (3x needs at least 3 rounds):")
    for name, got, ok in targets:
        print(f"TARGET {'met' if ok else 'MISSED':<6} {name}: {got}")
    if problems:
        print()
        print("INCOMPLETE RUNS (figures above are not trustworthy):")
        for p in problems:
            print("  " + p)
        sys.exit(2)


if __name__ == "__main__":
    main()
