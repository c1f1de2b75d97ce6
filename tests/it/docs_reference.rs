//! The configuration reference (`docs/configuration.md`) cannot fall behind the config model:
//! every key the model accepts is named in it, and its complete example passes `rampart check`.
//!
//! The keys are not listed by hand: they are discovered from the model itself, by asking the
//! parser about an unknown key in each section (serde's `deny_unknown_fields` answers with every
//! field it expects) and then about each field as a table, recursively. A key added to the model
//! and not to the reference fails this test.

use std::collections::BTreeSet;
use std::path::Path;

use rampart::config::source::Source;

const PROBE: &str = "zz_probe";

/// The message of the first error for `text`, if any.
fn first_error(text: &str) -> Option<String> {
    match Source::new("probe.toml", text.to_string()).parse() {
        Ok(_) => None,
        Err(errors) => errors.0.first().map(|e| e.to_string()),
    }
}

/// The inline TOML putting `inner` at `path` (`path` = keys; `[]` marks an array of tables,
/// `*` a map entry).
fn nest(path: &[String], inner: &str) -> String {
    let mut value = inner.to_string();
    for key in path.iter().rev() {
        value = match key.as_str() {
            "[]" => format!("[{value}]"),
            "*" => format!("{{ name1 = {value} }}"),
            key => format!("{{ {key} = {value} }}"),
        };
    }
    value
}

/// The fields serde expects where `value` stands, if the error lists them.
fn expected_fields(message: &str) -> Option<Vec<String>> {
    let list = message.split("expected one of ").nth(1)?;
    Some(
        list.split(", ")
            .map(|field| field.trim().trim_matches('`').to_string())
            .collect(),
    )
}

/// Every key path under `path`, as `a.b.c` (array and map levels left out).
fn discover(path: Vec<String>, found: &mut BTreeSet<String>) {
    if path.len() > 6 {
        return;
    }
    // The top level is the file itself; below it, a probe value at `path`.
    let text = match path.split_first() {
        None => format!("{PROBE} = 1\n"),
        Some((first, rest)) => format!("{first} = {}\n", nest(rest, &format!("{{ {PROBE} = 1 }}"))),
    };
    let Some(message) = first_error(&text) else {
        return;
    };
    if let Some(fields) = expected_fields(&message) {
        for field in fields {
            let mut child = path.clone();
            child.push(field);
            let dotted: Vec<&str> = child
                .iter()
                .map(String::as_str)
                .filter(|k| *k != "[]" && *k != "*")
                .collect();
            if found.insert(dotted.join(".")) {
                discover(child, found);
            }
        }
        return;
    }
    // Not a struct here: an array of tables, or a map of them, or a leaf.
    if path.last().is_some_and(|k| k != "[]" && k != "*") {
        if message.contains("expected a sequence") {
            let mut child = path.clone();
            child.push("[]".into());
            discover(child, found);
        } else if message.contains("expected struct")
            || message.contains("invalid type: integer") && message.contains(PROBE)
        {
            let mut child = path.clone();
            child.push("*".into());
            discover(child, found);
        }
    }
}

fn reference() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn every_key_of_the_model_is_in_the_reference() {
    let mut keys = BTreeSet::new();
    discover(Vec::new(), &mut keys);
    // The discovery itself must work, or this test would pass on nothing.
    for known in [
        "listen.https",
        "upstreams.servers",
        "routes.path",
        "routes.static.root",
    ] {
        assert!(
            keys.contains(known),
            "{known} not discovered; found {keys:#?}"
        );
    }
    let doc = reference();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|dotted| {
            let key = dotted.rsplit('.').next().unwrap_or(dotted);
            !(doc.contains(&format!("`{key}`"))
                || doc.contains(&format!("[{dotted}]"))
                || doc.contains(&format!("[{key}]"))
                || doc.contains(&format!("[{key}."))
                || doc.contains(&format!(".{key}]"))
                || doc.contains(&format!("{key} ="))
                || doc.contains(&format!("`{key} ="))
                || doc.contains(&format!("{dotted}`")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "keys the config accepts but docs/configuration.md never names: {missing:#?}"
    );
}

#[test]
fn the_references_complete_example_passes_check() {
    let doc = reference();
    let marker = "<!-- complete example: checked by tests/it/docs_reference.rs -->";
    let after = doc
        .split(marker)
        .nth(1)
        .expect("docs/configuration.md has the complete example's marker");
    let toml = after
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a ```toml block after the marker");
    let dir = tempfile::tempdir().unwrap();
    // The example's certificate paths are relative: the check runs where they can be created.
    let config = dir.path().join("rampart.toml");
    std::fs::write(&config, toml).unwrap();
    for root in ["static", "media"] {
        std::fs::create_dir(dir.path().join(root)).unwrap();
    }
    let out = super::common::binary::rampart(dir.path())
        .args(["cert", "--host", "localhost", "--out", "certs"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = super::common::binary::rampart(dir.path())
        .args(["check", "-c", "rampart.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the complete example fails check:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
