//! The PostgreSQL backend: the same tables in the database the URL names. A batch is one multi-row `INSERT` in one
//! transaction; a commit returns once PostgreSQL has flushed it (`synchronous_commit`, on by default; a server
//! configured otherwise loses that guarantee, which the service cannot see).

use crate::{to_i64, Backend, Entry, Snapshot, StoreError};
use postgres::{Client, NoTls};

pub(crate) struct Postgres {
    client: Client,
}

fn db(e: postgres::Error) -> StoreError {
    StoreError::Database(format!("PostgreSQL: {e}"))
}

impl Postgres {
    pub(crate) fn open(url: &str) -> Result<Postgres, StoreError> {
        let client = Client::connect(url, NoTls).map_err(|e| {
            StoreError::Open(format!(
                "{}: {e}",
                crate::Location::Postgres(url.into()).describe()
            ))
        })?;
        Ok(Postgres { client })
    }
}

impl Backend for Postgres {
    fn init(&mut self) -> Result<Option<(String, String, String)>, StoreError> {
        self.client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS ballast_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS ballast_log (seq BIGINT PRIMARY KEY, line TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS ballast_snapshots (
                     seq BIGINT PRIMARY KEY, head TEXT NOT NULL, state_hash TEXT NOT NULL,
                     engine BYTEA NOT NULL, service BYTEA NOT NULL);",
            )
            .map_err(db)?;
        let mut get = |key: &str| -> Result<Option<String>, StoreError> {
            Ok(self
                .client
                .query_opt("SELECT value FROM ballast_meta WHERE key = $1", &[&key])
                .map_err(db)?
                .map(|row| row.get(0)))
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
        let mut tx = self.client.transaction().map_err(db)?;
        for (k, v) in [("format", format), ("version", version), ("header", header)] {
            tx.execute(
                "INSERT INTO ballast_meta (key, value) VALUES ($1, $2)",
                &[&k, &v],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    fn last_seq(&mut self) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .client
            .query_one("SELECT MAX(seq) FROM ballast_log", &[])
            .map_err(db)?
            .get(0);
        Ok(seq.unwrap_or(0) as u64)
    }

    fn log_bytes(&mut self) -> Result<u64, StoreError> {
        let bytes: i64 = self
            .client
            .query_one(
                "SELECT COALESCE(SUM(OCTET_LENGTH(line)), 0)::BIGINT FROM ballast_log",
                &[],
            )
            .map_err(db)?
            .get(0);
        Ok(bytes as u64)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let seqs = entries
            .iter()
            .map(|e| to_i64(e.seq, "seq"))
            .collect::<Result<Vec<i64>, _>>()?;
        let lines: Vec<&str> = entries.iter().map(|e| e.line.as_str()).collect();
        let mut tx = self.client.transaction().map_err(db)?;
        tx.execute(
            "INSERT INTO ballast_log (seq, line) SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[])",
            &[&seqs, &lines],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn read(&mut self, after: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT seq, line FROM ballast_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&to_i64(after, "seq")?, &(limit as i64)],
            )
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| Entry {
                seq: r.get::<_, i64>(0) as u64,
                line: r.get(1),
            })
            .collect())
    }

    fn put_snapshot(&mut self, s: &Snapshot, keep: usize) -> Result<(), StoreError> {
        let mut tx = self.client.transaction().map_err(db)?;
        tx.execute(
            "INSERT INTO ballast_snapshots (seq, head, state_hash, engine, service)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (seq) DO UPDATE SET head = EXCLUDED.head, state_hash = EXCLUDED.state_hash,
                 engine = EXCLUDED.engine, service = EXCLUDED.service",
            &[
                &to_i64(s.seq, "seq")?,
                &s.head,
                &s.state_hash,
                &s.engine,
                &s.service,
            ],
        )
        .map_err(db)?;
        tx.execute(
            "DELETE FROM ballast_snapshots WHERE seq NOT IN
                 (SELECT seq FROM ballast_snapshots ORDER BY seq DESC LIMIT $1)",
            &[&(keep as i64)],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn latest_snapshot(&mut self) -> Result<Option<Snapshot>, StoreError> {
        Ok(self
            .client
            .query_opt(
                "SELECT seq, head, state_hash, engine, service FROM ballast_snapshots
                 ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .map_err(db)?
            .map(|r| Snapshot {
                seq: r.get::<_, i64>(0) as u64,
                head: r.get(1),
                state_hash: r.get(2),
                engine: r.get(3),
                service: r.get(4),
            }))
    }
}
