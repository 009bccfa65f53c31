"""Executor streams: the micro-batch split into concurrent sub-batches gives the one-stream results
under PopTorch's batch semantics, and what cannot be split is said."""
import pytest
import torch

import portable_poptorch as poptorch
from portable_poptorch.compilers import CompileContext, choice_key, select
from portable_poptorch.compilers.streams import candidate_counts, even_count, split_args, split_sizes
from portable_poptorch.enums import OutputMode
from cnns.inference.run_benchmark import parse_arguments
from cnns.utils.errors import UsageError
from tests.test_executors import MODES, eight_bit_model, expected, images, skip_if_missing

RUNTIMES = ["onnxruntime", "openvino"]


def options(executor: str, streams, mode=OutputMode.All, period=None, replicas: int = 2) -> poptorch.Options:
    opts = poptorch.Options().deviceIterations(2).replicationFactor(replicas).outputMode(mode, period)
    opts.Portable.device("cpu")
    opts.Portable.executor(executor)
    opts.Portable.executorStreams(streams)
    return opts


def test_split_helpers():
    assert split_sizes(7, 3) == [3, 2, 2] and split_sizes(4, 2) == [2, 2]
    assert even_count(6, 4) == 3 and even_count(7, 2) == 1 and even_count(8, 16) == 8
    assert candidate_counts(16, 2, None) == [1, 2] and candidate_counts(1, 8, None) == [1]
    assert candidate_counts(3, 8, None) == [1, 3] and candidate_counts(16, 8, 32) == [16]
    a, b = torch.arange(5), torch.tensor(9.0)
    parts = split_args((a, b, "x"), [3, 2])
    assert [p[0].tolist() for p in parts] == [[0, 1, 2], [3, 4]] and all(p[1] is b and p[2] == "x" for p in parts)


@pytest.mark.slow
@pytest.mark.parametrize("executor", RUNTIMES)
def test_two_streams_equal_eager_under_every_output_mode(executor):
    skip_if_missing(executor)
    model, x = eight_bit_model("mobilenet-v3-small"), images(16)  # micro-batch 4 per replica
    with torch.no_grad():
        a, b = model(x[:1]), model(x[1:2])
    assert (a - b).abs().max() > 1e-3, "outputs must depend on the input for the comparison to mean anything"
    wrapped = poptorch.inferenceModel(model, options(executor, 2))
    wrapped.compile(x)
    report = wrapped.executorReport()
    assert (report["executor"], report["streams"]) == (executor, 2)
    for mode, period in MODES:
        wrapped.options.outputMode(mode, period)
        torch.testing.assert_close(wrapped(x), expected(model, x, mode, period, step_batch=8), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("executor,runs", [("onnxruntime", 2), ("openvino", 1)])
def test_an_odd_micro_batch_splits_unevenly_or_runs_fewer_streams_and_says_so(executor, runs):
    skip_if_missing(executor)
    model, x = eight_bit_model("resnet18"), images(6, size=32)  # one replica, micro-batch 3
    wrapped = poptorch.inferenceModel(model, options(executor, 2, replicas=1))
    torch.testing.assert_close(wrapped(x), expected(model, x, OutputMode.All, None, step_batch=3), rtol=1e-4, atol=1e-4)
    assert wrapped.executorReport()["streams"] == runs
    if runs == 1:
        assert any("Executor streams 2 asked for; openvino it runs 1" in line for line in wrapped._log)


def test_executors_without_streams_run_one_and_say_so():
    model = eight_bit_model("resnet18")
    ctx = CompileContext(device=torch.device("cpu"), threads=2, streams=2)
    x = images(4, size=32)
    chosen = select("eager", model, (x,), ctx, "k")
    assert chosen.streams == 1
    assert ctx.notes == ["Executor streams 2 asked for; eager it runs the micro-step as one stream "
                         "(streams apply to onnxruntime and openvino)."]


def test_auto_streams_time_one_and_one_per_thread():
    skip_if_missing("onnxruntime")
    model, x = eight_bit_model("resnet18"), images(4, size=32)
    ctx = CompileContext(device=torch.device("cpu"), threads=2)
    chosen = select("onnxruntime", model, (x,), ctx, "k")
    assert sorted(t["streams"] for t in chosen.trials if t["status"] == "timed") == [1, 2]
    assert chosen.streams in (1, 2) and "streams:" in chosen.reason
    with torch.no_grad():
        torch.testing.assert_close(chosen.step(x), model(x), rtol=1e-4, atol=1e-4)


def test_the_streams_asked_for_key_auto_choices_apart():
    model, x = eight_bit_model("resnet18"), images(4, size=32)
    keys = {choice_key(model, (x,), "cpu", 2, None, s) for s in (None, 1, 2)}
    assert len(keys) == 3


def test_cli_accepts_auto_or_a_count_and_rejects_the_rest(capsys):
    assert parse_arguments(["--executor-streams", "auto"]).executor_streams is None
    assert parse_arguments(["--executor-streams", "3"]).executor_streams == 3
    for bad in ("0", "two", "-1"):
        with pytest.raises(UsageError, match=f"--executor-streams: must be auto or a whole number >= 1, got '{bad}'"):
            parse_arguments(["--executor-streams", bad])
