//! Qualifier resolution: what `NAME[:QUALIFIER]` names (`$LATEST`, a version or an alias) and the
//! version an invocation of it runs (an alias with a routing configuration picks its additional
//! version at random by weight). The invocation pipeline, the reconcilers and the API's
//! qualified reads all resolve here; lookups read the store's in-memory records on the calling
//! thread when they are all there, else the store off the async threads.
use std::sync::Arc;

use lamina_proto::domain::{function_arn, qualified_function_arn, Alias, FunctionConfig, LATEST};
use rand::Rng;

use crate::context::Context;
use crate::store::{parse_version_number, Store, StoreError};

const ALIAS_NAME_MAX: usize = 128;

/// Why a qualifier could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("function `{0}` not found")]
    FunctionNotFound(String),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ResolveError {
    /// The function, version or alias does not exist (or the qualifier cannot name one), as
    /// opposed to a lookup that failed.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ResolveError::FunctionNotFound(_)
                | ResolveError::Store(StoreError::FunctionNotFound(_))
                | ResolveError::Version(
                    VersionError::VersionNotFound { .. }
                        | VersionError::AliasNotFound { .. }
                        | VersionError::BadQualifier { .. }
                )
        )
    }
}

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

/// What a qualifier names, as written (not yet looked up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Qualifier {
    Latest,
    Version(u32),
    Alias(String),
}

impl Qualifier {
    /// "" and "$LATEST" name $LATEST; digits a version; anything valid as an alias name an alias.
    pub(crate) fn parse(q: &str) -> Result<Qualifier, ResolveError> {
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
    type Error: From<ResolveError>;
    fn function(&self, name: &str) -> Result<Option<FunctionConfig>, Self::Error>;
    fn version(&self, name: &str, version: u32) -> Result<Option<FunctionConfig>, Self::Error>;
    fn alias(&self, name: &str, alias: &str) -> Result<Option<Alias>, Self::Error>;
}

/// The store's blocking reads.
struct Blocking<'a>(&'a dyn Store);

impl Records for Blocking<'_> {
    type Error = ResolveError;
    fn function(&self, name: &str) -> Result<Option<FunctionConfig>, ResolveError> {
        Ok(self.0.get_function(name)?)
    }
    fn version(&self, name: &str, version: u32) -> Result<Option<FunctionConfig>, ResolveError> {
        Ok(self.0.get_version(name, version)?)
    }
    fn alias(&self, name: &str, alias: &str) -> Result<Option<Alias>, ResolveError> {
        Ok(self.0.get_alias(name, alias)?)
    }
}

/// The store's in-memory records only: never blocks, so it runs on the async threads.
struct InMemory<'a>(&'a dyn Store);

/// An in-memory lookup's failure: a record is not in memory (read the store), or an error.
enum MemoryMiss {
    NotInMemory,
    Failed(ResolveError),
}

impl From<ResolveError> for MemoryMiss {
    fn from(e: ResolveError) -> MemoryMiss {
        MemoryMiss::Failed(e)
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
) -> Result<Target, ResolveError> {
    lookup_from(&Blocking(store), name, qualifier)
}

fn lookup_from<R: Records>(records: &R, name: &str, qualifier: &str) -> Result<Target, R::Error> {
    let qualifier = Qualifier::parse(qualifier)?;
    let latest = records
        .function(name)?
        .ok_or_else(|| ResolveError::FunctionNotFound(name.to_string()))?;
    let version = |v: &str| -> Result<FunctionConfig, R::Error> {
        if v == LATEST {
            return Ok(latest.clone());
        }
        let found = match parse_version_number(v) {
            Some(n) => records.version(name, n)?,
            None => None,
        };
        found.ok_or_else(|| {
            ResolveError::from(VersionError::VersionNotFound {
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
                ResolveError::from(VersionError::AliasNotFound {
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
    ctx: &Context,
    name: &str,
    qualifier: &str,
) -> Result<Target, ResolveError> {
    match lookup_from(&InMemory(ctx.store.as_ref()), name, qualifier) {
        Ok(target) => return Ok(target),
        Err(MemoryMiss::Failed(e)) => return Err(e),
        Err(MemoryMiss::NotInMemory) => {}
    }
    let store = Arc::clone(&ctx.store);
    let (name, qualifier) = (name.to_string(), qualifier.to_string());
    tokio::task::spawn_blocking(move || lookup_in(store.as_ref(), &name, &qualifier))
        .await
        .map_err(|e| ResolveError::Internal(format!("store task failed: {e}")))?
}

/// The version an invocation of `name:qualifier` runs: an alias with a routing configuration sends
/// its additional version that share of the invocations (chosen at random per invocation).
pub(crate) async fn resolve(
    ctx: &Context,
    name: &str,
    qualifier: &str,
) -> Result<Resolved, ResolveError> {
    let target = lookup(ctx, name, qualifier).await?;
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

impl Target {
    /// The longest timeout of the versions this target may run (an alias: of its primary and
    /// additional versions), whichever a resolution picks.
    pub(crate) fn longest_timeout(&self) -> std::time::Duration {
        let timeout =
            |f: &FunctionConfig| std::time::Duration::from_secs(u64::from(f.spec.timeout_s));
        match self {
            Target::Latest(c) | Target::Version(c) => timeout(c),
            Target::Alias {
                primary,
                additional,
                ..
            } => additional.as_ref().map_or(timeout(primary), |(extra, _)| {
                timeout(primary).max(timeout(extra))
            }),
        }
    }
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
