//! `multipart/form-data` bodies: the uploads of the OpenAI edits and variations APIs, and the
//! job API's alternative to base64 in JSON. The whole body is bounded by the server's body
//! limit; the number of parts and the length of a text part are bounded here.

use axum::extract::Multipart;
use axum::extract::multipart::MultipartError;
use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Map, Value};

use crate::api::{ApiError, too_large};

/// The most parts one form may have.
const MAX_PARTS: usize = 64;
/// The longest text part, in bytes.
const MAX_TEXT: usize = 64 << 10;

/// One part of a form.
#[derive(Debug)]
pub(crate) enum Part {
    /// A field without a file name.
    Text(String),
    /// A file.
    File(Vec<u8>),
}

/// A parsed form: its parts by name, in order.
#[derive(Debug, Default)]
pub(crate) struct Form {
    parts: Vec<(String, Part)>,
}

fn multipart_error(e: MultipartError) -> ApiError {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(e.body_text()),
        _ => ApiError::bad_request(format!("a bad multipart body: {}", e.body_text())),
    }
}

impl Form {
    /// Reads every part.
    pub async fn read(mut multipart: Multipart) -> Result<Self, ApiError> {
        let mut form = Form::default();
        while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
            if form.parts.len() == MAX_PARTS {
                return Err(ApiError::bad_request(format!(
                    "a form of more than {MAX_PARTS} parts"
                )));
            }
            let name = field.name().unwrap_or_default().to_string();
            let is_file = field.file_name().is_some();
            let bytes = field.bytes().await.map_err(multipart_error)?;
            let part = if is_file {
                Part::File(bytes.to_vec())
            } else {
                if bytes.len() > MAX_TEXT {
                    return Err(ApiError::bad_request(format!(
                        "form field `{name}`: longer than {MAX_TEXT} bytes"
                    )));
                }
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::bad_request(format!("form field `{name}`: not UTF-8 text"))
                })?;
                Part::Text(text)
            };
            form.parts.push((name, part));
        }
        Ok(form)
    }

    /// The first part named `name` (or `name[]`, as clients send lists).
    pub fn get(&self, name: &str) -> Option<&Part> {
        self.parts
            .iter()
            .find(|(n, _)| n == name || n.strip_suffix("[]") == Some(name))
            .map(|(_, part)| part)
    }

    /// The bytes of `name`: a file, or a text field holding base64.
    pub fn bytes(&self, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Part::File(bytes)) => Ok(Some(bytes.clone())),
            Some(Part::Text(text)) => crate::request::base64_payload(name, text)
                .map(Some)
                .map_err(|e| ApiError::bad_request(e.0)),
        }
    }

    /// The form as a JSON object: files as base64 strings; a text field as the JSON value it
    /// spells (number, boolean, list, object), except for `strings`, which stay text.
    pub fn to_json(&self, strings: &[&str]) -> Map<String, Value> {
        let mut object = Map::new();
        for (name, part) in &self.parts {
            let name = name.strip_suffix("[]").unwrap_or(name);
            let value = match part {
                Part::File(bytes) => {
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                Part::Text(text) if strings.contains(&name) => Value::String(text.clone()),
                Part::Text(text) => serde_json::from_str(text)
                    .ok()
                    .filter(|v: &Value| !v.is_string())
                    .unwrap_or_else(|| Value::String(text.clone())),
            };
            object.entry(name.to_string()).or_insert(value);
        }
        object
    }
}
