//! Reserved concurrency per function and the cluster-wide concurrency limit.
use lamina_proto::v1;

use super::{ApiError, Shared};

pub(crate) async fn put_function_concurrency(
    _shared: &Shared,
    _r: v1::PutFunctionConcurrencyRequest,
) -> Result<v1::FunctionConcurrency, ApiError> {
    Err(ApiError::Internal(
        "put_function_concurrency is not built yet".to_string(),
    ))
}

pub(crate) async fn get_function_concurrency(
    _shared: &Shared,
    _r: v1::GetFunctionConcurrencyRequest,
) -> Result<v1::FunctionConcurrency, ApiError> {
    Err(ApiError::Internal(
        "get_function_concurrency is not built yet".to_string(),
    ))
}

pub(crate) async fn delete_function_concurrency(
    _shared: &Shared,
    _r: v1::DeleteFunctionConcurrencyRequest,
) -> Result<v1::FunctionConcurrency, ApiError> {
    Err(ApiError::Internal(
        "delete_function_concurrency is not built yet".to_string(),
    ))
}

pub(crate) async fn get_account_settings(
    _shared: &Shared,
    _r: v1::GetAccountSettingsRequest,
) -> Result<v1::AccountSettings, ApiError> {
    Err(ApiError::Internal(
        "get_account_settings is not built yet".to_string(),
    ))
}
