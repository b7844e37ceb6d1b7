//! `ballast run` and `ballast replay`: feed commands to a fresh engine and print what happened as JSON Lines.
//!
//! `run` parses the whole commands file before it applies anything, so a file with one bad line changes nothing
//! and prints no events. Each applied command prints one line per event, the event's own JSON with `"seq": N`
//! (the 1-based command number) after its `"type"`; a rejected command prints one `{"type":"rejection",...}` line
//! and the run goes on (a rejection changes nothing). `docs/commands.md` documents every shape.

use crate::{load_config, read_text, Failure, ReplayArgs, RunArgs};
use ballast_engine::log::{decode_log, sha256_hex, LogEncoder, LogHeader, LOG_FORMAT, LOG_VERSION};
use ballast_engine::{Command, Engine, Event, Rejection};
use ballast_service::summary::{Summary, Tally};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

pub fn run(args: &RunArgs) -> Result<(), Failure> {
    let loaded = load_config(&args.config)?;
    let text = read_text(&args.commands, "commands file")?;
    let commands = parse_commands(&args.commands.display().to_string(), &text)?;
    let genesis_s = args
        .genesis
        .unwrap_or_else(|| commands.first().map_or(0, |c| c.timestamp));
    let mut log = match &args.log {
        None => None,
        Some(path) => {
            let header = LogHeader {
                format: LOG_FORMAT.to_string(),
                version: LOG_VERSION,
                config_sha256: sha256_hex(&loaded.bytes),
                genesis: genesis_s,
            };
            Some(LogWriter::create(path, &header)?)
        }
    };
    let mut engine = Engine::new(loaded.config, genesis_s);
    let mut out = Output::stdout();
    let mut tally = Tally::default();
    for (i, command) in commands.iter().enumerate() {
        let seq = i as u64 + 1;
        if let Some(log) = &mut log {
            log.append(command)?;
        }
        tally.commands += 1;
        match engine.apply(command) {
            Ok(events) => {
                tally.applied += 1;
                for event in &events {
                    out.line(&event_line(event, seq)?)?;
                }
            }
            Err(rejection) => {
                tally.rejected += 1;
                out.line(&rejection_line(&rejection, seq)?)?;
            }
        }
    }
    if let Some(log) = log {
        log.finish()?;
    }
    if args.summary {
        out.line(&summary_line(&engine, tally)?)?;
    }
    out.finish()
}

pub fn replay(args: &ReplayArgs) -> Result<(), Failure> {
    let loaded = load_config(&args.config)?;
    let text = read_text(&args.log, "command log")?;
    let log_name = args.log.display();
    let decoded = decode_log(&text).map_err(|e| Failure::input(format!("{log_name}: {e}")))?;
    let (header, commands) = (decoded.header, decoded.commands);
    let config_sha256 = sha256_hex(&loaded.bytes);
    if header.config_sha256 != config_sha256 {
        return Err(Failure::input(format!(
            "{log_name} was written against a different protocol file: its header has config_sha256 {}, \
             {} has {config_sha256}",
            header.config_sha256,
            args.config.display()
        )));
    }
    let mut engine = Engine::new(loaded.config, header.genesis);
    let mut tally = Tally::default();
    for command in &commands {
        tally.commands += 1;
        match engine.apply(command) {
            Ok(_) => tally.applied += 1,
            Err(_) => tally.rejected += 1,
        }
    }
    let mut out = Output::stdout();
    out.line(&to_json(&Replayed {
        kind: "replayed",
        commands: tally.commands,
        log_head: decoded.head,
        state_hash: engine.state_hash(),
    })?)?;
    if args.summary {
        out.line(&summary_line(&engine, tally)?)?;
    }
    out.finish()
}

/// Parses every command line; on failure returns every bad line as `FILE line N: <error>`.
pub fn parse_commands(file_name: &str, text: &str) -> Result<Vec<Command>, Failure> {
    let mut commands = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match Command::from_json(trimmed) {
            Ok(command) => commands.push(command),
            Err(e) => errors.push(format!("{file_name} line {}: {e}", i + 1)),
        }
    }
    if errors.is_empty() {
        Ok(commands)
    } else {
        Err(Failure::Input(errors))
    }
}

/// An event's JSON with `"seq": N` inserted right after its `"type"` tag.
///
/// Serde writes an internally tagged enum's tag first (`{"type":"deposited",...}`) and the tags are snake_case
/// words, so splicing after the tag keeps the event's own field order (a `serde_json::Value` would sort the keys).
pub fn event_line(event: &Event, seq: u64) -> Result<String, Failure> {
    const TAG_PREFIX: &str = "{\"type\":\"";
    let json = to_json(event)?;
    let tag_end = json
        .strip_prefix(TAG_PREFIX)
        .and_then(|rest| rest.find('"'))
        .map(|end| TAG_PREFIX.len() + end + 1)
        .ok_or_else(|| {
            Failure::internal(format!("event JSON does not start with its type: {json}"))
        })?;
    let (head, tail) = json.split_at(tag_end);
    Ok(format!("{head},\"seq\":{seq}{tail}"))
}

#[derive(Serialize)]
struct RejectionLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    code: &'a str,
    message: &'a str,
}

pub fn rejection_line(rejection: &Rejection, seq: u64) -> Result<String, Failure> {
    to_json(&RejectionLine {
        kind: "rejection",
        seq,
        code: rejection.code,
        message: &rejection.message,
    })
}

#[derive(Serialize)]
struct Replayed {
    #[serde(rename = "type")]
    kind: &'static str,
    commands: u64,
    /// SHA-256 of the log's last line; compare with a head kept elsewhere to detect a cut or edited tail.
    log_head: String,
    state_hash: String,
}

fn summary_line(engine: &Engine, tally: Tally) -> Result<String, Failure> {
    let summary = Summary::build(engine, tally)
        .map_err(|e| Failure::internal(format!("cannot build the summary: {e}")))?;
    to_json(&summary)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::internal(format!("cannot encode JSON: {e}")))
}

/// Buffered stdout that stops writing, without failing, once the reader has gone (`ballast run ... | head`): the
/// run still completes, so a `--log` is still whole.
struct Output {
    writer: BufWriter<std::io::Stdout>,
    closed: bool,
}

impl Output {
    fn stdout() -> Output {
        Output {
            writer: BufWriter::new(std::io::stdout()),
            closed: false,
        }
    }

    fn line(&mut self, line: &str) -> Result<(), Failure> {
        if self.closed {
            return Ok(());
        }
        let result = self
            .writer
            .write_all(line.as_bytes())
            .and_then(|()| self.writer.write_all(b"\n"));
        self.check(result)
    }

    fn finish(mut self) -> Result<(), Failure> {
        if self.closed {
            return Ok(());
        }
        let result = self.writer.flush();
        self.check(result)
    }

    fn check(&mut self, result: std::io::Result<()>) -> Result<(), Failure> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Failure::internal(format!("cannot write to stdout: {e}"))),
        }
    }
}

/// The command log being written, through a buffer flushed at the end.
struct LogWriter {
    path: String,
    writer: BufWriter<File>,
    encoder: LogEncoder,
}

impl LogWriter {
    fn create(path: &Path, header: &LogHeader) -> Result<LogWriter, Failure> {
        let name = path.display().to_string();
        let file = File::create(path)
            .map_err(|e| Failure::input(format!("cannot create log file {name}: {e}")))?;
        let (encoder, header_line) = LogEncoder::start(header);
        let mut log = LogWriter {
            path: name,
            writer: BufWriter::new(file),
            encoder,
        };
        log.write_line(&header_line)?;
        Ok(log)
    }

    fn append(&mut self, command: &Command) -> Result<(), Failure> {
        let line = self.encoder.entry(command);
        self.write_line(&line)
    }

    fn write_line(&mut self, line: &str) -> Result<(), Failure> {
        self.writer
            .write_all(line.as_bytes())
            .and_then(|()| self.writer.write_all(b"\n"))
            .map_err(|e| Failure::internal(format!("cannot write log file {}: {e}", self.path)))
    }

    fn finish(mut self) -> Result<(), Failure> {
        self.writer
            .flush()
            .and_then(|()| self.writer.get_ref().sync_all())
            .map_err(|e| Failure::internal(format!("cannot write log file {}: {e}", self.path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_follows_the_type_tag() {
        let event = Event::AccountCreated { owner: 7 };
        assert_eq!(
            event_line(&event, 3).unwrap(),
            r#"{"type":"account_created","seq":3,"owner":7}"#
        );
    }

    #[test]
    fn rejection_line_shape() {
        let r = Rejection::new("unknown_owner", "owner 9 does not exist");
        assert_eq!(
            rejection_line(&r, 12).unwrap(),
            r#"{"type":"rejection","seq":12,"code":"unknown_owner","message":"owner 9 does not exist"}"#
        );
    }

    #[test]
    fn parse_skips_blanks_and_comments_and_reports_every_bad_line() {
        let text = "# header\n\n{\"timestamp\":1,\"type\":\"create_account\",\"owner\":1}\nnot json\n   \n{\"timestamp\":2}\n";
        match parse_commands("c.jsonl", text) {
            Err(Failure::Input(lines)) => {
                assert_eq!(lines.len(), 2, "{lines:?}");
                assert!(lines[0].starts_with("c.jsonl line 4: "), "{lines:?}");
                assert!(lines[1].starts_with("c.jsonl line 6: "), "{lines:?}");
            }
            other => panic!("expected input errors, got {other:?}"),
        }
        let ok = parse_commands(
            "c.jsonl",
            "# only\n{\"timestamp\":1,\"type\":\"create_account\",\"owner\":1}\n",
        );
        assert_eq!(ok.unwrap().len(), 1);
    }
}
