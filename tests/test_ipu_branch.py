"""The IPU branch, proven without an IPU: the harness builds its Options with a strict stand-in for
PopTorch 2.4 (tests/standin), and the state they reach must equal the state the original application
(graphcore/examples applications/pytorch/cnns, SDK 2.4) reaches for the same command line.

``original_*`` below restate, from the original's utils/ipu_settings.py, train/train.py,
inference/run_benchmark.py, what it set for a command line; the harness' own code is not used there.
"""
import json
import os
import shlex
import subprocess
import sys
import types

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.test_run_benchmark import SEED_000, seed_args
from tests.test_train_presets import ORIGINAL_PRESETS, README_BENCHMARKS, SCRIPT_LAUNCH, script_train_args

STANDIN = os.path.join(REPO_ROOT, "tests", "standin")
SDK_MODULES = ("poptorch", "popart", "popdist")
# Seed 003's run_benchmark.py commands (each under poprun: 4 instances, 4 replicas).
SEED_003 = [
    "--config resnet50-mk2 --data generated --batch-size 1 --iterations 20 --num-io-tiles 64",
    "--config efficientnet-b0-mk2 --data generated --batch-size 1 --iterations 20 --num-io-tiles 64",
    "--config efficientnet-b4-mk2 --data generated --batch-size 1 --iterations 20 --num-io-tiles 0",
    "--data generated --batch-size 1 --model resnext101 --device-iterations 128 --norm-type batch --precision 16.16 "
    "--half-partial --eight-bit-io --normalization-location ipu --iterations 20 --num-io-tiles 32",
]
POPRUN_4 = {"POPDIST_NUM_TOTAL_REPLICAS": "4", "POPDIST_NUM_INSTANCES": "4", "POPDIST_INSTANCE_INDEX": "0"}
# The original's train tests (tests/test_train.py, tests_serial/test_config.py).
ORIGINAL_TRAIN_TESTS = [
    "--data generated --model resnet18 --epoch 1 --precision 16.16 --validation-mode none --optimizer sgd_combined "
    "--lr 0.001 --gradient-accumulation 128 --batch-size 1 --dataloader-worker 4 --seed 0",
    "--data synthetic --model resnet18 --epoch 1 --precision 32.32 --validation-mode none --optimizer sgd_combined "
    "--lr 0.001 --gradient-accumulation 64 --batch-size 1 --dataloader-worker 4 --seed 0",
    "--data synthetic --model resnet18 --epoch 1 --precision 16.32 --pipeline-splits layer4/0 --validation-mode none "
    "--optimizer sgd_combined --lr 0.001 --gradient-accumulation 64 --dataloader-worker 4 --seed 0",
    "--data cifar10 --epoch 4 --model efficientnet-b0 --precision 16.32 --validation-mode none --optimizer sgd_combined "
    "--lr 0.1 --gradient-accumulation 64 --pipeline-splits blocks/2/1 --norm-type group --norm-num-groups 4 "
    "--enable-stochastic-rounding --dataloader-worker 4 --seed 0",
    "--data cifar10 --model resnet18 --epoch 1 --precision 16.32 --optimizer sgd_combined --lr 0.1 --batch-size 2 "
    "--gradient-accumulation 32 --norm-type batch --dataloader-worker 4 --half-res-training --fine-tune-epoch 1 "
    "--fine-tune-first-trainable-layer layer3 --weight-avg-strategy exponential --weight-avg-exp-decay 0.97 "
    "--checkpoint-path test_half_resolution_training --seed 0",
]


@pytest.fixture
def sdk(monkeypatch):
    """The stand-in SDK modules, importable as poptorch/popart/popdist for this test only."""
    monkeypatch.syspath_prepend(STANDIN)
    for name in [n for n in sys.modules if n.split(".")[0] in SDK_MODULES]:
        monkeypatch.delitem(sys.modules, name)
    import popart
    import popdist
    import popdist.poptorch
    import poptorch
    poptorch.CALLS.clear()
    yield types.SimpleNamespace(poptorch=poptorch, popart=popart, popdist=popdist)
    for name in [n for n in sys.modules if n.split(".")[0] in SDK_MODULES]:
        del sys.modules[name]


def ipu_backend(poptorch):
    from cnns.utils.backend import Backend
    return Backend(poptorch, "poptorch", "ipu", torch.float16)


# ------------------------------------------------------------------ the original, restated (SDK 2.4)
def original_base(args, sdk, stages):
    if sdk.popdist.isPopdistEnvSet():
        return sdk.popdist.poptorch.Options(ipus_per_replica=stages)
    opts = sdk.poptorch.Options()
    opts.replicationFactor(args.replicas)
    return opts


def original_inference_settings(args, opts, sdk, log_dir):
    pt, popart = sdk.poptorch, sdk.popart
    if args.model_cache_path is not None:
        opts.enableExecutableCaching(args.model_cache_path)
    if args.data == "synthetic":
        opts.enableSyntheticData(int(popart.SyntheticDataMode.RandomNormal))
    opts.Precision.setPartialsType(torch.float16 if args.half_partial else torch.float32)
    opts._Popart.set("groupNormStridedChannelGrouping", args.enable_fast_groupnorm)
    engine = {"target.deterministicWorkers": "portable"}
    if args.profile:
        engine = {"debug.allowOutOfMemory": "true", "autoReport.directory": log_dir, "profiler.format": "v3",
                  "autoReport.all": "true"}
    engine["opt.internalExchangeOptimisationTarget"] = args.exchange_memory_target or "cycles"  # its default
    opts._Popart.set("engineOptions", engine)
    if args.num_io_tiles > 0:
        opts.setExecutionStrategy(pt.ShardedExecution())
        opts._Popart.set("defaultPrefetchBufferingDepth", 3)
        opts.TensorLocations.numIOTiles(args.num_io_tiles)
    return opts


def original_inference_options(args, sdk, log_dir="logs"):
    opts = original_base(args, sdk, len(args.pipeline_splits) + 1)
    opts.deviceIterations(args.device_iterations)
    return original_inference_settings(args, opts, sdk, log_dir)


def original_training_options(args, sdk, log_dir="logs"):
    pt, popart = sdk.poptorch, sdk.popart
    stages = len(args.pipeline_splits) + 1
    opts = original_base(args, sdk, stages)
    opts = original_inference_settings(args, opts, sdk, log_dir)
    opts._Popart.set("scheduleNonWeightUpdateGradientConsumersEarly", True)
    opts.Precision.enableStochasticRounding(args.enable_stochastic_rounding)
    opts.enableStableNorm(not args.disable_stable_batchnorm)
    if args.enable_fp_exceptions:
        opts._Popart.set("enableFloatingPointChecks", True)
    if args.recompute_mode != "none" and stages == 1:
        opts._Popart.set("explicitRecomputation", True)
        kind = popart.RecomputationType.Standard if args.recompute_mode == "auto" else popart.RecomputationType.RecomputeAll
        opts._Popart.set("autoRecomputation", int(kind))
    if args.offload_optimizer or args.enable_optimizer_rts:
        location = pt.TensorLocationSettings()
        location.useOnChipStorage(not args.offload_optimizer)
        location.useReplicatedTensorSharding(args.enable_optimizer_rts)
        opts.TensorLocations.setOptimizerLocation(location)
    opts._Popart.set("disableGradAccumulationTensorStreams", True)
    amps = args.available_memory_proportion or []
    if len(amps) == 1:
        opts.setAvailableMemoryProportion({f"IPU{i}": amps[0] for i in range(stages)})
    elif len(amps) > 1:
        opts.setAvailableMemoryProportion({f"IPU{i}": amp for i, amp in enumerate(amps)})
    opts.outputMode(pt.OutputMode.Sum)
    opts.deviceIterations(args.device_iterations)
    opts.Training.accumulationAndReplicationReductionType(pt.ReductionType.Mean)
    opts.Training.gradientAccumulation(args.gradient_accumulation)
    if args.seed is not None:
        opts.randomSeed(args.seed)
    if args.compile_only:
        opts.useOfflineIpuTarget(pt.ipuHardwareVersion())
    return opts


def inference_state(state):
    """PopTorch's Default output mode is All for inference models."""
    if state["options"]["output_mode"] == 4:
        state["options"]["output_mode"] = 2
    return state


# ----------------------------------------------------------------------------------- comparisons
def run_benchmark_args(words):
    from cnns.inference import run_benchmark
    return run_benchmark.parse_arguments(words)


@pytest.mark.parametrize("words,env", [(seed_args(line), {}) for line in SEED_000]
                         + [(shlex.split(line), POPRUN_4) for line in SEED_003])
def test_inference_options_equal_the_originals(words, env, sdk, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from cnns.utils.distributed import InstanceInfo
    from cnns.utils.ipu_settings import inference_options
    args = run_benchmark_args(words)
    ours = inference_options(args, ipu_backend(sdk.poptorch), InstanceInfo(0, 1, 0), report_dir="logs")
    original = original_inference_options(run_benchmark_args(words), sdk)
    assert inference_state(ours.state()) == inference_state(original.state())
    assert ours._Popart.options["engineOptions"]["target.deterministicWorkers"] == "portable"


def train_commands():
    commands = [(["--config", name, "--data", "generated", "--checkpoint-path", "x"], {}) for name in ORIGINAL_PRESETS]
    commands += [(shlex.split(line), {}) for line in ORIGINAL_TRAIN_TESTS]
    commands += [(["--config", "resnet50_mk2", "--data", "generated", "--compile-only", "--checkpoint-path", "x"], {})]
    commands += [(["--data", "generated", "--enable-fp-exceptions", "--recompute-mode", "manual", "--offload-optimizer",
                   "--profile", "--exchange-memory-target", "balanced", "--num-io-tiles", "32", "--seed", "3"], {})]
    commands += [(["--data", "generated", "--enable-optimizer-rts", "--replicas", "2"], {})]
    for name in README_BENCHMARKS:
        text = README_BENCHMARKS[name].replace("\\\n", " ")
        command = text.split("train.py", 1)[1].replace("$DATASETS_DIR", "/data")
        poprun = {"resnet50-m2000": POPRUN_4,
                  "resnet50-pod16": {"POPDIST_NUM_TOTAL_REPLICAS": "16", "POPDIST_NUM_INSTANCES": "8"},
                  "resnet50-pod64": {"POPDIST_NUM_TOTAL_REPLICAS": "64", "POPDIST_NUM_INSTANCES": "16"}}
        env = poprun.get(name, {})
        commands.append((shlex.split(command) + ["--data", "generated"], env))
    return commands


@pytest.mark.parametrize("words,env", train_commands())
def test_training_options_equal_the_originals(words, env, sdk, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # the original's dataset folders (e.g. /data/imagenet_optimised) do not exist here; options are compared
    monkeypatch.setattr("cnns.utils.validation.existing_folder", lambda path, option: path)
    from cnns.train.arguments import parse_arguments
    from cnns.train.train_options import training_options
    from cnns.utils.distributed import InstanceInfo
    args = parse_arguments(words)
    ours = training_options(args, ipu_backend(sdk.poptorch), InstanceInfo(0, 1, 0), report_dir="logs")
    original = original_training_options(parse_arguments(words), sdk)
    assert ours.state() == original.state()


@pytest.mark.parametrize("script", sorted(SCRIPT_LAUNCH))
def test_script_training_options_equal_the_originals(script, sdk, monkeypatch):
    instances, replicas = SCRIPT_LAUNCH[script]
    monkeypatch.setenv("POPDIST_NUM_TOTAL_REPLICAS", str(replicas))
    monkeypatch.setenv("POPDIST_NUM_INSTANCES", str(instances))
    from cnns.train.train_options import training_options
    from cnns.utils.distributed import InstanceInfo
    ours = training_options(script_train_args(script), ipu_backend(sdk.poptorch), InstanceInfo(0, instances, 0))
    original = original_training_options(script_train_args(script), sdk)
    assert ours.state() == original.state()
    assert ours.replication_factor == replicas // instances


def original_validation_options(args, sdk):
    """The original's create_validation_opts (one instance)."""
    opts = sdk.poptorch.Options()
    opts.replicationFactor(args.replicas)
    opts.Distributed.disable()
    opts = original_inference_settings(args, opts, sdk, "logs")
    opts.deviceIterations(max(args.device_iterations, 1 + len(args.pipeline_splits)))
    opts.outputMode(sdk.poptorch.OutputMode.All)
    return opts


@pytest.mark.parametrize("name", ["resnet50_mk2", "efficientnet-b4-g16-gn-16ipu-mk2", "mobilenet-v3-large"])
def test_validation_options_equal_the_originals(name, sdk):
    from cnns.train.arguments import parse_arguments
    from cnns.train.train_options import validation_options
    words = ["--config", name, "--data", "generated", "--checkpoint-path", "x"]
    ours = validation_options(parse_arguments(words), ipu_backend(sdk.poptorch))
    assert ours.state() == original_validation_options(parse_arguments(words), sdk).state()


def test_listed_mistakes_are_fixed(sdk):
    """Exchange target as an engine option, RecomputeAll (4) for manual recomputation, floating-point
    exceptions through Precision, IO tiles with sharded execution and prefetch depth 3, --profile's
    report asked for before compilation."""
    from cnns.train.arguments import parse_arguments
    from cnns.train.train_options import training_options
    from cnns.utils.distributed import InstanceInfo
    args = parse_arguments(["--data", "generated", "--exchange-memory-target", "memory", "--recompute-mode", "manual",
                            "--enable-fp-exceptions", "--num-io-tiles", "64", "--profile"])
    opts = training_options(args, ipu_backend(sdk.poptorch), InstanceInfo(0, 1, 0), report_dir="/tmp/report")
    popart = opts._Popart.options
    assert "internalExchangeOptimisationTarget" not in popart
    assert popart["engineOptions"]["opt.internalExchangeOptimisationTarget"] == "memory"
    assert popart["engineOptions"]["autoReport.directory"] == "/tmp/report"
    assert popart["autoRecomputation"] == int(sdk.popart.RecomputationType.RecomputeAll) == 4
    assert popart["enableFloatingPointChecks"] is True
    assert ("Precision.enableFloatingPointExceptions", [[True], {}]) in sdk.poptorch.CALLS
    assert popart["defaultPrefetchBufferingDepth"] == 3 and opts.TensorLocations.toDict()["numIOTiles"] == 64
    assert opts._execution_strategy.describe() == "ShardedExecution()"


def test_standin_is_strict(sdk):
    opts = sdk.poptorch.Options()
    with pytest.raises(ValueError, match="Unknown PopART session option"):
        opts._Popart.set("internalExchangeOptimisationTarget", "cycles")
    with pytest.raises(AssertionError):
        opts.TensorLocations.numIOTiles(16)
    with pytest.raises(AssertionError):
        opts.Precision.enableFloatingPointExceptions(1)
    with pytest.raises(AttributeError):
        opts.Precision.setFloatingPointBehaviour(inv=True)
    with pytest.raises(AssertionError):
        opts.outputMode(2)


# ------------------------------------------------------------------- the scripts down the IPU branch
def run_script(script, words, tmp_path, env_extra=None):
    record = tmp_path / "record.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", POPTORCH_STANDIN_RECORD=str(record),
               PYTHONPATH=os.pathsep.join([STANDIN, REPO_ROOT]), **(env_extra or {}))
    proc = subprocess.run([sys.executable, script, *words, "--log-path", str(tmp_path / "logs")], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Backend: poptorch on ipu" in proc.stdout
    return json.load(open(record))


def log_folder(tmp_path):
    (folder,) = [os.path.join(tmp_path / "logs", f) for f in os.listdir(tmp_path / "logs")]
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("words,env", [(seed_args(SEED_000[1]), {}), (shlex.split(SEED_003[0]), {})])
def test_run_benchmark_down_the_ipu_branch_records_the_originals_options(words, env, tmp_path, sdk, monkeypatch):
    words = words + ["--iterations", "1", "--warmup-iterations", "0", "--device-iterations", "1", "--random-weights"]
    record = run_script("inference/run_benchmark.py", words, tmp_path, env)
    (wrapped,) = record["wrapped"]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    original = original_inference_options(run_benchmark_args(words), sdk)
    assert inference_state(wrapped["state"]) == inference_state(json.loads(json.dumps(original.state())))
    if "--num-io-tiles" in words:  # the model's IO is overlapped, as the original's OverlapModel
        for call in ("set_overlap_for_input", "set_overlap_for_output"):
            assert [call, [["OverlapMode.OverlapAccumulationLoop"], {}]] in record["calls"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50_mk2", "efficientnet-b4-g16-gn-16ipu-mk2", "mobilenet-v3-large-pod16"])
def test_train_compile_only_down_the_ipu_branch_records_the_originals_options(name, tmp_path, sdk):
    """tests_serial/test_config.py of the original: --data generated --config NAME --compile-only."""
    words = ["--data", "generated", "--config", name, "--compile-only", "--checkpoint-path", str(tmp_path / "ck"),
             "--input-size", "64"]
    record = run_script("train/train.py", words, tmp_path)
    (wrapped,) = [w for w in record["wrapped"] if w["training"]]
    from cnns.train.arguments import parse_arguments
    original = original_training_options(parse_arguments(words), sdk, log_dir=str(tmp_path / "ck"))
    assert wrapped["state"] == json.loads(json.dumps(original.state()))
    assert ["compile", [[], {}]] in record["calls"]


@pytest.mark.slow
def test_train_down_the_ipu_branch_validates_between_epochs(tmp_path, sdk):
    """The original's test_generated, shrunk, with validation during training (the training model is
    detached first and attached again), checkpoints and the averaged weights."""
    words = shlex.split(ORIGINAL_TRAIN_TESTS[0]) + [
        "--gradient-accumulation", "2", "--iterations", "2", "--epoch", "2", "--input-size", "32", "--batch-size", "2",
        "--validation-mode", "during", "--validation-frequency", "1", "--checkpoint-path", str(tmp_path / "ck"),
        "--weight-avg-strategy", "mean"]
    record = run_script("train/train.py", words, tmp_path)
    wrapped = record["wrapped"]
    assert [w["training"] for w in wrapped] == [True, False, False, False]  # training, 2 validations, average
    from cnns.train.arguments import parse_arguments
    from cnns.train.train_options import validation_options
    original = original_training_options(parse_arguments(words), sdk, log_dir=str(tmp_path / "ck"))
    assert wrapped[0]["state"] == json.loads(json.dumps(original.state()))
    validation = validation_options(parse_arguments(words), ipu_backend(sdk.poptorch))
    assert wrapped[1]["state"] == json.loads(json.dumps(original_validation_options(parse_arguments(words), sdk).state()))
    assert wrapped[1]["state"] == json.loads(json.dumps(validation.state()))
    rows = open(tmp_path / "ck" / "validation.csv").read().splitlines()
    assert rows[0] == "validation_epoch,validation_iteration,validation_accuracy" and len(rows) == 4
