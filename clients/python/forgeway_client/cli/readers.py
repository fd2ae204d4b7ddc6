"""`forgeway summarize MODEL [TEXT|-]` and `forgeway answer MODEL --context TEXT QUESTION`: the summarization and
extractive-QA tasks (ModelForge's other two) from the command line."""

from __future__ import annotations

import argparse
import sys

from .common import client, fmt_float, print_json


def read_text(value: str | None, what: str) -> str:
    """The text given, or stdin for '-' (or when none is given and stdin is not a terminal)."""
    if value == "-" or (value is None and not sys.stdin.isatty()):
        return sys.stdin.read()
    if value is None:
        from forgeway.client.errors import invalid_argument

        raise invalid_argument(what, "required: give it as an argument, or - to read it from stdin")
    return value


def options(args: argparse.Namespace) -> dict:
    chosen = {"max_tokens": args.max_tokens, "backend": args.backend, "adapter": args.adapter}
    return {k: v for k, v in chosen.items() if v not in (None, "")}


def run_summarize(args: argparse.Namespace) -> int:
    document = read_text(args.text, "document")
    sampling = {k: v for k, v in (("temperature", args.temperature), ("seed", args.seed)) if v is not None}
    with client(args) as sdk:
        result = sdk.summarize(args.model, document, **options(args), **sampling)
    if args.json:
        print_json(result)
    else:
        print(result.text)
    return 0


def run_answer(args: argparse.Namespace) -> int:
    context = read_text(args.context, "context")
    with client(args) as sdk:
        result = sdk.answer(args.model, context, args.question, **options(args))
    span = result.answer_span
    if args.json:
        print_json(result)
    else:
        print(result.text)
        if span is not None:
            print(f"[{span.start}:{span.end}] score {fmt_float(span.score)}", file=sys.stderr)
    return 0


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a summarization or extractive-QA model, as served")
    parser.add_argument("--max-tokens", type=int, help="longest summary / answer span in tokens")
    parser.add_argument("--backend", default="", help="prefer this backend kind (hf, ...)")
    parser.add_argument("--adapter", default="", help="LoRA adapter loaded beside the model")


def register(commands, parents, one_line_errors) -> None:
    summarize = one_line_errors(commands.add_parser(
        "summarize", parents=parents, help="summarize TEXT (or stdin) with a summarization model"))
    add_common(summarize)
    summarize.add_argument("text", metavar="TEXT", nargs="?", help="the document; - (or nothing, piped) reads stdin")
    summarize.add_argument("--temperature", type=float, help="0 (default) is greedy")
    summarize.add_argument("--seed", type=int)
    summarize.set_defaults(handler=run_summarize, command="summarize")

    answer = one_line_errors(commands.add_parser(
        "answer", parents=parents, help="answer QUESTION with a span of --context (extractive QA); the span's "
                                        "offsets and score go to stderr"))
    add_common(answer)
    answer.add_argument("question", metavar="QUESTION", help="the question to answer from the context")
    answer.add_argument("-c", "--context", help="the text holding the answer; - reads stdin (default when piped)")
    answer.set_defaults(handler=run_answer, command="answer")
