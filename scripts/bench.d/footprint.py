#!/usr/bin/env python3
"""What postern costs a board: binary sizes and idle memory, and the smoke
test scripts/build-release runs on each board binary.

  footprint.py                  sizes of the board builds in target/board/
                                (scripts/build-release) and of the glibc
                                release build, then the idle RSS of the
                                x86_64 musl build (and of the glibc build,
                                for comparison); one line each, with the
                                issue 11 budgets: <= 4 MB without the MySQL
                                importer, <= 5.5 MB with it, idle RSS <= 3 MB
  footprint.py smoke [--runner CMD] BIN
                                starts BIN (under CMD, e.g. qemu-aarch64),
                                says EHLO, STARTTLS, EHLO and delivers one
                                message into a Maildir; exit 1 if any fails

Idle RSS: `postern serve` on the embedded default config
(src/config/default.toml, the one the README's first command runs; only
its port is 0 here, so nothing else on 2525 matters) in a temp data dir,
read from /proc/PID/status after it has listened and sat idle for 5 s
(past the start-up page trim of src/server/trim.rs),
then again 2 s after it delivered one message. VmRSS is split into
RssAnon (what postern allocated) and RssFile (its own code pages, which
the kernel maps in 64 KiB runs around every page touched, so most of the
binary's text shows up: clean pages shared with the page cache, dropped
under memory pressure). MB = 10^6 bytes.
"""

import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
BOARD = os.path.join(TARGET, "board")
BOARD_TARGETS = [
    "x86_64-unknown-linux-musl",
    "aarch64-unknown-linux-musl",
    "armv7-unknown-linux-musleabihf",
]
# Issue 11's budgets, in bytes.
LIMIT_WITH_MYSQL = 5_500_000
LIMIT_WITHOUT_MYSQL = 4_000_000
LIMIT_IDLE_RSS = 3_000_000


def mb(n):
    return f"{n / 1e6:.2f} MB"


def verdict(n, limit):
    return f"(budget {mb(limit)}: {'met' if n <= limit else 'NOT MET'})"


class Server:
    """`postern serve` in a temp dir on the embedded default with port 0."""

    def __init__(self, binary, runner=(), wait=60.0):
        self.dir = tempfile.mkdtemp(prefix="postern-footprint-")
        self.data = os.path.join(self.dir, "postern-data")
        with open(os.path.join(ROOT, "src/config/default.toml")) as f:
            conf = f.read()
        conf, n = re.subn(r'(?m)^address = "127\.0\.0\.1:2525"$', 'address = "127.0.0.1:0"', conf)
        if n != 1:
            raise SystemExit("footprint: src/config/default.toml no longer has its 127.0.0.1:2525 listener")
        self.conf = os.path.join(self.dir, "postern.toml")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.log_path = os.path.join(self.dir, "log")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*runner, os.path.abspath(binary), "serve", "--config", self.conf],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        )
        log.close()
        deadline = time.monotonic() + wait
        while "listening on" not in self.log():
            if self.proc.poll() is not None:
                self.fail(f"exited ({self.proc.returncode}) at start")
            if time.monotonic() > deadline:
                self.fail(f"not listening after {wait:.0f} s")
            time.sleep(0.05)
        with open(os.path.join(self.data, "listening")) as f:
            # `<n> <configured> <bound> <mode>`
            self.port = int(f.readline().split()[2].rsplit(":", 1)[1])

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def fail(self, why):
        self.stop()
        raise SystemExit(f"footprint: postern {why}; its log:\n{self.log()}")

    def rss(self):
        """(VmRSS, RssAnon, RssFile) in bytes, from /proc/PID/status. RssFile
        is the binary's own code and data pages: clean, shared with the page
        cache, given back under memory pressure; RssAnon is what postern
        allocated. Under qemu-user these would be the emulator's."""
        got = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    got[key] = int(value.split()[0]) * 1024
        if len(got) != 3:
            raise SystemExit(f"footprint: /proc/{self.proc.pid}/status lacks VmRSS, RssAnon or RssFile")
        return got["VmRSS"], got["RssAnon"], got["RssFile"]

    def send(self, starttls):
        """EHLO [, STARTTLS, EHLO], one message to board@localhost; returns
        what happened, for the log, and the path of the delivered file."""
        said = []
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname="builder.test", timeout=60) as s:
            code, _ = s.ehlo()
            if code != 250:
                self.fail(f"answered EHLO with {code}")
            said.append("EHLO 250")
            if starttls:
                if not s.has_extn("starttls"):
                    self.fail("offered no STARTTLS")
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE  # its self-signed first-start certificate
                s.starttls(context=ctx)
                s.ehlo()
                said.append(f"STARTTLS {s.sock.version()}")
            token = f"board-{os.getpid()}-{time.time_ns()}"
            msg = f"From: builder@example.test\r\nTo: board@localhost\r\nSubject: {token}\r\n\r\nfrom the builder\r\n"
            s.sendmail("builder@example.test", ["board@localhost"], msg)
            said.append("250 queued")
        new = os.path.join(self.data, "local", "board", "new")
        deadline = time.monotonic() + 60
        while True:
            for name in os.listdir(new) if os.path.isdir(new) else []:
                path = os.path.join(new, name)
                with open(path, "rb") as f:
                    if token.encode() in f.read():
                        return said, path
            if time.monotonic() > deadline:
                self.fail(f"did not deliver into {new} within 60 s")
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def smoke(argv):
    runner = []
    if argv[:1] == ["--runner"]:
        runner = argv[1].split()
        argv = argv[2:]
    if len(argv) != 1:
        raise SystemExit("usage: footprint.py smoke [--runner CMD] BIN")
    srv = Server(argv[0], runner)
    try:
        said, path = srv.send(starttls=True)
        print(f"  {' '.join(runner) or 'native'}: {', '.join(said)}, delivered to local/board/new/{os.path.basename(path)}")
    finally:
        srv.close()


def idle_rss(binary):
    srv = Server(binary)
    try:
        # postern lets go of its start-up pages 3 s after it is ready
        # (src/server/trim.rs): idle is after that.
        time.sleep(5)
        started = srv.rss()
        srv.send(starttls=False)
        time.sleep(2)
        return started, srv.rss()
    finally:
        srv.close()


def show_rss(r):
    return f"{mb(r[0])} (anonymous {mb(r[1])}, file {mb(r[2])})"


def footprint():
    for t in BOARD_TARGETS:
        for name, limit, what in (
            ("postern-no-mysql", LIMIT_WITHOUT_MYSQL, "without MySQL"),
            ("postern", LIMIT_WITH_MYSQL, "with MySQL"),
        ):
            path = os.path.join(BOARD, t, name)
            if os.path.exists(path):
                n = os.path.getsize(path)
                print(f"binary size {t} {what}: {mb(n)} ({n} bytes) {verdict(n, limit)}")
            else:
                print(f"binary size {t} {what}: not built (scripts/build-release {t})")
    glibc = os.path.join(TARGET, "release", "postern")
    if os.path.exists(glibc):
        print(f"binary size glibc release (opt-level 3, default features): {mb(os.path.getsize(glibc))}")
    musl = os.path.join(BOARD, "x86_64-unknown-linux-musl", "postern")
    for label, path, budget in (
        ("x86_64 musl without MySQL", musl + "-no-mysql", True),
        ("x86_64 musl with MySQL", musl, True),
        ("glibc release", glibc, False),
    ):
        if not os.path.exists(path):
            print(f"idle RSS {label}: not built")
            continue
        started, after = idle_rss(path)
        tail = f" {verdict(started[0], LIMIT_IDLE_RSS)}" if budget else ""
        print(f"idle RSS {label}: {show_rss(started)} after start, {show_rss(after)} after one delivery{tail}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["smoke"]:
        smoke(sys.argv[2:])
    else:
        footprint()
