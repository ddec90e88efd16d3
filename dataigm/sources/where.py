"""``--where``: a row filter on metadata columns, in a small grammar of our own, evaluated column-wise by us.

A URL list, a Hub dataset or a recipe may come from someone else, and so may the ``where`` that goes with it, so
the expression can say no more than a row filter. Python's ``ast`` parses it (mode ``eval``); every node is checked
against the grammar below and the tree is evaluated here, on whole columns (pandas operations), never by
``eval``, ``pandas.eval`` or ``DataFrame.query`` (pandas' own documentation says its ``eval`` is not safe for
untrusted input: its python engine evaluates attribute access and method calls).

The grammar:

* a column name (``punsafe``), or ``column('a name with spaces')``; a number, a ``'string'``, ``True``,
  ``False``, ``None``;
* comparisons ``==  !=  <  <=  >  >=``, chains too (``0.1 < punsafe <= 0.5``);
* ``and``, ``or``, ``not``, and pandas' spellings ``&``, ``|``, ``~`` (``&`` and ``|`` bind like ``and`` and
  ``or``, as in ``DataFrame.query``); parentheses;
* ``col in [1, 2]``, ``col not in ('a', 'b')``: a list or tuple of constants;
* arithmetic on numbers: ``+  -  *  /  //  %`` and unary ``-``;
* text tests: ``contains(col, 'a', 'b', ...)`` (any of the substrings; literal text, no regular expressions),
  ``startswith(col, ...)``, ``endswith(col, ...)``, each with ``case=False`` to ignore case; and
  ``isnull(col)``, ``notnull(col)``.

Everything else is refused with one line naming what is not allowed: attribute access, subscripts, other calls,
``@variables``, backticks, dunder names, lambdas, comprehensions, f-strings, ``:=``, ``**``, names that are not
columns. An expression is at most :data:`MAX_LENGTH` characters and :data:`MAX_DEPTH` levels deep. Comparisons
follow pandas: a missing value (NaN, None) fails ``==``, ``<``, ... and passes ``!=``; ``isnull`` tests for it.
"""

from __future__ import annotations

import ast
import functools
import io
import numbers
import operator
import tokenize
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MAX_LENGTH = 2000  # characters of an expression
MAX_DEPTH = 32  # levels of nesting of its syntax tree (a row filter needs a handful)
TEXT_TESTS = ("contains", "startswith", "endswith")
FUNCTIONS = (*TEXT_TESTS, "isnull", "notnull", "column")
GRAMMAR = (
    "allowed: column names (or column('a b')), numbers, 'strings', True/False/None, == != < <= > >=, "
    "and/or/not (& | ~), in/not in [list], + - * / // %, contains/startswith/endswith(column, 'text', ..., "
    "case=False), isnull/notnull(column)"
)

_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Invert, ast.USub, ast.UAdd, ast.BinOp,
    ast.Compare, ast.In, ast.NotIn, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple, ast.Call, ast.keyword,
    *_COMPARE, *_ARITHMETIC,
)  # fmt: skip
# what a refused node is called in the message
_REFUSED = {
    ast.Attribute: "attribute access (.{attr})",
    ast.Subscript: "subscripts ([...])",
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.JoinedStr: "f-strings",
    ast.NamedExpr: "assignments (:=)",
    ast.IfExp: "conditional expressions (x if c else y)",
    ast.Dict: "dicts",
    ast.Set: "sets ({...}; use a [list])",
    ast.Starred: "* unpacking",
    ast.Pow: "** (powers)",
    ast.Is: "'is' (use isnull(col) or notnull(col))",
    ast.IsNot: "'is not' (use isnull(col) or notnull(col))",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
}


# parts of a refused node (a lambda's arguments, a comprehension's loop, an f-string's fields, an assignment's
# target): the node itself is named, not these
_SILENT = (ast.Store, ast.Del, ast.arguments, ast.arg, ast.comprehension, ast.FormattedValue)


class _Refused(ValueError):
    """What is not allowed; :meth:`RowFilter.compile` adds the option and the expression."""


def _shown(text: str) -> str:
    return repr(text if len(text) <= 100 else text[:100] + "...")


@dataclass(frozen=True)
class RowFilter:
    """A parsed ``--where`` expression, e.g. ``punsafe < 0.1 and similarity > 0.3`` or ``label in [497, 701]``.

    Attributes:
        expression: the text as given (stripped).
        columns: the columns it reads.
    """

    expression: str
    columns: tuple[str, ...] = ()
    tree: ast.Expression | None = field(default=None, compare=False, repr=False)

    @classmethod
    def compile(cls, expression, option: str = "--where") -> RowFilter:
        """Check ``expression`` against the grammar, without data: nothing needs to be read or downloaded first.

        Raises:
            ValueError: one line: the expression does not parse (with ``<HERE>`` where it broke), is too long or
                too deep, or uses something outside the grammar (named, followed by what is allowed).
        """
        if not isinstance(expression, str):
            raise ValueError(f"{option} must be text (a condition such as 'punsafe < 0.1'), got {expression!r}")
        text = expression.strip()
        if not text:
            raise ValueError(f"{option} is empty; give a condition such as 'punsafe < 0.1'")
        if len(text) > MAX_LENGTH:
            raise ValueError(f"{option} {_shown(text)} is {len(text)} characters long; the limit is {MAX_LENGTH}")
        try:
            tree = _parse(text, option)
            columns = _check(tree)
        except _Refused as err:
            raise ValueError(f"{option} {_shown(text)}: not allowed: {err}; {GRAMMAR}") from None
        return cls(text, tuple(columns), tree)

    @classmethod
    def parse(cls, expression, sample: pd.DataFrame, option: str = "--where") -> RowFilter:
        """:meth:`compile`, then check the columns it names and its result on ``sample`` (a frame with the
        columns, maybe no rows).

        Raises:
            ValueError: what :meth:`compile` refuses; a name that is not a column (listing those that exist); an
                expression that cannot be evaluated on these columns or is not a condition.
        """
        row_filter = cls.compile(expression, option)
        text = row_filter.expression
        names = [str(c) for c in sample.columns]
        missing = [c for c in row_filter.columns if c not in names]
        if missing:
            raise ValueError(f"{option} {_shown(text)}: {missing[0]!r} is not a column; columns: {', '.join(names)}")
        try:
            mask = _evaluate(row_filter.tree.body, sample)
        except _Refused as err:
            raise ValueError(f"{option} {_shown(text)} cannot be evaluated: {err}") from None
        if not _is_condition(mask):
            raise ValueError(f"{option} {_shown(text)} is not a condition (it should give true or false for each row)")
        return row_filter

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """True for the rows of ``frame`` that pass (a missing value fails).

        Raises:
            ValueError: the expression cannot be evaluated on these rows (e.g. text in a column compared with a
                number in an earlier batch).
        """
        if frame.empty:
            return pd.Series([], dtype=bool, index=frame.index)
        tree = self.tree if self.tree is not None else RowFilter.compile(self.expression).tree
        try:
            mask = _evaluate(tree.body, frame)
        except _Refused as err:
            raise ValueError(f"--where {_shown(self.expression)} cannot be evaluated: {err}") from None
        if not _is_condition(mask):
            raise ValueError(
                f"--where {_shown(self.expression)} is not a condition (it should give true or false for each row)"
            )
        if not isinstance(mask, pd.Series):
            return pd.Series(bool(mask), index=frame.index)
        return mask.fillna(False).astype(bool)

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` that pass."""
        return frame[self.mask(frame)]


def check_where(expression: str | None, option: str = "--where") -> None:
    """Refuse an expression outside the grammar before any data is read (:meth:`RowFilter.compile`)."""
    if expression is not None:
        RowFilter.compile(expression, option)


def parse_where(expression: str | None, sample: pd.DataFrame, option: str = "--where") -> RowFilter | None:
    """:meth:`RowFilter.parse`, or None when no expression is given."""
    return None if expression is None else RowFilter.parse(expression, sample, option)


# ---------------------------------------------------------------- parsing


def _parse(text: str, option: str) -> ast.Expression:
    """Tokens first (``@``, backticks, ``&``/``|`` as ``and``/``or``), then Python's parser in mode ``eval``."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    swaps = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.ERRORTOKEN and token.string.strip() == "`":
                raise _Refused("backticks (`name`; name a column with spaces as column('a b'))")
            if token.type == tokenize.OP and token.string == "@":
                raise _Refused("@ (local variables)")
            if token.type == tokenize.OP and token.string in ("&", "|"):
                start = starts[token.start[0] - 1] + token.start[1]
                swaps.append((start, start + 1, " and " if token.string == "&" else " or "))
    except tokenize.TokenError:
        raise ValueError(f"{option} {_shown(text)} does not parse: it ends inside an open bracket or string") from None
    rewritten = text
    for start, end, word in reversed(swaps):
        rewritten = rewritten[:start] + word + rewritten[end:]
    try:
        return ast.parse(rewritten, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"{option} {_shown(text)} does not parse: {_where_broke(text, err)}") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"{option} {_shown(text)} is nested too deeply; the limit is {MAX_DEPTH} levels") from None
    except ValueError as err:  # e.g. a NUL character
        raise ValueError(f"{option} {_shown(text)} does not parse: {err}") from None


def _where_broke(text: str, err: SyntaxError) -> str:
    """The parser's message, with ``<HERE>`` at its place in the text as given (``&``/``|`` not rewritten)."""
    try:
        ast.parse(text, mode="eval")
        return err.msg  # only the rewritten text fails: its place would not match the text as given
    except SyntaxError as original:
        err = original
    except (RecursionError, MemoryError, ValueError):
        return err.msg
    if err.offset is None or err.lineno != 1 or "\n" in text:
        return err.msg
    column = min(err.offset, len(text) + 1)
    return f"{err.msg} at column {column}: {text[: column - 1]}<HERE>{text[column - 1 :]}"


def _check(tree: ast.Expression) -> list[str]:
    """Every node in the grammar, nesting within :data:`MAX_DEPTH`; the column names read. Of several offences
    the one read first (the leftmost, then the shortest) is named. Iterative: a deep tree cannot exhaust the
    stack here."""
    columns: list[str] = []
    offences: list[tuple[tuple, str]] = []
    stack = [(tree, 0, (0, 0, 0, 0))]
    while stack:
        node, depth, place = stack.pop()
        if hasattr(node, "lineno"):  # operators and argument lists have no place: their parent's stands
            place = (node.lineno, node.col_offset, node.end_lineno or 0, node.end_col_offset or 0)
        if isinstance(node, ast.expr):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Refused(f"nesting deeper than {MAX_DEPTH} levels")
        children = list(ast.iter_child_nodes(node))
        try:
            _check_node(node, columns)
            if isinstance(node, ast.Call):
                children = node.args[:1]  # the function is one of ours; the other arguments are constants, checked
        except _Refused as err:
            if not isinstance(node, _SILENT):
                offences.append((place, len(offences), str(err)))
        stack.extend((child, depth, place) for child in reversed(children))
    if offences:
        raise _Refused(min(offences)[2])
    return columns


def _check_node(node: ast.AST, columns: list[str]) -> None:
    if not isinstance(node, _ALLOWED):
        what = _REFUSED.get(type(node), f"{type(node).__name__} syntax")
        raise _Refused(what.replace("{attr}", str(getattr(node, "attr", ""))))
    if isinstance(node, ast.Name):
        if node.id.startswith("__"):
            raise _Refused(f"dunder names ({node.id})")
        if node.id not in columns:
            columns.append(node.id)
    elif isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, type(None))):
        raise _Refused(f"the constant {node.value!r}")
    elif isinstance(node, ast.Compare):
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)) and not _is_list(right):
                raise _Refused("'in' with anything but a [list] of constants")
    elif isinstance(node, ast.Call):
        _check_call(node)
        if node.func.id == "column" and node.args[0].value not in columns:
            columns.append(node.args[0].value)


def _is_list(node: ast.AST) -> bool:
    return isinstance(node, (ast.List, ast.Tuple)) and all(_constant(e) is not _NOT_CONSTANT for e in node.elts)


_NOT_CONSTANT = object()


def _constant(node: ast.AST):
    """The value of a constant (a negative number too), else :data:`_NOT_CONSTANT`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value
    return _NOT_CONSTANT


def _check_call(node: ast.Call) -> None:
    if isinstance(node.func, ast.Attribute):
        raise _Refused(f"method calls (.{node.func.attr}(...); the text tests are contains(column, 'text') etc.)")
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name not in FUNCTIONS:
        raise _Refused(f"calls other than {', '.join(FUNCTIONS)} (found {name or 'a computed function'}(...))")
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        raise _Refused("* and ** arguments")
    if name == "column":
        if len(node.args) != 1 or node.keywords or not isinstance(_constant(node.args[0]), str):
            raise _Refused("column(...) with anything but one 'name'")
        return
    if not node.args or not _is_column(node.args[0]):
        raise _Refused(f"{name}(...) whose first argument is not a column")
    if name in ("isnull", "notnull"):
        if len(node.args) != 1 or node.keywords:
            raise _Refused(f"{name}(...) with more than one column")
        return
    texts = node.args[1:]
    if not texts or not all(isinstance(_constant(t), str) for t in texts):
        raise _Refused(f"{name}(column, ...) with anything but 'text' after the column")
    for keyword in node.keywords:
        if keyword.arg != "case" or not isinstance(_constant(keyword.value), bool):
            raise _Refused(f"{name}(...) options other than case=True/False")


def _is_column(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "column"
    )


# ---------------------------------------------------------------- evaluating, a column at a time


def _is_condition(value) -> bool:
    if isinstance(value, pd.Series):
        return pd.api.types.is_bool_dtype(value.dtype) or (value.empty and value.dtype == object)
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def _numeric(value, what: str):
    if isinstance(value, pd.Series):
        if pd.api.types.is_numeric_dtype(value.dtype):
            return value
        if value.dtype == object and all(
            v is None or (isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))) for v in value
        ):
            return pd.to_numeric(value)
        raise _Refused(f"{what} needs numbers, and column {value.name!r} holds {value.dtype} values")
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return value
    raise _Refused(f"{what} needs numbers, got {value!r}")


def _condition(value, what: str):
    if not _is_condition(value):
        shown = f"column {value.name!r}" if isinstance(value, pd.Series) else repr(value)
        raise _Refused(f"{what} needs conditions (true/false), got {shown}")
    return value


def _evaluate(node: ast.AST, frame: pd.DataFrame):
    """The value of a checked node on ``frame``: a column (``Series``) or a constant."""
    try:
        return _value(node, frame)
    except _Refused:
        raise
    except (TypeError, ValueError, ArithmeticError, AttributeError) as err:
        raise _Refused(" ".join(str(err).split())[:200] or type(err).__name__) from None


def _value(node: ast.AST, frame: pd.DataFrame):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return frame[node.id]
    if isinstance(node, ast.BoolOp):
        word = "and" if isinstance(node.op, ast.And) else "or"
        values = [_condition(_value(v, frame), f"'{word}'") for v in node.values]
        return functools.reduce(operator.and_ if word == "and" else operator.or_, values)
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand, frame)
        if isinstance(node.op, (ast.Not, ast.Invert)):
            value = _condition(operand, "'not'")
            return ~value if isinstance(value, pd.Series) else not value
        number = _numeric(operand, "unary -")
        return -number if isinstance(node.op, ast.USub) else +number
    if isinstance(node, ast.BinOp):
        left = _numeric(_value(node.left, frame), "arithmetic")
        right = _numeric(_value(node.right, frame), "arithmetic")
        return _ARITHMETIC[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        result = None
        left = _value(node.left, frame)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                values = [_constant(e) for e in comparator.elts]
                part = left.isin(values) if isinstance(left, pd.Series) else left in values
                if isinstance(op, ast.NotIn):
                    part = ~part if isinstance(part, pd.Series) else not part
                right = None
            else:
                right = _value(comparator, frame)
                part = _COMPARE[type(op)](left, right)
            result = part if result is None else result & part
            left = right
        return result
    if isinstance(node, ast.Call):
        return _call(node, frame)
    raise _Refused(f"{type(node).__name__} syntax")  # _check lets no other node through


def _call(node: ast.Call, frame: pd.DataFrame):
    name = node.func.id
    if name == "column":
        return frame[node.args[0].value]
    column = _value(node.args[0], frame)
    if name == "isnull":
        return column.isna()
    if name == "notnull":
        return column.notna()
    texts = [_constant(t) for t in node.args[1:]]
    case = next((_constant(k.value) for k in node.keywords), True)
    if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        raise _Refused(f"{name}(...) needs a text column, and {column.name!r} holds {column.dtype} values")
    try:
        strings = column.str  # a text column (values that are not text give NaN, which fails)
    except AttributeError:  # an object column pandas does not take for text: keep only its text values
        is_text = column.map(lambda v: isinstance(v, str)).astype(bool)
        strings = column.astype(object).where(is_text, None).str
    if not case:
        strings, texts = strings.lower().str, [t.lower() for t in texts]
    if name == "contains":
        parts = [strings.contains(t, regex=False, na=False) for t in texts]
        return functools.reduce(operator.or_, parts).astype(bool)
    test = strings.startswith if name == "startswith" else strings.endswith
    return test(tuple(texts), na=False).astype(bool)
