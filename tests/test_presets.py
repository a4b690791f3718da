"""The preset registry (saved_models/presets.json), its API and the README."""

import json
import os
import re
import shutil

import pytest

import keras_lopt
from keras_lopt import features, presets, savedmodel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _directories():
    root = presets.presets_dir()
    return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, "metadata.json")))


def test_registry_names_every_preset_directory_once():
    with open(os.path.join(presets.presets_dir(), presets.REGISTRY_FILE)) as f:
        registry = json.load(f)
    assert registry["schema_version"] == presets.REGISTRY_SCHEMA_VERSION
    assert sorted(registry["presets"]) == _directories()
    assert presets.list_presets(include_unstable=True) == _directories()


def test_details_come_from_the_registry_and_the_preset_directory():
    for name in presets.list_presets(include_unstable=True):
        info = keras_lopt.preset_info(name)
        loaded = presets.load_preset(name) if info.status != "unstable" else None
        metadata = savedmodel.read_metadata(info.path)
        assert info.name == name and info.status in presets.STATUSES and info.description
        assert info.architecture == metadata["architecture"]["kind"]
        assert info.feature_set == features.feature_set_of(metadata["feature_names"])
        assert info.fit_step_vs_adam > 0 and "BENCHMARKS.md" in info.step_cost_source
        if loaded is not None:
            assert loaded.name == name
    assert keras_lopt.preset_info(presets.DEFAULT_PRESET).status == "default"
    assert keras_lopt.preset_info("mlp_local_es_v1").feature_set == "local"
    with pytest.raises(ValueError, match=r"`name` must be a shipped preset, one of \[.*\]. Received: name='nope'"):
        keras_lopt.preset_info("nope")


def test_unstable_presets_are_not_offered_but_load_with_a_warning():
    assert "mlp_pes_v2" not in keras_lopt.list_presets()
    assert "mlp_pes_v2" in keras_lopt.list_presets(include_unstable=True)
    assert keras_lopt.preset_info("mlp_pes_v2").status == "unstable"
    with pytest.warns(UserWarning, match="Preset 'mlp_pes_v2' is unstable: .*diverges"):
        optimizer = keras_lopt.LearnedOptimizer(preset="mlp_pes_v2")
    assert optimizer.preset == "mlp_pes_v2"


def _registry_copy(tmp_path, monkeypatch, edit):
    """A copy of saved_models/ whose registry went through `edit(dict)`."""
    root = tmp_path / "saved_models"
    shutil.copytree(presets.presets_dir(), root)
    path = root / presets.REGISTRY_FILE
    registry = json.loads(path.read_text())
    edit(registry)
    path.write_text(json.dumps(registry))
    monkeypatch.setattr(presets, "presets_dir", lambda: str(root))
    presets._registry.cache_clear()
    return str(path)


@pytest.fixture(autouse=True)
def _fresh_registry_cache():
    yield
    presets._registry.cache_clear()


def test_changing_the_default_is_one_edit_of_the_registry(tmp_path, monkeypatch):
    def swap(registry):
        registry["presets"][presets.DEFAULT_PRESET]["status"] = "superseded"
        registry["presets"]["mlp_es_v4"]["status"] = "default"

    _registry_copy(tmp_path, monkeypatch, swap)
    assert presets.default_preset() == "mlp_es_v4"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.update(schema_version=2), r"`schema_version` is wrong. Expected: 1. Received: 2"),
        (lambda r: r["presets"]["mlp_es_v4"].update(status="great"), r"`presets.mlp_es_v4.status` is wrong"),
        (lambda r: r["presets"]["mlp_es_v4"].update(status="default"), r"exactly one preset with status 'default'"),
        (lambda r: r["presets"].pop("mlp_es_v4"), r"one entry per preset directory"),
        (lambda r: r["presets"]["mlp_es_v4"]["step_cost"].update(fit_step_vs_adam=-1), r"presets.mlp_es_v4.step_cost"),
        (lambda r: r["presets"]["mlp_es_v4"].update(description=""), r"presets.mlp_es_v4.description"),
    ],
)
def test_a_broken_registry_is_refused_naming_the_field(tmp_path, monkeypatch, edit, message):
    path = _registry_copy(tmp_path, monkeypatch, edit)
    with pytest.raises(ValueError, match=re.escape(f"Invalid preset registry '{path}': ") + ".*" + message):
        presets.list_presets()


def test_readme_preset_table_is_the_registry():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    assert presets.markdown_table() in readme, (
        "README.md's preset table differs from saved_models/presets.json: "
        "replace it with the output of `keras-lopt presets`"
    )
    assert os.path.isfile(os.path.join(REPO, "docs", "optimizer.md"))
