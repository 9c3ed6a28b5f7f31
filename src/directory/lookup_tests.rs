use super::*;

const FIXTURE: &str = include_str!("../../tests/fixtures/postfixadmin-mysql.sql");

/// A directory over a fresh database holding the PostfixAdmin fixture's
/// rows (its INSERT/UPDATE statements, unchanged) and an aliases file.
fn directory(tag: &str, aliases: &str) -> (Directory, Arc<Db>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("postern-dir-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (db, problem) = Db::open(&dir.join("d.sqlite"), std::time::Duration::from_secs(1));
    assert!(problem.is_none(), "{problem:?}");
    let data: String = FIXTURE
        .lines()
        .filter(|l| !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for stmt in data
        .split(";\n")
        .map(str::trim)
        .filter(|s| s.starts_with("INSERT") || s.starts_with("UPDATE"))
    {
        db.execute_script(&format!("{stmt};")).unwrap();
    }
    let db = Arc::new(db);
    let d = Directory {
        store: db.clone(),
        rules: Arc::new(Rules {
            aliases: AliasMap::parse("aliases", aliases).unwrap(),
            local_domains: vec!["mx.example.test".into(), "localhost".into()],
            local_users: LocalUsers::Any,
            origin: "mx.example.test".into(),
            delimiter: "+".into(),
            depth_limit: 20,
        }),
    };
    (d, db, dir)
}

fn resolve(d: &Directory, a: &str) -> Resolution {
    d.resolve(&Address::parse(a, true).unwrap()).unwrap()
}

fn mailboxes(r: &Resolution) -> Vec<String> {
    match r {
        Resolution::Deliver(v) => v.iter().map(|d| d.key()).collect(),
        other => panic!("not delivered: {other:?}"),
    }
}

#[test]
fn expansion_follows_postfixadmin_rules() {
    let (d, _db, dir) = directory(
        "rules",
        "root: alice@example.test\nops: root, bob@example.test\n",
    );
    // An alias to itself means the mailbox.
    assert_eq!(
        mailboxes(&resolve(&d, "alice@example.test")),
        ["mailbox:alice@example.test"]
    );
    assert_eq!(
        mailboxes(&resolve(&d, "ALICE@Example.TEST")),
        ["mailbox:alice@example.test"]
    );
    assert_eq!(
        mailboxes(&resolve(&d, "alice+news@example.test")),
        ["mailbox:alice@example.test"]
    );
    // Multi-target alias.
    assert_eq!(
        mailboxes(&resolve(&d, "team@example.test")),
        ["mailbox:alice@example.test", "mailbox:bob@example.test"]
    );
    // Alias domain, catch-all, postmaster alias, forward.
    assert_eq!(
        mailboxes(&resolve(&d, "bob@alias.test")),
        ["mailbox:bob@example.test"]
    );
    assert_eq!(
        mailboxes(&resolve(&d, "anyone@catchall.test")),
        ["mailbox:alice@example.test"]
    );
    assert_eq!(
        mailboxes(&resolve(&d, "postmaster@example.test")),
        ["mailbox:alice@example.test"]
    );
    assert_eq!(
        mailboxes(&resolve(&d, "fwd@example.test")),
        ["remote:someone@remote.test"]
    );
    // Local domain: aliases file (recursively), then local users.
    assert_eq!(
        mailboxes(&resolve(&d, "root@localhost")),
        ["mailbox:alice@example.test"]
    );
    assert_eq!(
        mailboxes(&resolve(&d, "ops@localhost")),
        ["mailbox:alice@example.test", "mailbox:bob@example.test"]
    );
    assert_eq!(
        mailboxes(&resolve(&d, "zed@mx.example.test")),
        ["local:zed"]
    );
    // Backup MX domains are relayed, inactive things do not exist.
    assert_eq!(
        mailboxes(&resolve(&d, "x@backup.test")),
        ["remote:x@backup.test"]
    );
    assert_eq!(resolve(&d, "frank@example.test"), Resolution::Unknown);
    assert_eq!(resolve(&d, "old@example.test"), Resolution::Unknown);
    assert_eq!(resolve(&d, "nobody@example.test"), Resolution::Unknown);
    assert_eq!(d.classify("inactive.test").unwrap(), DomainClass::Remote);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn loops_and_depth_are_caught() {
    let (mut d, _db, dir) = directory("loops", "a: b\nb: c\nc: a\n");
    assert_eq!(resolve(&d, "loop1@example.test"), Resolution::Loop);
    assert_eq!(resolve(&d, "a@localhost"), Resolution::Loop);
    let rules = Arc::get_mut(&mut d.rules).unwrap();
    rules.depth_limit = 2;
    rules.aliases = AliasMap::parse("aliases", "a: b\nb: c\nc: alice@example.test\n").unwrap();
    assert_eq!(
        resolve(&d, "a@localhost"),
        Resolution::Loop,
        "deeper than the limit"
    );
    Arc::get_mut(&mut d.rules).unwrap().depth_limit = 5;
    assert_eq!(
        mailboxes(&resolve(&d, "a@localhost")),
        ["mailbox:alice@example.test"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn address_tricks_stay_local_parts() {
    let (d, _db, dir) = directory("tricks", "");
    for a in [
        "\"user@remote.test\"@example.test",
        "user%remote.test@example.test",
        "remote.test!user@example.test",
    ] {
        assert_eq!(resolve(&d, a), Resolution::Unknown, "{a}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn postmaster_of_a_hosted_domain_without_alias_goes_to_local_postmaster() {
    let (d, db, dir) = directory("pm", "");
    db.execute_script("INSERT INTO domain (domain) VALUES ('bare.test');")
        .unwrap();
    assert_eq!(resolve(&d, "someone@bare.test"), Resolution::Unknown);
    assert_eq!(
        mailboxes(&resolve(&d, "POSTMASTER@bare.test")),
        ["local:postmaster"]
    );
    assert_eq!(
        mailboxes(&resolve(&d, "Postmaster@mx.example.test")),
        ["local:postmaster"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}
