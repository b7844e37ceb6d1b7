//! Issue 2: one oracle update on an asset that every sub-account holds, with one million cross sub-accounts.
//!
//! Measured, per iteration: one [`Engine::apply`] of an `oracle_price` command on BTC (re-evaluates maintenance
//! health of every BTC holder through the holder index and emits a margin call or recovery for each one that crossed
//! zero), then [`Engine::below_maintenance_holding`] for BTC. The price alternates between a 30 % drop, which puts a
//! known set of sub-accounts under maintenance, and the original price, which recovers them, with publish time and
//! timestamp going up by one second each time: every iteration re-evaluates every holder and flips the same number
//! of margin flags.
//!
//! The state is built through `Engine::apply` only (create_account, open_sub_account, oracle_price, deposit,
//! withdraw, accrue_interest): that is setup, not measured. Setup also checks, outside the timings, that exactly the
//! expected sub-accounts are under maintenance after the drop and none after the recovery.
//!
//! Run: `cargo bench -p ballast-engine --bench oracle_update`.

use ballast_engine::config::ProtocolFile;
use ballast_engine::{Command, CommandKind, Engine, Event, MarginSpec, ProtocolConfig};
use ballast_num::{Price, Ratio, TokenQuantity};
use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode};
use std::time::{Duration, Instant};

const GENESIS: u64 = 1_700_000_000;
/// Interest accrues for this long after the state is built, so that no supply or borrow index is exactly one.
const ACCRUAL_S: u64 = 3_600;
/// Sub-accounts per owner.
const SUBS_PER_OWNER: u32 = 2;
/// Every `BORROWER_EVERY`-th sub-account borrows USDC instead of depositing it.
const BORROWER_EVERY: u32 = 20;

const BTC_PRICE: &str = "60000";
/// BTC after a 30 % drop.
const BTC_DROPPED: &str = "42000";

fn qty(s: &str) -> TokenQuantity {
    s.parse().unwrap()
}

fn price(s: &str) -> Price {
    s.parse().unwrap()
}

/// `units / 100` whole tokens.
fn hundredths(units: u32) -> TokenQuantity {
    TokenQuantity::from_raw(units as i128 * 10i128.pow(16))
}

/// The example protocol, with every deposit cap, borrow cap and concentration threshold multiplied by 1000.
///
/// The example file is sized for a small venue: one million sub-accounts deposit about 100,000 BTC and 10 million
/// SOL, over the example caps (50,000 BTC, 5 million SOL), and the concentration thresholds would cut the initial
/// weight of BTC for the later borrowers so that their borrows are refused. Scaling every size limit by the same
/// factor keeps the venue's shape; none of these values enters maintenance health, which is what is measured.
fn config() -> ProtocolConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/protocol.toml");
    let text = std::fs::read_to_string(path).expect("examples/protocol.toml");
    let mut file: ProtocolFile = toml::from_str(&text).expect("example protocol parses");
    let scale = |q: TokenQuantity| TokenQuantity::from_raw(q.raw() * 1000);
    for asset in &mut file.asset {
        asset.deposit_cap = scale(asset.deposit_cap);
        asset.borrow_cap = scale(asset.borrow_cap);
        asset.concentration_threshold = scale(asset.concentration_threshold);
    }
    ProtocolConfig::from_file(file).expect("scaled example protocol is valid")
}

fn apply(engine: &mut Engine, timestamp: u64, kind: CommandKind) -> Vec<Event> {
    let command = Command { timestamp, kind };
    engine
        .apply(&command)
        .unwrap_or_else(|e| panic!("setup command {command:?} rejected: {e}"))
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

fn oracle(asset: &str, p: &str, publish_time: u64) -> CommandKind {
    CommandKind::OraclePrice {
        asset: asset.to_string(),
        price: price(p),
        confidence: Price::ZERO,
        publish_time,
    }
}

/// Is sub-account `id` a USDC borrower, and does the BTC drop put it under maintenance?
fn role(id: u32) -> (bool, bool) {
    let borrower = id % BORROWER_EVERY == BORROWER_EVERY - 1;
    let k = id / BORROWER_EVERY;
    (borrower, borrower && k % 10 >= 5)
}

/// USDC debt of the `k`-th borrower: 5050 to 6400 in steps of 150.
///
/// A borrower holds 0.1 BTC, 0.5 ETH and 5 SOL. At BTC 60,000 (ETH 3,000, SOL 150) that counts about 7,350 USD in
/// maintenance health (weights 0.9, 0.9, 0.8 over the size premia) and about 6,524 in initial health, so every debt
/// here may be borrowed and none is under maintenance. At BTC 42,000 it counts about 5,729: the debts 5,800 and above
/// (k % 10 >= 5, half of the borrowers) are under maintenance, the ones up to 5,650 are not; an hour of USDC
/// interest moves a debt by cents, far from either margin.
fn debt(k: u32) -> TokenQuantity {
    TokenQuantity::from_int((5050 + 150 * (k % 10)) as i128).unwrap()
}

/// One engine with `n` cross sub-accounts, each with four balances: USDC, BTC, ETH and SOL deposits, except that every
/// 20th sub-account borrows USDC instead of depositing it; plus one market-making sub-account (below). Returns the
/// engine and the time of its last command.
fn build(n: u32) -> (Engine, u64) {
    let mut engine = Engine::new(config(), GENESIS);
    for (asset, p) in [
        ("USDC", "1"),
        ("BTC", BTC_PRICE),
        ("ETH", "3000"),
        ("SOL", "150"),
        ("MNGO", "0.03"),
    ] {
        apply(&mut engine, GENESIS, oracle(asset, p, GENESIS));
    }
    for id in 0..n {
        let owner = (id / SUBS_PER_OWNER) as u64;
        if id % SUBS_PER_OWNER == 0 {
            apply(&mut engine, GENESIS, CommandKind::CreateAccount { owner });
        }
        let events = apply(
            &mut engine,
            GENESIS,
            CommandKind::OpenSubAccount {
                owner,
                margin: MarginSpec::Cross,
            },
        );
        assert!(
            matches!(events[0], Event::SubAccountOpened { sub_account, .. } if sub_account == id),
            "sub-accounts are numbered in opening order"
        );
        let (borrower, _) = role(id);
        if borrower {
            deposit(&mut engine, id, "BTC", qty("0.1"));
            deposit(&mut engine, id, "ETH", qty("0.5"));
            deposit(&mut engine, id, "SOL", qty("5"));
            // No USDC deposit: the withdrawal is all borrowed. Earlier depositors provide the liquidity.
            apply(
                &mut engine,
                GENESIS,
                CommandKind::Withdraw {
                    sub_account: id,
                    asset: "USDC".to_string(),
                    amount: debt(id / BORROWER_EVERY),
                    reduce_only: false,
                },
            );
        } else {
            // Varied sizes, all safely collateralised (no debt).
            deposit(
                &mut engine,
                id,
                "USDC",
                hundredths(50_000 + (id % 7) * 10_000),
            );
            deposit(&mut engine, id, "BTC", hundredths(5 + id % 11));
            deposit(&mut engine, id, "ETH", hundredths(20 + (id % 13) * 10));
            deposit(&mut engine, id, "SOL", hundredths(200 + (id % 17) * 100));
        }
        debug_assert_eq!(engine.sub_accounts()[id as usize].balances.len(), 4);
    }
    // One more sub-account (id n), a market maker: it deposits USDC and borrows about 10 % of the BTC, ETH and SOL
    // deposits, so that every pool has borrows and, after the hour of interest below, every supply and borrow index
    // differs from one, as in a live venue (an index of exactly one would make valuing a balance cheaper). It holds
    // BTC (a debt), so it is re-evaluated too; it is far from maintenance.
    let owner = n.div_ceil(SUBS_PER_OWNER) as u64;
    apply(&mut engine, GENESIS, CommandKind::CreateAccount { owner });
    apply(
        &mut engine,
        GENESIS,
        CommandKind::OpenSubAccount {
            owner,
            margin: MarginSpec::Cross,
        },
    );
    let tokens = |whole: u32| TokenQuantity::from_int(whole as i128).unwrap();
    deposit(&mut engine, n, "USDC", tokens(2000 * n));
    for (asset, amount) in [("BTC", n / 100), ("ETH", n / 12), ("SOL", n)] {
        apply(
            &mut engine,
            GENESIS,
            CommandKind::Withdraw {
                sub_account: n,
                asset: asset.to_string(),
                amount: tokens(amount),
                reduce_only: false,
            },
        );
    }
    // An hour of interest on every pool.
    let now = GENESIS + ACCRUAL_S;
    apply(
        &mut engine,
        now,
        CommandKind::AccrueInterest { asset: None },
    );
    for asset in 0..4 {
        let pool = engine.pool(asset);
        assert!(
            pool.supply_index != Ratio::ONE && pool.borrow_index != Ratio::ONE,
            "every index has moved"
        );
    }
    (engine, now)
}

/// Resident set size of this process, from /proc/self/status (Linux), in MiB.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The state under test and the alternation of BTC prices.
struct Workload {
    engine: Engine,
    btc: u16,
    now: u64,
    /// Sub-accounts the drop puts under maintenance, in id order.
    expected_below: Vec<u32>,
    /// The next update is the drop (else the recovery).
    next_is_drop: bool,
}

impl Workload {
    fn new(n: u32) -> Workload {
        let before = rss_mib();
        let started = Instant::now();
        let (engine, now) = build(n);
        let built_in = started.elapsed();
        let after = rss_mib();
        let btc = engine.asset_index("BTC").unwrap();
        let expected_below: Vec<u32> = (0..n).filter(|&id| role(id).1).collect();
        eprintln!(
            "oracle_update: built {n} + 1 sub-accounts ({} owners, {} borrowers, {} to go under) in {:.1} s; \
             VmRSS {:.0} MiB -> {:.0} MiB",
            n.div_ceil(SUBS_PER_OWNER) + 1,
            (0..n).filter(|&id| role(id).0).count(),
            expected_below.len(),
            built_in.as_secs_f64(),
            before.unwrap_or(f64::NAN),
            after.unwrap_or(f64::NAN),
        );
        // The memory floor: one pass over the same data an update reads (every sub-account and its balances, in id
        // order), summing the scaled balances and reading the margin flags, with no health arithmetic. Best of five.
        let walk = (0..5)
            .map(|_| {
                let start = Instant::now();
                let mut sum = 0i128;
                let mut below = 0usize;
                for sub in black_box(engine.sub_accounts()) {
                    for b in &sub.balances {
                        sum = sum.wrapping_add(b.scaled);
                    }
                    below += sub.below_maintenance as usize;
                }
                black_box((sum, below));
                start.elapsed()
            })
            .min()
            .unwrap();
        eprintln!(
            "oracle_update: memory walk over the {n} + 1 sub-accounts and their balances: {:.2} ms ({:.1} ns each)",
            walk.as_secs_f64() * 1e3,
            walk.as_secs_f64() * 1e9 / (n + 1) as f64
        );
        let mut w = Workload {
            engine,
            btc,
            now,
            expected_below,
            next_is_drop: true,
        };
        // Sanity check (not timed): nobody is under maintenance at the start, exactly the expected sub-accounts are
        // after the drop (each with one margin call), and all of them recover.
        assert!(w.engine.below_maintenance().is_empty());
        let events = w.update();
        let calls: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                Event::MarginCall { sub_account, .. } => Some(*sub_account),
                _ => None,
            })
            .collect();
        assert_eq!(calls, w.expected_below, "margin calls after the drop");
        assert_eq!(w.engine.below_maintenance_holding(btc), w.expected_below);
        assert_eq!(w.engine.below_maintenance(), w.expected_below);
        let events = w.update();
        let recovered = events
            .iter()
            .filter(|e| matches!(e, Event::MarginRecovered { .. }))
            .count();
        assert_eq!(recovered, w.expected_below.len(), "recoveries");
        assert!(w.engine.below_maintenance_holding(btc).is_empty());
        w
    }

    /// The next oracle command: one second later than the last, alternating drop and recovery.
    fn next_command(&mut self) -> Command {
        self.now += 1;
        let p = if self.next_is_drop {
            BTC_DROPPED
        } else {
            BTC_PRICE
        };
        self.next_is_drop = !self.next_is_drop;
        Command {
            timestamp: self.now,
            kind: oracle("BTC", p, self.now),
        }
    }

    fn update(&mut self) -> Vec<Event> {
        let command = self.next_command();
        self.engine.apply(&command).expect("oracle update applies")
    }

    /// `iters` measured updates; returns the time spent in `apply` + `below_maintenance_holding` only.
    fn run(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let dropped = self.next_is_drop;
            let command = self.next_command();
            let start = Instant::now();
            let events = self.engine.apply(black_box(&command));
            let below = self.engine.below_maintenance_holding(black_box(self.btc));
            drop(black_box(events));
            total += start.elapsed();
            // Every iteration did real work: the flags flipped as expected (checked outside the timing).
            if dropped {
                assert_eq!(below.len(), self.expected_below.len());
            } else {
                assert!(below.is_empty());
            }
        }
        total
    }
}

fn oracle_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("oracle_update");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    for n in [100_000u32, 1_000_000] {
        // Built on first use, so that a filtered run (`-- 1000000`) builds only the state it measures.
        let mut workload: Option<Workload> = None;
        group.bench_function(format!("btc_move/{n}_sub_accounts"), |b| {
            let w = workload.get_or_insert_with(|| Workload::new(n));
            b.iter_custom(|iters| w.run(iters))
        });
        drop(workload);
    }
    group.finish();
}

criterion_group!(benches, oracle_update);
criterion_main!(benches);
