//! Provisioned concurrency configurations: API side.
use lamina_proto::v1;

use super::{ApiError, Shared};

pub(crate) async fn put_provisioned_concurrency(
    _shared: &Shared,
    _r: v1::PutProvisionedConcurrencyRequest,
) -> Result<v1::ProvisionedConcurrencyConfig, ApiError> {
    Err(ApiError::Internal(
        "put_provisioned_concurrency is not built yet".to_string(),
    ))
}

pub(crate) async fn get_provisioned_concurrency(
    _shared: &Shared,
    _r: v1::GetProvisionedConcurrencyRequest,
) -> Result<v1::ProvisionedConcurrencyConfig, ApiError> {
    Err(ApiError::Internal(
        "get_provisioned_concurrency is not built yet".to_string(),
    ))
}

pub(crate) async fn list_provisioned_concurrency(
    _shared: &Shared,
    _r: v1::ListProvisionedConcurrencyRequest,
) -> Result<v1::ListProvisionedConcurrencyResponse, ApiError> {
    Err(ApiError::Internal(
        "list_provisioned_concurrency is not built yet".to_string(),
    ))
}

pub(crate) async fn delete_provisioned_concurrency(
    _shared: &Shared,
    _r: v1::DeleteProvisionedConcurrencyRequest,
) -> Result<v1::DeleteProvisionedConcurrencyResponse, ApiError> {
    Err(ApiError::Internal(
        "delete_provisioned_concurrency is not built yet".to_string(),
    ))
}
