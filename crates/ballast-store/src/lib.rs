//! Ballast's durable command log and its snapshots: an embedded SQLite database in a data directory by default, or
//! a PostgreSQL database given by a connection URL.
//!
//! The store keeps the service's command log exactly as `ballast run --log` writes it (`ballast_engine::log`): one
//! header line, then one hash-chained JSON line per command, each stored as the bytes that were chained, so a log
//! read back from the store decodes and replays with `ballast replay`. It knows nothing of what a line means: the
//! service checks the chain and replays. [`Store::append`] writes a batch of lines in one transaction and returns
//! only once the database has made it durable (SQLite in WAL mode with `synchronous=FULL`; PostgreSQL with its
//! default `synchronous_commit=on`), so the caller acknowledges commands only after `append` returns, and batches
//! them (group commit) so that one fsync covers many commands.
//!
//! # Storage format, version 1
//!
//! Three tables, the same in both databases (SQLite types; PostgreSQL uses `BIGINT` for `INTEGER` and `BYTEA` for
//! `BLOB`):
//!
//! | table | column | meaning |
//! |---|---|---|
//! | `ballast_meta` | `key TEXT PRIMARY KEY`, `value TEXT` | `format` = `ballast-store`, `version` = `1`, `header` = the log's header line (`{"format":"ballast-command-log","version":1,"config_sha256":...,"genesis":...}`) |
//! | `ballast_log` | `seq INTEGER PRIMARY KEY` | the entry's sequence number, from 1 without gaps |
//! | | `line TEXT NOT NULL` | the log line, byte for byte (`{"seq":N,"prev":"<hex>","command":{...}}` and any further fields the writer adds) |
//! | `ballast_snapshots` | `seq INTEGER PRIMARY KEY` | the last log entry the snapshot includes (0: none) |
//! | | `head TEXT` | SHA-256 (hex) of that entry's line: the chain head the replay continues from |
//! | | `state_hash TEXT` | the engine's state hash at `seq` |
//! | | `engine BLOB` | `Engine::snapshot()` bytes |
//! | | `service BLOB` | the service's own state at `seq` (its keys and nonces), as the service encodes it |
//!
//! Only the newest [`SNAPSHOTS_KEPT`] snapshots are kept. A store whose `format` or `version` differs is refused, as
//! is a store opened with another protocol file than the one its header names (by SHA-256): its log would not
//! replay to the same state. The version changes whenever a table or column changes meaning.

use ballast_engine::log::{LogHeader, LOG_FORMAT, LOG_VERSION};
use std::fmt;
use std::path::{Path, PathBuf};

mod postgres_backend;
mod sqlite_backend;

pub const STORE_FORMAT: &str = "ballast-store";
pub const STORE_VERSION: u32 = 1;
/// Snapshots kept; older ones are deleted when a new one is stored.
pub const SNAPSHOTS_KEPT: usize = 2;
/// The SQLite database file inside a data directory.
pub const SQLITE_FILE: &str = "ballast.sqlite3";
/// Most entries [`Store::read`] returns at once.
pub const MAX_READ: usize = 100_000;

/// Why the store refused or failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The database could not be opened, created or reached.
    Open(String),
    /// The database holds something else: another format or version, another protocol file, a corrupt entry.
    Mismatch(String),
    /// A call broke the store's rules (a gap in sequence numbers, ...).
    Usage(String),
    /// The database failed a read or write.
    Database(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open(m) => write!(f, "cannot open the store: {m}"),
            StoreError::Mismatch(m) => write!(f, "store mismatch: {m}"),
            StoreError::Usage(m) => write!(f, "store misuse: {m}"),
            StoreError::Database(m) => write!(f, "store error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// One log line and its sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub line: String,
}

/// The engine and service state after log entry `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub seq: u64,
    pub head: String,
    pub state_hash: String,
    pub engine: Vec<u8>,
    pub service: Vec<u8>,
}

/// Where the store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A data directory holding [`SQLITE_FILE`], created on first start.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user:password@host:port/database`).
    Postgres(String),
}

impl Location {
    /// A `postgres://` or `postgresql://` URL is PostgreSQL; anything else a data directory.
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_string())
        } else {
            Location::Sqlite(PathBuf::from(text))
        }
    }

    /// For messages: the directory, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(dir) => dir.join(SQLITE_FILE).display().to_string(),
            Location::Postgres(url) => redact_password(url),
        }
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// What a database must do for the store; both backends keep the same tables (module docs).
pub(crate) trait Backend: Send {
    /// Creates the tables if missing; returns the stored meta rows (format, version, header), if any.
    fn init(&mut self) -> Result<Option<(String, String, String)>, StoreError>;
    fn write_meta(&mut self, format: &str, version: &str, header: &str) -> Result<(), StoreError>;
    fn last_seq(&mut self) -> Result<u64, StoreError>;
    fn log_bytes(&mut self) -> Result<u64, StoreError>;
    /// Inserts the entries in one durable transaction.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError>;
    fn read(&mut self, after: u64, limit: usize) -> Result<Vec<Entry>, StoreError>;
    /// Stores a snapshot and deletes all but the newest `keep`, in one transaction.
    fn put_snapshot(&mut self, snapshot: &Snapshot, keep: usize) -> Result<(), StoreError>;
    fn latest_snapshot(&mut self) -> Result<Option<Snapshot>, StoreError>;
}

/// An open store: its log header, and the backend.
pub struct Store {
    backend: Box<dyn Backend>,
    location: Location,
    header: LogHeader,
    header_line: String,
    last_seq: u64,
    log_bytes: u64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location.describe())
            .field("header", &self.header)
            .field("last_seq", &self.last_seq)
            .finish()
    }
}

impl Store {
    /// Opens the store at `location` for the protocol file whose bytes hash to `config_sha256`. A new store is
    /// created with a header naming that file and `genesis_if_new` (seconds); an existing one must name the same
    /// file, and keeps its own genesis.
    pub fn open(
        location: &Location,
        config_sha256: &str,
        genesis_if_new: u64,
    ) -> Result<Store, StoreError> {
        let mut backend: Box<dyn Backend> = match location {
            Location::Sqlite(dir) => Box::new(sqlite_backend::Sqlite::open(dir)?),
            Location::Postgres(url) => Box::new(postgres_backend::Postgres::open(url)?),
        };
        let where_ = location.describe();
        let header_line = match backend.init()? {
            None => {
                let header = LogHeader {
                    format: LOG_FORMAT.to_string(),
                    version: LOG_VERSION,
                    config_sha256: config_sha256.to_string(),
                    genesis: genesis_if_new,
                };
                let line = serde_json::to_string(&header).expect("serializable");
                backend.write_meta(STORE_FORMAT, &STORE_VERSION.to_string(), &line)?;
                line
            }
            Some((format, version, line)) => {
                if format != STORE_FORMAT || version != STORE_VERSION.to_string() {
                    return Err(StoreError::Mismatch(format!(
                        "{where_} holds format {format} version {version}, not {STORE_FORMAT} version {STORE_VERSION}"
                    )));
                }
                line
            }
        };
        let header: LogHeader = serde_json::from_str(&header_line).map_err(|e| {
            StoreError::Mismatch(format!("{where_}: bad log header {header_line:?}: {e}"))
        })?;
        if header.config_sha256 != config_sha256 {
            return Err(StoreError::Mismatch(format!(
                "{where_} was written with the protocol file of SHA-256 {}, not this one ({config_sha256}): its log would \
                 not replay to the same state; use that file or another data location",
                header.config_sha256
            )));
        }
        let last_seq = backend.last_seq()?;
        let log_bytes = backend.log_bytes()?;
        Ok(Store {
            backend,
            location: location.clone(),
            header,
            header_line,
            last_seq,
            log_bytes,
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn header(&self) -> &LogHeader {
        &self.header
    }

    /// The header line, byte for byte: the first link of the hash chain.
    pub fn header_line(&self) -> &str {
        &self.header_line
    }

    /// The last entry's sequence number (0 when the log is empty).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Bytes of log lines stored (the header and newlines not counted).
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// Appends entries that continue the log without a gap, in one transaction; durable when this returns.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        for (i, entry) in entries.iter().enumerate() {
            let expected = self.last_seq + 1 + i as u64;
            if entry.seq != expected {
                return Err(StoreError::Usage(format!(
                    "entry {i} of the batch has seq {}, expected {expected}",
                    entry.seq
                )));
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        self.backend.append(entries)?;
        self.last_seq += entries.len() as u64;
        self.log_bytes += entries.iter().map(|e| e.line.len() as u64).sum::<u64>();
        Ok(())
    }

    /// Up to `limit` (at most [`MAX_READ`]) entries after `after`, in order.
    pub fn read(&mut self, after: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let entries = self.backend.read(after, limit.min(MAX_READ))?;
        for (i, entry) in entries.iter().enumerate() {
            if entry.seq != after + 1 + i as u64 {
                return Err(StoreError::Mismatch(format!(
                    "{}: log entry {} missing (found {})",
                    self.location.describe(),
                    after + 1 + i as u64,
                    entry.seq
                )));
            }
        }
        Ok(entries)
    }

    /// Stores a snapshot of the state after entry `snapshot.seq` (which must be in the log), keeping the newest
    /// [`SNAPSHOTS_KEPT`].
    pub fn put_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        if snapshot.seq > self.last_seq {
            return Err(StoreError::Usage(format!(
                "snapshot at seq {} is ahead of the log ({})",
                snapshot.seq, self.last_seq
            )));
        }
        self.backend.put_snapshot(snapshot, SNAPSHOTS_KEPT)
    }

    /// The newest snapshot, if any.
    pub fn latest_snapshot(&mut self) -> Result<Option<Snapshot>, StoreError> {
        self.backend.latest_snapshot()
    }
}

/// Creates a data directory if missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        StoreError::Open(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })
}

/// `u64` to the signed 64-bit integer both databases store, refusing what does not fit.
pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Usage(format!("{what} {v} exceeds the database's integer range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_postgres_and_the_rest_directories() {
        assert_eq!(
            Location::parse("postgres://u:p@localhost/db"),
            Location::Postgres("postgres://u:p@localhost/db".into())
        );
        assert_eq!(
            Location::parse("data"),
            Location::Sqlite(PathBuf::from("data"))
        );
        assert_eq!(
            Location::parse("postgresql://u:secret@h:5432/db").describe(),
            "postgresql://u:***@h:5432/db"
        );
        assert_eq!(
            Location::parse("postgres://h/db").describe(),
            "postgres://h/db"
        );
    }
}
