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

    /// The line for the next command (without newline).
    pub fn entry(&mut self, command: &Command) -> String {
        self.seq += 1;
        let line = format!(
            r#"{{"seq":{},"prev":"{}","command":{}}}"#,
            self.seq,
            self.prev,
            command.to_json()
        );
        self.prev = sha256_hex(line.as_bytes());
        line
    }
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
        let mut value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {n}: {e}"))?;
        let object = value
            .as_object_mut()
            .ok_or(format!("line {n}: not a JSON object"))?;
        let seq = object
            .get("seq")
            .and_then(|v| v.as_u64())
            .ok_or(format!("line {n}: missing seq"))?;
        if seq != commands.len() as u64 + 1 {
            return Err(format!(
                "line {n}: seq {seq}, expected {}",
                commands.len() + 1
            ));
        }
        let entry_prev = object
            .get("prev")
            .and_then(|v| v.as_str())
            .ok_or(format!("line {n}: missing prev"))?;
        if entry_prev != prev {
            return Err(format!(
                "line {n}: hash chain broken (prev does not match line {})",
                n - 1
            ));
        }
        let command = object
            .remove("command")
            .ok_or(format!("line {n}: missing command"))?;
        let command =
            Command::from_json(&command.to_string()).map_err(|e| format!("line {n}: {e}"))?;
        commands.push(command);
        prev = sha256_hex(line.as_bytes());
    }
    Ok(DecodedLog {
        header,
        commands,
        head: prev,
    })
}
