import os
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_ships_presets_and_works_outside_the_source_tree(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path / "dist"),
            REPO,
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("keras_lopt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    preset = "keras_lopt/saved_models/adam_equivalent_v1/"
    for required in ("saved_model.pb", "metadata.json", "MODEL_CARD.md", "variables/variables.index"):
        assert preset + required in names, names

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import keras_lopt, numpy as np, keras; "
        "assert keras_lopt.__file__.startswith(%r), keras_lopt.__file__; "
        "keras_lopt.LearnedOptimizer(); "
        "opt = keras_lopt.LearnedOptimizer(preset='adam_equivalent_v1'); "
        "v = keras.Variable(np.ones(3, 'float32')); "
        "opt.apply_gradients([(np.ones(3, 'float32'), v)]); "
        "print(keras_lopt.list_presets(), v.numpy())" % str(site)
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "adam_equivalent_v1" in result.stdout
    assert "0.999" in result.stdout  # one Adam-like step of 1e-3
    assert "presets.json" in " ".join(names)

    # The console script: help and version without TensorFlow.
    script = site / "bin" / "keras-lopt"
    for argv, expected in ((["--help"], "usage: keras-lopt"), (["--version"], "keras-lopt ")):
        result = subprocess.run(
            [sys.executable, str(script), *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0 and result.stdout.startswith(expected), result.stdout + result.stderr
    result = subprocess.run(
        [sys.executable, str(script), "presets"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "| `adaptive_slow_v3` | default |" in result.stdout, result.stderr[-2000:]
