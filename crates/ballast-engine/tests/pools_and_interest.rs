//! Lending pools through the engine: caps, liquidity, and a year of interest split between depositors and treasury.

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use common::*;

#[test]
fn a_year_at_eighty_percent_utilization() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let lender = v.sub(1, MarginSpec::Cross);
    let borrower = v.sub(2, MarginSpec::Cross);
    v.deposit(lender, "USDC", "1000000");
    v.deposit(borrower, "BTC", "100");
    v.withdraw(borrower, "USDC", "800000").unwrap();
    let usdc = v.engine.asset_index("USDC").unwrap();
    let pool = v.engine.pool(usdc).clone();
    assert_eq!(pool.utilization().unwrap(), "0.8".parse().unwrap());
    let curve = &v.engine.assets()[usdc as usize].interest;
    let borrow_rate = curve.borrow_rate(pool.utilization().unwrap());
    assert_eq!(borrow_rate, "0.04".parse().unwrap());
    assert_eq!(
        pool.supply_rate(borrow_rate, "0.1".parse().unwrap())
            .unwrap(),
        "0.0288".parse().unwrap()
    );

    v.t += 365 * 86_400;
    let events = v.ok(CommandKind::AccrueInterest {
        asset: Some("USDC".into()),
    });
    let Event::InterestAccrued {
        borrow_rate,
        borrow_index,
        elapsed_s,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (*borrow_rate, *elapsed_s),
        ("0.04".parse().unwrap(), 365 * 86_400)
    );
    // Continuous compounding for one year at 4%: e^0.04 = 1.04081077419238822670...; exp rounds to the nearest raw
    // unit (...227) and the index adds one more, so it is never below the true growth.
    assert_eq!(*borrow_index, "1.040810774192388228".parse().unwrap());
    let debt = -v.engine.balance_native(borrower, usdc).unwrap().raw();
    assert_eq!(debt, 832_648_619_354); // 800,000 * e^0.04, rounded up to the micro-USDC
    let interest = debt - 800_000_000_000;
    let lender_balance = v.engine.balance_native(lender, usdc).unwrap().raw();
    let treasury = v.engine.pool(usdc).treasury_native().unwrap().raw();
    // Depositors get 90% of the interest, the treasury 10%, each within a couple of micro-USDC of rounding.
    assert!(
        (lender_balance - (1_000_000_000_000 + interest * 9 / 10)).abs() <= 2,
        "{lender_balance}"
    );
    assert!((treasury - interest / 10).abs() <= 2, "{treasury}");
    assert!(
        lender_balance + treasury <= 1_000_000_000_000 + interest,
        "claims exceed assets"
    );
    v.engine.check_invariants().unwrap();
}

#[test]
fn caps_and_liquidity_bound_deposits_and_borrows() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let whale = v.sub(1, MarginSpec::Cross);
    let r = v.rejected(CommandKind::Deposit {
        sub_account: whale,
        asset: "BTC".into(),
        amount: qty("50000.00000001"),
    });
    assert_eq!(r.code, "deposit_cap");
    assert_eq!(
        r.message,
        "deposit would raise total BTC deposits to 50000.00000001, above the cap of 50000"
    );
    v.deposit(whale, "BTC", "50000");
    v.deposit(whale, "USDC", "100");
    let r = v.withdraw(whale, "USDC", "100.000001").unwrap_err();
    assert_eq!(r.code, "insufficient_liquidity");
    assert_eq!(
        r.message,
        "withdraw of 100.000001 USDC: only 100 is available in the pool"
    );
    // BTC borrow cap is 10,000 BTC; the pool has 50,000.
    let saver = v.sub(2, MarginSpec::Cross);
    v.deposit(saver, "USDC", "1000000000");
    let r = v.withdraw(saver, "BTC", "10000.00000001").unwrap_err();
    assert_eq!(r.code, "borrow_cap");
    // MNGO cannot be borrowed at all.
    let isolated = v.sub(3, MarginSpec::Isolated("MNGO".into()));
    v.deposit(isolated, "USDC", "1000");
    let r = v.withdraw(isolated, "MNGO", "1").unwrap_err();
    assert_eq!(r.code, "not_borrowable");
}

#[test]
fn amounts_must_fit_the_asset() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let s = v.sub(1, MarginSpec::Cross);
    let r = v.rejected(CommandKind::Deposit {
        sub_account: s,
        asset: "USDC".into(),
        amount: qty("1.0000001"),
    });
    assert_eq!(
        r.message,
        "amount 1.0000001 USDC has more than 6 decimal places"
    );
    let r = v.rejected(CommandKind::Deposit {
        sub_account: s,
        asset: "USDC".into(),
        amount: qty("0"),
    });
    assert_eq!(r.message, "amount 0 USDC must be positive");
    let r = v.rejected(CommandKind::Deposit {
        sub_account: 7,
        asset: "USDC".into(),
        amount: qty("1"),
    });
    assert_eq!(r.message, "sub-account 7 does not exist");
    let r = v.rejected(CommandKind::Deposit {
        sub_account: s,
        asset: "DOGE".into(),
        amount: qty("1"),
    });
    assert_eq!(r.message, "asset DOGE is not listed");
}

#[test]
fn a_repayment_is_never_refused_by_the_deposit_cap() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let lender = v.sub(1, MarginSpec::Cross);
    let borrower = v.sub(2, MarginSpec::Cross);
    v.deposit(lender, "BTC", "50000"); // exactly the cap
    v.deposit(borrower, "USDC", "1000000000");
    v.withdraw(borrower, "BTC", "10000").unwrap();
    // Two years of interest lift total BTC supply above the cap (the clock moves at most a year per command).
    for _ in 0..2 {
        v.t += 365 * 86_400;
        v.ok(CommandKind::AccrueInterest {
            asset: Some("BTC".into()),
        });
    }
    let btc = v.engine.asset_index("BTC").unwrap();
    assert!(v.engine.pool(btc).total_supplied().unwrap().raw() > 50_000 * 100_000_000);
    v.all_prices();
    // New supply is refused, a repayment is not.
    let r = v.rejected(CommandKind::Deposit {
        sub_account: lender,
        asset: "BTC".into(),
        amount: qty("1"),
    });
    assert_eq!(r.code, "deposit_cap");
    v.deposit(borrower, "BTC", "5000");
}
