"""`SemScaleTrainer`: `transformers.Trainer` with dynamic semantic-scale-balanced loss weights."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import nn
from transformers import EvalPrediction, PreTrainedModel, Trainer
from transformers.trainer_utils import HubStrategy
from transformers.utils import SAFE_WEIGHTS_NAME, logging

from .balancer import STATE_FILE, SemScaleBalancer
from .callback import SemScaleCallback
from .capture import FeatureCapture
from .config import SemScaleTrainingArguments
from .evaluation import many_medium_few_accuracy, per_class_accuracy
from .losses import class_weighted_loss
from .model_card import write_model_card


logger = logging.get_logger(__name__)

__all__ = ["HubPushError", "SemScaleTrainer", "count_train_labels"]


class SemScaleTrainer(Trainer):
    """[`~transformers.Trainer`] whose loss is re-weighted per class by semantic scale, updated during training.

    A drop-in replacement: swap the class name and use [`SemScaleTrainingArguments`]. During the forward pass a pre-hook
    on the classification head keeps its input (the features; no extra forward pass); the features of every training
    batch, gathered across processes, go into a per-class feature pool; the scales measured on that pool give the
    class weights (see the README for the stages and the defaults).

    Args:
        class_counts (`list[int]`, *optional*):
            Training samples per class. Defaults to counting the `labels`/`label` column of `train_dataset`.
        All other arguments are those of [`~transformers.Trainer`].

    Attributes:
        class_weights (`torch.Tensor`): current class weights (float64, mean 1 over measured classes).
        semantic_scales (`torch.Tensor`): scales of the latest measurement (float64, NaN = not measured).
    """

    # The loss below is normalised by Trainer's `num_items_in_batch`, the item count of the whole accumulated (and,
    # by default, cross-process) batch, so Trainer must not divide it by the accumulation steps again.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        model: nn.Module | None = None,
        args: SemScaleTrainingArguments | None = None,
        *trainer_args: Any,
        class_counts: list[int] | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        if args is None:
            args = SemScaleTrainingArguments(output_dir="trainer_output")
        if not isinstance(args, SemScaleTrainingArguments):
            raise TypeError(
                f"SemScaleTrainer needs SemScaleTrainingArguments, got {type(args).__name__}; build the arguments with "
                "SemScaleTrainingArguments(...) (it accepts every TrainingArguments field)"
            )
        user_metrics = trainer_kwargs.pop("compute_metrics", None)
        super().__init__(model, args, *trainer_args, **trainer_kwargs)
        # Trainer counts `num_items_in_batch` only for models whose forward takes loss kwargs; ResNet-like and
        # ConvNeXt models would get None. Our loss never passes it to the model, so claim it to get the count always.
        self.model_accepts_loss_kwargs = True

        num_labels = _num_labels(self.model)
        if class_counts is None:
            if self.train_dataset is None:
                raise ValueError("pass class_counts=[...] (training samples per class) when no train_dataset is given")
            class_counts = count_train_labels(self.train_dataset, num_labels)
        if len(class_counts) != num_labels:
            raise ValueError(
                f"class_counts has {len(class_counts)} entries but the model has num_labels={num_labels}; "
                "set config.num_labels to the number of classes"
            )
        self.class_counts = [int(c) for c in class_counts]
        absent = [c for c, n in enumerate(self.class_counts) if n == 0]
        if absent:
            logger.warning(
                f"classes {absent} have no training samples: they are never measured and get the largest weight"
            )
        self.capture = FeatureCapture(self.model, num_labels, args.semscale_feature_module)
        pool_device = args.semscale_pool_device or self.args.device
        self.balancer = SemScaleBalancer(
            self.class_counts,
            weighting=args.semscale_weighting,
            power=args.semscale_power,
            momentum=args.semscale_momentum,
            weight_min=args.semscale_weight_min,
            weight_max=args.semscale_weight_max,
            alpha=args.scale_alpha,
            center=args.semscale_center,
            normalize=args.semscale_normalize,
            min_count=args.semscale_min_count,
            pool_max_per_class=args.semscale_pool_max_per_class,
            pool_dtype=args.pool_dtype,
            pool_device=pool_device,
            effective_number_beta=args.semscale_effective_number_beta,
        )
        self.semscale_callback = SemScaleCallback(
            self.balancer,
            warmup_epochs=args.semscale_warmup_epochs,
            warmup_steps=args.semscale_warmup_steps,
            refresh_steps=args.semscale_refresh_steps,
            per_class_max=args.semscale_log_per_class_max,
        )
        self.semscale_callback.trainer = self
        self.add_callback(self.semscale_callback)
        self._loss_options = _loss_options(args, self.class_counts)
        self.compute_metrics = _with_class_metrics(user_metrics, self.class_counts, args.semscale_log_per_class_max)
        self._saving_checkpoint = False

    # ------------------------------------------------------------------------------------------ public state
    @property
    def class_weights(self) -> torch.Tensor:
        return self.balancer.class_weights

    @property
    def semantic_scales(self) -> torch.Tensor:
        return self.balancer.semantic_scales

    # ------------------------------------------------------------------------------------------------- loss
    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """Class-weighted base loss: sum of `w_y * loss_i` over the batch, divided by its item count.

        Distributed and accumulation contract: the divisor is `num_items_in_batch`, the count of non-ignored labels
        of the whole accumulated batch across processes, never the sum of the batch's weights, so 4 x 1 == 2 x 2
        and 2 processes == 1 process. DDP averages gradients over processes, hence the factor `num_processes`.
        Evaluation (`model.training` is False) reports the unweighted base loss, comparable across refreshes.
        """
        inputs = dict(inputs)
        if "labels" not in inputs:
            raise ValueError("SemScaleTrainer needs a `labels` entry in every batch")
        labels = inputs.pop("labels")
        outputs = model(**inputs)  # without labels the model computes no loss of its own
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        features = self.capture.pop()
        if not model.training:
            loss = class_weighted_loss(self.args.semscale_base_loss, logits, labels, **self._loss_options)
            return (loss, outputs) if return_outputs else loss

        if features is None:
            raise RuntimeError(
                f"the hook on {self.capture.module_name!r} captured no features during the forward pass"
            )
        self._record_features(features, labels)
        num_items = num_items_in_batch
        if num_items is None:  # no count from Trainer: this micro-batch's items times the accumulation steps
            num_items = int(labels.ne(-100).sum()) * self.current_gradient_accumulation_steps
        loss = class_weighted_loss(
            self.args.semscale_base_loss,
            logits,
            labels,
            self.balancer.loss_weights(),
            num_items=num_items,
            **self._loss_options,
        )
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def _record_features(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Adds the batch's features to the pool; all processes gather all batches, so every pool is the same."""
        features = features.detach()
        labels = labels.detach()
        accelerator = self.accelerator
        if accelerator.num_processes > 1:
            # ranks may hold batches of different sizes: pad, gather, and let the pool skip the -100 padding rows
            features = accelerator.gather(accelerator.pad_across_processes(features.contiguous(), dim=0, pad_index=0))
            labels = accelerator.gather(accelerator.pad_across_processes(labels, dim=0, pad_index=-100))
        finite = torch.isfinite(features).all(dim=1)
        if not bool(finite.all()):
            raise FloatingPointError(
                f"NaN or inf in {int((~finite).sum())} of {features.shape[0]} feature vectors at global step "
                f"{self.state.global_step} (epoch {self.state.epoch}); training stopped before this step's update, so "
                f"the checkpoints in {self.args.output_dir} are intact. Lower the learning rate, enable gradient "
                "clipping (max_grad_norm) or check the inputs, then resume from the last checkpoint."
            )
        self.balancer.record(features, labels)

    def _synchronise_balancer(self) -> None:
        """Called by the callback after a refresh: every rank takes rank 0's weights and scales."""
        if self.accelerator.num_processes == 1:
            return
        from accelerate.utils import broadcast

        device = self.accelerator.device
        for name in ("class_weights", "semantic_scales"):
            value = broadcast(getattr(self.balancer, name).to(device), from_process=0)
            setattr(self.balancer, name, value.cpu())

    # ------------------------------------------------------------------------------------ checkpoints and saving
    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        self._saving_checkpoint = True  # the next save_model writes the pool too (needed for an exact resume)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._saving_checkpoint = False

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Saves the model as `Trainer` does, plus `semscale_state.safetensors` (and the pool in checkpoints)."""
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            self.balancer.save(output_dir or self.args.output_dir, include_pool=self._saving_checkpoint)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        _reload_renamed_weights(self.model, resume_from_checkpoint)
        if not self.balancer.load(resume_from_checkpoint):
            logger.warning(
                f"{resume_from_checkpoint} holds no semscale state: the feature pool starts empty and warm-up restarts"
            )

    def remove_hooks(self) -> None:
        """Removes the feature hook from the model (e.g. before handing the model to other code)."""
        self.capture.close()

    # --------------------------------------------------------------------------------------------------------- Hub
    # Stock Trainer (transformers 5.24) raises from `create_repo` inside its constructor, and it never looks at the
    # futures of its in-training uploads (`upload_folder(run_as_future=True)`), so a failed push there goes unnoticed.
    # Here: the constructor fails fast with `HubPushError`; an in-training push that fails logs a warning and training
    # goes on; the final `push_to_hub()` raises `HubPushError` after `output_dir` is complete on disk.
    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Creates (or finds) the Hub repo as [`~transformers.Trainer`] does; raises [`HubPushError`] when it fails.

        `Trainer.__init__` calls it when `push_to_hub=True`, so a wrong token or an unreachable Hub stops the script
        before any training rather than after it.
        """
        try:
            super().init_hf_repo(token=token, private=private)
        except Exception as error:
            repo = self.args.hub_model_id or Path(self.args.output_dir).absolute().name
            raise HubPushError(
                f"could not create or reach the Hub repo {repo!r} ({type(error).__name__}: {error}). Check the token "
                "(`hf auth login`, HF_TOKEN or `hub_token`) and the connection, or train with push_to_hub=False and "
                "call trainer.push_to_hub() afterwards"
            ) from error
        self.hub_push_failures: list[str] = []
        self._hub_watched: list[tuple[Future, str]] = []
        self._hub_lock = threading.Lock()

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
    ) -> None:
        """Writes the semscale model card into `output_dir`: `README.md` and `semscale_scale_vs_accuracy.png`.

        Takes the arguments of [`~transformers.Trainer.create_model_card`] (`push_to_hub(**kwargs)` passes them on);
        pass `dataset="org/name"` to get `model-index` results. See [`~semscale_hf.model_card.SemScaleReport`].
        """
        if not self.is_world_process_zero():
            return
        write_model_card(
            self,
            self.args.output_dir,
            language=language,
            license=license,
            tags=tags,
            model_name=model_name,
            finetuned_from=finetuned_from,
            tasks=tasks,
            dataset_tags=dataset_tags,
            dataset=dataset,
            dataset_args=dataset_args,
        )
        self._hub_local_ready = True  # push_to_hub: everything after this point is the upload

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Saves the model, `semscale_state.safetensors` and the model card into `output_dir`, then uploads it.

        As [`~transformers.Trainer.push_to_hub`]; `kwargs` go to [`~SemScaleTrainer.create_model_card`].

        Raises:
            [`HubPushError`]: the repo cannot be created or the upload fails. `output_dir` is complete on disk by then
            (model, config, semscale state, card, plot): call `push_to_hub()` again once the Hub is reachable. With
            `blocking=False` the returned future holds the error, and a warning is logged when it fails.
        """
        if self.hub_model_id is None:
            try:
                self.init_hf_repo(token=token, private=private)
            except HubPushError:
                self.save_model(_internal_call=True)  # keep the promise: output_dir is complete even so
                self.create_model_card(**kwargs)
                raise
        self._hub_local_ready = False
        try:
            result = super().push_to_hub(commit_message, blocking, token, revision, private, **kwargs)
        except Exception as error:
            if not self._hub_local_ready:
                raise  # saving the model or the card failed: a local problem, not the Hub's
            raise HubPushError(
                f"pushing {self.args.output_dir} to the Hub repo {self.hub_model_id!r} failed "
                f"({type(error).__name__}: {error}). The folder is complete on disk: call trainer.push_to_hub() "
                "again once the Hub is reachable"
            ) from error
        if isinstance(result, Future):
            self._watch_push(result, f"push_to_hub({commit_message!r})")
        elif getattr(self, "hub_push_failures", None):
            logger.warning(
                f"the final push succeeded, but {len(self.hub_push_failures)} push(es) during training had failed: "
                "checkpoint folders from those saves (last-checkpoint/, checkpoint-*/) may be missing on the Hub"
            )
        return result

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """`Trainer`'s in-training push, plus the semscale state and the model card; a failure only logs a warning.

        `Trainer` copies only the model files of the checkpoint into `output_dir` before uploading that folder.
        """
        args = self.args
        due = self.is_world_process_zero() and args.hub_strategy != HubStrategy.END
        if due and not args.hub_always_push and self.push_in_progress is not None:
            due = self.push_in_progress.is_done()  # Trainer skips this push while the previous one runs
        if not due:
            return
        self._collect_push_failures()
        state_file = os.path.join(checkpoint_folder, STATE_FILE)
        if os.path.isfile(state_file):
            shutil.copy(state_file, os.path.join(args.output_dir, STATE_FILE))
        try:
            self.create_model_card()
        except Exception as error:  # the card is documentation: a problem there must not stop training
            logger.warning(f"could not write the model card for the push at step {self.state.global_step}: {error}")
        previous = list(self.push_in_progress.jobs) if self.push_in_progress is not None else []
        description = f"step {self.state.global_step}"
        try:
            super()._push_from_checkpoint(checkpoint_folder)
        except Exception as error:
            self._record_push_failure(description, error)
            return
        for job in self.push_in_progress.jobs if self.push_in_progress is not None else []:
            if not any(job is old for old in previous):
                self._watch_push(job, description)

    def _finish_current_push(self) -> None:
        super()._finish_current_push()
        self._collect_push_failures()  # wait() can return before the futures' done-callbacks have run

    def _watch_push(self, job: Future, description: str) -> None:
        with self._hub_lock:
            self._hub_watched.append((job, description))
        job.add_done_callback(lambda _: self._collect_push_failures())

    def _collect_push_failures(self) -> None:
        """Logs and records every watched upload that has failed since the last call (thread-safe)."""
        if not hasattr(self, "_hub_lock"):
            return
        with self._hub_lock:
            done, running = [], []
            for entry in self._hub_watched:
                (done if entry[0].done() else running).append(entry)
            self._hub_watched = running
        for job, text in done:
            if not job.cancelled() and job.exception() is not None:
                self._record_push_failure(text, job.exception())

    def _record_push_failure(self, description: str, error: BaseException) -> None:
        self.hub_push_failures.append(f"{description}: {type(error).__name__}: {error}")
        logger.warning(
            f"pushing to the Hub repo {self.hub_model_id!r} failed at {description} ({type(error).__name__}: "
            f"{error}). Training goes on, the files in {self.args.output_dir} and its checkpoints are complete, and "
            "the next save or trainer.push_to_hub() pushes again"
        )


class HubPushError(RuntimeError):
    """A push of `SemScaleTrainer` to the Hugging Face Hub failed; the local `output_dir` is complete."""


def _reload_renamed_weights(model: nn.Module, checkpoint: str) -> None:
    """Loads the checkpoint's weights again through `from_pretrained` when their names differ from the model's.

    transformers 5.x saves some models (ViT among them) under legacy parameter names and converts them back only in
    `from_pretrained`; `Trainer._load_from_checkpoint` loads the raw state dict with `strict=False`, so on resume the
    renamed layers silently keep their fresh initialisation (seen with transformers 5.24). Remove when Trainer's own
    resume converts the names.
    """
    path = os.path.join(checkpoint, SAFE_WEIGHTS_NAME)
    if not isinstance(model, PreTrainedModel) or not os.path.isfile(path):
        return
    with safe_open(path, framework="pt") as handle:
        saved = set(handle.keys())
    if saved == set(model.state_dict()):
        return
    reloaded = type(model).from_pretrained(checkpoint, dtype=model.dtype)
    missing, unexpected = model.load_state_dict(reloaded.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"could not restore the model weights from {checkpoint}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def count_train_labels(dataset: Any, num_labels: int) -> list[int]:
    """Samples per class in a training dataset with a `labels` or `label` column (or items with such a key)."""
    column = None
    names = getattr(dataset, "column_names", None)
    if names is not None:
        column = next((c for c in ("labels", "label") if c in names), None)
    if column is not None:
        # without the dataset's transform: reading one column must not decode every image
        plain = dataset.with_format(None) if hasattr(dataset, "with_format") else dataset
        labels = np.asarray(plain[column])
    else:
        try:
            labels = np.asarray([int(item["labels"] if "labels" in item else item["label"]) for item in dataset])
        except (TypeError, KeyError) as error:
            raise ValueError(
                "cannot count training labels: the dataset has no `labels`/`label` column; pass class_counts=[...]"
            ) from error
    labels = labels[labels != -100].astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(
            f"training labels must lie in [0, {num_labels}) (num_labels of the model), got values from "
            f"{labels.min()} to {labels.max()}"
        )
    return np.bincount(labels, minlength=num_labels).tolist()


def _num_labels(model: nn.Module | None) -> int:
    config = getattr(model, "config", None)
    num_labels = getattr(config, "num_labels", None)
    if not isinstance(num_labels, int) or num_labels < 2:
        raise ValueError(
            "SemScaleTrainer needs a classification model with config.num_labels >= 2 "
            f"(an AutoModelFor*Classification model), got {num_labels!r}"
        )
    return num_labels


def _loss_options(args: SemScaleTrainingArguments, class_counts: list[int]) -> dict[str, Any]:
    if args.semscale_base_loss == "focal":
        return {"gamma": args.semscale_focal_gamma}
    if args.semscale_base_loss == "ldam":
        return {
            "class_counts": torch.tensor(class_counts),
            "max_margin": args.semscale_ldam_max_margin,
            "scale": args.semscale_ldam_scale,
        }
    return {"label_smoothing": args.label_smoothing_factor} if args.label_smoothing_factor else {}


def _with_class_metrics(
    user_metrics: Callable[[EvalPrediction], dict[str, float]] | None, class_counts: list[int], per_class_max: int
) -> Callable[[EvalPrediction], dict[str, float]]:
    """Adds accuracy, balanced accuracy, many/medium/few-shot and (few classes) per-class accuracy to evaluation."""

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        logits = np.asarray(logits)
        predicted = logits if logits.ndim == 1 else logits.argmax(-1)
        metrics = classification_metrics(predicted, np.asarray(prediction.label_ids), class_counts, per_class_max)
        if user_metrics is not None:
            metrics.update(user_metrics(prediction))
        return metrics

    return compute_metrics


def classification_metrics(
    predicted: np.ndarray, labels: np.ndarray, class_counts: list[int], per_class_max: int = 20
) -> dict[str, float]:
    """Accuracy, balanced (class-averaged) accuracy, many/medium/few-shot accuracy and, for few classes, per class."""
    num_classes = len(class_counts)
    predicted_ids = torch.as_tensor(predicted).long()
    label_ids = torch.as_tensor(labels).long()
    accuracy = per_class_accuracy(predicted_ids, label_ids, num_classes)
    kept = label_ids != -100
    metrics = {
        "accuracy": float((predicted_ids[kept] == label_ids[kept]).double().mean()),
        "balanced_accuracy": float(accuracy[torch.isfinite(accuracy)].mean()),
    }
    metrics.update(
        {f"acc_{group}": value for group, value in many_medium_few_accuracy(accuracy, class_counts).items()}
    )
    if num_classes <= per_class_max:
        metrics.update({f"acc_class_{c}": value for c, value in enumerate(accuracy.tolist())})
    return metrics
