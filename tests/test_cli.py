"""The `jaxlearn` console command as a user runs it: a real process, its exit status and output."""
import os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = os.environ.get("JAXLEARN_DATA") or str(ROOT.parent / "shared" / "data")


def jaxlearn(*args, cwd, timeout=300):
    exe = shutil.which("jaxlearn")
    assert exe, "the `jaxlearn` command is not on PATH: run the README's install command (make install)"
    env = {**os.environ, "JAXLEARN_DATA": DATA, "JAXLEARN_PRESET": "tiny"}
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_help_lists_the_commands(tmp_path):
    r = jaxlearn("--help", cwd=tmp_path)
    assert r.returncode == 0
    for word in ("train", "sample", "bench", "info"): assert word in r.stdout


@pytest.mark.parametrize("args, message", [
    (("train", "bert"), "unknown model 'bert': choose one of lstm, gpt"),
    (("train", "lstm", "--steps", "-3"), "--steps must be >= 1"),
    (("sample", "nowhere", "--temperature", "hot"), "--temperature must be a number"),
    (("sample", "nowhere"), "CHECKPOINT must be a folder written by `jaxlearn train`"),
])
def test_bad_arguments_are_one_line(tmp_path, args, message):
    r = jaxlearn(*args, cwd=tmp_path)
    assert r.returncode == 2, r
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_train_then_sample(tmp_path):
    r = jaxlearn("train", "lstm", "--steps", "40", "--out", "run", "--no-progress", "--samples", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "val loss" in r.stdout and "--- sample 1 ---" in r.stdout
    assert (tmp_path / "run" / "loss.png").is_file()
    assert any(p.name.isdigit() for p in (tmp_path / "run" / "checkpoints").iterdir())
    s = jaxlearn("sample", "run", "--prompt", "KING:", "--length", "50", "--temperature", "0", cwd=tmp_path)
    assert s.returncode == 0, s.stderr[-2000:]
    assert s.stdout.startswith("KING:") and len(s.stdout.removesuffix("\n")) == len("KING:") + 50
