"""Hub pushes of `SemScaleTrainer` that never lose work: `HubPushMixin` and `HubPushError`.

Stock Trainer (transformers 5.24) raises from `create_repo` inside its constructor, and it never looks at the futures
of its in-training uploads (`upload_folder(run_as_future=True)`), so a failed push there goes unnoticed. With this
mixin the constructor fails fast with `HubPushError`; an in-training push that fails logs a warning and training goes
on; the final `push_to_hub()` raises `HubPushError` after `output_dir` is complete on disk. Every push also carries
`semscale_state.safetensors` and the semantic-scale model card.

Stock Trainer also drops the push of a save silently while the previous push still runs (a slow Hub, a large model):
here that save waits in a queue of one (the newest save wins) and is pushed as soon as the running push has finished,
at the latest when training ends, so the Hub always ends up with the newest checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from transformers import TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import HubStrategy
from transformers.utils import logging

from ..core.balancer import STATE_FILE
from ..hub.trainer_card import write_model_card


logger = logging.get_logger(__name__)

__all__ = ["HubPushError", "HubPushMixin"]


class HubPushError(RuntimeError):
    """A push of `SemScaleTrainer` to the Hugging Face Hub failed; the local `output_dir` is complete."""


class HubPushMixin:
    """[`~transformers.Trainer`]'s Hub methods, overridden; mix in first: `class X(HubPushMixin, Trainer)`."""

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Creates (or finds) the Hub repo as [`~transformers.Trainer`] does; raises [`HubPushError`] when it fails.

        `Trainer.__init__` calls it when `push_to_hub=True`, so a wrong token or an unreachable Hub stops the script
        before any training rather than after it.
        """
        try:
            super().init_hf_repo(token=token, private=private)
        except Exception as error:
            repo = self.args.hub_model_id or Path(self.args.output_dir).absolute().name
            # at construction (push_to_hub=True) training can go on without the Hub; afterwards only a retry helps
            then = (
                "or train with push_to_hub=False and call trainer.push_to_hub() afterwards"
                if self.args.push_to_hub and getattr(self, "state", None) is None
                else f"then call trainer.push_to_hub() again: {self.args.output_dir} is complete on disk"
            )
            raise HubPushError(
                f"could not create or reach the Hub repo {repo!r} ({type(error).__name__}: {error}). Check the token "
                f"(`hf auth login`, HF_TOKEN or `hub_token`) and the connection, {then}"
            ) from error
        self.hub_push_failures: list[str] = []
        self._hub_watched: list[tuple[Future, str]] = []
        self._hub_lock = threading.Lock()
        self._queued_push: tuple[str, int, float | None] | None = None  # (checkpoint, global step, epoch)

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
        pass `dataset="org/name"` to get `model-index` results. See [`~semscale_hf.hub.SemScaleCardData`].
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
        # a queued checkpoint push copies that checkpoint's model files into output_dir: run it before the final
        # save writes the current model there (Trainer waits for running pushes only after that save)
        self._finish_current_push()
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
        if getattr(self, "_defer_pushes", False):  # a staged checkpoint: pushed once it is in place
            self._deferred_push = checkpoint_folder
            return
        args = self.args
        if not self.is_world_process_zero() or args.hub_strategy == HubStrategy.END:
            return
        if not args.hub_always_push and not self._push_done():
            # Trainer would drop this push: queue it instead; a newer save replaces an older one still waiting
            if self._queued_push is not None:
                logger.info(f"the push of step {self._queued_push[1]} is superseded by step {self.state.global_step}")
            logger.info(
                f"the Hub push of step {self.state.global_step} waits for the one in progress; it starts when that "
                "one has finished"
            )
            self._queued_push = (checkpoint_folder, self.state.global_step, self.state.epoch)
            return
        self._queued_push = None  # this push is newer than any waiting one
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

    def _maybe_log_save_evaluate(self, *args: Any, **kwargs: Any) -> None:
        super()._maybe_log_save_evaluate(*args, **kwargs)
        if getattr(self, "_queued_push", None) is not None and self._push_done():
            self._start_queued_push()  # after every optimizer step: a check of the futures, no device work

    def _finish_current_push(self) -> None:
        """Waits for the running push, then pushes the save that waited for it (and waits for that one too)."""
        super()._finish_current_push()
        self._collect_push_failures()  # wait() can return before the futures' done-callbacks have run
        if getattr(self, "_queued_push", None) is not None:
            self._start_queued_push()
            super()._finish_current_push()
            self._collect_push_failures()

    def _push_done(self) -> bool:
        return self.push_in_progress is None or self.push_in_progress.is_done()

    def _start_queued_push(self) -> None:
        folder, step, epoch = self._queued_push
        self._queued_push = None
        if not os.path.isdir(folder):  # removed meanwhile (save_total_limit=1 keeps only the best at the end)
            self._record_push_failure(f"step {step}", FileNotFoundError(f"{folder} was removed before its push"))
            return
        # Trainer writes the commit message, and the card its numbers, from the current state: push under the
        # queued save's own
        with self._state_at_checkpoint(folder, step, epoch):
            self._push_from_checkpoint(folder)

    @contextlib.contextmanager
    def _state_at_checkpoint(self, folder: str, step: int, epoch: float | None) -> Iterator[None]:
        """The trainer's state as it was when `folder` was saved, while a push that starts later runs.

        The checkpoint's `trainer_state.json` (its log history), or else the current state at the checkpoint's step
        and epoch.
        """
        current = self.state
        path = os.path.join(folder, TRAINER_STATE_NAME)
        if os.path.isfile(path):
            self.state = TrainerState.load_from_json(path)
        else:
            self.state = copy.copy(current)
            self.state.global_step, self.state.epoch = step, epoch
        try:
            yield
        finally:
            self.state = current

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
