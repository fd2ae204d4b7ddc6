"""`forgeway embed MODEL TEXT...` (one line per vector, or --json) and `forgeway rerank MODEL QUERY DOC...` (a ranked
table)."""

from __future__ import annotations

import argparse
import sys

from .common import client, positive_int, print_json, table

SHOWN_VALUES = 4  # values of each vector printed on its line; --json prints them all


def read_lines(path: str) -> list[str]:
    """The non-empty lines of a file (- is stdin), one input each."""
    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    return [line for line in text.splitlines() if line.strip()]


def gathered(args: argparse.Namespace, given: list[str], what: str) -> list[str]:
    """The positional inputs followed by those of --file; at least one, or a usage error naming what is missing."""
    items = [*given, *(read_lines(args.file) if args.file else ())]
    if not items:
        args.parser.error(f"give at least one {what} (or --file)")
    return items


def vector_line(embedding) -> str:
    head = " ".join(f"{v:+.4f}" for v in embedding.values[:SHOWN_VALUES])
    more = " ..." if len(embedding.values) > SHOWN_VALUES else ""
    cut = " truncated" if embedding.truncated else ""
    return f"[{embedding.index}] {embedding.tokens} tokens{cut}, {len(embedding.values)} dims: {head}{more}"


def run_embed(args: argparse.Namespace) -> int:
    texts = gathered(args, args.texts, "TEXT")
    with client(args) as sdk:
        result = sdk.embed(args.model, texts, dimensions=args.dimensions, normalize=False if args.no_normalize else None,
                           truncation=args.truncate, backend=args.backend)
    if args.json:
        print_json(result, lines=True)  # one compact line: pretty-printed vectors would take a line per value
        return 0
    for embedding in result.embeddings:
        print(vector_line(embedding))
    print(f"{result.model} on {result.served_by}: {len(result.embeddings)} vector(s) of {result.dimensions}, "
          f"{result.usage.prompt_tokens} tokens", file=sys.stderr)
    return 0


def run_rerank(args: argparse.Namespace) -> int:
    documents = gathered(args, args.documents, "DOC")
    with client(args) as sdk:
        result = sdk.rerank(args.model, args.query, documents, top_n=args.top_n, return_documents=True,
                            truncation=args.truncate, backend=args.backend)
    if args.json:
        print_json(result)
        return 0
    table(f"{result.model}: {args.query}", ["rank", "index", "score", "document"],
          [(rank, r.index, f"{r.relevance_score:.4f}", r.document) for rank, r in enumerate(result.results, 1)])
    return 0


def register(commands, parents, one_line_errors) -> None:
    embed = one_line_errors(commands.add_parser("embed", parents=parents, help="embed texts with an embedding model"))
    embed.add_argument("model", metavar="MODEL", help="embedding model name")
    embed.add_argument("texts", metavar="TEXT", nargs="*", help="texts to embed (one vector each)")
    embed.add_argument("--dimensions", type=positive_int, help="cut vectors to this length (a Matryoshka length)")
    embed.add_argument("--no-normalize", action="store_true", help="raw vectors, not scaled to unit length")
    embed.set_defaults(handler=run_embed, command="embed", parser=embed)

    rerank = one_line_errors(commands.add_parser("rerank", parents=parents,
                                                 help="rank documents by relevance to a query"))
    rerank.add_argument("model", metavar="MODEL", help="rerank model name")
    rerank.add_argument("query", metavar="QUERY", help="the query")
    rerank.add_argument("documents", metavar="DOC", nargs="*", help="documents to rank")
    rerank.add_argument("--top-n", type=positive_int, help="show only the best N")
    rerank.set_defaults(handler=run_rerank, command="rerank", parser=rerank)

    for parser in (embed, rerank):
        parser.add_argument("--file", help="more inputs, one per line (- reads stdin)")
        parser.add_argument("--truncate", choices=("end", "start"),
                            help="cut inputs over the model's length at this end (default: refuse them)")
        parser.add_argument("--backend", default="", help="serve only on this backend kind (hf, llamacpp, ...)")
