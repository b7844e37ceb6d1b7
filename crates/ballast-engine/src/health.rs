//! Health: how much a sub-account's collateral exceeds what its risk requires, in quote (USD, micro-USD scale).
//!
//! ```text
//! health(level) = sum over balances b of  value(b, price(level, sign b)) * weight(level, sign b, |b|)
//! ```
//!
//! where a deposit has positive value and a debt negative value. Three levels, always ordered
//! `initial <= liquidation_end <= maintenance`:
//!
//! | level            | collateral price          | debt price                | weights                               |
//! |------------------|---------------------------|---------------------------|---------------------------------------|
//! | initial          | min(oracle, reference)    | max(oracle, reference)    | initial, concentration-scaled, premium |
//! | liquidation-end  | oracle                    | oracle                    | between (see below)                    |
//! | maintenance      | oracle                    | oracle                    | maintenance, premium                   |
//!
//! * Size premium: with `f` the asset's `size_premium_factor` and `s` the balance in whole tokens,
//!   `premium = 1 + f * sqrt(s)`; asset weights are divided by it, liability weights multiplied by it.
//! * Concentration: when the pool's total deposits `D` (whole tokens) exceed the asset's
//!   `concentration_threshold` `C`, the *initial* asset weight is multiplied by `C / D`.
//! * Liquidation-end weights: `w_le = w_maint - fraction * (w_maint - w_init)` for collateral and
//!   `w_le = w_maint + fraction * (w_init - w_maint)` for debt, `fraction` = `liquidation_end_fraction`.
//!
//! Every rounding goes against the account: values and weights of collateral round down, of debt round up (debt
//! values are negative, so "down" is toward negative infinity throughout), the premium rounds up.
//!
//! A [`HealthCache`] is built once from a sub-account's balances and the [`AssetRisk`] of each asset, then adjusted
//! one balance at a time to try an action before committing it.

use crate::limits::{MAX_BALANCES_PER_SUB_ACCOUNT, MAX_PERP_POSITIONS_PER_SUB_ACCOUNT};
use crate::oracle::{OraclePrice, PriceProblem};
use crate::perp::{MarketRisk, PerpPosition};
use ballast_num::{NumResult, Price, Quote, Ratio, TokenAmount};
use serde::Serialize;

/// Health at the three levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    pub initial: Quote,
    pub liquidation_end: Quote,
    pub maintenance: Quote,
}

/// Everything health needs to know about one asset at one moment. Built once per command (or once per oracle
/// update for all sub-accounts that hold the asset).
#[derive(Clone, Copy, Debug)]
pub struct AssetRisk {
    pub decimals: u8,
    /// Latest oracle price, if any has arrived.
    pub oracle: Option<OraclePrice>,
    /// Why the price may not be trusted for new risk now, if it may not.
    pub problem: Option<PriceProblem>,
    /// Initial asset weight after concentration scaling, before the size premium.
    pub initial_asset_weight: Ratio,
    pub maintenance_asset_weight: Ratio,
    pub initial_liability_weight: Ratio,
    pub maintenance_liability_weight: Ratio,
    pub size_premium_factor: Ratio,
    pub liquidation_end_fraction: Ratio,
    /// Supply index for valuing deposits.
    pub supply_index: Ratio,
    /// Borrow index for valuing debts, projected to the command's time.
    pub borrow_index: Ratio,
}

/// Weights for one balance at the three levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    pub initial: Ratio,
    pub liquidation_end: Ratio,
    pub maintenance: Ratio,
}

impl AssetRisk {
    /// `1 + f * sqrt(|amount| in whole tokens)`, rounded up; exactly 1 when `f == 0` or the amount is zero.
    #[inline]
    fn premium(&self, amount: TokenAmount) -> NumResult<Ratio> {
        if self.size_premium_factor.is_zero() || amount.is_zero() {
            return Ok(Ratio::ONE);
        }
        // Fast path (the oracle hot path), same value as the general code below. For decimals <= 18, 10^decimals
        // divides 10^18, so the whole tokens `size` are exactly |amount| * 10^(18 - decimals) (no rounding), and
        // `size.sqrt_floor()` is floor(sqrt(size * 10^18)) = floor(sqrt(|amount| * 10^(36 - decimals))). When that
        // radicand fits in u128 (|amount| below 3.4 * 10^(2 + decimals) native units: 340 whole tokens), the root
        // is below 2^64 and `f * (root + 1)` (with 0 < f <= 1) fits too, so plain unsigned arithmetic gives the exact
        // results of `sqrt_fixed_floor` and `mul_ceil`, without the general code's divisions. Anything else (a larger
        // balance, a factor outside [0, 1]) takes the general code, errors included.

        const POW10: [u128; 37] = {
            let mut t = [1u128; 37];
            let mut i = 1;
            while i < 37 {
                t[i] = t[i - 1] * 10;
                i += 1;
            }
            t
        };
        const SCALE: i128 = ballast_num::RATIO_SCALE;
        let factor = self.size_premium_factor.raw();
        if self.decimals <= 18 && factor > 0 && factor <= SCALE {
            let radicand = amount
                .raw()
                .unsigned_abs()
                .checked_mul(POW10[36 - self.decimals as usize]);
            if let Some(radicand) = radicand {
                let root = ballast_num::math::sqrt_u128_floor(radicand) + 1;
                let step = (factor as u128 * root).div_ceil(SCALE as u128);
                return Ok(Ratio::from_raw(SCALE + step as i128));
            }
        }
        let size = amount
            .abs()?
            .whole_tokens(self.decimals, ballast_num::Rounding::Ceil)?;
        // sqrt rounded down, plus one raw unit: an upper bound of the true root.
        let root = Ratio::from_raw(size.sqrt_floor()?.raw() + 1);
        Ratio::ONE.checked_add(self.size_premium_factor.mul_ceil(root)?)
    }

    /// The three weights of a balance of `amount` native units (sign decides collateral or debt).
    pub fn weights(&self, amount: TokenAmount) -> NumResult<Weights> {
        let premium = self.premium(amount)?;
        let fraction = self.liquidation_end_fraction;
        if amount.raw() >= 0 {
            let initial = self.initial_asset_weight.div_floor(premium)?;
            let maintenance = self.maintenance_asset_weight.div_floor(premium)?;
            let gap = maintenance.checked_sub(initial)?.max(Ratio::ZERO);
            let liquidation_end = maintenance.checked_sub(fraction.mul_ceil(gap)?)?;
            Ok(Weights {
                initial,
                liquidation_end,
                maintenance,
            })
        } else {
            let initial = self.initial_liability_weight.mul_ceil(premium)?;
            let maintenance = self.maintenance_liability_weight.mul_ceil(premium)?;
            let gap = initial.checked_sub(maintenance)?.max(Ratio::ZERO);
            let liquidation_end = maintenance.checked_add(fraction.mul_ceil(gap)?)?;
            Ok(Weights {
                initial,
                liquidation_end,
                maintenance,
            })
        }
    }

    /// Maintenance weight only: the hot path of oracle re-evaluation.
    #[inline]
    pub fn maintenance_weight(&self, amount: TokenAmount) -> NumResult<Ratio> {
        let premium = self.premium(amount)?;
        // Fast paths, same values as `div_floor` / `mul_ceil` below: a premium of exactly one leaves either weight
        // unchanged (`w * 10^18 / 10^18` is exact for every w, so `mul_ceil` returns w). Otherwise, for a weight in
        // [0, 100] and a positive premium, the quotients are the floor / ceiling of exact unsigned products that fit
        // in u128 (w * 10^18 <= 10^38), and they fit in i128. Anything else takes the general code, errors included.
        const SCALE: i128 = ballast_num::RATIO_SCALE;
        let w = if amount.raw() >= 0 {
            self.maintenance_asset_weight
        } else {
            self.maintenance_liability_weight
        };
        if premium == Ratio::ONE {
            return Ok(w);
        }
        let (w_raw, p_raw) = (w.raw(), premium.raw());
        if amount.raw() >= 0 {
            if (0..=100 * SCALE).contains(&w_raw) && p_raw > 0 {
                let quotient = (w_raw as u128 * SCALE as u128) / p_raw as u128;
                return Ok(Ratio::from_raw(quotient as i128));
            }
            self.maintenance_asset_weight.div_floor(premium)
        } else {
            if w_raw >= 0 && p_raw >= 0 {
                if let Some(product) = (w_raw as u128).checked_mul(p_raw as u128) {
                    let quotient = product.div_ceil(SCALE as u128);
                    return Ok(Ratio::from_raw(quotient as i128));
                }
            }
            self.maintenance_liability_weight.mul_ceil(premium)
        }
    }

    /// `amount * price * weight`, rounded toward negative infinity at each step.
    #[inline]
    fn contribution(&self, amount: TokenAmount, price: Price, weight: Ratio) -> NumResult<Quote> {
        price
            .value_floor(amount, self.decimals)?
            .mul_ratio_floor(weight)
    }

    /// Maintenance contribution of a balance. An asset that has never had a price counts zero (it cannot have been
    /// borrowed: borrowing needs a reliable price).
    #[inline]
    pub fn maintenance_contribution(&self, amount: TokenAmount) -> NumResult<Quote> {
        match &self.oracle {
            None => Ok(Quote::ZERO),
            Some(o) => self.maintenance_value(amount, o.price, self.maintenance_weight(amount)?),
        }
    }

    /// `amount * price * weight`, rounded toward negative infinity at each step, where `weight` is
    /// [`AssetRisk::maintenance_weight`] of `amount`: the price-dependent step of
    /// [`AssetRisk::maintenance_contribution`]. The oracle hot path keeps each balance's weight between price updates
    /// (`crate::maintenance`) and calls this alone.
    #[inline]
    pub(crate) fn maintenance_value(
        &self,
        amount: TokenAmount,
        price: Price,
        weight: Ratio,
    ) -> NumResult<Quote> {
        /// `floor(a * b / d)` for `b >= 0`, `d > 0`, when `|a| * b` fits in u128 (else `None`): the value of
        /// `mul_div(a, b, d, Floor)` there, without its signed 128-bit division. For `a < 0` the floor of the negative
        /// quotient is minus the ceiling of the positive one. The result fits in i128 whenever `d >= 2`.
        #[inline(always)]
        fn mul_div_floor(a: i128, b: i128, d: u128) -> Option<i128> {
            if b < 0 || d < 2 || a == i128::MIN {
                return None;
            }
            let product = a.unsigned_abs().checked_mul(b as u128)?;
            Some(if a >= 0 {
                (product / d) as i128
            } else {
                -(product.div_ceil(d) as i128)
            })
        }
        /// `10^(decimals + PRICE_DECIMALS - QUOTE_DECIMALS)`, the divisor of `Price::value`, for decimals <= 30.
        const VALUE_DIVISOR: [u128; 31] = {
            let mut t = [0u128; 31];
            let mut i = 0;
            while i < 31 {
                t[i] = 10u128
                    .pow(i as u32 + ballast_num::PRICE_DECIMALS - ballast_num::QUOTE_DECIMALS);
                i += 1;
            }
            t
        };
        // Fast path, same value as `contribution`: `value_floor` is `mul_div(amount, price, divisor, Floor)` and
        // `mul_ratio_floor` is `mul_div(value, weight, 10^18, Floor)`, an identity for a weight of one.
        if self.decimals as usize <= 30 {
            let divisor = VALUE_DIVISOR[self.decimals as usize];
            if let Some(value) = mul_div_floor(amount.raw(), price.raw(), divisor) {
                if weight == Ratio::ONE {
                    return Ok(Quote::from_raw(value));
                }
                let scale = ballast_num::RATIO_SCALE as u128;
                if let Some(c) = mul_div_floor(value, weight.raw(), scale) {
                    return Ok(Quote::from_raw(c));
                }
            }
        }
        self.contribution(amount, price, weight)
    }
}

/// One balance's share of health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    asset: u16,
    amount: TokenAmount,
    health: Health,
    /// Initial contribution for a check of new risk: collateral with an unreliable price counts zero, debt with an
    /// unreliable price makes the check impossible.
    guarded_initial: Quote,
    guarded_problem: Option<GuardedProblem>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GuardedProblem(PriceProblem);

impl Default for GuardedProblem {
    fn default() -> Self {
        GuardedProblem(PriceProblem::Missing)
    }
}

/// The first asset whose price makes a new-risk check impossible, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockedBy {
    pub asset: u16,
    pub problem: PriceProblem,
}

/// A sub-account's health, built once and adjusted one balance at a time.
#[derive(Clone, Debug, Default)]
pub struct HealthCache {
    entries: [Entry; MAX_BALANCES_PER_SUB_ACCOUNT],
    len: usize,
    /// Perp positions, keyed by market (`Entry::asset` holds the market index, `amount` the base).
    perps: [Entry; MAX_PERP_POSITIONS_PER_SUB_ACCOUNT],
    n_perps: usize,
    /// For each perp entry, the underlying asset (for messages).
    perp_underlying: [u16; MAX_PERP_POSITIONS_PER_SUB_ACCOUNT],
    /// A portfolio-margined sub-account's health and its new-risk initial health, computed whole
    /// (`crate::portfolio`): the entries above are then unused.
    portfolio: Option<(Health, Result<Quote, BlockedBy>)>,
}

impl HealthCache {
    pub fn new() -> HealthCache {
        HealthCache::default()
    }

    /// The health of a portfolio-margined sub-account, and its initial health for new risk (or what blocks it).
    pub fn portfolio(health: Health, new_risk: Result<Quote, BlockedBy>) -> HealthCache {
        HealthCache {
            portfolio: Some((health, new_risk)),
            ..HealthCache::default()
        }
    }

    /// Sets the balance of `asset` to `amount` native units (adding the entry if new), recomputing its share.
    /// Errors only on arithmetic overflow; `false` if the cache is full.
    pub fn set(&mut self, asset: u16, amount: TokenAmount, risk: &AssetRisk) -> NumResult<bool> {
        let entry = entry(asset, amount, risk)?;
        if let Some(existing) = self.entries[..self.len]
            .iter_mut()
            .find(|e| e.asset == asset)
        {
            *existing = entry;
            return Ok(true);
        }
        if self.len == MAX_BALANCES_PER_SUB_ACCOUNT {
            return Ok(false);
        }
        self.entries[self.len] = entry;
        self.len += 1;
        Ok(true)
    }

    /// Sets the perp position in `market` (adding the entry if new). A position whose underlying price is
    /// unreliable blocks checks of new risk unless it is flat. Errors only on overflow; `false` if full.
    pub fn set_perp(
        &mut self,
        market: u16,
        underlying: u16,
        position: &PerpPosition,
        risk: &MarketRisk,
        problem: Option<PriceProblem>,
    ) -> NumResult<bool> {
        let health = risk.contributions(position)?;
        let blocked = problem.filter(|_| !position.base.is_zero());
        let entry = Entry {
            asset: market,
            amount: position.base,
            health,
            guarded_initial: health.initial,
            guarded_problem: blocked.map(GuardedProblem),
        };
        if let Some(i) = self.perps[..self.n_perps]
            .iter()
            .position(|e| e.asset == market)
        {
            self.perps[i] = entry;
            return Ok(true);
        }
        if self.n_perps == MAX_PERP_POSITIONS_PER_SUB_ACCOUNT {
            return Ok(false);
        }
        self.perps[self.n_perps] = entry;
        self.perp_underlying[self.n_perps] = underlying;
        self.n_perps += 1;
        Ok(true)
    }

    fn all_entries(&self) -> impl Iterator<Item = (&Entry, u16)> {
        let spot = self.entries[..self.len].iter().map(|e| (e, e.asset));
        let perps = self.perps[..self.n_perps].iter().zip(self.perp_underlying);
        spot.chain(perps)
    }

    /// Health at the three levels.
    pub fn health(&self) -> NumResult<Health> {
        if let Some((health, _)) = self.portfolio {
            return Ok(health);
        }
        let mut total = Health::default();
        for (e, _) in self.all_entries() {
            total.initial = total.initial.checked_add(e.health.initial)?;
            total.liquidation_end = total
                .liquidation_end
                .checked_add(e.health.liquidation_end)?;
            total.maintenance = total.maintenance.checked_add(e.health.maintenance)?;
        }
        Ok(total)
    }

    /// Initial health for a check of new risk, under the oracle guard rails: collateral whose price is unreliable
    /// counts zero; debt whose price is unreliable blocks the check.
    pub fn initial_for_new_risk(&self) -> NumResult<Result<Quote, BlockedBy>> {
        if let Some((_, new_risk)) = self.portfolio {
            return Ok(new_risk);
        }
        let mut total = Quote::ZERO;
        for (e, asset) in self.all_entries() {
            if let Some(GuardedProblem(problem)) = e.guarded_problem {
                return Ok(Err(BlockedBy { asset, problem }));
            }
            total = total.checked_add(e.guarded_initial)?;
        }
        Ok(Ok(total))
    }

    /// The first collateral that [`HealthCache::initial_for_new_risk`] counted at zero because its price is
    /// unreliable, if any (to explain a refusal).
    pub fn zeroed_collateral(
        &self,
        problems: impl Fn(u16) -> Option<PriceProblem>,
    ) -> Option<BlockedBy> {
        self.entries[..self.len].iter().find_map(|e| {
            let problem = problems(e.asset)?;
            (e.amount.is_positive() && e.health.initial.is_positive()).then_some(BlockedBy {
                asset: e.asset,
                problem,
            })
        })
    }
}

fn entry(asset: u16, amount: TokenAmount, risk: &AssetRisk) -> NumResult<Entry> {
    let Some(oracle) = risk.oracle else {
        // No price ever: collateral counts zero; a debt cannot exist (borrowing needs a price), but if asked, it
        // blocks new risk.
        let problem = (amount.raw() < 0).then_some(GuardedProblem(PriceProblem::Missing));
        return Ok(Entry {
            asset,
            amount,
            health: Health::default(),
            guarded_initial: Quote::ZERO,
            guarded_problem: problem,
        });
    };
    let w = risk.weights(amount)?;
    let (initial_price, other_price) = if amount.raw() >= 0 {
        (oracle.initial_asset_price(), oracle.price)
    } else {
        (oracle.initial_liability_price(), oracle.price)
    };
    let health = Health {
        initial: risk.contribution(amount, initial_price, w.initial)?,
        liquidation_end: risk.contribution(amount, other_price, w.liquidation_end)?,
        maintenance: risk.contribution(amount, other_price, w.maintenance)?,
    };
    let (guarded_initial, guarded_problem) = match risk.problem {
        None => (health.initial, None),
        Some(_) if amount.raw() >= 0 => (Quote::ZERO, None),
        Some(problem) => (Quote::ZERO, Some(GuardedProblem(problem))),
    };
    Ok(Entry {
        asset,
        amount,
        health,
        guarded_initial,
        guarded_problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn risk(price: &str, reference: &str) -> AssetRisk {
        let p: Price = price.parse().unwrap();
        AssetRisk {
            decimals: 6,
            oracle: Some(OraclePrice {
                price: p,
                confidence: Price::ZERO,
                publish_time_s: 0,
                reference: reference.parse().unwrap(),
            }),
            problem: None,
            initial_asset_weight: "0.8".parse().unwrap(),
            maintenance_asset_weight: "0.9".parse().unwrap(),
            initial_liability_weight: "1.2".parse().unwrap(),
            maintenance_liability_weight: "1.1".parse().unwrap(),
            size_premium_factor: Ratio::ZERO,
            liquidation_end_fraction: "0.5".parse().unwrap(),
            supply_index: Ratio::ONE,
            borrow_index: Ratio::ONE,
        }
    }

    fn q(s: &str) -> Quote {
        s.parse().unwrap()
    }

    /// Mango-style table: each expected value is written as the formula it comes from.
    #[test]
    fn three_levels_table() {
        struct Case {
            name: &'static str,
            balances: Vec<(u16, i128, &'static str, &'static str)>, // asset, native amount, oracle, reference
            expected: (Quote, Quote, Quote),
        }
        let cases = [
            Case {
                name: "one deposit, reference above oracle: initial uses oracle",
                balances: vec![(0, 1_000_000, "100", "110")],
                expected: (q("80"), q("85"), q("90")), // 1 * 100 * (0.8 | 0.85 | 0.9)
            },
            Case {
                name: "one deposit, reference below oracle: initial uses reference",
                balances: vec![(0, 1_000_000, "100", "90")],
                expected: (q("72"), q("85"), q("90")), // 1 * 90 * 0.8; then 100 * 0.85, 100 * 0.9
            },
            Case {
                name: "deposit and debt",
                balances: vec![(0, 2_000_000, "100", "100"), (1, -50_000_000, "1", "1.02")],
                // initial: 2*100*0.8 - 50*1.02*1.2 ; le: 2*100*0.85 - 50*1*1.15 ; maint: 2*100*0.9 - 50*1*1.1
                expected: (q("98.8"), q("112.5"), q("125")),
            },
        ];
        for case in cases {
            let mut cache = HealthCache::new();
            for (asset, amount, price, reference) in &case.balances {
                assert!(cache
                    .set(
                        *asset,
                        TokenAmount::from_raw(*amount),
                        &risk(price, reference)
                    )
                    .unwrap());
            }
            let h = cache.health().unwrap();
            assert_eq!(
                (h.initial, h.liquidation_end, h.maintenance),
                case.expected,
                "{}",
                case.name
            );
            assert!(
                h.initial <= h.liquidation_end && h.liquidation_end <= h.maintenance,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn size_premium_shrinks_asset_weight_and_grows_liability_weight() {
        let mut r = risk("100", "100");
        r.size_premium_factor = "0.01".parse().unwrap();
        // 10,000 whole tokens: sqrt = 100, premium = 1 + 0.01 * 100 = 2 (plus one raw unit of rounding).
        let big = TokenAmount::from_raw(10_000 * 1_000_000);
        let w = r.weights(big).unwrap();
        assert!(
            w.maintenance < "0.45".parse().unwrap() && w.maintenance > "0.4499999".parse().unwrap()
        );
        let w = r
            .weights(TokenAmount::from_raw(-10_000 * 1_000_000))
            .unwrap();
        assert!(
            w.maintenance > "2.2".parse().unwrap() && w.maintenance < "2.2000001".parse().unwrap()
        );
    }

    #[test]
    fn unreliable_collateral_counts_zero_and_unreliable_debt_blocks() {
        let mut stale = risk("100", "100");
        stale.problem = Some(PriceProblem::Stale {
            age_s: 95,
            limit_s: 60,
        });
        let mut cache = HealthCache::new();
        cache
            .set(0, TokenAmount::from_raw(1_000_000), &stale)
            .unwrap();
        cache
            .set(1, TokenAmount::from_raw(1_000_000), &risk("50", "50"))
            .unwrap();
        assert_eq!(cache.initial_for_new_risk().unwrap(), Ok(q("40"))); // only asset 1: 50 * 0.8
        cache.set(0, TokenAmount::from_raw(-1), &stale).unwrap();
        assert!(cache.initial_for_new_risk().unwrap().is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 20_000,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED_0042),
            failure_persistence: None,
            ..Default::default()
        })]
        /// The maintenance hot path's exact fast paths give the general code's weights and values to the last raw
        /// unit, for collateral and debt, small and whale-sized balances, with and without a size premium.
        #[test]
        fn hot_path_weight_and_contribution_equal_the_general_path(
            decimals in 0u8..=18,
            factor in proptest::prop_oneof![proptest::strategy::Just(0i128), 1i128..=10i128.pow(18)],
            asset_w in 0i128..=10i128.pow(18),
            liability_w in 10i128.pow(18)..=10 * 10i128.pow(18),
            amount in proptest::prop_oneof![-10i128.pow(12)..10i128.pow(12), -10i128.pow(30)..10i128.pow(30)],
            price in 1i128..10i128.pow(20),
        ) {
            let mut r = risk("1", "1");
            r.decimals = decimals;
            r.size_premium_factor = Ratio::from_raw(factor);
            r.maintenance_asset_weight = Ratio::from_raw(asset_w);
            r.initial_asset_weight = Ratio::from_raw(asset_w);
            r.maintenance_liability_weight = Ratio::from_raw(liability_w);
            r.initial_liability_weight = Ratio::from_raw(liability_w);
            r.oracle.as_mut().unwrap().price = Price::from_raw(price);
            let amount = TokenAmount::from_raw(amount);
            let general = r.weights(amount).map(|w| w.maintenance);
            proptest::prop_assert_eq!(r.maintenance_weight(amount), general);
            if let Ok(w) = general {
                let expected = Price::from_raw(price).value_floor(amount, decimals).and_then(|v| v.mul_ratio_floor(w));
                proptest::prop_assert_eq!(r.maintenance_contribution(amount), expected);
            }
        }
    }
}
