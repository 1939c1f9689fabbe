"""A real MCP client (official Python SDK), scripted by an end-to-end test.

    python client.py --url URL (--token TOKEN | --oauth-user USER [--client-metadata-url URL])
                     --mode legacy|auto [--no-elicitation] [--tool whoami] [--calls N]

Connects with `Authorization: Bearer TOKEN`, or with nothing but the URL: `--oauth-user` runs
the SDK's own OAuth client (401 -> protected resource metadata -> authorization server metadata
-> a Client ID Metadata Document URL as client id where the server advertises them and one is
given, dynamic registration otherwise -> authorization code + PKCE with `resource`), its
browser scripted to sign in as USER. "legacy" speaks 2025-11-25 with initialize; "auto" probes server/discover for
2026-07-28 and falls back. Lists the tools, then calls TOOL (no arguments) N times in the same
session. Reports one JSON object per line on stdout:

    {"event": "authorized", "authorize_url": ..., "iss": ...}   (OAuth only, per sign-in)
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
import logging
import os
import sys

from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx2
from mcp import Client, MCPError, types
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

REDIRECT_URI = "http://127.0.0.1:33418/callback"


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


class MemoryStorage:
    """Tokens and the registered client, for this run only."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


class ScriptedBrowser:
    """The user's browser at the authorization server: signs in as `user` on the login form and
    hands the redirect's code to the SDK (what a desktop client's loopback listener does)."""

    def __init__(self, user: str):
        self.user = user
        self.result = None

    async def open(self, authorize_url: str) -> None:
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as browser:
            page = await browser.get(authorize_url)
            if page.status_code == 200:  # the login form: sign in, carrying the request along
                action = page.text.split('action="', 1)[1].split('"', 1)[0]
                carried = page.text.split('name="q" value="', 1)[1].split('"', 1)[0]
                carried = carried.replace("&amp;", "&").replace("&quot;", '"')
                page = await browser.post(urljoin(authorize_url, action),
                                          data={"q": carried, "username": self.user})
            location = page.headers.get("location", "")
            if page.status_code != 302 or not location.startswith(REDIRECT_URI):
                raise RuntimeError(f"authorization failed: {page.status_code} {location or page.text[:200]}")
            query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
            if "error" in query:
                raise RuntimeError(f"authorization refused: {query}")
            emit(event="authorized", authorize_url=authorize_url, iss=query.get("iss"))
            self.result = AuthorizationCodeResult(code=query["code"], state=query.get("state"),
                                                  iss=query.get("iss"))

    async def callback(self) -> AuthorizationCodeResult:
        return self.result


def http_client(args) -> httpx2.AsyncClient:
    if args.token:
        return httpx2.AsyncClient(headers={"Authorization": f"Bearer {args.token}"}, timeout=30)
    browser = ScriptedBrowser(args.oauth_user)
    auth = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            client_name="token-vault-proxy e2e agent",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=MemoryStorage(),
        redirect_handler=browser.open,
        callback_handler=browser.callback,
        client_metadata_url=args.client_metadata_url,
    )
    return httpx2.AsyncClient(auth=auth, timeout=30)


async def main(args) -> None:
    http = http_client(args)
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
    if os.environ.get("MCP_CLIENT_DEBUG"):  # the SDK's and httpx's own logs, on stderr
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--token")
    who.add_argument("--oauth-user")
    parser.add_argument("--client-metadata-url")
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
