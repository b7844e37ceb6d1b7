//! Fixed-point European option prices per second on one core (`ballast_num::option`).
//!
//! A book of 4,096 options, drawn once from a seeded ChaCha8 stream (seed printed): half Black-Scholes with a yield,
//! half Black-76, calls and puts, spot 1 to 100,000 USD, strikes 0.5x to 2x spot, expiries one hour to two years,
//! volatilities 5 % to 200 %, rates -2 % to 15 %, yields 0 to 8 %. Each measurement runs over the whole book per
//! iteration; criterion reports elements per second, one element = one option:
//!
//! 1. `option_price/european_price`: [`european_price`] from the raw inputs (validation, two `exp`, two `ln`, one
//!    `sqrt`, two normal CDFs).
//! 2. `option_price/european_delta`: [`european_delta`], the same work but one CDF.
//! 3. `option_price/normal_cdf_fixed`: one [`normal_cdf_fixed`] per element, at `d1` values spread over [-6, 6].
//! 4. `option_price/scenario_grid`: the engine's use: every option revalued over a grid of 30 scenarios (spot moves
//!    of -15 % to +15 % in 3 % steps times volatility shocks of -25 %, 0, +25 %, relative); one element is one
//!    revaluation.
//!
//! Every result is summed into a checksum passed through `black_box`, so nothing is optimised away.
//!
//! Run: `cargo bench -p ballast-num --bench option_price`.

use ballast_num::math::{exp_fixed, ln_fixed};
use ballast_num::{european_delta, european_price, normal_cdf_fixed, EuropeanInputs, OptionSide};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BOOK_SIZE: usize = 4_096;
const SEED: u64 = 4_242;
const ONE: i128 = 1_000_000_000_000_000_000;

struct Sampler(ChaCha8Rng);

impl Sampler {
    fn uniform(&mut self, lo: i128, hi: i128) -> i128 {
        let span = (hi - lo) as u128 + 1;
        let v = ((self.0.next_u64() as u128) << 64) | self.0.next_u64() as u128;
        lo + (v % span) as i128
    }
    fn log_uniform(&mut self, lo: i128, hi: i128) -> i128 {
        let (a, b) = (ln_fixed(lo).unwrap(), ln_fixed(hi).unwrap());
        exp_fixed(self.uniform(a, b)).unwrap().clamp(lo, hi)
    }
}

fn book() -> Vec<(OptionSide, EuropeanInputs)> {
    println!("option_price bench: ChaCha8 seed {SEED}");
    let mut sampler = Sampler(ChaCha8Rng::seed_from_u64(SEED));
    (0..BOOK_SIZE)
        .map(|i| {
            let side = if (i / 2) % 2 == 0 {
                OptionSide::Call
            } else {
                OptionSide::Put
            };
            let spot = sampler.log_uniform(ONE, 100_000 * ONE);
            let strike = spot / ONE * sampler.log_uniform(ONE / 2, 2 * ONE);
            let vol = sampler.log_uniform(ONE / 20, 2 * ONE);
            let years = sampler.log_uniform(ONE / 8_760, 2 * ONE);
            let rate = sampler.uniform(-ONE / 50, 15 * ONE / 100);
            let inputs = if i % 2 == 0 {
                EuropeanInputs {
                    spot,
                    strike,
                    vol,
                    years,
                    rate,
                    carry_yield: sampler.uniform(0, 8 * ONE / 100),
                }
            } else {
                EuropeanInputs::black76(spot, strike, vol, years, rate)
            };
            (side, inputs)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let book = book();
    let mut group = c.benchmark_group("option_price");
    group.throughput(Throughput::Elements(BOOK_SIZE as u64));
    group.bench_function("european_price", |b| {
        b.iter(|| {
            let mut checksum = 0i128;
            for (side, inputs) in black_box(&book) {
                checksum =
                    checksum.wrapping_add(european_price(*side, inputs).expect("valid book"));
            }
            black_box(checksum)
        })
    });
    group.bench_function("european_delta", |b| {
        b.iter(|| {
            let mut checksum = 0i128;
            for (side, inputs) in black_box(&book) {
                checksum =
                    checksum.wrapping_add(european_delta(*side, inputs).expect("valid book"));
            }
            black_box(checksum)
        })
    });
    let points: Vec<i128> = (0..BOOK_SIZE as i128)
        .map(|i| -6 * ONE + i * (12 * ONE / BOOK_SIZE as i128) + 123_456_789)
        .collect();
    group.bench_function("normal_cdf_fixed", |b| {
        b.iter(|| {
            let mut checksum = 0i128;
            for &x in black_box(&points) {
                checksum = checksum.wrapping_add(normal_cdf_fixed(x).expect("any input"));
            }
            black_box(checksum)
        })
    });
    const SPOT_MOVES: [i128; 10] = [-15, -12, -9, -6, -3, 3, 6, 9, 12, 15]; // percent
    const VOL_SHOCKS: [i128; 3] = [-25, 0, 25]; // percent, relative
    let grid_options = &book[..BOOK_SIZE / 8];
    group.throughput(Throughput::Elements(
        (grid_options.len() * SPOT_MOVES.len() * VOL_SHOCKS.len()) as u64,
    ));
    group.bench_function("scenario_grid", |b| {
        b.iter(|| {
            let mut checksum = 0i128;
            for (side, base) in black_box(grid_options) {
                for spot_move in SPOT_MOVES {
                    for vol_shock in VOL_SHOCKS {
                        let inputs = EuropeanInputs {
                            spot: base.spot + base.spot / 100 * spot_move,
                            vol: base.vol + base.vol / 100 * vol_shock,
                            ..*base
                        };
                        checksum = checksum
                            .wrapping_add(european_price(*side, &inputs).expect("valid grid"));
                    }
                }
            }
            black_box(checksum)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
