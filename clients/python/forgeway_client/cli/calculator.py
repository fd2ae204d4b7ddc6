"""LlamaForge's `tools calculator EXPR`: arithmetic and its math functions, evaluated here without `eval`."""

from __future__ import annotations

import argparse
import sys

from .common import print_json


def run_calculator(args: argparse.Namespace) -> int:
    from forgeway.core.calculator import CalculatorError, evaluate

    try:
        value = evaluate(args.expression)
    except CalculatorError as error:
        print(f"forgeway tools calculator: {error}", file=sys.stderr)
        return 1
    print_json({"expression": args.expression, "result": value}) if args.json else print(value)
    return 0


def register(commands, parents, one_line_errors) -> None:
    tools = one_line_errors(commands.add_parser("tools", help="LlamaForge's built-in tools: calculator EXPR"))
    names = tools.add_subparsers(dest="tool", required=True, metavar="{calculator}")
    calculator = one_line_errors(names.add_parser(
        "calculator", help="evaluate arithmetic: + - * / // % ^ (power), parentheses, abs round max min sum pow "
                           "sqrt sin cos tan log log10 ceil floor, pi and e"))
    calculator.add_argument("expression", metavar="EXPR")
    calculator.add_argument("--json", action="store_true", help="machine-readable JSON output")
    for parser in (tools, calculator):
        parser.set_defaults(handler=run_calculator, command="tools calculator", target=None)
