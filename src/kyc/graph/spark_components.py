"""Connected components on Spark DataFrames: GraphFrames when present, large-star/small-star
otherwise.

:func:`connected_components` labels every node of an undirected edge list ``(src, dst)`` of
64-bit integer node ids with a component label (a long shared by exactly the nodes of one
component). Two algorithms:

- ``"graphframes"``: GraphFrames' ``connectedComponents`` with its DataFrame algorithm
  (``"two_phase"`` in GraphFrames >= 0.11, ``"graphframes"`` before: large-star/small-star in
  Scala), used when GraphFrames' JVM classes are on the session's class path
  (``spark.jars.packages=io.graphframes:graphframes-spark4_2.13:<version>``, see
  ``docs/spark.md``). The jar is on Maven only, not on PyPI. GraphFrames' ``"graphx"``
  algorithm is never used: DESIGN.md measured it returning wrong components without an
  explicit iteration cap.
- ``"builtin"``: the same large-star/small-star scheme (Kiveris et al., "Connected Components
  in MapReduce and Beyond", SoCC 2014) written in plain DataFrame operations, so it runs
  wherever pyspark runs. Each round is a large-star step (every node links its larger
  neighbours to its smallest neighbour-or-self) then a small-star step (every node links
  itself and its smaller neighbours to the smallest of them); rounds stop when the edge set
  is a forest of stars centred on each component's minimum, which is checked exactly (every
  leaf has one centre, no centre is a leaf). It converges in O(log^2 n) rounds. Intermediate
  edge sets are persisted and, every ``checkpoint_interval`` rounds, checkpointed (reliable
  checkpoint when the SparkContext has a checkpoint dir, local checkpoint otherwise) so the
  query plan does not grow with the rounds. Its labels are the smallest node id of each
  component.

Both paths end with the same check: every input edge joins two nodes of the same label and
every node has a label. A run that reaches ``max_iter`` rounds, or a labelling that fails the
check, raises :class:`~kyc.errors.ConfigError` (never a partial answer).

String node names (applicant tokens) are mapped to dense integer ids first with
:func:`index_nodes`, whose id table is materialised once so ids stay fixed for the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from kyc.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "ComponentsResult",
    "connected_components",
    "has_graphframes",
    "index_nodes",
    "materialise",
]

log = logging.getLogger(__name__)

#: Rounds the built-in algorithm may take before giving up (large-star/small-star needs
#: O(log^2 n): about 10 rounds at 10^6 nodes).
DEFAULT_MAX_ITER: Final = 100

# the Python entry point of GraphFrames' JVM side: newer releases moved it
_GRAPHFRAMES_CLASSES: Final = (
    "org.apache.spark.graphframes.GraphFramePythonAPI",
    "org.graphframes.GraphFramePythonAPI",
)


@dataclass(frozen=True, eq=False)
class ComponentsResult:
    """Labels of a connected-components run.

    ``labels``: DataFrame ``(id: long, component: long)``, one row per node that appears in
    an edge; ``component`` is shared by exactly the nodes of one component (the built-in
    algorithm uses the smallest id in it). ``algorithm``: ``"builtin"`` or
    ``"graphframes"``. ``iterations``: rounds of the built-in algorithm (``0`` for
    GraphFrames, which does not report them). ``nodes`` / ``edges``: sizes of the input.
    """

    labels: DataFrame
    algorithm: str
    iterations: int
    nodes: int
    edges: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (without the DataFrame)."""
        return {"algorithm": self.algorithm, "iterations": self.iterations,
                "nodes": self.nodes, "edges": self.edges}


def has_graphframes(spark: SparkSession) -> bool:
    """Whether GraphFrames' JVM classes are on ``spark``'s class path.

    Never raises: a Spark Connect session (no JVM gateway) or a missing class gives False.
    """
    return _graphframes_api(spark) is not None


def _graphframes_api(spark: SparkSession) -> Any:
    """GraphFrames' ``GraphFramePythonAPI`` instance, or None when the jar is not loaded.

    Looked up through the thread's context class loader, which is the one that sees jars
    added with ``spark.jars.packages`` / ``--packages`` (as GraphFrames' own Python side does).
    """
    try:
        jvm = spark.sparkContext._jvm
        if jvm is None:
            return None
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    except Exception:  # Spark Connect has no sparkContext; a dead gateway
        return None
    for name in _GRAPHFRAMES_CLASSES:
        try:
            return loader.loadClass(name).getDeclaredConstructor().newInstance()
        except Exception:  # Py4JJavaError wrapping ClassNotFoundException
            continue
    return None


def materialise(df: DataFrame, *, reliable: bool | None = None) -> DataFrame:
    """Compute ``df`` once and cut its lineage (checkpoint); return the checkpointed frame.

    ``reliable``: True for a reliable checkpoint (files in the SparkContext's checkpoint
    dir: survives the loss of an executor), False for a local checkpoint (kept by the
    executors' block managers), None to use a reliable one when a checkpoint dir is set.
    A reliable checkpoint is computed into the cache first, so it is computed once.
    """
    from pyspark import StorageLevel

    if reliable is None:
        reliable = _has_checkpoint_dir(df.sparkSession)
    if not reliable:
        return df.localCheckpoint(eager=True)
    cached = df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return cached.checkpoint(eager=True)
    finally:
        cached.unpersist()


def _has_checkpoint_dir(spark: SparkSession) -> bool:
    try:
        return spark.sparkContext.getCheckpointDir() is not None
    except Exception:
        return False


def index_nodes(edges: DataFrame, src: str = "src", dst: str = "dst") -> DataFrame:
    """Dense ``long`` ids for the node names in columns ``src``/``dst`` of ``edges``.

    Returns a materialised (checkpointed) DataFrame ``(name, id)`` with one row per distinct
    name; ids are unique but not contiguous (``monotonically_increasing_id``), fixed once
    computed.
    """
    from pyspark.sql import functions as F

    names = (edges.select(F.col(src).alias("name"))
             .union(edges.select(F.col(dst).alias("name")))
             .distinct())
    return materialise(names.withColumn("id", F.monotonically_increasing_id()))


def connected_components(
    edges: DataFrame,
    *,
    algorithm: Literal["auto", "builtin", "graphframes"] = "auto",
    max_iter: int = DEFAULT_MAX_ITER,
    checkpoint_interval: int = 2,
) -> ComponentsResult:
    """Connected components of the undirected graph given by ``edges`` (``src``, ``dst``: long).

    ``algorithm``: ``"auto"`` (GraphFrames when :func:`has_graphframes`, else built-in),
    ``"builtin"`` or ``"graphframes"`` (:class:`~kyc.errors.ConfigError` when the jar is not on
    the session). Self-loops and repeated edges are allowed. Raises ``ConfigError`` when the
    built-in algorithm has not converged after ``max_iter`` rounds or a labelling fails the
    final check.

    Example (needs a running session)::

        spark = kyc.graph.spark.spark_session()
        e = spark.createDataFrame([(1, 2), (2, 3), (7, 8)], "src long, dst long")
        connected_components(e, algorithm="builtin").labels.collect()
        # ids 1, 2, 3 -> component 1; ids 7, 8 -> component 7
    """
    from pyspark.sql import functions as F

    if algorithm not in ("auto", "builtin", "graphframes"):
        raise ConfigError(
            f"components algorithm must be 'auto', 'builtin' or 'graphframes', not {algorithm!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ConfigError(f"max_iter must be an int >= 1, got {max_iter!r}")
    if not isinstance(checkpoint_interval, int) or checkpoint_interval < 1:
        raise ConfigError(f"checkpoint_interval must be an int >= 1, got {checkpoint_interval!r}")
    spark = edges.sparkSession
    missing = [c for c in ("src", "dst") if c not in edges.columns]
    if missing:
        raise ConfigError(f"edges need columns src and dst (missing {', '.join(missing)})")
    e = edges.select(F.col("src").cast("long").alias("src"),
                     F.col("dst").cast("long").alias("dst"))
    use_gf = algorithm == "graphframes" or (algorithm == "auto" and has_graphframes(spark))
    if algorithm == "graphframes" and not has_graphframes(spark):
        raise ConfigError(
            "GraphFrames is not on this Spark session: start it with "
            "spark.jars.packages=io.graphframes:graphframes-spark4_2.13:<version> "
            "(see docs/spark.md) or use algorithm='builtin'")
    if use_gf:
        labels, iterations = _graphframes(spark, e, max_iter, checkpoint_interval), 0
        name = "graphframes"
    else:
        labels, iterations = _large_small_star(e, max_iter, checkpoint_interval)
        name = "builtin"
    n_nodes, n_edges = _check_labels(e, labels, name)
    return ComponentsResult(labels=labels, algorithm=name, iterations=iterations,
                            nodes=n_nodes, edges=n_edges)


# --- built-in large-star / small-star ---------------------------------------------------------


def _large_small_star(
    edges: DataFrame, max_iter: int, checkpoint_interval: int
) -> tuple[DataFrame, int]:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    level = StorageLevel.MEMORY_AND_DISK
    # orient every edge small -> large, drop self-loops and repeats
    ee = (edges.filter(F.col("src") != F.col("dst"))
          .select(F.least("src", "dst").alias("src"), F.greatest("src", "dst").alias("dst"))
          .distinct()
          .persist(level))
    rounds = 0
    while not _is_star_forest(ee):  # one job per round; it also fills the cache of `ee`
        if rounds >= max_iter:
            ee.unpersist()
            raise ConfigError(
                f"connected components did not converge in max_iter={max_iter} rounds; "
                "raise max_iter (large-star/small-star needs O(log^2 n) rounds)")
        rounds += 1
        # large-star: min over the node and all its neighbours; link larger neighbours to it
        sym = ee.union(ee.select(F.col("dst").alias("src"), F.col("src").alias("dst")))
        m1 = (sym.groupBy("src").agg(F.min("dst").alias("m"))
              .select("src", F.least("src", "m").alias("m")))
        large = (ee.join(m1, "src")
                 .select(F.col("dst").alias("src"), F.col("m").alias("dst"))  # src > dst
                 .distinct())
        # small-star: link the node and its smaller neighbours to the smallest of them
        m2 = large.groupBy("src").agg(F.min("dst").alias("m"))  # m < src
        small = (large.join(m2, "src")
                 .select(F.col("m").alias("src"), F.col("dst"))
                 .filter(F.col("src") != F.col("dst"))
                 .union(m2.select(F.col("m").alias("src"), F.col("src").alias("dst")))
                 .distinct())
        nxt = materialise(small) if rounds % checkpoint_interval == 0 else small.persist(level)
        ee.unpersist()
        ee = nxt
        log.debug("components round %d done", rounds)
    labels = (ee.select(F.col("dst").alias("id"), F.col("src").alias("component"))
              .union(ee.select(F.col("src").alias("id"), F.col("src").alias("component")))
              .distinct())
    out = materialise(labels)
    ee.unpersist()
    return out, rounds


def _is_star_forest(ee: DataFrame) -> bool:
    """Whether ``ee`` (src < dst) is a forest of stars: every leaf (dst) has one centre (src)
    and no centre is itself a leaf. Large-star/small-star leaves such a forest unchanged, and
    it has the components of the input, so this is the exact stopping rule (one job)."""
    from pyspark.sql import functions as F

    ends = (ee.select(F.col("src").alias("x"), F.lit(0).alias("leaf"), F.lit(1).alias("centre"))
            .union(ee.select(F.col("dst").alias("x"), F.lit(1).alias("leaf"),
                             F.lit(0).alias("centre"))))
    per_node = ends.groupBy("x").agg(F.sum("leaf").alias("leaf"), F.max("centre").alias("centre"))
    bad = per_node.filter((F.col("leaf") > 1) | ((F.col("leaf") >= 1) & (F.col("centre") == 1)))
    return bad.limit(1).count() == 0


# --- GraphFrames --------------------------------------------------------------------------------


def _graphframes(
    spark: SparkSession, edges: DataFrame, max_iter: int, checkpoint_interval: int
) -> DataFrame:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import functions as F

    if not _has_checkpoint_dir(spark):
        raise ConfigError(
            "GraphFrames' connected components need a checkpoint dir: "
            "spark.sparkContext.setCheckpointDir(...) (kyc.graph.spark.spark_session sets one)")
    vertices = (edges.select(F.col("src").alias("id"))
                .union(edges.select(F.col("dst").alias("id"))).distinct())
    api = _graphframes_api(spark)
    if api is None:
        raise ConfigError("GraphFrames is not on this Spark session")
    graph = api.createGraph(vertices._jdf, edges._jdf)
    cc = graph.connectedComponents()
    try:  # GraphFrames >= 0.11 names its large-star/small-star scheme "two_phase"
        cc = cc.setAlgorithm("two_phase")
    except Exception:
        cc = cc.setAlgorithm("graphframes")
    cc = cc.setCheckpointInterval(int(checkpoint_interval))
    try:  # not every release has the setter (and "two_phase" does not need it)
        cc = cc.setMaxIter(int(max_iter))
    except Exception:
        log.debug("this GraphFrames version has no setMaxIter")
    jdf = cc.run()
    out = SparkDataFrame(jdf, spark)
    return materialise(out.select(F.col("id").cast("long").alias("id"),
                                  F.col("component").cast("long").alias("component")))


# --- final check --------------------------------------------------------------------------------


def _check_labels(edges: DataFrame, labels: DataFrame, algorithm: str) -> tuple[int, int]:
    """Raise unless every node has one label and every edge joins two equally labelled nodes."""
    from pyspark.sql import functions as F

    nodes = (edges.select(F.col("src").alias("id"))
             .union(edges.select(F.col("dst").alias("id"))).distinct())
    cover = (nodes.withColumn("node", F.lit(1))
             .join(labels.withColumn("label", F.lit(1)), "id", "full_outer")
             .agg(F.count("node").alias("nodes"), F.count("label").alias("labels"),
                  F.count(F.when(F.col("node").isNull() | F.col("label").isNull(), 1))
                  .alias("unmatched"))
             .collect()[0])
    la = labels.select(F.col("id").alias("src"), F.col("component").alias("ca"))
    lb = labels.select(F.col("id").alias("dst"), F.col("component").alias("cb"))
    row = (edges.join(la, "src", "left").join(lb, "dst", "left")
           .agg(F.count(F.lit(1)).alias("edges"),
                F.count(F.when(F.col("ca").isNull() | F.col("cb").isNull()
                               | (F.col("ca") != F.col("cb")), 1)).alias("bad"))
           .collect()[0])
    if int(cover["unmatched"]) or int(cover["nodes"]) != int(cover["labels"]) or int(row["bad"]):
        raise ConfigError(
            f"connected components ({algorithm}) returned an inconsistent labelling "
            f"({cover['labels']} labels for {cover['nodes']} nodes, {row['bad']} edges across "
            "labels); refusing to use it")
    return int(cover["nodes"]), int(row["edges"])
