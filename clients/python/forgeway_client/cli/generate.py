"""`forgeway generate` / `forgeway run PROMPT` (one completion, streamed) and `forgeway chat` (interactive)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .common import client, fmt_float, positive_int, print_json, table
from .tools import ReasoningWriter, add_tool_flags, call_line, print_calls, print_reasoning, tool_options, wants_chat

MODEL_ENV = "FORGEWAY_MODEL"
CHAT_COMMANDS = ("/exit or /quit (or LlamaForge's exit, quit, q) ends the chat, /reset forgets it, /help shows this; "
                 "after tool calls, each line is the next call's result")
EXIT_WORDS = ("/exit", "/quit", "exit", "quit", "q")  # LlamaForge's chat leaves on exit, quit and q


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", help=f"model name (env {MODEL_ENV}; default: the only model served)")
    group = parser.add_argument_group("sampling")
    group.add_argument("--max-tokens", type=int, help="largest number of tokens to generate")
    group.add_argument("--temperature", type=float, help="0 is greedy")
    group.add_argument("--top-p", type=float)
    group.add_argument("--top-k", type=int)
    group.add_argument("--min-p", type=float)
    group.add_argument("--repetition-penalty", type=float)
    group.add_argument("--seed", type=int)
    group.add_argument("--stop", action="append", default=None, help="stop sequence (repeatable)")
    group.add_argument("--backend", default="", help="prefer this backend kind (hf, llamacpp, openai, ...)")
    group.add_argument("--adapter", default="", help="LoRA adapter loaded beside the model")


def sampling(args: argparse.Namespace) -> dict:
    options = {name: getattr(args, name) for name in
               ("max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed", "stop")}
    options = {k: v for k, v in options.items() if v is not None}
    return {**options, "backend": args.backend, "adapter": args.adapter}


def pick_model(args: argparse.Namespace, sdk) -> str:
    """--model, then FORGEWAY_MODEL, then the endpoint's only generating model (embedding and rerank models do not
    count: Generate never serves them); anything else is the user's choice to make."""
    chosen = args.model or os.environ.get(MODEL_ENV)
    if chosen:
        return chosen
    from forgeway.core.generation import Task

    retrieval = {Task.EMBEDDING.value, Task.RERANK.value}
    names = sorted(m.name for m in sdk.capabilities().models if m.task not in retrieval)
    if len(names) == 1:
        return names[0]
    from forgeway.client.errors import invalid_argument

    raise invalid_argument("model", "choose one with --model (served: " + (", ".join(names) or "none") + ")")


def run_generate(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if args.system or wants_chat(args):
        system = [{"role": "system", "content": args.system}] if args.system else []
        inputs = {"messages": [*system, {"role": "user", "content": prompt}]}
    else:
        inputs = {"prompt": prompt}
    with client(args) as sdk:
        model = pick_model(args, sdk)
        options = {**sampling(args), **tool_options(args), **inputs, "n": args.n}
        if args.json or args.no_stream or args.n > 1 or args.output:
            result = sdk.generate(model, **options)
            if args.output:
                write_output(args.output, "\n".join(c.text for c in result.choices))
                report(args, result)
            elif args.json:
                print_json(result)
            else:
                for choice in result.choices:
                    print_reasoning(choice.reasoning)
                    if choice.text or not choice.tool_calls:
                        print(f"[{choice.index}] {choice.text}" if args.n > 1 else choice.text)
                    for call in choice.tool_calls:
                        print(f"[{choice.index}] {call_line(call)}" if args.n > 1 else call_line(call))
                report(args, result)
            return 0
        with sdk.stream(model, **options) as stream:
            write_stream(stream)
            report(args, stream.final)
    return 0


def write_output(path: str, text: str) -> None:
    """LlamaForge's `run --output FILE`: the completion goes to FILE, not stdout; where it went, to stderr."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
    print(f"Output written to {path}", file=sys.stderr)


def write_stream(stream) -> None:
    """Print deltas as they come (reasoning to stderr), then the tool calls; the answer's line always ends, even
    when the stream fails halfway."""
    reasoning, wrote = ReasoningWriter(), False
    try:
        for delta in stream:
            reasoning.write(delta.reasoning)
            if delta.text:
                reasoning.close()
                sys.stdout.write(delta.text)
                sys.stdout.flush()
                wrote = True
    finally:
        reasoning.close()
        calls = stream.final.tool_calls if stream.final is not None else stream.tool_calls()
        if wrote or not calls:
            print(flush=True)
        print_calls(calls)


def report(args: argparse.Namespace, result) -> None:
    if args.verbose and result is not None:
        seconds = result.timings.total_ms / 1000
        rate = result.usage.completion_tokens / seconds if seconds > 0 else 0.0
        print(f"[{result.served_by}] {result.usage.prompt_tokens} prompt + {result.usage.completion_tokens} completion "
              f"tokens, first token {fmt_float(result.timings.time_to_first_token_ms)} ms, "
              f"{fmt_float(rate)} tokens/s, finish: {result.finish_reason}", file=sys.stderr)


def run_chat(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    history: list[dict] = [{"role": "system", "content": args.system}] if args.system else []
    start = len(history)
    pending: list = []  # tool calls of the last reply not answered yet: each next line is one's result
    with client(args) as sdk:
        model = pick_model(args, sdk)
        if interactive:
            print(f"chatting with {model} on {sdk.target}; {CHAT_COMMANDS}", file=sys.stderr)
        while True:
            if interactive:
                prompt = f"result of {pending[0].name}> " if pending else "you> "
                print(prompt, end="", file=sys.stderr, flush=True)
            line = sys.stdin.readline()
            if not line:
                break
            text = line.strip()
            if text.lower() in EXIT_WORDS:
                break
            if text == "/reset":
                del history[start:]
                pending.clear()
                continue
            if text == "/help":
                print(CHAT_COMMANDS, file=sys.stderr)
                continue
            if not text:
                continue
            if pending:
                history.append({"role": "tool", "tool_call_id": pending.pop(0).id, "content": text})
                if pending:
                    continue
            else:
                history.append({"role": "user", "content": text})
            with sdk.stream(model, messages=history, **sampling(args), **tool_options(args)) as stream:
                write_stream(stream)
            reply = stream.final.message if stream.final else {"role": "assistant", "content": stream.text}
            history.append(reply)
            pending = list(stream.final.tool_calls) if stream.final else []
    if args.json:
        print_json(history)
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from forgeway.client.bench import benchmark

    with client(args) as sdk:
        model = pick_model(args, sdk)
        results = benchmark(sdk, model, args.prompt or ["Hello, how are you?"], iterations=args.iterations,
                            max_tokens=args.max_tokens, warmup=not args.no_warmup)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
        print(f"Benchmark results written to {args.output}", file=sys.stderr)
    if args.json:
        print_json(results)
        return 0
    rows = [(p["prompt"][:40], len(p["runs"]), *(fmt_float(p["metrics"][key]) for key in (
                "avg_time", "avg_tokens", "avg_time_to_first_token", "avg_tokens_per_second")))
            for p in results["prompts"]]
    overall = results["overall"]
    rows.append(("overall", overall["runs"], fmt_float(overall["total_time"]), overall["total_tokens"], "",
                 fmt_float(overall["avg_tokens_per_second"])))
    table(f"{results['model']} on {results['backend'] or 'forgeway'}: {args.iterations} iteration(s), "
          f"max {args.max_tokens} tokens", ["prompt", "runs", "seconds", "tokens", "first token s", "tokens/s"], rows)
    return 0


def register(commands, parents, one_line_errors) -> None:
    for name in ("generate", "run"):
        text = "the same as generate" if name == "run" else "generate a completion of PROMPT (streamed)"
        parser = one_line_errors(commands.add_parser(name, parents=parents, help=text))
        parser.add_argument("prompt", metavar="PROMPT", help="the prompt; - reads it from stdin")
        add_sampling_flags(parser)
        parser.add_argument("--system", help="send PROMPT as a chat message after this system message")
        parser.add_argument("-n", type=positive_int, default=1, help="number of completions")
        parser.add_argument("--no-stream", action="store_true", help="print the completion when it is complete")
        parser.add_argument("-v", "--verbose", action="store_true", help="print usage and timings to stderr")
        parser.add_argument("-o", "--output", metavar="FILE", help="write the completion to FILE instead of stdout")
        add_tool_flags(parser)
        parser.set_defaults(handler=run_generate, command=name)

    chat = one_line_errors(commands.add_parser("chat", parents=parents,
                                               help="chat with a model, streaming its replies (/exit ends)"))
    add_sampling_flags(chat)
    chat.add_argument("--system", help="system message that starts the conversation")
    add_tool_flags(chat)
    chat.set_defaults(handler=run_chat, command="chat")

    bench = one_line_errors(commands.add_parser(
        "bench", parents=parents, aliases=["benchmark"], help="LlamaForge's benchmark: prompts x iterations -> "
                                                              "tokens/s (alias: benchmark)"))
    bench.add_argument("-m", "--model", help=f"model name (env {MODEL_ENV}; default: the only model served)")
    bench.add_argument("-p", "--prompt", "--prompts", action="extend", nargs="+",
                       help="prompt(s) to time (repeatable; LlamaForge's --prompts A B ...)")
    bench.add_argument("-o", "--output", metavar="FILE", help="also write the results as JSON to FILE")
    bench.add_argument("-i", "--iterations", type=positive_int, default=3, help="runs per prompt")
    bench.add_argument("--max-tokens", type=positive_int, default=100, help="tokens to generate per run")
    bench.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run")
    bench.set_defaults(handler=run_bench, command="bench")
