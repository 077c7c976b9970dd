"""How a training run trains: the options recorded with every run (and the CLI's defaults)."""

from __future__ import annotations

import dataclasses

from pyembed import errors
from pyembed.training import losses


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """How to train; the defaults suit a CPU (one epoch, batch 64, lr 3e-5, 10% warm-up)."""

    loss: str = "mnrl"
    epochs: float = 1.0
    batch_size: int = 64
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    use_negatives: bool = False
    seed: int = 0
    save_steps: int = 100
    matryoshka_dims: tuple[int, ...] | None = None
    teacher_version_id: int | None = None
    # Train this version instead of the collection's active one: a local model for a collection
    # an endpoint embeds (its result is another model, promoted as a change of model).
    base_version_id: int | None = None
    mini_batch_size: int = 32
    # Train on at most this many tokens per text (shorter is faster on a CPU); the model keeps
    # its own window for encoding afterwards.
    max_seq_length: int | None = None

    def __post_init__(self) -> None:
        losses.get(self.loss)  # an unknown name is a ConfigError
        if self.epochs <= 0 or self.batch_size < 2 or self.learning_rate <= 0:
            raise errors.ConfigError(
                "epochs and learning rate must be positive and the batch at least 2"
            )
