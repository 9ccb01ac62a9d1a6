//! The `Concurrency` gRPC service (reserved and provisioned concurrency): a thin adapter over
//! `concurrency` and `provisioned`.
use std::sync::Arc;

use lamina_proto::v1;
use tonic::{Request, Response, Status};

use super::{concurrency, provisioned, Shared};

pub struct ConcurrencyService {
    pub(crate) shared: Arc<Shared>,
}

#[tonic::async_trait]
impl v1::concurrency_server::Concurrency for ConcurrencyService {
    async fn put_function_concurrency(
        &self,
        request: Request<v1::PutFunctionConcurrencyRequest>,
    ) -> Result<Response<v1::FunctionConcurrency>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:PutFunctionConcurrency",
            &request.get_ref().function_name,
            "",
        )?;
        let r = request.into_inner();
        let reserved = r.reserved_concurrent_executions;
        concurrency::put_function_concurrency(&self.shared, r.function_name.clone(), reserved)
            .await?;
        Ok(Response::new(v1::FunctionConcurrency {
            function_name: r.function_name,
            reserved_concurrent_executions: Some(reserved),
        }))
    }

    async fn get_function_concurrency(
        &self,
        request: Request<v1::GetFunctionConcurrencyRequest>,
    ) -> Result<Response<v1::FunctionConcurrency>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:GetFunctionConcurrency",
            &request.get_ref().function_name,
            "",
        )?;
        let name = request.into_inner().function_name;
        let reserved = concurrency::get_function_concurrency(&self.shared, &name).await?;
        Ok(Response::new(v1::FunctionConcurrency {
            function_name: name,
            reserved_concurrent_executions: reserved,
        }))
    }

    async fn delete_function_concurrency(
        &self,
        request: Request<v1::DeleteFunctionConcurrencyRequest>,
    ) -> Result<Response<v1::FunctionConcurrency>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:DeleteFunctionConcurrency",
            &request.get_ref().function_name,
            "",
        )?;
        let name = request.into_inner().function_name;
        concurrency::delete_function_concurrency(&self.shared, name.clone()).await?;
        Ok(Response::new(v1::FunctionConcurrency {
            function_name: name,
            reserved_concurrent_executions: None,
        }))
    }

    async fn get_account_settings(
        &self,
        request: Request<v1::GetAccountSettingsRequest>,
    ) -> Result<Response<v1::AccountSettings>, Status> {
        self.shared
            .authorize(request.extensions(), "lambda:GetAccountSettings", "*")?;
        let f = concurrency::get_account_settings(&self.shared);
        Ok(Response::new(v1::AccountSettings {
            concurrent_executions: f.limit,
            unreserved_concurrent_executions: f.unreserved,
            in_flight: f.in_flight,
        }))
    }

    async fn put_provisioned_concurrency(
        &self,
        request: Request<v1::PutProvisionedConcurrencyRequest>,
    ) -> Result<Response<v1::ProvisionedConcurrencyConfig>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:PutProvisionedConcurrencyConfig",
            &request.get_ref().function_name,
            &request.get_ref().qualifier,
        )?;
        let r = request.into_inner();
        Ok(Response::new(
            provisioned::put_provisioned_concurrency(
                &self.shared,
                r.function_name,
                r.qualifier,
                r.provisioned_concurrent_executions,
            )
            .await?,
        ))
    }

    async fn get_provisioned_concurrency(
        &self,
        request: Request<v1::GetProvisionedConcurrencyRequest>,
    ) -> Result<Response<v1::ProvisionedConcurrencyConfig>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:GetProvisionedConcurrencyConfig",
            &request.get_ref().function_name,
            &request.get_ref().qualifier,
        )?;
        let r = request.into_inner();
        Ok(Response::new(
            provisioned::get_provisioned_concurrency(&self.shared, &r.function_name, &r.qualifier)
                .await?,
        ))
    }

    async fn list_provisioned_concurrency(
        &self,
        request: Request<v1::ListProvisionedConcurrencyRequest>,
    ) -> Result<Response<v1::ListProvisionedConcurrencyResponse>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:ListProvisionedConcurrencyConfigs",
            &request.get_ref().function_name,
            "",
        )?;
        let name = request.into_inner().function_name;
        Ok(Response::new(v1::ListProvisionedConcurrencyResponse {
            configs: provisioned::list_for(&self.shared, &name).await?,
        }))
    }

    async fn delete_provisioned_concurrency(
        &self,
        request: Request<v1::DeleteProvisionedConcurrencyRequest>,
    ) -> Result<Response<v1::DeleteProvisionedConcurrencyResponse>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:DeleteProvisionedConcurrencyConfig",
            &request.get_ref().function_name,
            &request.get_ref().qualifier,
        )?;
        let r = request.into_inner();
        provisioned::delete_provisioned_concurrency(&self.shared, r.function_name, r.qualifier)
            .await?;
        Ok(Response::new(v1::DeleteProvisionedConcurrencyResponse {}))
    }
}
