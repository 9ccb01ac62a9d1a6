//! Versions and aliases: publish, list, alias CRUD, qualified GetFunction/DeleteFunction and the
//! resolution of an invocation's qualifier to the version that runs.
use std::collections::BTreeMap;
use std::sync::Arc;

use lamina_proto::domain::{function_arn, qualified_function_arn, Alias, FunctionConfig, LATEST};
use lamina_proto::v1;
use lamina_proto::validate;
use rand::Rng;

use super::{now_ms, ApiError, Shared};
use crate::store::{parse_version_number, PublishRequest, Store, StoreError};

const ALIAS_NAME_MAX: usize = 128;

/// Alias writers (create, update, delete) and version deletion take this lock, so "the alias does
/// not exist yet", "its revision is X" and "no alias routes to this version" stay true until the
/// write that relied on them.
static ALIAS_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Problems with versions, aliases and qualifiers; each names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("invalid alias name {name:?}: {reason}")]
    AliasName { name: String, reason: &'static str },
    #[error("invalid qualifier {qualifier:?}: use $LATEST, a version number (1, 2, ...) or an alias name")]
    BadQualifier { qualifier: String },
    #[error("function `{name}` has no version {version}")]
    VersionNotFound { name: String, version: String },
    #[error("function `{name}` has no alias `{alias}`")]
    AliasNotFound { name: String, alias: String },
    #[error("function `{name}` already has an alias `{alias}`; update it instead")]
    AliasExists { name: String, alias: String },
    #[error("invalid routing_config: {0}")]
    Routing(String),
    #[error("alias `{alias}` has revision `{actual}`, not the expected `{expected}`")]
    AliasRevision {
        alias: String,
        expected: String,
        actual: String,
    },
    #[error("cannot delete $LATEST of function `{name}` on its own: delete the function without a qualifier")]
    DeleteLatest { name: String },
    #[error("`{alias}` is an alias of function `{name}`: delete it with DeleteAlias (fnctl alias delete)")]
    DeleteAliasAsVersion { name: String, alias: String },
}

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

/// What a qualifier names, as written (not yet looked up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Qualifier {
    Latest,
    Version(u32),
    Alias(String),
}

impl Qualifier {
    /// "" and "$LATEST" name $LATEST; digits a version; anything valid as an alias name an alias.
    pub(crate) fn parse(q: &str) -> Result<Qualifier, ApiError> {
        if q.is_empty() || q == LATEST {
            return Ok(Qualifier::Latest);
        }
        if let Some(n) = parse_version_number(q) {
            return Ok(Qualifier::Version(n));
        }
        if alias_name(q).is_ok() {
            return Ok(Qualifier::Alias(q.to_string()));
        }
        Err(VersionError::BadQualifier {
            qualifier: q.to_string(),
        }
        .into())
    }
}

/// What a qualifier names, looked up: the configurations it may run. Built once per request and
/// consumed at once, so the size difference of the variants does not matter.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Target {
    Latest(FunctionConfig),
    Version(FunctionConfig),
    Alias {
        alias: Alias,
        /// `alias.function_version`'s configuration.
        primary: FunctionConfig,
        /// The additional version and its weight, when the alias routes a share.
        additional: Option<(FunctionConfig, f64)>,
    },
}

impl Target {
    /// The configuration a description (GetFunction) shows: the version the qualifier names, or
    /// an alias's primary version.
    pub(crate) fn primary(&self) -> &FunctionConfig {
        match self {
            Target::Latest(c) | Target::Version(c) => c,
            Target::Alias { primary, .. } => primary,
        }
    }
}

/// The outcome of resolving an invocation's qualifier.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The configuration of the version that runs.
    pub config: FunctionConfig,
    /// `$LATEST` or the version number that runs.
    pub executed_version: String,
    /// The ARN as the caller named the function: unqualified, or `…:function:NAME:QUALIFIER`.
    pub invoked_arn: String,
}

/// `[A-Za-z][A-Za-z0-9_-]{0,127}`; numbers name versions and `$LATEST` is reserved.
pub(crate) fn alias_name(name: &str) -> Result<(), VersionError> {
    let bad = |reason| VersionError::AliasName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name == LATEST {
        return Err(bad("$LATEST is reserved for the unpublished function"));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("it is a number, and numbers name versions"));
    }
    if name.len() > ALIAS_NAME_MAX {
        return Err(bad("it is longer than 128 characters"));
    }
    if !name.as_bytes()[0].is_ascii_alphabetic() {
        return Err(bad("it must start with a letter"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(bad("only letters, digits, `_` and `-` are allowed"));
    }
    Ok(())
}

/// Where a lookup reads the records a qualifier names.
trait Records {
    /// Why a lookup could not finish: an error, or (for in-memory reads) a record not in memory.
    type Error: From<ApiError>;
    fn function(&self, name: &str) -> Result<Option<FunctionConfig>, Self::Error>;
    fn version(&self, name: &str, version: u32) -> Result<Option<FunctionConfig>, Self::Error>;
    fn alias(&self, name: &str, alias: &str) -> Result<Option<Alias>, Self::Error>;
}

/// The store's blocking reads.
struct Blocking<'a>(&'a dyn Store);

impl Records for Blocking<'_> {
    type Error = ApiError;
    fn function(&self, name: &str) -> Result<Option<FunctionConfig>, ApiError> {
        Ok(self.0.get_function(name)?)
    }
    fn version(&self, name: &str, version: u32) -> Result<Option<FunctionConfig>, ApiError> {
        Ok(self.0.get_version(name, version)?)
    }
    fn alias(&self, name: &str, alias: &str) -> Result<Option<Alias>, ApiError> {
        Ok(self.0.get_alias(name, alias)?)
    }
}

/// The store's in-memory records only: never blocks, so it runs on the async threads.
struct InMemory<'a>(&'a dyn Store);

/// An in-memory lookup's failure: a record is not in memory (read the store), or an error.
enum MemoryMiss {
    NotInMemory,
    Api(ApiError),
}

impl From<ApiError> for MemoryMiss {
    fn from(e: ApiError) -> MemoryMiss {
        MemoryMiss::Api(e)
    }
}

impl Records for InMemory<'_> {
    type Error = MemoryMiss;
    fn function(&self, name: &str) -> Result<Option<FunctionConfig>, MemoryMiss> {
        let f = self.0.function_in_memory(name);
        f.map(|f| Some(f.as_ref().clone()))
            .ok_or(MemoryMiss::NotInMemory)
    }
    fn version(&self, name: &str, version: u32) -> Result<Option<FunctionConfig>, MemoryMiss> {
        let v = self.0.version_in_memory(name, version);
        v.map(|v| Some(v.as_ref().clone()))
            .ok_or(MemoryMiss::NotInMemory)
    }
    fn alias(&self, name: &str, alias: &str) -> Result<Option<Alias>, MemoryMiss> {
        let a = self.0.alias_in_memory(name, alias);
        a.map(|a| Some(a.as_ref().clone()))
            .ok_or(MemoryMiss::NotInMemory)
    }
}

/// Looks `qualifier` up in the store (blocking: call it off the async threads).
pub(crate) fn lookup_in(
    store: &dyn Store,
    name: &str,
    qualifier: &str,
) -> Result<Target, ApiError> {
    lookup_from(&Blocking(store), name, qualifier)
}

fn lookup_from<R: Records>(records: &R, name: &str, qualifier: &str) -> Result<Target, R::Error> {
    let qualifier = Qualifier::parse(qualifier)?;
    let latest = records
        .function(name)?
        .ok_or_else(|| ApiError::FunctionNotFound(name.to_string()))?;
    let version = |v: &str| -> Result<FunctionConfig, R::Error> {
        if v == LATEST {
            return Ok(latest.clone());
        }
        let found = match parse_version_number(v) {
            Some(n) => records.version(name, n)?,
            None => None,
        };
        found.ok_or_else(|| {
            ApiError::from(VersionError::VersionNotFound {
                name: name.to_string(),
                version: v.to_string(),
            })
            .into()
        })
    };
    match qualifier {
        Qualifier::Latest => Ok(Target::Latest(latest)),
        Qualifier::Version(n) => Ok(Target::Version(version(&n.to_string())?)),
        Qualifier::Alias(a) => {
            let alias = records.alias(name, &a)?.ok_or_else(|| {
                ApiError::from(VersionError::AliasNotFound {
                    name: name.to_string(),
                    alias: a.clone(),
                })
            })?;
            let primary = version(&alias.function_version)?;
            let additional = match alias.additional_version_weights.iter().next() {
                Some((v, w)) => Some((version(v)?, *w)),
                None => None,
            };
            Ok(Target::Alias {
                alias,
                primary,
                additional,
            })
        }
    }
}

/// Looks `qualifier` of function `name` up: from memory on the calling thread when every record
/// it needs is there (the invocation path), else from the store off the async threads.
pub(crate) async fn lookup(
    shared: &Shared,
    name: &str,
    qualifier: &str,
) -> Result<Target, ApiError> {
    match lookup_from(&InMemory(shared.store.as_ref()), name, qualifier) {
        Ok(target) => return Ok(target),
        Err(MemoryMiss::Api(e)) => return Err(e),
        Err(MemoryMiss::NotInMemory) => {}
    }
    let store = Arc::clone(&shared.store);
    let (name, qualifier) = (name.to_string(), qualifier.to_string());
    tokio::task::spawn_blocking(move || lookup_in(store.as_ref(), &name, &qualifier))
        .await
        .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))?
}

/// The version an invocation of `name:qualifier` runs: an alias with a routing configuration sends
/// its additional version that share of the invocations (chosen at random per invocation).
pub(crate) async fn resolve(
    shared: &Shared,
    name: &str,
    qualifier: &str,
) -> Result<Resolved, ApiError> {
    let target = lookup(shared, name, qualifier).await?;
    let config = match target {
        Target::Latest(c) | Target::Version(c) => c,
        Target::Alias {
            alias,
            primary,
            additional,
        } => match additional {
            Some((extra, weight)) if rand::thread_rng().gen::<f64>() < weight => {
                tracing::trace!(function = %name, alias = %alias.name, version = %extra.version, "alias routed to its additional version");
                extra
            }
            _ => primary,
        },
    };
    Ok(Resolved {
        executed_version: config.version.clone(),
        invoked_arn: if qualifier.is_empty() {
            function_arn(name)
        } else {
            qualified_function_arn(name, qualifier)
        },
        config,
    })
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

/// Runs `f` on the store off the async threads, with `ApiError`s.
async fn blocking<T, F>(shared: &Shared, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
{
    let store = Arc::clone(&shared.store);
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))?
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
    let (latest, versions) = blocking(shared, move |s| {
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
    blocking(shared, move |s| {
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
    let alias = blocking(shared, move |s| {
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
    blocking(shared, move |s| {
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
    blocking(shared, move |s| {
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
    blocking(shared, move |s| {
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
    blocking(shared, move |s| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_follow_lambda_rules() {
        for ok in ["live", "a", "Beta_2-x", &format!("a{}", "b".repeat(127))] {
            assert!(alias_name(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("$LATEST", "reserved"),
            ("123", "number"),
            ("1abc", "start with a letter"),
            ("a.b", "only letters"),
            (&format!("a{}", "b".repeat(128)), "longer than 128"),
        ] {
            let e = alias_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn qualifiers_parse_to_what_they_name() {
        assert_eq!(Qualifier::parse("").unwrap(), Qualifier::Latest);
        assert_eq!(Qualifier::parse("$LATEST").unwrap(), Qualifier::Latest);
        assert_eq!(Qualifier::parse("12").unwrap(), Qualifier::Version(12));
        assert_eq!(
            Qualifier::parse("live").unwrap(),
            Qualifier::Alias("live".to_string())
        );
        for bad in ["0", "01", "a b", "$latest"] {
            assert!(Qualifier::parse(bad).is_err(), "{bad}");
        }
    }
}
