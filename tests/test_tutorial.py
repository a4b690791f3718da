"""Runs every code block of docs/tutorial.md, in order, with smaller sizes."""

import os
import re
import shlex

import pytest

import keras_lopt_cli as cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIAL = os.path.join(REPO, "docs", "tutorial.md")
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.DOTALL)

# Each must occur in the tutorial (so that it and this test stay in step).
SMALLER = {
    "epochs=20": "epochs=2",
    # Graph mode compiles faster than XLA; XLA is tested elsewhere.
    "jit_compile=True,": "jit_compile=False,",
    "--steps 500": "--steps 5",
    "--problems product,difference,rosenbrock": "--problems rosenbrock",
    "steps=500": "steps=5",
    "outer_steps=100": "outer_steps=2",
    "checkpoint_every=20": "checkpoint_every=1",
    "eval_every=20": "eval_every=1",
    "eval_tasks=2": "eval_tasks=1",
    # One compiled unroll: the same length for training and evaluation.
    "truncation_length=20": "truncation_length=5",
    "eval_horizon=40": "eval_horizon=5",
    "for width in (16, 32)": "for width in (16,)",
}


def _blocks():
    with open(TUTORIAL) as f:
        text = f.read()
    for original in SMALLER:
        assert original in text, f"{original!r} is no longer in docs/tutorial.md"
    for original, smaller in SMALLER.items():
        text = text.replace(original, smaller)
    return BLOCK.findall(text)


def _shell_commands(block):
    """The `keras-lopt ...` commands of a bash block, as argument lists."""
    for line in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(line)
        if argv:
            assert argv[0] == "keras-lopt", f"unexpected shell command in the tutorial: {line}"
            yield argv[1:]


@pytest.mark.slow
def test_tutorial_code_blocks_run_in_order(tmp_path, monkeypatch):
    blocks = _blocks()
    assert sum(kind == "python" for kind, _ in blocks) >= 8
    monkeypatch.chdir(tmp_path)
    # The commands read the committed benchmark results, relative to the
    # repository root; their PNGs go to tmp_path/figures.
    os.symlink(os.path.join(REPO, "benchmarks"), tmp_path / "benchmarks")
    namespace = {"__name__": "tutorial"}
    for index, (kind, code) in enumerate(blocks):
        if kind == "python":
            exec(compile(code, f"docs/tutorial.md block {index}", "exec"), namespace)
        else:
            for argv in _shell_commands(code):
                assert cli.main(argv) == 0, argv

    for png in (
        "digits_loss.png",
        "trajectories.png",
        "probes.png",
        "my_probes.png",
        "figures/trajectories.png",
        "figures/probes.png",
        "figures/benchmark_curves.png",
    ):
        assert (tmp_path / png).stat().st_size > 10_000, png
    assert namespace["preset"].metadata["provenance"]["task_families"] == ["my_regression"]
    assert namespace["mine"].guard is not None
    assert namespace["guarded"].guard_fallbacks > 0


def test_images_the_tutorial_shows_are_committed_and_small():
    with open(TUTORIAL) as f:
        images = re.findall(r"!\[[^\]]*\]\((images/[^)]+)\)", f.read())
    assert len(images) >= 3
    for image in images:
        path = os.path.join(REPO, "docs", image)
        assert os.path.isfile(path), path
        assert os.path.getsize(path) < 200_000, (path, os.path.getsize(path))


@pytest.mark.parametrize("families", [[], ["quadratic"]])
def test_meta_trainer_rejects_what_is_not_a_task_family(tmp_path, families):
    from keras_lopt.meta.config import MetaTrainConfig
    from keras_lopt.meta.trainer import MetaTrainer

    with pytest.raises(ValueError, match=r"`families` must be a non-empty list of .*TaskFamily.*Received: families="):
        MetaTrainer(MetaTrainConfig(), tmp_path / "run", families=families)
