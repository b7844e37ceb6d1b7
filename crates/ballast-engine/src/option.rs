//! European option series: marking, short-option margin and expiry, in deterministic fixed point.
//!
//! An option series is a market (`[[market]]` with a `[market.option]` section) and reuses everything a perp market
//! has: positions of `base` (contracts, in native units of the underlying: one whole token is one contract on one
//! whole token) and `quote` (USD), two-sided fills at a premium per whole token, fees, liquidation by takeover, the
//! loss waterfall and auto-deleveraging. What differs is the price positions are valued at and what a short
//! position must hold.
//!
//! ## Mark
//!
//! A series is marked by Black-Scholes with the series' rate `r` and the underlying's yield `q`, at the underlying's
//! latest oracle price `S`, the series' mark volatility (set in the protocol file, then by `option_vol` commands)
//! and the time to expiry measured **from that price's publish time** (`T = (expiry - publish) / 365 days`, 0 once
//! the print is at or after expiry). So the mark is a function of the oracle state alone: it moves when a price
//! arrives, never with the clock between two prices, and every sub-account sees the same mark in one command.
//! The pricing is `ballast_num::option` (integers only, the same bits on every platform), whose agreement with the
//! `f64` reference in `ballast-risk` is bounded and tested there. The 10^18-scale result is rounded down to a
//! [`Price`] (10^12); a short position's value then rounds its liability up (`value_floor` of a negative base).
//!
//! Once the settlement price `X` is fixed, the mark is the exact intrinsic value `max(X - K, 0)` (call) or
//! `max(K - X, 0)` (put).
//!
//! ## Margin (standard, per position)
//!
//! With `n` contracts, `S` the underlying's oracle price and `OTM` the out-of-the-money amount (`max(K - S, 0)` for a
//! call, `max(S - K, 0)` for a put):
//!
//! * **Long** (`n > 0`): its value `n * mark` counts at `long_initial_weight` in initial health (0 by default: the
//!   premium is paid from collateral) and in full at liquidation-end and maintenance. It has no requirement: it
//!   cannot lose more than its value. As for perps, a positive result (quote plus weighted value, e.g. the payoff
//!   of a closed winner before it settles) counts at `positive_pnl_initial_weight` in initial health.
//! * **Short** (`n < 0`): its PnL (`quote + n * mark`, so the mark is already counted) less a requirement per
//!   contract of `max(share * S - OTM, floor * S)`, the usual shape (Deribit's and CME's short-option minimum),
//!   capped at the strike for a put (a short put cannot lose more than `K`). Initial and maintenance levels take
//!   their own `share` and `floor`; liquidation-end takes `maintenance + liquidation_end_fraction * (initial -
//!   maintenance)` of each. The market's margin multiplier scales every share and floor. Positive PnL counts at
//!   `positive_pnl_initial_weight` in initial health, as for perps.
//! * Once the settlement price is fixed, nothing is at risk any more: the requirement is zero and the position is
//!   worth exactly its payoff until `expire_market` closes it.
//!
//! Roundings go against the holder: `share * S` and `floor * S` up, `OTM` down, the requirement (a [`Quote`]) up.
//!
//! ## Expiry
//!
//! Trading stops at `expiry_s` (fills at or after it are refused). The first oracle price of the underlying whose
//! publish time is at or after expiry and that is usable for new risk (within the asset's confidence limit and close
//! to its slow reference price, so one manipulated print cannot fix the payoff) fixes the settlement price
//! (recorded by the oracle command, one event per series). `expire_market` (anyone may send it) then closes every position at the payoff: each position's quote
//! receives `base * intrinsic` (rounded down, remainders to the market's dust like funding), its base becomes zero,
//! and open interest goes to zero. Unsettled PnL then settles into deposits like any perp PnL.

use crate::config::SECONDS_PER_YEAR;
use crate::perp::{OptionKind, OptionSeriesConfig};
use ballast_num::{NumResult, Price, Quote, Ratio, Rounding, TokenAmount};

/// What margin needs to know about an option series at one moment (part of [`crate::perp::MarketRisk`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionRisk {
    pub kind: OptionKind,
    pub strike: Price,
    /// The underlying's oracle price (None without one).
    pub underlying: Option<Price>,
    /// The mark volatility, the years to expiry from the underlying's price publish time, the series' rate and
    /// yield: what a scenario revaluation (portfolio margin) needs.
    pub vol: Ratio,
    pub years: Ratio,
    pub rate: Ratio,
    pub dividend_yield: Ratio,
    /// Shares and floors after the margin multiplier.
    pub initial_share: Ratio,
    pub initial_floor: Ratio,
    pub maintenance_share: Ratio,
    pub maintenance_floor: Ratio,
    pub long_initial_weight: Ratio,
    /// The settlement price is fixed: no requirement, the mark is the payoff.
    pub settled: bool,
}

/// The largest volatility a series may be marked at (1000 % a year).
pub const MAX_MARK_VOL: Ratio = Ratio::from_raw(10 * Ratio::SCALE);

/// The farthest expiry a series may have: 2100-01-01 00:00 UTC.
pub const MAX_EXPIRY_S: u64 = 4_102_444_800;

/// Time to expiry counts at most this many 365-day years (so that `rate * T` stays within the pricer's domain for
/// any rate the protocol file allows): only a print published decades before a far expiry reaches it.
pub const MAX_YEARS: u64 = 40;

/// Every rule an option series must meet (messages name the field).
pub fn validate_series(series: &OptionSeriesConfig) -> Vec<String> {
    let mut errors = Vec::new();
    let unit = |r: Ratio| r >= Ratio::ZERO && r <= Ratio::ONE;
    if !series.strike.is_positive() || series.strike > crate::limits::MAX_PRICE {
        errors.push(format!(
            "strike {} must be positive and at most {}",
            series.strike,
            crate::limits::MAX_PRICE
        ));
    }
    if series.expiry_s == 0 || series.expiry_s > MAX_EXPIRY_S {
        errors.push(format!(
            "expiry_s {} must be a Unix time in seconds between 1 and {MAX_EXPIRY_S}",
            series.expiry_s
        ));
    }
    if !series.mark_vol.is_positive() || series.mark_vol > MAX_MARK_VOL {
        errors.push(format!(
            "mark_vol {} must be above 0 and at most {MAX_MARK_VOL}",
            series.mark_vol
        ));
    }
    let one = Ratio::ONE;
    for (field, value) in [
        ("rate", series.rate),
        ("dividend_yield", series.dividend_yield),
    ] {
        if value < one.checked_neg().expect("constant") || value > one {
            errors.push(format!("{field} {value} must be between -1 and 1"));
        }
    }
    for (field, value) in [
        ("initial_share", series.initial_share),
        ("initial_floor", series.initial_floor),
        ("maintenance_share", series.maintenance_share),
        ("maintenance_floor", series.maintenance_floor),
        ("long_initial_weight", series.long_initial_weight),
    ] {
        if !unit(value) {
            errors.push(format!("{field} {value} must be between 0 and 1"));
        }
    }
    if series.initial_share < series.maintenance_share {
        errors.push(format!(
            "initial_share {} is below maintenance_share {} (initial must be stricter)",
            series.initial_share, series.maintenance_share
        ));
    }
    if series.initial_floor < series.maintenance_floor {
        errors.push(format!(
            "initial_floor {} is below maintenance_floor {} (initial must be stricter)",
            series.initial_floor, series.maintenance_floor
        ));
    }
    if !series.maintenance_floor.is_positive() {
        errors.push(format!(
            "maintenance_floor {} must be positive (a short option must always hold something)",
            series.maintenance_floor
        ));
    }
    errors
}

/// The payoff of one contract (USD per whole token) at an underlying price of `spot`, exactly.
pub fn intrinsic(kind: OptionKind, strike: Price, spot: Price) -> NumResult<Price> {
    let gain = match kind {
        OptionKind::Call => spot.checked_sub(strike)?,
        OptionKind::Put => strike.checked_sub(spot)?,
    };
    Ok(gain.max(Price::ZERO))
}

/// Years from `from_s` to `to_s` (0 when `to_s <= from_s`, at most [`MAX_YEARS`]), at scale 10^18, rounded down;
/// 365-day years.
pub fn years_between(from_s: u64, to_s: u64) -> NumResult<Ratio> {
    let seconds = to_s
        .saturating_sub(from_s)
        .min(MAX_YEARS * SECONDS_PER_YEAR);
    Ratio::from_fraction(seconds as i128, SECONDS_PER_YEAR as i128, Rounding::Floor)
}

/// The mark of a series: its payoff once the settlement price is fixed, else Black-Scholes at `spot` with `vol` and
/// the time from `published_s` to expiry. Rounded down to a [`Price`].
pub fn mark(
    series: &OptionSeriesConfig,
    vol: Ratio,
    spot: Price,
    published_s: u64,
    settlement: Option<Price>,
) -> NumResult<Price> {
    if let Some(x) = settlement {
        return intrinsic(series.kind, series.strike, x);
    }
    let years = years_between(published_s, series.expiry_s)?;
    model_price(
        series.kind,
        spot,
        series.strike,
        vol,
        years,
        series.rate,
        series.dividend_yield,
    )
}

/// Black-Scholes with a yield, in fixed point (`ballast_num::option`), rounded down to a [`Price`].
pub fn model_price(
    kind: OptionKind,
    spot: Price,
    strike: Price,
    vol: Ratio,
    years: Ratio,
    rate: Ratio,
    dividend_yield: Ratio,
) -> NumResult<Price> {
    let scale_up = |p: Price| -> NumResult<i128> {
        p.raw()
            .checked_mul(Ratio::SCALE / Price::SCALE)
            .ok_or(ballast_num::NumError::Overflow {
                op: "option price scale",
            })
    };
    let side = match kind {
        OptionKind::Call => ballast_num::option::OptionSide::Call,
        OptionKind::Put => ballast_num::option::OptionSide::Put,
    };
    let value = ballast_num::option::european_price(
        side,
        &ballast_num::option::EuropeanInputs {
            spot: scale_up(spot)?,
            strike: scale_up(strike)?,
            vol: vol.raw(),
            years: years.raw(),
            rate: rate.raw(),
            carry_yield: dividend_yield.raw(),
        },
    )?;
    Ok(Price::from_raw(
        value.div_euclid(Ratio::SCALE / Price::SCALE),
    ))
}

impl OptionRisk {
    /// A short position's requirement at `share` and `floor` for `contracts` (native units, the position's |base|):
    /// `contracts * max(share * S - OTM, floor * S)`, capped at the strike for a put; zero once settled. Rounded up.
    pub fn short_requirement(
        &self,
        contracts: TokenAmount,
        decimals: u8,
        share: Ratio,
        floor: Ratio,
    ) -> NumResult<Quote> {
        if self.settled || contracts.is_zero() {
            return Ok(Quote::ZERO);
        }
        let Some(spot) = self.underlying else {
            return Ok(Quote::ZERO);
        };
        let otm = match self.kind {
            OptionKind::Call => self.strike.checked_sub(spot)?,
            OptionKind::Put => spot.checked_sub(self.strike)?,
        }
        .max(Price::ZERO);
        let by_share = spot.mul_ratio(share, Rounding::Ceil)?.checked_sub(otm)?;
        let by_floor = spot.mul_ratio(floor, Rounding::Ceil)?;
        let mut per_contract = by_share.max(by_floor);
        if self.kind == OptionKind::Put {
            per_contract = per_contract.min(self.strike);
        }
        per_contract.value_ceil(contracts, decimals)
    }
}
