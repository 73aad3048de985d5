use super::*;

fn row(agent: &str, contact: &str, expires: SystemTime) -> Row {
    Row {
        agent: agent.into(),
        contact: contact.into(),
        transport: "udp".into(),
        local: "127.0.0.1:5060".into(),
        remote: "192.0.2.7:40000".into(),
        expires,
        call_id: "reg-1".into(),
        cseq: 3,
        user_agent: Some("phone".into()),
        path: Vec::new(),
    }
}

#[test]
fn bindings_survive_a_reopen_and_expired_or_removed_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let (store, rows) = Registrations::open(dir.path(), t0).unwrap();
    assert!(rows.is_empty());
    let later = t0 + Duration::from_secs(3600);
    store.set(
        "1001",
        vec![
            row("1001", "sip:a@192.0.2.7", later),
            row("1001", "sip:b@192.0.2.8", t0 + Duration::from_secs(60)),
        ],
    );
    store.set("1002", vec![row("1002", "sip:c@192.0.2.9", later)]);
    store.set("1002", vec![]);
    store.flush();
    drop(store);
    // Reopened 2 minutes later: 1001's short binding has expired, 1002 unregistered.
    let (_, rows) = Registrations::open(dir.path(), t0 + Duration::from_secs(120)).unwrap();
    assert_eq!(rows, vec![row("1001", "sip:a@192.0.2.7", later)]);
}

#[test]
fn a_store_that_cannot_be_created_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let e = Registrations::open(&file, SystemTime::now()).err().unwrap();
    assert!(e.to_string().contains("not-a-dir"), "{e}");
}

#[test]
fn a_path_is_kept_and_a_store_without_the_column_gains_it() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let later = t0 + Duration::from_secs(3600);
    // A store as written before Path was kept: no `path` column.
    {
        let c = Connection::open(dir.path().join("registrations.sqlite")).unwrap();
        c.execute_batch(
            "CREATE TABLE bindings(agent TEXT NOT NULL, contact TEXT NOT NULL, transport TEXT NOT NULL, \
             local TEXT NOT NULL, remote TEXT NOT NULL, expires_s INTEGER NOT NULL, \
             call_id TEXT NOT NULL, cseq INTEGER NOT NULL, user_agent TEXT, \
             PRIMARY KEY(agent, contact)) WITHOUT ROWID;",
        )
        .unwrap();
        c.execute(
            "INSERT INTO bindings VALUES ('1001', 'sip:a@192.0.2.7', 'udp', '127.0.0.1:5060', \
             '192.0.2.7:40000', ?1, 'reg-1', 3, 'phone')",
            params![secs(later)],
        )
        .unwrap();
    }
    let (store, rows) = Registrations::open(dir.path(), t0).unwrap();
    assert_eq!(rows, vec![row("1001", "sip:a@192.0.2.7", later)]);
    let mut through = row("1002", "sip:b@192.0.2.8", later);
    through.path = vec![
        "<sip:192.0.2.1:5060;lr;received=sip:192.0.2.8:5062>".into(),
        "<sip:192.0.2.2;lr>".into(),
    ];
    store.set("1002", vec![through.clone()]);
    store.flush();
    drop(store);
    let (_, rows) = Registrations::open(dir.path(), t0).unwrap();
    assert_eq!(rows[1], through, "the Path comes back in order");
}
