use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::directory::Store;

fn db(tag: &str) -> (Db, PathBuf) {
    let dir = std::env::temp_dir().join(format!("postern-import-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("directory.sqlite");
    let (db, problem) = Db::open(&path, Duration::from_secs(2));
    assert!(problem.is_none());
    (db, dir)
}

fn domain(name: &str) -> Row {
    Row::Domain(Domain {
        domain: name.into(),
        description: String::new(),
        transport: "virtual".into(),
        backupmx: false,
        quota: 0,
        maxquota: 0,
        active: true,
        created: NO_TIME.into(),
        modified: NO_TIME.into(),
    })
}

fn mailbox(user: &str, quota: i64) -> Row {
    let (local, dom) = user.split_once('@').unwrap();
    Row::Mailbox(Mailbox {
        username: user.into(),
        password: "{PLAIN}pw".into(),
        name: String::new(),
        maildir: format!("{dom}/{local}/"),
        quota,
        local_part: local.into(),
        domain: dom.into(),
        active: true,
        smtp_active: true,
        created: NO_TIME.into(),
        modified: NO_TIME.into(),
    })
}

fn alias(address: &str, goto: &str) -> Row {
    Row::Alias(Alias {
        address: address.into(),
        goto: goto.into(),
        domain: String::new(),
        active: true,
        created: NO_TIME.into(),
        modified: NO_TIME.into(),
    })
}

/// Runs one import of `rows` (grouped per table, in sync order); returns
/// the counts per table and the event lines.
fn sync(db: &Db, rows: &[Row], dry_run: bool) -> (Vec<Counts>, Vec<String>) {
    let mut events = Vec::new();
    let counts = {
        let mut imp = db
            .begin_import(dry_run, |e: &Event| events.push(format!("{e:?}")))
            .unwrap();
        let mut counts = Vec::new();
        for t in Table::ALL {
            let c = imp
                .table(t, |w| {
                    for r in rows.iter().filter(|r| r.table() == t) {
                        w.put(r);
                    }
                    Ok(())
                })
                .unwrap()
                .unwrap();
            counts.push(c);
        }
        imp.commit("test", 1000, "summary").unwrap();
        counts
    };
    (counts, events)
}

fn changes(c: &[Counts]) -> u64 {
    c.iter().map(Counts::changes).sum()
}

#[test]
fn first_sync_change_delete_and_no_op() {
    let (db, dir) = db("cycle");
    let base = vec![
        domain("example.test"),
        mailbox("alice@example.test", 0),
        mailbox("bob@example.test", 0),
        alias("alice@example.test", "alice@example.test"),
        alias("team@example.test", "alice@example.test,bob@example.test"),
    ];
    let (c, _) = sync(&db, &base, false);
    assert_eq!(c[2].added, 2);
    assert_eq!(changes(&c), 5);
    assert!(db.mailbox("BOB@example.test").unwrap().is_some());
    assert_eq!(db.sync_status().unwrap().unwrap().last_success, Some(1000));

    // Nothing changed: nothing written.
    let (c, ev) = sync(&db, &base, false);
    assert_eq!(changes(&c), 0, "{ev:?}");

    // bob's quota changes, alice goes, a new alias arrives.
    let next = vec![
        domain("example.test"),
        mailbox("bob@example.test", 5000),
        alias("team@example.test", "bob@example.test"),
        alias("new@example.test", "bob@example.test"),
    ];
    let (c, ev) = sync(&db, &next, false);
    assert_eq!((c[2].changed, c[2].removed), (1, 1), "{ev:?}");
    assert_eq!(
        (c[3].added, c[3].changed, c[3].removed),
        (1, 1, 1),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|e| e.contains("Changed") && e.contains("quota")),
        "{ev:?}"
    );
    assert!(db.mailbox("alice@example.test").unwrap().is_none());
    assert_eq!(db.mailbox("bob@example.test").unwrap().unwrap().quota, 5000);
    // The mirror is in WAL mode now, and the cache followed the commit.
    assert_eq!(
        db.alias_goto("team@example.test").unwrap().as_deref(),
        Some("bob@example.test")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_rows_are_skipped_and_keep_the_previous_row() {
    let (db, dir) = db("skip");
    let good = vec![domain("example.test"), mailbox("carol@example.test", 0)];
    sync(&db, &good, false);
    let mut broken = mailbox("carol@example.test", 0);
    if let Row::Mailbox(m) = &mut broken {
        m.maildir = "../../etc/".into();
    }
    let rows = vec![
        domain("example.test"),
        domain("bad_name.test"),
        broken,
        mailbox("dan@nowhere.test", 0),
        mailbox("Eve@Example.test", 0),
        mailbox("eve@example.test", 7),
        alias("x@example.test", "not-an-address"),
    ];
    let (c, ev) = sync(&db, &rows, false);
    let text = ev.join("\n");
    assert!(text.contains("bad_name.test"), "{text}");
    assert!(
        text.contains("key: \"carol@example.test\"") && text.contains("kept: true"),
        "{text}"
    );
    assert!(text.contains("nowhere.test does not exist"), "{text}");
    assert!(
        text.contains("Duplicate") && text.contains("eve@example.test"),
        "{text}"
    );
    assert_eq!(c[2].skipped, 3, "{text}");
    assert_eq!(c[3].skipped, 1, "{text}");
    // carol keeps her old, good maildir; the first eve wins.
    assert_eq!(
        db.mailbox("carol@example.test").unwrap().unwrap().maildir,
        "example.test/carol/"
    );
    assert_eq!(db.mailbox("eve@example.test").unwrap().unwrap().quota, 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dry_run_writes_nothing_and_interrupted_imports_roll_back() {
    let (db, dir) = db("dry");
    let rows = vec![domain("example.test"), mailbox("alice@example.test", 0)];
    let (c, ev) = sync(&db, &rows, true);
    assert_eq!(changes(&c), 2, "{ev:?}");
    assert!(db.mailbox("alice@example.test").unwrap().is_none());
    assert!(db.sync_status().unwrap().is_none());

    // An import dropped half way (the source went away) leaves nothing.
    {
        let mut imp = db.begin_import(false, |_: &Event| {}).unwrap();
        imp.table(Table::Domain, |w| {
            w.put(&rows[0]);
            Ok(())
        })
        .unwrap()
        .unwrap();
        let r = imp
            .table(Table::Mailbox, |w| {
                w.put(&rows[1]);
                Err("lost connection".into())
            })
            .unwrap();
        assert!(r.is_err());
    }
    assert!(db.domain("example.test").unwrap().is_none());
    assert!(db.mailbox("alice@example.test").unwrap().is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn local_edits_are_reported_as_conflicts() {
    let (db, dir) = db("conflict");
    let rows = vec![domain("example.test"), mailbox("alice@example.test", 0)];
    sync(&db, &rows, false);
    // An admin adds a mailbox and changes alice's password by hand.
    db.mailbox_add(&crate::directory::sqlite::admin::NewMailbox {
        address: "local@example.test",
        name: "",
        quota: 0,
        maildir: None,
        password_hash: "{PLAIN}x",
    })
    .unwrap();
    db.mailbox_passwd("alice@example.test", "{PLAIN}changed")
        .unwrap();
    let (c, ev) = sync(&db, &rows, false);
    let text = ev.join("\n");
    assert_eq!(c[2].conflicts, 2, "{text}");
    assert!(
        text.contains("local@example.test") && text.contains("removed"),
        "{text}"
    );
    assert!(
        text.contains("alice@example.test") && text.contains("source's row wins"),
        "{text}"
    );
    assert!(db.mailbox("local@example.test").unwrap().is_none());
    // Reported once: the next sync has nothing to say.
    let (c, _) = sync(&db, &rows, false);
    assert_eq!(c[2].conflicts + c[3].conflicts, 0);
    std::fs::remove_dir_all(dir).unwrap();
}
