//! The README's first command: `postern serve` with no config file runs on
//! the embedded default (127.0.0.1:2525, data under ./postern-data) and
//! delivers mail for any local part at localhost, sent with curl and swaks.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn embedded_default_accepts_curl_and_swaks_for_localhost() {
    let curl = require("curl");
    let swaks = require("swaks");
    let dir = TestDir::new("quick");
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read_log().contains("listening on") {
        assert!(Instant::now() < deadline, "no start line:\n{}", read_log());
        assert!(
            child.try_wait().unwrap().is_none(),
            "postern exited:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = read_log();
    assert!(line.contains("listening on 127.0.0.1:2525"), "{line}");
    let data = dir.path().join("postern-data");
    assert!(
        line.contains(&data.join("local").display().to_string()),
        "start line names where mail lands: {line}"
    );

    let msg = dir.path().join("msg.txt");
    std::fs::write(
        &msg,
        "From: me@client.test\r\nSubject: quick start\r\n\r\nHello from curl.\r\n",
    )
    .unwrap();
    let (ok, out) = run(Command::new(&curl)
        .args([
            "-sS",
            "smtp://127.0.0.1:2525",
            "--mail-from",
            "me@client.test",
            "--mail-rcpt",
            "you@localhost",
            "--upload-file",
        ])
        .arg(&msg));
    assert!(ok, "curl failed: {out}");
    let (ok, out) = run(Command::new(&swaks).args([
        "--server",
        "127.0.0.1",
        "--port",
        "2525",
        "--from",
        "me@client.test",
        "--to",
        "you@localhost",
        "--header",
        "Subject: from swaks",
        "--body",
        "Hello from swaks.",
    ]));
    assert!(ok, "swaks failed: {out}");
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");

    let files = wait_maildir(&data.join("local/you"), 2, Duration::from_secs(10));
    assert_eq!(
        files.len(),
        2,
        "two messages in ./postern-data/local/you/new/"
    );
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(all.contains("Hello from curl.") && all.contains("Hello from swaks."));
    assert!(all.contains("Delivered-To: you@localhost"));

    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    assert!(status.success(), "SIGTERM stops cleanly: {status}");
}
