"""``kyc decide``: one approve / review / reject decision with its reasons.

Two ways in, which can be combined:

* ``kyc decide RESULTS.json``: a JSON object with any of ``match``, ``liveness``, ``active``,
  ``graph``, ``velocity``, ``duplicates`` and ``subject``, each as the library's ``to_dict()``
  produces it (``-`` reads standard input);
* ``kyc decide --id ID.jpg --selfie SELFIE.jpg``: runs the face match and passive liveness on
  the images; ``--application APP.json --graph-store PATH`` adds the application (one record,
  raw identifiers are hashed under the secret in ``--secret-env``) to the graph store and
  uses the applicant's ring report and velocity counters; ``--face-index INDEX`` searches the
  selfie's face among enrolled subjects for duplicates.

``--policy FILE`` applies a policy of your own (default: the shipped thin-file consumer
lender policy). Prints the outcome, each check and the reasons that triggered it;
``--json`` prints :meth:`kyc.decision.Decision.to_dict` instead.

Exit codes: 0 approve; 1 reject; 4 review (a person must look); 2 bad input (unreadable or
malformed JSON, an undecodable image, an invalid policy or application record); 3 a model or
store problem (a model file missing or corrupt, the graph store unusable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from kyc.errors import ConfigError, InvalidRecord

__all__ = ["EXIT_CODES", "register", "run"]

#: Exit code per outcome.
EXIT_CODES = {"approve": 0, "reject": 1, "review": 4}
_EXIT_USAGE = 2
_EXIT_MODEL = 3
_INPUT_KEYS = ("match", "liveness", "active", "graph", "velocity", "duplicates", "subject")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``decide`` sub-command to the ``kyc`` parser."""
    p = sub.add_parser(
        "decide",
        help="approve / review / reject from face, liveness and graph evidence",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="exit codes: 0 approve, 1 reject, 4 review, 2 bad input, 3 model/store problem",
    )
    p.add_argument("results", nargs="?", metavar="RESULTS.json",
                   help="JSON object with match/liveness/active/graph/velocity/duplicates "
                        "results (their to_dict() form); - reads standard input")
    p.add_argument("--id", dest="id_image", metavar="ID_IMAGE",
                   help="photo of the ID document (with --selfie: run the face match)")
    p.add_argument("--selfie", metavar="SELFIE",
                   help="the applicant's selfie (face match with --id, passive liveness)")
    p.add_argument("--application", metavar="APP.json",
                   help="the application record (JSON object) to add to --graph-store")
    p.add_argument("--graph-store", metavar="PATH",
                   help="graph store (SQLite file) the application is added to")
    p.add_argument("--secret-env", default=None, metavar="VAR",
                   help="environment variable holding the HMAC secret (default KYC_HMAC_SECRET)")
    p.add_argument("--region", default="US",
                   help="region for phone numbers without a country prefix (default US)")
    p.add_argument("--face-index", metavar="INDEX",
                   help="a saved FaceIndex: search the selfie's face among enrolled subjects")
    p.add_argument("--policy", metavar="FILE", help="decision policy (.toml, .json, .yaml)")
    p.add_argument("--pad-models", metavar="DIR", default=None,
                   help="folder holding the built MiniFASNet ONNX files (default: model search "
                        "path)")
    p.add_argument("--json", action="store_true", help="print the full decision as JSON")
    p.set_defaults(func=run)


def _read_results(name: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {name}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"{name} is not valid JSON: {exc}", field="results") from None
    if not isinstance(data, dict):
        raise InvalidRecord(f"{name}: expected a JSON object with any of "
                            f"{', '.join(_INPUT_KEYS)}", field="results")
    unknown = sorted(set(data) - set(_INPUT_KEYS))
    if unknown:
        raise InvalidRecord(f"{name}: unknown key {unknown[0]!r} (known: "
                            f"{', '.join(_INPUT_KEYS)})", field=unknown[0])
    return data


def _read_application(name: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {name}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"{name} is not valid JSON: {exc}", field="application") from None
    if not isinstance(data, dict):
        raise InvalidRecord(f"{name}: expected one application record (a JSON object)",
                            field="application")
    return data


def _set(inputs: dict[str, Any], key: str, value: Any) -> None:
    if inputs.get(key) is not None:
        raise ConfigError(f"{key} is given twice (in the results file and by an option)")
    inputs[key] = value


def run(args: argparse.Namespace) -> int:
    """Run ``kyc decide``; returns the exit code (0 approve, 1 reject, 4 review)."""
    from kyc.decision import decide
    from kyc.policy import load_policy

    if args.id_image is not None and args.selfie is None:
        raise ConfigError("--id needs --selfie")
    if args.application is not None and args.graph_store is None:
        raise ConfigError("--application needs --graph-store (the graph the applicant is "
                          "checked against)")
    if args.face_index is not None and args.selfie is None:
        raise ConfigError("--face-index needs --selfie")
    if args.results is None and args.selfie is None and args.application is None:
        raise ConfigError("nothing to decide on: give RESULTS.json, --id/--selfie or "
                          "--application (see kyc decide --help)")
    policy = load_policy(args.policy)  # fail on a bad policy before any model work
    inputs: dict[str, Any] = _read_results(args.results) if args.results is not None else {}

    if args.application is not None:
        from kyc.graph.fraudgraph import FraudGraph
        from kyc.graph.identifiers import ENV_SECRET, hasher_from_env

        record = _read_application(args.application)
        hasher = hasher_from_env(var=args.secret_env or ENV_SECRET, default_region=args.region)
        with FraudGraph(hasher, store=os.fspath(args.graph_store)) as graph:
            report = graph.add(record)
        _set(inputs, "graph", report)

    if args.selfie is not None:
        from kyc.face.verify import FaceVerifier
        from kyc.liveness.passive import PassiveLiveness

        verifier = FaceVerifier()
        if args.id_image is not None:
            _set(inputs, "match", verifier.verify(args.id_image, args.selfie))
        live = PassiveLiveness(model_dir=args.pad_models).check(args.selfie)
        if "PAD_MODEL_UNAVAILABLE" in live.codes:
            msg = next(r.message for r in live.reasons if r.code == "PAD_MODEL_UNAVAILABLE")
            print(f"kyc decide: error [MODEL_UNAVAILABLE]: {msg}", file=sys.stderr)
            return _EXIT_MODEL
        _set(inputs, "liveness", live)
        if args.face_index is not None:
            inputs["duplicates"] = _search_duplicates(verifier, args.face_index, args.selfie)

    decision = decide(
        match=inputs.get("match"),
        liveness=inputs.get("liveness"),
        active=inputs.get("active"),
        graph=inputs.get("graph"),
        velocity=inputs.get("velocity"),
        duplicates=inputs.get("duplicates"),
        subject=inputs.get("subject"),
        policy=policy,
    )
    if args.json:
        print(decision.to_json(indent=2))
    else:
        print(decision.explain())
    return EXIT_CODES[decision.outcome]


def _search_duplicates(verifier: Any, index_path: str, selfie: str) -> list[Any] | None:
    from kyc.errors import MultipleFaces, NoFace
    from kyc.face.index import FaceIndex

    index = FaceIndex.load(index_path)
    try:
        template = verifier.represent(selfie)
    except (NoFace, MultipleFaces) as exc:
        print(f"kyc decide: duplicate search not run: {exc.message}", file=sys.stderr)
        return None
    hits: list[Any] = index.search(template.embedding, k=5)
    return hits
