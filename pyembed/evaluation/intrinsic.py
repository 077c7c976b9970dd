"""Evaluations beyond retrieval, stored like retrieval ones (eval_runs.kind):

- similarity: Spearman and Pearson correlation of cosine similarity with human scores
  (STS-style TSV: sentence1, sentence2, score);
- clustering: k-means on the rows' embeddings against a label column of the source,
  adjusted Rand index and silhouette;
- bias: WEAT association tests (Caliskan et al. 2017), effect size and permutation p-value for
  configurable target and attribute word sets; an effect is reported, never judged "passed";
- efficiency: texts per second and peak memory of encoding, per batch size, on this machine.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from pyembed import errors, extras

# A classic WEAT (flowers/insects vs pleasant/unpleasant): a sanity check every model should show.
DEFAULT_WEAT = {
    "name": "flowers-insects/pleasant-unpleasant",
    "targets_x": [
        "aster",
        "clover",
        "hyacinth",
        "marigold",
        "poppy",
        "azalea",
        "crocus",
        "iris",
        "orchid",
        "rose",
        "daffodil",
        "lilac",
        "pansy",
        "tulip",
        "lily",
        "violet",
    ],
    "targets_y": [
        "ant",
        "caterpillar",
        "flea",
        "locust",
        "spider",
        "bedbug",
        "centipede",
        "fly",
        "maggot",
        "tarantula",
        "bee",
        "cockroach",
        "gnat",
        "mosquito",
        "termite",
        "wasp",
    ],
    "attributes_a": [
        "caress",
        "freedom",
        "health",
        "love",
        "peace",
        "cheer",
        "friend",
        "heaven",
        "loyal",
        "pleasure",
        "diamond",
        "gentle",
        "honest",
        "lucky",
        "rainbow",
    ],
    "attributes_b": [
        "abuse",
        "crash",
        "filth",
        "murder",
        "sickness",
        "accident",
        "death",
        "grief",
        "poison",
        "stink",
        "assault",
        "disaster",
        "hatred",
        "pollute",
        "tragedy",
    ],
}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation coefficient."""
    with extras.needed("embed"):
        from scipy import stats
    return float(stats.pearsonr(a, b).statistic)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties averaged)."""
    with extras.needed("embed"):
        from scipy import stats
    return float(stats.spearmanr(a, b).statistic)


def load_sts(path: Path) -> list[tuple[str, str, float]]:
    """sentence1, sentence2, score per line of a TSV (a header line is recognised)."""
    rows = []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            try:
                rows.append((fields[0], fields[1], float(fields[2])))
            except (IndexError, ValueError) as exc:
                if number == 1:
                    continue  # header
                raise errors.ConfigError(
                    f"{path.name}, line {number}: expected sentence1, sentence2, score",
                ) from exc
    if len(rows) < 3:
        raise errors.ConfigError(f"{path.name} needs at least 3 scored pairs")
    return rows


def similarity(encode: Any, pairs: list[tuple[str, str, float]]) -> dict[str, float]:
    """Spearman and Pearson of cosine similarity against the human scores."""
    first = _unit(encode([p[0] for p in pairs]))
    second = _unit(encode([p[1] for p in pairs]))
    cosine = (first * second).sum(axis=1)
    gold = np.array([p[2] for p in pairs])
    return {"spearman": spearman(cosine, gold), "pearson": pearson(cosine, gold)}


def clustering(vectors: np.ndarray, labels: list[Any], *, seed: int = 0) -> dict[str, float]:
    """k-means with as many clusters as labels: ARI against the labels, and cosine silhouette."""
    k = len(set(labels))
    if k < 2 or len(vectors) < 3:
        raise errors.ConfigError("clustering needs at least two labels and three rows")
    with extras.needed("embed"):
        from sklearn.cluster import KMeans
        from sklearn.metrics import adjusted_rand_score, silhouette_score
    unit = _unit(vectors)
    found = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(unit)
    truth = np.asarray(labels, dtype=object).astype(str)
    silhouette = silhouette_score(unit, found, metric="cosine") if len(set(found)) > 1 else 0.0
    return {
        "adjusted_rand_index": float(adjusted_rand_score(truth, found)),
        "silhouette": float(silhouette),
        "clusters": float(k),
    }


@dataclasses.dataclass(frozen=True)
class WeatSets:
    """Target sets X, Y and attribute sets A, B of a WEAT test."""

    name: str
    targets_x: list[str]
    targets_y: list[str]
    attributes_a: list[str]
    attributes_b: list[str]

    @classmethod
    def load(cls, path: Path | None) -> WeatSets:
        data = DEFAULT_WEAT if path is None else json.loads(path.read_text(encoding="utf-8"))
        try:
            sets = cls(**data)
        except TypeError as exc:
            raise errors.ConfigError(
                f"{path}: a WEAT file needs name, targets_x, targets_y, attributes_a, attributes_b",
                hint="word lists of at least two words each",
            ) from exc
        if (
            min(map(len, (sets.targets_x, sets.targets_y, sets.attributes_a, sets.attributes_b)))
            < 2
        ):
            raise errors.ConfigError(f"WEAT {sets.name}: every set needs at least two words")
        return sets


def weat(
    encode: Any, sets: WeatSets, *, permutations: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Effect size d and one-sided permutation p-value of X vs Y associating with A over B."""
    x, y = _unit(encode(sets.targets_x)), _unit(encode(sets.targets_y))
    a, b = _unit(encode(sets.attributes_a)), _unit(encode(sets.attributes_b))

    def association(w: np.ndarray) -> np.ndarray:
        scores: np.ndarray = (w @ a.T).mean(axis=1) - (w @ b.T).mean(axis=1)
        return scores

    sx, sy = association(x), association(y)
    both = np.concatenate([sx, sy])
    effect = (sx.mean() - sy.mean()) / both.std(ddof=1)
    with extras.needed("embed"):
        from scipy import stats
    test = stats.permutation_test(
        (sx, sy),
        lambda first, second: first.sum() - second.sum(),
        permutation_type="independent",
        alternative="greater",
        n_resamples=permutations,
        rng=np.random.default_rng(seed),
    )
    return {"effect_size": float(effect), "p_value": float(test.pvalue)}


def efficiency(
    encode_with_batch: Any, texts: list[str], batch_sizes: list[int]
) -> dict[str, float]:
    """texts/s and peak resident memory (MiB) of encoding the texts, per batch size."""
    with extras.needed("embed"):
        import psutil
    results: dict[str, float] = {}
    encode_with_batch(texts[:8], 8)  # warm-up
    for size in batch_sizes:
        peak = [psutil.Process().memory_info().rss]
        done = threading.Event()

        def sample(peak: list[int] = peak, done: threading.Event = done) -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], psutil.Process().memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        encode_with_batch(texts, size)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        results[f"texts_per_second@{size}"] = len(texts) / seconds
        results[f"peak_memory_mib@{size}"] = peak[0] / 2**20
    return results


def _unit(matrix: Any) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    unit: np.ndarray = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    return unit


def finite(values: dict[str, float]) -> dict[str, float]:
    """Metrics with NaN (e.g. a constant score column) refused with a clear message."""
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise errors.PyembedError(
            f"the evaluation produced undefined values for {', '.join(bad)}",
            hint="check the input: constant scores or identical embeddings have no correlation",
        )
    return values
