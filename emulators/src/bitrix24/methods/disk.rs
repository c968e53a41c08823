//! `disk.file.get {id}`: a Drive file's card with a `DOWNLOAD_URL` the emulator itself serves
//! (`/disk/download/ID/?token=…`). A file may be readable by some users only (`READERS`).

use super::*;

pub(super) fn file_get(
    portal: &Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let id = get_ci(params, "id").and_then(id_of).unwrap_or(0);
    let mut row = portal.get("disk_file", id).ok_or_else(|| {
        ApiError::new(
            400,
            "ERROR_NOT_FOUND",
            &format!("Could not find entity with id '{id}'"),
        )
    })?;
    if let Some(Value::Array(readers)) = row.remove("READERS")
        && !readers.iter().filter_map(id_of).any(|u| u == env.user_id)
    {
        return Err(ApiError::new(403, "ACCESS_DENIED", "Access denied"));
    }
    let token = row
        .remove("DOWNLOAD_TOKEN")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let base = &portal.base_url;
    row.insert(
        "DOWNLOAD_URL".into(),
        json!(format!("{base}/disk/download/{id}/?token={token}")),
    );
    row.insert("DETAIL_URL".into(), json!(format!("{base}/docs/file/{id}")));
    Ok(Reply::value(Value::Object(row)))
}
