//! Nelder-Mead minimisation, for the maximum-likelihood fits (GARCH(1,1), Student-t).
//!
//! The fits reparametrise their constraints away (a positive number as an exponential, a number in an interval as a
//! logistic function), so the search here is unconstrained. A value that is not finite (a likelihood that overflowed)
//! counts as `+inf`: the simplex moves away from it.
//!
//! The method (Nelder and Mead, 1965, with the usual coefficients: reflection 1, expansion 2, contraction 1/2, shrink
//! 1/2; inside and outside contractions as in Lagarias et al., 1998). It stops when the function values of the
//! simplex's vertices agree to `f_tolerance` (absolute) and its vertices to `x_tolerance` (in each coordinate), or after
//! `evaluations_max` evaluations, whichever comes first.

/// Where the search stopped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub evaluations: usize,
    pub converged: bool,
}

/// Stopping rule; see the module docs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tolerance {
    pub f_tolerance: f64,
    pub x_tolerance: f64,
    pub evaluations_max: usize,
}

/// Minimises `f` from `start`, with an initial simplex of `start` and `start + step_i·e_i` for each coordinate `i`.
pub(crate) fn nelder_mead(
    mut f: impl FnMut(&[f64]) -> f64,
    start: &[f64],
    steps: &[f64],
    tolerance: Tolerance,
) -> Minimum {
    debug_assert_eq!(start.len(), steps.len());
    let n = start.len();
    let mut evaluations = 0usize;
    let mut eval = |x: &[f64], evaluations: &mut usize| {
        *evaluations += 1;
        let v = f(x);
        if v.is_finite() {
            v
        } else {
            f64::INFINITY
        }
    };
    // vertices[i], values[i]; kept sorted by value after each iteration.
    let mut vertices: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
    vertices.push(start.to_vec());
    for i in 0..n {
        let mut v = start.to_vec();
        v[i] += steps[i];
        vertices.push(v);
    }
    let mut values: Vec<f64> = vertices.iter().map(|v| eval(v, &mut evaluations)).collect();
    let mut centroid = vec![0.0; n];
    let mut trial = vec![0.0; n];
    let mut trial2 = vec![0.0; n];
    let mut converged = false;
    // order[0] is the best vertex, order[n] the worst; the vertices themselves never move in memory.
    let mut order: Vec<usize> = (0..=n).collect();
    while evaluations < tolerance.evaluations_max {
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        let (best, worst, second_worst) = (order[0], order[n], order[n - 1]);

        let f_spread = values[worst] - values[best];
        let mut x_spread = 0.0f64;
        for v in &vertices {
            for j in 0..n {
                x_spread = x_spread.max((v[j] - vertices[best][j]).abs());
            }
        }
        if f_spread <= tolerance.f_tolerance && x_spread <= tolerance.x_tolerance {
            converged = true;
            break;
        }

        for j in 0..n {
            centroid[j] = order[..n].iter().map(|&i| vertices[i][j]).sum::<f64>() / n as f64;
        }
        let point = |coefficient: f64, out: &mut Vec<f64>, worst: &[f64]| {
            for j in 0..n {
                out[j] = centroid[j] + coefficient * (worst[j] - centroid[j]);
            }
        };
        point(-1.0, &mut trial, &vertices[worst]);
        let reflected = eval(&trial, &mut evaluations);
        if reflected < values[best] {
            point(-2.0, &mut trial2, &vertices[worst]);
            let expanded = eval(&trial2, &mut evaluations);
            if expanded < reflected {
                vertices[worst].copy_from_slice(&trial2);
                values[worst] = expanded;
            } else {
                vertices[worst].copy_from_slice(&trial);
                values[worst] = reflected;
            }
            continue;
        }
        if reflected < values[second_worst] {
            vertices[worst].copy_from_slice(&trial);
            values[worst] = reflected;
            continue;
        }
        // Contraction: outside if the reflection improved on the worst, inside otherwise.
        let (coefficient, bar) = if reflected < values[worst] {
            (-0.5, reflected)
        } else {
            (0.5, values[worst])
        };
        point(coefficient, &mut trial2, &vertices[worst]);
        let contracted = eval(&trial2, &mut evaluations);
        if contracted <= bar {
            vertices[worst].copy_from_slice(&trial2);
            values[worst] = contracted;
            continue;
        }
        // Shrink towards the best vertex.
        let anchor = vertices[best].clone();
        for &i in &order[1..] {
            for (v, a) in vertices[i].iter_mut().zip(&anchor) {
                *v = a + 0.5 * (*v - a);
            }
            values[i] = eval(&vertices[i], &mut evaluations);
        }
    }
    let best = (0..=n)
        .min_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap_or(0);
    Minimum {
        x: vertices[best].clone(),
        value: values[best],
        evaluations,
        converged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIGHT: Tolerance = Tolerance {
        f_tolerance: 1e-14,
        x_tolerance: 1e-8,
        evaluations_max: 5_000,
    };

    #[test]
    fn quadratic_bowl() {
        let m = nelder_mead(
            |x| (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2) + 0.5 * (x[2] - 3.0).powi(2),
            &[0.0, 0.0, 0.0],
            &[0.5, 0.5, 0.5],
            TIGHT,
        );
        assert!(m.converged, "{m:?}");
        for (x, expected) in m.x.iter().zip([1.0, -2.0, 3.0]) {
            assert!((x - expected).abs() < 1e-6, "{m:?}");
        }
    }

    #[test]
    fn rosenbrock() {
        let m = nelder_mead(
            |x| 100.0 * (x[1] - x[0] * x[0]).powi(2) + (1.0 - x[0]).powi(2),
            &[-1.2, 1.0],
            &[0.5, 0.5],
            TIGHT,
        );
        assert!(m.converged, "{m:?}");
        assert!(
            (m.x[0] - 1.0).abs() < 1e-5 && (m.x[1] - 1.0).abs() < 1e-5,
            "{m:?}"
        );
    }

    #[test]
    fn non_finite_values_are_avoided() {
        // ln(x) - x has its maximum at 1; NaN for x < 0.
        let m = nelder_mead(|x| -(x[0].ln() - x[0]), &[3.0], &[2.5], TIGHT);
        assert!((m.x[0] - 1.0).abs() < 1e-6, "{m:?}");
    }
}
