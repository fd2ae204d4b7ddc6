"""Contenders of benchmarks/llamacpp_overhead.py: llama-cpp-python in-process, forgeway, llama_cpp.server.

Each runs a list of prompts at a given concurrency and returns tokens, seconds, tokens/s and median time to first
token.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
import llama_cpp

from forgeway.v1 import backend_pb2_grpc, generate_pb2

N_CTX = 512


def summary(tokens: int, seconds: float, ttfts: list[float]) -> dict:
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
            "ttft_ms": round(statistics.median(ttfts) * 1000, 2) if ttfts else None}


def run_threads(texts: list[str], concurrency: int, one) -> dict:
    """Run one(text) -> (tokens, ttft) over texts with `concurrency` threads; aggregate tokens/s."""
    results, queue, lock = [], list(texts), threading.Lock()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                text = queue.pop()
            results.append(one(text))

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(sum(r[0] for r in results), time.perf_counter() - start, [r[1] for r in results if r[1]])


def in_process(llm: llama_cpp.Llama, texts: list[str], max_tokens: int, concurrency: int, api: str) -> dict:
    """api 'tokens': Llama.generate's token loop with incremental detokenizing (the floor of any wrapper's cost);
    api 'completion': Llama.create_completion(stream=True), llama-cpp-python's own streaming API."""
    lock = threading.Lock()

    def tokens(text: str) -> tuple[int, float]:
        start = time.perf_counter()  # before the lock: time to first token includes waiting, as for the servers
        with lock:
            first, count, out = 0.0, 0, codecs.getincrementaldecoder("utf-8")("replace")
            for token in llm.generate(llm.tokenize(text.encode(), special=True), temp=0.0):
                first = first or time.perf_counter()
                if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                    break
                out.decode(llm.detokenize([token]))
                count += 1
                if count == max_tokens:
                    break
            return count, first - start

    def completion(text: str) -> tuple[int, float]:
        start = time.perf_counter()
        with lock:
            first, pieces, finish = 0.0, [], None
            for chunk in llm.create_completion(text, max_tokens=max_tokens, temperature=0.0, stream=True):
                first = first or time.perf_counter()
                pieces.append(chunk["choices"][0]["text"])
                finish = chunk["choices"][0]["finish_reason"] or finish
            count = max_tokens if finish == "length" else len(llm.tokenize("".join(pieces).encode(), add_bos=False))
            return count, first - start

    one = tokens if api == "tokens" else completion
    one(texts[0])  # warm up
    return run_threads(texts, concurrency, one)


class InProcessWorker:
    """The in-process baseline in a child process of its own, so that it competes for the CPU like the servers do."""

    def __init__(self, gguf: Path, threads: int):
        script = Path(__file__).with_name("llamacpp_overhead.py")
        self.process = subprocess.Popen([sys.executable, str(script), "--worker", str(gguf), "--threads", str(threads)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, texts: list[str], max_tokens: int, concurrency: int, api: str) -> dict:
        job = {"texts": texts, "max_tokens": max_tokens, "concurrency": concurrency, "api": api}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def worker_main(gguf: Path, threads: int) -> int:
    llm = llama_cpp.Llama(str(gguf), n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads, verbose=False)
    for line in sys.stdin:
        job = json.loads(line)
        result = in_process(llm, job["texts"], job["max_tokens"], job["concurrency"], job["api"])
        print(json.dumps(result), flush=True)
    llm.close()
    return 0


async def forgeway(address: str, texts: list[str], max_tokens: int, concurrency: int, streaming: bool) -> dict:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = backend_pb2_grpc.BackendServiceStub(channel)
        sampling = generate_pb2.SamplingParams(max_tokens=max_tokens)

        async def one(text: str) -> tuple[int, float]:
            req = generate_pb2.GenerateRequest(model="bench", prompt=text, sampling=sampling)
            start, first = time.perf_counter(), 0.0
            if not streaming:
                reply = await stub.Generate(req, timeout=600)
                return reply.usage.completion_tokens, 0.0
            async for message in stub.GenerateStream(req, timeout=600):
                if message.WhichOneof("event") == "delta":
                    first = first or time.perf_counter()
                else:
                    return message.final.usage.completion_tokens, first - start
            raise RuntimeError("stream ended without a final message")

        await one(texts[0])  # warm up
        queue, results = list(texts), []

        async def worker():
            while queue:
                results.append(await one(queue.pop()))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return summary(sum(r[0] for r in results), time.perf_counter() - start, [r[1] for r in results if r[1]])


def llama_cpp_server(base: str, tokenize, texts: list[str], max_tokens: int, concurrency: int, streaming: bool) -> dict:
    client = httpx.Client(base_url=base, timeout=600)

    def one(text: str) -> tuple[int, float]:
        body = {"prompt": text, "max_tokens": max_tokens, "temperature": 0.0, "stream": streaming}
        start = time.perf_counter()
        if not streaming:
            return client.post("/v1/completions", json=body).json()["usage"]["completion_tokens"], 0.0
        first, pieces, finish = 0.0, [], None
        with client.stream("POST", "/v1/completions", json=body) as reply:
            for line in reply.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choice = json.loads(line[6:])["choices"][0]
                first = first or time.perf_counter()
                pieces.append(choice["text"])
                finish = choice["finish_reason"] or finish
        return (max_tokens if finish == "length" else len(tokenize("".join(pieces)))), first - start

    one(texts[0])  # warm up
    return run_threads(texts, concurrency, one)
