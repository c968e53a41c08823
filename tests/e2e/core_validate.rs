//! `etl validate`: every problem as `file:line:column: message`, exit code 2.

use crate::harness::*;

/// Validate `yaml` and return (exit code, stdout).
fn validate(yaml: &str) -> (Option<i32>, String, String) {
    let s = Scratch::new();
    let p = s.write("p.yaml", yaml);
    let out = run(etl().arg("validate").arg(&p).env_remove("ETL_SURELY_UNSET"));
    (out.status.code(), stdout(&out), p.display().to_string())
}

/// Assert one diagnostic at `line:col` whose message contains `needle`.
fn assert_error(yaml: &str, line: usize, col: usize, needle: &str) {
    let (code, out, file) = validate(yaml);
    assert_eq!(code, Some(2), "{out}");
    let prefix = format!("{file}:{line}:{col}: ");
    let hit = out.lines().find(|l| l.starts_with(&prefix));
    assert!(
        hit.is_some_and(|l| l.contains(needle)),
        "expected `{prefix}...{needle}` in:\n{out}"
    );
    assert!(out.contains(" | "), "caret snippet expected:\n{out}");
}

const OK_HEAD: &str = "name: t\nsource:\n  type: jsonl\n  path: in.jsonl\n";

#[test]
fn yaml_syntax_error() {
    assert_error("name: t\nsource: [a, b\n", 2, 14, "YAML syntax error");
}

#[test]
fn wrong_indentation() {
    assert_error(
        "name: t\nsource:\n  type: jsonl\n   path: in.jsonl\n",
        4,
        8,
        "YAML syntax error",
    );
}

#[test]
fn unknown_key_with_suggestion() {
    assert_error(
        &format!("{OK_HEAD}steps:\n  - type: map\n    fiels: {{}}\n"),
        7,
        5,
        "unknown key `fiels` (did you mean `fields`?)",
    );
}

#[test]
fn wrong_type() {
    assert_error(
        &format!("{OK_HEAD}steps:\n  - type: map\n    keep: maybe\n    fields: {{}}\n"),
        7,
        11,
        "expected a boolean",
    );
}

#[test]
fn missing_required_key() {
    assert_error(
        "name: t\nsource:\n  type: jsonl\n  key: $.ID\n",
        3,
        3,
        "missing required key `path`",
    );
}

#[test]
fn unknown_connection_reference() {
    let yaml = "name: t\nconnections:\n  files: {type: jsonl_dir}\nsource:\n  type: jsonl\n  path: in.jsonl\n";
    assert_error(yaml, 3, 17, "unknown connection type `jsonl_dir`");
}

#[test]
fn unknown_step_reference() {
    let yaml = format!(
        "{OK_HEAD}steps:\n  - type: map\n    id: person\n    fields: {{name: x}}\n  - type: map\n    fields:\n      a: \"{{{{ steps.persn.name }}}}\"\n"
    );
    assert_error(
        &yaml,
        11,
        14,
        "unknown step reference `persn` (did you mean `person`?)",
    );
}

#[test]
fn bad_template_syntax() {
    let yaml =
        format!("{OK_HEAD}steps:\n  - type: map\n    fields:\n      a: \"{{{{ source.NAME \"\n");
    assert_error(&yaml, 8, 21, "template syntax error");
}

#[test]
fn bad_json_path() {
    let yaml = "name: t\nsource:\n  type: jsonl\n  path: in.jsonl\n  key: $.ID[\n";
    assert_error(yaml, 5, 13, "invalid JSON path `$.ID[`");
}

#[test]
fn unknown_filter() {
    let yaml = format!(
        "{OK_HEAD}steps:\n  - type: map\n    fields:\n      a: \"{{{{ source.PHONE | phnoe }}}}\"\n"
    );
    assert_error(
        &yaml,
        8,
        29,
        "unknown filter `phnoe` (did you mean `phone`?)",
    );
}

#[test]
fn missing_environment_variable() {
    let yaml = "name: t\nsource:\n  type: jsonl\n  path: ${env:ETL_SURELY_UNSET}/in.jsonl\n";
    assert_error(
        yaml,
        4,
        9,
        "environment variable ETL_SURELY_UNSET is not set",
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let yaml = format!(
        "{OK_HEAD}steps:\n  - type: map\n    fields:\n      a: \"{{{{ x | phnoe }}}}\"\n      b: \"{{{{ source.A | dat }}}}\"\n  - type: filtr\n"
    );
    let (code, out, _) = validate(&yaml);
    assert_eq!(code, Some(2));
    for needle in [
        "unknown variable `x`",
        "unknown filter `phnoe`",
        "unknown filter `dat`",
        "unknown step type `filtr`",
    ] {
        assert!(out.contains(needle), "{needle} missing from:\n{out}");
    }
}

#[test]
fn shipped_pipelines_are_valid_and_carry_the_schema_header() {
    let dir = root().join("pipelines");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(!files.is_empty());
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/pipeline.schema.json"),
            "{} lacks the schema header",
            f.display()
        );
    }
    // Validation needs the variables pipelines reference; any value will do.
    let mut cmd = etl();
    cmd.arg("validate").args(&files);
    for var in [
        "B24_WEBHOOK_URL",
        "OTMECHALKA_URL",
        "COMAGIC_DATA_API_URL",
        "COMAGIC_API_URL",
        "ORDERS_API_URL",
        "SMTP_URL",
    ] {
        cmd.env(var, "http://127.0.0.1:9/rest/1/fakecode123/");
    }
    for var in [
        "OTMECHALKA_TOKEN",
        "COMAGIC_ACCESS_TOKEN",
        "COMAGIC_LOGIN",
        "COMAGIC_PASSWORD",
        "ORDERS_API_TOKEN",
        "REPORT_FROM",
        "REPORT_OUTPUT_DIR",
    ] {
        cmd.env(var, "fake-value-1");
    }
    // The e-mail sink checks its SMTP URL and sender address when the pipeline loads.
    cmd.env("SMTP_URL", "smtp://127.0.0.1:9")
        .env("REPORT_FROM", "reports@example.ru");
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn schema_file_matches_etl_schema() {
    let out = run(etl().arg("schema"));
    let committed = std::fs::read_to_string(root().join("schemas/pipeline.schema.json")).unwrap();
    assert!(
        stdout(&out) == committed,
        "schemas/pipeline.schema.json is stale: run `cargo run -- schema > schemas/pipeline.schema.json`"
    );
}

#[test]
fn reference_file_matches_etl_docs() {
    let out = run(etl().arg("docs"));
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(root().join("docs/reference.md")).unwrap();
    assert!(
        stdout(&out) == committed,
        "docs/reference.md is stale: run `cargo run -- docs > docs/reference.md`"
    );
}
