//! Tests of calibration: rounding, a two-point return distribution whose ES is known by hand (every formula checked
//! exactly), monotonicity (volatility, depth, level), the size premium against the square-root model it stands
//! for, horizon returns with gaps and windows, tier combination, and the real BTC daily history.

use super::*;
use crate::data::{load_csv, parse_csv};
use std::path::Path;

fn close(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "got {actual}, expected {expected} ± {tolerance}"
    );
}

fn d(text: &str) -> Decimal {
    // Test helper: parse "0.083" as mantissa and exponent.
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = format!("{whole}{fraction}");
    Decimal::new(digits.parse().unwrap(), -(fraction.len() as i32))
}

// ----- decimals ---------------------------------------------------------------------------------------------------

/// `Decimal::floor` and `ceil` of `x` to `step` print as `down` and `up`.
fn check_round(x: f64, step: Step, down: &str, up: &str) {
    assert_eq!(Decimal::floor(x, step).to_string(), down, "floor({x})");
    assert_eq!(Decimal::ceil(x, step).to_string(), up, "ceil({x})");
}

#[test]
fn rounding_steps_and_display() {
    let two = Step::Places(2);
    check_round(0.8356, two, "0.83", "0.84");
    // 0.83 is 0.82999... in binary: it is on the step, not below it.
    check_round(0.83, two, "0.83", "0.83");
    check_round(1.0 - 0.17, two, "0.83", "0.83");
    check_round(1.1612, two, "1.16", "1.17");
    check_round(1.0, two, "1", "1");
    check_round(0.0, two, "0", "0");
    check_round(-0.2, two, "0", "0");
    check_round(0.004, two, "0", "0.01");
    check_round(0.0512, Step::Places(3), "0.051", "0.052");
    let sig = Step::Significant(2);
    check_round(0.000_512_3, sig, "0.00051", "0.00052");
    check_round(123_456_789.0, sig, "120000000", "130000000");
    check_round(99_600.0, sig, "99000", "100000");
    check_round(0.05, sig, "0.05", "0.05");
    check_round(7.0, sig, "7", "7");
    assert!(d("0.05") == Decimal::new(500, -4));
    assert!(d("0.051") > d("0.05"));
    assert!(d("120000000") > d("99000000"));
    assert_eq!(d("0.5").max(d("0.25")).to_string(), "0.5");
    assert_eq!(d("0.5").min(d("0.25")).to_string(), "0.25");
    assert_eq!(Decimal::ZERO.to_string(), "0");
    assert_eq!(Decimal::new(12, 3).to_string(), "12000");
}

// ----- the two-point case -----------------------------------------------------------------------------------------

/// 1980 returns of +1 % and 20 of -10 %: at 0.99 (type 7: h = 1999·0.99 = 1979.01, VaR between -0.01 and 0.10) the
/// down-tail is exactly the twenty -10 % returns, so ES_down = 0.10; at 0.995 (h = 1989.005) too. The up-tail is the
/// +1 % returns at both levels: ES_up = 0.01. |r|: twenty 0.10 and 1980 0.01, ES_abs = 0.10 at both levels.
fn two_point_returns() -> Vec<f64> {
    let mut returns = vec![0.01; 1980];
    returns.extend([-0.10; 20]);
    returns
}

fn levels_99() -> Levels {
    Levels::new(0.99, None).unwrap()
}

fn major_tier() -> TierBounds {
    TierBounds {
        max_maintenance_asset_weight: 0.95,
        min_maintenance_liability_weight: 1.05,
    }
}

#[test]
fn two_point_tail_is_known_by_hand() {
    let tail = tail_risk(&two_point_returns(), levels_99()).unwrap();
    assert_eq!(tail.n_observations, 2000);
    close(tail.levels.initial_level(), 0.995, 1e-15);
    close(tail.es_down, 0.10, 1e-12);
    close(tail.es_down_initial, 0.10, 1e-12);
    close(tail.es_up, 0.01, 1e-12);
    close(tail.es_up_initial, 0.01, 1e-12);
    close(tail.es_abs, 0.10, 1e-12);
    close(tail.es_abs_initial, 0.10, 1e-12);
}

#[test]
fn two_point_asset_formulas() {
    // depth 1e8 USD, k = 1, Q_ref = 1e6 USD: slippage = sqrt(0.01) = 0.1. P = 100 USD, fee 0.04.
    let inputs = AssetInputs {
        tail: tail_risk(&two_point_returns(), levels_99()).unwrap(),
        impact: SquareRootImpact::new(1e8, 1.0).unwrap(),
        reference_size_usd: 1e6,
        price_usd: 100.0,
        liquidation_fee: 0.04,
    };
    let r = recommend_asset(&inputs, &major_tier()).unwrap();
    close(r.slippage_reference, 0.1, 1e-15);
    // 1 − (0.10 + 0.10 + 0.04) = 0.76.
    close(r.maintenance_asset_weight.model, 0.76, 1e-12);
    assert_eq!(r.maintenance_asset_weight.recommended.to_string(), "0.76");
    assert_eq!(r.maintenance_asset_weight.bound, None);
    assert_eq!(r.initial_asset_weight.recommended.to_string(), "0.76");
    // 1 + 0.01 + 0.10 + 0.04 = 1.15.
    close(r.maintenance_liability_weight.model, 1.15, 1e-12);
    assert_eq!(
        r.maintenance_liability_weight.recommended.to_string(),
        "1.15"
    );
    assert_eq!(r.initial_liability_weight.recommended.to_string(), "1.15");
    // c = sqrt(100 / 1e8) = 0.001, x_ref = sqrt(1e6 / 100) = 100, a = 1 − 0.10 − 0.04 = 0.86:
    // f = 2·0.001 / (0.86 + 0.1) = 0.0020833..., up to 0.0021. x_half = 0.96 / 0.002 = 480: 480²·100 USD.
    close(r.slippage_per_root_token, 0.001, 1e-15);
    close(r.size_premium_factor.model, 0.002 / 0.96, 1e-15);
    assert_eq!(r.size_premium_factor.recommended.to_string(), "0.0021");
    close(r.premium_holds_to_usd.unwrap(), 480.0 * 480.0 * 100.0, 1e-3);

    // A tier whose max is below the model caps it; a tier min above the model raises the liability weight.
    let tight = TierBounds {
        max_maintenance_asset_weight: 0.7,
        min_maintenance_liability_weight: 1.25,
    };
    let r = recommend_asset(&inputs, &tight).unwrap();
    assert_eq!(r.maintenance_asset_weight.recommended.to_string(), "0.7");
    assert_eq!(
        r.maintenance_asset_weight.bound,
        Some(Bound::TierMaxAssetWeight(0.7))
    );
    assert_eq!(r.initial_asset_weight.recommended.to_string(), "0.7");
    assert_eq!(r.initial_asset_weight.bound, Some(Bound::Maintenance));
    assert_eq!(
        r.maintenance_liability_weight.recommended.to_string(),
        "1.25"
    );
    assert_eq!(r.initial_liability_weight.recommended.to_string(), "1.25");
}

#[test]
fn two_point_market_formulas() {
    let inputs = MarketInputs {
        tail: tail_risk(&two_point_returns(), levels_99()).unwrap(),
        impact: SquareRootImpact::new(1e8, 1.0).unwrap(),
        reference_size_usd: 1e4,
        price_usd: 100.0,
        liquidation_fee: 0.01,
        min_initial_margin_ratio: 0.05,
        oi_slippage_budget: 0.05,
        open_interest_max_usd: 1e13,
    };
    let r = recommend_market(&inputs).unwrap();
    // slippage sqrt(1e4 / 1e8) = 0.01; mmr = 0.10 + 0.01 + 0.01 = 0.12; imr the same (ES_abs equal at 0.995).
    close(r.slippage_reference, 0.01, 1e-15);
    close(r.maintenance_margin_ratio.model, 0.12, 1e-12);
    assert_eq!(r.maintenance_margin_ratio.recommended.to_string(), "0.12");
    assert_eq!(r.initial_margin_ratio.recommended.to_string(), "0.12");
    // f = c = 0.001.
    assert_eq!(r.size_premium_factor.recommended.to_string(), "0.001");
    // upper = 1e8 · 0.05² = 250,000; lower 125,000 (two significant digits, down: 120,000).
    close(r.open_interest_upper_cap.model, 250_000.0, 1e-6);
    assert_eq!(r.open_interest_upper_cap.recommended.to_string(), "250000");
    assert_eq!(r.open_interest_lower_cap.recommended.to_string(), "120000");

    // A market allowing only 5x leverage floors the initial ratio at 0.2.
    let r = recommend_market(&MarketInputs {
        min_initial_margin_ratio: 0.2,
        ..inputs
    })
    .unwrap();
    assert_eq!(r.initial_margin_ratio.recommended.to_string(), "0.2");
    assert_eq!(r.initial_margin_ratio.bound, Some(Bound::Leverage(0.2)));
    // The cap of the protocol file bounds the upper cap.
    let r = recommend_market(&MarketInputs {
        open_interest_max_usd: 100_000.0,
        ..inputs
    })
    .unwrap();
    assert_eq!(r.open_interest_upper_cap.recommended.to_string(), "100000");
    assert_eq!(r.open_interest_lower_cap.recommended.to_string(), "50000");
}

#[test]
fn a_collapsed_asset_is_worth_nothing_and_debt_is_capped() {
    // Every other return -60 %, the rest +150 %: ES_down 0.6, ES_up 1.5.
    let returns: Vec<f64> = (0..2000)
        .map(|i| if i % 2 == 0 { -0.6 } else { 1.5 })
        .collect();
    let inputs = AssetInputs {
        tail: tail_risk(&returns, levels_99()).unwrap(),
        impact: SquareRootImpact::new(1e6, 1.0).unwrap(),
        reference_size_usd: 1e6,
        price_usd: 1.0,
        liquidation_fee: 0.1,
    };
    let r = recommend_asset(&inputs, &major_tier()).unwrap();
    assert_eq!(r.maintenance_asset_weight.recommended, Decimal::ZERO);
    assert_eq!(r.maintenance_asset_weight.bound, Some(Bound::FlooredAtZero));
    assert_eq!(r.initial_asset_weight.recommended, Decimal::ZERO);
    assert_eq!(r.premium_holds_to_usd, None);
    // 1 + 1.5 + 1 + 0.1 = 3.6.
    assert_eq!(
        r.maintenance_liability_weight.recommended.to_string(),
        "3.6"
    );
    // Premium from the debt side: c / l with c = sqrt(1 / 1e6) = 0.001, l = 3.6.
    close(r.size_premium_factor.model, 0.001 / 3.6, 1e-15);
    let r = recommend_market(&MarketInputs {
        tail: inputs.tail,
        impact: inputs.impact,
        reference_size_usd: 1e6,
        price_usd: 1.0,
        liquidation_fee: 0.05,
        min_initial_margin_ratio: 0.2,
        oi_slippage_budget: 0.05,
        open_interest_max_usd: 1e13,
    })
    .unwrap();
    assert_eq!(r.maintenance_margin_ratio.recommended.to_string(), "1");
    assert_eq!(r.maintenance_margin_ratio.bound, Some(Bound::Largest(1.0)));
    assert_eq!(r.initial_margin_ratio.recommended.to_string(), "1");
}

// ----- the size premium against the model -------------------------------------------------------------------------

#[test]
fn spot_premium_stays_below_the_model_until_the_weight_halves() {
    // BTC-like: ES_down 0.125, fee 0.04, P = 30,000, depth 4e11, Q_ref = 1e7.
    // 20 of 2000 returns at -12.5 %: the tail beyond 0.99 (h = 1979.01) is exactly them. (-0.125 is exact in binary,
    // so the tail's mean is exactly its value.)
    let up = 1.0 / 1024.0;
    let mut returns = vec![up; 1980];
    returns.extend([-0.125; 20]);
    let inputs = AssetInputs {
        tail: tail_risk(&returns, levels_99()).unwrap(),
        impact: SquareRootImpact::new(4e11, 1.0).unwrap(),
        reference_size_usd: 1e7,
        price_usd: 30_000.0,
        liquidation_fee: 0.04,
    };
    let r = recommend_asset(&inputs, &major_tier()).unwrap();
    let w = r.maintenance_asset_weight.recommended.to_f64();
    let f = r.size_premium_factor.recommended.to_f64();
    let holds_to = r.premium_holds_to_usd.unwrap();
    let model = |q: f64| 1.0 - 0.125 - 0.04 - inputs.impact.fraction(q);
    let engine = |q: f64| w / (1.0 + f * (q / inputs.price_usd).sqrt());
    // From a token to the reference size and on to where the model halves: engine <= model.
    let mut q = 1.0;
    while q <= holds_to {
        assert!(engine(q) <= model(q) + 1e-12, "at {q} USD");
        q *= 1.1;
    }
    // At the half-weight size the exact fit is equal; the rounded f is a little stricter.
    close(
        model(holds_to),
        (1.0 - 0.125 - 0.04 - r.slippage_reference) / 2.0,
        1e-9,
    );
    // Beyond it the square-root model falls to 0 and the engine's weight does not: the premium is not enough there.
    let far = holds_to * 4.0;
    assert!(engine(far) > model(far));
    // Liability side: l·(1 + f·x) >= the model for every size from the reference up.
    let l = r.maintenance_liability_weight.recommended.to_f64();
    let mut q = inputs.reference_size_usd;
    while q < 1e13 {
        let x = (q / inputs.price_usd).sqrt();
        assert!(l * (1.0 + f * x) >= 1.0 + up + 0.04 + inputs.impact.fraction(q));
        q *= 1.5;
    }
}

#[test]
fn perp_premium_covers_the_model_at_every_size() {
    let returns = two_point_returns();
    let inputs = MarketInputs {
        tail: tail_risk(&returns, levels_99()).unwrap(),
        impact: SquareRootImpact::new(3e9, 0.7).unwrap(),
        reference_size_usd: 1e5,
        price_usd: 1700.0,
        liquidation_fee: 0.01,
        min_initial_margin_ratio: 0.05,
        oi_slippage_budget: 0.05,
        open_interest_max_usd: 1e13,
    };
    let r = recommend_market(&inputs).unwrap();
    let mmr = r.maintenance_margin_ratio.recommended.to_f64();
    let f = r.size_premium_factor.recommended.to_f64();
    let mut q = 1.0;
    while q < 1e12 {
        let engine = mmr + f * (q / inputs.price_usd).sqrt();
        assert!(engine >= 0.10 + 0.01 + inputs.impact.fraction(q), "at {q}");
        q *= 1.3;
    }
}

// ----- monotonicity -----------------------------------------------------------------------------------------------

fn btc_daily_returns() -> Vec<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/binance_btcusdt_daily.csv");
    let series = load_csv(&path).unwrap();
    horizon_returns(&series, 86_400, None, None)
        .unwrap()
        .returns
}

fn asset_at(returns: &[f64], levels: Levels, depth_usd: f64) -> AssetRecommendation {
    recommend_asset(
        &AssetInputs {
            tail: tail_risk(returns, levels).unwrap(),
            impact: SquareRootImpact::new(depth_usd, 1.0).unwrap(),
            reference_size_usd: 5e6,
            price_usd: 50_000.0,
            liquidation_fee: 0.04,
        },
        &TierBounds {
            max_maintenance_asset_weight: 1.0,
            min_maintenance_liability_weight: 1.0,
        },
    )
    .unwrap()
}

fn market_at(returns: &[f64], levels: Levels, depth_usd: f64) -> MarketRecommendation {
    recommend_market(&MarketInputs {
        tail: tail_risk(returns, levels).unwrap(),
        impact: SquareRootImpact::new(depth_usd, 1.0).unwrap(),
        reference_size_usd: 5e6,
        price_usd: 50_000.0,
        liquidation_fee: 0.01,
        min_initial_margin_ratio: 0.0,
        oi_slippage_budget: 0.05,
        open_interest_max_usd: 1e13,
    })
    .unwrap()
}

#[test]
fn more_volatile_assets_get_lower_weights_and_higher_margins() {
    let btc = btc_daily_returns();
    let wild: Vec<f64> = btc.iter().map(|r| 2.0 * r).collect();
    let (calm, volatile) = (
        asset_at(&btc, levels_99(), 1e11),
        asset_at(&wild, levels_99(), 1e11),
    );
    let v = |f: Figure| f.model;
    assert!(v(volatile.maintenance_asset_weight) < v(calm.maintenance_asset_weight));
    assert!(v(volatile.initial_asset_weight) < v(calm.initial_asset_weight));
    assert!(v(volatile.maintenance_liability_weight) > v(calm.maintenance_liability_weight));
    assert!(v(volatile.initial_liability_weight) > v(calm.initial_liability_weight));
    let (calm, volatile) = (
        market_at(&btc, levels_99(), 1e11),
        market_at(&wild, levels_99(), 1e11),
    );
    assert!(v(volatile.maintenance_margin_ratio) > v(calm.maintenance_margin_ratio));
    assert!(v(volatile.initial_margin_ratio) > v(calm.initial_margin_ratio));
}

#[test]
fn deeper_markets_get_smaller_premia_and_larger_caps() {
    let btc = btc_daily_returns();
    let (thin, deep) = (
        asset_at(&btc, levels_99(), 1e10),
        asset_at(&btc, levels_99(), 1e12),
    );
    assert!(deep.size_premium_factor.model < thin.size_premium_factor.model);
    assert!(deep.size_premium_factor.recommended < thin.size_premium_factor.recommended);
    assert!(deep.maintenance_asset_weight.model > thin.maintenance_asset_weight.model);
    assert!(deep.premium_holds_to_usd > thin.premium_holds_to_usd);
    let (thin, deep) = (
        market_at(&btc, levels_99(), 1e10),
        market_at(&btc, levels_99(), 1e12),
    );
    assert!(deep.size_premium_factor.recommended < thin.size_premium_factor.recommended);
    assert!(deep.open_interest_upper_cap.recommended > thin.open_interest_upper_cap.recommended);
    assert!(deep.open_interest_lower_cap.recommended > thin.open_interest_lower_cap.recommended);
    assert!(deep.maintenance_margin_ratio.model < thin.maintenance_margin_ratio.model);
}

#[test]
fn higher_levels_give_stricter_numbers() {
    let btc = btc_daily_returns();
    let mut previous: Option<(AssetRecommendation, MarketRecommendation)> = None;
    for level in [0.95, 0.975, 0.99] {
        let levels = Levels::new(level, None).unwrap();
        let (a, m) = (asset_at(&btc, levels, 1e11), market_at(&btc, levels, 1e11));
        if let Some((pa, pm)) = previous {
            assert!(a.maintenance_asset_weight.model < pa.maintenance_asset_weight.model);
            assert!(a.initial_asset_weight.model < pa.initial_asset_weight.model);
            assert!(a.maintenance_liability_weight.model > pa.maintenance_liability_weight.model);
            assert!(m.maintenance_margin_ratio.model > pm.maintenance_margin_ratio.model);
            assert!(m.initial_margin_ratio.model > pm.initial_margin_ratio.model);
            assert!(
                a.maintenance_asset_weight.recommended <= pa.maintenance_asset_weight.recommended
            );
            assert!(
                m.maintenance_margin_ratio.recommended >= pm.maintenance_margin_ratio.recommended
            );
        }
        // Initial is stricter than maintenance at every level.
        assert!(a.initial_asset_weight.model <= a.maintenance_asset_weight.model);
        assert!(m.initial_margin_ratio.model >= m.maintenance_margin_ratio.model);
        previous = Some((a, m));
    }
}

#[test]
fn btc_daily_history_gives_plausible_numbers() {
    let btc = btc_daily_returns();
    let tail = tail_risk(&btc, levels_99()).unwrap();
    println!(
        "BTC daily: n {} ES_down {} ES_up {} ES_abs {}",
        tail.n_observations, tail.es_down, tail.es_up, tail.es_abs
    );
    assert!(tail.n_observations > 3000);
    // One-day 99 % ES of BTC since 2017: some 10-15 %.
    assert!(tail.es_down > 0.08 && tail.es_down < 0.20);
    assert!(tail.es_up > 0.06 && tail.es_up < 0.20);
    assert!(tail.es_abs >= tail.es_down.max(tail.es_up));
    assert!(tail.es_down_initial >= tail.es_down);
}

// ----- horizon returns and windows --------------------------------------------------------------------------------

const HOURLY: &str = "datetime_utc,close\n\
2020-03-01T00:00:00Z,100\n\
2020-03-01T01:00:00Z,110\n\
2020-03-01T02:00:00Z,99\n\
2020-03-01T04:00:00Z,120\n\
2020-03-01T05:00:00Z,60\n\
2020-03-01T06:00:00Z,66\n";

#[test]
fn horizon_returns_skip_gaps_and_respect_the_window() {
    let series = parse_csv("h.csv", HOURLY).unwrap();
    let one = horizon_returns(&series, 3600, None, None).unwrap();
    // 00->01 +10 %, 01->02 -10 %, (gap), 04->05 -50 %, 05->06 +10 %.
    assert_eq!(one.returns.len(), 4);
    close(one.returns[2], -0.5, 1e-15);
    assert_eq!((one.n_samples, one.n_gaps, one.n_missing), (6, 1, 1));
    assert_eq!(one.horizon_samples, 1);
    assert_eq!(one.last_close_usd, 66.0);
    assert_eq!(format_utc(one.first_utc_s), "2020-03-01");
    assert_eq!(format_utc(one.last_utc_s), "2020-03-01T06:00:00Z");
    // Two-hour returns: 00->02 and 04->06 only.
    let two = horizon_returns(&series, 7200, None, None).unwrap();
    assert_eq!(two.returns.len(), 2);
    close(two.returns[0], -0.01, 1e-12);
    close(two.returns[1], -0.45, 1e-12);
    // A window from 04:00: 04->05 and 05->06.
    let from = parse_date_utc_s("2020-03-01").unwrap() + 4 * 3600;
    let window = horizon_returns(&series, 3600, Some(from), None).unwrap();
    assert_eq!(window.returns.len(), 2);
    assert_eq!(window.n_gaps, 0);
    // A window up to (not including) 01:00 holds one sample.
    let to = parse_date_utc_s("2020-03-01").unwrap() + 3600;
    assert_eq!(
        horizon_returns(&series, 3600, None, Some(to)),
        Err(CalibrationError::EmptyWindow { n_samples: 1 })
    );
    // 90 minutes is not a whole number of hours.
    assert_eq!(
        horizon_returns(&series, 5400, None, None)
            .unwrap_err()
            .to_string(),
        "horizon of 5400 s is not a whole number (>= 1) of the data's sampling interval of 3600 s"
    );
    // A horizon as long as the data.
    assert!(matches!(
        horizon_returns(&series, 6 * 3600, None, None),
        Err(CalibrationError::Data(_))
    ));
}

#[test]
fn dates_round_trip() {
    for text in [
        "1970-01-01",
        "2000-02-29",
        "2020-03-12",
        "2022-11-08",
        "2100-12-31",
    ] {
        let t = parse_date_utc_s(text).unwrap();
        assert_eq!(format_utc(t), text);
    }
    assert_eq!(parse_date_utc_s("2020-03-12"), Some(1_583_971_200));
    assert_eq!(format_utc(1_583_971_200 + 3661), "2020-03-12T01:01:01Z");
    for bad in [
        "2021-02-29",
        "2020-13-01",
        "2020-3-1",
        "20200301",
        "2020-03-01T00",
        "abcd-ef-gh",
    ] {
        assert_eq!(parse_date_utc_s(bad), None, "{bad}");
    }
}

// ----- errors -----------------------------------------------------------------------------------------------------

#[test]
fn bad_inputs_are_named() {
    let message = |e: CalibrationError| e.to_string();
    assert_eq!(
        message(Levels::new(1.0, None).unwrap_err()),
        "level 1 must be strictly between 0 and 1"
    );
    assert_eq!(
        message(Levels::new(0.99, Some(0.95)).unwrap_err()),
        "initial_level 0.95 must be at least level and below 1"
    );
    assert_eq!(
        message(SquareRootImpact::new(0.0, 1.0).unwrap_err()),
        "depth_usd 0 must be a finite number > 0"
    );
    assert_eq!(
        message(SquareRootImpact::new(1e6, f64::NAN).unwrap_err()),
        "impact_coefficient NaN must be a finite number > 0"
    );
    assert_eq!(
        message(tail_risk(&[0.01; 1999], levels_99()).unwrap_err()),
        "1999 horizon returns: at least 2000 are needed so that 10 lie beyond the initial level 0.995 (use a longer window or a lower level)"
    );
    let inputs = AssetInputs {
        tail: tail_risk(&two_point_returns(), levels_99()).unwrap(),
        impact: SquareRootImpact::new(1e8, 1.0).unwrap(),
        reference_size_usd: -1.0,
        price_usd: 100.0,
        liquidation_fee: 0.04,
    };
    assert_eq!(
        message(recommend_asset(&inputs, &major_tier()).unwrap_err()),
        "reference_size_usd -1 must be a finite number > 0"
    );
}

#[test]
fn tiers_take_the_most_demanding_market_and_never_loosen_a_partial_tier() {
    let returns = two_point_returns();
    let calm = market_at(&returns, levels_99(), 1e12);
    // Times 4: exact in binary, so the tails stay sums of equal values that average exactly.
    let wild_returns: Vec<f64> = returns.iter().map(|r| 4.0 * r).collect();
    let wild = market_at(&wild_returns, levels_99(), 1e10);
    let both = combine_tier(&[&calm, &wild], None).unwrap();
    assert_eq!(
        both.maintenance_margin_ratio,
        wild.maintenance_margin_ratio.recommended
    );
    assert_eq!(
        both.open_interest_upper_cap,
        wild.open_interest_upper_cap.recommended
    );
    assert!(both.open_interest_lower_cap < both.open_interest_upper_cap);
    let current = TierValues {
        maintenance_margin_ratio: d("0.5"),
        initial_margin_ratio: d("0.6"),
        open_interest_lower_cap: d("1000"),
        open_interest_upper_cap: d("2000"),
    };
    let partial = combine_tier(&[&calm], Some(&current)).unwrap();
    assert_eq!(partial, current);
    assert_eq!(combine_tier(&[], None), None);
}
