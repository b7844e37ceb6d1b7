//! Calibration: per-asset risk parameters from price history and a liquidity-depth model.
//!
//! The question: how much may a venue lend against an asset, or let a trader lever a perp on it, so that a
//! liquidation that takes the whole liquidation horizon to complete still covers the asset's tail move, the
//! liquidator's fee and the slippage of selling the position? Every formula is in `docs/risk.md` ("Calibration");
//! in short, with `ES` the historical Expected Shortfall of the horizon return (a positive fraction of value),
//! `slippage(Q) = k·sqrt(Q / depth_usd)` the square-root price impact of selling `Q` USD within the horizon, `Q_ref`
//! the reference position size and `fee` the liquidation fee:
//!
//! ```text
//! maintenance_asset_weight      = 1 − (ES_down + slippage(Q_ref) + fee)       floored at 0, capped at the tier's max
//! maintenance_liability_weight  = 1 + ES_up + slippage(Q_ref) + fee           raised to the tier's min
//! initial weights                 the same at the initial level (default (1 + level) / 2)
//! size_premium_factor (spot)    = 2c / (1 − ES_down − fee + slippage(Q_ref)),  c = k·sqrt(P / depth_usd)
//! maintenance_margin_ratio      = ES_abs + slippage(Q_ref) + fee              (perp; initial at the initial level)
//! size_premium_factor (perp)    = c
//! open_interest_upper_cap       = depth_usd · (budget / k)²,  lower cap = half of it
//! ```
//!
//! Every recommendation is rounded in the direction of safety: asset weights and caps down, liability weights,
//! margin ratios and premia up ([`Decimal`]).
//!
//! This module is pure: it takes returns, prices and depths as `f64` and gives numbers back. Reading the calibration
//! file and the protocol file, and checking the result against the engine's rules, is the CLI's job.

use std::cmp::Ordering;
use std::fmt;

use crate::data::{DataError, PriceSeries, ReturnKind};
use crate::var::{historical, VarError};

#[cfg(test)]
mod tests;

/// The tail at the initial level must hold at least this many horizon returns: `n · (1 − initial_level) >= 10`.
/// With fewer, the ES is the mean of a handful of points and says little.
pub const TAIL_OBSERVATIONS_MIN: usize = 10;

/// Default `k` of the square-root impact `k·sqrt(Q / depth_usd)`: with 1, `depth_usd` is the sale that would cost
/// the whole price.
pub const IMPACT_COEFFICIENT_DEFAULT: f64 = 1.0;

/// Default slippage budget of the open-interest cap: closing a market's whole open interest within the horizon may
/// cost at most 5 % of its value in price impact.
pub const OI_SLIPPAGE_BUDGET_DEFAULT: f64 = 0.05;

/// Asset and liability weights are recommended in steps of 0.01.
pub const WEIGHT_DECIMALS: u32 = 2;

/// Margin ratios are recommended in steps of 0.001.
pub const MARGIN_RATIO_DECIMALS: u32 = 3;

/// Size premium factors are recommended with two significant digits (rounded up).
pub const PREMIUM_SIGNIFICANT_DIGITS: u32 = 2;

/// Open-interest caps (USD) are recommended with two significant digits (rounded down).
pub const CAP_SIGNIFICANT_DIGITS: u32 = 2;

/// The engine's largest initial liability weight (`config.rs`: "exceeds 10"), mirrored here because this crate does
/// not depend on the engine.
pub const LIABILITY_WEIGHT_MAX: f64 = 10.0;

/// Relative distance within which a scaled value counts as already on a rounding step, so that `0.83` (stored as
/// `0.829999...` in binary) rounds down to 0.83, not 0.82. It moves a result by at most 1e-9 of one step.
const ON_STEP_TOLERANCE: f64 = 1e-9;

// ----- errors -----------------------------------------------------------------------------------------------------

/// Invalid input to a calibration, naming the argument and the rule it broke.
#[derive(Debug, Clone, PartialEq)]
pub enum CalibrationError {
    /// An argument outside its domain: `depth_usd -1 must be a finite number > 0`.
    Input {
        field: &'static str,
        value: f64,
        rule: &'static str,
    },
    /// The liquidation horizon is not a whole number (>= 1) of the series' sampling interval.
    Horizon { horizon_s: i64, interval_s: i64 },
    /// The window holds fewer than two samples.
    EmptyWindow { n_samples: usize },
    /// Too few horizon returns for the tail at the initial level to hold [`TAIL_OBSERVATIONS_MIN`] of them.
    TooFewObservations {
        n_observations: usize,
        n_needed: usize,
        initial_level: f64,
    },
    /// The price history: bad series or a horizon longer than the window.
    Data(DataError),
    /// The ES computation refused its input.
    Var(VarError),
}

impl fmt::Display for CalibrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalibrationError::Input { field, value, rule } => write!(f, "{field} {value} {rule}"),
            CalibrationError::Horizon {
                horizon_s,
                interval_s,
            } => write!(
                f,
                "horizon of {horizon_s} s is not a whole number (>= 1) of the data's sampling interval of {interval_s} s"
            ),
            CalibrationError::EmptyWindow { n_samples } => write!(
                f,
                "the window holds {n_samples} samples; at least 2 are needed"
            ),
            CalibrationError::TooFewObservations {
                n_observations,
                n_needed,
                initial_level,
            } => write!(
                f,
                "{n_observations} horizon returns: at least {n_needed} are needed so that {TAIL_OBSERVATIONS_MIN} lie beyond the initial level {initial_level} (use a longer window or a lower level)"
            ),
            CalibrationError::Data(e) => write!(f, "{e}"),
            CalibrationError::Var(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CalibrationError {}

impl From<DataError> for CalibrationError {
    fn from(e: DataError) -> Self {
        CalibrationError::Data(e)
    }
}

impl From<VarError> for CalibrationError {
    fn from(e: VarError) -> Self {
        CalibrationError::Var(e)
    }
}

fn input(field: &'static str, value: f64, rule: &'static str) -> CalibrationError {
    CalibrationError::Input { field, value, rule }
}

fn check_positive(field: &'static str, value: f64) -> Result<f64, CalibrationError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(input(field, value, "must be a finite number > 0"))
    }
}

fn check_fraction(field: &'static str, value: f64) -> Result<f64, CalibrationError> {
    if value.is_finite() && (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        Err(input(field, value, "must be at least 0 and below 1"))
    }
}

// ----- decimals ---------------------------------------------------------------------------------------------------

/// A non-negative decimal number `mantissa · 10^exponent`, exact, as it is written into the protocol file.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    mantissa: u128,
    exponent: i32,
}

/// Which way to round, and to what step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A multiple of `10^-places`.
    Places(u32),
    /// This many significant digits.
    Significant(u32),
}

impl Decimal {
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        exponent: 0,
    };

    /// `mantissa · 10^exponent`.
    pub fn new(mantissa: u128, exponent: i32) -> Decimal {
        Decimal { mantissa, exponent }
    }

    /// `x` rounded down to `step` (toward zero; `x <= 0` gives 0). A scaled value within 1e-9 relative of a step
    /// counts as on it.
    pub fn floor(x: f64, step: Step) -> Decimal {
        Decimal::round(x, step, false)
    }

    /// `x` rounded up to `step` (`x <= 0` gives 0).
    pub fn ceil(x: f64, step: Step) -> Decimal {
        Decimal::round(x, step, true)
    }

    fn round(x: f64, step: Step, up: bool) -> Decimal {
        if !(x.is_finite() && x > 0.0) {
            return Decimal::ZERO;
        }
        let exponent = match step {
            Step::Places(places) => -(places as i32),
            Step::Significant(digits) => x.log10().floor() as i32 - (digits.max(1) as i32 - 1),
        };
        let scaled = x / 10f64.powi(exponent);
        let nearest = scaled.round();
        let units = if (scaled - nearest).abs() <= ON_STEP_TOLERANCE * nearest.max(1.0) {
            nearest
        } else if up {
            scaled.ceil()
        } else {
            scaled.floor()
        };
        // `as` saturates; a value beyond 2^128 steps is far outside anything the protocol file accepts.
        Decimal::new(units as u128, exponent).normalized()
    }

    /// Trailing zeros of the mantissa moved into the exponent.
    fn normalized(mut self) -> Decimal {
        if self.mantissa == 0 {
            return Decimal::ZERO;
        }
        loop {
            let (quotient, remainder) = (self.mantissa / 10, self.mantissa % 10);
            if remainder != 0 {
                return self;
            }
            self.mantissa = quotient;
            self.exponent += 1;
        }
    }

    /// The nearest `f64`.
    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 * 10f64.powi(self.exponent)
    }

    /// The larger of two (by value).
    pub fn max(self, other: Decimal) -> Decimal {
        if self >= other {
            self
        } else {
            other
        }
    }

    /// The smaller of two (by value).
    pub fn min(self, other: Decimal) -> Decimal {
        if self <= other {
            self
        } else {
            other
        }
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.normalized(), other.normalized());
        if a.mantissa == 0 || b.mantissa == 0 {
            return a.mantissa.cmp(&b.mantissa);
        }
        // Bring both to the smaller exponent; if that overflows, the one with the larger exponent is larger by
        // more than 10^38 relative... unless its mantissa is small: fall back to comparing the values in f64.
        let low = a.exponent.min(b.exponent);
        let scale = |d: Decimal| {
            10u128
                .checked_pow((d.exponent - low) as u32)
                .and_then(|p| d.mantissa.checked_mul(p))
        };
        match (scale(a), scale(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => a.to_f64().total_cmp(&b.to_f64()),
        }
    }
}

impl fmt::Display for Decimal {
    /// Plain decimal notation without exponent or trailing zeros: `0.83`, `1.25`, `120000000`, `0.00052`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.normalized();
        let digits = d.mantissa.to_string();
        if d.exponent >= 0 {
            if d.mantissa == 0 {
                return f.write_str("0");
            }
            return write!(f, "{digits}{}", "0".repeat(d.exponent as usize));
        }
        let places = (-d.exponent) as usize;
        if digits.len() > places {
            let (whole, fraction) = digits.split_at(digits.len() - places);
            write!(f, "{whole}.{fraction}")
        } else {
            write!(f, "0.{}{digits}", "0".repeat(places - digits.len()))
        }
    }
}

// ----- levels, impact, tail ---------------------------------------------------------------------------------------

/// The ES levels: `level` for maintenance, `initial_level` (at least `level`) for initial parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    level: f64,
    initial_level: f64,
}

impl Levels {
    /// Both strictly between 0 and 1, `initial_level >= level`; `initial_level` defaults to `(1 + level) / 2`,
    /// which halves the tail probability (0.99 gives 0.995).
    pub fn new(level: f64, initial_level: Option<f64>) -> Result<Levels, CalibrationError> {
        if !(level > 0.0 && level < 1.0) {
            return Err(input("level", level, "must be strictly between 0 and 1"));
        }
        let initial_level = initial_level.unwrap_or((1.0 + level) / 2.0);
        if !(initial_level >= level && initial_level < 1.0) {
            return Err(input(
                "initial_level",
                initial_level,
                "must be at least level and below 1",
            ));
        }
        Ok(Levels {
            level,
            initial_level,
        })
    }

    /// ES level of the maintenance parameters, e.g. 0.99.
    pub fn level(&self) -> f64 {
        self.level
    }

    /// ES level of the initial parameters, e.g. 0.995.
    pub fn initial_level(&self) -> f64 {
        self.initial_level
    }
}

/// Square-root price impact: selling (or buying) `Q` USD within the liquidation horizon moves the average execution
/// price by the fraction `k·sqrt(Q / depth_usd)`. `depth_usd` is the sale that would cost `k` of the price; from one
/// observation "selling `Q0` USD cost the fraction `i0`", `depth_usd = Q0·(k / i0)²`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SquareRootImpact {
    depth_usd: f64,
    coefficient: f64,
}

impl SquareRootImpact {
    /// `depth_usd > 0` and `coefficient` (`k`) > 0, both finite.
    pub fn new(depth_usd: f64, coefficient: f64) -> Result<SquareRootImpact, CalibrationError> {
        Ok(SquareRootImpact {
            depth_usd: check_positive("depth_usd", depth_usd)?,
            coefficient: check_positive("impact_coefficient", coefficient)?,
        })
    }

    /// USD that would cost `k` of the price.
    pub fn depth_usd(&self) -> f64 {
        self.depth_usd
    }

    /// `k`.
    pub fn coefficient(&self) -> f64 {
        self.coefficient
    }

    /// Slippage of selling `size_usd` within the horizon, as a fraction of the price: `k·sqrt(size_usd / depth_usd)`.
    pub fn fraction(&self, size_usd: f64) -> f64 {
        self.coefficient * (size_usd.max(0.0) / self.depth_usd).sqrt()
    }

    /// The largest sale whose slippage stays within `budget` (a fraction): `depth_usd·(budget / k)²`.
    pub fn size_usd_at_fraction(&self, budget: f64) -> f64 {
        self.depth_usd * (budget / self.coefficient).powi(2)
    }

    /// Slippage per square root of whole tokens at `price_usd`: `c = k·sqrt(P / depth_usd)`, so that selling `s`
    /// tokens (`s·P` USD) costs `c·sqrt(s)`.
    pub fn per_root_token(&self, price_usd: f64) -> f64 {
        self.coefficient * (price_usd / self.depth_usd).sqrt()
    }
}

/// Horizon returns of one asset, cut to a window, with what the table reports about them.
#[derive(Debug, Clone, PartialEq)]
pub struct HorizonReturns {
    /// Simple returns over `horizon_samples` contiguous samples, overlapping (consecutive ones share all but one
    /// step), never across a gap.
    pub returns: Vec<f64>,
    /// Samples per horizon (24 for a one-day horizon on hourly data).
    pub horizon_samples: usize,
    /// The series' sampling interval in seconds.
    pub interval_s: i64,
    /// First and last sample in the window, UTC seconds.
    pub first_utc_s: i64,
    pub last_utc_s: i64,
    /// Samples in the window, and the runs and total of missing samples in it.
    pub n_samples: usize,
    pub n_gaps: usize,
    pub n_missing: i64,
    /// The last close in the window, USD per whole token: the price `P` of the size premium.
    pub last_close_usd: f64,
}

/// Simple returns over the horizon from the samples of `series` in `[from_utc_s, to_utc_s)` (either end open when
/// `None`). `horizon_s` must be a whole number (>= 1) of the series' interval; a return never spans a gap.
pub fn horizon_returns(
    series: &PriceSeries,
    horizon_s: i64,
    from_utc_s: Option<i64>,
    to_utc_s: Option<i64>,
) -> Result<HorizonReturns, CalibrationError> {
    let interval_s = series.interval_s();
    if horizon_s <= 0 || horizon_s % interval_s != 0 {
        return Err(CalibrationError::Horizon {
            horizon_s,
            interval_s,
        });
    }
    let horizon_samples = (horizon_s / interval_s) as usize;
    let in_window =
        |t: i64| from_utc_s.is_none_or(|from| t >= from) && to_utc_s.is_none_or(|to| t < to);
    let times: Vec<i64> = series
        .times_utc_s()
        .iter()
        .copied()
        .filter(|&t| in_window(t))
        .collect();
    if times.len() < 2 {
        return Err(CalibrationError::EmptyWindow {
            n_samples: times.len(),
        });
    }
    let window = if times.len() == series.len() {
        series.clone()
    } else {
        series.restrict_to(&times)?
    };
    let returns = window
        .returns(horizon_samples, ReturnKind::Simple)?
        .into_iter()
        .map(|r| r.value)
        .collect();
    Ok(HorizonReturns {
        returns,
        horizon_samples,
        interval_s,
        first_utc_s: times[0],
        last_utc_s: times[times.len() - 1],
        n_samples: window.len(),
        n_gaps: window.gaps().len(),
        n_missing: window.n_missing(),
        last_close_usd: window.closes()[window.len() - 1],
    })
}

/// Historical ES of the horizon return, all positive fractions of value, at both levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TailRisk {
    pub n_observations: usize,
    pub levels: Levels,
    /// ES of the fall (loss `-r`): what a collateral holder loses.
    pub es_down: f64,
    pub es_down_initial: f64,
    /// ES of the rise (loss `r`): what a borrower's debt grows by.
    pub es_up: f64,
    pub es_up_initial: f64,
    /// ES of the absolute move `|r|`: a perp position of either side (at least `max(es_down, es_up)`).
    pub es_abs: f64,
    pub es_abs_initial: f64,
}

/// ES of the fall, the rise and the absolute move of `horizon_returns` (simple returns) at both levels, by
/// [`historical`] (type 7). Needs `n·(1 − initial_level) >= TAIL_OBSERVATIONS_MIN`.
pub fn tail_risk(horizon_returns: &[f64], levels: Levels) -> Result<TailRisk, CalibrationError> {
    let n = horizon_returns.len();
    let n_needed = (TAIL_OBSERVATIONS_MIN as f64 / (1.0 - levels.initial_level)).ceil() as usize;
    if n < n_needed {
        return Err(CalibrationError::TooFewObservations {
            n_observations: n,
            n_needed,
            initial_level: levels.initial_level,
        });
    }
    let down: Vec<f64> = horizon_returns.iter().map(|r| -r).collect();
    let absolute: Vec<f64> = horizon_returns.iter().map(|r| r.abs()).collect();
    let es = |losses: &[f64], level: f64| historical(losses, level).map(|v| v.es);
    Ok(TailRisk {
        n_observations: n,
        levels,
        es_down: es(&down, levels.level)?,
        es_down_initial: es(&down, levels.initial_level)?,
        es_up: es(horizon_returns, levels.level)?,
        es_up_initial: es(horizon_returns, levels.initial_level)?,
        es_abs: es(&absolute, levels.level)?,
        es_abs_initial: es(&absolute, levels.initial_level)?,
    })
}

// ----- recommendations --------------------------------------------------------------------------------------------

/// A bound that moved a recommendation away from its formula.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// An asset weight below 0 became 0: the asset is worth nothing as collateral at this size.
    FlooredAtZero,
    /// Capped at the tier's `max_maintenance_asset_weight`.
    TierMaxAssetWeight(f64),
    /// Raised to the tier's `min_maintenance_liability_weight`.
    TierMinLiabilityWeight(f64),
    /// An initial weight or ratio brought to the maintenance one (initial must be at least as strict).
    Maintenance,
    /// Capped at the largest value the protocol file accepts.
    Largest(f64),
    /// An initial margin ratio raised to `1 / max_leverage` of a market.
    Leverage(f64),
    /// A maintenance margin ratio raised above the market's liquidation fee (the engine requires it).
    LiquidationFee(f64),
    /// A tier value taken from its most demanding market.
    MostDemanding,
    /// A tier value kept at its current, stricter value because not all its markets were calibrated.
    KeptCurrent,
    /// An open-interest cap raised to the smallest positive step.
    Smallest(f64),
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::FlooredAtZero => write!(f, "floored at 0"),
            Bound::TierMaxAssetWeight(x) => write!(f, "capped at the tier's max {x}"),
            Bound::TierMinLiabilityWeight(x) => write!(f, "raised to the tier's min {x}"),
            Bound::Maintenance => write!(f, "brought to the maintenance value"),
            Bound::Largest(x) => write!(f, "capped at {x}"),
            Bound::Leverage(x) => write!(f, "raised to 1/max_leverage = {x}"),
            Bound::LiquidationFee(x) => write!(f, "raised above the liquidation fee {x}"),
            Bound::MostDemanding => write!(f, "the most demanding of its markets"),
            Bound::KeptCurrent => write!(
                f,
                "kept at the current, stricter value: not every market of the tier was calibrated"
            ),
            Bound::Smallest(x) => write!(f, "raised to the smallest step {x}"),
        }
    }
}

/// One recommended number: the formula's value, the value to write, and the bound that applied, if any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// The formula's value, before bounds and rounding.
    pub model: f64,
    /// After bounds and rounding toward safety: what goes into the protocol file.
    pub recommended: Decimal,
    pub bound: Option<Bound>,
}

/// What one spot asset's calibration needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssetInputs {
    pub tail: TailRisk,
    pub impact: SquareRootImpact,
    /// The position (USD) for which the weights must hold; larger ones are covered by the size premium.
    pub reference_size_usd: f64,
    /// `P`, USD per whole token, for the size premium (the last close of the window).
    pub price_usd: f64,
    /// The asset's `liquidation_fee` (fraction): the discount a liquidator receives.
    pub liquidation_fee: f64,
}

/// The tier's bounds on maintenance weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierBounds {
    pub max_maintenance_asset_weight: f64,
    pub min_maintenance_liability_weight: f64,
}

/// Recommended weights and size premium of one spot asset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssetRecommendation {
    /// `slippage(Q_ref)`, a fraction of the price.
    pub slippage_reference: f64,
    /// `c = k·sqrt(P / depth_usd)`: slippage per square root of whole tokens.
    pub slippage_per_root_token: f64,
    pub maintenance_asset_weight: Figure,
    pub initial_asset_weight: Figure,
    pub maintenance_liability_weight: Figure,
    pub initial_liability_weight: Figure,
    pub size_premium_factor: Figure,
    /// The position (USD) up to which the engine's premium-scaled maintenance asset weight stays at or below the
    /// model's `1 − ES_down − fee − slippage(Q)`: where the model's weight has halved from the reference one.
    /// `None` when the weight is 0.
    pub premium_holds_to_usd: Option<f64>,
}

/// Spot weights and size premium; see the module docs and `docs/risk.md`.
pub fn recommend_asset(
    inputs: &AssetInputs,
    bounds: &TierBounds,
) -> Result<AssetRecommendation, CalibrationError> {
    let reference = check_positive("reference_size_usd", inputs.reference_size_usd)?;
    let price = check_positive("price_usd", inputs.price_usd)?;
    let fee = check_fraction("liquidation_fee", inputs.liquidation_fee)?;
    let max_weight = bounds.max_maintenance_asset_weight;
    if !(0.0..=1.0).contains(&max_weight) {
        return Err(input(
            "max_maintenance_asset_weight",
            max_weight,
            "must be between 0 and 1",
        ));
    }
    let min_liability = bounds.min_maintenance_liability_weight;
    if !(1.0..=LIABILITY_WEIGHT_MAX).contains(&min_liability) {
        return Err(input(
            "min_maintenance_liability_weight",
            min_liability,
            "must be between 1 and 10",
        ));
    }
    let tail = &inputs.tail;
    let slippage = inputs.impact.fraction(reference);
    let weights = Step::Places(WEIGHT_DECIMALS);

    // Asset weights: 1 − (ES_down + slippage + fee), floored at 0; maintenance capped at the tier's max.
    let maintenance_model = 1.0 - (tail.es_down + slippage + fee);
    let (maintenance_value, maintenance_bound) = if maintenance_model <= 0.0 {
        (0.0, Some(Bound::FlooredAtZero))
    } else if maintenance_model > max_weight {
        (max_weight, Some(Bound::TierMaxAssetWeight(max_weight)))
    } else {
        (maintenance_model, None)
    };
    let maintenance_asset_weight = Figure {
        model: maintenance_model,
        recommended: Decimal::floor(maintenance_value, weights),
        bound: maintenance_bound,
    };
    let initial_model = 1.0 - (tail.es_down_initial + slippage + fee);
    let mut initial_bound = (initial_model <= 0.0).then_some(Bound::FlooredAtZero);
    let mut initial_recommended = Decimal::floor(initial_model, weights);
    if initial_recommended > maintenance_asset_weight.recommended {
        initial_recommended = maintenance_asset_weight.recommended;
        initial_bound = Some(Bound::Maintenance);
    }
    let initial_asset_weight = Figure {
        model: initial_model,
        recommended: initial_recommended,
        bound: initial_bound,
    };

    // Liability weights: 1 + ES_up + slippage + fee, at least the tier's min, at most 10.
    let liability = |es: f64, floor: f64, floor_bound: Bound| -> Figure {
        let model = 1.0 + es + slippage + fee;
        let (value, bound) = if model < floor {
            (floor, Some(floor_bound))
        } else if model > LIABILITY_WEIGHT_MAX {
            (
                LIABILITY_WEIGHT_MAX,
                Some(Bound::Largest(LIABILITY_WEIGHT_MAX)),
            )
        } else {
            (model, None)
        };
        Figure {
            model,
            recommended: Decimal::ceil(value, weights),
            bound,
        }
    };
    let maintenance_liability_weight = liability(
        tail.es_up,
        min_liability,
        Bound::TierMinLiabilityWeight(min_liability),
    );
    let initial_liability_weight = liability(
        tail.es_up_initial,
        maintenance_liability_weight.recommended.to_f64(),
        Bound::Maintenance,
    );

    // Size premium. With x = sqrt(tokens), c = k·sqrt(P / depth_usd), a = 1 − ES_down − fee, the model's weight is
    // a − c·x and the engine's w / (1 + f·x) with w = a − c·x_ref. The engine stays at or below the model from the
    // reference size up to x_half, where the model's weight has halved (a − c·x_half = w / 2), when f = 1 / x_half =
    // 2c / (a + c·x_ref) (docs/risk.md derives it). For debt, l·(1 + f·x) >= 1 + ES_up + fee + c·x for every
    // x >= x_ref needs only f >= c / l, l = 1 + ES_up + fee + c·x_ref, which the asset-side f exceeds.
    let c = inputs.impact.per_root_token(price);
    let a = 1.0 - tail.es_down - fee;
    let x_reference = (reference / price).sqrt();
    let liability_factor = c / maintenance_liability_weight.model;
    let (premium_model, premium_holds_to_usd) = if maintenance_model > 0.0 {
        let x_half = (a + c * x_reference) / (2.0 * c);
        (
            (2.0 * c / (a + c * x_reference)).max(liability_factor),
            Some(x_half * x_half * price),
        )
    } else {
        (liability_factor, None)
    };
    let size_premium_factor = cap_at_one(premium_model);

    Ok(AssetRecommendation {
        slippage_reference: slippage,
        slippage_per_root_token: c,
        maintenance_asset_weight,
        initial_asset_weight,
        maintenance_liability_weight,
        initial_liability_weight,
        size_premium_factor,
        premium_holds_to_usd,
    })
}

/// A size premium factor rounded up to two significant digits, at most 1 (the engine's limit).
fn cap_at_one(model: f64) -> Figure {
    if model > 1.0 {
        Figure {
            model,
            recommended: Decimal::new(1, 0),
            bound: Some(Bound::Largest(1.0)),
        }
    } else {
        Figure {
            model,
            recommended: Decimal::ceil(model, Step::Significant(PREMIUM_SIGNIFICANT_DIGITS)),
            bound: None,
        }
    }
}

/// What one perp market's calibration needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarketInputs {
    /// Tail risk of the underlying's horizon return.
    pub tail: TailRisk,
    pub impact: SquareRootImpact,
    pub reference_size_usd: f64,
    pub price_usd: f64,
    /// The market's `liquidation_fee` (fraction of notional).
    pub liquidation_fee: f64,
    /// `1 / max_leverage`: the engine's floor of the tier's initial margin ratio for this market.
    pub min_initial_margin_ratio: f64,
    /// Fraction of value that closing the whole open interest within the horizon may cost in slippage.
    pub oi_slippage_budget: f64,
    /// The largest open-interest cap the protocol file accepts (USD).
    pub open_interest_max_usd: f64,
}

/// Recommended margin ratios, size premium and open-interest caps of one perp market. The ratios and caps belong to
/// the market's tier; [`combine_tier`] takes the most demanding of a tier's markets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarketRecommendation {
    pub slippage_reference: f64,
    pub maintenance_margin_ratio: Figure,
    pub initial_margin_ratio: Figure,
    pub size_premium_factor: Figure,
    pub open_interest_upper_cap: Figure,
    pub open_interest_lower_cap: Figure,
}

/// Perp margin ratios, size premium and open-interest caps; see the module docs and `docs/risk.md`.
pub fn recommend_market(inputs: &MarketInputs) -> Result<MarketRecommendation, CalibrationError> {
    let reference = check_positive("reference_size_usd", inputs.reference_size_usd)?;
    let price = check_positive("price_usd", inputs.price_usd)?;
    let fee = check_fraction("liquidation_fee", inputs.liquidation_fee)?;
    let min_initial = inputs.min_initial_margin_ratio;
    if !(min_initial.is_finite() && (0.0..=1.0).contains(&min_initial)) {
        return Err(input(
            "min_initial_margin_ratio",
            min_initial,
            "must be between 0 and 1",
        ));
    }
    let budget = inputs.oi_slippage_budget;
    if !(budget.is_finite() && budget > 0.0 && budget < 1.0) {
        return Err(input(
            "oi_slippage_budget",
            budget,
            "must be strictly between 0 and 1",
        ));
    }
    let oi_max = check_positive("open_interest_max_usd", inputs.open_interest_max_usd)?;
    let tail = &inputs.tail;
    let slippage = inputs.impact.fraction(reference);
    let ratios = Step::Places(MARGIN_RATIO_DECIMALS);
    let one_step = 10f64.powi(-(MARGIN_RATIO_DECIMALS as i32));

    // Maintenance: ES_abs + slippage + fee, at most 1, strictly above the liquidation fee.
    let maintenance_model = tail.es_abs + slippage + fee;
    let (mut maintenance_recommended, mut maintenance_bound) = if maintenance_model > 1.0 {
        (Decimal::new(1, 0), Some(Bound::Largest(1.0)))
    } else {
        (Decimal::ceil(maintenance_model, ratios), None)
    };
    if maintenance_recommended.to_f64() <= fee {
        maintenance_recommended = Decimal::ceil(fee + one_step, ratios);
        maintenance_bound = Some(Bound::LiquidationFee(fee));
    }
    let maintenance_margin_ratio = Figure {
        model: maintenance_model,
        recommended: maintenance_recommended,
        bound: maintenance_bound,
    };

    // Initial: the same at the initial level, at least maintenance and 1 / max_leverage, at most 1.
    let initial_model = tail.es_abs_initial + slippage + fee;
    let mut initial_recommended = Decimal::ceil(initial_model.min(1.0), ratios);
    let mut initial_bound = (initial_model > 1.0).then_some(Bound::Largest(1.0));
    if initial_recommended < maintenance_recommended {
        initial_recommended = maintenance_recommended;
        initial_bound = Some(Bound::Maintenance);
    }
    let leverage_floor = Decimal::ceil(min_initial, ratios);
    if initial_recommended < leverage_floor {
        initial_recommended = leverage_floor;
        initial_bound = Some(Bound::Leverage(min_initial));
    }
    let initial_margin_ratio = Figure {
        model: initial_model,
        recommended: initial_recommended,
        bound: initial_bound,
    };

    // Premium: the ratio grows by c·(x − x_ref) beyond the reference size; the engine adds f·x, so f = c covers it
    // exactly (and over-covers by c·x_ref).
    let size_premium_factor = cap_at_one(inputs.impact.per_root_token(price));

    // Open interest: the largest whose forced close within the horizon costs at most the budget; lower cap half.
    let caps = Step::Significant(CAP_SIGNIFICANT_DIGITS);
    let upper_model = inputs.impact.size_usd_at_fraction(budget);
    let (upper_value, mut upper_bound) = if upper_model > oi_max {
        (oi_max, Some(Bound::Largest(oi_max)))
    } else {
        (upper_model, None)
    };
    let mut upper = Decimal::floor(upper_value, caps);
    if upper < Decimal::new(2, 0) {
        upper = Decimal::new(2, 0);
        upper_bound = Some(Bound::Smallest(2.0));
    }
    let lower = Decimal::floor(upper.to_f64() / 2.0, caps);
    Ok(MarketRecommendation {
        slippage_reference: slippage,
        maintenance_margin_ratio,
        initial_margin_ratio,
        size_premium_factor,
        open_interest_upper_cap: Figure {
            model: upper_model,
            recommended: upper,
            bound: upper_bound,
        },
        open_interest_lower_cap: Figure {
            model: upper_model / 2.0,
            recommended: lower,
            bound: None,
        },
    })
}

/// A perp tier's margin ratios and open-interest caps (USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierValues {
    pub maintenance_margin_ratio: Decimal,
    pub initial_margin_ratio: Decimal,
    pub open_interest_lower_cap: Decimal,
    pub open_interest_upper_cap: Decimal,
}

/// A perp tier's values from its calibrated markets: the largest margin ratios and the smallest caps, so that every
/// market of the tier is covered. When some of the tier's markets were not calibrated, pass the tier's `current`
/// values: no value is then loosened (ratios never fall, caps never rise), since the uncalibrated markets may need
/// them. `None` when `markets` is empty.
pub fn combine_tier(
    markets: &[&MarketRecommendation],
    current: Option<&TierValues>,
) -> Option<TierValues> {
    let (first, rest) = markets.split_first()?;
    let mut values = TierValues {
        maintenance_margin_ratio: first.maintenance_margin_ratio.recommended,
        initial_margin_ratio: first.initial_margin_ratio.recommended,
        open_interest_lower_cap: first.open_interest_lower_cap.recommended,
        open_interest_upper_cap: first.open_interest_upper_cap.recommended,
    };
    for m in rest {
        values.maintenance_margin_ratio = values
            .maintenance_margin_ratio
            .max(m.maintenance_margin_ratio.recommended);
        values.initial_margin_ratio = values
            .initial_margin_ratio
            .max(m.initial_margin_ratio.recommended);
        values.open_interest_lower_cap = values
            .open_interest_lower_cap
            .min(m.open_interest_lower_cap.recommended);
        values.open_interest_upper_cap = values
            .open_interest_upper_cap
            .min(m.open_interest_upper_cap.recommended);
    }
    if let Some(current) = current {
        values.maintenance_margin_ratio = values
            .maintenance_margin_ratio
            .max(current.maintenance_margin_ratio);
        values.initial_margin_ratio = values
            .initial_margin_ratio
            .max(current.initial_margin_ratio);
        // Each cap is the smaller of two pairs whose lower cap is below its upper, so lower < upper still holds.
        values.open_interest_lower_cap = values
            .open_interest_lower_cap
            .min(current.open_interest_lower_cap);
        values.open_interest_upper_cap = values
            .open_interest_upper_cap
            .min(current.open_interest_upper_cap);
    }
    Some(values)
}

// ----- dates ------------------------------------------------------------------------------------------------------

/// Seconds in one day.
const DAY_S: i64 = 86_400;

/// `YYYY-MM-DD` as UTC seconds at 00:00 of that day, or `None` if it is not a real date in that form.
pub fn parse_date_utc_s(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i64> {
        let part = &text[from..to];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day < 1 || day > month_days {
        return None;
    }
    Some(days_since_epoch(year, month, day) * DAY_S)
}

/// UTC seconds as `YYYY-MM-DD` at midnight, `YYYY-MM-DDTHH:MM:SSZ` otherwise.
pub fn format_utc(utc_s: i64) -> String {
    let days = utc_s.div_euclid(DAY_S);
    let second_of_day = utc_s.rem_euclid(DAY_S);
    let (year, month, day) = date_of_day(days);
    if second_of_day == 0 {
        format!("{year:04}-{month:02}-{day:02}")
    } else {
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            second_of_day / 3600,
            second_of_day % 3600 / 60,
            second_of_day % 60
        )
    }
}

/// Days from 1970-01-01 to a Gregorian date, counting in 400-year cycles of 146,097 days from 0000-03-01 (years
/// start in March so that the leap day ends them).
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let march_year = if month <= 2 { year - 1 } else { year };
    let cycle = march_year.div_euclid(400);
    let year_in_cycle = march_year - cycle * 400;
    let march_month = (month + 9) % 12; // March = 0 .. February = 11
    let day_in_year = (153 * march_month + 2) / 5 + day - 1;
    let day_in_cycle = year_in_cycle * 365 + year_in_cycle / 4 - year_in_cycle / 100 + day_in_year;
    cycle * 146_097 + day_in_cycle - 719_468
}

/// The Gregorian date of a day number from 1970-01-01 (the inverse of [`days_since_epoch`]).
fn date_of_day(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let cycle = shifted.div_euclid(146_097);
    let day_in_cycle = shifted - cycle * 146_097;
    let year_in_cycle =
        (day_in_cycle - day_in_cycle / 1460 + day_in_cycle / 36_524 - day_in_cycle / 146_096) / 365;
    let day_in_year =
        day_in_cycle - (365 * year_in_cycle + year_in_cycle / 4 - year_in_cycle / 100);
    let march_month = (5 * day_in_year + 2) / 153;
    let day = day_in_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_in_cycle + cycle * 400 + i64::from(month <= 2);
    (year, month, day)
}
