//! Reading `infra/template.yaml` and resolving the intrinsic functions the local stack needs.
//!
//! CloudFormation's own resolver is not available offline (moto cannot run the SAM transform), so
//! this resolves the small, documented subset the template uses — `Ref`, `Fn::Sub`, `Fn::GetAtt`,
//! `Fn::Join` — and fails loudly on anything else rather than guessing.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

/// A problem reading or resolving the template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The template path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// The template has a shape this resolver does not understand.
    #[error("template: {0}")]
    Shape(String),
}

/// A parsed CloudFormation/SAM template with short-form tags turned into long form.
#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
}

/// One resource of the template.
#[derive(Debug, Clone)]
pub struct Resource<'a> {
    /// Its logical id, e.g. `MessagesTable`.
    pub logical_id: &'a str,
    /// Its type, e.g. `AWS::DynamoDB::Table`.
    pub kind: &'a str,
    /// Its `Properties` (empty object when absent).
    pub properties: &'a Value,
    /// Its `Metadata` (null when absent).
    pub metadata: &'a Value,
}

static EMPTY: Value = Value::Null;

impl Template {
    /// Reads and parses a template file.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses template text.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)?;
        let root = to_json(yaml)?;
        if !root.get("Resources").is_some_and(Value::is_object) {
            return Err(TemplateError::Shape("no Resources section".into()));
        }
        Ok(Self { root })
    }

    /// Every resource, ordered by logical id.
    pub fn resources(&self) -> impl Iterator<Item = Resource<'_>> {
        self.root["Resources"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(id, r)| Resource {
                logical_id: id,
                kind: r.get("Type").and_then(Value::as_str).unwrap_or(""),
                properties: r.get("Properties").unwrap_or(&EMPTY),
                metadata: r.get("Metadata").unwrap_or(&EMPTY),
            })
    }

    /// The resources of one type.
    pub fn resources_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = Resource<'a>> + 'a {
        self.resources().filter(move |r| r.kind == kind)
    }

    /// The default value of every parameter that has one.
    pub fn parameter_defaults(&self) -> BTreeMap<String, String> {
        self.root
            .get("Parameters")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                let d = v.get("Default")?;
                Some((k.clone(), scalar_text(d)?))
            })
            .collect()
    }

    /// A top-level section (`Parameters`, `Conditions`, `Outputs`, …) as parsed, short-form tags
    /// in long form; `None` when the template has no such section.
    pub fn section(&self, name: &str) -> Option<&Value> {
        self.root.get(name)
    }

    /// `Globals.Function.Environment.Variables`, unresolved.
    pub fn global_function_variables(&self) -> Option<&Map<String, Value>> {
        self.root
            .pointer("/Globals/Function/Environment/Variables")
            .and_then(Value::as_object)
    }
}

/// The text of a scalar (numbers and booleans as CloudFormation would stringify them).
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Converts YAML to JSON, turning CloudFormation short-form tags into their long form.
fn to_json(v: serde_yaml_ng::Value) -> Result<Value, TemplateError> {
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n)
            .map_err(|e| TemplateError::Shape(format!("number {n}: {e}")))?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    other => {
                        return Err(TemplateError::Shape(format!("non-string key {other:?}")));
                    }
                };
                out.insert(key, to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(tagged.value)?;
            let (key, value) = match name {
                "Ref" => ("Ref".to_owned(), inner),
                "Condition" => ("Condition".to_owned(), inner),
                // `!GetAtt A.B` is the dotted short form of `Fn::GetAtt: [A, B]`.
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (res, attr) = s.split_once('.').ok_or_else(|| {
                            TemplateError::Shape(format!("!GetAtt {s} needs Resource.Attribute"))
                        })?;
                        ("Fn::GetAtt".to_owned(), serde_json::json!([res, attr]))
                    }
                    other => ("Fn::GetAtt".to_owned(), other),
                },
                other => (format!("Fn::{other}"), inner),
            };
            let mut out = Map::new();
            out.insert(key, value);
            Value::Object(out)
        }
    })
}

/// What a resource resolves to: `Ref` and each `Fn::GetAtt` attribute.
#[derive(Debug, Clone, Default)]
pub struct Physical {
    /// The value of `Ref`.
    pub reference: String,
    /// Attribute values by name.
    pub attributes: BTreeMap<String, String>,
}

/// Resolves intrinsic functions against parameters and provisioned resources.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// Parameters and pseudo parameters (`AWS::Region`, …) by name.
    pub parameters: BTreeMap<String, String>,
    /// Provisioned resources by logical id.
    pub resources: BTreeMap<String, Physical>,
}

impl Resolver {
    /// Resolves a value to a string.
    pub fn string(&self, v: &Value) -> Result<String, TemplateError> {
        match self.resolve(v)? {
            Value::String(s) => Ok(s),
            other => scalar_text(&other)
                .ok_or_else(|| TemplateError::Shape(format!("not a scalar: {other}"))),
        }
    }

    /// Resolves every intrinsic function inside `v`.
    pub fn resolve(&self, v: &Value) -> Result<Value, TemplateError> {
        match v {
            Value::Object(map) if map.len() == 1 => {
                let (k, arg) = map
                    .iter()
                    .next()
                    .ok_or_else(|| TemplateError::Shape("empty".into()))?;
                match k.as_str() {
                    "Ref" => self.reference(arg).map(Value::String),
                    "Fn::Sub" => self.sub(arg).map(Value::String),
                    "Fn::GetAtt" => self.get_att(arg).map(Value::String),
                    "Fn::Join" => self.join(arg).map(Value::String),
                    other if other.starts_with("Fn::") => Err(TemplateError::Shape(format!(
                        "intrinsic {other} is not supported by the local stack"
                    ))),
                    _ => self.resolve_object(map),
                }
            }
            Value::Object(map) => self.resolve_object(map),
            Value::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|i| self.resolve(i))
                    .collect::<Result<_, _>>()?,
            )),
            other => Ok(other.clone()),
        }
    }

    fn resolve_object(&self, map: &Map<String, Value>) -> Result<Value, TemplateError> {
        let mut out = Map::new();
        for (k, v) in map {
            out.insert(k.clone(), self.resolve(v)?);
        }
        Ok(Value::Object(out))
    }

    fn reference(&self, arg: &Value) -> Result<String, TemplateError> {
        let name = arg
            .as_str()
            .ok_or_else(|| TemplateError::Shape(format!("Ref needs a name, got {arg}")))?;
        if let Some(p) = self.parameters.get(name) {
            return Ok(p.clone());
        }
        self.resources
            .get(name)
            .map(|r| r.reference.clone())
            .ok_or_else(|| TemplateError::Shape(format!("Ref to unknown or unprovisioned {name}")))
    }

    fn get_att(&self, arg: &Value) -> Result<String, TemplateError> {
        let parts: Vec<&str> = match arg {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            Value::String(s) => s.splitn(2, '.').collect(),
            _ => Vec::new(),
        };
        let [res, attr] = parts[..] else {
            return Err(TemplateError::Shape(format!("bad Fn::GetAtt {arg}")));
        };
        self.resources
            .get(res)
            .and_then(|r| r.attributes.get(attr))
            .cloned()
            .ok_or_else(|| {
                TemplateError::Shape(format!("Fn::GetAtt {res}.{attr} is not available"))
            })
    }

    fn join(&self, arg: &Value) -> Result<String, TemplateError> {
        let (sep, items) = match arg.as_array().map(Vec::as_slice) {
            Some([Value::String(sep), Value::Array(items)]) => (sep, items),
            _ => return Err(TemplateError::Shape(format!("bad Fn::Join {arg}"))),
        };
        let parts = items
            .iter()
            .map(|i| self.string(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(parts.join(sep))
    }

    fn sub(&self, arg: &Value) -> Result<String, TemplateError> {
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), None),
            Value::Array(a) => match a.as_slice() {
                [Value::String(s), Value::Object(vars)] => (s.as_str(), Some(vars)),
                _ => return Err(TemplateError::Shape(format!("bad Fn::Sub {arg}"))),
            },
            _ => return Err(TemplateError::Shape(format!("bad Fn::Sub {arg}"))),
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            // `${!Literal}` is an escaped, literal `${Literal}`.
            if let Some(lit) = after.strip_prefix('!') {
                let end = lit
                    .find('}')
                    .ok_or_else(|| TemplateError::Shape(format!("unclosed ${{ in {text}")))?;
                out.push_str("${");
                out.push_str(&lit[..=end]);
                rest = &lit[end + 1..];
                continue;
            }
            let end = after
                .find('}')
                .ok_or_else(|| TemplateError::Shape(format!("unclosed ${{ in {text}")))?;
            let name = &after[..end];
            let value = match vars.and_then(|v| v.get(name)) {
                Some(v) => self.string(v)?,
                None if name.contains('.') => self.get_att(&Value::String(name.to_owned()))?,
                None => self.reference(&Value::String(name.to_owned()))?,
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
Parameters:
  Environment:
    Type: String
    Default: dev
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "mailgate-${Environment}-q"
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt D.Arn
        maxReceiveCount: 5
  D:
    Type: AWS::SQS::Queue
"#;

    fn resolver() -> Resolver {
        let mut r = Resolver::default();
        r.parameters.insert("Environment".into(), "t1".into());
        r.parameters
            .insert("AWS::Region".into(), "us-east-1".into());
        let mut d = Physical {
            reference: "http://q/d".into(),
            ..Default::default()
        };
        d.attributes
            .insert("Arn".into(), "arn:aws:sqs:us-east-1:1:d".into());
        r.resources.insert("D".into(), d);
        r
    }

    #[test]
    fn short_form_tags_become_long_form_and_resolve() {
        let t = Template::parse(TEXT).unwrap();
        assert_eq!(t.parameter_defaults()["Environment"], "dev");
        let q = t.resources().find(|r| r.logical_id == "Q").unwrap();
        assert_eq!(q.kind, "AWS::SQS::Queue");
        let props = resolver().resolve(q.properties).unwrap();
        assert_eq!(props["QueueName"], "mailgate-t1-q");
        assert_eq!(
            props["RedrivePolicy"]["deadLetterTargetArn"],
            "arn:aws:sqs:us-east-1:1:d"
        );
        assert_eq!(props["RedrivePolicy"]["maxReceiveCount"], 5);
    }

    #[test]
    fn sub_handles_variables_attributes_and_escapes() {
        let r = resolver();
        let v = serde_json::json!({"Fn::Sub": ["${A}-${D.Arn}-${!Literal}-${AWS::Region}", {"A": {"Ref": "Environment"}}]});
        assert_eq!(
            r.string(&v).unwrap(),
            "t1-arn:aws:sqs:us-east-1:1:d-${Literal}-us-east-1"
        );
    }

    #[test]
    fn unknown_references_and_intrinsics_fail_loudly() {
        let r = resolver();
        assert!(r.string(&serde_json::json!({"Ref": "Nope"})).is_err());
        assert!(
            r.resolve(&serde_json::json!({"Fn::If": ["C", 1, 2]}))
                .is_err()
        );
    }
}
