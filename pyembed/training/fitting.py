"""One training run's fit: the dataset, the loss and sentence-transformers' trainer.

Checkpoints go to the run's folder every ``save_steps``; a resumed run continues from the last
one. Every logged step's loss and learning rate is written to pyembed.training_metrics.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import psycopg

from pyembed import errors, extras
from pyembed.db import queries
from pyembed.models import loading
from pyembed.training import distillation, losses, options, sources

logger = logging.getLogger(__name__)


def fit(
    conn: psycopg.Connection,
    run_id: int,
    collection: str,
    base: int,
    data: sources.TrainingData,
    opts: options.TrainOptions,
    folder: Path,
    resume: bool,
) -> Path:
    """Train a fresh copy of the base version on the pairs; returns the saved model's folder."""
    with extras.needed("train"):
        import torch
        from datasets import Dataset
        from sentence_transformers import (
            SentenceTransformer,
            SentenceTransformerTrainer,
            SentenceTransformerTrainingArguments,
        )
        from sentence_transformers.base.sampler import BatchSamplers
        from transformers.trainer_callback import PrinterCallback

    mv = base_weights(conn, base)
    # A fresh copy: training changes weights, the process-wide cache must keep the base intact.
    model = SentenceTransformer(str(loading.materialize(conn, mv)), local_files_only=True)
    window = model.max_seq_length
    if opts.max_seq_length:
        model.max_seq_length = min(window or opts.max_seq_length, opts.max_seq_length)
    distilled = None
    if opts.loss == "distill":
        dims = model.get_embedding_dimension() or mv.dimensions
        distilled = distillation.prepare(
            conn, collection, opts.teacher_version_id, dims, data, seed=opts.seed
        )
        columns = distilled.columns
    else:
        columns = losses.columns(
            opts.loss, data.pairs, use_negatives=opts.use_negatives, seed=opts.seed
        )
    loss = losses.build(
        opts.loss, model, matryoshka_dims=opts.matryoshka_dims, mini_batch_size=opts.mini_batch_size
    )
    prompts = {
        name: prefix
        for name, prefix in (
            ("anchor", mv.query_prefix),
            ("positive", mv.document_prefix),
            ("negative", mv.document_prefix),
        )
        if prefix and name in columns
    }
    rows = len(next(iter(columns.values())))
    in_batch = losses.in_batch(opts.loss)
    sampler = BatchSamplers.NO_DUPLICATES if in_batch else BatchSamplers.BATCH_SAMPLER
    args = SentenceTransformerTrainingArguments(
        output_dir=str(folder / "checkpoints"),
        num_train_epochs=opts.epochs,
        per_device_train_batch_size=opts.batch_size,
        learning_rate=opts.learning_rate,
        warmup_steps=opts.warmup_ratio,  # a float below 1 is a share of the steps
        batch_sampler=sampler,
        save_strategy="steps",
        save_steps=opts.save_steps,
        save_total_limit=2,
        # About 25 points on the loss curve, whatever the run's length.
        logging_steps=max(1, math.ceil(rows / opts.batch_size * opts.epochs) // 25),
        report_to="none",
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=opts.seed,
        disable_tqdm=not sys.stderr.isatty(),
        prompts=prompts or None,
    )
    runner = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(columns),
        loss=loss,
        callbacks=[metrics_callback(conn, run_id)],
    )
    checkpoints = sorted((folder / "checkpoints").glob("checkpoint-*"))
    resuming = f", resuming from {checkpoints[-1].name}" if resume and checkpoints else ""
    logger.info("training run %s: %d rows, loss %s%s", run_id, rows, opts.loss, resuming)
    runner.remove_callback(PrinterCallback)  # steps go to the database and the log instead
    runner.train(resume_from_checkpoint=bool(resume and checkpoints))
    model.max_seq_length = window
    if distilled is not None:  # how close the student came, on texts it did not train on
        data.summary["distillation"] = distilled.measure(model)
    model_dir = folder / "model"
    model.save(str(model_dir))
    return model_dir


def base_weights(conn: psycopg.Connection, version_id: int) -> loading.ModelVersion:
    """The torch version training starts from: the version itself, or the source of a conversion
    (torch trains; a converted version's weights are its source's)."""
    mv = loading.fetch_version(conn, version_id)
    if mv.runtime == "sentence-transformers":
        return mv
    if mv.parent_version_id is None:
        raise errors.ModelError(f"model {mv.label} has no torch weights to train from")
    logger.info(
        "%s runs on %s: training from the version it was converted from", mv.label, mv.runtime
    )
    return base_weights(conn, mv.parent_version_id)


def metrics_callback(conn: psycopg.Connection, run_id: int) -> Any:
    """A TrainerCallback writing each logged step's loss and learning rate to the database."""
    from transformers import TrainerCallback

    class MetricsToDatabase(TrainerCallback):
        def on_log(
            self,
            args: Any,
            state: Any,
            control: Any,
            logs: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            if not logs or ("loss" not in logs and "learning_rate" not in logs):
                return
            conn.execute(
                queries.get("training_metric_add"),
                {
                    "run_id": run_id,
                    "step": int(state.global_step),
                    "epoch": logs.get("epoch"),
                    "loss": logs.get("loss"),
                    "lr": logs.get("learning_rate"),
                },
            )

    return MetricsToDatabase()
