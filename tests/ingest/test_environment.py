"""No import-time side effects: importing the project changes no environment variable; the entry
points (and the test session) set the process defaults before any native library loads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ingest.environment import DEFAULTS, prepare_process
from tests.conftest import NATIVE, NATIVE_AT_CONFIGURE, REPO_ROOT


def bare_env(**extra: str) -> dict[str, str]:
    """This environment without the defaults and without QA_* settings."""
    env = {k: v for k, v in os.environ.items() if k not in DEFAULTS and not k.startswith("QA_")}
    return {**env, **extra}


def run_python(code: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_prepare_process_sets_only_what_is_missing():
    env = {"OMP_WAIT_POLICY": "ACTIVE", "PATH": "/bin"}
    assert prepare_process(env) == {k: v for k, v in DEFAULTS.items() if k != "OMP_WAIT_POLICY"}
    assert env == {**DEFAULTS, "OMP_WAIT_POLICY": "ACTIVE", "PATH": "/bin"}
    assert prepare_process(env) == {}


def test_the_test_session_set_its_environment_before_native_libraries(pytestconfig):
    assert pytestconfig.stash[NATIVE_AT_CONFIGURE] == []  # none was loaded when pytest_configure ran
    assert all(os.environ.get(key) for key in DEFAULTS)


@pytest.mark.slow
def test_importing_any_module_changes_no_environment_variable():
    """Every module of ingest, chatbot and workspace, app.py and every benchmark script."""
    result = run_python("""
        import importlib, json, os, pkgutil, sys
        before = dict(os.environ)
        names = ["app"]
        for package in ("ingest", "chatbot", "workspace"):
            root = importlib.import_module(package)
            names += [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")
                      if not m.name.endswith("__main__")]
        sys.path.insert(0, "benchmarks")
        names += sorted(p[:-3] for p in os.listdir("benchmarks") if p.endswith(".py"))
        for name in names:
            importlib.import_module(name)
        changed = {k: (before.get(k), os.environ.get(k)) for k in set(before) | set(os.environ)
                   if before.get(k) != os.environ.get(k)}
        print(json.dumps({"imported": len(names), "changed": changed}))
    """, bare_env())
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["imported"] > 60
    assert report["changed"] == {}


# Records the environment at the first import of each native library, then runs a module as
# `python -m` would; the record is written when the process exits.
WATCH = """
    import atexit, json, os, runpy, sys
    seen = {{}}

    class Watch:
        def find_spec(self, name, path=None, target=None):
            if name in {native!r} and name not in seen:
                seen[name] = {{key: os.environ.get(key) for key in {keys!r}}}
            return None

    sys.meta_path.insert(0, Watch())
    atexit.register(lambda: print("NATIVE " + json.dumps(seen)))
    sys.argv = {argv!r}
    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""


def native_imports(module: str, argv: list[str], env: dict[str, str]) -> dict[str, dict]:
    code = WATCH.format(native=NATIVE, keys=sorted(DEFAULTS), argv=argv, module=module)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("NATIVE ")][-1]
    return json.loads(line[len("NATIVE "):])


@pytest.mark.slow
def test_entry_points_set_the_environment_before_native_libraries_load(tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "canal.md").write_text("# The canal\n\nThe Qosh Tepa canal will divert water from the Amu Darya.\n")
    index = str(tmp_path / "index")
    env = bare_env()
    for module, argv in (("ingest", ["ingest", str(folder), "--index", index, "--json"]),
                         ("chatbot", ["chatbot", "ask", "--index", index, "--json", "Where does the canal take water?"])):
        seen = native_imports(module, argv, env)
        assert seen, f"python -m {module} loaded no model library: nothing was checked"
        for name, environ in seen.items():
            assert environ == DEFAULTS, (module, name, environ)
