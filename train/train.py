"""Train an image classifier with PopTorch semantics on IPU, CUDA or CPU; see train/README.md."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import os
import random
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

import datasets
from train.arguments import loss_scaling_steps, parse_arguments
from train.augmentations import CoefficientSampler
from train.checkpoint import checkpoint_name, plain, rng_state, save_checkpoint, set_rng_state
from train import elastic
from train.data_state import augmentation_state, load_augmentation_state, set_crop_scale
from train.losses import TrainingModelWithLoss
from train.lr_schedule import schedule_from_args
from train.optimizers import get_optimizer, set_learning_rate, set_loss_scaling
from train.recompute_setup import apply_recomputation
from train.train_options import training_options
from train.training_log import TrainingLog, start_wandb
from train.validate import model_from_checkpoint, run_validation, train_input_size
from utils import distributed
from utils.backend import Backend, select_backend
from utils.backend_report import report_backend
from utils.errors import UsageError, exit_on_usage_error
from utils.ipu_settings import num_stages
from utils.logger import RunLogger
from utils.model_setup import prepare_model


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
    """One training run: everything built from the options, then the epoch loop."""

    def __init__(self, args: argparse.Namespace, resume: Optional[Dict[str, Any]] = None) -> None:
        self.args = args
        self.info = distributed.instance_info()
        self.backend: Backend = select_backend(args.device, args.half_dtype)
        distributed.init_process_group(self.info, self.backend.device, args.collective_timeout)
        self.logger = RunLogger(args, self.info)
        self.log = self.logger.log
        for note in getattr(args, "notes", []):
            self.logger.once(note)
        seed_everything(args.seed)
        poptorch = self.backend.poptorch
        self.opts = training_options(args, self.backend, self.info)
        self.train_data = datasets.get_data(
            args, self.opts, poptorch, train=True, input_size=train_input_size(args),
            half_dtype=self.backend.half_dtype, batches=args.iterations, async_dataloader=args.dataloader_worker > 0)
        if list(args.train_crop_scale) != [0.08, 1.0] and not set_crop_scale(self.train_data, args.train_crop_scale):
            self.logger.once(f"--train-crop-scale has no effect with --data {args.data} (no random-resized crop).")
        self.steps_per_epoch = len(self.train_data)
        if self.steps_per_epoch == 0:
            raise UsageError(f"The training set holds fewer samples than one host batch "
                             f"({self.opts_batch()} = batch size x device iterations x replicas x gradient "
                             f"accumulation); lower --batch-size or --gradient-accumulation.")
        self.num_classes = int(resume["num_classes"]) if resume else num_classes_of(args, self.train_data)
        if resume:
            self.model = model_from_checkpoint(resume, args, self.backend, args.resumed_from, self.log)
        else:
            self.model = prepare_model(args, self.backend, self.num_classes, self.log, pretrained=False)
        marks = apply_recomputation(self.model, args, poptorch.recomputationCheckpoint)
        if marks:
            self.log(f"Recomputation checkpoints on {len(marks)} module outputs: {', '.join(marks[:6])}"
                     f"{', ...' if len(marks) > 6 else ''}")
        wrapped = TrainingModelWithLoss(self.model, self.num_classes, args.label_smoothing, args.mixup_enabled,
                                        args.cutmix_enabled, identity_loss=poptorch.identity_loss)
        self.optimizer = get_optimizer(args, self.model, poptorch.optim, float32_master=self.float32_master())
        self.sampler = CoefficientSampler(args, seed=args.seed + self.info.rank)
        self.schedule = schedule_from_args(args, self.steps_per_epoch)
        self.loss_scaling = loss_scaling_steps(args)
        self.start_epoch = 1
        if resume:
            self._resume(resume)
        self.training_model = poptorch.trainingModel(wrapped, self.opts, self.optimizer)
        wandb_run = start_wandb(args, self.logger.path) if args.wandb and self.info.rank == 0 else None
        self.history = TrainingLog(self.logger.path, wandb_run) if self.info.rank == 0 else None
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
        if "optimizer_state_dict" in ckpt:
            self.optimizer.load_state_dict(ckpt["optimizer_state_dict"])
        states = ckpt.get("instance_states")
        if states and len(states) == self.info.size:
            ckpt = {**ckpt, **states[self.info.rank]}
        if "augmentation_rng" in ckpt:
            self.sampler.load_state_dict(ckpt["augmentation_rng"])
        if "rng_state" in ckpt:
            set_rng_state(ckpt["rng_state"])
        if "data_augmentation_rng" in ckpt:
            load_augmentation_state(self.train_data, ckpt["data_augmentation_rng"])
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.log(f"Resuming training at epoch {self.start_epoch}/{self.args.epoch}.")

    # ------------------------------------------------------------------ reporting
    def report_backend(self) -> List[Dict[str, str]]:
        self.device_name, no_effect, self.host_allocator = report_backend(self.args, self.opts, self.backend, self.logger)
        return no_effect

    # ------------------------------------------------------------------ training
    def inputs(self, images: torch.Tensor, labels: torch.Tensor) -> tuple:
        return (images, labels, *self.sampler.sample(labels.shape[0]))

    def profile_one_step(self) -> Dict[str, Any]:
        """--profile: one training call under torch.profiler (portable) or with Poplar's report set up by env."""
        images, labels = next(iter(self.train_data))
        if not self.backend.is_portable:
            os.environ.setdefault("POPLAR_ENGINE_OPTIONS",
                                  f'{{"autoReport.all":"true","autoReport.directory":"{self.logger.path}"}}')
            self.training_model(*self.inputs(images, labels))
            return {"profile": self.logger.path}
        self.training_model.compile(*self.inputs(images, labels))
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.backend.device == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        path = os.path.join(self.logger.path, "profile_trace.json")
        with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
            self.training_model(*self.inputs(images, labels))
        prof.export_chrome_trace(path)
        self.log(f"Profile of one training step written to {path}; --profile was set, exiting.")
        return {"profile": path}

    def compile_only(self) -> Dict[str, Any]:
        images, labels = next(iter(self.train_data))
        start = time.perf_counter()
        self.training_model.compile(*self.inputs(images, labels))
        self.log(f"Graph compilation complete in {time.perf_counter() - start:.2f} s, --compile-only was set, exiting.")
        return {"compiled": True}

    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        args = self.args
        self.log(f"Epoch {epoch}/{args.epoch}")
        epoch_sampler = getattr(self.train_data, "sampler", None)
        if hasattr(epoch_sampler, "set_epoch"):
            epoch_sampler.set_epoch(epoch - 1)
        set_loss_scaling(self.optimizer, args, self.loss_scaling[epoch - 1])
        self.training_model.setOptimizer(self.optimizer)
        log_every = max(1, self.steps_per_epoch // args.logs_per_epoch)
        totals = np.zeros(3)
        window = np.zeros(3)
        images = 0
        bar = tqdm(self.train_data, total=self.steps_per_epoch, disable=self.info.rank != 0, mininterval=1.0)
        start = time.perf_counter()
        for step, (x, y) in enumerate(bar):
            progress = epoch - 1 + (step + 1) / self.steps_per_epoch
            if set_learning_rate(self.optimizer, self.schedule.lr_at(progress)):
                self.training_model.setOptimizer(self.optimizer)
            accuracy, loss = self.training_model(*self.inputs(x, y))
            point = np.array([loss.float().mean().item(), 100.0 * accuracy.float().mean().item(), 1.0])
            totals += point
            window += point
            images += y.shape[0]
            bar.set_description(f"Loss:{totals[0] / totals[2]:0.4f} | Accuracy:{totals[1] / totals[2]:0.2f}%")
            if (step + 1) % log_every == 0 and step + 1 < self.steps_per_epoch:
                self.log_point(progress, epoch, step, window, images, time.perf_counter() - start, None)
                window[:] = 0
        bar.close()
        elapsed = time.perf_counter() - start
        loss_sum, acc_sum, count = distributed.sum_all(totals.tolist())
        all_images = distributed.sum_all([float(images)])[0]
        slowest = distributed.max_all([elapsed])[0]
        result = {"epoch": epoch, "loss": loss_sum / count, "accuracy": acc_sum / count,
                  "throughput": all_images / slowest, "images": all_images, "seconds": slowest}
        self.log(f"Epoch {epoch}: Train accuracy is {result['accuracy']:0.2f}%")
        self.log(f"Throughput of the epoch:{result['throughput']:0.1f} img/sec")
        result["validation_accuracy"] = self.validate_if_due(epoch)
        self.log_point(float(epoch), epoch, self.steps_per_epoch - 1, window, images, elapsed,
                       result["validation_accuracy"], throughput=result["throughput"])
        if self.history is not None:
            self.history.end_epoch(epoch, result["loss"], result["accuracy"], result["validation_accuracy"])
        self.save(epoch, result)
        return result

    def log_point(self, progress: float, epoch: int, step: int, window: np.ndarray, images: int, elapsed: float,
                  validation: Optional[float], throughput: Optional[float] = None) -> None:
        if self.history is None or window[2] == 0:
            return
        latency = self.training_model.getLatency()
        self.history.log_point({
            "epoch": progress, "iteration": (epoch - 1) * self.steps_per_epoch + step + 1,
            "loss": window[0] / window[2], "accuracy": window[1] / window[2],
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            "loss_scaling": float(getattr(self.optimizer, "loss_scaling", 1.0)),
            "img_per_sec": throughput if throughput is not None else images * max(1, self.info.size) / elapsed,
            "latency_ms": latency[2] * 1e3, "validation_accuracy": validation})

    def validate_if_due(self, epoch: int) -> Optional[float]:
        args = self.args
        due = args.validation_mode == "during" and (epoch % args.validation_frequency == 0 or epoch == args.epoch)
        return self.validate() if due else None

    def validate(self) -> Optional[float]:
        """Validation runs in instance 0 only, as the original."""
        if self.info.rank != 0:
            return None
        return run_validation(self.model, self.args, self.backend, self.log)

    def instance_state(self) -> Dict[str, Any]:
        """What differs between instances and a resumed run needs: their RNG streams."""
        return {"augmentation_rng": self.sampler.state_dict(), "rng_state": rng_state(),
                "data_augmentation_rng": augmentation_state(self.train_data)}

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
            "data_augmentation_rng": augmentation_state(self.train_data),
            "loss": result["loss"], "train_accuracy": result["accuracy"],
            "validation_accuracy": result["validation_accuracy"], "args": plain(vars(args)),
            "launch_id": elastic.launch_id(), "instance_states": states,
        }
        path = save_checkpoint(args.checkpoint_path, checkpoint_name(args.model, args.data, epoch), payload)
        elastic.record(args.checkpoint_path, path)
        return path

    def after_training(self) -> Dict[str, Any]:
        args = self.args
        out: Dict[str, Any] = {}
        if args.validation_mode == "after":
            out["validation_accuracy"] = self.validate()
        if args.weight_avg_strategy != "none" and self.info.rank == 0:
            from train.weight_avg import average_checkpoints
            path = average_checkpoints(args.checkpoint_path, args.weight_avg_strategy, args.weight_avg_exp_decay,
                                       args.weight_avg_N, self.log)
            out["weight_avg_checkpoint"] = path
            if args.validation_mode != "none":
                from train.checkpoint import load_checkpoint
                averaged = model_from_checkpoint(load_checkpoint(path), args, self.backend, path, self.log)
                out["weight_avg_validation_accuracy"] = run_validation(averaged, args, self.backend, self.log)
        return out

    def run(self) -> Dict[str, Any]:
        no_effect = self.report_backend()
        for message in getattr(self.training_model, "portableMessages", lambda: [])():
            self.logger.once(message)
        if self.args.compile_only:
            return self.finish(self.compile_only(), no_effect)
        if self.args.profile:
            return self.finish(self.profile_one_step(), no_effect)
        for epoch in range(self.start_epoch, self.args.epoch + 1):
            self.epoch_results.append(self.train_epoch(epoch))
        for message in getattr(self.training_model, "portableMessages", lambda: [])():
            self.logger.once(message)
        return self.finish(self.after_training(), no_effect)

    def finish(self, extra: Dict[str, Any], no_effect: List[Dict[str, str]]) -> Dict[str, Any]:
        args = self.args
        results = {"model": args.model, "data": args.data, "precision": args.precision, "batch_size": args.batch_size,
                   "replicas": args.replicas, "gradient_accumulation": args.gradient_accumulation,
                   "device_iterations": args.device_iterations, "instances": self.info.size,
                   "pipeline_stages": num_stages(args), "backend": self.backend.name, "device": self.backend.device,
                   "device_name": getattr(self, "device_name", "?"), "torch_version": torch.__version__,
                   "host_allocator": getattr(self, "host_allocator", None),
                   "epochs": self.epoch_results, "no_effect": no_effect, "log_path": self.logger.path, **extra}
        if self.info.rank == 0:
            self.logger.write_json("results.json", results)
        if self.history is not None:
            self.history.close()
        self.training_model.detachFromDevice()
        self.logger.close()
        distributed.shutdown()
        return results


def run_training(args: argparse.Namespace, resume: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return Run(args, resume).run()


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_arguments(argv)
    found = elastic.checkpoint_to_resume(args.checkpoint_path)
    if found is None:
        return run_training(args)
    args.resumed_from, ckpt = found
    return run_training(args, resume=ckpt)


if __name__ == "__main__":
    main()
