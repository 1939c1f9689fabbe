"""A real MCP client (official Python SDK), scripted by an end-to-end test.

    python client.py --url URL --token TOKEN --mode legacy|auto [--no-elicitation] [--tool whoami] [--calls N]

Connects with `Authorization: Bearer TOKEN` ("legacy" speaks 2025-11-25 with initialize; "auto"
probes server/discover for 2026-07-28 and falls back), lists the tools, then calls TOOL (no
arguments) N times in the same session. Reports one JSON object per line on stdout:

    {"event": "connected", "protocol_version": ...}
    {"event": "tools", "names": [...]}              or {"event": "error", "step": "list", ...}
    per call, one of:
      {"event": "elicitation", "via": "callback", "mode", "url", "message"}
          2026-07-28 input_required: waits for one stdin line, accepts, the SDK resends the call
      {"event": "elicitation", "via": "error", "code": -32042, "url", "message", "elicitation_id"}
          2025-11-25 error: waits for one stdin line, then retries the call once
      {"event": "result", "is_error": bool, "text": ...}
      {"event": "error", "step": "call", "code", "message", "data"}
    {"event": "done"}                                 then exit 0
    {"event": "crash", "type", "message", "code", "more"}  on anything unexpected, then exit 1
        (the first innermost exception of any exception group; "more" lists the others)
"""

import argparse
import json
import sys

import anyio
import httpx2
from mcp import Client, MCPError, types
from mcp.client.streamable_http import streamable_http_client


def emit(**event) -> None:
    print(json.dumps(event, default=str), flush=True)


async def wait_for_test() -> None:
    """Block until the test writes one line on stdin, without blocking the event loop."""
    await anyio.to_thread.run_sync(sys.stdin.readline)


async def elicit(ctx, params):
    emit(event="elicitation", via="callback", mode=params.mode,
         url=getattr(params, "url", None), message=params.message)
    await wait_for_test()
    return types.ElicitResult(action="accept")


async def call(client: Client, tool: str, retry_on_elicitation: bool = True) -> None:
    try:
        result = await client.call_tool(tool)
    except MCPError as e:
        if e.code == types.URL_ELICITATION_REQUIRED and retry_on_elicitation:
            first = ((e.data or {}).get("elicitations") or [{}])[0]
            emit(event="elicitation", via="error", code=e.code, url=first.get("url"),
                 message=first.get("message"), elicitation_id=first.get("elicitationId"))
            await wait_for_test()
            return await call(client, tool, retry_on_elicitation=False)
        emit(event="error", step="call", code=e.code, message=e.message, data=e.data)
        return
    text = "".join(c.text for c in result.content if isinstance(c, types.TextContent))
    emit(event="result", is_error=bool(result.is_error), text=text)


async def main(args) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {args.token}"}, timeout=30)
    async with http, Client(
        streamable_http_client(args.url, http_client=http),
        mode=args.mode,
        elicitation_callback=None if args.no_elicitation else elicit,
    ) as client:
        emit(event="connected", protocol_version=client.protocol_version)
        try:
            tools = await client.list_tools()
            emit(event="tools", names=[t.name for t in tools.tools])
        except MCPError as e:
            emit(event="error", step="list", code=e.code, message=e.message)
        for _ in range(args.calls):
            await call(client, args.tool)
    emit(event="done")


def leaves(exc: BaseException) -> list[BaseException]:
    """The innermost exceptions of (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--mode", choices=["legacy", "auto"], required=True)
    parser.add_argument("--no-elicitation", action="store_true")
    parser.add_argument("--tool", default="whoami")
    parser.add_argument("--calls", type=int, default=1)
    try:
        anyio.run(main, parser.parse_args())
    except Exception as crash:  # noqa: BLE001 - reported to the test, which decides
        first, *more = leaves(crash)
        emit(event="crash", type=type(first).__name__, message=str(first), code=getattr(first, "code", None),
             more=[f"{type(e).__name__}: {e}" for e in more])
        sys.exit(1)
