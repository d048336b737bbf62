"""`SemScaleCallback`: the schedule of measurements, and their logging, for `SemScaleTrainer` or a plain `Trainer`.

With [`SemScaleTrainer`] the callback is created and linked automatically; it decides when the stage changes and when
scales and weights are refreshed (always after an optimizer step, never inside a gradient-accumulation window).

On a plain [`~transformers.Trainer`] it works in measure-only mode: it captures the classification head's input and
the labels of every training forward pass into its own feature pool, measures the semantic scales on the same
schedule, and logs them; the loss is untouched. Link it with `SemScaleCallback.attach(trainer)`, because the
callback API does not hand the trainer to callbacks and `Trainer.log` is what reaches every `report_to` integration.
The labels are read from the batch that the trainer hands to `training_step`, so a `compute_loss` that pops `labels`
before calling the model (the usual custom-loss pattern) is measured too.

Both modes share one record path ([`~semscale_hf.training.recorder.record_batch`]: gather across processes, then
the pool, one NaN policy) and broadcast rank 0's weights after every refresh. The callback talks to its trainer only
through `accelerator`, `model`, `train_dataset`, `state`, `args` and `log`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging

from ..core._validation import IGNORE_INDEX
from ..core.balancer import TOKEN_POOL_MAX_PER_CLASS, SemScaleBalancer
from ..core.capture import FeatureCapture, classification_num_labels, is_multi_label, is_token_classifier
from ..data.labels import count_labels, count_positives, is_streaming
from .distributed import broadcast_from_main
from .recorder import check_recorded, pool_memory_plan, record_batch


if TYPE_CHECKING:
    from transformers import Trainer

logger = logging.get_logger(__name__)

__all__ = ["SemScaleCallback", "count_training_samples", "refresh_schedule"]


def refresh_schedule(
    steps_per_epoch: int, *, warmup_epochs: float, warmup_steps: int | None, refresh_steps: int | None
) -> tuple[int, int]:
    """Optimizer steps of warm-up and between refreshes (default: one epoch)."""
    steps_per_epoch = max(int(steps_per_epoch), 1)
    warmup = warmup_steps if warmup_steps is not None else math.ceil(warmup_epochs * steps_per_epoch)
    return int(warmup), int(refresh_steps if refresh_steps is not None else steps_per_epoch)


class SemScaleCallback(TrainerCallback):
    """Measures semantic scales on a schedule and logs `semscale/*` through `Trainer.log`.

    Args:
        balancer (`SemScaleBalancer`, *optional*):
            The state to refresh. `SemScaleTrainer` passes its own; in measure-only mode the callback builds one from
            `class_counts` (weighting `"none"`).
        class_counts (`list[int]`, *optional*):
            Training samples per class, for measure-only mode (default: counted from the trainer's train dataset).
        feature_module (`str`, *optional*):
            Name of the classification head in measure-only mode (default: automatic).
        warmup_epochs, warmup_steps, refresh_steps:
            The schedule (as the `semscale_*` fields of [`SemScaleTrainingArguments`]); defaults measure first after
            one epoch and then once per epoch.
        per_class_max (`int`, *optional*, defaults to 20):
            Log per-class scales and weights when there are at most this many classes.
        balancer_options:
            Measure-only mode: keyword arguments of [`SemScaleBalancer`] (e.g. `alpha=1.0`, `normalize=True`,
            `pool_max_per_class=512`, `pool_dtype=torch.float16`).
    """

    def __init__(
        self,
        balancer: SemScaleBalancer | None = None,
        *,
        class_counts: list[int] | None = None,
        feature_module: str | None = None,
        warmup_epochs: float = 1.0,
        warmup_steps: int | None = None,
        refresh_steps: int | None = None,
        per_class_max: int = 20,
        **balancer_options: Any,
    ) -> None:
        self.class_counts = class_counts
        self.feature_module = feature_module
        self.use(balancer, warmup_epochs=warmup_epochs, warmup_steps=warmup_steps, refresh_steps=refresh_steps)
        self.per_class_max = per_class_max
        self.balancer_options = balancer_options
        self.trainer: Trainer | None = None
        self.measure_only = balancer is None
        self.warmup_total = 0
        self.refresh_every = 1
        self._hooks: list[Any] = []
        self._capture: FeatureCapture | None = None
        self._labels: torch.Tensor | None = None
        self._step_labels: torch.Tensor | None = None  # labels of the batch in training_step (measure-only mode)
        self._checked_through = 0  # global step up to which rows left out of the pool were reported
        self._train_start_step = 0  # global step at which this train() began (or resumed)
        self._multi_label = False  # the measured model's problem_type, set when measuring starts
        self._warned_empty = False
        self._counted_from: Any = None  # the train set the measure-only counts were read from

    def use(
        self,
        balancer: SemScaleBalancer | None,
        *,
        warmup_epochs: float = 1.0,
        warmup_steps: int | None = None,
        refresh_steps: int | None = None,
    ) -> None:
        """Sets the state to refresh and the schedule (`SemScaleTrainer` calls it again for each search trial)."""
        self.balancer = balancer
        self.warmup_epochs, self.warmup_steps, self.refresh_steps = warmup_epochs, warmup_steps, refresh_steps

    @classmethod
    def attach(cls, trainer: Trainer, **kwargs: Any) -> SemScaleCallback:
        """Creates a measure-only callback, links it to `trainer` and adds it: the one-line way for a plain Trainer."""
        callback = cls(**kwargs)
        if trainer.model is not None:  # a regression model, or counts of another length, fail here
            num_labels = classification_num_labels(trainer.model, "SemScaleCallback")
            if callback.measure_only and callback.class_counts is not None:
                _check_counts_length(callback.class_counts, num_labels)
        if callback.measure_only and callback.class_counts is None:  # known now: fail here rather than at train()
            _require_counts_for_stream(trainer.train_dataset)
        callback.trainer = trainer
        trainer.add_callback(callback)
        return callback

    # ----------------------------------------------------------------------------------------------- lifecycle
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.trainer is None:
            raise RuntimeError(
                "SemScaleCallback is not linked to its trainer; add it with `SemScaleCallback.attach(trainer)` "
                "(or use SemScaleTrainer, which links it)"
            )
        if self.measure_only:
            self._start_measuring(kwargs["model"])
            # measure-only state is not saved with checkpoints: a resumed run fills its pool again from this step,
            # or its first refresh would measure a single batch
            self.balancer.warmup_start_step = state.global_step
        needs_epoch = self.refresh_steps is None or (self.warmup_steps is None and self.warmup_epochs > 0)
        self.warmup_total, self.refresh_every = refresh_schedule(
            self._steps_per_epoch(args, kwargs.get("train_dataloader"), kwargs["model"]) if needs_epoch else 1,
            warmup_epochs=self.warmup_epochs,
            warmup_steps=self.warmup_steps,
            refresh_steps=self.refresh_steps,
        )
        self._checked_through = self._train_start_step = state.global_step
        if self.balancer.restart_warmup:  # resumed from a checkpoint without semscale state
            self.balancer.warmup_start_step, self.balancer.restart_warmup = state.global_step, False
        if self.balancer.num_refreshes == 0 and self.warmup_total == 0:
            self._refresh(state.global_step, control)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        balancer = self.balancer
        due = (
            state.global_step - balancer.warmup_start_step >= self.warmup_total
            if balancer.stage == "warmup"
            else state.global_step - balancer.last_refresh_step >= self.refresh_every
        ) and balancer.ready_to_refresh()
        # Rows left out of the pool (NaN/inf features, bad labels) are reported at the steps that synchronise anyway,
        # before the Trainer logs, saves or evaluates after this callback: never on the other steps.
        last = state.global_step >= state.max_steps
        if due or last or control.should_log or control.should_save or control.should_evaluate:
            self._check_recorded(args, state)
        if due:
            self._refresh(state.global_step, control)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        # Trainer decides an epoch-end save or evaluation (save_strategy="epoch") after on_step_end: check before it
        if control.should_save or control.should_evaluate or control.should_log:
            self._check_recorded(args, state)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._stop_measuring()

    # ----------------------------------------------------------------------------------------------- internals
    def _steps_per_epoch(self, args: TrainingArguments, dataloader: Any, model: torch.nn.Module) -> int:
        """Optimizer steps of one epoch: from the dataloader, or (a stream has no length) from the class counts."""
        try:
            return math.ceil(len(dataloader) / args.gradient_accumulation_steps)
        except TypeError:  # no dataloader, or an iterable dataset: an epoch is one pass over the counted samples
            pass
        if is_token_classifier(model) or is_multi_label(model):  # the counts are tokens or positive labels
            names = (
                "pass warmup_steps and refresh_steps to SemScaleCallback"
                if self.measure_only
                else "set semscale_warmup_steps and semscale_refresh_steps"
            )
            raise ValueError(
                "the train set is a stream, so an epoch has no length, and the class counts of a token or "
                f"multi-label task count tokens or positive labels rather than examples: {names} (the schedule in "
                "optimizer steps)"
            )
        per_step = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
        return math.ceil(int(self.balancer.class_counts.sum()) / per_step)

    def _check_recorded(self, args: TrainingArguments, state: TrainerState) -> None:
        # the steps are counted as during the forward passes: global_step before its increment
        first, self._checked_through = self._checked_through, state.global_step
        check_recorded(
            self.balancer,
            first_step=first,
            last_step=state.global_step - 1,
            epoch=state.epoch,
            output_dir=args.output_dir,
        )

    def _refresh(self, step: int, control: TrainerControl) -> None:
        balancer = self.balancer
        # a refresh before the first step (warm-up 0) finds the pool empty by design: only later ones say so
        stepped = step > self._train_start_step
        if stepped and not self._warned_empty and int(balancer.pool.counts.sum()) == 0:
            self._warned_empty = True
            logger.warning(
                f"the refresh at step {step} found an empty feature pool: no training batch reached the pool (no "
                "`labels` in the batches, or no forward pass through the classification head); the scales stay "
                "unmeasured" + ("" if self.measure_only else " and the weights stay 1")
            )
        balancer.refresh(step)
        balancer.class_weights, balancer.semantic_scales = broadcast_from_main(
            self.trainer.accelerator, balancer.class_weights, balancer.semantic_scales
        )
        names = _label_names(self.trainer.model)
        # Trainer.log runs every callback's on_log, and the flow callback there clears `should_log`, which would
        # drop this step's regular loss log: keep the flag as it was.
        should_log = control.should_log
        self.trainer.log(balancer.summary(self.per_class_max, names))
        control.should_log = should_log

    def _start_measuring(self, model: torch.nn.Module) -> None:
        num_labels = classification_num_labels(model, "SemScaleCallback")  # also a model built by model_init
        self._stop_measuring()  # hooks of a train() that raised (on_train_end never ran): this run hooks its model
        # counts read from the train set are read again when train() runs on another one
        recount = self.class_counts is None and self.trainer.train_dataset is not self._counted_from
        built = self.balancer is None or recount
        if not built:
            self.balancer.reset()  # a later train() measures its own run, on the schedule of its own steps
        else:
            counts = self.class_counts
            if counts is not None:
                _check_counts_length(counts, num_labels)
            else:
                dataset = self.trainer.train_dataset
                _require_counts_for_stream(dataset)  # (the dataset may have changed since attach)
                self._counted_from = dataset
                counts = count_training_samples(dataset, num_labels, multi_label=is_multi_label(model))
            options = dict(self.balancer_options)
            if is_token_classifier(model):  # token counts run into the millions: keep the pool bounded
                options.setdefault("pool_max_per_class", TOKEN_POOL_MAX_PER_CLASS)
            self.balancer = SemScaleBalancer(counts, weighting="none", **options)
        self._capture = FeatureCapture(model, num_labels, self.feature_module, per_token=is_token_classifier(model))
        self._multi_label = is_multi_label(model)
        # The head hook sees features but not labels: read the labels from the model call's keyword arguments, or
        # else from the batch handed to training_step (a compute_loss may pop them), and pair both once the forward
        # pass has finished.
        self._hooks = [
            model.register_forward_pre_hook(self._read_labels, with_kwargs=True),
            model.register_forward_hook(self._record_batch),
        ]
        self._wrap_training_step()
        if built:  # as SemScaleTrainer logs when it builds its balancer
            trainer = self.trainer
            logger.log(
                *pool_memory_plan(
                    self.balancer.pool, self._capture.dim, model, batch_size=trainer.args.per_device_train_batch_size,
                    num_processes=trainer.accelerator.num_processes, multi_label=self._multi_label,
                )
            )  # fmt: skip

    def _wrap_training_step(self) -> None:
        trainer = self.trainer
        original = trainer.training_step  # the bound method of the trainer's class

        def training_step(model: torch.nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            self._step_labels = inputs.get("labels") if isinstance(inputs, Mapping) else None  # also BatchEncoding
            try:
                return original(model, inputs, *args, **kwargs)
            finally:
                self._step_labels = None

        trainer.training_step = training_step  # an instance attribute: removed again by _stop_measuring
        self._hooks.append(_InstanceAttribute(trainer, "training_step"))

    def _read_labels(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        labels = kwargs.get("labels")
        self._labels = (labels if labels is not None else self._step_labels) if module.training else None

    def _record_batch(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        features = self._capture.pop() if self._capture is not None else None
        labels, self._labels = self._labels, None
        if labels is None or features is None or labels.shape[:1] != features.shape[:1]:
            return
        record_batch(self.balancer, self.trainer.accelerator, features, labels, multi_label=self._multi_label)

    def _stop_measuring(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self._capture is not None:
            self._capture.close()
            self._capture = None


class _InstanceAttribute:
    """A removable handle for an attribute set on an instance, like the handles of torch hooks."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name = owner, name

    def remove(self) -> None:
        self.owner.__dict__.pop(self.name, None)


def count_training_samples(dataset: Any, num_labels: int, *, multi_label: bool) -> list[int]:
    """Training samples per class as the pool and the weights count them (shared with `SemScaleTrainer`).

    Positives of the multi-hot labels for a multi-label model, else class ids (tokens of a token task; -100 left out).
    """
    if multi_label:
        return count_positives(dataset, num_labels)
    try:
        return count_labels(dataset, num_labels, ignore_index=IGNORE_INDEX)
    except TypeError as error:  # e.g. float multi-hot vectors for a model not told it is multi-label
        raise TypeError(
            f"{error}; for multi-hot labels (several classes per example) set "
            'model.config.problem_type = "multi_label_classification"'
        ) from error


def _check_counts_length(class_counts: Any, num_labels: int) -> None:
    if len(class_counts) != num_labels:
        raise ValueError(
            f"class_counts has {len(class_counts)} entries, but the model has num_labels={num_labels}: pass one "
            "count per class (training samples, tokens or positive labels of that class)"
        )


def _require_counts_for_stream(dataset: Any) -> None:
    if dataset is not None and is_streaming(dataset):
        raise ValueError(
            "the train set is an iterable (streaming) dataset: pass class_counts=[...] to SemScaleCallback.attach "
            "(a stream is never read to count it)"
        )


def _label_names(model: torch.nn.Module) -> list[str] | None:
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if not id2label:
        return None
    return [str(id2label.get(i, i)).replace("/", "_") for i in range(len(id2label))]
