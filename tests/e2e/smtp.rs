//! A real SMTP server (aiosmtpd, `smtp_server.py`) on 127.0.0.1 for the e-mail tests, and the
//! messages it stored, parsed back.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use mailparse::{DispositionType, MailHeaderMap, ParsedMail};

#[derive(Default)]
pub struct Options {
    /// Addresses answered with 550.
    pub refuse: Vec<String>,
    /// `starttls` or `smtps`, with a certificate from `certs`.
    pub tls: Option<&'static str>,
    pub certs: Option<Certs>,
    /// `user:password` required to send.
    pub login: Option<String>,
}

pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
}

impl SmtpServer {
    pub fn start(dir: &Path, opts: Options) -> SmtpServer {
        let maildir = dir.join("maildir");
        let script = crate::harness::root().join("tests/e2e/smtp_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg("--maildir")
            .arg(&maildir)
            .arg("--refuse")
            .arg(opts.refuse.join(","));
        if let (Some(tls), Some(certs)) = (opts.tls, &opts.certs) {
            cmd.args(["--tls", tls])
                .arg("--cert")
                .arg(&certs.server_cert)
                .arg("--key")
                .arg(&certs.server_key);
        }
        if let Some(login) = &opts.login {
            cmd.args(["--login", login]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (aiosmtpd: pip install aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("the SMTP test server did not start (is aiosmtpd installed?): {line:?}")
            });
        SmtpServer {
            child,
            port,
            maildir,
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Every stored message, raw.
    pub fn raw_messages(&self) -> Vec<Vec<u8>> {
        let new = self.maildir.join("new");
        let Ok(entries) = std::fs::read_dir(&new) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    pub fn messages(&self) -> Vec<Mail> {
        let mut mails: Vec<Mail> = self
            .raw_messages()
            .iter()
            .map(|raw| Mail::parse(raw))
            .collect();
        mails.sort_by(|a, b| a.to.cmp(&b.to));
        mails
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stored message, parsed back.
#[derive(Debug)]
pub struct Mail {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    /// (file name, content type, bytes)
    pub attachments: Vec<(String, String, Vec<u8>)>,
}

impl Mail {
    pub fn parse(raw: &[u8]) -> Mail {
        let parsed = mailparse::parse_mail(raw).unwrap();
        let h = &parsed.headers;
        let mut body = String::new();
        let mut attachments = Vec::new();
        collect(&parsed, &mut body, &mut attachments);
        Mail {
            from: h.get_first_value("From").unwrap_or_default(),
            to: h.get_first_value("To").unwrap_or_default(),
            subject: h.get_first_value("Subject").unwrap_or_default(),
            body,
            attachments,
        }
    }
}

fn collect(part: &ParsedMail, body: &mut String, attachments: &mut Vec<(String, String, Vec<u8>)>) {
    if !part.subparts.is_empty() {
        for p in &part.subparts {
            collect(p, body, attachments);
        }
        return;
    }
    let disposition = part.get_content_disposition();
    if disposition.disposition == DispositionType::Attachment {
        let name = disposition
            .params
            .get("filename")
            .cloned()
            .unwrap_or_default();
        attachments.push((
            name,
            part.ctype.mimetype.clone(),
            part.get_body_raw().unwrap(),
        ));
    } else if part.ctype.mimetype == "text/plain" {
        body.push_str(&part.get_body().unwrap());
    }
}

/// A CA and a server certificate for 127.0.0.1/localhost signed by it (openssl CLI).
pub struct Certs {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

pub fn make_certs(dir: &Path) -> Certs {
    let p = |n: &str| dir.join(n);
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=b24-etl test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        p("ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    Certs {
        ca_cert: p("ca.pem"),
        server_cert: p("server.pem"),
        server_key: p("server.key"),
    }
}

/// A tiny HTTP server for attachments given by URL: `/files/<name>` gives `files[name]` as
/// `content_type`, anything else 404.
pub fn file_server(content_type: &'static str, files: Vec<(&'static str, Vec<u8>)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or_default();
            let found = files
                .iter()
                .find(|(name, _)| path == format!("/files/{name}"));
            let mut out = stream;
            let _ = match found {
                Some((_, body)) => out
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| out.write_all(body)),
                None => out.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    port
}
