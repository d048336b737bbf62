"""Step-time overhead of `SemScaleTrainer` over a plain `transformers.Trainer`, same ViT, same data, same run.

    python benchmarks/bench_overhead.py                   # ViT hidden 192, 4 layers, 3 epochs, 3 pairs of runs
    python benchmarks/bench_overhead.py --threads 1 --repeats 5 | tee benchmarks/results/bench_overhead_cpu.txt
    python benchmarks/bench_overhead.py --layers 6 --hidden-size 384 --heads 6
    python benchmarks/bench_overhead.py --device cuda --batch-size 128   # GPU timings (synchronised)
    python benchmarks/bench_overhead.py --device cuda --vit-base --bf16 --batch-size 64   # ViT-Base, for a GPU

Goal: at most 5% step-time overhead on CPU for a ViT with hidden size >= 192.

What is measured:

* both trainers train the same randomly initialised ViT (same seed) on the same long-tailed digits subset (images
  resized to `--image-size`, 3 channels) with the same arguments; `SemScaleTrainer` warms up for 1 epoch, then
  trains with semantic-scale weights refreshed after every epoch (`--epochs - 1` weighted epochs, `--epochs`
  refreshes); its pool gets every batch's features from the first step on;
* step time: from `on_step_begin` to `on_step_end` of a callback registered after `SemScaleTrainer`'s own, so it
  covers forward, loss, backward, optimizer step and the refresh with its log (data loading and the regular loss log
  are outside it, and the same for both); the first `--skip-steps` steps of every run are dropped. Both the wall time
  and the process CPU time (all threads) are recorded: on a shared machine the wall time carries whatever the other
  processes take, while the CPU time of a single-threaded run (`--threads 1`) barely moves with the load;
* runs are interleaved A B, B A, A B, ... after one untimed warm-up run of each, so that drift in the machine's load
  hits both alike; the ratio of every pair, and its median and spread over the pairs, are reported;
* host synchronisations per optimizer step (`aten::_local_scalar_dense` calls: `.item()`, `bool(tensor)`, ...) of
  both trainers, counted in one extra untimed run of each (the counting slows every operation down);
* inside the `SemScaleTrainer` runs, the wall and main-thread CPU time of `record_batch` (gather +
  `FeaturePool.add`), of `FeaturePool.add` alone, of `SemScaleBalancer.refresh` (pool read + scales + weights) and of
  the whole refresh callback (with its `Trainer.log`): the overhead that can be attributed, free of the noise of the
  end-to-end ratio. On CUDA every section is synchronised on entry and exit;
* a micro-benchmark, outside training, of the pieces of one pool update and of the weighted loss against
  `F.cross_entropy` (the loss a plain `Trainer` gets from the model), at the training shapes (main-thread CPU time on
  CPU, synchronised wall time on CUDA).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable

import torch
import transformers
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import (
    AutoModelForImageClassification,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    ViTConfig,
)

from semscale_hf import SemScaleTrainer, SemScaleTrainingArguments
from semscale_hf.core._validation import check_labels
from semscale_hf.core.losses import class_weighted_loss
from semscale_hf.core.pool import FeaturePool
from semscale_hf.data import dataset_to_tensors, load_digits_dataset, make_long_tailed
from semscale_hf.training import trainer as trainer_module


GOAL_OVERHEAD = 0.05
LOSS_PLAIN = "F.cross_entropy (what Trainer's model computes)"
LOSS_OURS = "class_weighted_loss (SemScaleTrainer)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SyncCounter(TorchDispatchMode):
    """Counts `aten::_local_scalar_dense`, the op that `.item()`, `bool(tensor)` and `int(tensor)` dispatch to."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


class SyncsPerStep(TrainerCallback):
    """Syncs from each `on_step_begin` to its `on_step_end` (registered last: the refresh is inside)."""

    def __init__(self, counter: SyncCounter) -> None:
        self.counter, self.steps, self._start = counter, [], 0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = self.counter.count

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(self.counter.count - self._start)


class TensorDictDataset(torch.utils.data.Dataset):
    """Pre-transformed images and labels as `{"pixel_values", "labels"}` items (no decoding during training)."""

    def __init__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> None:
        self.pixel_values, self.labels = pixel_values, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixel_values[index], "labels": self.labels[index]}


class StepTimer(TrainerCallback):
    """Wall and process CPU time of every optimizer step, `on_step_begin` to `on_step_end` (register it last)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._start = (0.0, 0.0)

    def on_step_begin(self, args, state, control, **kwargs):
        synchronize(self.device)
        self._start = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])


class Sections:
    """Wraps methods of live objects and records their wall and main-thread CPU time per label."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.wall: dict[str, list[float]] = defaultdict(list)
        self.cpu: dict[str, list[float]] = defaultdict(list)
        self._wrapped: list[tuple[object, str, object]] = []

    def restore(self) -> None:
        """Puts the original methods back (module functions would otherwise stay wrapped for the next run)."""
        for owner, name, original in reversed(self._wrapped):
            setattr(owner, name, original)
        self._wrapped = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)
        self._wrapped.append((owner, name, original))

        def timed(*args, **kwargs):
            synchronize(self.device)  # so that queued forward kernels are not billed to this section
            start_wall, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                synchronize(self.device)
                self.wall[label].append(time.perf_counter() - start_wall)
                self.cpu[label].append(time.thread_time() - start_cpu)

        setattr(owner, name, timed)


def load_data(args: argparse.Namespace) -> tuple[TensorDictDataset, list[int]]:
    train = load_digits_dataset(test_size=0.3, seed=0)["train"]
    train = make_long_tailed(train, imbalance_factor=args.imbalance_factor, max_count=args.max_count, seed=0)
    pixel_values, labels = dataset_to_tensors(train, args.image_size, num_channels=3)
    return TensorDictDataset(pixel_values, labels), torch.bincount(labels, minlength=10).tolist()


def make_model(args: argparse.Namespace):
    torch.manual_seed(args.seed)
    config = ViTConfig(
        image_size=args.image_size,
        patch_size=args.patch_size,
        num_channels=3,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.intermediate_size or 4 * args.hidden_size,
        num_labels=10,
    )
    return AutoModelForImageClassification.from_config(config)


def training_kwargs(args: argparse.Namespace, output_dir: str, **overrides) -> dict:
    kwargs = {
        "output_dir": output_dir,
        "per_device_train_batch_size": args.batch_size,
        "num_train_epochs": args.epochs,
        "learning_rate": 1e-3,
        "lr_scheduler_type": "constant",
        "logging_strategy": "epoch",
        "save_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "use_cpu": args.device == "cpu",
        "seed": args.seed,
        "dataloader_num_workers": 0,
        "bf16": args.bf16,
    }
    kwargs.update(overrides)
    return kwargs


def run_once(
    kind: str,
    args: argparse.Namespace,
    data: TensorDictDataset,
    counts: list[int],
    device: torch.device,
    warmup_steps: int | None = None,
    count_syncs: bool = False,
    **overrides,
) -> dict:
    """Trains one model with `Trainer` (kind "A") or `SemScaleTrainer` (kind "B"); returns timings (or, with
    `count_syncs`, the host syncs of every step and the refresh steps)."""
    output_dir = os.path.join(args.output_dir, kind)
    if kind == "A":
        trainer = Trainer(
            model=make_model(args), args=TrainingArguments(**training_kwargs(args, output_dir, **overrides)),
            train_dataset=data,
        )  # fmt: skip
    else:
        semscale_args = SemScaleTrainingArguments(
            **training_kwargs(args, output_dir, **overrides),
            semscale_weighting="semantic_scale",
            semscale_warmup_epochs=1.0,
            semscale_warmup_steps=warmup_steps,
        )
        trainer = SemScaleTrainer(model=make_model(args), args=semscale_args, train_dataset=data, class_counts=counts)
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)  # no printing inside the timed window
    if count_syncs:
        counter = SyncCounter()
        per_step = SyncsPerStep(counter)
        trainer.add_callback(per_step)
        with counter, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device.type == "cuda":  # CUDA's own count: a warning for every call that synchronises
                torch.cuda.set_sync_debug_mode("warn")
            try:
                trainer.train()
            finally:
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode("default")
        refresh_steps = {e["step"] for e in trainer.state.log_history if "semscale/refreshes" in e}
        cuda_syncs = sum("synchroniz" in str(w.message) for w in caught)
        return {"syncs": per_step.steps, "refresh_steps": refresh_steps, "cuda_syncs": cuda_syncs}
    timer = StepTimer(device)
    trainer.add_callback(timer)  # after SemScaleCallback: the refresh lies inside the timed step
    sections = Sections(device)
    if kind == "B":
        sections.wrap(trainer_module, "record_batch", "record")
        # the class's method: train() starts with a new pool object (a second train() must start with an empty one)
        sections.wrap(FeaturePool, "add", "pool_add")
        sections.wrap(trainer.balancer, "refresh", "refresh")
        sections.wrap(trainer.semscale_callback, "_refresh", "refresh_and_log")
    try:
        trainer.train()
    finally:
        sections.restore()
    result = {"wall": timer.wall, "cpu": timer.cpu, "sections": {"wall": sections.wall, "cpu": sections.cpu}}
    if kind == "B":
        balancer = trainer.balancer
        result["refreshes"] = balancer.num_refreshes
        result["weights"] = balancer.class_weights.clone()
        uniform = torch.allclose(balancer.class_weights, torch.ones(balancer.num_classes, dtype=torch.float64))
        if balancer.stage != "balanced" or uniform:
            raise RuntimeError("SemScaleTrainer never trained with non-uniform weights; check the schedule")
    return result


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def micro_benchmark(args: argparse.Namespace, counts: list[int], device: torch.device, repeats: int = 200) -> dict:
    """Median time of the pieces of one pool update (and of the loss) at the training shapes, outside training."""
    generator = torch.Generator().manual_seed(0)
    batch, dim = args.batch_size, args.hidden_size
    features = torch.randn(batch, dim, generator=generator).to(device)
    labels = torch.randint(0, len(counts), (batch,), generator=generator).to(device)
    logits = torch.randn(batch, len(counts), generator=generator).to(device)
    weights = (torch.rand(len(counts), generator=generator) + 0.5).to(device)
    num_items = torch.tensor(batch, device=device)
    pool = FeaturePool(counts, dim=dim, device=device)
    for _ in range(5):  # fill it past one epoch, as in training
        pool.add(features, labels)

    pieces: dict[str, Callable[[], object]] = {
        "pool.add as in training (validate=False, no sync)": lambda: pool.add(features, labels, validate=False),
        "pool.add with its checks (validate=True, 2 syncs)": lambda: pool.add(features, labels),
        "  check_labels (+ sync)": lambda: check_labels(labels, batch, len(counts)),
        LOSS_PLAIN: lambda: torch.nn.functional.cross_entropy(logits, labels),
        LOSS_OURS: lambda: class_weighted_loss("ce", logits, labels, weights, num_items=num_items, validate=False),
    }
    # CPU time of the calling thread is immune to preemption by other processes; on CUDA only wall time makes sense
    clock = time.thread_time if device.type == "cpu" else time.perf_counter
    out = {}
    for name, fn in pieces.items():
        for _ in range(10):
            fn()
        times = []
        for _ in range(repeats):
            synchronize(device)
            start = clock()
            fn()
            synchronize(device)
            times.append(clock() - start)
        out[name] = statistics.median(times)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden-size", type=int, default=192)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--intermediate-size", type=int, default=None, help="default: 4 x hidden size")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3, help="1 of warm-up, then weighted; a refresh after each")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-count", type=int, default=48, help="training images of the head class")
    parser.add_argument("--imbalance-factor", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (Trainer, SemScaleTrainer)")
    parser.add_argument("--skip-steps", type=int, default=2, help="first steps of every run left out of the stats")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's); 1 is steadiest"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="/tmp/bench_overhead")
    parser.add_argument(
        "--vit-base",
        action="store_true",
        help="ViT-Base/16 shape (hidden 768, 12 layers, 12 heads, image 224, patch 16); meant for a GPU",
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (TrainingArguments.bf16)")
    args = parser.parse_args(argv)
    if args.vit_base:
        args.hidden_size, args.layers, args.heads, args.image_size, args.patch_size = 768, 12, 12, 224, 16
    if args.hidden_size % args.heads:
        parser.error(f"--hidden-size {args.hidden_size} must be a multiple of --heads {args.heads}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data, counts = load_data(args)
    steps_per_epoch = -(-len(data) // args.batch_size)
    processor = platform.processor() or platform.machine()
    if device.type == "cuda":
        processor = torch.cuda.get_device_name(device)
    print(f"# bench_overhead: Trainer (A) vs SemScaleTrainer (B), device {device.type}\n")
    print(f"`python benchmarks/bench_overhead.py {' '.join(sys.argv[1:] if argv is None else argv)}`  ")
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {processor}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}, load average at start {os.getloadavg()[0]:.1f}  "
    )
    print(
        f"ViT: image {args.image_size}, patch {args.patch_size}, hidden {args.hidden_size}, layers {args.layers}, "
        f"heads {args.heads}, intermediate {args.intermediate_size or 4 * args.hidden_size}, 10 labels; "
        f"long-tailed digits, {len(data)} images, counts {counts}  "
    )
    print(
        f"batch {args.batch_size}, {steps_per_epoch} steps/epoch, {args.epochs} epochs (B: 1 warm-up epoch, then "
        f"weighted, refresh after every epoch), first {args.skip_steps} steps of each run dropped, "
        f"{args.repeats} pairs of runs\n"
    )

    # untimed warm-up of both code paths (lazy imports, allocator, BLAS threads), refresh included
    for kind in ("A", "B"):
        run_once(kind, args, data, counts, device, max_steps=3, warmup_steps=1)
    rows = []
    for repeat in range(args.repeats):
        order = ("A", "B") if repeat % 2 == 0 else ("B", "A")
        results = {kind: run_once(kind, args, data, counts, device) for kind in order}
        rows.append((order, results))

    def mean_step(run: dict, clock: str) -> float:
        return statistics.fmean(run[clock][args.skip_steps :])

    # host syncs per optimizer step, from one extra run of each with a counting dispatch mode (untimed)
    syncs = {kind: run_once(kind, args, data, counts, device, count_syncs=True) for kind in ("A", "B")}
    refresh_steps = syncs["B"]["refresh_steps"]
    ordinary = [i for i in range(len(syncs["B"]["syncs"])) if i + 1 not in refresh_steps]
    print("host syncs per optimizer step (`aten::_local_scalar_dense`: `.item()`, `bool(tensor)`, ...):\n")
    print("| trainer | ordinary steps (median, max) | refresh steps (median) |")
    print("|---|---:|---:|")
    for kind, name in (("A", "Trainer"), ("B", "SemScaleTrainer")):
        per_step = syncs[kind]["syncs"]
        plain = [per_step[i] for i in ordinary]
        at_refresh = [per_step[step - 1] for step in refresh_steps if step - 1 < len(per_step)]
        refresh_cell = f"{statistics.median(at_refresh):g}" if at_refresh else "-"
        print(f"| {name} | {statistics.median(plain):g}, {max(plain)} | {refresh_cell} |")
    if device.type == "cuda":
        steps_run = len(syncs["A"]["syncs"])
        print(
            f'\n`torch.cuda.set_sync_debug_mode("warn")` over the whole run ({steps_run} steps, '
            f"{len(refresh_steps)} refreshes): Trainer {syncs['A']['cuda_syncs']} warnings, SemScaleTrainer "
            f"{syncs['B']['cuda_syncs']}"
        )
    print()

    print(
        "| pair | order | A wall (ms/step) | B wall (ms/step) | B/A wall | A CPU (ms/step) | B CPU (ms/step) "
        "| B/A CPU |"
    )
    print("|---:|:---:|---:|---:|---:|---:|---:|---:|")
    ratios: dict[str, list[float]] = {"wall": [], "cpu": [], "wall_median": []}
    base_cpu, base_wall = [], []
    for pair, (order, results) in enumerate(rows, 1):
        a, b = results["A"], results["B"]
        cells = []
        for clock in ("wall", "cpu"):
            mean_a, mean_b = mean_step(a, clock), mean_step(b, clock)
            ratios[clock].append(mean_b / mean_a)
            cells.append(f"{1e3 * mean_a:.1f} | {1e3 * mean_b:.1f} | {mean_b / mean_a:.3f}")
        base_wall.append(mean_step(a, "wall"))
        base_cpu.append(mean_step(a, "cpu"))
        skip = args.skip_steps
        ratios["wall_median"].append(statistics.median(b["wall"][skip:]) / statistics.median(a["wall"][skip:]))
        print(f"| {pair} | {''.join(order)} | {' | '.join(cells)} |")
    print(f"\nB/A step time (mean step, refreshes included), over {args.repeats} pairs:\n")
    print(f"- wall time: {spread(ratios['wall'])}")
    print(f"- process CPU time (all threads): {spread(ratios['cpu'])}")
    print(
        f"- wall time of the median step (per-step path, refresh steps are outliers): {spread(ratios['wall_median'])}"
    )

    # where the extra time goes, from the instrumented SemScaleTrainer runs (medians over the pairs)
    base = statistics.median(base_cpu)
    b_runs = [results["B"] for _, results in rows]
    steps = len(b_runs[0]["wall"])
    refreshes = b_runs[0]["refreshes"]

    def per_call(label: str, clock: str) -> float:
        return statistics.median(statistics.median(run["sections"][clock][label]) for run in b_runs)

    def per_run(label: str, clock: str) -> float:
        return statistics.median(sum(run["sections"][clock][label]) for run in b_runs)

    print(
        f"\nwhere B's extra time goes (medians over the pairs; A's mean step: {1e3 * base:.1f} ms CPU, "
        f"{1e3 * statistics.median(base_wall):.1f} ms wall):\n"
    )
    print(
        "| section | calls per run | wall per call (ms) | CPU per call (ms) | CPU per step (ms) | % of A's CPU step |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    attributed = 0.0
    for label, text, calls in (
        ("record", "per-step pool update: `record_batch` (gather + `pool.add`)", steps),
        ("pool_add", "  of which `FeaturePool.add`", steps),
        ("refresh", "refresh: `SemScaleBalancer.refresh` (pool read + scales + weights)", refreshes),
        ("refresh_and_log", "refresh with sync and `Trainer.log` (the callback)", refreshes),
    ):
        if label in ("record", "pool_add"):
            wall, cpu = per_call(label, "wall"), per_call(label, "cpu")
        else:
            wall, cpu = per_run(label, "wall") / calls, per_run(label, "cpu") / calls
        cpu_per_step = cpu * calls / steps
        if label in ("record", "refresh_and_log"):
            attributed += cpu_per_step
        print(
            f"| {text} | {calls} | {1e3 * wall:.3f} | {1e3 * cpu:.3f} | {1e3 * cpu_per_step:.3f} | "
            f"{100 * cpu_per_step / base:.2f} |"
        )
    print(f"| attributed total (pool update + refresh callback) | | | | {1e3 * attributed:.3f} | "
          f"{100 * attributed / base:.2f} |")  # fmt: skip
    weights = b_runs[0]["weights"]
    print(
        f"\nB's final class weights (pair 1): min {float(weights.min()):.3f}, max {float(weights.max()):.3f} "
        f"after {refreshes} refreshes"
    )

    micro = micro_benchmark(args, counts, device)
    clock_name = "main-thread CPU time" if device.type == "cpu" else "wall time"
    print(f"\nmicro-benchmark, outside training, at the training shapes (batch {args.batch_size}, dim "
          f"{args.hidden_size}), median {clock_name}:\n")  # fmt: skip
    print("| piece | time (us) |")
    print("|---|---:|")
    for name, seconds in micro.items():
        print(f"| {name} | {1e6 * seconds:.1f} |")

    print()
    for clock, label in (("cpu", "process CPU time"), ("wall", "wall time")):
        overhead = statistics.median(ratios[clock]) - 1
        verdict = "met" if overhead <= GOAL_OVERHEAD else "NOT met"
        print(f"goal <= {100 * GOAL_OVERHEAD:.0f}% overhead ({label}): {verdict}, median {100 * overhead:+.1f}%  ")
    loss_extra = micro[LOSS_OURS] - micro[LOSS_PLAIN]
    print(
        f"attributed: pool update + refresh {100 * attributed / base:.2f}% of A's CPU step, plus "
        f"{100 * loss_extra / base:.2f}% for the weighted loss's forward (micro-benchmark): "
        f"{100 * (attributed + loss_extra) / base:.2f}% in all  "
    )
    print(
        f"load average at end {os.getloadavg()[0]:.1f}; wall time of the benchmark "
        f"{time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
