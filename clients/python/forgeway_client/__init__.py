"""Python SDK for Forgeway: Client and AsyncClient over the forgeway.v1 gRPC contract, typed results and errors."""

from .aio import AsyncClient, AsyncGenerationStream, AsyncTrainingJob
from .client import Client
from .connection import Retry, Tls
from .embeddings import Embedding, EmbeddingResult, RankedDocument, RerankResult
from .errors import (
    APIError, DeadlineExceededError, FailedPreconditionError, InternalError, InvalidArgumentError, JobFailedError,
    NotFoundError, PermissionDeniedError, RequestCancelledError, ResourceExhaustedError, UnauthenticatedError,
    UnavailableError, UnimplementedError, UnsupportedError,
)
from .requests import DatasetSource, LoRA
from .schema import function_tool
from .streams import GenerationStream, TrainingJob
from .tool_runs import ToolResult, ToolRun
from .types import (
    Artifact, BackendStatus, Capabilities, Choice, Dataset, Delta, Generation, Job, JobEvent, Model, Progress, ToolCall,
    ToolCallDelta,
)

__all__ = [
    "APIError", "Artifact", "AsyncClient", "AsyncGenerationStream", "AsyncTrainingJob", "BackendStatus",
    "Capabilities", "Choice", "Client", "Dataset", "DatasetSource", "DeadlineExceededError", "Delta", "Embedding",
    "EmbeddingResult", "FailedPreconditionError", "Generation", "GenerationStream", "InternalError",
    "InvalidArgumentError", "Job", "JobEvent", "JobFailedError", "LoRA", "Model", "NotFoundError",
    "PermissionDeniedError", "Progress", "RankedDocument", "RequestCancelledError", "RerankResult",
    "ResourceExhaustedError", "Retry", "Tls", "ToolCall", "ToolCallDelta", "ToolResult", "ToolRun", "TrainingJob",
    "UnauthenticatedError", "UnavailableError", "UnimplementedError", "UnsupportedError", "function_tool",
]
