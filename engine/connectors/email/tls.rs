//! TLS for SMTP, shared by the `email` sink and the `smtp.send` step: the public roots lettre
//! ships (webpki-roots, the Mozilla store) plus the PEM files a pipeline or the host names for a
//! private CA.

use std::path::Path;

use lettre::transport::smtp::client::{Certificate, TlsParameters};

/// TLS parameters for `host` (a name or an IP literal, brackets allowed) trusting the public
/// roots and every certificate in `extra_pem_files`.
pub fn parameters(host: &str, extra_pem_files: &[&Path]) -> Result<TlsParameters, String> {
    let host = host.trim_matches(|c| c == '[' || c == ']').to_string();
    let mut builder = TlsParameters::builder(host);
    for file in extra_pem_files {
        let pem = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", file.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| e.to_string())
}

/// The PEM file named by `SSL_CERT_FILE`, when set: the private CA the host trusts besides the
/// public roots (the convention OpenSSL, curl and Python share).
pub fn ssl_cert_file() -> Option<std::path::PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
}
