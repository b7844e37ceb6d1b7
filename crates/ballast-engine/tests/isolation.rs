//! Isolated sub-accounts: an isolated-only asset stays in its own sub-account, and that sub-account's losses never
//! reach the owner's other sub-accounts.

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use common::*;

#[test]
fn isolated_losses_stay_isolated() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let lender = v.sub(9, MarginSpec::Cross);
    v.deposit(lender, "USDC", "1000000");
    let cross = v.sub(1, MarginSpec::Cross);
    let isolated = v.sub(1, MarginSpec::Isolated("MNGO".into()));
    v.deposit(cross, "BTC", "1");
    v.withdraw(cross, "USDC", "10000").unwrap();
    // 1,000,000 MNGO at 0.03 = 30,000 USD; initial weight 0.3 -> 9,000 of borrowing power.
    v.deposit(isolated, "MNGO", "1000000");
    assert_eq!(v.health(isolated).initial, quote("9000"));
    v.withdraw(isolated, "USDC", "8000").unwrap();
    // MNGO collapses 90%: the isolated sub-account is under water, the cross one is untouched.
    v.t += 1;
    v.price("USDC", "1"); // the clock moves; compare the cross sub-account at the same instant
    let cross_before = v.health(cross);
    let events = v.price("MNGO", "0.003");
    let calls: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::MarginCall { sub_account, .. } => Some(*sub_account),
            _ => None,
        })
        .collect();
    assert_eq!(calls, vec![isolated]);
    // 1,000,000 * 0.003 * 0.5 - 8,000 (plus a second of interest)
    assert!(v.health(isolated).maintenance < quote("-6500"));
    assert_eq!(v.health(cross), cross_before);
}

#[test]
fn what_each_kind_of_sub_account_may_hold() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let cross = v.sub(1, MarginSpec::Cross);
    let isolated = v.sub(1, MarginSpec::Isolated("MNGO".into()));
    let other_owner = v.sub(2, MarginSpec::Cross);
    v.deposit(isolated, "MNGO", "100");
    v.deposit(isolated, "USDC", "100"); // the quote asset is allowed beside the bound asset
    v.deposit(cross, "USDC", "100");

    let r = v.rejected(CommandKind::Deposit {
        sub_account: cross,
        asset: "MNGO".into(),
        amount: qty("1"),
    });
    assert_eq!(r.code, "isolated_only_asset");
    assert_eq!(r.message, "asset MNGO may only be held in an isolated sub-account bound to it; sub-account 0 is cross");
    let r = v.rejected(CommandKind::Deposit {
        sub_account: isolated,
        asset: "ETH".into(),
        amount: qty("1"),
    });
    assert_eq!(r.code, "not_allowed_in_isolated");
    assert_eq!(
        r.message,
        "isolated sub-account 1 holds only MNGO and USDC, not ETH"
    );
    let r = v.rejected(CommandKind::Transfer {
        from: isolated,
        to: cross,
        asset: "MNGO".into(),
        amount: qty("1"),
    });
    assert_eq!(r.code, "isolated_only_asset");
    let r = v.rejected(CommandKind::Transfer {
        from: cross,
        to: other_owner,
        asset: "USDC".into(),
        amount: qty("1"),
    });
    assert_eq!(r.code, "not_owner");
    let r = v.rejected(CommandKind::OpenSubAccount {
        owner: 1,
        margin: MarginSpec::Isolated("USDC".into()),
    });
    assert_eq!(r.code, "bad_isolation");
    // Moving quote between an owner's own sub-accounts is fine.
    v.ok(CommandKind::Transfer {
        from: cross,
        to: isolated,
        asset: "USDC".into(),
        amount: qty("50"),
    });
    assert_eq!(
        v.engine.balance_native(isolated, 0).unwrap().raw(),
        150_000_000
    );
}

#[test]
fn sub_accounts_per_owner_are_bounded() {
    let mut v = Venue::new(flat_config());
    for _ in 0..ballast_engine::limits::MAX_SUB_ACCOUNTS_PER_OWNER {
        v.sub(1, MarginSpec::Cross);
    }
    let r = v.rejected(CommandKind::OpenSubAccount {
        owner: 1,
        margin: MarginSpec::Cross,
    });
    assert_eq!(r.code, "limit");
}
