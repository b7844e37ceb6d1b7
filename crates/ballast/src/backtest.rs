//! `ballast backtest`: a rolling one-bar VaR backtest of a portfolio, with Kupiec, Christoffersen and the Basel
//! traffic light.
//!
//! ```text
//! ballast backtest --data FILE [--data FILE ... --weights W1,W2,...] --method METHOD [--level P] --window N
//!     [--from DATE] [--to DATE] [--returns simple|log] [--seed S] [--paths N] [--json]
//! ```
//!
//! A contract other tools script (documented in `docs/risk.md`). With `--json`, one line:
//! `{"n_forecasts","breaches","expected_breaches","kupiec_lr","kupiec_p","christoffersen_lr","christoffersen_p",
//! "conditional_coverage_lr","conditional_coverage_p","zone"}`, `zone` one of `green`, `yellow`, `red`. The method
//! and statistics are those of `ballast_risk::backtest`. Errors exit 2 with one line, `error: backtest: ...`, naming
//! the flag.

use crate::var::{percent, portfolio, print_json, too_few_returns, var_failure, PortfolioArgs};
use crate::Failure;
use ballast_risk::backtest::rolling;
use clap::Args;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct BacktestArgs {
    #[command(flatten)]
    portfolio: PortfolioArgs,
    /// Returns in each rolling estimation window (the forecast for bar t uses the N returns before it).
    #[arg(long, value_name = "N")]
    window: usize,
}

#[derive(Serialize)]
struct BacktestJson {
    n_forecasts: usize,
    breaches: usize,
    expected_breaches: f64,
    kupiec_lr: f64,
    kupiec_p: f64,
    christoffersen_lr: f64,
    christoffersen_p: f64,
    conditional_coverage_lr: f64,
    conditional_coverage_p: f64,
    zone: &'static str,
}

pub fn backtest(args: &BacktestArgs) -> Result<(), Failure> {
    const COMMAND: &str = "backtest";
    let p = portfolio(COMMAND, &args.portfolio)?;
    let n_returns = p.returns.len();
    if args.window == 0 || args.window >= n_returns {
        return Err(Failure::input(format!(
            "backtest: --window {} must be at least 1 and less than the {n_returns} returns in the window {}",
            args.window, p.window_text
        )));
    }
    let report = rolling(&p.returns, &p.weights, &p.method, p.level, args.window).map_err(|e| {
        if too_few_returns(&e) {
            Failure::input(format!(
                "backtest: --window {} is too small for --method {}: {e}",
                args.window,
                p.method.name()
            ))
        } else {
            var_failure(COMMAND, e)
        }
    })?;
    let s = report.statistics;
    if args.portfolio.json {
        return print_json(
            COMMAND,
            &BacktestJson {
                n_forecasts: s.n_forecasts,
                breaches: s.breaches,
                expected_breaches: s.expected_breaches,
                kupiec_lr: s.kupiec_lr,
                kupiec_p: s.kupiec_p,
                christoffersen_lr: s.christoffersen_lr,
                christoffersen_p: s.christoffersen_p,
                conditional_coverage_lr: s.conditional_coverage_lr,
                conditional_coverage_p: s.conditional_coverage_p,
                zone: s.zone.name(),
            },
        );
    }
    println!(
        "{} VaR at {} over {} one-bar forecasts (window {}): {} breaches, {:.2} expected ({} vs {}); zone {}",
        p.method.name(),
        p.level,
        s.n_forecasts,
        args.window,
        s.breaches,
        s.expected_breaches,
        percent(s.breaches as f64 / s.n_forecasts as f64),
        percent(1.0 - p.level),
        s.zone
    );
    println!(
        "Kupiec LR {:.4} (p {:.4}); Christoffersen LR {:.4} (p {:.4}); conditional coverage LR {:.4} (p {:.4})",
        s.kupiec_lr,
        s.kupiec_p,
        s.christoffersen_lr,
        s.christoffersen_p,
        s.conditional_coverage_lr,
        s.conditional_coverage_p
    );
    Ok(())
}
