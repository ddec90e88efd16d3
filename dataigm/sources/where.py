"""``--where``: a row filter on metadata columns, parsed by pandas' expression parser (``DataFrame.query``).

pandas parses the expression into its own restricted grammar (comparisons, ``and``/``or``/``not``, ``in``/``not in``
lists, arithmetic; no arbitrary calls), so nothing is ``eval``-ed. The filter is checked against the columns
before any row is read, and a bad expression gets one line that shows where it broke.
"""

from __future__ import annotations

import tokenize
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class RowFilter:
    """A parsed ``--where`` expression, e.g. ``punsafe < 0.1 and similarity > 0.3`` or ``label in [497, 701]``."""

    expression: str

    @classmethod
    def parse(cls, expression: str, sample: pd.DataFrame, option: str = "--where") -> RowFilter:
        """Check ``expression`` against ``sample`` (a frame with the columns, maybe no rows).

        Raises:
            ValueError: the expression does not parse (with a caret under the place), names a column that does not
                exist (listing those that do), or does not give one true/false value per row.
        """
        text = expression.strip()
        if not text:
            raise ValueError(f"{option} is empty; give a condition such as 'punsafe < 0.1'")
        try:
            mask = sample.eval(text, engine="python", local_dict={}, global_dict={})
        except SyntaxError as err:
            column = err.offset or len(text)
            raise ValueError(
                f"{option} {text!r} does not parse: {err.msg} at column {column}: {text[: column - 1]}<HERE>{text[column - 1 :]}"
            ) from None
        except tokenize.TokenError:
            raise ValueError(f"{option} {text!r} does not parse: it ends inside an open bracket or string") from None
        except pd.errors.UndefinedVariableError as err:
            columns = ", ".join(map(str, sample.columns))
            raise ValueError(
                f"{option} {text!r}: {err} (no such column); columns: {columns} (quote names with spaces in `backticks`)"
            ) from None
        except AttributeError as err:  # pandas' parser has no visitor for this operator
            operator = str(err).rsplit("visit_", 1)[-1].strip("'")
            raise ValueError(f"{option} {text!r} does not parse: operator {operator} is not supported") from None
        except (ValueError, TypeError, KeyError, NotImplementedError) as err:
            raise ValueError(f"{option} {text!r} cannot be evaluated: {err}") from None
        if not isinstance(mask, pd.Series) or (len(sample) and mask.dtype != bool):
            raise ValueError(f"{option} {text!r} is not a condition (it should give true or false for each row)")
        return cls(text)

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """True for the rows of ``frame`` that pass."""
        if frame.empty:
            return pd.Series([], dtype=bool, index=frame.index)
        mask = frame.eval(self.expression, engine="python", local_dict={}, global_dict={})
        return mask.fillna(False).astype(bool)

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` that pass."""
        return frame[self.mask(frame)]


def parse_where(expression: str | None, sample: pd.DataFrame, option: str = "--where") -> RowFilter | None:
    """:meth:`RowFilter.parse`, or None when no expression is given."""
    return None if expression is None else RowFilter.parse(expression, sample, option)


def empty_frame(columns: Sequence[str], dtypes: dict | None = None) -> pd.DataFrame:
    """A frame with ``columns`` (of ``dtypes`` where given) and no rows, to check an expression against."""
    return pd.DataFrame({c: pd.Series([], dtype=(dtypes or {}).get(c, object)) for c in columns})
