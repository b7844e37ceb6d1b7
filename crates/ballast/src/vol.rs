//! `ballast vol fit`: an EWMA or GARCH(1,1) volatility fitted to one price file, with the one-day-ahead forecast.
//!
//! ```text
//! ballast vol fit --model ewma|garch --data FILE [--from DATE] [--to DATE] [--returns simple|log]
//!     [--lambda L] [--json]
//! ```
//!
//! A contract other tools script (documented in `docs/risk.md`). With `--json`, one line:
//! - garch: `{"omega","alpha","beta","loglik","forecast_vol","n_observations"}`, omega in (decimal return)² per bar;
//! - ewma: `{"lambda","sigma","forecast_vol","n_observations"}`, sigma the volatility forecast for the next bar
//!   (decimal return per bar).
//!
//! `forecast_vol` is the volatility of the return over the next **day** (decimal): the square root of the sum of the
//! variance forecasts of the day's bars (one bar for daily files, 24 for hourly ones). Errors exit 2 with one line,
//! `error: vol fit: ...`, naming the flag.

use std::path::PathBuf;

use crate::var::{days_to_bars, load_files, percent, print_json, return_matrix, ReturnsArg};
use crate::Failure;
use ballast_risk::vol::{ewma, fit_garch, VolError, EWMA_LAMBDA_RISKMETRICS};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct VolArgs {
    #[command(subcommand)]
    command: VolCommand,
}

#[derive(Debug, Subcommand)]
enum VolCommand {
    /// Fit EWMA or GARCH(1,1) to a file's returns and forecast the next day's volatility.
    Fit(FitArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModelArg {
    /// Exponentially weighted moving average (RiskMetrics), decay --lambda.
    Ewma,
    /// GARCH(1,1) with normal errors, fitted by maximum likelihood.
    Garch,
}

#[derive(Debug, Args)]
struct FitArgs {
    /// Volatility model.
    #[arg(long, value_enum)]
    model: ModelArg,
    /// The price file (OHLCV CSV).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// First day of the window, YYYY-MM-DD (UTC, inclusive); default: the start of the data.
    #[arg(long, value_name = "DATE")]
    from: Option<String>,
    /// Last day of the window, YYYY-MM-DD (UTC, inclusive); default: the end of the data.
    #[arg(long, value_name = "DATE")]
    to: Option<String>,
    /// Return kind the model is fitted to.
    #[arg(long, value_enum, default_value = "log")]
    returns: ReturnsArg,
    /// EWMA decay factor, strictly between 0 and 1 (default 0.94, RiskMetrics); ewma only.
    #[arg(long, value_name = "L", allow_negative_numbers = true)]
    lambda: Option<f64>,
    /// Print one JSON object instead of readable lines.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct GarchJson {
    omega: f64,
    alpha: f64,
    beta: f64,
    loglik: f64,
    forecast_vol: f64,
    n_observations: usize,
}

#[derive(Serialize)]
struct EwmaJson {
    lambda: f64,
    sigma: f64,
    forecast_vol: f64,
    n_observations: usize,
}

pub fn vol(args: &VolArgs) -> Result<(), Failure> {
    match &args.command {
        VolCommand::Fit(fit_args) => fit(fit_args),
    }
}

fn vol_failure(error: VolError) -> Failure {
    match error {
        VolError::Parameter { name: "lambda", .. } => Failure::input(format!("vol fit: --{error}")),
        VolError::ObservationCount { n, min } => Failure::input(format!(
            "vol fit: --from/--to: the window holds {n} returns; the model needs at least {min}"
        )),
        other => Failure::input(format!("vol fit: {other}")),
    }
}

fn fit(args: &FitArgs) -> Result<(), Failure> {
    const COMMAND: &str = "vol fit";
    if let (ModelArg::Garch, Some(_)) = (args.model, args.lambda) {
        return Err(Failure::input(
            "vol fit: --lambda applies only to --model ewma",
        ));
    }
    let series = load_files(COMMAND, std::slice::from_ref(&args.data))?;
    let matrix = return_matrix(
        COMMAND,
        &series,
        args.from.as_deref(),
        args.to.as_deref(),
        args.returns.kind(),
    )?;
    let returns = matrix.values();
    let bars_per_day = days_to_bars(COMMAND, "forecast horizon", 1, matrix.interval_s())?;
    match args.model {
        ModelArg::Ewma => {
            let lambda = args.lambda.unwrap_or(EWMA_LAMBDA_RISKMETRICS);
            let fit = ewma(returns, lambda).map_err(vol_failure)?;
            let forecast_vol = fit.horizon_variance(bars_per_day).sqrt();
            if args.json {
                return print_json(
                    COMMAND,
                    &EwmaJson {
                        lambda,
                        sigma: fit.next_vol(),
                        forecast_vol,
                        n_observations: fit.n_observations,
                    },
                );
            }
            println!(
                "EWMA (lambda {lambda}) of {} returns: next-bar vol {} per {}-second bar",
                fit.n_observations,
                percent(fit.next_vol()),
                matrix.interval_s()
            );
            println!("one-day-ahead vol {}", percent(forecast_vol));
        }
        ModelArg::Garch => {
            let fit = fit_garch(returns).map_err(vol_failure)?;
            let forecast_vol = fit.horizon_variance(bars_per_day).sqrt();
            let m = fit.model;
            if args.json {
                return print_json(
                    COMMAND,
                    &GarchJson {
                        omega: m.omega,
                        alpha: m.alpha,
                        beta: m.beta,
                        loglik: fit.log_likelihood,
                        forecast_vol,
                        n_observations: fit.n_observations,
                    },
                );
            }
            println!(
                "GARCH(1,1) of {} returns: omega {:.6e}, alpha {:.4}, beta {:.4} (persistence {:.4}), log-likelihood \
                 {:.2}",
                fit.n_observations,
                m.omega,
                m.alpha,
                m.beta,
                m.persistence(),
                fit.log_likelihood
            );
            let unconditional = if m.persistence() > 0.9999 {
                "none (persistence at its bound 1: an integrated fit, shocks to the variance do not decay)".to_string()
            } else {
                format!(
                    "{} per {}-second bar",
                    percent(m.unconditional_variance().sqrt()),
                    matrix.interval_s()
                )
            };
            println!(
                "unconditional vol {unconditional}; next-bar vol {}; one-day-ahead vol {}",
                percent(fit.next_variance.sqrt()),
                percent(forecast_vol)
            );
        }
    }
    Ok(())
}
