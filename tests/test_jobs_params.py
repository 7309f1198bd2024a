"""Job parameters are checked when a job is submitted: names stay in the workspace, numbers are finite and bounded,
paths are confined, and every refusal is one clear message that names the field and what it accepts."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from obt_eval.errors import BadInputError
from obt_eval.workspace import Workspace
from obt_eval_cli.main import run
from pipelines import jobs
from pipelines.params import build, defaults
from pipelines.steps import get_step, kinds, parse

ESCAPES = ["../../..", "../x", "a/b", "/tmp/x", "..", ".hidden", "a\\b", "x\0y"]


def _refused(kind: str, params: dict, workspace, *fragments: str) -> str:
    with pytest.raises(BadInputError) as info:
        jobs.submit(kind, params, workspace, enqueue=False)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    for raw in ("validation error", "pydantic", "Value error,", "type=", "[type"):  # pydantic's text is not a message
        assert raw not in message, message
    return message


@pytest.mark.parametrize("name", ESCAPES)
def test_a_name_cannot_leave_the_workspace(workspace, tmp_path, name):
    before = sorted(p.name for p in tmp_path.iterdir())
    _refused("units", {"features": "f", "name": name}, workspace, "units.name", "folder name")
    _refused("train-vocoder", {"units": "u", "name": name}, workspace, "train-vocoder.name")
    _refused("synthesize", {"vocoder": "v", "units": "u", "name": name}, workspace, "synthesize.name")
    _refused("study", {"name": name, "systems": "a=x"}, workspace, "study.name")
    assert jobs.list_jobs(workspace) == []  # nothing queued
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside the workspace
    # and at the source: the workspace never makes a folder path out of such a name
    for folder in (workspace.units_dir, workspace.vocoder_dir, workspace.stimuli_dir, workspace.reports_dir,
                   workspace.corpus_dir):
        with pytest.raises(BadInputError, match="cannot be used as a folder name"):
            folder(name)
        assert folder("demo-mfcc_L12.k100").parent.parent == workspace.root  # a safe name is fine


def test_the_job_process_checks_the_parameters_again(tmp_path):
    """A row edited in the database after submission (or a queue message from elsewhere) is checked in the child."""
    import subprocess
    import sys

    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "spec.json").write_text(json.dumps({"job_id": 1, "kind": "units", "params": {"features": "f",
                                                  "name": "../../escaped"}, "workspace": str(tmp_path / "ws")}))
    proc = subprocess.run([sys.executable, "-m", "pipelines.child", str(folder)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "units.name" in json.loads((folder / "error.json").read_text())["error"]
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize(("kind", "params", "field", "accepts"), [
    ("units", '{"features": "f", "k": NaN}', "units.k", "a whole number from 2 to 65,536"),
    ("units", '{"features": "f", "k": 1e308}', "units.k", "a whole number from 2 to 65,536"),
    ("units", '{"features": "f", "k": true}', "units.k", "a whole number from 2 to 65,536"),
    ("units", '{"features": "f", "sample_frac": Infinity}', "units.sample_frac", "a number from 0 (exclusive) to 1"),
    ("units", '{"features": "f", "seed": -1}', "units.seed", "a whole number from 0 to 4,294,967,295"),
    ("train-vocoder", '{"units": "u", "name": "v", "steps": 1e12}', "train-vocoder.steps", "to 10,000,000"),
    ("study", '{"name": "s", "systems": "a=x", "target_ratings": 1e9}', "study.target_ratings", "from 1 to 10,000"),
    ("selftest", '{"seconds": -Infinity}', "selftest.seconds", "a number from 0 to 3,600"),
    ("search", '{"corpus": "c", "encoder": "mfcc", "ks": [100, 1e9]}', "search.ks", "a list of whole numbers"),
    ("extract", '{"corpus": "c", "encoder": "mfcc", "layers": "0-1000000000"}', "extract.layers", "0 to 1000"),
    ("train-vocoder", '{"units": "u", "name": "v", "preset": "huge"}', "train-vocoder.preset", "'tiny'"),
])
def test_numbers_are_finite_and_bounded_at_submit_time(workspace, capsys, kind, params, field, accepts):
    assert run(["jobs", "submit", kind, "--params", params]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and field in err and accepts in err, err
    assert "Traceback" not in err and "pydantic" not in err
    assert jobs.list_jobs(workspace) == []


def test_paths_stay_in_the_workspace_or_a_declared_data_root(workspace, tmp_path, monkeypatch):
    outside = tmp_path / "recordings"
    outside.mkdir()
    (workspace.root / "units").mkdir()
    (workspace.root / "units" / "sneaky").symlink_to(outside)  # a link inside the workspace that leads out
    monkeypatch.delenv("OBT_EVAL_DATA_ROOTS", raising=False)
    for kind, params, field in [
        ("ingest", {"audio_dir": str(outside), "name": "c"}, "ingest.audio_dir"),
        ("ingest", {"audio_dir": "../recordings", "name": "c"}, "ingest.audio_dir"),
        ("metrics", {"units": "sneaky"}, "metrics.units"),
        ("units", {"features": "units/sneaky/x"}, "units.features"),
        ("study", {"name": "s", "systems": f"a={outside}, b=x"}, "study.systems"),
        ("train-vocoders", {"units": "xlsr=../recordings"}, "train-vocoders.units"),
    ]:
        _refused(kind, params, workspace, field, "outside the workspace", "OBT_EVAL_DATA_ROOTS")
    monkeypatch.setenv("OBT_EVAL_DATA_ROOTS", str(outside))  # the researcher declares the data folder
    assert jobs.submit("ingest", {"audio_dir": str(outside), "name": "c"}, workspace, enqueue=False).state == "queued"
    assert parse("metrics", {"units": "sneaky"}, workspace).units == "sneaky"
    assert parse("units", {"features": "features/demo/mfcc/L-"}, workspace).features == "features/demo/mfcc/L-"


def test_what_a_job_writes_stays_in_the_workspace_and_out_of_its_hidden_folders(workspace, tmp_path, monkeypatch):
    """A data root may be read, never written; `.secrets` (the admin password) and other hidden parts never."""
    outside = tmp_path / "recordings"
    outside.mkdir()
    monkeypatch.setenv("OBT_EVAL_DATA_ROOTS", str(outside))
    base = {"name": "prod", "folder": str(outside), "corpus": "demo"}
    assert parse("import-system", {**base, "out": "stimuli/prod"}, workspace).folder == str(outside)
    _refused("import-system", {**base, "out": str(outside / "x")}, workspace, "import-system.out",
             "outside the workspace", "OBT_EVAL_DATA_ROOTS")
    for hidden in (".secrets", ".secrets/admin_password", "stimuli/.kmeans-work", str(workspace.root / ".data-roots")):
        _refused("import-system", {**base, "out": hidden}, workspace, "import-system.out", "hidden", "'.'")


def test_a_folder_named_on_the_command_line_becomes_readable_for_the_workspace_only(workspace, tmp_path,
                                                                                   monkeypatch):
    from pipelines.params import data_roots, declare_data_root

    monkeypatch.delenv("OBT_EVAL_DATA_ROOTS", raising=False)
    outside = tmp_path / "prod_vocoder"
    outside.mkdir()
    params = {"name": "prod", "folder": str(outside), "corpus": "demo", "out": "stimuli/prod"}
    _refused("import-system", params, workspace, "import-system.folder", "outside the workspace", "")
    assert declare_data_root(workspace, outside) is True
    assert declare_data_root(workspace, outside / "sub") is False  # already covered
    assert parse("import-system", params, workspace).folder == str(outside)
    assert outside.resolve() not in data_roots(Workspace.at(tmp_path / "another"))


def test_a_plain_dataclass_kind_gets_finite_bounds_too():
    """Job kinds added as plain dataclasses (no Field bounds) still get finite, bounded numbers."""

    @dataclasses.dataclass
    class Plain:
        raters: int = 3
        ratio: float = 0.5
        label: str = "x"

    assert build(Plain, {"raters": "7", "ratio": 2}, "plain") == Plain(7, 2.0, "x")
    for bad, field in [({"raters": 1e9}, "plain.raters"), ({"ratio": float("nan")}, "plain.ratio"),
                       ({"ratio": 1e300}, "plain.ratio"), ({"label": "x" * 100_000}, "plain.label")]:
        with pytest.raises(BadInputError, match=field.replace(".", r"\.")):
            build(Plain, bad, "plain")
    with pytest.raises(BadInputError, match="unknown parameters for a plain job: rater"):
        build(Plain, {"rater": 1}, "plain")


def test_the_admin_forms_defaults_template_names_what_to_fill_in(workspace):
    for kind in kinds():
        cls = get_step(kind).params
        template = defaults(cls)
        json.dumps(template)  # the form shows it as JSON
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if required:  # submitted as pre-filled: refused at once, naming every empty field
            message = _refused(kind, template, workspace, *(f"{kind}.{name} is empty" for name in required))
            assert "fill in" in message
        filled = {**template, **{name: "a=x" for name in required}}  # a valid name, path and NAME=DIR alike
        assert isinstance(parse(kind, filled, workspace), cls)


def test_units_job_defaults_are_the_kmeans_defaults(workspace):
    from obt_eval.units.kmeans import KMeansConfig

    job = parse("units", {"features": "f"}, workspace)
    config = KMeansConfig()
    assert (job.k, job.seed, job.sample_frac, job.n_init) == (config.k, config.seed, config.sample_frac, config.n_init)


def test_vocoder_presets_offered_are_the_librarys():
    from obt_eval.vocoder.config import PRESETS
    from pipelines.steps import Preset

    assert set(typing.get_args(Preset)) == set(PRESETS)
