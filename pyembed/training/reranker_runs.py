"""Training a reranker from a collection's query log, recorded like any training run.

A reranker (a cross-encoder) learns from the evidence the embedding model learns from: a logged
search's clicked row is a positive; the rows shown above it that got no positive signal, then
rows of other searches in the log, are its negatives. It starts from a registered reranker
version (``base``) or from the collection's embedding model's transformer with a fresh scoring
head. The run is a row of pyembed.training_runs (loss ``bce`` or ``mnrl``), its held-out queries
an eval set, its result the next version of a reranker model whose parent is where it started.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from pyembed import errors, extras
from pyembed.db import database
from pyembed.models import loading, registry
from pyembed.training import fitting, run_rows, sources

logger = logging.getLogger(__name__)

# bce: each (query, text) pair scored alone against its label; mnrl: the clicked row ranked
# against its negatives and the batch's other rows (softmax over the candidates).
LOSSES = ("bce", "mnrl")


@dataclasses.dataclass(frozen=True)
class RerankerOptions:
    """How to train a reranker; the defaults suit a CPU (one epoch, batch 32, 4 negatives;
    a checkpoint every 100 steps)."""

    loss: str = "bce"
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    negatives: int = 4
    max_seq_length: int = 128
    seed: int = 0
    save_steps: int = 100

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise errors.ConfigError(
                f"unknown reranker loss {self.loss!r}", hint=f"use one of {', '.join(LOSSES)}"
            )
        if self.epochs <= 0 or self.batch_size < 2 or self.learning_rate <= 0:
            raise errors.ConfigError(
                "epochs and learning rate must be positive and the batch at least 2"
            )
        if self.save_steps < 1:
            raise errors.ConfigError(f"save_steps {self.save_steps}: checkpoint every 1+ steps")
        if not 1 <= self.negatives <= 64 or self.max_seq_length < 16:
            raise errors.ConfigError(
                "a reranker trains with 1 to 64 negatives per positive and at least 16 tokens"
            )


@dataclasses.dataclass(frozen=True)
class RerankerRun:
    """What a reranker training run produced."""

    run_id: int
    base_version_id: int
    version_id: int
    model: str
    eval_set_id: int | None
    train_seconds: float
    peak_memory_bytes: int
    summary: dict[str, Any]


Example = tuple[str, str, list[str]]  # query, clicked text, negative texts


def train(
    db: database.Database,
    collection: str,
    *,
    name: str | None = None,
    base: int | None = None,
    options: RerankerOptions | None = None,
    resume_run_id: int | None = None,
) -> RerankerRun:
    """Train a reranker for the collection from its feedback; registered as ``name`` (default:
    the base reranker's model, or ``<collection>-reranker``). ``resume_run_id`` continues a
    stopped run from its last checkpoint, on its own data and options."""
    opts = options or RerankerOptions()
    with db.session() as conn:
        if resume_run_id is not None:
            run, data, folder = run_rows.load_run(conn, resume_run_id, "reranker")
            params = dict(run["params"])
            name, run_id, set_id = params.pop("model_name"), resume_run_id, run["eval_set_id"]
            opts = RerankerOptions(**params)
            start = loading.fetch_version(conn, run["base_version_id"], task=None)
        else:
            active, _ = run_rows.collection_model(conn, collection)
            start = loading.fetch_version(conn, active if base is None else base, task=None)
            name = name or (start.model_name if start.task == "reranker" else None)
            name = name or f"{collection}-reranker"
            data = sources.from_feedback(
                conn, collection, negatives_per_pair=opts.negatives, seed=opts.seed
            )
        model_name = name
        examples = with_negatives(data.pairs, opts.negatives, opts.seed)
        data.summary.update(task="reranker", examples=len(examples))
        if resume_run_id is None:
            set_id = run_rows.save_held_out(conn, collection, data)
            params = {**dataclasses.asdict(opts), "model_name": model_name}
            run_id, folder = run_rows.start(
                conn, collection, start.id, opts.loss, params, data, set_id
            )
        weights = start if start.task == "reranker" else fitting.base_weights(conn, start.id)
        started = time.monotonic()
        try:
            model_dir = _fit(
                conn,
                run_id,
                loading.materialize(conn, weights),
                examples,
                opts,
                folder,
                resume_run_id is not None,
            )
        except BaseException as exc:
            run_rows.record_failure(
                conn,
                run_id,
                exc,
                hint=f"lower --batch-size or --max-seq-length; resume with --resume {run_id}",
                batch_size=opts.batch_size,
            )
            raise
        seconds = time.monotonic() - started
        peak = run_rows.peak_memory()
        registered = registry.register(
            db,
            model_name,
            str(model_dir),
            parent_version_id=start.id,
            kind="fine_tuned",
            produced_by={
                "how": "trained",
                "training_run": run_id,
                "loss": opts.loss,
                "examples": len(examples),
                "source": data.summary.get("source"),
                "started_from": "reranker" if start.task == "reranker" else "embedding model",
            },
        )
        run_rows.finish(conn, run_id, registered.id, peak)
    return RerankerRun(
        run_id, start.id, registered.id, model_name, set_id, seconds, peak, data.summary
    )


def with_negatives(pairs: list[sources.Pair], count: int, seed: int) -> list[Example]:
    """Every pair with ``count`` negatives: the rows shown above its click first, then rows of
    other searches in the log (never the clicked text itself)."""
    pool = sorted({p.positive for p in pairs} | {n for p in pairs for n in p.negatives})
    if len(pool) <= count:
        raise errors.PyembedError(
            f"the log holds {len(pool)} distinct rows, too few for {count} negatives per click",
            hint="lower --negatives, or let more searches and clicks accumulate",
        )
    rng = random.Random(seed)
    out: list[Example] = []
    for pair in pairs:
        negatives = [n for n in dict.fromkeys(pair.negatives) if n != pair.positive][:count]
        while len(negatives) < count:
            text = rng.choice(pool)
            if text != pair.positive and text not in negatives:
                negatives.append(text)
        out.append((pair.query, pair.positive, negatives))
    return out


def _fit(
    conn: psycopg.Connection,
    run_id: int,
    start_folder: Path,
    examples: list[Example],
    opts: RerankerOptions,
    folder: Path,
    resume: bool,
) -> Path:
    with extras.needed("train"):
        import torch
        from datasets import Dataset
        from sentence_transformers.cross_encoder import (
            CrossEncoder,
            CrossEncoderTrainer,
            CrossEncoderTrainingArguments,
        )
        from sentence_transformers.cross_encoder import losses as ce_losses
        from transformers.trainer_callback import PrinterCallback

    # An embedding model's folder becomes a cross-encoder with a fresh one-score head.
    model = CrossEncoder(
        str(start_folder), num_labels=1, max_length=opts.max_seq_length, local_files_only=True
    )
    columns: dict[str, list[Any]]
    loss: Any
    if opts.loss == "bce":
        columns = {"query": [], "text": [], "label": []}
        for query, positive, negatives in examples:
            for text, label in [(positive, 1.0), *((n, 0.0) for n in negatives)]:
                columns["query"].append(query)
                columns["text"].append(text)
                columns["label"].append(label)
        loss = ce_losses.BinaryCrossEntropyLoss(model)
    else:
        columns = {"query": [q for q, _, _ in examples], "positive": [p for _, p, _ in examples]}
        for i in range(opts.negatives):
            columns[f"negative_{i + 1}"] = [n[i] for _, _, n in examples]
        loss = ce_losses.MultipleNegativesRankingLoss(model)
    rows = len(columns["query"])
    args = CrossEncoderTrainingArguments(
        output_dir=str(folder / "checkpoints"),
        num_train_epochs=opts.epochs,
        per_device_train_batch_size=opts.batch_size,
        learning_rate=opts.learning_rate,
        warmup_steps=opts.warmup_ratio,  # a float below 1 is a share of the steps
        save_strategy="steps",
        save_steps=opts.save_steps,
        save_total_limit=2,
        logging_steps=max(1, math.ceil(rows / opts.batch_size * opts.epochs) // 25),
        report_to="none",
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=opts.seed,
        disable_tqdm=not sys.stderr.isatty(),
    )
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(columns),
        loss=loss,
        callbacks=[fitting.metrics_callback(conn, run_id)],
    )
    trainer.remove_callback(PrinterCallback)  # steps go to the database and the log instead
    checkpoints = sorted((folder / "checkpoints").glob("checkpoint-*"))
    resuming = f", resuming from {checkpoints[-1].name}" if resume and checkpoints else ""
    logger.info(
        "reranker run %s: %d examples, loss %s%s", run_id, len(examples), opts.loss, resuming
    )
    trainer.train(resume_from_checkpoint=bool(resume and checkpoints))
    model_dir = folder / "model"
    model.save_pretrained(str(model_dir))
    return model_dir
