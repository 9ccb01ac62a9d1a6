//! The HTTP gateway's durable state: function URL configurations and HTTP APIs (with their
//! routes). CONTRACT ONLY: the implementation for `RocksStore` is being written (issue 16).
use std::sync::Arc;

use crate::gateway::model::{FunctionUrlConfig, HttpApi};

use super::StoreError;

/// Function URLs and HTTP APIs. Writes are synced; the `*_in_memory` reads never block (the
/// gateway's request path calls them on the async threads) and are exactly coherent with the
/// writers, as the function cache is.
pub trait GatewayStore {
    /// Stores a new URL configuration of `(function_name, qualifier)`.
    /// `StoreError::FunctionUrlExists` when that pair has one already.
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
