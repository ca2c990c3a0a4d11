"""tasks/lib/startup.py: each case runs in its own interpreter, since import_large acts on the whole process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import PROJECT_ROOT


def run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(PROJECT_ROOT), "TMP_DIR": str(tmp_path)})


IMPORT_AND_REPORT = """
    import gc, json, sys
    from tasks.lib.startup import import_large, in_stage_command
    frozen_before = gc.get_freeze_count()
    module = import_large("email.mime.multipart")
    print(json.dumps({"name": module.__name__, "same": module is sys.modules["email.mime.multipart"],
                      "enabled": gc.isenabled(), "frozen": gc.get_freeze_count() - frozen_before,
                      "again": import_large("email.mime.multipart") is module, "stage": in_stage_command()}))
"""
# What `python -m tasks.<stage>` sets up: the stage module's spec on __main__.
AS_A_STAGE_COMMAND = """
    import __main__, importlib.machinery
    __main__.__spec__ = importlib.machinery.ModuleSpec("tasks.validate", None)
"""


def test_import_large_in_a_stage_command_imports_and_freezes_with_the_collector_back_on(tmp_path):
    completed = run_python(AS_A_STAGE_COMMAND + IMPORT_AND_REPORT, tmp_path)

    assert completed.returncode == 0, completed.stderr
    outcome = json.loads(completed.stdout)
    assert (outcome["name"], outcome["same"], outcome["again"]) == ("email.mime.multipart", True, True)
    assert outcome["stage"] is True and outcome["enabled"] is True
    assert outcome["frozen"] > 0


def test_import_large_elsewhere_freezes_nothing(tmp_path):
    completed = run_python(IMPORT_AND_REPORT, tmp_path)

    outcome = json.loads(completed.stdout)
    assert outcome["stage"] is False and outcome["enabled"] is True and outcome["same"] is True
    assert outcome["frozen"] == 0


def test_import_large_leaves_a_disabled_collector_disabled_and_raises_import_errors(tmp_path):
    completed = run_python("""
        import gc
        from tasks.lib.startup import import_large
        gc.disable()
        try:
            import_large("no_such_module_here")
        except ModuleNotFoundError as error:
            print("refused:", error.name, "enabled:", gc.isenabled())
    """, tmp_path)
    assert completed.stdout.strip() == "refused: no_such_module_here enabled: False", completed.stderr


def test_import_large_freezes_on_request_outside_a_stage_command(tmp_path):
    completed = run_python(IMPORT_AND_REPORT.replace('import_large("email.mime.multipart")\n',
                                                     'import_large("email.mime.multipart", freeze=True)\n', 1),
                           tmp_path)

    outcome = json.loads(completed.stdout)
    assert outcome["stage"] is False and outcome["frozen"] > 0
