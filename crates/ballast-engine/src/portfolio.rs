//! Portfolio margin: a sub-account's requirement is the worst loss of its whole book over a grid of scenarios.
//!
//! A sub-account opened with `"margin": "portfolio"` is margined this way instead of by weights and ratios
//! (`crate::health`). Everything it holds is grouped by underlying asset: its balance in the asset (deposit or
//! debt), its perps on the asset and its options on the asset. The quote asset is not shocked (it is the unit
//! health is counted in).
//!
//! ## Scenarios (`[portfolio_margin]` in the protocol file; defaults in the spirit of Deribit's)
//!
//! * **Core**: every price move `m` in `price_moves` (default -16 % to +16 % in steps of 4 %) crossed with three
//!   volatility states: down, unchanged, up. An option marked at volatility `v` with `T` years to expiry is revalued
//!   at `v * (1 + vol_shock_up * f)` and `v * (1 - vol_shock_down * f)` (never below 1 %), where
//!   `f = clamp(sqrt(vol_shock_reference_days / days to expiry), 1, vol_shock_max_multiplier)`: short expiries get
//!   larger volatility shocks, as their implied volatility moves most.
//! * **Extended tail**: every move in `tail_moves` (default -50 %, -33 %, +33 %, +50 %) at unchanged volatility,
//!   its loss counted at `tail_weight` (default 0.3). Linear books are bounded by the core grid; these catch short
//!   out-of-the-money options whose loss explodes beyond it.
//!
//! In a scenario the underlying's price becomes `S * (1 + m)`. A balance or perp of `n` whole tokens changes in value
//! by `n * S * m`; an option by `n * (V' - mark)` with `V'` its Black-Scholes value at the shocked price and
//! volatility, the same time to expiry (`crate::option`; an option whose settlement price is fixed does not move).
//! Each group's loss in a scenario is minus the sum of its holdings' changes; per group:
//!
//! ```text
//! requirement(group) = max(0, max over scenarios of weight * loss) + contingency(group)
//! contingency(group) = short_option_contingency * S * (contracts of short options)
//!                    + perp_contingency * S * (|base| of each perp)
//! maintenance requirement MM = sum over groups        (no offset between underlyings)
//! ```
//!
//! Health: equity `E` is every balance at the oracle price and every position's PnL at its mark, unweighted (the
//! scenarios replace the weights); maintenance `= E - MM`, liquidation-end `= E - LE` with `LE` between `MM` and
//! `initial_multiple * MM` at `liquidation_end_fraction` (as for weights), and initial `= E' - initial_multiple *
//! MM` where `E'` values balances at the conservative price of their side, as standard initial health does (a
//! deposit at `min(oracle, reference)`, a debt at `max`; positions at their mark, as a perp's PnL is there). For new risk, as elsewhere, a deposit whose price is
//! stale, uncertain or divergent counts zero (and leaves the scenarios) and a debt or position on such an asset
//! blocks the check.
//!
//! ## Rounding, exactly
//!
//! Per-token changes are [`Price`]s rounded down; a negative amount uses the change plus one raw unit, an upper
//! bound of the true change, so every product `amount * change` is at most its true value. A group's products are
//! summed exactly (all its holdings share the asset's decimals) and rounded down once, so each scenario's loss is
//! rounded up; the tail weight and the contingencies round up; equity rounds down.
//! Not modelled (documented limits): interest accrual inside the scenarios, funding, the size of a position
//! against market depth (the contingencies are the only add-on), correlation between underlyings (none is
//! assumed: requirements add up).

use crate::option::OptionRisk;
use crate::perp::MarketRisk;
use ballast_num::{NumError, NumResult, Price, Quote, Ratio, Rounding, TokenAmount};
use serde::{Deserialize, Serialize};

/// Most price moves in either list.
pub const MAX_MOVES: usize = 32;
/// Most scenarios a grid has: every core move with three volatility states, and every tail move.
pub const MAX_SCENARIOS: usize = 4 * MAX_MOVES;

// `requirement`'s fast path bounds a group's sum by 64 terms.
const _: () = assert!(
    crate::limits::MAX_BALANCES_PER_SUB_ACCOUNT + crate::limits::MAX_PERP_POSITIONS_PER_SUB_ACCOUNT
        <= 64
);

/// `[portfolio_margin]`: the scenario grid and add-ons. Every field has a default.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PortfolioMarginConfig {
    /// Core price moves (fractions, e.g. `"-0.16"`), each with the three volatility states.
    pub price_moves: Vec<Ratio>,
    /// Relative volatility shocks of the core grid, before the short-expiry multiplier.
    pub vol_shock_up: Ratio,
    pub vol_shock_down: Ratio,
    /// Expiries shorter than this many days get larger volatility shocks, by `sqrt(reference / days)`...
    pub vol_shock_reference_days: u64,
    /// ...at most this multiple.
    pub vol_shock_max_multiplier: Ratio,
    /// Extended tail moves, at unchanged volatility, their loss counted at `tail_weight`.
    pub tail_moves: Vec<Ratio>,
    pub tail_weight: Ratio,
    /// Add-on per contract of a short option, as a fraction of the underlying's price.
    pub short_option_contingency: Ratio,
    /// Add-on per whole token of a perp position, as a fraction of the underlying's price.
    pub perp_contingency: Ratio,
    /// Initial requirement = this multiple of the maintenance requirement (at least 1).
    pub initial_multiple: Ratio,
    /// A portfolio liquidation's fee, as a fraction of the maintenance requirement it releases (below 1, so that
    /// every step improves health; `crate::engine` portfolio liquidation).
    pub liquidation_fee: Ratio,
}

fn ratio(text: &str) -> Ratio {
    text.parse().expect("constant")
}

impl Default for PortfolioMarginConfig {
    fn default() -> Self {
        PortfolioMarginConfig {
            price_moves: [
                "-0.16", "-0.12", "-0.08", "-0.04", "0", "0.04", "0.08", "0.12", "0.16",
            ]
            .map(ratio)
            .to_vec(),
            vol_shock_up: ratio("0.5"),
            vol_shock_down: ratio("0.3"),
            vol_shock_reference_days: 30,
            vol_shock_max_multiplier: ratio("3"),
            tail_moves: ["-0.5", "-0.33", "0.33", "0.5"].map(ratio).to_vec(),
            tail_weight: ratio("0.3"),
            short_option_contingency: ratio("0.01"),
            perp_contingency: ratio("0.005"),
            initial_multiple: ratio("1.3"),
            liquidation_fee: ratio("0.25"),
        }
    }
}

/// Every rule the section must meet (messages name the field).
pub fn validate(config: &PortfolioMarginConfig) -> Vec<String> {
    let mut errors = Vec::new();
    let one = Ratio::ONE;
    let minus_one = Ratio::from_raw(-Ratio::SCALE);
    for (field, moves, high) in [
        ("price_moves", &config.price_moves, one),
        (
            "tail_moves",
            &config.tail_moves,
            Ratio::from_raw(10 * Ratio::SCALE),
        ),
    ] {
        if moves.len() > MAX_MOVES {
            errors.push(format!(
                "{field} lists {} moves, at most {MAX_MOVES}",
                moves.len()
            ));
        }
        for m in moves {
            if *m <= minus_one || *m > high {
                errors.push(format!("{field}: {m} must be above -1 and at most {high}"));
            }
        }
    }
    if config.price_moves.is_empty() {
        errors.push("price_moves must list at least one move".to_string());
    }
    for (field, value) in [
        ("vol_shock_up", config.vol_shock_up),
        ("vol_shock_down", config.vol_shock_down),
        ("tail_weight", config.tail_weight),
        ("short_option_contingency", config.short_option_contingency),
        ("perp_contingency", config.perp_contingency),
    ] {
        if value < Ratio::ZERO || value > one {
            errors.push(format!("{field} {value} must be between 0 and 1"));
        }
    }
    if config.vol_shock_reference_days == 0 || config.vol_shock_reference_days > 3650 {
        errors.push(format!(
            "vol_shock_reference_days {} must be between 1 and 3650",
            config.vol_shock_reference_days
        ));
    }
    let ten = Ratio::from_raw(10 * Ratio::SCALE);
    if config.vol_shock_max_multiplier < one || config.vol_shock_max_multiplier > ten {
        errors.push(format!(
            "vol_shock_max_multiplier {} must be between 1 and 10",
            config.vol_shock_max_multiplier
        ));
    }
    if config.liquidation_fee < Ratio::ZERO || config.liquidation_fee >= one {
        errors.push(format!(
            "liquidation_fee {} must be at least 0 and below 1 (a share of the requirement a liquidation releases)",
            config.liquidation_fee
        ));
    }
    if config.initial_multiple < one || config.initial_multiple > ten {
        errors.push(format!(
            "initial_multiple {} must be between 1 and 10",
            config.initial_multiple
        ));
    }
    errors
}

/// A scenario's volatility state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolShock {
    Down,
    Unchanged,
    Up,
}

/// One scenario of the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub price_move: Ratio,
    pub vol: VolShock,
    /// 1 for the core grid, `tail_weight` for the extended tail.
    pub weight: Ratio,
}

/// The grid built from a validated configuration: core moves x (down, unchanged, up), then the tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grid {
    pub config: PortfolioMarginConfig,
    pub scenarios: Vec<Scenario>,
}

impl Grid {
    pub fn new(config: PortfolioMarginConfig) -> Grid {
        let mut scenarios = Vec::new();
        for &price_move in &config.price_moves {
            for vol in [VolShock::Down, VolShock::Unchanged, VolShock::Up] {
                scenarios.push(Scenario {
                    price_move,
                    vol,
                    weight: Ratio::ONE,
                });
            }
        }
        for &price_move in &config.tail_moves {
            scenarios.push(Scenario {
                price_move,
                vol: VolShock::Unchanged,
                weight: config.tail_weight,
            });
        }
        Grid { config, scenarios }
    }

    /// The change of one whole token of a linear holding (a balance or a perp) at `price` in every scenario:
    /// `price * move`, rounded down.
    pub fn linear_deltas(&self, price: Price) -> NumResult<Vec<Price>> {
        self.scenarios
            .iter()
            .map(|s| price.mul_ratio(s.price_move, Rounding::Floor))
            .collect()
    }

    /// The change of one contract of a market in every scenario: linear for a perp (its `oracle` is the
    /// underlying's price), a full revaluation for an option (zero once its settlement price is fixed).
    pub fn market_deltas(&self, risk: &MarketRisk) -> NumResult<Vec<Price>> {
        let Some(mark) = risk.oracle else {
            return Ok(vec![Price::ZERO; self.scenarios.len()]);
        };
        match &risk.option {
            None => self.linear_deltas(mark),
            Some(option) if option.settled => Ok(vec![Price::ZERO; self.scenarios.len()]),
            Some(option) => {
                let spot = option.underlying.ok_or(NumError::Domain {
                    op: "option without an underlying price",
                })?;
                let multiplier = self.vol_multiplier(option)?;
                let up = option.vol.mul_ceil(
                    Ratio::ONE.checked_add(self.config.vol_shock_up.mul_ceil(multiplier)?)?,
                )?;
                let down = option
                    .vol
                    .mul_floor(
                        Ratio::ONE
                            .checked_sub(self.config.vol_shock_down.mul_ceil(multiplier)?)?
                            .max(Ratio::ZERO),
                    )?
                    .max(MIN_SHOCKED_VOL);
                self.scenarios
                    .iter()
                    .map(|s| {
                        let vol = match s.vol {
                            VolShock::Down => down,
                            VolShock::Unchanged => option.vol,
                            VolShock::Up => up.min(crate::option::MAX_MARK_VOL),
                        };
                        // Within the pricer's domain: at least one raw unit, at most the highest oracle price.
                        let shocked = spot
                            .checked_add(spot.mul_ratio(s.price_move, Rounding::Floor)?)?
                            .max(Price::from_raw(1))
                            .min(crate::limits::MAX_PRICE);
                        let value = crate::option::model_price(
                            option.kind,
                            shocked,
                            option.strike,
                            vol,
                            option.years,
                            option.rate,
                            option.dividend_yield,
                        )?;
                        value.checked_sub(mark)
                    })
                    .collect()
            }
        }
    }

    /// `clamp(sqrt(reference_days / days to expiry), 1, max multiplier)`, rounded up.
    fn vol_multiplier(&self, option: &OptionRisk) -> NumResult<Ratio> {
        let max = self.config.vol_shock_max_multiplier;
        let days = option.years.raw().saturating_mul(365);
        if days <= 0 {
            return Ok(max);
        }
        let reference = (self.config.vol_shock_reference_days as i128) * Ratio::SCALE;
        if days >= reference {
            return Ok(Ratio::ONE);
        }
        let quotient = Ratio::from_fraction(reference, days, Rounding::Ceil)?;
        if quotient >= max.mul_ceil(max)? {
            return Ok(max);
        }
        let root = Ratio::from_raw(quotient.sqrt_floor()?.raw() + 1);
        Ok(root.min(max).max(Ratio::ONE))
    }
}

/// The lowest volatility a down shock reaches (1 %).
pub const MIN_SHOCKED_VOL: Ratio = Ratio::from_raw(Ratio::SCALE / 100);

/// One holding of a portfolio-margined sub-account, as the requirement sees it.
#[derive(Clone, Copy, Debug)]
pub struct Holding<'a> {
    /// The underlying asset: holdings are grouped by it.
    pub group: u16,
    /// Native units of the underlying (a balance, a perp's base, an option's contracts); signed.
    pub amount: TokenAmount,
    /// The underlying's decimals.
    pub decimals: u8,
    /// Value of one whole token or contract now (the oracle price of a balance, the mark of a position).
    pub price: Price,
    /// Change of one whole token or contract in each scenario of the grid.
    pub deltas: &'a [Price],
    /// Contingency add-on per whole token or contract of the holding's size (zero for most), rounded up.
    pub contingency_price: Price,
}

/// What [`evaluate`] finds for a set of holdings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    /// Their value now, rounded down once per group.
    pub value: Quote,
    /// The maintenance requirement: worst weighted loss per group plus contingencies (module docs).
    pub requirement: Quote,
}

/// The value and the maintenance requirement of a set of holdings over `grid` (module docs). The holdings are sorted
/// by group. Per group, every product `amount * per-token number` is summed exactly in `i128` and rounded once
/// (value down, loss and contingency up); a group too large for that is rounded holding by holding instead, in the
/// same directions.
pub fn evaluate(holdings: &mut [Holding], grid: &Grid) -> NumResult<Totals> {
    holdings.sort_by_key(|h| h.group);
    let n = grid.scenarios.len();
    let mut totals = Totals {
        value: Quote::ZERO,
        requirement: Quote::ZERO,
    };
    let mut sums_storage = [0i128; MAX_SCENARIOS];
    let sums = &mut sums_storage[..n];
    let mut start = 0;
    while start < holdings.len() {
        let group = holdings[start].group;
        let end = start
            + holdings[start..]
                .iter()
                .take_while(|h| h.group == group)
                .count();
        let members = &holdings[start..end];
        let decimals = members[0].decimals;
        if members.iter().any(|h| {
            h.deltas.len() != n || h.decimals != decimals || h.contingency_price.is_negative()
        }) {
            return Err(NumError::Domain {
                op: "portfolio holding",
            });
        }
        let divisor = ballast_num::pow10(decimals as u32 + ballast_num::QUOTE_DECIMALS)?;
        let (value, worst, contingency) = match exact_sums(members, sums) {
            Some((value_sum, contingency_sum)) => (
                Quote::from_raw(value_sum.div_euclid(divisor)),
                worst_loss(sums, grid, |sum| {
                    Ok(Quote::from_raw(sum.div_euclid(divisor)))
                })?,
                Quote::from_raw(
                    contingency_sum.div_euclid(divisor)
                        + (contingency_sum.rem_euclid(divisor) != 0) as i128,
                ),
            ),
            None => rounded_each(members, grid, decimals)?,
        };
        totals.value = totals.value.checked_add(value)?;
        totals.requirement = totals
            .requirement
            .checked_add(worst)?
            .checked_add(contingency)?;
        start = end;
    }
    Ok(totals)
}

/// A group's exact sums: each scenario's change into `sums`, and (value, contingency), all in units of
/// `10^-(decimals + 6)` USD; `None` if one of them would overflow. A negative amount's change uses the per-token
/// change plus one raw unit (an upper bound of the true change).
fn exact_sums(members: &[Holding], sums: &mut [i128]) -> Option<(i128, i128)> {
    sums.iter_mut().for_each(|s| *s = 0);
    let (mut value, mut contingency) = (0i128, 0i128);
    // While every holding so far has |amount| * (its largest per-token number + 1) <= i128::MAX / 64, no product and
    // no partial sum (at most 64 holdings) can overflow: plain arithmetic gives the checked result. After the first
    // holding that does not, the rest of the group is checked.
    let mut all_small = true;
    for h in members {
        let amount = h.amount.raw();
        if amount == 0 {
            continue;
        }
        let bump = (amount < 0) as i128;
        let largest = h
            .deltas
            .iter()
            .map(|d| d.raw().unsigned_abs())
            .chain([
                h.price.raw().unsigned_abs(),
                h.contingency_price.raw().unsigned_abs(),
            ])
            .max()
            .unwrap_or(0);
        all_small &= largest
            .checked_add(1)
            .and_then(|l| l.checked_mul(amount.unsigned_abs()))
            .is_some_and(|p| p <= i128::MAX as u128 / 64);
        if all_small {
            match i64::try_from(amount) {
                // Both factors fit in 64 bits (the amount, and every per-token change plus the bump, which is at
                // most `largest + 1 <= i64::MAX`): one widening multiply each, the same products.
                Ok(narrow) if largest < i64::MAX as u128 => {
                    for (sum, delta) in sums.iter_mut().zip(h.deltas) {
                        let d = (delta.raw() + bump) as i64;
                        *sum = sum.wrapping_add(narrow as i128 * d as i128);
                    }
                }
                _ => {
                    for (sum, delta) in sums.iter_mut().zip(h.deltas) {
                        *sum =
                            sum.wrapping_add(amount.wrapping_mul(delta.raw().wrapping_add(bump)));
                    }
                }
            }
            value = value.wrapping_add(amount.wrapping_mul(h.price.raw()));
            contingency = contingency.wrapping_add(
                amount
                    .wrapping_abs()
                    .wrapping_mul(h.contingency_price.raw()),
            );
            continue;
        }
        for (sum, delta) in sums.iter_mut().zip(h.deltas) {
            *sum = sum.checked_add(amount.checked_mul(delta.raw().checked_add(bump)?)?)?;
        }
        value = value.checked_add(amount.checked_mul(h.price.raw())?)?;
        contingency = contingency.checked_add(
            amount
                .checked_abs()?
                .checked_mul(h.contingency_price.raw())?,
        )?;
    }
    Some((value, contingency))
}

/// A group too large for exact sums: (value, worst loss, contingency) with each holding rounded on its own, in the
/// same directions, and checked sums.
fn rounded_each(
    members: &[Holding],
    grid: &Grid,
    decimals: u8,
) -> NumResult<(Quote, Quote, Quote)> {
    let n = grid.scenarios.len();
    let mut changes = vec![0i128; n];
    let (mut value, mut contingency) = (Quote::ZERO, Quote::ZERO);
    for h in members {
        let bump = h.amount.is_negative() as i128;
        for (change, delta) in changes.iter_mut().zip(h.deltas) {
            let delta =
                Price::from_raw(delta.raw().checked_add(bump).ok_or(NumError::Overflow {
                    op: "portfolio delta",
                })?);
            *change = change
                .checked_add(delta.value_floor(h.amount, decimals)?.raw())
                .ok_or(NumError::Overflow {
                    op: "portfolio change",
                })?;
        }
        value = value.checked_add(h.price.value_floor(h.amount, decimals)?)?;
        contingency =
            contingency.checked_add(h.contingency_price.value_ceil(h.amount.abs()?, decimals)?)?;
    }
    let worst = worst_loss(&changes, grid, |v| Ok(Quote::from_raw(v)))?;
    Ok((value, worst, contingency))
}

/// `max(0, max over scenarios of weight * loss)`, with `change(sum)` the group's change in value (rounded down).
fn worst_loss(
    sums: &[i128],
    grid: &Grid,
    change: impl Fn(i128) -> NumResult<Quote>,
) -> NumResult<Quote> {
    // `change` is non-decreasing in the sum, so among the scenarios of weight 1 only the smallest sum can give the
    // worst loss: one conversion for all of them.
    let mut worst = Quote::ZERO;
    let core_min = sums
        .iter()
        .zip(&grid.scenarios)
        .filter(|(_, s)| s.weight == Ratio::ONE)
        .map(|(sum, _)| *sum)
        .min();
    if let Some(sum) = core_min {
        let loss = change(sum)?.checked_neg()?;
        if loss.is_positive() {
            worst = loss;
        }
    }
    for (sum, scenario) in sums.iter().zip(&grid.scenarios) {
        if scenario.weight == Ratio::ONE {
            continue;
        }
        let loss = change(*sum)?.checked_neg()?;
        if !loss.is_positive() {
            continue;
        }
        let weighted = loss.mul_ratio_ceil(scenario.weight)?;
        if weighted > worst {
            worst = weighted;
        }
    }
    Ok(worst)
}
