"""What every embeddings backend does with a request's inputs: text or token ids to
token-id sequences within the model's window (truncated or refused, as the request
asks), and the resulting rows to one compact event per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from localhost_ai.config import BackendOptions, option
from localhost_ai.contract.embed import EmbedRequest
from localhost_ai.contract.events import Embeddings
from localhost_ai.errors import InvalidRequest


@dataclass(frozen=True)
class BatchingOptions(BackendOptions):
    """The YAML fields of a model whose concurrent requests are batched in its worker."""

    batch_size: int | None = option({"type": "integer", "minimum": 1, "maximum": 4096})
    batch_wait_ms: float | None = option({"type": "number", "minimum": 0, "maximum": 1000})
    matryoshka: bool = option({"type": "boolean"}, False)  # rows may be shortened (`dimensions`)

    def batching(self, default_size: int, default_wait_ms: float) -> tuple[int, float]:
        wait_ms = default_wait_ms if self.batch_wait_ms is None else self.batch_wait_ms
        return self.batch_size or default_size, wait_ms / 1000


@dataclass
class EmbeddingInputs:
    tokenize: Callable[[list[str]], list[list[int]]]  # many texts at once: fast tokenizers run them in parallel
    window: int
    vocab_size: int
    end_token: int | None = None  # kept last when a tokenized text is cut to the window

    def sequences(self, request: EmbedRequest, tokenized: Iterator[list[int]]) -> list[list[int]]:
        """`tokenized` yields the token ids of this request's texts, in order."""
        truncate = request.truncate
        out = []
        for position, item in enumerate(request.inputs):
            if isinstance(item, str):
                ids = list(next(tokenized))
                from_text = True
            else:
                ids = list(item)
                from_text = False
                bad = next((t for t in ids if not 0 <= t < self.vocab_size), None)
                if bad is not None:
                    raise InvalidRequest(f"input[{position}] holds token id {bad}, outside this model's vocabulary "
                                         f"of {self.vocab_size}.", param="input", code="invalid_token")
            if not ids:
                raise InvalidRequest(f"input[{position}] is empty.", param="input", code="empty_input")
            if len(ids) > self.window:
                if not truncate:
                    raise InvalidRequest(
                        f"input[{position}] has {len(ids)} tokens, more than this model's window of {self.window}; "
                        "send \"truncate\": true to have it cut to fit.", param="input", code="input_too_long")
                keep_end = from_text and self.end_token is not None and ids[-1] == self.end_token
                ids = ids[: self.window - 1] + [ids[-1]] if keep_end else ids[: self.window]
            out.append(ids)
        return out

    def run(self, requests: list[EmbedRequest], encode: Callable[[list[list[int]]], Any],
            dimension: int, truncatable: bool) -> list[Any]:
        """Prepare each request (a bad one fails alone), encode all rows at once, split back."""
        import numpy as np

        prepared: list[Any] = []
        flat: list[list[int]] = []
        texts = [item for request in requests for item in request.inputs if isinstance(item, str)]
        tokenized = iter(self.tokenize(texts) if texts else [])  # one call for the whole batch
        for request in requests:
            own = [next(tokenized) for item in request.inputs if isinstance(item, str)]
            try:
                wanted = request.dimensions
                if wanted is not None and wanted != dimension and not (truncatable and 0 < wanted < dimension):
                    raise InvalidRequest(
                        f"This model gives {dimension}-dimensional embeddings"
                        + (f"; 'dimensions' may be 1 to {dimension}." if truncatable else " and cannot shorten them."),
                        param="dimensions", code="invalid_dimensions")
                sequences = self.sequences(request, iter(own))
            except InvalidRequest as exc:
                prepared.append(exc)
                continue
            prepared.append((len(flat), len(sequences), sum(len(s) for s in sequences), wanted))
            flat += sequences
        matrix = encode(flat) if flat else np.zeros((0, dimension), dtype=np.float32)
        results = []
        for item in prepared:
            if isinstance(item, Exception):
                results.append(item)
                continue
            start, count, tokens, wanted = item
            results.append(embeddings_event(matrix[start:start + count], tokens, wanted))
        return results


def embeddings_event(rows: Any, tokens: int, dimensions: int | None) -> Embeddings:
    """Rows as little-endian float32 bytes (they cross to the server as a raw blob)."""
    import numpy as np

    rows = np.asarray(rows, dtype=np.float32)
    if dimensions is not None and dimensions < rows.shape[1]:
        rows = rows[:, :dimensions]
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows / np.where(norms == 0, 1, norms)
    rows = np.ascontiguousarray(rows, dtype="<f4")
    return Embeddings(data=rows.tobytes(), rows=rows.shape[0], dim=rows.shape[1], prompt_tokens=tokens)
