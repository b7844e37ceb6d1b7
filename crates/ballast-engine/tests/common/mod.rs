//! Shared test support: the example protocol, a seeded random command stream, and helpers.
#![allow(dead_code)]

use ballast_engine::{Command, CommandKind, Engine, MarginSpec, ProtocolConfig};
use ballast_num::{Price, TokenQuantity};

pub const GENESIS: u64 = 1_700_000_000;

/// The shipped example protocol file.
pub fn example_config() -> ProtocolConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/protocol.toml");
    let text = std::fs::read_to_string(path).expect("examples/protocol.toml");
    ProtocolConfig::from_toml("examples/protocol.toml", &text).expect("example config is valid")
}

pub fn engine() -> Engine {
    Engine::new(example_config(), GENESIS)
}

pub fn cmd(timestamp: u64, kind: CommandKind) -> Command {
    Command { timestamp, kind }
}

pub fn qty(s: &str) -> TokenQuantity {
    s.parse().unwrap()
}

pub fn price(s: &str) -> Price {
    s.parse().unwrap()
}

/// The seed for a random test: `BALLAST_SEED` if set (to reproduce a failure), else `default`. Printed always.
pub fn seed(test: &str, default: u64) -> u64 {
    let seed = std::env::var("BALLAST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    println!("{test}: seed {seed} (reproduce with BALLAST_SEED={seed})");
    seed
}

/// SplitMix64: a tiny, fully specified generator, so a seed reproduces the same stream on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub const ASSETS: [(&str, u8, i128); 5] =
    // symbol, decimals, starting price in micro-USD
    [
        ("USDC", 6, 1_000_000),
        ("BTC", 8, 60_000_000_000),
        ("ETH", 18, 3_000_000_000),
        ("SOL", 9, 150_000_000),
        ("MNGO", 6, 30_000),
    ];

/// A random but plausible command stream: owners, cross and isolated sub-accounts, prices that random-walk with
/// occasional shocks, deposits, withdrawals (many of them borrowing), transfers, accruals, and a share of commands
/// that must be rejected (bad amounts, unknown ids, over-borrowing, stale prices, time going backwards).
pub fn random_stream(seed: u64, n_commands: usize) -> Vec<Command> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n_commands + 16);
    let mut t = GENESIS;
    let mut prices: Vec<i128> = ASSETS.iter().map(|a| a.2).collect();
    let n_owners = 3 + rng.below(4);
    for owner in 0..n_owners {
        out.push(cmd(t, CommandKind::CreateAccount { owner }));
    }
    let mut n_subs = 0u32;
    let mut sub_owner = Vec::new();
    for owner in 0..n_owners {
        for _ in 0..1 + rng.below(3) {
            // Sub-account 0 is the stream's liquidator: cross, and funded below.
            let margin = if n_subs > 0 && rng.chance(20) {
                MarginSpec::Isolated("MNGO".into())
            } else {
                MarginSpec::Cross
            };
            out.push(cmd(t, CommandKind::OpenSubAccount { owner, margin }));
            sub_owner.push(owner);
            n_subs += 1;
        }
    }
    let push_prices = |out: &mut Vec<Command>, t: u64, prices: &[i128]| {
        for (i, (symbol, _, _)) in ASSETS.iter().enumerate() {
            out.push(cmd(
                t,
                CommandKind::OraclePrice {
                    asset: symbol.to_string(),
                    price: Price::from_raw(prices[i] * 1_000_000),
                    confidence: Price::from_raw(prices[i] * 1_000),
                    publish_time: t,
                },
            ));
        }
    };
    push_prices(&mut out, t, &prices);
    out.push(cmd(t, CommandKind::RegisterLiquidator { sub_account: 0 }));
    out.push(cmd(
        t,
        CommandKind::Deposit {
            sub_account: 0,
            asset: "USDC".into(),
            amount: TokenQuantity::from_int(5_000_000).unwrap(),
        },
    ));
    while out.len() < n_commands {
        let roll = rng.below(100);
        if roll < 8 {
            // Time passes; prices move (random walk, occasional shock) and are republished.
            t += 1 + rng.below(3_600);
            for p in prices.iter_mut().skip(1) {
                let shock = if rng.chance(12) { 30 } else { 3 };
                let pct = rng.below(2 * shock + 1) as i128 - shock as i128;
                *p = (*p * (100 + pct) / 100).max(1);
            }
            push_prices(&mut out, t, &prices);
            continue;
        }
        let sub = rng.below(n_subs as u64 + 1) as u32; // sometimes one past the last: unknown
        let (symbol, decimals, _) = *rng.pick(&ASSETS);
        let amount = random_amount(
            &mut rng,
            decimals,
            prices[ASSETS.iter().position(|a| a.0 == symbol).unwrap()],
        );
        if (46..=52).contains(&roll) {
            // Lever up: borrow in halving steps; the engine refuses the steps past the initial limit, so the
            // sub-account ends close to zero initial health, where price shocks cause margin calls.
            let (borrow_symbol, borrow_decimals, borrow_price) = *rng.pick(&[ASSETS[0], ASSETS[2]]);
            let mut usd = 400_000i128;
            while usd >= 50 {
                let native = usd * 1_000_000 * 10i128.pow(borrow_decimals as u32) / borrow_price;
                let amount = TokenQuantity::from_native(
                    ballast_num::TokenAmount::from_raw(native),
                    borrow_decimals,
                )
                .unwrap();
                out.push(cmd(
                    t,
                    CommandKind::Withdraw {
                        sub_account: sub,
                        asset: borrow_symbol.into(),
                        amount,
                        reduce_only: false,
                    },
                ));
                usd /= 2;
            }
            continue;
        }
        if (96..=98).contains(&roll) {
            // Perps: a fill between two sub-accounts near the oracle price, or a funding sample.
            let (market, i, step_decimals) = *rng.pick(&[
                ("BTC-PERP", 1usize, 4u32),
                ("ETH-PERP", 2, 3),
                ("SOL-PERP", 3, 2),
            ]);
            let oracle_micro = prices[i];
            if roll == 97 {
                out.push(cmd(
                    t,
                    CommandKind::Liquidate {
                        liquidator: 0,
                        target: rng.below(n_subs as u64) as u32,
                    },
                ));
                continue;
            }
            if roll == 98 {
                let mark = oracle_micro * (1000 + rng.below(21) as i128 - 10) / 1000;
                out.push(cmd(
                    t,
                    CommandKind::UpdateFunding {
                        market: market.into(),
                        mark_price: Price::from_raw(mark * 1_000_000),
                    },
                ));
                continue;
            }
            let fill_price = oracle_micro * (1000 + rng.below(11) as i128 - 5) / 1000;
            // A notional of about 100 to 300,000 USD, in whole steps.
            let usd = 100 * 10i128.pow(rng.below(4) as u32) * (1 + rng.below(3) as i128);
            let steps = (usd * 1_000_000 * 10i128.pow(step_decimals) / fill_price.max(1)).max(1);
            let size = TokenQuantity::from_raw(steps * 10i128.pow(18 - step_decimals));
            let side = if rng.chance(50) {
                ballast_engine::command::Side::Buy
            } else {
                ballast_engine::command::Side::Sell
            };
            out.push(cmd(
                t,
                CommandKind::PerpFill {
                    market: market.into(),
                    taker: sub,
                    maker: rng.below(n_subs as u64) as u32,
                    side,
                    size,
                    price: Price::from_raw(fill_price * 1_000_000),
                },
            ));
            continue;
        }
        let kind = match roll {
            8..=45 => CommandKind::Deposit {
                sub_account: sub,
                asset: symbol.into(),
                amount,
            },
            46..=75 => CommandKind::Withdraw {
                sub_account: sub,
                asset: symbol.into(),
                amount,
                reduce_only: rng.chance(20),
            },
            76..=85 => CommandKind::Transfer {
                from: sub,
                to: rng.below(n_subs as u64) as u32,
                asset: symbol.into(),
                amount,
            },
            86..=91 => CommandKind::AccrueInterest {
                asset: if rng.chance(50) {
                    None
                } else {
                    Some(symbol.into())
                },
            },
            92..=95 => {
                // An oracle update for one asset, sometimes too old or with a wide confidence.
                let i = rng.below(ASSETS.len() as u64) as usize;
                t += rng.below(30);
                let publish = t.saturating_sub(rng.below(200));
                let wide = rng.chance(20);
                CommandKind::OraclePrice {
                    asset: ASSETS[i].0.into(),
                    price: Price::from_raw(prices[i] * 1_000_000),
                    confidence: Price::from_raw(prices[i] * if wide { 100_000 } else { 1_000 }),
                    publish_time: publish,
                }
            }
            _ => {
                // Deliberately bad input.
                match rng.below(4) {
                    0 => CommandKind::Deposit {
                        sub_account: sub,
                        asset: "DOGE".into(),
                        amount,
                    },
                    1 => CommandKind::Deposit {
                        sub_account: sub,
                        asset: symbol.into(),
                        amount: TokenQuantity::from_raw(-1),
                    },
                    2 => CommandKind::Withdraw {
                        sub_account: sub,
                        asset: symbol.into(),
                        amount: TokenQuantity::from_raw(1), // 10^-18: finer than any asset's decimals here
                        reduce_only: false,
                    },
                    _ => {
                        out.push(cmd(
                            t.saturating_sub(10),
                            CommandKind::AccrueInterest { asset: None },
                        ));
                        continue;
                    }
                }
            }
        };
        let _ = &sub_owner;
        out.push(cmd(t, kind));
    }
    out
}

/// A token amount worth roughly 1 to 100,000 USD, with at most the asset's decimals.
fn random_amount(rng: &mut Rng, decimals: u8, price_micro: i128) -> TokenQuantity {
    let usd_micro = 1_000_000i128 * 10i128.pow(rng.below(6) as u32) * (1 + rng.below(9) as i128);
    // native = usd / price * 10^decimals
    let native = (usd_micro * 10i128.pow(decimals as u32) / price_micro.max(1)).max(1);
    TokenQuantity::from_native(ballast_num::TokenAmount::from_raw(native), decimals).unwrap()
}

/// The example protocol with changes applied before validation (e.g. size premia off for exact formulas).
pub fn config_with(
    change: impl FnOnce(&mut ballast_engine::config::ProtocolFile),
) -> ProtocolConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/protocol.toml");
    let text = std::fs::read_to_string(path).expect("examples/protocol.toml");
    let mut file: ballast_engine::config::ProtocolFile = toml::from_str(&text).unwrap();
    change(&mut file);
    ProtocolConfig::from_file(file).expect("changed config is valid")
}

/// The example protocol without size premia, so that expected health is a short formula.
pub fn flat_config() -> ProtocolConfig {
    flat_config_with(|_| {})
}

/// [`flat_config`] with further changes.
pub fn flat_config_with(
    change: impl FnOnce(&mut ballast_engine::config::ProtocolFile),
) -> ProtocolConfig {
    config_with(|f| {
        for a in &mut f.asset {
            a.size_premium_factor = ballast_num::Ratio::ZERO;
        }
        for m in &mut f.market {
            m.size_premium_factor = ballast_num::Ratio::ZERO;
        }
        change(f);
    })
}

/// A small driver: applies commands at a moving clock and keeps the results.
pub struct Venue {
    pub engine: Engine,
    pub t: u64,
}

impl Venue {
    pub fn new(config: ProtocolConfig) -> Venue {
        Venue {
            engine: Engine::new(config, GENESIS),
            t: GENESIS,
        }
    }

    pub fn apply(
        &mut self,
        kind: CommandKind,
    ) -> Result<Vec<ballast_engine::Event>, ballast_engine::Rejection> {
        self.engine.apply(&cmd(self.t, kind))
    }

    pub fn ok(&mut self, kind: CommandKind) -> Vec<ballast_engine::Event> {
        let shown = format!("{kind:?}");
        self.apply(kind)
            .unwrap_or_else(|r| panic!("{shown} rejected: {r}"))
    }

    pub fn rejected(&mut self, kind: CommandKind) -> ballast_engine::Rejection {
        let before = self.engine.state_hash();
        let shown = format!("{kind:?}");
        let rejection = self
            .apply(kind)
            .map(|e| panic!("{shown} applied: {e:?}"))
            .unwrap_err();
        assert_eq!(
            self.engine.state_hash(),
            before,
            "a rejection changed the state"
        );
        rejection
    }

    pub fn price(&mut self, asset: &str, p: &str) -> Vec<ballast_engine::Event> {
        let price: Price = p.parse().unwrap();
        let confidence = Price::from_raw(price.raw() / 1000);
        self.ok(CommandKind::OraclePrice {
            asset: asset.into(),
            price,
            confidence,
            publish_time: self.t,
        })
    }

    /// Prices for all example assets at the current time.
    pub fn all_prices(&mut self) {
        for (asset, p) in [
            ("USDC", "1"),
            ("BTC", "60000"),
            ("ETH", "3000"),
            ("SOL", "150"),
            ("MNGO", "0.03"),
        ] {
            self.price(asset, p);
        }
    }

    /// Creates an owner with one sub-account of the given margin; returns the sub-account id.
    pub fn sub(&mut self, owner: u64, margin: MarginSpec) -> u32 {
        if !self.engine.owners().contains_key(&owner) {
            self.ok(CommandKind::CreateAccount { owner });
        }
        match self
            .ok(CommandKind::OpenSubAccount { owner, margin })
            .as_slice()
        {
            [ballast_engine::Event::SubAccountOpened { sub_account, .. }] => *sub_account,
            other => panic!("unexpected events {other:?}"),
        }
    }

    pub fn deposit(&mut self, sub: u32, asset: &str, amount: &str) -> Vec<ballast_engine::Event> {
        self.ok(CommandKind::Deposit {
            sub_account: sub,
            asset: asset.into(),
            amount: qty(amount),
        })
    }

    pub fn withdraw(
        &mut self,
        sub: u32,
        asset: &str,
        amount: &str,
    ) -> Result<Vec<ballast_engine::Event>, ballast_engine::Rejection> {
        self.apply(CommandKind::Withdraw {
            sub_account: sub,
            asset: asset.into(),
            amount: qty(amount),
            reduce_only: false,
        })
    }

    /// A perp fill: the taker buys (`buy`) or sells `size` at `price` against the maker.
    pub fn fill(
        &mut self,
        market: &str,
        taker: u32,
        maker: u32,
        buy: bool,
        size: &str,
        price: &str,
    ) -> Result<Vec<ballast_engine::Event>, ballast_engine::Rejection> {
        let side = if buy {
            ballast_engine::command::Side::Buy
        } else {
            ballast_engine::command::Side::Sell
        };
        self.apply(CommandKind::PerpFill {
            market: market.into(),
            taker,
            maker,
            side,
            size: qty(size),
            price: price.parse().unwrap(),
        })
    }

    pub fn health(&self, sub: u32) -> ballast_engine::Health {
        self.engine.health(sub).unwrap()
    }
}

pub fn quote(s: &str) -> ballast_num::Quote {
    s.parse().unwrap()
}

/// A proptest configuration with a fixed, printed seed (`BALLAST_SEED` overrides it), so that every run of a
/// property test is reproducible.
pub fn proptest_config(test: &str, cases: u32, default_seed: u64) -> proptest::test_runner::Config {
    let seed = seed(test, default_seed);
    proptest::test_runner::Config {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// A perp-heavy stream: `n_traders` cross sub-accounts with 5,000 to 100,000 USDC trade BTC-PERP and ETH-PERP with
/// each other at up to about 15x, prices random-walk with shocks of up to 25%, funding samples arrive, and a
/// liquidator (sub-account 0, 10M USDC) or the counterparty pool (sub-account `n_traders + 1`, 2M USDC from owner 0)
/// sweeps each trader with odds of about one in two after every price move; every trader is then settled against a
/// random counterparty and the venue, and put through `resolve_bankruptcy`. A quarter of the trades are against the
/// pool, which settles and is redeemed from now and then. Some fills and liquidations are
/// refused; that is part of the test.
pub fn perp_stream(seed: u64, n_traders: u32, n_moves: usize) -> Vec<Command> {
    let mut rng = Rng::new(seed);
    let mut t = GENESIS;
    let mut out = Vec::new();
    let mut prices: Vec<i128> = ASSETS.iter().map(|a| a.2).collect();
    let publish = |out: &mut Vec<Command>, t: u64, prices: &[i128]| {
        for (i, (symbol, _, _)) in ASSETS.iter().enumerate() {
            out.push(cmd(
                t,
                CommandKind::OraclePrice {
                    asset: symbol.to_string(),
                    price: Price::from_raw(prices[i] * 1_000_000),
                    confidence: Price::from_raw(prices[i] * 100),
                    publish_time: t,
                },
            ));
        }
    };
    publish(&mut out, t, &prices);
    for owner in 0..=n_traders as u64 {
        out.push(cmd(t, CommandKind::CreateAccount { owner }));
        out.push(cmd(
            t,
            CommandKind::OpenSubAccount {
                owner,
                margin: MarginSpec::Cross,
            },
        ));
        let usdc = if owner == 0 {
            10_000_000
        } else {
            5_000 + rng.below(95_000) as i128
        };
        out.push(cmd(
            t,
            CommandKind::Deposit {
                sub_account: owner as u32,
                asset: "USDC".into(),
                amount: TokenQuantity::from_int(usdc).unwrap(),
            },
        ));
    }
    out.push(cmd(t, CommandKind::RegisterLiquidator { sub_account: 0 }));
    out.push(cmd(
        t,
        CommandKind::StakeInsurance {
            sub_account: 0,
            asset: "USDC".into(),
            amount: TokenQuantity::from_int(20_000).unwrap(),
        },
    ));
    // The counterparty pool (sub-account n_traders + 1), with 2,000,000 USDC from the liquidator's owner.
    let pool = n_traders + 1;
    out.push(cmd(t, CommandKind::OpenCounterpartyPool {}));
    out.push(cmd(
        t,
        CommandKind::PoolDeposit {
            sub_account: 0,
            amount: TokenQuantity::from_int(2_000_000).unwrap(),
        },
    ));
    // A third of the traders also borrow USDC against ETH, up to their initial limit (halving attempts), so that
    // price shocks make spot liquidations too.
    for owner in (3..=n_traders).step_by(3) {
        let eth = TokenQuantity::from_int(2 + rng.below(8) as i128).unwrap();
        out.push(cmd(
            t,
            CommandKind::Deposit {
                sub_account: owner,
                asset: "ETH".into(),
                amount: eth,
            },
        ));
        let mut usd = 40_000i128;
        while usd >= 100 {
            out.push(cmd(
                t,
                CommandKind::Withdraw {
                    sub_account: owner,
                    asset: "USDC".into(),
                    amount: TokenQuantity::from_int(usd).unwrap(),
                    reduce_only: false,
                },
            ));
            usd /= 2;
        }
    }
    for _ in 0..n_moves {
        for _ in 0..4 {
            let (market, i, step_decimals) =
                *rng.pick(&[("BTC-PERP", 1usize, 4u32), ("ETH-PERP", 2, 3)]);
            let taker = 1 + rng.below(n_traders as u64) as u32;
            let maker = 1 + rng.below(n_traders as u64) as u32;
            let usd = 10_000 * (1 + rng.below(60) as i128);
            let steps = (usd * 1_000_000 * 10i128.pow(step_decimals) / prices[i]).max(1);
            let side = if rng.chance(50) {
                crate::common::Side::Buy
            } else {
                crate::common::Side::Sell
            };
            let size = TokenQuantity::from_raw(steps * 10i128.pow(18 - step_decimals));
            if rng.chance(25) {
                out.push(cmd(
                    t,
                    CommandKind::PoolTrade {
                        market: market.into(),
                        sub_account: taker,
                        side,
                        size,
                    },
                ));
                continue;
            }
            out.push(cmd(
                t,
                CommandKind::PerpFill {
                    market: market.into(),
                    taker,
                    maker,
                    side,
                    size,
                    price: Price::from_raw(
                        prices[i] * (1000 + rng.below(5) as i128 - 2) / 1000 * 1_000_000,
                    ),
                },
            ));
        }
        t += 60;
        for p in prices.iter_mut().skip(1) {
            let shock = if rng.chance(10) { 25 } else { 4 };
            let pct = rng.below(2 * shock + 1) as i128 - shock as i128;
            *p = (*p * (100 + pct) / 100).max(1);
        }
        publish(&mut out, t, &prices);
        if rng.chance(30) {
            out.push(cmd(
                t,
                CommandKind::UpdateFunding {
                    market: "BTC-PERP".into(),
                    mark_price: Price::from_raw(prices[1] * 1_001_000),
                },
            ));
        }
        for target in 1..=n_traders {
            // Now and then no liquidator acts in time, so that settlement drains a bankrupt trader's collateral and
            // its open positions go to auto-deleveraging.
            if rng.chance(15) {
                out.push(cmd(t, CommandKind::PoolLiquidate { target }));
            } else if rng.chance(40) {
                out.push(cmd(
                    t,
                    CommandKind::Liquidate {
                        liquidator: 0,
                        target,
                    },
                ));
            }
            // Settle against a random counterparty (the liquidator or the pool among them) and the venue, then
            // resolve what is left.
            let winner = rng.below(n_traders as u64 + 2) as u32;
            for market in ["BTC-PERP", "ETH-PERP"] {
                out.push(cmd(
                    t,
                    CommandKind::SettlePnl {
                        market: market.into(),
                        winner,
                        loser: target,
                    },
                ));
                out.push(cmd(
                    t,
                    CommandKind::SettleVenueClaims {
                        market: market.into(),
                        loser: target,
                    },
                ));
            }
            out.push(cmd(t, CommandKind::ResolveBankruptcy { target }));
        }
        // The pool settles against a random trader, and its provider now and then redeems a little.
        let trader = 1 + rng.below(n_traders as u64) as u32;
        for (winner, loser) in [(pool, trader), (trader, pool)] {
            out.push(cmd(
                t,
                CommandKind::SettlePnl {
                    market: "BTC-PERP".into(),
                    winner,
                    loser,
                },
            ));
        }
        if rng.chance(20) {
            out.push(cmd(
                t,
                CommandKind::PoolWithdraw {
                    sub_account: 0,
                    shares: TokenQuantity::from_int(1 + rng.below(50_000) as i128).unwrap(),
                },
            ));
        }
    }
    out
}

pub use ballast_engine::command::Side;

/// The flat example venue with prices; A (10,000 USDC) long 1 BTC-PERP at 60,000 from B (10,000 USDC).
pub fn one_btc_long() -> (Venue, u32, u32) {
    let mut v = Venue::new(flat_config());
    v.all_prices();
    let a = v.sub(1, MarginSpec::Cross);
    let b = v.sub(2, MarginSpec::Cross);
    v.deposit(a, "USDC", "10000");
    v.deposit(b, "USDC", "10000");
    v.fill("BTC-PERP", a, b, true, "1", "60000").unwrap();
    (v, a, b)
}

/// A random session (for [`flat_config`]) of option writers and buyers, cross and portfolio-margined, with perps beside them: fills,
/// volatility prints, price moves with shocks, liquidations, settlements, bankruptcies, then expiry and the
/// closing of every series.
pub fn option_stream(seed: u64, n_traders: u32, n_moves: usize) -> Vec<ballast_engine::Command> {
    use ballast_engine::command::Side;
    use ballast_num::TokenQuantity;
    // The example protocol's two option series and their expiry (see tests/options.rs).
    const CALL: &str = "BTC-29DEC23-60000-C";
    const PUT: &str = "BTC-29DEC23-50000-P";
    const EXPIRY: u64 = 1_703_836_800;
    let mut rng = Rng::new(seed);
    // Three days before expiry, so that short-expiry volatility shocks and the expiry itself are in play.
    let mut t = EXPIRY - 3 * 86_400;
    let mut out = Vec::new();
    let mut btc = 60_000i128;
    let publish = |out: &mut Vec<ballast_engine::Command>, t: u64, btc: i128| {
        for (asset, p) in [("USDC", 1i128), ("BTC", btc), ("ETH", 3_000), ("SOL", 150)] {
            out.push(cmd(
                t,
                CommandKind::OraclePrice {
                    asset: asset.into(),
                    price: Price::from_raw(p * 1_000_000_000_000),
                    confidence: Price::from_raw(p * 100_000_000),
                    publish_time: t,
                },
            ));
        }
    };
    publish(&mut out, t, btc);
    for owner in 0..=n_traders as u64 {
        out.push(cmd(t, CommandKind::CreateAccount { owner }));
        let margin = if owner > 0 && rng.chance(50) {
            MarginSpec::Portfolio
        } else {
            MarginSpec::Cross
        };
        out.push(cmd(t, CommandKind::OpenSubAccount { owner, margin }));
        let usdc = if owner == 0 {
            10_000_000
        } else {
            2_000 + rng.below(30_000) as i128
        };
        out.push(cmd(
            t,
            CommandKind::Deposit {
                sub_account: owner as u32,
                asset: "USDC".into(),
                amount: TokenQuantity::from_int(usdc).unwrap(),
            },
        ));
        if owner > 0 && rng.chance(30) {
            out.push(cmd(
                t,
                CommandKind::Deposit {
                    sub_account: owner as u32,
                    asset: "BTC".into(),
                    amount: TokenQuantity::from_int(1).unwrap(),
                },
            ));
        }
    }
    out.push(cmd(t, CommandKind::RegisterLiquidator { sub_account: 0 }));
    let markets = [CALL, PUT, "BTC-PERP"];
    for _ in 0..n_moves {
        for _ in 0..5 {
            let market = *rng.pick(&markets);
            let taker = 1 + rng.below(n_traders as u64) as u32;
            let maker = 1 + rng.below(n_traders as u64) as u32;
            let steps = 1 + rng.below(1_000) as i128; // 0.01 .. 10 contracts
            let premium = match market {
                "BTC-PERP" => btc,
                CALL => (btc - 60_000).max(0) + 1_000 + rng.below(4_000) as i128,
                _ => (50_000 - btc).max(0) + 100 + rng.below(2_000) as i128,
            };
            out.push(cmd(
                t,
                CommandKind::PerpFill {
                    market: market.into(),
                    taker,
                    maker,
                    side: if rng.chance(50) {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    size: TokenQuantity::from_raw(steps * 10i128.pow(16)),
                    price: Price::from_raw(premium * 1_000_000_000_000),
                },
            ));
        }
        t += 600;
        let shock = match rng.below(100) {
            0..=7 => 20,
            8..=22 => 8,
            _ => 2,
        };
        btc = (btc * (100 + rng.below(2 * shock + 1) as i128 - shock as i128) / 100).max(1_000);
        publish(&mut out, t, btc);
        if rng.chance(30) {
            out.push(cmd(
                t,
                CommandKind::OptionVol {
                    market: (*rng.pick(&[CALL, PUT])).into(),
                    vol: ballast_num::Ratio::from_raw(
                        (30 + rng.below(120) as i128) * 10i128.pow(16),
                    ),
                },
            ));
        }
        for target in 1..=n_traders {
            if rng.chance(50) {
                out.push(cmd(
                    t,
                    CommandKind::Liquidate {
                        liquidator: 0,
                        target,
                    },
                ));
            }
            let winner = rng.below(n_traders as u64 + 1) as u32;
            let market = *rng.pick(&markets);
            out.push(cmd(
                t,
                CommandKind::SettlePnl {
                    market: market.into(),
                    winner,
                    loser: target,
                },
            ));
            out.push(cmd(t, CommandKind::ResolveBankruptcy { target }));
        }
    }
    // Expiry: the settlement price needs a print close to the slow reference price, which the last shocks may have
    // left behind, so BTC is printed at its last price for two and a half hours (each print moves the reference at
    // most 60 s worth, 1/60 of the gap). Then both series close and every trader settles.
    t = t.max(EXPIRY) + 60;
    for _ in 0..150 {
        t += 60;
        out.push(cmd(
            t,
            CommandKind::OraclePrice {
                asset: "BTC".into(),
                price: Price::from_raw(btc * 1_000_000_000_000),
                confidence: Price::from_raw(btc * 100_000_000),
                publish_time: t,
            },
        ));
    }
    publish(&mut out, t + 1, btc);
    t += 1;
    for market in [CALL, PUT] {
        out.push(cmd(
            t,
            CommandKind::ExpireMarket {
                market: market.into(),
            },
        ));
        for target in 1..=n_traders {
            out.push(cmd(
                t,
                CommandKind::SettlePnl {
                    market: market.into(),
                    winner: rng.below(n_traders as u64 + 1) as u32,
                    loser: target,
                },
            ));
        }
    }
    out
}
