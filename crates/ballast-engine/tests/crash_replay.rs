//! Black Thursday, 2020-03-12, replayed from real hourly BTC prices (Gemini, `../shared/data/`) against a book of
//! levered longs: 300 sub-accounts holding BTC and borrowing USDC at 50% to 99% of their initial limit. Each hour is
//! replayed as three oracle prints (open, low, close: the low taken as reached before the close), and after every
//! print a liquidator sweeps the book and bankruptcies are resolved. At the end every account is healthy, was
//! liquidated back to health, or went bankrupt and was resolved by the waterfall, and every ledger balances to the
//! unit.
//!
//! (Perp longs join this scenario once perp bankruptcies can be resolved; see ARCHITECTURE.md.)

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use ballast_num::{Price, TokenQuantity};
use common::*;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/gemini_btcusd_1h_2020-03.csv"
);
const N_BORROWERS: u32 = 300;

/// (hour start in seconds since the epoch, open, low, close) for 2020-03-11 .. 2020-03-13, in micro-USD.
fn black_thursday_bars() -> Vec<(u64, i128, i128, i128)> {
    let text = std::fs::read_to_string(DATA).unwrap_or_else(|e| {
        panic!("{DATA}: {e} (the shared data folder must sit beside the project)")
    });
    let micro = |s: &str| -> i128 { (s.parse::<f64>().expect("price") * 1e6).round() as i128 };
    let mut bars = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 6, "{DATA} line {}: expected 6 columns", i + 1);
        let day = &f[0][..10];
        if !("2020-03-11"..="2020-03-13").contains(&day) {
            continue;
        }
        let d: u64 = f[0][8..10].parse().unwrap();
        let h: u64 = f[0][11..13].parse().unwrap();
        let start = 1_583_020_800 + (d - 1) * 86_400 + h * 3_600; // 2020-03-01T00:00Z + offset
        bars.push((start, micro(f[1]), micro(f[3]), micro(f[4])));
    }
    assert_eq!(bars.len(), 72, "three days of hourly bars");
    bars
}

#[test]
fn a_book_of_levered_longs_survives_black_thursday_with_every_unit_accounted_for() {
    let bars = black_thursday_bars();
    let seed = seed("black_thursday", 20_200_312);
    let mut rng = Rng::new(seed);
    let start = bars[0].0 - 60; // set the book up a minute before the first bar
    let mut v = Venue {
        engine: ballast_engine::Engine::new(flat_config(), start),
        t: start,
    };
    let btc_price = |micro: i128| Price::from_raw(micro * 1_000_000);
    let print = |v: &mut Venue, micro: i128| {
        v.ok(CommandKind::OraclePrice {
            asset: "USDC".into(),
            price: price("1"),
            confidence: price("0.0001"),
            publish_time: v.t,
        });
        v.ok(CommandKind::OraclePrice {
            asset: "BTC".into(),
            price: btc_price(micro),
            confidence: btc_price(micro / 2000),
            publish_time: v.t,
        })
    };
    print(&mut v, bars[0].1);
    let lender = v.sub(1, MarginSpec::Cross);
    let staker = v.sub(2, MarginSpec::Cross);
    let liquidator = v.sub(3, MarginSpec::Cross);
    v.deposit(lender, "USDC", "20000000");
    v.deposit(staker, "USDC", "100000");
    v.ok(CommandKind::StakeInsurance {
        sub_account: staker,
        asset: "USDC".into(),
        amount: qty("100000"),
    });
    v.deposit(liquidator, "USDC", "50000000");
    v.ok(CommandKind::RegisterLiquidator {
        sub_account: liquidator,
    });
    let mut borrowers = Vec::new();
    for i in 0..N_BORROWERS {
        let b = v.sub(100 + i as u64, MarginSpec::Cross);
        let btc = 50_000_000 + rng.below(450_000_000) as i128; // 0.5 to 5 BTC, in satoshi
        v.deposit(
            b,
            "BTC",
            &TokenQuantity::from_native(ballast_num::TokenAmount::from_raw(btc), 8)
                .unwrap()
                .to_string(),
        );
        // Borrow 50% to 99% of the initial limit: value * 0.8 * k.
        let value_micro = btc * bars[0].1 / 100_000_000;
        let borrow_micro = value_micro * 8 / 10 * (50 + rng.below(50) as i128) / 100;
        let amount =
            TokenQuantity::from_native(ballast_num::TokenAmount::from_raw(borrow_micro), 6)
                .unwrap();
        v.withdraw(b, "USDC", &amount.to_string())
            .unwrap_or_else(|r| panic!("borrower {i}: {r}"));
        borrowers.push(b);
    }

    let (mut n_liquidations, mut n_bankrupt) = (0, 0);
    let (mut covered, mut socialized) = (0i128, 0i128);
    let mut was_liquidated = std::collections::BTreeSet::new();
    for (hour, open, low, close) in &bars {
        for (offset, micro) in [(0, *open), (1_200, *low), (3_540, *close)] {
            v.t = hour + offset;
            print(&mut v, micro);
            // The keeper's view: the engine's list of open margin calls, then whoever owes with nothing to seize.
            for b in v.engine.below_maintenance() {
                if let Ok(events) = v.apply(CommandKind::Liquidate {
                    liquidator,
                    target: b,
                }) {
                    n_liquidations += events
                        .iter()
                        .filter(|e| matches!(e, Event::SpotLiquidated { .. }))
                        .count();
                    was_liquidated.insert(b);
                }
            }
            let bankrupt: Vec<u32> = borrowers
                .iter()
                .copied()
                .filter(|&b| {
                    let balances = &v.engine.sub_accounts()[b as usize].balances;
                    !balances.is_empty() && balances.iter().all(|x| x.scaled < 0)
                })
                .collect();
            for b in bankrupt {
                for e in v.ok(CommandKind::ResolveBankruptcy { target: b }) {
                    if let Event::BankruptcyResolved {
                        covered_by_insurance,
                        socialized: s,
                        ..
                    } = e
                    {
                        n_bankrupt += 1;
                        covered += covered_by_insurance.raw();
                        socialized += s.raw();
                    }
                }
            }
        }
    }
    println!(
        "black thursday: {n_liquidations} liquidation steps over {} accounts, {n_bankrupt} bankruptcies, \
         insurance paid {} USDC, socialized {} USDC",
        was_liquidated.len(),
        TokenQuantity::from_raw(covered),
        TokenQuantity::from_raw(socialized)
    );
    // The crash did bite: many liquidations, some bankruptcies.
    assert!(
        was_liquidated.len() > N_BORROWERS as usize / 3,
        "only {} accounts liquidated",
        was_liquidated.len()
    );
    assert!(
        n_bankrupt > 0,
        "no bankruptcy: the book was not levered enough to test the waterfall"
    );
    // Every account ends healthy (possibly after liquidation) or bankrupt and resolved (nothing left).
    for &b in &borrowers {
        let sub = &v.engine.sub_accounts()[b as usize];
        let h = v.health(b);
        let resolved = sub.balances.is_empty();
        assert!(
            resolved || !h.maintenance.is_negative(),
            "borrower {b} left under water: {h:?} {:?}",
            sub.balances
        );
        let owes_without_collateral =
            sub.balances.iter().all(|x| x.scaled < 0) && !sub.balances.is_empty();
        assert!(
            !owes_without_collateral,
            "borrower {b} owes with no collateral and was not resolved"
        );
    }
    // Every ledger balances to the unit.
    v.engine.check_invariants().unwrap();
    let usdc = v.engine.pool(0);
    assert_eq!(usdc.vault.raw(), usdc.total_in.raw() - usdc.total_out.raw());
    assert_eq!(usdc.bad_debt_covered.raw() * 1_000_000_000_000, covered);
    assert_eq!(usdc.socialized_loss.raw() * 1_000_000_000_000, socialized);
}
