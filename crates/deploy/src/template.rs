//! `deploy/template.yaml` to a CloudFormation template CloudFormation deploys without the SAM
//! transform: what `sam package` + the transform do for the subset of SAM the template uses.
//!
//! - YAML with CloudFormation's short tags (`!Ref`, `!GetAtt A.B`, `!Sub`, ...) becomes the JSON
//!   form (`{"Ref": ...}`, `{"Fn::GetAtt": ["A", "B"]}`, ...).
//! - `Globals.Function` merges into every `AWS::Serverless::Function`, which becomes an
//!   `AWS::Lambda::Function` whose code is the uploaded zip.
//! - `AWS::Serverless::StateMachine` becomes an `AWS::StepFunctions::StateMachine` whose
//!   `DefinitionS3Location` is the file `DefinitionUri` names, uploaded as it is, with the same
//!   `DefinitionSubstitutions`: the deployed flow is the file the embedded engine runs.
//!
//! Uploads live in the bucket the packaged template's one added parameter names
//! ([`ARTIFACTS_BUCKET_PARAMETER`]), under keys derived from their content: a changed binary or
//! definition changes the template, so CloudFormation updates what uses it.
//!
//! A SAM property outside that subset is an error naming it (the SAM CLI route handles the full
//! SAM specification), never silently dropped.

use serde_json::{Map, Value, json};

use super::{DeployError, Upload};

/// The packaged template's parameter naming the bucket holding the uploads.
pub const ARTIFACTS_BUCKET_PARAMETER: &str = "ArtifactsBucket";

const SAM_TRANSFORM: &str = "AWS::Serverless-2016-10-31";

/// Parses a CloudFormation/SAM template written in YAML (or JSON, which is YAML) into its JSON
/// form, the short-form intrinsic function tags expanded.
pub fn parse(text: &str) -> Result<Value, DeployError> {
    let yaml: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| DeployError::Template(format!("not valid YAML: {e}")))?;
    to_json(yaml)
}

fn to_json(yaml: serde_norway::Value) -> Result<Value, DeployError> {
    use serde_norway::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| DeployError::Template(format!("the number {n} has no JSON form")))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?),
        Y::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(DeployError::Template(format!("a mapping key must be a string: {other:?}"))),
                };
                object.insert(key, to_json(value)?);
            }
            Value::Object(object)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            intrinsic(tag.trim_start_matches('!'), to_json(tagged.value)?)?
        }
    })
}

/// The JSON form of a short-form intrinsic function (`!Name value`).
fn intrinsic(name: &str, value: Value) -> Result<Value, DeployError> {
    const FUNCTIONS: &[&str] = &[
        "And",
        "Base64",
        "Cidr",
        "Equals",
        "FindInMap",
        "GetAZs",
        "If",
        "ImportValue",
        "Join",
        "Length",
        "Not",
        "Or",
        "Select",
        "Split",
        "Sub",
        "ToJsonString",
        "Transform",
    ];
    Ok(match name {
        "Ref" => json!({ "Ref": value }),
        "Condition" => json!({ "Condition": value }),
        // `!GetAtt Resource.Attribute`: the attribute may itself contain dots.
        "GetAtt" => match value {
            Value::String(s) => match s.split_once('.') {
                Some((resource, attribute)) => json!({ "Fn::GetAtt": [resource, attribute] }),
                None => return Err(DeployError::Template(format!("!GetAtt {s}: expected Resource.Attribute"))),
            },
            list => json!({ "Fn::GetAtt": list }),
        },
        name if FUNCTIONS.contains(&name) => json!({ format!("Fn::{name}"): value }),
        other => return Err(DeployError::Template(format!("unknown tag !{other}"))),
    })
}

/// Reads a file the template refers to by a path relative to it (`DefinitionUri`).
pub trait TemplateFiles {
    fn read(&self, relative: &str) -> Result<String, DeployError>;
}

/// The packaged CloudFormation template: `sam` (parsed by [`parse`]) with its SAM resources
/// translated, the functions' code the zip at `code_key`; and the state machine definitions to
/// upload beside it.
pub fn package(mut sam: Value, files: &dyn TemplateFiles, code_key: &str) -> Result<(Value, Vec<Upload>), DeployError> {
    let template = sam.as_object_mut().ok_or_else(|| DeployError::Template("the template is not a mapping".into()))?;
    match template.remove("Transform") {
        None => {}
        Some(Value::String(t)) if t == SAM_TRANSFORM => {}
        Some(other) => {
            return Err(DeployError::Template(format!(
                "Transform {other} is not supported by beacon deploy (only {SAM_TRANSFORM}); deploy with the SAM CLI"
            )));
        }
    }
    let globals = template.remove("Globals").unwrap_or_else(|| json!({}));
    let function_globals = match globals {
        Value::Object(mut g) => {
            if let Some(other) = g.keys().find(|k| *k != "Function") {
                return Err(DeployError::Template(format!(
                    "Globals.{other} is not supported by beacon deploy (only Globals.Function)"
                )));
            }
            g.remove("Function").unwrap_or_else(|| json!({}))
        }
        _ => return Err(DeployError::Template("Globals must be a mapping".into())),
    };

    let parameters = template.entry("Parameters").or_insert_with(|| json!({}));
    let parameters =
        parameters.as_object_mut().ok_or_else(|| DeployError::Template("Parameters must be a mapping".into()))?;
    if parameters.contains_key(ARTIFACTS_BUCKET_PARAMETER) {
        return Err(DeployError::Template(format!(
            "the template already has a parameter {ARTIFACTS_BUCKET_PARAMETER}"
        )));
    }
    parameters.insert(
        ARTIFACTS_BUCKET_PARAMETER.to_string(),
        json!({ "Type": "String", "Description": "The bucket holding the Lambda zip and the state machine definition (set by beacon deploy)." }),
    );

    let mut uploads = Vec::new();
    let resources = template
        .get_mut("Resources")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| DeployError::Template("the template has no Resources mapping".into()))?;
    for (logical_id, resource) in resources.iter_mut() {
        let Some(kind) = resource.get("Type").and_then(Value::as_str).map(str::to_string) else {
            return Err(DeployError::Template(format!("resource {logical_id} has no Type")));
        };
        let properties = resource.get_mut("Properties").map(Value::take).unwrap_or_else(|| json!({}));
        let translated = match kind.as_str() {
            "AWS::Serverless::Function" => {
                Some(("AWS::Lambda::Function", function(logical_id, &function_globals, properties, code_key)?))
            }
            "AWS::Serverless::StateMachine" => {
                let (properties, definition) = state_machine(logical_id, properties, files)?;
                uploads.extend(definition);
                Some(("AWS::StepFunctions::StateMachine", properties))
            }
            other if other.starts_with("AWS::Serverless::") => {
                return Err(DeployError::Template(format!(
                    "{logical_id}: {other} is not supported by beacon deploy; deploy with the SAM CLI"
                )));
            }
            _ => {
                resource["Properties"] = properties;
                None
            }
        };
        if let Some((kind, properties)) = translated {
            resource["Type"] = json!(kind);
            resource["Properties"] = properties;
            // Build hints for `sam build`; CloudFormation has no use for them.
            if let Some(resource) = resource.as_object_mut() {
                resource.remove("Metadata");
            }
        }
    }
    Ok((sam, uploads))
}

/// Where an upload is: the artifacts bucket and `key`.
fn s3_location(key: &str, bucket_field: &str, key_field: &str) -> Value {
    json!({ bucket_field: { "Ref": ARTIFACTS_BUCKET_PARAMETER }, key_field: key })
}

fn object(value: Value, what: &str) -> Result<Map<String, Value>, DeployError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(DeployError::Template(format!("{what} must be a mapping"))),
    }
}

/// `AWS::Serverless::Function` → `AWS::Lambda::Function`.
fn function(logical_id: &str, globals: &Value, properties: Value, code_key: &str) -> Result<Value, DeployError> {
    // Globals first, the function's own properties override them; environment variables merge.
    let mut merged = object(globals.clone(), "Globals.Function")?;
    let own = object(properties, &format!("{logical_id}.Properties"))?;
    let global_variables = merged.get("Environment").and_then(|e| e.get("Variables")).cloned();
    for (key, value) in own {
        merged.insert(key, value);
    }
    if let (Some(Value::Object(global)), Some(Value::Object(own))) =
        (global_variables, merged.get_mut("Environment").and_then(|e| e.get_mut("Variables")))
    {
        for (key, value) in global {
            own.entry(key).or_insert(value);
        }
    }

    let mut out = Map::new();
    for (key, value) in merged {
        match key.as_str() {
            // Same name and meaning in both.
            "Architectures"
            | "Description"
            | "Environment"
            | "EphemeralStorage"
            | "FunctionName"
            | "Handler"
            | "KmsKeyArn"
            | "Layers"
            | "LoggingConfig"
            | "MemorySize"
            | "ReservedConcurrentExecutions"
            | "Role"
            | "Runtime"
            | "Timeout"
            | "VpcConfig" => {
                out.insert(key, value);
            }
            "Tracing" => {
                out.insert("TracingConfig".into(), json!({ "Mode": value }));
            }
            "Tags" => {
                out.insert("Tags".into(), tag_list(value, logical_id)?);
            }
            // The code is the zip beacon deploy uploads.
            "CodeUri" => {}
            other => {
                return Err(DeployError::Template(format!(
                    "{logical_id}: the SAM function property {other} is not supported by beacon deploy; deploy with the SAM CLI"
                )));
            }
        }
    }
    if !out.contains_key("Role") {
        return Err(DeployError::Template(format!(
            "{logical_id}: a function needs an explicit Role (beacon deploy does not generate roles)"
        )));
    }
    out.insert("Code".into(), s3_location(code_key, "S3Bucket", "S3Key"));
    Ok(Value::Object(out))
}

/// `AWS::Serverless::StateMachine` → `AWS::StepFunctions::StateMachine`, and the definition to
/// upload when it is a file.
fn state_machine(
    logical_id: &str,
    properties: Value,
    files: &dyn TemplateFiles,
) -> Result<(Value, Option<Upload>), DeployError> {
    let mut out = Map::new();
    let mut upload = None;
    for (key, value) in object(properties, &format!("{logical_id}.Properties"))? {
        match key.as_str() {
            "Name" => {
                out.insert("StateMachineName".into(), value);
            }
            "Type" => {
                out.insert("StateMachineType".into(), value);
            }
            "Role" => {
                out.insert("RoleArn".into(), value);
            }
            "DefinitionSubstitutions" => {
                out.insert(key, value);
            }
            "DefinitionUri" => {
                let Value::String(path) = value else {
                    return Err(DeployError::Template(format!(
                        "{logical_id}: DefinitionUri must be a path relative to the template"
                    )));
                };
                let definition = Upload::new("statemachine", logical_id, "asl.json", files.read(&path)?.into_bytes());
                out.insert("DefinitionS3Location".into(), s3_location(&definition.key, "Bucket", "Key"));
                upload = Some(definition);
            }
            "Definition" => {
                out.insert("DefinitionString".into(), Value::String(value.to_string()));
            }
            "Tracing" => {
                out.insert("TracingConfiguration".into(), value);
            }
            "Logging" => {
                out.insert("LoggingConfiguration".into(), value);
            }
            "Tags" => {
                out.insert("Tags".into(), tag_list(value, logical_id)?);
            }
            other => {
                return Err(DeployError::Template(format!(
                    "{logical_id}: the SAM state machine property {other} is not supported by beacon deploy; deploy with the SAM CLI"
                )));
            }
        }
    }
    if !(out.contains_key("DefinitionString") || out.contains_key("DefinitionS3Location"))
        || !out.contains_key("RoleArn")
    {
        return Err(DeployError::Template(format!(
            "{logical_id}: a state machine needs DefinitionUri (or Definition) and Role"
        )));
    }
    Ok((Value::Object(out), upload))
}

/// SAM's tag map `{k: v}` → CloudFormation's tag list `[{Key: k, Value: v}]`.
fn tag_list(tags: Value, logical_id: &str) -> Result<Value, DeployError> {
    let tags = object(tags, &format!("{logical_id}.Tags"))?;
    Ok(Value::Array(tags.into_iter().map(|(key, value)| json!({ "Key": key, "Value": value })).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoFiles;
    impl TemplateFiles for NoFiles {
        fn read(&self, relative: &str) -> Result<String, DeployError> {
            Ok(format!("definition of {relative}"))
        }
    }

    #[test]
    fn short_tags_become_the_json_form() {
        let parsed = parse(
            "A: !Ref X\nB: !GetAtt Res.Arn\nC: !GetAtt Res.Endpoint.Address\nD: !Sub [\"${x}\", {x: !Ref Y}]\n\
             E: !If [Cond, !Not [!Equals [a, b]], 3]\nF: !Condition Other\n",
        )
        .unwrap();
        assert_eq!(
            parsed,
            json!({
                "A": {"Ref": "X"},
                "B": {"Fn::GetAtt": ["Res", "Arn"]},
                "C": {"Fn::GetAtt": ["Res", "Endpoint.Address"]},
                "D": {"Fn::Sub": ["${x}", {"x": {"Ref": "Y"}}]},
                "E": {"Fn::If": ["Cond", {"Fn::Not": [{"Fn::Equals": ["a", "b"]}]}, 3]},
                "F": {"Condition": "Other"},
            })
        );
        assert!(parse("A: !Bogus x").unwrap_err().to_string().contains("unknown tag !Bogus"));
        assert!(parse("A: !GetAtt NoDot").unwrap_err().to_string().contains("Resource.Attribute"));
        assert!(parse("A: [unclosed").is_err());
    }

    #[test]
    fn sam_functions_and_state_machines_become_plain_cloudformation() {
        let sam = parse(
            "Transform: AWS::Serverless-2016-10-31\n\
             Globals:\n  Function:\n    Runtime: provided.al2023\n    Tracing: Active\n    Environment:\n      Variables: {A: g, B: g}\n\
             Resources:\n\
             \x20 Fn:\n    Type: AWS::Serverless::Function\n    Metadata: {BuildMethod: rust-cargolambda}\n    Properties:\n      CodeUri: ../\n      Role: !GetAtt R.Arn\n      Environment:\n        Variables: {B: own}\n      Tags: {team: docs}\n\
             \x20 Sm:\n    Type: AWS::Serverless::StateMachine\n    Properties:\n      Name: sm\n      Type: STANDARD\n      DefinitionUri: statemachine/x.json\n      Role: !GetAtt R.Arn\n      DefinitionSubstitutions: {X: !Ref Fn}\n\
             \x20 Other:\n    Type: AWS::SNS::Topic\n",
        )
        .unwrap();
        let (packaged, uploads) = package(sam, &NoFiles, "lambda/code.zip").unwrap();
        assert!(packaged.get("Transform").is_none() && packaged.get("Globals").is_none());
        assert_eq!(packaged["Parameters"][ARTIFACTS_BUCKET_PARAMETER]["Type"], "String");
        let function = &packaged["Resources"]["Fn"];
        assert_eq!(function["Type"], "AWS::Lambda::Function");
        assert!(function.get("Metadata").is_none());
        assert_eq!(
            function["Properties"],
            json!({
                "Runtime": "provided.al2023",
                "TracingConfig": {"Mode": "Active"},
                "Environment": {"Variables": {"A": "g", "B": "own"}},
                "Role": {"Fn::GetAtt": ["R", "Arn"]},
                "Tags": [{"Key": "team", "Value": "docs"}],
                "Code": {"S3Bucket": {"Ref": ARTIFACTS_BUCKET_PARAMETER}, "S3Key": "lambda/code.zip"},
            })
        );
        let machine = &packaged["Resources"]["Sm"];
        assert_eq!(machine["Type"], "AWS::StepFunctions::StateMachine");
        assert_eq!(
            machine["Properties"],
            json!({
                "StateMachineName": "sm",
                "StateMachineType": "STANDARD",
                "DefinitionS3Location": {"Bucket": {"Ref": ARTIFACTS_BUCKET_PARAMETER}, "Key": uploads[0].key},
                "RoleArn": {"Fn::GetAtt": ["R", "Arn"]},
                "DefinitionSubstitutions": {"X": {"Ref": "Fn"}},
            })
        );
        assert_eq!(packaged["Resources"]["Other"], json!({"Type": "AWS::SNS::Topic", "Properties": {}}));
        assert_eq!(uploads.len(), 1);
        assert_eq!(uploads[0].bytes, b"definition of statemachine/x.json");
        assert!(uploads[0].key.starts_with("statemachine/Sm-") && uploads[0].key.ends_with(".asl.json"));
    }

    #[test]
    fn sam_features_beyond_the_subset_are_named_not_dropped() {
        let with = |properties: &str| {
            let sam = parse(&format!(
                "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Role: r\n{properties}"
            ))
            .unwrap();
            package(sam, &NoFiles, "k").map(|_| ()).map_err(|e| e.to_string())
        };
        assert!(with("").is_ok());
        assert!(with("      Events: {}\n").unwrap_err().contains("property Events"));
        let api = parse("Resources:\n  Api:\n    Type: AWS::Serverless::Api\n").unwrap();
        assert!(package(api, &NoFiles, "k").unwrap_err().to_string().contains("AWS::Serverless::Api"));
        let no_role = parse("Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {}\n").unwrap();
        assert!(package(no_role, &NoFiles, "k").unwrap_err().to_string().contains("explicit Role"));
    }
}
