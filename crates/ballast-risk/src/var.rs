//! Value at Risk and Expected Shortfall of a loss distribution.
//!
//! Losses are **positive fractions** of position value: a loss of 0.05 is 5 % of the value lost, a gain is a negative
//! loss (`loss = -return`). At level `p` (0.99 for "99 %"):
//!
//! - **VaR** is the `p`-quantile of the loss: the loss exceeded with probability `1 - p`.
//! - **ES** (expected shortfall) is the mean loss in that tail, at or beyond VaR.
//!
//! Historical simulation ([`historical`]): the empirical quantile of the `n` observed losses with linear
//! interpolation between order statistics, the "type 7" definition (R's `quantile` default, NumPy's `linear`):
//!
//! ```text
//! x_(0) <= ... <= x_(n-1) the sorted losses,  h = (n - 1)·p,  j = floor(h)
//! VaR = x_(j) + (h - j)·(x_(j+1) - x_(j))          (VaR = x_(n-1) when j = n - 1)
//! ES  = mean of { x_(i) : x_(i) >= VaR }
//! ```
//!
//! Losses 1, 2, ..., 10 at p = 0.9 give h = 8.1, VaR = 9 + 0.1·(10 - 9) = 9.1 and ES = 10.
//!
//! Parametric normal ([`normal`]): the *return* is normal with mean `mu` and standard deviation `sigma` (per period,
//! decimal), so the loss `-return` is normal with mean `-mu`, and with `z = N⁻¹(p)`, `n` the standard normal density:
//!
//! ```text
//! VaR = sigma·z - mu          ES = sigma·n(z)/(1 - p) - mu
//! ```
//!
//! At p = 0.99, z = 2.326347874 and n(z)/(1 - p) = 2.665214220. No horizon scaling happens here: the inputs are
//! already at the horizon wanted.

use std::fmt;

use crate::options::{normal_cdf, normal_pdf};

#[cfg(test)]
mod tests;

/// The most observations [`historical`] accepts (it sorts a copy).
pub const N_OBSERVATIONS_MAX: usize = 100_000_000;

/// A VaR and the ES at the same level, both as positive fractions of position value (loss units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VarEs {
    pub var: f64,
    pub es: f64,
}

/// Invalid input to a VaR computation, naming the argument and the rule it broke.
#[derive(Debug, Clone, PartialEq)]
pub enum VarError {
    /// The level is not strictly between 0 and 1.
    LevelOutOfRange { level: f64 },
    /// No observations (or more than [`N_OBSERVATIONS_MAX`]).
    ObservationCount { n: usize },
    /// A loss that is NaN or infinite.
    LossNotFinite { index: usize, value: f64 },
    /// A distribution parameter that is not finite, or a negative standard deviation.
    Parameter { name: &'static str, value: f64 },
}

impl fmt::Display for VarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarError::LevelOutOfRange { level } => {
                write!(f, "level {level} must be strictly between 0 and 1")
            }
            VarError::ObservationCount { n } => {
                write!(
                    f,
                    "{n} observations: need between 1 and {N_OBSERVATIONS_MAX}"
                )
            }
            VarError::LossNotFinite { index, value } => {
                write!(f, "loss {index} is {value}, not a finite number")
            }
            VarError::Parameter { name, value } => write!(f, "{name} = {value} is not allowed"),
        }
    }
}

impl std::error::Error for VarError {}

fn check_level(level: f64) -> Result<(), VarError> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(VarError::LevelOutOfRange { level })
    }
}

fn check_losses(losses: &[f64]) -> Result<(), VarError> {
    if losses.is_empty() || losses.len() > N_OBSERVATIONS_MAX {
        return Err(VarError::ObservationCount { n: losses.len() });
    }
    match losses.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(VarError::LossNotFinite {
            index,
            value: losses[index],
        }),
        None => Ok(()),
    }
}

/// The type-7 empirical quantile of `values` at `level` (see the module docs). `values` need not be sorted.
pub fn quantile_type7(values: &[f64], level: f64) -> Result<f64, VarError> {
    check_level(level)?;
    check_losses(values)?;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(quantile_type7_sorted(&sorted, level))
}

/// Type 7 on ascending, finite, non-empty `sorted`, `level` in (0, 1).
fn quantile_type7_sorted(sorted: &[f64], level: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * level;
    let j = h.floor() as usize; // h >= 0, and j <= n - 1 since level < 1.
    let fraction = h - j as f64;
    match sorted.get(j + 1) {
        // `min`: rounding must not carry the interpolation past the next order statistic.
        Some(&next) => (sorted[j] + fraction * (next - sorted[j])).min(next),
        None => sorted[j],
    }
}

/// Historical VaR and ES at `level` of observed `losses` (positive = loss), type 7 quantile. See the module docs.
pub fn historical(losses: &[f64], level: f64) -> Result<VarEs, VarError> {
    check_level(level)?;
    check_losses(losses)?;
    let mut sorted = losses.to_vec();
    sorted.sort_by(f64::total_cmp);
    let var = quantile_type7_sorted(&sorted, level);
    // The tail is never empty: VaR <= the largest loss.
    let tail_start = sorted.partition_point(|&x| x < var);
    let tail = &sorted[tail_start..];
    let es = tail.iter().sum::<f64>() / tail.len() as f64;
    debug_assert!(es >= var);
    Ok(VarEs { var, es })
}

/// Normal VaR and ES at `level` for a return with mean `mean_return` and standard deviation `sigma` (decimal, per
/// period): `VaR = sigma·z - mu`, `ES = sigma·n(z)/(1 - p) - mu`.
pub fn normal(mean_return: f64, sigma: f64, level: f64) -> Result<VarEs, VarError> {
    check_level(level)?;
    if !mean_return.is_finite() {
        return Err(VarError::Parameter {
            name: "mean_return",
            value: mean_return,
        });
    }
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(VarError::Parameter {
            name: "sigma",
            value: sigma,
        });
    }
    let z = normal_quantile(level);
    Ok(VarEs {
        var: sigma * z - mean_return,
        es: sigma * normal_pdf(z) / (1.0 - level) - mean_return,
    })
}

/// Normal VaR and ES with the mean and standard deviation estimated from observed `losses`: `mu = -mean(losses)`,
/// `sigma` the sample standard deviation (divisor `n - 1`). Needs at least two losses.
pub fn normal_from_losses(losses: &[f64], level: f64) -> Result<VarEs, VarError> {
    check_level(level)?;
    check_losses(losses)?;
    if losses.len() < 2 {
        return Err(VarError::ObservationCount { n: losses.len() });
    }
    let n = losses.len() as f64;
    let mean_loss = losses.iter().sum::<f64>() / n;
    let variance = losses.iter().map(|x| (x - mean_loss).powi(2)).sum::<f64>() / (n - 1.0);
    normal(-mean_loss, variance.sqrt(), level)
}

/// The standard normal quantile `N⁻¹(p)` for `p` in (0, 1): Acklam's rational approximation (relative error below
/// 1.15e-9) refined by one Halley step on `N` (from `erfc`), which brings it to within a few ulp.
pub fn normal_quantile(p: f64) -> f64 {
    debug_assert!(p > 0.0 && p < 1.0);
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.024_25;
    let x = if p < P_LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // Halley refinement: e = N(x) - p, u = e / n(x), x -= u / (1 + x·u/2).
    let e = normal_cdf(x) - p;
    let u = e / normal_pdf(x);
    x - u / (1.0 + x * u / 2.0)
}
