//! Kernel property tests: on random shapes (ragged rows and columns included), random codes,
//! scales and activations, every SIMD kernel this CPU has gives the same integer accumulators as
//! the scalar reference, and the same float outputs bit for bit; the scalar reference itself is
//! checked against a naive sum over the unpacked weights.

#![allow(clippy::needless_range_loop)] // index arithmetic reads clearer in these checks

use half::f16;
use tmac::testing::bytes::Blob;
use tmac::testing::kernel::lut::{Activations, Tables};
use tmac::testing::kernel::{self, Isa, Knobs};
use tmac::testing::layout::lut::{block_scale, pack, pack_with, sub_scale, Form, LutMatrix, Zero};
use tmac::testing::layout::q8::Q8Matrix;
use tmac::testing::sampler::Rng;

fn simd_isas() -> Vec<Isa> {
    let v: Vec<Isa> = Isa::all().into_iter().filter(|i| !i.is_scalar()).collect();
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
    /// Columns over which the activations must keep one scale (a super-block).
    int_group: usize,
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
    let bits = 1 + pick(rng, 6) as u32;
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
    // K-quant scales (integer sub-scales under per-super-block factors) for a third of the cases
    let sup = (!ternary && group <= 64 && pick(rng, 3) == 0).then(|| 1 + pick(rng, 16));
    let ns = ng.div_ceil(sup.unwrap_or(1));
    let scales: Vec<(f16, f16)> = (0..rows * ns)
        .map(|_| {
            (
                f16::from_f32(rng.next_f64() as f32 * 0.1),
                f16::from_f32(rng.next_f64() as f32 - 0.5),
            )
        })
        .collect();
    let subs: Vec<(i8, u8)> = (0..rows * ng)
        .map(|_| (pick(rng, 256) as u8 as i8, pick(rng, 256) as u8))
        .collect();
    let form = Form {
        bits,
        group,
        zero,
        ternary,
        sup,
    };
    let m = pack_with(
        rows,
        cols,
        form,
        |r, c| codes[r * cols + c],
        |r, s| scales[r * ns + s],
        |r, g| subs[r * ng + g],
    );
    Case {
        rows,
        cols,
        bits,
        group,
        int_group: group * sup.unwrap_or(1),
        zero,
        codes,
        m,
    }
}

/// The weight factor of (row, group): d, times sc with sub-scales.
fn factor(c: &Case, r: usize, grp: usize) -> f32 {
    let g = c.m.geometry();
    let s = c.m.scales();
    let (d, _) = block_scale(s, &g, r / 16, grp / g.sup, r % 16);
    d * sub_scale(s, &g, r / 16, grp, r % 16).0 as f32
}

fn random_x(rng: &mut Rng, k: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..k)
        .map(|_| (rng.next_f64() as f32 - 0.5) * 4.0)
        .collect();
    if k > 3 {
        x[k / 3] = 60.0; // an outlier, as real hidden states have
        x[k / 2] = 0.0;
    }
    x
}

/// Activations of width `k` quantized without tables, as a prefill batch has them.
fn unbuilt_like(k: usize) -> Activations {
    let mut a = Activations::new();
    a.quantize(&vec![0.5; k], 32);
    a
}

fn random_activations(rng: &mut Rng, k: usize, group: usize, kind: Tables) -> Activations {
    let mut a = Activations::new();
    a.quantize(&random_x(rng, k), group);
    a.build_tables(kind);
    a
}

/// The integer sum the kernels must give for (row, group): with exact tables sum q * a; with
/// int8 tables the same sum over bit-planes and tables, each table entry in table units.
fn naive_ints(c: &Case, act: &Activations, r: usize, grp: usize) -> i32 {
    let cols = grp * c.group..((grp + 1) * c.group).min(c.cols);
    let code = |k: usize| c.codes[r * c.cols + k] as i32;
    match act.tables_built() {
        Some(Tables::Exact) => cols.map(|k| code(k) * act.quantized()[k] as i32).sum(),
        _ => {
            let (c0, c1) = (cols.start / 4, cols.end.div_ceil(4));
            (c0..c1)
                .map(|t| {
                    (0..c.bits)
                        .map(|p| {
                            let idx = (0..4)
                                .filter(|l| 4 * t + l < c.cols && code(4 * t + l) >> p & 1 == 1)
                                .fold(0, |i, l| i | 1 << l);
                            tmac::testing::kernel::lut::entry8(act.tables(), t, idx) << p
                        })
                        .sum::<i32>()
                })
                .sum()
        }
    }
}

#[test]
fn lut_kernels_agree_with_each_other_and_the_naive_sum() {
    let mut rng = Rng::new(2024);
    let (mut ints_s, mut ints_v) = (Vec::new(), Vec::new());
    for case in 0..400 {
        let c = random_case(&mut rng);
        let kind = [Tables::Exact, Tables::Int8][case % 2];
        let act = random_activations(
            &mut rng,
            c.cols,
            if case % 3 == 0 { c.int_group } else { 1 << 20 },
            kind,
        );
        let what = format!(
            "case {case}: {}x{} bits {} group {} super-block {:?} {} tables",
            c.rows,
            c.cols,
            c.bits,
            c.group,
            c.m.form().sup,
            kind.name()
        );
        kernel::lut_ints(Isa::SCALAR, &c.m, &act, &mut ints_s);
        let g = c.m.geometry();
        for r in 0..c.rows {
            for grp in 0..g.groups {
                let got = ints_s[((r / 16) * g.groups + grp) * 16 + r % 16];
                assert_eq!(
                    got,
                    naive_ints(&c, &act, r, grp),
                    "{what} row {r} group {grp}"
                );
            }
        }
        let mut y_s = vec![0f32; c.rows];
        kernel::lut_gemv(
            Isa::SCALAR,
            &c.m,
            &act,
            &mut y_s,
            &Knobs::default_for(Isa::SCALAR),
        );
        for isa in simd_isas() {
            kernel::lut_ints(isa, &c.m, &act, &mut ints_v);
            assert_eq!(
                ints_v,
                ints_s,
                "{what}: {} integer accumulators",
                isa.name()
            );
            let mut y_v = vec![0f32; c.rows];
            // every knob setting gives the same bits
            let cands = tmac::testing::kernel::candidates(isa);
            kernel::lut_gemv(isa, &c.m, &act, &mut y_v, &cands[case % cands.len()]);
            let (bs, bv): (Vec<u32>, Vec<u32>) = (
                y_s.iter().map(|v| v.to_bits()).collect(),
                y_v.iter().map(|v| v.to_bits()).collect(),
            );
            assert_eq!(bv, bs, "{what}: {} outputs differ from scalar", isa.name());
        }
        // and the float result is the dequantized matrix times the dequantized activations;
        // int8 tables are off by at most half a table unit per table and bit-plane
        let mut row = vec![0f32; c.cols];
        for r in 0..c.rows {
            c.m.dequantize_row(r, &mut row);
            let exact: f64 = (0..c.cols)
                .map(|k| row[k] as f64 * act.quantized()[k] as f64 * act.scale_at(k) as f64)
                .sum();
            let mut tol = 1e-4
                * (1.0
                    + (0..c.cols)
                        .map(|k| {
                            (row[k] * act.quantized()[k] as f32 * act.scale_at(k)).abs() as f64
                        })
                        .sum::<f64>());
            if kind == Tables::Int8 {
                for grp in 0..g.groups {
                    let k0 = grp * c.group;
                    let d = factor(&c, r, grp);
                    let tables = (c.group.min(c.cols - k0)).div_ceil(4);
                    tol += (d.abs() * act.scale_at(k0) * act.lut_scale_at(k0)) as f64
                        * 0.5
                        * ((1 << c.bits) - 1) as f64
                        * tables as f64;
                }
            }
            assert!(
                (y_s[r] as f64 - exact).abs() <= tol,
                "{what} row {r}: {} vs {exact} ({:?})",
                y_s[r],
                c.zero
            );
        }
    }
}

/// The largest sums the kernels can meet, over rows long enough to need many 16-bit flushes,
/// with every code all ones: exact tables where every entry read is -1 (low byte 255), int8
/// tables where every entry read is -127.
#[test]
fn lut_kernels_hold_the_worst_case_sums() {
    let cols = 4096 + 8;
    // exact: activations (-127, 126, 0, 0) repeated, all four together sum to -1 (the LUT
    // kernels' worst case: their low-byte sums are largest);
    // int8: all -127, all four sum to -508, the group's largest magnitude, so -127 in table units
    let cases = [
        (
            Tables::Exact,
            [-1.0, 126.0 / 127.0, 0.0, 0.0],
            [-127, 126, 0, 0],
            -1,
        ),
        (Tables::Int8, [-1.0; 4], [-127; 4], -127),
        // the batched kernels' worst case: every product -127 times the top code
        (Tables::Exact, [-1.0; 4], [-127; 4], -508),
    ];
    for (kind, pattern, quantized, entry) in cases {
        let x: Vec<f32> = (0..cols).map(|k| pattern[k % 4]).collect();
        let mut act = Activations::new();
        act.quantize(&x, 1 << 20);
        act.build_tables(kind);
        assert_eq!(&act.quantized()[..4], &quantized);
        for bits in 1..=6u32 {
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
            let want = entry * top as i32 * (cols / 4) as i32;
            let mut ints = Vec::new();
            for isa in [Isa::SCALAR].into_iter().chain(simd_isas()) {
                kernel::lut_ints(isa, &m, &act, &mut ints);
                let mut tiled = Vec::new();
                if kind == Tables::Exact {
                    kernel::tile_ints(isa, &m, &act, &mut tiled);
                }
                for r in 0..17 {
                    assert_eq!(
                        ints[(r / 16) * 16 + r % 16],
                        want,
                        "{} {} tables bits {bits} row {r}",
                        isa.name(),
                        kind.name()
                    );
                    if kind == Tables::Exact {
                        assert_eq!(
                            tiled[(r / 16) * 16 + r % 16],
                            want,
                            "tile {} row {r}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn packing_round_trips() {
    let mut rng = Rng::new(7);
    for _ in 0..80 {
        let c = random_case(&mut rng);
        let g = c.m.geometry();
        let s = c.m.scales();
        let mut row = vec![0f32; c.cols];
        for r in 0..c.rows {
            c.m.dequantize_row(r, &mut row);
            for k in 0..c.cols {
                let grp = k / c.group;
                let (d, m) = block_scale(s, &g, r / 16, grp / g.sup, r % 16);
                let (sc, mn) = sub_scale(s, &g, r / 16, grp, r % 16);
                let q = c.codes[r * c.cols + k] as i32;
                let want = match (c.zero, c.m.form().sup) {
                    (Zero::Offset(o), None) => (q - o as i32) as f32 * d,
                    (Zero::Offset(o), Some(_)) => (q - o as i32) as f32 * (d * sc as f32),
                    (Zero::Affine, None) => q as f32 * d + m,
                    (Zero::Affine, Some(_)) => (d * sc as f32) * q as f32 + m * mn as f32,
                };
                assert_eq!(row[k], want, "row {r} col {k}");
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
                Blob::Owned(
                    tmac::testing::layout::ggml::quantize(
                        tmac::testing::layout::ggml::GgmlType::Q8_0,
                        &w,
                    )
                    .unwrap(),
                ),
                None,
            )
            .unwrap()
        } else {
            Q8Matrix::quantize(rows, cols, &w).unwrap()
        };
        let group = if case % 4 < 2 { 32 } else { 1 << 20 };
        let act = random_activations(&mut rng, cols, group, Tables::Exact);
        let mut y_s = vec![0f32; rows];
        kernel::q8_gemv(
            Isa::SCALAR,
            &m,
            &act,
            &mut y_s,
            &Knobs::default_for(Isa::SCALAR),
        );
        for isa in simd_isas() {
            let mut y_v = vec![0f32; rows];
            kernel::q8_gemv(
                isa,
                &m,
                &act,
                &mut y_v,
                &tmac::testing::kernel::candidates(isa)[case % 12],
            );
            assert_eq!(
                y_v.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                y_s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "case {case}: {}",
                isa.name()
            );
        }
        // a batch (prefill): every input's outputs are one GEMV's, bit for bit; 1-11 inputs,
        // over the AVX-512 kernel's chunks of 4 pairs and their remainders
        let batch: Vec<Activations> = (0..1 + case % 11)
            .map(|_| random_activations(&mut rng, cols, group, Tables::Exact))
            .collect();
        for isa in std::iter::once(Isa::SCALAR).chain(simd_isas()) {
            let knobs = Knobs::default_for(isa);
            let mut ys = vec![0f32; batch.len() * rows];
            kernel::q8_gemm(isa, &m, &batch, &mut ys, &knobs);
            for (a, y) in batch.iter().zip(ys.chunks_exact(rows)) {
                let mut one = vec![0f32; rows];
                kernel::q8_gemv(Isa::SCALAR, &m, a, &mut one, &knobs);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&one), bits(y), "case {case}: batched {}", isa.name());
            }
        }
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            m.dequantize_row(r, &mut row);
            let exact: f64 = (0..cols)
                .map(|k| row[k] as f64 * act.quantized()[k] as f64 * act.scale_at(k) as f64)
                .sum();
            assert!(
                (y_s[r] as f64 - exact).abs() < 1e-3 * (1.0 + exact.abs()),
                "row {r}: {} vs {exact}",
                y_s[r]
            );
        }
    }
}

/// The batched kernels (code tiles and int8 dot products, for inputs quantized without tables
/// or with exact ones) give the exact tables' integers and every output of one GEMV per input
/// bit for bit; with int8 tables the batch runs the LUT GEMV itself.
#[test]
fn batched_gemm_equals_one_gemv_per_input() {
    let mut rng = Rng::new(31);
    for case in 0..60 {
        let c = random_case(&mut rng);
        let kind = [Tables::Exact, Tables::Int8][case % 3 / 2];
        // one activation scale per vector, or per super-block (the finest the kernels allow)
        let group = [1 << 20, c.int_group][case % 2];
        let xs: Vec<Vec<f32>> = (0..1 + case % 7)
            .map(|_| random_x(&mut rng, c.cols))
            .collect();
        let quantize = |tables: Option<Tables>| -> Vec<Activations> {
            xs.iter()
                .map(|x| {
                    let mut a = Activations::new();
                    a.quantize(x, group);
                    if let Some(t) = tables {
                        a.build_tables(t);
                    }
                    a
                })
                .collect()
        };
        let (acts, bare) = (quantize(Some(kind)), quantize(None));
        let mut want = Vec::new();
        let mut got = Vec::new();
        for isa in std::iter::once(Isa::SCALAR).chain(simd_isas()) {
            let knobs = Knobs::default_for(isa);
            let batches = if kind == Tables::Exact {
                vec![&acts, &bare]
            } else {
                vec![&acts]
            };
            for batch in batches {
                let mut ys = vec![0f32; batch.len() * c.rows];
                kernel::lut_gemm(isa, &c.m, batch, &mut ys, &knobs);
                for (a, y) in acts.iter().zip(ys.chunks_exact(c.rows)) {
                    let mut one = vec![0f32; c.rows];
                    kernel::lut_gemv(Isa::SCALAR, &c.m, a, &mut one, &knobs);
                    assert!(
                        one.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                        "case {case} {} {} bits {} group {}",
                        isa.name(),
                        kind.name(),
                        c.bits,
                        c.group
                    );
                }
            }
            if kind == Tables::Exact {
                for (a, b) in acts.iter().zip(&bare) {
                    kernel::lut_ints(Isa::SCALAR, &c.m, a, &mut want);
                    kernel::tile_ints(isa, &c.m, b, &mut got);
                    assert_eq!(want, got, "case {case} {} ints", isa.name());
                }
            }
        }
    }
}

/// The kernel API cannot be misused into undefined behaviour from safe code: an instruction set
/// this CPU lacks cannot be had, a matrix whose bytes do not fit its shape cannot be built, and
/// a GEMV on activations or an output too short for the matrix panics before any SIMD load.
#[test]
fn wrong_isa_or_short_matrix_is_refused() {
    let lacking = if cfg!(target_arch = "x86_64") {
        "neon"
    } else {
        "avx2"
    };
    assert!(Isa::from_name(lacking).is_none());
    assert!(Isa::from_name("scalar") == Some(Isa::SCALAR));
    assert!(Isa::all()
        .iter()
        .all(|i| Isa::from_name(i.name()) == Some(*i)));

    let (rows, cols) = (20, 72);
    let form = Form {
        bits: 4,
        group: 32,
        zero: Zero::Offset(8),
        ternary: false,
        sup: None,
    };
    let good = pack(
        rows,
        cols,
        4,
        32,
        Zero::Offset(8),
        false,
        |r, c| ((r + c) % 16) as u8,
        |_, _| (f16::ONE, f16::ZERO),
    );
    let (data, scales) = (good.data().to_vec(), good.scales().to_vec());
    let new = |d: &[u8], s: &[u8]| {
        LutMatrix::new(
            rows,
            cols,
            form,
            Blob::Owned(d.to_vec()),
            Blob::Owned(s.to_vec()),
        )
    };
    assert!(new(&data, &scales).is_ok());
    assert!(new(&data[1..], &scales).is_err(), "codes one byte short");
    assert!(
        new(&data, &scales[..scales.len() - 2]).is_err(),
        "scales short"
    );
    let mut inf = scales.clone();
    inf[..2].copy_from_slice(&f16::INFINITY.to_le_bytes());
    assert!(
        new(&inf, &scales).is_err() || new(&data, &inf).is_err(),
        "infinite scale"
    );
    let wide = Form { bits: 7, ..form };
    let m7 = LutMatrix::new(
        rows,
        cols,
        wide,
        Blob::Owned(data.clone()),
        Blob::Owned(scales),
    );
    assert!(m7.is_err(), "7-bit codes");
    assert!(Q8Matrix::new(rows, 64, Blob::Owned(vec![0; 10]), None).is_err());

    let mut rng = Rng::new(5);
    let knobs = Knobs::default_for(Isa::SCALAR);
    for isa in Isa::all() {
        let refused =
            |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
        let act = random_activations(&mut rng, cols, 32, Tables::Exact);
        let narrow = random_activations(&mut rng, cols - 16, 32, Tables::Exact);
        let mut unbuilt = Activations::new();
        unbuilt.quantize(&vec![1.0; cols], 32);
        let mut y = vec![0f32; rows];
        kernel::lut_gemv(isa, &good, &act, &mut y, &knobs); // the well-formed call runs
        assert!(refused(&|| kernel::lut_gemv(
            isa,
            &good,
            &narrow,
            &mut vec![0.0; rows],
            &knobs
        )));
        assert!(refused(&|| kernel::lut_gemv(
            isa,
            &good,
            &unbuilt,
            &mut vec![0.0; rows],
            &knobs
        )));
        assert!(refused(&|| kernel::lut_gemv(
            isa,
            &good,
            &act,
            &mut vec![0.0; rows - 1],
            &knobs
        )));
        assert!(refused(&|| kernel::lut_ints(
            isa,
            &good,
            &narrow,
            &mut Vec::new()
        )));
        // the batched kernels: a narrow input in the batch, or too short an output
        let mut bare = Activations::new();
        bare.quantize(&vec![1.0; cols - 16], 32);
        let two = [unbuilt_like(cols), bare];
        assert!(refused(&|| kernel::lut_gemm(
            isa,
            &good,
            &two,
            &mut vec![0.0; 2 * rows],
            &knobs
        )));
        assert!(refused(&|| kernel::lut_gemm(
            isa,
            &good,
            &two[..1],
            &mut vec![0.0; rows - 1],
            &knobs
        )));
        assert!(refused(&|| kernel::tile_ints(
            isa,
            &good,
            &two[1],
            &mut Vec::new()
        )));
        let q8 = Q8Matrix::quantize(rows, 64, &vec![0.5; rows * 64]).unwrap();
        let short = random_activations(&mut rng, 32, 32, Tables::Exact);
        assert!(refused(&|| kernel::q8_gemv(
            isa,
            &q8,
            &short,
            &mut vec![0.0; rows],
            &knobs
        )));
    }
}
