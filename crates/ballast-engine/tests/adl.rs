//! The perp loss waterfall: venue claims, the insurance fund capped per market tier, and auto-deleveraging of ranked
//! positions at the bankruptcy price (or a cut of their profit when the bankrupt position is already flat).

mod common;

use ballast_engine::config::WaterfallStep;
use ballast_engine::{CommandKind, Event, MarginSpec, ProtocolConfig};
use common::*;

/// A (10,000 USDC) buys 3 BTC-PERP at 60,000, one from each of three shorts with different equity: B1 100,000 USDC,
/// B2 20,000, B3 50,000. BTC falls to 45,000 and A pays B1 all its 10,000 USDC. A then holds no collateral and a long
/// worth 3 * 45,000 - 180,090 + 10,000 = -35,090. Fees: A's taker fees 90, the makers' 3 * 12 = 36.
fn three_shorts(config: ProtocolConfig) -> (Venue, u32, [u32; 3]) {
    let mut v = Venue::new(config);
    v.all_prices();
    let lender = v.sub(9, MarginSpec::Cross);
    v.deposit(lender, "USDC", "1000000");
    let a = v.sub(1, MarginSpec::Cross);
    v.deposit(a, "USDC", "10000");
    let mut shorts = [0; 3];
    for (i, usdc) in ["100000", "20000", "50000"].into_iter().enumerate() {
        shorts[i] = v.sub(2 + i as u64, MarginSpec::Cross);
        v.deposit(shorts[i], "USDC", usdc);
        v.fill("BTC-PERP", a, shorts[i], true, "1", "60000")
            .unwrap();
    }
    v.t += 1;
    v.price("BTC", "45000");
    v.ok(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: shorts[0],
        loser: a,
    });
    assert!(v.engine.sub_accounts()[a as usize].balances.is_empty());
    (v, a, shorts)
}

fn deleveraged(
    events: &[Event],
) -> Vec<(u32, u32, ballast_num::TokenQuantity, ballast_num::Quote)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Deleveraged {
                counterparty,
                rank,
                base,
                value_lost,
                ..
            } => Some((*rank, *counterparty, *base, *value_lost)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_open_bankrupt_position_is_closed_against_the_most_profitable_most_levered_shorts_first() {
    let (mut v, a, [b1, b2, b3]) = three_shorts(flat_config());
    // Scores (profit / equity): B2 14,988 / 34,988 = 0.43, B3 14,988 / 64,988 = 0.23, B1 (already paid 10,000 of
    // its profit) 4,988 / 114,988 = 0.04.
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
    assert_eq!(*deficit, quote("35090"));
    // The venue's 126 of fees go first; the insurance fund is empty; the other 34,964 is deleveraged.
    assert_eq!(*from_venue_claims, quote("126"));
    assert_eq!(*covered_by_insurance, qty("0"));
    assert_eq!(*socialized, quote("34964"));
    // Closed where the long's value is zero after the claims: quote -169,964 against 3 BTC.
    assert_eq!(*bankruptcy_price, Some(price("56654.666666666666")));
    // Each short buys back 1 BTC at that price; the bankrupt position's quote moves pro rata (exactly in total).
    assert_eq!(
        deleveraged(&events),
        vec![
            (1, b2, qty("1"), quote("11654.666666")),
            (2, b3, qty("1"), quote("11654.666667")),
            (3, b1, qty("1"), quote("11654.666667")),
        ]
    );
    assert!(v.engine.sub_accounts()[a as usize].perps.is_empty());
    let market = &v.engine.markets()[0];
    assert!(market.open_interest.is_zero());
    assert_eq!(market.socialized_loss, quote("34964"));
    assert_eq!(market.claims_written_off, quote("126"));
    // B1 had already taken 10,000 in tokens: it ends flat with a quote balance it owes, and is still healthy.
    assert_eq!(
        v.engine.sub_accounts()[b1 as usize].perps[0].quote,
        quote("-6666.666667")
    );
    assert!(!v.health(b1).maintenance.is_negative());
    v.engine.check_invariants().unwrap();
}

#[test]
fn deleveraging_stops_once_the_bankrupt_position_is_closed() {
    // Half the deficit's size is on the other side of the top-ranked short alone: only it is touched.
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let a = v.sub(1, MarginSpec::Cross);
    v.deposit(a, "USDC", "3000");
    let big = v.sub(2, MarginSpec::Cross);
    v.deposit(big, "USDC", "20000");
    let small = v.sub(3, MarginSpec::Cross);
    v.deposit(small, "USDC", "200000");
    v.fill("BTC-PERP", big, small, false, "2", "60000").unwrap(); // big short 2, small long 2
    v.fill("BTC-PERP", a, small, true, "0.5", "60000").unwrap(); // a long 0.5, small long 1.5
    v.t += 1;
    v.price("BTC", "50000");
    v.ok(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: big,
        loser: a,
    });
    let events = v.ok(CommandKind::ResolveBankruptcy { target: a });
    let closed = deleveraged(&events);
    assert_eq!(closed.len(), 1, "{events:?}");
    assert_eq!((closed[0].1, closed[0].2), (big, qty("0.5")));
    assert_eq!(
        v.engine.sub_accounts()[big as usize].perps[0].base.raw(),
        -150_000_000
    );
    v.engine.check_invariants().unwrap();
}

#[test]
fn the_insurance_fund_pays_winners_up_to_the_market_tiers_cap_and_the_rest_is_deleveraged() {
    let config = flat_config_with(|f| {
        f.perp_tier[0].insurance_cap_per_bankruptcy = "20000".parse().unwrap();
    });
    let (mut v, a, [b1, b2, b3]) = three_shorts(config);
    let staker = v.sub(20, MarginSpec::Cross);
    v.deposit(staker, "USDC", "100000");
    v.ok(CommandKind::StakeInsurance {
        sub_account: staker,
        asset: "USDC".into(),
        amount: qty("100000"),
    });
    let events = v.ok(CommandKind::ResolveBankruptcy { target: a });
    let Event::PerpBankruptcyResolved {
        covered_by_insurance,
        socialized,
        bankruptcy_price,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    // 100,000 in the fund, but the large-cap tier caps one bankruptcy at 20,000, paid to the lowest-ranked winners
    // first (what it does not cover is deleveraged, and that falls on the highest-ranked): B1 (its 4,988 of profit),
    // B3 (14,988), then B2 (24).
    assert_eq!(*covered_by_insurance, qty("20000"));
    assert_eq!(*socialized, quote("14964"));
    let paid: Vec<(u32, _)> = events
        .iter()
        .filter_map(|e| match e {
            Event::InsurancePaidWinner { winner, amount, .. } => Some((*winner, *amount)),
            _ => None,
        })
        .collect();
    assert_eq!(
        paid,
        vec![(b1, qty("4988")), (b3, qty("14988")), (b2, qty("24"))]
    );
    // The long is then closed at (180,090 - 10,000 - 126 - 20,000) / 3 = 49,988 against B2 (ranked first by its
    // score before the fund paid), B3 and B1.
    assert_eq!(*bankruptcy_price, Some(price("49988")));
    let ranks: Vec<u32> = deleveraged(&events).iter().map(|d| d.1).collect();
    assert_eq!(ranks, vec![b2, b3, b1]);
    assert_eq!(v.engine.pool(0).bad_debt_covered.raw(), 20_000_000_000);
    assert_eq!(v.engine.markets()[0].insurance_paid, quote("20000"));
    v.engine.check_invariants().unwrap();
}

#[test]
fn a_flat_deficit_cuts_the_ranked_winners_profit() {
    let config = flat_config_with(|f| {
        f.protocol.bankruptcy_waterfall = vec![WaterfallStep::Socialize];
    });
    let (mut v, a, [b1, b2, b3]) = three_shorts(config);
    let l = v.sub(30, MarginSpec::Cross);
    v.deposit(l, "USDC", "1000000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    // The liquidator closes A in full at the oracle price (A is insolvent: no fee): its flat quote is
    // -180,090 + 10,000 + 135,000.
    v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: a,
    });
    let left = v.engine.sub_accounts()[a as usize].perps[0];
    assert!(left.base.is_zero());
    assert_eq!(left.quote, quote("-35090"));
    let events = v.ok(CommandKind::ResolveBankruptcy { target: a });
    let Event::PerpBankruptcyResolved {
        deficit,
        from_venue_claims,
        socialized,
        bankruptcy_price,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    // Only `socialize` is configured. The winners' profit absorbs what it can, highest score first: B2 (14,988 /
    // 34,988), B3, then B1 (4,988): 34,964 in all (the liquidator bought at the oracle and has none). The venue's
    // own claims (126 of fees) are the rest of the other side, and pay the rest.
    assert_eq!(*deficit, quote("35090"));
    assert_eq!(*from_venue_claims, quote("126"));
    assert_eq!(*socialized, quote("34964"));
    assert_eq!(*bankruptcy_price, None);
    let cuts = deleveraged(&events);
    assert_eq!(
        cuts[..2],
        [
            (1, b2, qty("0"), quote("14988")),
            (2, b3, qty("0"), quote("14988"))
        ]
    );
    let rest: ballast_num::Quote = cuts[2..]
        .iter()
        .fold(quote("0"), |s, c| s.checked_add(c.3).unwrap());
    assert_eq!(rest, quote("4988"));
    assert!(cuts[2..].iter().all(|c| c.1 == b1));
    assert!(v.engine.markets()[0].fees_collected.is_zero());
    v.engine.check_invariants().unwrap();
}

/// A deleveraging pauses the market, not the quote asset's pool: for `socialized_loss_withdrawal_pause_s`, no
/// sub-account that held a position in it at that moment may withdraw (whatever it does with the position), while
/// the USDC lenders, who lost nothing, may.
#[test]
fn a_deleveraging_pauses_withdrawals_of_the_markets_traders_only() {
    let (mut v, a, [b1, b2, _]) = three_shorts(flat_config());
    v.ok(CommandKind::ResolveBankruptcy { target: a });
    assert_eq!(v.engine.pool(0).withdrawals_paused_until_s, 0);
    v.t += 1;
    v.price("USDC", "1");
    // The lender (sub-account 0) holds no position: free to go. B1 still holds a closed BTC-PERP position.
    v.withdraw(0, "USDC", "1").unwrap();
    let r = v.withdraw(b1, "USDC", "1").unwrap_err();
    assert_eq!(r.code, "withdrawals_paused", "{r}");
    // Nor can it move the collateral to a sibling sub-account and withdraw it from there.
    let sibling = v.sub(2, MarginSpec::Cross);
    let r = v.rejected(CommandKind::Transfer {
        from: b1,
        to: sibling,
        asset: "USDC".into(),
        amount: qty("1"),
    });
    assert_eq!(r.code, "withdrawals_paused", "{r}");
    // Settling its closed position does not lift the pause.
    v.ok(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: b2,
        loser: b1,
    });
    assert_eq!(
        v.withdraw(b1, "USDC", "1").unwrap_err().code,
        "withdrawals_paused"
    );
    v.t += 86_400;
    v.price("USDC", "1");
    v.withdraw(b1, "USDC", "1").unwrap();
}

#[test]
fn only_a_sub_account_with_no_collateral_and_no_profitable_position_is_bankrupt() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let a = v.sub(1, MarginSpec::Cross);
    let b = v.sub(2, MarginSpec::Cross);
    v.deposit(a, "USDC", "10000");
    v.deposit(b, "USDC", "100000");
    v.fill("BTC-PERP", a, b, true, "1", "60000").unwrap();
    v.t += 1;
    v.price("BTC", "45000");
    let r = v.rejected(CommandKind::ResolveBankruptcy { target: a });
    assert!(r.message.contains("collateral"), "{r}");
    // Once A has paid B all its USDC it holds no collateral; B still holds collateral (and a profitable short).
    v.ok(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: b,
        loser: a,
    });
    let r = v.rejected(CommandKind::ResolveBankruptcy { target: b });
    assert_eq!(r.code, "not_bankrupt");
    // A sub-account with nothing at all owes nothing.
    let empty = v.sub(3, MarginSpec::Cross);
    let r = v.rejected(CommandKind::ResolveBankruptcy { target: empty });
    assert!(r.message.contains("owes nothing"), "{r}");
    // A closed position with profit still to settle makes a sub-account without collateral solvent: settle it.
    let c = v.sub(4, MarginSpec::Cross);
    let d = v.sub(5, MarginSpec::Cross);
    v.deposit(c, "USDC", "5000");
    v.deposit(d, "USDC", "100000");
    v.fill("ETH-PERP", c, d, true, "10", "3000").unwrap();
    v.t += 1;
    v.price("ETH", "3250");
    v.fill("ETH-PERP", c, d, false, "10", "3250").unwrap();
    v.withdraw(c, "USDC", "5000").unwrap();
    let r = v.rejected(CommandKind::ResolveBankruptcy { target: c });
    assert_eq!(r.code, "not_bankrupt", "{r}");
    assert!(r.message.contains("settle its PnL instead"), "{r}");
    v.ok(CommandKind::ResolveBankruptcy { target: a });
}

#[test]
fn the_waterfall_order_is_validated() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/protocol.toml");
    let text = std::fs::read_to_string(path).unwrap();
    for (order, ok) in [
        (r#"["venue_claims", "insurance", "socialize"]"#, true),
        (r#"["insurance", "venue_claims", "socialize"]"#, true),
        (r#"["socialize"]"#, true),
        (r#"["insurance"]"#, false),
        (r#"["socialize", "insurance"]"#, false),
        (r#"["insurance", "insurance", "socialize"]"#, false),
        (r#"[]"#, false),
    ] {
        let changed = text.replace(
            r#"bankruptcy_waterfall = ["venue_claims", "insurance", "socialize"]"#,
            &format!("bankruptcy_waterfall = {order}"),
        );
        let result = ProtocolConfig::from_toml("p.toml", &changed);
        assert_eq!(result.is_ok(), ok, "{order}: {result:?}");
        if let Err(e) = result {
            assert!(e.to_string().contains("bankruptcy_waterfall"), "{e}");
        }
    }
}

/// A sub-account can be insolvent while one of its closed positions is still owed profit (its market's losers have
/// not settled). Resolving it forfeits that claim to the insurance fund's claim in the market. The fund advances
/// nothing against it: the market's next bankruptcy writes such a claim off first.
#[test]
fn an_insolvent_sub_accounts_unsettled_profit_goes_to_the_insurance_funds_claim() {
    let (mut v, a, c) = {
        let mut v = Venue::new(flat_config_with(|f| {
            f.perp_tier[0].insurance_cap_per_bankruptcy = "100".parse().unwrap();
        }));
        v.all_prices();
        let a = v.sub(1, MarginSpec::Cross);
        let b = v.sub(2, MarginSpec::Cross);
        let c = v.sub(3, MarginSpec::Cross);
        let d = v.sub(4, MarginSpec::Cross);
        let staker = v.sub(5, MarginSpec::Cross);
        v.deposit(a, "USDC", "10000");
        v.deposit(b, "USDC", "100000");
        v.deposit(c, "USDC", "100000");
        v.deposit(d, "USDC", "100000");
        v.deposit(staker, "USDC", "10000");
        v.ok(CommandKind::StakeInsurance {
            sub_account: staker,
            asset: "USDC".into(),
            amount: qty("10000"),
        });
        v.fill("BTC-PERP", a, b, true, "1", "60000").unwrap();
        v.fill("ETH-PERP", a, c, true, "10", "3000").unwrap();
        v.t += 1;
        v.price("USDC", "1");
        v.price("ETH", "3200");
        // A closes its ETH long at a profit of 2,000 less 15 + 16 of taker fees; C, short, has not settled.
        v.fill("ETH-PERP", a, d, false, "10", "3200").unwrap();
        v.price("BTC", "45000");
        v.ok(CommandKind::SettlePnl {
            market: "BTC-PERP".into(),
            winner: b,
            loser: a,
        });
        (v, a, c)
    };
    assert!(v.engine.sub_accounts()[a as usize].balances.is_empty());
    let eth_claim = v.engine.sub_accounts()[a as usize].perps[1].quote;
    assert_eq!(eth_claim, quote("1969"));
    // C, the unsettled loser, still holds collateral: it is not bankrupt.
    assert_eq!(
        v.rejected(CommandKind::ResolveBankruptcy { target: c })
            .code,
        "not_bankrupt"
    );
    let events = v.ok(CommandKind::ResolveBankruptcy { target: a });
    assert!(
        matches!(&events[0], Event::PerpClaimForfeited { amount, .. } if *amount == eth_claim),
        "{events:?}"
    );
    let Some(Event::PerpBankruptcyResolved {
        deficit,
        from_venue_claims,
        covered_by_insurance,
        socialized,
        ..
    }) = events
        .iter()
        .find(|e| matches!(e, Event::PerpBankruptcyResolved { .. }))
    else {
        panic!("{events:?}")
    };
    // BTC-PERP: -60,030 + 10,000 + 45,000 = -5,030. Claims 42; the fund pays B its cap (100); the rest is
    // deleveraged.
    assert_eq!(*deficit, quote("5030"));
    assert_eq!(*from_venue_claims, quote("42"));
    assert_eq!(*covered_by_insurance, qty("100"));
    assert_eq!(*socialized, quote("4888"));
    // The claim now belongs to the insurance fund, collected when C settles with the venue.
    assert_eq!(v.engine.markets()[1].insurance_collected, eth_claim);
    assert!(v.engine.sub_accounts()[a as usize].perps.is_empty());
    v.ok(CommandKind::SettleVenueClaims {
        market: "ETH-PERP".into(),
        loser: c,
    });
    v.engine.check_invariants().unwrap();
}
