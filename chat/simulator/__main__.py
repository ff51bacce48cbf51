"""``python -m chat.simulator --port 8001``: serve the demo model until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

from chat.simulator.server import Simulator, serve


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8001)))
    parser.add_argument("--tps", type=float, default=float(os.environ.get("CHAT_DEMO_TOKENS_PER_SECOND", 40)))
    parser.add_argument("--api-key-env", default="", help="require the key in this variable")
    parser.add_argument(
        "--keep-alive",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("CHAT_DEMO_KEEP_ALIVE", "1") != "0",
        help="serve many requests on a connection, as vendors do (default: on)",
    )
    args = parser.parse_args()
    api_key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""
    server = await serve(args.host, args.port, Simulator(args.tps, api_key, keep_alive=args.keep_alive))
    print(f"demo upstream listening on http://{args.host}:{args.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
