//! The `Versions` gRPC service (versions and aliases): a thin adapter over `versions`; it decodes
//! the request into the core's types, calls the core and encodes the answer.
use std::sync::Arc;

use lamina_proto::v1;
use tonic::{Request, Response, Status};

use super::versions::{self, alias_to_proto, configuration};
use super::Shared;

pub struct VersionsService {
    pub(crate) shared: Arc<Shared>,
}

#[tonic::async_trait]
impl v1::versions_server::Versions for VersionsService {
    async fn publish_version(
        &self,
        request: Request<v1::PublishVersionRequest>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:PublishVersion",
            &request.get_ref().function_name,
            "",
        )?;
        let published =
            versions::publish_version(&self.shared, request.into_inner().into()).await?;
        Ok(Response::new(configuration(&published, &published.version)))
    }

    async fn list_versions(
        &self,
        request: Request<v1::ListVersionsRequest>,
    ) -> Result<Response<v1::ListVersionsResponse>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:ListVersionsByFunction",
            &request.get_ref().function_name,
            "",
        )?;
        let all = versions::list_versions(&self.shared, request.into_inner().function_name).await?;
        Ok(Response::new(v1::ListVersionsResponse {
            versions: all.iter().map(|c| configuration(c, &c.version)).collect(),
        }))
    }

    async fn create_alias(
        &self,
        request: Request<v1::CreateAliasRequest>,
    ) -> Result<Response<v1::Alias>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:CreateAlias",
            &request.get_ref().function_name,
            &request.get_ref().name,
        )?;
        let alias = versions::create_alias(&self.shared, request.into_inner().into()).await?;
        Ok(Response::new(alias_to_proto(&alias)))
    }

    async fn update_alias(
        &self,
        request: Request<v1::UpdateAliasRequest>,
    ) -> Result<Response<v1::Alias>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:UpdateAlias",
            &request.get_ref().function_name,
            &request.get_ref().name,
        )?;
        let alias = versions::update_alias(&self.shared, request.into_inner().into()).await?;
        Ok(Response::new(alias_to_proto(&alias)))
    }

    async fn get_alias(
        &self,
        request: Request<v1::GetAliasRequest>,
    ) -> Result<Response<v1::Alias>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:GetAlias",
            &request.get_ref().function_name,
            &request.get_ref().name,
        )?;
        let r = request.into_inner();
        let alias = versions::get_alias(&self.shared, r.function_name, r.name).await?;
        Ok(Response::new(alias_to_proto(&alias)))
    }

    async fn list_aliases(
        &self,
        request: Request<v1::ListAliasesRequest>,
    ) -> Result<Response<v1::ListAliasesResponse>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:ListAliases",
            &request.get_ref().function_name,
            "",
        )?;
        let name = request.into_inner().function_name;
        let aliases = versions::list_aliases(&self.shared, name).await?;
        Ok(Response::new(v1::ListAliasesResponse {
            aliases: aliases.iter().map(alias_to_proto).collect(),
        }))
    }

    async fn delete_alias(
        &self,
        request: Request<v1::DeleteAliasRequest>,
    ) -> Result<Response<v1::DeleteAliasResponse>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:DeleteAlias",
            &request.get_ref().function_name,
            &request.get_ref().name,
        )?;
        let r = request.into_inner();
        versions::delete_alias(&self.shared, r.function_name, r.name).await?;
        Ok(Response::new(v1::DeleteAliasResponse {}))
    }
}
