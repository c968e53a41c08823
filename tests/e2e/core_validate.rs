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

/// Validate `yaml` with extra arguments and environment; returns (exit code, stdout, stderr, file).
fn validate_with(yaml: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let s = Scratch::new();
    let p = s.write("p.yaml", yaml);
    let mut cmd = etl();
    cmd.arg("validate").args(args).arg(&p);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    (out.status.code(), stdout(&out), stderr(&out))
}

/// The `file:line:column:` headlines of a validate output.
fn headlines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.contains(".yaml:") && !l.starts_with(' '))
        .collect()
}

/// Issue 14 B6: the "billion laughs" grew the process to ~3 GB and aborted it. It is refused
/// where it grows, quickly, with exit 2.
#[test]
fn alias_bomb_is_refused_at_the_alias() {
    let mut yaml =
        String::from("name: t\nlol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        let refs = vec![format!("*l{p}"); 9].join(", ");
        yaml.push_str(&format!("lol{i}: &l{i} [{refs}]\n"));
    }
    yaml.push_str("source: {type: jsonl, path: in.jsonl}\n");
    let clock = std::time::Instant::now();
    let (code, out, _) = validate_with(&yaml, &[], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(clock.elapsed().as_secs() < 20, "took {:?}", clock.elapsed());
    let lines = headlines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains(".yaml:7:") && lines[0].contains("aliases are expanded"),
        "{out}"
    );
    assert!(out.contains(" | ") && out.contains('^'), "{out}");
}

#[test]
fn oversized_file_is_refused_where_the_limit_falls() {
    let mut yaml = String::from("name: t\nsource: {type: jsonl, path: in.jsonl}\nsettings:\n");
    let line = format!("  {}: 1\n", "k".repeat(60));
    while yaml.len() < (5 << 20) {
        yaml.push_str(&line);
    }
    let (code, out, _) = validate_with(&yaml, &[], &[]);
    assert_eq!(code, Some(2), "{out}");
    let lines = headlines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains("larger than 4 MiB"), "{out}");
    assert!(!lines[0].contains(".yaml:1:1:"), "{out}");
}

/// The environment variables the shipped pipelines reference, none of them set.
fn shipped_pipeline_files() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for dir in ["pipelines", "pipelines/bp"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
            continue;
        };
        files.extend(
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml")),
        );
    }
    files.sort();
    files
}

/// Issue 14 B7: without the environment a connection whose URL is unset was reported, then every
/// component using it as "unknown connection `b24`" (69 problems). One missing variable is one
/// error, at its line.
#[test]
fn a_missing_variable_is_one_error_and_nothing_cascades() {
    let out = run(etl()
        .env_clear()
        .arg("validate")
        .arg(root().join("pipelines/contacts.yaml")));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let lines = headlines(&text);
    let expected = [
        ("contacts.yaml:43:18:", "B24_WEBHOOK_URL"),
        ("contacts.yaml:46:10:", "OTMECHALKA_URL"),
        ("contacts.yaml:47:12:", "OTMECHALKA_TOKEN"),
    ];
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, (at, var)) in lines.iter().zip(expected) {
        assert!(
            line.contains(at) && line.contains(&format!("environment variable {var} is not set")),
            "{line}\n{text}"
        );
    }
    assert!(text.contains("3 problem(s)"), "{text}");
}

/// Issue 14 B7: CI validates without secrets: `--no-env` checks references for their syntax
/// only, and the shipped pipelines pass with an empty environment.
#[test]
fn validate_no_env_passes_the_shipped_pipelines_with_an_empty_environment() {
    let files = shipped_pipeline_files();
    assert!(files.len() >= 8);
    let out = run(etl()
        .env_clear()
        .arg("validate")
        .arg("--no-env")
        .args(&files));
    assert_success(&out);
    assert_eq!(
        stdout(&out).lines().filter(|l| l.ends_with(": ok")).count(),
        files.len()
    );
    // The CI line, patterns unexpanded (a shell leaves a pattern that matches nothing as it is).
    let out = run(etl().env_clear().current_dir(root()).args([
        "validate",
        "--no-env",
        "pipelines/*.yaml",
        "pipelines/bp/*.yaml",
    ]));
    assert_success(&out);
    assert_eq!(
        stdout(&out).lines().filter(|l| l.ends_with(": ok")).count(),
        files.len(),
        "{}",
        stdout(&out)
    );
}

#[test]
fn validate_no_env_still_finds_mistakes_and_bad_references() {
    let yaml = "name: t\nconnections:\n  b24: {type: bitrix24, webhook_url: \"${env:B24_WEBHOOK_URL}\"}\nsource:\n  type: bitrix24.list\n  connection: b42\n  method: crm.contact.list\nsinks:\n  - {type: jsonl, path: \"${env:}/x.jsonl\"}\n";
    let (code, out, _) = validate_with(yaml, &["--no-env"], &[]);
    assert_eq!(code, Some(2), "{out}");
    let lines = headlines(&out);
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("p.yaml:6:15: unknown connection `b42`"),
        "{out}"
    );
    assert!(
        lines[1].contains("p.yaml:9:26:")
            && lines[1].contains("does not name an environment variable"),
        "{out}"
    );
}

const SETTINGS_HEAD: &str = "name: t\nsettings:\n  status_field: UF_STATUS\n  window_days: 7\nsource:\n  type: jsonl\n  path: in.jsonl\n";

/// Issue 14 B8: `{{ settings.typo }}` passed validate and the dry run; the real run failed with
/// an empty path and exit 1.
#[test]
fn an_undefined_setting_in_a_template_is_located() {
    let yaml = format!(
        "{SETTINGS_HEAD}sinks:\n  - type: jsonl\n    path: \"out/{{{{ settings.status_feild }}}}.jsonl\"\n"
    );
    assert_error(
        &yaml,
        10,
        28,
        "unknown setting `status_feild` (did you mean `status_field`?)",
    );
    // The run stops before reading anything, as an invalid pipeline (it wrote to `out/.jsonl`
    // and failed with exit 1 before).
    let s = Scratch::new();
    let p = s.write("p.yaml", &yaml);
    s.write("in.jsonl", "{\"ID\": 1}\n");
    let out = run(etl()
        .current_dir(s.dir.path())
        .args(["run", "--no-progress", "--state"])
        .arg(s.state())
        .arg(&p));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(":10:28: unknown setting `status_feild`"));
    assert!(!s.path("out").exists());
}

#[test]
fn optional_settings_tested_in_templates_keep_working() {
    let yaml = format!(
        "{SETTINGS_HEAD}steps:\n  - type: map\n    fields:\n      a: \"{{{{ settings.label | default('none') }}}}\"\n      b: \"{{% if settings.flag is defined %}}yes{{% endif %}}\"\n      c: \"{{{{ settings.status_field }}}}\"\n"
    );
    let (code, out, _) = validate_with(&yaml, &[], &[]);
    assert_eq!(code, Some(0), "{out}");
    // Optional settings may be supplied on the command line; the dry run accepts them.
    let s = Scratch::new();
    let p = s.write("p.yaml", &yaml);
    s.write("in.jsonl", "{\"ID\": 1}\n");
    let out = run(etl()
        .current_dir(s.dir.path())
        .args(["run", "--dry-run", "--no-progress", "--state"])
        .arg(s.state())
        .arg(&p)
        .args(["--set", "settings.label=x", "--set", "settings.flag=true"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Issue 14 B8: `--set settings.typo=1` is invalid too, naming the override: the run and the dry
/// run stop with exit 2 before anything is read or written.
#[test]
fn an_undefined_setting_on_the_command_line_names_the_override() {
    let s = Scratch::new();
    let yaml = format!("{SETTINGS_HEAD}sinks:\n  - {{type: jsonl, path: out.jsonl}}\n");
    let p = s.write("p.yaml", &yaml);
    s.write("in.jsonl", "{\"ID\": 1}\n");
    for dry in [true, false] {
        let mut cmd = etl();
        cmd.current_dir(s.dir.path())
            .args(["run", "--no-progress", "--state"])
            .arg(s.state())
            .arg(&p)
            .args(["--set", "settings.window_dayz=3"]);
        if dry {
            cmd.arg("--dry-run");
        }
        let out = run(&mut cmd);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let file = p.display().to_string();
        assert!(
            err.contains(&format!(
                "{file}:2:1: --set settings.window_dayz: unknown setting `window_dayz` (did you mean `window_days`?)"
            )),
            "{err}"
        );
        assert!(!s.path("out.jsonl").exists());
    }
}

/// Issue 14 B9: a tab was reported on the line above it.
#[test]
fn a_tab_is_reported_where_it_is() {
    assert_error(
        "name: t\nsource:\n  type: jsonl\n\tpath: in.jsonl\n",
        4,
        1,
        "tab",
    );
}

/// Issue 14 B9: a byte that is not UTF-8 was reported at 1:1.
#[test]
fn a_non_utf8_byte_is_located() {
    let s = Scratch::new();
    let p = s.path("p.yaml");
    std::fs::write(
        &p,
        b"name: t\nsource:\n  type: jsonl\n  path: caf\xe9.jsonl\n",
    )
    .unwrap();
    let out = run(etl().arg("validate").arg(&p));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("{}:4:12: the file is not UTF-8 text", p.display())),
        "{text}"
    );
}

/// Issue 14 B9: an empty file was reported at 0:0.
#[test]
fn an_empty_file_is_reported_at_its_first_line() {
    assert_error("", 1, 1, "found an empty document");
    assert_error("# only a comment\n", 1, 1, "found an empty document");
}

/// Issue 14 B9: merge keys (`<<: *defaults`) were an "unknown key `<<`"; they are supported, and
/// a merge of something that is not a mapping is located.
#[test]
fn merge_keys_are_supported() {
    let yaml = "name: t\nsource: &src\n  type: jsonl\n  path: in.jsonl\nsinks:\n  - <<: *src\n    path: out.jsonl\n";
    let (code, out, _) = validate_with(yaml, &[], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_error(
        "name: t\nsource:\n  <<: [1, 2]\n  type: jsonl\n  path: in.jsonl\n",
        3,
        7,
        "a merge key `<<` takes a mapping or a list of mappings",
    );
}

const B24_HEAD: &str = "name: t\nsource: {type: jsonl, path: in.jsonl}\nconnections:\n  b24:\n    type: bitrix24\n    webhook_url: http://127.0.0.1:9/rest/1/abc/\n";

/// Issue 14 B9: `${env:...}` could not fill a number field ("expected u64").
#[test]
fn environment_values_fill_number_fields() {
    let yaml = format!(
        "{B24_HEAD}    timeout_secs: ${{env:ETL_TEST_TIMEOUT}}\n    burst: ${{env:ETL_TEST_BURST}}\n"
    );
    let env = [("ETL_TEST_TIMEOUT", "45"), ("ETL_TEST_BURST", "250")];
    let (code, out, _) = validate_with(&yaml, &[], &env);
    assert_eq!(code, Some(0), "{out}");
    let env = [("ETL_TEST_TIMEOUT", "45"), ("ETL_TEST_BURST", "lots")];
    let (code, out, _) = validate_with(&yaml, &[], &env);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("p.yaml:8:12: expected a whole number (0 or more), found the string \"lots\""),
        "{out}"
    );
}

/// Issue 14 B9: messages named Rust types (`u32`).
#[test]
fn type_errors_speak_of_numbers_not_rust_types() {
    for (value, expected) in [
        (
            "-5",
            "expected a whole number (0 or more), found the number -5",
        ),
        (
            "2.5",
            "expected a whole number (0 or more), found the number 2.5",
        ),
        ("[1]", "expected a whole number (0 or more), found a list"),
    ] {
        let yaml = format!("{B24_HEAD}    burst: {value}\n");
        assert_error(&yaml, 7, 12, expected);
        let (_, out, _) = validate_with(&yaml, &[], &[]);
        for rust in ["u64", "u32", "usize", "i64", "f64", "a sequence"] {
            assert!(!out.contains(rust), "`{rust}` in:\n{out}");
        }
    }
}
