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
