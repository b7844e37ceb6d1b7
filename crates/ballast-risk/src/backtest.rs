//! VaR backtests: a rolling forecast compared with what happened, and the standard tests of the breaches.
//!
//! **Rolling forecast** ([`rolling`]). With a window of `N` one-bar portfolio returns: for each row `t >= N`, VaR at
//! level `p` is forecast from rows `t - N .. t - 1` (the `N` returns before it) by the chosen method, over one bar, and
//! compared with the realised loss of row `t`. A **breach** is a realised loss strictly greater than the forecast VaR.
//! There are `n = rows - N` forecasts. The Monte Carlo method uses stream `stream + i` of its seed for forecast `i`, so
//! the forecasts' random numbers are independent and the whole backtest is reproducible; the filtered method starts
//! each GARCH fit from the previous one as well as from its grid.
//!
//! With `x` breaches out of `n` and `q = 1 - p` the breach probability a correct model has:
//!
//! **Kupiec's proportion of failures** (unconditional coverage): with `x/n` the observed rate,
//!
//! ```text
//! LR_pof = -2·[ (n - x)·ln(1 - q) + x·ln q - (n - x)·ln(1 - x/n) - x·ln(x/n) ]      ~ chi²(1)
//! ```
//!
//! **Christoffersen's independence test**: `n_ij` counts the forecasts in state `j` (1 = breach) whose predecessor was
//! in state `i` (over the `n - 1` consecutive pairs), `pi_01 = n_01/(n_00 + n_01)`, `pi_11 = n_11/(n_10 + n_11)`,
//! `pi = (n_01 + n_11)/(n - 1)`:
//!
//! ```text
//! LR_ind = -2·[ (n_00 + n_10)·ln(1 - pi) + (n_01 + n_11)·ln pi
//!               - n_00·ln(1 - pi_01) - n_01·ln pi_01 - n_10·ln(1 - pi_11) - n_11·ln pi_11 ]     ~ chi²(1)
//! ```
//!
//! **Conditional coverage**: `LR_cc = LR_pof + LR_ind ~ chi²(2)`. The p-values are the chi-squared survival functions:
//! `P(chi²(1) > x) = erfc(sqrt(x/2))`, `P(chi²(2) > x) = e^(-x/2)`.
//!
//! Every `0·ln 0` is 0 (the limit), so no breaches, all breaches, or a state never visited give finite statistics, never
//! NaN: zero breaches out of 250 at 99 % give `LR_pof = -2·250·ln 0.99 = 5.025` (p = 0.025), and a sequence with no
//! breach, or with no two consecutive forecasts, gives `LR_ind = 0`. A likelihood ratio that rounding makes slightly
//! negative is reported as 0.
//!
//! **Basel traffic light**, generalised to any `n` and level: with `F(x) = P(X <= x)`, `X ~ Binomial(n, q)`, the
//! zone is **green** if `F(x) < 0.95`, **yellow** if `0.95 <= F(x) < 0.9999`, **red** otherwise. For the Basel
//! Committee's case (250 days at 99 %) this gives its table: 0-4 breaches green, 5-9 yellow, 10 or more red.
//! Zero breaches are always green: when `n` is so small that `F(0) = (1 - q)^n >= 0.95` (`n <= 5` at 99 %), the
//! literal rule would call a clean record yellow.
//! `F(x) = I_(1-q)(n - x, x + 1)` (the regularised incomplete beta function, from `statrs`), 1 for `x = n`.

use std::fmt;

use statrs::function::beta::beta_reg;

use crate::portfolio::{forecast_warm, Method, ReturnMatrix, WarmStart, Weights};
use crate::var::monte_carlo::MonteCarloConfig;
use crate::var::VarError;

/// The most forecasts one backtest may make.
pub const FORECASTS_MAX: usize = 10_000_000;

/// The Basel traffic-light zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Green,
    Yellow,
    Red,
}

impl Zone {
    pub fn name(self) -> &'static str {
        match self {
            Zone::Green => "green",
            Zone::Yellow => "yellow",
            Zone::Red => "red",
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tests of one breach sequence (module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BacktestStatistics {
    pub n_forecasts: usize,
    pub breaches: usize,
    /// `n·(1 - level)`.
    pub expected_breaches: f64,
    pub kupiec_lr: f64,
    pub kupiec_p: f64,
    pub christoffersen_lr: f64,
    pub christoffersen_p: f64,
    pub conditional_coverage_lr: f64,
    pub conditional_coverage_p: f64,
    /// `P(X <= breaches)` for `X ~ Binomial(n, 1 - level)`.
    pub binomial_cdf: f64,
    pub zone: Zone,
}

/// `a·ln(b)` with `0·ln(anything) = 0`.
fn x_ln_y(a: f64, b: f64) -> f64 {
    if a == 0.0 {
        0.0
    } else {
        a * b.ln()
    }
}

/// `P(chi²(1) > x)`.
pub fn chi_squared_1_survival(x: f64) -> f64 {
    libm::erfc((x.max(0.0) / 2.0).sqrt())
}

/// `P(chi²(2) > x)`.
pub fn chi_squared_2_survival(x: f64) -> f64 {
    (-x.max(0.0) / 2.0).exp()
}

fn check_level(level: f64) -> Result<(), VarError> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(VarError::LevelOutOfRange { level })
    }
}

/// Kupiec's `LR_pof` for `breaches` out of `n` at VaR level `level` (module docs), and its p-value.
pub fn kupiec(n: usize, breaches: usize, level: f64) -> Result<(f64, f64), VarError> {
    check_level(level)?;
    if n == 0 || breaches > n {
        return Err(VarError::Setting {
            name: "breaches",
            rule: format!("{breaches} out of {n} forecasts: need n >= 1 and breaches <= n"),
        });
    }
    let q = 1.0 - level;
    let (n, x) = (n as f64, breaches as f64);
    let rate = x / n;
    let lr = -2.0
        * (x_ln_y(n - x, 1.0 - q) + x_ln_y(x, q) - x_ln_y(n - x, 1.0 - rate) - x_ln_y(x, rate));
    let lr = lr.max(0.0);
    Ok((lr, chi_squared_1_survival(lr)))
}

/// Christoffersen's `LR_ind` of a breach sequence (module docs), and its p-value.
pub fn christoffersen(breaches: &[bool]) -> (f64, f64) {
    let mut counts = [[0usize; 2]; 2];
    for pair in breaches.windows(2) {
        counts[usize::from(pair[0])][usize::from(pair[1])] += 1;
    }
    let [[n00, n01], [n10, n11]] = counts.map(|row| row.map(|c| c as f64));
    let pairs = n00 + n01 + n10 + n11;
    if pairs == 0.0 {
        return (0.0, 1.0);
    }
    let pi = (n01 + n11) / pairs;
    let pi01 = if n00 + n01 > 0.0 {
        n01 / (n00 + n01)
    } else {
        0.0
    };
    let pi11 = if n10 + n11 > 0.0 {
        n11 / (n10 + n11)
    } else {
        0.0
    };
    let restricted = x_ln_y(n00 + n10, 1.0 - pi) + x_ln_y(n01 + n11, pi);
    let unrestricted =
        x_ln_y(n00, 1.0 - pi01) + x_ln_y(n01, pi01) + x_ln_y(n10, 1.0 - pi11) + x_ln_y(n11, pi11);
    let lr = (-2.0 * (restricted - unrestricted)).max(0.0);
    (lr, chi_squared_1_survival(lr))
}

/// `P(X <= x)` for `X ~ Binomial(n, q)`, `q` in (0, 1).
pub fn binomial_cdf(x: usize, n: usize, q: f64) -> f64 {
    if x >= n {
        1.0
    } else {
        beta_reg((n - x) as f64, x as f64 + 1.0, 1.0 - q)
    }
}

/// The Basel traffic-light zone of `breaches` out of `n` forecasts at VaR level `level` (module docs).
pub fn traffic_light(n: usize, breaches: usize, level: f64) -> Result<(Zone, f64), VarError> {
    check_level(level)?;
    let cdf = binomial_cdf(breaches, n, 1.0 - level);
    let zone = if cdf < 0.95 || breaches == 0 {
        Zone::Green
    } else if cdf < 0.9999 {
        Zone::Yellow
    } else {
        Zone::Red
    };
    Ok((zone, cdf))
}

/// All the tests of a breach sequence at VaR level `level`. At least one forecast.
pub fn evaluate(breaches: &[bool], level: f64) -> Result<BacktestStatistics, VarError> {
    let n = breaches.len();
    let x = breaches.iter().filter(|b| **b).count();
    let (kupiec_lr, kupiec_p) = kupiec(n, x, level)?;
    let (christoffersen_lr, christoffersen_p) = christoffersen(breaches);
    let conditional_coverage_lr = kupiec_lr + christoffersen_lr;
    let (zone, binomial_cdf) = traffic_light(n, x, level)?;
    Ok(BacktestStatistics {
        n_forecasts: n,
        breaches: x,
        expected_breaches: n as f64 * (1.0 - level),
        kupiec_lr,
        kupiec_p,
        christoffersen_lr,
        christoffersen_p,
        conditional_coverage_lr,
        conditional_coverage_p: chi_squared_2_survival(conditional_coverage_lr),
        binomial_cdf,
        zone,
    })
}

/// One forecast of a rolling backtest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollingPoint {
    /// End of the bar whose loss was forecast, UTC seconds.
    pub end_utc_s: i64,
    /// The forecast VaR (positive fraction of net value).
    pub var: f64,
    /// The realised loss of that bar.
    pub loss: f64,
    pub breach: bool,
}

/// A rolling backtest's forecasts and statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestReport {
    pub points: Vec<RollingPoint>,
    pub statistics: BacktestStatistics,
}

/// The rolling backtest of `method` at `level` with a window of `window` rows (module docs). `window` must be less
/// than the number of rows.
pub fn rolling(
    returns: &ReturnMatrix,
    weights: &Weights,
    method: &Method,
    level: f64,
    window: usize,
) -> Result<BacktestReport, VarError> {
    check_level(level)?;
    if window == 0 || window >= returns.len() {
        return Err(VarError::Setting {
            name: "window",
            rule: format!(
                "of {window} returns must be at least 1 and less than the {} returns available",
                returns.len()
            ),
        });
    }
    if returns.len() - window > FORECASTS_MAX {
        return Err(VarError::Setting {
            name: "window",
            rule: format!("leaves more than {FORECASTS_MAX} forecasts"),
        });
    }
    let realised = returns.portfolio_returns(weights)?;
    let mut warm = WarmStart::default();
    let mut points = Vec::with_capacity(returns.len() - window);
    for (t, realised_return) in realised.iter().enumerate().skip(window) {
        let method_t = match method {
            Method::MonteCarlo(config) => Method::MonteCarlo(MonteCarloConfig {
                stream: config.stream.wrapping_add((t - window) as u64),
                ..*config
            }),
            other => *other,
        };
        let f = forecast_warm(
            returns.window(t - window..t),
            weights,
            &method_t,
            level,
            1,
            &mut warm,
        )?;
        let loss = -realised_return;
        points.push(RollingPoint {
            end_utc_s: returns.end_utc_s()[t],
            var: f.var,
            loss,
            breach: loss > f.var,
        });
    }
    let breaches: Vec<bool> = points.iter().map(|p| p.breach).collect();
    let statistics = evaluate(&breaches, level)?;
    Ok(BacktestReport { points, statistics })
}

#[cfg(test)]
mod tests;
