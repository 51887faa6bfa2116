//! Reading an upload: the size limit enforced while the body streams in, the document name
//! checked, the content checked before anything is queued.

use axum::body::Body;
use axum::extract::Multipart;
use futures::StreamExt;

use crate::error::ApiError;

/// Most text fields a form may carry beside the file.
const MAX_FIELDS: usize = 32;

/// Longest option field, bytes; and the longest unit schema (field or query `schema`).
const MAX_FIELD_BYTES: usize = 4096;
pub const MAX_SCHEMA_BYTES: usize = 65_536;

/// Longest document name kept, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// The body's bytes, refused with 413 as soon as they pass `limit` (memory stays bounded by it).
pub async fn read_limited(body: Body, limit: u64) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| body_error(&e.to_string(), limit))?;
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A multipart upload: the `file` field's bytes and file name, and the text fields beside it.
pub struct MultipartUpload {
    pub bytes: Vec<u8>,
    pub file_name: Option<String>,
    pub fields: Vec<(String, String)>,
}

/// Reads a multipart form, streaming the `file` field under `limit`.
pub async fn read_multipart(mut form: Multipart, limit: u64) -> Result<MultipartUpload, ApiError> {
    let mut upload = MultipartUpload { bytes: Vec::new(), file_name: None, fields: Vec::new() };
    let mut seen_file = false;
    while let Some(mut field) =
        form.next_field().await.map_err(|e| ApiError::bad_request(format!("the multipart body is malformed: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            if seen_file {
                return Err(ApiError::bad_request("send one file per upload (one `file` field)"));
            }
            seen_file = true;
            upload.file_name = field.file_name().map(str::to_string);
            while let Some(chunk) = field.chunk().await.map_err(|e| body_error(&e.to_string(), limit))? {
                if (upload.bytes.len() + chunk.len()) as u64 > limit {
                    return Err(ApiError::too_large(limit));
                }
                upload.bytes.extend_from_slice(&chunk);
            }
        } else {
            if upload.fields.len() >= MAX_FIELDS {
                return Err(ApiError::bad_request(format!("the form has more than {MAX_FIELDS} fields")));
            }
            // Option fields are short (a schema less so); a long one is not an option.
            let most = if name == "schema" { MAX_SCHEMA_BYTES } else { MAX_FIELD_BYTES };
            let mut text = Vec::new();
            while let Some(chunk) =
                field.chunk().await.map_err(|e| ApiError::bad_request(format!("field '{name}': {e}")))?
            {
                if text.len() + chunk.len() > most {
                    return Err(ApiError::bad_request(format!("field '{name}' is longer than {most} bytes")));
                }
                text.extend_from_slice(&chunk);
            }
            let text = String::from_utf8(text)
                .map_err(|_| ApiError::bad_request(format!("field '{name}' is not UTF-8 text")))?;
            upload.fields.push((name, text));
        }
    }
    if !seen_file {
        return Err(ApiError::bad_request("the multipart body has no `file` field"));
    }
    Ok(upload)
}

fn body_error(message: &str, limit: u64) -> ApiError {
    // axum reports its own length limit as an error of the body stream.
    if message.contains("length limit") {
        ApiError::too_large(limit)
    } else {
        ApiError::bad_request(format!("the upload could not be read: {message}"))
    }
}

/// The document's name as given, checked: no control characters, no path (a browser sends the
/// file name only; a path's last part is kept), not empty, not `.` or `..`. It is only ever
/// shown: the store keys documents by their SHA-256, never by name.
pub fn document_name(given: &str) -> Result<String, ApiError> {
    if given.chars().any(char::is_control) {
        return Err(ApiError::bad_request("the document name contains control characters"));
    }
    let parts: Vec<&str> = given.split(['/', '\\']).collect();
    if parts.contains(&"..") {
        return Err(ApiError::bad_request("the document name is a path that leaves its directory ('..')"));
    }
    let last = parts.last().copied().unwrap_or_default().trim();
    if last.is_empty() || last == "." {
        return Err(ApiError::bad_request("the document name is empty: pass ?name=FILE or a file name in the form"));
    }
    if last.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad_request(format!("the document name is longer than {MAX_NAME_BYTES} bytes")));
    }
    Ok(last.to_string())
}

/// Checks that the bytes are a document BEACON reads, before queueing it: 400 when empty, 415
/// for a format it does not read, 422 for a document it cannot (corrupt, encrypted, a
/// decompression bomb, too many units). The same ingestion an execution runs, with its limits.
pub async fn check_document(
    bytes: std::sync::Arc<Vec<u8>>,
    limits: beacon_ingest::Limits,
    password: Option<String>,
) -> Result<(), ApiError> {
    use beacon_ingest::IngestError;
    let checked = tokio::task::spawn_blocking(move || {
        beacon_ingest::detect_format(&bytes)?;
        beacon_ingest::ingest_with_password(&bytes, &limits, password.as_deref()).map(|_| ())
    })
    .await
    .map_err(|e| ApiError::internal("reading the document failed", e))?;
    match checked {
        Ok(()) => Ok(()),
        Err(IngestError::Empty) => Err(ApiError::bad_request("the upload is empty")),
        Err(e @ IngestError::Unsupported(_)) => Err(ApiError::unsupported(e.to_string())),
        Err(e @ IngestError::TooLarge { .. }) => {
            Err(ApiError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.to_string()))
        }
        Err(e) => Err(ApiError::unprocessable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::document_name;

    #[test]
    fn names_keep_their_script_and_lose_their_path() {
        assert_eq!(document_name("報告書 2026.pdf").unwrap(), "報告書 2026.pdf");
        assert_eq!(document_name("C:\\Users\\me\\a.pdf").unwrap(), "a.pdf");
        assert_eq!(document_name("dir/b.csv").unwrap(), "b.csv");
        assert!(document_name("../../etc/passwd").is_err());
        assert!(document_name("a\u{0}b.pdf").is_err());
        assert!(document_name("a\nb.pdf").is_err());
        assert!(document_name("").is_err());
        assert!(document_name("dir/").is_err());
        assert!(document_name(&"x".repeat(300)).is_err());
    }
}
