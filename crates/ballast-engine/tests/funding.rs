//! Funding: a premium sample sets a clamped rate for one interval; the market's index accrues it over time at every
//! touch of the market (fills, liquidations, settlements, prices of the underlying), and positions settle lazily
//! against the index, so a position pays or earns exactly for the time it is held. Paid and received funding net to
//! zero but for the venue's rounding (`check_invariants` checks the exact identity after every command).

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use common::*;

#[test]
fn funding_moves_from_longs_to_shorts_when_the_mark_is_above_the_oracle() {
    let (mut v, a, b) = one_btc_long();
    let (ha, hb) = (v.health(a).maintenance, v.health(b).maintenance);
    v.t += 60;
    v.all_prices();
    // Premium (60,060 - 60,000) / 60,000 = 0.001, clamped to 0.0005 per hour. The sample sets the rate from now on:
    // nothing has accrued yet (no rate was in force before it).
    let events = v.ok(CommandKind::UpdateFunding {
        market: "BTC-PERP".into(),
        mark_price: price("60060"),
    });
    match &events[0] {
        Event::FundingUpdated {
            rate,
            funding_index,
            elapsed_s,
            ..
        } => {
            assert_eq!(
                (*rate, *funding_index, *elapsed_s),
                ("0.0005".parse().unwrap(), price("0"), 0)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(v.health(a).maintenance, ha);
    // An hour later the next price print accrues the hour at the old price: 60,000 * 0.0005 = 30 USD per BTC.
    v.t += 3600;
    v.all_prices();
    assert_eq!(v.engine.markets()[0].funding_index, price("30"));
    assert_eq!(
        v.health(a).maintenance,
        ha.checked_sub(quote("30")).unwrap()
    );
    assert_eq!(
        v.health(b).maintenance,
        hb.checked_add(quote("30")).unwrap()
    );
    // The rate lapses one interval after its sample: another hour without a sample accrues nothing.
    v.t += 3600;
    v.all_prices();
    assert_eq!(v.engine.markets()[0].funding_index, price("30"));
    // The next fill settles funding into both positions; the zero-sum identity is checked after every command.
    v.fill("BTC-PERP", b, a, true, "0.5", "60000").unwrap();
    let long = v.engine.sub_accounts()[a as usize].perps[0];
    // -60,030 - 30 funding + 30,000 received - 0.0002 * 30,000 maker fee
    assert_eq!(long.quote, quote("-30066"));
    v.engine.check_invariants().unwrap();
}

/// Funding is time-weighted per position: a short opened half-way through the interval earns half of what a short
/// held all of it earns, and one opened just before a sample earns nothing for the time before it.
#[test]
fn a_position_pays_or_earns_funding_only_for_the_time_it_is_held() {
    let (mut v, _, b) = one_btc_long();
    let c = v.sub(7, MarginSpec::Cross);
    let d = v.sub(8, MarginSpec::Cross);
    v.deposit(c, "USDC", "100000");
    v.deposit(d, "USDC", "100000");
    v.ok(CommandKind::UpdateFunding {
        market: "BTC-PERP".into(),
        mark_price: price("61000"),
    });
    v.t += 1800;
    v.all_prices();
    v.fill("BTC-PERP", d, c, true, "1", "60000").unwrap(); // C short 1 from half-way
    v.t += 1800;
    v.all_prices();
    let index = v.engine.markets()[0].funding_index;
    assert_eq!(index, price("30"));
    let pending = |v: &Venue, id: u32| {
        let p = v.engine.sub_accounts()[id as usize].perps[0];
        // A short is owed -base * (F - snapshot).
        -p.base.raw() * (index.raw() - p.funding_snapshot.raw()) / 100_000_000
    };
    assert_eq!(pending(&v, b), price("30").raw());
    assert_eq!(pending(&v, c), price("15").raw());
}

/// Funding cannot be sniped: a short opened one second before a sample that comes after a week-long gap receives
/// nothing for the week (the sample only sets the rate from then on), and one second of the new rate after it.
#[test]
fn a_late_funding_sample_pays_nothing_for_the_time_before_it() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let a = v.sub(1, MarginSpec::Cross);
    let b = v.sub(2, MarginSpec::Cross);
    v.deposit(a, "USDC", "100000");
    v.deposit(b, "USDC", "100000");
    v.t += 7 * 86_400;
    v.all_prices();
    v.fill("BTC-PERP", a, b, true, "1", "60000").unwrap();
    let b_before = v.health(b).maintenance;
    v.t += 1;
    v.all_prices();
    v.ok(CommandKind::UpdateFunding {
        market: "BTC-PERP".into(),
        mark_price: price("61000"),
    });
    assert_eq!(v.health(b).maintenance, b_before);
    v.t += 1;
    v.all_prices();
    let gain = v.health(b).maintenance.checked_sub(b_before).unwrap();
    println!("short held 2 s, funding received {gain}");
    // One second at 60,000 * 0.0005 per hour: 0.008333 (the index rounds down).
    assert_eq!(gain, quote("0.008333"), "received {gain}");
}

#[test]
fn a_mark_below_the_oracle_makes_shorts_pay_and_the_clamp_binds() {
    let (mut v, a, b) = one_btc_long();
    let (ha, hb) = (v.health(a).maintenance, v.health(b).maintenance);
    // (59,000 - 60,000) / 60,000 = -1.67%, clamped to -0.05% an hour.
    let events = v.ok(CommandKind::UpdateFunding {
        market: "BTC-PERP".into(),
        mark_price: price("59000"),
    });
    let Event::FundingUpdated { rate, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(*rate, "-0.0005".parse().unwrap());
    // Half an hour later a price print accrues half an hour: the index falls by 60,000 * 0.0005 / 2 = 15.
    v.t += 1800;
    v.all_prices();
    assert_eq!(v.engine.markets()[0].funding_index, price("-15"));
    assert_eq!(
        v.health(a).maintenance,
        ha.checked_add(quote("15")).unwrap()
    );
    assert_eq!(
        v.health(b).maintenance,
        hb.checked_sub(quote("15")).unwrap()
    );
    v.engine.check_invariants().unwrap();
}

#[test]
fn accrual_uses_the_price_that_held_until_each_touch() {
    let (mut v, _, _) = one_btc_long();
    v.ok(CommandKind::UpdateFunding {
        market: "BTC-PERP".into(),
        mark_price: price("61000"),
    });
    // 1,800 s at 60,000, then the price moves to 50,000 and holds for the next 1,800 s:
    // 60,000 * 0.0005 / 2 + 50,000 * 0.0005 / 2 = 15 + 12.5.
    v.t += 1800;
    v.price("USDC", "1");
    v.price("BTC", "50000");
    assert_eq!(v.engine.markets()[0].funding_index, price("15"));
    v.t += 1800;
    v.price("USDC", "1");
    v.price("BTC", "50000.5");
    assert_eq!(v.engine.markets()[0].funding_index, price("27.5"));
}
