//! Settling perp PnL into the quote token, and the path from a perp deficit into the lending loss waterfall.

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use common::*;

fn long_and_short() -> (Venue, u32, u32) {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let lender = v.sub(9, MarginSpec::Cross);
    v.deposit(lender, "USDC", "1000000");
    let a = v.sub(1, MarginSpec::Cross);
    let b = v.sub(2, MarginSpec::Cross);
    v.deposit(a, "USDC", "10000");
    v.deposit(b, "USDC", "100000");
    v.fill("BTC-PERP", a, b, true, "1", "60000").unwrap();
    (v, a, b)
}

#[test]
fn settling_turns_unsettled_profit_into_tokens() {
    let (mut v, a, b) = long_and_short();
    v.t += 1;
    v.price("BTC", "66000");
    // A: 66,000 - 60,030 = 5,970 of profit; B: -6,000 - 12 = -6,012. The smaller moves.
    let events = v.ok(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: a,
        loser: b,
    });
    let Event::PnlSettled { amount, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(*amount, qty("5970"));
    assert_eq!(v.engine.balance_native(a, 0).unwrap().raw(), 15_970_000_000);
    assert_eq!(v.engine.balance_native(b, 0).unwrap().raw(), 94_030_000_000);
    // A's position is left with no unsettled PnL: quote -60,030 - 5,970 = -66,000 against 1 BTC at 66,000.
    assert_eq!(
        v.engine.sub_accounts()[a as usize].perps[0].quote,
        quote("-66000")
    );
    // Settling again finds no winner.
    assert_eq!(
        v.rejected(CommandKind::SettlePnl {
            market: "BTC-PERP".into(),
            winner: a,
            loser: b
        })
        .code,
        "nothing_to_settle"
    );
}

#[test]
fn a_perp_deficit_settles_into_a_usdc_debt_that_the_waterfall_resolves() {
    let (mut v, a, b) = long_and_short();
    let staker = v.sub(3, MarginSpec::Cross);
    v.deposit(staker, "USDC", "50000");
    v.ok(CommandKind::StakeInsurance {
        sub_account: staker,
        asset: "USDC".into(),
        amount: qty("50000"),
    });
    let l = v.sub(4, MarginSpec::Cross);
    v.deposit(l, "USDC", "100000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    v.t += 1;
    v.price("BTC", "45000");
    // Full close at 45,000 * 0.99: A keeps a flat position with quote -60,030 + 44,550 = -15,480.
    let events = v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: a,
    });
    assert!(
        matches!(
            &events[0],
            Event::PerpLiquidated {
                full_close: true,
                ..
            }
        ),
        "{events:?}"
    );
    // A's loss is owed to B (short since 60,000: 59,988 - 45,000 = 14,988), to the liquidator (long at 44,550:
    // 450 less its 112.5 insurance fee = 337.5) and to the venue (42 of trading fees, 112.5 of insurance share).
    v.ok(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: b,
        loser: a,
    });
    v.ok(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: l,
        loser: a,
    });
    let events = v.ok(CommandKind::SettleVenueClaims {
        market: "BTC-PERP".into(),
        loser: a,
    });
    let Event::VenueClaimsSettled {
        to_treasury,
        to_insurance,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!((*to_treasury, *to_insurance), (qty("42"), qty("112.5")));
    // A paid 10,000 from its deposit and borrowed the other 5,480.
    assert!(v.engine.sub_accounts()[a as usize].perps.is_empty());
    assert_eq!(v.engine.balance_native(a, 0).unwrap().raw(), -5_480_000_000);
    // Debt and nothing to seize: the USDC insurance fund pays it.
    let events = v.ok(CommandKind::ResolveBankruptcy { target: a });
    let Event::BankruptcyResolved {
        covered_by_insurance,
        socialized,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (*covered_by_insurance, *socialized),
        (qty("5480"), qty("0"))
    );
    assert!(v.engine.sub_accounts()[a as usize].balances.is_empty());
    v.engine.check_invariants().unwrap();
}

#[test]
fn settlement_needs_a_fresh_price() {
    let (mut v, a, b) = long_and_short();
    v.t += 1;
    v.price("BTC", "59000");
    v.t += 120; // BTC's price is now 120 s old; its limit is 60 s
    v.price("USDC", "1");
    let r = v.rejected(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: b,
        loser: a,
    });
    assert_eq!(r.code, "stale_oracle");
    let r = v.rejected(CommandKind::SettleVenueClaims {
        market: "BTC-PERP".into(),
        loser: a,
    });
    assert_eq!(r.code, "stale_oracle");
}
