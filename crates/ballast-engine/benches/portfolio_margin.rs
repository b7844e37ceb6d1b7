//! Issue 4: portfolio margin at scale. N portfolio-margined sub-accounts (100,000 by default), each holding 20
//! positions: 18 BTC option series (strikes 40,000 to 80,000 in steps of 5,000, calls and puts, 30 days to expiry)
//! and the BTC and ETH perps, plus a USDC and a BTC deposit. One oracle update on BTC re-evaluates every one of them
//! over the full default grid of the example protocol (9 price moves x 3 volatility states + 4 tail moves = 31
//! scenarios): 18 full revaluations of each option series per update (memoized across sub-accounts), then, per
//! sub-account, 20 positions x 31 scenarios.
//!
//! Measured, per iteration: one [`Engine::apply`] of an `oracle_price` command on BTC, alternating between 57,000
//! and 60,000 (publish time one second later each time), so every iteration revalues every sub-account and the
//! series' marks and scenario changes are recomputed. Setup (not measured) builds the state through
//! `Engine::apply` only and checks, outside the timings, that the update reaches every sub-account.
//!
//! Run: `cargo bench -p ballast-engine --bench portfolio_margin` (add `-- 10000` for a smaller case).

use ballast_engine::command::Side;
use ballast_engine::config::ProtocolFile;
use ballast_engine::perp::OptionKind;
use ballast_engine::{Command, CommandKind, Engine, Event, MarginSpec, ProtocolConfig};
use ballast_num::{Price, Quote, TokenQuantity};
use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode};
use std::time::{Duration, Instant};

const GENESIS: u64 = 1_700_000_000;
const EXPIRY: u64 = GENESIS + 30 * 86_400;
const STRIKES: [i128; 9] = [
    40_000, 45_000, 50_000, 55_000, 60_000, 65_000, 70_000, 75_000, 80_000,
];

/// `units * 10^-exp` whole tokens.
fn qty(units: u32, exp: u32) -> TokenQuantity {
    TokenQuantity::from_raw(units as i128 * 10i128.pow(18 - exp))
}

fn price(s: &str) -> Price {
    s.parse().unwrap()
}

fn series_symbol(strike: i128, kind: OptionKind) -> String {
    let k = match kind {
        OptionKind::Call => "C",
        OptionKind::Put => "P",
    };
    format!("BTC-{}K-{k}", strike / 1000)
}

/// The example protocol with 18 BTC option series (the example's two replaced), caps and thresholds x1000 and the
/// perp tiers' open-interest caps raised so that N sub-accounts fit; none of that enters maintenance health.
fn config() -> ProtocolConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/protocol.toml");
    let text = std::fs::read_to_string(path).expect("examples/protocol.toml");
    let mut file: ProtocolFile = toml::from_str(&text).expect("example protocol parses");
    let template = file
        .market
        .iter()
        .find(|m| m.option.is_some())
        .expect("the example lists an option series")
        .clone();
    file.market.retain(|m| m.option.is_none());
    for strike in STRIKES {
        for kind in [OptionKind::Call, OptionKind::Put] {
            let mut series = template.clone();
            series.symbol = series_symbol(strike, kind);
            let option = series.option.as_mut().unwrap();
            option.kind = kind;
            option.strike = Price::from_raw(strike * Price::SCALE);
            option.expiry_s = EXPIRY;
            file.market.push(series);
        }
    }
    let scale = |q: TokenQuantity| TokenQuantity::from_raw(q.raw() * 1000);
    for asset in &mut file.asset {
        asset.deposit_cap = scale(asset.deposit_cap);
        asset.borrow_cap = scale(asset.borrow_cap);
        asset.concentration_threshold = scale(asset.concentration_threshold);
    }
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

fn oracle(engine: &mut Engine, t: u64, asset: &str, p: &str) -> Vec<Event> {
    let p = price(p);
    apply(
        engine,
        t,
        CommandKind::OraclePrice {
            asset: asset.to_string(),
            price: p,
            confidence: Price::from_raw(p.raw() / 10_000),
            publish_time: t,
        },
    )
}

/// N portfolio-margined sub-accounts with 20 positions each, against one cross maker.
fn build(n: u32) -> Engine {
    let started = Instant::now();
    let mut engine = Engine::new(config(), GENESIS);
    for (asset, p) in [
        ("USDC", "1"),
        ("BTC", "60000"),
        ("ETH", "3000"),
        ("SOL", "150"),
    ] {
        oracle(&mut engine, GENESIS, asset, p);
    }
    let markets: Vec<String> = STRIKES
        .iter()
        .flat_map(|&k| [OptionKind::Call, OptionKind::Put].map(|kind| series_symbol(k, kind)))
        .chain(["BTC-PERP".to_string(), "ETH-PERP".to_string()])
        .collect();
    assert_eq!(markets.len(), 20);
    apply(
        &mut engine,
        GENESIS,
        CommandKind::CreateAccount { owner: 0 },
    );
    apply(
        &mut engine,
        GENESIS,
        CommandKind::OpenSubAccount {
            owner: 0,
            margin: MarginSpec::Cross,
        },
    );
    let maker = 0;
    apply(
        &mut engine,
        GENESIS,
        CommandKind::Deposit {
            sub_account: maker,
            asset: "USDC".into(),
            amount: TokenQuantity::from_int(100_000_000_000).unwrap(),
        },
    );
    for i in 0..n {
        let owner = 1 + (i / 16) as u64;
        if i % 16 == 0 {
            apply(&mut engine, GENESIS, CommandKind::CreateAccount { owner });
        }
        let id = match apply(
            &mut engine,
            GENESIS,
            CommandKind::OpenSubAccount {
                owner,
                margin: MarginSpec::Portfolio,
            },
        )
        .as_slice()
        {
            [Event::SubAccountOpened { sub_account, .. }] => *sub_account,
            other => panic!("{other:?}"),
        };
        for (asset, amount) in [("USDC", qty(20_000, 0)), ("BTC", qty(1, 1))] {
            apply(
                &mut engine,
                GENESIS,
                CommandKind::Deposit {
                    sub_account: id,
                    asset: asset.into(),
                    amount,
                },
            );
        }
        for (k, market) in markets.iter().enumerate() {
            let buy = (i as usize + k).is_multiple_of(2);
            let (size, fill_price) = match market.as_str() {
                "BTC-PERP" => (qty(1, 2), price("60000")),
                "ETH-PERP" => (qty(1, 1), price("3000")),
                _ => (qty(1, 1), price("2000")),
            };
            apply(
                &mut engine,
                GENESIS,
                CommandKind::PerpFill {
                    market: market.clone(),
                    taker: id,
                    maker,
                    side: if buy { Side::Buy } else { Side::Sell },
                    size,
                    price: fill_price,
                },
            );
        }
    }
    eprintln!(
        "portfolio_margin: built {n} portfolio sub-accounts x 20 positions in {:.1?}",
        started.elapsed()
    );
    engine
}

fn bench(c: &mut Criterion) {
    let sizes: Vec<u32> = match std::env::args().skip(1).find_map(|a| a.parse().ok()) {
        Some(n) => vec![n],
        None => vec![100_000],
    };
    let mut group = c.benchmark_group("portfolio_margin_oracle_update");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for n in sizes {
        let mut engine = build(n);
        let mut t = GENESIS + 1;
        // Outside the timings: the update reaches every sub-account (a drop to 40,000 calls some of them).
        let events = oracle(&mut engine, t, "BTC", "40000");
        let calls = events
            .iter()
            .filter(|e| matches!(e, Event::MarginCall { .. }))
            .count();
        eprintln!("portfolio_margin: a drop to 40,000 calls {calls} of {n}");
        t += 1;
        oracle(&mut engine, t, "BTC", "60000");
        group.bench_function(format!("{n}_subaccounts_20_positions"), |b| {
            b.iter(|| {
                t += 1;
                let p = if t.is_multiple_of(2) {
                    "57000"
                } else {
                    "60000"
                };
                black_box(oracle(&mut engine, t, "BTC", p));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
