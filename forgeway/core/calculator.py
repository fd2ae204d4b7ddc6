"""LlamaForge's calculator: arithmetic and its math functions, evaluated by walking Python's `ast` with a whitelist.

User text is never passed to eval: it is parsed to a syntax tree and only numbers, the operators below, the
constants `pi` and `e`, and the functions LlamaForge's calculator allows are evaluated. `^` is power (as in
LlamaForge), so `sqrt(16) + 2^3` is 12; a whole-number float comes back as an int.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any

MAX_LENGTH = 1000  # characters of one expression
MAX_DEPTH = 50  # nesting of its syntax tree
MAX_EXPONENT = 10_000  # largest integer exponent (a bigger one could take minutes and gigabytes)
MAX_INT_BITS = 100_000  # largest integer an intermediate result may be

Number = int | float

# LlamaForge's calculator's list (abs, round, max, min, sum, pow, sqrt, sin, cos, tan, log, log10, ceil, floor).
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "max": max, "min": min, "sum": sum, "pow": pow, "sqrt": math.sqrt,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "log": math.log, "log10": math.log10,
    "ceil": math.ceil, "floor": math.floor,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
SYMBOLS = {ast.BitXor: "^ (after **)", ast.BitAnd: "&", ast.BitOr: "|", ast.LShift: "<<", ast.RShift: ">>",
           ast.MatMult: "@", ast.Invert: "~", ast.Not: "not"}

_CALCULATE = re.compile(r"^\s*(?:please\s+)?(?:calculate|compute|evaluate|calc)\b[:\s]*", re.IGNORECASE)


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot evaluate; the message says why, for the person who typed it."""

    def __init__(self, expression: str, reason: str):
        super().__init__(f"cannot evaluate {expression!r}: {reason}")
        self.expression, self.reason = expression, reason


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression ("sqrt(16) + 2^3" -> 12; a leading "calculate" is dropped, as
    LlamaForge's calculator drops it). CalculatorError says what is not allowed or what went wrong."""
    if not isinstance(expression, str):
        raise CalculatorError(repr(expression), "an expression is text")
    text = _CALCULATE.sub("", expression).strip().rstrip("=?").strip()
    if not text:
        raise CalculatorError(expression, "empty expression")
    if len(text) > MAX_LENGTH:
        raise CalculatorError(expression[:40] + "...", f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(expression, f"not an arithmetic expression ({exc.msg})") from None
    except (ValueError, RecursionError, MemoryError):  # a NUL character; nesting beyond the parser's limits
        raise CalculatorError(expression, "not an arithmetic expression") from None
    try:
        result = _Walker(expression).value(tree.body, 0)
    except CalculatorError:
        raise
    except ZeroDivisionError:
        raise CalculatorError(expression, "division by zero") from None
    except OverflowError:
        raise CalculatorError(expression, "the result is too large") from None
    except (ValueError, TypeError) as exc:
        raise CalculatorError(expression, str(exc)) from None
    if isinstance(result, complex):
        raise CalculatorError(expression, "the result is not a real number")
    if isinstance(result, float):
        if not math.isfinite(result):
            raise CalculatorError(expression, "the result is not a finite number")
        if result.is_integer() and abs(result) < 2 ** 53:
            return int(result)
    return result


class _Walker:
    def __init__(self, expression: str):
        self.expression = expression

    def refuse(self, reason: str) -> CalculatorError:
        return CalculatorError(self.expression, reason)

    def value(self, node: ast.AST, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.refuse(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise self.refuse(f"{node.value!r} is not a number")
            return node.value
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id in FUNCTIONS:
                raise self.refuse(f"{node.id} is a function: call it, as in {node.id}(...)")
            raise self.refuse(f"unknown name {node.id!r} (constants: {', '.join(CONSTANTS)})")
        if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
            return UNARY[type(node.op)](self.value(node.operand, depth + 1))
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            left, right = self.value(node.left, depth + 1), self.value(node.right, depth + 1)
            if isinstance(node.op, ast.Pow):
                return self.power(left, right)
            return self.bounded(BINARY[type(node.op)](left, right))
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, ast.List | ast.Tuple):
            raise self.refuse("a list is allowed only as the argument of sum, min or max")
        symbol = SYMBOLS.get(type(getattr(node, "op", None))) or SYMBOLS.get(type(node))
        what = f"the operator {symbol}" if symbol else _describe(node)
        raise self.refuse(f"{what} is not allowed (numbers, + - * / // % ^ **, parentheses, constants "
                          f"{', '.join(CONSTANTS)} and functions {', '.join(FUNCTIONS)})")

    def call(self, node: ast.Call, depth: int) -> Any:
        if not isinstance(node.func, ast.Name):
            raise self.refuse(f"{_describe(node.func)} is not allowed: call a function by name")
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.refuse(f"function {name!r} is not allowed (allowed: {', '.join(FUNCTIONS)})")
        if node.keywords:
            raise self.refuse(f"{name}() takes no keyword arguments")
        arguments = [self.argument(a, name, depth + 1) for a in node.args]
        if name == "pow" and len(arguments) == 2:
            return self.power(*arguments)
        return self.bounded(FUNCTIONS[name](*arguments))

    def argument(self, node: ast.AST, function: str, depth: int) -> Any:
        if isinstance(node, ast.List | ast.Tuple) and function in ("sum", "min", "max"):
            return [self.value(item, depth + 1) for item in node.elts]
        if isinstance(node, ast.Starred):
            raise self.refuse("*arguments are not allowed")
        return self.value(node, depth)

    def power(self, base: Number, exponent: Number) -> Number:
        if isinstance(exponent, int) and abs(exponent) > MAX_EXPONENT and abs(base) > 1:
            raise self.refuse(f"exponent {exponent} is larger than {MAX_EXPONENT}")
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 \
                and abs(base).bit_length() * exponent > MAX_INT_BITS:
            raise self.refuse("the result is too large")
        return self.bounded(operator.pow(base, exponent))

    def bounded(self, value: Any) -> Any:
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise self.refuse("the result is too large")
        return value


def _describe(node: ast.AST) -> str:
    names = {ast.Attribute: "attribute access", ast.Subscript: "indexing", ast.Lambda: "lambda",
             ast.Compare: "comparison", ast.BoolOp: "and/or", ast.IfExp: "if-else", ast.Dict: "a dict",
             ast.Set: "a set", ast.JoinedStr: "an f-string", ast.NamedExpr: "assignment",
             ast.ListComp: "a comprehension", ast.GeneratorExp: "a generator", ast.Await: "await"}
    return names.get(type(node), type(node).__name__)
