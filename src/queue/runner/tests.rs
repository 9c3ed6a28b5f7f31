//! The runner with a real spool and Maildir agent, an in-memory directory
//! and an SMTP agent that never answers: local mail must not wait for it,
//! and a control command on the hung message must wait, then say busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::Config;
use crate::deliver::maildir::MaildirAgent;
use crate::deliver::{Agent, AgentKind, AsyncAgent, BoxFuture, Outcome, Target};
use crate::directory::memory::MemoryStore;
use crate::queue::envelope::QueueEnvelope;
use crate::queue::spool::QueuedMessage;
use crate::smtp::address::Address;

/// An outbound agent whose remote host never answers.
struct Hung;

impl AsyncAgent for Hung {
    fn name(&self) -> &'static str {
        "hung"
    }
    fn deliver(
        self: Arc<Self>,
        _msg: Arc<QueuedMessage>,
        _targets: Vec<Target>,
        _recovered: bool,
    ) -> BoxFuture<'static, Vec<Outcome>> {
        Box::pin(smol::future::pending())
    }
}

fn envelope(id_micros: u64, rcpt: Address) -> QueueEnvelope {
    crate::queue::envelope::for_test(id_micros, rcpt)
}

#[test]
fn a_hung_remote_never_delays_maildir_delivery() {
    let dir = std::env::temp_dir().join(format!("postern-runner-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = Config::parse(
        "test.toml",
        &format!(
            "hostname = \"mx.example.test\"\ndata_dir = \"{}\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let store = MemoryStore::new().domain("example.test").mailbox(
        "alice@example.test",
        "example.test/alice/",
        0,
        "{PLAIN}x",
    );
    let directory = Arc::new(crate::directory::Directory::with_store(
        Arc::new(store),
        &cfg,
    ));
    let spool = Arc::new(crate::queue::spool::Spool::open(&dir.join("queue")).unwrap());
    let maildir = Arc::new(MaildirAgent::new(
        "mx.example.test",
        vec![dir.join("mail")],
        0,
    ));
    let mut registry = crate::deliver::registry::Registry::new();
    registry.add(AgentKind::Maildir, Agent::Blocking(maildir), 2);
    registry.add(AgentKind::Smtp, Agent::Async(Arc::new(Hung)), 4);
    let router = crate::route::Router::new(dir.join("mail"), dir.join("local"), None);
    let settings = Settings {
        backoff: crate::queue::schedule::Backoff {
            min: Duration::from_secs(300),
            max: Duration::from_secs(4000),
            lifetime: Duration::from_secs(86400),
        },
        hostname: "mx.example.test".into(),
        max_received: 50,
        active_limit: 100,
        delay_warning: Duration::ZERO,
        filter_data_timeout: Duration::from_secs(1200),
    };
    let (runner, ch) = Runner::new(
        spool.clone(),
        super::Parts {
            directory,
            router,
            registry,
            settings,
        },
    );
    let runner = Arc::new(runner);
    let ex = Arc::new(Executor::new());
    runner.start(&ex, ch);
    let (stop, stop_rx) = smol::channel::unbounded::<()>();
    let ex2 = ex.clone();
    let thread = std::thread::spawn(move || {
        let _ = smol::block_on(ex2.run(stop_rx.recv()));
    });

    // Remote mail first: it takes the SMTP agent and never comes back.
    let now = crate::clock::now_micros();
    let remote = envelope(now, Address::new("x", "remote.test"));
    let local = envelope(now + 1, Address::new("alice", "example.test"));
    for env in [&remote, &local] {
        spool.submit(env, b"Subject: t\n\nbody\n").unwrap();
        runner.enqueue(env.id.clone());
    }
    let new = dir.join("mail/example.test/alice/new");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "local mail waited for the hung relay"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The local message finishes (its file removed, its claim released).
    while runner.in_flight(&local.id) || spool.place(&local.id).is_some() {
        assert!(Instant::now() < deadline, "local message never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        runner.in_flight(&remote.id),
        "the remote delivery is still hanging"
    );

    // A control command on the hung message waits, then says busy.
    let started = Instant::now();
    let got = smol::block_on(runner.exclusive(&remote.id, Duration::from_millis(300))).is_err();
    assert!(
        got,
        "exclusive access to a message in delivery must wait and fail"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The delivered message is gone, so a command on it gets it at once.
    assert!(smol::block_on(runner.exclusive(&local.id, Duration::ZERO)).is_ok());

    runner.close();
    drop(stop);
    thread.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
