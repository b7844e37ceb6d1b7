//! `ballast-risk`: Ballast's risk analytics, in `f64`.
//!
//! Architecture invariant: this crate computes, it never mutates engine state. It does not depend on
//! `ballast-engine`; numbers enter as plain `f64` arguments and leave as `f64` results or typed errors. Floats are
//! allowed here and only here (and in the simulator's statistics): the engine's money path stays fixed point, and a
//! float result crosses into it only at one boundary with an explicit rounding rule.
//!
//! Bad input never panics: every public function validates its arguments and returns an error that names the
//! argument and the rule it broke.
//!
//! Modules:
//! - [`options`]: European options under Black-Scholes (with a continuous dividend or staking yield) and Black-76:
//!   price, delta, gamma, vega, theta, rho, and implied volatility. Conventions in `docs/risk.md`.
//! - [`data`]: price history from OHLCV CSV files (the one module that reads files): gaps kept as data, alignment
//!   on common timestamps, simple and log returns over contiguous samples.
//! - [`var`]: Value at Risk and Expected Shortfall of a loss distribution: historical (type 7 quantile), normal,
//!   Student-t (fitted by maximum likelihood), Cornish-Fisher, and ([`var::monte_carlo`]) Monte Carlo with correlated
//!   normal shocks.
//! - [`vol`]: EWMA and GARCH(1,1) volatility, fitted and forecast at any horizon.
//! - [`portfolio`]: portfolio returns on common timestamps, horizons, and a VaR/ES forecast by any method (filtered
//!   historical simulation included).
//! - [`backtest`]: rolling VaR forecasts against realised losses; Kupiec, Christoffersen and the Basel traffic light.
//! - [`random`]: the seeded ChaCha stream and ziggurat normals, reproducible bit for bit on any machine.
//! - [`calibrate`]: recommended collateral weights, margin ratios, size premia and open-interest caps from horizon
//!   ES and a square-root liquidity model.

#![forbid(unsafe_code)]

pub mod backtest;
pub mod calibrate;
pub mod data;
mod optimize;
pub mod options;
pub mod portfolio;
pub mod random;
pub mod var;
pub mod vol;

pub use options::{
    normal_cdf, normal_pdf, EuropeanOption, Greeks, Model, OptionError, OptionInputs, OptionKind,
};
