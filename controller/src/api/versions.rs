//! Versions and aliases: publish, list, alias CRUD and qualifier resolution.
use lamina_proto::v1;

use super::{ApiError, Shared};

pub(crate) async fn publish_version(
    _shared: &Shared,
    _r: v1::PublishVersionRequest,
) -> Result<v1::FunctionConfiguration, ApiError> {
    Err(ApiError::Internal(
        "publish_version is not built yet".to_string(),
    ))
}

pub(crate) async fn list_versions(
    _shared: &Shared,
    _r: v1::ListVersionsRequest,
) -> Result<v1::ListVersionsResponse, ApiError> {
    Err(ApiError::Internal(
        "list_versions is not built yet".to_string(),
    ))
}

pub(crate) async fn create_alias(
    _shared: &Shared,
    _r: v1::CreateAliasRequest,
) -> Result<v1::Alias, ApiError> {
    Err(ApiError::Internal(
        "create_alias is not built yet".to_string(),
    ))
}

pub(crate) async fn update_alias(
    _shared: &Shared,
    _r: v1::UpdateAliasRequest,
) -> Result<v1::Alias, ApiError> {
    Err(ApiError::Internal(
        "update_alias is not built yet".to_string(),
    ))
}

pub(crate) async fn get_alias(
    _shared: &Shared,
    _r: v1::GetAliasRequest,
) -> Result<v1::Alias, ApiError> {
    Err(ApiError::Internal("get_alias is not built yet".to_string()))
}

pub(crate) async fn list_aliases(
    _shared: &Shared,
    _r: v1::ListAliasesRequest,
) -> Result<v1::ListAliasesResponse, ApiError> {
    Err(ApiError::Internal(
        "list_aliases is not built yet".to_string(),
    ))
}

pub(crate) async fn delete_alias(
    _shared: &Shared,
    _r: v1::DeleteAliasRequest,
) -> Result<v1::DeleteAliasResponse, ApiError> {
    Err(ApiError::Internal(
        "delete_alias is not built yet".to_string(),
    ))
}
