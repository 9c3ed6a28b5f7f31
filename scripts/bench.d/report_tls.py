#!/usr/bin/env python3
"""Prints the TLS part of scripts/bench: tables, RESULT/RATIO lines and the
targets of issue 3.

Input: argv[1] holds lines `ROUND <n> <postern|postfix> <load|hold> key=value
...` as measure_tls.py printed them; argv[2] is the number of held sessions.
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import fmt, machine, num, ratio  # noqa: E402

SERVERS = ("postern", "postfix")

# (key, column title, unit)
LOAD = [
    ("accepted_msgs_per_s", "accepted", "msg/s"),
    ("delivered_msgs_per_s", "delivered", "msg/s"),
    ("peak_rss_kb", "peak RSS", "KiB"),
    ("idle_rss_kb", "idle RSS", "KiB"),
    ("peak_pss_kb", "peak PSS", "KiB"),
    ("idle_pss_kb", "idle PSS", "KiB"),
    ("cpu_ms_per_msg", "CPU/msg", "ms"),
    ("handshake_ms_avg", "handshake", "ms"),
]
HOLD = [
    ("idle_rss_kb", "idle RSS", "KiB"),
    ("held_rss_kb", "held RSS", "KiB"),
    ("rss_per_session_kb", "RSS/sess", "KiB"),
    ("idle_pss_kb", "idle PSS", "KiB"),
    ("held_pss_kb", "held PSS", "KiB"),
    ("pss_per_session_kb", "PSS/sess", "KiB"),
]
LOAD_RESULT_KEYS = [k for k, _, _ in LOAD] + ["peak_procs"]
HOLD_RESULT_KEYS = [k for k, _, _ in HOLD] + ["held_procs"]

MSGS_RATIO_TARGET = 1.5
SESSION_RSS_TARGET_KB = 200


def machine_any(k, v):
    if k == "handshake_ms_avg":
        return f"{v:.3f}"
    if k.endswith("_per_session_kb"):
        return f"{v:.1f}"
    return machine(k, v)


def table(title, figures, runs, rounds, extra):
    w = 11
    print(title)
    print(f"{'round':<6}{'server':<9}" + "".join(f"{t:>{w}}" for _, t, _ in figures) + f"{'procs':>7}")
    print(f"{'':<15}" + "".join(f"{u:>{w}}" for _, _, u in figures))
    for i in range(rounds):
        for s in SERVERS:
            r = runs[s][i]
            print(f"{r['round']:<6}{s:<9}" + "".join(f"{fmt(num(r[k])):>{w}}" for k, _, _ in figures)
                  + f"{r.get(extra, '?'):>7}")
        print(f"{'':<6}{'ratio':<9}" + "".join(
            f"{fmt(ratio(num(runs['postern'][i][k]), num(runs['postfix'][i][k]))):>{w}}" for k, _, _ in figures))
    med = {s: {k: statistics.median(num(r[k]) for r in runs[s][:rounds]) for k, _, _ in figures}
           for s in SERVERS}
    if rounds > 1:
        print(f"median of {rounds} rounds:")
        for s in SERVERS:
            print(f"{'':<6}{s:<9}" + "".join(f"{fmt(med[s][k]):>{w}}" for k, _, _ in figures))
        print(f"{'':<6}{'ratio':<9}" + "".join(
            f"{fmt(ratio(med['postern'][k], med['postfix'][k])):>{w}}" for k, _, _ in figures))
    return med


def main():
    held = sys.argv[2] if len(sys.argv) > 2 else "?"
    runs = {kind: {s: [] for s in SERVERS} for kind in ("load", "hold")}
    for line in open(sys.argv[1]):
        parts = line.split()
        if len(parts) < 4 or parts[0] != "ROUND":
            continue
        rec = dict(p.split("=", 1) for p in parts[4:])
        rec["round"] = parts[1]
        runs[parts[3]][parts[2]].append(rec)
    rounds = {kind: min(len(runs[kind][s]) for s in SERVERS) for kind in runs}
    if rounds["load"] == 0 or rounds["hold"] == 0:
        sys.exit("bench: no complete TLS round to report")

    problems = []
    for kind in runs:
        for s in SERVERS:
            for r in runs[kind][s]:
                if r.get("complete") != "yes" or r.get("source_rc") != "0" or r.get("server_alive") != "yes":
                    problems.append(f"round {r['round']} {s} {kind}: complete={r.get('complete')} "
                                    f"delivered_files={r.get('delivered_files', '-')} held={r.get('held', '-')} "
                                    f"tls-load rc={r.get('source_rc')} server alive={r.get('server_alive')}")

    print()
    load_med = table("TLS load per round (postern = its one process; Postfix = the sum over its master "
                     "and daemons AND the Dovecot instance doing its SASL; handshake = as the client saw it):",
                     LOAD, runs["load"], rounds["load"], "peak_procs")
    print()
    hold_med = table(f"{held} idle authenticated TLS sessions held open (medians of samples; "
                     f"/sess = (held - idle) / {held}):", HOLD, runs["hold"], rounds["hold"], "held_procs")
    print("ratio = postern/Postfix: for msg/s higher is better for postern; "
          "for memory, CPU/msg and handshake LOWER is better for postern.")
    print("Postfix runs one smtpd process per session: its per-session figure is PSS "
          "(shared pages shared out); RSS counts them again in each process.")
    print()
    for s in SERVERS:
        print(f"RESULT-TLS {s} rounds={rounds['load']} "
              + " ".join(f"{k}={machine_any(k, load_med[s][k])}" for k, _, _ in LOAD))
        print(f"RESULT-TLS-HOLD {s} rounds={rounds['hold']} sessions={held} "
              + " ".join(f"{k}={machine_any(k, hold_med[s][k])}" for k, _, _ in HOLD))
    rat = {k: ratio(load_med["postern"][k], load_med["postfix"][k]) for k, _, _ in LOAD}
    print("RATIO-TLS postern/postfix " + " ".join(f"{k}={rat[k]:.3f}" for k, _, _ in LOAD)
          + " (msg/s: higher is better; memory, cpu, handshake: lower is better)")

    d_ratio = rat["delivered_msgs_per_s"]
    a_ratio = rat["accepted_msgs_per_s"]
    worst = max(num(r["rss_per_session_kb"]) for r in runs["hold"]["postern"][: rounds["hold"]])
    targets = [
        (f"TLS delivered msg/s >= {MSGS_RATIO_TARGET}x Postfix's (median ratio; accepted: {a_ratio:.2f}x)",
         f"{d_ratio:.2f}x", d_ratio >= MSGS_RATIO_TARGET),
        (f"RSS per concurrent TLS session < {SESSION_RSS_TARGET_KB} KiB (postern, worst round)",
         f"{worst:.1f} KiB", worst < SESSION_RSS_TARGET_KB),
    ]
    print()
    print("Targets of issue 3:")
    for name, got, ok in targets:
        print(f"TARGET {'met' if ok else 'MISSED':<6} {name}: {got}")
    if problems:
        print()
        print("INCOMPLETE TLS RUNS (figures above are not trustworthy):")
        for p in problems:
            print("  " + p)
        sys.exit(2)


if __name__ == "__main__":
    main()
