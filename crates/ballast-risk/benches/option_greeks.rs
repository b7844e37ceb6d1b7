//! Issue 4: European options priced with all Greeks (price, delta, gamma, vega, theta, rho), per second on one core.
//!
//! A book of 4,096 options, drawn once from a fixed seed (SplitMix64): half Black-Scholes with a yield, half Black-76,
//! calls and puts, spot 1 to 100,000, strikes 0.5x to 2x spot, expiries one hour to two years, volatilities 5 % to
//! 200 %, rates -2 % to 15 %. Two measurements, each over the whole book per iteration (criterion reports elements per
//! second, one element = one option):
//!
//! 1. `greeks/validated`: [`EuropeanOption::greeks`] on options already validated by [`EuropeanOption::new`] (the
//!    discount factors and the forward computed once per option, as a risk system revaluing a book at a new
//!    volatility does).
//! 2. `greeks/from_inputs`: [`EuropeanOption::new`] and then `greeks`, from raw inputs every time (validation, two
//!    exponentials and a logarithm more per option).
//!
//! Every result is summed into a checksum passed through `black_box`, so nothing is optimised away.
//!
//! Run: `cargo bench -p ballast-risk --bench option_greeks`.

use ballast_risk::{EuropeanOption, Model, OptionInputs, OptionKind};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const BOOK_SIZE: usize = 4_096;
const SEED: u64 = 4_100;

/// SplitMix64, as in the tests.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.uniform(lo.ln(), hi.ln()).exp()
    }
}

fn book() -> Vec<(OptionInputs, f64)> {
    let mut rng = Rng(SEED);
    (0..BOOK_SIZE)
        .map(|i| {
            let model = if i % 2 == 0 {
                Model::BlackScholes
            } else {
                Model::Black76
            };
            let kind = if (i / 2) % 2 == 0 {
                OptionKind::Call
            } else {
                OptionKind::Put
            };
            let underlying = rng.log_uniform(1.0, 100_000.0);
            let inputs = OptionInputs {
                model,
                kind,
                underlying,
                strike: underlying * rng.log_uniform(0.5, 2.0),
                rate: rng.uniform(-0.02, 0.15),
                dividend_yield: match model {
                    Model::BlackScholes => rng.uniform(0.0, 0.08),
                    Model::Black76 => 0.0,
                },
                expiry_years: rng.log_uniform(1.0 / 8_760.0, 2.0),
            };
            (inputs, rng.log_uniform(0.05, 2.0))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let book = book();
    let validated: Vec<(EuropeanOption, f64)> = book
        .iter()
        .map(|&(inputs, vol)| (EuropeanOption::new(inputs).expect("valid book"), vol))
        .collect();
    let mut group = c.benchmark_group("greeks");
    group.throughput(Throughput::Elements(BOOK_SIZE as u64));
    group.bench_function("validated", |b| {
        b.iter(|| {
            let mut checksum = 0.0;
            for (option, vol) in black_box(&validated) {
                let g = option.greeks(*vol).expect("valid vol");
                checksum += g.price + g.delta + g.gamma + g.vega + g.theta + g.rho;
            }
            black_box(checksum)
        })
    });
    group.bench_function("from_inputs", |b| {
        b.iter(|| {
            let mut checksum = 0.0;
            for (inputs, vol) in black_box(&book) {
                let option = EuropeanOption::new(*inputs).expect("valid book");
                let g = option.greeks(*vol).expect("valid vol");
                checksum += g.price + g.delta + g.gamma + g.vega + g.theta + g.rho;
            }
            black_box(checksum)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
