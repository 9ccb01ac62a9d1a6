//! Execution roles on [`Client`] (admin keys only): a role is a name and an IAM policy document;
//! a function naming it (`arn:aws:iam::000000000000:role/NAME`) gets its session credentials in
//! its sandboxes.
use crate::{v1, Client, Error};

impl Client {
    /// Creates role `name` with the IAM policy document `policy` (JSON text).
    pub async fn create_role(
        &self,
        name: &str,
        policy: &str,
        description: &str,
    ) -> Result<v1::Role, Error> {
        let req = put(name, policy, description);
        Ok(self.roles.clone().create_role(req).await?.into_inner())
    }

    /// Replaces the policy (and description) of role `name`; live sessions follow at once.
    pub async fn update_role(
        &self,
        name: &str,
        policy: &str,
        description: &str,
    ) -> Result<v1::Role, Error> {
        let req = put(name, policy, description);
        Ok(self.roles.clone().update_role(req).await?.into_inner())
    }

    pub async fn get_role(&self, name: &str) -> Result<v1::Role, Error> {
        let req = v1::GetRoleRequest {
            name: name.to_string(),
        };
        Ok(self.roles.clone().get_role(req).await?.into_inner())
    }

    /// Deletes role `name`: its sessions end, its functions get no credentials any more.
    pub async fn delete_role(&self, name: &str) -> Result<(), Error> {
        let req = v1::DeleteRoleRequest {
            name: name.to_string(),
        };
        self.roles.clone().delete_role(req).await?;
        Ok(())
    }

    /// Every role, by name.
    pub async fn list_roles(&self) -> Result<Vec<v1::Role>, Error> {
        let resp = self
            .roles
            .clone()
            .list_roles(v1::ListRolesRequest {})
            .await?;
        Ok(resp.into_inner().roles)
    }
}

fn put(name: &str, policy: &str, description: &str) -> v1::PutRoleRequest {
    v1::PutRoleRequest {
        name: name.to_string(),
        policy: policy.to_string(),
        description: description.to_string(),
    }
}
