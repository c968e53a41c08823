//! Editor support from the schema: yaml-language-server (the server behind VS Code's YAML
//! extension, from npm), driven over LSP on stdio, on a shipped pipeline with its
//! `# yaml-language-server: $schema=...` header. Completion inside a component offers exactly the
//! keys of that component's `type`, each inserted with its colon; a misspelt `type:` is one
//! diagnostic naming the valid types.
//!
//! The server is found in `.ci/node` (where `.ci/run` installs it), `node_modules`, or on PATH.
//! Without it the tests say so and pass, except in CI (`CI=true`), where they fail.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::harness::root;

fn server_path() -> Option<PathBuf> {
    let root = root();
    let local = [".ci/node/node_modules/.bin", "node_modules/.bin"]
        .iter()
        .map(|dir| root.join(dir).join("yaml-language-server"));
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("yaml-language-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    local.chain(on_path).find(|p| p.is_file())
}

/// A running yaml-language-server, initialized.
struct Lsp {
    child: Child,
    input: ChildStdin,
    messages: Receiver<Json>,
    next_id: i64,
    version: i64,
}

impl Lsp {
    /// The server, or `None` (outside CI) when it is not installed.
    fn start() -> Option<Lsp> {
        let Some(path) = server_path() else {
            let hint = "yaml-language-server not found: `npm install --no-save --prefix .ci/node yaml-language-server@1.25.0`";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{hint}");
            eprintln!("skipped: {hint}");
            return None;
        };
        let mut child = Command::new(&path)
            .arg("--stdio")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", path.display()));
        let input = child.stdin.take().unwrap();
        let output = child.stdout.take().unwrap();
        let (send, messages) = channel();
        std::thread::spawn(move || {
            let mut output = BufReader::new(output);
            while let Some(message) = read_message(&mut output) {
                if send.send(message).is_err() {
                    break;
                }
            }
        });
        let mut lsp = Lsp {
            child,
            input,
            messages,
            next_id: 0,
            version: 0,
        };
        let root_uri = format!("file://{}", root().display());
        lsp.request(
            "initialize",
            json!({"processId": null, "rootUri": root_uri, "capabilities": {
                "workspace": {"configuration": true},
                "textDocument": {"completion": {"completionItem": {"snippetSupport": true}}}}}),
        );
        lsp.notify("initialized", json!({}));
        lsp.notify(
            "workspace/didChangeConfiguration",
            json!({"settings": {"yaml": settings()}}),
        );
        Some(lsp)
    }

    fn send(&mut self, message: Json) {
        let body = message.to_string();
        write!(self.input, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.input.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Json) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next message from the server, answering its own requests on the way.
    fn receive(&mut self, deadline: Instant) -> Option<Json> {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = self.messages.recv_timeout(left).ok()?;
        if let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) {
            let result = match method {
                "workspace/configuration" => {
                    let items = message["params"]["items"].as_array().map_or(1, Vec::len);
                    Json::from(vec![settings(); items])
                }
                _ => Json::Null,
            };
            self.send(json!({"jsonrpc": "2.0", "id": id, "result": result}));
        }
        Some(message)
    }

    fn request(&mut self, method: &str, params: Json) -> Json {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(message) = self.receive(deadline) {
            if message["id"] == id && message.get("method").is_none() {
                return message["result"].clone();
            }
        }
        panic!("no answer to {method}");
    }

    /// Opens a document; every opening is a new version, as the server caches parsed documents
    /// by URI and version.
    fn open(&mut self, uri: &str, text: &str) {
        self.version += 1;
        let document =
            json!({"uri": uri, "languageId": "yaml", "version": self.version, "text": text});
        self.notify("textDocument/didOpen", json!({"textDocument": document}));
    }

    fn close(&mut self, uri: &str) {
        self.notify(
            "textDocument/didClose",
            json!({"textDocument": {"uri": uri}}),
        );
    }

    /// (label, inserted text) of the keys offered at `line`:`character`.
    fn complete_keys(&mut self, uri: &str, line: usize, character: usize) -> Vec<(String, String)> {
        let position = json!({"line": line, "character": character});
        let result = self.request(
            "textDocument/completion",
            json!({"textDocument": {"uri": uri}, "position": position}),
        );
        let items = result.get("items").unwrap_or(&result);
        const PROPERTY: i64 = 10;
        items
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| item["kind"] == PROPERTY)
            .map(|item| {
                let label = item["label"].as_str().unwrap().to_string();
                let text = item["insertText"].as_str().unwrap_or(&label).to_string();
                (label, text)
            })
            .collect()
    }

    /// The diagnostics the server publishes for `uri` (waits for the first non-empty list, then
    /// for any update that follows it).
    fn diagnostics(&mut self, uri: &str) -> Vec<Json> {
        let mut deadline = Instant::now() + Duration::from_secs(30);
        let mut latest = Vec::new();
        while let Some(message) = self.receive(deadline) {
            let params = &message["params"];
            if message["method"] == "textDocument/publishDiagnostics" && params["uri"] == uri {
                latest = params["diagnostics"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !latest.is_empty() {
                    deadline = deadline.min(Instant::now() + Duration::from_secs(2));
                }
            }
        }
        latest
    }
}

impl Drop for Lsp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn settings() -> Json {
    json!({"validate": true, "completion": true, "hover": true, "schemaStore": {"enable": false}})
}

/// One LSP message (Content-Length framing), or `None` at the end of the stream.
fn read_message(output: &mut impl BufRead) -> Option<Json> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if output.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length:") {
            length = value.trim().parse().ok();
        }
    }
    let mut body = vec![0; length?];
    output.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// A shipped pipeline's text and the URI it is opened under: its own path, so that the
/// `$schema=../schemas/pipeline.schema.json` header reaches the committed schema.
fn shipped(name: &str) -> (String, String) {
    let path = root().join("pipelines").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (format!("file://{}", path.display()), text)
}

/// The keys offered on a new line, indented by `indent`, inserted after the line `after` of the
/// shipped pipeline `name` (edited by `edit`). Each offered key, accepted, gives a document
/// that parses with the key in the component at `component` (a JSON pointer).
fn keys_after(
    lsp: &mut Lsp,
    (name, edit): (&str, &dyn Fn(&str) -> String),
    after: &str,
    indent: usize,
    component: &str,
) -> BTreeSet<String> {
    let (uri, text) = shipped(name);
    let text = edit(&text);
    let mut lines: Vec<&str> = text.lines().collect();
    let at = 1 + lines
        .iter()
        .position(|l| *l == after)
        .unwrap_or_else(|| panic!("{name} has no line {after:?}"));
    let blank = " ".repeat(indent);
    lines.insert(at, &blank);
    lsp.open(&uri, &lines.join("\n"));
    let offered = lsp.complete_keys(&uri, at, indent);
    lsp.close(&uri);
    for (label, insert) in &offered {
        assert!(
            insert.starts_with(&format!("{label}:")),
            "completing `{label}` inserts {insert:?}, not `{label}:`"
        );
        let accepted = accept(&lines, at, indent, insert);
        let tree = etl::syntax::node::parse(&accepted, name)
            .unwrap_or_else(|e| panic!("accepting `{label}` ({insert:?}) breaks the YAML: {e:?}"))
            .to_json();
        assert!(
            tree.pointer(component).and_then(|c| c.get(label)).is_some(),
            "accepting `{label}` ({insert:?}) does not put it in {component}"
        );
    }
    offered.into_iter().map(|(label, _)| label).collect()
}

/// The document after accepting a completion as VS Code does: placeholders take their
/// defaults, and the lines after the first get the indentation of the line completed on.
fn accept(lines: &[&str], at: usize, indent: usize, insert: &str) -> String {
    let pad = " ".repeat(indent);
    let inserted = format!(
        "{pad}{}",
        expand_snippet(insert).replace('\n', &format!("\n{pad}"))
    );
    let mut lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    lines[at] = inserted;
    lines.join("\n")
}

/// An LSP snippet's text: `${1:default}` is its default, `$1` nothing, `\}` a brace.
fn expand_snippet(snippet: &str) -> String {
    let mut out = String::new();
    let mut chars = snippet.chars().peekable();
    let mut open = 0;
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                while chars.next_if(|c| c.is_ascii_digit()).is_some() {}
                chars.next_if_eq(&':');
                open += 1;
            }
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                while chars.next_if(|c| c.is_ascii_digit()).is_some() {}
            }
            '}' if open > 0 => open -= 1,
            c => out.push(c),
        }
    }
    out
}

#[test]
fn snippets_expand_to_their_defaults() {
    assert_eq!(expand_snippet("a: ${1:x}"), "a: x");
    assert_eq!(expand_snippet("a: $1"), "a: ");
    assert_eq!(expand_snippet("a: ${2:{{ b \\}\\}}"), "a: {{ b }}");
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

#[test]
fn completion_offers_the_keys_of_the_components_type_only() {
    let Some(mut lsp) = Lsp::start() else { return };
    let shipped = |text: &str| text.to_string();
    // The source (bitrix24.list) has type, connection, method, select, filter and incremental.
    assert_eq!(
        keys_after(
            &mut lsp,
            ("contacts.yaml", &shipped),
            "  connection: b24",
            2,
            "/source"
        ),
        set(&["id", "id_field", "items", "order", "paging", "params"])
    );
    // A `map` step with its id and fields.
    assert_eq!(
        keys_after(
            &mut lsp,
            ("contacts.yaml", &shipped),
            "    id: routing",
            4,
            "/steps/1"
        ),
        set(&["keep", "omit_null"])
    );
    // An otmechalka.client sink with its connection.
    let sink = "/sinks/0";
    assert_eq!(
        keys_after(
            &mut lsp,
            ("contacts.yaml", &shipped),
            "    connection: otmechalka",
            4,
            sink
        ),
        set(&["id", "value"])
    );
    // A bitrix24.update hook without its connection and fields.
    let bare = |text: &str| {
        let (head, tail) = text.split_once("on_success:").unwrap();
        let tail = tail
            .replacen("    connection: b24\n", "", 1)
            .replacen("    fields:\n      \"{{ settings.status_field }}\": \"{{ settings.success_status }}\"\n", "", 1);
        format!("{head}on_success:{tail}")
    };
    let record_id = "    record_id: \"{{ source.ID }}\"";
    assert_eq!(
        keys_after(
            &mut lsp,
            ("contacts.yaml", &bare),
            record_id,
            4,
            "/on_success/0"
        ),
        set(&["connection", "fields", "id", "params"])
    );
}

#[test]
fn a_misspelt_type_is_one_diagnostic_naming_the_valid_types() {
    let Some(mut lsp) = Lsp::start() else { return };
    let (uri, text) = shipped("contacts.yaml");
    let misspelt = text.replacen(
        "  - type: otmechalka.client",
        "  - type: otmechalka.clent",
        1,
    );
    assert_ne!(misspelt, text);
    lsp.open(&uri, &misspelt);
    let diagnostics = lsp.diagnostics(&uri);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    let message = diagnostics[0]["message"].as_str().unwrap();
    let line = diagnostics[0]["range"]["start"]["line"].as_u64().unwrap() as usize;
    assert_eq!(
        misspelt.lines().nth(line),
        Some("  - type: otmechalka.clent")
    );
    let sinks = [
        "jsonl",
        "csv",
        "stdout",
        "bitrix24.update",
        "otmechalka.client",
        "otmechalka.ticket",
        "xlsx",
        "email",
    ];
    for name in sinks {
        assert!(
            message.contains(&format!("\"{name}\"")),
            "{name} missing from: {message}"
        );
    }
}

#[test]
fn type_values_are_described_and_components_titled() {
    let Some(mut lsp) = Lsp::start() else { return };
    let (uri, text) = shipped("contacts.yaml");
    let line = text
        .lines()
        .position(|l| l == "  - type: otmechalka.client")
        .unwrap();
    // Hovering a sink's key names the sink, not the whole pipeline.
    lsp.open(&uri, &text);
    let position = json!({"line": line + 1, "character": 5});
    let hover = lsp.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": &uri}, "position": position}),
    );
    let shown = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(shown.starts_with("#### otmechalka.client sink"), "{shown}");
    lsp.close(&uri);
    // The values offered for `type:` come with what each type does.
    let blank = text.replacen("  - type: otmechalka.client", "  - type: ", 1);
    lsp.open(&uri, &blank);
    let position = json!({"line": line, "character": 10});
    let result = lsp.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": &uri}, "position": position}),
    );
    let items = result.get("items").unwrap_or(&result).as_array().unwrap();
    let described = |name: &str| {
        let item = items.iter().find(|i| i["label"] == name);
        let documentation = item.map(|i| i["documentation"].to_string());
        documentation.unwrap_or_default()
    };
    assert!(described("xlsx").contains("Excel workbook"), "{items:#?}");
    assert!(
        described("otmechalka.client").contains("otmechalka client"),
        "{items:#?}"
    );
}
