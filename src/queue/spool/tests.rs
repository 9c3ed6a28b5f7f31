use super::inspect::still_named;
use super::{publish, OpenError, Spool};
use crate::smtp::address::Address;

#[test]
fn a_reader_tells_a_damaged_file_from_a_reused_one() {
    let root = std::env::temp_dir().join(format!("postern-reader-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let spool = Spool::open_unlocked(&root).unwrap();
    let at = crate::clock::now_micros();
    let [x, y] = [at, at + 1]
        .map(|t| crate::queue::envelope::for_test(t, Address::new("alice", "example.test")));
    spool.submit(&x, b"Subject: x\n\nx\n").unwrap();
    spool.submit(&y, b"Subject: y\n\ny\n").unwrap();
    let messages = root.join("messages");
    assert_eq!(spool.entry(&x.id).unwrap().env.id, x.id);

    // A reader holds X open; X finishes and its file moves on (here:
    // to another name, as a reused file does): the name is not its.
    let path = messages.join(&x.id);
    let held = std::fs::File::open(&path).unwrap();
    assert!(still_named(&path, &held));
    std::fs::rename(&path, root.join("done").join(&x.id)).unwrap();
    assert!(!still_named(&path, &held));
    assert!(matches!(spool.entry(&x.id), Err(OpenError::NotFound)));

    // Y's file under X's name, left there: damaged, and said so.
    std::fs::rename(messages.join(&y.id), &path).unwrap();
    match spool.entry(&x.id) {
        Err(OpenError::Corrupt(why)) => assert!(why.contains(&y.id), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(e) => panic!("read as {}", e.env.id),
    }
    assert!(matches!(spool.shown(&x.id), Err(OpenError::Corrupt(_))));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn publish_moves_a_file_and_never_replaces_one() {
    let dir = std::env::temp_dir().join(format!("postern-publish-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    std::fs::write(&a, "first").unwrap();
    std::fs::write(&b, "second").unwrap();
    let e = publish(&a, &b).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "first");
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "second");
    publish(&a, &c).unwrap();
    assert!(!a.exists(), "the incoming name is gone");
    assert_eq!(std::fs::read_to_string(&c).unwrap(), "first");
    std::fs::remove_dir_all(&dir).unwrap();
}
