//! Oracle guard rails are per action: an unreliable price blocks new risk that depends on it, never a deposit,
//! a repayment, or a withdrawal that keeps health non-negative without it.

mod common;

use ballast_engine::{CommandKind, MarginSpec};
use common::*;

/// Borrower: 1 BTC, 40,000 USDC borrowed. Saver: USDC and BTC deposits, no debt. Then 95 s pass without a BTC
/// price (BTC's limit is 60 s), while USDC is refreshed.
fn stale_btc() -> (Venue, u32, u32) {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let borrower = v.sub(1, MarginSpec::Cross);
    let saver = v.sub(2, MarginSpec::Cross);
    v.deposit(saver, "USDC", "1000000");
    v.deposit(saver, "BTC", "2");
    v.deposit(borrower, "BTC", "1");
    v.withdraw(borrower, "USDC", "40000").unwrap();
    v.t += 95;
    v.price("USDC", "1");
    (v, borrower, saver)
}

#[test]
fn stale_collateral_blocks_borrowing_against_it() {
    let (mut v, borrower, _) = stale_btc();
    let r = v.rejected(CommandKind::Withdraw {
        sub_account: borrower,
        asset: "USDC".into(),
        amount: qty("1"),
        reduce_only: false,
    });
    assert_eq!(r.code, "insufficient_health");
    assert!(
        r.message
            .starts_with("withdraw of 1 USDC would leave initial health at -40001")
            && r.message.ends_with(
                "counting BTC collateral at zero (its oracle is stale: 95 s old, limit 60 s)"
            ),
        "{}",
        r.message
    );
}

#[test]
fn a_stale_asset_cannot_be_borrowed() {
    let (mut v, _, saver) = stale_btc();
    let r = v.rejected(CommandKind::Withdraw {
        sub_account: saver,
        asset: "BTC".into(),
        amount: qty("2.5"),
        reduce_only: false,
    });
    assert_eq!(r.code, "stale_oracle");
    assert_eq!(
        r.message,
        "withdraw of 2.5 BTC is blocked: oracle for BTC is stale: 95 s old, limit 60 s"
    );
}

#[test]
fn withdrawals_that_do_not_depend_on_the_stale_price_go_through() {
    let (mut v, borrower, saver) = stale_btc();
    // No debt: withdrawing the stale asset itself, or another asset, leaves health non-negative regardless.
    v.withdraw(saver, "BTC", "2").unwrap();
    v.withdraw(saver, "USDC", "100").unwrap();
    // Repaying debt never needs a price (40,000 plus 95 s of interest; the rest becomes a deposit).
    v.deposit(borrower, "USDC", "40001");
    // Debt-free now: the borrower may take its BTC out although BTC's price is stale.
    v.withdraw(borrower, "BTC", "1").unwrap();
}

#[test]
fn a_too_uncertain_price_blocks_like_a_stale_one() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let s = v.sub(1, MarginSpec::Cross);
    let btc_lender = v.sub(2, MarginSpec::Cross);
    v.deposit(btc_lender, "BTC", "10");
    v.deposit(s, "USDC", "100000");
    v.t += 1;
    // Confidence 2% of price; BTC allows 1%.
    v.ok(CommandKind::OraclePrice {
        asset: "BTC".into(),
        price: price("60000"),
        confidence: price("1200"),
        publish_time: v.t,
    });
    let r = v.rejected(CommandKind::Withdraw {
        sub_account: s,
        asset: "BTC".into(),
        amount: qty("0.1"),
        reduce_only: false,
    });
    assert_eq!(r.code, "uncertain_oracle");
    assert!(
        r.message
            .contains("is too uncertain: confidence 0.02 of price, limit 0.01"),
        "{}",
        r.message
    );
}

#[test]
fn bad_price_updates_are_refused() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    v.t += 10;
    let cases = [
        (
            price("0"),
            price("0"),
            v.t,
            "bad_price",
            "price 0 for BTC must be positive",
        ),
        (
            price("1"),
            price("-1"),
            v.t,
            "bad_price",
            "confidence -1 for BTC must not be negative",
        ),
        (
            price("1"),
            price("0"),
            v.t + 1,
            "bad_price",
            "after the command's timestamp",
        ),
        (
            price("1"),
            price("0"),
            GENESIS,
            "old_price",
            "is not newer than the current one",
        ),
    ];
    for (p, c, publish_time, code, text) in cases {
        let r = v.rejected(CommandKind::OraclePrice {
            asset: "BTC".into(),
            price: p,
            confidence: c,
            publish_time,
        });
        assert_eq!(r.code, code);
        assert!(r.message.contains(text), "{}", r.message);
    }
    let r = v
        .engine
        .apply(&cmd(
            GENESIS - 1,
            CommandKind::AccrueInterest { asset: None },
        ))
        .unwrap_err();
    assert_eq!(r.code, "time_goes_backwards");
}

/// Review finding F1: after a pause in the feed, one manipulated print must not drag its own reference along and
/// pass the divergence check.
#[test]
fn one_print_after_a_pause_cannot_vouch_for_itself() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let a = v.sub(1, MarginSpec::Cross);
    let lender = v.sub(2, MarginSpec::Cross);
    v.deposit(lender, "USDC", "1000000");
    v.deposit(a, "BTC", "1");
    v.t += 7_200; // two hours without a BTC price
    v.price("USDC", "1");
    v.price("BTC", "150000");
    let r = v.withdraw(a, "USDC", "90000").unwrap_err();
    assert_eq!(r.code, "insufficient_health", "{r}");
    assert!(
        r.message
            .contains("counting BTC collateral at zero (its oracle diverges"),
        "{}",
        r.message
    );
}
