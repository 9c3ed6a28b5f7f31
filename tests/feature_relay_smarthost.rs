//! Sending through a smarthost with a login, and outbound TLS, end to end:
//! the real binary, dnsmasq for the relays' names, aiosmtpd sinks that
//! offer STARTTLS (certificates made here with rcgen) and AUTH, and count
//! connections and logins.
//!
//! Covers: AUTH over STARTTLS with the password from the credentials file,
//! one login per connection and connections reused for a burst of
//! messages; the password in no log line and no argv; no login without
//! TLS (a server offering AUTH in plaintext gets nothing), and no
//! plaintext retry after a failed handshake when a login is due; `tls =
//! may` retrying in plaintext without a login; `encrypt`, `verify` (with
//! `ca_file`) and `none` per route.
//!
//! dnsmasq and python3 with aiosmtpd are required: a missing one fails the
//! test.

mod common;
#[path = "common/dnsmasq.rs"]
mod dnsmasq;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/smtp_peers.rs"]
mod smtp_peers;

use std::path::Path;

use common::*;
use dnsmasq::Dnsmasq;
use relay::*;
use smtp_peers::{free_port, opts, Certs, PySink};

const USER: &str = "relay@example.test";
const PASSWORD: &str = "s3cret-Pa55word";

/// smarthost.test and friends on their own loopback addresses.
fn dns() -> Dnsmasq {
    Dnsmasq::start(&[
        "host-record=smarthost.test,127.0.0.2".to_string(),
        "host-record=plainauth.test,127.0.0.3".to_string(),
        "host-record=broken.test,127.0.0.4".to_string(),
        "host-record=verified.test,127.0.0.5".to_string(),
        "host-record=wrongname.test,127.0.0.5".to_string(),
        "host-record=notls.test,127.0.0.6".to_string(),
    ])
}

/// A credentials file (mode 0600) with `lines`.
fn credentials(dir: &Path, lines: &[String]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("relay-credentials");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn sink(ip: &str, options: Vec<String>) -> PySink {
    let o: Vec<&str> = options.iter().map(String::as_str).collect();
    for _ in 0..5 {
        match PySink::start_on(ip, free_port(), &o) {
            Ok(s) => return s,
            Err(e) if e.contains("in use") => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free port for a sink on {ip}");
}

#[test]
fn smarthost_login_over_starttls_once_per_connection() {
    let certs = Certs::new(&["smarthost.test"]);
    let d = dns();
    let mut o = certs.sink_args();
    o.extend(opts(&["--auth", &format!("{USER}:{PASSWORD}")]));
    let smarthost = sink("127.0.0.2", o);
    let hop = format!("[smarthost.test]:{}", smarthost.addr.port());
    let dir = TestDir::new("smarthost");
    let creds = credentials(dir.path(), &[format!("{hop} {USER}:{PASSWORD}")]);
    let srv = builder(d.addr, 25)
        .set("relay", &format!("default = \"{hop}\""))
        .set(
            "relay",
            &format!("credentials_file = \"{}\"", creds.display()),
        )
        .set("relay", "concurrency_per_destination = 2")
        .set("relay", "connection_reuse_time = \"30s\"")
        .start();
    // A burst: twenty messages, to several domains, all by the smarthost.
    let mut ids = Vec::new();
    for i in 0..20 {
        let to = format!("user{i}@dest{}.test", i % 3);
        ids.push((
            send(&srv, "alice@example.test", &[&to], &format!("burst {i}")),
            to,
        ));
    }
    for (id, to) in &ids {
        let line = final_line(&srv, id, to);
        assert!(
            line.contains(&format!(
                "relay=smarthost.test[127.0.0.2]:{}, ",
                smarthost.addr.port()
            )) && line.contains(", tls=TLSv1.3, ")
                && line.contains("status=sent"),
            "{line}"
        );
    }
    let got = smarthost.wait_received(20, WAIT);
    assert_eq!(got.len(), 20, "each message once");
    assert!(
        got.iter().all(|m| m.tls && m.auth),
        "every message over TLS, logged in"
    );
    // Few connections (at most the per-destination limit, reused), and
    // one login on each.
    let connections = smarthost.count("connect");
    let logins: Vec<String> = smarthost
        .events()
        .into_iter()
        .filter(|e| e.starts_with("auth "))
        .collect();
    eprintln!("20 messages over {connections} connection(s); logins: {logins:?}");
    assert!((1..=2).contains(&connections), "{:?}", smarthost.events());
    assert_eq!(
        logins.len(),
        connections,
        "one login per connection: {logins:?}"
    );
    assert!(logins.iter().all(|l| l.ends_with(" ok")), "{logins:?}");
    // The password is nowhere but in the credentials file.
    assert!(!srv.log().contains(PASSWORD), "{}", srv.log());
    let argv = std::fs::read(format!("/proc/{}/cmdline", srv.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&argv).contains(PASSWORD));
    assert!(!std::fs::read_to_string(&srv.config)
        .unwrap()
        .contains(PASSWORD));
}

#[test]
fn no_login_without_tls() {
    let certs = Certs::new(&["broken.test"]);
    let d = dns();
    let auth = format!("{USER}:{PASSWORD}");
    // Offers AUTH in plaintext, and no STARTTLS.
    let plain = sink("127.0.0.3", opts(&["--auth", &auth, "--auth-plaintext"]));
    // Offers STARTTLS, then botches the handshake.
    let mut o = certs.sink_args();
    o.extend(opts(&["--tls-broken", "--auth", &auth]));
    let broken = sink("127.0.0.4", o);
    let plain_hop = format!("[plainauth.test]:{}", plain.addr.port());
    let broken_hop = format!("[broken.test]:{}", broken.addr.port());
    let dir = TestDir::new("smarthost");
    let creds = credentials(
        dir.path(),
        &[
            format!("{plain_hop} {USER}:{PASSWORD}"),
            format!("{broken_hop} {USER}:{PASSWORD}"),
        ],
    );
    let srv = builder(d.addr, 25)
        .set(
            "relay",
            &format!("credentials_file = \"{}\"", creds.display()),
        )
        .set(
            "[relay.route]",
            &format!(
                "domain = \"viaplain.test\"\nprimary = \"{plain_hop}\"\n\n\
                 [[relay.route]]\ndomain = \"viabroken.test\"\nprimary = \"{broken_hop}\""
            ),
        )
        .start();
    let id = send(
        &srv,
        "alice@example.test",
        &["a@viaplain.test", "b@viabroken.test"],
        "no clear logins",
    );
    let p = wait_line(&srv, &[&id, "to=<a@viaplain.test>", "status=deferred"]);
    assert!(
        p.contains("dsn=4.7.0, status=deferred (cannot authenticate to server: "),
        "{p}"
    );
    let b = wait_line(&srv, &[&id, "to=<b@viabroken.test>", "status=deferred"]);
    assert!(
        b.contains("dsn=4.7.5, status=deferred (TLS handshake failed: "),
        "{b}"
    );
    // Nothing was sent; no login was tried; the handshake failure was not
    // followed by a plaintext connection (a login was due).
    assert!(plain.received().is_empty() && broken.received().is_empty());
    assert_eq!(plain.count("auth"), 0, "{:?}", plain.events());
    assert_eq!(broken.count("auth"), 0, "{:?}", broken.events());
    assert_eq!(
        broken.count("connect"),
        1,
        "no plaintext retry with a login due: {:?}",
        broken.events()
    );
    assert!(!srv.log().contains(PASSWORD));
}

#[test]
fn tls_policies_per_route() {
    let certs = Certs::new(&["verified.test", "broken.test"]);
    let d = dns();
    let broken = {
        let mut o = certs.sink_args();
        o.push("--tls-broken".into());
        sink("127.0.0.4", o)
    };
    let tls = sink("127.0.0.5", certs.sink_args());
    let notls = sink("127.0.0.6", vec![]);
    let route = |domain: &str, host: &str, port: u16, tls: &str| {
        format!("domain = \"{domain}\"\nprimary = \"[{host}]:{port}\"\ntls = \"{tls}\"")
    };
    let routes = [
        route("may.test", "broken.test", broken.addr.port(), "may"),
        route("encrypt.test", "notls.test", notls.addr.port(), "encrypt"),
        route("verify.test", "verified.test", tls.addr.port(), "verify"),
        route(
            "wrongname.test",
            "wrongname.test",
            tls.addr.port(),
            "verify",
        ),
        route("none.test", "verified.test", tls.addr.port(), "none"),
    ];
    let srv = builder(d.addr, 25)
        .set("relay", &format!("ca_file = \"{}\"", certs.ca().display()))
        .set("[relay.route]", &routes.join("\n\n[[relay.route]]\n"))
        .start();
    let to = [
        "a@may.test",
        "b@encrypt.test",
        "c@verify.test",
        "d@wrongname.test",
        "e@none.test",
    ];
    let id = send(&srv, "alice@example.test", &to, "tls policies");

    // may: the handshake fails, plaintext once more on a new connection.
    let may = final_line(&srv, &id, "a@may.test");
    assert!(
        may.contains("status=sent") && !may.contains("tls="),
        "{may}"
    );
    let got = broken.wait_received(1, WAIT);
    assert!(!got[0].tls);
    assert_eq!(broken.count("connect"), 2, "{:?}", broken.events());
    // encrypt: a server without STARTTLS gets nothing.
    let enc = wait_line(&srv, &[&id, "to=<b@encrypt.test>", "status=deferred"]);
    assert!(
        enc.contains("dsn=4.7.4, status=deferred (TLS is required, but was not offered by host"),
        "{enc}"
    );
    // verify: the certificate chains to ca_file and names the host...
    let ver = final_line(&srv, &id, "c@verify.test");
    assert!(
        ver.contains("tls=TLSv1.3") && ver.contains("status=sent"),
        "{ver}"
    );
    // ... or the mail waits.
    let wrong = wait_line(&srv, &[&id, "to=<d@wrongname.test>", "status=deferred"]);
    assert!(
        wrong.contains("dsn=4.7.5, status=deferred (TLS handshake failed: "),
        "{wrong}"
    );
    assert!(wrong.to_lowercase().contains("certificate"), "{wrong}");
    // none: no STARTTLS even when offered.
    let none = final_line(&srv, &id, "e@none.test");
    assert!(
        none.contains("status=sent") && !none.contains("tls="),
        "{none}"
    );
    let got = tls.wait_received(2, WAIT);
    let by_rcpt = |r: &str| {
        got.iter()
            .find(|m| m.rcpts == [r])
            .unwrap_or_else(|| panic!("{r}: {got:?}"))
    };
    assert!(by_rcpt("c@verify.test").tls);
    assert!(!by_rcpt("e@none.test").tls);
    assert_eq!(got.len(), 2, "the wrong name got nothing");
    assert!(notls.received().is_empty() && notls.count("rcpt") == 0);
}
