"""docs/reason_codes.md documents every reason and error code the source emits, and no more.

The source is read with :mod:`ast`: every string literal in the reason-code form (upper case
with at least one underscore, as ``grep -rhoE '"[A-Z][A-Z0-9_]{3,}"' src/kyc`` finds them,
minus public names from ``__all__``, environment variable names, argparse metavars and the
small allow-list below) must be documented exactly; every code
built by an f-string (``f"DEVICE_SHARED_BY_{n}"``) must be documented as a family or by its
concrete codes, in a row naming the module that builds it; and every documented code must
still be in the module(s) its row names. Adding or removing a code without updating the
page fails here.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DOC = ROOT / "docs" / "reason_codes.md"

#: Upper-case literals with an underscore that are not reason or error codes and that the
#: scanner does not recognise as names by itself (see :func:`_names_not_codes`).
ALLOWED = {
    "KYC_API_TOKEN",  # argparse defaults of `kyc serve --token-env / --secret-env`
    "KYC_HMAC_SECRET",
}

_CODE_FORM = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
_ANY_UPPER = re.compile(r"[A-Z][A-Z0-9_]{3,}")
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$")
_MODULE = re.compile(r"`(kyc/[a-z0-9_/]+\.py)`")


@dataclass
class Source:
    """Upper-case literals and f-string code templates per module (path relative to src/)."""

    literals: dict[str, set[str]] = field(default_factory=dict)  # literal -> modules
    templates: dict[str, set[str]] = field(default_factory=dict)  # "A_{}_B" -> modules

    def add_literal(self, value: str, module: str) -> None:
        self.literals.setdefault(value, set()).add(module)

    def add_template(self, value: str, module: str) -> None:
        self.templates.setdefault(value, set()).add(module)


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


def _names_not_codes(tree: ast.AST) -> tuple[set[int], set[str]]:
    """Nodes whose strings are names, not codes, and this module's ``__all__`` names.

    Skipped: ``__all__`` entries; environment variable names (``os.environ.get("X")``,
    ``os.environ["X"]``, ``os.getenv("X")``, ``ENV_* = "X"``); argparse ``metavar=`` values.
    """
    skip: set[int] = set()
    public: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            if "__all__" in names and node.value is not None:
                skip.update(id(c) for c in ast.walk(node))
                public.update(c.value for c in ast.walk(node.value)
                              if isinstance(c, ast.Constant) and isinstance(c.value, str))
            if any(n.startswith("ENV_") for n in names) and node.value is not None:
                skip.update(id(c) for c in ast.walk(node.value))
        elif isinstance(node, ast.Call):
            f = node.func
            env_get = isinstance(f, ast.Attribute) and (
                f.attr == "getenv"
                or (f.attr in ("get", "setdefault", "pop") and _is_environ(f.value))
            )
            if env_get or (isinstance(f, ast.Name) and f.id == "getenv"):
                skip.update(id(c) for a in node.args[:1] for c in ast.walk(a))
            for kw in node.keywords:
                if kw.arg == "metavar":
                    skip.update(id(c) for c in ast.walk(kw.value))
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            skip.update(id(c) for c in ast.walk(node.slice))
    return skip, public


def _scan(root: Path) -> Source:
    src = Source()
    trees = {path.relative_to(root).as_posix(): ast.parse(path.read_text(encoding="utf-8"),
                                                          str(path))
             for path in sorted((root / "kyc").rglob("*.py"))}
    skips: dict[str, set[int]] = {}
    public: set[str] = set()
    for module, tree in trees.items():
        skips[module], names = _names_not_codes(tree)
        public |= names
    for module, tree in trees.items():
        skip = skips[module]
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                skip.update(id(c) for c in ast.walk(node) if c is not node)
                text = "".join(
                    str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values
                )
                if (re.fullmatch(r"[A-Z0-9_{}]+", text) and "_" in text
                        and re.search(r"[A-Z]{2}", text)):
                    src.add_template(text, module)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in skip and node.value not in public
                    and _ANY_UPPER.fullmatch(node.value)):
                src.add_literal(node.value, module)
    return src


@dataclass(frozen=True)
class DocRow:
    code: str  # exact code, or a family with {parameter} placeholders
    modules: tuple[str, ...]
    line: int

    @property
    def is_family(self) -> bool:
        return "{" in self.code

    def sample(self) -> str:
        """A concrete code of the family (parameters replaced by 7)."""
        return re.sub(r"\{[a-z_]+\}", "7", self.code)


def _doc_rows(text: str) -> list[DocRow]:
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        m = _ROW.match(line)
        if m is None:
            continue
        code = m.group(1)
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*(?:\{[a-z_]+\}[A-Z0-9_]*)*", code):
            continue
        rows.append(DocRow(code, tuple(_MODULE.findall(m.group(2))), i))
    return rows


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("".join(
        r"[A-Z0-9_]+" if part == "{}" else re.escape(part)
        for part in re.split(r"(\{\})", template)
    ))


def _uncovered(src: Source, rows: list[DocRow]) -> tuple[list[str], list[str], list[str]]:
    """(undocumented literals, undocumented templates, documented codes not in the source)."""
    exact = {r.code for r in rows if not r.is_family}
    undocumented = sorted(
        code for code in src.literals
        if _CODE_FORM.fullmatch(code) and code not in exact and code not in ALLOWED
    )
    bad_templates = []
    for tmpl, modules in sorted(src.templates.items()):
        rx = _template_regex(tmpl)
        if not any(rx.fullmatch(r.sample()) and set(r.modules) & modules for r in rows):
            bad_templates.append(f"{tmpl} ({', '.join(sorted(modules))})")
    stale = []
    for r in rows:
        mods = set(r.modules)
        if not mods:
            stale.append(f"{r.code} (line {r.line}: no module named)")
            continue
        found = False
        if not r.is_family:
            found = bool(src.literals.get(r.code, set()) & mods)
        if not found:
            found = any(_template_regex(t).fullmatch(r.sample()) and ms & mods
                        for t, ms in src.templates.items())
        if not found:
            stale.append(f"{r.code} (line {r.line}: not in {', '.join(sorted(mods))})")
    return undocumented, bad_templates, stale


@pytest.fixture(scope="module")
def source() -> Source:
    return _scan(SRC)


@pytest.fixture(scope="module")
def rows() -> list[DocRow]:
    return _doc_rows(DOC.read_text(encoding="utf-8"))


def test_the_scan_finds_literals_and_templates(source: Source) -> None:
    # guards the scanner itself: known codes of each kind are found where they live
    assert "kyc/face/verify.py" in source.literals["FACE_MISMATCH"]
    assert "kyc/liveness/passive.py" in source.literals["PAD_SPOOF_SUSPECTED"]
    assert "kyc/decision.py" in source.literals["GRAPH_SCORE_HIGH"]
    assert "kyc/graph/rings.py" in source.templates["{}_SHARED_BY_{}"]
    assert "kyc/face/verify.py" in source.templates["NO_FACE_IN_{}"]
    # __all__ entries (anywhere), environment variable names and metavars are not codes
    assert "DEFAULT_THRESHOLD" not in source.literals
    assert "ARCFACE_TEMPLATE_112" not in source.literals  # a lazy-import key, public name
    assert "KYC_MODEL_DIR" not in source.literals  # ENV_MODEL_DIR = "KYC_MODEL_DIR"
    assert "ID_IMAGE" not in source.literals  # metavar


def test_every_code_literal_in_the_source_is_documented(source: Source,
                                                        rows: list[DocRow]) -> None:
    undocumented, _, _ = _uncovered(source, rows)
    assert not undocumented, (
        f"codes used in src/kyc but missing from {DOC.name}: {undocumented} "
        "(document them, or add a non-code string to ALLOWED in this test)"
    )


def test_every_code_built_by_an_fstring_is_documented(source: Source,
                                                      rows: list[DocRow]) -> None:
    _, bad, _ = _uncovered(source, rows)
    assert not bad, f"f-string codes without a documented family or code in their module: {bad}"


def test_every_documented_code_still_exists(source: Source, rows: list[DocRow]) -> None:
    _, _, stale = _uncovered(source, rows)
    assert not stale, f"{DOC.name} documents codes the named modules no longer emit: {stale}"


def test_the_allow_list_holds_no_documented_code_and_no_dead_entry(
    source: Source, rows: list[DocRow]
) -> None:
    documented = {r.code for r in rows}
    assert not ALLOWED & documented
    assert {a for a in ALLOWED if a not in source.literals} == set()


def test_the_checker_fails_on_an_undocumented_and_on_a_stale_code(
    source: Source, rows: list[DocRow]
) -> None:
    # a new literal code in some module, and a new f-string family
    extra = Source({k: set(v) for k, v in source.literals.items()},
                   {k: set(v) for k, v in source.templates.items()})
    extra.add_literal("BRAND_NEW_CODE", "kyc/decision.py")
    extra.add_template("ODD_{}_THING", "kyc/graph/rings.py")
    undocumented, bad, _ = _uncovered(extra, rows)
    assert undocumented == ["BRAND_NEW_CODE"]
    assert bad == ["ODD_{}_THING (kyc/graph/rings.py)"]
    # a documented code removed from the source, and a family whose builder is gone
    fewer = Source({k: set(v) for k, v in source.literals.items() if k != "FACE_LOST"},
                   {k: set(v) for k, v in source.templates.items() if k != "THIN_FILE_{}PCT"})
    _, _, stale = _uncovered(fewer, rows)
    assert {s.split(" ")[0] for s in stale} == {"FACE_LOST", "THIN_FILE_{p}PCT"}


def test_decision_codes_are_all_documented(rows: list[DocRow]) -> None:
    from kyc.decision import DECISION_CODES

    documented = {r.code: r for r in rows}
    for code in DECISION_CODES:
        assert code in documented
        assert "kyc/decision.py" in documented[code].modules


def test_error_classes_codes_are_documented(rows: list[DocRow]) -> None:
    import kyc.errors as errors

    documented = {r.code for r in rows}
    codes = {cls.code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.KycError)}
    assert codes <= documented
