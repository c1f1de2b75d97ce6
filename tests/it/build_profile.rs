//! The shipped profile (tools/pgo) and the rustc wrapper that applies it
//! (tools/rustc-wrapper.sh, cargo's `build.rustc-wrapper`): optimized crates get
//! `-Cprofile-use` only from the rustc that recorded the profile, for its host; everything else
//! reaches rustc exactly as cargo wrote it.
//!
//! The wrapper is run on a copy of itself beside a profile of the test's making, with a stand-in
//! rustc that answers `-vV` as told and otherwise prints what it was given; the shipped profile
//! itself is read by the real rustc.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const RECORDED: &str = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\n\
                        commit-hash: 59807616e1fa2540724bfbac14d7976d7e4a3860\n\
                        commit-date: 2026-04-14\nhost: x86_64-unknown-linux-gnu\n\
                        release: 1.95.0\nLLVM version: 22.1.2\n";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the wrapper in `tools/` of a temporary folder, its `tools/pgo` holding a profile
/// (when `profile`) recorded by `RECORDED`, and a stand-in rustc whose `-vV` prints `version`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(profile: bool, version: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let tools = dir.path().join("tools");
        fs::create_dir_all(tools.join("pgo")).unwrap();
        fs::copy(
            repo().join("tools/rustc-wrapper.sh"),
            tools.join("rustc-wrapper.sh"),
        )
        .unwrap();
        if profile {
            fs::write(
                tools.join("pgo/rampart.profdata"),
                b"not read by the stand-in",
            )
            .unwrap();
        }
        fs::write(tools.join("pgo/rustc-vV.txt"), RECORDED).unwrap();
        fs::write(tools.join("pgo/trained-at.txt"), "0123456789ab\n").unwrap();
        fs::write(dir.path().join("version.txt"), version).unwrap();
        let fake = dir.path().join("rustc");
        fs::write(
            &fake,
            format!(
                "#!/bin/sh\n\
                 if [ \"$1\" = -vV ]; then cat '{}'; exit 0; fi\n\
                 echo \"RAMPART_PGO=${{RAMPART_PGO-unset}}\"\n\
                 for arg in \"$@\"; do echo \"arg:$arg\"; done\n",
                dir.path().join("version.txt").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        Setup { dir }
    }

    fn profile(&self) -> PathBuf {
        self.dir.path().join("tools/pgo/rampart.profdata")
    }

    /// Runs the wrapper as cargo would: the rustc's path, then rustc's arguments. Returns what
    /// the stand-in saw: `RAMPART_PGO` and its arguments.
    fn compile<S: AsRef<str>>(&self, args: &[S]) -> (String, Vec<String>) {
        let out = Command::new("sh")
            .arg(self.dir.path().join("tools/rustc-wrapper.sh"))
            .arg(self.dir.path().join("rustc"))
            .args(args.iter().map(AsRef::as_ref))
            .env_remove("RAMPART_PGO")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let mut lines = stdout.lines();
        let pgo = lines
            .next()
            .and_then(|l| l.strip_prefix("RAMPART_PGO="))
            .unwrap()
            .to_string();
        let args = lines
            .map(|l| l.strip_prefix("arg:").unwrap().to_string())
            .collect();
        (pgo, args)
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

const RELEASE: &[&str] = &[
    "--crate-name",
    "hyper",
    "--edition=2021",
    "src/lib.rs",
    "-C",
    "opt-level=3",
    "-C",
    "embed-bitcode=no",
    "--cfg",
    "feature=\"http1 server\"",
];

#[test]
fn an_optimized_crate_from_the_recording_rustc_gets_the_shipped_profile() {
    let setup = Setup::new(true, RECORDED);
    let (pgo, args) = setup.compile(RELEASE);
    let mut expected = strings(RELEASE);
    expected.push(format!("-Cprofile-use={}", setup.profile().display()));
    assert_eq!(args, expected, "arguments kept as given, the profile last");
    assert_eq!(
        pgo,
        "profile-guided by tools/pgo/rampart.profdata (trained at 0123456789ab)"
    );

    // Naming the host as the target changes nothing.
    let mut for_host = strings(RELEASE);
    for_host.extend(strings(&["--target", "x86_64-unknown-linux-gnu"]));
    let (_, args) = setup.compile(&for_host);
    assert_eq!(
        args.last().unwrap(),
        &format!("-Cprofile-use={}", setup.profile().display())
    );
}

#[test]
fn debug_builds_reach_rustc_untouched() {
    let setup = Setup::new(true, RECORDED);
    for args in [
        &["--crate-name", "rampart", "src/lib.rs", "-C", "debuginfo=1"][..],
        &["--crate-name", "rampart", "-C", "opt-level=0", "src/lib.rs"][..],
        &["--crate-name", "build_script_build", "-C", "opt-level=0"][..],
    ] {
        let (pgo, seen) = setup.compile(args);
        assert_eq!(seen, strings(args));
        assert_eq!(pgo, "unset", "a debug build carries no decision");
    }
}

#[test]
fn another_rustc_or_target_or_a_missing_profile_builds_without_it_and_says_why() {
    let other = RECORDED.replace("1.95.0", "1.96.0");
    let (pgo, args) = Setup::new(true, &other).compile(RELEASE);
    assert_eq!(args, strings(RELEASE));
    assert_eq!(
        pgo,
        "not profile-guided: tools/pgo/rampart.profdata was recorded by rustc 1.95.0, not this one"
    );

    let mut cross = strings(RELEASE);
    cross.push("--target=aarch64-unknown-linux-gnu".into());
    let (pgo, args) = Setup::new(true, RECORDED).compile(&cross);
    assert_eq!(args, cross);
    assert_eq!(
        pgo,
        "not profile-guided: tools/pgo/rampart.profdata was recorded for another target"
    );

    let (pgo, args) = Setup::new(false, RECORDED).compile(RELEASE);
    assert_eq!(args, strings(RELEASE));
    assert_eq!(pgo, "not profile-guided: tools/pgo holds no profile");
}

#[test]
fn a_build_naming_its_own_profile_keeps_it_alone() {
    let setup = Setup::new(true, RECORDED);
    for (flag, said) in [
        (
            "-Cprofile-generate=/tmp/raw",
            "instrumented to record a profile (tools/pgo-build.sh's training build)",
        ),
        (
            "-Cprofile-use=/tmp/other.profdata",
            "profile-guided by the profile its RUSTFLAGS named",
        ),
    ] {
        let mut given = strings(RELEASE);
        given.push(flag.into());
        let (pgo, args) = setup.compile(&given);
        assert_eq!(args, given, "no second profile added");
        assert_eq!(pgo, said);
    }
}

/// The committed profile is one the real rustc reads: an optimized build with it succeeds (a
/// truncated file, a Git LFS pointer or another LLVM's format fails). Checked with the rustc
/// that recorded it; any other must be told so by the wrapper (the test above).
#[test]
fn the_shipped_profile_is_read_by_the_rustc_that_recorded_it() {
    let pgo = repo().join("tools/pgo");
    let recorded = fs::read_to_string(pgo.join("rustc-vV.txt")).expect("tools/pgo/rustc-vV.txt");
    let trained_at = fs::read_to_string(pgo.join("trained-at.txt")).expect("trained-at.txt");
    assert!(trained_at.trim().len() >= 12, "{trained_at:?}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let here = Command::new(&rustc).arg("-vV").output().unwrap();
    if here.stdout != recorded.as_bytes() {
        eprintln!("not the rustc that recorded tools/pgo: its profile is not read here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("lib.rs");
    fs::write(
        &source,
        "pub fn add(a: u64, b: u64) -> u64 { a.wrapping_add(b) }\n",
    )
    .unwrap();
    let out = Command::new(&rustc)
        .args([
            "--crate-type",
            "lib",
            "--crate-name",
            "probe",
            "-C",
            "opt-level=3",
        ])
        .arg(format!(
            "-Cprofile-use={}",
            pgo.join("rampart.profdata").display()
        ))
        .arg("--out-dir")
        .arg(dir.path())
        .arg(&source)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("profile"),
        "rustc complained about the profile: {stderr}"
    );
}

/// The image's build stage runs the Rust release that recorded the profile, or the image would
/// ship the plain release build without anyone noticing.
#[test]
fn the_container_image_builds_with_the_rustc_that_recorded_the_profile() {
    let recorded = fs::read_to_string(repo().join("tools/pgo/rustc-vV.txt")).unwrap();
    let release = recorded
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .expect("a release line");
    let dockerfile = fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let from = dockerfile
        .lines()
        .find(|l| l.starts_with("FROM rust:"))
        .expect("a rust build stage");
    assert_eq!(
        from,
        format!("FROM rust:{release}-slim-bookworm AS build"),
        "re-recorded the profile with another Rust? Move the Dockerfile's build stage to it"
    );
}
