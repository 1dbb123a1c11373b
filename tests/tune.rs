//! Tuning profiles through the command line: `tmac tune` writes one, `tmac info` reports the
//! knobs in use, TMAC_TABLES overrides the tables, and a profile made for another CPU (or one
//! that does not parse) is ignored with a warning, leaving the defaults.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tune");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// (stdout, stderr) of `tmac ARGS` with the profile at `profile` and extra environment.
fn tmac(args: &[&str], profile: &Path, env: &[(&str, &str)]) -> (String, String) {
    let mut c = tmac_cli();
    c.args(args)
        .env("TMAC_PROFILE", profile)
        .env_remove("TMAC_TABLES");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "tmac {args:?}: {}", text(&out.stderr));
    (text(&out.stdout), text(&out.stderr))
}

fn kernel_line(info: &str) -> &str {
    info.lines().find(|l| l.starts_with("kernel:")).unwrap()
}

#[test]
fn tune_writes_a_profile_that_info_reports() {
    let model = smollm2();
    let model = model.to_str().unwrap();
    let profile = scratch("profile");
    let _ = std::fs::remove_file(&profile);
    let (out, _) = tmac(&["tune", model, "-r", "1"], &profile, &[]);
    // both kinds of tables were timed, but without --int8-tables the exact ones are kept
    assert!(
        out.contains("tables int8") && out.contains("tables exact"),
        "{out}"
    );
    let saved = std::fs::read_to_string(&profile).unwrap();
    assert!(saved.contains("tables = exact"), "{saved}");
    let knob = |key: &str| {
        let line = saved.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_once('=').unwrap().1.trim().to_string()
    };
    let (info, err) = tmac(&["info", model], &profile, &[]);
    let line = kernel_line(&info);
    assert!(
        line.contains(&format!("profile {}", profile.display())),
        "{line}"
    );
    assert!(
        line.contains(&format!("row_tile {} ", knob("row_tile"))),
        "{line}"
    );
    assert!(
        line.contains(&format!("prefetch {} ", knob("prefetch"))),
        "{line}"
    );
    assert!(line.contains("tables exact"), "{line}");
    assert!(!err.contains("ignoring"), "{err}");

    // the environment picks the tables whatever the profile says
    let (info, _) = tmac(&["info", model], &profile, &[("TMAC_TABLES", "int8")]);
    assert!(kernel_line(&info).contains("tables int8"), "{info}");

    // a profile made on another CPU, or one with a bad value, is ignored with a warning
    let cpu = saved.lines().find(|l| l.starts_with("cpu")).unwrap();
    let bad = [
        (saved.replace(cpu, "cpu = Some Other CPU"), "Some Other CPU"),
        (saved.replace("tables = exact", "tables = int4"), "int4"),
    ];
    for (text, why) in bad {
        std::fs::write(&profile, text).unwrap();
        let (info, err) = tmac(&["info", model], &profile, &[]);
        assert!(
            err.contains("ignoring tuning profile") && err.contains(why),
            "{err}"
        );
        let line = kernel_line(&info);
        assert!(
            line.contains("tables exact") && line.contains("defaults"),
            "{line}"
        );
    }
}

/// `tmac bench --json` names the tables it ran with (make bench checks every int8 row by it).
#[test]
fn bench_reports_its_tables() {
    let model = smollm2();
    let model = model.to_str().unwrap();
    let profile = scratch("no-profile");
    let _ = std::fs::remove_file(&profile);
    for (env, want) in [
        (None, "exact"),
        (Some("int8"), "int8"),
        (Some("exact"), "exact"),
    ] {
        let env: Vec<(&str, &str)> = env.map(|v| ("TMAC_TABLES", v)).into_iter().collect();
        let args = ["bench", model, "-p", "2", "-n", "2", "-r", "1", "--json"];
        let (out, _) = tmac(&args, &profile, &env);
        assert!(
            out.contains(&format!("\"tables\": \"{want}\"")),
            "{env:?}: {out}"
        );
    }
}
