"""The ``kyc`` command line.

Sub-commands are registered by small modules under :mod:`kyc._cli` so each area (models,
faces, graph) owns its own commands. Exit codes: 0 success, 1 a negative result a script may
act on (mismatch, spoof, reject, rings found where ``--fail-on-rings``), 2 bad usage or bad
input, 3 a model or store problem, 4 a decision sent to manual review (``kyc decide``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kyc.errors import KycError, ModelError, StoreError

__all__ = ["main"]

# Modules that add sub-commands; each defines ``register(subparsers) -> None`` and sets
# ``func`` (``Callable[[argparse.Namespace], int]``) on every parser it adds.
_COMMAND_MODULES = (
    "kyc._cli.models",
    "kyc._cli.face",
    "kyc._cli.calibrate",
    "kyc._cli.liveness",
    "kyc._cli.graph",
    "kyc._cli.serve",
    "kyc._cli.bench",
    "kyc._cli.decide",
)

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_USAGE = 2
EXIT_RESOURCE = 3


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered sub-command."""
    summary = __doc__.splitlines()[0] if __doc__ else ""
    parser = argparse.ArgumentParser(prog="kyc", description=summary)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an area not built yet in this checkout
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from kyc import __version__

        print(__version__)
        return EXIT_OK
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(func(args))
    except (ModelError, StoreError) as exc:
        print(f"kyc: error [{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_RESOURCE
    except KycError as exc:
        print(f"kyc: error [{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
