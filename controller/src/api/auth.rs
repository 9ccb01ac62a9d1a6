//! The `Auth` service: access keys and their IAM policies (admin keys only; the check is in
//! `KeyStore`'s lookup).
use std::sync::Arc;

use lamina_proto::v1;
use tonic::{Request, Response, Status};

use crate::auth::{AuthError, KeyStore};

pub struct AuthService {
    pub keys: Arc<KeyStore>,
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Status {
        let message = e.to_string();
        match e {
            AuthError::KeyNotFound(_) => Status::not_found(message),
            AuthError::LastAdmin(_) => Status::failed_precondition(message),
            AuthError::Policy(_) => Status::invalid_argument(message),
            AuthError::Read { .. } | AuthError::Write { .. } | AuthError::Corrupt { .. } => {
                tracing::error!(error = %message, "access key store error");
                Status::internal(message)
            }
        }
    }
}

/// A policy field: empty (or only white space) is none.
fn non_empty(policy: String) -> Option<String> {
    (!policy.trim().is_empty()).then_some(policy)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("access key task failed: {e}")))?
        .map_err(Status::from)
}

#[tonic::async_trait]
impl v1::auth_server::Auth for AuthService {
    async fn create_access_key(
        &self,
        request: Request<v1::CreateAccessKeyRequest>,
    ) -> Result<Response<v1::AccessKey>, Status> {
        let r = request.into_inner();
        let keys = Arc::clone(&self.keys);
        let policy = non_empty(r.policy);
        let (creds, mut info) =
            blocking(move || keys.create(&r.description, r.admin, policy)).await?;
        info.secret_access_key = creds.secret_access_key;
        Ok(Response::new(info))
    }

    async fn list_access_keys(
        &self,
        _request: Request<v1::ListAccessKeysRequest>,
    ) -> Result<Response<v1::ListAccessKeysResponse>, Status> {
        Ok(Response::new(v1::ListAccessKeysResponse {
            keys: self.keys.list(),
        }))
    }

    async fn revoke_access_key(
        &self,
        request: Request<v1::RevokeAccessKeyRequest>,
    ) -> Result<Response<v1::RevokeAccessKeyResponse>, Status> {
        let id = request.into_inner().access_key_id;
        let keys = Arc::clone(&self.keys);
        blocking(move || keys.revoke(&id)).await?;
        Ok(Response::new(v1::RevokeAccessKeyResponse {}))
    }

    async fn put_key_policy(
        &self,
        request: Request<v1::PutKeyPolicyRequest>,
    ) -> Result<Response<v1::PutKeyPolicyResponse>, Status> {
        let r = request.into_inner();
        let keys = Arc::clone(&self.keys);
        let policy = non_empty(r.policy);
        blocking(move || keys.put_policy(&r.access_key_id, policy)).await?;
        Ok(Response::new(v1::PutKeyPolicyResponse {}))
    }

    async fn get_key_policy(
        &self,
        request: Request<v1::GetKeyPolicyRequest>,
    ) -> Result<Response<v1::GetKeyPolicyResponse>, Status> {
        let id = request.into_inner().access_key_id;
        let policy = self.keys.get_policy(&id)?.unwrap_or_default();
        Ok(Response::new(v1::GetKeyPolicyResponse { policy }))
    }
}
