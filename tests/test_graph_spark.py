"""The Spark backend gives exactly the local backend's results (local mode, ``local[2]``).

One session-scoped SparkSession serves every test; the 10^4-application pipeline runs once
per module and each stage (tokens, pairs, components, rings, velocity) is compared with the
single-machine path on the same data. Skipped with a reason when pyspark or Java is missing.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pyspark = pytest.importorskip("pyspark", reason="pyspark not installed: pip install 'kyc[spark]'")

if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Java is not installed (pyspark needs Java 17)", allow_module_level=True)

from kyc.errors import ConfigError  # noqa: E402
from kyc.graph.build import GraphConfig, build_graph, candidate_pairs, linked_components  # noqa: E402
from kyc.graph.fraudgraph import FraudGraph  # noqa: E402
from kyc.graph.identifiers import IdentifierHasher  # noqa: E402
from kyc.graph.records import HashedApplication, hash_application  # noqa: E402
from kyc.graph.spark import (  # noqa: E402
    HashedFrames,
    SparkScan,
    applicant_velocity,
    hash_applications,
    ring_features,
    scan_applications,
    spark_scan,
    spark_session,
    velocity_features,
)
from kyc.graph.spark_components import connected_components, has_graphframes  # noqa: E402
from kyc.graph.synth import generate, write_csv  # noqa: E402
from kyc.graph.velocity import WINDOWS, VelocityIndex  # noqa: E402

SECRET = b"spark-parity-test-secret-0123456789"

pytestmark = pytest.mark.filterwarnings(
    "ignore:PySpark does not yet fully support pandas:FutureWarning")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] session for every Spark test (small shuffles, no UI, quiet logs)."""
    session = spark_session("local[2]", shuffle_partitions=2, app_name="kyc-tests")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def hasher() -> IdentifierHasher:
    return IdentifierHasher(SECRET)


@pytest.fixture(scope="module")
def data10k(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    ds = generate(10_000, seed=11)
    path = write_csv(ds, tmp_path_factory.mktemp("spark") / "apps10k.csv")
    return ds, path


@pytest.fixture(scope="module")
def local10k(data10k: tuple[Any, Path], hasher: IdentifierHasher) -> dict[str, Any]:
    ds, path = data10k
    hashed = [hash_application(a, hasher) for a in ds.applications]
    g = build_graph(hashed)
    pairs = candidate_pairs(g)
    labels = linked_components(g, pairs)
    fg = FraudGraph(hasher)
    fg.add_many(path)
    return {"hashed": hashed, "graph": g, "pairs": pairs, "labels": labels, "rings": fg.scan()}


@pytest.fixture(scope="module")
def spark10k(
    spark: Any, data10k: tuple[Any, Path], hasher: IdentifierHasher
) -> Iterator[tuple[HashedFrames, SparkScan]]:
    _, path = data10k
    hf = hash_applications(path, hasher, spark=spark)
    run = spark_scan(hf, config=GraphConfig(), algorithm="builtin")
    yield hf, run
    run.unpersist()
    hf.unpersist()


def _partition(groups: dict[Any, set[str]]) -> set[frozenset[str]]:
    return {frozenset(g) for g in groups.values() if len(g) > 1}


# --- stage by stage on 10^4 applications ----------------------------------------------------


def test_spark_tokens_are_byte_identical_to_local_hashing(
    spark10k: tuple[HashedFrames, SparkScan], local10k: dict[str, Any]
) -> None:
    hf, _ = spark10k
    got = hf.to_hashed()
    assert len(got) == 10_000
    assert got == local10k["hashed"]  # same order (input order), same tokens, same links
    assert hf.summary() == {"rows": 10_000, "applications": 10_000, "duplicates": 0,
                            "errors": 0}


def test_spark_candidate_pairs_equal_local_pair_table(
    spark10k: tuple[HashedFrames, SparkScan], local10k: dict[str, Any]
) -> None:
    _, run = spark10k
    g, p = local10k["graph"], local10k["pairs"]
    names = g.applicants
    want = {}
    for a, b, ev, w, n, lk in zip(p.a.tolist(), p.b.tolist(), p.evidence.tolist(),
                                  p.weight_units.tolist(), p.n_shared.tolist(),
                                  p.linked.tolist(), strict=True):
        x, y = sorted((names[a], names[b]))
        want[(x, y)] = (ev, w, n, lk)
    got = {(r["a"], r["b"]): (r["evidence"], r["weight_units"], r["n_shared"], r["linked"])
           for r in run.pairs.collect()}
    assert len(want) > 10_000 and sum(v[3] for v in want.values()) > 1_000
    assert got == want


def test_spark_components_equal_local_components(
    spark10k: tuple[HashedFrames, SparkScan], local10k: dict[str, Any]
) -> None:
    _, run = spark10k
    g, labels = local10k["graph"], local10k["labels"]
    local: dict[int, set[str]] = {}
    for name, c in zip(g.applicants, labels.tolist(), strict=True):
        local.setdefault(c, set()).add(name)
    dist: dict[int, set[str]] = {}
    sizes: dict[int, int] = {}
    for r in run.components.collect():
        dist.setdefault(r["component"], set()).add(r["applicant"])
        sizes[r["component"]] = r["size"]
    assert _partition(dist) == _partition(local)
    assert all(sizes[c] == len(m) for c, m in dist.items())
    assert run.components_run.algorithm == "builtin"
    assert 1 <= run.components_run.iterations <= 20


def test_spark_rings_equal_local_rings(
    spark10k: tuple[HashedFrames, SparkScan], local10k: dict[str, Any]
) -> None:
    _, run = spark10k
    want = local10k["rings"]
    assert len(want) > 100 and any(r.flagged for r in want)
    assert [r.to_dict() for r in run.rings] == [r.to_dict() for r in want]
    assert run.stats["ring_candidates"] == len(want)


def test_ring_features_same_through_apply_in_pandas(
    spark10k: tuple[HashedFrames, SparkScan],
) -> None:
    hf, run = spark10k
    args = (hf.applications, run.edges, run.components, GraphConfig())
    batched = ring_features(*args).collect()
    grouped = ring_features(*args, batched=False).collect()
    assert len(batched) == run.stats["ring_candidates"]
    assert sorted((r["component"], r["ring_id"], bytes(r["features"])) for r in batched) == \
        sorted((r["component"], r["ring_id"], bytes(r["features"])) for r in grouped)


def test_spark_window_counts_equal_velocity_index(
    spark: Any, spark10k: tuple[HashedFrames, SparkScan], local10k: dict[str, Any]
) -> None:
    hf, _ = spark10k
    hashed: list[HashedApplication] = local10k["hashed"]
    idx = VelocityIndex()
    idx.add_many(hashed)
    rng = random.Random(5)
    # queries on window edges: at = ts (counted), ts + w - 1 (counted), ts + w (not counted)
    by_key: dict[str, list[tuple[str, int]]] = {"id": [], "cell": [], "device": []}
    for h in rng.sample(hashed, 120):
        w = rng.choice(list(WINDOWS.values()))
        ats = (h.ts, h.ts + w - 1, h.ts + w)
        by_key["id"].extend((h.applicant, at) for at in ats)
        for role, tok in h.links:
            key = {"phone": "cell", "device": "device"}.get(role)
            if key:
                by_key[key].extend((tok, at) for at in ats)
    by_key["id"].append(("applicant:" + "0" * 32, hashed[0].ts))  # unknown token: zeros
    phone_use: dict[str, int] = {}
    for h in hashed:
        for tok in h.tokens("phone"):
            phone_use[tok] = phone_use.get(tok, 0) + 1
    busy = max(phone_use, key=lambda t: (phone_use[t], t))  # a shared phone, many lenders
    by_key["cell"].extend((busy, h.ts) for h in hashed if busy in h.tokens("phone"))
    checked = 0
    types = None  # the first call finds the lender types itself; the others are given them
    for key, queries in by_key.items():
        q = spark.createDataFrame(queries, "token string, at long")
        rows = velocity_features(hf.applications, key, q,  # type: ignore[arg-type]
                                 lender_types=types).collect()
        types = idx.lender_types
        assert len(rows) == len(set(queries))
        for r in rows:
            d = r.asDict()
            want = idx.features(key, d.pop("token"), d.pop("at"))
            assert d == want
            checked += 1
    assert checked > 500
    # per applicant (id + busiest own phone and device) at one time for everyone
    at = int(np.median([h.ts for h in hashed]))
    rows = applicant_velocity(hf.applications, at).collect()
    assert len(rows) == len({h.applicant for h in hashed})
    nonzero = 0
    for r in rows:
        d = r.asDict()
        applicant = d.pop("applicant")
        assert d.pop("at") == at
        want = idx.applicant_features(applicant, at)
        assert list(d) == list(want)
        assert d == want
        nonzero += any(d.values())
    assert nonzero > 1_000


# --- the one-call API, errors, duplicates, fraud labels, formats ------------------------------


def _messy_rows(n: int, seed: int) -> tuple[list[dict[str, str]], list[str]]:
    ds = generate(n, seed=seed)
    rows = list(ds.to_records())
    rows[3] = {**rows[3], "phones": "not a phone"}        # hashing error (field phones)
    rows[10] = {**rows[10], "applicant_id": ""}          # missing id
    rows[11] = {**rows[11], "timestamp": "yesterday"}     # bad time
    rows[12] = {**rows[12], "lender_type": "all"}         # reserved type
    rows.append(dict(rows[20]))                            # exact duplicate
    rows.append({**rows[21], "lender_id": "L-other"})      # same id, other content: ignored
    ring = next(iter(ds.rings.values()))
    return rows, sorted(ring)[:2]


def test_scan_applications_backends_agree_on_messy_input(
    spark: Any, tmp_path: Path, hasher: IdentifierHasher
) -> None:
    import pandas as pd

    rows, fraud = _messy_rows(1_500, seed=4)
    frame = pd.DataFrame(rows)
    csv_path = tmp_path / "messy.csv"
    frame.to_csv(csv_path, index=False)
    with csv_path.open("a", encoding="utf-8") as fh:    # a row with too many fields
        fh.write("zz1,P-zz,L1,bank,2024-03-01T00:00:00+00:00,,,,,,,,,extra\n")
    local = scan_applications(csv_path, secret=hasher, fraud=fraud)
    dist = scan_applications(csv_path, secret=hasher, fraud=fraud, spark=spark)
    assert (local.backend, dist.backend) == ("local", "spark")
    assert [r.to_dict() for r in dist.rings] == [r.to_dict() for r in local.rings]
    assert any(r.known_fraud for r in local.rings)
    assert [(e.row, e.field) for e in dist.errors] == [(e.row, e.field) for e in local.errors]
    assert [(e.row, e.field) for e in local.errors] == [
        (3, "phones"), (10, "applicant_id"), (11, "timestamp"), (12, "lender_type"),
        (1_502, None)]
    for k in ("rows", "applications", "duplicates"):
        assert getattr(dist, k) == getattr(local, k), k
    assert (local.rows, local.applications, local.duplicates) == (1_503, 1_496, 2)
    # an in-memory pandas frame goes through the same parser on both backends: same messages
    local_pd = FraudGraph(hasher).add_many(frame)
    dist_pd = hash_applications(frame, hasher, spark=spark)
    assert [e.to_dict() for e in dist_pd.errors()] == [e.to_dict() for e in local_pd.errors]
    assert dist_pd.summary() == {"rows": 1_502, "applications": 1_496, "duplicates": 2,
                                 "errors": 4}
    kept = {h.application_id: h for h in dist_pd.to_hashed()}
    assert len(kept) == 1_496 and kept[rows[21]["application_id"]].lender_id != "L-other"


def test_parquet_and_spark_dataframe_inputs_hash_like_local(
    spark: Any, tmp_path: Path, hasher: IdentifierHasher
) -> None:
    import pandas as pd

    ds = generate(800, seed=9)
    cols = ds.applications_columns()
    frame = pd.DataFrame({k: ([list(v) for v in vals] if k.endswith("phones") else vals)
                          for k, vals in cols.items()})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    path = tmp_path / "apps.parquet"
    frame.to_parquet(path, index=False)
    want = [hash_application(a, hasher) for a in ds.applications]
    got = hash_applications(path, hasher, spark=spark).to_hashed()
    assert got == want
    sdf = spark.read.parquet(str(path))
    local = scan_applications(path, secret=hasher)
    dist = scan_applications(sdf, secret=hasher)  # a Spark DataFrame selects the backend
    assert dist.backend == "spark"
    assert [r.to_dict() for r in dist.rings] == [r.to_dict() for r in local.rings]


# --- components algorithm -----------------------------------------------------------------


def test_builtin_components_match_scipy_and_cap_raises(spark: Any) -> None:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_cc

    rng = np.random.default_rng(3)
    n = 1_500
    a = rng.integers(0, n, 1_300)
    b = rng.integers(0, n, 1_300)
    chain = np.arange(0, 200)  # a long path needs several rounds
    a = np.r_[a, chain[:-1], 5, 5]
    b = np.r_[b, chain[1:], 5, 6]  # a self-loop and a repeated edge
    edges = spark.createDataFrame(list(zip(a.tolist(), b.tolist(), strict=True)),
                                  "src long, dst long")
    res = connected_components(edges, algorithm="builtin", max_iter=50)
    got: dict[int, set[int]] = {}
    for r in res.labels.collect():
        got.setdefault(r["component"], set()).add(r["id"])
        assert r["component"] <= r["id"]  # labelled by its smallest node
    m = coo_matrix((np.ones(a.size), (a, b)), shape=(n, n))
    _, lab = scipy_cc(m, directed=False)
    touched = set(a.tolist()) | set(b.tolist())
    want: dict[int, set[int]] = {}
    for node in touched:
        want.setdefault(int(lab[node]), set()).add(node)
    assert {frozenset(s) for s in got.values()} == {frozenset(s) for s in want.values()}
    assert res.nodes == len(touched) and res.iterations >= 2
    with pytest.raises(ConfigError, match="did not converge"):
        connected_components(edges, algorithm="builtin", max_iter=1)


def test_graphframes_path_is_detected_safely(spark: Any) -> None:
    # the jar cannot be fetched here: detection says no and asking for it explains why
    assert has_graphframes(spark) is False
    edges = spark.createDataFrame([(1, 2)], "src long, dst long")
    with pytest.raises(ConfigError, match=r"spark\.jars\.packages"):
        connected_components(edges, algorithm="graphframes")
    assert connected_components(edges).algorithm == "builtin"  # "auto" falls back


def test_unreadable_sources_raise_config_error(
    spark: Any, tmp_path: Path, hasher: IdentifierHasher
) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        hash_applications(tmp_path / "missing.csv", hasher, spark=spark)
    (tmp_path / "apps.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="unsupported file type"):
        hash_applications(tmp_path / "apps.json", hasher, spark=spark)
    (tmp_path / "apps.csv").write_text("application_id,lender_id,timestamp\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="applicant_id"):
        hash_applications(tmp_path / "apps.csv", hasher, spark=spark)


def test_backend_switch_validates(hasher: IdentifierHasher) -> None:
    rows = list(generate(50, seed=1).to_records())
    with pytest.raises(ConfigError, match="backend"):
        scan_applications(rows, secret=hasher, backend="dask")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="GraphConfig"):
        scan_applications(rows, secret=hasher, config={"hub_degree_cap": 5})  # type: ignore[arg-type]
    res = scan_applications(rows, secret=hasher)
    assert res.backend == "local" and res.rows == 50


@pytest.mark.slow
def test_spark_rings_equal_local_rings_at_1e5(
    spark: Any, tmp_path: Path, hasher: IdentifierHasher
) -> None:
    ds = generate(100_000, seed=2)
    path = write_csv(ds, tmp_path / "apps100k.csv")
    local = scan_applications(path, secret=hasher)
    dist = scan_applications(path, secret=hasher, spark=spark)
    assert len(local.rings) > 1_000
    assert [r.to_dict() for r in dist.rings] == [r.to_dict() for r in local.rings]
    assert dist.stats["components_rounds"] >= 1
