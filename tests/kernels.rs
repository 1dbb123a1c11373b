//! Kernel property tests: on random shapes (ragged rows and columns included), random codes,
//! scales and activations, every SIMD kernel this CPU has gives the same integer accumulators as
//! the scalar reference, and the same float outputs bit for bit; the scalar reference itself is
//! checked against a naive sum over the unpacked weights.

#![allow(clippy::needless_range_loop)] // index arithmetic reads clearer in these checks

use half::f16;
use tmac::format::Blob;
use tmac::kernel::lut::Activations;
use tmac::kernel::{self, Isa, Knobs};
use tmac::quant::lut::{pack, LutMatrix, Zero};
use tmac::quant::q8::Q8Matrix;
use tmac::sampler::Rng;

fn simd_isas() -> Vec<Isa> {
    let v: Vec<Isa> = [Isa::Avx2, Isa::Neon]
        .into_iter()
        .filter(|i| i.available())
        .collect();
    if v.is_empty() {
        eprintln!("no SIMD kernel on this CPU: only the scalar reference is tested here");
    }
    v
}

struct Case {
    rows: usize,
    cols: usize,
    bits: u32,
    group: usize,
    zero: Zero,
    codes: Vec<u8>,
    m: LutMatrix,
}

fn random_case(rng: &mut Rng) -> Case {
    let pick = |rng: &mut Rng, n: usize| (rng.next_u64() % n as u64) as usize;
    let rows = 1 + pick(rng, 70);
    // now and then a row long enough for every code width to flush its 16-bit sums
    let cols = if pick(rng, 8) == 0 {
        1000 + pick(rng, 1200)
    } else {
        1 + pick(rng, 300)
    };
    let bits = 1 + pick(rng, 4) as u32;
    let ternary = bits == 2 && pick(rng, 2) == 0;
    let group = [8, 16, 32, 64, 128, 1 << 20][pick(rng, 6)];
    let zero = if ternary {
        Zero::Offset(1)
    } else {
        [Zero::Affine, Zero::Offset(1 << (bits - 1))][pick(rng, 2)]
    };
    let max = if ternary { 3 } else { 1 << bits };
    let codes: Vec<u8> = (0..rows * cols).map(|_| pick(rng, max) as u8).collect();
    let kp = cols.div_ceil(8) * 8;
    let group = if group >= kp { kp } else { group };
    let ng = kp.div_ceil(group);
    let scales: Vec<(f16, f16)> = (0..rows * ng)
        .map(|_| {
            (
                f16::from_f32(rng.next_f64() as f32 * 0.1),
                f16::from_f32(rng.next_f64() as f32 - 0.5),
            )
        })
        .collect();
    let m = pack(
        rows,
        cols,
        bits,
        group,
        zero,
        ternary,
        |r, c| codes[r * cols + c],
        |r, g| scales[r * ng + g],
    );
    Case {
        rows,
        cols,
        bits,
        group,
        zero,
        codes,
        m,
    }
}

fn random_activations(rng: &mut Rng, k: usize, group: usize) -> Activations {
    let mut x: Vec<f32> = (0..k)
        .map(|_| (rng.next_f64() as f32 - 0.5) * 4.0)
        .collect();
    if k > 3 {
        x[k / 3] = 60.0; // an outlier, as real hidden states have
        x[k / 2] = 0.0;
    }
    let mut a = Activations::new();
    a.quantize(&x, group);
    a.build_tables();
    a
}

#[test]
fn lut_kernels_agree_with_each_other_and_the_naive_sum() {
    let mut rng = Rng::new(2024);
    let (mut ints_s, mut ints_v) = (Vec::new(), Vec::new());
    for case in 0..300 {
        let c = random_case(&mut rng);
        let act = random_activations(
            &mut rng,
            c.cols,
            if case % 3 == 0 { c.group } else { 1 << 20 },
        );
        kernel::lut_ints(Isa::Scalar, &c.m, &act, &mut ints_s);
        // naive: sum q * a per (row, group)
        let g = c.m.geometry();
        for r in 0..c.rows {
            for grp in 0..g.groups {
                let want: i32 = (grp * c.group..((grp + 1) * c.group).min(c.cols))
                    .map(|k| c.codes[r * c.cols + k] as i32 * act.a[k] as i32)
                    .sum();
                let got = ints_s[((r / 16) * g.groups + grp) * 16 + r % 16];
                assert_eq!(
                    got, want,
                    "case {case}: {}x{} bits {} group {} row {r} group {grp}",
                    c.rows, c.cols, c.bits, c.group
                );
            }
        }
        let mut y_s = vec![0f32; c.rows];
        kernel::lut_gemv(
            Isa::Scalar,
            &c.m,
            &act,
            &mut y_s,
            &Knobs::default_for(Isa::Scalar),
        );
        for isa in simd_isas() {
            kernel::lut_ints(isa, &c.m, &act, &mut ints_v);
            assert_eq!(
                ints_v,
                ints_s,
                "case {case}: {} integer accumulators",
                isa.name()
            );
            let mut y_v = vec![0f32; c.rows];
            // every knob setting gives the same bits
            let knobs = tmac::kernel::tune::candidates()[case % 12];
            kernel::lut_gemv(isa, &c.m, &act, &mut y_v, &knobs);
            let (bs, bv): (Vec<u32>, Vec<u32>) = (
                y_s.iter().map(|v| v.to_bits()).collect(),
                y_v.iter().map(|v| v.to_bits()).collect(),
            );
            assert_eq!(
                bv,
                bs,
                "case {case}: {} outputs differ from scalar",
                isa.name()
            );
        }
        // and the float result is the dequantized matrix times the dequantized activations
        let mut row = vec![0f32; c.cols];
        for r in 0..c.rows {
            c.m.dequantize_row(r, &mut row);
            let exact: f64 = (0..c.cols)
                .map(|k| row[k] as f64 * act.a[k] as f64 * act.scale_at(k) as f64)
                .sum();
            let tol = 1e-4
                * (1.0
                    + (0..c.cols)
                        .map(|k| (row[k] * act.a[k] as f32 * act.scale_at(k)).abs() as f64)
                        .sum::<f64>());
            assert!(
                (y_s[r] as f64 - exact).abs() <= tol,
                "case {case} row {r}: {} vs {exact} ({:?})",
                y_s[r],
                c.zero
            );
        }
    }
}

/// The largest low-byte sums the kernels can meet: every table entry read is -1 (low byte 255)
/// and every code is all ones, over rows long enough to need many 16-bit flushes.
#[test]
fn lut_kernels_hold_the_worst_case_sums() {
    let cols = 4096 + 8;
    // activations (-127, 126, 0, 0) repeated: all four together sum to -1
    let x: Vec<f32> = (0..cols)
        .map(|k| [-1.0, 126.0 / 127.0, 0.0, 0.0][k % 4])
        .collect();
    let mut act = Activations::new();
    act.quantize(&x, 1 << 20);
    act.build_tables();
    assert_eq!(&act.a[..4], &[-127, 126, 0, 0]);
    for bits in 1..=4u32 {
        let top = (1u8 << bits) - 1;
        let one = (f16::ONE, f16::ZERO);
        let m = pack(
            17,
            cols,
            bits,
            cols,
            Zero::Affine,
            false,
            |_, _| top,
            |_, _| one,
        );
        let want = -(top as i32) * (cols / 4) as i32;
        let mut ints = Vec::new();
        for isa in [Isa::Scalar].into_iter().chain(simd_isas()) {
            kernel::lut_ints(isa, &m, &act, &mut ints);
            for r in 0..17 {
                assert_eq!(
                    ints[(r / 16) * 16 + r % 16],
                    want,
                    "{} bits {bits} row {r}",
                    isa.name()
                );
            }
        }
    }
}

#[test]
fn packing_round_trips() {
    let mut rng = Rng::new(7);
    for _ in 0..50 {
        let c = random_case(&mut rng);
        let g = c.m.geometry();
        let mut row = vec![0f32; c.cols];
        for r in 0..c.rows {
            c.m.dequantize_row(r, &mut row);
            for k in 0..c.cols {
                let (d, m) = tmac::quant::lut::scale_of(
                    c.m.scales.as_slice(),
                    &g,
                    c.zero,
                    r / 16,
                    k / c.group,
                    r % 16,
                );
                assert_eq!(row[k], d * c.codes[r * c.cols + k] as f32 + m);
            }
        }
    }
}

#[test]
fn q8_kernels_agree() {
    let mut rng = Rng::new(99);
    for case in 0..100 {
        let rows = 1 + (rng.next_u64() % 40) as usize;
        let cols = 32 * (1 + (rng.next_u64() % 12) as usize);
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect();
        // both layouts: ggml's interleaved Q8_0 blocks and tmac's split values/scales
        let m = if case % 2 == 0 {
            Q8Matrix::new(
                rows,
                cols,
                Blob::Owned(tmac::quant::ggml::quantize(8, &w).unwrap()),
                None,
            )
            .unwrap()
        } else {
            Q8Matrix::quantize(rows, cols, &w).unwrap()
        };
        let act = random_activations(&mut rng, cols, if case % 4 < 2 { 32 } else { 1 << 20 });
        let mut y_s = vec![0f32; rows];
        kernel::q8_gemv(
            Isa::Scalar,
            &m,
            &act,
            &mut y_s,
            &Knobs::default_for(Isa::Scalar),
        );
        for isa in simd_isas() {
            let mut y_v = vec![0f32; rows];
            kernel::q8_gemv(
                isa,
                &m,
                &act,
                &mut y_v,
                &tmac::kernel::tune::candidates()[case % 12],
            );
            assert_eq!(
                y_v.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                y_s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "case {case}: {}",
                isa.name()
            );
        }
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            m.dequantize_row(r, &mut row);
            let exact: f64 = (0..cols)
                .map(|k| row[k] as f64 * act.a[k] as f64 * act.scale_at(k) as f64)
                .sum();
            assert!(
                (y_s[r] as f64 - exact).abs() < 1e-3 * (1.0 + exact.abs()),
                "row {r}: {} vs {exact}",
                y_s[r]
            );
        }
    }
}

#[test]
fn batched_gemm_equals_one_gemv_per_input() {
    let mut rng = Rng::new(31);
    for case in 0..40 {
        let c = random_case(&mut rng);
        let acts: Vec<Activations> = (0..1 + case % 7)
            .map(|_| random_activations(&mut rng, c.cols, 1 << 20))
            .collect();
        for isa in std::iter::once(Isa::Scalar).chain(simd_isas()) {
            let knobs = Knobs::default_for(isa);
            let mut ys = vec![0f32; acts.len() * c.rows];
            kernel::lut_gemm(isa, &c.m, &acts, &mut ys, &knobs);
            for (a, y) in acts.iter().zip(ys.chunks_exact(c.rows)) {
                let mut one = vec![0f32; c.rows];
                kernel::lut_gemv(isa, &c.m, a, &mut one, &knobs);
                assert!(
                    one.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "case {case} {}",
                    isa.name()
                );
            }
        }
    }
}
