"""Each training loss with the dataset layout it needs, built from the same pairs.

mnrl (MultipleNegativesRankingLoss, no-duplicates batches) is the default; cached_mnrl gives a
large effective batch on little memory; matryoshka trains smaller prefixes of the embedding to
be usable too; cosine, contrastive and online_contrastive learn from labelled pairs (a pair's
negatives are its 0 labels); triplet needs a negative per pair; tsdae adapts to the
collection's own text without labels; distill makes the model reproduce a teacher's embeddings.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pyembed import errors, extras
from pyembed.training import sources

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

Layout = Literal["in_batch", "triplet", "labelled", "scored", "denoising", "distill"]
LossName = Literal[
    "mnrl",
    "cached_mnrl",
    "matryoshka",
    "cosine",
    "contrastive",
    "online_contrastive",
    "triplet",
    "tsdae",
    "distill",
]


@dataclasses.dataclass(frozen=True)
class Loss:
    """A loss: the dataset layout it trains on and how to build it (``st`` = ST's losses)."""

    layout: Layout
    make: Callable[[Any, SentenceTransformer, tuple[int, ...] | None, int], Any]


def _matryoshka(st: Any, model: SentenceTransformer, dims: tuple[int, ...] | None, _: int) -> Any:
    dims = dims or default_matryoshka_dims(model.get_embedding_dimension() or 0)
    return st.MatryoshkaLoss(model, st.MultipleNegativesRankingLoss(model), list(dims))


# The one table of losses: names, layouts and constructors are read from here only.
TABLE: dict[LossName, Loss] = {
    "mnrl": Loss("in_batch", lambda st, m, _d, _b: st.MultipleNegativesRankingLoss(m)),
    "cached_mnrl": Loss(
        "in_batch",
        lambda st, m, _d, batch: st.CachedMultipleNegativesRankingLoss(m, mini_batch_size=batch),
    ),
    "matryoshka": Loss("in_batch", _matryoshka),
    "cosine": Loss("scored", lambda st, m, _d, _b: st.CosineSimilarityLoss(m)),
    "contrastive": Loss("labelled", lambda st, m, _d, _b: st.ContrastiveLoss(m)),
    "online_contrastive": Loss("labelled", lambda st, m, _d, _b: st.OnlineContrastiveLoss(m)),
    "triplet": Loss("triplet", lambda st, m, _d, _b: st.TripletLoss(m)),
    "tsdae": Loss(
        "denoising", lambda st, m, _d, _b: st.DenoisingAutoEncoderLoss(m, tie_encoder_decoder=True)
    ),
    "distill": Loss("distill", lambda st, m, _d, _b: st.MSELoss(m)),
}
LOSSES: tuple[LossName, ...] = tuple(TABLE)


def get(name: str) -> Loss:
    """The loss called ``name``; an unknown name is a ConfigError listing the known ones."""
    try:
        return TABLE[name]  # type: ignore[index]
    except KeyError:
        raise errors.ConfigError(
            f"unknown loss {name!r}", hint=f"use one of {', '.join(LOSSES)}"
        ) from None


def in_batch(name: str) -> bool:
    """Whether the loss uses in-batch negatives (its batches must not hold a text twice)."""
    return get(name).layout == "in_batch"


def columns(
    loss: str,
    pairs: list[sources.Pair],
    *,
    use_negatives: bool,
    seed: int = 0,
) -> dict[str, list[Any]]:
    """The training dataset's columns for ``loss``."""
    rng = random.Random(seed)
    layout = get(loss).layout
    if layout in ("in_batch", "triplet"):
        data: dict[str, list[Any]] = {
            "anchor": [p.query for p in pairs],
            "positive": [p.positive for p in pairs],
        }
        if layout == "triplet" or (use_negatives and any(p.negatives for p in pairs)):
            # Pairs without a hard negative get another pair's positive: a random negative.
            data["negative"] = [
                p.negatives[0] if p.negatives else _other(pairs, i, rng)
                for i, p in enumerate(pairs)
            ]
        return data
    if layout in ("labelled", "scored"):
        positive, negative = (1.0, 0.0) if layout == "scored" else (1, 0)
        first, second, labels = [], [], []
        for pair in pairs:
            for text, label in [
                (pair.positive, positive),
                *((n, negative) for n in pair.negatives),
            ]:
                first.append(pair.query)
                second.append(text)
                labels.append(label)
        if len(set(labels)) < 2 and layout == "labelled":
            raise errors.PyembedError(
                f"the {loss} loss needs pairs labelled 0 as well as 1; these pairs have none",
                hint="mine hard negatives (--negatives 1), or use the mnrl loss",
            )
        return {"sentence1": first, "sentence2": second, "label": labels}
    if layout == "denoising":
        texts = list(dict.fromkeys(p.positive for p in pairs))
        return {"damaged": [_damage(t, rng) for t in texts], "original": texts}
    # distill: its columns are a teacher's vectors, not pairs (distillation.prepare).
    raise errors.ConfigError(
        f"the {loss} loss trains on a teacher's vectors, not on pairs",
        hint="train it with a teacher: pyembed train COLLECTION --loss distill --teacher V",
    )


def build(
    loss: str,
    model: SentenceTransformer,
    *,
    matryoshka_dims: tuple[int, ...] | None = None,
    mini_batch_size: int = 32,
) -> Any:
    """The sentence-transformers loss object."""
    spec = get(loss)
    with extras.needed("train"):
        from sentence_transformers.sentence_transformer import losses as st
    return spec.make(st, model, matryoshka_dims, mini_batch_size)


def default_matryoshka_dims(dims: int) -> tuple[int, ...]:
    """The full dimension and its halvings down to 32."""
    out = [dims]
    while out[-1] // 2 >= 32:
        out.append(out[-1] // 2)
    return tuple(out)


def _other(pairs: list[sources.Pair], i: int, rng: random.Random) -> str:
    for _ in range(10):
        j = rng.randrange(len(pairs))
        if j != i and pairs[j].positive != pairs[i].positive:
            return pairs[j].positive
    return pairs[(i + 1) % len(pairs)].positive


def _damage(text: str, rng: random.Random, keep: float = 0.4) -> str:
    """TSDAE's noise: delete about 60% of the words (at least one word stays)."""
    words = text.split()
    kept = [w for w in words if rng.random() < keep]
    return " ".join(kept or words[:1])
