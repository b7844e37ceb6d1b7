//! Rounding favours the venue: one property per rounding site of the lending pool, on random indices and amounts.
//! Each property also checks the exact conservation identity after the operation.

mod common;

use ballast_engine::config::InterestCurve;
use ballast_engine::pool::Pool;
use ballast_num::{Ratio, TokenAmount};
use common::proptest_config;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

/// A pool whose indices have grown to arbitrary values (between 1 and 50), holding some deposits and debt.
fn pool_strategy() -> impl Strategy<Value = Pool> {
    (
        0i128..49 * 10i128.pow(18),
        0i128..49 * 10i128.pow(18),
        1i128..10i128.pow(24),
        0i128..100,
    )
        .prop_map(|(supply_growth, borrow_growth, deposit, borrow_pct)| {
            let mut pool = Pool::new(0);
            pool.supply_index = Ratio::from_raw(Ratio::ONE.raw() + supply_growth);
            pool.borrow_index = Ratio::from_raw(Ratio::ONE.raw() + borrow_growth);
            pool.deposit(TokenAmount::from_raw(deposit)).unwrap();
            let borrow = deposit * borrow_pct / 100;
            if borrow > 0 {
                pool.borrow(TokenAmount::from_raw(borrow)).unwrap();
            }
            pool
        })
}

fn amount() -> impl Strategy<Value = i128> {
    prop_oneof![1i128..1_000, 1i128..10i128.pow(12), 1i128..10i128.pow(24)]
}

fn runner(test: &str, seed: u64) -> TestRunner {
    TestRunner::new(proptest_config(test, 3_000, seed))
}

#[test]
fn a_deposit_is_credited_at_most_what_came_in() {
    runner("deposit_floor", 1)
        .run(&(pool_strategy(), amount()), |(mut pool, a)| {
            let scaled = pool.deposit(TokenAmount::from_raw(a)).unwrap();
            prop_assert!(pool.deposit_native(scaled).unwrap().raw() <= a);
            pool.check_conservation().map_err(TestCaseError::fail)?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_withdrawal_debits_at_least_what_left() {
    runner("withdraw_ceil", 2)
        .run(
            &(pool_strategy(), amount(), 1i128..=100),
            |(mut pool, a, pct)| {
                let held = pool.deposit(TokenAmount::from_raw(a)).unwrap();
                let claim = pool.deposit_native(held).unwrap().raw();
                let out = (claim * pct / 100).min(pool.vault.raw());
                prop_assume!(out > 0);
                let debit = pool.withdraw(TokenAmount::from_raw(out), held).unwrap();
                prop_assert!(debit <= held);
                prop_assert!(pool.deposit_native(held - debit).unwrap().raw() <= claim - out);
                pool.check_conservation().map_err(TestCaseError::fail)?;
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn a_borrow_books_at_least_what_left() {
    runner("borrow_ceil", 3)
        .run(&(pool_strategy(), amount()), |(mut pool, a)| {
            prop_assume!(a <= pool.vault.raw());
            let scaled = pool.borrow(TokenAmount::from_raw(a)).unwrap();
            prop_assert!(pool.borrow_native(scaled).unwrap().raw() >= a);
            pool.check_conservation().map_err(TestCaseError::fail)?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_repayment_is_credited_at_most_what_came_in() {
    runner("repay_floor", 4)
        .run(
            &(pool_strategy(), amount(), 1i128..=100),
            |(mut pool, a, pct)| {
                prop_assume!(a <= pool.vault.raw());
                let owed_scaled = pool.borrow(TokenAmount::from_raw(a)).unwrap();
                let owed = pool.borrow_native(owed_scaled).unwrap().raw();
                let pay = (owed * pct / 100).max(1);
                let removed = pool.repay(TokenAmount::from_raw(pay), owed_scaled).unwrap();
                prop_assert!(removed <= owed_scaled);
                prop_assert!(
                    pool.borrow_native(owed_scaled - removed).unwrap().raw() >= owed - pay
                );
                pool.check_conservation().map_err(TestCaseError::fail)?;
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn accrual_never_pays_out_more_interest_than_borrowers_owe() {
    let curve = InterestCurve {
        base_rate: "0.01".parse().unwrap(),
        kinks: vec!["0.8".parse().unwrap()],
        slopes: vec!["0.04".parse().unwrap(), "3".parse().unwrap()],
        max_rate: "5".parse().unwrap(),
    };
    runner("accrual", 5)
        .run(
            &(pool_strategy(), 1u64..400 * 86_400, 0i128..10i128.pow(18)),
            |(mut pool, dt, rf)| {
                let reserve = Ratio::from_raw(rf);
                let supplied_before = pool.total_supplied().unwrap().raw();
                let owed_before = pool.total_borrowed().unwrap().raw();
                let surplus_before = pool.rounding_surplus;
                pool.accrue(dt, &curve, reserve).unwrap();
                let owed_gain = pool.total_borrowed().unwrap().raw() - owed_before;
                let supplied_gain = pool.total_supplied().unwrap().raw() - supplied_before;
                // Depositors and treasury together gain at most what borrowers now owe in addition (+1 for the
                // independent rounding of the two totals).
                prop_assert!(
                    supplied_gain <= owed_gain + 1,
                    "supplied +{} owed +{}",
                    supplied_gain,
                    owed_gain
                );
                prop_assert!(pool.rounding_surplus >= surplus_before);
                pool.check_conservation().map_err(TestCaseError::fail)?;
                Ok(())
            },
        )
        .unwrap();
}
