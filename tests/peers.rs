//! The real peers the suite drives are all there, as scripts/install-peers
//! leaves them: one place that fails, naming the missing one, instead of a
//! feature test failing for a reason that is not postern's. A test never
//! skips itself for want of a peer. The README's table says which test
//! uses which peer.

mod common;

use common::*;

/// Programs the feature tests run, and those the next issues' tests and
/// scripts/bench use (installed now so a fresh machine is ready for them).
const PROGRAMS: &[&str] = &[
    "swaks",
    "curl",
    "msmtp",
    "openssl",
    "doveadm",
    "dovecot",
    "setpriv",
    "ss",
    "sh",
    "python3",
    "mail.mailutils",
    "bsd-mailx",
    "anacron",
    "unshare",
    // feature_appliance: the units and the overlay.
    "systemd-analyze",
    "systemd-sysusers",
    "systemd-tmpfiles",
    // scripts/bench and the next issues' tests.
    "smtp-source",
    "smtp-sink",
    "postfix",
    "postqueue",
    "procmail",
    "dnsmasq",
    "dig",
    "sqlite3",
    "mariadbd",
    "mariadb-install-db",
];

#[test]
fn every_peer_is_installed() {
    let missing: Vec<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| find_program(p).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "missing peers {missing:?}: run scripts/install-peers (scripts/test does)"
    );
}

#[test]
fn the_tests_python_has_aiosmtpd() {
    if under_ci() {
        // CI runs scripts/test, which makes the venv; a Python that merely
        // happens to have aiosmtpd must not hide a broken install-peers.
        assert!(
            peers_venv().is_some(),
            "no {}/peers-venv: scripts/install-peers did not make it",
            target_dir().display()
        );
    }
    require_python_module("aiosmtpd");
    // The interpreter the tests use is a real one, not a shim that needs
    // the user's HOME (peers get an empty one).
    let (ok, out) = run(python().args(["-c", "import sys; print(sys.executable)"]));
    assert!(ok, "{out}");
}
