use super::*;

#[test]
fn exit_codes_map_as_postfix_does() {
    let ran = |status: i32, out: &str| Ran {
        status: Some(status),
        signal: None,
        timed_out: false,
        output: out.into(),
    };
    assert!(judge(&ran(0, "")).is_delivered());
    for t in [75, 71, 69, 73, 74] {
        assert!(judge(&ran(t, "")).is_deferred(), "{t}");
    }
    for (c, esc) in [
        (67, Esc(5, 1, 1)),
        (68, Esc(5, 1, 2)),
        (77, Esc(5, 7, 0)),
        (64, Esc(5, 3, 0)),
        (1, Esc(5, 3, 0)),
    ] {
        let o = judge(&ran(c, "procmail: Unknown user\nmore"));
        assert!(o.is_failed() && o.esc == esc, "{c}: {o:?}");
        assert!(
            o.text.contains("Unknown user") && !o.text.contains("more"),
            "{o:?}"
        );
    }
    let o = judge(&ran(1, "4.2.2 mailbox full"));
    assert!(o.is_deferred() && o.esc == Esc(4, 2, 2), "{o:?}");
    let o = judge(&Ran {
        status: None,
        signal: Some(9),
        timed_out: false,
        output: vec![],
    });
    assert!(o.is_deferred());
    let o = judge(&Ran {
        status: None,
        signal: Some(9),
        timed_out: true,
        output: vec![],
    });
    assert!(o.is_failed() && o.text.contains("time limit"), "{o:?}");
}

/// A queue file gone (or unreadable) under a delivery: deferred, and the
/// diagnostic names the queued message, not the command.
#[test]
fn an_unreadable_queue_file_defers_and_says_so() {
    use crate::deliver::maildir::MaildirAgent;
    use crate::deliver::{BlockingAgent, Target};
    use crate::queue::spool::Spool;
    use crate::route::{PipeRoute, Route};
    use crate::smtp::address::Address;

    let root = std::env::temp_dir().join(format!("postern-pipe-unreadable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let spool = Spool::open_unlocked(&root.join("queue")).unwrap();
    let maildir = Arc::new(MaildirAgent::new(
        "mx.example.test",
        vec![root.join("mail")],
        0,
    ));
    let agent = PipeAgent::new(maildir, "+", &[("cmd".into(), 2)]);
    // Never root: as root the command runs as nobody.
    let user = match nix::unistd::geteuid().as_raw() {
        0 => (65534, 65534),
        uid => (uid, nix::unistd::getegid().as_raw()),
    };
    let target = Target {
        route: Route::Pipe(PipeRoute {
            transport: "cmd".into(),
            argv: vec!["/bin/cat".into()],
            user,
            flags: String::new(),
            timeout: std::time::Duration::from_secs(30),
            output_limit: 4096,
            mailbox: None,
            home: None,
            local_env: false,
        }),
        address: "alice@example.test".into(),
        orig: "alice@example.test".into(),
        index: 0,
    };
    let mut at = crate::clock::now_micros();
    let mut queued = || {
        at += 1;
        let env = crate::queue::envelope::for_test(at, Address::new("alice", "example.test"));
        spool.submit(&env, b"Subject: t\n\nbody\n").unwrap();
        spool.open_message(&env.id).unwrap()
    };

    // The command runs and reads it: delivered.
    let msg = queued();
    let o = &agent.deliver(&msg, std::slice::from_ref(&target), false)[0];
    assert!(o.is_delivered(), "{o:?}");

    // Its queue file gone between opening and the run.
    let msg = queued();
    std::fs::remove_file(msg.location().0).unwrap();
    let o = &agent.deliver(&msg, std::slice::from_ref(&target), false)[0];
    assert!(o.is_deferred() && o.esc == Esc(4, 3, 0), "{o:?}");
    assert!(
        o.text.starts_with("cannot read the queued message: ") && o.text.contains("No such file"),
        "{o:?}"
    );
    assert!(
        !o.text.contains("/bin/cat"),
        "the command is not to blame: {o:?}"
    );
    drop(spool);
    let _ = std::fs::remove_dir_all(&root);
}

/// The queued message fails to read half-way through the feed: the
/// command must not take what it got for the whole message. The run ends
/// in an error that names the queued message, and the command is killed
/// and reaped, never left to finish on a short input.
#[test]
fn a_read_error_mid_message_kills_the_command() {
    /// 200,000 bytes (more than a pipe holds), then EIO.
    struct Breaks(usize);
    impl Read for Breaks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::from_raw_os_error(nix::libc::EIO));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(b'x');
            self.0 -= n;
            Ok(n)
        }
    }
    let argv = ["/bin/sh", "-c", "cat >/dev/null; echo whole"].map(String::from);
    let child = spawn::spawn(&spawn::Spec {
        argv: &argv,
        env: &[],
        cwd: std::path::Path::new("/"),
        creds: None,
    })
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.pid);
    let Err(e) = exchange::exchange(
        child,
        b"Return-Path: <a@example.test>\n".to_vec(),
        Box::new(Unreadable(Breaks(200_000))),
        4096,
        std::time::Duration::from_secs(30),
    ) else {
        panic!("a short message must not count as delivered");
    };
    assert!(is_unreadable(&e), "{e}");
    assert_eq!(e.raw_os_error(), None, "tagged, so not the raw error: {e}");
    assert!(e.to_string().contains("Input/output error"), "{e}");
    // Killed and reaped: no such process any more.
    assert_eq!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH)
    );
}
