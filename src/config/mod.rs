//! The config file: `model` (raw serde), `units` (durations, sizes, rates), `source` (errors
//! with file, line and key), `validate` (model → runtime [`Snapshot`]).

pub mod diff;
pub mod env;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
pub mod model;
pub mod sidecar;
pub mod source;
pub mod units;
pub mod validate;
pub mod watch;

use std::path::Path;

pub use source::{ConfigError, ConfigErrors, Source};
pub use validate::MissingCert;

use crate::snapshot::Snapshot;

/// Reads, parses and validates a config file; a missing development certificate is generated.
pub fn load_file(path: &Path) -> Result<Snapshot, ConfigErrors> {
    load_file_with(path, MissingCert::Generate)
}

pub fn load_file_with(path: &Path, missing_cert: MissingCert) -> Result<Snapshot, ConfigErrors> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigErrors(vec![ConfigError {
            file: label.clone(),
            line: 0,
            column: 0,
            key: None,
            message: format!("cannot read the config file: {err}"),
        }])
    })?;
    load_source(Source::new(label, text), Some(path), missing_cert)
}

/// Parses and validates config text (tests, `rampart proxy`); `label` names it in errors.
pub fn load_str(text: &str, label: &str) -> Result<Snapshot, ConfigErrors> {
    load_str_with(text, label, MissingCert::Generate)
}

/// Validates a config built in code (`rampart proxy`); `label` names it in errors.
pub fn load_model(
    file: model::File,
    label: &str,
    missing_cert: MissingCert,
) -> Result<Snapshot, ConfigErrors> {
    let source = Source::new(label, String::new());
    validate::validate(&source, file, None, missing_cert)
}

pub fn load_str_with(
    text: &str,
    label: &str,
    missing_cert: MissingCert,
) -> Result<Snapshot, ConfigErrors> {
    load_source(Source::new(label, text.to_string()), None, missing_cert)
}

/// `${NAME}` expanded from the environment (read now, at each load), then parsed and validated;
/// values from the environment are hidden in every error and warning.
fn load_source(
    source: Source,
    path: Option<&Path>,
    missing_cert: MissingCert,
) -> Result<Snapshot, ConfigErrors> {
    let (source, redactions) = env::expand(&source, &env::from_process)?;
    let file = source.parse().map_err(|e| redactions.errors(e))?;
    let mut snapshot =
        validate::validate(&source, file, path, missing_cert).map_err(|e| redactions.errors(e))?;
    for warning in &mut snapshot.warnings {
        *warning = redactions.apply(warning);
    }
    Ok(snapshot)
}
