//! Reserved concurrency, the account's concurrency figures and provisioned concurrency.
use crate::{v1, Client, Error};

impl Client {
    /// Reserves `reserved` concurrent executions for function `name` (0 throttles every
    /// invocation). Refused when it would leave less than the controller's minimum unreserved.
    pub async fn put_function_concurrency(
        &self,
        name: &str,
        reserved: u32,
    ) -> Result<v1::FunctionConcurrency, Error> {
        let req = v1::PutFunctionConcurrencyRequest {
            function_name: name.to_string(),
            reserved_concurrent_executions: reserved,
        };
        Ok(self
            .concurrency
            .clone()
            .put_function_concurrency(req)
            .await?
            .into_inner())
    }

    /// Function `name`'s reservation (`reserved_concurrent_executions` unset: none).
    pub async fn get_function_concurrency(
        &self,
        name: &str,
    ) -> Result<v1::FunctionConcurrency, Error> {
        let req = v1::GetFunctionConcurrencyRequest {
            function_name: name.to_string(),
        };
        Ok(self
            .concurrency
            .clone()
            .get_function_concurrency(req)
            .await?
            .into_inner())
    }

    /// Removes function `name`'s reservation: it shares the unreserved pool again.
    pub async fn delete_function_concurrency(
        &self,
        name: &str,
    ) -> Result<v1::FunctionConcurrency, Error> {
        let req = v1::DeleteFunctionConcurrencyRequest {
            function_name: name.to_string(),
        };
        Ok(self
            .concurrency
            .clone()
            .delete_function_concurrency(req)
            .await?
            .into_inner())
    }

    /// The cluster-wide limit, what reservations leave unreserved, and invocations in flight.
    pub async fn get_account_settings(&self) -> Result<v1::AccountSettings, Error> {
        Ok(self
            .concurrency
            .clone()
            .get_account_settings(v1::GetAccountSettingsRequest {})
            .await?
            .into_inner())
    }

    /// Keeps `count` sandboxes of version or alias `qualifier` of function `name` initialised.
    pub async fn put_provisioned_concurrency(
        &self,
        name: &str,
        qualifier: &str,
        count: u32,
    ) -> Result<v1::ProvisionedConcurrencyConfig, Error> {
        let req = v1::PutProvisionedConcurrencyRequest {
            function_name: name.to_string(),
            qualifier: qualifier.to_string(),
            provisioned_concurrent_executions: count,
        };
        Ok(self
            .concurrency
            .clone()
            .put_provisioned_concurrency(req)
            .await?
            .into_inner())
    }

    /// A provisioned-concurrency configuration with its status (allocated, available).
    pub async fn get_provisioned_concurrency(
        &self,
        name: &str,
        qualifier: &str,
    ) -> Result<v1::ProvisionedConcurrencyConfig, Error> {
        let req = v1::GetProvisionedConcurrencyRequest {
            function_name: name.to_string(),
            qualifier: qualifier.to_string(),
        };
        Ok(self
            .concurrency
            .clone()
            .get_provisioned_concurrency(req)
            .await?
            .into_inner())
    }

    /// Every provisioned-concurrency configuration of function `name`.
    pub async fn list_provisioned_concurrency(
        &self,
        name: &str,
    ) -> Result<Vec<v1::ProvisionedConcurrencyConfig>, Error> {
        let req = v1::ListProvisionedConcurrencyRequest {
            function_name: name.to_string(),
        };
        Ok(self
            .concurrency
            .clone()
            .list_provisioned_concurrency(req)
            .await?
            .into_inner()
            .configs)
    }

    /// Removes a provisioned-concurrency configuration; its sandboxes become ordinary warm ones.
    pub async fn delete_provisioned_concurrency(
        &self,
        name: &str,
        qualifier: &str,
    ) -> Result<(), Error> {
        let req = v1::DeleteProvisionedConcurrencyRequest {
            function_name: name.to_string(),
            qualifier: qualifier.to_string(),
        };
        self.concurrency
            .clone()
            .delete_provisioned_concurrency(req)
            .await?;
        Ok(())
    }
}
