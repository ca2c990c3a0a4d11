"""`prefect deployment run` on a real Prefect server and worker, with the deployments `make serve` makes from
params.yaml.

On small real data (mnist-sample): the first run trains and promotes, the second sees nothing changed and
skips training, a failing run leaves the server and worker up, and a deliberately worse challenger is
rejected with the champion unchanged. Everything started here is stopped here.
"""

import json
import re
import subprocess
import sys

import pytest
import yaml

from versioning.commits import commit_message
from orchestration.serve import Service, is_running, run_cli
from tests.integration.repo import copy_repository, mnist_sample_only, run
from tests.prefect_server import api_client, free_port, serving

# Starts a Prefect server and worker and trains: over a minute, so `make test-slow` runs it (CI runs both).
pytestmark = [pytest.mark.integration, pytest.mark.slow]
DEPLOYMENT = "training-pipeline/mnist-sample"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = copy_repository(tmp_path_factory.mktemp("served-repo"), mnist_sample_only)
    service = Service(home=tmp_path_factory.mktemp("prefect-home"), root=repo, port=free_port())
    with serving(service):
        yield service
    assert not is_running(service, "server") and not is_running(service, "worker")


def run_deployment(service: Service, *extra: str):
    """Run the deployment with the CLI as docs/OPERATIONS.md says; return (final state name, flow run)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    output = run_cli(service, "deployment", "run", DEPLOYMENT, "--watch", "--watch-timeout", "400", *extra,
                     check=False).stdout
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)
    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    return flow_run, output


def latest_artifact(service: Service, key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                          sort=ArtifactSort.CREATED_DESC, limit=1)
    return artifacts[0].data


@pytest.fixture(scope="module")
def first_run(served):
    return run_deployment(served)


def test_first_run_trains_promotes_and_leaves_dvc_clean(served, first_run):
    flow_run, output = first_run
    assert flow_run.state.is_completed(), output
    assert "promoted" in latest_artifact(served, "mnist-sample-decision")
    assert "test accuracy" in latest_artifact(served, "mnist-sample-metrics")
    assert (served.root / "models/mnist-sample/production/model.keras").is_file()
    assert run(["dvc", "status"], served.root).stdout.strip() == "Data and pipelines are up to date."
    # Every version is a commit: the run committed what it changed, and the message says what happened.
    assert run(["git", "log", "-1", "--format=%B"], served.root).stdout.strip() == "\n\n".join(commit_message(
        f"mnist-sample: started by hand run {flow_run.name} of deployment mnist-sample: data base; promoted: every "
        "gate passed; no champion yet"))  # a subject line of at most 100 characters, the rest in the body
    assert run(["git", "status", "--porcelain", "--", "dvc.lock", "reports"], served.root).stdout == ""
    remote = served.root / "dvc-storage"  # .dvc/config's default remote: the run pushed the model there
    model_md5 = yaml.safe_load((served.root / "dvc.lock").read_text())["stages"]["train@mnist-sample"]["outs"][0]["md5"]
    assert (remote / "files" / "md5" / model_md5[:2] / model_md5[2:]).is_file()


def test_second_run_skips_training(served, first_run):
    model_before = (served.root / "models/mnist-sample/model.keras").read_bytes()
    head_before = run(["git", "rev-parse", "HEAD"], served.root).stdout

    flow_run, output = run_deployment(served)

    assert flow_run.state.is_completed(), output
    decision = latest_artifact(served, "mnist-sample-decision")
    assert "skipped" in decision and f"nothing changed since run {first_run[0].name}" in decision
    assert (served.root / "models/mnist-sample/model.keras").read_bytes() == model_before
    assert run(["git", "rev-parse", "HEAD"], served.root).stdout == head_before  # nothing changed: no commit
    # A run that skips leaves nothing dirty behind: no history record, no run log in a tracked file (issue 17).
    assert run(["git", "status", "--porcelain"], served.root).stdout == ""
    assert run(["dvc", "status"], served.root).stdout.strip() == "Data and pipelines are up to date."


def test_make_deployment_run_prints_the_run_s_states_and_its_result_line(served, first_run):
    """`make deployment-run` (orchestration/deployment_run.py): one line per state, then the result; `prefect
    deployment run --watch` printed about 110 raw event lines for one run."""
    completed = subprocess.run([sys.executable, "-m", "orchestration.deployment_run", "--dataset", "mnist-sample"],
                               cwd=served.root, env=served.environment(), capture_output=True, text=True, timeout=400)

    lines = completed.stdout.splitlines()
    assert completed.returncode == 0, completed.stdout + completed.stderr
    run_id = re.fullmatch(r"training-pipeline/mnist-sample: flow run [a-z-]+ \(([0-9a-f-]{36})\)", lines[0]).group(1)
    with api_client(served) as client:
        states = sorted(client.read_flow_run_states(run_id), key=lambda state: state.timestamp)
    assert [line.split(" ", 1)[1] for line in lines[1:-1]] == [state.name for state in states], lines
    names = [state.name for state in states]
    assert names[0] == "Scheduled" and "Running" in names and names[-1] == "Completed" and len(lines) < 12
    assert lines[-1].startswith(f"result: mnist-sample: nothing changed since run ") and "training skipped" in lines[-1]


def test_failed_run_names_the_cause_and_the_service_survives(served, first_run):
    flow_run, output = run_deployment(served, "--param", "dataset=fashion-mnist")

    assert flow_run.state.is_failed(), output
    assert "'fashion-mnist' is not listed under `datasets`" in flow_run.state.message
    assert is_running(served, "server") and is_running(served, "worker")


def test_worse_challenger_is_rejected_and_the_champion_kept(served, first_run):
    champion = (served.root / "models/mnist-sample/production/model.keras").read_bytes()
    params = (served.root / "params.yaml").read_bytes()
    worse = '{"data.mnist-sample.train.epochs": 1, "train.learning_rate": 0.0001, "train.batch_size": 512}'

    flow_run, output = run_deployment(served, "--param", "force=true", "--param", f"overrides={worse}")

    assert flow_run.state.is_completed(), output
    decision = latest_artifact(served, "mnist-sample-decision")
    assert "champion kept" in decision and "absolute accuracy gate | **no**" in decision
    assert (served.root / "models/mnist-sample/production/model.keras").read_bytes() == champion
    # The overrides lasted the run only, and never were in params.yaml: dvc.lock records them with the model they
    # trained, from the dataset's overrides file, which holds `{}` again, so the next scheduled run trains with
    # params.yaml again (and `dvc status` says so).
    assert (served.root / "params.yaml").read_bytes() == params
    locked = yaml.safe_load((served.root / "dvc.lock").read_text())["stages"]["train@mnist-sample"]["params"]
    assert locked["data/overrides/mnist-sample.yaml"]["data.mnist-sample.train.epochs"] == 1
    assert locked["params.yaml"]["data.mnist-sample.train"]["epochs"] != 1
    assert yaml.safe_load((served.root / "data/overrides/mnist-sample.yaml").read_text()) == {}
    status = run(["dvc", "status"], served.root).stdout
    assert "train@mnist-sample" in status and "data/overrides/mnist-sample.yaml" in status


def test_history_lists_each_run_that_committed_newest_first(served, first_run):
    """After the first run (promoted) and the worse challenger (rejected), not the skipped run: `make history`."""
    shown = run(["python", "-m", "versioning.history", "--dataset", "mnist-sample"], served.root).stdout
    lines = shown.splitlines()[1:]

    assert len(lines) == 2, shown
    first_metrics = json.loads(run(["git", "show", "HEAD~1:reports/mnist-sample/metrics.json"], served.root).stdout)
    assert first_run[0].name in lines[1] and "promoted: every gate passed; no champion yet" in lines[1]
    assert f" {first_metrics['test_accuracy']:.4f} " in lines[1]
    assert "rejected" in lines[0]


@pytest.mark.slow  # two more training runs; `make test-slow` (the rollback itself: tests/integration/test_rollback.py)
def test_rollback_of_a_served_champion_and_the_next_deployment_run_does_not_promote_it_again(served, first_run):
    """Issue 17: a second champion promoted by a deployment run, `make rollback` to the first, then a forced
    deployment run that retrains the rolled-back-from model: promote refuses it, production stays the first."""
    from tasks.common.paths import DatasetPaths
    from tasks.lib.model_versions import file_md5
    from tasks.lib.run_history import read_history

    paths = DatasetPaths(served.root, "mnist-sample")
    params = yaml.safe_load((served.root / "params.yaml").read_text())
    params["train"]["seed"] = 7  # another model of about the same accuracy, with gates loose enough to promote it
    params["promote"].update(max_accuracy_drop=0.05, max_recall_drop=0.5)
    (served.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "train with seed 7"], served.root)
    second_run, output = run_deployment(served)
    second, *earlier = read_history(served.root, "mnist-sample")
    assert second_run.state.is_completed() and second.decision.startswith("promoted"), output[-2000:]
    # The champion before it: the first run's (the worse challenger's rejection, if it ran, lies between them).
    first = next(record for record in earlier if record.decision.startswith("promoted"))
    assert first.model_md5 != second.model_md5

    done = run(["python", "-m", "versioning.rollback", "--dataset", "mnist-sample", "--to", first.commit,
                "--reason", "misses sevens in the new scans"], served.root)
    forced, output = run_deployment(served, "--param", "force=true")

    assert f"the champion of {first.commit} again" in done.stdout
    assert forced.state.is_completed(), output[-2000:]
    assert file_md5(paths.model_file) == second.model_md5  # the same data and params retrained the same bytes
    decision = json.loads(paths.promotion_file.read_text())
    assert not decision["promoted"] and decision["reason"].startswith("rejected: not rolled back failed")
    assert file_md5(paths.production_model_file) == first.model_md5
    newest, rollback = read_history(served.root, "mnist-sample")[:2]
    assert rollback.decision == f"rolled back to {first.commit}: misses sevens in the new scans"
    assert newest.decision.startswith("rejected")
    assert run(["git", "status", "--porcelain"], served.root).stdout == ""
    assert run(["dvc", "status"], served.root).stdout.strip() == "Data and pipelines are up to date."
