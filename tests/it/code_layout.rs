//! The code layout docs/architecture.md promises: no module imports one that imports it back.

use std::path::Path;
use std::process::Command;

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("tools/module_cycles.py"))
        .arg(root.join("src"))
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "import cycles in src/:\n{report}");
    assert!(report.contains("no import cycles"), "{report}");
}

/// Config flows one way: `config/` reads the serde model and compiles it; no other module reads
/// the model (policies take plain values).
#[test]
fn only_config_reads_the_serde_model() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut readers = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != src.join("config") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains("config::model") {
                    readers.push(path.strip_prefix(&src).unwrap().display().to_string());
                }
            }
        }
    }
    readers.sort();
    assert!(
        readers.is_empty(),
        "modules outside src/config read the serde model: {readers:?}"
    );
}
