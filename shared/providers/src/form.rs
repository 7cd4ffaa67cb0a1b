//! HTML form bodies as providers post them: `multipart/form-data` (read with multer, the parser
//! axum uses) or `application/x-www-form-urlencoded`. SendGrid Inbound Parse and Mailgun routes
//! post received mail this way.

use bytes::Bytes;

use crate::webhook::PayloadError;

/// One uploaded file of a multipart form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormFile {
    /// The form field's name, e.g. `attachment1`.
    pub field: String,
    /// The file name the sender gave, if any.
    pub filename: Option<String>,
    /// The part's content type, if given.
    pub content_type: Option<String>,
    /// The bytes.
    pub content: Vec<u8>,
}

/// A form's text fields (in order, repeated names kept) and files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    /// Text fields: (name, value).
    pub fields: Vec<(String, String)>,
    /// File parts.
    pub files: Vec<FormFile>,
}

impl Form {
    /// The first value of the field `name` (case-sensitive, as forms are), if not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }
}

/// Whether `content_type` names a form encoding this module reads.
pub fn is_form(content_type: Option<&str>) -> bool {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    matches!(
        essence.as_deref(),
        Some("multipart/form-data" | "application/x-www-form-urlencoded")
    )
}

/// Reads `body` as the form `content_type` declares.
pub async fn read_form(body: &[u8], content_type: Option<&str>) -> Result<Form, PayloadError> {
    let content_type = content_type.unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => {
            let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| PayloadError::new(format!("not a URL-encoded form: {e}")))?;
            Ok(Form {
                fields,
                files: Vec::new(),
            })
        }
        "multipart/form-data" => read_multipart(body, content_type).await,
        _ => Err(PayloadError::new(format!(
            "expected a form (multipart/form-data or application/x-www-form-urlencoded), got {:?}",
            content_type
        ))),
    }
}

async fn read_multipart(body: &[u8], content_type: &str) -> Result<Form, PayloadError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| PayloadError::new(format!("multipart form without a boundary: {e}")))?;
    let chunk = Bytes::copy_from_slice(body);
    let stream = futures::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(chunk) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut form = Form::default();
    let unreadable =
        |e: multer::Error| PayloadError::new(format!("unreadable multipart form: {e}"));
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let part_type = field.content_type().map(ToString::to_string);
        let content = field.bytes().await.map_err(unreadable)?;
        match filename {
            Some(filename) => form.files.push(FormFile {
                field: name,
                filename: Some(filename),
                content_type: part_type,
                content: content.to_vec(),
            }),
            // Text fields arrive in UTF-8 (both providers say so; SendGrid's `charsets` field
            // names the charset of the original message's parts, already decoded here).
            None => form
                .fields
                .push((name, String::from_utf8_lossy(&content).into_owned())),
        }
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_text_fields_and_files_of_a_multipart_form() {
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nsupport@in.example.com\r\n--xyz\r\nContent-Disposition: form-data; name=\"attachment1\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xyz--\r\n";
        let form = read_form(body, Some("multipart/form-data; boundary=xyz"))
            .await
            .unwrap();
        assert_eq!(form.get("to"), Some("support@in.example.com"));
        assert_eq!(form.files.len(), 1);
        assert_eq!(form.files[0].field, "attachment1");
        assert_eq!(form.files[0].filename.as_deref(), Some("a.txt"));
        assert_eq!(form.files[0].content, b"hello");
    }

    #[tokio::test]
    async fn reads_a_url_encoded_form_and_refuses_anything_else() {
        let form = read_form(
            b"recipient=a%40b.example&subject=Re%3A+hi",
            Some("application/x-www-form-urlencoded"),
        )
        .await
        .unwrap();
        assert_eq!(form.get("subject"), Some("Re: hi"));
        assert!(read_form(b"{}", Some("application/json")).await.is_err());
        assert!(
            read_form(b"--a\r\n", Some("multipart/form-data"))
                .await
                .is_err()
        );
        assert!(is_form(Some("multipart/form-data; boundary=x")));
        assert!(!is_form(Some("application/json")));
    }
}
