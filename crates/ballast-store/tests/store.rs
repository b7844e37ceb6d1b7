//! The store's contract, run against embedded SQLite always and against PostgreSQL when `BALLAST_TEST_POSTGRES_URL`
//! names a database (`.ci/run` starts one on loopback and sets it). Each PostgreSQL test starts by dropping the
//! store's tables, so the tests take turns on that database (a lock serialises them).

use ballast_store::{Entry, Location, Snapshot, Store, StoreError, SNAPSHOTS_KEPT};
use std::sync::Mutex;

static POSTGRES: Mutex<()> = Mutex::new(());

const CONFIG: &str = "aa11";

fn entries(from: u64, n: u64) -> Vec<Entry> {
    (from..from + n)
        .map(|seq| Entry {
            seq,
            line: format!(r#"{{"seq":{seq},"prev":"x","command":{{"n":"é{seq}"}}}}"#),
        })
        .collect()
}

/// Runs `test` against a fresh SQLite directory, then against a fresh PostgreSQL database if one is configured.
fn each_backend(test: impl Fn(&Location)) {
    let dir = tempfile::tempdir().unwrap();
    test(&Location::Sqlite(dir.path().join("data")));
    match std::env::var("BALLAST_TEST_POSTGRES_URL") {
        Ok(url) => {
            let _guard = POSTGRES.lock().unwrap_or_else(|e| e.into_inner());
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client
                .batch_execute("DROP TABLE IF EXISTS ballast_meta, ballast_log, ballast_snapshots")
                .unwrap();
            test(&Location::Postgres(url));
        }
        Err(_) if std::env::var_os("BALLAST_REQUIRE_POSTGRES").is_some() => {
            panic!("BALLAST_REQUIRE_POSTGRES is set but BALLAST_TEST_POSTGRES_URL is not")
        }
        Err(_) => eprintln!("BALLAST_TEST_POSTGRES_URL not set: PostgreSQL not tested here"),
    }
}

#[test]
fn a_new_store_keeps_its_header_and_refuses_another_protocol_file() {
    each_backend(|at| {
        let store = Store::open(at, CONFIG, 1_700_000_000).unwrap();
        assert_eq!(
            store.header_line(),
            r#"{"format":"ballast-command-log","version":1,"config_sha256":"aa11","genesis":1700000000}"#
        );
        assert_eq!(store.last_seq(), 0);
        drop(store);
        // Reopened later: the stored genesis wins.
        let store = Store::open(at, CONFIG, 1_800_000_000).unwrap();
        assert_eq!(store.header().genesis, 1_700_000_000);
        drop(store);
        let err = Store::open(at, "bb22", 1_700_000_000).unwrap_err();
        assert!(
            matches!(&err, StoreError::Mismatch(m) if m.contains("aa11") && m.contains("bb22")),
            "{err}"
        );
    });
}

#[test]
fn batches_append_in_order_and_read_back_byte_for_byte() {
    each_backend(|at| {
        let mut store = Store::open(at, CONFIG, 0).unwrap();
        let first = entries(1, 3);
        store.append(&first).unwrap();
        store.append(&[]).unwrap();
        let second = entries(4, 500);
        store.append(&second).unwrap();
        assert_eq!(store.last_seq(), 503);
        let bytes: u64 = first
            .iter()
            .chain(&second)
            .map(|e| e.line.len() as u64)
            .sum();
        assert_eq!(store.log_bytes(), bytes);
        // A gap or a repeat is refused and writes nothing.
        let err = store.append(&entries(505, 1)).unwrap_err();
        assert!(matches!(err, StoreError::Usage(_)), "{err}");
        let err = store.append(&entries(503, 2)).unwrap_err();
        assert!(matches!(err, StoreError::Usage(_)), "{err}");
        assert_eq!(store.last_seq(), 503);
        drop(store);
        let mut store = Store::open(at, CONFIG, 0).unwrap();
        assert_eq!((store.last_seq(), store.log_bytes()), (503, bytes));
        let all = store.read(0, 10_000).unwrap();
        assert_eq!(all.len(), 503);
        assert_eq!(&all[..3], &first[..]);
        assert_eq!(&all[3..], &second[..]);
        assert_eq!(store.read(500, 2).unwrap(), entries(501, 2));
        assert!(store.read(503, 10).unwrap().is_empty());
    });
}

#[test]
fn only_the_newest_snapshots_are_kept() {
    each_backend(|at| {
        let mut store = Store::open(at, CONFIG, 0).unwrap();
        assert_eq!(store.latest_snapshot().unwrap(), None);
        store.append(&entries(1, 30)).unwrap();
        let snapshot = |seq: u64| Snapshot {
            seq,
            head: format!("head{seq}"),
            state_hash: format!("hash{seq}"),
            engine: vec![seq as u8, 0, 255],
            service: b"{}".to_vec(),
        };
        for seq in [10, 20, 30] {
            store.put_snapshot(&snapshot(seq)).unwrap();
        }
        assert_eq!(store.latest_snapshot().unwrap(), Some(snapshot(30)));
        let err = store.put_snapshot(&snapshot(31)).unwrap_err();
        assert!(matches!(err, StoreError::Usage(_)), "{err}");
        drop(store);
        let mut store = Store::open(at, CONFIG, 0).unwrap();
        assert_eq!(store.latest_snapshot().unwrap(), Some(snapshot(30)));
        assert_eq!(SNAPSHOTS_KEPT, 2);
    });
}

#[test]
fn a_database_of_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let at = Location::Sqlite(dir.path().to_path_buf());
    drop(Store::open(&at, CONFIG, 0).unwrap());
    set_stored_version(dir.path(), "99");
    let err = Store::open(&at, CONFIG, 0).unwrap_err();
    assert!(
        matches!(&err, StoreError::Mismatch(m) if m.contains("version 99")),
        "{err}"
    );
}

/// Overwrites the stored format version in a store's SQLite file.
fn set_stored_version(dir: &std::path::Path, version: &str) {
    let conn = rusqlite::Connection::open(dir.join(ballast_store::SQLITE_FILE)).unwrap();
    conn.execute(
        "UPDATE ballast_meta SET value = ?1 WHERE key = 'version'",
        [version],
    )
    .unwrap();
}
