//! `ballast check CONFIG`: validate a protocol file and print what it holds, for people (not a stable format).
//!
//! On success it prints the protocol section (with the bankruptcy waterfall's steps in order), the tiers and three
//! tables keyed by asset symbol: risk (decimals, tier, collateral mode, the four weights, size premium,
//! concentration threshold, caps, reserve factor), oracle limits, and the interest curve with the annual borrow rate
//! it gives at 0% utilization, at each kink and at 100%; then the perp tiers (margin ratios, open-interest caps, the
//! insurance cap per bankruptcy, the markets in each), the perp markets (underlying, tier, step size, size premium,
//! fees, max leverage, positive-PnL weight, funding interval and clamp) and how the counterparty pool quotes each
//! market (impact depth, max impact, max exposure; `-` for a market that does not trade against the pool).
//! Every number is printed exactly as the engine holds it (decimal, no rounding).

use crate::{load_config, Failure};
use ballast_engine::config::{CollateralMode, WaterfallStep};
use ballast_engine::ProtocolConfig;
use ballast_num::Ratio;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

pub fn check(path: &Path) -> Result<(), Failure> {
    let loaded = load_config(path)?;
    let text = describe(&path.display().to_string(), &loaded.config);
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        // `ballast check x | head`: the reader has seen enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::internal(format!("cannot write to stdout: {e}"))),
    }
}

/// The human-readable description of a validated protocol file.
pub fn describe(source: &str, config: &ProtocolConfig) -> String {
    let p = &config.protocol;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{source}: ok ({} tiers, {} assets, {} perp tiers, {} markets)\n",
        config.tiers.len(),
        config.assets.len(),
        config.perp_tiers.len(),
        config.markets.len()
    );
    let _ = writeln!(out, "protocol                             {}", p.name);
    let _ = writeln!(
        out,
        "quote asset                          {}",
        p.quote_asset
    );
    let _ = writeln!(
        out,
        "liquidation_end_fraction             {}",
        p.liquidation_end_fraction
    );
    let _ = writeln!(
        out,
        "liquidation_insurance_share          {}",
        p.liquidation_insurance_share
    );
    let _ = writeln!(
        out,
        "liquidation_max_step_notional (USD)  {}",
        p.liquidation_max_step_notional
    );
    let _ = writeln!(
        out,
        "insurance_unstake_cooldown_s         {}",
        p.insurance_unstake_cooldown_s
    );
    let _ = writeln!(
        out,
        "socialized_loss_withdrawal_pause_s   {}",
        p.socialized_loss_withdrawal_pause_s
    );
    // The steps as the protocol file spells them, first to last.
    let steps: Vec<&str> = p
        .bankruptcy_waterfall
        .iter()
        .map(|step| match step {
            WaterfallStep::VenueClaims => "venue_claims",
            WaterfallStep::Insurance => "insurance",
            WaterfallStep::Socialize => "socialize",
        })
        .collect();
    let _ = writeln!(
        out,
        "bankruptcy_waterfall                 {}\n",
        steps.join(" -> ")
    );

    out.push_str("tiers\n");
    let rows = config
        .tiers
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.max_maintenance_asset_weight.to_string(),
                t.min_maintenance_liability_weight.to_string(),
                t.insurance_cap_per_bankruptcy.to_string(),
                config
                    .assets
                    .iter()
                    .filter(|a| a.tier == t.name)
                    .map(|a| a.symbol.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "tier",
            "max maint asset w",
            "min maint liab w",
            "insurance cap (USD)",
            "assets",
        ],
        rows,
    ));

    out.push_str(
        "\nassets (weights: asset initial/maint, liability initial/maint; caps in whole tokens)\n",
    );
    let rows = config
        .assets
        .iter()
        .map(|a| {
            vec![
                a.symbol.clone(),
                a.decimals.to_string(),
                a.tier.clone(),
                match a.collateral {
                    CollateralMode::Cross => "cross".to_string(),
                    CollateralMode::IsolatedOnly => "isolated_only".to_string(),
                },
                a.initial_asset_weight.to_string(),
                a.maintenance_asset_weight.to_string(),
                a.initial_liability_weight.to_string(),
                a.maintenance_liability_weight.to_string(),
                a.size_premium_factor.to_string(),
                a.concentration_threshold.to_string(),
                a.deposit_cap.to_string(),
                a.borrow_cap.to_string(),
                a.reserve_factor.to_string(),
                a.liquidation_fee.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "asset",
            "decimals",
            "tier",
            "collateral",
            "init asset w",
            "maint asset w",
            "init liab w",
            "maint liab w",
            "size premium",
            "concentration",
            "deposit cap",
            "borrow cap",
            "reserve factor",
            "liquidation fee",
        ],
        rows,
    ));

    out.push_str("\noracle limits\n");
    let rows = config
        .assets
        .iter()
        .map(|a| {
            let o = &a.oracle;
            vec![
                a.symbol.clone(),
                o.max_staleness_s.to_string(),
                o.max_confidence.to_string(),
                o.max_divergence.to_string(),
                o.reference_time_constant_s.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "asset",
            "max staleness s",
            "max confidence",
            "max divergence",
            "reference tau s",
        ],
        rows,
    ));

    out.push_str("\ninterest (annual borrow rate by utilization)\n");
    let rows = config
        .assets
        .iter()
        .map(|a| {
            let c = &a.interest;
            let join = |values: Vec<String>| values.join(", ");
            vec![
                a.symbol.clone(),
                c.borrow_rate(Ratio::ZERO).to_string(),
                join(c.kinks.iter().map(|k| k.to_string()).collect()),
                join(
                    c.kinks
                        .iter()
                        .map(|k| c.borrow_rate(*k).to_string())
                        .collect(),
                ),
                c.borrow_rate(Ratio::ONE).to_string(),
                join(c.slopes.iter().map(|s| s.to_string()).collect()),
                c.max_rate.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "asset",
            "rate at 0%",
            "kinks",
            "rate at kinks",
            "rate at 100%",
            "slopes",
            "max rate",
        ],
        rows,
    ));

    out.push_str(
        "\nperp tiers (margin ratios; open interest caps in USD of long open interest at the oracle; insurance cap: \
         the most the quote asset's insurance fund pays toward one bankrupt position, USD)\n",
    );
    let rows = config
        .perp_tiers
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.initial_margin_ratio.to_string(),
                t.maintenance_margin_ratio.to_string(),
                t.open_interest_lower_cap.to_string(),
                t.open_interest_upper_cap.to_string(),
                t.insurance_cap_per_bankruptcy.to_string(),
                config
                    .markets
                    .iter()
                    .filter(|m| m.tier == t.name)
                    .map(|m| m.symbol.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "perp tier",
            "initial margin",
            "maint margin",
            "OI lower cap",
            "OI upper cap",
            "insurance cap (USD)",
            "markets",
        ],
        rows,
    ));

    out.push_str(
        "\nmarkets (step size in whole base tokens; fees, premium and weight are ratios; funding clamp per interval)\n",
    );
    let rows = config
        .markets
        .iter()
        .map(|m| {
            vec![
                m.symbol.clone(),
                m.underlying.clone(),
                m.tier.clone(),
                m.step_size.to_string(),
                m.size_premium_factor.to_string(),
                m.taker_fee.to_string(),
                m.maker_fee.to_string(),
                m.liquidation_fee.to_string(),
                m.max_leverage.to_string(),
                m.positive_pnl_initial_weight.to_string(),
                m.funding
                    .as_ref()
                    .map_or("-".into(), |f| f.interval_s.to_string()),
                m.funding
                    .as_ref()
                    .map_or("-".into(), |f| f.max_rate_per_interval.to_string()),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "market",
            "underlying",
            "tier",
            "step size",
            "size premium",
            "taker fee",
            "maker fee",
            "liq fee",
            "max leverage",
            "+pnl init w",
            "funding interval s",
            "funding clamp",
        ],
        rows,
    ));

    let series: Vec<_> = config
        .markets
        .iter()
        .filter_map(|m| m.option.as_ref().map(|o| (m, o)))
        .collect();
    if !series.is_empty() {
        out.push_str(
            "\noption series (European, cash-settled in the quote asset; strike in USD per whole token, expiry in Unix \
             seconds, vol per square root of a year; short margin per contract = max(share * S - OTM, floor * S), at most the \
             strike for a put)\n",
        );
        let rows = series
            .iter()
            .map(|(m, o)| {
                vec![
                    m.symbol.clone(),
                    match o.kind {
                        ballast_engine::perp::OptionKind::Call => "call".into(),
                        ballast_engine::perp::OptionKind::Put => "put".into(),
                    },
                    o.strike.to_string(),
                    o.expiry_s.to_string(),
                    o.mark_vol.to_string(),
                    format!("{} / {}", o.initial_share, o.initial_floor),
                    format!("{} / {}", o.maintenance_share, o.maintenance_floor),
                    o.long_initial_weight.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "series",
                "kind",
                "strike",
                "expiry",
                "mark vol",
                "init share / floor",
                "maint share / floor",
                "long init w",
            ],
            rows,
        ));
    }

    out.push_str(
        "\ncounterparty pool quoting (impact = skew / impact depth, skew the traders' mean net position against the \
         pool over a trade in USD, at most max impact, on top of the oracle's confidence; the pool's position notional \
         stays within max exposure times the pool's value; - where the market does not trade with the pool)\n",
    );
    let rows = config
        .markets
        .iter()
        .map(|m| match &m.pool {
            Some(pool) => vec![
                m.symbol.clone(),
                pool.impact_depth.to_string(),
                pool.max_impact.to_string(),
                pool.max_exposure.to_string(),
            ],
            None => vec![m.symbol.clone(), "-".into(), "-".into(), "-".into()],
        })
        .collect();
    out.push_str(&table(
        &["market", "impact depth (USD)", "max impact", "max exposure"],
        rows,
    ));
    match &config.portfolio_margin {
        None => out.push_str("\nportfolio margin: off (no [portfolio_margin] section)\n"),
        Some(pm) => {
            let list = |moves: &[ballast_num::Ratio]| {
                moves
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let grid = ballast_engine::portfolio::Grid::new(pm.clone());
            out.push_str(&format!(
                "\nportfolio margin ({} scenarios; requirement = worst loss per underlying + contingencies)\n\
                 \x20 price moves         {}\n\
                 \x20 vol shocks          up {} / down {} (relative), x sqrt({} days / days to expiry) up to x{}\n\
                 \x20 tail moves          {} at weight {}\n\
                 \x20 contingencies       {} x S per short option contract, {} x S per perp token\n\
                 \x20 initial multiple    {}\n\
                 \x20 slice fee           {} x the requirement a liquidation slice frees\n",
                grid.scenarios.len(),
                list(&pm.price_moves),
                pm.vol_shock_up,
                pm.vol_shock_down,
                pm.vol_shock_reference_days,
                pm.vol_shock_max_multiplier,
                list(&pm.tail_moves),
                pm.tail_weight,
                pm.short_option_contingency,
                pm.perp_contingency,
                pm.initial_multiple,
                pm.liquidation_fee,
            ));
        }
    }
    out
}

/// Left-aligned columns separated by two spaces, a header row, and a rule under it.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let mut text = String::from("  ");
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let _ = write!(text, "{cell:<width$}");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for row in rows {
        line(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let text = table(
            &["a", "bb"],
            vec![
                vec!["long".into(), "1".into()],
                vec!["x".into(), "22".into()],
            ],
        );
        assert_eq!(
            text, "  a     bb\n  ----  --\n  long  1\n  x     22\n",
            "{text}"
        );
    }
}
