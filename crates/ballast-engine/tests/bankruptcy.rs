//! The lending loss waterfall: a borrower whose collateral is gone is bankrupt; its debt is paid by the asset's
//! insurance fund up to the tier cap, and the rest is written off against depositors by a supply-index haircut,
//! after which the pool's withdrawals pause. Insurance stakes are share-based with an unstaking cooldown. Every unit
//! is in an event and a ledger total, and the exact pool identity holds throughout (checked after every command).

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use common::*;

/// Lender: 1,000,000 USDC. Staker: stakes `stake` USDC in the USDC insurance fund. Borrower: 1 BTC, 48,000 USDC
/// borrowed. Then BTC falls to 30,000 and a liquidator takes all the BTC, leaving the borrower with debt only.
fn bankrupt_borrower(stake: &str) -> (Venue, u32, u32, u32) {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let lender = v.sub(1, MarginSpec::Cross);
    let staker = v.sub(2, MarginSpec::Cross);
    let borrower = v.sub(3, MarginSpec::Cross);
    let liquidator = v.sub(4, MarginSpec::Cross);
    v.deposit(lender, "USDC", "1000000");
    v.deposit(staker, "USDC", "100000");
    v.ok(CommandKind::StakeInsurance {
        sub_account: staker,
        asset: "USDC".into(),
        amount: qty(stake),
    });
    v.deposit(liquidator, "USDC", "100000");
    v.ok(CommandKind::RegisterLiquidator {
        sub_account: liquidator,
    });
    v.deposit(borrower, "BTC", "1");
    v.withdraw(borrower, "USDC", "48000").unwrap();
    v.t += 1;
    v.price("BTC", "30000");
    // Liquidation-end 30,000 * 0.85 - 48,000 = -22,500: swapping all the BTC cannot restore it, a full close. The
    // borrower is insolvent (worth 30,000 - 48,000), so the liquidator earns no bonus: it repays 30,000 of debt
    // for the 30,000 of BTC (a bonus would only come out of the insurance fund and the depositors).
    let events = v.ok(CommandKind::Liquidate {
        liquidator,
        target: borrower,
    });
    assert!(
        matches!(
            &events[0],
            Event::SpotLiquidated {
                full_close: true,
                ..
            }
        ),
        "{events:?}"
    );
    (v, lender, staker, borrower)
}

#[test]
fn the_insurance_fund_pays_a_bankrupt_debt_it_can_cover() {
    let (mut v, lender, _, borrower) = bankrupt_borrower("50000");
    let before = v.engine.balance_native(lender, 0).unwrap();
    let events = v.ok(CommandKind::ResolveBankruptcy { target: borrower });
    let Event::BankruptcyResolved {
        debt,
        covered_by_insurance,
        socialized,
        supply_index_before,
        supply_index_after,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    // 48,000 - 30,000 = 18,000 left owed (plus a second of interest).
    assert!(*debt > qty("18000") && *debt < qty("18000.01"), "{debt}");
    assert_eq!(covered_by_insurance, debt);
    assert_eq!(*socialized, qty("0"));
    assert_eq!(supply_index_before, supply_index_after);
    assert!(v.engine.sub_accounts()[borrower as usize]
        .balances
        .is_empty());
    assert_eq!(
        v.engine.balance_native(lender, 0).unwrap(),
        before,
        "depositors lose nothing"
    );
    // The pool's ledger records what the fund paid.
    assert_eq!(
        v.engine.pool(0).bad_debt_covered.raw() * 1_000_000_000_000,
        covered_by_insurance.raw()
    );
    assert_eq!(
        v.rejected(CommandKind::ResolveBankruptcy { target: borrower })
            .code,
        "not_bankrupt"
    );
}

#[test]
fn what_insurance_cannot_cover_is_socialized_and_withdrawals_pause() {
    let (mut v, lender, _, borrower) = bankrupt_borrower("5000");
    let lender_before = v.engine.balance_native(lender, 0).unwrap().raw();
    let supplied_before = v.engine.pool(0).total_supplied().unwrap().raw();
    let events = v.ok(CommandKind::ResolveBankruptcy { target: borrower });
    let Event::BankruptcyResolved {
        debt,
        covered_by_insurance,
        socialized,
        supply_index_before,
        supply_index_after,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(*covered_by_insurance, qty("5000"));
    // The rest, about 13,000 USDC, is written off: every depositor's claim falls by the same proportion.
    let written_off = socialized.raw();
    assert!(
        written_off > qty("13000").raw()
            && written_off <= debt.raw() - covered_by_insurance.raw() + 1_000_000_000_000
    );
    assert!(supply_index_after < supply_index_before);
    let usdc = v.engine.pool(0);
    assert_eq!(usdc.socialized_loss.raw() * 1_000_000_000_000, written_off);
    let lender_after = v.engine.balance_native(lender, 0).unwrap().raw();
    // Every depositor bears the loss in proportion to its claim: lender_before / supplied_before of it (the
    // supply after the fund paid out; within a micro-USDC or two of rounding).
    let lost = lender_before - lender_after;
    let supplied_after_fund = supplied_before - 5_000_000_000;
    let expected = (written_off / 1_000_000_000_000) * lender_before / supplied_after_fund;
    assert!(
        (lost - expected).abs() <= 2,
        "lender lost {lost}, expected {expected}"
    );
    // Withdrawals and borrows of USDC pause for a day; deposits do not.
    let r = v.withdraw(lender, "USDC", "1").unwrap_err();
    assert_eq!(r.code, "withdrawals_paused");
    v.deposit(lender, "USDC", "1");
    v.t += 86_400;
    v.all_prices();
    v.withdraw(lender, "USDC", "1").unwrap();
}

#[test]
fn stakes_are_shares_and_unstaking_waits_for_the_cooldown() {
    let (mut v, _, staker, borrower) = bankrupt_borrower("50000");
    v.ok(CommandKind::ResolveBankruptcy { target: borrower }); // the fund paid about 18,000
    let r = v.rejected(CommandKind::Unstake {
        sub_account: staker,
        asset: "USDC".into(),
    });
    assert_eq!(r.code, "no_unstake_request");
    v.ok(CommandKind::RequestUnstake {
        sub_account: staker,
        asset: "USDC".into(),
        shares: qty("50000"),
    });
    v.t += 3_600;
    let r = v.rejected(CommandKind::Unstake {
        sub_account: staker,
        asset: "USDC".into(),
    });
    assert_eq!(r.code, "cooldown");
    v.t += 7 * 86_400;
    let events = v.ok(CommandKind::Unstake {
        sub_account: staker,
        asset: "USDC".into(),
    });
    let Event::InsuranceUnstaked { amount, .. } = &events[0] else {
        panic!("{events:?}")
    };
    // The only staker gets the whole fund back: 50,000 less what it paid.
    assert!(
        *amount > qty("31999.99") && *amount <= qty("32000"),
        "{amount}"
    );
    assert_eq!(v.engine.pool(0).insurance_shares, 0);
}

#[test]
fn only_a_sub_account_with_nothing_left_to_seize_is_bankrupt() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let a = v.sub(1, MarginSpec::Cross);
    v.deposit(a, "USDC", "100");
    let r = v.rejected(CommandKind::ResolveBankruptcy { target: a });
    assert_eq!(r.code, "not_bankrupt");
}

/// The share-price inflation pattern: an attacker stakes one native unit, fees then flow into the fund, and a
/// victim stakes. With the virtual offset the victim gets its stake's worth of shares and the attacker's single
/// share stays worth about nothing.
#[test]
fn a_one_unit_first_stake_cannot_inflate_the_share_price() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let lender = v.sub(9, MarginSpec::Cross);
    v.deposit(lender, "USDC", "1000000");
    let attacker = v.sub(1, MarginSpec::Cross);
    let victim = v.sub(2, MarginSpec::Cross);
    v.deposit(attacker, "USDC", "10");
    v.deposit(victim, "USDC", "1000");
    v.ok(CommandKind::StakeInsurance {
        sub_account: attacker,
        asset: "USDC".into(),
        amount: qty("0.000001"),
    });
    // A losing perp trader settles the venue's fee claims: 42 USDC of fees go to the treasury... and the insurance
    // share of a liquidation fee goes to the fund. Build both with a liquidated long.
    let a = v.sub(3, MarginSpec::Cross);
    let b = v.sub(4, MarginSpec::Cross);
    let l = v.sub(5, MarginSpec::Cross);
    v.deposit(a, "USDC", "10000");
    v.deposit(b, "USDC", "100000");
    v.deposit(l, "USDC", "100000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    v.fill("BTC-PERP", a, b, true, "1", "60000").unwrap();
    v.t += 1;
    v.price("BTC", "51500");
    v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: a,
    });
    v.ok(CommandKind::SettleVenueClaims {
        market: "BTC-PERP".into(),
        loser: a,
    });
    assert!(
        v.engine.pool(0).insurance_scaled > 40_000_000,
        "the fund received the insurance share"
    );
    // The victim stakes 200 USDC and later takes it all back; the attacker's one share is worth almost nothing.
    v.ok(CommandKind::StakeInsurance {
        sub_account: victim,
        asset: "USDC".into(),
        amount: qty("200"),
    });
    let victim_shares = v.engine.stake(victim, 0).unwrap().shares;
    let attacker_shares = v.engine.stake(attacker, 0).unwrap().shares;
    assert_eq!(attacker_shares, 1);
    assert!(
        victim_shares > 1_000_000,
        "the victim got {victim_shares} shares"
    );
    let q = ballast_num::TokenQuantity::from_native(
        ballast_num::TokenAmount::from_raw(victim_shares),
        6,
    )
    .unwrap();
    v.ok(CommandKind::RequestUnstake {
        sub_account: victim,
        asset: "USDC".into(),
        shares: q,
    });
    v.t += 7 * 86_400;
    v.all_prices();
    let events = v.ok(CommandKind::Unstake {
        sub_account: victim,
        asset: "USDC".into(),
    });
    let Event::InsuranceUnstaked { amount, .. } = &events[0] else {
        panic!("{events:?}")
    };
    // Without the offset the victim would have received 1 share of 2 and lost about half of its stake.
    assert!(*amount >= qty("199.99"), "victim got back {amount} of 200");
}
