"""One broken dataset declaration does not take the others down: the code location loads every
declaration that works and shows each broken one as `<name>/declaration_error`; `dg check defs`
names it and fails; `make run` names it and runs the rest; `review import` records decisions and
says why it cannot apply them. Every test builds its own defs folder (a package on sys.path) beside
a copy of MNIST's shipped declaration; the project's own folder is never touched."""

import os
import subprocess
import sys
import textwrap

import dagster as dg
import pytest
from defs_folders import MNIST_YAML, defs_package
from processes import REPO, run_ok

import mnist_assets.definitions as definitions
import mnist_assets.pipeline as pipeline
import mnist_assets.run_all as run_all
from mnist_assets import review


def folder_declaration(name: str, path: str) -> str:
    return textwrap.dedent(f"""\
        type: mnist_assets.components.ImageClassificationPipeline
        attributes:
          name: {name}
          source: folder
          path: {path}
          image_size: 32
          channels: 3
        """)


@pytest.fixture
def mnist_and_missing_pets(tmp_path, monkeypatch):
    """The imported defs module of a folder holding mnist's declaration and a folder dataset whose
    path does not exist."""
    import importlib

    package = f"defs_{tmp_path.name}".replace("-", "_")  # a fresh module name per test
    folder = defs_package(tmp_path, package, {"mnist": MNIST_YAML, "pets": folder_declaration("pets", tmp_path / "no_such_folder")})
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(f"{package}.defs"), folder


def code_location(defs_module):
    """mnist_assets.definitions' code location on another defs folder (imported here, so that each
    test fails on its own where the function is missing)."""
    from mnist_assets.definitions import code_location

    return code_location(defs_module)


def keys_of(defs: dg.Definitions) -> set[str]:
    return {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}


def test_a_folder_that_does_not_exist_breaks_only_its_own_declaration(mnist_and_missing_pets):
    module, folder = mnist_and_missing_pets
    defs, broken = code_location(module)
    assert {key for key in keys_of(defs) if key.startswith("mnist/")} == keys_of(definitions.defs) - {
        key for key in keys_of(definitions.defs) if not key.startswith("mnist/")
    }
    assert defs.resolve_job_def("mnist_per_split_job") and defs.resolve_sensor_def("mnist_review_sensor")
    assert [(item.path, item.name) for item in broken] == [(folder / "pets" / "defs.yaml", "pets")]
    assert "no_such_folder does not exist; set `path`" in broken[0].error and "\n" not in broken[0].error
    # The UI shows it: a placeholder under the dataset's name that says the file and the error...
    node = defs.resolve_asset_graph().get(dg.AssetKey(["pets", "declaration_error"]))
    assert str(folder / "pets" / "defs.yaml") in node.description and "no_such_folder does not exist" in node.description
    assert node.group_name == "broken_declarations" and node.partitions_def is None
    # ...and whose materialization fails with them.
    placeholder = defs.get_assets_def(dg.AssetKey(["pets", "declaration_error"]))
    result = dg.materialize([placeholder], raise_on_error=False)
    failure = next(event for event in result.all_events if event.event_type_value == "STEP_FAILURE")
    assert "pets/defs.yaml does not load: dataset folder" in failure.event_specific_data.error.message
    # `make run` has nothing to run for it.
    assert run_all.dataset_names(defs.resolve_asset_graph()) == ["mnist"]
    staged = {key for keys, _ in run_all.stages(defs.resolve_asset_graph()) for key in keys}
    assert dg.AssetKey(["pets", "declaration_error"]) not in staged and dg.AssetKey(["mnist", "model_release"]) in staged


def test_unreadable_yaml_a_bad_name_and_a_copy_that_kept_its_name_are_each_reported(tmp_path, monkeypatch):
    import importlib

    declarations = {
        "mnist": MNIST_YAML,
        "digits_again": MNIST_YAML,  # copied to start a new dataset, `name: mnist` kept
        "half_written": "type: mnist_assets.components.ImageClassificationPipeline\nattributes:\n  name: [half\n",
        "my-pets": MNIST_YAML.replace("name: mnist", "name: my-pets"),
    }
    defs_package(tmp_path, "several_broken", declarations)
    monkeypatch.syspath_prepend(str(tmp_path))
    defs, broken = code_location(importlib.import_module("several_broken.defs"))
    by_folder = {item.folder: item for item in broken}
    assert sorted(by_folder) == ["digits_again", "half_written", "my-pets"]
    assert by_folder["digits_again"].error.startswith("declares the dataset 'mnist', which ") and "mnist/defs.yaml declares too" in (
        by_folder["digits_again"].error
    )
    assert "not valid YAML" in by_folder["half_written"].error and "(line 4, column 1)" in by_folder["half_written"].error
    assert "name 'my-pets' is not allowed" in by_folder["my-pets"].error
    # Placeholders under the folder's name where the dataset's name is taken or unusable.
    placeholders = {item.key.to_user_string() for item in broken}
    assert placeholders == {"digits_again/declaration_error", "half_written/declaration_error", "my_pets/declaration_error"}
    assert "mnist/raw_dataset" in keys_of(defs) and placeholders <= keys_of(defs)


def test_dg_check_defs_names_the_broken_declaration_and_fails_while_the_location_loads(tmp_path):
    """A dg project of its own whose code location is `code_location` on its defs folder: `dg check
    defs` (Dagster sets DAGSTER_IS_DEFS_VALIDATION_CLI) fails naming the file; an ordinary load
    (`dagster asset list`, as `dagster dev` loads it) lists MNIST's assets and the placeholder."""
    defs_package(tmp_path, "pets_project", {"mnist": MNIST_YAML, "pets": folder_declaration("pets", tmp_path / "no_such_folder")})
    (tmp_path / "pets_project" / "definitions.py").write_text(
        "import pets_project.defs\nfrom mnist_assets.definitions import code_location\n\ndefs, broken = code_location(pets_project.defs)\n"
    )
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent("""\
            [project]
            name = "pets_project"
            version = "0"

            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "pets_project"
            defs_module = "pets_project.defs"
            code_location_target_module = "pets_project.definitions"
            registry_modules = ["mnist_assets.components"]
            """)
    )
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "DAGSTER_DISABLE_TELEMETRY": "1"}
    env.pop("DAGSTER_IS_DEFS_VALIDATION_CLI", None)
    bin_dir = REPO / ".venv" / "bin"
    checked = subprocess.run(
        [str(bin_dir / "dg"), "check", "defs", "--use-active-venv"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    output = checked.stdout + checked.stderr
    assert checked.returncode != 0, output[-3000:]
    assert "All definitions loaded successfully" not in output
    assert f"{tmp_path / 'pets_project' / 'defs' / 'pets' / 'defs.yaml'} (dataset 'pets'): dataset folder" in output, output[-3000:]
    assert "no_such_folder does not exist; set `path`" in output
    listed = run_ok(
        [str(bin_dir / "dagster"), "asset", "list", "-m", "pets_project.definitions"],
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert {"mnist/raw_dataset", "mnist/label_review", "pets/declaration_error"} <= set(listed.stdout.split())


def test_make_run_names_the_broken_declaration_runs_the_others_and_fails_at_the_end(mnist_and_missing_pets, monkeypatch, capsys):
    module, folder = mnist_and_missing_pets
    defs, broken = code_location(module)
    monkeypatch.setattr(run_all, "defs", defs)
    monkeypatch.setattr(run_all, "broken_declarations", broken)
    asked = []
    monkeypatch.setattr(run_all, "run_graph", lambda instance, resources, splits, datasets: asked.append(datasets) or ([], []))
    monkeypatch.delenv("DATASETS", raising=False)
    monkeypatch.setattr(sys, "argv", ["run_all"])
    assert run_all.main() == 1  # so CI sees it
    out, err = capsys.readouterr()
    assert asked == [["mnist"]]
    assert f"BROKEN declaration {folder / 'pets' / 'defs.yaml'} (dataset 'pets'): dataset folder" in err
    assert "BROKEN  " in out and "no_such_folder does not exist" in out
    # Asked only for the datasets that load, the run passes; the broken one is still named.
    monkeypatch.setenv("DATASETS", "mnist")
    assert run_all.main() == 0
    assert asked[-1] == ["mnist"] and "BROKEN declaration" in capsys.readouterr().err
    # Asked for the broken one alone: nothing to run, and it fails naming it.
    monkeypatch.setenv("DATASETS", "pets")
    assert run_all.main() == 1
    assert asked[-1] == [] and "no_such_folder does not exist" in capsys.readouterr().out


@pytest.fixture
def review_home(tmp_path, monkeypatch):
    """A review log of its own, and a decision file on MNIST's test image 947 (a confirmed error)."""
    monkeypatch.setenv("MNIST_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MNIST_ASSETS_NAMESPACE", f"broken-{tmp_path.name[-12:].replace('_', '-')}")
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("source_index,decision,label\n947,relabel,9\n")
    return decisions


def logged(dataset: str) -> list:
    from mnist_assets.resources import Settings

    return [decision for found in Settings.from_env().store(dataset).decision_log().by_key().values() for decision in found]


def test_review_import_records_and_says_not_applied_when_its_own_declaration_is_broken(tmp_path, monkeypatch, capsys, review_home):
    """MNIST's attributes are fine (the decisions are checked against its source), but its `type`
    has a typo: the code location (here the one built from that folder) has no mnist/label_review."""
    import importlib

    typo = MNIST_YAML.replace("ImageClassificationPipeline", "ImageClassificationPipelin")
    defs_package(tmp_path, "typo_project", {"mnist": typo})
    monkeypatch.syspath_prepend(str(tmp_path))
    defs, broken = code_location(importlib.import_module("typo_project.defs"))
    assert [item.name for item in broken] == ["mnist"]
    monkeypatch.setattr(definitions, "defs", defs)
    monkeypatch.setattr(definitions, "broken_declarations", broken)
    assert review.main(["import", str(review_home), "--dataset", "mnist", "--split", "test"]) == review.NOT_APPLIED == 3
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert err.startswith("recorded 1 decisions in ") and ", not applied: its declaration " in err
    assert "typo_project/defs/mnist/defs.yaml is broken: " in err and "ImageClassificationPipelin" in err
    assert "they apply at the next materialization of mnist/label_review" in err
    assert [(d.source_index, d.decision, d.label) for d in logged("mnist")] == [(947, "relabel", "9")]


def test_review_import_records_and_says_not_applied_when_the_code_location_does_not_load(monkeypatch, capsys, review_home):
    """The location fails to load for a reason of its own (here its executor cannot be built)."""
    import mnist_assets.executors as executors

    def fails(kind):
        raise RuntimeError(f"no executor {kind!r} here")

    monkeypatch.setattr(executors, "build_executor", fails)
    monkeypatch.delitem(sys.modules, "mnist_assets.definitions")  # the import runs definitions.py again (restored after)
    assert review.main(["import", str(review_home), "--dataset", "mnist", "--split", "test"]) == 3
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert ", not applied: the code location mnist_assets.definitions does not load: RuntimeError: no executor 'multiprocess' here;" in err
    assert [(d.source_index, d.label) for d in logged("mnist")] == [(947, "9")]


def test_review_import_for_a_dataset_whose_folder_is_missing_records_nothing_and_names_the_file(
    mnist_and_missing_pets, monkeypatch, capsys, review_home
):
    _, folder = mnist_and_missing_pets
    monkeypatch.setattr(pipeline, "DEFS_FOLDER", folder)
    assert review.main(["import", str(review_home), "--dataset", "pets", "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert f"error: the declaration {folder / 'pets' / 'defs.yaml'} is broken: dataset folder" in err
    assert "no_such_folder does not exist" in err and len(err.strip().splitlines()) == 1
