//! Which pipelines answer business-process actions: every file under `--pipelines` (sub-folders
//! included, e.g. `pipelines/bp/`) whose source is `bitrix24.bp_activity`, by its `code`. Read
//! without building (the app's environment is checked once there are actions), then each is
//! loaded once to refuse a broken file at start-up rather than at its first request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{self, LoadOptions};
use crate::connectors;
use crate::syntax::yaml;

/// The source type of action pipelines.
const SOURCE_TYPE: &str = "bitrix24.bp_activity";

/// Action code -> pipeline file.
pub type Actions = BTreeMap<String, PathBuf>;

/// Every `*.yaml`/`*.yml` under `dir`, sorted.
fn pipeline_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            pipeline_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            found.push(path);
        }
    }
}

/// The action code a pipeline file declares, if its source is an action. Files that do not
/// parse are not actions here (`/run` and `etl validate` say what is wrong with them).
fn declared_code(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let root = yaml::parse(&text, &file.display().to_string()).ok()?;
    let source = root.get("source")?;
    if source.get("type")?.as_str()? != SOURCE_TYPE {
        return None;
    }
    Some(source.get("code")?.as_str().unwrap_or_default().to_string())
}

/// The action pipelines under `dir`, by code. Two files with one code: an error naming both.
pub fn index(dir: &Path) -> Result<Actions, String> {
    let mut files = Vec::new();
    pipeline_files(dir, &mut files);
    files.sort();
    let mut actions = Actions::new();
    for file in files {
        let Some(code) = declared_code(&file) else {
            continue;
        };
        if code.trim().is_empty() {
            return Err(format!("{}: the action has no `code`", file.display()));
        }
        if let Some(first) = actions.get(&code) {
            return Err(format!(
                "action code `{code}` is declared twice: {} and {}",
                first.display(),
                file.display()
            ));
        }
        actions.insert(code, file);
    }
    Ok(actions)
}

/// Load every action pipeline once; every problem, each under its file.
pub fn validate(actions: &Actions) -> Result<(), String> {
    let problems: Vec<String> = actions
        .values()
        .filter_map(|file| {
            config::load(file, connectors::registry(), &LoadOptions::default())
                .err()
                .map(|errors| format!("{}:\n{}", file.display(), errors.render()))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "invalid action pipelines:\n{}",
            problems.join("\n\n")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(code: &str) -> String {
        format!("name: a\nsource:\n  type: bitrix24.bp_activity\n  code: {code}\n")
    }

    #[test]
    fn actions_are_found_in_sub_folders_by_code_and_a_code_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("plain.yaml", "name: p\nsource: {type: jsonl, path: x}\n");
        write("bp/one.yaml", &action("b24etl_one"));
        write("bp/two.yml", &action("b24etl_two"));
        write("broken.yaml", "name: [");
        let actions = index(dir.path()).unwrap();
        assert_eq!(
            actions.keys().collect::<Vec<_>>(),
            vec!["b24etl_one", "b24etl_two"]
        );
        assert!(actions["b24etl_one"].ends_with("bp/one.yaml"));
        write("bp/again.yaml", &action("b24etl_one"));
        let refused = index(dir.path()).unwrap_err();
        assert!(
            refused.contains("`b24etl_one` is declared twice"),
            "{refused}"
        );
    }
}
