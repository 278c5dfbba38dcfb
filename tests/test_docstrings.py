"""The public API's numpy-style docstrings agree with the signatures.

For every public function, class (its constructor) and public method of a public class (the names in
``pnpdeblur.__all__`` and in each public subpackage's ``__all__``) whose docstring has a ``Parameters``
section (or says "Parameters are those of :func:`X`"):

(a) every documented parameter is in the signature, and every parameter of the signature (but ``self``,
    ``*args``/``**kwargs`` and ``_private`` ones) is documented; ``a, b : int`` documents both;
(b) a literal default claimed in a parameter's entry (``default 3``, ``(default: None)``, ``"x" (default)``,
    ``default on``, ``default :data:`NAME```) is the signature's default. Where the signature's default is
    None, a claim of another value is the value None stands for, and is not compared.

One-line docstrings with no ``Parameters`` section are not checked.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import textwrap
import types

ROOT = "pnpdeblur"
SUBPACKAGES = ("operators", "solvers", "priors", "nets", "data", "estimation", "metrics", "viz", "losses", "train",
               "backend")

# (object's qualified name, parameter) pairs that are known not to pass, each with its reason.
ALLOWED: dict[tuple[str, str], str] = {}

SECTION_RE = re.compile(r"^(\s*)([A-Z][A-Za-z ]+)\n\1-{3,}\s*$", re.M)
NAME = r"\*{0,2}[A-Za-z_]\w*"
HEADER_RE = re.compile(rf"^({NAME}(?:\s*,\s*{NAME})*)(?:\s+:\s*(.*))?$")
NUM = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\.?"
LIT = rf"(?P<v>{NUM}|None|True|False|\"[^\"]*\"|'[^']*')"
END = r"(?![\w/*×·^(]|\.\d|\s*[×*/^]\s*\d)"
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
LEAD = r"\bdefaults?\b\s*(?:[:=]|is|are|of|to)?\s*"
CLAIMS = (
    re.compile(rf"{LEAD}\(?{LIT}{END}", re.I),
    re.compile(rf"{LEAD}(?P<v>{'|'.join(WORDS)})\b", re.I),
    re.compile(rf"(?<![\w.]){LIT}\s*\(default\)"),
    re.compile(r"(?<![\w.])(?P<v>[A-Za-z_][\w.]*\.[A-Za-z_]\w*|float(?:16|32|64))\s*\(default\)"),
    re.compile(r"\bdefault\s*:?\s+(?P<v>on|off)\b", re.I),
)
DATA_RE = re.compile(rf"{LEAD}:data:`~?([\w.]+)`", re.I)
REF_RE = re.compile(r"[Pp]arameters (?:are )?(?:those of|as for) :\w+:`~?([\w.]+)`")
MISSING = object()


class Ident(str):
    """A dotted name claimed as the default (``torch.float64``), matched by its last part."""


def sections(doc: str) -> dict[str, str]:
    found = list(SECTION_RE.finditer(doc))
    out: dict[str, str] = {}
    for i, m in enumerate(found):
        out.setdefault(m.group(2).strip(), doc[m.end():found[i + 1].start() if i + 1 < len(found) else len(doc)])
    return out


def entries(body: str) -> list[tuple[list[str], str]]:
    """``(names, type line + description)`` of each entry of a Parameters-like section."""
    out: list[list] = []
    for line in textwrap.dedent(body.strip("\n")).splitlines():
        m = HEADER_RE.match(line.strip()) if line and not line[0].isspace() else None
        if m:
            out.append([[n.strip().lstrip("*") for n in m.group(1).split(",")], [m.group(2) or ""]])
        elif out:
            out[-1][1].append(line.strip())
    return [(names, " ".join(text)) for names, text in out]


def parse(v: str):
    low = v.lower()
    if low in ("on", "true", "off", "false"):
        return low in ("on", "true")
    if low in WORDS:
        return float(WORDS.index(low))
    if v == "None":
        return None
    if v[0] in "\"'":
        return v[1:-1]
    if re.match(r"[A-Za-z_]", v):
        return Ident(v)
    return float(v.rstrip("."))


def matches(claim, default) -> bool:
    if isinstance(claim, Ident):
        return claim.split(".")[-1] in {str(default).split(".")[-1], getattr(default, "__name__", None)}
    if claim is None or isinstance(claim, bool):
        return default is claim
    if isinstance(claim, str):
        return default == claim
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return False
    return abs(float(default) - claim) <= 1e-12 * max(1.0, abs(claim))


def resolve(path: str, context):
    for full in (path, f"{context.__module__}.{path}"):
        parts = full.split(".")
        for i in [*range(len(parts) - 1, 0, -1), len(parts)]:
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for p in parts[i:]:
                    obj = getattr(obj, p)
                return obj
            except AttributeError:
                break
    return MISSING


def public_objects() -> list[tuple[str, object]]:
    """``(qualified name, object)`` of the public functions, classes and methods of public classes."""
    seen: set[tuple[str, str]] = set()
    out = []
    modules = [importlib.import_module(ROOT)] + [importlib.import_module(f"{ROOT}.{s}") for s in SUBPACKAGES]
    done: set[str] = set()

    def add(obj):
        key = (obj.__module__, obj.__qualname__)
        if key not in seen:
            seen.add(key)
            out.append((f"{obj.__module__}.{obj.__qualname__}", obj))

    while modules:
        mod = modules.pop(0)
        if mod.__name__ in done:
            continue
        done.add(mod.__name__)
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if isinstance(obj, types.ModuleType):
                if obj.__name__.startswith(ROOT):
                    modules.append(obj)
            elif inspect.isclass(obj) and obj.__module__.startswith(ROOT):
                add(obj)
                for klass in obj.__mro__:
                    if not klass.__module__.startswith(ROOT):
                        continue
                    for attr, raw in vars(klass).items():
                        func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
                        if (not attr.startswith("_") or attr == "__call__") and inspect.isfunction(func):
                            add(func)
            elif inspect.isfunction(obj) and obj.__module__.startswith(ROOT):
                add(obj)
    return out


def documented(doc: str, obj, dataclass: bool = False) -> tuple[list, str | None]:
    """The entries documenting ``obj``'s parameters and where they come from (None: no section)."""
    secs = sections(doc)
    found = []
    for key in ("Parameters", "Other Parameters") + (("Attributes",) if dataclass else ()):
        found += entries(secs.get(key, ""))
    if found:
        return found, "section"
    m = REF_RE.search(doc)
    if m:
        target = resolve(m.group(1), obj)
        assert target is not MISSING, f"{obj.__qualname__}: cannot resolve {m.group(1)}"
        found, _ = documented(inspect.getdoc(target) or "", target)
        own = set(inspect.signature(obj).parameters)
        found += [([n], "") for n in set(re.findall(r"``(\w+)(?:=[^`]*)?``", doc)) & own]
        return found, "reference"
    return [], None


def check(name: str, obj) -> list[tuple[str, str, str]]:
    """``(name, parameter, problem)`` for each mismatch of ``obj``'s docstring and signature."""
    if inspect.isclass(obj):
        doc = inspect.getdoc(obj) if obj.__doc__ else ""
        found, how = documented(doc, obj, dataclass=dataclasses.is_dataclass(obj))
        init = vars(obj).get("__init__")
        if inspect.isfunction(init) and init.__doc__:
            more, how2 = documented(inspect.getdoc(init), init)
            found, how = found + more, how or how2
    else:
        if not obj.__doc__:
            return []
        found, how = documented(inspect.getdoc(obj), obj)
    if how is None:
        return []
    sig = inspect.signature(obj)
    params = {p.name: p for p in sig.parameters.values() if p.name not in ("self", "cls")
              and not p.name.startswith("_") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    names = {n for group, _ in found for n in group}
    problems = [(name, n, "not documented") for n in sorted(set(params) - names)]
    if how == "section":
        problems += [(name, n, "documented but not in the signature")
                     for n in sorted(names - {p.lstrip("_") for p in sig.parameters})]
    for group, text in found:
        ps = [params[n] for n in group if n in params]
        defaults = [p.default for p in ps]
        if not ps:
            continue
        resolved = any(d is None for d in defaults)  # a claim of another value: what None stands for
        flat = text.replace("``", "")
        claims = [m.group("v") for rx in CLAIMS for m in rx.finditer(flat)]
        for v in claims:
            c = parse(v)
            if not any(d is not inspect.Parameter.empty and matches(c, d) for d in defaults) and not (
                    resolved and c is not None):
                problems.append((name, ",".join(group), f"docstring says default {v}, signature has {defaults}"))
        for ref in DATA_RE.findall(flat):
            last = ref.split(".")[-1]
            glb = getattr(inspect.unwrap(obj.__init__ if inspect.isclass(obj) else obj), "__globals__", {})
            val = glb[last] if last in glb else resolve(ref, obj)
            if val is not MISSING and not resolved and not any(val is d or _equal(val, d) for d in defaults):
                problems.append((name, ",".join(group), f"docstring says default {ref} = {val!r}, "
                                                        f"signature has {defaults}"))
    return problems


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def test_public_docstrings_match_signatures():
    objects = public_objects()
    assert len(objects) > 200  # the walk found the API
    problems = [p for name, obj in objects for p in check(name, obj)]
    unexpected = [p for p in problems if p[:2] not in ALLOWED]
    assert not unexpected, "docstring vs signature:\n" + "\n".join(f"{n} {p!r}: {what}" for n, p, what in unexpected)
    stale = set(ALLOWED) - {p[:2] for p in problems}
    assert not stale, f"allow-list entries that no longer fail: {sorted(stale)}"


def test_checker_catches_a_changed_default():
    def f(x, n_iter: int = 8, tol: float = 1e-4, mode: str = "fast", flag: bool = True):
        """Test function.

        Parameters
        ----------
        x : array
        n_iter : int
            Iterations (default 8).
        tol : float
            Tolerance. Default: 1e-4.
        mode : {"fast", "slow"}
            ``"fast"`` (default) or ``"slow"``.
        flag : bool
            Default on.
        """
    assert check("f", f) == []

    def g(x, n_iter: int = 10, tol: float = 1e-3, mode: str = "slow", flag: bool = False, extra=None):
        pass
    g.__doc__ = f.__doc__
    found = {p: what for _, p, what in check("g", g)}
    assert sorted(found) == ["extra", "flag", "mode", "n_iter", "tol"]
    assert found["extra"] == "not documented"
    assert all(found[p].startswith("docstring says default") for p in ("flag", "mode", "n_iter", "tol"))
