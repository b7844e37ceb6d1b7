//! The loss waterfall: who absorbs a bankrupt sub-account's deficit, to the last unit.
//!
//! `resolve_bankruptcy` (permissionless) takes a sub-account that holds no collateral worth a liquidation, no
//! insurance stake or pool share (assets: redeem them first) and no profitable open perp position (an asset a
//! liquidator can take over first). Deposits worth less than one USD at the oracle (`DUST_VALUE`) of an insolvent
//! sub-account are swept into their asset's insurance fund. A closed position still owed profit
//! by its market's losers is a claim: if the sub-account is insolvent with it (equity at oracle prices below zero),
//! the claim is **forfeited to the insurance fund's claim** in its market (`insurance_collected`, which
//! `settle_venue_claims` later collects); the fund advances nothing against it (the market's next bankruptcy
//! writes such claims off first). A sub-account whose claims make it solvent is refused (settle its PnL). Every
//! valuation here needs prices a liquidation could use.
//!
//! A profitable **long option** is the exception to "liquidate it first": it carries no requirement, so no takeover
//! improves its holder's health and a liquidator could never take it. If the sub-account is insolvent with it, the
//! command first closes it at the series' mark (fixed-point Black-Scholes at the underlying's usable price) against
//! the series' short positions in ADL order (below, ranked at the mark): each chunk of `size` contracts moves
//! `floor(size * mark)` micro-USD from the short's quote balance to the bankrupt position's, so no short pays more
//! than its contracts' value at the mark and nobody's value at the mark falls (event `closed_at_mark`, no withdrawal
//! pause). A short whose health that would lower (a portfolio-margined short that hedges something else) is taken
//! only after the others, and only if it stays at or above maintenance; if the shorts that may be taken hold too
//! little, the command is refused (`no_counterparty`) until the market moves or the series expires (its positions
//! are then closed at the payoff). The closed position is then a claim like any other, forfeited to the insurance
//! fund's claim. The command then resolves, in this order:
//!
//! 1. **Each perp position, in market order.** Its deficit is its negative value at the oracle. The steps of
//!    `[protocol] bankruptcy_waterfall` apply in their configured order:
//!    - `venue_claims`: the venue's unsettled claims in the market (trading fees, then the insurance share of
//!      liquidation fees) are written off against the deficit;
//!    - `insurance`: the quote asset's insurance fund pays, up to the market tier's `insurance_cap_per_bankruptcy`,
//!      straight to the market's winning positions, the lowest-ranked first (their unsettled profit becomes
//!      tokens), so that what the fund does not cover is deleveraged from the highest-ranked, as without a fund;
//!    - `socialize`: auto-deleveraging (ADL). An open position is closed against the ranked positions on the other
//!      side at its **bankruptcy price**, the price at which its value is exactly zero after the earlier steps:
//!      `p = -quote / base`. The first-ranked position is closed as far as needed, then the next. Each chunk moves
//!      the bankrupt position's quote pro rata to the base it closes, apportioned exactly (the last chunk takes the
//!      remainder), so the bankrupt position ends at exactly zero. A position a liquidator already closed (flat,
//!      with a negative quote balance) has nothing left to close: its deficit is cut from the ranked positions'
//!      unsettled profit instead, which moves the same value as closing them at the bankruptcy price and
//!      reopening at the oracle. The venue's own unsettled claims are the rest of the other side: what the winners'
//!      profit cannot cover comes from them (whether or not `venue_claims` is a configured step), and the last
//!      micro-dollars a rounding leaves from the venue's funding rounding.
//! 2. **Each debt, in asset order** (the lending waterfall): that asset's insurance fund pays up to its tier's cap,
//!    and the rest is written off against the pool's depositors by a supply-index haircut.
//!
//! A supply-index haircut pauses that pool's withdrawals and borrows for `socialized_loss_withdrawal_pause_s`. ADL
//! pauses the market instead: for as long, no sub-account holding a position in it may withdraw (its losses fall
//! on the market's positions, not on any pool's depositors, so the quote asset's lenders stay free to leave). Every unit lands in
//! a ledger: per market `claims_written_off`, `insurance_paid` and `socialized_loss`; per pool `bad_debt_covered`
//! and `socialized_loss`.
//!
//! ## ADL ranking
//!
//! Every other position in the market is ranked, BitMEX-style, by profit and leverage:
//!
//! ```text
//! score = (value / notional) * (notional / equity) = value / equity
//! ```
//!
//! with `value` the position's unsettled PnL at the oracle (funding settled), `notional = |base| * oracle` and
//! `equity` the whole sub-account's value at oracle prices (deposits minus debts plus every position's value, with
//! no weights). Profitable positions come first, highest score first; a profitable position in a sub-account with
//! zero or negative equity is treated as infinitely levered and ranks at the top. Then the unprofitable ones,
//! smallest loss first. Ties go to the higher value, then the lower sub-account id. Deleveraging takes positions in
//! this order, skipping those on the bankrupt position's own side.

use super::*;
use crate::config::WaterfallStep;
use crate::perp::settle_funding;
use std::cmp::Ordering;

/// A deposit worth less than this at the oracle is dust: not worth a liquidation.
const DUST_VALUE: Quote = Quote::from_raw(1_000_000);

/// Another sub-account's position in the market being resolved, as the waterfall sees it.
struct Candidate {
    id: SubAccountId,
    /// The stored position, before funding was settled.
    stored: PerpPosition,
    /// Funding settled, and changed by the waterfall as it goes.
    position: PerpPosition,
    /// Value at the oracle when ranked, micro-USD.
    value: Quote,
    /// `value / equity` (see the module docs); meaningful for profitable positions only.
    score: Ratio,
    /// Changed by the waterfall: its funding settlement is booked and it is written back.
    touched: bool,
}

impl Candidate {
    /// Books the candidate's funding settlement in the market the first time the waterfall changes it.
    fn touch(&mut self, market: &mut Market, oracle: Price, decimals: u8) -> NumResult<()> {
        if !self.touched {
            let mut fresh = self.stored;
            market.settle_position_funding(&mut fresh, decimals)?;
            debug_assert_eq!(
                fresh.quote,
                self.value
                    .checked_sub(oracle.value_floor(fresh.base, decimals)?)?
            );
            self.touched = true;
        }
        Ok(())
    }
}

/// Moves `base` (native units of the underlying) from the target's position to a counterparty's and `quote`
/// (micro-USD) the same way, keeping the market's long open interest equal to the sum of its long positions.
pub(super) fn shift(
    market: &mut Market,
    tp: &mut PerpPosition,
    cp: &mut PerpPosition,
    base: TokenAmount,
    quote: Quote,
) -> NumResult<()> {
    let old_long = [
        tp.base.max(TokenAmount::ZERO),
        cp.base.max(TokenAmount::ZERO),
    ];
    tp.base = tp.base.checked_sub(base)?;
    cp.base = cp.base.checked_add(base)?;
    tp.quote = tp.quote.checked_sub(quote)?;
    cp.quote = cp.quote.checked_add(quote)?;
    let new_long = [
        tp.base.max(TokenAmount::ZERO),
        cp.base.max(TokenAmount::ZERO),
    ];
    for (o, n) in old_long.iter().zip(new_long) {
        market.open_interest = market.open_interest.checked_add(n.checked_sub(*o)?)?;
    }
    Ok(())
}

/// The two passes of `close_at_mark` over the series' shorts.
#[derive(Clone, Copy)]
enum Pass {
    /// Shorts whose maintenance health does not fall (every standard-margin short).
    NoLessHealthy,
    /// Shorts whose health falls but stays at or above zero.
    StaysAboveMaintenance,
}

/// What one market's resolution did, for its summary event and ledgers.
#[derive(Default)]
struct Outcome {
    from_claims: Quote,
    insurance_tokens: TokenAmount,
    insurance_paid: Quote,
    socialized: Quote,
    bankruptcy_price: Option<Price>,
}

impl Engine {
    pub(super) fn resolve_bankruptcy(&mut self, now_s: u64, target: SubAccountId) -> Applied {
        let sub = self.sub_account(target)?;
        // Deposits worth less than one USD at the oracle are not worth a liquidation (some cannot be liquidated at
        // all); an insolvent sub-account's dust is swept into its asset's insurance fund below, which is paying for
        // its deficit, rather than keep the debts alive.
        let mut dust = Vec::new();
        // Every valuation below needs prices a liquidation could use: a stale or uncertain print must not make real
        // collateral look like dust, or a solvent sub-account look insolvent.
        for b in &sub.balances {
            self.usable_price(b.asset, now_s, Guard::Liquidation, "resolving a bankruptcy")?;
        }
        for b in sub.balances.iter().filter(|b| b.scaled > 0) {
            let risk = self.asset_risk(b.asset, now_s)?;
            let worthless = match risk.oracle {
                Some(o) => {
                    o.price
                        .value_floor(Self::native_of(b.scaled, &risk)?, risk.decimals)?
                        < DUST_VALUE
                }
                None => false,
            };
            if !worthless {
                return Err(reject(
                    "not_bankrupt",
                    format!("sub-account {target} still holds collateral: liquidate it first"),
                ));
            }
            dust.push((b.asset, b.scaled));
        }
        if !dust.is_empty()
            && !self
                .equity_at_oracle(sub, &self.all_risks(now_s)?)?
                .is_negative()
        {
            return Err(reject(
                "not_bankrupt",
                format!("sub-account {target} still holds collateral and is solvent"),
            ));
        }
        // Insurance stakes and pool shares are assets nobody else can seize. They count toward solvency; an
        // insolvent sub-account forfeits them below (burned: their value stays with the fund's or the pool's other
        // holders), so a speck of stake cannot keep a bad debt unresolved.
        let stakes: Vec<(AssetIdx, Stake)> = self
            .stakes
            .range((target, 0)..=(target, AssetIdx::MAX))
            .map(|(&(_, asset), &stake)| (asset, stake))
            .collect();
        let pool_units = self.lp_shares.get(&target).copied().unwrap_or(0);
        if !stakes.is_empty() || pool_units > 0 {
            let mut shares_value = Quote::ZERO;
            for &(asset, stake) in &stakes {
                let pool = &self.pools[asset as usize];
                let fund = Self::insurance_value(pool)?;
                let tokens = ballast_num::mul_div(
                    stake.shares,
                    fund.raw() + INSURANCE_VIRTUAL_OFFSET,
                    pool.insurance_shares + INSURANCE_VIRTUAL_OFFSET,
                    Rounding::Floor,
                )?
                .min(fund.raw());
                let price =
                    self.usable_price(asset, now_s, Guard::Liquidation, "resolving a bankruptcy")?;
                let decimals = self.assets[asset as usize].decimals;
                shares_value = shares_value
                    .checked_add(price.value_floor(TokenAmount::from_raw(tokens), decimals)?)?;
            }
            if pool_units > 0 {
                shares_value =
                    shares_value.checked_add(self.pool_share_value(now_s, pool_units)?)?;
            }
            let equity = self.equity_at_oracle(sub, &self.all_risks(now_s)?)?;
            if !equity.checked_add(shares_value)?.is_negative() {
                return Err(reject(
                    "not_bankrupt",
                    format!("sub-account {target} holds insurance or pool shares worth {shares_value} {}, which cover its deficit: redeem them first", self.label()),
                ));
            }
        }
        if sub.balances.iter().all(|b| b.scaled > 0) && sub.perps.is_empty() {
            return Err(reject(
                "not_bankrupt",
                format!("sub-account {target} owes nothing"),
            ));
        }
        // A profitable open position is an asset a liquidator can take over, except a long option: it has no
        // requirement, so no takeover improves health; it is closed at its mark below, once the sub-account is known
        // insolvent, and is then a claim. A profitable closed one (a claim on its market's losers) is forfeited to
        // the insurance fund below, once the sub-account is insolvent.
        let mut claims = Vec::new();
        let mut deficits = Vec::new();
        let mut long_options = Vec::new();
        for p in &sub.perps {
            let (position, value) = self.settled_value(now_s, target, p.market)?;
            let is_option = self.market_configs[p.market as usize].option.is_some();
            if value.is_positive() && position.base.is_positive() && is_option {
                long_options.push(p.market);
                continue;
            }
            if value.is_positive() && !position.base.is_zero() {
                let symbol = &self.market_configs[p.market as usize].symbol;
                return Err(reject(
                    "not_bankrupt",
                    format!(
                        "sub-account {target}'s {symbol} position is worth {value} {}: liquidate it first",
                        self.label()
                    ),
                ));
            }
            if value.is_positive() {
                claims.push((p.market, value));
            } else {
                deficits.push(p.market);
            }
        }
        if !claims.is_empty() || !long_options.is_empty() {
            let equity = self.equity_at_oracle(sub, &self.all_risks(now_s)?)?;
            if !equity.is_negative() {
                return Err(reject(
                    "not_bankrupt",
                    format!(
                        "sub-account {target} is worth {equity} {}: settle its PnL instead",
                        self.label()
                    ),
                ));
            }
        }
        let mut events = Vec::new();
        let mut touched = vec![target];
        for (asset, stake) in stakes {
            let mut pool = self.pools[asset as usize].clone();
            pool.insurance_shares -= stake.shares;
            self.commit_pool(asset, pool);
            self.commit_stake(target, asset, |s| *s = Stake::default());
            events.push(Event::SharesForfeited {
                target,
                fund: format!("{} insurance fund", self.assets[asset as usize].symbol),
                shares: TokenQuantity::from_native(
                    TokenAmount::from_raw(stake.shares),
                    self.assets[asset as usize].decimals,
                )?,
            });
        }
        if pool_units > 0 {
            self.forfeit_pool_shares(target, pool_units);
            events.push(Event::SharesForfeited {
                target,
                fund: "counterparty pool".to_string(),
                shares: TokenQuantity::from_native(
                    TokenAmount::from_raw(pool_units),
                    POOL_SHARE_DECIMALS,
                )?,
            });
        }
        for (asset, scaled) in dust {
            let mut pool = self.pools[asset as usize].clone();
            let amount = pool.deposit_native(scaled)?;
            // The scaled units themselves change hands: exact, no rounding.
            pool.insurance_scaled += scaled;
            self.commit_pool(asset, pool);
            self.commit_balance(target, asset, 0);
            events.push(Event::DustSwept {
                target,
                asset: self.assets[asset as usize].symbol.clone(),
                amount: self.quantity(asset, amount)?,
            });
        }
        // The insolvent estate's long options are closed at their marks: each is then a closed position whose value
        // is its quote balance, a claim like any other (or, if the chunks' roundings took its last micro-dollars, a
        // deficit or nothing).
        for m in long_options {
            let value = self.close_at_mark(now_s, target, m, &mut events, &mut touched)?;
            if value.is_positive() {
                claims.push((m, value));
            } else if value.is_negative() {
                deficits.push(m);
            } else {
                self.commit_perp(target, m, None);
            }
        }
        claims.sort_unstable_by_key(|&(m, _)| m);
        deficits.sort_unstable();
        // The insolvent estate's claims go to the insurance fund's claim in their markets (collected later by
        // settle_venue_claims). The fund advances nothing against them: such a claim is the first written off by
        // the market's next bankruptcy, so it backs nothing the fund could pay now.
        for (m, claim) in claims {
            let (mut market, _) = self.accrued_market(m, now_s)?;
            market.insurance_collected = market.insurance_collected.checked_add(claim)?;
            self.commit_market(m, market);
            self.commit_perp(target, m, None);
            events.push(Event::PerpClaimForfeited {
                target,
                market: self.market_configs[m as usize].symbol.clone(),
                amount: claim,
            });
        }
        for m in deficits {
            self.resolve_perp_position(now_s, target, m, &mut events, &mut touched)?;
        }
        self.resolve_debts(now_s, target, &mut events)?;
        touched.sort_unstable();
        touched.dedup();
        self.refresh_touched(now_s, &touched, &mut events)?;
        Ok(events)
    }

    /// Market `m`'s underlying decimals and the price its positions are resolved at: the oracle for a perp, the
    /// mark for an option series, usable for a liquidation.
    fn resolution_price(&self, m: MarketIdx, now_s: u64) -> Result<(u8, Price), Rejection> {
        let underlying = self.market_underlying[m as usize];
        let symbol = &self.market_configs[m as usize].symbol;
        let price = self.usable_mark(
            m,
            now_s,
            Guard::Liquidation,
            &format!("resolving a bankruptcy in {symbol}"),
        )?;
        Ok((self.assets[underlying as usize].decimals, price))
    }

    /// A position's funding-settled copy and its value at a usable oracle price (rounded down).
    fn settled_value(
        &self,
        now_s: u64,
        id: SubAccountId,
        m: MarketIdx,
    ) -> Result<(PerpPosition, Quote), Rejection> {
        let (decimals, oracle) = self.resolution_price(m, now_s)?;
        let mut position = *self.sub_accounts[id as usize]
            .perp(m)
            .expect("listed from the sub-account's positions");
        let index = self.accrued_market(m, now_s)?.0.funding_index;
        settle_funding(&mut position, index, decimals)?;
        let value = oracle
            .value_floor(position.base, decimals)?
            .checked_add(position.quote)?;
        Ok((position, value))
    }

    /// A sub-account's equity: its value at the latest oracle prices without weights (deposits minus debts plus
    /// every position's unsettled PnL, funding settled to the market's last accrual). Negative means insolvent.
    pub fn equity(&self, id: SubAccountId) -> Result<Quote, Rejection> {
        let sub = self.sub_account(id)?;
        Ok(self.equity_at_oracle(sub, &self.all_risks(self.now_s)?)?)
    }

    /// The whole sub-account's value at oracle prices, without weights: deposits minus debts plus every position's
    /// value (funding settled). Balances in an asset without a price count as zero. Used to rank ADL only.
    pub(super) fn equity_at_oracle(&self, sub: &SubAccount, risks: &RiskTable) -> NumResult<Quote> {
        let mut total = Quote::ZERO;
        for b in &sub.balances {
            let risk = &risks.assets[b.asset as usize];
            if let Some(o) = risk.oracle {
                let amount = Self::native_of(b.scaled, risk)?;
                total = total.checked_add(o.price.value_floor(amount, risk.decimals)?)?;
            }
        }
        for p in &sub.perps {
            let risk = &risks.markets[p.market as usize];
            if let Some(price) = risk.oracle {
                let mut settled = *p;
                settle_funding(&mut settled, risk.funding_index, risk.decimals)?;
                total = total
                    .checked_add(price.value_floor(settled.base, risk.decimals)?)?
                    .checked_add(settled.quote)?;
            }
        }
        Ok(total)
    }

    /// Every other position in market `m`, in ADL order (module docs).
    fn adl_ranking(
        &self,
        now_s: u64,
        m: MarketIdx,
        target: SubAccountId,
        oracle: Price,
        index: Price,
    ) -> NumResult<Vec<Candidate>> {
        let risks = self.all_risks(now_s)?;
        let decimals = risks.markets[m as usize].decimals;
        let mut ranked = Vec::with_capacity(self.market_holders[m as usize].len());
        for &id in &self.market_holders[m as usize] {
            if id == target {
                continue;
            }
            let sub = &self.sub_accounts[id as usize];
            let stored = *sub.perp(m).expect("the holder index lists only holders");
            let mut position = stored;
            settle_funding(&mut position, index, decimals)?;
            let value = oracle
                .value_floor(position.base, decimals)?
                .checked_add(position.quote)?;
            let infinite = Ratio::from_raw(i128::MAX);
            let score = if !value.is_positive() {
                Ratio::ZERO
            } else {
                let equity = self.equity_at_oracle(sub, &risks)?;
                if equity.is_positive() {
                    Ratio::from_fraction(value.raw(), equity.raw(), Rounding::Floor)
                        .unwrap_or(infinite)
                } else {
                    infinite
                }
            };
            ranked.push(Candidate {
                id,
                stored,
                position,
                value,
                score,
                touched: false,
            });
        }
        ranked.sort_by(|a, b| {
            let (pa, pb) = (a.value.is_positive(), b.value.is_positive());
            pb.cmp(&pa)
                .then_with(|| {
                    if pa {
                        b.score.cmp(&a.score)
                    } else {
                        Ordering::Equal
                    }
                })
                .then(b.value.cmp(&a.value))
                .then(a.id.cmp(&b.id))
        });
        Ok(ranked)
    }

    /// Runs the perp waterfall (module docs) on the target's position in market `m`.
    fn resolve_perp_position(
        &mut self,
        now_s: u64,
        target: SubAccountId,
        m: MarketIdx,
        events: &mut Vec<Event>,
        touched_ids: &mut Vec<SubAccountId>,
    ) -> Result<(), Rejection> {
        let config = &self.market_configs[m as usize];
        let symbol = config.symbol.clone();
        let insurance_cap = self
            .perp_tiers
            .iter()
            .find(|t| t.name == config.tier)
            .expect("validated tier")
            .insurance_cap_per_bankruptcy;
        let (decimals, oracle) = self.resolution_price(m, now_s)?;
        let value = |p: &PerpPosition| -> NumResult<Quote> {
            oracle.value_floor(p.base, decimals)?.checked_add(p.quote)
        };
        let (mut market, _) = self.accrued_market(m, now_s)?;
        let mut tp = *self.sub_accounts[target as usize]
            .perp(m)
            .expect("listed from the target's positions");
        market.settle_position_funding(&mut tp, decimals)?;
        let deficit = value(&tp)?.checked_neg()?;
        debug_assert!(!deficit.is_negative(), "checked by resolve_bankruptcy");
        let mut ranked = self.adl_ranking(now_s, m, target, oracle, market.funding_index)?;
        let touch = |c: &mut Candidate, market: &mut Market| c.touch(market, oracle, decimals);
        let quote_asset = self.quote_asset;
        let quote_config = &self.assets[quote_asset as usize];
        let mut pool = self.pools[quote_asset as usize].clone();
        pool.accrue(now_s, &quote_config.interest, quote_config.reserve_factor)?;
        let start = events.len();
        let mut out = Outcome::default();
        // The target's deficit still to absorb: always exactly minus its value at the oracle.
        let mut remaining = deficit;
        for step in self.protocol.bankruptcy_waterfall.clone() {
            match step {
                WaterfallStep::VenueClaims => {
                    let taken = Self::write_off_claims(&mut market, remaining)?;
                    tp.quote = tp.quote.checked_add(taken)?;
                    remaining = remaining.checked_sub(taken)?;
                    out.from_claims = out.from_claims.checked_add(taken)?;
                }
                WaterfallStep::Insurance => {
                    let fund = self.tokens_worth_floor(Self::insurance_value(&pool)?)?;
                    let mut budget = remaining.min(insurance_cap).min(fund);
                    // Lowest-ranked winners first: what the fund does not cover is deleveraged, and that should fall
                    // on the most profitable, most levered positions, as without a fund.
                    for c in ranked.iter_mut().rev() {
                        if !budget.is_positive() {
                            break;
                        }
                        let owed = value(&c.position)?;
                        let sub = &self.sub_accounts[c.id as usize];
                        if !owed.is_positive()
                            || self.check_may_hold(sub, c.id, quote_asset).is_err()
                        {
                            continue;
                        }
                        let held = sub.scaled(quote_asset);
                        // The fund left, not the fund at the start: each withdrawal rounds its scaled units up,
                        // so the fund can shrink by a unit more than it paid.
                        let fund_left = self.tokens_worth_floor(Self::insurance_value(&pool)?)?;
                        let tokens = self.quote_tokens_floor(budget.min(owed).min(fund_left))?;
                        if tokens.is_zero() {
                            continue;
                        }
                        let paid = self.tokens_worth_floor(tokens)?;
                        touch(c, &mut market)?;
                        pool.insurance_scaled -= pool.withdraw(tokens, pool.insurance_scaled)?;
                        let (scaled, _) = pool.credit(held, tokens)?;
                        pool.internal_move(tokens)?;
                        self.commit_balance(c.id, quote_asset, scaled);
                        c.position.quote = c.position.quote.checked_sub(paid)?;
                        tp.quote = tp.quote.checked_add(paid)?;
                        remaining = remaining.checked_sub(paid)?;
                        budget = budget.checked_sub(paid)?;
                        out.insurance_tokens = out.insurance_tokens.checked_add(tokens)?;
                        out.insurance_paid = out.insurance_paid.checked_add(paid)?;
                        events.push(Event::InsurancePaidWinner {
                            market: symbol.clone(),
                            bankrupt: target,
                            winner: c.id,
                            amount: self.quantity(quote_asset, tokens)?,
                        });
                    }
                    pool.bad_debt_covered =
                        pool.bad_debt_covered.checked_add(out.insurance_tokens)?;
                }
                WaterfallStep::Socialize => {
                    if tp.base.is_zero() {
                        // Cut the ranked winners' profit: first what their rounded-down values allow, then (only if
                        // that rounds short) the last fraction of a micro-dollar their true values still hold.
                        for rounding in [Rounding::Floor, Rounding::Ceil] {
                            for (rank, c) in ranked.iter_mut().enumerate() {
                                if !remaining.is_positive() {
                                    break;
                                }
                                let profit = oracle
                                    .value(c.position.base, decimals, rounding)?
                                    .checked_add(c.position.quote)?;
                                let cut = remaining.min(profit);
                                if !cut.is_positive() {
                                    continue;
                                }
                                touch(c, &mut market)?;
                                c.position.quote = c.position.quote.checked_sub(cut)?;
                                tp.quote = tp.quote.checked_add(cut)?;
                                remaining = remaining.checked_sub(cut)?;
                                out.socialized = out.socialized.checked_add(cut)?;
                                events.push(Event::Deleveraged {
                                    market: symbol.clone(),
                                    bankrupt: target,
                                    counterparty: c.id,
                                    rank: rank as u32 + 1,
                                    base: TokenQuantity::ZERO,
                                    value_lost: cut,
                                });
                            }
                        }
                        if remaining.is_positive() {
                            // Winners' profit and venue claims together always cover a deficit, but for the
                            // venue's funding rounding: take the claims left, then whole micro-dollars of the dust
                            // (with every position's funding booked, so the dust is all there).
                            let taken = Self::write_off_claims(&mut market, remaining)?;
                            tp.quote = tp.quote.checked_add(taken)?;
                            remaining = remaining.checked_sub(taken)?;
                            out.from_claims = out.from_claims.checked_add(taken)?;
                        }
                        if remaining.is_positive() {
                            for c in ranked.iter_mut() {
                                touch(c, &mut market)?;
                            }
                            let d =
                                ballast_num::pow10(decimals as u32 + ballast_num::QUOTE_DECIMALS)?;
                            let whole = Quote::from_raw(market.funding_dust / d);
                            let taken = remaining.min(whole);
                            market.funding_dust -= taken.raw() * d;
                            tp.quote = tp.quote.checked_add(taken)?;
                            remaining = remaining.checked_sub(taken)?;
                            out.from_claims = out.from_claims.checked_add(taken)?;
                        }
                        if remaining.is_positive() {
                            return Err(reject(
                                "perp_insolvent",
                                format!("{symbol}: the market's winners and the venue's claims cannot absorb sub-account {target}'s deficit of {remaining}"),
                            ));
                        }
                    } else {
                        out.bankruptcy_price = Some(self.deleverage(
                            target,
                            &symbol,
                            oracle,
                            decimals,
                            &mut tp,
                            &mut market,
                            &mut ranked,
                            &touch,
                            events,
                        )?);
                        out.socialized = remaining;
                        remaining = Quote::ZERO;
                    }
                }
            }
        }
        debug_assert!(remaining.is_zero() && tp.base.is_zero() && tp.quote.is_zero());
        debug_assert_eq!(
            out.from_claims
                .checked_add(out.insurance_paid)?
                .checked_add(out.socialized)?,
            deficit
        );
        market.claims_written_off = market.claims_written_off.checked_add(out.from_claims)?;
        market.insurance_paid = market.insurance_paid.checked_add(out.insurance_paid)?;
        market.socialized_loss = market.socialized_loss.checked_add(out.socialized)?;
        // ADL's losses fall on the market's positions, not on the quote asset's depositors: the pause is the
        // market's, for the sub-accounts exposed to it (a haircut of a pool pauses that pool, in `resolve_debts`).
        let pause_until = now_s + self.protocol.socialized_loss_withdrawal_pause_s;
        if out.socialized.is_positive() {
            market.withdrawals_paused_until_s = pause_until;
        }
        self.commit_pool(quote_asset, pool);
        self.commit_market(m, market);
        self.commit_perp(target, m, None);
        if out.socialized.is_positive() {
            // Everyone holding a position in the market now is paused, whatever they do with the position next.
            for c in &ranked {
                self.commit_withdrawal_pause(c.id, pause_until);
            }
        }
        self.write_back(m, &ranked, touched_ids);
        events.insert(
            start,
            Event::PerpBankruptcyResolved {
                target,
                market: symbol,
                deficit,
                from_venue_claims: out.from_claims,
                covered_by_insurance: self.quantity(quote_asset, out.insurance_tokens)?,
                socialized: out.socialized,
                bankruptcy_price: out.bankruptcy_price,
            },
        );
        Ok(())
    }

    /// Writes off up to `amount` of the venue's claims in a market, fees first; returns how much.
    fn write_off_claims(market: &mut Market, amount: Quote) -> NumResult<Quote> {
        let fees = amount.min(market.fees_collected);
        let insurance = amount.checked_sub(fees)?.min(market.insurance_collected);
        market.fees_collected = market.fees_collected.checked_sub(fees)?;
        market.insurance_collected = market.insurance_collected.checked_sub(insurance)?;
        fees.checked_add(insurance)
    }

    /// Closes the target's open position `tp` against the ranked positions on the other side, at the price where its
    /// value is zero; returns that price (rounded down). `tp` ends at exactly zero.
    #[allow(clippy::too_many_arguments)]
    fn deleverage(
        &self,
        target: SubAccountId,
        symbol: &str,
        oracle: Price,
        decimals: u8,
        tp: &mut PerpPosition,
        market: &mut Market,
        ranked: &mut [Candidate],
        touch: &impl Fn(&mut Candidate, &mut Market) -> NumResult<()>,
        events: &mut Vec<Event>,
    ) -> Result<Price, Rejection> {
        let long = tp.base.is_positive();
        let total = tp.base.abs()?;
        let quote = tp.quote;
        let d = ballast_num::pow10(decimals as u32 + ballast_num::QUOTE_DECIMALS)?;
        let bankruptcy_price = Price::from_raw(ballast_num::mul_div(
            quote.checked_neg()?.raw(),
            d,
            tp.base.raw(),
            Rounding::Floor,
        )?);
        let mut left = total;
        for (rank, c) in ranked.iter_mut().enumerate() {
            if left.is_zero() {
                break;
            }
            if c.position.base.is_zero() || c.position.base.is_positive() == long {
                continue;
            }
            let size = c.position.base.abs()?.min(left);
            let left_after = left.checked_sub(size)?;
            // The target's quote shrinks pro rata to its remaining base; the counterparty takes the difference.
            let quote_after = Quote::from_raw(ballast_num::mul_div(
                quote.raw(),
                left_after.raw(),
                total.raw(),
                Rounding::Floor,
            )?);
            let moved = tp.quote.checked_sub(quote_after)?;
            let signed = if long { size } else { size.checked_neg()? };
            let value_before = oracle
                .value_floor(c.position.base, decimals)?
                .checked_add(c.position.quote)?;
            touch(c, market)?;
            shift(market, tp, &mut c.position, signed, moved)?;
            debug_assert_eq!(tp.quote, quote_after);
            let value_after = oracle
                .value_floor(c.position.base, decimals)?
                .checked_add(c.position.quote)?;
            events.push(Event::Deleveraged {
                market: symbol.to_string(),
                bankrupt: target,
                counterparty: c.id,
                rank: rank as u32 + 1,
                base: TokenQuantity::from_native(signed, decimals)?,
                value_lost: value_before.checked_sub(value_after)?,
            });
            left = left_after;
        }
        if !left.is_zero() {
            // Every fill is two-sided, so the other side always holds at least the bankrupt position's size.
            return Err(reject(
                "perp_insolvent",
                format!("{symbol}: the other side holds less than sub-account {target}'s position"),
            ));
        }
        Ok(bankruptcy_price)
    }

    /// Writes back the ranked positions the waterfall changed in market `m` (a flat position with a zero quote
    /// balance is removed) and lists their sub-accounts for the margin refresh.
    fn write_back(
        &mut self,
        m: MarketIdx,
        ranked: &[Candidate],
        touched_ids: &mut Vec<SubAccountId>,
    ) {
        for c in ranked.iter().filter(|c| c.touched) {
            let p = c.position;
            let keep = !p.base.is_zero() || !p.quote.is_zero();
            self.commit_perp(c.id, m, keep.then_some(p));
            touched_ids.push(c.id);
        }
    }

    /// Closes the insolvent target's profitable long position in option series `m` at the series' mark, against
    /// the short positions of the series in ADL order (module docs): each chunk of `size` contracts moves
    /// `floor(size * mark)` micro-USD from the short's quote balance to the target's, and `size` from the target's
    /// base to the short's. The target's position is written back flat (funding settled); returns its quote balance,
    /// its whole value now.
    fn close_at_mark(
        &mut self,
        now_s: u64,
        target: SubAccountId,
        m: MarketIdx,
        events: &mut Vec<Event>,
        touched_ids: &mut Vec<SubAccountId>,
    ) -> Result<Quote, Rejection> {
        let symbol = self.market_configs[m as usize].symbol.clone();
        debug_assert!(self.market_configs[m as usize].option.is_some());
        let (decimals, mark) = self.resolution_price(m, now_s)?;
        let (mut market, _) = self.accrued_market(m, now_s)?;
        let mut tp = *self.sub_accounts[target as usize]
            .perp(m)
            .expect("listed from the target's positions");
        market.settle_position_funding(&mut tp, decimals)?;
        debug_assert!(tp.base.is_positive(), "checked by resolve_bankruptcy");
        let mut ranked = self.adl_ranking(now_s, m, target, mark, market.funding_index)?;
        let mut left = tp.base;
        // Buying back a short at its mark never lowers its value, but it can lower a portfolio-margined short's
        // health (the short may hedge something else). First pass: only shorts no less healthy after their chunk;
        // second pass: the others, if they stay at or above maintenance. Each chunk is a short's whole position or
        // what is left of the long, never less.
        for pass in [Pass::NoLessHealthy, Pass::StaysAboveMaintenance] {
            for (rank, c) in ranked.iter_mut().enumerate() {
                if left.is_zero() {
                    break;
                }
                if !c.position.base.is_negative() {
                    continue;
                }
                let size = c.position.base.abs()?.min(left);
                // Each chunk rounds down on its own, so no short pays more than its contracts' value at the mark
                // and its value at the mark (rounded down, as the waterfall values positions) never falls.
                let amount = mark.value_floor(size, decimals)?;
                let mut trial = c.position;
                trial.base = trial.base.checked_add(size)?;
                trial.quote = trial.quote.checked_sub(amount)?;
                let before = self.health_at(c.id, now_s)?.maintenance;
                let sub = &self.sub_accounts[c.id as usize];
                let keep = (!trial.base.is_zero() || !trial.quote.is_zero()).then_some(trial);
                let after = self
                    .health_cache_with(sub, now_s, &[], &[(m, keep)], Guard::Liquidation)?
                    .health()?
                    .maintenance;
                let allowed = match pass {
                    Pass::NoLessHealthy => after >= before,
                    Pass::StaysAboveMaintenance => after < before && !after.is_negative(),
                };
                if !allowed {
                    continue;
                }
                c.touch(&mut market, mark, decimals)?;
                shift(
                    &mut market,
                    &mut tp,
                    &mut c.position,
                    size,
                    amount.checked_neg()?,
                )?;
                left = left.checked_sub(size)?;
                events.push(Event::ClosedAtMark {
                    market: symbol.clone(),
                    bankrupt: target,
                    counterparty: c.id,
                    rank: rank as u32 + 1,
                    base: TokenQuantity::from_native(size, decimals)?,
                    price: mark,
                    amount,
                });
            }
        }
        if !left.is_zero() {
            return Err(reject(
                "no_counterparty",
                format!(
                    "{symbol}: the shorts that could buy back sub-account {target}'s long options without falling \
                     below maintenance hold fewer than its {} contracts; resolve it after the market moves",
                    TokenQuantity::from_native(tp.base, decimals)?
                ),
            ));
        }
        debug_assert!(tp.base.is_zero());
        self.commit_market(m, market);
        self.commit_perp(target, m, Some(tp));
        self.write_back(m, &ranked, touched_ids);
        Ok(tp.quote)
    }

    /// The lending waterfall for every debt of a sub-account with nothing left to seize, in asset order: that
    /// asset's insurance fund pays up to its tier's cap (if `insurance` is a waterfall step), and the rest is written
    /// off against the pool's depositors by a supply-index haircut, after which the pool's withdrawals pause. Every
    /// unit is in the event and in the pool's ledger totals.
    fn resolve_debts(
        &mut self,
        now_s: u64,
        target: SubAccountId,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let debts: Vec<(AssetIdx, i128)> = self.sub_accounts[target as usize]
            .balances
            .iter()
            .map(|b| (b.asset, b.scaled))
            .collect();
        let insured = self
            .protocol
            .bankruptcy_waterfall
            .contains(&WaterfallStep::Insurance);
        let mut touched_assets = Vec::new();
        for (asset, scaled) in debts {
            debug_assert!(scaled < 0, "collateral was refused before");
            let config = &self.assets[asset as usize];
            let symbol = config.symbol.clone();
            let decimals = config.decimals;
            let tier = self
                .tiers
                .iter()
                .find(|t| t.name == config.tier)
                .expect("validated tier");
            let mut pool = self.pools[asset as usize].clone();
            pool.accrue(now_s, &config.interest, config.reserve_factor)?;
            let owed = pool.borrow_native(-scaled)?;
            let cap = match self.oracles[asset as usize] {
                Some(o) if insured => o.price.amount_for_value(
                    tier.insurance_cap_per_bankruptcy,
                    decimals,
                    Rounding::Floor,
                )?,
                _ => TokenAmount::ZERO,
            };
            let covered = owed.min(Self::insurance_value(&pool)?).min(cap);
            let mut remaining = scaled;
            if covered.is_positive() {
                pool.insurance_scaled -= pool.withdraw(covered, pool.insurance_scaled)?;
                remaining += pool.repay(covered, -scaled)?;
                pool.internal_move(covered)?;
                pool.bad_debt_covered = pool.bad_debt_covered.checked_add(covered)?;
            }
            let supply_index_before = pool.supply_index;
            let socialized = if remaining < 0 {
                // The ledger records exactly what the insurance did not cover; the index haircut rounds in the
                // venue's favour and its remainder goes to the rounding surplus.
                let uncovered = owed.checked_sub(covered)?;
                match pool.socialize(-remaining, uncovered)? {
                    Some(amount) => {
                        pool.withdrawals_paused_until_s =
                            now_s + self.protocol.socialized_loss_withdrawal_pause_s;
                        amount
                    }
                    None => {
                        return Err(reject(
                            "pool_insolvent",
                            format!("the {symbol} pool's depositors cannot absorb sub-account {target}'s debt"),
                        ))
                    }
                }
            } else {
                TokenAmount::ZERO
            };
            events.push(Event::BankruptcyResolved {
                target,
                asset: symbol,
                debt: TokenQuantity::from_native(owed, decimals)?,
                covered_by_insurance: TokenQuantity::from_native(covered, decimals)?,
                socialized: TokenQuantity::from_native(socialized, decimals)?,
                supply_index_before,
                supply_index_after: pool.supply_index,
            });
            self.commit_pool(asset, pool);
            self.commit_balance(target, asset, 0);
            if socialized.is_positive() {
                touched_assets.push(asset);
            }
        }
        // Depositors of a haircut pool lost collateral value: re-check them.
        for asset in touched_assets {
            self.reevaluate_holders(now_s, asset, events)?;
        }
        Ok(())
    }
}
