//! Black Thursday, 2020-03-12, replayed from real hourly BTC prices (Gemini, `../shared/data/`) against a book of
//! levered longs: 300 sub-accounts holding BTC and borrowing USDC at 50% to 99% of their initial limit. Each hour is
//! replayed as three oracle prints (open, low, close: the low taken as reached before the close), and after every
//! print a liquidator sweeps the book and bankruptcies are resolved. At the end every account is healthy, was
//! liquidated back to health, or went bankrupt and was resolved by the waterfall, and every ledger balances to the
//! unit. A second scenario replays the same hours against levered BTC-PERP longs: liquidation, settlement of the
//! realised losses, and the perp waterfall (venue claims, insurance, auto-deleveraging of the shorts).

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

fn btc_price(micro: i128) -> Price {
    Price::from_raw(micro * 1_000_000)
}

/// USDC at 1 and BTC at `micro` micro-USD, published now.
fn print(v: &mut Venue, micro: i128) -> Vec<Event> {
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

const N_LONGS: u32 = 300;
const N_SHORTS: u32 = 10;

#[test]
fn levered_perp_longs_end_healthy_liquidated_or_resolved_by_the_perp_waterfall() {
    let bars = black_thursday_bars();
    let seed = seed("black_thursday_perps", 20_200_313);
    let mut rng = Rng::new(seed);
    let start = bars[0].0 - 60;
    let mut v = Venue {
        engine: ballast_engine::Engine::new(flat_config(), start),
        t: start,
    };
    print(&mut v, bars[0].1);
    let staker = v.sub(1, MarginSpec::Cross);
    v.deposit(staker, "USDC", "200000");
    v.ok(CommandKind::StakeInsurance {
        sub_account: staker,
        asset: "USDC".into(),
        amount: qty("200000"),
    });
    let liquidator = v.sub(2, MarginSpec::Cross);
    v.deposit(liquidator, "USDC", "50000000");
    v.ok(CommandKind::RegisterLiquidator {
        sub_account: liquidator,
    });
    // The other side: ten well-funded market makers, short everything the longs buy.
    let shorts: Vec<u32> = (0..N_SHORTS)
        .map(|i| {
            let s = v.sub(10 + i as u64, MarginSpec::Cross);
            v.deposit(s, "USDC", "5000000");
            s
        })
        .collect();
    let open = bars[0].1;
    let mut longs = Vec::new();
    for i in 0..N_LONGS {
        let l = v.sub(100 + i as u64, MarginSpec::Cross);
        let usdc = 2_000 + rng.below(18_000) as i128;
        v.deposit(l, "USDC", &usdc.to_string());
        // 1.5x to 10x (the tier allows 20x): BTC fell about 40% over these days, so the lower half survives.
        let tenths = 15 + rng.below(86) as i128;
        let steps = usdc * tenths * 100_000 * 10_000 / open; // 0.0001 BTC steps
        let size =
            TokenQuantity::from_native(ballast_num::TokenAmount::from_raw(steps * 10_000), 8)
                .unwrap();
        v.fill(
            "BTC-PERP",
            l,
            shorts[i as usize % shorts.len()],
            true,
            &size.to_string(),
            &Price::from_raw(open * 1_000_000).to_string(),
        )
        .unwrap_or_else(|r| panic!("long {i}: {r}"));
        longs.push(l);
    }

    let (mut n_liquidations, mut n_resolved, mut n_adl) = (0, 0, 0);
    let (mut deficits, mut from_claims, mut insurance, mut socialized) =
        (0i128, 0i128, 0i128, 0i128);
    let mut was_liquidated = std::collections::BTreeSet::new();
    for (hour, open, low, close) in &bars {
        for (offset, micro) in [(0, *open), (1_200, *low), (3_540, *close)] {
            v.t = hour + offset;
            print(&mut v, micro);
            for b in v.engine.below_maintenance() {
                if longs.contains(&b) {
                    if let Ok(events) = v.apply(CommandKind::Liquidate {
                        liquidator,
                        target: b,
                    }) {
                        n_liquidations += events
                            .iter()
                            .filter(|e| matches!(e, Event::PerpLiquidated { .. }))
                            .count();
                        was_liquidated.insert(b);
                    }
                }
            }
            // The liquidator hedges at once: it sells what it took over to the market makers at the oracle price,
            // each buying back at most its own short.
            for &maker in &shorts {
                let held = |v: &Venue, id: u32| {
                    v.engine.sub_accounts()[id as usize]
                        .perps
                        .first()
                        .map_or(0, |p| p.base.raw())
                };
                let size = held(&v, liquidator).min(-held(&v, maker));
                if size > 0 {
                    let size =
                        TokenQuantity::from_native(ballast_num::TokenAmount::from_raw(size), 8)
                            .unwrap();
                    v.fill(
                        "BTC-PERP",
                        liquidator,
                        maker,
                        false,
                        &size.to_string(),
                        &btc_price(micro).to_string(),
                    )
                    .unwrap_or_else(|r| panic!("hedge: {r}"));
                }
            }
            // Realised losses are settled against whoever holds the other side's profit (the makers, the
            // liquidator, the venue's fee claims), as far as each loser's USDC goes.
            for &l in &longs {
                let sub = &v.engine.sub_accounts()[l as usize];
                let flat_loss = sub
                    .perps
                    .first()
                    .is_some_and(|p| p.base.is_zero() && p.quote.is_negative());
                if flat_loss && sub.balances.iter().any(|b| b.scaled > 0) {
                    let settlements = shorts
                        .iter()
                        .chain([&liquidator])
                        .map(|&winner| CommandKind::SettlePnl {
                            market: "BTC-PERP".into(),
                            winner,
                            loser: l,
                        })
                        .chain([CommandKind::SettleVenueClaims {
                            market: "BTC-PERP".into(),
                            loser: l,
                        }]);
                    for settlement in settlements {
                        let _ = v.apply(settlement);
                        let sub = &v.engine.sub_accounts()[l as usize];
                        if sub.perps.is_empty() || sub.balances.is_empty() {
                            break;
                        }
                    }
                }
                let sub = &v.engine.sub_accounts()[l as usize];
                if sub.balances.is_empty() && !sub.perps.is_empty() {
                    for e in v.ok(CommandKind::ResolveBankruptcy { target: l }) {
                        match e {
                            Event::PerpBankruptcyResolved {
                                deficit,
                                from_venue_claims,
                                covered_by_insurance,
                                socialized: s,
                                ..
                            } => {
                                n_resolved += 1;
                                deficits += deficit.raw();
                                from_claims += from_venue_claims.raw();
                                insurance += covered_by_insurance.raw() / 1_000_000_000_000;
                                socialized += s.raw();
                            }
                            Event::Deleveraged { .. } => n_adl += 1,
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    println!(
        "black thursday, perps: {n_liquidations} liquidation steps over {} longs, {n_resolved} bankruptcies \
         resolved (deficits {} USD: venue claims {}, insurance {}, socialized {} over {n_adl} deleveragings)",
        was_liquidated.len(),
        ballast_num::Quote::from_raw(deficits),
        ballast_num::Quote::from_raw(from_claims),
        ballast_num::Quote::from_raw(insurance),
        ballast_num::Quote::from_raw(socialized),
    );
    assert!(
        was_liquidated.len() > N_LONGS as usize / 3,
        "only {} longs liquidated",
        was_liquidated.len()
    );
    assert!(
        n_resolved > 0,
        "no perp bankruptcy: the waterfall was not tested"
    );
    // Every deficit is accounted for to the micro-dollar, in the events and in the market's ledger.
    assert_eq!(from_claims + insurance + socialized, deficits);
    let market = &v.engine.markets()[0];
    assert_eq!(market.claims_written_off.raw(), from_claims);
    assert_eq!(market.insurance_paid.raw(), insurance);
    assert_eq!(market.socialized_loss.raw(), socialized);
    assert_eq!(v.engine.pool(0).bad_debt_covered.raw(), insurance);
    // Every long ends healthy (possibly after liquidation) or resolved, with nothing left.
    for &l in &longs {
        let sub = &v.engine.sub_accounts()[l as usize];
        let resolved = sub.balances.is_empty() && sub.perps.is_empty();
        let h = v.health(l);
        assert!(
            resolved || !h.maintenance.is_negative(),
            "long {l} left under water: {h:?} {:?} {:?}",
            sub.balances,
            sub.perps
        );
    }
    v.engine.check_invariants().unwrap();
}
