"""train.py options that act only together with another setting: a value typed without it changes
nothing, so the run says so once and records it in results.json (through utils/unused_options.py)."""
from __future__ import annotations

from typing import Any, Callable, List, Tuple

from cnns.datasets import RANDOM_RESIZED_CROP_DATA

from .arguments import own_options_parser

# (destination, whether it acts in this run, why not when it does not)
CONDITIONS: Tuple[Tuple[str, Callable[[Any], bool], Callable[[Any], str]], ...] = (
    ("iterations", lambda a: a.data in ("generated", "synthetic"),
     lambda a: f"--data {a.data} runs whole epochs of its dataset"),
    ("train_crop_scale", lambda a: a.data in RANDOM_RESIZED_CROP_DATA,
     lambda a: f"--data {a.data} has no random-resized crop"),
    ("momentum", lambda a: a.optimizer != "adamw", lambda a: "AdamW has no momentum"),
    ("optimizer_eps", lambda a: a.optimizer not in ("sgd", "sgd_combined"), lambda a: f"{a.optimizer} has no epsilon"),
    ("rmsprop_decay", lambda a: a.optimizer in ("rmsprop", "rmsprop_tf"), lambda a: f"--optimizer {a.optimizer} is not RMSprop"),
    ("lr_decay", lambda a: a.lr_schedule != "cosine", lambda a: "the cosine schedule has no decay factor"),
    ("lr_epoch_decay", lambda a: a.lr_schedule == "step", lambda a: f"--lr-schedule {a.lr_schedule} has no decay epochs"),
    ("validation_frequency", lambda a: a.validation_mode == "during",
     lambda a: f"--validation-mode {a.validation_mode} does not validate between epochs"),
    ("weight_avg_exp_decay", lambda a: a.weight_avg_strategy == "exponential",
     lambda a: f"--weight-avg-strategy {a.weight_avg_strategy} is not exponential"),
    *((name, lambda a: a.half_res_training, lambda a: "fine-tuning follows --half-res-training only")
      for name in ("fine_tune_epoch", "fine_tune_lr", "fine_tune_batch_size", "fine_tune_gradient_accumulation",
                   "fine_tune_first_trainable_layer")),
)


def conditional_without_effect(args: Any) -> List[Tuple[str, str]]:
    """(option, reason) for each option of CONDITIONS set away from its default where it does not act."""
    parser = own_options_parser()
    flags = {a.dest: a.option_strings[0] for a in parser._actions}
    out = []
    for dest, acts, why in CONDITIONS:
        if hasattr(args, dest) and getattr(args, dest) != parser.get_default(dest) and not acts(args):
            out.append((flags[dest], why(args)))
    return out
