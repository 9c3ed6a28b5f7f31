#!/usr/bin/env python3
"""scripts/bench --sync: how fast, and in how much memory, `postern sync`
mirrors a large PostfixAdmin database (issue 10, section 5).

Starts a throwaway MariaDB (own datadir, socket and port under a temp dir,
--no-defaults, as ../shared/PEERS.md says), creates `postfix-user-db` with
PostfixAdmin's tables (the fixture's CREATE TABLEs) and fills it with
--domains domains, --mailboxes mailboxes (a $6$ hash each) and --aliases
aliases (one self-alias per mailbox, as PostfixAdmin keeps them, the rest
forwards to two targets), generated inside MariaDB from its SEQUENCE engine.
Then runs the release binary's `postern sync` against it, each run timed
(wall, CPU) with its peak RSS (the kernel's ru_maxrss of the child):

  first      into an empty mirror
  no change  the same source again, twice
  small      after 100 updated, 10 deleted and 10 new mailboxes

and prints the figures and the targets (first < 30 s, no change < 5 s,
peak RSS < 32 MB). Exit 1 if a target is missed or a sync fails.
"""
import argparse
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURE = os.path.join(ROOT, "..", "shared", "fixtures", "postfixadmin-mysql.sql")
HASH = "$6$Zx9uQ2pLk3$qMj7AEOcQ2NdjoMR.RI3TjNQWy5RJoOM2uOsA1g3ZsUz3XguGNaTZUDqg.IFMPDQUak3xjq9eVztj3CPR.yFl1"


def log(msg):
    print(f"bench --sync: {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class MariaDb:
    def __init__(self, base):
        self.dir = os.path.join(base, "mariadb")
        os.makedirs(self.dir)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "s.sock")
        self.user = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("mysql")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(base, 0o755)
            self.user = ["--user=mysql"]
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", *self.user, f"--datadir={self.data}",
             "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", *self.user, f"--datadir={self.data}", f"--socket={self.sock}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin",
             "--innodb-buffer-pool-size=256M", "--max-allowed-packet=64M"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(base, "mariadbd.log"), "w"))
        for _ in range(600):
            if subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={self.sock}", "-uroot", "ping"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit("bench --sync: mariadbd did not start (see mariadbd.log)")

    def sql(self, text, db=None):
        cmd = ["mariadb", "--no-defaults", f"--socket={self.sock}", "-uroot", "--batch", "--skip-column-names"]
        if db:
            cmd.append(db)
        r = subprocess.run(cmd, input=text.encode(), capture_output=True)
        if r.returncode != 0:
            raise SystemExit(f"bench --sync: mariadb failed: {r.stderr.decode()}")
        return r.stdout.decode()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def fill(db, domains, mailboxes, aliases):
    with open(FIXTURE) as f:
        text = "".join(l for l in f if not l.lstrip().startswith("--"))
    schema = "".join(s + ";" for s in text.split(";") if "CREATE TABLE" in s)
    db.sql("CREATE DATABASE `postfix-user-db`;")
    db.sql(schema, "postfix-user-db")
    dom = f"CONCAT('d', seq % {domains} + 1, '.test')"
    forwards = max(aliases - mailboxes, 0)
    db.sql(f"""
INSERT INTO domain (domain, description, transport, active)
  SELECT CONCAT('d', seq, '.test'), CONCAT('domain ', seq), 'virtual', 1 FROM seq_1_to_{domains};
INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain, active, created, modified)
  SELECT CONCAT('u', seq, '@', {dom}), '{HASH}', CONCAT('User ', seq),
         CONCAT({dom}, '/u', seq, '/'), 0, CONCAT('u', seq), {dom}, 1, NOW(), NOW()
  FROM seq_1_to_{mailboxes};
INSERT INTO alias (address, goto, domain, active, created, modified)
  SELECT username, username, domain, 1, NOW(), NOW() FROM mailbox;
INSERT INTO alias (address, goto, domain, active, created, modified)
  SELECT CONCAT('a', seq, '@', {dom}), CONCAT('u', seq, '@', {dom}, ',ext', seq, '@remote.test'),
         {dom}, 1, NOW(), NOW()
  FROM seq_1_to_{forwards};
""", "postfix-user-db")
    counts = db.sql("SELECT (SELECT COUNT(*) FROM domain), (SELECT COUNT(*) FROM mailbox), "
                    "(SELECT COUNT(*) FROM alias);", "postfix-user-db").split()
    log(f"source: {counts[0]} domains, {counts[1]} mailboxes, {counts[2]} aliases")


def run_sync(binary, cfg):
    """Runs `postern sync`; returns (exit code, wall s, cpu s, peak RSS KiB, stdout)."""
    start = time.monotonic()
    errf = tempfile.TemporaryFile()
    p = subprocess.Popen([binary, "sync", "--config", cfg], stdout=subprocess.PIPE, stderr=errf)
    out = p.stdout.read()
    # wait4 gives the child's own rusage (ru_maxrss in KiB on Linux).
    _, status, ru = os.wait4(p.pid, 0)
    errf.seek(0)
    err = errf.read()
    wall = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    p.returncode = code
    if code != 0:
        log(f"postern sync exited {code}:\n{out.decode()}{err.decode()}")
    return code, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, out.decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", type=int, default=5000)
    ap.add_argument("--mailboxes", type=int, default=100000)
    ap.add_argument("--aliases", type=int, default=200000)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    for tool in ["mariadb-install-db", "mariadbd", "mariadb", "mariadb-admin"]:
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            raise SystemExit(f"bench --sync: {tool} is missing: run scripts/install-peers")
    os.environ["PATH"] += ":/usr/sbin:/sbin"
    log("building postern (cargo build --release)")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "postern")
    base = tempfile.mkdtemp(prefix="postern-bench-sync-")
    db = None
    try:
        db = MariaDb(base)
        t = time.monotonic()
        fill(db, a.domains, a.mailboxes, a.aliases)
        log(f"source filled in {time.monotonic() - t:.1f} s")
        # A real source is not freshly bulk-loaded: let InnoDB write its
        # dirty pages out first, or the syncs measure its flushing too.
        for _ in range(120):
            dirty = db.sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                           "WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY';").strip()
            if int(dirty or 0) < 50:
                break
            time.sleep(0.5)
        log(f"source settled after {time.monotonic() - t:.1f} s")
        db.sql("CREATE USER 'bench'@'localhost' IDENTIFIED BY 'bench-pass'; "
               "GRANT SELECT ON `postfix-user-db`.* TO 'bench'@'localhost';")
        pwfile = os.path.join(base, "mysql-password")
        with open(pwfile, "w") as f:
            f.write("bench-pass\n")
        os.chmod(pwfile, 0o600)
        cfg = os.path.join(base, "postern.toml")
        with open(cfg, "w") as f:
            f.write(f'data_dir = "{base}/data"\n[[listener]]\naddress = "127.0.0.1:0"\n'
                    f'[sync.mysql]\nhost = "localhost"\nsocket = "{db.sock}"\nuser = "bench"\n'
                    f'password_file = "{pwfile}"\ndatabase = "postfix-user-db"\n')
        results = []
        for name in ["first", "no change", "no change"]:
            r = run_sync(binary, cfg)
            results.append((name, r))
            log(f"{name}: {r[4].strip().splitlines()[-1] if r[4] else 'failed'}")
        db.sql("UPDATE mailbox SET quota = 1048576, modified = NOW() WHERE username LIKE 'u1_@%';"
               "DELETE FROM mailbox WHERE username LIKE 'u2_@%' AND LENGTH(username) < 14 LIMIT 10;"
               "INSERT INTO mailbox (username, password, maildir, local_part, domain) "
               "SELECT CONCAT('new', seq, '@d1.test'), 'x', CONCAT('d1.test/new', seq, '/'), CONCAT('new', seq), 'd1.test' "
               "FROM seq_1_to_10;", "postfix-user-db")
        r = run_sync(binary, cfg)
        results.append(("small change", r))
        db_size = os.path.getsize(os.path.join(base, "data", "directory.sqlite"))
        print()
        print(f"postern sync: {a.domains} domains, {a.mailboxes} mailboxes, {a.aliases} aliases "
              f"(mirror file {db_size / 1e6:.1f} MB)")
        print(f"{'run':<14} {'exit':>4} {'wall s':>8} {'CPU s':>7} {'peak RSS MB':>12}  changes")
        for name, (code, wall, cpu, rss, out) in results:
            m = re.search(r"postern sync: (no change|\d+ changes)", out)
            print(f"{name:<14} {code:>4} {wall:>8.2f} {cpu:>7.2f} {rss / 1024:>12.1f}  {m.group(1) if m else '-'}")
        first, nochange = results[0][1], results[1][1]
        peak = max(r[3] for _, r in results) / 1024
        ok = all(r[0] == 0 for _, r in results)
        print()
        print(f"targets: first sync < 30 s: {'met' if first[1] < 30 else 'NOT met'} ({first[1]:.1f} s); "
              f"no-change sync < 5 s: {'met' if nochange[1] < 5 else 'NOT met'} ({nochange[1]:.2f} s); "
              f"peak RSS < 32 MB: {'met' if peak < 32 else 'NOT met'} ({peak:.1f} MB)")
        ok = ok and first[1] < 30 and nochange[1] < 5 and peak < 32
        return 0 if ok else 1
    finally:
        if db:
            db.stop()
        if a.keep:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
