//! The README's first command: `postern serve` with no config file runs on
//! the embedded default (127.0.0.1:2525, data under ./postern-data) and
//! delivers mail for any local part at localhost, sent with curl and swaks.
//!
//! This is the one test on a fixed port, on purpose: it tests the real
//! default. No other test binds 2525. The server is held in a guard, so it
//! is killed however the test ends; if something else already holds 2525,
//! the test fails saying so (and who, when ss can tell) instead of failing
//! somewhere further on.

mod common;

use std::time::Duration;

use common::*;

/// Why postern could not start on 2525, for the failure message.
fn who_holds_2525() -> String {
    let found = ["/usr/bin/ss", "/bin/ss", "/usr/sbin/ss", "/sbin/ss"]
        .iter()
        .any(|p| std::path::Path::new(p).is_file());
    if !found {
        return "(ss is not installed to tell who holds it)".into();
    }
    let (_, out) = run(peer("ss").args(["-Hltnp", "sport = :2525"]));
    if out.trim().is_empty() {
        "ss shows no listener now".into()
    } else {
        out
    }
}

#[test]
fn embedded_default_accepts_curl_and_swaks_for_localhost() {
    require("curl");
    require("swaks");
    let dir = TestDir::new("quick");
    let data = dir.path().join("postern-data");
    let log_path = dir.path().join("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = postern()
        .arg("serve")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start postern");
    let mut child = ChildGuard::new(child);
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !read_log().contains("listening on") {
        if let Some(status) = child.try_wait().unwrap() {
            let log = read_log();
            assert!(
                !log.contains("cannot listen on 127.0.0.1:2525"),
                "127.0.0.1:2525, the embedded default's port, is taken by another \
                 program, so the README's first command cannot be tested here; free \
                 the port and run again. {}\npostern said:\n{log}",
                who_holds_2525()
            );
            panic!("postern exited ({status}):\n{log}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no start line:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = read_log();
    assert!(line.contains("listening on 127.0.0.1:2525"), "{line}");
    assert!(
        line.contains(&data.join("local").display().to_string()),
        "start line names where mail lands: {line}"
    );
    let bound = read_listening(&data);
    assert_eq!(bound.len(), 1, "{bound:?}");
    assert_eq!(bound[0].addr.to_string(), "127.0.0.1:2525");

    let msg = dir.path().join("msg.txt");
    std::fs::write(
        &msg,
        "From: me@client.test\r\nSubject: quick start\r\n\r\nHello from curl.\r\n",
    )
    .unwrap();
    let (ok, out) = run(peer("curl")
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
    let (ok, out) = run(peer("swaks").args([
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

    // Ctrl-C in the README: SIGINT stops it cleanly.
    signal(child.id(), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = wait_timeout(child.child(), Duration::from_secs(20));
    assert!(
        status.success(),
        "SIGINT stops cleanly: {status}\n{}",
        read_log()
    );
}
