//! Portfolio liquidation: a liquidator takes over the same share of every holding of a portfolio-margined
//! sub-account at once.
//!
//! A portfolio-margined book is margined as a whole, so taking one leg of a hedge (the short perp of a long spot
//! holding, the spot that covers a short call) can leave it less healthy than before: the other leg's risk is
//! unhedged. Taking the same fraction `f` of everything keeps the book's shape instead. Its maintenance
//! requirement is the worst loss of the book over the grid, which scales with the book: what is left needs
//! `(1 - f)` of it (the contingencies are per token, the scenario losses linear in the sizes; rounding aside).
//!
//! A slice of `f`:
//! - every deposit and debt moves to the liquidator's balance of the same asset, `floor(f * amount)` native units
//!   (everything when `f = 1`); a debt the liquidator takes on is repaid from its deposit of the asset first, then
//!   borrowed;
//! - every open position moves at its mark (the oracle for a perp, the series' mark for an option), in multiples
//!   of the market's step (`f * size` rounded down to a step; the whole position when `f = 1`); the target's quote
//!   balance in the market keeps what the position had made or lost;
//! - the liquidator pays the target the value of the balances it took, `V` (deposits at the oracle rounded down,
//!   debts rounded up, the quote asset's included), less the fee `F`, in quote-asset tokens at the quote asset's
//!   oracle price (rounded down when the target receives, up when it pays, as it does when `V - F` is negative), and
//!   pays the insurance share of the fee (`[protocol] liquidation_insurance_share`) to the quote asset's insurance
//!   fund. Everything is valued at the oracle, as portfolio health values it, so the moves are value-neutral for
//!   the target but for the fee.
//!
//! The liquidator must keep non-negative initial health under the liquidation guard after the slice (checked
//! before anything is written); a slice it cannot take leaves the steps already taken in place.
//!
//! The fee is `[portfolio_margin] liquidation_fee` of the maintenance requirement the slice releases,
//! `ceil(f * fee * R)` with `R` the book's requirement before the step, and never more than `f` times the
//! target's equity at oracle prices (an insolvent book is taken over at its marks, as in the other steps).
//!
//! Why a step always improves health: the moves are value-neutral except for the fee, so the target's equity
//! falls by `F` while its requirement falls by `f * R`; with a fee rate below one (validated) the step gains
//! `f * R - F > 0` of maintenance health, and at `f = 1` the target holds only quote tokens worth its equity less
//! the fee, which is not negative. The step is the least fraction (in millionths) that brings liquidation-end health
//! to zero, within `[protocol] liquidation_max_step_notional` of gross value moved (every balance and position at
//! its price, in absolute value), found by [`least_restoring_step`] on the exact outcome. Positions move in whole
//! steps while balances move by the millionth, so between two steps a hedge is off by up to one step: health is
//! monotone in the fraction only up to that, and the bisection may stop that much above the least fraction.
//!
//! `liquidate` tries this step on a portfolio-margined target after the positions and debts one by one, when
//! they left its liquidation-end health below zero (for a hedged book, none of them improves it).

use super::waterfall::shift;
use super::*;
use crate::command::{SliceBalance, SlicePosition};

/// Fractions of a slice are multiples of one millionth.
const SLICE_UNITS: i128 = 1_000_000;

/// One balance's part of a slice.
#[derive(Clone, Copy)]
struct BalanceMove {
    asset: AssetIdx,
    /// The target's balance (scaled units, negative: debt) and the native amount it holds, signed.
    scaled: i128,
    amount: TokenAmount,
    price: Price,
    decimals: u8,
}

/// One position's part of a slice.
#[derive(Clone, Copy)]
struct PositionMove {
    market: MarketIdx,
    /// The target's and the liquidator's positions, funding settled.
    target: PerpPosition,
    liquidator: PerpPosition,
    mark: Price,
    step: TokenAmount,
    decimals: u8,
}

/// Positions replaced in a health evaluation (`None`: removed).
type PositionOverrides = Vec<(MarketIdx, Option<PerpPosition>)>;

/// Everything a slice of `k` millionths changes, before it is committed.
struct Slice {
    pools: Vec<(AssetIdx, Pool)>,
    /// New scaled balances: (sub-account, asset, scaled).
    balances: Vec<(SubAccountId, AssetIdx, i128)>,
    /// New positions and markets.
    positions: Vec<(MarketIdx, PerpPosition, PerpPosition, Market)>,
    /// Moved amounts for the event: signed native balances and signed bases.
    moved_balances: Vec<(AssetIdx, TokenAmount)>,
    moved_positions: Vec<(MarketIdx, TokenAmount, Price)>,
    value: Quote,
    fee: Quote,
    insurance_fee: Quote,
    /// Quote-asset tokens (native) the liquidator paid the target; negative when the target paid.
    paid: TokenAmount,
}

impl Slice {
    /// The target's balance overrides and position overrides, for its health after the slice.
    fn target_overrides(&self, target: SubAccountId) -> (Vec<(AssetIdx, i128)>, PositionOverrides) {
        let balances = self
            .balances
            .iter()
            .filter(|(id, ..)| *id == target)
            .map(|&(_, a, s)| (a, s))
            .collect();
        let positions = self
            .positions
            .iter()
            .map(|(m, t, ..)| (*m, keep_position(t)))
            .collect();
        (balances, positions)
    }
}

/// A position worth keeping: open, or closed with a quote balance still to settle.
fn keep_position(p: &PerpPosition) -> Option<PerpPosition> {
    (!p.base.is_zero() || !p.quote.is_zero()).then_some(*p)
}

impl Engine {
    /// Takes over the least slice of a portfolio-margined target's whole book that restores its liquidation-end
    /// health (module docs).
    pub(super) fn liquidate_portfolio(
        &mut self,
        now_s: u64,
        liquidator: SubAccountId,
        target: SubAccountId,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let grid = self
            .portfolio_grid
            .clone()
            .expect("portfolio sub-accounts need the section");
        let target_sub = self.sub_accounts[target as usize].clone();
        debug_assert_eq!(target_sub.margin, MarginKind::Portfolio);
        let liquidator_sub = self.sub_account(liquidator)?.clone();
        let quote_asset = self.quote_asset;

        // Prices, pools and the liquidator's permissions for every holding.
        let mut pools: BTreeMap<AssetIdx, Pool> = BTreeMap::new();
        for asset in target_sub
            .balances
            .iter()
            .map(|b| b.asset)
            .chain([quote_asset])
        {
            let mut pool = self.pools[asset as usize].clone();
            let config = &self.assets[asset as usize];
            pool.accrue(now_s, &config.interest, config.reserve_factor)?;
            pools.insert(asset, pool);
        }
        let mut balances = Vec::with_capacity(target_sub.balances.len());
        for b in &target_sub.balances {
            self.check_may_hold(&liquidator_sub, liquidator, b.asset)?;
            let price = self.usable_price(b.asset, now_s, Guard::Liquidation, "liquidation")?;
            let amount = pools[&b.asset].balance_native(b.scaled)?;
            balances.push(BalanceMove {
                asset: b.asset,
                scaled: b.scaled,
                amount,
                price,
                decimals: self.assets[b.asset as usize].decimals,
            });
        }
        self.check_may_hold(&liquidator_sub, liquidator, quote_asset)?;
        let new_assets = balances
            .iter()
            .map(|b| b.asset)
            .chain([quote_asset])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|&a| liquidator_sub.scaled(a) == 0)
            .count();
        if liquidator_sub.balances.len() + new_assets > MAX_BALANCES_PER_SUB_ACCOUNT {
            return Err(reject(
                "too_many_balances",
                format!("liquidator sub-account {liquidator} cannot take over sub-account {target}'s book: it would hold more than {MAX_BALANCES_PER_SUB_ACCOUNT} assets"),
            ));
        }
        let mut positions = Vec::new();
        let mut markets = BTreeMap::new();
        for p in target_sub.perps.iter().filter(|p| !p.base.is_zero()) {
            let m = p.market;
            self.check_may_trade(&liquidator_sub, liquidator, m)?;
            let config = &self.market_configs[m as usize];
            let symbol = &config.symbol;
            let mark = self.usable_mark(
                m,
                now_s,
                Guard::Liquidation,
                &format!("liquidation in {symbol}"),
            )?;
            let decimals = self.assets[self.market_underlying[m as usize] as usize].decimals;
            let step = config
                .step_size
                .to_native_exact(decimals)
                .expect("validated step");
            let (mut market, _) = self.accrued_market(m, now_s)?;
            let flat = PerpPosition::flat(m, market.funding_index);
            let mut tp = *p;
            let mut lp = liquidator_sub.perp(m).copied().unwrap_or(flat);
            for q in [&mut tp, &mut lp] {
                market.settle_position_funding(q, decimals)?;
            }
            positions.push(PositionMove {
                market: m,
                target: tp,
                liquidator: lp,
                mark,
                step,
                decimals,
            });
            markets.insert(m, market);
        }
        let new_markets = positions
            .iter()
            .filter(|p| liquidator_sub.perp(p.market).is_none())
            .count();
        if liquidator_sub.perps.len() + new_markets > MAX_PERP_POSITIONS_PER_SUB_ACCOUNT {
            return Err(reject(
                "too_many_positions",
                format!("liquidator sub-account {liquidator} cannot take over sub-account {target}'s positions: it would hold more than {MAX_PERP_POSITIONS_PER_SUB_ACCOUNT}"),
            ));
        }

        // The fee for the whole book, and the step limit on gross value moved.
        let health_before = self.health_at(target, now_s)?;
        let equity = self.equity_at_oracle(&target_sub, &self.all_risks(now_s)?)?;
        let requirement = equity
            .checked_sub(health_before.maintenance)?
            .max(Quote::ZERO);
        let full_fee = requirement
            .mul_ratio_ceil(grid.config.liquidation_fee)?
            .min(equity.max(Quote::ZERO));
        let mut gross = Quote::ZERO;
        for b in &balances {
            gross = gross.checked_add(b.price.value_ceil(b.amount.abs()?, b.decimals)?)?;
        }
        for p in &positions {
            gross = gross.checked_add(p.mark.value_ceil(p.target.base.abs()?, p.decimals)?)?;
        }
        let limit = self.protocol.liquidation_max_step_notional;
        let max_k = if gross <= limit {
            SLICE_UNITS
        } else {
            ballast_num::mul_div(limit.raw(), SLICE_UNITS, gross.raw(), Rounding::Floor)?.max(1)
        };
        let share = self.protocol.liquidation_insurance_share;
        let quote_decimals = self.assets[quote_asset as usize].decimals;
        let quote_price =
            self.usable_price(quote_asset, now_s, Guard::Liquidation, "liquidation")?;
        let (l_quote_before, t_quote_before) = (
            liquidator_sub.scaled(quote_asset),
            target_sub.scaled(quote_asset),
        );

        let outcome = |k: i128| -> NumResult<Slice> {
            let full = k == SLICE_UNITS;
            let part = |amount: TokenAmount| -> NumResult<TokenAmount> {
                if full {
                    return Ok(amount);
                }
                Ok(TokenAmount::from_raw(ballast_num::mul_div(
                    amount.raw(),
                    k,
                    SLICE_UNITS,
                    Rounding::Floor,
                )?))
            };
            let mut pools = pools.clone();
            let mut new_balances = Vec::new();
            let mut moved_balances = Vec::new();
            let mut value = Quote::ZERO;
            let mut quote_scaled = (t_quote_before, l_quote_before);
            for b in &balances {
                let pool = pools.get_mut(&b.asset).expect("accrued above");
                let l_scaled = if b.asset == quote_asset {
                    quote_scaled.1
                } else {
                    liquidator_sub.scaled(b.asset)
                };
                let moved = part(b.amount.abs()?)?;
                if moved.is_zero() {
                    continue;
                }
                // Tokens come in before they go out, so the vault never dips below what it holds.
                let (t_after, l_after) = if b.amount.is_positive() {
                    // A deposit: into the liquidator's (repaying its debt first), out of the target's.
                    value = value.checked_add(b.price.value_floor(moved, b.decimals)?)?;
                    let l_after = pool.credit(l_scaled, moved)?.0;
                    (b.scaled - pool.withdraw(moved, b.scaled)?, l_after)
                } else {
                    // A debt: the target's is repaid; the liquidator pays from its deposit or borrows.
                    value = value.checked_sub(b.price.value_ceil(moved, b.decimals)?)?;
                    let t_after = b.scaled + pool.repay(moved, -b.scaled)?;
                    (t_after, pool.debit(l_scaled, moved)?.0)
                };
                pool.internal_move(moved)?;
                if b.asset == quote_asset {
                    quote_scaled = (t_after, l_after);
                } else {
                    new_balances.push((target, b.asset, t_after));
                    new_balances.push((liquidator, b.asset, l_after));
                }
                let signed = if b.amount.is_positive() {
                    moved
                } else {
                    moved.checked_neg()?
                };
                moved_balances.push((b.asset, signed));
            }
            let mut new_positions = Vec::new();
            let mut moved_positions = Vec::new();
            for p in &positions {
                let mut market = markets[&p.market].clone();
                let (mut tp, mut lp) = (p.target, p.liquidator);
                let size = p.target.base.abs()?;
                let moved = if full {
                    size
                } else {
                    TokenAmount::from_raw(part(size)?.raw() / p.step.raw() * p.step.raw())
                };
                if moved.is_zero() {
                    continue;
                }
                // The target sells a long at the mark rounded down, buys back a short rounded up.
                let (signed, flow) = if p.target.base.is_positive() {
                    (moved, p.mark.value_floor(moved, p.decimals)?.checked_neg()?)
                } else {
                    (moved.checked_neg()?, p.mark.value_ceil(moved, p.decimals)?)
                };
                shift(&mut market, &mut tp, &mut lp, signed, flow)?;
                new_positions.push((p.market, tp, lp, market));
                moved_positions.push((p.market, signed, p.mark));
            }
            // The fee, its insurance share and the payment, in quote tokens at the quote oracle.
            let fee = if full {
                full_fee
            } else {
                Quote::from_raw(ballast_num::mul_div(
                    full_fee.raw(),
                    k,
                    SLICE_UNITS,
                    Rounding::Ceil,
                )?)
                .min(full_fee)
            };
            let insurance_fee = fee.mul_ratio_floor(share)?;
            let net = value.checked_sub(fee)?;
            let tokens = |v: Quote, rounding: Rounding| -> NumResult<TokenAmount> {
                quote_price.amount_for_value(v, quote_decimals, rounding)
            };
            // What the target receives is rounded down, what it pays rounded up.
            let paid = if net.is_negative() {
                tokens(net.checked_neg()?, Rounding::Ceil)?.checked_neg()?
            } else {
                tokens(net, Rounding::Floor)?
            };
            let to_insurance = tokens(insurance_fee, Rounding::Floor)?;
            let pool = pools.get_mut(&quote_asset).expect("accrued above");
            let (mut t_q, mut l_q) = quote_scaled;
            let mut flowed = TokenAmount::ZERO;
            if paid.is_positive() {
                t_q = pool.credit(t_q, paid)?.0;
                l_q = pool.debit(l_q, paid)?.0;
                flowed = paid;
            } else if paid.is_negative() {
                let owed = paid.checked_neg()?;
                l_q = pool.credit(l_q, owed)?.0;
                t_q = pool.debit(t_q, owed)?.0;
                flowed = owed;
            }
            if to_insurance.is_positive() {
                let credited = pool.deposit(to_insurance)?;
                pool.insurance_scaled += credited;
                l_q = pool.debit(l_q, to_insurance)?.0;
                flowed = flowed.checked_add(to_insurance)?;
            }
            pool.internal_move(flowed)?;
            new_balances.push((target, quote_asset, t_q));
            new_balances.push((liquidator, quote_asset, l_q));
            Ok(Slice {
                pools: pools.into_iter().collect(),
                balances: new_balances,
                positions: new_positions,
                moved_balances,
                moved_positions,
                value,
                fee,
                insurance_fee,
                paid,
            })
        };
        let target_le = |k: i128| -> NumResult<Quote> {
            let slice = outcome(k)?;
            let (balances, positions) = slice.target_overrides(target);
            let cache = self.health_cache_with(
                &target_sub,
                now_s,
                &balances,
                &positions,
                Guard::Liquidation,
            )?;
            Ok(cache.health()?.liquidation_end)
        };
        let Some((k, full_close)) = least_restoring_step(max_k, SLICE_UNITS, target_le)? else {
            return Err(reject(
                "cannot_improve",
                format!("taking over a slice of sub-account {target}'s book would not improve its health"),
            ));
        };
        let slice = outcome(k)?;
        let balances = slice
            .moved_balances
            .iter()
            .map(|&(a, amount)| {
                Ok(SliceBalance {
                    asset: self.assets[a as usize].symbol.clone(),
                    amount: TokenQuantity::from_native(amount, self.assets[a as usize].decimals)?,
                })
            })
            .collect::<NumResult<Vec<_>>>()?;
        let positions = slice
            .moved_positions
            .iter()
            .map(|&(m, base, mark)| {
                let decimals = self.assets[self.market_underlying[m as usize] as usize].decimals;
                Ok(SlicePosition {
                    market: self.market_configs[m as usize].symbol.clone(),
                    base: TokenQuantity::from_native(base, decimals)?,
                    mark,
                })
            })
            .collect::<NumResult<Vec<_>>>()?;
        let l_balances: Vec<(AssetIdx, i128)> = slice
            .balances
            .iter()
            .filter(|(id, ..)| *id == liquidator)
            .map(|&(_, a, s)| (a, s))
            .collect();
        let l_positions: PositionOverrides = slice
            .positions
            .iter()
            .map(|(m, _, lp, _)| (*m, keep_position(lp)))
            .collect();
        self.check_new_risk_with(
            liquidator,
            "taking over the slice",
            now_s,
            &l_balances,
            &l_positions,
            Guard::Liquidation,
        )?;
        let fraction = Ratio::from_fraction(k, SLICE_UNITS, Rounding::Floor)?;
        let paid = TokenQuantity::from_native(slice.paid, quote_decimals)?;
        // Every check is done: commit (only arithmetic can fail from here).
        for (asset, pool) in slice.pools {
            self.commit_pool(asset, pool);
        }
        for &(id, asset, scaled) in &slice.balances {
            self.commit_balance(id, asset, scaled);
        }
        for (m, tp, lp, market) in slice.positions {
            self.commit_market(m, market);
            self.commit_perp(target, m, keep_position(&tp));
            self.commit_perp(liquidator, m, keep_position(&lp));
        }
        events.push(Event::PortfolioLiquidated {
            liquidator,
            target,
            fraction,
            balances,
            positions,
            value: slice.value,
            fee: slice.fee,
            insurance_fee: slice.insurance_fee,
            paid,
            full_close,
            health_before,
            health_after: self.health_at(target, now_s)?,
        });
        Ok(())
    }
}
