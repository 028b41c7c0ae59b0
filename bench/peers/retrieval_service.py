"""Our retrieval and grounded prompt as a small HTTP service, for the pipecat peer.

    .venv/bin/python bench/peers/retrieval_service.py [--config assistant.toml] --port 8791

Runs in the project's own virtualenv (the peer's pipecat venv never imports ``assistant``). One
endpoint, ``POST /plan`` with ``{"text": question, "language": "en" | "zh" | ""}``, answers with
what the daemon's own turn would plan for that transcript on a fresh session
(``assistant.routing.plan_answer``: the same retriever, index, calibration and thresholds):

    {"route": "faq" | "generated" | "fallback", "language": "en",
     "messages": [{"role": "system", "content": ...}, {"role": "user", "content": ...}],
     "sources": [{"id", "kind", "score"}], "plan_ms": 3.1}

``messages`` is always the grounded chat of ``assistant.prompts.build_messages`` over the passages
the route shows as sources: on ``generated`` exactly the daemon's LLM messages; on ``faq`` the one
FAQ entry (the daemon reads its answer verbatim instead; the peer has no FAQ route, so its LLM
phrases the answer from that entry); on ``fallback`` no passage (the prompt says none was found, and
the model is told to decline). Prints ``serving on http://HOST:PORT`` once the retriever is warm.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from assistant import prompts  # noqa: E402
from assistant.registry import load_settings, open_retriever  # noqa: E402
from assistant.routing import plan_answer  # noqa: E402
from assistant.stages import Engines, Transcript  # noqa: E402


def make_app(config: str | None) -> web.Application:
    settings = load_settings(config)
    engines = Engines(retriever=open_retriever(settings), llm=None)  # type: ignore[arg-type]

    async def plan(request: web.Request) -> web.Response:
        body = await request.json()
        t0 = time.perf_counter()
        transcript = Transcript(str(body.get("text", "")).strip(), str(body.get("language") or ""))
        p = await plan_answer(transcript, [], engines=engines, settings=settings)
        messages = p.messages or prompts.build_messages(p.transcript, p.decision.passages, [], language=p.language)
        return web.json_response(
            {
                "route": p.decision.route,
                "language": p.language,
                "messages": [{"role": m.role, "content": m.content} for m in messages],
                "sources": [{"id": s.id, "kind": s.kind, "score": round(s.score, 3)} for s in p.decision.passages],
                "plan_ms": round((time.perf_counter() - t0) * 1000, 1),
            }
        )

    async def warm(app: web.Application) -> None:
        # the embedder and indexes load on the first search: not on a measured turn
        await plan_answer(Transcript("warm up", "en"), [], engines=engines, settings=settings)

    app = web.Application()
    app.router.add_post("/plan", plan)
    app.on_startup.append(warm)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="settings file (default ./assistant.toml)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    app = make_app(args.config)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        print=lambda *_: print(f"serving on http://{args.host}:{args.port}", flush=True),
        access_log=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
