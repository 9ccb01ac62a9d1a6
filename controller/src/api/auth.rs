//! The `Auth` service: access keys and their IAM policies. Every call authorises through
//! `Shared::authorize` with IAM's actions on the key's user ARN
//! (`arn:aws:iam::000000000000:user/KEY_ID`): `iam:CreateAccessKey` (and `iam:PutUserPolicy` when
//! the new key gets a policy), `iam:ListAccessKeys`, `iam:DeleteAccessKey`,
//! `iam:PutUserPolicy`/`iam:DeleteUserPolicy`, `iam:GetUserPolicy`. Whatever a policy says, only
//! an admin key creates an admin key or revokes or changes one (an admin is above every policy, so
//! a policy cannot hand out that power).
use std::sync::Arc;

use lamina_proto::v1;
use tonic::{Request, Response, Status};

use super::{ApiError, Shared};
use crate::auth::{AuthError, KeyStore};
use crate::iam;

pub struct AuthService {
    pub keys: Arc<KeyStore>,
    pub(crate) shared: Arc<Shared>,
}

impl AuthService {
    /// Refuses a caller that is not an admin key from touching the admin key `id` (or creating
    /// one).
    fn admin_only(&self, extensions: &http::Extensions, what: &str) -> Result<(), ApiError> {
        if self.shared.caller_is_admin(extensions) {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!(
                "only an admin access key may {what}"
            )))
        }
    }

    fn is_admin_key(&self, id: &str) -> bool {
        self.keys
            .list()
            .iter()
            .any(|k| k.access_key_id == id && k.admin)
    }
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
        let all_keys = iam::arn::access_key("*");
        self.shared
            .authorize(request.extensions(), "iam:CreateAccessKey", &all_keys)?;
        if request.get_ref().admin {
            self.admin_only(request.extensions(), "create an admin key")?;
        }
        if !request.get_ref().policy.trim().is_empty() {
            self.shared
                .authorize(request.extensions(), "iam:PutUserPolicy", &all_keys)?;
        }
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
        request: Request<v1::ListAccessKeysRequest>,
    ) -> Result<Response<v1::ListAccessKeysResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "iam:ListAccessKeys", "*")?;
        Ok(Response::new(v1::ListAccessKeysResponse {
            keys: self.keys.list(),
        }))
    }

    async fn revoke_access_key(
        &self,
        request: Request<v1::RevokeAccessKeyRequest>,
    ) -> Result<Response<v1::RevokeAccessKeyResponse>, Status> {
        let id = &request.get_ref().access_key_id;
        self.shared.authorize(
            request.extensions(),
            "iam:DeleteAccessKey",
            &iam::arn::access_key(id),
        )?;
        if self.is_admin_key(id) {
            self.admin_only(request.extensions(), "revoke an admin key")?;
        }
        let id = request.into_inner().access_key_id;
        let keys = Arc::clone(&self.keys);
        blocking(move || keys.revoke(&id)).await?;
        Ok(Response::new(v1::RevokeAccessKeyResponse {}))
    }

    async fn put_key_policy(
        &self,
        request: Request<v1::PutKeyPolicyRequest>,
    ) -> Result<Response<v1::PutKeyPolicyResponse>, Status> {
        let r = request.get_ref();
        let action = if r.policy.trim().is_empty() {
            "iam:DeleteUserPolicy"
        } else {
            "iam:PutUserPolicy"
        };
        self.shared.authorize(
            request.extensions(),
            action,
            &iam::arn::access_key(&r.access_key_id),
        )?;
        if self.is_admin_key(&r.access_key_id) {
            self.admin_only(request.extensions(), "change an admin key's policy")?;
        }
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
        self.shared.authorize(
            request.extensions(),
            "iam:GetUserPolicy",
            &iam::arn::access_key(&request.get_ref().access_key_id),
        )?;
        let id = request.into_inner().access_key_id;
        let policy = self.keys.get_policy(&id)?.unwrap_or_default();
        Ok(Response::new(v1::GetKeyPolicyResponse { policy }))
    }
}
