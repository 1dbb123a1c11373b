//! Settings read from the environment and the tuning profile, at the edge of the library: the
//! `tmac` tool applies them, and a C app that asks (`TMAC_FLAG_READ_ENV`); nothing below reads
//! the environment. `tmac tune MODEL` times the kernel knobs on the machine at hand and saves
//! the fastest as a small text file; a profile made on another CPU (or for another instruction
//! set) is ignored with a warning.
//!
//! Where: $TMAC_PROFILE, else $XDG_CONFIG_HOME/tmac/profile, else ~/.config/tmac/profile.

use crate::kernel::lut::Tables;
use crate::kernel::{self, Isa, Knobs};
use std::path::PathBuf;

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
fn parse_profile(text: &str, isa: Isa) -> Result<Knobs, String> {
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
fn load_profile(isa: Isa, warn: &mut dyn FnMut(String)) -> Option<(Knobs, PathBuf)> {
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

/// Kernel settings read from the environment, as the `tmac` tool applies them (and a C app
/// that asks with `TMAC_FLAG_READ_ENV`); the library reads none of this by itself.
pub struct EnvSettings {
    pub isa: Isa,
    pub knobs: Knobs,
    /// The tuning profile the knobs came from, if one applied.
    pub profile: Option<std::path::PathBuf>,
}

/// `TMAC_KERNEL=scalar|avx2|avx512|neon`, the tuning profile saved by `tmac tune` for this CPU
/// (`TMAC_PROFILE`, else `$XDG_CONFIG_HOME` or `$HOME/.config`, `tmac/profile`), and
/// `TMAC_TABLES=exact|int8`. What cannot be applied is said to `warn` and left at its default.
pub fn from_env(warn: &mut dyn FnMut(String)) -> EnvSettings {
    let isa = match std::env::var("TMAC_KERNEL") {
        Ok(name) => match Isa::from_name(&name) {
            Some(i) => i,
            _ => {
                warn(format!(
                    "TMAC_KERNEL={name} is not available on this CPU; using {}",
                    kernel::isa().name()
                ));
                kernel::isa()
            }
        },
        Err(_) => kernel::isa(),
    };
    let (mut knobs, profile) = match load_profile(isa, warn) {
        Some((k, path)) => (k, Some(path)),
        None => (Knobs::default_for(isa), None),
    };
    if let Ok(name) = std::env::var("TMAC_TABLES") {
        match Tables::from_name(&name) {
            Some(t) => knobs.tables = t,
            None => warn(format!("TMAC_TABLES={name} is not exact or int8; ignored")),
        }
    }
    EnvSettings {
        isa,
        knobs,
        profile,
    }
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
        let text = format_profile(Isa::SCALAR, &k);
        assert_eq!(parse_profile(&text, Isa::SCALAR), Ok(k));
        let other = text.replace(&cpu_id(), "Some Other CPU");
        assert!(parse_profile(&other, Isa::SCALAR)
            .unwrap_err()
            .contains("Some Other CPU"));
        let for_avx2 = text.replace("isa = scalar", "isa = avx2");
        assert!(parse_profile(&for_avx2, Isa::SCALAR)
            .unwrap_err()
            .contains("kernels"));
        assert!(parse_profile("row_tile = x", Isa::SCALAR).is_err());
        assert!(parse_profile(&text.replace("int8", "int4"), Isa::SCALAR)
            .unwrap_err()
            .contains("int4"));
    }
}
