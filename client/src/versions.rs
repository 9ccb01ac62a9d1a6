//! Versions and aliases on [`Client`]: publish and list versions, alias CRUD, and the qualified
//! forms of get, delete and invoke. A qualifier is `$LATEST`, a version number or an alias name.
use std::collections::HashMap;

use crate::{v1, Client, Error};

/// An alias's routing: at most one additional version with its share of the invocations, in (0, 1).
fn routing(weights: HashMap<String, f64>) -> v1::RoutingConfig {
    v1::RoutingConfig {
        additional_version_weights: weights,
    }
}

impl Client {
    /// Publishes `$LATEST` of `name` as the next version (or returns the newest version when
    /// `$LATEST` has not changed since). `description` ("" = `$LATEST`'s) describes the version.
    pub async fn publish_version(
        &self,
        name: &str,
        description: &str,
    ) -> Result<v1::FunctionConfiguration, Error> {
        self.publish_version_with(v1::PublishVersionRequest {
            function_name: name.to_string(),
            description: description.to_string(),
            ..Default::default()
        })
        .await
    }

    /// [`Client::publish_version`] with the preconditions (`code_sha256`, `revision_id` of
    /// `$LATEST`) of the request.
    pub async fn publish_version_with(
        &self,
        req: v1::PublishVersionRequest,
    ) -> Result<v1::FunctionConfiguration, Error> {
        Ok(self
            .versions
            .clone()
            .publish_version(req)
            .await?
            .into_inner())
    }

    /// `$LATEST` first, then the published versions in ascending order.
    pub async fn list_versions(&self, name: &str) -> Result<Vec<v1::FunctionConfiguration>, Error> {
        let req = v1::ListVersionsRequest {
            function_name: name.to_string(),
        };
        Ok(self
            .versions
            .clone()
            .list_versions(req)
            .await?
            .into_inner()
            .versions)
    }

    /// Creates alias `alias` of `name` for `version`, sending each additional version its weight.
    pub async fn create_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
        additional_version_weights: HashMap<String, f64>,
        description: &str,
    ) -> Result<v1::Alias, Error> {
        let req = v1::CreateAliasRequest {
            function_name: name.to_string(),
            name: alias.to_string(),
            function_version: version.to_string(),
            routing_config: Some(routing(additional_version_weights)),
            description: description.to_string(),
        };
        Ok(self.versions.clone().create_alias(req).await?.into_inner())
    }

    /// Changes the fields of `req` that are set (a present `routing_config` replaces the weights).
    pub async fn update_alias(&self, req: v1::UpdateAliasRequest) -> Result<v1::Alias, Error> {
        Ok(self.versions.clone().update_alias(req).await?.into_inner())
    }

    pub async fn get_alias(&self, name: &str, alias: &str) -> Result<v1::Alias, Error> {
        let req = v1::GetAliasRequest {
            function_name: name.to_string(),
            name: alias.to_string(),
        };
        Ok(self.versions.clone().get_alias(req).await?.into_inner())
    }

    /// The aliases of `name`, by name.
    pub async fn list_aliases(&self, name: &str) -> Result<Vec<v1::Alias>, Error> {
        let req = v1::ListAliasesRequest {
            function_name: name.to_string(),
        };
        Ok(self
            .versions
            .clone()
            .list_aliases(req)
            .await?
            .into_inner()
            .aliases)
    }

    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), Error> {
        let req = v1::DeleteAliasRequest {
            function_name: name.to_string(),
            name: alias.to_string(),
        };
        self.versions.clone().delete_alias(req).await?;
        Ok(())
    }

    /// The configuration of a version of `name`, or of the version an alias names.
    pub async fn get_function_qualified(
        &self,
        name: &str,
        qualifier: &str,
    ) -> Result<v1::FunctionConfiguration, Error> {
        let req = v1::GetFunctionRequest {
            function_name: name.to_string(),
            qualifier: qualifier.to_string(),
        };
        Ok(self.functions.clone().get_function(req).await?.into_inner())
    }

    /// Deletes one published version of `name` (refused while an alias routes to it).
    pub async fn delete_version(&self, name: &str, version: &str) -> Result<(), Error> {
        let req = v1::DeleteFunctionRequest {
            function_name: name.to_string(),
            qualifier: version.to_string(),
        };
        self.functions.clone().delete_function(req).await?;
        Ok(())
    }

    /// Invokes `name:qualifier` synchronously; `executed_version` in the answer says which version
    /// ran. A function error is not an `Err`: it is `function_error` in the response.
    pub async fn invoke_qualified(
        &self,
        name: &str,
        qualifier: &str,
        payload: Vec<u8>,
    ) -> Result<v1::InvokeResponse, Error> {
        self.invoke(v1::InvokeRequest {
            function_name: name.to_string(),
            qualifier: qualifier.to_string(),
            invocation_type: v1::InvocationType::RequestResponse as i32,
            payload,
            ..Default::default()
        })
        .await
    }

    /// Queues an asynchronous invocation of `name:qualifier`; the qualifier is resolved at each
    /// delivery.
    pub async fn invoke_async_qualified(
        &self,
        name: &str,
        qualifier: &str,
        payload: Vec<u8>,
    ) -> Result<v1::InvokeResponse, Error> {
        self.invoke(v1::InvokeRequest {
            function_name: name.to_string(),
            qualifier: qualifier.to_string(),
            invocation_type: v1::InvocationType::Event as i32,
            payload,
            ..Default::default()
        })
        .await
    }
}
