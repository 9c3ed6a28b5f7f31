//! Never lose accepted mail (issue 2, section 6, and the queue cases of
//! "Bad input"): SIGKILL at random moments while clients send, a full disk,
//! an unwritable spool, corrupt and half-received queue files, mail that
//! stays queued across restarts, and a clean stop on SIGTERM.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(15);

/// A small xorshift generator: no dependency, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn from_env_or_time() -> Rng {
        let seed = std::env::var("POSTERN_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("crash test seed: POSTERN_CRASH_SEED={seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// What the client saw for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    /// 250 after the final dot, with the queue ID.
    Accepted(String),
    /// The final dot was (or may have been) sent, but no reply came: the
    /// server may have committed it just before it died.
    Ambiguous,
    /// A 4xx/5xx reply to the final dot.
    Refused(String),
    /// The connection failed before the message data was complete.
    NotCompleted,
}

/// A client that reports failures instead of panicking.
struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut c = Client {
            r: BufReader::new(s),
        };
        c.expect(220)?;
        c.r.get_mut().write_all(b"EHLO crash.client.test\r\n")?;
        c.expect(250)?;
        Ok(c)
    }

    /// Reads a whole reply: (code, first line).
    fn reply(&mut self) -> std::io::Result<(u16, String)> {
        let mut first = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed",
                ));
            }
            if first.is_empty() {
                first = line.trim_end().to_string();
            }
            let code = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| std::io::Error::other(line.clone()))?;
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, first));
            }
        }
    }

    fn expect(&mut self, code: u16) -> std::io::Result<String> {
        let (c, line) = self.reply()?;
        if c != code {
            return Err(std::io::Error::other(format!(
                "expected {code}, got {line}"
            )));
        }
        Ok(line)
    }

    fn cmd(&mut self, line: &str, code: u16) -> std::io::Result<String> {
        self.r
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())?;
        self.expect(code)
    }

    /// One transaction; Err(()) means the connection is unusable.
    fn send(&mut self, n: usize, rcpt: &str) -> (Seen, bool) {
        let before_dot = (|| {
            self.cmd("MAIL FROM:<crash@client.test>", 250)?;
            self.cmd(&format!("RCPT TO:<{rcpt}>"), 250)?;
            self.cmd("DATA", 354)?;
            self.r.get_mut().write_all(crash_message(n).as_bytes())
        })();
        if before_dot.is_err() {
            return (Seen::NotCompleted, false);
        }
        // From here on the server may have the whole message.
        if self.r.get_mut().write_all(b"\r\n.\r\n").is_err() {
            return (Seen::Ambiguous, false);
        }
        match self.reply() {
            Ok((250, line)) => {
                let id = queue_id_in(&line).unwrap_or_default();
                (Seen::Accepted(id), true)
            }
            Ok((_, line)) => (Seen::Refused(line), true),
            Err(_) => (Seen::Ambiguous, false),
        }
    }
}

fn crash_message(n: usize) -> String {
    let filler: String = (0..8)
        .map(|i| {
            format!("filler line {i} of message {n} .......................................\r\n")
        })
        .collect();
    format!(
        "From: crash@client.test\r\nTo: alice@example.test\r\nSubject: crash {n}\r\n\r\ncrash-number={n};\r\n{filler}end of {n}"
    )
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn wait_queue_empty(srv: &Server, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if list(&srv.queue_dir().join("messages")).is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Restarts (the harness waits for this run's own "listening on" line).
/// Each run listens on a new port the kernel picked: clients ask for the
/// current address again.
fn restart(srv: &mut Server) {
    srv.restart();
}

/// SIGKILL at random moments while 4 clients send 300 messages to `rcpt`,
/// whose copies land in `maildirs`; then checks every message against
/// what its client saw: a 250 means exactly one copy in each Maildir, a
/// lost reply at most one, a refusal or a cut-off none.
fn crash_run(builder: ServerBuilder, rcpt: &'static str, maildirs: &[&str]) {
    const TOTAL: usize = 300;
    const CLIENTS: usize = 4;
    const MAX_KILLS: usize = 30;
    let mut rng = Rng::from_env_or_time();
    let mut srv = builder.start();
    // Where the server listens now: None while it is down. Every run binds
    // a new port (port 0), so a client never reaches a port the server
    // gave up, which another test's server may have been given.
    let addr: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(Some(srv.addr())));
    let started = Instant::now();
    let client_deadline = started + Duration::from_secs(45);

    let next = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<BTreeMap<usize, Seen>>> = Arc::default();
    let finished = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..CLIENTS {
        let (next, seen, finished, stop, addr) = (
            next.clone(),
            seen.clone(),
            finished.clone(),
            stop.clone(),
            addr.clone(),
        );
        let mut crng = Rng(rng.next() | 1);
        threads.push(std::thread::spawn(move || {
            'outer: while !stop.load(Ordering::SeqCst) && Instant::now() < client_deadline {
                let current = *addr.lock().unwrap();
                let mut c = match current.map(Client::connect) {
                    Some(Ok(c)) => c,
                    _ => {
                        // Down between a kill and the restart: try again.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                // A few messages per connection (1..=5).
                for _ in 0..crng.range(1, 5) {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= TOTAL {
                        break 'outer;
                    }
                    let (outcome, usable) = c.send(n, rcpt);
                    seen.lock().unwrap().insert(n, outcome);
                    if !usable {
                        continue 'outer;
                    }
                }
                let _ = c.cmd("QUIT", 221);
            }
            finished.fetch_add(1, Ordering::SeqCst);
        }));
    }

    let mut kills = 0;
    while finished.load(Ordering::SeqCst) < CLIENTS
        && kills < MAX_KILLS
        && Instant::now() < client_deadline
    {
        std::thread::sleep(Duration::from_millis(rng.range(100, 400)));
        if finished.load(Ordering::SeqCst) == CLIENTS {
            break;
        }
        *addr.lock().unwrap() = None;
        srv.kill9();
        kills += 1;
        restart(&mut srv);
        *addr.lock().unwrap() = Some(srv.addr());
    }
    for t in threads {
        t.join().expect("client thread");
    }
    stop.store(true, Ordering::SeqCst);
    // One more crash and recovery, then let the queue drain.
    srv.kill9();
    restart(&mut srv);
    assert!(
        wait_queue_empty(&srv, Duration::from_secs(30)),
        "queue drains after the last restart: {:?}\n{}",
        list(&srv.queue_dir().join("messages")),
        srv.log()
    );
    let seen = seen.lock().unwrap().clone();
    assert!(kills > 0, "the server was killed at least once");
    for m in maildirs {
        check_copies(&srv, &seen, m, kills, started);
    }
    assert!(
        list(&srv.queue_dir().join("incoming")).is_empty(),
        "no half-received message left"
    );
    assert!(
        list(&srv.queue_dir().join("corrupt")).is_empty(),
        "no queue file damaged by the crashes"
    );
}

/// The copies of the crash test's messages in one Maildir, against what
/// each client saw.
fn check_copies(
    srv: &Server,
    seen: &BTreeMap<usize, Seen>,
    maildir: &str,
    kills: usize,
    started: Instant,
) {
    let dir = srv.mailbox(maildir);
    let mut delivered: BTreeMap<usize, usize> = BTreeMap::new();
    let mut texts: BTreeMap<usize, String> = BTreeMap::new();
    let mut strays = Vec::new();
    for f in maildir_files(&dir) {
        let text = std::fs::read_to_string(&f).unwrap();
        match text
            .split("crash-number=")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .and_then(|s| s.parse().ok())
        {
            Some(n) => {
                *delivered.entry(n).or_default() += 1;
                texts.insert(n, text);
            }
            None => strays.push(f),
        }
    }
    let count = |f: fn(&Seen) -> bool| seen.values().filter(|s| f(s)).count();
    let accepted = count(|s| matches!(s, Seen::Accepted(_)));
    let ambiguous = count(|s| matches!(s, Seen::Ambiguous));
    let refused = count(|s| matches!(s, Seen::Refused(_)));
    let incomplete = count(|s| matches!(s, Seen::NotCompleted));
    let ambiguous_delivered = seen
        .iter()
        .filter(|(n, s)| **s == Seen::Ambiguous && delivered.contains_key(n))
        .count();
    let log = srv.log();
    eprintln!(
        "crash test ({maildir}): {} attempted, {accepted} got 250, {ambiguous} ambiguous ({ambiguous_delivered} of them delivered), \
         {refused} refused, {incomplete} cut before the end of data, {kills} kills, {} files delivered, \
         {} left in tmp/, {} delivered directly, {} redeliveries recognised, {:.1}s",
        seen.len(),
        delivered.values().sum::<usize>(),
        list(&dir.join("tmp")).len(),
        log.matches("(delivered directly)").count(),
        log.matches("already delivered").count(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        strays.is_empty(),
        "only crash-test messages in the Maildir: {strays:?}"
    );
    // Copies are written as anonymous files (O_TMPFILE) until linked into
    // new/: a kill leaves nothing behind in tmp/.
    assert!(
        list(&dir.join("tmp")).is_empty(),
        "nothing left in {maildir}tmp/"
    );
    assert!(accepted > 0, "some messages got through");
    let mut problems = Vec::new();
    for (n, s) in seen {
        let copies = delivered.get(n).copied().unwrap_or(0);
        match s {
            Seen::Accepted(id) if copies != 1 => problems.push(format!(
                "message {n} got 250 (queued as {id}) but was delivered {copies} times"
            )),
            Seen::Accepted(id) if !texts[n].contains(&format!(" id {id}")) => {
                problems.push(format!(
                    "message {n} got 250 as {id} but the delivered copy names another queue id"
                ))
            }
            Seen::Ambiguous if copies > 1 => {
                problems.push(format!("message {n} (reply lost) delivered {copies} times"))
            }
            Seen::Refused(r) if copies > 0 => {
                problems.push(format!("message {n} was refused ({r}) but delivered"))
            }
            Seen::NotCompleted if copies > 0 => problems.push(format!(
                "message {n} never completed DATA but was delivered"
            )),
            _ => {}
        }
    }
    for n in delivered.keys() {
        if !seen.contains_key(n) {
            problems.push(format!("message {n} delivered but never sent"));
        }
    }
    assert!(problems.is_empty(), "{maildir}:\n{}", problems.join("\n"));
}

/// The queue road: every message is queued, then delivered by the runner.
#[test]
fn sigkill_at_random_moments_loses_no_accepted_mail() {
    crash_run(
        Server::builder().set("delivery", "direct = false"),
        "alice@example.test",
        &["example.test/alice/"],
    );
}

/// The one-write road: local mail written straight into the Maildir
/// before the 250, no queue file.
#[test]
fn sigkill_on_the_direct_road_loses_and_duplicates_nothing() {
    crash_run(
        Server::builder(),
        "alice@example.test",
        &["example.test/alice/"],
    );
}

/// The one-write road with two copies per message (an alias of two
/// mailboxes): each Maildir on its own holds to the same rules.
#[test]
fn sigkill_on_the_direct_road_with_two_copies() {
    crash_run(
        Server::builder(),
        "team@example.test",
        &["example.test/alice/", "example.test/bob/"],
    );
}

/// A well-formed queue file for alice (the spool format of envelope.rs).
fn queue_file(id: &str, subject: &str) -> String {
    let micros = postern::queue::id::decode(id).expect("valid id");
    format!(
        "POSTERN-QUEUE 1\nid {id}\narrival {micros}\npid 4242\nclient 127.0.0.1 unknown\nhelo client.test\n\
         proto ESMTP\nfrom sender@client.test\nutf8 0\nrcpt alice@example.test\n.\n\
         From: sender@client.test\nSubject: {subject}\n\nbody of {subject}\n"
    )
}

fn fresh_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    postern::queue::id::next(micros).0
}

#[test]
fn full_disk_answers_452_and_corrupts_nothing() {
    // ulimit -f 64: no file over 64 KiB can be written, as on a full disk.
    let mut srv = Server::builder().file_size_limit(64).start();
    let mut c = srv.smtp();
    c.hello();
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab\r\n";
    let big = message(
        "too big for the disk",
        &line.repeat(200 * 1024 / line.len()),
    );
    let r = c.send_mail("sender@client.test", &["alice@example.test"], &big);
    assert!(
        r.first.starts_with("452 4.3.1"),
        "a write failure is 452 4.3.1 at the end of DATA: {r:?}"
    );
    assert!(!r.first.contains("queued"), "{r:?}");

    // The session goes on and small mail still gets through.
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("small", "fits"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    c.expect("QUIT", "221");
    let alice = srv.mailbox("example.test/alice/");
    let files = wait_maildir(&alice, 1, WAIT);
    assert_eq!(files.len(), 1, "{}", srv.log());
    assert!(std::fs::read_to_string(&files[0])
        .unwrap()
        .contains("Subject: small"));
    assert!(wait_queue_empty(&srv, WAIT), "{}", srv.log());
    let q = srv.queue_dir();
    assert!(
        list(&q.join("incoming")).is_empty(),
        "no half message left in incoming/"
    );
    assert!(list(&q.join("corrupt")).is_empty());
    assert!(list(&alice.join("tmp")).is_empty());
    assert!(
        srv.log()
            .contains("error: cannot queue message from unknown[127.0.0.1]"),
        "{}",
        srv.log()
    );
    // A clean stop: once postern has exited, nothing can still deliver the
    // refused message.
    assert!(srv.stop().success(), "{}", srv.log());
    assert_eq!(
        maildir_files(&alice).len(),
        1,
        "the refused message is not delivered"
    );
}

#[test]
fn unwritable_spool_answers_452_and_recovers() {
    // The queue road: local mail would otherwise go straight to the Maildir.
    let srv = Server::builder().set("delivery", "direct = false").start();
    let incoming = srv.queue_dir().join("incoming");
    let aside = srv.queue_dir().join("incoming.aside");
    // Works as root too (permissions would not): a file where the directory was.
    std::fs::rename(&incoming, &aside).unwrap();
    std::fs::write(&incoming, b"not a directory").unwrap();
    let mut c = srv.smtp();
    c.hello();
    // The queue file is opened with the message's first large write or at
    // its end (one trip to a blocking thread per message): the refusal
    // comes after the data, and the session goes on.
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("while broken", "lost"),
    );
    assert!(
        r.first.starts_with("452 4.3.1"),
        "spool unwritable: 452 4.3.1, got {r:?}"
    );
    c.expect("RSET", "250");

    std::fs::remove_file(&incoming).unwrap();
    std::fs::rename(&aside, &incoming).unwrap();
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("after repair", "ok"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let files = wait_maildir(&srv.mailbox("example.test/alice/"), 1, WAIT);
    assert_eq!(files.len(), 1, "{}", srv.log());
}

#[test]
fn corrupt_queue_file_is_set_aside_and_the_server_serves() {
    let mut srv = Server::start();
    assert!(srv.stop().success());
    let q = srv.queue_dir();
    let garbage: &[u8] = b"\x00\x01garbage, not a queue file\xff\n";
    std::fs::write(q.join("messages/1M19G9BJ42P"), garbage).unwrap();
    // Right magic, cut short; and a header naming another id.
    let truncated = "POSTERN-QUEUE 1\nid 1M19G9BJ42Q\narrival 17";
    std::fs::write(q.join("messages/1M19G9BJ42Q"), truncated).unwrap();
    std::fs::write(
        q.join("messages/1M19G9BJ42R"),
        queue_file("1M19G9BJ42S", "wrong id"),
    )
    .unwrap();
    restart(&mut srv);

    let log = srv.log();
    for id in ["1M19G9BJ42P", "1M19G9BJ42Q", "1M19G9BJ42R"] {
        assert!(
            log.lines()
                .any(|l| l.contains(id) && l.contains("damaged queue file moved to corrupt/")),
            "a clear log line for {id}:\n{log}"
        );
        assert!(
            q.join("corrupt").join(id).is_file(),
            "{id} moved to corrupt/"
        );
        assert!(
            !q.join("messages").join(id).exists(),
            "{id} no longer in messages/"
        );
    }
    assert_eq!(
        std::fs::read(q.join("corrupt/1M19G9BJ42P")).unwrap(),
        garbage,
        "kept as it was"
    );

    let mut c = srv.smtp();
    c.hello();
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("after corrupt", "fine"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let files = wait_maildir(&srv.mailbox("example.test/alice/"), 1, WAIT);
    assert_eq!(files.len(), 1, "{}", srv.log());
    assert!(std::fs::read_to_string(&files[0])
        .unwrap()
        .contains("Subject: after corrupt"));
}

#[test]
fn half_received_message_is_removed_at_start_and_never_delivered() {
    let mut srv = Server::start();
    assert!(srv.stop().success());
    let q = srv.queue_dir();
    let half = fresh_id();
    let whole = fresh_id();
    std::fs::write(
        q.join("incoming").join(&half),
        queue_file(&half, "half received"),
    )
    .unwrap();
    // The same form in messages/ is an accepted message: it is delivered.
    std::fs::write(
        q.join("messages").join(&whole),
        queue_file(&whole, "accepted before"),
    )
    .unwrap();
    restart(&mut srv);

    assert!(
        srv.wait_log(&format!("{whole}: removed"), WAIT),
        "{}",
        srv.log()
    );
    assert!(
        srv.log()
            .contains("queue recovered: 1 queued, 0 on hold, 1 half-received removed"),
        "{}",
        srv.log()
    );
    assert!(
        list(&q.join("incoming")).is_empty(),
        "incoming/ is emptied at start"
    );
    // A message sent now is delivered after anything recovered.
    let mut c = srv.smtp();
    c.hello();
    let r = c.send_mail(
        "sender@client.test",
        &["alice@example.test"],
        &message("sent after", "x"),
    );
    let id = queue_id_in(&r.first).expect("queue id");
    assert!(
        srv.wait_log(&format!("{id}: removed"), WAIT),
        "{}",
        srv.log()
    );
    let alice = srv.mailbox("example.test/alice/");
    let all: Vec<String> = maildir_files(&alice)
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all.iter().any(|t| t.contains("Subject: accepted before")),
        "{all:?}"
    );
    assert!(
        all.iter().any(|t| t.contains("Subject: sent after")),
        "{all:?}"
    );
    assert!(
        !all.iter().any(|t| t.contains("half received")),
        "the half-received message is never delivered"
    );
    assert!(
        !srv.log().contains(&format!("{half}: to=")),
        "{}",
        srv.log()
    );
}

#[test]
fn backup_mx_mail_stays_queued_across_restart_and_sigkill() {
    let mut srv = Server::start();
    let mut c = srv.smtp();
    c.hello();
    let r = c.send_mail(
        "sender@client.test",
        &["someone@backup.test"],
        &message("for the backup", "keep me"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let id = queue_id_in(&r.first).expect("queue id");
    c.expect("QUIT", "221");
    assert!(
        srv.wait_log(&format!("{id}: to=<someone@backup.test>"), WAIT),
        "{}",
        srv.log()
    );
    let q = srv.queue_dir();
    let msg = q.join("messages").join(&id);
    let state = q.join("state").join(&id);
    let deadline = Instant::now() + WAIT;
    while !state.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(msg.is_file(), "still queued in messages/");
    let st = std::fs::read_to_string(&state).expect("state file after a deferral");
    assert!(st.contains("attempts 1"), "{st}");
    assert!(srv.log().contains("status=deferred"), "{}", srv.log());
    let bytes = std::fs::read(&msg).unwrap();

    assert!(srv.stop().success(), "graceful stop");
    restart(&mut srv);
    assert!(
        srv.log().contains("queue recovered: 1 queued"),
        "{}",
        srv.log()
    );
    assert_eq!(
        std::fs::read(&msg).unwrap(),
        bytes,
        "queue file unchanged after a graceful restart"
    );
    assert!(state.is_file(), "state kept");

    srv.kill9();
    restart(&mut srv);
    assert_eq!(
        std::fs::read(&msg).unwrap(),
        bytes,
        "queue file unchanged after SIGKILL"
    );
    assert!(state.is_file(), "state kept after SIGKILL");
    assert_eq!(
        srv.log().matches("queue recovered: 1 queued").count(),
        2,
        "{}",
        srv.log()
    );
    assert!(
        !srv.log().contains(&format!("{id}: removed")),
        "never removed: {}",
        srv.log()
    );
    assert!(list(&q.join("corrupt")).is_empty());
}

#[test]
fn sigterm_stops_cleanly_while_idle() {
    let mut srv = Server::start();
    // Some traffic first, then idle.
    let mut c = srv.smtp();
    c.hello();
    assert_eq!(
        c.send_mail(
            "sender@client.test",
            &["alice@example.test"],
            &message("before stop", "x")
        )
        .code,
        250
    );
    c.expect("QUIT", "221");
    assert_eq!(
        wait_maildir(&srv.mailbox("example.test/alice/"), 1, WAIT).len(),
        1
    );
    let status = srv.stop();
    assert!(
        status.success(),
        "SIGTERM: exit status 0, got {status}\n{}",
        srv.log()
    );
    assert!(srv.log().contains("stopped"), "{}", srv.log());
    // The port is free again, the queue unlocked: it starts again.
    restart(&mut srv);
    let mut c = srv.smtp();
    c.hello();
    assert_eq!(
        c.send_mail(
            "sender@client.test",
            &["alice@example.test"],
            &message("after stop", "x")
        )
        .code,
        250
    );
}
