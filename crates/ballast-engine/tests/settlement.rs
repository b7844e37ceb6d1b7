//! Settling perp PnL into the quote token: what a loser pays with, and where a deficit it cannot pay goes.

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

/// A liquidated long: A (10,000 USDC) is insolvent at 45,000, so it is closed in full at the oracle price with no fee,
/// and keeps a flat position with quote -60,030 + 45,000 = -15,030. Its loss is owed to B (short since 60,000:
/// 59,988 - 45,000 = 14,988) and to the venue (42 of trading fees). A 50,000 USDC insurance fund.
fn liquidated_long() -> (Venue, u32, u32, u32) {
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
    (v, a, b, l)
}

#[test]
fn a_loser_with_only_a_quote_deposit_pays_that_deposit_and_leaves_the_rest_to_the_perp_waterfall() {
    let (mut v, a, b, _) = liquidated_long();
    // B is owed 14,988 but A holds only 10,000 USDC and nothing else: it pays that and borrows nothing.
    let events = v.ok(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: b,
        loser: a,
    });
    let Event::PnlSettled { amount, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(*amount, qty("10000"));
    assert!(v.engine.sub_accounts()[a as usize].balances.is_empty());
    for kind in [
        CommandKind::SettlePnl {
            market: "BTC-PERP".into(),
            winner: b,
            loser: a,
        },
        CommandKind::SettleVenueClaims {
            market: "BTC-PERP".into(),
            loser: a,
        },
    ] {
        let r = v.rejected(kind);
        assert_eq!(r.code, "nothing_to_settle", "{r}");
        assert!(r.message.contains("no collateral"), "{r}");
    }
    // The deficit of 5,030 stays in the perp position: the venue's claims (42) are written off, and the USDC
    // insurance fund pays B the 4,988 it is still owed. Nothing is socialized.
    let events = v.ok(CommandKind::ResolveBankruptcy { target: a });
    let Event::PerpBankruptcyResolved {
        deficit,
        from_venue_claims,
        covered_by_insurance,
        socialized,
        bankruptcy_price,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(*deficit, quote("5030"));
    assert_eq!(*from_venue_claims, quote("42"));
    assert_eq!(*covered_by_insurance, qty("4988"));
    assert_eq!(*socialized, quote("0"));
    assert_eq!(*bankruptcy_price, None);
    let paid: Vec<(u32, _)> = events
        .iter()
        .filter_map(|e| match e {
            Event::InsurancePaidWinner { winner, amount, .. } => Some((*winner, *amount)),
            _ => None,
        })
        .collect();
    assert_eq!(paid, vec![(b, qty("4988"))]);
    assert!(v.engine.sub_accounts()[a as usize].perps.is_empty());
    assert_eq!(
        v.engine.balance_native(b, 0).unwrap().raw(),
        114_988_000_000
    );
    let market = &v.engine.markets()[0];
    assert_eq!(
        (
            market.claims_written_off,
            market.insurance_paid,
            market.socialized_loss
        ),
        (quote("42"), quote("4988"), quote("0"))
    );
    assert_eq!(v.engine.pool(0).bad_debt_covered.raw(), 4_988_000_000);
    v.engine.check_invariants().unwrap();
}

#[test]
fn a_loser_with_other_collateral_borrows_against_its_value_and_no_further() {
    let (mut v, a, b) = long_and_short();
    // A also holds 0.01 BTC: a settlement may borrow against it, up to what it is worth.
    v.deposit(a, "BTC", "0.01");
    let l = v.sub(4, MarginSpec::Cross);
    v.deposit(l, "USDC", "100000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    v.t += 1;
    v.price("BTC", "45000");
    v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: a,
    });
    let events = v.ok(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: b,
        loser: a,
    });
    let Event::PnlSettled { amount, .. } = &events[0] else {
        panic!("{events:?}")
    };
    // B is owed 14,988; A pays its 10,000 deposit and borrows 450, what its 0.01 BTC is worth at 45,000.
    assert_eq!(*amount, qty("10450"));
    assert_eq!(v.engine.balance_native(a, 0).unwrap().raw(), -450_000_000);
    // The liquidator swaps the BTC for that debt (at the oracle: A is insolvent, so no bonus), and the rest of A's
    // loss (15,030 - 10,450 = 4,580) stays in its perp position for the perp waterfall.
    let events = v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: a,
    });
    assert!(
        matches!(&events[0], Event::SpotLiquidated { repaid, seized, .. } if *repaid == qty("450") && *seized == qty("0.01")),
        "{events:?}"
    );
    assert!(v.engine.sub_accounts()[a as usize].balances.is_empty());
    let events = v.ok(CommandKind::ResolveBankruptcy { target: a });
    assert!(
        matches!(&events[0], Event::PerpBankruptcyResolved { deficit, .. } if *deficit == quote("4580")),
        "{events:?}"
    );
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
