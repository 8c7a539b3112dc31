"""``kyc serve``: run the HTTP service (:mod:`kyc.service`) with uvicorn.

Secrets never go on the command line (where ``ps`` shows them): ``--token-env`` and
``--secret-env`` name the environment variables that hold them. The token variable may hold
several tokens separated by commas (for rotation)::

    export KYC_API_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    export KYC_HMAC_SECRET=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    kyc serve --host 127.0.0.1 --port 8080 --graph-store graph.db

uvicorn's own access log is off (it prints raw request paths, which may hold applicant ids);
the service logs each request through the ``kyc.service`` logger with the route template.
Needs the optional extra: ``pip install 'kyc[service]'``.

Exit codes: 0 after a clean shutdown; 2 bad settings (a missing variable, a short token or
secret); 3 the graph store cannot be opened.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from kyc.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from kyc.service.app import ServiceConfig

__all__ = ["config_from_args", "register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` sub-command to the ``kyc`` parser."""
    p = sub.add_parser(
        "serve",
        help="run the HTTP service (needs the 'service' extra)",
        description=("Run the kyc HTTP service (face match, liveness, applicant graph, "
                     "decisions) with uvicorn. Secrets are read from environment variables."),
        epilog="exit codes: 0 clean shutdown, 2 bad settings, 3 store problem",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--token-env", default="KYC_API_TOKEN", metavar="VAR",
                   help="environment variable holding the API token(s), comma-separated")
    p.add_argument("--secret-env", default="KYC_HMAC_SECRET", metavar="VAR",
                   help="environment variable holding the deployment HMAC secret")
    p.add_argument("--graph-store", default=None, metavar="PATH",
                   help="SQLite file of the applicant graph (default: in memory, not kept)")
    p.add_argument("--max-body-mb", type=float, default=16.0,
                   help="largest request body in MiB (default 16)")
    p.add_argument("--rate", type=float, default=5.0,
                   help="requests per second per token, sustained (default 5)")
    p.add_argument("--burst", type=int, default=20,
                   help="requests per token at once (default 20)")
    p.add_argument("--workers", type=int, default=2,
                   help="requests computing at once (default 2)")
    p.add_argument("--pad-models", default=None, metavar="DIR",
                   help="folder of the built MiniFASNet ONNX files")
    p.add_argument("--landmarker", default=None, metavar="PATH",
                   help="MediaPipe face_landmarker.task (default: the model registry)")
    p.add_argument("--policy", default=None, metavar="PATH",
                   help="decision policy file (default: the shipped policy)")
    p.add_argument("--challenge-ttl", type=float, default=120.0,
                   help="seconds an active-liveness challenge stays valid (default 120)")
    p.add_argument("--challenge-steps", type=int, default=2,
                   help="moves per challenge (default 2)")
    p.add_argument("--challenge-moves", default=None, metavar="MOVES",
                   help="comma-separated moves to draw from (default: all)")
    p.add_argument("--max-sessions", type=int, default=32,
                   help="active-liveness sessions open at once (default 32)")
    p.add_argument("--mirrored", action="store_true",
                   help="clients send mirrored (selfie-preview) frames")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def _env(name: str, what: str) -> str:
    value = os.environ.get(name, "")
    if not value.strip():
        raise ConfigError(f"environment variable {name} (the {what}) is not set or empty")
    return value.strip()


def config_from_args(args: argparse.Namespace) -> ServiceConfig:
    """Build the :class:`~kyc.service.app.ServiceConfig` from parsed ``serve`` arguments."""
    from kyc.service.app import ServiceConfig

    tokens = tuple(t.strip() for t in _env(args.token_env, "API token").split(",") if t.strip())
    secret = _env(args.secret_env, "HMAC secret")
    if not (args.max_body_mb > 0):
        raise ConfigError("--max-body-mb must be positive")
    moves = None
    if args.challenge_moves:
        moves = tuple(m.strip() for m in args.challenge_moves.split(",") if m.strip())
    return ServiceConfig(
        tokens=tokens,
        secret=secret,
        graph_store=args.graph_store,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        rate_per_s=args.rate,
        burst=args.burst,
        workers=args.workers,
        max_sessions=args.max_sessions,
        challenge_ttl_s=args.challenge_ttl,
        challenge_steps=args.challenge_steps,
        challenge_moves=moves,
        mirrored=args.mirrored,
        pad_model_dir=args.pad_models,
        landmarker_model=args.landmarker,
        policy=args.policy,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``kyc serve`` until interrupted; returns the exit code."""
    from kyc.service.app import create_app

    config = config_from_args(args)
    app = create_app(config)  # ConfigError (exit 2) when the extra is missing
    if config.graph_store:
        app.state.kyc.graph()  # open the store now: a bad path fails here (exit 3)
    if config.policy:
        app.state.kyc.policy()  # validate the policy now (exit 2)
    import uvicorn

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    print(
        f"kyc serve: listening on http://{args.host}:{args.port} "
        f"({len(config.tokens)} token(s); graph store: {config.graph_store or 'memory'})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level=args.log_level,
        server_header=False,
        proxy_headers=False,
    )
    return 0
