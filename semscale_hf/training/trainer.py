"""`SemScaleTrainer`: `transformers.Trainer` with dynamic semantic-scale-balanced loss weights."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, logging

from ..core._validation import IGNORE_INDEX, parse_alpha
from ..core.balancer import POOL_FILE, STATE_FILE, TOKEN_POOL_MAX_PER_CLASS, SemScaleBalancer
from ..core.capture import FeatureCapture, classification_num_labels, is_multi_label, is_token_classifier
from ..core.losses import class_weighted_loss, ldam_margins, multi_label_weighted_loss
from ..data.labels import is_streaming
from .callback import SemScaleCallback, count_training_samples
from .checkpoints import (
    STAGING_DIR,
    checkpoint_problems,
    newest_complete_checkpoint,
    publish,
    remove_stale_staging,
    weight_map,
)
from .config import POOL_DTYPES, SemScaleTrainingArguments
from .eval_metrics import ClassMetrics
from .hub_push import HubPushError, HubPushMixin
from .recorder import pool_memory_plan, record_batch


logger = logging.get_logger(__name__)

__all__ = ["HubPushError", "SemScaleTrainer"]


class SemScaleTrainer(HubPushMixin, Trainer):
    """[`~transformers.Trainer`] whose loss is re-weighted per class by semantic scale, updated during training.

    A drop-in replacement: swap the class name and use [`SemScaleTrainingArguments`]. During the forward pass a
    pre-hook on the classification head keeps its input (the features; no extra forward pass); the features of every
    training batch, gathered across processes, go into a per-class feature pool; the scales measured on that pool give
    the class weights (see the README for the stages and the defaults).

    Each `train()` starts the semscale schedule anew (empty pool, warm-up, weights 1), as `Trainer` starts its step
    count, optimizer and scheduler anew, unless it resumes from a checkpoint, whose semscale state it restores. With
    `model_init` (and so `hyperparameter_search`) the hook moves to the model that `train()` builds, and a trial's
    `semscale_*` hyperparameters take effect.

    Args:
        class_counts (`list[int]`, *optional*):
            Training samples per class. Defaults to counting the `labels`/`label` column of `train_dataset`; required
            for an iterable (streaming) train set, which is never read to count it.
        All other arguments are those of [`~transformers.Trainer`], except `compute_loss_func`: the per-sample base
        loss is `semscale_base_loss` (`"ce"`, `"focal"` or `"ldam"`).

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
                f"SemScaleTrainer needs SemScaleTrainingArguments, got {type(args).__name__}; build the arguments "
                "with SemScaleTrainingArguments(...) (it accepts every TrainingArguments field)"
            )
        user_metrics = trainer_kwargs.pop("compute_metrics", None)
        self.hub_push_failures: list[str] = []  # (init_hf_repo starts it anew when there is a Hub repo)
        if trainer_kwargs.get("compute_loss_func") is not None:
            raise ValueError(_NO_LOSS_FUNC)
        if model is not None:
            _num_labels(model)  # bad models fail before Trainer creates a Hub repo or moves anything
        super().__init__(model, args, *trainer_args, **trainer_kwargs)
        if self.compute_loss_func is not None:  # passed positionally
            raise ValueError(_NO_LOSS_FUNC)
        if user_metrics is None:  # passed positionally: Trainer holds it now, the wrapper below takes it over
            user_metrics = self.compute_metrics
        # The loss reads `labels` whatever the model's forward takes; Trainer finds no label names in a forward
        # without `labels`, and would then drop the column and hand `labels` to the model at evaluation.
        if not self.label_names:
            self.label_names = ["labels"]
        # Trainer counts `num_items_in_batch` only for models whose forward takes loss kwargs; ResNet-like and
        # ConvNeXt models would get None. Our loss never passes it to the model, so claim it to get the count always.
        self.model_accepts_loss_kwargs = True

        num_labels = _num_labels(self.model)
        self.multi_label = is_multi_label(self.model)
        if self.multi_label and args.semscale_base_loss != "ce":  # (Trainer itself turns label smoothing off)
            raise ValueError(
                "multi-label classification trains with the class-weighted binary cross-entropy: set "
                f'semscale_base_loss="ce" (got {args.semscale_base_loss!r}; focal and LDAM are single-label losses)'
            )
        given = class_counts is not None
        if given:
            if not all(_is_count(c) for c in class_counts):
                raise ValueError(f"class_counts must be non-negative integers, got {list(class_counts)}")
        else:
            if self.train_dataset is None:
                raise ValueError("pass class_counts=[...] (training samples per class) when no train_dataset is given")
            if is_streaming(self.train_dataset):
                raise ValueError(
                    f"the train set is an iterable (streaming) dataset ({type(self.train_dataset).__name__}): pass "
                    "class_counts=[...] (training samples per class, e.g. from the dataset card or one counting pass "
                    "you make yourself); SemScaleTrainer never reads a stream to count it"
                )
            class_counts = count_training_samples(self.train_dataset, num_labels, multi_label=self.multi_label)
        if len(class_counts) != num_labels:
            raise ValueError(
                f"class_counts has {len(class_counts)} entries but the model has num_labels={num_labels}; "
                "set config.num_labels to the number of classes"
            )
        self.class_counts = [int(c) for c in class_counts]
        if given and hasattr(self.train_dataset, "select_columns") and not is_streaming(self.train_dataset):
            # an Arrow column counts in a moment; the given counts set the pool's capacity per class
            counted = count_training_samples(self.train_dataset, num_labels, multi_label=self.multi_label)
            if self.class_counts != counted:
                logger.warning(
                    f"class_counts {self.class_counts} differ from the labels of the train set ({counted}): the "
                    "pool's capacities and the count-based weights follow class_counts"
                )
        absent = [c for c, n in enumerate(self.class_counts) if n == 0]
        if absent:
            logger.warning(
                f"classes {absent} have no training samples: they are never measured and get the largest weight"
            )
        self.token_task = is_token_classifier(self.model)
        self.capture = FeatureCapture(self.model, num_labels, args.semscale_feature_module, per_token=self.token_task)
        self.semscale_callback: SemScaleCallback | None = None
        self._build_semscale()
        self.semscale_callback.trainer = self
        self.add_callback(self.semscale_callback)
        self.compute_metrics = ClassMetrics(
            user_metrics,
            self.class_counts,
            args.semscale_log_per_class_max,
            batched=args.batch_eval_metrics,
            concatenated=args.eval_do_concat_batches,
            token_task=self.token_task,
            multi_label=self.multi_label,
            label_names=_id2label(self.model),
        )
        self._saving_checkpoint = False
        self._deferred_load_result = None

    def _build_semscale(self) -> None:
        """Balancer, schedule and loss constants from the `semscale_*` arguments (again for each search trial)."""
        args = self.args
        self.balancer = self._new_balancer()
        logger.log(
            *pool_memory_plan(
                self.balancer.pool, self.capture.dim, self.model, batch_size=args.per_device_train_batch_size,
                num_processes=self.accelerator.num_processes, multi_label=self.multi_label,
            )
        )  # fmt: skip
        schedule = {
            "warmup_epochs": args.semscale_warmup_epochs,
            "warmup_steps": args.semscale_warmup_steps,
            "refresh_steps": args.semscale_refresh_steps,
        }
        if self.semscale_callback is None:
            self.semscale_callback = SemScaleCallback(
                self.balancer, per_class_max=args.semscale_log_per_class_max, **schedule
            )
        else:
            self.semscale_callback.use(self.balancer, **schedule)
        self._loss_options = _loss_options(args, self.class_counts, args.device)

    # ------------------------------------------------------------------------------------------ public state
    @property
    def class_weights(self) -> torch.Tensor:
        return self.balancer.class_weights

    @property
    def semantic_scales(self) -> torch.Tensor:
        return self.balancer.semantic_scales

    def _new_balancer(self) -> SemScaleBalancer:
        """An empty balancer built from the `semscale_*` arguments."""
        args = self.args
        pool_cap = args.semscale_pool_max_per_class
        if pool_cap is None and self.token_task:
            pool_cap = TOKEN_POOL_MAX_PER_CLASS  # token counts run into the millions: keep the pool bounded
        return SemScaleBalancer(
            self.class_counts,
            weighting=args.semscale_weighting,
            power=args.semscale_power,
            momentum=args.semscale_momentum,
            weight_min=args.semscale_weight_min,
            weight_max=args.semscale_weight_max,
            alpha=parse_alpha(args.semscale_alpha),
            center=args.semscale_center,
            normalize=args.semscale_normalize,
            min_count=args.semscale_min_count,
            pool_max_per_class=pool_cap,
            pool_dtype=POOL_DTYPES[args.semscale_pool_dtype],
            pool_device=args.semscale_pool_device or args.device,
            effective_number_beta=args.semscale_effective_number_beta,
        )

    @contextlib.contextmanager
    def _state_at_checkpoint(self, folder: str, step: int, epoch: float | None) -> Iterator[None]:
        # the card of a queued push shows the checkpoint's weights and scales, not those of a later refresh
        with super()._state_at_checkpoint(folder, step, epoch):
            saved = self._new_balancer()
            current = self.balancer
            try:
                if saved.load(folder):
                    self.balancer = saved
            except ValueError as error:  # documentation only: the card then shows the current values
                logger.warning(f"the card of the push of {folder} shows the current state: {error}")
            try:
                yield
            finally:
                self.balancer = current

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
        Token classification: every labelled token is an item (logits `(batch, tokens, C)` are flattened; -100
        tokens are left out), so the loss is divided by the labelled tokens of the accumulated batch. Multi-label
        (`problem_type="multi_label_classification"`, multi-hot labels, float or integer): the binary cross-entropy
        of every (example, class) term, class `c`'s terms weighted by `w_c`, divided by the number of terms.
        """
        inputs = dict(inputs)
        if "labels" not in inputs:
            raise ValueError("SemScaleTrainer needs a `labels` entry in every batch")
        labels = inputs.pop("labels")
        outputs = model(**inputs)  # without labels the model computes no loss of its own
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        features = self.capture.pop()
        if model.training:
            if features is None:
                raise RuntimeError(
                    f"the hook on {self.capture.module_name!r} captured no features during the forward pass"
                )
            record_batch(self.balancer, self.accelerator, features, labels, multi_label=self.multi_label)
        if labels.ndim == 2 and not self.multi_label:  # a label per token: the loss sees one row per token
            logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
        if not model.training:  # the unweighted base loss
            if self.multi_label:
                loss = multi_label_weighted_loss(logits, labels)
            else:
                loss = class_weighted_loss(self.args.semscale_base_loss, logits, labels, **self._loss_options)
            return (loss, _with_loss(loss, outputs)) if return_outputs else loss

        num_items = num_items_in_batch
        if num_items is None:  # no count from Trainer: this micro-batch's items times the accumulation steps
            num_items = labels.ne(IGNORE_INDEX).sum() * self.current_gradient_accumulation_steps
        # nothing here reads a value back from the device: labels were checked when they were counted, weights and
        # LDAM margins are already on the device in the loss's dtype
        compute_dtype = torch.promote_types(logits.dtype, torch.float32)
        weights = self.balancer.loss_weights(logits.device, compute_dtype)
        if self.multi_label:  # each class's weight on both terms of its binary cross-entropy
            loss = multi_label_weighted_loss(logits, labels, weights, num_items=num_items)
        else:
            loss = class_weighted_loss(
                self.args.semscale_base_loss,
                logits,
                labels,
                weights,
                num_items=num_items,
                validate=False,
                **self._loss_options,
            )
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return (loss, _with_loss(loss, outputs)) if return_outputs else loss

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        """As [`~transformers.Trainer.evaluation_loop`] (`evaluate` and `predict`), each with its own batches."""
        if isinstance(self.compute_metrics, ClassMetrics):
            self.compute_metrics.start()
        return super().evaluation_loop(*args, **kwargs)

    # ------------------------------------------------------------------------------------ checkpoints and saving
    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None, **kwargs: Any) -> Any:
        """As [`~transformers.Trainer.train`]; `resume_from_checkpoint=True` takes the newest *complete* checkpoint.

        A newer incomplete `checkpoint-N` (written by other code, or killed during a save before checkpoints were
        staged) is skipped with a warning naming what it lacks; an explicit path to an incomplete checkpoint fails at
        once, naming the missing file. A staging folder left by a killed save is cleaned up first: a checkpoint there
        marked complete whose `checkpoint-N` is missing or incomplete (killed while it was being put in place) is moved
        into place, the rest is deleted. The semscale schedule starts anew at every call (see the class docstring); a
        resumed checkpoint restores its state.
        """
        save_only_model = self.args.save_only_model
        self._clean_up_staging(self.args.output_dir)
        if resume_from_checkpoint is True:
            resume_from_checkpoint, skipped = newest_complete_checkpoint(
                self.args.output_dir, save_only_model=save_only_model
            )
            for folder, problems in skipped.items():
                logger.warning(f"skipped the incomplete checkpoint {folder}: {'; '.join(problems)}")
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"resume_from_checkpoint=True, but {self.args.output_dir} holds no complete checkpoint"
                    + (f" (incomplete: {', '.join(skipped)})" if skipped else "")
                    + "; pass resume_from_checkpoint=None to start from scratch"
                )
        elif isinstance(resume_from_checkpoint, (str, os.PathLike)) and os.path.isdir(resume_from_checkpoint):
            if problems := checkpoint_problems(str(resume_from_checkpoint), save_only_model=save_only_model):
                raise ValueError(
                    f"{resume_from_checkpoint} is an incomplete checkpoint: {'; '.join(problems)}. Resume from an "
                    "earlier one, or pass resume_from_checkpoint=True to take the newest complete one"
                )
        return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)

    def _clean_up_staging(self, run_dir: str) -> None:
        """What a save killed in `run_dir` left in its staging folder: restored if complete, deleted otherwise."""
        if self.args.should_save:
            restored, removed = remove_stale_staging(run_dir)
            for folder in restored:
                logger.warning(f"restored {folder} from {STAGING_DIR}: complete, but the last run was killed before "
                               "it was in place")  # fmt: skip
            for folder in removed:
                logger.warning(f"removed {folder}: a checkpoint that was being written when the last run was killed")
        self.accelerator.wait_for_everyone()  # every process looks for checkpoints once a restored one is in place

    def call_model_init(self, trial: Any = None) -> nn.Module:
        """As [`~transformers.Trainer.call_model_init`]; the feature hook moves to the new model."""
        model = super().call_model_init(trial)
        if hasattr(self, "capture"):  # train() with model_init: hook the model this run trains
            if _num_labels(model) != len(self.class_counts):
                raise ValueError(
                    f"model_init built a model with num_labels={model.config.num_labels}, but the trainer counts "
                    f"{len(self.class_counts)} classes"
                )
            self.capture.close()
            self.capture = FeatureCapture(
                model, len(self.class_counts), self.args.semscale_feature_module, per_token=self.token_task
            )
        return model

    def _hp_search_setup(self, trial: Any) -> None:
        # runs in every train(), after model_init and before a checkpoint is loaded: the schedule starts anew here
        super()._hp_search_setup(trial)
        if trial is not None:
            self._build_semscale()  # the trial may have set semscale_* fields
            self._clean_up_staging(self._get_output_dir(trial=trial))  # the trial saves into its own run-N folder
        else:
            self.balancer.reset()

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """`Trainer`'s checkpoint, written into a staging folder and renamed into place once it is complete."""
        run_dir = self._get_output_dir(trial=trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, STAGING_DIR)
        staged, final = os.path.join(staging, name), os.path.join(run_dir, name)
        # Trainer builds every path of the save from _get_output_dir: pointed at the staging folder, the whole
        # checkpoint lands there; the push is made from the final folder, after the rename
        if self.args.should_save and os.path.isdir(staged):  # files of a killed save must not mix into this one
            shutil.rmtree(staged)
        self.accelerator.wait_for_everyone()
        self._get_output_dir = lambda trial=None: staging  # shadows the method for this save only
        self._saving_checkpoint = True  # the next save_model writes the pool too (needed for an exact resume)
        self._defer_pushes, self._deferred_push = True, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
            self._saving_checkpoint = self._defer_pushes = False
        deferred, self._deferred_push = self._deferred_push, None
        self.accelerator.wait_for_everyone()  # every rank's files are in the staging folder
        state = self.state
        # When this step is the best, Trainer names the folder it saw, the staging one: every rank takes the final
        # path (each rank loads the best model at the end), rank 0 writes it into the checkpoint's state
        best = state.best_model_checkpoint
        named_staged = best is not None and os.path.dirname(os.path.normpath(best)) == os.path.normpath(staging)
        if named_staged:
            state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(os.path.normpath(best)))
        if self.args.should_save:
            if named_staged:
                state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
            publish(staged, final)
            if deferred is not None:
                self._push_from_checkpoint(final)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Saves the model as `Trainer` does, plus `semscale_state.safetensors` (and the pool in checkpoints)."""
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            self.balancer.save(output_dir or self.args.output_dir, include_pool=self._saving_checkpoint)

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        # judged once the weights saved under legacy names are reloaded (_restore_weights): no false "missing keys"
        self._deferred_load_result = load_result

    def _restore_weights(self, checkpoint: str) -> None:
        result, self._deferred_load_result = self._deferred_load_result, None
        if not _reload_renamed_weights(self.model, checkpoint) and result is not None:
            super()._issue_warnings_after_load(result)

    def _load_best_model(self) -> None:
        """As `Trainer`, plus the weights saved under legacy names and the semscale state of the best checkpoint."""
        best = self.state.best_model_checkpoint
        super()._load_best_model()
        self._restore_weights(best)
        if not self.balancer.load(best, feature_dim=self.capture.dim):
            logger.warning(f"{best} holds no {STATE_FILE}: the class weights stay those of the last step")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._restore_weights(resume_from_checkpoint)
        balancer = self.balancer
        if not balancer.load(resume_from_checkpoint, feature_dim=self.capture.dim):
            balancer.restart_warmup = True  # the callback moves the warm-up's start to the resume step
            # the warm-up as SemScaleCallback.on_train_begin counts it, from the resumed step
            steps, epochs = self.args.semscale_warmup_steps, self.args.semscale_warmup_epochs
            if (steps if steps is not None else epochs) == 0:
                then = "no warm-up is configured, so the first measurement comes at once, on the empty pool"
            else:
                length = f"{steps} steps (semscale_warmup_steps)" if steps is not None else f"{epochs:g} epochs"
                then = (
                    f"the loss is unweighted for the next {length}, then the first measurement sees only the features "
                    "gathered after the resume"
                )
            logger.warning(
                f"{resume_from_checkpoint} holds no {STATE_FILE}: the feature pool starts empty and warm-up restarts "
                f"at the resumed step: {then}"
            )
            return
        reason = balancer.pool_not_restored_because
        if reason is None:  # restored, or the saved pool was empty: nothing lost
            return
        if reason == "missing":
            what = f"has {STATE_FILE} but no {POOL_FILE}"
        elif reason == "pool capacities changed":
            what = (
                f"was saved with other pool capacities (semscale_pool_max_per_class), so its {POOL_FILE} is not "
                "restored"
            )
        else:
            what = f"was saved with other class counts, so its {POOL_FILE} is not restored"
        if balancer.num_refreshes == 0:  # the restored warm-up keeps its schedule
            then = (
                "warm-up goes on as scheduled, but the first measurement sees only the features gathered after the "
                "resume"
            )
        elif balancer.min_pool_features > 0:
            then = (
                f"the checkpoint's class weights stay in force, and the next refresh waits until the pool holds "
                f"{balancer.min_pool_features} features again (as many as the first measurement had)"
            )
        else:
            then = "the checkpoint's class weights stay in force until the next refresh, which sees only new features"
        logger.warning(f"{resume_from_checkpoint} {what}: the feature pool starts empty; {then}")

    def remove_hooks(self) -> None:
        """Removes the feature hook from the model (e.g. before handing the model to other code)."""
        self.capture.close()


def _reload_renamed_weights(model: nn.Module, checkpoint: str) -> bool:
    """Loads the checkpoint's weights again through `from_pretrained` when their names differ from the model's.

    transformers 5.x saves some models (ViT among them) under legacy parameter names and converts them back only in
    `from_pretrained`; `Trainer._load_from_checkpoint` loads the raw state dict with `strict=False`, so on resume the
    renamed layers silently keep their fresh initialisation (seen with transformers 5.24 and 5.25). Remove when
    Trainer's own resume converts the names. Handles one `model.safetensors` and sharded saves (the names are read from
    `model.safetensors.index.json`). Returns whether it reloaded the weights (then every weight is restored).
    """
    if not isinstance(model, PreTrainedModel):
        return False
    path, index = os.path.join(checkpoint, SAFE_WEIGHTS_NAME), os.path.join(checkpoint, SAFE_WEIGHTS_INDEX_NAME)
    if os.path.isfile(path):
        with safe_open(path, framework="pt") as handle:
            saved = set(handle.keys())
    elif os.path.isfile(index):  # a sharded save: its index names every weight
        saved = set(weight_map(index))
    else:
        return False
    if saved == set(model.state_dict()):
        return False
    reloaded = type(model).from_pretrained(checkpoint, dtype=model.dtype)
    missing, unexpected = model.load_state_dict(reloaded.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"could not restore the model weights from {checkpoint}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return True


_NO_LOSS_FUNC = (
    "SemScaleTrainer does not take compute_loss_func: its loss is the class-weighted per-sample base loss, chosen "
    'with SemScaleTrainingArguments(semscale_base_loss="ce" | "focal" | "ldam"). For another loss, subclass '
    "SemScaleTrainer and override compute_loss, or measure scales on a plain Trainer with SemScaleCallback.attach"
)


def _id2label(model: nn.Module) -> list[str] | None:
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    return [str(id2label[i]) for i in range(len(id2label))] if id2label else None


def _num_labels(model: nn.Module | None) -> int:
    return classification_num_labels(model, "SemScaleTrainer")


def _loss_options(args: SemScaleTrainingArguments, class_counts: list[int], device: torch.device) -> dict[str, Any]:
    if args.semscale_base_loss == "focal":
        return {"gamma": args.semscale_focal_gamma}
    if args.semscale_base_loss == "ldam":  # margins depend on the counts only: built once, on the training device
        margins = ldam_margins(class_counts, args.semscale_ldam_max_margin).to(device=device, dtype=torch.float32)
        return {"margins": margins, "scale": args.semscale_ldam_scale}
    return {"label_smoothing": args.label_smoothing_factor} if args.label_smoothing_factor else {}


def _with_loss(loss: torch.Tensor, outputs: Any) -> Any:
    """The model's outputs as `Trainer.prediction_step` reads them: a tuple (`return_dict=False`) leads with the
    loss, since Trainer takes `outputs[1:]` as the logits (the model computed no loss: its labels were popped)."""
    return outputs if isinstance(outputs, dict) else (loss, *outputs)


def _is_count(value: Any) -> bool:
    """A non-negative whole number (also a NumPy or 0-dim torch integer); 12.7 and True are not."""
    try:
        return not isinstance(value, bool) and float(value).is_integer() and float(value) >= 0
    except (TypeError, ValueError):
        return False
