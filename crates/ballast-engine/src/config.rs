//! The protocol file: what a venue lists and how it weighs risk.
//!
//! A protocol file is TOML. It is read in two stages: [`ProtocolFile`] is the raw serde shape (strings checked only
//! for syntax), and [`ProtocolConfig::from_file`] validates *every* rule and reports *every* broken one, each naming
//! the asset and field (`asset SOL: maintenance_asset_weight 1.05 exceeds 1`). Nothing downstream ever sees an
//! unvalidated value, so the engine can take the preconditions as given.
//!
//! Weights follow the usual convention: collateral counts for `balance * price * asset_weight` (weight <= 1),
//! a debt for `balance * price * liability_weight` (weight >= 1). The initial weights are the strict ones used to
//! open risk; the maintenance weights decide when an account may be liquidated. Liquidation-end weights sit between
//! them, `liquidation_end_fraction` of the way from maintenance toward initial.

use crate::limits::{MAX_ASSETS, MAX_CAP_TOKENS, MAX_MARKETS, MAX_SYMBOL_LEN};
use crate::perp::{validate_market, validate_perp_tier};
pub use crate::perp::{FundingConfig, MarketConfig, PerpTierConfig};
use ballast_num::{Quote, Ratio, TokenQuantity, TOKEN_QUANTITY_DECIMALS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Seconds in the 365-day year that annual rates refer to.
pub const SECONDS_PER_YEAR: u64 = 365 * 86_400;

/// Raw protocol file, as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolFile {
    pub protocol: ProtocolSection,
    #[serde(default)]
    pub tier: Vec<TierConfig>,
    #[serde(default)]
    pub asset: Vec<AssetConfig>,
    #[serde(default)]
    pub perp_tier: Vec<PerpTierConfig>,
    #[serde(default)]
    pub market: Vec<MarketConfig>,
    /// Scenario grid for portfolio-margined sub-accounts; without it, none can be opened.
    #[serde(default)]
    pub portfolio_margin: Option<crate::portfolio::PortfolioMarginConfig>,
}

/// `[protocol]`: venue-wide settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProtocolSection {
    pub name: String,
    /// Symbol of the asset that isolated sub-accounts may hold beside their own asset, and the label health is
    /// reported in. Prices are quoted in USD; this asset has an oracle like any other.
    pub quote_asset: String,
    /// Where liquidation-end weights sit: 0 = at maintenance, 1 = at initial.
    pub liquidation_end_fraction: Ratio,
    /// Share of every liquidation fee that goes to the insurance fund (the rest is the liquidator's reward).
    pub liquidation_insurance_share: Ratio,
    /// Largest notional (USD at the oracle) one liquidation step takes over, per position or debt; a perp position
    /// whose partial close cannot improve health is closed whole, even beyond it.
    pub liquidation_max_step_notional: Quote,
    /// Seconds between asking to unstake from an insurance fund and being able to.
    pub insurance_unstake_cooldown_s: u64,
    /// After a loss is socialized in a pool, its withdrawals and borrows pause for this many seconds.
    pub socialized_loss_withdrawal_pause_s: u64,
    /// Who absorbs a bankrupt sub-account's deficit, in order (see [`WaterfallStep`]). `socialize` must come last.
    pub bankruptcy_waterfall: Vec<WaterfallStep>,
}

/// One step of the loss waterfall, in the order `[protocol] bankruptcy_waterfall` lists them.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum WaterfallStep {
    /// A perp deficit first writes off the venue's own unsettled claims in its market (trading fees, then the
    /// insurance share of liquidation fees). Lending deficits skip this step.
    VenueClaims,
    /// The insurance fund pays, up to the tier's `insurance_cap_per_bankruptcy`.
    Insurance,
    /// The rest is socialized: a deposit-index haircut for a lending deficit, auto-deleveraging of the market's
    /// ranked positions for a perp deficit.
    Socialize,
}

/// `[[tier]]`: a collateral tier bounds the maintenance weights of the assets in it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    pub name: String,
    /// No asset of this tier may count for more than this in maintenance health.
    pub max_maintenance_asset_weight: Ratio,
    /// No asset of this tier may be borrowed at a maintenance liability weight below this.
    pub min_maintenance_liability_weight: Ratio,
    /// The most (USD at the oracle) an asset's insurance fund pays toward one bankrupt sub-account's debt in an asset
    /// of this tier; the rest is socialized.
    pub insurance_cap_per_bankruptcy: Quote,
}

/// Where an asset may serve as collateral.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum CollateralMode {
    /// Any cross sub-account may hold it, and isolated sub-accounts bound to it.
    Cross,
    /// Only an isolated sub-account bound to this asset may hold it (its losses stay there).
    IsolatedOnly,
}

/// `[[asset]]`: one listed token.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AssetConfig {
    pub symbol: String,
    /// Native units per whole token are 10^decimals; at most 18.
    pub decimals: u8,
    pub tier: String,
    pub collateral: CollateralMode,
    pub initial_asset_weight: Ratio,
    pub maintenance_asset_weight: Ratio,
    pub initial_liability_weight: Ratio,
    pub maintenance_liability_weight: Ratio,
    /// Size premium `f` per square root of whole tokens: asset weights are divided and liability weights
    /// multiplied by `1 + f * sqrt(|balance| in whole tokens)`. 0 disables it.
    pub size_premium_factor: Ratio,
    /// Whole tokens of total deposits above which the initial asset weight is scaled by `threshold / deposits`.
    /// 0 disables it.
    pub concentration_threshold: TokenQuantity,
    /// Whole tokens: total deposits may not exceed this.
    pub deposit_cap: TokenQuantity,
    /// Whole tokens: total borrows may not exceed this. 0 means the asset cannot be borrowed.
    pub borrow_cap: TokenQuantity,
    /// Share of borrow interest credited to the treasury.
    pub reserve_factor: Ratio,
    /// Discount at which a liquidator receives this asset as collateral for repaying a debt: it gets
    /// `(1 + fee)` times the value it repaid.
    pub liquidation_fee: Ratio,
    pub oracle: OracleConfig,
    pub interest: InterestCurve,
}

/// `[asset.oracle]`: when a price may be trusted for new risk.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OracleConfig {
    /// A price older than this (command time minus publish time) is stale.
    pub max_staleness_s: u64,
    /// Confidence interval half-width over price above which the price is too uncertain.
    pub max_confidence: Ratio,
    /// |oracle - reference| / reference above which the price is suspect.
    pub max_divergence: Ratio,
    /// Time constant of the slow reference price, an exponential moving average of the oracle in publish time.
    pub reference_time_constant_s: u64,
}

/// `[asset.interest]`: annual borrow rate as a piecewise-linear function of utilization.
///
/// `rate(u) = base_rate + sum over segments of slope_i * (fraction of segment i covered by u)`, where the segments
/// are `[0, kink_1], [kink_1, kink_2], ..., [kink_last, 1]`; a segment's slope is the rate added across its whole
/// width (the Aave convention: at the first kink the rate is `base_rate + slopes[0]`). The result is capped at
/// `max_rate`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InterestCurve {
    pub base_rate: Ratio,
    /// Utilizations where the slope changes, strictly increasing in (0, 1); one or two of them.
    pub kinks: Vec<Ratio>,
    /// One more slope than kinks.
    pub slopes: Vec<Ratio>,
    pub max_rate: Ratio,
}

/// All problems found in a protocol file, one line each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A validated protocol file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProtocolConfig {
    pub protocol: ProtocolSection,
    pub tiers: Vec<TierConfig>,
    pub assets: Vec<AssetConfig>,
    pub perp_tiers: Vec<PerpTierConfig>,
    pub markets: Vec<MarketConfig>,
    pub portfolio_margin: Option<crate::portfolio::PortfolioMarginConfig>,
}

impl ProtocolConfig {
    /// Parses and validates TOML text. Every error names its place; `source` (a file name) prefixes each line.
    pub fn from_toml(source: &str, text: &str) -> Result<ProtocolConfig, ConfigErrors> {
        let file: ProtocolFile = toml::from_str(text)
            .map_err(|e| ConfigErrors(vec![format!("{source}: {}", one_line(&e.to_string()))]))?;
        ProtocolConfig::from_file(file).map_err(|errors| {
            ConfigErrors(
                errors
                    .0
                    .into_iter()
                    .map(|e| format!("{source}: {e}"))
                    .collect(),
            )
        })
    }

    /// Validates a parsed file, collecting every broken rule.
    pub fn from_file(file: ProtocolFile) -> Result<ProtocolConfig, ConfigErrors> {
        let mut errors = Vec::new();
        let one = Ratio::ONE;
        let lef = file.protocol.liquidation_end_fraction;
        if lef < Ratio::ZERO || lef > one {
            errors.push(format!(
                "protocol: liquidation_end_fraction {lef} must be between 0 and 1"
            ));
        }
        let share = file.protocol.liquidation_insurance_share;
        if share < Ratio::ZERO || share > one {
            errors.push(format!(
                "protocol: liquidation_insurance_share {share} must be between 0 and 1"
            ));
        }
        let step = file.protocol.liquidation_max_step_notional;
        if !step.is_positive() {
            errors.push(format!(
                "protocol: liquidation_max_step_notional {step} must be positive"
            ));
        }
        if file.protocol.insurance_unstake_cooldown_s > SECONDS_PER_YEAR {
            errors.push(
                "protocol: insurance_unstake_cooldown_s must be at most one year".to_string(),
            );
        }
        if file.protocol.socialized_loss_withdrawal_pause_s > SECONDS_PER_YEAR {
            errors.push(
                "protocol: socialized_loss_withdrawal_pause_s must be at most one year".to_string(),
            );
        }
        let steps = &file.protocol.bankruptcy_waterfall;
        let distinct: BTreeSet<_> = steps.iter().collect();
        if steps.last() != Some(&WaterfallStep::Socialize) || distinct.len() != steps.len() {
            errors.push(
                "protocol: bankruptcy_waterfall must list each step at most once and end with \"socialize\" (otherwise a deficit could remain)"
                    .to_string(),
            );
        }
        let mut tier_names = BTreeSet::new();
        for tier in &file.tier {
            if !tier_names.insert(tier.name.clone()) {
                errors.push(format!("tier {}: defined twice", tier.name));
            }
            if tier.max_maintenance_asset_weight < Ratio::ZERO
                || tier.max_maintenance_asset_weight > one
            {
                errors.push(format!(
                    "tier {}: max_maintenance_asset_weight {} must be between 0 and 1",
                    tier.name, tier.max_maintenance_asset_weight
                ));
            }
            if tier.insurance_cap_per_bankruptcy < Quote::ZERO {
                errors.push(format!(
                    "tier {}: insurance_cap_per_bankruptcy {} is negative",
                    tier.name, tier.insurance_cap_per_bankruptcy
                ));
            }
            if tier.min_maintenance_liability_weight < one {
                errors.push(format!(
                    "tier {}: min_maintenance_liability_weight {} is below 1",
                    tier.name, tier.min_maintenance_liability_weight
                ));
            }
        }
        if file.asset.is_empty() {
            errors.push("no [[asset]] is listed".to_string());
        }
        if file.asset.len() > MAX_ASSETS {
            errors.push(format!(
                "{} assets listed, the limit is {MAX_ASSETS}",
                file.asset.len()
            ));
        }
        let mut symbols = BTreeSet::new();
        for asset in &file.asset {
            if !symbols.insert(asset.symbol.clone()) {
                errors.push(format!("asset {}: listed twice", asset.symbol));
            }
            errors.extend(validate_asset(asset, &file.tier));
        }
        match file
            .asset
            .iter()
            .find(|a| a.symbol == file.protocol.quote_asset)
        {
            None => errors.push(format!(
                "protocol: quote_asset {} is not a listed asset",
                file.protocol.quote_asset
            )),
            Some(q) if q.collateral != CollateralMode::Cross => errors.push(format!(
                "protocol: quote_asset {} must have collateral = \"cross\"",
                q.symbol
            )),
            Some(_) => {}
        }
        let mut perp_tier_names = BTreeSet::new();
        for tier in &file.perp_tier {
            if !perp_tier_names.insert(tier.name.clone()) {
                errors.push(format!("perp_tier {}: defined twice", tier.name));
            }
            errors.extend(validate_perp_tier(tier));
        }
        if file.market.len() > MAX_MARKETS {
            errors.push(format!(
                "{} markets listed, the limit is {MAX_MARKETS}",
                file.market.len()
            ));
        }
        let pooled = file.market.iter().filter(|m| m.pool.is_some()).count();
        if pooled > crate::limits::MAX_PERP_POSITIONS_PER_SUB_ACCOUNT {
            errors.push(format!(
                "{pooled} markets have a [market.pool] section; the counterparty pool is one sub-account and holds at most {} positions",
                crate::limits::MAX_PERP_POSITIONS_PER_SUB_ACCOUNT
            ));
        }
        let listed: Vec<(String, u8)> = file
            .asset
            .iter()
            .map(|a| (a.symbol.clone(), a.decimals))
            .collect();
        let mut market_symbols = BTreeSet::new();
        for market in &file.market {
            if !market_symbols.insert(market.symbol.clone()) || symbols.contains(&market.symbol) {
                errors.push(format!("market {}: symbol used twice", market.symbol));
            }
            errors.extend(validate_market(market, &listed, &file.perp_tier));
        }
        if let Some(pm) = &file.portfolio_margin {
            errors.extend(
                crate::portfolio::validate(pm)
                    .into_iter()
                    .map(|e| format!("portfolio_margin: {e}")),
            );
        }
        if errors.is_empty() {
            Ok(ProtocolConfig {
                protocol: file.protocol,
                tiers: file.tier,
                assets: file.asset,
                perp_tiers: file.perp_tier,
                markets: file.market,
                portfolio_margin: file.portfolio_margin,
            })
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The tier an asset names (validated to exist).
    pub fn tier(&self, name: &str) -> Option<&TierConfig> {
        self.tiers.iter().find(|t| t.name == name)
    }
}

/// Every rule one asset must meet, given the tiers it may refer to. Used for the protocol file and for assets listed
/// later by command.
pub fn validate_asset(asset: &AssetConfig, tiers: &[TierConfig]) -> Vec<String> {
    let mut errors = Vec::new();
    let s = &asset.symbol;
    let mut err = |field: &str, rule: String| errors.push(format!("asset {s}: {field} {rule}"));
    let one = Ratio::ONE;
    if s.is_empty()
        || s.len() > MAX_SYMBOL_LEN
        || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        err(
            "symbol",
            format!("must be 1 to {MAX_SYMBOL_LEN} letters, digits or '-'"),
        );
    }
    if asset.decimals as u32 > TOKEN_QUANTITY_DECIMALS {
        err(
            "decimals",
            format!("{} exceeds {TOKEN_QUANTITY_DECIMALS}", asset.decimals),
        );
    }
    let (iaw, maw) = (asset.initial_asset_weight, asset.maintenance_asset_weight);
    let (ilw, mlw) = (
        asset.initial_liability_weight,
        asset.maintenance_liability_weight,
    );
    if iaw < Ratio::ZERO {
        err("initial_asset_weight", format!("{iaw} is negative"));
    }
    if maw > one {
        err("maintenance_asset_weight", format!("{maw} exceeds 1"));
    }
    if iaw > maw {
        err(
            "initial_asset_weight",
            format!("{iaw} exceeds maintenance_asset_weight {maw} (initial must be stricter)"),
        );
    }
    if mlw < one {
        err("maintenance_liability_weight", format!("{mlw} is below 1"));
    }
    if ilw < mlw {
        err(
            "initial_liability_weight",
            format!("{ilw} is below maintenance_liability_weight {mlw} (initial must be stricter)"),
        );
    }
    let ten = Ratio::from_int(10).expect("constant");
    if ilw > ten {
        err("initial_liability_weight", format!("{ilw} exceeds 10"));
    }
    match tiers.iter().find(|t| t.name == asset.tier) {
        None => err("tier", format!("{} is not a defined [[tier]]", asset.tier)),
        Some(tier) => {
            if maw > tier.max_maintenance_asset_weight {
                err(
                    "maintenance_asset_weight",
                    format!(
                        "{maw} exceeds tier {}'s max_maintenance_asset_weight {}",
                        tier.name, tier.max_maintenance_asset_weight
                    ),
                );
            }
            if mlw < tier.min_maintenance_liability_weight {
                err(
                    "maintenance_liability_weight",
                    format!(
                        "{mlw} is below tier {}'s min_maintenance_liability_weight {}",
                        tier.name, tier.min_maintenance_liability_weight
                    ),
                );
            }
        }
    }
    if asset.size_premium_factor < Ratio::ZERO || asset.size_premium_factor > one {
        err(
            "size_premium_factor",
            format!("{} must be between 0 and 1", asset.size_premium_factor),
        );
    }
    if asset.concentration_threshold < TokenQuantity::ZERO {
        err(
            "concentration_threshold",
            format!("{} is negative", asset.concentration_threshold),
        );
    }
    if asset.deposit_cap <= TokenQuantity::ZERO {
        err(
            "deposit_cap",
            format!("{} must be positive", asset.deposit_cap),
        );
    }
    if asset.borrow_cap < TokenQuantity::ZERO {
        err("borrow_cap", format!("{} is negative", asset.borrow_cap));
    }
    let cap_max = TokenQuantity::from_int(MAX_CAP_TOKENS).expect("constant");
    for (field, q) in [
        ("deposit_cap", asset.deposit_cap),
        ("concentration_threshold", asset.concentration_threshold),
    ] {
        if q > cap_max {
            err(
                field,
                format!("{q} exceeds the limit of {MAX_CAP_TOKENS} tokens"),
            );
        }
    }
    if asset.borrow_cap > asset.deposit_cap {
        err(
            "borrow_cap",
            format!(
                "{} exceeds deposit_cap {}",
                asset.borrow_cap, asset.deposit_cap
            ),
        );
    }
    for (field, q) in [
        ("deposit_cap", asset.deposit_cap),
        ("borrow_cap", asset.borrow_cap),
        ("concentration_threshold", asset.concentration_threshold),
    ] {
        if asset.decimals as u32 <= TOKEN_QUANTITY_DECIMALS
            && q.to_native_exact(asset.decimals).is_none()
        {
            err(
                field,
                format!(
                    "{q} has more decimal places than the asset's {}",
                    asset.decimals
                ),
            );
        }
    }
    if asset.reserve_factor < Ratio::ZERO || asset.reserve_factor >= one {
        err(
            "reserve_factor",
            format!("{} must be at least 0 and below 1", asset.reserve_factor),
        );
    }
    if asset.liquidation_fee < Ratio::ZERO
        || asset.liquidation_fee > Ratio::from_raw(Ratio::ONE.raw() / 5)
    {
        err(
            "liquidation_fee",
            format!("{} must be between 0 and 0.2", asset.liquidation_fee),
        );
    }
    let o = &asset.oracle;
    if o.max_staleness_s == 0 {
        err("oracle.max_staleness_s", "must be positive".to_string());
    }
    if o.max_confidence <= Ratio::ZERO || o.max_confidence >= one {
        err(
            "oracle.max_confidence",
            format!("{} must be above 0 and below 1", o.max_confidence),
        );
    }
    if o.max_divergence <= Ratio::ZERO || o.max_divergence > one {
        err(
            "oracle.max_divergence",
            format!("{} must be above 0 and at most 1", o.max_divergence),
        );
    }
    if o.reference_time_constant_s == 0 || o.reference_time_constant_s > SECONDS_PER_YEAR {
        err(
            "oracle.reference_time_constant_s",
            "must be between 1 s and one year".to_string(),
        );
    }
    let c = &asset.interest;
    let hundred = Ratio::from_int(100).expect("constant");
    if c.base_rate < Ratio::ZERO || c.base_rate > hundred {
        err(
            "interest.base_rate",
            format!("{} must be between 0 and 100", c.base_rate),
        );
    }
    if c.kinks.is_empty() || c.kinks.len() > 2 {
        err(
            "interest.kinks",
            format!("has {} entries; one or two are allowed", c.kinks.len()),
        );
    }
    if c.slopes.len() != c.kinks.len() + 1 {
        err(
            "interest.slopes",
            format!(
                "has {} entries; it needs one more than kinks ({})",
                c.slopes.len(),
                c.kinks.len() + 1
            ),
        );
    }
    let mut previous = Ratio::ZERO;
    for k in &c.kinks {
        if *k <= previous || *k >= one {
            err(
                "interest.kinks",
                format!("{k} must be above {previous} and below 1 (kinks strictly increase)"),
            );
        }
        previous = *k;
    }
    for slope in &c.slopes {
        if *slope < Ratio::ZERO || *slope > hundred {
            err(
                "interest.slopes",
                format!("{slope} must be between 0 and 100"),
            );
        }
    }
    if c.max_rate < c.base_rate {
        err(
            "interest.max_rate",
            format!("{} is below base_rate {}", c.max_rate, c.base_rate),
        );
    }
    if c.max_rate > hundred {
        err(
            "interest.max_rate",
            format!("{} exceeds 100 (10,000% a year)", c.max_rate),
        );
    }
    errors
}

impl InterestCurve {
    /// Annual borrow rate at utilization `u` (clamped to [0, 1]), rounded up (borrowers never pay less than the
    /// curve says).
    pub fn borrow_rate(&self, u: Ratio) -> Ratio {
        let u = u.max(Ratio::ZERO).min(Ratio::ONE);
        let mut rate = self.base_rate;
        let mut start = Ratio::ZERO;
        for (i, slope) in self.slopes.iter().enumerate() {
            let end = self.kinks.get(i).copied().unwrap_or(Ratio::ONE);
            if u > start {
                let covered = u.min(end).raw() - start.raw();
                let width = end.raw() - start.raw();
                // slope * covered / width, all below 10^20 * 10^18: fits in 256 bits, the result in i128.
                let add =
                    ballast_num::mul_div(slope.raw(), covered, width, ballast_num::Rounding::Ceil)
                        .expect("validated curve: slope <= 100, covered <= width");
                rate = Ratio::from_raw(rate.raw() + add);
            }
            start = end;
        }
        rate.min(self.max_rate)
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
