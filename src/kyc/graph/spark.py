"""The batch graph pipeline on Apache Spark, with the same results as the single-machine path.

One call runs either backend (in the spirit of networkx's backends)::

    from kyc.graph.spark import scan_applications, spark_session
    local = scan_applications("apps.parquet", secret=key)                    # one machine
    dist = scan_applications("apps.parquet", secret=key, backend="spark",   # Spark
                             spark=spark_session("local[2]"))
    assert [r.to_dict() for r in local.rings] == [r.to_dict() for r in dist.rings]

``backend=None`` (the default) picks ``"spark"`` when a session is passed or the input is a
Spark DataFrame, else ``"local"``. Both return a :class:`ScanResult` holding the same
:class:`~kyc.graph.rings.Ring` objects, in the same order, and the same per-row errors.

What runs where on the Spark backend (every step a DataFrame job; see ``docs/spark.md``):

1. **Read**: CSV (all columns as text, like :mod:`csv`; ``_corrupt_record`` rows with more
   fields than the header are refused as the local reader does), Parquet, a Spark DataFrame,
   or anything :func:`kyc.graph.records.iter_applications` reads (pandas, Arrow, iterables:
   parsed on the driver, shipped as records).
2. **Validate, normalise, hash** with ``mapInPandas`` calling the library's own
   :meth:`~kyc.graph.records.Application.from_mapping` and
   :func:`~kyc.graph.records.hash_application`, so tokens are byte-identical to the local
   path. The :class:`~kyc.graph.identifiers.IdentifierHasher` (hence the HMAC secret) is
   serialised into the task closure and travels to the executors: run on a cluster with RPC
   authentication and encryption on (``spark.authenticate``, ``spark.network.crypto.enabled``,
   ``spark.io.encryption.enabled``). Raw identifiers never leave this step; everything after
   it sees tokens only. Repeated ``application_id``: the first row wins.
3. **Links**: (applicant, identifier, role bits) edges, identifier degree (distinct
   applicants), singletons dropped, hubs above ``hub_degree_cap`` kept as evidence but linking
   nobody, pairs by a self-join on the identifier with the weaker role's evidence, summed in
   integer units per pair, linked when the sum reaches the threshold (the rules of
   :mod:`kyc.graph.build`).
4. **Components** of the linked pairs: GraphFrames when its jar is on the session, else
   large-star/small-star in plain DataFrames (:mod:`kyc.graph.spark_components`).
5. **Rings**: member rows are partitioned and sorted by component and ``mapInPandas``
   builds each component's :class:`~kyc.graph.rings.ComponentView` and calls
   :func:`~kyc.graph.rings.analyse_component` (Leiden CPM, ring features), many components
   per Arrow batch (``groupBy(component).applyInPandas`` does the same one frame per
   component: ``ring_features(..., batched=False)``). CPM decomposes over components, so
   this equals the global computation.
6. **Scores** on the driver with :class:`~kyc.graph.rings.RingScorer`: they need every ring's
   density rank and the flags of rings reached through emergency contacts (a few numbers
   per ring, collected with the own-phone holders of the rings' contact phones).

Multi-lender counters (:func:`velocity_features`, :func:`applicant_velocity`) are DataFrame
jobs equal to :class:`~kyc.graph.velocity.VelocityIndex` at the given times.

pyspark is imported only when a Spark function runs (``pip install 'kyc[spark]'``).
"""

from __future__ import annotations

import atexit
import csv
import functools
import io
import logging
import math
import os
import pickle
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from kyc.errors import ConfigError, InvalidRecord
from kyc.graph.build import ROLES, GraphConfig, RingScoring
from kyc.graph.identifiers import IdentifierHasher, IdKind
from kyc.graph.records import (
    Application,
    HashedApplication,
    hash_application,
    iter_applications,
)
from kyc.graph.rings import ComponentView, Ring, RingFeatures, RingScorer, analyse_component
from kyc.graph.spark_components import (
    ComponentsResult,
    connected_components,
    has_graphframes,
    index_nodes,
    materialise,
)
from kyc.graph.velocity import KEYS, WINDOWS, feature_name

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = [
    "HASHED_SCHEMA",
    "HashedFrames",
    "ScanResult",
    "SparkScan",
    "applicant_velocity",
    "candidate_pairs",
    "connected_components",
    "has_graphframes",
    "hash_applications",
    "identifier_edges",
    "linked_components",
    "ring_features",
    "scan_applications",
    "spark_scan",
    "spark_session",
    "velocity_features",
]

log = logging.getLogger(__name__)

#: Schema of a hashed-applications DataFrame (the Spark form of
#: :class:`~kyc.graph.records.HashedApplication`; links as two parallel arrays).
HASHED_SCHEMA: Final = (
    "application_id string, applicant string, lender_id string, lender_type string, "
    "ts long, link_roles array<string>, link_tokens array<string>, thin_file boolean"
)
_HASHED_COLS: Final = ("application_id", "applicant", "lender_id", "lender_type", "ts",
                       "link_roles", "link_tokens", "thin_file")
_PARSED_SCHEMA: Final = HASHED_SCHEMA + ", _mid long, err_field string, err_message string"
_REQUIRED: Final = ("application_id", "applicant_id", "lender_id", "timestamp")
_CORRUPT: Final = "_corrupt_record"
_ROW_BITS: Final = 33  # monotonically_increasing_id: partition id << 33 | row in partition
_ROLE_BIT: Final = {r: 1 << i for i, r in enumerate(ROLES)}
_PHONE_BIT: Final = _ROLE_BIT["phone"]


def _require_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the Spark backend needs pyspark: pip install 'kyc[spark]' (and Java 17)"
        ) from None


# --- session --------------------------------------------------------------------------------


def spark_session(
    master: str = "local[2]",
    *,
    app_name: str = "kyc",
    shuffle_partitions: int = 8,
    driver_memory: str | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    conf: Mapping[str, str] | None = None,
    quiet: bool = True,
) -> SparkSession:
    """Get or create a SparkSession set up for the graph jobs.

    Defaults suit local mode and tests: ``local[2]``, ``shuffle_partitions`` 8, the web UI and
    console progress bars off, Arrow on, session time zone UTC, logs at ERROR (``quiet``),
    Python workers running this interpreter (local masters only), and a checkpoint dir in a
    fresh temporary folder removed at exit (``checkpoint_dir`` to choose one; on a cluster it
    must be on shared storage such as HDFS or S3). ``driver_memory`` (e.g. ``"6g"``) only
    applies when this call starts the JVM. ``conf``: any further Spark settings (for
    GraphFrames: ``{"spark.jars.packages": "io.graphframes:graphframes-spark4_2.13:0.10.0"}``).

    When a session is already active it is returned with the runtime settings applied
    (shuffle partitions, ``conf`` entries that can change at runtime, a checkpoint dir when it
    has none); its log level is left alone.
    """
    _require_pyspark()
    from pyspark.sql import SparkSession

    if not isinstance(shuffle_partitions, int) or shuffle_partitions < 1:
        raise ConfigError(f"shuffle_partitions must be an int >= 1, got {shuffle_partitions!r}")
    active = SparkSession.getActiveSession()
    if active is None:
        builder = SparkSession.builder.master(master).appName(app_name)
        settings: dict[str, str] = {
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": str(shuffle_partitions),
            "spark.default.parallelism": str(shuffle_partitions),
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.session.timeZone": "UTC",
            "spark.python.worker.reuse": "true",
            "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
            # the SQL status store keeps every query's plan text: bound it on the driver
            "spark.sql.ui.retainedExecutions": "20",
            "spark.ui.retainedJobs": "100",
            "spark.ui.retainedStages": "100",
        }
        if master.startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
            settings["spark.pyspark.python"] = sys.executable
            settings["spark.pyspark.driver.python"] = sys.executable
        if driver_memory:
            settings["spark.driver.memory"] = str(driver_memory)
        if quiet:
            settings["spark.log.level"] = "ERROR"
        settings.update({str(k): str(v) for k, v in (conf or {}).items()})
        for k, v in settings.items():
            builder = builder.config(k, v)
        spark = builder.getOrCreate()
        if quiet:
            spark.sparkContext.setLogLevel("ERROR")
    else:
        spark = active
        spark.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions))
        for k, v in (conf or {}).items():
            try:
                spark.conf.set(str(k), str(v))
            except Exception:  # a static (JVM-level) setting
                log.warning("cannot change Spark setting %s on a running session", k)
    sc = spark.sparkContext
    if checkpoint_dir is not None:
        sc.setCheckpointDir(str(checkpoint_dir))
    elif sc.getCheckpointDir() is None:
        sc.setCheckpointDir(os.path.join(_temp_dir(), "checkpoints"))
    return spark


@functools.lru_cache(maxsize=1)
def _temp_dir() -> str:
    path = tempfile.mkdtemp(prefix="kyc-spark-")
    atexit.register(shutil.rmtree, path, True)
    return path


def _active_session(spark: SparkSession | None) -> SparkSession:
    _require_pyspark()
    if spark is not None:
        return spark
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    return active if active is not None else spark_session()


# --- reading and hashing ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HashedFrames:
    """Applications read, validated and hashed on Spark (:func:`hash_applications`).

    ``applications``: the valid hashed applications, first row of each ``application_id``
    (:data:`HASHED_SCHEMA`, persisted). ``parsed``: every row with its position ``_mid`` and,
    for a refused row, ``err_field``/``err_message`` (persisted). ``row_mode``: ``"exact"``
    when ``_mid`` is the 0-based row number, ``"spark"`` when it is Spark's
    ``monotonically_increasing_id`` (row numbers are then derived from partition sizes).
    ``driver_errors``: rows refused before reaching Spark (in-memory sources).
    """

    applications: DataFrame
    parsed: DataFrame
    row_mode: str
    driver_errors: tuple[InvalidRecord, ...] = ()
    driver_rows: int = 0

    def summary(self) -> dict[str, int]:
        """``rows``, ``applications`` (distinct ids kept), ``duplicates``, ``errors`` (one job)."""
        from pyspark.sql import functions as F

        row = self.parsed.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(F.col("err_message")).alias("errors"),
            F.countDistinct(F.when(F.col("err_message").isNull(), F.col("application_id")))
            .alias("apps"),
        ).collect()[0]
        rows = int(row["rows"]) + len(self.driver_errors)
        errors = int(row["errors"]) + len(self.driver_errors)
        apps = int(row["apps"])
        return {"rows": rows, "applications": apps, "duplicates": rows - errors - apps,
                "errors": errors}

    def errors(self) -> list[InvalidRecord]:
        """Every refused row as :class:`~kyc.errors.InvalidRecord` (``row``, ``field``), by row."""
        from pyspark.sql import functions as F

        bad = (self.parsed.filter(F.col("err_message").isNotNull())
               .select("_mid", "err_field", "err_message").collect())
        offsets = self._offsets() if bad and self.row_mode == "spark" else {}
        out = list(self.driver_errors)
        for r in bad:
            mid = int(r["_mid"])
            row = mid if self.row_mode == "exact" else (
                offsets[mid >> _ROW_BITS] + (mid & ((1 << _ROW_BITS) - 1)))
            out.append(InvalidRecord(str(r["err_message"]), row=row, field=r["err_field"]))
        out.sort(key=lambda e: e.row if e.row is not None else -1)
        return out

    def _offsets(self) -> dict[int, int]:
        """First row number of each Spark partition of the input (from the kept ``_mid``)."""
        from pyspark.sql import functions as F

        mask = (1 << _ROW_BITS) - 1
        sizes = (self.parsed
                 .groupBy(F.shiftright("_mid", _ROW_BITS).alias("pid"))
                 .agg((F.max(F.col("_mid").bitwiseAND(F.lit(mask))) + 1).alias("n"))
                 .collect())
        out: dict[int, int] = {}
        start = 0
        for r in sorted(sizes, key=lambda r: int(r["pid"])):
            out[int(r["pid"])] = start
            start += int(r["n"])
        return out

    def to_hashed(self) -> list[HashedApplication]:
        """The kept applications as :class:`~kyc.graph.records.HashedApplication` (input order).

        Collects to the driver: for tests and small data.
        """
        rows = self.applications.orderBy("_mid").collect() if "_mid" in self.applications.columns \
            else self.applications.collect()
        return [_to_hashed(r) for r in rows]

    def unpersist(self) -> None:
        """Drop the cached frames."""
        self.applications.unpersist()
        self.parsed.unpersist()


def _to_hashed(r: Any) -> HashedApplication:
    links = tuple(zip(r["link_roles"] or (), r["link_tokens"] or (), strict=True))
    return HashedApplication(
        application_id=r["application_id"], applicant=r["applicant"], lender_id=r["lender_id"],
        lender_type=r["lender_type"], ts=int(r["ts"]), links=tuple(links),
        thin_file=r["thin_file"])


def hash_applications(
    source: Any,
    secret: bytes | str | IdentifierHasher,
    *,
    spark: SparkSession | None = None,
    default_region: str = "US",
    csv_multiline: bool = False,
) -> HashedFrames:
    """Read, validate and hash applications as Spark jobs; see :class:`HashedFrames`.

    ``source``: a CSV path (``.csv``, ``.csv.gz``, ``.txt``), a Parquet path (file or folder,
    ``.parquet``/``.pq``), a Spark DataFrame with the columns of :mod:`kyc.graph.records`, or
    anything :func:`kyc.graph.records.iter_applications` reads (parsed on the driver).
    ``csv_multiline``: allow quoted fields holding newlines (the file is then read by one task).
    Raises :class:`~kyc.errors.ConfigError` for a source that cannot be read at all (missing
    file or column); bad rows are reported by :meth:`HashedFrames.errors`.
    """
    spark = _active_session(spark)
    from pyspark import StorageLevel
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import functions as F

    hasher = secret if isinstance(secret, IdentifierHasher) else IdentifierHasher(
        secret, default_region=default_region)
    driver_errors: list[InvalidRecord] = []
    driver_rows = 0
    if isinstance(source, SparkDataFrame) or _is_file(source):
        frame, width = (_spark_frame(source) if isinstance(source, SparkDataFrame)
                        else _read_file(spark, Path(source), csv_multiline))
        frame = frame.withColumn("_mid", F.monotonically_increasing_id())
        cores = spark.sparkContext.defaultParallelism
        if frame.rdd.getNumPartitions() < cores:  # hashing is the Python-heavy step: use all cores
            frame = frame.repartition(cores)
        func = functools.partial(_hash_columns, hasher, width)
        row_mode = "spark"
    else:
        payload: list[tuple[int, bytes]] = []
        for row, item in enumerate(iter_applications(source)):
            driver_rows += 1
            if isinstance(item, InvalidRecord):
                driver_errors.append(item if item.row is not None else
                                     InvalidRecord(item.message, row=row, field=item.field))
            else:
                payload.append((row, pickle.dumps(item, protocol=5)))
        n_parts = max(1, min(spark.sparkContext.defaultParallelism * 2,
                             math.ceil(len(payload) / 5000)))
        frame = spark.createDataFrame(payload, "_mid long, _payload binary").repartition(
            n_parts, "_mid").sortWithinPartitions("_mid")
        func = functools.partial(_hash_payload, hasher)
        row_mode = "exact"
    parsed = frame.mapInPandas(func, _PARSED_SCHEMA).persist(StorageLevel.MEMORY_AND_DISK)
    ok = parsed.filter(F.col("err_message").isNull())
    first = (ok.groupBy("application_id")
             .agg(F.min_by(F.struct(*_HASHED_COLS, "_mid"), F.col("_mid")).alias("r"))
             .select("r.*")
             .persist(StorageLevel.MEMORY_AND_DISK))
    return HashedFrames(applications=first, parsed=parsed, row_mode=row_mode,
                        driver_errors=tuple(driver_errors), driver_rows=driver_rows)


def _is_file(source: Any) -> bool:
    return isinstance(source, str | os.PathLike)


def _check_columns(names: Iterable[str], where: str) -> None:
    have = set(names)
    missing = [c for c in _REQUIRED if c not in have]
    if missing:
        raise ConfigError(f"{where} has no column {', '.join(missing)}")


def _read_file(spark: SparkSession, path: Path, multiline: bool) -> tuple[DataFrame, int]:
    """Raw frame of a CSV (text columns + corrupt-record column) or Parquet file."""
    from pyspark.sql.types import StringType, StructField, StructType

    if not path.exists():
        raise ConfigError(f"no such file: {path}")
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".txt")):
        header = _csv_header(path)
        _check_columns(header, str(path))
        schema = StructType([StructField(c, StringType()) for c in header]
                            + [StructField(_CORRUPT, StringType())])
        df = (spark.read.option("header", True).option("escape", '"')
              .option("multiLine", multiline).option("mode", "PERMISSIVE")
              .option("columnNameOfCorruptRecord", _CORRUPT).option("encoding", "UTF-8")
              .schema(schema).csv(str(path)))
        return df, len(header)
    if name.endswith((".parquet", ".pq")) or path.is_dir():
        try:
            df = spark.read.parquet(str(path))
        except Exception as exc:
            raise ConfigError(f"{path} is not a readable Parquet file: {exc}") from None
        return _spark_frame(df, where=str(path))
    raise ConfigError(f"unsupported file type {path.suffix!r}: use .csv or .parquet")


def _csv_header(path: Path) -> list[str]:
    import gzip

    try:
        fh: io.TextIOBase
        if path.name.lower().endswith(".gz"):
            fh = gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[assignment]  # noqa: SIM115
        else:
            fh = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
        with fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read the CSV header of {path}: {exc}") from None
    return [h.strip() for h in header]


def _spark_frame(df: DataFrame, where: str = "the DataFrame") -> tuple[DataFrame, int]:
    """Columns the hashing step reads, with Spark types mapped to what the local reader sees.

    Timestamps become epoch seconds (instants) or ISO text (zone-less: read as UTC); integer
    columns become their decimal text (exact, like Python ``str(int)``).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, IntegralType, TimestampNTZType, TimestampType

    _check_columns(df.columns, where)
    cols: list[Column] = []
    for f in df.schema.fields:
        c = F.col(f"`{f.name}`")
        if isinstance(f.dataType, TimestampType):
            c = c.cast("double")
        elif isinstance(f.dataType, TimestampNTZType | DateType | IntegralType):
            c = c.cast("string")
        cols.append(c.alias(f.name))
    return df.select(*cols), 0


# The two mapInPandas bodies. They run on the executors; everything they call is the local
# library's own code, so a token computed here equals the local one byte for byte.

def _hash_columns(
    hasher: IdentifierHasher, width: int, batches: Iterator[pd.DataFrame]
) -> Iterator[pd.DataFrame]:
    for pdf in batches:
        names = [c for c in pdf.columns if c not in ("_mid", _CORRUPT)]
        mids = pdf["_mid"].tolist()
        corrupt = pdf[_CORRUPT].tolist() if _CORRUPT in pdf.columns else [None] * len(pdf)
        records = pdf[names].to_dict("records")
        out = _Rows()
        for rec, mid, bad in zip(records, mids, corrupt, strict=True):
            if isinstance(bad, str) and width:
                n = _csv_fields(bad)
                if n > width:
                    out.error(mid, None, f"malformed CSV row: {n} fields, the header has {width}")
                    continue
            try:
                app = Application.from_mapping(rec)
                out.ok(mid, hash_application(app, hasher))
            except InvalidRecord as exc:
                out.error(mid, exc.field, exc.message)
        yield out.frame()


def _hash_payload(
    hasher: IdentifierHasher, batches: Iterator[pd.DataFrame]
) -> Iterator[pd.DataFrame]:
    for pdf in batches:
        out = _Rows()
        for mid, blob in zip(pdf["_mid"].tolist(), pdf["_payload"].tolist(), strict=True):
            app = pickle.loads(blob)  # written by hash_applications on the driver
            try:
                out.ok(mid, hash_application(app, hasher))
            except InvalidRecord as exc:
                out.error(mid, exc.field, exc.message)
        yield out.frame()


def _csv_fields(line: str) -> int:
    try:
        return max((len(r) for r in csv.reader(io.StringIO(line))), default=0)
    except csv.Error:
        return 0


class _Rows:
    """Column buffers of the hashing step's output (:data:`_PARSED_SCHEMA`)."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {
            k: [] for k in (*_HASHED_COLS, "_mid", "err_field", "err_message")}

    def ok(self, mid: int, h: HashedApplication) -> None:
        c = self.cols
        c["application_id"].append(h.application_id)
        c["applicant"].append(h.applicant)
        c["lender_id"].append(h.lender_id)
        c["lender_type"].append(h.lender_type)
        c["ts"].append(int(h.ts))
        c["link_roles"].append([r for r, _ in h.links])
        c["link_tokens"].append([t for _, t in h.links])
        c["thin_file"].append(h.thin_file)
        c["_mid"].append(int(mid))
        c["err_field"].append(None)
        c["err_message"].append(None)

    def error(self, mid: int, fld: str | None, message: str) -> None:
        for v in self.cols.values():
            v.append(None)
        self.cols["_mid"][-1] = int(mid)
        self.cols["ts"][-1] = 0
        self.cols["link_roles"][-1] = []
        self.cols["link_tokens"][-1] = []
        self.cols["err_field"][-1] = fld
        self.cols["err_message"][-1] = message

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        df = pd.DataFrame(self.cols)
        df["ts"] = df["ts"].astype("int64")
        df["_mid"] = df["_mid"].astype("int64")
        df["thin_file"] = df["thin_file"].astype("object")
        return df


# --- links --------------------------------------------------------------------------------------


def identifier_edges(apps: DataFrame, config: GraphConfig | None = None) -> DataFrame:
    """Applicant x identifier edges of identifiers held by >= 2 applicants.

    ``apps``: hashed applications (:data:`HASHED_SCHEMA`). Returns ``(applicant, token, bits,
    degree, evidence)``: one row per (applicant, identifier), ``bits`` the OR of the roles
    (:data:`kyc.graph.build.ROLES` bit order) it was used in over the applicant's
    applications, ``degree`` the number of distinct applicants holding the identifier,
    ``evidence`` the role evidence in :data:`kyc.graph.build.EVIDENCE_UNITS` (strongest role).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    cfg = config or GraphConfig()
    role_bit = F.create_map(*[x for r, b in _ROLE_BIT.items() for x in (F.lit(r), F.lit(b))])
    ev = _evidence_expr(cfg)
    raw = (apps.select("applicant", F.explode(F.arrays_zip("link_roles", "link_tokens")).alias("l"))
           .select("applicant", F.col("l.link_tokens").alias("token"),
                   F.element_at(role_bit, F.col("l.link_roles")).alias("bit")))
    edges = raw.groupBy("applicant", "token").agg(F.bit_or("bit").cast("int").alias("bits"))
    deg = F.count(F.lit(1)).over(Window.partitionBy("token")).cast("int")
    return (edges.withColumn("degree", deg)
            .filter(F.col("degree") >= 2)
            .withColumn("evidence", ev))


def _evidence_expr(cfg: GraphConfig) -> Column:
    """``cfg.evidence_units[bits]`` as a compact expression over the ``bits`` column.

    The table holds, per role bitmask, the strongest role's evidence; written as the greatest
    of eight conditional terms it keeps query plans small. Should the table ever stop being
    "max over the roles set", the literal table is used instead.
    """
    from pyspark.sql import functions as F

    table = cfg.evidence_units
    per_role = [table[1 << i] for i in range(len(ROLES))]
    as_max = all(table[b] == max((per_role[i] for i in range(len(ROLES)) if b >> i & 1),
                                 default=0) for b in range(len(table)))
    bits = F.col("bits")
    if not as_max:
        return F.element_at(F.array(*[F.lit(int(u)) for u in table]), bits + 1)
    terms = [F.when(bits.bitwiseAND(F.lit(1 << i)) != 0, F.lit(int(w)))
             for i, w in enumerate(per_role)]
    return F.coalesce(F.greatest(*terms), F.lit(0)).cast("int")


def candidate_pairs(edges: DataFrame, config: GraphConfig | None = None) -> DataFrame:
    """Applicant pairs sharing a non-hub identifier, with the evidence rule applied.

    ``edges``: :func:`identifier_edges`. Returns ``(a, b, evidence, weight_units, n_shared,
    linked)`` with ``a < b`` (applicant tokens), the same integers as
    :func:`kyc.graph.build.candidate_pairs` (evidence of the weaker role per shared
    identifier, summed; ``weight_units`` also times the rarity ``1/log(degree + c)``).
    """
    from pyspark.sql import functions as F

    cfg = config or GraphConfig()
    cap = cfg.hub_degree_cap
    rar = F.array(*[F.lit(cfg.rarity_units(d) if d >= 2 else 0) for d in range(cap + 1)])
    small = edges.filter(F.col("degree") <= cap).select("token", "applicant", "evidence",
                                                        "degree")
    x = small.alias("x")
    y = small.select("token", F.col("applicant").alias("b"), F.col("evidence").alias("ev_b"))
    pairs = (x.join(y, "token")
             .filter(F.col("applicant") < F.col("b"))
             .select(F.col("applicant").alias("a"), "b",
                     F.least("evidence", "ev_b").cast("long").alias("ev"),
                     F.element_at(rar, F.col("degree") + 1).cast("long").alias("rar")))
    return (pairs.groupBy("a", "b")
            .agg(F.sum("ev").alias("evidence"),
                 F.sum(F.col("ev") * F.col("rar")).alias("weight_units"),
                 F.count(F.lit(1)).cast("int").alias("n_shared"))
            .withColumn("linked", F.col("evidence") >= F.lit(cfg.threshold_units)))


def linked_components(
    pairs: DataFrame,
    *,
    algorithm: Literal["auto", "builtin", "graphframes"] = "auto",
    max_iter: int = 100,
) -> tuple[DataFrame, ComponentsResult]:
    """Component of every applicant in a linked pair (hub-damped, evidence rule).

    ``pairs``: :func:`candidate_pairs`. Returns ``((applicant, component, size), result)``:
    ``component`` a long label (the same for all members), ``size`` the member count;
    applicants in no linked pair are their own singleton components and are left out.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    linked = pairs.filter("linked").select("a", "b").persist(StorageLevel.MEMORY_AND_DISK)
    ids = index_nodes(linked, "a", "b")
    ia = ids.select(F.col("name").alias("a"), F.col("id").alias("src"))
    ib = ids.select(F.col("name").alias("b"), F.col("id").alias("dst"))
    # checkpointed: the rounds' query plans then start from this table, not from the whole
    # hashing and pairing pipeline (plans copy their inputs several times per round)
    edges = materialise(linked.join(ia, "a").join(ib, "b").select("src", "dst"))
    linked.unpersist()
    result = connected_components(edges, algorithm=algorithm, max_iter=max_iter)
    size = F.count(F.lit(1)).over(Window.partitionBy("component"))
    comps = (ids.join(result.labels, "id")
             .select(F.col("name").alias("applicant"), "component")
             .withColumn("size", size)
             .persist(StorageLevel.MEMORY_AND_DISK))
    return comps, result


# --- rings ----------------------------------------------------------------------------------------


def _config_from_dict(d: Mapping[str, Any]) -> GraphConfig:
    kw = dict(d)
    scoring = RingScoring(**kw.pop("scoring"))
    kw["dense_top_pct"] = tuple(kw["dense_top_pct"])
    return GraphConfig(**kw, scoring=scoring)


def _portable_config(cfg: GraphConfig) -> dict[str, Any]:
    """``cfg`` as plain data for the executors; refuses a config that does not round-trip."""
    d = cfg.to_dict()
    if _config_from_dict(d) != cfg:
        raise ConfigError("this GraphConfig does not survive to_dict(); cannot ship it to Spark")
    return d


@functools.lru_cache(maxsize=8)
def _cached_config(blob: bytes) -> GraphConfig:
    return _config_from_dict(pickle.loads(blob))


def _component_rings(cfg: GraphConfig, cols: Mapping[str, list[Any]], lo: int, hi: int
                     ) -> list[RingFeatures]:
    """Ring features of the component held in rows ``lo:hi`` of the member columns."""
    names = cols["applicant"]
    order = sorted(range(lo, hi), key=names.__getitem__)
    toks, bits, degs = cols["link_tokens"], cols["link_bits"], cols["link_degree"]
    times, thin, fraud = cols["times"], cols["thin"], cols["fraud"]
    links: list[tuple[tuple[str, int], ...]] = []
    degree: dict[str, int] = {}
    for i in order:
        t_i = [str(t) for t in toks[i]]
        links.append(tuple(sorted(zip(t_i, (int(b) for b in bits[i]), strict=True))))
        for t, d in zip(t_i, degs[i], strict=True):
            degree[t] = int(d)
    view = ComponentView(
        members=tuple(str(names[i]) for i in order),
        links=tuple(links),
        times=tuple(tuple(sorted(int(x) for x in times[i])) for i in order),
        thin=tuple(int(thin[i]) for i in order),
        fraud=tuple(bool(fraud[i]) for i in order),
        degree=degree,
    )
    return list(analyse_component(view, cfg).rings)


_MEMBER_COLS: Final = ("component", "applicant", "link_tokens", "link_bits", "link_degree",
                       "times", "thin", "fraud")
_RINGS_SCHEMA: Final = "component long, ring_id string, features binary"


def _rings_frame(comps: list[int], feats: list[RingFeatures]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({
        "component": pd.Series(comps, dtype="int64"),
        "ring_id": pd.Series([rf.ring_id for rf in feats], dtype="object"),
        "features": pd.Series([pickle.dumps(rf, protocol=5) for rf in feats], dtype="object"),
    })


def _analyse_group(blob: bytes, pdf: pd.DataFrame) -> pd.DataFrame:
    """applyInPandas body: one component's members -> its ring features (pickled)."""
    cols = {c: pdf[c].tolist() for c in _MEMBER_COLS}
    feats = _component_rings(_cached_config(blob), cols, 0, len(pdf))
    return _rings_frame([int(cols["component"][0])] * len(feats), feats)


def _analyse_sorted(blob: bytes, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """mapInPandas body over member rows clustered and sorted by component: many components
    per pandas batch (a component cut by a batch boundary is carried to the next batch)."""
    import pandas as pd

    cfg = _cached_config(blob)
    carry: pd.DataFrame | None = None

    def analyse(pdf: pd.DataFrame) -> pd.DataFrame:
        cols = {c: pdf[c].tolist() for c in _MEMBER_COLS}
        comp = cols["component"]
        out_c: list[int] = []
        out_f: list[RingFeatures] = []
        lo = 0
        for hi in range(1, len(comp) + 1):
            if hi == len(comp) or comp[hi] != comp[lo]:
                feats = _component_rings(cfg, cols, lo, hi)
                out_c.extend([int(comp[lo])] * len(feats))
                out_f.extend(feats)
                lo = hi
        return _rings_frame(out_c, out_f)

    for pdf in batches:
        if carry is not None:
            pdf = pd.concat([carry, pdf], ignore_index=True)
        if pdf.empty:
            continue
        last = pdf["component"].iloc[-1]
        tail = (pdf["component"] == last).to_numpy()
        carry = pdf[tail]
        done = pdf[~tail]
        if len(done):
            yield analyse(done)
    if carry is not None and len(carry):
        yield analyse(carry)


def ring_features(
    apps: DataFrame,
    edges: DataFrame,
    components: DataFrame,
    config: GraphConfig | None = None,
    fraud: Iterable[str] = (),
    *,
    batched: bool = True,
) -> DataFrame:
    """Ring candidates of every component of at least ``min_ring_size`` members.

    ``apps``, ``edges``, ``components``: :func:`hash_applications` (its ``applications``),
    :func:`identifier_edges`, :func:`linked_components`. ``fraud``: applicant *tokens* of
    confirmed frauds. Runs :func:`kyc.graph.rings.analyse_component` once per component:
    with ``batched=False`` through ``groupBy(component).applyInPandas`` (one pandas frame per
    component); by default the member rows are hash-partitioned and sorted by component and
    ``mapInPandas`` analyses many components per Arrow batch (the same groups and calls,
    without the per-group overhead, which dominates when components are small). Returns
    ``(component, ring_id, features)`` with ``features`` a pickled
    :class:`~kyc.graph.rings.RingFeatures`.
    """
    from pyspark.sql import functions as F

    cfg = config or GraphConfig()
    spark = apps.sparkSession
    blob = pickle.dumps(_portable_config(cfg), protocol=5)
    members = components.filter(F.col("size") >= cfg.min_ring_size).select("applicant",
                                                                            "component")
    hub = cfg.hub_degree_cap + 1
    mlinks = (edges.join(members, "applicant")
              .select("component", "applicant", "token", "bits",
                      F.least("degree", F.lit(hub)).cast("int").alias("eff"))
              .groupBy("component", "applicant")
              .agg(F.collect_list(F.struct("token", "bits", "eff")).alias("l"))
              .select("component", "applicant",
                      F.col("l.token").alias("link_tokens"),
                      F.col("l.bits").alias("link_bits"),
                      F.col("l.eff").alias("link_degree")))
    mine = apps.join(members.select("applicant"), "applicant", "left_semi")
    times = mine.groupBy("applicant").agg(
        F.sort_array(F.collect_list("ts")).alias("times"),
        F.max_by(F.col("thin_file").cast("int"),
                 F.when(F.col("thin_file").isNotNull(),
                        F.struct("ts", "application_id"))).alias("thin_raw"))
    fraud_list = sorted(set(fraud))
    fraud_df = spark.createDataFrame([(t, True) for t in fraud_list],
                                     "applicant string, fraud boolean")
    rows = (mlinks.join(times, "applicant")
            .join(F.broadcast(fraud_df), "applicant", "left")
            .select("component", "applicant", "link_tokens", "link_bits", "link_degree",
                    "times",
                    F.coalesce(F.col("thin_raw"), F.lit(-1)).cast("int").alias("thin"),
                    F.coalesce(F.col("fraud"), F.lit(False)).alias("fraud")))
    if not batched:
        func = functools.partial(_analyse_group, blob)
        with warnings.catch_warnings():  # pyspark cannot read type hints off a partial
            warnings.simplefilter("ignore", UserWarning)
            return rows.groupBy("component").applyInPandas(func, _RINGS_SCHEMA)
    n = apps.sparkSession.conf.get("spark.sql.shuffle.partitions") or "8"
    clustered = rows.repartition(int(n), "component").sortWithinPartitions("component")
    return clustered.mapInPandas(functools.partial(_analyse_sorted, blob), _RINGS_SCHEMA)


def _score(
    feats: list[RingFeatures], owners: Mapping[str, list[str]], config: GraphConfig
) -> list[Ring]:
    """Score ring features exactly as the local batch path does."""
    ring_of: dict[str, RingFeatures] = {}
    for rf in feats:
        for m in rf.members:
            ring_of[m] = rf
    densities = sorted(rf.density for rf in feats)

    def phone_owners(tok: str) -> list[str]:
        return sorted(owners.get(tok, ()))

    scorer = RingScorer(config, densities, phone_owners, ring_of.get)
    out = [scorer.score(rf) for rf in feats]
    out.sort(key=lambda r: (-r.score, r.ring_id))
    return out


# --- the one-call API ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanResult:
    """Rings of a batch of applications, from either backend.

    ``rings``: scored ring candidates, highest score first (ties by ring id), the same
    :class:`~kyc.graph.rings.Ring` objects whatever the backend. ``errors``: refused rows
    (``row``, ``field``, message), by row. ``rows``: rows read; ``applications``: distinct
    applications kept; ``duplicates``: repeated application ids ignored. ``backend``:
    ``"local"`` or ``"spark"``. ``stats``: backend figures (Spark: applicants in linked
    pairs, linked pairs, components analysed, components algorithm and rounds).
    """

    rings: tuple[Ring, ...]
    errors: tuple[InvalidRecord, ...]
    rows: int
    applications: int
    duplicates: int
    backend: str
    stats: Mapping[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> tuple[Ring, ...]:
        """The rings whose score reached the flag threshold."""
        return tuple(r for r in self.rings if r.flagged)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "backend": self.backend,
            "rows": self.rows,
            "applications": self.applications,
            "duplicates": self.duplicates,
            "errors": [e.to_dict() for e in self.errors],
            "stats": dict(self.stats),
            "rings": [r.to_dict() for r in self.rings],
        }


def scan_applications(
    applications: Any,
    *,
    secret: bytes | str | IdentifierHasher,
    config: GraphConfig | None = None,
    backend: Literal["local", "spark"] | None = None,
    spark: SparkSession | None = None,
    fraud: Iterable[str] = (),
    default_region: str = "US",
    components: Literal["auto", "builtin", "graphframes"] = "auto",
    max_iter: int = 100,
) -> ScanResult:
    """Find and score fraud rings in a batch of applications, on one machine or on Spark.

    Args:
        applications: a CSV or Parquet path, a pandas DataFrame, an Arrow table, an iterable
            of mappings or :class:`~kyc.graph.records.Application` (both backends), or a Spark
            DataFrame (Spark backend).
        secret: the deployment HMAC secret, or an
            :class:`~kyc.graph.identifiers.IdentifierHasher`.
        config: linking, community and scoring parameters.
        backend: ``"local"`` (:class:`~kyc.graph.fraudgraph.FraudGraph` in memory) or
            ``"spark"``; ``None`` picks Spark when ``spark`` is given or ``applications`` is a
            Spark DataFrame.
        spark: the session for the Spark backend (default: the active one, else
            :func:`spark_session`).
        fraud: raw applicant ids of confirmed frauds (``CONFIRMED_FRAUD_*`` /
            ``NEAR_CONFIRMED_FRAUD_*`` evidence).
        default_region: phone region for numbers without ``+country``.
        components: Spark components algorithm (``"auto"``: GraphFrames if on the session).
        max_iter: cap on the built-in components rounds (exceeding it raises).

    Returns:
        A :class:`ScanResult`; both backends give equal ``rings`` and ``errors`` rows/fields.

    Raises:
        ConfigError: unknown backend, unreadable source, pyspark missing for ``"spark"``.
    """
    if config is not None and not isinstance(config, GraphConfig):
        raise ConfigError(f"config must be a GraphConfig, not {type(config).__name__}")
    cfg = config or GraphConfig()
    if isinstance(fraud, str):
        raise ConfigError("fraud takes an iterable of applicant ids, not one string")
    hasher = secret if isinstance(secret, IdentifierHasher) else IdentifierHasher(
        secret, default_region=default_region)
    if backend is None:
        backend = "spark" if spark is not None or _is_spark_frame(applications) else "local"
    if backend == "local":
        if _is_spark_frame(applications):
            raise ConfigError("a Spark DataFrame needs backend='spark'")
        return _scan_local(applications, hasher, cfg, fraud)
    if backend == "spark":
        return _scan_spark(applications, hasher, cfg, fraud, spark, components, max_iter)
    raise ConfigError(f"backend must be 'local' or 'spark', not {backend!r}")


def _is_spark_frame(x: Any) -> bool:
    return type(x).__module__.startswith("pyspark.") and hasattr(x, "sparkSession")


def _scan_local(
    applications: Any, hasher: IdentifierHasher, cfg: GraphConfig, fraud: Iterable[str]
) -> ScanResult:
    from kyc.graph.fraudgraph import FraudGraph

    with FraudGraph(hasher, None, cfg) as g:
        res = g.add_many(applications)
        labels = list(fraud)
        if labels:
            g.mark_fraud(labels)
        rings = g.scan()
    errors = tuple(sorted(res.errors, key=lambda e: e.row if e.row is not None else -1))
    return ScanResult(rings=tuple(rings), errors=errors, rows=res.rows, applications=res.added,
                      duplicates=res.duplicates, backend="local",
                      stats={"ring_candidates": len(rings)})


@dataclass(frozen=True, eq=False)
class SparkScan:
    """A Spark scan with its intermediate frames (:func:`spark_scan`).

    ``edges``: :func:`identifier_edges` (persisted); ``pairs``: :func:`candidate_pairs` (not
    persisted: recomputed if read again); ``components``: :func:`linked_components`
    (persisted); ``components_run``: the components algorithm's figures; ``rings``: the
    scored rings, highest score first; ``stats``: counts for reports. Call :meth:`unpersist`
    when done with the frames.
    """

    edges: DataFrame
    pairs: DataFrame
    components: DataFrame
    components_run: ComponentsResult
    rings: tuple[Ring, ...]
    stats: Mapping[str, Any]

    def unpersist(self) -> None:
        """Drop the cached frames."""
        self.edges.unpersist()
        self.components.unpersist()


def spark_scan(
    hashed: HashedFrames | DataFrame,
    *,
    config: GraphConfig | None = None,
    fraud_tokens: Iterable[str] = (),
    algorithm: Literal["auto", "builtin", "graphframes"] = "auto",
    max_iter: int = 100,
) -> SparkScan:
    """Links, components, ring features and scores of hashed applications on Spark.

    ``hashed``: :func:`hash_applications`' result or a DataFrame of :data:`HASHED_SCHEMA`
    (one row per application id). ``fraud_tokens``: ``applicant:`` tokens of confirmed
    frauds. See the module docstring for the steps.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    cfg = config or GraphConfig()
    apps = hashed.applications if isinstance(hashed, HashedFrames) else hashed
    session = apps.sparkSession
    t0 = time.perf_counter()
    edges = identifier_edges(apps, cfg).persist(StorageLevel.MEMORY_AND_DISK)
    pairs = candidate_pairs(edges, cfg)
    comps, cc = linked_components(pairs, algorithm=algorithm, max_iter=max_iter)
    t1 = time.perf_counter()
    ring_rows = ring_features(apps, edges, comps, cfg, fraud_tokens).collect()
    t2 = time.perf_counter()
    feats: list[RingFeatures] = [pickle.loads(r["features"]) for r in ring_rows]
    members = sorted({m for rf in feats for m in rf.members})
    contacts = sorted({t for rf in feats for t in rf.contact_tokens})
    owners: dict[str, list[str]] = {}
    if contacts and members:
        # own-phone holders of the rings' contact phones, among ring members (only they can
        # put a contact "in a flagged ring")
        cdf = session.createDataFrame([(t,) for t in contacts], "token string")
        mdf = session.createDataFrame([(m,) for m in members], "applicant string")
        for r in (edges.filter(F.col("bits").bitwiseAND(F.lit(_PHONE_BIT)) != 0)
                  .join(F.broadcast(cdf), "token")
                  .join(F.broadcast(mdf), "applicant")
                  .select("token", "applicant").collect()):
            owners.setdefault(str(r["token"]), []).append(str(r["applicant"]))
    rings = _score(feats, owners, cfg)
    t3 = time.perf_counter()
    stats: dict[str, Any] = {
        "ring_candidates": len(rings),
        "components_with_rings": len({int(r["component"]) for r in ring_rows}),
        "linked_applicants": cc.nodes,
        "linked_pairs": cc.edges,
        "components_algorithm": cc.algorithm,
        "components_rounds": cc.iterations,
        "links_components_s": round(t1 - t0, 3),
        "ring_features_s": round(t2 - t1, 3),
        "scoring_s": round(t3 - t2, 3),
    }
    return SparkScan(edges=edges, pairs=pairs, components=comps, components_run=cc,
                     rings=tuple(rings), stats=stats)


def _scan_spark(
    applications: Any,
    hasher: IdentifierHasher,
    cfg: GraphConfig,
    fraud: Iterable[str],
    spark: SparkSession | None,
    algorithm: Literal["auto", "builtin", "graphframes"],
    max_iter: int,
) -> ScanResult:
    session = _active_session(spark)
    fraud_tokens = sorted({hasher.token(IdKind.APPLICANT, a) for a in fraud})
    t0 = time.perf_counter()
    hf = hash_applications(applications, hasher, spark=session)
    try:
        summary = hf.summary()
        errors = hf.errors()
        t1 = time.perf_counter()
        run = spark_scan(hf, config=cfg, fraud_tokens=fraud_tokens, algorithm=algorithm,
                         max_iter=max_iter)
        run.unpersist()
    finally:
        hf.unpersist()
    stats = {**run.stats, "read_hash_s": round(t1 - t0, 3)}
    return ScanResult(rings=run.rings, errors=tuple(errors), rows=summary["rows"],
                      applications=summary["applications"],
                      duplicates=summary["duplicates"], backend="spark", stats=stats)


# --- multi-lender velocity -----------------------------------------------------------------------

_KEY_ROLE: Final = {"cell": "phone", "device": "device"}


def _key_events(apps: DataFrame, key: str) -> DataFrame:
    from pyspark.sql import functions as F

    if key == "id":
        return apps.select(F.col("applicant").alias("token"), "ts", "lender_id", "lender_type")
    role = _KEY_ROLE[key]
    return (apps.select(F.explode(F.arrays_zip("link_roles", "link_tokens")).alias("l"), "ts",
                        "lender_id", "lender_type")
            .filter(F.col("l.link_roles") == role)
            .select(F.col("l.link_tokens").alias("token"), "ts", "lender_id", "lender_type"))


def _lender_types(apps: DataFrame, lender_types: Sequence[str] | None) -> tuple[str, ...]:
    if lender_types is not None:
        types = tuple(dict.fromkeys(str(t) for t in lender_types))
        if "all" in types:
            raise ConfigError("lender type 'all' is reserved")
        return types
    return tuple(sorted(str(r[0]) for r in apps.select("lender_type").distinct().collect()))


def _epoch(at: int | float | datetime) -> int:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ConfigError("at must be timezone-aware (or epoch seconds)")
        return math.floor(at.timestamp())
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise ConfigError(f"at must be epoch seconds or a datetime, not {at!r}")
    return math.floor(at)


def velocity_features(
    apps: DataFrame,
    key: Literal["id", "cell", "device"],
    at: int | float | datetime | DataFrame,
    *,
    lender_types: Sequence[str] | None = None,
) -> DataFrame:
    """Multi-lender window counts per key token, as :meth:`VelocityIndex.features` gives them.

    ``apps``: hashed applications (one row per application id). ``key``: ``"id"`` (applicant
    token), ``"cell"`` (own phone token) or ``"device"``. ``at``: epoch seconds (or an aware
    datetime) for every token of that key, or a DataFrame of queries ``(token, at)``.
    ``lender_types``: the types reported (default: every type in ``apps``, sorted). Returns
    ``(token, at, <feature names in VelocityIndex order>)``, zeros where nothing falls in a
    window. Windows are ``(at - w, at]``.

    Distinct lenders are counted without distinct aggregates: a lender counts in a window
    when its latest application in the 12 months up to ``at`` falls inside it (all windows
    end at ``at``).
    """
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import functions as F

    if key not in KEYS:
        raise ConfigError(f"velocity key must be one of {', '.join(KEYS)}, not {key!r}")
    types = _lender_types(apps, lender_types)
    events = _key_events(apps, key)
    if isinstance(at, SparkDataFrame):
        queries = at.select(F.col("token").cast("string"), F.col("at").cast("long")).distinct()
    else:
        queries = events.select("token").distinct().withColumn("at", F.lit(_epoch(at)))
    w_max = max(WINDOWS.values())
    hit = (events.join(queries, "token")
           .filter((F.col("ts") <= F.col("at")) & (F.col("ts") > F.col("at") - w_max)))
    columns = ("all", *types)

    def match(c: str) -> Column:
        return F.lit(True) if c == "all" else F.col("lender_type") == c

    per_lender: list[Column] = []
    for ci, c in enumerate(columns):
        per_lender.append(F.max(F.when(match(c), F.col("ts"))).alias(f"mx{ci}"))
        for wi, w in enumerate(WINDOWS.values()):
            cond = match(c) & (F.col("ts") > F.col("at") - w)
            per_lender.append(F.sum(F.when(cond, 1).otherwise(0)).alias(f"n{ci}_{wi}"))
    stage1 = hit.groupBy("token", "at", "lender_id").agg(*per_lender)
    aggs: list[Column] = []
    names: list[str] = []
    for wi, (wname, w) in enumerate(WINDOWS.items()):
        for ci, c in enumerate(columns):
            allnum = feature_name(wname, key, c, "allnum")
            orgnum = feature_name(wname, key, c, "orgnum")
            aggs.append(F.sum(f"n{ci}_{wi}").cast("long").alias(allnum))
            aggs.append(F.sum(F.when(F.col(f"mx{ci}") > F.col("at") - w, 1).otherwise(0))
                        .cast("long").alias(orgnum))
            names.extend((allnum, orgnum))
    stage2 = stage1.groupBy("token", "at").agg(*aggs)
    return (queries.join(stage2, ["token", "at"], "left")
            .select("token", "at", *[F.coalesce(F.col(n), F.lit(0)).cast("long").alias(n)
                                     for n in names]))


def applicant_velocity(
    apps: DataFrame,
    at: int | float | datetime | DataFrame,
    *,
    lender_types: Sequence[str] | None = None,
) -> DataFrame:
    """Per applicant: ``id`` features plus the busiest own phone and device, as
    :meth:`VelocityIndex.applicant_features` gives them.

    ``at``: epoch seconds for every applicant, or a DataFrame of queries
    ``(applicant, at)``. ``cell``/``device`` features are the maximum over the phone and device
    tokens the applicant used at or before ``at`` (zeros when none). Returns
    ``(applicant, at, <id features>, <cell features>, <device features>)``.
    """
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import functions as F

    types = _lender_types(apps, lender_types)
    if isinstance(at, SparkDataFrame):
        q = at.select(F.col("applicant").cast("string"), F.col("at").cast("long")).distinct()
    else:
        q = apps.select("applicant").distinct().withColumn("at", F.lit(_epoch(at)))
    idf = velocity_features(apps, "id", q.withColumnRenamed("applicant", "token"),
                            lender_types=types).withColumnRenamed("token", "applicant")
    out = q.join(idf, ["applicant", "at"], "left")
    used = (apps.join(q, "applicant").filter(F.col("ts") <= F.col("at"))
            .select("applicant", "at",
                    F.explode(F.arrays_zip("link_roles", "link_tokens")).alias("l"))
            .select("applicant", "at", F.col("l.link_roles").alias("role"),
                    F.col("l.link_tokens").alias("token"))
            .distinct())
    for key in ("cell", "device"):
        mine = used.filter(F.col("role") == _KEY_ROLE[key]).select("applicant", "at", "token")
        feats = velocity_features(apps, key, mine.select("token", "at"), lender_types=types)
        names = [c for c in feats.columns if c not in ("token", "at")]
        best = (mine.join(feats, ["token", "at"])
                .groupBy("applicant", "at").agg(*[F.max(n).alias(n) for n in names]))
        out = out.join(best, ["applicant", "at"], "left")
        out = out.select(*[c for c in out.columns if c not in names],
                         *[F.coalesce(F.col(n), F.lit(0)).cast("long").alias(n)
                           for n in names])
    return out
