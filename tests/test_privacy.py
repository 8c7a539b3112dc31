"""Nothing the library writes holds a raw identifier or a piece of a raw image.

One end-to-end run feeds raw identifiers (national ids, phones in several formats, emails,
device ids, card numbers, addresses, IPs) and raw photo bytes through the library: a
FraudGraph on a SQLite store (add, add_many with bad rows, mark_fraud, scan, rings,
reports, velocity, rescan), ring exports (JSON, HTML, SVG), ``kyc scan`` (JSON and CSV
outputs, HTML picture, its own store, its stdout/stderr), face verification and a
FaceIndex file, passive liveness, a decision (JSON and text), and the HTTP service when it
is installed. Then it searches every byte written: every file under the work folder
(stores with their ``-wal``/``-shm`` while open and after closing, exports, temporary
files: ``TMPDIR`` points into it), the log text captured at DEBUG, warnings, the CLI's
output, HTTP responses and every error message (``str``, ``repr`` and ``to_dict`` of each
``InvalidRecord``) for:

* each raw identifier in raw and normalised forms (lower/upper case, digits only, E.164
  with and without ``+``, JSON- and URL-escaped; in UTF-8 and UTF-16);
* any 32-byte window of the raw image bytes (windows that are mostly runs or short
  repeats are skipped: runs of zeros or 0xFF occur in any file). A self-test shows the
  search finds a planted window.

The second test checks that deleting a subject from a FaceIndex really removes its
templates from the saved file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import urllib.parse
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kyc.errors import InvalidRecord, KycError
from kyc.graph.identifiers import IdentifierHasher, IdKind

SECRET = "privacy-test-secret-0123456789abcdef"
WINDOW = 32
MIN_CHANGES = 16  # of 31: byte changes at lags 1, 2 and 4 in a window

# --- the raw data ----------------------------------------------------------------------------

PEOPLE: list[dict[str, Any]] = [
    {"applicant_id": "ZX-99812-Q", "device_id": "FARM-DEVICE-ALPHA-7781",
     "phones": ["(415) 555-2671"], "contact_phones": ["+1 212 555 0187"],
     "ip": "203.0.113.77", "address": "742 Evergreen Terrace, Springfield",
     "card": "4945 8073 0215 7365", "email": "homer.simpson+loans@example.net"},
    {"applicant_id": "AB123456789", "device_id": "FARM-DEVICE-ALPHA-7781",
     "phones": ["+44 20 7946 0321"], "contact_phones": ["(415) 555-2671"],
     "ip": "2001:db8:85a3::8a2e:370:7334", "address": "221B Baker Street, London",
     "card": "4945 8073 0215 7365", "email": "Sherlock.Holmes@GMail.com"},
    {"applicant_id": "QW-55501-Z", "device_id": "FARM-DEVICE-ALPHA-7781",
     "phones": ["+1 (646) 555-3344"], "contact_phones": ["+44 20 7946 0321"],
     "ip": "198.51.100.23", "address": "4 Privet Drive, Little Whinging",
     "card": "5819-3036-4262-1294", "email": "vernon.dursley@grunnings.example"},
    {"applicant_id": "MN-88277-K", "device_id": "ios-C0FFEE-BEEF-4242",
     "phones": ["650.555.7788"], "contact_phones": ["+1 646 555 3344"],
     "ip": "192.0.2.199", "address": "12 Grimmauld Place, Islington",
     "card": "5819-3036-4262-1294", "email": "sirius.black@order.example"},
    {"applicant_id": "TR-31415-P", "device_id": "android-DEADBEEF-9911",
     "phones": ["+33 1 42 68 53 00"], "contact_phones": [],
     "ip": "203.0.113.78", "address": "Straße des 17. Juni 135, Berlin-Müllerhausen",
     "card": "3797 220033 224531", "email": "jean.valjean@misérables.example"},
    {"applicant_id": "UV-27182-R", "device_id": "ios-C0FFEE-BEEF-4242",
     "phones": ["+1 415-555-9090"], "contact_phones": ["650 555 7788"],
     "ip": "::ffff:198.51.100.24", "address": "1600 Pennsylvania Avenue NW, Washington",
     "card": "4945807302157365", "email": "abe.lincoln@whitehouse.example"},
]
# invalid identifiers: their error messages must not echo them either
BAD: list[dict[str, Any]] = [
    {"phones": ["+1 999 000 KLMN 7777"]},
    {"email": "no-at-sign.evil-corp-9931.example"},
    {"card": "1234-5678-MOLE-9999"},
    {"ip": "300.400.500.6000"},
    {"contact_phones": ["00000-SECRET-PHONE-55"]},
]
EXTRA_WORDS = ["Evergreen", "Baker Street", "Privet", "Grimmauld", "Pennsylvania", "Springfield",
               "homer", "sherlock", "dursley", "valjean", "lincoln", "Müllerhausen"]


def _applications(t0: datetime) -> list[dict[str, Any]]:
    apps = []
    for i in range(24):
        p = PEOPLE[i % len(PEOPLE)]
        apps.append({"application_id": f"app-{i:03d}", "lender_id": f"L{i % 4}",
                     "lender_type": "nbank" if i % 3 else "bank",
                     "timestamp": t0 + timedelta(hours=i), "thin_file": i % 2 == 0, **p})
    return apps


def _bad_applications(t0: datetime) -> list[dict[str, Any]]:
    return [{"application_id": f"bad-{k}", "applicant_id": f"BAD-APPLICANT-{k}x99",
             "lender_id": "L9", "timestamp": t0, **bad} for k, bad in enumerate(BAD)]


def _forms(raw: str, normalised: str | None) -> set[str]:
    out = {raw, raw.strip(), raw.lower(), raw.upper(), raw.casefold()}
    if normalised:
        out |= {normalised, normalised.lower(), normalised.upper(), normalised.lstrip("+")}
    digits = "".join(c for c in raw if c.isdigit())
    if len(digits) >= 8:
        out |= {digits, digits[-10:], digits[-9:]}
    for text in list(out):
        out.add(json.dumps(text)[1:-1])  # JSON-escaped (non-ASCII as \\uXXXX)
        out.add(urllib.parse.quote(text))
        out.add(urllib.parse.quote_plus(text))
    return {f for f in out if len(f) >= 8 or (len(f) >= 6 and not f.isdigit())}


def needles(hasher: IdentifierHasher) -> set[str]:
    """Every raw and normalised form of every identifier the test feeds in."""
    kinds = {"applicant_id": IdKind.APPLICANT, "device_id": IdKind.DEVICE, "ip": IdKind.IP,
             "address": IdKind.ADDRESS, "card": IdKind.CARD, "email": IdKind.EMAIL}
    out: set[str] = set()
    for person in [*PEOPLE, *BAD]:
        for name, value in person.items():
            raws = value if isinstance(value, list) else [value]
            kind = kinds.get(name, IdKind.PHONE)
            for raw in raws:
                try:
                    norm: str | None = hasher.normalise(kind, raw)
                except InvalidRecord:
                    norm = None
                out |= _forms(raw, norm)
    for k in range(len(BAD)):
        out |= _forms(f"BAD-APPLICANT-{k}x99", None)
    out |= {w for word in EXTRA_WORDS for w in (word, word.lower(), word.upper())}
    return out


# --- searching ---------------------------------------------------------------------------------

_P = np.uint64(1099511628211)


def _window_hashes(data: bytes) -> np.ndarray:
    """Polynomial hash (mod 2^64) of every WINDOW-byte window of ``data``."""
    b = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    n = b.size - WINDOW + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(WINDOW):
            h = h * _P + b[k : k + n]
    return h


def _informative(arr: np.ndarray) -> np.ndarray:
    """Start offsets of the windows that are not runs or short repeats (cheap, O(n))."""
    n = arr.size - WINDOW + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    scores = []
    for lag in (1, 2, 4):
        changes = np.concatenate([[0], np.cumsum(arr[lag:] != arr[:-lag])])
        scores.append(changes[np.arange(n) + WINDOW - lag] - changes[:n])
    return np.flatnonzero(np.minimum.reduce(scores) >= MIN_CHANGES)


@dataclass
class ImageNeedles:
    """All informative 32-byte windows of the raw images, hashed for a fast search."""

    images: list[bytes]
    hashes: np.ndarray = field(init=False)
    image_of: np.ndarray = field(init=False)
    offset_of: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        hashes, images, offsets = [], [], []
        for k, data in enumerate(self.images):
            ok = _informative(np.frombuffer(data, dtype=np.uint8))
            hashes.append(_window_hashes(data)[ok])
            images.append(np.full(ok.size, k))
            offsets.append(ok)
        h = np.concatenate(hashes)
        order = np.argsort(h, kind="stable")
        self.hashes = h[order]
        self.image_of = np.concatenate(images)[order]
        self.offset_of = np.concatenate(offsets)[order]

    def find(self, blob: bytes) -> list[str]:
        """Where a window of a raw image occurs in ``blob`` (hash hits confirmed byte-wise)."""
        hs = _window_hashes(blob)
        lo = np.searchsorted(self.hashes, hs, side="left")
        hi = np.searchsorted(self.hashes, hs, side="right")
        found = []
        for pos in np.flatnonzero(hi > lo).tolist():
            for j in range(int(lo[pos]), int(hi[pos])):
                k, i = int(self.image_of[j]), int(self.offset_of[j])
                if blob[pos : pos + WINDOW] == self.images[k][i : i + WINDOW]:
                    found.append(f"image {k} bytes {i}..{i + WINDOW} at offset {pos}")
        return found


def _encodings(text: str) -> Iterator[bytes]:
    yield text.encode("utf-8")
    yield text.encode("utf-16-le")
    yield text.encode("utf-32-le")  # numpy's str arrays (the FaceIndex file)


class Search:
    """Collects what the library wrote and looks for the needles in it."""

    def __init__(self, raw: set[str], images: ImageNeedles) -> None:
        self.raw = sorted(raw)
        self.images = images
        self.texts: dict[str, str] = {}
        self.blobs: dict[str, bytes] = {}

    def text(self, name: str, value: Any) -> None:
        self.texts[name] = value if isinstance(value, str) else json.dumps(value, default=str)

    def files(self, root: Path, tag: str, skip: Iterable[Path] = ()) -> int:
        skipped = [s.resolve() for s in skip]
        n = 0
        for path in sorted(root.rglob("*")):
            if not path.is_file() or any(s in path.resolve().parents for s in skipped):
                continue
            self.blobs[f"{tag}:{path.relative_to(root)}"] = path.read_bytes()
            n += 1
        return n

    def problems(self) -> list[str]:
        out = []
        items = [(k, v.encode("utf-8", "surrogatepass")) for k, v in self.texts.items()]
        for name, blob in [*self.blobs.items(), *items]:
            for needle in self.raw:
                for enc in _encodings(needle):
                    if enc in blob:
                        out.append(f"raw identifier form {needle!r} in {name}")
            for where in self.images.find(blob)[:3]:
                out.append(f"{where} in {name}")
        return out


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pad_models(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kyc.models.registry import build_model, model_spec

    out = tmp_path_factory.mktemp("pad_models")
    for name in ("minifasnet_v2", "minifasnet_v1se"):
        src = model_dir / model_spec(str(model_spec(name).build_from)).filename
        if not src.is_file():
            pytest.skip(f"MiniFASNet source {src} not found")
        build_model(name, source=src, dest=out)
    return out


@pytest.fixture(scope="module")
def photos(data_dir: Path) -> list[bytes]:
    ex = data_dir / "faces" / "face_recognition_examples" / "examples"
    files = [ex / "obama.jpg", ex / "obama2.jpg", ex / "biden.jpg"]
    if not all(f.is_file() for f in files):
        pytest.skip("sample photos not found")
    return [f.read_bytes() for f in files]


@pytest.fixture(scope="module")
def photo_needles(photos: list[bytes]) -> ImageNeedles:
    return ImageNeedles(photos)


def test_search_finds_planted_data(photos: list[bytes], photo_needles: ImageNeedles) -> None:
    """Self-test: the search below is not vacuous."""
    hasher = IdentifierHasher(SECRET)
    search = Search(needles(hasher), photo_needles)
    search.blobs["planted_image"] = b"\x00" * 100 + photos[1][5000:5032] + b"\x00" * 100
    search.text("planted_phone", {"x": "+14155552671"})
    search.text("planted_address", "row 3: 742 evergreen terrace")
    search.blobs["clean"] = os.urandom(200_000)
    found = search.problems()
    assert any("image 1 bytes 5000..5032" in f for f in found)
    assert any("4155552671" in f for f in found)
    assert any("evergreen" in f for f in found)
    assert not any("clean" in f for f in found)


# --- the end-to-end run ------------------------------------------------------------------------


def test_no_raw_identifier_or_image_bytes_in_anything_written(
    tmp_path: Path, model_dir: Path, pad_models: Path, photos: list[bytes],
    photo_needles: ImageNeedles, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kyc.cli import main as cli_main
    from kyc.decision import decide
    from kyc.face.index import FaceIndex
    from kyc.face.verify import FaceVerifier
    from kyc.graph.fraudgraph import FraudGraph
    from kyc.graph.records import Application, hash_application, read_applications
    from kyc.graph.render import render_ring, ring_html, ring_svg
    from kyc.graph.store import SQLiteStore
    from kyc.liveness.passive import PassiveLiveness

    root = tmp_path / "work"
    inputs = tmp_path / "inputs"  # what the test itself writes (raw CSV): not searched
    for d in (root, inputs, root / "tmp"):
        d.mkdir()
    monkeypatch.setenv("TMPDIR", str(root / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(root / "tmp"))
    monkeypatch.setenv("KYC_HMAC_SECRET", SECRET)
    monkeypatch.chdir(root)
    caplog.set_level(logging.DEBUG)
    hasher = IdentifierHasher(SECRET)
    search = Search(needles(hasher), photo_needles)
    errors: list[KycError] = []
    t0 = datetime(2024, 5, 1, 9, tzinfo=timezone.utc)
    apps = _applications(t0)
    bad = _bad_applications(t0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # graph on a SQLite store
        store = SQLiteStore(root / "graph.db")
        graph = FraudGraph(SECRET, store=store)
        reports = [graph.add(a).to_dict() for a in apps[:12]]
        for b in bad:
            with pytest.raises(InvalidRecord) as info:
                graph.add(b)
            errors.append(info.value)
        batch = graph.add_many([*apps[12:], *bad])
        assert len(batch.errors) == len(bad) and batch.added == len(apps) - 12
        errors.extend(batch.errors)
        search.text("batch", batch.to_dict())
        graph.mark_fraud([PEOPLE[0]["applicant_id"]])
        rings = graph.scan()
        assert rings and any(r.flagged for r in rings), "the planted ring was not found"
        assert [r.to_dict() for r in graph.rings()] == [r.to_dict() for r in rings]
        reports += [graph.report(p["applicant_id"]).to_dict() for p in PEOPLE]
        search.text("reports", reports)
        search.text("velocity", [graph.velocity(p["applicant_id"]) for p in PEOPLE])
        search.text("rescan", graph.rescan(PEOPLE[1]["applicant_id"], t0).to_dict())
        search.text("summary", graph.summary())
        search.text("repr", [repr(graph), repr(store),
                             [repr(Application.from_mapping(a)) for a in apps]])
        (root / "rings.json").write_text(json.dumps([r.to_dict() for r in rings]))
        (root / "ring.html").write_text(ring_html(rings[0]))
        (root / "ring.svg").write_text(ring_svg(rings[0]))
        render_ring(rings[0], root / "ring_rendered.html")

        # kyc scan on a raw CSV (with the bad rows), to JSON and CSV, with a store and picture
        csv_path = inputs / "apps.csv"
        _write_csv(csv_path, [*apps, *bad])
        loaded = read_applications(csv_path)
        for app in loaded.applications:  # identifier formats are checked when hashing
            try:
                hash_application(app, hasher)
            except InvalidRecord as exc:
                errors.append(exc)
        assert len(errors) == 3 * len(bad)
        for out in ("scan.json", "scan.csv"):
            code = cli_main(["scan", str(csv_path), "--out", str(root / out), "--all",
                             "--store", str(root / f"{out}.db"), "--picture",
                             str(root / f"{out}.html"), "--quiet"])
            assert code == 0
        cli = capsys.readouterr()
        assert "bad" in cli.out and "row" in cli.err  # it did report the bad rows
        search.text("cli_stdout", cli.out)
        search.text("cli_stderr", cli.err)

        # faces: raw photo bytes in, result JSON, template index file
        verifier = FaceVerifier()
        match = verifier.verify(photos[0], photos[1])
        assert match.status == "match"
        search.text("match", match.to_dict())
        index = FaceIndex(embedder="dlib_resnet_v1")
        for k, photo in enumerate(photos):
            index.add(hasher.token(IdKind.APPLICANT, PEOPLE[k]["applicant_id"]),
                      verifier.represent(photo).embedding)
        index.save(root / "faces.npz")
        hits = index.search(verifier.represent(photos[1]).embedding, k=3)
        search.text("hits", [h.to_dict() for h in hits])

        # passive liveness on the raw bytes, then the decision
        liveness = PassiveLiveness(model_dir=pad_models).check(photos[1])
        search.text("liveness", liveness.to_dict())
        applicant = graph.report(PEOPLE[0]["applicant_id"])
        decision = decide(match=match, liveness=liveness, graph=applicant, duplicates=hits)
        (root / "decision.json").write_text(decision.to_json(indent=1))
        search.text("decision_text", decision.explain())

        # the store files while open (WAL and shared memory are there), then after closing
        assert (root / "graph.db-wal").is_file()
        assert search.files(root, "open") >= 12
        graph.close()
        store.close()
        search.files(root, "closed")
    search.text("warnings", [str(w.message) for w in caught])
    for err in errors:
        search.text(f"error {len(search.texts)}", [str(err), repr(err), err.to_dict()])
    search.text("log", caplog.text)
    search.text("log_records", [r.getMessage() for r in caplog.records])

    # non-vacuous: the tokens are there, and the photos really went through
    token = hasher.token(IdKind.DEVICE, PEOPLE[0]["device_id"])
    assert any(token.encode() in blob for blob in search.blobs.values())
    size = sum(len(b) for b in search.blobs.values())
    print(f"searched {len(search.blobs)} files ({size} bytes): {sorted(search.blobs)}; "
          f"{len(search.texts)} texts; {len(search.raw)} identifier forms")
    problems = search.problems()
    assert not problems, "\n".join(problems[:30])


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    from kyc.graph.records import CSV_COLUMNS

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            cells = []
            for c in CSV_COLUMNS:
                v = r.get(c)
                if isinstance(v, list):
                    v = "|".join(v)
                elif isinstance(v, datetime):
                    v = v.isoformat()
                elif isinstance(v, bool):
                    v = "1" if v else "0"
                cells.append("" if v is None else str(v))
            w.writerow(cells)


def test_service_leaks_nothing(tmp_path: Path, model_dir: Path, pad_models: Path,
                               photos: list[bytes], photo_needles: ImageNeedles,
                               caplog: pytest.LogCaptureFixture,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("python_multipart")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from kyc.service.app import ServiceConfig, create_app

    root = tmp_path / "svc"
    (root / "tmp").mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(root / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(root / "tmp"))
    caplog.set_level(logging.DEBUG)
    token = "privacy-service-token-0123456789"
    config = ServiceConfig(tokens=(token,), secret=SECRET, graph_store=str(root / "svc.db"),
                           pad_model_dir=str(pad_models), rate_per_s=1000.0, burst=1000)
    hasher = IdentifierHasher(SECRET)
    search = Search(needles(hasher), photo_needles)
    auth = {"Authorization": f"Bearer {token}"}
    t0 = datetime(2024, 5, 1, 9, tzinfo=timezone.utc)
    bodies = []
    with TestClient(create_app(config)) as client:
        for app in [*_applications(t0)[:12], *_bad_applications(t0)]:
            payload = {k: (v.isoformat() if isinstance(v, datetime) else v)
                       for k, v in app.items()}
            r = client.post("/v1/applications", json=payload, headers=auth)
            assert r.status_code in (200, 400), r.text
            bodies.append(r.text)
        for p in PEOPLE:
            quoted = urllib.parse.quote(p["applicant_id"], safe="")
            r = client.get(f"/v1/applicants/{quoted}/report", headers=auth)
            assert r.status_code == 200
            bodies.append(r.text)
        r = client.post("/v1/verify", headers=auth,
                        files={"id_image": ("id.jpg", photos[0], "image/jpeg"),
                               "selfie": ("selfie.jpg", photos[1], "image/jpeg")})
        assert r.status_code == 200 and r.json()["status"] == "match"
        bodies.append(r.text)
        r = client.post("/v1/liveness", headers=auth,
                        files={"image": ("selfie.jpg", photos[1], "image/jpeg")})
        assert r.status_code == 200
        bodies.append(r.text)
        assert search.files(root, "open") >= 1
    search.files(root, "closed")
    search.text("responses", bodies)
    # the service's own logs (the test client's httpx logs print the URLs it requested)
    search.text("log", [f"{r.name}: {r.getMessage()}" for r in caplog.records
                        if not r.name.startswith(("httpx", "httpcore"))])
    assert any(b'"status":"match"' in b.encode() for b in bodies)
    problems = search.problems()
    assert not problems, "\n".join(problems[:30])


# --- biometric templates -----------------------------------------------------------------------


def test_face_index_remove_deletes_the_templates_from_the_saved_file(
    tmp_path: Path, model_dir: Path, photos: list[bytes]
) -> None:
    from kyc.face.index import FaceIndex
    from kyc.face.verify import FaceVerifier

    verifier = FaceVerifier()
    emb = [verifier.represent(p).embedding for p in photos]
    index = FaceIndex(embedder="dlib_resnet_v1")
    index.add("subject-obama", emb[0])
    index.add("subject-biden", emb[2])
    index.add("subject-obama", emb[1])  # a second template of the same subject
    stored_obama = index.templates("subject-obama")  # the unit vectors as stored
    stored_biden = index.templates("subject-biden")
    assert stored_obama.shape == (2, emb[0].size)
    path = tmp_path / "index.npz"
    index.save(path)
    before = path.read_bytes()
    obama = ImageNeedles([row.tobytes() for row in stored_obama])  # every 32-byte window
    assert obama.find(before), "the templates are not in the file: the check is vacuous"
    assert b"subject-obama" in before.replace(b"\x00", b"") or "subject-obama".encode(
        "utf-32-le") in before

    assert index.remove("subject-obama") == 2
    index.save(path)
    after = path.read_bytes()
    assert not obama.find(after), "deleted templates are still in the saved index"
    assert "subject-obama".encode("utf-32-le") not in after
    assert b"subject-obama" not in after
    assert ImageNeedles([stored_biden.tobytes()]).find(after)  # the other subject is kept
    assert not list(tmp_path.glob(".index.npz.*"))  # no temporary file left behind
    loaded = FaceIndex.load(path)
    assert "subject-obama" not in loaded and len(loaded) == 1
    assert all(h.subject_id != "subject-obama" for h in loaded.search(emb[0], k=5))
    # in memory too: the freed rows were overwritten
    assert not obama.find(np.ascontiguousarray(index._vectors).tobytes())
