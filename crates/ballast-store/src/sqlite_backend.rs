//! The embedded SQLite backend: one database file in the data directory, in WAL mode with `synchronous=FULL`, so
//! that a committed transaction survives a crash of the process or the machine.

use crate::{ensure_dir, to_i64, Backend, Entry, Snapshot, StoreError, SQLITE_FILE};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

pub(crate) struct Sqlite {
    conn: Connection,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(format!("SQLite: {e}"))
}

impl Sqlite {
    pub(crate) fn open(dir: &Path) -> Result<Sqlite, StoreError> {
        ensure_dir(dir)?;
        let path = dir.join(SQLITE_FILE);
        let conn = Connection::open(&path)
            .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        // WAL: readers do not block the writer; FULL: every commit is fsynced before it returns.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open(format!(
                "{}: cannot use write-ahead logging (journal mode {mode})",
                path.display()
            )));
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;")
            .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        Ok(Sqlite { conn })
    }
}

impl Backend for Sqlite {
    fn init(&mut self) -> Result<Option<(String, String, String)>, StoreError> {
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS ballast_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS ballast_log (seq INTEGER PRIMARY KEY, line TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS ballast_snapshots (
                     seq INTEGER PRIMARY KEY, head TEXT NOT NULL, state_hash TEXT NOT NULL,
                     engine BLOB NOT NULL, service BLOB NOT NULL);",
            )
            .map_err(db)?;
        let get = |key: &str| -> Result<Option<String>, StoreError> {
            self.conn
                .query_row(
                    "SELECT value FROM ballast_meta WHERE key = ?1",
                    [key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)
        };
        match (get("format")?, get("version")?, get("header")?) {
            (Some(f), Some(v), Some(h)) => Ok(Some((f, v, h))),
            (None, None, None) => Ok(None),
            _ => Err(StoreError::Mismatch(
                "ballast_meta is incomplete (format, version and header go together)".to_string(),
            )),
        }
    }

    fn write_meta(&mut self, format: &str, version: &str, header: &str) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(db)?;
        for (k, v) in [("format", format), ("version", version), ("header", header)] {
            tx.execute(
                "INSERT INTO ballast_meta (key, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    fn last_seq(&mut self) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM ballast_log", [], |r| r.get(0))
            .map_err(db)?;
        Ok(seq.unwrap_or(0) as u64)
    }

    fn log_bytes(&mut self) -> Result<u64, StoreError> {
        let bytes: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(LENGTH(CAST(line AS BLOB))), 0) FROM ballast_log",
                [],
                |r| r.get(0),
            )
            .map_err(db)?;
        Ok(bytes as u64)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(db)?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO ballast_log (seq, line) VALUES (?1, ?2)")
                .map_err(db)?;
            for e in entries {
                insert
                    .execute(params![to_i64(e.seq, "seq")?, e.line])
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    fn read(&mut self, after: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut select = self
            .conn
            .prepare_cached(
                "SELECT seq, line FROM ballast_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(db)?;
        let rows = select
            .query_map(params![to_i64(after, "seq")?, limit as i64], |r| {
                Ok(Entry {
                    seq: r.get::<_, i64>(0)? as u64,
                    line: r.get(1)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn put_snapshot(&mut self, s: &Snapshot, keep: usize) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(db)?;
        tx.execute(
            "INSERT OR REPLACE INTO ballast_snapshots (seq, head, state_hash, engine, service)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                to_i64(s.seq, "seq")?,
                s.head,
                s.state_hash,
                s.engine,
                s.service
            ],
        )
        .map_err(db)?;
        tx.execute(
            "DELETE FROM ballast_snapshots WHERE seq NOT IN
                 (SELECT seq FROM ballast_snapshots ORDER BY seq DESC LIMIT ?1)",
            [keep as i64],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn latest_snapshot(&mut self) -> Result<Option<Snapshot>, StoreError> {
        self.conn
            .query_row(
                "SELECT seq, head, state_hash, engine, service FROM ballast_snapshots
                 ORDER BY seq DESC LIMIT 1",
                [],
                |r| {
                    Ok(Snapshot {
                        seq: r.get::<_, i64>(0)? as u64,
                        head: r.get(1)?,
                        state_hash: r.get(2)?,
                        engine: r.get(3)?,
                        service: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(db)
    }
}
