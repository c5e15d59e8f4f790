"""The shape of JSON read back from a file, checked before it is used: a wrong type is named by its path.

Why: a saved rule is read field by field (`data["on_plan"]["on"]`), and a file that holds a list where an
object belongs -- edited by hand, or damaged into other valid JSON -- was refused with Python's own words ("list
indices must be integers or slices, not str"), which name neither the field nor what it should be. A shape is
what a reader expects: "number", "integer", "string", "boolean", "any" (present, of any type), an object as a dict
of its fields (a key ending in "?" may be left out; other keys are not looked at), a list as `[item shape]`, and
`nullable(shape)` for null or that shape. `check` raises `ShapeError` (a ValueError), e.g. "on_plan.peaks:
expected an integer, got a list".
"""

from __future__ import annotations

from typing import Any

Shape = Any  # str | dict[str, Shape] | list[Shape] | tuple[None, Shape]
SCALARS = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "true or false",
           "any": "a value"}


class ShapeError(ValueError):
    """JSON of another shape than expected; the message names the field, what was expected and what was found."""


def nullable(shape: Shape) -> tuple[None, Shape]:
    return (None, shape)


def describe(value: Any) -> str:
    """A JSON value's kind, as a person reading the file sees it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def expected(shape: Shape) -> str:
    if isinstance(shape, tuple):
        return f"null or {expected(shape[1])}"
    if isinstance(shape, dict):
        return f"an object with {', '.join(k.rstrip('?') for k in shape)}"
    if isinstance(shape, list):
        item = expected(shape[0])
        return f"a list of {item.split(' ', 1)[1]}s" if shape[0] in SCALARS else f"a list, each {item}"
    return SCALARS[shape]


def _fits(value: Any, shape: Shape) -> bool:
    """`value` is of the kind `shape` asks for (its fields and items are checked apart)."""
    if isinstance(shape, dict):
        return isinstance(value, dict)
    if isinstance(shape, list):
        return isinstance(value, list)
    if shape == "any":
        return True
    if shape == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if shape == "string":
        return isinstance(value, str)
    if shape == "integer":  # a whole number written as 3.0 is taken, as `int()` took it before
        return isinstance(value, int) or isinstance(value, float) and value.is_integer()
    return isinstance(value, (int, float))


def check(value: Any, shape: Shape, where: str) -> None:
    """ShapeError when `value` is not of `shape`; `where` is the path of `value` ("" for the whole file)."""
    base = shape[1] if isinstance(shape, tuple) else shape
    if value is None and base is not shape:
        return
    if not _fits(value, base):
        raise ShapeError(f"{where or 'the file'}: expected {expected(shape)}, got {describe(value)}")
    if isinstance(base, list):
        for index, item in enumerate(value):
            check(item, base[0], f"{where}[{index}]")
    elif isinstance(base, dict):
        for key, inner in base.items():
            name = key.rstrip("?")
            path = f"{where}.{name}" if where else name
            if name in value:
                check(value[name], inner, path)
            elif not key.endswith("?"):
                raise ShapeError(f"{path}: missing" + (f"; expected {expected(inner)}" if inner != "any" else ""))
