//! Snapshots: the whole persistent state as bytes, and an engine rebuilt from them.
//!
//! A snapshot is exactly the byte string the state hash hashes: [`Engine::snapshot`] and [`Engine::state_hash`] run
//! one walk over the state (`crate::hash`), the first into a byte vector, the second into SHA-256. So
//! `sha256(engine.snapshot())` is `engine.state_hash()` by construction, and a snapshot holds every hashed field and
//! nothing else. [`Engine::from_snapshot`] decodes the same walk, validates it, and rebuilds every piece of derived
//! state through the paths commands use.
//!
//! ## Format
//!
//! Integers are little-endian: `u64` is 8 bytes, `i128` 16 bytes (two's complement); a `bool` is one byte, 0 or 1.
//! `bytes` is a `u64` length followed by that many bytes. A `json` field is `bytes` holding the compact JSON
//! (`serde_json`, fields in declaration order) of a configuration type. `option<T>` is a `bool` (present) followed by
//! `T` when true. A sequence is a `u64` count followed by its items. Fixed-point values (`Price`, `Quote`, `Ratio`,
//! `TokenAmount`) are their raw `i128`. In order:
//!
//! 1. format tag: `bytes`, the ASCII of [`STATE_HASH_FORMAT`];
//! 2. `now_s: u64` (sequencer time of the last applied command), `applied: u64` (commands applied);
//! 3. `json` [`ProtocolSection`], `json` list of [`TierConfig`], `json` portfolio-margin grid
//!    ([`PortfolioMarginConfig`] or `null`);
//! 4. asset count `u64` (at most [`MAX_ASSETS`], at least one), quote asset index `u64`, then per asset in listing
//!    order: `json` [`AssetConfig`]; its pool: `deposits_scaled`, `borrows_scaled`, `supply_index`, `borrow_index`
//!    (`i128` each), `last_accrual_s: u64`, then `vault`, `treasury_scaled`, `insurance_scaled`,
//!    `insurance_shares`, `bad_debt_covered`, `socialized_loss`, `withdrawals_paused_until_s` (widened to `i128`),
//!    `rounding_surplus`, `total_in`, `total_out` (`i128` each); its oracle, `option` of (`price: i128`,
//!    `confidence: i128`, `publish_time_s: u64`, `reference: i128`);
//! 5. `json` list of [`PerpTierConfig`];
//! 6. market count `u64` (at most [`MAX_MARKETS`]), then per market in listing order: `json` [`MarketConfig`],
//!    `open_interest`, `funding_index` (`i128`), `last_funding_s: u64`, `funding_rate: i128`,
//!    `funding_rate_until_s: u64`, `fees_collected`, `insurance_collected`, `funding_dust`, `claims_written_off`,
//!    `insurance_paid`, `socialized_loss` (`i128` each), `withdrawals_paused_until_s: u64`, `reduce_only: bool`,
//!    `paused: bool`, `multiplier_from`, `multiplier_to` (`i128`), `phase_start_s`, `phase_s` (`u64`),
//!    `mark_vol: i128`, `settlement_price: option<i128>`;
//! 7. insurance stakes: count, then per stake in (sub-account, asset) order: sub-account `u64`, asset `u64`,
//!    `shares`, `unstake_shares` (`i128`), `unstake_requested_s: u64`;
//! 8. counterparty pool: its sub-account `option<u64>`, `total_shares: i128`; providers' shares: count, then per
//!    provider in sub-account order: sub-account `u64`, shares `i128`;
//! 9. withdrawal pauses: count, then sub-account `u64` and until `u64` in sub-account order;
//! 10. liquidators: count, then sub-account `u64` each, ascending;
//! 11. owners: count (at most [`MAX_OWNERS`]), then per owner ascending: owner `u64`, count of its sub-accounts (at
//!     most [`MAX_SUB_ACCOUNTS_PER_OWNER`]), their ids `u64`, ascending;
//! 12. sub-accounts: count (at most [`MAX_SUB_ACCOUNTS`]), then per sub-account in id order: owner `u64`; margin
//!     `u64` (`u64::MAX` cross, `u64::MAX - 1` portfolio, otherwise isolated on that asset index);
//!     `below_maintenance: bool`; balances: count (at most [`MAX_BALANCES_PER_SUB_ACCOUNT`]), then asset `u64` and
//!     scaled units `i128` (non-zero), strictly ascending by asset; positions: count (at most
//!     [`MAX_PERP_POSITIONS_PER_SUB_ACCOUNT`]), then market `u64`, `base`, `quote`, `funding_snapshot` (`i128`),
//!     strictly ascending by market, never both base and quote zero.
//!
//! Nothing follows the last sub-account.
//!
//! ## Versioning
//!
//! The format tag is the version: any change to the walk changes the state hash, so it must bump
//! [`STATE_HASH_FORMAT`], and a snapshot with another tag is refused ([`SnapshotError::FormatTag`]); converting an
//! old snapshot means replaying the command log.
//!
//! ## What restoring checks
//!
//! Every length is bounded by the engine's limits (`crate::limits`) and by the bytes left before anything is
//! allocated. Indices must name a listed asset, market or sub-account; keyed sequences must be strictly ascending;
//! the configuration must pass the protocol file's rules ([`ProtocolConfig::from_file`]); owners and sub-accounts
//! must name each other; oracle prices, volatilities and settlement prices must be in the ranges commands accept,
//! and times the engine sets from a command's timestamp (accrual, funding, phase start, publish) not after `now_s`.
//! Then the engine is rebuilt and must pass [`Engine::check_invariants`] (conservation, the zero-sum of every
//! market, health ordering), and re-encoding it must give back the input byte for byte (so a snapshot with, say,
//! JSON spelled differently is refused rather than restored under another hash). Any failure is a typed
//! [`SnapshotError`]; no input panics.
//!
//! Derived state is rebuilt, not stored: holder indexes and rows, maintenance caches, margin flag bits and market
//! holder sets through the setters commands use (`Engine::restore_sub_account`); symbol maps and market underlyings
//! by [`Engine::new`]. Caches start empty, as in a new engine, so the first evaluation computes them afresh.

use crate::config::{
    AssetConfig, ConfigErrors, MarketConfig, PerpTierConfig, ProtocolConfig, ProtocolFile,
    ProtocolSection, TierConfig,
};
use crate::engine::{AssetIdx, Engine, MarginKind, MarketIdx, Stake, POOL_OWNER};
use crate::hash::STATE_HASH_FORMAT;
use crate::limits::{
    MAX_ASSETS, MAX_BALANCES_PER_SUB_ACCOUNT, MAX_MARKETS, MAX_OWNERS,
    MAX_PERP_POSITIONS_PER_SUB_ACCOUNT, MAX_PRICE, MAX_SUB_ACCOUNTS, MAX_SUB_ACCOUNTS_PER_OWNER,
};
use crate::option::MAX_MARK_VOL;
use crate::oracle::OraclePrice;
use crate::perp::{Market, PerpPosition};
use crate::pool::Pool;
use crate::portfolio::PortfolioMarginConfig;
use crate::SubAccountId;
use ballast_num::{Price, Quote, Ratio, TokenAmount};
use std::fmt;

/// Largest configuration JSON part a snapshot may hold, bytes (a market or asset configuration is well under 2 KiB;
/// the protocol section's tier list is bounded by this too).
pub const MAX_CONFIG_JSON_BYTES: usize = 1 << 20;

/// Why a snapshot was refused. Offsets are byte positions in the snapshot where the offending field starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The snapshot does not start with this version's format tag (`found`: what it starts with, lossily as text).
    FormatTag { found: String },
    /// The input ends inside `field`, which starts at `offset` and needs `needed` bytes where `left` remain.
    Truncated {
        offset: usize,
        field: String,
        needed: u128,
        left: usize,
    },
    /// `count` bytes follow the last field, from `offset`.
    TrailingBytes { offset: usize, count: usize },
    /// `field` holds `value`, which breaks `rule`.
    OutOfRange {
        offset: usize,
        field: String,
        value: String,
        rule: String,
    },
    /// Entries of `field` are not in strictly ascending key order.
    Unsorted { offset: usize, field: String },
    /// A configuration part is not valid JSON of its type.
    ConfigJson {
        offset: usize,
        part: String,
        message: String,
    },
    /// The configuration parts decode but break the protocol file's rules.
    Config(ConfigErrors),
    /// The fields decode but together break a rule of the state (ownership, conservation, an invariant).
    Inconsistent { message: String },
    /// The snapshot decodes to a state whose own encoding differs from it, first at byte `offset`.
    NotCanonical { offset: usize },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::FormatTag { found } => write!(
                f,
                "snapshot format tag is {found:?}, this engine reads {STATE_HASH_FORMAT:?}"
            ),
            SnapshotError::Truncated {
                offset,
                field,
                needed,
                left,
            } => write!(
                f,
                "snapshot truncated: {field} at byte {offset} needs {needed} bytes, {left} remain"
            ),
            SnapshotError::TrailingBytes { offset, count } => {
                write!(f, "snapshot has {count} trailing bytes from byte {offset}")
            }
            SnapshotError::OutOfRange {
                offset,
                field,
                value,
                rule,
            } => write!(f, "snapshot byte {offset}: {field} is {value}: {rule}"),
            SnapshotError::Unsorted { offset, field } => write!(
                f,
                "snapshot byte {offset}: {field} not in strictly ascending order"
            ),
            SnapshotError::ConfigJson {
                offset,
                part,
                message,
            } => write!(f, "snapshot byte {offset}: {part} is not valid: {message}"),
            SnapshotError::Config(errors) => {
                write!(f, "snapshot configuration breaks a rule: ")?;
                for (i, e) in errors.0.iter().enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
            SnapshotError::Inconsistent { message } => {
                write!(f, "snapshot state is inconsistent: {message}")
            }
            SnapshotError::NotCanonical { offset } => write!(
                f,
                "snapshot is not in canonical form: its state re-encodes differently from byte {offset}"
            ),
        }
    }
}

impl std::error::Error for SnapshotError {}

type Result<T> = std::result::Result<T, SnapshotError>;

fn inconsistent(message: impl Into<String>) -> SnapshotError {
    SnapshotError::Inconsistent {
        message: message.into(),
    }
}

/// Reads the walk's primitive values, each at the current offset.
struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize, field: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(SnapshotError::Truncated {
                offset: self.pos,
                field: field(),
                needed: n as u128,
                left,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u64(&mut self, field: &dyn Fn() -> String) -> Result<u64> {
        let b = self.take(8, field)?;
        Ok(u64::from_le_bytes(b.try_into().expect("eight bytes")))
    }

    fn i128(&mut self, field: &dyn Fn() -> String) -> Result<i128> {
        let b = self.take(16, field)?;
        Ok(i128::from_le_bytes(b.try_into().expect("sixteen bytes")))
    }

    fn bool(&mut self, field: &dyn Fn() -> String) -> Result<bool> {
        let offset = self.pos;
        match self.take(1, field)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(SnapshotError::OutOfRange {
                offset,
                field: field(),
                value: v.to_string(),
                rule: "a bool is 0 or 1".into(),
            }),
        }
    }

    /// A count of at most `max` items of at least `min_item_bytes` each: refused before anything is allocated if
    /// the bytes left cannot hold them.
    fn count(
        &mut self,
        field: &dyn Fn() -> String,
        max: usize,
        min_item_bytes: usize,
    ) -> Result<usize> {
        let offset = self.pos;
        let n = self.u64(field)?;
        if n > max as u64 {
            return Err(SnapshotError::OutOfRange {
                offset,
                field: field(),
                value: n.to_string(),
                rule: format!("the limit is {max}"),
            });
        }
        let needed = n as u128 * min_item_bytes as u128;
        let left = self.bytes.len() - self.pos;
        if needed > left as u128 {
            return Err(SnapshotError::Truncated {
                offset,
                field: field(),
                needed,
                left,
            });
        }
        Ok(n as usize)
    }

    /// A length-prefixed byte string of at most `max` bytes.
    fn bytes(&mut self, field: &dyn Fn() -> String, max: usize) -> Result<&'a [u8]> {
        let n = self.count(field, max, 1)?;
        self.take(n, field)
    }

    /// An index below `count` (an asset, a market).
    fn index(&mut self, field: &dyn Fn() -> String, count: usize, what: &str) -> Result<u16> {
        let offset = self.pos;
        let v = self.u64(field)?;
        if v >= count as u64 {
            return Err(SnapshotError::OutOfRange {
                offset,
                field: field(),
                value: v.to_string(),
                rule: format!("{count} {what} are listed"),
            });
        }
        Ok(v as u16)
    }

    /// A sub-account id (checked against the sub-account count once that is read).
    fn sub_account_id(&mut self, field: &dyn Fn() -> String) -> Result<(usize, SubAccountId)> {
        let offset = self.pos;
        let v = self.u64(field)?;
        if v >= MAX_SUB_ACCOUNTS as u64 {
            return Err(SnapshotError::OutOfRange {
                offset,
                field: field(),
                value: v.to_string(),
                rule: format!("sub-account ids are below {MAX_SUB_ACCOUNTS}"),
            });
        }
        Ok((offset, v as SubAccountId))
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self, part: &dyn Fn() -> String) -> Result<T> {
        let offset = self.pos;
        let text = self.bytes(part, MAX_CONFIG_JSON_BYTES)?;
        serde_json::from_slice(text).map_err(|e| SnapshotError::ConfigJson {
            offset,
            part: part(),
            message: e.to_string(),
        })
    }
}

/// A field name, built only when an error needs it.
macro_rules! name {
    ($($arg:tt)*) => {
        &|| format!($($arg)*)
    };
}

fn out_of_range(
    offset: usize,
    field: String,
    value: impl fmt::Display,
    rule: &str,
) -> SnapshotError {
    SnapshotError::OutOfRange {
        offset,
        field,
        value: value.to_string(),
        rule: rule.to_string(),
    }
}

/// A price an oracle may publish: positive and at most [`MAX_PRICE`].
fn check_price(offset: usize, field: String, p: Price) -> Result<Price> {
    if !p.is_positive() || p > MAX_PRICE {
        return Err(out_of_range(
            offset,
            field,
            p,
            "an oracle price is positive and at most MAX_PRICE",
        ));
    }
    Ok(p)
}

/// A time the engine set from a command's timestamp: never after the engine's time.
fn not_after_now(offset: usize, field: impl Fn() -> String, time_s: u64, now_s: u64) -> Result<()> {
    if time_s > now_s {
        return Err(out_of_range(
            offset,
            field(),
            time_s,
            &format!("it is set at a command's time, so it is not after now_s {now_s}"),
        ));
    }
    Ok(())
}

/// A sub-account as the walk holds it, before it is rebuilt.
struct SubRecord {
    owner: u64,
    margin: MarginKind,
    below_maintenance: bool,
    balances: Vec<(AssetIdx, i128)>,
    perps: Vec<PerpPosition>,
}

impl Engine {
    /// Rebuilds an engine from [`Engine::snapshot`]'s bytes (format in [`crate::snapshot`]). The result has the
    /// same [`Engine::state_hash`] as the engine the snapshot was taken of and applies every later command the same
    /// way. Any input that is not such a snapshot is refused with a [`SnapshotError`] naming the field and rule.
    pub fn from_snapshot(bytes: &[u8]) -> std::result::Result<Engine, SnapshotError> {
        let mut d = Decoder { bytes, pos: 0 };
        let tag_len = STATE_HASH_FORMAT.len();
        let tag = d.bytes(name!("format tag"), 64).map_err(|_| {
            let end = bytes.len().min(8 + tag_len);
            SnapshotError::FormatTag {
                found: String::from_utf8_lossy(&bytes[bytes.len().min(8)..end]).into_owned(),
            }
        })?;
        if tag != STATE_HASH_FORMAT.as_bytes() {
            return Err(SnapshotError::FormatTag {
                found: String::from_utf8_lossy(tag).into_owned(),
            });
        }
        let now_s = d.u64(name!("now_s"))?;
        let applied = d.u64(name!("applied"))?;
        let protocol: ProtocolSection = d.json(name!("protocol section"))?;
        let tiers: Vec<TierConfig> = d.json(name!("tier list"))?;
        let grid: Option<PortfolioMarginConfig> = d.json(name!("portfolio margin grid"))?;

        let offset = d.pos;
        let n_assets = d.count(name!("asset count"), MAX_ASSETS, 8 + 14 * 16 + 8 + 1)?;
        if n_assets == 0 {
            return Err(out_of_range(
                offset,
                "asset count".into(),
                0,
                "at least one asset is listed",
            ));
        }
        let quote_offset = d.pos;
        let quote_asset = d.index(name!("quote asset"), n_assets, "assets")?;
        let mut assets = Vec::with_capacity(n_assets);
        let mut pools = Vec::with_capacity(n_assets);
        let mut oracles = Vec::with_capacity(n_assets);
        for a in 0..n_assets {
            let asset: AssetConfig = d.json(name!("asset {a} configuration"))?;
            let mut i = |field: &'static str| d.i128(name!("asset {a} pool {field}"));
            let deposits_scaled = i("deposits_scaled")?;
            let borrows_scaled = i("borrows_scaled")?;
            let supply_index = Ratio::from_raw(i("supply_index")?);
            let borrow_index = Ratio::from_raw(i("borrow_index")?);
            let offset = d.pos;
            let last_accrual_s = d.u64(name!("asset {a} pool last_accrual_s"))?;
            not_after_now(
                offset,
                || format!("asset {a} pool last_accrual_s"),
                last_accrual_s,
                now_s,
            )?;
            let mut i = |field: &'static str| d.i128(name!("asset {a} pool {field}"));
            let vault = TokenAmount::from_raw(i("vault")?);
            let treasury_scaled = i("treasury_scaled")?;
            let insurance_scaled = i("insurance_scaled")?;
            let insurance_shares = i("insurance_shares")?;
            let bad_debt_covered = TokenAmount::from_raw(i("bad_debt_covered")?);
            let socialized_loss = TokenAmount::from_raw(i("socialized_loss")?);
            let pause_offset = d.pos;
            let paused = d.i128(name!("asset {a} pool withdrawals_paused_until_s"))?;
            let withdrawals_paused_until_s = u64::try_from(paused).map_err(|_| {
                out_of_range(
                    pause_offset,
                    format!("asset {a} pool withdrawals_paused_until_s"),
                    paused,
                    "a time in seconds fits in a u64",
                )
            })?;
            let mut i = |field: &'static str| d.i128(name!("asset {a} pool {field}"));
            let rounding_surplus = i("rounding_surplus")?;
            let total_in = TokenAmount::from_raw(i("total_in")?);
            let total_out = TokenAmount::from_raw(i("total_out")?);
            if !supply_index.is_positive() || !borrow_index.is_positive() {
                return Err(inconsistent(format!(
                    "asset {a} pool: indices must be positive (supply {supply_index}, borrow {borrow_index})"
                )));
            }
            pools.push(Pool {
                deposits_scaled,
                borrows_scaled,
                supply_index,
                borrow_index,
                last_accrual_s,
                vault,
                treasury_scaled,
                insurance_scaled,
                insurance_shares,
                bad_debt_covered,
                socialized_loss,
                withdrawals_paused_until_s,
                rounding_surplus,
                total_in,
                total_out,
            });
            let oracle = if d.bool(name!("asset {a} oracle present"))? {
                let offset = d.pos;
                let price = Price::from_raw(d.i128(name!("asset {a} oracle price"))?);
                let price = check_price(offset, format!("asset {a} oracle price"), price)?;
                let offset = d.pos;
                let confidence = Price::from_raw(d.i128(name!("asset {a} oracle confidence"))?);
                if confidence.is_negative() || confidence > price {
                    return Err(out_of_range(
                        offset,
                        format!("asset {a} oracle confidence"),
                        confidence,
                        "a confidence is between 0 and the price",
                    ));
                }
                let offset = d.pos;
                let publish_time_s = d.u64(name!("asset {a} oracle publish_time_s"))?;
                if publish_time_s > now_s {
                    return Err(out_of_range(
                        offset,
                        format!("asset {a} oracle publish_time_s"),
                        publish_time_s,
                        "a price is published no later than the engine's time",
                    ));
                }
                let offset = d.pos;
                let reference = Price::from_raw(d.i128(name!("asset {a} oracle reference"))?);
                let reference =
                    check_price(offset, format!("asset {a} oracle reference"), reference)?;
                Some(OraclePrice {
                    price,
                    confidence,
                    publish_time_s,
                    reference,
                })
            } else {
                None
            };
            assets.push(asset);
            oracles.push(oracle);
        }
        let perp_tiers: Vec<PerpTierConfig> = d.json(name!("perp tier list"))?;

        let n_markets = d.count(name!("market count"), MAX_MARKETS, 8)?;
        let mut market_configs = Vec::with_capacity(n_markets);
        let mut markets = Vec::with_capacity(n_markets);
        for m in 0..n_markets {
            let config: MarketConfig = d.json(name!("market {m} configuration"))?;
            let mut i = |field: &'static str| d.i128(name!("market {m} {field}"));
            let open_interest = TokenAmount::from_raw(i("open_interest")?);
            let funding_index = Price::from_raw(i("funding_index")?);
            let offset = d.pos;
            let last_funding_s = d.u64(name!("market {m} last_funding_s"))?;
            not_after_now(
                offset,
                || format!("market {m} last_funding_s"),
                last_funding_s,
                now_s,
            )?;
            let funding_rate = Ratio::from_raw(d.i128(name!("market {m} funding_rate"))?);
            let funding_rate_until_s = d.u64(name!("market {m} funding_rate_until_s"))?;
            let mut i = |field: &'static str| d.i128(name!("market {m} {field}"));
            let fees_collected = Quote::from_raw(i("fees_collected")?);
            let insurance_collected = Quote::from_raw(i("insurance_collected")?);
            let funding_dust = i("funding_dust")?;
            let claims_written_off = Quote::from_raw(i("claims_written_off")?);
            let insurance_paid = Quote::from_raw(i("insurance_paid")?);
            let socialized_loss = Quote::from_raw(i("socialized_loss")?);
            let withdrawals_paused_until_s =
                d.u64(name!("market {m} withdrawals_paused_until_s"))?;
            let reduce_only = d.bool(name!("market {m} reduce_only"))?;
            let paused = d.bool(name!("market {m} paused"))?;
            let multiplier_from = Ratio::from_raw(d.i128(name!("market {m} multiplier_from"))?);
            let multiplier_to = Ratio::from_raw(d.i128(name!("market {m} multiplier_to"))?);
            let offset = d.pos;
            let phase_start_s = d.u64(name!("market {m} phase_start_s"))?;
            not_after_now(
                offset,
                || format!("market {m} phase_start_s"),
                phase_start_s,
                now_s,
            )?;
            let phase_s = d.u64(name!("market {m} phase_s"))?;
            let offset = d.pos;
            let mark_vol = Ratio::from_raw(d.i128(name!("market {m} mark_vol"))?);
            let vol_ok = match config.option {
                Some(_) => mark_vol.is_positive() && mark_vol <= MAX_MARK_VOL,
                None => mark_vol == Ratio::ZERO,
            };
            if !vol_ok {
                return Err(out_of_range(
                    offset,
                    format!("market {m} mark_vol"),
                    mark_vol,
                    "an option series' volatility is above 0 and at most MAX_MARK_VOL; a perp's is 0",
                ));
            }
            let settlement_price = if d.bool(name!("market {m} settlement price present"))? {
                let offset = d.pos;
                let p = Price::from_raw(d.i128(name!("market {m} settlement price"))?);
                if config.option.is_none() {
                    return Err(out_of_range(
                        offset,
                        format!("market {m} settlement price"),
                        p,
                        "only an option series settles",
                    ));
                }
                Some(check_price(
                    offset,
                    format!("market {m} settlement price"),
                    p,
                )?)
            } else {
                None
            };
            market_configs.push(config);
            markets.push(Market {
                open_interest,
                funding_index,
                last_funding_s,
                funding_rate,
                funding_rate_until_s,
                fees_collected,
                insurance_collected,
                funding_dust,
                claims_written_off,
                insurance_paid,
                socialized_loss,
                withdrawals_paused_until_s,
                reduce_only,
                paused,
                multiplier_from,
                multiplier_to,
                phase_start_s,
                phase_s,
                mark_vol,
                settlement_price,
            });
        }

        // Keyed sequences: ids are checked against the sub-account count once it is read.
        let mut ids_to_check: Vec<(usize, &'static str, SubAccountId)> = Vec::new();
        let n_stakes = d.count(
            name!("stake count"),
            MAX_SUB_ACCOUNTS * MAX_ASSETS,
            8 + 8 + 16 + 16 + 8,
        )?;
        let mut stakes = Vec::with_capacity(n_stakes);
        for k in 0..n_stakes {
            let offset = d.pos;
            let (_, id) = d.sub_account_id(name!("stake {k} sub-account"))?;
            let asset = d.index(name!("stake {k} asset"), n_assets, "assets")?;
            let shares = d.i128(name!("stake {k} shares"))?;
            let unstake_shares = d.i128(name!("stake {k} unstake_shares"))?;
            let unstake_requested_s = d.u64(name!("stake {k} unstake_requested_s"))?;
            if stakes.last().is_some_and(|(key, _)| *key >= (id, asset)) {
                return Err(SnapshotError::Unsorted {
                    offset,
                    field: "stakes".into(),
                });
            }
            ids_to_check.push((offset, "stake sub-account", id));
            stakes.push((
                (id, asset),
                Stake {
                    shares,
                    unstake_shares,
                    unstake_requested_s,
                },
            ));
        }
        let lp_sub_account = if d.bool(name!("counterparty pool open"))? {
            let (offset, id) = d.sub_account_id(name!("counterparty pool sub-account"))?;
            ids_to_check.push((offset, "counterparty pool sub-account", id));
            Some(id)
        } else {
            None
        };
        let lp_total_shares = d.i128(name!("counterparty pool total_shares"))?;
        let n_lp = d.count(name!("pool provider count"), MAX_SUB_ACCOUNTS, 8 + 16)?;
        let mut lp_shares = Vec::with_capacity(n_lp);
        for k in 0..n_lp {
            let (offset, id) = d.sub_account_id(name!("pool provider {k} sub-account"))?;
            let shares = d.i128(name!("pool provider {k} shares"))?;
            if lp_shares.last().is_some_and(|(last, _)| *last >= id) {
                return Err(SnapshotError::Unsorted {
                    offset,
                    field: "pool providers".into(),
                });
            }
            ids_to_check.push((offset, "pool provider", id));
            lp_shares.push((id, shares));
        }
        let n_pauses = d.count(name!("withdrawal pause count"), MAX_SUB_ACCOUNTS, 16)?;
        let mut pauses = Vec::with_capacity(n_pauses);
        for k in 0..n_pauses {
            let (offset, id) = d.sub_account_id(name!("withdrawal pause {k} sub-account"))?;
            let until = d.u64(name!("withdrawal pause {k} until"))?;
            if pauses.last().is_some_and(|(last, _)| *last >= id) {
                return Err(SnapshotError::Unsorted {
                    offset,
                    field: "withdrawal pauses".into(),
                });
            }
            ids_to_check.push((offset, "withdrawal pause", id));
            pauses.push((id, until));
        }
        let n_liquidators = d.count(name!("liquidator count"), MAX_SUB_ACCOUNTS, 8)?;
        let mut liquidators = Vec::with_capacity(n_liquidators);
        for k in 0..n_liquidators {
            let (offset, id) = d.sub_account_id(name!("liquidator {k}"))?;
            if liquidators.last().is_some_and(|last| *last >= id) {
                return Err(SnapshotError::Unsorted {
                    offset,
                    field: "liquidators".into(),
                });
            }
            ids_to_check.push((offset, "liquidator", id));
            liquidators.push(id);
        }
        let n_owners = d.count(name!("owner count"), MAX_OWNERS, 16)?;
        let mut owners: Vec<(u64, Vec<SubAccountId>)> = Vec::with_capacity(n_owners);
        for k in 0..n_owners {
            let offset = d.pos;
            let owner = d.u64(name!("owner {k}"))?;
            if owners.last().is_some_and(|(last, _)| *last >= owner) {
                return Err(SnapshotError::Unsorted {
                    offset,
                    field: "owners".into(),
                });
            }
            let n_subs = d.count(
                name!("owner {owner} sub-account count"),
                MAX_SUB_ACCOUNTS_PER_OWNER,
                8,
            )?;
            let mut subs: Vec<SubAccountId> = Vec::with_capacity(n_subs);
            for j in 0..n_subs {
                let (offset, id) = d.sub_account_id(name!("owner {owner} sub-account {j}"))?;
                if subs.last().is_some_and(|last| *last >= id) {
                    return Err(SnapshotError::Unsorted {
                        offset,
                        field: format!("owner {owner} sub-accounts"),
                    });
                }
                ids_to_check.push((offset, "owner's sub-account", id));
                subs.push(id);
            }
            owners.push((owner, subs));
        }
        let n_subs = d.count(
            name!("sub-account count"),
            MAX_SUB_ACCOUNTS,
            8 + 8 + 1 + 8 + 8,
        )?;
        let mut subs = Vec::with_capacity(n_subs);
        for id in 0..n_subs {
            let owner = d.u64(name!("sub-account {id} owner"))?;
            let offset = d.pos;
            let margin = match d.u64(name!("sub-account {id} margin"))? {
                u64::MAX => MarginKind::Cross,
                v if v == u64::MAX - 1 => MarginKind::Portfolio,
                v if v < n_assets as u64 && v != quote_asset as u64 => {
                    MarginKind::Isolated(v as AssetIdx)
                }
                v => {
                    return Err(out_of_range(
                        offset,
                        format!("sub-account {id} margin"),
                        v,
                        "cross, portfolio, or isolated on a listed non-quote asset",
                    ))
                }
            };
            if margin == MarginKind::Portfolio && grid.is_none() {
                return Err(out_of_range(
                    offset,
                    format!("sub-account {id} margin"),
                    "portfolio",
                    "portfolio margin needs the [portfolio_margin] grid",
                ));
            }
            let below_maintenance = d.bool(name!("sub-account {id} below_maintenance"))?;
            let n_balances = d.count(
                name!("sub-account {id} balance count"),
                MAX_BALANCES_PER_SUB_ACCOUNT,
                8 + 16,
            )?;
            let mut balances: Vec<(AssetIdx, i128)> = Vec::with_capacity(n_balances);
            for k in 0..n_balances {
                let offset = d.pos;
                let asset = d.index(
                    name!("sub-account {id} balance {k} asset"),
                    n_assets,
                    "assets",
                )?;
                if balances.last().is_some_and(|(last, _)| *last >= asset) {
                    return Err(SnapshotError::Unsorted {
                        offset,
                        field: format!("sub-account {id} balances"),
                    });
                }
                let offset = d.pos;
                let scaled = d.i128(name!("sub-account {id} balance {k} scaled"))?;
                if scaled == 0 || scaled == i128::MIN {
                    return Err(out_of_range(
                        offset,
                        format!("sub-account {id} balance {k} scaled"),
                        scaled,
                        "a kept balance is non-zero (and not i128::MIN)",
                    ));
                }
                balances.push((asset, scaled));
            }
            let n_perps = d.count(
                name!("sub-account {id} position count"),
                MAX_PERP_POSITIONS_PER_SUB_ACCOUNT,
                8 + 3 * 16,
            )?;
            let mut perps: Vec<PerpPosition> = Vec::with_capacity(n_perps);
            for k in 0..n_perps {
                let offset = d.pos;
                let market: MarketIdx = d.index(
                    name!("sub-account {id} position {k} market"),
                    n_markets,
                    "markets",
                )?;
                if perps.last().is_some_and(|last| last.market >= market) {
                    return Err(SnapshotError::Unsorted {
                        offset,
                        field: format!("sub-account {id} positions"),
                    });
                }
                let base =
                    TokenAmount::from_raw(d.i128(name!("sub-account {id} position {k} base"))?);
                let quote = Quote::from_raw(d.i128(name!("sub-account {id} position {k} quote"))?);
                let funding_snapshot = Price::from_raw(
                    d.i128(name!("sub-account {id} position {k} funding_snapshot"))?,
                );
                if base.is_zero() && quote.is_zero() {
                    return Err(out_of_range(
                        offset,
                        format!("sub-account {id} position {k}"),
                        "flat with no quote",
                        "an empty position is removed, not kept",
                    ));
                }
                perps.push(PerpPosition {
                    market,
                    base,
                    quote,
                    funding_snapshot,
                });
            }
            subs.push(SubRecord {
                owner,
                margin,
                below_maintenance,
                balances,
                perps,
            });
        }
        if d.pos != bytes.len() {
            return Err(SnapshotError::TrailingBytes {
                offset: d.pos,
                count: bytes.len() - d.pos,
            });
        }

        // Cross-references.
        for &(offset, what, id) in &ids_to_check {
            if id as usize >= n_subs {
                return Err(out_of_range(
                    offset,
                    what.to_string(),
                    id,
                    &format!("{n_subs} sub-accounts exist"),
                ));
            }
        }
        let mut listed = vec![false; n_subs];
        for (owner, ids) in &owners {
            for &id in ids {
                let sub = &subs[id as usize];
                if sub.owner != *owner || listed[id as usize] {
                    return Err(inconsistent(format!(
                        "owner {owner} lists sub-account {id}, which belongs to owner {} or is listed twice",
                        sub.owner
                    )));
                }
                listed[id as usize] = true;
            }
        }
        if let Some(id) = listed.iter().position(|l| !l) {
            return Err(inconsistent(format!(
                "sub-account {id} is not listed under its owner {}",
                subs[id].owner
            )));
        }
        let pool_owner = owners.iter().find(|(o, _)| *o == POOL_OWNER);
        match (lp_sub_account, pool_owner) {
            (None, None) => {}
            (Some(id), Some((_, ids)))
                if ids.as_slice() == [id] && subs[id as usize].margin == MarginKind::Cross => {}
            _ => {
                return Err(inconsistent(format!(
                    "the counterparty pool's sub-account ({lp_sub_account:?}) must be the one cross sub-account of owner {POOL_OWNER}"
                )))
            }
        }

        // The configuration: the protocol file's rules, then a new engine over it.
        let quote_symbol = protocol.quote_asset.clone();
        let config = ProtocolConfig::from_file(ProtocolFile {
            protocol,
            tier: tiers,
            asset: assets,
            perp_tier: perp_tiers,
            market: market_configs,
            portfolio_margin: grid,
        })
        .map_err(SnapshotError::Config)?;
        let quote_position = config.assets.iter().position(|a| a.symbol == quote_symbol);
        if quote_position != Some(quote_asset as usize) {
            return Err(out_of_range(
                quote_offset,
                "quote asset".into(),
                quote_asset,
                "the quote asset is the asset the protocol section names",
            ));
        }
        let mut engine = Engine::new(config, now_s);
        engine.applied = applied;
        engine.pools = pools;
        engine.oracles = oracles;
        engine.markets = markets;
        engine.stakes = stakes.into_iter().collect();
        engine.lp.sub_account = lp_sub_account;
        engine.lp.total_shares = lp_total_shares;
        engine.lp_shares = lp_shares.into_iter().collect();
        engine.withdrawal_pauses = pauses.into_iter().collect();
        engine.liquidators = liquidators.into_iter().collect();
        engine.owners = owners.into_iter().collect();
        engine.sub_accounts.reserve_exact(n_subs);
        for sub in subs {
            engine.restore_sub_account(
                sub.owner,
                sub.margin,
                sub.below_maintenance,
                &sub.balances,
                &sub.perps,
            );
        }
        engine.check_invariants().map_err(inconsistent)?;
        let again = engine.snapshot();
        if again != bytes {
            let offset = again
                .iter()
                .zip(bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(again.len().min(bytes.len()));
            return Err(SnapshotError::NotCanonical { offset });
        }
        Ok(engine)
    }
}
