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

use crate::engine::{balance_amount, AssetIdx, MarketIdx, RiskTable, SubAccount};
use crate::health::AssetRisk;
use crate::limits::{MAX_ASSETS, MAX_MARKETS};
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
            let without_price = |r: &MarketRisk| MarketRisk { oracle: None, ..*r };
            let same = self.markets.get(m).map(|old| {
                let same_partial = without_price(old) == without_price(risk);
                (same_partial, old.oracle == risk.oracle)
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
}
