"""Rewrite decorated functions as plain ``def`` + rebinding, so mutmut gives them mutants.

Used by ``scripts/mutation.sh`` with ``MUTATION_UNDECORATE=1``, on the temporary copy of the
module only. mutmut 3 skips every decorated function except those whose one decorator is
``@staticmethod``/``@classmethod``: properties, ``@torch.no_grad()`` helpers and the
``@once_differentiable`` backward passes would otherwise never be mutated. This rewrite is
behaviour-preserving::

    @property                      def T(self):
    def T(self):           ->          ...
        ...                        T = property(T)

    @staticmethod                  def backward(ctx, g):
    @once_differentiable   ->          ...
    def backward(ctx, g):          backward = staticmethod(once_differentiable(backward))
        ...

    @size.setter                   def _size_undecorated(self, v):
    def size(self, v):     ->          ...
        ...                        size = size.setter(_size_undecorated)

(the function is renamed only when a decorator names it, as a property's ``setter`` does:
otherwise ``size.setter`` would see the new function, not the property). mutmut's trampoline
then wraps the plain function, and the decorators wrap the trampoline.

Left as they are: functions whose only decorator is ``staticmethod``/``classmethod`` (mutmut
handles them), numba decorators (a compiled kernel cannot call a Python trampoline: use
``MUTATION_NUMBA_PYTHON=1``), class decorators, and decorated functions nested inside other
functions. Decorators must not have side effects that depend on when they run, which holds for
the ones in this package; ``functools.lru_cache`` functions do get mutants, but a value cached
in mutmut's parent process before the fork hides the mutant in the child (say so when reading
their survivors).

Usage: ``python scripts/undecorate.py FILE...`` (in place); prints one line per rewritten
function.
"""
from __future__ import annotations

import ast
import sys
from typing import List, Tuple

__all__ = ["undecorate_source", "main"]

_KEPT_ALONE = {"staticmethod", "classmethod"}


def _is_numba(text: str) -> bool:
    return text.startswith(("nb.", "numba.", "njit", "jit"))


def _candidates(tree: ast.Module) -> List[Tuple[ast.AST, int]]:
    """Decorated functions at module level or in (nested) class bodies, with their indent."""
    found = []

    def visit(body, indent):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.decorator_list:
                found.append((node, indent))
            elif isinstance(node, ast.ClassDef):
                visit(node.body, node.body[0].col_offset)

    visit(tree.body, 0)
    return found


def undecorate_source(source: str) -> Tuple[str, List[str]]:
    """Return ``source`` with its decorated functions rewritten, and their names.

    Parameters
    ----------
    source : str
        Python source of one module.

    Returns
    -------
    new_source : str
        The rewritten source (same behaviour; line numbers shift).
    names : list of str
        ``"Class.method"`` / ``"function"`` for every rewritten function, in source order.
    """
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []  # (first_line, last_line, replacement lines) on 0-based line indices
    names = []
    stack = {}  # class bodies' qualified names, for the report only
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef):
            for child in cls.body:
                stack[id(child)] = cls.name
    for node, _ in _candidates(tree):
        texts = [ast.get_source_segment(source, d) for d in node.decorator_list]
        if all(t in _KEPT_ALONE for t in texts) and len(texts) == 1:
            continue
        if any(_is_numba(t) for t in texts):
            continue
        first = min(d.lineno for d in node.decorator_list) - 1
        def_line = node.lineno - 1
        indent = lines[def_line][: len(lines[def_line]) - len(lines[def_line].lstrip())]
        target = node.name
        if any(t.split(".")[0] == node.name for t in texts):
            target = f"_{node.name}_undecorated"
            lines_def = lines[def_line].replace(f"def {node.name}(", f"def {target}(", 1)
        else:
            lines_def = lines[def_line]
        wrapped = target
        for t in reversed(texts):  # the decorator nearest the def applies first
            wrapped = f"{t}({wrapped})"
        body = lines[def_line + 1: node.end_lineno]
        new = [lines_def, *body, f"{indent}{node.name} = {wrapped}\n"]
        edits.append((first, node.end_lineno - 1, new))
        owner = stack.get(id(node))
        names.append(f"{owner}.{node.name}" if owner else node.name)
    for first, last, new in sorted(edits, reverse=True):
        lines[first: last + 1] = new
    out = "".join(lines)
    ast.parse(out)  # the rewrite must stay valid Python
    return out, names


def main(argv: List[str]) -> int:
    for path in argv:
        with open(path, encoding="utf-8") as f:
            source = f.read()
        new, names = undecorate_source(source)
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
        for name in names:
            print(f"{path}: {name} undecorated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
