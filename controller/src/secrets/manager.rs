//! Secrets Manager's operations on secrets and their versions (rotation: `rotation.rs`).
use std::collections::BTreeMap;

use rand::Rng;

pub use super::listing::{list, Filter, ListInput};
use super::staging::{self, CURRENT};
use super::{authorize, lock, Plain, SecretsError};
use crate::api::{now_ms, Shared};
use crate::iam;
use crate::store::secrets::{SecretRecord, SecretValue, Tag};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;
pub(super) const LOCK_KIND: u8 = b's';

/// `CreateSecret`'s input.
#[derive(Debug, Default)]
pub struct NewSecret {
    pub name: String,
    pub client_request_token: Option<String>,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    pub value: Option<Plain>,
    pub tags: Vec<Tag>,
}

/// A version's value as `GetSecretValue` answers it.
#[derive(Debug)]
pub struct SecretValueOut {
    pub arn: String,
    pub name: String,
    pub version_id: String,
    pub value: Plain,
    pub stages: Vec<String>,
    pub created_ms: u64,
}

/// ARN, name and version of a write's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub arn: String,
    pub name: String,
    pub version_id: Option<String>,
    pub stages: Vec<String>,
}

/// `DeleteSecret`'s answer.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub arn: String,
    pub name: String,
    pub deletion_date_ms: u64,
}

/// Checks a secret name (the characters Secrets Manager allows; no NUL reaches a store key).
pub fn check_name(name: &str) -> Result<(), SecretsError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(SecretsError::InvalidParameter(format!(
            "secret name {name:?} is not valid: use 1 to 512 ASCII letters, digits and /_+=.@-"
        )))
    }
}

fn check_token(token: &str) -> Result<(), SecretsError> {
    let ok = (32..=64).contains(&token.len())
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SecretsError::InvalidParameter(
            "ClientRequestToken must be 32 to 64 letters, digits, - or _ (a UUID)".to_string(),
        ))
    }
}

pub(super) fn check_value(value: &Plain) -> Result<(), SecretsError> {
    if value.bytes.is_empty() || value.bytes.len() > 65536 {
        return Err(SecretsError::InvalidParameter(format!(
            "a secret value must be 1 to 65536 {}, got {}",
            if value.binary { "bytes" } else { "characters" },
            value.bytes.len()
        )));
    }
    Ok(())
}

fn check_description(d: &Option<String>) -> Result<(), SecretsError> {
    match d {
        Some(d) if d.chars().count() > 2048 => Err(SecretsError::InvalidParameter(
            "Description must be at most 2048 characters".to_string(),
        )),
        _ => Ok(()),
    }
}

fn check_tags(tags: &[Tag]) -> Result<(), SecretsError> {
    if tags.len() > 50 {
        return Err(SecretsError::InvalidParameter(format!(
            "a secret has at most 50 tags, got {}",
            tags.len()
        )));
    }
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(SecretsError::InvalidParameter(format!(
                "tag {:?}: keys are 1 to 128 characters, values up to 256",
                t.key
            )));
        }
    }
    Ok(())
}

/// The additional data that binds a sealed value to its secret and version.
fn aad(arn: &str, version_id: &str) -> Vec<u8> {
    format!("secretsmanager\0{arn}\0{version_id}").into_bytes()
}

pub(super) fn seal(shared: &Shared, arn: &str, version_id: &str, value: &Plain) -> SecretValue {
    SecretValue {
        binary: value.binary,
        sealed: shared.master_key.seal(&aad(arn, version_id), &value.bytes),
    }
}

fn open(
    shared: &Shared,
    record: &SecretRecord,
    version_id: &str,
    value: &SecretValue,
) -> Result<Plain, SecretsError> {
    let bytes = shared
        .master_key
        .open(&aad(&record.arn, version_id), &value.sealed)
        .map_err(|_| SecretsError::Decryption(record.name.clone()))?;
    Ok(Plain {
        binary: value.binary,
        bytes,
    })
}

/// `NAME-XXXXXX`: six random letters and digits, as Secrets Manager suffixes ARNs.
fn new_arn(name: &str) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..6)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    iam::arn::secret(&format!("{name}-{suffix}"))
}

pub(super) fn expired(record: &SecretRecord, now: u64) -> bool {
    record.deletion_date_ms.is_some_and(|d| d <= now)
}

/// The secret a `SecretId` names (its name, a full ARN or a partial ARN without the random
/// suffix), as stored (also when scheduled for deletion or past its deletion date).
pub(super) async fn resolve(
    shared: &Shared,
    id: &str,
) -> Result<Option<SecretRecord>, SecretsError> {
    let candidates: Vec<(String, Option<String>)> = match id.strip_prefix("arn:aws:secretsmanager:")
    {
        Some(rest) => {
            let Some((_, tail)) = rest.split_once(":secret:") else {
                return Err(SecretsError::InvalidParameter(format!(
                        "{id:?} is not a secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
                    )));
            };
            let mut c = Vec::new();
            if tail.len() > 7 && tail.as_bytes()[tail.len() - 7] == b'-' {
                c.push((tail[..tail.len() - 7].to_string(), Some(id.to_string())));
            }
            // A partial ARN names the secret without its suffix.
            c.push((tail.to_string(), None));
            c
        }
        None => vec![(id.to_string(), None)],
    };
    for (name, arn) in candidates {
        if check_name(&name).is_err() {
            continue;
        }
        let found = shared.store(move |s| s.get_secret(&name)).await?;
        if let Some(r) = found {
            if arn.as_deref().is_none_or(|a| a == r.arn) {
                return Ok(Some(r));
            }
        }
    }
    Ok(None)
}

/// Deletes a secret whose recovery window ended (under its lock).
pub(super) async fn purge(shared: &Shared, name: &str) -> Result<(), SecretsError> {
    let name = name.to_string();
    shared.store(move |s| s.purge_secret(&name)).await?;
    Ok(())
}

/// The live or scheduled secret `id` names; a secret past its deletion date is purged and not
/// found.
pub(super) async fn find(shared: &Shared, id: &str) -> Result<SecretRecord, SecretsError> {
    let record = resolve(shared, id)
        .await?
        .ok_or_else(|| SecretsError::NotFound(id.to_string()))?;
    if expired(&record, now_ms()) {
        let _guard = lock(LOCK_KIND, &record.name).await;
        if let Some(r) = resolve(shared, &record.arn).await? {
            if expired(&r, now_ms()) {
                purge(shared, &r.name).await?;
            }
        }
        return Err(SecretsError::NotFound(id.to_string()));
    }
    Ok(record)
}

/// Like [`find`], holding the secret's writer lock (returned) and re-read under it.
pub(super) async fn find_locked(
    shared: &Shared,
    id: &str,
) -> Result<(tokio::sync::MutexGuard<'static, ()>, SecretRecord), SecretsError> {
    let record = find(shared, id).await?;
    let guard = lock(LOCK_KIND, &record.name).await;
    let again = resolve(shared, &record.arn)
        .await?
        .filter(|r| !expired(r, now_ms()))
        .ok_or_else(|| SecretsError::NotFound(id.to_string()))?;
    Ok((guard, again))
}

fn live(record: &SecretRecord) -> Result<(), SecretsError> {
    if record.deleted_ms.is_some() {
        return Err(SecretsError::MarkedForDeletion(record.name.clone()));
    }
    Ok(())
}

pub(super) async fn write(
    shared: &Shared,
    record: SecretRecord,
    new_values: Vec<(String, SecretValue)>,
    dropped: Vec<String>,
) -> Result<(), SecretsError> {
    shared
        .store(move |s| s.write_secret(&record, &new_values, &dropped))
        .await?;
    Ok(())
}

pub async fn create(
    shared: &Shared,
    ext: &http::Extensions,
    input: NewSecret,
) -> Result<Written, SecretsError> {
    check_name(&input.name)?;
    check_description(&input.description)?;
    check_tags(&input.tags)?;
    if let Some(t) = &input.client_request_token {
        check_token(t)?;
    }
    if let Some(v) = &input.value {
        check_value(v)?;
    }
    let arn = new_arn(&input.name);
    authorize(shared, ext, "secretsmanager:CreateSecret", &arn).await?;
    let _guard = lock(LOCK_KIND, &input.name).await;
    if let Some(existing) = resolve(shared, &input.name).await? {
        if expired(&existing, now_ms()) {
            purge(shared, &existing.name).await?;
        } else if existing.deleted_ms.is_some() {
            return Err(SecretsError::InvalidRequest(format!(
                "you can't create secret `{}`: a secret with this name is scheduled for \
                 deletion (restore it with RestoreSecret, or delete it with \
                 ForceDeleteWithoutRecovery first)",
                existing.name
            )));
        } else {
            // A retry of the same request (same token, same value) answers as the first did.
            if let (Some(token), Some(value)) = (&input.client_request_token, &input.value) {
                if existing.versions.contains_key(token)
                    && same_value(shared, &existing, token, value).await?
                {
                    return Ok(Written {
                        arn: existing.arn.clone(),
                        name: existing.name.clone(),
                        version_id: Some(token.clone()),
                        stages: existing.versions[token].stages.clone(),
                    });
                }
            }
            return Err(SecretsError::Exists(format!(
                "the secret `{}` already exists",
                existing.name
            )));
        }
    }
    let now = now_ms();
    let mut record = SecretRecord {
        name: input.name.clone(),
        arn: arn.clone(),
        description: input.description,
        kms_key_id: input.kms_key_id,
        tags: input.tags,
        created_ms: now,
        last_changed_ms: now,
        last_accessed_ms: None,
        deleted_ms: None,
        deletion_date_ms: None,
        rotation: None,
        last_rotated_ms: None,
        versions: BTreeMap::new(),
    };
    let mut values = Vec::new();
    let mut version_id = None;
    if let Some(value) = &input.value {
        let id = input
            .client_request_token
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        staging::add_version(&mut record.versions, &id, now, &[CURRENT.to_string()]);
        values.push((id.clone(), seal(shared, &arn, &id, value)));
        version_id = Some(id);
    }
    write(shared, record, values, Vec::new()).await?;
    Ok(Written {
        arn,
        name: input.name,
        stages: if version_id.is_some() {
            vec![CURRENT.to_string()]
        } else {
            Vec::new()
        },
        version_id,
    })
}

async fn same_value(
    shared: &Shared,
    record: &SecretRecord,
    version_id: &str,
    value: &Plain,
) -> Result<bool, SecretsError> {
    let (name, v) = (record.name.clone(), version_id.to_string());
    let stored = shared.store(move |s| s.get_secret_value(&name, &v)).await?;
    match stored {
        Some(stored) => Ok(open(shared, record, version_id, &stored)? == *value),
        None => Ok(false),
    }
}

pub async fn get_value(
    shared: &Shared,
    ext: &http::Extensions,
    id: &str,
    version_id: Option<&str>,
    stage: Option<&str>,
) -> Result<SecretValueOut, SecretsError> {
    let record = find(shared, id).await?;
    authorize(shared, ext, "secretsmanager:GetSecretValue", &record.arn).await?;
    live(&record)?;
    let version = match (version_id, stage) {
        (Some(v), stage) => {
            let meta = record.versions.get(v).ok_or_else(|| {
                SecretsError::ValueNotFound(format!("version {v} of secret `{}`", record.name))
            })?;
            if let Some(stage) = stage {
                if !meta.stages.iter().any(|s| s == stage) {
                    return Err(SecretsError::InvalidRequest(format!(
                        "version {v} of secret `{}` does not have staging label {stage}",
                        record.name
                    )));
                }
            }
            v.to_string()
        }
        (None, stage) => {
            let stage = stage.unwrap_or(CURRENT);
            staging::holder(&record.versions, stage)
                .ok_or_else(|| {
                    SecretsError::ValueNotFound(format!(
                        "staging label {stage} of secret `{}`",
                        record.name
                    ))
                })?
                .to_string()
        }
    };
    let (name, v) = (record.name.clone(), version.clone());
    let stored = shared
        .store(move |s| s.get_secret_value(&name, &v))
        .await?
        .ok_or_else(|| {
            SecretsError::ValueNotFound(format!("version {version} of secret `{}`", record.name))
        })?;
    let value = open(shared, &record, &version, &stored)?;
    note_access(shared, &record).await;
    let meta = &record.versions[&version];
    Ok(SecretValueOut {
        arn: record.arn.clone(),
        name: record.name.clone(),
        version_id: version.clone(),
        value,
        stages: meta.stages.clone(),
        created_ms: meta.created_ms,
    })
}

/// `LastAccessedDate` is a day: written at most once a day per secret.
async fn note_access(shared: &Shared, record: &SecretRecord) {
    let today = now_ms() / DAY_MS * DAY_MS;
    if record.last_accessed_ms == Some(today) {
        return;
    }
    let result = async {
        let (_guard, mut r) = find_locked(shared, &record.arn).await?;
        r.last_accessed_ms = Some(today);
        write(shared, r, Vec::new(), Vec::new()).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(secret = %record.name, error = %e, "cannot note the secret's last access");
    }
}

/// `PutSecretValue` (and the value of `UpdateSecret`): a new version with `stages` (default
/// `AWSCURRENT`); a retry with the same token and value is answered as the first call.
pub async fn put_value(
    shared: &Shared,
    ext: &http::Extensions,
    id: &str,
    token: Option<String>,
    value: Plain,
    stages: Option<Vec<String>>,
    action: &str,
) -> Result<Written, SecretsError> {
    check_value(&value)?;
    if let Some(t) = &token {
        check_token(t)?;
    }
    let stages = stages.unwrap_or_else(|| vec![CURRENT.to_string()]);
    staging::check_stages(&stages)?;
    let (_guard, mut record) = find_locked(shared, id).await?;
    authorize(shared, ext, action, &record.arn).await?;
    live(&record)?;
    let token = token.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Some(meta) = record.versions.get(&token) {
        if same_value(shared, &record, &token, &value).await? {
            return Ok(Written {
                arn: record.arn.clone(),
                name: record.name.clone(),
                version_id: Some(token),
                stages: meta.stages.clone(),
            });
        }
        return Err(SecretsError::Exists(format!(
            "version {token} of secret `{}` exists with another value: a version cannot be \
             changed, put a new one (another ClientRequestToken)",
            record.name
        )));
    }
    let now = now_ms();
    let dropped = staging::add_version(&mut record.versions, &token, now, &stages);
    record.last_changed_ms = now;
    let sealed = seal(shared, &record.arn, &token, &value);
    let out = Written {
        arn: record.arn.clone(),
        name: record.name.clone(),
        version_id: Some(token.clone()),
        stages: record.versions[&token].stages.clone(),
    };
    write(shared, record, vec![(token, sealed)], dropped).await?;
    Ok(out)
}

/// `UpdateSecret`: description and KMS key, and a new `AWSCURRENT` version when a value is given.
pub async fn update(
    shared: &Shared,
    ext: &http::Extensions,
    id: &str,
    token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    value: Option<Plain>,
) -> Result<Written, SecretsError> {
    check_description(&description)?;
    let mut version_id = None;
    if description.is_some() || kms_key_id.is_some() {
        let (_guard, mut record) = find_locked(shared, id).await?;
        authorize(shared, ext, "secretsmanager:UpdateSecret", &record.arn).await?;
        live(&record)?;
        if description.is_some() {
            record.description = description;
        }
        if kms_key_id.is_some() {
            record.kms_key_id = kms_key_id;
        }
        record.last_changed_ms = now_ms();
        write(shared, record, Vec::new(), Vec::new()).await?;
    }
    if let Some(value) = value {
        let w = put_value(
            shared,
            ext,
            id,
            token,
            value,
            None,
            "secretsmanager:UpdateSecret",
        )
        .await?;
        version_id = w.version_id;
    }
    let record = find(shared, id).await?;
    authorize(shared, ext, "secretsmanager:UpdateSecret", &record.arn).await?;
    Ok(Written {
        arn: record.arn,
        name: record.name,
        version_id,
        stages: Vec::new(),
    })
}

pub async fn update_version_stage(
    shared: &Shared,
    ext: &http::Extensions,
    id: &str,
    stage: &str,
    move_to: Option<&str>,
    remove_from: Option<&str>,
) -> Result<Written, SecretsError> {
    staging::check_stages(&[stage.to_string()])?;
    let (_guard, mut record) = find_locked(shared, id).await?;
    authorize(
        shared,
        ext,
        "secretsmanager:UpdateSecretVersionStage",
        &record.arn,
    )
    .await?;
    live(&record)?;
    staging::update_stage(&mut record.versions, stage, move_to, remove_from)?;
    record.last_changed_ms = now_ms();
    let out = Written {
        arn: record.arn.clone(),
        name: record.name.clone(),
        version_id: None,
        stages: Vec::new(),
    };
    write(shared, record, Vec::new(), Vec::new()).await?;
    Ok(out)
}

pub async fn describe(
    shared: &Shared,
    ext: &http::Extensions,
    id: &str,
) -> Result<SecretRecord, SecretsError> {
    let record = find(shared, id).await?;
    authorize(shared, ext, "secretsmanager:DescribeSecret", &record.arn).await?;
    Ok(record)
}

/// `ListSecretVersionIds`: the versions of a secret (deprecated ones only when asked).
pub async fn list_versions(
    shared: &Shared,
    ext: &http::Extensions,
    id: &str,
    include_deprecated: bool,
) -> Result<SecretRecord, SecretsError> {
    let mut record = find(shared, id).await?;
    authorize(
        shared,
        ext,
        "secretsmanager:ListSecretVersionIds",
        &record.arn,
    )
    .await?;
    if !include_deprecated {
        record.versions.retain(|_, v| !v.stages.is_empty());
    }
    Ok(record)
}

/// `DeleteSecret`: scheduled after a recovery window (7 to 30 days, default 30), or at once.
pub async fn delete(
    shared: &Shared,
    ext: &http::Extensions,
    id: &str,
    recovery_window_days: Option<i64>,
    force: bool,
) -> Result<Deleted, SecretsError> {
    if force && recovery_window_days.is_some() {
        return Err(SecretsError::InvalidParameter(
            "use RecoveryWindowInDays or ForceDeleteWithoutRecovery, not both".to_string(),
        ));
    }
    let days = recovery_window_days.unwrap_or(30);
    if !force && !(7..=30).contains(&days) {
        return Err(SecretsError::InvalidParameter(format!(
            "RecoveryWindowInDays must be 7 to 30, got {days}"
        )));
    }
    let (_guard, mut record) = find_locked(shared, id).await?;
    authorize(shared, ext, "secretsmanager:DeleteSecret", &record.arn).await?;
    let now = now_ms();
    if force {
        purge(shared, &record.name).await?;
        return Ok(Deleted {
            arn: record.arn,
            name: record.name,
            deletion_date_ms: now,
        });
    }
    if record.deleted_ms.is_some() {
        return Err(SecretsError::MarkedForDeletion(record.name));
    }
    let date = now + days as u64 * DAY_MS;
    record.deleted_ms = Some(now);
    record.deletion_date_ms = Some(date);
    let out = Deleted {
        arn: record.arn.clone(),
        name: record.name.clone(),
        deletion_date_ms: date,
    };
    write(shared, record, Vec::new(), Vec::new()).await?;
    Ok(out)
}

/// `RestoreSecret`: cancels a scheduled deletion.
pub async fn restore(
    shared: &Shared,
    ext: &http::Extensions,
    id: &str,
) -> Result<Written, SecretsError> {
    let (_guard, mut record) = find_locked(shared, id).await?;
    authorize(shared, ext, "secretsmanager:RestoreSecret", &record.arn).await?;
    record.deleted_ms = None;
    record.deletion_date_ms = None;
    record.last_changed_ms = now_ms();
    let out = Written {
        arn: record.arn.clone(),
        name: record.name.clone(),
        version_id: None,
        stages: Vec::new(),
    };
    write(shared, record, Vec::new(), Vec::new()).await?;
    Ok(out)
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
