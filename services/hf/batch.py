"""The running batch: left-padded KV cache, attention mask and positions, with rows joining and leaving."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .sequence import Choice


def mergeable(cache) -> bool:
    """Whether rows of this cache can be padded, merged and dropped (plain full-attention layers)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


class DecodeBatch:
    """Sequences decoded together. Row i of every tensor belongs to rows[i]; padding sits on the left."""

    def __init__(self, rows: list[Choice], cache: DynamicCache, mask: torch.Tensor, positions: torch.Tensor):
        self.rows = rows
        self.cache = cache
        self.mask = mask  # [B, T] 1 for real tokens
        self.positions = positions  # [B] position id of each row's next token
        self.flexible = mergeable(cache)

    def __len__(self) -> int:
        return len(self.rows)

    def advance(self) -> torch.Tensor:
        """Extend the mask by the token about to be fed; return the mask for the forward pass."""
        ones = torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        return self.mask

    def select(self, keep: list[int]) -> None:
        """Keep only these rows, then drop padding columns no row needs any more."""
        if len(keep) == len(self.rows):
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        self.rows = [self.rows[i] for i in keep]
        self.mask = self.mask.index_select(0, index)
        self.positions = self.positions.index_select(0, index)
        self.cache.batch_select_indices(index)
        self._trim()

    def _trim(self) -> None:
        if not self.rows or not self.flexible:
            return
        used = self.mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else self.mask.shape[1]
        if start > 0:
            self.mask = self.mask[:, start:]
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, start:]
                layer.values = layer.values[:, :, start:]

    def merge(self, other: DecodeBatch) -> None:
        """Append other's rows, left-padding whichever cache is shorter."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        mine, theirs = width - self.mask.shape[1], width - other.mask.shape[1]
        self.mask = torch.cat([F.pad(self.mask, (mine, 0)), F.pad(other.mask, (theirs, 0))], dim=0)
        for a, b in zip(self.cache.layers, other.cache.layers, strict=True):
            a.keys = torch.cat([F.pad(a.keys, (0, 0, mine, 0)), F.pad(b.keys, (0, 0, theirs, 0))], dim=0)
            a.values = torch.cat([F.pad(a.values, (0, 0, mine, 0)), F.pad(b.values, (0, 0, theirs, 0))], dim=0)
        self.positions = torch.cat([self.positions, other.positions])
        self.rows += other.rows

    def repeat_rows(self, counts: list[int]) -> None:
        """Repeat row i counts[i] times (n completions share one prefill)."""
        if all(c == 1 for c in counts):
            return
        index = torch.repeat_interleave(torch.arange(len(counts), device=self.mask.device),
                                        torch.tensor(counts, device=self.mask.device))
        self.mask = self.mask.index_select(0, index)
        self.positions = self.positions.index_select(0, index)
        self.cache.batch_select_indices(index)
