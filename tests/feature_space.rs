//! The free-space reserve (`[queue] min_free`, Postfix's queue_minfree) on
//! small filesystems the tests mount themselves (tmpfs; root only, as in
//! CI): MAIL is refused with 452 4.3.1 before any data once the queue's
//! filesystem is down to the reserve, a SIZE= counts, nothing accepted is
//! lost, the last blocks stay free, Maildir deliveries defer instead of
//! filling their filesystem, and the log says so once, not per message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);
const KIB: u64 = 1024;

/// A tmpfs of `size_kib` mounted for the test, unmounted on drop (panics
/// included).
/// The TestDir is only held: removed after the unmount.
struct Tmpfs(PathBuf, #[allow(dead_code)] TestDir);

impl Tmpfs {
    fn mount(tag: &str, size_kib: u64) -> Tmpfs {
        let dir = TestDir::new(tag);
        let at = dir.path().join("fs");
        std::fs::create_dir(&at).unwrap();
        let (ok, out) = run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(&at));
        assert!(ok, "mount tmpfs at {}: {out}", at.display());
        Tmpfs(at, dir)
    }

    fn free(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.0).unwrap();
        s.blocks_available() as u64 * s.fragment_size() as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn root_or_skip(test: &str) -> bool {
    root_or_skip_because(test, "mounting a small filesystem needs root")
}

/// A message body of about `kib` KiB.
fn big(kib: u64, n: usize) -> String {
    let line = format!(
        "{n:06} ........................................................................\r\n"
    );
    message(
        &format!("space {n}"),
        &line.repeat((kib * KIB / line.len() as u64) as usize),
    )
}

/// One transaction; the first reply that is not a success, with what it
/// answered (`"MAIL"` or `"DATA"`), or the queue ID.
fn send(
    c: &mut Smtp,
    n: usize,
    kib: u64,
    size_param: Option<u64>,
) -> Result<String, (&'static str, Reply)> {
    let mail = match size_param {
        Some(s) => format!("MAIL FROM:<sender@client.test> SIZE={s}"),
        None => "MAIL FROM:<sender@client.test>".to_string(),
    };
    let r = c.cmd(&mail);
    if r.code != 250 {
        return Err(("MAIL", r));
    }
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    c.send(big(kib, n).as_bytes());
    c.send(b"\r\n.\r\n");
    let r = c.reply();
    if r.code != 250 {
        return Err(("DATA", r));
    }
    Ok(queue_id_in(&r.first).expect("queue id"))
}

fn maildir_count(p: &Path) -> usize {
    maildir_files(p).len()
}

#[test]
fn mail_is_refused_at_the_reserve_before_any_data_and_nothing_is_lost() {
    if !root_or_skip("mail_is_refused_at_the_reserve_before_any_data_and_nothing_is_lost") {
        return;
    }
    let fs = Tmpfs::mount("space-mail", 4096);
    let srv = Server::builder()
        .set(
            "queue",
            &format!("directory = \"{}/queue\"", fs.0.display()),
        )
        .set("queue", "min_free = \"1M\"")
        .set(
            "delivery",
            &format!("mailbox_base = \"{}/mail\"", fs.0.display()),
        )
        .start();
    let alice = fs.0.join("mail/example.test/alice");
    let mut c = srv.smtp();
    c.hello();
    let mut accepted = 0;
    let refused = loop {
        match send(&mut c, accepted, 150, None) {
            Ok(_) => accepted += 1,
            Err(r) => break r,
        }
        assert!(
            accepted < 40,
            "a 4 MiB filesystem took {accepted} messages of 150 KiB"
        );
    };
    assert_eq!(refused.0, "MAIL", "refused before any data: {refused:?}");
    assert!(refused.1.first.starts_with("452 4.3.1"), "{refused:?}");
    assert!(
        accepted >= 10,
        "the reserve (1 MiB) still let most of 4 MiB fill: {accepted}"
    );
    assert_eq!(
        maildir_count(&alice),
        accepted,
        "every accepted message is delivered"
    );
    assert!(
        fs.free() >= 512 * KIB,
        "the last blocks stay free: {} bytes",
        fs.free()
    );
    // More refusals: one log line for the shortage, not one per message.
    for n in 0..3 {
        assert_eq!(send(&mut c, 100 + n, 150, None).unwrap_err().0, "MAIL");
    }
    assert_eq!(
        srv.log().matches("below the reserve").count(),
        1,
        "{}",
        srv.log()
    );

    // Free some space: without SIZE= a MAIL fits again; a SIZE= larger than
    // what is above the reserve does not.
    for f in maildir_files(&alice).iter().take(8) {
        std::fs::remove_file(f).unwrap();
    }
    let above = fs.free().saturating_sub(1024 * KIB);
    assert!(above > 0, "eight messages freed: {} free", fs.free());
    let r = send(&mut c, 200, 1, Some(above + 200 * KIB)).unwrap_err();
    assert_eq!(r.0, "MAIL");
    assert!(r.1.first.starts_with("452 4.3.1"), "SIZE= counts: {r:?}");
    send(&mut c, 201, 1, Some(1024)).expect("a small message fits");
    assert!(srv.wait_log("free again", WAIT), "{}", srv.log());
    c.expect("QUIT", "221");
}

#[test]
fn maildir_deliveries_defer_instead_of_filling_their_filesystem() {
    if !root_or_skip("maildir_deliveries_defer_instead_of_filling_their_filesystem") {
        return;
    }
    // Mailboxes on a small filesystem, the queue on a large one: mail is
    // accepted, and delivery stops short of the Maildirs' last blocks.
    let fs = Tmpfs::mount("space-deliver", 2048);
    let mut srv = Server::builder()
        .set("queue", "min_free = \"1M\"")
        .set(
            "delivery",
            &format!("mailbox_base = \"{}/mail\"", fs.0.display()),
        )
        .start();
    let alice = fs.0.join("mail/example.test/alice");
    let mut c = srv.smtp();
    c.hello();
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(send(&mut c, n, 150, None).expect("the queue has room"));
    }
    c.expect("QUIT", "221");
    let deferred = ids
        .iter()
        .filter(|id| {
            srv.wait_log(
                &format!("{id}: to=<alice@example.test>, relay=maildir"),
                WAIT,
            )
        })
        .count();
    assert_eq!(
        deferred,
        ids.len(),
        "every message was tried:\n{}",
        srv.log()
    );
    let log = srv.log();
    let short: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("status=deferred"))
        .collect();
    assert!(
        !short.is_empty(),
        "some deliveries must defer on a 2 MiB filesystem:\n{log}"
    );
    for l in &short {
        assert!(
            l.contains("dsn=4.3.1") && l.contains("not enough free space"),
            "{l}"
        );
    }
    assert_eq!(log.matches("below the reserve").count(), 1, "{log}");
    assert!(
        fs.free() >= 512 * KIB,
        "the last blocks stay free: {} bytes",
        fs.free()
    );
    let delivered = maildir_count(&alice);
    assert_eq!(
        delivered + short.len(),
        ids.len(),
        "each message delivered or deferred, once"
    );

    // Room again: what waited is delivered, every message exactly once.
    for f in maildir_files(&alice) {
        std::fs::remove_file(f).unwrap();
    }
    let (ok, out) = run(Command::new(BIN)
        .args(["queue", "--config"])
        .arg(&srv.config)
        .arg("flush"));
    assert!(ok, "{out}");
    let files = wait_maildir(&alice, short.len(), WAIT);
    assert_eq!(files.len(), short.len(), "{}", srv.log());
    assert!(srv.stop().success());
}
