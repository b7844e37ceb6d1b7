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
//! - [`var`]: Value at Risk and Expected Shortfall, historical (type 7 quantile) and parametric normal.
//! - [`calibrate`]: recommended collateral weights, margin ratios, size premia and open-interest caps from horizon
//!   ES and a square-root liquidity model.

#![forbid(unsafe_code)]

pub mod calibrate;
pub mod data;
pub mod options;
pub mod var;

pub use options::{
    normal_cdf, normal_pdf, EuropeanOption, Greeks, Model, OptionError, OptionInputs, OptionKind,
};
