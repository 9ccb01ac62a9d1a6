"""One app, three entry points: the same routes served by AWS Lambda Powertools for Python's
resolvers for API Gateway REST APIs (payload format 1.0), HTTP APIs (2.0) and function URLs, run
unchanged behind Lamina's HTTP gateway (tests/tests/http_gateway.rs)."""
from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    LambdaFunctionUrlResolver,
    Response,
)
from aws_lambda_powertools.shared.cookies import Cookie


def build(app, kind):
    @app.get("/items/<item_id>")
    def get_item(item_id):
        event = app.current_event
        return {
            "kind": kind,
            "item": item_id,
            "q": event.get_query_string_value("q"),
            "tags": event.get_multi_value_query_string_values("tag") if kind == "rest" else None,
            "agent": event.get_header_value("user-agent"),
            "method": event.http_method,
            "path": event.path,
        }

    @app.post("/echo")
    def echo():
        event = app.current_event
        return {"kind": kind, "json": event.json_body, "base64": event.is_base64_encoded}

    @app.get("/teapot")
    def teapot():
        return Response(
            status_code=418,
            content_type="text/plain",
            body="short and stout",
            headers={"X-Tea": ["earl grey", "assam"]},
            cookies=[Cookie(name="pot", value="1"), Cookie(name="lid", value="on")],
        )

    @app.not_found
    def missing(exc):
        return Response(status_code=404, content_type="application/json", body='{"powertools":"not found"}')

    return app


rest_app = build(APIGatewayRestResolver(), "rest")
http_app = build(APIGatewayHttpResolver(), "http")
url_app = build(LambdaFunctionUrlResolver(), "url")


def rest_handler(event, context):
    return rest_app.resolve(event, context)


def http_handler(event, context):
    return http_app.resolve(event, context)


def url_handler(event, context):
    return url_app.resolve(event, context)
