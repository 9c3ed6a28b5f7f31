//! Queue control (`postern queue list|show|flush|hold|release|delete|
//! requeue`), through the real binary and its control socket: mail
//! deferred for a remote domain or held back from a local Maildir, reports
//! in text and JSON, the spool of a stopped server, and the bad-input
//! cases: garbage and hang-ups on the socket, an unprivileged user,
//! unknown and malformed IDs, `hold` at the instant of delivery, a damaged
//! state file. Nothing may be lost or delivered twice.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(15);
const REMOTE: &str = "x@remote.test";

/// What one `postern queue ...` run did.
#[derive(Debug)]
struct Out {
    code: i32,
    out: String,
    err: String,
}

fn queue_cmd(srv: &Server, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("queue").arg("--config").arg(&srv.config).args(args);
    c.stdin(Stdio::null());
    c
}

fn output(c: &mut Command) -> Out {
    let o = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    Out {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs `postern queue <args>` and checks its exit code.
fn queue(srv: &Server, args: &[&str], code: i32) -> Out {
    let o = output(&mut queue_cmd(srv, args));
    assert_eq!(o.code, code, "postern queue {args:?}: {o:?}\n{}", srv.log());
    o
}

/// The output of a `postern queue <args>` that must succeed.
fn ok(srv: &Server, args: &[&str]) -> String {
    queue(srv, args, 0).out
}

/// Waits for `needle` in the server log (at once if it is there).
fn expect_log(srv: &Server, needle: &str) {
    assert!(srv.wait_log(needle, WAIT), "{needle:?}:\n{}", srv.log());
}

/// Checks `text` with Python's JSON parser and evaluates `expr` on it
/// (`d` is the document), e.g. `d[0]['attempts']`; the result as JSON.
fn json(text: &str, expr: &str) -> String {
    let mut c = Command::new(require("python3"))
        .args([
            "-c",
            "import json,sys; d=json.load(sys.stdin); print(json.dumps(eval(sys.argv[1])))",
            expr,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "not JSON, or no {expr}: {err}\n{text}");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A message from a trusted client; its queue ID.
fn send(srv: &Server, to: &[&str], subject: &str) -> String {
    let mut c = srv.smtp();
    c.hello();
    let r = c.send_mail("sender@client.test", to, &message(subject, "hello\r\n"));
    assert_eq!(r.code, 250, "{r:?}");
    queue_id_in(&r.text).expect("a queue ID in the 250")
}

/// The delivery log lines of one message (`ID: to=<...>, ... status=...`).
fn deliveries(srv: &Server, id: &str) -> Vec<String> {
    let needle = format!("{id}: to=<");
    srv.log()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(String::from)
        .collect()
}

/// Waits until `n` deferrals of `id` are logged.
fn wait_deferred(srv: &Server, id: &str, n: usize) {
    wait_until(&format!("deferral {n} of {id}"), srv, || {
        let d = deliveries(srv, id);
        d.iter().filter(|l| l.contains("status=deferred")).count() >= n
    });
}

/// Polls `f` until it is true, for at most WAIT.
fn wait_until(what: &str, srv: &Server, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "{what}:\n{}", srv.log());
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// `attempts` of the message in `list --json` (once its state is saved).
fn wait_attempts(srv: &Server, id: &str, n: u32) {
    wait_until(&format!("{id} has {n} attempts"), srv, || {
        let o = queue(srv, &["list", "--json"], 0);
        let expr = format!("[m.get('attempts') for m in d if m['id'] == '{id}']");
        json(&o.out, &expr) == format!("[{n}]")
    });
}

fn control_socket(srv: &Server) -> PathBuf {
    srv.data.join("run/control")
}

/// Sends raw bytes on the control socket; what came back before it closed
/// (a close with our bytes unread is a reset after the answer).
fn raw(srv: &Server, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(control_socket(srv)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn spool_file(srv: &Server, dir: &str, id: &str) -> PathBuf {
    srv.queue_dir().join(dir).join(id)
}

fn alice(srv: &Server) -> PathBuf {
    srv.mailbox("example.test/alice/")
}

/// Puts a file where `maildir` belongs, so that writing to it fails;
/// returns the file, for removing it later.
fn block_maildir(maildir: &std::path::Path) -> PathBuf {
    let file = PathBuf::from(maildir.to_str().unwrap().trim_end_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "not a Maildir").unwrap();
    file
}

/// Tests that switch users need root; under CI they must not skip.
fn is_root(what: &str) -> bool {
    root_or_skip_because(what, "it needs root")
}

#[test]
fn list_and_show_report_deferred_mail_in_text_and_json() {
    let srv = Server::start();
    // A real client, to a remote and a local recipient: the local copy is
    // delivered, the remote one stays queued.
    let args = format!(
        "--server 127.0.0.1 --port {} --helo swaks.client.test --from sender@client.test \
         --to {REMOTE},alice@example.test",
        srv.port
    );
    let (ok_, out) = run(Command::new(require("swaks"))
        .args(args.split_whitespace())
        .args(["--header", "Subject: still queued", "--body", "wait"]));
    let id = queue_id_in(&out).unwrap_or_else(|| panic!("swaks ({ok_}): {out}"));
    wait_deferred(&srv, &id, 1);
    wait_message(&srv, &alice(&srv), "Subject: still queued");

    let t = ok(&srv, &["list"]);
    let head = t.lines().find(|l| l.starts_with(&id)).expect(&t);
    assert!(head.ends_with("  sender@client.test"), "{t}");
    let file = std::fs::metadata(spool_file(&srv, "messages", &id)).unwrap();
    let size: u64 = head[12..21].trim().parse().expect(&t);
    assert!(
        size > 0 && size < file.len(),
        "{size} of {} bytes: {t}",
        file.len()
    );
    // The last error stands above its recipient, with the next attempt;
    // the delivered recipient is not listed (as in mailq).
    assert!(t.contains(&format!("{:42}{REMOTE}\n", "")), "{t}");
    assert!(t.contains("(4.") && t.contains("; next attempt "), "{t}");
    assert!(
        !t.contains("alice@") && t.contains("-- 1 KiB in 1 message."),
        "{t}"
    );

    let j = ok(&srv, &["list", "--json"]);
    let fields =
        "[len(d), d[0]['id'], d[0]['sender'], d[0]['state'], d[0]['attempts'], d[0]['size']]";
    let want = format!("[1, \"{id}\", \"sender@client.test\", \"deferred\", 1, {size}]");
    assert_eq!(json(&j, fields), want);
    let rcpts =
        "[(r['address'], r['status'], r.get('last_error', '')[:2]) for r in d[0]['recipients']]";
    let want =
        format!("[[\"{REMOTE}\", \"deferred\", \"4.\"], [\"alice@example.test\", \"done\", \"\"]]");
    assert_eq!(json(&j, rcpts), want);

    let s = ok(&srv, &["show", &id]);
    for want in [
        format!("id: {id}\n"),
        "state: deferred\n".into(),
        "[127.0.0.1] helo=swaks.client.test proto=ESMTP\n".into(),
        "sender: <sender@client.test>\n".into(),
        "attempts: 1\nnext attempt: ".into(),
        format!("recipient: <{REMOTE}> -> <{REMOTE}>: deferred (4."),
        "recipient: <alice@example.test>: done\ndone: mailbox:alice@example.test\n".into(),
        "\nSubject: still queued\n".into(),
    ] {
        assert!(s.contains(&want), "{want:?} missing from show:\n{s}");
    }
    let sj = ok(&srv, &["show", &id, "--json"]);
    let fields = "[d['id'], 'Subject: still queued' in d['headers'], len(d['recipients'])]";
    assert_eq!(json(&sj, fields), format!("[\"{id}\", true, 2]"));

    // Every command is logged with who asked.
    expect_log(&srv, "control: uid=0 pid=");
    expect_log(&srv, &format!(": show {id} json"));
    let o = queue(&srv, &["show", "00000000000"], 66);
    assert!(o.err.contains("no such message"), "{o:?}");
}

#[test]
fn hold_flush_release_and_requeue() {
    let srv = Server::start();
    let a = send(&srv, &[REMOTE], "first");
    let b = send(&srv, &[REMOTE], "second");
    wait_deferred(&srv, &a, 1);
    wait_deferred(&srv, &b, 1);

    // Flush all: both are tried again now.
    assert_eq!(
        ok(&srv, &["flush"]),
        "2 messages scheduled for delivery now\n"
    );
    wait_deferred(&srv, &a, 2);
    wait_deferred(&srv, &b, 2);
    wait_attempts(&srv, &a, 2);

    // Requeue: a fresh schedule, tried at once.
    assert_eq!(ok(&srv, &["requeue", &a]), format!("{a} requeued\n"));
    expect_log(&srv, &format!("{a}: requeued (uid=0"));
    wait_deferred(&srv, &a, 3);
    wait_attempts(&srv, &a, 1);

    // Hold: marked `!`, not flushed, not requeued, and it stays put.
    assert_eq!(ok(&srv, &["hold", &b]), format!("{b} is on hold\n"));
    expect_log(&srv, &format!("{b}: held: by postern queue hold (uid=0"));
    assert!(spool_file(&srv, "hold", &b).exists());
    assert!(!spool_file(&srv, "messages", &b).exists());
    assert!(ok(&srv, &["list"]).contains(&format!("{b}!")));
    let j = ok(&srv, &["list", "--json"]);
    let state = format!("[m['state'] for m in d if m['id'] == '{b}']");
    assert_eq!(json(&j, &state), "[\"hold\"]");
    assert!(queue(&srv, &["flush", &b], 75)
        .err
        .contains("on hold: release it first"));
    assert!(queue(&srv, &["requeue", &b], 75).err.contains("on hold"));
    assert!(ok(&srv, &["hold", &b]).contains("already on hold"));
    assert_eq!(
        ok(&srv, &["flush"]),
        "1 message scheduled for delivery now\n"
    );
    wait_deferred(&srv, &a, 4);
    assert_eq!(deliveries(&srv, &b).len(), 2, "held mail was tried");

    // Release: tried again now, with its old state.
    assert_eq!(ok(&srv, &["release", &b]), format!("{b} released\n"));
    expect_log(&srv, &format!("{b}: released from hold (uid=0"));
    wait_deferred(&srv, &b, 3);
    wait_attempts(&srv, &b, 3);
    assert!(ok(&srv, &["release", &b]).contains("was not on hold"));
    // Each release tries the message again, however soon after its hold.
    for n in 4..14 {
        ok(&srv, &["hold", &b]);
        ok(&srv, &["release", &b]);
        wait_deferred(&srv, &b, n);
    }

    assert_eq!(ok(&srv, &["hold", "all"]), "held 2 messages\n");
    let t = ok(&srv, &["list"]);
    assert!(
        t.contains(&format!("{a}!")) && t.contains(&format!("{b}!")),
        "{t}"
    );
    assert_eq!(ok(&srv, &["release", "all"]), "released 2 messages\n");
    wait_deferred(&srv, &a, 5);
    wait_deferred(&srv, &b, 14);
}

#[test]
fn delete_one_all_unknown_and_malformed() {
    let srv = Server::start();
    let ids: Vec<String> = (0..3)
        .map(|i| send(&srv, &[REMOTE], &format!("m{i}")))
        .collect();
    ids.iter().for_each(|id| wait_deferred(&srv, id, 1));
    assert_eq!(
        ok(&srv, &["delete", &ids[0]]),
        format!("{} deleted\n", ids[0])
    );
    expect_log(&srv, &format!("{}: removed (deleted by uid=0", ids[0]));
    for dir in ["messages", "state"] {
        assert!(!spool_file(&srv, dir, &ids[0]).exists(), "{dir}/ keeps it");
    }
    assert!(!ok(&srv, &["list"]).contains(&ids[0]));

    let o = queue(&srv, &["delete", &ids[0]], 66);
    assert!(o.err.contains("no such message"), "{o:?}");
    for verb in ["delete", "flush", "hold", "release", "requeue"] {
        queue(&srv, &[verb, "00000000000"], 66);
    }
    for bad in ["../../etc", "1M19G9BJ42", "nonsense!!!"] {
        let o = queue(&srv, &["delete", bad], 64);
        assert!(o.err.contains("not a queue ID"), "{o:?}");
    }
    queue(&srv, &["requeue", "all"], 64);

    // delete all takes held mail too.
    ok(&srv, &["hold", &ids[1]]);
    assert_eq!(ok(&srv, &["delete", "all"]), "deleted 2 messages\n");
    assert_eq!(ok(&srv, &["list"]), "Mail queue is empty\n");
    assert_eq!(ok(&srv, &["list", "--json"]), "[]\n");
    for dir in ["messages", "hold", "state"] {
        let left: Vec<_> = std::fs::read_dir(srv.queue_dir().join(dir))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{dir}/ keeps {left:?}");
    }
}

#[test]
fn a_stopped_or_killed_server_is_read_from_the_spool_and_not_changed() {
    let mut srv = Server::start();
    let id = send(&srv, &[REMOTE], "while stopped");
    wait_attempts(&srv, &id, 1);
    // Killed: its socket is left behind, and nobody answers on it.
    srv.kill9();
    assert!(control_socket(&srv).exists());

    let t = ok(&srv, &["list"]);
    assert!(
        t.contains(&id) && t.contains(REMOTE) && t.contains("(4."),
        "{t}"
    );
    let j = ok(&srv, &["list", "--json"]);
    let want = format!("[\"{id}\", \"deferred\"]");
    assert_eq!(json(&j, "[d[0]['id'], d[0]['state']]"), want);
    assert!(ok(&srv, &["show", &id]).contains("Subject: while stopped"));
    json(&ok(&srv, &["show", &id, "--json"]), "d['headers']");
    queue(&srv, &["show", "00000000000"], 66);

    for args in [
        vec!["hold", &id],
        vec!["delete", &id],
        vec!["delete", "all"],
        vec!["flush"],
        vec!["release", "all"],
        vec!["requeue", &id],
    ] {
        let o = queue(&srv, &args, 69);
        assert!(o.err.contains("postern is not running"), "{args:?}: {o:?}");
    }
    assert!(spool_file(&srv, "messages", &id).exists());
    assert!(spool_file(&srv, "state", &id).exists());
    // Stopped cleanly: the socket is gone.
    srv.restart();
    srv.stop();
    assert!(!control_socket(&srv).exists());
    assert!(queue(&srv, &["flush"], 69).err.contains("not running"));
    assert!(ok(&srv, &["list"]).contains(&id));
}

#[test]
fn the_socket_answers_garbage_with_64_and_survives_hang_ups() {
    let srv = Server::start();
    let id = send(&srv, &[REMOTE], "socket");
    wait_deferred(&srv, &id, 1);
    for (bytes, why) in [
        (b"frobnicate\n".to_vec(), "unknown command"),
        (b"\x00\x01\xff\xfe\n".to_vec(), "not UTF-8"),
        (format!("hold {id} {id}\n").into_bytes(), "wrong number"),
        (b"list json json\n".to_vec(), "wrong number"),
        (format!("hold {id} json\n").into_bytes(), "have a json form"),
        ([vec![b'x'; 600], b"\n".to_vec()].concat(), "too long"),
        (vec![b'x'; 5000], "too long"),
    ] {
        let a = raw(&srv, &bytes);
        assert!(
            a.starts_with("error 64 ") && a.contains(why),
            "{why}: {a:?}"
        );
    }
    // Gone mid-request, gone without a word, gone before the answer.
    for bytes in [&format!("hold {id}")[..], "", "list\n"] {
        let mut s = UnixStream::connect(control_socket(&srv)).unwrap();
        s.write_all(bytes.as_bytes()).unwrap();
    }
    assert!(
        srv.wait_log_count("connection closed mid-request", 2, WAIT),
        "{}",
        srv.log()
    );
    assert!(raw(&srv, format!("show {id}\n").as_bytes()).starts_with("ok\nid: "));
    assert!(ok(&srv, &["list"]).contains(&format!("{id} ")), "not held");
    assert!(!srv.log().contains(&format!("{id}: held")));
}

#[test]
fn an_unprivileged_user_is_refused_on_both_sides() {
    if !is_root("switching to nobody") {
        return;
    }
    let srv = Server::start();
    let id = send(&srv, &[REMOTE], "not yours");
    wait_deferred(&srv, &id, 1);
    let nobody = |args: &[&str]| output(queue_cmd(&srv, args).uid(65534).gid(65534));

    // The socket's directory keeps nobody out: refused by the kernel.
    let o = nobody(&["hold", &id]);
    assert_eq!(o.code, 77, "{o:?}");
    assert!(
        o.err
            .contains("members of its group may use the control socket"),
        "{o:?}"
    );

    // With the file modes opened up, the server's own check refuses.
    use std::os::unix::fs::PermissionsExt;
    let sock = control_socket(&srv);
    std::fs::set_permissions(sock.parent().unwrap(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&sock, PermissionsExt::from_mode(0o666)).unwrap();
    for args in [vec!["hold", &id], vec!["list"]] {
        let o = nobody(&args);
        assert_eq!(o.code, 77, "{args:?}: {o:?}");
        assert!(o.err.contains("permission denied: only root"), "{o:?}");
    }
    assert!(
        srv.wait_log_count("control: refused uid=65534 pid=", 2, WAIT),
        "{}",
        srv.log()
    );
    assert!(spool_file(&srv, "messages", &id).exists(), "held by nobody");
    ok(&srv, &["show", &id]);
}

/// Holds the directory database locked (after changing its file, so that
/// cached answers are not used): a delivery stays in routing, in flight,
/// until the lock is dropped or the lookup times out.
fn lock_directory(srv: &Server) -> rusqlite::Connection {
    let db = srv.data.join("directory.sqlite");
    // Closed before locking: closing any descriptor of a file drops all
    // of this process's POSIX locks on it.
    let f = std::fs::File::options().write(true).open(&db).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("BEGIN EXCLUSIVE").unwrap();
    c
}

/// A message whose delivery is in flight, blocked on the returned lock.
fn send_in_flight(srv: &Server, rcpt: &str, subject: &str) -> (String, rusqlite::Connection) {
    let mut c = srv.smtp();
    c.hello();
    c.expect("MAIL FROM:<sender@client.test>", "250");
    c.expect(&format!("RCPT TO:<{rcpt}>"), "250");
    let lock = lock_directory(srv);
    c.expect("DATA", "354");
    c.send(format!("{}\r\n.\r\n", message(subject, "race")).as_bytes());
    let id = queue_id_in(&c.reply().text).expect("queued");
    wait_until("delivery in flight", srv, || {
        queue(srv, &["list"], 0).out.contains(&format!("{id}*"))
    });
    (id, lock)
}

/// `postern queue hold ID` started while the delivery of ID is in flight;
/// returns once the server has the command (and waits with it).
fn hold_waiting(srv: &Server, id: &str) -> std::process::Child {
    let mut child = queue_cmd(srv, &["hold", id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logged = format!("control: uid=0 pid={}: hold {id}", child.id());
    assert!(srv.wait_log(&logged, WAIT), "{}", srv.log());
    // It cannot end while the delivery is stuck on our lock.
    assert!(child.try_wait().unwrap().is_none(), "hold did not wait");
    child
}

fn finish(child: std::process::Child, code: i32, srv: &Server) -> String {
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{err}\n{}", srv.log());
    String::from_utf8_lossy(&o.stdout).into_owned() + &err
}

#[test]
fn hold_at_the_instant_of_delivery_waits_and_never_duplicates() {
    let mut srv = Server::builder()
        .set("delivery", "direct = false")
        .set("control", "busy_wait = \"3s\"")
        .set("directory", "lookup_timeout = \"30s\"")
        .start();

    // A flush while the message is being delivered is not lost: it runs
    // once that attempt is over.
    let (zero, lock) = send_in_flight(&srv, REMOTE, "flushed in flight");
    assert_eq!(
        ok(&srv, &["flush", &zero]),
        "1 message scheduled for delivery now\n"
    );
    drop(lock);
    wait_deferred(&srv, &zero, 2);
    ok(&srv, &["delete", &zero]);

    // In delivery longer than busy_wait: the command says so, changes nothing.
    let (one, lock) = send_in_flight(&srv, "alice@example.test", "delivered first");
    let o = queue(&srv, &["delete", &one], 75);
    assert!(o.err.contains("being delivered right now"), "{o:?}");
    assert!(spool_file(&srv, "messages", &one).exists());
    // The delivery ends while hold waits: hold finds the message gone.
    let hold = hold_waiting(&srv, &one);
    drop(lock);
    assert!(finish(hold, 66, &srv).contains("no such message"));
    assert_eq!(wait_maildir(&alice(&srv), 1, WAIT).len(), 1);
    expect_log(&srv, &format!("{one}: removed"));
    assert!(!spool_file(&srv, "hold", &one).exists());

    // The delivery is deferred while hold waits (bob's Maildir is blocked
    // for now): the message is held, not delivered.
    let bob = srv.mailbox("example.test/bob/");
    let (two, lock) = send_in_flight(&srv, "bob@example.test", "held second");
    let in_the_way = block_maildir(&bob);
    let hold = hold_waiting(&srv, &two);
    drop(lock);
    assert_eq!(finish(hold, 0, &srv), format!("{two} is on hold\n"));
    assert!(deliveries(&srv, &two)[0].contains("status=deferred"));
    assert!(spool_file(&srv, "hold", &two).exists());
    std::fs::remove_file(&in_the_way).unwrap();

    // Held across a restart: not delivered (it is not in messages/ for the
    // runner to find), still marked, then released and delivered once.
    srv.stop();
    srv.restart();
    expect_log(&srv, "queue recovered: 0 queued, 1 on hold");
    assert!(ok(&srv, &["list"]).contains(&format!("{two}!")));
    assert!(!spool_file(&srv, "messages", &two).exists());
    ok(&srv, &["release", &two]);
    expect_log(&srv, &format!("{two}: removed"));
    wait_message(&srv, &bob, "Subject: held second");
    assert_eq!(maildir_files(&bob).len(), 1);
    assert_eq!(maildir_files(&alice(&srv)).len(), 1);
}

#[test]
fn a_damaged_state_file_is_reported_and_mail_is_delivered_once() {
    let mut srv = Server::builder().set("delivery", "direct = false").start();
    // alice's Maildir is blocked: her mail is deferred.
    let maildir = alice(&srv);
    let in_the_way = block_maildir(&maildir);
    let a = send(&srv, &["alice@example.test"], "damaged while running");
    let b = send(&srv, &["alice@example.test"], "damaged while stopped");
    wait_deferred(&srv, &a, 1);
    wait_deferred(&srv, &b, 1);
    std::fs::remove_file(&in_the_way).unwrap();

    // While the server waits for the retry.
    std::fs::write(spool_file(&srv, "state", &a), b"attempts many\n\xff\x00").unwrap();
    assert!(ok(&srv, &["list"]).contains("(state file damaged: "));
    let j = ok(&srv, &["list", "--json"]);
    let problem = format!("[len(m['state_error']) > 4 for m in d if m['id'] == '{a}']");
    assert_eq!(json(&j, &problem), "[true]", "{j}");
    assert!(ok(&srv, &["show", &a]).contains("state file damaged: "));
    json(&ok(&srv, &["show", &a, "--json"]), "d['state_error']");
    ok(&srv, &["flush", &a]);
    expect_log(&srv, &format!("{a}: removed"));
    expect_log(&srv, &format!("{a}: damaged state file ignored"));
    wait_message(&srv, &maildir, "Subject: damaged while running");

    // While the server is stopped.
    srv.stop();
    std::fs::write(spool_file(&srv, "state", &b), "next tomorrow\n").unwrap();
    let t = ok(&srv, &["list"]);
    assert!(t.contains(&b) && t.contains("(state file damaged: "), "{t}");
    srv.restart();
    expect_log(&srv, &format!("{b}: removed"));
    wait_message(&srv, &maildir, "Subject: damaged while stopped");
    assert_eq!(maildir_files(&maildir).len(), 2, "each delivered once");
    assert_eq!(ok(&srv, &["list"]), "Mail queue is empty\n");
}
