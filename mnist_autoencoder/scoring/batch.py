"""Scoring a whole input in chunks: one Arrow table per chunk and a running summary.

Memory stays bounded by the chunk size whatever the input's length: each chunk
is scored, turned into a table for the caller to append to ``scores.parquet``,
and folded into ``Summary`` (counts, a histogram on fixed bins, the most
anomalous images so far).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mnist_autoencoder.data.inputs import NO_LABEL, Chunk
from mnist_autoencoder.scoring.scores import Scorer

N_BINS = 60
GALLERY = 16


@dataclass
class Summary:
    """What a scoring run found, accumulated chunk by chunk."""

    fpr: float
    threshold: float
    edges: np.ndarray  # histogram bin edges, fixed from the validation scores
    count: int = 0
    flagged: int = 0
    labelled: int = 0
    histogram: np.ndarray = field(default=None)
    top_scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    top_x: np.ndarray = field(default_factory=lambda: np.empty((0, 784), np.float32))
    top_labels: np.ndarray = field(default_factory=lambda: np.empty(0, np.int16))
    top_sources: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.histogram is None:
            self.histogram = np.zeros(len(self.edges) + 1, np.int64)  # + under/overflow

    def add(self, chunk: Chunk, score: np.ndarray, flagged: np.ndarray) -> None:
        self.count += len(score)
        self.flagged += int(flagged.sum())
        self.labelled += int((chunk.labels != NO_LABEL).sum())
        self.histogram += np.bincount(np.searchsorted(self.edges, score),
                                      minlength=len(self.histogram))
        local = np.argsort(-score, kind="stable")[:GALLERY]  # only these can enter the top
        scores = np.concatenate([self.top_scores, score[local]])
        keep = np.argsort(-scores, kind="stable")[:GALLERY]
        self.top_x = np.concatenate([self.top_x, chunk.x[local]])[keep]
        self.top_labels = np.concatenate([self.top_labels, chunk.labels[local]])[keep]
        sources = self.top_sources + [chunk.name(i) for i in local]
        self.top_sources = [sources[i] for i in keep]
        self.top_scores = scores[keep]

    def merge(self, other: Summary) -> Summary:
        """The summary of both parts (two shards of one input, scored with one model)."""
        scores = np.concatenate([self.top_scores, other.top_scores])
        keep = np.argsort(-scores, kind="stable")[:GALLERY]
        sources = self.top_sources + other.top_sources
        return Summary(self.fpr, self.threshold, self.edges, self.count + other.count,
                       self.flagged + other.flagged, self.labelled + other.labelled,
                       self.histogram + other.histogram, scores[keep],
                       np.concatenate([self.top_x, other.top_x])[keep],
                       np.concatenate([self.top_labels, other.top_labels])[keep],
                       [sources[i] for i in keep])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything, as arrays for an ``.npz`` (how shards hand their summary on)."""
        return {name: np.asarray(getattr(self, name)) for name in self.__dataclass_fields__}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Summary:
        value = {name: arrays[name] for name in cls.__dataclass_fields__}
        scalars = {"fpr": float, "threshold": float, "count": int, "flagged": int,
                   "labelled": int}
        value |= {name: kind(value[name]) for name, kind in scalars.items()}
        return cls(**value | {"top_sources": [str(s) for s in value["top_sources"]]})

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "flagged": self.flagged,
                "flagged_share": self.flagged / self.count if self.count else 0.0,
                "expected_share": self.fpr, "threshold": self.threshold,
                "labelled": self.labelled,
                "most_anomalous": [{"source": s, "score": float(v)}
                                   for s, v in zip(self.top_sources, self.top_scores)]}


def new_summary(scorer: Scorer, fpr: float, name: str | None = None) -> Summary:
    """An empty summary of score ``name`` (default: the calibration's) at rate ``fpr``."""
    quantiles = scorer.calibration.quantiles(name)
    low, high = quantiles[0], quantiles[-1] + 2 * (quantiles[-1] - quantiles[0])
    return Summary(fpr, scorer.calibration.threshold(fpr, name),
                   np.linspace(low, high, N_BINS + 1))


def score_table(chunk: Chunk, columns: dict[str, np.ndarray], flagged: np.ndarray) -> pa.Table:
    """One row per image: source, index, label, z0..z{k-1}, bce, mse, kl, score, flagged."""
    source = (pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(chunk.x), np.int32)),
                                             pa.array([chunk.source]))
              if isinstance(chunk.source, str) else pa.array(chunk.source).dictionary_encode())
    labels = pa.array(chunk.labels, mask=chunk.labels == NO_LABEL)
    codes = columns["codes"]
    return pa.table({
        "source": source, "index": pa.array(chunk.index.astype(np.int64)), "label": labels,
        **{f"z{i}": pa.array(codes[:, i]) for i in range(codes.shape[1])},
        "bce": pa.array(columns["bce"].astype(np.float32)),
        "mse": pa.array(columns["mse"].astype(np.float32)),
        "kl": pa.array(columns["kl"].astype(np.float32)),
        "score": pa.array(columns["score"].astype(np.float32)),
        "flagged": pa.array(flagged),
    })


def prefetched(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """``items``, produced ``depth`` ahead on a second thread.

    Reading and decoding the next chunk then overlaps with scoring this one
    (zlib, NumPy and TensorFlow release the GIL): on 2 cores the scoring loop
    otherwise keeps about one busy. An exception in ``items`` is raised here.
    """
    import queue
    import threading

    slots: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():  # a consumer that gave up must not leave us blocked
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((False, exc))
            return
        put((True, done))

    threading.Thread(target=produce, daemon=True).start()
    try:
        while True:
            ok, item = slots.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()


def score_chunks(scorer: Scorer, chunks: Iterator[Chunk], summary: Summary,
                 name: str | None = None) -> Iterator[pa.Table]:
    """Score each chunk (read ahead on a second thread), fold it into ``summary``, yield its
    table."""
    from threadpoolctl import threadpool_limits

    # One BLAS thread for a score applied in NumPy after the error function (the default is
    # compiled into it): XLA already keeps both cores busy, and OpenBLAS's own threads
    # fighting it cost 28% of the throughput (104k against 135k images/s,
    # python -m benchmarks.score).
    with threadpool_limits(1, user_api="blas"):
        yield from _scored(scorer, prefetched(chunks), summary, name)


def _scored(scorer: Scorer, chunks: Iterator[Chunk], summary: Summary,
            name: str | None) -> Iterator[pa.Table]:
    for chunk in chunks:
        columns = scorer.columns(chunk.x, name, checked=True)
        flagged = columns["score"] > summary.threshold
        summary.add(chunk, columns["score"], flagged)
        yield score_table(chunk, columns, flagged)
