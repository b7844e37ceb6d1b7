//! European option series in the engine: marking (fixed point against the f64 reference), fills, the standard
//! short-option margin at three levels, the volatility oracle, expiry (settlement price, closing at the payoff),
//! liquidation of a short option, and conservation through all of it.
//!
//! The example protocol lists `BTC-29DEC23-60000-C` (call, strike 60,000) and `BTC-29DEC23-50000-P` (put, strike
//! 50,000), both expiring at 1,703,836,800 (2023-12-29 08:00 UTC), 0.075 maintenance share and floor, 0.15 / 0.10
//! initial share and floor, fees 0.0003.

mod common;

use ballast_engine::{CommandKind, Event, MarginSpec};
use ballast_num::{Price, Quote, TokenAmount};
use ballast_risk::{EuropeanOption, Model, OptionInputs, OptionKind};
use common::*;

const CALL: &str = "BTC-29DEC23-60000-C";
const PUT: &str = "BTC-29DEC23-50000-P";
const EXPIRY: u64 = 1_703_836_800;
const BTC_DECIMALS: u8 = 8;

fn mark(v: &Venue, market: &str) -> Price {
    let m = v.engine.market_index(market).unwrap();
    v.engine.market_mark(m).expect("a mark")
}

/// The value of `contracts` whole contracts (negative: short) at `price`, rounded down as the engine does.
fn value(contracts: i128, price: Price) -> Quote {
    price
        .value_floor(TokenAmount::from_raw(contracts * 100_000_000), BTC_DECIMALS)
        .unwrap()
}

/// The flat example venue with prices; A (buyer) holds 10,000 USDC and B (writer) 20,000.
fn venue() -> (Venue, u32, u32) {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let a = v.sub(1, MarginSpec::Cross);
    let b = v.sub(2, MarginSpec::Cross);
    v.deposit(a, "USDC", "10000");
    v.deposit(b, "USDC", "20000");
    (v, a, b)
}

#[test]
fn the_mark_agrees_with_the_f64_reference() {
    let (mut v, _, _) = venue();
    for (p, vol) in [
        ("60000", "0.55"),
        ("45000", "0.9"),
        ("80000", "0.2"),
        ("1000", "2"),
    ] {
        v.t += 60;
        v.price("BTC", p);
        for market in [CALL, PUT] {
            v.ok(CommandKind::OptionVol {
                market: market.into(),
                vol: vol.parse().unwrap(),
            });
            let m = v.engine.market_index(market).unwrap();
            let series = v.engine.market_configs()[m as usize]
                .option
                .clone()
                .unwrap();
            let years = (EXPIRY - v.t) as f64 / (365.0 * 86_400.0);
            let reference = EuropeanOption::new(OptionInputs {
                model: Model::BlackScholes,
                kind: if market == CALL {
                    OptionKind::Call
                } else {
                    OptionKind::Put
                },
                underlying: p.parse().unwrap(),
                strike: series.strike.to_string().parse().unwrap(),
                rate: 0.0,
                dividend_yield: 0.0,
                expiry_years: years,
            })
            .unwrap()
            .price(vol.parse().unwrap())
            .unwrap();
            let engine: f64 = mark(&v, market).to_string().parse().unwrap();
            // The fixed-point bound (docs/risk.md) plus the rounding to a Price (10^-12).
            let bound = 1e-9 * p.parse::<f64>().unwrap().max(60_000.0) + 2e-12;
            assert!(
                (engine - reference).abs() <= bound,
                "{market} at S={p}, vol={vol}: engine {engine}, reference {reference}"
            );
        }
    }
}

#[test]
fn the_buyer_pays_the_premium_from_collateral_and_the_writer_holds_the_short_margin() {
    let (mut v, a, b) = venue();
    // Without collateral for the premium, the buyer is refused.
    let poor = v.sub(3, MarginSpec::Cross);
    v.deposit(poor, "USDC", "100");
    let r = v.fill(CALL, poor, b, true, "1", "4500").unwrap_err();
    assert_eq!(r.code, "insufficient_health", "{r}");

    v.fill(CALL, a, b, true, "1", "4500").unwrap();
    let m = mark(&v, CALL);
    let long = v.engine.sub_accounts()[a as usize].perps[0];
    let short = v.engine.sub_accounts()[b as usize].perps[0];
    // Fees: 0.0003 * 4,500 = 1.35 each.
    assert_eq!(
        (long.base.raw(), long.quote),
        (100_000_000, quote("-4501.35"))
    );
    assert_eq!(
        (short.base.raw(), short.quote),
        (-100_000_000, quote("4498.65"))
    );

    // Long: initial counts the value at weight 0; the other levels at the mark.
    let h = v.health(a);
    assert_eq!(h.initial, quote("5498.65"));
    let at_mark = quote("5498.65").checked_add(value(1, m)).unwrap();
    assert_eq!((h.liquidation_end, h.maintenance), (at_mark, at_mark));

    // Short, at the money (S = K = 60,000, OTM 0): maintenance needs max(0.075 S, 0.075 S) = 4,500, initial
    // max(0.15 S - 0, 0.10 S) = 9,000, liquidation-end halfway (fraction 0.5) = 6,750.
    let pnl = quote("4498.65").checked_add(value(-1, m)).unwrap();
    let h = v.health(b);
    let minus = |x: &str| {
        quote("20000")
            .checked_add(pnl)
            .unwrap()
            .checked_sub(quote(x))
            .unwrap()
    };
    assert_eq!(h.maintenance, minus("4500"));
    assert_eq!(h.liquidation_end, minus("6750"));
    let initial_pnl = if pnl.is_positive() {
        pnl.mul_ratio_floor("0.9".parse().unwrap()).unwrap()
    } else {
        pnl
    };
    assert_eq!(
        h.initial,
        quote("20000")
            .checked_add(initial_pnl)
            .unwrap()
            .checked_sub(quote("9000"))
            .unwrap()
    );
}

#[test]
fn out_of_the_money_lowers_the_short_requirement_down_to_its_floor_and_a_put_is_capped_at_its_strike(
) {
    let (mut v, a, b) = venue();
    v.deposit(b, "USDC", "50000");
    v.fill(PUT, a, b, true, "2", "500").unwrap();
    let short_pnl = |v: &Venue| {
        let p = v.engine.sub_accounts()[b as usize].perps[0];
        p.quote.checked_add(value(-2, mark(v, PUT))).unwrap()
    };
    // S = 60,000, K = 50,000: OTM 10,000. Initial per contract max(9,000 - 10,000, 6,000) = 6,000 (the floor);
    // maintenance max(4,500 - 10,000, 4,500) = 4,500.
    let h = v.health(b);
    let base = quote("70000").checked_add(short_pnl(&v)).unwrap();
    assert_eq!(h.maintenance, base.checked_sub(quote("9000")).unwrap());
    // S = 1,000,000: the floor 0.075 S = 75,000 exceeds the strike; a short put never loses more than 50,000.
    v.t += 1;
    v.price("BTC", "1000000");
    let h = v.health(b);
    let base = quote("70000").checked_add(short_pnl(&v)).unwrap();
    assert_eq!(h.maintenance, base.checked_sub(quote("100000")).unwrap());
    assert!(h.initial <= h.liquidation_end && h.liquidation_end <= h.maintenance);
}

#[test]
fn the_volatility_oracle_moves_the_mark_and_margin_and_bad_prints_change_nothing() {
    let (mut v, a, b) = venue();
    v.fill(CALL, a, b, true, "1", "4500").unwrap();
    let before = mark(&v, CALL);
    let health_before = v.health(b).maintenance;
    v.ok(CommandKind::OptionVol {
        market: CALL.into(),
        vol: "1.1".parse().unwrap(),
    });
    assert!(
        mark(&v, CALL) > before,
        "a higher volatility raises the mark"
    );
    assert!(
        v.health(b).maintenance < health_before,
        "and costs the writer"
    );

    for (market, vol, code) in [
        ("BTC-PERP", "0.5", "not_an_option"),
        (CALL, "0", "bad_vol"),
        (CALL, "10.5", "bad_vol"),
        ("NOPE", "0.5", "unknown_market"),
    ] {
        let r = v.rejected(CommandKind::OptionVol {
            market: market.into(),
            vol: vol.parse().unwrap(),
        });
        assert_eq!(r.code, code, "{r}");
    }
    let r = v.rejected(CommandKind::UpdateFunding {
        market: CALL.into(),
        mark_price: price("3000"),
    });
    assert_eq!(r.code, "not_a_perp", "{r}");
}

#[test]
fn the_mark_decays_toward_the_payoff_as_expiry_nears() {
    let (mut v, _, _) = venue();
    v.t += 60;
    v.price("BTC", "61000");
    let far = mark(&v, CALL);
    v.t = EXPIRY - 3600;
    v.all_prices(); // BTC 60,000 again, an hour before expiry
    v.t += 60;
    v.price("BTC", "61000");
    let near = mark(&v, CALL);
    assert!(near < far, "time value decays: {near} < {far}");
    assert!(near >= price("1000"), "never below the payoff: {near}");
}

#[test]
fn expiry_stops_trading_then_the_first_tight_print_fixes_settlement_and_positions_close_at_the_payoff(
) {
    let (mut v, a, b) = venue();
    v.deposit(b, "USDC", "30000");
    v.fill(CALL, a, b, true, "1.5", "3000").unwrap();
    v.fill(PUT, a, b, true, "1", "800").unwrap();
    let oi_before = v.engine.markets()[v.engine.market_index(CALL).unwrap() as usize].open_interest;
    assert_eq!(oi_before.raw(), 150_000_000);

    v.t = EXPIRY;
    let r = v.fill(CALL, a, b, true, "0.01", "3000").unwrap_err();
    assert_eq!(r.code, "market_expired", "{r}");
    let r = v.rejected(CommandKind::ExpireMarket {
        market: CALL.into(),
    });
    assert_eq!(r.code, "not_settled", "{r}");

    // A price published a second before expiry does not settle; neither does a wide one after it.
    v.t += 5;
    v.ok(CommandKind::OraclePrice {
        asset: "USDC".into(),
        price: price("1"),
        confidence: price("0.0001"),
        publish_time: v.t,
    });
    let events = v.ok(CommandKind::OraclePrice {
        asset: "BTC".into(),
        price: price("64000"),
        confidence: price("64"),
        publish_time: EXPIRY - 1,
    });
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::SettlementPriceFixed { .. })));
    let events = v.ok(CommandKind::OraclePrice {
        asset: "BTC".into(),
        price: price("64100"),
        confidence: price("5000"),
        publish_time: EXPIRY + 1,
    });
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::SettlementPriceFixed { .. })));
    let events = v.ok(CommandKind::OraclePrice {
        asset: "BTC".into(),
        price: price("64200"),
        confidence: price("30"),
        publish_time: EXPIRY + 2,
    });
    let fixed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::SettlementPriceFixed {
                market,
                settlement_price,
                payoff,
                ..
            } => Some((market.clone(), *settlement_price, *payoff)),
            _ => None,
        })
        .collect();
    assert_eq!(
        fixed,
        vec![
            (CALL.to_string(), price("64200"), price("4200")),
            (PUT.to_string(), price("64200"), price("0")),
        ]
    );
    // Settled: the mark is the payoff exactly and a short needs nothing beyond it.
    assert_eq!(mark(&v, CALL), price("4200"));
    let r = v.rejected(CommandKind::OptionVol {
        market: CALL.into(),
        vol: "0.5".parse().unwrap(),
    });
    assert_eq!(r.code, "market_expired", "{r}");
    // A later print does not move the settlement.
    v.t += 10;
    v.price("BTC", "50000");
    assert_eq!(mark(&v, CALL), price("4200"));

    let quote_a = v.engine.sub_accounts()[a as usize].perps[0].quote;
    let events = v.ok(CommandKind::ExpireMarket {
        market: CALL.into(),
    });
    let closed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::PositionExpired {
                sub_account,
                payoff,
                ..
            } => Some((*sub_account, *payoff)),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![(a, quote("6300")), (b, quote("-6300"))]);
    let m = v.engine.market_index(CALL).unwrap();
    assert!(v.engine.markets()[m as usize].open_interest.is_zero());
    let long = v.engine.sub_accounts()[a as usize].perp(m).unwrap();
    assert_eq!(
        (long.base.raw(), long.quote),
        (0, quote_a.checked_add(quote("6300")).unwrap())
    );
    // The PnL now settles into deposits like a perp's: B pays A.
    v.ok(CommandKind::SettlePnl {
        market: CALL.into(),
        winner: a,
        loser: b,
    });
    let usdc = v.engine.asset_index("USDC").unwrap();
    let a_usdc = v.engine.balance_native(a, usdc).unwrap();
    // 10,000 + the call's PnL: 6,300 - 4,500 - 1.35 (premium and fee); the put's quote stays in its position.
    assert_eq!(a_usdc.raw(), 11_798_650_000);
    // A second expiry has nothing to close; the put expires worthless.
    let events = v.ok(CommandKind::ExpireMarket {
        market: CALL.into(),
    });
    assert!(matches!(
        events.last(),
        Some(Event::MarketExpired {
            positions_closed: 0,
            ..
        })
    ));
    v.ok(CommandKind::ExpireMarket { market: PUT.into() });
    let r = v.rejected(CommandKind::ExpireMarket {
        market: "BTC-PERP".into(),
    });
    assert_eq!(r.code, "not_an_option", "{r}");
}

#[test]
fn a_short_call_is_liquidated_when_the_underlying_rallies() {
    let (mut v, a, b) = venue();
    v.fill(CALL, a, b, true, "1", "4500").unwrap();
    let l = v.sub(9, MarginSpec::Cross);
    v.deposit(l, "USDC", "1000000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    v.t += 60;
    let events = v.price("BTC", "80000");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::MarginCall { sub_account, .. } if *sub_account == b)),
        "{events:?}"
    );
    let events = v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: b,
    });
    let Some(Event::PerpLiquidated { market, base, .. }) = events
        .iter()
        .find(|e| matches!(e, Event::PerpLiquidated { .. }))
    else {
        panic!("{events:?}")
    };
    assert_eq!(market, CALL);
    assert!(base.to_string().starts_with('-'), "the target was short");
    let h = v.health(b);
    let flat = v.engine.sub_accounts()[b as usize]
        .perps
        .iter()
        .all(|p| p.base.is_zero());
    assert!(
        !h.liquidation_end.is_negative() || flat,
        "back to liquidation-end health or closed: {h:?}"
    );
}

#[test]
fn option_series_are_validated_with_field_names() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/protocol.toml"
    ))
    .unwrap();
    let broken = text
        .replace("strike = \"60000\"", "strike = \"-1\"")
        .replace("mark_vol = \"0.6\"", "mark_vol = \"0\"");
    let errors = ballast_engine::ProtocolConfig::from_toml("p.toml", &broken)
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("market BTC-29DEC23-60000-C: option strike -1 must be positive"),
        "{errors}"
    );
    assert!(
        errors.contains("market BTC-29DEC23-50000-P: option mark_vol 0 must be above 0"),
        "{errors}"
    );
    // A perp without funding, an option with funding or a pool.
    let no_funding = text.replacen(
        "[market.funding]\ninterval_s = 3600\nmax_rate_per_interval = \"0.0005\"\n[market.pool]",
        "[market.pool]",
        1,
    );
    let errors = ballast_engine::ProtocolConfig::from_toml("p.toml", &no_funding)
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("market BTC-PERP: funding is missing"),
        "{errors}"
    );
}

#[test]
fn option_streams_replay_to_the_same_hash_and_keep_every_invariant() {
    let base = seed("option_streams", 0x0F7);
    let (mut n_fills, mut n_liquidated, mut n_expired, mut n_pm_calls) = (0, 0, 0, 0);
    let mut n_slices = 0;
    let mut fill_rejections = std::collections::BTreeMap::new();
    for s in base..base + 3 {
        let stream = option_stream(s, 12, 40);
        let mut engine = ballast_engine::Engine::new(flat_config(), GENESIS);
        let mut hashes = vec![engine.state_hash()];
        for command in &stream {
            let before = hashes.last().unwrap().clone();
            match engine.apply(command) {
                Ok(events) => {
                    for e in &events {
                        match e {
                            Event::PerpFilled { .. } => n_fills += 1,
                            Event::PerpLiquidated { .. } => n_liquidated += 1,
                            Event::PortfolioLiquidated {
                                health_before,
                                health_after,
                                ..
                            } => {
                                n_slices += 1;
                                assert!(
                                    health_after.liquidation_end > health_before.liquidation_end,
                                    "seed {s}: a slice did not improve health: {e:?}"
                                );
                            }
                            Event::PositionExpired { .. } => n_expired += 1,
                            Event::MarginCall { sub_account, .. }
                                if engine.sub_accounts()[*sub_account as usize].margin
                                    == ballast_engine::MarginKind::Portfolio =>
                            {
                                n_pm_calls += 1
                            }
                            _ => {}
                        }
                    }
                }
                Err(r) => {
                    if matches!(command.kind, CommandKind::PerpFill { .. }) {
                        *fill_rejections.entry(r.code).or_insert(0) += 1;
                    }
                    assert_eq!(
                        engine.state_hash(),
                        before,
                        "seed {s}: a rejection changed the state"
                    )
                }
            }
            hashes.push(engine.state_hash());
        }
        engine.check_invariants().unwrap();
        let mut replay = ballast_engine::Engine::new(flat_config(), GENESIS);
        for (i, command) in stream.iter().enumerate() {
            let _ = replay.apply(command);
            if i % 50 == 0 || i + 1 == stream.len() {
                assert_eq!(
                    replay.state_hash(),
                    hashes[i + 1],
                    "seed {s}: replay diverged at {i}"
                );
            }
        }
        // After expiry every option position is flat.
        for sub in engine.sub_accounts() {
            for p in &sub.perps {
                let symbol = &engine.market_configs()[p.market as usize].symbol;
                if symbol != "BTC-PERP" {
                    assert!(
                        p.base.is_zero(),
                        "seed {s}: open position in {symbol} after expiry"
                    );
                }
            }
        }
    }
    println!(
        "fills {n_fills}, liquidations {n_liquidated}, portfolio slices {n_slices}, expired {n_expired}, \
         portfolio margin calls {n_pm_calls}, fill rejections {fill_rejections:?}"
    );
    assert!(n_fills > 50 && n_liquidated > 5 && n_expired > 20 && n_pm_calls > 2);
}

/// A position marked at zero (far out of the money an hour before expiry, or settled worthless) does not stop a
/// liquidation: it has no notional to bound the step.
#[test]
fn options_marked_at_zero_do_not_block_liquidation() {
    // A short call worth nothing beside a long perp that sinks.
    let (mut v, _, c) = venue();
    v.deposit(c, "USDC", "10000000");
    let t = v.sub(3, MarginSpec::Cross);
    v.deposit(t, "USDC", "16000");
    v.fill(CALL, t, c, false, "1", "100").unwrap();
    v.fill("BTC-PERP", t, c, true, "0.35", "60000").unwrap();
    let l = v.sub(9, MarginSpec::Cross);
    v.deposit(l, "USDC", "5000000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    v.t = EXPIRY - 3600;
    v.all_prices();
    v.t += 1;
    v.price("BTC", "18000");
    assert_eq!(mark(&v, CALL), Price::ZERO);
    assert!(v.health(t).maintenance.is_negative());
    v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: t,
    });

    // A long call settled worthless (before expire_market) beside a USDC debt against BTC.
    let (mut v, _, c) = venue();
    v.deposit(c, "USDC", "10000000");
    let t = v.sub(3, MarginSpec::Cross);
    v.deposit(t, "BTC", "1");
    v.deposit(t, "USDC", "1000");
    v.fill(CALL, t, c, true, "0.1", "100").unwrap();
    v.withdraw(t, "USDC", "40000").unwrap();
    let l = v.sub(9, MarginSpec::Cross);
    v.deposit(l, "USDC", "5000000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    v.t = EXPIRY + 60;
    v.price("USDC", "1");
    v.price("BTC", "55000");
    v.t += 60;
    v.price("BTC", "43000");
    assert!(v.health(t).maintenance.is_negative());
    let events = v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: t,
    });
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::SpotLiquidated { .. })),
        "{events:?}"
    );
}

/// A settlement print must be usable for new risk: one far from the slow reference price does not fix the payoff.
#[test]
fn a_divergent_print_after_expiry_does_not_fix_the_settlement_price() {
    let (mut v, a, b) = venue();
    v.fill(CALL, a, b, true, "1", "4500").unwrap();
    v.t = EXPIRY + 10;
    v.price("USDC", "1");
    // BTC's reference is about 60,000; a print 30 % away diverges (max_divergence 0.1).
    let events = v.price("BTC", "78000");
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::SettlementPriceFixed { .. })));
    v.t += 1;
    let events = v.price("BTC", "61000");
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::SettlementPriceFixed { settlement_price, .. } if *settlement_price == price("61000"))));
}

/// A series expiring decades after the oracle's prints is marked with at most 40 years to expiry (inside the
/// pricer's domain), and one past 2100 is refused by validation.
#[test]
fn far_expiries_are_bounded() {
    let config = flat_config_with(|f| {
        let mut m = f.market.iter().find(|m| m.symbol == CALL).unwrap().clone();
        m.symbol = "BTC-2099-C".into();
        m.option.as_mut().unwrap().expiry_s = 4_070_908_800; // 2099-01-01
        f.market.push(m);
    });
    let mut v = Venue::new(config);
    v.all_prices();
    let m = v.engine.market_index("BTC-2099-C").unwrap();
    let far = v.engine.market_mark(m).expect("a mark");
    assert!(far > price("40000") && far <= price("60000"), "{far}");

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/protocol.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let broken = text.replace(
        "expiry_s = 1703836800 # 2023-12-29 08:00 UTC",
        "expiry_s = 4102444801",
    );
    let errors = ballast_engine::ProtocolConfig::from_toml("p.toml", &broken)
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("option expiry_s 4102444801 must be"),
        "{errors}"
    );
}

/// A closed winner's payoff, unsettled, counts at the positive-PnL weight in initial health, as for perps.
#[test]
fn an_unsettled_payoff_counts_at_the_positive_pnl_weight_for_new_risk() {
    let (mut v, a, b) = venue();
    v.fill(CALL, a, b, true, "1", "4500").unwrap();
    v.t = EXPIRY + 10;
    v.price("USDC", "1");
    v.price("BTC", "65000");
    v.ok(CommandKind::ExpireMarket {
        market: CALL.into(),
    });
    let position = v.engine.sub_accounts()[a as usize].perps[0];
    assert!(position.base.is_zero() && position.quote.is_positive());
    let h = v.health(a);
    // The payoff at 65,000 is 5,000 against 4,501.35 paid: 498.65 unsettled, 0.9 of it counts for new risk.
    assert_eq!(position.quote, quote("498.65"));
    assert_eq!(h.initial, quote("10448.785"));
    assert_eq!(h.maintenance, quote("10498.65"));
}

/// Once its settlement price is fixed, a series is worth its payoff whatever the underlying does: settling its PnL
/// does not wait for a fresh underlying price.
#[test]
fn a_settled_series_settles_without_a_fresh_underlying_price() {
    let (mut v, a, b) = venue();
    v.fill(CALL, a, b, true, "1", "4500").unwrap();
    v.t = EXPIRY + 10;
    v.price("USDC", "1");
    v.price("BTC", "65000");
    v.ok(CommandKind::ExpireMarket {
        market: CALL.into(),
    });
    // An hour later the BTC feed is stale (limit 60 s); only USDC prints.
    v.t += 3_600;
    v.price("USDC", "1");
    v.ok(CommandKind::SettlePnl {
        market: CALL.into(),
        winner: a,
        loser: b,
    });
    let usdc = v.engine.asset_index("USDC").unwrap();
    assert_eq!(
        v.engine.balance_native(a, usdc).unwrap().raw(),
        10_498_650_000
    );
}

/// The realistic stuck case: T (30,000 USDC) buys 2 calls at 4,500 (one from each of W1 and W2, 100,000 USDC each;
/// W2 also writes one to Other) and sells 4 BTC-PERP at 60,000 to P. A staker puts 10,000 USDC in the USDC insurance
/// fund. BTC gaps to 75,000: a liquidator takes the perps over at the oracle (T is insolvent, so no fee), P settles
/// T's 30,000 USDC, and T is left with a flat BTC-PERP position owing 30,120 and 2 calls in profit, worth less.
/// Returns the venue, T, W1, W2 and Other.
fn long_calls_short_perps_after_a_rally() -> (Venue, u32, u32, u32, u32) {
    let (mut v, w1, w2) = venue();
    v.deposit(w1, "USDC", "80000");
    v.deposit(w2, "USDC", "80000");
    let t = v.sub(3, MarginSpec::Cross);
    v.deposit(t, "USDC", "30000");
    let other = v.sub(4, MarginSpec::Cross);
    v.deposit(other, "USDC", "30000");
    let p = v.sub(5, MarginSpec::Cross);
    v.deposit(p, "USDC", "1000000");
    let staker = v.sub(6, MarginSpec::Cross);
    v.deposit(staker, "USDC", "10000");
    v.ok(CommandKind::StakeInsurance {
        sub_account: staker,
        asset: "USDC".into(),
        amount: qty("10000"),
    });
    v.fill(CALL, t, w1, true, "1", "4500").unwrap();
    v.fill(CALL, t, w2, true, "1", "4500").unwrap();
    v.fill(CALL, other, w2, true, "1", "4500").unwrap();
    v.fill("BTC-PERP", t, p, false, "4", "60000").unwrap();
    let l = v.sub(9, MarginSpec::Cross);
    v.deposit(l, "USDC", "5000000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    v.t += 60;
    v.price("USDC", "1");
    v.price("BTC", "75000");
    let events = v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: t,
    });
    assert!(
        matches!(&events[0], Event::PerpLiquidated { market, full_close: true, .. } if market == "BTC-PERP"),
        "{events:?}"
    );
    v.ok(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: p,
        loser: t,
    });
    let sub = &v.engine.sub_accounts()[t as usize];
    assert!(sub.balances.is_empty());
    // BTC-PERP: sold 4 at 60,000 less 120 of fees, bought back at 75,000, 30,000 paid to P.
    assert_eq!(
        (sub.perps[0].base.raw(), sub.perps[0].quote),
        (0, quote("-30120"))
    );
    // The calls: 2 at 4,500 plus 1.35 of fees each.
    assert_eq!(
        (sub.perps[1].base.raw(), sub.perps[1].quote),
        (200_000_000, quote("-9002.7"))
    );
    assert!(
        value(2, mark(&v, CALL)) > quote("9002.7"),
        "the calls are in profit"
    );
    assert!(v.engine.equity(t).unwrap().is_negative(), "T is insolvent");
    assert!(
        v.health(t).maintenance.is_negative(),
        "and below maintenance"
    );
    (v, t, w1, w2, other)
}

/// An insolvent sub-account's profitable long option cannot be taken over by a liquidator (it has no requirement,
/// so no takeover improves health); the waterfall closes it at its mark against the shorts, in ADL order, and the
/// resulting claim is forfeited to the insurance fund. The shorts lose nothing and are not paused.
#[test]
fn an_insolvent_sub_accounts_profitable_long_calls_are_closed_at_the_mark_and_forfeited() {
    let (mut v, t, w1, w2, other) = long_calls_short_perps_after_a_rally();
    let m = v.engine.market_index(CALL).unwrap();
    let perp = v.engine.market_index("BTC-PERP").unwrap();
    let at_mark = mark(&v, CALL);
    let position = |v: &Venue, id: u32| *v.engine.sub_accounts()[id as usize].perp(m).unwrap();
    let value_at_mark = |v: &Venue, id: u32| {
        let p = position(v, id);
        at_mark
            .value_floor(p.base, BTC_DECIMALS)
            .unwrap()
            .checked_add(p.quote)
            .unwrap()
    };
    let before: Vec<_> = [w1, w2, other]
        .iter()
        .map(|&id| {
            (
                position(&v, id),
                value_at_mark(&v, id),
                v.health(id).maintenance,
            )
        })
        .collect();
    let oi_before = v.engine.markets()[m as usize].open_interest;
    let perp_claims = v.engine.markets()[perp as usize].fees_collected;
    assert_eq!(
        perp_claims,
        quote("168"),
        "taker 120 and maker 48 in BTC-PERP"
    );
    let fund_before = v.engine.pool(0).bad_debt_covered;

    let events = v.ok(CommandKind::ResolveBankruptcy { target: t });
    // Closed at the mark against the shorts in ADL order: Other's profitable long ranks first (skipped, same side),
    // then the losers, smallest loss first: W1 (short 1) before W2 (short 2).
    let one = value(1, at_mark);
    let closed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::ClosedAtMark {
                market,
                bankrupt,
                counterparty,
                rank,
                base,
                price,
                amount,
            } => {
                assert_eq!((market.as_str(), *bankrupt, *price), (CALL, t, at_mark));
                Some((*rank, *counterparty, *base, *amount))
            }
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![(2, w1, qty("1"), one), (3, w2, qty("1"), one)]);
    // The closed calls are a claim of -9,002.7 + 2 * floor(mark), forfeited to the insurance fund's claim.
    let claim = quote("-9002.7")
        .checked_add(one)
        .unwrap()
        .checked_add(one)
        .unwrap();
    assert!(
        events.iter().any(|e| matches!(e, Event::PerpClaimForfeited { market, amount, .. } if market == CALL && *amount == claim)),
        "{events:?}"
    );
    assert_eq!(v.engine.markets()[m as usize].insurance_collected, claim);
    // BTC-PERP's deficit goes down the waterfall as before: venue claims 168, the fund's 10,000, the rest cut from
    // P's profit.
    let Some(Event::PerpBankruptcyResolved {
        market,
        deficit,
        from_venue_claims,
        covered_by_insurance,
        socialized,
        bankruptcy_price,
        ..
    }) = events
        .iter()
        .find(|e| matches!(e, Event::PerpBankruptcyResolved { .. }))
    else {
        panic!("{events:?}")
    };
    assert_eq!(market, "BTC-PERP");
    assert_eq!(*deficit, quote("30120"));
    assert_eq!(*from_venue_claims, quote("168"));
    assert_eq!(*covered_by_insurance, qty("10000"));
    assert_eq!(*socialized, quote("19952"));
    assert_eq!(*bankruptcy_price, None);
    let perp_market = &v.engine.markets()[perp as usize];
    assert_eq!(
        (
            perp_market.claims_written_off,
            perp_market.insurance_paid,
            perp_market.socialized_loss
        ),
        (quote("168"), quote("10000"), quote("19952"))
    );
    assert_eq!(
        v.engine.pool(0).bad_debt_covered.raw() - fund_before.raw(),
        10_000_000_000
    );

    // T holds nothing; the shorts were bought back by exactly T's 2 contracts, at the mark.
    let sub = &v.engine.sub_accounts()[t as usize];
    assert!(sub.perps.is_empty() && sub.balances.is_empty(), "{sub:?}");
    assert_eq!(
        v.engine.markets()[m as usize].open_interest.raw(),
        oi_before.raw() - 200_000_000
    );
    let mut bought_back = 0;
    let mut paid = Quote::ZERO;
    for (i, &id) in [w1, w2, other].iter().enumerate() {
        let (p, value_before, health_before) = before[i];
        let now = position(&v, id);
        bought_back += now.base.raw() - p.base.raw();
        paid = paid
            .checked_add(p.quote.checked_sub(now.quote).unwrap())
            .unwrap();
        assert!(
            value_at_mark(&v, id) >= value_before,
            "sub-account {id} lost value"
        );
        assert!(
            v.health(id).maintenance >= health_before,
            "sub-account {id} less healthy"
        );
    }
    assert_eq!(bought_back, 200_000_000);
    assert_eq!(paid, one.checked_add(one).unwrap());
    assert_eq!(position(&v, w1).base.raw(), 0);
    assert_eq!(position(&v, w2).base.raw(), -100_000_000);
    assert_eq!(position(&v, other).base.raw(), 100_000_000);
    // Nobody lost anything in the option series: no pause, the writers may withdraw once the oracle's reference has
    // caught up with the gap.
    assert_eq!(v.engine.markets()[m as usize].withdrawals_paused_until_s, 0);
    v.engine.check_invariants().unwrap();
    for _ in 0..120 {
        v.t += 60;
        v.price("USDC", "1");
        v.price("BTC", "75000");
    }
    v.withdraw(w1, "USDC", "1000").unwrap();
    v.withdraw(w2, "USDC", "1000").unwrap();
    v.engine.check_invariants().unwrap();
    assert_eq!(
        v.rejected(CommandKind::ResolveBankruptcy { target: t })
            .code,
        "not_bankrupt"
    );
}

/// The same sub-account is refused while its calls are worth more than its deficit: it is solvent, so nothing is
/// closed (settle its PnL instead), and the refusal changes nothing.
#[test]
fn a_solvent_sub_account_with_a_profitable_long_option_is_not_bankrupt() {
    let (mut v, t, _, _, _) = long_calls_short_perps_after_a_rally();
    v.t += 1;
    v.price("USDC", "1");
    v.price("BTC", "85000");
    assert!(!v.engine.equity(t).unwrap().is_negative());
    let r = v.rejected(CommandKind::ResolveBankruptcy { target: t });
    assert_eq!(r.code, "not_bankrupt", "{r}");
    assert!(r.message.contains("settle its PnL instead"), "{r}");
}

/// A portfolio-margined covered-call writer W (borrowed to its initial limit) is the only short of the series:
/// buying its short call back at the mark would not lower its value but would remove its hedge and push it below
/// maintenance. The bankrupt's long call is then not closed against it: the resolution is refused with
/// `no_counterparty` and changes nothing (it can go through once the market moves, or the series expires and the
/// call becomes a closed claim). With W less levered, W stays above maintenance and the call is closed against it.
#[test]
fn closing_a_long_option_never_pushes_a_portfolio_short_below_maintenance() {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let lender = v.sub(10, MarginSpec::Cross);
    v.deposit(lender, "USDC", "500000");
    let w = v.sub(1, MarginSpec::Portfolio);
    v.deposit(w, "BTC", "1");
    let t = v.sub(3, MarginSpec::Cross);
    v.deposit(t, "USDC", "30000");
    let p = v.sub(5, MarginSpec::Cross);
    v.deposit(p, "USDC", "1000000");
    v.fill(CALL, t, w, true, "1", "4500").unwrap();
    v.fill("BTC-PERP", t, p, false, "4", "60000").unwrap();
    let l = v.sub(9, MarginSpec::Cross);
    v.deposit(l, "USDC", "5000000");
    v.ok(CommandKind::RegisterLiquidator { sub_account: l });
    v.t += 60;
    v.price("USDC", "1");
    v.price("BTC", "75000");
    v.ok(CommandKind::Liquidate {
        liquidator: l,
        target: t,
    });
    v.ok(CommandKind::SettlePnl {
        market: "BTC-PERP".into(),
        winner: p,
        loser: t,
    });
    for _ in 0..240 {
        v.t += 60;
        v.price("USDC", "1");
        v.price("BTC", "75000");
    }
    // W borrows USDC as far as its (covered-call) initial health allows, or only a third of that.
    let borrow = |v: &mut Venue, limit: i128| {
        let mut step = 64_000i128;
        while step >= 1 {
            if step <= limit {
                let _ = v.apply(CommandKind::Withdraw {
                    sub_account: w,
                    asset: "USDC".into(),
                    amount: qty(&step.to_string()),
                    reduce_only: false,
                });
            }
            step /= 2;
        }
    };
    assert!(v.engine.equity(t).unwrap().is_negative(), "T insolvent");
    let mut calm = Venue {
        engine: v.engine.clone(),
        t: v.t,
    };
    borrow(&mut v, i128::MAX);
    assert!(!v.health(w).maintenance.is_negative());
    let r = v.rejected(CommandKind::ResolveBankruptcy { target: t });
    assert_eq!(r.code, "no_counterparty", "{r}");

    borrow(&mut calm, 20_000);
    let before = calm.health(w);
    let events = calm.ok(CommandKind::ResolveBankruptcy { target: t });
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ClosedAtMark { counterparty, .. } if *counterparty == w)),
        "{events:?}"
    );
    let after = calm.health(w);
    assert!(
        after.maintenance < before.maintenance,
        "the hedge is gone: {before:?} -> {after:?}"
    );
    assert!(!after.maintenance.is_negative(), "{after:?}");
    calm.engine.check_invariants().unwrap();
}
