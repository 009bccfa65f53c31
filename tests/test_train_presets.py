"""The original application's training presets, scripts and README_Benchmarks commands.

Unshrunk: each preset's values (the original's configs.yml, SDK 2.4) reach the args, the Options and
the model (module names of the original mapped onto this repository's). Shrunk: each preset, script
and benchmark command runs as written, with only options appended (`--epoch 1 --iterations 2` and
sizes a 2-core CPU trains in seconds), launched by this project's poprun (rn50_pod64.sh's four hosts
are loopback addresses, its ifconfig and vipu-admin stand-ins on the PATH).
"""
import csv
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.test_train_e2e import write_digits

TRAIN_DIR = os.path.join(REPO_ROOT, "train")
torch.set_num_threads(1)

# name: (model, batch, replicas, gradient accumulation, device iterations, splits here, lr, precision)
ORIGINAL_PRESETS = {
    "resnet50": ("resnet50", 1, 1, 1, 1, [], 0.5, "16.16"),
    "resnet50_mk2": ("resnet50", 18, 16, 57, 1, [], 2.0, "16.16"),
    "resnet50_mk2_pod64": ("resnet50", 18, 64, 14, 1, [], 2.0, "16.16"),
    "efficientnet-g16-gn-16ipu-mk2-base": ("resnet18", 1, 1, 1, 1, [], 0.01, "16.32"),
    "efficientnet-b0-g16-gn-16ipu-mk2": ("efficientnet-b0", 20, 8, 5, 1, ["_blocks/5"], 0.05, "16.32"),
    "efficientnet-b4-g16-gn-16ipu-mk2": ("efficientnet-b4", 6, 4, 32, 4, ["_blocks/3", "_blocks/10", "_blocks/21"],
                                         0.0483, "16.32"),
    "mobilenet-v3-base": ("resnet18", 32, 1, 1, 1, [], 0.52, "16.16"),
    "mobilenet-v3-small": ("mobilenet-v3-small", 32, 1, 32, 1, [], 0.52, "16.16"),
    "mobilenet-v3-small-pod4": ("mobilenet-v3-small", 32, 4, 8, 1, [], 0.52, "16.16"),
    "mobilenet-v3-large": ("mobilenet-v3-large", 32, 1, 32, 1, ["features/3", "features/8", "features/12"],
                           0.52, "16.32"),
    "mobilenet-v3-large-pod16": ("mobilenet-v3-large", 32, 4, 8, 1, ["features/3", "features/8", "features/12"],
                                 0.52, "16.32"),
}
# Every value of the original's presets (train/configs.yml, SDK 2.4), as the args hold them: the
# original's module names in pipeline_splits translated to this repository's (test below).
RESNET50 = dict(model="resnet50", precision="16.16", enable_stochastic_rounding=True, label_smoothing=0.1,
                weight_decay=0.0001, optimizer="sgd_combined", lr=0.5, lr_schedule="cosine", momentum=0.85,
                warmup_epoch=5, epoch=100, norm_type="group", norm_num_groups=32, loss_scaling=128,
                lr_scheduler_freq=16, half_partial=True, device_iterations=1, seed=42)
RESNET50_MK2 = dict(RESNET50, momentum=0.9, lr=2.0, batch_size=18, pipeline_splits=[], replicas=16,
                    gradient_accumulation=57, norm_type="batch", offload_optimizer=False, eight_bit_io=True,
                    normalization_location="ipu", use_bbox_info=True, exchange_memory_target="memory",
                    recompute_mode="manual", disable_stable_batchnorm=True, available_memory_proportion=[0.12],
                    recompute_checkpoints=["add", "add/1", "add/2", "add/3", "add/5", "add/6", "add/7", "add/9",
                                           "add/11", "add/12"])
EFFICIENTNET_BASE = dict(seed=0, precision="16.32", eight_bit_io=True, normalization_location="ipu",
                         use_bbox_info=True, enable_stochastic_rounding=False, efficientnet_group_dim=16,
                         efficientnet_expand_ratio=4, norm_type="group", norm_eps=0.001, norm_num_groups=4, epoch=350,
                         warmup_epoch=5, optimizer="rmsprop_tf", optimizer_eps=0.001, momentum=0.9,
                         rmsprop_decay=0.953125, offload_optimizer=False, lr_schedule="exponential",
                         lr_scheduler_freq=0.424, lr_decay=0.97, loss_scaling=128, weight_decay=0.00001,
                         label_smoothing=0.1, weight_avg_strategy="exponential", weight_avg_exp_decay=0.97,
                         available_memory_proportion=[0.15], exchange_memory_target="balanced", half_partial=True,
                         enable_fast_groupnorm=True)
MOBILENET_BASE = dict(label_smoothing=0.1, weight_decay=0.00003, optimizer="sgd_combined", lr_schedule="cosine",
                      warmup_epoch=5, initial_loss_scaling=128, loss_scaling=128, seed=42, norm_type="batch",
                      offload_optimizer=False, half_partial=True, eight_bit_io=True, normalization_location="ipu",
                      epoch=360, momentum=0.9, lr=0.52, device_iterations=1, validation_mode="after", batch_size=32)
MOBILENET_SMALL = dict(MOBILENET_BASE, model="mobilenet-v3-small", precision="16.16", recompute_mode="auto",
                       gradient_accumulation=32, replicas=1, enable_stochastic_rounding=True)
MOBILENET_LARGE = dict(MOBILENET_BASE, model="mobilenet-v3-large", precision="16.32",
                       pipeline_splits=["features/3", "features/8", "features/12"], gradient_accumulation=32,
                       replicas=1, enable_stochastic_rounding=True)
ORIGINAL_VALUES = {
    "resnet50": RESNET50,
    "resnet50_mk2": RESNET50_MK2,
    "resnet50_mk2_pod64": dict(RESNET50_MK2, replicas=64, gradient_accumulation=14),
    "efficientnet-g16-gn-16ipu-mk2-base": EFFICIENTNET_BASE,
    "efficientnet-b0-g16-gn-16ipu-mk2": dict(EFFICIENTNET_BASE, model="efficientnet-b0", pipeline_splits=["_blocks/5"],
                                             lr=0.05, batch_size=20, replicas=8, gradient_accumulation=5,
                                             mixup_alpha=0.1),
    "efficientnet-b4-g16-gn-16ipu-mk2": dict(EFFICIENTNET_BASE, model="efficientnet-b4",
                                             pipeline_splits=["_blocks/3", "_blocks/10", "_blocks/21"], lr=0.0483,
                                             batch_size=6, replicas=4, gradient_accumulation=32, device_iterations=4,
                                             mixup_alpha=0.2, cutmix_lambda_low=0.65, cutmix_lambda_high=1.0,
                                             cutmix_disable_prob=0.35),
    "mobilenet-v3-base": MOBILENET_BASE,
    "mobilenet-v3-small": MOBILENET_SMALL,
    "mobilenet-v3-small-pod4": dict(MOBILENET_SMALL, replicas=4, gradient_accumulation=8,
                                    enable_stochastic_rounding=False),
    "mobilenet-v3-large": MOBILENET_LARGE,
    "mobilenet-v3-large-pod16": dict(MOBILENET_LARGE, replicas=4, gradient_accumulation=8,
                                     enable_stochastic_rounding=False),
}
ALIASES = {"resnet50-pod16": "resnet50_mk2", "efficientnet-b0-g16-gn-16ipu": "efficientnet-b0-g16-gn-16ipu-mk2"}
# The original's torch.fx checkpoints add, add/1, add/2, add/3, add/5, add/6, add/7, add/9, add/11, add/12
# are the residual additions of these ResNet-50 blocks.
RESNET50_MK2_CHECKPOINTS = ["layer1/0", "layer1/1", "layer1/2", "layer2/0", "layer2/2", "layer2/3", "layer3/0",
                            "layer3/2", "layer3/4", "layer3/5"]


def preset_args(name, *extra):
    from cnns.train.arguments import parse_arguments
    return parse_arguments(["--config", name, "--data", "generated", "--checkpoint-path", "unused", *extra])


def options_of(args):
    from cnns.train.train_options import training_options
    from cnns.utils.backend import select_backend
    from cnns.utils.distributed import InstanceInfo
    return training_options(args, select_backend("cpu"), InstanceInfo(0, 1, 0))


@pytest.mark.parametrize("name", sorted(ORIGINAL_PRESETS))
def test_original_preset_values_reach_the_options(name):
    import portable_poptorch as poptorch
    model, batch, replicas, accumulation, iterations, splits, lr, precision = ORIGINAL_PRESETS[name]
    args = preset_args(name)
    assert (args.model, args.batch_size, args.pipeline_splits, args.lr, args.precision) == (
        model, batch, splits, lr, precision)
    opts = options_of(args)
    assert opts.replication_factor == replicas
    assert opts.Training.gradient_accumulation == accumulation
    assert opts.device_iterations == iterations
    assert opts.output_mode == poptorch.OutputMode.Sum
    assert opts.random_seed == args.seed and args.seed is not None


@pytest.mark.parametrize("name", sorted(ORIGINAL_VALUES))
def test_every_value_of_the_original_preset(name):
    """Each key of the original's preset reaches the args with its value (data: imagenet, which these
    parses override with generated), and the ones the Options carry reach them."""
    from cnns.utils.argparser import load_presets
    import portable_poptorch as poptorch
    expected = ORIGINAL_VALUES[name]
    assert load_presets(os.path.join(TRAIN_DIR, "configs.yml"))[name]["data"] == "imagenet"
    args = preset_args(name)
    assert {key: getattr(args, key) for key in expected} == expected
    assert args.initial_loss_scaling == expected.get("initial_loss_scaling", expected.get("loss_scaling", 1.0))
    opts = options_of(args)
    stages = len(args.pipeline_splits) + 1
    assert (opts.replication_factor, opts.Training.gradient_accumulation, opts.device_iterations) == (
        expected.get("replicas", 1), expected.get("gradient_accumulation", 1), expected.get("device_iterations", 1))
    assert opts.random_seed == expected["seed"] and opts.output_mode == poptorch.OutputMode.Sum
    assert opts.Precision.stochastic_rounding is expected.get("enable_stochastic_rounding", False)
    assert opts.Precision.partials_type == (torch.float16 if expected.get("half_partial") else None)
    amp = expected.get("available_memory_proportion", [])
    assert opts.available_memory_proportion == {f"IPU{i}": amp[0] for i in range(stages) if amp}
    recorded = {e["option"]: e["value"] for e in opts.no_effect()}
    target = expected.get("exchange_memory_target")
    assert recorded.get("_Popart.engineOptions") == (
        repr({"opt.internalExchangeOptimisationTarget": target}) if target else None)
    assert recorded.get("enableStableNorm") == ("False" if expected.get("disable_stable_batchnorm") else None)


def test_preset_details_of_the_original():
    mk2 = preset_args("resnet50_mk2")
    assert (mk2.norm_type, mk2.eight_bit_io, mk2.normalization_location, mk2.use_bbox_info) == ("batch", True, "ipu", True)
    assert (mk2.exchange_memory_target, mk2.recompute_mode, mk2.disable_stable_batchnorm) == ("memory", "manual", True)
    assert mk2.available_memory_proportion == [0.12] and mk2.seed == 42 and mk2.momentum == 0.9
    assert options_of(mk2).available_memory_proportion == {"IPU0": 0.12}
    b4 = preset_args("efficientnet-b4-g16-gn-16ipu-mk2")
    assert (b4.mixup_alpha, b4.cutmix_lambda_low, b4.cutmix_lambda_high, b4.cutmix_disable_prob) == (0.2, 0.65, 1.0, 0.35)
    assert (b4.efficientnet_group_dim, b4.efficientnet_expand_ratio, b4.norm_num_groups, b4.norm_eps) == (16, 4, 4, 0.001)
    assert (b4.optimizer, b4.rmsprop_decay, b4.lr_scheduler_freq, b4.weight_avg_exp_decay) == ("rmsprop_tf", 0.953125, 0.424, 0.97)
    assert options_of(b4).available_memory_proportion == {f"IPU{i}": 0.15 for i in range(4)}
    small = preset_args("mobilenet-v3-small")
    assert (small.recompute_mode, small.initial_loss_scaling, small.weight_decay, small.epoch) == ("auto", 128, 3e-5, 360)
    for alias, original in ALIASES.items():
        assert dict(vars(preset_args(alias)), config=original) == vars(preset_args(original))


def test_original_recompute_checkpoints_map_to_the_residual_blocks():
    from cnns import models
    from cnns.train.recompute_setup import apply_recomputation
    args = preset_args("resnet50_mk2")
    model = models.get_model("resnet50", num_classes=10, pretrained=False)
    marked = apply_recomputation(model, args, lambda t: t)
    assert marked == RESNET50_MK2_CHECKPOINTS


@pytest.mark.parametrize("model,original,here", [
    ("efficientnet-b0", "blocks/3/0", "_blocks/5"), ("efficientnet-b0", "blocks/5/3", "_blocks/14"),
    ("efficientnet-b4", "blocks/6/1", "_blocks/31"), ("efficientnet-b0", "blocks/3/0/conv_pw", "_blocks/5"),
    ("mobilenet-v3-large", "mb_block/2/seq/0", "features/3"), ("resnet50", "layer3/1", "layer3/1"),
])
def test_original_module_names_are_translated(model, original, here):
    from cnns.models.original_names import translate_module_path
    assert translate_module_path(model, original) == here


def test_unknown_original_name_error_lists_the_mapping():
    from cnns.train.arguments import parse_arguments
    from cnns.utils.errors import UsageError
    with pytest.raises(UsageError, match="mb_block/<k> -> features/<k\\+1>"):
        parse_arguments(["--data", "generated", "--model", "resnet18", "--recompute-checkpoints", "mb_block/3"])


def run_train(args, tmp_path):
    from cnns.train import train
    return train.main([*args, "--log-path", str(tmp_path / "logs")])


# Appended to every preset: sizes a 2-core CPU trains in seconds (values per preset below).
# --executor eager (here and in the other training runs of this file that are not about compiling): these
# runs check the commands, not compilation (tests/test_executors.py does), and
# compiling each preset's training step with Inductor would cost minutes per run on a 2-core machine
SHRINK = ["--data", "generated", "--epoch", "1", "--iterations", "2", "--input-size", "64", "--replicas", "1",
          "--executor", "eager"]
SHRINK_SIZES = {
    # the base preset names no model (the original merged it into the EfficientNet ones)
    "efficientnet-g16-gn-16ipu-mk2-base": ["--batch-size", "2", "--gradient-accumulation", "1",
                                           "--model", "efficientnet-b0"],
    "efficientnet-b0-g16-gn-16ipu-mk2": ["--batch-size", "2", "--gradient-accumulation", "3"],
    "efficientnet-b4-g16-gn-16ipu-mk2": ["--batch-size", "4", "--gradient-accumulation", "7", "--device-iterations", "1"],
    "mobilenet-v3-large": ["--batch-size", "2", "--gradient-accumulation", "7"],
    "mobilenet-v3-large-pod16": ["--batch-size", "2", "--gradient-accumulation", "7"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ORIGINAL_PRESETS))
def test_original_preset_shrunk_run_completes(name, tmp_path):
    sizes = SHRINK_SIZES.get(name, ["--batch-size", "2", "--gradient-accumulation", "1"])
    results = run_train(["--config", name, *SHRINK, *sizes, "--checkpoint-path", str(tmp_path / "ckpt")], tmp_path)
    (epoch,) = results["epochs"]
    assert epoch["images"] == int(sizes[1]) * int(sizes[3]) * 2 and epoch["loss"] > 0
    options = {e["option"] for e in results["no_effect"]}
    if preset_args(name).use_bbox_info:
        assert "--use-bbox-info" in options
    assert os.path.exists(tmp_path / "ckpt" / "training.csv")


@pytest.mark.slow
def test_half_resolution_training_on_digits_logs_accuracy(tmp_path):
    """The original's test_half_resolution_training, on the digits instead of CIFAR-10."""
    data = write_digits(str(tmp_path / "digits"), keep_every=6)
    results = run_train(["--data", "imagenet", "--imagenet-data-path", data, "--model", "resnet18",
                         "--input-size", "16", "--epoch", "1", "--precision", "16.32", "--optimizer", "sgd_combined",
                         "--lr", "0.1", "--batch-size", "2", "--gradient-accumulation", "8", "--norm-type", "batch",
                         "--dataloader-worker", "0", "--half-res-training", "--fine-tune-epoch", "1",
                         "--fine-tune-first-trainable-layer", "layer3", "--weight-avg-strategy", "exponential",
                         "--weight-avg-exp-decay", "0.97", "--checkpoint-path", str(tmp_path / "ck"), "--seed", "0",
                         "--fine-tune-batch-size", "8", "--executor", "eager"], tmp_path)
    assert [e["epoch"] for e in results["epochs"]] == [1] and [e["epoch"] for e in results["fine_tune"]] == [2]
    with open(tmp_path / "ck" / "validation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["validation_epoch"] for r in rows] == ["1", "2", "1"]  # both epochs, then the averaged weights
    assert all(0.0 <= float(r["validation_accuracy"]) <= 100.0 for r in rows)
    log = open(tmp_path / "ck" / "log.txt").read()
    assert "Epoch 2/2" in log and "parameters frozen before layer3" in log and "Accuracy on test set:" in log
    app = json.load(open(tmp_path / "ck" / "app.json"))
    assert app["half_res_training"] is True and app["seed"] == 0


@pytest.mark.slow
def test_unset_seed_is_drawn_and_recorded(tmp_path):
    results = run_train(["--data", "generated", "--model", "resnet18", "--input-size", "32", "--batch-size", "2",
                         "--precision", "32.32", "--executor", "eager",
                         "--iterations", "1", "--epoch", "1", "--validation-mode", "none"], tmp_path)
    (folder,) = glob.glob(str(tmp_path / "logs" / "*"))
    seed = json.load(open(os.path.join(folder, "app.json")))["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2 ** 32 and results["epochs"]


def launch_tools(folder: str) -> dict:
    """What the original's launch commands need on this machine, as environment variables: this
    project's poprun on the PATH (the console script make install puts beside the interpreter, else a
    shim running utils/poprun.py), `ifconfig eno1` answering 127.0.0.1 and `vipu-admin` listing one
    active partition (rn50_pod64.sh reads its hosts and partition from them), and a remote shell that
    runs here (rn50_pod64.sh's other hosts, 127.0.0.2-4, are this machine's loopback)."""
    tools = {
        "poprun": f'#!/bin/sh\nexec "{sys.executable}" "{os.path.join(REPO_ROOT, "utils", "poprun.py")}" "$@"\n',
        "ifconfig": '#!/bin/sh\necho "eno1: flags=4163<UP,RUNNING>  mtu 1500"\n'
                    'echo "        inet 127.0.0.1  netmask 255.0.0.0  broadcast 127.255.255.255"\n',
        "vipu-admin": '#!/bin/sh\necho "| ID    | State  |"\necho "| pod64 | ACTIVE |"\n',
        "fake_ssh": '#!/bin/sh\nshift\nexec sh -c "$*"\n',
    }
    os.makedirs(folder, exist_ok=True)
    for name, text in tools.items():
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
    path = os.pathsep.join([os.path.dirname(sys.executable), folder, os.environ["PATH"]])
    return {"PATH": path, "POPRUN_SSH": os.path.join(folder, "fake_ssh")}


def shell(command, cwd, env_extra=None, timeout=900):
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    env.update(env_extra or {})
    return subprocess.run(["sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# The scripts' own options stay; these appended ones make the run small.
SCRIPT_SHRINK = {
    "rn50_pod16.sh": "--data generated --epoch 1 --iterations 2 --batch-size 2 --gradient-accumulation 1 "
                     "--input-size 64 --validation-mode none --executor eager",
    "rn50_pod64.sh": "--data generated --epoch 1 --iterations 2 --batch-size 2 --gradient-accumulation 1 "
                     "--input-size 64 --validation-mode none --executor eager",
    "efficientnet_b0_pod16.sh": "--data generated --epoch 1 --iterations 1 --fine-tune-epoch 1 --batch-size 2 "
                                "--gradient-accumulation 3 --fine-tune-batch-size 2 --fine-tune-gradient-accumulation 3 "
                                "--input-size 64 --validation-mode none --executor eager",
    "efficientnet_b4_pod16.sh": "--data generated --epoch 1 --iterations 1 --fine-tune-epoch 1 --batch-size 4 "
                                "--gradient-accumulation 7 --fine-tune-batch-size 4 --fine-tune-gradient-accumulation 7 "
                                "--device-iterations 1 --input-size 64 --validation-mode none --executor eager",
}


# instances and replicas each script's poprun line asks for
SCRIPT_LAUNCH = {"rn50_pod16.sh": (8, 16), "rn50_pod64.sh": (16, 64), "efficientnet_b0_pod16.sh": (4, 8),
                 "efficientnet_b4_pod16.sh": (4, 4)}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPT_SHRINK))
def test_original_script_runs_as_written(script, tmp_path):
    extra = f"{SCRIPT_SHRINK[script]} --checkpoint-path {tmp_path / 'ck'} --log-path {tmp_path / 'logs'}"
    proc = shell(f"sh {script} {extra}", TRAIN_DIR, launch_tools(str(tmp_path / "bin")))
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Throughput of the epoch:" in proc.stdout
    results = json.load(open(tmp_path / "ck" / "results.json"))
    instances, replicas = SCRIPT_LAUNCH[script]
    assert (results["instances"], results["replicas"] * instances) == (instances, replicas)
    if script == "rn50_pod64.sh":
        assert "16 instances on 4 hosts, 64 replicas (4 per instance)" in proc.stdout
    if "efficientnet" in script:
        assert results["fine_tune"] and os.path.exists(glob.glob(str(tmp_path / "ck" / "*_avg.pt"))[0])


def script_train_args(script):
    """The options a script passes to train.py (before the appended "$@")."""
    text = open(os.path.join(TRAIN_DIR, script)).read().replace("\\\n", " ")
    command = text.split("python3 train.py", 1)[1].split('"$@"')[0]
    from cnns.train.arguments import parse_arguments
    return parse_arguments(shlex.split(command) + ["--data", "generated", "--checkpoint-path", "x"])


@pytest.mark.parametrize("script,expected", [
    ("rn50_pod16.sh", {"config": "resnet50_mk2", "webdataset_memory_cache_ratio": 0.2, "dataloader_worker": 24,
                       "dataloader_rebatch_size": 256, "batch_size": 18, "gradient_accumulation": 57}),
    ("rn50_pod64.sh", {"config": "resnet50_mk2_pod64", "webdataset_memory_cache_ratio": 0.95, "dataloader_worker": 24,
                       "dataloader_rebatch_size": 256, "gradient_accumulation": 14, "replicas": 64}),
    ("efficientnet_b0_pod16.sh", {"batch_size": 40, "gradient_accumulation": 3, "half_res_training": True,
                                  "fine_tune_epoch": 2, "fine_tune_lr": 0.25, "fine_tune_batch_size": 20,
                                  "fine_tune_gradient_accumulation": 5, "dataloader_worker": 16,
                                  "fine_tune_first_trainable_layer": "blocks/5/3"}),
    ("efficientnet_b4_pod16.sh", {"batch_size": 15, "gradient_accumulation": 13, "fine_tune_batch_size": 6,
                                  "fine_tune_gradient_accumulation": 32, "fine_tune_first_trainable_layer": "blocks/6/1"}),
])
def test_scripts_pass_the_original_options(script, expected):
    """The values the scripts give train.py, down to the Options (the runs append only shrinking options)."""
    args = script_train_args(script)
    assert {k: getattr(args, k) for k in expected} == expected
    opts = options_of(args)
    assert opts.Training.gradient_accumulation == expected["gradient_accumulation"]


def digits_webdataset(root):
    """A WebDataset with bounding boxes, named as the README's $DATASETS_DIR/imagenet_optimised."""
    from cnns.datasets.create_webdataset import main as create_webdataset
    source = write_digits(os.path.join(root, "digits"), keep_every=8)
    names = [f for _, _, files in os.walk(os.path.join(source, "train")) for f in files]
    with open(os.path.join(source, "imagenet_2012_bounding_boxes.csv"), "w") as f:
        f.writelines(f"{n},0.1,0.1,0.9,0.9\n" for n in names)
    create_webdataset(["--source", source, "--target", os.path.join(root, "imagenet_optimised"),
                       "--samples-per-shard", "16", "--num-workers", "0"])
    return root


# train/README_Benchmarks.md of the original, as written ($DATASETS_DIR set by the test).
README_BENCHMARKS = {
    "resnet50-m2000": """poprun \\
   --mpi-global-args="--allow-run-as-root --tag-output" \\
   --numa-aware=1 \\
   --ipus-per-replica=1 \\
   --num-instances=4 \\
   --num-replicas=4 \\
python3 train.py \\
   --config resnet50_mk2 \\
   --imagenet-data-path $DATASETS_DIR/imagenet_optimised \\
   --gradient-accumulation 228 \\
   --epoch 2 \\
   --validation-mode none \\
   --dataloader-worker 24 \\
   --webdataset-memory-cache-ratio 0.2 \\
   --dataloader-rebatch-size 256""",
    "resnet50-pod16": """poprun \\
   --mpi-global-args="--allow-run-as-root --tag-output" \\
   --numa-aware=1 \\
   --ipus-per-replica=1 \\
   --num-instances=8 \\
   --num-replicas=16 \\
python3 train.py \\
   --config resnet50_mk2 \\
   --imagenet-data-path $DATASETS_DIR/imagenet_optimised \\
   --epoch 2 \\
   --validation-mode none \\
   --dataloader-worker 24 \\
   --webdataset-memory-cache-ratio 0.4 \\
   --dataloader-rebatch-size 256""",
    "resnet50-pod64": """poprun \\
   -vv \\
   --num-instances=16 \\
   --num-replicas=64 \\
   --ipus-per-replica=1 \\
   --num-ilds=1 \\
   --numa-aware=yes \\
   --update-partition=yes \\
   --remove-partition=no \\
   --reset-partition=no \\
   --print-topology=yes \\
   --executable-cache-path cache/rn50_pod64 \\
   --mpi-global-args="--tag-output \\
      --allow-run-as-root \\
      --mca btl_tcp_if_include eno1" \\
   --mpi-local-args="-x LD_LIBRARY_PATH \\
      -x OPAL_PREFIX \\
      -x PATH \\
      -x CPATH \\
      -x PYTHONPATH \\
      -x POPLAR_ENGINE_OPTIONS \\
      -x IPUOF_VIPU_API_TIMEOUT=800" \\
python3 train.py --config resnet50_mk2_pod64 \\
   --dataloader-worker 24 \\
   --webdataset-memory-cache-ratio 0.95 \\
   --dataloader-rebatch-size 256 \\
   --imagenet-data-path $DATASETS_DIR/imagenet_optimised \\
   --compile-only""",
    "efficientnet-b4-m2000": """python train.py \\
      --config efficientnet-b4-g16-gn-16ipu-mk2 \\
      --replicas 1 \\
      --gradient-accumulation 128 \\
      --imagenet-data-path $DATASETS_DIR/imagenet_optimised \\
      --epoch 2 \\
      --warmup-epoch 0 \\
      --validation-mode none \\
      --weight-avg-strategy none""",
    "efficientnet-b4-pod16": """python train.py \\
      --config efficientnet-b4-g16-gn-16ipu-mk2 \\
      --imagenet-data-path $DATASETS_DIR/imagenet_optimised \\
      --epoch 2 \\
      --warmup-epoch 0 \\
      --validation-mode none \\
      --weight-avg-strategy none""",
}
# The README's "Env:" step before its IPU-M2000 command, as written (the shell drops its inner quotes).
README_ENV = {"resnet50-m2000": 'export POPLAR_ENGINE_OPTIONS={"opt.enableMultiAccessCopies":"false"}\n'}
README_SHRINK = {
    "resnet50-pod64": "--batch-size 2 --gradient-accumulation 1 --input-size 64 --dataloader-worker 1 "
                      "--dataloader-rebatch-size 2",
    "resnet50-m2000": "--epoch 1 --gradient-accumulation 1 --batch-size 2 --input-size 64 --dataloader-worker 1 "
                      "--dataloader-rebatch-size 2",
    "resnet50-pod16": "--epoch 1 --batch-size 2 --gradient-accumulation 1 --input-size 64 --dataloader-worker 1 "
                      "--dataloader-rebatch-size 2",
    "efficientnet-b4-m2000": "--epoch 1 --gradient-accumulation 7 --batch-size 4 --device-iterations 1 "
                             "--input-size 64 --dataloader-worker 1",
    "efficientnet-b4-pod16": "--epoch 1 --replicas 1 --gradient-accumulation 7 --batch-size 4 --device-iterations 1 "
                             "--input-size 64 --dataloader-worker 1",
}


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory):
    return digits_webdataset(str(tmp_path_factory.mktemp("datasets")))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(README_BENCHMARKS))
def test_readme_benchmarks_command_runs_as_written(name, datasets_dir, tmp_path):
    command = README_BENCHMARKS[name]
    extra = f" {README_SHRINK[name]} --executor eager --log-path {tmp_path / 'logs'}"
    proc = shell(README_ENV.get(name, "") + command + extra, TRAIN_DIR,
                 {"DATASETS_DIR": datasets_dir, **launch_tools(str(tmp_path / "bin"))})
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    (results_file,) = glob.glob(str(tmp_path / "logs" / "*" / "results.json"))
    results = json.load(open(results_file))
    if "--compile-only" in command:
        assert "Graph compilation complete" in proc.stdout and results["compiled"]
        return
    assert "Throughput of the epoch:" in proc.stdout
    assert results["epochs"][0]["images"] > 0
    unused = {e["option"] for e in results["no_effect"]}
    assert "--use-bbox-info" not in unused and "--webdataset-memory-cache-ratio" not in unused
    assert ("POPLAR_ENGINE_OPTIONS" in unused) is (name in README_ENV)


def test_webdataset_memory_cache_serves_later_epochs_from_memory(datasets_dir, tmp_path):
    import shutil
    from cnns.datasets.webdataset_source import WebDatasetSplit
    folder = shutil.copytree(os.path.join(datasets_dir, "imagenet_optimised"), tmp_path / "wds")
    split = WebDatasetSplit(str(folder), "train", lambda image, boxes: image, memory_cache_ratio=0.5)
    shards = sorted(str(folder / f) for f in os.listdir(folder) if f.startswith("train") and f.endswith(".tar"))
    assert split.cached_paths == set(shards[:round(len(shards) / 2)])
    first = [label for _, label in split]
    uncached = WebDatasetSplit(str(folder), "train", lambda image, boxes: image, memory_cache_ratio=0.0)
    for path in split.cached_paths:
        os.remove(path)  # a second epoch must not read the cached shards from disk
    with pytest.raises(FileNotFoundError):
        list(uncached)
    assert [label for _, label in split] == first and len(first) == len(split)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("bias", [True, False])
def test_convpadding_3ch_vs_4ch_forward(dtype, bias):
    """The original's test: the 4-channel padded convolution gives the 3-channel one's results."""
    from cnns.models.padding import PaddedConv
    torch.manual_seed(0)
    conv_3ch = torch.nn.Conv2d(3, 32, (3, 3), bias=bias).to(dtype)
    conv_4ch = PaddedConv(conv_3ch)
    x = torch.rand(4, 3, 32, 32).to(dtype)
    assert conv_4ch.weight.shape[1] == 4 and torch.all(conv_4ch.weight[:, 3] == 0)
    with torch.no_grad():
        assert torch.allclose(conv_3ch(x).float(), conv_4ch(x).float(), rtol=1e-3, atol=1e-3)


def test_input_image_padding_pads_the_first_convolution_of_every_family():
    from cnns import models
    from cnns.models.padding import PaddedConv, pad_first_conv
    for name in ("resnet18", "efficientnet-b0", "mobilenet-v3-small"):
        model = models.get_model(name, num_classes=5, pretrained=False).eval()
        x = torch.rand(2, 3, 64, 64)
        with torch.no_grad():
            before = model(x)
            path = pad_first_conv(model)
            after = model(x)
        assert path and isinstance(dict(model.named_modules())[path.replace("/", ".")], PaddedConv)
        assert torch.allclose(before, after, atol=1e-5), name


def test_cifar10_trains_at_the_models_resolution_unless_asked():
    from cnns.train.arguments import parse_arguments
    from cnns.train.validate import train_input_size
    args = parse_arguments(["--data", "cifar10", "--model", "resnet18"])
    assert train_input_size(args) == 224 and train_input_size(args, train=False) == 224
    assert train_input_size(parse_arguments(["--data", "cifar10", "--input-size", "32"])) == 32
    half = parse_arguments(["--data", "cifar10", "--model", "efficientnet-b4", "--half-res-training",
                            "--fine-tune-epoch", "1", "--fine-tune-first-trainable-layer", "blocks/6/1",
                            "--weight-avg-strategy", "mean", "--checkpoint-path", "x"])
    assert (train_input_size(half), train_input_size(half, train=False)) == (252, 380)


@pytest.mark.parametrize("argv,option", [
    (["--data", "generated", "--use-bbox-info"], "--use-bbox-info"),
    (["--data", "synthetic", "--dataloader-rebatch-size", "8"], "--dataloader-rebatch-size"),
    (["--data", "generated", "--webdataset-memory-cache-ratio", "0.5"], "--webdataset-memory-cache-ratio"),
    (["--data", "generated", "--num-io-tiles", "32"], "--num-io-tiles"),
    (["--data", "cifar10", "--train-crop-scale", "0.5", "1"], "--train-crop-scale"),
    (["--data", "synthetic", "--corrupt-images", "skip"], "--corrupt-images"),
    (["--data", "generated", "--optimizer", "adamw", "--momentum", "0.9"], "--momentum"),
    (["--data", "generated", "--optimizer-eps", "1e-6"], "--optimizer-eps"),
    (["--data", "generated", "--rmsprop-decay", "0.9"], "--rmsprop-decay"),
    (["--data", "generated", "--lr-schedule", "cosine", "--lr-decay", "0.1"], "--lr-decay"),
    (["--data", "generated", "--lr-schedule", "exponential", "--lr-epoch-decay", "3"], "--lr-epoch-decay"),
    (["--data", "generated", "--validation-frequency", "2"], "--validation-frequency"),
    (["--data", "generated", "--weight-avg-exp-decay", "0.9"], "--weight-avg-exp-decay"),
    (["--data", "generated", "--fine-tune-epoch", "2"], "--fine-tune-epoch"),
    (["--data", "cifar10", "--iterations", "5"], "--iterations"),
])
def test_options_without_effect_are_listed(argv, option):
    from cnns.train.arguments import parse_arguments
    from cnns.utils.backend import select_backend
    from cnns.utils.unused_options import unused_options
    entries = unused_options(parse_arguments(argv), select_backend("cpu"))
    assert [e["option"] for e in entries] == [option] and entries[0]["reason"]


def test_bbox_info_has_no_effect_in_inference():
    from cnns.inference import run_benchmark
    from cnns.utils.backend import select_backend
    from cnns.utils.unused_options import unused_options
    args = run_benchmark.parse_arguments(["--data", "generated", "--use-bbox-info", "--dataloader-rebatch-size", "4"])
    options = {e["option"] for e in unused_options(args, select_backend("cpu"))}
    assert options == {"--use-bbox-info", "--dataloader-rebatch-size"}
    args = run_benchmark.parse_arguments(["--data", "generated", "--batchnorm-momentum", "0.3"])
    assert [e["option"] for e in unused_options(args, select_backend("cpu"))] == ["--batchnorm-momentum"]


def test_options_that_act_are_not_listed():
    from cnns.inference import run_benchmark
    from cnns.train.arguments import parse_arguments
    from cnns.utils.backend import select_backend
    from cnns.utils.unused_options import unused_options
    backend = select_backend("cpu")
    assert unused_options(run_benchmark.parse_arguments(["--data", "generated"]), backend) == []
    assert unused_options(parse_arguments(["--data", "generated", "--batchnorm-momentum", "0.3"]), backend) == []
    acting = ["--data", "generated", "--optimizer", "rmsprop", "--momentum", "0.9", "--optimizer-eps", "1e-6",
              "--rmsprop-decay", "0.9", "--lr-decay", "0.1", "--lr-epoch-decay", "3", "--validation-mode", "during",
              "--validation-frequency", "2"]
    assert unused_options(parse_arguments(acting), backend) == []
    for data in ("real", "imagenet"):
        args = parse_arguments(["--data", "generated", "--train-crop-scale", "0.5", "1", "--corrupt-images", "skip"])
        args.data = data
        assert unused_options(args, backend) == []


def test_wandb_weight_histogram_logs_every_trainable_weight(tmp_path, monkeypatch):
    import types
    logged = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kwargs: types.SimpleNamespace(log=logged.append, finish=lambda: None)
    fake.Histogram = lambda values: ("histogram", values.shape)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_train(["--data", "generated", "--model", "resnet18", "--input-size", "32", "--batch-size", "2",
               "--precision", "32.32", "--iterations", "1", "--epoch", "1", "--validation-mode", "none", "--wandb",
               "--wandb-weight-histogram", "--seed", "1", "--executor", "eager"], tmp_path)
    histograms = [row for row in logged if any(k.startswith("weights/") for k in row)]
    assert len(histograms) == 1 and "weights/conv1.weight" in histograms[0]
    assert histograms[0]["weights/conv1.weight"] == ("histogram", (64, 3, 7, 7))


@pytest.mark.slow
def test_unset_seed_is_shared_by_every_instance(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "utils", "poprun.py"), "--num-instances=2", "--num-replicas=2",
         "python", "train.py", "--data", "generated", "--model", "resnet18", "--input-size", "32", "--batch-size", "2",
         "--precision", "32.32", "--iterations", "1", "--epoch", "1", "--validation-mode", "none",
         "--executor", "eager", "--log-path", str(tmp_path)],
        cwd=TRAIN_DIR, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = glob.glob(str(tmp_path / "*"))
    seeds = [re.findall(r"Random seed (\d+) \(drawn by instance 0", open(os.path.join(folder, name)).read())
             for name in ("log.txt", "log_instance1.txt")]
    assert len(seeds[0]) == 1 and seeds[0] == seeds[1]
    assert json.load(open(os.path.join(folder, "app.json")))["seed"] == int(seeds[0][0])


def test_compile_only_compiles_with_generated_data_as_the_original(tmp_path):
    """README_Benchmarks' pod64 --compile-only command names a data set the compiling host need not have."""
    from cnns.train.arguments import parse_arguments
    args = parse_arguments(["--config", "resnet50_mk2_pod64", "--imagenet-data-path", str(tmp_path / "absent"),
                            "--compile-only", "--checkpoint-path", str(tmp_path / "ck")])
    assert (args.data, args.imagenet_data_path) == ("generated", None)
    assert args.notes == ["--compile-only compiles with generated data; --data imagenet is not read."]
