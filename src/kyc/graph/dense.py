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
from scipy.sparse import csc_matrix, csr_matrix, issparse

from kyc.errors import ConfigError

__all__ = ["DenseBlock", "column_weights", "fraudar", "peel"]

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
    r = np.asarray(rows, dtype=np.int64)
    c = np.asarray(cols, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    if not (r.shape == c.shape == w.shape):
        raise ConfigError("rows, cols and weights must have the same length")
    n = n_rows + n_cols
    if r.size == 0 or n == 0:
        return np.zeros(n_rows, dtype=bool), np.zeros(n_cols, dtype=bool), 0.0, 0.0
    if w.min() <= 0:
        raise ConfigError("edge weights must be > 0")
    # node ids: rows 0..n_rows-1, cols n_rows..n-1; adjacency as CSR over all nodes
    u = np.concatenate([r, c + n_rows])
    v = np.concatenate([c + n_rows, r])
    ww = np.concatenate([w, w])
    order = np.argsort(u, kind="stable")
    u, v, ww = u[order], v[order], ww[order]
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(u, minlength=n), out=ptr[1:])
    deg_w = np.bincount(u, weights=ww, minlength=n)
    active = deg_w > 0  # isolated nodes never help density
    mass = float(w.sum())
    size = int(active.sum())
    best = mass / size
    best_step = 0
    prio = deg_w.tolist()
    heap = [(prio[i], i) for i in np.flatnonzero(active).tolist()]
    heapq.heapify(heap)
    alive = active.tolist()
    removed: list[int] = []
    vl, wl, pl = v.tolist(), ww.tolist(), ptr.tolist()
    while heap and size > 1:
        p, x = heapq.heappop(heap)
        if not alive[x] or p != prio[x]:
            continue
        alive[x] = False
        removed.append(x)
        mass -= p
        size -= 1
        for k in range(pl[x], pl[x + 1]):
            y = vl[k]
            if alive[y]:
                prio[y] -= wl[k]
                heapq.heappush(heap, (prio[y], y))
        mass = max(mass, 0.0)
        g = mass / size
        if g > best + 1e-12:
            best = g
            best_step = len(removed)
    keep = active.copy()
    if best_step:
        keep[np.asarray(removed[:best_step], dtype=np.int64)] = False
    row_mask = keep[:n_rows]
    col_mask = keep[n_rows:]
    inside = row_mask[r] & col_mask[c]
    best_mass = float(w[inside].sum())
    nodes = int(row_mask.sum() + col_mask.sum())
    return row_mask, col_mask, (best_mass / nodes if nodes else 0.0), best_mass


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
    m = csr_matrix(matrix) if not issparse(matrix) else csr_matrix(matrix)
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
        rmask, cmask, density, mass = peel(rows, cols, cw[cols], n_rows, n_cols)
        if mass <= 0 or not math.isfinite(density):
            break
        out.append(DenseBlock(np.flatnonzero(rmask), np.flatnonzero(cmask), density, mass))
        keep = ~(rmask[rows] & cmask[cols])
        rows, cols = rows[keep], cols[keep]
    return out
