//! Tuning profiles: `tmac tune MODEL` times the kernel knobs on the machine at hand and saves the
//! fastest as a small text file, which the `tmac` tool (and a C app that asks) applies at load
//! (`kernel::from_env`). A profile made on another CPU (or for another instruction set) is
//! ignored with a warning.
//!
//! Where: $TMAC_PROFILE, else $XDG_CONFIG_HOME/tmac/profile, else ~/.config/tmac/profile.

use super::{Isa, Knobs};
use crate::kernel::linear::act_group;
use crate::kernel::lut::{Activations, Tables};
use crate::layout::linear::Linear;
use crate::model::Model;
use std::path::PathBuf;
use std::time::Instant;

pub fn profile_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TMAC_PROFILE") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("tmac").join("profile"))
}

/// A name for this CPU model, so a profile is not applied to another one.
pub fn cpu_id() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    if let Some(m) = field("model name") {
        return m;
    }
    match (field("CPU implementer"), field("CPU part")) {
        (Some(i), Some(p)) => format!("arm implementer {i} part {p}"),
        _ => format!("unknown {}", std::env::consts::ARCH),
    }
}

pub fn format_profile(isa: Isa, k: &Knobs) -> String {
    format!(
        "# tmac kernel profile, written by `tmac tune`\ncpu = {}\nisa = {}\nrow_tile = {}\nprefetch = {}\ntables = {}\n",
        cpu_id(),
        isa.name(),
        k.row_tile,
        k.prefetch,
        k.tables.name()
    )
}

/// Parse a profile; Err says why it does not apply here.
pub fn parse_profile(text: &str, isa: Isa) -> Result<Knobs, String> {
    let mut k = Knobs::default_for(isa);
    let (mut cpu, mut pisa) = (None, None);
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, v) = line
            .split_once('=')
            .ok_or_else(|| format!("bad line '{line}'"))?;
        let (key, v) = (key.trim(), v.trim());
        let num = || {
            v.parse::<usize>()
                .map_err(|_| format!("{key} = '{v}' is not a number"))
        };
        match key {
            "cpu" => cpu = Some(v.to_string()),
            "isa" => pisa = Some(v.to_string()),
            "row_tile" => k.row_tile = num()?.clamp(1, 2),
            "prefetch" => k.prefetch = num()?.min(1 << 16),
            "tables" => {
                k.tables = Tables::from_name(v)
                    .ok_or_else(|| format!("tables = '{v}' is not exact or int8"))?
            }
            _ => return Err(format!("unknown key '{key}'")),
        }
    }
    if cpu.as_deref() != Some(cpu_id().as_str()) {
        return Err(format!(
            "it was made for CPU '{}', this is '{}'",
            cpu.unwrap_or_default(),
            cpu_id()
        ));
    }
    if pisa.as_deref() != Some(isa.name()) {
        return Err(format!(
            "it was made for the {} kernels, this process uses {}",
            pisa.unwrap_or_default(),
            isa.name()
        ));
    }
    Ok(k)
}

/// The saved profile for this CPU and where it is, if there is a usable one; why one is not
/// usable goes to `warn`.
pub fn load_profile(isa: Isa, warn: &mut dyn FnMut(String)) -> Option<(Knobs, PathBuf)> {
    let path = profile_path()?;
    let text = std::fs::read_to_string(&path).ok()?;
    match parse_profile(&text, isa) {
        Ok(k) => Some((k, path)),
        Err(why) => {
            warn(format!(
                "ignoring tuning profile {}: {why}; using defaults",
                path.display()
            ));
            None
        }
    }
}

/// The candidates `tune` tries on `isa`: every prefetch distance, both row tiles where the
/// kernels have them (AVX2, NEON), both kinds of tables.
pub fn candidates(isa: Isa) -> Vec<Knobs> {
    let row_tiles: &[usize] = if isa == Isa::Scalar { &[1] } else { &[1, 2] };
    let mut v = Vec::new();
    for tables in [Tables::Exact, Tables::Int8] {
        for &row_tile in row_tiles {
            for prefetch in [0, 512, 1024, 2048, 4096, 8192, 16384] {
                v.push(Knobs {
                    row_tile,
                    prefetch,
                    tables,
                });
            }
        }
    }
    v
}

/// Time every candidate on the model's own matrices, all of them once per round as a decoded
/// token streams them: the median over `rounds` rounds, candidates interleaved within each
/// round so drift in the machine's speed hits all of them alike. Returns (knobs, median
/// seconds) per candidate.
pub fn tune(model: &Model, isa: Isa, rounds: usize) -> Vec<(Knobs, f64)> {
    let mats: Vec<&Linear> = model
        .weights
        .layers
        .iter()
        .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down])
        .chain(std::iter::once(&model.weights.output))
        .filter(|m| !matches!(m, Linear::F32 { .. }))
        .collect();
    // one prepared input per matrix, with each kind of tables
    let inputs: Vec<[Activations; 2]> = mats
        .iter()
        .map(|m| {
            let x: Vec<f32> = (0..m.cols())
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            [Tables::Exact, Tables::Int8].map(|kind| {
                let mut a = Activations::new();
                a.quantize(&x, act_group(&[m], m.cols()));
                a.build_tables(kind);
                a
            })
        })
        .collect();
    let cands = candidates(isa);
    let mut times = vec![Vec::new(); cands.len()];
    let mut y = vec![0f32; mats.iter().map(|m| m.rows()).max().unwrap_or(0)];
    for _ in 0..rounds.max(1) {
        for (c, k) in cands.iter().enumerate() {
            let t = Instant::now();
            for (m, a) in mats.iter().zip(&inputs) {
                let a = &a[(k.tables == Tables::Int8) as usize];
                match m {
                    Linear::Lut(m) => super::lut_gemv(isa, m, a, &mut y, k),
                    Linear::Q8(m) => super::q8_gemv(isa, m, a, &mut y, k),
                    Linear::Iq4(m) => super::iq4_gemv(isa, m, a, &mut y, k),
                    Linear::F32 { .. } => {}
                }
            }
            times[c].push(t.elapsed().as_secs_f64());
        }
    }
    cands
        .into_iter()
        .zip(times)
        .map(|(k, mut t)| {
            t.sort_by(f64::total_cmp);
            (k, t[t.len() / 2])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_round_trip_and_refuse_other_cpus() {
        let k = Knobs {
            row_tile: 2,
            prefetch: 256,
            tables: Tables::Int8,
        };
        let text = format_profile(Isa::Scalar, &k);
        assert_eq!(parse_profile(&text, Isa::Scalar), Ok(k));
        let other = text.replace(&cpu_id(), "Some Other CPU");
        assert!(parse_profile(&other, Isa::Scalar)
            .unwrap_err()
            .contains("Some Other CPU"));
        assert!(parse_profile(&text, Isa::Avx2)
            .unwrap_err()
            .contains("kernels"));
        assert!(parse_profile("row_tile = x", Isa::Scalar).is_err());
        assert!(parse_profile(&text.replace("int8", "int4"), Isa::Scalar)
            .unwrap_err()
            .contains("int4"));
    }
}
