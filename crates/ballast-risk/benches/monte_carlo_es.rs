//! Issue 4 benchmark goal: Monte Carlo VaR and ES with 1,000,000 paths over ten assets, on one core.
//!
//! The model: ten assets with daily volatilities from 3 % to 7.5 % (0.5 % apart), all pairwise correlations 0.5, and
//! mean returns of 0.05 % a day; a long-only portfolio with weights 1 to 10 (divided by their sum). One iteration is
//! the whole of `monte_carlo`: 1,000,000 paths of ten correlated normals from the seeded ChaCha12 stream, the
//! portfolio loss of each path, and the 99 % VaR and ES of the losses (selection and a tail mean, no sort). The
//! Cholesky factor is computed once, outside the loop, as `ballast var` does once per run.
//!
//! Two measurements:
//! 1. `monte_carlo_es/log_returns_1m_paths_10_assets`: log returns, the general case: each asset's return
//!    `mean + L·z` (a triangular product) and one `exp` per asset per path, then `ln` of the portfolio's value ratio.
//! 2. `monte_carlo_es/simple_returns_1m_paths_10_assets`: simple returns, where a path's portfolio return is one dot
//!    product with `Lᵀw` (computed once): the cost is mostly drawing the normals.
//!
//! Criterion reports elements per second, one element = one path.
//!
//! Run: `cargo bench -p ballast-risk --bench monte_carlo_es`.

use ballast_risk::data::ReturnKind;
use ballast_risk::var::monte_carlo::{monte_carlo, MonteCarloConfig, MultivariateNormal};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const N_ASSETS: usize = 10;
const PATHS: usize = 1_000_000;

fn model() -> MultivariateNormal {
    let vols: Vec<f64> = (0..N_ASSETS).map(|i| 0.03 + 0.005 * i as f64).collect();
    let mut covariance = vec![0.0; N_ASSETS * N_ASSETS];
    for i in 0..N_ASSETS {
        for j in 0..N_ASSETS {
            let correlation = if i == j { 1.0 } else { 0.5 };
            covariance[i * N_ASSETS + j] = correlation * vols[i] * vols[j];
        }
    }
    MultivariateNormal::new(&[0.0005; N_ASSETS], &covariance).expect("positive definite")
}

fn bench(c: &mut Criterion) {
    let model = model();
    let raw: Vec<f64> = (1..=N_ASSETS).map(|i| i as f64).collect();
    let sum: f64 = raw.iter().sum();
    let weights: Vec<f64> = raw.iter().map(|w| w / sum).collect();
    let mut group = c.benchmark_group("monte_carlo_es");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PATHS as u64));
    for (name, kind) in [
        ("log_returns_1m_paths_10_assets", ReturnKind::Log),
        ("simple_returns_1m_paths_10_assets", ReturnKind::Simple),
    ] {
        let mut seed = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                seed += 1;
                let config = MonteCarloConfig {
                    paths: PATHS,
                    seed,
                    stream: 0,
                };
                black_box(
                    monte_carlo(&model, black_box(&weights), kind, 0.99, config).expect("valid"),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
