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
//!
//! Also here, each documented at its function: Student-t VaR/ES in closed form ([`student_t`]) and its
//! maximum-likelihood fit ([`fit_student_t`]), Cornish-Fisher VaR/ES ([`cornish_fisher`]) from sample [`moments`],
//! and Monte Carlo with correlated normal shocks ([`monte_carlo`]). Portfolios, horizons and filtered historical
//! simulation are in [`crate::portfolio`].

use std::fmt;

use statrs::distribution::{ContinuousCDF, StudentsT};
use statrs::function::gamma::ln_gamma;

use crate::optimize::{nelder_mead, Tolerance};
use crate::options::{normal_cdf, normal_pdf};

pub mod monte_carlo;

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
    /// The observations have no spread (every one equal): a scale cannot be fitted.
    ZeroSpread,
    /// A covariance matrix that is not positive definite (Cholesky fails), with the reason.
    NotPositiveDefinite { detail: String },
    /// Log returns of a portfolio whose value fell to zero or below (possible with short weights): `ln` is undefined.
    PortfolioWipedOut { what: String },
    /// Invalid settings of a method (path count, horizon, weights ...), naming the setting and the rule.
    Setting { name: &'static str, rule: String },
    /// The volatility model of the filtered method failed.
    Volatility(crate::vol::VolError),
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
                    "{n} observations: too few for this estimate (or more than {N_OBSERVATIONS_MAX})"
                )
            }
            VarError::LossNotFinite { index, value } => {
                write!(f, "loss {index} is {value}, not a finite number")
            }
            VarError::Parameter { name, value } => write!(f, "{name} = {value} is not allowed"),
            VarError::ZeroSpread => {
                write!(f, "every observation is the same: no spread to fit a distribution to")
            }
            VarError::NotPositiveDefinite { detail } => {
                write!(f, "the covariance matrix is not positive definite: {detail}")
            }
            VarError::PortfolioWipedOut { what } => write!(
                f,
                "{what}: the portfolio's value falls to zero or below, where a log return is undefined \
                 (use simple returns)"
            ),
            VarError::Setting { name, rule } => write!(f, "{name} {rule}"),
            VarError::Volatility(error) => write!(f, "GARCH(1,1) fit: {error}"),
        }
    }
}

impl std::error::Error for VarError {}

impl From<crate::vol::VolError> for VarError {
    fn from(error: crate::vol::VolError) -> VarError {
        VarError::Volatility(error)
    }
}

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
    Ok(quantile_type7_in_place(&mut values.to_vec(), level))
}

/// Type 7 on finite, non-empty `work`, `level` in (0, 1), by selection rather than sorting (linear time); `work` is
/// left reordered.
fn quantile_type7_in_place(work: &mut [f64], level: f64) -> f64 {
    let h = (work.len() - 1) as f64 * level;
    let j = h.floor() as usize; // h >= 0, and j <= n - 1 since level < 1.
    let fraction = h - j as f64;
    let (_, &mut at_j, above) = work.select_nth_unstable_by(j, f64::total_cmp);
    match above.iter().copied().min_by(f64::total_cmp) {
        // `min`: rounding must not carry the interpolation past the next order statistic.
        Some(next) => (at_j + fraction * (next - at_j)).min(next),
        None => at_j,
    }
}

/// Historical VaR and ES at `level` of observed `losses` (positive = loss), type 7 quantile. See the module docs.
///
/// The quantile is found by selection (linear time) and the tail mean is summed in the order of `losses`, so the
/// result does not depend on the sorting algorithm: the same losses give the same bits on every platform.
pub fn historical(losses: &[f64], level: f64) -> Result<VarEs, VarError> {
    check_level(level)?;
    check_losses(losses)?;
    let var = quantile_type7_in_place(&mut losses.to_vec(), level);
    // The tail is never empty: VaR <= the largest loss.
    let (mut sum, mut count) = (0.0, 0usize);
    for &x in losses {
        if x >= var {
            sum += x;
            count += 1;
        }
    }
    let es = (sum / count as f64).max(var);
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
/// 1.15e-9) refined by one Halley step on `N` (`options::normal_cdf`, Cody's approximation), which brings it to
/// within a few ulp.
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

// ----- sample moments ----------------------------------------------------------------------------------------------

/// Mean, standard deviation, skewness and excess kurtosis of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation, divisor `n - 1`.
    pub sd: f64,
    /// `g1 = m3 / m2^(3/2)`, with `m_k = (1/n)·sum (x - mean)^k` the central moments (divisor `n`).
    pub skewness: f64,
    /// `g2 = m4 / m2² - 3` (0 for a normal distribution).
    pub excess_kurtosis: f64,
}

/// The [`Moments`] of `values`: at least two finite values, not all equal.
pub fn moments(values: &[f64]) -> Result<Moments, VarError> {
    check_losses(values)?;
    if values.len() < 2 {
        return Err(VarError::ObservationCount { n: values.len() });
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for x in values {
        let d = x - mean;
        let d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
        m4 += d2 * d2;
    }
    if m2 <= 0.0 {
        return Err(VarError::ZeroSpread);
    }
    let sd = (m2 / (n - 1.0)).sqrt();
    let (m2, m3, m4) = (m2 / n, m3 / n, m4 / n);
    Ok(Moments {
        n: values.len(),
        mean,
        sd,
        skewness: m3 / m2.powf(1.5),
        excess_kurtosis: m4 / (m2 * m2) - 3.0,
    })
}

// ----- Student-t ---------------------------------------------------------------------------------------------------

/// The smallest degrees of freedom a Student-t fit may reach (the variance is finite above 2).
pub const DOF_MIN: f64 = 2.01;
/// The largest degrees of freedom a Student-t fit may reach (at 1000 the t is a normal to within 0.1 % at 99 %).
pub const DOF_MAX: f64 = 1000.0;
/// The fewest observations a Student-t fit accepts.
pub const STUDENT_T_OBSERVATIONS_MIN: usize = 10;

/// The standard Student-t quantile `t_dof⁻¹(p)`, `p` in (0, 1), `dof` > 0: `statrs`' inverse (through the inverse
/// regularised incomplete beta function), polished by two Newton steps on `statrs`' CDF.
pub fn student_t_quantile(p: f64, dof: f64) -> f64 {
    debug_assert!(p > 0.0 && p < 1.0 && dof > 0.0);
    let Ok(t) = StudentsT::new(0.0, 1.0, dof) else {
        return f64::NAN;
    };
    let mut x = t.inverse_cdf(p);
    for _ in 0..2 {
        let density = student_t_density(x, dof);
        if !(density > 0.0 && x.is_finite()) {
            break;
        }
        let step = (t.cdf(x) - p) / density;
        if step.is_finite() {
            x -= step;
        }
    }
    x
}

/// `ln` of the standard Student-t density's constant: `lnΓ((ν+1)/2) - lnΓ(ν/2) - ln(ν·π)/2`.
fn student_t_log_constant(dof: f64) -> f64 {
    ln_gamma((dof + 1.0) / 2.0) - ln_gamma(dof / 2.0) - 0.5 * (dof * std::f64::consts::PI).ln()
}

/// The standard Student-t density at `x`.
pub fn student_t_density(x: f64, dof: f64) -> f64 {
    (student_t_log_constant(dof) - (dof + 1.0) / 2.0 * (x * x / dof).ln_1p()).exp()
}

/// Student-t VaR and ES at `level` for a return `R = location + scale·T`, `T` standard Student-t with `dof` degrees
/// of freedom (`scale` is not the standard deviation, which is `scale·sqrt(dof/(dof - 2))`). With `q = t_dof⁻¹(p)` and
/// `g` the standard t density:
///
/// ```text
/// VaR = scale·q - location            ES = scale·g(q)/(1 - p)·(dof + q²)/(dof - 1) - location
/// ```
///
/// `dof` must be in [[`DOF_MIN`], [`DOF_MAX`]].
pub fn student_t(location: f64, scale: f64, dof: f64, level: f64) -> Result<VarEs, VarError> {
    check_level(level)?;
    if !location.is_finite() {
        return Err(VarError::Parameter {
            name: "location",
            value: location,
        });
    }
    if !(scale.is_finite() && scale >= 0.0) {
        return Err(VarError::Parameter {
            name: "scale",
            value: scale,
        });
    }
    if !(DOF_MIN..=DOF_MAX).contains(&dof) {
        return Err(VarError::Parameter {
            name: "dof",
            value: dof,
        });
    }
    let q = student_t_quantile(level, dof);
    let tail_mean = student_t_density(q, dof) / (1.0 - level) * (dof + q * q) / (dof - 1.0);
    Ok(VarEs {
        var: scale * q - location,
        es: scale * tail_mean - location,
    })
}

/// A Student-t distribution fitted to returns by maximum likelihood.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StudentTFit {
    /// Location (the mean, as `dof > 1`), decimal return per period.
    pub location: f64,
    /// Scale, decimal return per period (the standard deviation is `scale·sqrt(dof/(dof - 2))`).
    pub scale: f64,
    /// Degrees of freedom, in [[`DOF_MIN`], [`DOF_MAX`]].
    pub dof: f64,
    /// The maximised log-likelihood (natural log).
    pub log_likelihood: f64,
    pub n_observations: usize,
}

fn student_t_log_likelihood(values: &[f64], location: f64, scale: f64, dof: f64) -> f64 {
    let per_point = student_t_log_constant(dof) - scale.ln();
    let half = (dof + 1.0) / 2.0;
    let mut sum = 0.0;
    for x in values {
        let d = (x - location) / scale;
        sum += (d * d / dof).ln_1p();
    }
    values.len() as f64 * per_point - half * sum
}

/// Fits location, scale and degrees of freedom by maximum likelihood. Coordinates for the search: `location = mean +
/// sd·x0`, `scale = sd·e^(x1)`, `ln dof = ln DOF_MIN + (ln DOF_MAX - ln DOF_MIN)·logistic(x2)` (so `dof` stays in its
/// range); starts at the best of `dof` = 3, 6, 30 (scale from the sample standard deviation, location the mean), then
/// Nelder-Mead and one restart. At least [`STUDENT_T_OBSERVATIONS_MIN`] finite values, not all equal.
pub fn fit_student_t(values: &[f64]) -> Result<StudentTFit, VarError> {
    check_losses(values)?;
    if values.len() < STUDENT_T_OBSERVATIONS_MIN {
        return Err(VarError::ObservationCount { n: values.len() });
    }
    let m = moments(values)?;
    let (ln_lo, ln_hi) = (DOF_MIN.ln(), DOF_MAX.ln());
    let decode = |x: &[f64]| {
        let dof = (ln_lo + (ln_hi - ln_lo) / (1.0 + (-x[2]).exp())).exp();
        (
            m.mean + m.sd * x[0],
            m.sd * x[1].exp(),
            dof.clamp(DOF_MIN, DOF_MAX),
        )
    };
    let objective = |x: &[f64]| {
        let (location, scale, dof) = decode(x);
        -student_t_log_likelihood(values, location, scale, dof)
    };
    let mut start = [0.0; 3];
    let mut start_value = f64::INFINITY;
    for dof in [3.0f64, 6.0, 30.0] {
        let share = (dof.ln() - ln_lo) / (ln_hi - ln_lo);
        let x = [
            0.0,
            0.5 * ((dof - 2.0) / dof).ln(),
            (share / (1.0 - share)).ln(),
        ];
        let value = objective(&x);
        if value < start_value {
            (start, start_value) = (x, value);
        }
    }
    const TOLERANCE: Tolerance = Tolerance {
        f_tolerance: 1e-9,
        x_tolerance: 1e-7,
        evaluations_max: 3_000,
    };
    let first = nelder_mead(objective, &start, &[0.2, 0.3, 1.0], TOLERANCE);
    let second = nelder_mead(objective, &first.x, &[0.05, 0.1, 0.3], TOLERANCE);
    let (location, scale, dof) = decode(&second.x);
    Ok(StudentTFit {
        location,
        scale,
        dof,
        log_likelihood: -second.value,
        n_observations: values.len(),
    })
}

// ----- Cornish-Fisher ----------------------------------------------------------------------------------------------

/// Cornish-Fisher VaR and ES at `level` for a return with mean `mean_return`, standard deviation `sigma`, skewness
/// `skewness` and excess kurtosis `excess_kurtosis` (those of the return; the loss has the opposite skewness).
///
/// With `z = N⁻¹(p)`, `S = -skewness` (the loss's) and `K = excess_kurtosis`, the loss quantile is the second-order
/// Cornish-Fisher expansion
///
/// ```text
/// z_cf(p) = z + (z² - 1)·S/6 + (z³ - 3z)·K/24 - (2z³ - 5z)·S²/36          VaR = sigma·z_cf(p) - mean_return
/// ```
///
/// and ES is the mean of those quantiles over the tail, `ES = sigma·(1/(1-p))·∫_p^1 z_cf(u) du - mean_return`. The
/// integral is exact, not numerical: substituting `u = N(x)` makes it `E[z_cf(Z) | Z > z]` with `Z` standard normal,
/// and the conditional moments `E[Z | Z > z] = n(z)/(1-p) =: m`, `E[Z² | Z > z] = 1 + z·m`, `E[Z³ | Z > z] = (z² + 2)·m`
/// give
///
/// ```text
/// ES = sigma·m·(1 + z·S/6 + (z² - 1)·K/24 - (2z² - 1)·S²/36) - mean_return
/// ```
///
/// With `S = K = 0` both are the normal formulas. The expansion is an approximation that is monotone in `p` only
/// for moderate skewness and kurtosis (roughly `|S| < 1`, `K < 6`); outside that region it may understate the tail,
/// and the historical or Student-t methods are the better choice.
pub fn cornish_fisher(
    mean_return: f64,
    sigma: f64,
    skewness: f64,
    excess_kurtosis: f64,
    level: f64,
) -> Result<VarEs, VarError> {
    check_level(level)?;
    for (name, value) in [
        ("mean_return", mean_return),
        ("skewness", skewness),
        ("excess_kurtosis", excess_kurtosis),
    ] {
        if !value.is_finite() {
            return Err(VarError::Parameter { name, value });
        }
    }
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(VarError::Parameter {
            name: "sigma",
            value: sigma,
        });
    }
    let z = normal_quantile(level);
    let s = -skewness;
    let k = excess_kurtosis;
    let z2 = z * z;
    let z_cf = z + (z2 - 1.0) * s / 6.0 + (z2 * z - 3.0 * z) * k / 24.0
        - (2.0 * z2 * z - 5.0 * z) * s * s / 36.0;
    let m = normal_pdf(z) / (1.0 - level);
    let tail = m * (1.0 + z * s / 6.0 + (z2 - 1.0) * k / 24.0 - (2.0 * z2 - 1.0) * s * s / 36.0);
    Ok(VarEs {
        var: sigma * z_cf - mean_return,
        es: sigma * tail - mean_return,
    })
}
