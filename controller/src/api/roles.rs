//! The `Roles` service: execution roles (issue 17). A role is a name and an IAM identity policy
//! (`crate::iam::Policy`, checked before it is stored); functions name it as
//! `arn:aws:iam::000000000000:role/NAME`. Every call authorises through `Shared::authorize` with
//! IAM's actions on the role's ARN (`iam:CreateRole`, `iam:PutRolePolicy` for an update,
//! `iam:GetRole`, `iam:DeleteRole`, `iam:ListRoles` on `*`). Every write goes to the store first,
//! then to the in-memory roles of `auth::sessions`, which mint and verify the sessions'
//! credentials.
use std::sync::Arc;

use lamina_proto::v1;
use tonic::{Request, Response, Status};

use super::{now_ms, ApiError, Shared};
use crate::auth::sessions::{role_arn, role_name, valid_role_name, SessionStore};
use crate::iam::Policy;
use crate::store::{RoleStore, RoleStoreError, StoredRole};

/// The largest description of a role (IAM's).
const MAX_DESCRIPTION_CHARS: usize = 1000;

/// Loads every stored role into `sessions` (at start). A role whose policy no longer parses is
/// left out (logged): its functions get no credentials until it is updated.
pub(crate) fn load(sessions: &SessionStore, store: &dyn RoleStore) -> Result<(), RoleStoreError> {
    for role in store.list_roles()? {
        match Policy::parse_identity(&role.policy) {
            Ok(p) => sessions.set_role(&role.name, Some(Arc::new(p))),
            Err(e) => {
                tracing::error!(role = %role.name, error = %e, "stored role policy does not parse: the role gives no credentials until it is updated")
            }
        }
    }
    Ok(())
}

impl Shared {
    /// Giving a function one of this cluster's roles (create, update-config) needs
    /// `iam:PassRole` on the role's ARN, as in IAM: whoever may create functions does not get
    /// every role's permissions through them. Other role ARNs give no credentials: no check.
    pub(crate) fn authorize_pass_role(
        &self,
        extensions: &http::Extensions,
        role_arn: &str,
    ) -> Result<(), super::ApiError> {
        match role_name(role_arn) {
            Some(_) => self.authorize(extensions, "iam:PassRole", role_arn),
            None => Ok(()),
        }
    }
}

pub struct RolesService {
    shared: Arc<Shared>,
    /// Held across a write to the store and to the sessions' roles, so that both see writes in
    /// one order.
    writes: tokio::sync::Mutex<()>,
}

fn to_status(e: RoleStoreError) -> Status {
    let message = e.to_string();
    match e {
        RoleStoreError::Exists(_) => Status::already_exists(message),
        RoleStoreError::NotFound(_) => Status::not_found(message),
        RoleStoreError::Storage(_) => {
            tracing::error!(error = %message, "role store error");
            Status::internal(message)
        }
    }
}

fn to_proto(r: StoredRole) -> v1::Role {
    v1::Role {
        arn: role_arn(&r.name),
        name: r.name,
        policy: r.policy,
        description: r.description,
        created_ms: r.created_ms,
        updated_ms: r.updated_ms,
    }
}

/// `Err`: why the request is invalid (answered `INVALID_ARGUMENT`).
fn check_name(name: &str) -> Result<(), String> {
    if valid_role_name(name) {
        Ok(())
    } else {
        Err(format!(
            "role name must be 1 to 64 letters, digits or +=,.@_-, got {:?}",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// The checked role of a create or update, and its compiled policy.
fn checked(r: v1::PutRoleRequest) -> Result<(StoredRole, Arc<Policy>), String> {
    check_name(&r.name)?;
    if r.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "role description must be at most {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    let policy = Policy::parse_identity(&r.policy)
        .map_err(|e| format!("policy of role `{}`: {e}", r.name))?;
    let now = now_ms();
    let role = StoredRole {
        name: r.name,
        policy: r.policy,
        description: r.description,
        created_ms: now,
        updated_ms: now,
    };
    Ok((role, Arc::new(policy)))
}

impl RolesService {
    /// Whether the caller may perform `action` on the role `name`.
    fn authorize<T>(&self, request: &Request<T>, action: &str, name: &str) -> Result<(), ApiError> {
        self.shared
            .authorize(request.extensions(), action, &role_arn(name))
    }

    pub(crate) fn new(shared: Arc<Shared>) -> RolesService {
        RolesService {
            shared,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn RoleStore) -> Result<T, RoleStoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let Some(store) = self.shared.roles.clone() else {
            return Err(Status::unimplemented(
                "this controller keeps no execution roles (no role store)",
            ));
        };
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| Status::internal(format!("role store task failed: {e}")))?
            .map_err(to_status)
    }
}

#[tonic::async_trait]
impl v1::roles_server::Roles for RolesService {
    async fn create_role(
        &self,
        request: Request<v1::PutRoleRequest>,
    ) -> Result<Response<v1::Role>, Status> {
        self.authorize(&request, "iam:CreateRole", &request.get_ref().name)?;
        let (role, policy) = checked(request.into_inner()).map_err(Status::invalid_argument)?;
        let _writes = self.writes.lock().await;
        let stored = role.clone();
        self.store(move |s| s.create_role(&stored)).await?;
        self.shared.sessions.set_role(&role.name, Some(policy));
        tracing::info!(role = %role.name, "role created");
        Ok(Response::new(to_proto(role)))
    }

    async fn update_role(
        &self,
        request: Request<v1::PutRoleRequest>,
    ) -> Result<Response<v1::Role>, Status> {
        self.authorize(&request, "iam:PutRolePolicy", &request.get_ref().name)?;
        let (role, policy) = checked(request.into_inner()).map_err(Status::invalid_argument)?;
        let _writes = self.writes.lock().await;
        let name = role.name.clone();
        let stored = self.store(move |s| s.update_role(&role)).await?;
        self.shared.sessions.set_role(&name, Some(policy));
        tracing::info!(role = %name, "role updated");
        Ok(Response::new(to_proto(stored)))
    }

    async fn get_role(
        &self,
        request: Request<v1::GetRoleRequest>,
    ) -> Result<Response<v1::Role>, Status> {
        self.authorize(&request, "iam:GetRole", &request.get_ref().name)?;
        let name = request.into_inner().name;
        check_name(&name).map_err(Status::invalid_argument)?;
        let lookup = name.clone();
        match self.store(move |s| s.get_role(&lookup)).await? {
            Some(r) => Ok(Response::new(to_proto(r))),
            None => Err(to_status(RoleStoreError::NotFound(name))),
        }
    }

    async fn delete_role(
        &self,
        request: Request<v1::DeleteRoleRequest>,
    ) -> Result<Response<v1::DeleteRoleResponse>, Status> {
        self.authorize(&request, "iam:DeleteRole", &request.get_ref().name)?;
        let name = request.into_inner().name;
        check_name(&name).map_err(Status::invalid_argument)?;
        let _writes = self.writes.lock().await;
        let gone = name.clone();
        self.store(move |s| s.delete_role(&gone)).await?;
        self.shared.sessions.set_role(&name, None);
        tracing::info!(role = %name, "role deleted");
        Ok(Response::new(v1::DeleteRoleResponse {}))
    }

    async fn list_roles(
        &self,
        request: Request<v1::ListRolesRequest>,
    ) -> Result<Response<v1::ListRolesResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "iam:ListRoles", "*")?;
        let roles = self.store(|s| s.list_roles()).await?;
        Ok(Response::new(v1::ListRolesResponse {
            roles: roles.into_iter().map(to_proto).collect(),
        }))
    }
}
