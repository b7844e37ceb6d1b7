//! `ballast`: the command-line front of the Ballast engine.
//!
//! ```text
//! ballast check CONFIG
//! ballast run --config CONFIG --commands FILE.jsonl [--summary] [--log OUT.jsonl] [--genesis SECONDS]
//! ballast replay --config CONFIG --log LOG.jsonl [--summary]
//! ballast option price --model black-scholes|black-76 --kind call|put --spot S --strike K --rate R
//!     [--dividend-yield Q] (--vol SIGMA | --price P) --expiry-years T [--json]
//! ballast calibrate CALIBRATION.toml [--json] [--out PATCH.toml] [--apply MERGED.toml] [--level P]
//!     [--horizon-hours H]
//! ballast var --data FILE [--data FILE ... --weights W1,W2,...] [--from DATE] [--to DATE] [--returns simple|log]
//!     --method historical|normal|student-t|cornish-fisher|monte-carlo|filtered [--level P] [--horizon-days N]
//!     [--seed S] [--paths N] [--json]
//! ballast vol fit --model ewma|garch --data FILE [--from DATE] [--to DATE] [--returns simple|log] [--lambda L] [--json]
//! ballast backtest --data FILE [--data FILE ... --weights W1,W2,...] --method METHOD [--level P] --window N
//!     [--from DATE] [--to DATE] [--returns simple|log] [--seed S] [--paths N] [--json]
//! ballast serve --config CONFIG --keys KEYS.toml [--data DIR | --database URL] [--listen ADDR]
//! ```
//!
//! The binary is thin: validation, state transitions and the log format live in `ballast-engine`; this crate reads
//! files, prints results and formats the summary. `docs/commands.md` documents every JSON shape the engine commands
//! print; `docs/risk.md` the analytics (`option price`, `calibrate`, from `ballast-risk`).
//!
//! Exit codes (the ripgrep convention): 0 success (a run whose commands were rejected still succeeds: rejections
//! are results), 2 bad input (unreadable file, invalid protocol file, unparsable command, log that does not match),
//! 1 internal failure (an output file that cannot be written, an engine error that valid input should not cause).
//! An error is one line on stderr starting with `error: `, except the two listings the contract asks for: every
//! protocol file error (`CONFIG: asset SOL: ...`) and every unparsable command line (`FILE line N: ...`), one per
//! line, exactly as the engine words them.

#![forbid(unsafe_code)]

mod backtest;
mod calibrate;
mod check;
mod option;
mod run;
mod serve;
mod var;
mod vol;

use ballast_engine::ProtocolConfig;
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Deterministic capital-allocation and risk engine for derivatives venues.
#[derive(Debug, Parser)]
#[command(name = "ballast", version)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Validate a protocol file and print what it holds (exit 2 and every error if it is invalid).
    Check {
        /// The protocol file (TOML), e.g. examples/protocol.toml.
        config: PathBuf,
    },
    /// Apply a file of commands to a fresh engine and print one JSON line per event or rejection.
    Run(RunArgs),
    /// Re-apply a command log written by `run --log` and print the resulting state hash.
    Replay(ReplayArgs),
    /// European option analytics (f64): `option price` prints the price and Greeks, or the implied volatility.
    Option(option::OptionArgs),
    /// Recommend per-asset weights, size premia, perp margin ratios and open-interest caps from price history and a
    /// liquidity-depth model; print a table explaining each number and a TOML patch of the protocol file.
    Calibrate(calibrate::CalibrateArgs),
    /// Value at Risk and Expected Shortfall of a portfolio from price files (f64 analytics).
    Var(var::VarArgs),
    /// Volatility models: `vol fit` fits EWMA or GARCH(1,1) and forecasts the next day's volatility.
    Vol(vol::VolArgs),
    /// Rolling VaR backtest with Kupiec, Christoffersen and the Basel traffic light.
    Backtest(backtest::BacktestArgs),
    /// Run the live risk service: signed commands over HTTP, a durable log, a WebSocket event stream, metrics and a
    /// dashboard.
    Serve(serve::ServeArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The protocol file (TOML).
    #[arg(long, value_name = "CONFIG")]
    config: PathBuf,
    /// Commands, one JSON object per line; blank lines and lines starting with `#` are skipped.
    #[arg(long, value_name = "FILE.jsonl")]
    commands: PathBuf,
    /// Print a final `{"type":"summary",...}` line with accounts, pools, treasury and the state hash.
    #[arg(long)]
    summary: bool,
    /// Write the command log (every command, applied or rejected) to this file, replacing it.
    #[arg(long, value_name = "OUT.jsonl")]
    log: Option<PathBuf>,
    /// Engine genesis time in seconds (default: the first command's timestamp, or 0 without commands).
    #[arg(long, value_name = "SECONDS")]
    genesis: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The protocol file (TOML) the log was written against.
    #[arg(long, value_name = "CONFIG")]
    config: PathBuf,
    /// A command log written by `ballast run --log`.
    #[arg(long, value_name = "LOG.jsonl")]
    log: PathBuf,
    /// Print a final `{"type":"summary",...}` line after the `replayed` line.
    #[arg(long)]
    summary: bool,
}

/// Why the command failed; decides the exit code and what goes to stderr.
#[derive(Debug)]
pub enum Failure {
    /// Bad input (exit 2). Each line is printed to stderr as is.
    Input(Vec<String>),
    /// Internal failure (exit 1): one line.
    Internal(String),
}

impl Failure {
    /// Bad input, one line (`error: ` is prepended).
    pub fn input(message: impl std::fmt::Display) -> Failure {
        Failure::Input(vec![format!("error: {message}")])
    }

    /// Internal failure, one line (`error: ` is prepended).
    pub fn internal(message: impl std::fmt::Display) -> Failure {
        Failure::Internal(format!("error: {message}"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (lines, code) = match failure {
                Failure::Input(lines) => (lines, 2),
                Failure::Internal(line) => (vec![line], 1),
            };
            let mut stderr = std::io::stderr().lock();
            for line in lines {
                // Nothing better to do if stderr itself is gone.
                let _ = writeln!(stderr, "{line}");
            }
            ExitCode::from(code)
        }
    }
}

fn try_main(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        CliCommand::Check { config } => check::check(&config),
        CliCommand::Run(args) => run::run(&args),
        CliCommand::Replay(args) => run::replay(&args),
        CliCommand::Option(args) => option::option(&args),
        CliCommand::Calibrate(args) => calibrate::calibrate(&args),
        CliCommand::Var(args) => var::var(&args),
        CliCommand::Vol(args) => vol::vol(&args),
        CliCommand::Backtest(args) => backtest::backtest(&args),
        CliCommand::Serve(args) => serve::serve(&args),
    }
}

// ----- input helpers shared by the subcommands ------------------------------------------------------------------

/// The whole file's bytes, or one line naming the path.
pub fn read_bytes(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::input(format!("cannot read {what} {}: {e}", path.display())))
}

/// The whole file as UTF-8 text, or one line naming the path.
pub fn read_text(path: &Path, what: &str) -> Result<String, Failure> {
    let bytes = read_bytes(path, what)?;
    String::from_utf8(bytes)
        .map_err(|e| Failure::input(format!("{what} {} is not UTF-8 text: {e}", path.display())))
}

/// A protocol file, read and validated, with the bytes it was read from (the command log records their hash).
pub struct LoadedConfig {
    pub config: ProtocolConfig,
    pub bytes: Vec<u8>,
}

/// Reads and validates a protocol file; on failure every error, one per line, each prefixed with the path.
pub fn load_config(path: &Path) -> Result<LoadedConfig, Failure> {
    let bytes = read_bytes(path, "protocol file")?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        Failure::input(format!(
            "protocol file {} is not UTF-8 text: {e}",
            path.display()
        ))
    })?;
    let config = ProtocolConfig::from_toml(&path.display().to_string(), text)
        .map_err(|errors| Failure::Input(errors.0))?;
    Ok(LoadedConfig { config, bytes })
}
