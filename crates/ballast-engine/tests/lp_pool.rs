//! The counterparty liquidity pool: shares, trades at the oracle plus price impact, the exposure bound against pool
//! capital, redemptions, the liquidation backstop, and a pool sub-account nobody can act for.

mod common;

use ballast_engine::command::Side;
use ballast_engine::{CommandKind, Event, MarginSpec, POOL_OWNER};
use common::*;

/// A venue with the pool open and one provider (LP) who has put 1,000,000 USDC into it; a trader T with 100,000 USDC.
fn venue() -> (Venue, u32, u32, u32) {
    venue_with(flat_config())
}

fn venue_with(config: ballast_engine::ProtocolConfig) -> (Venue, u32, u32, u32) {
    let mut v = Venue::new(config);
    v.all_prices();
    let events = v.ok(CommandKind::OpenCounterpartyPool {});
    let Event::CounterpartyPoolOpened { sub_account: pool } = events[0] else {
        panic!("{events:?}")
    };
    let lp = v.sub(1, MarginSpec::Cross);
    v.deposit(lp, "USDC", "2000000");
    let events = v.ok(CommandKind::PoolDeposit {
        sub_account: lp,
        amount: qty("1000000"),
    });
    let Event::PoolDeposited {
        shares, pool_value, ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    // The first share is worth one USD.
    assert_eq!((*shares, *pool_value), (qty("1000000"), quote("0")));
    let trader = v.sub(2, MarginSpec::Cross);
    v.deposit(trader, "USDC", "100000");
    (v, pool, lp, trader)
}

fn trade(
    v: &mut Venue,
    trader: u32,
    side: Side,
    size: &str,
) -> Result<Vec<Event>, ballast_engine::Rejection> {
    v.apply(CommandKind::PoolTrade {
        market: "BTC-PERP".into(),
        sub_account: trader,
        side,
        size: qty(size),
    })
}

#[test]
fn a_pool_trade_fills_at_the_oracle_price_moved_by_size_dependent_impact() {
    let (mut v, pool, _, trader) = venue();
    // The pool is flat; 5 BTC takes the traders' side from 0 to 5 BTC, 2.5 on average: 150,000 USD over BTC-PERP's
    // impact depth of 500,000,000 is 0.0003. The trader also pays the oracle's confidence (60): 60,060 * 1.0003.
    let events = trade(&mut v, trader, Side::Buy, "5").unwrap();
    let Event::PoolTraded {
        impact, price: p, ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(*impact, "0.0003".parse().unwrap());
    assert_eq!(*p, price("60078.018"));
    let Event::PerpFilled {
        maker,
        taker_fee,
        maker_fee,
        ..
    } = &events[1]
    else {
        panic!("{events:?}")
    };
    // The trader pays the taker fee on 300,390.09; the pool pays none.
    assert_eq!(
        (*maker, *taker_fee, *maker_fee),
        (pool, quote("150.195045"), quote("0"))
    );
    // Selling 10 takes the traders from 5 long to 5 short: the first 5 bring the pool back to flat and pay no
    // impact; the next 5 pay for their mean of 2.5 BTC, so the trade pays for 1.25 BTC on average: 75,000 USD over
    // 500,000,000 is 0.00015, under the oracle less its confidence: 59,940 * (1 - 0.00015).
    let events = trade(&mut v, trader, Side::Sell, "10").unwrap();
    let Event::PoolTraded {
        impact, price: p, ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (*impact, *p),
        ("0.00015".parse().unwrap(), price("59931.009"))
    );
    let pool_position = v.engine.sub_accounts()[pool as usize].perps[0];
    assert_eq!(pool_position.base.raw(), 5 * 100_000_000);
    v.engine.check_invariants().unwrap();
}

/// Splitting a trade saves nothing: impact follows the traders' net position against the pool, so ten trades of
/// 0.5 BTC pay what one of 5 BTC pays (to rounding).
#[test]
fn splitting_a_pool_trade_pays_the_same_impact() {
    let (mut v, pool, _, trader) = venue();
    trade(&mut v, trader, Side::Buy, "5").unwrap();
    let whole = v.engine.sub_accounts()[pool as usize].perps[0].quote;
    let (mut v, pool, _, trader) = venue();
    for _ in 0..10 {
        trade(&mut v, trader, Side::Buy, "0.5").unwrap();
    }
    let split = v.engine.sub_accounts()[pool as usize].perps[0].quote;
    let gap = whole.checked_sub(split).unwrap().raw().abs();
    assert!(gap <= 10, "one trade: {whole}, ten: {split}");
}

#[test]
fn impact_is_capped_and_a_market_without_pool_quotes_refuses_pool_trades() {
    // A thin SOL-PERP: impact depth 5,000,000. 4,000 SOL from flat averages 2,000 SOL (300,000 USD): 0.06 of
    // impact, capped at 0.05, on top of the confidence (0.15).
    let (mut v, _, _, trader) = venue_with(flat_config_with(|f| {
        let pool = f.market[2].pool.as_mut().unwrap();
        pool.impact_depth = "5000000".parse().unwrap();
        pool.max_exposure = "1".parse().unwrap();
    }));
    let events = v.ok(CommandKind::PoolTrade {
        market: "SOL-PERP".into(),
        sub_account: trader,
        side: Side::Buy,
        size: qty("4000"),
    });
    let Event::PoolTraded {
        impact, price: p, ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!((*impact, *p), ("0.05".parse().unwrap(), price("157.6575")));
    let r = v.rejected(CommandKind::PoolTrade {
        market: "MNGO-PERP".into(),
        sub_account: trader,
        side: Side::Buy,
        size: qty("1"),
    });
    assert_eq!(r.code, "no_pool_market");
}

#[test]
fn the_pool_grows_a_position_only_within_its_exposure_bound() {
    let (mut v, _, _, trader) = venue();
    v.deposit(trader, "USDC", "1000000");
    // The pool is worth 1,000,000; BTC-PERP's bound is 0.5 of it: 500,000 USD, 8.33 BTC at 60,000.
    let r = v.rejected(CommandKind::PoolTrade {
        market: "BTC-PERP".into(),
        sub_account: trader,
        side: Side::Buy,
        size: qty("8.4"),
    });
    assert_eq!(r.code, "pool_exposure", "{r}");
    trade(&mut v, trader, Side::Buy, "8").unwrap();
    // More on the same side is refused; the other side (reducing the pool's position) is not.
    assert_eq!(
        v.rejected(CommandKind::PoolTrade {
            market: "BTC-PERP".into(),
            sub_account: trader,
            side: Side::Buy,
            size: qty("0.5"),
        })
        .code,
        "pool_exposure"
    );
    trade(&mut v, trader, Side::Sell, "3").unwrap();
}

#[test]
fn shares_price_the_pool_at_its_value_including_unsettled_pnl() {
    let (mut v, pool, lp, trader) = venue();
    trade(&mut v, trader, Side::Buy, "5").unwrap();
    // The pool is short 5 BTC sold at 60,078.018. BTC falls 5%: the pool gains.
    v.t += 1;
    v.price("USDC", "1");
    v.price("BTC", "57000");
    let second = v.sub(3, MarginSpec::Cross);
    v.deposit(second, "USDC", "100000");
    let events = v.ok(CommandKind::PoolDeposit {
        sub_account: second,
        amount: qty("100000"),
    });
    let Event::PoolDeposited {
        shares, pool_value, ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    // Value: 1,000,000 + 5 * (60,078.018 - 57,000) = 1,015,390.09. Shares: 100,000 * (1,000,000 + 1) /
    // (1,015,390.09 + 1), with one share and one USD of virtual offset.
    assert_eq!(*pool_value, quote("1015390.09"));
    assert_eq!(*shares, qty("98484.318982"));
    // A redemption values the pool's unsettled profit (15,390.09) at BTC-PERP's positive_pnl_initial_weight of 0.9
    // (the traders who owe it may never pay): depositing and redeeming at once loses a tenth of its share of it.
    let events = v.ok(CommandKind::PoolWithdraw {
        sub_account: second,
        shares: *shares,
    });
    let Event::PoolWithdrawn {
        amount, pool_value, ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(*pool_value, quote("1113851.081"));
    // 98,484.318982 shares * (1,113,851.081 + 1) / (1,098,484.318982 + 1), rounded down.
    assert_eq!(*amount, qty("99862.020682"));
    // The provider owns the rest.
    assert_eq!(v.engine.lp_shares()[&lp], 1_000_000_000_000);
    assert_eq!(v.engine.lp_pool().sub_account, Some(pool));
    v.engine.check_invariants().unwrap();
}

#[test]
fn a_redemption_needs_the_tokens_in_the_pool_and_keeps_the_exposure_bound() {
    let (mut v, _, lp, trader) = venue();
    v.deposit(trader, "USDC", "1000000");
    trade(&mut v, trader, Side::Buy, "8").unwrap();
    // 480,000 USD short against a 1,000,000 pool; taking 100,000 out leaves it at 0.53 times the pool: refused.
    let r = v.rejected(CommandKind::PoolWithdraw {
        sub_account: lp,
        shares: qty("100000"),
    });
    assert_eq!(r.code, "pool_exposure", "{r}");
    v.ok(CommandKind::PoolWithdraw {
        sub_account: lp,
        shares: qty("1000"),
    });
    assert_eq!(
        v.rejected(CommandKind::PoolWithdraw {
            sub_account: lp,
            shares: qty("2000000"),
        })
        .code,
        "insufficient_shares"
    );
}

#[test]
fn the_pool_backstops_a_liquidation_at_the_oracle_price_less_the_fee() {
    let (mut v, pool, _, _) = venue();
    let a = v.sub(5, MarginSpec::Cross);
    let b = v.sub(6, MarginSpec::Cross);
    v.deposit(a, "USDC", "10000");
    v.deposit(b, "USDC", "100000");
    v.fill("BTC-PERP", a, b, true, "1", "60000").unwrap();
    v.t += 1;
    v.price("USDC", "1");
    v.price("BTC", "51500");
    let events = v.ok(CommandKind::PoolLiquidate { target: a });
    let Event::PerpLiquidated {
        liquidator,
        price: p,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!((*liquidator, *p), (pool, price("50985")));
    assert!(v.engine.sub_accounts()[pool as usize].perps[0]
        .base
        .is_positive());
    v.engine.check_invariants().unwrap();
}

#[test]
fn nobody_acts_for_the_pool_sub_account() {
    let (mut v, pool, _, trader) = venue();
    for kind in [
        CommandKind::Withdraw {
            sub_account: pool,
            asset: "USDC".into(),
            amount: qty("1"),
            reduce_only: false,
        },
        CommandKind::Transfer {
            from: pool,
            to: trader,
            asset: "USDC".into(),
            amount: qty("1"),
        },
        CommandKind::PerpFill {
            market: "BTC-PERP".into(),
            taker: trader,
            maker: pool,
            side: Side::Buy,
            size: qty("1"),
            price: price("1"),
        },
        CommandKind::Deposit {
            sub_account: pool,
            asset: "USDC".into(),
            amount: qty("1"),
        },
        CommandKind::RegisterLiquidator { sub_account: pool },
    ] {
        assert_eq!(v.rejected(kind).code, "pool_account");
    }
    assert_eq!(
        v.rejected(CommandKind::CreateAccount { owner: POOL_OWNER })
            .code,
        "reserved_owner"
    );
    assert_eq!(
        v.rejected(CommandKind::OpenCounterpartyPool {}).code,
        "pool_exists"
    );
}

#[test]
fn pool_commands_before_the_pool_is_open_are_refused() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let t = v.sub(1, MarginSpec::Cross);
    v.deposit(t, "USDC", "1000");
    let r = v.rejected(CommandKind::PoolDeposit {
        sub_account: t,
        amount: qty("10"),
    });
    assert_eq!(r.code, "no_pool");
}
