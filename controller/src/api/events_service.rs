//! The `Events` gRPC service (asynchronous invocation: configs, records, dead-letter queues): a
//! thin adapter over `events`.
use std::sync::Arc;

use lamina_proto::v1;
use tonic::{Request, Response, Status};

use super::{events, Shared};

pub struct EventsService {
    pub(crate) shared: Arc<Shared>,
}

#[tonic::async_trait]
impl v1::events_server::Events for EventsService {
    async fn put_function_event_invoke_config(
        &self,
        request: Request<v1::PutFunctionEventInvokeConfigRequest>,
    ) -> Result<Response<v1::FunctionEventInvokeConfig>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:PutFunctionEventInvokeConfig",
            &request.get_ref().function_name,
            "",
        )?;
        let change = events::EventInvokeConfigChange::from(request.into_inner());
        let name = change.function_name.clone();
        let config = events::put_config(&self.shared, change).await?;
        Ok(Response::new(events::config_to_proto(&name, &config)))
    }

    async fn get_function_event_invoke_config(
        &self,
        request: Request<v1::GetFunctionEventInvokeConfigRequest>,
    ) -> Result<Response<v1::FunctionEventInvokeConfig>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:GetFunctionEventInvokeConfig",
            &request.get_ref().function_name,
            "",
        )?;
        let name = request.into_inner().function_name;
        let config = events::get_config(&self.shared, name.clone()).await?;
        Ok(Response::new(events::config_to_proto(&name, &config)))
    }

    async fn get_invocation(
        &self,
        request: Request<v1::GetInvocationRequest>,
    ) -> Result<Response<v1::Invocation>, Status> {
        self.shared
            .authorize(request.extensions(), "lamina:GetInvocation", "*")?;
        let id = request.into_inner().request_id;
        Ok(Response::new(
            events::get_invocation(&self.shared, id).await?,
        ))
    }

    async fn list_invocations(
        &self,
        request: Request<v1::ListInvocationsRequest>,
    ) -> Result<Response<v1::ListInvocationsResponse>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lamina:ListInvocations",
            &request.get_ref().function_name,
            "",
        )?;
        Ok(Response::new(
            events::list_invocations(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn list_dead_letter_queues(
        &self,
        request: Request<v1::ListDeadLetterQueuesRequest>,
    ) -> Result<Response<v1::ListDeadLetterQueuesResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "lamina:ListDeadLetterQueues", "*")?;
        Ok(Response::new(events::list_queues(&self.shared)?))
    }

    async fn list_dead_letters(
        &self,
        request: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "lamina:ListDeadLetters", "*")?;
        Ok(Response::new(
            events::list_dead_letters(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn redrive_dead_letters(
        &self,
        request: Request<v1::RedriveDeadLettersRequest>,
    ) -> Result<Response<v1::RedriveDeadLettersResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "lamina:RedriveDeadLetters", "*")?;
        Ok(Response::new(
            events::redrive(&self.shared, request.into_inner()).await?,
        ))
    }
}
