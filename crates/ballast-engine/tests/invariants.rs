//! The engine's invariants on seeded random command streams: determinism, replay from the log, conservation of
//! every token, rejection changes nothing, health levels stay ordered, and the venue's rounding surplus never
//! shrinks. Every test prints its seed; `BALLAST_SEED=N cargo test` reproduces one stream.

mod common;

use ballast_engine::log::{decode_log, LogEncoder, LogHeader, LOG_FORMAT, LOG_VERSION};
use ballast_engine::{Command, Engine};
use common::*;

const N_STREAMS: u64 = 24;
const N_COMMANDS: usize = 1_500;

fn run(stream: &[Command]) -> (Engine, Vec<String>) {
    let mut engine = engine();
    let mut hashes = Vec::with_capacity(stream.len());
    for command in stream {
        let _ = engine.apply(command);
        hashes.push(engine.state_hash());
    }
    (engine, hashes)
}

#[test]
fn same_stream_same_hashes() {
    let base = seed("same_stream_same_hashes", 0xB411_A570);
    for s in base..base + N_STREAMS / 4 {
        let stream = random_stream(s, N_COMMANDS);
        let (_, first) = run(&stream);
        let (_, second) = run(&stream);
        assert_eq!(first, second, "seed {s}: two runs diverged");
    }
}

#[test]
fn perp_streams_replay_to_the_same_hashes() {
    let base = seed("perp_streams_replay", 0x9E4F);
    for s in base..base + 3 {
        let stream = perp_stream(s, 10, 30);
        assert_eq!(
            run(&stream).1,
            run(&stream).1,
            "seed {s}: two runs of a perp stream diverged"
        );
    }
}

#[test]
fn applied_logged_and_replayed_gives_the_same_hash() {
    let base = seed("applied_logged_and_replayed", 0x10C5);
    for s in base..base + N_STREAMS / 4 {
        let stream = random_stream(s, N_COMMANDS);
        let header = LogHeader {
            format: LOG_FORMAT.into(),
            version: LOG_VERSION,
            config_sha256: "x".into(),
            genesis: GENESIS,
        };
        let (mut encoder, header_line) = LogEncoder::start(&header);
        let mut text = header_line + "\n";
        let mut live = engine();
        for command in &stream {
            let _ = live.apply(command);
            text += &encoder.entry(command);
            text.push('\n');
        }
        let decoded = decode_log(&text).unwrap_or_else(|e| panic!("seed {s}: {e}"));
        assert_eq!(decoded.head, encoder.head(), "seed {s}: chain head differs");
        let (decoded_header, commands) = (decoded.header, decoded.commands);
        assert_eq!(decoded_header, header);
        assert_eq!(
            commands, stream,
            "seed {s}: log did not round-trip the commands"
        );
        let mut replayed = Engine::new(example_config(), decoded_header.genesis);
        for command in &commands {
            let _ = replayed.apply(command);
        }
        assert_eq!(
            live.state_hash(),
            replayed.state_hash(),
            "seed {s}: replay diverged"
        );
    }
}

#[test]
fn every_token_is_conserved_and_health_levels_stay_ordered() {
    let base = seed("conservation", 0xC0_5E77);
    for s in base..base + N_STREAMS {
        let stream = random_stream(s, N_COMMANDS);
        let mut engine = engine();
        let mut surplus: Vec<i128> = vec![0; engine.assets().len()];
        for (i, command) in stream.iter().enumerate() {
            let _ = engine.apply(command);
            engine
                .check_invariants()
                .unwrap_or_else(|e| panic!("seed {s} command {i}: {e}"));
            for (a, previous) in surplus.iter_mut().enumerate() {
                let pool = engine.pool(a as u16);
                // What entered minus what left is what the pool holds, exactly.
                assert_eq!(
                    pool.vault.raw(),
                    pool.total_in.raw() - pool.total_out.raw(),
                    "seed {s} command {i}"
                );
                // The venue's rounding surplus only grows: every rounding went the venue's way.
                assert!(
                    pool.rounding_surplus >= *previous,
                    "seed {s} command {i}: surplus of asset {a} shrank"
                );
                *previous = pool.rounding_surplus;
            }
            for id in 0..engine.sub_accounts().len() as u32 {
                let h = engine.health(id).unwrap();
                assert!(
                    h.initial <= h.liquidation_end && h.liquidation_end <= h.maintenance,
                    "seed {s} command {i}: sub-account {id} levels out of order: {h:?}"
                );
            }
        }
        let applied = engine.applied();
        assert!(
            applied > N_COMMANDS as u64 / 3,
            "seed {s}: only {applied} commands applied; the stream is too hostile to test much"
        );
    }
}

#[test]
fn rejection_changes_nothing() {
    let base = seed("rejection_changes_nothing", 0x4E_1EC7);
    let mut n_rejected = 0;
    let mut codes = std::collections::BTreeSet::new();
    for s in base..base + N_STREAMS / 2 {
        let stream = random_stream(s, N_COMMANDS);
        let mut engine = engine();
        for (i, command) in stream.iter().enumerate() {
            let before = engine.state_hash();
            let snapshot = engine.clone();
            if let Err(rejection) = engine.apply(command) {
                n_rejected += 1;
                codes.insert(rejection.code);
                assert_eq!(
                    engine.state_hash(),
                    before,
                    "seed {s} command {i}: rejected ({rejection}) but the hash changed"
                );
                assert_eq!(engine.applied(), snapshot.applied());
                assert!(!rejection.message.is_empty());
            }
        }
    }
    // The streams must actually exercise rejections of many kinds, or this test proves nothing.
    assert!(n_rejected > 500, "only {n_rejected} rejections");
    for code in [
        "insufficient_health",
        "unknown_asset",
        "bad_amount",
        "time_goes_backwards",
        "old_price",
    ] {
        assert!(
            codes.contains(code),
            "no rejection with code {code} in the streams (saw {codes:?})"
        );
    }
}

#[test]
fn withdrawals_and_borrows_never_leave_initial_health_negative() {
    let base = seed("withdrawals_keep_initial_health", 0x1417);
    for s in base..base + N_STREAMS / 2 {
        let stream = random_stream(s, N_COMMANDS);
        let mut engine = engine();
        for (i, command) in stream.iter().enumerate() {
            let events = engine.apply(command);
            if let Ok(events) = events {
                for event in events {
                    if let ballast_engine::Event::Withdrawn {
                        health,
                        sub_account,
                        ..
                    } = event
                    {
                        assert!(!health.initial.is_negative(), "seed {s} command {i}: sub-account {sub_account} withdrew to {health:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn streams_exercise_the_interesting_paths() {
    let base = seed("streams_exercise", 0xE7E7);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut rejections = std::collections::BTreeMap::<&str, usize>::new();
    for s in base..base + 6 {
        let mut engine = engine();
        for command in random_stream(s, N_COMMANDS) {
            match engine.apply(&command) {
                Ok(events) => {
                    for e in events {
                        let v = serde_json::to_value(&e).unwrap();
                        let mut kind = v["type"].as_str().unwrap().to_string();
                        if kind == "withdrawn" && v["borrowed"] != "0" {
                            kind = "withdrawn_with_borrow".into();
                        }
                        if kind == "deposited" && v["repaid"] != "0" {
                            kind = "deposited_with_repay".into();
                        }
                        *counts.entry(kind).or_default() += 1;
                    }
                }
                Err(r) => *rejections.entry(r.code).or_default() += 1,
            }
        }
    }
    println!("events: {counts:?}\nrejections: {rejections:?}");
    // Perps are exercised by `perp_stream` (see the liquidation test, which requires dozens of liquidations).
    for kind in [
        "withdrawn_with_borrow",
        "deposited_with_repay",
        "margin_call",
        "margin_recovered",
        "interest_accrued",
        "transferred",
    ] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) >= 3,
            "kind {kind} too rare: {counts:?}"
        );
    }
}

#[test]
fn liquidations_improve_health_stop_at_liquidation_end_and_keep_the_liquidator_healthy() {
    let base = seed("liquidation_properties", 0x11C0);
    let (mut n_perp, mut n_spot, mut n_full, mut n_bankrupt, mut n_settled) = (0, 0, 0, 0, 0);
    let (mut n_perp_bankrupt, mut n_adl, mut n_cut, mut n_left) = (0, 0, 0, 0);
    let (mut n_pool_trades, mut n_pool_liquidations) = (0, 0);
    for s in base..base + N_STREAMS / 2 {
        // Perp-heavy streams, and the general streams (whose borrowers are liquidated by spot swaps).
        for (k, stream) in [perp_stream(s, 12, 40), random_stream(s, N_COMMANDS)]
            .into_iter()
            .enumerate()
        {
            let mut engine = engine();
            for (i, command) in stream.iter().enumerate() {
                let Ok(events) = engine.apply(command) else {
                    continue;
                };
                let mut margin_events = std::collections::BTreeSet::new();
                for event in &events {
                    if let ballast_engine::Event::MarginCall { sub_account, .. }
                    | ballast_engine::Event::MarginRecovered { sub_account, .. } = event
                    {
                        assert!(
                            margin_events.insert(*sub_account),
                            "seed {s} command {i}: two margin events for {sub_account}"
                        );
                    }
                }
                for event in events {
                    if matches!(
                        event,
                        ballast_engine::Event::PnlSettled { .. }
                            | ballast_engine::Event::VenueClaimsSettled { .. }
                    ) {
                        n_settled += 1;
                    }
                    if let ballast_engine::Event::BankruptcyResolved {
                        debt,
                        covered_by_insurance,
                        socialized,
                        ..
                    } = &event
                    {
                        n_bankrupt += 1;
                        // Every unit of the debt is either paid by the fund or written off: exactly.
                        assert!(
                            covered_by_insurance.raw() + socialized.raw() == debt.raw(),
                            "seed {s} command {i}: {event:?}"
                        );
                    }
                    if let ballast_engine::Event::PerpBankruptcyResolved {
                        deficit,
                        from_venue_claims,
                        covered_by_insurance,
                        socialized,
                        ..
                    } = &event
                    {
                        n_perp_bankrupt += 1;
                        // USDC has 6 decimals: the token amount is a whole number of micro-USD.
                        let scale = 10i128.pow(12);
                        assert_eq!(covered_by_insurance.raw() % scale, 0);
                        let insurance = covered_by_insurance.raw() / scale;
                        assert_eq!(
                            from_venue_claims.raw() + insurance + socialized.raw(),
                            deficit.raw(),
                            "seed {s} command {i}: {event:?}"
                        );
                    }
                    if let ballast_engine::Event::PoolTraded { .. } = &event {
                        n_pool_trades += 1;
                    }
                    if let ballast_engine::Event::Deleveraged { base, .. } = &event {
                        if base.raw() == 0 {
                            n_cut += 1;
                        } else {
                            n_adl += 1;
                        }
                    }
                    let (liquidator, before, after, full_close) = match event {
                        ballast_engine::Event::PerpLiquidated {
                            liquidator,
                            health_before,
                            health_after,
                            full_close,
                            ..
                        } => {
                            n_perp += 1;
                            // The stream's pool is the sub-account after its 12 traders.
                            n_pool_liquidations += (k == 0 && liquidator == 13) as usize;
                            (liquidator, health_before, health_after, full_close)
                        }
                        ballast_engine::Event::SpotLiquidated {
                            liquidator,
                            health_before,
                            health_after,
                            full_close,
                            ..
                        } => {
                            n_spot += 1;
                            (liquidator, health_before, health_after, full_close)
                        }
                        _ => continue,
                    };
                    n_full += full_close as usize;
                    assert!(
                        after.liquidation_end > before.liquidation_end,
                        "seed {s} command {i}: liquidation did not improve health: {before:?} -> {after:?}"
                    );
                    // Streams stay far below the per-step notional limit, so a partial step always reaches
                    // liquidation-end health (and the binary search makes it the least that does).
                    if !full_close {
                        assert!(
                            !after.liquidation_end.is_negative(),
                            "seed {s} command {i}: partial step short of liquidation-end"
                        );
                    }
                    let h = engine.health(liquidator).unwrap();
                    assert!(
                        !h.initial.is_negative(),
                        "seed {s} command {i}: liquidator left at {h:?}"
                    );
                }
            }
            // No sub-account is left insolvent without a way out. In the perp streams a keeper takes every
            // insolvent one through liquidation, settlement against everyone and the venue, and the waterfall; it
            // must end solvent or resolved (a profitable position left in it is an asset, which is solvency). In
            // the general streams (no registered keeper), every one with no collateral must resolve.
            let t = engine.now_s();
            let n_subs = engine.sub_accounts().len() as u32;
            for id in 0..n_subs {
                let sub = &engine.sub_accounts()[id as usize];
                if sub.balances.is_empty() && sub.perps.is_empty() {
                    continue;
                }
                if k == 0 && engine.equity(id).unwrap().is_negative() {
                    keeper_way_out(&mut engine, t, id, n_subs);
                    n_left += 1;
                    let sub = &engine.sub_accounts()[id as usize];
                    assert!(
                        (sub.balances.is_empty() && sub.perps.is_empty())
                            || !engine.equity(id).unwrap().is_negative(),
                        "seed {s}: sub-account {id} is stuck insolvent: {:?} {:?} equity {}",
                        sub.balances,
                        sub.perps,
                        engine.equity(id).unwrap()
                    );
                    continue;
                }
                if sub.balances.iter().any(|b| b.scaled > 0) {
                    continue;
                }
                let command = ballast_engine::Command {
                    timestamp: t,
                    kind: ballast_engine::CommandKind::ResolveBankruptcy { target: id },
                };
                match engine.apply(&command) {
                    Ok(_) => {
                        n_left += 1;
                        let sub = &engine.sub_accounts()[id as usize];
                        assert!(sub.balances.is_empty() && sub.perps.is_empty());
                    }
                    Err(r) => assert!(
                        r.message.contains("is worth") || r.message.contains("owes nothing"),
                        "seed {s}: sub-account {id} cannot be resolved: {r}"
                    ),
                }
            }
            engine.check_invariants().unwrap();
        }
    }
    println!("{n_perp} perp and {n_spot} spot liquidations ({n_full} full closes), {n_bankrupt} lending and {n_perp_bankrupt} perp bankruptcies ({n_adl} ADL closes, {n_cut} profit cuts), {n_settled} settlements, {n_left} resolved at the end");
    println!("{n_pool_trades} pool trades, {n_pool_liquidations} liquidations by the pool");
    assert!(n_pool_trades >= 30 && n_pool_liquidations >= 3);
    assert!(
        n_perp_bankrupt >= 3 && n_adl >= 3 && n_cut >= 3,
        "only {n_perp_bankrupt} perp bankruptcies, {n_adl} ADL closes and {n_cut} profit cuts"
    );
    assert!(
        n_perp >= 30,
        "only {n_perp} perp liquidations: the streams do not exercise liquidation"
    );
    assert!(
        n_spot >= 3,
        "only {n_spot} spot liquidations: the streams do not exercise spot liquidation"
    );
    assert!(n_full >= 3, "only {n_full} full closes");
    assert!(
        n_bankrupt >= 3,
        "only {n_bankrupt} bankruptcies: the streams do not exercise the waterfall"
    );
}

/// What a keeper does with an insolvent sub-account: liquidate it (sub-account 0 is the perp streams' liquidator),
/// settle its losses against every other sub-account and the venue in both markets, liquidate what that borrowed,
/// and resolve what is left. Refusals are part of the way (most settlements find no winner).
fn keeper_way_out(engine: &mut Engine, t: u64, id: u32, n_subs: u32) {
    use ballast_engine::CommandKind as K;
    let mut attempt = |kind: K| {
        let _ = engine.apply(&Command { timestamp: t, kind });
    };
    for _ in 0..3 {
        attempt(K::Liquidate {
            liquidator: 0,
            target: id,
        });
    }
    for market in ["BTC-PERP", "ETH-PERP"] {
        for winner in (0..n_subs).filter(|w| *w != id) {
            attempt(K::SettlePnl {
                market: market.into(),
                winner,
                loser: id,
            });
        }
        attempt(K::SettleVenueClaims {
            market: market.into(),
            loser: id,
        });
    }
    for _ in 0..3 {
        attempt(K::Liquidate {
            liquidator: 0,
            target: id,
        });
    }
    attempt(K::ResolveBankruptcy { target: id });
}
