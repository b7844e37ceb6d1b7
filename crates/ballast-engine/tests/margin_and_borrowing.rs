//! Borrowing against collateral, the three health levels, and margin calls on oracle moves.
//! Size premia are off (`flat_config`) so that every expected value is a one-line formula.

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use common::*;

/// Sub-account 0 holds 1 BTC and borrows USDC from a pool that sub-account 1 filled.
fn btc_borrower() -> (Venue, u32, u32) {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let borrower = v.sub(1, MarginSpec::Cross);
    let lender = v.sub(2, MarginSpec::Cross);
    v.deposit(lender, "USDC", "1000000");
    v.deposit(borrower, "BTC", "1");
    (v, borrower, lender)
}

#[test]
fn borrowing_up_to_initial_health_and_not_a_micro_dollar_more() {
    let (mut v, borrower, _) = btc_borrower();
    // 1 BTC at 60,000: initial 60000 * 0.8, liquidation-end 60000 * 0.85, maintenance 60000 * 0.9.
    let h = v.health(borrower);
    assert_eq!(
        (h.initial, h.liquidation_end, h.maintenance),
        (quote("48000"), quote("51000"), quote("54000"))
    );

    v.withdraw(borrower, "USDC", "40000").unwrap();
    let h = v.health(borrower);
    // Debt of 40,000 USDC at weight 1 and price 1 comes off every level.
    assert_eq!(
        (h.initial, h.liquidation_end, h.maintenance),
        (quote("8000"), quote("11000"), quote("14000"))
    );

    let r = v.withdraw(borrower, "USDC", "8000.000001").unwrap_err();
    assert_eq!(r.code, "insufficient_health");
    assert_eq!(
        r.message,
        "withdraw of 8000.000001 USDC would leave initial health at -0.000001 USDC"
    );

    let events = v.withdraw(borrower, "USDC", "8000").unwrap();
    match &events[0] {
        Event::Withdrawn {
            borrowed,
            balance,
            health,
            ..
        } => {
            assert_eq!(*borrowed, qty("8000"));
            assert_eq!(*balance, qty("-48000"));
            assert_eq!(health.initial, quote("0"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_price_drop_raises_a_margin_call_for_holders_only_and_a_rise_clears_it() {
    let (mut v, borrower, lender) = btc_borrower();
    v.withdraw(borrower, "USDC", "48000").unwrap();
    // Maintenance health = P * 0.9 - 48,000 crosses zero at P = 53,333.33.
    v.t += 1;
    let events = v.price("BTC", "53400");
    assert!(
        !events.iter().any(|e| matches!(e, Event::MarginCall { .. })),
        "{events:?}"
    );
    v.t += 1;
    let events = v.price("BTC", "53000");
    let calls: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::MarginCall { .. }))
        .collect();
    assert_eq!(calls.len(), 1, "{events:?}");
    match calls[0] {
        Event::MarginCall {
            sub_account,
            owner,
            maintenance_health,
        } => {
            assert_eq!((*sub_account, *owner), (borrower, 1));
            // 53000 * 0.9 - 48000 = -300, less two seconds of interest on the debt (a few micro-USD).
            assert!(
                *maintenance_health <= quote("-300") && *maintenance_health > quote("-300.001"),
                "{maintenance_health}"
            );
        }
        _ => unreachable!(),
    }
    assert_eq!(v.engine.below_maintenance(), vec![borrower]);
    // The lender holds no BTC: the BTC update never looked at it.
    assert!(!events.iter().any(|e| matches!(e, Event::MarginCall { sub_account, .. } | Event::MarginRecovered { sub_account, .. } if *sub_account == lender)));
    // A second drop does not repeat the call: it is already open.
    v.t += 1;
    let events = v.price("BTC", "52000");
    assert!(!events.iter().any(|e| matches!(e, Event::MarginCall { .. })));
    v.t += 1;
    let events = v.price("BTC", "60000");
    assert!(events.iter().any(
        |e| matches!(e, Event::MarginRecovered { sub_account, .. } if *sub_account == borrower)
    ));
    assert!(v.engine.below_maintenance().is_empty());
}

#[test]
fn initial_health_values_collateral_at_the_lower_of_oracle_and_reference() {
    let (mut v, borrower, _) = btc_borrower();
    // A sudden pump to 120,000 moves the slow reference only a little: initial health still sees ~60,000.
    v.t += 10;
    v.price("BTC", "120000");
    let h = v.health(borrower);
    let reference = v.engine.oracle(1).unwrap().reference;
    assert!(
        reference > price("60000") && reference < price("61000"),
        "{reference}"
    );
    // initial = 1 BTC * reference * 0.8 (rounded down); maintenance = 1 BTC * 120,000 * 0.9.
    let expected_initial = reference
        .value_floor(ballast_num::TokenAmount::from_raw(100_000_000), 8)
        .unwrap()
        .mul_ratio_floor("0.8".parse().unwrap())
        .unwrap();
    assert_eq!(h.initial, expected_initial);
    assert_eq!(h.maintenance, quote("108000"));
    // The pump is also far from the reference: borrowing against BTC is blocked by the divergence guard.
    let r = v.withdraw(borrower, "USDC", "1").unwrap_err();
    assert_eq!(r.code, "insufficient_health", "{r}");
    assert!(
        r.message
            .contains("counting BTC collateral at zero (its oracle diverges"),
        "{}",
        r.message
    );
}

#[test]
fn a_deposit_repays_debt_first_and_deposits_the_rest() {
    let (mut v, borrower, _) = btc_borrower();
    v.withdraw(borrower, "USDC", "1000").unwrap();
    let events = v.deposit(borrower, "USDC", "1500");
    match &events[0] {
        Event::Deposited {
            repaid, balance, ..
        } => {
            assert_eq!(*repaid, qty("1000"));
            assert_eq!(*balance, qty("500"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reduce_only_withdrawals_never_borrow() {
    let (mut v, borrower, _) = btc_borrower();
    v.deposit(borrower, "USDC", "10");
    let r = v.rejected(CommandKind::Withdraw {
        sub_account: borrower,
        asset: "USDC".into(),
        amount: qty("10.5"),
        reduce_only: true,
    });
    assert_eq!(r.code, "reduce_only");
    v.ok(CommandKind::Withdraw {
        sub_account: borrower,
        asset: "USDC".into(),
        amount: qty("10"),
        reduce_only: true,
    });
}

#[test]
fn concentration_scales_the_initial_weight_down() {
    // BTC's concentration threshold is 20,000 BTC: with 40,000 deposited, initial weight is 0.8 * 20000/40000.
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let a = v.sub(1, MarginSpec::Cross);
    let b = v.sub(2, MarginSpec::Cross);
    v.deposit(a, "BTC", "1");
    v.deposit(b, "BTC", "39999");
    let h = v.health(a);
    assert_eq!(h.initial, quote("24000")); // 60000 * 0.8 * 0.5
    assert_eq!(h.maintenance, quote("54000")); // maintenance is not scaled
}

#[test]
fn size_premium_makes_a_large_position_count_for_less() {
    // Example config: BTC size_premium_factor 0.0005 per sqrt(BTC). 10,000 BTC: premium = 1 + 0.0005 * 100 = 1.05.
    let mut v = Venue::new(example_config());
    v.all_prices();
    let whale = v.sub(1, MarginSpec::Cross);
    let minnow = v.sub(2, MarginSpec::Cross);
    v.deposit(whale, "BTC", "10000");
    v.deposit(minnow, "BTC", "1");
    let whale_per_btc = v.health(whale).maintenance.raw() / 10_000;
    let minnow_per_btc = v.health(minnow).maintenance.raw();
    // 60000 * 0.9 / 1.05 = 51,428.57 per BTC for the whale; 60000 * 0.9 / 1.0005 = 53,973.01 for one BTC.
    assert!(
        (whale_per_btc - 51_428_571_428).abs() < 2_000,
        "{whale_per_btc}"
    );
    assert!(
        (minnow_per_btc - 53_973_013_493).abs() < 2_000,
        "{minnow_per_btc}"
    );
}

/// Review finding F2: a user command that accrues the pool at the same second as the keeper's accrual must not
/// hide an interest-driven margin call.
#[test]
fn interest_driven_margin_calls_are_not_hidden_by_an_earlier_accrual() {
    let (mut v, borrower, lender) = btc_borrower();
    v.withdraw(borrower, "USDC", "48000").unwrap();
    // Maintenance 53,340 * 0.9 - 48,000 = 6: just above zero.
    v.t += 1;
    v.price("BTC", "53340");
    assert!(v.engine.below_maintenance().is_empty());
    // 30 days at 4.8% utilization (0.24% a year) add about 9.47 USDC of debt. No price moves (a price update
    // would re-check the borrower itself): only the lender's deposit, which accrues the USDC pool at this second
    // and re-checks the lender alone, then the keeper's accrual.
    v.t += 30 * 86_400;
    v.deposit(lender, "USDC", "1");
    assert!(v.engine.below_maintenance().is_empty());
    let events = v.ok(CommandKind::AccrueInterest { asset: None });
    assert!(
        events.iter().any(
            |e| matches!(e, Event::MarginCall { sub_account, .. } if *sub_account == borrower)
        ),
        "{events:?}"
    );
}
