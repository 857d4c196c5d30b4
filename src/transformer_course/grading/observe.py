"""Checks that a submission cannot disarm: test cells split into observation and judgement.

A test cell runs twice. In the student's sandboxed process, every value that comes out of the
student's code passes through ``__observe__(site, lambda: <expression>)``, which records it
as plain data (tensors, numbers, strings and containers of them). The cell is then run again
in a fresh process that never ran a line of the student's code: there the student's names are
placeholders, ``__observe__`` hands back the recorded values, and every assertion, every
``torch.testing.assert_close`` and every reference computation is done by the course's own,
untouched libraries. Replacing ``assert_close``, ``torch`` or a builtin in the notebook
changes only the student's process, whose sole output is data.

The rewrite is done on the test cell's source (positions kept, so line numbers still point
at the author's lines). Which expressions are observed:

- the longest chain of calls, attributes and subscripts that starts at a name the answer
  cells define (``stable_softmax(x)``, ``layer(x)[0]``, ``layer.linear.weight.grad``), and
- a chain that starts at a variable bound to such a chain (``out = layer(x)``, then ``out``),
- ``observed(lambda: ...)``, the explicit form, for values the rules cannot see (a gradient
  left on a tensor the test made, a model the student's function trained in place).

Values of other types come back as opaque placeholders that fail loudly when the checks use
them, which is a bug in the test cell, found by grading the reference solution.
"""

from __future__ import annotations

import ast
import builtins
import collections
import collections.abc
import keyword
import re

import torch

__all__ = ["OBSERVE", "observed", "student_names", "instrument_cells", "encode", "decode",
           "Phantom", "Recording", "ObservationError", "MAX_RECORD_BYTES"]

OBSERVE = "__observe__"
EXPLICIT = "observed"
MAX_ITEMS = 100_000  # elements of one container or iterator
MAX_STRING = 1_000_000  # characters of one string
MAX_RECORD_BYTES = 64 << 20  # bytes of tensor data recorded for one cell
MAX_DEPTH = 20


def observed(thunk):
    """``observed(lambda: value)``: in a notebook, just ``value``; when graded, the value is
    computed in the student's process and checked in the grader's (see the module's doc)."""
    return thunk()


# --------------------------------------------------------------------------- the rewrite


def student_names(answer_sources: list[str]) -> set[str]:
    """Names the answer cells bind at top level: their functions, classes and variables."""
    names: set[str] = set()

    def bind(target):
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                bind(element)
        elif isinstance(target, ast.Starred):
            bind(target.value)

    def walk(statements):
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    bind(target)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                bind(node.target)
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for field in ("body", "orelse", "finalbody"):
                    walk(getattr(node, field, []))
                for handler in getattr(node, "handlers", []):
                    walk(handler.body)

    for source in answer_sources:
        walk(ast.parse(_strip_magics(source)).body)
    return names


def _strip_magics(source: str) -> str:
    """IPython-only lines (``%timeit``, ``!pip``) commented out, so ``ast`` can parse."""
    return re.sub(r"^(\s*)([%!])", r"\1#\2", source, flags=re.M)


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


def _bound_names(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


class _Rewriter(ast.NodeVisitor):
    """Collects the text edits of one cell; ``tainted`` is updated statement by statement."""

    def __init__(self, tainted: set[str], first_site: int):
        self.tainted = tainted
        self.site = first_site
        self.edits: list[tuple[tuple[int, int], tuple[int, int], str]] = []  # replace [start, end)

    # chains -----------------------------------------------------------------------------

    def _rooted(self, node: ast.AST) -> bool:
        root = _root(node)
        return (isinstance(root, ast.Name) and root.id in self.tainted
                and isinstance(getattr(node, "ctx", ast.Load()), ast.Load))

    def _wrap(self, node: ast.AST) -> None:
        self.site += 1
        start, end = (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)
        self.edits += [(start, start, f"{OBSERVE}({self.site}, lambda: ("), (end, end, "))")]

    def _from_student(self, node: ast.AST) -> bool:
        """Whether a name bound to ``node``'s value holds only the student's values: a chain,
        ``observed(...)``, or a tuple or list of them (``for f in (mine, also_mine)``)."""
        if isinstance(node, (ast.Tuple, ast.List)) and node.elts:
            return all(self._from_student(e) for e in node.elts)
        return self._rooted(node) or self._explicit(node)

    def _explicit(self, node: ast.AST) -> bool:
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == EXPLICIT and len(node.args) == 1 and not node.keywords)

    def visit(self, node):
        if isinstance(node, ast.expr):
            if self._explicit(node):
                self.site += 1
                func, argument = node.func, node.args[0]
                at = (argument.lineno, argument.col_offset)
                self.edits += [((func.lineno, func.col_offset),
                                (func.end_lineno, func.end_col_offset), OBSERVE),
                               (at, at, f"{self.site}, ")]
                return
            if self._rooted(node):
                self._wrap(node)
                return
        super().visit(node)

    # bindings ---------------------------------------------------------------------------

    def _bind(self, targets: list[ast.AST], value: ast.AST | None) -> None:
        names = set().union(*(_bound_names(t) for t in targets)) if targets else set()
        if value is not None:
            self.tainted |= names
        else:
            self.tainted -= names

    def visit_Assign(self, node):
        from_student = self._from_student(node.value)
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)
        self._bind(node.targets, node.value if from_student else None)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            from_student = self._from_student(node.value)
            self.visit(node.value)
            self._bind([node.target], node.value if from_student else None)

    def visit_NamedExpr(self, node):
        from_student = self._from_student(node.value)
        self.visit(node.value)
        self._bind([node.target], node.value if from_student else None)

    def visit_For(self, node):
        from_student = self._from_student(node.iter)
        self.visit(node.iter)
        self._bind([node.target], node.iter if from_student else None)
        for statement in node.body + node.orelse:
            self.visit(statement)

    def visit_With(self, node):
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                from_student = self._rooted(item.context_expr)
                self._bind([item.optional_vars], item.context_expr if from_student else None)
        for statement in node.body:
            self.visit(statement)

    def visit_Import(self, node):
        self.tainted -= {(a.asname or a.name).split(".")[0] for a in node.names}

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node):
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.tainted.discard(node.name)
        for statement in node.body:
            self.visit(statement)

    # scopes: parameters and comprehension variables hide outer names ---------------------

    def _scoped(self, hidden: set[str], visit_body) -> None:
        saved = set(self.tainted)
        self.tainted -= hidden
        visit_body()
        self.tainted = saved  # bindings made inside stay inside

    def visit_FunctionDef(self, node):
        for decorator in node.decorator_list:
            self.visit(decorator)
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d]:
            self.visit(default)
        params = {a.arg for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs}
        params |= {a.arg for a in (node.args.vararg, node.args.kwarg) if a}
        self._scoped(params, lambda: [self.visit(s) for s in node.body])
        self.tainted.discard(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        params = {a.arg for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs}
        self._scoped(params, lambda: self.visit(node.body))

    def visit_ClassDef(self, node):
        for base in node.bases:
            self.visit(base)
        self._scoped(set(), lambda: [self.visit(s) for s in node.body])
        self.tainted.discard(node.name)

    def _comprehension(self, node, elements):
        def body():
            for generator in node.generators:
                from_student = self._from_student(generator.iter)
                self.visit(generator.iter)
                self._bind([generator.target], generator.iter if from_student else None)
                for condition in generator.ifs:
                    self.visit(condition)
            for element in elements:
                self.visit(element)
        self._scoped(set(), body)

    def visit_ListComp(self, node):
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node):
        self._comprehension(node, [node.key, node.value])


def _apply(source: str, edits) -> str:
    """Replace each ``[start, end)`` (line, UTF-8 byte column, as ``ast`` counts) by its text."""
    data = source.encode("utf-8")
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans = [(starts[a[0] - 1] + a[1], starts[b[0] - 1] + b[1], text) for a, b, text in edits]
    # From the end backwards; at one position, the later edit (a closing suffix) goes last.
    for begin, finish, text in sorted(spans, key=lambda e: e[0], reverse=True):
        data = data[:begin] + text.encode("utf-8") + data[finish:]
    return data.decode("utf-8")


def instrument_cells(sources: list[str], students: set[str]) -> list[str]:
    """The course cells (context and tests, in notebook order) with every observation
    point rewritten; site numbers are unique across the notebook."""
    tainted = set(students)
    site = 0
    rewritten = []
    for source in sources:
        tree = ast.parse(_strip_magics(source))
        rewriter = _Rewriter(tainted, site)
        for statement in tree.body:
            rewriter.visit(statement)
        tainted, site = rewriter.tainted, rewriter.site
        rewritten.append(_apply(source, rewriter.edits))
    return rewritten


# ------------------------------------------------------------------- values as plain data


class ObservationError(Exception):
    """A recorded value that is malformed or over the size limits."""


class Phantom:
    """What the checks get for an object of the student's code that is not plain data."""

    def __init__(self, description: str):
        object.__setattr__(self, "_description", description)

    def _refuse(self, *args, **kwargs):
        raise TypeError(
            f"the checks used {self._description} directly; only data (tensors, numbers, "
            "strings and containers of them) crosses from your notebook to the grader")

    __getattr__ = __call__ = __iter__ = __len__ = __bool__ = __getitem__ = _refuse
    __eq__ = __lt__ = __add__ = __mul__ = __float__ = __int__ = __index__ = _refuse
    __hash__ = None

    def __repr__(self):
        return f"<{self._description}>"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        phantom = next(a for a in (*args, *(kwargs or {}).values()) if isinstance(a, Phantom))
        phantom._refuse()


_SCALARS = (bool, int, float, complex, type(None))


def _type_name(value) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"[:200]


def encode(value, budget: list[int] | None = None, depth: int = 0):
    """``value`` as nested tuples of plain types and tensors (loadable with
    ``torch.load(weights_only=True)``). Returns ``(encoded, value_for_the_notebook)``: an
    iterator is read into a list, and the notebook continues with an iterator over it."""
    budget = [MAX_RECORD_BYTES] if budget is None else budget
    if depth > MAX_DEPTH:
        raise ObservationError("a value nested more than 20 levels deep")
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type == "meta":
            return ("object", _type_name(value)), value
        tensor = tensor.to("cpu").as_subclass(torch.Tensor).clone().contiguous()
        budget[0] -= tensor.numel() * tensor.element_size()
        if budget[0] < 0:
            raise ObservationError("more than 64 MB of tensors in one cell")
        return ("tensor", tensor, type(value) is torch.nn.Parameter), value
    if isinstance(value, bool) or type(value) in _SCALARS:
        return ("scalar", value), value
    if isinstance(value, (int, float)) and type(value).__module__ == "numpy":
        return ("scalar", value.item()), value
    if isinstance(value, (int, float)):  # subclasses: IntEnum, numpy scalars...
        return ("scalar", float(value) if isinstance(value, float) else int(value)), value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ObservationError("a string of more than a million characters")
        return ("str", str(value)), value
    if isinstance(value, bytes):
        return ("bytes", torch.frombuffer(bytearray(value), dtype=torch.uint8)
                if value else torch.zeros(0, dtype=torch.uint8)), value
    if isinstance(value, torch.dtype):
        return ("dtype", str(value).removeprefix("torch.")), value
    if isinstance(value, torch.device):
        return ("device", str(value)), value
    if isinstance(value, torch.Size):
        return ("size", tuple(int(v) for v in value)), value
    if type(value).__module__ == "numpy" and type(value).__name__ == "ndarray":
        if value.dtype.kind in "biuf":
            return ("ndarray", torch.from_numpy(value.copy())), value
        return ("object", _type_name(value)), value
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if len(items) > MAX_ITEMS:
            raise ObservationError(f"a container of more than {MAX_ITEMS} items")
        encoded = tuple(encode(item, budget, depth + 1)[0] for item in items)
        if isinstance(value, tuple) and hasattr(type(value), "_fields"):
            return ("namedtuple", type(value).__name__[:100], tuple(type(value)._fields),
                    encoded), value
        kind = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}
        name = next((v for k, v in kind.items() if isinstance(value, k)), "list")
        return (name, encoded), value
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise ObservationError(f"a dict of more than {MAX_ITEMS} items")
        pairs = tuple((encode(k, budget, depth + 1)[0], encode(v, budget, depth + 1)[0])
                      for k, v in value.items())
        kind = "Counter" if isinstance(value, collections.Counter) else "dict"
        return ("dict", pairs, kind), value
    if isinstance(value, (collections.abc.KeysView, collections.abc.ItemsView)):
        return ("frozenset", encode(tuple(value), budget, depth + 1)[0][1]), value
    if isinstance(value, collections.abc.ValuesView):
        return encode(list(value), budget, depth)[0], value
    if isinstance(value, collections.abc.Iterator):
        items = []
        for item in value:
            items.append(item)
            if len(items) > MAX_ITEMS:
                raise ObservationError(f"an iterator of more than {MAX_ITEMS} items")
        encoded = tuple(encode(item, budget, depth + 1)[0] for item in items)
        return ("iterator", encoded), iter(items)
    return ("object", _type_name(value)), value


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise ObservationError(f"malformed recording: {what}")


def decode(data, depth: int = 0):
    """The value :func:`encode` recorded (``Phantom`` for an opaque object)."""
    _check(depth <= MAX_DEPTH + 1, "too deep")
    _check(isinstance(data, tuple) and data and isinstance(data[0], str), "not a tagged tuple")
    tag, *rest = data
    if tag == "tensor":
        _check(len(rest) == 2 and type(rest[0]) is torch.Tensor, "tensor")
        return torch.nn.Parameter(rest[0], requires_grad=rest[0].requires_grad) if rest[1] \
            else rest[0]
    if tag == "scalar":
        _check(len(rest) == 1 and type(rest[0]) in _SCALARS, "scalar")
        return rest[0]
    if tag == "str":
        _check(len(rest) == 1 and type(rest[0]) is str, "string")
        return rest[0]
    if tag == "bytes":
        _check(len(rest) == 1 and type(rest[0]) is torch.Tensor and rest[0].dtype == torch.uint8,
               "bytes")
        return bytes(rest[0].tolist())
    if tag == "dtype":
        _check(len(rest) == 1 and isinstance(getattr(torch, str(rest[0]), None), torch.dtype),
               "dtype")
        return getattr(torch, rest[0])
    if tag == "device":
        return torch.device(str(rest[0]))
    if tag == "size":
        _check(all(type(v) is int for v in rest[0]), "size")
        return torch.Size(rest[0])
    if tag == "ndarray":
        return rest[0].numpy()
    if tag in ("list", "tuple", "set", "frozenset", "iterator"):
        _check(len(rest) == 1 and isinstance(rest[0], tuple), tag)
        items = [decode(item, depth + 1) for item in rest[0]]
        if tag == "iterator":
            return iter(items)
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
    if tag == "namedtuple":
        name, fields, items = rest
        _check(all(isinstance(f, str) and f.isidentifier() and not keyword.iskeyword(f)
                   for f in fields) and len(fields) == len(items), "named tuple")
        safe = name if name.isidentifier() and not keyword.iskeyword(name) else "Result"
        return collections.namedtuple(safe, fields)(*(decode(i, depth + 1) for i in items))
    if tag == "dict":
        _check(len(rest) == 2 and rest[1] in ("dict", "Counter"), "dict")
        pairs = {decode(k, depth + 1): decode(v, depth + 1) for k, v in rest[0]}
        return collections.Counter(pairs) if rest[1] == "Counter" else pairs
    if tag == "object":
        return Phantom(f"an object of type {str(rest[0])[:200]} made by your code")
    raise ObservationError(f"malformed recording: unknown tag {tag!r}")


# -------------------------------------------------------------------------- the recording


class Recording:
    """The observations of one cell: ``(site, "value", encoded)`` or
    ``(site, "error", exception type name, message)``, in the order they happened."""

    def __init__(self, records: list | None = None):
        self.records = list(records or [])
        self.position = 0
        self.budget = [MAX_RECORD_BYTES]
        self.depth = 0

    # in the student's process
    def observe(self, site: int, thunk):
        if self.depth:  # inside another observation (a helper of the checks that the
            return thunk()  # student's code calls back): part of that one's value
        self.depth += 1
        try:
            value = thunk()
        except BaseException as error:
            self.records.append((site, "error", type(error).__name__[:100], str(error)[:2000]))
            raise
        finally:
            self.depth -= 1
        try:
            encoded, value = encode(value, self.budget)
        except ObservationError as error:
            self.records.append((site, "error", "ObservationError", str(error)))
            raise
        self.records.append((site, "value", encoded))
        return value

    # in the grader's process
    def replay(self, site: int, thunk, stopped: str = ""):
        del thunk  # the student's code never runs here
        if self.position >= len(self.records):
            raise AssertionError(
                "this check did not run in your notebook" + (f": {stopped}" if stopped else
                                                              " (the cell stopped before it)"))
        record = self.records[self.position]
        self.position += 1
        _check(isinstance(record, tuple) and len(record) >= 3 and type(record[0]) is int,
               "record")
        if record[0] != site:
            raise AssertionError("the checks of this cell ran in a different order in your "
                                 "notebook than in the grader (did your code change the test?)")
        if record[1] == "error":
            raise rebuild_exception(str(record[2]), str(record[3]))
        _check(record[1] == "value", "record kind")
        return decode(record[2])


class StudentCodeError(Exception):
    """An exception of a type the grader does not know, raised by the student's code."""


def rebuild_exception(name: str, message: str) -> BaseException:
    """The student's exception, as a builtin of the same name where there is one (so that
    ``pytest.raises(ValueError)`` and ``except ValueError`` in the checks work)."""
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message)
        except Exception:  # builtins that need other arguments (UnicodeDecodeError...)
            pass
    if name == "KeyboardInterrupt":
        return StudentCodeError("stopped by the time limit of the cell")
    return StudentCodeError(f"{name}: {message}")
