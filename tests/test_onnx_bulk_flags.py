"""The bulk launcher's flags, parsed by absl-py: the original's command lines give the values they always
did, and a bad flag is one ``error:`` line with exit code 2 (not absl's usage dump)."""

from __future__ import annotations

import pytest
from absl import flags as absl_flags

from cnns.inference.onnx_bulk import resnext_inference_launch as launch
from cnns.inference.onnx_bulk.flags import parse_flags


def parse(*argv: str):
    return parse_flags("resnext_inference_launch.py", launch.FLAGS, list(argv))


def test_defaults_are_the_originals():
    values = parse()
    assert (values.batch_size, values.batches_per_step, values.iterations, values.num_ipus) == (6, 1500, 1, 8)
    assert (values.num_workers, values.synthetic, values.model_name) == (12, False, "resnext101_32x4d")
    assert (values.data_dir, values.provider, values.num_threads) == ("datasets/", "auto", 0)
    assert not values["data_dir"].present


@pytest.mark.parametrize("argv", [
    ["--batch_size", "48", "--num_ipus", "8", "--synthetic"],
    ["--batch_size=48", "--num_ipus=8", "--synthetic=true"],
    ["-batch_size", "48", "-num_ipus", "8", "-synthetic"],
    ["--nosynthetic", "--batch_size", "48", "--num_ipus", "8", "--synthetic"],
])
def test_the_original_spellings_give_the_same_values(argv):
    values = parse(*argv)
    assert (values.batch_size, values.num_ipus, values.synthetic) == (48, 8, True)
    assert values["batch_size"].present and not values["iterations"].present


def test_noflag_turns_a_boolean_off_and_paths_given_are_marked_present():
    values = parse("--nosynthetic", "--data_dir", "elsewhere/", "--save_results=false")
    assert (values.synthetic, values.save_results, values.data_dir) == (False, False, "elsewhere/")
    assert values["data_dir"].present


def test_parsing_leaves_absl_global_flags_alone():
    before = set(absl_flags.FLAGS)
    parse("--batch_size", "12")
    assert set(absl_flags.FLAGS) == before and "batch_size" not in absl_flags.FLAGS


@pytest.mark.parametrize("argv, message", [
    (["--batch_size", "zero"],
     "error: Flags parsing error: flag --batch_size=zero: invalid literal for int() with base 10: 'zero'; "
     "run with -help to list the flags."),
    (["--num_ipus", "0"],
     "error: Flags parsing error: flag --num_ipus=0: --num_ipus must be >= 1; run with -help to list the flags."),
    (["--num_threads=-1"],
     "error: Flags parsing error: flag --num_threads=-1: --num_threads must be >= 0; "
     "run with -help to list the flags."),
    (["--bogus"],
     "error: Flags parsing error: Unknown command line flag 'bogus'; run with -help to list the flags."),
    (["--batch_size"],
     "error: Flags parsing error: Missing value for flag --batch_size; run with -help to list the flags."),
    (["--synthetic", "stray"],
     "error: Flags parsing error: unexpected argument 'stray' (flags only); run with -help to list the flags."),
])
def test_a_bad_flag_is_one_error_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        launch.main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [message] and captured.out == ""


def test_help_is_absls_listing_under_the_program_name(capsys):
    with pytest.raises(SystemExit) as exited:
        parse("-help")
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("\n       USAGE: resnext_inference_launch.py [flags]\nflags:\n\nresnext_inference_launch.py:\n")
    assert "  --num_ipus: Number of IPUs to be used. One IPU runs one compute process.\n    (default: '8')\n" in out
    assert "--flagfile" not in out


@pytest.mark.parametrize("argv,moot", [
    ([], []),
    (["--iterations", "5"], ["--iterations"]),
    (["--iterations", "5", "--synthetic"], []),
    (["--synthetic", "--num_workers", "4", "--data_dir", "d/"], ["--data_dir", "--num_workers"]),
    (["--num_workers", "4", "--data_dir", "d/"], []),
])
def test_flags_the_data_source_does_not_read_are_listed(argv, moot):
    assert [e["flag"] for e in launch.flags_without_effect(parse(*argv))] == moot
