//! Perpetual futures: fills, fees, margin at three levels, open-interest scaling and caps, and the protocol-level
//! switches (reduce-only, pause, phased margin multiplier); funding is in `funding.rs`. Size premia are off
//! (`flat_config`), so expected values are one-line formulas.

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use common::*;

#[test]
fn a_fill_opens_two_positions_and_charges_both_fees() {
    let (v, a, b) = one_btc_long();
    let market = v.engine.sub_accounts()[a as usize].perps[0];
    // A paid 60,000 and a 0.05% taker fee (30); B received 60,000 less a 0.02% maker fee (12).
    assert_eq!(
        (market.base.raw(), market.quote),
        (100_000_000, quote("-60030"))
    );
    let short = v.engine.sub_accounts()[b as usize].perps[0];
    assert_eq!(
        (short.base.raw(), short.quote),
        (-100_000_000, quote("59988"))
    );
    // A: 10,000 USDC + PnL (60,000 - 60,030) - 60,000 * ratio, ratio 0.05 | 0.04 | 0.03.
    let h = v.health(a);
    assert_eq!(
        (h.initial, h.liquidation_end, h.maintenance),
        (quote("6970"), quote("7570"), quote("8170"))
    );
    let h = v.health(b);
    assert_eq!((h.initial, h.maintenance), (quote("6988"), quote("8188"))); // 10000 - 12 - 3000 | 1800
}

#[test]
fn a_fill_beyond_initial_margin_is_refused_and_changes_nothing() {
    let (mut v, a, b) = one_btc_long();
    let before = v.engine.state_hash();
    // 4.5 BTC need 13,500 of initial margin; A has about 7,000.
    let r = v.fill("BTC-PERP", a, b, true, "3.5", "60000").unwrap_err();
    assert_eq!(r.code, "insufficient_health", "{r}");
    assert!(
        r.message
            .starts_with("BTC-PERP fill (taker sub-account 0) would leave initial health at -"),
        "{}",
        r.message
    );
    assert_eq!(v.engine.state_hash(), before);
}

#[test]
fn a_price_drop_calls_the_long_and_not_the_short() {
    let (mut v, a, b) = one_btc_long();
    v.t += 1;
    // A's maintenance: 10,000 + (P - 60,030) - 0.03 P, zero at P = 51,577.3.
    let events = v.price("BTC", "51600");
    assert!(!events.iter().any(|e| matches!(e, Event::MarginCall { .. })));
    v.t += 1;
    let events = v.price("BTC", "51500");
    let calls: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::MarginCall { sub_account, .. } => Some(*sub_account),
            _ => None,
        })
        .collect();
    assert_eq!(calls, vec![a]);
    assert_eq!(v.health(a).maintenance, quote("-75")); // 10000 - 8530 - 1545
    assert!(v.health(b).maintenance.is_positive());
}

#[test]
fn open_interest_raises_initial_margin_and_its_cap_binds() {
    let mut v = Venue::new(config_with(|f| {
        for m in &mut f.market {
            m.size_premium_factor = ballast_num::Ratio::ZERO;
        }
        let tier = f
            .perp_tier
            .iter_mut()
            .find(|t| t.name == "large-cap")
            .unwrap();
        tier.open_interest_lower_cap = "100000".parse().unwrap();
        tier.open_interest_upper_cap = "200000".parse().unwrap();
    }));
    v.all_prices();
    let a = v.sub(1, MarginSpec::Cross);
    let b = v.sub(2, MarginSpec::Cross);
    v.deposit(a, "USDC", "1000000");
    v.deposit(b, "USDC", "1000000");
    v.fill("BTC-PERP", a, b, true, "2.5", "60000").unwrap();
    // Open interest 150,000 USD is halfway between the caps: initial ratio 0.05 + 0.95 * 0.5 = 0.525.
    let h = v.health(a);
    let pnl = quote("-75"); // taker fee on 150,000
    assert_eq!(
        h.initial,
        quote("1000000")
            .checked_add(pnl)
            .unwrap()
            .checked_sub(quote("78750"))
            .unwrap()
    );
    let r = v.fill("BTC-PERP", a, b, true, "1", "60000").unwrap_err();
    assert_eq!(r.code, "open_interest_cap");
    assert_eq!(
        r.message,
        "fill would raise BTC-PERP open interest to 210000 USD, above the cap of 200000"
    );
    // Reducing open interest is always allowed.
    v.fill("BTC-PERP", a, b, false, "1", "60000").unwrap();
}

#[test]
fn reduce_only_pause_and_a_phased_margin_multiplier() {
    let (mut v, a, b) = one_btc_long();
    v.ok(CommandKind::SetMarketRisk {
        market: "BTC-PERP".into(),
        reduce_only: Some(true),
        paused: None,
        margin_multiplier: None,
        phase_s: 0,
    });
    let r = v.fill("BTC-PERP", a, b, true, "0.1", "60000").unwrap_err();
    assert_eq!(r.code, "reduce_only_market");
    v.fill("BTC-PERP", a, b, false, "0.5", "60000").unwrap(); // both sides shrink
    v.ok(CommandKind::SetMarketRisk {
        market: "BTC-PERP".into(),
        reduce_only: Some(false),
        paused: Some(true),
        margin_multiplier: None,
        phase_s: 0,
    });
    assert_eq!(
        v.fill("BTC-PERP", a, b, false, "0.1", "60000")
            .unwrap_err()
            .code,
        "market_paused"
    );
    v.ok(CommandKind::SetMarketRisk {
        market: "BTC-PERP".into(),
        reduce_only: None,
        paused: Some(false),
        margin_multiplier: None,
        phase_s: 0,
    });

    // Double the margin over 1,000 s: halfway, maintenance is 0.03 * 1.5 on the 0.5 BTC left.
    let m0 = v.health(a).maintenance;
    v.ok(CommandKind::SetMarketRisk {
        market: "BTC-PERP".into(),
        reduce_only: None,
        paused: None,
        margin_multiplier: Some("2".parse().unwrap()),
        phase_s: 1000,
    });
    v.t += 500;
    v.price("USDC", "1");
    // Interest does not touch this account (no borrow); the requirement rose from 0.5 * 60000 * 0.03 = 900 to 1350.
    assert_eq!(
        v.health(a).maintenance,
        m0.checked_sub(quote("450")).unwrap()
    );
    let r = v.rejected(CommandKind::SetMarketRisk {
        market: "BTC-PERP".into(),
        reduce_only: None,
        paused: None,
        margin_multiplier: Some("0.5".parse().unwrap()),
        phase_s: 0,
    });
    assert_eq!(r.code, "bad_parameter");
}

#[test]
fn isolated_only_markets_trade_only_in_their_isolated_sub_accounts() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let cross = v.sub(1, MarginSpec::Cross);
    let iso = v.sub(1, MarginSpec::Isolated("MNGO".into()));
    let iso2 = v.sub(2, MarginSpec::Isolated("MNGO".into()));
    v.deposit(cross, "USDC", "1000");
    v.deposit(iso, "USDC", "1000");
    v.deposit(iso2, "USDC", "1000");
    assert_eq!(
        v.fill("MNGO-PERP", cross, iso, true, "100", "0.03")
            .unwrap_err()
            .code,
        "isolated_only_asset"
    );
    assert_eq!(
        v.fill("BTC-PERP", iso, cross, true, "0.001", "60000")
            .unwrap_err()
            .code,
        "not_allowed_in_isolated"
    );
    v.fill("MNGO-PERP", iso, iso2, true, "1000", "0.03")
        .unwrap();
    assert_eq!(
        v.fill("MNGO-PERP", iso, iso2, true, "0.5", "0.03")
            .unwrap_err()
            .code,
        "bad_amount"
    ); // step 1
}
