//! The `email` sink: when the run finishes (after the sinks before it, such as `xlsx`, have
//! written their files), one message per recipient with the files attached.
//!
//! - `SMTP_URL`: `smtp://host:port` (plain), `smtp://host:port?tls=required` (STARTTLS),
//!   `smtps://host:port` (TLS); `user:password@` logs in.
//! - A recipient without a usable address is reported in the journal, not fatal.
//! - A recipient the server refuses (5xx/4xx to RCPT, DATA) is reported; the others still get theirs.
//! - An unreachable server, failed TLS or a refused login ends the run (exit 1); files already
//!   written stay where they are.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::value::Value;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::{Value as Json, json};

use crate::config::{BuildCtx, component::SinkConfig};
use crate::expr::Template;
use crate::runtime::error::ConnectorError;
use crate::runtime::{Fatal, Item, RunCtx, Sink, Write};
use crate::syntax::de::capture_node;
use crate::syntax::diag::Diagnostic;
use crate::syntax::session;
use crate::table::ops::Names;

/// A stalled server must not hold the run forever (lettre's own timeout covers single reads).
const SEND_TIMEOUT: Duration = Duration::from_secs(120);

const XLSX_MIME: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// What the e-mail templates see.
const MAIL_ROOTS: &[&str] = &["recipient", "files", "rows", "settings", "run"];

/// Send the files written in this run (the XLSX report) to each recipient, when the run finishes.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSinkConfig {
    /// The SMTP server: `smtp://host:port` (plain), `smtp://host:port?tls=required` (STARTTLS),
    /// `smtps://host:port` (TLS); `smtp://user:password@host:port` logs in.
    #[schemars(example = &"${env:SMTP_URL}")]
    pub smtp_url: String,
    /// The sender: `reports@example.ru` or `Отчёты <reports@example.ru>`.
    #[schemars(example = &"${env:REPORT_FROM}")]
    pub from: String,
    /// Who gets the message: a table the `table` source publishes, or fixed addresses.
    pub recipients: Recipients,
    /// Subject, a template over `recipient`, `files`, `rows`, `settings`, `run`.
    #[schemars(example = &"Компании без активности на {{ run.today }}")]
    pub subject: MailTemplate,
    /// Plain-text body, a template over `recipient`, `files` (name, rows), `rows`, `settings`, `run`.
    pub body: MailTemplate,
    /// Attach the files written by these sinks (their `id`s); default: every file written in this run.
    #[serde(default)]
    pub attach: Option<Names>,
    /// A PEM file with root certificates to trust besides the public ones (an internal relay's CA).
    #[serde(default)]
    pub ca_file: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipients {
    /// A table published by the `table` source (`publish: [people]`), one row per recipient.
    #[serde(default)]
    pub dataset: Option<String>,
    /// Fixed addresses, used when there is no `dataset`.
    #[serde(default)]
    pub to: Vec<String>,
    /// The address, a template over `recipient` (default `{{ recipient.EMAIL }}`).
    #[serde(default)]
    pub email: Option<MailTemplate>,
    /// The display name, a template over `recipient`: `{{ recipient.NAME }} {{ recipient.LAST_NAME }}`.
    #[serde(default)]
    pub name: Option<MailTemplate>,
}

/// A template over the e-mail scope (`recipient`, `files`, `rows`, `settings`, `run`).
#[derive(Clone, Debug)]
pub struct MailTemplate(pub Template);

impl<'de> Deserialize<'de> for MailTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        let Some(source) = node.as_str() else {
            return Ok(MailTemplate(Template::literal(node.to_json())));
        };
        match Template::compile(source, MAIL_ROOTS, &[]) {
            Ok(t) => Ok(MailTemplate(t)),
            Err(errors) => {
                for e in errors {
                    session::report(Diagnostic::at_pos(
                        &node.file,
                        node.pos_in_scalar(e.line, e.col),
                        e.len,
                        e.message,
                    ));
                }
                Ok(MailTemplate(Template::literal(Json::String(
                    source.to_string(),
                ))))
            }
        }
    }
}

impl JsonSchema for MailTemplate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MailTemplate".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A minijinja template over `recipient` (the recipient's row), `files` (each with `name` and `rows`), `rows` (all files), `settings` and `run`.",
            "examples": ["Здравствуйте, {{ recipient.NAME }}! Во вложении отчёт ({{ rows }} строк)."]
        })
    }
}

impl SinkConfig for EmailSinkConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Sink>, String> {
        let url = url::Url::parse(self.smtp_url.trim()).map_err(|e| {
            format!("smtp_url: {e} (expected smtp://host:port or smtps://host:port)")
        })?;
        if !matches!(url.scheme(), "smtp" | "smtps") || url.host_str().is_none() {
            return Err("smtp_url: expected smtp://host:port, smtp://host:port?tls=required or smtps://host:port".into());
        }
        let from: Mailbox = self
            .from
            .trim()
            .parse()
            .map_err(|e| format!("from: invalid address \"{}\": {e}", self.from))?;
        if self.recipients.dataset.is_none() && self.recipients.to.is_empty() {
            return Err(
                "recipients: give a `dataset` (a table the source publishes) or `to` addresses"
                    .into(),
            );
        }
        Ok(Arc::new(EmailSink {
            label: ctx.id.clone().unwrap_or_else(|| "email".into()),
            smtp_url: self.smtp_url.trim().to_string(),
            from,
            recipients: self.recipients,
            subject: self.subject.0,
            body: self.body.0,
            attach: self.attach.map(|n| n.0),
            ca_file: self
                .ca_file
                .filter(|c| !c.trim().is_empty())
                .map(PathBuf::from),
        }))
    }
}

struct EmailSink {
    label: String,
    smtp_url: String,
    from: Mailbox,
    recipients: Recipients,
    subject: Template,
    body: Template,
    attach: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
}

struct Outgoing {
    /// How the journal names the recipient.
    who: String,
    to: Result<Mailbox, String>,
    scope: Value,
}

/// Replies that mean the server or our session is the problem, not this recipient.
fn server_level(code: &str) -> bool {
    matches!(code, "421" | "454" | "530" | "534" | "535" | "538")
}

/// A file to attach: its name, content type and bytes.
type FileAttachment = (String, ContentType, Vec<u8>);

/// The files to attach, read once for every recipient.
fn read_attachments(files: &[crate::runtime::SharedFile]) -> Result<Vec<FileAttachment>, Fatal> {
    let mut attachments = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f.path).map_err(|e| {
            Fatal::unavailable("email", format!("cannot read {}: {e}", f.path.display()))
        })?;
        let name = f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "report.xlsx".into());
        let mime = if name.ends_with(".xlsx") {
            XLSX_MIME
        } else {
            "application/octet-stream"
        };
        attachments.push((name, ContentType::parse(mime).expect("valid mime"), bytes));
    }
    Ok(attachments)
}

impl EmailSink {
    /// One recipient's message: subject and body rendered for them, the files attached.
    fn message(
        &self,
        scope: &Value,
        to: &Mailbox,
        attachments: &[FileAttachment],
    ) -> Result<Message, Fatal> {
        let subject = self
            .subject
            .render(scope)
            .map_err(|e| Fatal::unavailable("email", format!("subject: {e}")))?;
        let body = self
            .body
            .render(scope)
            .map_err(|e| Fatal::unavailable("email", format!("body: {e}")))?;
        let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(body));
        for (name, mime, bytes) in attachments {
            parts =
                parts.singlepart(Attachment::new(name.clone()).body(bytes.clone(), mime.clone()));
        }
        Message::builder()
            .from(self.from.clone())
            .to(to.clone())
            .subject(subject.trim())
            .multipart(parts)
            .map_err(|e| Fatal::unavailable("email", format!("message to {to}: {e}")))
    }
}

/// A failed send in the shared vocabulary: a reply about this recipient is `Rejected` (the
/// others still get the report); a server-level reply or a transport failure is `Unavailable`.
fn classify(e: lettre::transport::smtp::Error) -> ConnectorError {
    match e.status().map(|c| c.to_string()) {
        Some(code) if !server_level(&code) => ConnectorError::Rejected(e.to_string()),
        _ => ConnectorError::Unavailable(e.to_string()),
    }
}

impl EmailSink {
    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&self.smtp_url)
            .map_err(|e| e.to_string())?;
        if let Some(ca) = &self.ca_file {
            let url = url::Url::parse(&self.smtp_url).map_err(|e| e.to_string())?;
            let params =
                super::tls::parameters(url.host_str().unwrap_or_default(), &[ca.as_path()])
                    .map_err(|e| format!("ca_file {e}"))?;
            let mode = url
                .query_pairs()
                .find(|(k, _)| k == "tls")
                .map(|(_, v)| v.to_string());
            let tls = match (url.scheme(), mode.as_deref()) {
                ("smtps", _) => Tls::Wrapper(params),
                (_, Some("required")) => Tls::Required(params),
                (_, Some("opportunistic")) => Tls::Opportunistic(params),
                _ => Tls::None,
            };
            builder = builder.tls(tls);
        }
        Ok(builder.timeout(Some(Duration::from_secs(60))).build())
    }

    /// The recipients, deduplicated by address, each with its template scope.
    fn outgoing(&self, ctx: &RunCtx, files: &Json, rows: u64) -> Result<Vec<Outgoing>, Fatal> {
        let rows_of: Vec<Json> = match &self.recipients.dataset {
            Some(name) => {
                let data = ctx.shared.dataset(name).ok_or_else(|| {
                    Fatal::unavailable(
                        "email",
                        format!("no data set `{name}` for the recipients; the table source publishes: {:?}", ctx.shared.dataset_names()),
                    )
                })?;
                data.as_ref().clone()
            }
            None => self
                .recipients
                .to
                .iter()
                .map(|a| json!({"EMAIL": a}))
                .collect(),
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, row) in rows_of.into_iter().enumerate() {
            let recipient = crate::expr::json_value(&Arc::new(row.clone()));
            let scope = minijinja::context! {
                recipient => recipient,
                files => crate::expr::json_value(&Arc::new(files.clone())),
                rows => rows,
                settings => ctx.settings_value.clone(),
                run => ctx.run_value.clone(),
            };
            let address = match &self.recipients.email {
                Some(t) => t
                    .0
                    .render(&scope)
                    .map_err(|e| Fatal::unavailable("email", format!("recipients.email: {e}")))?,
                None => match &row["EMAIL"] {
                    Json::String(s) => s.clone(),
                    Json::Array(a) => a
                        .iter()
                        .find_map(|v| v.as_str().or_else(|| v["VALUE"].as_str()))
                        .unwrap_or_default()
                        .to_string(),
                    _ => String::new(),
                },
            };
            let name = match &self.recipients.name {
                Some(t) => {
                    t.0.render(&scope)
                        .map_err(|e| Fatal::unavailable("email", format!("recipients.name: {e}")))?
                        .trim()
                        .to_string()
                }
                None => String::new(),
            };
            let id = match &row["ID"] {
                Json::Null => None,
                Json::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            let address = address.trim().to_string();
            let who = match (name.is_empty(), &id) {
                (false, Some(id)) => format!("{name} (ID {id})"),
                (false, None) => name.clone(),
                (true, Some(id)) => format!("ID {id}"),
                (true, None) => format!("recipient #{}", i + 1),
            };
            let to = if address.is_empty() {
                Err("has no e-mail address".to_string())
            } else {
                match address.parse::<lettre::Address>() {
                    Ok(a) => Ok(Mailbox::new(
                        if name.is_empty() {
                            None
                        } else {
                            Some(name.clone())
                        },
                        a,
                    )),
                    Err(_) => Err(format!("has an invalid e-mail address \"{address}\"")),
                }
            };
            if let Ok(m) = &to
                && !seen.insert(m.email.to_string().to_lowercase())
            {
                continue;
            }
            out.push(Outgoing { who, to, scope });
        }
        Ok(out)
    }
}

#[async_trait]
impl Sink for EmailSink {
    fn prepare(&self, _item: &Item, _scope: &Value) -> Result<Option<Write>, String> {
        // Nothing per record: the message goes out once, when the run finishes.
        Ok(None)
    }

    async fn write(
        &self,
        _writes: &[Write],
        _ctx: &RunCtx,
    ) -> Result<Vec<Result<Json, String>>, Fatal> {
        Ok(Vec::new())
    }

    fn skip_unchanged(&self) -> bool {
        false
    }

    async fn finish(&self, ctx: &RunCtx) -> Result<(), Fatal> {
        for c in ["sent", "refused", "no_address"] {
            ctx.declare_counter(&format!("{}.{c}", self.label));
        }
        let files: Vec<_> = ctx
            .shared
            .files()
            .into_iter()
            .filter(|f| {
                self.attach
                    .as_ref()
                    .is_none_or(|ids| ids.iter().any(|id| id == &f.producer))
            })
            .collect();
        let rows: u64 = files.iter().map(|f| f.rows).sum();
        let files_json = Json::Array(
            files
                .iter()
                .map(|f| json!({"name": f.path.file_name().map(|n| n.to_string_lossy().to_string()), "rows": f.rows, "producer": f.producer}))
                .collect(),
        );
        let outgoing = self.outgoing(ctx, &files_json, rows)?;
        if ctx.dry_run {
            let to: Vec<String> = outgoing
                .iter()
                .filter_map(|o| o.to.as_ref().ok().map(|m| m.to_string()))
                .collect();
            println!(
                "[dry-run] {}: would send to {} recipient(s): {}",
                self.label,
                to.len(),
                to.join(", ")
            );
            return Ok(());
        }
        let attachments = read_attachments(&files)?;
        let mailer = self
            .transport()
            .map_err(|e| Fatal::unavailable("smtp", e))?;
        let sending = std::time::Instant::now();
        let mut sent_count = 0;
        for o in outgoing {
            let to = match o.to {
                Ok(to) => to,
                Err(why) => {
                    ctx.count(&format!("{}.no_address", self.label), 1);
                    ctx.log(format!(
                        "{}: {} {why}; the report was not sent to them",
                        self.label, o.who
                    ));
                    continue;
                }
            };
            let message = self.message(&o.scope, &to, &attachments)?;
            let sent = match tokio::time::timeout(SEND_TIMEOUT, mailer.send(message)).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(Fatal::unavailable(
                        "smtp",
                        format!(
                            "sending to {}: no answer within {}s; the report files were kept",
                            to.email,
                            SEND_TIMEOUT.as_secs()
                        ),
                    ));
                }
            };
            match sent.map_err(classify) {
                Ok(_) => {
                    sent_count += 1;
                    ctx.count(&format!("{}.sent", self.label), 1)
                }
                Err(ConnectorError::Rejected(e)) => {
                    ctx.count(&format!("{}.refused", self.label), 1);
                    ctx.log(format!(
                        "{}: {} <{}> refused by the server: {e}",
                        self.label, o.who, to.email
                    ));
                }
                Err(e) => {
                    return Err(Fatal::unavailable(
                        "smtp",
                        format!("sending to {}: {e}; the report files were kept", to.email),
                    ));
                }
            }
        }
        ctx.log(format!(
            "{}: sent {sent_count} message(s) in {:.1}s",
            self.label,
            sending.elapsed().as_secs_f64()
        ));
        Ok(())
    }
}
