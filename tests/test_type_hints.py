"""The public functions carry complete type hints, and the hints resolve.

Public functions: in every public module of ``pnpdeblur`` (no ``_``-prefixed part in its path below the
package, so ``__init__.py`` files and ``_private.py`` modules are skipped), the module-level functions and
the methods of public classes whose names have no leading underscore, plus those classes' ``__init__``.

(a) Each needs a return annotation (``__init__`` excepted) and an annotation on every parameter
    (``self``/``cls``, ``*args`` and ``**kwargs`` excepted): one assertion lists those that lack any.
(b) ``typing.get_type_hints`` resolves each one's annotations in its module's namespace. Most are strings
    (``from __future__ import annotations``), so a misspelt or un-imported name fails only here. A name
    imported only under ``if TYPE_CHECKING:`` (matplotlib's ``Figure`` in :mod:`pnpdeblur.viz`, torch where
    a module imports it lazily, ...) is provided by running that block's statements in a copy of the
    module's namespace.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import typing

import pnpdeblur

PACKAGE_DIR = pathlib.Path(pnpdeblur.__file__).resolve().parent
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _public_modules() -> list[tuple[str, ast.Module]]:
    """``(dotted name, syntax tree)`` of every public module, in path order."""
    out = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR.parent)
        if any(part.startswith("_") for part in rel.parts[1:]):
            continue
        out.append((".".join(rel.with_suffix("").parts), ast.parse(path.read_text(encoding="utf-8"), str(rel))))
    return out


def _is_public(f: ast.AST, method: bool) -> bool:
    return isinstance(f, FUNCTIONS) and (not f.name.startswith("_") or (method and f.name == "__init__"))


def _public_functions(tree: ast.Module) -> list[tuple[str | None, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """``(class name or None, function node)`` of the module's public functions and public classes' methods."""
    out: list[tuple[str | None, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            out += [(node.name, f) for f in node.body if _is_public(f, method=True)]
        elif _is_public(node, method=False):
            out.append((None, node))
    return out


def _missing_annotations(f: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """What ``f`` lacks: ``"return"`` and/or the names of unannotated parameters."""
    args = f.args.posonlyargs + f.args.args + f.args.kwonlyargs
    missing = [a.arg for a in args if a.arg not in ("self", "cls") and a.annotation is None]
    if f.returns is None and f.name != "__init__":
        missing.append("return")
    return missing


MODULES = _public_modules()


def test_public_functions_are_fully_annotated():
    offenders = []
    for module, tree in MODULES:
        for cls, f in _public_functions(tree):
            missing = _missing_annotations(f)
            if missing:
                where = f"{cls}.{f.name}" if cls else f.name
                offenders.append(f"{module}.{where} (line {f.lineno}): no annotation for {', '.join(missing)}")
    assert offenders == [], "public functions without complete type hints:\n" + "\n".join(offenders)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _namespace(module: typing.Any, tree: ast.Module) -> dict[str, typing.Any]:
    """The module's globals plus the names its top-level ``if TYPE_CHECKING:`` blocks import."""
    ns = dict(vars(module))
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            block = ast.Module(body=node.body, type_ignores=[])
            exec(compile(block, f"<TYPE_CHECKING block of {module.__name__}>", "exec"), ns)
    return ns


def _function_object(module: typing.Any, cls: str | None, name: str) -> typing.Any:
    """The function itself: a static/class method's or a property's function, unwrapped by ``inspect.unwrap``
    only as far as the annotations need (decorators that use ``functools.wraps`` copy them)."""
    if cls is None:
        obj = getattr(module, name)
    else:
        obj = vars(getattr(module, cls))[name]
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    elif isinstance(obj, property):
        obj = obj.fget
    if not hasattr(obj, "__annotations__"):
        obj = inspect.unwrap(obj)
    return obj


def test_type_hints_resolve():
    failures = []
    checked = 0
    for module_name, tree in MODULES:
        try:
            module = importlib.import_module(module_name)
            ns = _namespace(module, tree)
        except Exception as exc:  # an import error in one module must not hide the others' results
            failures.append(f"{module_name}: cannot import it or its TYPE_CHECKING names: {exc!r}")
            continue
        for cls, f in _public_functions(tree):
            where = f"{module_name}.{cls}.{f.name}" if cls else f"{module_name}.{f.name}"
            try:
                typing.get_type_hints(_function_object(module, cls, f.name), globalns=ns, localns=ns)
            except Exception as exc:
                failures.append(f"{where}: {exc!r}")
            checked += 1
    assert checked > 300, f"only {checked} public functions found: is the scan looking in the right place?"
    assert failures == [], "type hints that do not resolve:\n" + "\n".join(failures)
