//! `ballast var`: VaR and ES of a portfolio of assets from their price files, by any method of `ballast-risk`.
//!
//! ```text
//! ballast var --data FILE [--data FILE ...] [--weights W1,W2,...] [--from DATE] [--to DATE]
//!     [--returns simple|log] --method historical|normal|student-t|cornish-fisher|monte-carlo|filtered
//!     [--level P] [--horizon-days N] [--seed S] [--paths N] [--json]
//! ```
//!
//! A contract other tools script (documented in `docs/risk.md`): with `--json` it prints one line,
//! `{"var","es","n_observations"}`, VaR and ES as positive fractions of the portfolio's net value. The conventions
//! (weights divided by their sum, the log portfolio return, the window, horizons) are those of
//! `ballast_risk::portfolio` and are written out in `docs/risk.md`.
//!
//! This module also holds the input helpers that `ballast vol fit` and `ballast backtest` share: loading the files,
//! the date window, the weights and the JSON line.
//!
//! Errors (exit 2, one line on stderr, `error: var: ...`) name the flag and the rule broken.

use std::path::PathBuf;

use crate::Failure;
use ballast_risk::data::{date_utc_s, load_csv, PriceSeries, ReturnKind, SECONDS_PER_DAY};
use ballast_risk::portfolio::{forecast, Method, ReturnMatrix, SeriesError, Weights};
use ballast_risk::var::monte_carlo::{MonteCarloConfig, PATHS_DEFAULT, PATHS_MAX};
use ballast_risk::var::VarError;
use ballast_risk::vol::VolError;
use clap::{Args, ValueEnum};
use serde::Serialize;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodArg {
    /// Empirical (type 7) quantile of the observed losses.
    Historical,
    /// Normal with the sample mean and standard deviation.
    Normal,
    /// Student-t with location, scale and degrees of freedom fitted by maximum likelihood.
    StudentT,
    /// Normal quantile corrected for the sample skewness and excess kurtosis.
    CornishFisher,
    /// Simulated correlated normal returns of the assets (--seed, --paths).
    MonteCarlo,
    /// Filtered historical simulation: GARCH(1,1)-standardised returns rescaled to the forecast volatility.
    Filtered,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReturnsArg {
    /// P1/P0 - 1.
    Simple,
    /// ln(P1/P0).
    Log,
}

impl ReturnsArg {
    pub fn kind(self) -> ReturnKind {
        match self {
            ReturnsArg::Simple => ReturnKind::Simple,
            ReturnsArg::Log => ReturnKind::Log,
        }
    }
}

/// The flags `var` and `backtest` share: the portfolio, the window, the method.
#[derive(Debug, Args)]
pub struct PortfolioArgs {
    /// A price file (OHLCV CSV in the formats of docs/risk.md); repeat for each asset of the portfolio.
    #[arg(long = "data", value_name = "FILE", required = true)]
    pub data: Vec<PathBuf>,
    /// One weight per --data file, comma-separated, in file order (default 1 for a single file). Finite; negative
    /// is short. They are divided by their sum, which must be positive: losses are fractions of the net value.
    #[arg(
        long,
        value_name = "W1,W2,...",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    pub weights: Vec<f64>,
    /// First day of the window, YYYY-MM-DD (UTC, inclusive); default: the start of the data.
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last day of the window, YYYY-MM-DD (UTC, inclusive: bars stamped on that day count); default: the end.
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Return kind; the loss is minus the portfolio's return of this kind.
    #[arg(long, value_enum, default_value = "simple")]
    pub returns: ReturnsArg,
    /// VaR method.
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// VaR level, strictly between 0 and 1 (0.99 = the loss exceeded with probability 1 %).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.99,
        allow_negative_numbers = true
    )]
    pub level: f64,
    /// Seed of the Monte Carlo generator (monte-carlo only).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Monte Carlo paths (monte-carlo only; default 100000).
    #[arg(long, value_name = "N")]
    pub paths: Option<usize>,
    /// Print one JSON object instead of readable lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VarArgs {
    #[command(flatten)]
    portfolio: PortfolioArgs,
    /// Horizon in days (default: one bar of the data). Converted to bars: 1 day = 1 daily bar = 24 hourly bars.
    #[arg(long, value_name = "N")]
    horizon_days: Option<u64>,
}

#[derive(Serialize)]
struct VarJson {
    var: f64,
    es: f64,
    n_observations: usize,
}

/// The default Monte Carlo seed.
pub const SEED_DEFAULT: u64 = 0;

/// What the shared flags resolve to.
pub struct Portfolio {
    pub returns: ReturnMatrix,
    pub weights: Weights,
    pub method: Method,
    pub level: f64,
    /// The window as the user gave it, for messages: `2020-01-01..2020-12-31`, `start..end`.
    pub window_text: String,
}

/// `[from, until)` in UTC seconds from the inclusive day flags, or a message naming the flag.
pub fn date_window(
    command: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), Failure> {
    let parse = |flag: &str, text: &str| {
        date_utc_s(text).ok_or_else(|| {
            Failure::input(format!(
                "{command}: --{flag} {text:?} is not a date in the form YYYY-MM-DD"
            ))
        })
    };
    let from_utc_s = from.map(|t| parse("from", t)).transpose()?;
    let to_utc_s = to.map(|t| parse("to", t)).transpose()?;
    if let (Some(f), Some(t), Some(from), Some(to)) = (from_utc_s, to_utc_s, from, to) {
        if f > t {
            return Err(Failure::input(format!(
                "{command}: --from {from} is after --to {to}"
            )));
        }
    }
    Ok((from_utc_s, to_utc_s.map(|t| t + SECONDS_PER_DAY)))
}

/// Loads every file, or names the first that fails.
pub fn load_files(command: &str, paths: &[PathBuf]) -> Result<Vec<PriceSeries>, Failure> {
    paths
        .iter()
        .map(|path| load_csv(path).map_err(|e| Failure::input(format!("{command}: --data {e}"))))
        .collect()
}

/// The one-bar return matrix of the files in the window, with errors naming --data or --from/--to.
pub fn return_matrix(
    command: &str,
    series: &[PriceSeries],
    from: Option<&str>,
    to: Option<&str>,
    kind: ReturnKind,
) -> Result<ReturnMatrix, Failure> {
    let (from_utc_s, until_utc_s) = date_window(command, from, to)?;
    ReturnMatrix::from_series(series, from_utc_s, until_utc_s, kind).map_err(|error| match error {
        SeriesError::Window { n_common } => Failure::input(format!(
            "{command}: --from/--to: the window {} holds {n_common} sample(s) common to every --data file: at least \
             2 are needed",
            window_text(from, to)
        )),
        SeriesError::NoReturns => Failure::input(format!(
            "{command}: --from/--to: no two samples in the window {} are one bar apart: no return to compute",
            window_text(from, to)
        )),
        other => Failure::input(format!("{command}: --data: {other}")),
    })
}

fn window_text(from: Option<&str>, to: Option<&str>) -> String {
    format!("{}..{}", from.unwrap_or("start"), to.unwrap_or("end"))
}

/// Whether a library error says the estimate had too few returns (the window's flags are then to blame).
pub fn too_few_returns(error: &VarError) -> bool {
    matches!(
        error,
        VarError::ObservationCount { .. } | VarError::Volatility(VolError::ObservationCount { .. })
    )
}

/// A library error as a message naming the flag where there is one.
pub fn var_failure(command: &str, error: VarError) -> Failure {
    let message = match &error {
        VarError::LevelOutOfRange { level } => {
            format!("--level {level} must be strictly between 0 and 1")
        }
        VarError::Setting { name, rule } => match *name {
            "weights" => format!("--weights {rule}"),
            "paths" => format!("--paths {rule}"),
            "window" => format!("--window {rule}"),
            "horizon" => format!("--horizon-days: a horizon {rule}"),
            _ => error.to_string(),
        },
        _ => error.to_string(),
    };
    Failure::input(format!("{command}: {message}"))
}

/// Resolves the shared flags: files, window, weights, method and level, each checked with a message naming it.
pub fn portfolio(command: &str, args: &PortfolioArgs) -> Result<Portfolio, Failure> {
    if !(args.level > 0.0 && args.level < 1.0) {
        return Err(Failure::input(format!(
            "{command}: --level {} must be strictly between 0 and 1",
            args.level
        )));
    }
    let raw_weights = match (args.weights.len(), args.data.len()) {
        (0, 1) => vec![1.0],
        (0, n) => {
            return Err(Failure::input(format!(
                "{command}: --weights is required with {n} --data files (one weight per file)"
            )))
        }
        (w, n) if w != n => {
            return Err(Failure::input(format!(
                "{command}: --weights has {w} weight(s) but there are {n} --data file(s): give one per file"
            )))
        }
        _ => args.weights.clone(),
    };
    let weights = Weights::new(&raw_weights).map_err(|e| var_failure(command, e))?;
    let is_monte_carlo = matches!(args.method, MethodArg::MonteCarlo);
    for (flag, given) in [
        ("--seed", args.seed.is_some()),
        ("--paths", args.paths.is_some()),
    ] {
        if given && !is_monte_carlo {
            return Err(Failure::input(format!(
                "{command}: {flag} applies only to --method monte-carlo"
            )));
        }
    }
    let paths = args.paths.unwrap_or(PATHS_DEFAULT);
    if paths == 0 || paths > PATHS_MAX {
        return Err(Failure::input(format!(
            "{command}: --paths {paths} must be between 1 and {PATHS_MAX}"
        )));
    }
    let method = match args.method {
        MethodArg::Historical => Method::Historical,
        MethodArg::Normal => Method::Normal,
        MethodArg::StudentT => Method::StudentT,
        MethodArg::CornishFisher => Method::CornishFisher,
        MethodArg::MonteCarlo => Method::MonteCarlo(MonteCarloConfig {
            paths,
            seed: args.seed.unwrap_or(SEED_DEFAULT),
            stream: 0,
        }),
        MethodArg::Filtered => Method::Filtered,
    };
    let series = load_files(command, &args.data)?;
    let returns = return_matrix(
        command,
        &series,
        args.from.as_deref(),
        args.to.as_deref(),
        args.returns.kind(),
    )?;
    Ok(Portfolio {
        returns,
        weights,
        method,
        level: args.level,
        window_text: window_text(args.from.as_deref(), args.to.as_deref()),
    })
}

/// Bars in `days` days for a bar interval of `interval_s` seconds, or a message naming `flag`.
pub fn days_to_bars(
    command: &str,
    flag: &str,
    days: u64,
    interval_s: i64,
) -> Result<usize, Failure> {
    let span_s = i64::try_from(days)
        .ok()
        .and_then(|d| d.checked_mul(SECONDS_PER_DAY));
    match span_s {
        Some(span_s) if span_s > 0 && span_s % interval_s == 0 => Ok((span_s / interval_s) as usize),
        _ => Err(Failure::input(format!(
            "{command}: {flag} {days}: must be a positive whole number of days that is a whole number of the data's \
             {interval_s}-second bars"
        ))),
    }
}

pub fn print_json(command: &str, value: &impl Serialize) -> Result<(), Failure> {
    let line = serde_json::to_string(value)
        .map_err(|e| Failure::internal(format!("{command}: cannot write JSON: {e}")))?;
    println!("{line}");
    Ok(())
}

/// A fraction as a percentage with two decimals.
pub fn percent(fraction: f64) -> String {
    format!("{:.2} %", fraction * 100.0)
}

pub fn var(args: &VarArgs) -> Result<(), Failure> {
    let p = portfolio("var", &args.portfolio)?;
    let interval_s = p.returns.interval_s();
    let horizon_bars = match args.horizon_days {
        Some(days) => days_to_bars("var", "--horizon-days", days, interval_s)?,
        None => 1,
    };
    let f = forecast(
        p.returns.window(0..p.returns.len()),
        &p.weights,
        &p.method,
        p.level,
        horizon_bars,
    )
    .map_err(|e| {
        if too_few_returns(&e) {
            Failure::input(format!(
                "var: --from/--to: the window {} holds {} returns, too few for --method {}: {e}",
                p.window_text,
                p.returns.len(),
                p.method.name()
            ))
        } else {
            var_failure("var", e)
        }
    })?;
    if args.portfolio.json {
        return print_json(
            "var",
            &VarJson {
                var: f.var,
                es: f.es,
                n_observations: f.n_observations,
            },
        );
    }
    let horizon = match args.horizon_days {
        Some(days) => format!("{days}-day ({horizon_bars} bars of {interval_s} s)"),
        None => format!("one-bar ({interval_s} s)"),
    };
    let returns = match args.portfolio.returns {
        ReturnsArg::Simple => "simple",
        ReturnsArg::Log => "log",
    };
    println!(
        "{} {horizon} VaR at {}: {} of net value, ES {}",
        p.method.name(),
        args.portfolio.level,
        percent(f.var),
        percent(f.es)
    );
    println!(
        "from {} {returns} returns in {} ({} bars)",
        f.n_observations,
        p.window_text,
        p.returns.len()
    );
    Ok(())
}
