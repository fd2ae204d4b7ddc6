"""Settings of the HTTP shim: body limits, timeouts, upload chunking."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024


class HttpSettings(BaseModel):
    """How the shim bounds requests and talks gRPC to its target. Embed it in the gateway's settings."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(16 * MIB, ge=1024, description="Largest JSON request body; larger answers 413.")
    max_upload_bytes: int = Field(
        256 * MIB, ge=1024, description="Largest POST /v1/files body (multipart); larger answers 413."
    )
    request_timeout_seconds: float = Field(
        30.0, gt=0, description="Deadline of unary calls other than generation (models, files, jobs)."
    )
    generation_timeout_seconds: float = Field(
        600.0, gt=0, description="Deadline of one generation (streamed or not), embedding or rerank call."
    )
    load_timeout_seconds: float = Field(
        600.0, gt=0, description="Deadline of POST /v1/models/{id} (loading reads weights, or starts llama-server)."
    )
    readiness_timeout_seconds: float = Field(2.0, gt=0, description="Deadline of the Capabilities call behind /readyz.")
    upload_chunk_bytes: int = Field(
        1 * MIB, ge=1024, le=1 * MIB, description="Size of each UploadDataset chunk (the contract allows 1 MiB)."
    )
    max_message_bytes: int = Field(64 * MIB, ge=1024, description="Largest gRPC message, both ways.")
    base_learning_rate: float = Field(
        2e-5, gt=0, description="Learning rate that OpenAI's learning_rate_multiplier multiplies."
    )
    title: str = Field("Forgeway", description="Title of the OpenAPI document.")
