//! Drive files: their contents, the download URL `disk.file.get` hands out
//! (`/disk/download/ID/?token=…`), and the test API that puts a file on the portal.

use super::*;
use axum::extract::Request;

/// `GET /disk/download/ID/?token=T`: the file's bytes, or 404 for a wrong ID or token.
pub(super) fn download(sh: &Shared, req: &Request) -> Response {
    let id = req
        .uri()
        .path()
        .trim_start_matches("/disk/download/")
        .trim_end_matches('/')
        .parse::<u64>()
        .unwrap_or(0);
    let q = params::parse_query(req.uri().query().unwrap_or(""));
    let token = q.get("token").and_then(Value::as_str).unwrap_or("");
    let portal = lock(&sh.portal);
    let row = portal.get("disk_file", id).unwrap_or_default();
    let valid =
        !token.is_empty() && row.get("DOWNLOAD_TOKEN").and_then(Value::as_str) == Some(token);
    let (Some(bytes), true) = (portal.files.get(&id), valid) else {
        return http::html_response(404, "404 Not Found");
    };
    let name = row.get("NAME").and_then(Value::as_str).unwrap_or("file");
    let mut r = Response::new(Body::from(bytes.clone()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let disposition = format!(
        "attachment; filename*=utf-8''{}",
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    drop(portal);
    *lock(&sh.stats)
        .by_method
        .entry("disk.download".into())
        .or_default() += 1;
    r
}

impl Portal {
    /// Put a file on the portal's Drive; `readers` limits who may `disk.file.get` it
    /// (None: everyone). Returns its ID.
    pub fn add_disk_file(&mut self, name: &str, content: &[u8], readers: Option<&[u64]>) -> u64 {
        let id = self.table_mut("disk_file").next_id().max(1);
        let mut row = json!({
            "ID": id.to_string(), "NAME": name, "CODE": null, "STORAGE_ID": "1", "TYPE": "file",
            "PARENT_ID": "1", "DELETED_TYPE": "0", "GLOBAL_CONTENT_VERSION": "1", "FILE_ID": (id + 7000).to_string(),
            "SIZE": content.len().to_string(), "CREATE_TIME": "2024-06-01T10:00:00+03:00",
            "UPDATE_TIME": "2024-06-01T10:00:00+03:00", "DELETE_TIME": null, "CREATED_BY": "1",
            "UPDATED_BY": "1", "DELETED_BY": null, "DOWNLOAD_TOKEN": app::random_token(24),
        });
        if let Some(r) = readers {
            row["READERS"] = json!(r);
        }
        if let Value::Object(m) = row {
            self.insert("disk_file", m);
        }
        self.files.insert(id, content.to_vec());
        id
    }
}

impl Emulator {
    /// Put a file on the portal's Drive (see [`Portal::add_disk_file`]); its downloads are
    /// counted as `requests("disk.download")`.
    pub fn add_disk_file(&self, name: &str, content: &[u8], readers: Option<&[u64]>) -> u64 {
        lock(&self.shared.portal).add_disk_file(name, content, readers)
    }
}
