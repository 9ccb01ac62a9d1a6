//! Provisioned concurrency configurations: API side (the reconciler and the status are in
//! `crate::provisioned`).
use std::sync::Arc;

use lamina_proto::domain::{FunctionConfig, ProvisionedConfig};
use lamina_proto::v1;

use super::{now_ms, ApiError, Shared};
use crate::provisioned::{resolve_in, status};
use crate::store::Store;

/// Looks a configuration and the version it provisions up (`None`: it no longer resolves).
async fn load(
    shared: &Shared,
    function: &str,
    qualifier: &str,
) -> Result<(ProvisionedConfig, Option<FunctionConfig>), ApiError> {
    let store = Arc::clone(&shared.store);
    let (f, q) = (function.to_string(), qualifier.to_string());
    let found = tokio::task::spawn_blocking(move || {
        if store.get_function(&f)?.is_none() {
            return Err(ApiError::FunctionNotFound(f));
        }
        let Some(config) = store.get_provisioned(&f, &q)? else {
            return Ok(None);
        };
        let version = resolve_in(store.as_ref(), &f, &q).ok();
        Ok(Some((config, version)))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))??;
    found.ok_or_else(|| ApiError::ProvisionedNotFound {
        function: function.to_string(),
        qualifier: qualifier.to_string(),
    })
}

/// Keeps `requested` sandboxes of `function:qualifier` initialised; the configuration with its
/// status.
pub(crate) async fn put_provisioned_concurrency(
    shared: &Shared,
    function: String,
    qualifier: String,
    requested: u32,
) -> Result<v1::ProvisionedConcurrencyConfig, ApiError> {
    if requested == 0 {
        return Err(ApiError::BadRequest(
            "provisioned_concurrent_executions must be at least 1, got 0: delete the \
             configuration to remove it"
                .to_string(),
        ));
    }
    let config = ProvisionedConfig {
        function_name: function,
        qualifier,
        requested,
        last_modified_ms: now_ms(),
    };
    let store = Arc::clone(&shared.store);
    let stored = config.clone();
    let version = tokio::task::spawn_blocking(move || {
        let version = resolve_in(store.as_ref(), &stored.function_name, &stored.qualifier)?;
        check_within_reservation(store.as_ref(), &stored)?;
        store.put_provisioned(&stored)?;
        Ok::<_, ApiError>(version)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))??;
    shared.provisioning.changed();
    tracing::info!(function = %config.function_name, qualifier = %config.qualifier, version = %version.version, requested = config.requested, "provisioned concurrency set");
    Ok(status(shared, &config, Some(&version)))
}

/// As Lambda: with a reservation, the provisioned concurrency of all the function's versions and
/// aliases (this configuration replacing its previous value) must fit in it.
fn check_within_reservation(store: &dyn Store, config: &ProvisionedConfig) -> Result<(), ApiError> {
    let Some(reserved) = store.get_reserved_concurrency(&config.function_name)? else {
        return Ok(());
    };
    let others: u32 = store
        .list_provisioned(Some(&config.function_name))?
        .iter()
        .filter(|p| p.qualifier != config.qualifier)
        .map(|p| p.requested)
        .sum();
    let total = others + config.requested;
    if total > reserved {
        return Err(ApiError::BadRequest(format!(
            "provisioned concurrency {} for `{}:{}` would bring the function's total to {total}, \
             over its reserved concurrency {reserved}: raise or delete the reservation first",
            config.requested, config.function_name, config.qualifier
        )));
    }
    Ok(())
}

pub(crate) async fn get_provisioned_concurrency(
    shared: &Shared,
    function: &str,
    qualifier: &str,
) -> Result<v1::ProvisionedConcurrencyConfig, ApiError> {
    let (config, version) = load(shared, function, qualifier).await?;
    Ok(status(shared, &config, version.as_ref()))
}

/// Every configuration of `function` with its status.
pub(crate) async fn list_for(
    shared: &Shared,
    function: &str,
) -> Result<Vec<v1::ProvisionedConcurrencyConfig>, ApiError> {
    let store = Arc::clone(&shared.store);
    let f = function.to_string();
    let configs = tokio::task::spawn_blocking(move || {
        if store.get_function(&f)?.is_none() {
            return Err(ApiError::FunctionNotFound(f));
        }
        let configs = store.list_provisioned(Some(&f))?;
        Ok(configs
            .into_iter()
            .map(|c| {
                let version = resolve_in(store.as_ref(), &f, &c.qualifier).ok();
                (c, version)
            })
            .collect::<Vec<_>>())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))??;
    Ok(configs
        .iter()
        .map(|(c, v)| status(shared, c, v.as_ref()))
        .collect())
}

pub(crate) async fn delete_provisioned_concurrency(
    shared: &Shared,
    function: String,
    qualifier: String,
) -> Result<(), ApiError> {
    let (f, q) = (function.clone(), qualifier.clone());
    let store = Arc::clone(&shared.store);
    let deleted = tokio::task::spawn_blocking(move || {
        if store.get_function(&f)?.is_none() {
            return Err(ApiError::FunctionNotFound(f));
        }
        Ok(store.delete_provisioned(&f, &q)?)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))??;
    if !deleted {
        return Err(ApiError::ProvisionedNotFound {
            function,
            qualifier,
        });
    }
    shared.provisioning.changed();
    tracing::info!(function = %function, qualifier = %qualifier, "provisioned concurrency deleted");
    Ok(())
}
