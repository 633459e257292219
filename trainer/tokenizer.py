"""Tokenizers: byte-level (default; exact round trip) and a BPE trained locally on a sample.

Both turn a whole Arrow string column into one flat token array with EOS after each document
(:meth:`Tokenizer.encode_column`), so the packer never handles documents one by one in Python
for the byte tokenizer. Both are stored with the run as ``tokenizer.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TOKENIZER_FILE = "tokenizer.json"
EOS_TEXT = "<|endoftext|>"


class Tokenizer(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def eos_id(self) -> int: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def encode_column(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
        """Tokens of every non-null document, each followed by EOS, as one int64 array."""
        ...

    def byte_lengths(self) -> np.ndarray[Any, Any]:
        """How many bytes of UTF-8 text each token id stands for (EOS: 0), as an int64 array
        of ``vocab_size``: what turns a loss per token into a loss per byte."""
        ...

    def save(self, path: Path) -> None: ...


def _as_large_string(column: pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        column = pc.drop_null(column)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise TypeError(f"the text column must hold strings, not {column.type}")
    return column.cast(pa.large_string())


class ByteTokenizer:
    """UTF-8 bytes are tokens 0–255; EOS is 256. ``decode(encode(s)) == s`` for every ``s``."""

    name = "bytes"
    vocab_size = 257
    eos_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        data = bytes(i for i in ids if 0 <= i < 256)
        return data.decode("utf-8", errors="replace")

    def encode_column(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
        arr = _as_large_string(column)
        n = len(arr)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        # Whole-buffer work: the offsets and data buffers of the string array, no per-row loop.
        offsets_buf, data_buf = arr.buffers()[1], arr.buffers()[2]
        offsets = np.frombuffer(offsets_buf, dtype=np.int64, count=arr.offset + n + 1)
        offsets = offsets[arr.offset :]
        lo, hi = int(offsets[0]), int(offsets[-1])
        data = (
            np.frombuffer(data_buf, dtype=np.uint8, count=hi)[lo:hi]
            if data_buf is not None and hi > 0
            else np.empty(0, dtype=np.uint8)
        )
        ends = offsets[1:] - lo  # where each document ends in ``data``
        out = np.empty(hi - lo + n, dtype=np.int64)
        eos_at = ends + np.arange(1, n + 1)  # EOS k lands after k earlier EOS tokens
        eos_at -= 1
        mask = np.ones(len(out), dtype=bool)
        mask[eos_at] = False
        out[mask] = data
        out[eos_at] = self.eos_id
        return out

    def byte_lengths(self) -> np.ndarray[Any, Any]:
        lengths = np.ones(self.vocab_size, dtype=np.int64)
        lengths[self.eos_id] = 0
        return lengths

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"ostraca_tokenizer": "bytes"}) + "\n")


class BPETokenizer:
    """Byte-level BPE from the ``tokenizers`` library, trained here on a sample of the data."""

    name = "bpe"

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        eos = tokenizer.token_to_id(EOS_TEXT)
        if eos is None:
            raise ValueError(f"BPE tokenizer lacks the {EOS_TEXT} token")
        self._eos = int(eos)

    @classmethod
    def train(cls, texts: Iterable[str], *, vocab_size: int = 4096) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415 - optional, heavy
        from tokenizers import decoders, models, pre_tokenizers, trainers  # noqa: PLC0415

        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOS_TEXT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    @property
    def eos_id(self) -> int:
        return self._eos

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text).ids)

    def decode(self, ids: Iterable[int]) -> str:
        return str(self._tok.decode([i for i in ids if i != self._eos]))

    def encode_column(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
        texts = _as_large_string(column).to_pylist()  # the library takes Python strings
        encs = self._tok.encode_batch(texts)
        pieces: list[np.ndarray[Any, Any]] = []
        eos = np.array([self._eos], dtype=np.int64)
        for e in encs:
            pieces.append(np.asarray(e.ids, dtype=np.int64))
            pieces.append(eos)
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)

    def byte_lengths(self) -> np.ndarray[Any, Any]:
        # Byte-level BPE spells every byte as one character of its alphabet, so a token's
        # string has one character per byte; special tokens (EOS) stand for no text.
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        special = {t.content for t in self._tok.get_added_tokens_decoder().values()}
        for token, i in self._tok.get_vocab(with_added_tokens=True).items():
            lengths[i] = 0 if token in special else len(token)
        return lengths

    def save(self, path: Path) -> None:
        obj = json.loads(self._tok.to_str())
        obj["ostraca_tokenizer"] = "bpe"
        path.write_text(json.dumps(obj) + "\n")


def load_tokenizer(path: Path) -> Tokenizer:
    """Read a tokenizer saved with :meth:`Tokenizer.save`."""
    obj = json.loads(path.read_text())
    kind = obj.get("ostraca_tokenizer")
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "bpe":
        from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415

        del obj["ostraca_tokenizer"]
        return BPETokenizer(HFTokenizer.from_str(json.dumps(obj)))
    raise ValueError(f"{path} is not an Ostraca tokenizer file")
