//! `RotateSecret`: Secrets Manager's four rotation steps, each a synchronous invocation of the
//! rotation function through the controller's invocation pipeline (`api::invoke`), with the
//! event `{"SecretId", "ClientRequestToken", "Step"}`:
//!
//! 1. `createSecret`: the function puts the new value as version `ClientRequestToken` staged
//!    `AWSPENDING` (`PutSecretValue`); the version must exist after this step;
//! 2. `setSecret`: the function sets the pending value in the protected service;
//! 3. `testSecret`: the function checks the pending value works;
//! 4. `finishSecret`: the function moves `AWSCURRENT` to the pending version
//!    (`UpdateSecretVersionStage`; the previous current becomes `AWSPREVIOUS`); Secrets Manager
//!    then takes `AWSPENDING` off it. As in AWS, Secrets Manager does not move `AWSCURRENT`
//!    itself: a finishSecret that did not move it fails the rotation (`AWSPENDING` stays).
//!
//! A step that fails (a function error, or an invocation that cannot run) stops the rotation
//! with an error naming the step; `AWSCURRENT` is unchanged and the pending version stays for a
//! retry with the same token. Neither the secret's writer lock nor any store lock is held while
//! the function runs (it reads and writes the same secret through the REST API with its role's
//! credentials): locks are taken around each store write only. One rotation of a secret runs at
//! a time.
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use super::manager::{find, find_locked, write, Written};
use super::staging::{self, CURRENT, PENDING};
use super::{authorize, SecretsError};
use crate::api::invoke::{invoke, InvocationType, InvokeInput};
use crate::api::{now_ms, Shared};
use crate::iam;
use crate::store::secrets::Rotation;
use crate::store::writers::lock;

/// `RotateSecret`'s input.
#[derive(Debug, Default)]
pub struct RotateInput {
    pub secret_id: String,
    pub client_request_token: Option<String>,
    pub lambda_arn: Option<String>,
    pub automatically_after_days: Option<i64>,
    pub schedule_expression: Option<String>,
    pub duration: Option<String>,
    /// Default true.
    pub rotate_immediately: Option<bool>,
}

/// Secrets being rotated now (by name).
static ROTATING: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// Takes the secret's name out of [`ROTATING`] when the rotation ends, however it ends.
struct Rotating(String);

impl Drop for Rotating {
    fn drop(&mut self) {
        lock(&ROTATING).remove(&self.0);
    }
}

/// The function (and qualifier) a rotation function ARN or name names.
pub fn function_of(arn: &str) -> Result<(String, String), SecretsError> {
    let tail = match arn.strip_prefix("arn:aws:lambda:") {
        Some(rest) => rest
            .split_once(":function:")
            .map(|(_, t)| t)
            .ok_or_else(|| {
                SecretsError::InvalidParameter(format!(
                    "RotationLambdaARN {arn:?} is not a function ARN \
                     (arn:aws:lambda:REGION:ACCOUNT:function:NAME)"
                ))
            })?,
        None => arn,
    };
    let (name, qualifier) = tail.split_once(':').unwrap_or((tail, ""));
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(SecretsError::InvalidParameter(format!(
            "RotationLambdaARN {arn:?} does not name a function"
        )));
    }
    Ok((name.to_string(), qualifier.to_string()))
}

fn rules(input: &RotateInput, previous: Option<&Rotation>) -> Result<Rotation, SecretsError> {
    if input.automatically_after_days.is_some() && input.schedule_expression.is_some() {
        return Err(SecretsError::InvalidParameter(
            "RotationRules takes AutomaticallyAfterDays or ScheduleExpression, not both"
                .to_string(),
        ));
    }
    if let Some(d) = input.automatically_after_days {
        if !(1..=1000).contains(&d) {
            return Err(SecretsError::InvalidParameter(format!(
                "AutomaticallyAfterDays must be 1 to 1000, got {d}"
            )));
        }
    }
    let mut r = previous.cloned().unwrap_or_default();
    if let Some(arn) = &input.lambda_arn {
        r.lambda_arn = arn.clone();
    }
    if input.automatically_after_days.is_some() || input.schedule_expression.is_some() {
        r.automatically_after_days = input.automatically_after_days.map(|d| d as u64);
        r.schedule_expression = input.schedule_expression.clone();
        r.duration = input.duration.clone();
    }
    if r.lambda_arn.is_empty() {
        return Err(SecretsError::InvalidRequest(
            "the secret has no rotation function: give RotationLambdaARN".to_string(),
        ));
    }
    r.enabled = true;
    Ok(r)
}

pub async fn rotate(
    shared: &Shared,
    ext: &http::Extensions,
    input: RotateInput,
) -> Result<Written, SecretsError> {
    if let Some(t) = &input.client_request_token {
        if !(32..=64).contains(&t.len()) {
            return Err(SecretsError::InvalidParameter(
                "ClientRequestToken must be 32 to 64 characters".to_string(),
            ));
        }
    }
    // The configuration first (under the secret's lock).
    let (record, rotation) = {
        let (_guard, mut record) = find_locked(shared, &input.secret_id).await?;
        authorize(shared, ext, "secretsmanager:RotateSecret", &record.arn).await?;
        if record.deleted_ms.is_some() {
            return Err(SecretsError::MarkedForDeletion(record.name));
        }
        let rotation = rules(&input, record.rotation.as_ref())?;
        let (function, qualifier) = function_of(&rotation.lambda_arn)?;
        // As Secrets Manager asks of RotateSecret's caller: the right to invoke the function.
        let function_arn = iam::arn::function(&function, Some(&qualifier));
        authorize(shared, ext, "lambda:InvokeFunction", &function_arn).await?;
        if record.rotation.as_ref() != Some(&rotation) {
            record.rotation = Some(rotation.clone());
            record.last_changed_ms = now_ms();
            write(shared, record.clone(), Vec::new(), Vec::new()).await?;
        }
        (record, rotation)
    };
    if input.rotate_immediately == Some(false) {
        return Ok(Written {
            arn: record.arn,
            name: record.name,
            version_id: None,
            stages: Vec::new(),
        });
    }
    if !lock(&ROTATING).insert(record.name.clone()) {
        return Err(SecretsError::InvalidRequest(format!(
            "a rotation of secret `{}` is in progress: retry once it ends",
            record.name
        )));
    }
    let _rotating = Rotating(record.name.clone());
    let token = input
        .client_request_token
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Some(pending) = staging::holder(&record.versions, PENDING) {
        let current = staging::holder(&record.versions, CURRENT);
        if pending != token && Some(pending) != current {
            return Err(SecretsError::InvalidRequest(format!(
                "a previous rotation of secret `{}` is not complete (version {pending} is \
                 AWSPENDING): rotate again with that ClientRequestToken, or take the label off \
                 with UpdateSecretVersionStage",
                record.name
            )));
        }
    }
    let (function, qualifier) = function_of(&rotation.lambda_arn)?;
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        run_step(
            shared,
            &record.arn,
            &record.name,
            &token,
            step,
            &function,
            &qualifier,
        )
        .await?;
        if step == "createSecret" {
            let again = find(shared, &record.arn).await?;
            if !again.versions.contains_key(&token) {
                return Err(SecretsError::Rotation {
                    secret: record.name.clone(),
                    step,
                    detail: format!(
                        "the function did not create version {token} (PutSecretValue with this \
                         ClientRequestToken and VersionStages [\"AWSPENDING\"])"
                    ),
                });
            }
        }
    }
    // finishSecret succeeded. As in AWS the function stages the versions itself: a rotation
    // whose finishSecret did not move AWSCURRENT to the new version is incomplete (AWSPENDING
    // stays for a retry with the same token). Secrets Manager only takes AWSPENDING off the
    // version that is now current and records the rotation.
    let (_guard, mut record) = find_locked(shared, &record.arn).await?;
    let incomplete = |detail: String| SecretsError::Rotation {
        secret: record.name.clone(),
        step: "finishSecret",
        detail,
    };
    if !record.versions.contains_key(&token) {
        return Err(incomplete(format!(
            "version {token} was deleted during the rotation"
        )));
    }
    if staging::holder(&record.versions, CURRENT) != Some(token.as_str()) {
        return Err(incomplete(format!(
            "the function did not move AWSCURRENT to version {token} (UpdateSecretVersionStage \
             with MoveToVersionId {token} and RemoveFromVersionId the current version): the \
             rotation is incomplete and AWSPENDING stays"
        )));
    }
    if let Some(v) = record.versions.get_mut(&token) {
        v.stages.retain(|s| s != PENDING);
    }
    let now = now_ms();
    record.last_rotated_ms = Some(now);
    record.last_changed_ms = now;
    let out = Written {
        arn: record.arn.clone(),
        name: record.name.clone(),
        version_id: Some(token),
        stages: Vec::new(),
    };
    write(shared, record, Vec::new(), Vec::new()).await?;
    Ok(out)
}

async fn run_step(
    shared: &Shared,
    arn: &str,
    name: &str,
    token: &str,
    step: &'static str,
    function: &str,
    qualifier: &str,
) -> Result<(), SecretsError> {
    let event = serde_json::json!({
        "SecretId": arn,
        "ClientRequestToken": token,
        "Step": step,
    });
    let failed = |detail: String| SecretsError::Rotation {
        secret: name.to_string(),
        step,
        detail,
    };
    let out = invoke(
        shared,
        InvokeInput {
            function_name: function.to_string(),
            qualifier: qualifier.to_string(),
            invocation_type: InvocationType::RequestResponse,
            payload: event.to_string().into_bytes(),
            log_tail: false,
            client_context: String::new(),
            idempotency_key: String::new(),
        },
    )
    .await
    .map_err(|e| failed(format!("rotation function `{function}` could not run: {e}")))?;
    if !out.function_error.is_empty() {
        let error: serde_json::Value = serde_json::from_slice(&out.payload).unwrap_or_default();
        let text = |k: &str| {
            error[k]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(256)
                .collect::<String>()
        };
        return Err(failed(format!(
            "rotation function `{function}` failed ({}): {}: {}",
            out.function_error,
            text("errorType"),
            text("errorMessage")
        )));
    }
    Ok(())
}
