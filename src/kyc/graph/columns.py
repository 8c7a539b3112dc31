"""Columnar, integer-coded form of a set of hashed applications, and the graph built from it.

The batch path (:meth:`kyc.graph.FraudGraph.scan`, the benchmarks) does not need Python
objects per application: it needs, per applicant, the identifiers it holds and in which roles,
its application times and its thin-file flag. :class:`LinkColumns` keeps exactly that as numpy
arrays, with every token (applicant and identifier) replaced by an integer *token code*:

- ``tokens``: every distinct token as UTF-8 bytes; a token's code is its position.
- per application (store order): applicant code, epoch seconds, thin-file flag (-1 unknown)
  and the application id (only used to break ties between same-second applications).
- per distinct (applicant, identifier) *edge*: applicant code, identifier code and the bitmask
  of roles (:data:`kyc.graph.build.ROLES`) the applicant used it in, sorted by applicant code
  then identifier code.

:class:`~kyc.graph.store.SQLiteStore` persists this form next to its rows (see
:meth:`~kyc.graph.store.SQLiteStore.columns`), so a scan of a stored graph reads a few arrays
instead of re-factorising millions of token strings; new applications are folded in with
:func:`merge_columns`. :func:`graph_from_columns` turns columns into the
:class:`~kyc.graph.build.BipartiteGraph` (applicants and identifiers numbered in token-code
order), with token strings decoded only when asked for; :func:`~kyc.graph.build.build_graph`
is this same path applied to objects.

Strings are stored as UTF-8 followed by one ``\\x01`` byte, so that numpy's fixed-width bytes
(which drop trailing NULs) give every string back unchanged; :func:`decode` strips it.

>>> from kyc.graph.records import HashedApplication
>>> dev = "device:" + "d" * 32
>>> apps = [HashedApplication(f"a{i}", f"applicant:{i:032d}", "L1", "bank", 1_700_000_000 + i,
...                           (("device", dev),)) for i in range(3)]
>>> cols = columns_from_apps(apps)
>>> cols.n_applications, cols.n_tokens, cols.n_edges
(3, 4, 3)
>>> g = graph_from_columns(cols)
>>> g.n_applicants, list(g.identifiers) == [dev], g.degree.tolist()
(3, True, [3])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from kyc.errors import ConfigError
from kyc.graph.build import _KIND_CODE, _ROLE_BIT, ROLES, BipartiteGraph
from kyc.graph.records import HashedApplication

__all__ = [
    "ColumnsBuilder",
    "LinkColumns",
    "TokenView",
    "columns_from_apps",
    "decode",
    "graph_from_columns",
    "merge_columns",
]

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
Bytes = npt.NDArray[np.bytes_]

#: Array names of a :class:`LinkColumns`, with their dtypes (the persisted layout).
ARRAYS: dict[str, str] = {
    "tokens": "S",
    "token_kind": "int8",
    "token_order": "int32",
    "app_ids": "S",
    "app_applicant": "int32",
    "app_ts": "int64",
    "app_thin": "int8",
    "edge_app": "int32",
    "edge_tok": "int32",
    "edge_roles": "int16",
}


#: Every stored string ends with this byte: numpy's fixed-width bytes drop trailing NULs, and
#: with a terminator a string ending in NUL comes back unchanged.
_END = "\x01"


def _encode(strings: Sequence[str]) -> Bytes:
    """UTF-8 fixed-width bytes, each string followed by :data:`_END`."""
    if not strings:
        return np.zeros(0, dtype="S1")
    ended = [s + _END for s in strings]
    if "".join(ended).isascii():  # the common case (hex tokens): numpy encodes in C
        return np.array(ended, dtype=f"S{max(map(len, ended))}")
    raw = [s.encode("utf-8") for s in ended]
    return np.asarray(raw, dtype=f"S{max(len(b) for b in raw)}")


def decode(values: Sequence[bytes]) -> list[str]:
    """Strings back from :func:`_encode`'d bytes (for example ``LinkColumns.app_ids``)."""
    return [b[:-1].decode("utf-8") for b in values]


class TokenView(Sequence[str]):
    """A read-only sequence of tokens selected from a :class:`LinkColumns`' token table.

    Items are decoded from UTF-8 on access, so a graph of millions of applicants costs no
    Python string until one is asked for.
    """

    __slots__ = ("_codes", "_source")

    def __init__(self, source: LinkColumns, codes: I32) -> None:
        self._source = source
        self._codes = codes

    @property
    def codes(self) -> I32:
        """Token codes of the items (positions in :attr:`LinkColumns.tokens`)."""
        return self._codes

    def __len__(self) -> int:
        return int(self._codes.size)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        return bytes(self._source.tokens[self._codes[i]])[:-1].decode("utf-8")

    def take(self, positions: npt.ArrayLike) -> list[str]:
        """The items at ``positions``, decoded in one vectorised gather."""
        pos = np.asarray(positions, dtype=np.int64)
        return decode(self._source.tokens[self._codes[pos]].tolist())

    def __iter__(self) -> Iterator[str]:
        return iter(self.take(np.arange(len(self))))

    def __repr__(self) -> str:
        return f"TokenView({len(self)} tokens)"


@dataclass(frozen=True, eq=False)
class LinkColumns:
    """Integer-coded columns of a set of hashed applications (see the module docstring).

    Attributes:
        token_kind: per token, index into :data:`kyc.graph.build.KINDS` (-1 unknown prefix).
        token_order: token codes in byte order of their tokens (for merging by lookup;
            computed on first use when not given).
        app_ids, app_applicant, app_ts, app_thin: per application, in input order.
        edge_app, edge_tok, edge_roles: per distinct (applicant, identifier) pair.
        last_seq: the store sequence number these columns cover (0 when not from a store).

    ``tokens`` may be loaded lazily (a store passes a loader), since the linking stage never
    reads it.
    """

    token_kind: npt.NDArray[np.int8]
    app_ids: Bytes
    app_applicant: I32
    app_ts: I64
    app_thin: npt.NDArray[np.int8]
    edge_app: I32
    edge_tok: I32
    edge_roles: npt.NDArray[np.int16]
    last_seq: int = 0
    _tokens: Bytes | None = None
    _token_loader: Callable[[], Bytes] | None = None
    _token_order: I32 | None = None

    @property
    def token_order(self) -> I32:
        """Token codes sorted by their tokens' bytes."""
        if self._token_order is None:
            object.__setattr__(self, "_token_order",
                               np.argsort(self.tokens, kind="stable").astype(np.int32))
        assert self._token_order is not None
        return self._token_order

    @property
    def tokens(self) -> Bytes:
        """Every distinct token (UTF-8 bytes); a token's code is its position."""
        if self._tokens is None:
            if self._token_loader is None:
                raise ConfigError("LinkColumns has neither tokens nor a token loader")
            loaded = self._token_loader()
            if loaded.shape != self.token_kind.shape:
                raise ConfigError("token table does not match the columns it belongs to")
            object.__setattr__(self, "_tokens", loaded)
        assert self._tokens is not None
        return self._tokens

    @property
    def n_tokens(self) -> int:
        """Distinct tokens (applicants and identifiers)."""
        return int(self.token_kind.size)

    @property
    def n_applications(self) -> int:
        """Applications covered."""
        return int(self.app_applicant.size)

    @property
    def n_edges(self) -> int:
        """Distinct (applicant, identifier) edges."""
        return int(self.edge_app.size)

    def arrays(self) -> dict[str, np.ndarray[Any, Any]]:
        """Every array by name (the persisted layout, :data:`ARRAYS`); loads the tokens."""
        return {name: (self.tokens if name == "tokens" else getattr(self, name))
                for name in ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray[Any, Any]], *, last_seq: int = 0,
                    token_loader: Callable[[], Bytes] | None = None) -> LinkColumns:
        """Rebuild from :meth:`arrays` output (``tokens`` may be left to ``token_loader``).

        Checks that the arrays agree with each other; raises
        :class:`~kyc.errors.ConfigError` when they do not.
        """
        missing = [n for n in ARRAYS if n not in arrays and n != "tokens"]
        if missing:
            raise ConfigError(f"columns are missing arrays {missing}")
        cols = cls(
            token_kind=np.asarray(arrays["token_kind"], dtype=np.int8),
            app_ids=np.asarray(arrays["app_ids"]),
            app_applicant=np.asarray(arrays["app_applicant"], dtype=np.int32),
            app_ts=np.asarray(arrays["app_ts"], dtype=np.int64),
            app_thin=np.asarray(arrays["app_thin"], dtype=np.int8),
            edge_app=np.asarray(arrays["edge_app"], dtype=np.int32),
            edge_tok=np.asarray(arrays["edge_tok"], dtype=np.int32),
            edge_roles=np.asarray(arrays["edge_roles"], dtype=np.int16),
            last_seq=int(last_seq),
            _tokens=arrays.get("tokens"),
            _token_loader=token_loader,
            _token_order=np.asarray(arrays["token_order"], dtype=np.int32),
        )
        cols.check()
        return cols

    def check(self) -> None:
        """Raise :class:`~kyc.errors.ConfigError` unless the arrays are consistent."""
        n_tok, n_app, n_edge = self.n_tokens, self.n_applications, self.n_edges
        problems = []
        order = self._token_order
        if order is not None and order.size != n_tok:
            problems.append("token_order length")
        if not (self.app_ids.size == self.app_ts.size == self.app_thin.size == n_app):
            problems.append("application array lengths")
        if not (self.edge_tok.size == self.edge_roles.size == n_edge):
            problems.append("edge array lengths")
        for name, arr in (("app_applicant", self.app_applicant), ("edge_app", self.edge_app),
                          ("edge_tok", self.edge_tok),
                          ("token_order", order if order is not None else self.edge_tok[:0])):
            if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n_tok):
                problems.append(f"{name} out of range")
        if self._tokens is not None and self._tokens.size != n_tok:
            problems.append("tokens length")
        if problems:
            raise ConfigError("inconsistent columns: " + ", ".join(problems))


def _edges_from(app_code: I64, tok_code: I64, role_bits: I64, n_tokens: int
                ) -> tuple[I32, I32, npt.NDArray[np.int16]]:
    """Unique (applicant, token) edges with roles OR-ed, sorted by applicant then token."""
    key = app_code * max(n_tokens, 1) + tok_code
    order = np.argsort(key, kind="stable")
    key = key[order]
    bits = role_bits[order].astype(np.int16)
    if key.size == 0:
        z = np.zeros(0, dtype=np.int32)
        return z, z.copy(), np.zeros(0, dtype=np.int16)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    roles = np.bitwise_or.reduceat(bits, starts).astype(np.int16)
    ukey = key[starts]
    n = max(n_tokens, 1)
    return (ukey // n).astype(np.int32), (ukey % n).astype(np.int32), roles


class ColumnsBuilder:
    """Builds :class:`LinkColumns` from applications fed in chunks, with one token dictionary.

    Feeding a million applications as ten chunks costs the same as one call of
    :func:`columns_from_apps` (no merging), while only one chunk of objects is alive at a
    time. A repeated ``application_id`` is read once (the first).
    """

    def __init__(self) -> None:
        self._code: dict[str, int] = {}
        self._seen: set[str] = set()
        self._app_ids: list[str] = []
        self._app_applicant: list[I32] = []
        self._app_ts: list[I64] = []
        self._app_thin: list[npt.NDArray[np.int8]] = []
        self._e_app: list[I32] = []
        self._e_tok: list[I32] = []
        self._e_bits: list[npt.NDArray[np.int16]] = []

    def _fresh(self, rows: list[Any], app_id: Callable[[Any], str]) -> list[Any]:
        """``rows`` minus ids already added, keeping the first of ids repeated within."""
        seen = self._seen
        first: dict[str, Any] = {}
        for r in rows:
            key = app_id(r)
            if key not in seen:
                first.setdefault(key, r)
        return list(first.values())

    def _bits(self, roles: Iterable[str]) -> npt.NDArray[np.int16]:
        try:
            return np.array([_ROLE_BIT[r] for r in roles], dtype=np.int16)
        except KeyError as exc:
            raise ConfigError(f"unknown link role {exc.args[0]!r}; expected one of "
                              f"{', '.join(ROLES)}") from None

    def _push(self, applicant: I32, edge_app: I32, tok: I32, bits: npt.NDArray[np.int16],
              ts: list[int], thin: list[Any], ids: list[str]) -> None:
        """Append one chunk (applicant and token codes already assigned)."""
        self._e_tok.append(tok)
        self._e_app.append(edge_app)
        self._e_bits.append(bits)
        self._app_applicant.append(applicant)
        self._app_ts.append(np.array(ts, dtype=np.int64))
        self._app_thin.append(np.array([-1 if t is None else int(bool(t)) for t in thin],
                                       dtype=np.int8))
        self._app_ids.extend(ids)
        self._seen.update(ids)

    def add(self, apps: Iterable[HashedApplication]) -> None:
        """Fold in ``apps``. Raises :class:`~kyc.errors.ConfigError` on an unknown link role
        (nothing of that chunk is kept)."""
        items: list[HashedApplication] = self._fresh(list(apps), lambda h: h.application_id)
        bits = self._bits(r for h in items for r, _ in h.links)
        code = self._code
        put = code.setdefault
        applicant = np.array([put(h.applicant, len(code)) for h in items], dtype=np.int32)
        counts = np.array([len(h.links) for h in items], dtype=np.int64)
        tok = np.array([put(t, len(code)) for h in items for _, t in h.links], dtype=np.int32)
        self._push(applicant, np.repeat(applicant, counts), tok, bits,
                   [h.ts for h in items], [h.thin_file for h in items],
                   [h.application_id for h in items])

    def add_rows(self, app_rows: Sequence[tuple[Any, ...]],
                 link_rows: Sequence[tuple[Any, ...]]) -> None:
        """Fold in applications given as store rows, without building objects.

        ``app_rows``: ``(seq, application_id, applicant, ts, thin_file or None)`` with
        increasing ``seq``; ``link_rows``: ``(app_seq, role, token)`` of those applications.
        Links of an ``app_seq`` not in ``app_rows`` are ignored. Raises
        :class:`~kyc.errors.ConfigError` on an unknown link role or unordered rows.
        """
        rows = self._fresh(list(app_rows), lambda r: r[1])
        seqs = np.array([r[0] for r in rows], dtype=np.int64)
        if seqs.size and np.any(np.diff(seqs) <= 0):
            raise ConfigError("application rows must come in increasing seq order")
        bits = self._bits(r[1] for r in link_rows)
        link_seq = np.array([r[0] for r in link_rows], dtype=np.int64)
        pos = np.searchsorted(seqs, link_seq)
        pos_c = np.minimum(pos, max(seqs.size - 1, 0))
        ok = (pos < seqs.size) & (seqs[pos_c] == link_seq) if seqs.size else \
            np.zeros(link_seq.size, dtype=bool)
        code = self._code
        put = code.setdefault
        applicant = np.array([put(r[2], len(code)) for r in rows], dtype=np.int32)
        tok = np.array([put(r[2], len(code)) for r in link_rows], dtype=np.int32)
        if not ok.all():
            tok, bits, pos_c = tok[ok], bits[ok], pos_c[ok]
        self._push(applicant, applicant[pos_c] if applicant.size else applicant, tok, bits,
                   [r[3] for r in rows], [r[4] for r in rows], [r[1] for r in rows])

    def build(self, *, last_seq: int = 0) -> LinkColumns:
        """The columns of everything added."""
        tokens = list(self._code)
        token_arr = _encode(tokens)
        kind = np.asarray([_KIND_CODE.get(t.partition(":")[0], -1) for t in tokens],
                          dtype=np.int8)

        def cat(parts: Sequence[np.ndarray[Any, Any]], dtype: Any) -> Any:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        e_app, e_tok, e_roles = _edges_from(cat(self._e_app, np.int32).astype(np.int64),
                                            cat(self._e_tok, np.int32).astype(np.int64),
                                            cat(self._e_bits, np.int16).astype(np.int64),
                                            len(tokens))
        return LinkColumns(
            token_kind=kind,
            app_ids=_encode(self._app_ids),
            app_applicant=cat(self._app_applicant, np.int32),
            app_ts=cat(self._app_ts, np.int64),
            app_thin=cat(self._app_thin, np.int8),
            edge_app=e_app,
            edge_tok=e_tok,
            edge_roles=e_roles,
            last_seq=int(last_seq),
            _tokens=token_arr,
        )


def columns_from_apps(apps: Iterable[HashedApplication], *, last_seq: int = 0) -> LinkColumns:
    """Columns of hashed applications (a repeated ``application_id`` is read once, the first).

    Raises :class:`~kyc.errors.ConfigError` on a link role outside
    :data:`kyc.graph.build.ROLES`.
    """
    builder = ColumnsBuilder()
    builder.add(apps)
    return builder.build(last_seq=last_seq)


def _common_width(a: Bytes, b: Bytes) -> tuple[Bytes, Bytes]:
    w = max(a.dtype.itemsize, b.dtype.itemsize, 1)
    return a.astype(f"S{w}"), b.astype(f"S{w}")


def merge_columns(base: LinkColumns, delta: LinkColumns) -> LinkColumns:
    """``base`` followed by ``delta`` (applications assumed disjoint, as a store keeps them).

    Tokens of ``delta`` are looked up in ``base`` by binary search over ``token_order``; new
    ones get the next codes. Edges are re-merged so every (applicant, identifier) pair is one
    edge with the union of its roles. ``last_seq`` is the larger of the two.
    """
    if delta.n_applications == 0:
        return base
    if base.n_applications == 0 and base.n_tokens == 0:
        return delta
    b_tok, d_tok = _common_width(base.tokens, delta.tokens)
    sorted_base = b_tok[base.token_order]
    pos = np.searchsorted(sorted_base, d_tok)
    pos_c = np.minimum(pos, max(sorted_base.size - 1, 0))
    found = (pos < sorted_base.size) & (sorted_base[pos_c] == d_tok) if sorted_base.size else \
        np.zeros(d_tok.size, dtype=bool)
    remap = np.empty(delta.n_tokens, dtype=np.int64)
    remap[found] = base.token_order[pos_c[found]]
    new = np.flatnonzero(~found)
    remap[new] = base.n_tokens + np.arange(new.size)
    tokens = np.concatenate([b_tok, d_tok[new]])
    token_kind = np.concatenate([base.token_kind, delta.token_kind[new]])
    # the new tokens' sorted positions interleave into the base order
    new_sorted = new[np.argsort(d_tok[new], kind="stable")]
    ins = np.searchsorted(sorted_base, d_tok[new_sorted])
    token_order = np.insert(base.token_order.astype(np.int64), ins,
                            remap[new_sorted]).astype(np.int32)
    e_app = np.concatenate([base.edge_app.astype(np.int64), remap[delta.edge_app]])
    e_tok = np.concatenate([base.edge_tok.astype(np.int64), remap[delta.edge_tok]])
    e_bits = np.concatenate([base.edge_roles, delta.edge_roles]).astype(np.int64)
    edge_app, edge_tok, edge_roles = _edges_from(e_app, e_tok, e_bits, int(tokens.size))
    a_ids, d_ids = _common_width(base.app_ids, delta.app_ids)
    return LinkColumns(
        token_kind=token_kind,
        _token_order=token_order,
        app_ids=np.concatenate([a_ids, d_ids]),
        app_applicant=np.concatenate([base.app_applicant.astype(np.int64),
                                      remap[delta.app_applicant]]).astype(np.int32),
        app_ts=np.concatenate([base.app_ts, delta.app_ts]),
        app_thin=np.concatenate([base.app_thin, delta.app_thin]),
        edge_app=edge_app,
        edge_tok=edge_tok,
        edge_roles=edge_roles,
        last_seq=max(base.last_seq, delta.last_seq),
        _tokens=tokens,
    )


def graph_from_columns(cols: LinkColumns) -> BipartiteGraph:
    """The :class:`~kyc.graph.build.BipartiteGraph` of the columns, fully vectorised.

    Applicants and identifiers are numbered in token-code order (first appearance, for
    columns built by :class:`ColumnsBuilder`). ``applicants`` and ``identifiers`` are
    :class:`TokenView` sequences (decoded on access).
    """
    n_tok = cols.n_tokens
    app_tok = cols.app_applicant.astype(np.int64)
    # applicants: the distinct applicant token codes, ascending; compact codes by lookup
    is_app = np.zeros(n_tok, dtype=bool)
    is_app[app_tok] = True
    applicant_codes = np.flatnonzero(is_app).astype(np.int32)
    compact = np.full(n_tok, -1, dtype=np.int64)
    compact[applicant_codes] = np.arange(applicant_codes.size)
    n_app = int(applicant_codes.size)
    # identifiers: edges are unique per (applicant, token), so a token's edge count is its
    # number of distinct applicants; tokens held once link nobody and are dropped
    deg_all = np.bincount(cols.edge_tok, minlength=n_tok) if n_tok else \
        np.zeros(0, dtype=np.int64)
    keep_id = deg_all >= 2
    identifier_codes = np.flatnonzero(keep_id).astype(np.int32)
    id_compact = np.full(n_tok, -1, dtype=np.int64)
    id_compact[identifier_codes] = np.arange(identifier_codes.size)
    keep_edge = keep_id[cols.edge_tok] if cols.n_edges else np.zeros(0, dtype=bool)
    n_singletons = int((deg_all == 1).sum())
    edge_app = compact[cols.edge_app[keep_edge]].astype(np.int32)
    edge_id = id_compact[cols.edge_tok[keep_edge]].astype(np.int32)
    # times: per applicant, sorted
    who = compact[app_tok]
    t_order = np.lexsort((cols.app_ts, who))
    times = cols.app_ts[t_order]
    times_ptr = np.zeros(n_app + 1, dtype=np.int64)
    np.cumsum(np.bincount(who, minlength=n_app), out=times_ptr[1:])
    # thin-file flag: the latest (ts, application_id) application that says
    thin = np.full(n_app, -1, dtype=np.int8)
    said = np.flatnonzero(cols.app_thin >= 0)
    if said.size:
        order_t = np.lexsort((cols.app_ids[said], cols.app_ts[said], who[said]))
        w = who[said][order_t]
        last = np.r_[w[1:] != w[:-1], True]
        thin[w[last]] = cols.app_thin[said][order_t][last]
    return BipartiteGraph(
        applicants=TokenView(cols, applicant_codes),
        identifiers=TokenView(cols, identifier_codes),
        kind=cols.token_kind[identifier_codes].astype(np.int8),
        degree=deg_all[keep_id].astype(np.int32),
        edge_app=edge_app,
        edge_id=edge_id,
        edge_roles=cols.edge_roles[keep_edge].astype(np.int16),
        times_ptr=times_ptr,
        times=times,
        thin=thin,
        n_applications=cols.n_applications,
        n_singletons=n_singletons,
        n_singleton_links=int(deg_all[deg_all == 1].sum()),
    )
