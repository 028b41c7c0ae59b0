"""llama.cpp's own OpenAI-compatible HTTP server, for kiosks that share one model (and for testing
the ``openai`` engine): ``python -m assistant.engines.llamacpp_server MODEL.gguf --port 8080``."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from assistant.stages import ModelMissingError


def serve(
    model_file: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    context_tokens: int = 4096,
    threads: int = 2,
    parallel: int = 1,
    api_key: str = "",
    metrics: bool = False,
) -> None:
    """Run llama.cpp's OpenAI-compatible server on ``host:port`` until the process is stopped.

    Prints ``listening on http://HOST:PORT`` on standard output once the model is loaded (port 0
    picks a free port). Blocks; SIGTERM / Ctrl-C end the process.
    """
    import signal
    import sys

    import xllamacpp as xl

    if not model_file.is_file():
        raise ModelMissingError(model_file.parent.name, model_file)
    params = xl.CommonParams()
    params.model.path = str(model_file)
    params.n_ctx = context_tokens * parallel  # llama.cpp splits the context between its slots
    params.n_parallel = parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = 1
    params.hostnames = [host]
    params.port = port
    params.endpoint_metrics = metrics
    if api_key:
        params.api_keys = [api_key]
    server = xl.Server(params)
    print(f"listening on {server.listening_address}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        del server


def main(argv: list[str] | None = None) -> int:
    """``python -m assistant.engines.llamacpp_server MODEL.gguf --port 8080``: the OpenAI-compatible server."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m assistant.engines.llamacpp_server", description=main.__doc__)
    parser.add_argument("model", type=Path, help="a .gguf file, e.g. models/qwen2.5-1.5b/model.gguf")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    parser.add_argument("--context-tokens", type=int, default=4096, help="context per request slot")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=1, help="requests decoded together (slots)")
    parser.add_argument("--api-key-env", default="", help="environment variable holding the API key clients must send")
    parser.add_argument("--metrics", action="store_true", help="serve Prometheus metrics on /metrics")
    args = parser.parse_args(argv)
    serve(
        args.model,
        host=args.host,
        port=args.port,
        context_tokens=args.context_tokens,
        threads=args.threads,
        parallel=args.parallel,
        api_key=os.environ.get(args.api_key_env, "") if args.api_key_env else "",
        metrics=args.metrics,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
