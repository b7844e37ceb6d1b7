//! Incremental maintenance health: what the oracle hot path keeps between two evaluations of a sub-account.
//!
//! Maintenance health is a sum of separately rounded entries, one per balance and one per perp position
//! (`engine::maintenance_health`). An oracle update on BTC re-evaluates every holder of BTC, but it moves only the
//! entries that read BTC's price: the BTC balance and the positions in markets on BTC. So each entry keeps, as
//! derived state beside it:
//!
//! * its **contribution** (the entry's share of maintenance health), and
//! * its **price-independent part**: for a balance, its maintenance weight (which depends on the native amount,
//!   hence on the balance and its index, but not on the price: the size premium and weight steps, a square root
//!   and two divisions); for a position, its quote balance after pending funding and its maintenance ratio with the
//!   size premium, capped at 1 ([`MarketRisk::maintenance_parts`]).
//!
//! ## When a cached value may be used: keyed by its inputs
//!
//! An entry's contribution is a pure function of the entry itself (a balance's scaled units, a position's fields)
//! and of the fields of its asset's [`AssetRisk`] or its market's [`MarketRisk`] that the computation reads. Rather
//! than finding every place where one of those fields can change (a price, an accrual, a borrow index projected to
//! the command's second, a funding sample, a margin multiplier phasing in, `set_market_risk`, an open-interest move
//! that changes the initial ratio), the cache is keyed by the inputs themselves:
//!
//! * Every time the hot path builds a [`RiskTable`], [`Epochs::stamp`] compares each source's inputs with those of
//!   the previous table. A *source* is an asset's deposits, an asset's debts (they read different indices), or a
//!   market. Each source has two epochs: `partial` names one value of the inputs of the price-independent part, and
//!   `full` one value of all the inputs (partial ones and the price). When the inputs differ, the source gets a new
//!   epoch, a number never issued before.
//! * An entry stores the epoch its cached value was computed under. The value is used only while the source's
//!   current epoch is that epoch, that is, while the inputs are equal to those it was computed with.
//! * The entry's own data change only through `Engine::set_balance` and `Engine::set_perp` (roll-back included),
//!   which clear its cache.
//!
//! So a cached value is used only when a fresh computation would read exactly the same inputs, and it is then the
//! same value. Time is handled by the same rule: a debt's borrow index is projected to the command's second, so its
//! source gets a new epoch whenever a second has passed (with interest running); a market in a margin multiplier
//! phase gets one whenever the multiplier moves.
//!
//! Epochs are never issued twice, so a cache written by a command that is then rolled back is harmless: when its
//! inputs are restored, they are stamped with a new epoch, which no entry holds. Nothing here is journaled, hashed or
//! compared (`PartialEq` ignores it): it is a pure function of the state and its history of evaluations, and it never
//! changes a result.
//!
//! ## Same value, same error
//!
//! [`maintenance_health`] adds the entries in the same order, with the same checked additions, as
//! `engine::maintenance_health`, and each entry is either a cached value (equal, by the above, to a fresh one) or
//! computed by the same functions. Only successful results are cached: an entry whose computation fails is computed
//! again each time, so the first failing entry, and its error, are the same. `Engine::check_invariants` checks every
//! cached value that can still be used against a fresh computation, and debug builds compare every evaluation with
//! the uncached function.
//!
//! ## Holder rows: what one asset's update streams
//!
//! The entry caches live with their sub-account, in a heap block each, so an update of an asset held by a million
//! sub-accounts would chase a million pointers. Each asset therefore also keeps one [`HolderRow`] per spot holder,
//! in the order of its holder index: the holder's balance in the asset and its position on a market of the asset
//! (their price-independent parts), and `rest`, the sum of the contributions of its other entries. An update streams
//! that array; a row is used only while nothing it was built from has changed ([`HolderRows::evaluate`] gives the
//! conditions and why the result is then exact), and is otherwise rebuilt from the entry caches.

use crate::engine::{balance_amount, AssetIdx, MarketIdx, RiskTable, SubAccount};
use crate::health::AssetRisk;
use crate::limits::{
    MAX_ASSETS, MAX_BALANCES_PER_SUB_ACCOUNT, MAX_MARKETS, MAX_PERP_POSITIONS_PER_SUB_ACCOUNT,
};
use crate::perp::{MaintenanceParts, MarketRisk};
use ballast_num::{NumResult, Price, Quote, Ratio, TokenAmount};

/// One value of a source's inputs. 0 is never issued (a cleared cache holds it), nor is [`NEVER`].
pub(crate) type Epoch = u32;

/// The epochs of a source not stamped yet: no cache can hold it.
const NEVER: Epoch = Epoch::MAX;

/// The last epoch issued before every cache is cleared and numbering starts again (see [`Epochs::exhausted`]).
/// Small in unit tests, so that they go through the restart.
#[cfg(not(test))]
const EPOCH_MAX: Epoch = NEVER - 1;
#[cfg(test)]
const EPOCH_MAX: Epoch = 1 << 10;

/// Sources: an asset's deposits at `2 * asset`, its debts at `2 * asset + 1`, market `m` at `2 * MAX_ASSETS + m`.
const N_SOURCES: usize = 2 * MAX_ASSETS + MAX_MARKETS;
const _: () = assert!(N_SOURCES <= u16::MAX as usize);
const _: () = assert!(std::mem::size_of::<EntryCache>() == 64);

fn balance_source(asset: AssetIdx, scaled: i128) -> u16 {
    2 * asset + (scaled < 0) as u16
}

fn market_source(market: MarketIdx) -> u16 {
    (2 * MAX_ASSETS) as u16 + market
}

/// The cache of one entry of a sub-account (derived state): what it contributed to maintenance health at its last
/// evaluation, and its price-independent part. A sub-account keeps one per balance, then one per position, in the
/// order of `balances` and `perps`, so that re-evaluating it reads this one block and not the balances and positions
/// themselves, except for entries whose inputs other than the price changed.
///
/// 64 bytes: the contribution is kept in 64 bits (a contribution beyond 9.2 * 10^12 USD is simply not cached).
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntryCache {
    /// The entry's maintenance contribution (quote raw), valid under epoch `full` of its source.
    contribution: i64,
    /// Valid under epoch `partial`: a balance's native amount; a position's base (a copy).
    amount: i128,
    /// Valid under epoch `partial`: a balance's maintenance weight (ratio raw); a position's quote balance after
    /// pending funding (quote raw).
    part: i128,
    /// Valid under epoch `partial`: a position's maintenance ratio with the size premium, capped at 1 (ratio raw).
    ratio: u64,
    full: Epoch,
    partial: Epoch,
    /// The entry's source (an index into [`Epochs`]'s sources), fixed for the entry's life: the cache is replaced
    /// whenever the balance or position changes.
    source: u16,
}

impl EntryCache {
    /// An empty cache for a balance of `scaled` units of `asset`.
    pub(crate) fn balance(asset: AssetIdx, scaled: i128) -> EntryCache {
        Self::empty(balance_source(asset, scaled))
    }

    /// An empty cache for a position in `market`.
    pub(crate) fn position(market: MarketIdx) -> EntryCache {
        Self::empty(market_source(market))
    }

    /// The entry's source (read by `engine`'s batches to bring the cache into the processor's cache).
    #[inline]
    pub(crate) fn source_index(&self) -> u16 {
        self.source
    }

    fn empty(source: u16) -> EntryCache {
        EntryCache {
            contribution: 0,
            amount: 0,
            part: 0,
            ratio: 0,
            full: 0,
            partial: 0,
            source,
        }
    }
}

/// Caches are derived state: never part of a comparison, as they are not part of the state hash. Two engines that
/// reached the same state by different paths compare equal.
impl PartialEq for EntryCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for EntryCache {}

/// The two epochs of one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SourceEpochs {
    /// Names the inputs of the price-independent part.
    partial: Epoch,
    /// Names all the inputs.
    full: Epoch,
}

/// The current epochs of every source, and the inputs they name (derived state of the engine).
#[derive(Clone, Debug)]
pub(crate) struct Epochs {
    /// The last epoch issued.
    pub(crate) last: Epoch,
    sources: Vec<SourceEpochs>,
    /// The risks last stamped, by asset and by market: the inputs the current epochs name.
    assets: Vec<AssetRisk>,
    markets: Vec<MarketRisk>,
}

impl Default for Epochs {
    fn default() -> Epochs {
        Epochs {
            last: 0,
            sources: vec![
                SourceEpochs {
                    partial: NEVER,
                    full: NEVER
                };
                N_SOURCES
            ],
            assets: Vec::new(),
            markets: Vec::new(),
        }
    }
}

/// The inputs of a balance's amount and weight that come from its asset: everything [`balance_amount`] and
/// [`AssetRisk::maintenance_weight`] read, except the balance itself. `deposits` picks the index a balance of that
/// sign is valued with.
fn weight_inputs(risk: &AssetRisk, deposits: bool) -> (u8, Ratio, Ratio, Ratio, Ratio) {
    let index = if deposits {
        risk.supply_index
    } else {
        risk.borrow_index
    };
    (
        risk.decimals,
        risk.size_premium_factor,
        risk.maintenance_asset_weight,
        risk.maintenance_liability_weight,
        index,
    )
}

/// The price, the only other input of a balance's contribution ([`AssetRisk::maintenance_contribution`]).
fn price(risk: &AssetRisk) -> Option<Price> {
    risk.oracle.map(|o| o.price)
}

impl Epochs {
    /// Gives a source new epochs where its inputs changed (`None`: never stamped).
    fn restamp(&mut self, source: u16, same: Option<(bool, bool)>) {
        let (same_partial, same_price) = same.unwrap_or((false, false));
        let last = &mut self.last;
        let mut issue = || {
            *last += 1;
            *last
        };
        let epochs = &mut self.sources[source as usize];
        if !same_partial {
            epochs.partial = issue();
        }
        if !(same_partial && same_price) {
            epochs.full = issue();
        }
    }

    /// Stamping `table` might issue an epoch past [`EPOCH_MAX`]: the caller must clear every cache and start from
    /// `Epochs::default()` first. With 32-bit epochs this happens after about four billion input changes (weeks of
    /// a busy venue), and costs one pass over the sub-accounts.
    pub(crate) fn exhausted(&self, table: &RiskTable) -> bool {
        let most = 2 * (2 * table.assets.len() + table.markets.len());
        (EPOCH_MAX - self.last) as usize <= most
    }

    /// Names the inputs of `table`: every source whose inputs differ from the last stamped table's gets new epochs.
    pub(crate) fn stamp(&mut self, table: &RiskTable) {
        assert!(!self.exhausted(table), "epochs restarted before stamping");
        for (a, risk) in table.assets.iter().enumerate() {
            let stamped = self.assets.get(a).copied();
            for (scaled, deposits) in [(0, true), (-1, false)] {
                let same = stamped.map(|old| {
                    let same_partial =
                        weight_inputs(&old, deposits) == weight_inputs(risk, deposits);
                    (same_partial, price(&old) == price(risk))
                });
                self.restamp(balance_source(a as AssetIdx, scaled), same);
            }
            match self.assets.get_mut(a) {
                Some(old) => *old = *risk,
                None => self.assets.push(*risk),
            }
        }
        for (m, risk) in table.markets.iter().enumerate() {
            // Every field but the price enters the parts (or, through the general code, their errors).
            let same = self.markets.get(m).map(|old| {
                let same_partial = old.without_prices() == risk.without_prices();
                (same_partial, old.prices() == risk.prices())
            });
            self.restamp(market_source(m as MarketIdx), same);
            match self.markets.get_mut(m) {
                Some(old) => *old = *risk,
                None => self.markets.push(*risk),
            }
        }
    }
}

/// Clears a sub-account's caches (when epochs restart).
pub(crate) fn clear(sub: &mut SubAccount) {
    for entry in &mut sub.maintenance {
        *entry = EntryCache::empty(entry.source);
    }
}

/// `engine::maintenance_health(sub, table)`, exactly (same value, same error), using and refreshing the caches.
/// `epochs` must have stamped `table`.
#[inline]
pub(crate) fn maintenance_health(
    sub: &mut SubAccount,
    table: &RiskTable,
    epochs: &Epochs,
) -> NumResult<Quote> {
    if sub.margin == crate::engine::MarginKind::Portfolio {
        // Not a sum of entries: computed whole, never cached (its entries keep empty caches).
        return crate::engine::maintenance_health(sub, table);
    }
    let n_balances = sub.balances.len();
    let mut total = Quote::ZERO;
    for (i, entry) in sub.maintenance.iter_mut().enumerate() {
        let source = epochs.sources[entry.source as usize];
        let contribution = if entry.full == source.full {
            Quote::from_raw(entry.contribution as i128)
        } else {
            let contribution = if i < n_balances {
                balance_contribution(sub.balances[i].scaled, table, entry, source.partial)?
            } else {
                position_contribution(&sub.perps[i - n_balances], table, entry, source.partial)?
            };
            if let Ok(kept) = i64::try_from(contribution.raw()) {
                entry.contribution = kept;
                entry.full = source.full;
            }
            contribution
        };
        total = total.checked_add(contribution)?;
    }
    Ok(total)
}

/// `risk.maintenance_contribution(balance_amount(scaled, risk)?)`, exactly, with the amount and weight from the
/// cache when their inputs are unchanged (epoch `partial`), and stored there otherwise.
#[inline]
fn balance_contribution(
    scaled: i128,
    table: &RiskTable,
    entry: &mut EntryCache,
    partial: Epoch,
) -> NumResult<Quote> {
    let asset = entry.source / 2;
    let risk = &table.assets[asset as usize];
    let (amount, weight) = if entry.partial == partial {
        (
            TokenAmount::from_raw(entry.amount),
            Ratio::from_raw(entry.part),
        )
    } else {
        let amount = balance_amount(scaled, risk)?;
        let Some(_) = risk.oracle else {
            // No price: `maintenance_contribution` counts zero without a weight.
            return risk.maintenance_contribution(amount);
        };
        let weight = risk.maintenance_weight(amount)?;
        entry.amount = amount.raw();
        entry.part = weight.raw();
        entry.partial = partial;
        (amount, weight)
    };
    match &risk.oracle {
        None => Ok(Quote::ZERO),
        Some(o) => risk.maintenance_value(amount, o.price, weight),
    }
}

/// `risk.maintenance_contribution(position)`, exactly, with the position's [`MaintenanceParts`] from the cache
/// when their inputs are unchanged (epoch `partial`), and stored there otherwise when they can be (a ratio, not an
/// error). Whatever the parts cannot settle goes to `maintenance_contribution` itself, which then takes the same
/// path the uncached computation would have taken.
#[inline]
fn position_contribution(
    position: &crate::perp::PerpPosition,
    table: &RiskTable,
    entry: &mut EntryCache,
    partial: Epoch,
) -> NumResult<Quote> {
    let risk = &table.markets[position.market as usize];
    let Some(price) = risk.oracle else {
        return risk.maintenance_contribution(position);
    };
    let parts = if entry.partial == partial {
        Some(MaintenanceParts {
            quote: entry.part,
            ratio: Ok(entry.ratio as i128),
        })
    } else {
        match risk.maintenance_parts(position) {
            Some(
                parts @ MaintenanceParts {
                    ratio: Ok(ratio), ..
                },
            ) => {
                if let Ok(ratio) = u64::try_from(ratio) {
                    entry.amount = position.base.raw();
                    entry.part = parts.quote;
                    entry.ratio = ratio;
                    entry.partial = partial;
                }
                Some(parts)
            }
            _ => None,
        }
    };
    let base = TokenAmount::from_raw(entry.amount);
    match parts.and_then(|parts| risk.maintenance_at_price(base, &parts, price)) {
        Some(result) => result,
        None => risk.maintenance_contribution(position),
    }
}

/// Checks a sub-account's caches: one per balance and position, each for its entry's source, and every cached
/// value that can still be used (its epoch is its source's current one) equal to a fresh computation under the
/// inputs that epoch names; no cache holds an epoch not yet issued.
pub(crate) fn check(sub: &SubAccount, epochs: &Epochs) -> Result<(), String> {
    let sources = sub
        .balances
        .iter()
        .map(|b| balance_source(b.asset, b.scaled))
        .chain(sub.perps.iter().map(|p| market_source(p.market)));
    if !sources.eq(sub.maintenance.iter().map(|e| e.source)) {
        return Err("caches do not match the balances and positions".to_string());
    }
    let n_balances = sub.balances.len();
    for (i, entry) in sub.maintenance.iter().enumerate() {
        if entry.full > epochs.last || entry.partial > epochs.last {
            return Err(format!("entry {i}: epoch not yet issued"));
        }
        let source = epochs.sources[entry.source as usize];
        let (fresh_contribution, fresh_partial) = if i < n_balances {
            let b = &sub.balances[i];
            let Some(risk) = epochs.assets.get(b.asset as usize) else {
                continue; // never stamped, so no cache of it can be used
            };
            let amount = balance_amount(b.scaled, risk);
            let weight = amount.and_then(|a| risk.maintenance_weight(a));
            (
                amount.and_then(|a| risk.maintenance_contribution(a)),
                amount.and_then(|a| Ok((a.raw(), weight?.raw(), 0))),
            )
        } else {
            let p = &sub.perps[i - n_balances];
            let Some(risk) = epochs.markets.get(p.market as usize) else {
                continue;
            };
            let parts = risk
                .maintenance_parts(p)
                .and_then(|parts| Some((p.base.raw(), parts.quote, parts.ratio.ok()?)));
            (
                risk.maintenance_contribution(p),
                parts.ok_or(ballast_num::NumError::Domain { op: "no parts" }),
            )
        };
        if entry.full == source.full
            && fresh_contribution != Ok(Quote::from_raw(entry.contribution as i128))
        {
            return Err(format!(
                "entry {i}: cached contribution {} != fresh {fresh_contribution:?}",
                entry.contribution
            ));
        }
        let cached = (entry.amount, entry.part, entry.ratio as i128);
        if entry.partial == source.partial && fresh_partial != Ok(cached) {
            return Err(format!(
                "entry {i}: cached part {cached:?} != fresh {fresh_partial:?}"
            ));
        }
    }
    Ok(())
}

// ----- holder rows: what an update of one asset streams ---------------------------------------------------------
//
// The entry caches above live with their sub-account, in one heap block each: an update of an asset held by a
// million sub-accounts chases a million pointers, and memory latency bounds it. So each asset also keeps, in the
// order of its spot holder index (`Engine::holders`), one `HolderRow` per holder: exactly what an update of that
// asset's price reads. An update streams the asset's row array and the holder index in step, and reads from the
// sub-account only its margin flag.

/// A source's bit in a row's `rest_sources`: asset sources (`2 * asset`, `2 * asset + 1`) from bit 0 up, markets
/// from bit 63 down, so that a venue whose assets and markets have at most 64 sources in all gets one bit per source.
/// Beyond that sources share bits: a shared bit can only make a row look stale when it is not (it is then rebuilt),
/// never the other way round.
#[inline]
fn source_bit(source: u16) -> u64 {
    let s = source as usize;
    if s < 2 * MAX_ASSETS {
        1 << (s % 64)
    } else {
        1 << (63 - (s - 2 * MAX_ASSETS) % 64)
    }
}

/// No position on a market of the row's asset.
const NO_MARKET: u16 = u16::MAX;

/// One spot holder's row in its asset's row array (derived state, not hashed, not journaled): what an update of that
/// asset's price needs to re-evaluate the holder without reading the sub-account's own blocks.
///
/// * The holder's balance in the asset: its native amount and maintenance weight (the price-independent part of
///   its entry cache).
/// * Its position on a market of the asset, if any (at most one: a holder with two takes the general path): base,
///   quote after pending funding, capped maintenance ratio (the position's [`MaintenanceParts`]).
/// * `rest`: the sum of the contributions of every other entry of the sub-account (entries whose sources are
///   neither the asset's nor a market on it), and the bits of their sources.
///
/// 96 bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HolderRow {
    /// [`Epochs::last`] when the row was built; 0: the row is not usable (never built, or its sub-account's
    /// balances or positions changed since).
    valid_at: Epoch,
    /// The market of the position kept here, or [`NO_MARKET`].
    market: u16,
    /// The balance is a debt (its source is the asset's debts, not its deposits).
    debt: bool,
    /// The position's capped maintenance ratio (ratio raw, in `[0, 10^18]`).
    ratio: u64,
    /// [`source_bit`] of the source of every entry counted in `rest`.
    rest_sources: u64,
    /// The sum of the maintenance contributions of the other entries (quote raw); each of them fits in an `i64`.
    rest: i64,
    /// The balance's native amount, and its maintenance weight (ratio raw).
    amount: i128,
    weight: i128,
    /// The position's base, and its quote balance after pending funding (quote raw).
    base: i128,
    quote: i128,
}

const _: () = assert!(std::mem::size_of::<HolderRow>() == 96);
// With at most this many entries, each of at most `i64` magnitude, no partial sum overflows an `i128`, whatever the
// order of the additions (see `HolderRows::evaluate`).
const _: () = assert!(
    ((MAX_BALANCES_PER_SUB_ACCOUNT + MAX_PERP_POSITIONS_PER_SUB_ACCOUNT) as u128) << 63
        <= i128::MAX as u128
);

impl HolderRow {
    /// A row that is not usable: the holder takes the general path, which builds it.
    pub(crate) const EMPTY: HolderRow = HolderRow {
        valid_at: 0,
        market: NO_MARKET,
        debt: false,
        ratio: 0,
        rest_sources: 0,
        rest: 0,
        amount: 0,
        weight: 0,
        base: 0,
        quote: 0,
    };

    /// Marks the row not usable: its sub-account's balances or positions are changing.
    #[inline]
    pub(crate) fn invalidate(&mut self) {
        self.valid_at = 0;
    }
}

/// Is `source` one of `asset`'s own sources: its deposits, its debts, or a market on it?
#[inline]
fn own_source(asset: AssetIdx, source: u16, underlying: &[AssetIdx]) -> bool {
    match (source as usize).checked_sub(2 * MAX_ASSETS) {
        None => source / 2 == asset,
        Some(m) => underlying[m] == asset,
    }
}

/// One walk over the rows of an asset: the table and the epochs that stamped it, and a memo of which sources other
/// than the asset's own changed since a given epoch.
pub(crate) struct HolderRows<'a> {
    asset: AssetIdx,
    table: &'a RiskTable,
    epochs: &'a Epochs,
    /// Each market's underlying asset.
    underlying: &'a [AssetIdx],
    /// The bits of the sources, other than the asset's own, whose full epoch is after `dirty_since`.
    dirty_since: Epoch,
    dirty: u64,
}

impl<'a> HolderRows<'a> {
    /// A walk over `asset`'s rows under `table`, which `epochs` has stamped (the last table stamped).
    pub(crate) fn new(
        asset: AssetIdx,
        table: &'a RiskTable,
        epochs: &'a Epochs,
        underlying: &'a [AssetIdx],
    ) -> HolderRows<'a> {
        HolderRows {
            asset,
            table,
            epochs,
            underlying,
            dirty_since: NEVER,
            dirty: 0,
        }
    }

    /// The bits of the sources other than the asset's own whose inputs changed after epoch `since`: those whose
    /// current full epoch was issued after it (epochs are issued in increasing order and never twice).
    fn dirty_after(&mut self, since: Epoch) -> u64 {
        if since != self.dirty_since {
            self.dirty = changed_after(
                self.asset,
                since,
                self.epochs,
                self.table.assets.len(),
                self.underlying,
            );
            self.dirty_since = since;
        }
        self.dirty
    }

    /// The holder's maintenance health from its row alone, when the row is usable; `None` sends the holder to the
    /// general path (`maintenance_health` above, through the entry caches), which then rebuilds the row.
    ///
    /// **Exact.** The row is used only when (a) it was built (its sub-account's balances and positions have not
    /// changed since: `Engine::set_balance` and `Engine::set_perp` invalidate every row of the sub-account), (b) the
    /// partial epochs of the balance's source and of the position's market are not after `valid_at` (so the
    /// amount, weight and parts are those a fresh computation gives now), and (c) no source of a `rest` entry has a
    /// full epoch after `valid_at` (so each of those entries contributes what it did then). Then every entry of the
    /// sub-account succeeds: the rest entries did (only successful contributions are counted), the balance's value
    /// and the position's at-price step are computed here by the same functions the entry caches use, and any
    /// failure or fallback of theirs sends the holder to the general path. Every contribution fits in an `i64` and
    /// there are at most 16, so no partial sum overflows: the general code's checked sum, in its order, is the
    /// plain sum, whatever order it is taken in here.
    #[inline]
    pub(crate) fn evaluate(&mut self, row: &HolderRow) -> Option<Quote> {
        if row.valid_at == 0 {
            return None;
        }
        let sources = &self.epochs.sources;
        let balance_source = 2 * self.asset + row.debt as u16;
        if sources[balance_source as usize].partial > row.valid_at
            || (row.market != NO_MARKET
                && sources[market_source(row.market) as usize].partial > row.valid_at)
            || row.rest_sources & self.dirty_after(row.valid_at) != 0
        {
            return None;
        }
        let risk = &self.table.assets[self.asset as usize];
        let price = risk.oracle?.price;
        let balance = risk
            .maintenance_value(
                TokenAmount::from_raw(row.amount),
                price,
                Ratio::from_raw(row.weight),
            )
            .ok()?;
        let mut total = row.rest as i128 + i64::try_from(balance.raw()).ok()? as i128;
        if row.market != NO_MARKET {
            let market = &self.table.markets[row.market as usize];
            let parts = MaintenanceParts {
                quote: row.quote,
                ratio: Ok(row.ratio as i128),
            };
            let position = market
                .maintenance_at_price(TokenAmount::from_raw(row.base), &parts, market.oracle?)?
                .ok()?;
            total += i64::try_from(position.raw()).ok()? as i128;
        }
        Some(Quote::from_raw(total))
    }

    /// The row of `sub`, a spot holder of the asset, right after the general path evaluated it successfully (its
    /// entry caches hold the current values wherever they can): [`HolderRow::EMPTY`] unless every entry the row
    /// needs is cached under the current epochs.
    pub(crate) fn build(&self, sub: &SubAccount) -> HolderRow {
        if sub.margin == crate::engine::MarginKind::Portfolio {
            return HolderRow::EMPTY; // its health is not a sum of entries
        }
        let sources = &self.epochs.sources;
        let n_balances = sub.balances.len();
        let mut row = HolderRow::EMPTY;
        let mut has_balance = false;
        for (i, entry) in sub.maintenance.iter().enumerate() {
            let current = sources[entry.source as usize];
            if !own_source(self.asset, entry.source, self.underlying) {
                if entry.full != current.full {
                    return HolderRow::EMPTY;
                }
                let Some(rest) = row.rest.checked_add(entry.contribution) else {
                    return HolderRow::EMPTY;
                };
                row.rest = rest;
                row.rest_sources |= source_bit(entry.source);
            } else if entry.partial != current.partial {
                return HolderRow::EMPTY;
            } else if i < n_balances {
                row.amount = entry.amount;
                row.weight = entry.part;
                row.debt = entry.source % 2 == 1;
                has_balance = true;
            } else if row.market == NO_MARKET {
                row.market = entry.source - (2 * MAX_ASSETS) as u16;
                row.base = entry.amount;
                row.quote = entry.part;
                row.ratio = entry.ratio;
            } else {
                return HolderRow::EMPTY; // two positions on the asset: the general path
            }
        }
        if !has_balance || self.epochs.last == 0 {
            return HolderRow::EMPTY;
        }
        row.valid_at = self.epochs.last;
        row
    }
}

/// The bits of the sources, other than `asset`'s own, of the first `n_assets` assets and of the markets, whose full
/// epoch is after `since`.
fn changed_after(
    asset: AssetIdx,
    since: Epoch,
    epochs: &Epochs,
    n_assets: usize,
    underlying: &[AssetIdx],
) -> u64 {
    let asset_sources = 0..2 * n_assets as u16;
    let market_sources = (0..underlying.len() as MarketIdx).map(market_source);
    asset_sources
        .chain(market_sources)
        .filter(|&s| !own_source(asset, s, underlying) && epochs.sources[s as usize].full > since)
        .fold(0, |bits, s| bits | source_bit(s))
}

/// Checks the row of `sub` (a spot holder of `asset`): if it is usable under the current epochs (the conditions of
/// [`HolderRows::evaluate`]), everything it holds equals a fresh computation under the inputs the epochs name.
pub(crate) fn check_row(
    sub: &SubAccount,
    asset: AssetIdx,
    row: &HolderRow,
    epochs: &Epochs,
    underlying: &[AssetIdx],
) -> Result<(), String> {
    if row.valid_at == 0 {
        return Ok(());
    }
    if row.valid_at > epochs.last {
        return Err("row: epoch not yet issued".to_string());
    }
    let own_balance = 2 * asset + row.debt as u16;
    let stale = epochs.sources[own_balance as usize].partial > row.valid_at
        || (row.market != NO_MARKET
            && epochs.sources[market_source(row.market) as usize].partial > row.valid_at)
        || row.rest_sources
            & changed_after(asset, row.valid_at, epochs, epochs.assets.len(), underlying)
            != 0;
    if stale {
        return Ok(()); // never used again: the next walk rebuilds it
    }
    let mut rest = 0i128;
    let mut market = NO_MARKET;
    for b in &sub.balances {
        let risk = epochs
            .assets
            .get(b.asset as usize)
            .ok_or("row: asset never stamped")?;
        let amount = balance_amount(b.scaled, risk).map_err(|e| format!("row: {e}"))?;
        if b.asset == asset {
            let weight = risk
                .maintenance_weight(amount)
                .map_err(|e| format!("row: {e}"))?;
            if (b.scaled < 0) != row.debt
                || (amount.raw(), weight.raw()) != (row.amount, row.weight)
            {
                return Err(format!(
                    "row: balance ({}, {}) != fresh ({amount}, {weight})",
                    row.amount, row.weight
                ));
            }
        } else {
            let c = risk
                .maintenance_contribution(amount)
                .map_err(|e| format!("row: {e}"))?;
            if row.rest_sources & source_bit(balance_source(b.asset, b.scaled)) == 0 {
                return Err(format!("row: source of asset {} not in the rest", b.asset));
            }
            rest += c.raw();
        }
    }
    for p in &sub.perps {
        let risk = epochs
            .markets
            .get(p.market as usize)
            .ok_or("row: market never stamped")?;
        if underlying[p.market as usize] == asset {
            let parts = risk.maintenance_parts(p);
            let expected = MaintenanceParts {
                quote: row.quote,
                ratio: Ok(row.ratio as i128),
            };
            if market != NO_MARKET
                || p.market != row.market
                || p.base.raw() != row.base
                || parts != Some(expected)
            {
                return Err(format!("row: position in market {} differs", p.market));
            }
            market = p.market;
        } else {
            let c = risk
                .maintenance_contribution(p)
                .map_err(|e| format!("row: {e}"))?;
            if row.rest_sources & source_bit(market_source(p.market)) == 0 {
                return Err(format!("row: market {} not in the rest", p.market));
            }
            rest += c.raw();
        }
    }
    if market != row.market {
        return Err("row: position missing".to_string());
    }
    if rest != row.rest as i128 {
        return Err(format!("row: rest {} != fresh {rest}", row.rest));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, CommandKind, MarginSpec};
    use crate::{Engine, ProtocolConfig};
    use ballast_num::Price;

    /// Many price updates, with a debt whose index moves every second, run the epochs out (`EPOCH_MAX` is small in
    /// tests) several times. After every command, debug builds check each cache against a fresh computation and
    /// each evaluation against the uncached function (`Engine::check_invariants`, `check_crossing`).
    #[test]
    fn caches_stay_exact_across_epoch_restarts() {
        let text = include_str!("../../../examples/protocol.toml");
        let mut e = Engine::new(ProtocolConfig::from_toml("protocol.toml", text).unwrap(), 0);
        let mut t = 0;
        let apply = |e: &mut Engine, t: u64, kind: CommandKind| {
            e.apply(&Command { timestamp: t, kind })
                .unwrap_or_else(|r| panic!("{r}"))
        };
        let price = |asset: &str, p: &str, t: u64| CommandKind::OraclePrice {
            asset: asset.into(),
            price: p.parse::<Price>().unwrap(),
            confidence: Price::ZERO,
            publish_time: t,
        };
        for (asset, p) in [("USDC", "1"), ("BTC", "60000"), ("ETH", "3000")] {
            apply(&mut e, t, price(asset, p, t));
        }
        apply(&mut e, t, CommandKind::CreateAccount { owner: 1 });
        for _ in 0..2 {
            apply(
                &mut e,
                t,
                CommandKind::OpenSubAccount {
                    owner: 1,
                    margin: MarginSpec::Cross,
                },
            );
        }
        for (id, asset, amount) in [(0, "USDC", "10000"), (0, "BTC", "0.5"), (1, "ETH", "10")] {
            apply(
                &mut e,
                t,
                CommandKind::Deposit {
                    sub_account: id,
                    asset: asset.into(),
                    amount: amount.parse().unwrap(),
                },
            );
        }
        apply(
            &mut e,
            t,
            CommandKind::Withdraw {
                sub_account: 1,
                asset: "USDC".into(),
                amount: "5000".parse().unwrap(),
                reduce_only: false,
            },
        );
        let (mut restarts, mut last) = (0, 0);
        for i in 0..600 {
            t += 1;
            let p = if i % 2 == 0 { "50000" } else { "61000" };
            apply(&mut e, t, price("BTC", p, t));
            apply(
                &mut e,
                t,
                price("ETH", if i % 3 == 0 { "2000" } else { "3100" }, t),
            );
            restarts += (e.epochs.last < last) as u32;
            last = e.epochs.last;
        }
        assert!(restarts >= 2, "{restarts} restarts");
        e.check_invariants().unwrap();
    }

    /// Holder rows are used, stay exact and are rebuilt when they must be: spot holders of BTC with and without a
    /// BTC-PERP position, a debt whose index moves every second, a holder of BTC-PERP without BTC, and between the
    /// BTC updates fills, deposits and ETH prices that change other entries. Debug builds compare every row
    /// evaluation with the uncached function, and `check_invariants` checks every usable row after each command.
    #[test]
    fn holder_rows_are_used_and_stay_exact() {
        use crate::command::Side;
        let text = include_str!("../../../examples/protocol.toml");
        let mut e = Engine::new(ProtocolConfig::from_toml("protocol.toml", text).unwrap(), 0);
        let apply = |e: &mut Engine, t: u64, kind: CommandKind| {
            e.apply(&Command { timestamp: t, kind })
                .unwrap_or_else(|r| panic!("{r}"))
        };
        let price = |asset: &str, p: &str, t: u64| CommandKind::OraclePrice {
            asset: asset.into(),
            price: p.parse::<Price>().unwrap(),
            confidence: Price::ZERO,
            publish_time: t,
        };
        let deposit = |id: u32, asset: &str, amount: &str| CommandKind::Deposit {
            sub_account: id,
            asset: asset.into(),
            amount: amount.parse().unwrap(),
        };
        let fill = |market: &str, taker: u32, maker: u32, side: Side, size: &str, p: &str| {
            CommandKind::PerpFill {
                market: market.into(),
                taker,
                maker,
                side,
                size: size.parse().unwrap(),
                price: p.parse().unwrap(),
            }
        };
        let mut t = 0;
        for (asset, p) in [("USDC", "1"), ("BTC", "60000"), ("ETH", "3000")] {
            apply(&mut e, t, price(asset, p, t));
        }
        for owner in 1..=4 {
            apply(&mut e, t, CommandKind::CreateAccount { owner });
            apply(
                &mut e,
                t,
                CommandKind::OpenSubAccount {
                    owner,
                    margin: MarginSpec::Cross,
                },
            );
        }
        for (id, asset, amount) in [
            (0, "USDC", "20000"),
            (0, "BTC", "0.5"),
            (1, "USDC", "20000"),
            (1, "BTC", "0.2"),
            (2, "BTC", "1"),
            (3, "USDC", "30000"),
        ] {
            apply(&mut e, t, deposit(id, asset, amount));
        }
        apply(
            &mut e,
            t,
            CommandKind::Withdraw {
                sub_account: 2,
                asset: "USDC".into(),
                amount: "5000".parse().unwrap(),
                reduce_only: false,
            },
        );
        apply(&mut e, t, fill("BTC-PERP", 0, 1, Side::Buy, "0.3", "60000"));
        apply(&mut e, t, fill("ETH-PERP", 0, 1, Side::Sell, "2", "3000"));
        apply(&mut e, t, fill("BTC-PERP", 3, 1, Side::Buy, "0.1", "60000"));
        let btc = e.asset_index("BTC").unwrap();
        let mut used = 0;
        for i in 0..40u64 {
            t += 1;
            let p = ["52000", "61000", "58000"][i as usize % 3];
            apply(&mut e, t, price("BTC", p, t));
            // Right after an update every BTC holder's row has been built; all but the debtor's (its USDC debt's
            // index moves every second) are usable until something changes.
            let table = e.all_risks(t).unwrap();
            let mut rows = super::HolderRows::new(btc, &table, &e.epochs, &e.market_underlying);
            for (slot, &id) in e.holders[btc as usize].iter().enumerate() {
                let row = &e.holder_rows[btc as usize][slot];
                assert!(row.valid_at != 0, "sub-account {id}: row built");
                used += rows.evaluate(row).is_some() as u32;
            }
            match i % 5 {
                1 => drop(apply(&mut e, t, deposit(0, "USDC", "10"))),
                2 => drop(apply(
                    &mut e,
                    t,
                    price("ETH", ["2900", "3100"][i as usize % 2], t),
                )),
                3 => drop(apply(
                    &mut e,
                    t,
                    fill("ETH-PERP", 1, 0, Side::Sell, "0.1", "3000"),
                )),
                _ => {}
            }
        }
        assert!(used >= 40, "rows used {used} times");
        e.check_invariants().unwrap();
    }
}
