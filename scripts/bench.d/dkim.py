#!/usr/bin/env python3
"""scripts/bench --dkim: what DKIM signing (RSA-2048; -a for others) costs a relay.

The same relay line twice, signing off and on: smtp-source sends N messages
of L bytes over S sessions to postern from a trusted client
(sender@example.test, so every message is ours and has a key), postern
relays each to Postfix's smtp-sink through a smarthost route on loopback
(`[relay] default = "[127.0.0.1]:PORT"`, no TLS). A run ends when postern
has logged `status=sent` for every message. Rounds alternate off, on, off,
on... each on a fresh postern (new data directory, new queue), the sink
kept running; the figures are medians over the rounds.

Per mode: messages/s end to end (first connection of smtp-source until the
last status=sent), postern's CPU per message (user+system from
/proc/PID/stat over the same span). Then the cost of signing: the slowdown
end to end (target: under 15 %) and the extra CPU per message, which is
one RSA-2048 signature, the body hash and the header work.

Usage: scripts/bench --dkim [-m MESSAGES] [-s SESSIONS] [-l BYTES] [-r ROUNDS]
                            [-a rsa-2048|rsa-3072|rsa-4096|ed25519] [-t TIMEOUT_S] [-k]
Needs: target/release/postern (built if missing or older than src/),
smtp-source and smtp-sink (Debian package postfix), openssl (the key).
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "postern")
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_SLOWDOWN = 15.0


def log(msg):
    print("bench dkim: " + msg, file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


def find(program):
    for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/sbin"]:
        p = os.path.join(d, program)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    die("%s is missing: run scripts/install-peers (Debian package postfix)" % program)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks():
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def build():
    newest = 0
    for top in ("src", "Cargo.toml", "Cargo.lock"):
        p = os.path.join(ROOT, top)
        for dirpath, _, files in os.walk(p) if os.path.isdir(p) else [(ROOT, [], [top])]:
            for f in files:
                newest = max(newest, os.path.getmtime(os.path.join(dirpath, f)))
    if not os.path.exists(BIN) or os.path.getmtime(BIN) < newest:
        log("building postern (cargo build --release)")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def start_sink(smtp_sink):
    port = free_port()
    args = [smtp_sink]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    args += ["127.0.0.1:%d" % port, "256"]
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    die("smtp-sink did not start")


def config(data, sink_port, key):
    text = (
        'data_dir = "%s"\nhostname = "mx.bench.test"\ntrusted_networks = ["127.0.0.1/32"]\n'
        'local_domains = ["mx.bench.test"]\n\n'
        '[[listener]]\naddress = "127.0.0.1:0"\nmode = "plain"\n\n'
        '[relay]\ndefault = "[127.0.0.1]:%d"\ntls = "none"\ndns_servers = ["127.0.0.1:1"]\n'
        % (data, sink_port)
    )
    if key:
        text += '\n[[dkim]]\ndomain = "example.test"\nselector = "bench"\nkey_file = "%s"\n' % key
    return text


class LogCounter:
    """Counts lines holding a marker in a growing log file."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.counts = {}

    def poll(self, markers):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            for m in markers:
                if m in line:
                    self.counts[m] = self.counts.get(m, 0) + 1


def run_once(a, mode, sink_port, key, top, n):
    d = os.path.join(top, "%s-%d" % (mode, n))
    data = os.path.join(d, "data")
    os.makedirs(data)
    cfg = os.path.join(d, "postern.toml")
    with open(cfg, "w") as f:
        f.write(config(data, sink_port, key if mode == "on" else None))
    logpath = os.path.join(d, "postern.log")
    with open(logpath, "wb") as logf:
        p = subprocess.Popen([BIN, "serve", "-c", cfg], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=logf)
    try:
        listening = os.path.join(data, "listening")
        deadline = time.time() + 20
        while not (os.path.exists(listening) and open(listening).read().strip()):
            if p.poll() is not None or time.time() > deadline:
                die("%s: postern did not start:\n%s" % (mode, open(logpath).read()))
            time.sleep(0.05)
        port = int(open(listening).read().split()[2].rsplit(":", 1)[1])
        time.sleep(1)
        counter = LogCounter(logpath)
        sent, signed = b"status=sent", b"dkim: signed"
        cpu0 = cpu_ticks(p.pid)
        m0 = machine_ticks()
        t0 = time.time()
        src = subprocess.Popen(
            [a.smtp_source, "-s", str(a.sessions), "-m", str(a.messages), "-l", str(a.size), "-M", "client.test",
             "-f", "sender@example.test", "-t", "user@remote.test", "127.0.0.1:%d" % port],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = t0 + a.timeout
        while True:
            counter.poll([sent, signed])
            if counter.counts.get(sent, 0) >= a.messages:
                break
            if time.time() > deadline or p.poll() is not None:
                src.kill()
                die("%s: %d of %d messages sent within %ds" % (mode, counter.counts.get(sent, 0), a.messages, a.timeout))
            time.sleep(0.02)
        t1 = time.time()
        cpu1 = cpu_ticks(p.pid)
        m1 = machine_ticks()
        src.wait()
        if src.returncode != 0:
            die("%s: smtp-source failed: %s" % (mode, src.stderr.read().decode(errors="replace")[-500:]))
        n_signed = counter.counts.get(signed, 0)
        if mode == "on" and n_signed != a.messages:
            die("on: %d of %d messages signed" % (n_signed, a.messages))
        if mode == "off" and n_signed:
            die("off: %d messages signed" % n_signed)
        secs = t1 - t0
        return {
            "msgs_per_s": a.messages / secs,
            "cpu_ms_per_msg": (cpu1 - cpu0) * 1000.0 / CLK_TCK / a.messages,
            # How busy the whole machine was (load generator and sink too):
            # near 100 %, the relay is bound by CPU, and CPU per message is
            # what signing costs in throughput.
            "machine_busy_pct": 100.0 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1]),
        }
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench --dkim")
    ap.add_argument("-m", dest="messages", type=int, default=5000)
    ap.add_argument("-s", dest="sessions", type=int, default=20)
    ap.add_argument("-l", dest="size", type=int, default=5120)
    ap.add_argument("-r", dest="rounds", type=int, default=3)
    ap.add_argument("-t", dest="timeout", type=int, default=600)
    ap.add_argument("-a", dest="algorithm", default="rsa-2048", choices=["rsa-2048", "rsa-3072", "rsa-4096", "ed25519"],
                    help="the key's algorithm (default rsa-2048)")
    ap.add_argument("-k", dest="keep", action="store_true", help="keep the temp directory")
    a = ap.parse_args()
    a.smtp_source = find("smtp-source")
    smtp_sink = find("smtp-sink")
    build()
    top = tempfile.mkdtemp(prefix="postern-bench-dkim-")
    os.chmod(top, 0o755)
    sink = None
    try:
        key = os.path.join(top, "bench.example.test.pem")
        r = subprocess.run([BIN, "dkim", "keygen", "example.test", "--selector", "bench", "--algorithm", a.algorithm, "--out", key],
                           capture_output=True, text=True)
        if r.returncode != 0:
            die("keygen: " + r.stderr)
        sink, sink_port = start_sink(smtp_sink)
        results = {"off": [], "on": []}
        for n in range(1, a.rounds + 1):
            for mode in ("off", "on"):
                log("round %d: signing %s: %d messages of %d bytes over %d sessions" % (n, mode, a.messages, a.size, a.sessions))
                res = run_once(a, mode, sink_port, key, top, n)
                log("round %d: signing %s: %.0f msg/s, %.3f ms CPU/msg, machine %.0f %% busy"
                    % (n, mode, res["msgs_per_s"], res["cpu_ms_per_msg"], res["machine_busy_pct"]))
                results[mode].append(res)
        med = {m: {k: statistics.median(r[k] for r in results[m]) for k in results[m][0]} for m in results}
        off, on = med["off"], med["on"]
        slowdown = (off["msgs_per_s"] / on["msgs_per_s"] - 1.0) * 100.0
        extra_us = (on["cpu_ms_per_msg"] - off["cpu_ms_per_msg"]) * 1000.0
        print("DKIM relay (%s), %d x %d bytes over %d sessions, median of %d rounds:"
              % (a.algorithm, a.messages, a.size, a.sessions, a.rounds))
        print("  %-12s %10s %14s %14s" % ("signing", "msg/s", "CPU ms/msg", "machine busy"))
        for m in ("off", "on"):
            print("  %-12s %10.0f %14.3f %13.0f%%" % (m, med[m]["msgs_per_s"], med[m]["cpu_ms_per_msg"], med[m]["machine_busy_pct"]))
        print("RESULT dkim_algorithm=%s dkim_off_msgs_per_s=%.0f dkim_on_msgs_per_s=%.0f slowdown_pct=%.1f extra_cpu_us_per_msg=%.0f"
              % (a.algorithm, off["msgs_per_s"], on["msgs_per_s"], slowdown, extra_us))
        verdict = "met" if slowdown < TARGET_SLOWDOWN else "NOT met"
        print("TARGET signing costs under %.0f %% end to end: %.1f %% (%s)" % (TARGET_SLOWDOWN, slowdown, verdict))
    finally:
        if sink is not None:
            sink.kill()
            sink.wait()
        if a.keep:
            log("kept " + top)
        else:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
