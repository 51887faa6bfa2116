//! Bedrock's Provisioned Throughput API (the control plane), simulated.
//!
//! - `POST /provisioned-model-throughput` (CreateProvisionedModelThroughput): `modelUnits` (at
//!   least 1), `provisionedModelName` (1-63 characters, letters, digits, `-`, `_`, `.`, `+`, not
//!   starting with a symbol), `modelId`, optional `commitmentDuration` (`OneMonth`, `SixMonths`)
//!   and `clientRequestToken` (the same token repeats the answer; the same name with another
//!   token is a `ConflictException`); answers 201 `{provisionedModelArn}`;
//! - `GET /provisioned-model-throughput/{provisionedModelId}` (GetProvisionedModelThroughput),
//!   by ARN or name: `Creating` for one [`crate::SimConfig::batch_step_ms`], then `InService`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::protocol::BedrockError;
use crate::{SimState, json_response, lock, to_json};

const ARN_PREFIX: &str = "arn:aws:bedrock:us-east-1:123456789012";

/// The provisioned models created so far.
#[derive(Debug, Default)]
pub(crate) struct ProvisionedModels {
    models: Vec<Provisioned>,
}

#[derive(Debug, Clone)]
struct Provisioned {
    name: String,
    arn: String,
    model_id: String,
    units: u32,
    commitment: Option<String>,
    client_request_token: Option<String>,
    created: SystemTime,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateRequest {
    model_units: i64,
    provisioned_model_name: String,
    model_id: String,
    #[serde(default)]
    commitment_duration: Option<String>,
    #[serde(default)]
    client_request_token: Option<String>,
}

fn valid_name(name: &str) -> bool {
    let symbols = ['-', '_', '.', '+'];
    (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || symbols.contains(&c))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

pub(crate) async fn create(State(state): State<Arc<SimState>>, body: axum::body::Bytes) -> Response {
    let request: CreateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return BedrockError::validation(format!("Malformed request: {e}")).into_response(),
    };
    if !valid_name(&request.provisioned_model_name) {
        return BedrockError::validation(format!(
            "1 validation error detected: Value '{}' at 'provisionedModelName' failed to satisfy constraint: Member must satisfy regular expression pattern: ([0-9a-zA-Z][_-]?)+",
            request.provisioned_model_name
        ))
        .into_response();
    }
    let Ok(units) = u32::try_from(request.model_units) else {
        return BedrockError::validation("modelUnits must be at least 1.").into_response();
    };
    if units == 0 || request.model_id.is_empty() {
        return BedrockError::validation("modelUnits must be at least 1 and modelId must not be empty.")
            .into_response();
    }
    if let Some(term) = request.commitment_duration.as_deref().filter(|t| !["OneMonth", "SixMonths"].contains(t)) {
        return BedrockError::validation(format!(
            "1 validation error detected: Value '{term}' at 'commitmentDuration' failed to satisfy constraint: Member must satisfy enum value set: [SixMonths, OneMonth]"
        ))
        .into_response();
    }
    let mut models = lock(&state.provisioned);
    if let Some(existing) = models.models.iter().find(|m| m.name == request.provisioned_model_name) {
        if request.client_request_token.is_some() && existing.client_request_token == request.client_request_token {
            return json_response(StatusCode::CREATED, to_json(&json!({"provisionedModelArn": existing.arn})));
        }
        return BedrockError {
            status: StatusCode::CONFLICT,
            error_type: "ConflictException",
            message: format!("A provisioned model named {} already exists.", request.provisioned_model_name),
        }
        .into_response();
    }
    let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let provisioned = Provisioned {
        name: request.provisioned_model_name,
        arn: format!("{ARN_PREFIX}:provisioned-model/{id}"),
        model_id: request.model_id,
        units,
        commitment: request.commitment_duration,
        client_request_token: request.client_request_token,
        created: SystemTime::now(),
    };
    let arn = provisioned.arn.clone();
    models.models.push(provisioned);
    json_response(StatusCode::CREATED, to_json(&json!({ "provisionedModelArn": arn })))
}

pub(crate) async fn get(State(state): State<Arc<SimState>>, UrlPath(id): UrlPath<String>) -> Response {
    let models = lock(&state.provisioned);
    let Some(model) = models.models.iter().find(|m| m.arn == id || m.name == id) else {
        return BedrockError {
            status: StatusCode::NOT_FOUND,
            error_type: "ResourceNotFoundException",
            message: format!("The provisioned model {id} could not be found."),
        }
        .into_response();
    };
    let step = Duration::from_millis(state.config.batch_step_ms);
    let in_service = model.created.elapsed().unwrap_or_default() >= step;
    let time =
        |t: SystemTime| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let model_arn = format!("arn:aws:bedrock:us-east-1::foundation-model/{}", model.model_id);
    let mut answer = json!({
        "modelUnits": model.units,
        "desiredModelUnits": model.units,
        "provisionedModelName": model.name,
        "provisionedModelArn": model.arn,
        "modelArn": model_arn,
        "desiredModelArn": model_arn,
        "foundationModelArn": model_arn,
        "status": if in_service { "InService" } else { "Creating" },
        "creationTime": time(model.created),
        "lastModifiedTime": time(model.created),
    });
    if let Some(term) = &model.commitment {
        let days = if term == "OneMonth" { 30 } else { 182 };
        answer["commitmentDuration"] = Value::String(term.clone());
        answer["commitmentExpirationTime"] = json!(time(model.created + Duration::from_secs(days * 86_400)));
    }
    json_response(StatusCode::OK, to_json(&answer))
}
