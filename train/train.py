"""Train an image classifier with PopTorch semantics on IPU, CUDA or CPU; see train/README.md."""

import argparse
import contextlib
import os
import random
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from cnns import datasets
from cnns.datasets.seeding import AugmentationRNG
from cnns.train.arguments import loss_scaling_steps, parse_arguments
from cnns.train.augmentations import CoefficientSampler
from cnns.train.checkpoint import (check_space_for, checkpoint_name, claim_folder, list_checkpoints, plain, rng_state,
                              save_checkpoint, set_rng_state)
from cnns.train import elastic
from cnns.train.data_state import augmentation_state, load_augmentation_state
from cnns.train.fine_tune import fine_tune_args
from cnns.train.losses import TrainingModelWithLoss
from cnns.train.lr_schedule import schedule_from_args
from cnns.train.optimizers import get_optimizer, set_learning_rate, set_loss_scaling
from cnns.train.recompute_setup import apply_recomputation
from cnns.train.train_options import training_options
from cnns.train.training_log import TrainingLog, start_wandb
from cnns.train.validate import model_from_checkpoint, run_validation_steps, train_input_size
from cnns.train.value_checks import check_training_data, check_training_fits
from cnns.utils import distributed, gc_settle
from cnns.utils.backend import Backend, select_backend
from cnns.utils.backend_report import BackendRecord, report_backend
from cnns.utils.executor_report import executor_report, log_compiled
from cnns.utils.errors import Stopped, UsageError, exit_on_usage_error, on_failure
from cnns.utils.ipu_settings import num_stages
from cnns.utils.logger import RunLogger
from cnns.utils.profiling import torch_trace, trace_path
from cnns.utils.model_setup import for_executor, input_preprocessing, prepare_model


def resolve_seed(args: argparse.Namespace, info: distributed.InstanceInfo) -> None:
    """--seed unset: instance 0 draws a random seed and every instance uses it, as the original."""
    if args.seed is not None:
        return
    drawn = random.SystemRandom().randint(0, 2 ** 32 - 1) if info.rank == 0 else 0
    args.seed = int(distributed.sum_all([float(drawn)])[0])


def detach(training_model: Any) -> None:
    """Release the device; PopTorch refuses to detach a model that is not attached."""
    if training_model.isAttachedToDevice():
        training_model.detachFromDevice()


@contextlib.contextmanager
def preserved_rngs() -> Iterator[None]:
    """Python's, NumPy's and torch's global random states restored on exit."""
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def num_classes_of(args: argparse.Namespace, train_data: Any) -> int:
    """Classes of an image folder (ImageNet layout), else the data mode's fixed count."""
    classes = getattr(getattr(train_data, "dataset", None), "classes", None)
    if args.data == "imagenet" and classes:
        return len(classes)
    return datasets.DATASETS_INFO[args.data]["num_classes"]


class Run:
    """One training run: everything built from the options, then the epoch loop.

    The fine-tuning phase after --half-res-training is a second Run with its own options, sharing the
    parent's log folder and files (``parent``); its epochs are numbered after the parent's.
    """

    def __init__(self, args: argparse.Namespace, resume: Optional[Dict[str, Any]] = None,
                 parent: Optional["Run"] = None, fine_tune_checkpoint: str = "") -> None:
        self.args = args
        self.parent = parent
        if parent is None:
            self.info = distributed.instance_info()
            self.folder_lock, stale = (claim_folder(args.checkpoint_path)
                                       if args.checkpoint_path and self.info.rank == 0 else (None, 0))
            if self.folder_lock is not None:
                on_failure(lambda _: self.folder_lock.release())
            self.backend: Backend = select_backend(args.device, args.half_dtype)
            distributed.init_process_group(self.info, self.backend.device, args.collective_timeout, num_stages(args))
            drawn = args.seed is None
            resolve_seed(args, self.info)
            folder = os.path.abspath(args.checkpoint_path) if args.checkpoint_path else None
            self.logger = RunLogger(args, self.info, folder=folder)
            if drawn:
                self.logger.log(f"Random seed {args.seed} (drawn by instance 0, used by every instance).")
        else:
            self.info, self.backend, self.logger = parent.info, parent.backend, parent.logger
            self.folder_lock, stale = None, 0
        self.log = self.logger.log
        if stale:
            self.log(f"Removed {stale} temporary file(s) an interrupted run left in {args.checkpoint_path}.")
        self.last_checkpoint: Optional[str] = None
        for note in getattr(args, "notes", []):
            self.logger.once(note)
        self.epoch_offset = parent.args.epoch if parent is not None else 0
        self.total_epochs = args.epoch + self.epoch_offset + (args.fine_tune_epoch if args.half_res_training else 0)
        seed_everything(args.seed)
        poptorch = self.backend.poptorch
        self.opts = training_options(args, self.backend, self.info,
                                     report_dir=self.logger.path if self.info.rank == 0 else None)
        self.augmentation = AugmentationRNG(args.seed, datasets.instance_of(self.opts)[0])
        self.train_data = datasets.get_data(
            args, self.opts, poptorch, train=True, input_size=train_input_size(args),
            half_dtype=self.backend.half_dtype, batches=args.iterations, async_dataloader=args.dataloader_worker > 0,
            augment=parent is None, preprocessing=input_preprocessing(args), crop_scale=args.train_crop_scale,
            rng=self.augmentation)
        self.steps_per_epoch = len(self.train_data)
        if self.steps_per_epoch == 0:
            raise UsageError(f"The training set holds fewer samples than one host batch "
                             f"({self.opts_batch()} = batch size x device iterations x replicas x gradient "
                             f"accumulation); lower --batch-size or --gradient-accumulation.")
        self.num_classes = num_classes_of(args, self.train_data)
        if resume and int(resume["num_classes"]) != self.num_classes:
            raise UsageError(f"Checkpoint {args.resumed_from!r} was trained on {resume['num_classes']} classes but the "
                             f"training data has {self.num_classes}; give the dataset it was trained on.")
        if resume:
            self.model = model_from_checkpoint(resume, args, self.backend, args.resumed_from, self.log)
        elif fine_tune_checkpoint:
            from cnns.train.checkpoint import load_checkpoint
            from cnns.train.fine_tune import freeze_before
            self.model = model_from_checkpoint(load_checkpoint(fine_tune_checkpoint), args, self.backend,
                                               fine_tune_checkpoint, self.log)
            frozen = freeze_before(self.model, args.model, args.fine_tune_first_trainable_layer)
            self.log(f"Fine-tuning from {os.path.basename(fine_tune_checkpoint)}: {frozen} parameters frozen before "
                     f"{args.fine_tune_first_trainable_layer}.")
        else:
            self.model = prepare_model(args, self.backend, self.num_classes, self.log, pretrained=False)
        marks = apply_recomputation(self.model, args, poptorch.recomputationCheckpoint)
        if marks:
            self.log(f"Recomputation checkpoints on {len(marks)} module outputs: {', '.join(marks[:6])}"
                     f"{', ...' if len(marks) > 6 else ''}")
        wrapped = TrainingModelWithLoss(for_executor(self.model, args, self.backend), self.num_classes, args.label_smoothing, args.mixup_enabled,
                                        args.cutmix_enabled, identity_loss=poptorch.identity_loss, sublosses=True)
        self.optimizer = get_optimizer(args, self.model, poptorch.optim, float32_master=self.float32_master())
        if self.folder_lock is not None:
            check_space_for(args.checkpoint_path, sum(t.numel() * t.element_size()
                                                      for t in self.model.state_dict().values()))
        self.sampler = CoefficientSampler(args, seed=args.seed + self.info.rank)
        self.training_executor: Optional[str] = None
        self.schedule = schedule_from_args(args, self.steps_per_epoch)
        self.loss_scaling = loss_scaling_steps(args)
        self.start_epoch = 1
        if resume:
            self._resume(resume)
        self.training_model = poptorch.trainingModel(wrapped, self.opts, self.optimizer)
        if parent is not None:
            self.history = parent.history
        else:
            wandb_run = start_wandb(args, self.logger.path) if args.wandb and self.info.rank == 0 else None
            self.history = (TrainingLog(self.logger.path, wandb_run, append=resume is not None)
                            if self.info.rank == 0 else None)
        self.epoch_results: List[Dict[str, Any]] = []

    def float32_master(self) -> bool:
        """Off IPU there is no stochastic rounding to keep small updates of half weights, so a 16.16 model
        gets float32 master weights in the optimiser (its weights and compute stay half)."""
        half_model = self.args.precision == "16.16" and self.backend.half_dtype != torch.float32
        return self.backend.is_portable and half_model

    def opts_batch(self) -> int:
        a = self.args
        return a.batch_size * a.device_iterations * a.replicas * a.gradient_accumulation

    def _resume(self, ckpt: Dict[str, Any]) -> None:
        resolved = ckpt.get("training_executor")
        if self.backend.is_portable and self.args.executor == "auto" and resolved in ("eager", "inductor"):
            self.opts.Portable.executor(resolved)  # the run continues with the numerics it started with
        states = ckpt.get("instance_states")
        if states and len(states) == self.info.size:
            ckpt = {**ckpt, **states[self.info.rank]}
        restorers = (("optimizer_state_dict", self.optimizer.load_state_dict),
                     ("augmentation_rng", self.sampler.load_state_dict), ("rng_state", set_rng_state),
                     ("data_augmentation_rng", lambda state: load_augmentation_state(self.augmentation, state)))
        for field, restore in restorers:
            if field not in ckpt:
                continue
            try:
                restore(ckpt[field])
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
                raise UsageError(f"Checkpoint {self.args.resumed_from!r} has a {field!r} that does not fit this run "
                                 f"({type(error).__name__}: {str(error)[:120]}).") from None
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.log(f"Resuming training at epoch {self.start_epoch}/{self.args.epoch}.")

    # ------------------------------------------------------------------ reporting
    def report_backend(self) -> BackendRecord:
        self.record = report_backend(self.args, self.opts, self.backend, self.logger)
        return self.record

    # ------------------------------------------------------------------ training
    def inputs(self, images: torch.Tensor, labels: torch.Tensor) -> tuple:
        return (images, labels, *self.sampler.sample(labels.shape[0]))

    def profile_one_step(self) -> Dict[str, Any]:
        """--profile: one training call under torch.profiler (portable) or with Poplar's report, which the
        engine options asked for before compilation."""
        images, labels = next(iter(self.train_data))
        if not self.backend.is_portable:
            self.training_model(*self.inputs(images, labels))
            return {"profile": self.logger.path}
        self.training_model.compile(*self.inputs(images, labels))
        with torch_trace(self.backend.device, self.logger.path):
            self.training_model(*self.inputs(images, labels))
        path = trace_path(self.logger.path)
        self.log(f"Profile of one training step written to {path}; --profile was set, exiting.")
        return {"profile": path}

    def compile(self) -> Dict[str, Any]:
        """Compile with the first batch before training, as PopTorch does, so epoch figures exclude it.
        Drawing that batch (loader shuffling, augmentation) leaves every RNG as it was, so a run restored
        from a checkpoint continues exactly as an uninterrupted one."""
        augmentation, coefficients = augmentation_state(self.augmentation), self.sampler.state_dict()
        with preserved_rngs():
            images, labels = next(iter(self.train_data))
            start = time.perf_counter()
            self.training_model.compile(*self.inputs(images, labels))
        load_augmentation_state(self.augmentation, augmentation)
        self.sampler.load_state_dict(coefficients)
        seconds = time.perf_counter() - start
        report = executor_report(self.training_model, self.backend, seconds)
        self.training_executor = report["executor"]
        log_compiled(report, seconds, self.log, self.logger.once)
        return {"executor": report["executor"], "executor_reason": report["reason"],
                "executor_trials": report["trials"], "compile_s": round(seconds, 3)}

    def compile_only(self) -> Dict[str, Any]:
        compiled = self.compile()
        self.log(f"Graph compilation complete in {compiled['compile_s']:.2f} s, --compile-only was set, exiting.")
        return {"compiled": True, **compiled}

    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        """Epoch ``epoch`` of this phase (its schedule's count); logs and checkpoints number it after the
        previous phase's epochs."""
        args = self.args
        shown = epoch + self.epoch_offset
        self.log(f"Epoch {shown}/{self.total_epochs}")
        epoch_sampler = getattr(self.train_data, "sampler", None)
        if hasattr(epoch_sampler, "set_epoch"):
            epoch_sampler.set_epoch(epoch - 1)
        set_loss_scaling(self.optimizer, args, self.loss_scaling[epoch - 1])
        self.training_model.setOptimizer(self.optimizer)
        log_every = max(1, self.steps_per_epoch // args.logs_per_epoch)
        # Outputs are summed over the call's micro-batches (outputMode Sum, as the original): loss,
        # accuracy, classification and smoothing loss per replica, divided by the micro-batch count.
        per_call = args.device_iterations * args.gradient_accumulation
        totals = np.zeros(5)
        window = np.zeros(5)
        images = 0
        bar = tqdm(self.train_data, total=self.steps_per_epoch, disable=self.info.rank != 0, mininterval=1.0)
        start = time.perf_counter()
        for step, (x, y) in enumerate(bar):
            progress = epoch - 1 + (step + 1) / self.steps_per_epoch
            if set_learning_rate(self.optimizer, self.schedule.lr_at(progress)):
                self.training_model.setOptimizer(self.optimizer)
            accuracy, classification, smoothing, loss = self.training_model(*self.inputs(x, y))
            point = np.array([loss.float().mean().item() / per_call, 100.0 * accuracy.float().mean().item() / per_call,
                              classification.float().mean().item() / per_call,
                              smoothing.float().mean().item() / per_call, 1.0])
            totals += point
            window += point
            images += y.shape[0]
            bar.set_description(f"Loss:{totals[0] / totals[-1]:0.4f} | Accuracy:{totals[1] / totals[-1]:0.2f}%")
            if (step + 1) % log_every == 0 and step + 1 < self.steps_per_epoch:
                self.log_point(progress + self.epoch_offset, window, totals, images, time.perf_counter() - start, None)
                window[:] = 0
        bar.close()
        elapsed = time.perf_counter() - start
        loss_sum, acc_sum, _, _, count = distributed.sum_all(totals.tolist())
        all_images = distributed.sum_all([float(images)])[0]
        slowest = distributed.max_all([elapsed])[0]
        result = {"epoch": shown, "loss": loss_sum / count, "accuracy": acc_sum / count,
                  "throughput": all_images / slowest, "images": all_images, "seconds": slowest}
        if self.info.distributed:
            result["instance_throughputs"] = distributed.gather_objects(images / elapsed)
        self.log(f"Epoch {shown}: Train accuracy is {result['accuracy']:0.2f}%")
        self.log(f"Throughput of the epoch:{result['throughput']:0.1f} img/sec")
        result["validation_accuracy"] = self.validate_if_due(epoch)
        self.log_point(float(shown), window, totals, images, elapsed, result["validation_accuracy"],
                       throughput=result["throughput"])
        if self.history is not None:
            self.history.end_epoch(shown, result["loss"], result["accuracy"], result["validation_accuracy"])
        self.save(shown, result)
        return result

    def log_point(self, progress: float, window: np.ndarray, totals: np.ndarray, images: int, elapsed: float,
                  validation: Optional[float], throughput: Optional[float] = None) -> None:
        """One training.csv row with the original's columns: *_batch since the last log point, *_avg since
        the start of the epoch; iteration = epoch progress x steps per epoch x instances."""
        if self.history is None or window[-1] == 0:
            return
        latency = self.training_model.getLatency()
        batch, avg = window[:-1] / window[-1], totals[:-1] / totals[-1]
        self.history.log_point({
            "loss_avg": avg[0], "loss_batch": batch[0], "epoch": progress,
            "iteration": progress * self.steps_per_epoch * max(1, self.info.size),
            "train_accuracy_avg": avg[1], "train_accuracy_batch": batch[1],
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            "loss_scaling": float(getattr(self.optimizer, "loss_scaling", 1.0)),
            "train_img_per_sec": throughput if throughput is not None else images * max(1, self.info.size) / elapsed,
            "validation_accuracy": validation, "classification_loss_batch": batch[2],
            "classification_loss_avg": avg[2], "smoothing_loss_batch:": batch[3], "smoothing_loss_avg:": avg[3],
            "latency_ms": latency[2] * 1e3})
        if self.args.wandb_weight_histogram:
            self.history.log_histograms(self.model)

    def validate_if_due(self, epoch: int) -> Optional[float]:
        args = self.args
        due = args.validation_mode == "during" and (epoch % args.validation_frequency == 0 or epoch == args.epoch)
        return self.validate(epoch + self.epoch_offset) if due else None

    def validate(self, epoch: int) -> Optional[float]:
        """Validation runs in instance 0 only, as the original, with the training model detached from
        its device first and attached again afterwards."""
        if self.info.rank != 0:
            return None
        detach(self.training_model)
        try:
            acc, steps = run_validation_steps(self.model, self.args, self.backend, self.log)
        finally:
            self.training_model.attachToDevice()
        if self.history is not None:
            self.history.log_validation(epoch, epoch * steps, acc)
        return acc

    def instance_state(self) -> Dict[str, Any]:
        """What differs between instances and a resumed run needs: their RNG streams."""
        return {"augmentation_rng": self.sampler.state_dict(), "rng_state": rng_state(),
                "data_augmentation_rng": augmentation_state(self.augmentation)}

    def save(self, epoch: int, result: Dict[str, Any]) -> Optional[str]:
        args = self.args
        if not args.checkpoint_path:
            return None
        states = distributed.gather_objects(self.instance_state()) if self.info.distributed else None
        if self.info.rank != 0:
            return None
        payload = {
            "epoch": epoch, "model": args.model, "data": args.data, "num_classes": self.num_classes,
            "model_state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer_state_dict": self.optimizer.state_dict(),
            "lr_schedule": self.schedule.state_dict(), "loss_scaling": float(getattr(self.optimizer, "loss_scaling", 1.0)),
            "augmentation_rng": self.sampler.state_dict(), "rng_state": rng_state(),
            "training_executor": self.training_executor,
            "data_augmentation_rng": augmentation_state(self.augmentation),
            "loss": result["loss"], "train_accuracy": result["accuracy"],
            "validation_accuracy": result["validation_accuracy"], "args": plain(vars(args)),
            "launch_id": elastic.launch_id(), "instance_states": states,
        }
        self.last_checkpoint = save_checkpoint(args.checkpoint_path, checkpoint_name(args.model, args.data, epoch),
                                               payload)
        elastic.record(args.checkpoint_path, self.last_checkpoint)
        return self.last_checkpoint

    def after_training(self) -> Dict[str, Any]:
        """As the original: weight averaging, then fine-tuning (--half-res-training), then validation
        (--validation-mode after: every checkpoint of --checkpoint-path, else the final model)."""
        args = self.args
        out: Dict[str, Any] = {}
        averaged = ""
        if args.weight_avg_strategy != "none":
            averaged = self.average_weights()
            out["weight_avg_checkpoint"] = averaged
        final = self
        if args.half_res_training:
            detach(self.training_model)
            final = Run(fine_tune_args(args), parent=self, fine_tune_checkpoint=averaged)
            out["fine_tune"] = final.train_phase()
        if self.info.rank != 0:
            return out
        if args.validation_mode == "after":
            detach(final.training_model)
            if args.checkpoint_path:
                out["validation"] = self.validate_checkpoints(list_checkpoints(args.checkpoint_path))
            else:
                out["validation_accuracy"] = final.validate(final.epoch_offset + final.args.epoch)
        if averaged and args.validation_mode != "none":
            out["weight_avg_validation_accuracy"] = self.validate_checkpoints([averaged])[averaged]
        return out

    def average_weights(self) -> str:
        """Instance 0 averages the checkpoints; the others wait for the file (fine-tuning reads it)."""
        args = self.args
        path = os.path.join(args.checkpoint_path, checkpoint_name(args.model, args.data, args.epoch)[:-len(".pt")]
                            + f"_{args.weight_avg_strategy}_avg.pt")
        if self.info.rank == 0:
            from cnns.train.weight_avg import average_checkpoints
            path = average_checkpoints(args.checkpoint_path, args.weight_avg_strategy, args.weight_avg_exp_decay,
                                       args.weight_avg_N, self.log)
        distributed.barrier()
        return path

    def validate_checkpoints(self, files: List[str]) -> Dict[str, float]:
        """Validate checkpoint files one by one, a validation.csv row each."""
        from cnns.train.checkpoint import load_checkpoint
        results: Dict[str, float] = {}
        for file in files:
            ckpt = load_checkpoint(file)
            model = model_from_checkpoint(ckpt, self.args, self.backend, file, self.log)
            acc, steps = run_validation_steps(model, self.args, self.backend, self.log)
            if self.history is not None:
                self.history.log_validation(int(ckpt["epoch"]), int(ckpt["epoch"]) * steps, acc)
            results[file] = acc
        return results

    def train_phase(self) -> List[Dict[str, Any]]:
        """The epochs of this phase (the fine-tuning one), its results per epoch."""
        for epoch in range(1, self.args.epoch + 1):
            self.epoch_results.append(self.train_epoch(epoch))
        detach(self.training_model)
        return self.epoch_results

    def run(self) -> Dict[str, Any]:
        record = self.report_backend()
        self.say_portable_messages()
        if self.args.compile_only:
            return self.finish(self.compile_only(), record)
        if self.args.profile:
            return self.finish(self.profile_one_step(), record)
        compiled = self.compile()
        settled = gc_settle.settle()
        self.logger.once(settled.pop("note"))
        compiled.update(settled)
        for epoch in range(self.start_epoch, self.args.epoch + 1):
            try:
                self.epoch_results.append(self.train_epoch(epoch))
            except (Stopped, KeyboardInterrupt):
                self.log(f"Stopped during epoch {epoch}/{self.args.epoch}; the last complete checkpoint is "
                         f"{self.last_checkpoint or 'none (no epoch finished)'}.")
                raise
        self.say_portable_messages()
        return self.finish({**compiled, **self.after_training()}, record)

    def say_portable_messages(self) -> None:
        if self.backend.is_portable:
            for message in self.training_model.portableMessages():
                self.logger.once(message)

    def finish(self, extra: Dict[str, Any], record: BackendRecord) -> Dict[str, Any]:
        results = {**record.results_fields(self.args, self.backend, self.info.size),
                   "gradient_accumulation": self.args.gradient_accumulation, "epochs": self.epoch_results,
                   "log_folder": self.logger.path, **extra}
        self.logger.write_results(results)
        if self.history is not None:
            self.history.close()
        if self.folder_lock is not None:
            self.folder_lock.release()
        detach(self.training_model)
        self.logger.close()
        distributed.shutdown()
        return results


def run_training(args: argparse.Namespace, resume: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return Run(args, resume).run()


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_arguments(argv)
    check_training_fits(args)
    check_training_data(args)
    found = elastic.checkpoint_to_resume(args.checkpoint_path)
    if found is None:
        return run_training(args)
    args.resumed_from, ckpt = found
    return run_training(args, resume=ckpt)


def cli() -> None:
    """The ``cnns-train`` command: main's return value is for callers, not the exit status."""
    main()


if __name__ == "__main__":
    cli()
