//! Issue 2, section 2: one TOML file, checked with `postern check-config`,
//! every problem reported at once as `FILE:LINE: key: problem; allowed: ...`
//! with exit code 78 (EX_CONFIG); the annotated example config in
//! rootfs/etc/postern/postern.toml is what `postern config example` prints.
//!
//! tests/bad_configs/NN-name/ holds one case per error class: `postern.toml`
//! (plus any file it names) and `expected.txt`, whose lines must each match
//! one line of stderr. In expected.txt, ` ... ` stands for any text (so the
//! long `allowed:` lists can grow without breaking the cases). The check runs
//! in the case directory with the relative name `postern.toml`, so messages
//! start with `postern.toml:LINE:` whatever the checkout's absolute path.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const EX_CONFIG: i32 = 78;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_configs")
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/bad_configs")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("postern.toml").is_file())
        .collect();
    v.sort();
    assert!(
        v.len() >= 15,
        "expected a case per error class, found {}",
        v.len()
    );
    v
}

/// What one run printed, and how it ended.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn output(cmd: &mut Command) -> Outcome {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A case's files copied into a temp dir, each changed by `fix`, with
/// modes that do not depend on the checkout or the umask: 0644, or what
/// the case's `modes` file says (`name octal` lines; e.g. an aliases file
/// its group may write, which must not run commands).
fn prepared(dir: &Path, fix: impl Fn(String) -> String) -> TestDir {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TestDir::new("badcase");
    let modes = std::fs::read_to_string(dir.join("modes")).unwrap_or_default();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p).unwrap();
        let to = tmp.path().join(&name);
        std::fs::write(&to, fix(text)).unwrap();
        let mode = modes
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(|m| u32::from_str_radix(m.trim(), 8).expect("octal mode"))
            .unwrap_or(0o644);
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    tmp
}

/// check-config on a case, in a prepared copy of its directory.
fn check_case(dir: &Path) -> Outcome {
    let tmp = prepared(dir, |s| s);
    check_config_in(tmp.path(), "postern.toml")
}

fn check_config_in(dir: &Path, file: &str) -> Outcome {
    output(
        postern()
            .arg("check-config")
            .arg(file)
            .current_dir(dir)
            .stdin(Stdio::null()),
    )
}

/// An expected line matches a stderr line when its ` ... `-separated pieces
/// occur in that line in order.
fn line_matches(expected: &str, line: &str) -> bool {
    let mut rest = line;
    for piece in expected.split(" ... ") {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Expected lines not found in `stderr`.
fn missing_lines(expected: &str, stderr: &str) -> Vec<String> {
    expected
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|e| !stderr.lines().any(|l| line_matches(e, l)))
        .map(str::to_string)
        .collect()
}

/// `postern.toml:LINE: key: problem; allowed: ...` → (line, key).
fn parse_config_error(line: &str) -> Result<(usize, String), String> {
    let rest = line
        .strip_prefix("postern.toml:")
        .ok_or("no `postern.toml:` prefix")?;
    let (num, rest) = rest.split_once(": ").ok_or("no `LINE: `")?;
    let num: usize = num
        .parse()
        .map_err(|_| format!("line number {num:?} is not a number"))?;
    if num == 0 {
        return Err("line 0".into());
    }
    let (key, rest) = rest.split_once(": ").ok_or("no `key: `")?;
    if key.is_empty() || key.contains(' ') {
        return Err(format!("key {key:?} is empty or has spaces"));
    }
    let (problem, allowed) = rest.split_once("; allowed: ").ok_or("no `; allowed: `")?;
    if problem.trim().is_empty() || allowed.trim().is_empty() {
        return Err("empty problem or allowed part".into());
    }
    Ok((num, key.to_string()))
}

/// The checks every bad config's stderr must pass; returns the problems.
fn judge(case: &str, expected: &str, o: &Outcome, check_shape: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if o.code != Some(EX_CONFIG) {
        problems.push(format!(
            "{case}: exit code {:?}, expected {EX_CONFIG}",
            o.code
        ));
    }
    if o.stdout.contains("ok") {
        problems.push(format!("{case}: stdout says ok: {:?}", o.stdout));
    }
    for m in missing_lines(expected, &o.stderr) {
        problems.push(format!("{case}: expected line not in stderr: {m}"));
    }
    if check_shape {
        let mut numbers = Vec::new();
        let mut errors = 0;
        for l in o.stderr.lines() {
            if l.starts_with("postern: ") {
                continue;
            }
            errors += 1;
            if l.starts_with("postern.toml:") {
                match parse_config_error(l) {
                    Ok((n, _)) => numbers.push(n),
                    Err(why) => problems.push(format!(
                        "{case}: not FILE:LINE: key: problem; allowed: ... ({why}): {l}"
                    )),
                }
            } else if !l.contains("aliases:") {
                problems.push(format!("{case}: stderr line names no file: {l}"));
            }
        }
        if errors == 0 {
            problems.push(format!("{case}: no error line at all"));
        }
        if numbers.windows(2).any(|w| w[0] > w[1]) {
            problems.push(format!("{case}: errors not sorted by line: {numbers:?}"));
        }
        let summary = format!("postern: {errors} configuration error(s)");
        if !o.stderr.lines().any(|l| l == summary) {
            problems.push(format!("{case}: no summary line {summary:?}"));
        }
    }
    if !problems.is_empty() {
        problems.push(format!("{case}: stderr was:\n{}", o.stderr));
    }
    problems
}

#[test]
fn every_bad_config_is_reported_with_file_line_key_and_allowed() {
    let mut problems = Vec::new();
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let expected = std::fs::read_to_string(dir.join("expected.txt"))
            .unwrap_or_else(|_| panic!("{name}: expected.txt is missing"));
        assert!(
            expected.lines().any(|l| !l.trim().is_empty()),
            "{name}: expected.txt is empty"
        );
        let o = check_case(&dir);
        problems.extend(judge(&name, &expected, &o, true));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A value that is present but wrong is reported once, as wrong: never a
/// second time as "missing" (which would send the reader looking for a key
/// that is right there).
#[test]
fn a_bad_value_is_reported_once_and_never_as_missing() {
    let mut problems = Vec::new();
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let o = check_case(&dir);
        let keys: Vec<String> = o
            .stderr
            .lines()
            .filter_map(|l| parse_config_error(l).ok())
            .map(|(_, k)| k)
            .collect();
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].contains(k) {
                problems.push(format!(
                    "{name}: key {k} reported more than once:\n{}",
                    o.stderr
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `postern serve --config BAD` refuses to start with the same messages and
/// exit code. Each case is copied to a temp dir (serve may create its queue
/// before it reads the aliases file) with its listeners on port 0, so a
/// serve that wrongly starts cannot collide with anything. The duplicate
/// listener case needs one real port twice: a port this test holds bound
/// itself, so a wrongly started serve would fail to bind it rather than
/// take it from another test.
#[test]
fn serve_with_a_bad_config_exits_78_with_the_same_messages() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let mut problems = Vec::new();
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let fix = |s: String| {
            s.replace(
                "address = \"127.0.0.1:2525\"",
                &format!("address = \"127.0.0.1:{port}\""),
            )
            .replace("address = \"127.0.0.1:2526\"", "address = \"127.0.0.1:0\"")
            .replace(
                "127.0.0.1:2525 is already used",
                &format!("127.0.0.1:{port} is already used"),
            )
        };
        let tmp = prepared(&dir, fix);
        // The error lines are the same; the count summary is check-config's.
        let expected: String = std::fs::read_to_string(tmp.path().join("expected.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("postern: "))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut child = postern()
            .args(["serve", "--config", "postern.toml"])
            .current_dir(tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_timeout(&mut child, Duration::from_secs(20));
        let o = Outcome {
            code: status.code(),
            stdout: std::io::read_to_string(child.stdout.take().unwrap()).unwrap(),
            stderr: std::io::read_to_string(child.stderr.take().unwrap()).unwrap(),
        };
        // serve prefixes fatal start errors with "postern: "; shape checked above.
        problems.extend(judge(&name, &expected, &o, false));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_config_file_that_cannot_be_read_is_ex_config() {
    let tmp = TestDir::new("nofile");
    let o = check_config_in(tmp.path(), "absent.toml");
    assert_eq!(o.code, Some(EX_CONFIG), "{}", o.stderr);
    assert!(
        o.stderr.contains("absent.toml") && o.stderr.contains("cannot read"),
        "{}",
        o.stderr
    );
    let o = output(
        postern()
            .args(["serve", "--config", "absent.toml"])
            .current_dir(tmp.path()),
    );
    assert_eq!(o.code, Some(EX_CONFIG), "{}", o.stderr);
    assert!(o.stderr.contains("absent.toml"), "{}", o.stderr);
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/etc/postern/postern.toml")
}

#[test]
fn example_config_in_rootfs_is_what_config_example_prints() {
    let o = output(postern().args(["config", "example"]));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let file = std::fs::read(example_path()).expect("rootfs/etc/postern/postern.toml");
    if o.stdout.as_bytes() != file.as_slice() {
        let first = o
            .stdout
            .lines()
            .zip(String::from_utf8_lossy(&file).lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| {
                format!(
                    "first difference at line {}:\n  generated: {a}\n  file:      {b}",
                    i + 1
                )
            })
            .unwrap_or_else(|| "one is a prefix of the other".into());
        panic!(
            "rootfs/etc/postern/postern.toml drifted from the config schema ({first}).\n\
             Regenerate it with:  cargo run -- config example > rootfs/etc/postern/postern.toml"
        );
    }
}

#[test]
fn example_config_passes_check_config() {
    let tmp = TestDir::new("example");
    let aliases = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/etc/postern/aliases");
    let header_checks =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/etc/postern/header_checks");
    assert!(aliases.is_file(), "rootfs/etc/postern/aliases is missing");
    let example = std::fs::read_to_string(example_path()).unwrap();
    assert!(
        example.contains("\"/etc/postern/aliases\""),
        "the example names /etc/postern/aliases"
    );
    let data = tmp.path().join("data");
    // The example names the appliance's certificate files: stand in a real pair.
    let (cert, key, _) = postern::tls::self_signed(
        &tmp.path().join("tls"),
        "mail.example.test",
        postern::clock::now_secs(),
    )
    .unwrap();
    let credentials = tmp.path().join("relay-credentials");
    std::fs::write(&credentials, "[smtp.isp.test]:587 user:password\n").unwrap();
    std::fs::set_permissions(
        &credentials,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mysql_password = tmp.path().join("mysql-password");
    std::fs::write(&mysql_password, "postfix-mysql-pass\n").unwrap();
    std::fs::set_permissions(
        &mysql_password,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let text: String = example
        .replace(
            "\"/etc/postern/mysql-password\"",
            &format!("\"{}\"", mysql_password.display()),
        )
        .replace(
            "\"/etc/postern/aliases\"",
            &format!("\"{}\"", aliases.display()),
        )
        .replace(
            "\"/etc/postern/header_checks\"",
            &format!("\"{}\"", header_checks.display()),
        )
        .replace(
            "\"/etc/postern/relay-credentials\"",
            &format!("\"{}\"", credentials.display()),
        )
        // The appliance image has a vmail user (uid 5000); this machine
        // need not.
        .replace("user = \"vmail\"", "user = \"5000:5000\"")
        .replace("\"/etc/postern/vquota\"", "\"\"")
        .replace(
            "\"/etc/postern/tls/fullchain.pem\"",
            &format!("\"{}\"", cert.display()),
        )
        .replace(
            "\"/etc/postern/tls/privkey.pem\"",
            &format!("\"{}\"", key.display()),
        )
        .lines()
        .map(|l| {
            if l.starts_with("data_dir = ") {
                format!("data_dir = \"{}\"\n", data.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(
        text.contains(&data.display().to_string()),
        "the example sets data_dir"
    );
    std::fs::write(tmp.path().join("postern.toml"), text).unwrap();
    // The example's [[dkim]] key, made as the user would (issue 13).
    let (ok, out) = run(postern()
        .args([
            "dkim",
            "keygen",
            "example.test",
            "--selector",
            "s202611",
            "--out",
        ])
        .arg(data.join("dkim/s202611.example.test.pem")));
    assert!(ok, "dkim keygen: {out}");
    let o = check_config_in(tmp.path(), "postern.toml");
    assert_eq!(
        o.code,
        Some(0),
        "the example config does not check:\n{}",
        o.stderr
    );
    assert_eq!(o.stdout.trim(), "postern.toml: ok");
    assert!(o.stderr.is_empty(), "{}", o.stderr);
}

#[test]
fn default_config_passes_check_config() {
    let tmp = TestDir::new("default");
    let o = output(postern().args(["config", "default"]));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("[[listener]]"), "{}", o.stdout);
    std::fs::write(tmp.path().join("default.toml"), &o.stdout).unwrap();
    let o = check_config_in(tmp.path(), "default.toml");
    assert_eq!(
        o.code,
        Some(0),
        "the embedded default does not check:\n{}",
        o.stderr
    );
    assert_eq!(o.stdout.trim(), "default.toml: ok");
    // check-config only reads: it creates nothing next to the config.
    assert!(
        !tmp.path().join("postern-data").exists(),
        "check-config created the data dir"
    );

    let o = output(postern().args(["config", "nonsense"]));
    assert_ne!(o.code, Some(0));
    assert!(
        o.stderr.contains("example") && o.stderr.contains("default"),
        "{}",
        o.stderr
    );
}

/// IPv4 and IPv6 networks, sizes and durations with units, listeners on
/// IPv4 and IPv6: a good file prints `FILE: ok` and exits 0.
#[test]
fn a_good_config_prints_ok() {
    let tmp = TestDir::new("good");
    std::fs::write(tmp.path().join("aliases"), "root: alice@example.test\n").unwrap();
    std::fs::write(
        tmp.path().join("postern.toml"),
        "data_dir = \".\"\n\
         hostname = \"mx.example.test\"\n\
         trusted_networks = [\"127.0.0.0/8\", \"::1/128\", \"::1\", \"fd00::/8\", \"2001:db8::/32\", \"10.0.0.0/8\", \"0.0.0.0/0\", \"::/0\"]\n\
         local_domains = [\"mx.example.test\", \"localhost\"]\n\
         \n[[listener]]\naddress = \"127.0.0.1:2525\"\n\
         \n[[listener]]\naddress = \"[::1]:2525\"\nmode = \"plain\"\n\
         \n[smtp]\nmessage_size_limit = \"10M\"\nerror_delay = \"500ms\"\ncommand_timeout = \"5m\"\ncommand_line_limit = 512\n\
         \n[directory]\naliases_file = \"aliases\"\nlocal_users = \"aliases-only\"\nlookup_timeout = \"1s\"\n\
         \n[delivery]\nuid = 5000\ngid = 5000\nminimum_uid = 5000\n\
         \n[queue]\nmax_lifetime = \"5d\"\n",
    )
    .unwrap();
    let o = check_config_in(tmp.path(), "postern.toml");
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.stdout.trim(), "postern.toml: ok");
    assert!(o.stderr.is_empty(), "{}", o.stderr);
}

/// The relay decision reads trusted_networks as configured: `::1/128`
/// trusts ::1 only, never 127.0.0.1; `127.0.0.0/8` trusts 127.0.0.2.
#[test]
fn trusted_networks_with_ipv6_entries_decide_relaying() {
    let srv = Server::builder()
        .top("trusted_networks = [\"::1/128\", \"fd00::/8\"]")
        .start();
    let mut c = srv.smtp();
    c.hello();
    c.expect("MAIL FROM:<me@client.test>", "250");
    let r = c.cmd("RCPT TO:<someone@remote.test>");
    assert!(
        r.first.starts_with("554 5.7.1"),
        "127.0.0.1 is not in ::1/128: {r:?}"
    );
    drop(c);

    let srv = Server::builder()
        .top("trusted_networks = [\"::1/128\", \"127.0.0.0/8\"]")
        .start();
    let mut c = srv.smtp_untrusted();
    c.hello();
    c.expect("MAIL FROM:<me@client.test>", "250");
    c.expect("RCPT TO:<someone@remote.test>", "250 2.1.5");
}

/// `serve` with the same kind of good file starts and listens:
/// check-config's "ok" means the server accepts it too. Its listener asks
/// for port 0: the bound address is in the start line and in
/// `data_dir/listening` (`<n> <configured> <bound> <mode>`), which a clean
/// stop removes.
#[test]
fn a_config_check_config_accepts_also_starts() {
    let tmp = TestDir::new("goodserve");
    std::fs::write(
        tmp.path().join("postern.toml"),
        "data_dir = \"data\"\nhostname = \"mx.example.test\"\ntrusted_networks = [\"127.0.0.1/32\", \"::1/128\"]\n\
         \n[[listener]]\naddress = \"127.0.0.1:0\"\n\n[smtp]\nmessage_size_limit = \"1M\"\n",
    )
    .unwrap();
    let o = check_config_in(tmp.path(), "postern.toml");
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let data = tmp.path().join("data");
    let mut cmd = postern();
    cmd.args(["serve", "--config", "postern.toml"])
        .current_dir(tmp.path());
    let mut served = Served::start(cmd, &tmp.path().join("log"), &data);
    let bound = served.addr();
    assert_ne!(bound.port(), 0);
    let listening = std::fs::read_to_string(data.join("listening")).unwrap();
    assert_eq!(listening, format!("1 127.0.0.1:0 {bound} starttls\n"));
    assert!(
        served.log().contains(&format!("listening on {bound};")),
        "{}",
        served.log()
    );
    let mut c = Smtp::connect(bound);
    c.hello();
    let r = c.cmd("EHLO client.test");
    assert!(
        r.text.contains("SIZE 1048576"),
        "message_size_limit \"1M\" is announced: {r:?}"
    );
    c.expect("QUIT", "221");
    signal(served.child.id(), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = wait_timeout(served.child.child(), Duration::from_secs(20));
    assert!(status.success(), "{status}:\n{}", served.log());
    assert!(
        !data.join("listening").exists(),
        "a clean stop removes data_dir/listening"
    );
}

/// `postern reload` with nobody holding the queue says so and fails,
/// instead of signalling a stale pid.
#[test]
fn reload_without_a_running_server_says_so() {
    let dir = TestDir::new("reload-none");
    let o = postern()
        .args(["reload", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(69), "{err}");
    assert!(err.contains("no server is running"), "{err}");
    // A lock file left by a server that is gone does not count either.
    std::fs::create_dir_all(dir.path().join("queue")).unwrap();
    std::fs::write(dir.path().join("queue/lock"), "1\n").unwrap();
    let o = postern()
        .args(["reload", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A pipe user this machine does not know is a config error for the
/// server (bad_configs/23), but a client command that runs no pipe —
/// `postern status`, as any permitted user — accepts the same file; a
/// root user is refused by both.
#[test]
fn a_client_command_does_not_look_pipe_users_up() {
    let case = cases_dir().join("23-unknown-pipe-user");
    let tmp = prepared(&case, |s| s);
    let full = std::fs::read_to_string(tmp.path().join("postern.toml")).unwrap();
    let unknown_only = &full[..full.find("[[transport]]\nname = \"root-pipe\"").unwrap()];
    std::fs::write(tmp.path().join("unknown.toml"), unknown_only).unwrap();
    let status = |file: &str| {
        output(
            postern()
                .args(["status", "--config", file])
                .current_dir(tmp.path())
                .stdin(Stdio::null()),
        )
    };

    let server = check_config_in(tmp.path(), "unknown.toml");
    assert_eq!(server.code, Some(78), "{}", server.stderr);
    assert!(
        server
            .stderr
            .contains("unknown.toml:8: transport[1].user: no user \"postern-test-no-such-user\""),
        "{}",
        server.stderr
    );
    // It gets as far as looking for the server (none runs: EX_UNAVAILABLE).
    let client = status("unknown.toml");
    assert_eq!(client.code, Some(69), "{}", client.stderr);
    assert!(
        !client.stderr.contains("configuration error"),
        "{}",
        client.stderr
    );
    assert!(
        client.stderr.contains("postern is not running"),
        "{}",
        client.stderr
    );

    let client = status("postern.toml");
    assert_eq!(client.code, Some(78), "{}", client.stderr);
    assert!(
        client
            .stderr
            .contains("postern.toml:14: transport[2].user: never root"),
        "{}",
        client.stderr
    );
    assert!(!client.stderr.contains("no user"), "{}", client.stderr);
}
