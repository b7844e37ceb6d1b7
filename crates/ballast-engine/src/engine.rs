//! The state machine: [`Engine::apply`] takes one [`Command`] and either applies it whole, returning [`Event`]s, or
//! rejects it, leaving the state (and its hash) exactly as before.
//!
//! Every handler follows the same shape: look everything up and validate, compute the new values on copies
//! (a pool, a balance), check the result (caps, liquidity, health), and only then write the copies back. Nothing is
//! written before the last check, so a rejection cannot half-apply.

use crate::command::{
    Command, CommandKind, Event, MarginSpec, OwnerId, Rejection, Side, SubAccountId,
};
use crate::config::{
    validate_asset, AssetConfig, CollateralMode, ProtocolConfig, ProtocolSection, TierConfig,
};
use crate::health::{AssetRisk, Health, HealthCache};
use crate::limits::{
    MAX_ASSETS, MAX_BALANCES_PER_SUB_ACCOUNT, MAX_CLOCK_JUMP_S, MAX_OWNERS,
    MAX_PERP_POSITIONS_PER_SUB_ACCOUNT, MAX_PRICE, MAX_SUB_ACCOUNTS, MAX_SUB_ACCOUNTS_PER_OWNER,
};
use crate::maintenance::{EntryCache, Epochs, HolderRow, HolderRows};
use crate::oracle::{OraclePrice, PriceProblem};
use crate::perp::{
    open_interest_initial_ratio, Market, MarketConfig, MarketRisk, PerpPosition, PerpTierConfig,
};
use crate::pool::Pool;
use ballast_num::{NumResult, Price, Quote, Ratio, Rounding, TokenAmount, TokenQuantity};
use std::collections::{BTreeMap, BTreeSet};

mod lp_pool;
mod options;
mod portfolio_liquidation;
mod waterfall;

pub use lp_pool::{LpPool, POOL_OWNER, POOL_SHARE_DECIMALS};

/// Index of a listed asset, in listing order.
pub type AssetIdx = u16;
/// Index of a perp market, in listing order.
pub type MarketIdx = u16;

/// Every asset's [`AssetRisk`] and every market's [`MarketRisk`] at one moment: built once per command and shared
/// by all the sub-accounts it evaluates.
#[derive(Clone, Debug)]
pub(crate) struct RiskTable {
    pub assets: Vec<AssetRisk>,
    pub markets: Vec<MarketRisk>,
    pub quote_asset: AssetIdx,
    /// The portfolio-margin grid, and each asset's and market's scenario changes, computed when first needed.
    pub grid: Option<std::sync::Arc<crate::portfolio::Grid>>,
    pub asset_deltas: Vec<std::cell::OnceCell<NumResult<Vec<Price>>>>,
    pub market_deltas: Vec<std::cell::OnceCell<NumResult<std::sync::Arc<Vec<Price>>>>>,
    /// The engine's memo of market scenario changes, shared across tables.
    pub memo: std::sync::Arc<ScenarioMemo>,
}

/// Each market's scenario changes with the [`MarketRisk`] they were computed from (derived state, never hashed):
/// a full revaluation of an option series over the grid costs one pricing per scenario, and its inputs (the mark
/// inputs) change only with a price, a volatility or a settlement. An entry is used only when the risk it was
/// computed from equals the current one, so it never changes a result. Behind a mutex so that an engine can be read
/// from several threads.
///
/// It also keeps each option series' last mark with its inputs (volatility, underlying price and publish time,
/// settlement price): every command builds a risk table, and a mark is a pricing.
#[derive(Debug, Default)]
pub(crate) struct ScenarioMemo {
    deltas: std::sync::Mutex<Vec<Option<(MarketRisk, Deltas)>>>,
    marks: std::sync::Mutex<Vec<Option<(MarkInputs, Price)>>>,
}

/// One market's change per contract in every scenario of the grid, shared between tables.
type Deltas = std::sync::Arc<Vec<Price>>;

/// Everything an option series' mark reads that can change (the series' configuration cannot).
type MarkInputs = (Ratio, Price, u64, Option<Price>);

impl ScenarioMemo {
    fn mark(
        &self,
        m: MarketIdx,
        inputs: MarkInputs,
        compute: impl FnOnce() -> NumResult<Price>,
    ) -> NumResult<Price> {
        let mut entries = self
            .marks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(Some((cached, mark))) = entries.get(m as usize) {
            if *cached == inputs {
                return Ok(*mark);
            }
        }
        let mark = compute()?;
        if entries.len() <= m as usize {
            entries.resize(m as usize + 1, None);
        }
        entries[m as usize] = Some((inputs, mark));
        Ok(mark)
    }

    fn get_or_compute(
        &self,
        m: MarketIdx,
        risk: &MarketRisk,
        compute: impl FnOnce() -> NumResult<Vec<Price>>,
    ) -> NumResult<std::sync::Arc<Vec<Price>>> {
        let mut entries = self
            .deltas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(Some((cached, deltas))) = entries.get(m as usize) {
            if cached == risk {
                return Ok(deltas.clone());
            }
        }
        let deltas = std::sync::Arc::new(compute()?);
        if entries.len() <= m as usize {
            entries.resize(m as usize + 1, None);
        }
        entries[m as usize] = Some((*risk, deltas.clone()));
        Ok(deltas)
    }
}

impl RiskTable {
    /// Asset `a`'s per-token change in every scenario (`None`: no grid or no price).
    fn asset_deltas(&self, a: AssetIdx) -> NumResult<&[Price]> {
        let grid = self.grid.as_ref().ok_or(ballast_num::NumError::Domain {
            op: "portfolio margin without a grid",
        })?;
        let cell = &self.asset_deltas[a as usize];
        let deltas = cell.get_or_init(|| match self.assets[a as usize].oracle {
            Some(o) => grid.linear_deltas(o.price),
            None => Ok(vec![Price::ZERO; grid.scenarios.len()]),
        });
        deltas.as_deref().map_err(|e| *e)
    }

    /// Market `m`'s per-contract change in every scenario.
    fn market_deltas(&self, m: MarketIdx) -> NumResult<&[Price]> {
        let grid = self.grid.as_ref().ok_or(ballast_num::NumError::Domain {
            op: "portfolio margin without a grid",
        })?;
        let cell = &self.market_deltas[m as usize];
        let risk = &self.markets[m as usize];
        let deltas = cell.get_or_init(|| {
            self.memo
                .get_or_compute(m, risk, || grid.market_deltas(risk))
        });
        match deltas {
            Ok(deltas) => Ok(deltas.as_slice()),
            Err(e) => Err(*e),
        }
    }
}

/// How a sub-account is margined, by asset index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarginKind {
    Cross,
    Isolated(AssetIdx),
    /// Cross, margined over the portfolio scenario grid (`crate::portfolio`).
    Portfolio,
}

impl MarginKind {
    /// How messages name it.
    pub fn name(self) -> &'static str {
        match self {
            MarginKind::Cross => "cross",
            MarginKind::Isolated(_) => "isolated",
            MarginKind::Portfolio => "portfolio-margined",
        }
    }
}

/// One token balance of a sub-account: positive scaled units are a deposit (against the supply index), negative a
/// borrow (against the borrow index). Never zero: a balance that reaches zero is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balance {
    pub asset: AssetIdx,
    pub scaled: i128,
    /// Position of this sub-account in the asset's holder list (derived state, not hashed).
    holder_slot: u32,
}

/// A sub-account: its own balances and its own health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAccount {
    pub owner: OwnerId,
    pub margin: MarginKind,
    /// Sorted by asset index, at most [`MAX_BALANCES_PER_SUB_ACCOUNT`].
    pub balances: Vec<Balance>,
    /// Perp positions, sorted by market, at most [`MAX_PERP_POSITIONS_PER_SUB_ACCOUNT`].
    pub perps: Vec<PerpPosition>,
    /// Maintenance health was below zero at the last evaluation (a margin call is open).
    pub below_maintenance: bool,
    /// The oracle hot path's cache of each balance, then of each position, in the order of `balances` and `perps`
    /// (derived state, not hashed; see [`crate::maintenance`]). An entry's cache is replaced whenever it changes.
    pub(crate) maintenance: Vec<EntryCache>,
    /// The last re-evaluation of an asset's holders that met this sub-account (derived state, not hashed; see
    /// `Engine::reevaluate_holders`).
    pub(crate) evaluated: u64,
}

impl SubAccount {
    /// The position in a market, if any.
    pub fn perp(&self, market: MarketIdx) -> Option<&PerpPosition> {
        self.perps.iter().find(|p| p.market == market)
    }

    pub fn scaled(&self, asset: AssetIdx) -> i128 {
        self.balances
            .iter()
            .find(|b| b.asset == asset)
            .map_or(0, |b| b.scaled)
    }
}

/// The engine's whole state.
#[derive(Clone, Debug)]
pub struct Engine {
    pub(crate) protocol: ProtocolSection,
    pub(crate) tiers: Vec<TierConfig>,
    pub(crate) assets: Vec<AssetConfig>,
    pub(crate) quote_asset: AssetIdx,
    pub(crate) asset_by_symbol: BTreeMap<String, AssetIdx>,
    pub(crate) pools: Vec<Pool>,
    pub(crate) oracles: Vec<Option<OraclePrice>>,
    pub(crate) owners: BTreeMap<OwnerId, Vec<SubAccountId>>,
    pub(crate) sub_accounts: Vec<SubAccount>,
    /// Every sub-account's `below_maintenance` flag, one bit per sub-account id (bit `id % 64` of word `id / 64`),
    /// kept equal to the flags by [`Engine::set_below_maintenance`] (derived, not hashed). 128 KiB for a million
    /// sub-accounts: the oracle hot path reads a holder's flag here rather than from its `SubAccount`, and
    /// [`Engine::below_maintenance`] scans this instead of every sub-account.
    below_maintenance_bits: Vec<u64>,
    /// Per asset, the sub-accounts with a non-zero balance in it (derived; order is an implementation detail).
    pub(crate) holders: Vec<Vec<SubAccountId>>,
    /// Per asset, one row per spot holder, in the order of `holders`: what an update of the asset's price reads
    /// (derived, not hashed, not journaled; see [`crate::maintenance::HolderRow`]).
    pub(crate) holder_rows: Vec<Vec<HolderRow>>,
    pub(crate) perp_tiers: Vec<PerpTierConfig>,
    pub(crate) market_configs: Vec<MarketConfig>,
    pub(crate) markets: Vec<Market>,
    pub(crate) market_by_symbol: BTreeMap<String, MarketIdx>,
    /// Per market, the underlying asset's index (derived from the configuration).
    pub(crate) market_underlying: Vec<AssetIdx>,
    /// Per market, the sub-accounts with a position in it (derived).
    pub(crate) market_holders: Vec<BTreeSet<SubAccountId>>,
    /// Per market, how many of its holders hold no balance in its underlying asset (derived, not hashed). When it is
    /// zero, an update of the underlying's price meets every holder of the market among the asset's spot holders,
    /// and `reevaluate_holders` skips the walk over the market's holders.
    pub(crate) market_only_holders: Vec<u32>,
    /// Sub-accounts allowed to liquidate.
    pub(crate) liquidators: BTreeSet<SubAccountId>,
    /// Insurance fund stakes by (sub-account, asset).
    pub(crate) stakes: BTreeMap<(SubAccountId, AssetIdx), Stake>,
    /// The counterparty liquidity pool, and its liquidity providers' shares by sub-account.
    pub(crate) lp: LpPool,
    pub(crate) lp_shares: BTreeMap<SubAccountId, i128>,
    /// Sub-accounts that held a position in a market when it deleveraged may not withdraw until then (seconds).
    pub(crate) withdrawal_pauses: BTreeMap<SubAccountId, u64>,
    /// The `[portfolio_margin]` scenario grid (from the configuration), if portfolio margin is on.
    pub(crate) portfolio_grid: Option<std::sync::Arc<crate::portfolio::Grid>>,
    /// Memo of scenario revaluations (derived, not hashed; see [`ScenarioMemo`]).
    pub(crate) scenario_memo: std::sync::Arc<ScenarioMemo>,
    /// Sequencer time of the last applied command, seconds.
    pub(crate) now_s: u64,
    /// Commands applied so far.
    pub(crate) applied: u64,
    /// Pre-images of what the command being applied has written (see [`Journal`]).
    journal: Journal,
    /// The inputs the maintenance caches were computed with (derived, not hashed, not journaled; see
    /// [`crate::maintenance`]).
    pub(crate) epochs: Epochs,
    /// Re-evaluations of an asset's holders so far (derived, not hashed; see `Engine::reevaluate_holders`).
    evaluations: u64,
}

/// Pre-images of everything the command being applied has written so far.
///
/// A handler writes only after every check has passed, but the margin re-evaluation that follows its write reads
/// the new state and can still fail (an arithmetic overflow on absurd magnitudes). Then [`Engine::apply`] restores
/// these pre-images, newest first, and the rejection changes nothing. Cleared at the start of every command.
#[derive(Clone, Debug, Default)]
struct Journal {
    pools: Vec<(AssetIdx, Pool)>,
    balances: Vec<(SubAccountId, AssetIdx, i128)>,
    oracles: Vec<(AssetIdx, Option<OraclePrice>)>,
    flags: Vec<(SubAccountId, bool)>,
    perps: Vec<(SubAccountId, MarketIdx, Option<PerpPosition>)>,
    markets: Vec<(MarketIdx, Market)>,
    stakes: Vec<(SubAccountId, AssetIdx, Option<Stake>)>,
    lp: Option<LpPool>,
    lp_shares: Vec<(SubAccountId, Option<i128>)>,
    withdrawal_pauses: Vec<(SubAccountId, Option<u64>)>,
}

/// Virtual shares and native units added to every insurance fund when pricing its shares (see `stake_insurance`).
const INSURANCE_VIRTUAL_OFFSET: i128 = 1_000_000;

/// One sub-account's stake in one asset's insurance fund.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stake {
    pub shares: i128,
    /// Shares asked to be unstaked, and when (0: no request).
    pub unstake_shares: i128,
    pub unstake_requested_s: u64,
}

type Applied = Result<Vec<Event>, Rejection>;

/// Which price problems a check of new risk refuses to rely on. Per action: a voluntary new risk needs a fresh,
/// tight price that agrees with the slow reference; a liquidation needs a fresh, tight price but must go ahead
/// while the market runs away from the reference (that is when liquidations matter most).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Guard {
    NewRisk,
    Liquidation,
}

impl Guard {
    fn filter(self, problem: Option<PriceProblem>) -> Option<PriceProblem> {
        match (self, problem) {
            (Guard::Liquidation, Some(PriceProblem::Divergent { .. })) => None,
            (_, p) => p,
        }
    }
}

/// Which of an asset's pool caps a check is against.
#[derive(Clone, Copy, Debug)]
enum Cap {
    Deposit,
    Borrow,
}

fn reject(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection::new(code, message)
}

impl Engine {
    /// A new engine with the protocol file's assets listed, at time `genesis_s`.
    pub fn new(config: ProtocolConfig, genesis_s: u64) -> Engine {
        let quote = config.protocol.quote_asset.clone();
        let mut engine = Engine {
            protocol: config.protocol,
            tiers: config.tiers,
            assets: Vec::new(),
            quote_asset: 0,
            asset_by_symbol: BTreeMap::new(),
            pools: Vec::new(),
            oracles: Vec::new(),
            owners: BTreeMap::new(),
            sub_accounts: Vec::new(),
            below_maintenance_bits: Vec::new(),
            holders: Vec::new(),
            holder_rows: Vec::new(),
            now_s: genesis_s,
            applied: 0,
            journal: Journal::default(),
            epochs: Epochs::default(),
            evaluations: 0,
            perp_tiers: config.perp_tiers,
            market_configs: Vec::new(),
            markets: Vec::new(),
            market_by_symbol: BTreeMap::new(),
            market_underlying: Vec::new(),
            market_holders: Vec::new(),
            market_only_holders: Vec::new(),
            liquidators: BTreeSet::new(),
            stakes: BTreeMap::new(),
            lp: LpPool::default(),
            lp_shares: BTreeMap::new(),
            withdrawal_pauses: BTreeMap::new(),
            portfolio_grid: config
                .portfolio_margin
                .map(|c| std::sync::Arc::new(crate::portfolio::Grid::new(c))),
            scenario_memo: Default::default(),
        };
        for asset in config.assets {
            engine.push_asset(asset);
        }
        engine.quote_asset = engine.asset_by_symbol[&quote];
        for market in config.markets {
            let idx = engine.market_configs.len() as MarketIdx;
            engine.market_by_symbol.insert(market.symbol.clone(), idx);
            engine
                .market_underlying
                .push(engine.asset_by_symbol[&market.underlying]);
            engine.markets.push(Market::new(genesis_s, &market));
            engine.market_configs.push(market);
            engine.market_holders.push(BTreeSet::new());
            engine.market_only_holders.push(0);
        }
        engine
    }

    fn push_asset(&mut self, asset: AssetConfig) -> AssetIdx {
        let idx = self.assets.len() as AssetIdx;
        self.asset_by_symbol.insert(asset.symbol.clone(), idx);
        self.assets.push(asset);
        self.pools.push(Pool::new(self.now_s));
        self.oracles.push(None);
        self.holders.push(Vec::new());
        self.holder_rows.push(Vec::new());
        idx
    }

    /// Appends a sub-account restored from a snapshot (`crate::snapshot`), through the same paths as
    /// `open_sub_account`, `set_balance`, `set_perp` and `set_below_maintenance`, so that every piece of derived
    /// state (holder index and rows, maintenance caches, market holder sets, margin flag bits) is what those paths
    /// build. The caller has checked every index, count, order and non-zero rule.
    pub(crate) fn restore_sub_account(
        &mut self,
        owner: OwnerId,
        margin: MarginKind,
        below_maintenance: bool,
        balances: &[(AssetIdx, i128)],
        perps: &[PerpPosition],
    ) {
        let id = self.sub_accounts.len() as SubAccountId;
        if id.is_multiple_of(64) {
            self.below_maintenance_bits.push(0);
        }
        self.sub_accounts.push(SubAccount {
            owner,
            margin,
            balances: Vec::with_capacity(balances.len()),
            perps: Vec::with_capacity(perps.len()),
            below_maintenance: false,
            maintenance: Vec::with_capacity(balances.len() + perps.len()),
            evaluated: 0,
        });
        for &(asset, scaled) in balances {
            self.set_balance(id, asset, scaled);
        }
        for p in perps {
            self.set_perp(id, p.market, Some(*p));
        }
        self.set_below_maintenance(id, below_maintenance);
    }

    /// Writes a pool, keeping its pre-image in the journal.
    fn commit_pool(&mut self, asset: AssetIdx, pool: Pool) {
        let old = std::mem::replace(&mut self.pools[asset as usize], pool);
        self.journal.pools.push((asset, old));
    }

    /// Writes a balance, keeping its pre-image in the journal.
    fn commit_balance(&mut self, id: SubAccountId, asset: AssetIdx, scaled: i128) {
        let old = self.sub_accounts[id as usize].scaled(asset);
        self.journal.balances.push((id, asset, old));
        self.set_balance(id, asset, scaled);
    }

    /// Writes an oracle price, keeping its pre-image in the journal.
    fn commit_oracle(&mut self, asset: AssetIdx, price: OraclePrice) {
        let old = self.oracles[asset as usize].replace(price);
        self.journal.oracles.push((asset, old));
    }

    /// Writes a perp position (`None` removes it), keeping its pre-image in the journal.
    fn commit_perp(&mut self, id: SubAccountId, market: MarketIdx, position: Option<PerpPosition>) {
        let old = self.sub_accounts[id as usize].perp(market).copied();
        self.journal.perps.push((id, market, old));
        self.set_perp(id, market, position);
    }

    /// Writes a market's state, keeping its pre-image in the journal.
    fn commit_market(&mut self, market: MarketIdx, state: Market) {
        let old = std::mem::replace(&mut self.markets[market as usize], state);
        self.journal.markets.push((market, old));
    }

    /// Sets or removes a perp position, keeping positions sorted and the market holder index true.
    fn set_perp(&mut self, id: SubAccountId, market: MarketIdx, position: Option<PerpPosition>) {
        self.invalidate_rows(id);
        let sub = &mut self.sub_accounts[id as usize];
        let market_only = sub.scaled(self.market_underlying[market as usize]) == 0;
        let found = sub.perps.binary_search_by_key(&market, |p| p.market);
        match (found, position) {
            (Ok(i), Some(p)) => {
                sub.perps[i] = p;
                sub.maintenance[sub.balances.len() + i] = EntryCache::position(market);
            }
            (Ok(i), None) => {
                sub.perps.remove(i);
                sub.maintenance.remove(sub.balances.len() + i);
                self.market_holders[market as usize].remove(&id);
                self.market_only_holders[market as usize] -= market_only as u32;
            }
            (Err(i), Some(p)) => {
                assert!(
                    sub.perps.len() < MAX_PERP_POSITIONS_PER_SUB_ACCOUNT,
                    "position count checked before"
                );
                sub.perps.insert(i, p);
                sub.maintenance
                    .insert(sub.balances.len() + i, EntryCache::position(market));
                self.market_holders[market as usize].insert(id);
                self.market_only_holders[market as usize] += market_only as u32;
            }
            (Err(_), None) => {}
        }
    }

    /// Restores every pre-image the journal holds, newest first.
    fn roll_back(&mut self) {
        let journal = std::mem::take(&mut self.journal);
        for (id, below) in journal.flags.into_iter().rev() {
            self.set_below_maintenance(id, below);
        }
        for (id, asset, scaled) in journal.balances.into_iter().rev() {
            self.set_balance(id, asset, scaled);
        }
        for (asset, pool) in journal.pools.into_iter().rev() {
            self.commit_pool(asset, pool);
        }
        for (asset, price) in journal.oracles.into_iter().rev() {
            self.oracles[asset as usize] = price;
        }
        for (id, market, position) in journal.perps.into_iter().rev() {
            self.set_perp(id, market, position);
        }
        for (market, state) in journal.markets.into_iter().rev() {
            self.markets[market as usize] = state;
        }
        for (id, asset, stake) in journal.stakes.into_iter().rev() {
            match stake {
                Some(s) => self.stakes.insert((id, asset), s),
                None => self.stakes.remove(&(id, asset)),
            };
        }
        if let Some(lp) = journal.lp {
            self.lp = lp;
        }
        for (id, shares) in journal.lp_shares.into_iter().rev() {
            match shares {
                Some(s) => self.lp_shares.insert(id, s),
                None => self.lp_shares.remove(&id),
            };
        }
        for (id, until) in journal.withdrawal_pauses.into_iter().rev() {
            match until {
                Some(u) => self.withdrawal_pauses.insert(id, u),
                None => self.withdrawal_pauses.remove(&id),
            };
        }
        #[cfg(debug_assertions)]
        self.check_invariants()
            .expect("invariant broken by a roll-back");
    }

    /// Applies one command: all of it, or (with a [`Rejection`]) none of it.
    pub fn apply(&mut self, command: &Command) -> Applied {
        if command.timestamp < self.now_s {
            return Err(reject(
                "time_goes_backwards",
                format!(
                    "timestamp {} is before the previous command's {}",
                    command.timestamp, self.now_s
                ),
            ));
        }
        if command.timestamp - self.now_s > MAX_CLOCK_JUMP_S {
            return Err(reject(
                "time_jump",
                format!(
                    "timestamp {} is more than {MAX_CLOCK_JUMP_S} s after the previous command's {}",
                    command.timestamp, self.now_s
                ),
            ));
        }
        let now = command.timestamp;
        self.journal = Journal::default();
        self.refuse_pool_as_actor(&command.kind)?;
        let result = match &command.kind {
            CommandKind::CreateAccount { owner } => self.create_account(*owner),
            CommandKind::OpenSubAccount { owner, margin } => self.open_sub_account(*owner, margin),
            CommandKind::Deposit {
                sub_account,
                asset,
                amount,
            } => self.deposit(now, *sub_account, asset, *amount),
            CommandKind::Withdraw {
                sub_account,
                asset,
                amount,
                reduce_only,
            } => self.withdraw(now, *sub_account, asset, *amount, *reduce_only),
            CommandKind::Transfer {
                from,
                to,
                asset,
                amount,
            } => self.transfer(now, *from, *to, asset, *amount),
            CommandKind::OraclePrice {
                asset,
                price,
                confidence,
                publish_time,
            } => self.oracle_price(now, asset, *price, *confidence, *publish_time),
            CommandKind::AccrueInterest { asset } => self.accrue_interest(now, asset.as_deref()),
            CommandKind::ListAsset { asset } => self.list_asset(now, asset),
            CommandKind::PerpFill {
                market,
                taker,
                maker,
                side,
                size,
                price,
            } => self.perp_fill(now, market, *taker, *maker, *side, *size, *price),
            CommandKind::SettlePnl {
                market,
                winner,
                loser,
            } => self.settle_pnl(now, market, *winner, *loser),
            CommandKind::SettleVenueClaims { market, loser } => {
                self.settle_venue_claims(now, market, *loser)
            }
            CommandKind::StakeInsurance {
                sub_account,
                asset,
                amount,
            } => self.stake_insurance(now, *sub_account, asset, *amount),
            CommandKind::RequestUnstake {
                sub_account,
                asset,
                shares,
            } => self.request_unstake(now, *sub_account, asset, *shares),
            CommandKind::Unstake { sub_account, asset } => self.unstake(now, *sub_account, asset),
            CommandKind::ResolveBankruptcy { target } => self.resolve_bankruptcy(now, *target),
            CommandKind::RegisterLiquidator { sub_account } => {
                self.register_liquidator(*sub_account)
            }
            CommandKind::Liquidate { liquidator, target } => {
                self.liquidate(now, *liquidator, *target)
            }
            CommandKind::OpenCounterpartyPool {} => self.open_counterparty_pool(),
            CommandKind::PoolDeposit {
                sub_account,
                amount,
            } => self.pool_deposit(now, *sub_account, *amount),
            CommandKind::PoolWithdraw {
                sub_account,
                shares,
            } => self.pool_withdraw(now, *sub_account, *shares),
            CommandKind::PoolTrade {
                market,
                sub_account,
                side,
                size,
            } => self.pool_trade(now, market, *sub_account, *side, *size),
            CommandKind::PoolLiquidate { target } => self.pool_liquidate(now, *target),
            CommandKind::OptionVol { market, vol } => self.option_vol(now, market, *vol),
            CommandKind::ExpireMarket { market } => self.expire_market(now, market),
            CommandKind::UpdateFunding { market, mark_price } => {
                self.update_funding(now, market, *mark_price)
            }
            CommandKind::SetMarketRisk {
                market,
                reduce_only,
                paused,
                margin_multiplier,
                phase_s,
            } => self.set_market_risk(
                now,
                market,
                *reduce_only,
                *paused,
                *margin_multiplier,
                *phase_s,
            ),
        };
        let events = match result {
            Ok(events) => events,
            Err(rejection) => {
                self.roll_back();
                return Err(rejection);
            }
        };
        self.now_s = now;
        self.applied += 1;
        #[cfg(debug_assertions)]
        self.check_invariants()
            .expect("invariant broken by an applied command");
        Ok(events)
    }

    // ----- lookups -------------------------------------------------------------------------------------------

    fn asset_idx(&self, symbol: &str) -> Result<AssetIdx, Rejection> {
        self.asset_by_symbol
            .get(symbol)
            .copied()
            .ok_or_else(|| reject("unknown_asset", format!("asset {symbol} is not listed")))
    }

    fn sub_account(&self, id: SubAccountId) -> Result<&SubAccount, Rejection> {
        self.sub_accounts.get(id as usize).ok_or_else(|| {
            reject(
                "unknown_sub_account",
                format!("sub-account {id} does not exist"),
            )
        })
    }

    fn native(&self, asset: AssetIdx, amount: TokenQuantity) -> Result<TokenAmount, Rejection> {
        let a = &self.assets[asset as usize];
        if amount.raw() <= 0 {
            return Err(reject(
                "bad_amount",
                format!("amount {amount} {} must be positive", a.symbol),
            ));
        }
        amount.to_native_exact(a.decimals).ok_or_else(|| {
            reject(
                "bad_amount",
                format!(
                    "amount {amount} {} has more than {} decimal places",
                    a.symbol, a.decimals
                ),
            )
        })
    }

    fn quantity(&self, asset: AssetIdx, amount: TokenAmount) -> Result<TokenQuantity, Rejection> {
        Ok(TokenQuantity::from_native(
            amount,
            self.assets[asset as usize].decimals,
        )?)
    }

    fn label(&self) -> &str {
        &self.assets[self.quote_asset as usize].symbol
    }

    /// May this sub-account hold a balance (either sign) in this asset?
    fn check_may_hold(
        &self,
        sub: &SubAccount,
        id: SubAccountId,
        asset: AssetIdx,
    ) -> Result<(), Rejection> {
        let symbol = &self.assets[asset as usize].symbol;
        match sub.margin {
            MarginKind::Cross | MarginKind::Portfolio if self.assets[asset as usize].collateral == CollateralMode::IsolatedOnly => Err(reject(
                "isolated_only_asset",
                format!("asset {symbol} may only be held in an isolated sub-account bound to it; sub-account {id} is {}", sub.margin.name()),
            )),
            MarginKind::Isolated(bound) if asset != bound && asset != self.quote_asset => Err(reject(
                "not_allowed_in_isolated",
                format!(
                    "isolated sub-account {id} holds only {} and {}, not {symbol}",
                    self.assets[bound as usize].symbol,
                    self.label()
                ),
            )),
            _ => {
                if sub.scaled(asset) == 0 && sub.balances.len() >= MAX_BALANCES_PER_SUB_ACCOUNT {
                    return Err(reject(
                        "too_many_balances",
                        format!("sub-account {id} already holds {MAX_BALANCES_PER_SUB_ACCOUNT} assets"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// What health needs to know about an asset at time `now`.
    pub(crate) fn asset_risk(&self, asset: AssetIdx, now_s: u64) -> NumResult<AssetRisk> {
        let config = &self.assets[asset as usize];
        let pool = &self.pools[asset as usize];
        let oracle = self.oracles[asset as usize];
        let problem = match &oracle {
            None => Some(crate::oracle::PriceProblem::Missing),
            Some(o) => o.problem(now_s, &config.oracle)?,
        };
        let mut initial_asset_weight = config.initial_asset_weight;
        let threshold = config
            .concentration_threshold
            .to_native_exact(config.decimals)
            .unwrap_or(TokenAmount::ZERO);
        if threshold.is_positive() {
            // Rounded up: the scaling is never understated.
            let supplied = TokenAmount::from_raw(ballast_num::mul_div(
                pool.deposits_scaled,
                pool.supply_index.raw(),
                ballast_num::RATIO_SCALE,
                Rounding::Ceil,
            )?);
            if supplied > threshold {
                let scale = Ratio::from_fraction(threshold.raw(), supplied.raw(), Rounding::Floor)?;
                initial_asset_weight = initial_asset_weight.mul_floor(scale)?;
            }
        }
        Ok(AssetRisk {
            decimals: config.decimals,
            oracle,
            problem,
            initial_asset_weight,
            maintenance_asset_weight: config.maintenance_asset_weight,
            initial_liability_weight: config.initial_liability_weight,
            maintenance_liability_weight: config.maintenance_liability_weight,
            size_premium_factor: config.size_premium_factor,
            liquidation_end_fraction: self.protocol.liquidation_end_fraction,
            supply_index: pool.supply_index,
            borrow_index: pool.projected_borrow_index(now_s, &config.interest)?,
        })
    }

    /// Native amount of a scaled balance under `risk`'s indices, rounded against the holder.
    #[inline]
    fn native_of(scaled: i128, risk: &AssetRisk) -> NumResult<TokenAmount> {
        if scaled >= 0 {
            ballast_num::mul_div(
                scaled,
                risk.supply_index.raw(),
                ballast_num::RATIO_SCALE,
                Rounding::Floor,
            )
            .map(TokenAmount::from_raw)
        } else {
            crate::pool::borrow_native_at(-scaled, risk.borrow_index)?.checked_neg()
        }
    }

    /// A health cache of a sub-account at time `now`, with `overrides` (asset, scaled) replacing balances.
    fn health_cache(
        &self,
        sub: &SubAccount,
        now_s: u64,
        overrides: &[(AssetIdx, i128)],
    ) -> NumResult<HealthCache> {
        self.health_cache_with(sub, now_s, overrides, &[], Guard::NewRisk)
    }

    /// [`Engine::health_cache`] with perp positions replaced too (`None`: the position is closed).
    fn health_cache_with(
        &self,
        sub: &SubAccount,
        now_s: u64,
        overrides: &[(AssetIdx, i128)],
        perp_overrides: &[(MarketIdx, Option<PerpPosition>)],
        guard: Guard,
    ) -> NumResult<HealthCache> {
        if sub.margin == MarginKind::Portfolio {
            let mut balances: Vec<(AssetIdx, i128)> = sub
                .balances
                .iter()
                .map(|b| (b.asset, b.scaled))
                .filter(|(a, _)| !overrides.iter().any(|(o, _)| o == a))
                .collect();
            balances.extend(overrides.iter().copied());
            let positions: Vec<PerpPosition> = sub
                .perps
                .iter()
                .filter(|p| !perp_overrides.iter().any(|(m, _)| *m == p.market))
                .copied()
                .chain(perp_overrides.iter().filter_map(|(_, p)| *p))
                .collect();
            let table = self.all_risks(now_s)?;
            let health = portfolio_health(&balances, &positions, &table, None)?
                .expect("unguarded portfolio health never blocks");
            let new_risk =
                portfolio_health(&balances, &positions, &table, Some(guard))?.map(|h| h.initial);
            return Ok(HealthCache::portfolio(health, new_risk));
        }
        let mut cache = HealthCache::new();
        let mut add = |asset: AssetIdx, scaled: i128| -> NumResult<()> {
            let mut risk = self.asset_risk(asset, now_s)?;
            risk.problem = guard.filter(risk.problem);
            let ok = cache.set(asset, Self::native_of(scaled, &risk)?, &risk)?;
            debug_assert!(ok, "balance count is checked before health");
            Ok(())
        };
        for b in &sub.balances {
            let scaled = overrides
                .iter()
                .find(|(a, _)| *a == b.asset)
                .map_or(b.scaled, |(_, s)| *s);
            add(b.asset, scaled)?;
        }
        for &(asset, scaled) in overrides {
            if sub.scaled(asset) == 0 && scaled != 0 {
                add(asset, scaled)?;
            }
        }
        let existing = sub
            .perps
            .iter()
            .filter(|p| !perp_overrides.iter().any(|(m, _)| *m == p.market));
        let replaced = perp_overrides.iter().filter_map(|(_, p)| p.as_ref());
        for position in existing.chain(replaced) {
            let risk = self.market_risk(position.market, now_s)?;
            let underlying = self.market_underlying[position.market as usize];
            let problem = guard.filter(self.asset_risk(underlying, now_s)?.problem);
            let ok = cache.set_perp(position.market, underlying, position, &risk, problem)?;
            debug_assert!(ok, "position count is checked before health");
        }
        Ok(cache)
    }

    /// Health of a sub-account at the three levels, at the engine's current time.
    pub fn health(&self, id: SubAccountId) -> Result<Health, Rejection> {
        self.health_at(id, self.now_s)
    }

    fn health_at(&self, id: SubAccountId, now_s: u64) -> Result<Health, Rejection> {
        let sub = self.sub_account(id)?;
        Ok(self.health_cache(sub, now_s, &[])?.health()?)
    }

    /// Checks that a sub-account with `overrides` applied may take new risk: initial health under the oracle guard
    /// rails must be non-negative. Returns the resulting three-level health.
    fn check_new_risk(
        &self,
        id: SubAccountId,
        action: &str,
        now_s: u64,
        overrides: &[(AssetIdx, i128)],
    ) -> Result<Health, Rejection> {
        self.check_new_risk_guarded(id, action, now_s, overrides, Guard::NewRisk)
    }

    fn check_new_risk_guarded(
        &self,
        id: SubAccountId,
        action: &str,
        now_s: u64,
        overrides: &[(AssetIdx, i128)],
        guard: Guard,
    ) -> Result<Health, Rejection> {
        self.check_new_risk_with(id, action, now_s, overrides, &[], guard)
    }

    /// [`Engine::check_new_risk_guarded`] with perp positions replaced too (`None`: closed).
    fn check_new_risk_with(
        &self,
        id: SubAccountId,
        action: &str,
        now_s: u64,
        overrides: &[(AssetIdx, i128)],
        perp_overrides: &[(MarketIdx, Option<PerpPosition>)],
        guard: Guard,
    ) -> Result<Health, Rejection> {
        let sub = self.sub_account(id)?;
        let cache = self.health_cache_with(sub, now_s, overrides, perp_overrides, guard)?;
        match cache.initial_for_new_risk()? {
            Err(blocked) => Err(reject(
                blocked.problem.code(),
                format!(
                    "{action} is blocked: oracle for {} {}",
                    self.assets[blocked.asset as usize].symbol, blocked.problem
                ),
            )),
            Ok(initial) if initial.is_negative() => {
                let problem =
                    |asset: AssetIdx| self.asset_risk(asset, now_s).ok().and_then(|r| r.problem);
                let because = match cache.zeroed_collateral(problem) {
                    Some(z) => format!(
                        ", counting {} collateral at zero (its oracle {})",
                        self.assets[z.asset as usize].symbol, z.problem
                    ),
                    None => String::new(),
                };
                Err(reject(
                    "insufficient_health",
                    format!(
                        "{action} would leave initial health at {initial} {}{because}",
                        self.label()
                    ),
                ))
            }
            Ok(_) => Ok(cache.health()?),
        }
    }

    /// The oracle price of `asset` if it is usable for `action` under `guard`; otherwise the rejection, coded by the
    /// price's problem (`no_price`, `stale_oracle`, ...).
    fn usable_price(
        &self,
        asset: AssetIdx,
        now_s: u64,
        guard: Guard,
        action: &str,
    ) -> Result<Price, Rejection> {
        let risk = self.asset_risk(asset, now_s)?;
        if let Some(problem) = guard.filter(risk.problem) {
            let symbol = &self.assets[asset as usize].symbol;
            return Err(reject(
                problem.code(),
                format!("{action} needs a usable {symbol} price: oracle for {symbol} {problem}"),
            ));
        }
        Ok(risk.oracle.expect("no problem means a price").price)
    }

    /// The price positions in market `m` are valued at (the underlying's oracle price for a perp, the series' mark
    /// for an option), if the underlying's price is usable for `action` under `guard`.
    fn usable_mark(
        &self,
        m: MarketIdx,
        now_s: u64,
        guard: Guard,
        action: &str,
    ) -> Result<Price, Rejection> {
        let underlying = self.market_underlying[m as usize];
        // A settled series is worth its payoff whatever the underlying does: no price needed.
        if let (Some(series), Some(x)) = (
            &self.market_configs[m as usize].option,
            self.markets[m as usize].settlement_price,
        ) {
            return Ok(crate::option::intrinsic(series.kind, series.strike, x)?);
        }
        let price = self.usable_price(underlying, now_s, guard, action)?;
        if self.market_configs[m as usize].option.is_none() {
            return Ok(price);
        }
        Ok(self
            .market_risk(m, now_s)?
            .oracle
            .expect("a usable underlying price gives a mark"))
    }

    // ----- balance bookkeeping -------------------------------------------------------------------------------

    /// Sets a sub-account's scaled balance in an asset, keeping balances sorted and the holder index true.
    fn set_balance(&mut self, id: SubAccountId, asset: AssetIdx, scaled: i128) {
        self.invalidate_rows(id);
        let sub = &mut self.sub_accounts[id as usize];
        match sub.balances.binary_search_by_key(&asset, |b| b.asset) {
            Ok(pos) if scaled != 0 => {
                sub.balances[pos].scaled = scaled;
                sub.maintenance[pos] = EntryCache::balance(asset, scaled);
            }
            Ok(pos) => {
                let slot = sub.balances.remove(pos).holder_slot as usize;
                sub.maintenance.remove(pos);
                for p in &sub.perps {
                    if self.market_underlying[p.market as usize] == asset {
                        self.market_only_holders[p.market as usize] += 1;
                    }
                }
                let holders = &mut self.holders[asset as usize];
                holders.swap_remove(slot);
                self.holder_rows[asset as usize].swap_remove(slot);
                if let Some(&moved) = holders.get(slot) {
                    let b = self.sub_accounts[moved as usize]
                        .balances
                        .iter_mut()
                        .find(|b| b.asset == asset)
                        .expect("holder index lists only holders");
                    b.holder_slot = slot as u32;
                }
            }
            Err(_) if scaled == 0 => {}
            Err(pos) => {
                assert!(
                    sub.balances.len() < MAX_BALANCES_PER_SUB_ACCOUNT,
                    "balance count checked before"
                );
                let holders = &mut self.holders[asset as usize];
                sub.balances.insert(
                    pos,
                    Balance {
                        asset,
                        scaled,
                        holder_slot: holders.len() as u32,
                    },
                );
                sub.maintenance
                    .insert(pos, EntryCache::balance(asset, scaled));
                for p in &sub.perps {
                    if self.market_underlying[p.market as usize] == asset {
                        self.market_only_holders[p.market as usize] -= 1;
                    }
                }
                holders.push(id);
                self.holder_rows[asset as usize].push(HolderRow::EMPTY);
            }
        }
    }

    /// Marks every holder row of a sub-account not usable: its balances or positions are about to change (see
    /// [`crate::maintenance::HolderRow`]). Roll-back goes through `set_balance` and `set_perp` too.
    fn invalidate_rows(&mut self, id: SubAccountId) {
        for b in &self.sub_accounts[id as usize].balances {
            self.holder_rows[b.asset as usize][b.holder_slot as usize].invalidate();
        }
    }

    /// Re-evaluates maintenance health of the given sub-accounts and emits margin calls and recoveries for those
    /// that crossed zero. `risks` holds every asset's [`AssetRisk`] at time `now`, stamped by
    /// [`Engine::margin_risks`].
    fn refresh_margin_flags(
        &mut self,
        ids: &[SubAccountId],
        risks: &RiskTable,
        events: &mut Vec<Event>,
    ) -> NumResult<()> {
        let mut crossed = Vec::new();
        for &id in ids {
            let sub = &mut self.sub_accounts[id as usize];
            check_crossing(id, sub, risks, &self.epochs, &mut crossed)?;
        }
        self.apply_crossings(crossed, events);
        Ok(())
    }

    /// Flips the margin flags of crossed sub-accounts and emits their events, in sub-account order.
    fn apply_crossings(
        &mut self,
        mut crossed: Vec<(SubAccountId, Quote)>,
        events: &mut Vec<Event>,
    ) {
        crossed.sort_unstable_by_key(|(id, _)| *id);
        for (id, maintenance_health) in crossed {
            let sub = &self.sub_accounts[id as usize];
            self.journal.flags.push((id, sub.below_maintenance));
            let owner = sub.owner;
            let below = maintenance_health.is_negative();
            self.set_below_maintenance(id, below);
            events.push(if below {
                Event::MarginCall {
                    sub_account: id,
                    owner,
                    maintenance_health,
                }
            } else {
                Event::MarginRecovered {
                    sub_account: id,
                    owner,
                    maintenance_health,
                }
            });
        }
    }

    /// Sets a sub-account's margin flag and its bit in `below_maintenance_bits`.
    fn set_below_maintenance(&mut self, id: SubAccountId, below: bool) {
        self.sub_accounts[id as usize].below_maintenance = below;
        let (word, bit) = (id as usize / 64, id % 64);
        let bits = &mut self.below_maintenance_bits[word];
        *bits = (*bits & !(1 << bit)) | ((below as u64) << bit);
    }

    /// A sub-account's margin flag, from `below_maintenance_bits`.
    #[inline]
    fn is_below_maintenance(bits: &[u64], id: SubAccountId) -> bool {
        bits[id as usize / 64] >> (id % 64) & 1 == 1
    }

    /// A copy of market `m` with its funding accrued to `now_s` at the underlying's current oracle price, and the
    /// seconds accrued at the rate in force. Every handler that settles or moves positions starts from it, so a
    /// position pays funding for exactly the time it was held.
    fn accrued_market(&self, m: MarketIdx, now_s: u64) -> NumResult<(Market, u64)> {
        let mut market = self.markets[m as usize].clone();
        let interval_s = self.market_configs[m as usize].funding_interval_s();
        let seconds = match (
            self.oracles[self.market_underlying[m as usize] as usize],
            interval_s,
        ) {
            (Some(o), Some(interval_s)) => market.accrue_funding(now_s, o.price, interval_s)?,
            _ => 0,
        };
        Ok((market, seconds))
    }

    /// What margin needs to know about a perp market at time `now`: the underlying's oracle price, the funding
    /// index, and the initial and maintenance ratios after open-interest scaling and the margin multiplier.
    pub(crate) fn market_risk(&self, market: MarketIdx, now_s: u64) -> NumResult<MarketRisk> {
        let config = &self.market_configs[market as usize];
        let state = &self.markets[market as usize];
        let underlying = self.market_underlying[market as usize];
        let decimals = self.assets[underlying as usize].decimals;
        let underlying_oracle = self.oracles[underlying as usize];
        let oracle = underlying_oracle.map(|o| o.price);
        let tier = self
            .perp_tiers
            .iter()
            .find(|t| t.name == config.tier)
            .expect("validated tier");
        let oi_notional = match oracle {
            Some(p) => p.value_ceil(state.open_interest, decimals)?,
            None => Quote::ZERO,
        };
        let leverage_floor = Ratio::ONE.div_ceil(config.max_leverage)?;
        let multiplier = state.margin_multiplier(now_s)?;
        let initial = open_interest_initial_ratio(tier, oi_notional)?
            .max(leverage_floor)
            .mul_ceil(multiplier)?
            .min(Ratio::ONE);
        let maintenance = tier
            .maintenance_margin_ratio
            .mul_ceil(multiplier)?
            .min(Ratio::ONE);
        let (mark, option) = match &config.option {
            None => (oracle, None),
            Some(series) => {
                let scaled =
                    |r: Ratio| -> NumResult<Ratio> { Ok(r.mul_ceil(multiplier)?.min(Ratio::ONE)) };
                let mark = match underlying_oracle {
                    Some(o) => {
                        let inputs = (
                            state.mark_vol,
                            o.price,
                            o.publish_time_s,
                            state.settlement_price,
                        );
                        Some(self.scenario_memo.mark(market, inputs, || {
                            crate::option::mark(
                                series,
                                state.mark_vol,
                                o.price,
                                o.publish_time_s,
                                state.settlement_price,
                            )
                        })?)
                    }
                    None => None,
                };
                let years = match underlying_oracle {
                    Some(o) => crate::option::years_between(o.publish_time_s, series.expiry_s)?,
                    None => Ratio::ZERO,
                };
                let risk = crate::option::OptionRisk {
                    kind: series.kind,
                    strike: series.strike,
                    underlying: oracle,
                    vol: state.mark_vol,
                    years,
                    rate: series.rate,
                    dividend_yield: series.dividend_yield,
                    initial_share: scaled(series.initial_share)?,
                    initial_floor: scaled(series.initial_floor)?,
                    maintenance_share: scaled(series.maintenance_share)?,
                    maintenance_floor: scaled(series.maintenance_floor)?,
                    long_initial_weight: series.long_initial_weight,
                    settled: state.settlement_price.is_some(),
                };
                (mark, Some(risk))
            }
        };
        Ok(MarketRisk {
            underlying,
            decimals,
            oracle: mark,
            option,
            funding_index: state.funding_index,
            initial_ratio: initial.max(maintenance),
            maintenance_ratio: maintenance,
            liquidation_end_fraction: self.protocol.liquidation_end_fraction,
            size_premium_factor: config.size_premium_factor,
            positive_pnl_initial_weight: config.positive_pnl_initial_weight,
        })
    }

    /// Every asset's and every market's risk at time `now`.
    pub(crate) fn all_risks(&self, now_s: u64) -> NumResult<RiskTable> {
        Ok(RiskTable {
            quote_asset: self.quote_asset,
            grid: self.portfolio_grid.clone(),
            asset_deltas: (0..self.assets.len()).map(|_| Default::default()).collect(),
            market_deltas: (0..self.markets.len())
                .map(|_| Default::default())
                .collect(),
            memo: self.scenario_memo.clone(),
            assets: (0..self.assets.len() as AssetIdx)
                .map(|a| self.asset_risk(a, now_s))
                .collect::<NumResult<_>>()?,
            markets: (0..self.markets.len() as MarketIdx)
                .map(|m| self.market_risk(m, now_s))
                .collect::<NumResult<_>>()?,
        })
    }

    /// [`Engine::all_risks`] for the maintenance hot path: the table's inputs are stamped with their epochs, so that
    /// the sub-accounts' maintenance caches know which of their values still hold (see [`crate::maintenance`]).
    fn margin_risks(&mut self, now_s: u64) -> NumResult<RiskTable> {
        let risks = self.all_risks(now_s)?;
        if self.epochs.exhausted(&risks) {
            for sub in &mut self.sub_accounts {
                crate::maintenance::clear(sub);
            }
            for row in self.holder_rows.iter_mut().flatten() {
                row.invalidate();
            }
            self.epochs = Epochs::default();
        }
        self.epochs.stamp(&risks);
        Ok(risks)
    }

    fn refresh_touched(
        &mut self,
        now_s: u64,
        ids: &[SubAccountId],
        events: &mut Vec<Event>,
    ) -> NumResult<()> {
        let risks = self.margin_risks(now_s)?;
        self.refresh_margin_flags(ids, &risks, events)
    }

    // ----- handlers ------------------------------------------------------------------------------------------

    fn create_account(&mut self, owner: OwnerId) -> Applied {
        if self.owners.contains_key(&owner) {
            return Err(reject(
                "duplicate_owner",
                format!("owner {owner} already exists"),
            ));
        }
        if self.owners.len() >= MAX_OWNERS {
            return Err(reject(
                "limit",
                format!("the engine holds its maximum of {MAX_OWNERS} owners"),
            ));
        }
        self.owners.insert(owner, Vec::new());
        Ok(vec![Event::AccountCreated { owner }])
    }

    fn open_sub_account(&mut self, owner: OwnerId, margin: &MarginSpec) -> Applied {
        let Some(existing) = self.owners.get(&owner) else {
            return Err(reject(
                "unknown_owner",
                format!("owner {owner} does not exist"),
            ));
        };
        if existing.len() >= MAX_SUB_ACCOUNTS_PER_OWNER {
            return Err(reject(
                "limit",
                format!("owner {owner} already has the maximum of {MAX_SUB_ACCOUNTS_PER_OWNER} sub-accounts"),
            ));
        }
        if self.sub_accounts.len() >= MAX_SUB_ACCOUNTS {
            return Err(reject(
                "limit",
                format!("the engine holds its maximum of {MAX_SUB_ACCOUNTS} sub-accounts"),
            ));
        }
        let kind = match margin {
            MarginSpec::Cross => MarginKind::Cross,
            MarginSpec::Portfolio if self.portfolio_grid.is_none() => {
                return Err(reject(
                    "no_portfolio_margin",
                    "the protocol file has no [portfolio_margin] section: portfolio-margined sub-accounts are off",
                ))
            }
            MarginSpec::Portfolio => MarginKind::Portfolio,
            MarginSpec::Isolated(symbol) => {
                let asset = self.asset_idx(symbol)?;
                if asset == self.quote_asset {
                    return Err(reject(
                        "bad_isolation",
                        format!(
                            "an isolated sub-account is bound to a non-quote asset, not {symbol}"
                        ),
                    ));
                }
                MarginKind::Isolated(asset)
            }
        };
        let id = self.sub_accounts.len() as SubAccountId;
        if id.is_multiple_of(64) {
            self.below_maintenance_bits.push(0);
        }
        self.sub_accounts.push(SubAccount {
            owner,
            margin: kind,
            balances: Vec::new(),
            perps: Vec::new(),
            below_maintenance: false,
            maintenance: Vec::new(),
            evaluated: 0,
        });
        self.owners.get_mut(&owner).expect("checked above").push(id);
        Ok(vec![Event::SubAccountOpened {
            owner,
            sub_account: id,
            margin: margin.clone(),
        }])
    }

    /// Refuses a pool total above the asset's deposit or borrow cap.
    fn check_cap(&self, asset: AssetIdx, cap: Cap, total: TokenAmount) -> Result<(), Rejection> {
        let config = &self.assets[asset as usize];
        let (limit, code, action, what) = match cap {
            Cap::Deposit => (config.deposit_cap, "deposit_cap", "deposit", "deposits"),
            Cap::Borrow => (config.borrow_cap, "borrow_cap", "borrow", "borrows"),
        };
        if total
            > limit
                .to_native_exact(config.decimals)
                .expect("validated cap")
        {
            return Err(reject(
                code,
                format!(
                    "{action} would raise total {} {what} to {}, above the cap of {limit}",
                    config.symbol,
                    self.quantity(asset, total)?
                ),
            ));
        }
        Ok(())
    }

    fn deposit(
        &mut self,
        now_s: u64,
        id: SubAccountId,
        symbol: &str,
        amount: TokenQuantity,
    ) -> Applied {
        let asset = self.asset_idx(symbol)?;
        let native = self.native(asset, amount)?;
        let sub = self.sub_account(id)?;
        self.check_may_hold(sub, id, asset)?;
        let config = &self.assets[asset as usize];
        let mut pool = self.pools[asset as usize].clone();
        pool.accrue(now_s, &config.interest, config.reserve_factor)?;
        let (scaled, repaid) = pool.credit(sub.scaled(asset), native)?;
        if repaid < native {
            // Only new supply is capped: a repayment is never refused.
            self.check_cap(asset, Cap::Deposit, pool.total_supplied()?)?;
        }
        let balance = self.quantity(asset, pool.balance_native(scaled)?)?;
        let repaid_q = self.quantity(asset, repaid)?;
        // Commit.
        self.commit_pool(asset, pool);
        self.commit_balance(id, asset, scaled);
        let mut events = vec![Event::Deposited {
            sub_account: id,
            asset: symbol.to_string(),
            amount,
            repaid: repaid_q,
            balance,
        }];
        self.refresh_touched(now_s, &[id], &mut events)?;
        Ok(events)
    }

    fn withdraw(
        &mut self,
        now_s: u64,
        id: SubAccountId,
        symbol: &str,
        amount: TokenQuantity,
        reduce_only: bool,
    ) -> Applied {
        let asset = self.asset_idx(symbol)?;
        let native = self.native(asset, amount)?;
        let sub = self.sub_account(id)?;
        self.check_may_hold(sub, id, asset)?;
        let action = format!("withdraw of {amount} {symbol}");
        self.refuse_if_paused(asset, now_s, &action)?;
        self.refuse_if_market_paused(id, now_s, &action)?;
        let config = &self.assets[asset as usize];
        let mut pool = self.pools[asset as usize].clone();
        pool.accrue(now_s, &config.interest, config.reserve_factor)?;
        let held_scaled = sub.scaled(asset);
        let held = if held_scaled > 0 {
            pool.deposit_native(held_scaled)?
        } else {
            TokenAmount::ZERO
        };
        let from_deposit = native.min(held);
        let borrow = native.checked_sub(from_deposit)?;
        if borrow.is_positive() {
            if reduce_only {
                return Err(reject(
                    "reduce_only",
                    format!("withdraw of {amount} {symbol} exceeds the deposit of {} and reduce_only is set", self.quantity(asset, held)?),
                ));
            }
            let cap = config
                .borrow_cap
                .to_native_exact(config.decimals)
                .expect("validated cap");
            if cap.is_zero() {
                return Err(reject(
                    "not_borrowable",
                    format!("asset {symbol} cannot be borrowed (borrow_cap is 0)"),
                ));
            }
        }
        if native > pool.vault {
            return Err(reject(
                "insufficient_liquidity",
                format!(
                    "withdraw of {amount} {symbol}: only {} is available in the pool",
                    self.quantity(asset, pool.vault)?
                ),
            ));
        }
        let (scaled, borrowed) = pool.debit(held_scaled, native)?;
        debug_assert_eq!(borrowed, borrow);
        if borrow.is_positive() {
            self.check_cap(asset, Cap::Borrow, pool.total_borrowed()?)?;
        }
        let health = self.check_new_risk(
            id,
            &format!("withdraw of {amount} {symbol}"),
            now_s,
            &[(asset, scaled)],
        )?;
        let balance = self.quantity(asset, pool.balance_native(scaled)?)?;
        let borrowed_q = self.quantity(asset, borrow)?;
        // Commit.
        self.commit_pool(asset, pool);
        self.commit_balance(id, asset, scaled);
        let mut events = vec![Event::Withdrawn {
            sub_account: id,
            asset: symbol.to_string(),
            amount,
            borrowed: borrowed_q,
            balance,
            health,
        }];
        self.refresh_touched(now_s, &[id], &mut events)?;
        Ok(events)
    }

    fn transfer(
        &mut self,
        now_s: u64,
        from: SubAccountId,
        to: SubAccountId,
        symbol: &str,
        amount: TokenQuantity,
    ) -> Applied {
        let asset = self.asset_idx(symbol)?;
        let native = self.native(asset, amount)?;
        let source = self.sub_account(from)?;
        let target = self.sub_account(to)?;
        if from == to {
            return Err(reject(
                "bad_transfer",
                format!("transfer from sub-account {from} to itself"),
            ));
        }
        if source.owner != target.owner {
            return Err(reject(
                "not_owner",
                format!(
                    "sub-accounts {from} and {to} belong to different owners ({} and {})",
                    source.owner, target.owner
                ),
            ));
        }
        self.check_may_hold(target, to, asset)?;
        // A paused market's trader cannot move collateral to a sibling and withdraw it from there.
        self.refuse_if_market_paused(from, now_s, &format!("transfer of {amount} {symbol}"))?;
        let config = &self.assets[asset as usize];
        let mut pool = self.pools[asset as usize].clone();
        pool.accrue(now_s, &config.interest, config.reserve_factor)?;
        let held_scaled = source.scaled(asset).max(0);
        let held = pool.deposit_native(held_scaled)?;
        if native > held {
            return Err(reject(
                "insufficient_balance",
                format!(
                    "transfer of {amount} {symbol} exceeds sub-account {from}'s deposit of {}",
                    self.quantity(asset, held)?
                ),
            ));
        }
        let target_scaled = target.scaled(asset);
        // Out of the source as a withdrawal, into the target as a deposit (repaying its debt first).
        let debit = pool.withdraw(native, held_scaled)?;
        let (credit_scaled, _) = pool.credit(target_scaled, native)?;
        // Internal move: undo the external flow counters, the vault is unchanged.
        pool.internal_move(native)?;
        let source_scaled = held_scaled - debit;
        self.check_new_risk(
            from,
            &format!("transfer of {amount} {symbol}"),
            now_s,
            &[(asset, source_scaled)],
        )?;
        // Commit.
        self.commit_pool(asset, pool);
        self.commit_balance(from, asset, source_scaled);
        self.commit_balance(to, asset, credit_scaled);
        let mut events = vec![Event::Transferred {
            from,
            to,
            asset: symbol.to_string(),
            amount,
        }];
        self.refresh_touched(now_s, &[from, to], &mut events)?;
        Ok(events)
    }

    fn oracle_price(
        &mut self,
        now_s: u64,
        symbol: &str,
        price: Price,
        confidence: Price,
        publish_time: u64,
    ) -> Applied {
        let asset = self.asset_idx(symbol)?;
        if !price.is_positive() || price > MAX_PRICE {
            return Err(reject(
                "bad_price",
                format!("price {price} for {symbol} must be positive and at most {MAX_PRICE}"),
            ));
        }
        if confidence > price {
            return Err(reject(
                "bad_price",
                format!("confidence {confidence} for {symbol} exceeds the price {price}"),
            ));
        }
        if confidence.is_negative() {
            return Err(reject(
                "bad_price",
                format!("confidence {confidence} for {symbol} must not be negative"),
            ));
        }
        if publish_time > now_s {
            return Err(reject(
                "bad_price",
                format!("price for {symbol} published at {publish_time}, after the command's timestamp {now_s}"),
            ));
        }
        let config = &self.assets[asset as usize].oracle;
        let next = match &self.oracles[asset as usize] {
            None => OraclePrice::first(price, confidence, publish_time),
            Some(previous) if publish_time <= previous.publish_time_s => {
                return Err(reject(
                    "old_price",
                    format!(
                        "price for {symbol} published at {publish_time} is not newer than the current one ({})",
                        previous.publish_time_s
                    ),
                ))
            }
            Some(previous) => previous.next(price, confidence, publish_time, config)?,
        };
        // Funding in the asset's markets accrues up to now at the price that held until now.
        for m in 0..self.markets.len() as MarketIdx {
            if self.market_underlying[m as usize] == asset {
                let (market, _) = self.accrued_market(m, now_s)?;
                self.commit_market(m, market);
            }
        }
        self.commit_oracle(asset, next);
        let mut events = vec![Event::PriceUpdated {
            asset: symbol.to_string(),
            price,
            confidence,
            reference_price: next.reference,
            publish_time,
        }];
        self.fix_settlement_prices(now_s, asset, next, &mut events)?;
        self.reevaluate_holders(now_s, asset, &mut events)?;
        Ok(events)
    }

    /// Re-evaluates every sub-account holding `asset` (and only those, via the holder index).
    fn reevaluate_holders(
        &mut self,
        now_s: u64,
        asset: AssetIdx,
        events: &mut Vec<Event>,
    ) -> NumResult<()> {
        let risks = self.margin_risks(now_s)?;
        let markets: Vec<MarketIdx> = (0..self.markets.len() as MarketIdx)
            .filter(|&m| self.market_underlying[m as usize] == asset)
            .collect();
        // Walk the indexes in place, each sub-account once: spot holders of the asset, then the holders of each
        // market on it not met before. When some market on the asset has holders without a balance in it, each
        // sub-account met is stamped with this walk's number, so that telling whether it was met reads only the
        // sub-account (not its balances and positions).
        let stamp = markets
            .iter()
            .any(|&m| self.market_only_holders[m as usize] != 0);
        self.evaluations += 1;
        let walk = self.evaluations;
        let mut crossed = Vec::new();
        let (sub_accounts, epochs) = (&mut self.sub_accounts, &self.epochs);
        let below_bits = &self.below_maintenance_bits;
        // Spot holders: each one's row first (streamed in holder order); the general path, in batches, for those
        // whose row is not usable, which rebuilds it.
        let mut rows = HolderRows::new(asset, &risks, epochs, &self.market_underlying);
        let row_array = &mut self.holder_rows[asset as usize];
        let mut batch = Batch::default();
        for (slot, &id) in self.holders[asset as usize].iter().enumerate() {
            if stamp {
                sub_accounts[id as usize].evaluated = walk;
            }
            match rows.evaluate(&row_array[slot]) {
                Some(maintenance) => {
                    debug_assert_eq!(
                        Ok(maintenance),
                        maintenance_health(&sub_accounts[id as usize], &risks),
                        "sub-account {id}: maintenance health from its row"
                    );
                    if maintenance.is_negative() != Self::is_below_maintenance(below_bits, id) {
                        crossed.push((id, maintenance));
                    }
                }
                None => {
                    if batch.push(id, slot as u32) {
                        batch.evaluate(
                            sub_accounts,
                            &risks,
                            epochs,
                            &rows,
                            row_array,
                            &mut crossed,
                        )?;
                    }
                }
            }
        }
        for &m in &markets {
            if self.market_only_holders[m as usize] == 0 {
                continue; // every holder of the market holds the asset: all were met above
            }
            for &id in &self.market_holders[m as usize] {
                let sub = &mut sub_accounts[id as usize];
                if sub.evaluated != walk {
                    sub.evaluated = walk;
                    if batch.push(id, Batch::NO_ROW) {
                        batch.evaluate(
                            sub_accounts,
                            &risks,
                            epochs,
                            &rows,
                            row_array,
                            &mut crossed,
                        )?;
                    }
                }
            }
        }
        batch.evaluate(sub_accounts, &risks, epochs, &rows, row_array, &mut crossed)?;
        self.apply_crossings(crossed, events);
        Ok(())
    }

    fn accrue_interest(&mut self, now_s: u64, symbol: Option<&str>) -> Applied {
        let targets: Vec<AssetIdx> = match symbol {
            Some(s) => vec![self.asset_idx(s)?],
            None => (0..self.assets.len() as AssetIdx).collect(),
        };
        let mut pools = Vec::with_capacity(targets.len());
        for &asset in &targets {
            let config = &self.assets[asset as usize];
            let mut pool = self.pools[asset as usize].clone();
            let accrual = pool.accrue(now_s, &config.interest, config.reserve_factor)?;
            pools.push((asset, pool, accrual));
        }
        let mut events = Vec::new();
        let mut changed = Vec::new();
        for (asset, pool, accrual) in pools {
            if accrual.elapsed_s == 0 || pool.borrows_scaled == 0 {
                // Nothing accrued now (nothing owed, or a command at this second accrued it already).
                if pool.borrows_scaled > 0 {
                    changed.push(asset);
                }
                self.commit_pool(asset, pool);
                continue;
            }
            let to_treasury =
                self.quantity(asset, pool.deposit_native(accrual.treasury_scaled)?)?;
            events.push(Event::InterestAccrued {
                asset: self.assets[asset as usize].symbol.clone(),
                elapsed_s: accrual.elapsed_s,
                borrow_rate: accrual.borrow_rate,
                borrow_index: pool.borrow_index,
                supply_index: pool.supply_index,
                to_treasury,
            });
            // Re-check every holder of a pool with debt, not only when this command moved the index: a user
            // command at the same second may already have accrued it, and its holders were not re-checked then.
            if pool.borrows_scaled > 0 {
                changed.push(asset);
            }
            self.commit_pool(asset, pool);
        }
        for asset in changed {
            self.reevaluate_holders(now_s, asset, &mut events)?;
        }
        Ok(events)
    }

    fn list_asset(&mut self, now_s: u64, asset: &AssetConfig) -> Applied {
        if self.asset_by_symbol.contains_key(&asset.symbol) {
            return Err(reject(
                "duplicate_asset",
                format!("asset {} is already listed", asset.symbol),
            ));
        }
        // The protocol file refuses an asset and a market sharing a symbol; so does listing, and every state stays
        // one whose configuration the protocol file's rules accept (a snapshot restores only such a state).
        if self.market_by_symbol.contains_key(&asset.symbol) {
            return Err(reject(
                "duplicate_asset",
                format!("{} is already a market's symbol", asset.symbol),
            ));
        }
        if self.assets.len() >= MAX_ASSETS {
            return Err(reject(
                "limit",
                format!("the engine lists its maximum of {MAX_ASSETS} assets"),
            ));
        }
        let errors = validate_asset(asset, &self.tiers);
        if !errors.is_empty() {
            return Err(reject("bad_asset", errors.join("; ")));
        }
        let _ = now_s;
        let idx = self.push_asset(asset.clone());
        Ok(vec![Event::AssetListed {
            asset: asset.symbol.clone(),
            index: idx,
        }])
    }

    // ----- perpetuals ----------------------------------------------------------------------------------------

    fn market_idx(&self, symbol: &str) -> Result<MarketIdx, Rejection> {
        self.market_by_symbol
            .get(symbol)
            .copied()
            .ok_or_else(|| reject("unknown_market", format!("market {symbol} is not listed")))
    }

    /// May this sub-account hold a position in this market?
    fn check_may_trade(
        &self,
        sub: &SubAccount,
        id: SubAccountId,
        market: MarketIdx,
    ) -> Result<(), Rejection> {
        let underlying = self.market_underlying[market as usize];
        let symbol = &self.market_configs[market as usize].symbol;
        let asset = &self.assets[underlying as usize].symbol;
        match sub.margin {
            MarginKind::Cross | MarginKind::Portfolio if self.assets[underlying as usize].collateral == CollateralMode::IsolatedOnly => {
                Err(reject(
                    "isolated_only_asset",
                    format!("market {symbol} trades isolated-only {asset}; sub-account {id} is {}", sub.margin.name()),
                ))
            }
            MarginKind::Isolated(bound) if bound != underlying => Err(reject(
                "not_allowed_in_isolated",
                format!(
                    "isolated sub-account {id} trades only markets on {}, not {symbol}",
                    self.assets[bound as usize].symbol
                ),
            )),
            _ if sub.perp(market).is_none() && sub.perps.len() >= MAX_PERP_POSITIONS_PER_SUB_ACCOUNT => Err(reject(
                "too_many_positions",
                format!("sub-account {id} already holds {MAX_PERP_POSITIONS_PER_SUB_ACCOUNT} positions (perps and options)"),
            )),
            _ => Ok(()),
        }
    }

    /// A fill's size in native base units, if the market is not paused and the size is a positive multiple of its
    /// step.
    fn fill_base(&self, m: MarketIdx, size: TokenQuantity) -> Result<TokenAmount, Rejection> {
        let config = &self.market_configs[m as usize];
        let decimals = self.assets[self.market_underlying[m as usize] as usize].decimals;
        if self.markets[m as usize].paused {
            return Err(reject(
                "market_paused",
                format!("market {} is paused", config.symbol),
            ));
        }
        let step = config
            .step_size
            .to_native_exact(decimals)
            .expect("validated step");
        match size.to_native_exact(decimals) {
            Some(b) if b.is_positive() && b.raw() % step.raw() == 0 => Ok(b),
            _ => Err(reject(
                "bad_amount",
                format!(
                    "size {size} must be a positive multiple of the step size {}",
                    config.step_size
                ),
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn perp_fill(
        &mut self,
        now_s: u64,
        symbol: &str,
        taker: SubAccountId,
        maker: SubAccountId,
        side: Side,
        size: TokenQuantity,
        price: Price,
    ) -> Applied {
        let m = self.market_idx(symbol)?;
        let config = self.market_configs[m as usize].clone();
        let base = self.fill_base(m, size)?;
        if taker == maker {
            return Err(reject(
                "bad_fill",
                format!("sub-account {taker} cannot trade with itself"),
            ));
        }
        let taker_sub = self.sub_account(taker)?;
        let maker_sub = self.sub_account(maker)?;
        if !price.is_positive() || price > MAX_PRICE {
            return Err(reject(
                "bad_price",
                format!("price {price} must be positive and at most {MAX_PRICE}"),
            ));
        }
        self.check_may_trade(taker_sub, taker, m)?;
        self.check_may_trade(maker_sub, maker, m)?;
        self.refuse_if_expired(m, now_s)?;
        let fee_ratios = [config.taker_fee, config.maker_fee];
        self.execute_fill(
            now_s,
            m,
            [taker, maker],
            side,
            size,
            base,
            price,
            fee_ratios,
        )
    }

    /// Executes a validated fill of `base` (native, a positive multiple of the step) at `price` between `taker` and
    /// `maker`, charging them `fee_ratios` of the notional; then checks open interest, reduce-only and both sides'
    /// health against the state it leaves.
    #[allow(clippy::too_many_arguments)]
    fn execute_fill(
        &mut self,
        now_s: u64,
        m: MarketIdx,
        [taker, maker]: [SubAccountId; 2],
        side: Side,
        size: TokenQuantity,
        base: TokenAmount,
        price: Price,
        fee_ratios: [Ratio; 2],
    ) -> Applied {
        let config = self.market_configs[m as usize].clone();
        let symbol = config.symbol.as_str();
        let underlying = self.market_underlying[m as usize];
        let decimals = self.assets[underlying as usize].decimals;
        let taker_sub = &self.sub_accounts[taker as usize];
        let maker_sub = &self.sub_accounts[maker as usize];
        let Some(oracle) = self.oracles[underlying as usize] else {
            return Err(reject(
                "no_price",
                format!("market {symbol} has no oracle price yet"),
            ));
        };
        let before = [self.health_at(taker, now_s)?, self.health_at(maker, now_s)?];
        let (mut market, _) = self.accrued_market(m, now_s)?;
        let flat = PerpPosition::flat(m, market.funding_index);
        let old = [
            taker_sub.perp(m).copied().unwrap_or(flat),
            maker_sub.perp(m).copied().unwrap_or(flat),
        ];
        let mut new = old;
        for p in &mut new {
            market.settle_position_funding(p, decimals)?;
        }
        // One amount moves from buyer to seller; fees come off each side's quote.
        let value = price.value_ceil(base, decimals)?;
        let fees = [
            value.mul_ratio_ceil(fee_ratios[0])?,
            value.mul_ratio_ceil(fee_ratios[1])?,
        ];
        let (buyer, seller) = match side {
            Side::Buy => (0, 1),
            Side::Sell => (1, 0),
        };
        new[buyer].base = new[buyer].base.checked_add(base)?;
        new[buyer].quote = new[buyer].quote.checked_sub(value)?;
        new[seller].base = new[seller].base.checked_sub(base)?;
        new[seller].quote = new[seller].quote.checked_add(value)?;
        for (p, fee) in new.iter_mut().zip(fees) {
            p.quote = p.quote.checked_sub(fee)?;
            market.fees_collected = market.fees_collected.checked_add(fee)?;
        }
        let long = |p: &PerpPosition| p.base.max(TokenAmount::ZERO);
        for (o, n) in old.iter().zip(&new) {
            market.open_interest = market
                .open_interest
                .checked_add(long(n).checked_sub(long(o))?)?;
        }
        let increases = |o: &PerpPosition, n: &PerpPosition| {
            n.base.raw().unsigned_abs() > o.base.raw().unsigned_abs()
                || (o.base.raw() < 0) != (n.base.raw() < 0) && !n.base.is_zero()
        };
        let grows = [increases(&old[0], &new[0]), increases(&old[1], &new[1])];
        if market.reduce_only && (grows[0] || grows[1]) {
            return Err(reject(
                "reduce_only_market",
                format!("market {symbol} is reduce-only: this fill would grow a position"),
            ));
        }
        if market.open_interest > self.markets[m as usize].open_interest {
            let tier = self
                .perp_tiers
                .iter()
                .find(|t| t.name == config.tier)
                .expect("validated tier");
            let notional = oracle.price.value_ceil(market.open_interest, decimals)?;
            if notional > tier.open_interest_upper_cap {
                return Err(reject(
                    "open_interest_cap",
                    format!(
                        "fill would raise {symbol} open interest to {notional} USD, above the cap of {}",
                        tier.open_interest_upper_cap
                    ),
                ));
            }
        }
        // Commit into the journal, then check both sides against the state the fill leaves; a refusal rolls back.
        self.commit_market(m, market);
        for (id, p) in [taker, maker].into_iter().zip(new) {
            let keep = !p.base.is_zero() || !p.quote.is_zero();
            self.commit_perp(id, m, keep.then_some(p));
        }
        for (i, id) in [taker, maker].into_iter().enumerate() {
            let role = if i == 0 { "taker" } else { "maker" };
            let action = format!("{symbol} fill ({role} sub-account {id})");
            if grows[i] {
                self.check_new_risk(id, &action, now_s, &[])?;
            } else {
                // A fill that only reduces a position may not lower initial health below zero, or further below
                // it; nor maintenance health (a close at an off-market price to a friendly counterparty would
                // otherwise hand over the margin and leave bad debt behind).
                let after = self.health_at(id, now_s)?;
                for (level, was, is) in [
                    ("initial", before[i].initial, after.initial),
                    ("maintenance", before[i].maintenance, after.maintenance),
                ] {
                    if is.is_negative() && is < was {
                        return Err(reject(
                            "insufficient_health",
                            format!(
                                "{action} would lower {level} health from {was} to {is} {}",
                                self.label()
                            ),
                        ));
                    }
                }
            }
        }
        let market = &self.markets[m as usize];
        let base_of = |id: SubAccountId| {
            self.sub_accounts[id as usize]
                .perp(m)
                .map_or(TokenAmount::ZERO, |p| p.base)
        };
        let whole = |amount: TokenAmount| TokenQuantity::from_native(amount, decimals);
        let mut events = vec![Event::PerpFilled {
            market: symbol.to_string(),
            taker,
            maker,
            side,
            size,
            price,
            taker_fee: fees[0],
            maker_fee: fees[1],
            taker_base: whole(base_of(taker))?,
            maker_base: whole(base_of(maker))?,
            open_interest: whole(market.open_interest)?,
        }];
        self.refresh_touched(now_s, &[taker, maker], &mut events)?;
        Ok(events)
    }

    fn update_funding(&mut self, now_s: u64, symbol: &str, mark: Price) -> Applied {
        let m = self.market_idx(symbol)?;
        let underlying = self.market_underlying[m as usize];
        let Some(config) = self.market_configs[m as usize].funding.clone() else {
            return Err(reject(
                "not_a_perp",
                format!("market {symbol} is an option series: it has no funding"),
            ));
        };
        if !mark.is_positive() || mark > MAX_PRICE {
            return Err(reject(
                "bad_price",
                format!("mark price {mark} must be positive and at most {MAX_PRICE}"),
            ));
        }
        let oracle = self.usable_price(
            underlying,
            now_s,
            Guard::NewRisk,
            &format!("funding for {symbol}"),
        )?;
        // Funding so far accrues at the rate in force until now; the sample sets the rate from now on, for at most
        // one interval.
        let (mut market, elapsed_s) = self.accrued_market(m, now_s)?;
        let rate = crate::perp::funding_rate(mark, oracle, &config)?;
        market.funding_rate = rate;
        market.funding_rate_until_s = now_s + config.interval_s;
        let index = market.funding_index;
        self.commit_market(m, market);
        let mut events = vec![Event::FundingUpdated {
            market: symbol.to_string(),
            rate,
            elapsed_s,
            funding_index: index,
        }];
        let holders: Vec<SubAccountId> = self.market_holders[m as usize].iter().copied().collect();
        self.refresh_touched(now_s, &holders, &mut events)?;
        Ok(events)
    }

    fn set_market_risk(
        &mut self,
        now_s: u64,
        symbol: &str,
        reduce_only: Option<bool>,
        paused: Option<bool>,
        margin_multiplier: Option<Ratio>,
        phase_s: u64,
    ) -> Applied {
        let m = self.market_idx(symbol)?;
        let mut market = self.markets[m as usize].clone();
        if let Some(multiplier) = margin_multiplier {
            let hundred = Ratio::from_int(100)?;
            if multiplier < Ratio::ONE || multiplier > hundred {
                return Err(reject(
                    "bad_parameter",
                    format!("margin_multiplier {multiplier} must be between 1 and 100"),
                ));
            }
            if phase_s > crate::config::SECONDS_PER_YEAR {
                return Err(reject(
                    "bad_parameter",
                    format!("phase_s {phase_s} exceeds one year"),
                ));
            }
            market.multiplier_from = market.margin_multiplier(now_s)?;
            market.multiplier_to = multiplier;
            market.phase_start_s = now_s;
            market.phase_s = phase_s;
        }
        market.reduce_only = reduce_only.unwrap_or(market.reduce_only);
        market.paused = paused.unwrap_or(market.paused);
        let event = Event::MarketRiskSet {
            market: symbol.to_string(),
            reduce_only: market.reduce_only,
            paused: market.paused,
            margin_multiplier: market.multiplier_to,
            phase_s: market.phase_s,
        };
        self.commit_market(m, market);
        Ok(vec![event])
    }

    // ----- liquidation ---------------------------------------------------------------------------------------

    fn register_liquidator(&mut self, id: SubAccountId) -> Applied {
        self.sub_account(id)?;
        if !self.liquidators.insert(id) {
            return Err(reject(
                "duplicate_liquidator",
                format!("sub-account {id} is already a liquidator"),
            ));
        }
        Ok(vec![Event::LiquidatorRegistered { sub_account: id }])
    }

    /// Liquidates a target below maintenance: first its perp positions, in market order, then its debts against
    /// its collateral, both in asset order, until its liquidation-end health is back at zero or above. Each step
    /// takes the least amount that does it (whole step sizes for perps), within `liquidation_max_step_notional`;
    /// when a partial step cannot improve health it takes its maximum instead (for perps the whole position, even
    /// beyond the step limit); a step that cannot improve health at all is skipped. The liquidator's initial health
    /// must stay non-negative.
    fn liquidate(&mut self, now_s: u64, liquidator: SubAccountId, target: SubAccountId) -> Applied {
        if !self.liquidators.contains(&liquidator) {
            return Err(reject(
                "not_liquidator",
                format!("sub-account {liquidator} is not a registered liquidator"),
            ));
        }
        self.liquidate_by(now_s, liquidator, target, false)
    }

    /// A liquidation by `liquidator` (a registered liquidator, or the counterparty pool, which takes over perp
    /// positions only: `perps_only`).
    fn liquidate_by(
        &mut self,
        now_s: u64,
        liquidator: SubAccountId,
        target: SubAccountId,
        perps_only: bool,
    ) -> Applied {
        if liquidator == target {
            return Err(reject(
                "bad_liquidation",
                format!("sub-account {target} cannot liquidate itself"),
            ));
        }
        let target_sub = self.sub_account(target)?;
        let before = self.health_at(target, now_s)?;
        if !before.maintenance.is_negative() {
            return Err(reject(
                "not_liquidatable",
                format!(
                    "sub-account {target} has maintenance health {} {}; only accounts below zero may be liquidated",
                    before.maintenance,
                    self.label()
                ),
            ));
        }
        // The counterparty pool (`perps_only`) takes over positions only in markets it quotes (never option series).
        let markets: Vec<MarketIdx> = target_sub
            .perps
            .iter()
            .filter(|p| !p.base.is_zero())
            .map(|p| p.market)
            .filter(|&m| !perps_only || self.market_configs[m as usize].pool.is_some())
            .collect();
        let mut events = Vec::new();
        // A step that cannot improve health is skipped (the next position or pair may); only if none could does the
        // liquidation fail, with that step's reason.
        let mut skipped = None;
        // Perp positions first, in market order; then debts against collateral, both in asset order.
        for m in markets {
            if !self.health_at(target, now_s)?.liquidation_end.is_negative() {
                break;
            }
            let step = self.liquidate_perp(now_s, liquidator, target, m, &mut events);
            skip_if_no_improvement(step, &mut skipped)?;
        }
        let debts: Vec<AssetIdx> = self.sub_accounts[target as usize]
            .balances
            .iter()
            .filter(|b| b.scaled < 0 && !perps_only)
            .map(|b| b.asset)
            .collect();
        for debt in debts {
            let collaterals: Vec<AssetIdx> = self.sub_accounts[target as usize]
                .balances
                .iter()
                .filter(|b| b.scaled > 0)
                .map(|b| b.asset)
                .collect();
            for collateral in collaterals {
                let sub = &self.sub_accounts[target as usize];
                if sub.scaled(debt) >= 0
                    || !self.health_at(target, now_s)?.liquidation_end.is_negative()
                {
                    break;
                }
                let step =
                    self.liquidate_spot(now_s, liquidator, target, debt, collateral, &mut events);
                skip_if_no_improvement(step, &mut skipped)?;
            }
        }
        // A portfolio-margined book still short of liquidation-end health is taken over a slice of everything at
        // once: one leg of a hedge alone may not improve it.
        if !perps_only
            && self.sub_accounts[target as usize].margin == MarginKind::Portfolio
            && self.health_at(target, now_s)?.liquidation_end.is_negative()
        {
            // A slice this liquidator cannot take (an asset it may not hold, a price it may not use) does not undo
            // the steps already taken: the slice commits nothing before its last check. An arithmetic failure
            // fails the command (it may come after the commit; the journal then undoes everything).
            match self.liquidate_portfolio(now_s, liquidator, target, &mut events) {
                Err(rejection) if !events.is_empty() && rejection.code != "arithmetic" => {
                    skipped.get_or_insert(rejection);
                }
                step => skip_if_no_improvement(step, &mut skipped)?,
            }
        }
        if events.is_empty() {
            if let Some(rejection) = skipped {
                return Err(rejection);
            }
            return Err(reject(
                "nothing_to_liquidate",
                format!(
                    "sub-account {target} has no position and no debt with collateral to take over"
                ),
            ));
        }
        self.check_new_risk_guarded(liquidator, "liquidation", now_s, &[], Guard::Liquidation)?;
        self.refresh_touched(now_s, &[target, liquidator], &mut events)?;
        Ok(events)
    }

    /// The liquidator repays part of the target's debt in `debt` and receives the target's `collateral` worth
    /// `(1 + fee)` times as much at oracle prices (`fee`: the collateral asset's `liquidation_fee`); the insurance
    /// share of the bonus goes to the insurance fund's deposit in that pool. The least amount that restores the
    /// target's liquidation-end health, within the per-step notional limit; everything the collateral covers when a
    /// partial swap cannot improve health.
    fn liquidate_spot(
        &mut self,
        now_s: u64,
        liquidator: SubAccountId,
        target: SubAccountId,
        debt: AssetIdx,
        collateral: AssetIdx,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let d_symbol = self.assets[debt as usize].symbol.clone();
        let c_symbol = self.assets[collateral as usize].symbol.clone();
        let (d_dec, c_dec) = (
            self.assets[debt as usize].decimals,
            self.assets[collateral as usize].decimals,
        );
        let p_debt = self.usable_price(debt, now_s, Guard::Liquidation, "liquidation")?;
        let p_coll = self.usable_price(collateral, now_s, Guard::Liquidation, "liquidation")?;
        let liquidator_sub = self.sub_account(liquidator)?;
        self.check_may_hold(liquidator_sub, liquidator, debt)?;
        self.check_may_hold(liquidator_sub, liquidator, collateral)?;
        let new_assets = [debt, collateral]
            .iter()
            .filter(|&&a| liquidator_sub.scaled(a) == 0)
            .count();
        if liquidator_sub.balances.len() + new_assets > MAX_BALANCES_PER_SUB_ACCOUNT {
            return Err(reject(
                "too_many_balances",
                format!("liquidator sub-account {liquidator} cannot take on {d_symbol} and {c_symbol}: it would hold more than {MAX_BALANCES_PER_SUB_ACCOUNT} assets"),
            ));
        }
        let share = self.protocol.liquidation_insurance_share;
        let mut pool_d = self.pools[debt as usize].clone();
        let mut pool_c = self.pools[collateral as usize].clone();
        for (pool, asset) in [(&mut pool_d, debt), (&mut pool_c, collateral)] {
            let config = &self.assets[asset as usize];
            pool.accrue(now_s, &config.interest, config.reserve_factor)?;
        }
        let target_sub = &self.sub_accounts[target as usize];
        let (t_debt, t_coll) = (target_sub.scaled(debt), target_sub.scaled(collateral));
        let (l_debt, l_coll) = (
            liquidator_sub.scaled(debt),
            liquidator_sub.scaled(collateral),
        );
        let owed = pool_d.borrow_native(-t_debt)?;
        let held = pool_c.deposit_native(t_coll)?;
        let fee = self.fee_within_equity(
            target,
            now_s,
            self.assets[collateral as usize].liquidation_fee,
            p_debt.value_ceil(owed, d_dec)?,
        )?;
        // The most debt the collateral covers at the discount, and the per-step notional limit.
        let discount = Ratio::ONE.div_floor(Ratio::ONE.checked_add(fee)?)?;
        let covered_value = p_coll.value_floor(held, c_dec)?.mul_ratio_floor(discount)?;
        let limit_value = self
            .protocol
            .liquidation_max_step_notional
            .min(covered_value);
        let max_repay = owed.min(p_debt.amount_for_value(limit_value, d_dec, Rounding::Floor)?);
        // Repaying this much exhausts the collateral: the swap then takes all of it (no dust left behind).
        let exhausts_collateral = p_debt.amount_for_value(covered_value, d_dec, Rounding::Floor)?;
        if !max_repay.is_positive() {
            return Ok(());
        }
        // Balances (target debt, target collateral, liquidator debt asset, liquidator collateral asset), pools,
        // collateral seized and its insurance part, after the liquidator repays `r` native units of the debt.
        type Outcome = (i128, i128, i128, i128, Pool, Pool, TokenAmount, TokenAmount);
        let outcome = |r: TokenAmount| -> NumResult<Outcome> {
            let (mut pd, mut pc) = (pool_d.clone(), pool_c.clone());
            // Debt side: out of the liquidator's deposit first, then borrowed; into the target's debt.
            let (l_d, _) = pd.debit(l_debt, r)?;
            let t_d = t_debt + pd.repay(r, -t_debt)?;
            pd.internal_move(r)?;
            // Collateral side: (1 + fee) times the repaid value, the insurance share of the bonus set apart.
            let repaid_value = p_debt.value_floor(r, d_dec)?;
            let with_bonus = repaid_value.mul_ratio_floor(Ratio::ONE.checked_add(fee)?)?;
            let seized = if r >= exhausts_collateral {
                held
            } else {
                p_coll
                    .amount_for_value(with_bonus, c_dec, Rounding::Floor)?
                    .min(held)
            };
            let bonus_share = repaid_value.mul_ratio_floor(fee)?.mul_ratio_floor(share)?;
            let insurance = p_coll
                .amount_for_value(bonus_share, c_dec, Rounding::Floor)?
                .min(seized);
            let t_c = t_coll - pc.withdraw(seized, t_coll)?;
            let (l_c, _) = pc.credit(l_coll, seized.checked_sub(insurance)?)?;
            if insurance.is_positive() {
                let credited = pc.deposit(insurance)?;
                pc.insurance_scaled += credited;
            }
            pc.internal_move(seized)?;
            Ok((t_d, t_c, l_d, l_c, pd, pc, seized, insurance))
        };
        let target_le = |r: TokenAmount| -> NumResult<Quote> {
            let (t_d, t_c, ..) = outcome(r)?;
            let sub = &self.sub_accounts[target as usize];
            let overrides = [(debt, t_d), (collateral, t_c)];
            let cache = self.health_cache_with(sub, now_s, &overrides, &[], Guard::Liquidation)?;
            Ok(cache.health()?.liquidation_end)
        };
        let step = least_restoring_step(max_repay.raw(), max_repay.raw(), |r| {
            target_le(TokenAmount::from_raw(r))
        })?;
        let Some((r, full_close)) = step else {
            return Err(reject(
                "cannot_improve",
                format!("swapping sub-account {target}'s {c_symbol} for its {d_symbol} debt would not improve its health"),
            ));
        };
        let r = TokenAmount::from_raw(r);
        let health_before = self.health_at(target, now_s)?;
        let (t_d, t_c, l_d, l_c, pd, pc, seized, insurance) = outcome(r)?;
        self.commit_pool(debt, pd);
        self.commit_pool(collateral, pc);
        self.commit_balance(target, debt, t_d);
        self.commit_balance(target, collateral, t_c);
        self.commit_balance(liquidator, debt, l_d);
        self.commit_balance(liquidator, collateral, l_c);
        events.push(Event::SpotLiquidated {
            liquidator,
            target,
            debt_asset: d_symbol,
            repaid: TokenQuantity::from_native(r, d_dec)?,
            collateral_asset: c_symbol,
            seized: TokenQuantity::from_native(seized, c_dec)?,
            to_insurance: TokenQuantity::from_native(insurance, c_dec)?,
            full_close,
            health_before,
            health_after: self.health_at(target, now_s)?,
        });
        Ok(())
    }

    fn liquidate_perp(
        &mut self,
        now_s: u64,
        liquidator: SubAccountId,
        target: SubAccountId,
        m: MarketIdx,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let config = &self.market_configs[m as usize];
        let symbol = config.symbol.clone();
        let configured_fee = config.liquidation_fee;
        let underlying = self.market_underlying[m as usize];
        let decimals = self.assets[underlying as usize].decimals;
        let step = config
            .step_size
            .to_native_exact(decimals)
            .expect("validated step");
        let oracle = self.usable_mark(
            m,
            now_s,
            Guard::Liquidation,
            &format!("liquidation in {symbol}"),
        )?;
        let liquidator_sub = self.sub_account(liquidator)?;
        self.check_may_trade(liquidator_sub, liquidator, m)?;
        let target_sub = &self.sub_accounts[target as usize];
        let (mut market, _) = self.accrued_market(m, now_s)?;
        let mut tp = *target_sub
            .perp(m)
            .expect("listed from the target's positions");
        let flat = PerpPosition::flat(m, market.funding_index);
        let mut lp = liquidator_sub.perp(m).copied().unwrap_or(flat);
        for p in [&mut tp, &mut lp] {
            market.settle_position_funding(p, decimals)?;
        }
        let long = tp.base.is_positive();
        let full_notional = oracle.value_ceil(tp.base.abs()?, decimals)?;
        let fee_ratio = self.fee_within_equity(target, now_s, configured_fee, full_notional)?;
        // The target sells (long) below the oracle or buys back (short) above it; the gap is the fee.
        let price = if long {
            oracle.mul_ratio(Ratio::ONE.checked_sub(fee_ratio)?, Rounding::Floor)?
        } else {
            oracle.mul_ratio(Ratio::ONE.checked_add(fee_ratio)?, Rounding::Ceil)?
        };
        let full = tp.base.abs()?;
        // A position marked at zero (an option far out of the money, or settled worthless) has no notional: the step
        // limit does not bind it.
        let limit_base = if oracle.is_positive() {
            oracle.amount_for_value(
                self.protocol.liquidation_max_step_notional,
                decimals,
                Rounding::Floor,
            )?
        } else {
            full
        };
        let max_steps = (full.raw() / step.raw()).min((limit_base.raw() / step.raw()).max(1));
        let full_steps = full.raw() / step.raw();
        let share = self.protocol.liquidation_insurance_share;
        // The target's position, the liquidator's, the market and the fees after taking `k` steps.
        let outcome = |k: i128| -> NumResult<(
            PerpPosition,
            PerpPosition,
            Market,
            Quote,
            Quote,
            TokenAmount,
        )> {
            let moved = TokenAmount::from_raw((k * step.raw()).min(full.raw()));
            let (mut t, mut l, mut mk) = (tp, lp, market.clone());
            let value = price.value(
                moved,
                decimals,
                if long {
                    Rounding::Floor
                } else {
                    Rounding::Ceil
                },
            )?;
            let fee = oracle
                .value_ceil(moved, decimals)?
                .mul_ratio_ceil(fee_ratio)?;
            let insurance = fee.mul_ratio_floor(share)?;
            let signed = if long { moved } else { moved.checked_neg()? };
            let old_long = [t.base.max(TokenAmount::ZERO), l.base.max(TokenAmount::ZERO)];
            t.base = t.base.checked_sub(signed)?;
            l.base = l.base.checked_add(signed)?;
            let flow = if long { value } else { value.checked_neg()? };
            t.quote = t.quote.checked_add(flow)?;
            l.quote = l.quote.checked_sub(flow)?.checked_sub(insurance)?;
            mk.insurance_collected = mk.insurance_collected.checked_add(insurance)?;
            let new_long = [t.base.max(TokenAmount::ZERO), l.base.max(TokenAmount::ZERO)];
            for (o, n) in old_long.iter().zip(new_long) {
                mk.open_interest = mk.open_interest.checked_add(n.checked_sub(*o)?)?;
            }
            Ok((t, l, mk, fee, insurance, signed))
        };
        let target_le = |k: i128| -> NumResult<Quote> {
            let (t, ..) = outcome(k)?;
            let sub = &self.sub_accounts[target as usize];
            let cache =
                self.health_cache_with(sub, now_s, &[], &[(m, Some(t))], Guard::Liquidation)?;
            Ok(cache.health()?.liquidation_end)
        };
        let Some((k, full_close)) = least_restoring_step(max_steps, full_steps, target_le)? else {
            return Err(reject(
                "cannot_improve",
                format!("taking over the {symbol} position of sub-account {target} would not improve its health"),
            ));
        };
        let health_before = self.health_at(target, now_s)?;
        let (t, l, mk, fee, insurance_fee, signed) = outcome(k)?;
        self.commit_market(m, mk);
        let keep = |p: &PerpPosition| (!p.base.is_zero() || !p.quote.is_zero()).then_some(*p);
        self.commit_perp(target, m, keep(&t));
        self.commit_perp(liquidator, m, keep(&l));
        events.push(Event::PerpLiquidated {
            liquidator,
            target,
            market: symbol,
            base: TokenQuantity::from_native(signed, decimals)?,
            oracle_price: oracle,
            price,
            fee,
            insurance_fee,
            full_close,
            health_before,
            health_after: self.health_at(target, now_s)?,
        });
        Ok(())
    }

    /// The liquidation fee ratio for a step on `notional` (USD) of a target's risk: the configured ratio, but never
    /// more of the notional than the target's equity at oracle prices. The discount a liquidator earns comes out of
    /// the target's own value; once that is gone it would come out of the insurance fund and the other traders, so
    /// an insolvent target is taken over at the oracle price.
    fn fee_within_equity(
        &self,
        target: SubAccountId,
        now_s: u64,
        configured: Ratio,
        notional: Quote,
    ) -> Result<Ratio, Rejection> {
        let equity =
            self.equity_at_oracle(&self.sub_accounts[target as usize], &self.all_risks(now_s)?)?;
        if !notional.is_positive() || equity >= notional.mul_ratio_ceil(configured)? {
            return Ok(configured);
        }
        if !equity.is_positive() {
            return Ok(Ratio::ZERO);
        }
        Ok(Ratio::from_fraction(equity.raw(), notional.raw(), Rounding::Floor)?.min(configured))
    }

    /// Settles unsettled perp PnL between two positions in one market (permissionless): the smaller of the
    /// winner's positive and the loser's negative PnL (oracle value plus quote balance, funding included) moves out
    /// of both positions' quote balances and, as quote-asset tokens, from the loser's balance into the winner's, within
    /// the loser's [`Engine::settlement_capacity`] (it borrows only against collateral other than the quote asset).
    /// Health is unchanged but for weights: unsettled profit becomes collateral.
    fn settle_pnl(
        &mut self,
        now_s: u64,
        symbol: &str,
        winner: SubAccountId,
        loser: SubAccountId,
    ) -> Applied {
        let m = self.market_idx(symbol)?;
        if winner == loser {
            return Err(reject(
                "bad_settlement",
                format!("sub-account {winner} cannot settle with itself"),
            ));
        }
        let underlying = self.market_underlying[m as usize];
        let decimals = self.assets[underlying as usize].decimals;
        let quote_asset = self.quote_asset;
        let quote_decimals = self.assets[quote_asset as usize].decimals;
        // Settling moves value at the oracle price: it needs a fresh, tight one, like a liquidation.
        let oracle =
            self.usable_mark(m, now_s, Guard::Liquidation, &format!("settling {symbol}"))?;
        let (mut market, _) = self.accrued_market(m, now_s)?;
        let mut positions = [PerpPosition {
            market: m,
            base: TokenAmount::ZERO,
            quote: Quote::ZERO,
            funding_snapshot: market.funding_index,
        }; 2];
        for (slot, id) in [winner, loser].into_iter().enumerate() {
            let sub = self.sub_account(id)?;
            let position = sub.perp(m).copied().ok_or_else(|| {
                reject(
                    "no_position",
                    format!("sub-account {id} has no {symbol} position"),
                )
            })?;
            positions[slot] = position;
            market.settle_position_funding(&mut positions[slot], decimals)?;
        }
        let pnl = |p: &PerpPosition| -> NumResult<Quote> {
            oracle.value_floor(p.base, decimals)?.checked_add(p.quote)
        };
        let (winner_pnl, loser_pnl) = (pnl(&positions[0])?, pnl(&positions[1])?);
        if !winner_pnl.is_positive() || !loser_pnl.is_negative() {
            return Err(reject(
                "nothing_to_settle",
                format!("{symbol}: sub-account {winner} has PnL {winner_pnl} and sub-account {loser} has {loser_pnl}; settling needs a winner and a loser"),
            ));
        }
        let config = &self.assets[quote_asset as usize];
        let mut pool = self.pools[quote_asset as usize].clone();
        pool.accrue(now_s, &config.interest, config.reserve_factor)?;
        let amount = winner_pnl
            .min(loser_pnl.checked_neg()?)
            .min(self.settlement_capacity(now_s, &pool, loser, symbol)?);
        // Micro-USD to quote-asset native units, rounded down; the positions move by exactly what those tokens are
        // worth, so the perp zero-sum identity and the token ledger both stay exact (USD = quote asset at face).
        let tokens = self.quote_tokens_floor(amount)?;
        let paid = self.tokens_worth_floor(tokens)?;
        positions[0].quote = positions[0].quote.checked_sub(paid)?;
        positions[1].quote = positions[1].quote.checked_add(paid)?;
        // Tokens: out of the loser's deposit, then borrowed; into the winner's balance.
        let loser_scaled = self.sub_accounts[loser as usize].scaled(quote_asset);
        let winner_scaled = self.sub_accounts[winner as usize].scaled(quote_asset);
        self.check_may_hold(&self.sub_accounts[winner as usize], winner, quote_asset)?;
        self.check_may_hold(&self.sub_accounts[loser as usize], loser, quote_asset)?;
        // An internal move: the loser's tokens (borrowed if it has to) go straight to the winner, so the pool's
        // liquidity is not needed.
        let (new_loser, _) = pool.debit(loser_scaled, tokens)?;
        let (new_winner, _) = pool.credit(winner_scaled, tokens)?;
        pool.internal_move(tokens)?;
        self.commit_market(m, market);
        self.commit_pool(quote_asset, pool);
        self.commit_balance(loser, quote_asset, new_loser);
        self.commit_balance(winner, quote_asset, new_winner);
        for (id, p) in [winner, loser].into_iter().zip(positions) {
            let keep = !p.base.is_zero() || !p.quote.is_zero();
            self.commit_perp(id, m, keep.then_some(p));
        }
        let mut events = vec![Event::PnlSettled {
            market: symbol.to_string(),
            winner,
            loser,
            amount: TokenQuantity::from_native(tokens, quote_decimals)?,
        }];
        self.refresh_touched(now_s, &[winner, loser], &mut events)?;
        Ok(events)
    }

    /// Settles a losing position against the venue's own claims in its market (trading fees, then the insurance
    /// share of liquidation fees): they move out of the market into the treasury's and the insurance fund's
    /// quote-asset deposits, paid from the loser's balance within its [`Engine::settlement_capacity`]. Permissionless.
    fn settle_venue_claims(&mut self, now_s: u64, symbol: &str, loser: SubAccountId) -> Applied {
        let m = self.market_idx(symbol)?;
        let underlying = self.market_underlying[m as usize];
        let decimals = self.assets[underlying as usize].decimals;
        let quote_asset = self.quote_asset;
        let quote_decimals = self.assets[quote_asset as usize].decimals;
        let oracle =
            self.usable_mark(m, now_s, Guard::Liquidation, &format!("settling {symbol}"))?;
        let sub = self.sub_account(loser)?;
        self.check_may_hold(sub, loser, quote_asset)?;
        let (mut market, _) = self.accrued_market(m, now_s)?;
        let mut position = *sub.perp(m).ok_or_else(|| {
            reject(
                "no_position",
                format!("sub-account {loser} has no {symbol} position"),
            )
        })?;
        market.settle_position_funding(&mut position, decimals)?;
        let pnl = oracle
            .value_floor(position.base, decimals)?
            .checked_add(position.quote)?;
        let claims = market
            .fees_collected
            .checked_add(market.insurance_collected)?;
        if !pnl.is_negative() || !claims.is_positive() {
            return Err(reject(
                "nothing_to_settle",
                format!(
                    "{symbol}: sub-account {loser} has PnL {pnl}, the venue's claims are {claims}"
                ),
            ));
        }
        let config = &self.assets[quote_asset as usize];
        let mut pool = self.pools[quote_asset as usize].clone();
        pool.accrue(now_s, &config.interest, config.reserve_factor)?;
        let amount = claims
            .min(pnl.checked_neg()?)
            .min(self.settlement_capacity(now_s, &pool, loser, symbol)?);
        let tokens = |q: Quote| self.quote_tokens_floor(q);
        let worth = |t: TokenAmount| self.tokens_worth_floor(t);
        // Fees first, then the insurance share; each in whole tokens, the positions moved by what they are worth.
        let to_treasury = tokens(amount.min(market.fees_collected))?;
        let to_insurance = tokens(
            amount
                .checked_sub(worth(to_treasury)?)?
                .min(market.insurance_collected),
        )?;
        let (paid_fees, paid_insurance) = (worth(to_treasury)?, worth(to_insurance)?);
        market.fees_collected = market.fees_collected.checked_sub(paid_fees)?;
        market.insurance_collected = market.insurance_collected.checked_sub(paid_insurance)?;
        position.quote = position
            .quote
            .checked_add(paid_fees)?
            .checked_add(paid_insurance)?;
        let total = to_treasury.checked_add(to_insurance)?;
        let held_scaled = sub.scaled(quote_asset);
        // An internal move into the treasury's and the insurance fund's deposits: no liquidity needed.
        let (new_scaled, _) = pool.debit(held_scaled, total)?;
        if to_treasury.is_positive() {
            pool.treasury_scaled += pool.deposit(to_treasury)?;
        }
        if to_insurance.is_positive() {
            pool.insurance_scaled += pool.deposit(to_insurance)?;
        }
        pool.internal_move(total)?;
        self.commit_market(m, market);
        self.commit_pool(quote_asset, pool);
        self.commit_balance(loser, quote_asset, new_scaled);
        let keep = !position.base.is_zero() || !position.quote.is_zero();
        self.commit_perp(loser, m, keep.then_some(position));
        let mut events = vec![Event::VenueClaimsSettled {
            market: symbol.to_string(),
            loser,
            to_treasury: TokenQuantity::from_native(to_treasury, quote_decimals)?,
            to_insurance: TokenQuantity::from_native(to_insurance, quote_decimals)?,
        }];
        self.refresh_touched(now_s, &[loser], &mut events)?;
        Ok(events)
    }

    // ----- insurance fund and bankruptcy ---------------------------------------------------------------------

    /// Quote-asset tokens (native units) worth `value` at face (USD = the quote asset), rounded down.
    fn quote_tokens_floor(&self, value: Quote) -> NumResult<TokenAmount> {
        let unit = ballast_num::pow10(self.assets[self.quote_asset as usize].decimals as u32)?;
        Ok(TokenAmount::from_raw(ballast_num::mul_div(
            value.raw(),
            unit,
            Quote::SCALE,
            Rounding::Floor,
        )?))
    }

    /// What quote-asset tokens (native units) are worth at face, rounded down.
    fn tokens_worth_floor(&self, tokens: TokenAmount) -> NumResult<Quote> {
        let unit = ballast_num::pow10(self.assets[self.quote_asset as usize].decimals as u32)?;
        Ok(Quote::from_raw(ballast_num::mul_div(
            tokens.raw(),
            Quote::SCALE,
            unit,
            Rounding::Floor,
        )?))
    }

    /// The most a settlement may take from a losing sub-account's balance, micro-USD: its quote-asset deposit, plus
    /// what the rest of its spot book is worth at usable oracle prices (other deposits less its debts, never below
    /// zero; a stale or uncertain price counts a deposit as zero and a debt as leaving no backing),
    /// which the settlement may borrow against and a liquidation then swaps for the debt. A borrow with nothing
    /// behind it would turn a perp deficit into a lending loss and skip the perp waterfall. Refuses a loser with
    /// nothing to pay with.
    fn settlement_capacity(
        &self,
        now_s: u64,
        pool: &Pool,
        loser: SubAccountId,
        symbol: &str,
    ) -> Result<Quote, Rejection> {
        let sub = &self.sub_accounts[loser as usize];
        let quote_scaled = sub.scaled(self.quote_asset);
        let deposit = pool.deposit_native(quote_scaled.max(0))?;
        let mut backing = Quote::ZERO;
        let mut unvalued_debt = false;
        for b in &sub.balances {
            if b.asset == self.quote_asset && b.scaled > 0 {
                continue;
            }
            let risk = self.asset_risk(b.asset, now_s)?;
            // Only a price a liquidation could use (fresh and tight) values the backing.
            let usable = Guard::Liquidation.filter(risk.problem).is_none();
            match risk.oracle.filter(|_| usable) {
                Some(oracle) => {
                    let amount = Self::native_of(b.scaled, &risk)?;
                    backing =
                        backing.checked_add(oracle.price.value_floor(amount, risk.decimals)?)?;
                }
                // A debt that cannot be valued leaves nothing known to back a borrow; collateral that cannot be
                // valued counts zero.
                None => unvalued_debt |= b.scaled < 0,
            }
        }
        if unvalued_debt {
            backing = Quote::ZERO;
        }
        let capacity = self
            .tokens_worth_floor(deposit)?
            .checked_add(backing.max(Quote::ZERO))?;
        if !capacity.is_positive() {
            return Err(reject(
                "nothing_to_settle",
                format!(
                    "{symbol}: sub-account {loser} has no collateral to pay its loss with; resolve_bankruptcy absorbs a deficit"
                ),
            ));
        }
        Ok(capacity)
    }

    /// Native tokens an asset's insurance fund holds (its deposit in the pool), rounded down.
    fn insurance_value(pool: &Pool) -> NumResult<TokenAmount> {
        pool.deposit_native(pool.insurance_scaled)
    }

    /// Pauses a sub-account's withdrawals until `until_s` (never shortening a pause already running).
    fn commit_withdrawal_pause(&mut self, id: SubAccountId, until_s: u64) {
        let old = self.withdrawal_pauses.get(&id).copied();
        self.journal.withdrawal_pauses.push((id, old));
        self.withdrawal_pauses
            .insert(id, old.unwrap_or(0).max(until_s));
    }

    /// Refuses a withdrawal (or a transfer out) by a sub-account that held a position in a market when it
    /// deleveraged, until its pause ends, whatever it has done with the position since.
    fn refuse_if_market_paused(
        &self,
        id: SubAccountId,
        now_s: u64,
        action: &str,
    ) -> Result<(), Rejection> {
        match self.withdrawal_pauses.get(&id) {
            Some(&until) if now_s < until => Err(reject(
                "withdrawals_paused",
                format!("{action}: sub-account {id} held a position in a market that deleveraged; its withdrawals are paused until {until}"),
            )),
            _ => Ok(()),
        }
    }

    fn refuse_if_paused(&self, asset: AssetIdx, now_s: u64, action: &str) -> Result<(), Rejection> {
        let until = self.pools[asset as usize].withdrawals_paused_until_s;
        if now_s < until {
            let symbol = &self.assets[asset as usize].symbol;
            return Err(reject(
                "withdrawals_paused",
                format!("{action}: {symbol} withdrawals are paused until {until} after a socialized loss"),
            ));
        }
        Ok(())
    }

    /// Moves part of a sub-account's deposit into the asset's insurance fund for shares:
    /// `amount * (shares + V) / (fund + V)` (rounded down, `V` the virtual offset), one share per native unit while
    /// the fund is empty.
    fn stake_insurance(
        &mut self,
        now_s: u64,
        id: SubAccountId,
        symbol: &str,
        amount: TokenQuantity,
    ) -> Applied {
        let asset = self.asset_idx(symbol)?;
        let native = self.native(asset, amount)?;
        let sub = self.sub_account(id)?;
        let config = &self.assets[asset as usize];
        let mut pool = self.pools[asset as usize].clone();
        pool.accrue(now_s, &config.interest, config.reserve_factor)?;
        let held_scaled = sub.scaled(asset).max(0);
        let held = pool.deposit_native(held_scaled)?;
        if native > held {
            return Err(reject(
                "insufficient_balance",
                format!(
                    "stake of {amount} {symbol} exceeds sub-account {id}'s deposit of {}",
                    self.quantity(asset, held)?
                ),
            ));
        }
        let fund = Self::insurance_value(&pool)?;
        // Shares are priced with a virtual offset (ERC-4626's defence against share-price inflation): the fund is
        // valued at `fund + V` native units for `shares + V` shares, so a tiny first stake followed by a donation of
        // fees cannot round later stakers' shares away.
        let shares = ballast_num::mul_div(
            native.raw(),
            pool.insurance_shares + INSURANCE_VIRTUAL_OFFSET,
            fund.raw() + INSURANCE_VIRTUAL_OFFSET,
            Rounding::Floor,
        )?;
        if shares <= 0 {
            return Err(reject(
                "bad_amount",
                format!("stake of {amount} {symbol} buys no share"),
            ));
        }
        let debit = pool.withdraw(native, held_scaled)?;
        let credit = pool.deposit(native)?;
        pool.internal_move(native)?;
        pool.insurance_scaled += credit;
        pool.insurance_shares += shares;
        let source_scaled = held_scaled - debit;
        self.check_new_risk(
            id,
            &format!("stake of {amount} {symbol}"),
            now_s,
            &[(asset, source_scaled)],
        )?;
        self.commit_pool(asset, pool);
        self.commit_balance(id, asset, source_scaled);
        self.commit_stake(id, asset, |stake| stake.shares += shares);
        let mut events = vec![Event::InsuranceStaked {
            sub_account: id,
            asset: symbol.to_string(),
            amount,
            shares: TokenQuantity::from_native(
                TokenAmount::from_raw(shares),
                self.assets[asset as usize].decimals,
            )?,
        }];
        self.refresh_touched(now_s, &[id], &mut events)?;
        Ok(events)
    }

    fn request_unstake(
        &mut self,
        now_s: u64,
        id: SubAccountId,
        symbol: &str,
        shares: TokenQuantity,
    ) -> Applied {
        let asset = self.asset_idx(symbol)?;
        self.sub_account(id)?;
        let decimals = self.assets[asset as usize].decimals;
        let requested = shares
            .to_native_exact(decimals)
            .filter(|s| s.is_positive())
            .ok_or_else(|| {
                reject(
                    "bad_amount",
                    format!("shares {shares} must be positive with at most {decimals} decimals"),
                )
            })?;
        let held = self.stakes.get(&(id, asset)).map_or(0, |s| s.shares);
        if requested.raw() > held {
            return Err(reject(
                "insufficient_shares",
                format!(
                    "sub-account {id} holds {} {symbol} insurance shares, not {shares}",
                    self.quantity(asset, TokenAmount::from_raw(held))?
                ),
            ));
        }
        self.commit_stake(id, asset, |stake| {
            stake.unstake_shares = requested.raw();
            stake.unstake_requested_s = now_s;
        });
        let available_at = now_s + self.protocol.insurance_unstake_cooldown_s;
        Ok(vec![Event::UnstakeRequested {
            sub_account: id,
            asset: symbol.to_string(),
            shares,
            available_at,
        }])
    }

    fn unstake(&mut self, now_s: u64, id: SubAccountId, symbol: &str) -> Applied {
        let asset = self.asset_idx(symbol)?;
        let sub = self.sub_account(id)?;
        self.refuse_if_paused(asset, now_s, "unstake")?;
        let stake = self.stakes.get(&(id, asset)).copied().unwrap_or_default();
        if stake.unstake_shares == 0 {
            return Err(reject(
                "no_unstake_request",
                format!("sub-account {id} has not asked to unstake from the {symbol} fund"),
            ));
        }
        let cooldown = self.protocol.insurance_unstake_cooldown_s;
        let ready = stake.unstake_requested_s + cooldown;
        if now_s < ready {
            return Err(reject(
                "cooldown",
                format!("{symbol} insurance shares of sub-account {id} unlock at {ready}"),
            ));
        }
        // The request lapses one cooldown after it matured: a served cooldown is not an option to leave later,
        // at the moment a loss appears.
        if now_s > ready + cooldown {
            return Err(reject(
                "unstake_lapsed",
                format!(
                    "the unstake request of sub-account {id} lapsed at {}; request again",
                    ready + cooldown
                ),
            ));
        }
        self.check_may_hold(sub, id, asset)?;
        let config = &self.assets[asset as usize];
        let mut pool = self.pools[asset as usize].clone();
        pool.accrue(now_s, &config.interest, config.reserve_factor)?;
        let fund = Self::insurance_value(&pool)?;
        let amount = TokenAmount::from_raw(ballast_num::mul_div(
            stake.unstake_shares,
            fund.raw() + INSURANCE_VIRTUAL_OFFSET,
            pool.insurance_shares + INSURANCE_VIRTUAL_OFFSET,
            Rounding::Floor,
        )?)
        // The virtual units are not there to pay out: after a loss they can price shares above the fund.
        .min(fund);
        if amount > pool.vault {
            return Err(reject(
                "insufficient_liquidity",
                format!(
                    "unstake of {symbol}: only {} is available in the pool",
                    self.quantity(asset, pool.vault)?
                ),
            ));
        }
        let mut scaled = sub.scaled(asset);
        if amount.is_positive() {
            pool.insurance_scaled -= pool.withdraw(amount, pool.insurance_scaled)?;
            scaled = pool.credit(scaled, amount)?.0;
            pool.internal_move(amount)?;
        }
        pool.insurance_shares -= stake.unstake_shares;
        let shares = stake.unstake_shares;
        self.commit_pool(asset, pool);
        self.commit_balance(id, asset, scaled);
        self.commit_stake(id, asset, |s| {
            s.shares -= shares;
            s.unstake_shares = 0;
        });
        let decimals = self.assets[asset as usize].decimals;
        let mut events = vec![Event::InsuranceUnstaked {
            sub_account: id,
            asset: symbol.to_string(),
            shares: TokenQuantity::from_native(TokenAmount::from_raw(shares), decimals)?,
            amount: TokenQuantity::from_native(amount, decimals)?,
        }];
        self.refresh_touched(now_s, &[id], &mut events)?;
        Ok(events)
    }

    /// Writes a stake (removed when empty), keeping its pre-image in the journal.
    fn commit_stake(&mut self, id: SubAccountId, asset: AssetIdx, change: impl FnOnce(&mut Stake)) {
        let old = self.stakes.get(&(id, asset)).copied();
        self.journal.stakes.push((id, asset, old));
        let mut stake = old.unwrap_or_default();
        change(&mut stake);
        if stake == Stake::default() {
            self.stakes.remove(&(id, asset));
        } else {
            self.stakes.insert((id, asset), stake);
        }
    }

    // ----- views ---------------------------------------------------------------------------------------------

    /// A sub-account's stake in an asset's insurance fund, if any.
    pub fn stake(&self, id: SubAccountId, asset: AssetIdx) -> Option<Stake> {
        self.stakes.get(&(id, asset)).copied()
    }

    /// Every insurance stake, by (sub-account, asset).
    pub fn stakes(&self) -> &BTreeMap<(SubAccountId, AssetIdx), Stake> {
        &self.stakes
    }

    /// The counterparty pool's header.
    pub fn lp_pool(&self) -> LpPool {
        self.lp
    }

    /// Pool share units (6 decimals) of every liquidity provider.
    pub fn lp_shares(&self) -> &BTreeMap<SubAccountId, i128> {
        &self.lp_shares
    }

    /// Sequencer time of the last applied command.
    pub fn now_s(&self) -> u64 {
        self.now_s
    }

    /// Commands applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn assets(&self) -> &[AssetConfig] {
        &self.assets
    }

    pub fn pool(&self, asset: AssetIdx) -> &Pool {
        &self.pools[asset as usize]
    }

    pub fn oracle(&self, asset: AssetIdx) -> Option<&OraclePrice> {
        self.oracles[asset as usize].as_ref()
    }

    pub fn sub_accounts(&self) -> &[SubAccount] {
        &self.sub_accounts
    }

    pub fn owners(&self) -> &BTreeMap<OwnerId, Vec<SubAccountId>> {
        &self.owners
    }

    pub fn asset_index(&self, symbol: &str) -> Option<AssetIdx> {
        self.asset_by_symbol.get(symbol).copied()
    }

    pub fn quote_asset(&self) -> AssetIdx {
        self.quote_asset
    }

    pub fn protocol(&self) -> &ProtocolSection {
        &self.protocol
    }

    pub fn tiers(&self) -> &[TierConfig] {
        &self.tiers
    }

    pub fn perp_tiers(&self) -> &[PerpTierConfig] {
        &self.perp_tiers
    }

    /// Every market's configuration, by market index (listing order).
    pub fn market_configs(&self) -> &[MarketConfig] {
        &self.market_configs
    }

    /// Every market's state, by market index.
    pub fn markets(&self) -> &[Market] {
        &self.markets
    }

    /// Per market index, the underlying asset's index.
    pub fn market_underlying(&self) -> &[AssetIdx] {
        &self.market_underlying
    }

    /// The price positions in a market are valued at now: the underlying's oracle price for a perp, the series'
    /// mark for an option (`None` without an oracle price, or if the mark cannot be computed).
    pub fn market_mark(&self, market: MarketIdx) -> Option<Price> {
        self.market_risk(market, self.now_s).ok()?.oracle
    }

    pub fn market_index(&self, symbol: &str) -> Option<MarketIdx> {
        self.market_by_symbol.get(symbol).copied()
    }

    /// Sub-accounts with an open margin call (maintenance health below zero at their last evaluation), in id order.
    pub fn below_maintenance(&self) -> Vec<SubAccountId> {
        let mut ids = Vec::new();
        for (word, &bits) in self.below_maintenance_bits.iter().enumerate() {
            let mut rest = bits;
            while rest != 0 {
                ids.push((word * 64) as SubAccountId + rest.trailing_zeros());
                rest &= rest - 1;
            }
        }
        ids
    }

    /// Of the sub-accounts holding `asset`, those with an open margin call (fast: walks only the holder index).
    pub fn below_maintenance_holding(&self, asset: AssetIdx) -> Vec<SubAccountId> {
        let mut ids: Vec<SubAccountId> = self.holders[asset as usize]
            .iter()
            .copied()
            .filter(|&id| self.sub_accounts[id as usize].below_maintenance)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Native balance of a sub-account in an asset (negative: debt), at the pool's stored indices.
    pub fn balance_native(
        &self,
        id: SubAccountId,
        asset: AssetIdx,
    ) -> Result<TokenAmount, Rejection> {
        let scaled = self.sub_account(id)?.scaled(asset);
        let pool = self.pools.get(asset as usize).ok_or_else(|| {
            reject(
                "unknown_asset",
                format!("asset index {asset} is not listed"),
            )
        })?;
        Ok(if scaled >= 0 {
            pool.deposit_native(scaled)?
        } else {
            pool.borrow_native(-scaled)?.checked_neg()?
        })
    }

    /// Checks every cross-cutting invariant: per-pool conservation, scaled totals equal the sum of balances,
    /// the holder index, limits and health-level ordering. Used by tests and debug builds.
    pub fn check_invariants(&self) -> Result<(), String> {
        // Checked sums throughout: a restored snapshot (`crate::snapshot`) may hold any values, and this check must
        // report them, not overflow.
        let provided = self
            .lp_shares
            .values()
            .try_fold(0i128, |sum, s| sum.checked_add(*s))
            .ok_or("pool shares held overflow")?;
        if provided != self.lp.total_shares || self.lp_shares.values().any(|s| *s <= 0) {
            return Err(format!(
                "pool shares held {provided} != outstanding {}",
                self.lp.total_shares
            ));
        }
        let n_assets = self.assets.len();
        let mut deposits = vec![0i128; n_assets];
        let mut borrows = vec![0i128; n_assets];
        let mut holder_count = vec![0usize; n_assets];
        if self.below_maintenance_bits.len() != self.sub_accounts.len().div_ceil(64) {
            return Err("margin flag bits: wrong length".to_string());
        }
        for (word, &bits) in self.below_maintenance_bits.iter().enumerate() {
            let flags = self.sub_accounts[word * 64..]
                .iter()
                .take(64)
                .enumerate()
                .fold(0u64, |w, (i, sub)| w | (sub.below_maintenance as u64) << i);
            if bits != flags {
                return Err(format!(
                    "margin flag bits of sub-accounts {}..: {bits:#x} != flags {flags:#x}",
                    word * 64
                ));
            }
        }
        for (id, sub) in self.sub_accounts.iter().enumerate() {
            if sub.balances.len() > MAX_BALANCES_PER_SUB_ACCOUNT {
                return Err(format!(
                    "sub-account {id} holds {} balances",
                    sub.balances.len()
                ));
            }
            for pair in sub.balances.windows(2) {
                if pair[0].asset >= pair[1].asset {
                    return Err(format!("sub-account {id}: balances not sorted"));
                }
            }
            for b in &sub.balances {
                if b.scaled == 0 {
                    return Err(format!("sub-account {id}: zero balance kept"));
                }
                if self.holders[b.asset as usize].get(b.holder_slot as usize)
                    != Some(&(id as SubAccountId))
                {
                    return Err(format!(
                        "sub-account {id}: holder index wrong for asset {}",
                        b.asset
                    ));
                }
                holder_count[b.asset as usize] += 1;
                let total = if b.scaled > 0 {
                    deposits[b.asset as usize].checked_add(b.scaled)
                } else {
                    borrows[b.asset as usize].checked_sub(b.scaled)
                };
                let total =
                    total.ok_or_else(|| format!("asset {}: balances sum beyond i128", b.asset))?;
                if b.scaled > 0 {
                    deposits[b.asset as usize] = total;
                } else {
                    borrows[b.asset as usize] = total;
                }
            }
        }
        for (a, pool) in self.pools.iter().enumerate() {
            let staked = self
                .stakes
                .iter()
                .filter(|((_, asset), _)| *asset as usize == a)
                .try_fold(0i128, |sum, (_, s)| sum.checked_add(s.shares))
                .ok_or_else(|| format!("pool {}: stakes overflow", self.assets[a].symbol))?;
            if staked != pool.insurance_shares {
                return Err(format!(
                    "pool {}: insurance shares {} != stakes {staked}",
                    self.assets[a].symbol, pool.insurance_shares
                ));
            }
            if pool.insurance_scaled < 0
                || pool.bad_debt_covered.is_negative()
                || pool.socialized_loss.is_negative()
            {
                return Err(format!(
                    "pool {}: the insurance fund or a loss ledger is negative (insurance {}, covered {}, socialized {})",
                    self.assets[a].symbol, pool.insurance_scaled, pool.bad_debt_covered, pool.socialized_loss
                ));
            }
        }
        for (m, market) in self.markets.iter().enumerate() {
            let venue_and_ledger = [
                market.fees_collected,
                market.insurance_collected,
                market.claims_written_off,
                market.insurance_paid,
                market.socialized_loss,
            ];
            if venue_and_ledger.iter().any(|q| q.is_negative()) {
                return Err(format!(
                    "market {}: a venue claim or a loss ledger is negative",
                    self.market_configs[m].symbol
                ));
            }
        }
        for (m, market) in self.markets.iter().enumerate() {
            let symbol = &self.market_configs[m].symbol;
            let decimals = self.assets[self.market_underlying[m] as usize].decimals;
            let positions = self
                .sub_accounts
                .iter()
                .flat_map(|s| s.perps.iter())
                .filter(|p| p.market as usize == m);
            market
                .check_zero_sum(decimals, positions)
                .map_err(|e| format!("market {symbol}: {e}"))?;
            let holders: BTreeSet<SubAccountId> = (0..self.sub_accounts.len() as SubAccountId)
                .filter(|&id| {
                    self.sub_accounts[id as usize]
                        .perp(m as MarketIdx)
                        .is_some()
                })
                .collect();
            if holders != self.market_holders[m] {
                return Err(format!(
                    "market {symbol}: holder index differs from the positions"
                ));
            }
            let underlying = self.market_underlying[m];
            let market_only = holders
                .iter()
                .filter(|&&id| self.sub_accounts[id as usize].scaled(underlying) == 0)
                .count();
            if market_only != self.market_only_holders[m] as usize {
                return Err(format!(
                    "market {symbol}: {} holders counted without the underlying, {market_only} in fact",
                    self.market_only_holders[m]
                ));
            }
        }
        for (id, sub) in self.sub_accounts.iter().enumerate() {
            if sub.perps.len() > MAX_PERP_POSITIONS_PER_SUB_ACCOUNT
                || sub.perps.windows(2).any(|w| w[0].market >= w[1].market)
                || sub
                    .perps
                    .iter()
                    .any(|p| p.base.is_zero() && p.quote.is_zero())
            {
                return Err(format!(
                    "sub-account {id}: perp positions out of order, too many, or empty"
                ));
            }
        }
        // The maintenance hot path (oracle re-evaluation, with its exact fast paths) agrees with the general
        // health computation, and the three levels are ordered.
        let risks = self.all_risks(self.now_s).map_err(|e| e.to_string())?;
        for (id, sub) in self.sub_accounts.iter().enumerate() {
            // Every maintenance cache that can still be used holds what a fresh computation gives, and so does
            // every holder row that can still be used.
            crate::maintenance::check(sub, &self.epochs)
                .map_err(|e| format!("sub-account {id}: maintenance cache: {e}"))?;
            for b in &sub.balances {
                let row = &self.holder_rows[b.asset as usize][b.holder_slot as usize];
                crate::maintenance::check_row(
                    sub,
                    b.asset,
                    row,
                    &self.epochs,
                    &self.market_underlying,
                )
                .map_err(|e| format!("sub-account {id}: asset {}: {e}", b.asset))?;
            }
            let fast =
                maintenance_health(sub, &risks).map_err(|e| format!("sub-account {id}: {e}"))?;
            let health = self
                .health_cache(sub, self.now_s, &[])
                .and_then(|cache| cache.health())
                .map_err(|e| format!("sub-account {id}: {e}"))?;
            if fast != health.maintenance {
                return Err(format!(
                    "sub-account {id}: hot-path maintenance {fast} != {}",
                    health.maintenance
                ));
            }
            if health.initial > health.liquidation_end
                || health.liquidation_end > health.maintenance
            {
                return Err(format!(
                    "sub-account {id}: health levels out of order: {health:?}"
                ));
            }
        }
        for (a, pool) in self.pools.iter().enumerate() {
            let symbol = &self.assets[a].symbol;
            pool.check_conservation()
                .map_err(|e| format!("pool {symbol}: {e}"))?;
            if deposits[a]
                .checked_add(pool.treasury_scaled)
                .and_then(|d| d.checked_add(pool.insurance_scaled))
                != Some(pool.deposits_scaled)
            {
                return Err(format!(
                    "pool {symbol}: scaled deposits {} != accounts {} + treasury {} + insurance {}",
                    pool.deposits_scaled, deposits[a], pool.treasury_scaled, pool.insurance_scaled
                ));
            }
            if borrows[a] != pool.borrows_scaled {
                return Err(format!(
                    "pool {symbol}: scaled borrows {} != accounts {}",
                    pool.borrows_scaled, borrows[a]
                ));
            }
            if self.holder_rows[a].len() != self.holders[a].len() {
                return Err(format!(
                    "pool {symbol}: {} holder rows, {} holders",
                    self.holder_rows[a].len(),
                    self.holders[a].len()
                ));
            }
            if holder_count[a] != self.holders[a].len() {
                return Err(format!(
                    "pool {symbol}: holder index has {} entries, {} holders",
                    self.holders[a].len(),
                    holder_count[a]
                ));
            }
        }
        Ok(())
    }
}

/// Passes a liquidation step's result on, except `cannot_improve`, which is remembered and skipped.
fn skip_if_no_improvement(
    step: Result<(), Rejection>,
    skipped: &mut Option<Rejection>,
) -> Result<(), Rejection> {
    match step {
        Err(rejection) if rejection.code == "cannot_improve" => {
            skipped.get_or_insert(rejection);
            Ok(())
        }
        other => other,
    }
}

/// Sub-accounts waiting to be re-evaluated together, so that the memory they read is fetched all at once.
///
/// Re-evaluating a sub-account reads its block of maintenance caches, a separate heap block: on a large engine
/// that is a cache miss per sub-account. Evaluated one after the other, those misses are served one at a time,
/// because the arithmetic between two of them is too long for the processor to run ahead to the next one. A batch
/// first reads one value from every cache line of every block in a short loop (the processor then has all the
/// misses in flight at once), then evaluates the sub-accounts, whose data are now in cache. Order and results are
/// those of evaluating the ids one by one.
#[derive(Default)]
struct Batch {
    ids: [SubAccountId; Batch::SIZE],
    /// Each one's slot in the asset's holder index (its row), or [`Batch::NO_ROW`] for a market holder without a
    /// balance in the asset.
    slots: [u32; Batch::SIZE],
    len: usize,
}

impl Batch {
    const SIZE: usize = 16;
    const NO_ROW: u32 = u32::MAX;

    /// Adds a sub-account and its row's slot; `true` when the batch is full and must be evaluated.
    #[inline]
    fn push(&mut self, id: SubAccountId, slot: u32) -> bool {
        self.ids[self.len] = id;
        self.slots[self.len] = slot;
        self.len += 1;
        self.len == Self::SIZE
    }

    /// Re-evaluates the batch's sub-accounts in order (see [`check_crossing`]), rebuilds their rows, and empties
    /// the batch.
    #[inline]
    fn evaluate(
        &mut self,
        sub_accounts: &mut [SubAccount],
        risks: &RiskTable,
        epochs: &Epochs,
        rows: &HolderRows,
        row_array: &mut [HolderRow],
        crossed: &mut Vec<(SubAccountId, Quote)>,
    ) -> NumResult<()> {
        let ids = &self.ids[..self.len];
        let mut sum = 0u16;
        for &id in ids {
            sum = sub_accounts[id as usize]
                .maintenance
                .iter()
                .fold(sum, |sum, entry| sum.wrapping_add(entry.source_index()));
        }
        std::hint::black_box(sum);
        self.len = 0;
        for (&id, &slot) in ids.iter().zip(&self.slots) {
            let sub = &mut sub_accounts[id as usize];
            check_crossing(id, sub, risks, epochs, crossed)?;
            if slot != Self::NO_ROW {
                row_array[slot as usize] = rows.build(sub);
            }
        }
        Ok(())
    }
}

/// Re-evaluates one sub-account's maintenance health through its caches ([`crate::maintenance`]) and records it in
/// `crossed` if it crossed zero since the last evaluation. Debug builds check the result (value or error) against
/// the uncached [`maintenance_health`].
#[inline]
fn check_crossing(
    id: SubAccountId,
    sub: &mut SubAccount,
    risks: &RiskTable,
    epochs: &Epochs,
    crossed: &mut Vec<(SubAccountId, Quote)>,
) -> NumResult<()> {
    let result = crate::maintenance::maintenance_health(sub, risks, epochs);
    debug_assert_eq!(
        result,
        maintenance_health(sub, risks),
        "sub-account {id}: cached maintenance health"
    );
    let maintenance = result?;
    if maintenance.is_negative() != sub.below_maintenance {
        crossed.push((id, maintenance));
    }
    Ok(())
}

/// Native amount of a scaled balance under `risk`'s indices, rounded against the holder: [`Engine::native_of`]
/// without its signed 128-bit division where unsigned arithmetic gives the same value.
///
/// That is `scaled * index / 10^18` rounded down for a deposit, minus the rounded-up magnitude for a debt, when the
/// index is non-negative and the product fits in u128 (the quotient then fits in i128). Anything else (and
/// `i128::MIN`, whose negation `native_of` refuses) takes `native_of` itself.
#[inline]
pub(crate) fn balance_amount(scaled: i128, risk: &AssetRisk) -> NumResult<TokenAmount> {
    const SCALE: u128 = ballast_num::RATIO_SCALE as u128;
    let index = if scaled >= 0 {
        risk.supply_index.raw()
    } else {
        risk.borrow_index.raw()
    };
    let product = if index >= 0 && scaled != i128::MIN {
        scaled.unsigned_abs().checked_mul(index as u128)
    } else {
        None
    };
    match product {
        // An index of exactly one (it has not moved yet) values a balance at exactly its scaled units.
        Some(_) if index == ballast_num::RATIO_SCALE => Ok(TokenAmount::from_raw(scaled)),
        Some(p) if scaled >= 0 => Ok(TokenAmount::from_raw((p / SCALE) as i128)),
        Some(p) => Ok(TokenAmount::from_raw(-(p.div_ceil(SCALE) as i128))),
        None => Engine::native_of(scaled, risk),
    }
}

/// The size of one liquidation step (`1..=max`, in steps or native units): the least that brings liquidation-end
/// health, `le(size)`, to zero or above, found by binary search, or `max` if none does.
/// If that does not improve health on `le(0)`, the step takes `fallback` (the whole position or debt) instead.
/// Returns the size and whether it is the full `fallback`, or `None` when not even that improves health.
///
/// Under weights and ratios `le` is non-decreasing in the size. Under portfolio margin it is concave instead (the
/// requirement is a maximum of losses each linear in the size): it rises while the step hedges the worst scenario
/// and falls once the step overshoots into another. So when `max` does not restore health, the search first finds
/// the peak (the first size after which `le` strictly falls; `max` for a non-decreasing `le`), then the least
/// restoring size below it if the peak restores health, or else the peak itself if `max` does not even improve.
fn least_restoring_step(
    max: i128,
    fallback: i128,
    le: impl Fn(i128) -> NumResult<Quote>,
) -> NumResult<Option<(i128, bool)>> {
    let before = le(0)?;
    let mut size = max;
    let mut top = max;
    let at_max = le(max)?;
    if at_max.is_negative() {
        let (mut lo, mut hi) = (0, max);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if le(mid + 1)? < le(mid)? {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        // A peak that restores health is searched below; one that does not replaces `max` only when `max` itself
        // does not improve (a non-decreasing `le` with rounding noise keeps taking `max`, as it always has).
        if !le(lo)?.is_negative() {
            top = lo;
        } else if at_max <= before {
            size = lo;
        }
    }
    if !le(top)?.is_negative() {
        let (mut lo, mut hi) = (1, top);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if le(mid)?.is_negative() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        size = lo;
    }
    let mut full = size == fallback;
    if le(size)? <= before && !full {
        size = fallback;
        full = true;
    }
    if le(size)? <= before {
        return Ok(None);
    }
    Ok(Some((size, full)))
}

/// Health of a portfolio-margined book (`crate::portfolio`): `balances` as (asset, scaled units), `positions` as
/// held. With a `guard`, the view for new risk: a deposit in an asset whose price has a problem under the guard
/// counts zero and leaves the scenarios, and a debt or an open position on such an asset blocks (`Err`).
fn portfolio_health(
    balances: &[(AssetIdx, i128)],
    positions: &[PerpPosition],
    table: &RiskTable,
    guard: Option<Guard>,
) -> NumResult<Result<Health, crate::health::BlockedBy>> {
    use crate::health::BlockedBy;
    use crate::portfolio::Holding;
    let grid = table.grid.as_ref().ok_or(ballast_num::NumError::Domain {
        op: "portfolio margin without a grid",
    })?;
    let problem =
        |asset: AssetIdx| guard.and_then(|g| g.filter(table.assets[asset as usize].problem));
    let mut equity = Quote::ZERO;
    // Initial health values deposits at min(oracle, reference) and debts at max (the conservative price per side,
    // as in standard margin): this is what that costs against the oracle, rounded up. Positions count at their mark,
    // as a perp's PnL does in standard margin.
    let mut reference_haircut = Quote::ZERO;
    let mut haircut =
        |o: &crate::oracle::OraclePrice, amount: TokenAmount, decimals: u8| -> NumResult<()> {
            let gap = if amount.is_positive() {
                o.price.checked_sub(o.initial_asset_price())?
            } else {
                o.initial_liability_price().checked_sub(o.price)?
            };
            if gap.is_positive() {
                reference_haircut =
                    reference_haircut.checked_add(gap.value_ceil(amount.abs()?, decimals)?)?;
            }
            Ok(())
        };
    let mut holdings: Vec<Holding> = Vec::with_capacity(balances.len() + positions.len());
    for &(asset, scaled) in balances {
        let risk = &table.assets[asset as usize];
        let amount = balance_amount(scaled, risk)?;
        if amount.is_zero() {
            continue;
        }
        // Without a price (or, for new risk, without a usable one) a deposit counts zero and a debt blocks the check
        // (a debt cannot exist without a price: borrowing needs one).
        let usable = match risk.oracle {
            None => Err(PriceProblem::Missing),
            Some(o) => problem(asset).map_or(Ok(o.price), Err),
        };
        let price = match usable {
            Ok(price) => price,
            Err(problem) if amount.is_negative() && guard.is_some() => {
                return Ok(Err(BlockedBy { asset, problem }))
            }
            Err(_) => continue,
        };
        if let Some(o) = &risk.oracle {
            haircut(o, amount, risk.decimals)?;
        }
        if asset == table.quote_asset {
            equity = equity.checked_add(price.value_floor(amount, risk.decimals)?)?;
        } else {
            holdings.push(Holding {
                group: asset,
                amount,
                decimals: risk.decimals,
                price,
                deltas: table.asset_deltas(asset)?,
                contingency_price: Price::ZERO,
            });
        }
    }
    for position in positions {
        let risk = &table.markets[position.market as usize];
        let mut settled = *position;
        crate::perp::settle_funding(&mut settled, risk.funding_index, risk.decimals)?;
        let Some(mark) = risk.oracle else {
            equity = equity.checked_add(settled.quote)?;
            continue;
        };
        if let Some(problem) = problem(risk.underlying) {
            if !settled.base.is_zero() {
                return Ok(Err(BlockedBy {
                    asset: risk.underlying,
                    problem,
                }));
            }
        }
        equity = equity.checked_add(settled.quote)?;
        if settled.base.is_zero() {
            continue;
        }
        let rate = match &risk.option {
            None => grid.config.perp_contingency,
            Some(o) if o.settled || settled.base.is_positive() => Ratio::ZERO,
            Some(_) => grid.config.short_option_contingency,
        };
        let contingency_price = if rate.is_zero() {
            Price::ZERO
        } else {
            table.assets[risk.underlying as usize]
                .oracle
                .map_or(Ok(Price::ZERO), |o| o.price.mul_ratio(rate, Rounding::Ceil))?
        };
        holdings.push(Holding {
            group: risk.underlying,
            amount: settled.base,
            decimals: risk.decimals,
            price: mark,
            deltas: table.market_deltas(position.market)?,
            contingency_price,
        });
    }
    let totals = crate::portfolio::evaluate(&mut holdings, grid)?;
    let equity = equity.checked_add(totals.value)?;
    let maintenance = totals.requirement;
    let initial = maintenance.mul_ratio_ceil(grid.config.initial_multiple)?;
    let fraction = table
        .assets
        .first()
        .map_or(Ratio::ZERO, |a| a.liquidation_end_fraction);
    let liquidation_end =
        maintenance.checked_add(initial.checked_sub(maintenance)?.mul_ratio_ceil(fraction)?)?;
    Ok(Ok(Health {
        initial: equity
            .checked_sub(reference_haircut)?
            .checked_sub(initial)?,
        liquidation_end: equity.checked_sub(liquidation_end)?,
        maintenance: equity.checked_sub(maintenance)?,
    }))
}

/// Maintenance health of a sub-account from a table of asset risks, computed afresh: the reference for the oracle
/// hot path's incremental version ([`crate::maintenance::maintenance_health`]).
#[inline]
pub(crate) fn maintenance_health(sub: &SubAccount, table: &RiskTable) -> NumResult<Quote> {
    if sub.margin == MarginKind::Portfolio {
        let balances: Vec<(AssetIdx, i128)> =
            sub.balances.iter().map(|b| (b.asset, b.scaled)).collect();
        return Ok(portfolio_health(&balances, &sub.perps, table, None)?
            .expect("unguarded portfolio health never blocks")
            .maintenance);
    }
    let risks = &table.assets;
    let mut total = Quote::ZERO;
    for b in &sub.balances {
        let risk = &risks[b.asset as usize];
        let amount = balance_amount(b.scaled, risk)?;
        total = total.checked_add(risk.maintenance_contribution(amount)?)?;
    }
    for position in &sub.perps {
        let risk = &table.markets[position.market as usize];
        // Only the maintenance level, with exact unsigned fast paths (same value and error as `contributions`).
        total = total.checked_add(risk.maintenance_contribution(position)?)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let text = include_str!("../../../examples/protocol.toml");
        Engine::new(ProtocolConfig::from_toml("protocol.toml", text).unwrap(), 0)
    }

    #[test]
    fn roll_back_restores_every_pre_image() {
        let mut e = engine();
        for command in [
            CommandKind::CreateAccount { owner: 1 },
            CommandKind::OpenSubAccount {
                owner: 1,
                margin: MarginSpec::Cross,
            },
            CommandKind::OpenSubAccount {
                owner: 1,
                margin: MarginSpec::Cross,
            },
            CommandKind::Deposit {
                sub_account: 0,
                asset: "USDC".into(),
                amount: "100".parse().unwrap(),
            },
        ] {
            e.apply(&Command {
                timestamp: 0,
                kind: command,
            })
            .unwrap();
        }
        let before = e.state_hash();
        e.journal = Journal::default();
        let mut pool = e.pools[0].clone();
        pool.deposit(TokenAmount::from_raw(5)).unwrap();
        e.commit_pool(0, pool);
        e.commit_balance(0, 0, 0); // removes a balance
        e.commit_balance(1, 0, 7); // adds one
        e.commit_balance(1, 1, 9);
        e.commit_oracle(2, OraclePrice::first(Price::ONE, Price::ZERO, 0));
        e.journal.flags.push((0, false));
        e.set_below_maintenance(0, true);
        assert_ne!(e.state_hash(), before);
        e.roll_back();
        assert_eq!(e.state_hash(), before);
        e.check_invariants().unwrap();
    }
}
