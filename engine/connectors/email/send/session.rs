//! One SMTP session for one message, spoken command by command (lettre's connection, not its
//! transport): the transport gives up on the whole message at the first refused RCPT, while a
//! message must still go to the recipients the server accepts, the refused ones named.

use std::error::Error as _;
use std::path::PathBuf;
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Security {
    /// Implicit TLS from the first byte (port 465).
    Ssl,
    /// Plain, then STARTTLS, which the server must offer (port 587).
    Tls,
    /// No encryption.
    None,
}

impl Security {
    pub fn parse(text: &str) -> Option<Security> {
        match text.trim().to_ascii_lowercase().as_str() {
            "ssl" => Some(Security::Ssl),
            "tls" | "starttls" => Some(Security::Tls),
            "none" => Some(Security::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Security::Ssl => "ssl",
            Security::Tls => "tls",
            Security::None => "none",
        }
    }
}

/// Where and how to send.
pub struct Server {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Login and password, when the server wants AUTH.
    pub credentials: Option<(String, String)>,
    /// Trusted besides the public roots (`SSL_CERT_FILE`).
    pub extra_roots: Option<PathBuf>,
    pub timeout: Duration,
}

/// What the server did with the message.
pub struct Delivery {
    /// Recipients refused at RCPT, with the server's reason.
    pub refused: Vec<(String, String)>,
    /// Whether the message went out: false when every recipient was refused.
    pub sent: bool,
}

/// The server's reason for a failed command (`535 5.7.8 Authentication credentials invalid`), or
/// what went wrong on the way (connection, TLS), prefixed with the stage.
fn reason(stage: &str, e: &lettre::transport::smtp::Error) -> String {
    let detail = match (e.status(), e.source()) {
        (Some(code), Some(text)) => format!("{code} {text}"),
        _ => e.to_string(),
    };
    crate::secrets::redact(&format!("{stage}: {detail}"))
}

impl Server {
    fn tls(&self) -> Result<TlsParameters, String> {
        let extra: Vec<&std::path::Path> = self.extra_roots.iter().map(|p| p.as_path()).collect();
        super::super::tls::parameters(&self.host, &extra)
            .map_err(|e| format!("TLS: доверенные сертификаты (SSL_CERT_FILE) {e}"))
    }

    async fn connect(&self, hello: &ClientId) -> Result<AsyncSmtpConnection, String> {
        let wrapped = match self.security {
            Security::Ssl => Some(self.tls()?),
            _ => None,
        };
        let at = format!("{}:{}", self.host, self.port);
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            hello,
            wrapped,
            None,
        )
        .await
        .map_err(|e| reason(&format!("соединение с {at}"), &e))?;
        if self.security == Security::Tls {
            conn.starttls(self.tls()?, hello)
                .await
                .map_err(|e| reason("STARTTLS", &e))?;
        }
        if let Some((login, password)) = &self.credentials {
            let credentials = Credentials::new(login.clone(), password.clone());
            if let Err(e) = conn
                .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
            {
                conn.abort().await;
                return Err(reason("AUTH", &e));
            }
        }
        Ok(conn)
    }

    /// Send `message` from `from` to `recipients`. `Err`: nothing was sent (connection, TLS,
    /// login, or DATA refused), with the server's reason; every recipient refused is a
    /// `Delivery` that was not `sent`.
    pub async fn deliver(
        &self,
        from: &Address,
        recipients: &[Address],
        message: &[u8],
    ) -> Result<Delivery, String> {
        match tokio::time::timeout(self.timeout * 2, self.session(from, recipients, message)).await
        {
            Ok(result) => result,
            Err(_) => Err(format!(
                "нет ответа сервера {}:{} за {} с",
                self.host,
                self.port,
                (self.timeout * 2).as_secs()
            )),
        }
    }

    async fn session(
        &self,
        from: &Address,
        recipients: &[Address],
        message: &[u8],
    ) -> Result<Delivery, String> {
        let hello = ClientId::default();
        let mut conn = self.connect(&hello).await?;
        let mut options = Vec::new();
        let non_ascii_address = recipients
            .iter()
            .chain(std::iter::once(from))
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii_address && conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if let Err(e) = conn.command(Mail::new(Some(from.clone()), options)).await {
            conn.abort().await;
            return Err(reason("MAIL FROM", &e));
        }
        let mut refused = Vec::new();
        for to in recipients {
            if let Err(e) = conn.command(Rcpt::new(to.clone(), vec![])).await {
                if e.status().is_none() {
                    // Not a refusal of this address: the connection itself failed.
                    conn.abort().await;
                    return Err(reason("RCPT TO", &e));
                }
                refused.push((to.to_string(), reason("RCPT TO", &e)));
            }
        }
        if refused.len() == recipients.len() {
            conn.abort().await;
            return Ok(Delivery {
                refused,
                sent: false,
            });
        }
        if let Err(e) = conn.command(Data).await {
            conn.abort().await;
            return Err(reason("DATA", &e));
        }
        if let Err(e) = conn.message(message).await {
            conn.abort().await;
            return Err(reason("DATA", &e));
        }
        // The message is accepted; a failed QUIT changes nothing about that.
        let _ = conn.quit().await;
        Ok(Delivery {
            refused,
            sent: true,
        })
    }
}
