"""A real MCP server (official Python SDK) standing in for a tenant backend: in the end-to-end
tests, and as the local stack's backend (`make run`).

    python server.py --port PORT [--log FILE]

Serves MCP Streamable HTTP at http://127.0.0.1:PORT/mcp for both protocol revisions
(2025-11-25 with an initialize handshake and Mcp-Session-Id, and 2026-07-28). Any other path
echoes the request as JSON, `{"method", "path", "query", "headers": [[name, value], ...],
"body"}`, like the sim's echo backend, so a REST call through the gateway shows what arrived.

Tools:
    whoami()         -> "authorization=<the Authorization header this request carried, or None>"
    echo(text: str)  -> text

With --log, every HTTP request is appended to FILE as one JSON line, flushed at once:
    {"method", "path", "authorization", "mcp_method", "session"}   (missing headers are null)

Prints "ready" on stdout once it accepts connections; runs until killed (SIGTERM exits 0).
"""

import argparse
import asyncio
import json
import signal
import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

mcp = MCPServer("tenant-backend")


@mcp.tool()
def whoami(ctx: Context) -> str:
    """Report the Authorization header the backend received."""
    return f"authorization={(ctx.headers or {}).get('authorization')}"


@mcp.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


class RequestLog:
    """ASGI middleware: one JSON line per HTTP request, written as the request arrives."""

    def __init__(self, app, path):
        self.app = app
        self.file = open(path, "a", encoding="utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            line = {
                "method": scope["method"],
                "path": scope["path"],
                "authorization": headers.get("authorization"),
                "mcp_method": headers.get("mcp-method"),
                "session": headers.get("mcp-session-id"),
            }
            self.file.write(json.dumps(line) + "\n")
            self.file.flush()
        await self.app(scope, receive, send)


class EchoElsewhere:
    """ASGI: `/mcp` goes to the MCP app; any other path is echoed back as JSON."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] == "/mcp" or scope["path"].startswith("/mcp/"):
            return await self.app(scope, receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        echoed = json.dumps({
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("utf-8", "replace"),
        }).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": echoed})


async def main(port: int, log: str | None) -> None:
    # The Host header is whatever the proxy forwards: no DNS-rebinding check in a test backend.
    app = EchoElsewhere(mcp.streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False)
    ))
    if log:
        app = RequestLog(app, log)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    sock = socket.create_server(("127.0.0.1", port))  # a taken port fails here, plainly
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # lifespan (the session manager) is up and the socket is served
        if serving.done():
            await serving
            sys.exit("server did not start")
        await asyncio.sleep(0.02)
    print("ready", flush=True)
    await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log")
    args = parser.parse_args()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: end with status 0 then.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main(args.port, args.log))
