"""``kyc models``: what models are found where, check them, fetch them, build them.

* ``kyc models list [--json]``: every manifest model with its status (``ok``, ``unpinned``,
  ``missing``, ``corrupt``), where it was found, licence and whether kyc ships it.
* ``kyc models verify [NAME ...] [--json]``: exit 0 when every named model (default: every
  model the default pipelines need) is present with an accepted sha256, else 3.
* ``kyc models pull NAME ... | --all [--dest DIR] [--mirror URL] [--force] [--quiet]``:
  download from the publisher's URL (or ``--mirror`` / ``$KYC_MODEL_MIRROR``, which serves
  ``<URL>/<filename>``) with a progress bar, check the sha256, write atomically into the user
  cache or ``--dest``. Built models are pulled as their source and then built.
* ``kyc models build [NAME ...] | --all [--source PATH] [--dest DIR] [--force]``: convert
  the dlib ``.dat`` and the MiniFASNet ``.pth`` files to ONNX with kyc's own readers (no dlib,
  no PyTorch). With no name, every built model is built.

Nothing here runs implicitly: the library never downloads on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kyc.errors import KycError, ModelError
from kyc.models.registry import (
    ENV_MIRROR,
    ModelSpec,
    ModelStatus,
    build_model,
    cache_dir,
    file_sha256,
    load_session,
    manifest,
    model_spec,
    model_status,
    pull_model,
)

__all__ = ["register"]

_EXIT_OK = 0
_EXIT_USAGE = 2
_EXIT_RESOURCE = 3


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``kyc models list|verify|pull|build`` to the ``kyc`` parser."""
    p = sub.add_parser(
        "models",
        help="list, verify, pull and build the model files kyc uses",
        description=(__doc__ or "").split("\n\n")[0],
    )
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    p.set_defaults(func=lambda args: _usage(p))

    lp = msub.add_parser("list", help="every model: status, where found, licence, ships")
    lp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lp.set_defaults(func=_cmd_list)

    vp = msub.add_parser("verify", help="exit 0 if the required models are present and intact")
    vp.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: required)")
    vp.add_argument("--json", action="store_true", help="print JSON instead of lines")
    vp.set_defaults(func=_cmd_verify)

    pp = msub.add_parser("pull", help="download models from their publishers, checked by sha256")
    pp.add_argument("names", nargs="*", metavar="NAME", help="models to fetch")
    pp.add_argument("--all", action="store_true", help="every model kyc ships")
    pp.add_argument("--dest", metavar="DIR", help=f"target folder (default: {_cache_hint()})")
    pp.add_argument(
        "--mirror",
        "--url",
        dest="mirror",
        metavar="URL",
        help=f"base URL serving <URL>/<filename> (default: ${ENV_MIRROR}, else the publisher)",
    )
    pp.add_argument("--force", action="store_true", help="download even if a good copy is there")
    pp.add_argument("--quiet", action="store_true", help="no progress bar")
    pp.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    pp.set_defaults(func=_cmd_pull)

    bp = msub.add_parser("build", help="convert dlib / MiniFASNet weights to ONNX (no dlib/torch)")
    bp.add_argument("names", nargs="*", metavar="NAME", help="built models (default: all)")
    bp.add_argument("--all", action="store_true", help="every model kyc builds")
    bp.add_argument("--source", metavar="PATH", help="source file (or folder) for one model")
    bp.add_argument("--dest", metavar="DIR", help=f"target folder (default: {_cache_hint()})")
    bp.add_argument("--force", action="store_true", help="rebuild even if a good copy is there")
    bp.set_defaults(func=_cmd_build)


def _cache_hint() -> str:
    try:
        return str(cache_dir())
    except Exception:  # pragma: no cover - help text only
        return "the user cache"


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return _EXIT_USAGE


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(spec: ModelSpec, st: ModelStatus) -> dict[str, Any]:
    return {
        "name": spec.name,
        "status": st.status,
        "path": st.path,
        "sha256": st.sha256,
        "licence": spec.licence,
        "ships": spec.ships,
        "default": spec.default,
        "role": spec.role,
        "build_from": spec.build_from,
        "searched": list(st.searched),
        "message": st.message,
    }


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [_row(spec, model_status(name)) for name, spec in manifest().items()]
    if args.json:
        print(json.dumps({"cache_dir": str(cache_dir()), "models": rows}, indent=2))
        return _EXIT_OK
    header = ("NAME", "STATUS", "LICENCE", "SHIPS", "WHERE")
    table = [
        (
            r["name"] + ("*" if r["default"] else ""),
            r["status"],
            _short(r["licence"], 30),
            "yes" if r["ships"] else "no",
            r["path"] or ("(build: kyc models build)" if r["build_from"] else "-"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header[:-1])]
    for line in (header, *table):
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)]
        print("  ".join([*cells, line[-1]]).rstrip())
    print(f"* required by the default pipelines; cache: {cache_dir()}")
    return _EXIT_OK


def _verify_one(name: str) -> dict[str, Any]:
    spec = model_spec(name)
    st = model_status(name)
    row = _row(spec, st)
    if st.ok and spec.format == "onnx" and not spec.pinned and st.path is not None:
        # no pinned digest to trust: prove the file at least opens as the declared model
        try:
            load_session(name)
        except ModelError as exc:
            row["status"], row["message"] = "invalid", exc.message
    return row


def _cmd_verify(args: argparse.Namespace) -> int:
    names = list(args.names) or [n for n, s in manifest().items() if s.default]
    rows = [_verify_one(n) for n in names]
    bad = [r for r in rows if r["status"] not in ("ok", "unpinned")]
    if args.json:
        print(json.dumps({"ok": not bad, "models": rows}, indent=2))
    else:
        for r in rows:
            where = r["path"] or "not found"
            print(f"{r['status']:<9} {r['name']:<24} {where}")
            if r["status"] not in ("ok", "unpinned") and r["message"]:
                print(f"          {r['message']}")
        print("all required models are present and intact" if not bad else f"{len(bad)} bad")
    return _EXIT_OK if not bad else _EXIT_RESOURCE


def _targets(args: argparse.Namespace, *, built_only: bool) -> list[str]:
    specs = manifest()
    if args.all or (built_only and not args.names):
        built = [n for n, s in specs.items() if s.ships and s.built]
        if built_only:
            return built
        # every shipped model: downloadable ones first, then the built ones (from sources)
        return [n for n, s in specs.items() if s.ships and not s.built] + built
    for name in args.names:
        model_spec(name)  # unknown names fail before any work
    return list(dict.fromkeys(args.names))


def _cmd_pull(args: argparse.Namespace) -> int:
    if not args.names and not args.all:
        print("kyc models pull: name a model or pass --all", file=sys.stderr)
        return _EXIT_USAGE
    failed = 0
    for name in _targets(args, built_only=False):
        try:
            path = pull_model(
                name,
                dest=args.dest,
                mirror=args.mirror,
                force=args.force,
                progress=not args.quiet and sys.stderr.isatty(),
                timeout=args.timeout,
            )
        except KycError as exc:
            failed += 1
            print(f"failed    {name}: [{exc.code}] {exc.message}", file=sys.stderr)
            continue
        _report_ok(name, path)
    return _EXIT_OK if not failed else _EXIT_RESOURCE


def _cmd_build(args: argparse.Namespace) -> int:
    names = _targets(args, built_only=True)
    if args.source is not None and len(names) != 1:
        print("kyc models build: --source needs exactly one model name", file=sys.stderr)
        return _EXIT_USAGE
    failed = 0
    for name in names:
        try:
            path = build_model(name, source=args.source, dest=args.dest, force=args.force)
        except KycError as exc:
            if len(names) == 1:
                raise
            failed += 1
            print(f"failed    {name}: [{exc.code}] {exc.message}", file=sys.stderr)
            continue
        _report_ok(name, path)
    return _EXIT_OK if not failed else _EXIT_RESOURCE


def _report_ok(name: str, path: Path) -> None:
    digest = file_sha256(path)
    note = "" if model_spec(name).pinned else "  (unpinned: add this digest to the manifest)"
    print(f"ok        {name:<24} {path}  sha256 {digest}{note}")
