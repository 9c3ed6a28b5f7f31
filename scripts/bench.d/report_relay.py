#!/usr/bin/env python3
"""Prints scripts/bench's relay table, RESULT/RATIO lines and the targets of
issue 8 (sending mail onward).

Input (argv[1]): lines `RELAY <n> <postern|postfix> key=value ...` (one per
load run, as measure_relay.py printed them in `load` mode) and `DEAD
<postern|postfix> key=value ...` (the dead-relay run, `dead` mode).
"""
import statistics
import sys

from report import fmt, machine, num, ratio

SERVERS = ("postern", "postfix")

# (key, column title, unit)
FIGURES = [
    ("accepted_msgs_per_s", "accepted", "msg/s"),
    ("relayed_msgs_per_s", "relayed", "msg/s"),
    ("peak_rss_kb", "peak RSS", "KiB"),
    ("idle_rss_kb", "idle RSS", "KiB"),
    ("peak_pss_kb", "peak PSS", "KiB"),
    ("idle_pss_kb", "idle PSS", "KiB"),
    ("cpu_ms_per_msg", "CPU/msg", "ms"),
]
RESULT_KEYS = [k for k, _, _ in FIGURES] + ["peak_procs"]

DEAD_FIGURES = [
    ("accepted_msgs_per_s", "accepted", "msg/s"),
    ("dead_peak_rss_kb", "peak RSS", "KiB"),
    ("dead_peak_pss_kb", "peak PSS", "KiB"),
    ("queued_rss_kb", "queued RSS", "KiB"),
    ("drain_s", "drain", "s"),
    ("drain_msgs_per_s", "drain", "msg/s"),
    ("drain_peak_rss_kb", "drain RSS", "KiB"),
    ("drain_peak_pss_kb", "drain PSS", "KiB"),
]

RELAYED_RATIO_TARGET = 3.0
DEAD_PEAK_RSS_TARGET_KB = 16 * 1024


def main():
    runs = {s: [] for s in SERVERS}
    dead = {}
    for line in open(sys.argv[1]):
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "DEAD":
            dead[parts[1]] = dict(p.split("=", 1) for p in parts[2:])
        elif len(parts) >= 3 and parts[0] == "RELAY":
            rec = dict(p.split("=", 1) for p in parts[3:])
            rec["round"] = parts[1]
            runs[parts[2]].append(rec)
    rounds = min(len(runs[s]) for s in SERVERS)
    problems = []
    w = 11
    targets = []
    if rounds > 0:
        for s in SERVERS:
            for r in runs[s]:
                if r.get("complete") != "yes" or r.get("source_rc") != "0" or r.get("server_alive") != "yes":
                    problems.append(f"relay round {r['round']} {s}: complete={r.get('complete')} "
                                    f"relayed={r.get('relayed')} smtp-source rc={r.get('source_rc')} "
                                    f"server alive={r.get('server_alive')}")
        print()
        print("Relay, per round (smtp-source -> server -> smtp-sink; memory: postern = its one process; "
              "Postfix = sum over the master and all its daemons):")
        print(f"{'round':<6}{'server':<9}" + "".join(f"{t:>{w}}" for _, t, _ in FIGURES) + f"{'procs':>7}")
        print(f"{'':<15}" + "".join(f"{u:>{w}}" for _, _, u in FIGURES))
        for i in range(rounds):
            for s in SERVERS:
                r = runs[s][i]
                print(f"{r['round']:<6}{s:<9}" + "".join(f"{fmt(num(r.get(k, 'nan'))):>{w}}" for k, _, _ in FIGURES)
                      + f"{r.get('peak_procs', '?'):>7}")
            print(f"{'':<6}{'ratio':<9}" + "".join(
                f"{fmt(ratio(num(runs['postern'][i].get(k, 'nan')), num(runs['postfix'][i].get(k, 'nan')))):>{w}}"
                for k, _, _ in FIGURES))
        med = {s: {k: statistics.median(num(r.get(k, "nan")) for r in runs[s][:rounds]) for k in RESULT_KEYS}
               for s in SERVERS}
        print()
        print(f"Relay, median of {rounds} round(s):")
        print(f"{'':<15}" + "".join(f"{t:>{w}}" for _, t, _ in FIGURES))
        for s in SERVERS:
            print(f"{'':<6}{s:<9}" + "".join(f"{fmt(med[s][k]):>{w}}" for k, _, _ in FIGURES))
        rat = {k: ratio(med["postern"][k], med["postfix"][k]) for k, _, _ in FIGURES}
        print(f"{'':<6}{'ratio':<9}" + "".join(f"{fmt(rat[k]):>{w}}" for k, _, _ in FIGURES))
        print("ratio = postern/Postfix: for msg/s higher is better for postern; "
              "for memory and CPU/msg LOWER is better for postern.")
        print()
        for s in SERVERS:
            print(f"RESULT relay {s} rounds={rounds} "
                  + " ".join(f"{k}={machine(k, med[s][k])}" for k in RESULT_KEYS))
        print("RATIO relay postern/postfix " + " ".join(f"{k}={rat[k]:.3f}" for k, _, _ in FIGURES))
        per_round = [ratio(num(runs["postern"][i]["relayed_msgs_per_s"]),
                           num(runs["postfix"][i]["relayed_msgs_per_s"])) for i in range(rounds)]
        print()
        print("Spread over the rounds (min .. max):")
        for s in SERVERS:
            v = [num(r["relayed_msgs_per_s"]) for r in runs[s][:rounds]]
            print(f"  {s:<8} relayed msg/s {fmt(min(v))} .. {fmt(max(v))}")
        print(f"  ratio    relayed {fmt(min(per_round))} .. {fmt(max(per_round))}")
        r = rat["relayed_msgs_per_s"]
        targets.append((f"relayed msg/s end to end >= {RELAYED_RATIO_TARGET:.0f}x Postfix's "
                        f"(median ratio of {rounds} rounds; needs 3)",
                        f"{r:.2f}x", r >= RELAYED_RATIO_TARGET and rounds >= 3))

    if dead:
        print()
        print("Dead relay: smtp-source sends with the sink down; then the sink starts and the queue is "
              "flushed (postern queue flush / postqueue -f):")
        print(f"{'server':<9}{'messages':>9}" + "".join(f"{t:>{w}}" for _, t, _ in DEAD_FIGURES))
        print(f"{'':<18}" + "".join(f"{u:>{w}}" for _, _, u in DEAD_FIGURES))
        for s in SERVERS:
            if s in dead:
                d = dead[s]
                print(f"{s:<9}{d.get('relayed', '?'):>9}"
                      + "".join(f"{fmt(num(d.get(k, 'nan'))):>{w}}" for k, _, _ in DEAD_FIGURES))
                if d.get("complete") != "yes" or d.get("source_rc") != "0" or d.get("server_alive") != "yes":
                    problems.append(f"dead relay {s}: complete={d.get('complete')} relayed={d.get('relayed')} "
                                    f"smtp-source rc={d.get('source_rc')} flush rc={d.get('flush_rc')} "
                                    f"server alive={d.get('server_alive')}")
        if all(s in dead for s in SERVERS):
            print(f"{'ratio':<18}" + "".join(
                f"{fmt(ratio(num(dead['postern'].get(k, 'nan')), num(dead['postfix'].get(k, 'nan')))):>{w}}"
                for k, _, _ in DEAD_FIGURES))
        print()
        for s in SERVERS:
            if s in dead:
                print(f"RESULT dead-relay {s} " + " ".join(f"{k}={dead[s].get(k, 'nan')}" for k, _, _ in DEAD_FIGURES)
                      + f" relayed={dead[s].get('relayed')} relayed_before_flush={dead[s].get('relayed_before_flush')}")
        if "postern" in dead:
            d = dead["postern"]
            peak = num(d.get("dead_peak_rss_kb", "nan"))
            n = d.get("relayed", "?")
            targets.append((f"peak RSS <= 16 MiB with the messages queued for a dead relay",
                            f"{peak:.0f} KiB", peak <= DEAD_PEAK_RSS_TARGET_KB))
            other = dead.get("postfix", {}).get("drain_s", "nan")
            targets.append((f"all messages relayed once the relay is back and the queue flushed "
                            f"({n} in {num(d.get('drain_s', 'nan')):.1f} s; Postfix {num(other):.1f} s)",
                            f"{d.get('drain_msgs_per_s')} msg/s", d.get("complete") == "yes"))

    if targets:
        print()
        print("Targets of the sending-onward issue:")
        for name, got, ok in targets:
            print(f"TARGET {'met' if ok else 'MISSED':<6} {name}: {got}")
    if problems:
        print()
        print("INCOMPLETE RUNS (figures above are not trustworthy):")
        for p in problems:
            print("  " + p)
        sys.exit(2)
    if not targets:
        sys.exit("bench: no relay run to report")


if __name__ == "__main__":
    main()
