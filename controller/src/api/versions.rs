//! Versions and aliases: publish, list, alias CRUD and qualified GetFunction/DeleteFunction. The
//! resolution of a qualifier to the version that runs is `crate::resolve` (re-exported here).
use std::collections::BTreeMap;

use lamina_proto::domain::{qualified_function_arn, Alias, FunctionConfig, LATEST};
use lamina_proto::v1;
use lamina_proto::validate;

use super::{now_ms, ApiError, Shared};
pub use crate::resolve::VersionError;
use crate::resolve::{alias_name, lookup, Qualifier};
use crate::store::{parse_version_number, PublishRequest, Store, StoreError};

/// Alias writers (create, update, delete) and version deletion take this lock, so "the alias does
/// not exist yet", "its revision is X" and "no alias routes to this version" stay true until the
/// write that relied on them.
static ALIAS_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) fn status_code(e: &VersionError) -> tonic::Code {
    use tonic::Code;
    match e {
        VersionError::AliasName { .. }
        | VersionError::BadQualifier { .. }
        | VersionError::Routing(_)
        | VersionError::DeleteLatest { .. }
        | VersionError::DeleteAliasAsVersion { .. } => Code::InvalidArgument,
        VersionError::VersionNotFound { .. } | VersionError::AliasNotFound { .. } => Code::NotFound,
        VersionError::AliasExists { .. } => Code::AlreadyExists,
        VersionError::AliasRevision { .. } => Code::FailedPrecondition,
    }
}

/// A configuration as the API shows it: a version's ARN carries its number.
pub(crate) fn configuration(c: &FunctionConfig, qualifier: &str) -> v1::FunctionConfiguration {
    let mut out = v1::FunctionConfiguration::from(c);
    if !qualifier.is_empty() {
        out.arn = qualified_function_arn(&c.spec.name, qualifier);
    }
    out
}

pub(crate) fn alias_to_proto(a: &Alias) -> v1::Alias {
    v1::Alias {
        function_name: a.function_name.clone(),
        name: a.name.clone(),
        arn: a.arn(),
        function_version: a.function_version.clone(),
        routing_config: Some(v1::RoutingConfig {
            additional_version_weights: a
                .additional_version_weights
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        }),
        description: a.description.clone(),
        revision_id: a.revision_id.clone(),
        last_modified_ms: a.last_modified_ms,
    }
}

fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Checks that `version` names $LATEST or an existing version of `name` (blocking).
fn require_version(store: &dyn Store, name: &str, version: &str) -> Result<(), ApiError> {
    if version == LATEST {
        return Ok(());
    }
    let not_found = || VersionError::VersionNotFound {
        name: name.to_string(),
        version: version.to_string(),
    };
    let n = parse_version_number(version).ok_or_else(|| {
        ApiError::from(VersionError::BadQualifier {
            qualifier: version.to_string(),
        })
    })?;
    store.get_version(name, n)?.ok_or_else(not_found)?;
    Ok(())
}

/// Checks an alias's targets (blocking): the function, its primary version and the routing.
fn check_alias_targets(store: &dyn Store, alias: &Alias) -> Result<(), ApiError> {
    let name = &alias.function_name;
    if store.get_function(name)?.is_none() {
        return Err(ApiError::FunctionNotFound(name.clone()));
    }
    if alias.function_version.is_empty() {
        return Err(validate::ValidationError::new(
            "function_version",
            "function_version is required: a published version number or $LATEST",
        )
        .into());
    }
    require_version(store, name, &alias.function_version)?;
    let weights = &alias.additional_version_weights;
    if weights.len() > 1 {
        return Err(VersionError::Routing(format!(
            "at most one additional version, got {} ({})",
            weights.len(),
            weights.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
        .into());
    }
    if let Some((version, weight)) = weights.iter().next() {
        if !(weight.is_finite() && *weight > 0.0 && *weight < 1.0) {
            return Err(VersionError::Routing(format!(
                "the weight of version {version} must be between 0 and 1 (exclusive), got {weight}"
            ))
            .into());
        }
        if *version == alias.function_version {
            return Err(VersionError::Routing(format!(
                "version {version} is the alias's function_version; the additional version must be another one"
            ))
            .into());
        }
        if version == LATEST || alias.function_version == LATEST {
            return Err(VersionError::Routing(
                "$LATEST cannot take part in weighted routing: publish a version".to_string(),
            )
            .into());
        }
        require_version(store, name, version)?;
    }
    Ok(())
}

fn store_not_found(e: ApiError) -> ApiError {
    match e {
        ApiError::Store(StoreError::FunctionNotFound(n)) => ApiError::FunctionNotFound(n),
        e => e,
    }
}

/// A PublishVersion of `$LATEST`; with the preconditions, only if `$LATEST` still has that code
/// and revision.
#[derive(Debug, Clone, Default)]
pub(crate) struct PublishVersion {
    pub function_name: String,
    /// "" = `$LATEST`'s description.
    pub description: String,
    pub expected_code_sha256: Option<String>,
    pub expected_revision_id: Option<String>,
}

impl From<v1::PublishVersionRequest> for PublishVersion {
    fn from(r: v1::PublishVersionRequest) -> Self {
        PublishVersion {
            function_name: r.function_name,
            description: r.description,
            expected_code_sha256: Some(r.code_sha256).filter(|s| !s.is_empty()),
            expected_revision_id: Some(r.revision_id).filter(|s| !s.is_empty()),
        }
    }
}

/// Publishes `$LATEST` as the next version (or returns the newest version when `$LATEST` has
/// not changed since); the version's configuration (`version` is its number).
pub(crate) async fn publish_version(
    shared: &Shared,
    r: PublishVersion,
) -> Result<FunctionConfig, ApiError> {
    validate::name(&r.function_name)?;
    let req = PublishRequest {
        description: r.description,
        expected_code_sha256: r.expected_code_sha256,
        expected_revision_id: r.expected_revision_id,
        new_revision_id: new_revision(),
        now_ms: now_ms(),
    };
    let name = r.function_name.clone();
    let published = shared
        .store(move |s| s.publish_version(&name, &req))
        .await
        .map_err(store_not_found)?;
    if published.created {
        tracing::info!(function = %r.function_name, version = %published.config.version, "version published");
    }
    Ok(published.config)
}

/// `$LATEST` of function `name`, then its published versions in ascending order.
pub(crate) async fn list_versions(
    shared: &Shared,
    name: String,
) -> Result<Vec<FunctionConfig>, ApiError> {
    let (latest, versions) = shared
        .blocking(move |s| {
            let latest = s
                .get_function(&name)?
                .ok_or_else(|| ApiError::FunctionNotFound(name.clone()))?;
            Ok((latest, s.list_versions(&name)?))
        })
        .await?;
    let mut out = vec![latest];
    out.extend(versions);
    Ok(out)
}

fn weights(routing: Option<v1::RoutingConfig>) -> BTreeMap<String, f64> {
    routing
        .map(|r| r.additional_version_weights.into_iter().collect())
        .unwrap_or_default()
}

/// A CreateAlias.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewAlias {
    pub function_name: String,
    pub name: String,
    pub function_version: String,
    pub additional_version_weights: BTreeMap<String, f64>,
    pub description: String,
}

impl From<v1::CreateAliasRequest> for NewAlias {
    fn from(r: v1::CreateAliasRequest) -> Self {
        NewAlias {
            function_name: r.function_name,
            name: r.name,
            function_version: r.function_version,
            additional_version_weights: weights(r.routing_config),
            description: r.description,
        }
    }
}

/// An UpdateAlias: fields left `None` keep their value; with `expected_revision_id`, only if the
/// alias still has that revision.
#[derive(Debug, Clone, Default)]
pub(crate) struct AliasUpdate {
    pub function_name: String,
    pub name: String,
    pub function_version: Option<String>,
    pub additional_version_weights: Option<BTreeMap<String, f64>>,
    pub description: Option<String>,
    pub expected_revision_id: Option<String>,
}

impl From<v1::UpdateAliasRequest> for AliasUpdate {
    fn from(r: v1::UpdateAliasRequest) -> Self {
        AliasUpdate {
            function_name: r.function_name,
            name: r.name,
            function_version: r.function_version,
            additional_version_weights: r
                .routing_config
                .is_some()
                .then(|| weights(r.routing_config)),
            description: r.description,
            expected_revision_id: Some(r.revision_id).filter(|s| !s.is_empty()),
        }
    }
}

pub(crate) async fn create_alias(shared: &Shared, r: NewAlias) -> Result<Alias, ApiError> {
    validate::name(&r.function_name)?;
    alias_name(&r.name)?;
    let alias = Alias {
        function_name: r.function_name,
        name: r.name,
        function_version: r.function_version,
        additional_version_weights: r.additional_version_weights,
        description: r.description,
        revision_id: new_revision(),
        last_modified_ms: now_ms(),
    };
    let _writes = ALIAS_WRITES.lock().await;
    let stored = alias.clone();
    shared
        .blocking(move |s| {
            check_alias_targets(s, &stored)?;
            if s.get_alias(&stored.function_name, &stored.name)?.is_some() {
                return Err(VersionError::AliasExists {
                    name: stored.function_name.clone(),
                    alias: stored.name.clone(),
                }
                .into());
            }
            s.put_alias(&stored).map_err(ApiError::from)
        })
        .await
        .map_err(store_not_found)?;
    tracing::info!(function = %alias.function_name, alias = %alias.name, version = %alias.function_version, "alias created");
    Ok(alias)
}

pub(crate) async fn update_alias(shared: &Shared, r: AliasUpdate) -> Result<Alias, ApiError> {
    validate::name(&r.function_name)?;
    alias_name(&r.name)?;
    let _writes = ALIAS_WRITES.lock().await;
    let alias = shared
        .blocking(move |s| {
            let mut alias = s.get_alias(&r.function_name, &r.name)?.ok_or_else(|| {
                if matches!(s.get_function(&r.function_name), Ok(None)) {
                    ApiError::FunctionNotFound(r.function_name.clone())
                } else {
                    VersionError::AliasNotFound {
                        name: r.function_name.clone(),
                        alias: r.name.clone(),
                    }
                    .into()
                }
            })?;
            if let Some(expected) = r.expected_revision_id {
                if expected != alias.revision_id {
                    return Err(VersionError::AliasRevision {
                        alias: alias.name,
                        expected,
                        actual: alias.revision_id,
                    }
                    .into());
                }
            }
            if let Some(v) = r.function_version {
                alias.function_version = v;
            }
            if let Some(d) = r.description {
                alias.description = d;
            }
            if let Some(w) = r.additional_version_weights {
                alias.additional_version_weights = w;
            }
            alias.revision_id = new_revision();
            alias.last_modified_ms = now_ms();
            check_alias_targets(s, &alias)?;
            s.put_alias(&alias)?;
            Ok(alias)
        })
        .await
        .map_err(store_not_found)?;
    tracing::info!(function = %alias.function_name, alias = %alias.name, version = %alias.function_version, "alias updated");
    Ok(alias)
}

pub(crate) async fn get_alias(
    shared: &Shared,
    function_name: String,
    name: String,
) -> Result<Alias, ApiError> {
    shared
        .blocking(move |s| {
            if s.get_function(&function_name)?.is_none() {
                return Err(ApiError::FunctionNotFound(function_name));
            }
            s.get_alias(&function_name, &name)?.ok_or_else(|| {
                VersionError::AliasNotFound {
                    name: function_name,
                    alias: name,
                }
                .into()
            })
        })
        .await
}

pub(crate) async fn list_aliases(
    shared: &Shared,
    function_name: String,
) -> Result<Vec<Alias>, ApiError> {
    shared
        .blocking(move |s| {
            if s.get_function(&function_name)?.is_none() {
                return Err(ApiError::FunctionNotFound(function_name));
            }
            Ok(s.list_aliases(&function_name)?)
        })
        .await
}

pub(crate) async fn delete_alias(
    shared: &Shared,
    function_name: String,
    name: String,
) -> Result<(), ApiError> {
    let _writes = ALIAS_WRITES.lock().await;
    let (function, alias) = (function_name.clone(), name.clone());
    shared
        .blocking(move |s| {
            if s.get_function(&function)?.is_none() {
                return Err(ApiError::FunctionNotFound(function));
            }
            if !s.delete_alias(&function, &alias)? {
                return Err(VersionError::AliasNotFound {
                    name: function,
                    alias,
                }
                .into());
            }
            // Provisioned concurrency configured on the alias goes with it.
            s.delete_provisioned(&function, &alias)?;
            Ok(())
        })
        .await
        .map_err(store_not_found)?;
    tracing::info!(function = %function_name, alias = %name, "alias deleted");
    Ok(())
}

/// GetFunction with a qualifier: the configuration of that version, or of the alias's primary
/// version, with the qualified ARN.
pub(crate) async fn get_qualified(
    shared: &Shared,
    name: &str,
    qualifier: &str,
) -> Result<v1::FunctionConfiguration, ApiError> {
    let target = lookup(shared, name, qualifier).await?;
    let q = match Qualifier::parse(qualifier)? {
        Qualifier::Latest if qualifier.is_empty() => "",
        _ => qualifier,
    };
    Ok(configuration(target.primary(), q))
}

/// DeleteFunction with a version number as qualifier: deletes that version only. `Ok(false)`
/// when the qualifier is empty (the caller deletes the whole function).
pub(crate) async fn delete_qualified(
    shared: &Shared,
    name: &str,
    qualifier: &str,
) -> Result<bool, ApiError> {
    let number = match Qualifier::parse(qualifier)? {
        Qualifier::Latest if qualifier.is_empty() => return Ok(false),
        Qualifier::Latest => {
            return Err(VersionError::DeleteLatest {
                name: name.to_string(),
            }
            .into())
        }
        Qualifier::Alias(alias) => {
            return Err(VersionError::DeleteAliasAsVersion {
                name: name.to_string(),
                alias,
            }
            .into())
        }
        Qualifier::Version(n) => n,
    };
    let _writes = ALIAS_WRITES.lock().await;
    let owned = name.to_string();
    shared
        .blocking(move |s| {
            if s.get_function(&owned)?.is_none() {
                return Err(ApiError::FunctionNotFound(owned));
            }
            match s.delete_version(&owned, number)? {
                Some(_) => {
                    s.delete_provisioned(&owned, &number.to_string())?;
                    Ok(())
                }
                None => Err(VersionError::VersionNotFound {
                    name: owned,
                    version: number.to_string(),
                }
                .into()),
            }
        })
        .await?;
    tracing::info!(function = %name, version = number, "version deleted");
    shared.retiring.function_changed(name);
    Ok(true)
}
