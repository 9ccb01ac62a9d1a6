//! Lambda's REST routes for tags: TagResource, UntagResource, ListTags (and `Tags` of
//! CreateFunction and GetFunction). Tags belong to the function (not to a version), are stored
//! beside it in the store's function settings, change no revision, and go when it goes.
use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::shapes::{parse_function_name, truncated, RestError};
use super::{parse_json, St};
use crate::api::{functions, Shared};

/// Tag writers (tag, untag) read, change and write the whole set: one at a time, so that two
/// concurrent calls never lose each other's tags.
static TAG_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Most tags a function may have (Lambda's limit).
pub(super) const MAX_TAGS: usize = 50;
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

/// Lambda's tag rules: 1..128-character keys and 0..256-character values of letters, digits,
/// spaces and `_.:/=+-@`, keys not starting with `aws:` (reserved), at most 50 tags.
fn check_tag(key: &str, value: &str) -> Result<(), RestError> {
    let allowed = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
    };
    let key_len = key.chars().count();
    if key_len == 0 || key_len > MAX_KEY_CHARS || !allowed(key) {
        return Err(RestError::invalid(format!(
            "tag key must be 1..{MAX_KEY_CHARS} letters, digits, spaces or _.:/=+-@, got {:?}",
            truncated(key, 40)
        )));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(RestError::invalid(format!(
            "tag key {:?} starts with aws:, which is reserved",
            truncated(key, 40)
        )));
    }
    if value.chars().count() > MAX_VALUE_CHARS || !allowed(value) {
        return Err(RestError::invalid(format!(
            "the value of tag {:?} must be 0..{MAX_VALUE_CHARS} letters, digits, spaces or _.:/=+-@",
            truncated(key, 40)
        )));
    }
    Ok(())
}

/// Checks a set of tags (each tag, and at most [`MAX_TAGS`]).
pub(super) fn checked(
    tags: HashMap<String, String>,
) -> Result<BTreeMap<String, String>, RestError> {
    if tags.len() > MAX_TAGS {
        return Err(RestError::invalid(format!(
            "a function may have at most {MAX_TAGS} tags, got {}",
            tags.len()
        )));
    }
    for (k, v) in &tags {
        check_tag(k, v)?;
    }
    Ok(tags.into_iter().collect())
}

/// The function a tag route's resource names: an unqualified function ARN.
fn function_of(resource: &str) -> Result<String, RestError> {
    let not_taggable = || {
        RestError::invalid(format!(
            "{:?} is not a taggable resource: give the function's ARN \
             (arn:aws:lambda:REGION:ACCOUNT:function:NAME, no qualifier)",
            truncated(resource, 160)
        ))
    };
    if !resource.starts_with("arn:") {
        return Err(not_taggable());
    }
    match parse_function_name(resource).map_err(|_| not_taggable())? {
        (name, None) => Ok(name),
        (_, Some(_)) => Err(not_taggable()),
    }
}

/// The tags of function `name` (which must exist).
pub(super) async fn tags_of(
    shared: &Shared,
    name: &str,
) -> Result<BTreeMap<String, String>, RestError> {
    functions::get(shared, name).await?;
    let owned = name.to_string();
    Ok(shared.store(move |s| s.get_tags(&owned)).await?)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagIn {
    tags: Option<HashMap<String, String>>,
}

/// TagResource: adds or replaces the tags given (204).
pub(super) async fn tag_resource(
    State(st): St,
    ext: Extensions,
    Path(resource): Path<String>,
    body: Bytes,
) -> Result<Response, RestError> {
    let name = function_of(&resource)?;
    st.shared
        .authorize_function(&ext, "lambda:TagResource", &name, "")?;
    let r: TagIn = parse_json(&body)?;
    let add = checked(
        r.tags
            .ok_or_else(|| RestError::invalid("Tags is required"))?,
    )?;
    let _writes = TAG_WRITES.lock().await;
    let mut tags = tags_of(&st.shared, &name).await?;
    tags.extend(add);
    if tags.len() > MAX_TAGS {
        return Err(RestError::invalid(format!(
            "a function may have at most {MAX_TAGS} tags; this would make {}",
            tags.len()
        )));
    }
    st.shared.store(move |s| s.put_tags(&name, &tags)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// UntagResource: removes the keys of `?tagKeys=` (repeated), 204.
pub(super) async fn untag_resource(
    State(st): St,
    ext: Extensions,
    Path(resource): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, RestError> {
    let name = function_of(&resource)?;
    st.shared
        .authorize_function(&ext, "lambda:UntagResource", &name, "")?;
    let keys: Vec<String> = query
        .into_iter()
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v)
        .collect();
    if keys.is_empty() {
        return Err(RestError::invalid(
            "tagKeys is required: the keys to remove",
        ));
    }
    if keys.len() > MAX_TAGS {
        return Err(RestError::invalid(format!(
            "at most {MAX_TAGS} tagKeys, got {}",
            keys.len()
        )));
    }
    let _writes = TAG_WRITES.lock().await;
    let mut tags = tags_of(&st.shared, &name).await?;
    for k in &keys {
        tags.remove(k);
    }
    st.shared.store(move |s| s.put_tags(&name, &tags)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// ListTags.
pub(super) async fn list_tags(
    State(st): St,
    ext: Extensions,
    Path(resource): Path<String>,
) -> Result<Json<Value>, RestError> {
    let name = function_of(&resource)?;
    st.shared
        .authorize_function(&ext, "lambda:ListTags", &name, "")?;
    Ok(Json(json!({ "Tags": tags_of(&st.shared, &name).await? })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_lambdas_rules() {
        assert!(checked(HashMap::from([("team".into(), "a b/c".into())])).is_ok());
        assert!(checked(HashMap::from([("".into(), "v".into())])).is_err());
        assert!(checked(HashMap::from([("aws:x".into(), "v".into())])).is_err());
        assert!(checked(HashMap::from([("k".into(), "x".repeat(257))])).is_err());
        assert!(checked(HashMap::from([("k\n".into(), "v".into())])).is_err());
        let many: HashMap<String, String> =
            (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(checked(many).is_err());
    }

    #[test]
    fn only_unqualified_function_arns_are_taggable() {
        let arn = "arn:aws:lambda:us-east-1:000000000000:function:f";
        assert_eq!(function_of(arn).unwrap(), "f");
        assert!(function_of("f").is_err());
        assert!(function_of(&format!("{arn}:1")).is_err());
        assert!(function_of("arn:aws:lambda:us-east-1:000000000000:layer:l").is_err());
    }
}
