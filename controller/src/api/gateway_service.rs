//! The `Gateway` gRPC service: a thin adapter over `gateway` (function URLs, HTTP APIs and their
//! routes). It decodes the requests into the core's types and renders the domain types, with the
//! URLs clients use (`Context::public_endpoint`).
use std::sync::Arc;

use lamina_proto::v1;
use tonic::{Request, Response, Status};

use super::gateway::{self, FunctionUrlUpdate, NewFunctionUrl, NewHttpRoute};
use super::{ApiError, Shared};
use lamina_proto::gateway::{
    Cors, FunctionUrlConfig, HttpApi, HttpRoute, PublicEndpoint, Throttle,
};

pub struct GatewayService {
    pub(crate) shared: Arc<Shared>,
}

fn cors_in(c: v1::Cors) -> Cors {
    Cors {
        allow_credentials: c.allow_credentials,
        allow_headers: c.allow_headers,
        allow_methods: c.allow_methods,
        allow_origins: c.allow_origins,
        expose_headers: c.expose_headers,
        // The message has no "unset": 0 is no `Access-Control-Max-Age`.
        max_age: Some(c.max_age).filter(|a| *a > 0),
    }
}

fn cors_out(c: &Cors) -> v1::Cors {
    v1::Cors {
        allow_credentials: c.allow_credentials,
        allow_headers: c.allow_headers.clone(),
        allow_methods: c.allow_methods.clone(),
        allow_origins: c.allow_origins.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: c.max_age.unwrap_or(0),
    }
}

pub(crate) fn url_out(c: &FunctionUrlConfig, endpoint: &PublicEndpoint) -> v1::FunctionUrlConfig {
    v1::FunctionUrlConfig {
        url_id: c.url_id.clone(),
        function_name: c.function_name.clone(),
        qualifier: c.qualifier.clone(),
        function_url: endpoint.function_url(&c.url_id),
        function_arn: c.function_arn(),
        auth_type: c.auth_type.as_str().to_string(),
        invoke_mode: c.invoke_mode.as_str().to_string(),
        cors: c.cors.as_ref().map(cors_out),
        created_ms: c.created_ms,
        last_modified_ms: c.last_modified_ms,
    }
}

fn route_out(r: &HttpRoute) -> v1::HttpRoute {
    v1::HttpRoute {
        route_id: r.route_id.clone(),
        route_key: r.route_key.clone(),
        function_name: r.function_name.clone(),
        qualifier: r.qualifier.clone(),
        throttle: r.throttle.map(|t| v1::HttpThrottle {
            rate_limit: t.rate_limit,
            burst_limit: t.burst_limit,
        }),
        created_ms: r.created_ms,
    }
}

fn api_out(a: &HttpApi, endpoint: &PublicEndpoint) -> v1::HttpApi {
    v1::HttpApi {
        api_id: a.api_id.clone(),
        name: a.name.clone(),
        payload_format: a.payload_format.as_str().to_string(),
        api_endpoint: endpoint.api_endpoint(&a.api_id),
        routes: a.routes.iter().map(route_out).collect(),
        created_ms: a.created_ms,
    }
}

fn new_url(r: v1::FunctionUrlConfigRequest) -> Result<NewFunctionUrl, ApiError> {
    Ok(NewFunctionUrl {
        auth_type: gateway::parse_auth_type(&r.auth_type)?,
        invoke_mode: gateway::parse_invoke_mode(&r.invoke_mode)?,
        cors: r.cors.map(cors_in),
        function_name: r.function_name,
        qualifier: r.qualifier,
    })
}

fn url_update(r: v1::FunctionUrlConfigRequest) -> Result<FunctionUrlUpdate, ApiError> {
    Ok(FunctionUrlUpdate {
        auth_type: gateway::parse_auth_type(&r.auth_type)?,
        invoke_mode: gateway::parse_invoke_mode(&r.invoke_mode)?,
        cors: r.set_cors.then(|| r.cors.map(cors_in)),
        function_name: r.function_name,
        qualifier: r.qualifier,
    })
}

#[tonic::async_trait]
impl v1::gateway_server::Gateway for GatewayService {
    async fn create_function_url_config(
        &self,
        request: Request<v1::FunctionUrlConfigRequest>,
    ) -> Result<Response<v1::FunctionUrlConfig>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:CreateFunctionUrlConfig",
            &request.get_ref().function_name,
            &request.get_ref().qualifier,
        )?;
        let r = new_url(request.into_inner())?;
        let c = gateway::create_function_url(&self.shared, r).await?;
        Ok(Response::new(url_out(&c, &self.shared.public_endpoint())))
    }

    async fn get_function_url_config(
        &self,
        request: Request<v1::FunctionUrlId>,
    ) -> Result<Response<v1::FunctionUrlConfig>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:GetFunctionUrlConfig",
            &request.get_ref().function_name,
            &request.get_ref().qualifier,
        )?;
        let r = request.into_inner();
        let c = gateway::get_function_url(&self.shared, &r.function_name, &r.qualifier).await?;
        Ok(Response::new(url_out(&c, &self.shared.public_endpoint())))
    }

    async fn update_function_url_config(
        &self,
        request: Request<v1::FunctionUrlConfigRequest>,
    ) -> Result<Response<v1::FunctionUrlConfig>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:UpdateFunctionUrlConfig",
            &request.get_ref().function_name,
            &request.get_ref().qualifier,
        )?;
        let r = url_update(request.into_inner())?;
        let c = gateway::update_function_url(&self.shared, r).await?;
        Ok(Response::new(url_out(&c, &self.shared.public_endpoint())))
    }

    async fn delete_function_url_config(
        &self,
        request: Request<v1::FunctionUrlId>,
    ) -> Result<Response<v1::DeleteGatewayResourceResponse>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:DeleteFunctionUrlConfig",
            &request.get_ref().function_name,
            &request.get_ref().qualifier,
        )?;
        let r = request.into_inner();
        gateway::delete_function_url(&self.shared, &r.function_name, &r.qualifier).await?;
        Ok(Response::new(v1::DeleteGatewayResourceResponse {}))
    }

    async fn list_function_url_configs(
        &self,
        request: Request<v1::ListFunctionUrlConfigsRequest>,
    ) -> Result<Response<v1::ListFunctionUrlConfigsResponse>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:ListFunctionUrlConfigs",
            &request.get_ref().function_name,
            "",
        )?;
        let r = request.into_inner();
        let urls = gateway::list_function_urls(&self.shared, &r.function_name).await?;
        let endpoint = self.shared.public_endpoint();
        Ok(Response::new(v1::ListFunctionUrlConfigsResponse {
            configs: urls.iter().map(|c| url_out(c, &endpoint)).collect(),
        }))
    }

    async fn create_http_api(
        &self,
        request: Request<v1::CreateHttpApiRequest>,
    ) -> Result<Response<v1::HttpApi>, Status> {
        self.shared.authorize(
            request.extensions(),
            "apigateway:POST",
            &crate::iam::arn::http_apis(),
        )?;
        let r = request.into_inner();
        let format = gateway::parse_payload_format(&r.payload_format)?;
        let api = gateway::create_http_api(&self.shared, r.name, format).await?;
        Ok(Response::new(api_out(&api, &self.shared.public_endpoint())))
    }

    async fn get_http_api(
        &self,
        request: Request<v1::HttpApiId>,
    ) -> Result<Response<v1::HttpApi>, Status> {
        self.shared.authorize(
            request.extensions(),
            "apigateway:GET",
            &crate::iam::arn::http_api(&request.get_ref().api_id),
        )?;
        let api = gateway::get_http_api(&self.shared, &request.into_inner().api_id).await?;
        Ok(Response::new(api_out(&api, &self.shared.public_endpoint())))
    }

    async fn list_http_apis(
        &self,
        request: Request<v1::ListHttpApisRequest>,
    ) -> Result<Response<v1::ListHttpApisResponse>, Status> {
        self.shared.authorize(
            request.extensions(),
            "apigateway:GET",
            &crate::iam::arn::http_apis(),
        )?;
        let apis = gateway::list_http_apis(&self.shared).await?;
        let endpoint = self.shared.public_endpoint();
        Ok(Response::new(v1::ListHttpApisResponse {
            apis: apis.iter().map(|a| api_out(a, &endpoint)).collect(),
        }))
    }

    async fn delete_http_api(
        &self,
        request: Request<v1::HttpApiId>,
    ) -> Result<Response<v1::DeleteGatewayResourceResponse>, Status> {
        self.shared.authorize(
            request.extensions(),
            "apigateway:DELETE",
            &crate::iam::arn::http_api(&request.get_ref().api_id),
        )?;
        gateway::delete_http_api(&self.shared, &request.into_inner().api_id).await?;
        Ok(Response::new(v1::DeleteGatewayResourceResponse {}))
    }

    async fn create_http_route(
        &self,
        request: Request<v1::CreateHttpRouteRequest>,
    ) -> Result<Response<v1::HttpRoute>, Status> {
        self.shared.authorize(
            request.extensions(),
            "apigateway:POST",
            &crate::iam::arn::http_routes(&request.get_ref().api_id),
        )?;
        let r = request.into_inner();
        let route = gateway::create_http_route(
            &self.shared,
            NewHttpRoute {
                api_id: r.api_id,
                route_key: r.route_key,
                function_name: r.function_name,
                qualifier: r.qualifier,
                throttle: r.throttle.map(|t| Throttle {
                    rate_limit: t.rate_limit,
                    burst_limit: t.burst_limit,
                }),
            },
        )
        .await?;
        Ok(Response::new(route_out(&route)))
    }

    async fn list_http_routes(
        &self,
        request: Request<v1::HttpApiId>,
    ) -> Result<Response<v1::ListHttpRoutesResponse>, Status> {
        self.shared.authorize(
            request.extensions(),
            "apigateway:GET",
            &crate::iam::arn::http_routes(&request.get_ref().api_id),
        )?;
        let routes = gateway::list_http_routes(&self.shared, &request.into_inner().api_id).await?;
        Ok(Response::new(v1::ListHttpRoutesResponse {
            routes: routes.iter().map(route_out).collect(),
        }))
    }

    async fn delete_http_route(
        &self,
        request: Request<v1::HttpRouteId>,
    ) -> Result<Response<v1::DeleteGatewayResourceResponse>, Status> {
        let r = request.get_ref();
        self.shared.authorize(
            request.extensions(),
            "apigateway:DELETE",
            &crate::iam::arn::http_route(&r.api_id, &r.route),
        )?;
        let r = request.into_inner();
        gateway::delete_http_route(&self.shared, &r.api_id, &r.route).await?;
        Ok(Response::new(v1::DeleteGatewayResourceResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_render_with_the_public_endpoint() {
        let c = FunctionUrlConfig {
            url_id: "abc".into(),
            function_name: "f".into(),
            qualifier: "live".into(),
            auth_type: lamina_proto::gateway::AuthType::AwsIam,
            invoke_mode: lamina_proto::gateway::InvokeMode::ResponseStream,
            cors: Some(Cors {
                max_age: Some(5),
                ..Default::default()
            }),
            created_ms: 1,
            last_modified_ms: 2,
        };
        let out = url_out(&c, &PublicEndpoint::default());
        assert_eq!(
            out.function_url,
            "http://abc.lambda-url.us-east-1.localhost:9690/"
        );
        assert_eq!(
            out.function_arn,
            "arn:aws:lambda:us-east-1:000000000000:function:f:live"
        );
        assert_eq!(
            (out.auth_type.as_str(), out.invoke_mode.as_str()),
            ("AWS_IAM", "RESPONSE_STREAM")
        );
        assert_eq!(out.cors.as_ref().map(|c| c.max_age), Some(5));
        assert_eq!(cors_in(out.cors.unwrap()), c.cors.unwrap());
        let req = v1::FunctionUrlConfigRequest {
            function_name: "f".into(),
            set_cors: true,
            ..Default::default()
        };
        assert_eq!(url_update(req).unwrap().cors, Some(None));
        let req = v1::FunctionUrlConfigRequest {
            function_name: "f".into(),
            auth_type: "OPEN".into(),
            ..Default::default()
        };
        assert!(new_url(req).is_err());
    }
}
