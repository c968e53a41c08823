//! One-way layers: each floor of the engine imports only the floors below it (see the module
//! docs in engine/lib.rs). This test reads every source file's `crate::...` paths and fails on
//! an import that goes up, e.g. the runtime reaching into the loader or a connector.

use std::path::{Path, PathBuf};

/// The floors, bottom first. A module may use its own floor and those before it.
const FLOORS: &[&[&str]] = &[
    &["syntax"],
    &["expr"],
    &["runtime"],
    &["config"],
    // `table` is a source component (it builds its inputs through the registry), so it stands
    // with the connectors.
    &["connectors", "table"],
    &["cli"],
];

/// Leaves: modules that import no floor and that every floor may use.
const LEAVES: &[&str] = &["secrets", "state"];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

/// The top-level modules a file names through `crate::...`, outside comments, with their line.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{config, expr::Template}`: every name at the top of the group.
                let mut depth = 0;
                let mut name = String::new();
                let mut expecting_name = true;
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            if !name.is_empty() {
                                found.push((n + 1, std::mem::take(&mut name)));
                            }
                            expecting_name = true;
                        }
                        c if expecting_name && (c.is_alphanumeric() || c == '_') => name.push(c),
                        _ if expecting_name && !name.is_empty() => {
                            found.push((n + 1, std::mem::take(&mut name)));
                            expecting_name = false;
                        }
                        _ => {}
                    }
                }
                if !name.is_empty() {
                    found.push((n + 1, name));
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push((n + 1, name));
            }
        }
    }
    found
}

/// Every import in `text` (a file of `module`) that goes up a floor, as `line: crate::name`.
fn violations(module: &str, text: &str) -> Vec<String> {
    let own = floor_of(module);
    crate_paths(text)
        .into_iter()
        .filter(|(_, name)| {
            if name == module || LEAVES.contains(&name.as_str()) {
                return false;
            }
            match (own, floor_of(name)) {
                // A leaf imports no floor.
                (None, Some(_)) => true,
                (Some(own), Some(theirs)) => theirs > own,
                _ => false,
            }
        })
        .map(|(line, name)| format!("{line}: crate::{name}"))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_floor_imports_only_the_floors_below_it() {
    let engine = Path::new(env!("CARGO_MANIFEST_DIR")).join("engine");
    let mut files = Vec::new();
    rust_files(&engine, &mut files);
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in files {
        let relative = file.strip_prefix(&engine).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        if floor_of(&module).is_none() && !LEAVES.contains(&module.as_str()) {
            continue; // lib.rs, main.rs
        }
        checked += 1;
        let text = std::fs::read_to_string(&file).unwrap();
        for v in violations(&module, &text) {
            problems.push(format!("engine/{}:{v}", relative.display()));
        }
    }
    assert!(checked > 50, "only {checked} files checked");
    assert!(
        problems.is_empty(),
        "imports that go up a floor (syntax -> expr -> runtime -> config -> connectors -> cli):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_catches_upward_imports() {
    assert_eq!(
        violations(
            "expr",
            "use crate::config::load;\nuse crate::syntax::node::Node;"
        ),
        ["1: crate::config"]
    );
    assert_eq!(
        violations(
            "runtime",
            "use crate::{expr, connectors::registry}; // crate::cli in a comment"
        ),
        ["1: crate::connectors"]
    );
    assert_eq!(
        violations("syntax", "let r = crate::runtime::Record::new(k, v);"),
        ["1: crate::runtime"]
    );
    assert_eq!(
        violations("state", "use crate::config::Registry;"),
        ["1: crate::config"]
    );
    assert!(violations("connectors", "use crate::{config, table, secrets};").is_empty());
}
