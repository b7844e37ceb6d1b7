//! The append-only command log format (pure encoding; the caller does the I/O).
//!
//! A log is JSON Lines. The first line is a header, every further line one applied-or-offered command:
//!
//! ```text
//! {"format":"ballast-command-log","version":1,"config_sha256":"<hex>","genesis":1700000000}
//! {"seq":1,"prev":"<hex>","command":{"timestamp":1700000000,"type":"create_account","owner":1}}
//! ```
//!
//! `seq` counts from 1 without gaps. `prev` is the SHA-256 of the previous line's bytes (the header for entry 1),
//! so a log cut, reordered or edited in the middle fails to decode. Rejected commands are logged too: state is
//! `fold(apply, commands)` and a rejection is part of that fold (it changes nothing). The state after replaying a
//! log is identical, hash for hash, to the state that wrote it.

use crate::command::Command;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const LOG_FORMAT: &str = "ballast-command-log";
pub const LOG_VERSION: u32 = 1;

/// The first line of a log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogHeader {
    pub format: String,
    pub version: u32,
    /// SHA-256 of the protocol file's bytes the log was written against.
    pub config_sha256: String,
    /// Engine genesis time, seconds.
    pub genesis: u64,
}

/// SHA-256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes log lines, tracking the sequence and hash chain.
#[derive(Clone, Debug)]
pub struct LogEncoder {
    seq: u64,
    prev: String,
}

impl LogEncoder {
    /// Starts a log; returns the encoder and the header line (without newline).
    pub fn start(header: &LogHeader) -> (LogEncoder, String) {
        let line = serde_json::to_string(header).expect("serializable");
        (
            LogEncoder {
                seq: 0,
                prev: sha256_hex(line.as_bytes()),
            },
            line,
        )
    }

    /// SHA-256 of the last line written: the chain head. Kept outside the log (by the store, or a person), it
    /// detects a log whose last entries were cut or edited, which the chain alone cannot.
    pub fn head(&self) -> &str {
        &self.prev
    }

    /// Continues a log whose last entry is `seq` with chain head `head` (the header's hash when `seq` is 0).
    pub fn resume(seq: u64, head: String) -> LogEncoder {
        LogEncoder { seq, prev: head }
    }

    /// The last entry's sequence number (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The line for the next command (without newline).
    pub fn entry(&mut self, command: &Command) -> String {
        self.entry_with(command, None)
    }

    /// The line for the next command with further fields after `command` (`extra`: JSON members without the
    /// surrounding braces, e.g. `"auth":{...}`), which readers of the log may use and [`decode_log`] ignores.
    pub fn entry_with(&mut self, command: &Command, extra: Option<&str>) -> String {
        self.seq += 1;
        let line = match extra {
            None => format!(
                r#"{{"seq":{},"prev":"{}","command":{}}}"#,
                self.seq,
                self.prev,
                command.to_json()
            ),
            Some(extra) => format!(
                r#"{{"seq":{},"prev":"{}","command":{},{extra}}}"#,
                self.seq,
                self.prev,
                command.to_json()
            ),
        };
        self.prev = sha256_hex(line.as_bytes());
        line
    }
}

/// One decoded log line: its command and the fields beyond `seq`, `prev` and `command`.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedEntry {
    pub command: Command,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Decodes entry `seq` of a log whose previous line hashes to `prev`; the error says what is wrong, without the
/// line number (the caller knows it).
pub fn decode_entry(line: &str, seq: u64, prev: &str) -> Result<DecodedEntry, String> {
    let mut value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let object = value.as_object_mut().ok_or("not a JSON object")?;
    let found = object
        .remove("seq")
        .and_then(|v| v.as_u64())
        .ok_or("missing seq")?;
    if found != seq {
        return Err(format!("seq {found}, expected {seq}"));
    }
    let entry_prev = object.remove("prev").ok_or("missing prev")?;
    if entry_prev.as_str() != Some(prev) {
        return Err("hash chain broken (prev does not match the previous line)".to_string());
    }
    let command = object.remove("command").ok_or("missing command")?;
    let command = Command::from_json(&command.to_string())?;
    Ok(DecodedEntry {
        command,
        extra: std::mem::take(object),
    })
}

/// A decoded log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedLog {
    pub header: LogHeader,
    pub commands: Vec<Command>,
    /// SHA-256 of the last line: compare with a head kept elsewhere to detect a cut or edited tail.
    pub head: String,
}

/// Decodes a whole log: the header, the commands in order and the chain head, or the first problem with its line
/// number.
pub fn decode_log(text: &str) -> Result<DecodedLog, String> {
    let mut lines = text.lines().enumerate();
    let (_, first) = lines.next().ok_or("line 1: empty log, expected a header")?;
    let header: LogHeader =
        serde_json::from_str(first).map_err(|e| format!("line 1: bad header: {e}"))?;
    if header.format != LOG_FORMAT || header.version != LOG_VERSION {
        return Err(format!(
            "line 1: format {} version {} is not {LOG_FORMAT} version {LOG_VERSION}",
            header.format, header.version
        ));
    }
    let mut prev = sha256_hex(first.as_bytes());
    let mut commands = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let entry = decode_entry(line, commands.len() as u64 + 1, &prev).map_err(|e| {
            if e.starts_with("hash chain broken") {
                format!(
                    "line {n}: hash chain broken (prev does not match line {})",
                    n - 1
                )
            } else {
                format!("line {n}: {e}")
            }
        })?;
        commands.push(entry.command);
        prev = sha256_hex(line.as_bytes());
    }
    Ok(DecodedLog {
        header,
        commands,
        head: prev,
    })
}
