"""A FastAPI app behind mangum, run unchanged behind Lamina's HTTP gateway through a function URL
and HTTP APIs of both payload formats (tests/tests/http_gateway.rs)."""
from typing import List, Optional

from fastapi import FastAPI, Header, Request, Response
from mangum import Mangum
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: List[str] = []


@app.get("/hello/{name}")
async def hello(name: str, greeting: str = "hello"):
    return {"message": f"{greeting}, {name}"}


@app.post("/items", status_code=201)
async def create_item(item: Item, x_request_note: Optional[str] = Header(default=None)):
    return {"created": item.model_dump(), "note": x_request_note, "total": item.price * 2}


@app.get("/inspect")
async def inspect(request: Request):
    return {
        "path": request.url.path,
        "query": sorted(request.query_params.multi_items()),
        "cookies": dict(request.cookies),
        "x_multi": request.headers.get("x-multi"),
        "host": request.headers.get("host"),
    }


@app.get("/cookies")
async def cookies():
    resp = Response(content="cookies set", media_type="text/plain")
    resp.set_cookie("first", "1")
    resp.set_cookie("second", "2")
    return resp


handler = Mangum(app, lifespan="off")
