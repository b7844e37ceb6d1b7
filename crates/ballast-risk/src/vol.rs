//! Volatility models: EWMA (RiskMetrics) and GARCH(1,1) fitted by maximum likelihood.
//!
//! Units: returns are decimal returns per bar (one bar is the data's sampling interval: an hour for hourly files, a
//! day for daily ones); variances are in (decimal return)² per bar, volatilities in decimal return per bar. Nothing
//! here annualises. Both models take the mean return to be **zero**: a bar's variance is forecast as the expected
//! squared return, which for hourly and daily crypto returns differs from the variance around the sample mean by
//! less than the estimation error.
//!
//! The input is a sequence of returns in time order. A gap in the data (a return that cannot be computed because a
//! sample is missing) simply does not appear: the recursions step from the return before the gap to the one after it,
//! as if they were consecutive.
//!
//! ## EWMA
//!
//! ```text
//! sigma²_1     = mean of r_1², ..., r_m²   with m = min(n, EWMA_SEED_OBSERVATIONS = 25)   (the seed)
//! sigma²_(t+1) = lambda·sigma²_t + (1 - lambda)·r_t²                                        t = 1..n
//! ```
//!
//! `lambda` is in (0, 1); RiskMetrics uses 0.94 for daily data ([`EWMA_LAMBDA_RISKMETRICS`]). The estimate after the
//! last return, `sigma²_(n+1)`, is the forecast for the next bar, and for every later bar too (EWMA forecasts are flat),
//! so an `h`-bar variance is `h·sigma²_(n+1)`. The seed's weight decays as `lambda^n` (0.94^250 = 2e-7).
//!
//! ## GARCH(1,1)
//!
//! ```text
//! r_t = sigma_t·z_t,  z_t i.i.d. N(0, 1)
//! sigma²_(t+1) = omega + alpha·r_t² + beta·sigma²_t,      omega > 0, alpha >= 0, beta >= 0, alpha + beta < 1
//! sigma²_1 = (1/n)·sum r_t²    (the sample variance of the returns about zero, the model's own mean)
//! log L = -1/2·sum_(t=1..n) [ ln(2·pi) + ln sigma²_t + r_t²/sigma²_t ]
//! ```
//!
//! **Fit.** The constraints are built into the parametrisation, so the search is unconstrained:
//! `persistence = alpha + beta = P_MAX·logistic(x1)` with `P_MAX = 1 - 1e-6`, `alpha = persistence·logistic(x2)`,
//! `beta = persistence - alpha`, and the unconditional variance `omega/(1 - persistence) = s²·e^(x0)` with `s²` the
//! sample variance above (this keeps `x0` near 0 and decouples `omega` from the persistence). The starting point is the
//! best of a grid of 24 (persistence 0.5 to 0.995, alpha 0.02 to 0.2, unconditional variance `s²`); from it
//! Nelder-Mead ([`crate::optimize`]) runs to convergence. A caller may add a warm start ([`fit_garch_from`], the previous
//! fit of a rolling window): the search then runs from both, since near `alpha = 0` the likelihood hardly depends on
//! `beta` and a search can stall on that ridge. The best result is restarted once with a smaller simplex (the standard
//! guard against a collapsed simplex). `alpha` or `beta` on the boundary 0 is approached, not reached: a fitted value
//! below about 1e-8 means 0. Likewise the persistence can only approach its bound `P_MAX`: a fit at about 0.999999
//! is an integrated (IGARCH-like) fit, where variance shocks do not decay and `omega/(1 - persistence)` means nothing.
//! Samples dominated by one crash (BTC daily over 2020, with Black Thursday) do fit that way.
//!
//! **Forecasts.** With `V = omega/(1 - persistence)` and `p = persistence`, the expected variance of bar `n + h` is
//! `E[sigma²_(n+h)] = V + p^(h-1)·(sigma²_(n+1) - V)` (the term structure), and the variance of the sum of the next `h`
//! returns is the sum of those: `h·V + (sigma²_(n+1) - V)·(1 - p^h)/(1 - p)` ([`GarchFit::horizon_variance`]).

use std::fmt;

use crate::optimize::{nelder_mead, Tolerance};
use crate::random::NormalStream;

/// RiskMetrics' decay factor for daily data.
pub const EWMA_LAMBDA_RISKMETRICS: f64 = 0.94;
/// The EWMA seed variance is the mean squared return of the first `min(n, EWMA_SEED_OBSERVATIONS)` returns.
pub const EWMA_SEED_OBSERVATIONS: usize = 25;
/// The fewest returns a GARCH(1,1) fit accepts (three parameters need some data behind them).
pub const GARCH_OBSERVATIONS_MIN: usize = 30;
/// The most returns either model accepts.
pub const VOL_OBSERVATIONS_MAX: usize = 100_000_000;
/// The largest persistence `alpha + beta` a fit can reach (the constraint is `alpha + beta < 1`).
pub const PERSISTENCE_MAX: f64 = 1.0 - 1e-6;

/// Invalid input to a volatility model, naming the argument and the rule it broke.
#[derive(Debug, Clone, PartialEq)]
pub enum VolError {
    /// Too few (or too many) returns for the model.
    ObservationCount { n: usize, min: usize },
    /// A return that is NaN or infinite.
    ReturnNotFinite { index: usize, value: f64 },
    /// Every return is zero: there is no variance to model.
    ZeroVariance,
    /// A parameter outside its domain.
    Parameter {
        name: &'static str,
        value: f64,
        rule: &'static str,
    },
}

impl fmt::Display for VolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolError::ObservationCount { n, min } => write!(
                f,
                "{n} returns: need between {min} and {VOL_OBSERVATIONS_MAX}"
            ),
            VolError::ReturnNotFinite { index, value } => {
                write!(f, "return {index} is {value}, not a finite number")
            }
            VolError::ZeroVariance => {
                write!(f, "every return is zero: there is no variance to model")
            }
            VolError::Parameter { name, value, rule } => write!(f, "{name} = {value}: {rule}"),
        }
    }
}

impl std::error::Error for VolError {}

fn check_returns(returns: &[f64], min: usize) -> Result<f64, VolError> {
    if returns.len() < min || returns.len() > VOL_OBSERVATIONS_MAX {
        return Err(VolError::ObservationCount {
            n: returns.len(),
            min,
        });
    }
    if let Some(index) = returns.iter().position(|r| !r.is_finite()) {
        return Err(VolError::ReturnNotFinite {
            index,
            value: returns[index],
        });
    }
    let mean_square = returns.iter().map(|r| r * r).sum::<f64>() / returns.len() as f64;
    if mean_square > 0.0 {
        Ok(mean_square)
    } else {
        Err(VolError::ZeroVariance)
    }
}

// ----- EWMA --------------------------------------------------------------------------------------------------------

/// An EWMA estimate after the last return.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EwmaFit {
    /// The decay factor used.
    pub lambda: f64,
    /// `sigma²_(n+1)`: the variance forecast for the next bar, (decimal return)² per bar.
    pub next_variance: f64,
    pub n_observations: usize,
}

impl EwmaFit {
    /// The volatility forecast for the next bar (decimal return per bar).
    pub fn next_vol(&self) -> f64 {
        self.next_variance.sqrt()
    }
    /// The variance of the sum of the next `bars` returns: `bars·sigma²_(n+1)` (flat forecasts).
    pub fn horizon_variance(&self, bars: usize) -> f64 {
        bars as f64 * self.next_variance
    }
}

/// The EWMA variances `sigma²_1, ..., sigma²_(n+1)` of `returns` (see the module docs): `n + 1` values.
pub fn ewma_variances(returns: &[f64], lambda: f64) -> Result<Vec<f64>, VolError> {
    if !(lambda > 0.0 && lambda < 1.0) {
        return Err(VolError::Parameter {
            name: "lambda",
            value: lambda,
            rule: "must be strictly between 0 and 1",
        });
    }
    check_returns(returns, 1)?;
    let m = returns.len().min(EWMA_SEED_OBSERVATIONS);
    let mut variance = returns[..m].iter().map(|r| r * r).sum::<f64>() / m as f64;
    let mut out = Vec::with_capacity(returns.len() + 1);
    out.push(variance);
    for r in returns {
        variance = lambda * variance + (1.0 - lambda) * r * r;
        out.push(variance);
    }
    Ok(out)
}

/// EWMA of `returns` with decay `lambda`; see the module docs. At least one return, not all zero.
pub fn ewma(returns: &[f64], lambda: f64) -> Result<EwmaFit, VolError> {
    let variances = ewma_variances(returns, lambda)?;
    Ok(EwmaFit {
        lambda,
        next_variance: variances[returns.len()],
        n_observations: returns.len(),
    })
}

// ----- GARCH(1,1) --------------------------------------------------------------------------------------------------

/// GARCH(1,1) parameters: `sigma²_(t+1) = omega + alpha·r_t² + beta·sigma²_t` (omega in (decimal return)² per bar).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Garch {
    pub omega: f64,
    pub alpha: f64,
    pub beta: f64,
}

impl Garch {
    /// Checks `omega > 0`, `alpha >= 0`, `beta >= 0`, `alpha + beta < 1`, all finite.
    pub fn new(omega: f64, alpha: f64, beta: f64) -> Result<Garch, VolError> {
        if !(omega.is_finite() && omega > 0.0) {
            return Err(VolError::Parameter {
                name: "omega",
                value: omega,
                rule: "must be a finite number > 0",
            });
        }
        for (name, value) in [("alpha", alpha), ("beta", beta)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(VolError::Parameter {
                    name,
                    value,
                    rule: "must be a finite number >= 0",
                });
            }
        }
        if alpha + beta >= 1.0 {
            return Err(VolError::Parameter {
                name: "alpha + beta",
                value: alpha + beta,
                rule: "must be < 1 (a stationary variance)",
            });
        }
        Ok(Garch { omega, alpha, beta })
    }

    /// `alpha + beta`: how much of a variance shock is left after one bar.
    pub fn persistence(&self) -> f64 {
        self.alpha + self.beta
    }

    /// `omega / (1 - alpha - beta)`, (decimal return)² per bar.
    pub fn unconditional_variance(&self) -> f64 {
        self.omega / (1.0 - self.persistence())
    }

    /// `sigma²_1, ..., sigma²_(n+1)` from `sigma²_1 = initial_variance`: `n + 1` values.
    pub fn variances(&self, returns: &[f64], initial_variance: f64) -> Vec<f64> {
        let mut out = Vec::with_capacity(returns.len() + 1);
        let mut variance = initial_variance;
        out.push(variance);
        for r in returns {
            variance = self.omega + self.alpha * r * r + self.beta * variance;
            out.push(variance);
        }
        out
    }

    /// The Gaussian log-likelihood of `returns` from `sigma²_1 = initial_variance` (module docs).
    pub fn log_likelihood(&self, returns: &[f64], initial_variance: f64) -> f64 {
        let mut variance = initial_variance;
        let mut sum = 0.0;
        for r in returns {
            sum += variance.ln() + r * r / variance;
            variance = self.omega + self.alpha * r * r + self.beta * variance;
        }
        -0.5 * (returns.len() as f64 * LN_2PI + sum)
    }

    /// `n` returns simulated from this model, starting from `sigma²_1 = initial_variance`, with normals from `stream`.
    pub fn simulate(&self, n: usize, initial_variance: f64, stream: &mut NormalStream) -> Vec<f64> {
        let mut variance = initial_variance;
        (0..n)
            .map(|_| {
                let r = variance.sqrt() * stream.normal();
                variance = self.omega + self.alpha * r * r + self.beta * variance;
                r
            })
            .collect()
    }
}

/// `ln(2·pi)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// A GARCH(1,1) fitted by maximum likelihood, with what forecasting needs.
#[derive(Debug, Clone, PartialEq)]
pub struct GarchFit {
    pub model: Garch,
    /// The maximised log-likelihood (natural log, including the `ln(2·pi)` constant).
    pub log_likelihood: f64,
    pub n_observations: usize,
    /// `sigma²_1`, the sample variance about zero.
    pub initial_variance: f64,
    /// `sigma²_(n+1)`: the variance forecast for the next bar.
    pub next_variance: f64,
    /// Likelihood evaluations used.
    pub evaluations: usize,
    /// Whether the last Nelder-Mead run met its tolerance (rather than its evaluation limit).
    pub converged: bool,
}

impl GarchFit {
    /// `E[sigma²_(n+h)]` for `h >= 1` (`h = 1` is the next bar): `V + p^(h-1)·(sigma²_(n+1) - V)`.
    pub fn forecast_variance(&self, h: usize) -> f64 {
        if h <= 1 {
            return self.next_variance;
        }
        let v = self.model.unconditional_variance();
        let p = self.model.persistence();
        v + p.powf(h.saturating_sub(1) as f64) * (self.next_variance - v)
    }

    /// The variance of the sum of the next `bars` returns: `sum_(h=1..bars) E[sigma²_(n+h)]`.
    pub fn horizon_variance(&self, bars: usize) -> f64 {
        let v = self.model.unconditional_variance();
        let p = self.model.persistence();
        let bars_f = bars as f64;
        bars_f * v + (self.next_variance - v) * (1.0 - p.powf(bars_f)) / (1.0 - p)
    }

    /// `sigma_1, ..., sigma_n`, the fitted conditional volatilities of the returns it was fitted on.
    pub fn conditional_vols(&self, returns: &[f64]) -> Vec<f64> {
        let mut variances = self.model.variances(returns, self.initial_variance);
        variances.pop();
        variances.into_iter().map(f64::sqrt).collect()
    }
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// The unconstrained coordinates (module docs) of a model, relative to the sample variance `s2`.
fn to_coordinates(model: &Garch, s2: f64) -> [f64; 3] {
    // Clamped away from the flat far ends of the logistic, where a simplex would stall (a boundary start).
    let persistence = model
        .persistence()
        .clamp(1e-3, PERSISTENCE_MAX * (1.0 - 1e-9));
    let alpha_share = (model.alpha / persistence).clamp(1e-3, 1.0 - 1e-3);
    [
        (model.unconditional_variance() / s2)
            .ln()
            .clamp(-10.0, 10.0),
        logit(persistence / PERSISTENCE_MAX),
        logit(alpha_share),
    ]
}

fn from_coordinates(x: &[f64], s2: f64) -> Garch {
    let persistence = PERSISTENCE_MAX * logistic(x[1]);
    let alpha = persistence * logistic(x[2]);
    let beta = persistence - alpha;
    let omega = s2 * x[0].exp() * (1.0 - persistence);
    Garch { omega, alpha, beta }
}

const GARCH_TOLERANCE: Tolerance = Tolerance {
    f_tolerance: 1e-8,
    x_tolerance: 1e-6,
    evaluations_max: 3_000,
};

/// Fits GARCH(1,1) to `returns` (module docs): at least [`GARCH_OBSERVATIONS_MIN`] finite returns, not all zero.
pub fn fit_garch(returns: &[f64]) -> Result<GarchFit, VolError> {
    fit_garch_from(returns, None)
}

/// [`fit_garch`], adding `start` (for instance the previous fit of a rolling window) to the starting grid.
pub fn fit_garch_from(returns: &[f64], start: Option<&Garch>) -> Result<GarchFit, VolError> {
    let s2 = check_returns(returns, GARCH_OBSERVATIONS_MIN)?;
    let objective = |x: &[f64]| -from_coordinates(x, s2).log_likelihood(returns, s2);
    let mut evaluations = 0;
    // The best point of the grid.
    let mut grid_best: Option<([f64; 3], f64)> = None;
    for persistence in [0.5, 0.8, 0.9, 0.95, 0.98, 0.995] {
        for alpha in [0.02f64, 0.05, 0.1, 0.2] {
            let model = Garch {
                omega: s2 * (1.0 - persistence),
                alpha: alpha.min(persistence),
                beta: (persistence - alpha).max(0.0),
            };
            let x = to_coordinates(&model, s2);
            let value = objective(&x);
            evaluations += 1;
            if value.is_finite() && grid_best.is_none_or(|(_, b)| value < b) {
                grid_best = Some((x, value));
            }
        }
    }
    // Every grid point is finite for valid input (omega, the variances and the returns are finite and positive).
    let grid_x = grid_best.map_or([0.0; 3], |(x, _)| x);
    // Nelder-Mead from the grid's best point and from the warm start if there is one; the best result is then
    // polished by one restart with a smaller simplex. (Both runs are needed: from a start near alpha = 0 the
    // likelihood hardly depends on beta, and the search can stall on that ridge.)
    let mut best: Option<(Vec<f64>, f64)> = None;
    let warm = start.map(|model| to_coordinates(model, s2));
    for x in std::iter::once(grid_x).chain(warm) {
        let m = nelder_mead(objective, &x, &[0.5, 1.0, 1.0], GARCH_TOLERANCE);
        evaluations += m.evaluations;
        if best.as_ref().is_none_or(|(_, b)| m.value < *b) {
            best = Some((m.x, m.value));
        }
    }
    let x = best.map_or_else(|| grid_x.to_vec(), |(x, _)| x);
    let m = nelder_mead(objective, &x, &[0.1, 0.3, 0.3], GARCH_TOLERANCE);
    evaluations += m.evaluations;
    let (x, converged) = (m.x, m.converged);
    let model = from_coordinates(&x, s2);
    let variances = model.variances(returns, s2);
    Ok(GarchFit {
        model,
        log_likelihood: model.log_likelihood(returns, s2),
        n_observations: returns.len(),
        initial_variance: s2,
        next_variance: variances[returns.len()],
        evaluations,
        converged,
    })
}

#[cfg(test)]
mod tests;
