//! Attachments by URL: downloaded over http(s) with a timeout and a size cap. The URLs come from
//! whoever fills in the pipeline's inputs, so nothing but http(s) is fetched and a file that
//! does not arrive whole is skipped and named, never sent half.

use crate::connectors::http::client::client_with_redirects;
use std::time::Duration;

use serde_json::Value as Json;

/// One attachment asked for: where to get it and, optionally, the name to give it.
#[derive(Clone, Debug, PartialEq)]
pub struct Wanted {
    pub url: String,
    pub name: Option<String>,
}

/// A downloaded file.
pub struct Fetched {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The attachments a value asks for: a URL, a list of URLs and `{url, name}` objects (nested
/// lists flattened; empty items ignored). Items that are neither are returned as written.
pub fn wanted(v: &Json) -> (Vec<Wanted>, Vec<String>) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    collect(v, &mut ok, &mut bad);
    (ok, bad)
}

fn collect(v: &Json, ok: &mut Vec<Wanted>, bad: &mut Vec<String>) {
    match v {
        Json::Null => {}
        Json::Array(items) => items.iter().for_each(|i| collect(i, ok, bad)),
        Json::String(s) if s.trim().is_empty() => {}
        Json::String(s) => ok.push(Wanted {
            url: s.trim().to_string(),
            name: None,
        }),
        Json::Object(o) => match o.get("url").and_then(Json::as_str).map(str::trim) {
            Some(url) if !url.is_empty() => ok.push(Wanted {
                url: url.to_string(),
                name: o
                    .get("name")
                    .and_then(Json::as_str)
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(String::from),
            }),
            _ => bad.push(v.to_string()),
        },
        other => bad.push(other.to_string()),
    }
}

/// The file name a URL gives: its last path segment, percent-decoded; `file` when empty.
pub fn name_from_url(url: &url::Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(last)
        .decode_utf8_lossy()
        .trim()
        .to_string();
    if decoded.is_empty() {
        "file".into()
    } else {
        decoded
    }
}

/// The name a skipped attachment is reported by: the name asked for, else the URL's file name.
pub fn label(w: &Wanted) -> String {
    w.name
        .clone()
        .unwrap_or_else(|| match url::Url::parse(&w.url) {
            Ok(u) => name_from_url(&u),
            Err(_) => w.url.clone(),
        })
}

/// Download links (Bitrix24 Drive among them) redirect to the storage: a few hops only, and
/// only to http(s).
fn client(timeout: Duration) -> reqwest::Client {
    client_with_redirects(timeout, reqwest::redirect::Policy::limited(5))
}

/// Download one attachment; the error is the reason it is skipped.
pub async fn fetch(w: &Wanted, max_bytes: u64, timeout: Duration) -> Result<Fetched, String> {
    let url = url::Url::parse(&w.url).map_err(|_| "не ссылка http(s)".to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("не ссылка http(s)".into());
    }
    let mut resp = client(timeout)
        .get(url.clone())
        .send()
        .await
        .map_err(|e| format!("не удалось скачать: {}", describe(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("не удалось скачать: HTTP {}", status.as_u16()));
    }
    let too_big = || format!("больше {} МБ", max_bytes / (1024 * 1024));
    if resp.content_length().is_some_and(|n| n > max_bytes) {
        return Err(too_big());
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.parse::<lettre::message::header::ContentType>().is_ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("не удалось скачать: {}", describe(&e)))?
    {
        if bytes.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(too_big());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        name: w.name.clone().unwrap_or_else(|| name_from_url(&url)),
        content_type,
        bytes,
    })
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "нет ответа вовремя".into()
    } else if e.is_connect() {
        "нет соединения".into()
    } else if e.is_redirect() {
        "слишком много перенаправлений".into()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_and_objects() {
        let (ok, bad) = wanted(&json!([
            "https://x.ru/a.pdf",
            {"url": "https://x.ru/b", "name": "Счёт.pdf"},
            ["", null],
            {"name": "no url"},
            5
        ]));
        assert_eq!(
            ok,
            [
                Wanted {
                    url: "https://x.ru/a.pdf".into(),
                    name: None
                },
                Wanted {
                    url: "https://x.ru/b".into(),
                    name: Some("Счёт.pdf".into())
                }
            ]
        );
        assert_eq!(bad, [r#"{"name":"no url"}"#, "5"]);
    }

    #[test]
    fn names_from_urls() {
        let n = |u: &str| name_from_url(&url::Url::parse(u).unwrap());
        assert_eq!(
            n("https://x.ru/files/%D0%A1%D1%87%D1%91%D1%82.pdf?x=1"),
            "Счёт.pdf"
        );
        assert_eq!(n("https://x.ru/"), "file");
        assert_eq!(n("https://x.ru"), "file");
    }
}
