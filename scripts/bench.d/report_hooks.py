#!/usr/bin/env python3
"""Prints scripts/bench --hooks's tables, RESULT/RATIO lines and the targets
of issue 9 (delivery hooks).

Input: argv[1], lines as scripts/bench wrote them:
  PIPE <round> <postern|postfix> key=value ...     measure.py, procmail pipe
  FILTER <round> <postern|postfix> key=value ...   measure.py, content filter
                                                   (side_cpu_ms_per_msg: the filter's CPU)
  CEILING <round> filter key=value ...             measure_relay.py: smtp-source ->
                                                   filter -> smtp-sink, no MTA
argv[2], argv[3]: the pipe and filter concurrency (for the headings).
"""
import statistics
import sys

SERVERS = ("postern", "postfix")

# (key, column title, unit)
FIGURES = [
    ("delivered_msgs_per_s", "delivered", "msg/s"),
    ("accepted_msgs_per_s", "accepted", "msg/s"),
    ("cpu_ms_per_msg", "CPU/msg", "ms"),
    ("peak_rss_kb", "peak RSS", "KiB"),
    ("peak_pss_kb", "peak PSS", "KiB"),
    ("idle_rss_kb", "idle RSS", "KiB"),
    ("idle_pss_kb", "idle PSS", "KiB"),
    ("flushes_per_msg", "flush/msg", "disk"),
]
FILTER_EXTRA = [("side_cpu_ms_per_msg", "filter CPU", "ms/msg")]
RESULT_KEYS = [k for k, _, _ in FIGURES] + ["peak_procs"]

RATIO_TARGET = 2.0
# A server whose rate through the filter reaches this share of the filter's
# own ceiling is held back by the filter.
CEILING_SHARE = 0.85
# ... or when the filter's CPU reaches this many cores' worth (one Python
# process: the GIL makes one core its practical limit).
FILTER_BUSY = 0.85


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
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
    if key.endswith("_kb") or key == "peak_procs":
        return f"{v:.0f}"
    if key.endswith("_ms_per_msg"):
        return f"{v:.3f}"
    return f"{v:.1f}"


def ratio(a, b):
    return a / b if b else float("nan")


def med(recs, key):
    vals = [num(r.get(key)) for r in recs]
    vals = [v for v in vals if v == v]
    return statistics.median(vals) if vals else float("nan")


def table(title, runs, figures, rounds):
    w = 11
    print(title)
    print(f"{'round':<7}{'server':<9}" + "".join(f"{t:>{w}}" for _, t, _ in figures) + f"{'procs':>7}")
    print(f"{'':<16}" + "".join(f"{u:>{w}}" for _, _, u in figures))
    for i in range(rounds):
        for s in SERVERS:
            r = runs[s][i]
            print(f"{r['round']:<7}{s:<9}" + "".join(f"{fmt(num(r.get(k))):>{w}}" for k, _, _ in figures)
                  + f"{r.get('peak_procs', '?'):>7}")
        print(f"{'':<7}{'ratio':<9}" + "".join(
            f"{fmt(ratio(num(runs['postern'][i].get(k)), num(runs['postfix'][i].get(k)))):>{w}}"
            for k, _, _ in figures))
    medians = {s: {k: med(runs[s][:rounds], k) for k, _, _ in figures} for s in SERVERS}
    for s in SERVERS:
        medians[s]["peak_procs"] = med(runs[s][:rounds], "peak_procs")
    print(f"{'median':<7}{'postern':<9}" + "".join(f"{fmt(medians['postern'][k]):>{w}}" for k, _, _ in figures))
    print(f"{'':<7}{'postfix':<9}" + "".join(f"{fmt(medians['postfix'][k]):>{w}}" for k, _, _ in figures))
    rat = {k: ratio(medians["postern"][k], medians["postfix"][k]) for k, _, _ in figures}
    print(f"{'':<7}{'ratio':<9}" + "".join(f"{fmt(rat[k]):>{w}}" for k, _, _ in figures))
    per_round = [ratio(num(runs["postern"][i].get("delivered_msgs_per_s")),
                       num(runs["postfix"][i].get("delivered_msgs_per_s"))) for i in range(rounds)]
    print("delivered msg/s ratio by round: " + " / ".join(fmt(v) for v in per_round))
    print()
    return medians, rat


def main():
    pipe_conc = sys.argv[2] if len(sys.argv) > 2 else "?"
    filter_conc = sys.argv[3] if len(sys.argv) > 3 else "?"
    runs = {"PIPE": {s: [] for s in SERVERS}, "FILTER": {s: [] for s in SERVERS}}
    ceiling = []
    for line in open(sys.argv[1]):
        parts = line.split()
        if len(parts) < 3:
            continue
        rec = dict(p.split("=", 1) for p in parts[3:] if "=" in p)
        rec["round"] = parts[1]
        if parts[0] in runs and parts[2] in SERVERS:
            runs[parts[0]][parts[2]].append(rec)
        elif parts[0] == "CEILING":
            ceiling.append(rec)

    problems = []
    for kind in runs:
        for s in SERVERS:
            for r in runs[kind][s]:
                if r.get("complete") != "yes" or r.get("source_rc") != "0" or r.get("server_alive") != "yes" \
                        or r.get("side_alive", "yes") != "yes":
                    problems.append(f"{kind.lower()} round {r['round']} {s}: complete={r.get('complete')} "
                                    f"delivered_files={r.get('delivered_files')} smtp-source rc={r.get('source_rc')} "
                                    f"server alive={r.get('server_alive')} filter alive={r.get('side_alive', '-')}")
    for r in ceiling:
        if r.get("complete") != "yes" or r.get("source_rc") != "0":
            problems.append(f"filter ceiling round {r['round']}: complete={r.get('complete')} "
                            f"relayed={r.get('relayed')} smtp-source rc={r.get('source_rc')}")

    results = {}
    print()
    for kind, title in (
        ("PIPE", f"Pipe: every message through procmail ({pipe_conc} at a time). Memory and CPU: the server "
                 "and every process under it (procmail included; Postfix: master, daemons, pipe's procmails):"),
        ("FILTER", f"Content filter: every message through the same pass-through aiosmtpd filter "
                   f"({filter_conc} connections) and back, then into the Maildir. Memory and CPU: the server "
                   "alone (postern: its one process; Postfix: master and daemons); the filter's CPU apart:"),
    ):
        rounds = min(len(runs[kind][s]) for s in SERVERS)
        if rounds == 0:
            continue
        figures = FIGURES + (FILTER_EXTRA if kind == "FILTER" else [])
        results[kind] = (rounds,) + table(title, runs[kind], figures, rounds)

    if not results:
        sys.exit("bench: no complete hooks round to report")

    ceil_med = float("nan")
    if ceiling:
        print(f"Filter ceiling: smtp-source ({filter_conc} sessions, connections reused) -> filter -> "
              "smtp-sink, no MTA (relayed msg/s; the filter's CPU and peak RSS):")
        for r in ceiling:
            print(f"  round {r['round']}: {fmt(num(r.get('relayed_msgs_per_s')))} msg/s, "
                  f"{fmt(num(r.get('cpu_ms_per_msg')))} ms CPU/msg, peak RSS {fmt(num(r.get('peak_rss_kb')) / 1024)} MiB")
        ceil_med = med(ceiling, "relayed_msgs_per_s")
        print(f"  median: {fmt(ceil_med)} msg/s")
        print()

    print("ratio = postern/Postfix: for msg/s higher is better for postern; "
          "for memory and CPU/msg LOWER is better for postern.")
    print("Postfix's RSS is a sum over its processes and counts shared pages once per process; "
          "PSS shares them out and is the fairer memory comparison.")
    print()
    for kind, (rounds, medians, rat) in results.items():
        keys = RESULT_KEYS + (["side_cpu_ms_per_msg"] if kind == "FILTER" else [])
        for s in SERVERS:
            print(f"RESULT {kind.lower()} {s} rounds={rounds} "
                  + " ".join(f"{k}={machine(k, medians[s].get(k, float('nan')))}" for k in keys))
        print(f"RATIO {kind.lower()} postern/postfix "
              + " ".join(f"{k}={rat[k]:.3f}" for k, _, _ in FIGURES)
              + " (msg/s: higher is better; memory, cpu: lower is better)")
    if ceiling:
        print(f"RESULT filter-ceiling rounds={len(ceiling)} relayed_msgs_per_s={ceil_med:.1f} "
              f"cpu_ms_per_msg={med(ceiling, 'cpu_ms_per_msg'):.3f}")

    print()
    print(f"Targets of issue 9 (median ratio of the rounds; {RATIO_TARGET:.0f}x needs at least 3 rounds):")
    notes = []
    for kind, name in (("PIPE", "procmail pipe"), ("FILTER", "content filter")):
        if kind not in results:
            continue
        rounds, medians, rat = results[kind]
        d = rat["delivered_msgs_per_s"]
        ok = d >= RATIO_TARGET and rounds >= 3
        print(f"TARGET {'met' if ok else 'MISSED':<6} {name}: delivered msg/s >= {RATIO_TARGET:.0f}x Postfix's: {d:.2f}x")
        if kind == "FILTER":
            for s in SERVERS:
                rate = medians[s]["delivered_msgs_per_s"]
                busy = medians[s].get("side_cpu_ms_per_msg", float("nan")) * rate / 1000
                share = ratio(rate, ceil_med)
                print(f"  {s}: {fmt(rate)} msg/s = {fmt(share * 100)} % of the filter's ceiling; "
                      f"the filter busy {fmt(busy)} cores' worth of CPU")
                if share >= CEILING_SHARE or busy >= FILTER_BUSY:
                    notes.append(f"{s}'s rate through the filter is held back by the filter itself "
                                 f"({fmt(share * 100)} % of its ceiling, {fmt(busy)} cores' worth of CPU): "
                                 + ("postern's figure and the ratio are lower bounds of what postern does"
                                    if s == "postern" else
                                    "Postfix's figure is a lower bound, the ratio an upper one"))
    for n in notes:
        print("BOTTLENECK " + n)
    if problems:
        print()
        print("INCOMPLETE RUNS (figures above are not trustworthy):")
        for p in problems:
            print("  " + p)
        sys.exit(2)


if __name__ == "__main__":
    main()
