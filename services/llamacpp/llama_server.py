"""llama.cpp's own server (`llama-server`, built from the vendored llama.cpp source) as a managed child process.

One child serves one model on a loopback port: continuous batching over `instances` slots, prompt caching, grammars.
The child is restarted with backoff when it dies; while it is down its model answers UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import httpx

from forgeway.core.errors import FailedPrecondition
from forgeway.core.generation import Task
from forgeway.server.ports import free_port

from .settings import ModelConfig
from .source import gguf_problem

log = logging.getLogger("forgeway.llamacpp.server")

BINARY = "llama-server"
START_TIMEOUT_SECONDS = 120.0
BACKOFF_MIN, BACKOFF_MAX = 0.5, 10.0
TAIL_LINES = 40
# The kernel kills the child when the service dies, however it dies (kill -9 included): util-linux's setpriv sets
# the parent-death signal and execs llama-server (a preexec_fn would run Python between fork and exec, which is not
# safe in a process with gRPC's threads).
DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "KILL", "--") if shutil.which("setpriv") else ()
KEEPALIVE_SECONDS = 2.0  # below cpp-httplib's 5 s keep-alive timeout


def find_binary(configured: Path | None) -> Path:
    """The llama-server to run: the setting, else FORGEWAY_LLAMA_SERVER, else the one `make venv` put beside this
    Python (sys.prefix/bin), else the first on PATH."""
    candidates = [configured, os.environ.get("FORGEWAY_LLAMA_SERVER"), Path(sys.prefix) / "bin" / BINARY,
                  shutil.which(BINARY)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise FailedPrecondition(
        f"{BINARY} not found (looked at the server_binary setting, FORGEWAY_LLAMA_SERVER, {sys.prefix}/bin and PATH); "
        "`make venv` builds it from the llama.cpp source that llama-cpp-python vendors")


def command(binary: Path, config: ModelConfig, path: Path, port: int, warmup: bool = True,
            verbose: bool = False) -> list[str]:
    """llama-server's arguments for a model: LlamaForge's parameters mapped onto its flags, loopback only."""
    args = [str(binary), "--model", str(path), "--host", "127.0.0.1", "--port", str(port),
            "--alias", config.name, "--parallel", str(config.instances), "--n-gpu-layers", str(config.n_gpu_layers),
            "--cache-type-k", config.kv_cache_type, "--cache-type-v", config.kv_cache_type,
            "--flash-attn", "on" if config.flash_attn else "off", "--metrics", "--slots", "--no-webui"]
    if config.task == Task.TEXT_GENERATION:
        args += ["--batch-size", str(config.n_batch), "--ubatch-size", str(config.n_batch),
                 "--cache-reuse", str(config.cache_reuse), "--jinja", "--reasoning-format", "deepseek",
                 "--reasoning", config.thinking]
    else:
        # An input of a non-causal (or mean/cls-pooled) model is evaluated in one physical batch: make it hold a
        # whole context (llama-server refuses a longer input with "increase the physical batch size").
        batch = max(config.n_batch, config.n_ctx)
        args += ["--batch-size", str(batch), "--ubatch-size", str(batch)]
        # One KV buffer for all slots: without it, inputs of a causal model pooled together in one batch (mean
        # pooling) get vectors that differ from each input's own (as llama-cpp-python, which sets it for embeddings).
        args.append("--kv-unified")
        if config.task == Task.RERANK:
            args.append("--reranking")  # --embedding with rank pooling: the GGUF's classification head scores pairs
        else:
            args.append("--embedding")
            if config.pooling:
                args += ["--pooling", config.pooling]
    # Every slot gets the whole context the model asks for (0: the GGUF's training context, llama.cpp's own default).
    if config.n_ctx:
        args += ["--ctx-size", str(config.n_ctx * config.instances), "--kv-unified-per-slot", str(config.n_ctx)]
    if config.n_threads:
        args += ["--threads", str(config.n_threads)]
    if config.n_threads_batch or config.n_threads:
        args += ["--threads-batch", str(config.n_threads_batch or config.n_threads)]
    if config.use_mlock:
        args.append("--mlock")
    if not config.use_mmap:
        args.append("--no-mmap")
    if config.chat_format and config.task == Task.TEXT_GENERATION:
        args += ["--chat-template", config.chat_format]
    if not warmup:
        args.append("--no-warmup")
    if verbose:
        args.append("--verbose")
    return args


class LlamaServer:
    """A llama-server child serving one model: started, watched, restarted with backoff, stopped."""

    def __init__(self, config: ModelConfig, path: Path, binary: Path, log_dir: Path, on_change=None,
                 warmup: bool = True, verbose: bool = False):
        self.config, self.path, self.binary = config, path, binary
        self.warmup, self.verbose = warmup, verbose
        self.log_path = log_dir / f"llama-server-{config.name}.log"
        self.on_change = on_change or (lambda: None)
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self.client: httpx.AsyncClient | None = None
        self.available = False
        self.failure = "starting"
        self.restarts = 0
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._watcher: asyncio.Task | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        """Start the child and wait until it serves; raise FAILED_PRECONDITION with its last words if it cannot."""
        await self._spawn()
        self._watcher = asyncio.create_task(self._watch())

    async def _spawn(self) -> None:
        self.port = free_port("127.0.0.1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            *DIE_WITH_PARENT, *command(self.binary, self.config, self.path, self.port, self.warmup, self.verbose), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        self._reader = asyncio.create_task(self._read_output(self.process))
        if self.client is not None:
            await self.client.aclose()
        # No pool limit: every caller's request is one connection, and llama-server queues beyond its slots. Idle
        # connections are dropped before llama-server's HTTP library closes them (after 5 s), so none is reused as
        # it closes.
        self.client = httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(None, connect=5.0),
                                        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64,
                                                            keepalive_expiry=KEEPALIVE_SECONDS))
        await self._wait_healthy()
        self.available, self.failure = True, ""
        self.on_change()
        log.info("llama-server for %s serving on %s (pid %d)", self.config.name, self.url, self.process.pid)

    async def _read_output(self, process: asyncio.subprocess.Process) -> None:
        with self.log_path.open("ab") as out:
            async for line in process.stdout:
                out.write(line)
                out.flush()
                self.tail.append(line.decode("utf-8", "replace").rstrip())

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process.returncode is not None:
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
                why = await asyncio.to_thread(gguf_problem, self.path)
                raise FailedPrecondition(f"llama-server could not load {self.path} ({why}; exit code "
                                         f"{self.process.returncode}): {self.last_words()}")
            try:
                reply = await self.client.get("/health", timeout=2.0)
                if reply.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                await self._kill()
                raise FailedPrecondition(f"llama-server did not serve {self.path} within {START_TIMEOUT_SECONDS:.0f} s")
            await asyncio.sleep(0.05)

    def last_words(self) -> str:
        lines = [line for line in self.tail if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
        return " | ".join((errors or lines)[-3:]) or "no output"

    async def _watch(self) -> None:
        """Restart the child when it dies, with backoff; health and Capabilities follow `available`."""
        backoff = BACKOFF_MIN
        while not self._stopping:
            code = await self.process.wait()
            if self._stopping:
                return
            self.available = False
            self.failure = f"llama-server for {self.config.name} exited with {_exit_reason(code)}; restarting"
            log.error("%s: %s", self.failure, self.last_words())
            self.on_change()
            while not self._stopping:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                try:
                    await self._spawn()
                    self.restarts += 1
                    backoff = BACKOFF_MIN
                    break
                except FailedPrecondition as exc:
                    self.failure = f"llama-server for {self.config.name} failed to restart: {exc.message}"
                    log.error(self.failure)

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        self.available = False
        if self._watcher is not None:
            self._watcher.cancel()
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                await self._kill()
        if self.client is not None:
            await self.client.aclose()

    async def _kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


async def send(client: httpx.AsyncClient, path: str, body: dict, stream: bool = False,
               close: bool = False) -> httpx.Response:
    """POST, once more on a fresh connection if the server closed a kept-alive one before answering (cpp-httplib
    ends a connection after 100 requests or 5 idle seconds): the request was not processed, so it is safe to resend.

    `close` asks llama-server to close the connection after answering: each of its HTTP threads serves one connection
    at a time and waits up to 5 s on a kept-alive one for the next request, so short requests from more callers than
    it has threads (max(slots + 4, cores - 1)) would otherwise wait up to 5 s on idle connections."""
    headers = {"Connection": "close"} if close else None
    try:
        return await client.send(client.build_request("POST", path, json=body, headers=headers), stream=stream)
    except httpx.RemoteProtocolError:
        return await client.send(client.build_request("POST", path, json=body, headers=headers), stream=stream)
