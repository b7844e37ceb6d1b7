//! Portfolio returns and the VaR/ES of a portfolio by any method: the layer the `ballast var` and `ballast backtest`
//! commands stand on.
//!
//! ## Data
//!
//! [`ReturnMatrix::from_series`] takes one [`PriceSeries`] per asset (all on the same bar interval), keeps the
//! timestamps that every series has inside an optional window, and computes each asset's **one-bar** returns between
//! consecutive kept samples that are one interval apart (a sample missing from any series is a gap for all of them:
//! no return spans it). Row `t` holds every asset's return over the bar that ends at `end_utc_s[t]`.
//!
//! ## Weights and the portfolio's return
//!
//! Weights are the shares of the portfolio's value held in each asset at the start of each period; negative weights
//! are short positions. They are divided by their sum, which must be positive, so that losses are fractions of the
//! portfolio's **net value** (its equity): `--weights 3,1` is the same portfolio as `0.75,0.25`, and `1.5,-0.5` is a
//! long position of 1.5 times the equity financed by a short of 0.5. A zero or negative sum (a market-neutral or net
//! short book) has no positive value to be a fraction of, and is refused.
//!
//! The portfolio is set to the weights at the start of each period and held through it (rebalanced every period).
//! With `w` the normalised weights and `r_i` the assets' returns over the period:
//!
//! ```text
//! simple:  R = sum_i w_i·r_i                      the portfolio's simple return
//! log:     R = ln(sum_i w_i·e^(r_i))              the portfolio's log return (its value ratio is sum_i w_i·e^(r_i));
//!                                                 NOT the weighted sum of the log returns, which is no portfolio's
//! ```
//!
//! The loss is `-R`: with simple returns exactly the fraction of value lost; with log returns `-ln(V1/V0)`, whose
//! fraction of value lost is `1 - e^(-loss)` (smaller: a log loss of 0.10 is 9.5 % of the value).
//!
//! ## Horizon
//!
//! A horizon of `k` bars (`k = 1` unless asked; the CLI converts days to bars). The period above is the horizon: the
//! portfolio is set to its weights at the start of each horizon and held, not rebalanced, for its `k` bars.
//!
//! - **historical**: the overlapping `k`-bar returns, one per run of `k` consecutive one-bar rows that are contiguous
//!   in time (an asset's `k`-bar simple return is `prod(1 + r) - 1` over the run, its log return the sum), combined
//!   into the portfolio's return as above. Consecutive `k`-bar returns share `k - 1` bars, so they are not independent;
//!   their quantile is still the empirical quantile of the `k`-bar loss.
//! - **normal, student-t, cornish-fisher**: fitted to the one-bar portfolio returns, then scaled by the
//!   square-root-of-time rule, which assumes i.i.d. returns: mean times `k`, standard deviation (or t scale) times
//!   `sqrt(k)`, the shape (t degrees of freedom, skewness, excess kurtosis) kept. So `VaR_k = sqrt(k)·sigma·q -
//!   k·mu`, the rule regulators use to turn a 1-day VaR into a 10-day one. (Under i.i.d. returns the shape of a sum
//!   moves towards normal as `k` grows; keeping the one-bar shape is the conservative side of that.)
//! - **monte-carlo**: the assets' one-bar sample mean and covariance, scaled to `k` bars (mean times `k`, covariance
//!   times `k`, exact for i.i.d. normal returns), then one joint draw per path over the whole horizon.
//! - **filtered**: GARCH(1,1) on the one-bar portfolio returns gives standardised residuals `z_t = R_t/sigma_t`; the
//!   `k`-bar scenarios are the overlapping sums of `k` consecutive residuals (contiguous in time, as above) divided by
//!   `sqrt(k)`, which keeps their fat tails and any dependence between neighbours, times the GARCH forecast of the
//!   `k`-bar volatility, `sqrt(sum_(h=1..k) E[sigma²_(n+h)])` ([`crate::vol::GarchFit::horizon_variance`]). With
//!   `k = 1` that is the usual filtered historical simulation `sigma_(n+1)·z_t`. The sum of one-bar returns is the
//!   `k`-bar return for log returns, and its first-order approximation for simple ones.
//!
//! ## Methods
//!
//! All of them estimate the loss distribution of the next period from the rows they are given (the whole window for
//! `ballast var`, a rolling window for a backtest): [`historical`](crate::var::historical) type 7 on the portfolio
//! losses; [`normal`](crate::var::normal) with the sample mean and standard deviation of the portfolio returns;
//! [`student_t`](crate::var::student_t) with location, scale and degrees of freedom fitted by maximum likelihood;
//! [`cornish_fisher`](crate::var::cornish_fisher) with the sample mean, standard deviation, skewness and excess
//! kurtosis; [`monte_carlo`](crate::var::monte_carlo); and filtered historical simulation, historical type 7 on
//! the GARCH-rescaled losses.

use std::fmt;

use crate::data::{align, DataError, PriceSeries, ReturnKind};
use crate::var::monte_carlo::{monte_carlo, MonteCarloConfig, MultivariateNormal, ASSETS_MAX};
use crate::var::{self, VarError, VarEs};
use crate::vol::{fit_garch_from, Garch};

/// Normalised portfolio weights: finite, summing to 1 (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Weights(Vec<f64>);

impl Weights {
    /// Divides `raw` by its sum. Errors: no weights, more than [`ASSETS_MAX`], a weight that is not finite, or a sum
    /// that is not positive.
    pub fn new(raw: &[f64]) -> Result<Weights, VarError> {
        if raw.is_empty() || raw.len() > ASSETS_MAX {
            return Err(VarError::Setting {
                name: "weights",
                rule: format!("count {} must be between 1 and {ASSETS_MAX}", raw.len()),
            });
        }
        if let Some(i) = raw.iter().position(|w| !w.is_finite()) {
            return Err(VarError::Setting {
                name: "weights",
                rule: format!("weight {} is {}, not a finite number", i + 1, raw[i]),
            });
        }
        let sum: f64 = raw.iter().sum();
        if sum.is_nan() || sum <= 0.0 {
            return Err(VarError::Setting {
                name: "weights",
                rule: format!(
                    "sum to {sum}: they must sum to a positive number (losses are fractions of the net value, \
                     the sum)"
                ),
            });
        }
        Ok(Weights(raw.iter().map(|w| w / sum).collect()))
    }

    /// The normalised weights, summing to 1.
    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }
}

/// Why price series could not become a return matrix.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesError {
    /// No series given, or more than [`ASSETS_MAX`].
    Count { n: usize },
    /// Two series on different bar intervals.
    IntervalMismatch {
        first: String,
        first_interval_s: i64,
        other: String,
        other_interval_s: i64,
    },
    /// Fewer than two timestamps common to every series inside the window.
    Window { n_common: usize },
    /// Enough common samples, but no two of them one interval apart.
    NoReturns,
    /// A data rule broken inside one series.
    Data(DataError),
}

impl fmt::Display for SeriesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeriesError::Count { n } => {
                write!(f, "{n} price series: need between 1 and {ASSETS_MAX}")
            }
            SeriesError::IntervalMismatch {
                first,
                first_interval_s,
                other,
                other_interval_s,
            } => write!(
                f,
                "{other} has bars of {other_interval_s} s but {first} has bars of {first_interval_s} s: \
                 every file must have the same interval"
            ),
            SeriesError::Window { n_common } => write!(
                f,
                "{n_common} sample(s) common to every file in the window: at least 2 are needed"
            ),
            SeriesError::NoReturns => write!(
                f,
                "no two common samples in the window are one bar apart: no return can be computed"
            ),
            SeriesError::Data(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for SeriesError {}

/// One-bar returns of several assets on common timestamps (module docs), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ReturnMatrix {
    end_utc_s: Vec<i64>,
    values: Vec<f64>,
    n_assets: usize,
    interval_s: i64,
    kind: ReturnKind,
}

impl ReturnMatrix {
    /// The one-bar returns of `series` on their common timestamps `t` with `from_utc_s <= t < until_utc_s` (either
    /// bound optional). See the module docs.
    pub fn from_series(
        series: &[PriceSeries],
        from_utc_s: Option<i64>,
        until_utc_s: Option<i64>,
        kind: ReturnKind,
    ) -> Result<ReturnMatrix, SeriesError> {
        let Some(first) = series.first() else {
            return Err(SeriesError::Count { n: 0 });
        };
        if series.len() > ASSETS_MAX {
            return Err(SeriesError::Count { n: series.len() });
        }
        if let Some(other) = series.iter().find(|s| s.interval_s() != first.interval_s()) {
            return Err(SeriesError::IntervalMismatch {
                first: first.name().to_string(),
                first_interval_s: first.interval_s(),
                other: other.name().to_string(),
                other_interval_s: other.interval_s(),
            });
        }
        let refs: Vec<&PriceSeries> = series.iter().collect();
        let common: Vec<i64> = align(&refs)
            .into_iter()
            .filter(|t| from_utc_s.is_none_or(|from| *t >= from))
            .filter(|t| until_utc_s.is_none_or(|until| *t < until))
            .collect();
        if common.len() < 2 {
            return Err(SeriesError::Window {
                n_common: common.len(),
            });
        }
        let mut per_asset = Vec::with_capacity(series.len());
        for s in series {
            let restricted = s.restrict_to(&common).map_err(SeriesError::Data)?;
            per_asset.push(restricted.returns(1, kind).map_err(SeriesError::Data)?);
        }
        let rows = per_asset[0].len();
        if rows == 0 {
            return Err(SeriesError::NoReturns);
        }
        // The series share their timestamps and interval, so their returns end at the same times.
        debug_assert!(per_asset.iter().all(|r| r.len() == rows));
        let n_assets = series.len();
        let mut values = Vec::with_capacity(rows * n_assets);
        for t in 0..rows {
            for asset in &per_asset {
                values.push(asset[t].value);
            }
        }
        Ok(ReturnMatrix {
            end_utc_s: per_asset[0].iter().map(|r| r.end_utc_s).collect(),
            values,
            n_assets,
            interval_s: first.interval_s(),
            kind,
        })
    }

    /// From rows already computed: `values` row-major, one row per entry of `end_utc_s` (strictly increasing, on the
    /// grid of `interval_s`), `n_assets` per row. For tests and callers with their own data.
    pub fn new(
        end_utc_s: Vec<i64>,
        values: Vec<f64>,
        n_assets: usize,
        interval_s: i64,
        kind: ReturnKind,
    ) -> Result<ReturnMatrix, VarError> {
        if n_assets == 0 || n_assets > ASSETS_MAX || values.len() != end_utc_s.len() * n_assets {
            return Err(VarError::Setting {
                name: "returns",
                rule: format!(
                    "{} values for {} rows of {n_assets} assets",
                    values.len(),
                    end_utc_s.len()
                ),
            });
        }
        if interval_s <= 0 || end_utc_s.windows(2).any(|p| p[1] <= p[0]) {
            return Err(VarError::Setting {
                name: "end_utc_s",
                rule: "must be strictly increasing with a positive interval".to_string(),
            });
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(VarError::LossNotFinite {
                index: i / n_assets,
                value: values[i],
            });
        }
        Ok(ReturnMatrix {
            end_utc_s,
            values,
            n_assets,
            interval_s,
            kind,
        })
    }

    /// Number of rows (one-bar periods with a return for every asset).
    pub fn len(&self) -> usize {
        self.end_utc_s.len()
    }
    pub fn is_empty(&self) -> bool {
        self.end_utc_s.is_empty()
    }
    pub fn n_assets(&self) -> usize {
        self.n_assets
    }
    /// The bar interval in seconds.
    pub fn interval_s(&self) -> i64 {
        self.interval_s
    }
    pub fn kind(&self) -> ReturnKind {
        self.kind
    }
    /// End time of each row's bar, UTC seconds.
    pub fn end_utc_s(&self) -> &[i64] {
        &self.end_utc_s
    }
    /// The returns, row-major.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Rows `rows` as a window (all rows: `matrix.window(0..matrix.len())`).
    pub fn window(&self, rows: std::ops::Range<usize>) -> ReturnWindow<'_> {
        ReturnWindow {
            end_utc_s: &self.end_utc_s[rows.clone()],
            values: &self.values[rows.start * self.n_assets..rows.end * self.n_assets],
            n_assets: self.n_assets,
            interval_s: self.interval_s,
            kind: self.kind,
        }
    }

    /// The one-bar portfolio returns of every row.
    pub fn portfolio_returns(&self, weights: &Weights) -> Result<Vec<f64>, VarError> {
        self.window(0..self.len()).portfolio_returns(weights)
    }
}

/// Consecutive rows of a [`ReturnMatrix`].
#[derive(Debug, Clone, Copy)]
pub struct ReturnWindow<'a> {
    end_utc_s: &'a [i64],
    values: &'a [f64],
    n_assets: usize,
    interval_s: i64,
    kind: ReturnKind,
}

/// The portfolio return of one row of asset returns (module docs); `None` for a log return of a wiped-out portfolio.
fn portfolio_return(row: &[f64], weights: &[f64], kind: ReturnKind) -> Option<f64> {
    match kind {
        ReturnKind::Simple => Some(row.iter().zip(weights).map(|(r, w)| r * w).sum()),
        ReturnKind::Log => {
            let value_ratio: f64 = row
                .iter()
                .zip(weights)
                .map(|(r, w)| w * libm::exp(*r))
                .sum();
            (value_ratio > 0.0).then(|| libm::log(value_ratio))
        }
    }
}

impl ReturnWindow<'_> {
    pub fn len(&self) -> usize {
        self.end_utc_s.len()
    }
    pub fn is_empty(&self) -> bool {
        self.end_utc_s.is_empty()
    }

    /// The first row of every run of `k` rows contiguous in time (`k` bars with no gap).
    fn run_starts(&self, k: usize) -> impl Iterator<Item = usize> + '_ {
        let span_s = self.interval_s.saturating_mul(k as i64 - 1);
        (0..(self.len() + 1).saturating_sub(k))
            .filter(move |&j| self.end_utc_s[j + k - 1] - self.end_utc_s[j] == span_s)
    }

    fn check_weights(&self, weights: &Weights) -> Result<(), VarError> {
        if weights.as_slice().len() == self.n_assets {
            Ok(())
        } else {
            Err(VarError::Setting {
                name: "weights",
                rule: format!(
                    "count {} must equal the number of assets {}",
                    weights.as_slice().len(),
                    self.n_assets
                ),
            })
        }
    }

    /// The one-bar portfolio returns, one per row.
    pub fn portfolio_returns(&self, weights: &Weights) -> Result<Vec<f64>, VarError> {
        self.check_weights(weights)?;
        self.values
            .chunks_exact(self.n_assets)
            .zip(self.end_utc_s)
            .map(|(row, end)| {
                portfolio_return(row, weights.as_slice(), self.kind).ok_or_else(|| {
                    VarError::PortfolioWipedOut {
                        what: format!("the bar ending at {end} (UTC seconds)"),
                    }
                })
            })
            .collect()
    }

    /// The overlapping `k`-bar portfolio returns (module docs, historical).
    pub fn horizon_portfolio_returns(
        &self,
        weights: &Weights,
        k: usize,
    ) -> Result<Vec<f64>, VarError> {
        self.check_weights(weights)?;
        if k <= 1 {
            return self.portfolio_returns(weights);
        }
        let m = self.n_assets;
        let mut asset = vec![0.0; m];
        let mut out = Vec::new();
        for j in self.run_starts(k) {
            for (i, a) in asset.iter_mut().enumerate() {
                let bars = (j..j + k).map(|t| self.values[t * m + i]);
                *a = match self.kind {
                    ReturnKind::Simple => bars.fold(1.0, |g, r| g * (1.0 + r)) - 1.0,
                    ReturnKind::Log => bars.sum(),
                };
            }
            out.push(
                portfolio_return(&asset, weights.as_slice(), self.kind).ok_or_else(|| {
                    VarError::PortfolioWipedOut {
                        what: format!(
                            "the {k}-bar period ending at {} (UTC seconds)",
                            self.end_utc_s[j + k - 1]
                        ),
                    }
                })?,
            );
        }
        Ok(out)
    }
}

/// A VaR method and its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    Historical,
    Normal,
    StudentT,
    CornishFisher,
    MonteCarlo(MonteCarloConfig),
    Filtered,
}

impl Method {
    /// The method's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Historical => "historical",
            Method::Normal => "normal",
            Method::StudentT => "student-t",
            Method::CornishFisher => "cornish-fisher",
            Method::MonteCarlo(_) => "monte-carlo",
            Method::Filtered => "filtered",
        }
    }
}

/// A VaR and ES forecast, with the number of observations behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// VaR, a positive fraction of the portfolio's net value (module docs for log returns).
    pub var: f64,
    /// ES, the same units.
    pub es: f64,
    /// Returns the estimate used: `k`-bar returns for the historical method, one-bar rows for the others.
    pub n_observations: usize,
}

/// The largest horizon in bars (about 11 years of hourly bars).
pub const HORIZON_BARS_MAX: usize = 100_000;

/// State carried from one forecast to the next in a rolling backtest: the last GARCH fit, a warm start for the next.
#[derive(Debug, Clone, Default)]
pub struct WarmStart {
    garch: Option<Garch>,
}

/// VaR and ES at `level` over `horizon_bars` bars of the portfolio `weights`, estimated by `method` from `window`
/// (module docs).
pub fn forecast(
    window: ReturnWindow<'_>,
    weights: &Weights,
    method: &Method,
    level: f64,
    horizon_bars: usize,
) -> Result<Forecast, VarError> {
    forecast_warm(
        window,
        weights,
        method,
        level,
        horizon_bars,
        &mut WarmStart::default(),
    )
}

/// [`forecast`], with a warm start for the filtered method's GARCH fit, updated with the new fit.
pub fn forecast_warm(
    window: ReturnWindow<'_>,
    weights: &Weights,
    method: &Method,
    level: f64,
    horizon_bars: usize,
    warm: &mut WarmStart,
) -> Result<Forecast, VarError> {
    if !(level > 0.0 && level < 1.0) {
        return Err(VarError::LevelOutOfRange { level });
    }
    if horizon_bars == 0 || horizon_bars > HORIZON_BARS_MAX {
        return Err(VarError::Setting {
            name: "horizon",
            rule: format!("of {horizon_bars} bars must be between 1 and {HORIZON_BARS_MAX}"),
        });
    }
    let k = horizon_bars as f64;
    let estimate = |var_es: VarEs, n_observations: usize| Forecast {
        var: var_es.var,
        es: var_es.es,
        n_observations,
    };
    match method {
        Method::Historical => {
            let losses: Vec<f64> = window
                .horizon_portfolio_returns(weights, horizon_bars)?
                .into_iter()
                .map(|r| -r)
                .collect();
            if losses.is_empty() {
                return Err(VarError::Setting {
                    name: "horizon",
                    rule: format!(
                        "of {horizon_bars} bars is longer than every gap-free run of the {} returns",
                        window.len()
                    ),
                });
            }
            Ok(estimate(var::historical(&losses, level)?, losses.len()))
        }
        Method::Normal => {
            let returns = window.portfolio_returns(weights)?;
            let m = var::moments(&returns)?;
            Ok(estimate(
                var::normal(m.mean * k, m.sd * k.sqrt(), level)?,
                returns.len(),
            ))
        }
        Method::StudentT => {
            let returns = window.portfolio_returns(weights)?;
            let fit = var::fit_student_t(&returns)?;
            Ok(estimate(
                var::student_t(fit.location * k, fit.scale * k.sqrt(), fit.dof, level)?,
                returns.len(),
            ))
        }
        Method::CornishFisher => {
            let returns = window.portfolio_returns(weights)?;
            let m = var::moments(&returns)?;
            Ok(estimate(
                var::cornish_fisher(
                    m.mean * k,
                    m.sd * k.sqrt(),
                    m.skewness,
                    m.excess_kurtosis,
                    level,
                )?,
                returns.len(),
            ))
        }
        Method::MonteCarlo(config) => {
            window.check_weights(weights)?;
            if window.len() < 2 {
                return Err(VarError::ObservationCount { n: window.len() });
            }
            let model = MultivariateNormal::from_sample(window.values, window.n_assets)?
                .over_bars(horizon_bars);
            Ok(estimate(
                monte_carlo(&model, weights.as_slice(), window.kind, level, *config)?,
                window.len(),
            ))
        }
        Method::Filtered => {
            let returns = window.portfolio_returns(weights)?;
            let fit = fit_garch_from(&returns, warm.garch.as_ref())?;
            warm.garch = Some(fit.model);
            let vols = fit.conditional_vols(&returns);
            let residuals: Vec<f64> = returns.iter().zip(&vols).map(|(r, s)| r / s).collect();
            let horizon_vol = fit.horizon_variance(horizon_bars).sqrt();
            let losses: Vec<f64> = if horizon_bars == 1 {
                residuals.iter().map(|z| -horizon_vol * z).collect()
            } else {
                window
                    .run_starts(horizon_bars)
                    .map(|j| {
                        let sum: f64 = residuals[j..j + horizon_bars].iter().sum();
                        -horizon_vol * sum / k.sqrt()
                    })
                    .collect()
            };
            if losses.is_empty() {
                return Err(VarError::Setting {
                    name: "horizon",
                    rule: format!(
                        "of {horizon_bars} bars is longer than every gap-free run of the {} returns",
                        window.len()
                    ),
                });
            }
            Ok(estimate(var::historical(&losses, level)?, returns.len()))
        }
    }
}

#[cfg(test)]
mod tests;
