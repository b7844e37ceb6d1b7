//! Monte Carlo VaR and ES of a portfolio whose assets' returns are jointly normal.
//!
//! The model: the assets' returns over the horizon are multivariate normal, `r = mean + L·z`, with `L` the lower
//! Cholesky factor of the covariance (`L·Lᵀ = covariance`, computed by `nalgebra`) and `z` a vector of independent
//! standard normals from a seeded [`NormalStream`]. Each path draws one `z` (asset 0 first) and turns it into the
//! portfolio's return with weights `w` (which sum to 1):
//!
//! ```text
//! simple returns:  R = sum_i w_i·r_i                 (the portfolio's simple return)
//! log returns:     R = ln(sum_i w_i·e^(r_i))          (the portfolio's log return: its value ratio is sum w_i·e^(r_i))
//! ```
//!
//! and its loss `-R`. VaR and ES are the historical (type 7) ones of the simulated losses ([`super::historical`]).
//! With simple returns `R` is exactly normal, so the result converges to the parametric normal one; with log returns
//! it is not, and the simulation is what gives the answer.
//!
//! **Reproducible bit for bit.** Path `i` always uses the same normals of stream `config.stream` of seed
//! `config.seed` (see [`crate::random`]), the arithmetic is in a fixed order, and `exp` and `ln` are the `libm`
//! crate's (the same code on every platform): a seed gives the same VaR and ES on every machine. The quantile is found
//! by selection and the tail mean summed in path order, so not even the sorting algorithm matters.
//!
//! **Speed.** No allocation per path: one buffer of `n_assets` normals is reused, and the losses are written to one
//! vector of `paths` values. With simple returns the per-path work is one dot product, `w·mean + (Lᵀw)·z`, with
//! `Lᵀw` computed once; with log returns each asset's return is needed (`mean + L·z`, a triangular product) and one
//! `exp` per asset.
//!
//! A path of log returns on which the portfolio's value ratio `sum w_i·e^(r_i)` is zero or negative (possible only
//! with a short weight) has no log return; the simulation then stops with [`VarError::PortfolioWipedOut`] rather than
//! inventing a loss.

use nalgebra::DMatrix;

use super::{historical, VarError, VarEs};
use crate::data::ReturnKind;
use crate::random::NormalStream;

/// Paths simulated when the caller does not say.
pub const PATHS_DEFAULT: usize = 100_000;
/// The most paths one simulation may run (the losses are held in memory: 8 bytes each, twice).
pub const PATHS_MAX: usize = 20_000_000;
/// The most assets a portfolio may hold.
pub const ASSETS_MAX: usize = 256;

/// How many paths, and which random numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonteCarloConfig {
    /// Number of simulated paths, 1 to [`PATHS_MAX`].
    pub paths: usize,
    /// Seed of the ChaCha12 generator.
    pub seed: u64,
    /// ChaCha stream: independent numbers for the same seed (a backtest uses one per forecast).
    pub stream: u64,
}

/// A multivariate normal distribution of the assets' returns (decimal, over the horizon), with its Cholesky factor.
#[derive(Debug, Clone, PartialEq)]
pub struct MultivariateNormal {
    n_assets: usize,
    mean: Vec<f64>,
    /// `L`, row-major `n_assets × n_assets`, zero above the diagonal.
    lower: Vec<f64>,
}

impl MultivariateNormal {
    /// From the mean vector and the covariance matrix (row-major `n × n`, symmetric to within 1e-12 relative, positive
    /// definite). Errors name the rule broken: sizes, a value that is not finite, asymmetry, or a matrix that is not
    /// positive definite (for instance two assets with identical returns, or one with no variance at all).
    pub fn new(mean: &[f64], covariance: &[f64]) -> Result<MultivariateNormal, VarError> {
        let n = mean.len();
        if n == 0 || n > ASSETS_MAX {
            return Err(VarError::Setting {
                name: "assets",
                rule: format!("count {n} must be between 1 and {ASSETS_MAX}"),
            });
        }
        if covariance.len() != n * n {
            return Err(VarError::Setting {
                name: "covariance",
                rule: format!(
                    "has {} entries; {n} assets need {}",
                    covariance.len(),
                    n * n
                ),
            });
        }
        if let Some(i) = mean.iter().position(|x| !x.is_finite()) {
            return Err(VarError::Parameter {
                name: "mean",
                value: mean[i],
            });
        }
        if let Some(i) = covariance.iter().position(|x| !x.is_finite()) {
            return Err(VarError::Parameter {
                name: "covariance",
                value: covariance[i],
            });
        }
        for i in 0..n {
            for j in 0..i {
                let (a, b) = (covariance[i * n + j], covariance[j * n + i]);
                if (a - b).abs() > 1e-12 * a.abs().max(b.abs()) {
                    return Err(VarError::NotPositiveDefinite {
                        detail: format!(
                            "entries ({i}, {j}) = {a} and ({j}, {i}) = {b} differ: not symmetric"
                        ),
                    });
                }
            }
        }
        let matrix = DMatrix::from_row_slice(n, n, covariance);
        let Some(cholesky) = matrix.cholesky() else {
            return Err(VarError::NotPositiveDefinite {
                detail: "the Cholesky factorisation failed (an asset's returns are a combination of the others' \
                         (a file given twice?), or an asset has no variance)"
                    .to_string(),
            });
        };
        let l = cholesky.l();
        let mut lower = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                lower[i * n + j] = l[(i, j)];
            }
        }
        // nalgebra accepts a matrix whose smallest pivot is a rounding error away from 0; we do not.
        let diagonal_max = (0..n).map(|i| covariance[i * n + i]).fold(0.0, f64::max);
        if let Some(i) = (0..n).find(|&i| {
            let pivot = lower[i * n + i] * lower[i * n + i];
            pivot.is_nan() || pivot <= 1e-12 * diagonal_max
        }) {
            return Err(VarError::NotPositiveDefinite {
                detail: format!(
                    "asset {i}'s returns are, to within 1e-12 of the largest variance, a combination of the \
                     earlier assets' (a file given twice?) or constant"
                ),
            });
        }
        Ok(MultivariateNormal {
            n_assets: n,
            mean: mean.to_vec(),
            lower,
        })
    }

    /// The sample mean and covariance (divisor `n - 1`) of `n_observations` rows of `n_assets` returns each
    /// (`rows` row-major), as a distribution. At least two rows.
    pub fn from_sample(rows: &[f64], n_assets: usize) -> Result<MultivariateNormal, VarError> {
        if n_assets == 0 || !rows.len().is_multiple_of(n_assets) {
            return Err(VarError::Setting {
                name: "returns",
                rule: format!(
                    "{} values do not make rows of {n_assets} assets",
                    rows.len()
                ),
            });
        }
        let n_observations = rows.len() / n_assets;
        if n_observations < 2 {
            return Err(VarError::ObservationCount { n: n_observations });
        }
        let (mean, covariance) = sample_mean_covariance(rows, n_assets);
        MultivariateNormal::new(&mean, &covariance)
    }

    /// The same model over `bars` periods, under i.i.d. returns: mean times `bars`, covariance times `bars` (so `L`
    /// times `sqrt(bars)`).
    pub fn over_bars(&self, bars: usize) -> MultivariateNormal {
        let k = bars as f64;
        MultivariateNormal {
            n_assets: self.n_assets,
            mean: self.mean.iter().map(|m| m * k).collect(),
            lower: self.lower.iter().map(|l| l * k.sqrt()).collect(),
        }
    }

    pub fn n_assets(&self) -> usize {
        self.n_assets
    }
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }
    /// The lower Cholesky factor, row-major, zero above the diagonal.
    pub fn cholesky_lower(&self) -> &[f64] {
        &self.lower
    }
}

/// The sample mean (per asset) and covariance (row-major, divisor `n - 1`) of row-major returns.
pub fn sample_mean_covariance(rows: &[f64], n_assets: usize) -> (Vec<f64>, Vec<f64>) {
    let n_observations = rows.len() / n_assets;
    let mut mean = vec![0.0; n_assets];
    for row in rows.chunks_exact(n_assets) {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += x;
        }
    }
    for m in &mut mean {
        *m /= n_observations as f64;
    }
    let mut covariance = vec![0.0; n_assets * n_assets];
    for row in rows.chunks_exact(n_assets) {
        for i in 0..n_assets {
            let di = row[i] - mean[i];
            for j in 0..=i {
                covariance[i * n_assets + j] += di * (row[j] - mean[j]);
            }
        }
    }
    let divisor = (n_observations as f64 - 1.0).max(1.0);
    for i in 0..n_assets {
        for j in 0..=i {
            let c = covariance[i * n_assets + j] / divisor;
            covariance[i * n_assets + j] = c;
            covariance[j * n_assets + i] = c;
        }
    }
    (mean, covariance)
}

/// The simulated portfolio losses, one per path in path order (module docs). `weights`: one per asset, finite.
pub fn simulate_losses(
    model: &MultivariateNormal,
    weights: &[f64],
    kind: ReturnKind,
    config: MonteCarloConfig,
) -> Result<Vec<f64>, VarError> {
    let n = model.n_assets;
    if weights.len() != n {
        return Err(VarError::Setting {
            name: "weights",
            rule: format!("count {} must equal the asset count {n}", weights.len()),
        });
    }
    if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
        return Err(VarError::Parameter {
            name: "weight",
            value: weights[i],
        });
    }
    if config.paths == 0 || config.paths > PATHS_MAX {
        return Err(VarError::Setting {
            name: "paths",
            rule: format!("{} must be between 1 and {PATHS_MAX}", config.paths),
        });
    }
    let mut stream = NormalStream::new(config.seed, config.stream);
    let mut z = vec![0.0; n];
    let mut losses = Vec::with_capacity(config.paths);
    match kind {
        ReturnKind::Simple => {
            // R = w·mean + (Lᵀw)·z.
            let mean_return: f64 = weights.iter().zip(&model.mean).map(|(w, m)| w * m).sum();
            let exposure: Vec<f64> = (0..n)
                .map(|j| (j..n).map(|i| model.lower[i * n + j] * weights[i]).sum())
                .collect();
            for _ in 0..config.paths {
                stream.fill_normal(&mut z);
                let mut r = mean_return;
                for (e, zj) in exposure.iter().zip(&z) {
                    r += e * zj;
                }
                losses.push(-r);
            }
        }
        ReturnKind::Log => {
            for path in 0..config.paths {
                stream.fill_normal(&mut z);
                let mut value_ratio = 0.0;
                for (i, (weight, mean)) in weights.iter().zip(&model.mean).enumerate() {
                    let row = &model.lower[i * n..i * n + i + 1];
                    let mut r = *mean;
                    for (l, zj) in row.iter().zip(&z) {
                        r += l * zj;
                    }
                    value_ratio += weight * libm::exp(r);
                }
                if value_ratio.is_nan() || value_ratio <= 0.0 {
                    return Err(VarError::PortfolioWipedOut {
                        what: format!("monte-carlo path {path}"),
                    });
                }
                losses.push(-libm::log(value_ratio));
            }
        }
    }
    Ok(losses)
}

/// Monte Carlo VaR and ES at `level` (module docs).
pub fn monte_carlo(
    model: &MultivariateNormal,
    weights: &[f64],
    kind: ReturnKind,
    level: f64,
    config: MonteCarloConfig,
) -> Result<VarEs, VarError> {
    super::check_level(level)?;
    let losses = simulate_losses(model, weights, kind, config)?;
    historical(&losses, level)
}

#[cfg(test)]
mod tests;
