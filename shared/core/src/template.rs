//! Message templates: a named subject with an HTML and/or text body in Jinja syntax, kept as
//! immutable numbered versions, rendered with a request's `data` into the content that is
//! stored and sent.
//!
//! Rendering uses `minijinja` (a well-kept Jinja2 engine): values are HTML-escaped in `html`
//! only (never in `subject` or `text`, which are not HTML); a variable missing from `data` is an
//! error naming every missing variable at once, never an empty string; templates, data and
//! output are bounded ([`TemplateLimits`]), and the engine's fuel bounds the work a template may
//! do (a loop over a large range fails instead of running for the whole request budget).

use std::collections::BTreeSet;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::id::TemplateId;

/// Size and work limits of templates and their rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    /// The longest name, in characters.
    pub max_name_chars: usize,
    /// The largest subject + html + text source, in bytes.
    pub max_source_bytes: usize,
    /// The largest `data` (as JSON), in bytes.
    pub max_data_bytes: usize,
    /// The deepest nesting of `data`.
    pub max_data_depth: usize,
    /// The largest rendered subject + html + text, in bytes.
    pub max_output_bytes: usize,
    /// The engine's fuel: instructions one rendering may run.
    pub fuel: u64,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        Self {
            max_name_chars: 128,
            max_source_bytes: 256 * 1024,
            max_data_bytes: 64 * 1024,
            max_data_depth: 16,
            // The message content limit leaves room for attachments.
            max_output_bytes: 1024 * 1024,
            fuel: 1_000_000,
        }
    }
}

/// The parts of a template (or of its rendering).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateContent {
    /// The subject line.
    pub subject: String,
    /// The HTML body, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// The plain-text body, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Why a template's source or its rendering is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A part does not parse as a template.
    #[error("`{part}` is not a valid template: {detail}")]
    Syntax {
        /// `subject`, `html` or `text`.
        part: &'static str,
        /// The engine's words.
        detail: String,
    },
    /// The source, the data or the output is too large, or the data too deep.
    #[error("{0}")]
    TooLarge(String),
    /// Variables the template uses are not in `data`.
    #[error("data has no value for {}", .missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "))]
    MissingVariables {
        /// Every missing variable, sorted (dotted paths for nested ones).
        missing: Vec<String>,
    },
    /// Rendering failed otherwise (a filter on the wrong type, the fuel ran out, …).
    #[error("rendering `{part}` failed: {detail}")]
    Render {
        /// `subject`, `html` or `text`.
        part: &'static str,
        /// The engine's words.
        detail: String,
    },
}

fn environment(limits: &TemplateLimits) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // The part's name decides the escaping: only `html` is HTML.
    env.set_auto_escape_callback(|name| {
        if name == "html" {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_fuel(Some(limits.fuel));
    env.set_keep_trailing_newline(true);
    env
}

impl TemplateContent {
    /// The parts by name, in order.
    fn parts(&self) -> Vec<(&'static str, &str)> {
        let mut parts = vec![("subject", self.subject.as_str())];
        parts.extend(self.html.as_deref().map(|h| ("html", h)));
        parts.extend(self.text.as_deref().map(|t| ("text", t)));
        parts
    }

    /// Checks a template's source: a subject, at least one body, within the limits, and every
    /// part valid Jinja syntax.
    pub fn check(&self, limits: &TemplateLimits) -> Result<(), TemplateError> {
        if self.html.is_none() && self.text.is_none() {
            return Err(TemplateError::Syntax {
                part: "html",
                detail: "a template needs `html`, `text` or both".to_owned(),
            });
        }
        let size: usize = self.parts().iter().map(|(_, s)| s.len()).sum();
        if size > limits.max_source_bytes {
            return Err(TemplateError::TooLarge(format!(
                "the template is {size} bytes; at most {} are allowed",
                limits.max_source_bytes
            )));
        }
        let env = environment(limits);
        for (part, source) in self.parts() {
            env.template_from_named_str(part, source)
                .map_err(|e| TemplateError::Syntax {
                    part,
                    detail: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Renders every part with `data` (a JSON object).
    pub fn render(
        &self,
        data: &Value,
        limits: &TemplateLimits,
    ) -> Result<TemplateContent, TemplateError> {
        let data_size = serde_json::to_vec(data).map_or(usize::MAX, |v| v.len());
        if data_size > limits.max_data_bytes {
            return Err(TemplateError::TooLarge(format!(
                "`data` is {data_size} bytes; at most {} are allowed",
                limits.max_data_bytes
            )));
        }
        if depth(data) > limits.max_data_depth {
            return Err(TemplateError::TooLarge(format!(
                "`data` is nested deeper than {} levels",
                limits.max_data_depth
            )));
        }
        let env = environment(limits);
        let mut compiled = Vec::new();
        for (part, source) in self.parts() {
            let template =
                env.template_from_named_str(part, source)
                    .map_err(|e| TemplateError::Syntax {
                        part,
                        detail: e.to_string(),
                    })?;
            compiled.push((part, template));
        }
        // Every missing variable at once, before rendering stops at the first one.
        let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
        let mut missing = BTreeSet::new();
        for (_, template) in &compiled {
            for name in template.undeclared_variables(true) {
                let root = name.split('.').next().unwrap_or_default();
                if !globals.contains(root) && !resolves(data, &name) {
                    missing.insert(name);
                }
            }
        }
        if !missing.is_empty() {
            return Err(TemplateError::MissingVariables {
                missing: missing.into_iter().collect(),
            });
        }
        let mut out = TemplateContent {
            subject: String::new(),
            html: None,
            text: None,
        };
        let mut size = 0usize;
        for (part, template) in compiled {
            let rendered = template.render(data).map_err(|e| match e.kind() {
                minijinja::ErrorKind::UndefinedError => TemplateError::MissingVariables {
                    missing: vec![e.detail().unwrap_or("a variable").to_owned()],
                },
                _ => TemplateError::Render {
                    part,
                    detail: e.to_string(),
                },
            })?;
            size += rendered.len();
            if size > limits.max_output_bytes {
                return Err(TemplateError::TooLarge(format!(
                    "the rendered message is over {} bytes",
                    limits.max_output_bytes
                )));
            }
            match part {
                "subject" => out.subject = rendered,
                "html" => out.html = Some(rendered),
                _ => out.text = Some(rendered),
            }
        }
        Ok(out)
    }
}

/// Whether the dotted `path` (`user.name`) names a value in `data`.
fn resolves(data: &Value, path: &str) -> bool {
    let mut at = data;
    for key in path.split('.') {
        match at.get(key) {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A template's name: 1 to `max_name_chars` printable characters, trimmed.
pub fn check_name(name: &str, limits: &TemplateLimits) -> Result<(), String> {
    let chars = name.chars().count();
    if name.trim() != name || chars == 0 {
        return Err("`name` must be non-empty without leading or trailing spaces".to_owned());
    }
    if chars > limits.max_name_chars {
        return Err(format!(
            "`name` has {chars} characters; at most {} are allowed",
            limits.max_name_chars
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("`name` must not contain control characters".to_owned());
    }
    Ok(())
}

/// The template and version a message was rendered from, kept on its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    /// The template.
    pub id: TemplateId,
    /// The version rendered.
    pub version: u32,
}

/// Which template a send uses: its id, a version (the published one when absent) and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateUse {
    /// The template.
    pub id: TemplateId,
    /// The version; the published one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The values of its variables (a JSON object).
    #[serde(default = "empty_object")]
    pub data: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn content(subject: &str, html: Option<&str>, text: Option<&str>) -> TemplateContent {
        TemplateContent {
            subject: subject.to_owned(),
            html: html.map(str::to_owned),
            text: text.map(str::to_owned),
        }
    }

    #[test]
    fn html_is_escaped_and_subject_and_text_are_not() {
        let t = content(
            "Hi {{ name }}",
            Some("<p>Hello {{ name }}</p>"),
            Some("Hello {{ name }}"),
        );
        let out = t
            .render(
                &json!({"name": "<b>Tom & Jerry</b>"}),
                &TemplateLimits::default(),
            )
            .unwrap();
        assert_eq!(out.subject, "Hi <b>Tom & Jerry</b>");
        assert_eq!(
            out.html.unwrap(),
            "<p>Hello &lt;b&gt;Tom &amp; Jerry&lt;&#x2f;b&gt;</p>"
        );
        assert_eq!(out.text.unwrap(), "Hello <b>Tom & Jerry</b>");
    }

    #[test]
    fn every_missing_variable_is_named_at_once() {
        let t = content(
            "Order {{ order.id }}",
            Some("{{ name }} {{ order.total }}"),
            None,
        );
        let err = t
            .render(&json!({"order": {"id": 7}}), &TemplateLimits::default())
            .unwrap_err();
        assert_eq!(
            err,
            TemplateError::MissingVariables {
                missing: vec!["name".to_owned(), "order.total".to_owned()]
            }
        );
        assert_eq!(
            err.to_string(),
            "data has no value for `name`, `order.total`"
        );
    }

    #[test]
    fn loops_and_their_variables_are_not_missing() {
        let t = content(
            "{{ items | length }} items",
            None,
            Some("{% for i in items %}{{ i.name }};{% endfor %}"),
        );
        let out = t
            .render(
                &json!({"items": [{"name": "a"}, {"name": "b"}]}),
                &TemplateLimits::default(),
            )
            .unwrap();
        assert_eq!(out.subject, "2 items");
        assert_eq!(out.text.unwrap(), "a;b;");
    }

    #[test]
    fn bad_syntax_too_much_data_and_runaway_loops_are_refused() {
        let limits = TemplateLimits::default();
        assert!(matches!(
            content("{{ x", Some("y"), None).check(&limits),
            Err(TemplateError::Syntax {
                part: "subject",
                ..
            })
        ));
        assert!(matches!(
            content("x", None, None).check(&limits),
            Err(TemplateError::Syntax { .. })
        ));
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!({ "a": deep });
        }
        assert!(matches!(
            content("x", None, Some("y")).render(&deep, &limits),
            Err(TemplateError::TooLarge(_))
        ));
        let runaway = content(
            "x",
            None,
            Some("{% for i in range(10000000) %}{{ i }}{% endfor %}"),
        );
        assert!(matches!(
            runaway.render(&json!({}), &limits),
            Err(TemplateError::Render { part: "text", .. } | TemplateError::TooLarge(_))
        ));
    }

    #[test]
    fn names_are_checked() {
        let limits = TemplateLimits::default();
        assert!(check_name("Welcome email", &limits).is_ok());
        assert!(check_name("", &limits).is_err());
        assert!(check_name(" x", &limits).is_err());
        assert!(check_name(&"x".repeat(129), &limits).is_err());
    }
}
