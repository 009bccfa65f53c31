"""What a training run writes besides log.txt: ``training.csv`` (one row per log point, the original's
columns plus the latency), ``validation.csv`` (one row per validation, the original's columns),
``training.png`` (loss and accuracy per epoch) and, with ``--wandb``, the same rows to W&B."""
from __future__ import annotations

import csv
import io
import os
from typing import Any, Dict, List, Optional

from cnns.utils.atomic import atomic_file

# The original's training.csv columns, spelled as it wrote them (the smoothing columns end in ':').
CSV_FIELDS = ["loss_avg", "loss_batch", "epoch", "iteration", "train_accuracy_avg", "train_accuracy_batch",
              "learning_rate", "loss_scaling", "train_img_per_sec", "validation_accuracy",
              "classification_loss_batch", "classification_loss_avg", "smoothing_loss_batch:", "smoothing_loss_avg:",
              "latency_ms"]
VALIDATION_FIELDS = ["validation_epoch", "validation_iteration", "validation_accuracy"]


class TrainingLog:
    """Appends log points to training.csv and redraws the per-epoch plot after each epoch."""

    def __init__(self, folder: str, wandb_run: Any = None, append: bool = False) -> None:
        self.csv_path = os.path.join(folder, "training.csv")
        self.png_path = os.path.join(folder, "training.png")
        self.wandb_run = wandb_run
        self.epochs: List[Dict[str, Optional[float]]] = []
        if not (append and os.path.exists(self.csv_path)):
            _append_row(self.csv_path, CSV_FIELDS, None, fresh=True)

    def log_point(self, row: Dict[str, Any]) -> None:
        _append_row(self.csv_path, CSV_FIELDS, {k: _fmt(row.get(k)) for k in CSV_FIELDS})
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in row.items() if v is not None})

    def log_validation(self, epoch: int, iteration: int, accuracy: float) -> None:
        """One validation.csv row, as the original: epoch, iteration (epoch x validation steps), accuracy."""
        path = os.path.join(os.path.dirname(self.csv_path), "validation.csv")
        row = {"validation_epoch": epoch, "validation_iteration": iteration, "validation_accuracy": accuracy}
        _append_row(path, VALIDATION_FIELDS, {k: _fmt(v) for k, v in row.items()})
        if self.wandb_run is not None:
            self.wandb_run.log(row)

    def log_histograms(self, model: Any) -> None:
        """--wandb-weight-histogram: one histogram per trainable weight at this log point."""
        if self.wandb_run is None:
            return
        import wandb
        self.wandb_run.log({f"weights/{name}": wandb.Histogram(p.detach().float().cpu().numpy())
                            for name, p in model.named_parameters() if p.requires_grad})

    def end_epoch(self, epoch: int, loss: float, accuracy: float, validation_accuracy: Optional[float]) -> None:
        self.epochs.append({"epoch": epoch, "loss": loss, "accuracy": accuracy,
                            "validation_accuracy": validation_accuracy})
        self.plot()

    def plot(self) -> None:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
        epochs = [e["epoch"] for e in self.epochs]
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
        ax_loss.plot(epochs, [e["loss"] for e in self.epochs], marker="o")
        ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss")
        ax_acc.plot(epochs, [e["accuracy"] for e in self.epochs], marker="o", label="train")
        validated = [(e["epoch"], e["validation_accuracy"]) for e in self.epochs if e["validation_accuracy"] is not None]
        if validated:
            ax_acc.plot(*zip(*validated), marker="s", label="validation")
        ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
        ax_acc.legend()
        fig.tight_layout()
        with atomic_file(self.png_path) as f:
            fig.savefig(f, format="png")
        plt.close(fig)

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _append_row(path: str, fields: List[str], row: Optional[Dict[str, Any]], fresh: bool = False) -> None:
    """Adds ``row`` (and the header for a new file) by writing the whole file under a temporary name and
    renaming it, so a killed run leaves every CSV with whole rows only (files are small: one row per log
    point)."""
    old = b""
    if not fresh and os.path.exists(path):
        with open(path, "rb") as f:
            old = f.read()
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fields)
    if not old:
        writer.writeheader()
    if row is not None:
        writer.writerow(row)
    with atomic_file(path) as f:
        f.write(old + text.getvalue().encode())


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else value


def start_wandb(args: Any, folder: str) -> Any:
    """A W&B run logging into the run folder; offline unless the user has configured an API key."""
    try:
        import wandb
    except ImportError:
        from cnns.utils.errors import UsageError
        raise UsageError("--wandb needs the optional wandb package; install it with pip install wandb.") from None
    if not os.environ.get("WANDB_API_KEY"):
        os.environ.setdefault("WANDB_MODE", "offline")
    return wandb.init(project="portable-poptorch-cnns", name=os.path.basename(folder), dir=folder,
                      config={k: v for k, v in vars(args).items() if not k.startswith("_")})
