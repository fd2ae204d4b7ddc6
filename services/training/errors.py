"""Errors specific to training, built on the runtime's hierarchy."""

from __future__ import annotations

from forgeway.core.errors import NotFound


def job_not_found(job_id: str) -> NotFound:
    return NotFound("job", job_id)


def dataset_not_found(dataset_id: str) -> NotFound:
    return NotFound("dataset", dataset_id)
