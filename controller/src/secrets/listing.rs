//! `ListSecrets`: filters (Secrets Manager's keys, prefix matches, `!` negation), sorting and
//! pages; secrets past their deletion date are purged on the way.
use base64::Engine;

use super::manager::{expired, purge, resolve, LOCK_KIND};
use super::{authorize, lock, SecretsError};
use crate::api::{now_ms, Shared};
use crate::iam;
use crate::store::secrets::SecretRecord;

/// A `ListSecrets` filter (`Key` and its `Values`).
#[derive(Debug, Clone)]
pub struct Filter {
    pub key: String,
    pub values: Vec<String>,
}

/// `ListSecrets`' input.
#[derive(Debug, Default)]
pub struct ListInput {
    pub include_planned_deletion: bool,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub filters: Vec<Filter>,
    pub sort_order: Option<String>,
    pub sort_by: Option<String>,
}

fn prefix_match(value: &str, wanted: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        value.starts_with(wanted)
    } else {
        value.to_lowercase().starts_with(&wanted.to_lowercase())
    }
}

/// Whether `record` passes every filter (the values of one filter are alternatives; a value
/// starting with `!` negates).
fn matches(record: &SecretRecord, filters: &[Filter]) -> bool {
    filters.iter().all(|f| {
        f.values.iter().any(|raw| {
            let (negate, v) = match raw.strip_prefix('!') {
                Some(v) => (true, v),
                None => (false, raw.as_str()),
            };
            let hit = match f.key.as_str() {
                "name" => prefix_match(&record.name, v, true),
                "description" => record
                    .description
                    .as_deref()
                    .is_some_and(|d| prefix_match(d, v, false)),
                "tag-key" => record.tags.iter().any(|t| prefix_match(&t.key, v, true)),
                "tag-value" => record.tags.iter().any(|t| prefix_match(&t.value, v, true)),
                "primary-region" => prefix_match(iam::REGION, v, true),
                "owning-service" => false,
                _ => {
                    let words: Vec<&str> = std::iter::once(record.name.as_str())
                        .chain(record.description.as_deref())
                        .chain(record.tags.iter().flat_map(|t| [&*t.key, &*t.value]))
                        .flat_map(|s| s.split(|c: char| !c.is_alphanumeric()))
                        .collect();
                    v.split_whitespace()
                        .all(|term| words.iter().any(|w| prefix_match(w, term, false)))
                }
            };
            hit != negate
        })
    })
}

/// `ListSecrets`: one page, sorted as asked (created date by default), and the next token.
pub async fn list(
    shared: &Shared,
    ext: &http::Extensions,
    input: ListInput,
) -> Result<(Vec<SecretRecord>, Option<String>), SecretsError> {
    authorize(shared, ext, "secretsmanager:ListSecrets", "*").await?;
    let limit = match input.max_results {
        None => 100,
        Some(n @ 1..=100) => n as usize,
        Some(n) => {
            return Err(SecretsError::InvalidParameter(format!(
                "MaxResults must be 1 to 100, got {n}"
            )))
        }
    };
    for f in &input.filters {
        let known = [
            "description",
            "name",
            "tag-key",
            "tag-value",
            "primary-region",
            "owning-service",
            "all",
        ];
        if !known.contains(&f.key.as_str()) || f.values.is_empty() || f.values.len() > 10 {
            return Err(SecretsError::InvalidParameter(format!(
                "filter {:?}: the key must be one of {} with 1 to 10 values",
                f.key,
                known.join(", ")
            )));
        }
    }
    let offset = match &input.next_token {
        None => 0,
        Some(t) => base64::engine::general_purpose::STANDARD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
            .ok_or(SecretsError::InvalidNextToken)?,
    };
    let now = now_ms();
    let (filters, planned) = (input.filters, input.include_planned_deletion);
    let mut all = shared
        .store(move |s| {
            s.list_secrets("", usize::MAX, &mut |r| {
                !expired(r, now) && (planned || r.deleted_ms.is_none()) && matches(r, &filters)
            })
        })
        .await?;
    // Purge what is past its deletion date (found again under each lock).
    let purgeable: Vec<String> = resolve_expired(shared, now).await?;
    for name in purgeable {
        let _guard = lock(LOCK_KIND, &name).await;
        if let Some(r) = resolve(shared, &name).await? {
            if expired(&r, now_ms()) {
                purge(shared, &name).await?;
            }
        }
    }
    let key = |r: &SecretRecord| -> (u64, String) {
        match input.sort_by.as_deref() {
            Some("name") => (0, r.name.clone()),
            Some("last-accessed-date") => (r.last_accessed_ms.unwrap_or(0), r.name.clone()),
            Some("last-changed-date") => (r.last_changed_ms, r.name.clone()),
            _ => (r.created_ms, r.name.clone()),
        }
    };
    all.sort_by_key(key);
    if input.sort_order.as_deref() == Some("desc") {
        all.reverse();
    }
    let page: Vec<SecretRecord> = all.iter().skip(offset).take(limit).cloned().collect();
    let next = (offset + page.len() < all.len()).then(|| {
        base64::engine::general_purpose::STANDARD.encode(format!("offset:{}", offset + page.len()))
    });
    Ok((page, next))
}

/// The names of the secrets past their deletion date.
async fn resolve_expired(shared: &Shared, now: u64) -> Result<Vec<String>, SecretsError> {
    let list = shared
        .store(move |s| s.list_secrets("", usize::MAX, &mut |r| expired(r, now)))
        .await?;
    Ok(list.into_iter().map(|r| r.name).collect())
}
