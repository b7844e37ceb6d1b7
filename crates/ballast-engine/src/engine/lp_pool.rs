//! The counterparty liquidity pool (Hyperliquid's HLP and GMX's GLP play this part): a venue-owned sub-account that
//! takes the other side of trades and backstops liquidations, owned by liquidity providers through shares.
//!
//! The pool is an ordinary cross sub-account of the reserved owner [`POOL_OWNER`], opened once by
//! `open_counterparty_pool`. So its positions count in open interest, funding and the perp zero-sum identity, its
//! PnL settles like anyone's, a liquidator may liquidate it and the waterfall may resolve it: nothing in the engine
//! treats it specially but the commands below. No command may use it as an actor (deposit, withdraw, transfer,
//! fill, stake, liquidate); it moves only through pool commands, settlement, liquidation of it and the waterfall.
//!
//! - **Value.** The pool is worth its equity at oracle prices: deposits (rounded down) minus debts (rounded up) plus
//!   every position's unsettled PnL (funding settled, rounded down). Valuing it needs a usable price for everything
//!   it holds, so shares are never priced off a bad oracle. Deposits see this full value; **redemptions** (and the
//!   exposure bound) count the pool's unsettled **profit** at the market's `positive_pnl_initial_weight`, as initial
//!   health does: the traders who owe it may never pay, and a provider who leaves first must not take a share of
//!   profit the others are then left to write off. A deposit followed at once by a redemption loses that haircut.
//! - **Shares.** A deposit of quote-asset tokens worth `a` (micro-USD, at face) mints `a * (S + V) / (W + V)` share
//!   units, rounded down, for `S` shares outstanding and a pool worth `W`; a redemption of `s` units pays
//!   `s * (W + V) / (S + V)` micro-USD in tokens, rounded down. `V = 10^6` virtual units on both sides (ERC-4626's
//!   defence against the first-depositor share-price inflation pattern, as for the insurance funds). Share units
//!   have 6 decimals: the first share is worth 1 USD.
//! - **Trades.** `pool_trade` fills at the oracle price plus its confidence for a buy (minus it for a sell), moved
//!   against the trader by the price impact `min(skew / impact_depth, max_impact)` (`[market.pool]`), rounded
//!   against the trader. `skew` is the traders' mean net position against the pool over the trade, valued at the
//!   oracle: the trade takes it from `x0` (the traders' side in the trade's direction: minus the pool's base for a
//!   buy, plus it for a sell) to `x0 + size`, and pays for the mean of its positive part,
//!   `(max(x1, 0)^2 - max(x0, 0)^2) / (2 * size)` (a trade back toward flat pays no impact and earns no rebate; one
//!   that crosses flat pays for the part beyond it). So splitting a trade saves nothing, and a trader who
//!   knows where the next print lands within the confidence band gains nothing from the pool. The trader pays the
//!   market's taker fee, the pool no fee. The oracle price must be usable for new risk.
//! - **Exposure.** A trade that grows the pool's net position in a market, or flips its side, is refused if the
//!   position's notional would exceed `max_exposure` times the pool's (haircut) value afterwards; so is a
//!   redemption that would leave any of the pool's positions beyond that bound. Like any sub-account taking risk,
//!   the pool's initial health must stay non-negative. A redemption also needs the pool to hold the tokens as a
//!   deposit (unsettled PnL is not cash) and waits out a pause of quote-asset withdrawals.
//! - **Backstop.** `pool_liquidate` (permissionless) liquidates a sub-account below maintenance with the pool as the
//!   liquidator, under the same rules as a registered liquidator, for **perp positions only** (the pool cannot act to
//!   sell seized collateral), only in markets the pool quotes, and within the same exposure bound (valued under the
//!   liquidation guard: a divergent price does not block it).

use super::*;
use crate::perp::settle_funding;

/// The owner id reserved for the counterparty pool's sub-account; no account may be created with it. It is the
/// largest integer a JSON reader that holds numbers as doubles reads exactly (2^53 - 1).
pub const POOL_OWNER: OwnerId = (1 << 53) - 1;

/// Virtual share units and micro-USD added to both sides of the share price (see the module docs).
const POOL_VIRTUAL_OFFSET: i128 = 1_000_000;

/// Decimals of pool shares as events show them (1_000_000 share units are one share).
pub const POOL_SHARE_DECIMALS: u8 = 6;

/// How the pool is valued: in full (deposits), or with unsettled profit at a haircut (redemptions and the exposure
/// bound), so that a redemption never takes more than its share of what traders will actually pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Valuation {
    Full,
    ProfitHaircut,
}

/// The counterparty pool's header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LpPool {
    /// The pool's sub-account, once opened.
    pub sub_account: Option<SubAccountId>,
    /// Share units outstanding: the sum of every provider's shares.
    pub total_shares: i128,
}

impl Engine {
    fn commit_lp(&mut self, lp: LpPool) {
        if self.journal.lp.is_none() {
            self.journal.lp = Some(self.lp);
        }
        self.lp = lp;
    }

    fn commit_lp_shares(&mut self, id: SubAccountId, shares: i128) {
        let old = self.lp_shares.get(&id).copied();
        self.journal.lp_shares.push((id, old));
        if shares == 0 {
            self.lp_shares.remove(&id);
        } else {
            self.lp_shares.insert(id, shares);
        }
    }

    /// Refuses a command that would use the pool's sub-account (or its reserved owner) as an actor.
    pub(super) fn refuse_pool_as_actor(&self, kind: &CommandKind) -> Result<(), Rejection> {
        use CommandKind as K;
        if let K::CreateAccount { owner } | K::OpenSubAccount { owner, .. } = kind {
            if *owner == POOL_OWNER {
                return Err(reject(
                    "reserved_owner",
                    format!("owner {POOL_OWNER} is reserved for the counterparty pool"),
                ));
            }
        }
        let Some(pool) = self.lp.sub_account else {
            return Ok(());
        };
        let actors: &[SubAccountId] = match kind {
            K::Deposit { sub_account, .. }
            | K::Withdraw { sub_account, .. }
            | K::StakeInsurance { sub_account, .. }
            | K::RequestUnstake { sub_account, .. }
            | K::Unstake { sub_account, .. }
            | K::RegisterLiquidator { sub_account }
            | K::PoolDeposit { sub_account, .. }
            | K::PoolWithdraw { sub_account, .. }
            | K::PoolTrade { sub_account, .. } => std::slice::from_ref(sub_account),
            K::Transfer { from, to, .. } => &[*from, *to],
            K::PerpFill { taker, maker, .. } => &[*taker, *maker],
            K::Liquidate { liquidator, .. } => std::slice::from_ref(liquidator),
            _ => &[],
        };
        if actors.contains(&pool) {
            return Err(reject(
                "pool_account",
                format!("sub-account {pool} is the counterparty pool's: it moves only through pool commands, settlement, liquidation and the waterfall"),
            ));
        }
        Ok(())
    }

    fn pool_id(&self) -> Result<SubAccountId, Rejection> {
        self.lp.sub_account.ok_or_else(|| {
            reject(
                "no_pool",
                "the counterparty pool is not open (open_counterparty_pool)",
            )
        })
    }

    pub(super) fn open_counterparty_pool(&mut self) -> Applied {
        if let Some(id) = self.lp.sub_account {
            return Err(reject(
                "pool_exists",
                format!("the counterparty pool is open already (sub-account {id})"),
            ));
        }
        if self.owners.len() >= MAX_OWNERS || self.sub_accounts.len() >= MAX_SUB_ACCOUNTS {
            return Err(reject(
                "limit",
                "the engine holds its maximum of owners or sub-accounts",
            ));
        }
        // Neither step can fail now, so nothing needs a journal.
        self.owners.insert(POOL_OWNER, Vec::new());
        let events = self.open_sub_account(POOL_OWNER, &MarginSpec::Cross)?;
        let Some(Event::SubAccountOpened { sub_account, .. }) = events.first() else {
            unreachable!("open_sub_account reports the new sub-account")
        };
        let id = *sub_account;
        self.commit_lp(LpPool {
            sub_account: Some(id),
            total_shares: 0,
        });
        Ok(vec![Event::CounterpartyPoolOpened { sub_account: id }])
    }

    /// The counterparty pool's value now (module docs), if it is open and every price it needs is usable.
    pub fn counterparty_pool_value(&self) -> Option<Quote> {
        self.pool_value(self.now_s, Valuation::Full, Guard::NewRisk)
            .ok()
    }

    /// The pool's value (module docs), refusing if any price it needs is not usable for new risk.
    fn pool_value(
        &self,
        now_s: u64,
        valuation: Valuation,
        guard: Guard,
    ) -> Result<Quote, Rejection> {
        let id = self.pool_id()?;
        let sub = &self.sub_accounts[id as usize];
        let action = "valuing the counterparty pool";
        for b in &sub.balances {
            self.usable_price(b.asset, now_s, guard, action)?;
        }
        for p in &sub.perps {
            let underlying = self.market_underlying[p.market as usize];
            self.usable_price(underlying, now_s, guard, action)?;
        }
        let risks = self.all_risks(now_s)?;
        let mut value = self.equity_at_oracle(sub, &risks)?;
        if valuation == Valuation::ProfitHaircut {
            // Unsettled profit is owed by traders who may never pay it: it counts at the market's
            // `positive_pnl_initial_weight`, as in initial health, so a redemption does not take more than its share.
            for p in &sub.perps {
                let risk = &risks.markets[p.market as usize];
                let Some(price) = risk.oracle else { continue };
                let mut settled = *p;
                settle_funding(&mut settled, risk.funding_index, risk.decimals)?;
                let profit = price
                    .value_floor(settled.base, risk.decimals)?
                    .checked_add(settled.quote)?;
                if profit.is_positive() {
                    let kept = profit.mul_ratio_floor(risk.positive_pnl_initial_weight)?;
                    value = value.checked_sub(profit.checked_sub(kept)?)?;
                }
            }
        }
        Ok(value)
    }

    /// Refuses unless every pool position that `before` (market, signed base) shows grew or flipped side is in a
    /// market the pool quotes and within its exposure bound against the pool's (haircut) value.
    fn check_pool_growth(
        &self,
        now_s: u64,
        before: &[(MarketIdx, i128)],
        guard: Guard,
    ) -> Result<(), Rejection> {
        let id = self.pool_id()?;
        let mut grown = Vec::new();
        for p in &self.sub_accounts[id as usize].perps {
            let was = before
                .iter()
                .find(|(m, _)| *m == p.market)
                .map_or(0, |(_, b)| *b);
            let is = p.base.raw();
            let flipped = was != 0 && is != 0 && (was < 0) != (is < 0);
            if is.unsigned_abs() > was.unsigned_abs() || flipped {
                grown.push(p.market);
            }
        }
        if grown.is_empty() {
            return Ok(());
        }
        let value = self.pool_value(now_s, Valuation::ProfitHaircut, guard)?;
        for m in grown {
            if self.market_configs[m as usize].pool.is_none() {
                return Err(reject(
                    "no_pool_market",
                    format!(
                        "the pool takes on positions only in markets it quotes, not {}",
                        self.market_configs[m as usize].symbol
                    ),
                ));
            }
            self.check_pool_exposure(now_s, value, Some(m), guard)?;
        }
        Ok(())
    }

    /// The pool's signed base in every market it holds.
    fn pool_bases(&self) -> Result<Vec<(MarketIdx, i128)>, Rejection> {
        let id = self.pool_id()?;
        Ok(self.sub_accounts[id as usize]
            .perps
            .iter()
            .map(|p| (p.market, p.base.raw()))
            .collect())
    }

    /// Refuses if any of the pool's positions is beyond `max_exposure` times `value`; `only` limits the check to
    /// one market.
    fn check_pool_exposure(
        &self,
        now_s: u64,
        value: Quote,
        only: Option<MarketIdx>,
        guard: Guard,
    ) -> Result<(), Rejection> {
        let id = self.pool_id()?;
        for p in &self.sub_accounts[id as usize].perps {
            if only.is_some_and(|m| m != p.market) || p.base.is_zero() {
                continue;
            }
            let config = &self.market_configs[p.market as usize];
            let underlying = self.market_underlying[p.market as usize];
            let decimals = self.assets[underlying as usize].decimals;
            let price = self.usable_price(underlying, now_s, guard, "pool exposure")?;
            let exposure = price.value_ceil(p.base.abs()?, decimals)?;
            // A market without pool quoting has no bound (the pool cannot hold a position there: it neither trades
            // nor takes over liquidations in one).
            let Some(pool) = &config.pool else { continue };
            let cap = value.mul_ratio_floor(pool.max_exposure)?;
            if exposure > cap {
                return Err(reject(
                    "pool_exposure",
                    format!(
                        "the pool's {} position of {exposure} USD would exceed {} times its value of {value}",
                        config.symbol, pool.max_exposure
                    ),
                ));
            }
        }
        Ok(())
    }

    /// What `units` pool shares redeem for now (micro-USD, the redemption value), for a bankruptcy's solvency test.
    pub(super) fn pool_share_value(&self, now_s: u64, units: i128) -> Result<Quote, Rejection> {
        let value = self.pool_value(now_s, Valuation::ProfitHaircut, Guard::Liquidation)?;
        let owed = ballast_num::mul_div(
            units,
            value.raw().saturating_add(POOL_VIRTUAL_OFFSET),
            self.lp
                .total_shares
                .checked_add(POOL_VIRTUAL_OFFSET)
                .ok_or_else(|| reject("limit", "pool shares overflow"))?,
            Rounding::Floor,
        )?;
        Ok(Quote::from_raw(owed.max(0)))
    }

    /// Burns an insolvent sub-account's pool shares: their value stays with the other providers.
    pub(super) fn forfeit_pool_shares(&mut self, id: SubAccountId, units: i128) {
        self.commit_lp(LpPool {
            total_shares: self.lp.total_shares - units,
            ..self.lp
        });
        self.commit_lp_shares(id, 0);
    }

    pub(super) fn pool_deposit(
        &mut self,
        now_s: u64,
        id: SubAccountId,
        amount: TokenQuantity,
    ) -> Applied {
        let pool_id = self.pool_id()?;
        let quote = self.quote_asset;
        let native = self.native(quote, amount)?;
        if !native.is_positive() {
            return Err(reject(
                "bad_amount",
                format!("pool deposit of {amount} must be positive"),
            ));
        }
        let sub = self.sub_account(id)?;
        let config = &self.assets[quote as usize];
        let mut pool = self.pools[quote as usize].clone();
        pool.accrue(now_s, &config.interest, config.reserve_factor)?;
        let held_scaled = sub.scaled(quote).max(0);
        let held = pool.deposit_native(held_scaled)?;
        if native > held {
            return Err(reject(
                "insufficient_balance",
                format!(
                    "pool deposit of {amount} {} exceeds sub-account {id}'s deposit of {}",
                    self.label(),
                    self.quantity(quote, held)?
                ),
            ));
        }
        let value = self.pool_value(now_s, Valuation::Full, Guard::NewRisk)?;
        let worth = self.tokens_worth_floor(native)?;
        let denominator = value.raw().checked_add(POOL_VIRTUAL_OFFSET).unwrap_or(0);
        if denominator <= 0 {
            return Err(reject(
                "pool_insolvent",
                format!("the counterparty pool is worth {value}: it takes no deposits"),
            ));
        }
        let shares = ballast_num::mul_div(
            worth.raw(),
            self.lp
                .total_shares
                .checked_add(POOL_VIRTUAL_OFFSET)
                .ok_or_else(|| reject("limit", "pool shares overflow"))?,
            denominator,
            Rounding::Floor,
        )?;
        if shares <= 0 {
            return Err(reject(
                "bad_amount",
                format!("pool deposit of {amount} buys no share"),
            ));
        }
        let source_scaled = held_scaled - pool.withdraw(native, held_scaled)?;
        let (pool_scaled, _) =
            pool.credit(self.sub_accounts[pool_id as usize].scaled(quote), native)?;
        pool.internal_move(native)?;
        self.check_new_risk(
            id,
            &format!("pool deposit of {amount} {}", self.label()),
            now_s,
            &[(quote, source_scaled)],
        )?;
        self.commit_pool(quote, pool);
        self.commit_balance(id, quote, source_scaled);
        self.commit_balance(pool_id, quote, pool_scaled);
        let lp = LpPool {
            total_shares: self
                .lp
                .total_shares
                .checked_add(shares)
                .ok_or_else(|| reject("limit", "pool shares overflow"))?,
            ..self.lp
        };
        self.commit_lp(lp);
        let held_shares = self.lp_shares.get(&id).copied().unwrap_or(0);
        self.commit_lp_shares(id, held_shares + shares);
        let mut events = vec![Event::PoolDeposited {
            sub_account: id,
            amount,
            shares: TokenQuantity::from_native(TokenAmount::from_raw(shares), POOL_SHARE_DECIMALS)?,
            pool_value: value,
        }];
        let mut touched = [id, pool_id];
        touched.sort_unstable();
        self.refresh_touched(now_s, &touched, &mut events)?;
        Ok(events)
    }

    pub(super) fn pool_withdraw(
        &mut self,
        now_s: u64,
        id: SubAccountId,
        shares: TokenQuantity,
    ) -> Applied {
        let pool_id = self.pool_id()?;
        let quote = self.quote_asset;
        self.sub_account(id)?;
        let units = match shares.to_native_exact(POOL_SHARE_DECIMALS) {
            Some(u) if u.is_positive() => u.raw(),
            _ => {
                return Err(reject(
                    "bad_amount",
                    format!(
                    "{shares} shares must be positive with at most {POOL_SHARE_DECIMALS} decimals"
                ),
                ))
            }
        };
        let held_shares = self.lp_shares.get(&id).copied().unwrap_or(0);
        if units > held_shares {
            return Err(reject(
                "insufficient_shares",
                format!(
                    "sub-account {id} holds {} pool shares, not {shares}",
                    TokenQuantity::from_native(
                        TokenAmount::from_raw(held_shares),
                        POOL_SHARE_DECIMALS
                    )?
                ),
            ));
        }
        self.refuse_if_paused(quote, now_s, "pool withdrawal")?;
        self.refuse_if_market_paused(pool_id, now_s, "pool withdrawal")?;
        let value = self.pool_value(now_s, Valuation::ProfitHaircut, Guard::NewRisk)?;
        let owed = ballast_num::mul_div(
            units,
            value.raw().saturating_add(POOL_VIRTUAL_OFFSET),
            self.lp
                .total_shares
                .checked_add(POOL_VIRTUAL_OFFSET)
                .ok_or_else(|| reject("limit", "pool shares overflow"))?,
            Rounding::Floor,
        )?;
        let tokens = self.quote_tokens_floor(Quote::from_raw(owed.max(0)))?;
        if !tokens.is_positive() {
            return Err(reject(
                "pool_insolvent",
                format!("{shares} shares of a pool worth {value} redeem for nothing"),
            ));
        }
        let config = &self.assets[quote as usize];
        let mut pool = self.pools[quote as usize].clone();
        pool.accrue(now_s, &config.interest, config.reserve_factor)?;
        let pool_scaled = self.sub_accounts[pool_id as usize].scaled(quote).max(0);
        let free = pool.deposit_native(pool_scaled)?;
        if tokens > free {
            return Err(reject(
                "pool_liquidity",
                format!(
                    "the pool holds {} {} as a deposit, less than the {} these shares redeem for; its PnL must be settled first",
                    self.quantity(quote, free)?,
                    self.label(),
                    self.quantity(quote, tokens)?
                ),
            ));
        }
        let pool_after = pool_scaled - pool.withdraw(tokens, pool_scaled)?;
        let (lp_scaled, _) = pool.credit(self.sub_accounts[id as usize].scaled(quote), tokens)?;
        pool.internal_move(tokens)?;
        self.check_may_hold(&self.sub_accounts[id as usize], id, quote)?;
        self.commit_pool(quote, pool);
        self.commit_balance(pool_id, quote, pool_after);
        self.commit_balance(id, quote, lp_scaled);
        self.commit_lp(LpPool {
            total_shares: self.lp.total_shares - units,
            ..self.lp
        });
        self.commit_lp_shares(id, held_shares - units);
        let amount = self.quantity(quote, tokens)?;
        let action = format!("pool withdrawal of {shares} shares");
        self.check_new_risk(pool_id, &action, now_s, &[])?;
        let after = self.pool_value(now_s, Valuation::ProfitHaircut, Guard::NewRisk)?;
        self.check_pool_exposure(now_s, after, None, Guard::NewRisk)?;
        let mut events = vec![Event::PoolWithdrawn {
            sub_account: id,
            shares,
            amount,
            pool_value: value,
        }];
        let mut touched = [id, pool_id];
        touched.sort_unstable();
        self.refresh_touched(now_s, &touched, &mut events)?;
        Ok(events)
    }

    pub(super) fn pool_trade(
        &mut self,
        now_s: u64,
        symbol: &str,
        id: SubAccountId,
        side: Side,
        size: TokenQuantity,
    ) -> Applied {
        let pool_id = self.pool_id()?;
        let m = self.market_idx(symbol)?;
        let config = self.market_configs[m as usize].clone();
        let Some(pool_config) = &config.pool else {
            return Err(reject(
                "no_pool_market",
                format!("market {symbol} does not trade against the counterparty pool"),
            ));
        };
        let base = self.fill_base(m, size)?;
        let underlying = self.market_underlying[m as usize];
        let decimals = self.assets[underlying as usize].decimals;
        let sub = self.sub_account(id)?;
        self.check_may_trade(sub, id, m)?;
        self.check_may_trade(&self.sub_accounts[pool_id as usize], pool_id, m)?;
        let oracle = self.usable_price(
            underlying,
            now_s,
            Guard::NewRisk,
            &format!("a {symbol} pool trade"),
        )?;
        // Impact grows with the traders' net position against the pool, averaged over the trade: `x0` is the
        // traders' side in the trade's direction before it (minus the pool's base for a buy, plus it for a sell), so
        // the trade moves it from `x0` to `x0 + base` and pays for the mean. Splitting a trade saves nothing; a trade
        // that brings the pool back toward flat pays none (and earns no rebate).
        let pool_base = self.sub_accounts[pool_id as usize]
            .perp(m)
            .map_or(0, |p| p.base.raw());
        let x0 = match side {
            Side::Buy => pool_base.checked_neg(),
            Side::Sell => Some(pool_base),
        }
        .ok_or_else(|| reject("arithmetic", "pool position overflow"))?;
        // The mean of the positive part of the traders' side over the trade, from `x0` to `x1 = x0 + base`:
        // `(max(x1, 0)^2 - max(x0, 0)^2) / (2 * base)`, rounded up, so crossing flat pays for the part beyond it.
        let x1 = x0
            .checked_add(base.raw())
            .ok_or_else(|| reject("arithmetic", "pool position overflow"))?;
        let (p0, p1) = (x0.max(0), x1.max(0));
        let twice = base
            .raw()
            .checked_mul(2)
            .ok_or_else(|| reject("arithmetic", "pool trade size overflow"))?;
        let mean = ballast_num::mul_div(p1 - p0, p1 + p0, twice, Rounding::Ceil)?;
        let skew = oracle.value_ceil(TokenAmount::from_raw(mean), decimals)?;
        let impact =
            Ratio::from_fraction(skew.raw(), pool_config.impact_depth.raw(), Rounding::Ceil)?
                .min(pool_config.max_impact);
        // The oracle's confidence is a spread the trader pays on top, so a trader who knows where the next print
        // lands within it gains nothing from the pool.
        let confidence = self.oracles[underlying as usize]
            .expect("a usable price was checked")
            .confidence;
        let price = match side {
            Side::Buy => oracle
                .checked_add(confidence)?
                .mul_ratio(Ratio::ONE.checked_add(impact)?, Rounding::Ceil)?,
            Side::Sell => oracle
                .checked_sub(confidence)?
                .mul_ratio(Ratio::ONE.checked_sub(impact)?, Rounding::Floor)?,
        };
        let before = self.pool_bases()?;
        let mut events = vec![Event::PoolTraded {
            market: symbol.to_string(),
            sub_account: id,
            side,
            size,
            oracle_price: oracle,
            price,
            impact,
        }];
        let fees = [config.taker_fee, Ratio::ZERO];
        events.extend(self.execute_fill(now_s, m, [id, pool_id], side, size, base, price, fees)?);
        self.check_pool_growth(now_s, &before, Guard::NewRisk)?;
        Ok(events)
    }

    pub(super) fn pool_liquidate(&mut self, now_s: u64, target: SubAccountId) -> Applied {
        let pool_id = self.pool_id()?;
        let before = self.pool_bases()?;
        let events = self.liquidate_by(now_s, pool_id, target, true)?;
        // A divergent price does not block a liquidation, nor the pool's bound on what it takes over.
        self.check_pool_growth(now_s, &before, Guard::Liquidation)?;
        Ok(events)
    }
}
