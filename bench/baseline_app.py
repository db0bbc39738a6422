"""The ingest baseline: a bare Starlette endpoint that verifies Rotor's webhook signature
and answers 202, under the same uvicorn settings as `rotor-slack serve`."""

import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from app import signing


def app_for(secret: str) -> Starlette:
    keys = signing.secret_keys(secret)

    async def receive(request):
        body = await request.body()
        try:
            signing.verify(keys, request.headers, body, time.time())
        except signing.SignatureError:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        return JSONResponse({"status": "accepted"}, status_code=202)

    return Starlette(routes=[Route("/rotor/webhook", receive, methods=["POST"])])


if __name__ == "__main__":
    port, secret = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(app_for(secret), host="127.0.0.1", port=port, log_config=None, access_log=False)
