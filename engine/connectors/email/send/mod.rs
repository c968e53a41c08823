//! `smtp.send`: one e-mail per record, sent when the record is processed, through the server and
//! login the record's templates give (a user's own mailbox, as in the business-process action
//! «Отправить письмо через SMTP»).
//!
//! The outcome is `steps.<id>` = `{result: OK|ERROR, error, skipped, recipients, message_id}`: the
//! step never fails the record over a refused mail (the pipeline decides what ERROR means), only
//! over a configuration it cannot read (an unknown `security`, a port that is not a number).
//! Recipients that are not addresses, recipients the server refuses and attachments that could
//! not be fetched are left out and named in `skipped`; the rest is sent.
//!
//! The password is registered with [`crate::secrets`] as soon as it is rendered. The journal gets
//! counts only: addresses and bodies are personal data.

mod attachments;
mod message;
mod session;
mod templated;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use minijinja::value::Value;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::config::{BuildCtx, component::StepConfig};
use crate::expr::Template;
use crate::expr::filters::mailboxes;
use crate::runtime::{Fatal, Item, RunCtx, Step};
use message::Letter;
use session::{Security, Server};
use templated::Templated;

/// Send one e-mail per record through an SMTP server given per record; the outcome is
/// `steps.<id>` = `{result: OK|ERROR, error, skipped, recipients, message_id}`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendConfig {
    /// The SMTP server and login, as templates over the record.
    pub server: ServerConfig,
    /// The sender: `address` or `address:Name` (also `Name <address>`).
    #[schemars(example = &"manager@example.ru:Менеджер")]
    pub from: Template,
    /// Recipients: `address[:Name]` items, several to a text separated by `,` or `;`, or a list
    /// (also the `valid` list of the `mailboxes` filter).
    #[serde(default)]
    #[schemars(example = to_example())]
    pub to: Option<Templated>,
    /// Copy recipients, as `to`.
    #[serde(default)]
    pub cc: Option<Templated>,
    /// Hidden recipients, as `to`: they get the message, no header names them.
    #[serde(default)]
    pub bcc: Option<Templated>,
    /// The subject.
    #[serde(default)]
    pub subject: Option<Template>,
    /// The body: plain text, or HTML with `body_type: html`.
    #[serde(default)]
    pub body: Option<Template>,
    /// `text` or `html`.
    #[serde(default = "default_body_type")]
    pub body_type: Template,
    /// Files to attach: URLs (http/https), or `{url, name}` objects; the name is otherwise the
    /// URL's last path segment. A file that cannot be fetched is left out and named in `skipped`.
    #[serde(default)]
    pub attachments: Option<Templated>,
    /// Largest attachment, in MiB.
    #[serde(default = "default_max_attachment_mb")]
    #[schemars(range(min = 1))]
    pub max_attachment_mb: u64,
    /// Timeout of the SMTP connection and of each attachment download, in seconds.
    #[serde(default = "default_timeout_secs")]
    #[schemars(range(min = 1))]
    pub timeout_secs: u64,
}

/// The SMTP server of `smtp.send`, as templates over the record.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SmtpServer")]
pub struct ServerConfig {
    /// The server's name or IP address.
    #[schemars(example = &"smtp.yandex.ru")]
    pub host: Template,
    /// The port: 465 for `ssl`, 587 for `tls`, 25 for `none` as a rule.
    #[serde(default = "default_port")]
    pub port: Template,
    /// `ssl` (implicit TLS), `tls` (STARTTLS, required) or `none`. TLS trusts the public roots and
    /// the PEM file named by `SSL_CERT_FILE`.
    #[serde(default = "default_security")]
    pub security: Template,
    /// Log in (`true`/`false`, `Y`/`N`); default: when a login is given.
    #[serde(default)]
    pub auth: Option<Template>,
    /// The mailbox login.
    #[serde(default)]
    pub login: Option<Template>,
    /// A secret: masked in every output from the moment it is rendered.
    #[serde(default)]
    pub password: Option<Template>,
}

fn to_example() -> Json {
    json!(["{{ source.EMAIL }}", "boss@example.ru:Начальник"])
}
fn default_body_type() -> Template {
    Template::literal(json!("text"))
}
fn default_max_attachment_mb() -> u64 {
    20
}
fn default_timeout_secs() -> u64 {
    60
}
fn default_port() -> Template {
    Template::literal(json!(465))
}
fn default_security() -> Template {
    Template::literal(json!("ssl"))
}

impl StepConfig for SendConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Step>, String> {
        let id = ctx
            .id
            .clone()
            .ok_or("an smtp.send step needs an `id`: its outcome is `steps.<id>`")?;
        if self.max_attachment_mb == 0 || self.timeout_secs == 0 {
            return Err("max_attachment_mb and timeout_secs must be at least 1".into());
        }
        Ok(Arc::new(SendStep { cfg: self, id }))
    }
}

struct SendStep {
    cfg: SendConfig,
    id: String,
}

/// A message ready to go, or the reason it cannot (an ERROR outcome, not a failed record).
enum Plan {
    Send(Box<(Server, Letter)>),
    Refuse { error: String, skipped: Vec<String> },
}

fn outcome(result: &str, error: &str, skipped: &[String]) -> Json {
    json!({"result": result, "error": crate::secrets::redact(error), "skipped": skipped})
}

/// Yes/no as forms write it.
fn flag(v: &Json) -> Option<bool> {
    match v {
        Json::Bool(b) => Some(*b),
        Json::Number(n) => Some(n.as_f64() != Some(0.0)),
        Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" | "true" | "1" | "да" => Some(true),
            "n" | "no" | "false" | "0" | "нет" | "" => Some(false),
            _ => None,
        },
        Json::Null => Some(false),
        _ => None,
    }
}

impl SendStep {
    fn text(&self, t: &Option<Template>, scope: &Value, what: &str) -> Result<String, String> {
        match t {
            Some(t) => t
                .render(scope)
                .map_err(|e| format!("smtp.send {what}: {e}")),
            None => Ok(String::new()),
        }
    }

    fn list(&self, t: &Option<Templated>, scope: &Value, what: &str) -> Result<Json, String> {
        match t {
            Some(t) => t.eval(scope).map_err(|e| format!("smtp.send {what}: {e}")),
            None => Ok(Json::Null),
        }
    }

    /// The server of this record. `Err`: the configuration cannot be read (the record fails).
    fn server(&self, scope: &Value) -> Result<Server, String> {
        let s = &self.cfg.server;
        // First, so that nothing below (an error, a dry-run line) can show it.
        let password = self.text(&s.password, scope, "server.password")?;
        crate::secrets::register(&password);
        let host = self.text(&Some(s.host.clone()), scope, "server.host")?;
        let port_value = s
            .port
            .eval(scope)
            .map_err(|e| format!("smtp.send server.port: {e}"))?;
        let port = match &port_value {
            Json::Number(n) => n.as_u64(),
            Json::String(t) => t.trim().parse().ok(),
            _ => None,
        }
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("smtp.send server.port: not a port number: {port_value}"))?;
        let security_text = self.text(&Some(s.security.clone()), scope, "server.security")?;
        let security = Security::parse(&security_text).ok_or_else(|| {
            format!("smtp.send server.security: `{security_text}` is none of ssl, tls, none")
        })?;
        let login = self.text(&s.login, scope, "server.login")?;
        let auth = match &s.auth {
            Some(t) => {
                let v = t
                    .eval(scope)
                    .map_err(|e| format!("smtp.send server.auth: {e}"))?;
                flag(&v).ok_or_else(|| format!("smtp.send server.auth: not yes or no: {v}"))?
            }
            None => !login.trim().is_empty(),
        };
        Ok(Server {
            host: host.trim().to_string(),
            port,
            security,
            credentials: auth.then(|| (login.trim().to_string(), password)),
            extra_roots: super::tls::ssl_cert_file(),
            timeout: Duration::from_secs(self.cfg.timeout_secs),
        })
    }

    /// What to send for this record. `Err`: the configuration cannot be read (the record fails).
    fn plan(&self, item: &Item, ctx: &RunCtx) -> Result<Plan, String> {
        let scope = ctx.scope(item);
        let server = self.server(&scope)?;
        let body_type = self.text(&Some(self.cfg.body_type.clone()), &scope, "body_type")?;
        let html = match body_type.trim().to_ascii_lowercase().as_str() {
            "html" => true,
            "text" | "" => false,
            other => {
                return Err(format!(
                    "smtp.send body_type: `{other}` is neither text nor html"
                ));
            }
        };
        let to = mailboxes::parse(Some(&self.list(&self.cfg.to, &scope, "to")?));
        let cc = mailboxes::parse(Some(&self.list(&self.cfg.cc, &scope, "cc")?));
        let bcc = mailboxes::parse(Some(&self.list(&self.cfg.bcc, &scope, "bcc")?));
        let (wanted, bad_files) =
            attachments::wanted(&self.list(&self.cfg.attachments, &scope, "attachments")?);
        let from = self.text(&Some(self.cfg.from.clone()), &scope, "from")?;
        let mut skipped: Vec<String> = [&to, &cc, &bcc]
            .iter()
            .flat_map(|p| p.invalid.iter())
            .map(|w| format!("{w} (недопустимый адрес)"))
            .collect();
        skipped.extend(bad_files.iter().map(|w| format!("{w} (не ссылка на файл)")));
        let refuse = |error: &str, skipped| {
            Ok(Plan::Refuse {
                error: error.to_string(),
                skipped,
            })
        };
        if server.host.is_empty() {
            return refuse("не указан адрес сервера SMTP", skipped);
        }
        let from = match message::sender(&from) {
            Ok(from) => from,
            Err(e) => return refuse(&e, skipped),
        };
        let letter = Letter {
            from,
            to: to.valid,
            cc: cc.valid,
            bcc: bcc.valid,
            subject: self.text(&self.cfg.subject, &scope, "subject")?,
            body: self.text(&self.cfg.body, &scope, "body")?,
            html,
            attachments: wanted,
            skipped,
        }
        .deduplicated();
        if letter.recipients() == 0 {
            return refuse("Нет ни одного допустимого получателя", letter.skipped);
        }
        Ok(Plan::Send(Box::new((server, letter))))
    }

    fn dry_run_line(&self, server: &Server, letter: &Letter) -> String {
        crate::secrets::redact(&format!(
            "[dry-run] {} (smtp.send): would send \"{}\" from {} via {}:{} ({}{}) to {} recipient(s) with {} attachment(s)",
            self.id,
            letter.subject,
            letter.from.email,
            server.host,
            server.port,
            server.security.name(),
            if server.credentials.is_some() {
                ", login"
            } else {
                ""
            },
            letter.recipients(),
            letter.attachments.len(),
        ))
    }

    /// Fetch the attachments, send, and tell the outcome.
    async fn send(&self, server: &Server, mut letter: Letter) -> Json {
        let max_bytes = self.cfg.max_attachment_mb * 1024 * 1024;
        let timeout = Duration::from_secs(self.cfg.timeout_secs);
        let mut files = Vec::new();
        for w in &letter.attachments {
            match attachments::fetch(w, max_bytes, timeout).await {
                Ok(f) => files.push(f),
                Err(why) => letter
                    .skipped
                    .push(format!("{} ({why})", attachments::label(w))),
            }
        }
        let (message_id, bytes) = match letter.format(&files) {
            Ok(m) => m,
            Err(e) => return outcome("ERROR", &e, &letter.skipped),
        };
        let envelope = letter.envelope();
        match server
            .deliver(&letter.sender_address(), &envelope, &bytes)
            .await
        {
            Ok(delivery) => {
                let accepted = envelope.len() - delivery.refused.len();
                letter.skipped.extend(
                    delivery
                        .refused
                        .iter()
                        .map(|(to, why)| format!("{to} ({why})")),
                );
                if !delivery.sent {
                    let why = delivery.refused.first().map(|(_, why)| why.as_str());
                    let error = format!(
                        "Сервер отклонил всех получателей: {}",
                        why.unwrap_or_default()
                    );
                    return outcome("ERROR", &error, &letter.skipped);
                }
                let mut out = outcome("OK", "", &letter.skipped);
                out["recipients"] = json!(accepted);
                out["message_id"] = json!(message_id);
                out
            }
            Err(e) => outcome("ERROR", &e, &letter.skipped),
        }
    }
}

#[async_trait]
impl Step for SendStep {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
        for c in ["sent", "error", "skipped"] {
            ctx.declare_counter(&format!("{}.{c}", self.id));
        }
        for item in items.iter_mut().filter(|i| i.pending()) {
            let out = match self.plan(item, ctx) {
                Err(e) => {
                    item.fail(crate::secrets::redact(&e));
                    continue;
                }
                Ok(Plan::Refuse { error, skipped }) => outcome("ERROR", &error, &skipped),
                Ok(Plan::Send(planned)) => {
                    let (server, letter) = *planned;
                    if ctx.dry_run {
                        println!("{}", self.dry_run_line(&server, &letter));
                        let mut out = outcome("OK", "", &letter.skipped);
                        out["dry_run"] = json!(true);
                        out
                    } else {
                        self.send(&server, letter).await
                    }
                }
            };
            match (out["result"] == "OK", ctx.dry_run) {
                (true, false) => ctx.count(&format!("{}.sent", self.id), 1),
                (false, _) => ctx.count(&format!("{}.error", self.id), 1),
                (true, true) => {}
            }
            let skipped = out["skipped"].as_array().map_or(0, Vec::len);
            ctx.count(&format!("{}.skipped", self.id), skipped as i64);
            item.record.set_step_output(&self.id, out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_and_no_as_forms_write_them() {
        for yes in [
            json!("Y"),
            json!("true"),
            json!(true),
            json!(1),
            json!(" да "),
        ] {
            assert_eq!(flag(&yes), Some(true), "{yes}");
        }
        for no in [
            json!("N"),
            json!("false"),
            json!(false),
            json!(0),
            json!(null),
            json!(""),
        ] {
            assert_eq!(flag(&no), Some(false), "{no}");
        }
        assert_eq!(flag(&json!("maybe")), None);
    }

    #[test]
    fn security_modes() {
        assert_eq!(Security::parse(" SSL "), Some(Security::Ssl));
        assert_eq!(Security::parse("tls"), Some(Security::Tls));
        assert_eq!(Security::parse("starttls"), Some(Security::Tls));
        assert_eq!(Security::parse("none"), Some(Security::None));
        assert_eq!(Security::parse(""), None);
        assert_eq!(Security::parse("tls13"), None);
    }
}
