"""Each training loss with the dataset layout it needs, built from the same pairs.

mnrl (MultipleNegativesRankingLoss, no-duplicates batches) is the default; cached_mnrl gives a
large effective batch on little memory; matryoshka trains smaller prefixes of the embedding to
be usable too; cosine, contrastive and online_contrastive learn from labelled pairs (a pair's
negatives are its 0 labels); triplet needs a negative per pair; tsdae adapts to the
collection's own text without labels; distill makes the model reproduce a teacher's embeddings.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyembed import errors
from pyembed.training import sources

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

LOSSES = (
    "mnrl",
    "cached_mnrl",
    "matryoshka",
    "cosine",
    "contrastive",
    "online_contrastive",
    "triplet",
    "tsdae",
    "distill",
)
# Losses whose batches must not hold the same text twice (in-batch negatives).
IN_BATCH = {"mnrl", "cached_mnrl", "matryoshka"}


def columns(
    loss: str,
    pairs: list[sources.Pair],
    *,
    use_negatives: bool,
    seed: int = 0,
    teacher: Callable[[list[str]], Any] | None = None,
) -> dict[str, list[Any]]:
    """The training dataset's columns for ``loss``."""
    rng = random.Random(seed)
    if loss in IN_BATCH or loss == "triplet":
        data: dict[str, list[Any]] = {
            "anchor": [p.query for p in pairs],
            "positive": [p.positive for p in pairs],
        }
        if loss == "triplet" or (use_negatives and any(p.negatives for p in pairs)):
            # Pairs without a hard negative get another pair's positive: a random negative.
            data["negative"] = [
                p.negatives[0] if p.negatives else _other(pairs, i, rng)
                for i, p in enumerate(pairs)
            ]
        return data
    if loss in ("cosine", "contrastive", "online_contrastive"):
        first, second, labels = [], [], []
        for pair in pairs:
            first.append(pair.query)
            second.append(pair.positive)
            labels.append(1.0 if loss == "cosine" else 1)
            for negative in pair.negatives:
                first.append(pair.query)
                second.append(negative)
                labels.append(0.0 if loss == "cosine" else 0)
        if len(set(labels)) < 2 and loss != "cosine":
            raise errors.PyembedError(
                f"the {loss} loss needs pairs labelled 0 as well as 1; these pairs have none",
                hint="mine hard negatives (--negatives 1), or use the mnrl loss",
            )
        return {"sentence1": first, "sentence2": second, "label": labels}
    if loss == "tsdae":
        texts = list(dict.fromkeys(p.positive for p in pairs))
        return {"damaged": [_damage(t, rng) for t in texts], "original": texts}
    if loss == "distill":
        if teacher is None:
            raise errors.ConfigError("the distill loss needs a teacher", hint="pass --teacher V")
        texts = list(dict.fromkeys([p.query for p in pairs] + [p.positive for p in pairs]))
        return {"sentence": texts, "label": [list(map(float, v)) for v in teacher(texts)]}
    raise errors.ConfigError(f"unknown loss {loss!r}", hint=f"use one of {', '.join(LOSSES)}")


def build(
    loss: str,
    model: SentenceTransformer,
    *,
    matryoshka_dims: tuple[int, ...] | None = None,
    mini_batch_size: int = 32,
) -> Any:
    """The sentence-transformers loss object."""
    from sentence_transformers.sentence_transformer import losses

    if loss == "mnrl":
        return losses.MultipleNegativesRankingLoss(model)
    if loss == "cached_mnrl":
        return losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size)
    if loss == "matryoshka":
        dims = matryoshka_dims or default_matryoshka_dims(model.get_embedding_dimension() or 0)
        return losses.MatryoshkaLoss(model, losses.MultipleNegativesRankingLoss(model), list(dims))
    if loss == "cosine":
        return losses.CosineSimilarityLoss(model)
    if loss == "contrastive":
        return losses.ContrastiveLoss(model)
    if loss == "online_contrastive":
        return losses.OnlineContrastiveLoss(model)
    if loss == "triplet":
        return losses.TripletLoss(model)
    if loss == "tsdae":
        return losses.DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
    if loss == "distill":
        return losses.MSELoss(model)
    raise errors.ConfigError(f"unknown loss {loss!r}", hint=f"use one of {', '.join(LOSSES)}")


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
