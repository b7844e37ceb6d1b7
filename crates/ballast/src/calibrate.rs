//! `ballast calibrate`: recommended risk parameters from price history and a liquidity-depth model.
//!
//! ```text
//! ballast calibrate CALIBRATION.toml [--json] [--out PATCH.toml] [--apply MERGED.toml]
//!     [--level P] [--horizon-hours H]
//! ```
//!
//! It reads a calibration file (format below and in `docs/risk.md`), the protocol file it names and the price
//! history of each asset; computes the recommendations with `ballast_risk::calibrate`; writes them as a TOML patch
//! of the protocol file (only the fields that change); applies the patch to the protocol file text and checks the
//! result with the engine's own validation (`ProtocolConfig::from_toml`) before printing anything. It prints a table
//! that explains every number (or one JSON object with `--json`), then the patch unless `--out` writes it to a file;
//! `--apply` writes the merged protocol file (comments and layout kept).
//!
//! ```toml
//! protocol = "protocol.toml"     # relative to this file, or absolute
//! horizon_hours = 24             # liquidation horizon; a whole number of the data's sampling interval
//! level = 0.99                   # ES level of maintenance parameters
//! initial_level = 0.995          # optional; default (1 + level) / 2
//! impact_coefficient = 1         # optional k of slippage = k·sqrt(Q / depth_usd); default 1
//! oi_slippage_budget = 0.05      # optional; default 0.05
//!
//! [[asset]]
//! symbol = "BTC"                 # an asset of the protocol file
//! data = "../../shared/data/binance_btcusdt_daily.csv"
//! from = "2018-01-01"            # optional, first day included (UTC)
//! to = "2026-03-30"              # optional, last day included (UTC)
//! depth_usd = 4e11
//! reference_size_usd = 10_000_000
//! markets = ["BTC-PERP"]         # optional perp markets on this asset
//! ```
//!
//! Perp margin ratios and open-interest caps belong to a `[[perp_tier]]` shared by several markets: the table shows
//! each market's own recommendation, and the patch sets the tier to the most demanding of its calibrated markets. A
//! tier with a market that was not calibrated is never loosened (ratios only rise, caps only fall).
//!
//! Errors: a bad calibration file, flag or data file is bad input (exit 2, one line naming the file, the asset and
//! the field); a bad protocol file lists every error as `ballast check` does. A patch the engine would refuse is an
//! internal failure (exit 1): the recommendations are built to pass its rules.

use crate::{load_config, read_text, Failure};
use ballast_engine::config::{AssetConfig, TierConfig};
use ballast_engine::perp::{MarketConfig, PerpTierConfig};
use ballast_engine::ProtocolConfig;
use ballast_num::{Quote, Ratio};
use ballast_risk::calibrate::{
    combine_tier, format_utc, horizon_returns, parse_date_utc_s, recommend_asset, recommend_market,
    tail_risk, AssetInputs, AssetRecommendation, CalibrationError, Decimal, Figure, HorizonReturns,
    Levels, MarketInputs, MarketRecommendation, SquareRootImpact, TailRisk, TierBounds, TierValues,
    IMPACT_COEFFICIENT_DEFAULT, OI_SLIPPAGE_BUDGET_DEFAULT,
};
use ballast_risk::data::load_csv;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Longest liquidation horizon accepted: one year of hours.
const HORIZON_HOURS_MAX: u32 = 365 * 24;

/// Seconds in one day.
const DAY_S: i64 = 86_400;

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The calibration file (TOML), e.g. examples/calibration.toml.
    calibration: PathBuf,
    /// Print one JSON object (inputs, statistics, every row of the table, the patch) instead of the table.
    #[arg(long)]
    json: bool,
    /// Write the patch to this file (replacing it) instead of printing it after the table.
    #[arg(long, value_name = "PATCH.toml")]
    out: Option<PathBuf>,
    /// Write the protocol file with the patch applied (comments kept) to this file, replacing it.
    #[arg(long, value_name = "MERGED.toml")]
    apply: Option<PathBuf>,
    /// ES level for maintenance parameters, instead of the file's `level` (strictly between 0 and 1).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    level: Option<f64>,
    /// Liquidation horizon in hours, instead of the file's `horizon_hours`.
    #[arg(long, value_name = "H")]
    horizon_hours: Option<u32>,
}

/// The calibration file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalibrationFile {
    protocol: String,
    horizon_hours: u32,
    level: f64,
    #[serde(default)]
    initial_level: Option<f64>,
    #[serde(default)]
    impact_coefficient: Option<f64>,
    #[serde(default)]
    oi_slippage_budget: Option<f64>,
    asset: Vec<AssetEntry>,
}

/// `[[asset]]` of the calibration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssetEntry {
    symbol: String,
    data: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    depth_usd: f64,
    reference_size_usd: f64,
    #[serde(default)]
    markets: Vec<String>,
}

/// Settings after the flags' overrides, validated.
struct Settings {
    horizon_hours: u32,
    /// Where the horizon came from, for messages: `horizon_hours` or `--horizon-hours`.
    horizon_from: &'static str,
    levels: Levels,
    impact_coefficient: f64,
    oi_slippage_budget: f64,
}

/// One calibrated asset: its inputs, statistics and recommendations.
struct Calibrated<'a> {
    entry: &'a AssetEntry,
    config: &'a AssetConfig,
    returns: HorizonReturns,
    tail: TailRisk,
    impact: SquareRootImpact,
    spot: AssetRecommendation,
    markets: Vec<(&'a MarketConfig, MarketRecommendation)>,
}

pub fn calibrate(args: &CalibrateArgs) -> Result<(), Failure> {
    let source = args.calibration.display().to_string();
    let bad = |message: String| Failure::input(format!("{source}: {message}"));
    let text = read_text(&args.calibration, "calibration file")?;
    let file: CalibrationFile = toml::from_str(&text).map_err(|e| bad(one_line(&e.to_string())))?;
    let settings = settings(&file, args, &source)?;
    let base = args
        .calibration
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let protocol_path = base.join(&file.protocol);
    let loaded = load_config(&protocol_path)?;
    let protocol_text = String::from_utf8(loaded.bytes).map_err(|e| {
        Failure::input(format!(
            "protocol file {} is not UTF-8 text: {e}",
            protocol_path.display()
        ))
    })?;
    let config = &loaded.config;
    check_entries(&file, config, &protocol_path)
        .map_err(|(symbol, message)| bad(format!("asset {symbol}: {message}")))?;

    let mut calibrated = Vec::with_capacity(file.asset.len());
    for entry in &file.asset {
        let one = calibrate_asset(entry, config, &settings, &base)
            .map_err(|message| bad(format!("asset {}: {message}", entry.symbol)))?;
        calibrated.push(one);
    }
    let tiers = tier_recommendations(config, &calibrated);
    let rows = rows(config, &calibrated, &tiers);
    let header = Header {
        calibration: source.clone(),
        protocol: protocol_path.display().to_string(),
        settings: &settings,
    };
    let patch = patch_text(&header, &rows);
    let merged = apply_patch(&protocol_text, &patch)
        .map_err(|e| Failure::internal(format!("calibrate: the patch does not apply: {e}")))?;
    if let Err(errors) = ProtocolConfig::from_toml("merged protocol file", &merged) {
        return Err(Failure::Internal(format!(
            "error: calibrate: the engine refuses the patched protocol file: {}",
            errors.0.join("; ")
        )));
    }

    let output = if args.json {
        let mut line = serde_json::to_string(&json(&header, &calibrated, &rows, &patch))
            .map_err(|e| Failure::internal(format!("cannot encode JSON: {e}")))?;
        line.push('\n');
        line
    } else {
        let mut out = table(&header, &calibrated, &rows);
        if args.out.is_none() {
            out.push('\n');
            out.push_str(&patch);
        }
        out
    };
    if let Some(path) = &args.out {
        write_file(path, &patch, "patch")?;
    }
    if let Some(path) = &args.apply {
        write_file(path, &merged, "merged protocol file")?;
    }
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::internal(format!("cannot write to stdout: {e}"))),
    }
}

fn write_file(path: &Path, contents: &str, what: &str) -> Result<(), Failure> {
    std::fs::write(path, contents)
        .map_err(|e| Failure::internal(format!("cannot write {what} {}: {e}", path.display())))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The file's settings with the flags' overrides, each checked; errors name the flag or the file's field.
fn settings(
    file: &CalibrationFile,
    args: &CalibrateArgs,
    source: &str,
) -> Result<Settings, Failure> {
    let (horizon_hours, horizon_from) = match args.horizon_hours {
        Some(h) => (h, "--horizon-hours".to_string()),
        None => (file.horizon_hours, format!("{source}: horizon_hours")),
    };
    if horizon_hours == 0 || horizon_hours > HORIZON_HOURS_MAX {
        return Err(Failure::input(format!(
            "{horizon_from} {horizon_hours} must be between 1 and {HORIZON_HOURS_MAX} hours"
        )));
    }
    let levels =
        Levels::new(args.level.unwrap_or(file.level), file.initial_level).map_err(|e| {
            // `level` from the flag is named as the flag; everything else as the file's field.
            let text = e.to_string();
            match (args.level, &e) {
                (Some(_), CalibrationError::Input { field: "level", .. }) => {
                    Failure::input(format!("--{text}"))
                }
                (
                    Some(level),
                    CalibrationError::Input {
                        field: "initial_level",
                        ..
                    },
                ) => Failure::input(format!("{source}: {text} (--level {level})")),
                _ => Failure::input(format!("{source}: {text}")),
            }
        })?;
    let impact_coefficient = file
        .impact_coefficient
        .unwrap_or(IMPACT_COEFFICIENT_DEFAULT);
    if !(impact_coefficient.is_finite() && impact_coefficient > 0.0) {
        return Err(Failure::input(format!(
            "{source}: impact_coefficient {impact_coefficient} must be a finite number > 0"
        )));
    }
    let oi_slippage_budget = file
        .oi_slippage_budget
        .unwrap_or(OI_SLIPPAGE_BUDGET_DEFAULT);
    if !(oi_slippage_budget.is_finite() && oi_slippage_budget > 0.0 && oi_slippage_budget < 1.0) {
        return Err(Failure::input(format!(
            "{source}: oi_slippage_budget {oi_slippage_budget} must be strictly between 0 and 1"
        )));
    }
    Ok(Settings {
        horizon_hours,
        horizon_from: if args.horizon_hours.is_some() {
            "--horizon-hours"
        } else {
            "horizon_hours"
        },
        levels,
        impact_coefficient,
        oi_slippage_budget,
    })
}

/// Every `[[asset]]` names a distinct asset of the protocol file, positive depth and size, real dates in order, and
/// distinct markets of the protocol file on that asset. Errors: (symbol, message).
fn check_entries(
    file: &CalibrationFile,
    config: &ProtocolConfig,
    protocol_path: &Path,
) -> Result<(), (String, String)> {
    if file.asset.is_empty() {
        return Err((
            "-".to_string(),
            "no [[asset]] is listed: nothing to calibrate".to_string(),
        ));
    }
    let mut symbols = BTreeSet::new();
    let mut markets = BTreeSet::new();
    for entry in &file.asset {
        let fail = |message: String| Err((entry.symbol.clone(), message));
        if !config.assets.iter().any(|a| a.symbol == entry.symbol) {
            return fail(format!(
                "symbol is not an asset of protocol file {}",
                protocol_path.display()
            ));
        }
        if !symbols.insert(entry.symbol.as_str()) {
            return fail("listed twice".to_string());
        }
        for (field, value) in [
            ("depth_usd", entry.depth_usd),
            ("reference_size_usd", entry.reference_size_usd),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return fail(format!("{field} {value} must be a finite number > 0"));
            }
        }
        let (from, to) = window(entry).map_err(|m| (entry.symbol.clone(), m))?;
        if let (Some(from), Some(to)) = (from, to) {
            if to <= from {
                return fail(format!(
                    "to {} is before from {}",
                    entry.to.as_deref().unwrap_or_default(),
                    entry.from.as_deref().unwrap_or_default()
                ));
            }
        }
        for market in &entry.markets {
            match config.markets.iter().find(|m| m.symbol == *market) {
                None => {
                    return fail(format!(
                        "markets: {market} is not a market of protocol file {}",
                        protocol_path.display()
                    ))
                }
                Some(m) if m.underlying != entry.symbol => {
                    return fail(format!(
                        "markets: {market} trades {}, not {}",
                        m.underlying, entry.symbol
                    ))
                }
                Some(_) => {}
            }
            if !markets.insert(market.as_str()) {
                return fail(format!("markets: {market} is listed twice"));
            }
        }
    }
    Ok(())
}

/// The entry's window as `[from 00:00 UTC, the day after to 00:00 UTC)`, each end optional.
fn window(entry: &AssetEntry) -> Result<(Option<i64>, Option<i64>), String> {
    let date = |field: &str, text: &Option<String>| -> Result<Option<i64>, String> {
        match text {
            None => Ok(None),
            Some(t) => parse_date_utc_s(t)
                .map(Some)
                .ok_or_else(|| format!("{field} {t:?} is not a date YYYY-MM-DD")),
        }
    };
    let from = date("from", &entry.from)?;
    let to = date("to", &entry.to)?.map(|t| t + DAY_S);
    Ok((from, to))
}

fn ratio_f64(r: Ratio) -> f64 {
    r.raw() as f64 / Ratio::SCALE as f64
}

fn ratio_decimal(r: Ratio) -> Decimal {
    Decimal::new(r.raw().max(0) as u128, -(Ratio::DECIMALS as i32))
}

fn quote_decimal(q: Quote) -> Decimal {
    Decimal::new(q.raw().max(0) as u128, -(Quote::DECIMALS as i32))
}

/// Loads one asset's history and computes its recommendations. Errors are the message after `asset SYMBOL: `.
fn calibrate_asset<'a>(
    entry: &'a AssetEntry,
    config: &'a ProtocolConfig,
    settings: &Settings,
    base: &Path,
) -> Result<Calibrated<'a>, String> {
    let asset = config
        .assets
        .iter()
        .find(|a| a.symbol == entry.symbol)
        .expect("checked by check_entries");
    let tier = config.tier(&asset.tier).expect("validated protocol file");
    let series =
        load_csv(&base.join(&entry.data)).map_err(|e| format!("data {}: {e}", entry.data))?;
    let (from, to) = window(entry)?;
    let horizon_s = i64::from(settings.horizon_hours) * 3600;
    let context = |e: CalibrationError| {
        match e {
        CalibrationError::EmptyWindow { .. } => format!(
            "data {} from {} to {}: {e}",
            entry.data,
            entry.from.as_deref().unwrap_or("the start"),
            entry.to.as_deref().unwrap_or("the end")
        ),
        CalibrationError::Horizon { interval_s, .. } => format!(
            "data {}: {} {} is not a whole number of the data's sampling interval of {interval_s} s",
            entry.data, settings.horizon_from, settings.horizon_hours
        ),
        _ => format!("data {}: {e}", entry.data),
    }
    };
    let returns = horizon_returns(&series, horizon_s, from, to).map_err(context)?;
    let tail = tail_risk(&returns.returns, settings.levels).map_err(context)?;
    let impact = SquareRootImpact::new(entry.depth_usd, settings.impact_coefficient)
        .map_err(|e| e.to_string())?;
    let spot = recommend_asset(
        &AssetInputs {
            tail,
            impact,
            reference_size_usd: entry.reference_size_usd,
            price_usd: returns.last_close_usd,
            liquidation_fee: ratio_f64(asset.liquidation_fee),
        },
        &tier_bounds(tier),
    )
    .map_err(|e| e.to_string())?;
    let mut markets = Vec::with_capacity(entry.markets.len());
    for symbol in &entry.markets {
        let market = config
            .markets
            .iter()
            .find(|m| m.symbol == *symbol)
            .expect("checked by check_entries");
        let recommendation = recommend_market(&MarketInputs {
            tail,
            impact,
            reference_size_usd: entry.reference_size_usd,
            price_usd: returns.last_close_usd,
            liquidation_fee: ratio_f64(market.liquidation_fee),
            min_initial_margin_ratio: 1.0 / ratio_f64(market.max_leverage),
            oi_slippage_budget: settings.oi_slippage_budget,
            open_interest_max_usd: ballast_engine::limits::MAX_OPEN_INTEREST_USD as f64,
        })
        .map_err(|e| format!("market {symbol}: {e}"))?;
        markets.push((market, recommendation));
    }
    Ok(Calibrated {
        entry,
        config: asset,
        returns,
        tail,
        impact,
        spot,
        markets,
    })
}

fn tier_bounds(tier: &TierConfig) -> TierBounds {
    TierBounds {
        max_maintenance_asset_weight: ratio_f64(tier.max_maintenance_asset_weight),
        min_maintenance_liability_weight: ratio_f64(tier.min_maintenance_liability_weight),
    }
}

/// One perp tier's recommendation: the combined values, which calibrated markets fed it, and which of its markets
/// were not calibrated.
struct TierRecommendation<'a> {
    tier: &'a PerpTierConfig,
    values: TierValues,
    calibrated: Vec<(&'a str, &'a MarketRecommendation)>,
    uncalibrated: Vec<&'a str>,
}

fn tier_values(tier: &PerpTierConfig) -> TierValues {
    TierValues {
        maintenance_margin_ratio: ratio_decimal(tier.maintenance_margin_ratio),
        initial_margin_ratio: ratio_decimal(tier.initial_margin_ratio),
        open_interest_lower_cap: quote_decimal(tier.open_interest_lower_cap),
        open_interest_upper_cap: quote_decimal(tier.open_interest_upper_cap),
    }
}

fn tier_recommendations<'a>(
    config: &'a ProtocolConfig,
    calibrated: &'a [Calibrated<'a>],
) -> Vec<TierRecommendation<'a>> {
    let mut out = Vec::new();
    for tier in &config.perp_tiers {
        let members: Vec<&MarketConfig> = config
            .markets
            .iter()
            .filter(|m| m.tier == tier.name)
            .collect();
        let mut done = Vec::new();
        let mut uncalibrated = Vec::new();
        for member in members {
            let found = calibrated
                .iter()
                .flat_map(|c| c.markets.iter())
                .find(|(m, _)| m.symbol == member.symbol);
            match found {
                Some((m, r)) => done.push((m.symbol.as_str(), r)),
                None => uncalibrated.push(member.symbol.as_str()),
            }
        }
        let recommendations: Vec<&MarketRecommendation> = done.iter().map(|(_, r)| *r).collect();
        let current = tier_values(tier);
        let keep = (!uncalibrated.is_empty()).then_some(&current);
        if let Some(values) = combine_tier(&recommendations, keep) {
            out.push(TierRecommendation {
                tier,
                values,
                calibrated: done,
                uncalibrated,
            });
        }
    }
    out
}

// ----- rows of the table ------------------------------------------------------------------------------------------

/// Where a row's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Patch {
    /// Into the patch: it differs from the current value.
    Yes,
    /// The recommendation equals the current value.
    Unchanged,
    /// A market's own margin ratio or cap: the patch sets its tier (see the tier's row).
    ViaTier,
}

/// One line of the table: a field of an asset, market or perp tier, its current and recommended values and the
/// terms it came from.
#[derive(Debug, Serialize)]
struct Row {
    /// `asset`, `market` or `perp_tier`: the protocol file's section.
    section: &'static str,
    /// Symbol or tier name.
    item: String,
    field: &'static str,
    /// Exact decimal strings, as in the protocol file.
    current: String,
    recommended: String,
    patch: Patch,
    /// The formula's value before bounds and rounding.
    model: Option<f64>,
    /// The ES term (fraction of value) and its level.
    es: Option<f64>,
    es_level: Option<f64>,
    /// Slippage at the reference size (fraction of price); for open-interest caps, the slippage budget.
    slippage: Option<f64>,
    /// Liquidation fee (fraction).
    fee: Option<f64>,
    n_observations: Option<usize>,
    /// First and last sample of the window, UTC.
    window: Option<String>,
    /// The formula with its numbers, the rounding, and any bound that applied.
    how: String,
}

fn window_text(r: &HorizonReturns) -> String {
    format!(
        "{}..{}",
        format_utc(r.first_utc_s),
        format_utc(r.last_utc_s)
    )
}

/// Shortest round-tripping form of a float for the `how` column, at most 6 significant digits.
fn g(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    if !(-5..=9).contains(&magnitude) {
        return format!("{x:.5e}");
    }
    let decimals = (5 - magnitude).max(0) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn rounding_text(figure: &Figure, rounding: &str) -> String {
    let mut text = rounding.to_string();
    if let Some(bound) = figure.bound {
        let _ = write!(text, "; {bound}");
    }
    text
}

fn rows(
    config: &ProtocolConfig,
    calibrated: &[Calibrated<'_>],
    tiers: &[TierRecommendation<'_>],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for c in calibrated {
        let a = c.config;
        let s = &c.spot;
        let t = &c.tail;
        let (level, initial_level) = (t.levels.level(), t.levels.initial_level());
        let fee = ratio_f64(a.liquidation_fee);
        let slip = s.slippage_reference;
        let base = |field: &'static str, current: Decimal, figure: &Figure| Row {
            section: "asset",
            item: a.symbol.clone(),
            field,
            current: current.to_string(),
            recommended: figure.recommended.to_string(),
            patch: if figure.recommended == current {
                Patch::Unchanged
            } else {
                Patch::Yes
            },
            model: Some(figure.model),
            es: None,
            es_level: None,
            slippage: Some(slip),
            fee: Some(fee),
            n_observations: Some(t.n_observations),
            window: Some(window_text(&c.returns)),
            how: String::new(),
        };
        let weight = |field,
                      current: Ratio,
                      figure: &Figure,
                      es: f64,
                      es_level: f64,
                      formula: &str,
                      up: bool| {
            let mut row = base(field, ratio_decimal(current), figure);
            row.es = Some(es);
            row.es_level = Some(es_level);
            row.how = format!(
                "{formula} = {}, {}",
                g(figure.model),
                rounding_text(figure, if up { "up to 0.01" } else { "down to 0.01" })
            );
            row
        };
        let down = "1 - (ES_down + slippage + fee)";
        let up = "1 + ES_up + slippage + fee";
        rows.push(weight(
            "maintenance_asset_weight",
            a.maintenance_asset_weight,
            &s.maintenance_asset_weight,
            t.es_down,
            level,
            down,
            false,
        ));
        rows.push(weight(
            "initial_asset_weight",
            a.initial_asset_weight,
            &s.initial_asset_weight,
            t.es_down_initial,
            initial_level,
            down,
            false,
        ));
        rows.push(weight(
            "maintenance_liability_weight",
            a.maintenance_liability_weight,
            &s.maintenance_liability_weight,
            t.es_up,
            level,
            up,
            true,
        ));
        rows.push(weight(
            "initial_liability_weight",
            a.initial_liability_weight,
            &s.initial_liability_weight,
            t.es_up_initial,
            initial_level,
            up,
            true,
        ));
        let mut premium = base(
            "size_premium_factor",
            ratio_decimal(a.size_premium_factor),
            &s.size_premium_factor,
        );
        premium.es = Some(t.es_down);
        premium.es_level = Some(level);
        let c_term = format!(
            "c = k*sqrt(P/depth_usd) = {} at P = {} USD (last close)",
            g(s.slippage_per_root_token),
            g(c.returns.last_close_usd)
        );
        premium.how = match s.premium_holds_to_usd {
            Some(to) => format!(
                "2c/(1 - ES_down - fee + slippage), {c_term}, = {}, {}; engine weight <= model up to {} USD",
                g(s.size_premium_factor.model),
                rounding_text(&s.size_premium_factor, "up to 2 digits"),
                g(to)
            ),
            None => format!(
                "c/maintenance_liability_weight (asset weight is 0), {c_term}, = {}, {}",
                g(s.size_premium_factor.model),
                rounding_text(&s.size_premium_factor, "up to 2 digits")
            ),
        };
        rows.push(premium);

        for (market, m) in &c.markets {
            let tier = config
                .perp_tiers
                .iter()
                .find(|t| t.name == market.tier)
                .expect("validated protocol file");
            let mfee = ratio_f64(market.liquidation_fee);
            let mbase =
                |field: &'static str, current: Decimal, figure: &Figure, patch: Patch| Row {
                    section: "market",
                    item: market.symbol.clone(),
                    field,
                    current: current.to_string(),
                    recommended: figure.recommended.to_string(),
                    patch,
                    model: Some(figure.model),
                    es: None,
                    es_level: None,
                    slippage: Some(m.slippage_reference),
                    fee: Some(mfee),
                    n_observations: Some(t.n_observations),
                    window: Some(window_text(&c.returns)),
                    how: String::new(),
                };
            let mut row = mbase(
                "maintenance_margin_ratio",
                ratio_decimal(tier.maintenance_margin_ratio),
                &m.maintenance_margin_ratio,
                Patch::ViaTier,
            );
            row.es = Some(t.es_abs);
            row.es_level = Some(level);
            row.how = format!(
                "ES_abs + slippage + fee = {}, {}; for tier {}",
                g(m.maintenance_margin_ratio.model),
                rounding_text(&m.maintenance_margin_ratio, "up to 0.001"),
                tier.name
            );
            rows.push(row);
            let mut row = mbase(
                "initial_margin_ratio",
                ratio_decimal(tier.initial_margin_ratio),
                &m.initial_margin_ratio,
                Patch::ViaTier,
            );
            row.es = Some(t.es_abs_initial);
            row.es_level = Some(initial_level);
            row.how = format!(
                "ES_abs + slippage + fee = {}, {}; for tier {}",
                g(m.initial_margin_ratio.model),
                rounding_text(&m.initial_margin_ratio, "up to 0.001"),
                tier.name
            );
            rows.push(row);
            let current = ratio_decimal(market.size_premium_factor);
            let patch = if m.size_premium_factor.recommended == current {
                Patch::Unchanged
            } else {
                Patch::Yes
            };
            let mut row = mbase(
                "size_premium_factor",
                current,
                &m.size_premium_factor,
                patch,
            );
            row.how = format!(
                "c = k*sqrt(P/depth_usd) at P = {} USD (last close) = {}, {}",
                g(c.returns.last_close_usd),
                g(m.size_premium_factor.model),
                rounding_text(&m.size_premium_factor, "up to 2 digits")
            );
            rows.push(row);
            let budget = c.impact.fraction(m.open_interest_upper_cap.model);
            let mut row = mbase(
                "open_interest_upper_cap",
                quote_decimal(tier.open_interest_upper_cap),
                &m.open_interest_upper_cap,
                Patch::ViaTier,
            );
            row.slippage = Some(budget);
            row.fee = None;
            row.how = format!(
                "depth_usd*(budget/k)^2 = {} USD, {}; for tier {}",
                g(m.open_interest_upper_cap.model),
                rounding_text(&m.open_interest_upper_cap, "down to 2 digits"),
                tier.name
            );
            rows.push(row);
            let mut row = mbase(
                "open_interest_lower_cap",
                quote_decimal(tier.open_interest_lower_cap),
                &m.open_interest_lower_cap,
                Patch::ViaTier,
            );
            row.slippage = None;
            row.fee = None;
            row.how = format!(
                "half the upper cap, down to 2 digits; for tier {}",
                tier.name
            );
            rows.push(row);
        }
    }
    for t in tiers {
        let current = tier_values(t.tier);
        let listing = |pick: fn(&MarketRecommendation) -> Decimal| -> String {
            t.calibrated
                .iter()
                .map(|(symbol, r)| format!("{symbol} {}", pick(r)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let partial = if t.uncalibrated.is_empty() {
            String::new()
        } else {
            format!(
                "; not loosened past the current value: {} not calibrated",
                t.uncalibrated.join(", ")
            )
        };
        let mut push =
            |field: &'static str, current: Decimal, recommended: Decimal, how: String| {
                rows.push(Row {
                    section: "perp_tier",
                    item: t.tier.name.clone(),
                    field,
                    current: current.to_string(),
                    recommended: recommended.to_string(),
                    patch: if recommended == current {
                        Patch::Unchanged
                    } else {
                        Patch::Yes
                    },
                    model: None,
                    es: None,
                    es_level: None,
                    slippage: None,
                    fee: None,
                    n_observations: None,
                    window: None,
                    how,
                });
            };
        push(
            "maintenance_margin_ratio",
            current.maintenance_margin_ratio,
            t.values.maintenance_margin_ratio,
            format!(
                "largest of {}{partial}",
                listing(|r| r.maintenance_margin_ratio.recommended)
            ),
        );
        push(
            "initial_margin_ratio",
            current.initial_margin_ratio,
            t.values.initial_margin_ratio,
            format!(
                "largest of {}{partial}",
                listing(|r| r.initial_margin_ratio.recommended)
            ),
        );
        push(
            "open_interest_lower_cap",
            current.open_interest_lower_cap,
            t.values.open_interest_lower_cap,
            format!(
                "smallest of {}{partial}",
                listing(|r| r.open_interest_lower_cap.recommended)
            ),
        );
        push(
            "open_interest_upper_cap",
            current.open_interest_upper_cap,
            t.values.open_interest_upper_cap,
            format!(
                "smallest of {}{partial}",
                listing(|r| r.open_interest_upper_cap.recommended)
            ),
        );
    }
    rows
}

// ----- output -----------------------------------------------------------------------------------------------------

struct Header<'a> {
    calibration: String,
    protocol: String,
    settings: &'a Settings,
}

fn header_line(h: &Header<'_>) -> String {
    let s = h.settings;
    format!(
        "horizon {} h, ES level {} (initial {}), slippage k*sqrt(Q/depth_usd) with k = {}, OI slippage budget {}",
        s.horizon_hours,
        s.levels.level(),
        s.levels.initial_level(),
        s.impact_coefficient,
        s.oi_slippage_budget
    )
}

/// The patch: a TOML file with one `[[asset]]`, `[[perp_tier]]` or `[[market]]` per entry that changes, holding its
/// key (`symbol` or `name`) and only the changed fields, as decimal strings.
fn patch_text(h: &Header<'_>, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Risk-parameter patch of {} written by `ballast calibrate {}`:",
        h.protocol, h.calibration
    );
    let _ = writeln!(out, "# {}.", header_line(h));
    let _ = writeln!(
        out,
        "# Only changed fields are listed; the calibration table explains each number (docs/risk.md, Calibration)."
    );
    for (section, key) in [
        ("asset", "symbol"),
        ("perp_tier", "name"),
        ("market", "symbol"),
    ] {
        let mut items: Vec<&str> = Vec::new();
        for row in rows
            .iter()
            .filter(|r| r.section == section && r.patch == Patch::Yes)
        {
            if !items.contains(&row.item.as_str()) {
                items.push(&row.item);
            }
        }
        for item in items {
            let _ = writeln!(out, "\n[[{section}]]\n{key} = {}", toml_string(item));
            for row in rows
                .iter()
                .filter(|r| r.section == section && r.item == item && r.patch == Patch::Yes)
            {
                let _ = writeln!(out, "{} = {}", row.field, toml_string(&row.recommended));
            }
        }
    }
    out
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// The human-readable report: settings, one line per asset's data and statistics, then every row.
fn table(h: &Header<'_>, calibrated: &[Calibrated<'_>], rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "calibration {} of protocol file {}",
        h.calibration, h.protocol
    );
    let _ = writeln!(out, "{}\n", header_line(h));
    let _ = writeln!(
        out,
        "{:<6} {:<44} {:<42} {:>8} {:>7} {:>6} {:>5} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8}",
        "asset", "data", "window", "step_s", "horizon", "n_obs", "gaps", "last_close", "ES_down", "ES_dn_i", "ES_up", "ES_up_i", "ES_abs", "ES_abs_i", "depth_usd", "ref_usd", "slippage"
    );
    for c in calibrated {
        let r = &c.returns;
        let t = &c.tail;
        let _ = writeln!(
            out,
            "{:<6} {:<44} {:<42} {:>8} {:>7} {:>6} {:>5} {:>12} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>10.3e} {:>10.3e} {:>8.4}",
            c.config.symbol,
            Path::new(&c.entry.data)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| c.entry.data.clone()),
            window_text(r),
            r.interval_s,
            r.horizon_samples,
            t.n_observations,
            r.n_gaps,
            g(r.last_close_usd),
            t.es_down,
            t.es_down_initial,
            t.es_up,
            t.es_up_initial,
            t.es_abs,
            t.es_abs_initial,
            c.impact.depth_usd(),
            c.entry.reference_size_usd,
            c.spot.slippage_reference
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<10} {:<10} {:<29} {:>12} {:>12} {:<9} {:>7} {:>6} {:>8} {:>6} {:>6} {:<42} how",
        "section",
        "item",
        "field",
        "current",
        "recommended",
        "patch",
        "ES",
        "level",
        "slippage",
        "fee",
        "n_obs",
        "window"
    );
    for row in rows {
        let patch = match row.patch {
            Patch::Yes => "yes",
            Patch::Unchanged => "unchanged",
            Patch::ViaTier => "via tier",
        };
        let _ = writeln!(
            out,
            "{:<10} {:<10} {:<29} {:>12} {:>12} {:<9} {:>7} {:>6} {:>8} {:>6} {:>6} {:<42} {}",
            row.section,
            row.item,
            row.field,
            row.current,
            row.recommended,
            patch,
            opt(row.es, 4),
            row.es_level
                .map_or_else(|| "-".to_string(), |l| format!("{l}")),
            opt(row.slippage, 5),
            row.fee.map_or_else(|| "-".to_string(), |f| format!("{f}")),
            row.n_observations
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
            row.window.as_deref().unwrap_or("-"),
            row.how
        );
    }
    out
}

#[derive(Serialize)]
struct AssetJson<'a> {
    symbol: &'a str,
    data: &'a str,
    window_start: String,
    window_end: String,
    interval_s: i64,
    horizon_samples: usize,
    n_samples: usize,
    n_gaps: usize,
    n_missing: i64,
    n_observations: usize,
    last_close_usd: f64,
    depth_usd: f64,
    reference_size_usd: f64,
    slippage_reference: f64,
    slippage_per_root_token: f64,
    premium_holds_to_usd: Option<f64>,
    es_down: f64,
    es_down_initial: f64,
    es_up: f64,
    es_up_initial: f64,
    es_abs: f64,
    es_abs_initial: f64,
    markets: Vec<&'a str>,
}

#[derive(Serialize)]
struct ReportJson<'a> {
    calibration: &'a str,
    protocol: &'a str,
    horizon_hours: u32,
    level: f64,
    initial_level: f64,
    impact_coefficient: f64,
    oi_slippage_budget: f64,
    assets: Vec<AssetJson<'a>>,
    rows: &'a [Row],
    patch: &'a str,
}

fn json<'a>(
    h: &'a Header<'_>,
    calibrated: &'a [Calibrated<'a>],
    rows: &'a [Row],
    patch: &'a str,
) -> ReportJson<'a> {
    let s = h.settings;
    ReportJson {
        calibration: &h.calibration,
        protocol: &h.protocol,
        horizon_hours: s.horizon_hours,
        level: s.levels.level(),
        initial_level: s.levels.initial_level(),
        impact_coefficient: s.impact_coefficient,
        oi_slippage_budget: s.oi_slippage_budget,
        assets: calibrated
            .iter()
            .map(|c| AssetJson {
                symbol: &c.config.symbol,
                data: &c.entry.data,
                window_start: format_utc(c.returns.first_utc_s),
                window_end: format_utc(c.returns.last_utc_s),
                interval_s: c.returns.interval_s,
                horizon_samples: c.returns.horizon_samples,
                n_samples: c.returns.n_samples,
                n_gaps: c.returns.n_gaps,
                n_missing: c.returns.n_missing,
                n_observations: c.tail.n_observations,
                last_close_usd: c.returns.last_close_usd,
                depth_usd: c.impact.depth_usd(),
                reference_size_usd: c.entry.reference_size_usd,
                slippage_reference: c.spot.slippage_reference,
                slippage_per_root_token: c.spot.slippage_per_root_token,
                premium_holds_to_usd: c.spot.premium_holds_to_usd,
                es_down: c.tail.es_down,
                es_down_initial: c.tail.es_down_initial,
                es_up: c.tail.es_up,
                es_up_initial: c.tail.es_up_initial,
                es_abs: c.tail.es_abs,
                es_abs_initial: c.tail.es_abs_initial,
                markets: c.entry.markets.iter().map(String::as_str).collect(),
            })
            .collect(),
        rows,
        patch,
    }
}

// ----- applying a patch -------------------------------------------------------------------------------------------

/// The protocol file text with a patch applied: for every `[[asset]]`, `[[market]]` (keyed by `symbol`),
/// `[[tier]]` or `[[perp_tier]]` (keyed by `name`) of the patch, the entry of the protocol file with that key gets
/// the patch's values for the fields it lists. Comments, order and layout of the protocol file are kept. Refused:
/// another top-level key, an entry without its key, a key the protocol file does not have, a field the entry does
/// not already have (a patch changes values, it does not add fields), and a sub-table. The result is not validated
/// here: callers pass it to `ProtocolConfig::from_toml`.
pub fn apply_patch(protocol_toml: &str, patch_toml: &str) -> Result<String, String> {
    use toml_edit::{DocumentMut, Item};
    let mut document: DocumentMut = protocol_toml.parse().map_err(|e: toml_edit::TomlError| {
        format!("protocol file: {}", one_line(&e.to_string()))
    })?;
    let patch: DocumentMut = patch_toml
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("patch: {}", one_line(&e.to_string())))?;
    for (section, entries) in patch.iter() {
        let key = match section {
            "asset" | "market" => "symbol",
            "tier" | "perp_tier" => "name",
            other => {
                return Err(format!(
                    "patch: [{other}] cannot be patched (only [[asset]], [[market]], [[tier]] and [[perp_tier]])"
                ))
            }
        };
        let entries = entries
            .as_array_of_tables()
            .ok_or_else(|| format!("patch: {section} must be written as [[{section}]]"))?;
        let targets = document
            .get_mut(section)
            .and_then(Item::as_array_of_tables_mut)
            .ok_or_else(|| format!("patch: the protocol file has no [[{section}]]"))?;
        for (i, entry) in entries.iter().enumerate() {
            let name = entry
                .get(key)
                .and_then(Item::as_str)
                .ok_or_else(|| format!("patch: [[{section}]] number {} has no {key}", i + 1))?;
            let target = targets
                .iter_mut()
                .find(|t| t.get(key).and_then(Item::as_str) == Some(name))
                .ok_or_else(|| format!("patch: {section} {name} is not in the protocol file"))?;
            for (field, item) in entry.iter() {
                if field == key {
                    continue;
                }
                let Some(value) = item.as_value() else {
                    return Err(format!(
                        "patch: {section} {name}: {field} is a table; only values can be patched"
                    ));
                };
                let Some(existing) = target.get_mut(field).and_then(Item::as_value_mut) else {
                    return Err(format!(
                        "patch: {section} {name}: {field} is not a value of the protocol file's entry"
                    ));
                };
                let decor = existing.decor().clone();
                *existing = value.clone();
                *existing.decor_mut() = decor;
            }
        }
    }
    Ok(document.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_protocol() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/protocol.toml"),
        )
        .unwrap()
    }

    #[test]
    fn a_patch_changes_only_its_fields_and_keeps_comments() {
        let protocol = example_protocol();
        let patch = "[[asset]]\nsymbol = \"BTC\"\nmaintenance_asset_weight = \"0.85\"\n\n\
                     [[perp_tier]]\nname = \"mid-cap\"\nmaintenance_margin_ratio = \"0.07\"\n\n\
                     [[market]]\nsymbol = \"SOL-PERP\"\nsize_premium_factor = \"0.0009\"\n";
        let merged = apply_patch(&protocol, patch).unwrap();
        let config = ProtocolConfig::from_toml("merged", &merged).unwrap();
        let btc = config.assets.iter().find(|a| a.symbol == "BTC").unwrap();
        assert_eq!(btc.maintenance_asset_weight.to_string(), "0.85");
        assert_eq!(btc.initial_asset_weight.to_string(), "0.8");
        let eth = config.assets.iter().find(|a| a.symbol == "ETH").unwrap();
        assert_eq!(eth.maintenance_asset_weight.to_string(), "0.9");
        let mid = config
            .perp_tiers
            .iter()
            .find(|t| t.name == "mid-cap")
            .unwrap();
        assert_eq!(mid.maintenance_margin_ratio.to_string(), "0.07");
        let sol = config
            .markets
            .iter()
            .find(|m| m.symbol == "SOL-PERP")
            .unwrap();
        assert_eq!(sol.size_premium_factor.to_string(), "0.0009");
        // Comments and every other line survive.
        assert!(merged.contains("# A thin, volatile token"));
        let changed: Vec<(&str, &str)> = protocol
            .lines()
            .zip(merged.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(changed.len(), 3, "{changed:?}");
        assert_eq!(protocol.lines().count(), merged.lines().count());
    }

    #[test]
    fn an_empty_patch_changes_nothing() {
        let protocol = example_protocol();
        assert_eq!(apply_patch(&protocol, "# nothing\n").unwrap(), protocol);
    }

    #[test]
    fn bad_patches_are_refused() {
        let protocol = example_protocol();
        let check = |patch: &str, expected: &str| {
            let error = apply_patch(&protocol, patch).unwrap_err();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        };
        check(
            "[[asset]]\nsymbol = \"XYZ\"\nmaintenance_asset_weight = \"0.5\"\n",
            "asset XYZ is not in the protocol file",
        );
        check(
            "[[asset]]\nmaintenance_asset_weight = \"0.5\"\n",
            "[[asset]] number 1 has no symbol",
        );
        check(
            "[[asset]]\nsymbol = \"BTC\"\nweight = \"0.5\"\n",
            "asset BTC: weight is not a value",
        );
        check(
            "[[asset]]\nsymbol = \"BTC\"\n[asset.oracle]\nmax_staleness_s = 1\n",
            "asset BTC: oracle is a table",
        );
        check("[protocol]\nname = \"x\"\n", "[protocol] cannot be patched");
        check("asset = 1\n", "asset must be written as [[asset]]");
        check("[[asset\n", "patch: TOML parse error");
    }
}
