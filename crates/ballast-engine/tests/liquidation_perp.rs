//! Perp liquidation: only below maintenance, only by registered liquidators, the least whole number of steps
//! that restores liquidation-end health (never further), a full close when a partial one cannot, the insurance
//! share of the fee, and a liquidator that must stay healthy.

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use common::*;

/// A: 10,000 USDC and 1 BTC-PERP long bought at 60,000 (taker fee 30). B: the short. L: a registered liquidator
/// with 100,000 USDC.
fn setup() -> (Venue, u32, u32, u32) {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let a = v.sub(1, MarginSpec::Cross);
    let b = v.sub(2, MarginSpec::Cross);
    let l = v.sub(3, MarginSpec::Cross);
    v.deposit(a, "USDC", "10000");
    v.deposit(b, "USDC", "100000");
    v.deposit(l, "USDC", "100000");
    v.fill("BTC-PERP", a, b, true, "1", "60000").unwrap();
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    (v, a, b, l)
}

fn liquidate(
    v: &mut Venue,
    liquidator: u32,
    target: u32,
) -> Result<Vec<Event>, ballast_engine::Rejection> {
    v.apply(CommandKind::Liquidate { liquidator, target })
}

#[test]
fn a_partial_liquidation_stops_at_liquidation_end_health() {
    let (mut v, a, _, l) = setup();
    v.t += 1;
    v.price("BTC", "51500");
    // Liquidation-end: 10,000 + (51,500 - 60,030) - 51,500 * 0.04 = -590. Each BTC taken at 51,500 * 0.99 improves
    // it by 51,500 * (0.04 - 0.01) = 1,545: 590 / 1,545 = 0.38188 BTC, so 0.3819 in steps of 0.0001.
    assert_eq!(v.health(a).liquidation_end, quote("-590"));
    let events = liquidate(&mut v, l, a).unwrap();
    let Event::PerpLiquidated {
        base,
        price: p,
        fee,
        insurance_fee,
        full_close,
        health_before,
        health_after,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(*base, qty("0.3819"));
    assert_eq!(*p, price("50985"));
    assert_eq!(*fee, quote("196.6785")); // 0.3819 * 51,500 * 0.01
    assert_eq!(*insurance_fee, quote("49.169625")); // a quarter of it, rounded down
    assert!(!full_close);
    assert_eq!(health_before.liquidation_end, quote("-590"));
    // 0.3819 * 1545 - 590 = 0.0355: at or just above zero, and one step less would not have sufficed.
    assert_eq!(health_after.liquidation_end, quote("0.0355"));
    assert!(quote("0.0355") < quote("0.1545")); // less than one step's improvement past zero
                                                // The liquidator holds the long now and is healthy; the target is out of its margin call.
    assert_eq!(
        v.engine.sub_accounts()[l as usize].perps[0].base.raw(),
        38_190_000
    );
    assert!(!v.health(l).initial.is_negative());
    assert!(v.engine.below_maintenance().is_empty());
    // Nothing more to take: maintenance is no longer negative.
    assert_eq!(
        liquidate(&mut v, l, a).unwrap_err().code,
        "not_liquidatable"
    );
}

#[test]
fn a_deeply_underwater_position_is_closed_fully() {
    let (mut v, a, _, l) = setup();
    v.t += 1;
    v.price("BTC", "45000");
    // Liquidation-end: 10,000 - 15,030 - 1,800 = -6,830. A is insolvent (worth 10,000 - 15,030), so the fee is zero
    // (it would come out of the insurance fund and the other traders): closing all of it at the oracle price frees
    // the 1,800 of requirement.
    let events = liquidate(&mut v, l, a).unwrap();
    let Event::PerpLiquidated {
        base,
        full_close,
        health_after,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!((*base, *full_close), (qty("1"), true));
    assert_eq!(health_after.liquidation_end, quote("-5030"));
    let Event::PerpLiquidated { price: p, fee, .. } = &events[0] else {
        unreachable!()
    };
    assert_eq!((*p, *fee), (price("45000"), quote("0")));
    // The target keeps its (negative) unsettled PnL as a flat position's quote balance.
    let left = v.engine.sub_accounts()[a as usize].perps[0];
    assert!(left.base.is_zero() && left.quote.is_negative());
}

#[test]
fn only_registered_liquidators_and_only_accounts_below_maintenance() {
    let (mut v, a, b, l) = setup();
    let r = v.rejected(CommandKind::Liquidate {
        liquidator: l,
        target: a,
    });
    assert_eq!(r.code, "not_liquidatable");
    v.t += 1;
    v.price("BTC", "51500");
    let r = v.rejected(CommandKind::Liquidate {
        liquidator: b,
        target: a,
    });
    assert_eq!(r.code, "not_liquidator");
    let r = v.rejected(CommandKind::Liquidate {
        liquidator: l,
        target: l,
    });
    assert_eq!(r.code, "bad_liquidation");
    assert_eq!(
        v.rejected(CommandKind::RegisterLiquidator { sub_account: l })
            .code,
        "duplicate_liquidator"
    );
}

#[test]
fn a_liquidator_that_would_become_unhealthy_is_refused() {
    let (mut v, a, _, _) = setup();
    let poor = v.sub(4, MarginSpec::Cross);
    v.deposit(poor, "USDC", "100");
    v.ok(CommandKind::RegisterLiquidator { sub_account: poor });
    v.t += 1;
    v.price("BTC", "51500");
    // 0.3819 BTC needs 0.3819 * 51,500 * 0.05 = 983 of initial margin; 100 USDC is not enough.
    let r = v.rejected(CommandKind::Liquidate {
        liquidator: poor,
        target: a,
    });
    assert_eq!(r.code, "insufficient_health", "{r}");
}
