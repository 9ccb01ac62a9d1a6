//! The HTTP gateway on [`Client`] (service `Gateway`): function URLs (as Lambda's
//! `CreateFunctionUrlConfig` & co.) and API Gateway–style HTTP APIs with their routes. What they
//! configure is served on the controller's public HTTP listener (`--http-listen`).
use crate::{v1, Client, Error};

fn url_id(function_name: &str, qualifier: &str) -> v1::FunctionUrlId {
    v1::FunctionUrlId {
        function_name: function_name.to_string(),
        qualifier: qualifier.to_string(),
    }
}

fn api_id(api_id: &str) -> v1::HttpApiId {
    v1::HttpApiId {
        api_id: api_id.to_string(),
    }
}

impl Client {
    /// Gives function `req.function_name` (qualifier "" = `$LATEST`, else an alias) a URL.
    /// `auth_type` is `NONE` or `AWS_IAM`; `invoke_mode` "" is `BUFFERED`; `cors` absent = no CORS
    /// handling. `set_cors` is ignored.
    pub async fn create_function_url_config(
        &self,
        req: v1::FunctionUrlConfigRequest,
    ) -> Result<v1::FunctionUrlConfig, Error> {
        let resp = self.gateway.clone().create_function_url_config(req).await?;
        Ok(resp.into_inner())
    }

    /// The URL configuration of function `function_name` (qualifier "" = unqualified).
    pub async fn get_function_url_config(
        &self,
        function_name: &str,
        qualifier: &str,
    ) -> Result<v1::FunctionUrlConfig, Error> {
        let resp = self
            .gateway
            .clone()
            .get_function_url_config(url_id(function_name, qualifier))
            .await?;
        Ok(resp.into_inner())
    }

    /// Changes what `req` sets: a non-empty `auth_type` or `invoke_mode`, and the CORS
    /// configuration when `set_cors` is true (replaced by `cors`, or removed when `cors` is absent).
    pub async fn update_function_url_config(
        &self,
        req: v1::FunctionUrlConfigRequest,
    ) -> Result<v1::FunctionUrlConfig, Error> {
        let resp = self.gateway.clone().update_function_url_config(req).await?;
        Ok(resp.into_inner())
    }

    /// Deletes the URL of function `function_name` (qualifier "" = unqualified); the URL answers
    /// no more requests.
    pub async fn delete_function_url_config(
        &self,
        function_name: &str,
        qualifier: &str,
    ) -> Result<(), Error> {
        self.gateway
            .clone()
            .delete_function_url_config(url_id(function_name, qualifier))
            .await?;
        Ok(())
    }

    /// Every URL of function `function_name` (unqualified and per alias).
    pub async fn list_function_url_configs(
        &self,
        function_name: &str,
    ) -> Result<Vec<v1::FunctionUrlConfig>, Error> {
        let req = v1::ListFunctionUrlConfigsRequest {
            function_name: function_name.to_string(),
        };
        let resp = self.gateway.clone().list_function_url_configs(req).await?;
        Ok(resp.into_inner().configs)
    }

    /// A new HTTP API without routes; `payload_format` is `1.0` or `2.0` ("" = `2.0`).
    pub async fn create_http_api(
        &self,
        name: &str,
        payload_format: &str,
    ) -> Result<v1::HttpApi, Error> {
        let req = v1::CreateHttpApiRequest {
            name: name.to_string(),
            payload_format: payload_format.to_string(),
        };
        Ok(self
            .gateway
            .clone()
            .create_http_api(req)
            .await?
            .into_inner())
    }

    /// HTTP API `id` with its routes.
    pub async fn get_http_api(&self, id: &str) -> Result<v1::HttpApi, Error> {
        Ok(self
            .gateway
            .clone()
            .get_http_api(api_id(id))
            .await?
            .into_inner())
    }

    /// Every HTTP API with its routes.
    pub async fn list_http_apis(&self) -> Result<Vec<v1::HttpApi>, Error> {
        let resp = self
            .gateway
            .clone()
            .list_http_apis(v1::ListHttpApisRequest {})
            .await?;
        Ok(resp.into_inner().apis)
    }

    /// Deletes HTTP API `id` and its routes.
    pub async fn delete_http_api(&self, id: &str) -> Result<(), Error> {
        self.gateway.clone().delete_http_api(api_id(id)).await?;
        Ok(())
    }

    /// Adds route `route_key` (`GET /items/{id}`, `ANY /{proxy+}`, `$default`) to HTTP API
    /// `api_id`, invoking `function_name` at `qualifier` ("" = `$LATEST`, a version or an alias),
    /// throttled when `throttle` is given.
    pub async fn create_http_route(
        &self,
        api_id: &str,
        route_key: &str,
        function_name: &str,
        qualifier: &str,
        throttle: Option<v1::HttpThrottle>,
    ) -> Result<v1::HttpRoute, Error> {
        let req = v1::CreateHttpRouteRequest {
            api_id: api_id.to_string(),
            route_key: route_key.to_string(),
            function_name: function_name.to_string(),
            qualifier: qualifier.to_string(),
            throttle,
        };
        Ok(self
            .gateway
            .clone()
            .create_http_route(req)
            .await?
            .into_inner())
    }

    /// The routes of HTTP API `id`.
    pub async fn list_http_routes(&self, id: &str) -> Result<Vec<v1::HttpRoute>, Error> {
        let resp = self.gateway.clone().list_http_routes(api_id(id)).await?;
        Ok(resp.into_inner().routes)
    }

    /// Deletes a route of HTTP API `api_id`, named by its id or by its route key.
    pub async fn delete_http_route(&self, api_id: &str, route: &str) -> Result<(), Error> {
        let req = v1::HttpRouteId {
            api_id: api_id.to_string(),
            route: route.to_string(),
        };
        self.gateway.clone().delete_http_route(req).await?;
        Ok(())
    }
}
