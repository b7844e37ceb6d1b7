//! Perpetual futures: markets, positions, fees and funding.
//!
//! A perp market trades an underlying asset (its oracle is the asset's oracle) against the quote currency. A
//! position is two numbers: `base`, signed native units of the underlying (positive long), and `quote`, the
//! position's quote balance in [`Quote`] (USD, micro-USD scale): a buy of `b` at price `p` adds `b` to base and
//! subtracts `b * p` from quote. Its value at oracle price `P` is `base * P + quote`: the unsettled PnL.
//! Perp PnL is treated as quote currency at face value (USD = the quote asset, as Drift and dYdX do).
//!
//! ## Margin
//! A position needs `|base| * P * ratio(level)`: the market's liquidity tier gives initial and maintenance ratios;
//! a size premium adds `f * sqrt(|base| in whole tokens)`; the initial ratio rises linearly toward 1 as open
//! interest (notional) goes from the tier's lower to its upper cap (dYdX's liquidity tiers); the market's margin
//! multiplier (phased in over time by an administrator) scales both; liquidation-end sits between the two like
//! spot weights. Ratios are capped at 1. Positive unsettled PnL counts at `positive_pnl_initial_weight` in initial
//! health and in full at the other levels; negative PnL counts in full.
//!
//! ## Funding
//! Each market keeps a cumulative funding index `F` ([`Price`]: USD per whole base token) and a funding rate. A
//! funding update with a premium sample (the venue's mark price from its order book) sets the rate to
//! `clamp((mark - oracle) / oracle, ±max_rate_per_interval)` per interval, in force for one interval. The index
//! accrues `rate * oracle * seconds / interval` ([`Market::accrue_funding`]) whenever the market is touched: a fill,
//! a liquidation, a settlement, a bankruptcy resolution, a funding sample, and every oracle price of the underlying
//! (at the price that held until then). So a position pays or earns the rate for exactly the time it is held: one
//! opened just before a sample gets nothing for the time before it. Longs pay when the index rises. Health counts
//! funding up to the market's last touch.
//! Positions settle lazily: on every touch, a position pays `base * (F - snapshot)`, rounded so that payers pay up
//! and receivers receive down. The remainders go to the market's `funding_dust`, in exact units, so that
//!
//! ```text
//! D * (sum(quote) + fees_collected + insurance_collected) + sum(base * snapshot) + funding_dust == 0,
//!     D = 10^(decimals + 6)
//! ```
//!
//! holds exactly at every moment (every fill is two-sided, so `sum(base) == 0`). [`Market::check_zero_sum`] checks
//! it in 256 bits.

use crate::config::SECONDS_PER_YEAR;
use ballast_num::{mul_div, NumResult, Price, Quote, Ratio, Rounding, TokenAmount, TokenQuantity};
use ruint::aliases::U256;
use serde::{Deserialize, Serialize};

/// `[[perp_tier]]`: a liquidity tier (dYdX's term): margin ratios and open-interest caps shared by its markets.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PerpTierConfig {
    pub name: String,
    pub initial_margin_ratio: Ratio,
    pub maintenance_margin_ratio: Ratio,
    /// Open interest (long side, in quote at the oracle price) where the initial ratio starts rising.
    pub open_interest_lower_cap: Quote,
    /// Open interest where the initial ratio reaches 1; fills that raise open interest beyond it are refused.
    pub open_interest_upper_cap: Quote,
    /// The most (USD) the quote asset's insurance fund pays toward one bankrupt position in a market of this tier;
    /// the rest is socialized by auto-deleveraging.
    pub insurance_cap_per_bankruptcy: Quote,
}

/// `[market.funding]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FundingConfig {
    /// The premium is a rate per this many seconds (commonly 3600 or 28800).
    pub interval_s: u64,
    /// Clamp of the premium per interval.
    pub max_rate_per_interval: Ratio,
}

/// `[[market]]`: one perpetual market.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    pub symbol: String,
    /// The asset whose oracle prices this market (and whose decimals its base amounts use).
    pub underlying: String,
    pub tier: String,
    /// Whole base tokens: every fill size is a multiple of this.
    pub step_size: TokenQuantity,
    /// Added to the margin ratios per square root of |base| in whole tokens.
    pub size_premium_factor: Ratio,
    pub taker_fee: Ratio,
    pub maker_fee: Ratio,
    pub liquidation_fee: Ratio,
    /// The initial margin ratio is never below `1 / max_leverage`.
    pub max_leverage: Ratio,
    /// Weight of positive unsettled PnL in initial health.
    pub positive_pnl_initial_weight: Ratio,
    /// Funding of a perpetual; required for a perp market, not allowed on an option series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding: Option<FundingConfig>,
    /// Trading against the counterparty pool; a market without it trades only between sub-accounts.
    #[serde(default)]
    pub pool: Option<MarketPoolConfig>,
    /// Makes the market a European option series (see [`OptionSeriesConfig`]) instead of a perpetual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option: Option<OptionSeriesConfig>,
}

impl MarketConfig {
    /// The funding interval (seconds) of a perp market; option series have no funding.
    pub fn funding_interval_s(&self) -> Option<u64> {
        self.funding.as_ref().map(|f| f.interval_s)
    }
}

/// Call or put.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OptionKind {
    Call,
    Put,
}

/// `[market.option]`: a European option series on the market's underlying, cash-settled in the quote asset.
///
/// A position's `base` counts contracts in native units of the underlying (one whole token = one contract on one
/// whole token); fills are at a premium in USD per whole token. See `crate::option` for marking, margin and expiry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OptionSeriesConfig {
    pub kind: OptionKind,
    /// USD per whole token of the underlying.
    pub strike: Price,
    /// Expiry, Unix seconds (UTC). Trading stops then; the first oracle price of the underlying published at or after
    /// it fixes the settlement price.
    pub expiry_s: u64,
    /// The volatility (per square root of a year) the series is marked at until a `option_vol` command sets another.
    pub mark_vol: Ratio,
    /// Continuously compounded rate per year used to discount the payoff (0 when omitted).
    #[serde(default)]
    pub rate: Ratio,
    /// Continuous dividend or staking yield of the underlying per year (0 when omitted).
    #[serde(default)]
    pub dividend_yield: Ratio,
    /// Short-option margin per contract at the initial level: `max(initial_share * S - OTM, initial_floor * S)`.
    pub initial_share: Ratio,
    pub initial_floor: Ratio,
    /// ... and at the maintenance level, with the maintenance share and floor.
    pub maintenance_share: Ratio,
    pub maintenance_floor: Ratio,
    /// A long option's value counts at this weight in initial health (0: the premium must be paid from collateral)
    /// and in full at the other levels.
    pub long_initial_weight: Ratio,
}

/// `[market.pool]`: how the counterparty liquidity pool quotes a market.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MarketPoolConfig {
    /// Price impact is `skew / impact_depth` (USD over USD), `skew` the traders' mean net position against the pool
    /// over the trade, valued at the oracle (see `engine/lp_pool.rs`)...
    pub impact_depth: Quote,
    /// ...and at most this.
    pub max_impact: Ratio,
    /// The pool's net position in the market may grow or flip only while its notional stays within this multiple of
    /// the pool's value with its unsettled profit at a haircut (its open-interest cap against pool capital).
    pub max_exposure: Ratio,
}

/// Every rule one market must meet, given the listed assets (symbol, decimals) and the perp tiers.
pub fn validate_market(
    market: &MarketConfig,
    assets: &[(String, u8)],
    tiers: &[PerpTierConfig],
) -> Vec<String> {
    let mut errors = Vec::new();
    let s = &market.symbol;
    let mut err = |field: &str, rule: String| errors.push(format!("market {s}: {field} {rule}"));
    let one = Ratio::ONE;
    let tenth = Ratio::from_raw(Ratio::ONE.raw() / 10);
    if s.is_empty()
        || s.len() > crate::limits::MAX_SYMBOL_LEN
        || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        err(
            "symbol",
            format!(
                "must be 1 to {} letters, digits or '-'",
                crate::limits::MAX_SYMBOL_LEN
            ),
        );
    }
    match assets
        .iter()
        .find(|(symbol, _)| *symbol == market.underlying)
    {
        None => err(
            "underlying",
            format!("{} is not a listed asset", market.underlying),
        ),
        Some((_, decimals)) => {
            if market.step_size <= TokenQuantity::ZERO
                || market.step_size.to_native_exact(*decimals).is_none()
            {
                err(
                    "step_size",
                    format!(
                        "{} must be positive with at most {decimals} decimal places",
                        market.step_size
                    ),
                );
            }
        }
    }
    match tiers.iter().find(|t| t.name == market.tier) {
        None => err(
            "tier",
            format!("{} is not a defined [[perp_tier]]", market.tier),
        ),
        Some(tier) => {
            let min_initial = Ratio::ONE
                .div_ceil(market.max_leverage.max(Ratio::from_raw(1)))
                .unwrap_or(one);
            if tier.initial_margin_ratio < min_initial {
                err(
                    "max_leverage",
                    format!(
                        "{} allows more leverage than tier {}'s initial_margin_ratio {}",
                        market.max_leverage, tier.name, tier.initial_margin_ratio
                    ),
                );
            }
            if market.liquidation_fee >= tier.maintenance_margin_ratio {
                err(
                    "liquidation_fee",
                    format!(
                        "{} must be below tier {}'s maintenance_margin_ratio {} (a liquidation at maintenance must be able to pay it)",
                        market.liquidation_fee, tier.name, tier.maintenance_margin_ratio
                    ),
                );
            }
        }
    }
    if market.max_leverage < one || market.max_leverage > Ratio::from_int(1000).expect("constant") {
        err(
            "max_leverage",
            format!("{} must be between 1 and 1000", market.max_leverage),
        );
    }
    if market.size_premium_factor < Ratio::ZERO || market.size_premium_factor > one {
        err(
            "size_premium_factor",
            format!("{} must be between 0 and 1", market.size_premium_factor),
        );
    }
    for (field, fee) in [
        ("taker_fee", market.taker_fee),
        ("maker_fee", market.maker_fee),
        ("liquidation_fee", market.liquidation_fee),
    ] {
        if fee < Ratio::ZERO || fee > tenth {
            err(field, format!("{fee} must be between 0 and 0.1"));
        }
    }
    if market.positive_pnl_initial_weight < Ratio::ZERO || market.positive_pnl_initial_weight > one
    {
        err(
            "positive_pnl_initial_weight",
            format!(
                "{} must be between 0 and 1",
                market.positive_pnl_initial_weight
            ),
        );
    }
    match (&market.funding, &market.option) {
        (None, None) => err(
            "funding",
            "is missing (a perp market needs [market.funding]; an option series has [market.option])".to_string(),
        ),
        (Some(_), Some(_)) => err(
            "funding",
            "is not allowed on an option series (it has [market.option])".to_string(),
        ),
        _ => {}
    }
    if let Some(funding) = &market.funding {
        if funding.interval_s == 0 || funding.interval_s > SECONDS_PER_YEAR {
            err(
                "funding.interval_s",
                "must be between 1 s and one year".to_string(),
            );
        }
        if funding.max_rate_per_interval < Ratio::ZERO || funding.max_rate_per_interval > tenth {
            err(
                "funding.max_rate_per_interval",
                format!(
                    "{} must be between 0 and 0.1",
                    funding.max_rate_per_interval
                ),
            );
        }
    }
    if let Some(option) = &market.option {
        if market.pool.is_some() {
            err(
                "pool",
                "is not allowed on an option series (the counterparty pool quotes perps only)"
                    .to_string(),
            );
        }
        for message in crate::option::validate_series(option) {
            err("option", message);
        }
    }
    if let Some(pool) = &market.pool {
        if !pool.impact_depth.is_positive() {
            err(
                "pool.impact_depth",
                format!("{} must be positive", pool.impact_depth),
            );
        }
        if !pool.max_impact.is_positive() || pool.max_impact > Ratio::from_raw(Ratio::ONE.raw() / 2)
        {
            err(
                "pool.max_impact",
                format!("{} must be above 0 and at most 0.5", pool.max_impact),
            );
        }
        if !pool.max_exposure.is_positive()
            || pool.max_exposure > Ratio::from_int(10).expect("constant")
        {
            err(
                "pool.max_exposure",
                format!("{} must be above 0 and at most 10", pool.max_exposure),
            );
        }
    }
    errors
}

/// Every rule one perp tier must meet.
pub fn validate_perp_tier(tier: &PerpTierConfig) -> Vec<String> {
    let mut errors = Vec::new();
    let n = &tier.name;
    let (imr, mmr) = (tier.initial_margin_ratio, tier.maintenance_margin_ratio);
    if mmr <= Ratio::ZERO || mmr > Ratio::ONE {
        errors.push(format!(
            "perp_tier {n}: maintenance_margin_ratio {mmr} must be above 0 and at most 1"
        ));
    }
    if imr < mmr || imr > Ratio::ONE {
        errors.push(format!(
            "perp_tier {n}: initial_margin_ratio {imr} must be at least maintenance_margin_ratio {mmr} and at most 1"
        ));
    }
    let (lower, upper) = (tier.open_interest_lower_cap, tier.open_interest_upper_cap);
    if lower <= Quote::ZERO || upper <= lower {
        errors.push(format!(
            "perp_tier {n}: open_interest_lower_cap {lower} must be positive and below open_interest_upper_cap {upper}"
        ));
    }
    if tier.insurance_cap_per_bankruptcy < Quote::ZERO {
        errors.push(format!(
            "perp_tier {n}: insurance_cap_per_bankruptcy {} is negative",
            tier.insurance_cap_per_bankruptcy
        ));
    }
    let max = Quote::from_int(crate::limits::MAX_OPEN_INTEREST_USD).expect("constant");
    if upper > max {
        errors.push(format!(
            "perp_tier {n}: open_interest_upper_cap {upper} exceeds the limit of {max}"
        ));
    }
    errors
}

/// A perp position of one sub-account. Never all zero: a flat position with no quote balance is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerpPosition {
    pub market: u16,
    /// Native units of the underlying; positive long.
    pub base: TokenAmount,
    /// Quote balance of the position (USD, micro-USD).
    pub quote: Quote,
    /// The market's funding index when this position last settled funding.
    pub funding_snapshot: Price,
}

impl PerpPosition {
    /// A flat position in market `market`, its funding settled to `funding_index`: where a new position starts.
    pub fn flat(market: u16, funding_index: Price) -> PerpPosition {
        PerpPosition {
            market,
            base: TokenAmount::ZERO,
            quote: Quote::ZERO,
            funding_snapshot: funding_index,
        }
    }
}

/// The state of one market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Market {
    /// Long open interest, native base units (equal to short open interest).
    pub open_interest: TokenAmount,
    /// Cumulative funding, USD per whole base token, accrued up to `last_funding_s`.
    pub funding_index: Price,
    pub last_funding_s: u64,
    /// The rate the last premium sample set (per funding interval), in force until `funding_rate_until_s`: one
    /// interval after the sample, so a feed that stops does not charge a stale rate for ever.
    pub funding_rate: Ratio,
    pub funding_rate_until_s: u64,
    /// Fees taken from positions, owed to the venue, micro-USD.
    pub fees_collected: Quote,
    /// The insurance fund's share of liquidation fees, taken from liquidators' positions, micro-USD.
    pub insurance_collected: Quote,
    /// Funding rounding kept by the venue, in units of 10^-(decimals + 6) micro-USD... exactly: quote raw * D.
    pub funding_dust: i128,
    /// Loss ledger of bankruptcies in this market, micro-USD: the venue's unsettled claims written off, what the
    /// insurance fund paid, and what auto-deleveraging socialized (their sum is every deficit resolved here).
    pub claims_written_off: Quote,
    pub insurance_paid: Quote,
    pub socialized_loss: Quote,
    /// After a deleveraging in this market, sub-accounts holding a position in it may not withdraw until then.
    pub withdrawals_paused_until_s: u64,
    pub reduce_only: bool,
    pub paused: bool,
    /// Margin multiplier being phased in: `from` at `phase_start_s`, `to` at `phase_start_s + phase_s`.
    pub multiplier_from: Ratio,
    pub multiplier_to: Ratio,
    pub phase_start_s: u64,
    pub phase_s: u64,
    /// Option series only: the volatility it is marked at (per square root of a year; 0 on a perp market).
    pub mark_vol: Ratio,
    /// Option series only: the underlying's first oracle price published at or after expiry, once there is one.
    pub settlement_price: Option<Price>,
}

impl Market {
    pub fn new(now_s: u64, config: &MarketConfig) -> Market {
        Market {
            open_interest: TokenAmount::ZERO,
            funding_index: Price::ZERO,
            last_funding_s: now_s,
            funding_rate: Ratio::ZERO,
            funding_rate_until_s: now_s,
            fees_collected: Quote::ZERO,
            insurance_collected: Quote::ZERO,
            funding_dust: 0,
            claims_written_off: Quote::ZERO,
            insurance_paid: Quote::ZERO,
            socialized_loss: Quote::ZERO,
            withdrawals_paused_until_s: 0,
            reduce_only: false,
            paused: false,
            multiplier_from: Ratio::ONE,
            multiplier_to: Ratio::ONE,
            phase_start_s: now_s,
            phase_s: 0,
            mark_vol: config.option.as_ref().map_or(Ratio::ZERO, |o| o.mark_vol),
            settlement_price: None,
        }
    }

    /// The margin multiplier in force at `now_s`: linear from `from` to `to` over the phase, rounded up.
    pub fn margin_multiplier(&self, now_s: u64) -> NumResult<Ratio> {
        let elapsed = now_s.saturating_sub(self.phase_start_s);
        if self.phase_s == 0 || elapsed >= self.phase_s {
            return Ok(self.multiplier_to);
        }
        let span = self.multiplier_to.checked_sub(self.multiplier_from)?;
        let moved = mul_div(
            span.raw(),
            elapsed as i128,
            self.phase_s as i128,
            Rounding::Ceil,
        )?;
        self.multiplier_from.checked_add(Ratio::from_raw(moved))
    }

    /// Accrues the funding index to `now_s` at the rate in force (while it is), valued at `oracle`: the index rises by
    /// `rate * oracle * seconds / interval_s` (rounded down), so a position pays or earns the rate for exactly the
    /// time it is held. Returns the seconds accrued at the rate.
    pub fn accrue_funding(&mut self, now_s: u64, oracle: Price, interval_s: u64) -> NumResult<u64> {
        let end = now_s.min(self.funding_rate_until_s);
        let seconds = end.saturating_sub(self.last_funding_s);
        if seconds > 0 && !self.funding_rate.is_zero() {
            let per_interval = oracle.mul_ratio(self.funding_rate, Rounding::Floor)?;
            let step = mul_div(
                per_interval.raw(),
                seconds as i128,
                interval_s as i128,
                Rounding::Floor,
            )?;
            self.funding_index = self.funding_index.checked_add(Price::from_raw(step))?;
        }
        self.last_funding_s = self.last_funding_s.max(now_s);
        Ok(seconds)
    }

    /// Settles a position's funding to this market's index, keeping the rounding remainder as funding dust.
    pub fn settle_position_funding(
        &mut self,
        position: &mut PerpPosition,
        decimals: u8,
    ) -> NumResult<()> {
        let dust = settle_funding(position, self.funding_index, decimals)?;
        self.funding_dust = self
            .funding_dust
            .checked_add(dust)
            .ok_or(ballast_num::NumError::Overflow { op: "funding dust" })?;
        Ok(())
    }

    /// Checks the exact zero-sum identity (module docs) over the market's positions.
    pub fn check_zero_sum<'a>(
        &self,
        decimals: u8,
        positions: impl Iterator<Item = &'a PerpPosition>,
    ) -> Result<(), String> {
        let d = ballast_num::pow10(decimals as u32 + ballast_num::QUOTE_DECIMALS)
            .map_err(|e| e.to_string())?;
        // Wrapping 256-bit two's complement: the true sum is far below 2^255 in magnitude, so zero mod 2^256 is zero.
        let w = |v: i128| -> U256 {
            if v >= 0 {
                U256::from(v as u128)
            } else {
                U256::ZERO.wrapping_sub(U256::from(v.unsigned_abs()))
            }
        };
        let venue = self
            .fees_collected
            .checked_add(self.insurance_collected)
            .map_err(|e| e.to_string())?;
        let mut total = w(self.funding_dust).wrapping_add(w(venue.raw()).wrapping_mul(w(d)));
        let mut base_sum = 0i128;
        let mut long = 0i128;
        for p in positions {
            total = total.wrapping_add(w(p.quote.raw()).wrapping_mul(w(d)));
            total = total.wrapping_add(w(p.base.raw()).wrapping_mul(w(p.funding_snapshot.raw())));
            base_sum = base_sum
                .checked_add(p.base.raw())
                .ok_or("positions' base overflows")?;
            long = long
                .checked_add(p.base.raw().max(0))
                .ok_or("long positions overflow")?;
        }
        if base_sum != 0 {
            return Err(format!("positions' base sums to {base_sum}, not 0"));
        }
        if long != self.open_interest.raw() {
            return Err(format!(
                "open interest {} != long positions {long}",
                self.open_interest.raw()
            ));
        }
        if !total.is_zero() {
            return Err("perp quote, funding and fees do not sum to zero".to_string());
        }
        if self.funding_dust < 0 {
            return Err("negative funding dust".to_string());
        }
        Ok(())
    }
}

/// Settles a position's funding to the market's index: `quote -= base * (F - snapshot)`, the payer paying up.
/// Returns the dust (exact units, >= 0) the venue keeps.
pub fn settle_funding(
    position: &mut PerpPosition,
    funding_index: Price,
    decimals: u8,
) -> NumResult<i128> {
    let delta = funding_index.checked_sub(position.funding_snapshot)?;
    if delta.is_zero() || position.base.is_zero() {
        position.funding_snapshot = funding_index;
        return Ok(0);
    }
    // Booked change: floor(-base * delta / D); the remainder (>= 0) is the venue's.
    let d = ballast_num::pow10(decimals as u32 + ballast_num::QUOTE_DECIMALS)?;
    let owed = position.base.checked_neg()?;
    let booked = mul_div(owed.raw(), delta.raw(), d, Rounding::Floor)?;
    // dust = -base * delta - booked * D, computed exactly with wrapping (its true value is in [0, D)).
    let dust = owed
        .raw()
        .wrapping_mul(delta.raw())
        .wrapping_sub(booked.wrapping_mul(d));
    debug_assert!((0..d).contains(&dust));
    position.quote = position.quote.checked_add(Quote::from_raw(booked))?;
    position.funding_snapshot = funding_index;
    Ok(dust)
}

/// The funding rate a premium sample sets: `clamp((mark - oracle) / oracle, ±max_rate_per_interval)` per interval.
pub fn funding_rate(mark: Price, oracle: Price, config: &FundingConfig) -> NumResult<Ratio> {
    let premium = Ratio::from_fraction(
        mark.checked_sub(oracle)?.raw(),
        oracle.raw(),
        Rounding::Floor,
    )?;
    let cap = config.max_rate_per_interval;
    Ok(premium.max(cap.checked_neg()?).min(cap))
}

/// What margin needs to know about one market at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketRisk {
    /// The underlying asset's index.
    pub underlying: u16,
    pub decimals: u8,
    /// The price positions are valued at: the underlying's oracle price for a perp, the series' mark for an option.
    pub oracle: Option<Price>,
    pub funding_index: Price,
    /// Ratios after open-interest scaling and the margin multiplier, before the size premium.
    pub initial_ratio: Ratio,
    pub maintenance_ratio: Ratio,
    pub liquidation_end_fraction: Ratio,
    pub size_premium_factor: Ratio,
    pub positive_pnl_initial_weight: Ratio,
    /// Set on an option series: what its margin reads besides the mark (`crate::option`).
    pub option: Option<crate::option::OptionRisk>,
}

impl MarketRisk {
    /// Every input except the prices (the mark and the underlying's price): what a position's price-independent
    /// parts may depend on (`crate::maintenance`).
    pub(crate) fn without_prices(&self) -> MarketRisk {
        MarketRisk {
            oracle: None,
            option: self.option.map(|o| crate::option::OptionRisk {
                underlying: None,
                ..o
            }),
            ..*self
        }
    }

    /// Both prices: the mark and, for an option series, the underlying's.
    pub(crate) fn prices(&self) -> (Option<Price>, Option<Price>) {
        (self.oracle, self.option.and_then(|o| o.underlying))
    }

    /// Health contributions of a position at the three levels: `pnl(level) - |base| * P * ratio(level)`, where
    /// pending funding is included in the PnL. All roundings go against the holder.
    pub fn contributions(&self, position: &PerpPosition) -> NumResult<crate::health::Health> {
        let Some(price) = self.oracle else {
            // No price yet: a position cannot exist (fills need a price); count the quote balance alone.
            let q = position.quote;
            return Ok(crate::health::Health {
                initial: q,
                liquidation_end: q,
                maintenance: q,
            });
        };
        let mut settled = *position;
        settle_funding(&mut settled, self.funding_index, self.decimals)?;
        let pnl = price
            .value_floor(settled.base, self.decimals)?
            .checked_add(settled.quote)?;
        if let Some(option) = &self.option {
            return self.option_contributions(option, &settled, price, pnl);
        }
        let notional = price.value_ceil(settled.base.abs()?, self.decimals)?;
        let premium = self.size_premium(settled.base)?;
        let ratio = |r: Ratio| -> NumResult<Ratio> { Ok(r.checked_add(premium)?.min(Ratio::ONE)) };
        let initial_ratio = ratio(self.initial_ratio)?;
        let maintenance_ratio = ratio(self.maintenance_ratio)?;
        let gap = initial_ratio
            .checked_sub(maintenance_ratio)?
            .max(Ratio::ZERO);
        let liquidation_end_ratio =
            maintenance_ratio.checked_add(self.liquidation_end_fraction.mul_floor(gap)?)?;
        let requirement = |r: Ratio| notional.mul_ratio_ceil(r);
        let initial_pnl = if pnl.is_positive() {
            pnl.mul_ratio_floor(self.positive_pnl_initial_weight)?
        } else {
            pnl
        };
        Ok(crate::health::Health {
            initial: initial_pnl.checked_sub(requirement(initial_ratio)?)?,
            liquidation_end: pnl.checked_sub(requirement(liquidation_end_ratio)?)?,
            maintenance: pnl.checked_sub(requirement(maintenance_ratio)?)?,
        })
    }

    /// [`MarketRisk::contributions`] of a position in an option series (margin rules in `crate::option`), given
    /// its value at the mark and its PnL.
    fn option_contributions(
        &self,
        option: &crate::option::OptionRisk,
        position: &PerpPosition,
        mark: Price,
        pnl: Quote,
    ) -> NumResult<crate::health::Health> {
        if !position.base.is_negative() {
            let value = mark.value_floor(position.base, self.decimals)?;
            let mut initial = position
                .quote
                .checked_add(value.mul_ratio_floor(option.long_initial_weight)?)?;
            if initial.is_positive() {
                initial = initial.mul_ratio_floor(self.positive_pnl_initial_weight)?;
            }
            return Ok(crate::health::Health {
                initial,
                liquidation_end: pnl,
                maintenance: pnl,
            });
        }
        let contracts = position.base.abs()?;
        let between = |maintenance: Ratio, initial: Ratio| -> NumResult<Ratio> {
            let gap = initial.checked_sub(maintenance)?.max(Ratio::ZERO);
            maintenance.checked_add(self.liquidation_end_fraction.mul_floor(gap)?)
        };
        let requirement = |share: Ratio, floor: Ratio| {
            option.short_requirement(contracts, self.decimals, share, floor)
        };
        let initial_pnl = if pnl.is_positive() {
            pnl.mul_ratio_floor(self.positive_pnl_initial_weight)?
        } else {
            pnl
        };
        Ok(crate::health::Health {
            initial: initial_pnl
                .checked_sub(requirement(option.initial_share, option.initial_floor)?)?,
            liquidation_end: pnl.checked_sub(requirement(
                between(option.maintenance_share, option.initial_share)?,
                between(option.maintenance_floor, option.initial_floor)?,
            )?)?,
            maintenance: pnl.checked_sub(requirement(
                option.maintenance_share,
                option.maintenance_floor,
            )?)?,
        })
    }

    /// The size premium added to the margin ratios for a position of `base`: `f * (floor(sqrt(|base| in whole
    /// tokens)) + 1 raw unit)`, rounded up; zero when `f == 0` or the position is flat.
    fn size_premium(&self, base: TokenAmount) -> NumResult<Ratio> {
        if self.size_premium_factor.is_zero() || base.is_zero() {
            return Ok(Ratio::ZERO);
        }
        let size = base.abs()?.whole_tokens(self.decimals, Rounding::Ceil)?;
        self.size_premium_factor
            .mul_ceil(Ratio::from_raw(size.sqrt_floor()?.raw() + 1))
    }

    /// `self.contributions(position).map(|h| h.maintenance)`, exactly (same value, same error), computing only the
    /// maintenance level: the oracle hot path ([`crate::engine`]'s `maintenance_health`).
    ///
    /// It takes unsigned 128-bit fast paths where they provably give the general code's result, and the general
    /// code ([`MarketRisk::contributions`]) for anything else, errors included. The fast path needs a positive
    /// price, `decimals <= 18`, `base != i128::MIN`, and every ratio of the market (initial, maintenance,
    /// liquidation-end fraction, size premium factor, positive-PnL weight) in `[0, 1]`. Then:
    ///
    /// * **Funding.** `settle_funding` books `floor(-base * delta / D)` (`D = 10^(decimals + 6)`): with
    ///   `p = |base| * |delta|` in u128, that is `p / D` when `-base * delta >= 0` and `-ceil(p / D)` otherwise.
    ///   Overflow of the index difference, the product or the new quote balance takes the general code.
    /// * **Value and notional.** `value_floor(base)` and `value_ceil(|base|)` are `floor` and `ceil` of
    ///   `base * price / V` (`V = 10^(decimals + 6)`): one unsigned division `|base| * price = q * V + r` gives
    ///   `q` (rounded up when `r != 0`) for the notional, `q` or `-(q + (r != 0))` for the value. Both fit in i128
    ///   (`q < 2^128 / 10^6`).
    /// * **Premium.** As in the spot premium (`health.rs`): for `decimals <= 18`, `whole_tokens` is exact,
    ///   `|base| * 10^(18 - decimals)`, so its `sqrt_floor` is `floor(sqrt(|base| * 10^(36 - decimals)))`. When
    ///   that radicand fits in u128 (below 340 whole tokens) the table-seeded `sqrt_u128_floor` gives it exactly,
    ///   the root is below 2^64, and `f * (root + 1)` (`f <= 10^18`) fits in u128 for the rounded-up division.
    ///   Larger positions take the general premium code itself, errors included (everything before it has
    ///   succeeded with the general code's values, so the general code would fail at the same step).
    /// * **Requirement.** `ceil(notional * min(maintenance + premium, 1) / 10^18)`, in u128 when the product fits,
    ///   otherwise `mul_ratio_ceil` itself.
    /// * **The levels not computed cannot fail.** With every ratio in `[0, 1]` and a non-negative premium, the
    ///   initial, maintenance and liquidation-end ratios are in `[0, 1]` (the last is at most
    ///   `maintenance + gap = max(initial, maintenance)`), so no ratio step overflows, every requirement is in
    ///   `[0, notional]` and the weighted positive PnL is in `[0, pnl]`. Each level is then `pnl' - requirement`
    ///   with both terms non-negative when the PnL is positive, or at least `pnl - notional` when it is not; the
    ///   fast path checks that this last difference fits, so the general code would not have failed at the
    ///   initial or liquidation-end level before reaching the maintenance one.
    pub fn maintenance_contribution(&self, position: &PerpPosition) -> NumResult<Quote> {
        match self.maintenance_fast(position) {
            Some(result) => result,
            None => self.contributions(position).map(|h| h.maintenance),
        }
    }

    /// The fast path of [`MarketRisk::maintenance_contribution`]: `None` sends the position to the general code.
    ///
    /// It runs in two parts: [`MarketRisk::maintenance_parts`] (funding and the capped ratio, which do not depend on
    /// the price) and [`MarketRisk::maintenance_at_price`] (value, notional and requirement). The split changes no
    /// result: the premium is computed before the value here, but it is pure, and its error is reported only after
    /// the price steps have succeeded, as when it came after them. That lets the oracle hot path keep the parts of
    /// each position between price updates (`crate::maintenance`).
    #[inline]
    fn maintenance_fast(&self, position: &PerpPosition) -> Option<NumResult<Quote>> {
        let Some(price) = self.oracle else {
            return Some(Ok(position.quote));
        };
        let parts = self.maintenance_parts(position)?;
        self.maintenance_at_price(position.base, &parts, price)
    }

    /// The steps of the maintenance fast path that do not depend on the price: the domain check (all but the
    /// price's sign), pending funding, and the maintenance ratio with the size premium, capped at 1. `None` sends
    /// the position to the general code ([`MarketRisk::contributions`]).
    ///
    /// The parts are a function of the position and of every field of `self` except `oracle`.
    #[inline]
    pub(crate) fn maintenance_parts(&self, position: &PerpPosition) -> Option<MaintenanceParts> {
        const ONE: i128 = ballast_num::RATIO_SCALE;
        let in_unit = |r: Ratio| (0..=ONE).contains(&r.raw());
        let base = position.base.raw();
        if self.option.is_some()
            || self.decimals > 18
            || base == i128::MIN
            || !(in_unit(self.initial_ratio)
                && in_unit(self.maintenance_ratio)
                && in_unit(self.liquidation_end_fraction)
                && in_unit(self.size_premium_factor)
                && in_unit(self.positive_pnl_initial_weight))
        {
            return None;
        }
        let decimals = self.decimals as usize;
        // `D` of `settle_funding` is 10^(decimals + 6).
        let divisor = POW10[decimals + ballast_num::QUOTE_DECIMALS as usize];
        let magnitude = base.unsigned_abs();

        // Funding: quote += floor(-base * delta / D).
        let delta = self
            .funding_index
            .raw()
            .checked_sub(position.funding_snapshot.raw())?;
        let mut quote = position.quote.raw();
        if delta != 0 && base != 0 {
            let paid = magnitude.checked_mul(delta.unsigned_abs())?;
            let booked = if (base > 0) != (delta > 0) {
                (paid / divisor) as i128
            } else {
                -(paid.div_ceil(divisor) as i128)
            };
            quote = quote.checked_add(booked)?;
        }

        // Size premium, then the maintenance ratio capped at 1.
        let factor = self.size_premium_factor.raw() as u128;
        let premium = if factor == 0 || base == 0 {
            Ok(0)
        } else {
            match magnitude.checked_mul(POW10[36 - decimals]) {
                Some(radicand) => {
                    let root = ballast_num::math::sqrt_u128_floor(radicand) + 1;
                    Ok((factor * root).div_ceil(ONE as u128) as i128)
                }
                None => self.size_premium(position.base).map(|p| p.raw()),
            }
        };
        // No overflow: the ratio is at most 10^18 and the premium at most `root + 1`, below 2^94.
        let ratio = premium.map(|premium| (self.maintenance_ratio.raw() + premium).min(ONE));
        Some(MaintenanceParts { quote, ratio })
    }

    /// The steps of the maintenance fast path that depend on the price, for a position of `base` with `parts`
    /// (computed by [`MarketRisk::maintenance_parts`] for that position, with a risk equal to `self` in every field
    /// but `oracle`). `None` sends the position to the general code.
    #[inline]
    pub(crate) fn maintenance_at_price(
        &self,
        base: TokenAmount,
        parts: &MaintenanceParts,
        price: Price,
    ) -> Option<NumResult<Quote>> {
        const ONE: i128 = ballast_num::RATIO_SCALE;
        let price = price.raw();
        if price <= 0 {
            return None;
        }
        let base = base.raw();
        let magnitude = base.unsigned_abs();
        // The divisor `V` of `Price::value` is 10^(decimals + 6); `maintenance_parts` checked decimals <= 18.
        let divisor = POW10[self.decimals as usize + ballast_num::QUOTE_DECIMALS as usize];

        // Value (rounded down) and notional (rounded up) from one division.
        let product = magnitude.checked_mul(price as u128)?;
        let (q, r) = (product / divisor, product % divisor);
        let notional = (q + (r != 0) as u128) as i128;
        let value = if base >= 0 { q as i128 } else { -notional };
        let pnl = value.checked_add(parts.quote)?;
        if pnl <= 0 {
            pnl.checked_sub(notional)?;
        }

        // Requirement at the maintenance ratio, capped at 1 (in the parts, with the premium's error if any).
        let ratio = match parts.ratio {
            Ok(ratio) => ratio,
            Err(e) => return Some(Err(e)),
        };
        let requirement = match (notional as u128).checked_mul(ratio as u128) {
            Some(p) => p.div_ceil(ONE as u128) as i128,
            None => match Quote::from_raw(notional).mul_ratio_ceil(Ratio::from_raw(ratio)) {
                Ok(requirement) => requirement.raw(),
                Err(e) => return Some(Err(e)),
            },
        };
        Some(Ok(Quote::from_raw(pnl - requirement)))
    }
}

/// `10^i` for `i < 37`.
const POW10: [u128; 37] = {
    let mut t = [1u128; 37];
    let mut i = 1;
    while i < 37 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// The price-independent part of a position's maintenance contribution ([`MarketRisk::maintenance_parts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MaintenanceParts {
    /// The position's quote balance after pending funding (micro-USD raw).
    pub quote: i128,
    /// `min(maintenance ratio + size premium, 1)`, raw (10^18 = 1), in `[0, 10^18]`; or the general premium code's
    /// error for a position of 340 whole tokens or more.
    pub ratio: NumResult<i128>,
}

/// The initial margin ratio of a tier at open interest `oi` (quote): the tier's ratio up to the lower cap, rising
/// linearly to 1 at the upper cap, rounded up.
pub fn open_interest_initial_ratio(tier: &PerpTierConfig, oi: Quote) -> NumResult<Ratio> {
    let (lower, upper) = (tier.open_interest_lower_cap, tier.open_interest_upper_cap);
    if oi <= lower {
        return Ok(tier.initial_margin_ratio);
    }
    if oi >= upper {
        return Ok(Ratio::ONE);
    }
    let span = Ratio::ONE.checked_sub(tier.initial_margin_ratio)?;
    let rise = mul_div(
        span.raw(),
        oi.raw() - lower.raw(),
        upper.raw() - lower.raw(),
        Rounding::Ceil,
    )?;
    tier.initial_margin_ratio.checked_add(Ratio::from_raw(rise))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn tier() -> PerpTierConfig {
        PerpTierConfig {
            name: "t".into(),
            initial_margin_ratio: "0.05".parse().unwrap(),
            maintenance_margin_ratio: "0.03".parse().unwrap(),
            open_interest_lower_cap: "1000000".parse().unwrap(),
            open_interest_upper_cap: "3000000".parse().unwrap(),
            insurance_cap_per_bankruptcy: "100000".parse().unwrap(),
        }
    }

    #[test]
    fn initial_ratio_rises_linearly_with_open_interest() {
        let t = tier();
        let cases = [
            ("0", "0.05"),
            ("1000000", "0.05"),
            ("2000000", "0.525"),
            ("3000000", "1"),
            ("9000000", "1"),
        ];
        for (oi, expected) in cases {
            // 0.05 + (1 - 0.05) * (oi - 1M) / 2M
            assert_eq!(
                open_interest_initial_ratio(&t, oi.parse().unwrap()).unwrap(),
                expected.parse().unwrap(),
                "{oi}"
            );
        }
    }

    #[test]
    fn funding_rounds_against_both_sides_and_keeps_the_remainder() {
        let long = PerpPosition {
            market: 0,
            base: TokenAmount::from_raw(1),
            quote: Quote::ZERO,
            funding_snapshot: Price::ZERO,
        };
        let short = PerpPosition {
            base: TokenAmount::from_raw(-1),
            ..long
        };
        let index = Price::from_raw(7); // tiny move: 1 native unit * 7 / 10^(8+6)
        let (mut l, mut s) = (long, short);
        let dust_long = settle_funding(&mut l, index, 8).unwrap();
        let dust_short = settle_funding(&mut s, index, 8).unwrap();
        assert_eq!(l.quote.raw(), -1); // the payer pays up
        assert_eq!(s.quote.raw(), 0); // the receiver receives down
        let d = 10i128.pow(14);
        assert_eq!(dust_long + dust_short, d); // -(7) - (-1 * D) + (7 - 0) = D
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 40_000,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED_0043),
            failure_persistence: None,
            ..Default::default()
        })]
        /// The maintenance-only hot path gives `contributions`' maintenance level to the last raw unit, and the same
        /// error when it fails: long and short, flat and whale-sized positions, pending funding either way, with and
        /// without a size premium, and now and then a parameter outside the fast path's domain.
        #[test]
        fn maintenance_contribution_equals_the_general_path(
            decimals in proptest::prop_oneof![
                20 => 0u8..=18,
                1 => proptest::strategy::Just(30u8),
                1 => proptest::strategy::Just(31u8),
            ],
            oracle in proptest::prop_oneof![
                10 => (1i128..10i128.pow(20)).prop_map(Some),
                2 => (1i128..10i128.pow(8)).prop_map(Some),
                1 => proptest::strategy::Just(None),
                1 => proptest::num::i128::ANY.prop_map(Some),
            ],
            funding_index in signed_wide(),
            snapshot in signed_wide(),
            initial in ratio(),
            maintenance in ratio(),
            fraction in ratio(),
            factor in proptest::prop_oneof![
                proptest::strategy::Just(0i128),
                ratio(),
            ],
            weight in ratio(),
            base in proptest::prop_oneof![
                2 => proptest::strategy::Just(0i128),
                40 => signed_up_to(30),
                1 => proptest::strategy::Just(i128::MIN),
                1 => proptest::strategy::Just(i128::MAX),
            ],
            quote in signed_wide(),
        ) {
            let risk = MarketRisk {
                underlying: 0,
                decimals,
                oracle: oracle.map(Price::from_raw),
                funding_index: Price::from_raw(funding_index),
                initial_ratio: Ratio::from_raw(initial),
                maintenance_ratio: Ratio::from_raw(maintenance),
                liquidation_end_fraction: Ratio::from_raw(fraction),
                size_premium_factor: Ratio::from_raw(factor),
                positive_pnl_initial_weight: Ratio::from_raw(weight),
                option: None,
            };
            let position = PerpPosition {
                market: 0,
                base: TokenAmount::from_raw(base),
                quote: Quote::from_raw(quote),
                funding_snapshot: Price::from_raw(snapshot),
            };
            proptest::prop_assert_eq!(
                risk.maintenance_contribution(&position),
                risk.contributions(&position).map(|h| h.maintenance)
            );
        }
    }

    /// A ratio in [0, 1] raw units, its ends, and now and then one outside it.
    fn ratio() -> impl proptest::strategy::Strategy<Value = i128> {
        use proptest::strategy::Just;
        proptest::prop_oneof![
            60 => 0i128..=Ratio::ONE.raw(),
            6 => Just(0i128),
            6 => Just(Ratio::ONE.raw()),
            1 => -Ratio::ONE.raw()..0,
            1 => Ratio::ONE.raw() + 1..=i128::MAX,
            1 => Just(i128::MIN),
        ]
    }

    /// A value of either sign up to `10^max_exp` in magnitude, its order of magnitude uniform.
    fn signed_up_to(max_exp: u32) -> impl proptest::strategy::Strategy<Value = i128> {
        (0..=max_exp).prop_flat_map(|e| -10i128.pow(e)..=10i128.pow(e))
    }

    /// A signed value from small to about 10^30 raw units, of either sign, and now and then an extreme one.
    fn signed_wide() -> impl proptest::strategy::Strategy<Value = i128> {
        proptest::prop_oneof![
            40 => signed_up_to(30),
            1 => proptest::num::i128::ANY,
            1 => proptest::strategy::Just(i128::MIN),
            1 => proptest::strategy::Just(i128::MAX),
        ]
    }
}
