//! The message of one record: headers (From, To, Cc — never Bcc), a text or HTML body, the
//! attachments; and the envelope, where the Bcc recipients are.

use std::collections::HashSet;

use lettre::Address;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox as LettreMailbox, MultiPart, SinglePart};
use lettre::{Message, message::MessageBuilder};

use super::attachments::{Fetched, Wanted};
use crate::expr::filters::mailboxes::{self, Mailbox};

pub struct Letter {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub subject: String,
    pub body: String,
    pub html: bool,
    pub attachments: Vec<Wanted>,
    /// Recipients and attachments left out, each `name (reason)`.
    pub skipped: Vec<String>,
}

/// The sender from `address`, `address:Name` or `Name <address>`.
pub fn sender(text: &str) -> Result<Mailbox, String> {
    let parsed = mailboxes::parse(Some(&serde_json::Value::String(text.to_string())));
    match (parsed.valid.as_slice(), parsed.invalid.is_empty()) {
        ([one], true) => Ok(one.clone()),
        _ => Err(format!("Недопустимый адрес отправителя: «{}»", text.trim())),
    }
}

fn lettre_mailbox(m: &Mailbox) -> LettreMailbox {
    let address: Address = m.email.parse().expect("checked by mailboxes::parse");
    let name = Some(m.name.clone()).filter(|n| !n.is_empty());
    LettreMailbox::new(name, address)
}

impl Letter {
    /// Each address once, in the first field that names it (To, then Cc, then Bcc).
    pub fn deduplicated(mut self) -> Letter {
        let mut seen = HashSet::new();
        for list in [&mut self.to, &mut self.cc, &mut self.bcc] {
            list.retain(|m| seen.insert(m.email.to_lowercase()));
        }
        self
    }

    pub fn recipients(&self) -> usize {
        self.to.len() + self.cc.len() + self.bcc.len()
    }

    pub fn sender_address(&self) -> Address {
        self.from.email.parse().expect("checked by sender()")
    }

    /// Who the server is asked to deliver to: To, Cc and Bcc.
    pub fn envelope(&self) -> Vec<Address> {
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(|m| m.email.parse().expect("checked by mailboxes::parse"))
            .collect()
    }

    fn headers(&self, message_id: &str) -> MessageBuilder {
        let mut b = Message::builder()
            .from(lettre_mailbox(&self.from))
            .subject(self.subject.trim())
            .message_id(Some(message_id.to_string()));
        for m in &self.to {
            b = b.to(lettre_mailbox(m));
        }
        for m in &self.cc {
            b = b.cc(lettre_mailbox(m));
        }
        // No `.bcc()`: Bcc recipients are only in the envelope, so no header can reveal them.
        b
    }

    /// The message as it goes over the wire, and its Message-ID.
    pub fn format(&self, files: &[Fetched]) -> Result<(String, Vec<u8>), String> {
        let domain = self.from.email.rsplit('@').next().unwrap_or("localhost");
        let message_id = format!("<{:032x}@{domain}>", rand::random::<u128>());
        let text = if self.html {
            SinglePart::html(self.body.clone())
        } else {
            SinglePart::plain(self.body.clone())
        };
        // lettre takes the envelope from the headers unless told; it is set explicitly so that the
        // header-less Bcc recipients are in it.
        let envelope = lettre::address::Envelope::new(Some(self.sender_address()), self.envelope())
            .map_err(|e| e.to_string())?;
        let builder = self.headers(&message_id).envelope(envelope);
        let message = if files.is_empty() {
            builder.singlepart(text)
        } else {
            let mut parts = MultiPart::mixed().singlepart(text);
            for f in files {
                let mime = ContentType::parse(&f.content_type)
                    .unwrap_or_else(|_| ContentType::parse("application/octet-stream").unwrap());
                parts =
                    parts.singlepart(Attachment::new(f.name.clone()).body(f.bytes.clone(), mime));
            }
            builder.multipart(parts)
        }
        .map_err(|e| format!("письмо не собрано: {e}"))?;
        Ok((message_id, message.formatted()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(email: &str, name: &str) -> Mailbox {
        Mailbox {
            email: email.into(),
            name: name.into(),
        }
    }

    fn letter() -> Letter {
        Letter {
            from: sender("robot@x.ru:Робот").unwrap(),
            to: vec![mb("a@x.ru", "Анна")],
            cc: vec![mb("b@x.ru", ""), mb("A@x.ru", "")],
            bcc: vec![mb("hidden@x.ru", ""), mb("b@x.ru", "")],
            subject: "Тема".into(),
            body: "<b>Привет</b>".into(),
            html: true,
            attachments: vec![],
            skipped: vec![],
        }
        .deduplicated()
    }

    #[test]
    fn bcc_is_in_the_envelope_only() {
        let l = letter();
        let to: Vec<String> = l.envelope().iter().map(|a| a.to_string()).collect();
        assert_eq!(to, ["a@x.ru", "b@x.ru", "hidden@x.ru"]);
        let (id, bytes) = l.format(&[]).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("hidden@x.ru"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("bcc:"), "{text}");
        assert!(text.contains("text/html"), "{text}");
        assert!(text.contains(&format!("Message-ID: {id}")), "{text}");
        assert!(id.ends_with("@x.ru>"), "{id}");
    }

    #[test]
    fn senders() {
        assert_eq!(
            sender(" manager@privet.ru : Менеджер «ООО Привет»").unwrap(),
            mb("manager@privet.ru", "Менеджер «ООО Привет»")
        );
        assert!(sender("не адрес").is_err());
        assert!(sender("a@x.ru, b@x.ru").is_err());
        assert!(sender("").is_err());
    }
}
