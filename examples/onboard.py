"""Onboard a handful of applicants end to end and print each decision with its reasons.

Each applicant brings an ID photo, a selfie and an application record. For each one the
script runs the 1:1 face match (ID vs selfie), passive liveness on the selfie, adds the
application to an in-memory applicant graph (identifiers are HMAC-hashed first) and asks
:func:`kyc.decide` for approve / review / reject under the shipped policy for a
thin-file consumer lender.

The applicants (photos from ``$KYC_DATA_DIR``, default ``../shared/data``):

* A-1001: a genuine applicant (two photos of the same man);
* A-1002: an impostor (someone else's ID photo);
* A-1003: a replay attack (the selfie is a photo of a tablet showing a face);
* A-1004 and A-1005: two genuine people who apply from the same phone (same device id) and
  give each other's number as their emergency contact: the graph links them.

Run from the repository root::

    python examples/onboard.py

Models come from ``$KYC_MODEL_DIR`` (default ``../shared/models``) or the user cache. When
the MiniFASNet ONNX files for liveness are not built yet, they are built from the ``.pth``
sources into a temporary folder for this run (``kyc models build`` does it for good).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KYC_DATA_DIR") or ROOT.parent / "shared" / "data")
if not os.environ.get("KYC_MODEL_DIR") and (ROOT.parent / "shared" / "models").is_dir():
    os.environ["KYC_MODEL_DIR"] = str(ROOT.parent / "shared" / "models")

import kyc  # noqa: E402
from kyc.errors import ModelError  # noqa: E402

FACES = DATA / "faces"
EXAMPLES = FACES / "face_recognition_examples" / "examples"
CELEBS = FACES / "celebrities13"
PAD = DATA / "pad" / "silent_face_samples" / "images" / "sample"
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
SHARED_PHONE = "farm-phone-7f3a"  # the device id two applicants share


@dataclass
class Applicant:
    """One onboarding: who, what they show, and the application they file."""

    applicant_id: str
    story: str
    id_photo: Path
    selfie: Path
    record: dict[str, Any]


def applicants() -> list[Applicant]:
    """The five applicants of this example."""

    def record(i: int, applicant_id: str, **extra: Any) -> dict[str, Any]:
        return {
            "application_id": f"APP-{i:04d}",
            "applicant_id": applicant_id,
            "lender_id": "demo-lender",
            "lender_type": "consumer",
            "timestamp": (T0 + timedelta(minutes=7 * i)).isoformat(),
            "thin_file": True,
            **extra,
        }

    return [
        Applicant("A-1001", "genuine: ID and selfie of the same man", EXAMPLES / "obama.jpg",
                  EXAMPLES / "obama-720p.jpg",
                  record(1, "A-1001", device_id="dev-1001", phones=["+1 202 555 0101"],
                         email="a1001@example.org")),
        Applicant("A-1002", "impostor: someone else's ID photo", EXAMPLES / "obama2.jpg",
                  EXAMPLES / "biden.jpg",
                  record(2, "A-1002", device_id="dev-1002", phones=["+1 202 555 0102"])),
        Applicant("A-1003", "replay attack: the selfie is a tablet showing a face",
                  PAD / "image_T1.jpg", PAD / "image_F2.jpg",
                  record(3, "A-1003", device_id="dev-1003", phones=["+1 202 555 0103"])),
        Applicant("A-1004", "genuine, but applies from a phone shared with A-1005",
                  CELEBS / "img20.jpg", CELEBS / "img21.jpg",
                  record(4, "A-1004", device_id=SHARED_PHONE, phones=["+1 202 555 0104"],
                         contact_phones=["+1 202 555 0105"])),
        Applicant("A-1005", "genuine, but applies from a phone shared with A-1004",
                  CELEBS / "img22.jpg", CELEBS / "img23.jpg",
                  record(5, "A-1005", device_id=SHARED_PHONE, phones=["+1 202 555 0105"],
                         contact_phones=["+1 202 555 0104"])),
    ]


def liveness_engine(workdir: Path) -> kyc.PassiveLiveness:
    """A loaded PassiveLiveness; builds the ONNX files into ``workdir`` when missing."""
    try:
        return kyc.PassiveLiveness().load()
    except ModelError:
        from kyc.liveness.passive import MODEL_SCALES
        from kyc.models.registry import build_model

        for name in MODEL_SCALES:
            build_model(name, dest=workdir)
        print(f"(built the MiniFASNet ONNX files into {workdir} for this run)\n")
        return kyc.PassiveLiveness(model_dir=workdir).load()


def evidence_line(name: str, data: dict[str, Any]) -> str:
    """One line per check: what was measured against what."""
    if name == "face":
        op = "<=" if data["is_match"] else ">"
        return (f"face match      {data['status']:<9} distance {data['score']:.3f} {op} "
                f"{data['threshold']:.3f} (FMR {data['fmr_target']:g})")
    if name == "liveness":
        if data["score"] is None:
            return f"liveness        {data['status']}"
        op = ">=" if data["is_live"] else "<"
        return (f"liveness        {data['status']:<9} score {data['score']:.3f} {op} "
                f"{data['threshold']:.2f} (APCER {data['apcer_target']:g})")
    links = ", ".join(sorted({kind for link in data["links"] for _, kind in link["identifiers"]}))
    return (f"graph           {'flagged' if data['flagged'] else 'clear':<9} linked to "
            f"{data['component_size'] - 1 if data['component_size'] else 0} other applicant(s)"
            + (f" via {links}" if links else "") + f", score {data['score']:.2f}")


def main() -> int:
    """Onboard every applicant; returns 0 (1 when the data folder is missing)."""
    if not FACES.is_dir():
        print(f"data folder not found: {DATA} (set KYC_DATA_DIR)", file=sys.stderr)
        return 1
    secret = os.environ.get("KYC_HMAC_SECRET", "example-deployment-secret-0123456789")
    with tempfile.TemporaryDirectory(prefix="kyc-onboard-") as tmp:
        verifier = kyc.FaceVerifier()
        pad = liveness_engine(Path(tmp))
        graph = kyc.FraudGraph(secret=secret)  # in memory; pass store="graph.db" to keep it
        outcomes: dict[str, str] = {}
        for person in applicants():
            match = verifier.verify(person.id_photo, person.selfie)
            live = pad.check(person.selfie)
            report = graph.add(person.record)
            decision = kyc.decide(match=match, liveness=live, graph=report)
            outcomes[person.applicant_id] = decision.outcome
            print(f"{person.applicant_id}  {person.story}")
            print(f"  ID photo {person.id_photo.name}, selfie {person.selfie.name}")
            print(f"  {evidence_line('face', match.to_dict())}")
            print(f"  {evidence_line('liveness', live.to_dict())}")
            print(f"  {evidence_line('graph', report.to_dict())}")
            print(f"  DECISION: {decision.outcome.upper()}"
                  f"   (policy {decision.policy['name']} {decision.policy['version']})")
            for r in decision.reasons:
                print(f"    {r.action:<7} {r.source:<9} {r.code}")
            print()
        # Before paying out, look again: later applications may have linked an applicant to
        # others (A-1004 looked clear when it applied; A-1005 then shared its phone).
        print("re-check before payout (the graph as it is now):")
        for person in applicants():
            now = graph.report(person.applicant_id)
            if now.component_size > 1:
                shared = sorted({f"{kind} {token.split(':')[1][:8]}"
                                 for link in now.links for token, kind in link.identifiers})
                print(f"  {person.applicant_id}: linked to {now.component_size - 1} other "
                      f"applicant(s) through {', '.join(shared)} (hashed tokens)")
        print()
        print("summary: " + ", ".join(f"{k} {v}" for k, v in outcomes.items()))
        graph.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
