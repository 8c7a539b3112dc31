"""Dense lockstep blocks: FRAUDAR-style greedy peeling on the applicant x identifier matrix.

Fraud rings reuse a few devices, cards and phones across many identities, so their rows and
columns form a block far denser than honest behaviour. FRAUDAR (Hooi et al., KDD 2016) finds
such blocks by greedy peeling: start from the whole bipartite graph, repeatedly remove the
node (row or column) whose removal loses the least edge weight, and keep the intermediate node
set with the highest density ``g(S) = f(S) / |S|`` (``f`` = summed edge weight inside ``S``).
Peeling is a 2-approximation of the densest subgraph for this objective.

Camouflage resistance comes from the column weights: an edge into identifier ``j`` weighs
``1 / log(degree_j + c)`` (``c`` = 5), so links to popular identifiers (the honest people a
fraudster also connects to, carrier IPs) count for little, and adding camouflage edges cannot
raise a block's density much.

>>> import numpy as np
>>> from scipy.sparse import csr_matrix
>>> rng = np.random.default_rng(0)
>>> m = (rng.random((60, 40)) < 0.03).astype(np.int8)
>>> m[:8, :5] = 1                                  # a planted 8 x 5 block
>>> block = fraudar(csr_matrix(m))[0]
>>> sorted(block.rows.tolist()), sorted(block.cols.tolist())
([0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4])
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.sparse import csc_matrix, csr_matrix

from kyc.errors import ConfigError

__all__ = ["DenseBlock", "block_density", "column_weights", "fraudar", "peel"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class DenseBlock:
    """One dense block: row and column indices, density ``g = mass / (rows + cols)``, mass."""

    rows: I64
    cols: I64
    density: float
    mass: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "rows": self.rows.tolist(),
            "cols": self.cols.tolist(),
            "density": self.density,
            "mass": self.mass,
        }


def column_weights(degree: npt.ArrayLike, offset: float = 5.0) -> F64:
    """FRAUDAR's camouflage-resistant column weights ``1 / log(degree + offset)``.

    >>> column_weights([1, 10, 1000]).round(3).tolist()
    [0.558, 0.369, 0.145]
    """
    d = np.asarray(degree, dtype=np.float64)
    if not offset > 1.0:
        raise ConfigError(f"offset must be > 1, got {offset!r}")
    if d.size and d.min() < 0:
        raise ConfigError("degrees must be >= 0")
    return np.asarray(1.0 / np.log(d + offset))


def peel(
    rows: npt.ArrayLike, cols: npt.ArrayLike, weights: npt.ArrayLike, n_rows: int, n_cols: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], float, float]:
    """Greedy peeling of a weighted bipartite edge list; the densest intermediate node set.

    ``rows[k], cols[k], weights[k]`` are the edges (weights > 0). Returns
    ``(row_mask, col_mask, density, mass)`` of the best set. Ties are broken by node index
    (rows before columns), so the result is deterministic. ``O(E log N)`` with a lazy heap.
    """
    r = [int(x) for x in np.asarray(rows, dtype=np.int64).ravel().tolist()]
    c = [int(x) for x in np.asarray(cols, dtype=np.int64).ravel().tolist()]
    w = [float(x) for x in np.asarray(weights, dtype=np.float64).ravel().tolist()]
    if not (len(r) == len(c) == len(w)):
        raise ConfigError("rows, cols and weights must have the same length")
    keep_rows, keep_cols, density, mass = _peel_lists(r, c, w, n_rows, n_cols)
    return np.asarray(keep_rows, dtype=bool), np.asarray(keep_cols, dtype=bool), density, mass


def block_density(
    rows: list[int], cols: list[int], weights: list[float], n_rows: int, n_cols: int
) -> float:
    """Density of the densest block :func:`peel` finds, for small edge lists (plain lists).

    >>> block_density([0, 1, 2], [0, 0, 0], [1.0, 1.0, 1.0], 3, 1)
    0.75
    """
    return _peel_lists(rows, cols, weights, n_rows, n_cols)[2]


def _peel_lists(
    r: list[int], c: list[int], w: list[float], n_rows: int, n_cols: int
) -> tuple[list[bool], list[bool], float, float]:
    n = n_rows + n_cols
    if not r or n == 0:
        return [False] * n_rows, [False] * n_cols, 0.0, 0.0
    adj: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    prio = [0.0] * n
    total = 0.0
    for i, j, x in zip(r, c, w, strict=True):
        if not x > 0:
            raise ConfigError("edge weights must be > 0")
        if not (0 <= i < n_rows and 0 <= j < n_cols):
            raise ConfigError("edge index out of range")
        jj = n_rows + j
        adj[i].append((jj, x))
        adj[jj].append((i, x))
        prio[i] += x
        prio[jj] += x
        total += x
    alive = [p > 0 for p in prio]  # isolated nodes never help density
    size = sum(alive)
    mass = total
    best = mass / size
    best_step = 0
    heap = [(prio[i], i) for i in range(n) if alive[i]]
    heapq.heapify(heap)
    removed: list[int] = []
    while heap and size > 1:
        p, x = heapq.heappop(heap)
        if not alive[x] or p != prio[x]:
            continue
        alive[x] = False
        removed.append(x)
        mass -= p
        size -= 1
        for y, wy in adj[x]:
            if alive[y]:
                prio[y] -= wy
                heapq.heappush(heap, (prio[y], y))
        g = max(mass, 0.0) / size
        if g > best + 1e-12:
            best = g
            best_step = len(removed)
    keep = [bool(adj[i]) for i in range(n)]
    for x in removed[:best_step]:
        keep[x] = False
    best_mass = 0.0
    for i, j, x in zip(r, c, w, strict=True):
        if keep[i] and keep[n_rows + j]:
            best_mass += x
    nodes = sum(keep)
    return keep[:n_rows], keep[n_rows:], (best_mass / nodes if nodes else 0.0), best_mass


def fraudar(
    matrix: Any,
    *,
    col_weights: npt.ArrayLike | None = None,
    offset: float = 5.0,
    n_blocks: int = 1,
) -> list[DenseBlock]:
    """Find up to ``n_blocks`` dense blocks in a rows x columns (applicant x identifier) matrix.

    ``matrix``: scipy sparse or dense array; non-zero entries are edges (values ignored).
    ``col_weights``: weight of an edge into each column; default ``1/log(col_degree + offset)``.
    Each found block's edges are removed before the next search. Returns the blocks in the
    order found (densest first, up to the 2-approximation).
    """
    if n_blocks < 1:
        raise ConfigError(f"n_blocks must be >= 1, got {n_blocks}")
    m = csr_matrix(matrix)
    m.eliminate_zeros()
    coo = m.tocoo()
    rows = coo.row.astype(np.int64)
    cols = coo.col.astype(np.int64)
    n_rows, n_cols = m.shape
    if col_weights is None:
        deg = np.asarray(csc_matrix(m).getnnz(axis=0))
        cw = column_weights(deg, offset)
    else:
        cw = np.asarray(col_weights, dtype=np.float64)
        if cw.shape != (n_cols,):
            raise ConfigError(f"col_weights must have one value per column ({n_cols})")
        if cw.size and (not np.isfinite(cw).all() or cw.min() <= 0):
            raise ConfigError("col_weights must be finite and > 0")
    out: list[DenseBlock] = []
    for _ in range(n_blocks):
        if rows.size == 0:
            break
        rmask, cmask, density, mass = peel(rows, cols, cw[cols], int(n_rows), int(n_cols))
        if mass <= 0 or not math.isfinite(density):
            break
        out.append(DenseBlock(np.flatnonzero(rmask), np.flatnonzero(cmask), density, mass))
        keep = ~(rmask[rows] & cmask[cols])
        rows, cols = rows[keep], cols[keep]
    return out
