//! Issue 5: snapshot and restore of an engine with 100,000 sub-accounts.
//!
//! The state: 100,000 cross sub-accounts in pairs of different owners, each with two balances (USDC and BTC
//! deposits) and two perp positions (BTC-PERP and ETH-PERP, the two sides of a pair opposite), plus one sub-account
//! that deposits ETH and borrows USDC and BTC, so that interest runs and no index is exactly one. An hour of interest
//! and funding has run. Everything is built through `Engine::apply` (setup, not measured).
//!
//! Measured, per iteration:
//! 1. `snapshot`: [`Engine::snapshot`], the canonical encoding (the bytes the state hash hashes);
//! 2. `state_hash`: [`Engine::state_hash`], the same walk into SHA-256, for comparison;
//! 3. `restore`: [`Engine::from_snapshot`] of those bytes: decoding, validation, rebuilding every index through the
//!    command paths, `check_invariants` (which values every sub-account's health) and the re-encoding check;
//! 4. `check_invariants`: [`Engine::check_invariants`] alone, the part of `restore` that is not decoding.
//!
//! The snapshot's size is printed once. Setup checks that the restored engine has the original's state hash.
//!
//! Run: `cargo bench -p ballast-engine --bench snapshot`.

use ballast_engine::command::Side;
use ballast_engine::config::ProtocolFile;
use ballast_engine::{Command, CommandKind, Engine, Event, MarginSpec, ProtocolConfig};
use ballast_num::{Price, Quote, TokenQuantity};
use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode};
use std::time::Instant;

const GENESIS: u64 = 1_700_000_000;
const N_SUB_ACCOUNTS: u32 = 100_000;
const PRICES: [(&str, &str); 4] = [
    ("USDC", "1"),
    ("BTC", "60000"),
    ("ETH", "3000"),
    ("SOL", "150"),
];

/// `units * 10^-exp` whole tokens.
fn qty(units: u32, exp: u32) -> TokenQuantity {
    TokenQuantity::from_raw(units as i128 * 10i128.pow(18 - exp))
}

fn price(s: &str) -> Price {
    s.parse().unwrap()
}

/// The example protocol with every open-interest cap raised to 10^12 (lower) and 2 * 10^12 USD (upper), so that the
/// pairs' open interest never moves the initial margin ratio.
fn config() -> ProtocolConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/protocol.toml");
    let text = std::fs::read_to_string(path).expect("examples/protocol.toml");
    let mut file: ProtocolFile = toml::from_str(&text).expect("example protocol parses");
    for tier in &mut file.perp_tier {
        tier.open_interest_lower_cap = Quote::from_int(1_000_000_000_000).unwrap();
        tier.open_interest_upper_cap = Quote::from_int(2_000_000_000_000).unwrap();
    }
    ProtocolConfig::from_file(file).expect("changed example protocol is valid")
}

fn apply(engine: &mut Engine, timestamp: u64, kind: CommandKind) -> Vec<Event> {
    let command = Command { timestamp, kind };
    engine
        .apply(&command)
        .unwrap_or_else(|e| panic!("setup command {command:?} rejected: {e}"))
}

fn oracle(asset: &str, p: &str, publish_time: u64) -> CommandKind {
    CommandKind::OraclePrice {
        asset: asset.to_string(),
        price: price(p),
        confidence: Price::ZERO,
        publish_time,
    }
}

fn deposit(engine: &mut Engine, id: u32, asset: &str, amount: TokenQuantity) {
    apply(
        engine,
        GENESIS,
        CommandKind::Deposit {
            sub_account: id,
            asset: asset.to_string(),
            amount,
        },
    );
}

fn build(n: u32) -> Engine {
    let mut engine = Engine::new(config(), GENESIS);
    for (asset, p) in PRICES {
        apply(&mut engine, GENESIS, oracle(asset, p, GENESIS));
    }
    for pair in 0..n / 2 {
        let s = 1 + pair % 4;
        for id in [2 * pair, 2 * pair + 1] {
            let owner = id as u64;
            apply(&mut engine, GENESIS, CommandKind::CreateAccount { owner });
            apply(
                &mut engine,
                GENESIS,
                CommandKind::OpenSubAccount {
                    owner,
                    margin: MarginSpec::Cross,
                },
            );
            deposit(&mut engine, id, "USDC", qty(1_000 * s, 0));
            deposit(&mut engine, id, "BTC", qty(100 * s, 4));
        }
        for (market, side, size, p) in [
            ("BTC-PERP", Side::Buy, qty(100 * s, 4), "60000"),
            ("ETH-PERP", Side::Sell, qty(s, 0), "3000"),
        ] {
            apply(
                &mut engine,
                GENESIS,
                CommandKind::PerpFill {
                    market: market.to_string(),
                    taker: 2 * pair,
                    maker: 2 * pair + 1,
                    side,
                    size,
                    price: price(p),
                },
            );
        }
    }
    let owner = n as u64;
    apply(&mut engine, GENESIS, CommandKind::CreateAccount { owner });
    apply(
        &mut engine,
        GENESIS,
        CommandKind::OpenSubAccount {
            owner,
            margin: MarginSpec::Cross,
        },
    );
    deposit(&mut engine, n, "ETH", qty(n, 0));
    for (asset, amount) in [("USDC", qty(n * 100, 0)), ("BTC", qty(n, 2))] {
        apply(
            &mut engine,
            GENESIS,
            CommandKind::Withdraw {
                sub_account: n,
                asset: asset.to_string(),
                amount,
                reduce_only: false,
            },
        );
    }
    for (market, mark) in [("BTC-PERP", "60006"), ("ETH-PERP", "3000.3")] {
        apply(
            &mut engine,
            GENESIS,
            CommandKind::UpdateFunding {
                market: market.to_string(),
                mark_price: price(mark),
            },
        );
    }
    let now = GENESIS + 3_600;
    for (asset, p) in PRICES {
        apply(&mut engine, now, oracle(asset, p, now));
    }
    apply(
        &mut engine,
        now,
        CommandKind::AccrueInterest { asset: None },
    );
    engine
}

fn bench(c: &mut Criterion) {
    let started = Instant::now();
    let engine = build(N_SUB_ACCOUNTS);
    println!(
        "setup: {} sub-accounts built in {:.1} s",
        engine.sub_accounts().len(),
        started.elapsed().as_secs_f64()
    );
    let bytes = engine.snapshot();
    let restored = Engine::from_snapshot(&bytes).expect("the snapshot restores");
    assert_eq!(restored.state_hash(), engine.state_hash());
    drop(restored);
    println!(
        "snapshot size: {} bytes ({:.1} MiB, {:.0} bytes per sub-account)",
        bytes.len(),
        bytes.len() as f64 / (1024.0 * 1024.0),
        bytes.len() as f64 / engine.sub_accounts().len() as f64
    );
    let mut group = c.benchmark_group("snapshot_100k");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("snapshot", |b| b.iter(|| black_box(engine.snapshot())));
    group.bench_function("state_hash", |b| b.iter(|| black_box(engine.state_hash())));
    group.bench_function("check_invariants", |b| {
        b.iter(|| black_box(engine.check_invariants()).unwrap())
    });
    group.bench_function("restore", |b| {
        b.iter(|| black_box(Engine::from_snapshot(black_box(&bytes)).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
