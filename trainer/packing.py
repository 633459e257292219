"""Pack documents from a text column into fixed-length training sequences, streaming.

Tokens of consecutive documents are laid end to end with EOS after each document, and cut into
rows of ``seq_len + 1`` tokens (inputs are the first ``seq_len``, targets the last ``seq_len``);
a document may straddle two rows, and attention is not masked at document boundaries (the EOS
token tells the model a new document starts). Only the items that still hold unused tokens are
kept in memory.

With ``mix`` > 1 the packer cuts a *window* of ``mix`` batches' worth of consecutive rows and
hands out batch ``j`` of the window as rows ``j, j + mix, j + 2·mix, …``: each batch then
spans the whole window (several documents) rather than one stretch of text, which is what a
small batch needs to give a gradient that is not about one file. The window's rows are the same
rows, in the same order, that ``mix = 1`` would hand out, only dealt differently.

State is two numbers plus the dataset's own state: *the dataset state just before the oldest
item that still has unused tokens*, and *how many of that item's tokens were already used*.
Resuming re-reads that item, re-tokenizes it (deterministic) and skips the used tokens, so the
resumed stream is token for token the one that was interrupted. Within a window, the state is
that of the window's start plus how many of its batches were handed out (``emitted``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ostraca.client.torch import ShardDataset

from .tokenizer import Tokenizer


class Packer:
    """Yields ``(x, y)`` int64 tensors of shape ``(batch_size, seq_len)`` from a dataset.

    Iterates epochs ``dataset.epoch, +1, …`` without end, or ``epochs`` of them.
    """

    def __init__(
        self,
        dataset: ShardDataset,
        tokenizer: Tokenizer,
        *,
        text_column: str,
        seq_len: int,
        batch_size: int,
        epochs: int | None = None,
        mix: int = 1,
    ) -> None:
        if mix < 1:
            raise ValueError("mix must be at least 1")
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.text_column = text_column
        self.seq_len = seq_len
        self.batch_size = batch_size
        self._epochs_left = epochs
        self._it: Iterator[Any] | None = None
        self._pending: deque[tuple[dict[str, Any], np.ndarray[Any, Any]]] = deque()
        self._offset = 0  # tokens of _pending[0] already used
        self._available = 0  # unused tokens in _pending
        self.mix = mix
        self._window: torch.Tensor | None = None  # (mix × batch_size, seq_len + 1)
        self._window_state: dict[str, Any] = {}
        self._emitted = 0  # batches of the window handed out

    def _stream_state(self) -> dict[str, Any]:
        if self._pending:
            return {"dataset": self._pending[0][0], "offset": self._offset}
        return {"dataset": self.dataset.state_dict(), "offset": 0}

    def state_dict(self) -> dict[str, Any]:
        if self._window is not None and self._emitted < self.mix:
            return {**self._window_state, "emitted": self._emitted}
        return {**self._stream_state(), "emitted": 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state["dataset"])
        self._it = None
        self._pending.clear()
        self._offset = int(state["offset"])
        self._available = -self._offset  # the first item re-read brings these back
        self._window = None
        self._emitted = int(state.get("emitted", 0))  # the window re-cut skips these

    def _pull(self) -> bool:
        """Tokenize one more item; False when the last allowed epoch is done."""
        while True:
            if self._it is None:
                self._it = iter(self.dataset)
            before = self.dataset.state_dict()
            item = next(self._it, None)
            if item is not None:
                break
            self._it = None
            if self._epochs_left is not None:
                self._epochs_left -= 1
                if self._epochs_left <= 0:
                    return False
            self.dataset.set_epoch(self.dataset.epoch + 1)
        if isinstance(item, dict):
            raise TypeError("the packer needs Arrow items: build the dataset with output='arrow'")
        tokens = self.tokenizer.encode_column(item.column(self.text_column))
        self._pending.append((before, tokens))
        self._available += len(tokens)
        return True

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def _take(self, need: int) -> np.ndarray[Any, Any]:
        """The next ``need`` tokens of the stream; StopIteration when the epochs are done."""
        while self._available < need:
            if not self._pull():
                raise StopIteration
        parts: list[np.ndarray[Any, Any]] = []
        want = need
        while want:
            _, tokens = self._pending[0]
            take = min(want, len(tokens) - self._offset)
            parts.append(tokens[self._offset : self._offset + take])
            self._offset += take
            want -= take
            if self._offset == len(tokens):
                self._pending.popleft()
                self._offset = 0
        self._available -= need
        return np.concatenate(parts)

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._window is None or self._emitted == self.mix:
            skip = self._emitted if self._window is None else 0  # after a restore: resume there
            self._window_state = self._stream_state()
            rows = self.mix * self.batch_size
            tokens = self._take(rows * (self.seq_len + 1))
            self._window = torch.from_numpy(tokens).view(rows, self.seq_len + 1)
            self._emitted = skip
        batch = self._window[self._emitted :: self.mix]  # (B, T + 1)
        self._emitted += 1
        return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()  # (B, T), (B, T)
