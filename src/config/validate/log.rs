//! `[log]`: the access log and the level of the other lines.

#[allow(unused_imports)]
use super::*;

pub(super) fn log_settings(v: &mut Validator<'_>, log: &model::Log) -> LogSettings {
    // A level ("info") or a tracing filter ("warn,rampart=debug"). A lone word is only taken as
    // a level: `EnvFilter` would read a typo like "verbose" as a target name and log nothing.
    let level = log.level.as_str();
    let valid = if level.trim().is_empty() {
        false
    } else if level.contains(['=', ',', '[']) {
        tracing_subscriber::EnvFilter::builder()
            .parse(level)
            .is_ok()
    } else {
        level.parse::<tracing::level_filters::LevelFilter>().is_ok()
    };
    if !valid {
        v.near(
            0..0,
            "log.level",
            "expected trace, debug, info, warn, error, off, or a filter like \"warn,rampart=debug\"",
        );
    }
    LogSettings {
        access: log.access,
        log_query: log.log_query,
        level: log.level.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;

    #[test]
    fn level_and_access() {
        let snapshot = load(&with("[log]\naccess = false\nlevel = \"debug\"")).unwrap();
        assert!(!snapshot.log.access);
        assert_eq!(snapshot.log.level, "debug");
        assert_eq!(error_keys("[log]\nlevel = \"loud\""), ["log.level"]);
    }
}
