//! Portfolio margin: the requirement is the worst loss of the whole book over the `[portfolio_margin]` grid of the
//! example protocol (moves -16 % .. +16 % in 4 % steps x volatility down/unchanged/up, tail moves +-33 % and +-50 %
//! at weight 0.3, contingencies 1 % per short option contract and 0.5 % per perp token, initial = 1.3 x
//! maintenance). Hand-computed cases, hedges against the sum of their parts, a full-revaluation check against the
//! f64 reference, new-risk checks and liquidation.

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use ballast_num::Quote;
use ballast_risk::{EuropeanOption, Model, OptionInputs, OptionKind};
use common::*;

const CALL: &str = "BTC-29DEC23-60000-C";
const PUT: &str = "BTC-29DEC23-50000-P";
const EXPIRY: u64 = 1_703_836_800;

/// The flat example venue with prices, and a well-funded counterparty (sub-account 0).
fn venue() -> (Venue, u32) {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let c = v.sub(100, MarginSpec::Cross);
    v.deposit(c, "USDC", "10000000");
    (v, c)
}

/// Maintenance requirement of a sub-account: its equity at the oracle less its maintenance health.
fn requirement(v: &Venue, id: u32) -> Quote {
    v.engine
        .equity(id)
        .unwrap()
        .checked_sub(v.health(id).maintenance)
        .unwrap()
}

#[test]
fn one_btc_deposit_needs_its_worst_core_loss_and_initial_is_the_multiple() {
    let (mut v, _) = venue();
    let a = v.sub(1, MarginSpec::Portfolio);
    v.deposit(a, "BTC", "1");
    let h = v.health(a);
    // Worst core loss: -16 % of 60,000 = 9,600; the worst tail, 0.3 * 30,000 = 9,000, is smaller.
    assert_eq!(h.maintenance, quote("50400"));
    // Initial: 1.3 * 9,600 = 12,480; liquidation-end halfway: 9,600 + 0.5 * 2,880 = 11,040.
    assert_eq!(h.initial, quote("47520"));
    assert_eq!(h.liquidation_end, quote("48960"));
    // The same deposit in a cross sub-account counts at weight 0.9 for maintenance: 54,000 (health 54,000), but
    // a debt against it differs: portfolio margin lets it borrow up to what the scenarios allow.
    let r = v.withdraw(a, "USDC", "47521").unwrap_err();
    assert_eq!(r.code, "insufficient_health", "{r}");
    // Borrowing 40,000 USDC: equity 20,000, requirement 9,600 (USDC is not shocked).
    v.withdraw(a, "USDC", "40000").unwrap();
    assert_eq!(v.health(a).maintenance, quote("10400"));
}

#[test]
fn a_delta_hedged_book_needs_visibly_less_than_the_sum_of_its_parts() {
    let (mut v, c) = venue();
    let spot = v.sub(1, MarginSpec::Portfolio);
    v.deposit(spot, "BTC", "1");
    let perp = v.sub(2, MarginSpec::Portfolio);
    v.deposit(perp, "USDC", "20000");
    v.fill("BTC-PERP", perp, c, false, "1", "60000").unwrap();
    let both = v.sub(3, MarginSpec::Portfolio);
    v.deposit(both, "BTC", "1");
    v.fill("BTC-PERP", both, c, false, "1", "60000").unwrap();

    let parts = requirement(&v, spot)
        .checked_add(requirement(&v, perp))
        .unwrap();
    let hedged = requirement(&v, both);
    // Spot 9,600; short perp 9,600 + 300 contingency; together the moves cancel (to a micro-dollar of rounding)
    // and only the perp contingency (0.005 * 60,000) is left.
    assert_eq!(requirement(&v, spot), quote("9600"));
    assert_eq!(requirement(&v, perp), quote("9900.000001"));
    assert_eq!(hedged, quote("300.000001"));
    assert!(hedged.raw() * 20 < parts.raw(), "{hedged} vs {parts}");
    // A standard cross sub-account holding the same book needs 10 % of the BTC (weight 0.9) plus 3 % of the perp.
    let cross = v.sub(4, MarginSpec::Cross);
    v.deposit(cross, "BTC", "1");
    v.fill("BTC-PERP", cross, c, false, "1", "60000").unwrap();
    let standard = v
        .engine
        .equity(cross)
        .unwrap()
        .checked_sub(v.health(cross).maintenance)
        .unwrap();
    assert!(hedged.raw() * 10 < standard.raw(), "{hedged} vs {standard}");
}

#[test]
fn a_covered_call_and_a_put_spread_need_less_than_their_legs() {
    let (mut v, c) = venue();
    // Covered call: 1 BTC and a short at-the-money call.
    let stock = v.sub(1, MarginSpec::Portfolio);
    v.deposit(stock, "BTC", "1");
    let call = v.sub(2, MarginSpec::Portfolio);
    v.deposit(call, "USDC", "30000");
    v.fill(CALL, call, c, false, "1", "4500").unwrap();
    let covered = v.sub(3, MarginSpec::Portfolio);
    v.deposit(covered, "BTC", "1");
    v.fill(CALL, covered, c, false, "1", "4500").unwrap();
    let legs = requirement(&v, stock)
        .checked_add(requirement(&v, call))
        .unwrap();
    let together = requirement(&v, covered);
    assert!(
        together.raw() * 10 < legs.raw() * 6,
        "covered call {together} vs legs {legs}"
    );
    // Long BTC-PERP protected by a long put: the put caps the downside.
    let protected = v.sub(4, MarginSpec::Portfolio);
    v.deposit(protected, "USDC", "30000");
    v.fill("BTC-PERP", protected, c, true, "1", "60000")
        .unwrap();
    let naked = requirement(&v, protected);
    v.fill(PUT, protected, c, true, "1", "1000").unwrap();
    let with_put = requirement(&v, protected);
    assert!(with_put < naked, "{with_put} vs {naked}");
}

/// The engine's requirement for a lone short option equals the grid's worst loss computed with the f64 reference
/// (Black-Scholes from `ballast-risk`), plus the contingency, to within a cent.
#[test]
fn a_short_option_is_revalued_over_the_whole_grid() {
    for (market, strike, kind) in [
        (CALL, 60_000.0, OptionKind::Call),
        (PUT, 50_000.0, OptionKind::Put),
    ] {
        let (mut v, c) = venue();
        v.t = EXPIRY - 10 * 86_400; // ten days to expiry: vol shocks x sqrt(30 / 10)
        v.all_prices();
        let a = v.sub(1, MarginSpec::Portfolio);
        v.deposit(a, "USDC", "100000");
        v.fill(market, a, c, false, "2", "2000").unwrap();
        let engine = requirement(&v, a);

        let m = v.engine.market_index(market).unwrap();
        let vol: f64 = v.engine.markets()[m as usize]
            .mark_vol
            .to_string()
            .parse()
            .unwrap();
        let years = 10.0 / 365.0;
        let price = |s: f64, sigma: f64| {
            EuropeanOption::new(OptionInputs {
                model: Model::BlackScholes,
                kind,
                underlying: s,
                strike,
                rate: 0.0,
                dividend_yield: 0.0,
                expiry_years: years,
            })
            .unwrap()
            .price(sigma)
            .unwrap()
        };
        let mark = price(60_000.0, vol);
        let f = 3.0f64.sqrt();
        let mut worst = 0.0f64;
        for m in [-0.16, -0.12, -0.08, -0.04, 0.0, 0.04, 0.08, 0.12, 0.16] {
            for sigma in [vol * (1.0 - 0.3 * f), vol, vol * (1.0 + 0.5 * f)] {
                worst = worst.max(2.0 * (price(60_000.0 * (1.0 + m), sigma) - mark));
            }
        }
        for m in [-0.5, -0.33, 0.33, 0.5] {
            worst = worst.max(0.3 * 2.0 * (price(60_000.0 * (1.0 + m), vol) - mark));
        }
        let expected = worst + 2.0 * 0.01 * 60_000.0;
        let engine: f64 = engine.to_string().parse().unwrap();
        assert!(
            (engine - expected).abs() < 0.01,
            "{market}: engine {engine}, reference {expected}"
        );
    }
}

#[test]
fn portfolio_sub_accounts_need_the_section_and_obey_isolation_rules() {
    let mut v = Venue::new(flat_config_with(|f| f.portfolio_margin = None));
    v.ok(CommandKind::CreateAccount { owner: 1 });
    let r = v.rejected(CommandKind::OpenSubAccount {
        owner: 1,
        margin: MarginSpec::Portfolio,
    });
    assert_eq!(r.code, "no_portfolio_margin", "{r}");

    let (mut v, _) = venue();
    let a = v.sub(1, MarginSpec::Portfolio);
    let r = v.rejected(CommandKind::Deposit {
        sub_account: a,
        asset: "MNGO".into(),
        amount: qty("100"),
    });
    assert_eq!(r.code, "isolated_only_asset", "{r}");
}

#[test]
fn a_portfolio_margined_option_writer_is_liquidated_back_to_liquidation_end() {
    let (mut v, c) = venue();
    let a = v.sub(1, MarginSpec::Portfolio);
    v.deposit(a, "USDC", "30000");
    v.fill(CALL, a, c, false, "2", "4500").unwrap();
    let l = v.sub(9, MarginSpec::Cross);
    v.deposit(l, "USDC", "5000000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    v.t += 60;
    let events = v.price("BTC", "70000");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::MarginCall { sub_account, .. } if *sub_account == a)),
        "{events:?}"
    );
    v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: a,
    });
    let h = v.health(a);
    let flat = v.engine.sub_accounts()[a as usize]
        .perps
        .iter()
        .all(|p| p.base.is_zero());
    assert!(!h.liquidation_end.is_negative() || flat, "{h:?}");
    assert!(!v.health(l).maintenance.is_negative());
}

/// Under portfolio margin liquidation-end health is concave in the step (the requirement is a maximum of losses):
/// buying back part of an over-hedging short restores the account although buying back all of it would not.
#[test]
fn a_partial_step_is_found_when_health_rises_then_falls_with_the_step() {
    let (mut v, c) = venue();
    let a = v.sub(1, MarginSpec::Portfolio);
    v.deposit(a, "BTC", "1");
    v.fill("BTC-PERP", a, c, false, "2", "60000").unwrap();
    v.withdraw(a, "USDC", "45000").unwrap();
    let l = v.sub(9, MarginSpec::Cross);
    v.deposit(l, "USDC", "5000000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    v.t += 60;
    v.all_prices();
    v.t += 1;
    v.price("BTC", "66000");
    assert!(v.health(a).liquidation_end.is_negative());
    let events = v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: a,
    });
    let Some(Event::PerpLiquidated { full_close, .. }) = events
        .iter()
        .find(|e| matches!(e, Event::PerpLiquidated { .. }))
    else {
        panic!("{events:?}")
    };
    assert!(!full_close, "a partial step: {events:?}");
    assert!(
        !v.health(a).liquidation_end.is_negative(),
        "{:?}",
        v.health(a)
    );
    let left = v.engine.sub_accounts()[a as usize].perps[0].base;
    assert!(left.is_negative(), "part of the short is left: {left:?}");
}

/// A book too large for the exact sums is rounded holding by holding, and keeps every contingency.
#[test]
fn a_whale_book_beyond_exact_sums_keeps_its_contingencies() {
    for (eth, contingency) in [("100000", "1500000"), ("150000", "2250000")] {
        let (mut v, c) = venue();
        v.deposit(c, "USDC", "900000000");
        let a = v.sub(1, MarginSpec::Portfolio);
        v.deposit(a, "ETH", eth);
        v.fill("ETH-PERP", a, c, false, eth, "3000").unwrap();
        let required = requirement(&v, a);
        // The moves cancel to within rounding; the 0.5 % perp contingency stays.
        assert!(required >= quote(contingency), "{eth} ETH: {required}");
        assert!(
            required <= quote(contingency).checked_add(quote("1")).unwrap(),
            "{eth} ETH: {required}"
        );
    }
}

/// Initial health values a deposit at min(oracle, reference), as everywhere: after a jump the slow reference lags,
/// and new risk counts the deposit at the reference; maintenance counts it at the oracle.
#[test]
fn initial_health_values_collateral_at_the_lower_of_oracle_and_reference() {
    let (mut v, _) = venue();
    let a = v.sub(1, MarginSpec::Portfolio);
    v.deposit(a, "BTC", "1");
    v.t += 60;
    v.price("BTC", "63000");
    let btc = v.engine.asset_index("BTC").unwrap();
    let reference = v.engine.oracle(btc).unwrap().reference;
    assert!(reference < price("63000"), "{reference}");
    let h = v.health(a);
    // Requirement 0.16 * 63,000 = 10,080; initial 1.3 times that.
    assert_eq!(h.maintenance, quote("52920"));
    let expected = reference
        .value_floor(ballast_num::TokenAmount::from_raw(100_000_000), 8)
        .unwrap()
        .checked_sub(quote("13104"))
        .unwrap();
    // The haircut is rounded up: at most one micro-dollar below the exact figure.
    let diff = expected.raw() - h.initial.raw();
    assert!(
        (0..=1).contains(&diff),
        "initial {} vs {expected}",
        h.initial
    );
}
