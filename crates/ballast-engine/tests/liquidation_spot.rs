//! Spot liquidation: a liquidator repays a borrower's debt and takes its collateral at the collateral's
//! liquidation fee, the least amount that restores liquidation-end health; the insurance fund gets its share of the
//! bonus as a deposit in the collateral's pool; every token stays accounted for.

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use common::*;

#[test]
fn a_borrower_under_water_gives_up_just_enough_collateral() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let lender = v.sub(1, MarginSpec::Cross);
    let borrower = v.sub(2, MarginSpec::Cross);
    let l = v.sub(3, MarginSpec::Cross);
    v.deposit(lender, "USDC", "1000000");
    v.deposit(borrower, "BTC", "1");
    v.deposit(l, "USDC", "100000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    v.withdraw(borrower, "USDC", "48000").unwrap();
    v.t += 1;
    v.price("BTC", "53000");
    // Maintenance 53,000 * 0.9 - 48,000 = -300; liquidation-end 53,000 * 0.85 - 48,000 = -2,950. Each USDC repaid
    // removes 1 of debt and 1.04 USDC of BTC collateral weighted 0.85: +0.116 per USDC, so about 25,431 USDC.
    let events = v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: borrower,
    });
    let Event::SpotLiquidated {
        repaid,
        seized,
        to_insurance,
        full_close,
        health_before,
        health_after,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert!(!full_close);
    assert!(
        *repaid > qty("25431") && *repaid < qty("25431.1"),
        "{repaid}"
    );
    // seized = repaid * 1.04 / 53,000 BTC; the insurance fund gets 0.25 * 0.04 of the repaid value in BTC.
    let expected_seized = repaid.raw() / 1_000_000_000 * 104 / 100 / 53_000; // in 10^-9 BTC, approximately
    assert!(
        (seized.raw() / 1_000_000_000 - expected_seized).abs() <= 10,
        "{seized}"
    ); // BTC has 8 decimals
    assert!(
        *to_insurance > qty("0.0047") && *to_insurance < qty("0.0049"),
        "{to_insurance}"
    );
    assert!(health_before.liquidation_end < quote("-2949"));
    assert!(
        !health_after.liquidation_end.is_negative()
            && health_after.liquidation_end < quote("0.001"),
        "{health_after:?}"
    );
    let btc = v.engine.asset_index("BTC").unwrap();
    assert!(v.engine.pool(btc).insurance_scaled > 0);
    assert!(v.engine.below_maintenance().is_empty());
    v.engine.check_invariants().unwrap();
}
