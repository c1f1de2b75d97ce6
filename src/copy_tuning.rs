//! glibc's copy routine on AMD Zen 3 and later: large responses ask for vector copies.
//!
//! glibc 2.36 (Debian 12's), like other releases from before its fix for bug 30994, copies
//! blocks from about 2 KiB up with `rep movsb`, which Zen 3 and later cores run many times
//! slower when the destination is not aligned. rustls copies every TLS record's plaintext just
//! after the record's 5-byte header, so a large response pays it on every record: a third of
//! rampart's CPU serving a 1 MiB file on the AMD EPYC bench host (docs/operations.md, "Large
//! responses on AMD hosts").
//!
//! The cure is a glibc tunable, and glibc reads tunables once, when the process starts. So on
//! such a CPU, unless `GLIBC_TUNABLES` already names the setting, `rampart run` and `rampart
//! proxy` execute their own binary again, at once, with it added: same process id, arguments
//! and environment, before anything else is opened. Setting the tunable yourself, to any value,
//! keeps this from happening (`glibc.cpu.x86_rep_movsb_threshold=2112` is glibc's default).
//! Never in secure-execution mode (setuid, or file capabilities such as `cap_net_bind_service`):
//! glibc drops the variable there at every start, so executing again would loop.

use std::ffi::{OsStr, OsString};

/// The setting: copies up to 4 MiB with glibc's vector loop rather than `rep movsb`.
pub const SETTING: &str = "glibc.cpu.x86_rep_movsb_threshold=4194304";
const KEY: &str = "glibc.cpu.x86_rep_movsb_threshold";

/// Whether this CPU (`/proc/cpuinfo`'s text) is an AMD Zen 3 or later core: vendor
/// `AuthenticAMD`, family 25 (Zen 3 and 4) or above (Zen 5 is 26).
pub fn is_amd_zen3_or_later(cpuinfo: &str) -> bool {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim())
        })
    };
    let amd = field("vendor_id") == Some("AuthenticAMD");
    let family = field("cpu family").and_then(|family| family.parse::<u32>().ok());
    amd && family.is_some_and(|family| family >= 25)
}

/// The `GLIBC_TUNABLES` value to start again with, on a CPU that wants the setting; `None` when
/// the variable already names it (the user's choice, the container image's, or this process
/// after its own re-execution).
pub fn tunables_to_add(current: Option<&OsStr>) -> Option<OsString> {
    if current.is_some_and(|value| value.to_string_lossy().contains(KEY)) {
        return None;
    }
    Some(match current {
        Some(current) if !current.is_empty() => {
            let mut value = current.to_os_string();
            value.push(":");
            value.push(SETTING);
            value
        }
        _ => OsString::from(SETTING),
    })
}

/// Set in the environment of the second execution: if the setting did not survive it, there is
/// no third.
const EXECUTED_AGAIN: &str = "RAMPART_EXECUTED_FOR_TUNABLES";

/// What happened at start, for the log once it is set up.
pub enum Outcome {
    /// Not an AMD Zen 3+ CPU, or not a glibc build: nothing to do.
    NotNeeded,
    /// The setting is in `GLIBC_TUNABLES` (set by the user, the image or this process).
    InEffect,
    /// Started setuid, setgid or with file capabilities: glibc ignores `GLIBC_TUNABLES` then (and
    /// takes it out of the environment), so executing again could not help.
    SecureExecution,
    /// Executed again with the setting, and it was gone from the environment all the same.
    Dropped,
    /// The CPU wants it but the binary could not be executed again; large responses run slower.
    ExecFailed(std::io::Error),
}

/// Whether the kernel started this process in secure-execution mode: `AT_SECURE` (23) non-zero
/// in its auxiliary vector (`/proc/self/auxv`: pairs of native 64-bit words, key and value).
pub fn is_secure_execution(auxv: &[u8]) -> bool {
    const AT_SECURE: u64 = 23;
    let word = |bytes: &[u8]| bytes.try_into().map_or(0, u64::from_ne_bytes);
    auxv.chunks_exact(16)
        .any(|pair| word(&pair[..8]) == AT_SECURE && word(&pair[8..]) != 0)
}

/// Executes this binary again with the setting added when the CPU wants it; returns only when it
/// does not (or when that fails). Call it first thing, before any thread or file is opened.
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
pub fn reexec_if_wanted() -> Outcome {
    use std::os::unix::process::CommandExt;

    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return Outcome::NotNeeded;
    };
    if !is_amd_zen3_or_later(&cpuinfo) {
        return Outcome::NotNeeded;
    }
    let current = std::env::var_os("GLIBC_TUNABLES");
    let Some(tunables) = tunables_to_add(current.as_deref()) else {
        return Outcome::InEffect;
    };
    // glibc would drop the variable again on every start: that would loop forever.
    if std::fs::read("/proc/self/auxv").is_ok_and(|auxv| is_secure_execution(&auxv)) {
        return Outcome::SecureExecution;
    }
    if std::env::var_os(EXECUTED_AGAIN).is_some() {
        return Outcome::Dropped;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => return Outcome::ExecFailed(err),
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    command
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(EXECUTED_AGAIN, "1");
    // `exec` returns only on failure.
    Outcome::ExecFailed(command.exec())
}

/// Other platforms: glibc's x86-64 tunable does not apply.
#[cfg(not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")))]
pub fn reexec_if_wanted() -> Outcome {
    Outcome::NotNeeded
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN3: &str =
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n\
                        processor\t: 1\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n";
    const ZEN2: &str = "vendor_id\t: AuthenticAMD\ncpu family\t: 23\n";
    const INTEL: &str = "vendor_id\t: GenuineIntel\ncpu family\t: 6\n";

    fn auxv(pairs: &[(u64, u64)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|(key, value)| [key.to_ne_bytes(), value.to_ne_bytes()])
            .flatten()
            .collect()
    }

    #[test]
    fn secure_execution_is_at_secure_set() {
        assert!(is_secure_execution(&auxv(&[(6, 4096), (23, 1), (0, 0)])));
        assert!(!is_secure_execution(&auxv(&[(6, 4096), (23, 0), (0, 0)])));
        assert!(!is_secure_execution(&auxv(&[(6, 23), (0, 0)])));
        assert!(!is_secure_execution(&[23, 0, 0]));
        // This test process was not started setuid or with capabilities.
        let own = std::fs::read("/proc/self/auxv").unwrap_or_default();
        assert!(!own.is_empty() && !is_secure_execution(&own));
    }

    #[test]
    fn zen3_and_later_only() {
        assert!(is_amd_zen3_or_later(ZEN3));
        assert!(is_amd_zen3_or_later(
            "vendor_id : AuthenticAMD\ncpu family : 26\n"
        ));
        assert!(!is_amd_zen3_or_later(ZEN2));
        assert!(!is_amd_zen3_or_later(INTEL));
        assert!(!is_amd_zen3_or_later(""));
        assert!(!is_amd_zen3_or_later(
            "vendor_id : AuthenticAMD\ncpu family : x\n"
        ));
    }

    #[test]
    fn the_setting_is_added_to_what_is_there() {
        assert_eq!(tunables_to_add(None), Some(OsString::from(SETTING)));
        assert_eq!(
            tunables_to_add(Some(OsStr::new(""))),
            Some(OsString::from(SETTING))
        );
        assert_eq!(
            tunables_to_add(Some(OsStr::new("glibc.malloc.check=0"))),
            Some(OsString::from(format!("glibc.malloc.check=0:{SETTING}")))
        );
    }

    #[test]
    fn a_setting_already_there_is_kept() {
        for set in [
            SETTING,
            "glibc.cpu.x86_rep_movsb_threshold=2112",
            "a=1:glibc.cpu.x86_rep_movsb_threshold=8192",
        ] {
            assert_eq!(tunables_to_add(Some(OsStr::new(set))), None, "{set}");
        }
    }
}
