//! The HTTP gateway's durable state: function URL configurations and HTTP APIs (with their
//! routes), in one column family, `gateway`:
//!
//! - `url \0 function \0 qualifier` -> JSON `FunctionUrlConfig` (qualifier "" = `$LATEST`, else an
//!   alias name): all URLs of a function form one range, deleted with the function in its batch
//!   (and an alias's URL with the alias);
//! - `api \0 api_id` -> JSON `HttpApi`, routes included.
//!
//! The gateway's request path finds a URL by its id and an API by its id without touching the
//! disk: both are served from maps loaded at open ([`GatewayMemory`]) and updated by every writer
//! under its lock, after its batch is written (`blob_refs` for URLs, the function writers' lock:
//! a URL never outlives its function or alias; `gateway_writers` for HTTP APIs).
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use lamina_proto::gateway::{FunctionUrlConfig, HttpApi};

use super::db::{Batch, Durability};
use super::rocks::RocksStore;
use super::schema;
use super::table::{Json, Table};
use super::writers::lock;
use super::{SettingsStore, Store, StoreError};

/// Function URLs and HTTP APIs. Writes are synced; the `*_in_memory` reads never block (the
/// gateway's request path calls them on the async threads) and are exactly coherent with the
/// writers, as the function cache is.
pub trait GatewayStore {
    /// Stores a new URL configuration of `(function_name, qualifier)`.
    /// `StoreError::FunctionUrlExists` when that pair has one already; `FunctionNotFound` /
    /// `AliasNotFound` when the function or the alias named by a non-empty qualifier is gone
    /// (checked under the function writers' lock).
    fn create_function_url(&self, config: &FunctionUrlConfig) -> Result<(), StoreError>;
    /// Replaces the URL configuration of `(function_name, qualifier)` (same `url_id`).
    /// `StoreError::FunctionUrlNotFound` when there is none.
    fn update_function_url(&self, config: &FunctionUrlConfig) -> Result<(), StoreError>;
    fn get_function_url(
        &self,
        function_name: &str,
        qualifier: &str,
    ) -> Result<Option<FunctionUrlConfig>, StoreError>;
    /// Every URL configuration of one function, by qualifier ("" first).
    fn list_function_urls(&self, function_name: &str)
        -> Result<Vec<FunctionUrlConfig>, StoreError>;
    /// `None` when there was none.
    fn delete_function_url(
        &self,
        function_name: &str,
        qualifier: &str,
    ) -> Result<Option<FunctionUrlConfig>, StoreError>;
    /// The URL configuration with this id (the gateway's lookup by host or path).
    fn function_url_in_memory(&self, url_id: &str) -> Option<Arc<FunctionUrlConfig>>;

    /// Creates or replaces an HTTP API (routes included) by `api_id`.
    fn put_http_api(&self, api: &HttpApi) -> Result<(), StoreError>;
    fn get_http_api(&self, api_id: &str) -> Result<Option<HttpApi>, StoreError>;
    /// Every HTTP API, by id.
    fn list_http_apis(&self) -> Result<Vec<HttpApi>, StoreError>;
    /// `None` when there was none.
    fn delete_http_api(&self, api_id: &str) -> Result<Option<HttpApi>, StoreError>;
    /// The HTTP API with this id (the gateway's lookup by host or path).
    fn http_api_in_memory(&self, api_id: &str) -> Option<Arc<HttpApi>>;
}

const URL_PREFIX: &[u8] = b"url\0";
const API_PREFIX: &[u8] = b"api\0";

/// `url \0 function \0`: the start of every URL key of a function.
fn url_function_prefix(function: &str) -> Vec<u8> {
    let mut k = URL_PREFIX.to_vec();
    k.extend_from_slice(function.as_bytes());
    k.push(0);
    k
}

/// `url \0 function \x01`: the first key after every URL key of a function.
fn url_function_end(function: &str) -> Vec<u8> {
    let mut k = URL_PREFIX.to_vec();
    k.extend_from_slice(function.as_bytes());
    k.push(1);
    k
}

fn url_key(function: &str, qualifier: &str) -> Vec<u8> {
    let mut k = url_function_prefix(function);
    k.extend_from_slice(qualifier.as_bytes());
    k
}

fn api_key(api_id: &str) -> Vec<u8> {
    let mut k = API_PREFIX.to_vec();
    k.extend_from_slice(api_id.as_bytes());
    k
}

/// The gateway's lookups by id, loaded at open and kept exactly coherent by the writers.
#[derive(Default)]
pub(super) struct GatewayMemory {
    urls: RwLock<HashMap<String, Arc<FunctionUrlConfig>>>,
    apis: RwLock<HashMap<String, Arc<HttpApi>>>,
}

impl GatewayMemory {
    fn urls_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<FunctionUrlConfig>>> {
        self.urls.write().unwrap_or_else(|p| p.into_inner())
    }

    fn apis_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<HttpApi>>> {
        self.apis.write().unwrap_or_else(|p| p.into_inner())
    }

    fn url(&self, url_id: &str) -> Option<Arc<FunctionUrlConfig>> {
        let urls = self.urls.read().unwrap_or_else(|p| p.into_inner());
        urls.get(url_id).cloned()
    }

    fn api(&self, api_id: &str) -> Option<Arc<HttpApi>> {
        let apis = self.apis.read().unwrap_or_else(|p| p.into_inner());
        apis.get(api_id).cloned()
    }

    /// Forgets URLs whose records a written batch deleted.
    pub(super) fn forget_urls(&self, url_ids: &[String]) {
        if url_ids.is_empty() {
            return;
        }
        let mut urls = self.urls_mut();
        for id in url_ids {
            urls.remove(id);
        }
    }
}

impl RocksStore {
    fn urls(&self) -> Table<'_, Json<FunctionUrlConfig>> {
        self.db.table(schema::GATEWAY)
    }

    fn apis(&self) -> Table<'_, Json<HttpApi>> {
        self.db.table(schema::GATEWAY)
    }

    /// Loads the lookups by id (at open).
    pub(super) fn load_gateway(&self) -> Result<(), StoreError> {
        let urls = self.urls().values_with_prefix(URL_PREFIX, |_| true)?;
        let apis = self.apis().values_with_prefix(API_PREFIX, |_| true)?;
        *self.gateway.urls_mut() = urls
            .into_iter()
            .map(|u| (u.url_id.clone(), Arc::new(u)))
            .collect();
        *self.gateway.apis_mut() = apis
            .into_iter()
            .map(|a| (a.api_id.clone(), Arc::new(a)))
            .collect();
        Ok(())
    }

    /// Adds the deletion of every URL of `function` to `batch` (the function goes); returns
    /// their ids, to [`GatewayMemory::forget_urls`] once the batch is written. Under `blob_refs`.
    pub(super) fn delete_function_urls_in(
        &self,
        function: &str,
        batch: &mut Batch<'_>,
    ) -> Result<Vec<String>, StoreError> {
        let ids = self
            .urls()
            .values_with_prefix(&url_function_prefix(function), |_| true)?
            .into_iter()
            .map(|u| u.url_id)
            .collect();
        self.urls().delete_range(
            batch,
            url_function_prefix(function),
            url_function_end(function),
        );
        Ok(ids)
    }

    /// Adds the deletion of the URL of `function:alias` to `batch` (the alias goes); returns its
    /// id when it had one. Under `blob_refs`.
    pub(super) fn delete_alias_url_in(
        &self,
        function: &str,
        alias: &str,
        batch: &mut Batch<'_>,
    ) -> Result<Option<String>, StoreError> {
        let k = url_key(function, alias);
        let Some(config) = self.urls().get(&k)? else {
            return Ok(None);
        };
        self.urls().delete(batch, k);
        Ok(Some(config.url_id))
    }

    /// Writes a URL writer's batch (synced) and puts `config` in the lookup by id.
    fn write_url(&self, config: &FunctionUrlConfig, op: &str) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        self.urls().put(
            &mut batch,
            url_key(&config.function_name, &config.qualifier),
            config,
        )?;
        self.db.write(&batch, Durability::Synced, op)?;
        self.gateway
            .urls_mut()
            .insert(config.url_id.clone(), Arc::new(config.clone()));
        Ok(())
    }
}

impl GatewayStore for RocksStore {
    fn create_function_url(&self, config: &FunctionUrlConfig) -> Result<(), StoreError> {
        // The function writers' lock: neither the function nor the alias can go between the
        // check and the write (their deletes take this URL with them under the same lock).
        let _writers = lock(&self.blob_refs);
        let (function, qualifier) = (&config.function_name, &config.qualifier);
        if self.get_function(function)?.is_none() {
            return Err(StoreError::FunctionNotFound(function.clone()));
        }
        if !qualifier.is_empty() && self.get_alias(function, qualifier)?.is_none() {
            return Err(StoreError::AliasNotFound {
                function: function.clone(),
                alias: qualifier.clone(),
            });
        }
        if self.urls().contains(&url_key(function, qualifier))? {
            return Err(StoreError::FunctionUrlExists {
                function: function.clone(),
                qualifier: qualifier.clone(),
            });
        }
        if self.gateway.url(&config.url_id).is_some() {
            return Err(self
                .db
                .corrupt(
                    format!("function URL id `{}`", config.url_id),
                    "the id is taken by another function URL; retry (ids are random)",
                )
                .into());
        }
        self.write_url(config, "create function URL")
    }

    fn update_function_url(&self, config: &FunctionUrlConfig) -> Result<(), StoreError> {
        let _writers = lock(&self.blob_refs);
        let (function, qualifier) = (&config.function_name, &config.qualifier);
        let Some(current) = self.urls().get(&url_key(function, qualifier))? else {
            return Err(StoreError::FunctionUrlNotFound {
                function: function.clone(),
                qualifier: qualifier.clone(),
            });
        };
        if current.url_id != config.url_id {
            return Err(self
                .db
                .corrupt(
                    format!("update of the function URL of `{function}`"),
                    format!(
                        "the URL id changed from `{}` to `{}`: ids are kept for the URL's lifetime",
                        current.url_id, config.url_id
                    ),
                )
                .into());
        }
        self.write_url(config, "update function URL")
    }

    fn get_function_url(
        &self,
        function_name: &str,
        qualifier: &str,
    ) -> Result<Option<FunctionUrlConfig>, StoreError> {
        Ok(self.urls().get(&url_key(function_name, qualifier))?)
    }

    fn list_function_urls(
        &self,
        function_name: &str,
    ) -> Result<Vec<FunctionUrlConfig>, StoreError> {
        Ok(self
            .urls()
            .values_with_prefix(&url_function_prefix(function_name), |_| true)?)
    }

    fn delete_function_url(
        &self,
        function_name: &str,
        qualifier: &str,
    ) -> Result<Option<FunctionUrlConfig>, StoreError> {
        let _writers = lock(&self.blob_refs);
        let k = url_key(function_name, qualifier);
        let Some(current) = self.urls().get(&k)? else {
            return Ok(None);
        };
        let mut batch = Batch::new();
        self.urls().delete(&mut batch, k);
        self.db
            .write(&batch, Durability::Synced, "delete function URL")?;
        self.gateway
            .forget_urls(std::slice::from_ref(&current.url_id));
        Ok(Some(current))
    }

    fn function_url_in_memory(&self, url_id: &str) -> Option<Arc<FunctionUrlConfig>> {
        self.gateway.url(url_id)
    }

    fn put_http_api(&self, api: &HttpApi) -> Result<(), StoreError> {
        let _writers = lock(&self.gateway_writers);
        let mut batch = Batch::new();
        self.apis().put(&mut batch, api_key(&api.api_id), api)?;
        self.db
            .write(&batch, Durability::Synced, "write HTTP API")?;
        self.gateway
            .apis_mut()
            .insert(api.api_id.clone(), Arc::new(api.clone()));
        Ok(())
    }

    fn get_http_api(&self, api_id: &str) -> Result<Option<HttpApi>, StoreError> {
        Ok(self.apis().get(&api_key(api_id))?)
    }

    fn list_http_apis(&self) -> Result<Vec<HttpApi>, StoreError> {
        Ok(self.apis().values_with_prefix(API_PREFIX, |_| true)?)
    }

    fn delete_http_api(&self, api_id: &str) -> Result<Option<HttpApi>, StoreError> {
        let _writers = lock(&self.gateway_writers);
        let k = api_key(api_id);
        let Some(current) = self.apis().get(&k)? else {
            return Ok(None);
        };
        let mut batch = Batch::new();
        self.apis().delete(&mut batch, k);
        self.db
            .write(&batch, Durability::Synced, "delete HTTP API")?;
        self.gateway.apis_mut().remove(api_id);
        Ok(Some(current))
    }

    fn http_api_in_memory(&self, api_id: &str) -> Option<Arc<HttpApi>> {
        self.gateway.api(api_id)
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
